/* Storage conformance suite, run against both implementations: radosgw
 * (QSNAP_TEST_S3_*) and a temporary directory. Plus S3-only failure cases:
 * wrong secret, missing bucket, and a connection cut mid-upload by a TCP
 * proxy in this file. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/log.h"
#include "qsnap/storage.h"
#include "qsnap/util.h"
#include "support.h"

#define MiB ((size_t)1 << 20)

enum backend { BK_S3, BK_FILE };

struct fixture {
    enum backend kind;
    struct qs_storage *st;
    char prefix[256]; /* s3: unique prefix of this test */
    char *dir;        /* file: temporary directory */
};

static void set_s3_opts(struct qs_storage_opts *o, const char *prefix)
{
    qs_storage_opts_init(o);
    qs_test_s3_opts(o, prefix);
    o->part_size = 5 * MiB;
    o->max_retries = 3;
    o->retry_base_ms = 50;
    o->retry_max_ms = 300;
    o->connect_timeout_ms = 3000;
    o->low_speed_time_s = 10;
}

static void fixture_open(struct fixture *f, enum backend kind, const char *tag, int page_size)
{
    static atomic_int seq;
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    struct qs_storage_opts o;
    struct qs_error err;
    if (kind == BK_S3) {
        snprintf(f->prefix, sizeof(f->prefix), "test-storage/%ld-%d-%s", (long)getpid(),
                 atomic_fetch_add(&seq, 1), tag);
        set_s3_opts(&o, f->prefix);
    } else {
        f->dir = qs_test_mkdtemp("storage");
        cr_assert_not_null(f->dir);
        qs_storage_opts_init(&o);
        o.kind = QS_DEST_FILE;
        o.path = f->dir;
    }
    o.list_page_size = page_size;
    cr_assert_eq(qs_storage_new(&o, &f->st, &err), 0, "%s", err.msg);
}

static void fixture_close(struct fixture *f)
{
    if (f->kind == BK_S3 && f->st != NULL) {
        /* Remove what the test left (keeps radosgw's memstore small). */
        struct qs_storage_list l;
        qs_storage_list_init(&l);
        struct qs_error err;
        if (qs_storage_list(f->st, "", &l, &err) == 0)
            for (size_t i = 0; i < l.n; i++)
                qs_storage_delete(f->st, l.items[i].key, &err);
        qs_storage_list_deinit(&l);
    }
    qs_storage_free(f->st);
    if (f->dir != NULL) {
        qs_test_rmrf(f->dir);
        free(f->dir);
    }
}

/* Deterministic data: xorshift stream. */
struct gen {
    uint64_t s;
};

static void gen_fill(struct gen *g, unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g->s ^= g->s << 13;
        g->s ^= g->s >> 7;
        g->s ^= g->s << 17;
        buf[i] = (unsigned char)g->s;
    }
}

/* Streams size bytes in uneven chunks; returns the SHA-256 in sha. */
static int put_generated(struct qs_storage *st, const char *key, size_t size, int known,
                         const struct qs_storage_meta *meta, char sha[65], struct qs_error *err)
{
    struct qs_storage_put *put;
    int rc = qs_storage_put_begin(st, key, known ? (int64_t)size : -1, meta, NULL, &put, err);
    if (rc != 0)
        return rc;
    struct qs_sha256 h;
    qs_sha256_init(&h);
    struct gen g = {0x9e3779b97f4a7c15ULL ^ size};
    static const size_t chunks[] = {65536, 1, 300000, 4096, 1048577};
    unsigned char *buf = malloc(1048577);
    size_t done = 0;
    for (int i = 0; done < size; i++) {
        size_t n = chunks[i % 5];
        if (n > size - done)
            n = size - done;
        gen_fill(&g, buf, n);
        qs_sha256_update(&h, buf, n);
        rc = qs_storage_put_write(put, buf, n, err);
        if (rc != 0)
            break;
        done += n;
    }
    free(buf);
    qs_sha256_final(&h, sha);
    qs_sha256_deinit(&h);
    if (rc != 0) {
        qs_storage_put_abort(put);
        return rc;
    }
    uint64_t stored = 0;
    rc = qs_storage_put_finish(put, &stored, err);
    if (rc == 0)
        cr_assert_eq(stored, size);
    return rc;
}

struct hash_sink {
    struct qs_sha256 h;
    uint64_t n;
};

static int hash_sink_fn(const void *data, size_t len, void *ud)
{
    struct hash_sink *s = ud;
    qs_sha256_update(&s->h, data, len);
    s->n += len;
    return 0;
}

static void get_sha(struct qs_storage *st, const char *key, char sha[65], uint64_t *n)
{
    struct hash_sink s = {.n = 0};
    qs_sha256_init(&s.h);
    struct qs_error err;
    int rc = qs_storage_get(st, key, hash_sink_fn, &s, NULL, &err);
    cr_assert_eq(rc, 0, "get %s: %s", key, err.msg);
    qs_sha256_final(&s.h, sha);
    qs_sha256_deinit(&s.h);
    *n = s.n;
}

static void assert_no_uploads(struct qs_storage *st, const char *prefix)
{
    struct qs_storage_uploads u;
    qs_storage_uploads_init(&u);
    struct qs_error err;
    cr_assert_eq(qs_storage_list_uploads(st, prefix, &u, &err), 0, "%s", err.msg);
    cr_assert_eq(u.n, 0, "%zu uploads left open, first %s", u.n, u.n ? u.items[0].key : "");
    qs_storage_uploads_deinit(&u);
}

/* ---- conformance ------------------------------------------------------------ */

static void round_trips(enum backend kind)
{
    struct fixture f;
    fixture_open(&f, kind, "sizes", 0);
    struct qs_error err;
    cr_assert_eq(qs_storage_probe(f.st, &err), 0, "%s", err.msg);
    const size_t sizes[] = {0, 1, 5 * MiB - 1, 5 * MiB, 5 * MiB + 1, 37 * MiB};
    for (int known = 0; known < 2; known++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            char key[128], sha[65], got[65];
            snprintf(key, sizeof(key), "c1/obj-%zu-%s.snapshot", sizes[i],
                     known ? "known" : "unknown");
            int rc = put_generated(f.st, key, sizes[i], known, NULL, sha, &err);
            cr_assert_eq(rc, 0, "put %s: %s", key, err.msg);
            uint64_t n;
            get_sha(f.st, key, got, &n);
            cr_assert_eq(n, sizes[i], "%s", key);
            cr_assert_str_eq(got, sha, "%s", key);
            struct qs_storage_stat stt;
            cr_assert_eq(qs_storage_head(f.st, key, &stt, &err), 0, "%s", err.msg);
            cr_assert_eq(stt.size, sizes[i]);
            qs_storage_stat_deinit(&stt);
            cr_assert_eq(qs_storage_delete(f.st, key, &err), 0, "%s", err.msg);
        }
    }
    assert_no_uploads(f.st, "");
    fixture_close(&f);
}

