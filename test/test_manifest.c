#include <cJSON.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/error.h"
#include "qsnap/manifest.h"
#include "qsnap/util.h"

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SNAP "agent-memory-7907145935075663-2025-01-28-03-00-02.snapshot"

/* A valid manifest as another qsnap would have written it (compact). */
static const char *valid_json(void)
{
    return "{\"format\":1,\"collection\":\"agent-memory\",\"snapshot\":\"" SNAP "\","
           "\"mode\":\"collections\",\"created\":\"2025-01-28T03:00:02Z\",\"size\":850000000,"
           "\"sha256\":\"" SHA "\",\"compression\":\"gzip\",\"compression_level\":6,"
           "\"stored_size\":600000000,\"object\":\"agent-memory/" SNAP ".gz\","
           "\"qdrant_version\":\"1.13.2\",\"points_count\":100000,"
           "\"vectors\":{\"size\":1536,\"distance\":\"Cosine\",\"on_disk\":true},"
           "\"qsnap_version\":\"0.1.0\"}";
}

static void fill(struct qs_manifest *m)
{
    memset(m, 0, sizeof(*m));
    m->format = QS_MANIFEST_FORMAT_V1;
    m->collection = strdup("agent-memory");
    m->snapshot = strdup(SNAP);
    m->created = qs_timegm(2025, 1, 28, 3, 0, 2);
    m->size = 850000000;
    memcpy(m->sha256, SHA, 65);
    m->compression_level = 6;
    m->stored_size = 600000000;
    m->object = strdup("agent-memory/" SNAP ".gz");
    m->qdrant_version = strdup("1.13.2");
    m->points_count = 100000;
    m->vectors = strdup("{\"size\":1536,\"distance\":\"Cosine\",\"on_disk\":true}");
    m->qsnap_version = strdup("0.1.0");
    m->mode = QS_MODE_COLLECTIONS;
}

static int parse_str(const char *json, struct qs_manifest *m, struct qs_error *err)
{
    qs_error_clear(err);
    return qs_manifest_parse(json, strlen(json), m, err);
}

/* Parses valid_json() with one field replaced (value = JSON text) or removed
 * (value = NULL); returns the result and leaves the message in err. */
static int parse_mutated(const char *field, const char *value, struct qs_error *err)
{
    cJSON *root = cJSON_Parse(valid_json());
    cr_assert_not_null(root);
    cJSON_DeleteItemFromObjectCaseSensitive(root, field);
    if (value != NULL) {
        cJSON *v = cJSON_Parse(value);
        cr_assert_not_null(v, "bad test value %s", value);
        cJSON_AddItemToObject(root, field, v);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    struct qs_manifest m;
    int rc = parse_str(text, &m, err);
    cJSON_free(text);
    qs_manifest_deinit(&m);
    return rc;
}

Test(manifest, parse_valid)
{
    struct qs_manifest m;
    struct qs_error err;
    cr_assert_eq(parse_str(valid_json(), &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.format, 1);
    cr_assert_str_eq(m.collection, "agent-memory");
    cr_assert_str_eq(m.snapshot, SNAP);
    cr_assert_eq(m.created, qs_timegm(2025, 1, 28, 3, 0, 2));
    cr_assert_eq(m.size, 850000000u);
    cr_assert_str_eq(m.sha256, SHA);
    cr_assert_eq(m.compression_level, 6);
    cr_assert_eq(m.stored_size, 600000000u);
    cr_assert_str_eq(m.object, "agent-memory/" SNAP ".gz");
    cr_assert_str_eq(m.qdrant_version, "1.13.2");
    cr_assert_eq(m.points_count, 100000);
    cr_assert_str_eq(m.vectors, "{\"size\":1536,\"distance\":\"Cosine\",\"on_disk\":true}");
    cr_assert_str_eq(m.qsnap_version, "0.1.0");
    cr_assert_eq(m.mode, QS_MODE_COLLECTIONS);
    qs_manifest_deinit(&m);
    cr_assert_null(m.collection);
}

Test(manifest, render_exact)
{
    struct qs_manifest m;
    fill(&m);
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_manifest_to_json(&m, &b), 0);
    const char *want = "{\n"
                       "  \"format\": 1,\n"
                       "  \"collection\": \"agent-memory\",\n"
                       "  \"snapshot\": \"" SNAP "\",\n"
                       "  \"mode\": \"collections\",\n"
                       "  \"created\": \"2025-01-28T03:00:02Z\",\n"
                       "  \"size\": 850000000,\n"
                       "  \"sha256\": \"" SHA "\",\n"
                       "  \"compression\": \"gzip\",\n"
                       "  \"compression_level\": 6,\n"
                       "  \"stored_size\": 600000000,\n"
                       "  \"object\": \"agent-memory/" SNAP ".gz\",\n"
                       "  \"qdrant_version\": \"1.13.2\",\n"
                       "  \"points_count\": 100000,\n"
                       "  \"vectors\": {\"size\":1536,\"distance\":\"Cosine\",\"on_disk\":true},\n"
                       "  \"qsnap_version\": \"0.1.0\"\n"
                       "}\n";
    cr_assert_str_eq(b.data, want);
    qs_buf_free(&b);
    qs_manifest_deinit(&m);
}

static void assert_same(const struct qs_manifest *a, const struct qs_manifest *b)
{
    cr_assert_eq(a->format, b->format);
    cr_assert_str_eq(a->collection, b->collection);
    cr_assert_str_eq(a->snapshot, b->snapshot);
    cr_assert_eq(a->created, b->created);
    cr_assert_eq(a->size, b->size);
    cr_assert_str_eq(a->sha256, b->sha256);
    cr_assert_eq(a->compression_level, b->compression_level);
    cr_assert_eq(a->stored_size, b->stored_size);
    cr_assert_str_eq(a->object, b->object);
    cr_assert_str_eq(a->qdrant_version, b->qdrant_version);
    cr_assert_eq(a->points_count, b->points_count);
    if (a->vectors == NULL)
        cr_assert_null(b->vectors);
    else
        cr_assert_str_eq(a->vectors, b->vectors);
    cr_assert_str_eq(a->qsnap_version, b->qsnap_version);
    cr_assert_eq(a->mode, b->mode);
}

static void roundtrip(const struct qs_manifest *m)
{
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_manifest_to_json(m, &b), 0);
    struct qs_manifest back;
    struct qs_error err;
    cr_assert_eq(qs_manifest_parse(b.data, b.len, &back, &err), 0, "%s\n%s", err.msg, b.data);
    assert_same(m, &back);
    /* Rendering the parsed copy gives the same bytes (stable output). */
    struct qs_buf b2;
    qs_buf_init(&b2);
    cr_assert_eq(qs_manifest_to_json(&back, &b2), 0);
    cr_assert_str_eq(b.data, b2.data);
    qs_buf_free(&b);
    qs_buf_free(&b2);
    qs_manifest_deinit(&back);
}

Test(manifest, roundtrip_variants)
{
    struct qs_manifest m;
    fill(&m);
    roundtrip(&m);

    /* Uncompressed. */
    m.compression_level = 0;
    m.stored_size = m.size;
    free(m.object);
    m.object = strdup("agent-memory/" SNAP);
    roundtrip(&m);

    /* Odd but valid collection names and large sizes, epoch time. */
    free(m.collection);
    m.collection = strdup("Agent \"memory\" \xc3\xa9\xe2\x9c\x93 \\ back");
    cr_assert_eq(qs_manifest_is_valid_collection_name(m.collection), 0, "has '\"' and '\\'");
    free(m.collection);
    m.collection = strdup("agent m\xc3\xa9moire \xe2\x9c\x93 #1");
    free(m.object);
    char key[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_object_key(m.collection, m.snapshot, 0, key, sizeof(key)), 0);
    m.object = strdup(key);
    m.size = m.stored_size = 9007199254740992ull; /* 2^53 */
    m.created = 0;
    m.points_count = 0;
    free(m.vectors);
    m.vectors = strdup("{\"text\":{\"size\":3,\"distance\":\"Dot\"},\"img\":{\"size\":2,"
                       "\"distance\":\"Euclid\",\"hnsw_config\":{\"m\":0.5}}}");
    free(m.qdrant_version);
    m.qdrant_version = strdup("v1.13.2\n\"dev\"\t\x01");
    roundtrip(&m);

    /* Full-storage snapshot without points_count and vectors. */
    qs_manifest_deinit(&m);
    fill(&m);
    m.mode = QS_MODE_FULL;
    free(m.collection);
    m.collection = strdup(QS_MANIFEST_FULL_DIR);
    free(m.snapshot);
    m.snapshot = strdup("full-snapshot-2025-01-28-03-00-02.snapshot");
    free(m.object);
    m.object = strdup(":full/full-snapshot-2025-01-28-03-00-02.snapshot.gz");
    m.points_count = -1;
    free(m.vectors);
    m.vectors = NULL;
    roundtrip(&m);
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_manifest_to_json(&m, &b), 0);
    cr_assert_null(strstr(b.data, "points_count"));
    cr_assert_null(strstr(b.data, "vectors"));
    cr_assert_not_null(strstr(b.data, "\"mode\": \"full\""));
    qs_buf_free(&b);
    qs_manifest_deinit(&m);
}

