# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Tar archives from a store are untrusted input: check every member, then extract.

A store may be written by someone who wants to attack the host that restores
from it. A tar member that is a symbolic link (``3338.dat -> /etc/shadow``), a
hard link, a device, a FIFO, an absolute path or a path with ``..`` would make
a restore read or write outside its work directory. So:

* ``check_tar(fileobj)`` reads a tar stream member by member (Python's
  ``tarfile`` in streaming mode: bounded memory, any size, any Python 3) and
  returns the members, or raises ArchiveError naming the first bad one. Only
  regular files and directories with plain relative names pass.
* ``extract_tar(fileobj, dest)`` extracts in Python, applying the same check to
  every member before writing it: what was checked is what is written, whatever
  ``tar`` implementation made the archive. Files and directories belong to the
  extracting user; setuid, setgid and sticky bits are dropped. No extraction
  filter of newer Pythons is relied upon.

Check first, then extract (two reads of the stream): nothing is extracted
from an archive that holds a bad member, and a stream that changes between
the two reads still cannot write anything unsafe.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError

__all__ = ["ArchiveError", "Member", "TarPolicy", "TreePolicy", "check_tar", "extract_tar", "extract_tree",
           "iter_checked"]

CHUNK = 1024 * 1024
# Longest path and path component the check accepts (Linux PATH_MAX and NAME_MAX, in bytes).
MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
MAX_DEPTH = 256

FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE)
_KIND_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


class ArchiveError(LifeboatError):
    """An archive holds a member that may not be extracted; ``member`` names it."""

    def __init__(self, message, member=None):
        super(ArchiveError, self).__init__(message)
        self.member = member


class Member(object):
    """One checked member: ``path`` is its normalised relative path ("" for the archive root)."""

    __slots__ = ("path", "kind", "size", "mode", "mtime")

    def __init__(self, path, kind, size, mode, mtime):
        self.path = path
        self.kind = kind
        self.size = size
        self.mode = mode
        self.mtime = mtime

    def as_dict(self):
        return {"path": self.path, "kind": self.kind, "size": self.size, "mode": self.mode}

    def __repr__(self):
        return "Member(%r, %r, %d)" % (self.path, self.kind, self.size)


def _quote(name):
    return repr(name)


def _capital(text):
    return text[:1].upper() + text[1:]


def _kind_of(info):
    if info.type in FILE_TYPES:
        return "file"
    if info.type == tarfile.DIRTYPE:
        return "dir"
    return None


def _describe_kind(info):
    kind = _KIND_NAMES.get(info.type)
    if kind is None:
        return "of tar type %r" % (info.type.decode("latin-1") if isinstance(info.type, bytes) else info.type)
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        return "%s (to %s)" % (kind, _quote(info.linkname))
    return kind


