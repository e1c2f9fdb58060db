# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""MongoDB: connection options, mongodump/mongorestore argv builders, log parsers and the engine.

The argv follows the command-line contract of the MongoDB Database Tools 100.x
(``mongodump``/``mongorestore``). The password (and a connection string, which
can hold one) never reaches an argv: it is written as the tools' own
``--config`` YAML file into a SecretFile (a memfd the tool opens as
``/dev/fd/N``, else a 0600 file that is always removed).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import struct
import threading

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, SecretFile
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

ENGINE = "mongodb"
METHOD = "mongodump"
ARCHIVE_SUFFIX = ".archive"
# A query no document matches, answered from the _id index alone: mongodump then says whether a
# namespace exists without reading it.
EMPTY_QUERY = '{"_id":{"$in":[]}}'
# A manifest's lists hold at most 1024 items (_manifest.MAX_LIST_ITEMS).
MAX_LISTED_NAMESPACES = 1024


class MongoError(LifeboatError):
    """A MongoDB tool failed; the message is one sentence for the operator."""


def connection_argument_spec():
    """Connection options (doc fragment lifeboat.backup._mongodb), named as in community.mongodb."""
    return dict(
        login_host=dict(type="str", default="localhost"),
        login_port=dict(type="int", default=27017),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_database=dict(type="str", default="admin"),
        auth_mechanism=dict(type="str", choices=["SCRAM-SHA-1", "SCRAM-SHA-256", "MONGODB-X509", "GSSAPI", "PLAIN",
                                                 "MONGODB-AWS"]),
        replica_set=dict(type="str"),
        uri=dict(type="str", no_log=True),
        tls=dict(type="bool", default=False, aliases=["ssl"]),
        tls_ca_file=dict(type="path"),
        tls_certificate_key_file=dict(type="path"),
        tls_certificate_key_file_password=dict(type="str", no_log=True),
        tls_crl_file=dict(type="path"),
        tls_allow_invalid_certificates=dict(type="bool", default=False),
        mongo_bin_dir=dict(type="path"),
    )


CONNECTION_MUTUALLY_EXCLUSIVE = [["uri", "login_user"], ["uri", "login_password"], ["uri", "replica_set"]]


def yaml_quote(text):
    """``text`` as a YAML double-quoted scalar: any character survives, nothing is interpreted."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F or (code >= 0xA0 and code not in (0x2028, 0x2029, 0xFEFF)
                                     and not 0xD800 <= code <= 0xDFFF and code < 0xFFFE):
            out.append(char)
        elif code < 0x100:
            out.append("\\x%02x" % code)
        elif code < 0x10000:
            out.append("\\u%04x" % code)
        else:
            out.append("\\U%08x" % code)
    out.append('"')
    return "".join(out)


def config_text(params):
    """The ``--config`` YAML for ``params``, or None when there is no secret to hand over."""
    lines = []
    for key, option in (("password", "login_password"), ("uri", "uri"),
                        ("sslPEMKeyPassword", "tls_certificate_key_file_password")):
        if params.get(option):
            lines.append("%s: %s\n" % (key, yaml_quote(params[option])))
    return "".join(lines) or None


class Credentials(object):
    """The ``--config`` file of one run, as a SecretFile (enter it; pass ``pass_fds`` to the tool)."""

    def __init__(self, params, tmpdir=None):
        self.text = config_text(params)
        self.tmpdir = tmpdir
        self._secret = None

    @property
    def path(self):
        return self._secret.path if self._secret is not None else None

    @property
    def pass_fds(self):
        return self._secret.pass_fds if self._secret is not None else ()

    def __enter__(self):
        if self.text:
            self._secret = SecretFile(self.text, "lifeboat-mongo-", self.tmpdir).open()
        return self

    def __exit__(self, *exc_info):
        if self._secret is not None:
            self._secret.close()
            self._secret = None
        return False


def connection_args(params, config_path=None):
    """Connection flags of both tools; secrets only ever through ``--config``."""
    args = []
    if config_path:
        args.append("--config=%s" % config_path)
    if not params.get("uri"):
        host = params.get("login_host") or "localhost"
        port = params.get("login_port") or 27017
        if params.get("replica_set"):
            args.append("--host=%s/%s:%d" % (params["replica_set"], host, port))
        else:
            args += ["--host=%s" % host, "--port=%d" % port]
        if params.get("login_user"):
            args.append("--username=%s" % params["login_user"])
            args.append("--authenticationDatabase=%s" % (params.get("login_database") or "admin"))
        if params.get("auth_mechanism"):
            args.append("--authenticationMechanism=%s" % params["auth_mechanism"])
    if params.get("tls"):
        args.append("--ssl")
        for flag, option in (("--sslCAFile", "tls_ca_file"), ("--sslPEMKeyFile", "tls_certificate_key_file"),
                             ("--sslCRLFile", "tls_crl_file")):
            if params.get(option):
                args.append("%s=%s" % (flag, params[option]))
        if params.get("tls_allow_invalid_certificates"):
            args.append("--tlsInsecure")
    return args


def check_name(value, what):
    """A database or collection name as the tools take it in one argv element."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise LifeboatError("%s must be a non-empty name without NUL bytes, not %r." % (what, value))
    if what == "database" and any(c in value for c in '/\\. "$'):
        raise LifeboatError('database name "%s" holds a character MongoDB forbids in database names (/\\. "$).' % value)
    return value


