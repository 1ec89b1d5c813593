/* 5-field cron expressions in UTC: parsing and next-fire computation. */
#include "qsnap/cron.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How far ahead the search looks. When the day-of-month field starts with
 * '*' (e.g. "*\/29") and the weekday is restricted, a day must match both, so
 * a date on a given weekday can be decades apart: Feb 29 on a Monday recurs
 * every 28 years, and across 2100 (not a leap year) after up to 40. */
#define CRON_SEARCH_YEARS 41

struct field_desc {
    const char *name;
    int min;
    int max;                  /* largest accepted value (7 for day-of-week) */
    const char *const *names; /* names for min.., or NULL */
};

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                          "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const dow_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

static const struct field_desc fields[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day-of-week", 0, 7, dow_names},
};

/* Parses one value (number or name) at *p; advances *p. */
static int parse_value(const char **p, int idx, int *out, struct qs_error *err)
{
    const struct field_desc *f = &fields[idx];
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s)) {
            v = v * 10 + (*s - '0');
            if (v > 1000)
                v = 1000; /* saturate: reported as out of range below */
            s++;
        }
        if (v < f->min || v > f->max)
            return qs_error_set(err, QS_EINVAL, "field %d (%s): value %ld out of range %d-%d",
                                idx + 1, f->name, v, f->min, f->max);
        *out = (int)v;
        *p = s;
        return 0;
    }
    if (f->names != NULL && isalpha((unsigned char)*s)) {
        size_t n = 0;
        while (isalpha((unsigned char)s[n]))
            n++;
        for (int i = 0; f->names[i] != NULL; i++) {
            if (n == 3 && strncasecmp(s, f->names[i], 3) == 0) {
                *out = f->min + i;
                *p = s + n;
                return 0;
            }
        }
        return qs_error_set(err, QS_EINVAL, "field %d (%s): unknown name '%.*s'", idx + 1, f->name,
                            (int)(n > 16 ? 16 : n), s);
    }
    if (*s == '\0')
        return qs_error_set(err, QS_EINVAL, "field %d (%s): missing value", idx + 1, f->name);
    return qs_error_set(err, QS_EINVAL, "field %d (%s): unexpected character '%c'", idx + 1,
                        f->name, isprint((unsigned char)*s) ? *s : '?');
}

/* Parses one comma-separated element ("*", "a", "a-b", each optionally "/n")
 * of field idx into the bit mask. */
static int parse_element(const char *s, int idx, uint64_t *mask, struct qs_error *err)
{
    const struct field_desc *f = &fields[idx];
    int lo, hi, step = 1, rc;
    int has_range = 0;
    if (*s == '\0')
        return qs_error_set(err, QS_EINVAL, "field %d (%s): empty list element", idx + 1, f->name);
    if (*s == '*') {
        lo = f->min;
        hi = idx == 4 ? 6 : f->max;
        has_range = 1;
        s++;
    } else {
        if ((rc = parse_value(&s, idx, &lo, err)) != 0)
            return rc;
        hi = lo;
        if (*s == '-') {
            s++;
            if ((rc = parse_value(&s, idx, &hi, err)) != 0)
                return rc;
            if (hi < lo)
                return qs_error_set(err, QS_EINVAL, "field %d (%s): range %d-%d is reversed",
                                    idx + 1, f->name, lo, hi);
            has_range = 1;
        }
    }
    if (*s == '/') {
        s++;
        if (!isdigit((unsigned char)*s))
            return qs_error_set(err, QS_EINVAL, "field %d (%s): step must be a number", idx + 1,
                                f->name);
        long v = 0;
        while (isdigit((unsigned char)*s)) {
            v = v * 10 + (*s - '0');
            if (v > 1000)
                v = 1000;
            s++;
        }
        int span = (idx == 4 ? 6 : f->max) - f->min + 1;
        if (v < 1 || v > span)
            return qs_error_set(err, QS_EINVAL, "field %d (%s): step %ld out of range 1-%d",
                                idx + 1, f->name, v, span);
        step = (int)v;
        if (!has_range) /* "a/n" means "a-max/n" */
            hi = idx == 4 ? 6 : f->max;
    }
    if (*s != '\0')
        return qs_error_set(err, QS_EINVAL, "field %d (%s): unexpected character '%c'", idx + 1,
                            f->name, isprint((unsigned char)*s) ? *s : '?');
    for (int v = lo; v <= hi; v += step) {
        int bit = (idx == 4 && v == 7) ? 0 : v;
        *mask |= (uint64_t)1 << bit;
    }
    return 0;
}

static int parse_field(const char *s, int idx, uint64_t *mask, struct qs_error *err)
{
    char buf[128];
    if (strlen(s) >= sizeof(buf))
        return qs_error_set(err, QS_EINVAL, "field %d (%s): too long", idx + 1, fields[idx].name);
    memcpy(buf, s, strlen(s) + 1);
    *mask = 0;
    char *elem = buf;
    for (;;) {
        char *comma = strchr(elem, ',');
        if (comma != NULL)
            *comma = '\0';
        int rc = parse_element(elem, idx, mask, err);
        if (rc != 0)
            return rc;
        if (comma == NULL)
            break;
        elem = comma + 1;
    }
    return 0;
}

