# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Property tests (hypothesis) for the pure helpers: durations, times, set ids, manifests, chains.

Skipped when hypothesis is not installed (tests/unit/requirements.txt lists it).
"""

from __future__ import annotations

import datetime
import json
import hashlib
import os
import string
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
# Keep hypothesis' caches out of the working tree (it writes ./.hypothesis by default).
hypothesis.configuration.set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "lifeboat-unit-hypothesis"))
from hypothesis import given, settings, strategies as st  # noqa: E402 pylint: disable=wrong-import-position

from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils._common import (  # noqa: E402
    LifeboatError,
    format_ts,
    parse_duration,
    parse_ts,
)

UTC = datetime.timezone.utc
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
FAST = settings(max_examples=40, deadline=None, database=None)  # no .hypothesis dir in the tree

aware_times = st.datetimes(
    min_value=datetime.datetime(1971, 1, 1), max_value=datetime.datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
                               datetime.timezone(-datetime.timedelta(hours=8))]))


@FAST
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=10000), st.sampled_from(sorted(UNITS))),
                min_size=1, max_size=5))
def test_duration_is_the_sum_of_its_parts(parts):
    text = "".join("%d%s" % (number, unit) for number, unit in parts)
    assert parse_duration(text) == float(sum(number * UNITS[unit] for number, unit in parts))


@FAST
@given(st.text(alphabet=string.ascii_letters + string.punctuation + " ", min_size=1, max_size=8))
def test_duration_without_digits_is_refused(text):
    with pytest.raises(LifeboatError):
        parse_duration(text)


@FAST
@given(aware_times)
def test_timestamp_round_trip(when):
    back = parse_ts(format_ts(when))
    assert back == when.replace(microsecond=when.microsecond // 1000 * 1000)
    assert format_ts(back) == format_ts(when)


@FAST
@given(st.lists(st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1)),
                min_size=1, max_size=8))
def test_set_ids_sort_like_their_times(times):
    ordered = sorted(t.replace(microsecond=0, tzinfo=UTC) for t in times)
    ids = []
    for when in ordered:
        ids.append(_manifest.make_set_id(when, "full", ids))
    assert len(set(ids)) == len(ids)
    # Up to nine ids in one second sort in creation order (-2 ... -9).
    assert sorted(ids) == ids
    for set_id in ids:
        assert _manifest.SET_ID_RE.match(set_id)


file_names = st.from_regex(r"\A[a-z0-9][a-z0-9._+-]{0,20}\Z").filter(lambda n: n != "manifest.json")


@FAST
@given(st.dictionaries(file_names, st.binary(max_size=64), min_size=1, max_size=5),
       st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=10),
                       st.text(max_size=10), max_size=3))
def test_manifest_round_trip(files, labels):
    manifest = _manifest.new_manifest("20261126T031500Z-full", "db1", "app", "postgresql", "pg_dump")
    for name, data in files.items():
        _manifest.add_file(manifest, name, len(data), hashlib.sha256(data).hexdigest())
    manifest["labels"] = labels
    start = datetime.datetime(2026, 11, 26, 3, 15, tzinfo=UTC)
    _manifest.finish(manifest, start, start + datetime.timedelta(seconds=1))
    assert _manifest.loads(_manifest.dumps(manifest)) == manifest
    assert manifest["bytes"] == sum(len(d) for d in files.values())


@st.composite
def histories(draw):
    """A source's sets over consecutive days: fulls, incrementals on the previous set, differentials on a full."""
    kinds = draw(st.lists(st.sampled_from(["full", "incremental", "differential"]), min_size=1, max_size=12))
    kinds[0] = "full"
    sets, last_full, previous = [], None, None
    day = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    for index, kind in enumerate(kinds):
        set_id = _manifest.make_set_id(day + datetime.timedelta(days=index), kind)
        parent = None if kind == "full" else (previous if kind == "incremental" else last_full)
        manifest = _manifest.new_manifest(set_id, "db1", "app", "files", "tar", kind, parent)
        _manifest.add_file(manifest, "data", 1, "0" * 64)
        when = day + datetime.timedelta(days=index)
        _manifest.finish(manifest, when, when + datetime.timedelta(minutes=5))
        sets.append(manifest)
        previous = set_id
        if kind == "full":
            last_full = set_id
    return sets


@FAST
@given(histories(), st.data())
def test_restore_chain_is_well_formed(sets, data):
    target = data.draw(st.sampled_from(sets))
    chain = _catalog.restore_chain(sets, target)
    assert chain[0]["type"] == "full"
    assert chain[-1] is target
    assert [m["type"] for m in chain[1:]].count("full") == 0
    for parent, child in zip(chain, chain[1:]):
        assert child["parent_set_id"] == parent["set_id"]
        assert parent["set_id"] < child["set_id"]
    # Dropping any link of the chain makes the target unrestorable, never silently shorter.
    if len(chain) > 1:
        victim = data.draw(st.sampled_from(chain[:-1]))
        with pytest.raises(_catalog.ChainError):
            _catalog.restore_chain([m for m in sets if m is not victim], target)