def dump_plan(databases, collections, exclude_collections, oplog, replica_set):
    """The mongodump runs of one backup: a list of (payload base name, db or None, collection or None).

    All databases dump as one archive (with the oplog on a replica set);
    one database, or each of a list, as its own archive; with ``collections``
    (one database only) one archive per collection.
    """
    databases = [check_name(d, "database") for d in (databases or [])]
    collections = [check_name(c, "collection") for c in (collections or [])]
    for name in exclude_collections or []:
        check_name(name, "collection")
    if collections and len(databases) != 1:
        raise LifeboatError("collections needs exactly one database in databases (mongodump dumps a collection "
                            "of one database).")
    if collections and exclude_collections:
        raise LifeboatError("collections and exclude_collections cannot be used together.")
    if exclude_collections and not databases:
        raise LifeboatError("exclude_collections needs databases (mongodump excludes collections of a named "
                            "database only).")
    if len(set(databases)) != len(databases):
        raise LifeboatError("databases names a database more than once.")
    use_oplog = bool(replica_set) and not databases if oplog is None else oplog
    if use_oplog and databases:
        raise LifeboatError("oplog needs a dump of all databases (mongodump --oplog works on full dumps only); "
                            "leave databases empty or set oplog: false.")
    if not databases:
        return [("dump", None, None)], use_oplog
    if collections:
        return [("dump-%03d" % index, databases[0], name) for index, name in enumerate(collections)], use_oplog
    return [("dump-%03d" % index, name, None) for index, name in enumerate(databases)], use_oplog


def mongodump_argv(binary, conn_args, db=None, collection=None, exclude_collections=(), oplog=False,
                   read_preference=None, archive="-", query=None, verbose=False):
    """mongodump's argv; ``archive="-"`` writes the archive to stdout."""
    argv = [binary] + list(conn_args)
    if db:
        argv.append("--db=%s" % db)
    if collection:
        argv.append("--collection=%s" % collection)
    for name in exclude_collections or ():
        argv.append("--excludeCollection=%s" % name)
    if query is not None:
        argv.append("--query=%s" % query)
    if read_preference:
        argv.append("--readPreference=%s" % read_preference)
    if oplog:
        argv.append("--oplog")
    if verbose:
        argv.append("-v")
    argv.append("--archive" if archive == "-" else "--archive=%s" % archive)
    return argv


def mongorestore_argv(binary, conn_args, drop=False, oplog_replay=False, ns_from=(), ns_to=(), ns_include=(),
                      ns_exclude=(), stop_on_error=True, dry_run=False):
    """mongorestore's argv, reading the archive from stdin."""
    argv = [binary] + list(conn_args) + ["--archive"]
    for pattern in ns_include or ():
        argv.append("--nsInclude=%s" % pattern)
    for pattern in ns_exclude or ():
        argv.append("--nsExclude=%s" % pattern)
    for source, target in zip(ns_from or (), ns_to or ()):
        argv += ["--nsFrom=%s" % source, "--nsTo=%s" % target]
    if drop:
        argv.append("--drop")
    if oplog_replay:
        argv.append("--oplogReplay")
    if stop_on_error:
        argv.append("--stopOnError")
    if dry_run:
        argv.append("--dryRun")
    return argv


# ------------------------------------------------------------------ parsers

VERSION_RE = re.compile(r"^(?:mongodump|mongorestore) version:\s*(\S+)", re.M)
# Go's %#q: a backquoted string, or a double-quoted one with escapes; old tools print it bare.


def _quoted(prefix):
    return (r"(?:`(?P<%sbq>[^`]*)`|\"(?P<%sdq>(?:[^\"\\]|\\.)*)\"|(?P<%sbare>\S+))" % (prefix, prefix, prefix))


DONE_RE = re.compile(r"\tdone dumping " + _quoted("") + r" \((?P<count>\d+) documents?\)\s*$")
MISSING_RE = re.compile(r"\tnamespace with DB " + _quoted("d") + r" and collection " + _quoted("")
                        + r" does not exist\s*$")
OPLOG_START_RE = re.compile(r"\tchecking if oplog entry \{(?P<t>\d+) (?P<i>\d+)\} still exists")
OPLOG_COUNT_RE = re.compile(r"\tdumped (?P<count>\d+) oplog entr(?:y|ies)")
RESTORED_RE = re.compile(r"(?P<ok>\d+) document\(s\) restored successfully\. (?P<failed>\d+) document\(s\) "
                         r"failed to restore\.")
OPLOG_APPLIED_RE = re.compile(r"\tapplied (?P<count>\d+) oplog entr(?:y|ies)")


def _unquote(match, prefix=""):
    if match.group(prefix + "bq") is not None:
        return match.group(prefix + "bq")
    if match.group(prefix + "dq") is not None:
        try:
            return json.loads('"%s"' % match.group(prefix + "dq"))
        except ValueError:
            return match.group(prefix + "dq")
    return match.group(prefix + "bare")


