/* Qdrant cluster mode against the multi-peer stand-in (three peers on
 * 127.0.0.2-4, one REST port) with one `qsnap serve` sidecar per peer, all
 * with the same configuration and destination (a shared file:// directory):
 *   - the wire: GET /cluster and GET /collections/{c}/cluster read from every
 *     peer with exact u64 peer ids and the peers' REST URLs;
 *   - the leader rule at each scheduled time (the schedule driven by the
 *     test clock): exactly one sidecar, the leader's, runs the scheduled
 *     backup and the others log that they skipped and why; leadership moved
 *     between two scheduled times moves the run; a follower's manual backup
 *     runs but never prunes; a sidecar that cannot ask GET /cluster skips with
 *     an error and counts it; no leader, nobody runs; qsnap_cluster_leader is 1
 *     on exactly one sidecar; /readyz and check-config show the view;
 *   - QSNAP_CLUSTER=auto against a single node (today's stand-in) behaves as
 *     QSNAP_CLUSTER=off: same objects, same pruning, no cluster series. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qsnap/catalog.h"
#include "qsnap/cluster.h"
#include "qsnap/error.h"
#include "qsnap/qdrant.h"
#include "qsnap/storage.h"
#include "qsnap/util.h"
#include "support.h"

#define TOKEN "cluster-test-admin-token-0123456789"
#define AUTH "Authorization: Bearer " TOKEN
#define PEERS 3

/* ---- the world: a cluster, a shared destination, one sidecar per peer ---------- */

struct world {
    struct qs_test_cluster c;
    char *dir; /* the file:// destination */
    char dest[600];
    struct qs_storage *st;
    struct qs_test_daemon d[PEERS + 1]; /* [1..PEERS], pid <= 0 when not running */
    char id[PEERS + 1][24];             /* peer ids (decimal) by peer index */
    int64_t base;                       /* test clock at t0 (0: real clock) */
    time_t t0;
};

static struct world *g_world;
static struct qs_test_standin *g_single;
static struct qs_test_cluster *g_other; /* a second cluster (restores) */

static void stop_all(void)
{
    struct world *w = g_world;
    if (w != NULL) {
        for (int i = 1; i <= PEERS; i++)
            if (w->d[i].pid > 0)
                qs_test_daemon_stop(&w->d[i], 10);
        qs_test_cluster_stop(&w->c);
        qs_storage_free(w->st);
        w->st = NULL;
        if (w->dir != NULL)
            qs_test_rmrf(w->dir);
        free(w->dir);
        w->dir = NULL;
        g_world = NULL;
    }
    if (g_single != NULL) {
        qs_test_standin_stop(g_single);
        g_single = NULL;
    }
    if (g_other != NULL) {
        qs_test_cluster_stop(g_other);
        g_other = NULL;
    }
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    stop_all();
    curl_global_cleanup();
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 400);

/* A control-API call on peer i of the cluster. */
static void ctl(struct world *w, int i, const char *method, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", w->c.peer[i].url, path);
    cJSON_Delete(qs_test_http_json(method, url, body, 200));
}

/* The peer ids by index, from the stand-in's view (its keys are the exact ids). */
static void read_ids(struct world *w)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/cluster", w->c.peer[1].url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    const cJSON *peers =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "view"), "peers");
    const cJSON *p;
    int n = 0;
    cJSON_ArrayForEach(p, peers)
    {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(p, "index");
        cr_assert(cJSON_IsNumber(idx));
        int i = (int)idx->valuedouble;
        cr_assert(i >= 1 && i <= PEERS);
        snprintf(w->id[i], sizeof(w->id[i]), "%s", p->string);
        n++;
    }
    cr_assert_eq(n, PEERS);
    cJSON_Delete(j);
}

static uint64_t id_of(const struct world *w, int i)
{
    uint64_t v = 0;
    for (const char *p = w->id[i]; *p != '\0'; p++) {
        cr_assert(*p >= '0' && *p <= '9' && v <= (UINT64_MAX - 9) / 10, "peer id '%s'", w->id[i]);
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v;
}

/* Makes peer i the Raft leader (the stand-in's hook; term + 1). */
static void set_leader(struct world *w, int i)
{
    char body[64];
    if (i == 0)
        snprintf(body, sizeof(body), "{\"peer\":null}");
    else
        snprintf(body, sizeof(body), "{\"peer\":%d}", i);
    ctl(w, 1, "POST", "/__standin/cluster/leader", body);
}

/* Waits until every replica of collection c is Active (as peer 1 sees it). */
static void wait_active(struct world *w, const char *c)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/collections/%s/cluster", w->c.peer[1].url, c);
    double end = qs_test_now_s() + 30;
    for (;;) {
        cJSON *j = qs_test_http_json("GET", url, NULL, 200);
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
        int all = 1, n = 0;
        const char *lists[] = {"local_shards", "remote_shards"};
        for (int k = 0; k < 2; k++) {
            const cJSON *s;
            cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(res, lists[k]))
            {
                const char *st = qs_test_jstr(s, "state");
                all &= st != NULL && strcmp(st, "Active") == 0;
                n++;
            }
        }
        cJSON_Delete(j);
        if (all && n > 0)
            return;
        cr_assert_lt(qs_test_now_s(), end, "replicas of %s not Active", c);
        usleep(100000);
    }
}

/* A generated collection with one shard replicated on every peer, so that
 * any peer's collection snapshot holds all of it. */
static void make_collection(struct world *w, const char *name, int points)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"points\":%d,\"dim\":8,\"shard_number\":1,"
             "\"replication_factor\":%d}",
             name, points, PEERS);
    ctl(w, 1, "POST", "/__standin/collections", body);
    wait_active(w, name);
}

static void world_open(struct world *w, int64_t base)
{
    memset(w, 0, sizeof(*w));
    for (int i = 0; i <= PEERS; i++)
        w->d[i].pid = -1;
    g_world = w;
    cr_assert_eq(qs_test_cluster_start(&w->c, PEERS, NULL), 0,
                 "the stand-in cluster did not start");
    read_ids(w);
    w->dir = qs_test_mkdtemp("cluster-dest");
    snprintf(w->dest, sizeof(w->dest), "QSNAP_DESTINATION=file://%s", w->dir);
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = QS_DEST_FILE;
    o.path = w->dir;
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &w->st, &err), 0, "%s", err.msg);
    w->base = base;
    w->t0 = time(NULL);
}

/* The test clock now, for a sidecar started now (they all agree). */
static int64_t test_now(const struct world *w)
{
    return w->base + (int64_t)(time(NULL) - w->t0);
}

/* The environment of sidecar i: the same for all but the Qdrant URL. */
static char **sidecar_env(struct world *w, int i, const char *const *extra)
{
    static char *env[40];
    static char qurl[128], port[64], now[64];
    size_t n = 0;
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s", w->c.peer[i].url);
    snprintf(port, sizeof(port), "QSNAP_CLUSTER_REST_PORT=%d", w->c.port);
    env[n++] = w->dest;
    env[n++] = qurl;
    env[n++] = port;
    env[n++] = "QSNAP_CLUSTER=auto";
    env[n++] = "QSNAP_ADMIN_TOKEN=" TOKEN;
    env[n++] = "QSNAP_LOG_FORMAT=json";
    env[n++] = "QSNAP_COMPRESSION=none";
    env[n++] = "QSNAP_TEST_PROBE_INTERVAL_MS=300";
    env[n++] = "QSNAP_SCHEDULE=off";
    if (w->base > 0) {
        snprintf(now, sizeof(now), "QSNAP_TEST_NOW=%lld", (long long)test_now(w));
        env[n++] = now;
    }
    for (size_t k = 0; extra != NULL && extra[k] != NULL && n < 39; k++)
        env[n++] = (char *)extra[k];
    env[n] = NULL;
    return env;
}

static char *sidecar_log(const struct world *w, int i)
{
    char *log = qs_test_read_file(w->d[i].log, NULL);
    return log != NULL ? log : strdup("");
}

/* Starts sidecar i and waits for its first probe (/readyz 200). */
static void sidecar_start(struct world *w, int i, const char *const *extra)
{
    int rc = qs_test_daemon_start(&w->d[i], sidecar_env(w, i, extra));
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", w->d[i].url);
    if (rc != 0 || qs_test_wait_http(url, 30) != 0) {
        char *log = sidecar_log(w, i);
        cr_assert_fail("sidecar %d did not become ready; log:\n%s", i, log);
    }
}

static void sidecar_stop(struct world *w, int i)
{
    int st = qs_test_daemon_stop(&w->d[i], 30);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "sidecar %d did not exit 0 on SIGTERM (status %d)", i, st);
}

static size_t count_substr(const char *s, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + len, needle))
        n++;
    return n;
}

/* Log lines of sidecar i holding needle. */
static size_t log_count(const struct world *w, int i, const char *needle)
{
    char *log = sidecar_log(w, i);
    size_t n = count_substr(log, needle);
    free(log);
    return n;
}

static double metric(const struct world *w, int i, const char *series)
{
    char *m = qs_test_daemon_metrics(&w->d[i]);
    double v = qs_test_metric(m, series);
    free(m);
    return v;
}

#define LEADER_GAUGE "qsnap_cluster_leader"
#define SKIPPED(kind, reason)                                                                      \
    "qsnap_schedule_skipped_total{kind=\"" kind "\",reason=\"" reason "\"}"

/* Waits until qsnap_cluster_leader is 1 on sidecar `leader` only (0 on the
 * others): the probes (every 300 ms) have seen the leader. */