Test(storage_s3, round_trips)
{
    round_trips(BK_S3);
}

Test(storage_file, round_trips)
{
    round_trips(BK_FILE);
}

static void special_keys(enum backend kind)
{
    struct fixture f;
    fixture_open(&f, kind, "keys", 0);
    const char *keys[] = {
        "a b/with space.snapshot",
        "plus+sign/x+y.snapshot",
        "colon/2024-01-01T12:00:00Z.snapshot",
        "tilde~/~x",
        "caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac/\xd0\xb6.snapshot",
        "deep/1/2/3/4/5/leaf.json",
        "mixed/a b+c:~\xc3\xa9.snapshot",
    };
    size_t nk = sizeof(keys) / sizeof(keys[0]);
    struct qs_error err;
    for (size_t i = 0; i < nk; i++) {
        cr_assert_eq(
            qs_storage_put_buffer(f.st, keys[i], keys[i], strlen(keys[i]), NULL, NULL, &err), 0,
            "put %s: %s", keys[i], err.msg);
    }
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, nk);
    for (size_t i = 0; i < nk; i++) {
        int found = 0;
        for (size_t j = 0; j < l.n; j++)
            if (strcmp(l.items[j].key, keys[i]) == 0) {
                found = 1;
                cr_assert_eq(l.items[j].size, strlen(keys[i]));
            }
        cr_assert(found, "key %s not listed", keys[i]);
        struct qs_buf b;
        qs_buf_init(&b);
        cr_assert_eq(qs_storage_get_buffer(f.st, keys[i], 4096, &b, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(b.len, strlen(keys[i]));
        cr_assert_eq(memcmp(b.data, keys[i], b.len), 0);
        qs_buf_free(&b);
    }
    for (size_t j = 1; j < l.n; j++)
        cr_assert_lt(strcmp(l.items[j - 1].key, l.items[j].key), 0, "sorted");
    qs_storage_list_deinit(&l);

    /* Prefix filtering with a special character in the prefix. */
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "caf\xc3\xa9/", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, 1);
    cr_assert_str_eq(l.items[0].key, keys[4]);
    qs_storage_list_deinit(&l);

    /* Invalid keys are refused before any I/O. */
    cr_assert_eq(qs_storage_put_buffer(f.st, "../escape", "x", 1, NULL, NULL, &err), QS_EINVAL);
    cr_assert_eq(qs_storage_put_buffer(f.st, "a//b", "x", 1, NULL, NULL, &err), QS_EINVAL);
    fixture_close(&f);
}

Test(storage_s3, special_keys)
{
    special_keys(BK_S3);
}

Test(storage_file, special_keys)
{
    special_keys(BK_FILE);
}

static void list_pages(enum backend kind)
{
    struct fixture f;
    fixture_open(&f, kind, "pages", 2);
    struct qs_error err;
    char key[64];
    for (int i = 0; i < 7; i++) {
        snprintf(key, sizeof(key), "list/k%02d", i);
        cr_assert_eq(qs_storage_put_buffer(f.st, key, key, (size_t)i, NULL, NULL, &err), 0, "%s",
                     err.msg);
    }
    cr_assert_eq(qs_storage_put_buffer(f.st, "lost/x", "x", 1, NULL, NULL, &err), 0);
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "list/", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, 7, "got %zu", l.n);
    for (int i = 0; i < 7; i++) {
        snprintf(key, sizeof(key), "list/k%02d", i);
        cr_assert_str_eq(l.items[i].key, key);
        cr_assert_eq(l.items[i].size, (uint64_t)i);
        cr_assert_gt(l.items[i].mtime, qs_clock_now() - 86400);
    }
    qs_storage_list_deinit(&l);
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "l", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, 8);
    qs_storage_list_deinit(&l);
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "nothing/", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, 0);
    qs_storage_list_deinit(&l);
    fixture_close(&f);
}

Test(storage_s3, list_pages)
{
    list_pages(BK_S3);
}

Test(storage_file, list_pages)
{
    list_pages(BK_FILE);
}

