# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parsers of _btrfs and the always-release contract of _snapshot.with_snapshot (real btrfs: integration)."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _btrfs
from ansible_collections.lifeboat.backup.plugins.module_utils import _snapshot

SHOW = """data/snap
\tName: \t\t\tsnap
\tUUID: \t\t\t0b9d1a3e-8a4a-4e4b-9a55-0c7e3bb5f0a1
\tParent UUID: \t\t6f3c0c52-2d2e-4a8c-8a53-1a7e8e4f9b10
\tReceived UUID: \t\t-
\tFlags: \t\t\treadonly
\tSnapshot(s):
\t\t\t\tdata/other
"""


def test_parse_show():
    fields = _btrfs.parse_show(SHOW)
    assert fields["UUID"] == "0b9d1a3e-8a4a-4e4b-9a55-0c7e3bb5f0a1"
    assert fields["Received UUID"] == "-"
    assert fields["Flags"] == "readonly"
    assert "data/other" not in fields.values()


@pytest.mark.parametrize("path,name", [("/srv/data", "srv-data"), ("/", "root"), ("/a b/ü", "a-b")])
def test_source_name(path, name):
    assert _btrfs.source_name(path) == name


def test_filesystem_type_longest_prefix(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                    "40 22 7:0 / /mnt/bt rw - btrfs /dev/loop0 rw\n")
    assert _btrfs.filesystem_type("/mnt/bt/x/y", str(info)) == "btrfs"
    assert _btrfs.filesystem_type("/mnt/btx", str(info)) == "ext4"


def test_mounted_at_unescapes(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("40 22 7:0 / /run/lb/with\\040space rw - xfs /dev/vg/snap ro,nouuid\n")
    found = _snapshot.mounted_at("/run/lb", str(info))
    assert found[0]["target"] == "/run/lb/with space"
    assert found[0]["fstype"] == "xfs"


class Calls(list):
    pass


class Provider(object):
    def __init__(self, calls):
        self.calls = calls

    def cleanup(self, ctx):
        self.calls.append("cleanup")
        return [{"path": "old", "reason": "left by an interrupted run"}]

    def prepare(self, ctx):
        self.calls.append("prepare")

    def record(self, ctx, manifest):
        self.calls.append("provider.record")

    def release(self, ctx):
        self.calls.append("release")


class Engine(object):
    def __init__(self, calls, fail_in=None):
        self.calls = calls
        self.fail_in = fail_in

    def prepare(self, ctx):
        self.calls.append("engine.prepare")
        if self.fail_in == "prepare":
            raise RuntimeError("boom")

    def produce(self, ctx):
        return []

    def record(self, ctx, manifest):
        self.calls.append("engine.record")

    def release(self, ctx):
        self.calls.append("engine.release")
        if self.fail_in == "release":
            raise RuntimeError("boom")


def test_with_snapshot_order_and_report():
    calls = Calls()
    wrapped = _snapshot.with_snapshot(Provider(calls), Engine(calls))
    wrapped.prepare(None)
    wrapped.record(None, {})
    wrapped.release(None)
    assert calls == ["cleanup", "prepare", "engine.prepare", "provider.record", "engine.record",
                     "engine.release", "release"]
    assert wrapped.removed == [{"path": "old", "reason": "left by an interrupted run"}]


@pytest.mark.parametrize("fail_in", ["prepare", "release"])
def test_snapshot_released_when_the_engine_fails(fail_in):
    calls = Calls()
    wrapped = _snapshot.with_snapshot(Provider(calls), Engine(calls, fail_in))
    with pytest.raises(RuntimeError):
        wrapped.prepare(None)
        wrapped.release(None)
    assert calls[-1] == "release"


@pytest.mark.parametrize("path,clean", [(None, "."), ("", "."), (".", "."), ("www/", "www"), ("a/./b/../c", "a/c")])
def test_check_subpath(path, clean):
    assert _snapshot.check_subpath(path) == clean


@pytest.mark.parametrize("path,message", [("/srv/www", "must be relative"), ("..", "leaves the volume"),
                                          ("a/../../etc", "leaves the volume")])
def test_check_subpath_refuses(path, message):
    with pytest.raises(_snapshot.SnapshotError, match=message):
        _snapshot.check_subpath(path)


@pytest.mark.parametrize("path,clean", [("www", "www"), ("/srv/data/www", "www"), ("/srv/data", "."),
                                        ("/srv/data/", ".")])
def test_path_in_subvolume(path, clean):
    assert _btrfs.path_in_subvolume("/srv/data", path) == clean


def test_path_in_subvolume_refuses_another_directory():
    with pytest.raises(_snapshot.SnapshotError, match="is not inside the subvolume /srv/data"):
        _btrfs.path_in_subvolume("/srv/data", "/srv/database")


class DirProvider(Provider):
    """Prepares a directory standing in for the snapshot."""

    kind = "test"

    def __init__(self, calls, root):
        Provider.__init__(self, calls)
        self.root = root
        self.path = None

    def prepare(self, ctx):
        Provider.prepare(self, ctx)
        self.path = "snap-1"
        ctx.snapshot = {"path": str(self.root), "origin": "vol"}


class Ctx(object):
    snapshot = None


class TarStandIn(Engine):
    source_dir = None


def test_files_in_snapshot_points_the_engine_inside_the_snapshot(tmp_path):
    (tmp_path / "www" / "html").mkdir(parents=True)
    calls = Calls()
    engine = TarStandIn(calls)
    wrapped = _snapshot.FilesInSnapshot(DirProvider(calls, tmp_path), engine, "www/html", planned="/live/www/html")
    assert engine.source_dir == "/live/www/html"
    wrapped.prepare(Ctx())
    assert engine.source_dir == str(tmp_path / "www" / "html")
    assert calls == ["cleanup", "prepare", "engine.prepare"]
    assert wrapped.result({}, {})["snapshot"] == "snap-1"


@pytest.mark.parametrize("path,message", [("out", "leads out of the snapshot"), ("missing", "is not a directory"),
                                          ("file", "is not a directory")])
def test_files_in_snapshot_refuses_a_path_out_of_it_and_releases(tmp_path, path, message):
    root = tmp_path / "snap"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    (root / "file").write_text("x")
    calls = Calls()
    engine = TarStandIn(calls)
    wrapped = _snapshot.FilesInSnapshot(DirProvider(calls, root), engine, path)
    with pytest.raises(_snapshot.SnapshotError, match=message):
        wrapped.prepare(Ctx())
    assert calls == ["cleanup", "prepare", "release"]
    assert engine.source_dir is None
