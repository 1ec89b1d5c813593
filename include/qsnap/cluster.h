/* Qdrant cluster mode: what Qdrant reports about its cluster (GET /cluster)
 * and about a collection's shards (GET /collections/{c}/cluster), the REST
 * address of every peer, and the leader rule.
 *
 * The leader rule: with QSNAP_CLUSTER=auto and Qdrant in cluster mode, every
 * Qdrant peer has a sidecar with the same configuration, and scheduled
 * backups, restore drills and remote pruning run only on the sidecar whose
 * peer is the Raft leader when it asks (raft_info.leader == peer_id). A
 * sidecar that cannot ask does not run them (never on a guess). A single
 * node ({"status": "disabled"}) and QSNAP_CLUSTER=off (never asked) keep the
 * single-node behaviour. Manual triggers are not subject to the rule.
 *
 * Peer ids are u64 values, often above 2^53: they are read from the answer's
 * text, exactly (a JSON number held as a double would round them); nothing
 * here passes an id through a double.
 *
 * The parsers are pure. qs_cluster_get(), qs_cluster_collection_get() and
 * qs_cluster_view_check() are BLOCKING (one request on the Qdrant client,
 * qdrant.h) and must run on a worker thread or the threadpool, never on the
 * libuv loop thread.
 *
 * Ownership: pointer parameters are borrowed for the call unless a comment
 * says otherwise; output structs are filled on success and released with
 * their _deinit (which accepts a zeroed or already released struct). A call
 * that fails leaves its output zeroed, with nothing to release. */
#ifndef QSNAP_CLUSTER_H
#define QSNAP_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/qdrant.h"

struct cJSON;

/* ---- GET /cluster ------------------------------------------------------------ */

/* One peer of the cluster. */
struct qs_cluster_peer {
    uint64_t id;
    char *uri;      /* owned: its P2P URI as Qdrant reports it, e.g. "http://qdrant-1.h:6335/" */
    char *rest_url; /* owned: its REST base URL, "SCHEME://HOST:PORT" (qs_cluster_rest_url);
                     * NULL when the URI has no host qsnap can use */
};

/* GET /cluster's result. */
struct qs_cluster_info {
    int enabled;                   /* 0: "disabled", a single node; nothing below is set */
    uint64_t peer_id;              /* this peer */
    struct qs_cluster_peer *peers; /* owned, npeers entries, ascending id */
    size_t npeers;
    uint64_t term, commit, pending_operations; /* raft_info */
    uint64_t leader;                           /* raft_info.leader; 0 = none (null or 0) */
    char role[24]; /* raft_info.role ("Leader", "Follower", "Candidate", "PreCandidate"), "" = null
                    */
    int is_voter;
};

/* Parses a GET /cluster answer (the whole envelope {"result": ...}, len
 * bytes of body). Each peer's REST URL is derived from its URI with the
 * scheme of qdrant_url (this sidecar's QSNAP_QDRANT_URL) and rest_port.
 * Returns 0 with *out filled (release with qs_cluster_info_deinit), or
 * QS_EPROTO naming what was wrong (a status other than enabled/disabled, an
 * id that is not an exact u64, this peer or the leader missing from peers,
 * ...) or UV_ENOMEM. */
int qs_cluster_info_parse(const char *body, size_t len, const char *qdrant_url, int rest_port,
                          struct qs_cluster_info *out, struct qs_error *err);
void qs_cluster_info_deinit(struct qs_cluster_info *ci);

/* The peer with this id in ci (borrowed from ci), or NULL. */
const struct qs_cluster_peer *qs_cluster_info_peer(const struct qs_cluster_info *ci, uint64_t id);

/* The REST base URL of a peer: the host of its P2P uri (an IPv6 address
 * stays in brackets), rest_port and the scheme of qdrant_url, e.g.
 * ("http://[fd00::5]:6335/", "https://localhost:6333", 6333) ->
 * "https://[fd00::5]:6333", into out (cap bytes). Returns 0, QS_EINVAL when
 * the uri has no usable host (or qdrant_url no http/https scheme, or the
 * port is out of range) or QS_ETOOBIG when out is too small. */
