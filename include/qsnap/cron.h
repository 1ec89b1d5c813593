/* 5-field cron expressions evaluated in UTC (QSNAP_SCHEDULE, QSNAP_DRILL_SCHEDULE).
 * Pure functions of (expression, time): no clock access here. */
#ifndef QSNAP_CRON_H
#define QSNAP_CRON_H

#include <stdint.h>

#include "qsnap/error.h"

struct qs_cron {
    int off;         /* 1 for "off": never fires */
    uint64_t minute; /* bit i set: minute i (0-59) */
    uint32_t hour;   /* 0-23 */
    uint32_t dom;    /* bit d: day of month d (1-31) */
    uint16_t month;  /* bit m: month m (1-12) */
    uint8_t dow;     /* bit w: weekday w (0-6, 0 = Sunday; 7 accepted as Sunday) */
    int dom_star;    /* day-of-month field starts with '*', stepped or not: unrestricted */
    int dow_star;    /* day-of-week field starts with '*': unrestricted */
};

/* Parses expr (borrowed): 5 fields (minute hour day-of-month month
 * day-of-week) with '*', lists "a,b", ranges "a-b", steps ("a-b/n", "a/n",
 * and '*' followed by "/n"), month and weekday names (JAN..DEC, SUN..SAT, any
 * case; 7 = Sunday); the macros @hourly, @daily (= @midnight), @weekly,
 * @monthly, @yearly (= @annually); and "off" (any case). Returns 0 or
 * QS_EINVAL with err->msg saying what is wrong, e.g. "field 2 (hour): value 24
 * out of range 0-23" or "expected 5 fields, got 4" (err borrowed, may be
 * NULL); *out is untouched on error. */
int qs_cron_parse(const char *expr, struct qs_cron *out, struct qs_error *err);

/* The first fire time strictly after `after` (UTC seconds), or -1 when the
 * schedule is off or never fires (e.g. "0 0 31 2 *"). When both day fields
 * are restricted, a day matches if either matches (Vixie cron rule). */
int64_t qs_cron_next(const struct qs_cron *c, int64_t after);

/* Expected interval between fires: the largest gap between consecutive fire
 * times over the year following `from`, or 0 when off. */
int64_t qs_cron_interval(const struct qs_cron *c, int64_t from);

#endif
