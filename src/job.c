#include "qsnap/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/log.h"

static atomic_uint job_seq;

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

struct qs_job *qs_job_new(enum qs_job_kind kind, const char *trigger)
{
    struct qs_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->kind = kind;
    j->state = QS_JOB_QUEUED;
    j->created_at = qs_clock_now();
    j->trigger = dup_or_null(trigger != NULL ? trigger : "api");
    if (j->trigger == NULL) {
        free(j);
        return NULL;
    }
    unsigned seq = atomic_fetch_add(&job_seq, 1) + 1;
    unsigned char rnd[4] = {0};
    uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL);
    snprintf(j->id, sizeof(j->id), "%s-%lld-%u-%02x%02x%02x%02x", qs_job_kind_name(kind),
             (long long)j->created_at, seq, rnd[0], rnd[1], rnd[2], rnd[3]);
    atomic_init(&j->bytes, 0);
    atomic_init(&j->cancel.requested, 0);
    return j;
}

void qs_job_free(struct qs_job *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->nitems; i++)
        qs_job_item_deinit(&j->items[i]);
    free(j->items);
    free(j->current);
    free(j->trigger);
    free(j->error);
    free(j);
}

const char *qs_job_state_name(enum qs_job_state s)
{
    switch (s) {
    case QS_JOB_QUEUED:
        return "queued";
    case QS_JOB_RUNNING:
        return "running";
    case QS_JOB_SUCCEEDED:
        return "succeeded";
    case QS_JOB_FAILED:
        return "failed";
    case QS_JOB_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

const char *qs_job_kind_name(enum qs_job_kind k)
{
    switch (k) {
    case QS_JOB_BACKUP:
        return "backup";
    case QS_JOB_RESTORE:
        return "restore";
    case QS_JOB_DRILL:
        return "drill";
    case QS_JOB_PRUNE:
        return "prune";
    }
    return "unknown";
}

int qs_job_is_final(const struct qs_job *j)
{
    return j->state == QS_JOB_SUCCEEDED || j->state == QS_JOB_FAILED ||
           j->state == QS_JOB_CANCELLED;
}

int qs_job_transition(struct qs_job *j, enum qs_job_state to, const char *error)
{
    int legal = 0;
    switch (j->state) {
    case QS_JOB_QUEUED:
        legal = to == QS_JOB_RUNNING || to == QS_JOB_CANCELLED;
        break;
    case QS_JOB_RUNNING:
        legal = to == QS_JOB_SUCCEEDED || to == QS_JOB_FAILED || to == QS_JOB_CANCELLED;
        break;
    default:
        legal = 0;
    }
    if (!legal)
        return QS_EINVAL;
    j->state = to;
    if (to == QS_JOB_RUNNING) {
        j->started_at = qs_clock_now();
        j->started_mono = qs_monotonic();
    } else {
        j->finished_at = qs_clock_now();
        j->phase = NULL;
        free(j->current);
        j->current = NULL;
        if (error != NULL) {
            free(j->error);
            j->error = strdup(error);
        }
    }
    return 0;
}

int qs_job_set_phase(struct qs_job *j, const char *collection, const char *phase)
{
    if (j->state != QS_JOB_RUNNING)
        return QS_EINVAL;
    j->phase = phase;
    if (collection == NULL || j->current == NULL || strcmp(collection, j->current) != 0) {
        free(j->current);
        j->current = dup_or_null(collection);
    }
    return 0;
}

void qs_job_item_deinit(struct qs_job_item *it)
{
    if (it == NULL)
        return;
    free(it->collection);
    free(it->snapshot);
    free(it->object);
    free(it->error);
    memset(it, 0, sizeof(*it));
}

int qs_job_item_copy(struct qs_job_item *dst, const struct qs_job_item *src)
{
    *dst = *src;
    dst->collection = dup_or_null(src->collection);
    dst->snapshot = dup_or_null(src->snapshot);
    dst->object = dup_or_null(src->object);
    dst->error = dup_or_null(src->error);
    if ((src->collection != NULL && dst->collection == NULL) ||
        (src->snapshot != NULL && dst->snapshot == NULL) ||
        (src->object != NULL && dst->object == NULL) ||
        (src->error != NULL && dst->error == NULL)) {
        qs_job_item_deinit(dst);
        return UV_ENOMEM;
    }
    return 0;
}

struct qs_job_item *qs_job_item(struct qs_job *j, const char *collection)
{
    for (size_t i = 0; i < j->nitems; i++)
        if (strcmp(j->items[i].collection, collection) == 0)
            return &j->items[i];
    struct qs_job_item *items = realloc(j->items, (j->nitems + 1) * sizeof(*items));
    if (items == NULL)
        return NULL;
    j->items = items;
    struct qs_job_item *it = &items[j->nitems];
    memset(it, 0, sizeof(*it));
    it->collection = strdup(collection);
    if (it->collection == NULL)
        return NULL;
    j->nitems++;
    return it;
}

void qs_job_counts(const struct qs_job *j, size_t *ok, size_t *failed)
{
    size_t o = 0, f = 0;
    for (size_t i = 0; i < j->nitems; i++) {
        if (!j->items[i].done)
            continue;
        if (j->items[i].ok)
            o++;
        else
            f++;
    }
    if (ok != NULL)
        *ok = o;
    if (failed != NULL)
        *failed = f;
}

static void add_time(cJSON *o, const char *key, int64_t t)
{
    if (t <= 0) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    char buf[21];
    qs_time_rfc3339(t, buf);
    cJSON_AddStringToObject(o, key, buf);
}

static void add_str(cJSON *o, const char *key, const char *v)
{
    if (v != NULL)
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

int qs_job_to_json(const struct qs_job *j, struct qs_buf *out)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return UV_ENOMEM;
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "kind", qs_job_kind_name(j->kind));
    cJSON_AddStringToObject(o, "state", qs_job_state_name(j->state));
    add_str(o, "phase", j->phase);
    add_str(o, "collection", j->current);
    add_str(o, "trigger", j->trigger);
    cJSON_AddNumberToObject(o, "bytes", (double)atomic_load(&((struct qs_job *)j)->bytes));
    add_time(o, "created", j->created_at);
    add_time(o, "started", j->started_at);
    add_time(o, "finished", j->finished_at);
    add_str(o, "error", j->error);
    cJSON *items = cJSON_AddArrayToObject(o, "collections");
    for (size_t i = 0; items != NULL && i < j->nitems; i++) {
        const struct qs_job_item *it = &j->items[i];
        cJSON *e = cJSON_CreateObject();
        if (e == NULL)
            break;
        cJSON_AddStringToObject(e, "collection", it->collection);
        cJSON_AddStringToObject(e, "result",
                                !it->done ? "pending"
                                : it->ok  ? "success"
                                          : "failure");
        add_str(e, "snapshot", it->snapshot);
        add_str(e, "object", it->object);
        cJSON_AddNumberToObject(e, "size", (double)it->size);
        cJSON_AddNumberToObject(e, "stored_size", (double)it->stored);
        cJSON_AddNumberToObject(e, "duration_s", it->duration_s);
        add_str(e, "error", it->error);
        add_str(e, "phase", it->done && !it->ok ? it->phase : NULL);
        cJSON_AddItemToArray(items, e);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s == NULL)
        return UV_ENOMEM;
    /* Errors quote peers' answers: they leave through the same secret
     * redaction as log lines and HTTP error bodies. */
    char *r = qs_log_redacted(s);
    cJSON_free(s);
    if (r == NULL)
        return UV_ENOMEM;
    int rc = qs_buf_append(out, r, strlen(r));
    free(r);
    return rc;
}

void qs_progress_phase(struct qs_progress *p, const char *collection, const char *phase)
{
    if (p != NULL && p->phase != NULL)
        p->phase(p, collection, phase);
}

void qs_progress_item_done(struct qs_progress *p, const struct qs_job_item *item)
{
    if (p != NULL && p->item_done != NULL)
        p->item_done(p, item);
}

void qs_progress_bytes(struct qs_progress *p, uint64_t n)
{
    if (p != NULL && p->bytes != NULL)
        atomic_fetch_add(p->bytes, n);
}
