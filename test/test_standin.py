#!/usr/bin/python3
"""Conformance tests for the Qdrant stand-in (test/qdrant_standin.py).

One test class per item of the stand-in checklist in the Qdrant snapshot API
reference (items 1-18), plus the fault hooks and the control API. Each test
starts its own stand-in on a free loopback port with temporary storage and
kills it in tearDown. Standard library only (unittest, http.client, socket).
"""

import array
import copy
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


# ================================================================ collection fidelity
# Each test cites the Qdrant v1.13.2 source it follows (paths in the qdrant/qdrant repository).

def raw_get(port, path, host="127.0.0.1", headers=None, timeout=30):
    """GET over a raw socket: (status line, headers dict, [chunk sizes], body)."""
    sk = socket.create_connection((host, port), timeout=timeout)
    try:
        req = "GET %s HTTP/1.1\r\nHost: x\r\n" % path
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        sk.sendall((req + "\r\n").encode())
        f = sk.makefile("rb")
        status = f.readline().decode().strip()
        hdrs = {}
        while True:
            line = f.readline().decode()
            if line in ("\r\n", ""):
                break
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        sizes = []
        body = b""
        if hdrs.get("transfer-encoding") == "chunked":
            while True:
                n = int(f.readline().split(b";")[0], 16)
                sizes.append(n)
                if n == 0:
                    if f.readline() != b"\r\n":
                        raise AssertionError("bad chunked terminator")
                    break
                body += f.read(n)
                if f.read(2) != b"\r\n":
                    raise AssertionError("bad chunk framing")
        else:
            body = f.read(int(hdrs.get("content-length", "0")))
        return status, hdrs, sizes, body
    finally:
        sk.close()


def tar_members(data):
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:").getmembers()


def tar_is_complete(data):
    """Every header checksum valid, data within bounds and the 1024-byte footer."""
    pos = 0
    while pos + 512 <= len(data):
        h = data[pos:pos + 512]
        if h == b"\0" * 512:
            return data[pos:pos + 1024] == b"\0" * 1024 and len(data) >= pos + 1024
        want = int(h[148:156].split(b"\0")[0].strip() or b"0", 8)
        got = sum(h[:148]) + 8 * 32 + sum(h[156:])
        if want != got:
            return False
        size = int(h[124:136].split(b"\0")[0].strip() or b"0", 8)
        pos += 512 + (size + 511) // 512 * 512
    return False


def stream_ids(data, dim=4):
    """Point ids held by a streamed shard tar (from the segments' id files)."""
    t = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    ids = []
    for m in t.getmembers():
        if m.name.endswith("/files/id_tracker/mappings.bin"):
            raw = t.extractfile(m).read()
            a = array.array("Q")
            a.frombytes(raw)
            ids.extend(a.tolist())
    return sorted(ids)


def points_body(ids, dim=4, payload=None):
    return {"points": [{"id": i, "vector": [float(i % 7) + 1.0] + [0.5] * (dim - 1),
                        "payload": payload(i) if payload else {"city": "c%d" % (i % 5),
                                                                "year": 2000 + i % 9}}
                       for i in ids]}


class Fidelity(Base):
    def put(self, c, body, query=""):
        return self.s.api("PUT", "/collections/%s%s" % (c, query), body)

    def upsert(self, c, ids, wait="?wait=true", **kw):
        r = self.s.api("PUT", "/collections/%s/points%s" % (c, wait), points_body(ids, **kw))
        return self.assertEnvelopeOk(r)

    def info(self, c):
        return self.assertEnvelopeOk(self.s.req("GET", "/collections/" + c))

    def count(self, c, body=None):
        return self.assertEnvelopeOk(self.s.api("POST", "/collections/%s/points/count" % c,
                                                body or {}))["count"]

    def scroll_all(self, c, with_vector=True):
        out, offset = [], None
        while True:
            r = self.assertEnvelopeOk(self.s.api("POST", "/collections/%s/points/scroll" % c, {
                "limit": 50, "offset": offset, "with_payload": True, "with_vector": with_vector}))
            out += r["points"]
            offset = r["next_page_offset"]
            if offset is None:
                return out

    def shard_upload(self, c, sid, data, query="", headers=None):
        ct, body = multipart(data)
        h = {"Content-Type": ct}
        h.update(headers or {})
        return self.s.req("POST", "/collections/%s/shards/%d/snapshots/upload%s" % (c, sid, query),
                          body, h)

    def three_shards(self, c="c", n=90):
        self.assertIs(self.assertEnvelopeOk(self.put(c, {
            "vectors": {"size": 4, "distance": "Cosine"}, "shard_number": 3})), True)
        self.upsert(c, range(n))


