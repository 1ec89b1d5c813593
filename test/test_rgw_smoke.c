/* The S3 test peer is a real SigV4 verifier: signed requests succeed, a wrong
 * secret and anonymous writes are refused, and the libcurl signing pitfalls
 * the S3 client must avoid are visible as 403s. Raw libcurl, no qsnap code. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

/* Request variants. */
enum {
    SMOKE_ANONYMOUS = 1 << 0,     /* no signature at all */
    SMOKE_NO_SHA_HEADER = 1 << 1, /* omit x-amz-content-sha256 (rule 1) */
    SMOKE_EXPECT_REMOVAL = 1 << 2 /* "Expect:" removal entry (rule 4) */
};

struct smoke_resp {
    long status;
    char *body; /* owned, NUL-terminated */
    size_t len;
};

struct smoke_src {
    const unsigned char *p;
    size_t len, off;
};

static size_t smoke_write(char *b, size_t size, size_t n, void *ud)
{
    struct smoke_resp *r = ud;
    size_t m = size * n;
    char *np = realloc(r->body, r->len + m + 1);
    if (np == NULL)
        return 0;
    r->body = np;
    memcpy(r->body + r->len, b, m);
    r->len += m;
    r->body[r->len] = '\0';
    return m;
}

static size_t smoke_read(char *b, size_t size, size_t n, void *ud)
{
    struct smoke_src *s = ud;
    size_t left = s->len - s->off;
    size_t m = size * n < left ? size * n : left;
    memcpy(b, s->p + s->off, m);
    s->off += m;
    return m;
}

/* One request against BUCKET/key (key already AWS-encoded). secret NULL means
 * the configured one. Returns the curl code; fills *out (caller frees body). */
static CURLcode smoke_req(const char *method, const char *key, const char *secret, const void *body,
                          size_t body_len, unsigned flags, struct smoke_resp *out)
{
    const char *endpoint = qs_test_env("QSNAP_TEST_S3_ENDPOINT");
    const char *bucket = qs_test_env("QSNAP_TEST_S3_BUCKET");
    const char *region = qs_test_env("QSNAP_TEST_S3_REGION");
    char url[1024], sigv4[128];
    snprintf(url, sizeof url, "%s/%s/%s", endpoint, bucket, key);
    snprintf(sigv4, sizeof sigv4, "aws:amz:%s:s3", region);

    memset(out, 0, sizeof *out);
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    struct curl_slist *hdrs = NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    if (!(flags & SMOKE_ANONYMOUS)) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4);
        curl_easy_setopt(h, CURLOPT_USERNAME, qs_test_env("QSNAP_TEST_S3_ACCESS_KEY"));
        curl_easy_setopt(h, CURLOPT_PASSWORD,
                         secret != NULL ? secret : qs_test_env("QSNAP_TEST_S3_SECRET_KEY"));
    }
    if (!(flags & SMOKE_NO_SHA_HEADER))
        hdrs = curl_slist_append(hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    if (flags & SMOKE_EXPECT_REMOVAL)
        hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, smoke_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);

    struct smoke_src src = {body, body_len, 0};
    if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, smoke_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &src);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_len);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}

static void smoke_resp_free(struct smoke_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

/* A key prefix no other test (or run) uses. */
static void smoke_key(char *buf, size_t n, const char *name)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, n, "rgw-smoke/%ld-%ld-%ld/%s", (long)getpid(), (long)ts.tv_sec, (long)ts.tv_nsec,
             name);
}

static void smoke_setup(void)
{
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
}

static void smoke_teardown(void)
{
    curl_global_cleanup();
}

TestSuite(rgw_smoke, .init = smoke_setup, .fini = smoke_teardown, .timeout = 120);

