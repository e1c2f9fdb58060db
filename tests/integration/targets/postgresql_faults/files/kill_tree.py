"""SIGKILL one process (named by pid) and every process below it.

Usage: kill_tree.py --pid N --expect SUBSTRING [--missing-ok]

The process's command line must contain SUBSTRING, so that a reused or wrong
pid is never killed. Its descendants are collected first, then the process
itself is killed (as a crash would), then the descendants; the script waits
until they are all gone and prints JSON {"killed": [{"pid":, "comm":}]}.
"""

import argparse
import json
import os
import signal
import sys
import time


def read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def ppid_map():
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = read("/proc/%s/stat" % name)
        if not stat:
            continue
        text = stat.decode("ascii", "replace")
        fields = text[text.rfind(")") + 2:].split()
        try:
            parents[int(name)] = int(fields[1])
        except (IndexError, ValueError):
            pass
    return parents


def comm(pid):
    return (read("/proc/%d/comm" % pid) or b"?").decode("utf-8", "replace").strip()


def descendants(root):
    parents = ppid_map()
    found, todo = [], [root]
    while todo:
        current = todo.pop()
        for pid, parent in parents.items():
            if parent == current and pid not in found:
                found.append(pid)
                todo.append(pid)
    return found


def alive(pid):
    stat = read("/proc/%d/stat" % pid)
    if not stat:
        return False
    text = stat.decode("ascii", "replace")
    return text[text.rfind(")") + 2:].split()[0] not in ("Z", "X")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--missing-ok", action="store_true")
    args = parser.parse_args()
    cmdline = read("/proc/%d/cmdline" % args.pid)
    if not cmdline or args.expect.encode() not in cmdline:
        if args.missing_ok:
            print(json.dumps({"killed": []}))
            return 0
        print("kill_tree: pid %d is not a %s process" % (args.pid, args.expect), file=sys.stderr)
        return 1
    children = descendants(args.pid)
    victims = [(args.pid, comm(args.pid))] + [(pid, comm(pid)) for pid in children]
    for pid, dummy in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid, dummy in victims) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid, dummy in victims if alive(pid)]
    if left:
        print("kill_tree: still alive after SIGKILL: %s" % left, file=sys.stderr)
        return 1
    print(json.dumps({"killed": [{"pid": pid, "comm": name} for pid, name in victims]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
