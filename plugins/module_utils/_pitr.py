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
from ansible_collections.lifeboat.backup.plugins.module_utils import _codec
from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.plugins.module_utils import _wal
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import runner_for

ENGINE = "postgresql"
METHOD = "pg_basebackup"
WAL_PREFIX = "wal/"
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
# A WAL object is wal/<file name PostgreSQL passed as %f><codec suffix> (_wal.object_name).
HISTORY_RE = re.compile(r"\Awal/([0-9A-F]{8})\.history\Z")
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

    Names are read as the archive command writes them (``_wal.parse_object_name``);
    anything else (other prefixes, lower-case hex, ``..``, digests, ``.partial``
    segments, ``.backup`` labels) is left out.
    """
    segments, histories = {}, set()
    for name in names:
        if not isinstance(name, str):
            continue
        parsed = _wal.parse_object_name(name)
        if parsed is None:
            continue
        file_name = parsed[0]
        found = parse_wal_name(file_name, segment_size)
        if found is not None:
            segments.setdefault(found[1], set()).add(found[0])
            continue
        match = HISTORY_RE.match(WAL_PREFIX + file_name)
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


def first_after(base, size):
    """The first segment replay needs from the archive: the one after the segment holding the backup's last byte."""
    return (base["stop_lsn"] + size - 1) // size


def reach(base, segments, histories):
    """Where WAL replay from ``base`` can get to: (end LSN, first missing segment number or None, last segment).

    A segment counts when the archive holds it on the base's timeline or on a
    later one that has a ``.history`` file (recovery follows the newest
    timeline). The segments from start to stop are in the base backup itself.
    """
    size = base["segment_size"]
    timelines = set([base["timeline"]]) | set(t for t in histories if t > base["timeline"])
    segno = first_after(base, size)
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
    result["gaps"] = find_gaps(start, present, first["timeline"], size, first_after(first, size) - 1)
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


# ------------------------------------------------------------------ the restore

READY_QUERY = ("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), "
               "to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
               "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END")
NOT_REACHED = "recovery ended before configured recovery target was reached"
LAST_XACT = "last completed transaction was at log time"
LOG_NAME = "lifeboat-pitr.log"


def os_user_ids(name):
    """(uid, gid, home) of the cluster's OS user; one sentence when it does not exist or is root."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LifeboatError("OS user %s does not exist; set os_user to the user PostgreSQL runs as." % name)
    if entry.pw_uid == 0:
        raise LifeboatError("os_user %s is root; PostgreSQL refuses to run as root." % name)
    return entry.pw_uid, entry.pw_gid


def check_data_dir(path, what="data_dir"):
    """How ``path`` may receive the restore: "empty" (an empty directory) or "absent" (its parent exists).

    One sentence otherwise: a restore never writes into a directory that holds anything.
    """
    if not os.path.isabs(path):
        raise LifeboatError("%s %s must be an absolute path." % (what, path))
    if os.path.islink(path):
        raise LifeboatError("%s %s is a symbolic link; give the real directory." % (what, path))
    if os.path.isdir(path):
        if os.listdir(path):
            raise LifeboatError("%s %s is not empty; a point-in-time restore goes into an empty or new "
                                "directory, never over existing files." % (what, path))
        return "empty"
    if os.path.exists(path):
        raise LifeboatError("%s %s exists and is not a directory." % (what, path))
    if not os.path.isdir(os.path.dirname(path.rstrip("/")) or "/"):
        raise LifeboatError("The parent directory of %s %s does not exist." % (what, path))
    return "absent"


def port_in_use(port, socket_dir):
    """True when something listens on ``port`` (TCP on 127.0.0.1, or a PostgreSQL lock file in ``socket_dir``)."""
    import socket
    if os.path.exists(os.path.join(socket_dir, ".s.PGSQL.%d.lock" % port)):
        return True
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        return probe.connect_ex(("127.0.0.1", port)) == 0
    finally:
        probe.close()


def empty_directory(path):
    """Remove everything inside ``path`` (never following links); keep ``path`` itself."""
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)


def chown_tree(path, uid, gid):
    """Give ``path`` and everything below it to uid:gid, never following a link."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)
    os.lchown(path, uid, gid)


