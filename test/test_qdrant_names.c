#include <criterion/criterion.h>
#include <string.h>

#include "qsnap/error.h"
#include "qsnap/qdrant.h"
#include "qsnap/util.h"

Test(qdrant_names, simple_collection)
{
    char c[256];
    uint64_t peer = 1;
    int64_t ts = 0;
    cr_assert_eq(qs_snapshot_name_parse("mycoll-7907145935075663-2025-01-28-10-15-02.snapshot", c,
                                        sizeof(c), &peer, &ts),
                 0);
    cr_assert_str_eq(c, "mycoll");
    cr_assert_eq(peer, 7907145935075663ULL);
    cr_assert_eq(ts, qs_timegm(2025, 1, 28, 10, 15, 2));
    cr_assert_eq(ts, 1738059302);
}

Test(qdrant_names, collection_with_dashes)
{
    char c[256];
    uint64_t peer = 0;
    int64_t ts = 0;
    cr_assert_eq(qs_snapshot_name_parse("a-b-c-7907145935075663-2025-01-28-10-15-02.snapshot", c,
                                        sizeof(c), &peer, &ts),
                 0);
    cr_assert_str_eq(c, "a-b-c");
    cr_assert_eq(peer, 7907145935075663ULL);
    cr_assert_eq(ts, qs_timegm(2025, 1, 28, 10, 15, 2));
}

Test(qdrant_names, collection_looking_like_a_snapshot)
{
    /* Dashes and digits inside the collection name do not confuse the parser. */
    char c[256];
    uint64_t peer = 0;
    int64_t ts = 0;
    cr_assert_eq(qs_snapshot_name_parse("agent-42-2024-12-31-1-2024-02-29-23-59-59.snapshot", c,
                                        sizeof(c), &peer, &ts),
                 0);
    cr_assert_str_eq(c, "agent-42-2024-12-31");
    cr_assert_eq(peer, 1);
    cr_assert_eq(ts, qs_timegm(2024, 2, 29, 23, 59, 59));
    /* A collection literally called "full-snapshot" is still a collection. */
    cr_assert_eq(qs_snapshot_name_parse("full-snapshot-99-2025-01-01-00-00-00.snapshot", c,
                                        sizeof(c), &peer, &ts),
                 0);
    cr_assert_str_eq(c, "full-snapshot");
    cr_assert_eq(peer, 99);
    /* Unicode collection names pass through byte for byte. */
    cr_assert_eq(qs_snapshot_name_parse("k\xc3\xa4se-5-2025-01-01-00-00-00.snapshot", c, sizeof(c),
                                        &peer, &ts),
                 0);
    cr_assert_str_eq(c, "k\xc3\xa4se");
}

Test(qdrant_names, full_snapshot)
{
    char c[256] = "garbage";
    uint64_t peer = 77;
    int64_t ts = 0;
    cr_assert_eq(qs_snapshot_name_parse("full-snapshot-2025-01-28-10-15-02.snapshot", c, sizeof(c),
                                        &peer, &ts),
                 0);
    cr_assert_str_eq(c, "");
    cr_assert_eq(peer, 0);
    cr_assert_eq(ts, qs_timegm(2025, 1, 28, 10, 15, 2));
}

Test(qdrant_names, null_outputs)
{
    cr_assert_eq(qs_snapshot_name_parse("c-1-2025-01-28-10-15-02.snapshot", NULL, 0, NULL, NULL),
                 0);
    int64_t ts = 0;
    cr_assert_eq(qs_snapshot_name_parse("c-1-2025-01-28-10-15-02.snapshot", NULL, 0, NULL, &ts), 0);
    cr_assert_eq(ts, qs_timegm(2025, 1, 28, 10, 15, 2));
}

Test(qdrant_names, max_peer_id_and_overflow)
{
    uint64_t peer = 0;
    cr_assert_eq(qs_snapshot_name_parse("c-18446744073709551615-2025-01-28-10-15-02.snapshot", NULL,
                                        0, &peer, NULL),
                 0);
    cr_assert_eq(peer, UINT64_MAX);
    cr_assert_eq(qs_snapshot_name_parse("c-18446744073709551616-2025-01-28-10-15-02.snapshot", NULL,
                                        0, &peer, NULL),
                 QS_EINVAL);
}