def parse_version(text):
    """'100.9.4' from ``mongodump --version`` output (None if it says nothing recognisable)."""
    match = VERSION_RE.search(text or "")
    return match.group(1) if match else None


def split_namespace(namespace):
    db, dot, collection = namespace.partition(".")
    return db, collection


def parse_dump_log(text):
    """What a mongodump log says it did: namespaces with counts, the oplog start and entry count."""
    dumped = []
    oplog_start = None
    oplog_entries = None
    for line in (text or "").splitlines():
        match = DONE_RE.search(line)
        if match:
            dumped.append({"namespace": _unquote(match), "documents": int(match.group("count"))})
            continue
        match = OPLOG_START_RE.search(line)
        if match and oplog_start is None:
            oplog_start = {"t": int(match.group("t")), "i": int(match.group("i"))}
            continue
        match = OPLOG_COUNT_RE.search(line)
        if match:
            oplog_entries = int(match.group("count"))
    return {"namespaces": dumped, "oplog_start": oplog_start, "oplog_entries": oplog_entries}


def probe_says_exists(text):
    """Whether the log of a zero-document probe dump says its namespace exists (True/False/None)."""
    if any(MISSING_RE.search(line) for line in (text or "").splitlines()):
        return False
    if any(DONE_RE.search(line) for line in (text or "").splitlines()):
        return True
    return None


def parse_restore_log(text):
    """(restored, failed, oplog entries applied) from mongorestore's closing lines (None where absent)."""
    restored = failed = applied = None
    for line in (text or "").splitlines():
        match = RESTORED_RE.search(line)
        if match:
            restored, failed = int(match.group("ok")), int(match.group("failed"))
        match = OPLOG_APPLIED_RE.search(line)
        if match:
            applied = int(match.group("count"))
    return restored, failed, applied


def last_failure(text):
    """The tool's closing 'Failed: ...' (or option error) line, without its timestamp."""
    lines = [line.split("\t", 1)[-1].strip() for line in (text or "").strip().splitlines()]
    for line in reversed(lines):
        if line.startswith("Failed:") or line.startswith("error parsing command line options"):
            return line
    return lines[-1] if lines else "no output"


def explain_error(stderr, params, tool):
    """One sentence for a failed mongodump/mongorestore run."""
    line = last_failure(stderr)
    where = params.get("uri") and "the server of uri" or "%s:%s" % (params.get("login_host"), params.get("login_port"))
    if "AuthenticationFailed" in line or "Authentication failed" in line:
        return ("%s could not log in to MongoDB at %s as %s: authentication failed; check login_user, login_password "
                "and login_database." % (tool, where, params.get("login_user") or "the uri's user"))
    if "server selection error" in line or "connection refused" in line or "no reachable servers" in line:
        return ("%s could not reach MongoDB at %s (%s); check login_host, login_port and that mongod runs."
                % (tool, where, line[:300]))
    if "unknown option" in line:
        return "%s rejected an option (%s); MongoDB Database Tools 100.x are needed." % (tool, line[:300])
    return "%s failed: %s" % (tool, line[:500])


# ------------------------------------------------------------------ the archive: the oplog time a dump reached

ARCHIVE_MAGIC = b"\x6d\xe2\x99\x81"  # 0x8199e26d, little-endian (mongo-tools archive format "0.1")
ARCHIVE_TERMINATOR = b"\xff\xff\xff\xff"
# The oplog's namespace in an archive made with --oplog.
OPLOG_NAMESPACE = ("", "oplog")
# mongod's largest internal BSON object (16 MiB + 16 KiB); a bigger length is a malformed stream.
MAX_BSON = 16 * 1024 * 1024 + 16 * 1024
# Longest element name read while looking for "ts"; anything longer is not an oplog entry.
MAX_KEY = 4096
READ_CHUNK = 1024 * 1024
# BSON value sizes that are fixed, by type (bsonspec.org).
_FIXED = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
          0x7F: 0, 0xFF: 0}
_LENGTH_PREFIXED = (0x02, 0x0D, 0x0E)  # string, JavaScript, symbol: int32 length then the bytes


class ArchiveFormatError(LifeboatError):
    """A mongodump archive stream is not as the archive format says."""


