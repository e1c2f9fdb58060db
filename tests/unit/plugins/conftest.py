# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the unit tests of modules and module_utils."""

from __future__ import annotations

import os
import signal

import pytest

NO_HANG_SECONDS = 10

# ``ansible-test units`` forks every test from its pytest worker (its ansible_forked
# plugin), so a server a test starts lazily would die with that test and the next
# one would start it again. The worker starts them instead, once, before the first
# test that may use them; the forked tests share them (moto_harness, ssh_harness).
FORKED = 'ansible_forked' in os.environ.get('PYTEST_PLUGINS', '')
SHARED_SERVER_USERS = ('moto_harness', 'ssh_harness', 'store_kinds')


def _uses_shared_servers(item):
    module = getattr(item, 'module', None)
    if module is None:
        return False
    if 'moto' in getattr(item, 'fixturenames', ()):
        return True
    return any(getattr(value, '__name__', '').rpartition('.')[2] in SHARED_SERVER_USERS
               for value in vars(module).values())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """In the worker, before ansible_forked forks the test: start the servers the test may share."""
    if FORKED and _uses_shared_servers(item):
        from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import moto_harness  # pylint: disable=import-outside-toplevel
        from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import ssh_harness  # pylint: disable=import-outside-toplevel
        moto_harness.server()
        ssh_harness.server()
    yield


@pytest.fixture
def no_hang(request):
    """Fail a test that blocks (a FIFO opened, a pipe never closed) instead of hanging the suite.

    A test module that reads a hostile store uses it for every test with
    ``pytestmark = pytest.mark.usefixtures("no_hang")``; it may set
    ``NO_HANG_SECONDS`` to allow slower tests (a whole module run) more time.
    """
    seconds = getattr(request.module, "NO_HANG_SECONDS", NO_HANG_SECONDS)

    def alarm(signum, frame):
        raise AssertionError("%s blocked for %d seconds (a FIFO or device in the store opened?)"
                             % (request.node.name, seconds))
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
