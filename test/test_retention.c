#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/error.h"
#include "qsnap/retention.h"
#include "qsnap/util.h"

#define HOUR 3600
#define DAY 86400
#define WEEK (7 * DAY)
#define NOW ((int64_t)1738380600) /* 2025-02-01T03:30:00Z */
#define MAXB 64
#define END INT64_MIN

/* One backup of a scenario: age in seconds at NOW (negative = dated in the
 * future); complete backups use it for the manifest's creation time,
 * incomplete ones for LastModified. */
struct spec {
    const char *collection;
    int64_t age;
    bool complete;
};

struct scenario {
    const char *name;
    struct qs_retention_policy policy;
    struct spec backups[MAXB];
    size_t nbackups;
    /* Indices of backups expected to be deleted, in the expected order. */
    size_t deleted[MAXB];
    size_t ndeleted;
    size_t nwarnings;
};

struct input {
    struct qs_retention_backup b[MAXB];
    char object[MAXB][128];
    char manifest[MAXB][128];
    char snapshot[MAXB][96];
};

static void build_input(const struct scenario *s, struct input *in)
{
    memset(in, 0, sizeof(*in));
    for (size_t i = 0; i < s->nbackups; i++) {
        const struct spec *sp = &s->backups[i];
        const int64_t t = NOW - sp->age;
        snprintf(in->snapshot[i], sizeof(in->snapshot[i]), "%s-1-%lld-%zu.snapshot", sp->collection,
                 (long long)t, i);
        snprintf(in->object[i], sizeof(in->object[i]), "%s/%s.gz", sp->collection, in->snapshot[i]);
        snprintf(in->manifest[i], sizeof(in->manifest[i]), "%s/%s.json", sp->collection,
                 in->snapshot[i]);
        struct qs_retention_backup *b = &in->b[i];
        b->collection = sp->collection;
        b->snapshot = in->snapshot[i];
        b->complete = sp->complete;
        b->object_key = in->object[i];
        if (sp->complete) {
            b->created = t;
            b->manifest_key = in->manifest[i];
            b->last_modified = t + 3600 * 24 * 365; /* must be ignored */
        } else {
            b->created = 0;
            b->last_modified = t;
        }
    }
}

/* Runs a scenario and checks every property of the plan. */
static void run(const struct scenario *s)
{
    struct input in;
    build_input(s, &in);
    struct qs_retention_plan plan;
    struct qs_error err;
    qs_error_clear(&err);
    int rc = qs_retention_plan(in.b, s->nbackups, NULL, 0, NOW, &s->policy, &plan, &err);
    cr_assert_eq(rc, 0, "%s: %s", s->name, err.msg);

    size_t a = 0, ncomplete = 0, ndeleted_complete = 0, ndeleted_incomplete = 0;
    for (size_t i = 0; i < s->nbackups; i++)
        ncomplete += s->backups[i].complete;
    for (size_t d = 0; d < s->ndeleted; d++) {
        const size_t idx = s->deleted[d];
        const struct spec *sp = &s->backups[idx];
        cr_assert_lt(a, plan.nactions, "%s: missing action for backup %zu", s->name, idx);
        if (sp->complete) {
            cr_assert_lt(a + 1, plan.nactions, "%s", s->name);
            const struct qs_retention_action *m = &plan.actions[a], *o = &plan.actions[a + 1];
            cr_assert_eq(m->kind, QS_RETENTION_DELETE_MANIFEST, "%s: action %zu", s->name, a);
            cr_assert_eq(m->index, idx, "%s: action %zu is for %zu, want %zu", s->name, a, m->index,
                         idx);
            cr_assert_str_eq(m->key, in.manifest[idx], "%s", s->name);
            cr_assert_str_eq(m->collection, sp->collection);
            cr_assert_str_eq(m->snapshot, in.snapshot[idx]);
            cr_assert_neq(m->reason[0], '\0');
            cr_assert_eq(o->kind, QS_RETENTION_DELETE_OBJECT, "%s", s->name);
            cr_assert_eq(o->index, idx);
            cr_assert_str_eq(o->key, in.object[idx]);
            cr_assert_null(o->upload_id);
            a += 2;
            ndeleted_complete++;
        } else {
            const struct qs_retention_action *x = &plan.actions[a];
            cr_assert_eq(x->kind, QS_RETENTION_DELETE_INCOMPLETE, "%s", s->name);
            cr_assert_eq(x->index, idx, "%s: got %zu want %zu", s->name, x->index, idx);
            cr_assert_str_eq(x->key, in.object[idx]);
            a += 1;
            ndeleted_incomplete++;
        }
        cr_assert_eq(plan.keep[idx], false, "%s: %zu", s->name, idx);
    }
    cr_assert_eq(plan.nactions, a, "%s: %zu actions, expected %zu", s->name, plan.nactions, a);
    size_t kept = 0;
    for (size_t i = 0; i < s->nbackups; i++)
        kept += plan.keep[i];
    cr_assert_eq(kept, s->nbackups - s->ndeleted, "%s", s->name);
    cr_assert_eq(plan.nbackups, s->nbackups);
    cr_assert_eq(plan.deleted_backups, ndeleted_complete, "%s", s->name);
    cr_assert_eq(plan.deleted_incomplete, ndeleted_incomplete, "%s", s->name);
    cr_assert_eq(plan.aborted_uploads, 0);
    cr_assert_eq(plan.kept_complete, ncomplete - ndeleted_complete, "%s", s->name);
    cr_assert_eq(qs_retention_count_kept(&plan, in.b, s->nbackups, NULL), plan.kept_complete);
    cr_assert_eq(plan.nwarnings, s->nwarnings, "%s: %zu warnings", s->name, plan.nwarnings);
    qs_retention_plan_deinit(&plan);
    cr_assert_eq(plan.nactions, 0);
    cr_assert_null(plan.actions);
}

