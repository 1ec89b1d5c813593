/* Pure parts of the S3 backend: XML answers, the part-size rule, URLs,
 * key and metadata validation. No network. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/error.h"
#include "qsnap/s3multipart.h"
#include "qsnap/s3url.h"
#include "qsnap/s3xml.h"
#include "qsnap/storage.h"

#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define TiB ((uint64_t)1 << 40)

Test(s3xml, error_document)
{
    const char *x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<Error><Code>SignatureDoesNotMatch</Code>"
                    "<Message>The request signature we calculated does not match &amp; "
                    "so on</Message><RequestId>tx1</RequestId></Error>";
    char code[64], msg[256];
    cr_assert_eq(qs_s3xml_parse_error(x, strlen(x), code, sizeof(code), msg, sizeof(msg)), 0);
    cr_assert_str_eq(code, "SignatureDoesNotMatch");
    cr_assert_str_eq(msg, "The request signature we calculated does not match & so on");
}

Test(s3xml, error_document_truncates_and_rejects_non_errors)
{
    const char *x = "<Error><Code>NoSuchBucket</Code></Error>";
    char code[8], msg[16] = "junk";
    cr_assert_eq(qs_s3xml_parse_error(x, strlen(x), code, sizeof(code), msg, sizeof(msg)), 0);
    cr_assert_str_eq(code, "NoSuchB");
    cr_assert_str_eq(msg, "");
    const char *ok = "<ListBucketResult></ListBucketResult>";
    cr_assert_eq(qs_s3xml_parse_error(ok, strlen(ok), code, sizeof(code), msg, sizeof(msg)),
                 QS_EPROTO);
    cr_assert_eq(qs_s3xml_parse_error("not xml", 7, code, sizeof(code), msg, sizeof(msg)),
                 QS_EPROTO);
    cr_assert_eq(qs_s3xml_parse_error("", 0, code, sizeof(code), msg, sizeof(msg)), QS_EPROTO);
}

Test(s3xml, initiate)
{
    const char *x = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult "
                    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket>"
                    "<Key>k</Key><UploadId>2~abc&amp;def</UploadId>"
                    "</InitiateMultipartUploadResult>";
    struct qs_buf id;
    qs_buf_init(&id);
    cr_assert_eq(qs_s3xml_parse_initiate(x, strlen(x), &id), 0);
    cr_assert_str_eq(id.data, "2~abc&def");
    qs_buf_free(&id);
    const char *bad = "<InitiateMultipartUploadResult><UploadId></UploadId>"
                      "</InitiateMultipartUploadResult>";
    qs_buf_init(&id);
    cr_assert_eq(qs_s3xml_parse_initiate(bad, strlen(bad), &id), QS_EPROTO);
    qs_buf_free(&id);
}

Test(s3xml, list_page_with_escaped_keys)
{
    const char *x =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>b</Name><Prefix>pre/</Prefix><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys>"
        "<IsTruncated>true</IsTruncated>"
        "<Contents><Key>pre/a &amp; b+c:1.snapshot</Key>"
        "<LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>&quot;x&quot;</ETag>"
        "<Size>12345678901</Size></Contents>"
        "<Contents><Key>pre/caf\xc3\xa9/~x &lt;1&gt;</Key>"
        "<LastModified>2024-01-02T03:04:06.000Z</LastModified><Size>0</Size></Contents>"
        "<Contents><Key>other/z</Key><LastModified>2024-01-02T03:04:06.000Z</LastModified>"
        "<Size>1</Size></Contents>"
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</"
        "NextContinuationToken>"
        "</ListBucketResult>";
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    struct qs_buf tok;
    qs_buf_init(&tok);
    int trunc = 0;
    cr_assert_eq(qs_s3xml_parse_list(x, strlen(x), "pre/", &l, &trunc, &tok), 0);
    cr_assert_eq(trunc, 1);
    cr_assert_str_eq(tok.data, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.items[0].key, "a & b+c:1.snapshot");
    cr_assert_eq(l.items[0].size, 12345678901ULL);
    cr_assert_eq(l.items[0].mtime, 1704164645);
    cr_assert_str_eq(l.items[1].key, "caf\xc3\xa9/~x <1>");
    cr_assert_eq(l.items[1].size, 0);
    qs_storage_list_deinit(&l);

    /* Last page: not truncated, token cleared. */
    const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
    qs_storage_list_init(&l);
    cr_assert_eq(qs_s3xml_parse_list(last, strlen(last), "", &l, &trunc, &tok), 0);
    cr_assert_eq(trunc, 0);
    cr_assert_eq(tok.len, 0);
    cr_assert_eq(l.n, 0);
    qs_buf_free(&tok);
    qs_storage_list_deinit(&l);
}