static void wait_leader_gauge(const struct world *w, int leader)
{
    double end = qs_test_now_s() + 20;
    for (;;) {
        int ok = 1;
        for (int i = 1; i <= PEERS; i++)
            ok &= metric(w, i, LEADER_GAUGE) == (i == leader ? 1.0 : 0.0);
        if (ok)
            return;
        cr_assert_lt(qs_test_now_s(), end, "qsnap_cluster_leader is not 1 on sidecar %d only",
                     leader);
        usleep(100000);
    }
}

/* The complete backups of collection c at the destination (snapshot names,
 * newest first, owned). */
static char **backups_of(const struct world *w, const char *c, size_t *n)
{
    struct qs_catalog cat;
    struct qs_error err;
    cr_assert_eq(qs_catalog_load(w->st, c, 0, &cat, &err), 0, "%s", err.msg);
    char **v = calloc(cat.nbackups + 1, sizeof(char *));
    for (size_t i = 0; i < cat.nbackups; i++)
        v[i] = strdup(cat.backups[i].m.snapshot);
    *n = cat.nbackups;
    qs_catalog_deinit(&cat);
    return v;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* 1 when backup `snapshot` of collection c was made by peer i's sidecar: a
 * cluster backup's manifest names that peer; a collection snapshot's name
 * (QSNAP_CLUSTER=off) holds the peer id Qdrant put there. */
static int made_by(const struct world *w, const char *c, const char *snapshot, int i)
{
    struct qs_catalog cat;
    struct qs_error err;
    cr_assert_eq(qs_catalog_load(w->st, c, 0, &cat, &err), 0, "%s", err.msg);
    int found = -1;
    for (size_t k = 0; k < cat.nbackups; k++) {
        const struct qs_manifest *m = &cat.backups[k].m;
        if (strcmp(m->snapshot, snapshot) != 0)
            continue;
        if (m->has_cluster) {
            found = m->cluster.peer_id == id_of(w, i);
        } else {
            uint64_t peer = 0;
            cr_assert_eq(qs_snapshot_name_parse(snapshot, NULL, 0, &peer, NULL), 0, "%s", snapshot);
            found = peer == id_of(w, i);
        }
    }
    qs_catalog_deinit(&cat);
    cr_assert_neq(found, -1, "no backup %s of %s", snapshot, c);
    return found;
}

static char *post_backup(const struct world *w, int i)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/backup", w->d[i].url);
    const char *h[] = {AUTH, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("POST", url, h, "", 0, &r), 0);
    cr_assert_eq(r.status, 202, "POST /v1/backup on sidecar %d: %ld %s", i, r.status, r.body);
    cJSON *j = cJSON_Parse(r.body);
    char *id = strdup(qs_test_jstr(j, "job"));
    cJSON_Delete(j);
    qs_test_resp_free(&r);
    return id;
}

static cJSON *wait_job(const struct world *w, int i, const char *id)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/jobs/%s", w->d[i].url, id);
    double end = qs_test_now_s() + 60;
    for (;;) {
        cJSON *j = qs_test_http_json("GET", url, NULL, 200);
        const char *st = qs_test_jstr(j, "state");
        cr_assert_not_null(st);
        if (strcmp(st, "running") != 0 && strcmp(st, "queued") != 0)
            return j;
        cJSON_Delete(j);
        cr_assert_lt(qs_test_now_s(), end, "job %s still running", id);
        usleep(100000);
    }
}

/* /readyz of sidecar i (200), its "cluster" object checked against the
 * cluster: this peer, the leader, and every peer's REST URL. The view is
 * the last probe's (every 300 ms here), and a follower that stays a
 * follower keeps its gauge at 0, so wait_leader_gauge() cannot tell that
 * it has seen a new leader: the leader field is waited for, the rest
 * asserted at once. */
static void check_readyz(const struct world *w, int i, int leader)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", w->d[i].url);
    double end = qs_test_now_s() + 20;
    cJSON *j;
    const cJSON *cl;
    for (;;) {
        j = qs_test_http_json("GET", url, NULL, 200);
        cl = cJSON_GetObjectItemCaseSensitive(j, "cluster");
        cr_assert(cJSON_IsObject(cl), "no cluster view in /readyz");
        const char *seen = qs_test_jstr(cl, "leader");
        if (seen != NULL && strcmp(seen, w->id[leader]) == 0)
            break;
        cJSON_Delete(j);
        cr_assert_lt(qs_test_now_s(), end, "sidecar %d's /readyz never named peer %s the leader", i,
                     w->id[leader]);
        usleep(100000);
    }
    cr_assert_str_eq(qs_test_jstr(j, "status"), "ready");
    cr_assert_str_eq(qs_test_jstr(cl, "setting"), "auto");
    cr_assert_str_eq(qs_test_jstr(cl, "status"), "enabled");
    cr_assert_str_eq(qs_test_jstr(cl, "role"), i == leader ? "leader" : "follower");
    cr_assert_str_eq(qs_test_jstr(cl, "peer_id"), w->id[i]);
    cr_assert_str_eq(qs_test_jstr(cl, "leader"), w->id[leader]);
    cr_assert_eq(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cl, "is_leader")), i == leader);
    cr_assert_eq(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cl, "runs_scheduled")), i == leader);
    cr_assert_str_eq(qs_test_jstr(cl, "raft_role"), i == leader ? "Leader" : "Follower");
    const cJSON *peers = cJSON_GetObjectItemCaseSensitive(cl, "peers");
    cr_assert_eq(cJSON_GetArraySize(peers), PEERS);
    for (int k = 1; k <= PEERS; k++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(peers, w->id[k]);
        cr_assert(cJSON_IsObject(p), "peer %s missing from /readyz", w->id[k]);
        char uri[64];
        snprintf(uri, sizeof(uri), "http://%s:6335/", w->c.peer[k].host);
        cr_assert_str_eq(qs_test_jstr(p, "uri"), uri);
        cr_assert_str_eq(qs_test_jstr(p, "rest_url"), w->c.peer[k].url);
    }
    cJSON_Delete(j);
}

/* Cluster backup helpers (defined below). */
static void make_sharded(struct world *w, const char *name, int points, int shards);
static void placement_of(struct world *w, const char *c, struct qs_collection_cluster *cc);
static void newest_backup(const struct world *w, const char *c, struct qs_manifest *m);
static void check_cluster_backup(const struct world *w, const struct qs_manifest *m,
                                 const struct qs_collection_cluster *cc, int by, int down);
static size_t objects_of(const struct world *w, const char *c);

/* ---- the wire ----------------------------------------------------------------- */

/* GET /cluster on every peer through the client: exact ids (random u64 above
 * 2^53 in the stand-in, compared as text with its own view), REST URLs equal
 * to the peers' real addresses, the leader and roles; moving the leader and
 * having none. GET /collections/{c}/cluster: 3 shards x 2 replicas, the same
 * placement from every peer, remote peer ids exact. */
