#!/usr/bin/python3
"""Qdrant v1.13.2 stand-in for qsnap's tests (Python standard library only).

Behaves like a single-node Qdrant 1.13.2 in everything qsnap can observe over
REST: the JSON envelope, error codes and messages, api-key/Bearer auth with the
whitelist and the read-only key, collection snapshots (create, list, download
with ranges and compression, delete, upload, recover), full-storage snapshots,
collection info and the service endpoints. Snapshot files are real GNU tar
archives with the v1.13 layout; the segment data is realistic float32 vectors
and JSON payloads, so compression measured on them means something.

Usage:
  qdrant_standin.py --port 0 --port-file FILE --storage DIR [--host 127.0.0.1]
                    [--api-key KEY] [--read-only-api-key KEY] [--peer-id N]

Storage layout under DIR:
  snapshots/<collection>/      collection snapshots (+ .checksum sidecars)
  snapshots/                   full-storage snapshots
  snapshots/tmp/               upload and recovery scratch area
  storage/collections/<c>/     collection data (config + per-shard segment tars)
  storage/tmp/                 snapshot archives being built

Control API (not part of Qdrant, no auth, JSON):
  POST   /__standin/collections  {"name", "points", "dim", "shard_number",
                                  "distance", "size_mib"?, "replace"?}
  DELETE /__standin/collections/{c}
  POST   /__standin/faults       {"fail_creates", "create_delay_s",
                                  "cut_download_after", "flip_byte",
                                  "readyz_503", "stall_s", "fail_uploads",
                                  "upload_status"}
  GET    /__standin/faults
  DELETE /__standin/faults
  GET    /__standin/state
  POST   /__standin/time         {"offset_s": N, "freeze": bool?} shifts the
                                 clock used for snapshot names; freeze=true
                                 stops it (same-second collisions on demand)

Fault semantics: fail_creates=N makes the next N snapshot creates answer 500;
create_delay_s delays every create; cut_download_after=K and flip_byte apply
to the next download only (the cut sends K body bytes after a full
Content-Length, then closes; the flip XORs the middle byte with 1);
readyz_503 makes /readyz answer 503; stall_s=T holds every non-control request
(after reading its head) until T seconds have passed; fail_uploads=N makes the
next N uploads fail with upload_status (default 400, a Qdrant-like message).
Setting a fault to 0/false clears it. /__standin/state reports collections
(points_count, dim, distance, shard_number, restored_from_sha256, restores),
uploads (collection, filename, sha256, size, checksum_param, priority, wait,
status) and counters (creates, downloads, uploads, deletes, recovers,
full_creates).

Known differences from Qdrant 1.13.2: compression offers gzip and deflate
only (Qdrant would pick br or zstd when a client offers them); creation_time
comes from the stand-in's clock at archive start, not the inode birth time
(for files it did not create: the mtime); no shard-snapshot endpoints, no
search/upsert, aliases are not persisted across restarts.

Data generation: vectors are float32 values distributed like N(0, 0.03)
(random sign and mantissa, exponent drawn per octave), built once as a 4 MiB
pool at C speed; a segment's vector file is 8 KiB slices taken at random pool
offsets, so gzip's 32 KiB window almost never sees a repeat. Payloads are runs
of JSON lines from a pool of 4096 agent-memory records. Everything is streamed
to disk (about 400 MiB/s for a 1536-dim collection, 1 GiB in ~2.6 s).
Measured gzip -6 output / input on collection snapshots:
  dim 1536, 1 GiB   0.889  (vectors alone 0.923, payload JSON ~0.3)
  dim 1536, 100 MiB 0.889
  dim 128,  100 MiB 0.667  (payload is a third of the bytes)
"""

import argparse
import array
import datetime
import email.utils
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid
import zlib

QDRANT_VERSION = "1.13.2"
COLLECTION_VERSION = "0.4.2"
CHUNK = 1 << 20

# --------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An error answered to the client.

    kind: "json" (Qdrant envelope), "text" (text/plain; charset=utf-8),
    "bare" (body without Content-Type, the auth middleware), "empty".
    """

    def __init__(self, status, msg="", kind="json", zero_time=False):
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.kind = kind
        self.zero_time = zero_time


def not_found_collection(name, kind="json"):
    return ApiError(404, "Not found: Collection `%s` doesn't exist!" % name, kind)


def forbidden_manage():
    return ApiError(403, "Forbidden: Global manage access is required")


def service_error(msg):
    return ApiError(500, "Service internal error: " + msg)


def bad_input(msg):
    return ApiError(400, "Wrong input: " + msg)


def bad_request(msg):
    return ApiError(400, "Bad request: " + msg)


# --------------------------------------------------------------------------
# Tar writing (GNU headers, streamed, optionally hashed)


class TarWriter:
    def __init__(self, f, hasher=None):
        self.f = f
        self.hasher = hasher
        self.written = 0
        self.mtime = int(time.time())

    def _w(self, data):
        if not data:
            return
        self.f.write(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.written += len(data)

    def _header(self, name, size, type_=tarfile.REGTYPE, mode=0o644):
        ti = tarfile.TarInfo(name)
        ti.size = size
        ti.mode = mode
        ti.mtime = self.mtime
        ti.type = type_
        self._w(ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))

    def _pad(self, size):
        rem = size % 512
        if rem:
            self._w(b"\0" * (512 - rem))

    def add_dir(self, name):
        self._header(name.rstrip("/") + "/", 0, tarfile.DIRTYPE, 0o755)

    def add_bytes(self, name, data):
        self._header(name, len(data))
        self._w(data)
        self._pad(len(data))

    def add_stream(self, name, size, chunks):
        self._header(name, size)
        n = 0
        for c in chunks:
            self._w(c)
            n += len(c)
        if n != size:
            raise RuntimeError("tar member %s: wrote %d of %d bytes" % (name, n, size))
        self._pad(size)

    def add_file(self, name, path):
        size = os.path.getsize(path)

        def gen():
            with open(path, "rb") as src:
                left = size
                while left > 0:
                    b = src.read(min(CHUNK, left))
                    if not b:
                        break
                    left -= len(b)
                    yield b

        self.add_stream(name, size, gen())

    def close(self):
        self._w(b"\0" * 1024)


# --------------------------------------------------------------------------
# Realistic data


_POOL_LOCK = threading.Lock()
_VEC_POOL = None  # bytes of float32
_PAYLOAD_POOL = None  # list of bytes lines
_PAYLOAD_AVG = 0.0

_WORDS = (
    "agent memory context user request response tool result plan step task goal "
    "search query document embedding vector cluster node pod storage backup restore "
    "snapshot bucket object region latency error retry timeout config policy token "
    "session summary note reminder meeting email calendar invoice report metric alert "
    "deploy build release test review merge branch commit issue ticket incident "
    "customer order payment shipping address product price discount inventory stock "
    "weather travel flight hotel booking schedule deadline project team owner status "
    "the a of to and in for on with by from at as is was be are this that it not "
    "new old large small fast slow first last next previous daily weekly monthly"
).split()


def _exponent_table(sigma):
    """256-entry byte map: random byte -> float32 exponent of |N(0, sigma)|.

    Sign comes from the top bit of the random byte, the octave from the low
    seven bits with probabilities P(2^k <= |x| < 2^(k+1)).
    """
    import math
    ks = range(int(math.log2(sigma)) - 14, int(math.log2(sigma)) + 4)
    probs = []
    for k in ks:
        a = 2.0 ** k / (sigma * math.sqrt(2))
        probs.append((k, math.erf(2 * a) - math.erf(a)))
    total = sum(p for _, p in probs)
    slots = []
    acc = 0.0
    for k, p in probs:
        acc += p / total * 128
        while len(slots) < min(128, round(acc)):
            slots.append(k + 127)
    while len(slots) < 128:
        slots.append(probs[-1][0] + 127)
    return slots


def _vec_pool():
    """4 MiB of float32 values distributed like N(0, 0.03), built at C speed."""
    global _VEC_POOL
    with _POOL_LOCK:
        if _VEC_POOL is None:
            n = 1 << 20
            exps = _exponent_table(0.03)
            t2 = bytes(((exps[r & 0x7F] & 1) << 7) for r in range(256))
            t3 = bytes((r & 0x80) | (exps[r & 0x7F] >> 1) for r in range(256))
            rnd = random.Random(0x5EED)
            r = rnd.randbytes(n)
            hi = bytearray(4 * n)
            hi[2::4] = r.translate(t2)
            hi[3::4] = r.translate(t3)
            mant_mask = int.from_bytes(b"\xff\xff\x7f\x00" * n, "little")
            mant = int.from_bytes(rnd.randbytes(4 * n), "little") & mant_mask
            _VEC_POOL = (int.from_bytes(hi, "little") | mant).to_bytes(4 * n, "little")
        return _VEC_POOL


def _payload_pool():
    global _PAYLOAD_POOL, _PAYLOAD_AVG
    with _POOL_LOCK:
        if _PAYLOAD_POOL is None:
            rnd = random.Random(0xC0FFEE)
            lines = []
            for i in range(4096):
                text = " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(8, 40)))
                doc = {
                    "agent": "agent-%02d" % rnd.randint(0, 19),
                    "kind": rnd.choice(["memory", "fact", "episode", "tool_call", "summary"]),
                    "text": text,
                    "created_at": "2025-%02d-%02dT%02d:%02d:%02dZ"
                    % (rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23),
                       rnd.randint(0, 59), rnd.randint(0, 59)),
                    "importance": round(rnd.random(), 3),
                    "tags": rnd.sample(_WORDS, rnd.randint(0, 4)),
                    "source_id": str(uuid.UUID(int=rnd.getrandbits(128))),
                }
                lines.append(json.dumps(doc, separators=(",", ":")).encode() + b"\n")
            _PAYLOAD_POOL = lines
            _PAYLOAD_AVG = sum(len(x) for x in lines) / len(lines)
        return _PAYLOAD_POOL, _PAYLOAD_AVG


def vector_chunks(points, dim, seed):
    """points*dim float32 values as 1 MiB blocks of 8 KiB slices of the pool.

    The slices start at random offsets of a 4 MiB pool, so gzip's 32 KiB
    window almost never sees a repeat, while the cost per MiB stays tiny.
    """
    pool = _vec_pool()
    rnd = random.Random(seed)
    total = points * dim * 4
    piece = 8192
    maxoff = (len(pool) - piece) // 4
    while total > 0:
        k = min(CHUNK, total)
        parts = []
        got = 0
        while got < k:
            n = min(piece, k - got)
            o = rnd.randrange(maxoff) * 4
            parts.append(pool[o:o + n])
            got += n
        yield b"".join(parts)
        total -= k


def id_chunks(first, points):
    step = CHUNK // 8
    for a in range(first, first + points, step):
        yield array.array("Q", range(a, min(a + step, first + points))).tobytes()


PAYLOAD_RUN = 16  # lines copied together from the pool


def _payload_runs(points, seed):
    """(start line, line count) runs that make up a segment's payload file."""
    pool, _ = _payload_pool()
    rnd = random.Random(seed)
    n = len(pool)
    left = points
    while left > 0:
        k = min(PAYLOAD_RUN, left)
        yield rnd.randrange(n - k + 1), k
        left -= k


