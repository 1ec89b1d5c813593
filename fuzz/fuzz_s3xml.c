/* libFuzzer target for the S3 XML answers (expat): Error documents,
 * InitiateMultipartUpload, ListObjectsV2 and ListMultipartUploads pages.
 * The first byte picks the parser. Invariants: results are NUL-terminated
 * within their capacity, listed keys had the prefix stripped, nothing leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/s3xml.h"

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
    unsigned which = data[0] % 4;
    const char *xml = (const char *)data + 1;
    size_t len = size - 1;
    int rc;
    switch (which) {
    case 0: {
        char code[32], msg[128];
        rc = qs_s3xml_parse_error(xml, len, code, sizeof(code), msg, sizeof(msg));
        check(rc == 0 || rc == QS_EPROTO);
        if (rc == 0)
            check(strlen(code) < sizeof(code) && strlen(msg) < sizeof(msg));
        break;
    }
    case 1: {
        struct qs_buf id;
        qs_buf_init(&id);
        rc = qs_s3xml_parse_initiate(xml, len, &id);
        check(rc == 0 || rc == QS_EPROTO || rc == UV_ENOMEM);
        if (rc == 0)
            check(id.len > 0 && id.data[id.len] == '\0');
        qs_buf_free(&id);
        break;
    }
    case 2: {
        struct qs_storage_list l;
        qs_storage_list_init(&l);
        struct qs_buf tok;
        qs_buf_init(&tok);
        int trunc = -1;
        rc = qs_s3xml_parse_list(xml, len, "pre/", &l, &trunc, &tok);
        check(rc == 0 || rc == QS_EPROTO || rc == UV_ENOMEM);
        if (rc == 0)
            check(trunc == 0 || trunc == 1);
        qs_storage_list_deinit(&l);
        qs_buf_free(&tok);
        break;
    }
    default: {
        struct qs_storage_uploads u;
        qs_storage_uploads_init(&u);
        struct qs_buf k, up;
        qs_buf_init(&k);
        qs_buf_init(&up);
        int trunc = -1;
        rc = qs_s3xml_parse_uploads(xml, len, "pre/", &u, &trunc, &k, &up);
        check(rc == 0 || rc == QS_EPROTO || rc == UV_ENOMEM);
        if (rc == 0)
            check(trunc == 0 || trunc == 1);
        qs_storage_uploads_deinit(&u);
        qs_buf_free(&k);
        qs_buf_free(&up);
        break;
    }
    }
    return 0;
}