class _Stream(object):
    """Exact reads and skips on a binary stream through one buffer of at most READ_CHUNK bytes."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.pos = 0
        self.base = 0  # stream offset of buf[0]

    @property
    def offset(self):
        return self.base + self.pos

    def _fill(self):
        """Drop what was read from the buffer and add the next block; False at the end of the stream."""
        block = self.stream.read(READ_CHUNK)
        if not block:
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos:] + block
        self.pos = 0
        return True

    def read(self, count, what):
        while len(self.buf) - self.pos < count:
            if not self._fill():
                raise ArchiveFormatError("the archive ends inside %s at byte %d" % (what, self.base + len(self.buf)))
        data = self.buf[self.pos:self.pos + count]
        self.pos += count
        return data

    def skip(self, count, what):
        while len(self.buf) - self.pos < count:
            count -= len(self.buf) - self.pos
            self.pos = len(self.buf)
            if not self._fill():
                raise ArchiveFormatError("the archive ends inside %s at byte %d" % (what, self.base + len(self.buf)))
        self.pos += count

    def at_end(self):
        return len(self.buf) == self.pos and not self._fill()

    def skip_documents(self):
        """Skip whole documents that lie in the buffer; return how many (the hot path of a large archive)."""
        buf, pos, end, count = self.buf, self.pos, len(self.buf), 0
        unpack = struct.unpack_from
        while pos + 4 <= end:
            size = unpack("<i", buf, pos)[0]
            if size < 5 or size > MAX_BSON or pos + size > end:
                break
            pos += size
            count += 1
        self.pos = pos
        return count


def _length(raw, what, offset):
    size = struct.unpack("<i", raw)[0]
    if size < 5 or size > MAX_BSON:
        raise ArchiveFormatError("%s at byte %d has an impossible BSON length %d" % (what, offset, size))
    return size


def _small_document(stream, what):
    """A whole small BSON document (the archive's headers), as (raw bytes or None at a terminator)."""
    head = stream.read(4, what)
    if head == ARCHIVE_TERMINATOR:
        return None
    size = _length(head, what, stream.offset - 4)
    if size > 1024 * 1024:
        raise ArchiveFormatError("%s at byte %d is %d bytes long; a header is small" % (what, stream.offset - 4, size))
    return head + stream.read(size - 4, what)


def _header_fields(raw, what):
    """db, collection (strings) and EOF (bool) of a namespace header; other fields are skipped."""
    fields = {}
    pos = 4
    end = len(raw) - 1
    try:
        while pos < end:
            kind = raw[pos]
            stop = raw.index(b"\0", pos + 1)
            key = raw[pos + 1:stop].decode("utf-8")
            pos = stop + 1
            if kind == 0x02:
                size = struct.unpack_from("<i", raw, pos)[0]
                if size < 1 or pos + 4 + size > end + 1:
                    raise ValueError("a string overruns its document")
                fields[key] = raw[pos + 4:pos + 3 + size].decode("utf-8")
                pos += 4 + size
            elif kind in _FIXED:
                if kind == 0x08:
                    fields[key] = raw[pos] == 1
                pos += _FIXED[kind]
            else:
                raise ValueError("BSON type 0x%02x in a header" % kind)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ArchiveFormatError("%s is not a well-formed BSON document (%s)" % (what, exc))
    if pos != end or raw[-1:] != b"\0":
        raise ArchiveFormatError("%s is not a well-formed BSON document (length)" % what)
    if not isinstance(fields.get("db"), str) or not isinstance(fields.get("collection"), str):
        raise ArchiveFormatError("%s names no db and collection" % what)
    return fields


def _cstring(stream, limit, what):
    out = bytearray()
    while True:
        byte = stream.read(1, what)
        if byte == b"\0":
            return bytes(out)
        out += byte
        if len(out) > limit:
            raise ArchiveFormatError("%s has an element name longer than %d bytes" % (what, limit))


def _entry_ts(stream, size, what):
    """Walk the top-level elements of one oplog entry of ``size`` bytes; return its ``ts`` (t, i) or None.

    Values are skipped, never held: memory stays bounded whatever the entry holds.
    """
    left = size - 4
    ts = None
    while True:
        if left < 1:
            raise ArchiveFormatError("%s overruns its length" % what)
        kind = stream.read(1, what)[0]
        left -= 1
        if kind == 0:
            if left:
                raise ArchiveFormatError("%s ends %d bytes before its length" % (what, left))
            return ts
        start = stream.offset
        key = _cstring(stream, min(MAX_KEY, left), what)
        left -= stream.offset - start
        if kind in _FIXED:
            value = _FIXED[kind]
            if value > left:
                raise ArchiveFormatError("%s overruns its length" % what)
            if kind == 0x11 and key == b"ts":
                increment, seconds = struct.unpack("<II", stream.read(8, what))
                ts = (seconds, increment)
            else:
                stream.skip(value, what)
            left -= value
            continue
        if kind in _LENGTH_PREFIXED or kind in (0x03, 0x04, 0x05, 0x0F):
            if left < 4:
                raise ArchiveFormatError("%s overruns its length" % what)
            length = struct.unpack("<i", stream.read(4, what))[0]
            value = length + (1 if kind == 0x05 else 0) - (4 if kind in (0x03, 0x04, 0x0F) else 0)
            if length < (5 if kind in (0x03, 0x04, 0x0F) else 0) or value > left - 4:
                raise ArchiveFormatError("%s holds a value longer than itself" % what)
            stream.skip(value, what)
            left -= 4 + value
            continue
        if kind == 0x0B:  # regular expression: two C strings
            for dummy in range(2):
                start = stream.offset
                _cstring(stream, left, what)
                left -= stream.offset - start
            continue
        if kind == 0x0C:  # DBPointer: string, then 12 bytes
            length = struct.unpack("<i", stream.read(4, what))[0]
            if length < 0 or length + 12 > left - 4:
                raise ArchiveFormatError("%s holds a value longer than itself" % what)
            stream.skip(length + 12, what)
            left -= 16 + length
            continue
        raise ArchiveFormatError("%s holds an unknown BSON type 0x%02x" % (what, kind))


def read_archive(stream):
    """Walk a mongodump archive from a binary stream; return what the oplog says.

    ``{"namespaces": N, "documents": N, "oplog_entries": N, "oplog_last": (t, i) or None}``.
    Documents are skipped by their length, never held; only the oplog entries'
    top-level elements are walked, for their ``ts``. Raises ArchiveFormatError
    (one sentence) for anything that does not follow the format.
    """
    stream = _Stream(stream)
    if stream.read(4, "the magic number") != ARCHIVE_MAGIC:
        raise ArchiveFormatError("the stream does not start with the magic number of a mongodump archive")
    if _small_document(stream, "the archive header") is None:
        raise ArchiveFormatError("the archive has no header document")
    while _small_document(stream, "the collection metadata") is not None:
        pass
    result = {"namespaces": 0, "documents": 0, "oplog_entries": 0, "oplog_last": None}
    seen = set()
    while True:
        if stream.at_end():
            result["namespaces"] = len(seen)
            return result
        head = stream.read(4, "a namespace header")
        if head == ARCHIVE_TERMINATOR:
            raise ArchiveFormatError("a terminator stands where a namespace header belongs, at byte %d"
                                     % (stream.offset - 4))
        size = _length(head, "a namespace header", stream.offset - 4)
        if size > 1024 * 1024:
            raise ArchiveFormatError("a namespace header at byte %d is %d bytes long" % (stream.offset - 4, size))
        header = _header_fields(head + stream.read(size - 4, "a namespace header"), "a namespace header")
        namespace = (header["db"], header["collection"])
        seen.add(namespace)
        if header.get("EOF"):
            if stream.read(4, "an EOF block") != ARCHIVE_TERMINATOR:
                raise ArchiveFormatError("an EOF header is not followed by a terminator, at byte %d" % stream.offset)
            continue
        oplog = namespace == OPLOG_NAMESPACE
        count = 0
        while True:
            if not oplog:
                skipped = stream.skip_documents()
                count += skipped
                result["documents"] += skipped
            head = stream.read(4, "a namespace segment")
            if head == ARCHIVE_TERMINATOR:
                break
            size = _length(head, "a document", stream.offset - 4)
            count += 1
            if oplog:
                ts = _entry_ts(stream, size, "an oplog entry")
                if ts is None:
                    raise ArchiveFormatError("an oplog entry holds no ts Timestamp, at byte %d" % stream.offset)
                result["oplog_entries"] += 1
                if result["oplog_last"] is None or ts >= result["oplog_last"]:
                    result["oplog_last"] = ts
            else:
                stream.skip(size - 4, "a document")
                result["documents"] += 1
        if not count:
            raise ArchiveFormatError("a namespace segment holds no document, at byte %d" % stream.offset)


class ArchiveTap(object):
    """Reads a copy of the archive in a thread while it streams to the store (``tee`` writes the copy).

    The thread reads its pipe to the end whatever happens, so that ``tee`` is
    never blocked or killed by it: a parse problem only ends the parsing and
    is kept in ``error``. Memory is bounded by read_archive's.
    """

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, name="lifeboat-mongo-archive-tap")
        self.thread.daemon = True
        self.thread.start()

    @property
    def path(self):
        return "/dev/fd/%d" % self.write_fd

    def _run(self):
        with os.fdopen(self.read_fd, "rb", buffering=READ_CHUNK) as stream:
            try:
                self.result = read_archive(stream)
            except ArchiveFormatError as exc:
                self.error = str(exc)
            except Exception as exc:  # pylint: disable=broad-except
                self.error = "%s: %s" % (type(exc).__name__, exc)
            try:
                while stream.read(READ_CHUNK):
                    pass
            except OSError:
                pass

    def close(self, timeout=60):
        """Close this process's end of the copy and wait for the reader (tee has exited by now)."""
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None
        self.thread.join(timeout)
        if self.thread.is_alive() and self.error is None:
            self.error = "the archive reader did not finish within %d s" % timeout
            self.result = None


