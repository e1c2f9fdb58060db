# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The backup-set manifest: schema, construction, validation, (de)serialisation.

A manifest is a JSON object. docs/manifest.md documents every field. It is
written last into a set; its presence marks the set complete.

Format version 2 is written; versions 1 and 2 are read, and ``loads`` turns
both into one in-memory shape (version 2), so readers never branch on the
version. A store is untrusted input: ``loads`` refuses oversized, deeply nested,
non-finite, duplicated or mistyped content with one ``ManifestError`` sentence
and never lets another exception out.
"""

from __future__ import annotations

import datetime
import json
import math
import re

from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    format_ts,
    parse_ts,
)

FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"

TYPES = ("full", "incremental", "differential")
COMPRESSIONS = ("zstd", "gzip", "none")
ENCRYPTIONS = ("age",)
# What a stored file is for. payload: engine data the restore consumes; index: a tree's file list;
# state: engine state a later set of the chain needs (tar .snar, xtrabackup_checkpoints);
# meta: engine metadata read at restore but not data (backup_label, xtrabackup_info);
# log: tool output kept for audit, never needed to restore.
ROLES = ("payload", "index", "state", "meta", "log")
EXTERNAL_KINDS = ("ebs-snapshot", "lvm-snapshot", "btrfs-snapshot")
SIGNATURE_FORMATS = ("sshsig",)
SSH_KEY_TYPES = (
    "ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ssh-rsa",
    "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com",
)

# Limits (docs/manifest.md states them). A manifest is read whole, so its size bounds everything else.
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 8          # the schema itself never nests deeper than 4
MAX_FILES = 4096
MAX_TREES = 256
MAX_EXTERNAL = 256
MAX_RECIPIENTS = 64
MAX_MAP_ENTRIES = 64        # tool_versions, position, options, labels, external attributes
MAX_KEY_CHARS = 128
MAX_TEXT_CHARS = 4096
MAX_LIST_ITEMS = 1024       # a list value in options
MAX_INT = 2 ** 63 - 1
MIN_INT = -(2 ** 63)
MAX_SIGNATURE_CHARS = 16384
MAX_SIGNER_CHARS = 8192
# Tree index (JSON lines) limits.
INDEX_MAX_LINE_BYTES = 8192
INDEX_MAX_PATH_BYTES = 4096
INDEX_MAX_NAME_BYTES = 255

# \Z, not $: "$" would also accept a trailing newline.
SET_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-(full|incremental|differential)(?:-(\d+))?\Z")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}\Z")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}\Z")
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
TOKEN_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}\Z")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z\Z")
RECIPIENT_RE = re.compile(r"^sha256:[0-9a-f]{32}\Z")
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._+/-]{0,127}\Z")
SIGNER_RE = re.compile(r"^([A-Za-z0-9@.-]{1,64}) ([A-Za-z0-9+/]{16,}={0,2})(?: [\x20-\x7e]{1,1024})?\Z")
SIGNATURE_RE = re.compile(
    r"^-----BEGIN SSH SIGNATURE-----\n(?:[A-Za-z0-9+/=]{1,76}\n){1,200}-----END SSH SIGNATURE-----\n?\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

V1_KEYS = (
    "format_version", "set_id", "host", "source", "engine", "method", "type", "parent_set_id",
    "started_at", "ended_at", "duration_s", "bytes", "files", "compression", "encryption",
    "tool_versions", "position", "options", "labels",
)
V2_KEYS = V1_KEYS + ("trees", "external")
V2_OPTIONAL_KEYS = ("signature",)
V1_FILE_KEYS = ("name", "size", "sha256")
V2_FILE_KEYS = ("name", "size", "sha256", "role", "codec")
TREE_KEYS = ("name", "index", "files", "bytes")
EXTERNAL_KEYS = ("kind", "id", "location", "size", "attributes")
SIGNATURE_KEYS = ("format", "namespace", "signer", "value")
INDEX_KEYS = ("mode", "path", "sha256", "size")


class ManifestError(LifeboatError):
    """A manifest is missing, unreadable or does not follow the schema."""


def show(value, limit=48):
    """A short, printable-ASCII rendering of any value for a message (repr-like, escaped, truncated)."""
    try:
        text = ascii(value)
    except Exception:  # pylint: disable=broad-except
        text = "<%s>" % type(value).__name__
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


# ------------------------------------------------------------------ building

def make_set_id(started, set_type, taken=()):
    """Sortable set id for a start time; a numeric suffix avoids a clash with ids in ``taken``."""
    if set_type not in TYPES:
        raise ManifestError("Backup type must be one of %s, not %s." % (", ".join(TYPES), show(set_type)))
    base = "%s-%s" % (started.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"), set_type)
    candidate = base
    counter = 1
    taken = set(taken)
    while candidate in taken:
        counter += 1
        candidate = "%s-%d" % (base, counter)
    return candidate


def set_id_time(set_id):
    """The UTC start time a set id encodes (raises ManifestError for a malformed id)."""
    match = SET_ID_RE.match(set_id) if isinstance(set_id, str) else None
    if not match:
        raise ManifestError("%s is not a set id." % show(set_id))
    text = match.group(1)  # YYYYmmddTHHMMSSZ, digits checked by SET_ID_RE (strptime is ten times slower)
    try:
        return datetime.datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]), int(text[11:13]),
                                 int(text[13:15]), tzinfo=datetime.timezone.utc)
    except ValueError:
        raise ManifestError("set id %s does not hold a valid time." % show(set_id))


def check_name(value, what):
    """Host and source names become directory names: keep them plain."""
    if not isinstance(value, str) or not NAME_RE.match(value) or value in (".", ".."):
        raise LifeboatError(
            "%s %s is not usable as a directory name: use letters, digits and . _ - @ + "
            "(at most 200 characters, not starting with a dot or dash)." % (what, show(value, 210))
        )
    return value


def new_manifest(set_id, host, source, engine, method, set_type="full", parent_set_id=None):
    """A manifest skeleton; the caller fills times, files, position and the rest."""
    return {
        "format_version": FORMAT_VERSION,
        "set_id": set_id,
        "host": host,
        "source": source,
        "engine": engine,
        "method": method,
        "type": set_type,
        "parent_set_id": parent_set_id,
        "started_at": None,
        "ended_at": None,
        "duration_s": None,
        "bytes": 0,
        "files": [],
        "trees": [],
        "external": [],
        "compression": {"algorithm": "none", "level": None},
        "encryption": None,
        "tool_versions": {},
        "position": {},
        "options": {},
        "labels": {},
        "signature": None,
    }


def default_codec(manifest):
    """The per-file codec the set-level ``compression`` / ``encryption`` describe."""
    compression = manifest.get("compression")
    encryption = manifest.get("encryption")
    return {
        "compression": compression.get("algorithm") if isinstance(compression, dict) else None,
        "encryption": encryption.get("method") if isinstance(encryption, dict) else None,
    }


def _total_bytes(manifest):
    return (sum(f["size"] for f in manifest["files"])
            + sum(t["bytes"] for t in manifest.get("trees") or []))


def add_file(manifest, name, size, sha256, role="payload", codec=None):
    """Record a stored file. ``codec`` None means the set's default codec, filled in by finish()/dumps()."""
    manifest["files"].append({"name": name, "size": int(size), "sha256": sha256, "role": role,
                              "codec": dict(codec) if codec is not None else None})
    manifest["bytes"] = _total_bytes(manifest)