class TarPolicy(object):
    """The rules a member must follow, and what the members seen so far claimed.

    One policy object checks one archive: it remembers every path, so that a
    name seen twice, or a file that a later member treats as a directory, is refused.
    """

    def __init__(self, what="the archive", max_members=None, max_path_bytes=MAX_PATH_BYTES,
                 max_component_bytes=MAX_COMPONENT_BYTES, max_depth=MAX_DEPTH):
        self.what = what
        self.max_members = max_members
        self.max_path_bytes = max_path_bytes
        self.max_component_bytes = max_component_bytes
        self.max_depth = max_depth
        self.files = set()
        self.dirs = set([""])
        self.count = 0

    def refuse(self, name, reason):
        shown = name if len(name) <= 200 else name[:200] + "..."
        raise ArchiveError("%s holds member %s, which %s; refusing to extract it."
                           % (_capital(self.what), _quote(shown), reason), member=name)

    def normalise(self, name):
        """The plain relative path of ``name`` (components joined by "/"), or a refusal."""
        if not name:
            self.refuse(name, "has an empty name")
        if "\x00" in name:
            self.refuse(name, "has a NUL byte in its name")
        if name.startswith("/"):
            self.refuse(name, "is an absolute path")
        encoded = name.encode("utf-8", "surrogateescape")
        if len(encoded) > self.max_path_bytes:
            self.refuse(name, "has a name longer than %d bytes" % self.max_path_bytes)
        parts = []
        for part in name.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                self.refuse(name, "climbs out of the target directory with '..'")
            if len(part.encode("utf-8", "surrogateescape")) > self.max_component_bytes:
                self.refuse(name, "has a path component longer than %d bytes" % self.max_component_bytes)
            parts.append(part)
        if len(parts) > self.max_depth:
            self.refuse(name, "is nested deeper than %d directories" % self.max_depth)
        return "/".join(parts)

    def check(self, info):
        """Return the Member for a TarInfo, or raise ArchiveError."""
        self.count += 1
        if self.max_members is not None and self.count > self.max_members:
            self.refuse(info.name, "is beyond the limit of %d members" % self.max_members)
        path = self.normalise(info.name)
        kind = _kind_of(info)
        if kind is None:
            self.refuse(info.name, "is %s, not a regular file or directory" % _describe_kind(info))
        if path == "":
            if kind != "dir":
                self.refuse(info.name, "is a file that names the target directory itself")
            return Member(path, kind, 0, info.mode, info.mtime)
        parents = path.split("/")[:-1]
        for index in range(len(parents)):
            parent = "/".join(parents[:index + 1])
            if parent in self.files:
                self.refuse(info.name, "lies below %s, an earlier member that is a file" % _quote(parent))
        if path in self.files:
            self.refuse(info.name, "appears twice")
        if path in self.dirs and kind == "file":
            self.refuse(info.name, "is a file where an earlier member made a directory")
        for index in range(len(parents)):
            self.dirs.add("/".join(parents[:index + 1]))
        if kind == "file":
            self.files.add(path)
        else:
            self.dirs.add(path)
        return Member(path, kind, info.size if kind == "file" else 0, info.mode, info.mtime)


_HEADER_CUT = (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError)


class _TarInfo(tarfile.TarInfo):
    """Remembers a header cut short: tarfile takes that for the end of the archive."""

    @classmethod
    def fromtarfile(cls, tarfile):  # the name of the overridden method's parameter
        try:
            return super(_TarInfo, cls).fromtarfile(tarfile)
        except _HEADER_CUT:
            tarfile.lifeboat_truncated = True
            raise


def _open_stream(fileobj, what):
    try:
        return tarfile.open(fileobj=fileobj, mode="r|", bufsize=CHUNK, tarinfo=_TarInfo)
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError("%s is not a tar archive (%s)." % (_capital(what), exc))


def _members(tar, what):
    """TarInfo after TarInfo, forgetting each one: memory stays flat however many members there are."""
    while True:
        try:
            info = tar.next()
        except (tarfile.TarError, EOFError) as exc:
            raise ArchiveError("%s is damaged or truncated (%s)." % (_capital(what), exc))
        if info is None:
            if getattr(tar, "lifeboat_truncated", False):
                raise ArchiveError("%s is truncated: it ends before its end-of-archive marker." % _capital(what))
            return
        tar.members = []
        yield info


def _read_member(tar, info, what, sink=None):
    """Read (and write to ``sink``) a file member's data; a short read is a truncated archive."""
    source = tar.extractfile(info)
    if source is None:
        return
    remaining = info.size
    try:
        while remaining > 0:
            block = source.read(min(CHUNK, remaining))
            if not block:
                raise tarfile.ReadError("unexpected end of data")
            remaining -= len(block)
            if sink is not None:
                view = memoryview(block)
                while view:
                    view = view[os.write(sink, view):]
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError("%s is damaged or truncated in member %s (%s)."
                           % (_capital(what), _quote(info.name), exc), member=info.name)


def _drain(fileobj):
    """Read what follows the end-of-archive blocks, so that a producer writing into a pipe is not cut off."""
    while True:
        block = fileobj.read(CHUNK)
        if not block:
            return