static const struct qs_retention_policy WEEK_KEEP3 = {WEEK, 3, QS_RETENTION_INCOMPLETE_GRACE_S};

Test(retention, daily_for_30_days_keeps_one_week)
{
    /* Daily 03:00 backups; NOW is 03:30, so backup k is k days + 30 min old. */
    struct scenario s = {.name = "30 daily", .policy = WEEK_KEEP3};
    for (size_t k = 0; k < 30; k++)
        s.backups[s.nbackups++] = (struct spec){"c", (int64_t)k * DAY + 1800, true};
    /* k >= 7 are more than 7 days old; deleted oldest first. */
    for (size_t k = 30; k-- > 7;)
        s.deleted[s.ndeleted++] = k;
    run(&s);
}

Test(retention, retention_boundary_is_strict)
{
    struct scenario s = {
        .name = "boundary",
        .policy = {WEEK, 0, DAY},
        .backups = {{"c", WEEK, true}, {"c", WEEK + 1, true}, {"c", WEEK - 1, true}},
        .nbackups = 3,
        .deleted = {1},
        .ndeleted = 1,
    };
    run(&s);
}

Test(retention, failing_backups_keep_the_newest_old_ones)
{
    /* Backups failed for the last 10 days: only old ones exist. */
    struct scenario s = {
        .name = "failing",
        .policy = WEEK_KEEP3,
        .backups = {{"c", 14 * DAY, true},
                    {"c", 10 * DAY, true},
                    {"c", 12 * DAY, true},
                    {"c", 11 * DAY, true},
                    {"c", 13 * DAY, true}},
        .nbackups = 5,
        .deleted = {0, 4},
        .ndeleted = 2,
    };
    run(&s);
}

Test(retention, future_dated_manifest_kept_and_not_counted)
{
    /* keep_min 3 must protect the 3 newest *plausible* backups (2d, 3d, 4d);
     * if the future-dated one counted, the 4d one would go. */
    struct scenario s = {
        .name = "future",
        .policy = {DAY, 3, DAY},
        .backups = {{"c", -HOUR, true},
                    {"c", 2 * DAY, true},
                    {"c", 3 * DAY, true},
                    {"c", 4 * DAY, true},
                    {"c", 5 * DAY, true}},
        .nbackups = 5,
        .deleted = {4},
        .ndeleted = 1,
        .nwarnings = 1,
    };
    run(&s);

    /* Even with no protection at all an undatable backup stays. Times up to
     * the skew ahead are trusted (0 s old), one second more is suspect. */
    const int64_t SKEW = QS_RETENTION_CLOCK_SKEW_S;
    struct scenario s2 = {
        .name = "future, keep_min 0, retention 0",
        .policy = {0, 0, DAY},
        .backups = {{"c", -1, true},
                    {"c", -400 * DAY, true},
                    {"c", 0, true},
                    {"c", 1, true},
                    {"c", -SKEW, true},
                    {"c", -SKEW - 1, true}},
        .nbackups = 6,
        .deleted = {3},
        .ndeleted = 1,
        .nwarnings = 2,
    };
    run(&s2);
}

/* The backup of a collection under test: created (manifest), written
 * (manifest's LastModified). */
