/* Test hooks, compiled only with -Dtest_hooks=true (see testhooks.h). */
#include "qsnap/testhooks.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qsnap/log.h"
#include "qsnap/util.h"

#define PREFIX "QSNAP_TEST_"

static const char *const knob_names[] = {
    [QS_TESTHOOK_HTTP_TIMEOUT] = PREFIX "HTTP_TIMEOUT_MS",
    [QS_TESTHOOK_SHUTDOWN_DELAY] = PREFIX "SHUTDOWN_DELAY_MS",
    [QS_TESTHOOK_PROBE_INTERVAL] = PREFIX "PROBE_INTERVAL_MS",
    [QS_TESTHOOK_QDRANT_TIMEOUT] = PREFIX "QDRANT_TIMEOUT_MS",
    [QS_TESTHOOK_ACTIVE_WAIT] = PREFIX "ACTIVE_WAIT_MS",
    [QS_TESTHOOK_RETRY_BASE] = PREFIX "RETRY_BASE_MS",
};

uint64_t qs_testhook_ms(enum qs_testhook h)
{
    if ((size_t)h >= sizeof(knob_names) / sizeof(knob_names[0]))
        return 0;
    const char *v = getenv(knob_names[h]);
    if (v == NULL || *v == '\0')
        return 0;
    uint64_t ms;
    return qs_parse_u64(v, &ms) == 0 && ms > 0 && ms <= 600000 ? ms : 0;
}

static int64_t clock_offset;

static int64_t offset_clock(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec + clock_offset;
}

void qs_testhook_apply_clock(void)
{
    const char *v = getenv(PREFIX "NOW");
    if (v == NULL || *v == '\0')
        return;
    uint64_t t;
    if (qs_parse_u64(v, &t) != 0 || t == 0 || t > INT64_MAX)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    clock_offset = (int64_t)t - (int64_t)ts.tv_sec;
    qs_clock_set(offset_clock, NULL);
    QS_WARN("test clock in use: time is shifted by %lld s", (long long)clock_offset);
}

int qs_testhook_owns_variable(const char *name)
{
    return strncmp(name, PREFIX, strlen(PREFIX)) == 0;
}

/* The shutdown delay: a hold on the daemon released by a timer. */
static uv_timer_t delay_timer;
static uint64_t delay_ms;

static void delay_cb(uv_timer_t *t)
{
    qs_daemon_release(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void delay_hook(struct qs_daemon *d, void *ud)
{
    (void)ud;
    qs_daemon_hold(d);
    uv_timer_start(&delay_timer, delay_cb, delay_ms, 0);
}

int qs_testhook_install(struct qs_daemon *d)
{
    delay_ms = qs_testhook_ms(QS_TESTHOOK_SHUTDOWN_DELAY);
    if (delay_ms == 0)
        return 0;
    int rc = uv_timer_init(qs_daemon_loop(d), &delay_timer);
    if (rc != 0)
        return rc;
    delay_timer.data = d;
    return qs_daemon_on_shutdown(d, delay_hook, NULL);
}
