# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import os
import stat
import subprocess

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    SecretFile,
    format_ts,
    parse_duration,
    parse_ts,
    utcnow,
)

UTC = datetime.timezone.utc
PLUS2 = datetime.timezone(datetime.timedelta(hours=2))
MINUS0530 = datetime.timezone(-datetime.timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    "value, seconds",
    [
        (90, 90.0),
        (0, 0.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("12h", 43200.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("1d12h", 129600.0),
        ("1h30m", 5400.0),
        ("1w1d1h1m1s", 604800.0 + 86400 + 3600 + 60 + 1),
        ("1.5h", 5400.0),
        ("0.5d", 43200.0),
        (" 15m ", 900.0),
        ("15 m", 900.0),
        ("15M", 900.0),
        ("1d 12h", 129600.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value, seconds):
    result = parse_duration(value)
    assert result == seconds
    assert isinstance(result, float)


def test_parse_duration_none_means_unset():
    assert parse_duration(None) is None


@pytest.mark.parametrize(
    "value",
    ["", "   ", "abc", "-5", -5, -0.5, True, False, "5x", "m", "h5", "1d-2h", "5 x", "1.h", ".5h", "5ms",
     "1e3", "P1D", [5], {}],
)
def test_parse_duration_rejects(value):
    with pytest.raises(LifeboatError) as info:
        parse_duration(value, "max_age")
    message = str(info.value)
    assert message.startswith("max_age ")
    assert message.endswith(".")
    assert "\n" not in message


@pytest.mark.parametrize(
    "when, text",
    [
        (datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC), "2026-11-26T03:15:00.000Z"),
        (datetime.datetime(2026, 11, 26, 3, 15, 0, 123456, tzinfo=UTC), "2026-11-26T03:15:00.123Z"),
        (datetime.datetime(2026, 11, 26, 3, 15, 0, 999999, tzinfo=UTC), "2026-11-26T03:15:00.999Z"),
        (datetime.datetime(2026, 11, 26, 5, 15, 0, tzinfo=PLUS2), "2026-11-26T03:15:00.000Z"),
        (datetime.datetime(2026, 11, 25, 21, 45, 0, tzinfo=MINUS0530), "2026-11-26T03:15:00.000Z"),
        (datetime.datetime(1999, 12, 31, 23, 59, 59, 1000, tzinfo=UTC), "1999-12-31T23:59:59.001Z"),
    ],
)
def test_format_ts(when, text):
    assert format_ts(when) == text


@pytest.mark.parametrize(
    "when",
    [
        datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC),
        datetime.datetime(2026, 11, 26, 3, 15, 0, 123456, tzinfo=UTC),
        datetime.datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=PLUS2),
        datetime.datetime(2024, 2, 29, 0, 0, 0, 500, tzinfo=MINUS0530),
        datetime.datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC),
    ],
)
def test_format_parse_round_trip(when):
    text = format_ts(when)
    back = parse_ts(text)
    assert back.tzinfo is not None and back.utcoffset() == datetime.timedelta(0)
    # format_ts keeps milliseconds: the round trip is exact up to them.
    assert back == when.replace(microsecond=when.microsecond // 1000 * 1000)
    assert format_ts(back) == text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-26T03:15:00.123Z", datetime.datetime(2026, 11, 26, 3, 15, 0, 123000, tzinfo=UTC)),
        ("2026-11-26T03:15:00Z", datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)),
        ("2026-11-26T03:15:00+00:00", datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)),
        ("2026-11-26T05:15:00+02:00", datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)),
        (" 2026-11-26T03:15:00Z ", datetime.datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)),
    ],
)
def test_parse_ts(text, expected):
    result = parse_ts(text)
    assert result == expected
    assert result.utcoffset() == datetime.timedelta(0)


@pytest.mark.parametrize("text", ["2026-11-26T03:15:00", "yesterday", "", 1700000000, None, b"2026-11-26T03:15:00Z"])
def test_parse_ts_rejects(text):
    with pytest.raises(ValueError):
        parse_ts(text)


def test_utcnow_is_aware_utc():
    now = utcnow()
    assert now.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(UTC) - now).total_seconds()) < 5


def test_lifeboat_error_is_an_exception():
    assert issubclass(LifeboatError, Exception)
    assert str(LifeboatError("One sentence.")) == "One sentence."


def test_secret_file_memfd_is_private_and_vanishes():
    with SecretFile("s3cr3t\n", "lifeboat-test-") as secret:
        assert secret.path.startswith("/dev/fd/")
        assert secret.pass_fds and os.get_inheritable(secret.pass_fds[0])
        assert stat.S_IMODE(os.stat(secret.path).st_mode) == 0o600
        assert stat.S_ISREG(os.stat(secret.path).st_mode)
        out = subprocess.run(["cat", secret.path], pass_fds=secret.pass_fds, capture_output=True, check=True)
        assert out.stdout == b"s3cr3t\n"
        fd = secret.fd
    with pytest.raises(OSError):
        os.fstat(fd)


def test_secret_file_fallback_is_0600_and_removed(tmp_path):
    with SecretFile(b"key", "lifeboat-test-", tmpdir=str(tmp_path), use_memfd=False) as secret:
        assert secret.pass_fds == ()
        assert stat.S_IMODE(os.stat(secret.path).st_mode) == 0o600
        with open(secret.path, "rb") as handle:
            assert handle.read() == b"key"
    assert os.listdir(str(tmp_path)) == []