class T19Version(Base):
    ARGS = ("--peer-id", str(PEER), "--version", "1.12.4")

    def test_version_from_command_line_and_hook(self):
        """GET / is VersionInfo without envelope: title, version, commit
        (lib/api/src/rest/models.rs:13-29, src/actix/mod.rs:49-52)."""
        j = self.s.req("GET", "/").json()
        self.assertEqual(list(j), ["title", "version", "commit"])
        self.assertEqual(j["version"], "1.12.4")
        r = self.s.api("POST", "/__standin/version", {"version": "1.14.0"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.s.req("GET", "/").json()["version"], "1.14.0")
        self.assertIn(b'app_info{name="qdrant",version="1.14.0"} 1',
                      self.s.req("GET", "/metrics").body)
        self.assertEqual(self.s.api("POST", "/__standin/version", {"version": "x"}).status, 400)


class T20CollectionInfo(Fidelity):
    def test_full_shape(self):
        """CollectionInfo and CollectionConfig field order and presence
        (lib/collection/src/operations/types.rs:190-260, lib/collection/src/config.rs:69-112,
        lib/collection/src/optimizers_builder.rs:23-81): sharding_method and
        sparse_vectors omitted unless given, quantization_config null,
        strict_mode_config {"enabled": false}, vectors_count omitted."""
        self.assertEnvelopeOk(self.put("c", {"vectors": {"size": 4, "distance": "Dot"}}))
        info = self.info("c")
        self.assertEqual(list(info), ["status", "optimizer_status", "indexed_vectors_count",
                                      "points_count", "segments_count", "config",
                                      "payload_schema"])
        cfg = info["config"]
        self.assertEqual(list(cfg), ["params", "hnsw_config", "optimizer_config", "wal_config",
                                     "quantization_config", "strict_mode_config"])
        self.assertEqual(cfg["params"], {"vectors": {"size": 4, "distance": "Dot"},
                                         "shard_number": 1, "replication_factor": 1,
                                         "write_consistency_factor": 1, "on_disk_payload": True})
        self.assertEqual(cfg["hnsw_config"], {"m": 16, "ef_construct": 100,
                                              "full_scan_threshold": 10000,
                                              "max_indexing_threads": 0, "on_disk": False})
        self.assertEqual(cfg["optimizer_config"]["max_segment_size"], None)
        self.assertEqual(cfg["optimizer_config"]["indexing_threshold"], 20000)
        self.assertEqual(cfg["wal_config"], {"wal_capacity_mb": 32, "wal_segments_ahead": 0})
        self.assertIsNone(cfg["quantization_config"])
        self.assertEqual(cfg["strict_mode_config"], {"enabled": False})
        self.assertEqual(info["payload_schema"], {})
        self.assertEqual(info["points_count"], 0)
        self.assertGreaterEqual(info["segments_count"], 1)
        # sharding_method appears only when it was given (create_collection.rs:143)
        self.assertEnvelopeOk(self.put("d", {"vectors": {"size": 4, "distance": "Dot"},
                                             "sharding_method": "auto",
                                             "sparse_vectors": {"text": {}}}))
        p = self.info("d")["config"]["params"]
        self.assertEqual(p["sharding_method"], "auto")
        self.assertEqual(p["sparse_vectors"], {"text": {}})
        self.assertEqual(list(p)[:3], ["vectors", "shard_number", "sharding_method"])

    def test_alias_resolves_and_points_are_summed_over_shards(self):
        """points_count and payload_schema points sum over shards
        (collection_ops.rs:303-322); {c} may be an alias (toc/mod.rs:260-316)."""
        self.three_shards(n=30)
        self.assertEnvelopeOk(self.s.api("POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "c", "alias_name": "a"}}]}))
        self.assertEqual(self.info("a")["points_count"], 30)


class T21CreateCollection(Fidelity):
    def test_flat_body_aliases_and_unknown_keys(self):
        """PUT takes the flat CreateCollection body (collection_meta_ops.rs:109-182):
        optimizers_config or its alias optimizer_config, quantization alias,
        unknown keys (params, read_fan_out_factor) ignored, diffs merged over the
        defaults (toc/create_collection.rs:78-197)."""
        body = {"vectors": {"size": 8, "distance": "Euclid", "on_disk": True},
                "shard_number": 2, "replication_factor": 1, "write_consistency_factor": 1,
                "on_disk_payload": False,
                "hnsw_config": {"m": 32, "on_disk": None},
                "wal_config": {"wal_capacity_mb": 64},
                "optimizers_config": {"indexing_threshold": 1000,
                                      "max_optimization_threads": "auto"},
                "quantization": {"scalar": {"type": "int8", "always_ram": True}},
                "strict_mode_config": {"enabled": True, "max_query_limit": 100},
                "params": {"shard_number": 9}, "read_fan_out_factor": 3, "bogus": [1]}
        self.assertIs(self.assertEnvelopeOk(self.put("c", body)), True)
        cfg = self.info("c")["config"]
        self.assertEqual(cfg["params"], {"vectors": {"size": 8, "distance": "Euclid",
                                                     "on_disk": True},
                                         "shard_number": 2, "replication_factor": 1,
                                         "write_consistency_factor": 1,
                                         "on_disk_payload": False})
        self.assertEqual(cfg["hnsw_config"]["m"], 32)
        self.assertEqual(cfg["hnsw_config"]["on_disk"], False)
        self.assertEqual(cfg["wal_config"], {"wal_capacity_mb": 64, "wal_segments_ahead": 0})
        self.assertEqual(cfg["optimizer_config"]["indexing_threshold"], 1000)
        self.assertIsNone(cfg["optimizer_config"]["max_optimization_threads"])
        self.assertEqual(cfg["quantization_config"], {"scalar": {"type": "int8",
                                                                 "always_ram": True}})
        self.assertEqual(cfg["strict_mode_config"], {"enabled": True, "max_query_limit": 100})
        # the GET spelling is accepted too, so a GET config round-trips
        again = dict(cfg["params"])
        again.update({k: v for k, v in cfg.items() if k != "params"})
        self.assertIs(self.assertEnvelopeOk(self.put("d", again)), True)
        self.assertEqual(self.info("d")["config"], cfg)

    def test_named_vectors_and_defaults(self):
        """Named vectors are a map; omitted vectors is an empty map; shard_number
        defaults to 1 on a single node (create_collection.rs:78-117)."""
        self.assertEnvelopeOk(self.put("n", {"vectors": {"img": {"size": 3, "distance": "Dot"},
                                                         "txt": {"size": 2,
                                                                 "distance": "Cosine"}}}))
        p = self.info("n")["config"]["params"]
        self.assertEqual(p["vectors"], {"img": {"size": 3, "distance": "Dot"},
                                        "txt": {"size": 2, "distance": "Cosine"}})
        self.assertEqual(p["shard_number"], 1)
        self.assertEnvelopeOk(self.put("e", {}))
        self.assertEqual(self.info("e")["config"]["params"]["vectors"], {})

    def test_rejections(self):
        """409 for an existing name, 400 for an alias name (create_collection.rs:52-66),
        422 for shard_number 0 (collection_meta_ops.rs:127-147), 400 for vector size 0,
        422 for an invalid name (src/actix/api/mod.rs:23-35); no `wait`: the query is
        ignored and the answer is synchronous (collections_api.rs:108-132)."""
        self.assertEnvelopeOk(self.put("c", {"vectors": {"size": 4, "distance": "Dot"}},
                                       "?wait=false"))
        self.assertApiError(self.put("c", {"vectors": {"size": 4, "distance": "Dot"}}), 409,
                            "Wrong input: Collection `c` already exists!")
        self.assertEnvelopeOk(self.s.api("POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "c", "alias_name": "al"}}]}))
        self.assertApiError(self.put("al", {"vectors": {"size": 4, "distance": "Dot"}}), 400,
                            "Wrong input: Can't create collection with name al. Alias with the "
                            "same name already exists")
        self.assertApiError(self.put("z", {"vectors": {"size": 4, "distance": "Dot"},
                                           "shard_number": 0}), 422,
                            prefix="Validation error in JSON body: ")
        self.assertApiError(self.put("z", {"vectors": {"size": 0, "distance": "Dot"}}), 400,
                            prefix="Format error in JSON body: ")
        self.assertApiError(self.put("a:b", {}), 422, prefix="Validation error in path")
        ro = Standin("--api-key", "k", "--read-only-api-key", "r")
        try:
            r = ro.api("PUT", "/collections/x", {}, headers={"api-key": "r"})
            self.assertApiError(r, 403, "Forbidden: Global manage access is required")
        finally:
            ro.stop()

    def test_delete(self):
        """DELETE answers true/false, never 404; an alias name is not resolved and
        gives false; the collection's aliases go with it
        (toc/collection_meta_ops.rs:176-250)."""
        self.assertEnvelopeOk(self.put("c", {"vectors": {"size": 4, "distance": "Dot"}}))
        self.assertEnvelopeOk(self.s.api("POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "c", "alias_name": "al"}}]}))
        self.assertIs(self.assertEnvelopeOk(self.s.req("DELETE", "/collections/al")), False)
        self.assertIs(self.assertEnvelopeOk(self.s.req("DELETE", "/collections/c")), True)
        self.assertIs(self.assertEnvelopeOk(self.s.req("DELETE", "/collections/c")), False)
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/aliases")), {"aliases": []})


class T22PayloadIndex(Fidelity):
    def test_keyword_and_integer(self):
        """PUT /collections/{c}/index (src/actix/api/update_api.rs:437-462): string or
        object field_schema (lib/segment/src/types.rs:1472-1477), field_type alias
        (src/common/update.rs:181-186); payload_schema entries count the points
        with an indexed value, params only for the object form, integer's unset
        keys as null (lib/segment/src/data_types/index.rs:39-56)."""
        self.three_shards(n=45)
        self.upsert("c", [100, 101], payload=lambda i: {"city": 7})  # not a keyword value
        r = self.s.api("PUT", "/collections/c/index?wait=true",
                       {"field_name": "city", "field_schema": "keyword"})
        self.assertEqual(self.assertEnvelopeOk(r)["status"], "completed")
        r = self.s.api("PUT", "/collections/c/index?wait=true",
                       {"field_name": "year", "field_type": {"type": "integer", "range": True}})
        self.assertEqual(self.assertEnvelopeOk(r)["status"], "completed")
        self.assertEqual(self.info("c")["payload_schema"], {
            "city": {"data_type": "keyword", "points": 45},
            "year": {"data_type": "integer",
                     "params": {"type": "integer", "range": True, "lookup": None,
                                "is_principal": None},
                     "points": 45}})

    def test_wait_semantics_and_errors(self):
        """wait defaults to false: "acknowledged" and the index appears later
        (update_api.rs:447, operations/types.rs:409-435); a missing field_schema is
        400 (update.rs:659-663), a missing collection 404."""
        self.three_shards(n=9)
        self.s.faults(index_delay_s=1.0)
        r = self.s.api("PUT", "/collections/c/index", {"field_name": "city",
                                                       "field_schema": "keyword"})
        res = self.assertEnvelopeOk(r)
        self.assertEqual(res["status"], "acknowledged")
        self.assertIsInstance(res["operation_id"], int)
        self.assertEqual(self.info("c")["payload_schema"], {})
        end = time.time() + 10
        while time.time() < end and not self.info("c")["payload_schema"]:
            time.sleep(0.1)
        self.assertEqual(self.info("c")["payload_schema"],
                         {"city": {"data_type": "keyword", "points": 9}})
        t = time.time()
        r = self.s.api("PUT", "/collections/c/index?wait=true", {"field_name": "year",
                                                                 "field_schema": "integer"})
        self.assertEqual(self.assertEnvelopeOk(r)["status"], "completed")
        self.assertGreaterEqual(time.time() - t, 1.0)
        self.assertIn("year", self.info("c")["payload_schema"])
        self.assertApiError(self.s.api("PUT", "/collections/c/index", {"field_name": "x"}), 400,
                            "Bad request: Can't auto-detect field type, please specify "
                            "`field_schema` in the request")
        self.assertApiError(self.s.api("PUT", "/collections/zz/index",
                                       {"field_name": "x", "field_schema": "keyword"}), 404,
                            "Not found: Collection `zz` doesn't exist!")
        self.assertApiError(self.s.api("PUT", "/collections/c/index",
                                       {"field_name": "x", "field_schema": "nope"}), 400,
                            prefix="Format error in JSON body: ")


class T23Aliases(Fidelity):
    def alias(self, *actions):
        return self.s.api("POST", "/collections/aliases", {"actions": list(actions)})

    def test_semantics(self):
        """create replaces silently, delete of a missing alias is fine, rename of a
        missing alias is 404, an alias cannot take a collection's name (409)
        (toc/collection_meta_ops.rs:252-292, alias_mapping.rs:66-112);
        GET /collections/{c}/aliases has no existence check (alias_mapping.rs:114-122)."""
        for c in ("a", "b"):
            self.assertEnvelopeOk(self.put(c, {"vectors": {"size": 4, "distance": "Dot"}}))
        self.assertIs(self.assertEnvelopeOk(self.alias(
            {"create_alias": {"collection_name": "a", "alias_name": "x"}},
            {"create_alias": {"collection_name": "a", "alias_name": "y"}})), True)
        self.assertEnvelopeOk(self.alias({"create_alias": {"collection_name": "b",
                                                           "alias_name": "x"}}))
        got = self.assertEnvelopeOk(self.s.req("GET", "/aliases"))["aliases"]
        self.assertEqual(sorted((a["alias_name"], a["collection_name"]) for a in got),
                         [("x", "b"), ("y", "a")])
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/a/aliases")),
                         {"aliases": [{"alias_name": "y", "collection_name": "a"}]})
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/nope/aliases")),
                         {"aliases": []})
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/x/aliases")),
                         {"aliases": []})
        self.assertEnvelopeOk(self.alias({"delete_alias": {"alias_name": "never"}}))
        self.assertApiError(self.alias({"rename_alias": {"old_alias_name": "never",
                                                         "new_alias_name": "z"}}), 404,
                            "Not found: Alias never does not exists!")
        self.assertApiError(self.alias({"create_alias": {"collection_name": "a",
                                                         "alias_name": "b"}}), 409,
                            "Wrong input: Collection `b` already exists!")
        self.assertApiError(self.alias({"create_alias": {"collection_name": "x",
                                                         "alias_name": "q"}}), 404,
                            "Not found: Collection `x` doesn't exist!")
        self.assertApiError(self.alias({"bogus": {}}), 400, prefix="Format error in JSON body")
        # GET /collections/aliases reads a collection named "aliases" (collections_api.rs:235-247)
        self.assertApiError(self.s.req("GET", "/collections/aliases"), 404)

    def test_failing_batch_keeps_earlier_actions_and_persists(self):
        """Actions are applied and saved one by one: a failure keeps the earlier
        ones (alias_mapping.rs:66-80 saves on every insert); aliases survive a
        restart (storage/aliases/data.json)."""
        self.assertEnvelopeOk(self.put("a", {"vectors": {"size": 4, "distance": "Dot"}}))
        r = self.alias({"create_alias": {"collection_name": "a", "alias_name": "one"}},
                       {"rename_alias": {"old_alias_name": "missing", "new_alias_name": "z"}},
                       {"create_alias": {"collection_name": "a", "alias_name": "two"}})
        self.assertApiError(r, 404)
        got = self.assertEnvelopeOk(self.s.req("GET", "/aliases"))["aliases"]
        self.assertEqual(got, [{"alias_name": "one", "collection_name": "a"}])
        self.s.proc.kill()
        self.s.proc.wait()
        again = Standin("--storage", self.s.storage)
        try:
            got = again.req("GET", "/aliases").json()["result"]["aliases"]
            self.assertEqual(got, [{"alias_name": "one", "collection_name": "a"}])
        finally:
            again.stop()


class T24Points(Fidelity):
    def test_upsert_scroll_get_count(self):
        """Upsert (update_api.rs:38-80): points or batch form, wait=false by default
        ("acknowledged"), Cosine vectors normalised (lib/segment/src/spaces/simple.rs:178-195);
        scroll merges shards in id order with next_page_offset
        (lib/collection/src/collection/point_ops.rs:260-374); count is exact by
        default (count_api.rs:16-69); GET points/{id} (retrieve_api.rs:41-124)."""
        self.assertEnvelopeOk(self.put("c", {"vectors": {"size": 2, "distance": "Cosine"},
                                             "shard_number": 3}))
        r = self.s.api("PUT", "/collections/c/points",
                       {"points": [{"id": 5, "vector": [3, 4], "payload": {"k": "v"}}]})
        self.assertEqual(self.assertEnvelopeOk(r)["status"], "acknowledged")
        r = self.s.api("PUT", "/collections/c/points?wait=true",
                       {"batch": {"ids": [1, 2, "4b0c2d52-8ad2-4b2b-9a7c-0a7d61d6f0f1"],
                                  "vectors": [[1, 0], [0, 2], [1, 1]],
                                  "payloads": [{"n": 1}, None, {"n": 3}]}})
        self.assertEqual(self.assertEnvelopeOk(r)["status"], "completed")
        end = time.time() + 5
        while time.time() < end and self.count("c") < 4:
            time.sleep(0.05)
        self.assertEqual(self.count("c"), 4)
        self.assertEqual(self.count("c", {"exact": True,
                                          "filter": {"must": [{"key": "n", "match":
                                                               {"value": 3}}]}}), 1)
        got = self.assertEnvelopeOk(self.s.req("GET", "/collections/c/points/5"))
        self.assertEqual(got, {"id": 5, "payload": {"k": "v"}, "vector": [0.6, 0.8]})
        pts = self.scroll_all("c")
        self.assertEqual([p["id"] for p in pts],
                         [1, 2, 5, "4b0c2d52-8ad2-4b2b-9a7c-0a7d61d6f0f1"])  # NumId < Uuid
        self.assertEqual(pts[1], {"id": 2, "payload": {}, "vector": [0.0, 1.0]})
        r = self.assertEnvelopeOk(self.s.api("POST", "/collections/c/points/scroll",
                                             {"limit": 2}))
        self.assertEqual(r, {"points": [{"id": 1, "payload": {"n": 1}},
                                         {"id": 2, "payload": {}}], "next_page_offset": 5})
        r = self.assertEnvelopeOk(self.s.api("POST", "/collections/c/points",
                                             {"ids": [2, 99, 1], "with_payload": False}))
        self.assertEqual(r, [{"id": 2}, {"id": 1}])
        # an upsert replaces a point
        self.assertEnvelopeOk(self.s.api("PUT", "/collections/c/points?wait=true",
                                         {"points": [{"id": 5, "vector": [0, 1]}]}))
        self.assertEqual(self.count("c"), 4)
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/collections/c/points/5")),
                         {"id": 5, "payload": {}, "vector": [0.0, 1.0]})

    def test_errors(self):
        """Missing point 404 and bad id 400 (retrieve_api.rs:41-124), dimension
        mismatch 400, a missing collection 404."""
        self.assertEnvelopeOk(self.put("c", {"vectors": {"size": 2, "distance": "Dot"}}))
        self.assertApiError(self.s.req("GET", "/collections/c/points/7"), 404,
                            "Not found: Point with id 7 does not exists!")
        self.assertApiError(self.s.req("GET", "/collections/c/points/x"), 400,
                            'Wrong input: Can not recognize "x" as point id')
        self.assertApiError(self.s.api("PUT", "/collections/c/points?wait=true",
                                       {"points": [{"id": 1, "vector": [1, 2, 3]}]}), 400,
                            "Wrong input: Vector dimension error: expected dim: 2, got 3")
        self.assertApiError(self.s.api("PUT", "/collections/c/points", {"nope": 1}), 400,
                            prefix="Format error in JSON body: ")
        self.assertApiError(self.s.api("POST", "/collections/zz/points/count", {}), 404)


class T25ShardStream(Fidelity):
    def test_headers_chunks_layout_and_points(self):
        """GET /collections/{c}/shards/{id}/snapshot (src/actix/api/snapshot_api.rs:394-411):
        200 application/octet-stream, Content-Disposition attachment with
        <c>-shard-<id>-<UTC time>.snapshot, chunked and no Content-Length, chunks of
        at most 4 KiB (shard_holder/mod.rs:934-973). The tar is Streamable: segments
        as directories, an empty WAL, replica_state.json, shard_config.json
        (replica_set/snapshots.rs:16-38, local_shard/mod.rs:813-899,
        segment/entry.rs:843-955) and exactly 1024 zero bytes at the end
        (lib/common/common/src/tar_ext.rs:398-404). A 3-shard collection's shard
        holds only its own points."""
        self.three_shards(n=90)
        for sid in range(3):
            status, h, sizes, data = raw_get(self.s.port, "/collections/c/shards/%d/snapshot?wait"
                                                           "=false" % sid)
            self.assertEqual(status, "HTTP/1.1 200 OK")
            self.assertEqual(h["content-type"], "application/octet-stream")
            self.assertNotIn("content-length", h)
            self.assertEqual(h["transfer-encoding"], "chunked")
            self.assertRegex(h["content-disposition"],
                             r'^attachment; filename="c-shard-%d-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d'
                             r'\.snapshot"$' % sid)
            self.assertTrue(all(0 < n <= 4096 for n in sizes[:-1]), sizes[:5])
            self.assertEqual(sizes[-1], 0)
            self.assertTrue(tar_is_complete(data))
            self.assertEqual(data[-1024:], b"\0" * 1024)
            self.assertNotEqual(data[-1536:-1024], b"\0" * 512)  # no record padding
            self.assertEqual(data[257:265], b"ustar  \0")
            names = [m.name for m in tar_members(data)]
            self.assertTrue(any(re.match(r"^segments/[0-9a-f-]{36}/files/segment\.json$", n)
                                for n in names))
            self.assertTrue(any(re.match(r"^segments/[0-9a-f-]{36}/db_backup/", n)
                                for n in names))
            self.assertFalse(any(n.endswith(".tar") for n in names))
            self.assertIn("wal", names)
            self.assertEqual(names[-2:], ["replica_state.json", "shard_config.json"])
            t = tarfile.open(fileobj=io.BytesIO(data))
            self.assertEqual(json.loads(t.extractfile("replica_state.json").read()),
                             {"is_local": True, "this_peer_id": PEER,
                              "peers": {str(PEER): "Active"}})
            self.assertEqual(json.loads(t.extractfile("shard_config.json").read()),
                             {"type": "ReplicaSet"})
            ids = stream_ids(data)
            self.assertEqual(len(ids), 30)
            self.assertTrue(all(i % 3 == sid for i in ids), ids)
        # no snapshot file was written, the scratch dir is gone
        self.assertEqual(sorted(os.listdir(self.s.snapdir())), ["tmp"])
        self.assertEqual(sorted(os.listdir(self.s.snapdir("tmp"))), ["upload"])

    def test_errors_before_headers_are_plain_text(self):
        """Failures before the headers are text/plain with Qdrant's statuses
        (src/common/snapshots.rs:43-58, shard_holder/mod.rs:928-932,
        collection/snapshots.rs:279-290): 404 collection, 404 shard, 403 read-only key
        (write access is required), 404 for a non-numeric shard id (actix path
        extraction)."""
        self.three_shards(n=3)
        self.assertText(self.s.req("GET", "/collections/zz/shards/0/snapshot"), 404,
                        "Not found: Collection `zz` doesn't exist!")
        self.assertText(self.s.req("GET", "/collections/c/shards/7/snapshot"), 404,
                        "Not found: shard 7 not found")
        r = self.s.req("GET", "/collections/c/shards/x/snapshot")
        self.assertEqual((r.status, r.h("Content-Type")), (404, "text/plain; charset=utf-8"))
        self.s.faults(fail_shard_streams=1)
        r = self.s.req("GET", "/collections/c/shards/0/snapshot")
        self.assertEqual((r.status, r.h("Content-Type")), (500, "text/plain; charset=utf-8"))
        self.assertTrue(r.body.startswith(b"Service internal error: "))
        self.assertEqual(self.s.req("GET", "/collections/c/shards/0/snapshot").status, 200)
        ro = Standin("--api-key", "k", "--read-only-api-key", "r")
        try:
            ro.api("PUT", "/collections/c", {"vectors": {"size": 4, "distance": "Dot"}},
                   headers={"api-key": "k"})
            self.assertText(ro.req("GET", "/collections/c/shards/0/snapshot",
                                   headers={"api-key": "r"}), 403,
                            "Forbidden: Global manage access is required")
            self.assertEqual(ro.req("GET", "/collections/c/shards/0/snapshot",
                                    headers={"api-key": "k"}).status, 200)
        finally:
            ro.stop()

    def test_injected_failure_truncates_a_clean_stream(self):
        """An error after the headers ends the chunked body normally (0-size chunk)
        with a truncated tar and no footer (shard_holder/mod.rs:945-973,
        tar_ext.rs:21-53): HTTP 200, a complete HTTP message, an incomplete tar."""
        self.three_shards(n=300)
        full = raw_get(self.s.port, "/collections/c/shards/1/snapshot")[3]
        for cut in (0, 700, 5000, len(full) - 1024):
            self.s.faults(cut_shard_stream_after=cut)
            status, h, sizes, data = raw_get(self.s.port, "/collections/c/shards/1/snapshot")
            self.assertEqual(status, "HTTP/1.1 200 OK")
            self.assertEqual(sizes[-1], 0)
            self.assertEqual(len(data), cut)
            self.assertEqual(data, full[:cut])
            self.assertFalse(tar_is_complete(data))
        # the fault is used once and may target one shard
        self.s.faults(cut_shard_stream_after=100, cut_shard_stream_shard=2)
        self.assertTrue(tar_is_complete(raw_get(self.s.port, "/collections/c/shards/1/snapshot")
                                        [3]))
        self.assertEqual(len(raw_get(self.s.port, "/collections/c/shards/2/snapshot")[3]), 100)
        self.assertTrue(tar_is_complete(raw_get(self.s.port, "/collections/c/shards/2/snapshot")
                                        [3]))
        # a stall mid-stream
        self.s.faults(pause_shard_stream_after=2048, pause_shard_stream_s=1.0)
        t = time.time()
        self.assertTrue(tar_is_complete(raw_get(self.s.port, "/collections/c/shards/0/snapshot")
                                        [3]))
        self.assertGreaterEqual(time.time() - t, 1.0)

    def test_generated_collection_streams_every_point(self):
        """A control-API collection streams per shard; ids are routed by id mod shards."""
        self.s.make("g", points=1000, dim=32, shards=2)
        total = []
        for sid in range(2):
            data = raw_get(self.s.port, "/collections/g/shards/%d/snapshot" % sid)[3]
            self.assertTrue(tar_is_complete(data))
            total += stream_ids(data)
        self.assertEqual(sorted(total), list(range(1000)))


class T26ShardUpload(Fidelity):
    def test_round_trip_into_an_existing_collection(self):
        """POST /collections/{c}/shards/{id}/snapshots/upload (snapshot_api.rs:448-511)
        restores one shard of an existing collection (restore_shard_snapshot,
        shard_holder/mod.rs:980-1052): the shard's points come back with their
        vectors and payloads, the answer is result null (models.rs:39-48), the
        uploaded file is not kept; both the Streamable and the Regular (collection
        snapshot) shard layouts load (segment_ops.rs:665-728)."""
        self.three_shards("src", n=60)
        self.assertEnvelopeOk(self.s.api("PUT", "/collections/src/index?wait=true",
                                         {"field_name": "city", "field_schema": "keyword"}))
        self.assertEnvelopeOk(self.put("dst", {"vectors": {"size": 4, "distance": "Cosine"},
                                               "shard_number": 3}))
        self.upsert("dst", [1000, 1001, 1002])  # replaced by the uploads
        for sid in range(3):
            data = raw_get(self.s.port, "/collections/src/shards/%d/snapshot" % sid)[3]
            r = self.shard_upload("dst", sid, data, "?priority=snapshot&checksum=" + sha(data))
            self.assertIsNone(self.assertEnvelopeOk(r))
        self.assertEqual(self.scroll_all("dst"), self.scroll_all("src"))
        self.assertEqual(self.count("dst"), 60)
        # segment-level indexes come with the data (payload_schema is read from segments)
        self.assertEqual(self.info("dst")["payload_schema"],
                         {"city": {"data_type": "keyword", "points": 60}})
        self.assertEqual(os.listdir(self.s.snapdir("tmp/upload")), [])
        self.assertFalse(os.path.exists(self.s.snapdir("dst")))
        st = self.s.state()
        self.assertEqual(st["counters"]["shard_uploads"], 3)
        self.assertEqual([u["status"] for u in st["uploads"]], [200, 200, 200])
        # a shard taken from a collection snapshot (nested segment tars) loads too
        d = self.s.snapshot("src")
        full = tarfile.open(fileobj=io.BytesIO(self.download("src", d["name"]).body))
        bio = io.BytesIO()
        with tarfile.open(fileobj=bio, mode="w", format=tarfile.GNU_FORMAT) as out:
            for m in full.getmembers():
                if m.name.startswith("2/"):
                    m2 = copy.copy(m)
                    m2.name = m.name[2:]
                    out.addfile(m2, full.extractfile(m) if m.isreg() else None)
        self.assertEnvelopeOk(self.put("reg", {"vectors": {"size": 4, "distance": "Cosine"},
                                               "shard_number": 3}))
        self.assertIsNone(self.assertEnvelopeOk(self.shard_upload("reg", 2, bio.getvalue())))
        self.assertEqual(self.count("reg"), 20)

    def test_errors(self):
        """Order (snapshot_api.rs:466-496): manage access (403), checksum (400
        `Checksum mismatch: expected <computed>, actual <given>`, not validated as
        hex: plain web::Query), collection (404), shard (404 `shard N not found`);
        query errors are actix's plain-text 400; with wait=false every failure is
        202 (helpers.rs:87-113); a single-node restore needs is_local
        (replica_set/snapshots.rs:40-58); no wal/ gives 400 `Invalid snapshot`
        (shard_holder/mod.rs:1045-1049)."""
        self.three_shards("c", n=6)
        data = raw_get(self.s.port, "/collections/c/shards/0/snapshot")[3]
        self.assertApiError(self.shard_upload("c", 0, data, "?checksum=abc"), 400,
                            "Checksum mismatch: expected %s, actual abc" % sha(data))
        self.assertApiError(self.shard_upload("zz", 0, data), 404,
                            "Not found: Collection `zz` doesn't exist!")
        self.assertApiError(self.shard_upload("c", 5, data), 404, "Not found: shard 5 not found")
        self.assertEqual(self.shard_upload("zz", 0, data, "?wait=false").status, 202)
        self.assertText(self.shard_upload("c", 0, data, "?priority=bogus"), 400,
                        "Query deserialize error: unknown variant `bogus`, expected one of "
                        "`no_sync`, `snapshot`, `replica`")
        self.assertEqual(self.shard_upload("c", 0, data, "?wait=1").status, 400)
        no_wal = make_tar([("segments/x/files/segment.json", b"{}"),
                           ("replica_state.json", b'{"is_local":true,"this_peer_id":1,"peers":{}}'),
                           ("shard_config.json", b'{"type":"ReplicaSet"}')])
        r = self.shard_upload("c", 0, no_wal)
        self.assertApiError(r, 400, prefix="Bad request: Invalid snapshot ")
        remote = make_tar([("wal/open-1", b"x"), ("segments/x/files/segment.json", b"{}"),
                           ("replica_state.json", b'{"is_local":false,"this_peer_id":1,'
                                                  b'"peers":{}}')])
        self.assertApiError(self.shard_upload("c", 0, remote), 500,
                            prefix="Service internal error: Can't restore snapshot in local mode "
                                   "with missing data at shard: ")
        self.assertApiError(self.shard_upload("c", 0, make_tar([("a", b"b"), ("l", tarfile.SYMTYPE,
                                                                             "a")])), 400,
                            "Wrong input: Malformed snapshot, tar archive contains Symlink entry")
        self.assertEqual(self.count("c"), 6)  # nothing above touched the data
        ro = Standin("--api-key", "k", "--read-only-api-key", "r")
        try:
            ro.api("PUT", "/collections/c", {"vectors": {"size": 4, "distance": "Dot"}},
                   headers={"api-key": "k"})
            ct, body = multipart(data)
            r = ro.req("POST", "/collections/c/shards/0/snapshots/upload", body,
                       {"Content-Type": ct, "api-key": "r"})
            self.assertApiError(r, 403, "Forbidden: Global manage access is required")
        finally:
            ro.stop()

    def test_broken_segment_leaves_a_dummy_shard(self):
        """A replica that fails to load is replaced by a Dummy shard and the error
        returned (replica_set/snapshots.rs:134-182); the Dummy streams as 200 with
        an empty, truncated body (dummy_shard.rs:39-47)."""
        self.three_shards("c", n=9)
        bad = make_tar([("wal/open-1", b"x"),
                        ("segments/0f6a3b9e-6a39-4c1e-9c0e-0d5d1c0b2a11/files/segment.json",
                         b"not json"),
                        ("replica_state.json", b'{"is_local":true,"this_peer_id":1,"peers":{}}'),
                        ("shard_config.json", b'{"type":"ReplicaSet"}')])
        self.assertApiError(self.shard_upload("c", 1, bad), 500,
                            prefix="Service internal error: ")
        status, _, sizes, data = raw_get(self.s.port, "/collections/c/shards/1/snapshot")
        self.assertEqual((status, data, sizes), ("HTTP/1.1 200 OK", b"", [0]))
        self.assertApiError(self.s.api("POST", "/collections/c/points/count", {}), 500,
                            "Service internal error: Failed to restore local replica")
        good = raw_get(self.s.port, "/collections/c/shards/0/snapshot")[3]
        self.assertTrue(tar_is_complete(good))


class T27SnapshotBytes(Fidelity):
    def test_counters(self):
        """A collection snapshot is built in storage/tmp and stored under
        snapshots/<c>/ (collection/snapshots.rs:60-157); a shard stream writes no
        snapshot file, only transient RocksDB backups and an empty WAL under
        snapshots/tmp (segment/entry.rs:887-913, local_shard/mod.rs:866-899)."""
        self.s.make("g", points=2000, dim=64, shards=2)
        self.assertEqual(self.s.req("DELETE", "/__standin/counters").status, 200)
        for sid in range(2):
            self.assertTrue(tar_is_complete(raw_get(self.s.port,
                                                    "/collections/g/shards/%d/snapshot" % sid)[3]))
        c = self.s.state()["counters"]
        self.assertEqual(c["snapshot_files_bytes"], 0)
        self.assertEqual(c["storage_tmp_bytes"], 0)
        self.assertEqual(c["snapshot_tmp_stream_bytes"], 2 * (3 * 16 + 8 + 65536))
        self.assertEqual(c["shard_streams"], 2)
        d = self.s.snapshot("g")
        c = self.s.state()["counters"]
        self.assertEqual(c["snapshot_files_bytes"], d["size"] + 64)  # archive + .checksum
        self.assertEqual(c["storage_tmp_bytes"], d["size"])
        self.s.req("DELETE", "/__standin/counters")
        self.assertEqual(self.s.state()["counters"]["snapshot_files_bytes"], 0)


class T28ClusterInfoSingleNode(Fidelity):
    def test_disabled_and_collection_cluster(self):
        """GET /cluster on a single node is {"status": "disabled"} in the envelope
        (lib/storage/src/dispatcher.rs:223-228, types.rs:209-216);
        GET /collections/{c}/cluster lists every shard local and Active
        (collection_ops.rs:332-398)."""
        self.assertEqual(self.assertEnvelopeOk(self.s.req("GET", "/cluster")),
                         {"status": "disabled"})
        self.three_shards("c", n=7)
        r = self.assertEnvelopeOk(self.s.req("GET", "/collections/c/cluster"))
        self.assertEqual(r, {"peer_id": PEER, "shard_count": 3,
                             "local_shards": [{"shard_id": 0, "points_count": 3,
                                               "state": "Active"},
                                              {"shard_id": 1, "points_count": 2,
                                               "state": "Active"},
                                              {"shard_id": 2, "points_count": 2,
                                               "state": "Active"}],
                             "remote_shards": [], "shard_transfers": []})


# ================================================================ cluster mode

def _die_with_parent():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def cluster_port(k):
    """A port free on 127.0.0.2 .. 127.0.0.(k+1)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
        s.close()
        try:
            for n in range(3, k + 2):
                t = socket.socket()
                try:
                    t.bind(("127.0.0.%d" % n, port))
                finally:
                    t.close()
            return port
        except OSError:
            continue


def alive(pid):
    """True while pid runs (a zombie is not running)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Cluster:
    """K stand-in peers sharing one cluster dir, peer n on 127.0.0.(n+1), one port."""

    FAST = {"activate_delay_s": 0.1, "dead_delay_s": 0.1, "transfer_delay_s": 0.3,
            "election_timeout_s": 0.5}

    def __init__(self, k=3, *extra):
        self.k = k
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix="standin-cluster-")
        self.procs = {}
        self.port = cluster_port(k)
        try:
            for n in range(1, k + 1):
                self.start(n)
            self.wait_ready()
            r = self.api(1, "POST", "/__standin/cluster/settings", self.FAST)
            assert r.status == 200, r.body
        except BaseException:
            self.stop()
            raise

    def host(self, n):
        return "127.0.0.%d" % (n + 1)

    def start(self, n):
        log = open(os.path.join(self.dir, "peer-%d.log" % n), "ab")
        self.procs[n] = subprocess.Popen(
            [PYTHON, STANDIN, "--cluster-dir", self.dir, "--peer", str(n), "--bind", self.host(n),
             "--port", str(self.port)] + self.extra,
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()

    def wait_ready(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            ok = 0
            for n in self.procs:
                try:
                    r = self.cluster(n)
                    if len(r["peers"]) == self.k and r["raft_info"]["leader"]:
                        ok += 1
                except (OSError, ValueError, KeyError):
                    pass
            if ok == len(self.procs):
                return
            time.sleep(0.05)
        raise RuntimeError("cluster did not start")

    def kill(self, n):
        p = self.procs.pop(n)
        p.kill()
        p.wait(10)

    def stop(self):
        for n in list(self.procs):
            self.kill(n)
        shutil.rmtree(self.dir, ignore_errors=True)

    def req(self, n, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection(self.host(n), self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Resp(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def api(self, n, method, path, obj=None, timeout=60):
        body = json.dumps(obj).encode() if obj is not None else None
        h = {"Content-Type": "application/json"} if body is not None else {}
        return self.req(n, method, path, body, h, timeout)

    def ok(self, n, method, path, obj=None, timeout=60):
        r = self.api(n, method, path, obj, timeout)
        assert r.status == 200, (r.status, r.body)
        return r.json()["result"]

    def ctl(self, n, method, path, obj=None):
        """A control-API call (plain JSON, no envelope)."""
        r = self.api(n, method, path, obj)
        assert r.status == 200, (r.status, r.body)
        return r.json()

    def cluster(self, n):
        return self.ok(n, "GET", "/cluster", timeout=5)

    def ids(self):
        return {p["index"]: int(i) for i, p in
                self.api(1, "GET", "/__standin/cluster").json()["view"]["peers"].items()}

    def ccluster(self, n, c):
        return self.ok(n, "GET", "/collections/%s/cluster" % c)

    def placement(self, n, c):
        """{shard: {peer_id: state}} from one peer's local + remote lists."""
        r = self.ccluster(n, c)
        out = {}
        for s in r["local_shards"]:
            out.setdefault(s["shard_id"], {})[r["peer_id"]] = s["state"]
        for s in r["remote_shards"]:
            out.setdefault(s["shard_id"], {})[s["peer_id"]] = s["state"]
        return out

    def wait(self, pred, timeout=15, what="condition"):
        end = time.time() + timeout
        while time.time() < end:
            v = pred()
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s" % what)


class ClusterBase(unittest.TestCase):
    PEERS = 3

    def setUp(self):
        self.c = Cluster(self.PEERS)

    def tearDown(self):
        self.c.stop()

    def create(self, name="c", n=1, **body):
        b = {"vectors": {"size": 4, "distance": "Dot"}}
        b.update(body)
        self.assertIs(self.c.ok(n, "PUT", "/collections/" + name, b), True)

    def fill(self, name="c", ids=range(60), n=1):
        self.c.ok(n, "PUT", "/collections/%s/points?wait=true" % name, points_body(ids))

    def all_active(self, name, n=1):
        p = self.c.placement(n, name)
        return all(s == "Active" for reps in p.values() for s in reps.values()) and p

    def stream(self, n, name, sid):
        return raw_get(self.c.port, "/collections/%s/shards/%d/snapshot" % (name, sid),
                       host=self.c.host(n))

    def holders(self, name, sid):
        ids = self.c.ids()
        p = self.c.placement(1, name)[sid]
        return [n for n, i in sorted(ids.items()) if i in p]

    def upload(self, n, name, sid, data, query=""):
        ct, body = multipart(data)
        return self.c.req(n, "POST", "/collections/%s/shards/%d/snapshots/upload%s"
                          % (name, sid, query), body, {"Content-Type": ct})


class C01Cluster(ClusterBase):
    def test_get_cluster(self):
        """GET /cluster in cluster mode (lib/storage/src/types.rs:132-226,
        content_manager/consensus_manager.rs:224-259): u64 peer ids (above 2^53
        here), P2P uris ending in '/', raft_info with the leader and PascalCase
        roles, consensus_thread_status tagged twice; every peer on the same port
        of its own loopback address."""
        ids = self.c.ids()
        leader = None
        for n in (1, 2, 3):
            r = self.c.cluster(n)
            self.assertEqual(list(r), ["status", "peer_id", "peers", "raft_info",
                                       "consensus_thread_status", "message_send_failures"])
            self.assertEqual(r["status"], "enabled")
            self.assertEqual(r["peer_id"], ids[n])
            self.assertGreater(r["peer_id"], 2 ** 53)
            self.assertEqual(r["peers"], {str(ids[m]): {"uri": "http://127.0.0.%d:6335/" % (m + 1)}
                                          for m in (1, 2, 3)})
            ri = r["raft_info"]
            self.assertEqual(list(ri), ["term", "commit", "pending_operations", "leader", "role",
                                        "is_voter"])
            leader = leader or ri["leader"]
            self.assertEqual(ri["leader"], leader)
            self.assertEqual(ri["role"], "Leader" if ids[n] == leader else "Follower")
            self.assertIs(ri["is_voter"], True)
            cts = r["consensus_thread_status"]
            self.assertEqual(cts["consensus_thread_status"], "working")
            self.assertRegex(cts["last_update"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
            self.assertEqual(r["message_send_failures"], {})
        self.assertEqual(leader, ids[1])  # the bootstrap peer
        # raw JSON carries the u64 exactly
        raw = self.c.req(2, "GET", "/cluster").body
        self.assertIn(b'"peer_id":%d' % ids[2], raw)

    def test_launcher(self):
        """--launch K starts K peers (127.0.0.2..), prints them once all see each
        other and a leader; --stop-cluster kills them."""
        d = tempfile.mkdtemp(prefix="standin-launch-")
        try:
            out = subprocess.run([PYTHON, STANDIN, "--launch", "2", "--cluster-dir", d],
                                 capture_output=True, timeout=60, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            lines = out.stdout.splitlines()
            self.assertEqual(len(lines), 3, lines)
            m = re.match(r"^peer=1 pid=(\d+) url=http://127\.0\.0\.2:(\d+) "
                         r"uri=http://127\.0\.0\.2:6335/ peer_id=(\d+)$", lines[0])
            self.assertIsNotNone(m, lines[0])
            port = int(m.group(2))
            self.assertRegex(lines[1], r"^peer=2 pid=\d+ url=http://127\.0\.0\.3:%d " % port)
            self.assertRegex(lines[2], r"^port=%d leader=%s$" % (port, m.group(3)))
            pids = [int(re.search(r"pid=(\d+)", x).group(1)) for x in lines[:2]]
            conn = http.client.HTTPConnection("127.0.0.3", port, timeout=5)
            conn.request("GET", "/cluster")
            self.assertEqual(len(json.loads(conn.getresponse().read())["result"]["peers"]), 2)
            conn.close()
            out = subprocess.run([PYTHON, STANDIN, "--stop-cluster", d], capture_output=True,
                                 timeout=30, text=True)
            self.assertEqual(out.stdout.strip(), "killed 2")
            end = time.time() + 10
            while time.time() < end and any(alive(p) for p in pids):
                time.sleep(0.05)
            self.assertFalse(any(alive(p) for p in pids))
        finally:
            subprocess.run([PYTHON, STANDIN, "--stop-cluster", d], capture_output=True,
                           timeout=30)
            shutil.rmtree(d, ignore_errors=True)


class C02Placement(ClusterBase):
    def test_placement_and_collection_cluster(self):
        """PUT /collections/{c} in cluster mode places shard_number shards with
        replication_factor replicas each on the peers with the fewest replicas
        (lib/storage/src/dispatcher.rs:81-119, shard_distribution.rs:58-102) and
        waits for the replicas to become Active (dispatcher.rs:150-212).
        GET /collections/{c}/cluster (collection_ops.rs:332-398): local_shards
        with points_count and state, remote_shards with peer_id, both sorted by
        shard_id; the union is the same from every peer."""
        ids = self.c.ids()
        self.create("c", n=2, shard_number=6, replication_factor=2)
        p = self.c.placement(1, "c")
        self.assertEqual(sorted(p), list(range(6)))
        per_peer = {}
        for sid, reps in p.items():
            self.assertEqual(len(reps), 2)
            self.assertEqual(set(reps.values()), {"Active"})
            for peer in reps:
                per_peer[peer] = per_peer.get(peer, 0) + 1
        self.assertEqual(sorted(per_peer.values()), [4, 4, 4])
        self.assertEqual(self.c.placement(2, "c"), p)
        self.assertEqual(self.c.placement(3, "c"), p)
        self.fill("c", range(120), n=3)
        r = self.c.ccluster(1, "c")
        self.assertEqual(list(r), ["peer_id", "shard_count", "local_shards", "remote_shards",
                                   "shard_transfers"])
        self.assertEqual(r["peer_id"], ids[1])
        self.assertEqual(r["shard_count"], 6)
        self.assertEqual([s["shard_id"] for s in r["local_shards"]],
                         sorted(s["shard_id"] for s in r["local_shards"]))
        for s in r["local_shards"]:
            self.assertEqual(list(s), ["shard_id", "points_count", "state"])
            self.assertEqual(s["points_count"], 20)
        for s in r["remote_shards"]:
            self.assertEqual(list(s), ["shard_id", "peer_id", "state"])
        self.assertEqual(r["shard_transfers"], [])
        for n in (1, 2, 3):
            self.assertEqual(self.c.ok(n, "POST", "/collections/c/points/count", {})["count"], 120)
        info = self.c.ok(2, "GET", "/collections/c")
        self.assertEqual(info["points_count"], 120)
        self.assertEqual(info["config"]["params"]["shard_number"], 6)
        self.assertEqual(info["config"]["params"]["replication_factor"], 2)
        # default shard_number: one per peer
        self.create("d")
        self.assertEqual(sorted(self.c.placement(1, "d")), [0, 1, 2])
        self.assertEqual(sorted(len(r) for r in self.c.placement(1, "d").values()), [1, 1, 1])

    def test_put_answers_after_timeout_with_initializing_replicas(self):
        """The PUT waits for the replicas' Initializing -> Active proposals up to its
        timeout and then answers true anyway (dispatcher.rs:150-212,
        consensus_manager.rs:640-646); activate_delay_s controls that delay here."""
        self.c.ctl(1, "POST", "/__standin/cluster/settings", {"activate_delay_s": 3.0})
        t = time.time()
        self.create("c", shard_number=3, replication_factor=2)  # default timeout 10 s
        self.assertGreaterEqual(time.time() - t, 2.5)
        self.assertTrue(self.all_active("c"))
        t = time.time()
        r = self.c.api(1, "PUT", "/collections/d?timeout=1",
                       {"vectors": {"size": 4, "distance": "Dot"}})
        self.assertIs(r.json()["result"], True)
        self.assertLess(time.time() - t, 2.5)
        states = {s for reps in self.c.placement(1, "d").values() for s in reps.values()}
        self.assertEqual(states, {"Initializing"})
        self.c.wait(lambda: self.all_active("d"), what="replicas of d Active")


class C03ShardStreaming(ClusterBase):
    def test_only_from_a_local_replica(self):
        """Streaming needs a local (or queue proxy) replica: another peer answers
        400 `Shard N is not a local or queue proxy shard` (shard_holder/mod.rs:928-932),
        without redirect; the replica state is not checked, so a Dead local replica
        streams; the source of a stream_records transfer is a ForwardProxy and
        cannot stream, a wal_delta source (QueueProxy) can
        (transfer/stream_records.rs:49, transfer/wal_delta.rs:123)."""
        ids = self.c.ids()
        self.create("c", shard_number=3, replication_factor=2)
        self.fill("c", range(30))
        holders = self.holders("c", 0)
        other = [n for n in (1, 2, 3) if n not in holders][0]
        status, h, _, body = self.stream(other, "c", 0)
        self.assertEqual(status, "HTTP/1.1 400 Bad Request")
        self.assertEqual(h["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(body, b"Wrong input: Shard 0 is not a local or queue proxy shard")
        for n in holders:
            data = self.stream(n, "c", 0)[3]
            self.assertTrue(tar_is_complete(data))
            self.assertEqual(stream_ids(data), list(range(0, 30, 3)))
            rs = json.loads(tarfile.open(fileobj=io.BytesIO(data))
                            .extractfile("replica_state.json").read())
            self.assertEqual(rs["this_peer_id"], ids[n])
            self.assertEqual(rs["peers"], {str(ids[m]): "Active" for m in holders})
        a, b = holders
        self.c.ctl(1, "POST", "/__standin/cluster/replica",
                  {"collection": "c", "shard": 0, "peer": a, "state": "Dead"})
        self.assertEqual(self.c.placement(3, "c")[0][ids[a]], "Dead")
        self.assertTrue(tar_is_complete(self.stream(a, "c", 0)[3]))
        self.c.ctl(1, "POST", "/__standin/cluster/transfer",
                  {"collection": "c", "shard": 0, "from": b, "to": a, "method": "stream_records"})
        r = self.c.ccluster(b, "c")
        self.assertEqual(r["shard_transfers"][0]["shard_id"], 0)
        self.assertEqual(r["shard_transfers"][0]["from"], ids[b])
        self.assertEqual(r["shard_transfers"][0]["to"], ids[a])
        self.assertIs(r["shard_transfers"][0]["sync"], True)
        self.assertEqual(r["shard_transfers"][0]["method"], "stream_records")
        self.assertIn("comment", r["shard_transfers"][0])  # on the source peer only
        self.assertNotIn("comment", self.c.ccluster(a, "c")["shard_transfers"][0])
        self.assertEqual(self.c.placement(1, "c")[0][ids[a]], "Partial")
        self.assertEqual(self.stream(b, "c", 0)[0], "HTTP/1.1 400 Bad Request")
        self.c.ctl(1, "POST", "/__standin/cluster/transfer",
                  {"collection": "c", "shard": 0, "from": b, "to": a, "method": "wal_delta"})
        self.assertEqual(self.c.placement(1, "c")[0][ids[a]], "Recovery")
        self.assertTrue(tar_is_complete(self.stream(b, "c", 0)[3]))
        self.c.api(1, "DELETE", "/__standin/cluster/transfer",
                   {"collection": "c", "shard": 0, "outcome": "done"})
        self.assertEqual(self.c.ccluster(1, "c")["shard_transfers"], [])
        self.assertEqual(self.c.placement(1, "c")[0][ids[a]], "Active")


class C04ShardUpload(ClusterBase):
    def test_snapshot_priority_kills_then_resyncs_other_replicas(self):
        """Uploading a shard with priority=snapshot to one peer activates that
        replica and proposes Dead for the other active replicas, after the answer
        (src/common/snapshots.rs:237-281, toc/snapshots.rs:72-91); each Dead replica
        then recovers by a shard transfer from an Active one (Recovery for
        wal_delta) and becomes Active with the same data
        (collection/mod.rs:677-757, collection/shard_transfer.rs:82-99)."""
        ids = self.c.ids()
        self.c.ctl(1, "POST", "/__standin/cluster/settings",
                  {"dead_delay_s": 1.0, "transfer_delay_s": 1.0})
        self.create("src", shard_number=3, replication_factor=1)
        self.fill("src", range(60))
        self.create("dst", shard_number=3, replication_factor=2)
        self.fill("dst", [1000, 1003])  # shard 0 data that the upload replaces
        h = self.holders("src", 0)[0]
        data = self.stream(h, "src", 0)[3]
        a, b = self.holders("dst", 0)
        r = self.upload(a, "dst", 0, data, "?priority=snapshot")
        self.assertEqual(r.status, 200, r.body)
        self.assertIsNone(r.json()["result"])
        # the answer comes before the state changes
        self.assertEqual(self.c.placement(1, "dst")[0][ids[b]], "Active")
        st = self.c.wait(lambda: self.c.placement(1, "dst")[0][ids[b]] != "Active" and
                         self.c.placement(1, "dst")[0][ids[b]], what="not Active")
        self.assertIn(st, ("Dead", "Recovery"))  # Dead, then at once a transfer to it
        self.assertEqual(self.c.placement(1, "dst")[0][ids[a]], "Active")
        tr = self.c.wait(lambda: self.c.ccluster(1, "dst")["shard_transfers"], what="transfer")
        self.assertEqual((tr[0]["shard_id"], tr[0]["from"], tr[0]["to"], tr[0]["sync"],
                          tr[0]["method"]), (0, ids[a], ids[b], True, "wal_delta"))
        self.assertEqual(self.c.placement(1, "dst")[0][ids[b]], "Recovery")
        self.c.wait(lambda: self.all_active("dst"), what="all Active")
        self.assertEqual(self.c.ccluster(1, "dst")["shard_transfers"], [])
        for n in (a, b):
            local = {s["shard_id"]: s["points_count"] for s in self.c.ccluster(n, "dst")
                     ["local_shards"]}
            self.assertEqual(local[0], 20)
            self.assertEqual(stream_ids(self.stream(n, "dst", 0)[3]), list(range(0, 60, 3)))
        recs = self.c.ok(1, "POST", "/collections/dst/points/scroll",
                         {"limit": 100, "with_vector": True, "filter": {
                             "must": [{"has_id": list(range(0, 60, 3))}]}})["points"]
        src = self.c.ok(1, "POST", "/collections/src/points/scroll",
                        {"limit": 100, "with_vector": True, "filter": {
                            "must": [{"has_id": list(range(0, 60, 3))}]}})["points"]
        self.assertEqual(recs, src)

    def test_upload_to_a_peer_without_a_replica_adds_one(self):
        """The shard only has to exist in the collection (assert_shard_exists,
        shard_holder/mod.rs:721-726); a peer without a replica loads the data and
        its activation adds a replica (collection/mod.rs:465-467): one more replica."""
        ids = self.c.ids()
        self.create("c", shard_number=3, replication_factor=1)
        self.fill("c", range(30))
        h = self.holders("c", 1)[0]
        data = self.stream(h, "c", 1)[3]
        other = [n for n in (1, 2, 3) if n != h][0]
        r = self.upload(other, "c", 1, data)
        self.assertEqual(r.status, 200, r.body)
        self.c.wait(lambda: len(self.c.placement(1, "c")[1]) == 2 and self.all_active("c"),
                    what="two active replicas of shard 1")
        self.assertEqual(set(self.c.placement(1, "c")[1]), {ids[h], ids[other]})
        self.assertEqual(stream_ids(self.stream(other, "c", 1)[3]), list(range(1, 30, 3)))

    def test_no_sync_and_replica_priorities(self):
        """no_sync activates without touching the others; replica marks this peer's
        replica Dead so it re-syncs from another one, dropping the upload
        (src/common/snapshots.rs:263-291)."""
        ids = self.c.ids()
        self.create("c", shard_number=1, replication_factor=2)
        self.fill("c", range(10))
        a, b = self.holders("c", 0)
        empty = self.c.ok(1, "PUT", "/collections/e", {"vectors": {"size": 4, "distance": "Dot"},
                                                        "shard_number": 1,
                                                        "replication_factor": 1})
        self.assertIs(empty, True)
        eh = self.holders("e", 0)[0]
        data = self.stream(eh, "e", 0)[3]  # an empty shard
        self.assertEqual(self.upload(a, "c", 0, data, "?priority=no_sync").status, 200)
        time.sleep(0.5)
        self.assertEqual(set(self.c.placement(1, "c")[0].values()), {"Active"})
        counts = {n: self.c.ccluster(n, "c")["local_shards"][0]["points_count"] for n in (a, b)}
        self.assertEqual(counts, {a: 0, b: 10})  # diverged, as Qdrant allows
        self.assertEqual(self.upload(a, "c", 0, data, "?priority=replica").status, 200)
        self.c.wait(lambda: self.c.placement(1, "c")[0][ids[a]] != "Active", what="not Active")
        self.c.wait(lambda: self.all_active("c"), what="Active again")
        self.assertEqual(self.c.ccluster(a, "c")["local_shards"][0]["points_count"], 10)


class C05Leader(ClusterBase):
    def test_leader_hook_and_no_leader(self):
        """The leader is raft_info.leader on every peer; moving it raises the term.
        Without a leader, meta operations fail after their timeout with 500
        `Failed to propose operation: leader is not established within N secs`
        (consensus_manager.rs:716-725); role PreCandidate meanwhile (raft-rs)."""
        ids = self.c.ids()
        term = self.c.cluster(1)["raft_info"]["term"]
        r = self.c.api(3, "POST", "/__standin/cluster/leader", {"peer": 2}).json()
        self.assertEqual(r, {"leader": ids[2], "term": term + 1})
        for n in (1, 2, 3):
            ri = self.c.cluster(n)["raft_info"]
            self.assertEqual((ri["leader"], ri["term"]), (ids[2], term + 1))
            self.assertEqual(ri["role"], "Leader" if n == 2 else "Follower")
        self.c.api(1, "POST", "/__standin/cluster/leader", {"peer_id": ids[3]})
        self.assertEqual(self.c.cluster(2)["raft_info"]["leader"], ids[3])
        self.c.api(1, "POST", "/__standin/cluster/leader", {"peer": None})
        ri = self.c.cluster(1)["raft_info"]
        self.assertEqual((ri["leader"], ri["role"]), (0, "PreCandidate"))
        t = time.time()
        r = self.c.api(1, "PUT", "/collections/x?timeout=1",
                       {"vectors": {"size": 4, "distance": "Dot"}})
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json()["status"]["error"], "Service internal error: Failed to propose "
                         "operation: leader is not established within 1 secs")
        self.assertGreaterEqual(time.time() - t, 1.0)
        self.c.api(1, "POST", "/__standin/cluster/leader", {"peer": 1})
        self.create("x")

    def test_killed_leader_is_replaced(self):
        """A leader that is gone (kill -9) is replaced by an election among the
        peers that are left when they are a majority; the term grows; the dead
        peer shows in message_send_failures (types.rs:184-206)."""
        ids = self.c.ids()
        term = self.c.cluster(2)["raft_info"]["term"]
        self.c.kill(1)
        ri = self.c.wait(lambda: (self.c.cluster(2)["raft_info"]["leader"] != ids[1] and
                                  self.c.cluster(2)["raft_info"]), what="new leader")
        self.assertEqual(ri["leader"], ids[2])
        self.assertGreater(ri["term"], term)
        self.assertEqual(self.c.cluster(3)["raft_info"]["leader"], ids[2])
        fails = self.c.cluster(3)["message_send_failures"]
        self.assertEqual(list(fails), ["http://127.0.0.2:6335/"])
        self.assertEqual(sorted(fails["http://127.0.0.2:6335/"]),
                         ["count", "latest_error", "latest_error_timestamp"])


class C06PeerDown(ClusterBase):
    def test_kill_read_write_and_recover(self):
        """With a peer killed, reads go to another active replica
        (execute_read_operation.rs:80-100), writes skip it and mark its replicas Dead
        (replica_set/update.rs:240-262); restarted, the peer re-syncs its Dead
        replicas by transfer and they turn Active with the current data."""
        ids = self.c.ids()
        self.create("c", shard_number=3, replication_factor=2)
        self.fill("c", range(30))
        self.c.kill(1)
        for n in (2, 3):
            self.assertEqual(self.c.ok(n, "POST", "/collections/c/points/count", {})["count"], 30)
        self.fill("c", range(30, 36), n=2)
        p = self.c.placement(2, "c")
        for sid, reps in p.items():
            if ids[1] in reps:
                self.assertEqual(reps[ids[1]], "Dead")
        self.assertEqual(self.c.ok(3, "POST", "/collections/c/points/count", {})["count"], 36)
        self.c.start(1)
        self.c.wait(lambda: self.all_active("c", n=2), timeout=20, what="recovered")
        local = self.c.ccluster(1, "c")["local_shards"]
        self.assertEqual(sum(s["points_count"] for s in local), 24)  # 2 of 3 shards, 12 each
        self.assertEqual(self.c.ok(1, "POST", "/collections/c/points/count", {})["count"], 36)

    def test_stop_serving_hook(self):
        """A peer told to stop serving refuses connections like a downed one, then
        comes back after resume_after_s."""
        self.c.api(3, "POST", "/__standin/stop", {"resume_after_s": 1.5})
        time.sleep(0.3)
        with self.assertRaises(OSError):
            socket.create_connection((self.c.host(3), self.c.port), timeout=2).close()
        self.assertIn("http://127.0.0.4:6335/", self.c.cluster(1)["message_send_failures"])
        self.c.wait(lambda: self._up(3) and self.c.api(3, "GET", "/healthz").status == 200,
                    what="peer 3 back")

    def _up(self, n):
        try:
            socket.create_connection((self.c.host(n), self.c.port), timeout=1).close()
            return True
        except OSError:
            return False


class C07CollectionSnapshot(ClusterBase):
    def test_collection_snapshot_holds_local_shards_only(self):
        """In cluster mode a collection snapshot carries data only for the shards
        local to the peer that made it (the others are replica_state.json with
        is_local false, collection/snapshots.rs:88-120); recovering it on another
        peer creates the collection through consensus and restores only the
        shards that are both in the snapshot and local there, skipping the rest
        (recover.rs:143-157, 199-238)."""
        self.c.ctl(1, "POST", "/__standin/collections", {"name": "g", "points": 600, "dim": 8,
                                                          "shard_number": 6,
                                                          "replication_factor": 2})
        ids = self.c.ids()
        d = self.c.ok(2, "POST", "/collections/g/snapshots")
        self.assertRegex(d["name"], r"^g-%d-" % ids[2])
        data = self.c.req(2, "GET", "/collections/g/snapshots/" + d["name"]).body
        t = tarfile.open(fileobj=io.BytesIO(data))
        local2 = {sid for sid, reps in self.c.placement(1, "g").items() if ids[2] in reps}
        for sid in range(6):
            rs = json.loads(t.extractfile("%d/replica_state.json" % sid).read())
            self.assertEqual(rs["is_local"], sid in local2)
            self.assertEqual(any(n.startswith("%d/segments/" % sid) for n in t.getnames()),
                             sid in local2)
        ct, body = multipart(data)
        r = self.c.req(3, "POST", "/collections/h/snapshots/upload", body, {"Content-Type": ct})
        self.assertEqual(r.status, 200, r.body)
        self.c.wait(lambda: self.all_active("h"), what="h Active")
        local3 = {sid for sid, reps in self.c.placement(1, "h").items() if ids[3] in reps}
        both = local2 & local3
        time.sleep(0.5)
        self.c.wait(lambda: self.all_active("h"), what="h Active after resync")
        self.assertEqual(self.c.ok(1, "POST", "/collections/h/points/count", {})["count"],
                         100 * len(both))


if __name__ == "__main__":
    unittest.main()
