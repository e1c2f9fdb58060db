# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The ``s3`` store: a bucket and prefix on AWS S3 or any S3-compatible endpoint.

Layout (object keys)::

    <prefix>/<host>/<source>/<set_id>/<file>           payload files
    <prefix>/<host>/<source>/<set_id>/manifest.json    written last: its presence makes the set
    <prefix>/<host>/<source>/<set_id>/.writing         a run in progress (removed after commit)
    <prefix>/<host>/<source>/.lock                     one writer per source
    <prefix>/<host>/<source>/.conditional-put-probe    tells whether the endpoint honours If-None-Match
    <prefix>/<host>/<source>/objects/<name>            the object namespace

A set id prefix without a manifest is never a set: it is a partial (a run in
progress, a crashed run, a half-deleted set), and so is an incomplete
multipart upload. Listing reads key names only: one ListObjectsV2 pass over
the set-id range of a source (set ids start with a digit, so ``.lock`` and
``objects/`` are never listed) and one ListMultipartUploads.

Payloads are written as streaming multipart uploads: memory is bounded by the
part size, a payload smaller than one part is a single PutObject, every
request carries Content-MD5 and, where the endpoint takes it, an S3 SHA-256
checksum. ``close`` completes the upload and checks the stored object's size
and ETag itself. docs/stores.md describes the lock and its guarantees.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import datetime
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import uuid

from ansible_collections.lifeboat.backup.plugins.module_utils._common import format_ts, utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils import _aws
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import (
    DELETING_SUFFIX,
    LOCK_NAME,
    MAX_LOCK_BYTES,
    OBJECTS_DIR,
    PARTIAL_SUFFIX,
    StoreError,
    escape,
)


def _read_errors():
    """What reading a response body may raise: botocore's errors, urllib3's and OSError.

    Used only in ``except`` clauses, which evaluate it when an exception reaches
    them, so neither botocore nor urllib3 is imported before an s3 store is used.
    """
    urllib3_exceptions = sys.modules.get("urllib3.exceptions")
    extra = (urllib3_exceptions.HTTPError,) if urllib3_exceptions is not None else ()
    return _aws.BOTO_ERRORS + extra + (OSError,)


MIB = 1024 * 1024
# Parts of one payload uploaded at once, by a pool of this many threads per sink ...
UPLOAD_THREADS = 2
# ... within this memory: the parts in flight plus the one being filled, each part_size long. A part
# size too large for two buffers in it (the default 16 MiB) uploads one part at a time, in the writer's
# thread, so that a module stays under 100 MB whatever it uploads.
UPLOAD_MEMORY = 24 * MIB
DEFAULT_PART_MIB = 16
MIN_PART_MIB = 5
MAX_PART_MIB = 5120
MAX_PARTS = 10000
MAX_SINGLE_PUT = 5 * 1024 * MIB
LIST_PAGE = 1000
WRITING_MARKER = ".writing"
PROBE_NAME = ".conditional-put-probe"
UPLOAD_SUFFIX = ".upload"
MAX_STRAYS = 100
MAX_TAGS = 10
SSE_CHOICES = ["AES256", "aws:kms", "aws:kms:dsse"]
LOCK_MODES = ["GOVERNANCE", "COMPLIANCE"]
BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}\Z")
STORAGE_CLASS_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,39}\Z")
MD5_ETAG_RE = re.compile(r"^[0-9a-f]{32}\Z")
MULTIPART_ETAG_RE = re.compile(r"^[0-9a-f]{32}-[0-9]+\Z")
PREFIX_PART_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,255}\Z")

OPTIONS = dict(
    bucket=dict(type="str"),
    prefix=dict(type="str"),
    storage_class=dict(type="str"),
    sse=dict(type="str", choices=SSE_CHOICES),
    kms_key_id=dict(type="str", no_log=False),
    tags=dict(type="dict"),
    part_size=dict(type="int", default=DEFAULT_PART_MIB),
    object_lock_mode=dict(type="str", choices=LOCK_MODES),
    object_lock_days=dict(type="int"),
)
OPTIONS.update(_aws.CONNECTION_OPTIONS)


class S3RequestError(StoreError):
    """A request failed; the message is one sentence, ``cause`` the botocore exception."""

    def __init__(self, message, cause=None):
        super(S3RequestError, self).__init__(message)
        self.cause = cause


def _b64(digest):
    return base64.b64encode(digest).decode("ascii")


def _md5():
    try:
        return hashlib.md5(usedforsecurity=False)  # FIPS hosts: MD5 here is an integrity check only
    except TypeError:
        return hashlib.md5()  # nosec - Python < 3.9


