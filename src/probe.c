/* Readiness probes of the daemon (see probe.h). */
#include "qsnap/probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/catalog.h"
#include "qsnap/log.h"

struct qs_probe {
    uv_loop_t *loop;
    const struct qs_config *cfg;
    struct qs_storage *storage;
    struct qs_qdrant *qdrant;
    struct qs_series *series;
    uint64_t interval_ms;

    uv_timer_t timer;
    int timer_open;
    int probing;
    int closing;
    void (*close_cb)(void *);
    void *close_ud;

    int probed;
    int qdrant_up, dest_up;
    char qdrant_err[300], dest_err[300];
    struct qs_cluster_view cluster;
};

/* One probe on the threadpool; owned by the prober until after_cb. */
struct work {
    uv_work_t req;
    struct qs_probe *p;
    int seed; /* also load the catalog to seed metrics */
    int qdrant_rc, dest_rc;
    struct qs_error qerr, derr;
    int listed; /* qcolls holds Qdrant's collections */
    char **qcolls;
    size_t nqcolls;
    struct qs_catalog cat;
    int cat_rc;
    struct qs_cluster_view cluster;
};

static void warn(const char *what, const char *error)
{
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.error = error;
    qs_log(QS_LOG_WARN, &c, "%s", what);
}

static void work_cb(uv_work_t *req)
{
    struct work *w = req->data;
    struct qs_probe *p = w->p;
    qs_error_clear(&w->qerr);
    qs_error_clear(&w->derr);
    w->qdrant_rc = qs_qdrant_probe(p->qdrant, &w->qerr);
    if (w->qdrant_rc == 0 && p->cfg->mode == QS_MODE_COLLECTIONS) {
        struct qs_error e;
        qs_error_clear(&e);
        w->listed = qs_qdrant_list_collections(p->qdrant, &w->qcolls, &w->nqcolls, &e) == 0;
        if (!w->listed)
            warn("could not list Qdrant's collections", e.msg);
    }
    qs_cluster_view_check(p->qdrant, p->cfg, &w->cluster);
    w->dest_rc = qs_storage_probe(p->storage, &w->derr);
    w->cat_rc = -1;
    if (w->seed && w->dest_rc == 0) {
        struct qs_error e;
        qs_error_clear(&e);
        w->cat_rc = qs_catalog_load(p->storage, NULL, QS_CATALOG_DRILLS, &w->cat, &e);
        if (w->cat_rc != 0)
            warn("could not read the destination's manifests", e.msg);
    }
}

static void maybe_closed(struct qs_probe *p);

/* Logs a change of the cluster view's role (and the first view). */
static void cluster_changed(const struct qs_probe *p, const struct qs_cluster_view *v)
{
    if (p->probed && v->role == p->cluster.role &&
        (v->role == QS_CLUSTER_ROLE_UNKNOWN || v->info.leader == p->cluster.info.leader))
        return;
    char why[700];
    qs_cluster_view_reason(v, why, sizeof(why));
    if (v->role == QS_CLUSTER_ROLE_UNKNOWN)
        warn("cluster view: Qdrant cannot be asked; scheduled work waits for an answer", why);
    else if (v->role != QS_CLUSTER_ROLE_OFF)
        QS_INFO("cluster view: %s", why);
}

