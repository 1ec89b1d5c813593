#include "qsnap/pipe.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

int qs_pipe_init(struct qs_pipe *p, size_t cap)
{
    memset(p, 0, sizeof(*p));
    if (cap == 0)
        cap = 1;
    p->_buf = malloc(cap);
    if (p->_buf == NULL)
        return UV_ENOMEM;
    p->_cap = cap;
    pthread_mutex_init(&p->_mu, NULL);
    pthread_cond_init(&p->_cond, NULL);
    return 0;
}

void qs_pipe_deinit(struct qs_pipe *p)
{
    if (p == NULL || p->_buf == NULL)
        return;
    pthread_mutex_destroy(&p->_mu);
    pthread_cond_destroy(&p->_cond);
    free(p->_buf);
    p->_buf = NULL;
}

int qs_pipe_write(struct qs_pipe *p, const void *data, size_t len)
{
    const char *src = data;
    pthread_mutex_lock(&p->_mu);
    while (len > 0 && p->_error == 0) {
        while (p->_len == p->_cap && p->_error == 0)
            pthread_cond_wait(&p->_cond, &p->_mu);
        if (p->_error != 0)
            break;
        size_t tail = (p->_head + p->_len) % p->_cap;
        size_t room = p->_cap - p->_len;
        size_t chunk = p->_cap - tail < room ? p->_cap - tail : room;
        if (chunk > len)
            chunk = len;
        memcpy(p->_buf + tail, src, chunk);
        p->_len += chunk;
        src += chunk;
        len -= chunk;
        pthread_cond_broadcast(&p->_cond);
    }
    int rc = p->_error;
    pthread_mutex_unlock(&p->_mu);
    return rc;
}

void qs_pipe_close(struct qs_pipe *p)
{
    pthread_mutex_lock(&p->_mu);
    p->_closed = 1;
    pthread_cond_broadcast(&p->_cond);
    pthread_mutex_unlock(&p->_mu);
}

ssize_t qs_pipe_read(struct qs_pipe *p, void *buf, size_t cap)
{
    pthread_mutex_lock(&p->_mu);
    while (p->_len == 0 && !p->_closed && p->_error == 0)
        pthread_cond_wait(&p->_cond, &p->_mu);
    ssize_t rc;
    if (p->_error != 0) {
        rc = p->_error;
    } else if (p->_len == 0) {
        rc = 0; /* closed and drained */
    } else {
        size_t chunk = p->_cap - p->_head < p->_len ? p->_cap - p->_head : p->_len;
        if (chunk > cap)
            chunk = cap;
        memcpy(buf, p->_buf + p->_head, chunk);
        p->_head = (p->_head + chunk) % p->_cap;
        p->_len -= chunk;
        rc = (ssize_t)chunk;
        pthread_cond_broadcast(&p->_cond);
    }
    pthread_mutex_unlock(&p->_mu);
    return rc;
}

void qs_pipe_fail(struct qs_pipe *p, int code)
{
    pthread_mutex_lock(&p->_mu);
    if (p->_error == 0)
        p->_error = code < 0 ? code : UV_EIO;
    pthread_cond_broadcast(&p->_cond);
    pthread_mutex_unlock(&p->_mu);
}

int qs_pipe_error(struct qs_pipe *p)
{
    pthread_mutex_lock(&p->_mu);
    int rc = p->_error;
    pthread_mutex_unlock(&p->_mu);
    return rc;
}
