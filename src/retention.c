#include "qsnap/retention.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "qsnap/util.h"

const char *qs_retention_action_name(enum qs_retention_action_kind kind)
{
    switch (kind) {
    case QS_RETENTION_DELETE_MANIFEST:
        return "delete-manifest";
    case QS_RETENTION_DELETE_DRILL:
        return "delete-drill-result";
    case QS_RETENTION_DELETE_OBJECT:
        return "delete-object";
    case QS_RETENTION_DELETE_INCOMPLETE:
        return "delete-incomplete";
    case QS_RETENTION_ABORT_UPLOAD:
        return "abort-upload";
    }
    return "unknown";
}

/* now - t, saturating at INT64_MAX; 0 for a time at or after now. */
static int64_t age_of(int64_t now, int64_t t)
{
    if (t >= now)
        return 0;
    uint64_t d = (uint64_t)now - (uint64_t)t;
    return d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
}

/* 1 when t lies more than the tolerated skew after now. */
static bool beyond_skew(int64_t t, int64_t now)
{
    return t > now && (uint64_t)t - (uint64_t)now > QS_RETENTION_CLOCK_SKEW_S;
}

int64_t qs_retention_backup_time(int64_t created, int64_t written, int64_t now, bool *suspect)
{
    bool sus = beyond_skew(created, now);
    if (suspect != NULL)
        *suspect = sus;
    if (!sus)
        return created;
    if (written > 0 && !beyond_skew(written, now))
        return written; /* before created, which lies beyond the skew */
    return -1;
}

int qs_retention_is_stale(int64_t newest, int64_t first_seen, int64_t now, int64_t stale_after_s)
{
    int64_t since = newest > 0 ? newest : first_seen;
    if (since <= 0)
        return 1;
    return age_of(now, since) > stale_after_s;
}

static void time_str(int64_t t, char out[32])
{
    if (t < 0 || t > 253402300799LL) {
        snprintf(out, 32, "@%" PRId64, t);
        return;
    }
    qs_time_rfc3339(t, out);
}

static char *dup_or_null(const char *s, int *failed)
{
    if (s == NULL)
        return NULL;
    char *p = strdup(s);
    if (p == NULL)
        *failed = 1;
    return p;
}

struct builder {
    struct qs_retention_plan *plan;
    size_t cap_actions;
    size_t cap_warnings;
};

static struct qs_retention_action *add_action(struct builder *b, enum qs_retention_action_kind kind,
                                              const char *collection, const char *snapshot,
                                              const char *key, const char *upload_id, size_t index)
{
    struct qs_retention_plan *p = b->plan;
    if (p->nactions == b->cap_actions)
        return NULL; /* capacity is computed up front; never reached */
    struct qs_retention_action *a = &p->actions[p->nactions];
    memset(a, 0, sizeof(*a));
    int failed = 0;
    a->kind = kind;
    a->collection = dup_or_null(collection, &failed);
    a->snapshot = dup_or_null(snapshot, &failed);
    a->key = dup_or_null(key, &failed);
    a->upload_id = dup_or_null(upload_id, &failed);
    a->index = index;
    p->nactions++; /* counted even on failure so deinit frees the parts */
    return failed ? NULL : a;
}

/* An action on a leftover past the grace (an object without manifest, an
 * open upload), its reason "<what> <time>, age Ns > grace Ns". */
static struct qs_retention_action *
add_leftover(struct builder *b, enum qs_retention_action_kind kind, const char *collection,
             const char *snapshot, const char *key, const char *upload_id, size_t index,
             const char *what, int64_t t, int64_t now, const struct qs_retention_policy *policy)
{
    struct qs_retention_action *a =
        add_action(b, kind, collection, snapshot, key, upload_id, index);
    if (a == NULL)
        return NULL;
    char when[32];
    time_str(t, when);
    snprintf(a->reason, sizeof(a->reason), "%s %s, age %" PRId64 "s > grace %" PRId64 "s", what,
             when, age_of(now, t), policy->incomplete_grace_s);
    return a;
}

__attribute__((format(printf, 2, 3))) static int add_warning(struct builder *b, const char *fmt,
                                                             ...)
{
    struct qs_retention_plan *p = b->plan;
    if (p->nwarnings == b->cap_warnings)
        return UV_ENOMEM;
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    p->warnings[p->nwarnings] = strdup(tmp);
    if (p->warnings[p->nwarnings] == NULL)
        return UV_ENOMEM;
    p->nwarnings++;
    return 0;
}

