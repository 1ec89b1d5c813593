#include "qsnap/fsstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/log.h"

/* Temporaries have fixed-length names, whatever the key: ".qsnap-tmp-XXXXXX"
 * (object) and ".qsnap-mtmp-XXXXXX" (metadata) in the key's directory. Older
 * versions named them ".NAME.qsnap-tmp-XXXXXX"; leftovers of those are still
 * recognised. */
#define TMP_TAG ".qsnap-tmp-"
#define MTMP_TAG ".qsnap-mtmp-"
#define META_SUFFIX ".meta"

struct qs_fsstore {
    struct qs_storage_be be; /* first */
    char *root;              /* no trailing '/' */
};

struct fs_put {
    struct qs_storage_be_put base; /* first */
    struct qs_fsstore *fs;
    unsigned flags;
    char *key;
    char *path;     /* final path */
    char *tmp;      /* temporary path */
    char *metapath; /* .NAME.meta */
    char *metajson; /* NULL = no metadata */
    int fd;
    struct qs_cancel *cancel;
    char *wbuf; /* owned, FS_WRITE_BUF bytes once the first small write came */
    size_t wlen;
};

/* Bytes go to the file in writes of this size at offsets that are
 * multiples of it (the last one shorter): a download hands them over in
 * 16 KiB pieces, and a write system call per piece costs more than the copy
 * into this buffer. 256 KiB: on the benchmark machine a GiB written in
 * 16 KiB writes costs about 1.8 times the CPU of 256 KiB writes, 1 MiB
 * writes save only a little more and 4 MiB writes cost three times as much
 * (docs/benchmarks.md). */
#define FS_WRITE_BUF (256 * 1024)

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (p == NULL)
        return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

/* dir/.NAME<suffix> for path dir/NAME. */
static char *hidden_sibling(const char *path, const char *suffix)
{
    const char *slash = strrchr(path, '/');
    size_t dl = (size_t)(slash - path) + 1, nl = strlen(slash + 1), sl = strlen(suffix);
    char *p = malloc(dl + 1 + nl + sl + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, path, dl);
    p[dl] = '.';
    memcpy(p + dl + 1, slash + 1, nl);
    memcpy(p + dl + 1 + nl, suffix, sl + 1);
    return p;
}

/* dir/NAME for path dir/OTHER. */
static char *sibling(const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    size_t dl = (size_t)(slash - path) + 1, nl = strlen(name);
    char *p = malloc(dl + nl + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, path, dl);
    memcpy(p + dl, name, nl + 1);
    return p;
}

static int sys_err(struct qs_error *err, int e, const char *what, const char *key)
{
    return qs_error_set(err, -e, "file %s %s: %s", what, key, strerror(e));
}

/* After a lookup below the root failed: an error when the destination root
 * itself is gone (a missing or unmounted destination must never read as "no
 * such object" or "no backups"), else 0. */
