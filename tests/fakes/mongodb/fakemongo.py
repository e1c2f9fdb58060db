# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake of the command-line contract of mongodump and mongorestore (MongoDB Database Tools 100.x).

No MongoDB server or tool can be installed on the machines that test this
collection, so the modules are exercised against this stand-in. It mimics, from
the tools' documentation and source (mongo-tools, common/options and
mongodump/mongorestore): the flags each tool accepts (an unknown one fails with
``error parsing command line options: unknown option `x``` and exit status 1),
``--config`` YAML (password, uri, sslPEMKeyPassword; other keys rejected),
``--archive`` to stdout and from stdin, the log lines (timestamp, tab, message)
and the ``Failed: ...`` lines and exit status 1 for a wrong password and an
unreachable host, and mongodump's silence (exit 0, no namespace dumped) for a
database that does not exist.

The "server" at host H, port P is the directory ``$LIFEBOAT_FAKE_MONGO_ROOT/H_P``:
``server.json`` ({"replica_set", "users": [{"user", "db", "password"}],
"oplog_time": [t, i], "oplog_during_dump": [entries]}) and
``data/<db>/<collection>.jsonl`` (one JSON document per line; names
percent-encoded). No such directory means the host is unreachable.

The archive is mongodump's own archive format (mongo-tools, archive format
specification, version "0.1"): the magic number 0x8199e26d (little-endian
bytes ``6d e2 99 81``), a header document (concurrent_collections, version,
server_version, tool_version), one collection-metadata document per namespace
(db, collection, metadata as extended JSON, size), the terminator
``ff ff ff ff``; then for each namespace segments of a namespace header
document (db, collection, EOF false, CRC 0), its BSON documents and the
terminator, and an EOF header (EOF true, CRC the CRC-64-ECMA of all the
namespace's documents) with the terminator. Under ``--oplog`` the captured
entries are the namespace of db ``""`` and collection ``"oplog"``, dumped
last; each has a ``ts`` Timestamp. The fake writes segments of at most
SEGMENT documents, one namespace after the other (mongodump interleaves them
when it dumps collections in parallel). The BSON codec below covers the types
the fake's JSON data can hold (double, string, document, array, bool, null,
int32, int64) and the Timestamp of oplog entries.

Oplog entries "written during the dump" are ``oplog_during_dump`` in
server.json; an entry without ``ts`` gets ``[oplog_time[0] + n, 1]`` for the
n-th entry (n from 1), so that each lies after the start.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import struct
import sys
import urllib.parse

MAGIC = b"\x6d\xe2\x99\x81"
TERMINATOR = b"\xff\xff\xff\xff"
VERSION = "100.9.4"
SERVER_VERSION = "7.0.14"
SEGMENT = 100
OPLOG_NS = ("", "oplog")
MAX_BSON = 16 * 1024 * 1024 + 16 * 1024

COMMON_VALUE = {"host", "port", "username", "password", "authenticationDatabase", "authenticationMechanism",
                "config", "uri", "db", "collection", "sslCAFile", "sslPEMKeyFile", "sslPEMKeyPassword", "sslCRLFile",
                "gssapiServiceName", "gssapiHostName", "awsSessionToken", "numThreads", "dialTimeout",
                "socketTimeout", "serverSelectionTimeout", "compressors", "verbose"}
COMMON_BOOL = {"help", "version", "quiet", "ssl", "sslAllowInvalidCertificates", "sslAllowInvalidHostnames",
               "sslFIPSMode", "tlsInsecure"}
SHORT = {"d": "db", "c": "collection", "h": "host", "u": "username", "p": "password", "o": "out", "q": "query",
         "j": "numParallelCollections"}