Test(rgw_smoke, signed_put_get_delete_roundtrip)
{
    /* Binary payload with NULs and every byte value; key with characters that
     * need AWS encoding ("a b+c:1.bin"). */
    unsigned char data[4096 + 17];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)((i * 2654435761u) >> 13);
    char key[256];
    smoke_key(key, sizeof key, "a%20b%2Bc%3A1.bin");

    struct smoke_resp r;
    cr_assert_eq(smoke_req("PUT", key, NULL, data, sizeof data, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 200, "PUT: HTTP %ld %s", r.status, r.body ? r.body : "");
    smoke_resp_free(&r);

    cr_assert_eq(smoke_req("GET", key, NULL, NULL, 0, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 200, "GET: HTTP %ld %s", r.status, r.body ? r.body : "");
    cr_assert_eq(r.len, sizeof data);
    cr_assert_eq(memcmp(r.body, data, sizeof data), 0, "GET returned different bytes");
    smoke_resp_free(&r);

    cr_assert_eq(smoke_req("DELETE", key, NULL, NULL, 0, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 204, "DELETE: HTTP %ld", r.status);
    smoke_resp_free(&r);

    cr_assert_eq(smoke_req("GET", key, NULL, NULL, 0, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 404, "GET after DELETE: HTTP %ld", r.status);
    cr_assert_not_null(r.body);
    cr_assert_not_null(strstr(r.body, "NoSuchKey"), "body: %s", r.body);
    smoke_resp_free(&r);
}

Test(rgw_smoke, wrong_secret_is_signature_mismatch)
{
    char key[256];
    smoke_key(key, sizeof key, "wrong-secret.bin");
    const char payload[] = "must not be stored";

    struct smoke_resp r;
    cr_assert_eq(smoke_req("PUT", key, "not-the-secret", payload, sizeof payload - 1, 0, &r),
                 CURLE_OK);
    cr_assert_eq(r.status, 403, "PUT with wrong secret: HTTP %ld", r.status);
    cr_assert_not_null(r.body);
    cr_assert_not_null(strstr(r.body, "SignatureDoesNotMatch"), "body: %s", r.body);
    smoke_resp_free(&r);

    /* Nothing was stored. */
    cr_assert_eq(smoke_req("GET", key, NULL, NULL, 0, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 404, "object written despite bad signature: HTTP %ld", r.status);
    smoke_resp_free(&r);

    /* Reads are verified too. */
    cr_assert_eq(smoke_req("PUT", key, NULL, payload, sizeof payload - 1, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 200);
    smoke_resp_free(&r);
    cr_assert_eq(smoke_req("GET", key, "not-the-secret", NULL, 0, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 403, "GET with wrong secret: HTTP %ld", r.status);
    cr_assert_not_null(r.body);
    cr_assert_not_null(strstr(r.body, "SignatureDoesNotMatch"), "body: %s", r.body);
    smoke_resp_free(&r);

    cr_assert_eq(smoke_req("DELETE", key, NULL, NULL, 0, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 204);
    smoke_resp_free(&r);
}

Test(rgw_smoke, anonymous_put_is_refused)
{
    char key[256];
    smoke_key(key, sizeof key, "anonymous.bin");
    const char payload[] = "anonymous write";

    struct smoke_resp r;
    cr_assert_eq(smoke_req("PUT", key, NULL, payload, sizeof payload - 1, SMOKE_ANONYMOUS, &r),
                 CURLE_OK);
    cr_assert_eq(r.status, 403, "anonymous PUT: HTTP %ld %s", r.status, r.body ? r.body : "");
    cr_assert_not_null(r.body);
    cr_assert_not_null(strstr(r.body, "AccessDenied"), "body: %s", r.body);
    smoke_resp_free(&r);

    cr_assert_eq(smoke_req("GET", key, NULL, NULL, 0, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 404, "anonymous object was stored: HTTP %ld", r.status);
    smoke_resp_free(&r);
}

/* The pitfalls of libcurl 7.88's SigV4 are caught by this peer (a lax server
 * would accept them): no x-amz-content-sha256 header, and a header removal
 * entry that gets signed but never sent. */
Test(rgw_smoke, signing_pitfalls_are_rejected)
{
    char key[256];
    smoke_key(key, sizeof key, "pitfall.bin");
    const char payload[] = "pitfall";

    struct smoke_resp r;
    cr_assert_eq(smoke_req("PUT", key, NULL, payload, sizeof payload - 1, SMOKE_NO_SHA_HEADER, &r),
                 CURLE_OK);
    cr_assert_eq(r.status, 403, "PUT without x-amz-content-sha256: HTTP %ld", r.status);
    smoke_resp_free(&r);

    cr_assert_eq(smoke_req("PUT", key, NULL, payload, sizeof payload - 1, SMOKE_EXPECT_REMOVAL, &r),
                 CURLE_OK);
    cr_assert_eq(r.status, 403, "PUT with signed-but-unsent Expect: HTTP %ld", r.status);
    smoke_resp_free(&r);

    cr_assert_eq(smoke_req("GET", key, NULL, NULL, 0, 0, &r), CURLE_OK);
    cr_assert_eq(r.status, 404);
    smoke_resp_free(&r);
}