def _base_id(name):
    """A set id with a dir store's .partial / .deleting suffix removed."""
    for suffix in (PARTIAL_SUFFIX, DELETING_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _clean_prefix(prefix):
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise StoreError("The s3 store prefix must be a string like backups/lifeboat.")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    parts = stripped.split("/")
    for part in parts:
        if part in (".", "..") or not PREFIX_PART_RE.match(part):
            raise StoreError("The s3 store prefix %r is not plain: use parts without control characters, "
                             "empty parts, . or .., joined by /." % escape(prefix))
    return "/".join(parts)


def _tagging(tags):
    """The Tagging header value for ``tags`` (a dict), or None."""
    if not tags:
        return None
    if not isinstance(tags, dict):
        raise StoreError("The s3 store tags must be a dictionary of names and values.")
    if len(tags) > MAX_TAGS:
        raise StoreError("The s3 store takes at most %d tags (an S3 limit), not %d." % (MAX_TAGS, len(tags)))
    pairs = []
    for key, value in sorted((str(k), "" if v is None else str(v)) for k, v in tags.items()):
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise StoreError("Tag %r is not usable: names have 1 to 128 characters, values at most 256."
                             % escape(key, 60))
        pairs.append((key, value))
    from urllib.parse import urlencode  # pylint: disable=import-outside-toplevel
    return urlencode(pairs)


def _total_size(response):
    """The full size of an object from a (ranged) GetObject response."""
    content_range = response.get("ContentRange") or ""
    match = re.match(r"^bytes \d+-\d+/(\d+)$", content_range.strip())
    if match:
        return int(match.group(1))
    length = response.get("ContentLength")
    return length if isinstance(length, int) else None


def _kms_encrypted(response):
    return str(response.get("ServerSideEncryption") or "").startswith("aws:kms") or bool(
        response.get("SSECustomerAlgorithm"))


class _ViewReader(object):
    """A seekable file over a memoryview, so botocore sends (and re-sends) a part without copying it whole."""

    def __init__(self, view):
        self.view = view
        self.pos = 0

    def read(self, size=-1):
        end = len(self.view) if size is None or size < 0 else min(len(self.view), self.pos + size)
        data = self.view[self.pos:end].tobytes()
        self.pos = end
        return data

    def seek(self, offset, whence=0):
        if whence == 1:
            offset += self.pos
        elif whence == 2:
            offset += len(self.view)
        self.pos = max(0, min(offset, len(self.view)))
        return self.pos

    def tell(self):
        return self.pos

    def seekable(self):
        return True

    def readable(self):
        return True

    def __len__(self):
        return len(self.view)


# ------------------------------------------------------------------ reading

class S3Reader(object):
    """A payload streamed from GetObject's body: ``read``, ``readinto``, ``close`` (no ``fileno``).

    A read cut off by the network resumes where it stopped (a ranged GET of
    the same ETag), at most ``max_attempts`` times.
    """

    def __init__(self, store, key, response):
        self.store = store
        self.key = key
        self.body = response["Body"]
        self.etag = response.get("ETag")
        self.length = response.get("ContentLength")
        self.pos = 0
        self.resumed = 0
        self.closed = False

    def readable(self):
        return True

    def read(self, size=-1):
        while True:
            try:
                if size is None or size < 0:
                    data = self.body.read()
                else:
                    data = self.body.read(size)
            except _read_errors() as exc:
                if not self._resume(exc):
                    return b""
                continue
            self.pos += len(data)
            return data

    def readinto(self, buffer):
        view = memoryview(buffer)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def _resume(self, exc):
        """Reopen the object at the current offset; False at its end. Raises StoreError when out of attempts."""
        where = self.store.url(self.key)
        self.resumed += 1
        if self.resumed >= self.store.connection.max_attempts:
            raise StoreError(_aws.describe_error(exc, self.store.connection, where, self.store.bucket)
                             if not isinstance(exc, OSError) else
                             "Reading %s was cut off after %d attempts (%s); try again."
                             % (where, self.resumed, escape(exc.strerror or exc, 80)))
        try:
            self.body.close()
        except Exception:  # pylint: disable=broad-except
            pass
        if self.length is not None and self.pos >= self.length:
            return False
        args = dict(Key=self.key, Range="bytes=%d-" % self.pos)
        if self.etag:
            args["IfMatch"] = self.etag
        try:
            response = self.store._call("get_object", where, **args)
        except S3RequestError as err:
            if _aws.is_precondition_failed(err.cause):
                raise StoreError("%s changed while it was being read; read it again." % where)
            raise
        self.body = response["Body"]
        return True

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.body.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


# ------------------------------------------------------------------ writing

def parts_in_flight(part_size):
    """How many parts of ``part_size`` bytes one sink uploads in the background while the next fills (0: none)."""
    return max(0, min(UPLOAD_THREADS, UPLOAD_MEMORY // part_size - 1))


class S3Sink(_stores.Sink):
    """One payload object: buffered part by part, parts uploaded by a small pool, completed and checked on close.

    Up to ``parts_in_flight(part_size)`` parts are uploaded at once while the
    next one fills, so memory stays within that many parts plus one (with
    none in flight, each part is uploaded when full, from the one buffer). Parts
    are numbered in the order written and listed in that order on completion;
    the first failure stops the upload (``abort``) and is raised to the writer.
    """

    def __init__(self, store, key, part_size):
        self.store = store
        self.key = key
        self.name = store.url(key)
        self.part_size = part_size
        self.in_flight = parts_in_flight(part_size)
        self.buffer = bytearray(part_size)
        self.spare = []
        self.pending = collections.deque()
        self.pool = None
        self.fill = 0
        self.size = 0
        self.upload_id = None
        self.checksums = False
        self.parts = []
        self.part_md5s = []
        self.part_sums = []
        # Set once the endpoint has answered a part with the very SHA-256 sent: it checks that checksum,
        # so the later parts go without the (costlier) Content-MD5.
        self.sum_checked = False
        self.numbered = 0
        self.state = "open"

    def write(self, data):
        if self.state != "open":
            raise StoreError("%s is %s; nothing more can be written to it." % (self.name, self.state))
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        count = len(view)
        pos = 0
        try:
            while pos < count:
                take = min(self.part_size - self.fill, count - pos)
                self.buffer[self.fill:self.fill + take] = view[pos:pos + take]
                self.fill += take
                pos += take
                if self.fill == self.part_size:
                    self._upload_part()
        except BaseException:
            self.abort()
            raise
        finally:
            view.release()
        self.size += count
        return count

    def _upload_part(self):
        """Hand the filled buffer to the pool as the next part; wait for the oldest part when enough are in flight."""
        if self.numbered >= MAX_PARTS:
            raise StoreError("%s is larger than %d parts of %d MiB, S3's multipart limit; raise part_size."
                             % (self.name, MAX_PARTS, self.part_size // MIB))
        if self.upload_id is None:
            self._create()
        with_md5 = not (self.checksums and self.sum_checked)
        if not self.in_flight:
            # One part at a time, in this thread, from the one buffer.
            self._record(self._send_part(self.numbered + 1, self.buffer, self.fill, with_md5))
            self.numbered += 1
            self.fill = 0
            return
        if self.pool is None:
            self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.in_flight,
                                                              thread_name_prefix="lifeboat-s3-part")
        while len(self.pending) >= self.in_flight:
            self._collect_oldest()
        self.numbered += 1
        self.pending.append(self.pool.submit(self._send_part, self.numbered, self.buffer, self.fill, with_md5))
        self.buffer = self.spare.pop() if self.spare else bytearray(self.part_size)
        self.fill = 0

    def _collect_oldest(self):
        """Wait for the oldest part in flight; record it (parts stay in order) and keep its buffer for reuse."""
        self.spare.append(self._record(self.pending.popleft().result()))

    def _record(self, result):
        part, md5, digest, buffer = result
        self.parts.append(part)
        self.part_md5s.append(md5)
        self.part_sums.append(digest)
        return buffer

    def _send_part(self, number, buffer, fill, with_md5):
        """Upload one part (a pool thread) with its SHA-256 where the endpoint takes it, else its Content-MD5.

        Both go with the parts until the endpoint has shown that it checks the
        SHA-256 (it answers with the same value); an MD5 given is checked
        against the part's ETag, a SHA-256 answered against the one sent.
        """
        what = "part %d of %s" % (number, self.name)
        body = memoryview(buffer)[:fill]
        try:
            md5 = digest = None
            args = dict(Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=_ViewReader(body),
                        ContentLength=fill)
            if with_md5 or not self.checksums:
                hasher = _md5()
                hasher.update(body)
                md5 = hasher.digest()
                args["ContentMD5"] = _b64(md5)
            if self.checksums:
                digest = hashlib.sha256(body).digest()
                args["ChecksumAlgorithm"] = "SHA256"
                args["ChecksumSHA256"] = _b64(digest)
            response = self.store._call("upload_part", what, **args)
        finally:
            body.release()
        if md5 is not None:
            self.store._check_md5_etag(response, md5, what)
        part = {"PartNumber": number, "ETag": response.get("ETag")}
        if digest is not None:
            part["ChecksumSHA256"] = args["ChecksumSHA256"]
            answered = response.get("ChecksumSHA256")
            if answered is not None and answered != args["ChecksumSHA256"]:
                raise StoreError("The endpoint stored %s with SHA-256 %s, not %s as sent; the data was corrupted on "
                                 "the way." % (what, escape(answered, 80), args["ChecksumSHA256"]))
            if answered is not None:
                self.sum_checked = True
        return part, md5, digest, buffer

    def _drain(self):
        while self.pending:
            self._collect_oldest()

    def _stop_pool(self):
        """Cancel the parts not started, wait for those under way, end the threads."""
        for future in self.pending:
            future.cancel()
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def _create(self):
        args = dict(Key=self.key, **self.store._object_args(payload=True, retain=True))
        if self.store.checksums:
            try:
                response = self.store._call("create_multipart_upload", self.name, ChecksumAlgorithm="SHA256", **args)
                self.checksums = True
            except S3RequestError as err:
                if not _aws.is_unsupported(err.cause):
                    raise
                response = self.store._call("create_multipart_upload", self.name, **args)
                self.store.checksums = False
        else:
            response = self.store._call("create_multipart_upload", self.name, **args)
        self.upload_id = response["UploadId"]

    def close(self):
        if self.state == "closed":
            return
        if self.state != "open":
            raise StoreError("%s was aborted; it cannot be completed." % self.name)
        try:
            if self.upload_id is None:
                self._put_single()
            else:
                if self.fill:
                    self._upload_part()
                self._drain()
                self._stop_pool()
                self._complete()
        except BaseException:
            self.abort()
            raise
        self.state = "closed"
        self.buffer = None
        self.spare = []

    def _put_single(self):
        body = memoryview(self.buffer)[:self.fill]
        try:
            self.store._put(self.key, body, self.name, payload=True, retain=True)
        finally:
            body.release()

    def _complete(self):
        self.store._call("complete_multipart_upload", self.name, Key=self.key, UploadId=self.upload_id,
                         MultipartUpload={"Parts": self.parts})
        self.upload_id = None
        # Check what the endpoint made of it, rather than trusting "200 OK".
        if self.checksums:
            head = self.store._call("head_object", self.name, Key=self.key, ChecksumMode="ENABLED")
        else:
            head = self.store._call("head_object", self.name, Key=self.key)
        if head.get("ContentLength") != self.size:
            raise StoreError("%s holds %s bytes after the upload, but %d were sent; the upload is not trusted."
                             % (self.name, escape(head.get("ContentLength"), 20), self.size))
        if self.checksums and all(self.part_sums):
            # The composite checksum: the SHA-256 of the parts' SHA-256s, "-<parts>".
            expected = _b64(hashlib.sha256(b"".join(self.part_sums)).digest())
            reported = str(head.get("ChecksumSHA256") or "")
            if reported and reported.split("-", 1)[0] != expected:
                raise StoreError("%s has the SHA-256 checksum %s after the upload, not %s-%d as sent; the data was "
                                 "corrupted on the way." % (self.name, escape(reported, 80), expected, len(self.parts)))
        if all(self.part_md5s):
            etag = str(head.get("ETag") or "").strip('"')
            hasher = _md5()
            hasher.update(b"".join(self.part_md5s))
            expected = "%s-%d" % (hasher.hexdigest(), len(self.parts))
            if not _kms_encrypted(head) and MULTIPART_ETAG_RE.match(etag) and etag != expected:
                raise StoreError("%s has ETag %s after the upload, not %s as sent; the upload is not trusted."
                                 % (self.name, escape(etag, 80), expected))

    def abort(self):
        if self.state != "open":
            return
        self.state = "aborted"
        self._stop_pool()
        self.buffer = None
        self.spare = []
        if self.upload_id is not None:
            try:
                self.store._call("abort_multipart_upload", self.name, Key=self.key, UploadId=self.upload_id)
            except StoreError:
                pass  # remove_partials finds it later
            self.upload_id = None


class S3SetWriter(_stores.SetWriter):
    """Writes one set under ``<set_id>/``: a ``.writing`` marker first, the payloads, the manifest last."""

    def __init__(self, store, host, source, set_id):
        self.store = store
        self.prefix = store._set_prefix(host, source, set_id)
        self.where = store.location(host, source, set_id)
        self.sinks = {}
        self.committed = False
        if next(iter(store._keys(self.prefix, max_keys=1)), None) is not None:
            raise StoreError("Set %s already exists, or a crashed run left part of it (remove_partials clears "
                             "that); pick another set id." % self.where)
        marker = json.dumps({"pid": os.getpid(), "node": socket.gethostname(),
                             "started_at": format_ts(utcnow())}).encode("utf-8")
        store._put(self.prefix + WRITING_MARKER, marker, self.where, payload=False, retain=False)

    def open(self, name):
        _stores.check_file_name(name)
        if name == _manifest.MANIFEST_NAME:
            raise StoreError("%s is the manifest's name; a payload file cannot have it." % name)
        if name in self.sinks:
            raise StoreError("%s was already written in %s." % (name, self.where))
        sink = S3Sink(self.store, self.prefix + name, self.store.part_size)
        self.sinks[name] = sink
        return sink

    def commit(self, raw_manifest, names):
        written = sorted(name for name, sink in self.sinks.items() if sink.state == "closed")
        if written != sorted(names) or len(written) != len(self.sinks):
            raise StoreError("Refusing to commit %s: the files written %s differ from the manifest %s."
                             % (self.where, written, sorted(names)))
        present = {}
        for item in self.store._keys(self.prefix):
            rel = item["Key"][len(self.prefix):]
            if rel != WRITING_MARKER:
                present[rel] = item.get("Size")
        expected = dict((name, self.sinks[name].size) for name in written)
        if present != expected:
            raise StoreError("Refusing to commit %s: the bucket holds %s, not the files written %s."
                             % (self.where, sorted(escape(n) for n in present), written))
        self.store._put(self.prefix + _manifest.MANIFEST_NAME, bytes(raw_manifest), self.where,
                        payload=False, retain=True, if_none_match=True)
        self.committed = True
        try:
            self.store._call("delete_object", self.where, Key=self.prefix + WRITING_MARKER)
        except StoreError:
            pass  # a leftover marker in a complete set is ignored

    def abort(self):
        if self.committed:
            return
        for sink in self.sinks.values():
            sink.abort()
        # Only what this writer wrote (the set id was free when it began).
        for key in [sink.key for sink in self.sinks.values()] + [self.prefix + WRITING_MARKER]:
            try:
                self.store._call("delete_object", self.store.url(key), Key=key)
            except StoreError:
                pass  # remove_partials finds it later


# ------------------------------------------------------------------ the lock

class S3Lock(_stores.Lock):
    """``<source>/.lock``: a conditional PUT (If-None-Match) where the endpoint honours it.

    Elsewhere an owner-and-expiry object written after a check and read back
    (a weaker guarantee: two runs racing within one round trip may both
    believe they hold it; docs/stores.md).
    """

    def __init__(self, store, host, source, ttl=86400.0, now=None):
        self.store = store
        self.host = host
        self.source = source
        self.key = store._src(host, source) + LOCK_NAME
        self.where = store.url(self.key)
        self.ttl = ttl
        self.now = now or utcnow
        self.set_id = None
        self.stale = None
        self.held = False
        self.etag = None
        self.token = uuid.uuid4().hex
        self.conditional = None

    def _body(self):
        info = _stores.lock_info(self.now(), self.ttl, self.set_id)
        info["token"] = self.token
        return json.dumps(info).encode("utf-8")

    def _read(self):
        """(info, etag) of the lock object, or (None, None) when there is none."""
        try:
            got = self.store._get_bounded(self.key, MAX_LOCK_BYTES, self.where)
        except _manifest.ManifestError:
            return {}, None
        if got is None:
            return None, None
        raw, etag = got
        try:
            info = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            return {}, etag
        return (info if isinstance(info, dict) else {}), etag

    def acquire(self):
        self.conditional = self.store._conditional_put(self.host, self.source)
        for dummy in range(20):
            if self.conditional:
                try:
                    self.etag = self.store._put(self.key, self._body(), self.where, payload=False, retain=False,
                                                if_none_match=True, strict=True)
                    self.held = True
                    return self
                except S3RequestError as err:
                    if not (_aws.is_precondition_failed(err.cause) or _aws.error_code(err.cause) ==
                            "ConditionalRequestConflict"):
                        raise
                if self._take_over_if_stale():
                    return self
            else:
                if self._acquire_unconditional():
                    return self
        raise _stores.LockedError("Could not take the lock %s: it keeps changing hands." % self.where)

    def _check_holder(self):
        """(info, etag, state) of the current lock; raises LockedError when a live run holds it."""
        info, etag = self._read()
        if info is None:
            return None, None, None
        state = _stores.lock_holder_state(info, socket.gethostname(), self.now())
        if state == "live":
            raise _stores.LockedError(_stores.locked_message(info, self.where))
        return info, etag, state

    def _take_over_if_stale(self):
        info, etag, state = self._check_holder()
        if info is None:
            return False  # released meanwhile: try again
        if etag is None:  # too large to read: its ETag still pins the version to replace
            try:
                etag = self.store._call("head_object", self.where, Key=self.key).get("ETag")
            except S3RequestError as err:
                if _aws.is_not_found(err.cause):
                    return False
                raise
        try:
            self.etag = self.store._put(self.key, self._body(), self.where, payload=False, retain=False,
                                        if_match=etag, strict=True)
        except S3RequestError as err:
            if _aws.is_precondition_failed(err.cause) or _aws.is_not_found(err.cause):
                return False  # another contender moved first
            if not _aws.is_unsupported(err.cause):
                raise
            # The endpoint takes If-None-Match but not If-Match: replace, then read back.
            self.etag = self.store._put(self.key, self._body(), self.where, payload=False, retain=False)
            if not self._read_back():
                return False
        self.held = True
        self.stale = _stores.stale_report(info, state)
        return True

    def _acquire_unconditional(self):
        info, dummy, state = self._check_holder()
        self.etag = self.store._put(self.key, self._body(), self.where, payload=False, retain=False)
        if not self._read_back():
            return False
        self.held = True
        if info is not None:
            self.stale = _stores.stale_report(info, state)
        return True

    def _read_back(self):
        info, etag = self._read()
        if isinstance(info, dict) and info.get("token") == self.token:
            self.etag = etag or self.etag
            return True
        if info and _stores.lock_holder_state(info, socket.gethostname(), self.now()) == "live":
            raise _stores.LockedError(_stores.locked_message(info, self.where))
        return False

    def update(self, set_id):
        self.set_id = set_id
        if not self.held:
            return
        if self.conditional and self.etag:
            try:
                self.etag = self.store._put(self.key, self._body(), self.where, payload=False, retain=False,
                                            if_match=self.etag, strict=True)
                return
            except S3RequestError as err:
                if _aws.is_precondition_failed(err.cause) or _aws.is_not_found(err.cause):
                    self.held = False
                    raise StoreError("The lock %s was taken over by another run; this run stops." % self.where)
                if not _aws.is_unsupported(err.cause):
                    raise
        info, dummy = self._read()
        if not isinstance(info, dict) or info.get("token") != self.token:
            self.held = False
            raise StoreError("The lock %s was taken over by another run; this run stops." % self.where)
        self.etag = self.store._put(self.key, self._body(), self.where, payload=False, retain=False)

    def release(self):
        if not self.held:
            return
        self.held = False
        try:
            # Only our own lock is removed: read it back, then delete that very version.
            info, etag = self._read()
            if not isinstance(info, dict) or info.get("token") != self.token:
                return  # taken over after our lease ran out: leave it to its holder
            try:
                self.store._call("delete_object", self.where, Key=self.key, IfMatch=etag or self.etag)
            except S3RequestError as err:
                if _aws.is_precondition_failed(err.cause) or _aws.is_not_found(err.cause):
                    return
                if not _aws.is_unsupported(err.cause):
                    raise
                self.store._call("delete_object", self.where, Key=self.key)
        except StoreError:
            pass  # an expired lease; the next run reports it as stale


# ------------------------------------------------------------------ the store

class S3Store(_stores.Store):
    """A store in an S3 bucket (AWS or any S3-compatible endpoint)."""

    kind = "s3"

    def __init__(self, spec, runner=None):
        _aws.require_boto3()
        bucket = spec.get("bucket")
        if not isinstance(bucket, str) or not BUCKET_RE.match(bucket):
            raise StoreError("The s3 store needs bucket: the name of an existing bucket, not %s."
                             % ("%r" % escape(bucket, 60) if bucket is not None else "None"))
        self.bucket = bucket
        self.prefix = _clean_prefix(spec.get("prefix"))
        self.base = self.prefix + "/" if self.prefix else ""
        self.connection = _aws.Connection(spec)
        part = spec.get("part_size")
        part = DEFAULT_PART_MIB if part is None else part
        if isinstance(part, bool) or not isinstance(part, int) or not MIN_PART_MIB <= part <= MAX_PART_MIB:
            raise StoreError("part_size must be a whole number of MiB from %d to %d (S3's part limits), not %r."
                             % (MIN_PART_MIB, MAX_PART_MIB, escape(part, 20)))
        self.part_size = part * MIB
        storage_class = spec.get("storage_class")
        if storage_class is not None:
            storage_class = str(storage_class).upper()
            if not STORAGE_CLASS_RE.match(storage_class):
                raise StoreError("storage_class %r is not a storage class name like STANDARD_IA."
                                 % escape(spec.get("storage_class"), 40))
        self.storage_class = storage_class
        self.sse = spec.get("sse")
        if self.sse is not None and self.sse not in SSE_CHOICES:
            raise StoreError("sse must be one of %s, not %r." % (", ".join(SSE_CHOICES), escape(self.sse, 40)))
        self.kms_key_id = spec.get("kms_key_id")
        if self.kms_key_id and not str(self.sse or "").startswith("aws:kms"):
            raise StoreError("kms_key_id needs sse: aws:kms (or aws:kms:dsse).")
        self.tagging = _tagging(spec.get("tags"))
        self.lock_mode = spec.get("object_lock_mode")
        self.lock_days = spec.get("object_lock_days")
        if (self.lock_mode is None) != (self.lock_days is None):
            raise StoreError("object_lock_mode and object_lock_days go together; give both or neither.")
        if self.lock_mode is not None:
            if self.lock_mode not in LOCK_MODES:
                raise StoreError("object_lock_mode must be GOVERNANCE or COMPLIANCE, not %r." % escape(self.lock_mode, 40))
            if isinstance(self.lock_days, bool) or not isinstance(self.lock_days, int) or not 1 <= self.lock_days <= 36500:
                raise StoreError("object_lock_days must be a whole number of days from 1 to 36500.")
        self.client = _aws.client(self.connection, "s3")
        self.checksums = True
        self.list_page = LIST_PAGE
        self._conditional = None
        self._capabilities = None

    # -------------------------------------------------------------- plumbing
    def _call(self, operation, what, **kwargs):
        """Call the S3 API; a failure becomes S3RequestError with one sentence."""
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except _aws.BOTO_ERRORS as exc:
            raise S3RequestError(_aws.describe_error(exc, self.connection, what, self.bucket), exc)

    def url(self, key=""):
        return "s3://%s/%s" % (self.bucket, escape(key, 400))

    def _src(self, host, source):
        return "%s%s/%s/" % (self.base, _manifest.check_name(host, "host"), _manifest.check_name(source, "source"))

    def _set_prefix(self, host, source, set_id):
        return self._src(host, source) + _stores.check_set_id(set_id) + "/"

    def _pages(self, operation, **kwargs):
        """Every page of a ListObjectsV2 (or ListMultipartUploads) call."""
        what = self.url(kwargs.get("Prefix", ""))
        while True:
            page = self._call(operation, what, **kwargs)
            yield page
            if not page.get("IsTruncated"):
                return
            if operation == "list_objects_v2":
                token = page.get("NextContinuationToken")
                if not token:
                    return
                kwargs["ContinuationToken"] = token
            else:
                if not page.get("NextKeyMarker") and not page.get("NextUploadIdMarker"):
                    return
                kwargs["KeyMarker"] = page.get("NextKeyMarker") or ""
                kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker") or ""

    def _keys(self, prefix, start_after=None, max_keys=None):
        """Objects (dicts with Key, Size...) under ``prefix``, in key order."""
        args = dict(Prefix=prefix, MaxKeys=min(max_keys or self.list_page, self.list_page))
        if start_after:
            args["StartAfter"] = start_after
        for page in self._pages("list_objects_v2", **args):
            yield from page.get("Contents") or []

    def _prefixes(self, prefix):
        """The next-level names under ``prefix`` (CommonPrefixes with delimiter /)."""
        names = []
        for page in self._pages("list_objects_v2", Prefix=prefix, Delimiter="/", MaxKeys=self.list_page):
            for item in page.get("CommonPrefixes") or []:
                names.append(item["Prefix"][len(prefix):-1])
        return names

    def _uploads(self, prefix):
        """Incomplete multipart uploads under ``prefix``: (key, upload id)."""
        found = []
        for page in self._pages("list_multipart_uploads", Prefix=prefix, MaxUploads=self.list_page):
            for item in page.get("Uploads") or []:
                found.append((item["Key"], item["UploadId"]))
        return found

    def _object_args(self, payload, retain):
        args = {}
        if payload and self.storage_class:
            args["StorageClass"] = self.storage_class
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        if self.tagging:
            args["Tagging"] = self.tagging
        if retain and self.lock_mode:
            args["ObjectLockMode"] = self.lock_mode
            args["ObjectLockRetainUntilDate"] = utcnow() + datetime.timedelta(days=self.lock_days)
        return args

    def _check_md5_etag(self, response, md5, what):
        """An ETag that is an MD5 must be the MD5 that was sent (unless KMS encryption changes it)."""
        etag = str(response.get("ETag") or "").strip('"')
        if not _kms_encrypted(response) and MD5_ETAG_RE.match(etag) and etag != md5.hex():
            raise StoreError("The endpoint stored %s with MD5 %s, not %s as sent; the data was corrupted on the way."
                             % (what, etag, md5.hex()))

    def _put(self, key, data, what, payload, retain, if_none_match=False, if_match=None, strict=False, metadata=None):
        """PutObject of ``data`` (bytes, a memoryview or a seekable file) with Content-MD5 and SHA-256.

        ``if_none_match`` / ``if_match`` make it conditional; an endpoint that
        does not take the header gets the plain PUT, unless ``strict`` (the
        caller then sees the error). Returns the new ETag.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = memoryview(data)
            hasher = _md5()
            hasher.update(view)
            md5 = hasher.digest()
            sha = hashlib.sha256(view).digest()
            body = _ViewReader(view)
            length = len(view)
        else:
            body, length, md5, sha = data
        args = dict(Key=key, Body=body, ContentLength=length, ContentMD5=_b64(md5),
                    **self._object_args(payload, retain))
        if metadata:
            args["Metadata"] = metadata
        conditions = {}
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        if if_match:
            conditions["IfMatch"] = if_match
        use_sum = bool(self.checksums)
        sum_refused = False
        while True:
            extra = dict(conditions)
            if use_sum:
                extra["ChecksumSHA256"] = _b64(sha)
            body.seek(0)
            try:
                response = self._call("put_object", what, **dict(args, **extra))
                break
            except S3RequestError as err:
                if not _aws.is_unsupported(err.cause):
                    raise
                if use_sum:
                    use_sum, sum_refused = False, True  # first try without the SHA-256 header
                    continue
                if conditions and not strict:
                    conditions, sum_refused = {}, False  # then without the condition
                    use_sum = bool(self.checksums)
                    continue
                raise
        if sum_refused:
            self.checksums = False  # the endpoint does not take S3 additional checksums
        self._check_md5_etag(response, md5, what)
        return response.get("ETag")

    def _get_bounded(self, key, limit, what):
        """(bytes, etag) of a small object, refused unread above ``limit``; None when it is absent."""
        try:
            response = self._call("get_object", what, Key=key, Range="bytes=0-%d" % limit)
        except S3RequestError as err:
            if _aws.is_not_found(err.cause):
                return None
            if _aws.error_code(err.cause) == "InvalidRange" or _aws.http_status(err.cause) == 416:
                return b"", None  # an empty object has no byte 0
            raise
        body = response["Body"]
        try:
            total = _total_size(response)
            if total is not None and total > limit:
                raise _manifest.ManifestError("%s is %d bytes, more than the limit of %d; it is refused unread."
                                              % (what, total, limit))
            try:
                data = body.read(limit + 1)
            except _read_errors() as exc:
                raise StoreError("Reading %s was cut off (%s); try again." % (what, escape(type(exc).__name__, 60)))
        finally:
            body.close()
        if len(data) > limit:
            raise _manifest.ManifestError("%s is more than the limit of %d bytes; it is refused." % (what, limit))
        return data, response.get("ETag")

    def _delete_prefix(self, prefix):
        """Delete every object under ``prefix`` (one DeleteObject each: no Content-MD5 quirks)."""
        keys = [item["Key"] for item in self._keys(prefix)]
        for key in keys:
            self._call("delete_object", self.url(key), Key=key)
        return keys

    def _probe(self, key):
        """Does the endpoint honour If-None-Match on PutObject? Asked with a tiny object of our own."""
        for dummy in range(2):
            try:
                self._put(key, b"probe", self.url(key), payload=False, retain=False, if_none_match=True, strict=True)
            except S3RequestError as err:
                if _aws.is_precondition_failed(err.cause):
                    return True
                if _aws.is_unsupported(err.cause):
                    return False
                raise
        return False  # the second PUT of the same key went through: the header was ignored

    def _conditional_put(self, host, source):
        if self._conditional is None:
            self._conditional = self._probe(self._src(host, source) + PROBE_NAME)
        return self._conditional

    @property
    def capabilities(self):
        """immutability when the bucket has Object Lock; conditional_put when the endpoint honours If-None-Match."""
        if self._capabilities is None:
            found = set()
            try:
                config = self._call("get_object_lock_configuration", self.url())
                if (config.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") == "Enabled":
                    found.add("immutability")
            except StoreError:
                pass
            if self._conditional is None:
                try:
                    self._conditional = self._probe(self.base + PROBE_NAME)
                except StoreError:
                    pass
            if self._conditional:
                found.add("conditional_put")
            self._capabilities = frozenset(found)
        return self._capabilities

    # -------------------------------------------------------------- description
    def describe(self):
        return {"kind": self.kind, "bucket": self.bucket, "prefix": self.prefix,
                "endpoint_url": _aws.strip_userinfo(self.connection.endpoint_url) or None,
                "region": self.connection.region}

    def location(self, host=None, source=None, set_id=None, name=None):
        parts = [p for p in (self.prefix, host, source, set_id, name) if p]
        return "s3://%s/%s" % (self.bucket, "/".join(parts))

    def exists(self):
        try:
            self._call("head_bucket", self.url())
        except S3RequestError as err:
            if _aws.is_not_found(err.cause) or _aws.error_code(err.cause) == "NoSuchBucket":
                return False
            raise
        return True

    # -------------------------------------------------------------- listing
    def hosts(self):
        return sorted(n for n in self._prefixes(self.base) if _manifest.NAME_RE.match(n) and n not in (".", ".."))

    def sources(self, host):
        prefix = "%s%s/" % (self.base, _manifest.check_name(host, "host"))
        return sorted(n for n in self._prefixes(prefix) if _manifest.NAME_RE.match(n) and n not in (".", ".."))

    def _scan(self, host, source):
        """One pass over a source's set-id keys and its incomplete uploads, names only."""
        src = self._src(host, source)
        heads = {}
        strays = []
        # Set ids start with a digit: start after "<src>/" + "/" and stop past "9".
        for item in self._keys(src, start_after=src + "/"):
            rel = item["Key"][len(src):]
            if not rel or rel[0] > "9":
                break
            head, sep, rest = rel.partition("/")
            if not _manifest.SET_ID_RE.match(_base_id(head)):
                continue
            if not sep:
                strays.append({"name": escape(head), "problem": "an object, not a set prefix"})
                continue
            entry = heads.setdefault(head, {"manifest": False})
            if rest == _manifest.MANIFEST_NAME:
                entry["manifest"] = True
        uploads = []
        for key, upload_id in self._uploads(src):
            head, sep, rest = key[len(src):].partition("/")
            if sep and _manifest.SET_ID_RE.match(_base_id(head)):
                uploads.append((key, upload_id, "%s/%s%s" % (escape(head), escape(rest), UPLOAD_SUFFIX)))
        return src, heads, uploads, strays

    @staticmethod
    def _partial_name(head, entry):
        """The partial name of a set-id prefix, or None when it is a complete set."""
        if head != _base_id(head):
            return head
        if entry["manifest"]:
            return None
        return head + PARTIAL_SUFFIX

    def listing(self, host, source):
        dummy, heads, uploads, strays = self._scan(host, source)
        sets, partials = [], set()
        for head, entry in heads.items():
            name = self._partial_name(head, entry)
            if name is None:
                sets.append(head)
            else:
                partials.add(name)
        partials.update(name for dummy, dummy2, name in uploads)
        if len(strays) > MAX_STRAYS:
            strays = strays[:MAX_STRAYS] + [{"name": "...", "problem": "%d more entries not shown" % (len(strays) - MAX_STRAYS)}]
        return _stores.Listing(sets, sorted(partials), strays)

    # -------------------------------------------------------------- reading
    def read_manifest_bytes(self, host, source, set_id):
        key = self._set_prefix(host, source, set_id) + _manifest.MANIFEST_NAME
        where = "The manifest of set %s/%s/%s (%s)" % (host, source, set_id, self.url(key))
        got = self._get_bounded(key, _stores.MAX_MANIFEST_BYTES, where)
        if got is None:
            raise _manifest.ManifestError("The manifest of set %s/%s/%s is missing (%s): the set is incomplete."
                                          % (host, source, set_id, self.url(key)))
        return got[0]

    def _open(self, key):
        try:
            response = self._call("get_object", self.url(key), Key=key)
        except S3RequestError as err:
            if _aws.is_not_found(err.cause):
                raise FileNotFoundError(self.url(key))
            raise
        return S3Reader(self, key, response)

    def open_payload(self, host, source, set_id, name):
        _stores.check_file_name(name)
        return self._open(self._set_prefix(host, source, set_id) + name)

    def payload_names(self, host, source, set_id):
        prefix = self._set_prefix(host, source, set_id)
        names = []
        for item in self._keys(prefix):
            rel = item["Key"][len(prefix):]
            if rel not in (_manifest.MANIFEST_NAME, WRITING_MARKER):
                names.append(rel)
        return names

    # -------------------------------------------------------------- writing
    def begin(self, host, source, set_id):
        return S3SetWriter(self, host, source, set_id)

    def delete_set(self, host, source, set_id):
        prefix = self._set_prefix(host, source, set_id)
        # Hide the set first: its manifest goes before its payloads.
        self._call("delete_object", self.url(prefix + _manifest.MANIFEST_NAME), Key=prefix + _manifest.MANIFEST_NAME)
        self._delete_prefix(prefix)

    def set_retention(self, host, source, set_id):
        """The Object Lock on the set's manifest (payloads are written with the same), or None."""
        key = self._set_prefix(host, source, set_id) + _manifest.MANIFEST_NAME
        head = self._call("head_object", self.url(key), Key=key)
        mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
        hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        if until is not None and until <= utcnow():
            mode, until = None, None
        if not mode and not hold:
            return None
        return {"mode": mode, "until": until, "legal_hold": hold}

    def remove_partials(self, host, source):
        """Abort incomplete uploads and delete set prefixes without a manifest; only while holding the lock."""
        src, heads, uploads, dummy = self._scan(host, source)
        removed = []
        for key, upload_id, name in uploads:
            try:
                self._call("abort_multipart_upload", self.url(key), Key=key, UploadId=upload_id)
            except S3RequestError as err:
                if not _aws.is_not_found(err.cause):
                    continue
            removed.append(name)
        for head, entry in sorted(heads.items()):
            name = self._partial_name(head, entry)
            if name is None:
                continue
            prefix = src + head + "/"
            try:
                if head == _base_id(head) and self._exists_key(prefix + _manifest.MANIFEST_NAME):
                    continue  # committed meanwhile
                self._delete_prefix(prefix)
            except StoreError:
                continue
            removed.append(name)
        return sorted(removed)

    def lock(self, host, source, ttl=86400.0):
        return S3Lock(self, host, source, ttl)

    # -------------------------------------------------------------- objects
    def _object_key(self, host, source, name):
        _stores.check_object_name(name)
        return self._src(host, source) + OBJECTS_DIR + "/" + name

    def put_object(self, host, source, name, reader):
        key = self._object_key(host, source, name)
        where = self.url(key)
        spool = tempfile.SpooledTemporaryFile(max_size=self.part_size)
        try:
            md5, sha, size = _md5(), hashlib.sha256(), 0
            while True:
                block = reader.read(_stores.CHUNK)
                if not block:
                    break
                size += len(block)
                if size > MAX_SINGLE_PUT:
                    raise StoreError("Object %s is larger than 5 GiB, the most one S3 PUT takes." % where)
                md5.update(block)
                sha.update(block)
                spool.write(block)
            digest = sha.hexdigest()
            body = (spool, size, md5.digest(), sha.digest())
            if self._conditional_put(host, source):
                try:
                    self._put(key, body, where, payload=True, retain=True, if_none_match=True, strict=True,
                              metadata={"sha256": digest})
                    return "created"
                except S3RequestError as err:
                    if not _aws.is_precondition_failed(err.cause):
                        raise
                return self._same_object(key, where, name, host, source, size, digest)
            if self._exists_key(key):
                return self._same_object(key, where, name, host, source, size, digest)
            self._put(key, body, where, payload=True, retain=True, metadata={"sha256": digest})
            return "created"
        finally:
            spool.close()

    def _exists_key(self, key):
        try:
            self._call("head_object", self.url(key), Key=key)
        except S3RequestError as err:
            if _aws.is_not_found(err.cause):
                return False
            raise
        return True

    def _same_object(self, key, where, name, host, source, size, digest):
        """"identical" when the stored object has these bytes; else ObjectExistsError (never overwritten)."""
        head = self._call("head_object", where, Key=key)
        claimed = (head.get("Metadata") or {}).get("sha256")
        if head.get("ContentLength") == size and claimed in (None, digest):
            # The store is untrusted: recompute rather than believe the metadata.
            with self._open(key) as existing:
                dummy, other = _stores.hash_reader(existing, limit=size + 1)
            if other == digest:
                return "identical"
        raise _stores.ObjectExistsError("Object %s of %s/%s already exists with different content; it is never "
                                        "overwritten." % (name, host, source))

    def open_object(self, host, source, name):
        return self._open(self._object_key(host, source, name))

    def list_objects(self, host, source, prefix=""):
        top = self._src(host, source) + OBJECTS_DIR + "/"
        found = []
        for item in self._keys(top + (prefix or "")):
            rel = item["Key"][len(top):]
            parts = rel.split("/")
            if len(parts) <= _stores.OBJECT_MAX_DEPTH and all(_stores.OBJECT_PART_RE.match(p) for p in parts):
                found.append(rel)
        return sorted(found)

    def stat_object(self, host, source, name):
        key = self._object_key(host, source, name)
        for item in self._keys(key, max_keys=1):  # LastModified from the listing: no HEAD per object
            if item["Key"] == key:
                modified = item.get("LastModified")
                return {"size": int(item.get("Size") or 0),
                        "modified": modified.timestamp() if hasattr(modified, "timestamp") else None}
        raise FileNotFoundError(2, "%s does not exist." % self.url(key))

    def delete_object(self, host, source, name):
        key = self._object_key(host, source, name)
        self._call("delete_object", self.url(key), Key=key)


_stores.register_kind("s3", S3Store, OPTIONS, required=("bucket",))