def iter_checked(fileobj, policy=None, what="the archive"):
    """Yield a Member for each member of the tar stream ``fileobj``; raise ArchiveError at the first bad one.

    File data is read and discarded (so a truncated archive is caught too).
    """
    policy = policy or TarPolicy(what)
    tar = _open_stream(fileobj, policy.what)
    for info in _members(tar, policy.what):
        member = policy.check(info)
        if member.kind == "file":
            _read_member(tar, info, policy.what)
        yield member
    _drain(fileobj)


def check_tar(fileobj, what="the archive", **limits):
    """Check a whole tar stream; return its members (Member objects) or raise ArchiveError."""
    return list(iter_checked(fileobj, TarPolicy(what, **limits)))


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_dir(parent_fd, name, create):
    """Open directory ``name`` below ``parent_fd`` without following a symbolic link; create it if asked."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    os.mkdir(name, 0o700, dir_fd=parent_fd)
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


def _walk_to_parent(root_fd, path):
    """An fd of the directory that holds ``path`` (created as needed), and the last component."""
    parts = path.split("/")
    current = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            following = _open_dir(current, part, True)
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current, parts[-1]


def extract_tar(fileobj, dest, what="the archive", **limits):
    """Extract a tar stream into the existing directory ``dest``, checking each member first.

    Returns the members. Regular files get their archived permission bits
    without setuid, setgid and sticky bits (and at least owner read/write);
    directories too, applied once everything is written. Nothing is ever
    chowned: every file belongs to the user that extracts. Raises
    ArchiveError for a bad member (members before it may already be written:
    call check_tar first), LifeboatError when ``dest`` cannot be written.
    """
    policy = TarPolicy(what, **limits)
    tar = _open_stream(fileobj, policy.what)
    members = []
    dir_modes = []
    try:
        root_fd = os.open(dest, _DIR_FLAGS)
    except OSError as exc:
        raise LifeboatError("Cannot open the extraction directory %s: %s." % (dest, exc.strerror or exc))
    try:
        for info in _members(tar, policy.what):
            member = policy.check(info)
            members.append(member)
            if member.path == "":
                continue
            try:
                parent_fd, name = _walk_to_parent(root_fd, member.path)
                try:
                    if member.kind == "dir":
                        os.close(_open_dir(parent_fd, name, True))
                        dir_modes.append((member.path, (member.mode & 0o777) | 0o700, member.mtime))
                    else:
                        mode = (member.mode & 0o777) | 0o600
                        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent_fd)
                        try:
                            _read_member(tar, info, policy.what, sink=fd)
                            os.fchmod(fd, mode)
                            os.utime(fd, (member.mtime, member.mtime))
                        finally:
                            os.close(fd)
                finally:
                    os.close(parent_fd)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    policy.refuse(info.name, "would overwrite something already in %s" % dest)
                raise LifeboatError("Cannot extract %s into %s: %s." % (_quote(info.name), dest, exc.strerror or exc))
        _drain(fileobj)
        # Directory modes last (deepest first): a read-only directory must not stop its own extraction.
        for path, mode, mtime in sorted(dir_modes, key=lambda item: item[0].count("/"), reverse=True):
            try:
                parent_fd, name = _walk_to_parent(root_fd, path)
                try:
                    fd = _open_dir(parent_fd, name, False)
                    try:
                        os.fchmod(fd, mode)
                        os.utime(fd, (mtime, mtime))
                    finally:
                        os.close(fd)
                finally:
                    os.close(parent_fd)
            except OSError as exc:
                raise LifeboatError("Cannot set the mode of %s in %s: %s." % (_quote(path), dest, exc.strerror or exc))
    finally:
        os.close(root_fd)
    return members


# ------------------------------------------------------------------ file trees

TREE_LINK_TYPES = (tarfile.SYMTYPE, tarfile.LNKTYPE)
TREE_SPECIAL_TYPES = (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
GNU_DUMPDIR = b"D"


class TreePolicy(TarPolicy):
    """The rules for a file tree (a ``files_backup`` tar): links and, if asked, devices are data.

    On top of TarPolicy: a symbolic link is allowed when its target, read from
    the link's own directory, stays inside the target directory (an absolute
    target or one that climbs out is refused); no later member may lie below
    a symbolic link or replace one (nothing is written through a link); a hard
    link must name a plain relative path, not a directory, that lies below no
    symbolic link of the archive (an earlier member, or a file an earlier
    archive of the chain wrote; the walk to it on disk follows no link either); devices and FIFOs pass only with ``devices=True``. A GNU
    incremental directory (type ``D``) is a directory. A member may repeat a
    path (a tar appended to, or the same file dumped twice): the later one wins.
    """

    def __init__(self, what="the archive", devices=False, **limits):
        super(TreePolicy, self).__init__(what, **limits)
        self.devices = devices
        self.symlinks = set()

    def _below_symlink(self, path):
        parts = path.split("/")
        for index in range(1, len(parts)):
            if "/".join(parts[:index]) in self.symlinks:
                return "/".join(parts[:index])
        return None

    def check(self, info):
        self.count += 1
        if self.max_members is not None and self.count > self.max_members:
            self.refuse(info.name, "is beyond the limit of %d members" % self.max_members)
        path = self.normalise(info.name)
        if info.type in FILE_TYPES:
            kind = "file"
        elif info.type in (tarfile.DIRTYPE, GNU_DUMPDIR):
            kind = "dir"
        elif info.type == tarfile.SYMTYPE:
            kind = "symlink"
        elif info.type == tarfile.LNKTYPE:
            kind = "hardlink"
        elif info.type in TREE_SPECIAL_TYPES:
            if not self.devices:
                self.refuse(info.name, "is %s; restoring devices and FIFOs needs devices: true" % _describe_kind(info))
            kind = "special"
        else:
            self.refuse(info.name, "is %s, not a file, directory, link or device" % _describe_kind(info))
        if path == "":
            if kind != "dir":
                self.refuse(info.name, "is not a directory but names the target directory itself")
            return Member(path, kind, 0, info.mode, info.mtime)
        through = self._below_symlink(path)
        if through is not None:
            self.refuse(info.name, "would be written through the symbolic link %s" % _quote(through))
        if path in self.symlinks:
            self.refuse(info.name, "would replace the symbolic link %s written before it" % _quote(path))
        if kind == "symlink":
            self.check_symlink(info, path)
        elif kind == "hardlink":
            self.check_hardlink(info, path)
        parents = path.split("/")[:-1]
        for index in range(len(parents)):
            parent = "/".join(parents[:index + 1])
            if parent in self.files:
                self.refuse(info.name, "lies below %s, an earlier member that is not a directory" % _quote(parent))
            self.dirs.add(parent)
        if kind == "dir":
            if path in self.files:
                self.refuse(info.name, "is a directory where an earlier member is not one")
            self.dirs.add(path)
        else:
            if path in self.dirs:
                self.refuse(info.name, "is not a directory where an earlier member made one")
            self.files.add(path)
            if kind == "symlink":
                self.symlinks.add(path)
        return Member(path, kind, info.size if kind == "file" else 0, info.mode, info.mtime)

    def check_symlink(self, info, path):
        target = info.linkname
        if not target or "\x00" in target:
            self.refuse(info.name, "is a symbolic link with an empty or NUL-holding target")
        if target.startswith("/"):
            self.refuse(info.name, "is %s, which leads out of the target directory" % _describe_kind(info))
        depth = len(path.split("/")) - 1
        for part in target.split("/"):
            if part in ("", "."):
                continue
            depth += -1 if part == ".." else 1
            if depth < 0:
                self.refuse(info.name, "is %s, which leads out of the target directory" % _describe_kind(info))

    def check_hardlink(self, info, path):
        if not info.linkname:
            self.refuse(info.name, "is a hard link with an empty target")
        if info.linkname.startswith("/"):
            self.refuse(info.name, "is %s, which leads out of the target directory" % _describe_kind(info))
        for part in info.linkname.split("/"):
            if part == "..":
                self.refuse(info.name, "is %s, which leads out of the target directory" % _describe_kind(info))
        target = self.normalise_link(info)
        if not target or target in self.dirs or self._below_symlink(target) is not None:
            self.refuse(info.name, "is %s, which names no file of the target directory" % _describe_kind(info))

    def normalise_link(self, info):
        return "/".join(p for p in info.linkname.split("/") if p not in ("", "."))


def _dumpdir_names(info, data):
    """The names a GNU incremental directory lists (its ``GNU.dumpdir``), or None when it lists none."""
    raw = info.pax_headers.get("GNU.dumpdir")
    if raw is not None:
        raw = raw.encode("utf-8", "surrogateescape")
    elif info.type == GNU_DUMPDIR:
        raw = data
    if raw is None:
        return None
    names = set()
    for entry in raw.split(b"\x00"):
        if entry and entry[:1] in (b"Y", b"N", b"D"):
            names.add(entry[1:].decode("utf-8", "surrogateescape"))
    return names


def _walk(root_fd, parts, create):
    """A descriptor of directory ``parts`` below ``root_fd``, opened component by component, never through a link."""
    current = os.dup(root_fd)
    try:
        for part in parts:
            following = _open_dir(current, part, create)
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def _remove_entry(dir_fd, name):
    """Remove ``name`` (a file, link or whole directory tree) below ``dir_fd`` without following links."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _apply_xattrs(fd_or_name, info, dir_fd=None):
    """Set the extended attributes (ACLs included) a GNU tar ``--xattrs`` member carries; skip what the file system refuses."""
    skipped = 0
    for key, value in info.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        try:
            os.setxattr(fd_or_name, name, value.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP):
                skipped += 1
                continue
            raise
    return skipped