Test(cluster, wire_cluster_and_collection_cluster)
{
    static struct world w;
    world_open(&w, 0);
    struct qs_qdrant *q[PEERS + 1] = {NULL};
    struct qs_error err;
    for (int i = 1; i <= PEERS; i++) {
        struct qs_qdrant_opts o = {.url = w.c.peer[i].url};
        cr_assert_eq(qs_qdrant_new(&o, &q[i], &err), 0, "%s", err.msg);
    }
    for (int i = 1; i <= PEERS; i++) {
        struct qs_cluster_info ci;
        cr_assert_eq(qs_cluster_get(q[i], w.c.port, &ci, &err), 0, "peer %d: %s", i, err.msg);
        char got[24];
        snprintf(got, sizeof(got), "%" PRIu64, ci.peer_id);
        cr_assert_str_eq(got, w.id[i], "peer %d: id", i);
        cr_assert_gt(ci.peer_id, (uint64_t)1 << 53);
        snprintf(got, sizeof(got), "%" PRIu64, ci.leader);
        cr_assert_str_eq(got, w.id[1], "the bootstrap peer leads");
        cr_assert_str_eq(ci.role, i == 1 ? "Leader" : "Follower");
        cr_assert_eq(ci.is_voter, 1);
        cr_assert_geq(ci.term, 1);
        cr_assert_eq(ci.npeers, PEERS);
        for (int k = 1; k <= PEERS; k++) {
            const struct qs_cluster_peer *p = qs_cluster_info_peer(&ci, id_of(&w, k));
            cr_assert_not_null(p, "peer %d does not list peer %d", i, k);
            cr_assert_str_eq(p->rest_url, w.c.peer[k].url);
        }
        qs_cluster_info_deinit(&ci);
    }
    /* the view's roles follow the leader */
    struct qs_config cfg = {.cluster = QS_CLUSTER_AUTO, .cluster_rest_port = w.c.port};
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    cr_assert_eq(qs_cluster_view_check(q[1], &cfg, &v), QS_CLUSTER_ROLE_LEADER);
    cr_assert_eq(qs_cluster_view_check(q[3], &cfg, &v), QS_CLUSTER_ROLE_FOLLOWER);
    set_leader(&w, 3);
    cr_assert_eq(qs_cluster_view_check(q[3], &cfg, &v), QS_CLUSTER_ROLE_LEADER);
    cr_assert_eq(qs_cluster_view_check(q[1], &cfg, &v), QS_CLUSTER_ROLE_FOLLOWER);
    cr_assert_eq(v.info.leader, id_of(&w, 3));
    set_leader(&w, 0);
    cr_assert_eq(qs_cluster_view_check(q[2], &cfg, &v), QS_CLUSTER_ROLE_NO_LEADER);
    cr_assert_str_eq(v.info.role, "PreCandidate");
    set_leader(&w, 1);
    qs_cluster_view_deinit(&v);

    /* a collection in 3 shards, 2 replicas each */
    ctl(&w, 1, "POST", "/__standin/collections",
        "{\"name\":\"wire\",\"points\":90,\"dim\":8,\"shard_number\":3,\"replication_factor\":2}");
    wait_active(&w, "wire");
    int replicas[3] = {0, 0, 0};
    uint64_t points = 0;
    for (int i = 1; i <= PEERS; i++) {
        struct qs_collection_cluster cc;
        cr_assert_eq(qs_cluster_collection_get(q[i], "wire", &cc, &err), 0, "%s", err.msg);
        cr_assert_eq(cc.peer_id, id_of(&w, i));
        cr_assert_eq(cc.shard_count, 3);
        cr_assert_eq(cc.ntransfers, 0);
        cr_assert_eq(cc.nlocal + cc.nremote, 6, "peer %d sees %zu replicas", i,
                     cc.nlocal + cc.nremote);
        for (size_t k = 0; k < cc.nlocal; k++) {
            cr_assert_lt(cc.local[k].shard_id, 3);
            cr_assert_eq(cc.local[k].state, QS_REPLICA_ACTIVE);
            cr_assert_null(cc.local[k].shard_key);
            replicas[cc.local[k].shard_id]++;
            points += cc.local[k].points_count;
        }
        for (size_t k = 0; k < cc.nremote; k++) {
            int known = 0;
            for (int p = 1; p <= PEERS; p++)
                known |= cc.remote[k].peer_id == id_of(&w, p) && p != i;
            cr_assert(known, "remote peer id %" PRIu64 " is not another peer's",
                      cc.remote[k].peer_id);
            cr_assert_eq(cc.remote[k].state, QS_REPLICA_ACTIVE);
        }
        qs_collection_cluster_deinit(&cc);
    }
    cr_assert(replicas[0] == 2 && replicas[1] == 2 && replicas[2] == 2, "replicas %d %d %d",
              replicas[0], replicas[1], replicas[2]);
    cr_assert_eq(points, 2 * 90, "every point in two local replicas");
    struct qs_collection_cluster cc;
    cr_assert_eq(qs_cluster_collection_get(q[2], "nope", &cc, &err), QS_ENOTFOUND);
    cr_assert_not_null(strstr(err.msg, "collection 'nope'"), "%s", err.msg);
    cr_assert_null(cc.local);
    for (int i = 1; i <= PEERS; i++)
        qs_qdrant_free(q[i]);
    stop_all();
}

/* GET /cluster of a single node is "disabled" (today's stand-in). */
Test(cluster, wire_single_node_is_disabled)
{
    static struct qs_test_standin s;
    cr_assert_eq(qs_test_standin_start(&s, NULL), 0);
    g_single = &s;
    struct qs_qdrant *q = NULL;
    struct qs_error err;
    struct qs_qdrant_opts o = {.url = s.url};
    cr_assert_eq(qs_qdrant_new(&o, &q, &err), 0, "%s", err.msg);
    struct qs_cluster_info ci;
    cr_assert_eq(qs_cluster_get(q, 6333, &ci, &err), 0, "%s", err.msg);
    cr_assert_eq(ci.enabled, 0);
    struct qs_config cfg = {.cluster = QS_CLUSTER_AUTO, .cluster_rest_port = 6333};
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    cr_assert_eq(qs_cluster_view_check(q, &cfg, &v), QS_CLUSTER_ROLE_SINGLE);
    cfg.cluster = QS_CLUSTER_OFF;
    cr_assert_eq(qs_cluster_view_check(q, &cfg, &v), QS_CLUSTER_ROLE_OFF);
    cr_assert_eq(v.checked_at, 0, "off never asks");
    qs_cluster_view_deinit(&v);
    qs_qdrant_free(q);
    stop_all();
}

/* ---- the leader rule at scheduled times -------------------------------------- */

/* Three sidecars, a schedule every minute on the test clock (first fire 10 s
 * after the start, the second 60 s later):
 *   1st fire: peer 1 leads: only sidecar 1 runs the backup (made by peer 1),
 *             sidecars 2 and 3 log the skip naming the leader and count it;
 *   between:  a manual backup on follower 3 runs, and skips the remote
 *             pruning (the older backup, prunable, stays); leadership moves
 *             to peer 2 and the gauge follows;
 *   2nd fire: only sidecar 2 runs, and prunes (it is the leader). */
Test(cluster, scheduled_backup_runs_on_the_leaders_sidecar_only)
{
    static struct world w;
    int64_t base = qs_timegm(2031, 3, 14, 3, 4, 50);
    world_open(&w, base);
    make_sharded(&w, "sched", 40, 6);
    const char *extra[] = {"QSNAP_SCHEDULE=* * * * *", "QSNAP_RETENTION=1s", "QSNAP_KEEP_MIN=1",
                           NULL};
    for (int i = 1; i <= PEERS; i++)
        sidecar_start(&w, i, extra);
    int64_t fire1 = qs_timegm(2031, 3, 14, 3, 5, 0), fire2 = fire1 + 60;
    cr_assert_lt(test_now(&w), fire1 - 1, "the sidecars took too long to start");
    wait_leader_gauge(&w, 1);
    for (int i = 1; i <= PEERS; i++) {
        check_readyz(&w, i, 1);
        cr_assert_eq(metric(&w, i, "qsnap_next_backup_timestamp_seconds"), (double)fire1);
    }

    /* 1st fire: sidecar 1 runs it */
    double end = qs_test_now_s() + 60;
    while (metric(&w, 1, "qsnap_backups_total{collection=\"sched\",result=\"success\"}") != 1.0) {
        cr_assert_lt(qs_test_now_s(), end, "no scheduled backup on the leader's sidecar");
        usleep(200000);
    }
    char skip2[200], skip3[200];
    snprintf(skip2, sizeof(skip2),
             "scheduled backup skipped: this sidecar's Qdrant peer %s is not the Raft leader (the "
             "leader is peer %s",
             w.id[2], w.id[1]);
    snprintf(skip3, sizeof(skip3),
             "scheduled backup skipped: this sidecar's Qdrant peer %s is not the Raft leader (the "
             "leader is peer %s",
             w.id[3], w.id[1]);
    while (log_count(&w, 2, skip2) + log_count(&w, 3, skip3) < 2) {
        cr_assert_lt(qs_test_now_s(), end, "the followers did not log their skip");
        usleep(100000);
    }
    cr_assert_eq(log_count(&w, 1, "(trigger: schedule)"), 1);
    cr_assert_eq(log_count(&w, 2, "(trigger: schedule)"), 0);
    cr_assert_eq(log_count(&w, 3, "(trigger: schedule)"), 0);
    cr_assert_eq(log_count(&w, 1, "scheduled backup skipped"), 0);
    cr_assert_eq(metric(&w, 2, SKIPPED("backup", "follower")), 1.0);
    cr_assert_eq(metric(&w, 3, SKIPPED("backup", "follower")), 1.0);
    cr_assert_eq(metric(&w, 1, SKIPPED("backup", "follower")), 0.0);
    cr_assert_eq(metric(&w, 2, SKIPPED("backup", "cluster_unknown")), 0.0);
    size_t n;
    char **b = backups_of(&w, "sched", &n);
    cr_assert_eq(n, 1, "one backup at the destination, not %zu", n);
    cr_assert(made_by(&w, "sched", b[0], 1), "%s was not made by the leader's peer", b[0]);
    char *first = strdup(b[0]);
    strv_free(b, n);
    struct qs_collection_cluster cc;
    placement_of(&w, "sched", &cc);
    struct qs_manifest m;
    newest_backup(&w, "sched", &m);
    check_cluster_backup(&w, &m, &cc, 1, 0);
    qs_manifest_deinit(&m);

    /* a follower's manual backup: it runs, and never prunes */
    char *job = post_backup(&w, 3);
    cJSON *j = wait_job(&w, 3, job);
    cr_assert_str_eq(qs_test_jstr(j, "state"), "succeeded");
    cJSON_Delete(j);
    free(job);
    char noprune[240];
    snprintf(noprune, sizeof(noprune),
             "remote pruning skipped: this sidecar's Qdrant peer %s is not the Raft leader",
             w.id[3]);
    cr_assert_eq(log_count(&w, 3, noprune), 1, "the follower does not say that it skips pruning");
    b = backups_of(&w, "sched", &n);
    cr_assert_eq(n, 2, "the follower pruned: %zu backups", n);
    int older = strcmp(b[0], first) == 0 ? 0 : 1;
    cr_assert_str_eq(b[older], first, "the older backup (prunable) is still there");
    cr_assert(made_by(&w, "sched", b[1 - older], 3), "%s was not made by peer 3", b[1 - older]);
    strv_free(b, n);
    cr_assert_eq(metric(&w, 3, "qsnap_prune_deleted_total{location=\"remote\",kind=\"backup\"}"),
                 0.0);

    /* leadership moves between the two scheduled times */
    set_leader(&w, 2);
    wait_leader_gauge(&w, 2);
    for (int i = 1; i <= PEERS; i++)
        check_readyz(&w, i, 2);
    cr_assert_lt(test_now(&w), fire2 - 1, "the first part took too long");

    /* 2nd fire: sidecar 2 runs it, and prunes */
    end = qs_test_now_s() + 90;
    while (metric(&w, 2, "qsnap_backups_total{collection=\"sched\",result=\"success\"}") != 1.0) {
        cr_assert_lt(qs_test_now_s(), end, "no scheduled backup on the new leader's sidecar");
        usleep(200000);
    }
    snprintf(skip3, sizeof(skip3),
             "scheduled backup skipped: this sidecar's Qdrant peer %s is not the Raft leader (the "
             "leader is peer %s",
             w.id[3], w.id[2]);
    char skip1[200];
    snprintf(skip1, sizeof(skip1),
             "scheduled backup skipped: this sidecar's Qdrant peer %s is not the Raft leader (the "
             "leader is peer %s",
             w.id[1], w.id[2]);
    while (log_count(&w, 1, skip1) + log_count(&w, 3, skip3) < 2) {
        cr_assert_lt(qs_test_now_s(), end, "the followers did not log their second skip");
        usleep(100000);
    }
    cr_assert_eq(log_count(&w, 1, "(trigger: schedule)"), 1, "sidecar 1 ran again");
    cr_assert_eq(log_count(&w, 2, "(trigger: schedule)"), 1);
    cr_assert_eq(log_count(&w, 3, "(trigger: schedule)"), 0);
    cr_assert_eq(metric(&w, 1, SKIPPED("backup", "follower")), 1.0);
    cr_assert_eq(metric(&w, 3, SKIPPED("backup", "follower")), 2.0);
    cr_assert_eq(metric(&w, 2, SKIPPED("backup", "follower")), 1.0);
    /* the leader's job pruned: only its new backup is left (KEEP_MIN=1) */
    end = qs_test_now_s() + 30;
    for (;;) {
        b = backups_of(&w, "sched", &n);
        int done = n == 1 && made_by(&w, "sched", b[0], 2);
        strv_free(b, n);
        if (done)
            break;
        cr_assert_lt(qs_test_now_s(), end, "the leader's sidecar did not prune (%zu backups)", n);
        usleep(200000);
    }
    newest_backup(&w, "sched", &m);
    check_cluster_backup(&w, &m, &cc, 2, 0);
    qs_manifest_deinit(&m);
    qs_collection_cluster_deinit(&cc);
    cr_assert_eq(objects_of(&w, "sched"), 7, "not 6 shards and a manifest");
    cr_assert_eq(metric(&w, 2, "qsnap_prune_deleted_total{location=\"remote\",kind=\"backup\"}"),
                 2.0);
    free(first);
    for (int i = 1; i <= PEERS; i++)
        sidecar_stop(&w, i);
    stop_all();
}

