#include <criterion/criterion.h>
#include <string.h>

#include "qsnap/error.h"
#include "qsnap/job.h"

Test(job, legal_lifecycle)
{
    struct qs_job *j = qs_job_new(QS_JOB_BACKUP, "api");
    cr_assert_not_null(j);
    cr_assert_eq(j->state, QS_JOB_QUEUED);
    cr_assert_eq(strncmp(j->id, "backup-", 7), 0);
    cr_assert_eq(qs_job_set_phase(j, "c1", "snapshot"), QS_EINVAL, "no phase before running");
    cr_assert_eq(qs_job_transition(j, QS_JOB_RUNNING, NULL), 0);
    cr_assert_gt(j->started_at, 0);
    cr_assert_eq(qs_job_set_phase(j, "c1", "stream"), 0);
    cr_assert_str_eq(j->current, "c1");
    cr_assert_eq(qs_job_transition(j, QS_JOB_SUCCEEDED, NULL), 0);
    cr_assert(qs_job_is_final(j));
    cr_assert_null(j->phase);
    cr_assert_null(j->current);
    qs_job_free(j);
}

Test(job, illegal_moves_are_refused)
{
    struct qs_job *j = qs_job_new(QS_JOB_RESTORE, "cli");
    cr_assert_eq(qs_job_transition(j, QS_JOB_SUCCEEDED, NULL), QS_EINVAL, "queued->succeeded");
    cr_assert_eq(qs_job_transition(j, QS_JOB_FAILED, NULL), QS_EINVAL, "queued->failed");
    cr_assert_eq(qs_job_transition(j, QS_JOB_QUEUED, NULL), QS_EINVAL, "queued->queued");
    cr_assert_eq(qs_job_transition(j, QS_JOB_RUNNING, NULL), 0);
    cr_assert_eq(qs_job_transition(j, QS_JOB_QUEUED, NULL), QS_EINVAL, "running->queued");
    cr_assert_eq(qs_job_transition(j, QS_JOB_RUNNING, NULL), QS_EINVAL, "running->running");
    cr_assert_eq(qs_job_transition(j, QS_JOB_FAILED, "boom"), 0);
    cr_assert_str_eq(j->error, "boom");
    cr_assert_eq(qs_job_transition(j, QS_JOB_RUNNING, NULL), QS_EINVAL, "failed is final");
    cr_assert_eq(qs_job_transition(j, QS_JOB_SUCCEEDED, NULL), QS_EINVAL, "failed is final");
    cr_assert_eq(j->state, QS_JOB_FAILED);
    qs_job_free(j);
}

Test(job, queued_can_be_cancelled)
{
    struct qs_job *j = qs_job_new(QS_JOB_PRUNE, NULL);
    cr_assert_eq(qs_job_transition(j, QS_JOB_CANCELLED, NULL), 0);
    cr_assert(qs_job_is_final(j));
    qs_job_free(j);
}

Test(job, ids_are_unique)
{
    struct qs_job *a = qs_job_new(QS_JOB_BACKUP, "api");
    struct qs_job *b = qs_job_new(QS_JOB_BACKUP, "api");
    cr_assert_str_neq(a->id, b->id);
    qs_job_free(a);
    qs_job_free(b);
}

Test(job, items_and_json)
{
    struct qs_job *j = qs_job_new(QS_JOB_BACKUP, "schedule");
    qs_job_transition(j, QS_JOB_RUNNING, NULL);
    cr_assert_not_null(qs_job_item(j, "alpha"));
    cr_assert_not_null(qs_job_item(j, "be\"ta"));
    struct qs_job_item *a = qs_job_item(j, "alpha");
    cr_assert_eq(j->nitems, 2, "same collection, same item");
    cr_assert_eq(a, &j->items[0]);
    struct qs_job_item *b = &j->items[1];
    a->done = 1;
    a->ok = 1;
    b->done = 1;
    b->error = strdup("checksum mismatch");
    size_t ok, failed;
    qs_job_counts(j, &ok, &failed);
    cr_assert_eq(ok, 1);
    cr_assert_eq(failed, 1);
    atomic_store(&j->bytes, 1234);
    qs_job_set_phase(j, "alpha", "verify");
    struct qs_buf out;
    qs_buf_init(&out);
    cr_assert_eq(qs_job_to_json(j, &out), 0);
    cr_assert_not_null(strstr(out.data, "\"state\":\"running\""), "%s", out.data);
    cr_assert_not_null(strstr(out.data, "\"phase\":\"verify\""), "%s", out.data);
    cr_assert_not_null(strstr(out.data, "\"bytes\":1234"), "%s", out.data);
    cr_assert_not_null(strstr(out.data, "\"collection\":\"be\\\"ta\""), "%s", out.data);
    cr_assert_not_null(strstr(out.data, "\"result\":\"failure\""), "%s", out.data);
    cr_assert_not_null(strstr(out.data, "\"error\":\"checksum mismatch\""), "%s", out.data);
    qs_buf_free(&out);
    qs_job_free(j);
}
