/* Test hooks: knobs that let the test suites drive time-dependent behaviour
 * quickly. They exist only in a build configured with -Dtest_hooks=true
 * (meson defines QSNAP_TEST_HOOKS and compiles src/testhooks.c); a release
 * build gets the inline stubs below, so its binary reads no such variable
 * and holds none of their names. Not part of the configuration contract.
 *
 * In a hooks build each knob is an environment variable (milliseconds,
 * 1..600000; anything else is ignored):
 *   HTTP_TIMEOUT    the HTTP server's per-connection deadline (default 10 s);
 *   SHUTDOWN_DELAY  holds the daemon's shutdown that long (a job slow to
 *                   cancel: tests of the second signal and the deadline);
 *   PROBE_INTERVAL  the readiness probe interval (default 30 s);
 *   QDRANT_TIMEOUT  the Qdrant client's request and snapshot timeouts;
 *   ACTIVE_WAIT     how long a cluster restore waits for every replica to
 *                   turn Active (default 10 min);
 *   RETRY_BASE      the first backoff of a backup step's retries and of the
 *                   S3 client's (defaults 1 s and 200 ms), so that tests can
 *                   exhaust them quickly;
 * and the clock: a start time in UTC seconds from which the injectable clock
 * (util.h) advances with real time. The variables are named
 * QSNAP_TEST_<knob> and QSNAP_TEST_NOW. */
#ifndef QSNAP_TESTHOOKS_H
#define QSNAP_TESTHOOKS_H

#include <stdint.h>

#include "qsnap/daemon.h"

enum qs_testhook {
    QS_TESTHOOK_HTTP_TIMEOUT,
    QS_TESTHOOK_SHUTDOWN_DELAY,
    QS_TESTHOOK_PROBE_INTERVAL,
    QS_TESTHOOK_QDRANT_TIMEOUT,
    QS_TESTHOOK_ACTIVE_WAIT,
    QS_TESTHOOK_RETRY_BASE,
};

#ifdef QSNAP_TEST_HOOKS

/* The knob's value in milliseconds, 0 when unset or invalid. */
uint64_t qs_testhook_ms(enum qs_testhook h);

/* Shifts the injectable clock to the test start time, when one is set. */
void qs_testhook_apply_clock(void);

/* 1 when name (borrowed, the variable's name) belongs to the test suites,
 * so the unknown-variable warning leaves it alone. */
int qs_testhook_owns_variable(const char *name);

/* Registers the shutdown delay with d (borrowed), when one is set.
 * Returns 0 or a negative code. */
int qs_testhook_install(struct qs_daemon *d);

#else

static inline uint64_t qs_testhook_ms(enum qs_testhook h)
{
    (void)h;
    return 0;
}

static inline void qs_testhook_apply_clock(void)
{
}

static inline int qs_testhook_owns_variable(const char *name)
{
    (void)name;
    return 0;
}

static inline int qs_testhook_install(struct qs_daemon *d)
{
    (void)d;
    return 0;
}

#endif

#endif
