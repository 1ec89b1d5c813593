#!/usr/bin/python3
"""Qdrant v1.13.2 stand-in for qsnap's tests (Python standard library only).

Behaves like Qdrant 1.13.2 -- a single node, or one peer of a cluster -- in
everything qsnap can observe over REST: the JSON envelope, error codes and
messages, api-key/Bearer auth with the whitelist and the read-only key,
collection snapshots (create, list, download with ranges and compression,
delete, upload, recover), full-storage snapshots, streamed shard snapshots and
shard snapshot upload, collections (create from the flat PUT body, full info,
delete), payload indexes, aliases, points (upsert, scroll, retrieve, count),
GET /cluster, GET /collections/{c}/cluster and the service endpoints. Snapshot
files are real GNU tar archives with the v1.13 layout; the segment data is
realistic float32 vectors and JSON payloads, so compression measured on them
means something.

Usage, single node:
  qdrant_standin.py --port 0 --port-file FILE --storage DIR [--host 127.0.0.1]
                    [--api-key KEY] [--read-only-api-key KEY] [--peer-id N]
                    [--version 1.13.2]
Usage, one peer of a cluster (all peers share DIR; --bind is --host):
  qdrant_standin.py --cluster-dir DIR --peer N --bind 127.0.0.X --port P
                    [--p2p-port 6335] [--storage DIR/peer-N] [auth, --version]
  Every peer listens on the same port P on its own loopback address; its P2P
  uri in GET /cluster is http://127.0.0.X:<p2p-port>/ (nothing listens there).
  Exit status 98 when the address is taken. Peers can be killed (kill -9) and
  started again with the same command: same peer id, same data.
Launcher (shell):
  qdrant_standin.py --launch K --cluster-dir DIR [--port P] [auth, --version]
    starts peers 1..K on 127.0.0.2 .. 127.0.0.(K+1), waits until every peer
    lists K peers and a leader, prints one line per peer
      peer=N pid=PID url=http://127.0.0.X:P uri=http://127.0.0.X:6335/ peer_id=ID
    then "port=P leader=ID", and exits 0 (the peers keep running; logs in
    DIR/peer-N.log).
  qdrant_standin.py --stop-cluster DIR    SIGKILLs the peers of DIR.

Storage layout under DIR (per peer in cluster mode):
  snapshots/<collection>/      collection snapshots (+ .checksum sidecars)
  snapshots/                   full-storage snapshots
  snapshots/tmp/               upload, recovery and shard-stream scratch area
  storage/collections/<c>/     collection.json (single node) and one directory
                               per local replica: <shard>/segments/<uuid>.tar
                               (segments as nested tars, see "Segment layout")
                               and <shard>/wal/
  storage/aliases/data.json    aliases (single node)
  storage/tmp/                 snapshot archives being built
Cluster mode adds DIR/cluster.json, the consensus state every peer shares
(peers, leader, term, commit, collections with their shard placement and
replica states, shard transfers, aliases, settings), changed under an flock on
DIR/cluster.lock; shard data stays per peer, and peers move it between them
over the stand-in's internal API.

Control API (not part of Qdrant, no auth, JSON; on every peer):
  POST   /__standin/collections  {"name", "points", "dim", "shard_number",
                                  "distance", "size_mib"?, "replace"?,
                                  "replication_factor"?} generated data: point
                                 ids 0..points-1, id i in shard i % shard_number
  DELETE /__standin/collections/{c}
  POST   /__standin/faults       {"fail_creates", "create_delay_s",
                                  "cut_download_after", "flip_byte",
                                  "readyz_503", "stall_s", "fail_uploads",
                                  "upload_status", "cut_shard_stream_after",
                                  "cut_shard_stream_shard",
                                  "pause_shard_stream_after",
                                  "pause_shard_stream_s", "fail_shard_streams",
                                  "fail_shard_uploads", "index_delay_s",
                                  "drop_cluster"}
  GET    /__standin/faults
  DELETE /__standin/faults
  GET    /__standin/state
  DELETE /__standin/counters     sets every counter to 0
  POST   /__standin/time         {"offset_s": N, "freeze": bool?} shifts the
                                 clock used for snapshot names; freeze=true
                                 stops it (same-second collisions on demand)
  POST   /__standin/version      {"version": "1.12.4"} what GET / reports
  POST   /__standin/stop         {"resume_after_s": T?} this peer closes its
                                 listening socket and connections (refused, like
                                 a peer that is down) and pauses its consensus
                                 loop, for T seconds or for good
Cluster hooks (any peer; a peer is {"peer": N} (index) or {"peer_id": ID}):
  GET    /__standin/cluster      {"this_peer", "reachable", "settings", "view"}
  POST   /__standin/cluster/leader    {"peer": N} leader N, term + 1;
                                 {"peer": null}: no leader (leader 0,
                                 PreCandidate) until one is set
  POST   /__standin/cluster/replica   {"collection", "shard", "peer", "state",
                                 "pin"?} sets (adds; state null removes) a
                                 replica; pin (default true) keeps the simulated
                                 consensus from changing it
  POST   /__standin/cluster/transfer  {"collection", "shard", "from", "to",
                                 "method"? (stream_records), "sync"?} a transfer
                                 in progress: the receiver Partial
                                 (stream_records) or Recovery, pinned
  DELETE /__standin/cluster/transfer  {"collection", "shard", "outcome": "done" |
                                 "failed"} ends it: receiver Active, or Dead
                                 (then it recovers by itself)
  POST   /__standin/cluster/settings  {"activate_delay_s": 0.2,
                                 "dead_delay_s": 0.2, "transfer_delay_s": 0.5,
                                 "election_timeout_s": 1.0, "auto_elect": true,
                                 "transfer_method": "wal_delta"}

Fault semantics: fail_creates=N makes the next N snapshot creates answer 500;
create_delay_s delays every create; cut_download_after=K and flip_byte apply
to the next download only (the cut sends K body bytes after a full
Content-Length, then closes; the flip XORs the middle byte with 1);
readyz_503 makes /readyz answer 503; stall_s=T holds every non-control request
(after reading its head) until T seconds have passed; fail_uploads=N makes the
next N uploads fail with upload_status (default 400, a Qdrant-like message).
cut_shard_stream_after=K ends the next shard stream (of shard
cut_shard_stream_shard only, when set) after K tar bytes, with a clean chunked
end and HTTP 200, as a failure of Qdrant's writer task does (0 is allowed; -1
clears); pause_shard_stream_after=K and pause_shard_stream_s=T stall every
shard stream once after K bytes; fail_shard_streams=N answers the next N
shard streams 500 text/plain before any header; fail_shard_uploads=N fails the
next N shard uploads (after the existence checks) with upload_status (default
500); index_delay_s=T delays the build of every payload index by T seconds
(with wait=true the request waits); drop_cluster=true closes every GET
/cluster connection without an answer. Setting a fault to 0/false clears it.
/__standin/state reports collections (points_count of the local replicas, dim,
distance, shard_number, local_shards, restored_from_sha256, restores), uploads
(collection, filename, sha256, size, checksum_param, priority, wait, status;
shard uploads also "shard"), the version and counters: creates, downloads,
uploads, deletes, recovers, full_creates, shard_streams, shard_uploads and
bytes written --
  snapshot_files_bytes         snapshot files stored under snapshots/
                               (collection and full snapshots, with their
                               .checksum); with the snapshots on their own
                               volume, Qdrant's move from storage/tmp is a copy
  snapshot_tmp_stream_bytes    transient files of shard streams under
                               snapshots/tmp: each segment's RocksDB backups and
                               an empty WAL per shard, deleted at the end of
                               the stream (Qdrant writes them there unless
                               storage.temp_path is set)
  snapshot_tmp_restore_bytes   uploads spooled to snapshots/tmp/upload,
                               downloads of recover and unpacked restore data
  storage_tmp_bytes            collection snapshot archives built in storage/tmp

Cluster simulation (each peer's consensus thread, every 50 ms): Initializing
replicas of the peer become Active activate_delay_s after creation; a Dead,
unpinned replica of the peer recovers from an Active replica on a reachable
peer by a transfer (listed in shard_transfers, receiver in Recovery or Partial
per transfer_method) that copies the data after transfer_delay_s, then turns
Active; a leader that cannot be reached for election_timeout_s is replaced by
the reachable peer with the lowest index when the reachable peers are a
majority (else leader 0); data of collections and replicas the peer no longer
holds is removed. A peer is reachable when its REST port accepts connections.

Known differences from Qdrant 1.13.2 (simplifications):
- Compression offers gzip and deflate only (Qdrant would pick br or zstd when
  a client offers them); creation_time comes from the stand-in's clock at
  archive start, not the inode birth time (for files it did not create: the
  mtime).
- Point routing: id modulo shard_number (a UUID by its 128-bit value) instead
  of Qdrant's hash ring; shard placement breaks ties by peer index instead of a
  random bias; peers join by registering in cluster.json, and the bootstrap
  leader is peer 1 (the lowest index) until the first collection exists.
- Points: dense vectors only, every named vector required in an upsert (no
  sparse vectors, no search); filters support must/should/must_not with
  match value/any/except/text, range and has_id (others answer 400 naming the
  condition); write_consistency_factor and read consistency are not modelled.
- Segments: stored as the nested tars of a collection snapshot, with a
  stand-in layout (files/id_tracker/mappings.bin + uuid_mappings.json,
  vector_storage[-<name>]/vectors/chunk_0.mmap, payload_storage/page_0.dat as
  JSON lines, one deletion bitset); each upsert batch adds a segment and more
  than 8 small ones are merged. Segment version.info holds the Qdrant version.
- Shard streams: chunks of at most 4 KiB (as Qdrant's) written in batches; the
  empty WAL is a 64 KiB file of zeros (Qdrant generates a segment of
  wal_capacity_mb, sparse); no clock files. Uploads do not check the vector
  config against the collection (Qdrant does not either).
- Cluster: transfers copy the whole shard at the end of the transfer delay
  (no queue proxy forwarding during it); "comment" of a transfer is a fixed
  text; replica removal beyond replication_factor on collection recovery,
  shard keys (custom sharding) and resharding are not modelled;
  message_send_failures lists unreachable peers with count 1.
- A killed peer's replicas stay in their state (Active) until a write fails
  on them (then Dead), as in Qdrant; reads fail over to another replica.

Segment layout (nested tar, `snapshot/` prefix): files/segment.json (vector
names, sizes, distances), files/version.info, the files above, and
db_backup/, payload_index_db_backup/ (small RocksDB backup stand-ins), plus
files/payload_index/config.json {"indexed_fields": {field: schema}}: payload
indexes live in the segments, as GET /collections/{c} payload_schema reads them.

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
import base64
import bisect
import copy
import datetime
import email.utils
import errno
import fcntl
import hashlib
import hmac
import http.client
import http.server
import io
import json
import math
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
QDRANT_COMMIT = "80bfc03aa0daef98709cd0c95fdf90f62c4f83d5"
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

    def add_range(self, name, src, offset, size):
        """A member whose data is `size` bytes at `offset` of the open file `src`.

        When the archive goes to an unbuffered file and nothing hashes it, the
        data moves kernel-side (copy_file_range); otherwise through Python.
        """
        self._header(name, size)
        left = size
        if self.hasher is None and isinstance(self.f, io.FileIO):
            off = offset
            while left > 0:
                try:
                    n = os.copy_file_range(src.fileno(), self.f.fileno(), min(left, 1 << 30), off)
                except OSError:
                    n = 0
                if n <= 0:
                    break
                left -= n
                off += n
                self.written += n
            offset = off
        src.seek(offset)
        while left > 0:
            b = src.read(min(CHUNK, left))
            if not b:
                raise RuntimeError("tar member %s: source ended early" % name)
            self._w(b)
            left -= len(b)
        self._pad(size)

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


def id_chunks(first, points, stride=1):
    """Point ids first, first+stride, ... (points of them) as u64 blocks."""
    step = CHUNK // 8
    end = first + points * stride
    for a in range(first, end, step * stride):
        yield array.array("Q", range(a, min(a + step * stride, end), stride)).tobytes()


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


# Segment layout. A segment is stored as the nested tar Qdrant puts into a
# collection snapshot (`snapshot/...`). The members the stand-in reads:
#   files/segment.json                       vector names, sizes, distances
#   files/id_tracker/mappings.bin            u64 point id per position
#   files/id_tracker/uuid_mappings.json      {position: uuid} for UUID ids
#   files/vector_storage[-<name>]/vectors/chunk_0.mmap   float32 vectors
#   files/vector_storage/deleted/flags_a.dat bitset, 1 = point deleted
#   files/payload_storage/page_0.dat         one JSON object per line
#   files/payload_index/config.json          {"indexed_fields": {field: schema}}
# Segment files are immutable: a change writes a new file and renames it.
VECTORS_MEMBER = "snapshot/files/vector_storage/vectors/chunk_0.mmap"
PAYLOAD_MEMBER = "snapshot/files/payload_storage/page_0.dat"
IDS_MEMBER = "snapshot/files/id_tracker/mappings.bin"
UUIDS_MEMBER = "snapshot/files/id_tracker/uuid_mappings.json"
FLAGS_MEMBER = "snapshot/files/vector_storage/deleted/flags_a.dat"
SEGMENT_JSON_MEMBER = "snapshot/files/segment.json"
INDEX_CONFIG_MEMBER = "snapshot/files/payload_index/config.json"
SEGMENT_VERSION_MEMBER = "snapshot/files/version.info"
WAL_SIZE = 64 * 1024
MERGE_ABOVE_SEGMENTS = 8
MERGE_SEGMENT_MAX = 64 << 20


def vectors_member(name):
    if name == "":
        return VECTORS_MEMBER
    return "snapshot/files/vector_storage-%s/vectors/chunk_0.mmap" % name


def segment_json_vecs(vecs):
    """segment.json for vecs = {name: (size, distance)}."""
    return json.dumps({
        "version": QDRANT_VERSION,
        "config": {
            "vector_data": {n: {"size": d, "distance": dist, "storage_type": "Mmap",
                                "index": {"type": "plain", "options": {}},
                                "quantization_config": None}
                            for n, (d, dist) in sorted(vecs.items())},
            "sparse_vector_data": {},
            "payload_storage_type": {"type": "mmap"},
        },
    }, indent=2).encode()


def segment_json(dim, distance):
    return segment_json_vecs({"": (dim, distance)})


def index_config_bytes(indexed):
    return json.dumps({"indexed_fields": indexed or {}}, separators=(",", ":")).encode()


def flags_bytes(n, deleted):
    b = bytearray((n + 7) // 8)
    for pos in deleted:
        b[pos >> 3] |= 1 << (pos & 7)
    return bytes(b)


def _rocksdb_members(tw, points):
    tw.add_bytes("snapshot/db_backup/meta/1", struct.pack("<QQ", 1, points))
    tw.add_bytes("snapshot/db_backup/private/1/CURRENT", b"MANIFEST-000005\n")
    tw.add_bytes("snapshot/payload_index_db_backup/meta/1", struct.pack("<QQ", 1, 0))


def write_segment_tar(path, points, dim, distance, seed, first_id=0, id_stride=1,
                      indexed=None, mtime=None):
    """Writes one generated segment (nested tar) with `points` points; returns its size.

    Point ids are first_id, first_id+id_stride, ...; vectors and payloads are
    the realistic generated data (same seed, same bytes).
    """
    with open(path, "wb") as f:
        tw = TarWriter(f)
        if mtime is not None:
            tw.mtime = int(mtime)
        tw.add_dir("snapshot")
        tw.add_dir("snapshot/files")
        tw.add_bytes(SEGMENT_JSON_MEMBER, segment_json(dim, distance))
        tw.add_bytes(SEGMENT_VERSION_MEMBER, QDRANT_VERSION.encode())
        tw.add_stream(VECTORS_MEMBER, points * dim * 4, vector_chunks(points, dim, seed))
        tw.add_bytes(FLAGS_MEMBER, b"\0" * ((points + 7) // 8))
        tw.add_stream(IDS_MEMBER, points * 8, id_chunks(first_id, points, id_stride))
        tw.add_stream(PAYLOAD_MEMBER, payload_plan(points, seed), payload_chunks(points, seed))
        tw.add_bytes(INDEX_CONFIG_MEMBER, index_config_bytes(indexed))
        _rocksdb_members(tw, points)
        tw.close()
    return os.path.getsize(path)


def write_points_segment(path, entries, vecs, indexed):
    """Writes a segment holding entries = [(id, {name: float32 bytes}, payload line)]."""
    n = len(entries)
    with open(path, "wb") as f:
        tw = TarWriter(f)
        tw.add_dir("snapshot")
        tw.add_dir("snapshot/files")
        tw.add_bytes(SEGMENT_JSON_MEMBER, segment_json_vecs(vecs))
        tw.add_bytes(SEGMENT_VERSION_MEMBER, QDRANT_VERSION.encode())
        for name in sorted(vecs):
            tw.add_bytes(vectors_member(name), b"".join(e[1][name] for e in entries))
        tw.add_bytes(FLAGS_MEMBER, b"\0" * ((n + 7) // 8))
        ids = array.array("Q", [e[0] if isinstance(e[0], int) else 0 for e in entries])
        tw.add_bytes(IDS_MEMBER, ids.tobytes())
        uu = {str(i): e[0] for i, e in enumerate(entries) if isinstance(e[0], str)}
        if uu:
            tw.add_bytes(UUIDS_MEMBER, json.dumps(uu).encode())
        tw.add_bytes(PAYLOAD_MEMBER, b"".join(e[2] for e in entries))
        tw.add_bytes(INDEX_CONFIG_MEMBER, index_config_bytes(indexed))
        _rocksdb_members(tw, n)
        tw.close()


def rewrite_segment(path, replace):
    """Replaces (or adds) members of a segment tar: writes a new file, renames it.

    Unchanged members are copied kernel-side. Returns the new file's path.
    """
    tmp = os.path.join(os.path.dirname(path), ".%s.rewrite" % uuid.uuid4().hex)
    try:
        with open(path, "rb") as src, open(tmp, "wb", buffering=0) as dst:
            tw = TarWriter(dst)
            seen = set()
            with tarfile.open(path, "r:") as t:
                members = list(t)
            for m in members:
                tw.mtime = int(m.mtime)
                if m.isdir():
                    tw.add_dir(m.name)
                elif m.name in replace:
                    tw.add_bytes(m.name, replace[m.name])
                    seen.add(m.name)
                elif m.isreg():
                    tw.add_range(m.name, src, m.offset_data, m.size)
            for name, data in replace.items():
                if name not in seen:
                    tw.add_bytes(name, data)
            tw.close()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class SegmentError(Exception):
    pass


class SegmentInfo:
    """What the stand-in knows about one segment file (cached per file identity)."""

    def __init__(self, path, sig):
        self.path = path
        self.sig = sig
        self.order = []  # [(name, offset, size, type)] in archive order
        self.members = {}
        try:
            with tarfile.open(path, "r:") as t:
                for m in t:
                    self.order.append((m.name.rstrip("/"), m.offset_data, m.size, m.type))
                    if m.isreg():
                        self.members[m.name] = (m.offset_data, m.size)
        except (tarfile.TarError, EOFError, ValueError, UnicodeDecodeError) as e:
            raise SegmentError("Failed to load segment %s: %s" % (os.path.basename(path), e))
        fsize = sig[2]
        for off, size in self.members.values():
            if off + size > fsize:
                raise SegmentError("Failed to load segment %s: truncated"
                                   % os.path.basename(path))
        with open(path, "rb") as f:
            try:
                sj = json.loads(self._read(f, SEGMENT_JSON_MEMBER))
                vd = sj["config"]["vector_data"]
                self.vecs = {n: (int(v["size"]), str(v.get("distance"))) for n, v in vd.items()}
            except (KeyError, ValueError, TypeError, AttributeError):
                raise SegmentError("Failed to load segment %s: can't read segment.json"
                                   % os.path.basename(path))
            raw = self._read(f, IDS_MEMBER, b"")
            ids = array.array("Q")
            ids.frombytes(raw[:len(raw) - len(raw) % 8])
            self.n = len(ids)
            self.ids = ids.tolist()
            uu = self._read(f, UUIDS_MEMBER, None)
            if uu is not None:
                for k, v in json.loads(uu).items():
                    self.ids[int(k)] = v
            flags = self._read(f, FLAGS_MEMBER, b"")
            self.deleted = set()
            for bi, byte in enumerate(flags):
                if byte:
                    for k in range(8):
                        if byte >> k & 1 and bi * 8 + k < self.n:
                            self.deleted.add(bi * 8 + k)
            cfg = self._read(f, INDEX_CONFIG_MEMBER, None)
            try:
                self.indexed = json.loads(cfg).get("indexed_fields", {}) if cfg else {}
            except ValueError:
                self.indexed = {}
        for name, (dim, _) in self.vecs.items():
            m = self.members.get(vectors_member(name))
            if m is None or m[1] < self.n * dim * 4:
                raise SegmentError("Failed to load segment %s: vector storage of `%s` is "
                                   "incomplete" % (os.path.basename(path), name))
        self._lines = None
        self._counts = {}
        self.lock = threading.Lock()

    def _read(self, f, name, default=SegmentError):
        m = self.members.get(name)
        if m is None:
            if default is SegmentError:
                raise KeyError(name)
            return default
        f.seek(m[0])
        return f.read(m[1])

    @property
    def live(self):
        return self.n - len(self.deleted)

    def line_starts(self):
        """Offsets (within the payload member) of each payload line, plus the end."""
        with self.lock:
            if self._lines is None:
                off, size = self.members.get(PAYLOAD_MEMBER, (0, 0))
                starts = array.array("Q", [0])
                with open(self.path, "rb") as f:
                    f.seek(off)
                    pos = 0
                    left = size
                    while left > 0:
                        b = f.read(min(CHUNK, left))
                        if not b:
                            break
                        i = b.find(b"\n")
                        while i >= 0:
                            starts.append(pos + i + 1)
                            i = b.find(b"\n", i + 1)
                        pos += len(b)
                        left -= len(b)
                self._lines = starts
            return self._lines

    def payload_line(self, f, pos):
        starts = self.line_starts()
        if pos + 1 >= len(starts):
            return b"{}\n"
        off = self.members[PAYLOAD_MEMBER][0]
        f.seek(off + starts[pos])
        return f.read(starts[pos + 1] - starts[pos])

    def payload(self, f, pos):
        try:
            v = json.loads(self.payload_line(f, pos))
        except ValueError:
            return {}
        return v if isinstance(v, dict) else {}

    def vector_bytes(self, f, pos, name):
        dim = self.vecs[name][0]
        off = self.members[vectors_member(name)][0]
        f.seek(off + pos * dim * 4)
        return f.read(dim * 4)

    def index_points(self, field, itype):
        """Live points with at least one value of the index type at `field`."""
        key = (field, itype)
        with self.lock:
            if key in self._counts:
                return self._counts[key]
        n = 0
        with open(self.path, "rb") as f:
            for pos in range(self.n):
                if pos in self.deleted:
                    continue
                if any(value_has_type(v, itype) for v in payload_values(self.payload(f, pos),
                                                                         field)):
                    n += 1
        with self.lock:
            self._counts[key] = n
        return n


_SEG_CACHE = {}
_SEG_CACHE_LOCK = threading.Lock()


def seg_info(path):
    """SegmentInfo for the file at path (FileNotFoundError when it went away)."""
    st = os.stat(path)
    sig = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _SEG_CACHE_LOCK:
        c = _SEG_CACHE.get(path)
        if c is not None and c.sig == sig:
            return c
    info = SegmentInfo(path, sig)
    with _SEG_CACHE_LOCK:
        if len(_SEG_CACHE) > 1024:
            _SEG_CACHE.clear()
        _SEG_CACHE[path] = info
    return info


def segment_points(path, dim=None):
    """Live points held by a segment tar."""
    return seg_info(path).live


# --------------------------------------------------------------------------
# Point ids, vectors, payloads, filters and payload indexes


INDEX_TYPES = ("keyword", "integer", "float", "geo", "text", "bool", "datetime", "uuid")
DISTANCES = ("Cosine", "Euclid", "Dot", "Manhattan")
ACTIVE_STATES = ("Active", "ReshardingScaleDown")
UPDATABLE_STATES = ("Active", "Partial", "Initializing", "Listener", "Resharding",
                    "ReshardingScaleDown")
REPLICA_STATES = ("Active", "Dead", "Partial", "Initializing", "Listener", "PartialSnapshot",
                  "Recovery", "Resharding", "ReshardingScaleDown")


def parse_point_id(v):
    """ExtendedPointId: an unsigned 64-bit integer or a UUID (normalised); None if neither."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if 0 <= v < 1 << 64 else None
    if isinstance(v, str):
        try:
            return str(uuid.UUID(v))
        except ValueError:
            return None
    return None


