#include "qsnap/pipe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

int qs_pipe_init(struct qs_pipe *p, size_t cap)
{
    memset(p, 0, sizeof(*p));
    if (cap == 0)
        cap = 1;
    p->_buf = malloc(cap);
    if (p->_buf == NULL)
        return UV_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    p->_cap = cap;
    p->_batch = cap / 4 > 0 ? cap / 4 : 1;
    pthread_mutex_init(&p->_mu, NULL);
    pthread_cond_init(&p->_readable, &ca);
    pthread_cond_init(&p->_writable, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

void qs_pipe_deinit(struct qs_pipe *p)
{
    if (p == NULL || p->_buf == NULL)
        return;
    pthread_mutex_destroy(&p->_mu);
    pthread_cond_destroy(&p->_readable);
    pthread_cond_destroy(&p->_writable);
    free(p->_buf);
    p->_buf = NULL;
}

/* Called with the lock held, after the producer added bytes. */
static void wake_consumer(struct qs_pipe *p)
{
    if (p->_want > 0 && p->_len >= p->_want) {
        p->_want = 0;
        pthread_cond_signal(&p->_readable);
    }
}

/* Called with the lock held, after the consumer took bytes: a blocked
 * producer is woken once half of the ring is free. */
static void wake_producer(struct qs_pipe *p)
{
    if (p->_producer_waits && p->_cap - p->_len >= p->_cap - p->_cap / 2) {
        p->_producer_waits = 0;
        pthread_cond_signal(&p->_writable);
    }
}

int qs_pipe_write(struct qs_pipe *p, const void *data, size_t len)
{
    const char *src = data;
    pthread_mutex_lock(&p->_mu);
    while (len > 0 && p->_error == 0) {
        if (p->_len == p->_cap) {
            p->_producer_waits = 1;
            pthread_cond_wait(&p->_writable, &p->_mu);
            continue;
        }
        size_t tail = p->_head + p->_len;
        if (tail >= p->_cap)
            tail -= p->_cap;
        size_t chunk = p->_cap - p->_len; /* free bytes */
        if (chunk > p->_cap - tail)
            chunk = p->_cap - tail; /* up to the end of the ring */
        if (chunk > len)
            chunk = len;
        /* The consumer never touches free bytes: copy without the lock. */
        pthread_mutex_unlock(&p->_mu);
        memcpy(p->_buf + tail, src, chunk);
        pthread_mutex_lock(&p->_mu);
        p->_len += chunk;
        src += chunk;
        len -= chunk;
        wake_consumer(p);
    }
    p->_producer_waits = 0;
    int rc = p->_error;
    pthread_mutex_unlock(&p->_mu);
    return rc;
}

void qs_pipe_close(struct qs_pipe *p)
{
    pthread_mutex_lock(&p->_mu);
    p->_closed = 1;
    pthread_cond_broadcast(&p->_readable);
    pthread_mutex_unlock(&p->_mu);
}

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

ssize_t qs_pipe_read(struct qs_pipe *p, void *buf, size_t cap)
{
    size_t want = cap < p->_batch ? cap : p->_batch;
    struct timespec until;
    int timed = 0;
    pthread_mutex_lock(&p->_mu);
    while (p->_len < want && !p->_closed && p->_error == 0) {
        if (p->_len == 0) {
            p->_want = 1; /* the first byte starts the batch wait */
            pthread_cond_wait(&p->_readable, &p->_mu);
            continue;
        }
        if (!timed) {
            deadline_in(&until, QS_PIPE_BATCH_WAIT_MS);
            timed = 1;
        }
        p->_want = want;
        if (pthread_cond_timedwait(&p->_readable, &p->_mu, &until) == ETIMEDOUT)
            break;
    }
    p->_want = 0;
    ssize_t rc;
    if (p->_error != 0) {
        rc = p->_error;
    } else if (p->_len == 0) {
        rc = 0; /* closed and drained */
    } else {
        size_t head = p->_head;
        size_t chunk = p->_cap - head < p->_len ? p->_cap - head : p->_len;
        if (chunk > cap)
            chunk = cap;
        /* The producer never touches buffered bytes: copy without the lock. */
        pthread_mutex_unlock(&p->_mu);
        memcpy(buf, p->_buf + head, chunk);
        pthread_mutex_lock(&p->_mu);
        p->_head = head + chunk == p->_cap ? 0 : head + chunk;
        p->_len -= chunk;
        rc = (ssize_t)chunk;
        wake_producer(p);
    }
    pthread_mutex_unlock(&p->_mu);
    return rc;
}

void qs_pipe_fail(struct qs_pipe *p, int code)
{
    pthread_mutex_lock(&p->_mu);
    if (p->_error == 0)
        p->_error = code < 0 ? code : UV_EIO;
    pthread_cond_broadcast(&p->_readable);
    pthread_cond_broadcast(&p->_writable);
    pthread_mutex_unlock(&p->_mu);
}

int qs_pipe_error(struct qs_pipe *p)
{
    pthread_mutex_lock(&p->_mu);
    int rc = p->_error;
    pthread_mutex_unlock(&p->_mu);
    return rc;
}