Test(qdrant_names, collection_too_long_for_buffer)
{
    char c[4];
    cr_assert_eq(
        qs_snapshot_name_parse("abcd-1-2025-01-28-10-15-02.snapshot", c, sizeof(c), NULL, NULL),
        QS_ETOOBIG);
    cr_assert_eq(
        qs_snapshot_name_parse("abc-1-2025-01-28-10-15-02.snapshot", c, sizeof(c), NULL, NULL), 0);
    cr_assert_str_eq(c, "abc");
}

Test(qdrant_names, rejects_malformed)
{
    static const char *bad[] = {
        "",
        ".snapshot",
        "c-1-2025-01-28-10-15-02",                   /* no extension */
        "c-1-2025-01-28-10-15-02.snapshot.checksum", /* sidecar file */
        "c-1-2025-01-28-10-15-02.tmp",
        "c-2025-01-28-10-15-02.snapshot",    /* no peer id */
        "-1-2025-01-28-10-15-02.snapshot",   /* empty collection */
        "c-x1-2025-01-28-10-15-02.snapshot", /* peer id not digits */
        "c-1-2025-13-28-10-15-02.snapshot",  /* month 13 */
        "c-1-2025-02-29-10-15-02.snapshot",  /* not a leap year */
        "c-1-2025-01-28-24-15-02.snapshot",  /* hour 24 */
        "c-1-2025-01-28-10-60-02.snapshot",  /* minute 60 */
        "c-1-2025-01-28T10:15:02.snapshot",  /* wrong separators */
        "c-1-2025-1-28-10-15-02.snapshot",   /* short field */
        "c-1_2025-01-28-10-15-02.snapshot",  /* wrong separator before timestamp */
        "full-snapshot-2025-01-28-10-15.snapshot",
        "fullsnapshot-2025-01-28-10-15-02.snapshot",
        "c-1-2025-01-28-10-15-02.SNAPSHOT",
    };
    char c[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(qs_snapshot_name_parse(bad[i], c, sizeof(c), NULL, NULL), QS_EINVAL,
                     "accepted '%s'", bad[i]);
    cr_assert_eq(qs_snapshot_name_parse(NULL, c, sizeof(c), NULL, NULL), QS_EINVAL);
    /* The output is cleared on failure. */
    cr_assert_str_eq(c, "");
}

Test(qdrant_names, leap_day_and_leap_second_bounds)
{
    int64_t ts;
    cr_assert_eq(qs_snapshot_name_parse("c-1-2024-02-29-00-00-00.snapshot", NULL, 0, NULL, &ts), 0);
    cr_assert_eq(ts, qs_timegm(2024, 2, 29, 0, 0, 0));
    cr_assert_eq(qs_snapshot_name_parse("c-1-2000-02-29-00-00-00.snapshot", NULL, 0, NULL, &ts), 0);
    cr_assert_eq(qs_snapshot_name_parse("c-1-1900-02-29-00-00-00.snapshot", NULL, 0, NULL, &ts),
                 QS_EINVAL);
    cr_assert_eq(qs_snapshot_name_parse("c-1-2025-04-31-00-00-00.snapshot", NULL, 0, NULL, &ts),
                 QS_EINVAL);
}

static struct qs_snapshot_info mk(const char *name, int64_t ct)
{
    struct qs_snapshot_info s;
    memset(&s, 0, sizeof(s));
    qs_strlcpy(s.name, name, sizeof(s.name));
    s.creation_time = ct;
    return s;
}

Test(qdrant_names, sort_newest_first)
{
    struct qs_snapshot_info v[] = {
        mk("c-1-2025-01-01-00-00-00.snapshot", 5),
        mk("c-1-2025-03-01-00-00-00.snapshot", 1),
        mk("uploaded.snapshot", qs_timegm(2025, 2, 1, 0, 0, 0)), /* falls back to creation_time */
        mk("c-1-2024-12-31-23-59-59.snapshot", -1),
        mk("c-2-2025-03-01-00-00-00.snapshot", -1), /* same second, ordered by name */
    };
    qs_snapshot_infos_sort_newest_first(v, sizeof(v) / sizeof(v[0]));
    cr_assert_str_eq(v[0].name, "c-2-2025-03-01-00-00-00.snapshot");
    cr_assert_str_eq(v[1].name, "c-1-2025-03-01-00-00-00.snapshot");
    cr_assert_str_eq(v[2].name, "uploaded.snapshot");
    cr_assert_str_eq(v[3].name, "c-1-2025-01-01-00-00-00.snapshot");
    cr_assert_str_eq(v[4].name, "c-1-2024-12-31-23-59-59.snapshot");
    qs_snapshot_infos_sort_newest_first(NULL, 0);
}
