/* The cluster module's pure half: GET /cluster and GET /collections/{c}/cluster
 * answers (peer ids exact above 2^53), peers' REST addresses, the leader rule's
 * roles, the view's reason and JSON. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "qsnap/cluster.h"
#include "qsnap/error.h"

/* Ids a double cannot hold: 2^64 - 59 (the largest u64 prime) and 2^53 + 1. */
#define BIG_ID "18446744073709551557"
#define BIG_ID_U 18446744073709551557ULL
#define ODD_ID "9007199254740993"
#define ODD_ID_U 9007199254740993ULL
#define OTHER_ID "9007199254740992"
#define OTHER_ID_U 9007199254740992ULL

/* A GET /cluster answer as Qdrant 1.13 sends it, with this peer and leader. */
static char *cluster_answer(const char *peer_id, const char *leader, const char *role)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"result\":{\"status\":\"enabled\",\"peer_id\":%s,\"peers\":{"
             "\"" BIG_ID "\":{\"uri\":\"http://qdrant-0.qdrant-headless.cortex.svc:6335/\"},"
             "\"" ODD_ID "\":{\"uri\":\"http://[fd00::5]:6335/\"},"
             "\"" OTHER_ID "\":{\"uri\":\"http://10.42.0.7:6335/\"}},"
             "\"raft_info\":{\"term\":9007199254740995,\"commit\":120,\"pending_operations\":0,"
             "\"leader\":%s,\"role\":\"%s\",\"is_voter\":true},"
             "\"consensus_thread_status\":{\"consensus_thread_status\":\"working\","
             "\"last_update\":\"2025-01-28T10:15:02.123Z\"},\"message_send_failures\":{}},"
             "\"status\":\"ok\",\"time\":1.5e-05}",
             peer_id, leader, role);
    return buf;
}

static int parse(const char *body, const char *url, struct qs_cluster_info *ci,
                 struct qs_error *err)
{
    return qs_cluster_info_parse(body, strlen(body), url, 6333, ci, err);
}

Test(cluster_parse, peer_ids_above_2_53_are_exact)
{
    struct qs_cluster_info ci;
    struct qs_error err;
    const char *body = cluster_answer(BIG_ID, ODD_ID, "Follower");
    cr_assert_eq(parse(body, "http://localhost:6333", &ci, &err), 0, "%s", err.msg);
    /* What a double would have made of them: the test would fail on that path. */
    cr_assert_neq((uint64_t)(double)ODD_ID_U, ODD_ID_U);
    cr_assert_eq((double)BIG_ID_U, 18446744073709551616.0);
    cr_assert_eq(ci.enabled, 1);
    cr_assert_eq(ci.peer_id, BIG_ID_U, "peer_id %" PRIu64, ci.peer_id);
    cr_assert_eq(ci.leader, ODD_ID_U, "leader %" PRIu64, ci.leader);
    cr_assert_eq(ci.term, 9007199254740995ULL);
    cr_assert_eq(ci.commit, 120);
    cr_assert_str_eq(ci.role, "Follower");
    cr_assert_eq(ci.is_voter, 1);
    cr_assert_eq(ci.npeers, 3);
    /* ascending ids */
    cr_assert_eq(ci.peers[0].id, OTHER_ID_U);
    cr_assert_eq(ci.peers[1].id, ODD_ID_U);
    cr_assert_eq(ci.peers[2].id, BIG_ID_U);
    cr_assert_str_eq(ci.peers[0].uri, "http://10.42.0.7:6335/");
    cr_assert_str_eq(ci.peers[0].rest_url, "http://10.42.0.7:6333");
    cr_assert_str_eq(ci.peers[1].rest_url, "http://[fd00::5]:6333");
    cr_assert_str_eq(ci.peers[2].rest_url, "http://qdrant-0.qdrant-headless.cortex.svc:6333");
    cr_assert_eq(qs_cluster_info_peer(&ci, ODD_ID_U), &ci.peers[1]);
    cr_assert_null(qs_cluster_info_peer(&ci, ODD_ID_U + 1));
    qs_cluster_info_deinit(&ci);
    cr_assert_eq(ci.npeers, 0);
    qs_cluster_info_deinit(&ci); /* twice is fine */
}

