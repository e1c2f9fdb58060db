# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake of the command-line contract of lvcreate, lvs, lvremove (LVM 2.03), mount, umount and blkid (util-linux 2.38).

The kernel of the machines that test this collection has no device-mapper, so
``lvcreate`` cannot make a snapshot there. The snapshot module is exercised
against this stand-in, which mimics, from the tools' manual pages and source
(lvm2 tools/lvcreate.c, tools/toollib.c, lib/report; util-linux sys-utils/mount.c,
umount.c, libmount's error messages), the parts the module uses:

- ``lvcreate --snapshot --name N (--size S | --extents P%FREE|P%ORIGIN|P%VG) [--addtag T]... [--yes] VG/LV``:
  ``  Logical volume "N" created.``; errors and exit status 5 for a missing VG
  (``  Volume group "vg" not found`` + ``  Cannot process volume group vg``), a
  missing origin, a name already used, insufficient free space; an invalid
  size is exit status 3. Sizes are rounded up to the extent size.
- ``lvs --reportformat json [--units b --nosuffix] -o f1,f2,... [VG | VG/LV]...``:
  the JSON report (``{"report": [{"lv": [{field: "string"}]}]}``), fields
  lv_name, vg_name, lv_attr, lv_path, origin, data_percent, lv_tags, lv_size,
  vg_free, vg_extent_size, vg_size.
- ``lvremove -f|--yes VG/LV``: ``  Logical volume "N" successfully removed.``;
  a mounted LV is refused (``Logical volume vg/N contains a filesystem in use.``).
- ``mount -t T -o OPTS DEV TARGET`` and ``umount TARGET``: exit status 32 and
  util-linux's lines for a missing device, a target that is not a directory,
  a device already mounted there, an invalid snapshot, an XFS snapshot mounted
  without ``nouuid`` while its origin is mounted, ``not mounted`` and
  ``target is busy`` (a process whose cwd or an open file is below the target,
  found through /proc as the kernel would).
- ``blkid -o value -s TYPE DEV``: the LV's filesystem type; exit status 2 when
  there is none.

State lives under ``$LIFEBOAT_FAKE_LVM_ROOT``: ``vg/<vg>.json`` ({"extent_size",
"extents"}), ``lv/<vg>/<lv>/meta.json`` ({"size", "origin", "tags", "fstype",
"invalid"}) and ``lv/<vg>/<lv>/data/`` (the volume's files). A logical volume
is a directory; a snapshot is a copy of its origin's files frozen at lvcreate
time. Its copy-on-write use (``data_percent``) is the number of bytes of the
origin changed since (by size, mtime, inode of the origin and content of
changed sizes, rounded up to 4 KiB chunks) over its size; at 100% it becomes
invalid for good, as a real overflowing snapshot does. ``mount`` copies the
volume's files into the target (``cp -a``) and records the mount in
``mounts.json``; ``umount`` empties the target and forgets it. Device paths are
the real ones (``/dev/<vg>/<lv>``), resolved through the state, not through /dev.
What the fake does not do: enforce read-only access on the copy (root can
write it), or keep inode numbers and ctimes (real snapshots do: see
docs/snapshots.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

NAME_RE = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}\Z")
TAG_RE = re.compile(r"^[A-Za-z0-9_+.\-/=!:&#]{1,1024}\Z")
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([bBsSkKmMgGtTpPeE]?)\Z")
EXTENTS_RE = re.compile(r"^(\d+)%(FREE|ORIGIN|VG)\Z")
UNITS = {"": 2 ** 20, "b": 1, "s": 512, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40, "p": 2 ** 50,
         "e": 2 ** 60}
CHUNK = 4096
FIELDS = ("lv_name", "vg_name", "lv_attr", "lv_path", "origin", "data_percent", "lv_tags", "lv_size", "vg_free",
          "vg_extent_size", "vg_size")


def root():
    return os.environ["LIFEBOAT_FAKE_LVM_ROOT"]


def err(*lines):
    for line in lines:
        sys.stderr.write(line + "\n")


def load(path, default=None):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def save(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump(value, handle, sort_keys=True)
    os.replace(path + ".tmp", path)


def vg_path(vg):
    return os.path.join(root(), "vg", vg + ".json")


def lv_dir(vg, lv):
    return os.path.join(root(), "lv", vg, lv)


def lvs_of(vg):
    base = os.path.join(root(), "lv", vg)
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def meta(vg, lv):
    return load(os.path.join(lv_dir(vg, lv), "meta.json"))


def mounts():
    return load(os.path.join(root(), "mounts.json"), {})


def save_mounts(value):
    save(os.path.join(root(), "mounts.json"), value)


def extents(size, extent):
    return -(-size // extent)


def vg_used(vg):
    info = load(vg_path(vg))
    return sum(extents(meta(vg, lv)["size"], info["extent_size"]) for lv in lvs_of(vg))


# ------------------------------------------------------------------ the setup a test does (not an lvm tool)

def create_vg(vg, size, extent_size=4 * 2 ** 20):
    save(vg_path(vg), {"extent_size": extent_size, "extents": size // extent_size})


def create_lv(vg, lv, size, fstype="xfs"):
    """An origin volume; returns its data directory (the files a mount of it would show)."""
    data = os.path.join(lv_dir(vg, lv), "data")
    os.makedirs(data)
    save(os.path.join(lv_dir(vg, lv), "meta.json"),
         {"size": size, "origin": None, "tags": [], "fstype": fstype, "invalid": False})
    return data


# ------------------------------------------------------------------ copy-on-write use

def _tree(base):
    found = {}
    for top, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            found[os.path.relpath(path, base)] = (st.st_size, st.st_mtime_ns, st.st_mode, path)
    return found


def _same_content(a, b):
    with open(a, "rb") as left, open(b, "rb") as right:
        while True:
            x, y = left.read(1 << 16), right.read(1 << 16)
            if x != y:
                return False
            if not x:
                return True


def cow_used(vg, lv):
    """Bytes the snapshot vg/lv holds for origin blocks changed since it was taken."""
    snap = meta(vg, lv)
    frozen = _tree(os.path.join(lv_dir(vg, lv), "frozen"))
    live = _tree(os.path.join(lv_dir(vg, snap["origin"]), "data"))
    used = CHUNK  # the exception store's header
    for rel, (size, mtime, mode, path) in live.items():
        old = frozen.get(rel)
        if old is None:
            used += extents(size, CHUNK) * CHUNK + CHUNK
        elif old[0] != size or old[1] != mtime or old[2] != mode:
            if os.path.isfile(path) and not os.path.islink(path) and old[0] == size and \
                    _same_content(path, old[3]) and old[2] == mode:
                continue
            used += extents(max(size, old[0]), CHUNK) * CHUNK
    for rel, (size, mtime, mode, path) in frozen.items():
        if rel not in live:
            used += CHUNK
    return used


def percent(vg, lv):
    """data_percent of snapshot vg/lv; an overflowing snapshot becomes invalid for good."""
    info = meta(vg, lv)
    if info["invalid"]:
        return 100.0
    value = min(100.0, 100.0 * cow_used(vg, lv) / info["size"])
    if value >= 100.0:
        info["invalid"] = True
        save(os.path.join(lv_dir(vg, lv), "meta.json"), info)
    return value


# ------------------------------------------------------------------ lvcreate

def parse_size(text):
    match = SIZE_RE.match(text)
    if not match:
        return None
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def lvcreate(args):
    opts = {"tags": []}
    position = []
    it = iter(args)
    for arg in it:
        if arg in ("-s", "--snapshot"):
            opts["snapshot"] = True
        elif arg in ("-y", "--yes"):
            pass
        elif arg in ("-n", "--name", "-L", "--size", "-l", "--extents", "--addtag"):
            try:
                value = next(it)
            except StopIteration:
                err("  Option %s needs a value." % arg)
                return 3
            key = {"-n": "name", "--name": "name", "-L": "size", "--size": "size", "-l": "extents",
                   "--extents": "extents", "--addtag": "tag"}[arg]
            if key == "tag":
                opts["tags"].append(value)
            else:
                opts[key] = value
        elif arg.startswith("-"):
            err("lvcreate: unrecognized option '%s'" % arg, "", "  Error during parsing of command line.")
            return 3
        else:
            position.append(arg)
    if not opts.get("snapshot") or len(position) != 1 or "/" not in position[0] or "name" not in opts:
        err("  This fake lvcreate only takes --snapshot --name N (--size|--extents) [--addtag T] VG/LV.")
        return 3
    vg, origin = position[0].split("/", 1)
    name = opts["name"]
    if not NAME_RE.match(name) or name in (".", ".."):
        err('  Logical volume name "%s" is invalid.' % name, "  Run `lvcreate --help' for more information.")
        return 3
    for tag in opts["tags"]:
        if not TAG_RE.match(tag):
            err("  Tag must consist of only [A-Za-z0-9_+.-/=!:&#] and be up to 1024 characters")
            return 3
    if ("size" in opts) == ("extents" in opts):
        err("  Please specify either size or extents (not both).")
        return 3
    if "size" in opts:
        size = parse_size(opts["size"])
        if size is None:
            err("  Invalid argument for --size: %s" % opts["size"], "  Error during parsing of command line.")
            return 3
    else:
        if not EXTENTS_RE.match(opts["extents"]):
            err("  Invalid argument for --extents: %s" % opts["extents"], "  Error during parsing of command line.")
            return 3
    info = load(vg_path(vg))
    if info is None:
        err('  Volume group "%s" not found' % vg, "  Cannot process volume group %s" % vg)
        return 5
    if meta(vg, origin) is None:
        err("  Snapshot origin LV %s not found in Volume group %s." % (origin, vg))
        return 5
    if meta(vg, name) is not None:
        err('  Logical Volume "%s" already exists in volume group "%s"' % (name, vg))
        return 5
    extent = info["extent_size"]
    free = info["extents"] - vg_used(vg)
    if "size" in opts:
        need = extents(size, extent)
        if need * extent != size:
            err("  Rounding up size to full physical extent %.2f MiB" % (need * extent / 2.0 ** 20))
    else:
        match = EXTENTS_RE.match(opts["extents"])
        base = {"FREE": free, "VG": info["extents"],
                "ORIGIN": extents(meta(vg, origin)["size"], extent)}[match.group(2)]
        need = base * int(match.group(1)) // 100
        if need == 0:
            err("  Insufficient free space: 0 extents needed, but 0 available" if free == 0 else
                "  Logical volume size must be at least 1 extent.")
            return 5
    if need > free:
        err('  Volume group "%s" has insufficient free space (%d extents): %d required.' % (vg, free, need))
        return 5
    base = lv_dir(vg, name)
    os.makedirs(base)
    subprocess.check_call(["cp", "-a", os.path.join(lv_dir(vg, origin), "data"), os.path.join(base, "frozen")])
    subprocess.check_call(["cp", "-a", os.path.join(base, "frozen"), os.path.join(base, "data")])
    save(os.path.join(base, "meta.json"), {"size": need * extent, "origin": origin, "tags": sorted(set(opts["tags"])),
                                           "fstype": meta(vg, origin)["fstype"], "invalid": False})
    sys.stdout.write('  Logical volume "%s" created.\n' % name)
    return 0


# ------------------------------------------------------------------ lvs

def lv_attr(vg, lv, info):
    mounted = "/dev/%s/%s" % (vg, lv) in mounts().values()
    if info["origin"]:
        if info["invalid"]:
            return "Swi-I-s---"
        return "swi-a%ss---" % ("o" if mounted else "-")
    has_snap = any(meta(vg, other)["origin"] == lv for other in lvs_of(vg))
    return "%swi-ao----" % ("o" if has_snap else "-")


def lvs(args):
    fields = ["lv_name", "vg_name", "lv_attr", "lv_size", "origin", "data_percent"]
    selection = []
    json_out = False
    it = iter(args)
    for arg in it:
        if arg in ("-o", "--options"):
            fields = next(it).split(",")
        elif arg == "--reportformat":
            json_out = next(it) == "json"
        elif arg == "--units":
            next(it)
        elif arg in ("--nosuffix", "--noheadings", "-a", "--all"):
            pass
        elif arg.startswith("-"):
            err("lvs: unrecognized option '%s'" % arg, "", "  Error during parsing of command line.")
            return 3
        else:
            selection.append(arg)
    for field in fields:
        if field not in FIELDS:
            err("  Unrecognised field: %s" % field)
            return 5
    groups = sorted(name[:-5] for name in os.listdir(os.path.join(root(), "vg"))) if not selection else []
    rows, rc = [], 0
    wanted = []
    for item in selection:
        vg, lv = item.partition("/")[::2]
        if load(vg_path(vg)) is None:
            err('  Volume group "%s" not found' % vg, "  Cannot process volume group %s" % vg)
            rc = 5
            continue
        if lv and meta(vg, lv) is None:
            err('  Failed to find logical volume "%s/%s"' % (vg, lv))
            rc = 5
            continue
        wanted += [(vg, lv)] if lv else [(vg, name) for name in lvs_of(vg)]
    for vg in groups:
        wanted += [(vg, name) for name in lvs_of(vg)]
    for vg, lv in wanted:
        used = "%.2f" % percent(vg, lv) if meta(vg, lv)["origin"] else ""  # may mark it invalid: first
        info, group = meta(vg, lv), load(vg_path(vg))
        free = (group["extents"] - vg_used(vg)) * group["extent_size"]
        values = {"lv_name": lv, "vg_name": vg, "lv_attr": lv_attr(vg, lv, info), "lv_path": "/dev/%s/%s" % (vg, lv),
                  "origin": info["origin"] or "", "data_percent": used,
                  "lv_tags": ",".join(info["tags"]), "lv_size": str(info["size"]), "vg_free": str(free),
                  "vg_extent_size": str(group["extent_size"]),
                  "vg_size": str(group["extents"] * group["extent_size"])}
        rows.append(dict((field, values[field]) for field in fields))
    if json_out:
        sys.stdout.write(json.dumps({"report": [{"lv": rows}]}, indent=2) + "\n")
    else:
        for row in rows:
            sys.stdout.write("  " + " ".join(row[field] for field in fields) + "\n")
    return rc


# ------------------------------------------------------------------ lvremove

def lvremove(args):
    targets = [a for a in args if not a.startswith("-")]
    rc = 0
    for item in targets:
        vg, lv = item.partition("/")[::2]
        if load(vg_path(vg)) is None:
            err('  Volume group "%s" not found' % vg, "  Cannot process volume group %s" % vg)
            rc = 5
            continue
        info = meta(vg, lv)
        if info is None:
            err('  Failed to find logical volume "%s/%s"' % (vg, lv))
            rc = 5
            continue
        if "/dev/%s/%s" % (vg, lv) in mounts().values() or info["origin"] is None:
            err("  Logical volume %s/%s contains a filesystem in use." % (vg, lv))
            rc = 5
            continue
        shutil.rmtree(lv_dir(vg, lv))
        sys.stdout.write('  Logical volume "%s" successfully removed.\n' % lv)
    return rc


# ------------------------------------------------------------------ mount, umount, blkid

def device(path):
    match = re.match(r"^/dev/([^/]+)/([^/]+)\Z", path or "")
    if not match or meta(match.group(1), match.group(2)) is None:
        return None
    return match.group(1), match.group(2)


def mount(args):
    options, fstype, position = [], None, []
    it = iter(args)
    for arg in it:
        if arg == "-o":
            options += next(it).split(",")
        elif arg == "-t":
            fstype = next(it)
        elif arg.startswith("-"):
            err("mount: invalid option -- '%s'" % arg.lstrip("-"))
            return 1
        else:
            position.append(arg)
    if len(position) != 2:
        err("mount: bad usage")
        return 1
    dev, target = position
    found = device(dev)
    if found is None:
        err("mount: %s: special device %s does not exist." % (target, dev))
        return 32
    if not os.path.isdir(target):
        err("mount: %s: mount point does not exist." % target)
        return 32
    table = mounts()
    if table.get(target) == dev:
        err("mount: %s: %s already mounted on %s." % (target, dev, target))
        return 32
    info = meta(*found)
    kind = fstype or info["fstype"]
    if kind != info["fstype"] or info["invalid"] or (kind == "xfs" and info["origin"] and "nouuid" not in options):
        # A wrong type, an invalid snapshot (an I/O error on read) and XFS's duplicate UUID all read the same.
        err("mount: %s: wrong fs type, bad option, bad superblock on %s, missing codepage or helper program, "
            "or other error." % (target, dev))
        if kind == "xfs" and info["origin"] and "nouuid" not in options:
            err("       dmesg(1) may have more information after failed mount system call.")
        return 32
    subprocess.check_call(["cp", "-a", os.path.join(lv_dir(*found), "data") + "/.", target])
    table[target] = dev
    save_mounts(table)
    return 0


def busy(target):
    prefix = target.rstrip("/") + "/"
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        paths = []
        try:
            paths.append(os.readlink("/proc/%s/cwd" % pid))
            for fd in os.listdir("/proc/%s/fd" % pid):
                paths.append(os.readlink("/proc/%s/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if any(p == target or p.startswith(prefix) for p in paths):
            return True
    return False


def umount(args):
    position = [a for a in args if not a.startswith("-")]
    if len(position) != 1:
        err("umount: bad usage")
        return 1
    target = os.path.abspath(position[0])
    table = mounts()
    if target not in table:
        if not os.path.exists(target):
            err("umount: %s: no mount point specified." % target)
        else:
            err("umount: %s: not mounted." % target)
        return 32
    if busy(target):
        err("umount: %s: target is busy." % target)
        return 32
    for name in os.listdir(target):
        path = os.path.join(target, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    del table[target]
    save_mounts(table)
    return 0


def blkid(args):
    position = [a for a in args if not a.startswith("-") and a not in ("value", "TYPE")]
    found = device(position[-1]) if position else None
    if found is None or not meta(*found)["fstype"]:
        return 2
    sys.stdout.write(meta(*found)["fstype"] + "\n")
    return 0


TOOLS = {"lvcreate": lvcreate, "lvs": lvs, "lvremove": lvremove, "mount": mount, "umount": umount, "blkid": blkid}


def main(tool, args):
    if args == ["--version"]:
        sys.stdout.write({"mount": "mount from util-linux 2.38.1\n", "umount": "umount from util-linux 2.38.1\n",
                          "blkid": "blkid from util-linux 2.38.1  (libblkid 2.38.1, 04-Aug-2022)\n"}.get(
            tool, "  LVM version:     2.03.16(2) (2022-05-18)\n"))
        return 0
    return TOOLS[tool](args)
