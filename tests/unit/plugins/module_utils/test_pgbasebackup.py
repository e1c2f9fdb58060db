# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the pg_basebackup engine: LSNs, WAL file names, pg_basebackup's messages."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _pgbasebackup
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError

MB16 = 16 * 1024 * 1024

LOG = """pg_basebackup: initiating base backup, waiting for checkpoint to complete
pg_basebackup: checkpoint completed
pg_basebackup: write-ahead log start point: 1/FF000028 on timeline 3
pg_basebackup: write-ahead log end point: 2/100
pg_basebackup: base backup completed
"""


def test_parse_log():
    assert _pgbasebackup.parse_log(LOG) == ("1/FF000028", 3, "2/100")
    with pytest.raises(LifeboatError, match="did not report its start and end WAL locations"):
        _pgbasebackup.parse_log("pg_basebackup: error: connection failed\n")


def test_lsn_round_trip():
    assert _pgbasebackup.parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert _pgbasebackup.format_lsn(_pgbasebackup.parse_lsn("16/B374D848")) == "16/B374D848"
    with pytest.raises(LifeboatError):
        _pgbasebackup.parse_lsn("16-B374D848")


@pytest.mark.parametrize("lsn, size, previous, name", [
    ("0/2000028", MB16, False, "000000010000000000000002"),
    ("0/2000100", MB16, True, "000000010000000000000002"),
    # A stop point exactly on a segment boundary: the last file needed is the one before it (PostgreSQL's rule).
    ("0/3000000", MB16, True, "000000010000000000000002"),
    ("0/3000000", MB16, False, "000000010000000000000003"),
    # Crossing a log id: 0x100 segments of 16 MiB per id.
    ("1/FF000028", MB16, False, "0000000100000001000000FF"),
    ("2/0", MB16, True, "0000000100000001000000FF"),
    # 64 MiB segments: 0x40 per id.
    ("1/C4000000", 64 * 1024 * 1024, False, "000000010000000100000031"),
])
def test_wal_file(lsn, size, previous, name):
    assert _pgbasebackup.wal_file(1, _pgbasebackup.parse_lsn(lsn), size, previous) == name
