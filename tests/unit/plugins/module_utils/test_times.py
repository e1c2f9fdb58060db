# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Times from a store are untrusted: odd ones raise ValueError only, and future-dated sets never count."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
from ansible_collections.lifeboat.backup.plugins.module_utils._common import format_ts, parse_ts, utcnow
from ansible_collections.lifeboat.backup.plugins.modules import backup_info
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import make_set

UTC = datetime.timezone.utc


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+23:59",       # before year 1 in UTC: OverflowError before
        "9999-12-31T23:59:59-23:59",       # after year 9999 in UTC: OverflowError before
        "0001-01-01T00:00:00+00:01",
        "2026-01-01T00:00:00+99:00",       # offset of 24 h or more
        "2026-01-01T00:00:00+24:00",
        "2026-13-01T00:00:00Z",
        "2026-11-26T03:15:00" + "0" * 100 + "Z",
        "\x00\udcff\u202e",
        "9" * 10000,
    ],
)
def test_parse_ts_raises_only_value_error(text):
    with pytest.raises(ValueError) as info:
        parse_ts(text)
    message = str(info.value)
    assert len(message) < 200 and message.isascii() and message.isprintable()


def test_parse_ts_edges_that_stay_valid():
    assert parse_ts("0001-01-01T00:00:00Z") == datetime.datetime(1, 1, 1, tzinfo=UTC)
    assert parse_ts("9999-12-31T23:59:59.999Z") == datetime.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert parse_ts("2026-11-26T05:15:00+02:00") == datetime.datetime(2026, 11, 26, 3, 15, tzinfo=UTC)


def test_format_ts_raises_only_value_error():
    far = datetime.datetime(9999, 12, 31, 23, 0, tzinfo=datetime.timezone(-datetime.timedelta(hours=5)))
    with pytest.raises(ValueError, match="out of range in UTC"):
        format_ts(far)


def test_lock_file_with_an_out_of_range_time_is_unreadable_not_a_traceback():
    """BUG: a lock file naming another node with expires_at 9999-12-31T23:59:59-23:59 raised OverflowError."""
    info = {"pid": 1, "node": "elsewhere", "expires_at": "9999-12-31T23:59:59-23:59"}
    assert _stores.lock_holder_state(info, "here", utcnow()) == "the lock file is unreadable"


# ------------------------------------------------------------------ a future-dated set in a real store

def set_id_at(when, set_type="full"):
    return when.strftime("%Y%m%dT%H%M%SZ") + "-" + set_type


def test_a_future_set_does_not_stop_backups(tmp_path):
    """BUG: a set dated in the future was always 'younger than max_age', so every backup of its source skipped."""
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    now = utcnow().replace(microsecond=0)
    make_set(store, "db1", "app", set_id_at(now - datetime.timedelta(days=2)))
    make_set(store, "db1", "app", set_id_at(now + datetime.timedelta(days=365)))
    job = _jobs.BackupJob(store, "db1", "app", "test", "printf", max_age="1d", now=lambda: now)
    plan = job.plan()
    assert plan["action"] == "backup"
    assert plan["set_id"] == set_id_at(now)
    # A genuinely recent set still makes the run skip.
    make_set(store, "db1", "app", set_id_at(now - datetime.timedelta(hours=1)))
    assert job.plan()["action"] == "skip"


def test_a_future_set_cannot_hide_an_rpo_breach_in_backup_info(tmp_path):
    """BUG: backup_info took the future set as the latest, so a 3-day-old source read 'ok' against a 1 day RPO."""
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    now = utcnow().replace(microsecond=0)
    make_set(store, "db1", "app", set_id_at(now - datetime.timedelta(days=3)), duration=0)
    make_set(store, "db1", "app", set_id_at(now + datetime.timedelta(days=30)), duration=0)
    result = backup_info.report(store, None, None, 86400.0, now)
    assert result["rpo_status"]["db1/app"]["status"] == "violated"
    assert result["latest"]["db1/app"]["set_id"] == set_id_at(now - datetime.timedelta(days=3))
    assert [s["future"] for s in result["sets"]] == [False, True]


def test_a_future_set_is_never_restored_as_latest(tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path / "store")})
    now = utcnow().replace(microsecond=0)
    old = set_id_at(now - datetime.timedelta(days=3))
    make_set(store, "db1", "app", old)
    make_set(store, "db1", "app", set_id_at(now + datetime.timedelta(days=30)))
    manifest, chain = _jobs.load_set(store, "db1", "app")
    assert manifest["set_id"] == old and [m["set_id"] for m in chain] == [old]
    sets = _catalog.scan(store, "db1", "app")[0]
    assert [s["set_id"] for s in _catalog.future_sets(sets, now)] == [set_id_at(now + datetime.timedelta(days=30))]