def add_tree(manifest, name, index, files, size):
    """Record a tree stored under ``<set>/<name>/``, listed by the index file ``index`` (role ``index``)."""
    manifest.setdefault("trees", []).append({"name": name, "index": index, "files": int(files), "bytes": int(size)})
    manifest["bytes"] = _total_bytes(manifest)


def add_external(manifest, kind, ext_id, location=None, size=None, attributes=None):
    """Record something the set refers to but does not hold (a volume snapshot)."""
    manifest.setdefault("external", []).append({
        "kind": kind, "id": ext_id, "location": location,
        "size": int(size) if size is not None else None,
        "attributes": dict(attributes or {}),
    })


def _resolve_codecs(manifest, in_place):
    """Fill file entries whose codec is None with the set's default codec."""
    files = manifest.get("files")
    if not isinstance(files, list) or not any(isinstance(f, dict) and f.get("codec", 0) is None for f in files):
        return manifest
    codec = default_codec(manifest)
    target = manifest if in_place else dict(manifest)
    target["files"] = [dict(f, codec=dict(codec)) if isinstance(f, dict) and f.get("codec", 0) is None else f
                       for f in files]
    return target


def finish(manifest, started, ended):
    """Record the times and give every file without its own codec the set's default codec."""
    manifest["started_at"] = format_ts(started)
    manifest["ended_at"] = format_ts(ended)
    manifest["duration_s"] = round((ended - started).total_seconds(), 3)
    _resolve_codecs(manifest, in_place=True)


# ------------------------------------------------------------------ field checks

_MISSING = object()
_KEY_SETS = {}  # a tuple of allowed keys -> its frozenset


def _where_key(where, key):
    return "%s field %r" % (where, key)


def _require(data, key, kinds, where, allow_none=False):
    value = data.get(key, _MISSING)
    # The common case first: exactly the one type asked for (a bool is never exactly an int).
    if type(value) is kinds:  # pylint: disable=unidiomatic-typecheck
        return value
    if value is _MISSING:
        raise ManifestError("%s has no %r field." % (where, key))
    if value is None and allow_none:
        return value
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ManifestError("%s field %r has the wrong type (bool)." % (where, key))
    if not isinstance(value, kinds):
        raise ManifestError("%s field %r has the wrong type (%s)." % (where, key, type(value).__name__))
    return value


