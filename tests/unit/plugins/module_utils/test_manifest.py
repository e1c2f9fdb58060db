# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import copy
import datetime
import hashlib
import io
import json
import re

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


# ------------------------------------------------------------------ version 1 sets stay readable

# Written by the collection's first release (format version 1), byte for byte.
V1_MANIFEST = b"""{
  "bytes": 123456,
  "compression": {
    "algorithm": "zstd",
    "level": 3
  },
  "duration_s": 12.346,
  "encryption": {
    "method": "age",
    "recipients": [
      "sha256:87a7f3079f95a7fcfdf1b17f3c952744"
    ]
  },
  "ended_at": "2026-11-26T03:15:12.469Z",
  "engine": "postgresql",
  "files": [
    {
      "name": "dump.pgc.zst.age",
      "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
      "size": 123456
    }
  ],
  "format_version": 1,
  "host": "db1",
  "labels": {
    "env": "prod",
    "ticket": "OPS-1"
  },
  "method": "pg_dump",
  "options": {
    "database": "app",
    "format": "custom",
    "globals_only": false,
    "jobs": 1,
    "payload": "dump.pgc.zst.age"
  },
  "parent_set_id": "20261125T031500Z-full",
  "position": {
    "in_recovery": false,
    "lsn": "0/3000148",
    "server_version": "15.18",
    "timeline": 1
  },
  "set_id": "20261126T031500Z-incremental",
  "source": "app",
  "started_at": "2026-11-26T03:15:00.123Z",
  "tool_versions": {
    "age": "v1.1.1",
    "pg_dump": "15.18",
    "server": "15.18",
    "zstd": "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***"
  },
  "type": "incremental"
}
"""


def test_v1_manifest_reads_as_version_2():
    raw = json.loads(V1_MANIFEST)
    manifest = _manifest.loads(V1_MANIFEST)
    assert manifest["format_version"] == 2
    assert manifest["files"] == [dict(raw["files"][0], role="payload",
                                      codec={"compression": "zstd", "encryption": "age"})]
    assert manifest["trees"] == [] and manifest["external"] == [] and manifest["signature"] is None
    for key, value in raw.items():
        if key not in ("format_version", "files"):
            assert manifest[key] == value
    # Written back, it is a version 2 manifest that reads the same.
    again = _manifest.dumps(manifest)
    assert json.loads(again)["format_version"] == 2
    assert _manifest.loads(again) == manifest
    assert _manifest.canonical_bytes(_manifest.loads(again)) == _manifest.canonical_bytes(json.loads(V1_MANIFEST))


def test_v1_without_encryption_gets_its_codec():
    raw = json.loads(V1_MANIFEST)
    raw.update(encryption=None, compression={"algorithm": "gzip", "level": None})
    manifest = _manifest.loads(json.dumps(raw))
    assert manifest["files"][0]["codec"] == {"compression": "gzip", "encryption": None}


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda m: m.update(trees=[]), "unknown field 'trees'"),
        (lambda m: m.update(signature=None), "unknown field 'signature'"),
        (lambda m: m["files"][0].update(role="payload"), "files[0] has an unknown field 'role'"),
        (lambda m: m.update(extra=1), "unknown field 'extra'"),
    ],
)
def test_v1_refuses_version_2_fields(mutate, fragment):
    raw = json.loads(V1_MANIFEST)
    mutate(raw)
    with pytest.raises(ManifestError, match=re.escape(fragment)):
        _manifest.loads(json.dumps(raw))


# ------------------------------------------------------------------ version 2: roles, codecs, trees, externals