def parse_path_id(s):
    if s.isdigit():
        v = int(s)
        return v if v < 1 << 64 else None
    return parse_point_id(s)


def id_key(pid):
    """Qdrant orders NumId before Uuid."""
    return (0, pid, "") if isinstance(pid, int) else (1, 0, pid)


def shard_of(pid, shard_number):
    """Shard of a point id. Simplification of Qdrant's hash ring (hash_ring.rs,
    HashRing::fair(100)): the id modulo shard_number, a UUID by its 128-bit value."""
    v = pid if isinstance(pid, int) else uuid.UUID(pid).int
    return v % shard_number


def vector_dims(vectors_cfg):
    """{name: (size, distance)} from params.vectors ("" is the unnamed vector)."""
    if not isinstance(vectors_cfg, dict):
        return {}
    if "size" in vectors_cfg:
        return {"": (int(vectors_cfg["size"]), str(vectors_cfg.get("distance")))}
    return {n: (int(v["size"]), str(v.get("distance"))) for n, v in vectors_cfg.items()
            if isinstance(v, dict) and "size" in v}


_F32 = struct.Struct("<f")


def f32_json(x):
    """The shortest decimal that reads back as the same float32, as serde prints f32."""
    if x != x or x in (float("inf"), float("-inf")):
        return None
    for p in range(1, 10):
        v = float("%.*g" % (p, x))
        if _F32.unpack(_F32.pack(v))[0] == x:
            return v
    return x


def vector_json(raw):
    a = array.array("f")
    a.frombytes(raw)
    return [f32_json(x) for x in a]


def vector_f32(values, dim, distance):
    """float32 bytes of a dense vector; Cosine vectors are normalised on insert
    (lib/segment/src/spaces/simple.rs:178-195)."""
    if not isinstance(values, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        raise ApiError(400, "Format error in JSON body: data did not match any variant of "
                       "untagged enum VectorStruct", zero_time=True)
    if len(values) != dim:
        raise bad_input("Vector dimension error: expected dim: %d, got %d" % (dim, len(values)))
    if distance == "Cosine":
        norm = math.sqrt(sum(float(x) * float(x) for x in values))
        if norm > 0:
            values = [float(x) / norm for x in values]
    return array.array("f", [float(x) for x in values]).tobytes()


def payload_values(payload, key):
    """Values at a (dotted) payload key, arrays flattened."""
    cur = [payload]
    for part in key.replace("[]", "").split("."):
        nxt = []
        for c in cur:
            if isinstance(c, dict) and part in c:
                v = c[part]
                if isinstance(v, list):
                    nxt.extend(v)
                else:
                    nxt.append(v)
            elif isinstance(c, list):
                for e in c:
                    if isinstance(e, dict) and part in e:
                        nxt.append(e[part])
        cur = nxt
    out = []
    for v in cur:
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def value_has_type(v, itype):
    if itype in ("keyword", "text"):
        return isinstance(v, str)
    if itype == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if itype == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if itype == "bool":
        return isinstance(v, bool)
    if itype == "geo":
        return isinstance(v, dict) and isinstance(v.get("lon"), (int, float)) \
            and isinstance(v.get("lat"), (int, float))
    if itype == "datetime":
        if not isinstance(v, str):
            return False
        try:
            datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            return True
        except ValueError:
            return False
    if itype == "uuid":
        return isinstance(v, str) and parse_point_id(v) is not None and "-" in v
    return False


def index_type(schema):
    return schema if isinstance(schema, str) else schema.get("type")


def valid_field_schema(schema):
    if isinstance(schema, str):
        return schema in INDEX_TYPES
    return isinstance(schema, dict) and schema.get("type") in INDEX_TYPES


def schema_info(schema, points):
    """One payload_schema entry (lib/segment/src/types.rs:310-336, data_types/index.rs)."""
    t = index_type(schema)
    d = {"data_type": t}
    if isinstance(schema, dict):
        p = {"type": t}
        p.update((k, v) for k, v in schema.items() if k != "type")
        if t == "integer":
            for k in ("lookup", "range", "is_principal"):
                p.setdefault(k, None)
        elif t in ("float", "datetime"):
            p.setdefault("is_principal", None)
        d["params"] = p
    d["points"] = points
    return d


def unsupported_filter(what):
    return bad_request("stand-in: unsupported filter condition %s" % json.dumps(what)[:200])


def match_condition(cond, pid, payload):
    if not isinstance(cond, dict):
        raise unsupported_filter(cond)
    if any(k in cond for k in ("must", "should", "must_not", "min_should")):
        return match_filter(cond, pid, payload)
    if "has_id" in cond:
        ids = {parse_point_id(x) for x in cond["has_id"] or []}
        return pid in ids
    if "key" in cond:
        vals = payload_values(payload, cond["key"])
        if "match" in cond and isinstance(cond["match"], dict):
            m = cond["match"]
            if "value" in m:
                return any(v == m["value"] and type(v) is type(m["value"]) for v in vals)
            if "any" in m:
                return any(v in m["any"] for v in vals if not isinstance(v, (dict, list)))
            if "except" in m:
                return not any(v in m["except"] for v in vals if not isinstance(v, (dict, list)))
            if "text" in m:
                return any(isinstance(v, str) and m["text"] in v for v in vals)
        if "range" in cond and isinstance(cond["range"], dict):
            r = cond["range"]
            nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]

            def ok(v):
                return ((r.get("gt") is None or v > r["gt"]) and
                        (r.get("gte") is None or v >= r["gte"]) and
                        (r.get("lt") is None or v < r["lt"]) and
                        (r.get("lte") is None or v <= r["lte"]))
            return any(ok(v) for v in nums)
    raise unsupported_filter(cond)


def match_filter(flt, pid, payload):
    if flt is None:
        return True
    if not isinstance(flt, dict):
        raise unsupported_filter(flt)

    def conds(k):
        v = flt.get(k)
        if v is None:
            return []
        return v if isinstance(v, list) else [v]
    if not all(match_condition(c, pid, payload) for c in conds("must")):
        return False
    if any(match_condition(c, pid, payload) for c in conds("must_not")):
        return False
    should = conds("should")
    if should and not any(match_condition(c, pid, payload) for c in should):
        return False
    return True


def filter_payload(payload, sel):
    if sel is True:
        return payload
    if isinstance(sel, list):
        return {k: v for k, v in payload.items() if k in sel}
    if isinstance(sel, dict):
        if "include" in sel:
            return {k: v for k, v in payload.items() if k in sel["include"]}
        if "exclude" in sel:
            return {k: v for k, v in payload.items() if k not in sel["exclude"]}
    return payload

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
# Collection configuration (the `config` of GET /collections/{c}, the flat
# PUT body; toc/create_collection.rs:78-197, collection_meta_ops.rs:109-182)


def utc_from_ts(ts):
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc)


def rfc3339_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int((t % 1) * 1e9)


DEFAULT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
                "max_indexing_threads": 0, "on_disk": False}
HNSW_KEYS = ("m", "ef_construct", "full_scan_threshold", "max_indexing_threads", "on_disk",
             "payload_m")
DEFAULT_OPTIMIZERS = {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                      "default_segment_number": 0, "max_segment_size": None,
                      "memmap_threshold": None, "indexing_threshold": 20000,
                      "flush_interval_sec": 5, "max_optimization_threads": None}
DEFAULT_WAL = {"wal_capacity_mb": 32, "wal_segments_ahead": 0}
DEFAULT_STRICT = {"enabled": False}
VECTOR_PARAM_KEYS = ("size", "distance", "hnsw_config", "quantization_config", "on_disk",
                     "datatype", "multivector_config")


def default_config(vectors, shard_number, replication_factor=1):
    return {"params": {"vectors": vectors, "shard_number": shard_number,
                       "replication_factor": replication_factor, "write_consistency_factor": 1,
                       "on_disk_payload": True},
            "hnsw_config": dict(DEFAULT_HNSW), "optimizer_config": dict(DEFAULT_OPTIMIZERS),
            "wal_config": dict(DEFAULT_WAL), "quantization_config": None,
            "strict_mode_config": dict(DEFAULT_STRICT)}


def merge_diff(base, diff, keys=None):
    """A *Diff applied over the server default: set keys replace, null keeps."""
    out = dict(base)
    if isinstance(diff, dict):
        for k, v in diff.items():
            if (keys is None or k in keys) and v is not None:
                out[k] = v
    return out


def format_error(msg):
    return ApiError(400, "Format error in JSON body: " + msg, zero_time=True)


def validation_error(msg):
    return ApiError(422, "Validation error in JSON body: [%s]" % msg, zero_time=True)


