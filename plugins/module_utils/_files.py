# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""File trees: GNU tar chains through the core's pipeline, and their safe restore.

Backup (``method: tar``): ``TarEngine`` is a BackupJob engine. It streams
``tar --listed-incremental`` through the core's codec into any store; the
type (full, incremental, differential, auto) and the parent are resolved by
the core. The tar state (``.snar``) after each set is kept in the store's
object namespace as ``tar/<set_id>.snar`` and its SHA-256 goes into the set's
manifest, so a host rebuilt from scratch continues the chain from the store
alone, and a state altered in the store is refused.

Restore: ``TreeRestore`` is a RestoreJob engine. Each member of the chain,
full first, is extracted by ``_archive.extract_tree`` into a private staging
directory inside the target (so nothing reaches the target before the whole
chain extracted cleanly, and the final moves are renames); then the staging
tree is merged into the target under the ``overwrite`` policy, and what was
replaced is listed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
import tempfile

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores

ENGINE = "files"
TAR_PAYLOAD = "files.tar"
STATE_PREFIX = "tar/"
C_LOCALE = {"LANG": "C", "LC_ALL": "C"}
OVERWRITE = ("never", "if_changed", "always")
# Paths listed in a result (replaced, kept): the rest is counted.
MAX_LISTED = 1000
STAGING_PREFIX = ".lifeboat-restore-"


class FilesError(LifeboatError):
    """A file-tree backup or restore cannot go on; the message says why."""


def state_object(set_id):
    """The object that holds the tar state after set ``set_id``."""
    return STATE_PREFIX + set_id + ".snar"


def check_source_dir(path):
    """The absolute source directory, or one sentence saying why it cannot be backed up."""
    if not path or not os.path.isabs(path):
        raise FilesError("path must be an absolute directory, not %r." % (path,))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FilesError("The source directory %s does not exist." % path)
    except OSError as exc:
        raise FilesError("Cannot read the source directory %s: %s." % (path, exc.strerror or exc))
    if not stat.S_ISDIR(st.st_mode):
        raise FilesError("The source %s is not a directory." % path)
    if not os.access(path, os.R_OK | os.X_OK):
        raise FilesError("Permission denied reading the source directory %s." % path)
    return os.path.normpath(path)


def tar_argv(tar_bin, source, snar, excludes=(), one_file_system=False, xattrs=True):
    """The GNU tar command that writes the tree ``source`` as a listed-incremental archive to stdout."""
    argv = [tar_bin, "--create", "--file=-", "--directory=%s" % source, "--listed-incremental=%s" % snar,
            "--format=posix", "--sparse", "--no-check-device"]
    if xattrs:
        argv += ["--xattrs", "--xattrs-include=*", "--acls"]
    if one_file_system:
        argv.append("--one-file-system")
    for pattern in excludes:
        argv.append("--exclude=%s" % pattern)
    argv.append(".")
    return argv


def copy_hashed(reader, path):
    """Copy ``reader`` into a new local file ``path``; return its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        while True:
            block = reader.read(_stores.CHUNK)
            if not block:
                break
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(_stores.CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def explain_tar(stderr, source):
    """One sentence for a failed GNU tar run."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    for line in lines:
        if "file changed as we read it" in line:
            return ("tar reported a file that changed while it was read (%s); the archive may be inconsistent, "
                    "so the set was not written. Back up a quiescent tree or a file-system snapshot."
                    % line.split(":", 1)[-1].strip())
        if "Permission denied" in line:
            return "tar cannot read part of %s: %s" % (source, line)
        if "Cannot open" in line or "Cannot stat" in line:
            return "tar cannot read part of %s: %s" % (source, line)
    return "tar failed on %s: %s" % (source, lines[-1] if lines else "no output")