Test(s3xml, list_rejects_garbage)
{
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    int trunc;
    const char *err = "<Error><Code>AccessDenied</Code></Error>";
    cr_assert_eq(qs_s3xml_parse_list(err, strlen(err), "", &l, &trunc, NULL), QS_EPROTO);
    const char *badsize = "<ListBucketResult><Contents><Key>k</Key><Size>12x</Size>"
                          "</Contents></ListBucketResult>";
    cr_assert_eq(qs_s3xml_parse_list(badsize, strlen(badsize), "", &l, &trunc, NULL), QS_EPROTO);
    const char *nokey = "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>";
    cr_assert_eq(qs_s3xml_parse_list(nokey, strlen(nokey), "", &l, &trunc, NULL), QS_EPROTO);
    qs_storage_list_deinit(&l);
}

Test(s3xml, uploads_page)
{
    const char *x = "<?xml version=\"1.0\"?><ListMultipartUploadsResult "
                    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>"
                    "<NextKeyMarker>p/c1/b</NextKeyMarker>"
                    "<NextUploadIdMarker>2~u2</NextUploadIdMarker>"
                    "<MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>"
                    "<Upload><Key>p/c1/a</Key><UploadId>2~u1</UploadId>"
                    "<Initiated>2024-01-02T03:04:05.000Z</Initiated></Upload>"
                    "<Upload><Key>p/c1/b</Key><UploadId>2~u2</UploadId>"
                    "<Initiated>2024-01-03T03:04:05.000Z</Initiated></Upload>"
                    "</ListMultipartUploadsResult>";
    struct qs_storage_uploads u;
    qs_storage_uploads_init(&u);
    struct qs_buf nk, nu;
    qs_buf_init(&nk);
    qs_buf_init(&nu);
    int trunc = 0;
    cr_assert_eq(qs_s3xml_parse_uploads(x, strlen(x), "p/", &u, &trunc, &nk, &nu), 0);
    cr_assert_eq(trunc, 1);
    cr_assert_str_eq(nk.data, "p/c1/b");
    cr_assert_str_eq(nu.data, "2~u2");
    cr_assert_eq(u.n, 2);
    cr_assert_str_eq(u.items[0].key, "c1/a");
    cr_assert_str_eq(u.items[0].upload_id, "2~u1");
    cr_assert_eq(u.items[0].initiated, 1704164645);
    cr_assert_eq(u.items[1].initiated, 1704164645 + 86400);
    qs_buf_free(&nk);
    qs_buf_free(&nu);
    qs_storage_uploads_deinit(&u);
    const char *bad = "<ListMultipartUploadsResult><Upload><Key>k</Key></Upload>"
                      "</ListMultipartUploadsResult>";
    qs_storage_uploads_init(&u);
    cr_assert_eq(qs_s3xml_parse_uploads(bad, strlen(bad), "", &u, &trunc, NULL, NULL), QS_EPROTO);
    qs_storage_uploads_deinit(&u);
}

