/* The streaming tar check (tarcheck.h): archives built here block by block
 * (GNU and POSIX headers, long names, sparse members with extension blocks,
 * pax sizes, base-256 sizes), fed whole, byte by byte and in odd chunks; every
 * truncation of a valid archive is refused, and so is anything that is not a
 * tar archive. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/tarcheck.h"

struct tar {
    unsigned char *d;
    size_t len, cap;
};

static void put(struct tar *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2 + 4096;
        t->d = realloc(t->d, t->cap);
        cr_assert_not_null(t->d);
    }
    memcpy(t->d + t->len, p, n);
    t->len += n;
}

static void zeros(struct tar *t, size_t n)
{
    unsigned char z[512] = {0};
    while (n > 0) {
        size_t k = n < sizeof(z) ? n : sizeof(z);
        put(t, z, k);
        n -= k;
    }
}

static void checksum(unsigned char *h)
{
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

/* A header block; gnu selects "ustar  \0" over "ustar\0" "00". */
static void header_into(unsigned char h[512], const char *name, unsigned long long size, char type,
                        int gnu)
{
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    snprintf((char *)h + 100, 8, "%07o", 0644);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011llo", size);
    snprintf((char *)h + 136, 12, "%011o", 1700000000);
    h[156] = (unsigned char)type;
    if (gnu)
        memcpy(h + 257, "ustar  ", 8);
    else
        memcpy(h + 257,
               "ustar\0"
               "00",
               8);
}

static void member(struct tar *t, const char *name, size_t size, char type, int gnu)
{
    unsigned char h[512];
    header_into(h, name, size, type, gnu);
    checksum(h);
    put(t, h, 512);
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)(i * 31 + 7);
        put(t, &c, 1);
    }
    zeros(t, (512 - size % 512) % 512);
}

static void end(struct tar *t)
{
    zeros(t, 1024);
}

/* A small archive with the shapes a shard stream has. */
static void sample(struct tar *t)
{
    memset(t, 0, sizeof(*t));
    member(t, "segments/", 0, '5', 1);
    member(t, "segments/abc/files/segment.json", 300, '0', 1);
    member(t, "././@LongLink", 130, 'L', 1);
    member(t, "segments/abc/files/vector_storage/vectors/chunk_0.mmap", 5000, '0', 1);
    member(t, "wal/open-1", 0, '0', 0);
    member(t, "replica_state.json", 512, '0', 1);
    end(t);
}

static int check_chunks(const struct tar *t, size_t len, size_t chunk, struct qs_error *err)
{
    struct qs_tarcheck c;
    qs_tarcheck_init(&c);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < chunk ? len - off : chunk;
        int rc = qs_tarcheck_feed(&c, t->d + off, n, err);
        if (rc != 0)
            return rc;
        off += n;
    }
    return qs_tarcheck_finish(&c, err);
}

Test(tarcheck, accepts_a_valid_archive_in_any_split)
{
    struct tar t;
    sample(&t);
    struct qs_error err;
    const size_t chunks[] = {1, 2, 7, 100, 511, 512, 513, 4096, 1 << 20};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
        cr_assert_eq(check_chunks(&t, t.len, chunks[i], &err), 0, "chunk %zu: %s", chunks[i],
                     err.msg);
    free(t.d);
}

Test(tarcheck, the_empty_archive_is_two_zero_blocks)
{
    struct tar t = {0};
    end(&t);
    struct qs_error err;
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), 0, "%s", err.msg);
    cr_assert_eq(check_chunks(&t, 0, 4096, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "empty") != NULL, "%s", err.msg);
    cr_assert_eq(check_chunks(&t, 512, 4096, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "after one of its two end-of-archive blocks") != NULL, "%s", err.msg);
    free(t.d);
}