static int root_check(const struct qs_fsstore *fs, struct qs_error *err)
{
    struct stat st;
    if (stat(fs->root, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            return qs_error_set(err, UV_ENOENT,
                                "file destination %s does not exist (is the volume mounted?)",
                                fs->root);
        return qs_error_set(err, -e, "file destination %s is not accessible: %s", fs->root,
                            strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return qs_error_set(err, UV_ENOTDIR, "file destination %s is not a directory", fs->root);
    return 0;
}

/* Removes a file this put created, after a failure. When that is impossible
 * (e.g. the file system turned read-only) the file stays behind: say so, so
 * that nobody has to find it by accident. Retention sweeps leftover
 * temporaries once they are older than its grace period. */
static void remove_own_file(const char *path, const char *what, const char *key)
{
    if (unlink(path) == 0 || errno == ENOENT)
        return;
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.phase = "storage";
    c.error = strerror(errno);
    qs_log(QS_LOG_ERROR, &c, "could not remove %s %s of %s; it is left behind", what, path, key);
}

static int exists_error(struct qs_error *err, const char *key)
{
    return qs_error_set(err, UV_EEXIST,
                        "file put %s: an object already exists under this key; it was not "
                        "replaced",
                        key);
}

/* Moves tmp to path unless path exists: never replaces an object (unless
 * replace, then rename() does it atomically). Returns 0, UV_EEXIST or a
 * negative errno. */
static int commit(const char *tmp, const char *path, const char *key, int replace)
{
    if (replace)
        return rename(tmp, path) == 0 ? 0 : -errno;
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return -errno;
    /* The file system cannot rename exclusively; link() never replaces
     * either. */
    if (link(tmp, path) != 0)
        return -errno;
    remove_own_file(tmp, "temporary", key);
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *d = strdup(path);
    if (d == NULL)
        return UV_ENOMEM;
    char *slash = strrchr(d, '/');
    if (slash != NULL)
        *slash = '\0';
    int fd = open(slash == d ? "/" : d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(d);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* mkdir -p for the parent directories of root/key. */
static int make_parents(const char *root, const char *key)
{
    char *p = path_join(root, key);
    if (p == NULL)
        return UV_ENOMEM;
    size_t rl = strlen(root);
    int rc = 0;
    for (char *s = p + rl + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            rc = -errno;
        *s = '/';
        if (rc != 0)
            break;
    }
    free(p);
    return rc;
}

static struct qs_fsstore *fs_of(const struct qs_storage_be *be)
{
    return (struct qs_fsstore *)be;
}

static int fs_open(const struct qs_storage_opts *opts, struct qs_storage_be **out,
                   struct qs_error *err)
{
    const char *root = opts->path;
    if (root == NULL || root[0] != '/')
        return qs_error_set(err, QS_ECONFIG, "file destination must be an absolute path");
    struct qs_fsstore *fs = calloc(1, sizeof(*fs));
    if (fs == NULL || (fs->root = strdup(root)) == NULL) {
        free(fs);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    fs->be.driver = &qs_fsstore_driver;
    size_t l = strlen(fs->root);
    while (l > 1 && fs->root[l - 1] == '/')
        fs->root[--l] = '\0';
    *out = &fs->be;
    return 0;
}

static void fs_close(struct qs_storage_be *be)
{
    struct qs_fsstore *fs = fs_of(be);
    if (fs == NULL)
        return;
    free(fs->root);
    free(fs);
}

static void fs_describe(const struct qs_storage_be *be, char *out, size_t cap)
{
    snprintf(out, cap, "file://%s", fs_of(be)->root);
}

static uint64_t fs_retries(const struct qs_storage_be *be)
{
    (void)be;
    return 0; /* nothing here is retried */
}

static int fs_probe(struct qs_storage_be *be, struct qs_error *err)
{
    struct qs_fsstore *fs = fs_of(be);
    struct stat st;
    if (stat(fs->root, &st) != 0)
        return qs_error_set(err, -errno, "file destination %s: %s", fs->root, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return qs_error_set(err, UV_ENOTDIR, "file destination %s: not a directory", fs->root);
    if (access(fs->root, W_OK | X_OK) != 0)
        return qs_error_set(err, -errno, "file destination %s: not writable: %s", fs->root,
                            strerror(errno));
    return 0;
}

/* ---- metadata ---------------------------------------------------------------- */

static char *meta_to_json(const struct qs_storage_meta *m)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (cJSON_AddStringToObject(o, m->names[i], m->values[i]) == NULL) {
            cJSON_Delete(o);
            return NULL;
        }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int read_meta(const char *metapath, struct qs_storage_meta *m)
{
    FILE *f = fopen(metapath, "rb");
    if (f == NULL) /* a sidecar name beyond NAME_MAX cannot exist */
        return errno == ENOENT || errno == ENAMETOOLONG ? 0 : -errno;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *o = NULL;
    if (qs_json_parse(buf, n, &o, NULL) != 0)
        return QS_EPROTO;
    int rc = 0;
    for (cJSON *c = o->child; rc == 0 && c != NULL; c = c->next)
        if (cJSON_IsString(c) && c->string != NULL)
            rc = qs_storage_meta_set(m, c->string, c->valuestring);
    cJSON_Delete(o);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---- put --------------------------------------------------------------------------- */

static void put_free(struct fs_put *put)
{
    if (put->fd >= 0)
        close(put->fd);
    free(put->key);
    free(put->path);
    free(put->tmp);
    free(put->metapath);
    cJSON_free(put->metajson);
    free(put->wbuf);
    free(put);
}

static const struct qs_storage_put_ops fs_put_ops;

static int fs_put_begin(struct qs_storage_be *be, const char *key, int64_t size,
                        const struct qs_storage_meta *meta, unsigned flags,
                        struct qs_cancel *cancel, struct qs_storage_be_put **out,
                        struct qs_error *err)
{
    struct qs_fsstore *fs = fs_of(be);
    struct fs_put *put = calloc(1, sizeof(*put));
    if (put == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    put->base.ops = &fs_put_ops;
    put->fd = -1;
    put->fs = fs;
    put->flags = flags;
    put->cancel = cancel;
    put->key = strdup(key);
    put->path = path_join(fs->root, key);
    put->tmp = put->path ? sibling(put->path, TMP_TAG "XXXXXX") : NULL;
    put->metapath = put->path ? hidden_sibling(put->path, META_SUFFIX) : NULL;
    if (meta != NULL && meta->n > 0)
        put->metajson = meta_to_json(meta);
    if (put->key == NULL || put->tmp == NULL || put->metapath == NULL ||
        (meta != NULL && meta->n > 0 && put->metajson == NULL)) {
        put_free(put);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    int rc = root_check(fs, err);
    if (rc != 0) {
        put_free(put);
        return rc;
    }
    /* Early answer for the common case; the commit decides for good. */
    struct stat sb;
    if (!(flags & QS_STORAGE_PUT_REPLACE) && lstat(put->path, &sb) == 0) {
        put_free(put);
        return exists_error(err, key);
    }
    rc = make_parents(fs->root, key);
    if (rc != 0) {
        put_free(put);
        return qs_error_set(err, rc, "file mkdir for %s: %s", key, strerror(-rc));
    }
    put->fd = mkostemp(put->tmp, O_CLOEXEC);
    if (put->fd < 0) {
        int e = errno;
        put_free(put);
        return sys_err(err, e, "create temporary for", key);
    }
    fchmod(put->fd, 0644);
    *out = &put->base;
    return 0;
}

static struct fs_put *put_of(struct qs_storage_be_put *p)
{
    return (struct fs_put *)p;
}

/* Writes out what the buffer holds. 0 or a negative errno. */
static int put_flush(struct fs_put *put)
{
    int rc = put->wlen > 0 ? write_all(put->fd, put->wbuf, put->wlen) : 0;
    put->wlen = 0;
    return rc;
}

static int fs_put_write(struct qs_storage_be_put *p, const void *data, size_t len,
                        struct qs_error *err)
{
    struct fs_put *put = put_of(p);
    if (qs_cancel_requested(put->cancel))
        return qs_error_set(err, QS_ECANCELED, "file put %s: cancelled", put->key);
    const char *src = data;
    while (len > 0) {
        int rc = 0;
        size_t n;
        if (put->wlen == 0 && len >= FS_WRITE_BUF) {
            n = len - len % FS_WRITE_BUF; /* whole buffers need no copy */
            rc = write_all(put->fd, src, n);
        } else {
            if (put->wbuf == NULL && (put->wbuf = malloc(FS_WRITE_BUF)) == NULL)
                return qs_error_set(err, UV_ENOMEM, "file put %s: out of memory", put->key);
            n = FS_WRITE_BUF - put->wlen < len ? FS_WRITE_BUF - put->wlen : len;
            memcpy(put->wbuf + put->wlen, src, n);
            put->wlen += n;
            if (put->wlen == FS_WRITE_BUF)
                rc = put_flush(put);
        }
        if (rc != 0)
            return sys_err(err, -rc, "write", put->key);
        src += n;
        len -= n;
    }
    return 0;
}

static void fs_put_abort(struct qs_storage_be_put *p)
{
    struct fs_put *put = put_of(p);
    if (put == NULL)
        return;
    if (put->fd >= 0) {
        close(put->fd);
        put->fd = -1;
    }
    remove_own_file(put->tmp, "temporary", put->key);
    put_free(put);
}

/* Puts the metadata sidecar of the (just committed) object in place, or
 * removes a stale one when the put has no metadata. */
static int write_meta_file(struct fs_put *put, struct qs_error *err)
{
    if (put->metajson == NULL) {
        if (unlink(put->metapath) != 0 && errno != ENOENT && errno != ENAMETOOLONG)
            return sys_err(err, errno, "remove old metadata of", put->key);
        return 0;
    }
    char *mtmp = sibling(put->path, MTMP_TAG "XXXXXX");
    if (mtmp == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    int fd = mkostemp(mtmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(mtmp);
        return sys_err(err, e, "create metadata of", put->key);
    }
    fchmod(fd, 0644);
    int rc = write_all(fd, put->metajson, strlen(put->metajson));
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(mtmp, put->metapath) != 0)
        rc = -errno;
    if (rc != 0) {
        remove_own_file(mtmp, "temporary", put->key);
        free(mtmp);
        return sys_err(err, -rc, "write metadata of", put->key);
    }
    free(mtmp);
    return 0;
}

static int fs_put_finish(struct qs_storage_be_put *p, struct qs_error *err)
{
    struct fs_put *put = put_of(p);
    int rc = 0, committed = 0;
    if (qs_cancel_requested(put->cancel))
        rc = qs_error_set(err, QS_ECANCELED, "file put %s: cancelled", put->key);
    if (rc == 0) {
        int e = put_flush(put);
        if (e != 0)
            rc = sys_err(err, -e, "write", put->key);
    }
    if (rc == 0 && fsync(put->fd) != 0)
        rc = sys_err(err, errno, "fsync", put->key);
    if (rc == 0) {
        int fd = put->fd;
        put->fd = -1;
        if (close(fd) != 0)
            rc = sys_err(err, errno, "close", put->key);
    }
    if (rc == 0) {
        int e = commit(put->tmp, put->path, put->key, put->flags & QS_STORAGE_PUT_REPLACE);
        if (e == UV_EEXIST)
            rc = exists_error(err, put->key);
        else if (e != 0)
            rc = sys_err(err, -e, "commit", put->key);
        else
            committed = 1;
    }
    /* The object is ours now: its metadata, then durability of both. */
    if (rc == 0)
        rc = write_meta_file(put, err);
    if (rc == 0) {
        int e = fsync_dir_of(put->path);
        if (e != 0)
            rc = sys_err(err, -e, "fsync directory of", put->key);
    }
    if (rc != 0) {
        if (put->fd >= 0) {
            close(put->fd);
            put->fd = -1;
        }
        /* Nothing is left under the key unless the put succeeded; a
         * committed object is this put's own (commits never replace). */
        if (committed) {
            remove_own_file(put->path, "object", put->key);
            if (put->metajson != NULL)
                remove_own_file(put->metapath, "metadata", put->key);
        } else
            remove_own_file(put->tmp, "temporary", put->key);
    }
    put_free(put);
    return rc;
}

static const struct qs_storage_put_ops fs_put_ops = {
    .write = fs_put_write,
    .finish = fs_put_finish,
    .abort = fs_put_abort,
};

/* ---- read side ----------------------------------------------------------------- */

static int fs_get(struct qs_storage_be *be, const char *key, qs_sink_fn sink, void *ud,
                  struct qs_cancel *cancel, struct qs_error *err)
{
    struct qs_fsstore *fs = fs_of(be);
    char *path = path_join(fs->root, key);
    if (path == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT && e != ENOTDIR)
            return sys_err(err, e, "open", key);
        int rc = root_check(fs, err);
        if (rc != 0)
            return rc;
        return qs_error_set(err, QS_ENOTFOUND, "file get %s: no such object", key);
    }
    size_t cap = 256 * 1024;
    char *buf = malloc(cap);
    int rc = buf ? 0 : qs_error_set(err, UV_ENOMEM, "out of memory");
    while (rc == 0) {
        if (qs_cancel_requested(cancel)) {
            rc = qs_error_set(err, QS_ECANCELED, "file get %s: cancelled", key);
            break;
        }
        ssize_t n = read(fd, buf, cap);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = sys_err(err, errno, "read", key);
            break;
        }
        if (n == 0)
            break;
        int s = sink(buf, (size_t)n, ud);
        if (s != 0)
            rc = qs_error_set(err, s, "file get %s: sink failed", key);
    }
    free(buf);
    close(fd);
    return rc;
}

static int fs_head(struct qs_storage_be *be, const char *key, struct qs_storage_stat *out,
                   struct qs_error *err)
{
    struct qs_fsstore *fs = fs_of(be);
    char *path = path_join(fs->root, key);
    char *mp = path ? hidden_sibling(path, META_SUFFIX) : NULL;
    if (mp == NULL) {
        free(path);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    struct stat st;
    int rc = 0;
    int srv = stat(path, &st);
    if (srv != 0 && errno != ENOENT && errno != ENOTDIR) {
        rc = sys_err(err, errno, "stat", key);
    } else if (srv != 0 && (rc = root_check(fs, err)) != 0) {
        /* the destination itself is gone */
    } else if (srv != 0 || !S_ISREG(st.st_mode)) {
        rc = qs_error_set(err, QS_ENOTFOUND, "file head %s: no such object", key);
    } else {
        memset(out, 0, sizeof(*out));
        out->size = (uint64_t)st.st_size;
        out->mtime = (int64_t)st.st_mtime;
        qs_storage_meta_init(&out->meta);
        int m = read_meta(mp, &out->meta);
        if (m != 0) {
            qs_storage_meta_deinit(&out->meta);
            rc = qs_error_set(err, m, "file head %s: unreadable metadata", key);
        }
    }
    free(path);
    free(mp);
    return rc;
}

static int is_tmp_name(const char *name)
{
    return name[0] == '.' && (strstr(name, TMP_TAG) != NULL || strstr(name, MTMP_TAG) != NULL);
}

/* Walks dir (absolute) whose relative name is rel ("" or "a/b/"). */
static int walk(const char *dir, const char *rel, const char *prefix, int uploads,
                struct qs_storage_list *list, struct qs_storage_uploads *ups)
{
    DIR *d = opendir(dir);
    if (d == NULL) /* a missing directory below the root holds nothing */
        return rel[0] != '\0' && (errno == ENOENT || errno == ENOTDIR) ? 0 : -errno;
    int rc = 0;
    struct dirent *de;
    size_t pl = strlen(prefix), rl = strlen(rel);
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        size_t nl = strlen(n);
        char *relpath = malloc(rl + nl + 2);
        char *abs = path_join(dir, n);
        if (relpath == NULL || abs == NULL) {
            free(relpath);
            free(abs);
            rc = UV_ENOMEM;
            break;
        }
        memcpy(relpath, rel, rl);
        memcpy(relpath + rl, n, nl + 1);
        struct stat st;
        if (lstat(abs, &st) != 0) {
            /* Vanished meanwhile. */
        } else if (S_ISDIR(st.st_mode)) {
            if (n[0] != '.') {
                size_t cl = rl + nl + 1;
                relpath[cl - 1] = '/';
                relpath[cl] = '\0';
                /* Descend only where keys may match the prefix. */
                size_t m = cl < pl ? cl : pl;
                if (strncmp(relpath, prefix, m) == 0)
                    rc = walk(abs, relpath, prefix, uploads, list, ups);
            }
        } else if (S_ISREG(st.st_mode)) {
            if (!uploads && n[0] != '.' && strncmp(relpath, prefix, pl) == 0) {
                rc = qs_storage_list_add(list, relpath, (uint64_t)st.st_size, (int64_t)st.st_mtime);
            } else if (uploads && is_tmp_name(n)) {
                /* The key a temporary was written for is not recorded in its
                 * name: report the temporary's own path. Older names
                 * (.NAME.qsnap-tmp-XXXXXX) still give rel + NAME. */
                const char *tag = strstr(n, TMP_TAG);
                if (tag == NULL)
                    tag = strstr(n, MTMP_TAG);
                const char *kn = tag == n ? n : n + 1;
                size_t kl = tag == n ? nl : (size_t)(tag - n) - 1;
                char *k = malloc(rl + kl + 1);
                if (k == NULL) {
                    rc = UV_ENOMEM;
                } else {
                    memcpy(k, rel, rl);
                    memcpy(k + rl, kn, kl);
                    k[rl + kl] = '\0';
                    if (strncmp(k, prefix, pl) == 0)
                        rc = qs_storage_uploads_add(ups, k, relpath, (int64_t)st.st_mtime);
                    free(k);
                }
            }
        }
        free(relpath);
        free(abs);
    }
    closedir(d);
    return rc;
}

static int fs_list(struct qs_storage_be *be, const char *prefix, struct qs_storage_list *out,
                   struct qs_error *err)
{
    struct qs_fsstore *fs = fs_of(be);
    int rc = walk(fs->root, "", prefix ? prefix : "", 0, out, NULL);
    if (rc == 0)
        return 0;
    int r = root_check(fs, err);
    if (r != 0)
        return r;
    return qs_error_set(err, rc, "file list %s: %s", fs->root, strerror(-rc));
}

static int fs_list_uploads(struct qs_storage_be *be, const char *prefix,
                           struct qs_storage_uploads *out, struct qs_error *err)
{
    struct qs_fsstore *fs = fs_of(be);
    int rc = walk(fs->root, "", prefix ? prefix : "", 1, NULL, out);
    if (rc == 0)
        return 0;
    int r = root_check(fs, err);
    if (r != 0)
        return r;
    return qs_error_set(err, rc, "file list temporaries %s: %s", fs->root, strerror(-rc));
}

static void prune_empty_dirs(const char *root, char *path)
{
    size_t rl = strlen(root);
    for (;;) {
        char *slash = strrchr(path, '/');
        if (slash == NULL || (size_t)(slash - path) <= rl)
            return;
        *slash = '\0';
        if (rmdir(path) != 0)
            return;
    }
}

static int fs_delete(struct qs_storage_be *be, const char *key, struct qs_error *err)
{
    struct qs_fsstore *fs = fs_of(be);
    char *path = path_join(fs->root, key);
    char *mp = path ? hidden_sibling(path, META_SUFFIX) : NULL;
    int rc = 0;
    if (mp == NULL)
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    if (rc == 0 && unlink(path) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            rc = sys_err(err, errno, "delete", key);
        else
            rc = root_check(fs, err); /* deleting what is not there is fine */
    }
    if (rc == 0 && unlink(mp) != 0 && errno != ENOENT && errno != ENAMETOOLONG)
        rc = sys_err(err, errno, "delete metadata of", key);
    if (rc == 0)
        prune_empty_dirs(fs->root, path);
    free(path);
    free(mp);
    return rc;
}

static int fs_abort_upload(struct qs_storage_be *be, const char *key, const char *upload_id,
                           struct qs_error *err)
{
    struct qs_fsstore *fs = fs_of(be);
    const char *base = strrchr(upload_id, '/');
    base = base ? base + 1 : upload_id;
    if (upload_id[0] == '/' || strstr(upload_id, "..") != NULL || !is_tmp_name(base))
        return qs_error_set(err, QS_EINVAL, "file abort upload: \"%s\" is not a temporary",
                            upload_id);
    char *path = path_join(fs->root, upload_id);
    if (path == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    int rc = 0;
    if (unlink(path) != 0 && errno != ENOENT)
        rc = sys_err(err, errno, "remove temporary", upload_id);
    free(path);
    return rc;
}

/* In the order of struct qs_storage_driver: each member has a type of its
 * own, so the compiler checks the order. */
const struct qs_storage_driver qs_fsstore_driver = {
    "file", fs_open, fs_close, fs_describe, fs_retries,      fs_probe,        fs_put_begin,
    fs_get, fs_head, fs_list,  fs_delete,   fs_list_uploads, fs_abort_upload,
};