def payload_plan(points, seed):
    """Size of the payload file for (points, seed) without generating it."""
    cum = _payload_cum()
    return sum(cum[i + k] - cum[i] for i, k in _payload_runs(points, seed))


def payload_chunks(points, seed):
    """JSON lines drawn from the payload pool (same sequence as payload_plan)."""
    blob = _payload_blob()
    cum = _payload_cum()
    parts = []
    size = 0
    for i, k in _payload_runs(points, seed):
        parts.append(blob[cum[i]:cum[i + k]])
        size += cum[i + k] - cum[i]
        if size >= CHUNK:
            yield b"".join(parts)
            parts = []
            size = 0
    if parts:
        yield b"".join(parts)


_PAYLOAD_BLOB = None
_PAYLOAD_CUM = None


def _payload_blob():
    global _PAYLOAD_BLOB
    if _PAYLOAD_BLOB is None:
        pool, _ = _payload_pool()
        _PAYLOAD_BLOB = b"".join(pool)
    return _PAYLOAD_BLOB


def _payload_cum():
    global _PAYLOAD_CUM
    if _PAYLOAD_CUM is None:
        pool, _ = _payload_pool()
        cum = [0]
        for line in pool:
            cum.append(cum[-1] + len(line))
        _PAYLOAD_CUM = cum
    return _PAYLOAD_CUM


VECTORS_MEMBER = "snapshot/files/vector_storage/vectors/chunk_0.mmap"
PAYLOAD_MEMBER = "snapshot/files/payload_storage/page_0.dat"
IDS_MEMBER = "snapshot/files/id_tracker/mappings.bin"
WAL_SIZE = 64 * 1024


def segment_json(dim, distance):
    return json.dumps({
        "version": QDRANT_VERSION,
        "config": {
            "vector_data": {"": {"size": dim, "distance": distance,
                                 "storage_type": "Mmap", "index": {"type": "plain", "options": {}},
                                 "quantization_config": None}},
            "sparse_vector_data": {},
            "payload_storage_type": {"type": "mmap"},
        },
    }, indent=2).encode()