def last_lines(path, offset=0, limit=65536):
    try:
        with open(path, "rb") as handle:
            handle.seek(max(offset, os.path.getsize(path) - limit))
            return handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def log_failure(lines):
    """The server's own reason for stopping: its last FATAL or PANIC line, else its last line."""
    for line in reversed(lines):
        for level in ("PANIC:", "FATAL:"):
            if level in line:
                return line.split(level, 1)[1].strip()
    return lines[-1].strip() if lines else "no message in the server log"


class PitrRestore(object):
    """The RestoreJob engine of a point-in-time restore.

    ``options``: data_dir, port, socket_dir, os_user, bin_dir (or None: the
    server version's directory under /usr/lib/postgresql, else PATH), timeout
    (seconds), target (parse_target), window (from pick_base) and
    ``restore_command`` (a callable job -> the restore_command text; it is
    called once the data directory exists).
    """

    def __init__(self, module, runner, options):
        self.module = module
        self.runner = runner
        self.options = options
        self.target = options["target"]
        self.window = options["window"]
        self.data_dir = os.path.abspath(options["data_dir"])
        self.port = options["port"]
        self.socket_dir = options["socket_dir"]
        self.os_user = options["os_user"]
        self.uid = self.gid = None
        self.bin_dir = None
        self.major = None
        self.state = None
        self.made = False
        self.started = False
        self.done = False
        self.reached = {}
        self.verified = None
        self.log = os.path.join(self.data_dir, LOG_NAME)
        self.command_dir = None
        self.command_dir_state = None

    # -------------------------------------------------------------- helpers
    def as_user(self, argv):
        """``argv`` run as the cluster's OS user (through setpriv when root)."""
        if os.geteuid() == 0:
            setpriv = self.runner.find("setpriv", "util-linux")
            return [setpriv, "--reuid=%d" % self.uid, "--regid=%d" % self.gid, "--init-groups", "--"] + list(argv)
        if os.geteuid() != self.uid:
            raise LifeboatError("The restore runs as uid %d; it must run as root or as os_user %s."
                                % (os.geteuid(), self.os_user))
        return list(argv)

    def tool(self, name):
        path = os.path.join(self.bin_dir, name)
        if not os.access(path, os.X_OK):
            raise LifeboatError("%s was not found in %s; set pg_bin_dir to the PostgreSQL %s programs."
                                % (name, self.bin_dir, self.major or ""))
        return path

    def run(self, argv, **kwargs):
        return self.runner.run(self.as_user(argv), cwd="/", **kwargs)

    # -------------------------------------------------------------- RestoreJob hooks
    def preconditions(self, job):
        manifest = job.manifest
        if manifest["engine"] != ENGINE or manifest["method"] != METHOD:
            raise LifeboatError("Set %s is a %s %s set, not a PostgreSQL base backup (pg_basebackup); method pitr "
                                "restores base backups only." % (manifest["set_id"], manifest["engine"],
                                                                 manifest["method"]))
        self.uid, self.gid = os_user_ids(self.os_user)
        self.state = check_data_dir(self.data_dir)
        check_data_dir(self.options["command_dir"], "wal_command_dir")
        version = (manifest.get("position") or {}).get("server_version")
        self.major = version // 10000 if isinstance(version, int) and version >= 100000 else None
        self.bin_dir = self.options.get("bin_dir")
        if not self.bin_dir:
            guess = "/usr/lib/postgresql/%s/bin" % self.major if self.major else None
            if guess and os.path.isdir(guess):
                self.bin_dir = guess
            else:
                self.bin_dir = os.path.dirname(self.runner.find("pg_ctl", "postgresql"))
        rc, out, err = self.runner.run([self.tool("pg_ctl"), "--version"])
        found = re.search(r"(\d+)(?:\.\d+)?", out)
        if self.major and (rc != 0 or not found or int(found.group(1)) != self.major):
            raise LifeboatError("Base backup %s is of PostgreSQL %d, but %s is %s; set pg_bin_dir to the PostgreSQL "
                                "%d programs." % (manifest["set_id"], self.major, self.tool("pg_ctl"),
                                                  out.strip() or "not runnable", self.major))
        if not os.path.isdir(self.socket_dir):
            raise LifeboatError("socket_dir %s does not exist." % self.socket_dir)
        if port_in_use(self.port, self.socket_dir):
            raise LifeboatError("Port %d is in use; set cluster_port to a free port for the restored cluster." % self.port)

    def check(self, job):
        self.reached = {}

    def consume(self, job, member):
        payloads = [f["name"] for f in member["files"] if f["name"].startswith("base.tar")]
        if len(payloads) != 1:
            raise LifeboatError("Base backup %s holds %d base.tar payloads, not one; it is not a set this module "
                                "wrote." % (member["set_id"], len(payloads)))
        if self.state == "absent":
            os.mkdir(self.data_dir, 0o700)
            self.made = True
        os.chmod(self.data_dir, 0o700)
        job.read(member, payloads[0],
                 lambda stream: _archive.extract_tar(stream, self.data_dir, what="base backup %s" % member["set_id"]))
        for stale in ("postmaster.pid", "postmaster.opts", "recovery.signal", "standby.signal", "backup_manifest"):
            path = os.path.join(self.data_dir, stale)
            if os.path.isfile(path) and stale != "backup_manifest":
                os.unlink(path)
        if not os.path.isfile(os.path.join(self.data_dir, "PG_VERSION")):
            raise LifeboatError("Base backup %s holds no PG_VERSION file; it is not a PostgreSQL data directory."
                                % member["set_id"])
        self.verified = self.verify(member["set_id"])

    def verify(self, set_id):
        """pg_verifybackup on the restored data directory, before recovery changes it; False without a manifest.

        PostgreSQL 13 and later put ``backup_manifest`` in the tar stream: every
        file's size and checksum, and the WAL range the backup needs (in
        ``pg_wal``, from ``-X fetch``), which pg_verifybackup parses with pg_waldump.
        """
        if not os.path.isfile(os.path.join(self.data_dir, "backup_manifest")):
            return False
        rc, out, err = self.runner.run([self.tool("pg_verifybackup"), "--quiet", "--exit-on-error", self.data_dir],
                                       cwd="/")
        if rc != 0:
            lines = [line.strip() for line in (err or out or "").splitlines() if line.strip()]
            detail = lines[0] if lines else "pg_verifybackup exited with status %d." % rc
            if detail.startswith("pg_verifybackup: "):
                detail = detail[len("pg_verifybackup: "):]
            detail = detail.replace("error: ", "", 1).rstrip(".")
            raise LifeboatError("The data directory restored from base backup %s does not match its backup_manifest "
                                "(pg_verifybackup: %s); recovery was not started." % (set_id, detail))
        return True

    def finalise(self, job):
        command = self.options["restore_command"](job)
        settings = [("port", self.port), ("unix_socket_directories", self.socket_dir), ("archive_mode", "off")]
        settings += recovery_settings(self.target, command)
        lines = ["# Written by lifeboat.backup postgresql_restore (method pitr).\n"]
        lines += [conf_line(name, value) for name, value in settings]
        with open(os.path.join(self.data_dir, "postgresql.auto.conf"), "a", encoding="utf-8") as handle:
            handle.write("\n" + "".join(lines))
        with open(os.path.join(self.data_dir, "recovery.signal"), "w", encoding="utf-8"):
            pass
        chown_tree(self.data_dir, self.uid, self.gid)
        self.start()
        self.wait(job)
        self.done = True
        self.remove_command()

    def release(self, job):
        self.remove_command()
        if self.done:
            return
        if self.started:
            self.run([self.tool("pg_ctl"), "-D", self.data_dir, "-m", "immediate", "-w", "-t", "60", "stop"])
        if self.made:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        elif self.state == "empty" and os.path.isdir(self.data_dir):
            empty_directory(self.data_dir)

    def remove_command(self):
        """Drop the WAL fetch command (its settings name the store) once recovery no longer needs it."""
        if self.command_dir is None or not os.path.isdir(self.command_dir) or os.path.islink(self.command_dir):
            return
        if self.command_dir_state == "absent":
            shutil.rmtree(self.command_dir, ignore_errors=True)
        else:
            empty_directory(self.command_dir)

    # -------------------------------------------------------------- recovery
    def start(self):
        argv = [self.tool("pg_ctl"), "-D", self.data_dir, "-l", self.log, "-W",
                "-o", "-c logging_collector=off -c lc_messages=C", "start"]
        self.started = True
        rc, out, err = self.run(argv)
        if rc != 0:
            raise LifeboatError("Starting recovery failed: %s" % ((err or out).strip().splitlines() or ["pg_ctl "
                                "failed without a message"])[-1])

    def postmaster_alive(self):
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid"), encoding="utf-8") as handle:
                pid = int(handle.readline().strip())
            os.kill(pid, 0)
            return True
        except (OSError, ValueError):
            return False

    def query(self):
        argv = [self.tool("psql"), "-X", "-A", "-t", "-F", "|", "-h", self.socket_dir, "-p", str(self.port),
                "-d", "postgres", "-c", READY_QUERY]
        rc, out, err = self.run(argv, env={"PGCONNECT_TIMEOUT": "5"})
        if rc != 0:
            return None
        return out.strip().split("|")

    def wait(self, job):
        deadline = time.monotonic() + self.options["timeout"]
        grace = 0
        while True:
            row = self.query()
            if row is not None and len(row) == 4 and row[0] == "f":
                self.reached = {"lsn": row[1] or None, "time": row[2] or None,
                                "timeline": int(row[3][:8], 16) if row[3] else None}
                return
            if not self.postmaster_alive():
                grace += 1
                if grace > 3:  # pg_ctl -W returns before the postmaster wrote its pid file
                    self.fail_from_log()
            if time.monotonic() > deadline:
                raise LifeboatError("Recovery did not finish within %d seconds (timeout); the server log is %s."
                                    % (self.options["timeout"], self.log))
            time.sleep(0.5)

    def fail_from_log(self):
        lines = last_lines(self.log)
        reason = log_failure(lines)
        self.started = False
        if NOT_REACHED in reason or any(NOT_REACHED in line for line in lines):
            last = [line.split(LAST_XACT, 1)[1].strip() for line in lines if LAST_XACT in line]
            raise WindowError("Recovery replayed all the WAL it could fetch without reaching %s%s; %s."
                              % (describe_target(self.target),
                                 " (the last transaction it replayed committed at %s)" % last[-1] if last else "",
                                 describe_window(self.window)))
        # The WAL fetch command's own sentence (its stderr reaches the server log) says why a file was refused.
        said = [line.split("lifeboat-wal: ", 1)[1].strip() for line in lines if "lifeboat-wal: " in line]
        raise LifeboatError("The restored server stopped during recovery: %s%s." % (
            reason.rstrip("."), "; the WAL fetch command said: %s" % said[-1].rstrip(".") if said else ""))


