# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Property tests (hypothesis) for the pure helpers: durations, times, set ids, manifests, chains.

Skipped when hypothesis is not installed (tests/unit/requirements.txt lists it).
"""

from __future__ import annotations

import datetime
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
