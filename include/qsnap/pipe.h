/* A bounded byte pipe between two worker threads (producer and consumer).
 *
 * Used where one blocking transfer feeds another (backup: Qdrant download ->
 * S3 upload; restore: storage GET -> gunzip -> Qdrant upload). Writes block
 * while the pipe is full, reads block while it is empty: memory stays at the
 * capacity chosen at init, and each side slows the other down (backpressure
 * in both directions). Either side can fail the pipe with an error code,
 * which wakes and fails the other.
 *
 * Built for bulk transfers fed in small pieces (libcurl hands a download
 * over in 16 KiB pieces): bytes are copied in and out without holding the
 * lock, and a side that waits is woken in batches, not for every piece: a
 * blocked producer once half of the ring is free, a waiting consumer once
 * the bytes it asked for are there (at most a quarter of the ring), or
 * QS_PIPE_BATCH_WAIT_MS after the first byte came, whichever is first. */
#ifndef QSNAP_PIPE_H
#define QSNAP_PIPE_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

/* How long a consumer holding less than it asked for waits for more. */
#define QS_PIPE_BATCH_WAIT_MS 10

struct qs_pipe {
    pthread_mutex_t _mu;
    pthread_cond_t _readable; /* the consumer waits here */
    pthread_cond_t _writable; /* the producer waits here */
    char *_buf;               /* owned ring buffer */
    size_t _cap;
    size_t _head;  /* read position */
    size_t _len;   /* bytes buffered */
    size_t _batch; /* most bytes a consumer waits for */
    size_t _want;  /* the waiting consumer is woken at this many bytes; 0: none waits */
    int _producer_waits;
    int _closed; /* producer finished */
    int _error;  /* first error set by either side (negative), 0 if none */
};

/* Initialises p (caller-owned storage) with a ring of cap bytes.
 * Returns 0 or UV_ENOMEM. */
int qs_pipe_init(struct qs_pipe *p, size_t cap);
void qs_pipe_deinit(struct qs_pipe *p);

/* Producer: blocks until all of data (borrowed) is buffered. Returns 0, or
 * the pipe's error when it failed (then nothing more should be written). */
int qs_pipe_write(struct qs_pipe *p, const void *data, size_t len);
/* Producer: no more data. Readers get 0 (EOF) once the buffer drains. */
void qs_pipe_close(struct qs_pipe *p);

/* Consumer: blocks until at least one byte, EOF or an error; with fewer
 * bytes buffered than min(cap, a quarter of the ring), waits up to
 * QS_PIPE_BATCH_WAIT_MS for more. Returns the number of bytes copied into
 * buf, 0 at EOF, or the (negative) error. */
ssize_t qs_pipe_read(struct qs_pipe *p, void *buf, size_t cap);

/* Either side: fail the pipe with code (negative). The first error wins;
 * both sides see it from then on. */
void qs_pipe_fail(struct qs_pipe *p, int code);
/* The first error, or 0. */
int qs_pipe_error(struct qs_pipe *p);

#endif
