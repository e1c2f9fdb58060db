# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the unit tests of modules and module_utils."""

from __future__ import annotations

import signal

import pytest

NO_HANG_SECONDS = 10


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
