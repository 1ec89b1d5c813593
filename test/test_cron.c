#include <criterion/criterion.h>
#include <string.h>

#include "qsnap/cron.h"
#include "qsnap/error.h"
#include "qsnap/util.h"

#define T(y, mo, d, h, mi) qs_timegm((y), (mo), (d), (h), (mi), 0)

static struct qs_cron parse_ok(const char *expr)
{
    struct qs_cron c;
    struct qs_error err;
    qs_error_clear(&err);
    int rc = qs_cron_parse(expr, &c, &err);
    cr_assert_eq(rc, 0, "parse '%s' failed: %s", expr, err.msg);
    return c;
}

static void assert_next(const char *expr, int64_t after, int64_t want)
{
    struct qs_cron c = parse_ok(expr);
    int64_t got = qs_cron_next(&c, after);
    char g[21] = "never", w[21] = "never";
    if (got >= 0)
        qs_time_rfc3339(got, g);
    if (want >= 0)
        qs_time_rfc3339(want, w);
    cr_assert_eq(got, want, "'%s' after %lld: got %s, want %s", expr, (long long)after, g, w);
}

static void assert_invalid(const char *expr, const char *fragment)
{
    struct qs_cron c;
    struct qs_error err;
    qs_error_clear(&err);
    cr_assert_eq(qs_cron_parse(expr, &c, &err), QS_EINVAL, "'%s' should be rejected", expr);
    cr_assert_not_null(strstr(err.msg, fragment), "'%s': message '%s' lacks '%s'", expr, err.msg,
                       fragment);
}

Test(cron, default_schedule_daily_at_three)
{
    assert_next("0 3 * * *", T(2025, 6, 10, 2, 59), T(2025, 6, 10, 3, 0));
    /* strictly after: exactly at the fire time gives the next day */
    assert_next("0 3 * * *", T(2025, 6, 10, 3, 0), T(2025, 6, 11, 3, 0));
    /* seconds within a minute are skipped */
    assert_next("0 3 * * *", T(2025, 6, 10, 3, 0) - 1, T(2025, 6, 10, 3, 0));
    assert_next("0 3 * * *", T(2025, 6, 10, 3, 0) + 30, T(2025, 6, 11, 3, 0));
}

Test(cron, every_minute)
{
    assert_next("* * * * *", T(2025, 1, 1, 0, 0), T(2025, 1, 1, 0, 1));
    assert_next("* * * * *", T(2025, 1, 1, 0, 0) + 59, T(2025, 1, 1, 0, 1));
    assert_next("* * * * *", T(2025, 12, 31, 23, 59), T(2026, 1, 1, 0, 0));
}

Test(cron, ranges)
{
    assert_next("0 9-17 * * *", T(2025, 3, 3, 17, 30), T(2025, 3, 4, 9, 0));
    assert_next("0 9-17 * * *", T(2025, 3, 3, 8, 0), T(2025, 3, 3, 9, 0));
    assert_next("0 9-17 * * *", T(2025, 3, 3, 12, 0), T(2025, 3, 3, 13, 0));
    assert_next("30 2 * * 1-5", T(2025, 3, 7, 3, 0), T(2025, 3, 10, 2, 30)); /* Fri -> Mon */
}

Test(cron, steps)
{
    assert_next("*/15 * * * *", T(2025, 1, 1, 0, 0), T(2025, 1, 1, 0, 15));
    assert_next("*/15 * * * *", T(2025, 1, 1, 0, 46), T(2025, 1, 1, 1, 0));
    assert_next("10-50/20 * * * *", T(2025, 1, 1, 0, 10), T(2025, 1, 1, 0, 30));
    assert_next("10-50/20 * * * *", T(2025, 1, 1, 0, 50), T(2025, 1, 1, 1, 10));
    /* "a/n" means from a to the end of the range */
    assert_next("5/20 * * * *", T(2025, 1, 1, 0, 26), T(2025, 1, 1, 0, 45));
    assert_next("0 */6 * * *", T(2025, 1, 1, 13, 0), T(2025, 1, 1, 18, 0));
}