#define B(snap, created, written)                                                                  \
    {                                                                                              \
        "c", snap, created, true, "c/" snap, "c/" snap ".json", written, NULL, NULL, 0             \
    }

/* Issue: one backup taken while Qdrant's clock ran a month ahead was kept
 * forever and pinned retention. Dated by when it was written, it ages and is
 * pruned like the others once keep_min newer backups exist. */
Test(retention, suspect_backup_is_dated_by_write_time_and_pruned)
{
    const struct qs_retention_backup b[] = {
        B("s", NOW + 30 * DAY, NOW - 10 * DAY),
        B("g1", NOW - 1 * DAY, NOW - 1 * DAY),
        B("g2", NOW - 2 * DAY, NOW - 2 * DAY),
        B("g3", NOW - 3 * DAY, NOW - 3 * DAY),
    };
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(b, 4, NULL, 0, NOW, &WEEK_KEEP3, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 2);
    cr_assert_eq(plan.actions[0].kind, QS_RETENTION_DELETE_MANIFEST);
    cr_assert_str_eq(plan.actions[0].key, "c/s.json");
    cr_assert_not_null(strstr(plan.actions[0].reason, "written 2025-01-22T03:30:00Z"), "%s",
                       plan.actions[0].reason);
    cr_assert_eq(plan.actions[1].kind, QS_RETENTION_DELETE_OBJECT);
    cr_assert_eq(plan.deleted_backups, 1);
    cr_assert_eq(plan.suspect, 1);
    cr_assert_eq(plan.kept_future, 0);
    cr_assert_eq(plan.nwarnings, 1);
    /* The warning names collection, snapshot and how far ahead it is. */
    cr_assert_not_null(strstr(plan.warnings[0], "collection c: snapshot s "), "%s",
                       plan.warnings[0]);
    cr_assert_not_null(strstr(plan.warnings[0], "2592000 s ahead"), "%s", plan.warnings[0]);
    cr_assert_not_null(strstr(plan.warnings[0], "2025-01-22T03:30:00Z"), "%s", plan.warnings[0]);
    /* It is not the newest backup for freshness. */
    int64_t t = 0;
    cr_assert_eq(qs_retention_newest(NULL, b, 4, "c", NOW, &t), 0);
    cr_assert_eq(t, NOW - DAY);
    qs_retention_plan_deinit(&plan);
}

Test(retention, suspect_backups_never_take_keep_min_from_genuine_ones)
{
    /* Backups have failed for 10 days; a suspect one was written yesterday.
     * The 3 newest genuine ones stay (keep_min), and so does the suspect one
     * (1 day old); only the 4th genuine one goes. */
    const struct qs_retention_backup b[] = {
        B("g10", NOW - 10 * DAY, NOW - 10 * DAY), B("g11", NOW - 11 * DAY, NOW - 11 * DAY),
        B("g12", NOW - 12 * DAY, NOW - 12 * DAY), B("g13", NOW - 13 * DAY, NOW - 13 * DAY),
        B("s", NOW + 365 * DAY, NOW - 1 * DAY),
    };
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(b, 5, NULL, 0, NOW, &WEEK_KEEP3, &plan, NULL), 0);
    cr_assert_eq(plan.deleted_backups, 1);
    cr_assert_str_eq(plan.actions[0].key, "c/g13.json");
    cr_assert_eq(plan.kept_complete, 4);
    /* Freshness: the suspect one counts from when it was written. */
    int64_t t = 0;
    cr_assert_eq(qs_retention_newest(&plan, b, 5, "c", NOW, &t), 0);
    cr_assert_eq(t, NOW - DAY);
    qs_retention_plan_deinit(&plan);
}

Test(retention, suspect_backup_written_with_a_genuine_one_counts_as_older)
{
    /* Same write second: the genuine backup takes the keep_min slot, whatever
     * the names say (the suspect one's name sorts after it). */
    const struct qs_retention_backup b[] = {
        B("z-suspect", NOW + 30 * DAY, NOW - 8 * DAY),
        B("a-genuine", NOW - 8 * DAY, NOW - 8 * DAY),
    };
    struct qs_retention_policy p = {WEEK, 1, DAY};
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(b, 2, NULL, 0, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.deleted_backups, 1);
    cr_assert_str_eq(plan.actions[0].key, "c/z-suspect.json");
    qs_retention_plan_deinit(&plan);
}