def timestamp_time(seconds):
    """A Timestamp's seconds as an ISO 8601 UTC time."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def reached_position(oplog_start, tapped, tap_error):
    """The manifest's oplog position fields, and a warning (or None).

    The position reached is the ts of the last oplog entry in the archive; with
    no entry it is the start (nothing was written during the dump). A tap that
    could not read the archive leaves the start and says so.
    """
    start = (oplog_start["t"], oplog_start["i"]) if oplog_start else None
    warning = None
    if tap_error is not None or tapped is None:
        reached, source = start, "start"
        warning = ("The oplog time this dump reached could not be read from mongodump's archive (%s); the set's "
                   "position is the oplog start time instead, which is earlier." % (tap_error or "no result"))
    elif tapped["oplog_last"] is not None and (start is None or tapped["oplog_last"] >= start):
        reached, source = tapped["oplog_last"], "archive"
    else:
        reached, source = start, "start"
    position = {
        "oplog_reached_t": reached[0] if reached else None,
        "oplog_reached_i": reached[1] if reached else None,
        "oplog_reached_time": timestamp_time(reached[0]) if reached else None,
        "oplog_reached_from": source,
        "oplog_start_time": timestamp_time(start[0]) if start else None,
    }
    return position, warning


# ------------------------------------------------------------------ namespace renaming (nsFrom/nsTo)

_SPECIAL = set("*[](){}\\?$^+!.|")


def _pattern_parts(pattern):
    """Split an nsFrom/nsTo pattern into literal text and variable names.

    As in mongorestore: without ``$`` each unescaped ``*`` is a numbered variable;
    ``$name$`` names a variable; ``\\*`` and ``\\\\`` are a literal star and backslash.
    """
    if "$" not in pattern:
        parts, index, count = [], 0, 0
        literal = ""
        while index < len(pattern):
            char = pattern[index]
            if char == "\\" and index + 1 < len(pattern):
                literal += pattern[index + 1]
                index += 2
                continue
            if char == "\\":
                index += 1
                continue
            if char == "*":
                count += 1
                parts.append(literal)
                parts.append(("var", str(count)))
                literal = ""
            else:
                literal += char
            index += 1
        parts.append(literal)
        return [p for p in parts if p != ""]
    parts, rest = [], pattern
    while rest:
        if rest[0] == "$":
            end = rest.find("$", 1)
            if end < 0:
                raise LifeboatError("Namespace pattern %r has an odd number of $ signs." % pattern)
            parts.append(("var", rest[1:end]))
            rest = rest[end + 1:]
        else:
            end = rest.find("$")
            end = len(rest) if end < 0 else end
            parts.append(rest[:end])
            rest = rest[end:]
    return parts


class Renamer(object):
    """mongorestore's --nsFrom/--nsTo mapping, to know which namespaces a restore writes."""

    def __init__(self, sources, targets):
        if len(sources) != len(targets):
            raise LifeboatError("ns_from and ns_to must have the same number of patterns.")
        self.rules = []
        for source, target in zip(sources, targets):
            source_parts = _pattern_parts(source)
            target_parts = _pattern_parts(target)
            names = [p[1] for p in source_parts if isinstance(p, tuple)]
            if len(set(names)) != len(names):
                raise LifeboatError("ns_from pattern %r uses a variable more than once." % source)
            for part in target_parts:
                if isinstance(part, tuple) and part[1] not in names:
                    raise LifeboatError("ns_to pattern %r uses variable %r that ns_from %r does not set."
                                        % (target, part[1], source))
            regex = "".join("(?P<v%d>.*?)" % names.index(p[1]) if isinstance(p, tuple) else re.escape(p)
                            for p in source_parts)
            self.rules.append((re.compile("^%s$" % regex, re.S), target_parts, names))

    def rename(self, namespace):
        for regex, target_parts, names in self.rules:
            match = regex.match(namespace)
            if match:
                return "".join(match.group("v%d" % names.index(p[1])) if isinstance(p, tuple) else p
                               for p in target_parts)
        return namespace