TOOLS = {
    "mongodump": (
        {"query", "queryFile", "readPreference", "out", "excludeCollection", "excludeCollectionsWithPrefix",
         "numParallelCollections"},
        {"forceTableScan", "gzip", "oplog", "dumpDbUsersAndRoles", "viewsAsCollections"},
    ),
    "mongorestore": (
        {"oplogLimit", "oplogFile", "dir", "writeConcern", "numParallelCollections", "numInsertionWorkersPerCollection",
         "excludeCollection", "excludeCollectionsWithPrefix", "nsExclude", "nsInclude", "nsFrom", "nsTo", "readPreference"},
        {"objcheck", "oplogReplay", "restoreDbUsersAndRoles", "gzip", "drop", "dryRun", "noIndexRestore",
         "convertLegacyIndexes", "noOptionsRestore", "keepIndexVersion", "maintainInsertionOrder", "stopOnError",
         "bypassDocumentValidation", "preserveUUID", "fixDottedHashIndex"},
    ),
}
OPTIONAL_VALUE = {"archive"}
REPEATABLE = {"excludeCollection", "excludeCollectionsWithPrefix", "nsExclude", "nsInclude", "nsFrom", "nsTo"}


class Failure(Exception):
    pass


class Corrupt(Exception):
    """The archive is not well formed (mongorestore: ``corruption found in archive; ...``)."""


# ------------------------------------------------------------------ BSON (bsonspec.org), as much as the fake needs

class Timestamp(object):
    """BSON Timestamp (type 0x11): seconds ``t`` and ordinal ``i``, stored as uint64 i | t << 32 little-endian."""

    def __init__(self, t, i):
        self.t = int(t)
        self.i = int(i)

    def __eq__(self, other):
        return isinstance(other, Timestamp) and (self.t, self.i) == (other.t, other.i)

    def __repr__(self):
        return "Timestamp(%d, %d)" % (self.t, self.i)


class Int64(int):
    """An integer encoded as BSON int64 (type 0x12) whatever its size (the archive's CRC fields)."""


def _cstring(text):
    raw = text.encode("utf-8")
    if b"\0" in raw:
        raise ValueError("a BSON key cannot hold NUL")
    return raw + b"\0"


