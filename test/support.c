#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>

#include "qsnap/storage.h"
#include "qsnap/util.h"

extern char **environ;

double qs_test_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int qs_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

const char *qs_test_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        cr_assert_fail("environment variable %s is not set: run the suites through scripts/test.sh "
                       "(or meson test after starting the peers)",
                       name);
    return v;
}

static void apply_env(char *const env_extra[])
{
    if (env_extra == NULL)
        return;
    for (size_t i = 0; env_extra[i] != NULL; i++) {
        const char *eq = strchr(env_extra[i], '=');
        if (eq == NULL)
            continue;
        char name[256];
        size_t n = (size_t)(eq - env_extra[i]);
        if (n >= sizeof(name))
            continue;
        memcpy(name, env_extra[i], n);
        name[n] = '\0';
        if (eq[1] == '\0')
            unsetenv(name);
        else
            setenv(name, eq + 1, 1);
    }
}

/* QSNAP_TEST_VALGRIND="valgrind --opt ..." (scripts/valgrind.sh): the qsnap
 * binary runs under that command. Returns a new argv in out (words point
 * into *words, owned by the caller) or argv itself. */
static char *const *vg_wrap(char *const argv[], char **words, char *out[], size_t cap)
{
    const char *vg = getenv("QSNAP_TEST_VALGRIND");
    const char *bin = getenv("QSNAP_TEST_BINARY");
    *words = NULL;
    if (vg == NULL || *vg == '\0' || bin == NULL || strcmp(argv[0], bin) != 0)
        return argv;
    *words = strdup(vg);
    if (*words == NULL)
        return argv;
    size_t n = 0;
    for (char *t = strtok(*words, " "); t != NULL && n + 2 < cap; t = strtok(NULL, " "))
        out[n++] = t;
    for (size_t i = 0; argv[i] != NULL && n + 1 < cap; i++)
        out[n++] = argv[i];
    out[n] = NULL;
    return out;
}

pid_t qs_test_spawn(char *const argv[], char *const env_extra[], const char *log_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    apply_env(env_extra);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    if (log_path != NULL) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
    }
    execvp(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int qs_test_wait_exit(pid_t pid, double timeout_s, int *status)
{
    double end = qs_test_now_s() + timeout_s;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (status != NULL)
                *status = st;
            return 0;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (qs_test_now_s() > end)
            return -1;
        usleep(10000);
    }
}

void qs_test_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int qs_test_run(char *const argv[], char *const env_extra[], char **out)
{
    char *dir = qs_test_mkdtemp("run");
    char path[512];
    snprintf(path, sizeof(path), "%s/out", dir);
    char *words, *wrapped[64];
    pid_t pid = qs_test_spawn(vg_wrap(argv, &words, wrapped, 64), env_extra, path);
    free(words);
    int st = 0, rc = -1;
    if (pid > 0 && qs_test_wait_exit(pid, 600, &st) == 0 && WIFEXITED(st))
        rc = WEXITSTATUS(st);
    else if (pid > 0)
        qs_test_kill(pid);
    if (out != NULL) {
        *out = qs_test_read_file(path, NULL);
        if (*out == NULL)
            *out = strdup("");
    }
    qs_test_rmrf(dir);
    free(dir);
    return rc;
}

struct sink {
    char *p;
    size_t len;
};

static size_t sink_cb(char *data, size_t size, size_t n, void *ud)
{
    struct sink *s = ud;
    size_t add = size * n;
    char *p = realloc(s->p, s->len + add + 1);
    if (p == NULL)
        return 0;
    memcpy(p + s->len, data, add);
    s->p = p;
    s->len += add;
    s->p[s->len] = '\0';
    return add;
}

int qs_test_http(const char *method, const char *url, const char *const *headers, const char *body,
                 size_t body_len, struct qs_test_resp *out)
{
    memset(out, 0, sizeof(*out));
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    struct sink b = {0}, h = {0};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sink_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    out->body = b.p != NULL ? b.p : strdup("");
    out->len = b.len;
    out->headers = h.p != NULL ? h.p : strdup("");
    return rc == CURLE_OK ? 0 : -1;
}