/* Ordering of complete backups: collection, then the time they are dated by
 * (undatable ones first), then suspect before genuine, then snapshot name,
 * then input position (all ascending). */
struct sort_ctx_item {
    const struct qs_retention_backup *b;
    size_t index;
    int64_t t; /* qs_retention_backup_time(), -1 = cannot be dated */
    bool suspect;
};

static int strcmp_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return (a != NULL) - (b != NULL);
    return strcmp(a, b);
}

static int item_cmp(const void *x, const void *y)
{
    const struct sort_ctx_item *a = x, *b = y;
    int c = strcmp_null(a->b->collection, b->b->collection);
    if (c != 0)
        return c;
    if (a->t != b->t)
        return a->t < b->t ? -1 : 1;
    /* At the same time a suspect backup counts as the older one: its time
     * is at best when it was written. */
    if (a->suspect != b->suspect)
        return a->suspect ? -1 : 1;
    c = strcmp_null(a->b->snapshot, b->b->snapshot);
    if (c != 0)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

void qs_retention_plan_deinit(struct qs_retention_plan *plan)
{
    if (plan == NULL)
        return;
    for (size_t i = 0; i < plan->nactions; i++) {
        free(plan->actions[i].collection);
        free(plan->actions[i].snapshot);
        free(plan->actions[i].key);
        free(plan->actions[i].upload_id);
    }
    for (size_t i = 0; i < plan->nwarnings; i++)
        free(plan->warnings[i]);
    free(plan->actions);
    free(plan->warnings);
    free(plan->keep);
    memset(plan, 0, sizeof(*plan));
}

static int validate_input(const struct qs_retention_backup *backups, size_t n,
                          const struct qs_retention_upload *uploads, size_t nuploads,
                          const struct qs_retention_policy *policy, struct qs_error *err)
{
    if (policy == NULL)
        return qs_error_set(err, QS_EINVAL, "retention: no policy");
    if (policy->retention_s < 0)
        return qs_error_set(err, QS_EINVAL, "retention: negative retention");
    if (policy->incomplete_grace_s < 0)
        return qs_error_set(err, QS_EINVAL, "retention: negative grace period");
    if ((n > 0 && backups == NULL) || (nuploads > 0 && uploads == NULL))
        return qs_error_set(err, QS_EINVAL, "retention: missing input array");
    for (size_t i = 0; i < n; i++) {
        const struct qs_retention_backup *b = &backups[i];
        if (b->object_key == NULL)
            return qs_error_set(err, QS_EINVAL, "retention: backup %zu has no object key", i);
        for (size_t k = 0; k < b->nmore; k++)
            if (b->more_keys == NULL || b->more_keys[k] == NULL)
                return qs_error_set(err, QS_EINVAL,
                                    "retention: backup %zu lacks one of its further object keys",
                                    i);
        if (b->complete && (b->manifest_key == NULL || b->collection == NULL))
            return qs_error_set(err, QS_EINVAL,
                                "retention: complete backup %zu has no manifest key or collection",
                                i);
    }
    for (size_t i = 0; i < nuploads; i++) {
        if (uploads[i].key == NULL || uploads[i].upload_id == NULL)
            return qs_error_set(err, QS_EINVAL, "retention: upload %zu has no key or id", i);
    }
    return 0;
}

static int warn_suspect(struct builder *bld, const struct qs_retention_backup *b, int64_t t,
                        int64_t now)
{
    char created[32], written[32];
    time_str(b->created, created);
    time_str(b->last_modified, written);
    int64_t ahead = b->created - now;
    if (t >= 0)
        return add_warning(bld,
                           "collection %s: snapshot %s (manifest %s) is dated %s, %" PRId64
                           " s ahead of this clock (Qdrant's clock ahead?); not trusted, dated "
                           "by when it was written (%s) instead",
                           b->collection, b->snapshot != NULL ? b->snapshot : "?", b->manifest_key,
                           created, ahead, written);
    return add_warning(bld,
                       "collection %s: snapshot %s (manifest %s) is dated %s, %" PRId64
                       " s ahead of this clock (clock skew?), and its manifest was written at "
                       "an unknown or future time (%s): kept and not counted toward keep_min",
                       b->collection, b->snapshot != NULL ? b->snapshot : "?", b->manifest_key,
                       created, ahead, b->last_modified > 0 ? written : "unknown");
}

static int plan_complete(struct builder *bld, const struct qs_retention_backup *backups, size_t n,
                         int64_t now, const struct qs_retention_policy *policy)
{
    struct qs_retention_plan *plan = bld->plan;
    size_t ncomplete = 0;
    for (size_t i = 0; i < n; i++)
        ncomplete += backups[i].complete;
    if (ncomplete == 0)
        return 0;
    struct sort_ctx_item *items = calloc(ncomplete, sizeof(*items));
    bool *del = calloc(ncomplete, sizeof(*del));
    if (items == NULL || del == NULL) {
        free(items);
        free(del);
        return UV_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!backups[i].complete)
            continue;
        struct sort_ctx_item *it = &items[k++];
        it->b = &backups[i];
        it->index = i;
        it->t = qs_retention_backup_time(backups[i].created, backups[i].last_modified, now,
                                         &it->suspect);
    }
    qsort(items, ncomplete, sizeof(*items), item_cmp);

    int rc = 0;
    char dated[32], ret[32];
    snprintf(ret, sizeof(ret), "%" PRId64 "s", policy->retention_s);
    for (size_t g0 = 0; g0 < ncomplete && rc == 0;) {
        size_t g1 = g0 + 1;
        while (g1 < ncomplete && strcmp_null(items[g1].b->collection, items[g0].b->collection) == 0)
            g1++;
        /* Newest first. Genuine backups rank among genuine ones only; suspect
         * ones among all datable ones. */
        uint64_t rank_genuine = 0, rank_all = 0;
        for (size_t j = g1; j-- > g0 && rc == 0;) {
            const struct sort_ctx_item *it = &items[j];
            if (it->suspect) {
                plan->suspect++;
                rc = warn_suspect(bld, it->b, it->t, now);
                if (it->t < 0) {
                    plan->kept_future++;
                    continue;
                }
                if (rank_all++ < policy->keep_min)
                    continue;
            } else {
                rank_all++;
                if (rank_genuine++ < policy->keep_min)
                    continue;
            }
            if (age_of(now, it->t) > policy->retention_s)
                del[j] = true;
        }
        /* Oldest first; manifest, then drill result, then object. */
        for (size_t j = g0; j < g1 && rc == 0; j++) {
            if (!del[j])
                continue;
            const struct qs_retention_backup *b = items[j].b;
            const size_t idx = items[j].index;
            time_str(items[j].t, dated);
            struct qs_retention_action *a =
                add_action(bld, QS_RETENTION_DELETE_MANIFEST, b->collection, b->snapshot,
                           b->manifest_key, NULL, idx);
            struct qs_retention_action *d =
                a == NULL || b->drill_key == NULL
                    ? NULL
                    : add_action(bld, QS_RETENTION_DELETE_DRILL, b->collection, b->snapshot,
                                 b->drill_key, NULL, idx);
            struct qs_retention_action *o =
                a == NULL || (b->drill_key != NULL && d == NULL)
                    ? NULL
                    : add_action(bld, QS_RETENTION_DELETE_OBJECT, b->collection, b->snapshot,
                                 b->object_key, NULL, idx);
            if (o == NULL) {
                rc = UV_ENOMEM;
                break;
            }
            snprintf(a->reason, sizeof(a->reason),
                     "%s %s, age %" PRId64 "s > retention %s, not among the %" PRIu32 " newest",
                     items[j].suspect ? "written" : "created", dated, age_of(now, items[j].t), ret,
                     policy->keep_min);
            if (d != NULL)
                snprintf(d->reason, sizeof(d->reason),
                         "drill result of pruned backup (manifest %s)", b->manifest_key);
            snprintf(o->reason, sizeof(o->reason), "object of pruned backup (manifest %s)",
                     b->manifest_key);
            for (size_t m = 0; m < b->nmore; m++) {
                struct qs_retention_action *x =
                    add_action(bld, QS_RETENTION_DELETE_OBJECT, b->collection, b->snapshot,
                               b->more_keys[m], NULL, idx);
                if (x == NULL) {
                    rc = UV_ENOMEM;
                    break;
                }
                snprintf(x->reason, sizeof(x->reason), "object of pruned backup (manifest %s)",
                         b->manifest_key);
            }
            if (rc != 0)
                break;
            plan->keep[idx] = false;
            plan->deleted_backups++;
        }
        g0 = g1;
    }
    plan->kept_complete = ncomplete - plan->deleted_backups;
    free(items);
    free(del);
    return rc;
}