def _element(key, value):
    name = _cstring(key)
    if isinstance(value, bool):
        return b"\x08" + name + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        if -2 ** 31 <= value < 2 ** 31 and not isinstance(value, Int64):
            return b"\x10" + name + struct.pack("<i", value)
        return b"\x12" + name + struct.pack("<q", value)
    if isinstance(value, float):
        return b"\x01" + name + struct.pack("<d", value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return b"\x02" + name + struct.pack("<i", len(raw) + 1) + raw + b"\0"
    if value is None:
        return b"\x0a" + name
    if isinstance(value, Timestamp):
        return b"\x11" + name + struct.pack("<II", value.i, value.t)
    if isinstance(value, dict):
        return b"\x03" + name + encode(value)
    if isinstance(value, (list, tuple)):
        return b"\x04" + name + encode(dict((str(n), v) for n, v in enumerate(value)))
    raise TypeError("the fake cannot encode %r" % (value,))


def encode(doc):
    """One BSON document (int32 total length, elements, NUL) of a dict, keys in order."""
    body = b"".join(_element(key, value) for key, value in doc.items())
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def _read_cstring(data, pos):
    end = data.index(b"\0", pos)
    return data[pos:end].decode("utf-8"), end + 1


def decode(data):
    """The dict of one whole BSON document (ValueError when it is not well formed)."""
    if len(data) < 5 or struct.unpack_from("<i", data)[0] != len(data) or data[-1:] != b"\0":
        raise ValueError("bad document length")
    doc = {}
    pos = 4
    end = len(data) - 1
    while pos < end:
        kind = data[pos]
        key, pos = _read_cstring(data, pos + 1)
        if kind == 0x01:
            doc[key] = struct.unpack_from("<d", data, pos)[0]
            pos += 8
        elif kind == 0x02:
            size = struct.unpack_from("<i", data, pos)[0]
            if size < 1 or data[pos + 3 + size:pos + 4 + size] != b"\0":
                raise ValueError("bad string")
            doc[key] = data[pos + 4:pos + 3 + size].decode("utf-8")
            pos += 4 + size
        elif kind in (0x03, 0x04):
            size = struct.unpack_from("<i", data, pos)[0]
            if size < 5 or pos + size > end:
                raise ValueError("bad embedded document")
            value = decode(data[pos:pos + size])
            doc[key] = list(value.values()) if kind == 0x04 else value
            pos += size
        elif kind == 0x08:
            doc[key] = data[pos] == 1
            pos += 1
        elif kind == 0x0A:
            doc[key] = None
        elif kind == 0x10:
            doc[key] = struct.unpack_from("<i", data, pos)[0]
            pos += 4
        elif kind == 0x11:
            i, t = struct.unpack_from("<II", data, pos)
            doc[key] = Timestamp(t, i)
            pos += 8
        elif kind == 0x12:
            doc[key] = struct.unpack_from("<q", data, pos)[0]
            pos += 8
        else:
            raise ValueError("BSON type 0x%02x is not supported by the fake" % kind)
    if pos != end:
        raise ValueError("document overruns its length")
    return doc


def _crc64_table():
    poly = 0xC96C5795D7870F42  # CRC-64-ECMA, reflected (Go's crc64.ECMA)
    table = []
    for byte in range(256):
        crc = byte
        for dummy in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC_TABLE = _crc64_table()


def crc64(crc, data):
    """Go's crc64.Update(crc, ECMA table, data)."""
    crc ^= 0xFFFFFFFFFFFFFFFF
    table = CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def signed64(value):
    return value - 2 ** 64 if value >= 2 ** 63 else value


class ArchiveWriter(object):
    """mongodump's archive: prelude, then namespace segments and EOF headers."""

    def __init__(self, out, namespaces, concurrent=4):
        self.out = out
        self.crc = {}
        out.write(MAGIC)
        out.write(encode({"concurrent_collections": concurrent, "version": "0.1", "server_version": SERVER_VERSION,
                          "tool_version": VERSION}))
        for db, coll in namespaces:
            metadata = "" if (db, coll) == OPLOG_NS else json.dumps(
                {"indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_"}], "collectionName": coll,
                 "type": "collection"}, separators=(",", ":"))
            out.write(encode({"db": db, "collection": coll, "metadata": metadata, "size": 0}))
        out.write(TERMINATOR)

    def segment(self, db, coll, docs):
        """One namespace segment of ``docs`` (at least one)."""
        self.out.write(encode({"db": db, "collection": coll, "EOF": False, "CRC": Int64(0)}))
        crc = self.crc.get((db, coll), 0)
        for doc in docs:
            raw = encode(doc)
            crc = crc64(crc, raw)
            self.out.write(raw)
        self.crc[(db, coll)] = crc
        self.out.write(TERMINATOR)

    def eof(self, db, coll):
        self.out.write(encode({"db": db, "collection": coll, "EOF": True,
                               "CRC": Int64(signed64(self.crc.get((db, coll), 0)))}))
        self.out.write(TERMINATOR)


