/* The runner behind criterion-lite/criterion/criterion.h (see there). */
#include "criterion/criterion.h"

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A test's exit codes; anything else (or a signal) is a crash. */
enum { EXIT_PASS = 0, EXIT_FAILED = 1, EXIT_SKIPPED = 77 };

static struct qsc_test *tests;
static struct qsc_suite *suites;

/* In the test's process: */
static jmp_buf abort_jmp;
static pthread_t test_thread; /* set before the test starts any thread */
static int abort_armed;       /* atomic: an assertion may fail on any thread */
static int failed;            /* atomic */

void qsc_register_test(struct qsc_test *t)
{
    t->next = tests;
    tests = t;
}

void qsc_register_suite(struct qsc_suite *s)
{
    s->next = suites;
    suites = s;
}

int qsc_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void vreport(const char *what, const char *fmt, va_list ap)
{
    /* One write, so lines of tests running at once do not interleave. */
    char msg[4096];
    int n = snprintf(msg, sizeof(msg), "%s", what);
    if (n >= 0 && (size_t)n < sizeof(msg) && fmt[0] != '\0') {
        int m = snprintf(msg + n, sizeof(msg) - (size_t)n, ": ");
        if (m > 0)
            n += m;
        if ((size_t)n < sizeof(msg))
            vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    }
    fprintf(stderr, "%s\n", msg);
}
#pragma GCC diagnostic pop

void qsc_check(int fatal, int ok, const char *file, int line, const char *expr, const char *fmt,
               ...)
{
    if (ok)
        return;
    char what[1024];
    snprintf(what, sizeof(what), "%s:%d: assertion failed: %s", file, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vreport(what, fmt, ap);
    va_end(ap);
    __atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
    if (!fatal)
        return;
    if (__atomic_load_n(&abort_armed, __ATOMIC_SEQ_CST) &&
        pthread_equal(pthread_self(), test_thread))
        longjmp(abort_jmp, 1);
    /* Outside the test's thread nothing can unwind it: end the process. */
    fflush(NULL);
    _exit(EXIT_FAILED);
}

void qsc_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("skipped", fmt, ap);
    va_end(ap);
    fflush(NULL);
    _exit(EXIT_SKIPPED);
}

void qsc_log(const char *level, const char *fmt, ...)
{
    char what[16];
    snprintf(what, sizeof(what), "[%s]", level);
    va_list ap;
    va_start(ap, fmt);
    vreport(what, fmt, ap);
    va_end(ap);
}

static const struct qsc_extra *suite_extra(const char *name)
{
    for (struct qsc_suite *s = suites; s != NULL; s = s->next)
        if (strcmp(s->name, name) == 0)
            return &s->extra;
    return NULL;
}