Test(manifest, to_json_refuses_invalid)
{
    struct qs_manifest m;
    fill(&m);
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_buf_printf(&b, "keep"), 0);
    m.sha256[0] = 'A';
    cr_assert_eq(qs_manifest_to_json(&m, &b), QS_EINVAL);
    cr_assert_str_eq(b.data, "keep");
    m.sha256[0] = '0';
    free(m.object);
    m.object = strdup("agent-memory/" SNAP); /* but compressed */
    cr_assert_eq(qs_manifest_to_json(&m, &b), QS_EINVAL);
    struct qs_error err;
    qs_error_clear(&err);
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "\"object\""), "%s", err.msg);
    free(m.object);
    m.object = strdup("agent-memory/" SNAP ".gz");
    free(m.vectors);
    m.vectors = strdup("[1,2]");
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "\"vectors\""), "%s", err.msg);
    cr_assert_eq(qs_manifest_to_json(&m, &b), QS_EINVAL);
    cr_assert_str_eq(b.data, "keep");
    free(m.vectors);
    m.vectors = strdup("{}");
    cr_assert_eq(qs_manifest_validate(&m, &err), 0, "%s", err.msg);
    /* Sizes beyond 2^53 cannot survive a JSON round trip. */
    m.stored_size = 9007199254740993ull;
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "\"stored_size\""), "%s", err.msg);
    m.stored_size = 1;
    m.points_count = -1; /* only full mode may omit it */
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "\"points_count\""), "%s", err.msg);
    qs_buf_free(&b);
    qs_manifest_deinit(&m);
}

Test(manifest, every_required_field_missing_is_named)
{
    static const char *const required[] = {
        "format",       "collection",  "snapshot",
        "mode",         "created",     "size",
        "sha256",       "compression", "compression_level", /* gzip */
        "stored_size",  "object",      "qdrant_version",
        "points_count", "vectors",     "qsnap_version",
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        struct qs_error err;
        int rc = parse_mutated(required[i], NULL, &err);
        cr_assert_eq(rc, QS_EINVAL, "missing %s accepted", required[i]);
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "\"%s\"", required[i]);
        cr_assert_not_null(strstr(err.msg, quoted), "missing %s: %s", required[i], err.msg);
        cr_assert_not_null(strstr(err.msg, "missing"), "missing %s: %s", required[i], err.msg);
        /* An explicit null counts as missing too. */
        rc = parse_mutated(required[i], "null", &err);
        cr_assert_eq(rc, QS_EINVAL, "null %s accepted", required[i]);
        cr_assert_not_null(strstr(err.msg, quoted), "null %s: %s", required[i], err.msg);
    }
}

struct bad_value {
    const char *field;
    const char *value; /* JSON text */
    int code;
};

Test(manifest, bad_values_are_named)
{
    static const struct bad_value cases[] = {
        /* wrong types */
        {"format", "\"1\"", QS_EINVAL},
        {"collection", "42", QS_EINVAL},
        {"snapshot", "[]", QS_EINVAL},
        {"mode", "true", QS_EINVAL},
        {"created", "1738033202", QS_EINVAL},
        {"size", "\"850000000\"", QS_EINVAL},
        {"sha256", "{}", QS_EINVAL},
        {"compression", "6", QS_EINVAL},
        {"compression_level", "\"6\"", QS_EINVAL},
        {"stored_size", "false", QS_EINVAL},
        {"object", "1", QS_EINVAL},
        {"qdrant_version", "1.13", QS_EINVAL},
        {"points_count", "\"100000\"", QS_EINVAL},
        {"vectors", "\"{}\"", QS_EINVAL},
        {"vectors", "[1536]", QS_EINVAL},
        {"qsnap_version", "{}", QS_EINVAL},
        /* bad values */
        {"format", "0", QS_EINVAL},
        {"format", "1.5", QS_EINVAL},
        {"format", "3", QS_EPROTO},
        {"mode", "\"Full\"", QS_EINVAL},
        {"mode", "\"full\"", QS_EINVAL}, /* collection must then be ":full" */
        {"created", "\"yesterday\"", QS_EINVAL},
        {"created", "\"2025-02-30T00:00:00Z\"", QS_EINVAL},
        {"created", "\"1969-12-31T23:59:59Z\"", QS_EINVAL},
        {"size", "-1", QS_EINVAL},
        {"size", "1.5", QS_EINVAL},
        {"size", "1e300", QS_EINVAL},
        {"stored_size", "-600000000", QS_EINVAL},
        {"points_count", "-1", QS_EINVAL},
        {"points_count", "0.5", QS_EINVAL},
        {"sha256", "\"" SHA "0\"", QS_EINVAL},
        {"sha256", "\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\"",
         QS_EINVAL},
        {"sha256", "\"0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef\"",
         QS_EINVAL},
        {"sha256", "\"\"", QS_EINVAL},
        {"compression", "\"zstd\"", QS_EINVAL},
        {"compression", "\"gzip:6\"", QS_EINVAL},
        {"compression_level", "0", QS_EINVAL},
        {"compression_level", "10", QS_EINVAL},
        {"object", "\"agent-memory/" SNAP "\"", QS_EINVAL},
        {"object", "\"other/" SNAP ".gz\"", QS_EINVAL},
        {"object", "\"/agent-memory/" SNAP ".gz\"", QS_EINVAL},
        {"collection", "\"\"", QS_EINVAL},
        {"collection", "\"a:b\"", QS_EINVAL},
        {"collection", "\"a/b\"", QS_EINVAL},
        {"collection", "\"..\"", QS_EINVAL},
        {"collection", "\":full\"", QS_EINVAL}, /* reserved for mode full */
        {"snapshot", "\"\"", QS_EINVAL},
        {"snapshot", "\"../x.snapshot\"", QS_EINVAL},
        {"snapshot", "\"x.json\"", QS_EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct qs_error err;
        int rc = parse_mutated(cases[i].field, cases[i].value, &err);
        cr_assert_eq(rc, cases[i].code, "%s=%s: got %d (%s)", cases[i].field, cases[i].value, rc,
                     err.msg);
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "\"%s\"", cases[i].field);
        /* A wrong mode may be reported on the field it conflicts with. */
        if (strcmp(cases[i].value, "\"full\"") == 0)
            strcpy(quoted, "\"collection\"");
        cr_assert_not_null(strstr(err.msg, quoted), "%s=%s: %s", cases[i].field, cases[i].value,
                           err.msg);
    }
}