static void after_cb(uv_work_t *req, int status)
{
    struct work *w = req->data;
    struct qs_probe *p = w->p;
    p->probing = 0;
    if (status == 0) {
        if (w->qdrant_rc == 0 && !p->qdrant_up)
            QS_INFO("Qdrant is reachable");
        if (w->qdrant_rc != 0 && (p->qdrant_up || !p->probed))
            warn("Qdrant probe failed", w->qerr.msg);
        if (w->dest_rc != 0 && (p->dest_up || !p->probed))
            warn("destination probe failed", w->derr.msg);
        p->qdrant_up = w->qdrant_rc == 0;
        p->dest_up = w->dest_rc == 0;
        snprintf(p->qdrant_err, sizeof(p->qdrant_err), "%s", p->qdrant_up ? "" : w->qerr.msg);
        snprintf(p->dest_err, sizeof(p->dest_err), "%s", p->dest_up ? "" : w->derr.msg);
        cluster_changed(p, &w->cluster);
        p->probed = 1;
        qs_series_probed(p->series, p->qdrant_up, p->dest_up);
        qs_cluster_view_move(&p->cluster, &w->cluster);
        qs_series_cluster_role(p->series, p->cluster.role);
        if (w->cat_rc == 0)
            qs_series_seed(p->series, &w->cat);
        if (w->listed)
            qs_series_listing(p->series, w->qcolls, w->nqcolls);
    }
    qs_catalog_deinit(&w->cat);
    qs_qdrant_strv_free(w->qcolls, w->nqcolls);
    qs_cluster_view_deinit(&w->cluster);
    free(w);
    maybe_closed(p);
}

static void probe_now(struct qs_probe *p)
{
    if (p->probing || p->closing)
        return;
    struct work *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return;
    w->req.data = w;
    w->p = p;
    qs_cluster_view_init(&w->cluster);
    w->seed = !qs_series_seeded(p->series);
    p->probing = 1;
    if (uv_queue_work(p->loop, &w->req, work_cb, after_cb) != 0) {
        p->probing = 0;
        free(w);
    }
}

static void timer_cb(uv_timer_t *t)
{
    probe_now(t->data);
}

int qs_probe_start(struct qs_probe *p)
{
    if (p->closing)
        return QS_ECANCELED;
    probe_now(p);
    return uv_timer_start(&p->timer, timer_cb, p->interval_ms, p->interval_ms);
}

void qs_probe_status(const struct qs_probe *p, struct qs_probe_status *st)
{
    st->probed = p->probed;
    st->qdrant_up = p->qdrant_up;
    st->destination_up = p->dest_up;
    st->qdrant_error = p->qdrant_err;
    st->destination_error = p->dest_err;
    st->cluster = &p->cluster;
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct qs_probe *p = h->data;
    p->timer_open = 0;
    void (*cb)(void *) = p->close_cb;
    p->close_cb = NULL;
    if (cb != NULL)
        cb(p->close_ud);
}

static void maybe_closed(struct qs_probe *p)
{
    if (!p->closing || p->probing || !p->timer_open || uv_is_closing((uv_handle_t *)&p->timer))
        return;
    uv_close((uv_handle_t *)&p->timer, timer_closed_cb);
}

void qs_probe_close(struct qs_probe *p, void (*done)(void *ud), void *ud)
{
    if (!p->timer_open) {
        if (done != NULL)
            done(ud);
        return;
    }
    p->close_cb = done;
    p->close_ud = ud;
    p->closing = 1;
    uv_timer_stop(&p->timer);
    maybe_closed(p);
}

int qs_probe_new(uv_loop_t *loop, const struct qs_config *cfg, struct qs_storage *storage,
                 struct qs_qdrant *qdrant, struct qs_series *series, uint64_t interval_ms,
                 struct qs_probe **out)
{
    *out = NULL;
    struct qs_probe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    p->loop = loop;
    p->cfg = cfg;
    p->storage = storage;
    p->qdrant = qdrant;
    p->series = series;
    p->interval_ms = interval_ms > 0 ? interval_ms : QS_PROBE_INTERVAL_MS;
    qs_cluster_view_init(&p->cluster);
    p->cluster.setting = cfg->cluster;
    int rc = uv_timer_init(loop, &p->timer);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->timer.data = p;
    p->timer_open = 1;
    *out = p;
    return 0;
}

void qs_probe_free(struct qs_probe *p)
{
    if (p != NULL)
        qs_cluster_view_deinit(&p->cluster);
    free(p);
}