static void delete_and_head(enum backend kind)
{
    struct fixture f;
    fixture_open(&f, kind, "delete", 0);
    struct qs_error err;
    struct qs_storage_meta m;
    qs_storage_meta_init(&m);
    qs_storage_meta_set(&m, "sha256",
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    qs_storage_meta_set(&m, "collection", "agent one");
    int64_t before = qs_clock_now();
    cr_assert_eq(qs_storage_put_buffer(f.st, "c1/s.snapshot", "hello", 5, &m, NULL, &err), 0, "%s",
                 err.msg);
    /* Put again without metadata after a delete: the old metadata went with
     * the object. */
    cr_assert_eq(qs_storage_put_buffer(f.st, "c1/t.snapshot", "x", 1, &m, NULL, &err), 0);
    cr_assert_eq(qs_storage_delete(f.st, "c1/t.snapshot", &err), 0, "%s", err.msg);
    cr_assert_eq(qs_storage_put_buffer(f.st, "c1/t.snapshot", "yy", 2, NULL, NULL, &err), 0);
    qs_storage_meta_deinit(&m);

    struct qs_storage_stat st;
    cr_assert_eq(qs_storage_head(f.st, "c1/s.snapshot", &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.size, 5);
    cr_assert_geq(st.mtime, before - 5);
    cr_assert_leq(st.mtime, qs_clock_now() + 5);
    cr_assert_eq(st.meta.n, 2);
    cr_assert_str_eq(qs_storage_meta_get(&st.meta, "sha256"),
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cr_assert_str_eq(qs_storage_meta_get(&st.meta, "collection"), "agent one");
    qs_storage_stat_deinit(&st);
    cr_assert_eq(qs_storage_head(f.st, "c1/t.snapshot", &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.size, 2);
    cr_assert_eq(st.meta.n, 0);
    qs_storage_stat_deinit(&st);

    /* Metadata never shows up as an object. */
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "", &l, &err), 0);
    cr_assert_eq(l.n, 2);
    qs_storage_list_deinit(&l);

    cr_assert_eq(qs_storage_delete(f.st, "c1/s.snapshot", &err), 0, "%s", err.msg);
    cr_assert_eq(qs_storage_head(f.st, "c1/s.snapshot", &st, &err), QS_ENOTFOUND);
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_storage_get_buffer(f.st, "c1/s.snapshot", 100, &b, NULL, &err), QS_ENOTFOUND);
    qs_buf_free(&b);
    cr_assert_eq(qs_storage_delete(f.st, "c1/s.snapshot", &err), 0, "deleting twice is fine");
    cr_assert_eq(qs_storage_head(f.st, "never/was", &st, &err), QS_ENOTFOUND);

    /* get_buffer limit. */
    qs_buf_init(&b);
    cr_assert_eq(qs_storage_get_buffer(f.st, "c1/t.snapshot", 1, &b, NULL, &err), QS_ETOOBIG);
    qs_buf_free(&b);
    fixture_close(&f);
}

Test(storage_s3, delete_and_head)
{
    delete_and_head(BK_S3);
}

Test(storage_file, delete_and_head)
{
    delete_and_head(BK_FILE);
}

static void failed_puts_leave_nothing(enum backend kind)
{
    struct fixture f;
    fixture_open(&f, kind, "abort", 0);
    struct qs_error err;
    unsigned char *buf = calloc(1, 12 * MiB);

    /* 1. Abandoned multipart-sized put. */
    struct qs_storage_put *put;
    cr_assert_eq(qs_storage_put_begin(f.st, "c1/aborted", -1, NULL, NULL, &put, &err), 0);
    cr_assert_eq(qs_storage_put_write(put, buf, 12 * MiB, &err), 0, "%s", err.msg);
    qs_storage_put_abort(put);

    /* 2. Size mismatch: fewer bytes than announced. */
    cr_assert_eq(qs_storage_put_begin(f.st, "c1/short", 11 * MiB, NULL, NULL, &put, &err), 0);
    cr_assert_eq(qs_storage_put_write(put, buf, 10 * MiB, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_storage_put_finish(put, NULL, &err), QS_ECHECKSUM);

    /* 3. More bytes than announced. */
    cr_assert_eq(qs_storage_put_begin(f.st, "c1/long", 3, NULL, NULL, &put, &err), 0);
    cr_assert_eq(qs_storage_put_write(put, buf, 4, &err), QS_ECHECKSUM);
    qs_storage_put_abort(put);

    /* 4. Cancelled mid-stream. */
    struct qs_cancel cancel = {0};
    cr_assert_eq(qs_storage_put_begin(f.st, "c1/cancelled", -1, NULL, &cancel, &put, &err), 0);
    cr_assert_eq(qs_storage_put_write(put, buf, 11 * MiB, &err), 0, "%s", err.msg);
    qs_cancel_request(&cancel);
    int rc = qs_storage_put_write(put, buf, 1 * MiB, &err);
    if (rc == 0)
        rc = qs_storage_put_finish(put, NULL, &err);
    else
        qs_storage_put_abort(put);
    cr_assert_eq(rc, QS_ECANCELED, "%s", err.msg);

    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "", &l, &err), 0);
    cr_assert_eq(l.n, 0, "nothing stored, got %s", l.n ? l.items[0].key : "");
    qs_storage_list_deinit(&l);
    assert_no_uploads(f.st, "");
    free(buf);
    fixture_close(&f);
}

Test(storage_s3, failed_puts_leave_nothing)
{
    failed_puts_leave_nothing(BK_S3);
}

Test(storage_file, failed_puts_leave_nothing)
{
    failed_puts_leave_nothing(BK_FILE);
}

