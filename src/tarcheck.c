#include "qsnap/tarcheck.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define BLOCK 512
/* Largest member size believed: more than any disk holds, far from overflow. */
#define SIZE_MAX_BELIEVED ((uint64_t)1 << 56)

enum {
    ST_HEADER = 0, /* assembling a header block (or an end-of-archive block) */
    ST_SPARSE,     /* assembling a GNU sparse extension block */
    ST_PAX,        /* reading a pax extended header's records */
    ST_DATA,       /* skipping a member's data and padding */
    ST_END,        /* after the two zero blocks: zero padding only */
};

void qs_tarcheck_init(struct qs_tarcheck *t)
{
    memset(t, 0, sizeof(*t));
    t->state = ST_HEADER;
}

static int fail(struct qs_tarcheck *t, struct qs_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct qs_tarcheck *t, struct qs_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
    t->failed = 1;
    return qs_error_set(err, QS_EPROTO, "%s", t->why);
}

static uint64_t round_block(uint64_t n)
{
    return (n + BLOCK - 1) / BLOCK * BLOCK;
}

/* An octal field: optional leading spaces, digits, then only NUL or space. */
static int parse_octal(const unsigned char *f, size_t n, uint64_t *out)
{
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v > (UINT64_MAX >> 3))
            return -1;
        v = v << 3 | (uint64_t)(f[i] - '0');
    }
    if (digits == 0)
        return -1;
    for (; i < n; i++)
        if (f[i] != '\0' && f[i] != ' ')
            return -1;
    *out = v;
    return 0;
}

/* The size field: octal, or GNU base-256 (first byte 0x80, then big-endian). */
static int parse_size(const unsigned char *f, uint64_t *out)
{
    if (f[0] & 0x80) {
        if (f[0] != 0x80)
            return -1; /* negative, or bits beyond what fits */
        uint64_t v = 0;
        for (size_t i = 1; i < 12; i++) {
            if (v > (UINT64_MAX >> 8))
                return -1;
            v = v << 8 | f[i];
        }
        *out = v;
    } else if (parse_octal(f, 12, out) != 0) {
        return -1;
    }
    return *out <= SIZE_MAX_BELIEVED ? 0 : -1;
}

