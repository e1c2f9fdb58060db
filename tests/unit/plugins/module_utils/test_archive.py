# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_archive: member-by-member checks and a safe extraction, on archives made by tarfile and by GNU tar."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils._archive import ArchiveError
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError

needs_tar = pytest.mark.skipif(not shutil.which("tar"), reason="tar is not installed")


def entry(name, kind="file", data=b"", mode=0o644, linkname="", uid=0, gid=0):
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.mtime = 1700000000
    if kind == "file":
        info.type = tarfile.REGTYPE
        info.size = len(data)
    elif kind == "dir":
        info.type = tarfile.DIRTYPE
    elif kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = linkname
    elif kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = linkname
    elif kind == "chr":
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
    elif kind == "blk":
        info.type = tarfile.BLKTYPE
        info.devmajor, info.devminor = 8, 0
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    else:
        info.type = kind
    return info, data


def make_tar(entries, fmt=tarfile.PAX_FORMAT):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return raw.getvalue()


class OneWay(io.RawIOBase):
    """A read-only, non-seekable stream, like the stdout of a pipeline."""

    def __init__(self, data, step=7000):
        self.data = data
        self.pos = 0
        self.step = step

    def readable(self):
        return True

    def readinto(self, buffer):
        block = self.data[self.pos:self.pos + min(len(buffer), self.step)]
        buffer[:len(block)] = block
        self.pos += len(block)
        return len(block)


def stream(data):
    return io.BufferedReader(OneWay(data))


GOOD = [
    entry("./", "dir", mode=0o755),
    entry("./toc.dat", data=b"TOC" * 1000),
    entry("./3338.dat", data=b"1\talice\n2\tbob\n\\.\n"),
    entry("./sub", "dir", mode=0o750),
    entry("./sub/deeper/x.dat", data=b"x"),
    entry("./empty.dat", data=b""),
]


def test_good_archive_members():
    members = _archive.check_tar(stream(make_tar(GOOD)))
    assert [(m.path, m.kind, m.size) for m in members] == [
        ("", "dir", 0), ("toc.dat", "file", 3000), ("3338.dat", "file", 17), ("sub", "dir", 0),
        ("sub/deeper/x.dat", "file", 1), ("empty.dat", "file", 0)]
    assert members[1].as_dict() == {"path": "toc.dat", "kind": "file", "size": 3000, "mode": 0o644}


