# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The ``ssh`` store: a directory on a backup server reached over SSH.

The remote layout is exactly the ``dir`` kind's (docs/stores.md), so a tool
that works on a ``dir`` store (rsync ``--link-dest``) works on it too.

Every operation is one ``ssh`` run of a fixed remote command::

    python3 -I -c 'import sys;exec(sys.stdin.buffer.read(N))'

whose standard input carries the helper program (``_store_ssh_helper.py``),
then one request as data (JSON: the operation, the root, the checked names),
then, for uploads, the bytes in frames. No shell string is ever built from
user input; user, host and port are separate argv items after ``--`` and
option flags; the private key reaches ssh as ``/proc/<pid>/fd/N`` (a memfd of
this process, or a 0600 file removed afterwards), never in argv. ``BatchMode``
and ``StrictHostKeyChecking`` are on: nothing prompts, an unknown host key fails.

All the runs of one store object share one SSH connection: the first starts an
OpenSSH control master on a socket in a private 0700 directory, with a short
``ControlPersist``; each operation then opens a session on it, which costs no
new handshake. ``close`` (also on garbage collection and at process exit)
ends the master with ``ssh -O exit``; after a killed run it ends by itself
once it has been idle for ``CONTROL_PERSIST`` seconds.

Payloads stream through the ssh channel into ``<set_id>.partial`` on the
server with no local copy; ``commit`` writes the manifest last and renames
the set into place there.
"""

from __future__ import annotations

import atexit
import glob
import io
import json
import os
import pkgutil
import re
import secrets
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
import weakref

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, SecretFile, utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _runner
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_ssh_helper  # noqa: F401  pylint: disable=unused-import
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import (
    DELETING_SUFFIX,
    LOCK_NAME,
    MAX_LOCK_BYTES,
    OBJECTS_DIR,
    PARTIAL_SUFFIX,
    StoreError,
    UnsafeEntryError,
    escape,
)

OPTIONS = dict(
    path=dict(type="path"),
    allow_shared=dict(type="bool", default=False),
    host=dict(type="str"),
    user=dict(type="str"),
    port=dict(type="int", default=22),
    private_key=dict(type="str", no_log=True),
    private_key_file=dict(type="path"),
    known_hosts=dict(type="str"),
    connect_timeout=dict(type="int", default=10),
)

HOST_RE = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,252}|\[?[0-9A-Fa-f:.]+(?:%[A-Za-z0-9]+)?\]?)\Z")
# A known_hosts line (markers, hashed or plain host patterns, key type, key), not a file name.
KNOWN_HOSTS_LINE_RE = re.compile(r"^(?:@\S+\s+)?\S+\s+(?:ssh-|ecdsa-|sk-)\S+\s+[A-Za-z0-9+/=]+")
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")
FRAME = struct.Struct(">Q")
# Upload frames: what one ``write`` hands on at most.
MAX_BLOCK = 8 * 1024 * 1024
STDERR_KEEP = 8192
OBJECT_PART_PATTERN = _stores.OBJECT_PART_RE.pattern
SET_ENTRY_PATTERN = r"^\d{8}T\d{6}Z-"
# The shared connection's master ends by itself when it has had no session for this long (seconds).
CONTROL_PERSIST = 30
# Sessions open at once on the shared connection; sshd refuses more than MaxSessions (10 by default),
# so the runs beyond this many get a connection of their own.
MUX_SESSIONS = 8
# A control directory left empty by a killed run is removed by a later run after this long (seconds).
CONTROL_DIR_MAX_AGE = 600
CONTROL_PREFIX = "lifeboat-ssh-"
# A store path rsync snapshots can use: no wildcard, backslash or control character (rsync gets the paths with
# --protect-args, never through a shell; these are refused all the same).
TREE_ROOT_RE = re.compile(r"^/[^\x00-\x1f\x7f*?\[\]\\]*\Z")
_RESUME_DIR = ".resume"
# How deep a fetched tree may go (as _trees.MAX_DEPTH).
TREE_MAX_DEPTH = 256
# Stores with a live control master, closed at process exit.
_MASTERS = weakref.WeakSet()


def _helper_source():
    try:
        data = pkgutil.get_data("ansible_collections.lifeboat.backup.plugins.module_utils", "_store_ssh_helper.py")
    except (OSError, ValueError):
        data = None
    if not data and os.path.isfile(getattr(_store_ssh_helper, "__file__", None) or ""):
        # A plain checkout on sys.path (a namespace package has no loader for get_data).
        with open(_store_ssh_helper.__file__, "rb") as handle:
            data = handle.read()
    if not data:
        raise StoreError("The ssh store's helper program is missing from the collection.")
    return data


_HELPER = None


def helper_source():
    global _HELPER
    if _HELPER is None:
        _HELPER = _helper_source()
    return _HELPER


def remote_command(size):
    """The fixed remote command: read the helper (``size`` bytes) from standard input and run it as __main__."""
    return ("python3 -I -c 'import sys;exec(compile(sys.stdin.buffer.read(%d),\"lifeboat-ssh-helper\",\"exec\"),"
            "{\"__name__\":\"__main__\"})'" % size)


def _frame(data):
    return FRAME.pack(len(data)) + data


def _ssh_quote(value):
    """A value for ``ssh -o Name=value``: %-tokens escaped, double-quoted."""
    if '"' in value or "\n" in value:
        raise StoreError("The path %r cannot be handed to ssh (it holds a quote or a newline)." % escape(value))
    return '"%s"' % value.replace("%", "%%")


class SshError(StoreError):
    """ssh could not reach the server, or the helper could not run there."""


def explain_ssh_failure(rc, stderr, where):
    """One sentence for an ssh run that ended before the helper answered."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
    last = escape(lines[-1], 300) if lines else "no message"
    text = "\n".join(lines)
    if "Host key verification failed" in text or "host key is known" in text or "REMOTE HOST IDENTIFICATION" in text \
            or "No matching host key" in text:
        return ("The host key of %s is not in known_hosts or does not match it, so the connection was refused; "
                "add the server's key to the store's known_hosts after checking its fingerprint (%s)." % (where, last))
    if "Permission denied" in text:
        return ("The ssh store at %s refused the login (%s); check the store's user and private key, and the "
                "server's authorized_keys." % (where, last))
    if "Connection refused" in text or "timed out" in text or "No route to host" in text \
            or "Could not resolve" in text or "Name or service not known" in text or "Network is unreachable" in text \
            or "Connection closed" in text or "Connection reset" in text:
        return "Cannot reach the ssh store at %s (%s); check the host, the port and that sshd runs there." % (where, last)
    if rc == 127 or "python3: not found" in text or "python3: command not found" in text:
        return "python3 is not installed on the backup server %s; the ssh store needs it there." % where
    return "The ssh store at %s failed (exit status %s): %s." % (where, rc, last.rstrip("."))