void qs_test_resp_free(struct qs_test_resp *r)
{
    if (r == NULL)
        return;
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

int qs_test_wait_http(const char *url, double timeout_s)
{
    double end = qs_test_now_s() + timeout_s;
    while (qs_test_now_s() < end) {
        struct qs_test_resp r;
        int rc = qs_test_http("GET", url, NULL, NULL, 0, &r);
        long st = r.status;
        qs_test_resp_free(&r);
        if (rc == 0 && st == 200)
            return 0;
        usleep(20000);
    }
    return -1;
}

char *qs_test_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/qsnap-test-%s-XXXXXX", base ? base : "/tmp", tag);
    if (mkdtemp(path) == NULL)
        cr_assert_fail("mkdtemp: %s", strerror(errno));
    return strdup(path);
}

void qs_test_rmrf(const char *path)
{
    if (path == NULL || path[0] == '\0' || strcmp(path, "/") == 0)
        return;
    char *argv[] = {"rm", "-rf", (char *)path, NULL};
    pid_t pid = qs_test_spawn(argv, NULL, NULL);
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

char *qs_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct sink s = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        sink_cb(buf, 1, n, &s);
    fclose(f);
    if (s.p == NULL)
        s.p = strdup("");
    if (len != NULL)
        *len = s.len;
    return s.p;
}

int qs_test_standin_start(struct qs_test_standin *s, const char *const *extra_args)
{
    memset(s, 0, sizeof(*s));
    s->dir = qs_test_mkdtemp("standin");
    char portfile[600], logfile[600];
    snprintf(portfile, sizeof(portfile), "%s/port", s->dir);
    snprintf(logfile, sizeof(logfile), "%s.log", s->dir);
    s->log = strdup(logfile);
    char storage[600];
    snprintf(storage, sizeof(storage), "%s/storage", s->dir);
    char *argv[64];
    size_t n = 0;
    argv[n++] = (char *)qs_test_env("QSNAP_TEST_PYTHON");
    argv[n++] = (char *)qs_test_env("QSNAP_TEST_STANDIN");
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = portfile;
    argv[n++] = "--storage";
    argv[n++] = storage;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 63; i++)
        argv[n++] = (char *)extra_args[i];
    argv[n] = NULL;
    s->pid = qs_test_spawn(argv, NULL, s->log);
    if (s->pid < 0)
        return -1;
    double end = qs_test_now_s() + 20;
    while (qs_test_now_s() < end) {
        char *p = qs_test_read_file(portfile, NULL);
        if (p != NULL && strchr(p, '\n') != NULL) {
            s->port = atoi(p);
            free(p);
            break;
        }
        free(p);
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = -1;
            return -1;
        }
        usleep(20000);
    }
    if (s->port <= 0)
        return -1;
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
    char health[128];
    snprintf(health, sizeof(health), "%s/healthz", s->url);
    return qs_test_wait_http(health, 20);
}

void qs_test_standin_stop(struct qs_test_standin *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        if (qs_test_wait_exit(s->pid, 5, NULL) != 0)
            qs_test_kill(s->pid);
    }
    s->pid = -1;
    if (s->dir != NULL)
        qs_test_rmrf(s->dir);
    if (s->log != NULL)
        unlink(s->log);
    free(s->dir);
    free(s->log);
    s->dir = s->log = NULL;
}