int qs_cluster_rest_url(const char *p2p_uri, const char *qdrant_url, int rest_port, char *out,
                        size_t cap);

/* GET /cluster on q's Qdrant, parsed as above with q's URL and rest_port. */
int qs_cluster_get(struct qs_qdrant *q, int rest_port, struct qs_cluster_info *out,
                   struct qs_error *err);

/* ---- GET /collections/{c}/cluster ------------------------------------------- */

/* A replica's state. Qdrant's names are kept in state_name; a state this
 * qsnap does not know is QS_REPLICA_OTHER (and is not Active). */
enum qs_replica_state {
    QS_REPLICA_ACTIVE = 0,
    QS_REPLICA_DEAD,
    QS_REPLICA_PARTIAL,
    QS_REPLICA_INITIALIZING,
    QS_REPLICA_LISTENER,
    QS_REPLICA_PARTIAL_SNAPSHOT,
    QS_REPLICA_RECOVERY,
    QS_REPLICA_RESHARDING,
    QS_REPLICA_OTHER,
};

/* A replica on the peer that answered. */
struct qs_local_shard {
    uint32_t shard_id;
    char *shard_key; /* owned: the key as compact JSON ("\"k\"" or "7"); NULL without custom keys */
    uint64_t points_count;
    enum qs_replica_state state;
    char state_name[32];
};

/* A replica on another peer. */
struct qs_remote_shard {
    uint32_t shard_id;
    char *shard_key; /* as above */
    uint64_t peer_id;
    enum qs_replica_state state;
    char state_name[32];
};

/* A shard transfer in progress. */
struct qs_shard_transfer {
    uint32_t shard_id;
    int64_t to_shard_id; /* -1 when absent (not a resharding transfer) */
    uint64_t from, to;   /* peer ids */
    int sync;
    char method[32]; /* "stream_records", "snapshot", "wal_delta", ...; "" when absent */
};

/* GET /collections/{c}/cluster's result, as the peer that answered sees it. */
struct qs_collection_cluster {
    uint64_t peer_id; /* the peer that answered */
    uint32_t shard_count;
    struct qs_local_shard *local; /* owned, nlocal entries, in Qdrant's order */
    size_t nlocal;
    struct qs_remote_shard *remote; /* owned, nremote entries, in Qdrant's order */
    size_t nremote;
    struct qs_shard_transfer *transfers; /* owned, ntransfers entries */
    size_t ntransfers;
};

/* Parses a GET /collections/{c}/cluster answer (the whole envelope). Returns
 * 0 with *out filled (release with qs_collection_cluster_deinit), QS_EPROTO
 * naming what was wrong (e.g. a shard id at or above shard_count, a peer id
 * that is not an exact u64) or UV_ENOMEM. */
int qs_collection_cluster_parse(const char *body, size_t len, struct qs_collection_cluster *out,
                                struct qs_error *err);
void qs_collection_cluster_deinit(struct qs_collection_cluster *cc);

/* GET /collections/{collection}/cluster on q's Qdrant. */
int qs_cluster_collection_get(struct qs_qdrant *q, const char *collection,
                              struct qs_collection_cluster *out, struct qs_error *err);

/* Qdrant's name of a state ("Active", ...) -> the enum (QS_REPLICA_OTHER when unknown). */
enum qs_replica_state qs_replica_state_parse(const char *name);

/* One replica of a shard, as GET /collections/{c}/cluster lists it. */
struct qs_shard_replica {
    uint64_t peer_id;
    enum qs_replica_state state;
    const char *state_name; /* borrowed from the qs_collection_cluster it came from */
};

/* The replicas of shard shard_id in cc (borrowed): the replica of the peer
 * that answered (cc->peer_id) first, then the others by ascending peer id.
 * Writes at most cap of them into out (borrowed) and returns how many the
 * shard has (0: none). Pure. */
size_t qs_cluster_shard_replicas(const struct qs_collection_cluster *cc, uint32_t shard_id,
                                 struct qs_shard_replica *out, size_t cap);

/* One line about shard shard_id in cc for messages, into out (cap bytes):
 * its replicas and their states, and its transfers, e.g. "peer 17 Active,
 * peer 42 Partial; transfer from peer 17 to peer 42 (stream_records)";
 * "no replica" when it has none. Pure. */