Test(cron, lists)
{
    assert_next("0,30 * * * *", T(2025, 1, 1, 0, 0), T(2025, 1, 1, 0, 30));
    assert_next("0,30 * * * *", T(2025, 1, 1, 0, 30), T(2025, 1, 1, 1, 0));
    assert_next("0 1,13,22 * * *", T(2025, 1, 1, 14, 0), T(2025, 1, 1, 22, 0));
    assert_next("0 0 1,15 * *", T(2025, 1, 2, 0, 0), T(2025, 1, 15, 0, 0));
    assert_next("0 0 1-3,20-22/2 * *", T(2025, 1, 4, 0, 0), T(2025, 1, 20, 0, 0));
    assert_next("0 0 1-3,20-22/2 * *", T(2025, 1, 20, 0, 0), T(2025, 1, 22, 0, 0));
}

Test(cron, names_case_insensitive)
{
    struct qs_cron a = parse_ok("0 0 1 jan,Jul *");
    struct qs_cron b = parse_ok("0 0 1 1,7 *");
    cr_assert_eq(a.month, b.month);
    cr_assert_eq(a.month, (1u << 1) | (1u << 7));
    struct qs_cron c = parse_ok("0 0 * * MON-fri");
    struct qs_cron d = parse_ok("0 0 * * 1-5");
    cr_assert_eq(c.dow, d.dow);
    assert_next("0 0 1 FEB-MAR *", T(2025, 3, 1, 0, 0), T(2026, 2, 1, 0, 0));
    assert_next("0 12 * * sat", T(2025, 6, 10, 0, 0), T(2025, 6, 14, 12, 0));
}

Test(cron, sunday_is_zero_or_seven)
{
    struct qs_cron a = parse_ok("0 0 * * 0");
    struct qs_cron b = parse_ok("0 0 * * 7");
    struct qs_cron c = parse_ok("0 0 * * SUN");
    cr_assert_eq(a.dow, 1);
    cr_assert_eq(b.dow, 1);
    cr_assert_eq(c.dow, 1);
    struct qs_cron d = parse_ok("0 0 * * 5-7");
    cr_assert_eq(d.dow, (1 << 5) | (1 << 6) | 1);
    /* 2025-06-15 was a Sunday */
    assert_next("0 0 * * 7", T(2025, 6, 10, 0, 0), T(2025, 6, 15, 0, 0));
}

Test(cron, dom_and_dow_both_restricted_either_matches)
{
    /* 1st of month OR a Monday. 2025-09-01 is a Monday; 2025-09-08 next Monday. */
    assert_next("0 0 1 * 1", T(2025, 8, 26, 0, 0), T(2025, 9, 1, 0, 0));
    assert_next("0 0 1 * 1", T(2025, 9, 1, 0, 0), T(2025, 9, 8, 0, 0));
    /* 13th OR Friday: 2025-06-13 is a Friday, 2025-06-06 is one too */
    assert_next("0 0 13 * 5", T(2025, 6, 1, 0, 0), T(2025, 6, 6, 0, 0));
    /* 2025-07-13 is a Sunday: matched by the day of month alone */
    assert_next("0 0 13 * 5", T(2025, 7, 11, 0, 0), T(2025, 7, 13, 0, 0));
}

Test(cron, only_one_day_field_restricted)
{
    /* dow only: every Monday (2025-06-09 is a Monday) */
    assert_next("0 0 * * 1", T(2025, 6, 3, 0, 0), T(2025, 6, 9, 0, 0));
    /* dom only: the 13th, whatever weekday */
    assert_next("0 0 13 * *", T(2025, 6, 1, 0, 0), T(2025, 6, 13, 0, 0));
    /* a stepped '*' still counts as unrestricted, so both must match:
     * odd days that are Mondays. 2025-06-09 (Mon, odd) */
    assert_next("0 0 */2 * 1", T(2025, 6, 1, 0, 0), T(2025, 6, 9, 0, 0));
    struct qs_cron c = parse_ok("0 0 */2 * 1");
    cr_assert(c.dom_star);
    cr_assert(!c.dow_star);
}

