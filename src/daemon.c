/* The serve daemon: loop, HTTP endpoint, metrics, signals (see daemon.h). */
#include "qsnap/daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "qsnap/log.h"

struct hook {
    qs_daemon_shutdown_fn cb;
    void *ud;
};

struct qs_daemon {
    const struct qs_config *cfg;
    uv_loop_t loop;
    int loop_ready;
    struct qs_http_server *http;
    struct qs_metrics *metrics;
    struct qs_http_gzip_cache metrics_gz; /* GET /metrics, gzipped */
    uv_signal_t sigterm, sigint;
    uv_timer_t deadline; /* forced exit after QS_DAEMON_DEADLINE_S */
    uv_timer_t finish;   /* completes shutdown from a fresh loop iteration */
    int handles_ready;
    struct hook *hooks;
    size_t nhooks;
    int holds;
    int shutting_down;
    int finishing;
    int ran;
};

static void exit_now_handler(int sig)
{
    (void)sig;
    _exit(0);
}

/* Soft open-file limit the daemon asks for (at most the hard limit): room for
 * the HTTP server's connection caps (4 x 256 open connections) and the rest
 * of the process. */
#define NOFILE_WANT 65536
#define NOFILE_NEEDED 1200

/* Raises the soft RLIMIT_NOFILE towards the hard limit, so a flood of
 * connections meets the HTTP server's own caps, not accept() failing with
 * EMFILE (which would drop health probes with the flood). */
static void raise_nofile_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = NOFILE_WANT;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        want = rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t before = rl.rlim_cur;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            QS_DEBUG("open-file limit raised from %llu to %llu", (unsigned long long)before,
                     (unsigned long long)want);
        else
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < NOFILE_NEEDED)
        qs_log(QS_LOG_WARN, NULL,
               "the open-file limit is %llu (hard limit %llu): the HTTP endpoint keeps fewer "
               "connections open under load; raise it to at least %d",
               (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, NOFILE_NEEDED);
}

/* ---- metrics of the HTTP endpoint ------------------------------------------ */

/* The families of the HTTP endpoint, in the order of the values below. */
static const enum qs_metric_id http_families[] = {
    QS_M_HTTP_ACCEPTED,  QS_M_HTTP_SHED, QS_M_HTTP_REFUSED,
    QS_M_HTTP_TIMED_OUT, QS_M_HTTP_BUSY, QS_M_HTTP_OPEN,
};

static void http_metrics_cb(struct qs_metrics *m, void *ud)
{
    struct qs_daemon *d = ud;
    struct qs_http_server_stats st;
    qs_http_server_stats(d->http, &st);
    const uint64_t v[] = {st.accepted, st.shed, st.refused, st.timed_out, st.busy, st.open};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        qs_metrics_set(m, qs_metric_defs[http_families[i]].name, NULL, (double)v[i]);
}

static int register_http_metrics(struct qs_daemon *d)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(http_families) / sizeof(http_families[0]); i++)
        rc = qs_metrics_register_id(d->metrics, http_families[i]);
    if (rc == 0)
        rc = qs_metrics_on_render(d->metrics, http_metrics_cb, d);
    return rc;
}

/* ---- routes -------------------------------------------------------------- */

static void healthz_cb(struct qs_http_req *req, void *ud)
{
    static const char body[] = "{\"status\":\"ok\"}";
    (void)ud;
    qs_http_respond(req, 200, "application/json", body, sizeof(body) - 1);
}

/* Rendered and gzipped only when the registry changed or the last render is
 * a second old (see metrics.h). */
static void metrics_cb(struct qs_http_req *req, void *ud)
{
    struct qs_daemon *d = ud;
    const char *text;
    size_t len;
    uint64_t version;
    if (qs_metrics_render_cached(d->metrics, uv_now(&d->loop), &text, &len, &version) != 0) {
        qs_http_respond_json_error(req, 500, "rendering metrics failed");
        return;
    }
    qs_http_respond_cached(req, 200, QS_METRICS_CONTENT_TYPE, NULL, text, len, QS_HTTP_GZIP_ALWAYS,
                           version, &d->metrics_gz);
}

