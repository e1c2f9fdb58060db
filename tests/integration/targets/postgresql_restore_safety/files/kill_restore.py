"""SIGKILL a running postgresql_restore, as a crash would, once it loads into its scratch database.

Usage: kill_restore.py --target NAME [--timeout S]

Waits for a pg_restore or psql whose -d names a scratch database of TARGET
(TARGET_lifeboat_..., as a name or as dbname='...'), checks that its parent is an
AnsiballZ_postgresql_restore process, SIGKILLs that parent, then waits until
the loader is gone too (it must die with its parent). Prints JSON
{"module": pid, "loader": pid, "scratch": name, "loader_gone": bool}.
"""

import argparse
import json
import os
import signal
import sys
import time


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def find(target):
    """(pid, scratch name) of a loader whose -d names a scratch database of ``target``."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        argv = cmdline(int(name))
        if not argv or os.path.basename(argv[0]) not in ("pg_restore", "psql") or "-d" not in argv[:-1]:
            continue
        db = argv[argv.index("-d") + 1]
        if db.startswith("dbname='") and db.endswith("'"):
            db = db[len("dbname='"):-1]
        if db.startswith(target + "_lifeboat_"):
            return int(name), db
    return None, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    loader = scratch = None
    while time.monotonic() < deadline:
        loader, scratch = find(args.target)
        if loader:
            break
        time.sleep(0.02)
    if not loader:
        print("kill_restore.py: no loader of a scratch database of %s appeared" % args.target, file=sys.stderr)
        return 1
    module = parent(loader)
    if not module or not any("AnsiballZ_postgresql_restore" in part for part in cmdline(module)):
        print("kill_restore.py: the loader's parent %s is not postgresql_restore" % module, file=sys.stderr)
        return 1
    os.kill(module, signal.SIGKILL)
    gone_by = time.monotonic() + 10
    while alive(loader) and time.monotonic() < gone_by:
        time.sleep(0.05)
    print(json.dumps({"module": module, "loader": loader, "scratch": scratch, "loader_gone": not alive(loader)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