static void open_uploads_listed_and_aborted(enum backend kind)
{
    struct fixture f;
    fixture_open(&f, kind, "uploads", 0);
    struct qs_error err;
    unsigned char *buf = calloc(1, 6 * MiB);
    struct qs_storage_put *put;
    int64_t before = qs_clock_now();
    cr_assert_eq(qs_storage_put_begin(f.st, "c2/open.snapshot", -1, NULL, NULL, &put, &err), 0);
    /* More than one part: the S3 multipart upload is open now. */
    cr_assert_eq(qs_storage_put_write(put, buf, 6 * MiB, &err), 0, "%s", err.msg);

    struct qs_storage_uploads u;
    qs_storage_uploads_init(&u);
    cr_assert_eq(qs_storage_list_uploads(f.st, "c2/", &u, &err), 0, "%s", err.msg);
    cr_assert_eq(u.n, 1);
    if (kind == BK_S3)
        cr_assert_str_eq(u.items[0].key, "c2/open.snapshot");
    else /* a temporary's name does not record its key: its own path */
        cr_assert(strncmp(u.items[0].key, "c2/.qsnap-tmp-", 14) == 0 &&
                      strlen(u.items[0].key) == strlen("c2/.qsnap-tmp-XXXXXX"),
                  "%s", u.items[0].key);
    cr_assert_geq(u.items[0].initiated, before - 60);
    cr_assert_leq(u.items[0].initiated, qs_clock_now() + 60);
    /* Not listed under another prefix, and never as an object. */
    struct qs_storage_uploads none;
    qs_storage_uploads_init(&none);
    cr_assert_eq(qs_storage_list_uploads(f.st, "c3/", &none, &err), 0);
    cr_assert_eq(none.n, 0);
    qs_storage_uploads_deinit(&none);
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "", &l, &err), 0);
    cr_assert_eq(l.n, 0);
    qs_storage_list_deinit(&l);

    cr_assert_eq(qs_storage_abort_upload(f.st, u.items[0].key, u.items[0].upload_id, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(qs_storage_abort_upload(f.st, u.items[0].key, u.items[0].upload_id, &err), 0,
                 "aborting twice is fine: %s", err.msg);
    qs_storage_uploads_deinit(&u);
    assert_no_uploads(f.st, "");
    qs_storage_put_abort(put);
    free(buf);
    fixture_close(&f);
}

Test(storage_s3, open_uploads_listed_and_aborted)
{
    open_uploads_listed_and_aborted(BK_S3);
}

Test(storage_file, open_uploads_listed_and_aborted)
{
    open_uploads_listed_and_aborted(BK_FILE);
}

/* A put never replaces an existing object, on every path: buffered single
 * PUT, streaming single PUT (known size above one part), multipart (unknown
 * size above one part) and an unknown size that ends up as one PUT. */
static void put_never_replaces(enum backend kind)
{
    struct fixture f;
    fixture_open(&f, kind, "noreplace", 0);
    struct qs_error err;
    struct qs_storage_meta m;
    qs_storage_meta_init(&m);
    qs_storage_meta_set(&m, "qsnap-sha256", "0123");
    const char *key = "c1/keep.snapshot";
    cr_assert_eq(qs_storage_put_buffer(f.st, key, "original", 8, &m, NULL, &err), 0, "%s", err.msg);
    qs_storage_meta_deinit(&m);

    char sha[65];
    static const struct {
        size_t size;
        int known;
    } ways[] = {{8, 1}, {6 * MiB, 1}, {11 * MiB, 0}, {1000, 0}};
    for (size_t i = 0; i < sizeof(ways) / sizeof(ways[0]); i++) {
        qs_error_clear(&err);
        int rc = put_generated(f.st, key, ways[i].size, ways[i].known, NULL, sha, &err);
        cr_assert_eq(rc, UV_EEXIST, "way %zu: %d %s", i, rc, err.msg);
        cr_assert_eq(err.retryable, 0);
        cr_assert_not_null(strstr(err.msg, key), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, "already exists"), "%s", err.msg);
    }
    cr_assert_eq(qs_storage_put_buffer(f.st, key, "intruder", 8, NULL, NULL, &err), UV_EEXIST);

    /* The original is untouched: bytes and metadata. */
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_storage_get_buffer(f.st, key, 100, &b, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(b.len, 8);
    cr_assert_eq(memcmp(b.data, "original", 8), 0);
    qs_buf_free(&b);
    struct qs_storage_stat st;
    cr_assert_eq(qs_storage_head(f.st, key, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.meta.n, 1, "only the caller's metadata is shown");
    cr_assert_str_eq(qs_storage_meta_get(&st.meta, "qsnap-sha256"), "0123");
    qs_storage_stat_deinit(&st);
    /* Nothing left over by the refused puts. */
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, 1);
    qs_storage_list_deinit(&l);
    assert_no_uploads(f.st, "");
    /* Once deleted, the key can be written again. */
    cr_assert_eq(qs_storage_delete(f.st, key, &err), 0, "%s", err.msg);
    cr_assert_eq(put_generated(f.st, key, 6 * MiB, 1, NULL, sha, &err), 0, "%s", err.msg);
    fixture_close(&f);
}

Test(storage_s3, put_never_replaces)
{
    put_never_replaces(BK_S3);
}

Test(storage_file, put_never_replaces)
{
    put_never_replaces(BK_FILE);
}

/* The one put that may replace (a drill's result): it creates, replaces the
 * bytes and the metadata, leaves nothing over, and ordinary puts still refuse
 * the key afterwards. */
static void replace_buffer_replaces(enum backend kind)
{
    struct fixture f;
    fixture_open(&f, kind, "replace", 0);
    struct qs_error err;
    const char *key = "c1/s.drill.json";
    struct qs_storage_meta m;
    qs_storage_meta_init(&m);
    qs_storage_meta_set(&m, "note", "first");
    cr_assert_eq(qs_storage_replace_buffer(f.st, key, "first", 5, &m, NULL, &err), 0, "%s",
                 err.msg);
    qs_storage_meta_deinit(&m);
    cr_assert_eq(qs_storage_replace_buffer(f.st, key, "second!", 7, NULL, NULL, &err), 0, "%s",
                 err.msg);
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_storage_get_buffer(f.st, key, 100, &b, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(b.len, 7);
    cr_assert_eq(memcmp(b.data, "second!", 7), 0);
    qs_buf_free(&b);
    struct qs_storage_stat st;
    cr_assert_eq(qs_storage_head(f.st, key, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.size, 7);
    cr_assert_null(qs_storage_meta_get(&st.meta, "note"), "the old metadata went with it");
    qs_storage_stat_deinit(&st);
    cr_assert_eq(qs_storage_put_buffer(f.st, key, "third", 5, NULL, NULL, &err), UV_EEXIST);
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, 1);
    qs_storage_list_deinit(&l);
    assert_no_uploads(f.st, "");
    fixture_close(&f);
}

Test(storage_s3, replace_buffer_replaces)
{
    replace_buffer_replaces(BK_S3);
}

Test(storage_file, replace_buffer_replaces)
{
    replace_buffer_replaces(BK_FILE);
}

/* Temporaries have fixed-length names: an object name of 255 bytes (the
 * file-name limit) is stored, where ".NAME.qsnap-tmp-XXXXXX" would not fit. */
Test(storage_file, longest_names_fit)
{
    struct fixture f;
    fixture_open(&f, BK_FILE, "long", 0);
    struct qs_error err;
    char key[300] = "c/";
    memset(key + 2, 'n', 255);
    key[257] = '\0';
    cr_assert_eq(qs_storage_put_buffer(f.st, key, "abc", 3, NULL, NULL, &err), 0, "%s", err.msg);
    char sha[65];
    key[2 + 250] = '\0';
    cr_assert_eq(put_generated(f.st, key, 6 * MiB, 0, NULL, sha, &err), 0, "%s", err.msg);
    /* with metadata: the sidecar ".NAME.meta" needs NAME <= 249 bytes */
    struct qs_storage_meta m;
    qs_storage_meta_init(&m);
    qs_storage_meta_set(&m, "qsnap-sha256", "0123");
    key[2 + 249] = '\0';
    cr_assert_eq(put_generated(f.st, key, 1000, 1, &m, sha, &err), 0, "%s", err.msg);
    qs_storage_meta_deinit(&m);
    struct qs_storage_stat st;
    cr_assert_eq(qs_storage_head(f.st, key, &st, &err), 0, "%s", err.msg);
    cr_assert_str_eq(qs_storage_meta_get(&st.meta, "qsnap-sha256"), "0123");
    qs_storage_stat_deinit(&st);
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "c/", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, 3);
    qs_storage_list_deinit(&l);
    assert_no_uploads(f.st, "");
    fixture_close(&f);
}

/* A missing (unmounted) destination is an error everywhere, never "empty" or
 * "no such object"; a missing directory below it is simply empty. */
Test(storage_file, missing_root_is_an_error)
{
    struct fixture f;
    fixture_open(&f, BK_FILE, "gone", 0);
    struct qs_error err;
    cr_assert_eq(qs_storage_put_buffer(f.st, "c/x", "abc", 3, NULL, NULL, &err), 0);
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "nothing/", &l, &err), 0, "%s", err.msg);
    cr_assert_eq(l.n, 0);
    qs_storage_list_deinit(&l);
    struct qs_storage_stat st;
    cr_assert_eq(qs_storage_head(f.st, "nothing/x", &st, &err), QS_ENOTFOUND);

    qs_test_rmrf(f.dir);
    char gone[600];
    snprintf(gone, sizeof(gone), "file destination %s does not exist", f.dir);
