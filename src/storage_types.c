/* The values of the storage API (storage_types.h): no I/O, so the pure
 * parsers that fill them (s3xml) link without the drivers. */
#include "qsnap/storage_types.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

void qs_storage_opts_init(struct qs_storage_opts *o)
{
    memset(o, 0, sizeof(*o));
}

/* ---- metadata ---------------------------------------------------------------- */

void qs_storage_meta_init(struct qs_storage_meta *m)
{
    memset(m, 0, sizeof(*m));
}

void qs_storage_meta_deinit(struct qs_storage_meta *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->names[i]);
        free(m->values[i]);
    }
    free(m->names);
    free(m->values);
    memset(m, 0, sizeof(*m));
}

static int meta_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

static int meta_value_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > 1024 || (n > 0 && (s[0] == ' ' || s[n - 1] == ' ')))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            return 0;
        if (s[i] == ' ' && s[i + 1] == ' ')
            return 0;
    }
    return 1;
}

int qs_storage_meta_set(struct qs_storage_meta *m, const char *name, const char *value)
{
    if (name == NULL || value == NULL || !meta_name_ok(name) || !meta_value_ok(value))
        return QS_EINVAL;
    char *v = strdup(value);
    if (v == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0) {
            free(m->values[i]);
            m->values[i] = v;
            return 0;
        }
    char *n = strdup(name);
    char **nn = realloc(m->names, (m->n + 1) * sizeof(char *));
    if (nn != NULL)
        m->names = nn;
    char **nv = realloc(m->values, (m->n + 1) * sizeof(char *));
    if (nv != NULL)
        m->values = nv;
    if (n == NULL || nn == NULL || nv == NULL) {
        free(n);
        free(v);
        return UV_ENOMEM;
    }
    m->names[m->n] = n;
    m->values[m->n] = v;
    m->n++;
    return 0;
}

const char *qs_storage_meta_get(const struct qs_storage_meta *m, const char *name)
{
    for (size_t i = 0; m != NULL && i < m->n; i++)
        if (strcmp(m->names[i], name) == 0)
            return m->values[i];
    return NULL;
}

void qs_storage_stat_deinit(struct qs_storage_stat *st)
{
    if (st != NULL)
        qs_storage_meta_deinit(&st->meta);
}

/* ---- listings ------------------------------------------------------------------ */

/* items (n used of *cap, each size bytes) with room for one more, growing
 * from first; NULL when out of memory (items and *cap unchanged). */
static void *grown(void *items, size_t n, size_t *cap, size_t size, size_t first)
{
    if (n < *cap)
        return items;
    size_t nc = *cap > 0 ? *cap * 2 : first;
    void *ni = realloc(items, nc * size);
    if (ni != NULL)
        *cap = nc;
    return ni;
}

void qs_storage_list_init(struct qs_storage_list *l)
{
    memset(l, 0, sizeof(*l));
}

int qs_storage_list_add(struct qs_storage_list *l, const char *key, uint64_t size, int64_t mtime)
{
    char *k = strdup(key);
    struct qs_storage_entry *ni = k ? grown(l->items, l->n, &l->cap, sizeof(*ni), 64) : NULL;
    if (ni == NULL) {
        free(k);
        return UV_ENOMEM;
    }
    l->items = ni;
    l->items[l->n++] = (struct qs_storage_entry){k, size, mtime};
    return 0;
}

void qs_storage_list_truncate(struct qs_storage_list *l, size_t n)
{
    while (l->n > n)
        free(l->items[--l->n].key);
}

void qs_storage_list_deinit(struct qs_storage_list *l)
{
    if (l == NULL)
        return;
    qs_storage_list_truncate(l, 0);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

void qs_storage_uploads_init(struct qs_storage_uploads *u)
{
    memset(u, 0, sizeof(*u));
}

int qs_storage_uploads_add(struct qs_storage_uploads *u, const char *key, const char *upload_id,
                           int64_t initiated)
{
    char *k = strdup(key), *id = strdup(upload_id);
    struct qs_storage_upload *ni = k && id ? grown(u->items, u->n, &u->cap, sizeof(*ni), 16) : NULL;
    if (ni == NULL) {
        free(k);
        free(id);
        return UV_ENOMEM;
    }
    u->items = ni;
    u->items[u->n++] = (struct qs_storage_upload){k, id, initiated};
    return 0;
}

void qs_storage_uploads_truncate(struct qs_storage_uploads *u, size_t n)
{
    while (u->n > n) {
        u->n--;
        free(u->items[u->n].key);
        free(u->items[u->n].upload_id);
    }
}

void qs_storage_uploads_deinit(struct qs_storage_uploads *u)
{
    if (u == NULL)
        return;
    qs_storage_uploads_truncate(u, 0);
    free(u->items);
    memset(u, 0, sizeof(*u));
}