Test(manifest, consistency_rules)
{
    struct qs_error err;
    struct qs_manifest m;
    /* none: stored_size must equal size, object has no .gz, no level needed. */
    const char *none = "{\"format\":1,\"collection\":\"c\",\"snapshot\":\"s.snapshot\","
                       "\"mode\":\"collections\",\"created\":\"2025-01-28T03:00:02Z\","
                       "\"size\":10,\"sha256\":\"" SHA "\",\"compression\":\"none\","
                       "\"stored_size\":11,\"object\":\"c/s.snapshot\",\"qdrant_version\":\"x\","
                       "\"points_count\":1,\"vectors\":{},\"qsnap_version\":\"y\"}";
    cr_assert_eq(parse_str(none, &m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "\"stored_size\""), "%s", err.msg);
    char *fixed = strdup(none);
    char *p = strstr(fixed, "\"stored_size\":11");
    p[15] = '0'; /* 11 -> 10 */
    cr_assert_eq(parse_str(fixed, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.compression_level, 0);
    cr_assert_str_eq(m.vectors, "{}");
    qs_manifest_deinit(&m);
    free(fixed);

    /* Not JSON, not an object, truncated, empty. */
    cr_assert_eq(parse_str("", &m, &err), QS_EINVAL);
    cr_assert_eq(parse_str("[1]", &m, &err), QS_EINVAL);
    cr_assert_eq(parse_str("{\"format\":1,", &m, &err), QS_EINVAL);
    cr_assert_eq(qs_manifest_parse(valid_json(), strlen(valid_json()) - 1, &m, &err), QS_EINVAL);
    cr_assert_null(m.collection);
    cr_assert_eq(qs_manifest_parse(NULL, 0, &m, &err), QS_EINVAL);

    /* Full mode: ":full" collection, points_count and vectors optional. */
    const char *full =
        "{\"format\":1,\"collection\":\":full\",\"snapshot\":\"full-snapshot-2025-01-28-03-00-"
        "02.snapshot\",\"mode\":\"full\",\"created\":\"2025-01-28T03:00:02\",\"size\":10,"
        "\"sha256\":\"" SHA "\",\"compression\":\"none\",\"compression_level\":0,"
        "\"stored_size\":10,\"object\":\":full/full-snapshot-2025-01-28-03-00-02.snapshot\","
        "\"qdrant_version\":\"1.13.2\",\"qsnap_version\":\"0.1.0\"}";
    cr_assert_eq(parse_str(full, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.mode, QS_MODE_FULL);
    cr_assert_eq(m.points_count, -1);
    cr_assert_null(m.vectors);
    cr_assert_eq(m.created, qs_timegm(2025, 1, 28, 3, 0, 2));
    qs_manifest_deinit(&m);
}

Test(manifest, unknown_fields_ignored)
{
    cJSON *root = cJSON_Parse(valid_json());
    cJSON_AddStringToObject(root, "future_field", "x");
    cJSON_AddItemToObject(root, "labels", cJSON_Parse("{\"a\":[1,2,{\"b\":null}]}"));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    struct qs_manifest m;
    struct qs_error err;
    cr_assert_eq(parse_str(text, &m, &err), 0, "%s", err.msg);
    cr_assert_str_eq(m.collection, "agent-memory");
    qs_manifest_deinit(&m);
    cJSON_free(text);
}

/* The collection-name rule follows Qdrant v1.13.2: names are 1-255
 * characters (src/actix/api/mod.rs, StrictCollectionPath: length(min = 1,
 * max = 255)) without < > : " / \ | ? * NUL or 0x1F
 * (lib/common/common/src/validation.rs, validate_collection_name); a leading
 * '.' is allowed. A snapshot is named "{name}-{peer id}-{time}.snapshot" and
 * built in a temporary "{snapshot}-arc-XXXXXX" file
 * (lib/collection/src/collection/snapshots.rs, create_snapshot), so names
 * longer than 213 bytes can never be snapshotted under a 255-byte file-name
 * limit: qsnap refuses those, and control characters, which no object key
 * may hold. */
Test(manifest, collection_names)
{
    static const struct {
        const char *name;
        int valid;
    } cases[] = {
        {"agent-memory", 1},
        {"_private", 1},
        {"with space", 1},
        {"...", 1},
        {".hidden", 1},
        {".", 0},
        {"a.b", 1},
        {"m\xc3\xa9moire", 1},
        {"\xf0\x9f\x98\x80", 1},
        {"\xc4\xba\xc4\xbc", 1}, /* U+013A, U+013C: low bytes are ':' and '<' */
        {"", 0},
        {".", 0},
        {"..", 0},
        {"a<b", 0},
        {"a>b", 0},
        {"a:b", 0},
        {"a\"b", 0},
        {"a/b", 0},
        {"a\\b", 0},
        {"a|b", 0},
        {"a?b", 0},
        {"a*b", 0},
        {"a\tb", 0},
        {"a\x1f", 0},
        {"a\x7f", 0},
        {"\xc3", 0},             /* truncated UTF-8 */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"\xed\xa0\x80", 0},     /* surrogate */
        {"\xf4\x90\x80\x80", 0}, /* > U+10FFFF */
        {QS_MANIFEST_FULL_DIR, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(qs_manifest_is_valid_collection_name(cases[i].name), cases[i].valid, "%s",
                     cases[i].name);
    cr_assert_eq(qs_manifest_is_valid_collection_name(NULL), 0);

    /* Length is counted in bytes: 213 are fine, 214 can never be snapshotted
     * (Qdrant's archive "{name}-1-YYYY-MM-DD-HH-MM-SS.snapshot-arc-XXXXXX"
     * would be 256 bytes even with a one-digit peer id). */
    char name[256];
    memset(name, 'n', 213);
    name[213] = '\0';
    cr_assert_eq(QS_COLLECTION_NAME_MAX, 213);
    cr_assert_eq(strlen(name) + strlen("-1-2025-01-28-03-00-02.snapshot-arc-XXXXXX"), 255);
    cr_assert_eq(qs_manifest_is_valid_collection_name(name), 1);
    name[0] = '.';
    cr_assert_eq(qs_manifest_is_valid_collection_name(name), 1);
    memcpy(name + 212, "\xc3\xa9", 3); /* 214 bytes, 213 characters */
    cr_assert_eq(qs_manifest_is_valid_collection_name(name), 0);

    /* The reasons, as configuration errors show them. */
    char why[200];
    cr_assert_eq(qs_manifest_check_collection_name(name, why, sizeof(why)), QS_EINVAL);
    cr_assert(strstr(why, "214 bytes long, longer than 213 bytes") != NULL, "%s", why);
    static const struct {
        const char *name, *why;
    } reasons[] = {
        {"", "is empty"},
        {"..", "must not be '.' or '..'"},
        {"a:b", "must not contain ':'"},
        {"a\x01", "contains a control character"},
        {"\xff\xfe", "is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        cr_assert_eq(qs_manifest_check_collection_name(reasons[i].name, why, sizeof(why)),
                     QS_EINVAL);
        cr_assert_str_eq(why, reasons[i].why);
    }
    cr_assert_eq(qs_manifest_check_collection_name("ok", why, sizeof(why)), 0);
    cr_assert_str_eq(why, "");
    cr_assert_eq(qs_manifest_check_collection_name(NULL, NULL, 0), QS_EINVAL);
}

Test(manifest, snapshot_names)
{
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(SNAP), 1);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("full-snapshot-2025-01-28-03-00-02.snapshot"),
                 1);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("upload"), 1);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(""), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(NULL), 0);
    /* Qdrant's snapshots of ".hidden" begin with '.'; ':' is the key escape. */
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(".hidden-1-2025-01-28-03-00-02.snapshot"), 1);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(":.hidden.snapshot"), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("a:b.snapshot"), 1);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("."), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(".."), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("a/b.snapshot"), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("a\\b.snapshot"), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("a\nb.snapshot"), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("a.snapshot.json"), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("a.snapshot.gz"), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("a.snapshot.tmp"), 0);
    char longname[257];
    memset(longname, 'a', 256);
    longname[256] = '\0';
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(longname), 0);
    longname[255] = '\0';
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(longname), 1);
}

Test(manifest, key_helpers)
{
    char key[QS_MANIFEST_KEY_MAX];
    static const struct {
        const char *collection;
        const char *snapshot;
        int compressed;
        const char *object;
        const char *manifest;
    } cases[] = {
        {"agent-memory", SNAP, 0, "agent-memory/" SNAP, "agent-memory/" SNAP ".json"},
        {"agent-memory", SNAP, 1, "agent-memory/" SNAP ".gz", "agent-memory/" SNAP ".json"},
        {"my collection", "my collection-1-2025-01-28-03-00-02.snapshot", 1,
         "my collection/my collection-1-2025-01-28-03-00-02.snapshot.gz",
         "my collection/my collection-1-2025-01-28-03-00-02.snapshot.json"},
        {"m\xc3\xa9moire-\xe2\x9c\x93", "s.snapshot", 0, "m\xc3\xa9moire-\xe2\x9c\x93/s.snapshot",
         "m\xc3\xa9moire-\xe2\x9c\x93/s.snapshot.json"},
        {QS_MANIFEST_FULL_DIR, "full-snapshot-2025-01-28-03-00-02.snapshot", 1,
         ":full/full-snapshot-2025-01-28-03-00-02.snapshot.gz",
         ":full/full-snapshot-2025-01-28-03-00-02.snapshot.json"},
        /* A leading '.' is escaped in every component, never left hidden. */
        {".hidden", ".hidden-1-2025-01-28-03-00-02.snapshot", 0,
         ":.hidden/:.hidden-1-2025-01-28-03-00-02.snapshot",
         ":.hidden/:.hidden-1-2025-01-28-03-00-02.snapshot.json"},
        {".hidden", ".hidden-1-2025-01-28-03-00-02.snapshot", 1,
         ":.hidden/:.hidden-1-2025-01-28-03-00-02.snapshot.gz",
         ":.hidden/:.hidden-1-2025-01-28-03-00-02.snapshot.json"},
        {"...", "...-1-2025-01-28-03-00-02.snapshot", 0, ":.../:...-1-2025-01-28-03-00-02.snapshot",
         ":.../:...-1-2025-01-28-03-00-02.snapshot.json"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_assert_eq(qs_manifest_object_key(cases[i].collection, cases[i].snapshot,
                                            cases[i].compressed, key, sizeof(key)),
                     0);
        cr_assert_str_eq(key, cases[i].object);
        cr_assert_eq(qs_manifest_key(cases[i].collection, cases[i].snapshot, key, sizeof(key)), 0);
        cr_assert_str_eq(key, cases[i].manifest);
    }
    /* Invalid names. */
    cr_assert_eq(qs_manifest_object_key("a/b", "s.snapshot", 0, key, sizeof(key)), QS_EINVAL);
    cr_assert_str_eq(key, "");
    cr_assert_eq(qs_manifest_object_key("a", "../s.snapshot", 0, key, sizeof(key)), QS_EINVAL);
    cr_assert_eq(qs_manifest_key("", "s.snapshot", key, sizeof(key)), QS_EINVAL);
    cr_assert_eq(qs_manifest_key("a", NULL, key, sizeof(key)), QS_EINVAL);
    cr_assert_eq(qs_manifest_key(NULL, "s", key, sizeof(key)), QS_EINVAL);
    /* Capacity: exact fit and one byte short. */
    char small[sizeof("c/s.snapshot.gz")];
    cr_assert_eq(qs_manifest_object_key("c", "s.snapshot", 1, small, sizeof(small)), 0);
    cr_assert_str_eq(small, "c/s.snapshot.gz");
    cr_assert_eq(qs_manifest_object_key("c", "s.snapshot", 1, small, sizeof(small) - 1),
                 QS_ETOOBIG);
    cr_assert_str_eq(small, "");
    cr_assert_eq(qs_manifest_key("c", "s.snapshot", small, sizeof(small)), QS_ETOOBIG);

    /* The largest names fit QS_MANIFEST_KEY_MAX. */
    char coll[QS_COLLECTION_NAME_MAX + 1], snap[256];
    memset(coll, 'c', QS_COLLECTION_NAME_MAX);
    coll[0] = '.';
    coll[QS_COLLECTION_NAME_MAX] = '\0';
    memset(snap, 's', 255);
    snap[0] = '.';
    snap[255] = '\0';
    cr_assert_eq(qs_manifest_key(coll, snap, key, sizeof(key)), 0);
    cr_assert_eq(strlen(key), 1 + QS_COLLECTION_NAME_MAX + 1 + 1 + 255 + 5);

    /* Listing prefixes use the same escape. */
    cr_assert_eq(qs_manifest_key_prefix(".hidden", key, sizeof(key)), 0);
    cr_assert_str_eq(key, ":.hidden/");
    cr_assert_eq(qs_manifest_key_prefix("c1", key, sizeof(key)), 0);
    cr_assert_str_eq(key, "c1/");
    cr_assert_eq(qs_manifest_key_prefix(QS_MANIFEST_FULL_DIR, key, sizeof(key)), 0);
    cr_assert_str_eq(key, ":full/");
    cr_assert_eq(qs_manifest_key_prefix("a:b", key, sizeof(key)), QS_EINVAL);
    cr_assert_eq(qs_manifest_key_prefix("c1", key, 3), QS_ETOOBIG);
}

/* ---- listing classifier ---------------------------------------------------- */

static const struct qs_listed_backup *find_backup(const struct qs_listed_backup *a, size_t n,
                                                  const char *manifest_key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].manifest_key, manifest_key) == 0)
            return &a[i];
    return NULL;
}

