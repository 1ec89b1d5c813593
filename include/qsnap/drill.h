/* Restore drills: scratch collection names and the drill result record.
 * Pure module: no I/O.
 *
 * A drill restores the newest backup of a collection into the scratch
 * collection "{c}__qsnap_drill", compares points_count with the manifest and
 * deletes the scratch collection. Scratch collections are never backed up,
 * never restore targets, and never get metric series.
 *
 * The result is stored beside the backup it tested, under
 * "{c}/{snapshot}.drill.json" (qs_manifest_drill_key()):
 *
 *   {
 *     "format": 1,
 *     "collection": "c",
 *     "snapshot": "c-1-2025-02-01-03-00-00.snapshot",
 *     "result": "success",                 (or "failure")
 *     "finished": "2025-02-01T04:00:07Z",
 *     "duration_s": 12.5,
 *     "points_expected": 100000,           (manifest's points_count; null if unknown)
 *     "points_restored": 100000,           (null when the restore did not get that far)
 *     "error": null                        (the reason of a failure)
 *   }
 *
 * The file is not a backup object: a newer drill of the same backup replaces
 * it; retention deletes it together with its backup, after the manifest; a
 * drill result left without its manifest is an incomplete object (deleted
 * after the 24 h grace, never counted as a backup). */
#ifndef QSNAP_DRILL_H
#define QSNAP_DRILL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qsnap/error.h"
#include "qsnap/util.h"

/* Suffix of restore-drill scratch collections. */
#define QS_DRILL_SUFFIX "__qsnap_drill"

/* Current drill result format; parsing refuses larger values (QS_EPROTO). */
#define QS_DRILL_FORMAT 1

/* Largest drill result file read back. */
#define QS_DRILL_RESULT_MAX (64 * 1024)

/* One drill result. Strings owned (freed by qs_drill_result_deinit); a
 * zeroed struct is a valid empty value. */
struct qs_drill_result {
    char *collection;        /* the backed-up collection (not the scratch name) */
    char *snapshot;          /* the backup that was restored */
    int ok;                  /* 1 = "success", 0 = "failure" */
    int64_t finished;        /* UTC seconds */
    double duration_s;       /* >= 0 */
    int64_t points_expected; /* -1 = unknown */
    int64_t points_restored; /* -1 = unknown */
    char *error;             /* NULL when none */
};

/* Frees the strings of r (borrowed; may be NULL) and zeroes it. */
void qs_drill_result_deinit(struct qs_drill_result *r);

/* Appends r as pretty-printed JSON (fixed key order as above, trailing
 * newline) to out. r and out borrowed. Returns 0, QS_EINVAL (missing or
 * invalid collection or snapshot name, finished out of range) or UV_ENOMEM;
 * out is unchanged on error. */
int qs_drill_result_to_json(const struct qs_drill_result *r, struct qs_buf *out);

/* Parses a drill result from json (borrowed, len bytes). On success fills
 * *out (borrowed; caller deinits) and returns 0; on failure *out is zeroed
 * and the result is QS_EINVAL (err->msg names the field), QS_EPROTO (format
 * newer than QS_DRILL_FORMAT) or UV_ENOMEM. Unknown fields are ignored. err
 * borrowed, may be NULL. */
int qs_drill_result_parse(const char *json, size_t len, struct qs_drill_result *out,
                          struct qs_error *err);

/* 1 when name (borrowed, may be NULL) ends in QS_DRILL_SUFFIX. Inline, so
 * that modules checking names (config) need not link this one. */
static inline int qs_drill_is_scratch(const char *name)
{
    if (name == NULL)
        return 0;
    size_t n = strlen(name), s = sizeof(QS_DRILL_SUFFIX) - 1;
    return n >= s && strcmp(name + n - s, QS_DRILL_SUFFIX) == 0;
}

/* Writes "{collection}__qsnap_drill" into out (borrowed, cap bytes).
 * Returns 0, or QS_EINVAL when the result would not be a valid collection
 * name (over 255 characters) or does not fit. */
int qs_drill_scratch_name(const char *collection, char *out, size_t cap);

#endif