# ------------------------------------------------------------------ engine

def find_tool(module, name):
    bin_dir = module.params.get("mongo_bin_dir")
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if not os.access(path, os.X_OK):
            raise LifeboatError("%s was not found in mongo_bin_dir %s." % (name, bin_dir))
        return path
    path = module.get_bin_path(name)
    if not path:
        raise LifeboatError("%s was not found on PATH; install the MongoDB Database Tools (100.x) or set "
                            "mongo_bin_dir." % name)
    return path


def tool_version(module, binary):
    try:
        line = _jobs.version_line(module, binary)
    except LifeboatError:
        return None
    return parse_version(line) or line


def probe(module, binary, conn_args, pass_fds, db="admin", collection="system.version"):
    """Run a zero-document dump of one namespace; return (exists, argv). Connects and authenticates."""
    argv = mongodump_argv(binary, conn_args, db=db, collection=collection, query=EMPTY_QUERY,
                          archive=os.devnull)
    rc, out, err = runner_for(module).run(argv, pass_fds=pass_fds)
    if rc != 0:
        raise MongoError(explain_error(err, module.params, "mongodump"))
    return probe_says_exists(err), argv


class DumpEngine(object):
    """The BackupJob engine: one archive per mongodump run, streamed through the core's codec."""

    def __init__(self, module, binary, creds, runs, oplog, versions, tee=None):
        self.module = module
        self.binary = binary
        self.creds = creds
        self.runs = runs
        self.oplog = oplog
        self.versions = versions
        # With the oplog, tee copies the archive to an ArchiveTap that reads the oplog time the dump reached.
        self.tee = tee
        self.taps = []
        self.logs = []

    # ------------------------------------------------------------ _jobs.run_backup_module hooks

    def describe(self, codec):
        cmd = []
        for dummy, db, collection in self.runs:
            cmd += _pipeline.describe([_pipeline.Stage("mongodump", self.argv(db, collection))] + self.tap_stages()
                                      + codec.stages())
        return cmd

    def tap_stages(self, tap=None):
        """``tee`` between mongodump and the codec when the archive's oplog is read (none otherwise)."""
        if not (self.oplog and self.tee):
            return []
        return [_pipeline.Stage("tee", [self.tee, tap.path if tap else "/dev/fd/<archive reader>"],
                                pass_fds=(tap.write_fd,) if tap else ())]

    def session(self):
        return self.creds

    def probe(self, decision):
        probe(self.module, self.binary, connection_args(self.module.params, self.creds.path), self.creds.pass_fds)

    def check_result(self, decision):
        return {"position": {"oplog": self.oplog}}

    def tool_versions(self, codec):
        versions = dict((k, v) for k, v in {"mongodump": tool_version(self.module, self.binary)}.items() if v)
        versions.update(codec.versions(self.module))
        return versions

    def argv(self, db, collection, config_path="<config>"):
        params = self.module.params
        return mongodump_argv(self.binary, connection_args(params, config_path if self.creds.text else None),
                              db=db, collection=collection,
                              exclude_collections=params.get("exclude_collections") or (),
                              oplog=self.oplog, read_preference=params.get("read_preference"),
                              verbose=self.oplog)

    def produce(self, ctx):
        for name, db, collection in self.runs:
            log = os.path.join(ctx.workspace, name + ".log")
            tap = ArchiveTap() if self.oplog and self.tee else None
            self.logs.append((name, db, collection, log))
            self.taps.append(tap)
            stage = _pipeline.Stage("mongodump", self.argv(db, collection, self.creds.path),
                                    pass_fds=self.creds.pass_fds, stderr_path=log)
            yield _jobs.Payload(name + ARCHIVE_SUFFIX, [stage] + self.tap_stages(tap))
            if tap is not None:
                tap.close()

    def release(self, ctx):
        """A failed payload leaves its tap open: close it (tee was stopped with the pipeline)."""
        for tap in self.taps:
            if tap is not None:
                tap.close()

    def explain(self, exc):
        if exc.stage == "mongodump":
            return MongoError(explain_error(exc.stderr, self.module.params, "mongodump"))
        return None

    def record(self, ctx, manifest):
        namespaces = []
        documents = 0
        oplog_start = None
        oplog_entries = None
        tap = None
        for index, (name, db, collection, log) in enumerate(self.logs):
            with open(log, "r", errors="replace") as handle:
                parsed = parse_dump_log(handle.read())
            tap = self.taps[index] or tap
            found = parsed["namespaces"]
            if db and collection and not found:
                raise MongoError('mongodump found no collection "%s" in database "%s"; check collections, or the '
                                 'user\'s read rights.' % (collection, db))
            if db and not found:
                raise MongoError('mongodump found no collection in database "%s": it does not exist (or is empty); '
                                 'check databases, or the user\'s read rights.' % db)
            namespaces += ["%d\t%s" % (index, n["namespace"]) for n in found]
            documents += sum(n["documents"] for n in found)
            if parsed["oplog_start"] is not None:
                oplog_start = parsed["oplog_start"]
                oplog_entries = parsed["oplog_entries"]
        complete = len(namespaces) <= MAX_LISTED_NAMESPACES
        manifest["tool_versions"] = self.versions
        manifest["position"] = {
            "oplog": self.oplog,
            # one archive with the oplog is consistent to one point; several archives are not
            "consistent": bool(self.oplog) and len(self.logs) == 1,
            "oplog_start_t": oplog_start["t"] if oplog_start else None,
            "oplog_start_i": oplog_start["i"] if oplog_start else None,
            "oplog_entries": oplog_entries,
            "replica_set": self.module.params.get("replica_set"),
        }
        if self.oplog:
            reached, warning = reached_position(oplog_start, tap.result if tap else None,
                                                tap.error if tap else "no archive reader ran")
            manifest["position"].update(reached)
            if warning:
                self.module.warn(warning)
        manifest["options"] = {
            "payloads": [f["name"] for f in manifest["files"]],
            "databases": [db or "" for dummy, db, dummy2, dummy3 in self.logs],
            "collections": [collection or "" for dummy, dummy2, collection, dummy3 in self.logs],
            # "<archive index>\t<db.collection>" for each namespace mongodump reported
            "namespaces": namespaces if complete else [],
            "namespaces_complete": complete,
            "documents": documents,
            "read_preference": self.module.params.get("read_preference"),
        }