Test(cluster_parse, scheme_and_port_come_from_the_config)
{
    struct qs_cluster_info ci;
    struct qs_error err;
    const char *body = cluster_answer(ODD_ID, ODD_ID, "Leader");
    cr_assert_eq(qs_cluster_info_parse(body, strlen(body), "HTTPS://qdrant.local:443/prefix", 16333,
                                       &ci, &err),
                 0, "%s", err.msg);
    cr_assert_str_eq(ci.peers[1].rest_url, "https://[fd00::5]:16333");
    cr_assert_str_eq(ci.peers[2].rest_url, "https://qdrant-0.qdrant-headless.cortex.svc:16333");
    qs_cluster_info_deinit(&ci);
}

Test(cluster_parse, disabled_is_a_single_node)
{
    struct qs_cluster_info ci;
    struct qs_error err;
    cr_assert_eq(parse("{\"result\":{\"status\":\"disabled\"},\"status\":\"ok\",\"time\":0.0}",
                       "http://localhost:6333", &ci, &err),
                 0, "%s", err.msg);
    cr_assert_eq(ci.enabled, 0);
    cr_assert_eq(ci.npeers, 0);
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    qs_cluster_view_set(&v, QS_CLUSTER_AUTO, 100, &ci, NULL);
    cr_assert_eq(v.role, QS_CLUSTER_ROLE_SINGLE);
    cr_assert(qs_cluster_role_runs_scheduled(v.role));
    qs_cluster_view_deinit(&v);
}

/* The role of one answer. */
static enum qs_cluster_role role_of(const char *body)
{
    struct qs_cluster_info ci;
    struct qs_error err;
    cr_assert_eq(parse(body, "http://localhost:6333", &ci, &err), 0, "%s", err.msg);
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    qs_cluster_view_set(&v, QS_CLUSTER_AUTO, 100, &ci, NULL);
    cr_assert_eq(ci.npeers, 0, "the answer was moved into the view");
    enum qs_cluster_role r = v.role;
    qs_cluster_view_deinit(&v);
    return r;
}

Test(cluster_parse, roles)
{
    cr_assert_eq(role_of(cluster_answer(BIG_ID, BIG_ID, "Leader")), QS_CLUSTER_ROLE_LEADER);
    cr_assert_eq(role_of(cluster_answer(BIG_ID, ODD_ID, "Follower")), QS_CLUSTER_ROLE_FOLLOWER);
    /* ids that a double confuses are different peers */
    cr_assert_eq(role_of(cluster_answer(OTHER_ID, ODD_ID, "Follower")), QS_CLUSTER_ROLE_FOLLOWER);
    cr_assert_eq(role_of(cluster_answer(ODD_ID, OTHER_ID, "Follower")), QS_CLUSTER_ROLE_FOLLOWER);
    cr_assert_eq(role_of(cluster_answer(BIG_ID, "0", "PreCandidate")), QS_CLUSTER_ROLE_NO_LEADER);
    cr_assert_eq(role_of(cluster_answer(BIG_ID, "null", "Candidate")), QS_CLUSTER_ROLE_NO_LEADER);
    cr_assert(qs_cluster_role_runs_scheduled(QS_CLUSTER_ROLE_LEADER));
    cr_assert(qs_cluster_role_runs_scheduled(QS_CLUSTER_ROLE_OFF));
    cr_assert(!qs_cluster_role_runs_scheduled(QS_CLUSTER_ROLE_FOLLOWER));
    cr_assert(!qs_cluster_role_runs_scheduled(QS_CLUSTER_ROLE_NO_LEADER));
    cr_assert(!qs_cluster_role_runs_scheduled(QS_CLUSTER_ROLE_UNKNOWN));
}

