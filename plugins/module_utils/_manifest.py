# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The backup-set manifest: schema, construction, validation, (de)serialisation.

A manifest is a JSON object. docs/manifest.md documents every field. It is
written last into a set's directory; its presence marks the set complete.
"""

from __future__ import annotations

import datetime
import json
import re

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    format_ts,
    parse_ts,
)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

TYPES = ("full", "incremental", "differential")
COMPRESSIONS = ("zstd", "gzip", "none")

# \Z, not $: "$" would also accept a trailing newline.
SET_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-(full|incremental|differential)(?:-(\d+))?\Z")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}\Z")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}\Z")
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")


class ManifestError(LifeboatError):
    """A manifest is missing, unreadable or does not follow the schema."""


def make_set_id(started, set_type, taken=()):
    """Sortable set id for a start time; a numeric suffix avoids a clash with ids in ``taken``."""
    if set_type not in TYPES:
        raise ManifestError("Backup type must be one of %s, not %r." % (", ".join(TYPES), set_type))
    base = "%s-%s" % (started.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"), set_type)
    candidate = base
    counter = 1
    taken = set(taken)
    while candidate in taken:
        counter += 1
        candidate = "%s-%d" % (base, counter)
    return candidate


def check_name(value, what):
    """Host and source names become directory names: keep them plain."""
    if not isinstance(value, str) or not NAME_RE.match(value) or value in (".", ".."):
        raise LifeboatError(
            "%s %r is not usable as a directory name: use letters, digits and . _ - @ + "
            "(at most 200 characters, not starting with a dot or dash)." % (what, value)
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
        "compression": {"algorithm": "none", "level": None},
        "encryption": None,
        "tool_versions": {},
        "position": {},
        "options": {},
        "labels": {},
    }


def add_file(manifest, name, size, sha256):
    manifest["files"].append({"name": name, "size": int(size), "sha256": sha256})
    manifest["bytes"] = sum(f["size"] for f in manifest["files"])


def finish(manifest, started, ended):
    manifest["started_at"] = format_ts(started)
    manifest["ended_at"] = format_ts(ended)
    manifest["duration_s"] = round((ended - started).total_seconds(), 3)


def _require(data, key, kinds, where, allow_none=False):
    if key not in data:
        raise ManifestError("%s has no %r field." % (where, key))
    value = data[key]
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ManifestError("%s field %r has the wrong type (%s)." % (where, key, type(value).__name__))
    return value


def validate(data, where="manifest"):
    """Check ``data`` against the schema; return it unchanged or raise ManifestError."""
    if not isinstance(data, dict):
        raise ManifestError("%s is not a JSON object." % where)
    version = _require(data, "format_version", int, where)
    if version != FORMAT_VERSION:
        raise ManifestError(
            "%s has format_version %r; this collection reads version %d." % (where, version, FORMAT_VERSION)
        )
    set_id = _require(data, "set_id", str, where)
    match = SET_ID_RE.match(set_id)
    if not match:
        raise ManifestError("%s has a malformed set_id %r." % (where, set_id))
    for key in ("host", "source"):
        try:
            check_name(_require(data, key, str, where), key)
        except ManifestError:
            raise
        except LifeboatError as exc:  # a bad name becomes a manifest error
            raise ManifestError("%s: %s" % (where, exc))
    for key in ("engine", "method"):
        if not _require(data, key, str, where):
            raise ManifestError("%s field %r is empty." % (where, key))
    set_type = _require(data, "type", str, where)
    if set_type not in TYPES:
        raise ManifestError("%s has an unknown type %r." % (where, set_type))
    if match.group(2) != set_type:
        raise ManifestError("%s: set_id %r does not match type %r." % (where, set_id, set_type))
    parent = _require(data, "parent_set_id", str, where, allow_none=True)
    if set_type == "full" and parent is not None:
        raise ManifestError("%s: a full set cannot have a parent_set_id." % where)
    if set_type != "full" and (parent is None or not SET_ID_RE.match(parent)):
        raise ManifestError("%s: a %s set needs a valid parent_set_id." % (where, set_type))
    for key in ("started_at", "ended_at"):
        value = _require(data, key, str, where)
        try:
            parse_ts(value)
        except ValueError:
            value = ""
        if not value.endswith("Z"):
            raise ManifestError("%s field %r is not an ISO 8601 UTC time ending in Z." % (where, key))
    _require(data, "duration_s", (int, float), where)
    total = _require(data, "bytes", int, where)
    files = _require(data, "files", list, where)
    if not files:
        raise ManifestError("%s lists no payload files." % where)
    seen = set()
    for index, entry in enumerate(files):
        fwhere = "%s files[%d]" % (where, index)
        if not isinstance(entry, dict):
            raise ManifestError("%s is not an object." % fwhere)
        name = _require(entry, "name", str, fwhere)
        if not FILE_NAME_RE.match(name) or name == "manifest.json":
            raise ManifestError("%s has an unsafe file name %r." % (fwhere, name))
        if name in seen:
            raise ManifestError("%s repeats file name %r." % (fwhere, name))
        seen.add(name)
        size = _require(entry, "size", int, fwhere)
        if size < 0:
            raise ManifestError("%s has a negative size." % fwhere)
        if not SHA256_RE.match(_require(entry, "sha256", str, fwhere)):
            raise ManifestError("%s has a malformed sha256." % fwhere)
    if total != sum(f["size"] for f in files):
        raise ManifestError("%s: bytes does not equal the sum of the file sizes." % where)
    compression = _require(data, "compression", dict, where)
    if compression.get("algorithm") not in COMPRESSIONS:
        raise ManifestError("%s has an unknown compression %r." % (where, compression.get("algorithm")))
    encryption = _require(data, "encryption", dict, where, allow_none=True)
    if encryption is not None:
        if encryption.get("method") != "age":
            raise ManifestError("%s has an unknown encryption method %r." % (where, encryption.get("method")))
        recipients = encryption.get("recipients")
        if not isinstance(recipients, list) or not recipients:
            raise ManifestError("%s: encryption lists no recipient fingerprints." % where)
    for key in ("tool_versions", "position", "options", "labels"):
        _require(data, key, dict, where)
    return data


def dumps(manifest):
    validate(manifest)
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def loads(raw, where="manifest"):
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError("%s is not valid JSON (%s)." % (where, exc))
    return validate(data, where)
