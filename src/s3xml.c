#include "qsnap/s3xml.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>
#include <uv.h>

#include "qsnap/error.h"

#define MAX_FIELDS 4

/* The text of one element we look for, captured on its first occurrence. */
struct field {
    const char *name;
    int seen;
    struct qs_buf text; /* all character data inside the element */
};

struct doc {
    XML_Parser parser;
    const char *root;              /* required local name of the root element */
    const char *entry;             /* local name of a repeated child of the root, or NULL */
    struct field top[MAX_FIELDS];  /* children of the root */
    struct field item[MAX_FIELDS]; /* children of the current entry */
    int (*on_entry)(struct doc *d);
    void *ud;
    int depth;
    int in_entry;
    struct qs_buf *capture; /* text of the field being read, or NULL */
    int capture_depth;
    int rc; /* first failure, stops the parser */
};

/* The parser runs without namespace processing, so a prefixed element
 * arrives as "prefix:local"; namespace declarations are plain attributes. */
static const char *local_name(const XML_Char *name)
{
    const char *colon = strrchr(name, ':');
    return colon != NULL ? colon + 1 : name;
}

static void fail(struct doc *d, int rc)
{
    if (d->rc == 0)
        d->rc = rc;
    XML_StopParser(d->parser, XML_FALSE);
}

static struct field *find(struct field *f, const char *name)
{
    for (size_t i = 0; i < MAX_FIELDS && f[i].name != NULL; i++)
        if (strcmp(f[i].name, name) == 0)
            return &f[i];
    return NULL;
}

/* Starts capturing f's text unless an earlier element of that name was seen. */
static void begin_field(struct doc *d, struct field *f)
{
    if (f == NULL || f->seen)
        return;
    f->seen = 1;
    qs_buf_reset(&f->text);
    if (qs_buf_append(&f->text, "", 0) != 0) { /* "" rather than NULL when empty */
        fail(d, UV_ENOMEM);
        return;
    }
    d->capture = &f->text;
    d->capture_depth = d->depth;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct doc *d = ud;
    if (d->rc != 0) /* stopped: expat may still deliver a few events */
        return;
    const char *local = local_name(name);
    d->depth++;
    if (d->depth == 1) {
        if (strcmp(local, d->root) != 0)
            fail(d, QS_EPROTO);
    } else if (d->capture != NULL) {
        /* inside a field: nested elements only contribute their text */
    } else if (d->depth == 2) {
        if (d->entry != NULL && strcmp(local, d->entry) == 0) {
            d->in_entry = 1;
            for (size_t i = 0; i < MAX_FIELDS && d->item[i].name != NULL; i++)
                d->item[i].seen = 0;
        } else {
            begin_field(d, find(d->top, local));
        }
    } else if (d->depth == 3 && d->in_entry) {
        begin_field(d, find(d->item, local));
    }
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct doc *d = ud;
    if (d->rc != 0)
        return;
    if (d->capture != NULL && d->depth == d->capture_depth)
        d->capture = NULL;
    if (d->depth == 2 && d->in_entry) {
        d->in_entry = 0;
        int rc = d->on_entry(d);
        if (rc != 0)
            fail(d, rc);
    }
    d->depth--;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct doc *d = ud;
    if (d->rc == 0 && d->capture != NULL && len > 0 &&
        qs_buf_append(d->capture, s, (size_t)len) != 0)
        fail(d, UV_ENOMEM);
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    fail(ud, QS_EPROTO);
}

static void doc_init(struct doc *d, const char *root, const char *entry)
{
    memset(d, 0, sizeof(*d));
    d->root = root;
    d->entry = entry;
}

static void doc_deinit(struct doc *d)
{
    for (size_t i = 0; i < MAX_FIELDS; i++) {
        qs_buf_free(&d->top[i].text);
        qs_buf_free(&d->item[i].text);
    }
}

/* Parses xml into d. 0, QS_EPROTO or UV_ENOMEM. */
static int doc_parse(struct doc *d, const char *xml, size_t len)
{
    if (xml == NULL || len == 0 || len > INT_MAX)
        return QS_EPROTO;
    XML_Parser p = XML_ParserCreate(NULL);
    if (p == NULL)
        return UV_ENOMEM;
    d->parser = p;
    XML_SetUserData(p, d);
    XML_SetElementHandler(p, on_start, on_end);
    XML_SetCharacterDataHandler(p, on_text);
    XML_SetStartDoctypeDeclHandler(p, on_doctype);
    enum XML_Status st = XML_Parse(p, xml, (int)len, XML_TRUE);
    int rc = d->rc;
    if (rc == 0 && st != XML_STATUS_OK)
        rc = XML_GetErrorCode(p) == XML_ERROR_NO_MEMORY ? UV_ENOMEM : QS_EPROTO;
    XML_ParserFree(p);
    d->parser = NULL;
    return rc;
}

/* The text of a field, or NULL when the element was absent. */
static const char *text(const struct field *f)
{
    return f->seen ? f->text.data : NULL;
}

static void copy_out(const struct field *f, char *out, size_t cap)
{
    if (out != NULL && cap > 0)
        qs_strlcpy(out, f->seen ? f->text.data : "", cap);
}

/* Moves the text of f ("" when absent) into out (may be NULL), which is
 * reset first. Cannot fail. */
static void take_text(struct field *f, struct qs_buf *out)
{
    if (out == NULL)
        return;
    qs_buf_reset(out);
    if (f->seen) {
        struct qs_buf t = *out;
        *out = f->text;
        f->text = t; /* freed with the doc */
    }
}

static int is_true(const struct field *f)
{
    return f->seen && strcmp(f->text.data, "true") == 0;
}