Test(cluster_parse, a_failed_look_is_unknown_and_never_runs)
{
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    struct qs_error e;
    qs_error_set(&e, QS_ETRANSPORT, "get cluster info: Couldn't connect to server");
    qs_cluster_view_set(&v, QS_CLUSTER_AUTO, 100, NULL, &e);
    cr_assert_eq(v.role, QS_CLUSTER_ROLE_UNKNOWN);
    cr_assert(!qs_cluster_role_runs_scheduled(v.role));
    char why[600];
    qs_cluster_view_reason(&v, why, sizeof(why));
    cr_assert_str_eq(why, "cannot ask Qdrant which peer is the Raft leader: get cluster info: "
                          "Couldn't connect to server");
    qs_cluster_view_deinit(&v);
}

/* Bodies refused, each with the reason it must name. */
Test(cluster_parse, bad_answers_name_what_is_wrong)
{
    static const struct {
        const char *body, *why;
    } cases[] = {
        {"", "not JSON"},
        {"{\"status\":\"ok\"}", "no result"},
        {"{\"result\":[]}", "result is not an object"},
        {"{\"result\":{}}", "no status"},
        {"{\"result\":{\"status\":\"maybe\"}}", "status 'maybe' is neither enabled nor disabled"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":1.5,\"peers\":{}}}",
         "peer_id is not a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":\"5\",\"peers\":{}}}",
         "peer_id is not a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":-5,\"peers\":{}}}",
         "peer_id is not a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":18446744073709551616,\"peers\":{}}}",
         "peer_id is not a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":1e3,\"peers\":{}}}",
         "peer_id is not a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":[]}}",
         "peers is not an object"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"x5\":{\"uri\":\"u\"}}}}",
         "peer id 'x5' is not a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"05\":{\"uri\":\"u\"}}}}",
         "peer id '05' is not a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"5\":{}}}}",
         "peer 5 has no uri"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"6\":{\"uri\":\"u\"}}}}",
         "this peer (5) is not among the peers"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"5\":{\"uri\":\"u\"}}}}",
         "no raft_info"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"5\":{\"uri\":\"u\"}},"
         "\"raft_info\":{\"leader\":\"5\"}}}",
         "raft_info.leader is neither null nor a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"5\":{\"uri\":\"u\"}},"
         "\"raft_info\":{\"term\":-1}}}",
         "raft_info: term, commit or pending_operations is not a u64"},
        {"{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"5\":{\"uri\":\"u\"}},"
         "\"raft_info\":{\"role\":7}}}",
         "raft_info.role is not a string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct qs_cluster_info ci;
        struct qs_error err;
        qs_error_clear(&err);
        int rc = parse(cases[i].body, "http://localhost:6333", &ci, &err);
        cr_assert_eq(rc, QS_EPROTO, "case %zu (%s): rc %d", i, cases[i].body, rc);
        cr_assert_not_null(strstr(err.msg, cases[i].why), "case %zu: '%s' lacks '%s'", i, err.msg,
                           cases[i].why);
        cr_assert_eq(ci.npeers, 0);
        cr_assert_null(ci.peers);
    }
}

/* Digits, quotes and escapes inside strings are not number literals. */
Test(cluster_parse, numbers_inside_strings_do_not_shift_ids)
{
    const char *body =
        "{\"time\":-0.5e-3,\"result\":{\"status\":\"enabled\",\"x\":\"1 2 \\\"3\\\" -4 \\\\\","
        "\"peer_id\":" ODD_ID ",\"y\":[1,2.5,{\"z\":\"77\"}],\"peers\":{\"" ODD_ID
        "\":{\"uri\":\"http://10.0.0.1:6335/\"},\"123\":{\"uri\":\"http://h-1:6335\"}},"
        "\"raft_info\":{\"term\":3,\"commit\":4,\"pending_operations\":5,\"leader\":123,"
        "\"role\":null,\"is_voter\":false}}}";
    struct qs_cluster_info ci;
    struct qs_error err;
    cr_assert_eq(parse(body, "http://localhost:6333", &ci, &err), 0, "%s", err.msg);
    cr_assert_eq(ci.peer_id, ODD_ID_U);
    cr_assert_eq(ci.leader, 123);
    cr_assert_eq(ci.term, 3);
    cr_assert_eq(ci.commit, 4);
    cr_assert_eq(ci.pending_operations, 5);
    cr_assert_str_eq(ci.role, "");
    cr_assert_eq(ci.is_voter, 0);
    cr_assert_str_eq(ci.peers[0].rest_url, "http://h-1:6333");
    qs_cluster_info_deinit(&ci);
}

