#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define PX_MAX_CONNS 128
#define PX_BUF 65536
#define PX_HEAD_MAX 16384

static const char slowdown_body[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    "<RequestId>qsnap-test-proxy</RequestId></Error>";

struct px_conn {
    int cfd, ufd;
    /* client -> upstream and upstream -> client buffers */
    char up[PX_BUF], down[PX_BUF];
    size_t up_len, up_off, down_len, down_off;
    int c_eof, u_eof;
    /* injecting: reading the request head (and body) before answering */
    int inject;
    char head[PX_HEAD_MAX];
    size_t head_len;
    int head_done;
    uint64_t body_left;
    char *resp;
    size_t resp_len, resp_off;
    /* relaying: the answer to the request on this connection is lost */
    int lose;
};

struct qs_proxy {
    pthread_t thread;
    pthread_mutex_t mu;
    int lfd;
    int wake[2];
    int port;
    char url[64];
    struct sockaddr_in upstream;
    struct px_conn *conns[PX_MAX_CONNS];
    /* settings (under mu) */
    int stop, refuse, stall, reset_all;
    uint64_t cut_left; /* 0 = disarmed */
    unsigned inject_left;
    char lose_method[16], lose_suffix[64]; /* lose_suffix "" = disarmed */
    struct qs_proxy_stats st;
};

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_rst(int fd)
{
    if (fd < 0)
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void conn_free(struct px_conn *c, int rst)
{
    if (c == NULL)
        return;
    if (rst) {
        close_rst(c->cfd);
        close_rst(c->ufd);
    } else {
        if (c->cfd >= 0)
            close(c->cfd);
        if (c->ufd >= 0)
            close(c->ufd);
    }
    free(c->resp);
    free(c);
}

static void wake(struct qs_proxy *p)
{
    char b = 1;
    ssize_t n = write(p->wake[1], &b, 1);
    (void)n;
}

static int connect_upstream(struct qs_proxy *p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&p->upstream, sizeof(p->upstream)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_nonblock(fd);
    return fd;
}

static void do_accept(struct qs_proxy *p)
{
    int fd = accept(p->lfd, NULL, NULL);
    if (fd < 0)
        return;
    pthread_mutex_lock(&p->mu);
    p->st.connections++;
    int refuse = p->refuse;
    int inject = !refuse && p->inject_left > 0;
    if (inject)
        p->inject_left--;
    if (refuse)
        p->st.refused++;
    pthread_mutex_unlock(&p->mu);
    if (refuse) {
        close_rst(fd);
        return;
    }
    int slot = -1;
    for (int i = 0; i < PX_MAX_CONNS; i++)
        if (p->conns[i] == NULL) {
            slot = i;
            break;
        }
    struct px_conn *c = slot >= 0 ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        close_rst(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_nonblock(fd);
    c->cfd = fd;
    c->ufd = -1;
    c->inject = inject;
    if (!inject && (c->ufd = connect_upstream(p)) < 0) {
        conn_free(c, 1);
        return;
    }
    p->conns[slot] = c;
}

/* Content-Length and Expect of a request head (NUL-terminated). */
static void head_info(const char *head, uint64_t *clen, int *expect)
{
    *clen = 0;
    *expect = 0;
    const char *l = strstr(head, "\r\n");
    while (l != NULL && l[2] != '\r') {
        l += 2;
        if (strncasecmp(l, "Content-Length:", 15) == 0)
            *clen = strtoull(l + 15, NULL, 10);
        else if (strncasecmp(l, "Expect:", 7) == 0)
            *expect = strstr(l, "100") != NULL;
        l = strstr(l, "\r\n");
    }
}

static void make_503(struct px_conn *c)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     sizeof(slowdown_body) - 1);
    c->resp = malloc((size_t)n + sizeof(slowdown_body));
    if (c->resp == NULL)
        return;
    memcpy(c->resp, hdr, (size_t)n);
    memcpy(c->resp + n, slowdown_body, sizeof(slowdown_body) - 1);
    c->resp_len = (size_t)n + sizeof(slowdown_body) - 1;
    c->resp_off = 0;
}

/* Returns 1 when the connection is finished. */
static int inject_step(struct qs_proxy *p, struct px_conn *c, short rev)
{
    if (c->resp != NULL) {
        if (rev & (POLLOUT | POLLERR | POLLHUP)) {
            ssize_t n =
                send(c->cfd, c->resp + c->resp_off, c->resp_len - c->resp_off, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return 1;
            if (n > 0)
                c->resp_off += (size_t)n;
            if (c->resp_off == c->resp_len) {
                shutdown(c->cfd, SHUT_WR);
                return 1;
            }
        }
        return 0;
    }
    if (!(rev & (POLLIN | POLLERR | POLLHUP)))
        return 0;
    char buf[PX_BUF];
    ssize_t n = recv(c->cfd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return 1;
    if (n < 0)
        return 0;
    size_t off = 0;
    if (!c->head_done) {
        size_t take = (size_t)n;
        if (take > sizeof(c->head) - 1 - c->head_len)
            take = sizeof(c->head) - 1 - c->head_len;
        memcpy(c->head + c->head_len, buf, take);
        c->head_len += take;
        c->head[c->head_len] = '\0';
        char *end = strstr(c->head, "\r\n\r\n");
        if (end == NULL)
            return c->head_len >= sizeof(c->head) - 1;
        size_t head_bytes = (size_t)(end + 4 - c->head);
        /* bytes of this read that belong to the body */
        off = head_bytes - (c->head_len - take);
        c->head_done = 1;
        int expect;
        head_info(c->head, &c->body_left, &expect);
        pthread_mutex_lock(&p->mu);
        p->st.requests++;
        pthread_mutex_unlock(&p->mu);
        if (expect)
            c->body_left = 0;
    }
    uint64_t rest = (uint64_t)n - off;
    c->body_left = rest >= c->body_left ? 0 : c->body_left - rest;
    if (c->body_left == 0) {
        pthread_mutex_lock(&p->mu);
        p->st.injected++;
        pthread_mutex_unlock(&p->mu);
        make_503(c);
        if (c->resp == NULL)
            return 1;
    }
    return 0;
}

/* 1 when the data read from a client (a request starts at its first byte:
 * clients here send one request at a time) is a request whose method is
 * one of method's ('|'-separated; "" = any) and whose target ends with suffix. Called under mu. */
static int lose_match(const struct qs_proxy *p, const char *data, size_t len)
{
    if (p->lose_suffix[0] == '\0')
        return 0;
    const char *sp = memchr(data, ' ', len);
    if (sp == NULL)
        return 0;
    size_t mlen = (size_t)(sp - data);
    if (p->lose_method[0] != '\0') {
        /* a list of methods separated by '|' */
        int hit = 0;
        for (const char *m = p->lose_method; *m != '\0' && !hit;) {
            const char *bar = strchr(m, '|');
            size_t l = bar != NULL ? (size_t)(bar - m) : strlen(m);
            hit = l == mlen && memcmp(m, data, mlen) == 0;
            m += bar != NULL ? l + 1 : l;
        }
        if (!hit)
            return 0;
    }
    const char *t = sp + 1;
    const char *te = memchr(t, ' ', len - (size_t)(t - data));
    if (te == NULL)
        return 0;
    size_t tlen = (size_t)(te - t), slen = strlen(p->lose_suffix);
    return tlen >= slen && memcmp(te - slen, p->lose_suffix, slen) == 0;
}

/* Relays one connection; returns 1 when it is finished, 2 when it was cut. */
static int relay_step(struct qs_proxy *p, struct px_conn *c, short crev, short urev)
{
    /* client -> buffer */
    if ((crev & (POLLIN | POLLHUP | POLLERR)) && c->up_len == 0 && !c->c_eof) {
        ssize_t n = recv(c->cfd, c->up, sizeof(c->up), 0);
        if (n == 0) {
            c->c_eof = 1;
            shutdown(c->ufd, SHUT_WR);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return 1;
        } else if (n > 0) {
            c->up_len = (size_t)n;
            c->up_off = 0;
            int cut = 0;
            pthread_mutex_lock(&p->mu);
            if (lose_match(p, c->up, (size_t)n))
                c->lose = 1;
            if (p->cut_left > 0) {
                if ((uint64_t)n >= p->cut_left) {
                    c->up_len = (size_t)p->cut_left;
                    p->cut_left = 0;
                    p->st.cuts++;
                    cut = 1;
                } else {
                    p->cut_left -= (uint64_t)n;
                }
            }
            p->st.up_bytes += c->up_len;
            pthread_mutex_unlock(&p->mu);
            if (cut) {
                /* forward what fits in the budget, then reset both sides */
                size_t off = 0;
                while (off < c->up_len) {
                    ssize_t w = send(c->ufd, c->up + off, c->up_len - off, MSG_NOSIGNAL);
                    if (w <= 0)
                        break;
                    off += (size_t)w;
                }
                return 2;
            }
        }
    }
    /* buffer -> upstream */
    if (c->up_len > 0 && (urev & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = send(c->ufd, c->up + c->up_off, c->up_len - c->up_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return 1;
        if (n > 0) {
            c->up_off += (size_t)n;
            if (c->up_off == c->up_len)
                c->up_len = c->up_off = 0;
        }
    }
    /* upstream -> buffer */
    if ((urev & (POLLIN | POLLHUP | POLLERR)) && c->down_len == 0 && !c->u_eof) {
        ssize_t n = recv(c->ufd, c->down, sizeof(c->down), 0);
        if (n == 0) {
            c->u_eof = 1;
            shutdown(c->cfd, SHUT_WR);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return 1;
        } else if (n > 0 && c->lose && !(n > 10 && memcmp(c->down, "HTTP/1.1 1", 10) == 0)) {
            /* the request was relayed and answered (an interim 1xx such as
             * 100 Continue is relayed): the answer is lost */
            pthread_mutex_lock(&p->mu);
            p->st.lost++;
            pthread_mutex_unlock(&p->mu);
            return 2;
        } else if (n > 0) {
            c->down_len = (size_t)n;
            c->down_off = 0;
            pthread_mutex_lock(&p->mu);
            p->st.down_bytes += (uint64_t)n;
            pthread_mutex_unlock(&p->mu);
        }
    }
    /* buffer -> client */
    if (c->down_len > 0 && (crev & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = send(c->cfd, c->down + c->down_off, c->down_len - c->down_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return 1;
        if (n > 0) {
            c->down_off += (size_t)n;
            if (c->down_off == c->down_len)
                c->down_len = c->down_off = 0;
        }
    }
    if (c->c_eof && c->u_eof && c->up_len == 0 && c->down_len == 0)
        return 1;
    if (c->u_eof && c->down_len == 0 && c->c_eof)
        return 1;
    return 0;
}

static void *proxy_main(void *ud)
{
    struct qs_proxy *p = ud;
    struct pollfd fds[2 + 2 * PX_MAX_CONNS];
    int idx[PX_MAX_CONNS];
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stop = p->stop, stall = p->stall, reset = p->reset_all;
        p->reset_all = 0;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        if (reset)
            for (int i = 0; i < PX_MAX_CONNS; i++) {
                conn_free(p->conns[i], 1);
                p->conns[i] = NULL;
            }
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (int i = 0; i < PX_MAX_CONNS; i++) {
            struct px_conn *c = p->conns[i];
            idx[i] = -1;
            if (c == NULL || stall)
                continue;
            idx[i] = (int)n;
            short ce = 0, ue = 0;
            if (c->inject) {
                ce = c->resp != NULL ? POLLOUT : POLLIN;
                fds[n++] = (struct pollfd){.fd = c->cfd, .events = ce};
                fds[n++] = (struct pollfd){.fd = -1};
                continue;
            }
            if (c->up_len == 0 && !c->c_eof)
                ce |= POLLIN;
            if (c->down_len > 0)
                ce |= POLLOUT;
            if (c->down_len == 0 && !c->u_eof)
                ue |= POLLIN;
            if (c->up_len > 0)
                ue |= POLLOUT;
            fds[n++] = (struct pollfd){.fd = c->cfd, .events = ce};
            fds[n++] = (struct pollfd){.fd = c->ufd, .events = ue};
        }
        int r = poll(fds, n, 200);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        if (fds[0].revents & POLLIN) {
            char b[64];
            ssize_t k = read(p->wake[0], b, sizeof(b));
            (void)k;
        }
        if (fds[1].revents & POLLIN)
            do_accept(p);
        for (int i = 0; i < PX_MAX_CONNS; i++) {
            struct px_conn *c = p->conns[i];
            if (c == NULL || idx[i] < 0)
                continue;
            short crev = fds[idx[i]].revents, urev = fds[idx[i] + 1].revents;
            if (crev == 0 && urev == 0)
                continue;
            int done = c->inject ? inject_step(p, c, crev) : relay_step(p, c, crev, urev);
            if (done) {
                conn_free(c, done == 2);
                p->conns[i] = NULL;
            }
        }
    }
    for (int i = 0; i < PX_MAX_CONNS; i++) {
        conn_free(p->conns[i], 1);
        p->conns[i] = NULL;
    }
    return NULL;
}

struct qs_proxy *qs_proxy_new(const char *upstream_host, int upstream_port)
{
    struct qs_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->lfd = -1;
    p->wake[0] = p->wake[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    p->upstream.sin_family = AF_INET;
    p->upstream.sin_port = htons((uint16_t)upstream_port);
    if (inet_pton(AF_INET, upstream_host, &p->upstream.sin_addr) != 1)
        goto fail;
    if (pipe(p->wake) != 0)
        goto fail;
    set_nonblock(p->wake[0]);
    set_nonblock(p->wake[1]);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->lfd < 0)
        goto fail;
    int one = 1;
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(p->lfd, 128) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&a, &len) != 0)
        goto fail;
    set_nonblock(p->lfd);
    p->port = ntohs(a.sin_port);
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", p->port);
    if (pthread_create(&p->thread, NULL, proxy_main, p) != 0)
        goto fail;
    return p;
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
        close(p->wake[1]);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
}

void qs_proxy_free(struct qs_proxy *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    wake(p);
    pthread_join(p->thread, NULL);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int qs_proxy_port(const struct qs_proxy *p)
{
    return p->port;
}

const char *qs_proxy_url(const struct qs_proxy *p)
{
    return p->url;
}

void qs_proxy_lose_answers(struct qs_proxy *p, const char *method, const char *suffix)
{
    pthread_mutex_lock(&p->mu);
    snprintf(p->lose_method, sizeof(p->lose_method), "%s", method != NULL ? method : "");
    snprintf(p->lose_suffix, sizeof(p->lose_suffix), "%s", suffix != NULL ? suffix : "");
    pthread_mutex_unlock(&p->mu);
}

void qs_proxy_set_refuse(struct qs_proxy *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->refuse = on;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

void qs_proxy_set_stall(struct qs_proxy *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->stall = on;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

void qs_proxy_cut_after(struct qs_proxy *p, uint64_t n)
{
    pthread_mutex_lock(&p->mu);
    p->cut_left = n;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

void qs_proxy_inject_503(struct qs_proxy *p, unsigned n)
{
    pthread_mutex_lock(&p->mu);
    p->inject_left = n;
    if (n > 0)
        p->reset_all = 1;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

void qs_proxy_reset_all(struct qs_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    p->reset_all = 1;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

void qs_proxy_stats(struct qs_proxy *p, struct qs_proxy_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    pthread_mutex_unlock(&p->mu);
}
