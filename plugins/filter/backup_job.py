# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the 3-2-1 backup role (lifeboat.backup.backup).

``backup_plan`` checks the sources a host declares against the options of each engine's backup module
(read from the modules' own documentation, so they never drift apart) and against the policy, and
returns the per-source module parameters. Every mistake is reported at once, one sentence each, before
anything runs. ``backup_track`` folds the registered results of one step of the job into the per-source
state, and ``backup_outcomes`` turns that state into the outcome records and summary lines.
"""

from __future__ import annotations

import difflib

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.six import string_types

try:
    from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError, parse_duration
    from ansible_collections.lifeboat.backup.plugins.module_utils import _retention
    from ansible_collections.lifeboat.backup.plugins.module_utils._snapshot import check_subpath
except ImportError:  # pragma: no cover - only outside an installed collection
    LifeboatError = ValueError
    parse_duration = None
    _retention = None
    check_subpath = None

COLLECTION = "lifeboat.backup"

# engine -> (backup module, doc fragment holding its connection options or None)
ENGINES = {
    "postgresql": ("postgresql_backup", "_postgres"),
    "mysql": ("mysql_backup", "_mysql"),
    "files": ("files_backup", None),
    "mongodb": ("mongodb_backup", "_mongodb"),
}

# A file source's prepare step: kind -> the snapshot module that takes the snapshot and reads the files in it.
PREPARE_KINDS = {
    "btrfs": "btrfs_snapshot",
    "lvm": "lvm_snapshot",
}
# Keys of a source that belong to the role, not to the engine's module.
ROLE_KEYS = ("name", "engine", "connection", "rpo", "prepare")
# Module options the role sets itself; a source may not set them.
ROLE_OWNED = ("store", "host", "source")
# Policy keys handed to every backup module that has the option, unless the source sets it.
POLICY_PARAMS = ("type", "full_every", "between", "max_age", "compression", "compression_level",
                 "encrypt_recipients", "sign_key", "sign_key_file")
STORE_ROLES = ("primary", "secondary", "offsite")

_OPTIONS = {}


def _doc_options(kind, name):
    """The merged documented options of a module (fragments included) or of a doc fragment."""
    key = (kind, name)
    if key in _OPTIONS:
        return _OPTIONS[key]
    import yaml
    from ansible.plugins.loader import fragment_loader, module_loader
    from ansible.utils.plugin_docs import get_docstring

    if kind == "module":
        found = module_loader.find_plugin_with_context("%s.%s" % (COLLECTION, name))
        if not found.resolved:
            raise AnsibleFilterError("The module %s.%s cannot be found; is the collection installed?" % (COLLECTION, name))
        doc = get_docstring(found.plugin_resolved_path, fragment_loader, collection_name=COLLECTION)[0]
        options = doc.get("options") or {}
    else:
        fragment = fragment_loader.get("%s.%s" % (COLLECTION, name))
        if fragment is None:
            raise AnsibleFilterError("The doc fragment %s.%s cannot be found." % (COLLECTION, name))
        options = (yaml.safe_load(fragment.DOCUMENTATION) or {}).get("options") or {}
    _OPTIONS[key] = options
    return options


def _spec(options):
    """An argument spec (types, choices, aliases; nothing required, no defaults) from documented options."""
    spec = {}
    for name, doc in options.items():
        entry = {}
        for key in ("type", "choices", "elements", "aliases", "no_log", "required"):
            if doc.get(key) is not None:
                entry[key] = doc[key]
        spec[name] = entry
    return spec


def _suggest(key, candidates):
    close = difflib.get_close_matches(str(key), sorted(candidates), n=1, cutoff=0.75)
    return " (did you mean %s?)" % close[0] if close else ""


def _duration(value, what, errors):
    if value in (None, ""):
        return None
    try:
        return parse_duration(value, what)
    except LifeboatError as exc:
        errors.append(str(exc))
        return None


def _check_store(role, store, errors):
    if store in (None, {}):
        return
    if not isinstance(store, dict):
        errors.append("backup_stores.%s must be a dict of store options (kind, path, ...), not %r." % (role, type(store).__name__))
        return
    options = _doc_options("fragment", "_store")["store"]["suboptions"]
    for key in store:
        if key not in options:
            errors.append("backup_stores.%s: unknown key %s%s." % (role, key, _suggest(key, options)))


def _check_policy(policy, stores, errors):
    for option in ("full_every", "max_age", "rpo", "rto"):
        _duration(policy.get(option), "backup_policy.%s" % option, errors)
    if policy.get("type") == "auto" and not policy.get("full_every"):
        errors.append("backup_policy.type auto needs backup_policy.full_every (for example 7d).")
    retention = policy.get("retention") or {}
    for role, rules in retention.items():
        if role not in STORE_ROLES:
            errors.append("backup_policy.retention: unknown store %s; the stores are %s%s."
                          % (role, ", ".join(STORE_ROLES), _suggest(role, STORE_ROLES)))
            continue
        if not stores.get(role):
            errors.append("backup_policy.retention.%s is set but backup_stores has no %s store." % (role, role))
            continue
        if rules in (None, {}):
            continue
        try:
            _retention.check_policy(rules, "backup_policy.retention.%s" % role)
        except LifeboatError as exc:
            errors.append(str(exc))


def _snapshot_keys(kind):
    """The options of a snapshot module that describe the snapshot (the others are the file engine's)."""
    return (set(_doc_options("module", PREPARE_KINDS[kind])) - set(_doc_options("module", ENGINES["files"][0]))
            - set(ROLE_OWNED))


def _check_prepare(source, label, errors):
    """(snapshot module, snapshot keys, its params) of a file source's prepare step, or None after an error."""
    prepare = source["prepare"]
    if not isinstance(prepare, dict):
        errors.append("The prepare of %s must be a dict with kind (%s) and the snapshot's options."
                      % (label, " or ".join(sorted(PREPARE_KINDS))))
        return None
    kind = prepare.get("kind")
    if kind not in PREPARE_KINDS:
        errors.append("The prepare kind of %s is %r; it must be one of %s%s."
                      % (label, kind, ", ".join(sorted(PREPARE_KINDS)), _suggest(kind or "", PREPARE_KINDS)))
        return None
    module = PREPARE_KINDS[kind]
    keys = _snapshot_keys(kind)
    options = _doc_options("module", module)
    params, ok = {}, True
    for key, value in prepare.items():
        if key == "kind":
            continue
        if key not in keys:
            errors.append("Unknown key %s in the prepare of %s (kind %s)%s; its keys are kind, %s."
                          % (key, label, kind, _suggest(key, keys), ", ".join(sorted(keys))))
            ok = False
        else:
            params[key] = value
    for key in sorted(keys):
        if options[key].get("required") and key not in params:
            errors.append("The prepare of %s (kind %s) needs %s." % (label, kind, key))
            ok = False
    path = source.get("path")
    if ok and isinstance(path, string_types) and path.startswith("/") and kind == "btrfs" \
            and isinstance(params.get("subvolume"), string_types):
        subvolume = params["subvolume"].rstrip("/")
        if path.rstrip("/") != subvolume and not path.startswith(subvolume + "/"):
            errors.append("The path %s of %s is not inside the subvolume %s it snapshots; give a directory of "
                          "the subvolume, relative to it or absolute." % (path, label, params["subvolume"]))
            ok = False
    elif ok and path is not None and not (kind == "btrfs" and isinstance(path, string_types) and path.startswith("/")):
        try:
            check_subpath(path)
        except LifeboatError as exc:
            errors.append("The path of %s: %s" % (label, exc))
            ok = False
    return (module, keys, params) if ok else None


def backup_plan(sources, policy=None, stores=None, only=None):
    """Check a host's sources; return ``plan`` (per source: name, engine, module, method, params, rpo) and
    ``errors``, every mistake found, each a sentence naming the source and the key, so that the role can
    stop before anything runs.
    """
    policy = dict(policy or {})
    stores = dict(stores or {})
    errors = []
    if not isinstance(sources, list):
        raise AnsibleFilterError("backup_sources must be a list of sources, not %s." % type(sources).__name__)
    if not stores.get("primary"):
        errors.append("backup_stores.primary is required: the store the first copy is written to.")
    for role in stores:
        if role not in STORE_ROLES:
            errors.append("backup_stores: unknown store %s; the stores are %s%s."
                          % (role, ", ".join(STORE_ROLES), _suggest(role, STORE_ROLES)))
        else:
            _check_store(role, stores[role], errors)
    _check_policy(policy, stores, errors)

    plan, seen = [], {}
    for index, source in enumerate(sources):
        where = "backup_sources[%d]" % index
        if not isinstance(source, dict):
            errors.append("%s must be a dict with name and engine, not %s." % (where, type(source).__name__))
            continue
        name = source.get("name")
        if not isinstance(name, string_types) or not name.strip():
            errors.append("%s has no name; every source needs a unique name." % where)
            continue
        label = "source %s" % name
        if name in seen:
            errors.append("Two sources are named %s (backup_sources[%d] and [%d]); each source needs its own name, "
                          "or both would write into one source directory." % (name, seen[name], index))
            continue
        seen[name] = index
        if "/" in name or name.startswith("."):
            errors.append("The name of %s must not contain / or start with a dot." % label)
        engine = source.get("engine")
        if engine not in ENGINES:
            errors.append("The engine of %s is %r; it must be one of %s%s."
                          % (label, engine, ", ".join(sorted(ENGINES)), _suggest(engine or "", ENGINES)))
            continue
        module, fragment = ENGINES[engine]
        options = _doc_options("module", module)
        file_keys, snapshot_keys, prepared = set(), set(), None
        if source.get("prepare") is not None:
            if engine != "files":
                errors.append("%s has a prepare step, but only engine files takes one (a snapshot whose files are "
                              "backed up)." % label.capitalize())
                continue
            prepared = _check_prepare(source, label, errors)
            if prepared is None:
                continue
            file_keys = set(options)
            module, snapshot_keys = prepared[0], prepared[1]
            options = _doc_options("module", module)
        connection_keys = set(_doc_options("fragment", fragment)) if fragment else set()
        engine_keys = set(options) - connection_keys - set(ROLE_OWNED) - snapshot_keys
        params = {}
        for key, value in source.items():
            if key in ROLE_KEYS:
                continue
            if prepared and key == "method" and value == "tar":
                continue  # the files in a snapshot are read with tar
            if key in snapshot_keys:
                errors.append("The key %s of %s describes the snapshot; put it under prepare:." % (key, label))
            elif prepared and key in file_keys and key not in engine_keys:
                errors.append("The key %s of %s does not apply with a prepare step: the files in the snapshot are "
                              "read with tar (method tar)." % (key, label))
            elif key in connection_keys:
                errors.append("The key %s of %s is a connection option; put it under connection:." % (key, label))
            elif key in ROLE_OWNED:
                errors.append("The key %s of %s is set by the role (from backup_stores and the source name); "
                              "remove it." % (key, label))
            elif key not in engine_keys:
                errors.append("Unknown key %s in %s (engine %s)%s."
                              % (key, label, engine, _suggest(key, engine_keys | set(ROLE_KEYS))))
            else:
                params[key] = value
        connection = source.get("connection") or {}
        if not isinstance(connection, dict):
            errors.append("The connection of %s must be a dict of connection options." % label)
            connection = {}
        elif connection and not connection_keys:
            errors.append("%s has a connection, but engine %s takes no connection options." % (label.capitalize(), engine))
        for key, value in connection.items():
            if key not in connection_keys:
                errors.append("Unknown connection key %s in %s (engine %s)%s."
                              % (key, label, engine, _suggest(key, connection_keys)))
            else:
                params[key] = value
        for key in POLICY_PARAMS:
            if key not in params and key in options and policy.get(key) not in (None, "", []):
                if key == "compression_level" and not policy.get(key):
                    continue
                params[key] = policy[key]
        if "type" in options and params.get("type") != "auto":
            params.pop("full_every", None)
            params.pop("between", None)
        if "labels" in options:
            params["labels"] = dict(policy.get("labels") or {}, **(params.get("labels") or {}))
        if prepared:
            params.update(prepared[2])
            params.setdefault("path", ".")  # the whole volume; without a path btrfs_snapshot would send it
        spec = dict((k, v) for k, v in _spec(options).items() if k not in ROLE_OWNED)
        checked = ArgumentSpecValidator(spec).validate(params)
        for message in checked.error_messages:
            errors.append("%s (engine %s): %s." % (label.capitalize(), engine, str(message).rstrip(".")))
        rpo = source.get("rpo", policy.get("rpo"))
        if "rpo" in source:
            _duration(rpo, "The rpo of %s" % label, errors)
        plan.append(dict(name=name, engine=engine, module="%s.%s" % (COLLECTION, module),
                         method="tar" if prepared else params.get("method"), params=params, rpo=rpo or "",
                         prepare=source["prepare"]["kind"] if prepared else None))

    if only:
        wanted = [n.strip() for n in (only.split(",") if isinstance(only, string_types) else only) if n and n.strip()]
        unknown = [n for n in wanted if n not in seen]
        if unknown:
            errors.append("backup_only_sources names %s, which this host does not declare." % ", ".join(unknown))
        plan = [entry for entry in plan if entry["name"] in wanted]
    return dict(plan=plan, errors=errors)


def _msg(result):
    msg = result.get("msg") or "failed without a message"
    return " ".join(str(msg).split()).rstrip(".")


def backup_track(state, results, step):
    """Fold the registered loop results of one step (items are source names) into the per-source state."""
    state = dict((name, dict(entry)) for name, entry in (state or {}).items())
    for result in results or []:
        name = result.get("item")
        if name not in state or result.get("skipped") and "set_id" not in result:
            continue
        entry = state[name]
        if result.get("failed") and step == "rpo":
            # No readable set to measure: the RPO is not met; a source's own failure stays its error.
            entry.update(rpo_status="unknown", rpo_breach=True, rpo_error=_msg(result))
            continue
        if result.get("failed") and entry["status"] == "failed":
            continue
        if result.get("failed"):
            entry["status"] = "failed"
            entry["error"] = "%s: %s" % (step.replace(":", " "), _msg(result))
            if ":" in step:
                role = step.split(":", 1)[1]
                entry["copies"].setdefault(role, dict(set_id=entry.get("set_id"), verified=False))["error"] = entry["error"]
            continue
        if step == "backup":
            manifest = result.get("manifest") or {}
            entry.update(set_id=result.get("set_id"), bytes=result.get("bytes", 0),
                         duration_s=result.get("duration_s", 0), written=bool(manifest),
                         changed=bool(result.get("changed")), skipped_reason=result.get("skipped_reason"),
                         type=manifest.get("type") or result.get("type"),
                         started=manifest.get("started_at"), finished=manifest.get("ended_at"),
                         method=manifest.get("method") or entry.get("method"))
            entry["copies"]["primary"] = dict(set_id=result.get("set_id"), verified=False, error=None)
        elif step.startswith("verify:"):
            role = step.split(":", 1)[1]
            entry["copies"].setdefault(role, dict(set_id=entry.get("set_id"), error=None))["verified"] = True
        elif step.startswith("copy:"):
            role = step.split(":", 1)[1]
            entry["copies"][role] = dict(set_id=entry.get("set_id"), verified=False, error=None,
                                         copied=len(result.get("copied") or []))
        elif step == "rpo":
            values = list((result.get("rpo_status") or {}).values())
            status = values[0] if values else {}
            entry["rpo_status"] = status.get("status")
            entry["rpo_breach"] = status.get("status") in ("violated", "missing")
            entry["age_s"] = status.get("age_s")
    return state


def backup_start(plan):
    """The initial per-source state of a run."""
    return dict((entry["name"], dict(name=entry["name"], engine=entry["engine"], method=entry["method"],
                                     status="ok", error=None, set_id=None, type=None, bytes=0, duration_s=0,
                                     started=None, finished=None, written=False, changed=False,
                                     skipped_reason=None, copies={}, rpo=entry["rpo"], rpo_breach=False,
                                     rpo_status=None, age_s=None))
                for entry in plan)


def backup_ready(state, need_set=True):
    """Names of the sources still ok (and, with need_set, whose set exists in the primary store)."""
    return [name for name, entry in sorted(state.items())
            if entry["status"] == "ok" and (entry["written"] or not need_set)]


def _size(value):
    value = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return "%d B" % value


def backup_outcomes(state, stores, check_mode=False):
    """Outcome records (the metrics contract) and one summary line per source, in source order."""
    outcomes, lines = [], []
    roles = [role for role in STORE_ROLES if (stores or {}).get(role)]
    for name, entry in state.items():
        failed = entry["status"] == "failed"
        status = "failed" if failed else ("skipped" if entry["skipped_reason"] else "ok")
        copies = {}
        for role in roles:
            copy = entry["copies"].get(role) or {}
            copies[role] = dict(set_id=copy.get("set_id"), verified=bool(copy.get("verified")), error=copy.get("error"))
        outcomes.append(dict(name=name, engine=entry["engine"], method=entry["method"], status=status,
                             error=entry["error"], set_id=entry["set_id"], type=entry["type"],
                             bytes=entry["bytes"], duration_s=entry["duration_s"], started=entry["started"],
                             finished=entry["finished"], copies=copies, rpo=entry["rpo"],
                             rpo_breach=bool(entry["rpo_breach"])))
        verified = [role for role in roles if copies[role]["verified"]]
        if check_mode and not failed:
            line = "%s: check mode, would write %s" % (name, entry["set_id"])
        elif failed:
            line = "%s: FAILED %s" % (name, entry["error"])
        else:
            line = "%s: %s %s %s, %s in %ss%s" % (
                name, "kept" if entry["skipped_reason"] else "wrote", entry["type"] or "set", entry["set_id"],
                _size(entry["bytes"]), entry["duration_s"], " (younger than max_age)" if entry["skipped_reason"] else "")
        if not check_mode:
            line += "; copies verified %d/%d (%s)" % (len(verified), len(roles), ", ".join(verified) or "none")
            if entry["rpo"]:
                if entry["rpo_breach"]:
                    line += "; RPO %s BREACHED (%s)" % (
                        entry["rpo"], "no set" if entry["age_s"] is None else "newest set %ds old" % entry["age_s"])
                elif entry["rpo_status"]:
                    line += "; RPO %s met" % entry["rpo"]
        lines.append(line)
    return dict(outcomes=outcomes, lines=lines,
                failed=[o["name"] for o in outcomes if o["status"] == "failed"],
                rpo_breached=[o["name"] for o in outcomes if o["rpo_breach"]])


class FilterModule(object):
    def filters(self):
        return {
            "backup_plan": backup_plan,
            "backup_start": backup_start,
            "backup_track": backup_track,
            "backup_ready": backup_ready,
            "backup_outcomes": backup_outcomes,
        }