Test(manifest, classify_listing)
{
    const struct qs_listed_key keys[] = {
        /* complete, compressed */
        {"c1/c1-1-2025-01-01-03-00-00.snapshot.gz", 100, 1000},
        {"c1/c1-1-2025-01-01-03-00-00.snapshot.json", 1, 1001},
        /* complete, plain; listed manifest-first */
        {"c1/c1-1-2025-01-02-03-00-00.snapshot.json", 1, 2001},
        {"c1/c1-1-2025-01-02-03-00-00.snapshot", 200, 2000},
        /* incomplete: object without manifest */
        {"c1/c1-1-2025-01-03-03-00-00.snapshot.gz", 50, 3000},
        {"c2 with space/x-1-2025-01-03-03-00-00.snapshot", 60, 3100},
        /* orphan manifest */
        {"c2 with space/x-1-2025-01-01-03-00-00.snapshot.json", 1, 900},
        /* full-storage snapshot */
        {":full/full-snapshot-2025-01-01-03-00-00.snapshot", 70, 800},
        {":full/full-snapshot-2025-01-01-03-00-00.snapshot.json", 1, 801},
        /* both plain and .gz next to one manifest */
        {"c3/s.snapshot", 10, 10},
        {"c3/s.snapshot.gz", 5, 11},
        {"c3/s.snapshot.json", 1, 12},
        /* collection ".hidden": escaped directory and names */
        {":.hidden/:.hidden-1-2025-01-01-03-00-00.snapshot", 80, 20},
        {":.hidden/:.hidden-1-2025-01-01-03-00-00.snapshot.json", 1, 21},
        {":.hidden/:.hidden-1-2025-01-02-03-00-00.snapshot.gz", 40, 22},
        /* ignored: unescaped hidden directory, escape without a dot */
        {".hidden/.hidden-1-2025-01-01-03-00-00.snapshot.json", 1, 1},
        {":x/x-1-2025-01-01-03-00-00.snapshot.json", 1, 1},
        /* ignored: temporary, hidden, nested, top level, foreign, bad dir, dup */
        {"c1/c1-1-2025-01-04-03-00-00.snapshot.tmp", 1, 1},
        {"c1/.c1-1-2025-01-04-03-00-00.snapshot.XXXXXX", 1, 1},
        {"c1/sub/a.snapshot", 1, 1},
        {"toplevel.snapshot", 1, 1},
        {"c1/README", 1, 1},
        {"c1/notes.txt.gz", 1, 1},
        {"a:b/x.snapshot", 1, 1},
        {"/x.snapshot", 1, 1},
        {"c1/", 1, 1},
        {"c1/c1-1-2025-01-02-03-00-00.snapshot", 200, 2000},
        {NULL, 0, 0},
    };
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    struct qs_manifest_listing l;
    cr_assert_eq(qs_manifest_classify(keys, n, &l), 0);

    cr_assert_eq(l.ncomplete, 5);
    const struct qs_listed_backup *b =
        find_backup(l.complete, l.ncomplete, "c1/c1-1-2025-01-01-03-00-00.snapshot.json");
    cr_assert_not_null(b);
    cr_assert_str_eq(b->collection, "c1");
    cr_assert_str_eq(b->snapshot, "c1-1-2025-01-01-03-00-00.snapshot");
    cr_assert_str_eq(b->object_key, "c1/c1-1-2025-01-01-03-00-00.snapshot.gz");
    cr_assert_eq(b->compressed, 1);
    cr_assert_eq(b->object_size, 100);
    cr_assert_eq(b->last_modified, 1001);
    b = find_backup(l.complete, l.ncomplete, "c1/c1-1-2025-01-02-03-00-00.snapshot.json");
    cr_assert_not_null(b);
    cr_assert_str_eq(b->object_key, "c1/c1-1-2025-01-02-03-00-00.snapshot");
    cr_assert_eq(b->compressed, 0);
    cr_assert_eq(b->object_size, 200);
    b = find_backup(l.complete, l.ncomplete,
                    ":full/full-snapshot-2025-01-01-03-00-00.snapshot.json");
    cr_assert_not_null(b);
    cr_assert_str_eq(b->collection, QS_MANIFEST_FULL_DIR);
    b = find_backup(l.complete, l.ncomplete, "c3/s.snapshot.json");
    cr_assert_not_null(b);
    cr_assert_str_eq(b->object_key, "c3/s.snapshot");
    cr_assert_str_eq(b->alt_object_key, "c3/s.snapshot.gz");
    for (size_t i = 0; i < l.ncomplete; i++)
        if (strcmp(l.complete[i].manifest_key, "c3/s.snapshot.json") != 0)
            cr_assert_null(l.complete[i].alt_object_key);
    b = find_backup(l.complete, l.ncomplete,
                    ":.hidden/:.hidden-1-2025-01-01-03-00-00.snapshot.json");
    cr_assert_not_null(b);
    cr_assert_str_eq(b->collection, ".hidden");
    cr_assert_str_eq(b->snapshot, ".hidden-1-2025-01-01-03-00-00.snapshot");
    cr_assert_str_eq(b->object_key, ":.hidden/:.hidden-1-2025-01-01-03-00-00.snapshot");
    cr_assert_eq(b->object_size, 80);

    /* Sorted by manifest key. */
    for (size_t i = 1; i < l.ncomplete; i++)
        cr_assert_lt(strcmp(l.complete[i - 1].manifest_key, l.complete[i].manifest_key), 0);

    cr_assert_eq(l.nincomplete, 3);
    cr_assert_str_eq(l.incomplete[0].key, ":.hidden/:.hidden-1-2025-01-02-03-00-00.snapshot.gz");
    cr_assert_str_eq(l.incomplete[0].collection, ".hidden");
    cr_assert_str_eq(l.incomplete[1].key, "c1/c1-1-2025-01-03-03-00-00.snapshot.gz");
    cr_assert_str_eq(l.incomplete[1].collection, "c1");
    cr_assert_eq(l.incomplete[1].size, 50);
    cr_assert_eq(l.incomplete[1].last_modified, 3000);
    cr_assert_str_eq(l.incomplete[2].key, "c2 with space/x-1-2025-01-03-03-00-00.snapshot");
    cr_assert_str_eq(l.incomplete[2].collection, "c2 with space");

    cr_assert_eq(l.norphans, 1);
    cr_assert_str_eq(l.orphans[0].manifest_key,
                     "c2 with space/x-1-2025-01-01-03-00-00.snapshot.json");
    cr_assert_str_eq(l.orphans[0].snapshot, "x-1-2025-01-01-03-00-00.snapshot");
    cr_assert_null(l.orphans[0].object_key);

    /* 11 ignored listed keys + the duplicate + the NULL + the .gz twin in c3. */
    cr_assert_eq(l.nignored, 14, "%zu", l.nignored);
    qs_manifest_listing_deinit(&l);
    cr_assert_eq(l.ncomplete, 0);

    cr_assert_eq(qs_manifest_classify(NULL, 0, &l), 0);
    cr_assert_eq(l.ncomplete + l.nincomplete + l.norphans + l.nignored, 0);
    qs_manifest_listing_deinit(&l);
}