int qs_test_daemon_start(struct qs_test_daemon *d, char *const env_extra[])
{
    memset(d, 0, sizeof(*d));
    d->port = qs_test_free_port();
    snprintf(d->url, sizeof(d->url), "http://127.0.0.1:%d", d->port);
    char *dir = qs_test_mkdtemp("daemon");
    char logfile[600];
    snprintf(logfile, sizeof(logfile), "%s.log", dir);
    qs_test_rmrf(dir);
    free(dir);
    d->log = strdup(logfile);
    char listen[64];
    snprintf(listen, sizeof(listen), "QSNAP_LISTEN=127.0.0.1:%d", d->port);
    /* Defaults first so env_extra can override them. */
    char *env[128];
    size_t n = 0;
    env[n++] = listen;
    env[n++] = "QSNAP_LOG_LEVEL=debug";
    for (size_t i = 0; env_extra != NULL && env_extra[i] != NULL && n < 127; i++)
        env[n++] = env_extra[i];
    env[n] = NULL;
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "serve", NULL};
    char *words, *wrapped[64];
    d->pid = qs_test_spawn(vg_wrap(argv, &words, wrapped, 64), env, d->log);
    int slow = words != NULL;
    free(words);
    if (d->pid < 0)
        return -1;
    char health[128];
    snprintf(health, sizeof(health), "%s/healthz", d->url);
    return qs_test_wait_http(health, slow ? 120 : 20);
}

int qs_test_daemon_stop(struct qs_test_daemon *d, double timeout_s)
{
    int st = -1;
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        if (qs_test_wait_exit(d->pid, timeout_s, &st) != 0) {
            qs_test_kill(d->pid);
            st = -1;
        }
    }
    d->pid = -1;
    if (d->log != NULL)
        unlink(d->log);
    free(d->log);
    d->log = NULL;
    return st;
}

const char *qs_test_s3_region(void)
{
    const char *r = getenv("QSNAP_TEST_S3_REGION");
    return r != NULL && *r != '\0' ? r : "us-east-1";
}

void qs_test_s3_opts(struct qs_storage_opts *o, const char *prefix)
{
    o->kind = QS_DEST_S3;
    o->endpoint = qs_test_env("QSNAP_TEST_S3_ENDPOINT");
    o->access_key_id = qs_test_env("QSNAP_TEST_S3_ACCESS_KEY");
    o->secret_access_key = qs_test_env("QSNAP_TEST_S3_SECRET_KEY");
    o->bucket = qs_test_env("QSNAP_TEST_S3_BUCKET");
    o->region = qs_test_env("QSNAP_TEST_S3_REGION");
    o->uri_style = QS_URI_PATH;
    o->prefix = prefix;
}

size_t qs_test_buf_sink(char *p, size_t size, size_t nmemb, void *ud)
{
    qs_buf_append(ud, p, size * nmemb);
    return size * nmemb;
}

long qs_test_s3_request(const char *method, const char *path_and_query,
                        size_t (*sink)(char *, size_t, size_t, void *), void *ud)
{
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    char url[2048], sig[128], user[512];
    snprintf(url, sizeof(url), "%s/%s/%s", qs_test_env("QSNAP_TEST_S3_ENDPOINT"),
             qs_test_env("QSNAP_TEST_S3_BUCKET"), path_and_query);
    snprintf(sig, sizeof(sig), "aws:amz:%s:s3", qs_test_s3_region());
    snprintf(user, sizeof(user), "%s:%s", qs_test_env("QSNAP_TEST_S3_ACCESS_KEY"),
             qs_test_env("QSNAP_TEST_S3_SECRET_KEY"));
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sig);
    curl_easy_setopt(c, CURLOPT_USERPWD, user);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ud);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    cr_assert_eq(rc, CURLE_OK, "S3 %s %s: %s", method, path_and_query, curl_easy_strerror(rc));
    return status;
}

char *qs_test_daemon_metrics(const struct qs_test_daemon *d)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/metrics", d->url);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    char *s = r.body;
    r.body = NULL;
    qs_test_resp_free(&r);
    return s;
}

int qs_test_promtool_check(const char *text, char **out)
{
    char *dir = qs_test_mkdtemp("promtool");
    char path[600], cmd[1400];
    snprintf(path, sizeof(path), "%s/metrics.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", path);
    char *argv[] = {"sh", "-c", cmd, NULL};
    int rc = qs_test_run(argv, NULL, out);
    qs_test_rmrf(dir);
    free(dir);
    return rc;
}