def _only_keys(data, allowed, where):
    allowed_set = _KEY_SETS.get(allowed)
    if allowed_set is None:
        allowed_set = _KEY_SETS.setdefault(allowed, frozenset(allowed))
    if data.keys() <= allowed_set:
        return
    for key in data:
        if key not in allowed_set:
            raise ManifestError("%s has an unknown field %s." % (where, show(key)))


def _check_text(value, what, max_chars=MAX_TEXT_CHARS, controls=True):
    """A str of at most ``max_chars`` that UTF-8 can hold (no lone surrogates); ``controls`` False refuses C0/C1."""
    if len(value) > max_chars:
        raise ManifestError("%s is longer than %d characters." % (what, max_chars))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError("%s is not valid Unicode (it holds a lone surrogate)." % what)
    if not controls and _CONTROL_RE.search(value):
        raise ManifestError("%s holds a control character." % what)
    return value


def _check_int(value, what, minimum=MIN_INT, maximum=MAX_INT):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError("%s has the wrong type (%s)." % (what, type(value).__name__))
    if value < minimum or value > maximum:
        if value < 0 and minimum == 0:
            raise ManifestError("%s is negative." % what)
        raise ManifestError("%s is out of range (%s to %s)." % (what, minimum, maximum))
    return value


def _check_scalar(value, what):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _check_int(value, what)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ManifestError("%s is not a finite number." % what)
        return value
    if isinstance(value, str):
        return _check_text(value, what)
    raise ManifestError("%s has the wrong type (%s): only strings, numbers, booleans and null are allowed."
                        % (what, type(value).__name__))


def _check_map(data, key, where, values, lists=False):
    """A flat object: at most MAX_MAP_ENTRIES keys of 1..MAX_KEY_CHARS characters.

    ``values`` is "str" (strings only) or "scalar" (str, int, float, bool, null); ``lists`` also allows
    one level of lists of those scalars (at most MAX_LIST_ITEMS items).
    """
    mapping = _require(data, key, dict, where)
    if len(mapping) > MAX_MAP_ENTRIES:
        raise ManifestError("%s has more than %d entries." % (_where_key(where, key), MAX_MAP_ENTRIES))
    what = None  # the name for messages, built for a refusal or an entry that needs a closer look
    for name, value in mapping.items():
        # The common case: a short printable-ASCII key (no control character) and a short ASCII string.
        if (type(name) is str and 0 < len(name) <= MAX_KEY_CHARS and name.isascii()  # pylint: disable=unidiomatic-typecheck
                and name.isprintable() and type(value) is str and len(value) <= MAX_TEXT_CHARS  # pylint: disable=unidiomatic-typecheck
                and value.isascii()):
            continue
        what = what or _where_key(where, key)
        if not isinstance(name, str) or not name:
            raise ManifestError("%s has an empty or non-string key." % what)
        if len(name) > MAX_KEY_CHARS or not name.isascii() or _CONTROL_RE.search(name):
            _check_text(name, "%s key %s" % (what, show(name)), MAX_KEY_CHARS, controls=False)
        if isinstance(value, str) and len(value) <= MAX_TEXT_CHARS and value.isascii():
            continue  # valid as it stands (a str is a scalar)
        item = "%s entry %s" % (what, show(name))
        if values == "str":
            if not isinstance(value, str):
                raise ManifestError("%s is not a string (%s)." % (item, type(value).__name__))
            _check_text(value, item)
        elif lists and isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                raise ManifestError("%s lists more than %d items." % (item, MAX_LIST_ITEMS))
            for element in value:
                _check_scalar(element, item)
        else:
            _check_scalar(value, item)
    return mapping


def check_labels(labels, what="labels"):
    """Labels as the manifest accepts them (a flat str -> str object within the limits); raise ManifestError."""
    _check_map({what: labels}, what, "The backup", "str")
    return labels


def _check_time(data, key, where):
    value = _require(data, key, str, where)
    ok = bool(TIME_RE.match(value))
    if ok:
        try:
            parse_ts(value)
        except ValueError:
            ok = False
    if not ok:
        raise ManifestError("%s field %r is not an ISO 8601 UTC time ending in Z (%s)." % (where, key, show(value)))
    return value


