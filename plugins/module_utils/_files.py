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
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _runner
from ansible_collections.lifeboat.backup.plugins.module_utils import _trees
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


# ------------------------------------------------------------------ rsync snapshots

RSYNC_METHOD = "rsync_snapshot"
TREE_NAME = "tree"
TREE_INDEX = "tree.index"
TREE_LINKS = _trees.links_name(TREE_NAME)
# The itemized-change line of rsync's --out-format=%i: YXcstpoguax (update type, file type, 9 attributes).
ITEMIZED_RE = re.compile(r"^([<>ch.*][fdLDS].{9}|\*deleting  ) (.*)$")
BWLIMIT_RE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGkmg]?\Z")
# rsync exit codes that mean the tree is usable: 24 is "some source files vanished" during the run.
RSYNC_VANISHED = 24
RSYNC_MESSAGES = {
    1: "rsync refused its arguments (a syntax or usage error)",
    3: "rsync could not select the files (an error in the include or exclude patterns, or a missing directory)",
    5: "rsync could not start its transfer",
    10: "rsync hit a socket or connection error",
    11: "rsync hit an I/O error writing into the store",
    12: "rsync hit a protocol error (the data stream broke off)",
    20: "rsync was interrupted by a signal",
    23: "rsync could not copy every file (some files could not be read or written)",
    30: "rsync timed out",
}


class Itemized(object):
    """What rsync's itemized output and --stats said about one run."""

    def __init__(self):
        self.changes = 0
        self.listed = []
        self.stats = {}

    def feed(self, line):
        line = line.rstrip("\n")
        found = ITEMIZED_RE.match(line)
        if found is not None:
            path = found.group(2)
            if path in ("./", "."):
                return
            self.changes += 1
            if len(self.listed) < MAX_LISTED:
                self.listed.append("%s %s" % (found.group(1).strip(), path))
            return
        if ":" in line:
            key, value = line.split(":", 1)
            number = value.strip().split(" ", 1)[0].replace(",", "")
            if number.isdigit():
                self.stats[key.strip()] = int(number)


def parse_itemized(lines):
    """An Itemized from rsync's output lines (``--out-format=%i %n%L --stats``)."""
    found = Itemized()
    for line in lines:
        found.feed(line)
    return found


def rsync_argv(rsync_bin, source, dest, link_dests=(), excludes=(), includes=(), one_file_system=False,
               bwlimit=None, checksum=False, xattrs=True, dry_run=False, rsh=None):
    """The rsync command that makes ``dest`` a snapshot of ``source``, hard-linking what ``link_dests`` hold.

    With ``rsh`` (a store's ssh command) ``dest`` is ``host:/path`` and the link-dests are paths on that host;
    --protect-args hands every path to the remote rsync as data, never to the remote shell.
    """
    argv = [rsync_bin, "--archive", "--hard-links", "--numeric-ids", "--no-devices", "--no-specials",
            "--modify-window=-1", "--out-format=%i %n%L", "--stats"]
    if rsh:
        argv += ["--protect-args", "--rsh=%s" % rsh]
    if xattrs and not dry_run:  # rsync's dry run with --xattrs fails on directories it would create
        argv += ["--xattrs", "--acls"]
    if one_file_system:
        argv.append("--one-file-system")
    if checksum:
        argv.append("--checksum")
    if bwlimit:
        argv.append("--bwlimit=%s" % bwlimit)
    if dry_run:
        argv.append("--dry-run")
    for pattern in includes:
        argv.append("--include=%s" % pattern)
    for pattern in excludes:
        argv.append("--exclude=%s" % pattern)
    for path in link_dests:
        argv.append("--link-dest=%s" % path)
    argv += ["--", source.rstrip("/") + "/", dest.rstrip("/") + "/"]
    return argv