Test(tarcheck, every_truncation_is_refused)
{
    struct tar t;
    sample(&t);
    struct qs_error err;
    for (size_t cut = 0; cut < t.len; cut++) {
        struct qs_tarcheck c;
        qs_tarcheck_init(&c);
        /* a prefix of a valid archive never fails while it streams... */
        cr_assert_eq(qs_tarcheck_feed(&c, t.d, cut, &err), 0, "cut %zu: %s", cut, err.msg);
        /* ...only at its end */
        cr_assert_eq(qs_tarcheck_finish(&c, &err), QS_EPROTO, "cut %zu accepted", cut);
        cr_assert(strstr(err.msg, "cut at byte") != NULL || strstr(err.msg, "empty") != NULL,
                  "cut %zu: %s", cut, err.msg);
    }
    /* the message says where */
    cr_assert_eq(check_chunks(&t, 1100, 4096, &err), QS_EPROTO);
    cr_assert_str_eq(err.msg, "tar archive cut at byte 1100, inside the data of member 2 (no "
                              "end-of-archive blocks)");
    free(t.d);
}

Test(tarcheck, zero_padding_to_a_record_is_accepted_anything_else_after_the_end_is_not)
{
    struct tar t;
    sample(&t);
    size_t base = t.len;
    zeros(&t, 10240 - base % 10240); /* Python's tarfile and GNU tar pad to 10 KiB */
    struct qs_error err;
    cr_assert_eq(check_chunks(&t, t.len, 333, &err), 0, "%s", err.msg);
    /* a partial padding block */
    cr_assert_eq(check_chunks(&t, base + 100, 333, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "inside a padding block") != NULL, "%s", err.msg);
    /* a non-zero byte after the end */
    t.d[base + 1000] = 1;
    cr_assert_eq(check_chunks(&t, t.len, 333, &err), QS_EPROTO);
    char want[100];
    snprintf(want, sizeof(want), "data after the end of the tar archive at byte %zu", base + 1000);
    cr_assert_str_eq(err.msg, want);
    free(t.d);
}

Test(tarcheck, not_a_tar_archive)
{
    struct qs_error err;
    struct tar t;
    /* a bad checksum */
    sample(&t);
    t.d[512 + 10] ^= 1;
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), QS_EPROTO);
    cr_assert_str_eq(err.msg, "not a tar archive: header at byte 512 has a bad checksum");
    free(t.d);
    /* no magic */
    sample(&t);
    memcpy(t.d + 257, "xstar", 5);
    checksum(t.d);
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), QS_EPROTO);
    cr_assert_str_eq(err.msg, "not a tar archive: header at byte 0 has no ustar magic");
    free(t.d);
    /* a size field that is not octal */
    sample(&t);
    t.d[124 + 3] = '9';
    checksum(t.d);
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "bad size field") != NULL, "%s", err.msg);
    free(t.d);
    /* text */
    memset(&t, 0, sizeof(t));
    for (int i = 0; i < 40; i++)
        put(&t, "<html>Service internal error</html>\n", 36);
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), QS_EPROTO);
    free(t.d);
    /* one zero block inside the archive */
    memset(&t, 0, sizeof(t));
    member(&t, "a", 10, '0', 1);
    zeros(&t, 512);
    member(&t, "b", 10, '0', 1);
    end(&t);
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), QS_EPROTO);
    cr_assert_str_eq(err.msg, "not a tar archive: a single zero block at byte 1024 inside the "
                              "archive");
    free(t.d);
}

Test(tarcheck, an_error_sticks)
{
    struct tar t;
    sample(&t);
    t.d[0] ^= 0x40;
    struct qs_tarcheck c;
    qs_tarcheck_init(&c);
    struct qs_error err;
    cr_assert_eq(qs_tarcheck_feed(&c, t.d, 600, &err), QS_EPROTO);
    cr_assert_eq(qs_tarcheck_feed(&c, t.d + 600, t.len - 600, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "bad checksum") != NULL, "%s", err.msg);
    cr_assert_eq(qs_tarcheck_finish(&c, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "bad checksum") != NULL, "%s", err.msg);
    free(t.d);
}

/* A GNU sparse member: header 'S' (isextended at 482), extension blocks
 * (isextended at 504), then the stored data. */