#define ASSERT_GONE(call)                                                                          \
    do {                                                                                           \
        qs_error_clear(&err);                                                                      \
        int rc_ = (call);                                                                          \
        cr_assert_eq(rc_, UV_ENOENT, #call ": %d %s", rc_, err.msg);                               \
        cr_assert_not_null(strstr(err.msg, gone), "%s", err.msg);                                  \
    } while (0)
    qs_storage_list_init(&l);
    ASSERT_GONE(qs_storage_list(f.st, "", &l, &err));
    ASSERT_GONE(qs_storage_list(f.st, "c/", &l, &err));
    qs_storage_list_deinit(&l);
    struct qs_storage_uploads u;
    qs_storage_uploads_init(&u);
    ASSERT_GONE(qs_storage_list_uploads(f.st, "", &u, &err));
    qs_storage_uploads_deinit(&u);
    ASSERT_GONE(qs_storage_head(f.st, "c/x", &st, &err));
    struct qs_buf b;
    qs_buf_init(&b);
    ASSERT_GONE(qs_storage_get_buffer(f.st, "c/x", 10, &b, NULL, &err));
    qs_buf_free(&b);
    ASSERT_GONE(qs_storage_delete(f.st, "c/x", &err));
    ASSERT_GONE(qs_storage_put_buffer(f.st, "c/y", "abc", 3, NULL, NULL, &err));
    cr_assert_neq(qs_storage_probe(f.st, &err), 0);
#undef ASSERT_GONE
    struct stat sb;
    cr_assert_neq(stat(f.dir, &sb), 0, "the destination must not be recreated");
    fixture_close(&f);
}

/* The destination turns read-only in the middle of a put: the temporary
 * cannot be removed, and that is logged with its path. Needs root (a bind
 * mount in a private mount namespace, so nothing outside this test sees it). */
Test(storage_file, read_only_mid_put_is_logged)
{
    if (geteuid() != 0)
        cr_skip_test("needs root for a private bind mount (CI runs as root)");
    cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare: %s", strerror(errno));
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%s", strerror(errno));
    struct fixture f;
    fixture_open(&f, BK_FILE, "ro", 0);
    struct qs_error err;
    char logpath[] = "/tmp/qsnap-storage-log-XXXXXX";
    int lfd = mkstemp(logpath);
    cr_assert_geq(lfd, 0);
    qs_log_set_fd(lfd);

    struct qs_storage_put *put, *put2;
    cr_assert_eq(qs_storage_put_begin(f.st, "c/ro.snapshot", 2 * MiB, NULL, NULL, &put, &err), 0);
    cr_assert_eq(qs_storage_put_begin(f.st, "c/ro2.snapshot", -1, NULL, NULL, &put2, &err), 0);
    unsigned char *buf = calloc(1, MiB);
    cr_assert_eq(qs_storage_put_write(put, buf, MiB, &err), 0, "%s", err.msg);
    /* Paths resolve through a read-only mount from now on; the open
     * temporary keeps writing to the file system below. */
    cr_assert_eq(mount(f.dir, f.dir, NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
    cr_assert_eq(mount(NULL, f.dir, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL), 0, "%s",
                 strerror(errno));
    cr_assert_eq(qs_storage_put_write(put, buf, MiB, &err), 0, "%s", err.msg);
    int rc = qs_storage_put_finish(put, NULL, &err);
    cr_assert_eq(rc, UV_EROFS, "%d %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "Read-only file system"), "%s", err.msg);

    /* Aborting a put on the read-only destination: logged the same way. */
    qs_storage_put_abort(put2);
    cr_assert_eq(umount(f.dir), 0, "%s", strerror(errno));
    qs_log_set_fd(2);
    close(lfd);
    char *log = qs_test_read_file(logpath, NULL);
    unlink(logpath);
    cr_assert_not_null(log);
    const char *p = strstr(log, "could not remove temporary");
    cr_assert_not_null(p, "%s", log);
    cr_assert_not_null(strstr(p + 1, "could not remove temporary"), "two lines: %s", log);
    cr_assert_not_null(strstr(log, "of c/ro.snapshot"), "%s", log);
    cr_assert_not_null(strstr(log, "of c/ro2.snapshot"), "%s", log);
    cr_assert_not_null(strstr(log, "/c/.qsnap-tmp-"), "%s", log);
    cr_assert_not_null(strstr(log, "Read-only file system"), "%s", log);
    free(log);
    /* Writable again: the leftovers are found and removed as stale uploads. */
    struct qs_storage_uploads u;
    qs_storage_uploads_init(&u);
    cr_assert_eq(qs_storage_list_uploads(f.st, "c/", &u, &err), 0, "%s", err.msg);
    cr_assert_eq(u.n, 2);
    for (size_t i = 0; i < u.n; i++)
        cr_assert_eq(qs_storage_abort_upload(f.st, u.items[i].key, u.items[i].upload_id, &err), 0,
                     "%s", err.msg);
    qs_storage_uploads_deinit(&u);
    assert_no_uploads(f.st, "");
    free(buf);
    fixture_close(&f);
}

Test(storage_file, probe_and_layout)
{
    struct fixture f;
    fixture_open(&f, BK_FILE, "probe", 0);
    struct qs_error err;
    cr_assert_eq(qs_storage_probe(f.st, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_storage_put_buffer(f.st, "c/x", "abc", 3, NULL, NULL, &err), 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s/c/x", f.dir);
    size_t n = 0;
    char *data = qs_test_read_file(path, &n);
    cr_assert_not_null(data);
    cr_assert_eq(n, 3);
    free(data);
    /* Deleting the last object removes its now-empty directory. */
    cr_assert_eq(qs_storage_delete(f.st, "c/x", &err), 0);
    snprintf(path, sizeof(path), "%s/c", f.dir);
    struct stat sb;
    cr_assert_neq(stat(path, &sb), 0);
    cr_assert_eq(stat(f.dir, &sb), 0);
    fixture_close(&f);

    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = QS_DEST_FILE;
    o.path = "/nonexistent/qsnap-dir";
    struct qs_storage *st;
    cr_assert_eq(qs_storage_new(&o, &st, &err), 0);
    cr_assert_neq(qs_storage_probe(st, &err), 0);
    cr_assert_not_null(strstr(err.msg, "/nonexistent/qsnap-dir"));
    qs_storage_free(st);
    o.path = "relative/dir";
    cr_assert_eq(qs_storage_new(&o, &st, &err), QS_ECONFIG);
}

/* ---- S3 failures ------------------------------------------------------------------ */

Test(storage_s3, wrong_secret_stores_nothing)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "test-storage/%ld-wrong-secret", (long)getpid());
    struct qs_storage_opts o;
    set_s3_opts(&o, prefix);
    o.secret_access_key = "definitely-not-the-secret";
    struct qs_storage *bad, *good;
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &bad, &err), 0);
    set_s3_opts(&o, prefix);
    cr_assert_eq(qs_storage_new(&o, &good, &err), 0);

    int rc = qs_storage_put_buffer(bad, "c1/x", "data", 4, NULL, NULL, &err);
    cr_assert_neq(rc, 0);
    cr_assert_not_null(strstr(err.msg, "SignatureDoesNotMatch"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "definitely-not-the-secret"));
    cr_assert_eq(err.http_status, 403);
    /* Multipart path too. */
    char sha[65];
    rc = put_generated(bad, "c1/big", 6 * MiB, 0, NULL, sha, &err);
    cr_assert_neq(rc, 0);
    cr_assert_not_null(strstr(err.msg, "SignatureDoesNotMatch"), "%s", err.msg);
    cr_assert_neq(qs_storage_probe(bad, &err), 0);
    cr_assert_not_null(strstr(err.msg, "SignatureDoesNotMatch"), "%s", err.msg);
    cr_assert_eq(qs_storage_retries(bad), 0, "403 is not retried");

    struct qs_storage_stat st;
    cr_assert_eq(qs_storage_head(good, "c1/x", &st, &err), QS_ENOTFOUND);
    cr_assert_eq(qs_storage_head(good, "c1/big", &st, &err), QS_ENOTFOUND);
    assert_no_uploads(good, "");
    qs_storage_free(bad);
    qs_storage_free(good);
}

Test(storage_s3, missing_bucket_is_a_clear_error)
{
    char bucket[64];
    snprintf(bucket, sizeof(bucket), "qsnap-missing-%ld", (long)getpid());
    struct qs_storage_opts o;
    set_s3_opts(&o, "p");
    o.bucket = bucket;
    struct qs_storage *st;
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &st, &err), 0);
    cr_assert_eq(qs_storage_probe(st, &err), QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, "NoSuchBucket"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, bucket), "%s", err.msg);
    cr_assert_neq(qs_storage_put_buffer(st, "k", "v", 1, NULL, NULL, &err), 0);
    cr_assert_not_null(strstr(err.msg, "NoSuchBucket"), "%s", err.msg);
    /* Still missing: never created behind the operator's back. */
    cr_assert_eq(qs_storage_probe(st, &err), QS_ECONFIG);
    qs_storage_free(st);
}