Test(retention, suspect_backups_are_protected_among_the_newest)
{
    /* Qdrant's clock is always ahead and backups have failed for 10 days:
     * every backup is suspect; keep_min still keeps the 3 newest. */
    const struct qs_retention_backup b[] = {
        B("s10", NOW + 90 * DAY, NOW - 10 * DAY),
        B("s11", NOW + 89 * DAY, NOW - 11 * DAY),
        B("s12", NOW + 88 * DAY, NOW - 12 * DAY),
        B("s13", NOW + 87 * DAY, NOW - 13 * DAY),
    };
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(b, 4, NULL, 0, NOW, &WEEK_KEEP3, &plan, NULL), 0);
    cr_assert_eq(plan.deleted_backups, 1);
    cr_assert_str_eq(plan.actions[0].key, "c/s13.json");
    cr_assert_eq(plan.suspect, 4);
    cr_assert_eq(plan.nwarnings, 4);
    qs_retention_plan_deinit(&plan);
}

Test(retention, drill_result_deleted_between_manifest_and_object)
{
    struct qs_retention_backup b[] = {
        B("old", NOW - 30 * DAY, NOW - 30 * DAY),
        B("new", NOW - 1 * DAY, NOW - 1 * DAY),
    };
    b[0].drill_key = "c/old.drill.json";
    b[1].drill_key = "c/new.drill.json";
    struct qs_retention_policy p = {WEEK, 1, DAY};
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(b, 2, NULL, 0, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 3);
    cr_assert_eq(plan.actions[0].kind, QS_RETENTION_DELETE_MANIFEST);
    cr_assert_str_eq(plan.actions[0].key, "c/old.json");
    cr_assert_eq(plan.actions[1].kind, QS_RETENTION_DELETE_DRILL);
    cr_assert_str_eq(plan.actions[1].key, "c/old.drill.json");
    cr_assert_eq(plan.actions[1].index, 0);
    cr_assert_not_null(strstr(plan.actions[1].reason, "c/old.json"), "%s", plan.actions[1].reason);
    cr_assert_eq(plan.actions[2].kind, QS_RETENTION_DELETE_OBJECT);
    cr_assert_str_eq(plan.actions[2].key, "c/old");
    cr_assert_eq(plan.actions[2].index, 0);
    cr_assert_eq(plan.deleted_backups, 1);
    cr_assert_str_eq(qs_retention_action_name(QS_RETENTION_DELETE_DRILL), "delete-drill-result");
    qs_retention_plan_deinit(&plan);

    /* An orphan drill result (its backup is gone) is an incomplete object. */
    const struct qs_retention_backup orphan[] = {
        {"c", NULL, 0, false, "c/gone.drill.json", NULL, NOW - DAY - 1, NULL, NULL, 0},
        {"c", NULL, 0, false, "c/young.drill.json", NULL, NOW - DAY, NULL, NULL, 0},
    };
    cr_assert_eq(qs_retention_plan(orphan, 2, NULL, 0, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 1);
    cr_assert_eq(plan.actions[0].kind, QS_RETENTION_DELETE_INCOMPLETE);
    cr_assert_str_eq(plan.actions[0].key, "c/gone.drill.json");
    cr_assert_eq(plan.deleted_backups, 0);
    cr_assert_eq(plan.kept_complete, 0);
    qs_retention_plan_deinit(&plan);
}

Test(retention, backup_time)
{
    const int64_t SKEW = QS_RETENTION_CLOCK_SKEW_S;
    bool sus = true;
    cr_assert_eq(qs_retention_backup_time(NOW - DAY, NOW + 400 * DAY, NOW, &sus), NOW - DAY);
    cr_assert_eq(sus, false);
    cr_assert_eq(qs_retention_backup_time(NOW + SKEW, 0, NOW, &sus), NOW + SKEW);
    cr_assert_eq(sus, false);
    cr_assert_eq(qs_retention_backup_time(NOW + SKEW + 1, NOW - HOUR, NOW, &sus), NOW - HOUR);
    cr_assert_eq(sus, true);
    cr_assert_eq(qs_retention_backup_time(NOW + 30 * DAY, NOW + SKEW, NOW, &sus), NOW + SKEW);
    cr_assert_eq(qs_retention_backup_time(NOW + 30 * DAY, NOW + SKEW + 1, NOW, &sus), -1);
    cr_assert_eq(sus, true);
    cr_assert_eq(qs_retention_backup_time(NOW + 30 * DAY, 0, NOW, NULL), -1);
    cr_assert_eq(qs_retention_backup_time(INT64_MAX, NOW, NOW, NULL), NOW);
}

Test(retention, staleness_with_grace_from_first_sight)
{
    const int64_t S = 26 * HOUR;
    /* With a backup: its age decides, first sight plays no role. */
    cr_assert_eq(qs_retention_is_stale(NOW - S, NOW - 100 * DAY, NOW, S), 0);
    cr_assert_eq(qs_retention_is_stale(NOW - S - 1, NOW, NOW, S), 1);
    cr_assert_eq(qs_retention_is_stale(NOW + HOUR, NOW - 100 * DAY, NOW, S), 0);
    /* Without one: stale only after the grace from first sight. */
    cr_assert_eq(qs_retention_is_stale(0, NOW, NOW, S), 0);
    cr_assert_eq(qs_retention_is_stale(0, NOW - S, NOW, S), 0);
    cr_assert_eq(qs_retention_is_stale(0, NOW - S - 1, NOW, S), 1);
    cr_assert_eq(qs_retention_is_stale(0, NOW + DAY, NOW, S), 0);
    /* Never seen and never backed up: stale. */
    cr_assert_eq(qs_retention_is_stale(0, 0, NOW, S), 1);
}

Test(retention, future_warning_text)
{
    struct qs_retention_backup b = {.collection = "c",
                                    .snapshot = "s.snapshot",
                                    .created = NOW + DAY,
                                    .complete = true,
                                    .object_key = "c/s.snapshot",
                                    .manifest_key = "c/s.snapshot.json"};
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(&b, 1, NULL, 0, NOW, &WEEK_KEEP3, &plan, NULL), 0);
    cr_assert_eq(plan.nwarnings, 1);
    cr_assert_not_null(strstr(plan.warnings[0], "c/s.snapshot.json"), "%s", plan.warnings[0]);
    cr_assert_not_null(strstr(plan.warnings[0], "2025-02-02T03:30:00Z"), "%s", plan.warnings[0]);
    cr_assert_eq(plan.kept_future, 1);
    cr_assert_eq(plan.kept_complete, 1);
    /* The future-dated backup is not the "newest" for metrics. */
    int64_t t = 0;
    cr_assert_eq(qs_retention_newest(&plan, &b, 1, "c", NOW, &t), QS_ENOTFOUND);
    qs_retention_plan_deinit(&plan);
}