class ArchiveReader(object):
    """Reads an archive front to back from a binary stream, as mongorestore's demultiplexer does."""

    def __init__(self, stream):
        self.stream = stream
        self.pending = b""

    def _read(self, count):
        data, self.pending = self.pending[:count], self.pending[count:]
        while len(data) < count:
            more = self.stream.read(count - len(data))
            if not more:
                break
            data += more
        return data

    def _exact(self, count, where):
        data = self._read(count)
        if len(data) != count:
            raise Corrupt("corruption found in archive; ParserConsumer.%s() ( EOF )" % where)
        return data

    def block(self, where):
        """The next BSON document, or None at a terminator."""
        head = self._exact(4, where)
        if head == TERMINATOR:
            return None
        size = struct.unpack("<i", head)[0]
        if size < 5 or size > MAX_BSON:
            raise Corrupt("corruption found in archive; ParserConsumer.%s() ( invalid BSON size %d )" % (where, size))
        raw = head + self._exact(size - 4, where)
        try:
            return raw, decode(raw)
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            raise Corrupt("corruption found in archive; ParserConsumer.%s() ( %s )" % (where, exc))

    def prelude(self):
        if self._read(4) != MAGIC:
            raise Failure("stream or file does not appear to be a mongodump archive")
        header = self.block("HeaderBSON")
        if header is None or header[1].get("version") != "0.1":
            raise Corrupt("corruption found in archive; prelude header ( not an archive header )")
        metadata = []
        while True:
            block = self.block("HeaderBSON")
            if block is None:
                return header[1], metadata
            metadata.append(block[1])

    def body(self):
        """Yield ("doc", db, coll, raw, doc) and ("eof", db, coll, crc, None) until the end of the stream."""
        while True:
            head = self._read(4)
            if not head:
                return
            if len(head) != 4:
                raise Corrupt("corruption found in archive; ParserConsumer.HeaderBSON() ( EOF )")
            self.pending = head
            block = self.block("HeaderBSON")
            if block is None:
                raise Corrupt("corruption found in archive; ParserConsumer.HeaderBSON() ( unexpected terminator )")
            header = block[1]
            if not isinstance(header.get("db"), str) or not isinstance(header.get("collection"), str):
                raise Corrupt("corruption found in archive; ParserConsumer.HeaderBSON() ( not a namespace header )")
            db, coll = header["db"], header["collection"]
            if header.get("EOF"):
                if self.block("BodyBSON") is not None:
                    raise Corrupt("corruption found in archive; ParserConsumer.BodyBSON() ( no terminator )")
                yield "eof", db, coll, header.get("CRC", 0), None
                continue
            count = 0
            while True:
                block = self.block("BodyBSON")
                if block is None:
                    break
                count += 1
                yield "doc", db, coll, block[0], block[1]
            if not count:
                raise Corrupt("corruption found in archive; ParserConsumer.BodyBSON() ( empty segment )")


def log(message):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    sys.stderr.write("%s\t%s\n" % (now, message))
    sys.stderr.flush()


def q(text):
    """Go's %#q."""
    return "`%s`" % text if "`" not in text else json.dumps(text)


def parse_args(tool, argv):
    values, bools = TOOLS[tool]
    values = values | COMMON_VALUE
    bools = bools | COMMON_BOOL
    opts = {"verbose": 0}
    positional = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
        elif arg.startswith("-") and len(arg) > 1 and arg != "-":
            letter = arg[1]
            if letter == "v":
                opts["verbose"] += len(arg) - 1
                continue
            if letter not in SHORT:
                raise Failure("error parsing command line options: unknown option %s" % q(letter))
            name, eq, value = SHORT[letter], "=" if len(arg) > 2 else "", arg[2:].lstrip("=")
        else:
            positional.append(arg)
            continue
        if name == "verbose":
            opts["verbose"] += 1
            continue
        if name in OPTIONAL_VALUE:
            opts[name] = value if eq else "-"
        elif name in bools:
            if eq:
                raise Failure("error parsing command line options: bool flag `--%s' cannot have an argument" % name)
            opts[name] = True
        elif name in values:
            if not eq:
                if index >= len(argv):
                    raise Failure("error parsing command line options: expected argument for flag `--%s'" % name)
                value = argv[index]
                index += 1
            if name in REPEATABLE:
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = value
        else:
            raise Failure("error parsing command line options: unknown option %s" % q(name))
    if opts.get("config"):
        try:
            with open(opts["config"], "rb") as handle:
                text = handle.read().decode("utf-8")
        except OSError as exc:
            raise Failure("error opening file with --config: %s" % exc)
        config = parse_yaml(text, opts["config"])
        for key, value in config.items():
            opts.setdefault(key, value)
    if positional:
        if len(positional) > 1 or not positional[0].startswith("mongodb"):
            raise Failure("error parsing positional arguments: provide only one MongoDB connection string. "
                          "Connection strings must begin with mongodb:// or mongodb+srv:// schemes")
        opts["uri"] = positional[0]
    return opts


