#include "qsnap/s3stream.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "qsnap/pipe.h"
#include "qsnap/s3put.h"

#define STREAM_PIPE (1024 * 1024)

struct s3stream {
    struct qs_storage_be_put base; /* first */
    struct qs_s3put p;
    struct qs_pipe pipe;
    pthread_t th;
    int started;
    int rc;               /* the request's outcome */
    struct qs_error rerr; /* and its reason */
    uint64_t written;
};

static struct s3stream *stream_of(struct qs_storage_be_put *b)
{
    return (struct s3stream *)b;
}

static ssize_t pipe_source(void *buf, size_t cap, void *ud)
{
    struct s3stream *s = ud;
    return qs_pipe_read(&s->pipe, buf, cap);
}

/* The upload thread: one PUT whose body is the pipe. */
static void *upload_main(void *arg)
{
    struct s3stream *s = arg;
    char what[1200];
    qs_s3req_what(what, sizeof(what), "PUT", s->p.key);
    struct qs_s3req r;
    qs_s3req_init(&r, "PUT", s->p.key, NULL, what);
    qs_s3put_headers(&s->p, &r, 0, 1);
    r.src = pipe_source;
    r.src_ud = s;
    r.src_len = s->p.size;
    r.cancel = &s->p.abort;
    qs_error_clear(&s->rerr);
    int rc = qs_s3req_perform(s->p.ctx, s->p.h, &r, &s->rerr);
    rc = qs_s3put_settle(&s->p, rc, 0, &s->rerr);
    qs_s3req_deinit(&r);
    s->rc = rc;
    if (rc != 0)
        qs_pipe_fail(&s->pipe, rc); /* wake a blocked producer */
    return NULL;
}

/* Ends the request: closes the pipe (ok) or fails it, and waits. Returns
 * the request's outcome, its reason in err (may be NULL). */
static int stream_end(struct s3stream *s, int ok, struct qs_error *err)
{
    if (!s->started)
        return ok ? 0 : QS_ECANCELED;
    if (ok) {
        qs_pipe_close(&s->pipe);
    } else {
        qs_cancel_request(&s->p.abort);
        qs_pipe_fail(&s->pipe, QS_ECANCELED);
    }
    pthread_join(s->th, NULL);
    s->started = 0;
    if (s->rc != 0 && err != NULL)
        *err = s->rerr;
    return s->rc;
}

static void stream_free(struct s3stream *s)
{
    stream_end(s, 0, NULL); /* an unfinished PUT stores nothing */
    qs_pipe_deinit(&s->pipe);
    qs_s3put_deinit(&s->p);
    free(s);
}

static int stream_write(struct qs_storage_be_put *b, const void *data, size_t len,
                        struct qs_error *err)
{
    struct s3stream *s = stream_of(b);
    if (qs_cancel_requested(&s->p.abort))
        return qs_error_set(err, QS_ECANCELED, "s3 PUT %s: cancelled", s->p.key);
    if (qs_pipe_write(&s->pipe, data, len) != 0) {
        /* The request ended early: its reason is the put's. */
        int rc = stream_end(s, 0, err);
        return rc != 0 ? rc : qs_error_set(err, QS_EIO, "s3 PUT %s: ended early", s->p.key);
    }
    s->written += len;
    return 0;
}

static int stream_finish(struct qs_storage_be_put *b, struct qs_error *err)
{
    struct s3stream *s = stream_of(b);
    int rc;
    if (qs_cancel_requested(&s->p.abort))
        rc = qs_error_set(err, QS_ECANCELED, "s3 PUT %s: cancelled", s->p.key);
    else
        rc = stream_end(s, s->written == (uint64_t)s->p.size, err);
    stream_free(s);
    return rc;
}

static void stream_abort(struct qs_storage_be_put *b)
{
    if (b != NULL)
        stream_free(stream_of(b));
}

static const struct qs_storage_put_ops stream_ops = {
    .write = stream_write,
    .finish = stream_finish,
    .abort = stream_abort,
};

int qs_s3stream_begin(struct qs_s3req_ctx *ctx, const char *key, int64_t size,
                      const struct qs_storage_meta *meta, unsigned flags, struct qs_cancel *cancel,
                      struct qs_storage_be_put **out, struct qs_error *err)
{
    struct s3stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    s->base.ops = &stream_ops;
    int rc = qs_s3put_init(&s->p, ctx, key, size, meta, flags, cancel, err);
    if (rc != 0) {
        free(s);
        return rc;
    }
    if (qs_pipe_init(&s->pipe, STREAM_PIPE) != 0) {
        qs_s3put_deinit(&s->p);
        free(s);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    int e = pthread_create(&s->th, NULL, upload_main, s);
    if (e != 0) {
        stream_free(s);
        return qs_error_set(err, -e, "cannot start the upload thread: %s", strerror(e));
    }
    s->started = 1;
    *out = &s->base;
    return 0;
}