/* The part of key after prefix, or NULL when key is outside it or is it. */
static const char *strip(const char *key, const char *prefix)
{
    size_t pl = prefix != NULL ? strlen(prefix) : 0;
    if (pl > 0 && strncmp(key, prefix, pl) != 0)
        return NULL;
    return key[pl] != '\0' ? key + pl : NULL;
}

/* ---- Error ------------------------------------------------------------------ */

int qs_s3xml_parse_error(const char *xml, size_t len, char *code, size_t code_cap, char *message,
                         size_t message_cap)
{
    struct doc d;
    doc_init(&d, "Error", NULL);
    d.top[0].name = "Code";
    d.top[1].name = "Message";
    int rc = doc_parse(&d, xml, len);
    if (rc == 0) {
        copy_out(&d.top[0], code, code_cap);
        copy_out(&d.top[1], message, message_cap);
    }
    doc_deinit(&d);
    return rc;
}

/* ---- InitiateMultipartUploadResult ------------------------------------------ */

int qs_s3xml_parse_initiate(const char *xml, size_t len, struct qs_buf *upload_id)
{
    struct doc d;
    doc_init(&d, "InitiateMultipartUploadResult", NULL);
    d.top[0].name = "UploadId";
    int rc = doc_parse(&d, xml, len);
    const char *id = text(&d.top[0]);
    if (rc == 0 && (id == NULL || id[0] == '\0'))
        rc = QS_EPROTO;
    if (rc == 0 && qs_buf_append(upload_id, id, strlen(id)) != 0)
        rc = UV_ENOMEM;
    doc_deinit(&d);
    return rc;
}

/* ---- listing pages ------------------------------------------------------------ */

/* The shape of one page of a listing: its root element, the repeated entry,
 * the root's fields (IsTruncated, then up to two markers to go on from) and
 * the entry's fields, read by on_entry; rollback drops what a failed page
 * added. */
struct page_form {
    const char *root;
    const char *entry;
    const char *top[3];
    const char *item[3];
    int (*on_entry)(struct doc *d);
    void (*rollback)(void *out, size_t n);
};

/* What on_entry appends to: a struct qs_storage_list or qs_storage_uploads. */
struct page_ctx {
    void *out;
    const char *prefix;
};

/* Parses one page into c->out, which held n0 entries before. */
static int parse_page(const struct page_form *f, struct page_ctx c, size_t n0, const char *xml,
                      size_t len, int *truncated, struct qs_buf *marker1, struct qs_buf *marker2)
{
    struct doc d;
    doc_init(&d, f->root, f->entry);
    for (size_t i = 0; i < 3; i++) {
        d.top[i].name = f->top[i];
        d.item[i].name = f->item[i];
    }
    d.on_entry = f->on_entry;
    d.ud = &c;
    int rc = doc_parse(&d, xml, len);
    if (rc == 0) {
        if (truncated != NULL)
            *truncated = is_true(&d.top[0]);
        take_text(&d.top[1], marker1);
        take_text(&d.top[2], marker2);
    } else {
        f->rollback(c.out, n0);
    }
    doc_deinit(&d);
    return rc;
}

/* ---- ListBucketResult (ListObjectsV2) -------------------------------------- */

static int on_contents(struct doc *d)
{
    struct page_ctx *c = d->ud;
    const char *key = text(&d->item[0]), *size = text(&d->item[1]), *lm = text(&d->item[2]);
    if (key == NULL || size == NULL)
        return QS_EPROTO;
    const char *rel = strip(key, c->prefix);
    if (rel == NULL)
        return 0;
    uint64_t sz;
    int64_t t = 0;
    if (qs_parse_u64(size, &sz) != 0 || (lm != NULL && qs_time_parse(lm, &t) != 0))
        return QS_EPROTO;
    return qs_storage_list_add(c->out, rel, sz, t);
}

static void list_rollback(void *out, size_t n)
{
    qs_storage_list_truncate(out, n);
}

static const struct page_form list_form = {
    "ListBucketResult",
    "Contents",
    {"IsTruncated", "NextContinuationToken", NULL},
    {"Key", "Size", "LastModified"},
    on_contents,
    list_rollback,
};

int qs_s3xml_parse_list(const char *xml, size_t len, const char *strip_prefix,
                        struct qs_storage_list *out, int *truncated, struct qs_buf *next_token)
{
    return parse_page(&list_form, (struct page_ctx){out, strip_prefix}, out->n, xml, len, truncated,
                      next_token, NULL);
}

/* ---- ListMultipartUploadsResult -------------------------------------------- */

static int on_upload(struct doc *d)
{
    struct page_ctx *c = d->ud;
    const char *key = text(&d->item[0]), *id = text(&d->item[1]), *ini = text(&d->item[2]);
    int64_t t = 0;
    if (key == NULL || id == NULL || ini == NULL || qs_time_parse(ini, &t) != 0)
        return QS_EPROTO;
    const char *rel = strip(key, c->prefix);
    if (rel == NULL)
        return 0;
    return qs_storage_uploads_add(c->out, rel, id, t);
}

static void uploads_rollback(void *out, size_t n)
{
    qs_storage_uploads_truncate(out, n);
}

static const struct page_form uploads_form = {
    "ListMultipartUploadsResult",
    "Upload",
    {"IsTruncated", "NextKeyMarker", "NextUploadIdMarker"},
    {"Key", "UploadId", "Initiated"},
    on_upload,
    uploads_rollback,
};

int qs_s3xml_parse_uploads(const char *xml, size_t len, const char *strip_prefix,
                           struct qs_storage_uploads *out, int *truncated, struct qs_buf *next_key,
                           struct qs_buf *next_upload)
{
    return parse_page(&uploads_form, (struct page_ctx){out, strip_prefix}, out->n, xml, len,
                      truncated, next_key, next_upload);
}
