#include "qsnap/drill.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "qsnap/manifest.h"

/* Largest integer a JSON number (a double) holds exactly: 2^53. */
#define MAX_JSON_INT 9007199254740992.0
/* 9999-12-31T23:59:59Z */
#define MAX_TIME 253402300799LL

void qs_drill_result_deinit(struct qs_drill_result *r)
{
    if (r == NULL)
        return;
    free(r->collection);
    free(r->snapshot);
    free(r->error);
    memset(r, 0, sizeof(*r));
}

int qs_drill_scratch_name(const char *collection, char *out, size_t cap)
{
    if (cap > 0)
        out[0] = '\0';
    if (collection == NULL)
        return QS_EINVAL;
    int n = snprintf(out, cap, "%s%s", collection, QS_DRILL_SUFFIX);
    if (n < 0 || (size_t)n >= cap || !qs_manifest_is_valid_collection_name(out)) {
        if (cap > 0)
            out[0] = '\0';
        return QS_EINVAL;
    }
    return 0;
}

/* Seconds rounded to whole milliseconds, in ms (0 when not a positive
 * finite number). Rounded by hand: libm's round() alone would put one more
 * library (about 1 MB) into the image. */
static double duration_ms(double s)
{
    if (!(s > 0) || !(s < 1e12))
        return 0;
    return (double)(uint64_t)(s * 1000 + 0.5);
}

static int add_count(cJSON *o, const char *name, int64_t v)
{
    cJSON *it =
        v >= 0 ? cJSON_AddNumberToObject(o, name, (double)v) : cJSON_AddNullToObject(o, name);
    return it != NULL ? 0 : UV_ENOMEM;
}

int qs_drill_result_to_json(const struct qs_drill_result *r, struct qs_buf *out)
{
    if (r == NULL || !qs_manifest_is_valid_collection_name(r->collection) ||
        !qs_manifest_is_valid_snapshot_name(r->snapshot) || r->finished < 0 ||
        r->finished > MAX_TIME)
        return QS_EINVAL;
    char finished[21];
    qs_time_rfc3339(r->finished, finished);
    cJSON *o = cJSON_CreateObject();
    int rc = o != NULL ? 0 : UV_ENOMEM;
    if (rc == 0 &&
        (cJSON_AddNumberToObject(o, "format", QS_DRILL_FORMAT) == NULL ||
         cJSON_AddStringToObject(o, "collection", r->collection) == NULL ||
         cJSON_AddStringToObject(o, "snapshot", r->snapshot) == NULL ||
         cJSON_AddStringToObject(o, "result", r->ok ? "success" : "failure") == NULL ||
         cJSON_AddStringToObject(o, "finished", finished) == NULL ||
         cJSON_AddNumberToObject(o, "duration_s", duration_ms(r->duration_s) / 1000) == NULL))
        rc = UV_ENOMEM;
    if (rc == 0)
        rc = add_count(o, "points_expected", r->points_expected);
    if (rc == 0)
        rc = add_count(o, "points_restored", r->points_restored);
    if (rc == 0 && (r->error != NULL ? cJSON_AddStringToObject(o, "error", r->error)
                                     : cJSON_AddNullToObject(o, "error")) == NULL)
        rc = UV_ENOMEM;
    char *s = rc == 0 ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (s == NULL)
        return UV_ENOMEM;
    const size_t start = out->len;
    rc = qs_buf_append(out, s, strlen(s));
    if (rc == 0)
        rc = qs_buf_append(out, "\n", 1);
    cJSON_free(s);
    if (rc != 0) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return rc;
}

static int field_error(struct qs_error *err, const char *field, const char *why)
{
    return qs_error_set(err, QS_EINVAL, "drill result field \"%s\": %s", field, why);
}

static int get_str(const cJSON *root, const char *name, int required, const char **out,
                   struct qs_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = NULL;
    if (it == NULL || cJSON_IsNull(it))
        return required ? field_error(err, name, "missing") : 0;
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return field_error(err, name, "must be a string");
    *out = it->valuestring;
    return 0;
}

/* A non-negative integer or null (-1). */
static int get_count(const cJSON *root, const char *name, int64_t *out, struct qs_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = -1;
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) ||
        it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
        it->valuedouble > MAX_JSON_INT)
        return field_error(err, name, "must be a non-negative integer or null");
    double d = it->valuedouble;
    *out = (int64_t)d;
    return 0;
}

static int parse_tree(const cJSON *root, struct qs_drill_result *r, struct qs_error *err)
{
    if (!cJSON_IsObject(root))
        return qs_error_set(err, QS_EINVAL, "drill result: not a JSON object");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble) || f->valuedouble < 1)
        return field_error(err, "format", "must be a positive integer");
    if (f->valuedouble > QS_DRILL_FORMAT)
        return qs_error_set(err, QS_EPROTO,
                            "drill result field \"format\": version %.0f is newer than this "
                            "qsnap understands (%d)",
                            f->valuedouble, QS_DRILL_FORMAT);
    const char *collection, *snapshot, *result, *finished, *error;
    int rc;
    if ((rc = get_str(root, "collection", 1, &collection, err)) != 0 ||
        (rc = get_str(root, "snapshot", 1, &snapshot, err)) != 0 ||
        (rc = get_str(root, "result", 1, &result, err)) != 0 ||
        (rc = get_str(root, "finished", 1, &finished, err)) != 0 ||
        (rc = get_str(root, "error", 0, &error, err)) != 0)
        return rc;
    if (!qs_manifest_is_valid_collection_name(collection))
        return field_error(err, "collection", "not a valid collection name");
    if (!qs_manifest_is_valid_snapshot_name(snapshot))
        return field_error(err, "snapshot", "not a valid snapshot name");
    if (strcmp(result, "success") == 0)
        r->ok = 1;
    else if (strcmp(result, "failure") == 0)
        r->ok = 0;
    else
        return field_error(err, "result", "must be \"success\" or \"failure\"");
    if (qs_time_parse(finished, &r->finished) != 0 || r->finished < 0 || r->finished > MAX_TIME)
        return field_error(err, "finished", "must be an RFC 3339 UTC time");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "duration_s");
    r->duration_s = 0;
    if (d != NULL && !cJSON_IsNull(d)) {
        if (!cJSON_IsNumber(d) || !isfinite(d->valuedouble) || d->valuedouble < 0)
            return field_error(err, "duration_s", "must be a non-negative number");
        r->duration_s = d->valuedouble;
    }
    if ((rc = get_count(root, "points_expected", &r->points_expected, err)) != 0 ||
        (rc = get_count(root, "points_restored", &r->points_restored, err)) != 0)
        return rc;
    r->collection = strdup(collection);
    r->snapshot = strdup(snapshot);
    r->error = error != NULL ? strdup(error) : NULL;
    if (r->collection == NULL || r->snapshot == NULL || (error != NULL && r->error == NULL))
        return qs_error_set(err, UV_ENOMEM, "drill result: out of memory");
    return 0;
}

int qs_drill_result_parse(const char *json, size_t len, struct qs_drill_result *out,
                          struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    if (json == NULL)
        return qs_error_set(err, QS_EINVAL, "drill result: empty");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (root == NULL)
        return qs_error_set(err, QS_EINVAL, "drill result: not valid JSON");
    int rc = parse_tree(root, out, err);
    cJSON_Delete(root);
    if (rc != 0)
        qs_drill_result_deinit(out);
    return rc;
}
