# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import copy
import datetime
import hashlib
import json

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils._manifest import ManifestError

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)
SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"bb").hexdigest()

REQUIRED_FIELDS = [
    "format_version", "set_id", "host", "source", "engine", "method", "type", "parent_set_id",
    "started_at", "ended_at", "duration_s", "bytes", "files", "compression", "encryption",
    "tool_versions", "position", "options", "labels",
]


def good(set_id="20261126T031500Z-full", parent=None):
    set_type = _manifest.SET_ID_RE.match(set_id).group(2)
    manifest = _manifest.new_manifest(set_id, "db1", "app", "postgresql", "pg_dump", set_type, parent)
    _manifest.add_file(manifest, "dump.pgc.zst", 1, SHA_A)
    _manifest.add_file(manifest, "globals.sql.zst", 2, SHA_B)
    _manifest.finish(manifest, T0, T0 + datetime.timedelta(seconds=61.5))
    return manifest


# ------------------------------------------------------------------ make_set_id

@pytest.mark.parametrize(
    "started, set_type, expected",
    [
        (T0, "full", "20261126T031500Z-full"),
        (T0, "incremental", "20261126T031500Z-incremental"),
        (T0, "differential", "20261126T031500Z-differential"),
        (datetime.datetime(2027, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "full", "20270102T030405Z-full"),
    ],
)
def test_make_set_id(started, set_type, expected):
    set_id = _manifest.make_set_id(started, set_type)
    assert set_id == expected
    assert _manifest.SET_ID_RE.match(set_id).group(2) == set_type


@pytest.mark.parametrize(
    "taken, expected",
    [
        ((), "20261126T031500Z-full"),
        (["20261126T031500Z-full"], "20261126T031500Z-full-2"),
        (["20261126T031500Z-full", "20261126T031500Z-full-2"], "20261126T031500Z-full-3"),
        (["20261126T031500Z-full-2"], "20261126T031500Z-full"),
        (["20261126T031500Z-incremental"], "20261126T031500Z-full"),
        ({"20261126T031500Z-full", "20261126T031500Z-full-2", "20261126T031500Z-full-3"}, "20261126T031500Z-full-4"),
    ],
)
def test_make_set_id_clash_suffix(taken, expected):
    set_id = _manifest.make_set_id(T0, "full", taken)
    assert set_id == expected
    assert _manifest.SET_ID_RE.match(set_id)


def test_make_set_id_sorts_chronologically():
    ids = []
    for minutes in (0, 0, 0, 1, 60, 24 * 60, 40 * 24 * 60):
        ids.append(_manifest.make_set_id(T0 + datetime.timedelta(minutes=minutes), "full", ids))
    assert ids[:3] == ["20261126T031500Z-full", "20261126T031500Z-full-2", "20261126T031500Z-full-3"]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_make_set_id_is_utc_for_aware_non_utc_time():
    """DESIGN: set ids are UTC. 05:15+02:00 is 03:15Z.

    BUG (plugins/module_utils/_manifest.py make_set_id): strftime is applied to the
    time as given, without astimezone(UTC), so this returns 20261126T051500Z-full.
    """
    started = datetime.datetime(2026, 11, 26, 5, 15, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert _manifest.make_set_id(started, "full") == "20261126T031500Z-full"


@pytest.mark.parametrize("set_type", ["", "Full", "inc", "snapshot", None])
def test_make_set_id_rejects_type(set_type):
    with pytest.raises(ManifestError, match="Backup type must be one of"):
        _manifest.make_set_id(T0, set_type)


# ------------------------------------------------------------------ build / round trip

def test_new_manifest_add_file_finish():
    manifest = good()
    assert manifest["format_version"] == _manifest.FORMAT_VERSION == 2
    # finish() gives every file without a codec of its own the set's default codec.
    assert manifest["files"] == [
        {"name": "dump.pgc.zst", "size": 1, "sha256": SHA_A, "role": "payload",
         "codec": {"compression": "none", "encryption": None}},
        {"name": "globals.sql.zst", "size": 2, "sha256": SHA_B, "role": "payload",
         "codec": {"compression": "none", "encryption": None}},
    ]
    assert manifest["trees"] == [] and manifest["external"] == [] and manifest["signature"] is None
    assert manifest["bytes"] == 3
    assert manifest["started_at"] == "2026-11-26T03:15:00.000Z"
    assert manifest["ended_at"] == "2026-11-26T03:16:01.500Z"
    assert manifest["duration_s"] == 61.5
    assert manifest["compression"] == {"algorithm": "none", "level": None}
    assert manifest["encryption"] is None
    assert _manifest.validate(manifest) is manifest


@pytest.mark.parametrize(
    "set_id, parent, extra",
    [
        ("20261126T031500Z-full", None, {}),
        ("20261126T031500Z-full-2", None, {"labels": {"env": "prod"}}),
        ("20261127T031500Z-incremental", "20261126T031500Z-full", {"position": {"lsn": "0/3000148", "timeline": 1}}),
        ("20261128T031500Z-differential", "20261126T031500Z-full",
         {"compression": {"algorithm": "zstd", "level": 19},
          "encryption": {"method": "age", "recipients": ["sha256:0123456789abcdef0123456789abcdef"]},
          "tool_versions": {"pg_dump": "15.18"}, "options": {"format": "custom"}}),
    ],
)
def test_dumps_loads_round_trip(set_id, parent, extra):
    manifest = good(set_id, parent)
    manifest.update(extra)
    raw = _manifest.dumps(manifest)
    assert isinstance(raw, bytes)
    assert raw.endswith(b"\n")
    assert _manifest.loads(raw) == manifest
    assert _manifest.loads(raw.decode("utf-8")) == manifest
    # Deterministic: same manifest, same bytes (keys sorted).
    assert _manifest.dumps(copy.deepcopy(manifest)) == raw
    assert list(json.loads(raw)) == sorted(manifest)


def test_dumps_refuses_invalid():
    manifest = good()
    manifest["bytes"] = 99
    with pytest.raises(ManifestError):
        _manifest.dumps(manifest)


# ------------------------------------------------------------------ validate

def _set(path, value):
    def mutate(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _update(**changes):
    def mutate(m):
        m.update(changes)
    return mutate


def _append_file(entry):
    def mutate(m):
        m["files"].append(entry)
        m["bytes"] = sum(f["size"] for f in m["files"] if isinstance(f, dict) and isinstance(f.get("size"), int))
    return mutate


INVALID = [
    ("format_version 3", _set(["format_version"], 3), "format_version 3"),
    ("format_version 0", _set(["format_version"], 0), "format_version 0"),
    ("format_version str", _set(["format_version"], "1"), "wrong type (str)"),
    ("bad set_id", _set(["set_id"], "2026-11-26-full"), "malformed set_id"),
    ("set_id lowercase", _set(["set_id"], "20261126t031500z-full"), "malformed set_id"),
    ("set_id unknown type", _set(["set_id"], "20261126T031500Z-snapshot"), "malformed set_id"),
    ("set_id path", _set(["set_id"], "../20261126T031500Z-full"), "malformed set_id"),
    ("type/set_id mismatch", _update(type="incremental", parent_set_id="20261125T031500Z-full"),
     "does not match type"),
    ("unknown type", _update(type="snapshot"), "unknown type"),
    ("full with parent", _set(["parent_set_id"], "20261125T031500Z-full"), "full set cannot have a parent_set_id"),
    ("incremental without parent",
     _update(set_id="20261126T031500Z-incremental", type="incremental", parent_set_id=None),
     "needs a valid parent_set_id"),
    ("differential bad parent",
     _update(set_id="20261126T031500Z-differential", type="differential", parent_set_id="yesterday"),
     "needs a valid parent_set_id"),
    ("bad host", _set(["host"], "../etc"), "not usable as a directory name"),
    ("bad source", _set(["source"], "a/b"), "not usable as a directory name"),
    ("empty engine", _set(["engine"], ""), "'engine' is empty"),
    ("empty method", _set(["method"], ""), "'method' is empty"),
    ("bad started_at", _set(["started_at"], "yesterday"), "'started_at' is not an ISO 8601"),
    ("naive ended_at", _set(["ended_at"], "2026-11-26T03:16:00"), "'ended_at' is not an ISO 8601"),
    ("duration str", _set(["duration_s"], "61"), "wrong type (str)"),
    ("bad sha256 short", _set(["files", 0, "sha256"], "abc"), "malformed sha256"),
    ("bad sha256 upper", _set(["files", 0, "sha256"], SHA_A.upper()), "malformed sha256"),
    ("bad sha256 non-hex", _set(["files", 0, "sha256"], "g" * 64), "malformed sha256"),
    ("duplicate file name", _set(["files", 1, "name"], "dump.pgc.zst"), "repeats file name 'dump.pgc.zst'"),
    ("unsafe ../x", _set(["files", 0, "name"], "../x"), "unsafe file name '../x'"),
    ("unsafe manifest.json", _set(["files", 0, "name"], "manifest.json"), "unsafe file name 'manifest.json'"),
    ("unsafe dotfile", _set(["files", 0, "name"], ".hidden"), "unsafe file name"),
    ("unsafe slash", _set(["files", 0, "name"], "a/b"), "unsafe file name"),
    ("unsafe absolute", _set(["files", 0, "name"], "/etc/passwd"), "unsafe file name"),
    ("unsafe empty", _set(["files", 0, "name"], ""), "unsafe file name"),
    ("unsafe dash", _set(["files", 0, "name"], "-rf"), "unsafe file name"),
    ("negative size", _append_file({"name": "x", "size": -1, "sha256": SHA_A}), "negative size"),
    ("file not object", _set(["files", 0], "dump.pgc.zst"), "files[0] is not an object"),
    ("file without sha256", _set(["files", 1], {"name": "x", "size": 2}), "files[1] has no 'sha256' field"),
    ("no files", _update(files=[], bytes=0), "lists no payload files"),
    ("bytes != sum", _set(["bytes"], 4), "bytes does not equal the sum"),
    ("unknown compression", _set(["compression"], {"algorithm": "lz4", "level": None}), "unknown compression 'lz4'"),
    ("compression not dict", _set(["compression"], "zstd"), "wrong type (str)"),
    ("encryption without recipients", _set(["encryption"], {"method": "age", "recipients": []}),
     "lists no recipient"),
    ("encryption recipients missing", _set(["encryption"], {"method": "age"}), "lists no recipient"),
    ("encryption unknown method", _set(["encryption"], {"method": "gpg", "recipients": ["x"]}),
     "unknown encryption method 'gpg'"),
    ("labels list", _set(["labels"], []), "'labels' has the wrong type (list)"),
    ("position none", _set(["position"], None), "'position' has the wrong type (NoneType)"),
    ("bool format_version", _set(["format_version"], True), "'format_version' has the wrong type (bool)"),
    ("bool bytes", _set(["bytes"], True), "'bytes' has the wrong type (bool)"),
    ("bool size", _set(["files", 0, "size"], True), "'size' has the wrong type (bool)"),
    ("bool duration", _set(["duration_s"], False), "'duration_s' has the wrong type (bool)"),
    ("float bytes", _set(["bytes"], 3.0), "'bytes' has the wrong type (float)"),
]


@pytest.mark.parametrize("mutate, fragment", [(m, f) for dummy, m, f in INVALID], ids=[i[0] for i in INVALID])
def test_validate_rejects(mutate, fragment):
    manifest = good()
    mutate(manifest)
    with pytest.raises(ManifestError) as info:
        _manifest.validate(manifest, where="The manifest of set X")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("The manifest of set X")
    # The same document fails the same way when read back from JSON.
    with pytest.raises(ManifestError):
        _manifest.loads(json.dumps(manifest))


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_validate_rejects_missing_field(field):
    manifest = good()
    del manifest[field]
    with pytest.raises(ManifestError, match="has no '%s' field" % field):
        _manifest.validate(manifest)


@pytest.mark.parametrize("data", [[], "manifest", 1, None, True, [good()]])
def test_validate_rejects_non_object(data):
    with pytest.raises(ManifestError, match="is not a JSON object"):
        _manifest.validate(data)


@pytest.mark.parametrize("raw", [b"", b"{not json", b"{\"format_version\": 1", b"\xff\xfe\x00", "[1, 2", b"null"])
def test_loads_rejects_bad_json(raw):
    with pytest.raises(ManifestError) as info:
        _manifest.loads(raw, where="The manifest of set db1/app/X")
    assert str(info.value).startswith("The manifest of set db1/app/X")


def test_manifest_error_is_a_lifeboat_error():
    assert issubclass(ManifestError, LifeboatError)


@pytest.mark.parametrize(
    "set_type, parent",
    [("incremental", "20261125T031500Z-full"), ("incremental", "20261125T031500Z-incremental-2"),
     ("differential", "20261125T031500Z-full")],
)
def test_validate_accepts_child_sets(set_type, parent):
    manifest = good("20261126T031500Z-%s" % set_type, parent)
    assert _manifest.validate(manifest) is manifest


def test_validate_accepts_zero_byte_file():
    manifest = good()
    manifest["files"] = [{"name": "empty", "size": 0, "sha256": hashlib.sha256(b"").hexdigest(), "role": "payload",
                          "codec": {"compression": "none", "encryption": None}}]
    manifest["bytes"] = 0
    assert _manifest.validate(manifest) is manifest


# ------------------------------------------------------------------ check_name

@pytest.mark.parametrize(
    "value",
    ["db1", "db-1.example.com", "app", "a", "A9", "user@host", "x+y", "under_score", "1", "a" * 200, "a.."],
)
def test_check_name_accepts(value):
    assert _manifest.check_name(value, "host") == value


@pytest.mark.parametrize(
    "value",
    ["", ".", "..", "/a", "a/b", "db1/", "../x", ".hidden", "-x", "_x", "a b", "a\x00b", "a" * 201, None, 5,
     b"db1", "db\u00e9", "a\\b"],
)
def test_check_name_rejects(value):
    with pytest.raises(LifeboatError) as info:
        _manifest.check_name(value, "source")
    # The value is shown escaped (printable ASCII only), whatever it holds.
    assert str(info.value).startswith("source %s is not usable as a directory name" % ascii(value))
    assert str(info.value).isascii() and str(info.value).isprintable()


@pytest.mark.parametrize("value", ["db1\n", "app\n"], ids=["db1-newline", "app-newline"])
def test_check_name_rejects_trailing_newline(value):
    """BUG (plugins/module_utils/_manifest.py NAME_RE): ``$`` also matches before a final
    newline, so 'db1\\n' passes check_name and becomes a directory name with a newline.
    The patterns should end in ``\\Z`` (or use fullmatch)."""
    with pytest.raises(LifeboatError):
        _manifest.check_name(value, "host")


@pytest.mark.parametrize(
    "path, value",
    [
        (["set_id"], "20261126T031500Z-full\n"),
        (["files", 0, "name"], "dump.pgc.zst\n"),
        (["files", 0, "sha256"], SHA_A + "\n"),
    ],
    ids=["set_id", "file-name", "sha256"],
)
def test_validate_rejects_trailing_newline(path, value):
    """BUG (plugins/module_utils/_manifest.py SET_ID_RE, FILE_NAME_RE, SHA256_RE): same ``$`` problem:
    a set id, payload file name or sha256 with a trailing newline is accepted."""
    manifest = good()
    _set(path, value)(manifest)
    with pytest.raises(ManifestError):
        _manifest.validate(manifest)
