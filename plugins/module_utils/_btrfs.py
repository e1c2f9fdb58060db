# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""btrfs: read-only subvolume snapshots, ``btrfs send`` into a set and ``btrfs receive`` out of one.

Snapshots of source ``S`` live in ``<snapshot_dir>/<S>/<set_id>`` (read-only
subvolumes on the same filesystem as the subvolume). The name ties each one to
the set that took it, so a run finds what an interrupted run left:

- a snapshot whose set was never committed is a leftover, removed and reported;
- with ``keep_parents`` (send mode) the snapshots of the newest set and of the
  newest full set are kept, because ``btrfs send -p`` needs the parent on this
  host; older ones are removed and reported as rotated.

Every command goes through the runner seam; streaming through ``_pipeline``.
"""

from __future__ import annotations

import os
import re

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
from ansible_collections.lifeboat.backup.plugins.module_utils._jobs import Payload
from ansible_collections.lifeboat.backup.plugins.module_utils import _snapshot
from ansible_collections.lifeboat.backup.plugins.module_utils._snapshot import SnapshotError

KIND = "btrfs-snapshot"
STREAM_NAME = "stream.btrfs"
SHOW_RE = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?):\s*(.*?)\s*$")


def source_name(path):
    """A default source name for a subvolume path: /srv/data -> srv-data."""
    name = re.sub(r"[^A-Za-z0-9._@+-]+", "-", path.strip("/")).strip("-.")
    return name or "root"


def parse_show(text):
    """The ``Name: value`` fields of ``btrfs subvolume show`` (first block only, before 'Snapshot(s):')."""
    fields = {}
    lines = text.splitlines()
    for line in lines[1:]:
        if line.strip().startswith("Snapshot(s):") or line.strip().startswith("Quota group"):
            break
        match = SHOW_RE.match(line)
        if match:
            fields[match.group(1).strip()] = match.group(2)
    if lines and "path" not in fields:
        fields["path"] = lines[0].strip()
    return fields


def is_none_uuid(value):
    return value in (None, "", "-")


class Btrfs(object):
    """The btrfs command line through the runner seam."""

    def __init__(self, runner, binary=None):
        self.runner = runner
        self.binary = binary or runner.find("btrfs", "btrfs-progs")

    def _run(self, argv, what):
        rc, out, err = self.runner.run([self.binary] + argv)
        if rc != 0:
            detail = (err or out).strip().splitlines()
            raise SnapshotError("%s failed: %s" % (what, detail[-1] if detail else "exit status %d" % rc))
        return out

    def version(self):
        rc, out, err = self.runner.run([self.binary, "--version"])
        return (out or err).strip().splitlines()[0] if rc == 0 and (out or err).strip() else "unknown"

    def show(self, path):
        """``btrfs subvolume show`` fields, or None when ``path`` is not a subvolume."""
        rc, out, err = self.runner.run([self.binary, "subvolume", "show", path])
        if rc != 0:
            return None
        return parse_show(out)

    def is_readonly(self, fields):
        return "readonly" in (fields or {}).get("Flags", "")

    def snapshot(self, source, target):
        self._run(["subvolume", "snapshot", "-r", source, target],
                  "Taking a read-only snapshot of %s at %s" % (source, target))

    def delete(self, path):
        self._run(["subvolume", "delete", path], "Deleting the btrfs snapshot %s" % path)

    def sync(self, path):
        self._run(["filesystem", "sync", path], "btrfs filesystem sync %s" % path)

    def send_stage(self, path, parent=None):
        argv = [self.binary, "send", "-q"]
        if parent:
            argv += ["-p", parent]
        return _pipeline.Stage("btrfs send", argv + [path])

    def receive_stage(self, dest):
        # -e: stop at the end marker, so a stream of several subvolumes cannot write past the first.
        return _pipeline.Stage("btrfs receive", [self.binary, "receive", "-e", dest])


def check_subvolume(btrfs, path):
    """The show fields of subvolume ``path``; one sentence when it is not one."""
    if not os.path.isdir(path):
        raise SnapshotError("The subvolume %s does not exist." % path)
    fields = btrfs.show(path)
    if fields is None:
        raise SnapshotError("%s is not a btrfs subvolume (btrfs subvolume show refuses it); give the path of a "
                            "subvolume on a btrfs filesystem." % path)
    return fields


def snapshot_ref(manifest):
    """The btrfs-snapshot external reference of a set, or None."""
    for ref in manifest.get("external") or []:
        if ref.get("kind") == KIND:
            return ref
    return None


class SnapshotProvider(object):
    """Read-only snapshot of one subvolume for the length of a backup (see _snapshot)."""

    def __init__(self, btrfs, subvolume, snapshot_dir=None, keep_parents=False):
        self.btrfs = btrfs
        self.subvolume = os.path.abspath(subvolume)
        # Beside the subvolume by default: inside it, every later snapshot would hold the earlier ones' names.
        self.snapshot_dir = os.path.abspath(snapshot_dir or os.path.join(os.path.dirname(self.subvolume),
                                                                         ".lifeboat-snapshots"))
        self.keep_parents = keep_parents
        self.kind = KIND
        self.path = None
        self.uuid = None
        self.recorded = False

    def source_dir(self, source):
        return os.path.join(self.snapshot_dir, source)

    def keep(self, ctx):
        """Names of snapshots this run must not remove (send mode: possible parents)."""
        if not self.keep_parents:
            return set()
        sets = ctx.job.existing()
        names = set()
        if sets:
            names.add(sets[-1]["set_id"])
            fulls = [m for m in sets if m["type"] == "full"]
            if fulls:
                names.add(fulls[-1]["set_id"])
        if ctx.parent:
            names.add(ctx.parent["set_id"])
        return names

    def leftovers(self, ctx, committed=None):
        """(path, reason) of every snapshot of this source that is not kept."""
        directory = self.source_dir(ctx.job.source)
        if not os.path.isdir(directory):
            return []
        if committed is None:
            committed = set(m["set_id"] for m in ctx.job.existing())
        keep = self.keep(ctx)
        found = []
        for name in sorted(os.listdir(directory)):
            if not _manifest.SET_ID_RE.match(name) or name in keep:
                continue
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isdir(path):
                continue
            reason = "no longer a parent" if name in committed else "left by an interrupted run"
            found.append((path, reason))
        return found

    def cleanup(self, ctx):
        removed = []
        for path, reason in self.leftovers(ctx):
            if self.btrfs.show(path) is None:
                continue  # not a subvolume: not ours to delete
            self.btrfs.delete(path)
            removed.append({"kind": KIND, "path": path, "reason": reason})
        return removed

    def prepare(self, ctx):
        check_subvolume(self.btrfs, self.subvolume)
        directory = self.source_dir(ctx.job.source)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SnapshotError("Cannot create the snapshot directory %s: %s." % (directory, exc.strerror))
        path = os.path.join(directory, ctx.set_id)
        if os.path.lexists(path):
            raise SnapshotError("The snapshot path %s already exists; remove it or pick another snapshot_dir."
                                % path)
        if os.stat(directory).st_dev != os.stat(os.path.dirname(self.subvolume)).st_dev and \
                filesystem_type(directory) != "btrfs":
            raise SnapshotError("The snapshot directory %s is not on a btrfs filesystem; set snapshot_dir to a "
                                "directory on the filesystem of %s." % (self.snapshot_dir, self.subvolume))
        self.btrfs.snapshot(self.subvolume, path)
        self.path = path
        fields = self.btrfs.show(path) or {}
        self.uuid = fields.get("UUID")
        ctx.snapshot = dict(kind=KIND, path=path, name=ctx.set_id, uuid=self.uuid, origin=self.subvolume)

    def record(self, ctx, manifest):
        _manifest.add_external(manifest, KIND, self.uuid or ctx.set_id, location=self.path[-256:],
                               attributes=dict(name=ctx.set_id, subvolume=self.subvolume[-1024:],
                                               kept="yes" if self.keep_parents else "no"))
        self.recorded = True

    def release(self, ctx):
        if self.path is None:
            return
        if self.keep_parents and self.recorded:
            return  # the parent of the next incremental; rotated by a later run
        if self.btrfs.show(self.path) is not None:
            self.btrfs.delete(self.path)
        self.path = None


def path_in_subvolume(subvolume, path):
    """``path`` (relative to ``subvolume``, or absolute at or below it) as a clean relative path."""
    if path and os.path.isabs(path):
        clean = os.path.normpath(path)
        if clean != subvolume and not clean.startswith(subvolume.rstrip("/") + "/"):
            raise SnapshotError("path %s is not inside the subvolume %s; give a directory of the subvolume, "
                                "relative to it or absolute." % (path, subvolume))
        path = os.path.relpath(clean, subvolume)
    return _snapshot.check_subpath(path)


class FilesEngine(_snapshot.FilesInSnapshot):
    """A file engine on a directory inside a read-only snapshot, deleted once the files are read."""

    def provider_versions(self):
        return {"btrfs": self.provider.btrfs.version()}

    def check_result(self, decision):
        result = super(FilesEngine, self).check_result(decision)
        result["snapshot"] = os.path.join(self.provider.source_dir(decision["job"].source), decision["set_id"])
        return result


class SendEngine(object):
    """``btrfs send`` of the snapshot (``-p`` the parent set's snapshot for incremental and differential)."""

    def __init__(self, btrfs, provider):
        self.btrfs = btrfs
        self.provider = provider
        self.parent_path = None
        self.cmd = []
        self.codec = None
        self.planned = None

    # ------------------------------------------------------------ _jobs.run_backup_module hooks

    def describe(self, codec):
        """The send of the snapshot a due set would take (nothing before the plan names it)."""
        self.codec = codec
        if self.planned is None:
            return []
        return [self.btrfs.send_stage(*self.planned).argv] + [s.argv for s in codec.stages()]

    def probe(self, decision):
        source_dir = self.provider.source_dir(decision["job"].source)
        parent = decision["parent"]
        self.planned = (os.path.join(source_dir, decision["set_id"]),
                        os.path.join(source_dir, parent["set_id"]) if parent else None)

    def check_result(self, decision):
        return {"snapshot": self.planned[0]}

    def result(self, manifest, extras):
        if extras.get("skipped"):
            return {}
        return {"cmd": [self.cmd] + [s.argv for s in self.codec.stages()]}

    def prepare(self, ctx):
        if not ctx.parent:
            return
        ref = snapshot_ref(ctx.parent)
        path = os.path.join(self.provider.source_dir(ctx.job.source), ctx.parent["set_id"])
        fields = self.btrfs.show(path)
        if fields is None or not self.btrfs.is_readonly(fields):
            raise SnapshotError(
                "The snapshot %s of parent set %s is gone from this host, so no %s can be sent; write a full "
                "set (type full)." % (path, ctx.parent["set_id"], ctx.type))
        if ref is not None and ref["id"] != fields.get("UUID"):
            raise SnapshotError(
                "The snapshot %s is not the one parent set %s recorded (UUID %s, not %s); write a full set "
                "(type full)." % (path, ctx.parent["set_id"], fields.get("UUID"), ref["id"]))
        self.parent_path = path

    def produce(self, ctx):
        self.btrfs.sync(ctx.snapshot["path"])
        stage = self.btrfs.send_stage(ctx.snapshot["path"], self.parent_path)
        self.cmd = stage.argv
        yield Payload(STREAM_NAME, [stage])

    def record(self, ctx, manifest):
        manifest["tool_versions"]["btrfs"] = self.btrfs.version()
        manifest["options"]["subvolume"] = self.provider.subvolume
        if self.parent_path:
            manifest["options"]["send_parent"] = ctx.parent["set_id"]

    def explain(self, exc):
        if exc.stage == "btrfs send":
            lines = (exc.stderr or "").strip().splitlines()
            return SnapshotError("btrfs send of %s failed: %s" % (self.provider.path, lines[-1] if lines else
                                                                  "exit status %s" % exc.returncode))
        return None


def filesystem_type(path, mountinfo="/proc/self/mountinfo"):
    """The type of the filesystem that holds ``path`` (longest mount prefix), or None."""
    path = os.path.realpath(path)
    best, kind = "", None
    try:
        with open(mountinfo) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if " - " not in line:
            continue
        head, tail = line.split(" - ", 1)
        target = head.split()[4].replace("\\040", " ")
        if (path == target or path.startswith(target.rstrip("/") + "/")) and len(target) >= len(best):
            best, kind = target, tail.split()[0]
    return kind


class ReceiveEngine(object):
    """The restore side: ``btrfs receive`` every set of the chain into ``dest``, full first.

    A member whose subvolume is already in ``dest`` with the Received UUID the
    set recorded is not received again (a rerun changes nothing). A receive
    that fails removes the half-received subvolume.
    """

    def __init__(self, btrfs, dest):
        self.btrfs = btrfs
        self.dest = os.path.abspath(dest)
        self.received = []
        self.present = []

    def preconditions(self, job):
        for member in job.chain:
            if member["engine"] != "btrfs" or snapshot_ref(member) is None:
                raise LifeboatError("Set %s is not a btrfs send set (engine %s); restore it with the module "
                                    "that wrote it." % (member["set_id"], member["engine"]))
        if not os.path.isdir(self.dest):
            raise LifeboatError("The destination %s does not exist; create it on a btrfs filesystem." % self.dest)
        kind = filesystem_type(self.dest)
        if kind != "btrfs":
            raise LifeboatError("The destination %s is on a %s filesystem; btrfs receive needs btrfs." %
                                (self.dest, kind or "unknown"))
        target = self.target(job.manifest)
        fields = self.btrfs.show(target) if os.path.lexists(target) else None
        if os.path.lexists(target) and (fields is None or fields.get("Received UUID") != snapshot_ref(job.manifest)["id"]):
            raise LifeboatError("%s already exists and is not the snapshot of set %s; move it away or pick "
                                "another dest." % (target, job.manifest["set_id"]))

    def target(self, member):
        return os.path.join(self.dest, snapshot_ref(member)["attributes"].get("name") or member["set_id"])

    def consume(self, job, member):
        target = self.target(member)
        ref = snapshot_ref(member)
        if os.path.lexists(target):
            fields = self.btrfs.show(target)
            if fields is not None and fields.get("Received UUID") == ref["id"]:
                self.present.append(target)
                return
            raise LifeboatError("%s already exists and is not the snapshot of set %s; move it away."
                                % (target, member["set_id"]))
        names = [f["name"] for f in member["files"] if f["role"] == "payload"]
        if len(names) != 1:
            raise LifeboatError("Set %s holds %d payload files, not one btrfs stream." % (member["set_id"], len(names)))
        try:
            job.stream(member, names[0], [self.btrfs.receive_stage(self.dest)])
        except _pipeline.PipelineError as exc:
            if os.path.lexists(target) and self.btrfs.show(target) is not None:
                self.btrfs.delete(target)
            lines = (exc.stderr or "").strip().splitlines()
            if exc.stage == "btrfs receive":
                raise LifeboatError("btrfs receive of set %s into %s failed: %s" % (
                    member["set_id"], self.dest, lines[-1] if lines else "exit status %s" % exc.returncode))
            raise
        except BaseException:
            if os.path.lexists(target) and self.btrfs.show(target) is not None:
                self.btrfs.delete(target)
            raise
        self.received.append(target)

    def finalise(self, job):
        return None


# ------------------------------------------------------------------ retention

DEFAULT_SNAPSHOT_DIR = ".lifeboat-snapshots"


class Releaser(object):
    """Deletes the read-only snapshot a btrfs send set keeps on its host, when retention deletes the set.

    Only a snapshot that is ours is deleted: the manifest's recorded path is
    never followed. The path is rebuilt as ``<dir>/<source>/<set_id>`` for each
    snapshot directory this host uses (``snapshot_dirs``, and the module's
    default ``.lifeboat-snapshots`` beside the recorded subvolume), it must be
    the path the set recorded, reached without a symbolic link, and a read-only
    btrfs subvolume whose UUID is the one the set recorded. A set of another
    host is not acted on here (its snapshot lives there). A snapshot already
    gone counts as released. Sets whose files were read from a snapshot
    (``kept: no``) have nothing left to release.

    Retention's chain rules keep every parent of a kept set, so the snapshots
    the next incremental is sent against (the newest set's and its full's) are
    never released.
    """

    kinds = (KIND,)

    def __init__(self, runner, host, snapshot_dirs=()):
        self.runner = runner
        self.host = host
        self.snapshot_dirs = [os.path.abspath(d) for d in snapshot_dirs or ()]
        self._btrfs = None

    def btrfs(self):
        if self._btrfs is None:
            self._btrfs = Btrfs(self.runner)
        return self._btrfs

    def kept_refs(self, manifest):
        return [ref for ref in manifest.get("external") or []
                if ref.get("kind") == KIND and (ref.get("attributes") or {}).get("kept") == "yes"]

    def candidates(self, manifest, ref):
        """Where the snapshot of this set may be: ``<dir>/<source>/<set_id>`` under each snapshot directory."""
        source, set_id = manifest["source"], manifest["set_id"]
        if "/" in source or source in ("", ".", "..") or not _manifest.SET_ID_RE.match(set_id):
            return []
        dirs = list(self.snapshot_dirs)
        subvolume = (ref.get("attributes") or {}).get("subvolume")
        if isinstance(subvolume, str) and os.path.isabs(subvolume):
            dirs.append(os.path.join(os.path.dirname(os.path.normpath(subvolume)), DEFAULT_SNAPSHOT_DIR))
        return [os.path.join(d, source, set_id) for d in dirs]

    def locate(self, manifest, ref):
        """(path, None) of our snapshot, (None, None) when it is gone, or (None, why) when it is not ours."""
        location = ref.get("location")
        wanted = [p for p in self.candidates(manifest, ref) if not location or p[-256:] == location]
        if not wanted:
            return None, ("the snapshot %s recorded by set %s is not <snapshot_dir>/%s/%s of a snapshot directory of "
                          "this host; it is not deleted (add its directory to btrfs_snapshot_dirs if it is one)"
                          % (location, manifest["set_id"], manifest["source"], manifest["set_id"]))
        for path in wanted:
            if not os.path.lexists(path):
                continue
            if os.path.realpath(path) != path or not os.path.isdir(path):
                return None, ("%s is not a snapshot directory of set %s (a symbolic link or a file); it is not "
                              "deleted" % (path, manifest["set_id"]))
            fields = self.btrfs().show(path)
            if fields is None or not self.btrfs().is_readonly(fields) or fields.get("UUID") != ref.get("id"):
                return None, ("%s is not the read-only snapshot set %s recorded (UUID %s); it is not deleted"
                              % (path, manifest["set_id"], ref.get("id")))
            return path, None
        return None, None

    def mine(self, manifest):
        return not self.host or manifest.get("host") == self.host

    def check(self, manifest):
        problems = []
        if not self.mine(manifest):
            return problems
        for ref in self.kept_refs(manifest):
            dummy, why = self.locate(manifest, ref)
            if why:
                problems.append(why[0].upper() + why[1:])
        return problems

    def planned(self, manifest, ref):
        """What ``release`` would delete for ``ref`` (check mode): our snapshot where it still is, else None
        (a file-mode set kept none, a snapshot already gone, or one that is not ours, which release refuses)."""
        if not self.mine(manifest) or ref not in self.kept_refs(manifest):
            return None
        path, why = self.locate(manifest, ref)
        if why or path is None:
            return None
        return dict(kind=KIND, id=ref.get("id"), location=path)

    def release(self, manifest):
        released, problems = [], []
        if not self.mine(manifest):
            return released, problems
        for ref in self.kept_refs(manifest):
            try:
                path, why = self.locate(manifest, ref)
                if why:
                    problems.append(why[0].upper() + why[1:])
                    continue
                if path is None:
                    continue  # already gone
                self.btrfs().delete(path)
            except LifeboatError as exc:
                problems.append(str(exc).rstrip("."))
                continue
            released.append(dict(kind=KIND, id=ref.get("id"), location=path))
        return released, problems
