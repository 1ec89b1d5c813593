/* A loopback TCP fault proxy for integration tests: listens on 127.0.0.1
 * (a free port) and relays every connection to an upstream host:port, with
 * switchable faults:
 *   - refuse: new connections are reset at once (peer unreachable);
 *   - stall: no byte is relayed in either direction (connections stay open);
 *   - cut: after N more client->upstream bytes the connection carrying them
 *     is reset on both sides (one shot, then relaying resumes);
 *   - 503: the next N HTTP requests are answered by the proxy itself with
 *     `503 SlowDown` and an S3 XML error body, then the connection is closed;
 *   - lose answers: requests with a given method and target suffix reach the
 *     upstream, which acts on them, but their answers never reach the client:
 *     the connection is reset when the upstream starts answering.
 * The proxy runs its own thread; every setter may be called from the test
 * thread at any time. */
#ifndef QSNAP_TEST_PROXY_H
#define QSNAP_TEST_PROXY_H

#include <stddef.h>
#include <stdint.h>

struct qs_proxy;

struct qs_proxy_stats {
    uint64_t connections; /* accepted */
    uint64_t up_bytes;    /* client -> upstream relayed */
    uint64_t down_bytes;  /* upstream -> client relayed */
    uint64_t refused;     /* connections reset by refuse mode */
    uint64_t cuts;        /* connections cut by qs_proxy_cut_after() */
    uint64_t injected;    /* requests answered with 503 */
    uint64_t requests;    /* request heads seen on injecting connections */
    uint64_t lost;        /* answers lost by qs_proxy_lose_answers() */
};

/* Starts a proxy to upstream_host (borrowed, numeric IPv4) and upstream_port.
 * Returns NULL on failure; free with qs_proxy_free(). */
struct qs_proxy *qs_proxy_new(const char *upstream_host, int upstream_port);

/* Stops the thread, closes every socket, frees p (NULL accepted). */
void qs_proxy_free(struct qs_proxy *p);

/* The listening port on 127.0.0.1. */
int qs_proxy_port(const struct qs_proxy *p);

/* "http://127.0.0.1:PORT" (borrowed from p). */
const char *qs_proxy_url(const struct qs_proxy *p);

void qs_proxy_set_refuse(struct qs_proxy *p, int on);
void qs_proxy_set_stall(struct qs_proxy *p, int on);
/* Arms a one-shot cut after n more client->upstream bytes (0 disarms). */
void qs_proxy_cut_after(struct qs_proxy *p, uint64_t n);
/* Answers the next n requests with 503 SlowDown (0 disarms). Arming resets
 * open connections so that the client's next request opens a new one. */
void qs_proxy_inject_503(struct qs_proxy *p, unsigned n);
/* From now on, every request whose method is one of method (borrowed,
 * e.g. "PUT" or "PUT|GET"; NULL or "" for any) and whose target ends with
 * suffix (borrowed, at most 63 bytes; NULL or "" disarms) is relayed, and
 * its answer is lost (an interim 1xx answer is relayed). Every chunk a
 * client sends is checked for such a request line at its start: clients
 * here send a request's head in one write and do not pipeline. */
void qs_proxy_lose_answers(struct qs_proxy *p, const char *method, const char *suffix);
/* Resets every open connection. */
void qs_proxy_reset_all(struct qs_proxy *p);

/* Copies the counters into out (borrowed). */
void qs_proxy_stats(struct qs_proxy *p, struct qs_proxy_stats *out);

#endif