class TarEngine(object):
    """The BackupJob engine of ``files_backup`` with ``method: tar``."""

    def __init__(self, store, source_dir, tar_bin, excludes=(), one_file_system=False, xattrs=True):
        self.store = store
        self.source_dir = source_dir
        self.tar_bin = tar_bin
        self.excludes = list(excludes or [])
        self.one_file_system = one_file_system
        self.xattrs = xattrs
        self.snar = None
        self.versions = {}

    def argv(self, snar="<workspace>/state.snar"):
        return tar_argv(self.tar_bin, self.source_dir, snar, self.excludes, self.one_file_system, self.xattrs)

    # ------------------------------------------------------------ _jobs.run_backup_module hooks

    def describe(self, codec):
        return _pipeline.describe([_pipeline.Stage("tar", self.argv())] + codec.stages())

    def tool_versions(self, codec):
        """GNU tar is needed for --listed-incremental; its version line goes in the manifest."""
        module = codec.module
        tar_version = _jobs.version_line(module, self.tar_bin)
        if "GNU tar" not in tar_version:
            raise FilesError("method tar needs GNU tar (--listed-incremental); %s is %s." % (self.tar_bin, tar_version))
        versions = {"tar": tar_version}
        versions.update(codec.versions(module))
        return versions

    def result(self, manifest, extras):
        return {"tool_versions": manifest.get("tool_versions")}

    def prepare(self, ctx):
        """Fetch the parent's tar state from the store (checked against the parent's manifest)."""
        self.snar = os.path.join(ctx.workspace, "state.snar")
        parent = ctx.parent
        if parent is None:
            return
        name = state_object(parent["set_id"])
        expected = (parent.get("options") or {}).get("tar_state_sha256")
        host, source = ctx.job.host, ctx.job.source
        try:
            reader = self.store.open_object(host, source, name)
        except FileNotFoundError:
            raise FilesError("The tar state of set %s (object %s) is missing from the store, so a %s set cannot "
                             "build on it; write a full set (type: full)." % (parent["set_id"], name, ctx.type))
        try:
            digest = copy_hashed(reader, self.snar)
        finally:
            reader.close()
        if digest != expected:
            raise FilesError("The tar state of set %s (object %s) does not match the SHA-256 its manifest records; "
                             "it was altered in the store. Write a full set (type: full)." % (parent["set_id"], name))

    def produce(self, ctx):
        env = dict(os.environ, **C_LOCALE)
        yield _jobs.Payload(TAR_PAYLOAD, [_pipeline.Stage("tar", self.argv(self.snar))], env=env)

    def record(self, ctx, manifest):
        """Keep the new tar state beside the set, and note its SHA-256 in the manifest."""
        digest = file_sha256(self.snar)
        with open(self.snar, "rb") as reader:
            self.store.put_object(ctx.job.host, ctx.job.source, state_object(ctx.set_id), reader)
        manifest["options"] = {
            "payload": [f["name"] for f in manifest["files"] if f["role"] == "payload"][0],
            "path": self.source_dir,
            "exclude": list(self.excludes),
            "one_file_system": self.one_file_system,
            "xattrs": self.xattrs,
            "tar_state": state_object(ctx.set_id),
            "tar_state_sha256": digest,
        }
        manifest["tool_versions"] = dict(self.versions)

    def explain(self, exc):
        if exc.stage == "tar":
            return FilesError(explain_tar(exc.stderr, self.source_dir))
        return None


# ------------------------------------------------------------------ restore

def make_selector(paths):
    """A ``select(path)`` for extract_tree from ``paths`` (relative paths or fnmatch patterns), or None for all.

    A plain path selects itself, what lies below it and the directories above
    it; a pattern (holding ``*``, ``?`` or ``[``) selects the paths it matches
    as a whole (``*`` also matches ``/``) and what lies below them.
    """
    if not paths:
        return None
    plain, patterns = [], []
    for entry in paths:
        cleaned = "/".join(p for p in str(entry).split("/") if p not in ("", "."))
        if not cleaned or ".." in cleaned.split("/"):
            raise FilesError("paths entry %r is not a relative path inside the tree." % (entry,))
        (patterns if any(c in cleaned for c in "*?[") else plain).append(cleaned)

    def select(path):
        for entry in plain:
            if path == entry or path.startswith(entry + "/") or entry.startswith(path + "/"):
                return True
        parts = path.split("/")
        for pattern in patterns:
            for index in range(1, len(parts) + 1):
                if fnmatch.fnmatchcase("/".join(parts[:index]), pattern):
                    return True
        return False
    return select


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _hash_at(dir_fd, name):
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        digest = hashlib.sha256()
        while True:
            block = os.read(fd, _stores.CHUNK)
            if not block:
                return digest.hexdigest()
            digest.update(block)
    finally:
        os.close(fd)


