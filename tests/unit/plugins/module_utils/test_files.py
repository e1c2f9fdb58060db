# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""File trees: tar chains written with real GNU tar through the core, restored through extract_tree, attacked."""

from __future__ import annotations

import datetime
import io
import os
import shutil
import stat
import tarfile

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _files
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils._archive import ArchiveError
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakeModule
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import store_kinds

pytestmark = pytest.mark.skipif(not shutil.which("tar") or not shutil.which("zstd"), reason="needs GNU tar and zstd")


def member(name, kind="file", data=b"", linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 1700000000
    if kind == "file":
        info.size = len(data)
    elif kind == "dir":
        info.type = tarfile.DIRTYPE
    elif kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, linkname
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, linkname
    elif kind == "chr":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info, data


def crafted(entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    raw.seek(0)
    return raw


ATTACKS = {
    "absolute": ([member("/tmp/evil", data=b"x")], "is an absolute path"),
    "dotdot": ([member("a/../../evil", data=b"x")], "climbs out"),
    "symlink out": ([member("out", "symlink", linkname="/etc")], "leads out of the target"),
    "symlink climbing out": ([member("d", "dir"), member("d/up", "symlink", linkname="../../..")],
                             "leads out of the target"),
    "write through a symlink": ([member("d", "dir"), member("inside", "symlink", linkname="d"),
                                 member("inside/f", data=b"x")], "written through the symbolic link"),
    "replace a symlink": ([member("l", "symlink", linkname="x"), member("l", data=b"x")],
                          "would replace the symbolic link"),
    "hard link out": ([member("h", "hardlink", linkname="/etc/passwd")], "leads out of the target"),
    "hard link climbing": ([member("h", "hardlink", linkname="../secret")], "leads out of the target"),
    "device": ([member("null", "chr")], "needs devices: true"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_crafted_archives_are_refused_and_nothing_leaves_the_target(tmp_path, name):
    entries, reason = ATTACKS[name]
    dest = tmp_path / "dest"
    dest.mkdir()
    (tmp_path / "secret").write_text("s")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ArchiveError) as caught:
        _archive.extract_tree(crafted(entries), str(dest), what="the payload P")
    assert reason in str(caught.value)
    assert "The payload P holds member" in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == before
    assert not os.path.exists("/tmp/evil")


def test_a_link_already_on_disk_is_never_written_through(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), str(dest / "d"))
    with pytest.raises(ArchiveError) as caught:
        _archive.extract_tree(crafted([member("d/f", data=b"x")]), str(dest))
    assert "written through a symbolic link" in str(caught.value)
    assert os.listdir(str(outside)) == []


def test_links_inside_and_devices_when_asked(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    entries = [member("d", "dir"), member("d/f", data=b"data"), member("d/l", "symlink", linkname="f"),
               member("up", "symlink", linkname="d/../d/f"), member("h", "hardlink", linkname="d/f")]
    if os.geteuid() == 0:
        entries.append(member("null", "chr"))
    done = _archive.extract_tree(crafted(entries), str(dest), devices=True)
    assert os.readlink(str(dest / "d/l")) == "f"
    assert os.stat(str(dest / "h")).st_ino == os.stat(str(dest / "d/f")).st_ino
    assert (dest / "up").read_bytes() == b"data"
    if os.geteuid() == 0:
        assert stat.S_ISCHR(os.lstat(str(dest / "null")).st_mode)
    assert done.written == len(entries) - 1


# ------------------------------------------------------------------ chains with real GNU tar

class Clock(object):
    def __init__(self):
        self.now = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)

    def __call__(self):
        self.now += datetime.timedelta(minutes=1)
        return self.now


def backup(store, src, set_type, clock, excludes=()):
    module = FakeModule()
    engine = _files.TarEngine(store, str(src), shutil.which("tar"), excludes)
    job = _jobs.BackupJob(store, "h1", "tree", _files.ENGINE, "tar", set_type=set_type, now=clock,
                          codec=_jobs.Codec(module, "zstd"))
    return job.run(engine)[0]


def restore(store, target, set_id=None, **options):
    module = FakeModule()
    job = _jobs.RestoreJob(module, store, "h1", "tree", set_id=set_id)
    engine = _files.TreeRestore(str(target), **options)
    result = job.run(engine)
    result.update(engine.details())
    return result


def snapshot(root):
    """Everything a restore must carry, path by path (hard links as groups of paths), the root included."""
    top = os.lstat(str(root))
    seen = {".": (stat.S_IMODE(top.st_mode), top.st_mtime_ns)}
    inodes = {}
    for base, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, str(root))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ("link", os.readlink(path), st.st_uid, st.st_gid)
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
            else:
                with open(path, "rb") as handle:
                    content = handle.read()
                seen[rel] = ("file", content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
                inodes.setdefault(st.st_ino, []).append(rel)
    links = sorted(sorted(group) for group in inodes.values() if len(group) > 1)
    return seen, links


def make_tree(src):
    (src / "etc/app").mkdir(parents=True)
    (src / "etc/app/app.conf").write_text("listen 80\n")
    (src / "data").mkdir()
    for index in range(50):
        (src / "data" / ("f%02d" % index)).write_bytes(os.urandom(100 + index))
    (src / "data/big.log").write_text("log\n" * 1000)
    os.symlink("app/app.conf", str(src / "etc/current"))
    os.link(str(src / "data/f01"), str(src / "data/f01.hard"))
    os.chmod(str(src / "etc/app/app.conf"), 0o640)
    if os.geteuid() == 0:
        os.chown(str(src / "data/f02"), 1234, 4321)
        os.chmod(str(src / "data/f03"), 0o4755)
    os.utime(str(src / "data/f04"), (1600000000, 1600000000))


@pytest.fixture
def chain(tmp_path):
    store = store_kinds.FACTORIES["dir"](tmp_path)[0]
    src = tmp_path / "src"
    make_tree(src)
    return store, src


def test_full_incremental_incremental_restores_the_tree_file_by_file(chain, tmp_path):
    store, src = chain
    clock = Clock()
    full = backup(store, src, "full", clock)
    (src / "data/f05").write_bytes(b"changed")
    os.unlink(str(src / "data/f06"))
    (src / "new").mkdir()
    (src / "new/file").write_text("new")
    first = backup(store, src, "incremental", clock)
    shutil.rmtree(str(src / "etc/app"))
    os.symlink("../data/f07", str(src / "etc/dangling-then-valid"))
    second = backup(store, src, "incremental", clock)
    assert (full["type"], first["parent_set_id"], second["parent_set_id"]) == ("full", full["set_id"], first["set_id"])
    # The tar state lives in the store, beside the sets, checked by the manifest.
    assert sorted(store.list_objects("h1", "tree", "tar/")) == sorted(
        "tar/%s.snar" % m["set_id"] for m in (full, first, second))
    result = restore(store, tmp_path / "out")
    assert result["chain"] == [full["set_id"], first["set_id"], second["set_id"]]
    assert snapshot(tmp_path / "out") == snapshot(src)
    assert result["removed_by_chain"] >= 2
    assert not [n for n in os.listdir(str(tmp_path / "out")) if n.startswith(_files.STAGING_PREFIX)]


def test_full_then_differential_and_excludes(chain, tmp_path):
    store, src = chain
    clock = Clock()
    engine_excludes = ["*.log"]
    backup(store, src, "full", clock, engine_excludes)
    (src / "data/f08").write_bytes(b"one")
    backup(store, src, "incremental", clock, engine_excludes)
    (src / "data/f09").write_bytes(b"two")
    diff = backup(store, src, "differential", clock, engine_excludes)
    result = restore(store, tmp_path / "out")
    assert len(result["chain"]) == 2 and result["chain"][1] == diff["set_id"]
    expected = snapshot(src)
    del expected[0]["data/big.log"]
    assert snapshot(tmp_path / "out") == expected


def test_a_rebuilt_host_continues_the_chain_from_the_store(chain, tmp_path):
    store, src = chain
    clock = Clock()
    backup(store, src, "full", clock)
    # Nothing is kept on the host: a fresh engine and workspace find the state in the store.
    (src / "data/f10").write_bytes(b"after rebuild")
    inc = backup(store, src, "incremental", clock)
    assert inc["type"] == "incremental"
    restore(store, tmp_path / "out")
    assert (tmp_path / "out/data/f10").read_bytes() == b"after rebuild"


def test_an_altered_tar_state_is_refused(chain, tmp_path):
    store, src = chain
    clock = Clock()
    full = backup(store, src, "full", clock)
    path = tmp_path / "store/h1/tree/objects/tar" / (full["set_id"] + ".snar")
    os.chmod(str(path), 0o600)
    with open(str(path), "ab") as handle:
        handle.write(b"x")
    with pytest.raises(_files.FilesError) as caught:
        backup(store, src, "incremental", clock)
    assert "does not match the SHA-256" in str(caught.value)


def test_missing_source_is_one_sentence(tmp_path):
    with pytest.raises(_files.FilesError) as caught:
        _files.check_source_dir(str(tmp_path / "nope"))
    assert str(caught.value) == "The source directory %s does not exist." % (tmp_path / "nope")


def test_nonempty_target_overwrite_policies_and_selection(chain, tmp_path):
    store, src = chain
    backup(store, src, "full", Clock())
    out = tmp_path / "out"
    out.mkdir()
    (out / "etc").mkdir()
    (out / "etc/current").write_text("mine")
    (out / "keep").write_text("unrelated")
    with pytest.raises(LifeboatError) as caught:
        restore(store, out)
    assert "is not empty" in str(caught.value) and "allow_nonempty" in str(caught.value)
    kept = restore(store, out, allow_nonempty=True, overwrite="never", paths=["etc"])
    assert kept["kept"] == ["etc/current"] and (out / "etc/current").read_text() == "mine"
    assert not (out / "data").exists() and (out / "etc/app/app.conf").read_text() == "listen 80\n"
    again = restore(store, out, allow_nonempty=True, overwrite="if_changed")
    assert again["replaced"] == ["etc/current"] and os.readlink(str(out / "etc/current")) == "app/app.conf"
    quiet = restore(store, out, allow_nonempty=True, overwrite="if_changed")
    assert quiet["replaced"] == [] and quiet["placed"] == 0
    assert (out / "keep").read_text() == "unrelated"
    patterns = restore(store, tmp_path / "only", paths=["*.conf"])
    assert patterns["restored"] == 1 and (tmp_path / "only/etc/app/app.conf").exists()
    with pytest.raises(_files.FilesError):
        restore(store, tmp_path / "none", paths=["no/such/path"])