/* In the forked process: Criterion's order of the phases. */
static void run_one(const struct qsc_test *t)
{
    const struct qsc_extra *se = suite_extra(t->suite);
    test_thread = pthread_self();
    if (se != NULL && se->init != NULL)
        se->init();
    if (t->extra.init != NULL)
        t->extra.init();
    if (__atomic_load_n(&failed, __ATOMIC_SEQ_CST))
        _exit(EXIT_FAILED);
    __atomic_store_n(&abort_armed, 1, __ATOMIC_SEQ_CST);
    if (setjmp(abort_jmp) == 0)
        t->fn();
    if (setjmp(abort_jmp) == 0) {
        if (t->extra.fini != NULL)
            t->extra.fini();
        if (se != NULL && se->fini != NULL)
            se->fini();
    }
    __atomic_store_n(&abort_armed, 0, __ATOMIC_SEQ_CST);
    fflush(NULL);
    _exit(__atomic_load_n(&failed, __ATOMIC_SEQ_CST) ? EXIT_FAILED : EXIT_PASS);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_test(const void *a, const void *b)
{
    const struct qsc_test *x = *(struct qsc_test *const *)a, *y = *(struct qsc_test *const *)b;
    int c = strcmp(x->suite, y->suite);
    return c != 0 ? c : strcmp(x->name, y->name);
}

struct slot {
    const struct qsc_test *t;
    pid_t pid;
    double start, deadline; /* deadline 0: none */
    int timed_out;
};

int main(int argc, char **argv)
{
    size_t n = 0;
    for (struct qsc_test *t = tests; t != NULL; t = t->next)
        n++;
    struct qsc_test **v = calloc(n > 0 ? n : 1, sizeof(*v));
    if (v == NULL)
        return 2;
    size_t m = 0;
    for (struct qsc_test *t = tests; t != NULL; t = t->next) {
        char full[512];
        snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
        int keep = argc <= 1;
        for (int i = 1; i < argc && !keep; i++)
            keep = fnmatch(argv[i], full, 0) == 0;
        if (keep)
            v[m++] = t;
    }
    qsort(v, m, sizeof(*v), cmp_test);

    long jobs = 1;
    const char *j = getenv("CRITERION_JOBS");
    if (j != NULL) {
        char *end;
        errno = 0;
        jobs = strtol(j, &end, 10);
        if (errno != 0 || end == j || *end != '\0' || jobs < 1 || jobs > 64)
            jobs = 1;
    }
    struct slot slots[64];
    size_t next = 0, running = 0, passed = 0, nfailed = 0, skipped = 0;
    memset(slots, 0, sizeof(slots));
    fflush(NULL);
    while (next < m || running > 0) {
        for (long s = 0; s < jobs && next < m; s++) {
            if (slots[s].t != NULL)
                continue;
            const struct qsc_test *t = v[next++];
            const struct qsc_extra *se = suite_extra(t->suite);
            double timeout = t->extra.timeout > 0 ? t->extra.timeout : se != NULL ? se->timeout : 0;
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                return 2;
            }
            if (pid == 0)
                run_one(t);
            slots[s] = (struct slot){t, pid, now(), timeout > 0 ? now() + timeout : 0, 0};
            running++;
        }
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid == 0 || (pid < 0 && errno == EINTR)) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
            for (long s = 0; s < jobs; s++)
                if (slots[s].t != NULL && !slots[s].timed_out && slots[s].deadline > 0 &&
                    now() > slots[s].deadline) {
                    slots[s].timed_out = 1;
                    kill(slots[s].pid, SIGKILL);
                }
            continue;
        }
        if (pid < 0) {
            perror("waitpid");
            return 2;
        }
        for (long s = 0; s < jobs; s++) {
            if (slots[s].t == NULL || slots[s].pid != pid)
                continue;
            const char *res;
            if (slots[s].timed_out)
                res = "TIMEOUT";
            else if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_PASS)
                res = "PASS";
            else if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_SKIPPED)
                res = "SKIP";
            else if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_FAILED)
                res = "FAIL";
            else
                res = "CRASH";
            if (strcmp(res, "PASS") == 0)
                passed++;
            else if (strcmp(res, "SKIP") == 0)
                skipped++;
            else
                nfailed++;
            if (WIFSIGNALED(st) && !slots[s].timed_out)
                fprintf(stderr, "%s::%s: killed by signal %d\n", slots[s].t->suite,
                        slots[s].t->name, WTERMSIG(st));
            else if (WIFEXITED(st) && strcmp(res, "CRASH") == 0)
                fprintf(stderr, "%s::%s: exit status %d\n", slots[s].t->suite, slots[s].t->name,
                        WEXITSTATUS(st));
            fprintf(stderr, "[%s] %s::%s (%.2fs)\n", res, slots[s].t->suite, slots[s].t->name,
                    now() - slots[s].start);
            slots[s].t = NULL;
            running--;
        }
    }
    fprintf(stderr, "[====] Synthesis: Tested: %zu | Passing: %zu | Failing: %zu | Skipped: %zu\n",
            m, passed, nfailed, skipped);
    free(v);
    return nfailed > 0 ? 1 : 0;
}