class _StderrDrain(threading.Thread):
    """Reads a child's stderr to the end, keeping its last bytes (it never blocks the child)."""

    def __init__(self, stream):
        super(_StderrDrain, self).__init__(name="lifeboat-ssh-stderr")
        self.daemon = True
        self.stream = stream
        self.data = b""

    def run(self):
        try:
            while True:
                block = self.stream.read(4096)
                if not block:
                    return
                self.data = (self.data + block)[-STDERR_KEEP:]
        except (OSError, ValueError):
            return

    def text(self):
        self.join(5)
        return self.data.decode("utf-8", "replace")


class _Call(object):
    """One ssh run of the helper: request sent, optional upload frames, one answer, optional stream."""

    def __init__(self, store, request):
        self.store = store
        self.proc, self.slot = store._spawn()
        self.drain = _StderrDrain(self.proc.stderr)
        self.drain.start()
        self.done = False
        body = json.dumps(dict(request, root=store.root, allow_shared=store.allow_shared)).encode("ascii")
        self.send(helper_source() + _frame(body))

    def send(self, data):
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ValueError):
            self.fail()

    def send_frame(self, data):
        self.send(FRAME.pack(len(data)))
        if len(data):
            self.send(data)

    def fail(self):
        """The channel broke before an answer: kill ssh and raise what it said."""
        self.kill()
        raise SshError(explain_ssh_failure(self.proc.returncode, self.drain.text(), self.store.where))

    def answer(self, close_input=True):
        """The helper's JSON answer; its refusals raised as the contract's errors."""
        try:
            if close_input:
                self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        head = self.proc.stdout.read(FRAME.size)
        if len(head) != FRAME.size:
            self.proc.wait()
            self.fail()
        size = FRAME.unpack(head)[0]
        if size > 64 * 1024 * 1024:
            self.kill()
            raise StoreError("The ssh store at %s sent an answer of %d bytes; it is refused." % (self.store.where, size))
        body = self.proc.stdout.read(size)
        if len(body) != size:
            self.proc.wait()
            self.fail()
        try:
            data = json.loads(body.decode("ascii"))
        except ValueError:
            self.kill()
            raise StoreError("The ssh store at %s sent an unreadable answer." % self.store.where)
        if not data.get("ok"):
            self.finish()
            raise _refusal(data)
        return data

    def frame(self):
        """One frame of a streaming operation: its bytes, or the helper's final JSON answer as a dict
        (a frame that starts with ``{``; a refusal is raised)."""
        head = self.proc.stdout.read(FRAME.size)
        if len(head) != FRAME.size:
            self.proc.wait()
            self.fail()
        size = FRAME.unpack(head)[0]
        if size > 64 * 1024 * 1024 + 1:
            self.kill()
            raise StoreError("The ssh store at %s sent a frame of %d bytes; it is refused." % (self.store.where, size))
        body = self.proc.stdout.read(size)
        if len(body) != size:
            self.proc.wait()
            self.fail()
        if not body.startswith(b"{"):
            return body
        try:
            data = json.loads(body.decode("ascii"))
        except ValueError:
            self.kill()
            raise StoreError("The ssh store at %s sent an unreadable answer." % self.store.where)
        if not isinstance(data, dict) or not data.get("ok"):
            self.finish()
            raise _refusal(data if isinstance(data, dict) else {})
        return data

    def finish(self):
        if self.done:
            return
        self.done = True
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.drain.join(5)
        self._free()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.done = True
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        self.drain.join(5)
        self._free()

    def _free(self):
        if self.slot:
            self.slot = False
            self.store._release_session()


def _refusal(data):
    kind = data.get("error")
    message = escape(data.get("message") or "the store helper failed", 600)
    if kind == "missing":
        return FileNotFoundError(2, message)
    if kind == "unsafe":
        return UnsafeEntryError(message)
    if kind == "manifest":
        return _manifest.ManifestError(message)
    if kind == "exists":
        return _stores.ObjectExistsError(message)
    return StoreError(message)


class SshReader(io.RawIOBase):
    """A payload streamed from the server: exactly the size the server announced, never more.

    A raw stream, so ``_stores.line_reader`` buffers it for a tree's index and links file."""

    def __init__(self, call, size, name):
        super(SshReader, self).__init__()
        self.call = call
        self.left = size
        self.name = name

    def readinto(self, buffer):
        if self.left <= 0:
            return 0
        view = memoryview(buffer)
        try:
            want = min(len(view), self.left)
            count = self.call.proc.stdout.readinto(view[:want])
        finally:
            view.release()
        if not count:
            self.call.kill()
            raise StoreError("The connection to the ssh store was cut while reading %s (%d bytes short)."
                             % (self.name, self.left))
        self.left -= count
        return count

    def read(self, size=-1):
        if size is None or size < 0:
            size = self.left
        buffer = bytearray(min(size, self.left))
        count = self.readinto(buffer) if buffer else 0
        return bytes(buffer[:count])

    def readable(self):
        return True

    def close(self):
        if self.call is not None:
            if self.left:
                self.call.kill()
            else:
                self.call.finish()
            self.call = None
        super(SshReader, self).close()


