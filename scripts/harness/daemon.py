# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A throwaway server in the background, known by its pidfile.

``Daemon(directory, name, marker)`` keeps ``<name>.pid`` and ``<name>.log`` in
``directory``. ``start`` launches a program that stays in the foreground (moto's
server, ``mariadbd``, ``sshd -D``) in its own session, writes its pid, and waits
until ``ready()`` says it answers; if it exits or does not answer in time, the
error names the last line of its log. ``stop`` signals the pid from the pidfile,
and only when that process's command line still contains ``marker``, so a
reused pid is never killed. Nothing here finds a process by name.
"""

import os
import signal
import subprocess
import time

from harness.core import Fail, file_size, log_error, proc_alive, proc_cmdline, user_popen_args

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class Daemon(object):
    """One background server, identified by the pidfile ``directory/name.pid``."""

    def __init__(self, directory, name, marker):
        self.dir = os.path.abspath(directory)
        self.name = name
        self.marker = marker.encode() if isinstance(marker, str) else marker
        self.pid_path = os.path.join(self.dir, name + ".pid")
        self.log_path = os.path.join(self.dir, name + ".log")

    def pid(self):
        """The pid in the pidfile, or None."""
        try:
            with open(self.pid_path, encoding="ascii") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 else None

    def running(self):
        """True when the pidfile names a live process that is still this server."""
        pid = self.pid()
        return pid is not None and proc_alive(pid) and self._ours(pid)

    def _ours(self, pid):
        return any(self.marker in arg for arg in proc_cmdline(pid))

    def start(self, argv, ready, env=None, user=None, cwd=None, timeout=START_TIMEOUT, preexec_fn=None):
        """Start ``argv`` unless it runs already; wait until ``ready()`` is true; return the pid.

        ``ready`` is a callable without arguments (a port that answers, a file
        that appears). ``user`` runs the server as that OS user when we are root.
        ``preexec_fn`` runs in the child before the program (a test harness
        makes the server die with the process that started it).
        """
        if self.running():
            self.wait_ready(ready, timeout)
            return self.pid()
        os.makedirs(self.dir, exist_ok=True)
        extra = user_popen_args(user)
        child_env = dict(env if env is not None else os.environ)
        child_env.update(extra.pop("env_update", {}))
        offset = file_size(self.log_path)
        with open(self.log_path, "ab") as log:
            try:
                proc = subprocess.Popen(  # pylint: disable=consider-using-with
                    list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=child_env, cwd=cwd or self.dir, start_new_session=True, preexec_fn=preexec_fn, **extra
                )
            except OSError as exc:
                raise Fail("cannot start %s (%s): %s" % (self.name, argv[0], exc.strerror))
        tmp = self.pid_path + ".tmp"
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write("%d\n" % proc.pid)
        os.replace(tmp, self.pid_path)
        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                self._forget()
                raise Fail("%s exited at once (status %s): %s"
                           % (self.name, code, log_error(self.log_path, offset) or "no output"))
            if ready():
                return proc.pid
            if time.monotonic() > deadline:
                self.stop()
                raise Fail("%s did not answer within %.0f s: %s"
                           % (self.name, timeout, log_error(self.log_path, offset) or "no output"))
            time.sleep(0.1)

    def wait_ready(self, ready, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                raise Fail("%s (pid %s) stopped while starting: %s"
                           % (self.name, self.pid(), log_error(self.log_path) or "no output"))
            if time.monotonic() > deadline:
                raise Fail("%s (pid %s) runs but does not answer" % (self.name, self.pid()))
            time.sleep(0.1)

    def stop(self, timeout=STOP_TIMEOUT, sig=signal.SIGTERM):
        """Signal the server, wait for it to go (SIGKILL after ``timeout``), remove the pidfile.

        Returns True if a server was running.
        """
        pid = self.pid()
        if pid is None or not proc_alive(pid) or not self._ours(pid):
            self._forget()
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            self._forget()
            return False
        deadline = time.monotonic() + timeout
        while proc_alive(pid):
            if time.monotonic() > deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + timeout
            time.sleep(0.05)
            _reap(pid)
        _reap(pid)
        self._forget()
        return True

    def _forget(self):
        try:
            os.unlink(self.pid_path)
        except FileNotFoundError:
            pass


def _reap(pid):
    """Collect ``pid`` if it is our own child (started by this process); otherwise its parent does."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
