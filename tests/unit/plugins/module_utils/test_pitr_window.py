# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The recoverable window and the choice of base backup for a PITR target (pure logic over names)."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _pitr
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_manifest

UTC = datetime.timezone.utc
SEG = 16 * 1024 * 1024
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def base(set_id, start_seg, stop_seg, timeline=1, stop_time=None, offset=0x28):
    """A pg_basebackup manifest whose backup starts in segment start_seg and stops in stop_seg."""
    manifest = make_manifest(set_id, method="pg_basebackup", files={"base.tar.zst": b"x"})
    stop = _pitr.parse_lsn(_pitr.format_lsn(stop_seg * SEG + offset))
    manifest["position"] = {
        "server_version": 150014,
        "system_identifier": "7300000000000000000",
        "timeline": timeline,
        "start_lsn": _pitr.format_lsn(start_seg * SEG + offset),
        "stop_lsn": _pitr.format_lsn(stop),
        "start_wal": _pitr.wal_name(timeline, start_seg),
        "stop_wal": _pitr.wal_name(timeline, stop_seg),
        "start_time": manifest["started_at"],
        "stop_time": stop_time or manifest["ended_at"],
        "objects_prefix": "wal/",
    }
    return manifest


def wal(segnos, timeline=1, suffix=".zst"):
    return ["wal/%s%s" % (_pitr.wal_name(timeline, n), suffix) for n in segnos]


B1 = "20261201T010000Z-full"
B2 = "20261201T060000Z-full"


def test_names_and_lsns_round_trip():
    assert _pitr.wal_name(1, 0x1FF) == "0000000100000001000000FF"
    assert _pitr.parse_wal_name("0000000100000001000000FF") == (1, 0x1FF)
    assert _pitr.parse_lsn("1/FF000028") == (1 << 32) | 0xFF000028
    assert _pitr.format_lsn(_pitr.parse_lsn("16/B374D848")) == "16/B374D848"
    for bad in ("0/", "x/1", "1/2/3", "123456789/0", "", None):
        with pytest.raises(LifeboatError, match="not a PostgreSQL LSN"):
            _pitr.parse_lsn(bad)


def test_contiguous_archive_window_runs_to_the_last_segment():
    manifests = [base(B1, 2, 2)]
    win = _pitr.window(manifests, wal(range(2, 9)), NOW)
    assert win["earliest"]["set_id"] == B1
    assert win["earliest"]["lsn"] == _pitr.format_lsn(2 * SEG + 0x28)
    assert win["latest"]["lsn"] == _pitr.format_lsn(9 * SEG)   # the end of segment 8
    assert win["gaps"] == []
    assert win["segments"] == 7
    assert win["ranges"][0]["missing_wal"] is None


def test_gap_cuts_the_window_and_is_reported():
    manifests = [base(B1, 2, 2)]
    names = wal([2, 3, 4, 7, 8])
    win = _pitr.window(manifests, names, NOW)
    assert win["latest"]["lsn"] == _pitr.format_lsn(5 * SEG)
    assert win["gaps"] == [{"first": _pitr.wal_name(1, 5), "last": _pitr.wal_name(1, 6), "count": 2}]
    assert win["ranges"][0]["missing_wal"] == _pitr.wal_name(1, 5)
    assert "is missing from the archive" in _pitr.describe_window(win)
    # an LSN beyond the gap is refused with the window, before any restore
    with pytest.raises(_pitr.WindowError, match="beyond the archived WAL; the recoverable window is .*000000010000000000000005"):
        _pitr.pick_base(manifests, names, {"lsn": 7 * SEG + 10}, NOW)
    # the old base is not re-used past the gap
    assert _pitr.pick_base(manifests, names, {"lsn": 4 * SEG + 10}, NOW)[0]["set_id"] == B1


def test_newer_base_after_a_gap_restores_past_it():
    manifests = [base(B1, 2, 2), base(B2, 7, 7)]
    names = wal([2, 3, 7, 8, 9])
    win = _pitr.window(manifests, names, NOW)
    assert [r["to_lsn"] for r in win["ranges"]] == [_pitr.format_lsn(4 * SEG), _pitr.format_lsn(10 * SEG)]
    assert win["latest"]["set_id"] == B2
    manifest, dummy = _pitr.pick_base(manifests, names, {"lsn": 9 * SEG + 1}, NOW)
    assert manifest["set_id"] == B2
    manifest, dummy = _pitr.pick_base(manifests, names, {"lsn": 3 * SEG + 1}, NOW)
    assert manifest["set_id"] == B1


