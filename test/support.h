/* Helpers shared by the criterion suites: processes, ports, HTTP, peers.
 * Integration tests talk only to loopback. Every process a test starts is
 * killed by the test (and by PR_SET_PDEATHSIG if the test itself dies). */
#ifndef QSNAP_TEST_SUPPORT_H
#define QSNAP_TEST_SUPPORT_H

#include <stddef.h>
#include <sys/types.h>

/* A free TCP port on 127.0.0.1 (bound and released; racy but fine here). */
int qs_test_free_port(void);

/* Value of a required environment variable; aborts the test with a clear
 * message when it is unset (integration peers missing must fail, not skip). */
const char *qs_test_env(const char *name);

/* Starts argv[0] with argv (borrowed) and the current environment plus
 * env_extra ("K=V" strings, NULL-terminated, may be NULL; a "K=" entry with an
 * empty value unsets K). stdout and stderr go to log_path when not NULL.
 * Returns the pid, or -1. */
pid_t qs_test_spawn(char *const argv[], char *const env_extra[], const char *log_path);

/* Waits up to timeout_s for pid to exit. Returns 0 and the wait status in
 * *status when it exited, -1 on timeout. */
int qs_test_wait_exit(pid_t pid, double timeout_s, int *status);

/* SIGKILL and reap (no-op for pid <= 0). */
void qs_test_kill(pid_t pid);

/* Runs a command to completion; returns its exit code (or -1), output
 * (stdout+stderr, owned by caller, may be NULL) in *out. */
int qs_test_run(char *const argv[], char *const env_extra[], char **out);

struct qs_test_resp {
    long status;
    char *body; /* owned, NUL-terminated */
    size_t len;
    char *headers; /* owned, raw response headers */
};

/* One HTTP request with libcurl. headers: NULL-terminated "K: V" list or
 * NULL. body may be NULL. Returns 0 when a response arrived (any status). */
int qs_test_http(const char *method, const char *url, const char *const *headers, const char *body,
                 size_t body_len, struct qs_test_resp *out);
void qs_test_resp_free(struct qs_test_resp *r);

/* Polls GET url until it answers 200 or timeout_s passes. 0 on success. */
int qs_test_wait_http(const char *url, double timeout_s);

/* Fresh temporary directory (owned string). */
char *qs_test_mkdtemp(const char *tag);
/* rm -rf path. */
void qs_test_rmrf(const char *path);
/* Reads a whole file (owned, NUL-terminated) or NULL. */
char *qs_test_read_file(const char *path, size_t *len);

/* The Qdrant stand-in (test/qdrant_standin.py) on a free loopback port. */
struct qs_test_standin {
    pid_t pid;
    int port;
    char url[64]; /* http://127.0.0.1:PORT */
    char *dir;    /* storage directory (owned) */
    char *log;    /* log file path (owned) */
};

/* Starts the stand-in; extra_args (NULL-terminated, may be NULL) are passed
 * on its command line. Returns 0 when it answers /healthz. */
int qs_test_standin_start(struct qs_test_standin *s, const char *const *extra_args);
void qs_test_standin_stop(struct qs_test_standin *s);

/* A multi-peer Qdrant stand-in: n peers sharing one cluster directory, peer i
 * (1-based) listening on 127.0.0.(i+1) and all on the same REST port, the way
 * qsnap reaches a peer (the host of its P2P uri in GET /cluster plus one REST
 * port). Peers are children of the test (killed with it); the stand-in's
 * control API (/__standin/cluster/...) on any peer changes the shared view. */
#define QS_TEST_CLUSTER_MAX 8

struct qs_test_cluster_peer {
    pid_t pid;     /* -1 while the peer is not running */
    char host[32]; /* 127.0.0.(i+1) */
    char url[64];  /* http://127.0.0.(i+1):PORT */
};

struct qs_test_cluster {
    int n;
    int port;     /* the REST port of every peer */
    char *dir;    /* cluster directory: cluster.json, peer-<i>/ (owned) */
    char *log;    /* log of all peers (owned) */
    char **extra; /* copy of the extra arguments, NULL-terminated (owned) */
    struct qs_test_cluster_peer peer[QS_TEST_CLUSTER_MAX + 1]; /* [1..n] */
};

/* Starts n (1..QS_TEST_CLUSTER_MAX) peers with extra_args (borrowed,
 * NULL-terminated, may be NULL) on every command line, and waits until every
 * peer's GET /cluster lists n peers and a leader (peer 1 leads at first).
 * Returns 0; on failure -1, with everything it started stopped and removed. */
int qs_test_cluster_start(struct qs_test_cluster *c, int n, const char *const *extra_args);
/* SIGKILLs peer i and reaps it (a peer lost for real); no-op if not running. */
void qs_test_cluster_kill(struct qs_test_cluster *c, int i);
/* Starts peer i again (same peer id, same data; it re-syncs like a Qdrant peer
 * coming back). Returns 0 when it answers /healthz, else -1. */
int qs_test_cluster_restart(struct qs_test_cluster *c, int i);
/* Kills every peer and removes the directory and log; safe to call on a zeroed,
 * partly started or already stopped cluster. */
