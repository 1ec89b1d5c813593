/* libFuzzer target for the Qdrant client's JSON answers (cJSON): the
 * {"result": ...} envelope, snapshot descriptions (create and list, with
 * checksum normalisation and the newest-first sort), the collection list,
 * collection info, and message extraction from error bodies. The first byte
 * picks the shape. Invariants: results are 0 or a protocol error with a
 * reason; extracted messages are bounded and free of control characters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "qsnap/qdrant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum qs_qdrant_answer kind = (enum qs_qdrant_answer)(data[0] % 5);
    struct qs_error err;
    memset(&err, 0, sizeof(err));
    int rc = qs_qdrant_parse_answer(kind, (const char *)data + 1, size - 1, &err);
    if (kind == QS_QDRANT_ANSWER_ERROR) {
        check(rc == QS_EHTTP);
        size_t n = strlen(err.msg);
        check(n > 0 && n <= 300);
        for (size_t i = 0; i < n; i++)
            check((unsigned char)err.msg[i] >= 0x20 && err.msg[i] != 0x7f);
        return 0;
    }
    check(rc == 0 || rc == QS_EPROTO || rc == UV_ENOMEM);
    if (rc != 0)
        check(err.msg[0] != '\0');
    return 0;
}
