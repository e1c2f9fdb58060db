# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role's filters: the check of sources against the real modules' documentation, and the
folding of step results into the outcome."""

from __future__ import annotations

from ansible_collections.lifeboat.backup.plugins.filter import backup_job

STORES = {"primary": {"kind": "dir", "path": "/srv/b"}, "secondary": {"kind": "dir", "path": "/srv/c"}, "offsite": {}}
PG = {"login_host": "db", "login_password": "s3cret"}


def plan(sources, policy=None, stores=None, only=None):
    return backup_job.backup_plan(sources, policy or {}, STORES if stores is None else stores, only)


def test_a_good_fleet_plans_each_source_with_its_module_and_the_policy():
    checked = plan([
        {"name": "app", "engine": "postgresql", "db": "app", "format": "directory", "connection": PG},
        {"name": "shop", "engine": "mysql", "method": "mariabackup"},
        {"name": "etc", "engine": "files", "path": "/etc", "rpo": "50h"},
    ], {"type": "auto", "full_every": "7d", "between": "incremental", "rpo": "26h", "labels": {"job": "n"}})
    assert checked["errors"] == []
    app, shop, etc = checked["plan"]
    assert app["module"] == "lifeboat.backup.postgresql_backup"
    assert app["params"]["login_password"] == "s3cret" and app["params"]["format"] == "directory"
    # pg_dump has no type option: the policy's type is not handed to it.
    assert "type" not in app["params"] and "full_every" not in app["params"]
    assert shop["params"]["type"] == "auto" and shop["params"]["full_every"] == "7d"
    assert etc["rpo"] == "50h" and app["rpo"] == "26h"
    assert etc["params"]["labels"] == {"job": "n"}


def test_every_mistake_of_the_list_gives_its_sentence():
    errors = plan([
        {"name": "app", "engine": "postgresql", "db": "app", "fromat": "directory"},
        {"name": "app", "engine": "postgresql", "db": "other"},
        {"name": "pg2", "engine": "postgresql", "db": "x", "login_host": "db1", "connection": {"login_pasword": "x"}},
        {"name": "pg3", "engine": "postgresql", "db": "x", "format": "directry"},
        {"name": "docs", "engine": "mongonope"},
        {"name": "f", "engine": "files", "store": {"path": "/x"}},
    ], {"rpo": "one day"})["errors"]
    text = " ".join(errors)
    assert "Unknown key fromat in source app (engine postgresql) (did you mean format?)." in errors
    assert any(e.startswith("Two sources are named app") for e in errors)
    assert "The key login_host of source pg2 is a connection option; put it under connection:." in errors
    assert "Unknown connection key login_pasword in source pg2 (engine postgresql) (did you mean login_password?)." in errors
    assert "Source pg3 (engine postgresql): value of format must be one of: custom, directory, plain, got: directry." in errors
    assert "The engine of source docs is 'mongonope'" in text
    assert "Source f (engine files): missing required arguments: path." in errors
    assert "The key store of source f is set by the role" in text
    assert "backup_policy.rpo must be a duration like 30m, 12h, 7d or 1d12h, not 'one day'." in errors
    assert "s3cret" not in text


def test_stores_policy_and_selection_are_checked():
    errors = plan([{"name": "a", "engine": "files", "path": "/a"}],
                  {"type": "auto", "retention": {"ofsite": {"keep_last": 1}, "secondary": {"keep_last": 0}}},
                  {"primary": {"kind": "dir", "pth": "/x"}, "secondary": {"path": "/y"}}, only="a,b")["errors"]
    text = " ".join(errors)
    assert "backup_stores.primary: unknown key pth (did you mean path?)." in errors
    assert "backup_policy.type auto needs backup_policy.full_every (for example 7d)." in errors
    assert "backup_policy.retention: unknown store ofsite" in text
    assert "backup_policy.retention.secondary" in text
    assert "backup_only_sources names b, which this host does not declare." in errors
    assert plan([], {}, {})["errors"] == ["backup_stores.primary is required: the store the first copy is written to."]


def test_only_sources_selects():
    checked = plan([{"name": "a", "engine": "files", "path": "/a"}, {"name": "b", "engine": "files", "path": "/b"}],
                   only=["b"])
    assert [e["name"] for e in checked["plan"]] == ["b"]


def test_a_failed_source_drops_out_and_the_outcome_names_it():
    checked = plan([{"name": "a", "engine": "files", "path": "/a", "rpo": "1h"},
                    {"name": "b", "engine": "files", "path": "/b", "rpo": "1h"}])
    state = backup_job.backup_start(checked["plan"])
    manifest = {"type": "full", "started_at": "2026-12-01T03:00:00Z", "ended_at": "2026-12-01T03:00:02Z", "method": "tar"}
    state = backup_job.backup_track(state, [
        {"item": "a", "changed": True, "set_id": "S1", "bytes": 2048, "duration_s": 2.0, "manifest": manifest},
        {"item": "b", "failed": True, "msg": "The source directory /b does not exist."},
    ], "backup")
    assert backup_job.backup_ready(state) == ["a"]
    state = backup_job.backup_track(state, [{"item": "a", "checked": 1}], "verify:primary")
    state = backup_job.backup_track(state, [{"item": "a", "failed": True, "msg": "disk full"}], "copy:secondary")
    assert backup_job.backup_ready(state) == []
    state = backup_job.backup_track(state, [
        {"item": "a", "rpo_status": {"h/a": {"status": "ok", "age_s": 5}}},
        {"item": "b", "rpo_status": {"h/b": {"status": "missing", "age_s": None}}},
    ], "rpo")
    out = backup_job.backup_outcomes(state, STORES)
    a, b = out["outcomes"]
    assert a["status"] == "failed" and a["error"] == "copy secondary: disk full"
    assert a["copies"] == {"primary": {"set_id": "S1", "verified": True, "error": None},
                           "secondary": {"set_id": "S1", "verified": False, "error": "copy secondary: disk full"}}
    assert b["error"] == "backup: The source directory /b does not exist" and b["rpo_breach"] is True
    assert out["failed"] == ["a", "b"] and out["rpo_breached"] == ["b"]
    assert out["lines"][1] == ("b: FAILED backup: The source directory /b does not exist; copies verified 0/2 (none); "
                               "RPO 1h BREACHED (no set)")


def test_the_first_error_of_a_source_stays_and_an_unreadable_rpo_is_a_breach():
    checked = plan([{"name": "a", "engine": "files", "path": "/a", "rpo": "1h"}])
    state = backup_job.backup_start(checked["plan"])
    state = backup_job.backup_track(state, [{"item": "a", "failed": True, "msg": "could not connect."}], "backup")
    state = backup_job.backup_track(state, [{"item": "a", "failed": True, "msg": "The store /x does not exist."}], "rpo")
    (outcome,) = backup_job.backup_outcomes(state, STORES)["outcomes"]
    assert outcome["error"] == "backup: could not connect" and outcome["rpo_breach"] is True


def test_a_file_source_with_a_snapshot_prepare_step_goes_to_the_snapshot_module():
    checked = plan([
        {"name": "www", "engine": "files", "path": "www", "exclude": ["*.log"], "method": "tar",
         "prepare": {"kind": "btrfs", "subvolume": "/srv/data", "snapshot_dir": "/srv/.snaps"}},
        {"name": "all", "engine": "files", "prepare": {"kind": "btrfs", "subvolume": "/srv/data"}},
        {"name": "abs", "engine": "files", "path": "/srv/data/www", "prepare": {"kind": "btrfs", "subvolume": "/srv/data"}},
        {"name": "home", "engine": "files", "path": "alice", "rpo": "50h",
         "prepare": {"kind": "lvm", "vg": "vg0", "lv": "home", "size": "10%ORIGIN"}},
    ], {"type": "auto", "full_every": "7d", "between": "incremental", "labels": {"job": "n"}})
    assert checked["errors"] == []
    www, whole, absolute, home = checked["plan"]
    assert www["module"] == "lifeboat.backup.btrfs_snapshot" and www["engine"] == "files"
    assert www["method"] == "tar" and www["prepare"] == "btrfs"
    assert www["params"] == {"path": "www", "exclude": ["*.log"], "subvolume": "/srv/data",
                             "snapshot_dir": "/srv/.snaps", "type": "auto", "full_every": "7d",
                             "between": "incremental", "labels": {"job": "n"}}
    # Without a path the whole volume is backed up as files (never a btrfs send set).
    assert whole["params"]["path"] == "."
    assert absolute["params"]["path"] == "/srv/data/www"
    assert home["module"] == "lifeboat.backup.lvm_snapshot" and home["rpo"] == "50h"
    assert home["params"]["vg"] == "vg0" and home["params"]["size"] == "10%ORIGIN" and home["params"]["path"] == "alice"


def test_every_prepare_mistake_gives_its_sentence():
    errors = plan([
        {"name": "a", "engine": "files", "prepare": {"kind": "btrf", "subvolume": "/srv/data"}},
        {"name": "b", "engine": "files", "prepare": {"kind": "btrfs", "subvolme": "/srv/data"}},
        {"name": "c", "engine": "files", "prepare": {"kind": "lvm", "vg": "vg0"}},
        {"name": "d", "engine": "files", "subvolume": "/srv/data", "prepare": {"kind": "btrfs", "subvolume": "/x"}},
        {"name": "e", "engine": "files", "method": "rsync_snapshot", "include": ["a"],
         "prepare": {"kind": "btrfs", "subvolume": "/srv/data"}},
        {"name": "f", "engine": "files", "path": "/etc", "prepare": {"kind": "btrfs", "subvolume": "/srv/data"}},
        {"name": "g", "engine": "files", "path": "../etc", "prepare": {"kind": "lvm", "vg": "vg0", "lv": "x"}},
        {"name": "h", "engine": "postgresql", "db": "x", "prepare": {"kind": "lvm", "vg": "vg0", "lv": "x"}},
        {"name": "i", "engine": "files", "prepare": "btrfs"},
        {"name": "j", "engine": "files", "prepare": {"kind": "lvm", "vg": "vg0", "lv": "x", "size": "10%ORIGIN",
                                                     "mount_dir": "/run/x"}, "one_file_system": "maybe"},
    ])["errors"]
    assert "The prepare kind of source a is 'btrf'; it must be one of btrfs, lvm (did you mean btrfs?)." in errors
    assert ("Unknown key subvolme in the prepare of source b (kind btrfs) (did you mean subvolume?); its keys are "
            "kind, snapshot_dir, subvolume.") in errors
    assert "The prepare of source b (kind btrfs) needs subvolume." in errors
    assert "The prepare of source c (kind lvm) needs lv." in errors
    assert "The key subvolume of source d describes the snapshot; put it under prepare:." in errors
    assert ("The key method of source e does not apply with a prepare step: the files in the snapshot are read "
            "with tar (method tar).") in errors
    assert ("The key include of source e does not apply with a prepare step: the files in the snapshot are read "
            "with tar (method tar).") in errors
    assert ("The path /etc of source f is not inside the subvolume /srv/data it snapshots; give a directory of the "
            "subvolume, relative to it or absolute.") in errors
    assert "The path of source g: path '../etc' leaves the volume; give a directory inside it." in errors
    assert ("Source h has a prepare step, but only engine files takes one (a snapshot whose files are backed up)."
            in errors)
    assert "The prepare of source i must be a dict with kind (btrfs or lvm) and the snapshot's options." in errors
    assert any(e.startswith("Source j (engine files):") and "one_file_system" in e for e in errors)
    assert len(errors) == 12