def parse_vector_params(v, where):
    if not isinstance(v, dict) or "size" not in v or "distance" not in v:
        raise format_error("%s: missing field `size` or `distance`" % where)
    size = v["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise format_error("%s.size: invalid type, expected a nonzero u64" % where)
    if size == 0:
        raise format_error("%s.size: invalid value: integer `0`, expected a nonzero u64" % where)
    if size > 65536:
        raise validation_error("%s.size: value %d invalid, must be in range 1..65536"
                               % (where, size))
    if v["distance"] not in DISTANCES:
        raise format_error("%s.distance: unknown variant `%s`, expected one of `Cosine`, "
                           "`Euclid`, `Dot`, `Manhattan`" % (where, v["distance"]))
    return {k: v[k] for k in VECTOR_PARAM_KEYS if v.get(k) is not None}


def config_from_body(body, default_shards):
    """CollectionConfig of a new collection from the flat PUT body: unknown keys
    are ignored, `optimizer_config` is an alias of `optimizers_config`,
    `quantization` of `quantization_config`."""
    vec = body.get("vectors")
    if vec is None:
        vectors = {}
    elif isinstance(vec, dict) and "size" in vec:
        vectors = parse_vector_params(vec, "vectors")
    elif isinstance(vec, dict):
        vectors = {n: parse_vector_params(v, "vectors.%s" % n) for n, v in vec.items()}
    else:
        raise format_error("vectors: data did not match any variant of untagged enum "
                           "VectorsConfig")
    for k in ("shard_number", "replication_factor", "write_consistency_factor"):
        v = body.get(k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise format_error("%s: invalid type: expected u32" % k)
        if v == 0:
            raise validation_error("%s: value 0 invalid, must be 1 or larger" % k)
    sm = body.get("sharding_method")
    if sm is not None and sm not in ("auto", "custom"):
        raise format_error("sharding_method: unknown variant `%s`, expected `auto` or `custom`"
                           % sm)
    params = {"vectors": vectors,
              "shard_number": body.get("shard_number") or (1 if sm == "custom" else
                                                           default_shards)}
    if sm is not None:
        params["sharding_method"] = sm
    params["replication_factor"] = body.get("replication_factor") or 1
    params["write_consistency_factor"] = body.get("write_consistency_factor") or 1
    odp = body.get("on_disk_payload")
    params["on_disk_payload"] = True if odp is None else bool(odp)
    if isinstance(body.get("sparse_vectors"), dict) and body["sparse_vectors"]:
        params["sparse_vectors"] = body["sparse_vectors"]
    opt = body.get("optimizers_config")
    if opt is None:
        opt = body.get("optimizer_config")
    opt_cfg = merge_diff(DEFAULT_OPTIMIZERS, opt, tuple(DEFAULT_OPTIMIZERS))
    if opt_cfg.get("max_optimization_threads") == "auto":
        opt_cfg["max_optimization_threads"] = None
    quant = body.get("quantization_config")
    if quant is None:
        quant = body.get("quantization")
    strict = merge_diff(DEFAULT_STRICT, body.get("strict_mode_config"))
    return {"params": params,
            "hnsw_config": merge_diff(DEFAULT_HNSW, body.get("hnsw_config"), HNSW_KEYS),
            "optimizer_config": opt_cfg,
            "wal_config": merge_diff(DEFAULT_WAL, body.get("wal_config"), tuple(DEFAULT_WAL)),
            "quantization_config": quant,
            "strict_mode_config": strict}


def new_meta(name, config, shard_ids=None):
    vecs = vector_dims(config["params"]["vectors"])
    un = vecs.get("")
    n = config["params"]["shard_number"]
    if shard_ids is None:
        custom = config["params"].get("sharding_method") == "custom"
        shard_ids = [] if custom else list(range(n))
    return {"name": name, "dim": un[0] if un else None, "distance": un[1] if un else None,
            "shard_number": n, "shard_ids": shard_ids, "config": config,
            "payload_index_schema": {}, "uuid": str(uuid.uuid4()),
            "restored_from_sha256": None, "restores": 0}


def shard_ids(meta):
    if "shard_ids" in meta:
        return list(meta["shard_ids"])
    return list(range(meta["shard_number"]))


def config_params(meta):
    if "config" in meta:
        return meta["config"]["params"]
    return default_config({"size": meta["dim"], "distance": meta["distance"]},
                          meta["shard_number"])["params"]


def config_internal(meta):
    if "config" in meta:
        cfg = copy.deepcopy(meta["config"])
    else:
        cfg = default_config({"size": meta["dim"], "distance": meta["distance"]},
                             meta["shard_number"])
    cfg["uuid"] = meta.get("uuid")
    return cfg


def meta_vecs(meta):
    return vector_dims(config_params(meta)["vectors"])


class Collection:
    def __init__(self, meta):
        self.meta = meta
        self.lock = threading.RLock()

    @property
    def name(self):
        return self.meta["name"]


# --------------------------------------------------------------------------
# Local shard data: storage/collections/<c>/<shard>/{segments/<uuid>.tar, wal/}


def write_wal(sdir, seed):
    wal = os.path.join(sdir, "wal")
    os.makedirs(wal, exist_ok=True)
    pool = _vec_pool()
    off = random.Random(seed).randrange(len(pool) - WAL_SIZE) & ~3
    with open(os.path.join(wal, "open-1"), "wb") as f:
        f.write(pool[off:off + WAL_SIZE])
    with open(os.path.join(wal, "first-index"), "wb") as f:
        f.write(struct.pack("<Q", 1))


def build_empty_shard(sdir, vecs, indexed):
    """A new replica: one empty appendable segment and a WAL."""
    os.makedirs(os.path.join(sdir, "segments"))
    write_points_segment(os.path.join(sdir, "segments", str(uuid.uuid4()) + ".tar"), [], vecs,
                         indexed)
    write_wal(sdir, random.getrandbits(32))


def build_generated_shard(sdir, points, dim, distance, seed, sid, shard_count, segname, mtime,
                          indexed=None):
    """A replica of generated data: ids sid, sid+shard_count, ... (routing by id mod)."""
    os.makedirs(os.path.join(sdir, "segments"))
    write_wal(sdir, seed)
    write_segment_tar(os.path.join(sdir, "segments", segname + ".tar"), points, dim, distance,
                      seed * 131 + sid, first_id=sid, id_stride=shard_count, indexed=indexed,
                      mtime=mtime)


def generated_points(total, sid, shard_count):
    return total // shard_count + (1 if sid < total % shard_count else 0)


class DummyShardError(Exception):
    pass


class ShardView:
    """One local replica's data. Segments are immutable files; changes are
    made under the shard lock and become visible by rename."""

    def __init__(self, state, cname, sid):
        self.state = state
        self.cname = cname
        self.sid = sid
        self.dir = os.path.join(state.coll_dir(cname), str(sid))
        self.lock = state.shard_lock(cname, sid)

    def exists(self):
        return os.path.isdir(self.dir)

    def is_dummy(self):
        return os.path.exists(os.path.join(self.dir, "DUMMY"))

    def check(self):
        if self.is_dummy():
            raise service_error("Failed to restore local replica")

    def seg_paths(self):
        d = os.path.join(self.dir, "segments")
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        return [os.path.join(d, n) for n in sorted(names)
                if n.endswith(".tar") and not n.startswith(".")]

    def infos(self):
        for _ in range(10):
            try:
                return [seg_info(p) for p in self.seg_paths()]
            except FileNotFoundError:
                continue
            except SegmentError as e:
                raise service_error(str(e))
        raise service_error("segments of shard %d keep changing" % self.sid)

    def index(self):
        """({id: (SegmentInfo, position)}, ids sorted as Qdrant orders them)."""
        infos = self.infos()
        key = tuple((i.path, i.sig) for i in infos)
        cache = self.state.index_cache
        hit = cache.get(self.dir)
        if hit is not None and hit[0] == key:
            return hit[1]
        idx = {}
        for info in infos:
            dl = info.deleted
            for pos, pid in enumerate(info.ids):
                if pos not in dl:
                    idx[pid] = (info, pos)
        order = sorted(idx, key=id_key)
        val = (idx, order, [id_key(p) for p in order])
        cache[self.dir] = (key, val)
        return val

    def count(self):
        if self.is_dummy():
            return 0
        return sum(i.live for i in self.infos())

    def segments_count(self):
        return len(self.seg_paths())

    def record(self, info, f, pos, pid, with_payload, with_vector):
        rec = {"id": pid}
        if with_payload:
            rec["payload"] = filter_payload(info.payload(f, pos), with_payload)
        if with_vector:
            names = sorted(info.vecs)
            if isinstance(with_vector, list):
                names = [n for n in names if n in with_vector]
            if list(info.vecs) == [""]:
                if "" in names:
                    rec["vector"] = vector_json(info.vector_bytes(f, pos, ""))
            else:
                rec["vector"] = {n: vector_json(info.vector_bytes(f, pos, n)) for n in names}
        return rec

    def _records(self, hits, with_payload, with_vector):
        out = []
        files = {}
        try:
            for pid, info, pos in hits:
                f = files.get(info.path)
                if f is None:
                    f = files[info.path] = open(info.path, "rb")
                out.append(self.record(info, f, pos, pid, with_payload, with_vector))
        finally:
            for f in files.values():
                f.close()
        return out

    def scan(self, offset, limit, flt, with_payload, with_vector):
        """Up to `limit` records with id >= offset, in id order, matching flt."""
        with self.lock:
            self.check()
            idx, order, keys = self.index()
            i = 0 if offset is None else bisect.bisect_left(keys, id_key(offset))
            hits = []
            files = {}
            try:
                while i < len(order) and len(hits) < limit:
                    pid = order[i]
                    i += 1
                    info, pos = idx[pid]
                    if flt is not None:
                        f = files.get(info.path)
                        if f is None:
                            f = files[info.path] = open(info.path, "rb")
                        if not match_filter(flt, pid, info.payload(f, pos)):
                            continue
                    hits.append((pid, info, pos))
            finally:
                for f in files.values():
                    f.close()
            return self._records(hits, with_payload, with_vector)

    def get(self, pids, with_payload, with_vector):
        with self.lock:
            self.check()
            idx = self.index()[0]
            hits = [(p, idx[p][0], idx[p][1]) for p in pids if p in idx]
            return self._records(hits, with_payload, with_vector)

    def count_filtered(self, flt):
        self.check()
        if flt is None:
            return self.count()
        with self.lock:
            self.check()
            idx, order, _ = self.index()
            n = 0
            files = {}
            try:
                for pid in order:
                    info, pos = idx[pid]
                    f = files.get(info.path)
                    if f is None:
                        f = files[info.path] = open(info.path, "rb")
                    if match_filter(flt, pid, info.payload(f, pos)):
                        n += 1
            finally:
                for f in files.values():
                    f.close()
            return n

    def upsert(self, entries, vecs, indexed):
        """entries: {id: ({name: float32 bytes}, payload line)}; a newer point
        replaces the older one (the old position is flagged deleted)."""
        with self.lock:
            self.check()
            idx = self.index()[0]
            dead = {}
            for pid in entries:
                if pid in idx:
                    info, pos = idx[pid]
                    dead.setdefault(info.path, set()).add(pos)
            for path, poss in dead.items():
                info = seg_info(path)
                rewrite_segment(path, {FLAGS_MEMBER: flags_bytes(info.n, info.deleted | poss)})
            if entries:
                rows = [(pid, v, p) for pid, (v, p) in entries.items()]
                self._add_segment(rows, vecs, indexed)
            self._maybe_merge(vecs, indexed)

    def _add_segment(self, rows, vecs, indexed):
        d = os.path.join(self.dir, "segments")
        name = str(uuid.uuid4())
        tmp = os.path.join(d, "." + name + ".new")
        write_points_segment(tmp, rows, vecs, indexed)
        os.replace(tmp, os.path.join(d, name + ".tar"))

    def _maybe_merge(self, vecs, indexed):
        """The optimizer: many small segments are merged into one."""
        infos = self.infos()
        if len(infos) <= MERGE_ABOVE_SEGMENTS:
            return
        small = [i for i in infos if i.sig[2] < MERGE_SEGMENT_MAX and i.vecs == vecs]
        if len(small) < 2:
            return
        rows = []
        merged_index = dict(indexed)
        for info in small:
            for k, v in info.indexed.items():
                merged_index.setdefault(k, v)
            with open(info.path, "rb") as f:
                for pos, pid in enumerate(info.ids):
                    if pos in info.deleted:
                        continue
                    rows.append((pid, {n: info.vector_bytes(f, pos, n) for n in vecs},
                                 info.payload_line(f, pos)))
        self._add_segment(rows, vecs, merged_index)
        for info in small:
            os.unlink(info.path)

    def create_index(self, field, schema):
        with self.lock:
            self.check()
            for info in self.infos():
                if info.indexed.get(field) != schema:
                    new = dict(info.indexed)
                    new[field] = schema
                    rewrite_segment(info.path, {INDEX_CONFIG_MEMBER: index_config_bytes(new)})

    def payload_schema(self):
        """{field: [schema, points]} read from the segments."""
        out = {}
        if self.is_dummy():
            return out
        for info in self.infos():
            for field, schema in info.indexed.items():
                t = index_type(schema) if valid_field_schema(schema) else None
                if t is None:
                    continue
                n = info.index_points(field, t)
                if field in out:
                    out[field][1] += n
                else:
                    out[field] = [schema, n]
        return out

    def info(self):
        return {"points_count": self.count(), "segments_count": self.segments_count(),
                "payload_schema": self.payload_schema()}

    def write_stream(self, tw, scratch, replica_state, count_tmp):
        """ShardReplicaSet::create_snapshot in the Streamable format, as
        stream_shard_snapshot runs it (replica_set/snapshots.rs:16-38,
        local_shard/mod.rs:813-899, segment/entry.rs:843-955): per segment the
        RocksDB backups go through a scratch dir under snapshots/tmp, then the
        segment files are read live; then an empty WAL generated in a temp dir,
        replica_state.json, shard_config.json, and the 1024-byte footer."""
        with self.lock:
            if self.is_dummy():
                raise DummyShardError()
            segs = []
            try:
                for info in self.infos():
                    segs.append((info, open(info.path, "rb")))
            except BaseException:
                for _, f in segs:
                    f.close()
                raise
        try:
            for info, f in segs:
                base = "segments/" + os.path.basename(info.path)[:-len(".tar")]
                tmp = os.path.join(scratch, "segment-%s" % uuid.uuid4())
                os.makedirs(tmp)
                for name, off, size, typ in info.order:
                    if typ not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                        continue
                    rel = name[len("snapshot/"):]
                    if rel.startswith("db_backup/") or rel.startswith("payload_index_db_backup/"):
                        dst = os.path.join(tmp, rel)
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                        f.seek(off)
                        with open(dst, "wb") as out:
                            out.write(f.read(size))
                        count_tmp(size)
                tw.add_dir(base)
                for dirpath, dirnames, filenames in os.walk(tmp):
                    dirnames.sort()
                    rel = os.path.relpath(dirpath, tmp)
                    if rel != ".":
                        tw.add_dir(base + "/" + rel)
                    for fn in sorted(filenames):
                        r = fn if rel == "." else rel + "/" + fn
                        tw.add_file(base + "/" + r, os.path.join(dirpath, fn))
                shutil.rmtree(tmp, ignore_errors=True)
                for name, off, size, typ in info.order:
                    if typ in (tarfile.REGTYPE, tarfile.AREGTYPE) and \
                            name.startswith("snapshot/files/"):
                        tw.add_range(base + "/" + name[len("snapshot/"):], f, off, size)
            wal = os.path.join(scratch, "wal-%s" % uuid.uuid4())
            os.makedirs(wal)
            with open(os.path.join(wal, "first-index"), "wb") as out:
                out.write(struct.pack("<Q", 1))
            with open(os.path.join(wal, "open-1"), "wb") as out:
                out.write(b"\0" * WAL_SIZE)
            count_tmp(8 + WAL_SIZE)
            tw.add_dir("wal")
            for fn in ("first-index", "open-1"):
                tw.add_file("wal/" + fn, os.path.join(wal, fn))
            shutil.rmtree(wal, ignore_errors=True)
            tw.add_bytes("replica_state.json", json.dumps(replica_state,
                                                          separators=(",", ":")).encode())
            tw.add_bytes("shard_config.json", b'{"type":"ReplicaSet"}')
            shutil.rmtree(scratch, ignore_errors=True)  # before tar.finish(), as Qdrant
            tw.close()
        finally:
            for _, f in segs:
                f.close()


def prepare_shard(archive, members, prefix, build, label, single_node, msg_path, count=None):
    """Builds a local shard directory at `build` from the shard stored at
    `prefix` in a validated archive (Regular `segments/<id>.tar` or Streamable
    `segments/<id>/...` segments). Follows ShardReplicaSet::restore_snapshot
    (replica_set/snapshots.rs:40-76), LocalShard::restore_snapshot and
    restore_snapshot_in_place (segment_ops.rs:665-728), check_data
    (local_shard/mod.rs:124-129) and restore_shard_snapshot's answer
    (shard_holder/mod.rs:1045-1049)."""
    rs = members.get(prefix + "replica_state.json")
    is_local = False
    if rs is not None and rs.isreg():
        with open(archive, "rb") as f:
            f.seek(rs.offset_data)
            try:
                is_local = bool(json.loads(f.read(rs.size)).get("is_local"))
            except (ValueError, AttributeError):
                raise service_error("Failed to deserialize %sreplica_state.json" % prefix)
    if single_node and not is_local:
        raise service_error("Can't restore snapshot in local mode with missing data at shard: "
                            "%s" % msg_path)
    seg_prefix = prefix + "segments/"
    has_segments = any(n == prefix + "segments" or n.startswith(seg_prefix) for n in members)
    has_wal = any(n == prefix + "wal" or n.startswith(prefix + "wal/") for n in members)
    if is_local and not has_segments:
        raise service_error("File IO error: No such file or directory (os error 2)")
    regular = {}
    stream = {}
    for name, m in members.items():
        if not name.startswith(seg_prefix):
            continue
        rest = name[len(seg_prefix):]
        if "/" not in rest:
            if m.isdir():
                stream.setdefault(rest, [])
            elif rest.split(".", 1)[1:] == ["tar"]:
                regular[rest[:-len(".tar")]] = m
            else:
                raise service_error("Invalid snapshot path, expected either a directory or a "
                                    ".tar file")
        else:
            segid, sub = rest.split("/", 1)
            stream.setdefault(segid, []).append((sub, m))
    if not (has_wal and has_segments):
        raise bad_request("Invalid snapshot %s" % label)
    os.makedirs(os.path.join(build, "segments"))
    os.makedirs(os.path.join(build, "wal"))
    total = 0
    with open(archive, "rb") as src:
        for name, m in members.items():
            if name.startswith(prefix + "wal/") and m.isreg() and \
                    "/" not in name[len(prefix + "wal/"):]:
                copy_range(archive, m.offset_data, m.size,
                           os.path.join(build, "wal", os.path.basename(name)))
                total += m.size
        for segid, m in regular.items():
            copy_range(archive, m.offset_data, m.size,
                       os.path.join(build, "segments", segid + ".tar"))
            total += m.size
        for segid, subs in stream.items():
            dst_path = os.path.join(build, "segments", segid + ".tar")
            with open(dst_path, "wb", buffering=0) as dst:
                tw = TarWriter(dst)
                tw.add_dir("snapshot")
                for sub, m in subs:
                    if m.isdir():
                        tw.add_dir("snapshot/" + sub)
                    elif m.isreg():
                        tw.add_range("snapshot/" + sub, src, m.offset_data, m.size)
                tw.close()
            total += os.path.getsize(dst_path)
    if count is not None:
        count(total)
    for p in sorted(os.listdir(os.path.join(build, "segments"))):
        try:
            seg_info(os.path.join(build, "segments", p))
        except SegmentError as e:
            raise SegmentError(str(e))


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


# --------------------------------------------------------------------------
# Cluster view (multi-peer mode)


CLUSTER_DEFAULTS = {
    "activate_delay_s": 0.2,    # Initializing -> Active after a replica is created
    "dead_delay_s": 0.2,        # state proposals of a shard upload land this long after it
    "transfer_delay_s": 0.5,    # a Dead replica's recovery transfer takes this long
    "election_timeout_s": 1.0,  # an unreachable leader is replaced after this long
    "auto_elect": True,
    "transfer_method": "wal_delta",
}


class PeerDown(Exception):
    pass


class ClusterStore:
    """The consensus state shared by the peers of a multi-peer stand-in:
    DIR/cluster.json, changed under an exclusive flock on DIR/cluster.lock and
    replaced atomically (readers never lock)."""

    def __init__(self, cdir):
        self.dir = os.path.abspath(cdir)
        os.makedirs(self.dir, exist_ok=True)
        self.path = os.path.join(self.dir, "cluster.json")
        self.lock_path = os.path.join(self.dir, "cluster.lock")
        self.tlock = threading.RLock()
        self._sig = None
        self._data = None

    @staticmethod
    def empty():
        return {"term": 0, "commit": 0, "leader": 0, "peers": {}, "collections": {},
                "aliases": {}, "settings": dict(CLUSTER_DEFAULTS)}

    def read(self):
        with self.tlock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return self.empty()
            sig = (st.st_ino, st.st_mtime_ns, st.st_size)
            if sig != self._sig:
                with open(self.path) as f:
                    self._data = json.load(f)
                self._sig = sig
            return self._data

    def settings(self):
        s = dict(CLUSTER_DEFAULTS)
        s.update(self.read().get("settings") or {})
        return s

    def update(self, fn):
        """Runs fn(view) under the cluster lock; writes the view if fn changed it
        (commit + 1). An exception from fn discards its changes."""
        with self.tlock:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    with open(self.path) as f:
                        data = json.load(f)
                except FileNotFoundError:
                    data = self.empty()
                before = json.dumps(data, sort_keys=True)
                res = fn(data)
                if json.dumps(data, sort_keys=True) != before:
                    data["commit"] = data.get("commit", 0) + 1
                    tmp = "%s.%d.%d.tmp" % (self.path, os.getpid(), threading.get_ident())
                    with open(tmp, "w") as f:
                        json.dump(data, f)
                    os.replace(tmp, self.path)
                return res
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def place_shards(peers, sids, rf, state, now):
    """Shard placement of a new collection: for each shard the min(rf, peers)
    peers holding the fewest replicas so far (shard_distribution.rs:58-102);
    ties go to the lower peer index here (Qdrant breaks them randomly)."""
    counts = {p: 0 for p in peers}
    out = {}
    for sid in sids:
        chosen = sorted(peers, key=lambda p: (counts[p], peers.index(p)))[:min(rf, len(peers))]
        for p in chosen:
            counts[p] += 1
        out[str(sid)] = {str(p): {"state": state, "since": now, "pin": False} for p in chosen}
    return out


def apply_alias_actions(aliases, collections, actions):
    """Qdrant's update_aliases (toc/collection_meta_ops.rs:252-292,
    alias_mapping.rs:66-112): in order, each action is kept even when a later
    one fails. Returns the error of the failing action (or None)."""
    for a in actions:
        try:
            if "create_alias" in a:
                c = a["create_alias"]["collection_name"]
                al = a["create_alias"]["alias_name"]
                if c not in collections:
                    raise not_found_collection(c)
                if al in collections:
                    raise ApiError(409, "Wrong input: Collection `%s` already exists!" % al)
                aliases[al] = c
            elif "delete_alias" in a:
                aliases.pop(a["delete_alias"]["alias_name"], None)
            else:
                old = a["rename_alias"]["old_alias_name"]
                if old not in aliases:
                    raise ApiError(404, "Not found: Alias %s does not exists!" % old)
                aliases[a["rename_alias"]["new_alias_name"]] = aliases.pop(old)
        except ApiError as e:
            return e
    return None


def check_alias_actions(body):
    if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
        raise ApiError(400, "Format error in JSON body: missing field `actions`", zero_time=True)
    shapes = {"create_alias": ("collection_name", "alias_name"), "delete_alias": ("alias_name",),
              "rename_alias": ("old_alias_name", "new_alias_name")}
    for a in body["actions"]:
        ok = isinstance(a, dict) and len(a) == 1
        if ok:
            k, v = next(iter(a.items()))
            ok = k in shapes and isinstance(v, dict) and all(
                isinstance(v.get(f), str) for f in shapes[k])
        if not ok:
            raise ApiError(400, "Format error in JSON body: data did not match any variant of "
                           "untagged enum AliasOperations", zero_time=True)


# --------------------------------------------------------------------------
# Server state


class State:
    def __init__(self, root, peer_id, api_key, ro_key, version=QDRANT_VERSION, cluster=None,
                 peer_index=None, host="127.0.0.1", rest_port=0, p2p_port=6335):
        self.root = os.path.abspath(root)
        self.snap_root = os.path.join(self.root, "snapshots")
        self.snap_tmp = os.path.join(self.snap_root, "tmp")
        self.storage = os.path.join(self.root, "storage")
        self.coll_root = os.path.join(self.storage, "collections")
        self.storage_tmp = os.path.join(self.storage, "tmp")
        for d in (self.snap_root, self.snap_tmp, os.path.join(self.snap_tmp, "upload"),
                  self.coll_root, self.storage_tmp, os.path.join(self.storage, "aliases")):
            os.makedirs(d, exist_ok=True)
        self.api_key = api_key
        self.ro_key = ro_key
        self.version = version
        self.lock = threading.RLock()
        # Held by replica commits and by gc_local() (see there); taken
        # before a replica's own lock.
        self.gc_lock = threading.RLock()
        self.collections = {}
        self.alias_map = {}
        self.name_locks = {}
        self.shard_locks = {}
        self.index_cache = {}
        self.births = {}  # (dev, ino) -> creation time (stand-in clock)
        self.faults = {}
        self.stall_until = 0.0
        self.time_offset = 0.0
        self.frozen_at = None
        self.uploads = []
        self.op_seq = 0
        self.counters = {"creates": 0, "downloads": 0, "uploads": 0, "deletes": 0,
                         "recovers": 0, "full_creates": 0, "shard_streams": 0,
                         "shard_uploads": 0, "snapshot_files_bytes": 0,
                         "snapshot_tmp_stream_bytes": 0, "snapshot_tmp_restore_bytes": 0,
                         "storage_tmp_bytes": 0}
        self.cluster = cluster
        self.peer_index = peer_index
        self.host = host
        self.rest_port = rest_port
        self.p2p_port = p2p_port
        self.reach = {}
        self.serving = True
        self.ccache = {}
        self.protected = {}
        self.recovering = set()
        self.leader_down_since = None
        if cluster is None:
            self.peer_id = self._load_peer_id(peer_id)
            self._load_collections()
            self._load_aliases()
        else:
            self.peer_id = self._register(peer_id)

    # identity ---------------------------------------------------------------
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

    def _register(self, given):
        """Joins the cluster view as peer `peer_index` (same id after a restart).
        Peer ids are random u64 above 2^53, as Qdrant's can be."""
        me = {"index": self.peer_index, "host": self.host, "rest_port": self.rest_port,
              "p2p_port": self.p2p_port, "pid": os.getpid(),
              "uri": "http://%s:%d/" % (self.host, self.p2p_port)}

        def fn(v):
            pid = None
            for k, p in v["peers"].items():
                if p["index"] == self.peer_index:
                    pid = int(k)
            if pid is None:
                pid = int(given) if given is not None else \
                    random.SystemRandom().randrange(1 << 60, 1 << 64)
            v["peers"][str(pid)] = me
            if not v.get("collections") and not v.get("leader_hooked"):
                # bootstrap: the lowest peer index leads (term 1)
                first = min(v["peers"].items(), key=lambda kv: kv[1]["index"])[0]
                v["leader"] = int(first)
                v["term"] = max(1, v.get("term", 0))
            elif not v.get("leader"):
                v["leader"] = pid
                v["term"] = v.get("term", 0) + 1
            return pid
        return self.cluster.update(fn)

    @property
    def is_cluster(self):
        return self.cluster is not None

    # clock --------------------------------------------------------------
    def now(self):
        if self.frozen_at is not None:
            return self.frozen_at
        return time.time() + self.time_offset

    def count(self, key, n):
        with self.lock:
            self.counters[key] += n

    def next_op(self):
        with self.lock:
            self.op_seq += 1
            return self.op_seq

    # single-node catalog -------------------------------------------------
    def _load_collections(self):
        for name in os.listdir(self.coll_root):
            p = os.path.join(self.coll_root, name, "collection.json")
            if os.path.exists(p):
                with open(p) as f:
                    self.collections[name] = Collection(json.load(f))

    def _aliases_path(self):
        return os.path.join(self.storage, "aliases", "data.json")

    def _load_aliases(self):
        try:
            with open(self._aliases_path()) as f:
                self.alias_map = json.load(f)
        except (OSError, ValueError):
            self.alias_map = {}

    def _save_aliases(self):
        tmp = self._aliases_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.alias_map, f)
        os.replace(tmp, self._aliases_path())

    # collections --------------------------------------------------------
    def coll_dir(self, name):
        return os.path.join(self.coll_root, name)

    def view(self):
        return self.cluster.read()

    def names(self):
        if self.is_cluster:
            return list(self.view()["collections"])
        with self.lock:
            return list(self.collections)

    def aliases(self):
        if self.is_cluster:
            return dict(self.view()["aliases"])
        with self.lock:
            return dict(self.alias_map)

    def get(self, name, resolve=True):
        """The collection called `name` (or the one the alias `name` points at)."""
        if self.is_cluster:
            v = self.view()
            real = v["aliases"].get(name, name) if resolve else name
            m = v["collections"].get(real)
            if m is None:
                return None
            with self.lock:
                c = self.ccache.get(real)
                if c is None:
                    c = self.ccache[real] = Collection(copy.deepcopy(m))
                else:
                    c.meta = copy.deepcopy(m)
            return c
        with self.lock:
            real = self.alias_map.get(name, name) if resolve else name
            return self.collections.get(real)

    def save_meta(self, coll, directory=None):
        d = directory or self.coll_dir(coll.name)
        tmp = os.path.join(d, "collection.json.tmp")
        with open(tmp, "w") as f:
            json.dump(coll.meta, f)
        os.replace(tmp, os.path.join(d, "collection.json"))

    def update_meta(self, name, fn):
        """fn(meta) on the stored metadata of collection `name` (no alias)."""
        if self.is_cluster:
            def upd(v):
                m = v["collections"].get(name)
                if m is None:
                    raise not_found_collection(name)
                return fn(m)
            return self.cluster.update(upd)
        with self.lock:
            coll = self.collections.get(name)
            if coll is None:
                raise not_found_collection(name)
            res = fn(coll.meta)
            self.save_meta(coll)
            return res

    def replicas(self, meta, sid):
        """{peer_id: state} of one shard."""
        if not self.is_cluster:
            return {self.peer_id: "Active"}
        return {int(p): r["state"] for p, r in meta.get("placement", {}).get(str(sid), {}).items()}

    def local_sids(self, meta):
        if not self.is_cluster:
            return shard_ids(meta)
        me = str(self.peer_id)
        return [s for s in shard_ids(meta) if me in meta.get("placement", {}).get(str(s), {})]

    def shard_lock(self, cname, sid):
        with self.lock:
            k = (cname, sid)
            lk = self.shard_locks.get(k)
            if lk is None:
                lk = self.shard_locks[k] = threading.RLock()
            return lk

    def shard(self, cname, sid):
        return ShardView(self, cname, sid)

    def name_lock(self, name):
        """Serialises restores and creates per collection name (not global)."""
        with self.lock:
            lk = self.name_locks.get(name)
            if lk is None:
                lk = self.name_locks[name] = threading.RLock()
            return lk

    def create_collection(self, name, config, initial="Initializing"):
        """Creates an empty collection (PUT /collections/{c}); 409 when the name
        is taken, 400 when an alias has it (toc/create_collection.rs:52-66)."""
        meta = new_meta(name, config)
        if self.is_cluster:
            def fn(v):
                if name in v["collections"]:
                    raise ApiError(409, "Wrong input: Collection `%s` already exists!" % name)
                if name in v["aliases"]:
                    raise bad_input("Can't create collection with name %s. Alias with the same "
                                    "name already exists" % name)
                peers = [int(k) for k, _ in sorted(v["peers"].items(),
                                                   key=lambda kv: kv[1]["index"])]
                meta["placement"] = place_shards(
                    peers, shard_ids(meta), config["params"]["replication_factor"], initial,
                    time.time())
                meta["transfers"] = []
                v["collections"][name] = meta
            self.cluster.update(fn)
            self.ensure_local_shards(meta)
            return meta
        build = tempfile.mkdtemp(prefix="new-%s-" % name, dir=self.storage_tmp)
        try:
            for sid in shard_ids(meta):
                build_empty_shard(os.path.join(build, str(sid)), meta_vecs(meta), {})
            coll = Collection(meta)
            self.save_meta(coll, build)
            with self.lock:
                if name in self.collections:
                    raise ApiError(409, "Wrong input: Collection `%s` already exists!" % name)
                if name in self.alias_map:
                    raise bad_input("Can't create collection with name %s. Alias with the same "
                                    "name already exists" % name)
                self._install(name, build, coll)
            build = None
            return meta
        finally:
            if build is not None:
                shutil.rmtree(build, ignore_errors=True)

    def ensure_local_shards(self, meta):
        """Creates the data directory of every local replica that has none."""
        for sid in self.local_sids(meta):
            sv = self.shard(meta["name"], sid)
            if sv.exists():
                continue
            with self.gc_lock, sv.lock:
                if sv.exists():
                    continue
                build = tempfile.mkdtemp(prefix="replica-", dir=self.storage_tmp)
                try:
                    sdir = os.path.join(build, "s")
                    build_empty_shard(sdir, meta_vecs(meta), meta.get("payload_index_schema", {}))
                    self.commit_shard(meta, sid, sdir)
                finally:
                    shutil.rmtree(build, ignore_errors=True)

    def commit_shard(self, meta, sid, build):
        """Replaces a local replica's data with the directory `build` (under
        gc_lock, then the replica's lock: the order everywhere)."""
        sv = self.shard(meta["name"], sid)
        cdir = self.coll_dir(meta["name"])
        with self.gc_lock, sv.lock:
            os.makedirs(cdir, exist_ok=True)
            if self.is_cluster:
                with open(os.path.join(cdir, "uuid"), "w") as f:
                    f.write(meta["uuid"])
            trash = None
            if os.path.exists(sv.dir):
                trash = sv.dir + ".old-" + uuid.uuid4().hex[:8]
                os.rename(sv.dir, trash)
            os.rename(build, sv.dir)
            self.index_cache.pop(sv.dir, None)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def install_dummy(self, meta, sid):
        """A failed replica restore leaves a Dummy shard (replica_set/snapshots.rs:134-182)."""
        build = tempfile.mkdtemp(prefix="dummy-", dir=self.storage_tmp)
        sdir = os.path.join(build, "s")
        os.makedirs(sdir)
        with open(os.path.join(sdir, "DUMMY"), "w") as f:
            f.write("Failed to restore local replica")
        self.commit_shard(meta, sid, sdir)
        shutil.rmtree(build, ignore_errors=True)

    def generate(self, name, points, dim, shard_number, distance, replication_factor=1):
        """Creates a collection with generated data (control API). Point ids are
        0..points-1, each in shard id % shard_number."""
        config = default_config({"size": dim, "distance": distance}, shard_number,
                                replication_factor)
        seed_base = random.SystemRandom().getrandbits(32)
        mtime = int(time.time())
        segnames = [str(uuid.uuid4()) for _ in range(shard_number)]
        if self.is_cluster:
            meta = new_meta(name, config)

            def fn(v):
                old = v["collections"].get(name)
                if old is not None:
                    meta["uuid"] = old["uuid"]
                peers = [int(k) for k, _ in sorted(v["peers"].items(),
                                                   key=lambda kv: kv[1]["index"])]
                meta["placement"] = place_shards(peers, shard_ids(meta), replication_factor,
                                                 "Active", time.time())
                meta["transfers"] = []
                v["collections"][name] = meta
            self.cluster.update(fn)
            for sid in shard_ids(meta):
                args = {"points": generated_points(points, sid, shard_number), "dim": dim,
                        "distance": distance, "seed": seed_base + sid,
                        "shard_count": shard_number, "segname": segnames[sid], "mtime": mtime}
                for peer in self.replicas(meta, sid):
                    try:
                        self.shard_op(meta, sid, peer, "generate", args)
                    except PeerDown:
                        self.set_replica(name, sid, peer, "Dead")
            return self.get(name)
        meta = new_meta(name, config)
        build = tempfile.mkdtemp(prefix="gen-%s-" % name, dir=self.storage_tmp)
        try:
            for sid in range(shard_number):
                build_generated_shard(os.path.join(build, str(sid)),
                                      generated_points(points, sid, shard_number), dim, distance,
                                      seed_base + sid, sid, shard_number, segnames[sid], mtime)
            coll = Collection(meta)
            self.save_meta(coll, build)
            self._install(name, build, coll)
            build = None
            return coll
        finally:
            if build is not None:
                shutil.rmtree(build, ignore_errors=True)

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
            for k in [k for k in self.index_cache if k.startswith(final + os.sep)]:
                del self.index_cache[k]
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def delete_collection(self, name):
        """DELETE /collections/{c}: the literal name (no alias); its aliases go too
        (toc/collection_meta_ops.rs:176-250)."""
        if self.is_cluster:
            def fn(v):
                if name not in v["collections"]:
                    return False
                del v["collections"][name]
                for a in [a for a, c in v["aliases"].items() if c == name]:
                    del v["aliases"][a]
                return True
            existed = self.cluster.update(fn)
            if existed:
                self.gc_local()
            return existed
        with self.lock:
            coll = self.collections.pop(name, None)
            gone = [a for a, c in self.alias_map.items() if c == name]
            for a in gone:
                del self.alias_map[a]
            if gone:
                self._save_aliases()
            d = self.coll_dir(name)
            trash = None
            if os.path.exists(d):
                trash = d + ".deleted-" + uuid.uuid4().hex[:8]
                os.rename(d, trash)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)
        return coll is not None

    def change_aliases(self, actions):
        """Applies alias actions; raises the failing action's error after
        keeping (and persisting) the ones before it."""
        if self.is_cluster:
            def fn(v):
                return apply_alias_actions(v["aliases"], set(v["collections"]), actions)
            err = self.cluster.update(fn)
        else:
            with self.lock:
                err = apply_alias_actions(self.alias_map, set(self.collections), actions)
                self._save_aliases()
        if err is not None:
            raise err
        return True

    def protect(self, cname, sid, seconds=10.0):
        """Keeps a just-restored replica from the garbage collection below until
        its state proposal has landed."""
        with self.lock:
            self.protected[(cname, sid)] = time.time() + seconds

    def is_protected(self, cname, sid):
        with self.lock:
            return self.protected.get((cname, sid), 0) > time.time()

    def gc_local(self):
        """Removes local data of collections and replicas this peer no longer has.
        Under gc_lock, which every replica commit holds too: the view is read
        after any commit in progress has finished, so a collection just
        created in the view (whose directory a commit is making) is never
        taken for a deleted one."""
        if not self.is_cluster:
            return
        trashed = []
        with self.gc_lock:
            v = self.view()
            for name in os.listdir(self.coll_root):
                d = os.path.join(self.coll_root, name)
                if not os.path.isdir(d) or ".old-" in name or ".deleted-" in name:
                    continue
                m = v["collections"].get(name)
                try:
                    with open(os.path.join(d, "uuid")) as f:
                        u = f.read().strip()
                except OSError:
                    u = None
                if m is None or (u is not None and u != m["uuid"]):
                    trash = d + ".deleted-" + uuid.uuid4().hex[:8]
                    try:
                        os.rename(d, trash)
                    except OSError:
                        continue
                    trashed.append(trash)
                    continue
                keep = set(str(s) for s in self.local_sids(m))
                for sd in os.listdir(d):
                    if sd.isdigit() and sd not in keep and not self.is_protected(name, int(sd)):
                        sv = self.shard(name, int(sd))
                        with sv.lock:
                            trash = sv.dir + ".old-" + uuid.uuid4().hex[:8]
                            try:
                                os.rename(sv.dir, trash)
                            except OSError:
                                continue
                        trashed.append(trash)
        for trash in trashed:
            shutil.rmtree(trash, ignore_errors=True)

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
        """Qdrant's store_file: checksum first, then <stem>.tmp, then rename.
        Counted as bytes written to the snapshots directory: with the snapshots
        on their own volume (the usual deployment) the move is a copy."""
        os.makedirs(target_dir, exist_ok=True)
        final = os.path.join(target_dir, name)
        with open(final + ".checksum", "w") as f:
            f.write(digest)
        stem = os.path.splitext(final)[0]
        os.replace(tmp_archive, stem + ".tmp")
        os.replace(stem + ".tmp", final)
        self.count("snapshot_files_bytes", os.path.getsize(final) + len(digest))
        return final

    def build_snapshot(self, coll, name):
        """Writes the collection archive into storage/tmp; returns (path, sha256).
        Shards without a local replica carry only their replica state."""
        fd, arc = tempfile.mkstemp(prefix=name + "-arc-", dir=self.storage_tmp)
        self.record_birth(arc)
        h = hashlib.sha256()
        meta = coll.meta
        cdir = self.coll_dir(coll.name)
        local = set(self.local_sids(meta))
        try:
            with os.fdopen(fd, "wb") as f:
                tw = TarWriter(f, h)
                for s in shard_ids(meta):
                    sdir = os.path.join(cdir, str(s))
                    peers = {str(p): st for p, st in self.replicas(meta, s).items()}
                    if s in local:
                        tw.add_dir("%d" % s)
                        tw.add_dir("%d/segments" % s)
                        segdir = os.path.join(sdir, "segments")
                        for seg in sorted(os.listdir(segdir)) if os.path.isdir(segdir) else []:
                            if seg.endswith(".tar") and not seg.startswith("."):
                                tw.add_file("%d/segments/%s" % (s, seg), os.path.join(segdir, seg))
                        tw.add_dir("%d/wal" % s)
                        wal = os.path.join(sdir, "wal")
                        for w in sorted(os.listdir(wal)) if os.path.isdir(wal) else []:
                            tw.add_file("%d/wal/%s" % (s, w), os.path.join(wal, w))
                    tw.add_bytes("%d/replica_state.json" % s, json.dumps(
                        {"is_local": s in local, "this_peer_id": self.peer_id,
                         "peers": peers}).encode())
                    tw.add_bytes("%d/shard_config.json" % s, b'{"type":"ReplicaSet"}')
                tw.add_bytes("version.info", COLLECTION_VERSION.encode())
                tw.add_bytes("config.json", json.dumps(config_internal(meta), indent=2).encode())
                tw.add_bytes("shard_key_mapping.json", b"{}")
                tw.add_bytes("payload_index.json", json.dumps(
                    {"schema": meta.get("payload_index_schema", {})}).encode())
                tw.close()
        except BaseException:
            try:
                os.unlink(arc)
            except OSError:
                pass
            raise
        self.count("storage_tmp_bytes", os.path.getsize(arc))
        return arc, h.hexdigest()

    # shard operations, local or on the peer holding the replica ---------------
    def local_shard_op(self, meta, sid, op, args):
        """One operation on this peer's replica of shard `sid` (JSON in and out)."""
        sv = self.shard(meta["name"], sid)
        if op == "generate":
            build = tempfile.mkdtemp(prefix="gen-", dir=self.storage_tmp)
            try:
                sdir = os.path.join(build, "s")
                build_generated_shard(sdir, args["points"], args["dim"], args["distance"],
                                      args["seed"], sid, args["shard_count"], args["segname"],
                                      args["mtime"])
                self.commit_shard(meta, sid, sdir)
            finally:
                shutil.rmtree(build, ignore_errors=True)
            return True
        if not sv.exists():
            self.ensure_local_shards(meta)
        if op == "upsert":
            entries = {}
            for pid, vecs, line in args["points"]:
                entries[pid] = ({n: base64.b64decode(b) for n, b in vecs.items()},
                                line.encode("utf-8"))
            sv.upsert(entries, meta_vecs(meta), meta.get("payload_index_schema", {}))
            return True
        if op == "index":
            sv.create_index(args["field"], args["schema"])
            return True
        if op == "scan":
            off = args.get("offset")
            return sv.scan(off, args["limit"], args.get("filter"), args["with_payload"],
                           args["with_vector"])
        if op == "get":
            return sv.get(args["ids"], args["with_payload"], args["with_vector"])
        if op == "count":
            return sv.count_filtered(args.get("filter"))
        if op == "info":
            return sv.info()
        raise bad_request("unknown shard operation %s" % op)

    def peer_entry(self, peer):
        return self.view()["peers"].get(str(peer))

    def reachable(self, peer):
        """Whether a peer accepts TCP connections on its REST address (cached 0.2 s)."""
        if peer == self.peer_id:
            return self.serving
        now = time.time()
        hit = self.reach.get(peer)
        if hit is not None and now - hit[0] < 0.2:
            return hit[1]
        p = self.peer_entry(peer)
        ok = False
        if p is not None:
            try:
                socket.create_connection((p["host"], p["rest_port"]), timeout=0.5).close()
                ok = True
            except OSError:
                ok = False
        self.reach[peer] = (now, ok)
        return ok

    def internal(self, peer, method, path, body=None, timeout=120, sink=None):
        """A request to another peer's stand-in control API; PeerDown when it
        cannot be reached."""
        p = self.peer_entry(peer)
        if p is None:
            raise PeerDown(peer)
        try:
            conn = http.client.HTTPConnection(p["host"], p["rest_port"], timeout=timeout)
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            if sink is not None and r.status == 200:
                while True:
                    b = r.read(CHUNK)
                    if not b:
                        break
                    sink.write(b)
                conn.close()
                return True
            raw = r.read()
            conn.close()
        except (OSError, http.client.HTTPException) as e:
            self.reach[peer] = (time.time(), False)
            raise PeerDown("%s: %s" % (peer, e))
        try:
            j = json.loads(raw)
        except ValueError:
            raise service_error("peer %s answered %d: %r" % (peer, r.status, raw[:200]))
        if r.status != 200:
            raise ApiError(j.get("status", 500), j.get("error", "peer error"),
                           j.get("kind", "json"))
        return j["result"]

    def shard_op(self, meta, sid, peer, op, args):
        if peer == self.peer_id:
            return self.local_shard_op(meta, sid, op, args)
        return self.internal(peer, "POST", "/__standin/internal/shard",
                             {"collection": meta["name"], "uuid": meta["uuid"], "shard": sid,
                              "op": op, "args": args})

    def shard_write(self, meta, sid, op, args):
        """An update sent to every updatable replica (replica_set/update.rs:240-262,
        525-541); a replica that cannot be reached is marked Dead."""
        reps = self.replicas(meta, sid)
        targets = [p for p, s in sorted(reps.items(), key=lambda kv: kv[0] != self.peer_id)
                   if s in UPDATABLE_STATES]
        if not targets:
            raise service_error("The replica set for shard %d on peer %d has no active replica"
                                % (sid, self.peer_id))
        res = None
        ok = 0
        for peer in targets:
            try:
                r = self.shard_op(meta, sid, peer, op, args)
                ok += 1
                if res is None:
                    res = r
            except PeerDown:
                self.set_replica(meta["name"], sid, peer, "Dead")
        if ok == 0:
            raise service_error("The replica set for shard %d on peer %d has no active replica"
                                % (sid, self.peer_id))
        return res

    def shard_read(self, meta, sid, op, args):
        """A read from one active replica, the local one first
        (replica_set/execute_read_operation.rs:80-100)."""
        reps = self.replicas(meta, sid)
        order = sorted((p for p, s in reps.items() if s in ACTIVE_STATES),
                       key=lambda p: (p != self.peer_id, self.peer_order(p)))
        for peer in order:
            try:
                return self.shard_op(meta, sid, peer, op, args)
            except PeerDown:
                continue
        raise service_error("The replica set for shard %d on peer %d does not have enough "
                            "active replicas" % (sid, self.peer_id))

    def peer_order(self, peer):
        if not self.is_cluster:
            return 0
        p = self.peer_entry(peer)
        return p["index"] if p else 1 << 30

    def shard_info(self, meta, sid):
        """points_count, segments_count, payload_schema of one replica of a shard
        (local if there is one, else an active remote one; zeros if none answers)."""
        reps = self.replicas(meta, sid)
        if self.peer_id in reps:
            return self.local_shard_op(meta, sid, "info", {})
        for peer in sorted((p for p, s in reps.items() if s in ACTIVE_STATES),
                           key=self.peer_order):
            try:
                return self.shard_op(meta, sid, peer, "info", {})
            except (PeerDown, ApiError):
                continue
        return {"points_count": 0, "segments_count": 0, "payload_schema": {}}

    # replica states -----------------------------------------------------------
    def set_replica(self, cname, sid, peer, state, pin=None, only_if=None, uuid_=None):
        """Sets (adds; state None removes) a replica's state in the cluster view."""
        if not self.is_cluster:
            return False

        def fn(v):
            m = v["collections"].get(cname)
            if m is None or (uuid_ is not None and m["uuid"] != uuid_):
                return False
            reps = m["placement"].setdefault(str(sid), {})
            r = reps.get(str(peer))
            if only_if is not None and (r is None or r["state"] not in only_if):
                return False
            if state is None:
                reps.pop(str(peer), None)
            else:
                if r is None:
                    r = reps[str(peer)] = {"state": state, "since": time.time(), "pin": False}
                elif r["state"] != state:
                    r["state"] = state
                    r["since"] = time.time()
                if pin is not None:
                    r["pin"] = pin
            if state in ("Dead", None):
                m["transfers"] = [t for t in m.get("transfers", [])
                                  if not (t["shard_id"] == sid and str(peer) in
                                          (str(t["from"]), str(t["to"])))]
            return True
        return self.cluster.update(fn)

    def after_shard_recovery(self, meta, sid, priority):
        """State proposals after a shard snapshot was recovered on this peer
        (src/common/snapshots.rs:237-291). In cluster mode they are consensus
        proposals that land shortly after the answer (dead_delay_s)."""
        if not self.is_cluster:
            return
        reps = self.replicas(meta, sid)
        others = [p for p, s in reps.items() if p != self.peer_id and s in ACTIVE_STATES]
        delay = self.cluster.settings()["dead_delay_s"]
        name, uid = meta["name"], meta["uuid"]

        def apply():
            if not others or priority in ("no_sync", "snapshot"):
                self.set_replica(name, sid, self.peer_id, "Active", uuid_=uid)
            if others and priority == "snapshot":
                for p in others:
                    self.set_replica(name, sid, p, "Dead", only_if=ACTIVE_STATES, uuid_=uid)
            elif others and priority == "replica":
                self.set_replica(name, sid, self.peer_id, "Dead", uuid_=uid)
        t = threading.Timer(delay, apply)
        t.daemon = True
        t.start()

    # consensus loop (cluster mode) ----------------------------------------------
    def role(self, v):
        leader = v.get("leader") or 0
        if leader == self.peer_id:
            return "Leader"
        if leader == 0:
            return "PreCandidate"
        return "Follower"

    def loop(self):
        """What each peer's consensus thread does here: leader election when the
        leader is unreachable, Initializing -> Active of its new replicas,
        recovery of its Dead replicas by shard transfer
        (collection/mod.rs:677-757), removal of data it no longer holds."""
        last_gc = 0.0
        self.leader_down_since = None
        self.recovering = set()
        while True:
            time.sleep(0.05)
            if not self.serving:
                continue
            try:
                self.tick()
                if time.time() - last_gc > 1.0:
                    last_gc = time.time()
                    self.gc_local()
            except Exception:
                import traceback
                traceback.print_exc()

    def tick(self):
        v = self.view()
        s = self.cluster.settings()
        self.maybe_elect(v, s)
        now = time.time()
        for name, m in v["collections"].items():
            for sid_s, reps in m.get("placement", {}).items():
                r = reps.get(str(self.peer_id))
                if r is None:
                    continue
                sid = int(sid_s)
                if not os.path.isdir(os.path.join(self.coll_dir(name), sid_s)):
                    self.ensure_local_shards(m)
                if r["state"] == "Initializing":
                    if not r.get("pin") and now - r["since"] >= s["activate_delay_s"]:
                        self.set_replica(name, sid, self.peer_id, "Active",
                                         only_if=("Initializing",), uuid_=m["uuid"])
                elif r["state"] == "Dead" and not r.get("pin"):
                    self.start_recovery(m, sid)

    def maybe_elect(self, v, s):
        leader = v.get("leader") or 0
        if not s["auto_elect"] or v.get("leader_pinned"):
            self.leader_down_since = None
            return
        if leader and self.reachable(leader):
            self.leader_down_since = None
            return
        if self.leader_down_since is None:
            self.leader_down_since = time.time()
            return
        if time.time() - self.leader_down_since < s["election_timeout_s"]:
            return
        peers = sorted(v["peers"].items(), key=lambda kv: kv[1]["index"])
        alive = [int(k) for k, _ in peers if self.reachable(int(k))]
        new = alive[0] if len(alive) * 2 > len(peers) else 0

        def fn(vv):
            if (vv.get("leader") or 0) != leader or vv.get("leader_pinned") or new == leader:
                return
            vv["leader"] = new
            vv["term"] = vv.get("term", 0) + 1
        self.cluster.update(fn)
        self.leader_down_since = None

    def start_recovery(self, m, sid):
        key = (m["name"], sid)
        with self.lock:
            if key in self.recovering:
                return
            if any(t["shard_id"] == sid for t in m.get("transfers", [])):
                return
            self.recovering.add(key)
        th = threading.Thread(target=self._recover, args=(copy.deepcopy(m), sid), daemon=True)
        th.start()

    def _recover(self, m, sid):
        name, uid = m["name"], m["uuid"]
        try:
            reps = self.replicas(m, sid)
            srcs = sorted((p for p, st in reps.items()
                           if p != self.peer_id and st in ACTIVE_STATES and self.reachable(p)),
                          key=self.peer_order)
            if not srcs:
                return
            src = srcs[0]
            s = self.cluster.settings()
            method = s["transfer_method"]
            recv = "Partial" if method == "stream_records" else "Recovery"

            def start(v):
                mm = v["collections"].get(name)
                if mm is None or mm["uuid"] != uid:
                    return False
                rs = mm["placement"].get(str(sid), {})
                r = rs.get(str(self.peer_id))
                if r is None or r["state"] != "Dead" or r.get("pin"):
                    return False
                if any(t["shard_id"] == sid for t in mm.get("transfers", [])):
                    return False
                if rs.get(str(src), {}).get("state") not in ACTIVE_STATES:
                    return False
                mm.setdefault("transfers", []).append(
                    {"shard_id": sid, "from": src, "to": self.peer_id, "sync": True,
                     "method": method})
                r["state"] = recv
                r["since"] = time.time()
                return True
            if not self.cluster.update(start):
                return
            ok = False
            try:
                time.sleep(s["transfer_delay_s"])
                self.pull_shard(m, sid, src)
                ok = True
            except Exception as e:
                sys.stderr.write("standin: transfer of %s/%d from %d failed: %r\n"
                                 % (name, sid, src, e))

            def finish(v):
                mm = v["collections"].get(name)
                if mm is None or mm["uuid"] != uid:
                    return
                mine = [t for t in mm.get("transfers", []) if t["shard_id"] == sid and
                        t["to"] == self.peer_id and t["from"] == src]
                if not mine:
                    return  # aborted meanwhile
                mm["transfers"] = [t for t in mm["transfers"] if t not in mine]
                r = mm["placement"].get(str(sid), {}).get(str(self.peer_id))
                if r is not None and r["state"] == recv:
                    r["state"] = "Active" if ok else "Dead"
                    r["since"] = time.time()
            self.cluster.update(finish)
        finally:
            with self.lock:
                self.recovering.discard((name, sid))

    def pull_shard(self, m, sid, src):
        """Copies the shard's data from peer `src` into the local replica."""
        fd, path = tempfile.mkstemp(prefix="transfer-", dir=self.storage_tmp)
        scratch = None
        try:
            with os.fdopen(fd, "wb") as f:
                q = urllib.parse.urlencode({"collection": m["name"], "uuid": m["uuid"],
                                            "shard": sid})
                self.internal(src, "GET", "/__standin/internal/shard-archive?" + q, sink=f,
                              timeout=600)
            scratch = tempfile.mkdtemp(prefix="transfer-", dir=self.storage_tmp)
            build = os.path.join(scratch, "s")
            prepare_shard(path, validate_archive(path), "", build, os.path.basename(path),
                          False, scratch)
            self.commit_shard(m, sid, build)
        finally:
            os.unlink(path)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    def cluster_status(self):
        """GET /cluster (lib/storage/src/types.rs:132-226, consensus_manager.rs:224-259)."""
        if not self.is_cluster:
            return {"status": "disabled"}
        v = self.view()
        peers = {k: {"uri": p["uri"]} for k, p in
                 sorted(v["peers"].items(), key=lambda kv: kv[1]["index"])}
        failures = {}
        for k, p in v["peers"].items():
            if int(k) != self.peer_id and not self.reachable(int(k)):
                failures[p["uri"]] = {
                    "count": 1,
                    "latest_error": "Failed to send message to %s: transport error" % p["uri"],
                    "latest_error_timestamp": rfc3339_now()}
        return {"status": "enabled", "peer_id": self.peer_id, "peers": peers,
                "raft_info": {"term": v.get("term", 0), "commit": v.get("commit", 0),
                              "pending_operations": 0, "leader": v.get("leader") or 0,
                              "role": self.role(v), "is_voter": True},
                "consensus_thread_status": {"consensus_thread_status": "working",
                                            "last_update": rfc3339_now()},
                "message_send_failures": failures}

    def wait_active(self, name, timeout):
        """Waits (up to timeout) until every replica of the collection is Active."""
        end = time.time() + timeout
        while time.time() < end:
            c = self.get(name, resolve=False)
            if c is None or all(s == "Active" for sid in shard_ids(c.meta)
                                for s in self.replicas(c.meta, sid).values()):
                return True
            time.sleep(0.05)
        return False

    def leader_established(self):
        if not self.is_cluster:
            return True
        leader = self.view().get("leader") or 0
        return leader != 0 and self.reachable(leader)