void qs_cluster_describe_shard(const struct qs_collection_cluster *cc, uint32_t shard_id, char *out,
                               size_t cap);

/* The peers a shard may be read from or written to: those holding an
 * Active replica of shard shard_id, in the order of
 * qs_cluster_shard_replicas() (the answering peer first, then ascending
 * ids), at most cap of them into out (borrowed). Qdrant streams a shard
 * from any local replica without looking at its state, so a backup must
 * ask for Active itself. Returns the number of peers (at least 1), or
 * QS_EBUSY when the shard is being transferred (shard_transfers lists it)
 * and QS_ENOTFOUND when no replica is Active, with err naming the shard and
 * its replicas' states. Pure. */
int qs_cluster_active_peers(const struct qs_collection_cluster *cc, uint32_t shard_id,
                            uint64_t *out, size_t cap, struct qs_error *err);

/* 1 when each shard 0..nshards-1 of cc has a replica, every replica is
 * Active and no transfer is in progress; else 0 with why (cap bytes)
 * naming the shards that are not (bounded: "shard 1 (peer 17 Dead, peer 42
 * Active), shard 4 (no replica), ..."). Pure. */
int qs_cluster_all_active(const struct qs_collection_cluster *cc, uint32_t nshards, char *why,
                          size_t cap);

/* ---- clients of the peers --------------------------------------------------- */

/* One Qdrant client per peer of a cluster, made on first use from the peer's
 * REST URL with the settings (API key, timeouts) of this sidecar's client;
 * this sidecar's own peer (info->peer_id) is served by that client itself.
 * Used by one thread at a time. */
struct qs_cluster_clients {
    struct qs_qdrant *local;            /* borrowed: this sidecar's client */
    const struct qs_cluster_info *info; /* borrowed: the peers (GET /cluster) */
    struct qs_qdrant **made;            /* owned: info->npeers entries, NULL until used */
};

/* local and info are borrowed and must outlive c. Returns 0 or UV_ENOMEM
 * (c then empty). */
int qs_cluster_clients_init(struct qs_cluster_clients *c, struct qs_qdrant *local,
                            const struct qs_cluster_info *info);
/* Frees the clients made (accepts an empty or zeroed c). */
void qs_cluster_clients_deinit(struct qs_cluster_clients *c);

/* The client of peer peer_id (*out borrowed from c, valid until deinit).
 * Returns 0, QS_ENOTFOUND (not a peer GET /cluster listed), QS_EINVAL (its
 * URI gives no REST address) or the failure of qs_qdrant_new_like(). */
int qs_cluster_clients_get(struct qs_cluster_clients *c, uint64_t peer_id, struct qs_qdrant **out,
                           struct qs_error *err);

/* ---- the leader rule ----------------------------------------------------------- */

/* What this sidecar is, as one look at GET /cluster says. */
enum qs_cluster_role {
    QS_CLUSTER_ROLE_OFF = 0,   /* QSNAP_CLUSTER=off: not asked, single-node behaviour */
    QS_CLUSTER_ROLE_SINGLE,    /* Qdrant reports "disabled": single-node behaviour */
    QS_CLUSTER_ROLE_LEADER,    /* cluster mode, this sidecar's peer is the Raft leader */
    QS_CLUSTER_ROLE_FOLLOWER,  /* cluster mode, another peer is the leader */
    QS_CLUSTER_ROLE_NO_LEADER, /* cluster mode, no leader now (no Raft majority) */
    QS_CLUSTER_ROLE_UNKNOWN,   /* GET /cluster could not be asked or made no sense */
};

/* 1 when a sidecar in this role runs scheduled backups, drills and remote
 * pruning: OFF, SINGLE and LEADER. */
int qs_cluster_role_runs_scheduled(enum qs_cluster_role role);

/* "off", "single", "leader", "follower", "no_leader", "unknown" (static). */
const char *qs_cluster_role_name(enum qs_cluster_role role);