void qs_test_cluster_stop(struct qs_test_cluster *c);

/* A running `qsnap serve` (QSNAP_TEST_BINARY) with env_extra on top of a
 * clean QSNAP_* environment. */
struct qs_test_daemon {
    pid_t pid;
    int port;
    char url[64];
    char *log; /* owned */
};

int qs_test_daemon_start(struct qs_test_daemon *d, char *const env_extra[]);
/* Sends SIGTERM and waits up to timeout_s; returns the exit status or -1
 * (then the process was killed). */
int qs_test_daemon_stop(struct qs_test_daemon *d, double timeout_s);

/* ---- the S3 peer (QSNAP_TEST_S3_*) ------------------------------------------ */

struct qs_storage_opts;

/* QSNAP_TEST_S3_REGION, or "us-east-1" when it is unset or empty. */
const char *qs_test_s3_region(void);

/* Fills the S3 fields of o (already initialised by the caller with
 * qs_storage_opts_init; other fields are left alone) for the test radosgw:
 * kind, endpoint, keys, bucket, region (QSNAP_TEST_S3_REGION, required), path
 * style and prefix. o and prefix are borrowed; o keeps pointing at prefix and
 * at the environment strings. */
void qs_test_s3_opts(struct qs_storage_opts *o, const char *prefix);

/* A destination (radosgw under a fresh prefix "test-SUITE/PID-N-TAG", or a
 * temporary file:// directory) and a Qdrant stand-in, with the QSNAP_*
 * variables that point qsnap at both. */
struct qs_test_world {
    int s3;
    struct qs_storage *st; /* owned */
    char prefix[200];
    char *dir; /* owned: the file:// directory, NULL for S3 */
    struct qs_test_standin qd;
    char vars[8][800];
    size_t nvars;
    char *env[96];
};

/* Opens w (caller storage) for suite and tag (borrowed); asserts on failure. */
void qs_test_world_open(struct qs_test_world *w, int s3, const char *suite, const char *tag);
/* Stops the stand-in, empties the S3 prefix or removes the directory. */
void qs_test_world_close(struct qs_test_world *w);
/* The environment for qsnap: clean (NULL-terminated, borrowed), the world's
 * variables, then extra (NULL-terminated, may be NULL). Points into w;
 * valid until the next call. */
char **qs_test_world_env(struct qs_test_world *w, char *const *clean, const char *const *extra);

/* Seconds on the monotonic clock. */
double qs_test_now_s(void);

/* method url with body (borrowed, may be NULL) and the request headers
 * (NULL-terminated, borrowed; NULL: only Content-Type: application/json):
 * asserts an answer with status want whose body is JSON, and returns it
 * parsed (owned: cJSON_Delete). The cJSON type is opaque here. */
struct cJSON *qs_test_http_json_h(const char *method, const char *url, const char *const *headers,
                                  const char *body, long want);
/* The same with only Content-Type: application/json. */
struct cJSON *qs_test_http_json(const char *method, const char *url, const char *body, long want);

/* The string member k of o (borrowed from o), NULL when absent or not a
 * string. */
const char *qs_test_jstr(const struct cJSON *o, const char *k);
/* The number member k of o; asserts that it is one. */
double qs_test_jnum(const struct cJSON *o, const char *k);

/* Every point of collection c on the Qdrant at base (ids, vectors,
 * payloads, in Qdrant's scroll order: ascending ids), as a JSON array
 * (owned: cJSON_Delete). */
struct cJSON *qs_test_all_points(const char *base, const char *c);

/* libcurl write callback that appends to ud, a struct qs_buf (borrowed). */
size_t qs_test_buf_sink(char *p, size_t size, size_t nmemb, void *ud);

/* One request to QSNAP_TEST_S3_ENDPOINT/QSNAP_TEST_S3_BUCKET/path_and_query
 * signed by libcurl's own SigV4 (not by qsnap's signer), with
 * "x-amz-content-sha256: UNSIGNED-PAYLOAD" and no request body. The response
 * body goes to sink(…, ud) (ud borrowed). Fails the test when the transfer
 * fails; otherwise returns the HTTP status. */
long qs_test_s3_request(const char *method, const char *path_and_query,
                        size_t (*sink)(char *, size_t, size_t, void *), void *ud);

/* ---- metrics ---------------------------------------------------------------- */

/* GET d->url/metrics; fails the test unless it answers 200. Returns the body
 * (owned). */
char *qs_test_daemon_metrics(const struct qs_test_daemon *d);

/* Runs `promtool check metrics` on text; returns its exit code, its output in
 * *out (owned by the caller, may be NULL). */
int qs_test_promtool_check(const char *text, char **out);

/* Value of one series in a text exposition ("name" or "name{labels}" exactly
 * as rendered, at the start of a line), NAN when absent. text and series are
 * borrowed. */
double qs_test_metric(const char *text, const char *series);

/* qsnap_backups_total{collection=coll,result=result} in text, NAN when absent. */
double qs_test_backups_total(const char *text, const char *coll, const char *result);

#endif