/* GET /cluster cannot be asked at the scheduled time (sidecar 3's peer is
 * gone): sidecar 3 skips with an error and counts it, its gauge turns 0;
 * sidecar 1 (the leader's) runs the backup; sidecar 2 skips as a follower. */
Test(cluster, cluster_unreachable_at_the_scheduled_time_skips_with_an_error)
{
    static struct world w;
    /* first fire 12 s after the start */
    int64_t base = qs_timegm(2031, 3, 14, 3, 4, 48);
    world_open(&w, base);
    make_collection(&w, "gone", 20);
    const char *extra[] = {"QSNAP_SCHEDULE=* * * * *", NULL};
    for (int i = 1; i <= PEERS; i++)
        sidecar_start(&w, i, extra);
    wait_leader_gauge(&w, 1);
    qs_test_cluster_kill(&w.c, 3);
    cr_assert_lt(test_now(&w), qs_timegm(2031, 3, 14, 3, 5, 0) - 1, "too slow to start");
    double end = qs_test_now_s() + 60;
    const char *err3 = "scheduled backup skipped: cannot ask Qdrant which peer is the Raft leader";
    while (log_count(&w, 3, err3) == 0) {
        cr_assert_lt(qs_test_now_s(), end, "sidecar 3 did not skip");
        usleep(200000);
    }
    char *log = sidecar_log(&w, 3);
    const char *line = strstr(log, err3);
    while (line > log && line[-1] != '\n')
        line--;
    cr_assert_eq(strncmp(strstr(line, "\"level\":"), "\"level\":\"error\"", 15), 0, "%.300s", line);
    free(log);
    cr_assert_eq(metric(&w, 3, SKIPPED("backup", "cluster_unknown")), 1.0);
    cr_assert_eq(metric(&w, 3, LEADER_GAUGE), 0.0);
    cr_assert_eq(log_count(&w, 3, "(trigger: schedule)"), 0);
    while (metric(&w, 1, "qsnap_backups_total{collection=\"gone\",result=\"success\"}") != 1.0) {
        cr_assert_lt(qs_test_now_s(), end, "the leader's sidecar did not run the backup");
        usleep(200000);
    }
    while (metric(&w, 2, SKIPPED("backup", "follower")) != 1.0) {
        if (qs_test_now_s() > end) {
            char *l2 = sidecar_log(&w, 2);
            cr_assert_fail("sidecar 2 did not skip as a follower; log:\n%s", l2);
        }
        usleep(200000);
    }
    cr_assert_eq(log_count(&w, 2, "(trigger: schedule)"), 0);
    cr_assert_eq(metric(&w, 1, LEADER_GAUGE), 1.0);
    cr_assert_eq(metric(&w, 2, LEADER_GAUGE), 0.0);
    /* /readyz of sidecar 3: 503 (its Qdrant is gone) with the view unknown */
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", w.d[3].url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 503);
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "cluster");
    cr_assert_str_eq(qs_test_jstr(cl, "status"), "unknown");
    cr_assert_str_eq(qs_test_jstr(cl, "role"), "unknown");
    cr_assert_not_null(qs_test_jstr(cl, "error"));
    cJSON_Delete(j);
    size_t n;
    char **b = backups_of(&w, "gone", &n);
    cr_assert_eq(n, 1);
    cr_assert(made_by(&w, "gone", b[0], 1));
    strv_free(b, n);
    for (int i = 1; i <= PEERS; i++)
        sidecar_stop(&w, i);
    stop_all();
}

/* No Raft leader at the scheduled time: nobody runs, each sidecar warns and
 * counts no_leader; the gauge is 0 everywhere. */
Test(cluster, no_leader_at_the_scheduled_time_nobody_runs)
{
    static struct world w;
    int64_t base = qs_timegm(2031, 3, 14, 3, 4, 50);
    world_open(&w, base);
    make_collection(&w, "orphan", 10);
    const char *extra[] = {"QSNAP_SCHEDULE=* * * * *", NULL};
    for (int i = 1; i <= PEERS; i++)
        sidecar_start(&w, i, extra);
    wait_leader_gauge(&w, 1);
    set_leader(&w, 0);
    wait_leader_gauge(&w, 0);
    double end = qs_test_now_s() + 60;
    for (int i = 1; i <= PEERS; i++) {
        while (metric(&w, i, SKIPPED("backup", "no_leader")) != 1.0) {
            cr_assert_lt(qs_test_now_s(), end, "sidecar %d did not skip", i);
            usleep(200000);
        }
        cr_assert_eq(log_count(&w, i,
                               "scheduled backup skipped: the Qdrant cluster has no Raft "
                               "leader now"),
                     1);
        cr_assert_eq(log_count(&w, i, "(trigger: schedule)"), 0);
    }
    size_t n;
    char **b = backups_of(&w, "orphan", &n);
    cr_assert_eq(n, 0);
    strv_free(b, n);
    set_leader(&w, 1);
    for (int i = 1; i <= PEERS; i++)
        sidecar_stop(&w, i);
    stop_all();
}

/* QSNAP_CLUSTER=off never asks GET /cluster: a sidecar of a follower peer
 * runs the scheduled backup as a single node would, and prunes; its view
 * says off and its gauge is 0. */
Test(cluster, off_never_asks_and_runs_as_a_single_node)
{
    static struct world w;
    int64_t base = qs_timegm(2031, 3, 14, 3, 4, 52);
    world_open(&w, base);
    make_collection(&w, "plain", 10);
    const char *extra[] = {"QSNAP_SCHEDULE=* * * * *", "QSNAP_CLUSTER=off", NULL};
    sidecar_start(&w, 2, extra);
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", w.d[2].url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "cluster");
    cr_assert_str_eq(qs_test_jstr(cl, "setting"), "off");
    cr_assert_str_eq(qs_test_jstr(cl, "status"), "off");
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(cl, "checked_at"), "off never asks");
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(cl, "peer_id"));
    cJSON_Delete(j);
    double end = qs_test_now_s() + 60;
    while (metric(&w, 2, "qsnap_backups_total{collection=\"plain\",result=\"success\"}") != 1.0) {
        cr_assert_lt(qs_test_now_s(), end, "no scheduled backup with QSNAP_CLUSTER=off");
        usleep(200000);
    }
    cr_assert_eq(metric(&w, 2, LEADER_GAUGE), 0.0);
    cr_assert_eq(log_count(&w, 2, "Raft"), 0, "off looked at the cluster");
    cr_assert_eq(log_count(&w, 2, "(trigger: schedule)"), 1);
    size_t n;
    char **b = backups_of(&w, "plain", &n);
    cr_assert_eq(n, 1);
    cr_assert(made_by(&w, "plain", b[0], 2));
    strv_free(b, n);
    sidecar_stop(&w, 2);
    stop_all();
}