/* Drill results ("{c}/{S}.drill.json") belong to their backup's manifest; a
 * drill result without a manifest is incomplete (cleaned after the grace),
 * and is never mistaken for a manifest of a snapshot "S.drill". */
Test(manifest, classify_drill_results)
{
    const struct qs_listed_key keys[] = {
        /* complete backup with its drill result */
        {"c/a.snapshot", 100, 1000},
        {"c/a.snapshot.json", 1, 1001},
        {"c/a.snapshot.drill.json", 1, 5000},
        /* complete backup, never drilled */
        {"c/b.snapshot", 100, 2000},
        {"c/b.snapshot.json", 1, 2001},
        /* orphan manifest with its drill result: the result stays with it */
        {"c/o.snapshot.json", 1, 900},
        {"c/o.snapshot.drill.json", 1, 950},
        /* drill result whose backup is gone */
        {"c/gone.snapshot.drill.json", 1, 700},
        /* not a drill result: hidden, invalid stem */
        {"c/.x.drill.json", 1, 1},
        {"c/.drill.json", 1, 1},
    };
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    struct qs_manifest_listing l;
    cr_assert_eq(qs_manifest_classify(keys, n, &l), 0);
    cr_assert_eq(l.ncomplete, 2);
    const struct qs_listed_backup *b = find_backup(l.complete, l.ncomplete, "c/a.snapshot.json");
    cr_assert_not_null(b);
    cr_assert_str_eq(b->drill_key, "c/a.snapshot.drill.json");
    cr_assert_str_eq(b->object_key, "c/a.snapshot");
    b = find_backup(l.complete, l.ncomplete, "c/b.snapshot.json");
    cr_assert_not_null(b);
    cr_assert_null(b->drill_key);
    cr_assert_eq(l.norphans, 1);
    cr_assert_str_eq(l.orphans[0].drill_key, "c/o.snapshot.drill.json");
    cr_assert_eq(l.nincomplete, 1);
    cr_assert_str_eq(l.incomplete[0].key, "c/gone.snapshot.drill.json");
    cr_assert_str_eq(l.incomplete[0].collection, "c");
    cr_assert_eq(l.incomplete[0].last_modified, 700);
    cr_assert_eq(l.nignored, 2, "%zu", l.nignored);
    qs_manifest_listing_deinit(&l);
}

Test(manifest, drill_key_and_reserved_snapshot_names)
{
    char key[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_drill_key("c", SNAP, key, sizeof(key)), 0);
    cr_assert_str_eq(key, "c/" SNAP ".drill.json");
    cr_assert_eq(qs_manifest_drill_key("a:b", SNAP, key, sizeof(key)), QS_EINVAL);
    /* A snapshot named "x.drill" would have a manifest "x.drill.json", the
     * drill result key of "x": such names are refused. */
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("x.drill"), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name("x.drill.snapshot"), 1);
    cr_assert_eq(qs_manifest_key("c", "x.drill", key, sizeof(key)), QS_EINVAL);
    /* The largest names (an escaped leading-dot collection of the longest
     * length) still fit QS_MANIFEST_KEY_MAX. */
    char coll[QS_COLLECTION_NAME_MAX + 1], snap[256];
    memset(coll, 'c', QS_COLLECTION_NAME_MAX);
    coll[0] = '.';
    coll[QS_COLLECTION_NAME_MAX] = '\0';
    memset(snap, 's', 255);
    snap[255] = '\0';
    cr_assert_eq(qs_manifest_drill_key(coll, snap, key, sizeof(key)), 0);
    cr_assert_eq(strlen(key),
                 1 + QS_COLLECTION_NAME_MAX + 1 + 255 + strlen(QS_MANIFEST_DRILL_SUFFIX));
    cr_assert_eq(key[0], QS_MANIFEST_DOT_ESCAPE);
}

/* ---- format 2: fidelity fields and shards backups ----------------------------- */

#define RUN "agent-memory-shards-2025-01-28-03-00-02"
#define SHA_B "b123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CONFIG                                                                                     \
    "{\"params\":{\"vectors\":{\"size\":4,\"distance\":\"Cosine\"},\"shard_number\":3},"           \
    "\"optimizer_config\":{\"indexing_threshold\":20000}}"
#define SCHEMA                                                                                     \
    "{\"city\":{\"data_type\":\"keyword\",\"points\":9},\"year\":{\"data_type\":\"integer\","      \
    "\"params\":{\"type\":\"integer\",\"lookup\":null,\"range\":true},\"points\":9}}"

/* A format 2 collection-method manifest. */
static void fill_v2(struct qs_manifest *m)
{
    fill(m);
    m->format = QS_MANIFEST_FORMAT;
    m->method = QS_METHOD_COLLECTION;
    m->collection_config = strdup(CONFIG);
    m->payload_schema = strdup(SCHEMA);
    m->has_aliases = 1;
    m->aliases = calloc(2, sizeof(char *));
    m->aliases[0] = strdup("memory");
    m->aliases[1] = strdup("memory-\"prod\"");
    m->naliases = 2;
}

/* A format 2 shards manifest of three shards (ids 0, 1, 5), gzip 6. */
static void fill_shards(struct qs_manifest *m)
{
    fill_v2(m);
    m->method = QS_METHOD_SHARDS;
    free(m->snapshot);
    m->snapshot = strdup(RUN);
    free(m->object);
    m->object = NULL;
    m->sha256[0] = '\0';
    static const uint32_t ids[] = {0, 1, 5};
    m->shards = calloc(3, sizeof(*m->shards));
    m->nshards = 3;
    m->size = m->stored_size = 0;
    for (size_t i = 0; i < 3; i++) {
        char key[QS_MANIFEST_KEY_MAX];
        cr_assert_eq(qs_manifest_shard_key(m->collection, m->snapshot, ids[i], 1, key, sizeof(key)),
                     0);
        m->shards[i].id = ids[i];
        m->shards[i].object = strdup(key);
        m->shards[i].size = 1000 * (i + 1);
        m->shards[i].stored_size = 700 * (i + 1);
        memcpy(m->shards[i].sha256, i == 1 ? SHA_B : SHA, 65);
        m->size += m->shards[i].size;
        m->stored_size += m->shards[i].stored_size;
    }
}

static void assert_same_v2(const struct qs_manifest *a, const struct qs_manifest *b)
{
    cr_assert_eq(a->method, b->method);
    cr_assert_eq(a->has_aliases, b->has_aliases);
    cr_assert_eq(a->naliases, b->naliases);
    for (size_t i = 0; i < a->naliases; i++)
        cr_assert_str_eq(a->aliases[i], b->aliases[i]);
    if (a->collection_config == NULL)
        cr_assert_null(b->collection_config);
    else
        cr_assert_str_eq(a->collection_config, b->collection_config);
    if (a->payload_schema == NULL)
        cr_assert_null(b->payload_schema);
    else
        cr_assert_str_eq(a->payload_schema, b->payload_schema);
    cr_assert_eq(a->nshards, b->nshards);
    for (size_t i = 0; i < a->nshards; i++) {
        cr_assert_eq(a->shards[i].id, b->shards[i].id);
        cr_assert_str_eq(a->shards[i].object, b->shards[i].object);
        cr_assert_eq(a->shards[i].size, b->shards[i].size);
        cr_assert_eq(a->shards[i].stored_size, b->shards[i].stored_size);
        cr_assert_str_eq(a->shards[i].sha256, b->shards[i].sha256);
    }
}