double qs_test_metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return NAN;
}

double qs_test_backups_total(const char *text, const char *coll, const char *result)
{
    char s[512];
    snprintf(s, sizeof(s), "qsnap_backups_total{collection=\"%s\",result=\"%s\"}", coll, result);
    return qs_test_metric(text, s);
}

/* ---- multi-peer stand-in --------------------------------------------------- */

/* A port that is free on 127.0.0.2 .. 127.0.0.(n+1) (bound and released). */
static int cluster_free_port(int n)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        a.sin_addr.s_addr = htonl(0x7f000002);
        socklen_t len = sizeof(a);
        int port = -1;
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
            port = ntohs(a.sin_port);
        close(fd);
        if (port <= 0)
            continue;
        int ok = 1;
        for (int i = 2; i <= n && ok; i++) {
            int t = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
            b.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)i);
            if (t < 0 || bind(t, (struct sockaddr *)&b, sizeof(b)) != 0)
                ok = 0;
            if (t >= 0)
                close(t);
        }
        if (ok)
            return port;
    }
    return -1;
}

static pid_t cluster_spawn_peer(struct qs_test_cluster *c, int i)
{
    char peer[16], port[16];
    snprintf(peer, sizeof(peer), "%d", i);
    snprintf(port, sizeof(port), "%d", c->port);
    char *argv[64];
    size_t k = 0;
    argv[k++] = (char *)qs_test_env("QSNAP_TEST_PYTHON");
    argv[k++] = (char *)qs_test_env("QSNAP_TEST_STANDIN");
    argv[k++] = "--cluster-dir";
    argv[k++] = c->dir;
    argv[k++] = "--peer";
    argv[k++] = peer;
    argv[k++] = "--bind";
    argv[k++] = c->peer[i].host;
    argv[k++] = "--port";
    argv[k++] = port;
    for (size_t j = 0; c->extra != NULL && c->extra[j] != NULL && k < 63; j++)
        argv[k++] = c->extra[j];
    argv[k] = NULL;
    return qs_test_spawn(argv, NULL, c->log);
}

static size_t count_substr(const char *s, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + len, needle))
        n++;
    return n;
}

/* Every running peer sees all n peers and a leader. */
static int cluster_ready(struct qs_test_cluster *c)
{
    for (int i = 1; i <= c->n; i++) {
        if (c->peer[i].pid <= 0)
            continue;
        char url[128];
        snprintf(url, sizeof(url), "%s/cluster", c->peer[i].url);
        struct qs_test_resp r;
        int rc = qs_test_http("GET", url, NULL, NULL, 0, &r);
        int ok = rc == 0 && r.status == 200 && count_substr(r.body, "\"uri\":") == (size_t)c->n &&
                 strstr(r.body, "\"leader\":0,") == NULL;
        qs_test_resp_free(&r);
        if (!ok)
            return 0;
    }
    return 1;
}

/* 1 when some peer exited; *bind_failed when it exited with 98 (port taken). */
static int cluster_peer_exited(struct qs_test_cluster *c, int *bind_failed)
{
    for (int i = 1; i <= c->n; i++) {
        int st;
        if (c->peer[i].pid > 0 && waitpid(c->peer[i].pid, &st, WNOHANG) == c->peer[i].pid) {
            c->peer[i].pid = -1;
            *bind_failed = WIFEXITED(st) && WEXITSTATUS(st) == 98;
            return 1;
        }
    }
    return 0;
}

static void cluster_kill_all(struct qs_test_cluster *c)
{
    for (int i = 1; i <= QS_TEST_CLUSTER_MAX; i++) {
        qs_test_kill(c->peer[i].pid);
        c->peer[i].pid = -1;
    }
}

