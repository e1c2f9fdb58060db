# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lvm_snapshot against the fake of the lvm/mount command line (tests/fakes/lvm), with real GNU tar, zstd and stores.

The kernel here has no device-mapper, so lvcreate cannot work for real (docs/snapshots.md).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _lvm
from ansible_collections.lifeboat.backup.plugins.modules import files_restore
from ansible_collections.lifeboat.backup.plugins.modules import lvm_snapshot
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import run_module

FAKES = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fakes", "lvm"))
sys.path.insert(0, FAKES)
import fakelvm  # noqa: E402  pylint: disable=wrong-import-position

MiB = 2 ** 20


@pytest.fixture
def lvm(tmp_path, monkeypatch):
    """A fake VG ``vg0`` of 64 MiB holding the 32 MiB XFS volume ``data`` with a small tree."""
    root = tmp_path / "lvmstate"
    root.mkdir()
    monkeypatch.setenv("LIFEBOAT_FAKE_LVM_ROOT", str(root))
    fakelvm.create_vg("vg0", 64 * MiB)
    data = fakelvm.create_lv("vg0", "data", 32 * MiB, "xfs")
    os.makedirs(os.path.join(data, "etc", "app"))
    with open(os.path.join(data, "etc", "app", "app.conf"), "w") as handle:
        handle.write("listen 80\n")
    os.chmod(os.path.join(data, "etc", "app", "app.conf"), 0o640)
    for index in range(20):
        with open(os.path.join(data, "f%02d" % index), "wb") as handle:
            handle.write(os.urandom(1000 + index))
    os.chmod(os.path.join(data, "f03"), 0o4755)
    os.symlink("etc/app/app.conf", os.path.join(data, "current"))
    os.chown(os.path.join(data, "f02"), 1234, 4321)
    return data


def args(tmp_path, **extra):
    base = dict(vg="vg0", lv="data", size="16M", bin_dir=FAKES, mount_dir=str(tmp_path / "mnt"),
                store=dict(kind="dir", path=str(tmp_path / "store")), host="h1")
    base.update(extra)
    return base


def backup(monkeypatch, tmp_path, check_mode=False, **extra):
    return run_module(monkeypatch, tmp_path, lvm_snapshot, args(tmp_path, **extra), check_mode=check_mode)


def restore(monkeypatch, tmp_path, target, set_id=None):
    return run_module(monkeypatch, tmp_path, files_restore, dict(
        store=dict(kind="dir", path=str(tmp_path / "store")), host="h1", source="vg0-data", target=str(target),
        set_id=set_id))


def tree(root):
    seen = {}
    for base, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, str(root))
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            else:
                with open(path, "rb") as handle:
                    seen[rel] = ("file", handle.read(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
    return seen


def state():
    """The fake's volumes of vg0 and its mounts."""
    return fakelvm.lvs_of("vg0"), fakelvm.mounts()


def test_round_trip_and_everything_released(lvm, monkeypatch, tmp_path):
    result = backup(monkeypatch, tmp_path)
    assert not result.failed, result.result["msg"]
    out = result.result
    assert out["changed"] and out["type"] == "full"
    assert out["snapshot"] == "vg0/lifeboat-%s-%s" % (_lvm.source_tag("h1", "vg0-data")[-8:], out["set_id"])
    ref = out["manifest"]["external"][0]
    assert ref["kind"] == "lvm-snapshot" and ref["attributes"]["mount_options"] == "ro,nouuid"
    assert ref["attributes"]["origin"] == "vg0/data" and ref["attributes"]["size"] == str(16 * MiB)
    assert "lvm" in out["manifest"]["tool_versions"] and "tar" in out["manifest"]["tool_versions"]
    assert state() == (["data"], {})  # unmounted and removed
    assert os.listdir(str(tmp_path / "mnt" / "vg0-data")) == []
    # The live volume changes after the snapshot: the set holds the snapshot's state.
    restored = tmp_path / "restored"
    done = restore(monkeypatch, tmp_path, restored)
    assert not done.failed, done.result["msg"]
    assert tree(restored) == tree(lvm)


def test_incremental_chain(lvm, monkeypatch, tmp_path):
    assert not backup(monkeypatch, tmp_path).failed
    with open(os.path.join(lvm, "f05"), "wb") as handle:
        handle.write(b"changed")
    os.unlink(os.path.join(lvm, "f06"))
    os.makedirs(os.path.join(lvm, "new"))
    with open(os.path.join(lvm, "new", "n"), "w") as handle:
        handle.write("new file\n")
    second = backup(monkeypatch, tmp_path, type="incremental")
    assert not second.failed, second.result["msg"]
    assert second.result["type"] == "incremental"
    assert second.result["parent_set_id"] is not None
    restored = tmp_path / "restored"
    done = restore(monkeypatch, tmp_path, restored, set_id=second.result["set_id"])
    assert not done.failed, done.result["msg"]
    assert tree(restored) == tree(lvm)
    assert "f06" not in os.listdir(str(restored))
    assert state() == (["data"], {})


def writing_tar(tmp_path, monkeypatch, script):
    """GNU tar behind a wrapper on PATH that first runs ``script`` (sh) while the snapshot is mounted."""
    bindir = tmp_path / "wrapbin"
    bindir.mkdir()
    real = subprocess.check_output(["sh", "-c", "command -v tar"]).decode().strip()
    wrapper = bindir / "tar"
    wrapper.write_text("#!/bin/sh\nif [ \"$1\" = --create ]; then %s; fi\nexec %s \"$@\"\n" % (script, real))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))


