# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""rsync snapshots: real rsync into a dir store, tree index and verify, itemized output, safe restore."""

from __future__ import annotations

import datetime
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _files
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _trees
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._manifest import ManifestError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakeModule
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import ssh_harness
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import store_kinds
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils.test_files import make_tree, snapshot

pytestmark = pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync")


class Clock(object):
    def __init__(self):
        self.now = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)

    def __call__(self):
        self.now += datetime.timedelta(minutes=1)
        return self.now


def backup(store, src, clock, **options):
    engine = _files.RsyncEngine(store, str(src), shutil.which("rsync"), **options)
    # A codec as the module gives every engine: the tree's lists are still stored raw, so verify reads them.
    job = _jobs.BackupJob(store, "h1", "tree", _files.ENGINE, _files.RSYNC_METHOD, set_type="full", now=clock,
                          codec=_jobs.Codec(FakeModule(), "zstd"))
    manifest, extras = job.run(engine)
    return manifest, engine.result(manifest, extras)


def restore(store, target, set_id=None, **options):
    job = _jobs.RestoreJob(FakeModule(), store, "h1", "tree", set_id=set_id)
    engine = _files.SnapshotRestore(str(target), **options)
    result = job.run(engine)
    result.update(engine.details())
    return result


def source_dir(store):
    """The source directory of the tests' sets, as a local path (the ssh store's server is this machine)."""
    root = store.root if store.kind == "ssh" else store.location()
    return os.path.join(root, "h1", "tree")


def tree_dir(store, manifest):
    return os.path.join(source_dir(store), manifest["set_id"], _files.TREE_NAME)


def open_kind(kind, tmp_path):
    if kind == "ssh":
        root = tmp_path / "remote"
        root.mkdir(mode=0o700)
        return _store_kinds.open_store(ssh_harness.spec(root))
    return store_kinds.FACTORIES["dir"](tmp_path)[0]


@pytest.fixture
def setup(tmp_path):
    store = open_kind("dir", tmp_path)
    src = tmp_path / "src"
    make_tree(src)
    return store, src, Clock()


@pytest.fixture
def ssh_setup(tmp_path):
    """The same over SSH: an ssh store on the session's private sshd (each operation is an ssh session, so the
    ssh cases are fewer and each runs a whole scenario)."""
    store = open_kind("ssh", tmp_path)
    src = tmp_path / "src"
    make_tree(src)
    yield store, src, Clock()
    store.close()


# ------------------------------------------------------------------ itemized output and stats

def test_itemized_lines_count_changes_and_stats_are_read():
    out = textwrap.dedent("""\
        .d..t...... ./
        >f+++++++++ data/new file
        cL+++++++++ etc/l -> x
        hf+++++++++ data/b => data/a
        .f...p..... data/mode
        *deleting   old

        Number of files: 1,234 (reg: 1,000, dir: 234)
        Total file size: 5,000,000 bytes
        Total transferred file size: 12,345 bytes
        Literal data: 12,345 bytes
        """).splitlines()
    found = _files.parse_itemized(out)
    assert found.changes == 5
    assert found.listed[0] == ">f+++++++++ data/new file"
    assert found.stats["Number of files"] == 1234
    assert found.stats["Total transferred file size"] == 12345


def test_no_itemized_line_means_no_change():
    found = _files.parse_itemized(["", "Number of files: 3 (reg: 2, dir: 1)", "sent 100 bytes  received 20 bytes"])
    assert found.changes == 0 and found.listed == []


# ------------------------------------------------------------------ index and verify

def test_lists_round_trip_and_check_finds_nothing(tmp_path):
    root = tmp_path / "t"
    make_tree(root)
    fd = os.open(str(root), os.O_RDONLY | os.O_DIRECTORY)
    index, links = io.BytesIO(), io.BytesIO()
    try:
        found = _trees.write_lists(fd, index, links)
        index.seek(0)
        links.seek(0)
        tree = {"name": "t", "index": "t.index", "files": found.files, "bytes": found.bytes}
        entries = list(_manifest.read_index(index, tree))
        assert [e["path"] for e in entries][:2] == ["data/big.log", "data/f00"]
        assert list(_trees.read_links(links)) == [{"path": "etc/current", "target": "app/app.conf"}]
        links.seek(0)
        assert _trees.check_tree(fd, "t", entries, _trees.read_links(links)) == []
    finally:
        os.close(fd)


