# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Snapshot providers: the prepare/release step that any BackupJob engine can run inside.

A provider turns a live volume into a frozen, read-only view for the length of
one backup, and always takes it away again:

``cleanup(ctx)``
    find what a killed run left behind (a mounted or undeleted snapshot of this
    source) and remove it; return what was removed (reported by the module).
``prepare(ctx)``
    take the snapshot and make it readable; set ``ctx.snapshot`` to a dict with
    ``path`` (the read-only directory an engine reads), ``name`` and ``kind``.
``record(ctx, manifest)``
    record the snapshot in the manifest (an external reference), when the set
    refers to it.
``release(ctx)``
    unmount and delete; it runs whatever happened, and must not raise for a
    snapshot that is already gone.

``with_snapshot(provider, engine)`` wraps any engine object of
``_jobs.BackupJob.run`` so that the provider's prepare runs before the
engine's and its release after the engine's, always. A file engine
(``files_backup``) then reads ``ctx.snapshot["path"]`` instead of the live
path: "snapshot this volume, then back up this path inside it". Leftovers
are removed under the job's lock, before the new snapshot is taken.
"""

from __future__ import annotations

import os

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError


class SnapshotError(LifeboatError):
    """A snapshot could not be taken, read or released."""


def mounted_at(path, mountinfo="/proc/self/mountinfo"):
    """The mount entries (dicts: target, source, fstype, options) whose target is ``path`` or below it."""
    found = []
    path = os.path.realpath(path)
    try:
        with open(mountinfo) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 10:
            continue
        head, tail = line.split(" - ", 1)
        head, tail = head.split(), tail.split()
        target = _unescape(head[4])
        if target == path or target.startswith(path.rstrip("/") + "/"):
            found.append(dict(target=target, options=head[5], fstype=tail[0], source=_unescape(tail[1]),
                              super_options=tail[2] if len(tail) > 2 else ""))
    return found


def _unescape(text):
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


class PlanContext(object):
    """What a provider's ``leftovers`` needs in check mode, where no set is being written."""

    def __init__(self, decision):
        self.job = decision["job"]
        self.set_id = decision["set_id"]
        self.type = decision["type"]
        self.parent = decision["parent"]


class SnapshotEngine(object):
    """An engine run inside a snapshot: provider.prepare -> engine -> engine.release -> provider.release.

    The _jobs.run_backup_module hooks go to the inner engine; check mode adds
    the provider's leftovers that a run would remove (``removed_snapshots``),
    and results name the snapshot taken.
    """

    def __init__(self, provider, engine):
        self.provider = provider
        self.engine = engine
        self.removed = []

    def _inner(self, name, *args):
        method = getattr(self.engine, name, None)
        return method(*args) if method is not None else None

    def describe(self, codec):
        return self._inner("describe", codec) or []

    def session(self):
        return self._inner("session")

    def probe(self, decision):
        self._inner("probe", decision)

    def check_result(self, decision):
        result = {"removed_snapshots": [dict(kind=self.provider.kind, path=path, reason=reason)
                                        for path, reason in self.provider.leftovers(PlanContext(decision))]}
        result.update(self._inner("check_result", decision) or {})
        return result

    def tool_versions(self, codec):
        return self._inner("tool_versions", codec)

    def result(self, manifest, extras):
        if extras.get("skipped"):
            result = {"snapshot": None, "removed_snapshots": []}
        else:
            result = {"snapshot": self.provider.path, "removed_snapshots": self.removed}
        result.update(self._inner("result", manifest, extras) or {})
        return result

    def prepare(self, ctx):
        self.removed = list(self.provider.cleanup(ctx) or [])
        self.provider.prepare(ctx)
        if hasattr(self.engine, "prepare"):
            try:
                self.engine.prepare(ctx)
            except BaseException:
                self.provider.release(ctx)
                raise

    def produce(self, ctx):
        return self.engine.produce(ctx)

    def record(self, ctx, manifest):
        self.provider.record(ctx, manifest)
        self.engine.record(ctx, manifest)

    def explain(self, exc):
        if hasattr(self.engine, "explain"):
            return self.engine.explain(exc)
        return None

    def release(self, ctx):
        try:
            if hasattr(self.engine, "release"):
                self.engine.release(ctx)
        finally:
            self.provider.release(ctx)


def check_subpath(path):
    """``path`` (a directory inside a snapshot) as a clean relative path; one sentence when it is not one."""
    text = path if path not in (None, "") else "."
    if not isinstance(text, str) or os.path.isabs(text) or "\0" in text:
        raise SnapshotError("path %r must be relative to the root of the volume (www for <volume>/www, . for all "
                            "of it)." % (path,))
    clean = os.path.normpath(text)
    if clean == ".." or clean.startswith("../"):
        raise SnapshotError("path %r leaves the volume; give a directory inside it." % (path,))
    return clean


class FilesInSnapshot(SnapshotEngine):
    """A file engine (``_files.TarEngine``) reading ``subpath`` inside the snapshot the provider takes.

    The engine's ``source_dir`` is pointed into the snapshot after the provider
    took it, and only when that directory resolves inside the snapshot (a
    symbolic link in the volume never sends the engine to the host's files).
    Until then (check mode) it names ``planned``, the live directory.
    """

    def __init__(self, provider, engine, subpath=".", planned=None):
        super(FilesInSnapshot, self).__init__(provider, engine)
        self.taken = None
        self.codec = None
        self.subpath = check_subpath(subpath)
        if planned is not None:
            self.engine.source_dir = planned

    def describe(self, codec):
        self.codec = codec
        return super(FilesInSnapshot, self).describe(codec)

    def result(self, manifest, extras):
        result = super(FilesInSnapshot, self).result(manifest, extras)
        if not extras.get("skipped"):
            result["snapshot"] = self.taken  # released by now: the one that was taken
            if self.codec is not None:
                result["cmd"] = self.describe(self.codec)  # tar read the snapshot, not the live directory
        return result

    def provider_versions(self):
        """Versions of the snapshot tools, added to the file engine's (a subclass names them)."""
        return {}

    def tool_versions(self, codec):
        versions = dict(self._inner("tool_versions", codec) or {})
        versions.update(self.provider_versions())
        self.engine.versions = versions  # the file engine writes them into the manifest
        return versions

    def prepare(self, ctx):
        self.removed = list(self.provider.cleanup(ctx) or [])
        self.provider.prepare(ctx)
        self.taken = self.provider.path
        try:
            root = os.path.realpath(ctx.snapshot["path"])
            wanted = os.path.realpath(os.path.join(root, self.subpath))
            if wanted != root and not wanted.startswith(root.rstrip("/") + "/"):
                raise SnapshotError("path %s leads out of the snapshot (through a symbolic link); give a directory "
                                    "inside the volume." % self.subpath)
            if not os.path.isdir(wanted):
                raise SnapshotError("path %s is not a directory in the snapshot of %s."
                                    % (self.subpath, ctx.snapshot.get("origin")))
            self.engine.source_dir = wanted
            if hasattr(self.engine, "prepare"):
                self.engine.prepare(ctx)
        except BaseException:
            self.provider.release(ctx)
            raise


def with_snapshot(provider, engine):
    """``engine`` (any BackupJob engine) run on a read-only snapshot taken by ``provider``."""
    return SnapshotEngine(provider, engine)