def describe_target(target):
    if "time" in target:
        return "target time %s" % format_ts(target["time"])
    if "lsn" in target:
        return "target LSN %s" % format_lsn(target["lsn"])
    if "name" in target:
        return "restore point %r" % target["name"]
    return "the end of the archive"


# ------------------------------------------------------------------ the module

def argument_spec():
    """The options postgresql_restore gains for method pitr (documented there)."""
    return dict(
        target_time=dict(type="str"),
        target_lsn=dict(type="str"),
        target_name=dict(type="str"),
        latest=dict(type="bool", default=False),
        data_dir=dict(type="path"),
        cluster_port=dict(type="int"),
        socket_dir=dict(type="path", default="/var/run/postgresql"),
        os_user=dict(type="str", default="postgres"),
        pg_bin_dir=dict(type="path"),
        wal_command_dir=dict(type="path"),
        wal_command_python=dict(type="path"),
        recovery_timeout=dict(type="int", default=3600),
    )


def command_dir(params):
    """Where the WAL fetch command of the restored cluster goes: wal_command_dir, else beside data_dir."""
    return params.get("wal_command_dir") or os.path.abspath(params["data_dir"]).rstrip("/") + ".lifeboat-wal"


def restore_command(engine, job, params):
    """Install this collection's WAL fetch command for the restored cluster; return the restore_command text.

    The command reads the same store, host and source as the base backup; it
    belongs to the cluster's OS user (its settings file is 0600) and is
    removed once recovery has promoted, or when the restore fails.
    """
    directory = command_dir(params)
    engine.command_dir_state = check_data_dir(directory, "wal_command_dir")
    engine.command_dir = directory
    store = dict(params["store"])
    store["kind"] = store.get("kind") or "dir"
    trust = getattr(job, "trust", None)
    prefix = _wal.install(job.module, directory, store, job.host, job.source,
                          identity=params.get("age_identity"), identity_file=params.get("age_identity_file"),
                          python=params.get("wal_command_python"), uid=engine.uid, gid=engine.gid,
                          # trusted_signers: every WAL file fetched must carry a signature by the host's key.
                          trusted_signers=trust.lines() if trust is not None else None)
    return _wal.restore_command(prefix)