Test(s3xml, prefixes_cdata_and_character_references)
{
    const char *x = "<s3:ListBucketResult xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<s3:IsTruncated>false</s3:IsTruncated>"
                    "<s3:Contents><s3:Key><![CDATA[pre/a<b&c]]></s3:Key><s3:Size>7</s3:Size>"
                    "</s3:Contents>"
                    "<s3:Contents><s3:Key>pre/caf&#233;&#x2F;x</s3:Key><s3:Size>8</s3:Size>"
                    "</s3:Contents></s3:ListBucketResult>";
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    int trunc = -1;
    cr_assert_eq(qs_s3xml_parse_list(x, strlen(x), "pre/", &l, &trunc, NULL), 0);
    cr_assert_eq(trunc, 0);
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.items[0].key, "a<b&c");
    cr_assert_eq(l.items[0].size, 7);
    cr_assert_str_eq(l.items[1].key, "caf\xc3\xa9/x");
    qs_storage_list_deinit(&l);
}

Test(s3xml, doctype_refused)
{
    /* Internal entities would be expanded by a parser that accepts DTDs;
     * S3 never sends one. */
    const char *x = "<?xml version=\"1.0\"?><!DOCTYPE Error [<!ENTITY a \"aaaaaaaa\">"
                    "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]>"
                    "<Error><Code>&b;</Code></Error>";
    char code[64] = "unchanged", msg[16] = "";
    cr_assert_eq(qs_s3xml_parse_error(x, strlen(x), code, sizeof(code), msg, sizeof(msg)),
                 QS_EPROTO);
    cr_assert_str_eq(code, "unchanged");
    const char *ext = "<!DOCTYPE Error SYSTEM \"file:///etc/passwd\"><Error><Code>x</Code></Error>";
    cr_assert_eq(qs_s3xml_parse_error(ext, strlen(ext), code, sizeof(code), msg, sizeof(msg)),
                 QS_EPROTO);
}

Test(s3xml, failure_leaves_outputs_as_they_were)
{
    /* A page with a good entry and then a bad one, and a page cut short
     * after a good entry: nothing of either is taken over. */
    const char *page1 = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                        "<NextContinuationToken>t1</NextContinuationToken>"
                        "<Contents><Key>a</Key><Size>1</Size></Contents></ListBucketResult>";
    const char *bad = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                      "<NextContinuationToken>t2</NextContinuationToken>"
                      "<Contents><Key>b</Key><Size>2</Size></Contents>"
                      "<Contents><Key>c</Key><Size>-</Size></Contents></ListBucketResult>";
    const char *cut = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                      "<Contents><Key>d</Key><Size>3</Size></Contents><Contents>";
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    struct qs_buf tok;
    qs_buf_init(&tok);
    int trunc = -1;
    cr_assert_eq(qs_s3xml_parse_list(page1, strlen(page1), "", &l, &trunc, &tok), 0);
    cr_assert_eq(qs_s3xml_parse_list(bad, strlen(bad), "", &l, &trunc, &tok), QS_EPROTO);
    cr_assert_eq(qs_s3xml_parse_list(cut, strlen(cut), "", &l, &trunc, &tok), QS_EPROTO);
    cr_assert_eq(l.n, 1);
    cr_assert_str_eq(l.items[0].key, "a");
    cr_assert_eq(trunc, 1);
    cr_assert_str_eq(tok.data, "t1");
    qs_buf_free(&tok);
    qs_storage_list_deinit(&l);

    const char *ups = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
                      "<NextKeyMarker>k</NextKeyMarker><NextUploadIdMarker>u</NextUploadIdMarker>"
                      "<Upload><Key>a</Key><UploadId>1</UploadId>"
                      "<Initiated>2024-01-02T03:04:05.000Z</Initiated></Upload>"
                      "<Upload><Key>b</Key><UploadId>2</UploadId>"
                      "<Initiated>yesterday</Initiated></Upload></ListMultipartUploadsResult>";
    struct qs_storage_uploads u;
    qs_storage_uploads_init(&u);
    struct qs_buf nk, nu;
    qs_buf_init(&nk);
    qs_buf_init(&nu);
    trunc = -1;
    cr_assert_eq(qs_s3xml_parse_uploads(ups, strlen(ups), "", &u, &trunc, &nk, &nu), QS_EPROTO);
    cr_assert_eq(u.n, 0);
    cr_assert_eq(trunc, -1);
    cr_assert_eq(nk.len, 0);
    cr_assert_eq(nu.len, 0);
    qs_buf_free(&nk);
    qs_buf_free(&nu);
    qs_storage_uploads_deinit(&u);
}