SIGNER = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqEzxHabogOoFzslNIf7huoATtQXXJ9qvIXEvk9UdPI host1 key")
ARMORED = (
    "-----BEGIN SSH SIGNATURE-----\n"
    "U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgqoTPEdpuiA6gXOyU0h/uG6gBO1\n"
    "Bdcn2q8hcS+T1R08gAAAARbGlmZWJvYXQtbWFuaWZlc3QAAAAAAAAABnNoYTUxMgAAAFMA\n"
    "AAALc3NoLWVkMjU1MTkAAABAmVJnXUNmnwwaYCG6B7uftmiQTv0N8DNEiUJEDUcHe3s6Pk\n"
    "f4lREl7VYYQGa6GlZ2Cn21yMYeb7EzgxohiXixDg==\n"
    "-----END SSH SIGNATURE-----\n"
)
SIGNATURE = {"format": "sshsig", "namespace": "lifeboat-manifest", "signer": SIGNER, "value": ARMORED}
AGE = {"method": "age", "recipients": ["sha256:0123456789abcdef0123456789abcdef"]}
ZSTD_AGE = {"compression": "zstd", "encryption": "age"}
PLAIN = {"compression": "none", "encryption": None}


def rich():
    """A version 2 set using every part of the schema: roles, per-file codecs, a tree, an external ref, a signature."""
    manifest = _manifest.new_manifest("20261126T031500Z-full", "files1", "home", "files", "rsync")
    manifest["compression"] = {"algorithm": "zstd", "level": 19}
    manifest["encryption"] = copy.deepcopy(AGE)
    _manifest.add_file(manifest, "home.index.zst.age", 10, SHA_A, role="index")
    _manifest.add_file(manifest, "rsync.log", 2, SHA_B, role="log", codec=PLAIN)
    _manifest.add_file(manifest, "state.snar", 1, SHA_A, role="state", codec={"compression": "gzip", "encryption": None})
    _manifest.add_tree(manifest, "home", "home.index.zst.age", 3, 1000)
    _manifest.add_external(manifest, "ebs-snapshot", "snap-0123456789abcdef0", location="eu-west-1", size=8 << 30,
                           attributes={"volume_id": "vol-1", "device": "/dev/xvdf"})
    _manifest.add_external(manifest, "lvm-snapshot", "vg0/home_snap")
    manifest["options"] = {"excludes": ["*.tmp", "cache/"], "one_file_system": True, "bwlimit": None, "ratio": 0.5}
    manifest["position"] = {"generation": 7}
    manifest["tool_versions"] = {"rsync": "3.2.7"}
    manifest["labels"] = {"env": "prod", "\u00e9t\u00e9": "\u2603"}
    _manifest.finish(manifest, T0, T0 + datetime.timedelta(seconds=5))
    manifest["signature"] = dict(SIGNATURE)
    return manifest


def test_rich_manifest_round_trip():
    manifest = rich()
    assert _manifest.validate(manifest) is manifest
    assert manifest["bytes"] == 10 + 2 + 1 + 1000
    assert [f["codec"] for f in manifest["files"]] == [ZSTD_AGE, PLAIN, {"compression": "gzip", "encryption": None}]
    assert manifest["external"][1] == {"kind": "lvm-snapshot", "id": "vg0/home_snap", "location": None, "size": None,
                                       "attributes": {}}
    raw = _manifest.dumps(manifest)
    assert raw.isascii()
    assert _manifest.loads(raw) == manifest
    assert _manifest.dumps(_manifest.loads(raw)) == raw


def test_add_file_codec_defaults_to_the_set_codec_recorded_later():
    """Engines add files before the codec is recorded: finish() and dumps() give them the set's codec."""
    manifest = _manifest.new_manifest("20261126T031500Z-full", "db1", "app", "postgresql", "pg_dump")
    _manifest.add_file(manifest, "dump.pgc.zst.age", 1, SHA_A)
    assert manifest["files"][0]["codec"] is None
    manifest["compression"] = {"algorithm": "zstd", "level": 3}
    manifest["encryption"] = copy.deepcopy(AGE)
    manifest["started_at"] = manifest["ended_at"] = "2026-11-26T03:15:00.000Z"
    manifest["duration_s"] = 0
    # dumps() resolves on a copy and leaves the caller's manifest alone.
    assert json.loads(_manifest.dumps(manifest))["files"][0]["codec"] == ZSTD_AGE
    assert manifest["files"][0]["codec"] is None
    _manifest.finish(manifest, T0, T0)
    assert manifest["files"][0]["codec"] == ZSTD_AGE