Test(retention, several_backups_per_day_are_not_thinned)
{
    struct scenario s = {
        .name = "same day",
        .policy = WEEK_KEEP3,
        .backups = {{"c", 1 * HOUR, true},
                    {"c", 2 * HOUR, true},
                    {"c", 3 * HOUR, true},
                    {"c", 4 * HOUR, true},
                    {"c", 5 * HOUR, true},
                    /* five on one day ten days ago */
                    {"c", 10 * DAY + 1 * HOUR, true},
                    {"c", 10 * DAY + 2 * HOUR, true},
                    {"c", 10 * DAY + 3 * HOUR, true},
                    {"c", 10 * DAY + 4 * HOUR, true},
                    {"c", 10 * DAY + 5 * HOUR, true}},
        .nbackups = 10,
        .deleted = {9, 8, 7, 6, 5},
        .ndeleted = 5,
    };
    run(&s);

    /* Without recent ones, the three newest of that old day stay. */
    struct scenario s2 = {
        .name = "same old day",
        .policy = WEEK_KEEP3,
        .backups = {{"c", 10 * DAY + 3 * HOUR, true},
                    {"c", 10 * DAY + 1 * HOUR, true},
                    {"c", 10 * DAY + 5 * HOUR, true},
                    {"c", 10 * DAY + 2 * HOUR, true},
                    {"c", 10 * DAY + 4 * HOUR, true}},
        .nbackups = 5,
        .deleted = {2, 4},
        .ndeleted = 2,
    };
    run(&s2);
}

Test(retention, collections_are_independent)
{
    /* "gone" no longer exists in Qdrant: the policy treats it the same. Many
     * recent backups of "live" do not count toward keep_min of "gone". */
    struct scenario s = {
        .name = "two collections",
        .policy = WEEK_KEEP3,
        .backups = {{"live", 1 * DAY, true},
                    {"gone", 40 * DAY, true},
                    {"live", 2 * DAY, true},
                    {"gone", 41 * DAY, true},
                    {"live", 3 * DAY, true},
                    {"gone", 42 * DAY, true},
                    {"live", 4 * DAY, true},
                    {"gone", 43 * DAY, true},
                    {"live", 9 * DAY, true}},
        .nbackups = 9,
        /* per collection in byte order ("gone" < "live"), oldest first */
        .deleted = {7, 8},
        .ndeleted = 2,
    };
    run(&s);
}