static void sparse(struct tar *t, size_t stored, int ext_blocks)
{
    unsigned char h[512];
    header_into(h, "wal/open-1", stored, 'S', 1);
    snprintf((char *)h + 386, 12, "%011o", 0);       /* sp[0].offset */
    snprintf((char *)h + 398, 12, "%011zo", stored); /* sp[0].numbytes */
    h[482] = ext_blocks > 0;
    snprintf((char *)h + 483, 12, "%011o", 32 << 20); /* realsize */
    checksum(h);
    put(t, h, 512);
    for (int i = 0; i < ext_blocks; i++) {
        unsigned char e[512] = {0};
        snprintf((char *)e, 12, "%011o", 4096 * (i + 1));
        snprintf((char *)e + 12, 12, "%011o", 0);
        e[504] = i + 1 < ext_blocks;
        put(t, e, 512);
    }
    zeros(t, stored); /* the data (zeros are as good as anything) */
    zeros(t, (512 - stored % 512) % 512);
}

Test(tarcheck, gnu_sparse_members_with_extension_blocks)
{
    struct tar t = {0};
    member(&t, "a", 3, '0', 1);
    sparse(&t, 1000, 2);
    member(&t, "b", 3, '0', 1);
    sparse(&t, 512, 0);
    end(&t);
    struct qs_error err;
    cr_assert_eq(check_chunks(&t, t.len, 100, &err), 0, "%s", err.msg);
    /* cut inside the extension blocks */
    cr_assert_eq(check_chunks(&t, 1024 + 512 + 700, 100, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "inside the headers of member 2") != NULL, "%s", err.msg);
    free(t.d);
}

Test(tarcheck, pax_size_gives_the_next_members_size)
{
    struct tar t = {0};
    const char rec[] = "16 size=1000000\n12 path=abc\n";
    member(&t, "a", 0, '0', 0);
    {
        unsigned char h[512];
        header_into(h, "PaxHeaders/x", sizeof(rec) - 1, 'x', 0);
        checksum(h);
        put(&t, h, 512);
        put(&t, rec, sizeof(rec) - 1);
        zeros(&t, 512 - (sizeof(rec) - 1));
    }
    member(&t, "big", 0, '0', 0); /* size 0 in the header, 1000000 by pax */
    for (size_t i = 0; i < 1000000; i++)
        put(&t, "U", 1); /* read as headers, these would fail */
    zeros(&t, (512 - 1000000 % 512) % 512);
    end(&t);
    struct qs_error err;
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), 0, "%s", err.msg);
    free(t.d);
    /* a malformed record */
    memset(&t, 0, sizeof(t));
    const char bad[] = "99 size=1\n";
    unsigned char h[512];
    header_into(h, "PaxHeaders/x", sizeof(bad) - 1, 'x', 0);
    checksum(h);
    put(&t, h, 512);
    put(&t, bad, sizeof(bad) - 1);
    zeros(&t, 512 - (sizeof(bad) - 1));
    end(&t);
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), QS_EPROTO);
    cr_assert_str_eq(err.msg, "not a tar archive: malformed pax record in the header at byte 0");
    free(t.d);
    /* larger than the check reads */
    memset(&t, 0, sizeof(t));
    header_into(h, "PaxHeaders/x", QS_TARCHECK_PAX_MAX + 1, 'x', 0);
    checksum(h);
    put(&t, h, 512);
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "larger than") != NULL, "%s", err.msg);
    free(t.d);
}

Test(tarcheck, base256_sizes)
{
    struct tar t = {0};
    unsigned char h[512];
    header_into(h, "f", 0, '0', 1);
    memset(h + 124, 0, 12);
    h[124] = 0x80;
    h[134] = 0x04; /* 0x0400 = 1024 bytes */
    checksum(h);
    put(&t, h, 512);
    zeros(&t, 1024);
    end(&t);
    struct qs_error err;
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), 0, "%s", err.msg);
    /* read as 1024 data bytes: the archive is cut when they are missing */
    cr_assert_eq(check_chunks(&t, 512 + 1024, 4096, &err), QS_EPROTO);
    /* negative base-256 */
    t.d[124] = 0xff;
    checksum(t.d);
    cr_assert_eq(check_chunks(&t, t.len, 4096, &err), QS_EPROTO);
    cr_assert(strstr(err.msg, "bad size field") != NULL, "%s", err.msg);
    free(t.d);
}