# ------------------------------------------------------------------ manifest v2: canonical bytes

SIGNATURE = {
    "format": "sshsig",
    "namespace": "lifeboat-manifest",
    "signer": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqEzxHabogOoFzslNIf7huoATtQXXJ9qvIXEvk9UdPI host1",
    "value": ("-----BEGIN SSH SIGNATURE-----\n"
              "U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgqoTPEdpuiA6gXOyU0h/uG6gBO1\n"
              "f4lREl7VYYQGa6GlZ2Cn21yMYeb7EzgxohiXixDg==\n"
              "-----END SSH SIGNATURE-----\n"),
}
text = st.text(max_size=30)
keys = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | text)
codecs = st.fixed_dictionaries({"compression": st.sampled_from(_manifest.COMPRESSIONS),
                                "encryption": st.sampled_from([None, "age"])})
sizes = st.integers(min_value=0, max_value=2 ** 40)
shas = st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())


@st.composite
def v2_manifests(draw):
    """Valid version 2 manifests using every part of the schema, built through the public helpers."""
    set_type = draw(st.sampled_from(_manifest.TYPES))
    started = draw(aware_times)
    set_id = _manifest.make_set_id(started, set_type)
    parent = None
    if set_type != "full":
        parent = _manifest.make_set_id(started - datetime.timedelta(days=draw(st.integers(0, 30))), "full")
    manifest = _manifest.new_manifest(set_id, draw(st.from_regex(r"\A[a-z][a-z0-9.-]{0,10}\Z")), "src",
                                      draw(st.sampled_from(["postgresql", "files", "ebs"])), "m", set_type, parent)
    manifest["compression"] = {"algorithm": draw(st.sampled_from(_manifest.COMPRESSIONS)),
                               "level": draw(st.none() | st.integers(1, 22))}
    names = draw(st.lists(file_names, unique=True, max_size=6))
    for name in names:
        role = draw(st.sampled_from([r for r in _manifest.ROLES if r != "index"]))
        _manifest.add_file(manifest, name, draw(sizes), draw(shas), role, draw(st.none() | codecs))
    for number in range(draw(st.integers(0, 3))):
        index = "tree%d.index" % number
        _manifest.add_file(manifest, index, draw(sizes), draw(shas), "index", draw(st.none() | codecs))
        _manifest.add_tree(manifest, "tree%d" % number, index, draw(sizes), draw(sizes))
    for number in range(draw(st.integers(0, 3))):
        _manifest.add_external(manifest, draw(st.sampled_from(_manifest.EXTERNAL_KINDS)), "snap-%d" % number,
                               draw(st.none() | st.from_regex(r"\A[a-z0-9-]{1,12}\Z")), draw(st.none() | sizes),
                               draw(st.dictionaries(keys, text, max_size=3)))
    if not any(f["role"] == "payload" for f in manifest["files"]) and not manifest["trees"]:
        _manifest.add_external(manifest, "ebs-snapshot", "snap-always")
    if draw(st.booleans()) or any((f["codec"] or {}).get("encryption") for f in manifest["files"]):
        manifest["encryption"] = {"method": "age", "recipients": ["sha256:" + "ab" * 16]}
    manifest["labels"] = draw(st.dictionaries(keys, text, max_size=4))
    manifest["tool_versions"] = draw(st.dictionaries(keys, text, max_size=3))
    manifest["position"] = draw(st.dictionaries(keys, scalars, max_size=4))
    manifest["options"] = draw(st.dictionaries(keys, scalars | st.lists(scalars, max_size=4), max_size=4))
    _manifest.finish(manifest, started, started + datetime.timedelta(seconds=draw(st.integers(0, 10 ** 6))))
    if draw(st.booleans()):
        manifest["signature"] = dict(SIGNATURE)
    return manifest


@FAST
@given(v2_manifests())
def test_canonical_bytes_survive_a_round_trip(manifest):
    assert _manifest.validate(manifest) is manifest
    canonical = _manifest.canonical_bytes(manifest)
    raw = _manifest.dumps(manifest)
    back = _manifest.loads(raw)
    assert back == manifest
    assert _manifest.canonical_bytes(back) == canonical
    assert _manifest.dumps(back) == raw
    # What is signed never depends on the signature, and always on every other field.
    assert _manifest.canonical_bytes(dict(manifest, signature=None)) == canonical
    assert json.loads(canonical) == dict((k, v) for k, v in manifest.items() if k != "signature")


@FAST
@given(v2_manifests())
def test_version_1_form_reads_like_its_version_2_form(manifest):
    """A version 1 document (payload files, the set codec) reads as the version 2 manifest it describes."""
    codec = _manifest.default_codec(manifest)
    files = [dict((k, f[k]) for k in _manifest.V1_FILE_KEYS) for f in manifest["files"]]
    v1 = dict((k, v) for k, v in manifest.items() if k in _manifest.V1_KEYS)
    v1.update(format_version=1, files=files or [{"name": "data", "size": 0, "sha256": "0" * 64}])
    v1["bytes"] = sum(f["size"] for f in v1["files"])
    upgraded = _manifest.loads(json.dumps(v1))
    assert upgraded["format_version"] == 2
    assert all(f["role"] == "payload" and f["codec"] == codec for f in upgraded["files"])
    assert (upgraded["trees"], upgraded["external"], upgraded["signature"]) == ([], [], None)
    assert _manifest.canonical_bytes(_manifest.loads(_manifest.dumps(upgraded))) == _manifest.canonical_bytes(v1)