Test(retention, incomplete_objects_by_age)
{
    struct scenario s = {
        .name = "incomplete",
        .policy = WEEK_KEEP3,
        .backups = {{"c", 2 * DAY, false},
                    {"c", HOUR, false},
                    {"c", DAY, false},     /* exactly the grace: kept */
                    {"c", DAY + 1, false}, /* one second more: deleted */
                    {"c", -DAY, false},    /* future LastModified: kept */
                    {"c", 30 * DAY, true}, /* a lone old complete backup stays (keep_min) */
                    {"c", 30 * DAY, false}},
        .nbackups = 7,
        .deleted = {0, 3, 6},
        .ndeleted = 3,
    };
    run(&s);
}

Test(retention, complete_backups_ignore_last_modified)
{
    /* A recent manifest date with an ancient LastModified (e.g. copied
     * bucket): only the manifest counts. */
    struct qs_retention_backup b = {.collection = "c",
                                    .snapshot = "s.snapshot",
                                    .created = NOW - HOUR,
                                    .complete = true,
                                    .object_key = "c/s.snapshot",
                                    .manifest_key = "c/s.snapshot.json",
                                    .last_modified = 0};
    struct qs_retention_policy p = {HOUR - 1, 0, DAY};
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(&b, 1, NULL, 0, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 2, "age 3600 > retention 3599 must prune");
    cr_assert_not_null(strstr(plan.actions[0].reason, "2025-02-01T02:30:00Z"), "%s",
                       plan.actions[0].reason);
    qs_retention_plan_deinit(&plan);
    p.retention_s = HOUR;
    cr_assert_eq(qs_retention_plan(&b, 1, NULL, 0, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 0);
    qs_retention_plan_deinit(&plan);
}

Test(retention, multipart_uploads_by_age)
{
    const struct qs_retention_upload up[] = {
        {"c/a.snapshot.gz", "id-2d", NOW - 2 * DAY},
        {"c/b.snapshot.gz", "id-1h", NOW - HOUR},
        {"c/c.snapshot.gz", "id-24h", NOW - DAY},
        {"c/d.snapshot.gz", "id-24h1s", NOW - DAY - 1},
        {"c/e.snapshot.gz", "id-future", NOW + HOUR},
    };
    struct qs_retention_plan plan;
    struct qs_retention_policy p = WEEK_KEEP3;
    cr_assert_eq(qs_retention_plan(NULL, 0, up, 5, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 2);
    cr_assert_eq(plan.aborted_uploads, 2);
    cr_assert_eq(plan.actions[0].kind, QS_RETENTION_ABORT_UPLOAD);
    cr_assert_str_eq(plan.actions[0].key, "c/a.snapshot.gz");
    cr_assert_str_eq(plan.actions[0].upload_id, "id-2d");
    cr_assert_eq(plan.actions[0].index, 0);
    cr_assert_str_eq(plan.actions[1].upload_id, "id-24h1s");
    cr_assert_eq(plan.actions[1].index, 3);
    cr_assert_not_null(strstr(plan.actions[0].reason, "172800s"), "%s", plan.actions[0].reason);
    qs_retention_plan_deinit(&plan);
}

Test(retention, order_backups_then_incomplete_then_uploads)
{
    const struct qs_retention_backup b[] = {
        {"c", NULL, 0, false, "c/x.snapshot", NULL, NOW - 3 * DAY, NULL, NULL, 0},
        {"c", "old.snapshot", NOW - 30 * DAY, true, "c/old.snapshot", "c/old.snapshot.json", 0,
         NULL, NULL, 0},
    };
    const struct qs_retention_upload up[] = {{"c/y.snapshot", "u1", NOW - 3 * DAY}};
    struct qs_retention_policy p = {WEEK, 0, DAY};
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(b, 2, up, 1, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 4);
    cr_assert_eq(plan.actions[0].kind, QS_RETENTION_DELETE_MANIFEST);
    cr_assert_str_eq(plan.actions[0].key, "c/old.snapshot.json");
    cr_assert_eq(plan.actions[1].kind, QS_RETENTION_DELETE_OBJECT);
    cr_assert_str_eq(plan.actions[1].key, "c/old.snapshot");
    cr_assert_eq(plan.actions[2].kind, QS_RETENTION_DELETE_INCOMPLETE);
    cr_assert_str_eq(plan.actions[2].key, "c/x.snapshot");
    cr_assert_null(plan.actions[2].snapshot);
    cr_assert_eq(plan.actions[3].kind, QS_RETENTION_ABORT_UPLOAD);
    cr_assert_eq(plan.kept_complete, 0);
    cr_assert_str_eq(qs_retention_action_name(plan.actions[0].kind), "delete-manifest");
    cr_assert_str_eq(qs_retention_action_name(plan.actions[1].kind), "delete-object");
    cr_assert_str_eq(qs_retention_action_name(plan.actions[2].kind), "delete-incomplete");
    cr_assert_str_eq(qs_retention_action_name(plan.actions[3].kind), "abort-upload");
    qs_retention_plan_deinit(&plan);
}

Test(retention, keep_min_larger_than_backups)
{
    struct scenario s = {
        .name = "keep_min 5 of 2",
        .policy = {WEEK, 5, DAY},
        .backups = {{"c", 30 * DAY, true}, {"c", 300 * DAY, true}},
        .nbackups = 2,
    };
    run(&s);
}

Test(retention, retention_zero)
{
    /* Everything older than "now" goes except the keep_min newest. */
    struct scenario s = {
        .name = "retention 0, keep_min 1",
        .policy = {0, 1, DAY},
        .backups = {{"c", 2 * DAY, true}, {"c", 1, true}, {"c", 1 * DAY, true}},
        .nbackups = 3,
        .deleted = {0, 2},
        .ndeleted = 2,
    };
    run(&s);
    struct scenario s2 = {
        .name = "retention 0, keep_min 0",
        .policy = {0, 0, DAY},
        .backups = {{"c", 0, true}, {"c", 1, true}, {"c", 2 * DAY, true}},
        .nbackups = 3,
        .deleted = {2, 1},
        .ndeleted = 2,
    };
    run(&s2);
}

Test(retention, empty_input)
{
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(NULL, 0, NULL, 0, NOW, &WEEK_KEEP3, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 0);
    cr_assert_eq(plan.kept_complete, 0);
    int64_t t;
    cr_assert_eq(qs_retention_newest(&plan, NULL, 0, "c", NOW, &t), QS_ENOTFOUND);
    qs_retention_plan_deinit(&plan);
}

Test(retention, invalid_input)
{
    struct qs_retention_plan plan;
    struct qs_error err;
    struct qs_retention_policy p = {-1, 3, DAY};
    cr_assert_eq(qs_retention_plan(NULL, 0, NULL, 0, NOW, &p, &plan, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "retention"), "%s", err.msg);
    p = (struct qs_retention_policy){WEEK, 3, -1};
    cr_assert_eq(qs_retention_plan(NULL, 0, NULL, 0, NOW, &p, &plan, &err), QS_EINVAL);
    cr_assert_eq(qs_retention_plan(NULL, 0, NULL, 0, NOW, NULL, &plan, &err), QS_EINVAL);
    const struct qs_retention_backup no_manifest = {"c",  "s", NOW,  true, "c/s",
                                                    NULL, 0,   NULL, NULL, 0};
    cr_assert_eq(qs_retention_plan(&no_manifest, 1, NULL, 0, NOW, &WEEK_KEEP3, &plan, &err),
                 QS_EINVAL);
    const struct qs_retention_backup no_object = {"c",  "s", NOW,  false, NULL,
                                                  NULL, 0,   NULL, NULL,  0};
    cr_assert_eq(qs_retention_plan(&no_object, 1, NULL, 0, NOW, &WEEK_KEEP3, &plan, &err),
                 QS_EINVAL);
    const struct qs_retention_upload no_id = {"c/s", NULL, 0};
    cr_assert_eq(qs_retention_plan(NULL, 0, &no_id, 1, NOW, &WEEK_KEEP3, &plan, &err), QS_EINVAL);
    cr_assert_eq(qs_retention_plan(NULL, 2, NULL, 0, NOW, &WEEK_KEEP3, &plan, &err), QS_EINVAL);
    cr_assert_eq(plan.nactions, 0);
    qs_retention_plan_deinit(&plan);
}

Test(retention, metrics_helpers)
{
    const struct qs_retention_backup b[] = {
        {"a", "1", NOW - 30 * DAY, true, "a/1", "a/1.json", 0, NULL, NULL, 0},
        {"a", "2", NOW - 20 * DAY, true, "a/2", "a/2.json", 0, NULL, NULL, 0},
        {"a", "3", NOW - 1 * DAY, true, "a/3", "a/3.json", 0, NULL, NULL, 0},
        {"a", "4", NOW + 1 * DAY, true, "a/4", "a/4.json", 0, NULL, NULL, 0},
        {"a", NULL, 0, false, "a/5", NULL, NOW - 1 * HOUR, NULL, NULL, 0},
        {"b", "6", NOW - 2 * DAY, true, "b/6", "b/6.json", 0, NULL, NULL, 0},
    };
    struct qs_retention_policy p = {WEEK, 1, DAY};
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(b, 6, NULL, 0, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.deleted_backups, 2);
    cr_assert_eq(plan.kept_complete, 3);
    cr_assert_eq(plan.kept_future, 1);
    cr_assert_eq(qs_retention_count_kept(&plan, b, 6, NULL), 3);
    cr_assert_eq(qs_retention_count_kept(&plan, b, 6, "a"), 2);
    cr_assert_eq(qs_retention_count_kept(&plan, b, 6, "b"), 1);
    cr_assert_eq(qs_retention_count_kept(&plan, b, 6, "zzz"), 0);
    cr_assert_eq(qs_retention_count_kept(NULL, b, 6, "a"), 4);
    int64_t t = 0;
    cr_assert_eq(qs_retention_newest(&plan, b, 6, "a", NOW, &t), 0);
    cr_assert_eq(t, NOW - DAY);
    cr_assert_eq(qs_retention_newest(&plan, b, 6, NULL, NOW, &t), 0);
    cr_assert_eq(t, NOW - DAY);
    cr_assert_eq(qs_retention_newest(&plan, b, 6, "b", NOW, &t), 0);
    cr_assert_eq(t, NOW - 2 * DAY);
    qs_retention_plan_deinit(&plan);

    /* Without a plan: among all complete ones; a pruned one is not "newest". */
    const struct qs_retention_backup old[] = {
        {"a", "1", NOW - 30 * DAY, true, "a/1", "a/1.json", 0, NULL, NULL, 0},
        {"a", "2", NOW - 20 * DAY, true, "a/2", "a/2.json", 0, NULL, NULL, 0},
    };
    cr_assert_eq(qs_retention_newest(NULL, old, 2, "a", NOW, &t), 0);
    cr_assert_eq(t, NOW - 20 * DAY);
    p.keep_min = 0;
    cr_assert_eq(qs_retention_plan(old, 2, NULL, 0, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(qs_retention_newest(&plan, old, 2, "a", NOW, &t), QS_ENOTFOUND);
    qs_retention_plan_deinit(&plan);
}

/* A shards backup is one backup of several objects: its manifest goes first,
 * then its drill result, then every shard object; it counts once. */
Test(retention, shards_backup_is_deleted_whole_manifest_first)
{
    const char *const more[] = {"c/r-old/shard-1.snapshot", "c/r-old/shard-2.snapshot"};
    const struct qs_retention_backup b[] = {
        {"c", "r-old", NOW - 30 * DAY, true, "c/r-old/shard-0.snapshot", "c/r-old.json", 0,
         "c/r-old.drill.json", more, 2},
        {"c", "r-new", NOW - 1 * DAY, true, "c/r-new/shard-0.snapshot", "c/r-new.json", 0, NULL,
         NULL, 0},
    };
    struct qs_retention_policy p = {WEEK, 1, DAY};
    struct qs_retention_plan plan;
    cr_assert_eq(qs_retention_plan(b, 2, NULL, 0, NOW, &p, &plan, NULL), 0);
    cr_assert_eq(plan.nactions, 5);
    static const char *const want[] = {"c/r-old.json", "c/r-old.drill.json",
                                       "c/r-old/shard-0.snapshot", "c/r-old/shard-1.snapshot",
                                       "c/r-old/shard-2.snapshot"};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_str_eq(plan.actions[i].key, want[i]);
        cr_assert_eq(plan.actions[i].index, 0);
    }
    cr_assert_eq(plan.actions[0].kind, QS_RETENTION_DELETE_MANIFEST);
    cr_assert_eq(plan.actions[1].kind, QS_RETENTION_DELETE_DRILL);
    for (size_t i = 2; i < 5; i++)
        cr_assert_eq(plan.actions[i].kind, QS_RETENTION_DELETE_OBJECT);
    cr_assert_eq(plan.deleted_backups, 1);
    cr_assert_eq(plan.kept_complete, 1);
    qs_retention_plan_deinit(&plan);
    /* A missing further key is refused. */
    const char *const holes[] = {"c/r/shard-1.snapshot", NULL};
    const struct qs_retention_backup bad = {"c",        "r", NOW,  true,  "c/r/shard-0.snapshot",
                                            "c/r.json", 0,   NULL, holes, 2};
    struct qs_error err;
    cr_assert_eq(qs_retention_plan(&bad, 1, NULL, 0, NOW, &p, &plan, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "further object"), "%s", err.msg);
    qs_retention_plan_deinit(&plan);
}
