#include "qsnap/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

void qs_error_clear(struct qs_error *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->http_status = 0;
    err->retryable = 0;
    err->cause = 0;
    err->msg[0] = '\0';
}

static int vset(struct qs_error *err, int code, long http_status, int retryable, const char *fmt,
                va_list ap) __attribute__((format(printf, 5, 0)));

static int vset(struct qs_error *err, int code, long http_status, int retryable, const char *fmt,
                va_list ap)
{
    if (err == NULL)
        return code;
    qs_error_clear(err);
    err->code = code;
    err->http_status = http_status;
    err->retryable = retryable;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return code;
}

int qs_error_set(struct qs_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, 0, 0, fmt, ap);
    va_end(ap);
    return code;
}

int qs_error_set_class(struct qs_error *err, int code, long http_status, int retryable,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, http_status, retryable != 0, fmt, ap);
    va_end(ap);
    return code;
}

/* Puts "ctx: " in front of msg. The first failure's message (from
 * err->cause on) is kept whole; context that does not fit is cut and marked
 * with "...". */
static void add_context(struct qs_error *err, const char *ctx)
{
    const size_t cap = sizeof(err->msg);
    size_t cause = err->cause < cap ? err->cause : 0;
    size_t len = strnlen(err->msg, cap - 1);
    if (cause > len)
        cause = len;
    const char *tail = err->msg + cause; /* the first failure's message */
    size_t tl = len - cause;
    /* The context part: ctx, ": ", then the context already there. */
    char head[sizeof(err->msg)];
    int hn = snprintf(head, sizeof(head), "%s: %.*s", ctx, (int)cause, err->msg);
    size_t hl = hn < 0 ? 0 : (size_t)hn;
    if (hl >= sizeof(head))
        hl = sizeof(head) - 1;
    size_t room = cap - 1 - tl; /* bytes left for the context part */
    if (hl > room) {
        static const char cut[] = "...: ";
        size_t keep = room > sizeof(cut) - 1 ? room - (sizeof(cut) - 1) : 0;
        hl = keep;
        memcpy(head + hl, cut, room - hl);
        hl = room;
    }
    char out[sizeof(err->msg)];
    memcpy(out, head, hl);
    memcpy(out + hl, tail, tl);
    out[hl + tl] = '\0';
    memcpy(err->msg, out, hl + tl + 1);
    err->cause = (unsigned)hl;
}

int qs_error_prefix(struct qs_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return 0;
    char ctx[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    add_context(err, ctx);
    return err->code;
}

int qs_error_wrap(struct qs_error *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    char ctx[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    if (err->code != 0) {
        add_context(err, ctx);
        return err->code;
    }
    return qs_error_set(err, code, "%s: %s", ctx, qs_strerror(code));
}

const char *qs_error_cause(const struct qs_error *err)
{
    if (err == NULL || err->code == 0)
        return "";
    return err->cause < sizeof(err->msg) ? err->msg + err->cause : err->msg;
}

const char *qs_strerror(int code)
{
    switch (code) {
    case 0:
        return "OK";
    case QS_EHTTP:
        return "EHTTP";
    case QS_ECHECKSUM:
        return "ECHECKSUM";
    case QS_EPROTO:
        return "EPROTO";
    case QS_ECONFIG:
        return "ECONFIG";
    case QS_ETRANSPORT:
        return "ETRANSPORT";
    case QS_ECANCELED:
        return "ECANCELED";
    case QS_ENOTFOUND:
        return "ENOTFOUND";
    case QS_EBUSY:
        return "EBUSY";
    case QS_ETOOBIG:
        return "ETOOBIG";
    case QS_EINVAL:
        return "EINVAL";
    case QS_EIO:
        return "EIO";
    default:
        return code < 0 && code > -4096 ? uv_err_name(code) : "EUNKNOWN";
    }
}