static char *render(const struct qs_manifest *m)
{
    struct qs_buf b;
    qs_buf_init(&b);
    struct qs_error err;
    cr_assert_eq(qs_manifest_validate(m, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_manifest_to_json(m, &b), 0);
    return b.data;
}

Test(manifest, v2_render_exact_and_roundtrip)
{
    struct qs_manifest m, back;
    struct qs_error err;
    fill_v2(&m);
    char *text = render(&m);
    const char *want = "{\n"
                       "  \"format\": 2,\n"
                       "  \"format_version\": 2,\n"
                       "  \"collection\": \"agent-memory\",\n"
                       "  \"snapshot\": \"" SNAP "\",\n"
                       "  \"mode\": \"collections\",\n"
                       "  \"method\": \"collection\",\n"
                       "  \"created\": \"2025-01-28T03:00:02Z\",\n"
                       "  \"size\": 850000000,\n"
                       "  \"sha256\": \"" SHA "\",\n"
                       "  \"compression\": \"gzip\",\n"
                       "  \"compression_level\": 6,\n"
                       "  \"stored_size\": 600000000,\n"
                       "  \"object\": \"agent-memory/" SNAP ".gz\",\n"
                       "  \"qdrant_version\": \"1.13.2\",\n"
                       "  \"points_count\": 100000,\n"
                       "  \"vectors\": {\"size\":1536,\"distance\":\"Cosine\",\"on_disk\":true},\n"
                       "  \"collection_config\": " CONFIG ",\n"
                       "  \"payload_schema\": " SCHEMA ",\n"
                       "  \"aliases\": [\"memory\", \"memory-\\\"prod\\\"\"],\n"
                       "  \"qsnap_version\": \"0.1.0\"\n"
                       "}\n";
    cr_assert_str_eq(text, want);
    cr_assert_eq(qs_manifest_parse(text, strlen(text), &back, &err), 0, "%s", err.msg);
    assert_same(&m, &back);
    assert_same_v2(&m, &back);
    qs_manifest_deinit(&back);
    free(text);
    /* No aliases is an empty list, not an absent field. */
    for (size_t i = 0; i < m.naliases; i++)
        free(m.aliases[i]);
    m.naliases = 0;
    text = render(&m);
    cr_assert_not_null(strstr(text, "\"aliases\": []"), "%s", text);
    cr_assert_eq(qs_manifest_parse(text, strlen(text), &back, &err), 0, "%s", err.msg);
    cr_assert_eq(back.has_aliases, 1);
    cr_assert_eq(back.naliases, 0);
    qs_manifest_deinit(&back);
    free(text);
    qs_manifest_deinit(&m);
}

Test(manifest, shards_render_exact_and_roundtrip)
{
    struct qs_manifest m, back;
    struct qs_error err;
    fill_shards(&m);
    char *text = render(&m);
    const char *want =
        "{\n"
        "  \"format\": 2,\n"
        "  \"format_version\": 2,\n"
        "  \"collection\": \"agent-memory\",\n"
        "  \"snapshot\": \"" RUN "\",\n"
        "  \"mode\": \"collections\",\n"
        "  \"method\": \"shards\",\n"
        "  \"created\": \"2025-01-28T03:00:02Z\",\n"
        "  \"size\": 6000,\n"
        "  \"compression\": \"gzip\",\n"
        "  \"compression_level\": 6,\n"
        "  \"stored_size\": 4200,\n"
        "  \"shards\": [\n"
        "    {\"id\": 0, \"object\": \"agent-memory/" RUN "/shard-0.snapshot.gz\", \"size\": 1000, "
        "\"sha256\": \"" SHA "\", \"stored_size\": 700},\n"
        "    {\"id\": 1, \"object\": \"agent-memory/" RUN "/shard-1.snapshot.gz\", \"size\": 2000, "
        "\"sha256\": \"" SHA_B "\", \"stored_size\": 1400},\n"
        "    {\"id\": 5, \"object\": \"agent-memory/" RUN "/shard-5.snapshot.gz\", \"size\": 3000, "
        "\"sha256\": \"" SHA "\", \"stored_size\": 2100}\n"
        "  ],\n"
        "  \"qdrant_version\": \"1.13.2\",\n"
        "  \"points_count\": 100000,\n"
        "  \"vectors\": {\"size\":1536,\"distance\":\"Cosine\",\"on_disk\":true},\n"
        "  \"collection_config\": " CONFIG ",\n"
        "  \"payload_schema\": " SCHEMA ",\n"
        "  \"aliases\": [\"memory\", \"memory-\\\"prod\\\"\"],\n"
        "  \"qsnap_version\": \"0.1.0\"\n"
        "}\n";
    cr_assert_str_eq(text, want);
    cr_assert_eq(qs_manifest_parse(text, strlen(text), &back, &err), 0, "%s", err.msg);
    cr_assert_null(back.object);
    cr_assert_str_eq(back.sha256, "");
    assert_same_v2(&m, &back);
    qs_manifest_deinit(&back);
    free(text);
    qs_manifest_deinit(&m);
}

/* Mutates a rendered manifest: replaces the text `from` by `to`, expects
 * parse to fail with code and a message holding `needle`. */
static void expect_parse_error(const struct qs_manifest *m, const char *from, const char *to,
                               int code, const char *needle)
{
    char *text = render(m);
    char *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' not in\n%s", from, text);
    size_t fl = strlen(from), tl = strlen(to), len = strlen(text);
    char *mut = malloc(len - fl + tl + 1);
    memcpy(mut, text, (size_t)(at - text));
    memcpy(mut + (at - text), to, tl);
    memcpy(mut + (at - text) + tl, at + fl, len - (size_t)(at - text) - fl + 1);
    struct qs_manifest back;
    struct qs_error err;
    qs_error_clear(&err);
    cr_assert_eq(qs_manifest_parse(mut, strlen(mut), &back, &err), code, "%s -> %s accepted: %s",
                 from, to, err.msg);
    cr_assert_not_null(strstr(err.msg, needle), "%s -> %s: '%s' lacks '%s'", from, to, err.msg,
                       needle);
    cr_assert_null(back.collection);
    free(mut);
    free(text);
}

Test(manifest, v2_rules)
{
    struct qs_manifest m;
    fill_v2(&m);
    expect_parse_error(&m, "\"method\": \"collection\"", "\"method\": \"snapshot\"", QS_EINVAL,
                       "\"method\"");
    expect_parse_error(&m, "  \"method\": \"collection\",\n", "", QS_EINVAL, "\"method\": missing");
    expect_parse_error(&m, "\"aliases\": [\"memory\", \"memory-\\\"prod\\\"\"]",
                       "\"aliases\": [\"b\", \"a\"]", QS_EINVAL, "sorted");
    expect_parse_error(&m, "\"aliases\": [\"memory\", \"memory-\\\"prod\\\"\"]",
                       "\"aliases\": [\"\"]", QS_EINVAL, "invalid alias");
    expect_parse_error(&m, "\"aliases\": [\"memory\", \"memory-\\\"prod\\\"\"]", "\"aliases\": 3",
                       QS_EINVAL, "\"aliases\"");
    expect_parse_error(&m, ",\n  \"aliases\": [\"memory\", \"memory-\\\"prod\\\"\"]", "", QS_EINVAL,
                       "\"aliases\": missing");
    expect_parse_error(&m, "\"payload_schema\": {", "\"payload_schema\": [], \"x\": {", QS_EINVAL,
                       "\"payload_schema\"");
    expect_parse_error(&m, "\"collection_config\": ", "\"collection_config_x\": ", QS_EINVAL,
                       "\"collection_config\": missing");
    expect_parse_error(&m, "\"format\": 2", "\"format\": 3", QS_EPROTO, "newer");
    /* format_version repeats format (for scripts) and must agree with it. */
    expect_parse_error(&m, "\"format_version\": 2", "\"format_version\": 1", QS_EINVAL,
                       "\"format_version\": must equal");
    expect_parse_error(&m, "  \"format_version\": 2,\n", "", QS_EINVAL,
                       "\"format_version\": missing");
    /* A collection backup lists no shards. */
    expect_parse_error(&m, "\"qsnap_version\"", "\"shards\": [], \"qsnap_version\"", QS_EINVAL,
                       "only a shards backup");
    qs_manifest_deinit(&m);

    fill_shards(&m);
    expect_parse_error(&m, "\"size\": 6000", "\"size\": 6001", QS_EINVAL,
                       "\"size\": must be the sum");
    expect_parse_error(&m, "\"stored_size\": 4200", "\"stored_size\": 4201", QS_EINVAL,
                       "\"stored_size\": must be the sum");
    expect_parse_error(&m, "{\"id\": 5", "{\"id\": 1", QS_EINVAL, "ascending");
    expect_parse_error(&m, "shard-5.snapshot.gz", "shard-6.snapshot.gz", QS_EINVAL,
                       "does not match");
    expect_parse_error(&m, "\"sha256\": \"" SHA_B "\"", "\"sha256\": \"x\"", QS_EINVAL, "sha256");
    expect_parse_error(&m, "\"compression\": \"gzip\"",
                       "\"sha256\": \"" SHA "\", "
                       "\"compression\": \"gzip\"",
                       QS_EINVAL, "one per shard");
    expect_parse_error(&m, "\"stored_size\": 4200", "\"stored_size\": 4200, \"object\": \"x\"",
                       QS_EINVAL, "\"object\"");
    expect_parse_error(&m, "\"shards\": [", "\"shards_\": [", QS_EINVAL, "\"shards\": missing");
    expect_parse_error(&m, ", \"stored_size\": 700}", "}", QS_EINVAL, "each entry needs");
    expect_parse_error(&m, "\"mode\": \"collections\"", "\"mode\": \"full\"", QS_EINVAL,
                       "\"collection\"");
    qs_manifest_deinit(&m);

    /* validate() holds the same rules for what qsnap is about to write. */
    struct qs_error err;
    fill_shards(&m);
    m.shards[2].stored_size++;
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "\"stored_size\""), "%s", err.msg);
    m.shards[2].stored_size--;
    m.compression_level = 0;
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    qs_manifest_deinit(&m);
    fill_v2(&m);
    m.format = QS_MANIFEST_FORMAT_V1; /* version 1 knew no aliases */
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "\"format\""), "%s", err.msg);
    qs_manifest_deinit(&m);
}