Test(cron, month_ends_skip_short_months)
{
    /* the 31st: April, June have 30 days */
    assert_next("0 0 31 * *", T(2025, 3, 31, 0, 0), T(2025, 5, 31, 0, 0));
    assert_next("0 0 31 * *", T(2025, 5, 31, 0, 0), T(2025, 7, 31, 0, 0));
    assert_next("0 0 30 * *", T(2025, 1, 30, 0, 0), T(2025, 3, 30, 0, 0));
}

Test(cron, leap_days)
{
    assert_next("0 0 29 2 *", T(2025, 1, 1, 0, 0), T(2028, 2, 29, 0, 0));
    assert_next("0 0 29 2 *", T(2024, 1, 1, 0, 0), T(2024, 2, 29, 0, 0));
    /* 2100 is not a leap year: eight years between Feb 29ths */
    assert_next("0 0 29 2 *", T(2096, 3, 1, 0, 0), T(2104, 2, 29, 0, 0));
}

Test(cron, impossible_dates_terminate)
{
    assert_next("0 0 30 2 *", T(2025, 1, 1, 0, 0), -1);
    assert_next("0 0 31 4,6,9,11 *", T(2025, 1, 1, 0, 0), -1);
}

Test(cron, year_rollover)
{
    assert_next("0 0 1 1 *", T(2025, 1, 1, 0, 0), T(2026, 1, 1, 0, 0));
    assert_next("59 23 31 12 *", T(2025, 12, 31, 23, 59), T(2026, 12, 31, 23, 59));
    assert_next("0 0 * * *", T(2025, 12, 31, 12, 0), T(2026, 1, 1, 0, 0));
}

Test(cron, before_epoch_and_far_future)
{
    assert_next("0 0 * * *", -1, 0);
    assert_next("0 0 * * *", 0, 86400);
    assert_next("0 0 1 1 *", T(1969, 6, 1, 0, 0), 0);
    assert_next("0 3 * * *", T(2400, 2, 29, 5, 0), T(2400, 3, 1, 3, 0));
}

Test(cron, macros)
{
    struct qs_cron a = parse_ok("@daily");
    struct qs_cron b = parse_ok("0 0 * * *");
    cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
    struct qs_cron m = parse_ok("@midnight");
    cr_assert_eq(memcmp(&m, &b, sizeof(m)), 0);
    assert_next("@daily", T(2025, 6, 10, 12, 0), T(2025, 6, 11, 0, 0));
    assert_next("@hourly", T(2025, 6, 10, 12, 0), T(2025, 6, 10, 13, 0));
    assert_next("@HOURLY", T(2025, 6, 10, 12, 1), T(2025, 6, 10, 13, 0));
    assert_next("@weekly", T(2025, 6, 10, 12, 0), T(2025, 6, 15, 0, 0));
    assert_next("@monthly", T(2025, 6, 10, 12, 0), T(2025, 7, 1, 0, 0));
    assert_next("@yearly", T(2025, 6, 10, 12, 0), T(2026, 1, 1, 0, 0));
    assert_next("@annually", T(2025, 6, 10, 12, 0), T(2026, 1, 1, 0, 0));
}

Test(cron, off)
{
    struct qs_cron c = parse_ok("off");
    cr_assert(c.off);
    cr_assert_eq(qs_cron_next(&c, T(2025, 1, 1, 0, 0)), -1);
    cr_assert_eq(qs_cron_interval(&c, T(2025, 1, 1, 0, 0)), 0);
    struct qs_cron d = parse_ok("OFF");
    cr_assert(d.off);
    struct qs_cron e = parse_ok("  0 3 * * *  ");
    cr_assert(!e.off);
}