# --------------------------------------------------------------------------
# Restore


def restore_collection(state, name, archive, sha256, priority="snapshot"):
    """Collection snapshot recovery (recover.rs:71-343): a missing collection is
    created from the snapshot's config.json, an existing one must be
    compatible; then every shard held on this peer gets the snapshot's data."""
    members = validate_archive(archive)
    scratch = tempfile.mkdtemp(prefix="col-%s-recovery-" % name, dir=state.snap_tmp)
    label = os.path.basename(archive)

    def count(n):
        state.count("snapshot_tmp_restore_bytes", n)
    try:
        if "config.json" not in members or not members["config.json"].isreg():
            raise service_error("Can't read collection config due to No such file or directory "
                                "(os error 2) at %s/config.json" % scratch)
        with open(archive, "rb") as f:
            m = members["config.json"]
            f.seek(m.offset_data)
            raw = f.read(m.size)
            pis = {}
            pm = members.get("payload_index.json")
            if pm is not None and pm.isreg():
                f.seek(pm.offset_data)
                try:
                    pis = json.loads(f.read(pm.size)).get("schema") or {}
                except (ValueError, AttributeError):
                    pis = {}
        try:
            cfg = json.loads(raw)
            params = cfg["params"]
            vec = params["vectors"]
            vecs = vector_dims(vec)
            shards = int(params.get("shard_number", 1))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise service_error("Can't read collection config due to invalid format "
                                "at %s/config.json" % scratch)
        for s in range(shards):
            if "%d/shard_config.json" % s not in members:
                raise service_error("Can't read shard config at %s/%d" % (scratch, s))
        config = default_config(vec, shards)
        for k in config:
            if k in cfg:
                config[k] = cfg[k]
        coll = state.get(name)
        if coll is not None:
            m = coll.meta
            if (meta_vecs(m), m["shard_number"]) != (vecs, shards):
                if list(vecs) == [""] and list(meta_vecs(m)) == [""]:
                    dim, distance = vecs[""]
                    raise bad_input(
                        "Snapshot is not compatible with existing collection: Collection "
                        "config is not compatible: vectors {size: %d, distance: %s}, "
                        "shard_number %d in snapshot vs vectors {size: %d, distance: %s}, "
                        "shard_number %d in collection"
                        % (dim, distance, shards, m["dim"], m["distance"], m["shard_number"]))
                raise bad_input("Snapshot is not compatible with existing collection: "
                                "Collection config is not compatible")
        elif not state.is_cluster:
            meta = new_meta(name, config)
            meta["payload_index_schema"] = pis
            build = os.path.join(scratch, "collection")
            os.makedirs(build)
            for s in shard_ids(meta):
                prepare_shard(archive, members, "%d/" % s, os.path.join(build, str(s)), label,
                              True, os.path.join(scratch, str(s)), count)
            meta["restored_from_sha256"] = sha256
            meta["restores"] = 1
            newc = Collection(meta)
            state.save_meta(newc, build)
            state._install(name, build, newc)
            return
        else:
            state.create_collection(name, config)
            state.update_meta(name, lambda mm: mm.update(payload_index_schema=pis))
            state.wait_active(name, 10)  # created through consensus, like a PUT
            coll = state.get(name)
        meta = coll.meta
        builds = {}
        for s in state.local_sids(meta):
            has = [any(n == "%d/%s" % (s, d) or n.startswith("%d/%s/" % (s, d)) for n in members)
                   for d in ("wal", "segments")]
            if state.is_cluster and not all(has):
                continue  # "Shard is not in snapshot" (recover.rs:225-238)
            if s < shards:
                builds[s] = os.path.join(scratch, "s%d" % s)
                prepare_shard(archive, members, "%d/" % s, builds[s], label,
                              not state.is_cluster, os.path.join(scratch, str(s)), count)
        for s, b in builds.items():
            state.protect(meta["name"], s)
            state.commit_shard(meta, s, b)

        def mark(mm):
            mm["restored_from_sha256"] = sha256
            mm["restores"] = mm.get("restores", 0) + 1
        state.update_meta(meta["name"], mark)
        for s in builds:
            state.after_shard_recovery(meta, s, priority)
    except SegmentError as e:
        raise service_error(str(e))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def restore_shard(state, coll, sid, archive, label):
    """Shard snapshot recovery into an existing shard (restore_shard_snapshot,
    shard_holder/mod.rs:980-1052): the archive is validated and unpacked into a
    scratch dir under snapshots/tmp, then replaces the local replica's data; a
    replica that fails to load is left as a Dummy shard."""
    meta = coll.meta
    members = validate_archive(archive)
    scratch = tempfile.mkdtemp(prefix="%s-shard-%d-%s" % (coll.name, sid, label),
                               dir=state.snap_tmp)
    try:
        build = os.path.join(scratch, "shard")
        try:
            prepare_shard(archive, members, "", build, label, not state.is_cluster, scratch,
                          lambda n: state.count("snapshot_tmp_restore_bytes", n))
        except SegmentError as e:
            state.protect(coll.name, sid)
            state.install_dummy(meta, sid)
            raise service_error(str(e))
        state.protect(coll.name, sid)
        state.commit_shard(meta, sid, build)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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

    def _drop_connection(self):
        """Ends the connection at once, whatever was (not) answered."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

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
            if n == 1 and s[0] == "version" and m == "POST":
                return self.c_version, ()
            if n == 1 and s[0] == "counters" and m == "DELETE":
                return self.c_counters_reset, ()
            if n == 1 and s[0] == "stop" and m == "POST":
                return self.c_stop, ()
            if n == 1 and s[0] == "cluster" and m == "GET":
                return self.c_cluster_view, ()
            if n == 2 and s[0] == "cluster":
                if s[1] == "leader" and m == "POST":
                    return self.c_cluster_leader, ()
                if s[1] == "replica" and m == "POST":
                    return self.c_cluster_replica, ()
                if s[1] == "transfer" and m in ("POST", "DELETE"):
                    return self.c_cluster_transfer, ()
                if s[1] == "settings" and m == "POST":
                    return self.c_cluster_settings, ()
            if n == 2 and s[0] == "internal":
                if s[1] == "shard" and m == "POST":
                    return self.c_internal_shard, ()
                if s[1] == "shard-archive" and m == "GET":
                    return self.c_internal_archive, ()
            return None
        if m == "GET" and n == 1 and s[0] == "":
            return self.h_root, ()
        if m == "GET" and n == 1 and s[0] in ("healthz", "livez"):
            return self.h_healthz, ()
        if m == "GET" and n == 1 and s[0] == "readyz":
            return self.h_readyz, ()
        if m == "GET" and n == 1 and s[0] == "metrics":
            return self.h_metrics, ()
        if m == "GET" and n == 1 and s[0] == "cluster":
            return self.h_cluster, ()
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
            if n == 3 and s[2] == "cluster" and m == "GET":
                return self.h_collection_cluster, (s[1],)
            if n == 3 and s[2] == "index" and m == "PUT":
                return self.h_create_index, (s[1],)
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
            if n == 5 and s[2] == "shards" and s[4] == "snapshot" and m == "GET":
                return self.h_shard_stream, (s[1], s[3])
            if n == 6 and s[2] == "shards" and s[4] == "snapshots" and s[5] == "upload" \
                    and m == "POST":
                return self.h_shard_upload, (s[1], s[3])
            # points routes are registered last (src/actix/mod.rs:159-164)
            if n == 3 and s[2] == "points":
                if m == "PUT":
                    return self.h_upsert, (s[1],)
                if m == "POST":
                    return self.h_retrieve, (s[1],)
            if n == 4 and s[2] == "points":
                if s[3] == "scroll" and m == "POST":
                    return self.h_scroll, (s[1],)
                if s[3] == "count" and m == "POST":
                    return self.h_count, (s[1],)
                if m == "GET":
                    return self.h_get_point, (s[1], s[3])
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
        self.send_json(200, {"title": "qdrant - vector search engine",
                             "version": self.state.version, "commit": QDRANT_COMMIT})

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
        names = st.names()
        vecs = 0
        for n in names:
            c = st.get(n, resolve=False)
            if c is not None:
                vecs += sum(st.shard(n, s).count() for s in st.local_sids(c.meta))
        text = ("# HELP app_info information about qdrant server\n# TYPE app_info gauge\n"
                'app_info{name="qdrant",version="%s"} 1\n'
                "# HELP app_status_recovery_mode features enabled in qdrant server\n"
                "# TYPE app_status_recovery_mode gauge\napp_status_recovery_mode 0\n"
                "# HELP collections_total number of collections\n"
                "# TYPE collections_total gauge\ncollections_total %d\n"
                "# HELP collections_vector_total total number of vectors in all collections\n"
                "# TYPE collections_vector_total gauge\ncollections_vector_total %d\n"
                % (st.version, len(names), vecs))
        self._send(200, text.encode(), "text/plain; version=0.0.4")

    def h_cluster(self, t0):
        """GET /cluster (src/actix/api/cluster_api.rs:32-41). With the fault
        drop_cluster the connection is closed without an answer (a peer
        whose HTTP worker died)."""
        if self.state.faults.get("drop_cluster"):
            self._drop_connection()
            return
        self.send_ok(self.state.cluster_status(), t0)

    # ------------------------------------------------------------ collections
    def h_list_collections(self, t0):
        names = self.state.names()
        random.shuffle(names)  # HashMap order
        self.send_ok({"collections": [{"name": x} for x in names]}, t0)

    def h_exists(self, t0, name):
        self.send_ok({"exists": self.state.get(name) is not None}, t0)

    def need_coll(self, name, kind="json"):
        coll = self.state.get(name)
        if coll is None:
            raise not_found_collection(name, kind)
        return coll

    def h_get_collection(self, t0, name):
        """CollectionInfo (src/common/collections.rs:55-72, collection_ops.rs:283-330):
        counts and payload_schema summed over one replica of every shard."""
        st = self.state
        coll = self.need_coll(name)
        m = coll.meta
        cfg = config_internal(m)
        cfg.pop("uuid", None)
        points = segs = 0
        schema = {}
        for sid in shard_ids(m):
            info = st.shard_info(m, sid)
            points += info["points_count"]
            segs += info["segments_count"]
            for field, (fs, n) in info["payload_schema"].items():
                if field in schema:
                    schema[field][1] += n
                else:
                    schema[field] = [fs, n]
        info = {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,
            "points_count": points,
            "segments_count": segs,
            "config": cfg,
            "payload_schema": {f: schema_info(fs, n) for f, (fs, n) in schema.items()},
        }
        self.send_ok(info, t0)

    def timeout_param(self):
        v = self.q("timeout")
        if v is None:
            return None
        try:
            t = int(v)
        except ValueError:
            raise ApiError(400, "Query deserialize error: invalid digit found in string", "text")
        if t < 1:
            raise ApiError(422, "Validation error in query parameters: [timeout: value %d "
                           "invalid, must be 1 or larger]" % t, zero_time=True)
        return t

    def h_put_collection(self, t0, name):
        """PUT /collections/{c} (collections_api.rs:108-132): synchronous, only
        `timeout`; in cluster mode it waits up to the timeout (10 s) for every
        replica to become Active and answers true either way
        (dispatcher.rs:150-212)."""
        check_name(name)
        body = self.json_body()
        timeout = self.timeout_param()
        if not isinstance(body, dict):
            raise format_error("invalid type: expected struct CreateCollection")
        st = self.state
        default_shards = len(st.view()["peers"]) if st.is_cluster else 1
        config = config_from_body(body, default_shards)
        self.need_manage()
        limit = timeout or 10
        if st.is_cluster and not st.leader_established():
            end = time.time() + limit
            while time.time() < end and not st.leader_established():
                time.sleep(0.05)
            if not st.leader_established():
                raise service_error("Failed to propose operation: leader is not established "
                                    "within %d secs" % limit)
        with st.name_lock(name):
            st.create_collection(name, config)
        if st.is_cluster:
            st.wait_active(name, limit)
        self.send_ok(True, t0)

    def h_delete_collection(self, t0, name):
        """DELETE /collections/{c}: false for a missing name or an alias."""
        self.timeout_param()
        self.need_manage()
        self.send_ok(self.state.delete_collection(name), t0)

    def h_update_aliases(self, t0):
        """POST /collections/aliases (collections_api.rs:177-193)."""
        body = self.json_body()
        self.timeout_param()
        check_alias_actions(body)
        self.need_manage()
        self.send_ok(self.state.change_aliases(body["actions"]), t0)

    def h_list_aliases(self, t0, name):
        """GET /aliases, GET /collections/{c}/aliases: no existence check, aliases
        whose target is exactly {c} (alias_mapping.rs:114-122)."""
        out = [{"alias_name": a, "collection_name": c}
               for a, c in self.state.aliases().items() if name is None or c == name]
        random.shuffle(out)  # HashMap order
        self.send_ok({"aliases": out}, t0)

    def h_collection_cluster(self, t0, name):
        """GET /collections/{c}/cluster (collection_ops.rs:332-398)."""
        st = self.state
        coll = self.need_coll(name)
        m = coll.meta
        me = st.peer_id
        local, remote = [], []
        for sid in shard_ids(m):
            reps = st.replicas(m, sid)
            if me in reps:
                local.append({"shard_id": sid, "points_count": st.shard(m["name"], sid).count(),
                              "state": reps[me]})
            for p in sorted(reps, key=st.peer_order):
                if p != me:
                    remote.append({"shard_id": sid, "peer_id": p, "state": reps[p]})
        transfers = []
        for t in m.get("transfers", []):
            d = {"shard_id": t["shard_id"], "from": t["from"], "to": t["to"], "sync": t["sync"]}
            if t.get("method"):
                d["method"] = t["method"]
            if t["from"] == me:
                d["comment"] = "Transferring records (0/0), started 0s ago, ETA: unknown"
            transfers.append(d)
        self.send_ok({"peer_id": me, "shard_count": len(shard_ids(m)), "local_shards": local,
                      "remote_shards": remote, "shard_transfers": transfers}, t0)

    # ------------------------------------------------------------ indexes, points
    def update_result(self, wait):
        return {"operation_id": self.state.next_op(),
                "status": "completed" if wait else "acknowledged"}

    def update_wait(self):
        """`wait` of point and index updates: false by default (update_api.rs:55, :447)."""
        v = self.q("wait")
        return False if v is None else parse_bool(v)

    def run_update(self, t0, wait, fn):
        """An update: with wait=false it is applied after the answer."""
        if wait:
            fn()
            self.send_ok(self.update_result(True), t0)
            return
        res = self.update_result(False)

        def bg():
            time.sleep(0.05)
            try:
                fn()
            except Exception as e:
                self.log_message("background update failed: %r", e)
        threading.Thread(target=bg, daemon=True).start()
        self.send_ok(res, t0)

    def h_create_index(self, t0, name):
        """PUT /collections/{c}/index (update_api.rs:437-462, update.rs:646-682):
        the index enters the collection's schema at once, then every replica of
        every shard builds it; the `index_delay_s` fault delays that build."""
        body = self.json_body()
        wait = self.update_wait()
        if not isinstance(body, dict) or not isinstance(body.get("field_name"), str):
            raise format_error("missing field `field_name`")
        schema = body.get("field_schema", body.get("field_type"))
        if schema is not None and not valid_field_schema(schema):
            raise format_error("field_schema: data did not match any variant of untagged enum "
                               "PayloadFieldSchema")
        st = self.state
        coll = self.need_coll(name)
        if schema is None:
            raise bad_request("Can't auto-detect field type, please specify `field_schema` in "
                              "the request")
        self.need_manage()
        field = body["field_name"]
        st.update_meta(coll.name, lambda m: m.setdefault("payload_index_schema", {})
                       .__setitem__(field, schema))
        meta = st.get(coll.name, resolve=False).meta
        with st.lock:
            delay = st.faults.get("index_delay_s", 0)

        def build():
            if delay:
                time.sleep(delay)
            for sid in shard_ids(meta):
                st.shard_write(meta, sid, "index", {"field": field, "schema": schema})
        self.run_update(t0, wait, build)

    def h_upsert(self, t0, name):
        """PUT /collections/{c}/points (update_api.rs:38-80, rest/schema.rs:947-1020)."""
        body = self.json_body()
        wait = self.update_wait()
        st = self.state
        if isinstance(body, dict) and isinstance(body.get("points"), list):
            raw = body["points"]
        elif isinstance(body, dict) and isinstance(body.get("batch"), dict):
            b = body["batch"]
            ids = b.get("ids") or []
            vs = b.get("vectors")
            pls = b.get("payloads") or [None] * len(ids)
            if isinstance(vs, dict):
                raw = [{"id": i, "vector": {n: vs[n][k] for n in vs}, "payload": pls[k]}
                       for k, i in enumerate(ids)]
            else:
                raw = [{"id": i, "vector": (vs or [None] * len(ids))[k], "payload": pls[k]}
                       for k, i in enumerate(ids)]
        else:
            raise format_error("Invalid PointInsertOperations format")
        coll = self.need_coll(name)
        self.need_manage()
        meta = coll.meta
        vecs = meta_vecs(meta)
        sids = shard_ids(meta)
        if not sids:
            raise bad_input("Shard key not specified")
        per_shard = {}
        for p in raw:
            if not isinstance(p, dict):
                raise format_error("Invalid PointInsertOperations format")
            pid = parse_point_id(p.get("id"))
            if pid is None:
                raise format_error("id: data did not match any variant of untagged enum "
                                   "ExtendedPointId")
            v = p.get("vector", p.get("vectors"))
            if v is None:
                v = {}
            if not isinstance(v, dict):
                v = {"": v}
            out = {}
            for vn, vv in v.items():
                if vn not in vecs:
                    raise bad_input("Not existing vector name error: %s" % vn)
                if isinstance(vv, dict):
                    raise bad_input("stand-in: sparse vectors are not modelled")
                out[vn] = base64.b64encode(vector_f32(vv, vecs[vn][0], vecs[vn][1])).decode()
            missing = [vn for vn in vecs if vn not in out]
            if missing:
                raise bad_input("stand-in: point %s has no vector `%s` (every vector is "
                                "required here)" % (pid, missing[0]))
            payload = p.get("payload")
            if payload is not None and not isinstance(payload, dict):
                raise format_error("payload: invalid type, expected a map")
            line = json.dumps(payload or {}, separators=(",", ":")) + "\n"
            per_shard.setdefault(sids[shard_of(pid, len(sids))], {})[pid] = (pid, out, line)

        def apply():
            for sid, pts in per_shard.items():
                st.shard_write(meta, sid, "upsert", {"points": list(pts.values())})
        self.run_update(t0, wait, apply)

    def read_params(self, body):
        wp = body.get("with_payload", True)
        wv = body.get("with_vector", body.get("with_vectors", False))
        return wp, wv

    def h_scroll(self, t0, name):
        """POST /collections/{c}/points/scroll (retrieve_api.rs:185-238,
        point_ops.rs:260-374): merged over shards, ordered by id."""
        body = self.json_body()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise format_error("invalid type, expected struct ScrollRequest")
        st = self.state
        coll = self.need_coll(name)
        meta = coll.meta
        limit = body.get("limit") or 10
        offset = body.get("offset")
        if offset is not None:
            offset = parse_point_id(offset)
            if offset is None:
                raise format_error("offset: data did not match any variant of untagged enum "
                                   "ExtendedPointId")
        wp, wv = self.read_params(body)
        flt = body.get("filter")
        args = {"offset": offset, "limit": limit + 1, "filter": flt, "with_payload": wp,
                "with_vector": wv}
        recs = []
        for sid in shard_ids(meta):
            recs.extend(st.shard_read(meta, sid, "scan", args))
        recs.sort(key=lambda r: id_key(r["id"]))
        nxt = recs[limit]["id"] if len(recs) > limit else None
        self.send_ok({"points": recs[:limit], "next_page_offset": nxt}, t0)

    def h_count(self, t0, name):
        """POST /collections/{c}/points/count (count_api.rs:16-69); exact by default."""
        body = self.json_body()
        if not isinstance(body, dict):
            raise format_error("invalid type, expected struct CountRequest")
        st = self.state
        coll = self.need_coll(name)
        meta = coll.meta
        n = 0
        for sid in shard_ids(meta):
            n += st.shard_read(meta, sid, "count", {"filter": body.get("filter")})
        self.send_ok({"count": n}, t0)

    def h_get_point(self, t0, name, raw_id):
        """GET /collections/{c}/points/{id} (retrieve_api.rs:41-124)."""
        st = self.state
        pid = parse_path_id(raw_id)
        if pid is None:
            raise bad_input('Can not recognize "%s" as point id' % raw_id)
        coll = self.need_coll(name)
        meta = coll.meta
        sids = shard_ids(meta)
        recs = []
        if sids:
            sid = sids[shard_of(pid, len(sids))]
            recs = st.shard_read(meta, sid, "get", {"ids": [pid], "with_payload": True,
                                                    "with_vector": True})
        if not recs:
            raise ApiError(404, "Not found: Point with id %s does not exists!" % pid)
        self.send_ok(recs[0], t0)

    def h_retrieve(self, t0, name):
        """POST /collections/{c}/points: records of the given ids, missing ones left out."""
        body = self.json_body()
        if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
            raise format_error("missing field `ids`")
        st = self.state
        coll = self.need_coll(name)
        meta = coll.meta
        sids = shard_ids(meta)
        wp = body.get("with_payload", True)
        wv = body.get("with_vector", body.get("with_vectors", False))
        by = {}
        order = []
        for x in body["ids"]:
            pid = parse_point_id(x)
            if pid is None:
                raise format_error("ids: data did not match any variant of untagged enum "
                                   "ExtendedPointId")
            order.append(pid)
            if sids:
                by.setdefault(sids[shard_of(pid, len(sids))], []).append(pid)
        found = {}
        for sid, pids in by.items():
            for r in st.shard_read(meta, sid, "get", {"ids": pids, "with_payload": wp,
                                                      "with_vector": wv}):
                found[r["id"]] = r
        self.send_ok([found[p] for p in dict.fromkeys(order) if p in found], t0)

    # ------------------------------------------------------------ shard snapshots
    def shard_path_id(self, raw, kind="text"):
        if not raw.isdigit() or int(raw) >= 1 << 32:
            raise ApiError(404, 'can not parse "%s" to a u32' % raw, kind)
        return int(raw)

    def h_shard_stream(self, t0, name, raw_sid):
        """GET /collections/{c}/shards/{id}/snapshot (snapshot_api.rs:394-411,
        src/common/snapshots.rs:43-58, shard_holder/mod.rs:919-973). Checks in
        order: write access (403), collection (404), snapshots temp dir (500),
        shard exists (404), shard held locally (400) -- all text/plain. Then
        200, chunked, no Content-Length, the tar built on the fly; a failure
        after the headers just ends the chunked body cleanly (a truncated tar)."""
        st = self.state
        sid = self.shard_path_id(raw_sid)
        if self.access != "rw":
            raise ApiError(403, "Forbidden: Global manage access is required", "text")
        coll = self.need_coll(name, "text")
        with st.lock:
            fail = st.faults.get("fail_shard_streams", 0)
            if fail:
                st.faults["fail_shard_streams"] = fail - 1
        if fail:
            raise ApiError(500, "Service internal error: Failed to create snapshots temp "
                           "directory at ./snapshots/tmp: No space left on device (os error "
                           "28)", "text")
        meta = coll.meta
        if sid not in shard_ids(meta):
            raise ApiError(404, "Not found: shard %d not found" % sid, "text")
        reps = st.replicas(meta, sid)
        forward_proxy = any(t["shard_id"] == sid and t["from"] == st.peer_id and
                            t.get("method") in ("stream_records", "resharding_stream_records")
                            for t in meta.get("transfers", []))
        if st.peer_id not in reps or forward_proxy:
            raise ApiError(400, "Wrong input: Shard %d is not a local or queue proxy shard" % sid,
                           "text")
        st.ensure_local_shards(meta)
        fname = "%s-shard-%d-%s.snapshot" % (coll.name, sid,
                                              utc_from_ts(st.now()).strftime("%Y-%m-%d-%H-%M-%S"))
        scratch = tempfile.mkdtemp(prefix=fname + "-temp-", dir=st.snap_tmp)
        with st.lock:
            st.counters["shard_streams"] += 1
            cut = None
            only = st.faults.get("cut_shard_stream_shard")
            if "cut_shard_stream_after" in st.faults and (only is None or only == sid):
                cut = st.faults.pop("cut_shard_stream_after")
                st.faults.pop("cut_shard_stream_shard", None)
            pause_after = st.faults.get("pause_shard_stream_after")
            pause_s = st.faults.get("pause_shard_stream_s", 0)
        enc = self._encoding()
        headers = [("Content-Type", "application/octet-stream"),
                   ("Content-Disposition", 'attachment; filename="%s"' % fname)]
        if enc:
            headers += [("Content-Encoding", enc), ("Vary", "accept-encoding")]
        headers.append(("Transfer-Encoding", "chunked"))
        self._start(200, headers)
        sink = ChunkedSink(self.wfile, cut_after=cut, pause_after=pause_after, pause_s=pause_s,
                           encoding=enc)
        replica_state = {"is_local": True, "this_peer_id": st.peer_id,
                         "peers": {str(p): s for p, s in reps.items()}}
        try:
            try:
                st.shard(coll.name, sid).write_stream(
                    TarWriter(sink), scratch, replica_state,
                    lambda n: st.count("snapshot_tmp_stream_bytes", n))
            except (StreamCut, DummyShardError):
                pass
            except (ConnectionError, BrokenPipeError, socket.timeout):
                raise
            except Exception as e:  # Qdrant's writer task fails silently
                self.log_message("shard stream ended early: %r", e)
            sink.finish()
        except (ConnectionError, BrokenPipeError, socket.timeout):
            self.close_connection = True
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def h_shard_upload(self, t0, name, raw_sid):
        """POST /collections/{c}/shards/{id}/snapshots/upload (snapshot_api.rs:448-511):
        plain web::Query (unknown priority or bad wait: 400 text/plain, checksum
        not validated), multipart part `snapshot` spooled to snapshots/tmp/upload
        and deleted afterwards; then manage access, checksum, collection and
        shard existence, the restore, and the replica state proposals
        (src/common/snapshots.rs:211-300). Answers result null."""
        st = self.state
        sid = self.shard_path_id(raw_sid)
        v = self.q("wait")
        if v is not None and v not in ("true", "false"):
            raise ApiError(400, "Query deserialize error: provided string was not `true` or "
                           "`false`", "text")
        wait = v != "false"
        prio = self.q("priority")
        if prio is not None and prio not in ("no_sync", "snapshot", "replica"):
            raise ApiError(400, "Query deserialize error: unknown variant `%s`, expected one of "
                           "`no_sync`, `snapshot`, `replica`" % prio, "text")
        checksum = self.q("checksum")
        tmp, fname, size, digest = self.read_upload()
        rec = {"collection": name, "shard": sid, "filename": fname, "sha256": digest,
               "size": size, "checksum_param": checksum, "priority": prio, "wait": wait,
               "status": None}
        with st.lock:
            st.counters["shard_uploads"] += 1
            st.uploads.append(rec)
            nfail = st.faults.get("fail_shard_uploads", 0)
            if nfail:
                st.faults["fail_shard_uploads"] = nfail - 1
            fstatus = st.faults.get("upload_status", 500)

        def op():
            try:
                self.need_manage()
                if checksum is not None and checksum.strip().lower() != digest:
                    raise ApiError(400, "Checksum mismatch: expected %s, actual %s"
                                   % (digest, checksum))
                coll = self.need_coll(name)
                if sid not in shard_ids(coll.meta):
                    raise ApiError(404, "Not found: shard %d not found" % sid)
                if nfail:
                    err = service_error("Failed to restore shard snapshot (injected fault)")
                    err.status = fstatus
                    raise err
                with st.name_lock(coll.name):
                    restore_shard(st, coll, sid, tmp, os.path.basename(tmp))
                    st.after_shard_recovery(coll.meta, sid, prio or "snapshot")
                rec["status"] = 200
                return None
            except ApiError as e:
                rec["status"] = e.status
                raise
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

        self.run_op(t0, wait, op)

    def read_upload(self):
        """The multipart part `snapshot`, spooled to snapshots/tmp/upload:
        (path, filename, size, sha256)."""
        st = self.state
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
        m = re.search(r'boundary="([^"]+)"', rest) or re.search(r"boundary=([^;\s]+)", rest)
        if not m:
            raise ApiError(400, "Multipart boundary is not found", "text")
        h = hashlib.sha256()
        updir = os.path.join(st.snap_tmp, "upload")
        os.makedirs(updir, exist_ok=True)
        try:
            tmp, fname, size = parse_multipart_to_file(self.body, m.group(1).encode(),
                                                       "snapshot", updir, h)
        except MultipartError as e:
            raise ApiError(400, str(e), "text")
        if tmp is None:
            raise ApiError(400, "Required field is missing: snapshot", "text")
        st.record_birth(tmp)
        st.count("snapshot_tmp_restore_bytes", size)
        return tmp, fname, size, h.hexdigest()

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
                    self._drop_connection()
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
        st.count("snapshot_tmp_restore_bytes", size)
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
                    restore_collection(st, name, dst, digest, prio or "snapshot")
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
                    restore_collection(st, name, path, digest, prio or "snapshot")
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
                    st.count("snapshot_tmp_restore_bytes", len(b))
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
                names = st.names()
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
                    aliases = st.aliases()
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
            default_shards = len(st.view()["peers"]) if st.is_cluster else 1
            shards = int(v.get("shard_number", default_shards))
            rf = int(v.get("replication_factor", 1))
            distance = str(v.get("distance", "Cosine"))
            if distance not in DISTANCES:
                raise ValueError("unknown distance %s" % distance)
            if dim <= 0 or shards <= 0 or rf <= 0:
                raise ValueError("dim, shard_number and replication_factor must be positive")
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
        st.generate(name, points, dim, shards, distance, rf)
        secs = time.time() - t
        self.c_reply(200, {"name": name, "points_count": points, "dim": dim,
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
                  "fail_uploads": int, "upload_status": int,
                  "cut_shard_stream_after": int, "cut_shard_stream_shard": int,
                  "pause_shard_stream_after": int, "pause_shard_stream_s": float,
                  "fail_shard_streams": int, "fail_shard_uploads": int,
                  "index_delay_s": float, "drop_cluster": bool}

    ZERO_OK_FAULTS = ("cut_shard_stream_after", "cut_shard_stream_shard",
                      "pause_shard_stream_after")

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
                elif k in self.ZERO_OK_FAULTS:
                    if val < 0:
                        st.faults.pop(k, None)
                    else:
                        st.faults[k] = val
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
        colls = {}
        for n in st.names():
            c = st.get(n, resolve=False)
            if c is None:
                continue
            m = c.meta
            local = st.local_sids(m)
            colls[n] = {"points_count": sum(st.shard(n, s).count() for s in local),
                        "dim": m["dim"], "distance": m["distance"],
                        "shard_number": m["shard_number"], "local_shards": local,
                        "restored_from_sha256": m.get("restored_from_sha256"),
                        "restores": m.get("restores", 0)}
        with st.lock:
            out = {"collections": colls, "uploads": list(st.uploads),
                   "counters": dict(st.counters), "peer_id": st.peer_id,
                   "time_offset_s": st.time_offset, "storage": st.root,
                   "version": st.version}
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


    def c_version(self, t0):
        """Sets the version GET / (and /metrics) report."""
        try:
            v = self.c_json()
            ver = v["version"]
            if not isinstance(ver, str) or not re.match(r"^\d+\.\d+\.\d+", ver):
                raise ValueError("version must look like 1.13.2")
        except (KeyError, ValueError, TypeError) as e:
            self.c_reply(400, {"error": "bad request: %s" % e})
            return
        self.state.version = ver
        self.c_reply(200, {"version": ver})

    def c_counters_reset(self, t0):
        st = self.state
        with st.lock:
            for k in st.counters:
                st.counters[k] = 0
            out = dict(st.counters)
        self.c_reply(200, {"counters": out})

    def c_stop(self, t0):
        """This peer stops serving (its listening socket and open connections are
        closed, its consensus loop pauses) until resume_after_s, or for good."""
        try:
            v = self.c_json()
            after = v.get("resume_after_s")
            after = None if after is None else float(after)
        except (ValueError, TypeError) as e:
            self.c_reply(400, {"error": str(e)})
            return
        self.c_reply(200, {"stopped": True, "resume_after_s": after})
        self.close_connection = True
        threading.Thread(target=stop_serving, args=(self.state, after), daemon=True).start()

    # ------------------------------------------------------------ cluster hooks
    def need_cluster(self):
        if not self.state.is_cluster:
            self.c_reply(400, {"error": "not in cluster mode"})
            return False
        return True

    def peer_ref(self, v, obj, key):
        """A peer named by index (obj[key]) or id (obj[key + "_id"])."""
        peers = self.state.view()["peers"]
        if obj.get(key + "_id") is not None:
            pid = int(obj[key + "_id"])
            if str(pid) not in peers:
                raise ValueError("unknown peer id %d" % pid)
            return pid
        idx = obj.get(key)
        for k, p in peers.items():
            if p["index"] == idx:
                return int(k)
        raise ValueError("unknown peer %r" % (idx,))

    def c_cluster_view(self, t0):
        if not self.need_cluster():
            return
        st = self.state
        v = st.view()
        self.c_reply(200, {"this_peer": {"peer_id": st.peer_id, "index": st.peer_index},
                           "reachable": {k: st.reachable(int(k)) for k in v["peers"]},
                           "settings": st.cluster.settings(), "view": v})

    def c_cluster_leader(self, t0):
        """{"peer": N} or {"peer_id": ID} makes that peer the Raft leader (term + 1);
        {"peer": null} leaves the cluster without a leader until a leader is set."""
        if not self.need_cluster():
            return
        st = self.state
        try:
            v = self.c_json()
            if v.get("peer") is None and v.get("peer_id") is None:
                pid = 0
            else:
                pid = self.peer_ref(v, v, "peer")
        except (ValueError, TypeError) as e:
            self.c_reply(400, {"error": str(e)})
            return

        def fn(view):
            if (view.get("leader") or 0) != pid:
                view["leader"] = pid
                view["term"] = view.get("term", 0) + 1
            view["leader_pinned"] = pid == 0
            view["leader_hooked"] = True
            return {"leader": pid, "term": view["term"]}
        self.c_reply(200, st.cluster.update(fn))

    def c_cluster_replica(self, t0):
        """{"collection","shard","peer"|"peer_id","state","pin"?}: sets a replica's
        state (adding the replica; state null removes it). pin (default true)
        keeps the stand-in's own machinery from changing it."""
        if not self.need_cluster():
            return
        st = self.state
        try:
            v = self.c_json()
            name = v["collection"]
            sid = int(v["shard"])
            peer = self.peer_ref(v, v, "peer")
            state = v.get("state")
            if state is not None and state not in REPLICA_STATES:
                raise ValueError("unknown replica state %s" % state)
            pin = bool(v.get("pin", True))
        except (KeyError, ValueError, TypeError) as e:
            self.c_reply(400, {"error": "bad request: %s" % e})
            return
        coll = st.get(name, resolve=False)
        if coll is None or sid not in shard_ids(coll.meta):
            self.c_reply(404, {"error": "no shard %s/%d" % (name, sid)})
            return
        st.set_replica(name, sid, peer, state, pin=pin)
        self.c_reply(200, {"collection": name, "shard": sid, "peer_id": peer, "state": state,
                           "pin": pin})

    def c_cluster_transfer(self, t0):
        """POST {"collection","shard","from","to","method"?,"sync"?}: a shard
        transfer in progress (the receiver Partial for stream_records, else
        Recovery; pinned) until DELETE {"collection","shard","outcome":
        "done"|"failed"} ends it (receiver Active, or Dead and left to recover)."""
        if not self.need_cluster():
            return
        st = self.state
        try:
            v = self.c_json()
            name = v["collection"]
            sid = int(v["shard"])
            if self.command == "POST":
                src = self.peer_ref(v, v, "from")
                dst = self.peer_ref(v, v, "to")
                method = v.get("method", "stream_records")
                if method not in ("stream_records", "snapshot", "wal_delta",
                                  "resharding_stream_records"):
                    raise ValueError("unknown method %s" % method)
                sync = bool(v.get("sync", True))
            else:
                outcome = v.get("outcome", "done")
                if outcome not in ("done", "failed"):
                    raise ValueError("outcome is done or failed")
        except (KeyError, ValueError, TypeError) as e:
            self.c_reply(400, {"error": "bad request: %s" % e})
            return

        def fn(view):
            m = view["collections"].get(name)
            if m is None or str(sid) not in m.get("placement", {}):
                return None
            reps = m["placement"][str(sid)]
            if self.command == "POST":
                m["transfers"] = [t for t in m.get("transfers", []) if t["shard_id"] != sid]
                m["transfers"].append({"shard_id": sid, "from": src, "to": dst, "sync": sync,
                                       "method": method})
                recv = "Partial" if "stream_records" in method else "Recovery"
                reps[str(dst)] = {"state": recv, "since": time.time(), "pin": True}
                return {"transfer": m["transfers"][-1]}
            ended = [t for t in m.get("transfers", []) if t["shard_id"] == sid]
            m["transfers"] = [t for t in m.get("transfers", []) if t["shard_id"] != sid]
            for t in ended:
                r = reps.get(str(t["to"]))
                if r is not None:
                    r["state"] = "Active" if outcome == "done" else "Dead"
                    r["since"] = time.time()
                    r["pin"] = False
            return {"ended": ended}
        res = st.cluster.update(fn)
        if res is None:
            self.c_reply(404, {"error": "no shard %s/%d" % (name, sid)})
            return
        self.c_reply(200, res)

    def c_cluster_settings(self, t0):
        """Timing of the simulated consensus: activate_delay_s, dead_delay_s,
        transfer_delay_s, election_timeout_s, auto_elect, transfer_method."""
        if not self.need_cluster():
            return
        try:
            v = self.c_json()
            parsed = {}
            for k, val in v.items():
                if k not in CLUSTER_DEFAULTS:
                    raise ValueError("unknown setting %s" % k)
                parsed[k] = type(CLUSTER_DEFAULTS[k])(val)
        except (ValueError, TypeError) as e:
            self.c_reply(400, {"error": str(e)})
            return

        def fn(view):
            view.setdefault("settings", dict(CLUSTER_DEFAULTS)).update(parsed)
            return dict(view["settings"])
        self.c_reply(200, {"settings": self.state.cluster.update(fn)})

    # ------------------------------------------------------------ peer-to-peer
    def c_internal_shard(self, t0):
        st = self.state
        try:
            v = self.c_json()
            coll = st.get(v["collection"], resolve=False)
            if coll is None or coll.meta["uuid"] != v["uuid"]:
                raise not_found_collection(v["collection"])
            res = st.local_shard_op(coll.meta, int(v["shard"]), v["op"], v.get("args") or {})
        except ApiError as e:
            self.c_reply(e.status, {"error": e.msg, "status": e.status, "kind": e.kind})
            return
        self.c_reply(200, {"result": res})

    def c_internal_archive(self, t0):
        """The shard's data for a transfer (the same tar as the shard stream)."""
        st = self.state
        name = self.q("collection")
        coll = st.get(name or "", resolve=False)
        sid = int(self.q("shard") or -1)
        if coll is None or coll.meta["uuid"] != self.q("uuid") or \
                sid not in st.local_sids(coll.meta):
            self.c_reply(404, {"error": "no local replica", "status": 404})
            return
        scratch = tempfile.mkdtemp(prefix="transfer-out-", dir=st.storage_tmp)
        self._start(200, [("Content-Type", "application/octet-stream"),
                          ("Transfer-Encoding", "chunked")])
        sink = ChunkedSink(self.wfile)
        try:
            st.shard(name, sid).write_stream(
                TarWriter(sink), scratch,
                {"is_local": True, "this_peer_id": st.peer_id,
                 "peers": {str(p): s for p, s in st.replicas(coll.meta, sid).items()}},
                lambda n: None)
            sink.finish()
        except (ConnectionError, BrokenPipeError, socket.timeout):
            self.close_connection = True
        except Exception as e:
            self.log_message("transfer source failed: %r", e)
            self.close_connection = True
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

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