def _mtime_ns(info):
    """The member's mtime in nanoseconds: exact from a pax header, else from the (whole-second) tar field."""
    raw = info.pax_headers.get("mtime")
    if raw:
        whole, dummy, frac = raw.partition(".")
        try:
            return int(whole) * 1000000000 + (int((frac + "000000000")[:9]) if frac else 0) * (-1 if whole.startswith("-") else 1)
        except ValueError:
            pass
    return int(info.mtime) * 1000000000


class TreeExtraction(object):
    """What ``extract_tree`` did: the members written, the ones left out and the entries GNU incremental data removed."""

    def __init__(self):
        self.members = []
        self.written = 0
        self.bytes = 0
        self.removed = []
        self.left_out = []
        self.xattrs_skipped = 0


def extract_tree(fileobj, dest, what="the archive", select=None, owners=False, devices=False, purge=True,
                 **limits):
    """Extract a file-tree tar stream into the directory ``dest`` (which may hold an earlier member of a chain).

    Every member is checked by a TreePolicy before it is written; the walk to
    it opens each directory with ``O_NOFOLLOW``, so nothing is written through
    a link already on disk either. An entry already at a member's path is
    replaced (a later archive of a chain wins); a directory is kept and
    updated. ``select(path)`` (when given) says which members to write; the
    others are read and skipped. With ``owners`` (root) files keep their
    numeric owner, setuid/setgid/sticky bits and extended attributes (ACLs
    included); without, they belong to the extracting user and those bits are
    dropped. With ``purge``, a GNU incremental directory removes the entries
    of its directory it does not list (files deleted between two backups).
    Returns a TreeExtraction; raises ArchiveError naming the first bad member.
    """
    policy = TreePolicy(what, devices=devices, **limits)
    tar = _open_stream(fileobj, policy.what)
    done = TreeExtraction()
    dirs = []
    try:
        root_fd = os.open(dest, _DIR_FLAGS)
    except OSError as exc:
        raise LifeboatError("Cannot open the extraction directory %s: %s." % (dest, exc.strerror or exc))
    mode_mask = 0o7777 if owners else 0o777
    try:
        for info in _members(tar, policy.what):
            member = policy.check(info)
            done.members.append(member)
            wanted = select is None or member.path == "" or select(member.path)
            data = b""
            if info.type == GNU_DUMPDIR and info.size:
                if info.size > 64 * 1024 * 1024:
                    policy.refuse(info.name, "is a GNU incremental directory listing larger than 64 MiB")
                source = tar.extractfile(info)
                data = source.read(info.size) if source is not None else b""
            if not wanted:
                if member.kind == "file":
                    _read_member(tar, info, policy.what)
                done.left_out.append(member.path)
                continue
            parts = member.path.split("/") if member.path else []
            try:
                if member.kind == "dir":
                    fd = _walk(root_fd, parts, True)
                    try:
                        names = _dumpdir_names(info, data) if purge else None
                        if names is not None:
                            for present in sorted(os.listdir(fd)):
                                if present not in names:
                                    _remove_entry(fd, present)
                                    done.removed.append(present if not member.path else member.path + "/" + present)
                    finally:
                        os.close(fd)
                    dirs.append((parts, info))
                    continue
                parent_fd = _walk(root_fd, parts[:-1], True)
                name = parts[-1]
                try:
                    _remove_entry(parent_fd, name)
                    if member.kind == "file":
                        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent_fd)
                        try:
                            _read_member(tar, info, policy.what, sink=fd)
                            done.bytes += info.size
                            if owners:
                                os.fchown(fd, info.uid, info.gid)
                                done.xattrs_skipped += _apply_xattrs(fd, info)
                            os.fchmod(fd, info.mode & mode_mask)
                            os.utime(fd, ns=(_mtime_ns(info), _mtime_ns(info)))
                        finally:
                            os.close(fd)
                    elif member.kind == "symlink":
                        os.symlink(info.linkname, name, dir_fd=parent_fd)
                        if owners:
                            os.chown(name, info.uid, info.gid, dir_fd=parent_fd, follow_symlinks=False)
                        os.utime(name, ns=(_mtime_ns(info), _mtime_ns(info)), dir_fd=parent_fd, follow_symlinks=False)
                    elif member.kind == "hardlink":
                        target = policy.normalise_link(info).split("/")
                        source_fd = _walk(root_fd, target[:-1], False)
                        try:
                            os.link(target[-1], name, src_dir_fd=source_fd, dst_dir_fd=parent_fd,
                                    follow_symlinks=False)
                        finally:
                            os.close(source_fd)
                    else:
                        kinds = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
                                 tarfile.FIFOTYPE: stat.S_IFIFO}
                        os.mknod(name, kinds[info.type] | (info.mode & 0o777),
                                 os.makedev(info.devmajor, info.devminor), dir_fd=parent_fd)
                        if owners:
                            os.chown(name, info.uid, info.gid, dir_fd=parent_fd, follow_symlinks=False)
                        os.utime(name, ns=(_mtime_ns(info), _mtime_ns(info)), dir_fd=parent_fd, follow_symlinks=False)
                    done.written += 1
                finally:
                    os.close(parent_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    policy.refuse(info.name, "would be written through a symbolic link or a file in %s" % dest)
                raise LifeboatError("Cannot extract %s into %s: %s." % (_quote(info.name), dest, exc.strerror or exc))
        _drain(fileobj)
        # Directory metadata last, deepest first: a read-only directory must not stop its own extraction.
        for parts, info in sorted(dirs, key=lambda item: len(item[0]), reverse=True):
            try:
                fd = _walk(root_fd, parts, False)
                try:
                    if owners:
                        os.fchown(fd, info.uid, info.gid)
                        done.xattrs_skipped += _apply_xattrs(fd, info)
                    os.fchmod(fd, (info.mode & mode_mask) | (0 if owners else 0o700))
                    os.utime(fd, ns=(_mtime_ns(info), _mtime_ns(info)))
                finally:
                    os.close(fd)
            except OSError as exc:
                raise LifeboatError("Cannot set the metadata of %s in %s: %s."
                                    % (_quote("/".join(parts) or "."), dest, exc.strerror or exc))
    finally:
        os.close(root_fd)
    return done
