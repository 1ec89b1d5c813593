#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

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

static double now_ms(void)
{
    return qs_monotonic() * 1000.0;
}

/* Fewer bytes buffered than asked for: the read waits briefly for more (a
 * download hands bytes over in 16 KiB pieces; an upload wants them in
 * batches), then returns what there is. */
Test(pipe, short_read_waits_briefly_for_a_batch)
{
    struct qs_pipe p;
    cr_assert_eq(qs_pipe_init(&p, 256 * 1024), 0);
    static char in[64 * 1024], out[64 * 1024];
    cr_assert_eq(qs_pipe_write(&p, in, 16 * 1024), 0);
    double t0 = now_ms();
    cr_assert_eq(qs_pipe_read(&p, out, sizeof(out)), 16 * 1024);
    double waited = now_ms() - t0;
    cr_assert_geq(waited, QS_PIPE_BATCH_WAIT_MS * 0.9, "returned after %.2f ms", waited);
    cr_assert_lt(waited, 2000.0, "waited %.2f ms", waited);
    /* A whole batch (a quarter of the ring, or all that was asked for) is
     * returned without waiting. */
    cr_assert_eq(qs_pipe_write(&p, in, sizeof(in)), 0);
    t0 = now_ms();
    cr_assert_eq(qs_pipe_read(&p, out, sizeof(out)), (ssize_t)sizeof(out));
    cr_assert_eq(qs_pipe_write(&p, in, 100), 0);
    cr_assert_eq(qs_pipe_read(&p, out, 100), 100);
    cr_assert_lt(now_ms() - t0, QS_PIPE_BATCH_WAIT_MS * 0.9, "a full batch waited");
    /* ... and so is the end of the stream. */
    cr_assert_eq(qs_pipe_write(&p, in, 10), 0);
    qs_pipe_close(&p);
    t0 = now_ms();
    cr_assert_eq(qs_pipe_read(&p, out, sizeof(out)), 10);
    cr_assert_eq(qs_pipe_read(&p, out, sizeof(out)), 0);
    cr_assert_lt(now_ms() - t0, QS_PIPE_BATCH_WAIT_MS * 0.9, "the end of the stream waited");
    qs_pipe_deinit(&p);
}

struct piece_writer {
    struct qs_pipe *p;
    size_t piece, total;
    atomic_size_t written;
    int rc;
};

static void *write_pieces(void *arg)
{
    struct piece_writer *w = arg;
    static char piece[16 * 1024];
    while (atomic_load(&w->written) < w->total) {
        w->rc = qs_pipe_write(w->p, piece, w->piece);
        if (w->rc != 0)
            return NULL;
        atomic_fetch_add(&w->written, w->piece);
    }
    qs_pipe_close(w->p);
    return NULL;
}

/* A producer blocked on a full pipe is woken once half of the ring is
 * free, not for every read (which would wake it for every 16 KiB). */
Test(pipe, blocked_producer_resumes_when_half_is_free)
{
    struct qs_pipe p;
    cr_assert_eq(qs_pipe_init(&p, 64 * 1024), 0);
    struct piece_writer w = {.p = &p, .piece = 16 * 1024, .total = 64 * 1024 + 16 * 1024};
    pthread_t t;
    pthread_create(&t, NULL, write_pieces, &w);
    while (atomic_load(&w.written) < 64 * 1024)
        usleep(1000);
    usleep(50 * 1000); /* the fifth piece waits for room */
    cr_assert_eq(atomic_load(&w.written), 64 * 1024);
    static char out[16 * 1024];
    cr_assert_eq(qs_pipe_read(&p, out, sizeof(out)), (ssize_t)sizeof(out));
    usleep(50 * 1000);
    cr_assert_eq(atomic_load(&w.written), 64 * 1024, "woken with a quarter of the ring free");
    cr_assert_eq(qs_pipe_read(&p, out, sizeof(out)), (ssize_t)sizeof(out));
    for (int i = 0; i < 2000 && atomic_load(&w.written) < w.total; i++)
        usleep(1000);
    cr_assert_eq(atomic_load(&w.written), w.total, "not woken with half of the ring free");
    size_t got = 2 * sizeof(out);
    ssize_t n;
    while ((n = qs_pipe_read(&p, out, sizeof(out))) > 0)
        got += (size_t)n;
    pthread_join(t, NULL);
    cr_assert_eq(n, 0);
    cr_assert_eq(w.rc, 0);
    cr_assert_eq(got, w.total);
    qs_pipe_deinit(&p);
}

/* Many small pieces through a ring whose size is no multiple of them, read
 * in sizes that are no multiple either, while both sides copy without the
 * lock: every byte arrives once, in order. Then a failure in the middle. */
struct pattern_writer {
    struct qs_pipe *p;
    size_t total;
    int rc;
};

static unsigned char pattern_byte(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

static void *write_pattern(void *arg)
{
    struct pattern_writer *w = arg;
    unsigned char piece[16411];
    size_t off = 0;
    for (unsigned k = 0; off < w->total; k++) {
        size_t n = 1 + (k * 7919u) % sizeof(piece);
        if (n > w->total - off)
            n = w->total - off;
        for (size_t i = 0; i < n; i++)
            piece[i] = pattern_byte(off + i);
        if ((w->rc = qs_pipe_write(w->p, piece, n)) != 0)
            return NULL;
        off += n;
    }
    qs_pipe_close(w->p);
    return NULL;
}

Test(pipe, small_pieces_arrive_once_and_in_order)
{
    struct qs_pipe p;
    cr_assert_eq(qs_pipe_init(&p, 100003), 0);
    struct pattern_writer w = {.p = &p, .total = 64 * 1024 * 1024 + 11};
    pthread_t t;
    pthread_create(&t, NULL, write_pattern, &w);
    static unsigned char buf[70001];
    size_t off = 0, bad = 0;
    ssize_t n;
    for (unsigned k = 0; (n = qs_pipe_read(&p, buf, 1 + (k * 4099u) % sizeof(buf))) > 0; k++) {
        for (ssize_t i = 0; i < n; i++)
            bad += buf[i] != pattern_byte(off + (size_t)i);
        off += (size_t)n;
    }
    pthread_join(t, NULL);
    cr_assert_eq(n, 0);
    cr_assert_eq(w.rc, 0);
    cr_assert_eq(off, w.total);
    cr_assert_eq(bad, 0, "%zu bytes differ", bad);
    qs_pipe_deinit(&p);
}