Test(s3part, rule_covers_5_tib_in_10000_parts)
{
    const uint64_t bases[] = {5 * MiB,  5 * MiB + 1, 6 * MiB,   8 * MiB,
                              16 * MiB, 64 * MiB,    512 * MiB, 5 * GiB};
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
        uint64_t total = 0, prev = 0;
        for (uint32_t i = 0; i < QS_S3_MAX_PARTS; i++) {
            uint64_t s = qs_s3multipart_part_size(i, bases[b]);
            cr_assert_geq(s, 5 * MiB);
            cr_assert_leq(s, 5 * GiB);
            cr_assert_geq(s, prev, "part sizes never shrink (base %llu, part %u)",
                          (unsigned long long)bases[b], i);
            if (i % 1000 != 0)
                cr_assert_eq(s, prev, "constant within a block of 1000 parts");
            prev = s;
            total += s;
        }
        cr_assert_geq(total, 5 * TiB, "base %llu covers only %llu bytes",
                      (unsigned long long)bases[b], (unsigned long long)total);
    }
}

Test(s3part, rule_values)
{
    cr_assert_eq(qs_s3multipart_part_size(0, 16 * MiB), 16 * MiB);
    cr_assert_eq(qs_s3multipart_part_size(999, 16 * MiB), 16 * MiB);
    cr_assert_eq(qs_s3multipart_part_size(1000, 16 * MiB), 32 * MiB);
    cr_assert_eq(qs_s3multipart_part_size(2500, 16 * MiB), 64 * MiB);
    cr_assert_eq(qs_s3multipart_part_size(9999, 16 * MiB), 5 * GiB);
    cr_assert_eq(qs_s3multipart_part_size(0, 5 * MiB), 5 * MiB);
    cr_assert_eq(qs_s3multipart_part_size(1000, 5 * MiB), 16 * MiB);
    cr_assert_eq(qs_s3multipart_part_size(0, 1 * MiB), 5 * MiB, "clamped to the S3 minimum");
    cr_assert_eq(qs_s3multipart_part_size(0, 6 * GiB), 5 * GiB, "clamped to the S3 maximum");
    cr_assert_eq(qs_s3multipart_part_size(10000, 16 * MiB), 0, "no part 10,001");
}

static struct qs_s3url *mk(const char *endpoint, enum qs_uri_style style, const char *prefix)
{
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = QS_DEST_S3;
    o.bucket = "my-bucket";
    o.prefix = prefix;
    o.endpoint = endpoint;
    o.region = "eu-west-3";
    o.access_key_id = "AK";
    o.secret_access_key = "SECRETSECRET";
    o.uri_style = style;
    struct qs_s3url *u = calloc(1, sizeof(*u));
    struct qs_error err;
    cr_assert_eq(qs_s3url_init(u, &o, &err), 0, "%s", err.msg);
    return u;
}

static void url_free(struct qs_s3url *u)
{
    qs_s3url_deinit(u);
    free(u);
}

static void url_is(struct qs_s3url *u, const char *key, const char *query, const char *want)
{
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_s3url_build(u, key, query, &b), 0);
    cr_assert_str_eq(b.data, want);
    qs_buf_free(&b);
}