static const struct {
    const char *name;
    const char *expr;
} macros[] = {
    {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

int qs_cron_parse(const char *expr, struct qs_cron *out, struct qs_error *err)
{
    struct qs_cron c;
    memset(&c, 0, sizeof(c));
    if (expr == NULL)
        return qs_error_set(err, QS_EINVAL, "empty expression");
    while (isspace((unsigned char)*expr))
        expr++;
    size_t len = strlen(expr);
    while (len > 0 && isspace((unsigned char)expr[len - 1]))
        len--;
    if (len == 0)
        return qs_error_set(err, QS_EINVAL, "empty expression");
    if (len >= 256)
        return qs_error_set(err, QS_EINVAL, "expression too long");
    char buf[256];
    memcpy(buf, expr, len);
    buf[len] = '\0';

    if (strcasecmp(buf, "off") == 0) {
        c.off = 1;
        c.dom_star = c.dow_star = 1;
        *out = c;
        return 0;
    }
    if (buf[0] == '@') {
        for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
            if (strcasecmp(buf, macros[i].name) == 0)
                return qs_cron_parse(macros[i].expr, out, err);
        return qs_error_set(err, QS_EINVAL,
                            "unknown macro '%.32s' (expected @hourly, @daily, @midnight, "
                            "@weekly, @monthly, @yearly or @annually)",
                            buf);
    }

    char *tok[6];
    int ntok = 0;
    char *p = buf;
    while (*p != '\0') {
        while (isspace((unsigned char)*p))
            *p++ = '\0';
        if (*p == '\0')
            break;
        if (ntok < 6)
            tok[ntok] = p;
        ntok++;
        while (*p != '\0' && !isspace((unsigned char)*p))
            p++;
    }
    if (ntok != 5)
        return qs_error_set(err, QS_EINVAL, "expected 5 fields, got %d", ntok);

    uint64_t masks[5];
    for (int i = 0; i < 5; i++) {
        int rc = parse_field(tok[i], i, &masks[i], err);
        if (rc != 0)
            return rc;
    }
    c.minute = masks[0];
    c.hour = (uint32_t)masks[1];
    c.dom = (uint32_t)masks[2];
    c.month = (uint16_t)masks[3];
    c.dow = (uint8_t)masks[4];
    /* As in Vixie cron, a day field counts as unrestricted when it starts
     * with '*', stepped or not. */
    c.dom_star = tok[2][0] == '*';
    c.dow_star = tok[4][0] == '*';
    *out = c;
    return 0;
}

/* ---- calendar arithmetic (proleptic Gregorian, UTC) ---------------------- */

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Days since 1970-01-01 of a civil date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int day_matches(const struct qs_cron *c, int64_t y, int m, int d)
{
    int64_t days = days_from_civil(y, m, d);
    int wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
    int dom_ok = (c->dom >> d) & 1;
    int dow_ok = (c->dow >> wday) & 1;
    if (c->dom_star || c->dow_star)
        return dom_ok && dow_ok;
    return dom_ok || dow_ok;
}

int64_t qs_cron_next(const struct qs_cron *c, int64_t after)
{
    if (c == NULL || c->off || c->minute == 0 || c->hour == 0 || c->dom == 0 || c->month == 0 ||
        c->dow == 0)
        return -1;
    /* First whole minute strictly after `after`. */
    int64_t t = (floor_div(after, 60) + 1) * 60;
    int64_t days = floor_div(t, 86400);
    int64_t sod = t - days * 86400;
    int64_t y;
    int mo, d;
    civil_from_days(days, &y, &mo, &d);
    int h = (int)(sod / 3600);
    int mi = (int)(sod % 3600 / 60);
    int64_t last_year = y + CRON_SEARCH_YEARS;

    while (y <= last_year) {
        if (!((c->month >> mo) & 1)) {
            d = 1, h = 0, mi = 0;
            if (++mo > 12)
                mo = 1, y++;
            continue;
        }
        if (d > days_in_month(y, mo)) {
            d = 1, h = 0, mi = 0;
            if (++mo > 12)
                mo = 1, y++;
            continue;
        }
        if (!day_matches(c, y, mo, d)) {
            d++, h = 0, mi = 0;
            continue;
        }
        while (h < 24 && !((c->hour >> h) & 1))
            h++, mi = 0;
        if (h == 24) {
            d++, h = 0, mi = 0;
            continue;
        }
        while (mi < 60 && !((c->minute >> mi) & 1))
            mi++;
        if (mi == 60) {
            h++, mi = 0;
            if (h == 24)
                d++, h = 0;
            continue;
        }
        return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
    }
    return -1;
}

int64_t qs_cron_interval(const struct qs_cron *c, int64_t from)
{
    if (c == NULL || c->off)
        return 0;
    int64_t prev = qs_cron_next(c, from);
    if (prev < 0)
        return 0;
    int64_t end = from + 366 * 86400;
    int64_t gap = 0;
    /* The smallest possible gap is 60 s; a year of every-minute fires is
     * about 527k steps, each O(1), which is acceptable at startup. */
    for (;;) {
        int64_t t = qs_cron_next(c, prev);
        if (t < 0)
            break;
        if (t - prev > gap)
            gap = t - prev;
        if (t > end)
            break;
        prev = t;
    }
    return gap;
}