/* One look at the cluster. */
struct qs_cluster_view {
    enum qs_cluster_setting setting; /* QSNAP_CLUSTER */
    enum qs_cluster_role role;
    int64_t checked_at;          /* qs_clock_now() when asked; 0 when not asked (off) */
    struct qs_cluster_info info; /* the answer (roles SINGLE, LEADER, FOLLOWER, NO_LEADER) */
    struct qs_error err;         /* role UNKNOWN: why */
};

/* An empty view (role OFF, not asked). */
void qs_cluster_view_init(struct qs_cluster_view *v);
void qs_cluster_view_deinit(struct qs_cluster_view *v);

/* Moves src's contents into dst (dst released first); src is left empty. */
void qs_cluster_view_move(struct qs_cluster_view *dst, struct qs_cluster_view *src);

/* Asks q's Qdrant (GET /cluster) now, unless cfg->cluster is off, and fills
 * out (initialised by the caller; released and refilled) with the role the
 * answer gives this sidecar (UNKNOWN when q is NULL). Returns out->role.
 * BLOCKING. */
enum qs_cluster_role qs_cluster_view_check(struct qs_qdrant *q, const struct qs_config *cfg,
                                           struct qs_cluster_view *out);

/* Sets out from an answer already parsed (info moved into out; zeroed) or
 * from a failure (info NULL, err borrowed): the pure half of
 * qs_cluster_view_check(), exposed for tests. */
void qs_cluster_view_set(struct qs_cluster_view *out, enum qs_cluster_setting setting,
                         int64_t checked_at, struct qs_cluster_info *info,
                         const struct qs_error *err);

/* Whether work on q's Qdrant (a backup or a restore) meets a cluster: asks
 * GET /cluster now, unless cfg->cluster is off, and fills v (initialised by
 * the caller; released and refilled). Returns 1 in cluster mode (roles
 * LEADER, FOLLOWER and NO_LEADER: v->info holds the peers), 0 for a single
 * node (QSNAP_CLUSTER=off, or Qdrant reports "disabled"), or, when the
 * answer does not tell (role UNKNOWN), v->err's negative code with err set
 * from it, e.g. QS_ETRANSPORT when Qdrant does not answer, an HTTP error
 * or an answer that makes no sense; the message says that QSNAP_CLUSTER=off
 * stops the question. Callers fail their work then: work on a guess could
 * miss shards. BLOCKING. */
int qs_cluster_mode(struct qs_qdrant *q, const struct qs_config *cfg, struct qs_cluster_view *v,
                    struct qs_error *err);

/* Why QSNAP_MODE=full is refused in cluster mode, for errors and for
 * check-config: a full snapshot holds the storage of one peer, which in a
 * cluster holds only that peer's shards. */
#define QS_CLUSTER_FULL_MODE_REFUSAL                                                               \
    "QSNAP_MODE=full snapshots the storage of one peer, and in a Qdrant cluster a peer holds "     \
    "only its own shards: use QSNAP_MODE=collections (every shard of every collection), or, to "   \
    "snapshot each peer's storage alone, QSNAP_CLUSTER=off with a destination prefix of its "      \
    "own per peer"

/* Why a sidecar in v's role does or does not run scheduled work, as one
 * sentence for logs and messages (into out, cap bytes), e.g. "this
 * sidecar's Qdrant peer 17 is not the Raft leader (the leader is peer 42)". */
void qs_cluster_view_reason(const struct qs_cluster_view *v, char *out, size_t cap);

/* The view as a JSON object for /readyz (*out owned, cJSON_Delete):
 *   {"setting": "auto"|"off", "status": "enabled"|"disabled"|"off"|"unknown",
 *    "role": qs_cluster_role_name(), "runs_scheduled": bool,
 *    "checked_at": RFC 3339 (absent when not asked),
 *    "error": "..." (unknown only),
 *    and in cluster mode: "peer_id": "ID", "leader": "ID" | null,
 *    "is_leader": bool, "term": N, "raft_role": "Follower",
 *    "peers": {"ID": {"uri": "...", "rest_url": "..." | null}}}
 * Peer ids are decimal strings: tools that read JSON numbers as doubles
 * (jq 1.6) would round them. Returns 0 or UV_ENOMEM. */
int qs_cluster_view_to_json(const struct qs_cluster_view *v, struct cJSON **out);

#endif
