/* Configuration (SPEC section 3): QSNAP_* environment variables, with *_FILE
 * variants for secrets, parsed and validated once into an immutable struct.
 * Invalid input is an error naming the variable and the reason (exit 2). */
#ifndef QSNAP_CONFIG_H
#define QSNAP_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "qsnap/cron.h"
#include "qsnap/error.h"
#include "qsnap/log.h"

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

/* All strings are owned by the struct and freed by qs_config_free(). Secrets
 * (the four *_FILE-capable values) are registered with qs_log_add_secret() by
 * qs_config_load(). */
struct qs_config {
    char *qdrant_url;     /* QSNAP_QDRANT_URL, no trailing slash */
    char *qdrant_api_key; /* QSNAP_QDRANT_API_KEY[_FILE], NULL when unset; secret */

    char *destination;           /* QSNAP_DESTINATION as given */
    enum qs_dest_kind dest_kind;
    char *dest_bucket;           /* s3: bucket; NULL for file:// */
    char *dest_prefix;           /* s3: prefix without leading/trailing '/', "" when none */
    char *dest_path;             /* file: absolute directory path; NULL for s3:// */

    char *s3_endpoint;          /* QSNAP_S3_ENDPOINT, NULL = AWS default for the region */
    char *s3_region;            /* QSNAP_S3_REGION, default "us-east-1" */
    char *s3_access_key_id;     /* secret-ish: never printed in full */
    char *s3_secret_access_key; /* secret */
    enum qs_uri_style s3_uri_style;
    char *s3_ca_file;           /* NULL = system bundle */
    uint64_t s3_part_size;      /* bytes, >= 5 MiB, <= 5 GiB */

    char *schedule;           /* as given ("0 3 * * *", "@daily", "off") */
    struct qs_cron cron;      /* parsed; cron.off when "off" */
    int64_t jitter_s;         /* QSNAP_JITTER */
    char **collections;       /* QSNAP_COLLECTIONS, NULL-terminated; NULL = all */
    size_t ncollections;
    enum qs_mode mode;
    int64_t retention_s;      /* QSNAP_RETENTION */
    uint32_t keep_min;        /* QSNAP_KEEP_MIN */
    uint32_t local_keep;      /* QSNAP_LOCAL_KEEP */
    int compression_level;    /* 0 = none, 1..9 = gzip level */
    uint64_t max_bandwidth;   /* bytes/s, 0 = unlimited */
    char *listen_host;        /* QSNAP_LISTEN host part */
    int listen_port;          /* QSNAP_LISTEN port part */
    char *admin_token;        /* QSNAP_ADMIN_TOKEN[_FILE], NULL = POST answers 403; secret */
    int64_t stale_after_s;    /* QSNAP_STALE_AFTER; default schedule interval + 2 h */
    char *drill_schedule;     /* QSNAP_DRILL_SCHEDULE as given */
    struct qs_cron drill_cron;
    char *heartbeat_url;      /* QSNAP_HEARTBEAT_URL, NULL = none; may carry a token: secret */
    enum qs_log_level log_level;
    enum qs_log_format log_format;
};

/* Looks up an environment variable; returns a borrowed string or NULL. */
typedef const char *(*qs_getenv_fn)(const char *name, void *ud);

/* Fills cfg from the variables that getenv_fn (NULL = getenv) returns.
 * require_destination: 0 for commands that do not need a destination
 * (e.g. `serve` still needs it; `--help` does not load config at all).
 * On error returns QS_ECONFIG with err->msg like
 * "QSNAP_S3_PART_SIZE: must be at least 5MiB (got 1MiB)". cfg is freed on
 * error. cfg borrowed (caller owns storage), err borrowed. */
int qs_config_load(struct qs_config *cfg, qs_getenv_fn getenv_fn, void *ud,
                   struct qs_error *err);

void qs_config_free(struct qs_config *cfg);

/* Prints the effective configuration, one `NAME=value` per line, with
 * secrets shown as "[REDACTED]" (set) or "" (unset). out borrowed. */
void qs_config_print(const struct qs_config *cfg, FILE *out);

#endif
