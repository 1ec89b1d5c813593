/* libFuzzer target for qs_manifest_parse(): whatever the input, parsing must
 * not crash or leak, and a manifest that parses (format 1 or 2, either
 * method, with or without a cluster topology) must render, re-parse to the
 * same values and render to the same bytes, with keys the key helpers would
 * build. */
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

static int same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qs_manifest m;
    struct qs_error err;
    if (qs_manifest_parse((const char *)data, size, &m, &err) != 0) {
        check(m.collection == NULL && m.vectors == NULL);
        check(err.msg[0] != '\0');
        return 0;
    }
    check(qs_manifest_validate(&m, &err) == 0);

    struct qs_buf a, b;
    qs_buf_init(&a);
    qs_buf_init(&b);
    check(qs_manifest_to_json(&m, &a) == 0);
    struct qs_manifest back;
    check(qs_manifest_parse(a.data, a.len, &back, &err) == 0);
    check(back.format == m.format && back.created == m.created && back.size == m.size &&
          back.stored_size == m.stored_size && back.compression_level == m.compression_level &&
          back.points_count == m.points_count && back.mode == m.mode);
    check(strcmp(back.sha256, m.sha256) == 0);
    check(same_str(back.collection, m.collection) && same_str(back.snapshot, m.snapshot) &&
          same_str(back.object, m.object) && same_str(back.qdrant_version, m.qdrant_version) &&
          same_str(back.qsnap_version, m.qsnap_version));
    check(qs_manifest_to_json(&back, &b) == 0);
    check(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);

    check(back.method == m.method && back.nshards == m.nshards && back.naliases == m.naliases &&
          back.has_aliases == m.has_aliases && back.has_cluster == m.has_cluster);
    if (m.has_cluster) {
        check(back.cluster.peer_id == m.cluster.peer_id &&
              back.cluster.npeers == m.cluster.npeers &&
              back.cluster.shard_count == m.cluster.shard_count &&
              back.cluster.replication_factor == m.cluster.replication_factor);
        for (size_t i = 0; i < m.cluster.npeers; i++)
            check(back.cluster.peers[i].id == m.cluster.peers[i].id &&
                  same_str(back.cluster.peers[i].uri, m.cluster.peers[i].uri));
        for (size_t i = 0; i < m.nshards; i++)
            check(back.shards[i].peer_id == m.shards[i].peer_id);
    }
    char key[QS_MANIFEST_KEY_MAX];
    if (m.method == QS_METHOD_SHARDS) {
        check(m.object == NULL && m.nshards > 0);
        for (size_t i = 0; i < m.nshards; i++) {
            check(qs_manifest_shard_key(m.collection, m.snapshot, m.shards[i].id,
                                        m.compression_level > 0, key, sizeof(key)) == 0);
            check(strcmp(key, m.shards[i].object) == 0);
        }
    } else {
        check(qs_manifest_object_key(m.collection, m.snapshot, m.compression_level > 0, key,
                                     sizeof(key)) == 0);
        check(strcmp(key, m.object) == 0);
    }
    check(qs_manifest_key(m.collection, m.snapshot, key, sizeof(key)) == 0);

    qs_buf_free(&a);
    qs_buf_free(&b);
    qs_manifest_deinit(&back);
    qs_manifest_deinit(&m);
    return 0;
}