def test_a_set_of_external_references_only_is_valid():
    manifest = _manifest.new_manifest("20261126T031500Z-full", "web1", "root-volume", "ebs", "create-snapshot")
    _manifest.add_external(manifest, "ebs-snapshot", "snap-1", location="us-east-1")
    _manifest.finish(manifest, T0, T0 + datetime.timedelta(seconds=1))
    assert manifest["files"] == [] and manifest["bytes"] == 0
    assert _manifest.loads(_manifest.dumps(manifest)) == manifest


def test_a_set_of_a_tree_only_is_valid():
    manifest = _manifest.new_manifest("20261126T031500Z-full", "files1", "etc", "files", "rsync")
    _manifest.add_file(manifest, "etc.index", 120, SHA_A, role="index")
    _manifest.add_tree(manifest, "etc", "etc.index", 2, 42)
    _manifest.finish(manifest, T0, T0 + datetime.timedelta(seconds=1))
    assert _manifest.loads(_manifest.dumps(manifest)) == manifest


def _rich_set(path, value):
    def mutate(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _rich_del(path):
    def mutate(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def _rich_update(**changes):
    def mutate(m):
        m.update(changes)
    return mutate


RICH_INVALID = [
    ("unknown field", _rich_update(comment="hi"), "has an unknown field 'comment'"),
    ("no trees field", _rich_del(["trees"]), "has no 'trees' field"),
    ("no external field", _rich_del(["external"]), "has no 'external' field"),
    ("unknown role", _rich_set(["files", 1, "role"], "debug"), "files[1] has an unknown role 'debug'"),
    ("role missing", _rich_del(["files", 1, "role"]), "files[1] has no 'role' field"),
    ("codec missing", _rich_del(["files", 1, "codec"]), "files[1] has no 'codec' field"),
    ("codec null on disk", _rich_set(["files", 1, "codec"], None), "files[1] field 'codec' has the wrong type"),
    ("codec compression", _rich_set(["files", 1, "codec", "compression"], "lz4"), "unknown compression 'lz4'"),
    ("codec encryption", _rich_set(["files", 1, "codec", "encryption"], "gpg"), "unknown encryption 'gpg'"),
    ("codec extra key", _rich_set(["files", 1, "codec", "level"], 3), "codec has an unknown field 'level'"),
    ("encrypted file, no recipients", _rich_update(encryption=None), "a file is encrypted but the set lists no"),
    ("file unknown key", _rich_set(["files", 1, "mtime"], 3), "files[1] has an unknown field 'mtime'"),
    ("tree index missing", _rich_set(["trees", 0, "index"], "nope"), "names an index 'nope' that is not a file"),
    ("tree index not role index", _rich_set(["trees", 0, "index"], "rsync.log"), "whose role is 'log', not index"),
    ("orphan index", _rich_update(trees=[], bytes=13), "index file 'home.index.zst.age' belongs to no tree"),
    ("tree name clash", _rich_set(["trees", 0, "name"], "rsync.log"), "trees[0] repeats the name 'rsync.log'"),
    ("tree unsafe name", _rich_set(["trees", 0, "name"], "../x"), "unsafe tree name '../x'"),
    ("tree files negative", _rich_set(["trees", 0, "files"], -1), "trees[0] files is negative"),
    ("tree bytes str", _rich_set(["trees", 0, "bytes"], "1000"), "field 'bytes' has the wrong type (str)"),
    ("tree not object", _rich_set(["trees", 0], "home"), "trees[0] is not an object"),
    ("tree extra key", _rich_set(["trees", 0, "root"], "/"), "trees[0] has an unknown field 'root'"),
    ("bytes without tree", _rich_set(["bytes"], 13), "bytes does not equal the sum"),
    ("external unknown kind", _rich_set(["external", 0, "kind"], "zfs"), "unknown kind 'zfs'"),
    ("external empty id", _rich_set(["external", 0, "id"], ""), "field 'id' is empty"),
    ("external control id", _rich_set(["external", 0, "id"], "snap-1\n"), "id holds a control character"),
    ("external long id", _rich_set(["external", 0, "id"], "s" * 1025), "longer than 1024 characters"),
    ("external size negative", _rich_set(["external", 0, "size"], -5), "external[0] size is negative"),
    ("external size bool", _rich_set(["external", 0, "size"], True), "'size' has the wrong type (bool)"),
    ("external location int", _rich_set(["external", 0, "location"], 1), "'location' has the wrong type (int)"),
    ("external location empty", _rich_set(["external", 0, "location"], ""), "'location' is empty"),
    ("external attributes nested", _rich_set(["external", 0, "attributes", "tags"], {"a": "b"}), "is not a string"),
    ("external attributes int", _rich_set(["external", 0, "attributes", "n"], 1), "is not a string (int)"),
    ("external missing key", _rich_del(["external", 1, "location"]), "external[1] has no 'location' field"),
    ("external repeated", lambda m: m["external"].append(dict(m["external"][0])),
     "external[2] repeats ebs-snapshot 'snap-0123456789abcdef0'"),
    ("signature not object", _rich_update(signature="sig"), "'signature' has the wrong type (str)"),
    ("signature format", _rich_set(["signature", "format"], "gpg"), "signature has an unknown format 'gpg'"),
    ("signature namespace", _rich_set(["signature", "namespace"], "a b"), "malformed namespace"),
    ("signature signer", _rich_set(["signature", "signer"], "ssh-dss AAAAB3NzaC1kc3MAAACBAP"), "signer is not"),
    ("signature signer newline", _rich_set(["signature", "signer"], SIGNER + "\nssh-ed25519 AAAA"), "signer is not"),
    ("signature value", _rich_set(["signature", "value"], "c2lnbmF0dXJl"), "not an armored SSH SIGNATURE"),
    ("signature value junk line", _rich_set(["signature", "value"], ARMORED.replace("Bdcn", "Bd n")),
     "not an armored SSH SIGNATURE"),
    ("signature extra", _rich_set(["signature", "comment"], "x"), "signature has an unknown field 'comment'"),
    ("signature missing value", _rich_del(["signature", "value"]), "signature has no 'value' field"),
    ("level 0", _rich_set(["compression", "level"], 0), "level is out of range (1 to 22)"),
    ("level 23", _rich_set(["compression", "level"], 23), "level is out of range (1 to 22)"),
    ("level bool", _rich_set(["compression", "level"], True), "'level' has the wrong type (bool)"),
    ("compression extra", _rich_set(["compression", "threads"], 4), "compression has an unknown field 'threads'"),
    ("recipient malformed", _rich_set(["encryption", "recipients"], ["age1qqq"]), "malformed recipient"),
    ("recipient not str", _rich_set(["encryption", "recipients"], [1]), "malformed recipient"),
    ("too many recipients", _rich_set(["encryption", "recipients"], AGE["recipients"] * 65), "more than 64 recipients"),
    ("labels int", _rich_set(["labels", "n"], 1), "field 'labels' entry 'n' is not a string (int)"),
    ("labels empty key", _rich_set(["labels", ""], "x"), "empty or non-string key"),
    ("labels long key", _rich_set(["labels", "k" * 129], "x"), "longer than 128 characters"),
    ("labels control key", _rich_set(["labels", "a\tb"], "x"), "holds a control character"),
    ("labels long value", _rich_set(["labels", "k"], "v" * 4097), "longer than 4096 characters"),
    ("labels surrogate", _rich_set(["labels", "k"], "\ud800"), "lone surrogate"),
    ("too many labels", _rich_update(labels=dict(("k%d" % i, "v") for i in range(65))), "more than 64 entries"),
    ("tool_versions int", _rich_set(["tool_versions", "rsync"], 3), "entry 'rsync' is not a string (int)"),
    ("position nested", _rich_set(["position", "lsn"], {"a": 1}), "only strings, numbers, booleans and null"),
    ("position list", _rich_set(["position", "lsn"], [1]), "only strings, numbers, booleans and null"),
    ("position NaN", _rich_set(["position", "x"], float("nan")), "is not a finite number"),
    ("position huge int", _rich_set(["position", "x"], 2 ** 64), "is out of range"),
    ("options nested list", _rich_set(["options", "excludes"], [["a"]]), "only strings, numbers, booleans"),
    ("options list of dicts", _rich_set(["options", "excludes"], [{"a": 1}]), "only strings, numbers, booleans"),
    ("options long list", _rich_set(["options", "excludes"], ["x"] * 1025), "more than 1024 items"),
    ("options dict", _rich_set(["options", "sub"], {}), "only strings, numbers, booleans and null"),
    ("engine upper", _rich_set(["engine"], "Files"), "'engine' is not a plain lower-case name"),
    ("method spaces", _rich_set(["method"], "rsync -a"), "'method' is not a plain lower-case name"),
    ("duration NaN", _rich_set(["duration_s"], float("inf")), "'duration_s' is not a finite number"),
    ("bytes huge", _rich_set(["bytes"], 2 ** 63), "bytes is out of range"),
    ("size huge", _rich_set(["files", 0, "size"], 2 ** 63), "size is out of range"),
    ("too many files", lambda m: m.update(files=m["files"] * 1366), "more than 4096 files"),
    ("started_at offset", _rich_set(["started_at"], "2026-11-26T03:15:00+00:00"), "'started_at' is not an ISO 8601"),
    ("started_at spaces", _rich_set(["started_at"], " 2026-11-26T03:15:00Z"), "'started_at' is not an ISO 8601"),
    ("ended_at day 32", _rich_set(["ended_at"], "2026-11-32T03:15:00Z"), "'ended_at' is not an ISO 8601"),
    ("set_id month 13", _rich_set(["set_id"], "20261326T031500Z-full"), "does not hold a valid time"),
    ("parent newer", _rich_update(set_id="20261126T031500Z-incremental", type="incremental",
                                  parent_set_id="20261127T000000Z-full"), "is not older than the set"),
    ("parent is self", _rich_update(set_id="20261126T031500Z-incremental", type="incremental",
                                    parent_set_id="20261126T031500Z-incremental"), "is not older than the set"),
    ("only a log", lambda m: m.update(files=[m["files"][1]], trees=[], external=[], bytes=2),
     "lists no payload files, trees or external references"),
]


@pytest.mark.parametrize("mutate, fragment", [(m, f) for dummy, m, f in RICH_INVALID], ids=[i[0] for i in RICH_INVALID])
def test_validate_rejects_v2(mutate, fragment):
    manifest = rich()
    mutate(manifest)
    with pytest.raises(ManifestError) as info:
        _manifest.validate(manifest, where="The manifest of set X")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("The manifest of set X")
    assert message.isascii() and message.isprintable() and len(message) < 400
    with pytest.raises(ManifestError):
        _manifest.loads(json.dumps(manifest))


def test_validate_accepts_v2_variants():
    manifest = rich()
    manifest["signature"] = None          # unsigned
    assert _manifest.validate(manifest) is manifest
    del manifest["signature"]             # the key may be absent on disk
    assert _manifest.validate(manifest)["signature"] is None
    assert "signature" not in manifest    # the caller's dict is not changed
    manifest = rich()
    manifest["parent_set_id"] = "20261126T031500Z-full-2"   # same second, earlier suffix is fine
    manifest.update(set_id="20261126T031500Z-incremental", type="incremental")
    assert _manifest.validate(manifest) is manifest
    manifest = rich()
    manifest["signature"]["signer"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqEzxHabogOoFzslNIf7huoATtQXXJ9qvIXEvk9UdPI"
    manifest["signature"]["value"] = ARMORED.rstrip("\n")
    assert _manifest.validate(manifest) is manifest


def test_check_labels():
    assert _manifest.check_labels({"env": "prod"}) == {"env": "prod"}
    with pytest.raises(ManifestError, match="The backup field 'labels' entry 'n' is not a string"):
        _manifest.check_labels({"n": 1})
    with pytest.raises(ManifestError, match="longer than 4096 characters"):
        _manifest.check_labels({"k": "v" * 5000})


# ------------------------------------------------------------------ canonical bytes

def test_canonical_bytes():
    manifest = rich()
    canonical = _manifest.canonical_bytes(manifest)
    assert canonical.isascii() and b"\n" not in canonical and b": " not in canonical
    data = json.loads(canonical)
    assert "signature" not in data
    assert list(data) == sorted(data)
    assert data == dict((k, v) for k, v in manifest.items() if k != "signature")
    # The signature does not change what it signs; any other field does.
    unsigned = dict(manifest, signature=None)
    assert _manifest.canonical_bytes(unsigned) == canonical
    assert _manifest.canonical_bytes(_manifest.loads(_manifest.dumps(manifest))) == canonical
    altered = copy.deepcopy(manifest)
    altered["labels"]["env"] = "test"
    assert _manifest.canonical_bytes(altered) != canonical


def test_canonical_bytes_refuses_invalid():
    manifest = rich()
    manifest["bytes"] = 1
    with pytest.raises(ManifestError):
        _manifest.canonical_bytes(manifest)


# ------------------------------------------------------------------ tree index lines

def test_index_line_round_trip():
    line = _manifest.format_index_line("etc/ssh/sshd_config", 3301, 0o600, SHA_A)
    assert line == (b'{"mode":384,"path":"etc/ssh/sshd_config","sha256":"%s","size":3301}\n' % SHA_A.encode())
    assert _manifest.parse_index_line(line) == {"mode": 384, "path": "etc/ssh/sshd_config", "sha256": SHA_A,
                                                "size": 3301}


@pytest.mark.parametrize(
    "path",
    ["a", "a b/c d", "\u00e9t\u00e9/\u2603", "x" * 255, "/".join(["d" * 200] * 20), "name\nwith newline",
     "-rf", ".hidden/..dots", "a\\b", "\udcff\udcfe"],   # non-UTF-8 bytes, as Python's surrogateescape carries them
)
def test_index_line_accepts_paths(path):
    entry = _manifest.parse_index_line(_manifest.format_index_line(path, 0, 0o644, SHA_A))
    assert entry["path"] == path


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("", "not a non-empty string"),
        ("/etc/passwd", "not a plain relative path"),
        ("a/../../etc", "not a plain relative path"),
        ("..", "not a plain relative path"),
        ("./a", "not a plain relative path"),
        ("a//b", "not a plain relative path"),
        ("a/", "not a plain relative path"),
        ("a\x00b", "holds a NUL byte"),
        ("x" * 256, "component longer than 255 bytes"),
        ("/".join(["d" * 200] * 21), "longer than 4096 bytes"),
        ("\ud800", "is not a POSIX file name"),
        ("\udcc3\udca9", "not written in its one canonical form"),   # the bytes of a valid UTF-8 'é'
    ],
)
def test_index_line_refuses_paths(path, fragment):
    line = (json.dumps({"mode": 420, "path": path, "sha256": SHA_A, "size": 0}, sort_keys=True,
                       separators=(",", ":")) + "\n").encode()
    with pytest.raises(ManifestError) as info:
        _manifest.parse_index_line(line, "tree home line 7")
    assert fragment in str(info.value)
    assert str(info.value).startswith("tree home line 7")
    assert str(info.value).isascii() and str(info.value).isprintable()


GOOD_LINE = b'{"mode":420,"path":"a","sha256":"%s","size":1}\n' % SHA_A.encode()


@pytest.mark.parametrize(
    "line, fragment",
    [
        (GOOD_LINE[:-1], "does not end with a newline"),
        (GOOD_LINE.replace(b":420,", b": 420,"), "not in canonical form"),
        (b'{"size":1,"sha256":"%s","path":"a","mode":420}\n' % SHA_A.encode(), "not in canonical form"),
        (GOOD_LINE.replace(b'"a"', b'"\\u0061"'), "not in canonical form"),
        (GOOD_LINE.replace(b'"a"', "\"\u00e9\"".encode()), "is not ASCII"),
        (GOOD_LINE.replace(b'"size":1', b'"size":1,"uid":0'), "unknown field 'uid'"),
        (GOOD_LINE.replace(b',"size":1', b""), "has no 'size' field"),
        (GOOD_LINE.replace(b":420,", b":4096,"), "mode is out of range"),
        (GOOD_LINE.replace(b"size\":1", b"size\":-1"), "size is negative"),
        (GOOD_LINE.replace(b"size\":1", b"size\":1.0"), "'size' has the wrong type (float)"),
        (GOOD_LINE.replace(b"size\":1", b"size\":NaN"), "NaN"),
        (GOOD_LINE.replace(SHA_A.encode(), SHA_A.upper().encode()), "malformed sha256"),
        (GOOD_LINE.replace(b'"path":"a"', b'"path":"a","path":"b"'), "repeats the key 'path'"),
        (GOOD_LINE.replace(b'"path":"a"', b'"path":["a"]'), "nests deeper than 1 levels"),
        (b"[1]\n", "is not a JSON object"),
        (b"\n", "is not valid JSON"),
        (b'{"path":"' + b"a" * 9000 + b'"}\n', "longer than 8192 bytes"),
        ("x", "is not bytes"),
    ],
)
def test_index_line_refuses(line, fragment):
    with pytest.raises(ManifestError) as info:
        _manifest.parse_index_line(line)
    assert fragment in str(info.value)


def index_stream(paths, sizes=None):
    sizes = sizes or [1] * len(paths)
    return io.BytesIO(b"".join(_manifest.format_index_line(p, s, 0o644, SHA_A) for p, s in zip(paths, sizes)))


def test_read_index():
    paths = ["a", "a-b", "b/c", "b/d/e", "b/d-x", "c"]
    tree = {"name": "t", "index": "t.index", "files": 6, "bytes": 21}
    entries = list(_manifest.read_index(index_stream(paths, [1, 2, 3, 4, 5, 6]), tree))
    assert [e["path"] for e in entries] == paths


@pytest.mark.parametrize(
    "paths, tree, fragment",
    [
        (["b", "a"], (2, 2), "line 2 is out of order or repeats a path ('a')"),
        (["a", "a"], (2, 2), "line 2 is out of order or repeats a path"),
        (["a", "a/b"], (2, 2), "line 2 puts 'a/b' inside a path listed as a file"),
        (["a", "a-b", "a/b"], (3, 3), "line 3 is out of order"),   # components order: a < a/b < a-b
        (["a", "b"], (3, 2), "lists 2 files and 2 bytes; the manifest says 3 files and 2 bytes"),
        (["a", "b"], (2, 3), "lists 2 files and 2 bytes; the manifest says 2 files and 3 bytes"),
        (["a", "b", "c"], (1, 3), "lists more files than the manifest's 1"),
    ],
)
def test_read_index_refuses(paths, tree, fragment):
    tree = {"name": "t", "index": "t.index", "files": tree[0], "bytes": tree[1]}
    with pytest.raises(ManifestError) as info:
        list(_manifest.read_index(index_stream(paths), tree, "The index of tree t"))
    assert fragment in str(info.value)
    assert str(info.value).startswith("The index of tree t")


def test_read_index_bounds_its_lines():
    """A line without an end is read no further than the limit."""
    class Endless(object):
        def __init__(self):
            self.served = 0

        def readline(self, limit):
            self.served += limit
            return b"[" * limit

    stream = Endless()
    with pytest.raises(ManifestError, match="longer than 8192 bytes"):
        list(_manifest.read_index(stream, {"name": "t", "index": "i", "files": 1, "bytes": 1}))
    assert stream.served == _manifest.INDEX_MAX_LINE_BYTES + 1