/* ---- shutdown ------------------------------------------------------------- */

static void walk_close_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        QS_DEBUG("closing leftover %s handle", uv_handle_type_name(uv_handle_get_type(h)));
        uv_close(h, NULL);
    }
}

static void http_closed_cb(void *ud)
{
    struct qs_daemon *d = ud;
    d->http = NULL;
}

static void close_own_handles(struct qs_daemon *d)
{
    if (!d->handles_ready)
        return;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->deadline, NULL);
    uv_close((uv_handle_t *)&d->finish, NULL);
    d->handles_ready = 0;
}

static void finish_shutdown(struct qs_daemon *d)
{
    if (d->finishing)
        return;
    d->finishing = 1;
    qs_http_server_close(d->http, http_closed_cb, d);
    close_own_handles(d);
    /* libuv restored the default dispositions when the signal handles
     * closed; a signal from now on still means "exit 0 now". */
    qs_on_stop_signals(exit_now_handler);
    uv_walk(&d->loop, walk_close_cb, NULL);
}

static void finish_cb(uv_timer_t *t)
{
    finish_shutdown(t->data);
}

static void deadline_cb(uv_timer_t *t)
{
    struct qs_daemon *d = t->data;
    qs_log(QS_LOG_WARN, NULL,
           "shutdown deadline of %d s reached with %d task(s) still running; exiting",
           QS_DAEMON_DEADLINE_S, d->holds);
    _exit(0);
}

void qs_daemon_shutdown(struct qs_daemon *d, const char *reason)
{
    if (d == NULL || d->shutting_down)
        return;
    d->shutting_down = 1;
    qs_log(QS_LOG_INFO, NULL, "shutdown requested (%s)", reason != NULL ? reason : "internal");
    qs_http_server_stop_accepting(d->http);
    if (d->handles_ready)
        uv_timer_start(&d->deadline, deadline_cb, (uint64_t)QS_DAEMON_DEADLINE_S * 1000, 0);
    /* Hooks may register holds; run them with one hold of our own so that a
     * hook releasing synchronously cannot finish shutdown mid-iteration. */
    d->holds++;
    for (size_t i = 0; i < d->nhooks; i++)
        d->hooks[i].cb(d, d->hooks[i].ud);
    qs_daemon_release(d);
}

void qs_daemon_hold(struct qs_daemon *d)
{
    d->holds++;
}

void qs_daemon_release(struct qs_daemon *d)
{
    if (d->holds > 0)
        d->holds--;
    if (d->holds == 0 && d->shutting_down) {
        if (d->handles_ready)
            uv_timer_start(&d->finish, finish_cb, 0, 0);
        else
            finish_shutdown(d);
    }
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct qs_daemon *d = h->data;
    const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (d->shutting_down) {
        qs_log(QS_LOG_WARN, NULL, "second signal (%s): exiting now", name);
        _exit(0);
    }
    qs_daemon_shutdown(d, name);
}

/* ---- lifecycle ------------------------------------------------------------ */