class StreamCut(Exception):
    pass


class ChunkedSink:
    """A response body in HTTP/1.1 chunks of at most 4 KiB, the way Qdrant's
    shard stream leaves its 4 KiB duplex pipe (shard_holder/mod.rs:943-973),
    written to the socket in batches. cut_after=K stops the body after K bytes
    (an injected writer failure: the chunked body still ends cleanly, like
    Qdrant's); pause_after/pause_s stall the body once."""

    CHUNK = 4096
    BATCH = 256 * 1024

    def __init__(self, wfile, cut_after=None, pause_after=None, pause_s=0.0, encoding=None):
        self.wfile = wfile
        self.cut_after = cut_after
        self.pause_after = pause_after
        self.pause_s = pause_s
        self.pending = bytearray()
        self.sent = 0
        self.comp = None
        if encoding:
            self.comp = zlib.compressobj(6, zlib.DEFLATED, 31 if encoding == "gzip" else 15)

    def write(self, data):
        data = bytes(data)
        if self.cut_after is not None and self.sent + len(data) >= self.cut_after:
            self._add(data[:self.cut_after - self.sent])
            raise StreamCut()
        if self.pause_after is not None and self.sent + len(data) >= self.pause_after:
            k = self.pause_after - self.sent
            self._add(data[:k])
            self._flush(True)
            time.sleep(self.pause_s)
            self.pause_after = None
            data = data[k:]
        self._add(data)

    def _add(self, data):
        self.sent += len(data)
        if self.comp is not None:
            data = self.comp.compress(data)
        self.pending += data
        if len(self.pending) >= self.BATCH:
            self._flush(False)

    def _flush(self, everything):
        n = len(self.pending)
        if not everything:
            n -= n % self.CHUNK
        if n <= 0:
            return
        out = bytearray()
        for i in range(0, n, self.CHUNK):
            piece = self.pending[i:min(i + self.CHUNK, n)]
            out += b"%x\r\n" % len(piece)
            out += piece
            out += b"\r\n"
        del self.pending[:n]
        self.wfile.write(out)

    def finish(self):
        if self.comp is not None:
            self.pending += self.comp.flush()
        self._flush(True)
        self.wfile.write(b"0\r\n\r\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, *a, **kw):
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(*a, **kw)

    def finish_request(self, request, client_address):
        with self.conns_lock:
            self.conns.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self.conns_lock:
                self.conns.discard(request)


def stop_serving(state, resume_after):
    """Closes the listening socket and every open connection; the consensus
    loop pauses. After resume_after seconds (if given) the peer serves again."""
    srv = state.server
    state.serving = False
    srv.shutdown()
    srv.server_close()
    with srv.conns_lock:
        conns = list(srv.conns)
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    if resume_after is not None:
        time.sleep(resume_after)
        state.resume.set()


def serve(state, host, port):
    while True:
        state.server.serve_forever(poll_interval=0.2)
        state.resume.wait()
        state.resume.clear()
        while True:
            try:
                state.server = Server((host, port), Handler)
                break
            except OSError:
                time.sleep(0.1)
        state.serving = True


def launch_cluster(args, extra):
    """Starts `args.launch` peers (127.0.0.2, 127.0.0.3, ... on one REST port),
    waits until every peer sees all of them and a leader, prints one line per
    peer and exits; the peers keep running (stop them with --stop-cluster)."""
    import subprocess
    k = args.launch
    cdir = os.path.abspath(args.cluster_dir)
    os.makedirs(cdir, exist_ok=True)
    fixed = args.port or None
    for attempt in range(8):
        port = fixed or pick_port(k)
        procs = []
        for n in range(1, k + 1):
            host = "127.0.0.%d" % (n + 1)
            cmd = [sys.executable, os.path.abspath(__file__), "--cluster-dir", cdir,
                   "--peer", str(n), "--bind", host, "--port", str(port),
                   "--p2p-port", str(args.p2p_port)] + extra
            log = open(os.path.join(cdir, "peer-%d.log" % n), "ab")
            procs.append((n, host, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL,
                                                    start_new_session=True)))
            log.close()
        with open(os.path.join(cdir, "pids"), "w") as f:
            f.write("".join("%d\n" % p.pid for _, _, p in procs))
        ok, retry = wait_cluster_ready(procs, port, k, 30.0)
        if ok:
            v = ClusterStore(cdir).read()
            ids = {p["index"]: int(i) for i, p in v["peers"].items()}
            for n, host, p in procs:
                print("peer=%d pid=%d url=http://%s:%d uri=http://%s:%d/ peer_id=%d"
                      % (n, p.pid, host, port, host, args.p2p_port, ids[n]))
            print("port=%d leader=%d" % (port, v["leader"]))
            sys.stdout.flush()
            return 0
        for _, _, p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if not retry or fixed:
            sys.stderr.write("cluster did not start; see %s/peer-*.log\n" % cdir)
            return 1
    return 1


