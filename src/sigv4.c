#include "qsnap/sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/httpc.h"

#define SIGV4_MAX_HEADERS 64

struct hdr_view {
    char name[128];
    const char *value;
};

static int hdr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct hdr_view *)a)->name, ((const struct hdr_view *)b)->name);
}

/* Appends value trimmed, with inner whitespace runs collapsed to one space. */
static int append_trimmed(struct qs_buf *out, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    int pending_space = 0;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            pending_space = 1;
            continue;
        }
        if (pending_space && qs_buf_append(out, " ", 1) != 0)
            return UV_ENOMEM;
        pending_space = 0;
        if (qs_buf_append(out, v, 1) != 0)
            return UV_ENOMEM;
    }
    return 0;
}

int qs_sigv4_canonical_request(const struct qs_sigv4_request *req, struct qs_buf *creq,
                               struct qs_buf *signed_headers)
{
    if (req->nheaders > SIGV4_MAX_HEADERS)
        return QS_EINVAL;
    struct hdr_view hv[SIGV4_MAX_HEADERS];
    for (size_t i = 0; i < req->nheaders; i++) {
        size_t n = strlen(req->headers[i].name);
        if (n == 0 || n >= sizeof(hv[i].name))
            return QS_EINVAL;
        for (size_t j = 0; j <= n; j++)
            hv[i].name[j] = (char)tolower((unsigned char)req->headers[i].name[j]);
        hv[i].value = req->headers[i].value;
    }
    qsort(hv, req->nheaders, sizeof(hv[0]), hdr_cmp);

    int rc = qs_buf_printf(creq, "%s\n%s\n%s\n", req->method, req->canonical_uri,
                           req->canonical_query != NULL ? req->canonical_query : "");
    for (size_t i = 0; rc == 0 && i < req->nheaders; i++) {
        rc = qs_buf_printf(creq, "%s:", hv[i].name);
        if (rc == 0)
            rc = append_trimmed(creq, hv[i].value);
        if (rc == 0)
            rc = qs_buf_append(creq, "\n", 1);
        if (rc == 0)
            rc = qs_buf_printf(signed_headers, "%s%s", i > 0 ? ";" : "", hv[i].name);
    }
    if (rc == 0)
        rc = qs_buf_printf(creq, "\n%s\n%s", signed_headers->data ? signed_headers->data : "",
                           req->payload_hash);
    return rc != 0 ? UV_ENOMEM : 0;
}

void qs_sigv4_amz_date(int64_t t, char out[static 17])
{
    char iso[21]; /* "YYYY-MM-DDTHH:MM:SSZ" without its separators */
    qs_time_rfc3339(t, iso);
    size_t o = 0;
    for (size_t i = 0; iso[i] != '\0' && o < 16; i++)
        if (iso[i] != '-' && iso[i] != ':')
            out[o++] = iso[i];
    out[o] = '\0';
}

int qs_sigv4_string_to_sign(const char *amz_date, const char *region, const char *service,
                            const char *canonical_request, struct qs_buf *out)
{
    char h[65];
    qs_sha256_hex(canonical_request, strlen(canonical_request), h);
    return qs_buf_printf(out, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s", amz_date,
                         amz_date, region, service, h) != 0
               ? UV_ENOMEM
               : 0;
}

static void hmac256(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int olen = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &olen);
}

void qs_sigv4_signing_key(const char *secret, const char *date, const char *region,
                          const char *service, unsigned char out[static 32])
{
    size_t sl = strlen(secret);
    char *k0 = malloc(sl + 5);
    unsigned char k1[32], k2[32], k3[32];
    if (k0 == NULL) {
        memset(out, 0, 32);
        return;
    }
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, sl + 1);
    hmac256(k0, sl + 4, date, k1);
    hmac256(k1, 32, region, k2);
    hmac256(k2, 32, service, k3);
    hmac256(k3, 32, "aws4_request", out);
    OPENSSL_cleanse(k0, sl + 4);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    free(k0);
}

