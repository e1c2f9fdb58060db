#!/usr/bin/env python
"""A throwaway btrfs filesystem on a loop file for the lifeboat.backup tests and benchmark.

Commands::

  btrfsloop.py start --dir DIR [--size 512M]   # idempotent; prints {"image", "mount"} as JSON
  btrfsloop.py stop  --dir DIR [--remove]      # unmounts everything under DIR, detaches the loop

``start`` makes ``DIR/fs.img`` (a sparse file), ``mkfs.btrfs`` on it and
mounts it with ``-o loop`` on ``DIR/mnt``; a filesystem already mounted there
is reused. ``stop`` unmounts every mount under DIR, deepest first, detaches
any loop device still backed by ``DIR/fs.img`` and with ``--remove`` deletes
DIR. It needs root (mount). Expected failures print one line on stderr and
exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys


class HarnessError(Exception):
    """An expected error: reported as one line, exit status 1."""


def mounts_under(path):
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            target = line.split()[4].replace("\\040", " ")
            if target == path or target.startswith(path.rstrip("/") + "/"):
                found.append(target)
    return sorted(set(found), key=len, reverse=True)


def run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError("%s failed: %s" % (" ".join(argv), (proc.stderr or proc.stdout).strip()))
    return proc.stdout


def start(directory, size):
    if os.geteuid() != 0:
        raise HarnessError("btrfsloop needs root to mount a loop file.")
    image = os.path.join(directory, "fs.img")
    mount = os.path.join(directory, "mnt")
    os.makedirs(mount, exist_ok=True)
    if os.path.realpath(mount) not in mounts_under(mount):
        if not os.path.exists(image):
            with open(image, "wb") as handle:
                handle.truncate(parse_size(size))
            run(["mkfs.btrfs", "-q", "-f", image])
        run(["mount", "-o", "loop", image, mount])
    return {"image": image, "mount": os.path.realpath(mount)}


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def stop(directory, remove):
    if not os.path.isdir(directory):
        return
    for target in mounts_under(directory):
        run(["umount", target])
    image = os.path.join(directory, "fs.img")
    if os.path.exists(image):
        for line in run(["losetup", "-j", image]).splitlines():
            device = line.split(":", 1)[0]
            if device:
                subprocess.run(["losetup", "-d", device], check=False)
    if remove:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--size", default="512M")
    parser.add_argument("--remove", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(json.dumps(start(os.path.abspath(args.dir), args.size)))
        else:
            stop(os.path.abspath(args.dir), args.remove)
    except (HarnessError, OSError) as exc:
        sys.stderr.write("%s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