def test_a_snapshot_that_fills_up_fails_with_a_sentence_and_no_set(lvm, monkeypatch, tmp_path):
    # 8 MiB written to the origin while the files are read overflow a 4 MiB snapshot.
    writing_tar(tmp_path, monkeypatch, "head -c 8388608 /dev/urandom > %s/big" % lvm)
    result = backup(monkeypatch, tmp_path, size="4M")
    assert result.failed
    assert "filled up while it was read" in result.result["msg"] and "\n" not in result.result["msg"]
    assert state() == (["data"], {})
    assert not [n for n in os.listdir(str(tmp_path / "store" / "h1" / "vg0-data")) if n[:1].isdigit()]


def test_release_on_failure(lvm, monkeypatch, tmp_path):
    writing_tar(tmp_path, monkeypatch, "exit 2")
    result = backup(monkeypatch, tmp_path)
    assert result.failed and "tar" in result.result["msg"]
    assert state() == (["data"], {})


def test_a_killed_run_leaves_a_snapshot_the_next_run_removes(lvm, monkeypatch, tmp_path):
    marker = tmp_path / "started"
    writing_tar(tmp_path, monkeypatch, "touch %s; sleep 60" % marker)
    argsfile = tmp_path / "args.json"
    argsfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args(tmp_path, _ansible_tmpdir=str(tmp_path))}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, lvm_snapshot.__file__, str(argsfile)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    volumes, mounted = state()
    assert len(volumes) == 2 and list(mounted) == [str(tmp_path / "mnt" / "vg0-data")]
    # Check mode names the leftover and touches nothing.
    check = backup(monkeypatch, tmp_path, check_mode=True)
    assert [r["path"] for r in check.result["removed_snapshots"]] == ["vg0/" + [v for v in volumes if v != "data"][0]]
    assert state() == (volumes, mounted)
    monkeypatch.setenv("PATH", os.environ["PATH"].split(":", 1)[1])
    result = backup(monkeypatch, tmp_path)
    assert not result.failed, result.result["msg"]
    reasons = sorted(r["reason"] for r in result.result["removed_snapshots"])
    assert reasons == ["left by an interrupted run", "left mounted by an interrupted run"]
    assert len(result.result["removed_partials"]) == 1
    assert state() == (["data"], {})


def test_check_mode_touches_nothing(lvm, monkeypatch, tmp_path):
    result = backup(monkeypatch, tmp_path, check_mode=True)
    assert not result.failed, result.result["msg"]
    assert result.result["changed"] and result.result["removed_snapshots"] == []
    assert result.result["snapshot"] == "vg0/lifeboat-%s-%s" % (_lvm.source_tag("h1", "vg0-data")[-8:],
                                                                result.result["set_id"])
    assert result.result["cmd"] and result.result["cmd"][0][0].endswith("tar")
    assert state() == (["data"], {})
    assert not os.path.exists(str(tmp_path / "store" / "h1"))


@pytest.mark.parametrize("extra, sentence", [
    (dict(vg="nosuch"), "The volume group nosuch does not exist"),
    (dict(lv="nosuch"), "The logical volume vg0/nosuch does not exist."),
    (dict(vg="-bad"), "'-bad' is not a valid volume group name"),
    (dict(lv="a/b"), "'a/b' is not a valid logical volume name"),
    (dict(size="ten gigs"), "is neither a size"),
    (dict(size="150%FREE"), "is neither a size"),
    (dict(size="1G"), "has 32.0 MiB free, less than the 1G snapshot needs"),
])
def test_bad_input_is_one_sentence(lvm, monkeypatch, tmp_path, extra, sentence):
    for check_mode in (True, False):
        result = backup(monkeypatch, tmp_path, check_mode=check_mode, **extra)
        assert result.failed and sentence in result.result["msg"], result.result["msg"]
        assert "\n" not in result.result["msg"] and "Traceback" not in result.result["msg"]
    assert state() == (["data"], {})


