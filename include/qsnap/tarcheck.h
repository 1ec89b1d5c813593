/* Streaming tar integrity check (pure: no I/O, no allocation).
 *
 * A streamed shard snapshot (GET /collections/{c}/shards/{id}/snapshot)
 * carries no length and no checksum, and Qdrant ends the HTTP body cleanly
 * when its archive writer fails half-way: a truncated tar is the only sign
 * of the failure. This checker follows the archive's structure while the
 * bytes pass through, so a stream that stops anywhere short of the end of
 * the archive, or that is not a tar archive at all, is recognised without
 * keeping the bytes:
 *
 *   - every 512-byte header must carry the ustar magic ("ustar\0" POSIX or
 *     "ustar  \0" GNU) and a valid header checksum (the unsigned byte sum
 *     with the checksum field read as spaces; the historic signed sum is
 *     accepted too), and its size field must be octal or GNU base-256;
 *   - a member's data (its size, rounded up to whole blocks) is skipped;
 *     GNU sparse members ('S') are followed by their extension blocks when
 *     the header says so, and their size field counts the bytes stored; a
 *     pax extended header ('x') is read (up to QS_TARCHECK_PAX_MAX bytes) for
 *     a "size" record, which then gives the next member's data size;
 *   - the archive ends with two zero blocks; after them only zero bytes may
 *     follow, in whole blocks (a writer may pad to a record size; Qdrant's
 *     tar writer ends with exactly the two blocks). A single zero block
 *     followed by anything else is an error.
 *
 * qs_tarcheck_finish() then says whether the stream ended exactly where an
 * archive may end. The checker does not look at member contents. */
#ifndef QSNAP_TARCHECK_H
#define QSNAP_TARCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/error.h"

/* Largest pax extended header read for its "size" record. */
#define QS_TARCHECK_PAX_MAX 4096

/* Caller storage; initialise with qs_tarcheck_init(). No resources held. */
struct qs_tarcheck {
    uint64_t offset;          /* bytes consumed so far */
    uint64_t members;         /* headers seen (pax and long-name headers included) */
    uint64_t skip;            /* data bytes (with padding) of the current member left */
    int state;                /* internal */
    int failed;               /* 1 after an error: every later call fails the same way */
    int zero_blocks;          /* consecutive zero blocks seen at a header position */
    int pax_next;             /* 1 when a pax "size" applies to the next member */
    uint64_t pax_size;        /* that size */
    uint64_t pax_left;        /* bytes of the pax header being read */
    uint64_t pax_at;          /* offset of that pax header */
    size_t pax_len;           /* bytes of it kept in pax[] */
    size_t blen;              /* bytes of the current block kept in block[] */
    unsigned char block[512]; /* the header or extension block being assembled */
    char pax[QS_TARCHECK_PAX_MAX];
    char why[200]; /* the first error, repeated by later calls */
};

/* Starts a check of a new archive (t borrowed). */
void qs_tarcheck_init(struct qs_tarcheck *t);

/* Checks the next len bytes of the archive (data borrowed for the call; may
 * be split anywhere). Returns 0, or QS_EPROTO with err (borrowed, may be
 * NULL) naming the byte offset and the reason, e.g. "not a tar archive:
 * header at byte 1024 has a bad checksum". After an error every call fails
 * the same way. */
int qs_tarcheck_feed(struct qs_tarcheck *t, const void *data, size_t len, struct qs_error *err);

/* The stream has ended: 0 when it ended after the end-of-archive blocks
 * (and any zero padding), else QS_EPROTO with err saying where the archive
 * was cut, e.g. "tar archive cut at byte 5000, inside the data of member 3
 * (no end-of-archive blocks)". */
int qs_tarcheck_finish(struct qs_tarcheck *t, struct qs_error *err);

#endif