/* check-config against a follower's peer: the cluster view with this peer,
 * the leader and every peer's REST URL. */
Test(cluster, check_config_shows_the_cluster_view)
{
    static struct world w;
    world_open(&w, 0);
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "check-config", NULL};
    char *out = NULL;
    int rc = qs_test_run(argv, sidecar_env(&w, 2, NULL), &out);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
    char want[400];
    snprintf(want, sizeof(want), "\n# cluster: enabled; this peer: %s; leader: %s; term ", w.id[2],
             w.id[1]);
    cr_assert_not_null(strstr(out, want), "'%s' missing from:\n%s", want, out);
    snprintf(want, sizeof(want),
             "; this sidecar is the leader's: no; runs scheduled backups, drills and pruning: no "
             "(this sidecar's Qdrant peer %s is not the Raft leader (the leader is peer %s, term ",
             w.id[2], w.id[1]);
    cr_assert_not_null(strstr(out, want), "'%s' missing from:\n%s", want, out);
    for (int k = 1; k <= PEERS; k++) {
        snprintf(want, sizeof(want), "\n# cluster peer %s%s: uri http://%s:6335/, REST %s\n",
                 w.id[k],
                 k == 1   ? " (leader)"
                 : k == 2 ? " (this peer)"
                          : "",
                 w.c.peer[k].host, w.c.peer[k].url);
        cr_assert_not_null(strstr(out, want), "'%s' missing from:\n%s", want, out);
    }
    free(out);
    stop_all();
}

/* ---- a single node with QSNAP_CLUSTER=auto ---------------------------------------- */

/* The keys at a destination, with each snapshot name replaced by S<n> in
 * order of first sight, one per line (owned). */
static char *layout(struct qs_storage *st)
{
    struct qs_storage_list l;
    struct qs_error err;
    cr_assert_eq(qs_storage_list(st, "", &l, &err), 0, "%s", err.msg);
    char names[8][300];
    size_t nn = 0;
    struct qs_buf b;
    qs_buf_init(&b);
    for (size_t i = 0; i < l.n; i++) {
        const char *key = l.items[i].key;
        const char *slash = strchr(key, '/');
        cr_assert_not_null(slash, "%s", key);
        char snap[300];
        snprintf(snap, sizeof(snap), "%s", slash + 1);
        char *dot = strstr(snap, ".snapshot");
        cr_assert_not_null(dot, "%s", key);
        const char *rest = slash + 1 + (dot - snap) + strlen(".snapshot");
        dot[strlen(".snapshot")] = '\0';
        size_t k = 0;
        while (k < nn && strcmp(names[k], snap) != 0)
            k++;
        if (k == nn) {
            cr_assert_lt(nn, 8);
            snprintf(names[nn++], sizeof(names[0]), "%s", snap);
        }
        qs_buf_printf(&b, "%.*s/S%zu%s\n", (int)(slash - key), key, k, rest);
    }
    qs_storage_list_deinit(&l);
    return b.data != NULL ? b.data : strdup("");
}

/* The same two `qsnap backup` runs (retention: keep 1) into two fresh
 * destinations against today's single-node stand-in, with QSNAP_CLUSTER=auto
 * and with QSNAP_CLUSTER=off: the same objects under the same keys, the same
 * pruning, and no word of cluster mode beyond the single-node view. A serve
 * with auto shows the single-node view in /readyz and exports no cluster
 * series beyond their zeros. */
Test(cluster, single_node_auto_is_todays_behaviour)
{
    static struct qs_test_standin s;
    cr_assert_eq(qs_test_standin_start(&s, NULL), 0);
    g_single = &s;
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/collections", s.url);
    cJSON_Delete(
        qs_test_http_json("POST", url, "{\"name\":\"solo\",\"points\":30,\"dim\":8}", 200));
    cJSON_Delete(qs_test_http_json("POST", url, "{\"name\":\"duo\",\"points\":10,\"dim\":8}", 200));
    const char *modes[] = {"auto", "off"};
    char *lay[2];
    for (int m = 0; m < 2; m++) {
        char *dir = qs_test_mkdtemp("cluster-single");
        char dest[600], qurl[128], cluster[64];
        snprintf(dest, sizeof(dest), "QSNAP_DESTINATION=file://%s", dir);
        snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s", s.url);
        snprintf(cluster, sizeof(cluster), "QSNAP_CLUSTER=%s", modes[m]);
        char *env[] = {dest,
                       qurl,
                       cluster,
                       "QSNAP_COMPRESSION=none",
                       "QSNAP_RETENTION=1s",
                       "QSNAP_KEEP_MIN=1",
                       "QSNAP_LOG_FORMAT=json",
                       NULL};
        char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "backup", NULL};
        for (int run = 0; run < 2; run++) {
            char *out = NULL;
            int rc = qs_test_run(argv, env, &out);
            cr_assert_eq(rc, 0, "%s, run %d: exit %d:\n%s", modes[m], run, rc, out);
            cr_assert_null(strstr(out, "remote pruning skipped"), "%s", out);
            cr_assert_null(strstr(out, "Raft"), "%s", out);
            free(out);
            sleep(2); /* names to the second; the first is then older than QSNAP_RETENTION */
        }
        struct qs_storage_opts o;
        qs_storage_opts_init(&o);
        o.kind = QS_DEST_FILE;
        o.path = dir;
        struct qs_storage *st = NULL;
        struct qs_error err;
        cr_assert_eq(qs_storage_new(&o, &st, &err), 0, "%s", err.msg);
        lay[m] = layout(st);
        qs_storage_free(st);
        qs_test_rmrf(dir);
        free(dir);
    }
    cr_assert_str_eq(lay[0], lay[1], "auto:\n%s\noff:\n%s", lay[0], lay[1]);
    /* pruned to one backup per collection, as KEEP_MIN=1 asks */
    cr_assert_str_eq(lay[0], "duo/S0\nduo/S0.json\nsolo/S1\nsolo/S1.json\n", "%s", lay[0]);
    free(lay[0]);
    free(lay[1]);

    /* serve: the single-node view, no cluster series */
    char *dir = qs_test_mkdtemp("cluster-single-serve");
    char dest[600], qurl[128];
    snprintf(dest, sizeof(dest), "QSNAP_DESTINATION=file://%s", dir);
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s", s.url);
    char *env[] = {dest,
                   qurl,
                   "QSNAP_CLUSTER=auto",
                   "QSNAP_TEST_PROBE_INTERVAL_MS=300",
                   "QSNAP_LOG_FORMAT=json",
                   NULL};
    static struct qs_test_daemon d;
    cr_assert_eq(qs_test_daemon_start(&d, env), 0);
    snprintf(url, sizeof(url), "%s/readyz", d.url);
    cr_assert_eq(qs_test_wait_http(url, 30), 0);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    cr_assert_str_eq(qs_test_jstr(j, "status"), "ready");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "cluster");
    cr_assert_str_eq(qs_test_jstr(cl, "status"), "disabled");
    cr_assert_str_eq(qs_test_jstr(cl, "role"), "single");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cl, "runs_scheduled")));
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(cl, "peers"));
    cJSON_Delete(j);
    char *mt = qs_test_daemon_metrics(&d);
    cr_assert_eq(qs_test_metric(mt, LEADER_GAUGE), 0.0, "%s", mt);
    static const char *const reasons[] = {"follower", "no_leader", "cluster_unknown"};
    for (size_t k = 0; k < 3; k++) {
        char series[128];
        snprintf(series, sizeof(series),
                 "qsnap_schedule_skipped_total{kind=\"backup\",reason=\"%s\"}", reasons[k]);
        cr_assert_eq(qs_test_metric(mt, series), 0.0, "%s", series);
    }
    free(mt);
    int st = qs_test_daemon_stop(&d, 30);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    qs_test_rmrf(dir);
    free(dir);
    stop_all();
}

/* ---- cluster backups ---------------------------------------------------------------- */

/* A generated collection of `shards` shards, replication factor 2. */
static void make_sharded(struct world *w, const char *name, int points, int shards)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"points\":%d,\"dim\":8,\"shard_number\":%d,"
             "\"replication_factor\":2}",
             name, points, shards);
    ctl(w, 1, "POST", "/__standin/collections", body);
    wait_active(w, name);
}

/* The placement of collection c as peer 1 sees it. */
static void placement_of(struct world *w, const char *c, struct qs_collection_cluster *cc)
{
    struct qs_qdrant_opts o = {.url = w->c.peer[1].url};
    struct qs_qdrant *q = NULL;
    struct qs_error err;
    cr_assert_eq(qs_qdrant_new(&o, &q, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_cluster_collection_get(q, c, cc, &err), 0, "%s", err.msg);
    qs_qdrant_free(q);
}

/* The peer index of a peer id. */
static int index_of(const struct world *w, uint64_t id)
{
    for (int i = 1; i <= PEERS; i++)
        if (id_of(w, i) == id)
            return i;
    cr_assert_fail("peer id %" PRIu64 " is not a peer of the cluster", id);
    return 0;
}

/* Shard streams peer i served so far (the stand-in's counter). */
static double shard_streams(const struct world *w, int i)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/state", w->c.peer[i].url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(j, "counters"), "shard_streams");
    cr_assert(cJSON_IsNumber(n));
    double v = n->valuedouble;
    cJSON_Delete(j);
    return v;
}