/* ---- a TCP proxy that cuts connections ----------------------------------------
 * Forwards 127.0.0.1:port to the S3 endpoint. While `cuts` > 0, a
 * connection that has carried more than cut_after bytes from the client is
 * closed on both sides (and cuts decremented; -1 = cut every connection). */
struct proxy {
    int lfd;
    int port;
    int up_port;
    long cut_after;
    int cut_download; /* count bytes from the server instead */
    atomic_int cuts;
    atomic_int stop;
    atomic_int active;
    atomic_int cut_count;
    pthread_t th;
};

struct proxy_conn {
    struct proxy *p;
    int cfd;
};

static void *proxy_conn_main(void *arg)
{
    struct proxy_conn *c = arg;
    struct proxy *p = c->p;
    int ufd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->up_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ufd < 0 || connect(ufd, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto out;
    long from_client = 0;
    char buf[65536];
    for (;;) {
        struct pollfd fds[2] = {{c->cfd, POLLIN, 0}, {ufd, POLLIN, 0}};
        if (poll(fds, 2, 200) < 0 && errno != EINTR)
            break;
        if (atomic_load(&p->stop))
            break;
        int closed = 0;
        for (int i = 0; i < 2 && !closed; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int from = i == 0 ? c->cfd : ufd, to = i == 0 ? ufd : c->cfd;
            ssize_t n = read(from, buf, sizeof(buf));
            if (n <= 0) {
                closed = 1;
                break;
            }
            if (i == (p->cut_download ? 1 : 0)) {
                from_client += n;
                int cuts = atomic_load(&p->cuts);
                if (cuts != 0 && from_client > p->cut_after) {
                    if (cuts > 0)
                        atomic_fetch_sub(&p->cuts, 1);
                    atomic_fetch_add(&p->cut_count, 1);
                    closed = 1;
                    break;
                }
            }
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(to, buf + off, (size_t)(n - off));
                if (w <= 0) {
                    closed = 1;
                    break;
                }
                off += w;
            }
        }
        if (closed)
            break;
    }
out:
    if (ufd >= 0)
        close(ufd);
    close(c->cfd);
    free(c);
    atomic_fetch_sub(&p->active, 1);
    return NULL;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd = {p->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        int cfd = accept(p->lfd, NULL, NULL);
        if (cfd < 0)
            continue;
        struct proxy_conn *c = malloc(sizeof(*c));
        c->p = p;
        c->cfd = cfd;
        atomic_fetch_add(&p->active, 1);
        pthread_t t;
        if (pthread_create(&t, NULL, proxy_conn_main, c) != 0) {
            close(cfd);
            free(c);
            atomic_fetch_sub(&p->active, 1);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static void proxy_start(struct proxy *p, int up_port, long cut_after, int cuts)
{
    memset(p, 0, sizeof(*p));
    p->up_port = up_port;
    p->cut_after = cut_after;
    atomic_store(&p->cuts, cuts);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(p->lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(p->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(p->lfd, 16), 0);
    socklen_t al = sizeof(a);
    getsockname(p->lfd, (struct sockaddr *)&a, &al);
    p->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&p->th, NULL, proxy_main, p), 0);
}

static void proxy_stop(struct proxy *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->th, NULL);
    close(p->lfd);
    for (int i = 0; i < 100 && atomic_load(&p->active) > 0; i++)
        usleep(20000);
}

static int endpoint_port(void)
{
    const char *ep = qs_test_env("QSNAP_TEST_S3_ENDPOINT");
    const char *colon = strrchr(ep, ':');
    cr_assert_not_null(colon);
    return atoi(colon + 1);
}

static void cut_upload(int cuts, int expect_success)
{
    struct proxy px;
    proxy_start(&px, endpoint_port(), 3 * (long)MiB, cuts);
    char prefix[128], ep[64];
    snprintf(prefix, sizeof(prefix), "test-storage/%ld-cut%d", (long)getpid(), cuts);
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", px.port);
    struct qs_storage_opts o;
    set_s3_opts(&o, prefix);
    o.endpoint = ep;
    struct qs_storage *viaproxy, *direct;
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &viaproxy, &err), 0);
    set_s3_opts(&o, prefix);
    cr_assert_eq(qs_storage_new(&o, &direct, &err), 0);

    char sha[65];
    int rc = put_generated(viaproxy, "c1/cut.snapshot", 23 * MiB, 0, NULL, sha, &err);
    cr_assert_geq(atomic_load(&px.cut_count), 1, "the proxy cut a connection");
    if (expect_success) {
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_geq(qs_storage_retries(viaproxy), 1);
        char got[65];
        uint64_t n;
        get_sha(direct, "c1/cut.snapshot", got, &n);
        cr_assert_eq(n, 23 * MiB);
        cr_assert_str_eq(got, sha);
    } else {
        cr_assert_neq(rc, 0);
        cr_assert_eq(err.code, QS_ETRANSPORT, "%s", err.msg);
        struct qs_storage_stat st;
        cr_assert_eq(qs_storage_head(direct, "c1/cut.snapshot", &st, &err), QS_ENOTFOUND);
    }
    /* Either way: no multipart upload left open. */
    assert_no_uploads(direct, "");
    qs_storage_delete(direct, "c1/cut.snapshot", &err);
    qs_storage_free(viaproxy);
    qs_storage_free(direct);
    proxy_stop(&px);
}