static int all_zero(const unsigned char *b)
{
    for (size_t i = 0; i < BLOCK; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

/* The header checksum: the stored octal value must equal the byte sum with
 * the checksum field counted as eight spaces (unsigned, or the historic
 * signed sum). */
static int checksum_ok(const unsigned char *b)
{
    uint64_t stored;
    if (parse_octal(b + 148, 8, &stored) != 0)
        return 0;
    int64_t usum = 0, ssum = 0;
    for (size_t i = 0; i < BLOCK; i++) {
        unsigned char c = i >= 148 && i < 156 ? ' ' : b[i];
        usum += c;
        ssum += (signed char)c;
    }
    return (int64_t)stored == usum || (int64_t)stored == ssum;
}

/* Reads the "size" record of a pax extended header (t->pax, t->pax_len). */
static int parse_pax(struct qs_tarcheck *t, uint64_t at, struct qs_error *err)
{
    size_t i = 0;
    while (i < t->pax_len) {
        size_t len = 0, j = i;
        while (j < t->pax_len && t->pax[j] >= '0' && t->pax[j] <= '9' && len < 100000)
            len = len * 10 + (size_t)(t->pax[j++] - '0');
        if (j == i || j >= t->pax_len || t->pax[j] != ' ' || len < 5 || len > t->pax_len - i ||
            t->pax[i + len - 1] != '\n')
            return fail(t, err,
                        "not a tar archive: malformed pax record in the header at byte %llu",
                        (unsigned long long)at);
        const char *kv = t->pax + j + 1, *end = t->pax + i + len - 1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (eq == NULL)
            return fail(t, err,
                        "not a tar archive: pax record without '=' in the header at "
                        "byte %llu",
                        (unsigned long long)at);
        if (eq - kv == 4 && memcmp(kv, "size", 4) == 0) {
            uint64_t v = 0;
            const char *p = eq + 1;
            if (p == end)
                return fail(t, err, "not a tar archive: empty pax size at byte %llu",
                            (unsigned long long)at);
            for (; p < end; p++) {
                if (*p < '0' || *p > '9' || v > SIZE_MAX_BELIEVED / 10)
                    return fail(t, err, "not a tar archive: bad pax size at byte %llu",
                                (unsigned long long)at);
                v = v * 10 + (uint64_t)(*p - '0');
            }
            if (v > SIZE_MAX_BELIEVED)
                return fail(t, err, "not a tar archive: bad pax size at byte %llu",
                            (unsigned long long)at);
            t->pax_size = v;
            t->pax_next = 1;
        }
        i += len;
    }
    return 0;
}

/* Enters the state after a member's header (and extension blocks). */
static void to_data(struct qs_tarcheck *t)
{
    t->state = t->skip > 0 ? ST_DATA : ST_HEADER;
}

/* A complete header block at byte `at`. */
static int header_block(struct qs_tarcheck *t, uint64_t at, struct qs_error *err)
{
    const unsigned char *b = t->block;
    if (all_zero(b)) {
        if (t->pax_next)
            return fail(t, err,
                        "not a tar archive: end-of-archive block at byte %llu right "
                        "after a pax header",
                        (unsigned long long)at);
        if (++t->zero_blocks == 2)
            t->state = ST_END;
        return 0;
    }
    if (t->zero_blocks > 0)
        return fail(t, err,
                    "not a tar archive: a single zero block at byte %llu inside the "
                    "archive",
                    (unsigned long long)(at - BLOCK));
    if (memcmp(b + 257, "ustar", 5) != 0 || (b[262] != '\0' && b[262] != ' '))
        return fail(t, err, "not a tar archive: header at byte %llu has no ustar magic",
                    (unsigned long long)at);
    if (!checksum_ok(b))
        return fail(t, err, "not a tar archive: header at byte %llu has a bad checksum",
                    (unsigned long long)at);
    uint64_t size;
    if (parse_size(b + 124, &size) != 0)
        return fail(t, err, "not a tar archive: header at byte %llu has a bad size field",
                    (unsigned long long)at);
    t->members++;
    const unsigned char type = b[156];
    if (type == 'x') {
        if (size > QS_TARCHECK_PAX_MAX)
            return fail(t, err, "pax header at byte %llu is larger than %d bytes",
                        (unsigned long long)at, QS_TARCHECK_PAX_MAX);
        t->pax_left = size;
        t->pax_len = 0;
        t->pax_at = at;
        t->skip = round_block(size) - size; /* padding, after the records */
        t->state = size > 0 ? ST_PAX : ST_HEADER;
        return 0;
    }
    /* A pax size applies to the next member that carries file data. */
    if (t->pax_next && type != 'g' && type != 'L' && type != 'K') {
        size = t->pax_size;
        t->pax_next = 0;
    }
    t->skip = round_block(size);
    if (type == 'S' && b[482] != 0)
        t->state = ST_SPARSE;
    else
        to_data(t);
    return 0;
}

int qs_tarcheck_feed(struct qs_tarcheck *t, const void *data, size_t len, struct qs_error *err)
{
    if (t->failed)
        return qs_error_set(err, QS_EPROTO, "%s", t->why);
    const unsigned char *p = data;
    while (len > 0) {
        size_t n;
        switch (t->state) {
        case ST_DATA:
            n = len < t->skip ? len : (size_t)t->skip;
            t->skip -= n;
            if (t->skip == 0)
                t->state = ST_HEADER;
            break;
        case ST_PAX:
            n = len < t->pax_left ? len : (size_t)t->pax_left;
            memcpy(t->pax + t->pax_len, p, n);
            t->pax_len += n;
            t->pax_left -= n;
            if (t->pax_left == 0) {
                int rc = parse_pax(t, t->pax_at, err);
                if (rc != 0)
                    return rc;
                to_data(t);
            }
            break;
        case ST_END:
            for (n = 0; n < len; n++)
                if (p[n] != 0)
                    return fail(t, err, "data after the end of the tar archive at byte %llu",
                                (unsigned long long)(t->offset + n));
            break;
        default: /* ST_HEADER, ST_SPARSE: assemble a block */
            n = BLOCK - t->blen;
            if (n > len)
                n = len;
            memcpy(t->block + t->blen, p, n);
            t->blen += n;
            if (t->blen == BLOCK) {
                t->blen = 0;
                uint64_t at = t->offset + n - BLOCK;
                if (t->state == ST_SPARSE) {
                    if (t->block[504] == 0)
                        to_data(t);
                } else {
                    int rc = header_block(t, at, err);
                    if (rc != 0)
                        return rc;
                }
            }
            break;
        }
        t->offset += n;
        p += n;
        len -= n;
    }
    return 0;
}

int qs_tarcheck_finish(struct qs_tarcheck *t, struct qs_error *err)
{
    if (t->failed)
        return qs_error_set(err, QS_EPROTO, "%s", t->why);
    const unsigned long long at = (unsigned long long)t->offset;
    switch (t->state) {
    case ST_END:
        if (t->offset % BLOCK != 0)
            return fail(t, err, "tar archive ends at byte %llu, inside a padding block", at);
        return 0;
    case ST_DATA:
        return fail(t, err,
                    "tar archive cut at byte %llu, inside the data of member %llu (no "
                    "end-of-archive blocks)",
                    at, (unsigned long long)t->members);
    case ST_PAX:
    case ST_SPARSE:
        return fail(t, err,
                    "tar archive cut at byte %llu, inside the headers of member %llu (no "
                    "end-of-archive blocks)",
                    at, (unsigned long long)t->members);
    default:
        if (t->offset == 0)
            return fail(t, err, "tar archive is empty (0 bytes): no end-of-archive blocks");
        if (t->zero_blocks == 1 && t->blen == 0)
            return fail(t, err,
                        "tar archive cut at byte %llu, after one of its two "
                        "end-of-archive blocks",
                        at);
        return fail(t, err,
                    "tar archive cut at byte %llu, after %llu members (no end-of-archive "
                    "blocks)",
                    at, (unsigned long long)t->members);
    }
}