/* The newest backup of c (its manifest into m, owned by the caller). */
static void newest_backup(const struct world *w, const char *c, struct qs_manifest *m)
{
    struct qs_catalog cat;
    struct qs_error err;
    cr_assert_eq(qs_catalog_load(w->st, c, 0, &cat, &err), 0, "%s", err.msg);
    cr_assert_gt(cat.nbackups, 0, "no backup of %s", c);
    *m = cat.backups[0].m;
    memset(&cat.backups[0].m, 0, sizeof(cat.backups[0].m));
    qs_catalog_deinit(&cat);
}

/* Checks that backup m of a collection placed as cc (3 peers, RF 2) was made
 * by peer `by`'s sidecar: every shard once, each from a peer holding an
 * Active replica of it, the local one when `by` holds one, else the lowest
 * id; the topology recorded. */
static void check_cluster_backup(const struct world *w, const struct qs_manifest *m,
                                 const struct qs_collection_cluster *cc, int by, int down)
{
    cr_assert_eq(m->method, QS_METHOD_SHARDS);
    cr_assert(m->has_cluster, "no cluster object in the manifest");
    cr_assert_eq(m->cluster.peer_id, id_of(w, by));
    cr_assert_eq(m->cluster.npeers, PEERS);
    cr_assert_eq(m->cluster.replication_factor, 2);
    cr_assert_eq(m->cluster.shard_count, cc->shard_count);
    cr_assert_eq(m->nshards, cc->shard_count);
    for (size_t i = 0; i < m->nshards; i++) {
        const struct qs_manifest_shard *sh = &m->shards[i];
        cr_assert_eq(sh->id, i);
        struct qs_shard_replica r[PEERS];
        size_t n = qs_cluster_shard_replicas(cc, sh->id, r, PEERS);
        cr_assert_eq(n, 2, "shard %u has %zu replicas", sh->id, n);
        uint64_t want = 0;
        for (size_t k = 0; k < n && want == 0; k++)
            if (r[k].peer_id == id_of(w, by))
                want = r[k].peer_id;
        for (size_t k = 0; k < n; k++)
            if (want == 0 || (want != id_of(w, by) && r[k].peer_id < want))
                if (down == 0 || r[k].peer_id != id_of(w, down))
                    want = r[k].peer_id;
        if (want != id_of(w, by)) {
            /* ascending ids among the others, the dead one skipped */
            want = 0;
            for (size_t k = 0; k < n; k++) {
                uint64_t p = r[k].peer_id;
                if ((down != 0 && p == id_of(w, down)) || p == id_of(w, by))
                    continue;
                if (want == 0 || p < want)
                    want = p;
            }
        }
        cr_assert_eq(sh->peer_id, want, "shard %u streamed from peer %d, not %d", sh->id,
                     index_of(w, sh->peer_id), index_of(w, want));
        struct qs_storage_stat st;
        struct qs_error err;
        cr_assert_eq(qs_storage_head(w->st, sh->object, &st, &err), 0, "%s", err.msg);
        cr_assert_eq(st.size, sh->stored_size);
        qs_storage_stat_deinit(&st);
    }
}

/* The objects under prefix c/ at the destination. */
static size_t objects_of(const struct world *w, const char *c)
{
    struct qs_storage_list l;
    struct qs_error err;
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "%s/", c);
    qs_storage_list_init(&l);
    cr_assert_eq(qs_storage_list(w->st, prefix, &l, &err), 0, "%s", err.msg);
    size_t n = l.n;
    qs_storage_list_deinit(&l);
    return n;
}

static const char *const SHARDED[] = {"one", "three", "six"};
static const int NSHARDS[] = {1, 3, 6};

/* A manual backup on a follower's sidecar and one on the leader's: whatever
 * QSNAP_SNAPSHOT_METHOD says, every shard of every collection (1, 3 and 6
 * shards, replication factor 2) is stored once, streamed from a peer holding
 * an Active replica (the sidecar's own peer when it holds one, else the
 * lowest peer id); the manifest records the topology; exactly one shard
 * stream per shard across the peers, no collection snapshot. */
Test(cluster, backup_stores_every_shard_once_from_an_active_replica)
{
    static struct world w;
    world_open(&w, 0);
    for (int k = 0; k < 3; k++)
        make_sharded(&w, SHARDED[k], 60, NSHARDS[k]);
    const char *extra[] = {"QSNAP_SNAPSHOT_METHOD=collection", NULL};
    for (int by = 2; by >= 1; by--) {
        sidecar_start(&w, by, extra);
        double before = 0;
        for (int i = 1; i <= PEERS; i++)
            before += shard_streams(&w, i);
        char *job = post_backup(&w, by);
        cJSON *j = wait_job(&w, by, job);
        char *txt = cJSON_Print(j);
        cr_assert_str_eq(qs_test_jstr(j, "state"), "succeeded", "%s", txt);
        free(txt);
        cJSON_Delete(j);
        free(job);
        double after = 0;
        for (int i = 1; i <= PEERS; i++)
            after += shard_streams(&w, i);
        cr_assert_eq(after - before, 10.0, "%g shard streams for 10 shards", after - before);
        for (int k = 0; k < 3; k++) {
            struct qs_collection_cluster cc;
            placement_of(&w, SHARDED[k], &cc);
            struct qs_manifest m;
            newest_backup(&w, SHARDED[k], &m);
            check_cluster_backup(&w, &m, &cc, by, 0);
            qs_manifest_deinit(&m);
            qs_collection_cluster_deinit(&cc);
        }
        cr_assert_eq(log_count(&w, by, "snapshot created"), 0, "a collection snapshot was made");
        sidecar_stop(&w, by);
    }
    for (int k = 0; k < 3; k++) {
        size_t n;
        char **b = backups_of(&w, SHARDED[k], &n);
        cr_assert_eq(n, 2);
        strv_free(b, n);
        /* two runs: shards + manifest each */
        cr_assert_eq(objects_of(&w, SHARDED[k]), (size_t)(2 * (NSHARDS[k] + 1)));
    }
    stop_all();
}

/* A peer down during a backup: shards whose first choice was on it come from
 * the other Active replica. A shard with no Active replica fails its
 * collection, naming the shard and the states, and leaves nothing of it
 * behind; the other collections are backed up. */
Test(cluster, peer_down_uses_another_replica_or_fails_the_collection_clearly)
{
    static struct world w;
    world_open(&w, 0);
    make_sharded(&w, "six", 60, 6);
    make_sharded(&w, "three", 30, 3);
    sidecar_start(&w, 1, NULL);
    /* The peer (not 1) that is the first choice of some shard not on peer 1. */
    struct qs_collection_cluster cc;
    placement_of(&w, "six", &cc);
    int down = 0;
    for (uint32_t s = 0; s < cc.shard_count && down == 0; s++) {
        struct qs_shard_replica r[PEERS];
        size_t n = qs_cluster_shard_replicas(&cc, s, r, PEERS);
        int on1 = 0;
        for (size_t k = 0; k < n; k++)
            on1 |= r[k].peer_id == id_of(&w, 1);
        if (!on1)
            down = index_of(&w, r[0].peer_id < r[1].peer_id ? r[0].peer_id : r[1].peer_id);
    }
    cr_assert_neq(down, 0, "every shard has a replica on peer 1");
    qs_test_cluster_kill(&w.c, down);
    /* "three": shard 0's replicas both Dead (pinned) */
    char body[256];
    struct qs_collection_cluster c3;
    placement_of(&w, "three", &c3);
    struct qs_shard_replica r3[PEERS];
    size_t n3 = qs_cluster_shard_replicas(&c3, 0, r3, PEERS);
    for (size_t k = 0; k < n3; k++) {
        snprintf(body, sizeof(body),
                 "{\"collection\":\"three\",\"shard\":0,\"peer_id\":\"%" PRIu64
                 "\",\"state\":\"Dead\"}",
                 r3[k].peer_id);
        ctl(&w, 1, "POST", "/__standin/cluster/replica", body);
    }
    qs_collection_cluster_deinit(&c3);

    char *job = post_backup(&w, 1);
    cJSON *j = wait_job(&w, 1, job);
    char *txt = cJSON_Print(j);
    cr_assert_str_eq(qs_test_jstr(j, "state"), "failed", "%s", txt);
    cr_assert_not_null(strstr(txt, "shard 0 has no Active replica (peer "), "%s", txt);
    cr_assert_not_null(strstr(txt, " Dead, peer "), "%s", txt);
    free(txt);
    cJSON_Delete(j);
    free(job);
    cr_assert_eq(objects_of(&w, "three"), 0, "the failed collection left objects");
    struct qs_manifest m;
    newest_backup(&w, "six", &m);
    check_cluster_backup(&w, &m, &cc, 1, down);
    qs_manifest_deinit(&m);
    qs_collection_cluster_deinit(&cc);
    char line[128];
    snprintf(line, sizeof(line), "could not be streamed from peer %s; trying the next Active",
             w.id[down]);
    cr_assert_geq(log_count(&w, 1, line), 1, "no word of the failover");
    sidecar_stop(&w, 1);
    stop_all();
}

/* A replica marked Dead while its shard is being streamed (Qdrant streams a
 * local replica whatever its state) is not kept: the object is removed, the
 * shard is streamed again from the other Active replica, and the manifest
 * names that peer. */
