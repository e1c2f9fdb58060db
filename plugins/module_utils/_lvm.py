# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""LVM: a copy-on-write snapshot of a logical volume, mounted read-only for the length of one backup.

``SnapshotProvider`` (the _snapshot contract) runs ``lvcreate --snapshot``
with a size (``--size``) or a share of the volume group (``--extents N%FREE``),
mounts the snapshot read-only at ``<mount_dir>/<source>`` (``nouuid`` for
XFS, whose snapshot carries its origin's UUID), and always unmounts and
``lvremove``s it afterwards. Each snapshot is tagged ``lifeboat`` and
``lifeboat-src-<hash of host and source>``, so the next run finds what a killed
run left (a snapshot of this source while no run holds the job's lock is
always a leftover), unmounts and removes it and reports it.

A snapshot whose copy-on-write space filled up while the files were read is
invalid: the kernel returns I/O errors or the last blocks read are missing.
``record`` asks ``lvs`` after the backup, and a snapshot at 100% (or marked
invalid) fails the set before it is committed.

Every command goes through the runner seam; the binaries are found on PATH or
in ``bin_dir``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils._snapshot import SnapshotError, mounted_at

KIND = "lvm-snapshot"
TOOLS = (("lvcreate", "lvm2"), ("lvs", "lvm2"), ("lvremove", "lvm2"), ("mount", "mount"), ("umount", "mount"),
         ("blkid", "util-linux"))
NAME_RE = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}\Z")
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([bBsSkKmMgGtTpPeE]?)\Z")
PERCENT_RE = re.compile(r"^(\d{1,3})%(FREE|ORIGIN|VG)\Z")
UNITS = {"": 2 ** 20, "b": 1, "s": 512, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40, "p": 2 ** 50,
         "e": 2 ** 60}
LVS_FIELDS = "lv_name,vg_name,lv_attr,lv_path,origin,data_percent,lv_tags,lv_size,vg_free,vg_extent_size"
MOUNT_OPTIONS = {"xfs": ["ro", "nouuid"]}


def check_name(what, name):
    """An LVM volume group or logical volume name, or one sentence."""
    reserved = what == "logical volume" and isinstance(name, str) and name.startswith(("snapshot", "pvmove"))
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", "..") or reserved:
        raise SnapshotError("%r is not a valid %s name (letters, digits and + _ . -, not starting with -, at most "
                            "127 characters)." % (name, what))
    return name


def parse_size(text):
    """``(option, value, bytes or None)`` for lvcreate: ``--size 10G`` or ``--extents 20%FREE``; one sentence if bad."""
    text = str(text or "").strip()
    match = SIZE_RE.match(text)
    if match:
        size = int(float(match.group(1)) * UNITS[match.group(2).lower()])
        if size <= 0:
            raise SnapshotError("The snapshot size %r is zero; give a size such as 10G or a share such as 20%%FREE."
                                % text)
        return "--size", text, size
    match = PERCENT_RE.match(text)
    if match and 1 <= int(match.group(1)) <= 100:
        return "--extents", text, None
    raise SnapshotError("The snapshot size %r is neither a size (10G, 512M, 1.5T) nor a share of the volume group "
                        "(1%%FREE to 100%%FREE, or N%%ORIGIN, N%%VG)." % text)


def source_tag(host, source):
    return "lifeboat-src-" + hashlib.sha256(("%s\0%s" % (host, source)).encode("utf-8")).hexdigest()[:20]


