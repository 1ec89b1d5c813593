/* Configuration: QSNAP_* environment variables, with *_FILE
 * variants for secrets, parsed and validated once into an immutable struct.
 * Invalid input is an error naming the variable and the reason (exit 2). */
#ifndef QSNAP_CONFIG_H
#define QSNAP_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "qsnap/cron.h"
#include "qsnap/error.h"
#include "qsnap/log.h"

/* Default of QSNAP_COMPRESSION ("none", "gzip" or "gzip:LEVEL"). Measured on
 * realistic snapshots (bench/compression_bench.sh): gzip:1 stores 89.4 % and
 * gzip:6 89.0 % of the bytes for 17-20x the CPU (about 30-35 MiB/s per core,
 * slower than the upload), so none is the default. */
#define QS_CONFIG_DEFAULT_COMPRESSION "none"
/* Default of QSNAP_S3_PART_SIZE in bytes. */
#define QS_CONFIG_DEFAULT_PART_SIZE ((uint64_t)8 << 20)
/* Shortest accepted QSNAP_ADMIN_TOKEN (a guessable token guards restores). */
#define QS_CONFIG_MIN_ADMIN_TOKEN 16

enum qs_dest_kind {
    QS_DEST_S3 = 0,
    QS_DEST_FILE = 1,
};

enum qs_uri_style {
    QS_URI_PATH = 0,
    QS_URI_VIRTUAL = 1,
};

enum qs_mode {
    QS_MODE_COLLECTIONS = 0,
    QS_MODE_FULL = 1,
};

/* QSNAP_CLUSTER: auto = cluster mode when Qdrant's GET /cluster reports
 * status "enabled" (asked by the probes, at each scheduled time and before
 * remote pruning); off = never asked, always single-node behaviour. */
enum qs_cluster_setting {
    QS_CLUSTER_AUTO = 0,
    QS_CLUSTER_OFF = 1,
};

/* QSNAP_SNAPSHOT_METHOD: how a collection's data leaves Qdrant. */
enum qs_method {
    QS_METHOD_COLLECTION = 0, /* a collection snapshot file on Qdrant's disk, then streamed */
    QS_METHOD_SHARDS = 1,     /* every shard streamed straight from Qdrant, no snapshot file */
};

/* All strings are owned by the struct and freed by qs_config_free(). Secrets
 * (the four *_FILE-capable values) are registered with qs_log_add_secret() by
 * qs_config_load(). */
struct qs_config {
    char *qdrant_url;     /* QSNAP_QDRANT_URL, no trailing slash */
    char *qdrant_api_key; /* QSNAP_QDRANT_API_KEY[_FILE], NULL when unset; secret */

    char *destination; /* QSNAP_DESTINATION as given */
    enum qs_dest_kind dest_kind;
    char *dest_bucket; /* s3: bucket; NULL for file:// */
    char *dest_prefix; /* s3: prefix without leading/trailing '/', "" when none (and for file://);
                        * trailing slashes are dropped, empty segments, "." and ".." rejected */
    char *dest_path;   /* file: absolute directory path, no trailing '/'; NULL for s3:// */

    char *s3_endpoint;          /* QSNAP_S3_ENDPOINT, NULL = AWS default for the region */
    char *s3_region;            /* QSNAP_S3_REGION, default "us-east-1" */
    char *s3_access_key_id;     /* secret-ish: never printed in full */
    char *s3_secret_access_key; /* secret */
    enum qs_uri_style s3_uri_style;
    char *s3_ca_file;      /* NULL = system bundle */
    uint64_t s3_part_size; /* bytes, >= 5 MiB, <= 5 GiB */