def test_segments_held_by_the_base_itself_are_not_a_gap():
    # start 2, stop 4: segments 2..4 travel in the tar; the archive may start after them
    manifests = [base(B1, 2, 4)]
    win = _pitr.window(manifests, wal([5, 6]), NOW)
    assert win["gaps"] == []
    assert win["latest"]["lsn"] == _pitr.format_lsn(7 * SEG)


def test_time_target_picks_the_newest_base_that_ends_before_it():
    manifests = [base(B1, 2, 2), base(B2, 7, 7)]
    names = wal(range(2, 10))
    b1_end = _pitr.parse_target_time(manifests[0]["ended_at"])
    b2_end = _pitr.parse_target_time(manifests[1]["ended_at"])
    middle = b1_end + (b2_end - b1_end) / 2
    assert _pitr.pick_base(manifests, names, {"time": middle}, NOW)[0]["set_id"] == B1
    assert _pitr.pick_base(manifests, names, {"time": b2_end}, NOW)[0]["set_id"] == B2
    assert _pitr.pick_base(manifests, names, {"latest": True}, NOW)[0]["set_id"] == B2
    assert _pitr.pick_base(manifests, names, {"name": "before_upgrade"}, NOW)[0]["set_id"] == B2
    # an explicit set id is honoured, and its own bound applies
    assert _pitr.pick_base(manifests, names, {"time": b2_end}, NOW, set_id=B1)[0]["set_id"] == B1
    with pytest.raises(_pitr.WindowError, match="before the end of the chosen base backup"):
        _pitr.pick_base(manifests, names, {"time": middle}, NOW, set_id=B2)


def test_time_before_the_oldest_base_or_in_the_future_fails_with_the_window():
    manifests = [base(B1, 2, 2)]
    names = wal(range(2, 5))
    early = _pitr.parse_target_time(manifests[0]["ended_at"]) - datetime.timedelta(seconds=1)
    with pytest.raises(_pitr.WindowError) as info:
        _pitr.pick_base(manifests, names, {"time": early}, NOW)
    message = str(info.value)
    assert "before the end of the oldest base backup" in message
    assert "the recoverable window is %s (LSN 0/2000028, base backup %s) to LSN 0/5000000" % (
        manifests[0]["ended_at"], B1) in message
    with pytest.raises(_pitr.WindowError, match="is in the future"):
        _pitr.pick_base(manifests, names, {"time": NOW + datetime.timedelta(minutes=5)}, NOW)


def test_future_dated_and_foreign_sets_are_not_bases():
    future = base("20261203T000000Z-full", 20, 20)
    dump = make_manifest("20261201T020000Z-full", method="pg_dump")
    broken = base("20261201T030000Z-full", 3, 3)
    broken["position"]["stop_lsn"] = "not an lsn"
    manifests = [base(B1, 2, 2), future, dump, broken]
    win = _pitr.window(manifests, wal(range(2, 30)), NOW)
    assert [r["set_id"] for r in win["ranges"]] == [B1]
    with pytest.raises(_pitr.WindowError, match="no PostgreSQL base backup"):
        _pitr.pick_base([dump], wal(range(2, 30)), {"latest": True}, NOW)


def test_timelines_follow_history_files():
    manifests = [base(B1, 2, 2)]
    # timeline 2 branched in segment 5: the archive holds 1/2..5 and 2/5..7, and 00000002.history
    names = wal([2, 3, 4, 5]) + wal([5, 6, 7], timeline=2) + ["wal/00000002.history.zst"]
    assert _pitr.window(manifests, names, NOW)["latest"]["lsn"] == _pitr.format_lsn(8 * SEG)
    # without the history file, segments of another timeline do not count
    names = wal([2, 3, 4, 5]) + wal([5, 6, 7], timeline=2)
    assert _pitr.window(manifests, names, NOW)["latest"]["lsn"] == _pitr.format_lsn(6 * SEG)
    # a base on timeline 2 does not use timeline 1 segments past its stop
    later = base(B2, 6, 6, timeline=2)
    names = wal([7, 8]) + wal([6], timeline=2)
    assert _pitr.window([later], names, NOW)["latest"]["lsn"] == _pitr.format_lsn(7 * SEG)


