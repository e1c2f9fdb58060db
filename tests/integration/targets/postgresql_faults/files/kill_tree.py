"""SIGKILL a module process, as a crash would, and report what it leaves behind.

Usage:
  kill_tree.py --pid N --expect SUBSTRING [--missing-ok] [--only-root] [--wait-child NAME]
  kill_tree.py --under JID --expect SUBSTRING [--only-root] [--wait-child NAME]
  kill_tree.py --child-arg PREFIX --wait-child NAME --expect SUBSTRING [--only-root]

The victim is named by pid; or found below the process whose command line
holds the argument JID (an async job's wrapper); or it is the parent of a
process called NAME with an argument that starts with PREFIX (a name unique to
the test, such as its scratch database), found as soon as that process runs.
Either way the victim's command line must contain SUBSTRING, so that a reused
or wrong pid is never killed.

--wait-child NAME waits until a process called NAME runs (not a zombie) below the victim.
Before the kill, the secrets its children were handed are noted: the
PGPASSFILE in their environment and the identity file of ``age -i``; for a
``/dev/fd/N`` name, what that descriptor is (a memfd or a file on disk).

Without --only-root the victim and all its descendants are killed (as an
operator would clean up). With --only-root only the victim is killed: its
descendants must then die on their own within --grace seconds; any that do
not are reported as "survivors" (and then killed, so that nothing is left).
The victim's own children are held still just before (ptrace interrupt: they
stay stopped, and a SIGKILL still kills them), so that none can pass for dead
by finishing its work in the meantime: a held child goes away only if the
kernel kills it because its parent died. (SIGSTOP would not do: the kernel
sends SIGHUP to stopped processes whose group becomes orphaned.) Deeper
descendants (the workers of pg_restore -j) keep running, and must leave when
their parent goes.

Prints JSON {"killed": [{pid, comm}], "children": [{pid, comm}], "survivors": [...],
"secrets": [{pid, comm, what, path, target, on_disk_after}]}.
"""

import argparse
import ctypes
import ctypes.util
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


def cmdline(pid):
    return (read("/proc/%d/cmdline" % pid) or b"").split(b"\0")


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


PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    return libc


def hold(pids):
    """Stop each process in ptrace's interrupt stop; return the ones held."""
    libc = _libc()
    held = []
    for pid in pids:
        if libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
            continue
        if libc.ptrace(PTRACE_INTERRUPT, pid, None, None) != 0:
            continue
        try:
            os.waitpid(pid, WALL)
        except ChildProcessError:
            continue
        held.append(pid)
    return held


def release(pids):
    """Collect the tracing state of held processes that are gone (tracing ends with this process anyway)."""
    for pid in pids:
        try:
            os.waitpid(pid, WALL | os.WNOHANG)
        except ChildProcessError:
            pass


def state(pid):
    stat = read("/proc/%d/stat" % pid)
    if not stat:
        return None
    text = stat.decode("ascii", "replace")
    return text[text.rfind(")") + 2:].split()[0]


def alive(pid):
    return state(pid) not in (None, "Z", "X")


def find_under(jid, expect, deadline):
    """The process below the one whose argv holds ``jid`` whose argv holds ``expect``."""
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            if jid.encode() not in cmdline(int(name)):
                continue
            for pid in [int(name)] + descendants(int(name)):
                if expect.encode() in b" ".join(cmdline(pid)):
                    return pid
        time.sleep(0.05)
    return None


def find_parent_of(name, prefix, expect, deadline):
    """The parent (holding ``expect`` in its argv) of a live ``name`` process with an argument starting with ``prefix``."""
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or comm(int(entry)) != name or not alive(int(entry)):
                continue
            if not any(arg.startswith(prefix.encode()) for arg in cmdline(int(entry))):
                continue
            parent = ppid_map().get(int(entry))
            if parent and expect.encode() in b" ".join(cmdline(parent)):
                return parent
        time.sleep(0.01)
    return None