def test_good_archive_extracts(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    members = _archive.extract_tar(stream(make_tar(GOOD)), str(dest))
    assert len(members) == len(GOOD)
    assert (dest / "toc.dat").read_bytes() == b"TOC" * 1000
    assert (dest / "3338.dat").read_bytes() == b"1\talice\n2\tbob\n\\.\n"
    assert (dest / "sub" / "deeper" / "x.dat").read_bytes() == b"x"
    assert (dest / "empty.dat").read_bytes() == b""
    assert stat.S_IMODE(os.stat(str(dest / "sub")).st_mode) == 0o750
    assert os.stat(str(dest / "toc.dat")).st_mtime == 1700000000


@pytest.mark.parametrize(
    "bad, reason",
    [
        (entry("./4000.dat", "symlink", linkname="/etc/shadow"), "is a symbolic link (to '/etc/shadow')"),
        (entry("./4000.dat", "hardlink", linkname="/etc/shadow"), "is a hard link (to '/etc/shadow')"),
        (entry("./dev", "chr"), "is a character device"),
        (entry("./disk", "blk"), "is a block device"),
        (entry("./fifo", "fifo"), "is a FIFO"),
        (entry("./odd", b"V"), "is of tar type 'V'"),
        (entry("/etc/cron.d/evil", data=b"x"), "is an absolute path"),
        (entry("../evil", data=b"x"), "climbs out of the target directory"),
        (entry("./a/../../evil", data=b"x"), "climbs out of the target directory"),
        (entry("./toc.dat/inner", data=b"x"), "lies below 'toc.dat', an earlier member that is a file"),
        (entry("./toc.dat", data=b"again"), "appears twice"),
        (entry("./sub", data=b"x"), "is a file where an earlier member made a directory"),
        (entry("./sub/deeper", data=b"x"), "is a file where an earlier member made a directory"),
        (entry("./" + "d/" * 300 + "f", data=b"x"), "is nested deeper than 256 directories"),
        (entry("./" + "n" * 256, data=b"x"), "has a path component longer than 255 bytes"),
        (entry("./" + ("n" * 200 + "/") * 21 + "f", data=b"x"), "has a name longer than 4096 bytes"),
        (entry(".", data=b"x"), "is a file that names the target directory itself"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_member_is_refused_by_name(tmp_path, bad, reason):
    data = make_tar(GOOD + [bad])
    name = bad[0].name
    with pytest.raises(ArchiveError) as info:
        _archive.check_tar(stream(data), what="the payload of set S")
    message = str(info.value)
    assert reason in message
    assert message.startswith("The payload of set S holds member ")
    assert message.endswith("; refusing to extract it.")
    assert info.value.member == name
    if len(name) <= 200:
        assert repr(name) in message
    assert len(message.splitlines()) == 1
    # The extraction applies the same rules and never writes the bad member.
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError):
        _archive.extract_tar(stream(data), str(dest))
    assert not os.path.lexists(str(tmp_path / "evil"))
    if bad[0].type != tarfile.REGTYPE:
        assert not os.path.lexists(str(dest / bad[0].name))


def test_bad_member_first_is_refused_before_any_data_is_read():
    data = make_tar([entry("3338.dat", "symlink", linkname="/etc/shadow")] + GOOD)
    with pytest.raises(ArchiveError, match="'3338.dat', which is a symbolic link"):
        _archive.check_tar(stream(data))


def test_owner_and_special_bits_are_never_kept(tmp_path):
    data = make_tar([
        entry("tool", data=b"#!/bin/sh\n", mode=0o6755, uid=1234, gid=1234),
        entry("shared", "dir", mode=0o1777, uid=1234, gid=1234),
        entry("shared/readonly", data=b"r", mode=0o400),
        entry("locked", "dir", mode=0o500),
        entry("locked/inside", data=b"i", mode=0o644),
    ])
    dest = tmp_path / "dest"
    dest.mkdir()
    _archive.extract_tar(stream(data), str(dest))
    tool = os.stat(str(dest / "tool"))
    assert stat.S_IMODE(tool.st_mode) == 0o755
    assert (tool.st_uid, tool.st_gid) == (os.getuid(), os.getgid())
    shared = os.stat(str(dest / "shared"))
    assert stat.S_IMODE(shared.st_mode) == 0o777
    assert (shared.st_uid, shared.st_gid) == (os.getuid(), os.getgid())
    # Owner read/write is kept so that the extracting user can read and remove what it wrote.
    assert stat.S_IMODE(os.stat(str(dest / "shared" / "readonly")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(dest / "locked")).st_mode) == 0o700
    assert (dest / "locked" / "inside").read_bytes() == b"i"


def test_extraction_never_follows_a_symlink_already_in_dest(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(str(outside), str(dest / "sub"))
    with pytest.raises(LifeboatError, match="Cannot extract './sub' into .*: Not a directory"):
        _archive.extract_tar(stream(make_tar(GOOD)), str(dest))
    assert os.listdir(str(outside)) == []


def test_extraction_does_not_overwrite(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "toc.dat").write_bytes(b"mine")
    with pytest.raises(ArchiveError, match="would overwrite something already in"):
        _archive.extract_tar(stream(make_tar(GOOD)), str(dest))
    assert (dest / "toc.dat").read_bytes() == b"mine"


@pytest.mark.parametrize("cut", [100, 700, 2000, 5000])
def test_truncated_archive(tmp_path, cut):
    data = make_tar(GOOD)
    with pytest.raises(ArchiveError, match="damaged or truncated|is truncated|not a tar archive"):
        _archive.check_tar(stream(data[:cut]))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="damaged or truncated|is truncated|not a tar archive"):
        _archive.extract_tar(stream(data[:cut]), str(dest))


@pytest.mark.parametrize("data", [b"", b"hello world\n" * 100, b"\x28\xb5\x2f\xfd" + b"\x00" * 600])
def test_not_a_tar(data):
    with pytest.raises(ArchiveError, match="^The archive is (not a tar archive|damaged or truncated)"):
        _archive.check_tar(stream(data))


def test_member_limit():
    with pytest.raises(ArchiveError, match="beyond the limit of 3 members"):
        _archive.check_tar(stream(make_tar(GOOD)), max_members=3)


def test_long_names_in_gnu_and_pax_form(tmp_path):
    name = "d" * 120 + "/" + "f" * 200
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        data = make_tar([entry(name, data=b"long")], fmt=fmt)
        assert [m.path for m in _archive.check_tar(stream(data))] == [name]
        dest = tmp_path / ("dest%d" % fmt)
        dest.mkdir()
        _archive.extract_tar(stream(data), str(dest))
        assert (dest / name).read_bytes() == b"long"


def test_non_utf8_name(tmp_path):
    name = b"caf\xe9.dat".decode("utf-8", "surrogateescape")
    data = make_tar([entry(name, data=b"x")], fmt=tarfile.GNU_FORMAT)
    dest = tmp_path / "dest"
    dest.mkdir()
    _archive.extract_tar(stream(data), str(dest))
    assert os.listdir(str(dest).encode()) == [b"caf\xe9.dat"]


@needs_tar
def test_gnu_tar_archive_from_a_pipe(tmp_path):
    """The shape postgresql_backup writes: `tar -C DIR -cf - .`, read from a pipe."""
    source = tmp_path / "source"
    (source / "nested").mkdir(parents=True)
    (source / "toc.dat").write_bytes(b"TOC")
    (source / "nested" / "3001.dat").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    tar = subprocess.Popen(["tar", "-C", str(source), "-cf", "-", "."], stdout=subprocess.PIPE)
    members = _archive.check_tar(tar.stdout)
    assert tar.wait() == 0
    assert sorted(m.path for m in members) == ["", "nested", "nested/3001.dat", "toc.dat"]
    dest = tmp_path / "dest"
    dest.mkdir()
    tar = subprocess.Popen(["tar", "-C", str(source), "-cf", "-", "."], stdout=subprocess.PIPE)
    _archive.extract_tar(tar.stdout, str(dest))
    assert tar.wait() == 0
    assert (dest / "nested" / "3001.dat").read_bytes() == (source / "nested" / "3001.dat").read_bytes()


@needs_tar
def test_gnu_tar_symlink_is_refused(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "toc.dat").write_bytes(b"TOC")
    os.symlink("/etc/shadow", str(source / "3338.dat"))
    tar = subprocess.Popen(["tar", "-C", str(source), "-cf", "-", "."], stdout=subprocess.PIPE)
    with pytest.raises(ArchiveError, match=r"'\./3338\.dat', which is a symbolic link \(to '/etc/shadow'\)"):
        _archive.check_tar(tar.stdout)
    tar.stdout.close()
    tar.wait()


def test_every_cut_before_the_end_marker_is_caught():
    data = make_tar(GOOD)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = tar.getmembers()[-1]
        end = last.offset_data + (last.size + 511) // 512 * 512
    for cut in range(0, end, 61):
        with pytest.raises(ArchiveError):
            _archive.check_tar(stream(data[:cut]))
    assert len(_archive.check_tar(stream(data[:end + 512]))) == len(GOOD)