def test_index_lines_are_the_canonical_lines_the_manifest_reader_accepts():
    for path in ("a", "d\u00e9j\u00e0/x y", "bad\udcff/name", "ctl\x01"):
        line = _trees.index_line(path, 5, 0o640, "0" * 64)
        assert line == _manifest.format_index_line(path, 5, 0o640, "0" * 64)
    with pytest.raises(ManifestError):
        _trees.index_line("../x", 1, 0o644, "0" * 64)


def test_links_file_lines_are_strict():
    good = _trees.format_link_line("a/b", "/etc/x")
    assert good == b'{"path":"a/b","target":"/etc/x"}\n'
    for bad in (b'{"target":"/x","path":"a"}\n', b'{"path":"a","target":"x"}', b'{"path":"../a","target":"x"}\n',
                b'{"path":"a","target":""}\n', b'{"path":"a","target":"x","z":1}\n'):
        with pytest.raises(ManifestError):
            _trees.parse_link_line(bad)
    with pytest.raises(ManifestError):
        list(_trees.read_links(io.BytesIO(_trees.format_link_line("b", "x") + _trees.format_link_line("a", "x"))))


# ------------------------------------------------------------------ snapshots with real rsync

def test_first_snapshot_then_unchanged_rerun_hard_links_every_file(setup):
    store, src, clock = setup
    first, result = backup(store, src, clock)
    assert result["changed"] is True
    assert first["trees"][0]["files"] == 53 and first["options"]["files"] == 53
    assert first["options"]["bytes_transferred"] > 0
    assert [(f["name"], f["role"], f["codec"]["compression"]) for f in first["files"]] == [
        ("tree.index", "index", "none"), ("tree.links", "meta", "none")]
    assert store.verify_set(first) == []
    second, result = backup(store, src, clock)
    assert result["changed"] is False and result["changes"] == []
    assert second["options"]["bytes_transferred"] == 0
    assert second["options"]["link_dest"] == first["set_id"]
    for name in ("data/f10", "etc/app/app.conf"):
        a = os.lstat(os.path.join(tree_dir(store, first), name))
        b = os.lstat(os.path.join(tree_dir(store, second), name))
        assert a.st_ino == b.st_ino
    assert store.verify_set(second) == []


def test_a_change_and_a_deletion_are_changes(setup):
    store, src, clock = setup
    backup(store, src, clock)
    (src / "data/f05").write_bytes(b"other bytes")
    second, result = backup(store, src, clock)
    assert result["changed"] is True and result["changes_count"] == 1
    assert result["changes"][0].endswith("data/f05")
    os.unlink(str(src / "data/f06"))
    third, result = backup(store, src, clock)
    assert result["changed"] is True
    assert not os.path.exists(os.path.join(tree_dir(store, third), "data/f06"))


def test_excludes_includes_and_check_mode(setup, tmp_path):
    store, src, clock = setup
    manifest, dummy = backup(store, src, clock, excludes=["*.log"])
    tree = tree_dir(store, manifest)
    assert not os.path.exists(os.path.join(tree, "data/big.log"))
    assert os.path.exists(os.path.join(tree, "data/f00"))
    (src / "data/f07").write_bytes(b"new content")
    engine = _files.RsyncEngine(store, str(src), shutil.which("rsync"), excludes=["*.log"])
    job = _jobs.BackupJob(store, "h1", "tree", _files.ENGINE, _files.RSYNC_METHOD, now=clock, work_dir=str(tmp_path))
    decision = job.plan()
    decision["job"] = job
    check = engine.check_result(decision)
    assert check["changed"] is True and check["would_change_count"] == 1
    assert len(store.listing("h1", "tree").sets) == 1


def test_round_trip_keeps_modes_times_links_and_hard_links(setup, tmp_path):
    store, src, clock = setup
    manifest, dummy = backup(store, src, clock)
    target = tmp_path / "restored"
    result = restore(store, target)
    got, want = snapshot(target), snapshot(src)
    assert dict((k, v) for k, v in got[0].items() if want[0].get(k) != v) == {}
    assert got == want
    assert result["restored"] == 54