def parse_yaml(text, path):
    try:
        import yaml
        data = yaml.safe_load(text) or {}
    except ImportError:
        raise Failure("the fake needs PyYAML to read --config")
    except yaml.YAMLError as exc:
        raise Failure("error parsing config file %s: yaml: %s" % (path, str(exc).splitlines()[0]))
    if not isinstance(data, dict):
        raise Failure("error parsing config file %s: yaml: unmarshal errors" % path)
    for key in data:
        if key not in ("password", "uri", "sslPEMKeyPassword", "destinationPassword"):
            raise Failure("error parsing config file %s: yaml: unmarshal errors:\n  line 1: field %s not found in "
                          "type struct" % (path, key))
    return dict((k, str(v)) for k, v in data.items())


def connect(opts):
    """The server directory, after checking reachability and credentials."""
    user = opts.get("username")
    password = opts.get("password")
    auth_db = opts.get("authenticationDatabase")
    replica_set = None
    if opts.get("uri"):
        parts = urllib.parse.urlsplit(opts["uri"])
        hosts = parts.netloc.rpartition("@")[2]
        if parts.username:
            user = urllib.parse.unquote(parts.username)
        if parts.password is not None:
            password = urllib.parse.unquote(parts.password)
        query = urllib.parse.parse_qs(parts.query)
        auth_db = query.get("authSource", [auth_db])[0]
        replica_set = query.get("replicaSet", [None])[0]
        host = hosts.split(",")[0]
    else:
        host = opts.get("host") or "localhost"
        if "/" in host:
            replica_set, host = host.split("/", 1)
            host = host.split(",")[0]
        if ":" not in host:
            host = "%s:%s" % (host, opts.get("port") or "27017")
    name, port = host.rsplit(":", 1)
    address = "%s:%s" % (name, port)
    root = os.environ.get("LIFEBOAT_FAKE_MONGO_ROOT", "")
    server = os.path.join(root, "%s_%s" % (name, port))
    state_path = os.path.join(server, "server.json")
    if not root or not os.path.isfile(state_path):
        raise Failure("can't create session: failed to connect to mongodb://%s/: server selection error: server "
                      "selection timeout, current topology: { Type: Single, Servers: [{ Addr: %s, Type: Unknown, "
                      "Last error: dial tcp %s: connect: connection refused }, ] }" % (address, address, address))
    with open(state_path) as handle:
        state = json.load(handle)
    if replica_set and replica_set != state.get("replica_set"):
        raise Failure("can't create session: failed to connect to mongodb://%s/?replicaSet=%s: server selection "
                      "error: server selection timeout, current topology: { Type: ReplicaSetNoPrimary }"
                      % (address, replica_set))
    users = state.get("users") or []
    if users:
        mechanism = opts.get("authenticationMechanism") or "SCRAM-SHA-256"
        ok = any(u["user"] == user and u["password"] == password and u.get("db", "admin") == (auth_db or "admin")
                 for u in users)
        if not user:
            raise Failure("(Unauthorized) command listDatabases requires authentication")
        if not ok:
            raise Failure("can't create session: failed to connect to mongodb://%s/: connection() error occurred "
                          "during connection handshake: auth error: sasl conversation error: unable to authenticate "
                          "using mechanism \"%s\": (AuthenticationFailed) Authentication failed." % (address, mechanism))
    return server, state


def enc(name):
    return urllib.parse.quote(name, safe="")


def dec(name):
    return urllib.parse.unquote(name)


def databases(server):
    data = os.path.join(server, "data")
    return sorted(dec(n) for n in os.listdir(data)) if os.path.isdir(data) else []


def collections(server, db):
    path = os.path.join(server, "data", enc(db))
    return sorted(dec(n[:-6]) for n in os.listdir(path) if n.endswith(".jsonl")) if os.path.isdir(path) else []


def coll_path(server, db, coll):
    return os.path.join(server, "data", enc(db), enc(coll) + ".jsonl")


