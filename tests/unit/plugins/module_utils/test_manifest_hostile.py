# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A manifest read from a store is untrusted input: whatever it holds, only one short ManifestError comes out.

Covers the stated limits (size, depth, counts), JSON oddities (NaN, Infinity, duplicate keys, huge numbers,
lone surrogates), the size and escaping of messages, and hypothesis fuzzing of random bytes, random JSON
and mutations of valid manifests.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import tempfile
import time

import pytest

hypothesis = pytest.importorskip("hypothesis")
hypothesis.configuration.set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "lifeboat-unit-hypothesis"))
from hypothesis import given, settings, strategies as st  # noqa: E402 pylint: disable=wrong-import-position

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils._manifest import ManifestError  # noqa: E402

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)
SHA = hashlib.sha256(b"x").hexdigest()
FUZZ = settings(max_examples=300, deadline=None, database=None)
WHERE = "The manifest of set db1/app/20261126T031500Z-full"
MAX_MESSAGE = 400


def good():
    manifest = _manifest.new_manifest("20261126T031500Z-full", "db1", "app", "postgresql", "pg_dump")
    manifest["compression"] = {"algorithm": "zstd", "level": 3}
    manifest["encryption"] = {"method": "age", "recipients": ["sha256:0123456789abcdef0123456789abcdef"]}
    _manifest.add_file(manifest, "dump.pgc.zst.age", 7, SHA)
    _manifest.add_file(manifest, "home.index", 3, SHA, role="index", codec={"compression": "none", "encryption": None})
    _manifest.add_tree(manifest, "home", "home.index", 1, 5)
    _manifest.add_external(manifest, "btrfs-snapshot", "home@2026-11-26", location="/srv", attributes={"uuid": "u"})
    manifest["position"] = {"lsn": "0/3000148", "timeline": 1, "in_recovery": False}
    manifest["options"] = {"format": "custom", "jobs": 1, "tables": ["a", "b"]}
    manifest["labels"] = {"env": "prod"}
    _manifest.finish(manifest, T0, T0 + datetime.timedelta(seconds=1))
    return manifest


def check_message(exc, where=WHERE):
    message = str(exc)
    assert message.startswith(where)
    assert len(message) < MAX_MESSAGE, message[:200]
    assert message.isascii() and message.isprintable(), ascii(message[:200])
    return message


def refused(raw, fragment=None, where=WHERE):
    with pytest.raises(ManifestError) as info:
        _manifest.loads(raw, where)
    message = check_message(info.value, where)
    if fragment is not None:
        assert fragment in message
    return message


# ------------------------------------------------------------------ size

def test_oversized_manifest_is_refused_before_parsing():
    """A valid manifest padded past MAX_MANIFEST_BYTES is refused by its size alone."""
    raw = _manifest.dumps(good())
    padded = raw + b" " * (_manifest.MAX_MANIFEST_BYTES - len(raw) + 1)
    assert json.loads(padded)  # the JSON itself is fine
    refused(padded, "is larger than 1048576 bytes")
    refused(padded.decode("ascii"), "is larger than 1048576 bytes")
    # Right at the limit it is read.
    assert _manifest.loads(padded[:-1], WHERE)["set_id"] == "20261126T031500Z-full"


def test_load_reads_no_more_than_the_limit():
    """An endless manifest (a link to /dev/zero, a huge file) is not read to its end: no MemoryError."""
    class Counting(object):
        def __init__(self, handle):
            self.handle = handle
            self.read_bytes = 0

        def read(self, size=-1):
            assert size is not None and size >= 0, "an unbounded read"
            data = self.handle.read(size)
            self.read_bytes += len(data)
            return data

    with open("/dev/zero", "rb") as zero:
        counting = Counting(zero)
        with pytest.raises(ManifestError) as info:
            _manifest.load(counting, WHERE)
    check_message(info.value)
    assert "is larger than 1048576 bytes" in str(info.value)
    assert counting.read_bytes == _manifest.MAX_MANIFEST_BYTES + 1