def same_entry(src_fd, dst_fd, name, sst, dst, owners):
    """True when the target's entry equals the restored one (type, content or link target, mode, owner)."""
    if stat.S_IFMT(sst.st_mode) != stat.S_IFMT(dst.st_mode) or stat.S_IMODE(sst.st_mode) != stat.S_IMODE(dst.st_mode):
        return False
    if owners and (sst.st_uid, sst.st_gid) != (dst.st_uid, dst.st_gid):
        return False
    if stat.S_ISLNK(sst.st_mode):
        return os.readlink(name, dir_fd=src_fd) == os.readlink(name, dir_fd=dst_fd)
    if stat.S_ISREG(sst.st_mode):
        return sst.st_size == dst.st_size and _hash_at(src_fd, name) == _hash_at(dst_fd, name)
    if stat.S_ISCHR(sst.st_mode) or stat.S_ISBLK(sst.st_mode):
        return sst.st_rdev == dst.st_rdev
    return True


class MergeReport(object):
    def __init__(self):
        self.placed = 0
        self.replaced = []
        self.kept = []
        self.unchanged = 0
        self.replaced_count = 0
        self.kept_count = 0

    def add(self, which, path):
        if which == "replaced":
            self.replaced_count += 1
            if len(self.replaced) < MAX_LISTED:
                self.replaced.append(path)
        else:
            self.kept_count += 1
            if len(self.kept) < MAX_LISTED:
                self.kept.append(path)


def merge_tree(src_fd, dst_fd, overwrite, owners, report, prefix="", skip=None):
    """Move every entry of directory ``src_fd`` into ``dst_fd`` (renames), under the overwrite policy.

    Both walks open directories with O_NOFOLLOW: a link in the target is an
    entry like any other and is never followed. Directories present on both
    sides are merged; anything else already in the target is left
    (``never``), replaced when it differs (``if_changed``) or replaced
    (``always``).
    """
    for name in sorted(os.listdir(src_fd)):
        if skip is not None and name == skip:
            continue
        path = prefix + name
        sst = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        try:
            dst = os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
        except FileNotFoundError:
            dst = None
        if dst is None:
            os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            report.placed += 1
            continue
        if stat.S_ISDIR(sst.st_mode) and stat.S_ISDIR(dst.st_mode):
            child_src = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
            try:
                child_dst = os.open(name, _DIR_FLAGS, dir_fd=dst_fd)
                try:
                    merge_tree(child_src, child_dst, overwrite, owners, report, path + "/")
                    if overwrite == "always" or (overwrite == "if_changed" and not same_entry(
                            src_fd, dst_fd, name, sst, dst, owners)):
                        if owners:
                            os.fchown(child_dst, sst.st_uid, sst.st_gid)
                        os.fchmod(child_dst, stat.S_IMODE(sst.st_mode))
                        os.utime(child_dst, ns=(sst.st_atime_ns, sst.st_mtime_ns))
                finally:
                    os.close(child_dst)
            finally:
                os.close(child_src)
            continue
        if overwrite == "never":
            report.add("kept", path)
            continue
        if overwrite == "if_changed" and same_entry(src_fd, dst_fd, name, sst, dst, owners):
            report.unchanged += 1
            continue
        if stat.S_ISDIR(dst.st_mode):
            shutil.rmtree(name, dir_fd=dst_fd)
        os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        report.add("replaced", path)


def visible_entries(path):
    """Entries of directory ``path`` other than restore staging directories."""
    return [name for name in os.listdir(path) if not name.startswith(STAGING_PREFIX)]