def _check_codec(entry, where):
    codec = _require(entry, "codec", dict, where)
    what = "%s codec" % where
    _only_keys(codec, ("compression", "encryption"), what)
    compression = _require(codec, "compression", str, what)
    if compression not in COMPRESSIONS:
        raise ManifestError("%s has an unknown compression %s." % (what, show(compression)))
    encryption = _require(codec, "encryption", str, what, allow_none=True)
    if encryption is not None and encryption not in ENCRYPTIONS:
        raise ManifestError("%s has an unknown encryption %s." % (what, show(encryption)))
    return codec


def _check_file(entry, index, where, version):
    fwhere = "%s files[%d]" % (where, index)
    if not isinstance(entry, dict):
        raise ManifestError("%s is not an object." % fwhere)
    _only_keys(entry, V1_FILE_KEYS if version == 1 else V2_FILE_KEYS, fwhere)
    name = _require(entry, "name", str, fwhere)
    if not FILE_NAME_RE.match(name) or name == MANIFEST_NAME:
        raise ManifestError("%s has an unsafe file name %s." % (fwhere, show(name)))
    size = _require(entry, "size", int, fwhere)
    if size < 0:
        raise ManifestError("%s has a negative size." % fwhere)
    _check_int(size, "%s size" % fwhere, 0)
    if not SHA256_RE.match(_require(entry, "sha256", str, fwhere)):
        raise ManifestError("%s has a malformed sha256." % fwhere)
    if version == 1:
        return
    role = _require(entry, "role", str, fwhere)
    if role not in ROLES:
        raise ManifestError("%s has an unknown role %s (one of %s)." % (fwhere, show(role), ", ".join(ROLES)))
    _check_codec(entry, fwhere)


def _check_compression(data, where):
    compression = _require(data, "compression", dict, where)
    what = "%s compression" % where
    algorithm = compression.get("algorithm")
    if algorithm not in COMPRESSIONS:
        raise ManifestError("%s has an unknown compression %s." % (where, show(algorithm)))
    _only_keys(compression, ("algorithm", "level"), what)
    level = _require(compression, "level", int, what, allow_none=True)
    if level is not None:
        _check_int(level, "%s level" % what, 1, 22)


def _check_encryption(data, where):
    encryption = _require(data, "encryption", dict, where, allow_none=True)
    if encryption is None:
        return
    what = "%s encryption" % where
    method = encryption.get("method")
    if method not in ENCRYPTIONS:
        raise ManifestError("%s has an unknown encryption method %s." % (where, show(method)))
    _only_keys(encryption, ("method", "recipients"), what)
    recipients = encryption.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        raise ManifestError("%s: encryption lists no recipient fingerprints." % where)
    if len(recipients) > MAX_RECIPIENTS:
        raise ManifestError("%s lists more than %d recipients." % (what, MAX_RECIPIENTS))
    for recipient in recipients:
        if not isinstance(recipient, str) or not RECIPIENT_RE.match(recipient):
            raise ManifestError("%s has a malformed recipient fingerprint %s (expected sha256:<32 hex>)."
                                % (what, show(recipient)))


def _check_tree(entry, index, where, files):
    twhere = "%s trees[%d]" % (where, index)
    if not isinstance(entry, dict):
        raise ManifestError("%s is not an object." % twhere)
    _only_keys(entry, TREE_KEYS, twhere)
    name = _require(entry, "name", str, twhere)
    if not FILE_NAME_RE.match(name) or name == MANIFEST_NAME:
        raise ManifestError("%s has an unsafe tree name %s." % (twhere, show(name)))
    index_name = _require(entry, "index", str, twhere)
    target = files.get(index_name)
    if target is None:
        raise ManifestError("%s names an index %s that is not a file of the set." % (twhere, show(index_name)))
    if target["role"] != "index":
        raise ManifestError("%s names an index %s whose role is %s, not index."
                            % (twhere, show(index_name), show(target["role"])))
    _check_int(_require(entry, "files", int, twhere), "%s files" % twhere, 0)
    _check_int(_require(entry, "bytes", int, twhere), "%s bytes" % twhere, 0)
    return name, index_name


def _check_external(entry, index, where):
    ewhere = "%s external[%d]" % (where, index)
    if not isinstance(entry, dict):
        raise ManifestError("%s is not an object." % ewhere)
    _only_keys(entry, EXTERNAL_KEYS, ewhere)
    kind = _require(entry, "kind", str, ewhere)
    if kind not in EXTERNAL_KINDS:
        raise ManifestError("%s has an unknown kind %s (one of %s)." % (ewhere, show(kind), ", ".join(EXTERNAL_KINDS)))
    ext_id = _require(entry, "id", str, ewhere)
    if not ext_id:
        raise ManifestError("%s field 'id' is empty." % ewhere)
    _check_text(ext_id, "%s id" % ewhere, 1024, controls=False)
    location = _require(entry, "location", str, ewhere, allow_none=True)
    if location is not None:
        if not location:
            raise ManifestError("%s field 'location' is empty (use null)." % ewhere)
        _check_text(location, "%s location" % ewhere, 256, controls=False)
    size = _require(entry, "size", int, ewhere, allow_none=True)
    if size is not None:
        _check_int(size, "%s size" % ewhere, 0)
    _check_map(entry, "attributes", ewhere, "str")
    return kind, ext_id