int qs_retention_plan(const struct qs_retention_backup *backups, size_t n,
                      const struct qs_retention_upload *uploads, size_t nuploads, int64_t now,
                      const struct qs_retention_policy *policy, struct qs_retention_plan *out,
                      struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    int rc = validate_input(backups, n, uploads, nuploads, policy, err);
    if (rc != 0)
        return rc;
    size_t more = 0;
    for (size_t i = 0; i < n; i++)
        more += backups[i].complete ? backups[i].nmore : 0;
    struct builder bld = {.plan = out, .cap_actions = 3 * n + nuploads + more, .cap_warnings = n};
    if (bld.cap_actions > 0 &&
        (out->actions = calloc(bld.cap_actions, sizeof(*out->actions))) == NULL)
        goto nomem;
    if (n > 0 && ((out->warnings = calloc(n, sizeof(*out->warnings))) == NULL ||
                  (out->keep = calloc(n, sizeof(*out->keep))) == NULL))
        goto nomem;
    out->nbackups = n;
    for (size_t i = 0; i < n; i++)
        out->keep[i] = true;

    if ((rc = plan_complete(&bld, backups, n, now, policy)) != 0)
        goto nomem;

    for (size_t i = 0; i < n; i++) {
        const struct qs_retention_backup *b = &backups[i];
        if (b->complete || b->last_modified > now ||
            age_of(now, b->last_modified) <= policy->incomplete_grace_s)
            continue;
        if (add_leftover(&bld, QS_RETENTION_DELETE_INCOMPLETE, b->collection, b->snapshot,
                         b->object_key, NULL, i, "no manifest, last modified", b->last_modified,
                         now, policy) == NULL)
            goto nomem;
        out->keep[i] = false;
        out->deleted_incomplete++;
    }
    for (size_t i = 0; i < nuploads; i++) {
        const struct qs_retention_upload *u = &uploads[i];
        if (u->initiated > now || age_of(now, u->initiated) <= policy->incomplete_grace_s)
            continue;
        if (add_leftover(&bld, QS_RETENTION_ABORT_UPLOAD, NULL, NULL, u->key, u->upload_id, i,
                         "multipart upload initiated", u->initiated, now, policy) == NULL)
            goto nomem;
        out->aborted_uploads++;
    }
    return 0;

nomem:
    qs_retention_plan_deinit(out);
    return qs_error_set(err, UV_ENOMEM, "retention: out of memory");
}

