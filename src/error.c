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
    err->msg[0] = '\0';
}

int qs_error_set(struct qs_error *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int qs_error_prefix(struct qs_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return 0;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    char old[sizeof(err->msg)];
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    return err->code;
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