class TreeRestore(object):
    """The RestoreJob engine of ``files_restore``: a tar chain extracted safely, then merged into ``target``."""

    def __init__(self, target, paths=None, overwrite="never", allow_nonempty=False, owners=None, devices=False):
        if overwrite not in OVERWRITE:
            raise FilesError("overwrite must be one of %s, not %r." % (", ".join(OVERWRITE), overwrite))
        if not target or not os.path.isabs(target):
            raise FilesError("target must be an absolute directory, not %r." % (target,))
        self.target = os.path.normpath(target)
        self.select = make_selector(paths)
        self.paths = list(paths or [])
        self.overwrite = overwrite
        self.allow_nonempty = allow_nonempty
        self.owners = (os.geteuid() == 0) if owners is None else owners
        self.devices = devices
        self.staging = None
        self.created_target = False
        self.nonempty = False
        self.extracted = 0
        self.removed = 0
        self.left_out = 0
        self.xattrs_skipped = 0
        self.report = MergeReport()

    def preconditions(self, job):
        for member in job.chain:
            if member["engine"] != ENGINE or member["method"] != "tar":
                raise FilesError("Set %s was written by %s/%s, not by files_backup with method tar; restore it with "
                                 "its own module." % (member["set_id"], member["engine"], member["method"]))
        try:
            st = os.lstat(self.target)
        except FileNotFoundError:
            parent = os.path.dirname(self.target)
            if not os.path.isdir(parent):
                raise FilesError("The target's parent directory %s does not exist; create it first." % parent)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise FilesError("The target %s exists and is not a directory%s." % (
                self.target, " (it is a symbolic link)" if stat.S_ISLNK(st.st_mode) else ""))
        entries = visible_entries(self.target)
        self.nonempty = bool(entries)
        if entries and not self.allow_nonempty:
            raise FilesError("The target %s is not empty (%d entries, e.g. %s); set allow_nonempty: true to restore "
                             "into it (overwrite then decides what happens to files already there)."
                             % (self.target, len(entries), sorted(entries)[0]))

    def _start(self):
        if self.staging is not None:
            return
        try:
            os.mkdir(self.target, 0o700)
            self.created_target = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise FilesError(_stores.describe_os_error(exc, "the target %s" % self.target))
        self.staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.target)

    def consume(self, job, member):
        self._start()
        name = member["options"].get("payload") or [f["name"] for f in member["files"] if f["role"] == "payload"][0]
        what = "the payload %s of set %s" % (name, member["set_id"])

        def extract(stream):
            return _archive.extract_tree(stream, self.staging, what=what, select=self.select, owners=self.owners,
                                         devices=self.devices)
        try:
            done = job.read(member, name, extract)
        except BaseException:
            self.discard()
            raise
        self.extracted += done.written
        self.removed += len(done.removed)
        self.left_out += len(done.left_out)
        self.xattrs_skipped += done.xattrs_skipped

    def finalise(self, job):
        if self.staging is None:
            return
        if self.select is not None and self.extracted == 0:
            self.discard()
            raise FilesError("paths %s selected nothing in set %s." % (", ".join(self.paths), job.manifest["set_id"]))
        try:
            src_fd = os.open(self.staging, _DIR_FLAGS)
            try:
                dst_fd = os.open(self.target, _DIR_FLAGS)
                try:
                    root = os.fstat(src_fd)  # before the moves below change its mtime
                    merge_tree(src_fd, dst_fd, self.overwrite, self.owners, self.report,
                               skip=os.path.basename(self.staging))
                    self.discard()
                    if not self.nonempty:
                        # The target's own metadata last: removing the staging directory changed its mtime.
                        if self.owners:
                            os.fchown(dst_fd, root.st_uid, root.st_gid)
                        os.fchmod(dst_fd, stat.S_IMODE(root.st_mode))
                        os.utime(dst_fd, ns=(root.st_atime_ns, root.st_mtime_ns))
                finally:
                    os.close(dst_fd)
            finally:
                os.close(src_fd)
        except OSError as exc:
            raise FilesError(_stores.describe_os_error(exc, "the target %s" % self.target))
        finally:
            self.discard()

    def discard(self):
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def details(self):
        return dict(
            target=self.target,
            restored=self.extracted,
            removed_by_chain=self.removed,
            left_out=self.left_out,
            placed=self.report.placed,
            replaced=self.report.replaced,
            replaced_count=self.report.replaced_count,
            kept=self.report.kept,
            kept_count=self.report.kept_count,
            unchanged=self.report.unchanged,
            xattrs_skipped=self.xattrs_skipped,
        )


def restore_engine(manifest, module, params):
    """The RestoreJob engine for a files set (tar chain or rsync snapshot)."""
    if manifest["engine"] != ENGINE:
        raise FilesError("Set %s was made by %s, not files_backup; use that engine's restore module."
                         % (manifest["set_id"], manifest["engine"]))
    options = dict(target=params["target"], paths=params["paths"], overwrite=params["overwrite"],
                   allow_nonempty=params["allow_nonempty"], devices=params["devices"])
    if manifest["method"] != "tar":
        raise FilesError("Set %s was written with method %s, which files_restore cannot restore yet."
                         % (manifest["set_id"], manifest["method"]))
    return TreeRestore(**options)