def _check_signature(data, where):
    signature = data.get("signature")
    if signature is None:
        return
    what = "%s signature" % where
    if not isinstance(signature, dict):
        raise ManifestError("%s field 'signature' has the wrong type (%s)." % (where, type(signature).__name__))
    _only_keys(signature, SIGNATURE_KEYS, what)
    if _require(signature, "format", str, what) not in SIGNATURE_FORMATS:
        raise ManifestError("%s has an unknown format %s." % (what, show(signature["format"])))
    if not NAMESPACE_RE.match(_require(signature, "namespace", str, what)):
        raise ManifestError("%s has a malformed namespace %s." % (what, show(signature["namespace"])))
    signer = _require(signature, "signer", str, what)
    match = SIGNER_RE.match(signer) if len(signer) <= MAX_SIGNER_CHARS else None
    if not match or match.group(1) not in SSH_KEY_TYPES:
        raise ManifestError("%s signer is not an OpenSSH public key line (%s)." % (what, show(signer)))
    value = _require(signature, "value", str, what)
    if len(value) > MAX_SIGNATURE_CHARS or not SIGNATURE_RE.match(value):
        raise ManifestError("%s value is not an armored SSH SIGNATURE block." % what)


# ------------------------------------------------------------------ validate

def validate(data, where="manifest"):
    """Check ``data`` (format version 1 or 2) against the schema; return the version 2 form or raise ManifestError.

    A document already in version 2 form is returned as is (the same object); a version 1 document
    comes back as a new version 2 manifest: every file gets role ``payload`` and the set's codec,
    ``trees`` and ``external`` are empty, ``signature`` is null.
    """
    if not isinstance(data, dict):
        raise ManifestError("%s is not a JSON object." % where)
    version = _require(data, "format_version", int, where)
    if version not in READ_VERSIONS:
        raise ManifestError(
            "%s has format_version %s; this collection reads versions %s."
            % (where, show(version), " and ".join(str(v) for v in READ_VERSIONS))
        )
    _only_keys(data, V1_KEYS if version == 1 else V2_KEYS + V2_OPTIONAL_KEYS, where)
    set_id = _require(data, "set_id", str, where)
    match = SET_ID_RE.match(set_id)
    if not match:
        raise ManifestError("%s has a malformed set_id %s." % (where, show(set_id)))
    own_time = _id_time(set_id, where)
    for key in ("host", "source"):
        try:
            check_name(_require(data, key, str, where), key)
        except ManifestError:
            raise
        except LifeboatError as exc:  # a bad name becomes a manifest error
            raise ManifestError("%s: %s" % (where, exc))
    for key in ("engine", "method"):
        value = _require(data, key, str, where)
        if not value:
            raise ManifestError("%s field %r is empty." % (where, key))
        if not TOKEN_RE.match(value):
            raise ManifestError("%s field %r is not a plain lower-case name (%s)." % (where, key, show(value)))
    set_type = _require(data, "type", str, where)
    if set_type not in TYPES:
        raise ManifestError("%s has an unknown type %s." % (where, show(set_type)))
    if match.group(2) != set_type:
        raise ManifestError("%s: set_id %s does not match type %s." % (where, show(set_id), show(set_type)))
    parent = _require(data, "parent_set_id", str, where, allow_none=True)
    if set_type == "full" and parent is not None:
        raise ManifestError("%s: a full set cannot have a parent_set_id." % where)
    if set_type != "full" and (parent is None or not SET_ID_RE.match(parent)):
        raise ManifestError("%s: a %s set needs a valid parent_set_id." % (where, set_type))
    if parent is not None and (parent == set_id or _id_time(parent, where) > own_time):
        raise ManifestError("%s: parent_set_id %s is not older than the set." % (where, show(parent)))
    for key in ("started_at", "ended_at"):
        _check_time(data, key, where)
    duration = _require(data, "duration_s", (int, float), where)
    if isinstance(duration, int):
        duration = _check_int(duration, "%s duration_s" % where)
    if not math.isfinite(duration) or abs(duration) > 1e12:
        raise ManifestError("%s field 'duration_s' is not a finite number of seconds." % where)
    total = _check_int(_require(data, "bytes", int, where), "%s bytes" % where, 0)
    _check_compression(data, where)
    _check_encryption(data, where)

    files = _require(data, "files", list, where)
    if len(files) > MAX_FILES:
        raise ManifestError("%s lists more than %d files." % (where, MAX_FILES))
    by_name = {}
    for index, entry in enumerate(files):
        _check_file(entry, index, where, version)
        if entry["name"] in by_name:
            raise ManifestError("%s files[%d] repeats file name %s." % (where, index, show(entry["name"])))
        by_name[entry["name"]] = entry if version == 2 else dict(entry, role="payload")

    trees, external = [], []
    if version == 2:
        trees = _require(data, "trees", list, where)
        if len(trees) > MAX_TREES:
            raise ManifestError("%s lists more than %d trees." % (where, MAX_TREES))
        indexes = set()
        tree_names = set()
        for index, entry in enumerate(trees):
            name, index_name = _check_tree(entry, index, where, by_name)
            if name in tree_names or name in by_name:
                raise ManifestError("%s trees[%d] repeats the name %s." % (where, index, show(name)))
            if index_name in indexes:
                raise ManifestError("%s trees[%d] shares its index %s with another tree." % (where, index, show(index_name)))
            tree_names.add(name)
            indexes.add(index_name)
        for name, entry in by_name.items():
            if entry["role"] == "index" and name not in indexes:
                raise ManifestError("%s: index file %s belongs to no tree." % (where, show(name)))
        external = _require(data, "external", list, where)
        if len(external) > MAX_EXTERNAL:
            raise ManifestError("%s lists more than %d external references." % (where, MAX_EXTERNAL))
        seen = set()
        for index, entry in enumerate(external):
            key = _check_external(entry, index, where)
            if key in seen:
                raise ManifestError("%s external[%d] repeats %s %s." % (where, index, key[0], show(key[1])))
            seen.add(key)
        if any(f["codec"]["encryption"] is not None for f in files) and data["encryption"] is None:
            raise ManifestError("%s: a file is encrypted but the set lists no recipients." % where)
        _check_signature(data, where)

    if not any(f["role"] == "payload" for f in by_name.values()) and not trees and not external:
        raise ManifestError("%s lists no payload files, trees or external references." % where)
    if total != sum(f["size"] for f in files) + sum(t["bytes"] for t in trees):
        raise ManifestError("%s: bytes does not equal the sum of the file sizes and tree bytes." % where)
    for key, values, lists in (("tool_versions", "str", False), ("position", "scalar", False),
                               ("options", "scalar", True), ("labels", "str", False)):
        _check_map(data, key, where, values, lists)

    if version == 1:
        return _upgrade_v1(data)
    if "signature" not in data:
        return dict(data, signature=None)
    return data