int qs_daemon_on_shutdown(struct qs_daemon *d, qs_daemon_shutdown_fn cb, void *ud)
{
    if (d == NULL || cb == NULL)
        return QS_EINVAL;
    if (d->shutting_down)
        return QS_EBUSY;
    struct hook *p = realloc(d->hooks, (d->nhooks + 1) * sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    d->hooks = p;
    d->hooks[d->nhooks++] = (struct hook){cb, ud};
    return 0;
}

int qs_daemon_new(const struct qs_config *cfg, const struct qs_daemon_opts *opts,
                  struct qs_daemon **out, struct qs_error *err)
{
    *out = NULL;
    struct qs_daemon *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    d->cfg = cfg;
    qs_http_gzip_cache_init(&d->metrics_gz);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile_limit();
    int rc = uv_loop_init(&d->loop);
    if (rc != 0) {
        free(d);
        return qs_error_set(err, rc, "uv_loop_init: %s", uv_strerror(rc));
    }
    d->loop_ready = 1;
    d->metrics = qs_metrics_new(QS_METRICS_DEFAULT);
    struct qs_http_server_opts hopts = {.timeout_ms = opts != NULL ? opts->http_timeout_ms : 0};
    if (d->metrics == NULL || (rc = qs_http_server_new(&d->loop, &hopts, &d->http)) != 0) {
        qs_daemon_free(d);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    if ((rc = qs_http_route(d->http, "GET", "/healthz", healthz_cb, d)) != 0 ||
        (rc = qs_http_route(d->http, "GET", "/metrics", metrics_cb, d)) != 0 ||
        (rc = register_http_metrics(d)) != 0) {
        qs_daemon_free(d);
        return qs_error_set(err, rc, "adding routes: %s", qs_strerror(rc));
    }
    rc = qs_http_server_listen(d->http, cfg->listen_host, cfg->listen_port, err);
    if (rc != 0) {
        qs_daemon_free(d);
        return rc;
    }
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_timer_init(&d->loop, &d->deadline);
    uv_timer_init(&d->loop, &d->finish);
    d->sigterm.data = d->sigint.data = d;
    d->deadline.data = d->finish.data = d;
    d->handles_ready = 1;
    if ((rc = uv_signal_start(&d->sigterm, signal_cb, SIGTERM)) != 0 ||
        (rc = uv_signal_start(&d->sigint, signal_cb, SIGINT)) != 0) {
        qs_daemon_free(d);
        return qs_error_set(err, rc, "signal handlers: %s", uv_strerror(rc));
    }
    *out = d;
    return 0;
}

uv_loop_t *qs_daemon_loop(struct qs_daemon *d)
{
    return &d->loop;
}

struct qs_http_server *qs_daemon_http(struct qs_daemon *d)
{
    return d->http;
}

struct qs_metrics *qs_daemon_metrics(struct qs_daemon *d)
{
    return d->metrics;
}

/* Closes every handle and runs the loop until uv_loop_close() succeeds. */
static int close_loop(struct qs_daemon *d)
{
    int rc = UV_EBUSY;
    for (int attempt = 0; attempt < 10; attempt++) {
        uv_walk(&d->loop, walk_close_cb, NULL);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        rc = uv_loop_close(&d->loop);
        if (rc == 0)
            break;
    }
    d->loop_ready = 0;
    return rc;
}

int qs_daemon_run(struct qs_daemon *d)
{
    if (d == NULL || d->ran)
        return QS_EINVAL;
    d->ran = 1;
    const struct qs_config *cfg = d->cfg;
    const char *host =
        cfg->listen_host != NULL && cfg->listen_host[0] ? cfg->listen_host : "0.0.0.0";
    int v6 = strchr(host, ':') != NULL && host[0] != '[';
    qs_log(QS_LOG_INFO, NULL, "qsnap %s listening on %s%s%s:%d", QSNAP_VERSION, v6 ? "[" : "", host,
           v6 ? "]" : "", qs_http_server_port(d->http));
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (!d->finishing) {
        /* The loop ran dry without a shutdown (nothing left to wait for). */
        d->shutting_down = 1;
        finish_shutdown(d);
    }
    int rc = close_loop(d);
    if (rc != 0) {
        qs_log(QS_LOG_ERROR, NULL, "loop did not close: %s", uv_strerror(rc));
        return rc;
    }
    qs_log(QS_LOG_INFO, NULL, "loop closed");
    return 0;
}

void qs_daemon_free(struct qs_daemon *d)
{
    if (d == NULL)
        return;
    if (d->loop_ready) {
        /* Never ran (or failed during setup): close what is open. */
        if (d->http != NULL)
            qs_http_server_close(d->http, http_closed_cb, d);
        close_own_handles(d);
        close_loop(d);
    }
    qs_metrics_free(d->metrics);
    qs_http_gzip_cache_deinit(&d->metrics_gz);
    free(d->hooks);
    free(d);
}
