# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils._common import SecretFile
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import CommandError, Runner


def test_run_returns_text_and_feeds_stdin():
    rc, out, err = Runner().run(["cat"], data="hello\n")
    assert (rc, out, err) == (0, "hello\n", "")


def test_run_sets_c_locale_and_env():
    rc, out, dummy = Runner().run(["sh", "-c", 'echo "$LC_ALL $LIFEBOAT_X"'], env={"LIFEBOAT_X": "y"})
    assert out.strip() == "C y"


def test_missing_binary_is_one_sentence():
    with pytest.raises(CommandError) as info:
        Runner().run(["/nonexistent/lifeboat-tool"])
    assert str(info.value) == "Cannot start /nonexistent/lifeboat-tool: No such file or directory."


def test_find_names_the_package():
    with pytest.raises(CommandError, match="install the lifeboat-pkg package"):
        Runner().find("lifeboat-no-such-tool", "lifeboat-pkg")
    assert Runner().find("sh").endswith("/sh")


def test_pass_fds_reach_the_child():
    with SecretFile("pw", "lifeboat-test-") as secret:
        rc, out, dummy = Runner().run(["cat", secret.path], pass_fds=secret.pass_fds)
    assert out == "pw"


def test_children_die_with_the_parent(tmp_path):
    """A kill -9 of the process that started a child takes the child along (PR_SET_PDEATHSIG)."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import sys, time\n"
        "from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner\n"
        "proc = Runner().popen(['sleep', '60'])\n"
        "open(sys.argv[1], 'w').write(str(proc.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(pidfile)], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        for dummy in range(100):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.05)
        child = int(pidfile.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        for dummy in range(100):
            try:
                with open("/proc/%d/stat" % child) as handle:
                    if handle.read().split(") ")[1].startswith("Z"):
                        break
            except FileNotFoundError:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the child outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