def write_segment_tar(path, points, dim, distance, seed):
    """Writes one segment (nested tar) with `points` points; returns its size."""
    with open(path, "wb") as f:
        tw = TarWriter(f)
        tw.add_dir("snapshot")
        tw.add_dir("snapshot/files")
        tw.add_bytes("snapshot/files/segment.json", segment_json(dim, distance))
        tw.add_bytes("snapshot/files/version.info", QDRANT_VERSION.encode())
        tw.add_stream(VECTORS_MEMBER, points * dim * 4, vector_chunks(points, dim, seed))
        tw.add_bytes("snapshot/files/vector_storage/deleted/flags_a.dat",
                     b"\0" * ((points + 7) // 8))
        tw.add_stream(IDS_MEMBER, points * 8, id_chunks(0, points))
        tw.add_stream(PAYLOAD_MEMBER, payload_plan(points, seed), payload_chunks(points, seed))
        tw.add_bytes("snapshot/files/payload_index/config.json", b'{"indexed_fields":{}}')
        tw.add_bytes("snapshot/db_backup/meta/1", struct.pack("<QQ", 1, points))
        tw.add_bytes("snapshot/db_backup/private/1/CURRENT", b"MANIFEST-000005\n")
        tw.add_bytes("snapshot/payload_index_db_backup/meta/1", struct.pack("<QQ", 1, 0))
        tw.close()
    return os.path.getsize(path)


def segment_points(path, dim):
    """Points held by a segment tar (from its vector data)."""
    with tarfile.open(path, "r:") as t:
        for m in t:
            if m.name == VECTORS_MEMBER:
                return m.size // (dim * 4) if dim > 0 else 0
    return 0


def estimate_snapshot_size(points, dim, shards):
    _, avg = _payload_pool()
    per_point = dim * 4 + avg + 8 + 0.125
    fixed_per_shard = WAL_SIZE + 20 * 1024
    return fixed_per_shard * shards + 8 * 1024 + points * per_point


def points_for_size(size_bytes, dim, shards):
    _, avg = _payload_pool()
    per_point = dim * 4 + avg + 8 + 0.125
    fixed = (WAL_SIZE + 20 * 1024) * shards + 8 * 1024
    return max(0, int((size_bytes - fixed) / per_point))


# --------------------------------------------------------------------------
# Server state


def utc_from_ts(ts):
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc)


class Collection:
    def __init__(self, meta):
        self.meta = meta
        self.lock = threading.RLock()

    @property
    def name(self):
        return self.meta["name"]


class State:
    def __init__(self, root, peer_id, api_key, ro_key):
        self.root = os.path.abspath(root)
        self.snap_root = os.path.join(self.root, "snapshots")
        self.snap_tmp = os.path.join(self.snap_root, "tmp")
        self.storage = os.path.join(self.root, "storage")
        self.coll_root = os.path.join(self.storage, "collections")
        self.storage_tmp = os.path.join(self.storage, "tmp")
        for d in (self.snap_root, self.snap_tmp, os.path.join(self.snap_tmp, "upload"),
                  self.coll_root, self.storage_tmp):
            os.makedirs(d, exist_ok=True)
        self.api_key = api_key
        self.ro_key = ro_key
        self.lock = threading.RLock()
        self.collections = {}
        self.aliases = {}
        self.name_locks = {}
        self.births = {}  # (dev, ino) -> creation time (stand-in clock)
        self.faults = {}
        self.stall_until = 0.0
        self.time_offset = 0.0
        self.frozen_at = None
        self.uploads = []
        self.counters = {"creates": 0, "downloads": 0, "uploads": 0, "deletes": 0,
                         "recovers": 0, "full_creates": 0}
        self.peer_id = self._load_peer_id(peer_id)
        self._load_collections()

    def _load_peer_id(self, given):
        path = os.path.join(self.storage, "peer_id")
        if given is not None:
            pid = int(given)
        elif os.path.exists(path):
            with open(path) as f:
                pid = int(f.read().strip())
        else:
            pid = random.SystemRandom().randrange(10 ** 15, 10 ** 16)
        with open(path, "w") as f:
            f.write(str(pid))
        return pid

    def _load_collections(self):
        for name in os.listdir(self.coll_root):
            p = os.path.join(self.coll_root, name, "collection.json")
            if os.path.exists(p):
                with open(p) as f:
                    self.collections[name] = Collection(json.load(f))

    # clock --------------------------------------------------------------
    def now(self):
        if self.frozen_at is not None:
            return self.frozen_at
        return time.time() + self.time_offset

    # collections --------------------------------------------------------
    def coll_dir(self, name):
        return os.path.join(self.coll_root, name)

    def get(self, name):
        with self.lock:
            real = self.aliases.get(name, name)
            return self.collections.get(real)

    def save_meta(self, coll, directory=None):
        d = directory or self.coll_dir(coll.name)
        tmp = os.path.join(d, "collection.json.tmp")
        with open(tmp, "w") as f:
            json.dump(coll.meta, f)
        os.replace(tmp, os.path.join(d, "collection.json"))

    def new_meta(self, name, dim, distance, shard_number):
        return {
            "name": name, "dim": dim, "distance": distance, "shard_number": shard_number,
            "points_count": 0, "uuid": str(uuid.uuid4()), "segments": 0,
            "restored_from_sha256": None, "restores": 0,
        }

    def generate(self, name, points, dim, shard_number, distance):
        """Creates a collection with generated data (control API)."""
        meta = self.new_meta(name, dim, distance, shard_number)
        build = tempfile.mkdtemp(prefix="gen-%s-" % name, dir=self.storage_tmp)
        try:
            seed_base = random.SystemRandom().getrandbits(32)
            first = 0
            segs = 0
            for s in range(shard_number):
                n = points // shard_number + (1 if s < points % shard_number else 0)
                sdir = os.path.join(build, str(s))
                os.makedirs(os.path.join(sdir, "segments"))
                self._write_wal(sdir, seed_base + s)
                seg = os.path.join(sdir, "segments", str(uuid.uuid4()) + ".tar")
                write_segment_tar(seg, n, dim, distance, seed_base * 131 + s)
                first += n
                segs += 1
            meta["points_count"] = points
            meta["segments"] = segs
            coll = Collection(meta)
            self.save_meta(coll, build)
            self._install(name, build, coll)
            build = None
            return coll
        finally:
            if build is not None:
                shutil.rmtree(build, ignore_errors=True)

    def _write_wal(self, sdir, seed):
        wal = os.path.join(sdir, "wal")
        os.makedirs(wal, exist_ok=True)
        pool = _vec_pool()
        off = random.Random(seed).randrange(len(pool) - WAL_SIZE) & ~3
        with open(os.path.join(wal, "open-1"), "wb") as f:
            f.write(pool[off:off + WAL_SIZE])
        with open(os.path.join(wal, "first-index"), "wb") as f:
            f.write(struct.pack("<Q", 1))

    def _install(self, name, build, coll):
        """Atomically replaces the collection's data dir with `build`."""
        with self.lock:
            final = self.coll_dir(name)
            trash = None
            if os.path.exists(final):
                trash = final + ".old-" + uuid.uuid4().hex[:8]
                os.rename(final, trash)
            os.rename(build, final)
            old = self.collections.get(name)
            if old is not None:
                old.meta = coll.meta
            else:
                self.collections[name] = coll
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def delete_collection(self, name):
        with self.lock:
            coll = self.collections.pop(name, None)
            for a in [a for a, c in self.aliases.items() if c == name]:
                del self.aliases[a]
            d = self.coll_dir(name)
            trash = None
            if os.path.exists(d):
                trash = d + ".deleted-" + uuid.uuid4().hex[:8]
                os.rename(d, trash)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)
        return coll is not None

    def name_lock(self, name):
        """Serialises restores and creates per collection name (not global)."""
        with self.lock:
            lk = self.name_locks.get(name)
            if lk is None:
                lk = self.name_locks[name] = threading.RLock()
            return lk

    # snapshots ------------------------------------------------------------
    def record_birth(self, path, when=None):
        st = os.stat(path)
        with self.lock:
            self.births[(st.st_dev, st.st_ino)] = self.now() if when is None else when

    def describe(self, path, name):
        st = os.stat(path)
        with self.lock:
            born = self.births.get((st.st_dev, st.st_ino))
        if born is None:
            born = st.st_mtime
        d = {"name": name,
             "creation_time": utc_from_ts(born).strftime("%Y-%m-%dT%H:%M:%S"),
             "size": st.st_size}
        try:
            with open(path + ".checksum", "r") as f:
                d["checksum"] = f.read()
        except OSError:
            pass
        return d

    def store_file(self, tmp_archive, target_dir, name, digest):
        """Qdrant's store_file: checksum first, then <stem>.tmp, then rename."""
        os.makedirs(target_dir, exist_ok=True)
        final = os.path.join(target_dir, name)
        with open(final + ".checksum", "w") as f:
            f.write(digest)
        stem = os.path.splitext(final)[0]
        os.replace(tmp_archive, stem + ".tmp")
        os.replace(stem + ".tmp", final)
        return final

    def build_snapshot(self, coll, name):
        """Writes the collection archive into storage/tmp; returns (path, sha256)."""
        fd, arc = tempfile.mkstemp(prefix=name + "-arc-", dir=self.storage_tmp)
        self.record_birth(arc)
        h = hashlib.sha256()
        meta = coll.meta
        cdir = self.coll_dir(coll.name)
        try:
            with os.fdopen(fd, "wb") as f:
                tw = TarWriter(f, h)
                for s in range(meta["shard_number"]):
                    sdir = os.path.join(cdir, str(s))
                    tw.add_dir("%d" % s)
                    tw.add_dir("%d/segments" % s)
                    segdir = os.path.join(sdir, "segments")
                    for seg in sorted(os.listdir(segdir)) if os.path.isdir(segdir) else []:
                        tw.add_file("%d/segments/%s" % (s, seg), os.path.join(segdir, seg))
                    tw.add_dir("%d/wal" % s)
                    wal = os.path.join(sdir, "wal")
                    for w in sorted(os.listdir(wal)) if os.path.isdir(wal) else []:
                        tw.add_file("%d/wal/%s" % (s, w), os.path.join(wal, w))
                    tw.add_bytes("%d/replica_state.json" % s, json.dumps(
                        {"is_local": True, "this_peer_id": self.peer_id,
                         "peers": {str(self.peer_id): "Active"},
                         "peers_metadata": {}}).encode())
                    tw.add_bytes("%d/shard_config.json" % s, b'{"type":"ReplicaSet"}')
                tw.add_bytes("version.info", COLLECTION_VERSION.encode())
                tw.add_bytes("config.json", json.dumps(config_internal(meta), indent=2).encode())
                tw.add_bytes("shard_key_mapping.json", b"{}")
                tw.add_bytes("payload_index.json", b'{"schema":{}}')
                tw.close()
        except BaseException:
            try:
                os.unlink(arc)
            except OSError:
                pass
            raise
        return arc, h.hexdigest()


def config_params(meta):
    return {
        "vectors": {"size": meta["dim"], "distance": meta["distance"]},
        "shard_number": meta["shard_number"],
        "replication_factor": 1,
        "write_consistency_factor": 1,
        "on_disk_payload": True,
    }


def config_internal(meta):
    return {
        "params": config_params(meta),
        "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
                        "max_indexing_threads": 0, "on_disk": False},
        "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                             "default_segment_number": 0, "max_segment_size": None,
                             "memmap_threshold": None, "indexing_threshold": 20000,
                             "flush_interval_sec": 5, "max_optimization_threads": None},
        "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
        "quantization_config": None,
        "strict_mode_config": {"enabled": False},
        "uuid": meta.get("uuid"),
    }


# --------------------------------------------------------------------------
# Restore


ALLOWED_TAR_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.GNUTYPE_SPARSE}
TAR_TYPE_NAMES = {tarfile.SYMTYPE: "Symlink", tarfile.LNKTYPE: "Link", tarfile.CHRTYPE: "Char",
                  tarfile.BLKTYPE: "Block", tarfile.FIFOTYPE: "Fifo",
                  tarfile.CONTTYPE: "Continuous"}


def validate_archive(path):
    """Returns {name: TarInfo}; raises ApiError as Qdrant's validation does."""
    fsize = os.path.getsize(path)
    members = {}
    try:
        with tarfile.open(path, "r:") as t:
            for m in t:
                if m.type not in ALLOWED_TAR_TYPES:
                    kind = TAR_TYPE_NAMES.get(m.type, "Other(%d)" % m.type[0])
                    raise bad_input("Malformed snapshot, tar archive contains %s entry" % kind)
                if m.isreg() and m.offset_data + m.size > fsize:
                    raise tarfile.ReadError("truncated")
                members[m.name.rstrip("/")] = m
    except ApiError:
        raise
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError, ValueError):
        raise service_error("Failed to open snapshot archive, malformed format")
    return members