class SshSink(_stores.Sink):
    """One payload file streamed to ``<set_id>.partial/<name>`` on the server; durable when ``close`` returns."""

    def __init__(self, call, name):
        self.call = call
        self.name = name
        self.written = 0

    def write(self, data):
        view = memoryview(data)
        try:
            for start in range(0, len(view), MAX_BLOCK):
                block = view[start:start + MAX_BLOCK]
                self.call.send(FRAME.pack(len(block)))
                self.call.send(block)
        finally:
            view.release()
        self.written += len(data)

    def close(self):
        if self.call is None:
            return
        call, self.call = self.call, None
        call.send_frame(b"")
        answer = call.answer()
        call.finish()
        if answer.get("size") != self.written:
            raise StoreError("The ssh store stored %s bytes of %s, not the %d sent."
                             % (answer.get("size"), self.name, self.written))

    def abort(self):
        if self.call is not None:
            self.call.kill()
            self.call = None


class SshSetWriter(_stores.SetWriter):
    def __init__(self, store, host, source, set_id):
        self.store = store
        self.host, self.source, self.set_id = host, source, set_id
        self.partial = set_id + PARTIAL_SUFFIX
        self.parts = store._source_parts(host, source)
        self.sinks = []
        self.trees = []
        self.committed = False
        store._request({"op": "begin", "parts": self.parts, "partial": self.partial})

    def open(self, name):
        _stores.check_file_name(name)
        call = _Call(self.store, {"op": "write", "parts": self.parts + [self.partial, name]})
        sink = SshSink(call, self.store.location(self.host, self.source, self.partial, name))
        self.sinks.append(sink)
        return sink

    def tree(self, name):
        """``<set_id>.partial/<name>`` on the server, for rsync to create and fill over ssh (an SshTreeTarget),
        and ``.resume/<name>`` when an interrupted run left one there."""
        _stores.check_file_name(name)
        if name in self.trees:
            raise StoreError("The tree %s was already opened in this set." % escape(name))
        self.store._tree_root()
        answer = self.store._request({"op": "tree_begin", "parts": self.parts, "partial": self.partial,
                                      "name": name})
        self.trees.append(name)
        resume = self.store._remote_path(self.parts + [_RESUME_DIR, name]) if answer.get("resume") else None
        return SshTreeTarget(self.store, self.parts + [self.partial, name], resume)

    def commit(self, raw_manifest, names):
        for name in names:
            _stores.check_file_name(name)
        call = _Call(self.store, {"op": "commit", "parts": self.parts, "partial": self.partial,
                                  "set_id": self.set_id, "names": sorted(names), "trees": list(self.trees)})
        call.send_frame(bytes(raw_manifest))
        call.send_frame(b"")
        call.answer()
        call.finish()
        self.committed = True

    def abort(self):
        if self.committed:
            return
        for sink in self.sinks:
            sink.abort()
        try:
            self.store._request({"op": "remove", "parts": self.parts, "names": [self.partial],
                                 "keep_trees": bool(self.trees)})
        except (OSError, LifeboatError):
            pass


class SshLock(_stores.Lock):
    """``<source>/.lock`` on the server, changed only by compare-and-swap in the helper (under flock)."""

    def __init__(self, store, host, source, ttl=86400.0, now=None):
        self.store = store
        self.host, self.source = host, source
        self.parts = store._source_parts(host, source)
        self.ttl = ttl
        self.now = now or utcnow
        self.set_id = None
        self.stale = None
        self.held = False
        self.token = secrets.token_hex(16)
        self.content = None

    @property
    def where(self):
        return escape(self.store.location(self.host, self.source, LOCK_NAME))

    def _content(self):
        info = _stores.lock_info(self.now(), self.ttl, self.set_id)
        info["token"] = self.token
        return json.dumps(info, sort_keys=True)

    def _swap(self, expect, content):
        return self.store._request({"op": "lock", "parts": self.parts, "expect": expect, "content": content,
                                    "limit": MAX_LOCK_BYTES})

    def acquire(self):
        expect = None
        for dummy in range(20):
            content = self._content()
            answer = self._swap(expect, content)
            if answer["swapped"]:
                self.held = True
                self.content = content
                return self
            current = answer["current"]
            if current is None:
                expect = None
                continue
            try:
                info = json.loads(current)
            except ValueError:
                info = {}
            if not isinstance(info, dict):
                info = {}
            state = _stores.lock_holder_state(info, socket.gethostname(), self.now())
            if state == "live":
                raise _stores.LockedError(_stores.locked_message(info, self.where))
            self.stale = _stores.stale_report(info, state)
            expect = current
        raise _stores.LockedError("Could not take the lock %s: it keeps changing hands." % self.where)

    def update(self, set_id):
        self.set_id = set_id
        if self.held:
            content = self._content()
            answer = self._swap(self.content, content)
            if not answer["swapped"]:
                self.held = False
                raise _stores.LockedError("The lock %s was taken over by another run; this run stops." % self.where)
            self.content = content

    def release(self):
        if self.held:
            self.held = False
            try:
                self._swap(self.content, None)
            except (OSError, LifeboatError):
                pass