    char *schedule;      /* as given ("0 3 * * *", "@daily", "off") */
    struct qs_cron cron; /* parsed; cron.off when "off" */
    int64_t jitter_s;    /* QSNAP_JITTER */
    char **collections;  /* QSNAP_COLLECTIONS, NULL-terminated; NULL = all */
    size_t ncollections;
    enum qs_mode mode;
    enum qs_method method;  /* QSNAP_SNAPSHOT_METHOD (collections mode only) */
    int64_t retention_s;    /* QSNAP_RETENTION */
    uint32_t keep_min;      /* QSNAP_KEEP_MIN */
    uint32_t local_keep;    /* QSNAP_LOCAL_KEEP */
    int compression_level;  /* 0 = none, 1..9 = gzip level ("gzip" alone = 6) */
    uint64_t max_bandwidth; /* bytes/s, 0 = unlimited */
    char *listen_host;      /* QSNAP_LISTEN host: numeric IPv4, or IPv6 without brackets */
    int listen_port;        /* QSNAP_LISTEN port, 1-65535 */
    int listen_ipv6;        /* 1 when listen_host is IPv6 ("[::]:9633") */
    char *admin_token;      /* QSNAP_ADMIN_TOKEN[_FILE], NULL = POST answers 403; secret;
                             * at least QS_CONFIG_MIN_ADMIN_TOKEN characters */
    int64_t stale_after_s;  /* QSNAP_STALE_AFTER; default schedule interval + 2 h */
    char *drill_schedule;   /* QSNAP_DRILL_SCHEDULE as given */
    struct qs_cron drill_cron;
    char *heartbeat_url; /* QSNAP_HEARTBEAT_URL, NULL = none; may carry a token: secret */
    enum qs_cluster_setting cluster; /* QSNAP_CLUSTER, default auto */
    int cluster_rest_port;           /* QSNAP_CLUSTER_REST_PORT, 1-65535, default 6333: the REST
                                      * port of every peer (the host comes from its P2P uri) */
    enum qs_log_level log_level;
    enum qs_log_format log_format;
};

/* Looks up an environment variable; returns a borrowed string or NULL. */
typedef const char *(*qs_getenv_fn)(const char *name, void *ud);

/* Fills cfg from the variables that getenv_fn (NULL = getenv) returns; ud is
 * passed through to it (borrowed). QSNAP_DESTINATION is always required. An
 * empty value is an error, not "unset". *_FILE variants win over the plain
 * variable; one trailing newline of the file is stripped. Every file read
 * (*_FILE, QSNAP_S3_CA_FILE) must be a regular file: a FIFO, device or
 * directory is refused at once (never waited on). A secret that begins or
 * ends with whitespace is refused (it could never match an HTTP header); a
 * secret that is evidently a template placeholder (it contains "REPLACE" or
 * "CHANGEME", any case) is refused, so a template Secret can never grant
 * access. Secrets are registered with qs_log_add_secret(). Logs nothing.
 * On error returns QS_ECONFIG with err->msg like
 * "QSNAP_S3_PART_SIZE: must be at least 5MiB (got 1MiB)" (never a secret), and
 * cfg is left zeroed with nothing to free. cfg borrowed (caller owns the
 * storage; qs_config_free() releases the strings), err borrowed (may be NULL). */
int qs_config_load(struct qs_config *cfg, qs_getenv_fn getenv_fn, void *ud, struct qs_error *err);

/* Frees the strings of cfg (borrowed, may be NULL) and zeroes it. */
void qs_config_free(struct qs_config *cfg);

/* Applies log_level and log_format to the log module. cfg borrowed. */
void qs_config_apply_log(const struct qs_config *cfg);

/* Logs one warning per QSNAP_* variable in envp (borrowed, NULL-terminated
 * "K=V" strings; NULL = the process environment) that qsnap does not know
 * (QSNAP_TEST_* excepted): typo protection. Returns how many were found. */
size_t qs_config_warn_unknown(char *const *envp);

/* Prints the effective configuration (defaults applied), one `NAME=value`
 * per line in a fixed order; optional settings that are unset print an empty
 * value. Secrets print as "[REDACTED]" when set, "" when unset; an access
 * key id of 12 or more characters shows its first 4 and an ellipsis.
 * out borrowed. */
void qs_config_print(const struct qs_config *cfg, FILE *out);

#endif