def run_module(module):
    """postgresql_restore with method pitr: exits the module (one sentence on failure, never a traceback)."""
    params = module.params
    result = dict(changed=False, set_id=None, cmd=[], data_dir=params["data_dir"], cluster_port=params["cluster_port"])
    job = None
    engine = None
    failure = None
    try:
        target = parse_target(params)
        if not params["data_dir"] or not params["cluster_port"]:
            raise LifeboatError("method pitr needs data_dir (an empty or new directory) and cluster_port (a free port) for "
                                "the restored cluster.")
        if not 1 <= params["cluster_port"] <= 65535:
            raise LifeboatError("cluster_port must be between 1 and 65535, not %d." % params["cluster_port"])
        if params["recovery_timeout"] < 1:
            raise LifeboatError("recovery_timeout must be 1 second or more.")
        store = _store_kinds.open_store(params["store"])
        host = _jobs.default_host(params)
        source = params["source"]
        trust = _codec.trust_from_params(params, runner_for(module))
        manifests = _catalog.scan(store, host, source)[0]
        names = store.list_objects(host, source, WAL_PREFIX)
        base, win = pick_base(manifests, names, target, utcnow(), params["set_id"])
        result["window"] = win
        for one in win["ranges"]:
            if one["set_id"] == base["set_id"] and one["missing_wal"] and "latest" in target:
                module.warn("WAL segment %s is missing from the archive: recovery stops at LSN %s, before it, and "
                            "later segments are not replayed." % (one["missing_wal"], one["to_lsn"]))
        job = _jobs.RestoreJob(module, store, host, source, set_id=base["set_id"], identity=params["age_identity"],
                               identity_file=params["age_identity_file"], work_dir=params["work_dir"] or module.tmpdir,
                               trust=trust)
        engine = PitrRestore(module, runner_for(module), dict(
            data_dir=params["data_dir"], port=params["cluster_port"], socket_dir=params["socket_dir"],
            os_user=params["os_user"], bin_dir=params["pg_bin_dir"], timeout=params["recovery_timeout"],
            target=target, window=win, command_dir=command_dir(params),
            restore_command=lambda one_job: restore_command(engine, one_job, params)))
        result.update(job.run(engine, check_mode=module.check_mode))
        result.update(target=describe_target(target), log=engine.log)
        if not module.check_mode:
            result["reached"] = engine.reached
            result["verified"] = bool(engine.verified)
    except LifeboatError as exc:
        failure = str(exc)
    except Exception as exc:  # one sentence, never a traceback
        failure = "The point-in-time restore failed unexpectedly (%s: %s)." % (type(exc).__name__,
                                                                               " ".join(str(exc).split()))
    if failure is not None:
        if job is not None:
            result.update(job.summary(), cmd=job.cmd)
        result["msg"] = failure
        module.fail_json(**result)
    module.exit_json(**result)