Test(cron, invalid_expressions)
{
    assert_invalid("0 3 * *", "expected 5 fields, got 4");
    assert_invalid("0 3 * * * *", "expected 5 fields, got 6");
    assert_invalid("", "empty");
    assert_invalid("   ", "empty");
    assert_invalid("0 24 * * *", "field 2 (hour): value 24 out of range 0-23");
    assert_invalid("60 * * * *", "field 1 (minute): value 60 out of range 0-59");
    assert_invalid("0 0 0 * *", "field 3 (day-of-month): value 0 out of range 1-31");
    assert_invalid("0 0 32 * *", "field 3 (day-of-month): value 32 out of range 1-31");
    assert_invalid("0 0 * 13 *", "field 4 (month): value 13 out of range 1-12");
    assert_invalid("0 0 * * 8", "field 5 (day-of-week): value 8 out of range 0-7");
    assert_invalid("0 0 * * 99999999999999999999", "field 5 (day-of-week): value");
    assert_invalid("*/0 * * * *", "field 1 (minute): step 0 out of range");
    assert_invalid("*/ * * * *", "field 1 (minute): step must be a number");
    assert_invalid("5-1 * * * *", "field 1 (minute): range 5-1 is reversed");
    assert_invalid("1,,2 * * * *", "field 1 (minute): empty list element");
    assert_invalid("1, * * * *", "field 1 (minute): empty list element");
    assert_invalid("x * * * *", "field 1 (minute): unexpected character 'x'");
    assert_invalid("0 0 * FOO *", "field 4 (month): unknown name 'FOO'");
    assert_invalid("0 0 * JANUARY *", "field 4 (month): unknown name");
    assert_invalid("0 0 * * MON-", "field 5 (day-of-week): missing value");
    assert_invalid("0 0 * * 1-2x", "field 5 (day-of-week): unexpected character 'x'");
    assert_invalid("0 MON * * *", "field 2 (hour)");
    assert_invalid("@sometimes", "unknown macro '@sometimes'");
    assert_invalid("@reboot", "unknown macro");
}

Test(cron, parse_failure_leaves_output_untouched)
{
    struct qs_cron c = parse_ok("0 3 * * *");
    struct qs_cron before = c;
    cr_assert_eq(qs_cron_parse("0 99 * * *", &c, NULL), QS_EINVAL);
    cr_assert_eq(memcmp(&c, &before, sizeof(c)), 0);
}

Test(cron, interval)
{
    int64_t from = T(2025, 3, 1, 0, 0);
    struct qs_cron c = parse_ok("0 3 * * *");
    cr_assert_eq(qs_cron_interval(&c, from), 86400);
    c = parse_ok("*/15 * * * *");
    cr_assert_eq(qs_cron_interval(&c, from), 900);
    c = parse_ok("0 3 * * 1");
    cr_assert_eq(qs_cron_interval(&c, from), 604800);
    c = parse_ok("@hourly");
    cr_assert_eq(qs_cron_interval(&c, from), 3600);
    c = parse_ok("* * * * *");
    cr_assert_eq(qs_cron_interval(&c, from), 60);
    /* the largest gap, not the average: 02:00 and 03:00 daily */
    c = parse_ok("0 2,3 * * *");
    cr_assert_eq(qs_cron_interval(&c, from), 23 * 3600);
    /* the 31st: two months apart around April/June etc. */
    c = parse_ok("0 0 31 * *");
    cr_assert_eq(qs_cron_interval(&c, from), 61 * 86400);
    c = parse_ok("@yearly");
    int64_t y = qs_cron_interval(&c, from);
    cr_assert(y == 365 * 86400 || y == 366 * 86400, "yearly interval %lld", (long long)y);
    c = parse_ok("0 0 30 2 *");
    cr_assert_eq(qs_cron_interval(&c, from), 0);
}

/* Found by fuzzing: a '*'-led day-of-month with a weekday must match both,
 * so Feb 1 on a Saturday recurs after 11 years; the search must reach it. */
Test(cron, rare_dom_and_dow_combination_is_found)
{
    struct qs_cron c = parse_ok("3 4 */29 2 6");
    int64_t from = qs_timegm(2025, 3, 30, 1, 30, 0);
    int64_t n1 = qs_cron_next(&c, from);
    cr_assert_eq(n1, qs_timegm(2031, 2, 1, 4, 3, 0), "got %lld", (long long)n1);
    int64_t n2 = qs_cron_next(&c, n1);
    cr_assert_eq(n2, qs_timegm(2042, 2, 1, 4, 3, 0), "got %lld", (long long)n2);
}