def test_a_full_volume_group_is_refused_by_lvcreate(lvm, monkeypatch, tmp_path):
    fakelvm.create_lv("vg0", "other", 32 * MiB)  # the VG is now full
    result = backup(monkeypatch, tmp_path, size="100%FREE")
    assert result.failed and "no free space" in result.result["msg"]
    assert state()[0] == ["data", "other"]


def test_a_busy_leftover_mount_is_one_sentence(lvm, monkeypatch, tmp_path):
    target = tmp_path / "mnt" / "vg0-data"
    target.mkdir(parents=True)
    fake = dict(os.environ)
    subprocess.check_call([os.path.join(FAKES, "lvcreate"), "--snapshot", "--name", "lifeboat-x", "--size", "8M",
                           "vg0/data"], env=fake)
    subprocess.check_call([os.path.join(FAKES, "mount"), "-t", "xfs", "-o", "ro,nouuid", "/dev/vg0/lifeboat-x",
                           str(target)], env=fake)
    holder = subprocess.Popen(["sleep", "30"], cwd=str(target))
    try:
        result = backup(monkeypatch, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert result.failed
    assert result.result["msg"] == ("Unmounting the snapshot at %s failed: umount: %s: target is busy; the snapshot "
                                    "stays until a later run can unmount it." % (target, target))


def test_lvcreate_refusing_the_size_is_one_sentence(lvm, monkeypatch, tmp_path):
    fakelvm.create_lv("vg0", "other", 16 * MiB)  # 16 MiB left; 100%ORIGIN needs 32
    result = backup(monkeypatch, tmp_path, size="100%ORIGIN")
    assert result.failed
    assert result.result["msg"] == ('The volume group vg0 has no room for a 100%ORIGIN snapshot of data: Volume group '
                                    '"vg0" has insufficient free space (4 extents): 8 required')
    assert state() == (["data", "other"], {})


def test_a_mount_point_in_use_is_refused_and_nothing_is_left(lvm, monkeypatch, tmp_path):
    target = tmp_path / "mnt" / "vg0-data"
    target.mkdir(parents=True)
    (target / "someone-elses").write_text("x")
    result = backup(monkeypatch, tmp_path)
    assert result.failed
    assert result.result["msg"] == ("The mount point %s is not empty (something is mounted or stored there); empty it "
                                    "or pick another mount_dir." % target)
    assert state() == (["data"], {})
    assert (target / "someone-elses").read_text() == "x"


def test_a_directory_inside_the_volume(lvm, monkeypatch, tmp_path):
    result = backup(monkeypatch, tmp_path, path="etc/")
    assert not result.failed, result.result["msg"]
    out = result.result
    mount = str(tmp_path / "mnt" / "vg0-data")
    # tar read the directory inside the mounted snapshot, and says so
    assert "--directory=%s" % os.path.join(mount, "etc") in out["cmd"][0]
    assert out["manifest"]["options"]["path"] == os.path.join(mount, "etc")
    assert state() == (["data"], {})
    restored = tmp_path / "restored"
    done = restore(monkeypatch, tmp_path, restored)
    assert not done.failed, done.result["msg"]
    assert tree(restored) == tree(os.path.join(lvm, "etc"))


@pytest.mark.parametrize("path,sentence", [
    ("/etc", "path '/etc' must be relative to the root of the volume"),
    ("../x", "path '../x' leaves the volume; give a directory inside it."),
    ("out", "path out leads out of the snapshot (through a symbolic link); give a directory inside the volume."),
    ("f03", "path f03 is not a directory in the snapshot of vg0/data."),
])
def test_a_path_out_of_the_volume_is_refused_and_nothing_is_left(lvm, monkeypatch, tmp_path, path, sentence):
    os.symlink("/etc", os.path.join(lvm, "out"))
    result = backup(monkeypatch, tmp_path, path=path)
    assert result.failed and sentence in result.result["msg"], result.result["msg"]
    assert state() == (["data"], {})
    source_dir = str(tmp_path / "store" / "h1" / "vg0-data")
    assert set(os.listdir(source_dir) if os.path.isdir(source_dir) else []) <= {"objects"}  # no set, no partial
