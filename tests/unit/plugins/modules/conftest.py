# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the PostgreSQL module tests."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakePostgres


@pytest.fixture
def pg(tmp_path):
    """Stand-in psql/pg_dump/pg_dumpall/pg_restore that record what they were given."""
    return FakePostgres(tmp_path)


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "store")
