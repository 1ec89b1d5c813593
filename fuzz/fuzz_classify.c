/* libFuzzer target for qs_manifest_classify(): the input is a listing, one
 * key per line. Every key must land in exactly one bucket, and every
 * complete backup must name keys that the key helpers would build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t n = 1;
    for (size_t i = 0; i < size; i++)
        n += text[i] == '\n';
    struct qs_listed_key *keys = calloc(n, sizeof(*keys));
    if (keys == NULL) {
        free(text);
        return 0;
    }
    size_t k = 0;
    for (char *line = text, *nl; line != NULL; line = nl) {
        nl = strchr(line, '\n');
        if (nl != NULL)
            *nl++ = '\0';
        keys[k] = (struct qs_listed_key){line, k, (int64_t)k};
        k++;
    }

    struct qs_manifest_listing l;
    check(qs_manifest_classify(keys, k, &l) == 0);
    /* Complete backups use their manifest, their object (a twin is counted
     * as ignored) and their shard objects, plus their drill result; an
     * orphan manifest may have a drill result too. */
    size_t used = 0;
    for (size_t i = 0; i < l.ncomplete; i++) {
        const struct qs_listed_backup *b = &l.complete[i];
        check(b->object_key != NULL || b->nshards > 0);
        used += 1 + (b->object_key != NULL) + b->nshards + (b->drill_key != NULL);
    }
    for (size_t i = 0; i < l.norphans; i++) {
        check(l.orphans[i].nshards == 0);
        used += 1 + (l.orphans[i].drill_key != NULL);
    }
    check(used + l.nincomplete + l.nignored == k);
    char key[QS_MANIFEST_KEY_MAX];
    for (size_t i = 0; i < l.ncomplete + l.norphans; i++) {
        const struct qs_listed_backup *b =
            i < l.ncomplete ? &l.complete[i] : &l.orphans[i - l.ncomplete];
        if (b->drill_key == NULL)
            continue;
        check(qs_manifest_drill_key(b->collection, b->snapshot, key, sizeof(key)) == 0);
        check(strcmp(key, b->drill_key) == 0);
    }
    for (size_t i = 0; i < l.ncomplete; i++) {
        const struct qs_listed_backup *b = &l.complete[i];
        check(qs_manifest_key(b->collection, b->snapshot, key, sizeof(key)) == 0);
        check(strcmp(key, b->manifest_key) == 0);
        if (b->object_key != NULL) {
            check(qs_manifest_object_key(b->collection, b->snapshot, b->compressed, key,
                                         sizeof(key)) == 0);
            check(strcmp(key, b->object_key) == 0);
        }
        if (b->nshards > 0) {
            check(qs_manifest_run_prefix(b->collection, b->snapshot, key, sizeof(key)) == 0);
            for (size_t s = 0; s < b->nshards; s++)
                check(strncmp(b->shard_keys[s], key, strlen(key)) == 0);
        }
    }
    for (size_t i = 0; i < l.norphans; i++)
        check(l.orphans[i].object_key == NULL);
    /* An incomplete object lies under its collection's key prefix (escaped
     * when the name begins with '.'). */
    for (size_t i = 0; i < l.nincomplete; i++) {
        check(qs_manifest_key_prefix(l.incomplete[i].collection, key, sizeof(key)) == 0);
        check(strncmp(l.incomplete[i].key, key, strlen(key)) == 0);
    }
    qs_manifest_listing_deinit(&l);
    free(keys);
    free(text);
    return 0;
}