def pick_port(k):
    """A port free on 127.0.0.2 .. 127.0.0.(k+1) (bound and released)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
        s.close()
        ok = True
        for n in range(3, k + 2):
            t = socket.socket()
            try:
                t.bind(("127.0.0.%d" % n, port))
            except OSError:
                ok = False
            t.close()
        if ok:
            return port


def wait_cluster_ready(procs, port, k, timeout):
    """(True, _) once every peer's GET /cluster lists k peers and a leader;
    (False, retry) when a peer exited (retry: it could not bind)."""
    end = time.time() + timeout
    while time.time() < end:
        for _, _, p in procs:
            if p.poll() is not None:
                return False, p.returncode == 98
        ready = 0
        for _, host, _ in procs:
            try:
                c = http.client.HTTPConnection(host, port, timeout=2)
                c.request("GET", "/cluster")
                r = json.loads(c.getresponse().read())["result"]
                c.close()
                if len(r.get("peers", {})) == k and r["raft_info"]["leader"]:
                    ready += 1
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                pass
        if ready == k:
            return True, False
        time.sleep(0.05)
    return False, False


def stop_cluster(cdir):
    """SIGKILLs the peers of a cluster dir (launcher pids and registered pids
    whose command line names this dir)."""
    cdir = os.path.abspath(cdir)
    pids = set()
    try:
        with open(os.path.join(cdir, "pids")) as f:
            pids.update(int(x) for x in f.read().split())
    except OSError:
        pass
    try:
        pids.update(p["pid"] for p in ClusterStore(cdir).read()["peers"].values())
    except (OSError, ValueError, KeyError):
        pass
    n = 0
    real = os.path.realpath(cdir)
    for pid in pids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            i = argv.index("--cluster-dir")
            d = os.path.join(os.readlink("/proc/%d/cwd" % pid), argv[i + 1])
            if os.path.realpath(d) != real:
                continue
            os.kill(pid, signal.SIGKILL)
            n += 1
        except (OSError, ValueError, IndexError):
            pass
    print("killed %d" % n)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="Qdrant v1.13.2 stand-in for tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--storage")
    ap.add_argument("--host", "--bind", dest="host", default=None)
    ap.add_argument("--api-key")
    ap.add_argument("--read-only-api-key")
    ap.add_argument("--peer-id")
    ap.add_argument("--version", dest="qdrant_version", default=QDRANT_VERSION)
    ap.add_argument("--cluster-dir")
    ap.add_argument("--peer", type=int)
    ap.add_argument("--p2p-port", type=int, default=6335)
    ap.add_argument("--launch", type=int, metavar="K")
    ap.add_argument("--stop-cluster", metavar="DIR")
    args = ap.parse_args(argv)

    if args.stop_cluster:
        return stop_cluster(args.stop_cluster)
    if args.launch:
        if not args.cluster_dir:
            ap.error("--launch needs --cluster-dir")
        extra = []
        for opt, val in (("--api-key", args.api_key),
                         ("--read-only-api-key", args.read_only_api_key),
                         ("--version", args.qdrant_version)):
            if val is not None:
                extra += [opt, val]
        return launch_cluster(args, extra)
    if args.cluster_dir and args.peer is None:
        ap.error("--cluster-dir needs --peer N")
    if args.storage is None:
        if not args.cluster_dir:
            ap.error("--storage is required")
        args.storage = os.path.join(args.cluster_dir, "peer-%d" % args.peer)
    host = args.host or "127.0.0.1"

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))

    try:
        srv = Server((host, args.port), Handler)
    except OSError as e:
        sys.stderr.write("qdrant stand-in: cannot listen on %s:%d: %s\n" % (host, args.port, e))
        sys.exit(98 if e.errno == errno.EADDRINUSE else 1)
    port = srv.server_address[1]
    cluster = ClusterStore(args.cluster_dir) if args.cluster_dir else None
    state = State(args.storage, args.peer_id, args.api_key, args.read_only_api_key,
                  args.qdrant_version, cluster, args.peer, host, port, args.p2p_port)
    state.server = srv
    state.resume = threading.Event()
    Handler.state = state
    if cluster is not None:
        threading.Thread(target=state.loop, daemon=True).start()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    sys.stderr.write("qdrant stand-in listening on %s:%d storage %s peer %d%s\n"
                     % (host, port, state.root, state.peer_id,
                        " cluster %s" % cluster.dir if cluster else ""))
    sys.stderr.flush()
    serve(state, host, port)


if __name__ == "__main__":
    sys.exit(main())