def test_load_reads_a_manifest_in_short_reads(tmp_path):
    raw = _manifest.dumps(good())
    path = tmp_path / "manifest.json"
    path.write_bytes(raw)
    with open(str(path), "rb", buffering=0) as handle:
        assert _manifest.load(handle, WHERE) == good()


# ------------------------------------------------------------------ depth

@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a":', "}")])
def test_deep_json_is_refused_without_recursion(opener, closer):
    """Deep nesting used to raise RecursionError out of json.loads."""
    for depth in (_manifest.MAX_JSON_DEPTH + 1, 1000, 150000):
        refused(opener * depth + "1" + closer * depth, "nests deeper than 8 levels")
    # Unclosed deep nesting, too.
    refused("[" * 500000, "nests deeper than 8 levels")


def test_brackets_inside_strings_do_not_count():
    manifest = good()
    manifest["labels"] = {"a": "[" * 3000, "b": '\\"{{{{{{{{{{{{{{"', "c": "]]]]}}}}"}
    assert _manifest.loads(_manifest.dumps(manifest), WHERE) == manifest


@pytest.mark.parametrize(
    "text, deeper",
    [
        ("[[[[[[[[1]]]]]]]]", False),
        ("[[[[[[[[[1]]]]]]]]]", True),
        ('["[[[[[[[[[[", {"a": "]]]]"}]', False),
        ('["\\"[[[[[[[[[[["]', False),
        ('["\\\\", [[[[[[[[]]]]]]]]]', True),
        ('"unterminated [[[[[[[[[[[[', False),
        ("[]" * 1000, False),
    ],
)
def test_json_depth_scan(text, deeper):
    assert _manifest.json_depth_exceeds(text, 8) is deeper
    if not deeper:
        try:
            json.loads(text)
        except ValueError:
            pass


def test_depth_scan_is_linear_on_pathological_strings():
    """Many escaped quotes in an unterminated string: one pass, not one pass per quote."""
    text = '"' + '\\"' * 400000
    started = time.monotonic()
    refused(text, "is not valid JSON")
    assert time.monotonic() - started < 2.0
    text = '["' + 'a' * 1000000 + '"]'
    started = time.monotonic()
    refused(text, "is not a JSON object")
    assert time.monotonic() - started < 2.0


# ------------------------------------------------------------------ JSON oddities

@pytest.mark.parametrize(
    "replacement, fragment",
    [
        ('"duration_s": NaN', "holds NaN, which is not a finite number"),
        ('"duration_s": Infinity', "holds Infinity"),
        ('"duration_s": -Infinity', "holds -Infinity"),
        ('"duration_s": 1e999', "holds a number out of range ('1e999')"),
        ('"duration_s": 1' + "0" * 5000, "holds an integer with more than 20 digits"),
        ('"duration_s": 1.' + "0" * 5000, "holds a number written with more than 64 characters"),
        ('"duration_s": 1.0, "duration_s": 2.0', "repeats the key 'duration_s'"),
    ],
)
def test_json_oddities_are_refused(replacement, fragment):
    raw = _manifest.dumps(good()).decode("ascii").replace('"duration_s": 1.0', replacement)
    assert replacement in raw
    refused(raw, fragment)


def test_duplicate_keys_are_refused_at_any_level():
    """json.loads keeps the last of two equal keys: a reader would see another manifest than a checker."""
    raw = _manifest.dumps(good()).decode("ascii")
    refused(raw.replace('"env": "prod"', '"env": "prod", "env": "test"'), "repeats the key 'env'")
    refused(raw.replace('"set_id":', '"set_id": "20261127T000000Z-full", "set_id":'), "repeats the key 'set_id'")


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"\xff\xfe{}", "is not valid UTF-8 (invalid start byte at byte 0)"),
        (b'{"a": "\xc3"}', "is not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "is not valid JSON"),
        ("{\"a\": \"\ud800\"}", "is not valid UTF-8 text"),
        (b"", "is not valid JSON"),
        (b"null", "is not a JSON object"),
        (b"{} {}", "is not valid JSON"),
        (12, "is not text (int)"),
    ],
)
def test_bad_bytes_are_refused(raw, fragment):
    refused(raw, fragment)


