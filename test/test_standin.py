#!/usr/bin/python3
"""Conformance tests for the Qdrant stand-in (test/qdrant_standin.py).

One test class per item of the stand-in checklist in the Qdrant snapshot API
reference (items 1-18), plus the fault hooks and the control API. Each test
starts its own stand-in on a free loopback port with temporary storage and
kills it in tearDown. Standard library only (unittest, http.client, socket).
"""

import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.environ.get("QSNAP_TEST_STANDIN") or os.path.join(HERE, "qdrant_standin.py")
PYTHON = os.environ.get("QSNAP_TEST_PYTHON") or "/usr/bin/python3"

NAME_RE = re.compile(r"^(?P<c>.+)-(?P<peer>\d+)-(?P<ts>\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)\.snapshot$")
CTIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
PEER = 7907145935075663


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body

    def h(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


class Standin:
    """A stand-in process on a free port with its own storage."""

    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="standin-conf-")
        self.storage = os.path.join(self.dir, "storage")
        self.port_file = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            [PYTHON, STANDIN, "--port", "0", "--port-file", self.port_file,
             "--storage", self.storage] + list(extra),
            stdout=self.log, stderr=subprocess.STDOUT)
        end = time.time() + 20
        self.port = None
        while time.time() < end:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    data = f.read()
                if data.endswith("\n"):
                    self.port = int(data)
                    self.port_file_data = data
                    break
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise RuntimeError("stand-in did not start")
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def snapdir(self, c=None):
        d = os.path.join(self.storage, "snapshots")
        return os.path.join(d, c) if c else d

    def req(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Resp(r.status, r.getheaders(), data)
        finally:
            conn.close()

    def api(self, method, path, obj=None, headers=None, timeout=60):
        h = dict(headers or {})
        body = None
        if obj is not None:
            body = json.dumps(obj).encode()
            h["Content-Type"] = "application/json"
        return self.req(method, path, body, h, timeout)

    def make(self, name, points=200, dim=64, shards=1, **kw):
        o = {"name": name, "points": points, "dim": dim, "shard_number": shards}
        o.update(kw)
        r = self.api("POST", "/__standin/collections", o)
        assert r.status == 200, r.body
        return r.json()

    def snapshot(self, c, headers=None):
        r = self.req("POST", "/collections/%s/snapshots" % c, headers=headers)
        assert r.status == 200, r.body
        return r.json()["result"]

    def state(self):
        return self.api("GET", "/__standin/state").json()

    def faults(self, **kw):
        r = self.api("POST", "/__standin/faults", kw)
        assert r.status == 200, r.body


def multipart(data, filename="x.snapshot", field="snapshot", boundary="qsnapBOUNDARYx7"):
    head = ('--%s\r\nContent-Disposition: form-data; name="%s"' % (boundary, field))
    if filename is not None:
        head += '; filename="%s"' % filename
    head += "\r\nContent-Type: application/octet-stream\r\n\r\n"
    body = head.encode() + data + ("\r\n--%s--\r\n" % boundary).encode()
    return "multipart/form-data; boundary=%s" % boundary, body


def sha(b):
    return hashlib.sha256(b).hexdigest()


def make_tar(entries):
    """entries: list of (name, bytes) or (name, TarInfo-type, linkname)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.GNU_FORMAT) as t:
        for e in entries:
            ti = tarfile.TarInfo(e[0])
            if len(e) == 2:
                ti.size = len(e[1])
                t.addfile(ti, io.BytesIO(e[1]))
            else:
                ti.type = e[1]
                ti.linkname = e[2]
                t.addfile(ti)
    return bio.getvalue()


class Base(unittest.TestCase):
    ARGS = ("--peer-id", str(PEER))

    def setUp(self):
        self.s = Standin(*self.ARGS)

    def tearDown(self):
        self.s.stop()

    def assertEnvelopeOk(self, r):
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.h("Content-Type"), "application/json")
        j = r.json()
        self.assertEqual(list(j.keys()), ["result", "status", "time"])
        self.assertEqual(j["status"], "ok")
        self.assertIsInstance(j["time"], float)
        return j["result"]

    def assertApiError(self, r, status, msg=None, prefix=None):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.h("Content-Type"), "application/json")
        j = r.json()
        self.assertEqual(list(j.keys()), ["status", "time"])
        self.assertEqual(list(j["status"].keys()), ["error"])
        if msg is not None:
            self.assertEqual(j["status"]["error"], msg)
        if prefix is not None:
            self.assertTrue(j["status"]["error"].startswith(prefix), j["status"]["error"])
        return j

    def assertText(self, r, status, body):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.h("Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(r.body.decode(), body)

    def upload(self, c, data, query="", filename="x.snapshot", headers=None, field="snapshot"):
        ct, body = multipart(data, filename=filename, field=field)
        h = {"Content-Type": ct}
        h.update(headers or {})
        return self.s.req("POST", "/collections/%s/snapshots/upload%s" % (c, query), body, h)

    def download(self, c, name, headers=None):
        return self.s.req("GET", "/collections/%s/snapshots/%s" % (c, name), headers=headers)


# ---------------------------------------------------------------- 1 envelope
class T01Envelope(Base):
    def test_ok_envelope(self):
        self.s.make("c")
        res = self.assertEnvelopeOk(self.s.req("GET", "/collections"))
        self.assertEqual(res, {"collections": [{"name": "c"}]})

    def test_error_envelope_has_no_result(self):
        j = self.assertApiError(self.s.req("GET", "/collections/nope"), 404,
                                "Not found: Collection `nope` doesn't exist!")
        self.assertNotIn("result", j)
        self.assertIsInstance(j["time"], float)

    def test_accepted_envelope(self):
        self.s.make("c")
        r = self.s.req("POST", "/collections/c/snapshots?wait=false")
        self.assertEqual(r.status, 202)
        self.assertEqual(r.h("Content-Type"), "application/json")
        j = r.json()
        self.assertEqual(list(j.keys()), ["status", "time"])
        self.assertEqual(j["status"], "accepted")


# ---------------------------------------------------------------- 2 status codes
class T02StatusCodes(Base):
    def test_codes(self):
        self.s.make("c")
        self.assertApiError(self.s.req("DELETE", "/collections/c/snapshots/x.snapshot"), 404)
        self.assertApiError(self.s.api("PUT", "/collections/c", {"vectors": {"size": 4, "distance": "Dot"}}),
                            409, "Wrong input: Collection `c` already exists!")
        self.s.faults(fail_creates=1)
        self.assertApiError(self.s.req("POST", "/collections/c/snapshots"), 500,
                            prefix="Service internal error: ")
        r = self.upload("c", b"x", "?checksum=abc")
        j = self.assertApiError(r, 422, prefix="Validation error in query parameters: [checksum: ")
        self.assertEqual(j["time"], 0.0)
        r = self.upload("c", b"x", "?checksum=" + "g" * 64)
        self.assertApiError(r, 422, "Validation error in query parameters: [checksum: invalid "
                            "characters, expected 0-9, a-f, A-F]")
        j = self.assertApiError(self.s.req("POST", "/collections/c/snapshots?wait=1"), 400,
                                prefix="Deserialize error in query parameters: ")
        self.assertEqual(j["time"], 0.0)
        r = self.upload("c", b"not a tar", "?checksum=" + "0" * 64)
        self.assertApiError(r, 400, prefix="Checksum mismatch: ")


# ---------------------------------------------------------------- 3 auth
class T03Auth(Base):
    ARGS = ("--peer-id", str(PEER), "--api-key", "rw-secret", "--read-only-api-key", "ro-secret")

    def test_missing_and_invalid_key(self):
        r = self.s.req("GET", "/collections")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.body, b"Must provide an API key or an Authorization bearer token")
        self.assertIsNone(r.h("Content-Type"))
        r = self.s.req("GET", "/collections", headers={"api-key": "wrong"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.body, b"Invalid API key or JWT")
        # a wrong api-key is not rescued by a correct Bearer token
        r = self.s.req("GET", "/collections", headers={"api-key": "wrong",
                                                         "Authorization": "Bearer rw-secret"})
        self.assertEqual(r.status, 401)
        # the Bearer prefix is case-sensitive
        r = self.s.req("GET", "/collections", headers={"Authorization": "bearer rw-secret"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.body, b"Must provide an API key or an Authorization bearer token")

    def test_valid_keys(self):
        self.assertEqual(self.s.req("GET", "/collections", headers={"api-key": "rw-secret"}).status, 200)
        self.assertEqual(self.s.req("GET", "/collections",
                                    headers={"Authorization": "Bearer rw-secret"}).status, 200)
        self.assertEqual(self.s.req("GET", "/collections", headers={"api-key": "ro-secret"}).status, 200)

    def test_whitelist(self):
        for p in ("/", "/healthz", "/readyz", "/livez"):
            self.assertEqual(self.s.req("GET", p).status, 200, p)
        self.assertEqual(self.s.req("GET", "/metrics").status, 401)
        self.assertEqual(self.s.req("GET", "/metrics", headers={"api-key": "ro-secret"}).status, 200)

    def test_read_only_key(self):
        ro = {"api-key": "ro-secret"}
        rw = {"api-key": "rw-secret"}
        self.s.make("c")
        snap = self.s.snapshot("c", headers=rw)
        n = snap["name"]
        self.assertEnvelopeOk(self.s.req("GET", "/collections/c/snapshots", headers=ro))
        self.assertEnvelopeOk(self.s.req("GET", "/collections/c", headers=ro))
        r = self.download("c", n, headers=ro)
        self.assertEqual(r.status, 200)
        self.assertEqual(sha(r.body), snap["checksum"])
        forbidden = "Forbidden: Global manage access is required"
        self.assertApiError(self.s.req("POST", "/collections/c/snapshots", headers=ro), 403, forbidden)
        self.assertApiError(self.s.req("DELETE", "/collections/c/snapshots/" + n, headers=ro), 403, forbidden)
        self.assertApiError(self.upload("c", r.body, headers=ro), 403, forbidden)
        self.assertApiError(self.s.api("PUT", "/collections/c/snapshots/recover",
                                       {"location": "file:///nonexistent"}, headers=ro), 403, forbidden)
        self.assertApiError(self.s.req("POST", "/snapshots", headers=ro), 403, forbidden)
        self.assertApiError(self.s.req("DELETE", "/collections/c", headers=ro), 403, forbidden)
        # wait=false hides the 403, and nothing happens
        r = self.s.req("POST", "/collections/c/snapshots?wait=false", headers=ro)
        self.assertEqual(r.status, 202)
        time.sleep(0.3)
        self.assertEqual(len(os.listdir(self.s.snapdir("c"))), 2)  # snapshot + checksum


# ---------------------------------------------------------------- 4 create
class T04Create(Base):
    def test_name_description_and_checksum_file(self):
        self.s.make("my-coll", points=300, dim=32)
        before = time.time()
        d = self.s.snapshot("my-coll")
        after = time.time()
        self.assertEqual(list(d.keys()), ["name", "creation_time", "size", "checksum"])
        m = NAME_RE.match(d["name"])
        self.assertIsNotNone(m, d["name"])
        self.assertEqual(m.group("c"), "my-coll")
        self.assertEqual(int(m.group("peer")), PEER)
        ts = time.strptime(m.group("ts") + " UTC", "%Y-%m-%d-%H-%M-%S %Z")
        import calendar
        t = calendar.timegm(ts)
        self.assertTrue(int(before) <= t <= after + 1, (before, t, after))
        self.assertRegex(d["creation_time"], CTIME_RE)
        path = os.path.join(self.s.snapdir("my-coll"), d["name"])
        self.assertEqual(d["size"], os.path.getsize(path))
        self.assertRegex(d["checksum"], HEX64_RE)
        with open(path, "rb") as f:
            self.assertEqual(sha(f.read()), d["checksum"])
        with open(path + ".checksum", "rb") as f:
            raw = f.read()
        self.assertEqual(raw, d["checksum"].encode())  # 64 lowercase hex, no newline
        # no scratch files left next to the snapshot
        self.assertEqual(sorted(os.listdir(self.s.snapdir("my-coll"))),
                         sorted([d["name"], d["name"] + ".checksum"]))
        # the checksum was written before the archive was renamed into place
        cs = os.stat(path + ".checksum")
        ss = os.stat(path)
        self.assertLessEqual(cs.st_ctime_ns, ss.st_ctime_ns)

    def test_snapshot_appears_atomically_after_checksum(self):
        self.s.make("big", points=12000, dim=512)  # ~25 MiB snapshot
        d = self.s.snapdir("big")
        seen = []
        stop = threading.Event()

        def watch():
            while True:
                last = stop.is_set()
                try:
                    names = set(os.listdir(d))
                except FileNotFoundError:
                    if last:
                        break
                    continue
                for n in names:
                    if n.endswith(".snapshot"):
                        try:
                            size = os.path.getsize(os.path.join(d, n))
                        except FileNotFoundError:
                            continue
                        seen.append((n, n + ".checksum" in names, size))
                    if n.endswith(".tmp"):
                        seen.append((n, None, None))
                if last:
                    break

        th = threading.Thread(target=watch)
        th.start()
        try:
            desc = self.s.snapshot("big")
        finally:
            stop.set()
            th.join()
        self.assertTrue(seen, "watcher saw nothing")
        for n, has_cs, size in seen:
            if has_cs is None:
                continue  # the <stem>.tmp step of store_file may be caught
            self.assertTrue(has_cs, "snapshot visible before its .checksum")
            self.assertEqual(size, desc["size"], "partial snapshot visible")

    def test_missing_collection(self):
        self.assertApiError(self.s.req("POST", "/collections/nope/snapshots"), 404,
                            "Not found: Collection `nope` doesn't exist!")


# ---------------------------------------------------------------- 5 same second
class T05SameSecond(Base):
    def test_same_second_overwrites(self):
        self.s.make("c", points=100, dim=16)
        self.s.make("c_big", points=900, dim=16)
        big = self.s.snapshot("c_big")
        big_path = os.path.join(self.s.snapdir("c_big"), big["name"])
        # freeze the stand-in's clock: both creates fall into the same second
        r = self.s.api("POST", "/__standin/time", {"offset_s": 0, "freeze": True})
        self.assertEqual(r.status, 200)
        a = self.s.snapshot("c")
        r = self.s.api("PUT", "/collections/c/snapshots/recover", {"location": "file://" + big_path})
        self.assertEnvelopeOk(r)
        b = self.s.snapshot("c")
        self.assertEqual(a["name"], b["name"])
        self.assertNotEqual(a["size"], b["size"])
        lst = self.assertEnvelopeOk(self.s.req("GET", "/collections/c/snapshots"))
        self.assertEqual(len(lst), 1)
        self.assertEqual(lst[0]["size"], b["size"])
        self.assertEqual(lst[0]["checksum"], b["checksum"])
        self.assertEqual(sha(self.download("c", b["name"]).body), b["checksum"])
        self.assertEqual(sorted(os.listdir(self.s.snapdir("c"))),
                         [b["name"], b["name"] + ".checksum"])

    def test_real_clock_same_second(self):
        self.s.make("c", points=50, dim=8)
        for _ in range(10):
            while time.time() % 1.0 > 0.2:
                time.sleep(0.01)
            a = self.s.snapshot("c")
            b = self.s.snapshot("c")
            if a["name"] == b["name"]:
                break
        self.assertEqual(a["name"], b["name"])
        self.assertEqual(len(self.assertEnvelopeOk(self.s.req("GET", "/collections/c/snapshots"))), 2 - 1)


# ---------------------------------------------------------------- 6 wait=false
class T06WaitFalse(Base):
    def test_create_accepted_then_listed(self):
        self.s.make("c")
        r = self.s.req("POST", "/collections/c/snapshots?wait=false")
        self.assertEqual(r.status, 202)
        self.assertNotIn(b"result", r.body)
        for _ in range(100):
            lst = self.assertEnvelopeOk(self.s.req("GET", "/collections/c/snapshots"))
            if lst:
                break
            time.sleep(0.05)
        self.assertEqual(len(lst), 1)

    def test_errors_are_swallowed(self):
        self.s.make("c")
        self.assertEqual(self.s.req("POST", "/collections/nope/snapshots?wait=false").status, 202)
        self.assertEqual(self.s.req("DELETE", "/collections/c/snapshots/x.snapshot?wait=false").status, 202)
        self.assertEqual(self.s.api("PUT", "/collections/c/snapshots/recover?wait=false",
                                    {"location": "file:///does/not/exist"}).status, 202)
        r = self.upload("newc", b"garbage", "?wait=false&checksum=" + "a" * 64)
        self.assertEqual(r.status, 202)
        self.assertEqual(r.json()["status"], "accepted")
        time.sleep(0.3)
        self.assertEqual(self.s.req("GET", "/collections/newc").status, 404)


# ---------------------------------------------------------------- 7 list
class T07List(Base):
    def test_filtering_checksum_key_and_order(self):
        self.s.make("c")
        d1 = self.s.snapshot("c")
        d = self.s.snapdir("c")
        names = ["n%02d-%s.snapshot" % (i, c) for i, c in zip(range(20), "qwertyuiopasdfghjklz")]
        names.reverse()
        for n in names:
            with open(os.path.join(d, n), "wb") as f:
                f.write(b"x" * 10)
        for junk in ("a.tmp", "b.snapshot.tmp", ".snapshot", "x.checksum"):
            with open(os.path.join(d, junk), "wb") as f:
                f.write(b"j")
        os.mkdir(os.path.join(d, "dir.snapshot"))
        os.makedirs(os.path.join(d, "shards", "0"))
        lst = self.assertEnvelopeOk(self.s.req("GET", "/collections/c/snapshots"))
        got = [x["name"] for x in lst]
        expect = [n for n in os.listdir(d) if n.endswith(".snapshot") and n != ".snapshot"
                  and os.path.isfile(os.path.join(d, n))]
        self.assertNotEqual(expect, sorted(expect), "fixture: directory order happens to be sorted")
        self.assertEqual(got, expect)  # read_dir order, not sorted
        self.assertEqual(sorted(got), sorted(names + [d1["name"]]))
        for x in lst:
            if x["name"] == d1["name"]:
                self.assertEqual(x["checksum"], d1["checksum"])
            else:
                self.assertNotIn("checksum", x)
                self.assertEqual(x["size"], 10)
                self.assertRegex(x["creation_time"], CTIME_RE)

    def test_missing_dir_and_collection(self):
        self.s.make("c")
        self.assertFalse(os.path.exists(self.s.snapdir("c")))
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/c/snapshots")), [])
        self.assertApiError(self.s.req("GET", "/collections/nope/snapshots"), 404,
                            "Not found: Collection `nope` doesn't exist!")


# ---------------------------------------------------------------- 8 download
class T08Download(Base):
    def setUp(self):
        super().setUp()
        self.s.make("c", points=500, dim=32)
        self.d = self.s.snapshot("c")
        with open(os.path.join(self.s.snapdir("c"), self.d["name"]), "rb") as f:
            self.data = f.read()

    def test_full_download_headers(self):
        r = self.download("c", self.d["name"])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.h("Content-Type"), "application/octet-stream")
        self.assertEqual(r.h("Content-Length"), str(self.d["size"]))
        self.assertEqual(r.h("Content-Disposition"), 'attachment; filename="%s"' % self.d["name"])
        self.assertEqual(r.h("Accept-Ranges"), "bytes")
        self.assertIsNone(r.h("Content-Encoding"))
        self.assertIsNone(r.h("Transfer-Encoding"))
        self.assertRegex(r.h("ETag"), r'^"[0-9a-f]+:[0-9a-f]+:[0-9a-f]+:[0-9a-f]+"$')
        self.assertRegex(r.h("Last-Modified"), r"GMT$")
        self.assertEqual(r.body, self.data)
        self.assertEqual(sha(r.body), self.d["checksum"])

    def test_ranges(self):
        n = self.d["name"]
        size = len(self.data)
        cases = [("bytes=10-19", 10, 19), ("bytes=-7", size - 7, size - 1),
                 ("bytes=%d-" % (size - 100), size - 100, size - 1),
                 ("bytes=0-1,5-6", 0, 1), ("bytes=5-%d" % (size * 2), 5, size - 1)]
        for hdr, a, b in cases:
            r = self.download("c", n, {"Range": hdr})
            self.assertEqual(r.status, 206, hdr)
            self.assertEqual(r.h("Content-Range"), "bytes %d-%d/%d" % (a, b, size), hdr)
            self.assertEqual(r.h("Content-Length"), str(b - a + 1))
            self.assertEqual(r.body, self.data[a:b + 1], hdr)
        for hdr in ("bytes=%d-" % size, "bytes=%d-%d" % (size + 5, size + 9), "bytes=9-3"):
            r = self.download("c", n, {"Range": hdr})
            self.assertEqual(r.status, 416, hdr)
            self.assertEqual(r.h("Content-Range"), "bytes */%d" % size)
            self.assertEqual(r.body, b"")

    def test_conditional_requests(self):
        n = self.d["name"]
        etag = self.download("c", n).h("ETag")
        lm = self.download("c", n).h("Last-Modified")
        r = self.download("c", n, {"If-None-Match": etag})
        self.assertEqual((r.status, r.body), (304, b""))
        r = self.download("c", n, {"If-Modified-Since": lm})
        self.assertEqual(r.status, 304)
        r = self.download("c", n, {"If-Match": '"nope"'})
        self.assertEqual(r.status, 412)
        r = self.download("c", n, {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
        self.assertEqual(r.status, 412)
        r = self.download("c", n, {"If-Match": etag})
        self.assertEqual((r.status, len(r.body)), (200, self.d["size"]))

    def test_errors_are_plain_text(self):
        self.assertText(self.download("c", "nope.snapshot"), 404,
                        "Not found: Snapshot nope.snapshot not found")
        self.assertText(self.download("zz", "nope.snapshot"), 404,
                        "Not found: Collection `zz` doesn't exist!")

    def test_traversal(self):
        for bad in ("..%2F..%2Fstorage%2Fpeer_id", "%2Fetc%2Fpasswd", "..%2Fsnapshots",
                    "..", ".", "tmp"):
            r = self.download("c", bad)
            self.assertEqual(r.status, 404, bad)
            self.assertNotIn(b"root:", r.body)
        r = self.s.req("GET", "/collections/c/snapshots/../../../etc/passwd")
        self.assertEqual(r.status, 404)
        r = self.s.req("GET", "/snapshots/..%2F..%2F..%2Fetc%2Fpasswd")
        self.assertEqual(r.status, 404)

    def test_checksum_file_is_downloadable_and_head_is_404(self):
        r = self.download("c", self.d["name"] + ".checksum")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, self.d["checksum"].encode())
        r = self.s.req("HEAD", "/collections/c/snapshots/" + self.d["name"])
        self.assertEqual(r.status, 404)


# ---------------------------------------------------------------- 9 compression
class T09Compression(Base):
    def test_gzip_chunked_when_client_accepts(self):
        self.s.make("c", points=500, dim=32)
        d = self.s.snapshot("c")
        r = self.download("c", d["name"], {"Accept-Encoding": "gzip"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.h("Content-Encoding"), "gzip")
        self.assertEqual(r.h("Transfer-Encoding"), "chunked")
        self.assertEqual(r.h("Vary"), "accept-encoding")
        self.assertIsNone(r.h("Content-Length"))
        plain = zlib.decompress(r.body, 31)
        self.assertEqual(sha(plain), d["checksum"])
        # JSON responses are compressed too
        r = self.s.req("GET", "/collections/c/snapshots", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(r.h("Content-Encoding"), "gzip")
        self.assertEqual(json.loads(zlib.decompress(r.body, 31))["result"][0]["name"], d["name"])
        # ranges are not compressed
        r = self.download("c", d["name"], {"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
        self.assertEqual(r.status, 206)
        self.assertEqual(r.h("Content-Encoding"), "identity")
        self.assertEqual(r.h("Content-Length"), "100")
        # no Accept-Encoding: identity with Content-Length
        r = self.download("c", d["name"])
        self.assertIsNone(r.h("Content-Encoding"))
        self.assertEqual(r.h("Content-Length"), str(d["size"]))


# ---------------------------------------------------------------- 10 delete
class T10Delete(Base):
    def test_delete(self):
        self.s.make("c")
        d = self.s.snapshot("c")
        p = os.path.join(self.s.snapdir("c"), d["name"])
        r = self.s.req("DELETE", "/collections/c/snapshots/" + d["name"])
        self.assertIs(self.assertEnvelopeOk(r), True)
        self.assertFalse(os.path.exists(p))
        self.assertFalse(os.path.exists(p + ".checksum"))
        self.assertApiError(self.s.req("DELETE", "/collections/c/snapshots/" + d["name"]), 404,
                            "Not found: Snapshot %s not found" % d["name"])
        self.assertApiError(self.s.req("DELETE", "/collections/zz/snapshots/" + d["name"]), 404,
                            "Not found: Collection `zz` doesn't exist!")
        # a snapshot without a .checksum sidecar deletes fine
        d2 = self.s.snapshot("c")
        os.unlink(os.path.join(self.s.snapdir("c"), d2["name"] + ".checksum"))
        self.assertIs(self.assertEnvelopeOk(
            self.s.req("DELETE", "/collections/c/snapshots/" + d2["name"])), True)
        # traversal is refused
        self.assertApiError(self.s.req("DELETE", "/collections/c/snapshots/..%2F..%2Fstorage%2Fpeer_id"), 404)
        self.assertTrue(os.path.exists(os.path.join(self.s.storage, "storage", "peer_id")))


# ---------------------------------------------------------------- 11 upload
class T11Upload(Base):
    def setUp(self):
        super().setUp()
        self.s.make("src", points=321, dim=24)
        self.d = self.s.snapshot("src")
        self.data = self.download("src", self.d["name"]).body

    def test_upload_creates_collection_and_keeps_file(self):
        r = self.upload("dst", self.data, "?wait=true&priority=snapshot&checksum=" + self.d["checksum"],
                        filename="../../evil/up.snapshot")
        self.assertIs(self.assertEnvelopeOk(r), True)
        info = self.assertEnvelopeOk(self.s.req("GET", "/collections/dst"))
        self.assertEqual(info["points_count"], 321)
        kept = os.path.join(self.s.snapdir("dst"), "up.snapshot")
        self.assertTrue(os.path.isfile(kept))
        self.assertFalse(os.path.exists(os.path.join(self.s.storage, "evil")))
        lst = self.assertEnvelopeOk(self.s.req("GET", "/collections/dst/snapshots"))
        self.assertEqual([x["name"] for x in lst], ["up.snapshot"])
        self.assertNotIn("checksum", lst[0])
        st = self.s.state()
        self.assertEqual(st["collections"]["dst"]["restored_from_sha256"], self.d["checksum"])
        up = st["uploads"][-1]
        self.assertEqual((up["collection"], up["filename"], up["sha256"], up["size"], up["checksum_param"]),
                         ("dst", "../../evil/up.snapshot", self.d["checksum"], len(self.data), self.d["checksum"]))

    def test_uppercase_checksum_and_no_filename(self):
        r = self.upload("dst", self.data, "?checksum=" + self.d["checksum"].upper(), filename=None)
        self.assertIs(self.assertEnvelopeOk(r), True)
        files = os.listdir(self.s.snapdir("dst"))
        self.assertEqual(len(files), 1)
        self.assertRegex(files[0], r"^[0-9a-f-]{36}$")

    def test_chunked_request_body(self):
        ct, body = multipart(self.data, "ch.snapshot")
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=30)
        try:
            conn.putrequest("POST", "/collections/dst/snapshots/upload")
            conn.putheader("Content-Type", ct)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(body), 7777):
                part = body[i:i + 7777]
                conn.send(b"%x\r\n" % len(part) + part + b"\r\n")
            conn.send(b"0\r\n\r\n")
            r = conn.getresponse()
            self.assertEqual(r.status, 200, r.read())
            r.read()
        finally:
            conn.close()
        self.assertEqual(self.s.state()["uploads"][-1]["sha256"], self.d["checksum"])

    def test_multipart_with_other_fields_and_tiny_chunks(self):
        b = "xYz123"
        body = (("preamble\r\n--%s\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
                 "hello\r\n--%s\r\nContent-Disposition: form-data; name=\"snapshot\"; "
                 "filename=\"t.snapshot\"\r\n\r\n" % (b, b)).encode()
                + self.data + ("\r\n--%s--\r\n" % b).encode())
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=60)
        try:
            conn.putrequest("POST", "/collections/dst/snapshots/upload")
            conn.putheader("Content-Type", 'multipart/form-data; boundary="%s"' % b)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            tail = len(body) - 300
            conn.send(b"%x\r\n" % tail + body[:tail] + b"\r\n")
            for i in range(tail, len(body), 5):  # the closing delimiter straddles chunks
                part = body[i:i + 5]
                conn.send(b"%x\r\n" % len(part) + part + b"\r\n")
            conn.send(b"0\r\n\r\n")
            r = conn.getresponse()
            self.assertEqual(r.status, 200, r.read())
            r.read()
        finally:
            conn.close()
        up = self.s.state()["uploads"][-1]
        self.assertEqual((up["filename"], up["sha256"], up["size"]), ("t.snapshot", self.d["checksum"], len(self.data)))

    def test_multipart_errors(self):
        self.assertText(self.upload("dst", self.data, field="file"), 400,
                        "Required field is missing: snapshot")
        r = self.s.req("POST", "/collections/dst/snapshots/upload", self.data,
                       {"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 415)
        ct, body = multipart(self.data)
        r = self.s.req("POST", "/collections/dst/snapshots/upload", body[:len(body) // 2],
                       {"Content-Type": ct})
        self.assertEqual(r.status, 400)
        self.assertEqual(self.s.req("GET", "/collections/dst").status, 404)

    def test_checksum_mismatch(self):
        wrong = "ab" * 32
        r = self.upload("dst", self.data, "?checksum=" + wrong)
        self.assertApiError(r, 400, "Checksum mismatch: expected %s, actual %s" % (self.d["checksum"], wrong))
        self.assertEqual(self.s.req("GET", "/collections/dst").status, 404)
        self.assertFalse(os.path.exists(os.path.join(self.s.snapdir("dst"), "x.snapshot")))

    def test_upload_replaces_points(self):
        self.s.make("dst", points=1000, dim=24)
        self.assertIs(self.assertEnvelopeOk(self.upload("dst", self.data)), True)
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/dst"))["points_count"], 321)
        self.assertEqual(self.s.state()["collections"]["dst"]["restores"], 1)


# ---------------------------------------------------------------- 12 recover
class T12Recover(Base):
    def setUp(self):
        super().setUp()
        self.s.make("src", points=150, dim=16)
        self.d = self.s.snapshot("src")
        self.path = os.path.join(self.s.snapdir("src"), self.d["name"])

    def recover(self, c, body, wait=""):
        return self.s.api("PUT", "/collections/%s/snapshots/recover%s" % (c, wait), body)

    def test_file_url(self):
        self.s.make("dst", points=999, dim=16)
        r = self.recover("dst", {"location": "file://" + self.path, "checksum": self.d["checksum"]})
        self.assertIs(self.assertEnvelopeOk(r), True)
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/dst"))["points_count"], 150)
        self.assertTrue(os.path.exists(self.path))  # file:// sources are kept
        r = self.recover("new", {"location": "file://localhost" + self.path})
        self.assertIs(self.assertEnvelopeOk(r), True)
        self.assertEqual(self.s.state()["collections"]["new"]["points_count"], 150)

    def test_file_url_errors(self):
        self.assertApiError(self.recover("x", {"location": "file://whatever.snapshot"}), 400,
                            "Bad request: Invalid snapshot URI, file path must be absolute or on localhost")
        self.assertApiError(self.recover("x", {"location": "file:///whatever.snapshot"}), 400,
                            'Bad request: Snapshot file "/whatever.snapshot" does not exist')
        self.assertApiError(self.recover("x", {"location": "file://localhost/whatever.snapshot"}), 400,
                            'Bad request: Snapshot file "/whatever.snapshot" does not exist')
        self.assertApiError(self.recover("x", {"location": "s3://bucket/key.snapshot"}), 400,
                            "Bad request: URL s3://bucket/key.snapshot with schema s3 is not supported")
        self.assertApiError(self.recover("x", {"location": "/abs/path.snapshot"}), 400,
                            prefix="Format error in JSON body: ")
        self.assertApiError(self.recover("x", {"location": "file://" + self.path, "checksum": "0" * 64}), 400,
                            "Wrong input: Snapshot checksum mismatch: expected %s, got %s"
                            % ("0" * 64, self.d["checksum"]))

    def test_http_url_from_second_server(self):
        other = Standin("--api-key", "remote-key")
        try:
            other.make("r", points=77, dim=16)
            rd = other.snapshot("r", headers={"api-key": "remote-key"})
            url = "%s/collections/r/snapshots/%s" % (other.url, rd["name"])
            r = self.recover("src", {"location": url, "api_key": "remote-key", "priority": "replica"})
            self.assertIs(self.assertEnvelopeOk(r), True)
            st = self.s.state()["collections"]["src"]
            self.assertEqual(st["points_count"], 77)
            self.assertEqual(st["restored_from_sha256"], rd["checksum"])
            tmp = os.path.join(self.s.snapdir(), "tmp")
            self.assertEqual([f for f in os.listdir(tmp) if f.endswith(".download")], [])
            r = self.recover("src", {"location": url})  # no api key: remote answers 401
            self.assertApiError(r, 400, prefix="Wrong input: Failed to download snapshot from %s: status - 401" % url)
            r = self.recover("src", {"location": other.url + "/collections/r/snapshots/none.snapshot",
                                     "api_key": "remote-key"})
            self.assertApiError(r, 400, prefix="Wrong input: Failed to download snapshot from ")
        finally:
            other.stop()

    def test_incompatible_collection(self):
        self.s.make("dst", points=10, dim=32)
        r = self.recover("dst", {"location": "file://" + self.path})
        self.assertApiError(r, 400, prefix="Wrong input: Snapshot is not compatible with existing collection: ")
        self.assertEqual(self.s.state()["collections"]["dst"]["points_count"], 10)
        self.s.make("two", points=10, dim=16, shards=2)
        r = self.recover("two", {"location": "file://" + self.path})
        self.assertApiError(r, 400, prefix="Wrong input: Snapshot is not compatible with existing collection: ")


# ---------------------------------------------------------------- 13 priority
class T13Priority(Base):
    def test_priority_values(self):
        self.s.make("src", points=40, dim=8)
        d = self.s.snapshot("src")
        data = self.download("src", d["name"]).body
        for p in ("snapshot", "replica", "no_sync"):
            self.assertIs(self.assertEnvelopeOk(self.upload("dst", data, "?priority=" + p)), True, p)
        r = self.upload("dst", data, "?priority=Snapshot")
        self.assertApiError(r, 400, prefix="Deserialize error in query parameters: unknown variant `Snapshot`")
        path = os.path.join(self.s.snapdir("src"), d["name"])
        r = self.s.api("PUT", "/collections/dst/snapshots/recover", {"location": "file://" + path, "priority": "bogus"})
        self.assertApiError(r, 400, prefix="Format error in JSON body: ")
        r = self.s.api("PUT", "/collections/dst/snapshots/recover", {"location": "file://" + path, "priority": "no_sync"})
        self.assertIs(self.assertEnvelopeOk(r), True)


# ---------------------------------------------------------------- 14 archive validity
class T14ArchiveValidity(Base):
    def setUp(self):
        super().setUp()
        self.s.make("c", points=50, dim=8)

    def check(self, data, status, msg=None, prefix=None):
        r = self.upload("c", data)
        self.assertApiError(r, status, msg, prefix)
        self.assertEqual(self.s.state()["collections"]["c"]["points_count"], 50)
        self.assertEqual(self.s.state()["collections"]["c"]["restores"], 0)

    def test_link_entries_rejected(self):
        cfg = json.dumps({"params": {"vectors": {"size": 8, "distance": "Cosine"}, "shard_number": 1}}).encode()
        base = [("config.json", cfg), ("0/shard_config.json", b'{"type":"ReplicaSet"}')]
        self.check(make_tar(base + [("0/evil", tarfile.SYMTYPE, "/etc/passwd")]), 400,
                   "Wrong input: Malformed snapshot, tar archive contains Symlink entry")
        self.check(make_tar(base + [("0/evil", tarfile.LNKTYPE, "config.json")]), 400,
                   "Wrong input: Malformed snapshot, tar archive contains Link entry")

    def test_garbage_and_missing_parts(self):
        self.check(os.urandom(4096), 500,
                   "Service internal error: Failed to open snapshot archive, malformed format")
        cfg = json.dumps({"params": {"vectors": {"size": 8, "distance": "Cosine"}, "shard_number": 2}}).encode()
        self.check(make_tar([("config.json", cfg), ("0/shard_config.json", b"{}")]), 500,
                   prefix="Service internal error: Can't read shard config at ")
        self.check(make_tar([("0/shard_config.json", b"{}")]), 500, prefix="Service internal error: ")

    def test_truncated_archive(self):
        d = self.s.snapshot("c")
        data = self.download("c", d["name"]).body
        self.check(data[:len(data) // 2], 500,
                   "Service internal error: Failed to open snapshot archive, malformed format")


# ---------------------------------------------------------------- 15 realistic file
class T15SnapshotContent(Base):
    def test_layout_and_content(self):
        self.s.make("c", points=700, dim=256, shards=2, distance="Dot")
        d = self.s.snapshot("c")
        data = self.download("c", d["name"]).body
        self.assertEqual(data[257:265], b"ustar  \0")  # GNU header magic
        t = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        names = t.getnames()
        for m in t.getmembers():
            self.assertIn(m.type, (tarfile.REGTYPE, tarfile.DIRTYPE), m.name)
        for s in (0, 1):
            self.assertTrue(any(re.match(r"^%d/segments/[0-9a-f-]{36}\.tar$" % s, n) for n in names))
            self.assertTrue(any(n.startswith("%d/wal/" % s) for n in names))
            rs = json.loads(t.extractfile("%d/replica_state.json" % s).read())
            self.assertEqual(rs["this_peer_id"], PEER)
            self.assertEqual(rs["peers"], {str(PEER): "Active"})
            self.assertTrue(rs["is_local"])
            self.assertEqual(json.loads(t.extractfile("%d/shard_config.json" % s).read()), {"type": "ReplicaSet"})
        self.assertEqual(t.extractfile("version.info").read(), b"0.4.2")
        cfg = json.loads(t.extractfile("config.json").read())
        self.assertEqual(cfg["params"]["vectors"], {"size": 256, "distance": "Dot"})
        self.assertEqual(cfg["params"]["shard_number"], 2)
        for k in ("hnsw_config", "optimizer_config", "wal_config", "quantization_config"):
            self.assertIn(k, cfg)
        self.assertIn("shard_key_mapping.json", names)
        self.assertIn("payload_index.json", names)
        total = 0
        import array
        for n in names:
            if "/segments/" in n:
                seg = tarfile.open(fileobj=io.BytesIO(t.extractfile(n).read()), mode="r:")
                vec = seg.extractfile("snapshot/files/vector_storage/vectors/chunk_0.mmap").read()
                self.assertEqual(len(vec) % (256 * 4), 0)
                pts = len(vec) // (256 * 4)
                total += pts
                a = array.array("f")
                a.frombytes(vec[:256 * 4 * 10])
                self.assertTrue(all(abs(x) < 1.0 for x in a))
                self.assertGreater(len(set(a)), 2000)
                payload = seg.extractfile("snapshot/files/payload_storage/page_0.dat").read()
                lines = payload.splitlines()
                self.assertEqual(len(lines), pts)
                self.assertIn("text", json.loads(lines[0]))
        self.assertEqual(total, 700)
        # float32 embeddings barely compress (5-15%), payload JSON much better
        vec_ratio = len(zlib.compress(vec, 6)) / len(vec)
        self.assertGreater(vec_ratio, 0.85)
        self.assertLess(vec_ratio, 0.95)
        pay_ratio = len(zlib.compress(payload, 6)) / len(payload)
        self.assertLess(pay_ratio, 0.6)
        ratio = len(zlib.compress(data, 6)) / len(data)
        self.assertGreater(ratio, 0.70)
        self.assertLess(ratio, 0.95)

    def test_size_mib(self):
        r = self.s.make("sized", dim=384, size_mib=6)
        d = self.s.snapshot("sized")
        self.assertLess(abs(d["size"] - 6 * 1048576) / (6 * 1048576), 0.02, d["size"])
        self.assertEqual(self.s.state()["collections"]["sized"]["points_count"], r["points_count"])


# ---------------------------------------------------------------- 16 full snapshots
class T16FullSnapshots(Base):
    def test_full_snapshot_cycle(self):
        self.s.make("a", points=30, dim=8)
        self.s.make("b", points=40, dim=8)
        r = self.s.api("POST", "/collections/aliases",
                       {"actions": [{"create_alias": {"collection_name": "a", "alias_name": "al"}}]})
        self.assertIs(self.assertEnvelopeOk(r), True)
        r = self.s.req("POST", "/snapshots")
        d = self.assertEnvelopeOk(r)
        self.assertRegex(d["name"], r"^full-snapshot-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.snapshot$")
        self.assertRegex(d["checksum"], HEX64_RE)
        lst = self.assertEnvelopeOk(self.s.req("GET", "/snapshots"))
        self.assertEqual([x["name"] for x in lst], [d["name"]])  # subdirs excluded
        r = self.s.req("GET", "/snapshots/" + d["name"])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.h("Content-Disposition"), 'attachment; filename="%s"' % d["name"])
        self.assertEqual(sha(r.body), d["checksum"])
        t = tarfile.open(fileobj=io.BytesIO(r.body), mode="r:")
        cfg = json.loads(t.extractfile("config.json").read())
        self.assertEqual(sorted(cfg["collections_mapping"]), ["a", "b"])
        for c, f in cfg["collections_mapping"].items():
            self.assertIn(f, t.getnames())
            self.assertTrue(f.startswith(c + "-%d-" % PEER))
            # moved out of the collection's listing; the .checksum stays behind
            self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/%s/snapshots" % c)), [])
            self.assertTrue(os.path.exists(os.path.join(self.s.snapdir(c), f + ".checksum")))
        self.assertEqual(cfg["collections_aliases"], {"al": "a"})
        self.assertIs(self.assertEnvelopeOk(self.s.req("DELETE", "/snapshots/" + d["name"])), True)
        self.assertApiError(self.s.req("DELETE", "/snapshots/" + d["name"]), 404,
                            "Not found: Snapshot %s not found" % d["name"])
        self.assertText(self.s.req("GET", "/snapshots/" + d["name"]), 404,
                        "Not found: Snapshot %s not found" % d["name"])
        self.assertEqual(self.s.req("POST", "/snapshots?wait=false").status, 202)


# ---------------------------------------------------------------- 17 service endpoints
class T17Service(Base):
    def test_root_health_ready(self):
        j = self.s.req("GET", "/").json()
        self.assertEqual(list(j.keys()), ["title", "version", "commit"])
        self.assertEqual(j["version"], "1.13.2")
        for p in ("/healthz", "/livez"):
            self.assertText(self.s.req("GET", p), 200, "healthz check passed")
        self.assertText(self.s.req("GET", "/readyz"), 200, "all shards are ready")
        r = self.s.req("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertIn(b'app_info{name="qdrant",version="1.13.2"} 1', r.body)
        r = self.s.req("GET", "/no/such/route")
        self.assertEqual((r.status, r.body), (404, b""))
        r = self.s.req("PATCH", "/collections")
        self.assertEqual((r.status, r.body), (404, b""))

    def test_collections(self):
        self.s.make("a", points=123, dim=12, distance="Euclid")
        self.s.make("b", points=5, dim=12)
        res = self.assertEnvelopeOk(self.s.req("GET", "/collections"))
        self.assertEqual(sorted(x["name"] for x in res["collections"]), ["a", "b"])
        info = self.assertEnvelopeOk(self.s.req("GET", "/collections/a"))
        self.assertEqual(info["status"], "green")
        self.assertEqual(info["optimizer_status"], "ok")
        self.assertEqual(info["points_count"], 123)
        self.assertNotIn("vectors_count", info)
        self.assertEqual(info["config"]["params"]["vectors"], {"size": 12, "distance": "Euclid"})
        self.assertEqual(info["config"]["params"]["shard_number"], 1)
        self.assertIn("payload_schema", info)
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/a/exists")), {"exists": True})
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/zz/exists")), {"exists": False})

    def test_put_and_delete_collection(self):
        r = self.s.api("PUT", "/collections/n", {"vectors": {"size": 4, "distance": "Cosine"}})
        self.assertIs(self.assertEnvelopeOk(r), True)
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/n"))["points_count"], 0)
        self.s.snapshot("n")
        self.assertIs(self.assertEnvelopeOk(self.s.req("DELETE", "/collections/n")), True)
        self.assertIs(self.assertEnvelopeOk(self.s.req("DELETE", "/collections/n")), False)
        self.assertEqual(len(os.listdir(self.s.snapdir("n"))), 2)  # snapshots survive
        self.assertApiError(self.s.req("GET", "/collections/n/snapshots"), 404)


    def test_aliases(self):
        self.s.make("real", points=11, dim=4)
        r = self.s.api("POST", "/collections/aliases",
                       {"actions": [{"create_alias": {"collection_name": "real", "alias_name": "nick"}}]})
        self.assertIs(self.assertEnvelopeOk(r), True)
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/aliases")),
                         {"aliases": [{"alias_name": "nick", "collection_name": "real"}]})
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/nick"))["points_count"], 11)
        d = self.s.snapshot("nick")
        self.assertTrue(d["name"].startswith("real-%d-" % PEER))
        self.assertTrue(os.path.isfile(os.path.join(self.s.snapdir("real"), d["name"])))
        self.assertEqual(os.listdir(self.s.snapdir("nick")), [])  # empty dir for the alias
        r = self.s.api("POST", "/collections/aliases",
                       {"actions": [{"create_alias": {"collection_name": "zz", "alias_name": "x"}}]})
        self.assertApiError(r, 404, "Not found: Collection `zz` doesn't exist!")

    def test_json_body_needs_content_type(self):
        r = self.s.req("PUT", "/collections/n", b'{"vectors":{"size":4,"distance":"Dot"}}',
                       {"Content-Type": "text/plain"})
        j = self.assertApiError(r, 400, "Format error in JSON body: Content type error")
        self.assertEqual(j["time"], 0.0)


# ---------------------------------------------------------------- 18 filesystem
class T18Filesystem(Base):
    def test_side_effects(self):
        self.assertTrue(os.path.isdir(os.path.join(self.s.snapdir(), "tmp")))
        self.assertApiError(self.s.req("POST", "/collections/ghost/snapshots"), 404)
        self.assertTrue(os.path.isdir(self.s.snapdir("ghost")))
        self.assertEqual(os.listdir(self.s.snapdir("ghost")), [])
        # tmp/ is not a collection and not a full snapshot
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/snapshots")), [])


# ---------------------------------------------------------------- faults
class TFaults(Base):
    def setUp(self):
        super().setUp()
        self.s.make("c", points=2000, dim=64)
        self.d = self.s.snapshot("c")

    def test_fail_creates(self):
        self.s.faults(fail_creates=2)
        for _ in range(2):
            self.assertApiError(self.s.req("POST", "/collections/c/snapshots"), 500,
                                prefix="Service internal error: ")
        self.s.snapshot("c")

    def test_create_delay_does_not_block_others(self):
        self.s.faults(create_delay_s=2.0)
        res = {}
        th = threading.Thread(target=lambda: res.update(r=self.s.req("POST", "/collections/c/snapshots")))
        t0 = time.time()
        th.start()
        time.sleep(0.3)
        self.assertEqual(self.s.req("GET", "/readyz").status, 200)
        self.assertEqual(self.s.req("GET", "/collections/c/snapshots").status, 200)
        self.assertTrue(th.is_alive(), "other requests waited for the delayed create")
        th.join()
        self.assertGreaterEqual(time.time() - t0, 2.0)
        self.assertEqual(res["r"].status, 200)

    def test_cut_download(self):
        self.s.faults(cut_download_after=1000)
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10)
        conn.request("GET", "/collections/c/snapshots/" + self.d["name"])
        r = conn.getresponse()
        self.assertEqual(r.getheader("Content-Length"), str(self.d["size"]))
        with self.assertRaises(http.client.IncompleteRead) as cm:
            r.read()
        self.assertEqual(len(cm.exception.partial), 1000)
        conn.close()
        self.assertEqual(sha(self.download("c", self.d["name"]).body), self.d["checksum"])

    def test_flip_byte(self):
        good = self.download("c", self.d["name"]).body
        self.s.faults(flip_byte=True)
        bad = self.download("c", self.d["name"]).body
        self.assertEqual(len(bad), len(good))
        self.assertEqual(sum(1 for a, b in zip(good, bad) if a != b), 1)
        self.assertNotEqual(sha(bad), self.d["checksum"])
        self.assertEqual(self.download("c", self.d["name"]).body, good)

    def test_readyz_503_and_clear(self):
        self.s.faults(readyz_503=True)
        self.assertText(self.s.req("GET", "/readyz"), 503, "some shards are not ready")
        self.assertEqual(self.s.req("DELETE", "/__standin/faults").status, 200)
        self.assertText(self.s.req("GET", "/readyz"), 200, "all shards are ready")

    def test_stall(self):
        self.s.faults(stall_s=1.5)
        t0 = time.time()
        with self.assertRaises((socket.timeout, TimeoutError)):
            self.s.req("GET", "/healthz", timeout=0.5)
        self.assertEqual(self.s.req("GET", "/__standin/state", timeout=2).status, 200)
        while time.time() - t0 < 1.6:
            time.sleep(0.05)
        self.assertEqual(self.s.req("GET", "/healthz", timeout=2).status, 200)

    def test_fail_uploads(self):
        data = self.download("c", self.d["name"]).body
        self.s.faults(fail_uploads=1, upload_status=400)
        self.assertApiError(self.upload("c", data), 400,
                            prefix="Wrong input: Snapshot is not compatible with existing collection: ")
        self.assertIs(self.assertEnvelopeOk(self.upload("c", data)), True)
        self.s.faults(fail_uploads=1, upload_status=500)
        self.assertApiError(self.upload("c", data), 500, prefix="Service internal error: ")
        self.assertEqual([u["status"] for u in self.s.state()["uploads"]], [400, 200, 500])

    def test_time_offset(self):
        r = self.s.api("POST", "/__standin/time", {"offset_s": -3 * 86400})
        self.assertEqual(r.status, 200)
        d = self.s.snapshot("c")
        ts = NAME_RE.match(d["name"]).group("ts")
        expect = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3 * 86400))
        self.assertTrue(ts.startswith(expect), (ts, expect))
        self.assertTrue(d["creation_time"].startswith(expect))


# ---------------------------------------------------------------- process / transport
class TProcess(Base):
    def test_port_file_and_sigterm(self):
        self.assertEqual(self.s.port_file_data, "%d\n" % self.s.port)
        t0 = time.time()
        self.s.proc.send_signal(signal.SIGTERM)
        self.s.proc.wait(5)
        self.assertLess(time.time() - t0, 3.0)
        self.assertTrue(os.path.isdir(self.s.snapdir()))  # storage left for inspection

    def test_keep_alive_across_errors_and_unread_bodies(self):
        self.s.make("c", points=20, dim=8)
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10)
        try:
            seq = [("GET", "/collections", None, {}, 200),
                   ("GET", "/collections/zz", None, {}, 404),
                   ("POST", "/collections/c/snapshots/upload", b"x" * 100000,
                    {"Content-Type": "application/octet-stream"}, 415),
                   ("POST", "/collections/c/snapshots/upload?checksum=bad", b"y" * 5000,
                    {"Content-Type": "multipart/form-data; boundary=zz"}, 422),
                   ("GET", "/no/route", None, {}, 404),
                   ("POST", "/collections/c/snapshots", None, {}, 200),
                   ("GET", "/healthz", None, {}, 200)]
            sock = None
            for m, p, b, h, want in seq:
                conn.request(m, p, body=b, headers=h)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, want, p)
                if sock is None:
                    sock = conn.sock
                self.assertIs(conn.sock, sock, "connection was not kept alive")
        finally:
            conn.close()

    def test_slow_download_does_not_block(self):
        self.s.make("big", points=8000, dim=512)
        d = self.s.snapshot("big")
        sk = socket.create_connection(("127.0.0.1", self.s.port))
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sk.sendall(("GET /collections/big/snapshots/%s HTTP/1.1\r\nHost: x\r\n\r\n" % d["name"]).encode())
            self.assertTrue(sk.recv(100).startswith(b"HTTP/1.1 200"))
            t0 = time.time()
            self.assertEqual(self.s.req("GET", "/readyz", timeout=3).status, 200)
            self.assertEqual(self.s.req("GET", "/collections/big", timeout=3).status, 200)
            self.assertLess(time.time() - t0, 5.0)
        finally:
            sk.close()

    def test_control_collection_delete(self):
        self.s.make("c", points=10, dim=4)
        self.s.snapshot("c")
        r = self.s.req("DELETE", "/__standin/collections/c")
        self.assertEqual(r.json(), {"deleted": True})
        self.assertFalse(os.path.exists(self.s.snapdir("c")))
        self.assertEqual(self.s.req("GET", "/collections/c").status, 404)
        self.assertEqual(self.s.api("POST", "/__standin/faults", {"nonsense": 1}).status, 400)
        st = self.s.state()
        self.assertEqual(st["counters"]["creates"], 1)


if __name__ == "__main__":
    unittest.main()