Test(cluster, replica_marked_dead_during_its_stream_is_not_kept)
{
    static struct world w;
    world_open(&w, 0);
    make_sharded(&w, "one", 40, 1);
    struct qs_collection_cluster cc;
    placement_of(&w, "one", &cc);
    struct qs_shard_replica r[PEERS];
    cr_assert_eq(qs_cluster_shard_replicas(&cc, 0, r, PEERS), 2);
    qs_collection_cluster_deinit(&cc);
    /* the sidecar of a peer holding a replica: its own is the first choice */
    int a = index_of(&w, r[0].peer_id), b = index_of(&w, r[1].peer_id);
    sidecar_start(&w, a, NULL);
    ctl(&w, a, "POST", "/__standin/faults",
        "{\"pause_shard_stream_after\":2048,\"pause_shard_stream_s\":3}");
    char *job = post_backup(&w, a);
    double end = qs_test_now_s() + 30;
    while (shard_streams(&w, a) < 1.0) {
        cr_assert_lt(qs_test_now_s(), end, "peer %d never streamed the shard", a);
        usleep(20000);
    }
    char body[256];
    snprintf(body, sizeof(body),
             "{\"collection\":\"one\",\"shard\":0,\"peer_id\":\"%" PRIu64 "\",\"state\":\"Dead\"}",
             id_of(&w, a));
    ctl(&w, a, "POST", "/__standin/cluster/replica", body);
    cJSON *j = wait_job(&w, a, job);
    char *txt = cJSON_Print(j);
    cr_assert_str_eq(qs_test_jstr(j, "state"), "succeeded", "%s", txt);
    free(txt);
    cJSON_Delete(j);
    free(job);
    struct qs_manifest m;
    newest_backup(&w, "one", &m);
    cr_assert_eq(m.nshards, 1);
    cr_assert_eq(m.shards[0].peer_id, id_of(&w, b), "shard 0 kept from peer %" PRIu64,
                 m.shards[0].peer_id);
    qs_manifest_deinit(&m);
    cr_assert_eq(objects_of(&w, "one"), 2, "one shard object and the manifest");
    cr_assert_geq(shard_streams(&w, b), 1.0);
    char line[160];
    snprintf(line, sizeof(line), "the replica of shard 0 on peer %s is no longer Active", w.id[a]);
    cr_assert_geq(log_count(&w, a, line), 1, "no word of the replica that was not kept");
    sidecar_stop(&w, a);
    stop_all();
}

/* ---- cluster restores ---------------------------------------------------------------- */

/* Every point of collection c on the Qdrant at base (ids, vectors, payloads
 * by ascending id), as JSON text (owned). */
static char *all_points(const char *base, const char *c)
{
    cJSON *out = qs_test_all_points(base, c);
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    return text;
}

/* `qsnap VERB ARGS...` against the Qdrant at qurl (a cluster's peer when
 * rest_port > 0) and w's destination; the exit code, its output into *out
 * (owned). */
static const char *g_active_wait = "QSNAP_TEST_ACTIVE_WAIT_MS=60000";

/* cli() with one more variable (borrowed; NULL for none). */
static int cli_with(struct world *w, const char *qurl, int rest_port, const char *extra,
                    const char *const *args, char **out)
{
    char q[160], port[64];
    snprintf(q, sizeof(q), "QSNAP_QDRANT_URL=%s", qurl);
    snprintf(port, sizeof(port), "QSNAP_CLUSTER_REST_PORT=%d", rest_port > 0 ? rest_port : 6333);
    char *env[] = {w->dest,
                   q,
                   port,
                   "QSNAP_CLUSTER=auto",
                   "QSNAP_COMPRESSION=none",
                   "QSNAP_LOG_FORMAT=json",
                   (char *)g_active_wait,
                   (char *)extra,
                   NULL};
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)qs_test_env("QSNAP_TEST_BINARY");
    for (size_t i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return qs_test_run(argv, env, out);
}

static int cli(struct world *w, const char *qurl, int rest_port, const char *const *args,
               char **out)
{
    return cli_with(w, qurl, rest_port, NULL, args, out);
}

/* Every shard of c on cluster k has replicas replicas, all Active. */
static void check_placement(const struct qs_test_cluster *k, const char *c, uint32_t shards,
                            size_t replicas)
{
    struct qs_qdrant_opts o = {.url = k->peer[1].url};
    struct qs_qdrant *q = NULL;
    struct qs_error err;
    cr_assert_eq(qs_qdrant_new(&o, &q, &err), 0, "%s", err.msg);
    struct qs_collection_cluster cc;
    cr_assert_eq(qs_cluster_collection_get(q, c, &cc, &err), 0, "%s", err.msg);
    cr_assert_eq(cc.shard_count, shards);
    char why[512];
    cr_assert(qs_cluster_all_active(&cc, shards, why, sizeof(why)), "%s: %s", c, why);
    for (uint32_t s = 0; s < shards; s++) {
        struct qs_shard_replica r[QS_TEST_CLUSTER_MAX];
        cr_assert_eq(qs_cluster_shard_replicas(&cc, s, r, QS_TEST_CLUSTER_MAX), replicas,
                     "shard %u", s);
    }
    qs_collection_cluster_deinit(&cc);
    qs_qdrant_free(q);
}

/* A 3-peer backup (6 shards, replication factor 2) restored into a 2-peer
 * cluster and into a single node holds the same points; each shard upload
 * lands on a peer holding a replica of it and every replica turns Active
 * again; the alias is re-created. A single-node shards backup restores into
 * the cluster; a collection snapshot of several shards is refused there. */
Test(cluster, restore_into_another_cluster_size_and_a_single_node)
{
    static struct world w;
    world_open(&w, 0);
    make_sharded(&w, "six", 90, 6);
    char url[256];
    snprintf(url, sizeof(url), "%s/collections/aliases", w.c.peer[1].url);
    cJSON_Delete(qs_test_http_json("POST", url,
                                   "{\"actions\":[{\"create_alias\":{\"collection_name\":\"six\","
                                   "\"alias_name\":\"six-prod\"}}]}",
                                   200));
    char *want = all_points(w.c.peer[1].url, "six");
    cr_assert_gt(strlen(want), 1000, "%s", want);
    char *out = NULL;
    const char *backup[] = {"backup", "-c", "six", NULL};
    int rc = cli(&w, w.c.peer[2].url, w.c.port, backup, &out);
    cr_assert_eq(rc, 0, "backup: exit %d:\n%s", rc, out);
    free(out);

    /* into 2 peers */
    static struct qs_test_cluster two;
    cr_assert_eq(qs_test_cluster_start(&two, 2, NULL), 0);
    g_other = &two;
    const char *restore[] = {"restore", "-c", "six", NULL};
    rc = cli(&w, two.peer[1].url, two.port, restore, &out);
    cr_assert_eq(rc, 0, "restore into 2 peers: exit %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, "uploaded to peer"), "%s", out);
    free(out);
    check_placement(&two, "six", 6, 2);
    for (int i = 1; i <= 2; i++) {
        char *got = all_points(two.peer[i].url, "six");
        cr_assert_str_eq(got, want, "peer %d of the 2-peer cluster:\n%.300s\nwant:\n%.300s", i, got,
                         want);
        free(got);
    }
    snprintf(url, sizeof(url), "%s/collections/six-prod", two.peer[2].url);
    cJSON_Delete(qs_test_http_json("GET", url, NULL, 200));
    /* again into the same, now populated, collection: the other replicas
     * could still serve the data they hold when the restore looked done, so
     * it is refused and nothing changes */
    rc = cli(&w, two.peer[1].url, two.port, restore, &out);
    cr_assert_neq(rc, 0, "a restore over a populated collection in a cluster ran:\n%s", out);
    cr_assert_not_null(strstr(out, "collection 'six' exists and holds points"), "%s", out);
    cr_assert_null(strstr(out, "uploaded to peer"), "%s", out);
    free(out);
    for (int i = 1; i <= 2; i++) {
        char *same = all_points(two.peer[i].url, "six");
        cr_assert_str_eq(same, want, "peer %d changed", i);
        free(same);
    }

    /* into a single node */
    static struct qs_test_standin single;
    cr_assert_eq(qs_test_standin_start(&single, NULL), 0);
    g_single = &single;
    rc = cli(&w, single.url, 0, restore, &out);
    cr_assert_eq(rc, 0, "restore into a single node: exit %d:\n%s", rc, out);
    free(out);
    char *got = all_points(single.url, "six");
    cr_assert_str_eq(got, want, "the single node");
    free(got);
    snprintf(url, sizeof(url), "%s/collections/six", single.url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "result"),
                                             "config"),
            "params"),
        "shard_number");
    cr_assert(cJSON_IsNumber(sn) && sn->valuedouble == 6.0);
    cJSON_Delete(j);

    /* a single-node shards backup into the 2-peer cluster */
    snprintf(url, sizeof(url), "%s/__standin/collections", single.url);
    cJSON_Delete(qs_test_http_json(
        "POST", url, "{\"name\":\"solo\",\"points\":40,\"dim\":8,\"shard_number\":3}", 200));
    char *solo = all_points(single.url, "solo");
    {
        char q[160];
        snprintf(q, sizeof(q), "QSNAP_QDRANT_URL=%s", single.url);
        char *env[] = {w.dest, q, "QSNAP_SNAPSHOT_METHOD=shards", "QSNAP_COMPRESSION=none", NULL};
        char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "backup", "-c", "solo", NULL};
        rc = qs_test_run(argv, env, &out);
        cr_assert_eq(rc, 0, "single-node shards backup: exit %d:\n%s", rc, out);
        free(out);
    }
    const char *rsolo[] = {"restore", "-c", "solo", NULL};
    rc = cli(&w, two.peer[2].url, two.port, rsolo, &out);
    cr_assert_eq(rc, 0, "single-node shards backup into 2 peers: exit %d:\n%s", rc, out);
    free(out);
    check_placement(&two, "solo", 3, 1);
    got = all_points(two.peer[1].url, "solo");
    cr_assert_str_eq(got, solo);
    free(got);

    /* a collection snapshot of 3 shards is refused by the cluster, untouched */
    {
        char q[160];
        snprintf(q, sizeof(q), "QSNAP_QDRANT_URL=%s", single.url);
        char *env[] = {w.dest, q, "QSNAP_SNAPSHOT_METHOD=collection", "QSNAP_COMPRESSION=none",
                       NULL};
        char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "backup", "-c", "solo", NULL};
        sleep(1); /* run names to the second */
        rc = qs_test_run(argv, env, &out);
        cr_assert_eq(rc, 0, "single-node collection backup: exit %d:\n%s", rc, out);
        free(out);
    }
    const char *rcoll[] = {"restore", "-c", "solo", "--to", "solo-coll", NULL};
    rc = cli(&w, two.peer[1].url, two.port, rcoll, &out);
    cr_assert_neq(rc, 0, "a collection snapshot of 3 shards was restored into a cluster:\n%s", out);
    cr_assert_not_null(strstr(out, "refusing to restore"), "%s", out);
    cr_assert_not_null(strstr(out, "collection snapshot of 3 shards"), "%s", out);
    free(out);
    snprintf(url, sizeof(url), "%s/collections/solo-coll", two.peer[1].url);
    cJSON_Delete(qs_test_http_json("GET", url, NULL, 404));

    /* a replica that never turns Active: the bounded wait fails the restore,
     * naming the shard and the states */
    snprintf(url, sizeof(url), "%s/__standin/collections", two.peer[1].url);
    cJSON_Delete(qs_test_http_json("POST", url,
                                   "{\"name\":\"stuck\",\"points\":0,\"dim\":8,\"shard_number\":6,"
                                   "\"replication_factor\":2}",
                                   200));
    snprintf(url, sizeof(url), "%s/__standin/cluster/replica", two.peer[1].url);
    cJSON_Delete(qs_test_http_json(
        "POST", url, "{\"collection\":\"stuck\",\"shard\":2,\"peer\":2,\"state\":\"Dead\"}", 200));
    g_active_wait = "QSNAP_TEST_ACTIVE_WAIT_MS=2000";
    const char *rstuck[] = {"restore", "-c", "six", "--to", "stuck", NULL};
    rc = cli(&w, two.peer[1].url, two.port, rstuck, &out);
    g_active_wait = "QSNAP_TEST_ACTIVE_WAIT_MS=60000";
    cr_assert_neq(rc, 0, "a restore with a Dead replica succeeded:\n%s", out);
    cr_assert_not_null(strstr(out, "did not all become Active after its creation within 2 s: "
                                   "shard 2 ("),
                       "%s", out);
    cr_assert_not_null(strstr(out, " Dead"), "%s", out);
    free(out);
    free(solo);
    free(want);
    stop_all();
}