def test_escaped_lone_surrogate_is_refused():
    raw = _manifest.dumps(good()).decode("ascii").replace('"env": "prod"', '"env": "\\ud800"')
    refused(raw, "is not valid Unicode (it holds a lone surrogate)")


# ------------------------------------------------------------------ messages stay small and escaped

@pytest.mark.parametrize(
    "field, value",
    [
        ("set_id", "x" * 1000000),
        ("set_id", "\x1b[31mred\x1b[0m\r\n" * 10),
        ("set_id", "\udcff\udcfe"),
        ("host", "h" * 100000),
        ("type", "\u202e" + "t" * 5000),
        ("engine", "E" * 100000),
        ("format_version", 10 ** 19),
    ],
)
def test_messages_stay_small_and_escaped(field, value):
    manifest = good()
    manifest[field] = value
    with pytest.raises(ManifestError) as info:
        _manifest.validate(manifest, WHERE)
    check_message(info.value)


def test_unknown_key_message_is_escaped():
    raw = _manifest.dumps(good()).decode("ascii").replace('"bytes":', '"\\u001b[2J' + "k" * 10000 + '": 1, "bytes":')
    message = refused(raw, "has an unknown field")
    assert "\x1b" not in message


# ------------------------------------------------------------------ counts

@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda m: m.update(trees=m["trees"] * 257), "more than 256 trees"),
        (lambda m: m.update(external=[dict(m["external"][0], id="s%d" % i) for i in range(257)]),
         "more than 256 external references"),
        (lambda m: m.update(labels=dict(("l%d" % i, "v") for i in range(65))), "more than 64 entries"),
        (lambda m: m.update(options=dict(("o%d" % i, 1) for i in range(65))), "more than 64 entries"),
        (lambda m: m["external"][0].update(attributes=dict(("a%d" % i, "v") for i in range(65))),
         "more than 64 entries"),
    ],
)
def test_counts_are_bounded(mutate, fragment):
    manifest = good()
    mutate(manifest)
    with pytest.raises(ManifestError) as info:
        _manifest.loads(json.dumps(manifest), WHERE)
    assert fragment in check_message(info.value)


# ------------------------------------------------------------------ fuzzing