# ------------------------------------------------------------------ resolve_type

T_START = datetime.datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def messy_histories(draw):
    """One source's sets with wrong parents, missing links, forged future end times; and a 'now' among them."""
    sets = []
    for day in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(_manifest.TYPES))
        when = T_START + datetime.timedelta(days=day, hours=draw(st.integers(0, 23)))
        set_id = _manifest.make_set_id(when, kind, [m["set_id"] for m in sets])
        parent = None
        if kind != "full":
            fulls = [m for m in sets if m["type"] == "full"]
            choice = draw(st.sampled_from(["previous", "full", "any", "missing"]))
            if choice == "previous" and sets:
                parent = sets[-1]["set_id"]
            elif choice == "full" and fulls:
                parent = fulls[-1]["set_id"]
            elif choice == "any" and sets:
                parent = draw(st.sampled_from(sets))["set_id"]
            else:
                parent = _manifest.make_set_id(T_START - datetime.timedelta(days=1), "full")
        manifest = _manifest.new_manifest(set_id, "db1", "app", "files", "tar", kind, parent)
        _manifest.add_file(manifest, "data", 1, "0" * 64)
        _manifest.finish(manifest, when, when + datetime.timedelta(minutes=draw(st.integers(0, 600))))
        if draw(st.integers(0, 9)) == 0:
            manifest["ended_at"] = "2099-01-01T00:00:00.000Z"   # a forged end time
        sets.append(_manifest.validate(manifest))
    now = T_START + datetime.timedelta(days=draw(st.integers(0, 12)), minutes=draw(st.integers(0, 1440)))
    return sets, now


def _reference_future(manifest, now):
    newest = max(_manifest.set_id_time(manifest["set_id"]), parse_ts(manifest["started_at"]),
                 parse_ts(manifest["ended_at"]))
    return (newest - now).total_seconds() > _catalog.FUTURE_TOLERANCE_S


def _reference_chain(sets, manifest):
    index = dict((m["set_id"], m) for m in sets)
    chain = [manifest]
    while chain[-1]["type"] != "full":
        child = chain[-1]
        parent = index.get(child["parent_set_id"])
        if parent is None or parent in chain or (child["type"] == "differential" and parent["type"] != "full"):
            return None
        chain.append(parent)
    return chain[::-1]


@settings(max_examples=300, deadline=None, database=None)
@given(messy_histories(), st.sampled_from(_catalog.REQUESTED_TYPES), st.sampled_from(_catalog.BETWEEN_TYPES),
       st.floats(min_value=3600, max_value=30 * 86400))
def test_resolve_type_properties(history, requested, between, full_every_s):
    sets, now = history
    # Independent reference: a parent is never future-dated, never younger than now, has a whole chain of
    # sets none of which is future-dated.
    eligible = []
    for manifest in sets:
        chain = _reference_chain(sets, manifest)
        if (chain and not any(_reference_future(m, now) for m in chain)
                and _manifest.set_id_time(manifest["set_id"]) <= now):
            eligible.append((manifest, chain))
    fulls = sorted((m for m, dummy in eligible if m["type"] == "full"), key=_catalog.sort_key)
    try:
        decision = _catalog.resolve_type(sets, requested, full_every_s, between, now)
    except _catalog.ChainError:
        assert requested in ("incremental", "differential") and not fulls
        return
    kind, parent, base = decision["type"], decision["parent"], decision["base"]
    assert kind in _manifest.TYPES
    assert decision["reason"]
    if kind == "full":
        assert parent is None and base is None
        assert requested in ("full", "auto")
        if requested == "auto" and fulls:
            assert _catalog.full_is_due(fulls[-1], full_every_s, now)
        return
    assert kind == (between if requested == "auto" else requested)
    assert base is fulls[-1]
    assert not _reference_future(parent, now)
    chain = _catalog.restore_chain(sets, parent)
    assert chain[0] is base and chain[0]["type"] == "full"
    assert not any(_reference_future(m, now) for m in chain)
    if kind == "differential":
        assert parent is base
    else:
        in_chain = [m for m, c in eligible if c[0] is base]
        assert parent is sorted(in_chain, key=_catalog.sort_key)[-1]
    # The set about to be written validates with this parent.
    child = _manifest.new_manifest(_manifest.make_set_id(now, kind), "db1", "app", "files", "tar", kind,
                                   parent["set_id"])
    _manifest.add_file(child, "data", 1, "0" * 64)
    _manifest.finish(child, now, now)
    assert _manifest.validate(child) is child