Test(storage_s3, connection_cut_once_is_retried)
{
    cut_upload(1, 1);
}

Test(storage_s3, connection_cut_always_aborts_upload)
{
    cut_upload(-1, 0);
}

Test(storage_s3, interrupted_get_resumes_with_range)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "test-storage/%ld-resume", (long)getpid());
    struct qs_storage_opts o;
    set_s3_opts(&o, prefix);
    struct qs_storage *direct, *viaproxy;
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &direct, &err), 0);
    char sha[65], got[65];
    cr_assert_eq(put_generated(direct, "c1/r.snapshot", 9 * MiB, 1, NULL, sha, &err), 0, "%s",
                 err.msg);

    struct proxy px;
    proxy_start(&px, endpoint_port(), 4 * (long)MiB, 1);
    px.cut_download = 1;
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", px.port);
    o.endpoint = ep;
    cr_assert_eq(qs_storage_new(&o, &viaproxy, &err), 0);
    uint64_t n;
    get_sha(viaproxy, "c1/r.snapshot", got, &n);
    cr_assert_eq(atomic_load(&px.cut_count), 1, "the download was cut once");
    cr_assert_eq(n, 9 * MiB, "every byte delivered exactly once");
    cr_assert_str_eq(got, sha);
    cr_assert_eq(qs_storage_retries(viaproxy), 1);
    qs_storage_delete(direct, "c1/r.snapshot", &err);
    qs_storage_free(viaproxy);
    qs_storage_free(direct);
    proxy_stop(&px);
}

Test(storage_file, bandwidth_cap)
{
    char *dir = qs_test_mkdtemp("storage-bw");
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = QS_DEST_FILE;
    o.path = dir;
    o.max_bytes_per_sec = 4 * MiB;
    struct qs_storage *st;
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &st, &err), 0);
    char *buf = calloc(1, 2 * MiB);
    double t0 = qs_monotonic();
    cr_assert_eq(qs_storage_put_buffer(st, "bw", buf, 2 * MiB, NULL, NULL, &err), 0, "%s", err.msg);
    double dt = qs_monotonic() - t0;
    cr_assert_geq(dt, 0.45, "2 MiB at 4 MiB/s took only %.3f s", dt);
    cr_assert_leq(dt, 5.0);
    /* Cancel interrupts the throttle. */
    struct qs_cancel cancel = {0};
    struct qs_storage_put *put;
    cr_assert_eq(qs_storage_put_begin(st, "bw2", -1, NULL, &cancel, &put, &err), 0);
    qs_cancel_request(&cancel);
    t0 = qs_monotonic();
    int rc = qs_storage_put_write(put, buf, 2 * MiB, &err);
    cr_assert_lt(qs_monotonic() - t0, 0.4);
    if (rc == 0)
        rc = qs_storage_put_finish(put, NULL, &err);
    else
        qs_storage_put_abort(put);
    cr_assert_eq(rc, QS_ECANCELED);
    free(buf);
    qs_storage_free(st);
    qs_test_rmrf(dir);
    free(dir);
}

/* Size of the one temporary file of a put under dir/c (-1: none or several). */
static long long temp_size(const char *dir)
{
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/c", dir);
    DIR *d = opendir(sub);
    if (d == NULL)
        return -1;
    long long size = -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".qsnap-tmp-", 11) != 0)
            continue;
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", sub, e->d_name);
        struct stat sb;
        if (stat(path, &sb) == 0)
            size = (long long)sb.st_size;
        n++;
    }
    closedir(d);
    return n == 1 ? size : -1;
}

/* A download hands its bytes over in 16 KiB pieces; they reach the file in
 * writes of 256 KiB (one system call per piece cost more CPU than the whole
 * copy), and the rest at the end, before the fsync. */