/* ---- when GET /cluster does not answer ---------------------------------------------- */

/* A counter of peer i's stand-in. */
static double counter(const struct world *w, int i, const char *name)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/state", w->c.peer[i].url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    const cJSON *n =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "counters"), name);
    cr_assert(cJSON_IsNumber(n), "no counter %s", name);
    double v = n->valuedouble;
    cJSON_Delete(j);
    return v;
}

/* QSNAP_MODE=full in a cluster: a full snapshot would hold one peer's
 * shards only. The backup fails before any snapshot, saying why and what to
 * set instead, and check-config says so and exits 1. */
Test(cluster, full_mode_is_refused_in_a_cluster)
{
    static struct world w;
    world_open(&w, 0);
    make_sharded(&w, "fm", 30, 3);
    char *out = NULL;
    const char *backup[] = {"backup", NULL};
    int rc = cli_with(&w, w.c.peer[1].url, w.c.port, "QSNAP_MODE=full", backup, &out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, "QSNAP_MODE=full snapshots the storage of one peer"), "%s", out);
    cr_assert_not_null(strstr(out, "use QSNAP_MODE=collections"), "%s", out);
    free(out);
    for (int i = 1; i <= PEERS; i++) {
        cr_assert_eq(counter(&w, i, "full_creates"), 0.0, "peer %d took a full snapshot", i);
        cr_assert_eq(counter(&w, i, "creates"), 0.0, "peer %d took a snapshot", i);
    }
    cr_assert_eq(objects_of(&w, ":full"), 0, "objects left behind");

    const char *check[] = {"check-config", NULL};
    rc = cli_with(&w, w.c.peer[2].url, w.c.port, "QSNAP_MODE=full", check, &out);
    cr_assert_eq(rc, 1, "check-config: exit %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, "\n# cluster: backups will fail: QSNAP_MODE=full snapshots"),
                       "%s", out);
    free(out);
    rc = cli(&w, w.c.peer[2].url, w.c.port, check, &out);
    cr_assert_eq(rc, 0, "check-config in collections mode: exit %d:\n%s", rc, out);
    cr_assert_null(strstr(out, "backups will fail"), "%s", out);
    free(out);
    stop_all();
}

/* Qdrant answered a moment ago but GET /cluster does not: a manual backup
 * or restore fails, saying why and how to stop the question, instead of
 * guessing "single node" (a collection snapshot of the local shards only,
 * or every shard uploaded to one peer without waiting for the replicas). */
Test(cluster, unanswered_get_cluster_fails_manual_work_instead_of_guessing)
{
    static struct world w;
    world_open(&w, 0);
    make_sharded(&w, "guess", 30, 3);
    ctl(&w, 1, "POST", "/__standin/faults", "{\"drop_cluster\":true}");
    char *out = NULL;
    const char *backup[] = {"backup", "-c", "guess", NULL};
    int rc = cli(&w, w.c.peer[1].url, w.c.port, backup, &out);
    cr_assert_neq(rc, 0, "a backup ran without knowing the cluster:\n%s", out);
    cr_assert_not_null(strstr(out, "cannot tell whether Qdrant is in cluster mode"), "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_CLUSTER=off"), "%s", out);
    free(out);
    cr_assert_eq(objects_of(&w, "guess"), 0, "objects left behind");
    cr_assert_eq(counter(&w, 1, "creates"), 0.0, "a collection snapshot was taken");
    cr_assert_eq(counter(&w, 1, "shard_streams"), 0.0);

    ctl(&w, 1, "POST", "/__standin/faults", "{\"drop_cluster\":false}");
    rc = cli(&w, w.c.peer[1].url, w.c.port, backup, &out);
    cr_assert_eq(rc, 0, "backup: exit %d:\n%s", rc, out);
    free(out);
    ctl(&w, 1, "POST", "/__standin/faults", "{\"drop_cluster\":true}");
    const char *restore[] = {"restore", "-c", "guess", "--to", "guess-copy", NULL};
    rc = cli(&w, w.c.peer[1].url, w.c.port, restore, &out);
    cr_assert_neq(rc, 0, "a restore ran without knowing the cluster:\n%s", out);
    cr_assert_not_null(strstr(out, "cannot tell whether Qdrant is in cluster mode"), "%s", out);
    free(out);
    cr_assert_eq(counter(&w, 1, "shard_uploads"), 0.0, "a shard was uploaded");
    char url[256];
    snprintf(url, sizeof(url), "%s/collections/guess-copy", w.c.peer[1].url);
    cJSON_Delete(qs_test_http_json("GET", url, NULL, 404));
    ctl(&w, 1, "POST", "/__standin/faults", "{\"drop_cluster\":false}");
    stop_all();
}

/* A peer that is down but holds no replica of the restored collection does
 * not hold the restore up: only the peers the placement names are asked
 * whether their replicas were re-synchronised. */
Test(cluster, restore_is_not_held_up_by_a_down_peer_without_a_replica)
{
    static struct world w;
    world_open(&w, 0);
    ctl(&w, 1, "POST", "/__standin/collections",
        "{\"name\":\"lone\",\"points\":20,\"dim\":8,\"shard_number\":1,\"replication_factor\":1}");
    wait_active(&w, "lone");
    char *out = NULL;
    const char *backup[] = {"backup", "-c", "lone", NULL};
    int rc = cli(&w, w.c.peer[1].url, w.c.port, backup, &out);
    cr_assert_eq(rc, 0, "backup: exit %d:\n%s", rc, out);
    free(out);
    qs_test_cluster_kill(&w.c, 3);
    g_active_wait = "QSNAP_TEST_ACTIVE_WAIT_MS=5000";
    const char *restore[] = {"restore", "-c", "lone", "--to", "lone-copy", NULL};
    rc = cli(&w, w.c.peer[1].url, w.c.port, restore, &out);
    g_active_wait = "QSNAP_TEST_ACTIVE_WAIT_MS=60000";
    cr_assert_eq(rc, 0, "restore with peer 3 down: exit %d:\n%s", rc, out);
    free(out);
    struct qs_collection_cluster cc;
    placement_of(&w, "lone-copy", &cc);
    struct qs_shard_replica r[PEERS];
    cr_assert_eq(qs_cluster_shard_replicas(&cc, 0, r, PEERS), 1);
    cr_assert_neq(r[0].peer_id, id_of(&w, 3), "the replica was placed on the peer that is down");
    qs_collection_cluster_deinit(&cc);
    stop_all();
}