def last_line(text, rc):
    """The last line a tool printed, without its full stop (it goes inside a sentence)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1].rstrip(".") if lines else "exit status %d" % rc


def human(size):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.1f %s" % (size, unit))
        size /= 1024.0
    return str(size)  # pragma: no cover


class Lvm(object):
    """lvcreate, lvs, lvremove, mount, umount and blkid through the runner seam."""

    def __init__(self, runner, bin_dir=None):
        self.runner = runner
        self.bins = {}
        for name, package in TOOLS:
            if bin_dir:
                path = os.path.join(bin_dir, name)
                if not os.access(path, os.X_OK):
                    raise SnapshotError("%s is not in bin_dir %s (or is not executable)." % (name, bin_dir))
                self.bins[name] = path
            else:
                self.bins[name] = runner.find(name, package, opt_dirs=["/sbin", "/usr/sbin"])

    def run(self, name, args):
        return self.runner.run([self.bins[name]] + list(args))

    def version(self):
        rc, out, err = self.run("lvs", ["--version"])
        for line in (out or "").splitlines():
            if "LVM version" in line:
                return line.split(":", 1)[1].strip()
        return "unknown"

    def lvs(self, *selection):
        """The rows of ``lvs`` for ``selection`` (VG or VG/LV names); one sentence for a missing VG or LV."""
        rc, out, err = self.run("lvs", ["--reportformat", "json", "--units", "b", "--nosuffix", "-o", LVS_FIELDS]
                                + list(selection))
        if rc != 0:
            line = last_line(err or out, rc)
            for text in (err or "").splitlines():
                match = re.search(r'Volume group "(.+)" not found', text)
                if match:
                    raise SnapshotError("The volume group %s does not exist (lvs: %s)."
                                        % (match.group(1), text.strip()))
                match = re.search(r'Failed to find logical volume "(.+)"', text)
                if match:
                    raise SnapshotError("The logical volume %s does not exist." % match.group(1))
            raise SnapshotError("lvs %s failed: %s" % (" ".join(selection), line))
        try:
            rows = []
            for report in json.loads(out)["report"]:
                rows += report.get("lv", [])
            return rows
        except (ValueError, KeyError, TypeError):
            raise SnapshotError("lvs %s printed no JSON report (lvm2 2.02.158 or later is needed)."
                                % " ".join(selection))

    def fstype(self, device):
        rc, out, err = self.run("blkid", ["-o", "value", "-s", "TYPE", device])
        return out.strip() if rc == 0 and out.strip() else None

    def create(self, vg, origin, name, size, tags):
        option, value = parse_size(size)[:2]
        args = ["--snapshot", "--name", name, option, value]
        for tag in tags:
            args += ["--addtag", tag]
        rc, out, err = self.run("lvcreate", args + ["--yes", "%s/%s" % (vg, origin)])
        if rc != 0:
            line = last_line(err, rc)
            if "insufficient free space" in line or "Insufficient free space" in line:
                raise SnapshotError("The volume group %s has no room for a %s snapshot of %s: %s" % (
                    vg, value, origin, line))
            raise SnapshotError("lvcreate --snapshot of %s/%s failed: %s" % (vg, origin, line))

    def remove(self, vg, name):
        rc, out, err = self.run("lvremove", ["--yes", "%s/%s" % (vg, name)])
        if rc != 0 and "Failed to find logical volume" not in (err or ""):
            raise SnapshotError("lvremove of the snapshot %s/%s failed: %s" % (vg, name, last_line(err, rc)))

    def mount(self, device, target, fstype):
        options = MOUNT_OPTIONS.get(fstype, ["ro"])
        rc, out, err = self.run("mount", ["-t", fstype, "-o", ",".join(options), device, target])
        if rc != 0:
            raise SnapshotError("Mounting the snapshot %s read-only at %s failed: %s"
                                % (device, target, last_line(err, rc)))
        return options

    def umount(self, target):
        """Unmount ``target``; False when it was not mounted."""
        rc, out, err = self.run("umount", [target])
        if rc == 0:
            return True
        if "not mounted" in (err or "") or "no mount point specified" in (err or ""):
            return False
        raise SnapshotError("Unmounting the snapshot at %s failed: %s; the snapshot stays until a later run can "
                            "unmount it." % (target, last_line(err, rc)))


def snapshot_failed(row):
    """Whether an lvs row shows a snapshot that overflowed (invalid, or its copy-on-write space at 100%)."""
    attr = row.get("lv_attr") or ""
    try:
        used = float(row.get("data_percent") or 0)
    except ValueError:
        used = 0.0
    return attr[:1] == "S" or attr[4:5] == "I" or used >= 100.0


class SnapshotProvider(object):
    """A read-only mounted LVM snapshot of ``vg/lv`` for the length of one backup (see _snapshot)."""

    def __init__(self, lvm, vg, lv, size, mount_dir, source, fstype=None):
        self.lvm = lvm
        self.vg = check_name("volume group", vg)
        self.lv = check_name("logical volume", lv)
        self.size = size
        parse_size(size)
        self.mount_dir = os.path.abspath(mount_dir)
        self.mount_point = os.path.join(self.mount_dir, source)
        self.fstype = fstype
        self.kind = KIND
        self.path = None
        self.name = None
        self.mounted = False
        self.origin = None
        self.options = []
        self.usage = None

    # ------------------------------------------------------------ checks (also run in check mode)

    def check_origin(self):
        """The origin's lvs row and its filesystem type; one sentence when it cannot be snapshotted."""
        rows = self.lvm.lvs(self.vg)
        by_name = dict((row["lv_name"], row) for row in rows)
        row = by_name.get(self.lv)
        if row is None:
            raise SnapshotError("The logical volume %s/%s does not exist." % (self.vg, self.lv))
        if row.get("origin") or (row.get("lv_attr") or "")[:1] in ("s", "S"):
            raise SnapshotError("%s/%s is itself a snapshot; give the origin volume." % (self.vg, self.lv))
        option, value, size = parse_size(self.size)
        free = int(row.get("vg_free") or 0)
        if size is not None and size > free:
            raise SnapshotError("The volume group %s has %s free, less than the %s snapshot needs; give a smaller "
                                "size or a share such as 50%%FREE." % (self.vg, human(free), value))
        if size is None and value.endswith("%FREE") and free == 0:
            raise SnapshotError("The volume group %s has no free space for a snapshot (%s of nothing)."
                                % (self.vg, value))
        fstype = self.fstype or self.lvm.fstype(row.get("lv_path") or "/dev/%s/%s" % (self.vg, self.lv))
        if not fstype:
            raise SnapshotError("blkid finds no filesystem on %s/%s; set fstype." % (self.vg, self.lv))
        self.origin = row
        self.fstype = fstype
        return row

    def snapshot_name(self, host, source, set_id):
        """``lifeboat-<8 hex of host and source>-<set_id>``: two sources of one VG never take the same name."""
        return "lifeboat-%s-%s" % (source_tag(host, source)[-8:], set_id)

    def ours(self, host, source):
        tag = source_tag(host, source)
        return [row for row in self.lvm.lvs(self.vg) if tag in (row.get("lv_tags") or "").split(",")
                and row.get("origin")]

    # ------------------------------------------------------------ the provider contract

    def leftovers(self, ctx):
        found = [("%s/%s" % (row["vg_name"], row["lv_name"]), "left by an interrupted run")
                 for row in self.ours(ctx.job.host, ctx.job.source)]
        if mounted_at(self.mount_point) and not found:
            found.append((self.mount_point, "left mounted by an interrupted run"))
        return found

    def cleanup(self, ctx):
        """Unmount and remove what a killed run left (nothing else holds this source's lock now)."""
        removed = []
        if os.path.isdir(self.mount_point):
            for dummy in range(16):  # a mount point mounted over more than once is unmounted layer by layer
                if not self.lvm.umount(self.mount_point):
                    break
                removed.append({"kind": KIND, "path": self.mount_point,
                                "reason": "left mounted by an interrupted run"})
        for row in self.ours(ctx.job.host, ctx.job.source):
            self.lvm.remove(row["vg_name"], row["lv_name"])
            removed.append({"kind": KIND, "path": "%s/%s" % (row["vg_name"], row["lv_name"]),
                            "reason": "left by an interrupted run"})
        return removed

    def prepare(self, ctx):
        self.check_origin()
        try:
            os.makedirs(self.mount_point, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SnapshotError("Cannot create the mount point %s: %s." % (self.mount_point, exc.strerror))
        if os.listdir(self.mount_point):
            raise SnapshotError("The mount point %s is not empty (something is mounted or stored there); empty it or "
                                "pick another mount_dir." % self.mount_point)
        name = self.snapshot_name(ctx.job.host, ctx.job.source, ctx.set_id)
        self.lvm.create(self.vg, self.lv, name, self.size, ["lifeboat", source_tag(ctx.job.host, ctx.job.source)])
        self.name = name
        self.path = "%s/%s" % (self.vg, name)
        rows = self.lvm.lvs(self.path)
        device = rows[0].get("lv_path") if rows else None
        self.options = self.lvm.mount(device or "/dev/%s/%s" % (self.vg, name), self.mount_point, self.fstype)
        self.mounted = True
        ctx.snapshot = dict(kind=KIND, path=self.mount_point, name=self.path, origin="%s/%s" % (self.vg, self.lv))

    def record(self, ctx, manifest):
        rows = self.lvm.lvs(self.path)
        if not rows or snapshot_failed(rows[0]):
            raise SnapshotError(
                "The snapshot %s filled up while it was read (its copy-on-write space reached 100%%, so it is "
                "invalid and the files read from it cannot be trusted); no set was written. Give a larger size."
                % self.path)
        self.usage = rows[0].get("data_percent")
        _manifest.add_external(manifest, KIND, self.path, location=self.mount_point[-256:],
                               attributes=dict(origin="%s/%s" % (self.vg, self.lv), fstype=self.fstype,
                                               mount_options=",".join(self.options), size=str(rows[0].get("lv_size")),
                                               data_percent=str(self.usage), kept="no"))

    def release(self, ctx):
        try:
            if self.mounted:
                self.lvm.umount(self.mount_point)
                self.mounted = False
        finally:
            if self.name is not None and not self.mounted:
                self.lvm.remove(self.vg, self.name)
                self.name = None