def read_docs(server, db, coll):
    with open(coll_path(server, db, coll)) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def matches(doc, query):
    for key, cond in query.items():
        if isinstance(cond, dict) and "$in" in cond:
            if doc.get(key) not in cond["$in"]:
                return False
        elif doc.get(key) != cond:
            return False
    return True


def validate_dump(opts):
    """mongodump's ValidateOptions, in its order; Init prefixes each with "bad option: "."""
    checks = (
        (opts.get("collection") and not opts.get("db"), "cannot dump a collection without a specified database"),
        (opts.get("query") and not opts.get("collection"), "cannot dump using a query without a specified collection"),
        (opts.get("oplog") and opts.get("db"), "--oplog mode only supported on full dumps"),
        (opts.get("excludeCollection") and opts.get("collection"),
         "--collection is not allowed when --excludeCollection is specified"),
        (opts.get("excludeCollection") and not opts.get("db"), "--db is required when --excludeCollection is specified"),
        (opts.get("out") and "archive" in opts, "--out not allowed when --archive is specified"),
    )
    for failed, message in checks:
        if failed:
            raise Failure("bad option: %s" % message)
    if "archive" not in opts:
        raise Failure("the fake supports --archive only")


def oplog_entries(state):
    """The oplog entries written during the dump, each with its ts (see the module docstring)."""
    start = state.get("oplog_time") or [1, 1]
    entries = []
    for number, entry in enumerate(state.get("oplog_during_dump") or [], 1):
        entry = dict(entry)
        ts = entry.pop("ts", None) or [start[0] + number, 1]
        out = {"ts": Timestamp(ts[0], ts[1]), "t": 1, "v": 2}
        out.update(entry)
        if "wall" in out:
            out.pop("wall")
        entries.append(out)
    return entries


def dump(opts):
    validate_dump(opts)
    server, state = connect(opts)
    if opts.get("oplog") and not state.get("replica_set"):
        raise Failure("error getting oplog start: mongo: no documents in result")
    query = json.loads(opts["query"]) if opts.get("query") else None
    targets = []
    if opts.get("collection"):
        if opts["collection"] not in collections(server, opts["db"]):
            log("namespace with DB %s and collection %s does not exist" % (q(opts["db"]), q(opts["collection"])))
            return 0
        targets = [(opts["db"], opts["collection"])]
    else:
        for db in ([opts["db"]] if opts.get("db") else databases(server)):
            for coll in collections(server, db):
                if coll not in (opts.get("excludeCollection") or []):
                    targets.append((db, coll))
    where = "archive on stdout" if opts["archive"] == "-" else "archive %s" % q(opts["archive"])
    out = sys.stdout.buffer if opts["archive"] == "-" else open(opts["archive"], "wb")
    written = 0
    writer = ArchiveWriter(out, targets + ([OPLOG_NS] if opts.get("oplog") else []))
    if opts.get("oplog"):
        start = state.get("oplog_time") or [1, 1]
        if opts["verbose"]:
            log("checking if oplog entry {%d %d} still exists" % tuple(start))
    fail_after = int(os.environ.get("LIFEBOAT_FAKE_MONGO_FAIL_AFTER") or 0)
    for db, coll in targets:
        log("writing %s to %s" % (q(db + "." + coll), where))
        docs = [d for d in read_docs(server, db, coll) if query is None or matches(d, query)]
        for first in range(0, len(docs), SEGMENT):
            batch = docs[first:first + SEGMENT]
            if fail_after and written + len(batch) >= fail_after:
                writer.segment(db, coll, batch[:max(1, fail_after - written)])
                out.flush()
                raise Failure("error writing data for collection %s to disk: error reading collection: "
                              "connection(%s) incomplete read of message header: EOF" % (q(db + "." + coll), db))
            writer.segment(db, coll, batch)
            written += len(batch)
        writer.eof(db, coll)
        count = len(docs)
        log("done dumping %s (%d %s)" % (q(db + "." + coll), count, "document" if count == 1 else "documents"))
    if opts.get("oplog"):
        entries = oplog_entries(state)
        log("writing captured oplog to %s" % q(""))
        if entries:
            writer.segment(OPLOG_NS[0], OPLOG_NS[1], entries)
        writer.eof(*OPLOG_NS)
        log("\tdumped %d oplog %s" % (len(entries), "entry" if len(entries) == 1 else "entries"))
    out.flush()
    return 0