size_t qs_retention_count_kept(const struct qs_retention_plan *plan,
                               const struct qs_retention_backup *backups, size_t n,
                               const char *collection)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        const struct qs_retention_backup *b = &backups[i];
        if (!b->complete)
            continue;
        if (plan != NULL && i < plan->nbackups && !plan->keep[i])
            continue;
        if (collection != NULL && strcmp_null(b->collection, collection) != 0)
            continue;
        count++;
    }
    return count;
}

int qs_retention_newest(const struct qs_retention_plan *plan,
                        const struct qs_retention_backup *backups, size_t n, const char *collection,
                        int64_t now, int64_t *created)
{
    int found = 0;
    int64_t best = 0;
    for (size_t i = 0; i < n; i++) {
        const struct qs_retention_backup *b = &backups[i];
        int64_t t =
            b->complete ? qs_retention_backup_time(b->created, b->last_modified, now, NULL) : -1;
        if (t < 0)
            continue;
        if (plan != NULL && i < plan->nbackups && !plan->keep[i])
            continue;
        if (collection != NULL && strcmp_null(b->collection, collection) != 0)
            continue;
        if (!found || t > best) {
            best = t;
            found = 1;
        }
    }
    if (!found)
        return QS_ENOTFOUND;
    *created = best;
    return 0;
}
