/* libFuzzer target for the streaming tar check (tarcheck.h): whatever the
 * bytes and however they are split, the check must not crash, must give the
 * same verdict for every split, and once it failed it must keep failing. The
 * first input byte chooses the chunk size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/tarcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static int verdict(const uint8_t *data, size_t size, size_t chunk)
{
    struct qs_tarcheck t;
    qs_tarcheck_init(&t);
    struct qs_error err;
    int failed = 0;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        int rc = qs_tarcheck_feed(&t, data + off, n, &err);
        check(rc == 0 || rc == QS_EPROTO);
        check(!failed || rc != 0);
        if (rc != 0) {
            check(err.msg[0] != '\0');
            failed = 1;
        }
    }
    int rc = qs_tarcheck_finish(&t, &err);
    check(rc == 0 || rc == QS_EPROTO);
    check(!failed || rc != 0);
    check(t.offset <= size);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = (size_t)data[0] * 7 + 1;
    data++;
    size--;
    int whole = verdict(data, size, size > 0 ? size : 1);
    check(verdict(data, size, chunk) == whole);
    check(verdict(data, size, 1) == whole);
    return 0;
}
