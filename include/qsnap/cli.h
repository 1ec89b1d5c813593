/* One-shot commands: `qsnap backup`, `restore`, `list`, `prune`. They run
 * the same job sequences as the daemon's worker (jobs.h), on the calling
 * thread (the first SIGTERM/SIGINT cancels, the second exits), and return
 * the process exit code: 0 success, 1 failure, 2 bad usage, 3 partial
 * success. Messages on stdout and stderr pass the secret redaction of the
 * log. cfg borrowed; argv borrowed (the arguments after the command name). */
#ifndef QSNAP_CLI_H
#define QSNAP_CLI_H

#include "qsnap/config.h"

int qs_cli_backup(const struct qs_config *cfg, int argc, char **argv);
int qs_cli_restore(const struct qs_config *cfg, int argc, char **argv);
int qs_cli_list(const struct qs_config *cfg, int argc, char **argv);
int qs_cli_prune(const struct qs_config *cfg, int argc, char **argv);

/* Probes Qdrant and the destination for `check-config`; prints one line per
 * peer to stdout, then the cluster view (QSNAP_CLUSTER=auto: GET /cluster;
 * enabled or not, this peer, the leader, every peer with its REST URL, and
 * whether this sidecar runs the scheduled work). Returns 0 when both answer
 * (and, with auto, GET /cluster did), 1 otherwise. */
int qs_cli_check_reachability(const struct qs_config *cfg);

/* Creates the storage and Qdrant client described by cfg (both owned by the
 * caller; free with qs_storage_free / qs_qdrant_free). Returns 0, or a code
 * with err filled and both *storage and *qdrant NULL (nothing to free). */
struct qs_storage;
struct qs_qdrant;
int qs_cli_open_peers(const struct qs_config *cfg, struct qs_storage **storage,
                      struct qs_qdrant **qdrant, struct qs_error *err);

#endif