def loads_or_manifest_error(raw):
    """loads() either returns a manifest that survives another round, or raises one short ManifestError."""
    try:
        manifest = _manifest.loads(raw, WHERE)
    except ManifestError as exc:
        check_message(exc)
        return None
    again = _manifest.loads(_manifest.dumps(manifest), WHERE)
    assert again == manifest
    assert _manifest.canonical_bytes(again) == _manifest.canonical_bytes(manifest)
    return manifest


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(raw):
    loads_or_manifest_error(raw)


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_bytes_after_a_valid_prefix(tail):
    raw = _manifest.dumps(good())
    loads_or_manifest_error(raw[:len(raw) // 2] + tail)
    loads_or_manifest_error(raw + tail)


json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=30)


@FUZZ
@given(json_values)
def test_fuzz_random_json(value):
    loads_or_manifest_error(json.dumps(value))
    if isinstance(value, dict):
        base = dict(good(), **value)
        loads_or_manifest_error(json.dumps(base))


def _paths(value, prefix=()):
    """Every (path) inside a JSON value, containers included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _mutate(document, path, action, new_value):
    if not path:
        return new_value
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "replace":
        parent[key] = new_value
    elif action == "delete":
        del parent[key]
    elif action == "add" and isinstance(parent, dict):
        parent[str(new_value)[:16] if not isinstance(new_value, str) else new_value] = copy.deepcopy(parent[key])
    elif action == "add":
        parent.append(new_value)
    return document


def _v1_document():
    manifest = good()
    document = dict((k, v) for k, v in manifest.items() if k in _manifest.V1_KEYS)
    document["format_version"] = 1
    document["files"] = [dict((k, f[k]) for k in _manifest.V1_FILE_KEYS) for f in manifest["files"] if f["role"] == "payload"]
    document["bytes"] = sum(f["size"] for f in document["files"])
    assert _manifest.validate(copy.deepcopy(document))["format_version"] == 2
    return document


@FUZZ
@given(st.sampled_from(["v2", "v1"]), st.data())
def test_fuzz_mutations_of_valid_manifests(version, data):
    document = json.loads(_manifest.dumps(good())) if version == "v2" else _v1_document()
    for dummy in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = list(_paths(document))
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]) if path else st.just("replace"))
        document = _mutate(document, path, action, data.draw(json_values))
    try:
        raw = json.dumps(document)
    except ValueError:
        return
    loads_or_manifest_error(raw)
    # The same object handed to validate() directly behaves the same way.
    try:
        _manifest.validate(copy.deepcopy(document), WHERE)
    except ManifestError as exc:
        check_message(exc)


_DEPTH_ALPHABET = st.sampled_from(['[', ']', '{', '}', '"', '\\', 'a', ',', ':', ' ', '\n'])


@settings(max_examples=400, deadline=None)
@given(st.lists(_DEPTH_ALPHABET, max_size=60).map("".join), st.integers(min_value=0, max_value=6))
def test_depth_fast_path_agrees_with_the_exact_scan(text, limit):
    # The fast path (regex passes, with the exact scan as fallback) must give the exact scan's
    # answer for any text: brackets inside strings, escaped quotes, unterminated strings, unbalanced runs.
    assert _manifest.json_depth_exceeds(text, limit) is _manifest._json_depth_exceeds_exact(text, limit)


def test_set_id_time_refuses_an_impossible_date():
    with pytest.raises(ManifestError, match="does not hold a valid time"):
        _manifest.set_id_time("20261332T250000Z-full")
    assert _manifest.set_id_time("20261201T012345Z-full") == datetime.datetime(
        2026, 12, 1, 1, 23, 45, tzinfo=datetime.timezone.utc)


def _strict(raw):
    """The strict order of loads() without its fast path: depth scan, parse, validate; the outcome."""
    try:
        return "ok", _manifest.validate(_manifest.parse_json(raw, WHERE), WHERE)
    except ManifestError as exc:
        return "refused", str(exc)


def _fast(raw):
    try:
        return "ok", _manifest.loads(raw, WHERE)
    except ManifestError as exc:
        return "refused", str(exc)


def _agree(raw):
    assert _fast(raw) == _strict(raw)


@FUZZ
@given(st.sampled_from(["v2", "v1"]), st.data())
def test_fast_loads_agrees_with_the_strict_order(version, data):
    # loads() parses before the depth scan and falls back to the strict order on any failure: the same
    # manifest or the same message for anything, deep, duplicated, mutated or valid.
    document = json.loads(_manifest.dumps(good())) if version == "v2" else _v1_document()
    for dummy in range(data.draw(st.integers(min_value=0, max_value=3))):
        paths = list(_paths(document))
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]) if path else st.just("replace"))
        document = _mutate(document, path, action, data.draw(json_values))
    try:
        raw = json.dumps(document).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return
    _agree(raw)


@pytest.mark.parametrize("depth", [3, 4, 8, 9, 50, 5000])
def test_fast_loads_gives_the_depth_message_for_deep_input(depth):
    document = json.loads(_manifest.dumps(good()))
    nested = "x"
    for dummy in range(depth):
        nested = {"k": nested} if dummy % 2 else [nested]
    document["labels"] = {"deep": nested}
    raw = json.dumps(document).encode("ascii") if depth < 500 else (
        _manifest.dumps(good())[:-2] + b', "labels2": ' + b"[" * depth + b"]" * depth + b"}\n")
    _agree(raw)
    if depth + 2 > _manifest.MAX_JSON_DEPTH:
        refused(raw, "nests deeper than %d levels" % _manifest.MAX_JSON_DEPTH)


def test_fast_loads_keeps_refusing_duplicate_keys_and_odd_numbers():
    raw = _manifest.dumps(good())
    for bad in (raw.replace(b'"bytes": ', b'"bytes": 1, "bytes": ', 1),
                raw.replace(b'"duration_s": 1.0', b'"duration_s": NaN', 1),
                raw.replace(b'"duration_s": 1.0', b'"duration_s": 1.' + b"0" * 70, 1),
                raw.replace(b'"level": 3', b'"level": 3' + b"0" * 30, 1)):
        assert bad != raw
        _agree(bad)
        refused(bad)