@pytest.mark.parametrize("name", [
    "wal/../000000010000000000000003",
    "wal/000000010000000000000003/..",
    "wal/00000001000000000000000g",
    "wal/0000000100000000000000030",
    "wal/000000010000000000000003.partial",
    "wal/000000010000000000000003.partial.zst",
    "wal/000000010000000000000003.00000028.backup",
    "wal/00000000000000000000000F",          # timeline 0 does not exist
    "wal/000000010000000000000100",          # low part beyond the segments of one xlog id
    "wal/000000010000000000000003.a.b.c.d.e",
    "wal/000000010000000000000003.sha256",    # the digest beside an encrypted segment, not the segment
    "wal/000000010000000000000003.zst.zst",
    "wal/000000010000000000000003.age.zst",
    "other/000000010000000000000003",
    "000000010000000000000003",
    "wal/000000010000000000000003\n",
    "wal/00000001.history/x",
    None,
    42,
])
def test_hostile_object_names_are_ignored(name):
    manifests = [base(B1, 2, 2)]
    names = wal([2]) + [name]
    win = _pitr.window(manifests, names, NOW)
    assert win["latest"]["lsn"] == _pitr.format_lsn(3 * SEG)
    assert win["segments"] == 1


def test_every_codec_suffix_counts():
    names = ["wal/%s" % _pitr.wal_name(1, 2), "wal/%s.zst.age" % _pitr.wal_name(1, 3),
             "wal/%s.gz" % _pitr.wal_name(1, 4)]
    assert _pitr.window([base(B1, 2, 2)], names, NOW)["latest"]["lsn"] == _pitr.format_lsn(5 * SEG)


def test_target_options():
    assert _pitr.parse_target({"latest": True}) == {"latest": True}
    assert _pitr.parse_target({"target_lsn": "0/3000028"}) == {"lsn": 3 * SEG + 0x28}
    assert _pitr.parse_target({"target_time": "2026-12-01 05:10:00+01:00"}) == {
        "time": datetime.datetime(2026, 12, 1, 4, 10, tzinfo=UTC)}
    assert _pitr.parse_target({"target_name": "before drop"}) == {"name": "before drop"}
    with pytest.raises(LifeboatError, match="exactly one of"):
        _pitr.parse_target({"target_lsn": "0/1", "latest": True})
    with pytest.raises(LifeboatError, match="exactly one of"):
        _pitr.parse_target({})
    with pytest.raises(LifeboatError, match="with a zone"):
        _pitr.parse_target({"target_time": "2026-12-01 05:10:00"})
    with pytest.raises(LifeboatError, match="at most 63 bytes"):
        _pitr.parse_target({"target_name": "x" * 64})
    with pytest.raises(LifeboatError, match="at most 63 bytes"):
        _pitr.parse_target({"target_name": "a\nb"})


def test_recovery_settings_are_quoted():
    target = {"name": "it's \\ here"}
    lines = "".join(_pitr.conf_line(k, v) for k, v in _pitr.recovery_settings(target, "/x fetch %f %p"))
    assert "recovery_target_name = 'it''s \\\\ here'\n" in lines
    assert "restore_command = '/x fetch %f %p'\n" in lines
    assert "recovery_target_action = 'promote'\n" in lines
    with pytest.raises(LifeboatError, match="line break"):
        _pitr.conf_line("restore_command", "a\nb")
    latest = dict(_pitr.recovery_settings({"latest": True}, "c"))
    assert "recovery_target_action" not in latest and latest["recovery_target_timeline"] == "latest"


def test_a_backup_that_stops_on_a_segment_boundary_needs_that_segment():
    # stop LSN 0/3000000: the backup's last byte is in segment 2, so segment 3 is the first replay needs
    manifests = [base(B1, 2, 3, offset=0)]
    assert _pitr.window(manifests, wal([4, 5]), NOW)["ranges"][0]["missing_wal"] == _pitr.wal_name(1, 3)
    assert _pitr.window(manifests, wal([4, 5]), NOW)["gaps"][0]["first"] == _pitr.wal_name(1, 3)
    assert _pitr.window(manifests, wal([3, 4]), NOW)["latest"]["lsn"] == _pitr.format_lsn(5 * SEG)


def test_a_missing_segment_hidden_by_its_digest_is_still_a_gap():
    names = ["wal/%s.zst.age" % _pitr.wal_name(1, n) for n in (2, 3, 5)]
    names += ["wal/%s.sha256" % _pitr.wal_name(1, n) for n in (2, 3, 4, 5)]
    win = _pitr.window([base(B1, 2, 2)], names, NOW)
    assert win["gaps"] == [{"first": _pitr.wal_name(1, 4), "last": _pitr.wal_name(1, 4), "count": 1}]