def secrets_of(pid):
    """The secret files a process was pointed at, and what each really is."""
    found = []
    environ = read("/proc/%d/environ" % pid) or b""
    for entry in environ.split(b"\0"):
        if entry.startswith(b"PGPASSFILE="):
            found.append(("PGPASSFILE", entry.split(b"=", 1)[1].decode("utf-8", "replace")))
    argv = [a.decode("utf-8", "replace") for a in cmdline(pid)]
    if comm(pid) == "age" and "-i" in argv[:-1]:
        found.append(("age -i", argv[argv.index("-i") + 1]))
    result = []
    for what, path in found:
        if path == os.devnull:
            continue
        target = path
        if path.startswith("/dev/fd/"):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, path[len("/dev/fd/"):]))
            except OSError:
                continue  # a descriptor this process does not hold gives it nothing to read
        result.append({"pid": pid, "comm": comm(pid), "what": what, "path": path, "target": target})
    return result


def on_disk(secret):
    """Whether a copy of the secret is still a file on disk (a memfd never is)."""
    for candidate in (secret["path"], secret["target"]):
        if not candidate or candidate.startswith(("/dev/fd/", "/memfd:")) or candidate.endswith(" (deleted)"):
            continue
        if os.path.exists(candidate):
            return True
    return False


def main():
    parser = argparse.ArgumentParser()
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--pid", type=int)
    which.add_argument("--under")
    which.add_argument("--child-arg")
    parser.add_argument("--expect", required=True)
    parser.add_argument("--missing-ok", action="store_true")
    parser.add_argument("--only-root", action="store_true")
    parser.add_argument("--wait-child")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--grace", type=float, default=5)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    pid = args.pid
    if args.child_arg:
        pid = find_parent_of(args.wait_child, args.child_arg, args.expect, deadline)
        if pid is None:
            print("kill_tree: no %s with an argument %s* below a %s process"
                  % (args.wait_child, args.child_arg, args.expect), file=sys.stderr)
            return 1
    if args.under:
        pid = find_under(args.under, args.expect, deadline)
        if pid is None and args.missing_ok:
            print(json.dumps({"killed": [], "children": [], "survivors": [], "secrets": []}))
            return 0
        if pid is None:
            print("kill_tree: no %s process below job %s" % (args.expect, args.under), file=sys.stderr)
            return 1
    if args.expect.encode() not in b" ".join(cmdline(pid)):
        if args.missing_ok:
            print(json.dumps({"killed": [], "children": [], "survivors": [], "secrets": []}))
            return 0
        print("kill_tree: pid %d is not a %s process" % (pid, args.expect), file=sys.stderr)
        return 1
    if args.wait_child:
        while not any(comm(child) == args.wait_child and alive(child) for child in descendants(pid)):
            if time.monotonic() > deadline or not alive(pid):
                print("kill_tree: %s never ran below pid %d" % (args.wait_child, pid), file=sys.stderr)
                return 1
            time.sleep(0.02)
    children = [(child, comm(child)) for child in descendants(pid)]
    secrets = []
    for child, dummy in children:
        secrets.extend(secrets_of(child))
    held = []
    if args.only_root:
        parents = ppid_map()
        held = hold([child for child, dummy in children if parents.get(child) == pid and alive(child)])
    victims = [(pid, comm(pid))] + ([] if args.only_root else children)
    for victim, dummy in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    grace = time.monotonic() + (args.grace if args.only_root else 30)
    watched = [(pid, comm(pid))] + children
    while any(alive(p) for p, dummy in watched) and time.monotonic() < grace:
        time.sleep(0.05)
    survivors = [{"pid": p, "comm": name} for p, name in children if alive(p)]
    for survivor in survivors:
        try:
            os.kill(survivor["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.1)
    release(held)
    if alive(pid):
        print("kill_tree: pid %d still alive after SIGKILL" % pid, file=sys.stderr)
        return 1
    for secret in secrets:
        secret["on_disk_after"] = on_disk(secret)
    print(json.dumps({
        "killed": [{"pid": p, "comm": name} for p, name in victims],
        "children": [{"pid": p, "comm": name} for p, name in children],
        "held": held,
        "survivors": survivors,
        "secrets": secrets,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