class SshStore(_stores.Store):
    """A directory on a backup server, reached over SSH through one helper program."""

    kind = "ssh"
    # Trees (rsync snapshots): rsync runs on this side with the store's ssh command (-e) and writes into the
    # partial set on the server; the helper hashes the tree there for its index, and sends it entry by entry
    # for verify and restore (open_tree).
    capabilities = frozenset(["trees", "hard_links"])

    def __init__(self, spec, runner=None):
        path = spec.get("path")
        if not path or not isinstance(path, str) or not path.startswith("/"):
            raise StoreError("The ssh store path must be an absolute path on the backup server, not %s."
                             % ("%r" % escape(path) if path is not None else "None"))
        self.root = os.path.normpath(path)
        self.allow_shared = bool(spec.get("allow_shared"))
        host = spec.get("host")
        if not isinstance(host, str) or not HOST_RE.match(host):
            raise StoreError("The ssh store host must be a host name or an IP address, not %r." % escape(host))
        self.host = host.strip("[]")
        user = spec.get("user")
        if user is not None and not USER_RE.match(str(user)):
            raise StoreError("The ssh store user %r is not a plain user name." % escape(user))
        self.user = user
        port = spec.get("port") if spec.get("port") is not None else 22
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise StoreError("The ssh store port must be between 1 and 65535, not %r." % escape(port))
        self.port = port
        if spec.get("private_key") and spec.get("private_key_file"):
            raise StoreError("Give the ssh store either private_key or private_key_file, not both.")
        key = spec.get("private_key")
        if key is not None and not isinstance(key, str):
            raise StoreError("The ssh store private_key must be the text of a key.")
        if key and not key.endswith("\n"):
            key += "\n"
        self._key = key
        self.private_key_file = spec.get("private_key_file")
        known = spec.get("known_hosts")
        self.known_hosts_file = None
        self._known_lines = None
        if known:
            known = str(known)
            if "\n" in known.strip() or KNOWN_HOSTS_LINE_RE.match(known.strip()):
                self._known_lines = known if known.endswith("\n") else known + "\n"
            else:
                self.known_hosts_file = known.strip()
        timeout = spec.get("connect_timeout") if spec.get("connect_timeout") is not None else 10
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise StoreError("The ssh store connect_timeout must be a positive number of seconds.")
        self.connect_timeout = timeout
        self.runner = runner or _runner.Runner()
        self._secrets = []
        self._key_secret = self._known_secret = None
        self._lock = threading.Lock()
        self._master_lock = threading.RLock()
        self._control = None
        self._sessions = 0
        self._scratch = None

    # -------------------------------------------------------------- ssh
    @property
    def where(self):
        return "%s%s:%d" % ("%s@" % self.user if self.user else "", self.host, self.port)

    def _secret(self, content, prefix):
        """A path ssh can open for ``content``: our own memfd seen through /proc, else a 0600 file.

        ssh closes every inherited descriptor above 2 when it starts, so a
        ``/dev/fd/N`` path would not reach it; ``/proc/<our pid>/fd/<N>`` names
        the memfd this process keeps open (only its owner may open it). The
        fallback file is removed by ``close`` and when the process ends.
        """
        secret = SecretFile(content, prefix).open()
        self._secrets.append(secret)
        return secret

    @staticmethod
    def _secret_path(secret):
        if secret.fd is not None:
            return "/proc/%d/fd/%d" % (os.getpid(), secret.fd)
        return secret.path

    def _base_argv(self):
        """ssh and the options every run shares; no secret in them, a key is a path to a memfd or a 0600 file."""
        with self._lock:
            if self._known_lines is not None and self._known_secret is None:
                self._known_secret = self._secret(self._known_lines, "lifeboat-known-hosts-")
            if self._key and self._key_secret is None:
                self._key_secret = self._secret(self._key, "lifeboat-ssh-key-")
        argv = [self.runner.find("ssh", "openssh-client"), "-F", "none", "-T", "-x", "-a",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
                "-o", "UpdateHostKeys=no",
                "-o", "ConnectTimeout=%d" % self.connect_timeout,
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                "-o", "LogLevel=ERROR", "-p", str(self.port)]
        if self.user:
            argv += ["-l", self.user]
        if self._known_secret is not None:
            argv += ["-o", "UserKnownHostsFile=%s" % self._secret_path(self._known_secret),
                     "-o", "GlobalKnownHostsFile=/dev/null"]
        elif self.known_hosts_file:
            argv += ["-o", "UserKnownHostsFile=%s" % _ssh_quote(self.known_hosts_file),
                     "-o", "GlobalKnownHostsFile=/dev/null"]
        if self._key_secret is not None:
            argv += ["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                     "-o", "IdentityFile=%s" % self._secret_path(self._key_secret)]
        elif self.private_key_file:
            argv += ["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                     "-o", "IdentityFile=%s" % _ssh_quote(self.private_key_file)]
        return argv

    def _ssh_argv(self, control=None):
        """The command line of one helper run: a session on the master at ``control``, else its own connection."""
        if control:
            mux = ["-o", "ControlMaster=no", "-o", "ControlPath=%s" % _ssh_quote(control)]
        else:
            mux = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        return self._base_argv() + mux + ["--", self.host, remote_command(len(helper_source()))]

    # -------------------------------------------------------------- the shared connection
    def _master(self):
        """The control socket of this store's master connection, started on first use (or again after it idled out)."""
        with self._master_lock:
            if self._control is not None and self._control[0] == os.getpid() \
                    and os.path.exists(self._control[2]):
                return self._control[2]
            self._drop_master()
            directory = _control_dir()
            path = os.path.join(directory, "m")
            argv = self._base_argv() + ["-N", "-o", "ControlMaster=yes", "-o", "ControlPath=%s" % _ssh_quote(path),
                                        "-o", "ControlPersist=%d" % CONTROL_PERSIST, "--", self.host]
            # With ControlPersist ssh forks the master into the background once it is logged in, with its
            # standard streams on /dev/null, and exits: its status tells whether the login worked.
            try:
                rc, dummy, err = self.runner.run(argv)
            except BaseException:
                _remove_control_dir(directory)
                raise
            if rc != 0 or not os.path.exists(path):
                _remove_control_dir(directory)
                raise SshError(explain_ssh_failure(rc, err, self.where))
            self._control = (os.getpid(), directory, path)
            _MASTERS.add(self)
            return path

    def _drop_master(self):
        """End this process's master (``ssh -O exit``) and remove its directory; forget one a parent process owns."""
        control, self._control = self._control, None
        if control is None:
            return
        owner, directory, path = control
        if owner != os.getpid():
            return
        if os.path.exists(path):
            try:
                self.runner.run(self._base_argv() + ["-o", "ControlPath=%s" % _ssh_quote(path), "-O", "exit",
                                                     "--", self.host])
            except (OSError, LifeboatError):
                pass
        _remove_control_dir(directory)

    def _take_session(self):
        with self._lock:
            if self._sessions >= MUX_SESSIONS:
                return False
            self._sessions += 1
            return True

    def _release_session(self):
        with self._lock:
            self._sessions = max(0, self._sessions - 1)

    def _spawn(self):
        """One helper run: ``(process, shares_the_master)``."""
        slot = self._take_session()
        try:
            control = self._master() if slot else None
            proc = self.runner.popen(self._ssh_argv(control), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        except BaseException:
            if slot:
                self._release_session()
            raise
        return proc, slot

    def close(self):
        """End the shared connection and forget the secrets handed to ssh (memfds, or 0600 files that are removed)."""
        self._drop_scratch()
        with self._master_lock:
            try:
                self._drop_master()
            finally:
                with self._lock:
                    for secret in self._secrets:
                        secret.close()
                    self._secrets = []
                    self._key_secret = self._known_secret = None
        _MASTERS.discard(self)

    def __del__(self):
        try:
            self.close()
        except Exception:  # pylint: disable=broad-except
            pass

    def _request(self, request, data=None):
        call = _Call(self, request)
        if data is not None:
            call.send_frame(data)
            call.send_frame(b"")
        answer = call.answer()
        call.finish()
        return answer

    # -------------------------------------------------------------- naming
    def describe(self):
        out = {"kind": self.kind, "host": self.host, "port": self.port, "path": self.root}
        if self.user:
            out["user"] = self.user
        return out

    def location(self, host=None, source=None, set_id=None, name=None):
        parts = [self.root] + [p for p in (host, source, set_id, name) if p]
        return "ssh://%s%s:%d%s" % ("%s@" % self.user if self.user else "", _url_host(self.host), self.port,
                                    os.path.join(*parts))

    def exists(self):
        return bool(self._request({"op": "exists"})["exists"])

    @staticmethod
    def _source_parts(host, source):
        return [_manifest.check_name(host, "host"), _manifest.check_name(source, "source")]

    # -------------------------------------------------------------- listing
    def _names(self, parts, probe=None):
        request = {"op": "names", "parts": parts}
        if probe:
            request.update(probe=probe, match=SET_ENTRY_PATTERN)
        return self._request(request)["entries"]

    def _plain_dirs(self, parts):
        entries = self._names(parts) or []
        return [n for n, kind, dummy in entries
                if kind == "dir" and _manifest.NAME_RE.match(n) and n not in (".", "..")]

    def hosts(self):
        return self._plain_dirs([])

    def sources(self, host):
        return self._plain_dirs([_manifest.check_name(host, "host")])

    def listing(self, host, source):
        entries = self._names(self._source_parts(host, source), probe=_manifest.MANIFEST_NAME)
        if entries is None:
            return _stores.Listing()
        sets, partials, strays = [], [], []
        for name, kind, manifest_kind in entries:
            base = name
            for suffix in (PARTIAL_SUFFIX, DELETING_SUFFIX):
                if name.endswith(suffix):
                    base = name[: -len(suffix)]
            if not _manifest.SET_ID_RE.match(base):
                continue
            if kind != "dir":
                strays.append({"name": escape(name), "problem": "not a plain directory (%s)" % kind})
                continue
            if base != name:
                partials.append(name)
                continue
            if manifest_kind == "file":
                sets.append(name)
            elif manifest_kind is None:
                strays.append({"name": escape(name), "problem": "no manifest (incomplete)"})
            else:
                strays.append({"name": escape(name), "problem": "manifest is not a regular file (%s)" % manifest_kind})
        return _stores.Listing(sets, partials, strays)

    # -------------------------------------------------------------- reading
    def read_manifest_bytes(self, host, source, set_id):
        for dummy, raw, error in self.read_manifests_bytes(host, source, [set_id]):
            if error is not None:
                raise error
            return raw

    def read_manifests_bytes(self, host, source, set_ids):
        """The manifests of many sets of one source in one ssh run."""
        set_ids = list(set_ids)
        try:
            parts = self._source_parts(host, source)
            checked = [_stores.check_set_id(s) for s in set_ids]
            results = self._request({"op": "read_manifests", "parts": parts, "set_ids": checked,
                                     "limit": _stores.MAX_MANIFEST_BYTES})["results"]
        except (LifeboatError, OSError) as exc:
            error = exc if isinstance(exc, LifeboatError) else StoreError(str(exc))
            for set_id in set_ids:
                yield set_id, None, error
            return
        for set_id, result in zip(set_ids, results):
            if "data" in result:
                yield set_id, result["data"].encode("latin-1"), None
                continue
            if result.get("error") == "missing":
                error = _manifest.ManifestError(
                    "The manifest of set %s/%s/%s is missing (%s): the set is incomplete."
                    % (host, source, set_id, self.location(host, source, set_id, _manifest.MANIFEST_NAME)))
            else:
                error = _refusal(result)
            yield set_id, None, error

    def _open(self, parts, what):
        call = _Call(self, {"op": "read", "parts": parts})
        answer = call.answer(close_input=True)
        return SshReader(call, int(answer["size"]), what)

    def open_payload(self, host, source, set_id, name):
        _stores.check_file_name(name)
        parts = self._source_parts(host, source) + [_stores.check_set_id(set_id), name]
        return self._open(parts, self.location(host, source, set_id, name))

    def payload_names(self, host, source, set_id):
        parts = self._source_parts(host, source) + [_stores.check_set_id(set_id)]
        entries = self._names(parts)
        if entries is None:
            raise FileNotFoundError(2, "%s does not exist." % self.location(host, source, set_id))
        return [n for n, dummy, dummy2 in entries if n != _manifest.MANIFEST_NAME]

    # -------------------------------------------------------------- writing
    def begin(self, host, source, set_id):
        _stores.check_set_id(set_id)
        return SshSetWriter(self, host, source, set_id)

    def delete_set(self, host, source, set_id):
        parts = self._source_parts(host, source)
        try:
            self._request({"op": "delete_set", "parts": parts, "set_id": _stores.check_set_id(set_id),
                           "doomed": set_id + DELETING_SUFFIX})
        except FileNotFoundError:
            raise StoreError("Set %s/%s/%s does not exist in %s." % (host, source, set_id, self.location()))

    def remove_partials(self, host, source):
        partials = self.listing(host, source).partials
        if not partials:
            return []
        answer = self._request({"op": "remove", "parts": self._source_parts(host, source), "names": partials,
                                "keep_trees": True})
        return list(answer["removed"])

    def lock(self, host, source, ttl=86400.0):
        return SshLock(self, host, source, ttl)

    # -------------------------------------------------------------- trees
    def _tree_root(self):
        """The store path, refused for rsync when it holds characters rsync or ssh could read as more than a path."""
        if not TREE_ROOT_RE.match(self.root):
            raise StoreError("The ssh store path %s holds characters (wildcards, backslashes, control characters) "
                             "that rsync snapshots cannot use; choose a plain path for the store." % escape(self.root))
        return self.root

    def _remote_path(self, parts):
        return os.path.join(self._tree_root(), *parts)

    def rsync_shell(self):
        """The ``rsync -e`` command: this store's ssh command and options, a session on its shared connection.

        rsync splits it at spaces and strips quotes, so every item is single-quoted (a quote in it doubled);
        no secret is in it (the key and known_hosts are /proc paths of this process's memfds).
        """
        argv = self._base_argv() + ["-o", "ControlMaster=no", "-o", "ControlPath=%s" % _ssh_quote(self._master())]
        return " ".join("'%s'" % item.replace("'", "''") for item in argv)

    def rsync_destination(self, parts):
        """``host:/path`` of a directory on the server for rsync (sent with --protect-args, never to a shell)."""
        return "%s:%s" % (_url_host(self.host), self._remote_path(parts))

    def tree_path(self, host, source, set_id, name):
        """The server path of tree ``name`` of a complete set (for rsync's --link-dest there), or None."""
        _stores.check_file_name(name)
        parts = self._source_parts(host, source) + [_stores.check_set_id(set_id), name]
        try:
            self._tree_root()
            if not self._request({"op": "is_dir", "parts": parts})["dir"]:
                return None
        except (OSError, LifeboatError):
            return None
        return SshTreeHandle(self, parts)

    def open_tree(self, host, source, set_id, name):
        """A local directory descriptor of a copy of tree ``name``, fetched entry by entry by the helper.

        The copy lives in a private 0700 scratch directory, written only by this process (every entry created
        relative to its parent's descriptor, never through a link), and is removed by the next open_tree or
        when the store is closed. Verify and restore then walk it as they walk a dir store's tree.
        """
        _stores.check_file_name(name)
        parts = self._source_parts(host, source) + [_stores.check_set_id(set_id), name]
        self._drop_scratch()
        scratch = tempfile.mkdtemp(prefix="lifeboat-tree-")
        self._scratch = scratch
        call = _Call(self, {"op": "tree_send", "parts": parts})
        try:
            call.proc.stdin.close()
            return _fetch_tree(call, scratch, self.location(host, source, set_id, name))
        except BaseException:
            call.kill()
            self._drop_scratch()
            raise

    def verify_tree(self, manifest, tree):
        """The shared check (``_stores.Store.verify_tree``) on the fetched copy, removed once checked."""
        try:
            return super(SshStore, self).verify_tree(manifest, tree)
        finally:
            self._drop_scratch()

    def release_trees(self):
        """Remove the local copy of the tree the last ``open_tree`` fetched (its reader is done with it)."""
        self._drop_scratch()

    def _drop_scratch(self):
        scratch, self._scratch = getattr(self, "_scratch", None), None
        if scratch:
            _remove_scratch(scratch)

    def write_tree_lists(self, parts, index_path, links_path, previous=None):
        """Have the helper walk and hash the tree at ``parts`` on the server; write its index and links file
        locally. ``previous`` is (set parts, tree name, index name) of the previous snapshot, whose SHA-256 a file
        hard-linked to it keeps. The lists are checked strictly here; returns a _trees.Lists."""
        from ansible_collections.lifeboat.backup.plugins.module_utils import _trees
        request = {"op": "tree_index", "parts": parts}
        if previous is not None:
            set_parts, tree, index = previous
            request["previous"] = {"tree": set_parts + [tree], "index": set_parts + [index]}
        call = _Call(self, request)
        call.proc.stdin.close()
        try:
            with open(index_path, "wb") as index_out, open(links_path, "wb") as links_out:
                while True:
                    frame = call.frame()
                    if isinstance(frame, dict):
                        break
                    if frame[:1] == b"i":
                        index_out.write(frame[1:])
                    elif frame[:1] == b"l":
                        links_out.write(frame[1:])
                    else:
                        raise StoreError("The ssh store at %s sent an unexpected frame." % self.where)
        except BaseException:
            call.kill()
            raise
        call.finish()
        found = _trees.Lists()
        try:
            for key in ("files", "bytes", "links", "dirs", "entries"):
                value = frame.get(key)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(key)
                setattr(found, key, value)
            found.specials = [escape(p) for p in frame.get("specials") or []]
            tree = {"files": found.files, "bytes": found.bytes}
            with open(index_path, "rb") as handle:
                for dummy in _manifest.read_index(handle, tree, "The index the ssh store made"):
                    pass
            with open(links_path, "rb") as handle:
                count = sum(1 for dummy in _trees.read_links(handle, "The links file the ssh store made"))
            if count != found.links:
                raise ValueError("links")
        except ValueError:
            raise StoreError("The ssh store at %s sent a tree index that does not add up; the set was not written."
                             % self.where)
        return found

    # -------------------------------------------------------------- objects
    def _object_parts(self, host, source, name):
        return self._source_parts(host, source) + [OBJECTS_DIR] + _stores.check_object_name(name)

    def put_object(self, host, source, name, reader):
        call = _Call(self, {"op": "put_object", "parts": self._object_parts(host, source, name)})
        while True:
            block = reader.read(_stores.CHUNK)
            if not block:
                break
            call.send_frame(block)
        call.send_frame(b"")
        try:
            answer = call.answer()
        except _stores.ObjectExistsError:
            raise _stores.ObjectExistsError(
                "Object %s of %s/%s already exists with different content; it is never overwritten."
                % (name, host, source))
        call.finish()
        return answer["outcome"]

    def open_object(self, host, source, name):
        return self._open(self._object_parts(host, source, name), self.location(host, source, OBJECTS_DIR, name))

    def list_objects(self, host, source, prefix=""):
        names = self._request({"op": "list_objects", "parts": self._source_parts(host, source) + [OBJECTS_DIR],
                               "match": OBJECT_PART_PATTERN, "depth": _stores.OBJECT_MAX_DEPTH})["names"]
        return sorted(n for n in names if n.startswith(prefix))

    def stat_object(self, host, source, name):
        answer = self._request({"op": "stat_object", "parts": self._object_parts(host, source, name)})
        return {"size": answer["size"], "modified": answer["mtime"]}

    def delete_object(self, host, source, name):
        try:
            self._request({"op": "delete_object", "parts": self._object_parts(host, source, name)})
        except FileNotFoundError:
            pass


class SshTreeTarget(_stores.TreeTarget):
    """A tree of the set being written, on the server: ``path`` is rsync's ``host:/path`` destination, ``rsh`` its
    ``-e`` command, ``resume`` the server path of an interrupted run's tree (or None)."""

    def __init__(self, store, parts, resume=None):
        super(SshTreeTarget, self).__init__(store.rsync_destination(parts), resume)
        self.store = store
        self.parts = parts
        self.rsh = store.rsync_shell()

    def write_lists(self, index_path, links_path, previous=None):
        """The index and links file of the tree, made on the server (``previous``: (set_id, tree, index))."""
        if previous is not None:
            previous = (self.parts[:2] + [_stores.check_set_id(previous[0])], previous[1], previous[2])
        return self.store.write_tree_lists(self.parts, index_path, links_path, previous)


class SshTreeHandle(object):
    """A complete set's tree on the server, named for rsync there (``path``), with the ``-e`` command (``rsh``)
    and a destination for a dry run beside it that is never created (``check_destination``)."""

    def __init__(self, store, parts):
        self.path = store._remote_path(parts)
        self.rsh = store.rsync_shell()
        self.check_destination = store.rsync_destination(
            parts[:2] + ["%s.check-%s" % (parts[2], secrets.token_hex(4)), parts[3]])

    def close(self):
        pass


def _plain_name(name):
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\x00" not in name


def _fetch_tree(call, scratch, where):
    """Rebuild the tree the helper sends (op ``tree_send``) in ``scratch``; a descriptor of its top directory.

    Entries arrive in index order (pre-order, parents first); each is created relative to its parent's
    descriptor with O_EXCL / O_NOFOLLOW, never through a link; a FIFO, device or socket becomes a FIFO (so a
    walk reports it, and never opens it); metadata (owner as root, mode, times, extended attributes) is set as on
    the server, a directory's once its entries are in.
    """
    owners = os.geteuid() == 0

    def refuse(why):
        raise StoreError("The ssh store at %s sent a tree that is not well formed (%s); it is refused."
                         % (where, why))

    def entry_of(frame):
        if isinstance(frame, dict) or frame[:1] != b"E":
            refuse("an entry was expected")
        try:
            entry = json.loads(frame[1:].decode("ascii"))
        except ValueError:
            refuse("an unreadable entry")
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or any(
                isinstance(entry.get(k), bool) or not isinstance(entry.get(k), int)
                for k in ("mode", "size", "uid", "gid", "atime_ns", "mtime_ns", "nlink", "ino")):
            refuse("an entry without its fields")
        return entry

    def apply(fd, entry, mode=True):
        if owners:
            os.fchown(fd, entry["uid"], entry["gid"])
        for name, value in entry.get("xattrs") or []:
            try:
                os.setxattr(fd, name, value.encode("latin-1"))
            except (OSError, AttributeError, TypeError, ValueError):
                pass
        if mode:
            os.fchmod(fd, stat.S_IMODE(entry["mode"]) if owners else stat.S_IMODE(entry["mode"]) & 0o1777)
        os.utime(fd, ns=(entry["atime_ns"], entry["mtime_ns"]))

    root = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    stack = []
    files = set()
    try:
        top = entry_of(call.frame())
        if top["path"] != "" or not stat.S_ISDIR(top["mode"]):
            refuse("its top is not a directory")
        stack.append(("", root, top))
        while True:
            frame = call.frame()
            if isinstance(frame, dict):
                break
            entry = entry_of(frame)
            path = entry["path"]
            parent, dummy, name = path.rpartition("/")
            if not _plain_name(name):
                refuse("the name %s" % escape(path))
            while stack[-1][0] != parent:
                if len(stack) == 1:
                    refuse("%s comes out of order" % escape(path))
                dummy, fd, done = stack.pop()
                try:
                    apply(fd, done)
                finally:
                    os.close(fd)
            dir_fd = stack[-1][1]
            mode = entry["mode"]
            if stat.S_ISDIR(mode):
                if len(stack) > TREE_MAX_DEPTH:
                    refuse("it is deeper than %d levels at %s" % (TREE_MAX_DEPTH, escape(path)))
                os.mkdir(name, 0o700, dir_fd=dir_fd)
                stack.append((path, os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                            dir_fd=dir_fd), entry))
            elif stat.S_ISLNK(mode):
                target = entry.get("target")
                if not isinstance(target, str) or not target or "\x00" in target:
                    refuse("the link %s has no target" % escape(path))
                os.symlink(target, name, dir_fd=dir_fd)
                if owners:
                    os.chown(name, entry["uid"], entry["gid"], dir_fd=dir_fd, follow_symlinks=False)
                os.utime(name, ns=(entry["atime_ns"], entry["mtime_ns"]), dir_fd=dir_fd, follow_symlinks=False)
            elif stat.S_ISREG(mode):
                if "unreadable" in entry:
                    continue  # left out: verify and restore report it missing
                if "link_to" in entry:
                    if entry["link_to"] not in files:
                        refuse("%s is a link to a file not sent before" % escape(path))
                    os.link(entry["link_to"], name, src_dir_fd=root, dst_dir_fd=dir_fd, follow_symlinks=False)
                    continue
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=dir_fd)
                try:
                    written = 0
                    while True:
                        frame = call.frame()
                        if isinstance(frame, dict) or frame[:1] not in (b"D", b"Z"):
                            refuse("the bytes of %s were cut off" % escape(path))
                        if frame[:1] == b"Z":
                            break
                        written += len(frame) - 1
                        if written > entry["size"]:
                            refuse("%s is longer than its size" % escape(path))
                        view = memoryview(frame)[1:]
                        while view:
                            view = view[os.write(fd, view):]
                    apply(fd, entry)
                finally:
                    os.close(fd)
                files.add(path)
            else:
                os.mkfifo(name, 0o600, dir_fd=dir_fd)
        call.finish()
        while len(stack) > 1:
            dummy, fd, done = stack.pop()
            try:
                apply(fd, done)
            finally:
                os.close(fd)
        apply(root, top)
        return root
    except BaseException:
        for dummy, fd, done in stack[1:]:
            os.close(fd)
        os.close(root)
        raise


def _remove_scratch(path):
    """Remove a scratch copy of a tree, read-only directories included (they are this process's own)."""
    def retry(func, name, exc_info):
        try:
            os.chmod(os.path.dirname(name), 0o700)
            func(name)
        except OSError:
            pass
    shutil.rmtree(path, onerror=retry)


def _control_dir():
    """A new private (0700) directory for a control socket, on a short path (a socket path has at most 108 bytes).

    Its name carries this process's pid (``lifeboat-ssh-<pid>-<random>``). Directories of this kind left by a
    run that is gone are removed first: only when their pid is no longer alive (a name without a pid, from an
    older version, only when idle for CONTROL_DIR_MAX_AGE), and ``rmdir`` never removes one that is not empty.
    A process that is alive keeps its directory, however long it has been idle or whatever the clock says.
    """
    base = tempfile.gettempdir()
    if len(base) > 60:
        base = "/tmp"
    now = time.time()
    for old in glob.glob(os.path.join(base, CONTROL_PREFIX + "*")):
        try:
            st = os.lstat(old)
            if st.st_uid != os.getuid() or not stat.S_ISDIR(st.st_mode):
                continue
            owner = _control_dir_pid(os.path.basename(old))
            if owner is None:
                if now - st.st_mtime <= CONTROL_DIR_MAX_AGE:
                    continue
            elif _pid_alive(owner):
                continue
            os.rmdir(old)
        except OSError:
            continue
    return tempfile.mkdtemp(prefix="%s%d-" % (CONTROL_PREFIX, os.getpid()), dir=base)


def _control_dir_pid(name):
    """The pid in a control directory's name, or None for a name without one."""
    match = re.match(r"^%s(\d+)-" % re.escape(CONTROL_PREFIX), name)
    return int(match.group(1)) if match else None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # alive, another user's
    return True


def _remove_control_dir(directory):
    shutil.rmtree(directory, ignore_errors=True)


@atexit.register
def _close_masters():
    """At process exit no master of this process is left running."""
    for store in list(_MASTERS):
        try:
            store.close()
        except Exception:  # pylint: disable=broad-except
            pass


def _url_host(host):
    return "[%s]" % host if ":" in host else host


_stores.register_kind("ssh", SshStore, OPTIONS, required=("path", "host"))
