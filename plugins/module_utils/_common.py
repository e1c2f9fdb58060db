# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Shared error type, time and duration helpers for lifeboat.backup."""

from __future__ import annotations

import datetime
import os
import re
import tempfile

__all__ = [
    "LifeboatError",
    "parse_duration",
    "utcnow",
    "format_ts",
    "parse_ts",
    "write_secret_file",
    "remove_file",
    "SecretFile",
    "plain_results",
]


class LifeboatError(Exception):
    """An expected failure. Its message is one sentence meant for the operator."""


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value, option="duration"):
    """Return seconds (float) for 90, '90s', '15m', '12h', '7d', '2w' or a sum like '1d12h'."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise LifeboatError("%s must be a duration like 30m, 12h or 7d, not %r." % (option, value))
    if isinstance(value, (int, float)):
        if value < 0:
            raise LifeboatError("%s must not be negative (got %r)." % (option, value))
        return float(value)
    text = str(value).strip().lower()
    parts = re.findall(r"\d+(?:\.\d+)?\s*[smhdw]?", text)
    if not parts or "".join(p.replace(" ", "") for p in parts) != text.replace(" ", ""):
        raise LifeboatError("%s must be a duration like 30m, 12h, 7d or 1d12h, not %r." % (option, value))
    if len(parts) > 1 and not all(p.strip()[-1].isalpha() for p in parts):
        raise LifeboatError("%s must give a unit for every part, like 1d12h, not %r." % (option, value))
    total = 0.0
    for part in parts:
        match = _DURATION_RE.match(part)
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return total


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def format_ts(when):
    """ISO 8601 UTC with a Z suffix and microseconds dropped to milliseconds.

    Raises ValueError (never OverflowError) for a time that has no UTC equivalent.
    """
    try:
        when = when.astimezone(datetime.timezone.utc)
    except OverflowError:
        raise ValueError("time %s is out of range in UTC" % ascii(str(when))[:80])
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (when.microsecond // 1000)


_TS_MAX_CHARS = 64


def parse_ts(text):
    """Parse the timestamps format_ts writes (and plain ISO 8601 with an offset).

    Any malformed input, an overlong one, a missing time zone or a time that leaves the
    representable range once moved to UTC raises ValueError with a short, escaped message.
    """
    if not isinstance(text, str):
        raise ValueError("timestamp must be a string")
    shown = ascii(text[:_TS_MAX_CHARS]) + ("..." if len(text) > _TS_MAX_CHARS else "")
    if len(text) > _TS_MAX_CHARS:
        raise ValueError("timestamp %s is too long" % shown)
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.datetime.fromisoformat(value)
    except (ValueError, OverflowError, TypeError):
        raise ValueError("timestamp %s is not an ISO 8601 time" % shown)
    if when.tzinfo is None:
        raise ValueError("timestamp %s has no time zone" % shown)
    try:
        return when.astimezone(datetime.timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("timestamp %s is out of range in UTC" % shown)


def plain_results(module):
    """Stop ``module`` (an AnsibleModule) from adding file attributes to its results.

    AnsibleModule.exit_json and fail_json add the attributes of the file named
    by a ``path`` key (``size``, ``mode``, ``owner``, ``uid``, ... or
    ``state: absent``). Here ``path`` is a backup set's directory, whose
    ``size: 4096`` reads as the size of the backup: the results keep ``path``
    and say nothing else about that directory. Call once, right after building the module.
    """
    module.add_path_info = lambda kwargs: kwargs
    return module


def write_secret_file(content, prefix, tmpdir=None):
    """Write ``content`` to a new 0600 temp file and return its path: secrets go to tools by file, never argv."""
    fd, path = tempfile.mkstemp(prefix=prefix, dir=tmpdir)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def remove_file(path):
    """Remove ``path`` if it exists; never raises."""
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


class SecretFile(object):
    """A secret handed to a child process by name, never by value.

    Where the kernel has ``memfd_create`` the secret lives in an anonymous
    in-memory file (a regular file, mode 0600) that the child opens as
    ``/dev/fd/N``: no file ever exists on disk, and it vanishes with this
    process, even after ``kill -9``. Elsewhere it is a 0600 temporary file in
    ``tmpdir`` that is removed on exit. Children must inherit ``pass_fds``::

        with SecretFile(password_line, "lifeboat-pgpass-") as secret:
            runner.run(argv, env={"PGPASSFILE": secret.path}, pass_fds=secret.pass_fds)
    """

    def __init__(self, content, prefix="lifeboat-secret-", tmpdir=None, use_memfd=True):
        self.content = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        self.prefix = prefix
        self.tmpdir = tmpdir
        self.use_memfd = use_memfd and hasattr(os, "memfd_create")
        self.fd = None
        self.path = None
        self._file = None

    @property
    def pass_fds(self):
        return (self.fd,) if self.fd is not None else ()

    def open(self):
        if self.use_memfd:
            try:
                fd = os.memfd_create(self.prefix.rstrip("-") or "lifeboat-secret", 0)
            except OSError:
                fd = None
            if fd is not None:
                try:
                    os.fchmod(fd, 0o600)
                    view = memoryview(self.content)
                    while view:
                        view = view[os.write(fd, view):]
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.set_inheritable(fd, True)
                except BaseException:
                    os.close(fd)
                    raise
                self.fd = fd
                self.path = "/dev/fd/%d" % fd
                return self
        self._file = write_secret_file(self.content, self.prefix, self.tmpdir)
        self.path = self._file
        return self

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        if self._file:
            remove_file(self._file)
            self._file = None
        self.path = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        self.close()
        return False
