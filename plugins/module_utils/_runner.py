# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The one seam every external command passes through.

Modules, the pipeline and the entry points that run outside Ansible (a WAL
``archive_command``) all start processes here, so that every child:

* gets an argv list, never a shell string;
* dies with this process (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the
  module leaves no ``pg_restore`` or ``zstd`` running;
* sees ``LANG=C`` unless told otherwise, so that its messages can be parsed;
* inherits only the descriptors named in ``pass_fds`` (secrets as memfds).

Tests substitute a fake runner with the same two methods.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError

PR_SET_PDEATHSIG = 1

_LIBC = None


def _libc():
    """libc through ctypes, loaded once in this process (imported on first use: a short-lived command
    such as the WAL archive command pays for ctypes only when it starts a child)."""
    global _LIBC
    if _LIBC is None:
        import ctypes  # pylint: disable=import-outside-toplevel
        try:
            _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            import ctypes.util  # pylint: disable=import-outside-toplevel
            try:
                _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            except OSError:
                _LIBC = False
    return _LIBC


def _die_with_parent(parent_pid):
    """A preexec_fn: ask the kernel to SIGKILL the child when this process dies."""
    # Loaded here, in the parent: the forked child only calls it (it never looks for libc itself).
    libc = _libc()

    def _preexec():
        if libc:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal comes.
        if os.getppid() != parent_pid:
            os._exit(1)
    return _preexec


_FD_PATH = re.compile(r"^/dev/fd/(\d+)\Z")


def named_fds(env):
    """Descriptors that ``env`` names as ``/dev/fd/N`` values."""
    found = set()
    for value in (env or {}).values():
        match = _FD_PATH.match(value) if isinstance(value, str) else None
        if match:
            found.add(int(match.group(1)))
    return found


class CommandError(LifeboatError):
    """A command could not be started."""

    def __init__(self, message, strerror=None):
        super(CommandError, self).__init__(message)
        self.strerror = strerror


class Runner(object):
    """Starts processes. ``module`` (an AnsibleModule) is optional: without it this runs anywhere."""

    def __init__(self, module=None, base_env=None):
        self.module = module
        self.base_env = base_env

    def environment(self, env=None):
        merged = dict(self.base_env if self.base_env is not None else os.environ)
        # The C locale whatever the caller's (an inherited LC_ALL=de_DE would localise the messages we parse).
        merged["LANG"] = "C"
        merged["LC_ALL"] = "C"
        merged.update(env or {})
        return merged

    def find(self, name, package=None, opt_dirs=()):
        """Absolute path of ``name`` on PATH (or in ``opt_dirs``); one sentence if it is missing."""
        if self.module is not None:
            found = self.module.get_bin_path(name, required=False, opt_dirs=list(opt_dirs))
        else:
            found = None
            dirs = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep) + list(opt_dirs)
            for directory in dirs:
                candidate = os.path.join(directory, name)
                if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    found = candidate
                    break
        if not found:
            raise CommandError("%s was not found on PATH; install the %s package." % (name, package or name))
        return found

    def popen(self, argv, stdin=None, stdout=None, stderr=None, env=None, cwd=None, pass_fds=()):
        """Start one process (the pipeline's building block).

        A descriptor that the environment names as a file (``PGPASSFILE=/dev/fd/N``)
        is inherited with ``pass_fds``: a secret handed over by name reaches
        the child that was told about it, and no other.
        """
        argv = [str(a) for a in argv]
        pass_fds = tuple(sorted(set(pass_fds or ()) | named_fds(env)))
        try:
            return subprocess.Popen(
                argv,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=self.environment(env),
                cwd=cwd,
                close_fds=True,
                pass_fds=tuple(pass_fds or ()),
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as exc:
            raise CommandError("Cannot start %s: %s." % (argv[0], exc.strerror or exc), strerror=exc.strerror)

    def run(self, argv, data=None, env=None, cwd=None, pass_fds=()):
        """Run ``argv`` to completion; return ``(rc, stdout, stderr)`` as text (UTF-8, errors replaced).

        ``data`` (str or bytes) is written to its stdin; a secret goes there or
        through ``pass_fds``, never into argv.
        """
        proc = self.popen(argv, stdin=subprocess.PIPE if data is not None else None,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, pass_fds=pass_fds)
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            out, err = proc.communicate(data)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def runner_for(module):
    """The runner of an AnsibleModule (one per module run)."""
    runner = getattr(module, "_lifeboat_runner", None)
    if runner is None:
        runner = Runner(module)
        try:
            module._lifeboat_runner = runner
        except AttributeError:
            pass
    return runner
