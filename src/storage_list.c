/* The result containers of the storage API (struct qs_storage_list and
 * struct qs_storage_uploads, see storage.h): no I/O, so the pure parsers that
 * fill them (s3xml) link without the backends. */
#include <stdlib.h>
#include <string.h>

#include "qsnap/storage.h"

void qs_storage_list_init(struct qs_storage_list *l)
{
    memset(l, 0, sizeof(*l));
}

void qs_storage_list_deinit(struct qs_storage_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].key);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

void qs_storage_uploads_init(struct qs_storage_uploads *u)
{
    memset(u, 0, sizeof(*u));
}

void qs_storage_uploads_deinit(struct qs_storage_uploads *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->n; i++) {
        free(u->items[i].key);
        free(u->items[i].upload_id);
    }
    free(u->items);
    memset(u, 0, sizeof(*u));
}