HOSTILE = {
    "symlink out": lambda tree: os.symlink("/etc/passwd", os.path.join(tree, "evil")),
    "file swapped for a link": lambda tree: (os.unlink(os.path.join(tree, "data/f01")),
                                             os.symlink("/etc/shadow", os.path.join(tree, "data/f01"))),
    "fifo": lambda tree: os.mkfifo(os.path.join(tree, "data/pipe")),
    "extra file": lambda tree: open(os.path.join(tree, "planted"), "w").close(),
    "altered file": lambda tree: (os.unlink(os.path.join(tree, "data/f02")),
                                  open(os.path.join(tree, "data/f02"), "wb").write(b"x" * 102)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_trees_are_reported_and_refused(setup, tmp_path, name):
    store, src, clock = setup
    manifest, dummy = backup(store, src, clock)
    tree = tree_dir(store, manifest)
    os.chmod(tree, 0o755)
    HOSTILE[name](tree)
    problems = store.verify_set(manifest)
    assert problems, name
    target = tmp_path / "restored"
    with pytest.raises(LifeboatError):
        restore(store, target)
    assert not target.exists() or _files.visible_entries(str(target)) == []


def test_a_killed_snapshot_stays_partial_and_the_next_run_resumes(setup):
    killed_then_resumed(*setup)


def test_over_ssh_a_killed_snapshot_stays_partial_and_the_next_run_resumes(ssh_setup):
    killed_then_resumed(*ssh_setup)


def killed_then_resumed(store, src, clock):
    backup(store, src, clock)
    spec = ssh_harness.spec(store.root) if store.kind == "ssh" else {"kind": "dir", "path": store.root}
    big = src / "big"
    big.mkdir()
    for index in range(40):
        (big / ("b%02d" % index)).write_bytes(os.urandom(256 * 1024))
    child = textwrap.dedent("""\
        import sys, shutil
        sys.path[:0] = %r
        from ansible_collections.lifeboat.backup.plugins.module_utils import _files, _jobs, _store_kinds
        store = _store_kinds.open_store(%r)
        engine = _files.RsyncEngine(store, %r, shutil.which("rsync"), bwlimit="2000")
        _jobs.BackupJob(store, "h1", "tree", "files", "rsync_snapshot").run(engine)
        """) % (sys.path, spec, str(src))
    proc = subprocess.Popen([sys.executable, "-c", child])
    partial = None
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=90)
    while datetime.datetime.now() < deadline and proc.poll() is None:
        # the store's directory as the server sees it (the ssh store's server is this machine)
        partials = [n for n in os.listdir(source_dir(store)) if n.endswith(".partial")]
        if partials:
            tree = os.path.join(source_dir(store), partials[0], "tree", "big")
            if os.path.isdir(tree) and len(os.listdir(tree)) >= 3:
                partial = partials[0]
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial is not None
    assert store.listing("h1", "tree").partials == [partial]
    manifest, result = backup(store, src, clock)
    assert result["changed"] is True
    copied = manifest["options"]["bytes_transferred"]
    assert copied < 40 * 256 * 1024  # what the killed run copied was linked, not copied again
    assert store.verify_set(manifest) == []
    assert not os.path.exists(os.path.join(source_dir(store), ".resume", "tree"))


def test_a_file_altered_in_the_previous_snapshot_is_not_vouched_for_again(setup):
    store, src, clock = setup
    first, dummy = backup(store, src, clock)
    victim = os.path.join(tree_dir(store, first), "data/f09")
    st = os.stat(victim)
    os.chmod(victim, 0o600)
    with open(victim, "r+b") as handle:  # same inode, same size, same mtime: rsync links it as unchanged
        handle.write(b"\0" * st.st_size)
    os.chmod(victim, stat.S_IMODE(st.st_mode))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    second, dummy = backup(store, src, clock)
    assert os.stat(os.path.join(tree_dir(store, second), "data/f09")).st_ino == st.st_ino
    problems = store.verify_set(second)
    assert [(p["name"], p["problem"]) for p in problems] == [("tree/data/f09", "sha256")]
    # with checksum: true rsync compares content, so the altered file is copied afresh from the source
    third, dummy = backup(store, src, clock, checksum=True)
    assert store.verify_set(third) == []


# ------------------------------------------------------------------ over SSH

def new_bytes_on_disk(tree):
    """Bytes of the files of ``tree`` that are not hard-linked to anything (what a snapshot added to the disk)."""
    total = 0
    for top, dummy, files in os.walk(tree):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                total += st.st_blocks * 512
    return total


def test_over_ssh_snapshots_link_unchanged_files_on_the_server_and_restore(ssh_setup, tmp_path):
    """First snapshot, an unchanged rerun, 1% changed, a deletion, check mode, restore, a tampered tree: over SSH."""
    store, src, clock = ssh_setup
    gen = src / "gen"
    gen.mkdir()
    for index in range(200):
        (gen / ("g%03d" % index)).write_bytes(os.urandom(32 * 1024))
    (src / "ro").mkdir()
    (src / "ro/kept").write_bytes(b"read-only directory\n")
    os.chmod(str(src / "ro"), 0o555)
    first, result = backup(store, src, clock)
    assert result["changed"] is True and first["options"]["files"] == 254
    assert store.verify_set(first) == []
    # rerun over an unchanged tree: not changed, nothing copied, every file the same inode on the server
    second, result = backup(store, src, clock)
    assert result["changed"] is False and result["changes"] == [] and second["options"]["bytes_transferred"] == 0
    assert second["options"]["link_dest"] == first["set_id"]
    for name in ("data/f10", "gen/g100", "ro/kept"):
        assert os.lstat(os.path.join(tree_dir(store, first), name)).st_ino == \
            os.lstat(os.path.join(tree_dir(store, second), name)).st_ino
    assert new_bytes_on_disk(tree_dir(store, second)) == 0
    # 1% of the files changed: the new snapshot's new bytes on disk are close to the changed bytes
    for name in ("g007", "g123"):
        (gen / name).write_bytes(os.urandom(32 * 1024))
    third, result = backup(store, src, clock)
    assert result["changed"] is True and result["changes_count"] == 2
    assert sorted(line.split(" ", 1)[1] for line in result["changes"]) == ["gen/g007", "gen/g123"]
    changed_bytes = 2 * 32 * 1024
    assert third["options"]["bytes_transferred"] == changed_bytes
    assert changed_bytes <= new_bytes_on_disk(tree_dir(store, third)) <= 2 * changed_bytes
    assert store.verify_set(third) == []
    # a deletion is reflected
    os.unlink(str(src / "data/f06"))
    fourth, result = backup(store, src, clock)
    assert result["changed"] is True
    assert not os.path.exists(os.path.join(tree_dir(store, fourth), "data/f06"))
    # restore over SSH: every file checked against the index as it is copied
    target = tmp_path / "restored"
    result = restore(store, target)
    assert snapshot(target) == snapshot(src)
    assert result["restored"] == 254
    # check mode: rsync --dry-run on the server beside the previous snapshot; nothing written
    (src / "data/f07").write_bytes(b"new content")
    engine = _files.RsyncEngine(store, str(src), shutil.which("rsync"))
    job = _jobs.BackupJob(store, "h1", "tree", _files.ENGINE, _files.RSYNC_METHOD, now=clock, work_dir=str(tmp_path))
    decision = job.plan()
    decision["job"] = job
    check = engine.check_result(decision)
    assert check["changed"] is True and check["would_change_count"] == 1, check
    assert check["would_change"][0].endswith("data/f07")
    listing = store.listing("h1", "tree")
    assert len(listing.sets) == 4 and listing.partials == []
    assert sorted(n for n in os.listdir(source_dir(store)) if n != ".lock") == listing.sets
    # a tampered tree on the server is reported by verify and refused by restore
    tree = tree_dir(store, fourth)
    os.chmod(tree, 0o755)
    HOSTILE["symlink out"](tree)
    HOSTILE["altered file"](tree)
    assert sorted((p["name"], p["problem"]) for p in store.verify_set(fourth)) == [
        ("tree/data/f02", "sha256"), ("tree/evil", "unlisted")]
    target = tmp_path / "refused"
    with pytest.raises(LifeboatError):
        restore(store, target, set_id=fourth["set_id"])
    assert not target.exists() or _files.visible_entries(str(target)) == []
    # deleting a snapshot set removes its tree, read-only directories included
    store.delete_set("h1", "tree", first["set_id"])
    assert first["set_id"] not in store.listing("h1", "tree").sets
    assert not os.path.exists(os.path.join(source_dir(store), first["set_id"]))
    assert not os.path.exists(os.path.join(source_dir(store), first["set_id"] + ".deleting"))
