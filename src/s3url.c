#include "qsnap/s3url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "qsnap/httpc.h"

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* base_url and path_base from the endpoint and the URI style. */
static int build_base(struct qs_s3url *u, const struct qs_storage_opts *o, struct qs_error *err)
{
    const char *ep = o->endpoint;
    struct qs_buf b;
    qs_buf_init(&b);
    int virt = o->uri_style == QS_URI_VIRTUAL;
    if (ep == NULL || ep[0] == '\0') {
        if (virt)
            qs_buf_printf(&b, "https://%s.s3.%s.amazonaws.com", u->bucket, u->region);
        else
            qs_buf_printf(&b, "https://s3.%s.amazonaws.com", u->region);
    } else {
        const char *scheme_end = strstr(ep, "://");
        if (scheme_end == NULL ||
            (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0))
            return qs_error_set(err, QS_ECONFIG,
                                "S3 endpoint must start with http:// or https:// (got \"%s\")", ep);
        const char *host = scheme_end + 3;
        size_t hl = strcspn(host, "/?#");
        if (hl == 0 || (host[hl] != '\0' && strcmp(host + hl, "/") != 0))
            return qs_error_set(err, QS_ECONFIG,
                                "S3 endpoint must be scheme://host[:port] without a path");
        if (virt)
            qs_buf_printf(&b, "%.*s%s.%.*s", (int)(host - ep), ep, u->bucket, (int)hl, host);
        else
            qs_buf_printf(&b, "%.*s%.*s", (int)(host - ep), ep, (int)hl, host);
    }
    if (b.data == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    u->base_url = b.data;
    struct qs_buf p;
    qs_buf_init(&p);
    if (virt)
        qs_buf_append(&p, "", 0);
    else if (qs_buf_append(&p, "/", 1) == 0)
        qs_httpc_escape(&p, u->bucket, strlen(u->bucket), 0);
    u->path_base = p.data;
    return u->path_base != NULL ? 0 : qs_error_set(err, UV_ENOMEM, "out of memory");
}

/* "p/q/" from "/p/q//", "" from "" or NULL. */
static char *norm_prefix(const char *pfx)
{
    pfx = pfx != NULL ? pfx : "";
    while (*pfx == '/')
        pfx++;
    size_t pl = strlen(pfx);
    while (pl > 0 && pfx[pl - 1] == '/')
        pl--;
    char *p = malloc(pl + 2);
    if (p == NULL)
        return NULL;
    memcpy(p, pfx, pl);
    if (pl > 0)
        p[pl++] = '/';
    p[pl] = '\0';
    return p;
}

int qs_s3url_init(struct qs_s3url *u, const struct qs_storage_opts *o, struct qs_error *err)
{
    memset(u, 0, sizeof(*u));
    if (o->bucket == NULL || o->bucket[0] == '\0')
        return qs_error_set(err, QS_ECONFIG, "S3 destination needs a bucket");
    if (o->access_key_id == NULL || o->access_key_id[0] == '\0' || o->secret_access_key == NULL ||
        o->secret_access_key[0] == '\0')
        return qs_error_set(err, QS_ECONFIG, "S3 destination needs an access key id and secret");
    const char *region = o->region != NULL && o->region[0] != '\0' ? o->region : "us-east-1";
    if (strchr(region, ':') != NULL || strlen(region) > 64)
        return qs_error_set(err, QS_ECONFIG, "invalid S3 region");
    u->bucket = dup_or_null(o->bucket);
    u->region = dup_or_null(region);
    u->access_key = dup_or_null(o->access_key_id);
    u->secret_key = dup_or_null(o->secret_access_key);
    u->prefix = norm_prefix(o->prefix);
    int rc = 0;
    if (u->bucket == NULL || u->region == NULL || u->access_key == NULL || u->secret_key == NULL ||
        u->prefix == NULL)
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    if (rc == 0)
        rc = build_base(u, o, err);
    if (rc != 0) {
        qs_s3url_deinit(u);
        return rc;
    }
    snprintf(u->sigv4, sizeof(u->sigv4), "aws:amz:%s:s3", u->region);
    return 0;
}

void qs_s3url_deinit(struct qs_s3url *u)
{
    if (u == NULL)
        return;
    if (u->secret_key != NULL)
        OPENSSL_cleanse(u->secret_key, strlen(u->secret_key));
    free(u->secret_key);
    free(u->bucket);
    free(u->prefix);
    free(u->base_url);
    free(u->path_base);
    free(u->region);
    free(u->access_key);
    memset(u, 0, sizeof(*u));
}

int qs_s3url_build(const struct qs_s3url *u, const char *key, const char *query, struct qs_buf *out)
{
    int rc = qs_buf_printf(out, "%s%s", u->base_url, u->path_base);
    if (rc == 0 && key != NULL) {
        rc = qs_buf_append(out, "/", 1);
        if (rc == 0)
            rc = qs_httpc_escape(out, u->prefix, strlen(u->prefix), 1);
        if (rc == 0)
            rc = qs_httpc_escape(out, key, strlen(key), 1);
    } else if (rc == 0 && u->path_base[0] == '\0') {
        rc = qs_buf_append(out, "/", 1);
    }
    if (rc == 0 && query != NULL && query[0] != '\0')
        rc = qs_buf_printf(out, "?%s", query);
    return rc != 0 ? UV_ENOMEM : 0;
}

int qs_s3url_query_add(struct qs_buf *q, const char *name, const char *value)
{
    int rc = qs_buf_printf(q, "%s%s=", q->len > 0 ? "&" : "", name);
    if (rc == 0 && value != NULL)
        rc = qs_httpc_escape(q, value, strlen(value), 0);
    return rc != 0 ? UV_ENOMEM : 0;
}