def restore_collection(state, name, archive, sha256):
    """Replaces (or creates) collection `name` from the snapshot at `archive`."""
    members = validate_archive(archive)
    scratch = tempfile.mkdtemp(prefix="col-%s-recovery-" % name, dir=state.snap_tmp)
    try:
        if "config.json" not in members or not members["config.json"].isreg():
            raise service_error("Can't read collection config due to No such file or directory "
                                "(os error 2) at %s/config.json" % scratch)
        with tarfile.open(archive, "r:") as t:
            try:
                cfg = json.loads(t.extractfile(members["config.json"]).read())
                params = cfg["params"]
                vec = params["vectors"]
                dim = int(vec["size"])
                distance = str(vec["distance"])
                shards = int(params.get("shard_number", 1))
            except (ValueError, KeyError, TypeError):
                raise service_error("Can't read collection config due to invalid format "
                                    "at %s/config.json" % scratch)
            for s in range(shards):
                if "%d/shard_config.json" % s not in members:
                    raise service_error("Can't read shard config at %s/%d" % (scratch, s))
            coll = state.get(name)
            if coll is not None:
                m = coll.meta
                if (m["dim"], m["distance"], m["shard_number"]) != (dim, distance, shards):
                    raise bad_input(
                        "Snapshot is not compatible with existing collection: Collection "
                        "config is not compatible: vectors {size: %d, distance: %s}, "
                        "shard_number %d in snapshot vs vectors {size: %d, distance: %s}, "
                        "shard_number %d in collection"
                        % (dim, distance, shards, m["dim"], m["distance"], m["shard_number"]))
            build = os.path.join(scratch, "collection")
            points = 0
            segs = 0
            for s in range(shards):
                sdir = os.path.join(build, str(s))
                os.makedirs(os.path.join(sdir, "segments"))
                os.makedirs(os.path.join(sdir, "wal"))
                prefix_seg = "%d/segments/" % s
                prefix_wal = "%d/wal/" % s
                for mname, m in members.items():
                    if not m.isreg():
                        continue
                    if mname.startswith(prefix_seg) and mname.endswith(".tar") \
                            and "/" not in mname[len(prefix_seg):]:
                        dst = os.path.join(sdir, "segments", os.path.basename(mname))
                    elif mname.startswith(prefix_wal) and "/" not in mname[len(prefix_wal):]:
                        dst = os.path.join(sdir, "wal", os.path.basename(mname))
                    else:
                        continue
                    copy_range(archive, m.offset_data, m.size, dst)
                    if dst.endswith(".tar"):
                        try:
                            points += segment_points(dst, dim)
                        except (tarfile.TarError, OSError):
                            raise service_error("Failed to open snapshot archive, malformed format")
                        segs += 1
        new_meta = state.new_meta(name, dim, distance, shards)
        if coll is not None:
            new_meta["uuid"] = coll.meta["uuid"]
            new_meta["restores"] = coll.meta.get("restores", 0)
        new_meta["points_count"] = points
        new_meta["segments"] = segs
        new_meta["restored_from_sha256"] = sha256
        new_meta["restores"] += 1
        newc = Collection(new_meta)
        state.save_meta(newc, build)
        state._install(name, build, newc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def copy_range(src_path, offset, size, dst_path):
    """Copies size bytes at offset of src_path into a new file (kernel-side)."""
    with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
        left = size
        off = offset
        while left > 0:
            try:
                n = os.copy_file_range(src.fileno(), dst.fileno(), min(left, 1 << 30), off)
            except OSError:
                n = 0
            if n <= 0:  # not supported here: plain copy
                src.seek(off)
                while left > 0:
                    b = src.read(min(CHUNK, left))
                    if not b:
                        raise tarfile.ReadError("truncated member")
                    dst.write(b)
                    left -= len(b)
                break
            left -= n
            off += n


def hash_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Request bodies


class Body:
    """Reads a request body framed by Content-Length or chunked encoding."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        te = (headers.get("Transfer-Encoding") or "").lower()
        self.chunked = "chunked" in te
        self.left = 0 if self.chunked else int(headers.get("Content-Length") or 0)
        self.chunk_left = 0
        self.done = (not self.chunked) and self.left == 0

    def read(self, n=CHUNK):
        if self.done:
            return b""
        if not self.chunked:
            b = self.rfile.read(min(n, self.left))
            if not b:
                raise ConnectionError("client closed the connection mid-body")
            self.left -= len(b)
            if self.left == 0:
                self.done = True
            return b
        if self.chunk_left == 0:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers
                    t = self.rfile.readline(8192)
                    if not t or t in (b"\r\n", b"\n"):
                        break
                self.done = True
                return b""
            self.chunk_left = size
        b = self.rfile.read(min(n, self.chunk_left))
        if not b:
            raise ConnectionError("client closed the connection mid-body")
        self.chunk_left -= len(b)
        if self.chunk_left == 0:
            self.rfile.readline(16)  # CRLF after chunk data
        return b

    def read_all(self, limit=64 << 20):
        out = []
        total = 0
        while True:
            b = self.read()
            if not b:
                break
            total += len(b)
            if total > limit:
                raise ApiError(413, "Payload too large", "text")
            out.append(b)
        return b"".join(out)

    def drain(self):
        while not self.done:
            if not self.read():
                break


class MultipartError(Exception):
    pass


def parse_multipart_to_file(body, boundary, want_field, out_dir, hasher):
    """Streams a multipart body; the part named `want_field` goes to a temp file.

    Returns (tmp_path or None, filename or None, size).
    """
    delim = b"\r\n--" + boundary
    buf = b"\r\n"
    state = "preamble"
    sink = None
    tmp_path = None
    filename = None
    size = 0
    eof = False

    def more():
        nonlocal buf, eof
        b = body.read()
        if not b:
            eof = True
            return False
        buf += b
        return True

    try:
        while True:
            if state == "preamble":
                i = buf.find(delim)
                if i < 0:
                    buf = buf[-(len(delim) - 1):]
                    if not more():
                        raise MultipartError("Multipart stream is incomplete")
                    continue
                buf = buf[i + len(delim):]
                state = "after_delim"
            elif state == "after_delim":
                while len(buf) < 2:
                    if not more():
                        raise MultipartError("Multipart stream is incomplete")
                if buf[:2] == b"--":
                    break
                # tolerate transport padding then CRLF
                j = buf.find(b"\r\n")
                while j < 0:
                    if not more():
                        raise MultipartError("Multipart stream is incomplete")
                    j = buf.find(b"\r\n")
                buf = buf[j + 2:]
                state = "headers"
            elif state == "headers":
                j = buf.find(b"\r\n\r\n")
                if buf.startswith(b"\r\n"):
                    j = -2
                while j == -1:
                    if len(buf) > 65536 or not more():
                        raise MultipartError("Multipart stream is incomplete")
                    j = buf.find(b"\r\n\r\n")
                    if buf.startswith(b"\r\n"):
                        j = -2
                head = buf[:max(j, 0)].decode("utf-8", "replace")
                buf = buf[j + 4:]
                name = None
                fname = None
                for line in head.split("\r\n"):
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-disposition":
                        mn = re.search(r'(?:^|;)\s*name="([^"]*)"', v) or \
                            re.search(r"(?:^|;)\s*name=([^;\s]+)", v)
                        mf = re.search(r'filename="([^"]*)"', v) or \
                            re.search(r"filename=([^;\s]+)", v)
                        name = mn.group(1) if mn else None
                        fname = mf.group(1) if mf else None
                if name == want_field and sink is None:
                    fd, tmp_path = tempfile.mkstemp(prefix=".tmp", dir=out_dir)
                    sink = os.fdopen(fd, "wb")
                    filename = fname
                    active = True
                else:
                    active = False
                state = "data"
            elif state == "data":
                i = buf.find(delim)
                if i >= 0:
                    part, buf = buf[:i], buf[i + len(delim):]
                    state = "after_delim"
                else:
                    keep = len(delim) - 1
                    if len(buf) > keep:
                        part, buf = memoryview(buf)[:len(buf) - keep], buf[-keep:]
                    else:
                        part = b""
                if active and part:
                    sink.write(part)
                    hasher.update(part)
                    size += len(part)
                if state == "data" and not more():
                    raise MultipartError("Multipart stream is incomplete")
                if state == "after_delim" and active:
                    sink.close()
                    active = False
        if sink is not None and not sink.closed:
            sink.close()
        body.drain()
        return tmp_path, filename, size
    except BaseException:
        if sink is not None and not sink.closed:
            sink.close()
        if tmp_path is not None:
            try:
                os.unlink(tmp_path)
            except OSError:
                pass
        raise


# --------------------------------------------------------------------------
# HTTP handler


SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
INVALID_NAME_CHARS = ['<', '>', ':', '"', '/', '\\', '|', '?', '*', '\0', '\x1f']


def parse_bool(v):
    if v == "true":
        return True
    if v == "false":
        return False
    raise ApiError(400, "Deserialize error in query parameters: provided string was not "
                   "`true` or `false`", zero_time=True)


def check_name(name, field="collection_name"):
    if not (1 <= len(name) <= 255):
        raise ApiError(422, "Validation error in path parameters: [%s: must be from 1 to 255 "
                       "characters]" % field, zero_time=True)
    for c in INVALID_NAME_CHARS:
        if c in name:
            raise ApiError(422, 'Validation error in path parameters: [%s: collection name '
                           'cannot contain "%s" char]' % (field, c), zero_time=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qdrant-standin"
    state: State = None  # set on the class at startup

    # ------------------------------------------------------------ plumbing
    def log_message(self, fmt, *args):
        sys.stderr.write("%s standin %s\n" % (
            datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3],
            fmt % args))

    def _start(self, status, headers):
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.log_request(status)

    def _encoding(self):
        ae = self.headers.get("Accept-Encoding")
        if ae is None:
            return None
        offers = {}
        for item in ae.split(","):
            item = item.strip()
            if not item:
                continue
            parts = item.split(";")
            q = 1.0
            for p in parts[1:]:
                p = p.strip()
                if p.startswith("q="):
                    try:
                        q = float(p[2:])
                    except ValueError:
                        q = 0.0
            offers[parts[0].strip().lower()] = q
        for enc in ("gzip", "deflate"):
            if offers.get(enc, offers.get("*", 0.0)) > 0:
                return enc
        return None

    def _send(self, status, body, ctype=None, extra=(), compress=True):
        enc = self._encoding() if (compress and body) else None
        headers = list(extra)
        if ctype:
            headers.append(("Content-Type", ctype))
        if enc:
            headers += [("Content-Encoding", enc), ("Vary", "accept-encoding"),
                        ("Transfer-Encoding", "chunked")]
            self._start(status, headers)
            if self.command != "HEAD":
                comp = zlib.compressobj(6, zlib.DEFLATED, 31 if enc == "gzip" else 15)
                self._chunk(comp.compress(body))
                self._chunk(comp.flush())
                self.wfile.write(b"0\r\n\r\n")
        else:
            headers.append(("Content-Length", str(len(body))))
            self._start(status, headers)
            if self.command != "HEAD":
                self.wfile.write(body)

    def _chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")

    def send_json(self, status, obj):
        self._send(status, json.dumps(obj, separators=(",", ":")).encode(), "application/json")

    def send_ok(self, result, t0):
        self.send_json(200, {"result": result, "status": "ok", "time": time.time() - t0})

    def send_accepted(self, t0):
        self.send_json(202, {"status": "accepted", "time": time.time() - t0})

    def send_api_error(self, e, t0):
        if e.kind == "json":
            self.send_json(e.status, {"status": {"error": e.msg},
                                      "time": 0.0 if e.zero_time else time.time() - t0})
        elif e.kind == "text":
            self._send(e.status, e.msg.encode(), "text/plain; charset=utf-8")
        elif e.kind == "bare":
            self._send(e.status, e.msg.encode(), None)
        else:
            self._send(e.status, b"", None)

    # ------------------------------------------------------------ dispatch
    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_OPTIONS(self):
        self._dispatch()

    def _dispatch(self):
        t0 = time.time()
        split = urllib.parse.urlsplit(self.path)
        raw = split.path
        self.query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        self.body = Body(self.rfile, self.headers)
        segs = [urllib.parse.unquote(s) for s in raw.split("/")[1:]]
        control = raw.startswith("/__standin/")
        try:
            if not control:
                self._maybe_stall()
                self.access = self._authenticate(raw)
            route = self._route(self.command, segs, control)
            if route is None:
                raise ApiError(404, "", "empty")
            fn, args = route
            fn(t0, *args)
        except ApiError as e:
            self.send_api_error(e, t0)
        except (ConnectionError, BrokenPipeError, socket.timeout):
            self.close_connection = True
            return
        except Exception as e:  # a bug in the stand-in: answer 500 and log it
            import traceback
            traceback.print_exc()
            self.send_api_error(service_error("stand-in internal error: %s" % e), t0)
        try:
            self.body.drain()
        except Exception:
            self.close_connection = True

    def _maybe_stall(self):
        st = self.state
        while True:
            with st.lock:
                until = st.stall_until
            now = time.time()
            if now >= until:
                return
            time.sleep(min(0.1, until - now))

    def _authenticate(self, raw):
        st = self.state
        if st.api_key is None and st.ro_key is None:
            return "rw"
        if raw == "/" or raw == "/healthz" or raw.startswith("/readyz") \
                or raw.startswith("/livez"):
            return "rw"
        key = self.headers.get("api-key")
        if key is None:
            auth = self.headers.get("Authorization")
            if auth is not None and auth.startswith("Bearer "):
                key = auth[len("Bearer "):]
        if key is None:
            raise ApiError(401, "Must provide an API key or an Authorization bearer token", "bare")
        kb = key.encode("utf-8", "surrogateescape")
        if st.api_key is not None and hmac.compare_digest(kb, st.api_key.encode()):
            return "rw"
        if st.ro_key is not None and hmac.compare_digest(kb, st.ro_key.encode()):
            return "ro"
        raise ApiError(401, "Invalid API key or JWT", "bare")

    def _route(self, m, s, control):
        n = len(s)
        if control:
            s = s[1:]
            n = len(s)
            if n == 1 and s[0] == "collections" and m == "POST":
                return self.c_create_collection, ()
            if n == 2 and s[0] == "collections" and m == "DELETE":
                return self.c_delete_collection, (s[1],)
            if n == 1 and s[0] == "faults":
                if m == "POST":
                    return self.c_set_faults, ()
                if m == "DELETE":
                    return self.c_clear_faults, ()
                if m == "GET":
                    return self.c_get_faults, ()
            if n == 1 and s[0] == "state" and m == "GET":
                return self.c_state, ()
            if n == 1 and s[0] == "time" and m == "POST":
                return self.c_time, ()
            return None
        if m == "GET" and n == 1 and s[0] == "":
            return self.h_root, ()
        if m == "GET" and n == 1 and s[0] in ("healthz", "livez"):
            return self.h_healthz, ()
        if m == "GET" and n == 1 and s[0] == "readyz":
            return self.h_readyz, ()
        if m == "GET" and n == 1 and s[0] == "metrics":
            return self.h_metrics, ()
        if n == 2 and s[0] == "collections" and s[1] == "aliases" and m == "POST":
            return self.h_update_aliases, ()
        if n == 1 and s[0] == "aliases" and m == "GET":
            return self.h_list_aliases, (None,)
        if n == 3 and s[0] == "collections" and s[2] == "aliases" and m == "GET":
            return self.h_list_aliases, (s[1],)
        if n >= 1 and s[0] == "collections":
            if n == 1 and m == "GET":
                return self.h_list_collections, ()
            if n == 2:
                if m == "GET":
                    return self.h_get_collection, (s[1],)
                if m == "PUT":
                    return self.h_put_collection, (s[1],)
                if m == "DELETE":
                    return self.h_delete_collection, (s[1],)
            if n == 3 and s[2] == "exists" and m == "GET":
                return self.h_exists, (s[1],)
            if n == 3 and s[2] == "snapshots":
                if m == "POST":
                    return self.h_create_snapshot, (s[1],)
                if m == "GET":
                    return self.h_list_snapshots, (s[1],)
            if n == 4 and s[2] == "snapshots":
                if s[3] == "upload" and m == "POST":
                    return self.h_upload, (s[1],)
                if s[3] == "recover" and m == "PUT":
                    return self.h_recover, (s[1],)
                if m == "GET":
                    return self.h_download, (s[1], s[3])
                if m == "DELETE":
                    return self.h_delete_snapshot, (s[1], s[3])
        if n >= 1 and s[0] == "snapshots":
            if n == 1 and m == "POST":
                return self.h_full_create, ()
            if n == 1 and m == "GET":
                return self.h_full_list, ()
            if n == 2 and m == "GET":
                return self.h_full_download, (s[1],)
            if n == 2 and m == "DELETE":
                return self.h_full_delete, (s[1],)
        return None

    # ------------------------------------------------------------ helpers
    def q(self, name):
        v = self.query.get(name)
        return v[-1] if v else None

    def wait_param(self):
        v = self.q("wait")
        return True if v is None else parse_bool(v)

    def need_manage(self):
        if self.access != "rw":
            raise forbidden_manage()

    def run_op(self, t0, wait, op):
        """Qdrant's time_or_accept: the op always runs; wait=false answers 202."""
        if wait:
            self.send_ok(op(), t0)
            return

        def bg():
            try:
                op()
            except ApiError as e:
                if e.status >= 500:
                    self.log_message("background operation failed: %s", e.msg)
            except Exception as e:
                self.log_message("background operation failed: %r", e)

        threading.Thread(target=bg, daemon=True).start()
        self.send_accepted(t0)

    def json_body(self):
        data = self.body.read_all()
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(400, "Format error in JSON body: Content type error", zero_time=True)
        try:
            return json.loads(data or b"null")
        except ValueError as e:
            raise ApiError(400, "Format error in JSON body: %s" % e, zero_time=True)

    # ------------------------------------------------------------ service
    def h_root(self, t0):
        self.send_json(200, {"title": "qdrant - vector search engine", "version": QDRANT_VERSION,
                             "commit": "80bfc03aa0daef98709cd0c95fdf90f62c4f83d5"})

    def h_healthz(self, t0):
        self._send(200, b"healthz check passed", "text/plain; charset=utf-8")

    def h_readyz(self, t0):
        with self.state.lock:
            bad = self.state.faults.get("readyz_503")
        if bad:
            self._send(503, b"some shards are not ready", "text/plain; charset=utf-8")
        else:
            self._send(200, b"all shards are ready", "text/plain; charset=utf-8")

    def h_metrics(self, t0):
        st = self.state
        with st.lock:
            n = len(st.collections)
            vecs = sum(c.meta["points_count"] for c in st.collections.values())
        text = ("# HELP app_info information about qdrant server\n# TYPE app_info gauge\n"
                'app_info{name="qdrant",version="%s"} 1\n'
                "# HELP app_status_recovery_mode features enabled in qdrant server\n"
                "# TYPE app_status_recovery_mode gauge\napp_status_recovery_mode 0\n"
                "# HELP collections_total number of collections\n"
                "# TYPE collections_total gauge\ncollections_total %d\n"
                "# HELP collections_vector_total total number of vectors in all collections\n"
                "# TYPE collections_vector_total gauge\ncollections_vector_total %d\n"
                % (QDRANT_VERSION, n, vecs))
        self._send(200, text.encode(), "text/plain; version=0.0.4")

    # ------------------------------------------------------------ collections
    def h_list_collections(self, t0):
        with self.state.lock:
            names = list(self.state.collections.keys())
        random.shuffle(names)  # HashMap order
        self.send_ok({"collections": [{"name": x} for x in names]}, t0)

    def h_exists(self, t0, name):
        self.send_ok({"exists": self.state.get(name) is not None}, t0)

    def h_get_collection(self, t0, name):
        coll = self.state.get(name)
        if coll is None:
            raise not_found_collection(name)
        m = coll.meta
        cfg = config_internal(m)
        cfg.pop("uuid", None)
        info = {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,
            "points_count": m["points_count"],
            "segments_count": max(1, m.get("segments", 1)),
            "config": cfg,
            "payload_schema": {},
        }
        self.send_ok(info, t0)

    def h_put_collection(self, t0, name):
        check_name(name)
        body = self.json_body()
        wait = self.wait_param()
        if not isinstance(body, dict) or not isinstance(body.get("vectors"), dict) \
                or "size" not in body["vectors"] or "distance" not in body["vectors"]:
            raise ApiError(400, "Format error in JSON body: missing field `vectors`",
                           zero_time=True)
        st = self.state

        def op():
            self.need_manage()
            with st.lock:
                if st.get(name) is not None:
                    raise ApiError(409, "Wrong input: Collection `%s` already exists!" % name)
                st.generate(name, 0, int(body["vectors"]["size"]),
                            int(body.get("shard_number") or 1), str(body["vectors"]["distance"]))
            return True

        self.run_op(t0, wait, op)

    def h_delete_collection(self, t0, name):
        wait = self.wait_param()
        st = self.state

        def op():
            self.need_manage()
            return st.delete_collection(name)

        self.run_op(t0, wait, op)

    def h_update_aliases(self, t0):
        body = self.json_body()
        wait = self.wait_param()
        if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
            raise ApiError(400, "Format error in JSON body: missing field `actions`",
                           zero_time=True)
        st = self.state

        def op():
            self.need_manage()
            with st.lock:
                aliases = dict(st.aliases)
                for a in body["actions"]:
                    if "create_alias" in a:
                        c = a["create_alias"]["collection_name"]
                        al = a["create_alias"]["alias_name"]
                        if c not in st.collections:
                            raise not_found_collection(c)
                        if al in st.collections:
                            raise ApiError(409, "Wrong input: Collection `%s` already exists!"
                                           % al)
                        aliases[al] = c
                    elif "delete_alias" in a:
                        al = a["delete_alias"]["alias_name"]
                        if al not in aliases:
                            raise ApiError(404, "Not found: Alias %s not found" % al)
                        del aliases[al]
                    elif "rename_alias" in a:
                        old = a["rename_alias"]["old_alias_name"]
                        if old not in aliases:
                            raise ApiError(404, "Not found: Alias %s not found" % old)
                        aliases[a["rename_alias"]["new_alias_name"]] = aliases.pop(old)
                st.aliases = aliases
            return True

        self.run_op(t0, wait, op)

    def h_list_aliases(self, t0, name):
        st = self.state
        if name is not None and st.get(name) is None:
            raise not_found_collection(name)
        with st.lock:
            out = [{"alias_name": a, "collection_name": c} for a, c in st.aliases.items()
                   if name is None or c == name]
        self.send_ok({"aliases": out}, t0)

    # ------------------------------------------------------------ snapshots
    def h_create_snapshot(self, t0, name):
        wait = self.wait_param()

        def op():
            return self.create_snapshot(name)

        self.run_op(t0, wait, op)

    def create_snapshot(self, name):
        st = self.state
        self.need_manage()
        os.makedirs(os.path.join(st.snap_root, name), exist_ok=True)
        coll = st.get(name)
        if coll is None:
            raise not_found_collection(name)
        with st.lock:
            st.counters["creates"] += 1
            delay = st.faults.get("create_delay_s", 0)
            fail = st.faults.get("fail_creates", 0)
            if fail:
                st.faults["fail_creates"] = fail - 1
        if delay:
            time.sleep(delay)
        with st.name_lock(coll.name):
            ts = utc_from_ts(st.now()).strftime("%Y-%m-%d-%H-%M-%S")
            snap = "%s-%d-%s.snapshot" % (coll.name, st.peer_id, ts)
            if fail:
                raise service_error(
                    "failed to store snapshot archive to %s/%s-arc-%s: No space left on device "
                    "(os error 28)" % ("./storage/tmp", snap, uuid.uuid4().hex[:6]))
            arc, digest = st.build_snapshot(coll, snap)
            target = os.path.join(st.snap_root, coll.name)
            final = st.store_file(arc, target, snap, digest)
            t = st.now()
            os.utime(final, (t, t))
            return st.describe(final, snap)

    def h_list_snapshots(self, t0, name):
        st = self.state
        coll = st.get(name)
        if coll is None:
            raise not_found_collection(name)
        d = os.path.join(st.snap_root, coll.name)
        out = []
        if os.path.isdir(d):
            with os.scandir(d) as it:
                for e in it:
                    if e.is_file() and os.path.splitext(e.name)[1] == ".snapshot":
                        try:
                            out.append(st.describe(e.path, e.name))
                        except FileNotFoundError:
                            pass
        self.send_ok(out, t0)

    def resolve_snapshot(self, directory, dir_label, snap, kind):
        """Qdrant's get_snapshot_path: canonicalize, must stay inside, be a file."""
        if not os.path.isdir(directory):
            raise ApiError(404, "Not found: Snapshot directory: %s not found" % dir_label, kind)
        base = os.path.realpath(directory)
        path = os.path.realpath(os.path.join(base, snap))
        if not path.startswith(base + os.sep) or not os.path.isfile(path):
            raise ApiError(404, "Not found: Snapshot %s not found" % snap, kind)
        return path

    def h_download(self, t0, name, snap):
        st = self.state
        coll = st.get(name)
        if coll is None:
            raise not_found_collection(name, "text")
        path = self.resolve_snapshot(os.path.join(st.snap_root, coll.name),
                                     "./snapshots/" + coll.name, snap, "text")
        self.serve_file(path)

    def serve_file(self, path):
        st = self.state
        try:
            f = open(path, "rb")
        except FileNotFoundError as e:
            raise ApiError(404, "File not found: %s" % e, "text")
        with f:
            fst = os.fstat(f.fileno())
            size = fst.st_size
            name = os.path.basename(path)
            etag = '"%x:%x:%x:%x"' % (fst.st_ino, size, int(fst.st_mtime),
                                      fst.st_mtime_ns % 1000000000)
            headers = [("Content-Disposition", 'attachment; filename="%s"' % name),
                       ("Last-Modified", email.utils.formatdate(fst.st_mtime, usegmt=True)),
                       ("ETag", etag), ("Accept-Ranges", "bytes")]
            pre = self.precondition(etag, int(fst.st_mtime))
            if pre is not None:
                self._start(pre, headers + [("Content-Length", "0")])
                return
            start, end = 0, size - 1
            status = 200
            rng = self.headers.get("Range")
            if rng is not None:
                r = parse_range(rng, size)
                if r is None:
                    self._start(416, headers + [("Content-Range", "bytes */%d" % size),
                                                ("Content-Length", "0")])
                    return
                start, end = r
                status = 206
                headers.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
                if self.headers.get("Accept-Encoding") is not None:
                    headers.append(("Content-Encoding", "identity"))
            with st.lock:
                st.counters["downloads"] += 1
                cut = st.faults.pop("cut_download_after", None)
                flip = st.faults.pop("flip_byte", False)
            length = end - start + 1 if size > 0 else 0
            enc = self._encoding() if status == 200 and length > 0 else None
            headers.append(("Content-Type", "application/octet-stream"))
            if enc:
                headers += [("Content-Encoding", enc), ("Vary", "accept-encoding"),
                            ("Transfer-Encoding", "chunked")]
            else:
                headers.append(("Content-Length", str(length)))
            self._start(status, headers)
            if self.command == "HEAD":
                return
            flip_at = start + length // 2 if (flip and length > 0) else -1
            comp = zlib.compressobj(6, zlib.DEFLATED, 31 if enc == "gzip" else 15) if enc else None
            f.seek(start)
            pos = start
            sent = 0
            while pos <= end:
                b = f.read(min(CHUNK, end - pos + 1))
                if not b:
                    break
                if flip_at >= 0 and pos <= flip_at < pos + len(b):
                    ba = bytearray(b)
                    ba[flip_at - pos] ^= 0x01
                    b = bytes(ba)
                if cut is not None and sent + len(b) > cut:
                    b = b[:max(0, cut - sent)]
                    if comp is not None:
                        self._chunk(comp.compress(b) + comp.flush(zlib.Z_SYNC_FLUSH))
                    else:
                        self.wfile.write(b)
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if comp is not None:
                    self._chunk(comp.compress(b))
                else:
                    self.wfile.write(b)
                sent += len(b)
                pos += len(b)
            if comp is not None:
                self._chunk(comp.flush())
                self.wfile.write(b"0\r\n\r\n")

    def precondition(self, etag, mtime):
        """actix-files conditional requests: 412 or 304, else None."""
        im = self.headers.get("If-Match")
        if im is not None:
            tags = [t.strip() for t in im.split(",")]
            if "*" not in tags and etag not in tags:
                return 412
        elif self.headers.get("If-Unmodified-Since") is not None:
            since = parse_http_date(self.headers.get("If-Unmodified-Since"))
            if since is not None and mtime > since:
                return 412
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            if "*" in tags or etag in tags:
                return 304
        elif self.headers.get("If-Modified-Since") is not None:
            since = parse_http_date(self.headers.get("If-Modified-Since"))
            if since is not None and mtime <= since:
                return 304
        return None

    def h_delete_snapshot(self, t0, name, snap):
        wait = self.wait_param()
        st = self.state

        def op():
            self.need_manage()
            coll = st.get(name)
            if coll is None:
                raise not_found_collection(name)
            path = self.resolve_snapshot(os.path.join(st.snap_root, coll.name),
                                         "./snapshots/" + coll.name, snap, "json")
            os.unlink(path)
            try:
                os.unlink(path + ".checksum")
            except FileNotFoundError:
                pass
            with st.lock:
                st.counters["deletes"] += 1
            return True

        self.run_op(t0, wait, op)

    # ------------------------------------------------------------ upload
    def h_upload(self, t0, name):
        st = self.state
        check_name(name)
        ctype = self.headers.get("Content-Type")
        if ctype is None:
            raise ApiError(400, "Could not find Content-Type header", "text")
        mtype, _, rest = ctype.partition(";")
        mtype = mtype.strip().lower()
        if not mtype.startswith("multipart/"):
            raise ApiError(415, 'Parsed Content-Type did not have "multipart" top-level media '
                           "type", "text")
        if mtype != "multipart/form-data":
            raise ApiError(415, "Content-Type is not multipart/form-data", "text")
        wait = self.wait_param()
        prio = self.q("priority")
        if prio is not None and prio not in ("no_sync", "snapshot", "replica"):
            raise ApiError(400, "Deserialize error in query parameters: unknown variant `%s`, "
                           "expected one of `no_sync`, `snapshot`, `replica`" % prio,
                           zero_time=True)
        checksum = self.q("checksum")
        if checksum is not None and not SHA_RE.match(checksum):
            if len(checksum) != 64:
                detail = ('Validation error: invalid_sha256_hash [{"expected_length": '
                          'Number(64), "length": Number(%d)}]' % len(checksum))
            else:
                detail = "invalid characters, expected 0-9, a-f, A-F"
            raise ApiError(422, "Validation error in query parameters: [checksum: %s]" % detail,
                           zero_time=True)
        m = re.search(r'boundary="([^"]+)"', rest) or re.search(r"boundary=([^;\s]+)", rest)
        if not m:
            raise ApiError(400, "Multipart boundary is not found", "text")
        boundary = m.group(1).encode()
        h = hashlib.sha256()
        updir = os.path.join(st.snap_tmp, "upload")
        os.makedirs(updir, exist_ok=True)
        try:
            tmp, fname, size = parse_multipart_to_file(self.body, boundary, "snapshot", updir, h)
        except MultipartError as e:
            raise ApiError(400, str(e), "text")
        if tmp is None:
            raise ApiError(400, "Required field is missing: snapshot", "text")
        st.record_birth(tmp)
        digest = h.hexdigest()
        rec = {"collection": name, "filename": fname, "sha256": digest, "size": size,
               "checksum_param": checksum, "priority": prio, "wait": wait, "status": None}
        with st.lock:
            st.counters["uploads"] += 1
            st.uploads.append(rec)
            nfail = st.faults.get("fail_uploads", 0)
            if nfail:
                st.faults["fail_uploads"] = nfail - 1
            fstatus = st.faults.get("upload_status", 400)

        def op():
            try:
                self.need_manage()
                if nfail:
                    if fstatus == 400:
                        raise bad_input("Snapshot is not compatible with existing collection: "
                                        "Collection parameters differ (injected fault)")
                    if fstatus == 409:
                        raise ApiError(409, "Wrong input: Collection `%s` already exists!" % name)
                    if fstatus < 500:
                        raise ApiError(fstatus, "Bad request: injected upload failure")
                    err = service_error("Failed to restore snapshot (injected fault)")
                    err.status = fstatus
                    raise err
                if checksum is not None and checksum.strip().lower() != digest:
                    raise ApiError(400, "Checksum mismatch: expected %s, actual %s"
                                   % (digest, checksum))
                base = os.path.basename(fname) if fname else ""
                if not base or base in (".", ".."):
                    base = str(uuid.uuid4())
                target_dir = os.path.join(st.snap_root, name)
                os.makedirs(target_dir, exist_ok=True)
                dst = os.path.join(target_dir, base)
                os.replace(tmp, dst)
                with st.name_lock(name):
                    restore_collection(st, name, dst, digest)
                rec["status"] = 200
                return True
            except ApiError as e:
                rec["status"] = e.status
                raise
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

        self.run_op(t0, wait, op)

    # ------------------------------------------------------------ recover
    def h_recover(self, t0, name):
        st = self.state
        body = self.json_body()
        wait = self.wait_param()
        if not isinstance(body, dict) or "location" not in body:
            raise ApiError(400, "Format error in JSON body: missing field `location`",
                           zero_time=True)
        loc = body["location"]
        url = urllib.parse.urlsplit(loc) if isinstance(loc, str) else None
        if url is None or not url.scheme or not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", loc):
            raise ApiError(400, "Format error in JSON body: location: relative URL without a "
                           "base", zero_time=True)
        prio = body.get("priority")
        if prio is not None and prio not in ("no_sync", "snapshot", "replica"):
            raise ApiError(400, "Format error in JSON body: priority: unknown variant `%s`, "
                           "expected one of `no_sync`, `snapshot`, `replica`" % prio,
                           zero_time=True)
        checksum = body.get("checksum")
        if checksum is not None and (not isinstance(checksum, str) or not SHA_RE.match(checksum)):
            raise ApiError(422, "Validation error in JSON body: [checksum: invalid_sha256_hash]",
                           zero_time=True)
        remote_key = body.get("api_key")

        def op():
            self.need_manage()
            scheme = url.scheme.lower()
            downloaded = None
            if scheme == "file":
                if url.netloc not in ("", "localhost"):
                    raise bad_request("Invalid snapshot URI, file path must be absolute or on "
                                      "localhost")
                path = urllib.parse.unquote(url.path)
                if not os.path.exists(path):
                    raise bad_request('Snapshot file "%s" does not exist' % path)
                digest = hash_file(path)
            elif scheme in ("http", "https"):
                path, digest = self.download_remote(loc, remote_key)
                downloaded = path
            else:
                raise bad_request("URL %s with schema %s is not supported" % (loc, scheme))
            try:
                if checksum is not None and checksum.strip().lower() != digest:
                    raise bad_input("Snapshot checksum mismatch: expected %s, got %s"
                                    % (checksum, digest))
                with st.name_lock(name):
                    restore_collection(st, name, path, digest)
                with st.lock:
                    st.counters["recovers"] += 1
            finally:
                if downloaded is not None:
                    try:
                        os.unlink(downloaded)
                    except OSError:
                        pass
            return True

        self.run_op(t0, wait, op)

    def download_remote(self, loc, remote_key):
        st = self.state
        u = urllib.parse.urlsplit(loc)
        base = os.path.basename(u.path) or "snapshot"
        fd, path = tempfile.mkstemp(prefix=base + "-", suffix=".download", dir=st.snap_tmp)
        h = hashlib.sha256()
        try:
            cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
            conn = cls(u.hostname, u.port, timeout=600)
            target = u.path or "/"
            if u.query:
                target += "?" + u.query
            headers = {}
            if remote_key:
                headers["api-key"] = remote_key
            try:
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            except OSError as e:
                raise service_error("Failed to download snapshot from %s: %s" % (loc, e))
            if resp.status < 200 or resp.status >= 300:
                raise bad_input("Failed to download snapshot from %s: status - %d %s"
                                % (loc, resp.status, resp.reason))
            with os.fdopen(fd, "wb") as out:
                fd = None
                while True:
                    b = resp.read(CHUNK)
                    if not b:
                        break
                    h.update(b)
                    out.write(b)
            conn.close()
        except BaseException:
            if fd is not None:
                os.close(fd)
            os.unlink(path)
            raise
        return path, h.hexdigest()

    # ------------------------------------------------------------ full snapshots
    def h_full_create(self, t0):
        wait = self.wait_param()
        st = self.state

        def op():
            self.need_manage()
            with st.lock:
                names = list(st.collections.keys())
                st.counters["full_creates"] += 1
            ts = utc_from_ts(st.now()).strftime("%Y-%m-%d-%H-%M-%S")
            full = "full-snapshot-%s.snapshot" % ts
            work = tempfile.mkdtemp(prefix=full + "-", dir=st.storage_tmp)
            try:
                mapping = {}
                moved = []
                for c in names:
                    desc = self.create_snapshot(c)
                    src = os.path.join(st.snap_root, c, desc["name"])
                    dst = os.path.join(work, desc["name"])
                    os.replace(src, dst)  # the .checksum stays behind, as in Qdrant
                    mapping[c] = desc["name"]
                    moved.append(dst)
                with st.lock:
                    aliases = {a: c for a, c in st.aliases.items()}
                fd, arc = tempfile.mkstemp(prefix=full + "-arc-", dir=st.storage_tmp)
                st.record_birth(arc)
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as f:
                    tw = TarWriter(f, h)
                    for p in moved:
                        tw.add_file(os.path.basename(p), p)
                    tw.add_bytes("config.json", json.dumps(
                        {"collections_mapping": mapping, "collections_aliases": aliases}).encode())
                    tw.close()
                final = st.store_file(arc, st.snap_root, full, h.hexdigest())
                return st.describe(final, full)
            finally:
                shutil.rmtree(work, ignore_errors=True)

        self.run_op(t0, wait, op)

    def h_full_list(self, t0):
        st = self.state
        out = []
        with os.scandir(st.snap_root) as it:
            for e in it:
                if e.is_file() and os.path.splitext(e.name)[1] == ".snapshot":
                    out.append(st.describe(e.path, e.name))
        self.send_ok(out, t0)

    def h_full_download(self, t0, snap):
        st = self.state
        path = self.resolve_snapshot(st.snap_root, "./snapshots", snap, "text")
        self.serve_file(path)

    def h_full_delete(self, t0, snap):
        wait = self.wait_param()
        st = self.state

        def op():
            self.need_manage()
            path = self.resolve_snapshot(st.snap_root, "./snapshots", snap, "json")
            os.unlink(path)
            try:
                os.unlink(path + ".checksum")
            except FileNotFoundError:
                pass
            with st.lock:
                st.counters["deletes"] += 1
            return True

        self.run_op(t0, wait, op)

    # ------------------------------------------------------------ control API
    def c_json(self):
        data = self.body.read_all()
        try:
            v = json.loads(data or b"{}")
        except ValueError as e:
            raise ValueError("bad JSON: %s" % e)
        if not isinstance(v, dict):
            raise ValueError("JSON object expected")
        return v

    def c_reply(self, status, obj):
        self._send(status, json.dumps(obj).encode(), "application/json", compress=False)

    def c_create_collection(self, t0):
        st = self.state
        try:
            v = self.c_json()
            name = v["name"]
            if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
                raise ValueError("bad collection name")
            dim = int(v.get("dim", 128))
            shards = int(v.get("shard_number", 1))
            distance = str(v.get("distance", "Cosine"))
            if dim <= 0 or shards <= 0:
                raise ValueError("dim and shard_number must be positive")
            if v.get("size_mib") is not None:
                points = points_for_size(float(v["size_mib"]) * 1048576, dim, shards)
            else:
                points = int(v.get("points", 1000))
            if points < 0:
                raise ValueError("points must be >= 0")
        except (KeyError, ValueError, TypeError) as e:
            self.c_reply(400, {"error": "bad request: %s" % e})
            return
        except ApiError as e:
            self.c_reply(e.status, {"error": e.msg})
            return
        if st.get(name) is not None and not v.get("replace"):
            self.c_reply(409, {"error": "collection %s exists" % name})
            return
        t = time.time()
        coll = st.generate(name, points, dim, shards, distance)
        secs = time.time() - t
        self.c_reply(200, {"name": name, "points_count": coll.meta["points_count"], "dim": dim,
                           "shard_number": shards, "distance": distance,
                           "estimated_snapshot_bytes": int(estimate_snapshot_size(points, dim,
                                                                                  shards)),
                           "seconds": secs})

    def c_delete_collection(self, t0, name):
        st = self.state
        existed = st.delete_collection(name)
        shutil.rmtree(os.path.join(st.snap_root, name), ignore_errors=True)
        self.c_reply(200, {"deleted": existed})

    FAULT_KEYS = {"fail_creates": int, "create_delay_s": float, "cut_download_after": int,
                  "flip_byte": bool, "readyz_503": bool, "stall_s": float,
                  "fail_uploads": int, "upload_status": int}

    def c_set_faults(self, t0):
        st = self.state
        try:
            v = self.c_json()
            parsed = {}
            for k, val in v.items():
                if k not in self.FAULT_KEYS:
                    raise ValueError("unknown fault %s" % k)
                parsed[k] = self.FAULT_KEYS[k](val)
        except (ValueError, TypeError) as e:
            self.c_reply(400, {"error": str(e)})
            return
        except ApiError as e:
            self.c_reply(e.status, {"error": e.msg})
            return
        with st.lock:
            for k, val in parsed.items():
                if k == "stall_s":
                    st.stall_until = time.time() + val
                elif val is False or val == 0:
                    st.faults.pop(k, None)
                else:
                    st.faults[k] = val
            out = dict(st.faults)
        self.c_reply(200, {"faults": out})

    def c_get_faults(self, t0):
        with self.state.lock:
            out = dict(self.state.faults)
            out["stall_remaining_s"] = max(0.0, self.state.stall_until - time.time())
        self.c_reply(200, {"faults": out})

    def c_clear_faults(self, t0):
        with self.state.lock:
            self.state.faults.clear()
            self.state.stall_until = 0.0
        self.c_reply(200, {"faults": {}})

    def c_state(self, t0):
        st = self.state
        with st.lock:
            colls = {n: {"points_count": c.meta["points_count"], "dim": c.meta["dim"],
                         "distance": c.meta["distance"], "shard_number": c.meta["shard_number"],
                         "restored_from_sha256": c.meta.get("restored_from_sha256"),
                         "restores": c.meta.get("restores", 0)}
                     for n, c in st.collections.items()}
            out = {"collections": colls, "uploads": list(st.uploads),
                   "counters": dict(st.counters), "peer_id": st.peer_id,
                   "time_offset_s": st.time_offset, "storage": st.root}
        self.c_reply(200, out)

    def c_time(self, t0):
        try:
            v = self.c_json()
            off = float(v.get("offset_s", 0))
            freeze = v.get("freeze")
            if freeze is not None and not isinstance(freeze, bool):
                raise ValueError("freeze must be a boolean")
        except (ValueError, TypeError) as e:
            self.c_reply(400, {"error": str(e)})
            return
        st = self.state
        with st.lock:
            st.time_offset = off
            if freeze is True:
                st.frozen_at = None
                st.frozen_at = st.now()
            elif freeze is False:
                st.frozen_at = None
            frozen = st.frozen_at
        self.c_reply(200, {"offset_s": off, "frozen_at": frozen})


def parse_http_date(value):
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


def parse_range(value, size):
    """Single byte range like actix-files (first range only); None = 416."""
    if not value.startswith("bytes="):
        return None
    first = value[len("bytes="):].split(",")[0].strip()
    if "-" not in first:
        return None
    a, _, b = first.partition("-")
    a, b = a.strip(), b.strip()
    try:
        if a == "":
            n = int(b)
            if n <= 0 or size == 0:
                return None
            return max(0, size - n), size - 1
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        return None
    return start, min(end, size - 1)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True


def main(argv=None):
    ap = argparse.ArgumentParser(description="Qdrant v1.13.2 stand-in for tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--storage", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--api-key")
    ap.add_argument("--read-only-api-key")
    ap.add_argument("--peer-id")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))

    state = State(args.storage, args.peer_id, args.api_key, args.read_only_api_key)
    Handler.state = state
    srv = Server((args.host, args.port), Handler)
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    sys.stderr.write("qdrant stand-in listening on %s:%d storage %s peer %d\n"
                     % (args.host, port, state.root, state.peer_id))
    sys.stderr.flush()
    srv.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
