# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_lvm's parsers and commands, and the fake lvm/mount contract they are tested against (tests/fakes/lvm)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _lvm
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner
from ansible_collections.lifeboat.backup.plugins.module_utils._snapshot import SnapshotError

FAKES = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fakes", "lvm"))
sys.path.insert(0, FAKES)
import fakelvm  # noqa: E402  pylint: disable=wrong-import-position

MiB = 2 ** 20


@pytest.mark.parametrize("text, expected", [
    ("10G", ("--size", "10G", 10 * 2 ** 30)),
    ("512", ("--size", "512", 512 * MiB)),
    ("1.5t", ("--size", "1.5t", int(1.5 * 2 ** 40))),
    ("20%FREE", ("--extents", "20%FREE", None)),
    ("100%ORIGIN", ("--extents", "100%ORIGIN", None)),
])
def test_parse_size(text, expected):
    assert _lvm.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1G", "10 G", "10GiB", "0%FREE", "101%FREE", "20%free", "20%PVS", None])
def test_parse_size_refuses(text):
    with pytest.raises(SnapshotError) as info:
        _lvm.parse_size(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("what, name, ok", [
    ("volume group", "vg0", True), ("volume group", "snapshots", True), ("logical volume", "snapshot1", False),
    ("logical volume", "pvmove0", False), ("logical volume", "-x", False), ("logical volume", "..", False),
    ("logical volume", "a" * 127, True), ("logical volume", "a" * 128, False), ("volume group", "a b", False),
    ("logical volume", "data_+.-1", True),
])
def test_names(what, name, ok):
    if ok:
        assert _lvm.check_name(what, name) == name
    else:
        with pytest.raises(SnapshotError):
            _lvm.check_name(what, name)


@pytest.mark.parametrize("row, failed", [
    ({"lv_attr": "swi-a-s---", "data_percent": "12.50"}, False),
    ({"lv_attr": "swi-a-s---", "data_percent": "100.00"}, True),
    ({"lv_attr": "Swi-I-s---", "data_percent": ""}, True),
    ({"lv_attr": "swi-I-s---", "data_percent": "0"}, True),
])
def test_snapshot_failed(row, failed):
    assert _lvm.snapshot_failed(row) is failed


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFEBOAT_FAKE_LVM_ROOT", str(tmp_path / "state"))
    fakelvm.create_vg("vg0", 64 * MiB)
    data = fakelvm.create_lv("vg0", "data", 32 * MiB, "ext4")
    with open(os.path.join(data, "a"), "w") as handle:
        handle.write("a\n")
    return _lvm.Lvm(Runner(), FAKES)


def tool(name, *args):
    proc = subprocess.run([os.path.join(FAKES, name)] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_fake_lvcreate_contract(fake):
    assert tool("lvcreate", "--snapshot", "--name", "s", "--size", "1M", "vg0/data") == (
        0, '  Logical volume "s" created.\n', "  Rounding up size to full physical extent 4.00 MiB\n")
    assert tool("lvcreate", "--snapshot", "--name", "s", "--size", "4M", "vg0/data") == (
        5, "", '  Logical Volume "s" already exists in volume group "vg0"\n')
    assert tool("lvcreate", "--snapshot", "--name", "t", "--size", "4M", "vgx/data") == (
        5, "", '  Volume group "vgx" not found\n  Cannot process volume group vgx\n')
    assert tool("lvcreate", "--snapshot", "--name", "t", "--size", "4M", "vg0/nope") == (
        5, "", "  Snapshot origin LV nope not found in Volume group vg0.\n")
    assert tool("lvcreate", "--snapshot", "--name", "t", "--size", "1G", "vg0/data") == (
        5, "", '  Volume group "vg0" has insufficient free space (7 extents): 256 required.\n')
    assert tool("lvcreate", "--snapshot", "--name", "t", "--size", "x", "vg0/data")[0] == 3


def test_fake_lvs_json_and_usage(fake):
    tool("lvcreate", "--snapshot", "--name", "s", "--size", "4M", "--addtag", "lifeboat", "vg0/data")
    rc, out, err = tool("lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", _lvm.LVS_FIELDS, "vg0")
    assert rc == 0 and err == ""
    rows = json.loads(out)["report"][0]["lv"]
    assert [(r["lv_name"], r["origin"], r["lv_attr"], r["lv_tags"]) for r in rows] == [
        ("data", "", "owi-ao----", ""), ("s", "data", "swi-a-s---", "lifeboat")]
    assert rows[1]["lv_path"] == "/dev/vg0/s" and rows[1]["vg_free"] == str(28 * MiB)
    assert float(rows[1]["data_percent"]) < 1
    with open(os.path.join(fakelvm.lv_dir("vg0", "data"), "data", "big"), "wb") as handle:
        handle.write(b"x" * (5 * MiB))
    row = fake.lvs("vg0/s")[0]
    assert row["data_percent"] == "100.00" and row["lv_attr"] == "Swi-I-s---" and _lvm.snapshot_failed(row)
    os.unlink(os.path.join(fakelvm.lv_dir("vg0", "data"), "data", "big"))
    assert _lvm.snapshot_failed(fake.lvs("vg0/s")[0])  # invalid for good
    assert tool("lvs", "vgx") == (5, "", '  Volume group "vgx" not found\n  Cannot process volume group vgx\n')


def test_commands_through_the_fake(fake, tmp_path):
    with pytest.raises(SnapshotError) as info:
        fake.lvs("vgx")
    assert str(info.value) == ("The volume group vgx does not exist (lvs: Volume group \"vgx\" not found).")
    with pytest.raises(SnapshotError) as info:
        fake.lvs("vg0/nope")
    assert str(info.value) == "The logical volume vg0/nope does not exist."
    assert fake.fstype("/dev/vg0/data") == "ext4" and fake.fstype("/dev/vg0/nope") is None
    fake.create("vg0", "data", "s", "50%FREE", ["lifeboat"])
    assert fake.lvs("vg0/s")[0]["lv_size"] == str(16 * MiB)  # half of the 32 MiB free
    target = tmp_path / "m"
    target.mkdir()
    assert fake.mount("/dev/vg0/s", str(target), "ext4") == ["ro"]
    assert os.listdir(str(target)) == ["a"]
    with pytest.raises(SnapshotError) as info:
        fake.mount("/dev/vg0/s", str(target), "ext4")
    assert "already mounted on" in str(info.value)
    with pytest.raises(SnapshotError) as info:
        fake.remove("vg0", "s")
    assert str(info.value) == ("lvremove of the snapshot vg0/s failed: Logical volume vg0/s contains a filesystem "
                               "in use")
    assert fake.umount(str(target)) is True and os.listdir(str(target)) == []
    assert fake.umount(str(target)) is False
    fake.remove("vg0", "s")
    fake.remove("vg0", "s")  # already gone: not an error
    assert [r["lv_name"] for r in fake.lvs("vg0")] == ["data"]


def test_xfs_snapshot_needs_nouuid(fake, tmp_path):
    fakelvm.create_lv("vg0", "x", 8 * MiB, "xfs")
    tool("lvcreate", "--snapshot", "--name", "xs", "--size", "4M", "vg0/x")
    target = tmp_path / "m"
    target.mkdir()
    rc, out, err = tool("mount", "-t", "xfs", "-o", "ro", "/dev/vg0/xs", str(target))
    assert rc == 32 and "wrong fs type, bad option, bad superblock on /dev/vg0/xs" in err
    assert fake.mount("/dev/vg0/xs", str(target), "xfs") == ["ro", "nouuid"]
    fake.umount(str(target))


def test_missing_tool_in_bin_dir_is_one_sentence(tmp_path):
    with pytest.raises(SnapshotError) as info:
        _lvm.Lvm(Runner(), str(tmp_path))
    assert str(info.value) == "lvcreate is not in bin_dir %s (or is not executable)." % tmp_path
