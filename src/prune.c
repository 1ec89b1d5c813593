#include "qsnap/prune.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "qsnap/catalog.h"
#include "qsnap/log.h"
#include "qsnap/retention.h"

void qs_prune_result_init(struct qs_prune_result *r)
{
    memset(r, 0, sizeof(*r));
    qs_buf_init(&r->report);
}

void qs_prune_result_deinit(struct qs_prune_result *r)
{
    if (r == NULL)
        return;
    qs_buf_free(&r->report);
    memset(r, 0, sizeof(*r));
}

/* 1 when action i is the last object deletion of its backup (a shards
 * backup has several). */
static int last_object(const struct qs_retention_plan *plan, size_t i)
{
    const struct qs_retention_action *a = &plan->actions[i];
    return a->kind == QS_RETENTION_DELETE_OBJECT &&
           !(i + 1 < plan->nactions && plan->actions[i + 1].index == a->index &&
             plan->actions[i + 1].kind == QS_RETENTION_DELETE_OBJECT);
}

/* Counts a done (or, in a dry run, planned) action. A complete backup counts
 * once, at its last object, the last of its deletions, and only when every
 * object of it went (object_failed). */
static void count_action(struct qs_prune_result *out, const struct qs_retention_plan *plan,
                         size_t i, int object_failed)
{
    enum qs_retention_action_kind kind = plan->actions[i].kind;
    if (kind == QS_RETENTION_DELETE_OBJECT) {
        if (last_object(plan, i) && !object_failed)
            out->deleted_backups++;
    } else if (kind == QS_RETENTION_DELETE_INCOMPLETE)
        out->deleted_incomplete++;
    else if (kind == QS_RETENTION_ABORT_UPLOAD)
        out->aborted_uploads++;
}

int qs_prune_run(struct qs_storage *storage, const struct qs_config *cfg, int dry_run, int64_t now,
                 struct qs_progress *progress, struct qs_prune_result *out, struct qs_error *err)
{
    struct qs_catalog cat;
    struct qs_retention_plan plan;
    memset(&plan, 0, sizeof(plan));
    struct qs_retention_backup *in = NULL;
    struct qs_retention_upload *ups = NULL;
    const char **more = NULL;
    qs_progress_phase(progress, NULL, "prune-remote");
    int rc = qs_catalog_load(storage, NULL, QS_CATALOG_UPLOADS, &cat, err);
    if (rc != 0)
        goto done;
    out->unreadable = cat.unreadable;
    size_t n = cat.nbackups + cat.nincomplete;
    in = calloc(n + 1, sizeof(*in));
    ups = calloc(cat.nuploads + 1, sizeof(*ups));
    if (in == NULL || ups == NULL) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto done;
    }
    /* A shards backup's objects: the first is its object_key, the others
     * its more_keys (pointers into the catalog, in one array). */
    size_t nmore = 0;
    for (size_t i = 0; i < cat.nbackups; i++)
        nmore += cat.backups[i].m.nshards;
    more = calloc(nmore + 1, sizeof(*more));
    if (more == NULL) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto done;
    }
    size_t used = 0;
    for (size_t i = 0; i < cat.nbackups; i++) {
        const struct qs_catalog_backup *b = &cat.backups[i];
        const struct qs_manifest *m = &b->m;
        in[i] = (struct qs_retention_backup){
            .collection = m->collection,
            .snapshot = m->snapshot,
            .created = m->created,
            .complete = true,
            .object_key = m->nshards > 0 ? m->shards[0].object : m->object,
            .manifest_key = b->manifest_key,
            .last_modified = b->manifest_mtime,
            .drill_key = b->drill_key,
        };
        if (m->nshards > 1) {
            in[i].more_keys = &more[used];
            in[i].nmore = m->nshards - 1;
            for (size_t k = 1; k < m->nshards; k++)
                more[used++] = m->shards[k].object;
        }
    }
    for (size_t i = 0; i < cat.nincomplete; i++) {
        const struct qs_catalog_loose *l = &cat.incomplete[i];
        in[cat.nbackups + i] = (struct qs_retention_backup){
            .collection = l->collection,
            .complete = false,
            .object_key = l->key,
            .last_modified = l->time,
        };
    }
    for (size_t i = 0; i < cat.nuploads; i++)
        ups[i] = (struct qs_retention_upload){
            .key = cat.uploads[i].key,
            .upload_id = cat.uploads[i].upload_id,
            .initiated = cat.uploads[i].time,
        };
    struct qs_retention_policy pol = {
        .retention_s = cfg->retention_s,
        .keep_min = cfg->keep_min,
        .incomplete_grace_s = QS_RETENTION_INCOMPLETE_GRACE_S,
    };
    rc = qs_retention_plan(in, n, ups, cat.nuploads, now, &pol, &plan, err);
    if (rc != 0)
        goto done;
    for (size_t i = 0; i < plan.nwarnings; i++)
        QS_WARN("retention: %s", plan.warnings[i]);
    out->stored = plan.kept_complete;
    int object_failed = 0; /* an object of the backup being deleted could not be */
    for (size_t i = 0; i < plan.nactions; i++) {
        const struct qs_retention_action *a = &plan.actions[i];
        qs_buf_printf(&out->report, "%s %s (%s)\n", qs_retention_action_name(a->kind), a->key,
                      a->reason);
        if (a->kind == QS_RETENTION_DELETE_MANIFEST)
            object_failed = 0;
        if (dry_run) {
            count_action(out, &plan, i, 0);
            continue;
        }
        if (qs_cancel_requested(progress != NULL ? progress->cancel : NULL)) {
            rc = qs_error_set(err, QS_ECANCELED, "prune cancelled");
            break;
        }
        struct qs_error e;
        qs_error_clear(&e);
        int r;
        if (a->kind == QS_RETENTION_ABORT_UPLOAD)
            r = qs_storage_abort_upload(storage, a->key, a->upload_id, &e);
        else
            r = qs_storage_delete(storage, a->key, &e);
        struct qs_log_ctx c = QS_LOG_CTX_NONE;
        c.job = progress != NULL ? progress->job_id : NULL;
        c.collection = a->collection;
        c.snapshot = a->snapshot;
        c.phase = "prune-remote";
        if (r != 0) {
            out->failed++;
            object_failed |= a->kind == QS_RETENTION_DELETE_OBJECT;
            c.error = e.msg;
            qs_log(QS_LOG_ERROR, &c, "%s %s failed", qs_retention_action_name(a->kind), a->key);
            /* Never delete the object or drill result of a backup whose
             * manifest is still there. */
            while (a->kind == QS_RETENTION_DELETE_MANIFEST && i + 1 < plan.nactions &&
                   plan.actions[i + 1].index == a->index &&
                   (plan.actions[i + 1].kind == QS_RETENTION_DELETE_DRILL ||
                    plan.actions[i + 1].kind == QS_RETENTION_DELETE_OBJECT))
                i++;
            continue;
        }
        qs_log(QS_LOG_INFO, &c, "%s %s: %s", qs_retention_action_name(a->kind), a->key, a->reason);
        count_action(out, &plan, i, object_failed);
    }
    if (rc == 0 && out->failed > 0)
        rc = qs_error_set(err, QS_EIO, "%zu prune actions failed", out->failed);
done:
    qs_retention_plan_deinit(&plan);
    free(in);
    free(ups);
    free(more);
    qs_catalog_deinit(&cat);
    return rc;
}