def ns_regex(pattern):
    import re
    regex = ""
    for index, part in enumerate(pattern.split("*")):
        regex += ("(.*?)" if index else "") + re.escape(part)
    return re.compile("^%s$" % regex, re.S)


def rename(namespace, sources, targets):
    for source, target in zip(sources, targets):
        match = ns_regex(source).match(namespace)
        if match:
            parts = target.split("*")
            return parts[0] + "".join(match.group(i + 1) + part for i, part in enumerate(parts[1:]))
    return namespace


def restore(opts):
    if opts.get("archive") != "-":
        raise Failure("the fake supports --archive from stdin only")
    if len(opts.get("nsFrom") or []) != len(opts.get("nsTo") or []):
        raise Failure("Different number of asterisks in from and to")
    try:
        server, state = connect(opts)
    except Failure as exc:
        sys.stderr.write("%s\terror connecting to host: %s\n" % ("2026-01-01T00:00:00.000+0000",
                                                                 str(exc).split(": ", 1)[-1]))
        return 1
    if opts.get("oplogReplay"):
        # mongorestore's ParseAndValidateOptions: the oplog is replayed into the whole instance only.
        if opts.get("nsInclude") or opts.get("db"):
            raise Failure("cannot use --oplogReplay with includes specified")
        if opts.get("nsExclude") or opts.get("excludeCollection") or opts.get("excludeCollectionsWithPrefix"):
            raise Failure("cannot use --oplogReplay with excludes specified")
        if opts.get("nsFrom"):
            raise Failure("cannot use --oplogReplay with namespace renames specified")
    reader = ArchiveReader(sys.stdin.buffer)
    try:
        reader.prelude()
    except Corrupt as exc:
        raise Failure(str(exc))
    log("preparing collections to restore from")
    ok = failed = 0
    oplog = []
    include = opts.get("nsInclude") or []
    exclude = opts.get("nsExclude") or []
    started = set()
    crcs = {}
    ended = set()
    try:
        for kind, db, coll, raw, doc in reader.body():
            source = (db, coll)
            if source in ended:
                raise Corrupt("corruption found in archive; namespace %s.%s has data after its EOF" % source)
            if kind == "eof":
                if signed64(crcs.get(source, 0)) != raw:
                    raise Corrupt("corruption found in archive; CRC mismatch for namespace %s.%s" % source)
                ended.add(source)
                continue
            crcs[source] = crc64(crcs.get(source, 0), raw)
            if source == OPLOG_NS:
                oplog.append(doc)
                continue
            name = db + "." + coll
            if (include and not any(ns_regex(p).match(name) for p in include)) or any(
                    ns_regex(p).match(name) for p in exclude):
                continue
            target = rename(name, opts.get("nsFrom") or [], opts.get("nsTo") or [])
            tdb, dot, tcoll = target.partition(".")
            path = coll_path(server, tdb, tcoll)
            if source not in started:
                started.add(source)
                if opts.get("drop") and os.path.exists(path):
                    log("dropping collection %s before restoring" % q(target))
                    os.unlink(path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if not os.path.exists(path):
                    open(path, "w").close()
                log("restoring %s from archive on stdin" % q(target))
            existing = read_docs(server, tdb, tcoll)
            if any(d.get("_id") == doc.get("_id") for d in existing):
                failed += 1
                message = ("E11000 duplicate key error collection: %s index: _id_ dup key: { _id: %s }"
                           % (target, json.dumps(doc.get("_id"))))
                if opts.get("stopOnError"):
                    log("Failed: %s: error restoring from archive on stdin: %s" % (target, message))
                    log("%d document(s) restored successfully. %d document(s) failed to restore." % (ok, failed))
                    return 1
                log("continuing through error: %s" % message)
                continue
            with open(path, "a") as handle:
                handle.write(json.dumps(doc) + "\n")
            ok += 1
    except Corrupt as exc:
        raise Failure(str(exc))
    unfinished = sorted(set(crcs) - ended)
    if unfinished:
        raise Failure("corruption found in archive; ParserConsumer.BodyBSON() ( EOF ): no EOF for namespace %s.%s"
                      % unfinished[0])
    if opts.get("oplogReplay"):
        log("replaying oplog")
        for entry in oplog:
            db, dot, coll = str(entry.get("ns", "")).partition(".")
            if entry.get("op") == "i":
                os.makedirs(os.path.dirname(coll_path(server, db, coll)), exist_ok=True)
                with open(coll_path(server, db, coll), "a") as handle:
                    handle.write(json.dumps(entry["o"]) + "\n")
        log("applied %d oplog %s" % (len(oplog), "entry" if len(oplog) == 1 else "entries"))
    log("%d document(s) restored successfully. %d document(s) failed to restore." % (ok, failed))
    return 0


def main(tool, argv):
    try:
        opts = parse_args(tool, argv)
    except Failure as exc:
        log(str(exc))
        log("try '%s --help' for more information" % tool)
        return 1
    if opts.get("version"):
        sys.stdout.write("%s version: %s\ngit version: fake\nGo version: go1.21\n" % (tool, VERSION))
        return 0
    try:
        return dump(opts) if tool == "mongodump" else restore(opts)
    except Failure as exc:
        log("Failed: %s" % exc)
        return 1


# ------------------------------------------------------------------ test harness

def harness(argv):
    """init / seed / checksum / set / insert for the tests: python fakemongo.py COMMAND --root R --port P ..."""
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["init", "seed", "checksum", "set", "insert"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", default="27017")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db")
    parser.add_argument("--coll", action="append", default=[])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--user")
    parser.add_argument("--password-file")
    parser.add_argument("--replica-set")
    parser.add_argument("--json", help="for set: a JSON object merged into server.json; for insert: a document")
    args = parser.parse_args(argv)
    server = os.path.join(args.root, "%s_%s" % (args.host, args.port))
    state_path = os.path.join(server, "server.json")
    if args.command == "init":
        os.makedirs(os.path.join(server, "data"), exist_ok=True)
        users = []
        if args.user:
            with open(args.password_file) as handle:
                users.append({"user": args.user, "db": "admin", "password": handle.read().rstrip("\n")})
        with open(state_path, "w") as handle:
            json.dump({"replica_set": args.replica_set, "users": users, "oplog_time": [1764547200, 1],
                       "oplog_during_dump": []}, handle)
    elif args.command == "set":
        with open(state_path) as handle:
            state = json.load(handle)
        state.update(json.loads(args.json))
        with open(state_path, "w") as handle:
            json.dump(state, handle)
    elif args.command == "insert":
        path = coll_path(server, args.db, args.coll[0])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as handle:
            handle.write(json.dumps(json.loads(args.json)) + "\n")
    elif args.command == "seed":
        for coll in args.coll:
            path = coll_path(server, args.db, coll)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as handle:
                for index in range(args.count):
                    doc = {"_id": index, "name": "doc %d of %s\n\"quoted\" \u00e9" % (index, coll),
                           "blob": hashlib.sha256(("%s%d" % (coll, index)).encode()).hexdigest() * 4}
                    handle.write(json.dumps(doc) + "\n")
    else:
        result = {}
        for coll in collections(server, args.db):
            docs = sorted(read_docs(server, args.db, coll), key=lambda d: json.dumps(d.get("_id"), sort_keys=True))
            result[coll] = hashlib.sha256("\n".join(json.dumps(d, sort_keys=True) for d in docs).encode()).hexdigest()
        sys.stdout.write(json.dumps({"collections": result, "count": len(result)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(harness(sys.argv[1:]))
