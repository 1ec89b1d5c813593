/* The metric table (metric_names.def) as C: an id per family, and each
 * family's name, type, help and label names. Code names a family with
 * QS_MN(ID), never with a string of its own, so the table is the one list of
 * what qsnap exports. */
#ifndef QSNAP_METRIC_NAMES_H
#define QSNAP_METRIC_NAMES_H

enum qs_metric_type {
    QS_METRIC_GAUGE = 0,
    QS_METRIC_COUNTER = 1, /* name must end in "_total" */
};

enum qs_metric_id {
#define QS_METRIC_DEF(id, name, type, help, ...) QS_M_##id,
#include "qsnap/metric_names.def"
#undef QS_METRIC_DEF
    QS_M_COUNT
};

struct qs_metric_def {
    const char *name;
    enum qs_metric_type type;
    const char *help;
    const char *const *labels; /* NULL-terminated */
};

/* Indexed by enum qs_metric_id; static storage. */
extern const struct qs_metric_def qs_metric_defs[QS_M_COUNT];

/* The name of family ID (e.g. QS_MN(BACKUP_AGE)). */
#define QS_MN(id) (qs_metric_defs[QS_M_##id].name)

#endif