Test(storage_file, small_writes_reach_the_file_in_batches)
{
    struct fixture f;
    fixture_open(&f, BK_FILE, "batched", 0);
    struct qs_error err;
    const size_t piece = 16 * 1024, size = 600 * 1024 + 7;
    unsigned char *buf = malloc(size);
    struct gen g = {42};
    gen_fill(&g, buf, size);
    struct qs_storage_put *put;
    cr_assert_eq(
        qs_storage_put_begin(f.st, "c/batched.snapshot", (int64_t)size, NULL, NULL, &put, &err), 0,
        "%s", err.msg);
    size_t off = 0;
    for (; off + piece < 256 * 1024; off += piece)
        cr_assert_eq(qs_storage_put_write(put, buf + off, piece, &err), 0, "%s", err.msg);
    cr_assert_eq(temp_size(f.dir), 0, "%zu bytes written piece by piece", off);
    cr_assert_eq(qs_storage_put_write(put, buf + off, piece, &err), 0, "%s", err.msg);
    off += piece;
    cr_assert_eq(temp_size(f.dir), 256 * 1024);
    /* A big write is not split into pieces, nor copied when it is whole
     * buffers: the rest of it waits for the end. */
    cr_assert_eq(qs_storage_put_write(put, buf + off, size - off, &err), 0, "%s", err.msg);
    cr_assert_eq(temp_size(f.dir), 512 * 1024);
    cr_assert_eq(qs_storage_put_finish(put, NULL, &err), 0, "%s", err.msg);
    char want[65], got[65];
    uint64_t n = 0;
    qs_sha256_hex(buf, size, want);
    get_sha(f.st, "c/batched.snapshot", got, &n);
    cr_assert_eq(n, size);
    cr_assert_str_eq(got, want);
    free(buf);
    fixture_close(&f);
}

/* The last bytes are written only by finish: when that write fails, the put
 * fails with the reason and leaves nothing behind. */
Test(storage_file, write_failing_at_finish_leaves_nothing)
{
    struct fixture f;
    fixture_open(&f, BK_FILE, "efbig", 0);
    struct qs_error err;
    const size_t piece = 16 * 1024, size = 13 * piece; /* less than one buffer */
    unsigned char *buf = calloc(1, size);
    struct qs_storage_put *put;
    cr_assert_eq(qs_storage_put_begin(f.st, "c/big.snapshot", -1, NULL, NULL, &put, &err), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim = {.rlim_cur = 100 * 1024, .rlim_max = RLIM_INFINITY};
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim.rlim_max = old.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0, "%s", strerror(errno));
    for (size_t off = 0; off < size; off += piece)
        cr_assert_eq(qs_storage_put_write(put, buf + off, piece, &err), 0, "%s", err.msg);
    int rc = qs_storage_put_finish(put, NULL, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    cr_assert_eq(rc, UV_EFBIG, "%d %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "c/big.snapshot"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "File too large"), "%s", err.msg);
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(f.st, "", &l, &err), 0);
    cr_assert_eq(l.n, 0, "nothing stored, got %s", l.n ? l.items[0].key : "");
    qs_storage_list_deinit(&l);
    assert_no_uploads(f.st, "");
    cr_assert_eq(temp_size(f.dir), -1, "the temporary is gone");
    free(buf);
    fixture_close(&f);
}

/* ---- TLS: certificates are always verified ------------------------------------ */

static const char tls_server_py[] =
    "import http.server, ssl, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        b = b'<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated>"
    "</ListBucketResult>'\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Length', str(len(b)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(b)\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "srv = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(sys.argv[2], sys.argv[3])\n"
    "srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
    "srv.serve_forever()\n";

static int wait_port(int port, double timeout_s)
{
    double end = qs_monotonic() + timeout_s;
    while (qs_monotonic() < end) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return 0;
        usleep(100000);
    }
    return -1;
}

Test(storage_s3, tls_is_verified_and_ca_file_is_honoured)
{
    char *dir = qs_test_mkdtemp("storage-tls");
    char cert[512], key[512], script[512], log[512], subj_alt[] = "subjectAltName=IP:127.0.0.1";
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(script, sizeof(script), "%s/tls.py", dir);
    snprintf(log, sizeof(log), "%s/tls.log", dir);
    char *gen[] = {"openssl", "req",    "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                   key,       "-out",   cert,    "-days",   "1",        "-subj",  "/CN=127.0.0.1",
                   "-addext", subj_alt, NULL};
    char *out = NULL;
    cr_assert_eq(qs_test_run(gen, NULL, &out), 0, "openssl: %s", out ? out : "");
    free(out);
    FILE *f = fopen(script, "w");
    cr_assert_not_null(f);
    fputs(tls_server_py, f);
    fclose(f);
    int port = qs_test_free_port();
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_PYTHON"), script, ports, cert, key, NULL};
    pid_t pid = qs_test_spawn(argv, NULL, log);
    cr_assert_gt(pid, 0);
    int up = wait_port(port, 10);

    char ep[64];
    snprintf(ep, sizeof(ep), "https://127.0.0.1:%d", port);
    struct qs_storage_opts o;
    set_s3_opts(&o, "p");
    o.endpoint = ep;
    struct qs_storage *st = NULL, *st_ca = NULL;
    struct qs_error err, err_ca, err_head;
    int rc = -1, rc_ca = -1, rc_head = -1;
    uint64_t retries = 99;
    if (up == 0 && qs_storage_new(&o, &st, &err) == 0) {
        rc = qs_storage_probe(st, &err);
        /* The probe never retries; a HEAD does (up to max_retries = 3) when
         * the failure is retryable, which a certificate failure is not. */
        struct qs_storage_stat stat;
        memset(&stat, 0, sizeof(stat));
        rc_head = qs_storage_head(st, "any-key", &stat, &err_head);
        if (rc_head == 0)
            qs_storage_stat_deinit(&stat);
        retries = qs_storage_retries(st);
        o.ca_file = cert;
        if (qs_storage_new(&o, &st_ca, &err_ca) == 0)
            rc_ca = qs_storage_probe(st_ca, &err_ca);
    }
    qs_test_kill(pid);
    qs_storage_free(st);
    qs_storage_free(st_ca);
    qs_test_rmrf(dir);
    free(dir);
    cr_assert_eq(up, 0, "TLS stand-in did not start");
    cr_assert_eq(rc, QS_ETRANSPORT, "an unknown CA must fail: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, "certificate"), "%s", err.msg);
    cr_assert_eq(rc_head, QS_ETRANSPORT, "%s", err_head.msg);
    cr_assert_eq(err_head.retryable, 0, "%s", err_head.msg);
    cr_assert_eq(retries, 0, "certificate errors are not retried");
    cr_assert_eq(rc_ca, 0, "with QSNAP_S3_CA_FILE: %s", err_ca.msg);
}