/* A cluster backup: fill_shards() streamed from two of three peers, ids
 * above 2^53 (JSON doubles would round them). */
static void fill_cluster(struct qs_manifest *m)
{
    fill_shards(m);
    static const uint64_t ids[] = {17, 9007199254740993ULL, 18446744073709551615ULL};
    m->has_cluster = 1;
    m->cluster.peer_id = ids[1];
    m->cluster.peers = calloc(3, sizeof(*m->cluster.peers));
    m->cluster.npeers = 3;
    for (size_t i = 0; i < 3; i++) {
        char uri[64];
        snprintf(uri, sizeof(uri), "http://qdrant-%zu.qdrant-headless:6335/", i);
        m->cluster.peers[i].id = ids[i];
        m->cluster.peers[i].uri = strdup(uri);
    }
    m->cluster.shard_count = 3;
    m->cluster.replication_factor = 2;
    m->shards[0].peer_id = ids[1];
    m->shards[1].peer_id = ids[0];
    m->shards[2].peer_id = ids[2];
}

Test(manifest, cluster_render_exact_and_roundtrip)
{
    struct qs_manifest m, back;
    struct qs_error err;
    fill_cluster(&m);
    char *text = render(&m);
    cr_assert_not_null(strstr(text, "\"stored_size\": 700, \"peer_id\": \"9007199254740993\"}"),
                       "%s", text);
    cr_assert_not_null(
        strstr(text, "\"stored_size\": 2100, \"peer_id\": \"18446744073709551615\"}"), "%s", text);
    const char *tail =
        "  \"aliases\": [\"memory\", \"memory-\\\"prod\\\"\"],\n"
        "  \"cluster\": {\"peer_id\": \"9007199254740993\", \"peers\": ["
        "{\"id\": \"17\", \"uri\": \"http://qdrant-0.qdrant-headless:6335/\"}, "
        "{\"id\": \"9007199254740993\", \"uri\": \"http://qdrant-1.qdrant-headless:6335/\"}, "
        "{\"id\": \"18446744073709551615\", \"uri\": \"http://qdrant-2.qdrant-headless:6335/\"}], "
        "\"shard_count\": 3, \"replication_factor\": 2},\n"
        "  \"qsnap_version\": \"0.1.0\"\n"
        "}\n";
    cr_assert_not_null(strstr(text, tail), "%s", text);
    cr_assert_eq(qs_manifest_parse(text, strlen(text), &back, &err), 0, "%s", err.msg);
    assert_same_v2(&m, &back);
    cr_assert_eq(back.has_cluster, 1);
    cr_assert_eq(back.cluster.peer_id, m.cluster.peer_id);
    cr_assert_eq(back.cluster.npeers, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(back.cluster.peers[i].id, m.cluster.peers[i].id);
        cr_assert_str_eq(back.cluster.peers[i].uri, m.cluster.peers[i].uri);
        cr_assert_eq(back.shards[i].peer_id, m.shards[i].peer_id);
    }
    cr_assert_eq(back.cluster.shard_count, 3);
    cr_assert_eq(back.cluster.replication_factor, 2);
    char *again = render(&back);
    cr_assert_str_eq(again, text);
    free(again);
    qs_manifest_deinit(&back);
    free(text);
    qs_manifest_deinit(&m);

    /* A single-node shards backup has neither the object nor peer ids. */
    fill_shards(&m);
    text = render(&m);
    cr_assert_null(strstr(text, "cluster"), "%s", text);
    cr_assert_null(strstr(text, "peer_id"), "%s", text);
    free(text);
    qs_manifest_deinit(&m);
}

Test(manifest, cluster_rules)
{
    struct qs_manifest m;
    fill_cluster(&m);
    expect_parse_error(&m, "\"replication_factor\": 2", "\"replication_factor\": 0", QS_EINVAL,
                       "replication_factor must be at least 1");
    expect_parse_error(&m, "\"shard_count\": 3", "\"shard_count\": 4", QS_EINVAL,
                       "shard_count must equal");
    expect_parse_error(&m, "\"shard_count\": 3", "\"shard_count\": \"3\"", QS_EINVAL,
                       "needs shard_count");
    expect_parse_error(&m, "\"cluster\": {\"peer_id\": \"9007199254740993\"",
                       "\"cluster\": {\"peer_id\": 9007199254740993", QS_EINVAL,
                       "peer_id must be a peer id");
    expect_parse_error(&m, "\"cluster\": {\"peer_id\": \"9007199254740993\"",
                       "\"cluster\": {\"peer_id\": \"5\"", QS_EINVAL, "one of the peers");
    expect_parse_error(&m, "{\"id\": \"17\"", "{\"id\": \"017\"", QS_EINVAL, "each peer needs id");
    expect_parse_error(&m, "{\"id\": \"17\"", "{\"id\": \"18446744073709551616\"", QS_EINVAL,
                       "each peer needs id");
    expect_parse_error(&m, "{\"id\": \"17\"", "{\"id\": \"9007199254740993\"", QS_EINVAL,
                       "ascending");
    expect_parse_error(&m, "\"uri\": \"http://qdrant-0.qdrant-headless:6335/\"", "\"uri\": \"\"",
                       QS_EINVAL, "uri must be");
    expect_parse_error(&m, "\"peers\": [", "\"peers\": 1, \"x\": [", QS_EINVAL,
                       "peers must be an array");
    expect_parse_error(&m, "\"stored_size\": 1400, \"peer_id\": \"17\"", "\"stored_size\": 1400",
                       QS_EINVAL, "needs peer_id");
    expect_parse_error(&m, "\"stored_size\": 1400, \"peer_id\": \"17\"",
                       "\"stored_size\": 1400, \"peer_id\": \"42\"", QS_EINVAL,
                       "one of the cluster's peers");
    expect_parse_error(&m, "\"cluster\": {", "\"cluster\": [], \"x\": {", QS_EINVAL,
                       "\"cluster\": must be a JSON object");
    qs_manifest_deinit(&m);

    /* Peer ids without the cluster, and a cluster on a collection backup. */
    fill_shards(&m);
    expect_parse_error(&m, "\"stored_size\": 700}", "\"stored_size\": 700, \"peer_id\": \"1\"}",
                       QS_EINVAL, "only a cluster backup");
    qs_manifest_deinit(&m);
    fill_v2(&m);
    expect_parse_error(&m, "\"qsnap_version\"",
                       "\"cluster\": {\"peer_id\": \"1\"}, \"qsnap_version\"", QS_EINVAL,
                       "only a shards backup records a cluster");
    qs_manifest_deinit(&m);

    /* validate() holds the same rules for what qsnap is about to write. */
    struct qs_error err;
    fill_cluster(&m);
    m.shards[1].peer_id = 3;
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "one of the cluster's peers"), "%s", err.msg);
    m.has_cluster = 0;
    cr_assert_eq(qs_manifest_validate(&m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "only a cluster backup"), "%s", err.msg);
    qs_manifest_deinit(&m);
}

/* A version 1 manifest exactly as qsnap wrote it before format 2 (captured
 * from that release) parses, and renders back to the same bytes. */
Test(manifest, version1_as_written_by_the_previous_release)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/test/fixtures/manifest-v1/plain.json",
             getenv("QSNAP_TEST_SOURCE_ROOT") != NULL ? getenv("QSNAP_TEST_SOURCE_ROOT") : "..");
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char text[4096];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    struct qs_manifest m;
    struct qs_error err;
    cr_assert_eq(qs_manifest_parse(text, len, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.format, 1);
    cr_assert_eq(m.method, QS_METHOD_COLLECTION);
    cr_assert_eq(m.has_aliases, 0);
    cr_assert_null(m.collection_config);
    cr_assert_null(m.payload_schema);
    cr_assert_eq(m.nshards, 0);
    char *back = render(&m);
    cr_assert_str_eq(back, text);
    free(back);
    qs_manifest_deinit(&m);
    /* A "method" in a version 1 manifest is someone else's field: ignored. */
    char *mut = strdup(text);
    char *at = strstr(mut, "\"mode\"");
    memcpy(at, "\"mxde\"", 6);
    cr_assert_eq(qs_manifest_parse(mut, len, &m, &err), QS_EINVAL);
    free(mut);
}