Test(s3url, path_and_virtual_styles)
{
    struct qs_s3url *s3 = mk("http://127.0.0.1:7480", QS_URI_PATH, "/qdrant/");
    url_is(s3, "c1/a b+c:1.snapshot", NULL,
           "http://127.0.0.1:7480/my-bucket/qdrant/c1/a%20b%2Bc%3A1.snapshot");
    url_is(s3, NULL, "list-type=2", "http://127.0.0.1:7480/my-bucket?list-type=2");
    url_is(s3, "k", "uploads=", "http://127.0.0.1:7480/my-bucket/qdrant/k?uploads=");
    url_free(s3);

    s3 = mk("https://minio.example:9000/", QS_URI_VIRTUAL, "");
    url_is(s3, "caf\xc3\xa9/~x", NULL, "https://my-bucket.minio.example:9000/caf%C3%A9/~x");
    url_is(s3, NULL, NULL, "https://my-bucket.minio.example:9000/");
    url_free(s3);

    s3 = mk(NULL, QS_URI_VIRTUAL, "p");
    url_is(s3, "k", NULL, "https://my-bucket.s3.eu-west-3.amazonaws.com/p/k");
    url_free(s3);
}

Test(s3url, bad_options)
{
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = QS_DEST_S3;
    o.bucket = "b";
    o.access_key_id = "AK";
    o.secret_access_key = "SECRETSECRET";
    struct qs_storage *s3 = NULL;
    struct qs_error err;
    o.endpoint = "ftp://x";
    cr_assert_eq(qs_storage_new(&o, &s3, &err), QS_ECONFIG);
    o.endpoint = "http://x/path";
    cr_assert_eq(qs_storage_new(&o, &s3, &err), QS_ECONFIG);
    o.endpoint = NULL;
    o.part_size = 4 * MiB;
    cr_assert_eq(qs_storage_new(&o, &s3, &err), QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, "part size"));
    o.part_size = 0;
    o.secret_access_key = "";
    cr_assert_eq(qs_storage_new(&o, &s3, &err), QS_ECONFIG);
    cr_assert_null(s3);
}

Test(storage, key_check)
{
    const char *good[] = {"a", "c1/snap.snapshot", "a b+c:~/caf\xc3\xa9/x", "x.json"};
    const char *bad[] = {"", "/a", "a/", "a//b", ".hidden", "a/.b", "a/../b", "a\nb", NULL};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert_eq(qs_storage_key_check(good[i], NULL), 0, "%s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(qs_storage_key_check(bad[i], NULL), QS_EINVAL, "case %zu", i);
    char big[1100];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(qs_storage_key_check(big, NULL), QS_EINVAL);
}

Test(storage, meta_set_get_validate)
{
    struct qs_storage_meta m;
    qs_storage_meta_init(&m);
    cr_assert_eq(qs_storage_meta_set(&m, "sha256", "abc"), 0);
    cr_assert_eq(qs_storage_meta_set(&m, "collection", "c 1"), 0);
    cr_assert_eq(qs_storage_meta_set(&m, "sha256", "def"), 0);
    cr_assert_eq(m.n, 2);
    cr_assert_str_eq(qs_storage_meta_get(&m, "sha256"), "def");
    cr_assert_null(qs_storage_meta_get(&m, "nope"));
    cr_assert_eq(qs_storage_meta_set(&m, "Upper", "x"), QS_EINVAL);
    cr_assert_eq(qs_storage_meta_set(&m, "", "x"), QS_EINVAL);
    cr_assert_eq(qs_storage_meta_set(&m, "a", " lead"), QS_EINVAL);
    cr_assert_eq(qs_storage_meta_set(&m, "a", "two  spaces"), QS_EINVAL);
    cr_assert_eq(qs_storage_meta_set(&m, "a", "line\nbreak"), QS_EINVAL);
    cr_assert_eq(qs_storage_meta_set(&m, "a", "caf\xc3\xa9"), QS_EINVAL);
    cr_assert_eq(m.n, 2);
    qs_storage_meta_deinit(&m);
    cr_assert_eq(m.n, 0);
}
