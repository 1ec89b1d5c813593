/* libFuzzer target for qs_config_load(): the input is an environment, one
 * NAME=VALUE per line (NAME_FILE variables are dropped: no file reads).
 * Invariants: failure leaves the struct zeroed with a reason; no secret
 * value (Qdrant API key, S3 secret key, admin token, heartbeat URL) appears
 * in an error message or in the printed effective configuration, unless the
 * same text is also part of a non-secret input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/config.h"
#include "qsnap/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXVARS 48

struct env {
    char *names[MAXVARS];
    char *values[MAXVARS];
    size_t n;
};

static const char *const secret_vars[] = {"QSNAP_QDRANT_API_KEY", "QSNAP_S3_SECRET_ACCESS_KEY",
                                          "QSNAP_ADMIN_TOKEN", "QSNAP_HEARTBEAT_URL"};

static void check(int cond)
{
    if (!cond)
        abort();
}

static const char *lookup(const char *name, void *ud)
{
    const struct env *e = ud;
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->names[i], name) == 0)
            return e->values[i];
    return NULL;
}

static int is_secret_var(const char *name)
{
    for (size_t i = 0; i < sizeof(secret_vars) / sizeof(secret_vars[0]); i++)
        if (strcmp(name, secret_vars[i]) == 0)
            return 1;
    return 0;
}

/* 1 when s occurs in a name, or in the value of a non-secret variable. */
static int public_text(const struct env *e, const char *s)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strstr(e->names[i], s) != NULL)
            return 1;
        if (!is_secret_var(e->names[i]) && strstr(e->values[i], s) != NULL)
            return 1;
    }
    return 0;
}

/* The secret value i occurs in msg: a leak unless the same text is there when
 * the value is replaced by another of the same length (then it comes from
 * the message itself, e.g. "file:///ABS/PATH"). */
static int leaked(struct env *e, size_t i, const char *msg)
{
    char *orig = e->values[i];
    size_t n = strlen(orig);
    char *other = malloc(n + 1);
    check(other != NULL);
    memset(other, '#', n);
    other[n] = '\0';
    if (strcmp(other, orig) == 0)
        other[0] = '%';
    e->values[i] = other;
    struct qs_config cfg;
    struct qs_error err2;
    memset(&err2, 0, sizeof(err2));
    int rc = qs_config_load(&cfg, lookup, e, &err2);
    if (rc == 0)
        qs_config_free(&cfg);
    e->values[i] = orig;
    int leak = rc == 0 || strstr(err2.msg, orig) == NULL;
    free(other);
    return leak;
}

static char *print_config(const struct qs_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    check(f != NULL);
    qs_config_print(cfg, f);
    fclose(f);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct env e = {.n = 0};
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL && e.n < MAXVARS;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        if (strstr(line, "_FILE") != NULL)
            continue;
        e.names[e.n] = line;
        e.values[e.n] = eq + 1;
        e.n++;
    }

    struct qs_config cfg;
    struct qs_error err;
    memset(&err, 0, sizeof(err));
    int rc = qs_config_load(&cfg, lookup, &e, &err);
    if (rc != 0) {
        check(rc == QS_ECONFIG);
        check(err.msg[0] != '\0');
        check(cfg.destination == NULL && cfg.qdrant_url == NULL && cfg.admin_token == NULL);
        for (size_t i = 0; i < e.n; i++)
            if (is_secret_var(e.names[i]) && strlen(e.values[i]) >= 8 &&
                !public_text(&e, e.values[i]) && strstr(err.msg, e.values[i]) != NULL)
                check(!leaked(&e, i, err.msg));
    } else {
        check(cfg.destination != NULL && cfg.listen_port >= 1 && cfg.listen_port <= 65535);
        check(cfg.s3_part_size >= ((uint64_t)5 << 20) || cfg.dest_kind == QS_DEST_FILE);
        char *shown = print_config(&cfg);
        struct qs_config pub = cfg;
        pub.qdrant_api_key = NULL;
        pub.s3_secret_access_key = NULL;
        pub.admin_token = NULL;
        pub.heartbeat_url = NULL;
        char *base = print_config(&pub);
        const char *secrets[] = {cfg.qdrant_api_key, cfg.s3_secret_access_key, cfg.admin_token,
                                 cfg.heartbeat_url};
        for (size_t i = 0; i < 4; i++)
            if (secrets[i] != NULL && strlen(secrets[i]) >= 8 && strstr(base, secrets[i]) == NULL)
                check(strstr(shown, secrets[i]) == NULL);
        free(shown);
        free(base);
        qs_config_free(&cfg);
    }
    qs_log_clear_secrets();
    free(text);
    return 0;
}