Test(manifest, shard_keys_and_run_names)
{
    char key[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_shard_key("c", "c-shards-2025-01-28-03-00-02", 0, 0, key, sizeof(key)),
                 0);
    cr_assert_str_eq(key, "c/c-shards-2025-01-28-03-00-02/shard-0.snapshot");
    cr_assert_eq(qs_manifest_shard_key("c", "r", 4294967295u, 1, key, sizeof(key)), 0);
    cr_assert_str_eq(key, "c/r/shard-4294967295.snapshot.gz");
    cr_assert_eq(
        qs_manifest_shard_key(".h", ".h-shards-2025-01-28-03-00-02", 3, 1, key, sizeof(key)), 0);
    cr_assert_str_eq(key, ":.h/:.h-shards-2025-01-28-03-00-02/shard-3.snapshot.gz");
    cr_assert_eq(qs_manifest_run_prefix(".h", ".h-shards-x", key, sizeof(key)), 0);
    cr_assert_str_eq(key, ":.h/:.h-shards-x/");
    cr_assert_eq(qs_manifest_shard_key(QS_MANIFEST_FULL_DIR, "r", 0, 0, key, sizeof(key)),
                 QS_EINVAL);
    cr_assert_eq(qs_manifest_shard_key("c", "a/b", 0, 0, key, sizeof(key)), QS_EINVAL);
    cr_assert_eq(qs_manifest_shard_key("c", "r", 0, 0, key, 10), QS_ETOOBIG);
    cr_assert_str_eq(key, "");

    cr_assert_eq(
        qs_manifest_run_name("agent-memory", qs_timegm(2025, 1, 28, 3, 0, 2), key, sizeof(key)), 0);
    cr_assert_str_eq(key, "agent-memory-shards-2025-01-28-03-00-02");
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(key), 1);
    /* The longest collection name gives a valid snapshot name too. */
    char coll[QS_COLLECTION_NAME_MAX + 1];
    memset(coll, 'c', QS_COLLECTION_NAME_MAX);
    coll[0] = '.';
    coll[QS_COLLECTION_NAME_MAX] = '\0';
    cr_assert_eq(qs_manifest_run_name(coll, 0, key, sizeof(key)), 0);
    cr_assert_eq(qs_manifest_is_valid_snapshot_name(key), 1);
    cr_assert_eq(qs_manifest_shard_key(coll, key, 4294967295u, 1, key + 300, 900), 0);
    cr_assert_eq(qs_manifest_run_name("a:b", 0, key, sizeof(key)), QS_EINVAL);
    cr_assert_eq(qs_manifest_run_name("c", 0, key, 20), QS_ETOOBIG);
}

Test(manifest, qdrant_version_rule)
{
    char why[400];
    cr_assert_eq(qs_manifest_check_versions("1.13.2", "1.13.0", why, sizeof(why)), 0);
    cr_assert_eq(qs_manifest_check_versions("1.12.6", "1.13.2", why, sizeof(why)), 0);
    cr_assert_eq(qs_manifest_check_versions("1.13", "1.14.0-rc1", why, sizeof(why)), 0);
    cr_assert_eq(qs_manifest_check_versions("1.11.5", "1.13.2", why, sizeof(why)), QS_EINVAL);
    cr_assert_str_eq(why, "the backup was made by Qdrant 1.11.5 and the target runs Qdrant "
                          "1.13.2, which cannot load it: Qdrant restores snapshots of the same "
                          "or the previous minor version only (a 1.11 backup needs Qdrant "
                          "1.11.x or 1.12.x)");
    /* newer than the target */
    cr_assert_eq(qs_manifest_check_versions("1.14.0", "1.13.2", why, sizeof(why)), QS_EINVAL);
    cr_assert(strstr(why, "Qdrant 1.14.0") != NULL && strstr(why, "Qdrant 1.13.2") != NULL, "%s",
              why);
    cr_assert_eq(qs_manifest_check_versions("1.13.2", "2.0.0", why, sizeof(why)), QS_EINVAL);
    cr_assert_eq(qs_manifest_check_versions("0.13.2", "1.13.2", why, sizeof(why)), QS_EINVAL);
    /* unknown versions cannot be checked */
    cr_assert_eq(qs_manifest_check_versions("unknown", "1.13.2", why, sizeof(why)), QS_EINVAL);
    cr_assert(strstr(why, "'unknown' is unknown") != NULL, "%s", why);
    cr_assert_eq(qs_manifest_check_versions("1.13.2", "v1.13", why, sizeof(why)), QS_EINVAL);
    cr_assert(strstr(why, "target Qdrant reports version 'v1.13'") != NULL, "%s", why);
    cr_assert_eq(qs_manifest_check_versions("1.x", "1.13", NULL, 0), QS_EINVAL);
    cr_assert_eq(qs_manifest_check_versions(NULL, "1.13", why, sizeof(why)), QS_EINVAL);
}

Test(manifest, classify_shard_runs)
{
    const struct qs_listed_key keys[] = {
        /* a complete shards run */
        {"c/c-shards-2025-01-01-03-00-00.json", 1, 1001},
        {"c/c-shards-2025-01-01-03-00-00/shard-0.snapshot", 100, 1000},
        {"c/c-shards-2025-01-01-03-00-00/shard-1.snapshot", 200, 1000},
        {"c/c-shards-2025-01-01-03-00-00/shard-10.snapshot", 300, 1000},
        {"c/c-shards-2025-01-01-03-00-00.drill.json", 1, 1002},
        /* a sibling whose name shares the prefix ("-" sorts before "/") */
        {"c/c-shards-2025-01-01-03-00-00-x/shard-0.snapshot.gz", 5, 900},
        /* a run without manifest: each shard object is incomplete */
        {"c/c-shards-2025-01-02-03-00-00/shard-0.snapshot.gz", 7, 2000},
        {"c/c-shards-2025-01-02-03-00-00/shard-1.snapshot.gz", 8, 2000},
        /* a manifest whose run has no objects: orphan */
        {"c/c-shards-2025-01-03-03-00-00.json", 1, 3000},
        /* an escaped run */
        {":.h/:.h-shards-2025-01-01-03-00-00.json", 1, 1},
        {":.h/:.h-shards-2025-01-01-03-00-00/shard-2.snapshot", 9, 1},
        /* ignored: not shard objects, too deep, leading zeros, ":full", hidden run */
        {"c/c-shards-2025-01-01-03-00-00/shard-01.snapshot", 1, 1},
        {"c/c-shards-2025-01-01-03-00-00/shard-.snapshot", 1, 1},
        {"c/c-shards-2025-01-01-03-00-00/shard-4294967296.snapshot", 1, 1},
        {"c/c-shards-2025-01-01-03-00-00/shard-0.snapshot.tmp", 1, 1},
        {"c/c-shards-2025-01-01-03-00-00/x/shard-0.snapshot", 1, 1},
        {"c/c-shards-2025-01-01-03-00-00/README", 1, 1},
        {":full/r/shard-0.snapshot", 1, 1},
        {"c/.r/shard-0.snapshot", 1, 1},
    };
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    struct qs_manifest_listing l;
    cr_assert_eq(qs_manifest_classify(keys, n, &l), 0);
    cr_assert_eq(l.ncomplete, 2);
    const struct qs_listed_backup *b =
        find_backup(l.complete, l.ncomplete, "c/c-shards-2025-01-01-03-00-00.json");
    cr_assert_not_null(b);
    cr_assert_null(b->object_key);
    cr_assert_str_eq(b->snapshot, "c-shards-2025-01-01-03-00-00");
    cr_assert_eq(b->nshards, 3);
    cr_assert_str_eq(b->shard_keys[0], "c/c-shards-2025-01-01-03-00-00/shard-0.snapshot");
    cr_assert_str_eq(b->shard_keys[1], "c/c-shards-2025-01-01-03-00-00/shard-1.snapshot");
    cr_assert_str_eq(b->shard_keys[2], "c/c-shards-2025-01-01-03-00-00/shard-10.snapshot");
    cr_assert_eq(b->shard_sizes[2], 300);
    cr_assert_eq(b->object_size, 600);
    cr_assert_str_eq(b->drill_key, "c/c-shards-2025-01-01-03-00-00.drill.json");
    b = find_backup(l.complete, l.ncomplete, ":.h/:.h-shards-2025-01-01-03-00-00.json");
    cr_assert_not_null(b);
    cr_assert_str_eq(b->collection, ".h");
    cr_assert_str_eq(b->snapshot, ".h-shards-2025-01-01-03-00-00");
    cr_assert_eq(b->nshards, 1);
    cr_assert_eq(l.norphans, 1);
    cr_assert_str_eq(l.orphans[0].manifest_key, "c/c-shards-2025-01-03-03-00-00.json");
    cr_assert_eq(l.orphans[0].nshards, 0);
    cr_assert_eq(l.nincomplete, 3);
    cr_assert_str_eq(l.incomplete[0].key, "c/c-shards-2025-01-01-03-00-00-x/shard-0.snapshot.gz");
    cr_assert_str_eq(l.incomplete[1].key, "c/c-shards-2025-01-02-03-00-00/shard-0.snapshot.gz");
    cr_assert_str_eq(l.incomplete[1].collection, "c");
    cr_assert_eq(l.incomplete[1].size, 7);
    cr_assert_str_eq(l.incomplete[2].key, "c/c-shards-2025-01-02-03-00-00/shard-1.snapshot.gz");
    cr_assert_eq(l.nignored, 8, "%zu", l.nignored);
    qs_manifest_listing_deinit(&l);
}