class RestoreEngine(object):
    """The RestoreJob engine: each archive of the set into mongorestore --archive from the decoded stream."""

    def __init__(self, module, binary, dump_binary, creds):
        self.module = module
        self.binary = binary
        self.dump_binary = dump_binary
        self.creds = creds
        params = module.params
        self.renamer = Renamer(params.get("ns_from") or [], params.get("ns_to") or [])
        self.targets = []
        self.existing = []
        self.restored = 0
        self.oplog_applied = None

    def archives(self, manifest):
        """[(payload name, [namespaces])] of a set, in the order they were dumped."""
        options = manifest.get("options") or {}
        payloads = options.get("payloads")
        listed = options.get("namespaces")
        if (not isinstance(payloads, list) or not isinstance(listed, list)
                or payloads != [f["name"] for f in manifest["files"]]):
            raise MongoError("Set %s does not describe its archives (options.payloads); it was not written by "
                             "mongodb_backup." % manifest["set_id"])
        by_index = dict((index, []) for index in range(len(payloads)))
        for entry in listed:
            index, dummy, namespace = str(entry).partition("\t")
            if not index.isdigit() or int(index) not in by_index:
                raise MongoError("Set %s lists a namespace of no archive (%r)." % (manifest["set_id"], entry))
            by_index[int(index)].append(namespace)
        return [(payloads[index], by_index[index]) for index in range(len(payloads))]

    def conn(self, placeholder=False):
        return connection_args(self.module.params, ("<config>" if placeholder else self.creds.path)
                               if self.creds.text else None)

    def preconditions(self, job):
        manifest = job.manifest
        if manifest["engine"] != ENGINE:
            raise LifeboatError("Set %s was made by %s, not MongoDB; use that engine's restore module."
                                % (manifest["set_id"], manifest["engine"]))
        include = self.module.params.get("ns_include") or []
        for member in job.chain:
            if not (member.get("options") or {}).get("namespaces_complete") and not self.module.params.get("drop"):
                raise MongoError("Set %s holds more namespaces than its manifest lists, so they cannot be checked "
                                 "before the restore; set drop: true, or restore into an empty server with drop."
                                 % member["set_id"])
            for dummy, names in self.archives(member):
                for namespace in names:
                    if include and not any(Renamer([p], [p]).rules[0][0].match(namespace) for p in include):
                        continue
                    self.targets.append(self.renamer.rename(namespace))
        if not self.targets:
            raise MongoError("Set %s holds no namespace to restore (with this ns_include)." % manifest["set_id"])
        for member in job.chain:
            if (member.get("position") or {}).get("oplog") and not self.replay(member) \
                    and self.module.params.get("oplog_replay") is None:
                self.module.warn("Set %s holds the oplog of its dump, but it is not replayed: mongorestore refuses "
                                 "--oplogReplay with ns_from/ns_to or ns_include. The documents are restored as "
                                 "mongodump read them, not as of one point in time." % member["set_id"])
        # Without drop, refuse before anything is written if a target namespace exists already.
        if not self.module.params.get("drop"):
            for namespace in sorted(set(self.targets)):
                db, collection = split_namespace(namespace)
                exists, dummy = probe(self.module, self.dump_binary, self.conn(), self.creds.pass_fds, db, collection)
                if exists:
                    self.existing.append(namespace)
            if self.existing:
                shown = ", ".join(self.existing[:10]) + (" and %d more" % (len(self.existing) - 10)
                                                         if len(self.existing) > 10 else "")
                raise MongoError("The restore would write into existing namespace(s) %s; set drop: true to replace "
                                 "them, or restore beside them with ns_from/ns_to." % shown)
        else:
            probe(self.module, self.dump_binary, self.conn(), self.creds.pass_fds)

    def replay(self, member):
        """Whether ``member``'s oplog is replayed (``--oplogReplay``); raises when it was asked for but cannot be.

        mongorestore replays an oplog only into the whole instance: it refuses
        ``--oplogReplay`` with ``--nsInclude``/``--nsExclude`` and with
        ``--nsFrom``/``--nsTo``.
        """
        params = self.module.params
        if not (member.get("position") or {}).get("oplog") or params.get("oplog_replay") is False:
            return False
        narrowed = [name for name in ("ns_from", "ns_include") if params.get(name)]
        if not narrowed:
            return True
        if params.get("oplog_replay"):
            raise MongoError("oplog_replay cannot be used with %s: mongorestore replays the oplog of set %s only into "
                             "the whole instance (it refuses --oplogReplay with namespace renames and includes); set "
                             "oplog_replay: false, or restore without %s."
                             % (" or ".join(narrowed), member["set_id"], " and ".join(narrowed)))
        return False

    def argv(self, member, placeholder=False):
        params = self.module.params
        oplog = self.replay(member)
        return mongorestore_argv(self.binary, self.conn(placeholder), drop=params.get("drop"), oplog_replay=oplog,
                                 ns_from=params.get("ns_from") or [], ns_to=params.get("ns_to") or [],
                                 ns_include=params.get("ns_include") or [])

    def consume(self, job, member):
        for payload, dummy in self.archives(member):
            stage = _pipeline.Stage("mongorestore", self.argv(member), pass_fds=self.creds.pass_fds)
            try:
                dummy2, err = job.stream(member, payload, [stage])
            except _pipeline.PipelineError as exc:
                if exc.stage == "mongorestore":
                    raise MongoError(explain_error(exc.stderr, self.module.params, "mongorestore"))
                explained = _jobs.explain_decode_error(exc, member)
                raise MongoError(explained) if explained else exc
            restored, failed, applied = parse_restore_log(err)
            if failed:
                raise MongoError("mongorestore restored %s document(s) of %s but %d failed: %s"
                                 % (restored, payload, failed, last_failure(err)))
            self.restored += restored or 0
            if applied is not None:
                self.oplog_applied = (self.oplog_applied or 0) + applied

    def finalise(self, job):
        """Nothing to do after the last archive: mongorestore has built the indexes itself."""