void qs_sigv4_signature(const unsigned char key[static 32], const char *string_to_sign,
                        char out[static 65])
{
    unsigned char sig[32];
    hmac256(key, 32, string_to_sign, sig);
    qs_hex(sig, 32, out);
}

int qs_sigv4_authorization(const struct qs_sigv4_request *req, const char *access_key,
                           const char *secret, const char *region, const char *service, int64_t t,
                           struct qs_buf *out)
{
    struct qs_buf creq, sh, sts;
    qs_buf_init(&creq);
    qs_buf_init(&sh);
    qs_buf_init(&sts);
    char amz[17], sig[65];
    unsigned char key[32];
    qs_sigv4_amz_date(t, amz);
    int rc = qs_sigv4_canonical_request(req, &creq, &sh);
    if (rc == 0)
        rc = qs_sigv4_string_to_sign(amz, region, service, creq.data, &sts);
    if (rc == 0) {
        char date[9];
        memcpy(date, amz, 8);
        date[8] = '\0';
        qs_sigv4_signing_key(secret, date, region, service, key);
        qs_sigv4_signature(key, sts.data, sig);
        OPENSSL_cleanse(key, sizeof(key));
        rc = qs_buf_printf(out,
                           "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
                           "SignedHeaders=%s, Signature=%s",
                           access_key, date, region, service, sh.data ? sh.data : "", sig) != 0
                 ? UV_ENOMEM
                 : 0;
    }
    qs_buf_free(&creq);
    qs_buf_free(&sh);
    qs_buf_free(&sts);
    return rc;
}

int qs_sigv4_presign(const char *method, const char *base_url, const char *host,
                     const char *canonical_uri, const char *access_key, const char *secret,
                     const char *region, const char *service, int64_t t, int64_t expires_s,
                     struct qs_buf *out)
{
    if (expires_s < 1 || expires_s > 604800)
        return QS_EINVAL;
    char amz[17], date[9], sig[65];
    unsigned char key[32];
    qs_sigv4_amz_date(t, amz);
    memcpy(date, amz, 8);
    date[8] = '\0';

    struct qs_buf cred, q, creq, sh, sts;
    qs_buf_init(&cred);
    qs_buf_init(&q);
    qs_buf_init(&creq);
    qs_buf_init(&sh);
    qs_buf_init(&sts);
    int rc = qs_buf_printf(&cred, "%s/%s/%s/%s/aws4_request", access_key, date, region, service);
    if (rc == 0)
        rc = qs_buf_printf(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    if (rc == 0)
        rc = qs_httpc_escape(&q, cred.data, cred.len, 0);
    if (rc == 0)
        rc = qs_buf_printf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%lld&X-Amz-SignedHeaders=host", amz,
                           (long long)expires_s);
    if (rc == 0) {
        struct qs_sigv4_header h = {"host", host};
        struct qs_sigv4_request req = {
            .method = method,
            .canonical_uri = canonical_uri,
            .canonical_query = q.data,
            .headers = &h,
            .nheaders = 1,
            .payload_hash = "UNSIGNED-PAYLOAD",
        };
        rc = qs_sigv4_canonical_request(&req, &creq, &sh);
    }
    if (rc == 0)
        rc = qs_sigv4_string_to_sign(amz, region, service, creq.data, &sts);
    if (rc == 0) {
        qs_sigv4_signing_key(secret, date, region, service, key);
        qs_sigv4_signature(key, sts.data, sig);
        OPENSSL_cleanse(key, sizeof(key));
        rc = qs_buf_printf(out, "%s%s?%s&X-Amz-Signature=%s", base_url, canonical_uri, q.data, sig);
    }
    qs_buf_free(&cred);
    qs_buf_free(&q);
    qs_buf_free(&creq);
    qs_buf_free(&sh);
    qs_buf_free(&sts);
    return rc != 0 ? (rc == QS_EINVAL ? rc : UV_ENOMEM) : 0;
}
