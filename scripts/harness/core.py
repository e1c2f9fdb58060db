# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every throwaway-server script needs: errors, facts, ports, users, locks."""

import contextlib
import fcntl
import grp
import json
import os
import pwd
import socket
import subprocess
import sys


class Fail(Exception):
    """An expected error: reported as one line, exit status 1."""


def log(prog, msg):
    """Progress on stderr (stdout is kept for the JSON facts)."""
    print("%s: %s" % (prog, msg), file=sys.stderr, flush=True)


def print_facts(facts, indent=2):
    """The result of a command: one JSON document on stdout, keys sorted."""
    print(json.dumps(facts, indent=indent, sort_keys=True), flush=True)


def cli_main(parser, argv=None, prog=None):
    """Parse ``argv``, run ``args.func(args)`` and turn expected failures into one line on stderr.

    Returns the exit status: the command's own, 1 for ``Fail`` and ``OSError``,
    130 for an interrupt. Never a traceback for an expected failure.
    """
    args = parser.parse_args(argv)
    prog = prog or parser.prog
    where = "%s %s" % (prog, getattr(args, "command", "") or "")
    try:
        return args.func(args)
    except Fail as exc:
        print("%s: error: %s" % (where.strip(), exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        return 130
    except OSError as exc:
        print("%s: error: %s" % (where.strip(), exc), file=sys.stderr)
        return 1


# ------------------------------------------------------------------ ports

def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_free(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port, host="127.0.0.1", timeout=1.0):
    """Does something accept TCP connections on ``host:port``?"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------ users

def as_root():
    return os.geteuid() == 0


def user_ids(name):
    """(uid, gid) of OS user ``name``; Fail if there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise Fail("the %r OS user does not exist (is its server package installed?)" % name)
    return entry.pw_uid, entry.pw_gid


def user_popen_args(name):
    """Keyword arguments for subprocess that run a child as OS user ``name``.

    Only root switches users; anyone else runs the child as themselves (the
    cluster then belongs to them). The child gets the user's groups and HOME,
    and keeps the caller's pid relation: no ``runuser`` in between, so a
    daemon's pid is the server's own.
    """
    if not as_root():
        return {}
    entry = pwd.getpwnam(name) if name else None
    if entry is None or entry.pw_uid == os.geteuid():
        return {}
    return {
        "user": entry.pw_uid,
        "group": entry.pw_gid,
        "extra_groups": [g.gr_gid for g in grp.getgrall() if name in g.gr_mem],
        "env_update": {"HOME": entry.pw_dir, "USER": name, "LOGNAME": name},
    }


def run(argv, user=None, cwd="/", env=None, input=None, stdin=None, check=True, capture=True,
        what=None):  # pylint: disable=redefined-builtin
    """Run ``argv`` (as OS user ``user`` when root) and return the CompletedProcess.

    With ``check``, a non-zero exit becomes a Fail naming ``what`` (or the
    program) and the last line of its stderr.
    """
    extra = user_popen_args(user)
    child_env = dict(env if env is not None else os.environ)
    child_env.update(extra.pop("env_update", {}))
    try:
        proc = subprocess.run(  # the exit status is checked below
            list(argv), cwd=cwd, input=input, stdin=stdin, env=child_env, check=False,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            **extra
        )
    except FileNotFoundError as exc:
        raise Fail("cannot run %s: %s" % (argv[0], exc.strerror))
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip() if capture and proc.stderr else ""
        last = err.splitlines()[-1] if err else "exit status %d" % proc.returncode
        raise Fail("%s failed: %s" % (what or os.path.basename(argv[0]), last))
    return proc


def chown_to(path, user):
    """Give ``path`` to OS user ``user`` (root only; a no-op otherwise)."""
    if as_root() and user:
        uid, gid = user_ids(user)
        os.chown(path, uid, gid)


# ------------------------------------------------------------------ processes

def proc_state(pid):
    """State letter of a process from /proc (None if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def proc_alive(pid):
    """True for a live process; a zombie or a missing one is not alive."""
    return proc_state(pid) not in (None, "Z", "X", "x")


def proc_cmdline(pid):
    """The argv of ``pid`` as a list of bytes ([] if it is gone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


# ------------------------------------------------------------------ files

@contextlib.contextmanager
def dir_lock(directory, name):
    """Serialise commands on the same directory (an flock on ``directory/name``)."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise Fail("cannot create lock file %s: %s" % (path, exc.strerror))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_json(path):
    """A JSON object from ``path``; {} when the file is missing; Fail when it is unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise Fail("cannot read %s: %s" % (path, exc))


def write_json(path, data, mode=0o644):
    """Replace ``path`` atomically with ``data`` as indented JSON."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_lines(path, offset=0, limit=50):
    """The last ``limit`` non-empty lines of a log written after ``offset``."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(offset, file_size(path) - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines()[-limit:] if line.strip()]


def log_error(path, offset=0, tags=("FATAL:", "PANIC:", "ERROR:", "Error", "error:")):
    """The most useful line of a log after ``offset``: the last one with an error tag, else the last."""
    lines = log_lines(path, offset)
    for line in reversed(lines):
        if any(tag in line for tag in tags):
            return line
    return lines[-1] if lines else ""