def _id_time(set_id, where):
    try:
        return set_id_time(set_id)
    except ManifestError as exc:
        raise ManifestError("%s: %s" % (where, exc))


def _upgrade_v1(data):
    upgraded = dict(data)
    codec = default_codec(data)
    upgraded["format_version"] = FORMAT_VERSION
    upgraded["files"] = [dict(f, role="payload", codec=dict(codec)) for f in data["files"]]
    upgraded["trees"] = []
    upgraded["external"] = []
    upgraded["signature"] = None
    return upgraded


# ------------------------------------------------------------------ (de)serialisation

def dumps(manifest):
    """The manifest as written to a store: version 2, keys sorted, indented, UTF-8, ending in a newline."""
    data = validate(_resolve_codecs(manifest, in_place=False))
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def canonical_bytes(manifest):
    """The bytes a signature covers: the valid manifest without its ``signature`` key, compact and sorted."""
    return _codec.canonical_bytes(validate(_resolve_codecs(manifest, in_place=False)))


class _Refused(Exception):
    """Raised from inside json.loads hooks; turned into a ManifestError."""


def _pairs_hook(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, dummy in pairs:
            if key in seen:
                raise _Refused("repeats the key %s" % show(key))
            seen.add(key)
    return result


def _constant_hook(name):
    raise _Refused("holds %s, which is not a finite number" % name)


def _float_hook(text):
    if len(text) > 64:
        raise _Refused("holds a number written with more than 64 characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("holds a number out of range (%s)" % show(text))
    return value


def _int_hook(text):
    if len(text) > 20:
        raise _Refused("holds an integer with more than 20 digits")
    return int(text)


# One token of the depth scan: a whole string, a run of other characters, an opening or a closing bracket.
_DEPTH_TOKEN_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^"\[\]{}]+|[\[{]|[\]}]', re.S)


# The fast path of the depth scan: whole strings, runs of non-bracket characters, innermost bracket pairs.
_NOT_BRACKET_RE = re.compile(r'[^\[\]{}]+')
_INNERMOST_PAIR_RE = re.compile(r'\[\]|\{\}')


def json_depth_exceeds(text, limit=MAX_JSON_DEPTH):
    """True when ``text`` nests arrays/objects deeper than ``limit``; linear in passes, never recursive.

    Fast path (C-speed regex passes): strip the strings and every non-bracket character, then remove
    the innermost ``[]`` / ``{}`` pairs ``limit`` times, one nesting level per pass. If nothing is
    left, the brackets are well nested no deeper than ``limit`` (and any prefix of them is too), so the
    answer is False. Anything else (too deep, unbalanced, an unterminated string) takes the exact scan.
    """
    if "\\" in text:
        # Escapes: the exact scan (a regex pass over unterminated strings full of backslashes is quadratic).
        return _json_depth_exceeds_exact(text, limit)
    # No escapes: the strings are exactly what lies between a quote and the next one.
    parts = text.split('"')
    if len(parts) % 2 == 0:  # an odd number of quotes: an unterminated string
        return _json_depth_exceeds_exact(text, limit)
    outside = "".join(parts[0::2])
    brackets = _NOT_BRACKET_RE.sub("", outside)
    for dummy in range(limit):
        if not brackets:
            return False
        brackets = _INNERMOST_PAIR_RE.sub("", brackets)
    if not brackets:
        return False
    return _json_depth_exceeds_exact(text, limit)


def _json_depth_exceeds_exact(text, limit=MAX_JSON_DEPTH):
    """The exact depth scan, token by token (a string is one token).

    It stops at an unterminated string: json.loads refuses the text there, before reading anything after it.
    """
    depth = 0
    pos = 0
    end = len(text)
    token_at = _DEPTH_TOKEN_RE.match
    while pos < end:
        token = token_at(text, pos)
        if token is None:
            return False
        first = text[pos]
        if first in "[{":
            depth += 1
            if depth > limit:
                return True
        elif first in "]}":
            depth -= 1
        pos = token.end()
    return False


def parse_json(raw, where, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_JSON_DEPTH):
    """Bounded, strict JSON: size and depth checked before parsing; duplicate keys, NaN and Infinity refused."""
    if isinstance(raw, str):
        if len(raw) > max_bytes:
            raise ManifestError("%s is larger than %d bytes; refusing to read it." % (where, max_bytes))
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError:
            raise ManifestError("%s is not valid UTF-8 text." % where)
    if not isinstance(raw, (bytes, bytearray)):
        raise ManifestError("%s is not text (%s)." % (where, type(raw).__name__))
    if len(raw) > max_bytes:
        raise ManifestError("%s is larger than %d bytes; refusing to read it." % (where, max_bytes))
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError("%s is not valid UTF-8 (%s at byte %d)." % (where, exc.reason, exc.start))
    if json_depth_exceeds(text, max_depth):
        raise ManifestError("%s nests deeper than %d levels; refusing to parse it." % (where, max_depth))
    try:
        return json.loads(text, object_pairs_hook=_pairs_hook, parse_constant=_constant_hook,
                          parse_float=_float_hook, parse_int=_int_hook)
    except _Refused as exc:
        raise ManifestError("%s %s." % (where, exc))
    except ValueError as exc:
        raise ManifestError("%s is not valid JSON (%s)." % (where, show(str(exc), 120).strip("'\"")))
    except RecursionError:  # unreachable with the depth check; kept so no traceback can escape
        raise ManifestError("%s nests too deeply; refusing to parse it." % where)


def loads(raw, where="manifest"):
    """Parse and validate manifest bytes (or text); return the version 2 form. Only ManifestError escapes.

    Fast path: the size and UTF-8 checks, then the same strict ``json.loads``
    as ``parse_json`` (duplicate keys, NaN, overlong numbers refused) without
    the depth scan first, then ``validate``. Its success implies the strict
    path's: the schema nests no deeper than 4 levels (every container is
    type-checked), well within MAX_JSON_DEPTH, and the C decoder stops deep
    nesting with a RecursionError, caught here. On any failure the strict path
    (``parse_json``, depth scan first, then ``validate``) runs and gives its message.
    """
    if isinstance(raw, (bytes, bytearray)) and len(raw) <= MAX_MANIFEST_BYTES:
        try:
            data = json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_pairs_hook,
                              parse_constant=_constant_hook, parse_float=_float_hook, parse_int=_int_hook)
            return validate(data, where)
        except (_Refused, ValueError, RecursionError, ManifestError):
            pass  # UnicodeDecodeError is a ValueError
    return validate(parse_json(raw, where), where)


def read_bounded(handle, where="manifest", max_bytes=MAX_MANIFEST_BYTES):
    """Read a binary file object to its end, refusing (without reading on) more than ``max_bytes``."""
    chunks = []
    total = 0
    while True:
        chunk = handle.read(max_bytes + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise ManifestError("%s is larger than %d bytes; refusing to read it." % (where, max_bytes))
    return b"".join(chunks)


def load(handle, where="manifest"):
    """loads() of a binary file object, read with a bound."""
    return loads(read_bounded(handle, where), where)


# ------------------------------------------------------------------ tree index (JSON lines)

def _path_key(path):
    return tuple(part.encode("utf-8", "surrogateescape") for part in path.split("/"))


def check_tree_path(path, what="path"):
    """A safe relative path inside a tree; returns its sort key (the components as bytes).

    POSIX names that are not UTF-8 are carried as Python does (surrogateescape, U+DC80..U+DCFF).
    """
    if not isinstance(path, str) or not path:
        raise ManifestError("%s is not a non-empty string." % what)
    try:
        encoded = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ManifestError("%s %s is not a POSIX file name." % (what, show(path)))
    if encoded.decode("utf-8", "surrogateescape") != path:
        raise ManifestError("%s %s is not written in its one canonical form." % (what, show(path)))
    if len(encoded) > INDEX_MAX_PATH_BYTES:
        raise ManifestError("%s %s is longer than %d bytes." % (what, show(path), INDEX_MAX_PATH_BYTES))
    if "\x00" in path:
        raise ManifestError("%s %s holds a NUL byte." % (what, show(path)))
    key = _path_key(path)
    for part in key:
        if part in (b"", b".", b".."):
            raise ManifestError("%s %s is not a plain relative path (empty, '.' or '..' component, or a leading "
                                "or trailing '/')." % (what, show(path)))
        if len(part) > INDEX_MAX_NAME_BYTES:
            raise ManifestError("%s %s has a component longer than %d bytes." % (what, show(path), INDEX_MAX_NAME_BYTES))
    return key


def format_index_line(path, size, mode, sha256):
    """One tree index line (bytes, ending in a newline) in its canonical form."""
    entry = {"mode": mode, "path": path, "sha256": sha256, "size": size}
    line = (json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")
    parse_index_line(line)
    return line


def parse_index_line(line, where="index line"):
    """Parse one tree index line strictly: canonical JSON of {mode, path, sha256, size} and a newline."""
    if not isinstance(line, (bytes, bytearray)):
        raise ManifestError("%s is not bytes." % where)
    if len(line) > INDEX_MAX_LINE_BYTES:
        raise ManifestError("%s is longer than %d bytes." % (where, INDEX_MAX_LINE_BYTES))
    if not line.endswith(b"\n"):
        raise ManifestError("%s does not end with a newline." % where)
    try:
        text = bytes(line[:-1]).decode("ascii")
    except UnicodeDecodeError:
        raise ManifestError("%s is not ASCII (non-ASCII characters must be \\u escaped)." % where)
    entry = parse_json(text, where, INDEX_MAX_LINE_BYTES, 1)
    if not isinstance(entry, dict):
        raise ManifestError("%s is not a JSON object." % where)
    _only_keys(entry, INDEX_KEYS, where)
    path = _require(entry, "path", str, where)
    check_tree_path(path, "%s path" % where)
    _check_int(_require(entry, "size", int, where), "%s size" % where, 0)
    _check_int(_require(entry, "mode", int, where), "%s mode" % where, 0, 0o7777)
    if not SHA256_RE.match(_require(entry, "sha256", str, where)):
        raise ManifestError("%s has a malformed sha256." % where)
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if canonical != text:
        raise ManifestError("%s is not in canonical form (sorted keys, no spaces, \\u escapes)." % where)
    return entry


def read_index(handle, tree, where="tree index"):
    """Yield the entries of a tree's index from a binary file object, strictly checked.

    Paths must be in strictly ascending order of their components (as bytes), which rules out
    duplicates, and no path may lie inside another (a file cannot also be a directory); at the end
    the count and byte sum must equal the tree's ``files`` and ``bytes``. Memory stays bounded by
    one line, whatever the number of entries.
    """
    previous = None
    count = 0
    total = 0
    while True:
        line = handle.readline(INDEX_MAX_LINE_BYTES + 1)
        if not line:
            break
        count += 1
        lwhere = "%s line %d" % (where, count)
        entry = parse_index_line(line, lwhere)
        key = _path_key(entry["path"])
        if previous is not None:
            if key <= previous:
                raise ManifestError("%s is out of order or repeats a path (%s)." % (lwhere, show(entry["path"])))
            if key[:len(previous)] == previous:
                raise ManifestError("%s puts %s inside a path listed as a file." % (lwhere, show(entry["path"])))
        previous = key
        total += entry["size"]
        if count > tree["files"]:
            raise ManifestError("%s lists more files than the manifest's %d." % (where, tree["files"]))
        yield entry
    if count != tree["files"] or total != tree["bytes"]:
        raise ManifestError("%s lists %d files and %d bytes; the manifest says %d files and %d bytes."
                            % (where, count, total, tree["files"], tree["bytes"]))
