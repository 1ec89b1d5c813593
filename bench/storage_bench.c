/* Streams generated data into the storage layer, the way a backup streams a
 * snapshot (length unknown), and reports throughput and peak RSS.
 *
 *   storage_bench put MIB [PART_MIB]   upload MIB MiB to $QSNAP_TEST_S3_* and delete it
 *   storage_bench emit MIB             write the same bytes to stdout (for curl)
 *
 * Output of put (one line, key=value): bytes, seconds, mib_per_s, peak_rss_kib, parts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "qsnap/error.h"
#include "qsnap/storage.h"
#include "qsnap/util.h"

#define CHUNK (256 * 1024)

static void gen(uint64_t *state, unsigned char *buf, size_t n)
{
    uint64_t s = *state;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        memcpy(buf + i, &s, 8);
    }
    *state = s;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr, "storage_bench: %s is not set\n", name);
        exit(2);
    }
    return v;
}

static int emit(uint64_t mib)
{
    unsigned char *buf = malloc(CHUNK);
    uint64_t st = 0x2545f4914f6cdd1dULL;
    for (uint64_t done = 0; done < (mib << 20); done += CHUNK) {
        gen(&st, buf, CHUNK);
        if (fwrite(buf, 1, CHUNK, stdout) != CHUNK) {
            free(buf);
            return 1;
        }
    }
    free(buf);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int put(uint64_t mib, uint64_t part_mib)
{
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = QS_DEST_S3;
    o.endpoint = env("QSNAP_TEST_S3_ENDPOINT");
    o.access_key_id = env("QSNAP_TEST_S3_ACCESS_KEY");
    o.secret_access_key = env("QSNAP_TEST_S3_SECRET_KEY");
    o.bucket = env("QSNAP_TEST_S3_BUCKET");
    o.region = getenv("QSNAP_TEST_S3_REGION");
    o.uri_style = QS_URI_PATH;
    o.prefix = "bench";
    o.part_size = part_mib << 20;
    struct qs_storage *st;
    struct qs_error err;
    if (qs_storage_new(&o, &st, &err) != 0) {
        fprintf(stderr, "storage_bench: %s\n", err.msg);
        return 1;
    }
    char key[64];
    snprintf(key, sizeof(key), "storage-bench-%ld-%llu", (long)getpid(), (unsigned long long)mib);
    unsigned char *buf = malloc(CHUNK);
    uint64_t state = 0x2545f4914f6cdd1dULL, total = mib << 20, stored = 0;
    double t0 = qs_monotonic();
    struct qs_storage_put *p;
    int rc = qs_storage_put_begin(st, key, -1, NULL, NULL, &p, &err);
    for (uint64_t done = 0; rc == 0 && done < total; done += CHUNK) {
        gen(&state, buf, CHUNK);
        rc = qs_storage_put_write(p, buf, CHUNK, &err);
        if (rc != 0)
            qs_storage_put_abort(p);
    }
    if (rc == 0)
        rc = qs_storage_put_finish(p, &stored, &err);
    double dt = qs_monotonic() - t0;
    free(buf);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (rc != 0) {
        fprintf(stderr, "storage_bench: %s\n", err.msg);
    } else {
        printf("bytes=%llu seconds=%.2f mib_per_s=%.1f peak_rss_kib=%ld part_mib=%llu\n",
               (unsigned long long)stored, dt, (double)stored / (1 << 20) / dt, ru.ru_maxrss,
               (unsigned long long)part_mib);
    }
    struct qs_error e2;
    qs_storage_delete(st, key, &e2);
    qs_storage_free(st);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: storage_bench put MIB [PART_MIB] | emit MIB\n");
        return 2;
    }
    uint64_t mib, part_mib = 16;
    if (qs_parse_u64(argv[2], &mib) != 0 || (argc > 3 && qs_parse_u64(argv[3], &part_mib) != 0)) {
        fprintf(stderr, "storage_bench: MIB and PART_MIB are whole numbers\n");
        return 2;
    }
    if (strcmp(argv[1], "emit") == 0)
        return emit(mib);
    if (strcmp(argv[1], "put") == 0)
        return put(mib, part_mib);
    return 2;
}
