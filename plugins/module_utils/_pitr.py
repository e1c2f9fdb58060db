# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Point-in-time recovery of PostgreSQL: the recoverable window, the base backup for a target, the restore.

The window is computed from what the store lists, nothing else: the manifests
of the base backups (``postgresql`` / ``pg_basebackup`` sets, whose
``position`` holds start and stop LSN, timeline and times) and the names of
the WAL objects under ``wal/``. A base backup can be restored to any point
from its stop (the first consistent point) to the end of the run of archived
segments that follows it without a hole. Object names that are not WAL file
names are ignored (a store may be written by others): they can neither widen
nor break the window.

``PitrRestore`` is the RestoreJob engine of ``postgresql_restore method: pitr``.
"""

from __future__ import annotations

import datetime
import os
import pwd
import re
import shutil
import time

from ansible_collections.lifeboat.backup.plugins.module_utils._common import (
    LifeboatError,
    format_ts,
    parse_ts,
    utcnow,
)
from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog

ENGINE = "postgresql"
METHOD = "pg_basebackup"
WAL_PREFIX = "wal/"
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
# A WAL object: wal/<file name PostgreSQL passed as %f><codec suffix>. The file
# names are upper-case hex as PostgreSQL writes them; the suffix is a few plain
# extensions (.zst, .gz, .age, ...).
_SUFFIX = r"((?:\.(?!partial\b|backup\b|history\b)[a-z0-9]{1,8}){0,4})"
SEGMENT_RE = re.compile(r"\Awal/([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})" + _SUFFIX + r"\Z")
HISTORY_RE = re.compile(r"\Awal/([0-9A-F]{8})\.history" + _SUFFIX + r"\Z")
LSN_RE = re.compile(r"\A([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\Z")
RESTORE_POINT_MAX = 63  # MAXFNAMELEN - 1: PostgreSQL's limit for a restore point name


class WindowError(LifeboatError):
    """A target outside the recoverable window; the message gives the window."""


# ------------------------------------------------------------------ LSNs and WAL names

def parse_lsn(text, what="LSN"):
    """``X/Y`` (hex) -> int; one sentence for anything else."""
    match = LSN_RE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise LifeboatError("%s %r is not a PostgreSQL LSN (like 0/16B3748)." % (what, text))
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def segments_per_id(segment_size):
    return 0x100000000 // segment_size


def wal_name(timeline, segno, segment_size=DEFAULT_SEGMENT_SIZE):
    per = segments_per_id(segment_size)
    return "%08X%08X%08X" % (timeline, segno // per, segno % per)


def parse_wal_name(name, segment_size=DEFAULT_SEGMENT_SIZE):
    """(timeline, segment number) of a 24-hex WAL file name, or None when it is not one."""
    if not isinstance(name, str) or not re.match(r"\A[0-9A-F]{24}\Z", name):
        return None
    timeline, high, low = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    if timeline == 0 or low >= segments_per_id(segment_size):
        return None
    return timeline, high * segments_per_id(segment_size) + low


def archived(names, segment_size=DEFAULT_SEGMENT_SIZE):
    """What the object names hold: ({segment number: set of timelines}, set of timelines with a .history).

    Names that are not WAL objects (other prefixes, lower-case hex, ``..``,
    ``.partial`` segments, ``.backup`` labels, anything else) are left out.
    """
    segments, histories = {}, set()
    per = segments_per_id(segment_size)
    for name in names:
        if not isinstance(name, str):
            continue
        match = SEGMENT_RE.match(name)
        if match:
            timeline, high, low = (int(g, 16) for g in match.groups()[:3])
            if timeline and low < per:
                segments.setdefault(high * per + low, set()).add(timeline)
            continue
        match = HISTORY_RE.match(name)
        if match and int(match.group(1), 16) > 1:
            histories.add(int(match.group(1), 16))
    return segments, histories


# ------------------------------------------------------------------ the window

def base_backups(manifests, now=None):
    """The PostgreSQL base backups among ``manifests`` with a usable position, oldest first.

    Sets dated in the future (a wrong clock or a forgery) are left out, as are
    sets whose position is not what a base backup records.
    """
    found = []
    for manifest in _catalog.split_future(manifests, now)[0]:
        if manifest.get("engine") != ENGINE or manifest.get("method") != METHOD:
            continue
        base = describe_base(manifest)
        if base is not None:
            found.append(base)
    found.sort(key=lambda b: (b["stop_lsn"], b["stop_time"], b["set_id"]))
    return found


def describe_base(manifest):
    """The facts of one base backup the window needs, or None when its position lacks them."""
    position = manifest.get("position") or {}
    try:
        start_lsn = parse_lsn(position.get("start_lsn"))
        stop_lsn = parse_lsn(position.get("stop_lsn"))
        timeline = position.get("timeline")
        if not isinstance(timeline, int) or isinstance(timeline, bool) or timeline < 1 or stop_lsn < start_lsn:
            return None
        stop_time = parse_ts(position.get("stop_time") or manifest["ended_at"])
        segment_size = position.get("wal_segment_size", DEFAULT_SEGMENT_SIZE)
        if not isinstance(segment_size, int) or segment_size < 1024 * 1024 or segment_size & (segment_size - 1):
            return None
    except (LifeboatError, KeyError, TypeError, ValueError):
        return None
    return {
        "set_id": manifest["set_id"],
        "start_lsn": start_lsn,
        "stop_lsn": stop_lsn,
        "timeline": timeline,
        "stop_time": stop_time,
        "segment_size": segment_size,
        "manifest": manifest,
    }


def reach(base, segments, histories):
    """Where WAL replay from ``base`` can get to: (end LSN, first missing segment number or None, last segment).

    A segment counts when the archive holds it on the base's timeline or on a
    later one that has a ``.history`` file (recovery follows the newest
    timeline). The segments from start to stop are in the base backup itself.
    """
    size = base["segment_size"]
    timelines = set([base["timeline"]]) | set(t for t in histories if t > base["timeline"])
    segno = base["stop_lsn"] // size + 1
    top = max(segments) if segments else -1
    while segno <= top and segments.get(segno, set()) & timelines:
        segno += 1
    end = max(base["stop_lsn"], segno * size)
    missing = segno if segno <= top else None
    return end, missing, segno - 1


def window(manifests, names, now=None):
    """The recoverable window of one source, from its set manifests and its WAL object names.

    Returns a dict: ``earliest`` and ``latest`` ({time, lsn, set_id} of the
    first and of the last restorable point: a time is known for the earliest
    only, the latest is the end of the archived WAL), ``ranges`` (one per base
    backup: from its stop to where its WAL runs out), ``gaps`` (missing
    segments since the oldest base backup, as first/last WAL file names) and
    ``segments`` (how many archived segments count). All None / empty when
    there is no base backup.
    """
    bases = base_backups(manifests, now)
    result = {"earliest": None, "latest": None, "ranges": [], "gaps": [], "segments": 0, "bases": len(bases)}
    if not bases:
        return result
    size = bases[0]["segment_size"]
    segments, histories = archived(names, size)
    for base in bases:
        end, missing, last = reach(base, segments, histories)
        result["ranges"].append({
            "set_id": base["set_id"],
            "timeline": base["timeline"],
            "from_time": format_ts(base["stop_time"]),
            "from_lsn": format_lsn(base["stop_lsn"]),
            "to_lsn": format_lsn(end),
            "missing_wal": wal_name(base["timeline"], missing, size) if missing is not None else None,
        })
    first = bases[0]
    result["earliest"] = {"time": result["ranges"][0]["from_time"], "lsn": result["ranges"][0]["from_lsn"],
                          "set_id": first["set_id"]}
    best = max(result["ranges"], key=lambda r: parse_lsn(r["to_lsn"]))
    result["latest"] = {"time": None, "lsn": best["to_lsn"], "set_id": best["set_id"]}
    start = first["start_lsn"] // size
    present = sorted(n for n in segments if n >= start)
    result["segments"] = len(present)
    result["gaps"] = find_gaps(start, present, first["timeline"], size, first["stop_lsn"] // size)
    return result


def find_gaps(start, present, timeline, size, covered_to):
    """Runs of missing segment numbers between ``start`` and the newest archived one (``covered_to``: in the base)."""
    gaps = []
    expected = start
    for segno in present:
        if segno > expected:
            first, last = max(expected, covered_to + 1), segno - 1
            if first <= last:
                gaps.append({"first": wal_name(timeline, first, size), "last": wal_name(timeline, last, size),
                             "count": last - first + 1})
        expected = max(expected, segno + 1)
    return gaps


def describe_window(win):
    """One clause naming the recoverable window, for messages."""
    if not win["ranges"]:
        return "there is no PostgreSQL base backup (pg_basebackup set) of this source, so there is no recoverable window"
    parts = []
    for one in win["ranges"]:
        text = "%s (LSN %s, base backup %s) to LSN %s" % (one["from_time"], one["from_lsn"], one["set_id"],
                                                          one["to_lsn"])
        if one["missing_wal"]:
            text += " (WAL segment %s is missing from the archive)" % one["missing_wal"]
        parts.append(text)
    return "the recoverable window is " + "; ".join(parts)


# ------------------------------------------------------------------ the target

def pick_base(manifests, names, target, now=None, set_id=None):
    """The base backup manifest to restore for ``target`` and the window; WindowError when it is outside.

    ``target`` is a dict with one of ``time`` (datetime, UTC), ``lsn`` (int),
    ``name`` (str) or ``latest`` (True). The base is the newest one that ends
    before the target (for a name or latest: the newest one), unless
    ``set_id`` names one.
    """
    now = now or utcnow()
    win = window(manifests, names, now)
    bases = base_backups(manifests, now)
    if not bases:
        raise WindowError("Nothing to recover from: %s." % describe_window(win))
    ends = dict((r["set_id"], parse_lsn(r["to_lsn"])) for r in win["ranges"])
    if set_id:
        chosen = [b for b in bases if b["set_id"] == set_id]
        if not chosen:
            raise WindowError("Set %s is not a usable PostgreSQL base backup of this source; %s."
                              % (set_id, describe_window(win)))
        candidates = chosen
    else:
        candidates = bases
    if "time" in target:
        when = target["time"]
        if when > now:
            raise WindowError("Target time %s is in the future (now %s); %s."
                              % (format_ts(when), format_ts(now), describe_window(win)))
        fitting = [b for b in candidates if b["stop_time"] <= when]
        if not fitting:
            raise WindowError("Target time %s is before the end of the %s base backup; %s."
                              % (format_ts(when), "chosen" if set_id else "oldest", describe_window(win)))
        base = max(fitting, key=lambda b: (b["stop_time"], b["stop_lsn"]))
    elif "lsn" in target:
        lsn = target["lsn"]
        fitting = [b for b in candidates if b["stop_lsn"] <= lsn]
        if not fitting:
            raise WindowError("Target LSN %s is before the end of the %s base backup; %s."
                              % (format_lsn(lsn), "chosen" if set_id else "oldest", describe_window(win)))
        reachable = [b for b in fitting if lsn <= ends[b["set_id"]]]
        if not reachable:
            raise WindowError("Target LSN %s is beyond the archived WAL; %s." % (format_lsn(lsn), describe_window(win)))
        base = max(reachable, key=lambda b: (b["stop_lsn"], b["stop_time"]))
    else:
        base = candidates[-1]
    return base["manifest"], win


def parse_target(params, now=None):
    """The recovery target from the module options: exactly one of target_time, target_lsn, target_name, latest."""
    given = [key for key in ("target_time", "target_lsn", "target_name") if params.get(key) not in (None, "")]
    if params.get("latest"):
        given.append("latest")
    if len(given) != 1:
        raise LifeboatError("method pitr needs exactly one of target_time, target_lsn, target_name or latest: true%s."
                            % (" (given: %s)" % ", ".join(given) if given else ""))
    key = given[0]
    if key == "target_time":
        return {"time": parse_target_time(params["target_time"], now)}
    if key == "target_lsn":
        return {"lsn": parse_lsn(params["target_lsn"], "target_lsn")}
    if key == "target_name":
        name = params["target_name"]
        if len(name.encode("utf-8")) > RESTORE_POINT_MAX or not name.isprintable():
            raise LifeboatError("target_name must be a restore point name of at most %d bytes without control "
                                "characters." % RESTORE_POINT_MAX)
        return {"name": name}
    return {"latest": True}


def parse_target_time(text, now=None):
    """An ISO 8601 time with an explicit zone (``Z`` or an offset) -> aware UTC datetime."""
    if not isinstance(text, str):
        raise LifeboatError("target_time must be text such as 2026-12-01T04:10:00Z.")
    cleaned = text.strip().replace(" ", "T", 1)
    if cleaned.endswith("Z") or cleaned.endswith("z"):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        when = datetime.datetime.fromisoformat(cleaned)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise LifeboatError("target_time %r is not an ISO 8601 time with a zone (such as 2026-12-01T04:10:00Z or "
                            "2026-12-01 05:10:00+01:00)." % text)
    return when.astimezone(datetime.timezone.utc)


def recovery_settings(target, restore_command):
    """The (name, value) settings of a targeted archive recovery, in the order they are written."""
    settings = [("restore_command", restore_command), ("recovery_target_timeline", "latest")]
    if "time" in target:
        settings.append(("recovery_target_time", target["time"].strftime("%Y-%m-%d %H:%M:%S.%f+00")))
    elif "lsn" in target:
        settings.append(("recovery_target_lsn", format_lsn(target["lsn"])))
    elif "name" in target:
        settings.append(("recovery_target_name", target["name"]))
    if "latest" not in target:
        settings += [("recovery_target_inclusive", "on"), ("recovery_target_action", "promote")]
    return settings


def conf_line(name, value):
    """One postgresql.conf line, the value quoted; a value with a newline or NUL is refused."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    value = str(value)
    if "\n" in value or "\r" in value or "\0" in value:
        raise LifeboatError("The value of %s holds a line break; it cannot go into postgresql.conf." % name)
    return "%s = '%s'\n" % (name, value.replace("\\", "\\\\").replace("'", "''"))