int qs_test_cluster_start(struct qs_test_cluster *c, int n, const char *const *extra_args)
{
    memset(c, 0, sizeof(*c));
    if (n < 1 || n > QS_TEST_CLUSTER_MAX)
        return -1;
    c->n = n;
    size_t ne = 0;
    while (extra_args != NULL && extra_args[ne] != NULL)
        ne++;
    c->extra = calloc(ne + 1, sizeof(char *));
    for (size_t j = 0; c->extra != NULL && j < ne; j++)
        c->extra[j] = strdup(extra_args[j]);
    c->dir = qs_test_mkdtemp("cluster");
    char logfile[600];
    snprintf(logfile, sizeof(logfile), "%s.log", c->dir);
    c->log = strdup(logfile);
    for (int attempt = 0; attempt < 5; attempt++) {
        c->port = cluster_free_port(n);
        if (c->port <= 0)
            break;
        for (int i = 1; i <= n; i++) {
            snprintf(c->peer[i].host, sizeof(c->peer[i].host), "127.0.0.%d", i + 1);
            snprintf(c->peer[i].url, sizeof(c->peer[i].url), "http://%s:%d", c->peer[i].host,
                     c->port);
            c->peer[i].pid = cluster_spawn_peer(c, i);
        }
        double end = qs_test_now_s() + 30;
        int bind_failed = 0, exited = 0;
        while (qs_test_now_s() < end) {
            if ((exited = cluster_peer_exited(c, &bind_failed)) != 0)
                break;
            if (cluster_ready(c))
                return 0;
            usleep(50000);
        }
        cluster_kill_all(c);
        if (!exited || !bind_failed)
            break;
        /* a port was taken on one address meanwhile: start over elsewhere */
        qs_test_rmrf(c->dir);
        if (mkdir(c->dir, 0700) != 0)
            break;
    }
    qs_test_cluster_stop(c);
    return -1;
}

void qs_test_cluster_kill(struct qs_test_cluster *c, int i)
{
    if (i < 1 || i > c->n)
        return;
    qs_test_kill(c->peer[i].pid);
    c->peer[i].pid = -1;
}

int qs_test_cluster_restart(struct qs_test_cluster *c, int i)
{
    if (i < 1 || i > c->n || c->dir == NULL)
        return -1;
    qs_test_cluster_kill(c, i);
    c->peer[i].pid = cluster_spawn_peer(c, i);
    if (c->peer[i].pid <= 0)
        return -1;
    char url[128];
    snprintf(url, sizeof(url), "%s/healthz", c->peer[i].url);
    return qs_test_wait_http(url, 20);
}

void qs_test_cluster_stop(struct qs_test_cluster *c)
{
    cluster_kill_all(c);
    if (c->dir != NULL)
        qs_test_rmrf(c->dir);
    if (c->log != NULL)
        unlink(c->log);
    for (size_t j = 0; c->extra != NULL && c->extra[j] != NULL; j++)
        free(c->extra[j]);
    free(c->extra);
    free(c->dir);
    free(c->log);
    c->extra = NULL;
    c->dir = c->log = NULL;
}

/* ---- a destination and a stand-in ------------------------------------------ */

void qs_test_world_open(struct qs_test_world *w, int s3, const char *suite, const char *tag)
{
    static atomic_int seq;
    memset(w, 0, sizeof(*w));
    w->s3 = s3;
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    if (s3) {
        snprintf(w->prefix, sizeof(w->prefix), "test-%s/%ld-%d-%s", suite, (long)getpid(),
                 atomic_fetch_add(&seq, 1), tag);
        qs_test_s3_opts(&o, w->prefix);
        snprintf(w->vars[w->nvars++], 800, "QSNAP_DESTINATION=s3://%s/%s", o.bucket, w->prefix);
        snprintf(w->vars[w->nvars++], 800, "QSNAP_S3_ENDPOINT=%s", o.endpoint);
        snprintf(w->vars[w->nvars++], 800, "QSNAP_S3_REGION=%s", o.region);
        snprintf(w->vars[w->nvars++], 800, "QSNAP_S3_ACCESS_KEY_ID=%s", o.access_key_id);
        snprintf(w->vars[w->nvars++], 800, "QSNAP_S3_SECRET_ACCESS_KEY=%s", o.secret_access_key);
        snprintf(w->vars[w->nvars++], 800, "QSNAP_S3_URI_STYLE=path");
    } else {
        w->dir = qs_test_mkdtemp(suite);
        o.kind = QS_DEST_FILE;
        o.path = w->dir;
        snprintf(w->vars[w->nvars++], 800, "QSNAP_DESTINATION=file://%s", w->dir);
    }
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &w->st, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_test_standin_start(&w->qd, NULL), 0, "Qdrant stand-in did not start");
    snprintf(w->vars[w->nvars++], 800, "QSNAP_QDRANT_URL=%s", w->qd.url);
}

