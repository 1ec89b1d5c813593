/* The part of Criterion's interface the suites use, for the ThreadSanitizer
 * build only (test/meson.build picks it when b_sanitize has "thread").
 *
 * Criterion's runner cannot start under ThreadSanitizer: before the first
 * test it maps a shared arena at a random fixed address between 0x2000 and
 * 0x6000 << 32, which is where ThreadSanitizer keeps its shadow and
 * reserved ranges, so it aborts ("Could not initialize inheritable arena")
 * or crashes. This runner keeps Criterion's semantics the suites rely on:
 * every test runs in its own forked process (suite .init, test .init, the
 * test, test .fini, suite .fini); a failed cr_assert_* ends the test and
 * still runs the .fini functions, a failed cr_expect_* marks it failed and
 * continues; cr_skip_test() skips; .timeout (seconds, the test's or else
 * its suite's) kills a test that runs longer; CRITERION_JOBS tests run at
 * once. The tests are run sorted by suite and name; arguments, when given,
 * are fnmatch(3) patterns of "suite/name" selecting the tests to run. */
#ifndef QSNAP_CRITERION_LITE_H
#define QSNAP_CRITERION_LITE_H

/* Criterion's header brings these in; the suites rely on it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qsc_extra {
    void (*init)(void);
    void (*fini)(void);
    double timeout; /* seconds; 0: none */
    int sentinel_;
};

struct qsc_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct qsc_extra extra;
    struct qsc_test *next;
};

struct qsc_suite {
    const char *name;
    struct qsc_extra extra;
    struct qsc_suite *next;
};

void qsc_register_test(struct qsc_test *t);
void qsc_register_suite(struct qsc_suite *s);

/* fatal: end the test on failure. fmt: the caller's message ("" for none). */
void qsc_check(int fatal, int ok, const char *file, int line, const char *expr, const char *fmt,
               ...);
int qsc_str_eq(const char *a, const char *b);
void qsc_skip(const char *fmt, ...);
void qsc_log(const char *level, const char *fmt, ...);

#define Test(...) QSC_TEST_(__VA_ARGS__, .sentinel_ = 0)
#define QSC_TEST_(suite, name, ...)                                                                \
    static void qsc_fn_##suite##_##name(void);                                                     \
    static struct qsc_test qsc_t_##suite##_##name = {                                              \
        #suite, #name, qsc_fn_##suite##_##name, {__VA_ARGS__}, NULL};                              \
    __attribute__((constructor)) static void qsc_reg_##suite##_##name(void)                        \
    {                                                                                              \
        qsc_register_test(&qsc_t_##suite##_##name);                                                \
    }                                                                                              \
    static void qsc_fn_##suite##_##name(void)

#define TestSuite(...) QSC_SUITE_(__VA_ARGS__, .sentinel_ = 0)
#define QSC_SUITE_(suite, ...)                                                                     \
    static struct qsc_suite qsc_s_##suite = {#suite, {__VA_ARGS__}, NULL};                         \
    __attribute__((constructor)) static void qsc_sreg_##suite(void)                                \
    {                                                                                              \
        qsc_register_suite(&qsc_s_##suite);                                                        \
    }                                                                                              \
    struct qsc_suite_semicolon_##suite

/* Every message argument list below ends in "" so that a call without a
 * message still passes one (C11 needs an argument for "..."). */
#define QSC_CHECK_(fatal, ok, expr, ...) qsc_check(fatal, ok, __FILE__, __LINE__, expr, __VA_ARGS__)
#define QSC_UNARY_(fatal, pre, post, e, ...)                                                       \
    QSC_CHECK_(fatal, pre(e) post, #pre "(" #e ")" #post, __VA_ARGS__)
#define QSC_OP_(fatal, op, a, b, ...) QSC_CHECK_(fatal, (a)op(b), #a " " #op " " #b, __VA_ARGS__)
#define QSC_STR_(fatal, want, a, b, ...)                                                           \
    QSC_CHECK_(fatal, qsc_str_eq((a), (b)) == (want),                                              \
               want ? #a " equals " #b : #a " differs from " #b, __VA_ARGS__)
#define QSC_FLOAT_(fatal, a, b, eps, ...)                                                          \
    QSC_CHECK_(fatal, (a) - (b) <= (eps) && (b) - (a) <= (eps), #a " == " #b " within " #eps,      \
               __VA_ARGS__)

#define cr_assert(...) QSC_UNARY_(1, !!, , __VA_ARGS__, "")
#define cr_assert_not(...) QSC_UNARY_(1, !, , __VA_ARGS__, "")
#define cr_assert_fail(...) QSC_CHECK_(1, 0, "cr_assert_fail", __VA_ARGS__, "")
#define cr_assert_null(...) QSC_UNARY_(1, , == NULL, __VA_ARGS__, "")
#define cr_assert_not_null(...) QSC_UNARY_(1, , != NULL, __VA_ARGS__, "")
#define cr_assert_eq(...) QSC_OP_(1, ==, __VA_ARGS__, "")
#define cr_assert_neq(...) QSC_OP_(1, !=, __VA_ARGS__, "")
#define cr_assert_lt(...) QSC_OP_(1, <, __VA_ARGS__, "")
#define cr_assert_leq(...) QSC_OP_(1, <=, __VA_ARGS__, "")
#define cr_assert_gt(...) QSC_OP_(1, >, __VA_ARGS__, "")
#define cr_assert_geq(...) QSC_OP_(1, >=, __VA_ARGS__, "")
#define cr_assert_str_eq(...) QSC_STR_(1, 1, __VA_ARGS__, "")
#define cr_assert_str_neq(...) QSC_STR_(1, 0, __VA_ARGS__, "")
#define cr_assert_float_eq(...) QSC_FLOAT_(1, __VA_ARGS__, "")

#define cr_expect(...) QSC_UNARY_(0, !!, , __VA_ARGS__, "")
#define cr_expect_null(...) QSC_UNARY_(0, , == NULL, __VA_ARGS__, "")
#define cr_expect_not_null(...) QSC_UNARY_(0, , != NULL, __VA_ARGS__, "")
#define cr_expect_eq(...) QSC_OP_(0, ==, __VA_ARGS__, "")
#define cr_expect_str_eq(...) QSC_STR_(0, 1, __VA_ARGS__, "")

#define cr_skip_test(...) qsc_skip(__VA_ARGS__, "")
#define cr_log_error(...) qsc_log("ERR", __VA_ARGS__, "")
#define cr_log_warn(...) qsc_log("WARN", __VA_ARGS__, "")
#define cr_log_info(...) qsc_log("INFO", __VA_ARGS__, "")

#endif
