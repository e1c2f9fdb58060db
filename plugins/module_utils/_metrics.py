# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""Prometheus textfile-collector metrics of a backup run (lifeboat.backup.backup_metrics).

``collect`` turns the run's per-source outcomes and what each store holds
into samples; ``render`` writes them in the Prometheus text exposition
format (version 0.0.4); ``write_atomically`` puts the file in place by
temp file and rename, so node_exporter never reads half a file. The
metric names and labels are documented in docs/metrics.md.

Stores are untrusted input: whatever one holds, reading it gives at worst
one sentence in ``errors`` and a ``lifeboat_backup_store_read_error``
sample, never an exception out of ``collect``.
"""

from __future__ import annotations

import math
import os
import re
import tempfile

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, parse_duration, parse_ts
from ansible_collections.lifeboat.backup.plugins.module_utils import _catalog
from ansible_collections.lifeboat.backup.plugins.module_utils._manifest import set_id_time
from ansible_collections.lifeboat.backup.plugins.module_utils._stores import escape

STORE_ROLES = ("primary", "secondary", "offsite")
STATUSES = ("ok", "failed", "skipped")
# Without store_usage, at most this many manifests are read per source and store to find the
# newest valid one (newest name first); a store full of broken sets cannot make the run read them all.
NEWEST_READS = 10
# An error sentence put into a label value is cut to this many characters.
ERROR_LABEL_CHARS = 200
FILE_MODE = 0o644

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")

# name -> (type, help). Every family is a gauge: each value is the state after the last run.
FAMILIES = (
    ("lifeboat_backup_info", "Always 1; the engine and method of a source as labels."),
    ("lifeboat_backup_last_attempt_timestamp_seconds",
     "When the last backup attempt of a source ended (Unix time)."),
    ("lifeboat_backup_last_attempt_status",
     "1 for the status of the last backup attempt of a source (ok, failed or skipped), 0 for the others."),
    ("lifeboat_backup_last_attempt_failed", "1 when the last backup attempt of a source failed, else 0."),
    ("lifeboat_backup_last_attempt_duration_seconds", "How long the last backup attempt of a source took."),
    ("lifeboat_backup_last_success_timestamp_seconds",
     "When the newest complete set of a source ended (Unix time); 0 when there is none."),
    ("lifeboat_backup_last_set_bytes", "Bytes stored for the newest set of a source."),
    ("lifeboat_backup_rpo_seconds", "The recovery point objective of a source."),
    ("lifeboat_backup_rpo_breach", "1 when the newest set of a source is older than its RPO, else 0."),
    ("lifeboat_backup_copy_verified",
     "1 when the copy of the last set in a store was verified by this run, else 0."),
    ("lifeboat_backup_newest_copy_timestamp_seconds",
     "When the newest set of a source in a store ended (Unix time); 0 when the store holds none."),
    ("lifeboat_backup_newest_copy_age_seconds",
     "Age of the newest set of a source in a store when the metrics were written."),
    ("lifeboat_backup_store_sets", "How many complete sets of a source a store holds."),
    ("lifeboat_backup_store_bytes", "Bytes held for a source in a store (the sum of its sets)."),
    ("lifeboat_backup_store_invalid_sets",
     "Entries of a source in a store that look like sets but cannot be used (broken or forged)."),
    ("lifeboat_backup_store_future_sets", "Sets of a source in a store dated in the future (a wrong clock or a forgery)."),
    ("lifeboat_backup_store_read_error",
     "1 when a store could not be read for a source; the error label says why."),
    ("lifeboat_backup_store_up", "1 when a store could be reached and exists, else 0."),
    ("lifeboat_backup_store_free_bytes", "Bytes free to unprivileged users on the filesystem of a dir store."),
    ("lifeboat_backup_store_size_bytes", "Size of the filesystem of a dir store."),
    ("lifeboat_backup_metrics_timestamp_seconds", "When this file was written (Unix time)."),
)
FAMILY_HELP = dict(FAMILIES)


class MetricsError(LifeboatError):
    """The outcomes given cannot be turned into metrics, or the file cannot be written."""


# ------------------------------------------------------------------ exposition format

def _plain(text):
    """Text that encodes as UTF-8 whatever it holds (lone surrogates from odd file names escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_label_value(value):
    """A label value as the text format wants it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(value)


class Samples(object):
    """Samples grouped by family, each series once."""

    def __init__(self):
        self.series = {}

    def add(self, name, labels, value):
        if name not in FAMILY_HELP:
            raise MetricsError("Metric %s is not one of the documented families." % name)
        labels = tuple(sorted((str(k), _plain("" if v is None else str(v))) for k, v in labels.items()))
        for key, dummy in labels:
            if not LABEL_NAME_RE.match(key):
                raise MetricsError("Label name %s is not valid in Prometheus." % escape(key, 60))
        self.series.setdefault(name, {})[labels] = value

    def listing(self):
        """Every sample as {name, labels, value}, in the order of the file."""
        found = []
        for name, dummy in FAMILIES:
            for labels, value in sorted(self.series.get(name, {}).items()):
                found.append({"name": name, "labels": dict(labels), "value": value})
        return found

    def render(self):
        lines = []
        for name, text in FAMILIES:
            series = self.series.get(name)
            if not series:
                continue
            lines.append("# HELP %s %s" % (name, escape_help(text)))
            lines.append("# TYPE %s gauge" % name)
            for labels, value in sorted(series.items()):
                label_text = ",".join('%s="%s"' % (k, escape_label_value(v)) for k, v in labels)
                lines.append("%s%s %s" % (name, "{%s}" % label_text if label_text else "", format_value(value)))
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ inputs

def unix_time(when):
    return round(when.timestamp(), 3)


def _time_field(outcome, field, where):
    value = outcome.get(field)
    if value in (None, ""):
        return None
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise MetricsError("%s.%s must be an ISO 8601 time such as 2026-11-26T03:15:00Z: %s." % (where, field, exc))


def check_outcomes(outcomes):
    """Validate the per-source outcomes; a MetricsError naming the first problem."""
    names = set()
    for index, outcome in enumerate(outcomes):
        where = "sources[%d]" % index
        name = outcome.get("name")
        if not name:
            raise MetricsError("%s has no name; every source outcome names its source." % where)
        if name in names:
            raise MetricsError("Source %s appears twice in sources; each source is reported once." % escape(name, 100))
        names.add(name)
        if outcome.get("status") not in STATUSES:
            raise MetricsError("%s.status must be one of %s, not %s."
                               % (where, ", ".join(STATUSES), escape(str(outcome.get("status")), 40)))
        for field in ("started", "finished"):
            _time_field(outcome, field, "Source %s" % escape(name, 100))
        try:
            parse_duration(outcome.get("rpo"), "Source %s rpo" % escape(name, 100))
        except LifeboatError as exc:
            raise MetricsError(str(exc))
        for role, copy in (outcome.get("copies") or {}).items():
            if role not in STORE_ROLES:
                raise MetricsError("Source %s has a copy in store %s; stores are %s."
                                   % (escape(name, 100), escape(str(role), 40), ", ".join(STORE_ROLES)))
            if copy is not None and not isinstance(copy, dict):
                raise MetricsError("Source %s: the copy in store %s must be a dict such as {set_id: ..., verified: "
                                   "true, error: null}." % (escape(name, 100), role))


# ------------------------------------------------------------------ stores

def _newest_by_names(store, host, source, now):
    """(newest current manifest or None, invalid count, future count) reading names and few manifests."""
    listing = store.listing(host, source)
    invalid = len(listing.strays)
    future = 0
    reads = 0
    for set_id in reversed(listing.sets):
        try:
            if (set_id_time(set_id) - now).total_seconds() > _catalog.FUTURE_TOLERANCE_S:
                future += 1
                continue
        except (ValueError, LifeboatError):
            invalid += 1
            continue
        if reads >= NEWEST_READS:
            break
        reads += 1
        try:
            manifest = store.read_manifest(host, source, set_id)
        except LifeboatError:
            invalid += 1
            continue
        if _catalog.is_future(manifest, now):
            future += 1
            continue
        return manifest, len(listing.sets), invalid, future
    return None, len(listing.sets), invalid, future


def read_store(store, host, source, now, usage=True):
    """What one store holds of one source: newest (manifest or None), sets, bytes, invalid, future.

    With ``usage`` every manifest of the source is read (to add up the bytes); without, only names
    and the newest manifest, and ``bytes`` is None.
    """
    if usage:
        sets, invalid, dummy = _catalog.scan(store, host, source)
        current, future = _catalog.split_future(sets, now)
        return {"newest": current[-1] if current else None, "sets": len(sets),
                "bytes": sum(m["bytes"] for m in sets), "invalid": len(invalid), "future": len(future)}
    newest, count, invalid, future = _newest_by_names(store, host, source, now)
    return {"newest": newest, "sets": count, "bytes": None, "invalid": invalid, "future": future}


def filesystem_usage(store):
    """(free, size) bytes of a dir store's filesystem, or None for other kinds."""
    root = getattr(store, "root", None)
    if store.kind != "dir" or not root:
        return None
    try:
        st = os.statvfs(root)
    except OSError as exc:
        raise LifeboatError("Cannot read the filesystem of store %s: %s." % (escape(root), exc.strerror or exc))
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _one_sentence(exc):
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= ERROR_LABEL_CHARS else text[:ERROR_LABEL_CHARS - 3] + "..."


# ------------------------------------------------------------------ collect

def collect(host, outcomes, stores, now, usage=True):
    """Samples and read errors for ``outcomes`` (checked) and ``stores`` (role -> Store or None).

    Returns ``(samples, errors)``; ``errors`` lists {store, source, error} for every store that
    could not be read, each also a ``lifeboat_backup_store_read_error`` sample.
    """
    check_outcomes(outcomes)
    samples = Samples()
    errors = []
    samples.add("lifeboat_backup_metrics_timestamp_seconds", {"host": host}, unix_time(now))
    opened = []
    for role in STORE_ROLES:
        store = stores.get(role)
        if store is None:
            continue
        labels = {"host": host, "store": role, "kind": store.kind}
        try:
            up = bool(store.exists())
            if not up:
                errors.append({"store": role, "source": None,
                               "error": "The store %s does not exist yet." % store.location()})
        except (LifeboatError, OSError, ValueError) as exc:
            up = False
            errors.append({"store": role, "source": None, "error": _one_sentence(exc)})
        samples.add("lifeboat_backup_store_up", labels, 1 if up else 0)
        if up:
            try:
                fs = filesystem_usage(store)
            except LifeboatError as exc:
                fs = None
                errors.append({"store": role, "source": None, "error": _one_sentence(exc)})
            if fs is not None:
                samples.add("lifeboat_backup_store_free_bytes", labels, fs[0])
                samples.add("lifeboat_backup_store_size_bytes", labels, fs[1])
        opened.append((role, store, up))

    for outcome in outcomes:
        _source_samples(samples, errors, host, outcome, opened, now, usage)
    for error in errors:
        if error["source"] is not None:
            samples.add("lifeboat_backup_store_read_error",
                        {"host": host, "source": error["source"], "store": error["store"], "error": error["error"]}, 1)
    return samples, errors


def _source_samples(samples, errors, host, outcome, opened, now, usage):
    name = outcome["name"]
    base = {"host": host, "source": name}
    samples.add("lifeboat_backup_info", dict(base, engine=outcome.get("engine") or "",
                                             method=outcome.get("method") or ""), 1)
    status = outcome["status"]
    where = "Source %s" % escape(name, 100)
    finished = _time_field(outcome, "finished", where)
    started = _time_field(outcome, "started", where)
    attempt = finished or started
    if attempt is not None:
        samples.add("lifeboat_backup_last_attempt_timestamp_seconds", base, unix_time(attempt))
    for one in STATUSES:
        samples.add("lifeboat_backup_last_attempt_status", dict(base, status=one), 1 if one == status else 0)
    samples.add("lifeboat_backup_last_attempt_failed", base, 1 if status == "failed" else 0)
    if outcome.get("duration_s") is not None:
        samples.add("lifeboat_backup_last_attempt_duration_seconds", base, float(outcome["duration_s"]))

    newest = {}
    for role, store, up in opened:
        if not up:
            continue
        labels = dict(base, store=role, kind=store.kind)
        try:
            held = read_store(store, host, name, now, usage)
        except (LifeboatError, OSError, ValueError) as exc:
            errors.append({"store": role, "source": name, "error": _one_sentence(exc)})
            continue
        latest = held["newest"]
        newest[role] = latest
        if latest is None:
            samples.add("lifeboat_backup_newest_copy_timestamp_seconds", labels, 0)
        else:
            ended = parse_ts(latest["ended_at"])
            samples.add("lifeboat_backup_newest_copy_timestamp_seconds", labels, unix_time(ended))
            samples.add("lifeboat_backup_newest_copy_age_seconds", labels, round(_catalog.age_seconds(latest, now), 3))
        samples.add("lifeboat_backup_store_sets", labels, held["sets"])
        if held["bytes"] is not None:
            samples.add("lifeboat_backup_store_bytes", labels, held["bytes"])
        samples.add("lifeboat_backup_store_invalid_sets", labels, held["invalid"])
        samples.add("lifeboat_backup_store_future_sets", labels, held["future"])

    # The newest complete set: this run's when it succeeded, else the newest any store holds.
    candidates = [m for m in newest.values() if m is not None]
    last_ok = max((parse_ts(m["ended_at"]) for m in candidates), default=None)
    if status == "ok" and finished is not None and (last_ok is None or finished > last_ok):
        last_ok = finished
    samples.add("lifeboat_backup_last_success_timestamp_seconds", base, unix_time(last_ok) if last_ok else 0)

    if status == "ok" and outcome.get("bytes") is not None:
        samples.add("lifeboat_backup_last_set_bytes", base, int(outcome["bytes"]))
    elif candidates:
        samples.add("lifeboat_backup_last_set_bytes", base,
                    max(candidates, key=lambda m: (m["ended_at"], m["set_id"]))["bytes"])

    rpo_s = parse_duration(outcome.get("rpo"), "rpo")
    if rpo_s is not None:
        samples.add("lifeboat_backup_rpo_seconds", base, rpo_s)
    breach = outcome.get("rpo_breach")
    if breach is None and rpo_s is not None:
        breach = last_ok is None or (now - last_ok).total_seconds() > rpo_s
    if breach is not None:
        samples.add("lifeboat_backup_rpo_breach", base, 1 if breach else 0)

    for role, copy in sorted((outcome.get("copies") or {}).items()):
        copy = copy or {}
        samples.add("lifeboat_backup_copy_verified", dict(base, store=role), 1 if copy.get("verified") else 0)


# ------------------------------------------------------------------ the file

def write_atomically(path, text, check_mode=False):
    """Write ``text`` to ``path`` (0644) by temp file and rename; True when the content changed.

    The temp file starts with a dot and ends in ``.tmp``, so the textfile collector (which reads
    ``*.prom``) never sees it. Missing parent directories are created (0755).
    """
    data = text.encode("utf-8")
    try:
        with open(path, "rb") as handle:
            changed = handle.read(len(data) + 1) != data
    except FileNotFoundError:
        changed = True
    except IsADirectoryError:
        raise MetricsError("The metrics path %s is a directory; give a file name such as lifeboat.prom." % escape(path))
    except OSError as exc:
        raise MetricsError("Cannot read the metrics file %s: %s." % (escape(path), exc.strerror or exc))
    if check_mode or not changed:
        return changed
    directory = os.path.dirname(path) or "."
    tmp = None
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise MetricsError("Cannot write the metrics file %s: %s." % (escape(path), exc.strerror or exc))
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return True
