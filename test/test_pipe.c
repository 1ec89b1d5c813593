#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "qsnap/pipe.h"
#include "qsnap/util.h"

#define TOTAL (3 * 1024 * 1024 + 17)

struct producer {
    struct qs_pipe *p;
    int fail_at; /* fail after this many bytes, or -1 */
    int rc;
};

static void *produce(void *arg)
{
    struct producer *pr = arg;
    unsigned char chunk[7919];
    size_t sent = 0;
    while (sent < TOTAL) {
        size_t n = TOTAL - sent < sizeof(chunk) ? TOTAL - sent : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = (unsigned char)((sent + i) * 2654435761u >> 24);
        if (pr->fail_at >= 0 && sent >= (size_t)pr->fail_at) {
            qs_pipe_fail(pr->p, -5);
            pr->rc = -5;
            return NULL;
        }
        pr->rc = qs_pipe_write(pr->p, chunk, n);
        if (pr->rc != 0)
            return NULL;
        sent += n;
    }
    qs_pipe_close(pr->p);
    return NULL;
}

static void expected_sha(char out[65])
{
    struct qs_sha256 c;
    qs_sha256_init(&c);
    for (size_t i = 0; i < TOTAL; i++) {
        unsigned char b = (unsigned char)(i * 2654435761u >> 24);
        qs_sha256_update(&c, &b, 1);
    }
    qs_sha256_final(&c, out);
}

Test(pipe, transfers_all_bytes_in_order_with_small_ring)
{
    struct qs_pipe p;
    cr_assert_eq(qs_pipe_init(&p, 4096), 0);
    struct producer pr = {.p = &p, .fail_at = -1};
    pthread_t t;
    pthread_create(&t, NULL, produce, &pr);
    struct qs_sha256 c;
    qs_sha256_init(&c);
    size_t got = 0;
    unsigned char buf[3001];
    ssize_t n;
    while ((n = qs_pipe_read(&p, buf, sizeof(buf))) > 0) {
        qs_sha256_update(&c, buf, (size_t)n);
        got += (size_t)n;
    }
    pthread_join(t, NULL);
    cr_assert_eq(n, 0);
    cr_assert_eq(pr.rc, 0);
    cr_assert_eq(got, TOTAL);
    char hex[65], want[65];
    qs_sha256_final(&c, hex);
    expected_sha(want);
    cr_assert_str_eq(hex, want);
    qs_pipe_deinit(&p);
}

Test(pipe, producer_failure_reaches_consumer)
{
    struct qs_pipe p;
    cr_assert_eq(qs_pipe_init(&p, 1024), 0);
    struct producer pr = {.p = &p, .fail_at = 100000};
    pthread_t t;
    pthread_create(&t, NULL, produce, &pr);
    unsigned char buf[512];
    ssize_t n;
    size_t got = 0;
    while ((n = qs_pipe_read(&p, buf, sizeof(buf))) > 0)
        got += (size_t)n;
    pthread_join(t, NULL);
    cr_assert_eq(n, -5, "consumer must see the producer's error, got %zd", n);
    cr_assert_lt(got, (size_t)TOTAL);
    qs_pipe_deinit(&p);
}

Test(pipe, consumer_failure_unblocks_producer)
{
    struct qs_pipe p;
    cr_assert_eq(qs_pipe_init(&p, 1024), 0);
    struct producer pr = {.p = &p, .fail_at = -1};
    pthread_t t;
    pthread_create(&t, NULL, produce, &pr);
    unsigned char buf[100];
    cr_assert_gt(qs_pipe_read(&p, buf, sizeof(buf)), 0);
    qs_pipe_fail(&p, -7);
    pthread_join(t, NULL);
    cr_assert_eq(pr.rc, -7, "blocked producer must return the consumer's error");
    cr_assert_eq(qs_pipe_error(&p), -7);
    qs_pipe_fail(&p, -9);
    cr_assert_eq(qs_pipe_error(&p), -7, "first error wins");
    qs_pipe_deinit(&p);
}

Test(pipe, empty_stream_is_eof)
{
    struct qs_pipe p;
    cr_assert_eq(qs_pipe_init(&p, 16), 0);
    qs_pipe_close(&p);
    char b[4];
    cr_assert_eq(qs_pipe_read(&p, b, sizeof(b)), 0);
    qs_pipe_deinit(&p);
}