def explain_rsync(rc, stderr, source):
    """One sentence for a failed rsync run."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip() and not line.startswith("rsync error:")]
    for line in lines:
        if "No space left on device" in line or "Disk quota exceeded" in line:
            return "The store is full: rsync could not write the snapshot (%s); the set was not written." % line
    what = RSYNC_MESSAGES.get(rc, "rsync failed with exit code %s" % rc)
    detail = lines[0] if lines else "no message"
    return "%s while copying %s: %s; the set was not written." % (what, source, detail)


class RsyncEngine(object):
    """The BackupJob engine of ``files_backup`` with ``method: rsync_snapshot``.

    Each set holds one tree (``tree/``), a complete browsable copy of the
    source written by rsync in place inside the partial set, with unchanged
    files hard-linked to the previous snapshot's tree (``--link-dest``) and to
    the tree an interrupted run left (so the next run resumes from it). After
    rsync the tree is walked by descriptor: its index lists every file with
    its SHA-256 and its links file every symbolic link. A file rsync
    hard-linked to the previous snapshot keeps that snapshot's SHA-256 from
    its index (the bytes are the same inode), so a file altered in the store
    since is caught by verify instead of being vouched for again.
    """

    set_type = "full"

    def __init__(self, store, source_dir, rsync_bin, excludes=(), includes=(), one_file_system=False,
                 bwlimit=None, checksum=False, xattrs=True, runner=None, warn=None):
        if bwlimit is not None and not BWLIMIT_RE.match(str(bwlimit)):
            raise FilesError("bwlimit must be a rate in KiB/s such as 5000 or 20m, not %r." % (bwlimit,))
        self.store = store
        self.source_dir = source_dir
        self.rsync_bin = rsync_bin
        self.excludes = list(excludes or [])
        self.includes = list(includes or [])
        self.one_file_system = one_file_system
        self.bwlimit = str(bwlimit) if bwlimit is not None else None
        self.checksum = checksum
        self.xattrs = xattrs
        self.runner = runner or _runner.Runner()
        self.versions = {}
        self.previous = None
        self.itemized = None
        self.lists = None
        self.warn = warn or (lambda message: None)
        self.handles = []

    def argv(self, dest="<set>/tree", link_dests=("<previous set>/tree",), dry_run=False, rsh=None):
        return rsync_argv(self.rsync_bin, self.source_dir, dest, link_dests, self.excludes, self.includes,
                          self.one_file_system, self.bwlimit, self.checksum, self.xattrs, dry_run, rsh)

    def describe(self, codec=None):
        return [self.argv()]

    def tool_versions(self, codec=None):
        out = self.runner.run([self.rsync_bin, "--version"])[1]
        return {"rsync": (out.splitlines() or ["unknown"])[0].strip()}

    # -------------------------------------------------------------- the previous snapshot
    def find_previous(self, manifests):
        """The newest complete snapshot of this source (not future-dated), or None."""
        usable = [m for m in _catalog.split_future(manifests)[0]
                  if m["engine"] == ENGINE and m["method"] == RSYNC_METHOD
                  and any(t["name"] == TREE_NAME for t in m.get("trees") or [])]
        return max(usable, key=lambda m: m["set_id"]) if usable else None

    def _open_previous(self, host, source):
        if self.previous is None:
            return None
        handle = self.store.tree_path(host, source, self.previous["set_id"], TREE_NAME)
        if handle is not None:
            self.handles.append(handle)
        return handle

    def run_rsync(self, argv):
        """Run rsync, feeding its output to an Itemized line by line; return (rc, stderr, itemized)."""
        env = dict(os.environ, **C_LOCALE)
        proc = self.runner.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env)
        errors = []

        def drain():
            errors.append(proc.stderr.read())
        thread = threading.Thread(target=drain)
        thread.daemon = True
        thread.start()
        itemized = Itemized()
        for raw in proc.stdout:
            itemized.feed(raw.decode("utf-8", "backslashreplace"))
        rc = proc.wait()
        thread.join()
        return rc, b"".join(errors).decode("utf-8", "replace"), itemized

    def changed(self, itemized, previous):
        """Whether the snapshot differs from ``previous``: an itemized change, or a different number of entries."""
        if previous is None:
            return True
        if itemized.changes:
            return True
        return itemized.stats.get("Number of files") != (previous.get("options") or {}).get("rsync_entries")

    # -------------------------------------------------------------- check mode
    def check_result(self, decision):
        """rsync --dry-run against the previous snapshot: what a run would change (``decision["job"]``: the job)."""
        job = decision["job"]
        host, source = job.host, job.source
        self.previous = self.find_previous(job.existing())
        handle = self._open_previous(host, source)
        workspace = _jobs.make_workspace(job.work_dir, "lifeboat-check-")
        try:
            dest = os.path.join(workspace, "dry-run")
            rsh = getattr(handle, "rsh", None)
            if rsh:  # a tree on a remote store: the dry run goes there, beside the previous snapshot
                dest = handle.check_destination
            rc, stderr, itemized = self.run_rsync(self.argv(dest, [handle.path] if handle else [], dry_run=True,
                                                            rsh=rsh))
        finally:
            self.release(None)
            shutil.rmtree(workspace, ignore_errors=True)
        if rc not in (0, RSYNC_VANISHED):
            raise FilesError(explain_rsync(rc, stderr, self.source_dir))
        return dict(changed=self.changed(itemized, self.previous), would_change=itemized.listed,
                    would_change_count=itemized.changes,
                    previous_set_id=self.previous["set_id"] if self.previous else None)

    # -------------------------------------------------------------- the BackupJob hooks
    def prepare(self, ctx):
        self.previous = self.find_previous(ctx.job.existing())

    def produce(self, ctx):
        host, source = ctx.job.host, ctx.job.source
        target = ctx.tree(TREE_NAME)
        links = []
        handle = self._open_previous(host, source)
        if handle is not None:
            links.append(handle.path)
        if target.resume:
            links.append(target.resume)
        argv = self.argv(target.path, links, rsh=getattr(target, "rsh", None))
        rc, stderr, self.itemized = self.run_rsync(argv)
        if rc == RSYNC_VANISHED:
            self.warn("Some files of %s vanished while rsync copied them; the snapshot holds the rest."
                      % self.source_dir)
        elif rc != 0:
            raise FilesError(explain_rsync(rc, stderr, self.source_dir))
        index_path = os.path.join(ctx.workspace, TREE_INDEX)
        links_path = os.path.join(ctx.workspace, TREE_LINKS)
        if hasattr(target, "write_lists"):
            # A tree on a remote store: the store walks and hashes it where it is.
            previous = None
            if self.previous is not None:
                tree = [t for t in self.previous["trees"] if t["name"] == TREE_NAME][0]
                previous = (self.previous["set_id"], TREE_NAME, tree["index"])
            self.lists = target.write_lists(index_path, links_path, previous)
        else:
            self.lists = self.write_lists(ctx, target.path, index_path, links_path)
        if self.lists.specials:
            raise FilesError("The snapshot of %s holds %s, which is neither a file, a directory nor a link; rsync "
                             "was told to skip such entries." % (self.source_dir, self.lists.specials[0]))
        yield _jobs.Payload(TREE_INDEX, [_pipeline.Stage("cat", ["cat", "--", index_path])], role="index", raw=True)
        yield _jobs.Payload(TREE_LINKS, [_pipeline.Stage("cat", ["cat", "--", links_path])], role="meta", raw=True)

    def write_lists(self, ctx, tree_path, index_path, links_path):
        """Walk the new tree and write its index and links file (SHA-256 reused for files linked to the previous)."""
        fd = os.open(tree_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with open(index_path, "wb") as index_out, open(links_path, "wb") as links_out:
                previous = self._known(ctx)
                try:
                    return _trees.write_lists(fd, index_out, links_out, previous.same if previous else None)
                finally:
                    if previous is not None:
                        previous.close()
        except OSError as exc:
            raise FilesError(_stores.describe_os_error(exc, "the new snapshot tree"))
        finally:
            os.close(fd)

    def _known(self, ctx):
        """The previous snapshot's tree and index (``_trees.Previous``): its SHA-256 for files that are the very
        same inode; or None."""
        previous = self.previous
        if previous is None:
            return None
        tree = [t for t in previous["trees"] if t["name"] == TREE_NAME][0]
        host, source = ctx.job.host, ctx.job.source
        try:
            root = self.store.open_tree(host, source, previous["set_id"], TREE_NAME)
        except (OSError, _stores.StoreError):
            return None
        try:
            reader = _stores.line_reader(self.store.open_payload(host, source, previous["set_id"], tree["index"]))
        except (OSError, _stores.StoreError):
            os.close(root)
            return None
        return _trees.Previous(root, reader)

    def record(self, ctx, manifest):
        lists, itemized = self.lists, self.itemized
        _manifest.add_tree(manifest, TREE_NAME, TREE_INDEX, lists.files, lists.bytes)
        stats = itemized.stats
        manifest["options"] = {
            "path": self.source_dir,
            "tree": TREE_NAME,
            "exclude": list(self.excludes),
            "include": list(self.includes),
            "one_file_system": self.one_file_system,
            "checksum": self.checksum,
            "xattrs": self.xattrs,
            "bwlimit": self.bwlimit,
            "link_dest": self.previous["set_id"] if self.previous else None,
            "files": lists.files,
            "links": lists.links,
            "dirs": lists.dirs,
            "total_bytes": lists.bytes,
            "bytes_transferred": stats.get("Total transferred file size", 0),
            "literal_bytes": stats.get("Literal data", 0),
            "rsync_entries": stats.get("Number of files"),
            "changes": itemized.changes,
            "changed": self.changed(itemized, self.previous),
        }
        manifest["tool_versions"] = dict(self.versions)

    def result(self, manifest, extras):
        options = manifest.get("options") or {}
        out = dict(changed=bool(options.get("changed", True)) and not extras.get("skipped"),
                   files_count=options.get("files"), total_bytes=options.get("total_bytes"),
                   bytes_transferred=options.get("bytes_transferred"), previous_set_id=options.get("link_dest"))
        if self.itemized is not None:
            out["changes"] = self.itemized.listed
            out["changes_count"] = self.itemized.changes
        return out

    def release(self, ctx):
        for handle in self.handles:
            handle.close()
        self.handles = []

    def explain(self, exc):
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
        self.check_target()

    def check_target(self):
        """The target is absent (its parent exists) or an empty directory, unless allow_nonempty says otherwise."""
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


class SnapshotRestore(TreeRestore):
    """The RestoreJob engine of ``files_restore`` for an rsync snapshot set.

    The core's verify has already re-hashed the tree; the copy checks again
    what it copies, in the same read: every file is hashed while it is copied
    into the staging directory and must match the index, every link must match
    the links file, and anything else in the tree (an unlisted entry, a FIFO,
    a device, a link where a file is listed) stops the restore with a sentence
    naming it. Links follow the tar restore's rules (no absolute target, none
    that climbs out). Files that are one inode in the store are restored as
    hard links; owners (as root), modes, times and extended attributes are kept.
    """

    def preconditions(self, job):
        member = job.manifest
        if member["engine"] != ENGINE or member["method"] != RSYNC_METHOD:
            raise FilesError("Set %s was written by %s/%s, not by files_backup with method rsync_snapshot."
                             % (member["set_id"], member["engine"], member["method"]))
        trees = [t for t in member.get("trees") or [] if t["name"] == TREE_NAME]
        if not trees:
            raise FilesError("Set %s lists no tree named %s; it is not a snapshot this module wrote."
                             % (member["set_id"], TREE_NAME))
        self.tree = trees[0]
        self.check_target()

    def consume(self, job, member):
        self._start()
        store = job.store
        try:
            root = store.open_tree(member["host"], member["source"], member["set_id"], TREE_NAME)
        except (OSError, _stores.StoreError) as exc:
            self.discard()
            raise FilesError("Cannot open the snapshot tree of set %s: %s" % (
                member["set_id"], getattr(exc, "strerror", None) or exc))
        names = [f["name"] for f in member["files"]]
        try:
            def with_index(index):
                entries = _manifest.read_index(_stores.line_reader(index), self.tree,
                                               "The index of set %s" % member["set_id"])
                if TREE_LINKS not in names:
                    return self._copy(member, root, entries, [])
                return job.read(member, TREE_LINKS, lambda links: self._copy(
                    member, root, entries, _trees.read_links(_stores.line_reader(links),
                                                             "The links file of set %s" % member["set_id"])))
            job.read(member, self.tree["index"], with_index)
        except _manifest.ManifestError as exc:
            self.discard()
            raise FilesError(str(exc))
        except OSError as exc:
            self.discard()
            raise FilesError(_stores.describe_os_error(exc, "the target %s" % self.target))
        except BaseException:
            self.discard()
            raise
        finally:
            os.close(root)
            store.release_trees()  # a store that fetched the tree into a local copy (ssh) removes it

    def _refuse(self, member, path, phrase):
        raise FilesError("The snapshot tree of set %s holds %s, which %s; nothing was restored."
                         % (member["set_id"], _stores.escape(path), phrase))

    def _copy(self, member, root, entries, links):
        staging = os.open(self.staging, _DIR_FLAGS)
        dirs = []  # (path, st) of the directories made, their metadata set last (deepest first)
        made = set([""])
        inodes = {}
        policy = _archive.TreePolicy(what="the snapshot tree of set %s" % member["set_id"])
        try:
            for entry, listed, state in _trees.match(root, entries, links):
                if state == "missing":
                    self._refuse(member, listed["path"], "is listed but missing from the tree")
                problem = _trees.entry_problem(entry, listed)
                if problem is not None:
                    self._refuse(member, entry.path, _trees.describe(entry, listed, problem))
                if self.select is not None and not self.select(entry.path):
                    if entry.kind != "dir":
                        self.left_out += 1
                    continue
                parent = entry.path.rpartition("/")[0]
                self._make_parents(staging, parent, made)
                if entry.kind == "dir":
                    if entry.path not in made:
                        os.mkdir(entry.path, 0o700, dir_fd=staging)
                        made.add(entry.path)
                    dirs.append((entry.path, entry.st, _trees.entry_xattrs(entry)))
                elif entry.kind == "symlink":
                    target = os.readlink(entry.name, dir_fd=entry.dir_fd)
                    info = tarfile.TarInfo(entry.path)
                    info.type, info.linkname = tarfile.SYMTYPE, target
                    try:
                        policy.check_symlink(info, entry.path)
                    except _archive.ArchiveError:
                        self._refuse(member, entry.path, "is a symbolic link to %s, which leads out of the target "
                                     "directory" % _stores.escape(target))
                    os.symlink(target, entry.path, dir_fd=staging)
                    if self.owners:
                        os.chown(entry.path, entry.st.st_uid, entry.st.st_gid, dir_fd=staging, follow_symlinks=False)
                    os.utime(entry.path, ns=(entry.st.st_atime_ns, entry.st.st_mtime_ns), dir_fd=staging,
                             follow_symlinks=False)
                    self.extracted += 1
                else:
                    self._copy_file(member, staging, entry, listed, inodes)
                    self.extracted += 1
            for path, st, xattrs in reversed(dirs):
                fd = os.open(path, _DIR_FLAGS, dir_fd=staging)
                try:
                    self._apply(fd, st, xattrs, stat.S_IMODE(st.st_mode))
                finally:
                    os.close(fd)
            top = os.fstat(root)
            self._apply(staging, top, [], stat.S_IMODE(top.st_mode))  # the target's own metadata: finalise copies it
        finally:
            os.close(staging)

    def _make_parents(self, staging, parent, made):
        if parent in made:
            return
        self._make_parents(staging, parent.rpartition("/")[0], made)
        os.mkdir(parent, 0o700, dir_fd=staging)
        made.add(parent)

    def _apply(self, fd, st, xattrs, mode):
        self.xattrs_skipped += _trees.apply_metadata(fd, st, xattrs, mode if self.owners else mode & 0o777, self.owners)

    def _copy_file(self, member, staging, entry, listed, inodes):
        key = (entry.st.st_dev, entry.st.st_ino)
        first = inodes.get(key)
        if first is not None and first[1] == listed["sha256"]:
            os.link(first[0], entry.path, src_dir_fd=staging, dst_dir_fd=staging, follow_symlinks=False)
            return
        refusals = {"unreadable": "is no longer a regular file that can be read",
                    "mismatch": "does not match the size and SHA-256 of the index"}
        _trees.copy_listed_file(
            entry, listed, staging, lambda reason: self._refuse(member, entry.path, refusals[reason]),
            lambda out, xattrs: self._apply(out, entry.st, xattrs, listed["mode"]))
        if entry.st.st_nlink > 1:
            inodes[key] = (entry.path, listed["sha256"])


def restore_engine(manifest, module, params):
    """The RestoreJob engine for a files set (tar chain or rsync snapshot)."""
    if manifest["engine"] != ENGINE:
        raise FilesError("Set %s was made by %s, not files_backup; use that engine's restore module."
                         % (manifest["set_id"], manifest["engine"]))
    options = dict(target=params["target"], paths=params["paths"], overwrite=params["overwrite"],
                   allow_nonempty=params["allow_nonempty"], devices=params["devices"])
    if manifest["method"] == RSYNC_METHOD:
        return SnapshotRestore(**options)
    if manifest["method"] != "tar":
        raise FilesError("Set %s was written with method %s, which files_restore cannot restore yet."
                         % (manifest["set_id"], manifest["method"]))
    return TreeRestore(**options)