Test(cluster_parse, rest_urls)
{
    static const struct {
        const char *uri, *qdrant;
        int port;
        const char *want; /* NULL: QS_EINVAL */
    } cases[] = {
        {"http://qdrant-2.qdrant-headless.cortex.svc.cluster.local:6335/", "http://localhost:6333",
         6333, "http://qdrant-2.qdrant-headless.cortex.svc.cluster.local:6333"},
        {"http://127.0.0.3:6335/", "http://127.0.0.2:41000", 41000, "http://127.0.0.3:41000"},
        {"http://host", "https://q:1", 6333, "https://host:6333"},
        {"grpc://host:6335/path?x#y", "http://q", 1, "http://host:1"},
        {"http://user:pw@host:6335/", "http://q", 6333, "http://host:6333"},
        {"http://[::1]:6335/", "http://q", 6333, "http://[::1]:6333"},
        {"http://[fe80::1%25eth0]/", "http://q", 6333, "http://[fe80::1%25eth0]:6333"},
        {"http://fd00::1:6335/", "http://q", 6333, NULL},
        {"http://[fd00::1/", "http://q", 6333, NULL},
        {"http://[]:6335/", "http://q", 6333, NULL},
        {"http://[::1]x/", "http://q", 6333, NULL},
        {"http://:6335/", "http://q", 6333, NULL},
        {"http:///", "http://q", 6333, NULL},
        {"host:6335", "http://q", 6333, NULL},
        {"http://ho st:6335/", "http://q", 6333, NULL},
        {"http://host:6335/", "ftp://q", 6333, NULL},
        {"http://host:6335/", "http://q", 0, NULL},
        {"http://host:6335/", "http://q", 65536, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[128] = "x";
        int rc =
            qs_cluster_rest_url(cases[i].uri, cases[i].qdrant, cases[i].port, out, sizeof(out));
        if (cases[i].want == NULL) {
            cr_assert_eq(rc, QS_EINVAL, "case %zu (%s): rc %d, '%s'", i, cases[i].uri, rc, out);
            cr_assert_str_eq(out, "");
        } else {
            cr_assert_eq(rc, 0, "case %zu (%s): rc %d", i, cases[i].uri, rc);
            cr_assert_str_eq(out, cases[i].want, "case %zu", i);
        }
    }
    char small[16];
    cr_assert_eq(qs_cluster_rest_url("http://a-long-host-name:6335/", "http://q", 6333, small,
                                     sizeof(small)),
                 QS_ETOOBIG);
    cr_assert_str_eq(small, "");
}

/* A peer whose uri has no usable host keeps a NULL rest_url; the answer is
 * still read (the leader rule does not need it). */
Test(cluster_parse, unusable_uri_leaves_rest_url_null)
{
    const char *body =
        "{\"result\":{\"status\":\"enabled\",\"peer_id\":5,\"peers\":{\"5\":{\"uri\":"
        "\"fd00::9\"}},\"raft_info\":{\"leader\":5}}}";
    struct qs_cluster_info ci;
    struct qs_error err;
    cr_assert_eq(parse(body, "http://localhost:6333", &ci, &err), 0, "%s", err.msg);
    cr_assert_null(ci.peers[0].rest_url);
    cr_assert_str_eq(ci.peers[0].uri, "fd00::9");
    qs_cluster_info_deinit(&ci);
}

Test(cluster_parse, collection_cluster)
{
    const char *body =
        "{\"result\":{\"peer_id\":" BIG_ID ",\"shard_count\":3,"
        "\"local_shards\":[{\"shard_id\":0,\"points_count\":12,\"state\":\"Active\"},"
        "{\"shard_id\":2,\"shard_key\":\"tenant-a\",\"points_count\":0,\"state\":\"Partial\"}],"
        "\"remote_shards\":[{\"shard_id\":0,\"peer_id\":" ODD_ID ",\"state\":\"Dead\"},"
        "{\"shard_id\":1,\"shard_key\":" BIG_ID ",\"peer_id\":" OTHER_ID
        ",\"state\":\"ReshardingScaleDown\"}],"
        "\"shard_transfers\":[{\"shard_id\":2,\"from\":" ODD_ID ",\"to\":" BIG_ID
        ",\"sync\":true,\"method\":\"stream_records\",\"comment\":\"Transferring records "
        "(0/0)\"},{\"shard_id\":1,\"to_shard_id\":4,\"from\":1,\"to\":2,\"sync\":false}]},"
        "\"status\":\"ok\",\"time\":0.001}";
    struct qs_collection_cluster cc;
    struct qs_error err;
    cr_assert_eq(qs_collection_cluster_parse(body, strlen(body), &cc, &err), 0, "%s", err.msg);
    cr_assert_eq(cc.peer_id, BIG_ID_U);
    cr_assert_eq(cc.shard_count, 3);
    cr_assert_eq(cc.nlocal, 2);
    cr_assert_eq(cc.local[0].shard_id, 0);
    cr_assert_null(cc.local[0].shard_key);
    cr_assert_eq(cc.local[0].points_count, 12);
    cr_assert_eq(cc.local[0].state, QS_REPLICA_ACTIVE);
    cr_assert_str_eq(cc.local[0].state_name, "Active");
    cr_assert_eq(cc.local[1].shard_id, 2);
    cr_assert_str_eq(cc.local[1].shard_key, "\"tenant-a\"");
    cr_assert_eq(cc.local[1].state, QS_REPLICA_PARTIAL);
    cr_assert_eq(cc.nremote, 2);
    cr_assert_eq(cc.remote[0].peer_id, ODD_ID_U);
    cr_assert_eq(cc.remote[0].state, QS_REPLICA_DEAD);
    cr_assert_eq(cc.remote[1].peer_id, OTHER_ID_U);
    cr_assert_str_eq(cc.remote[1].shard_key, BIG_ID);
    cr_assert_eq(cc.remote[1].state, QS_REPLICA_OTHER);
    cr_assert_str_eq(cc.remote[1].state_name, "ReshardingScaleDown");
    cr_assert_eq(cc.ntransfers, 2);
    cr_assert_eq(cc.transfers[0].shard_id, 2);
    cr_assert_eq(cc.transfers[0].from, ODD_ID_U);
    cr_assert_eq(cc.transfers[0].to, BIG_ID_U);
    cr_assert_eq(cc.transfers[0].sync, 1);
    cr_assert_eq(cc.transfers[0].to_shard_id, -1);
    cr_assert_str_eq(cc.transfers[0].method, "stream_records");
    cr_assert_eq(cc.transfers[1].to_shard_id, 4);
    cr_assert_str_eq(cc.transfers[1].method, "");
    qs_collection_cluster_deinit(&cc);
    cr_assert_eq(cc.nlocal, 0);
}

Test(cluster_parse, collection_cluster_single_node_shape)
{
    /* A single node lists every shard as local (no remote, no transfers). */
    const char *body = "{\"result\":{\"peer_id\":4242,\"shard_count\":1,\"local_shards\":[{"
                       "\"shard_id\":0,\"points_count\":7,\"state\":\"Active\"}],"
                       "\"remote_shards\":[],\"shard_transfers\":[]}}";
    struct qs_collection_cluster cc;
    struct qs_error err;
    cr_assert_eq(qs_collection_cluster_parse(body, strlen(body), &cc, &err), 0, "%s", err.msg);
    cr_assert_eq(cc.nlocal, 1);
    cr_assert_eq(cc.nremote, 0);
    cr_assert_eq(cc.ntransfers, 0);
    qs_collection_cluster_deinit(&cc);
}

Test(cluster_parse, collection_cluster_errors)
{
    static const struct {
        const char *body, *why;
    } cases[] = {
        {"{\"result\":{\"shard_count\":1}}", "peer_id is not a u64"},
        {"{\"result\":{\"peer_id\":1,\"shard_count\":-1}}", "shard_count is not a number"},
        {"{\"result\":{\"peer_id\":1,\"shard_count\":1,\"local_shards\":{}}}",
         "local_shards is not an array"},
        {"{\"result\":{\"peer_id\":1,\"shard_count\":1,\"local_shards\":[{\"shard_id\":0,"
         "\"points_count\":1}]}}",
         "local_shards[0] has no state"},
        {"{\"result\":{\"peer_id\":1,\"shard_count\":1,\"local_shards\":[{\"shard_id\":0,"
         "\"state\":\"Active\"}]}}",
         "local_shards[0].points_count is not a u64"},
        {"{\"result\":{\"peer_id\":1,\"shard_count\":1,\"remote_shards\":[{\"shard_id\":4294967296,"
         "\"state\":\"Active\",\"peer_id\":2}]}}",
         "remote_shards[0] has no shard_id"},
        {"{\"result\":{\"peer_id\":1,\"shard_count\":1,\"remote_shards\":[{\"shard_id\":0,"
         "\"state\":\"Active\",\"peer_id\":2.0}]}}",
         "remote_shards[0].peer_id is not a u64"},
        {"{\"result\":{\"peer_id\":1,\"shard_count\":1,\"remote_shards\":[{\"shard_id\":0,"
         "\"state\":\"Active\",\"peer_id\":2,\"shard_key\":[1]}]}}",
         "remote_shards[0].shard_key is not a string or number"},
        {"{\"result\":{\"peer_id\":1,\"shard_count\":1,\"shard_transfers\":[{\"shard_id\":0,"
         "\"from\":1}]}}",
         "shard_transfers[0] is not a transfer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct qs_collection_cluster cc;
        struct qs_error err;
        qs_error_clear(&err);
        int rc = qs_collection_cluster_parse(cases[i].body, strlen(cases[i].body), &cc, &err);
        cr_assert_eq(rc, QS_EPROTO, "case %zu: rc %d", i, rc);
        cr_assert_not_null(strstr(err.msg, cases[i].why), "case %zu: '%s' lacks '%s'", i, err.msg,
                           cases[i].why);
        cr_assert_null(cc.local);
        cr_assert_eq(cc.nlocal + cc.nremote + cc.ntransfers, 0);
    }
}

Test(cluster_parse, replica_states)
{
    cr_assert_eq(qs_replica_state_parse("Active"), QS_REPLICA_ACTIVE);
    cr_assert_eq(qs_replica_state_parse("Initializing"), QS_REPLICA_INITIALIZING);
    cr_assert_eq(qs_replica_state_parse("Listener"), QS_REPLICA_LISTENER);
    cr_assert_eq(qs_replica_state_parse("PartialSnapshot"), QS_REPLICA_PARTIAL_SNAPSHOT);
    cr_assert_eq(qs_replica_state_parse("Recovery"), QS_REPLICA_RECOVERY);
    cr_assert_eq(qs_replica_state_parse("Resharding"), QS_REPLICA_RESHARDING);
    cr_assert_eq(qs_replica_state_parse("active"), QS_REPLICA_OTHER);
    cr_assert_eq(qs_replica_state_parse(NULL), QS_REPLICA_OTHER);
}

/* The view for /readyz: ids as exact decimal strings, the reason as a sentence. */
Test(cluster_parse, view_json_and_reason)
{
    struct qs_cluster_info ci;
    struct qs_error err;
    const char *body = cluster_answer(BIG_ID, ODD_ID, "Follower");
    cr_assert_eq(parse(body, "http://localhost:6333", &ci, &err), 0, "%s", err.msg);
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    qs_cluster_view_set(&v, QS_CLUSTER_AUTO, 1738059302, &ci, NULL);
    char why[300];
    qs_cluster_view_reason(&v, why, sizeof(why));
    cr_assert_str_eq(why, "this sidecar's Qdrant peer " BIG_ID " is not the Raft leader (the "
                          "leader is peer " ODD_ID ", term 9007199254740995)");
    cJSON *j = NULL;
    cr_assert_eq(qs_cluster_view_to_json(&v, &j), 0);
    char *s = cJSON_PrintUnformatted(j);
    cr_assert_str_eq(
        s, "{\"setting\":\"auto\",\"status\":\"enabled\",\"role\":\"follower\","
           "\"runs_scheduled\":false,\"checked_at\":\"2025-01-28T10:15:02Z\",\"peer_id\":\"" BIG_ID
           "\",\"leader\":\"" ODD_ID "\",\"is_leader\":false,\"term\":9007199254740995,"
           "\"raft_role\":\"Follower\",\"peers\":{\"" OTHER_ID
           "\":{\"uri\":\"http://10.42.0.7:6335/\",\"rest_url\":\"http://10.42.0.7:6333\"},"
           "\"" ODD_ID
           "\":{\"uri\":\"http://[fd00::5]:6335/\",\"rest_url\":\"http://[fd00::5]:6333\"},"
           "\"" BIG_ID "\":{\"uri\":\"http://qdrant-0.qdrant-headless.cortex.svc:6335/\","
           "\"rest_url\":\"http://qdrant-0.qdrant-headless.cortex.svc:6333\"}}}");
    cJSON_free(s);
    cJSON_Delete(j);

    /* moved on */
    struct qs_cluster_view w;
    qs_cluster_view_init(&w);
    qs_cluster_view_move(&w, &v);
    cr_assert_eq(v.role, QS_CLUSTER_ROLE_OFF);
    cr_assert_eq(v.info.npeers, 0);
    cr_assert_eq(w.role, QS_CLUSTER_ROLE_FOLLOWER);
    cr_assert_eq(w.info.npeers, 3);
    qs_cluster_view_deinit(&w);
    qs_cluster_view_deinit(&v);

    /* off, single node, unknown */
    qs_cluster_view_init(&v);
    cr_assert_eq(qs_cluster_view_to_json(&v, &j), 0);
    s = cJSON_PrintUnformatted(j);
    cr_assert_str_eq(s, "{\"setting\":\"off\",\"status\":\"off\",\"role\":\"off\","
                        "\"runs_scheduled\":true}");
    cJSON_free(s);
    cJSON_Delete(j);
    qs_error_set(&err, QS_ETRANSPORT, "get cluster info: timed out");
    qs_cluster_view_set(&v, QS_CLUSTER_AUTO, 1738059302, NULL, &err);
    cr_assert_eq(qs_cluster_view_to_json(&v, &j), 0);
    s = cJSON_PrintUnformatted(j);
    cr_assert_str_eq(s, "{\"setting\":\"auto\",\"status\":\"unknown\",\"role\":\"unknown\","
                        "\"runs_scheduled\":false,\"checked_at\":\"2025-01-28T10:15:02Z\","
                        "\"error\":\"get cluster info: timed out\"}");
    cJSON_free(s);
    cJSON_Delete(j);
    qs_cluster_view_deinit(&v);
}

/* Six shards on three peers (this one: 20), replication factor 2. */
static void placement(struct qs_collection_cluster *cc)
{
    const char *body =
        "{\"result\":{\"peer_id\":20,\"shard_count\":6,\"local_shards\":["
        "{\"shard_id\":0,\"points_count\":1,\"state\":\"Active\"},"
        "{\"shard_id\":1,\"points_count\":1,\"state\":\"Dead\"},"
        "{\"shard_id\":3,\"points_count\":1,\"state\":\"Partial\"}],"
        "\"remote_shards\":[{\"shard_id\":0,\"peer_id\":" BIG_ID ",\"state\":\"Active\"},"
        "{\"shard_id\":0,\"peer_id\":10,\"state\":\"Active\"},"
        "{\"shard_id\":1,\"peer_id\":30,\"state\":\"Active\"},"
        "{\"shard_id\":1,\"peer_id\":10,\"state\":\"Active\"},"
        "{\"shard_id\":2,\"peer_id\":10,\"state\":\"Dead\"},"
        "{\"shard_id\":2,\"peer_id\":30,\"state\":\"Initializing\"},"
        "{\"shard_id\":3,\"peer_id\":30,\"state\":\"Active\"},"
        "{\"shard_id\":4,\"peer_id\":30,\"state\":\"Active\"}],"
        "\"shard_transfers\":[{\"shard_id\":3,\"from\":30,\"to\":20,\"sync\":false,"
        "\"method\":\"stream_records\"}]}}";
    struct qs_error err;
    cr_assert_eq(qs_collection_cluster_parse(body, strlen(body), cc, &err), 0, "%s", err.msg);
}

Test(cluster_parse, shard_replicas_local_first_then_ascending_ids)
{
    struct qs_collection_cluster cc;
    placement(&cc);
    struct qs_shard_replica r[4];
    cr_assert_eq(qs_cluster_shard_replicas(&cc, 0, r, 4), 3);
    cr_assert_eq(r[0].peer_id, 20);
    cr_assert_eq(r[1].peer_id, 10);
    cr_assert_eq(r[2].peer_id, BIG_ID_U);
    /* cap bounds what is written, not what is counted */
    cr_assert_eq(qs_cluster_shard_replicas(&cc, 0, r, 1), 3);
    cr_assert_eq(qs_cluster_shard_replicas(&cc, 5, r, 4), 0);

    uint64_t peers[4];
    struct qs_error err;
    /* The local replica first when it is Active, the others by id. */
    cr_assert_eq(qs_cluster_active_peers(&cc, 0, peers, 4, &err), 3);
    cr_assert_eq(peers[0], 20);
    cr_assert_eq(peers[1], 10);
    cr_assert_eq(peers[2], BIG_ID_U);
    /* A Dead local replica is never read. */
    cr_assert_eq(qs_cluster_active_peers(&cc, 1, peers, 4, &err), 2);
    cr_assert_eq(peers[0], 10);
    cr_assert_eq(peers[1], 30);
    /* No Active replica: named with every state. */
    cr_assert_eq(qs_cluster_active_peers(&cc, 2, peers, 4, &err), QS_ENOTFOUND);
    cr_assert_not_null(strstr(err.msg, "shard 2 has no Active replica (peer 10 Dead, peer 30 "
                                       "Initializing)"),
                       "%s", err.msg);
    /* In transfer: refused even with an Active replica. */
    cr_assert_eq(qs_cluster_active_peers(&cc, 3, peers, 4, &err), QS_EBUSY);
    cr_assert_not_null(strstr(err.msg, "shard 3 is being transferred"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "peer 20 Partial, peer 30 Active; transfer from peer 30 "
                                       "to peer 20 (stream_records)"),
                       "%s", err.msg);
    cr_assert_eq(qs_cluster_active_peers(&cc, 5, peers, 4, &err), QS_ENOTFOUND);
    cr_assert_not_null(strstr(err.msg, "shard 5 has no Active replica (no replica)"), "%s",
                       err.msg);

    char why[512];
    cr_assert_eq(qs_cluster_all_active(&cc, 6, why, sizeof(why)), 0);
    cr_assert_str_eq(why, "shard 1 (peer 20 Dead, peer 10 Active, peer 30 Active), "
                          "shard 2 (peer 10 Dead, peer 30 Initializing), "
                          "shard 3 (peer 20 Partial, peer 30 Active; transfer from peer 30 to "
                          "peer 20 (stream_records)), shard 5 (no replica)");
    /* Bounded: a short buffer ends in "...". */
    char shortw[24];
    cr_assert_eq(qs_cluster_all_active(&cc, 6, shortw, sizeof(shortw)), 0);
    cr_assert_eq(strlen(shortw), sizeof(shortw) - 1);
    cr_assert_str_eq(shortw + sizeof(shortw) - 4, "...");
    cr_assert_eq(qs_cluster_all_active(&cc, 1, why, sizeof(why)), 1);
    cr_assert_str_eq(why, "");
    qs_collection_cluster_deinit(&cc);
}