void qs_test_world_close(struct qs_test_world *w)
{
    qs_test_standin_stop(&w->qd);
    if (w->s3 && w->st != NULL) {
        struct qs_storage_list l;
        qs_storage_list_init(&l);
        struct qs_error err;
        if (qs_storage_list(w->st, "", &l, &err) == 0)
            for (size_t i = 0; i < l.n; i++)
                qs_storage_delete(w->st, l.items[i].key, &err);
        qs_storage_list_deinit(&l);
    }
    qs_storage_free(w->st);
    w->st = NULL;
    if (w->dir != NULL) {
        qs_test_rmrf(w->dir);
        free(w->dir);
        w->dir = NULL;
    }
}

char **qs_test_world_env(struct qs_test_world *w, char *const *clean, const char *const *extra)
{
    const size_t cap = sizeof(w->env) / sizeof(w->env[0]) - 1;
    size_t n = 0;
    for (size_t i = 0; clean[i] != NULL && n < cap; i++)
        w->env[n++] = clean[i];
    for (size_t i = 0; i < w->nvars && n < cap; i++)
        w->env[n++] = w->vars[i];
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < cap; i++)
        w->env[n++] = (char *)extra[i];
    w->env[n] = NULL;
    return w->env;
}

cJSON *qs_test_http_json_h(const char *method, const char *url, const char *const *headers,
                           const char *body, long want)
{
    static const char *const json[] = {"Content-Type: application/json", NULL};
    struct qs_test_resp r;
    int rc = qs_test_http(method, url, headers != NULL ? headers : json, body,
                          body != NULL ? strlen(body) : 0, &r);
    cr_assert_eq(rc, 0, "%s %s: no answer", method, url);
    cr_assert_eq(r.status, want, "%s %s: HTTP %ld (want %ld): %s", method, url, r.status, want,
                 r.body);
    cJSON *j = cJSON_Parse(r.body);
    cr_assert_not_null(j, "%s %s: not JSON: %s", method, url, r.body);
    qs_test_resp_free(&r);
    return j;
}

cJSON *qs_test_http_json(const char *method, const char *url, const char *body, long want)
{
    return qs_test_http_json_h(method, url, NULL, body, want);
}

const char *qs_test_jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double qs_test_jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "field %s: not a number", k);
    return v->valuedouble;
}

cJSON *qs_test_all_points(const char *base, const char *c)
{
    cJSON *out = cJSON_CreateArray();
    char url[512], body[160], offset[64] = "null";
    snprintf(url, sizeof(url), "%s/collections/%s/points/scroll", base, c);
    for (;;) {
        snprintf(body, sizeof(body),
                 "{\"limit\":100,\"offset\":%s,\"with_payload\":true,\"with_vector\":true}",
                 offset);
        cJSON *j = qs_test_http_json("POST", url, body, 200);
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
        cr_assert_not_null(res, "POST %s: no result", url);
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(res, "points"))
            cJSON_AddItemToArray(out, cJSON_Duplicate(p, 1));
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(res, "next_page_offset");
        int more = cJSON_IsNumber(next);
        if (more)
            snprintf(offset, sizeof(offset), "%.0f", next->valuedouble);
        cJSON_Delete(j);
        if (!more)
            return out;
    }
}
