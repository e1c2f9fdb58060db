# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""postgresql_backup end to end against fake client tools (they record argv, env, passfile, stdin)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_backup
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FAKE_DUMP, run_module

PASSWORD = "s3cr:et\\pw"
SOCKET = "/nonexistent/lifeboat-socket-dir"
ZSTD = shutil.which("zstd")
needs_zstd = pytest.mark.skipif(not ZSTD, reason="zstd is not installed")


def args_for(pg, store_path, **extra):
    args = dict(store=dict(kind="dir", path=store_path), host="db1", db="app", login_unix_socket=SOCKET,
                login_password=PASSWORD, pg_bin_dir=pg.bin_dir, compression="none")
    args.update(extra)
    return args


def dumps(pg):
    """pg_dump runs that dumped (not --version)."""
    return [c for c in pg.calls("pg_dump") if c["argv"][1:] != ["--version"]]


def assert_no_secret(pg, result):
    for call in pg.calls():
        for arg in call["argv"]:
            assert "s3cr" not in arg
        for value in call["env"].values():
            assert "s3cr" not in value
        assert call["env"].get("PGPASSWORD", "") == ""
    assert "s3cr" not in json.dumps(result)


@needs_zstd
def test_backup_then_idempotent_rerun(monkeypatch, tmp_path, pg, store_path):
    args = args_for(pg, store_path, compression="zstd", max_age="1d", labels={"ticket": "OPS-1"})
    first = run_module(monkeypatch, tmp_path, postgresql_backup, args)
    assert not first.failed, first.result
    result = first.result
    assert result["changed"] is True
    assert result["skipped_reason"] is None
    assert _manifest.SET_ID_RE.match(result["set_id"]).group(2) == "full"
    store = _store_dir.DirStore({"path": store_path})
    assert result["path"] == store.location("db1", "app", result["set_id"])
    assert result["store"] == {"kind": "dir", "path": store_path}
    assert [f["name"] for f in result["files"]] == ["dump.pgc.zst"]
    assert result["position"] == {"server_version": "15.18", "in_recovery": False, "lsn": "0/3000148", "timeline": 1}
    assert result["removed_partials"] == []
    manifest = store.read_manifest("db1", "app", result["set_id"])
    assert manifest == result["manifest"]
    assert manifest["engine"] == "postgresql" and manifest["method"] == "pg_dump"
    versions = dict(manifest["tool_versions"])
    assert versions.pop("zstd").startswith("*** Zstandard CLI")  # the codec's first --version line
    assert versions == {"pg_dump": "15.18", "server": "15.18"}
    assert manifest["compression"] == {"algorithm": "zstd", "level": None}
    assert manifest["options"] == {"format": "custom", "database": "app", "jobs": 1, "globals_only": False,
                                   "payload": "dump.pgc.zst"}
    assert manifest["labels"] == {"ticket": "OPS-1"}
    assert store.verify_set(manifest) == []
    # The payload is a plain zstd stream of pg_dump's own output.
    payload = os.path.join(result["path"], "dump.pgc.zst")
    assert subprocess.run([ZSTD, "-d", "-c", payload], stdout=subprocess.PIPE, check=True).stdout == FAKE_DUMP

    dump_bin = os.path.join(pg.bin_dir, "pg_dump")
    assert result["cmd"] == [[dump_bin, "--no-password", "-F", "c", "-Z0", "-d", "dbname='app'"], [ZSTD, "-q", "-c", "-T0"]]
    (dump,) = dumps(pg)
    assert dump["argv"] == [dump_bin, "--no-password", "-F", "c", "-Z0", "-d", "dbname='app'"]
    env = dump["env"]
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == (SOCKET, "5432", "postgres", "app")
    assert (env["LANG"], env["LC_ALL"], env["PGPASSWORD"]) == ("C", "C", "")
    # The password reached the tools only through a 0600 in-memory passfile (/dev/fd/N) whose
    # one line names this server's socket directory, port and user, escaped for libpq ...
    assert dump["passfile"] == SOCKET + ":5432:*:postgres:s3cr\\:et\\\\pw\n"
    assert dump["passfile_mode"] == 0o600
    assert env["PGPASSFILE"].startswith("/dev/fd/")
    probe = pg.calls("psql")[0]
    assert probe["passfile"] == dump["passfile"]
    assert "pg_is_in_recovery()" in probe["stdin"]
    # ... and never was a file on disk.
    assert os.listdir(str(tmp_path / "module-tmp")) == []
    assert_no_secret(pg, result)

    # Idempotent re-run: a fresh set exists, nothing runs, not even the probe.
    calls_before = len(pg.calls())
    second = run_module(monkeypatch, tmp_path, postgresql_backup, args)
    assert not second.failed
    assert second.result["changed"] is False
    assert second.result["set_id"] == result["set_id"]
    assert second.result["skipped_reason"] == "a complete set younger than max_age exists"
    assert len(pg.calls()) == calls_before
    assert store.set_ids("db1", "app") == [result["set_id"]]


def test_check_mode_touches_nothing(monkeypatch, tmp_path, pg, store_path):
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args_for(pg, store_path), check_mode=True)
    assert not outcome.failed, outcome.result
    assert outcome.result["changed"] is True
    assert _manifest.SET_ID_RE.match(outcome.result["set_id"])
    assert outcome.result["position"]["lsn"] == "0/3000148"
    assert outcome.result["cmd"] == [[os.path.join(pg.bin_dir, "pg_dump"), "--no-password", "-F", "c", "-Z0",
                                      "-d", "dbname='app'"]]
    assert not os.path.exists(store_path)
    assert [c["tool"] for c in pg.calls()] == ["psql"]  # only the read-only probe
    assert_no_secret(pg, outcome.result)


def test_check_mode_reports_skip(monkeypatch, tmp_path, pg, store_path):
    args = args_for(pg, store_path, max_age="2h")
    assert not run_module(monkeypatch, tmp_path, postgresql_backup, args).failed
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args, check_mode=True)
    assert outcome.result["changed"] is False


def test_rerun_without_max_age_makes_a_new_set(monkeypatch, tmp_path, pg, store_path):
    args = args_for(pg, store_path)
    ids = [run_module(monkeypatch, tmp_path, postgresql_backup, args).result["set_id"] for dummy in range(2)]
    assert ids[0] != ids[1]
    assert sorted(_store_dir.DirStore({"path": store_path}).set_ids("db1", "app")) == sorted(ids)


@pytest.mark.parametrize(
    "tool, stderr, msg",
    [
        ("pg_dump", 'pg_dump: error: connection to server on socket "%s/.s.PGSQL.5432" failed: FATAL:  '
                    'password authentication failed for user "postgres"\n' % SOCKET,
         'PostgreSQL at %s port 5432 rejected the password for user "postgres"; '
         "check login_user and login_password." % SOCKET),
        ("pg_dump", "pg_dump: error: query failed: ERROR:  permission denied for table secrets\n",
         "User lacks the privilege to read secrets on PostgreSQL at %s port 5432; "
         "grant it or use another login_user." % SOCKET),
        ("psql", 'psql: error: connection to server on socket "%s/.s.PGSQL.5432" failed: FATAL:  database "app" '
                 "does not exist\n" % SOCKET,
         'Database "app" does not exist on PostgreSQL at %s port 5432; check the database name.' % SOCKET),
    ],
)
def test_failures_are_one_sentence_and_leave_no_set(monkeypatch, tmp_path, pg, store_path, tool, stderr, msg):
    pg.behave({tool: {"rc": 1, "stderr": stderr}})
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args_for(pg, store_path))
    assert outcome.failed
    assert outcome.result["msg"] == msg
    store = _store_dir.DirStore({"path": store_path})
    assert store.set_ids("db1", "app") == []
    base = store.location("db1", "app")
    # No set, no .partial, no lock; a run that got as far as writing leaves its failure record.
    assert not os.path.exists(base) or os.listdir(base) in ([], ["objects"])
    if tool == "psql":
        assert dumps(pg) == []
    assert_no_secret(pg, outcome.result)


def test_directory_format_in_parallel(monkeypatch, tmp_path, pg, store_path):
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup,
                         args_for(pg, store_path, format="directory", jobs=3))
    assert not outcome.failed, outcome.result
    result = outcome.result
    assert [f["name"] for f in result["files"]] == ["dump.dir.tar"]
    (dump,) = dumps(pg)
    argv = dump["argv"]
    # Run through the runner, not the pipeline: it gets the passfile descriptor all the same.
    assert dump["passfile"] == SOCKET + ":5432:*:postgres:s3cr\\:et\\\\pw\n"
    assert argv[1:6] == ["--no-password", "-F", "d", "-Z0", "-j"] and argv[6] == "3" and argv[-2:] == ["-d", "dbname='app'"]
    staging = argv[argv.index("-f") + 1]
    # pg_dump -Fd writes into a local workspace, never inside the store
    assert not staging.startswith(store_path)
    assert staging.startswith(str(tmp_path))
    assert not os.path.exists(staging)
    assert sorted(os.listdir(result["path"])) == ["dump.dir.tar", "manifest.json"]
    with tarfile.open(os.path.join(result["path"], "dump.dir.tar")) as archive:
        names = sorted(n for n in archive.getnames() if n not in (".", "./"))
    assert names == ["./3001.dat", "./toc.dat"]
    assert result["manifest"]["options"]["jobs"] == 3
    # cmd shows the parallel dump (with a placeholder for the staging path), then the tar stream.
    assert result["cmd"][0] == [os.path.join(pg.bin_dir, "pg_dump"), "--no-password", "-F", "d", "-Z0", "-j", "3",
                                "-f", "<staging>/dump", "-d", "dbname='app'"]
    assert result["cmd"][1][0].endswith("tar") and result["cmd"][1][1:] == ["-C", "<staging>", "-cf", "-", "."]


def test_pg_dumpall_globals(monkeypatch, tmp_path, pg, store_path):
    if not shutil.which("gzip"):
        pytest.skip("gzip is not installed")
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup,
                         args_for(pg, store_path, method="pg_dumpall", globals_only=True, db=None,
                                  compression="gzip", compression_level=9))
    assert not outcome.failed, outcome.result
    result = outcome.result
    store = _store_dir.DirStore({"path": store_path})
    assert store.set_ids("db1", "globals") == [result["set_id"]]
    assert [f["name"] for f in result["files"]] == ["dumpall.sql.gz"]
    (dump,) = [c for c in pg.calls("pg_dumpall") if c["argv"][1:] != ["--version"]]
    assert dump["argv"] == [os.path.join(pg.bin_dir, "pg_dumpall"), "--no-password", "--globals-only",
                            "-l", "dbname='postgres'"]
    assert result["manifest"]["tool_versions"]["pg_dumpall"] == "15.18"
    versions = result["manifest"]["tool_versions"]
    assert versions.get("pigz") or versions.get("gzip")  # the codec's version line (pigz when installed)
    with open(os.path.join(result["path"], "dumpall.sql.gz"), "rb") as handle:
        assert handle.read(2) == b"\x1f\x8b"


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (dict(method="pg_dumpall", jobs=2), "jobs applies to method pg_dump with format directory, not to pg_dumpall."),
        (dict(globals_only=True), "globals_only applies to method pg_dumpall only."),
        (dict(jobs=0), "jobs must be 1 or more, not 0."),
        (dict(compression="zstd", compression_level=30), "compression_level for zstd must be between 1 and 22"),
        (dict(encrypt_recipients=["not-a-key"]), "is not an age public key"),
        (dict(store=dict(kind="dir", path="relative/store")), "must be an absolute path"),
        (dict(max_age="soon"), "max_age must be a duration"),
        (dict(source="../escape"), "is not usable as a directory name"),
        (dict(login_password="two\nlines"), "login_password must not contain a line break."),
    ],
)
def test_bad_options_fail_cleanly(monkeypatch, tmp_path, pg, store_path, extra, fragment):
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args_for(pg, store_path, **extra))
    assert outcome.failed
    assert fragment in outcome.result["msg"]
    assert dumps(pg) == []


def test_jobs_without_directory_format_is_refused(monkeypatch, tmp_path, pg, store_path):
    """BUG (plugins/modules/postgresql_backup.py dump_stages): for format custom/plain the pg_dump argv is
    built without ``jobs``, so jobs=4 is silently ignored (a serial dump runs and the manifest records
    jobs: 4) instead of failing with pg_dump_argv's 'jobs > 1 needs format: directory' sentence, as the
    jobs option documentation ('needs format=directory') promises."""
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args_for(pg, store_path, format="custom", jobs=4))
    assert outcome.failed
    assert "jobs > 1 needs format: directory" in outcome.result["msg"]


def test_missing_tool_in_pg_bin_dir(monkeypatch, tmp_path, pg, store_path):
    os.unlink(os.path.join(pg.bin_dir, "pg_dump"))
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args_for(pg, store_path))
    assert outcome.failed
    assert outcome.result["msg"] == ("pg_dump is not in pg_bin_dir %s; install the PostgreSQL client tools there."
                                     % pg.bin_dir)


def test_stale_leftovers_are_cleaned_and_reported(monkeypatch, tmp_path, pg, store_path):
    store = _store_dir.DirStore({"path": store_path})
    base = store.location("db1", "app")
    os.makedirs(os.path.join(base, "20260101T000000Z-full.partial"))
    proc = subprocess.Popen(["true"])
    proc.wait()
    with open(os.path.join(base, ".lock"), "w") as handle:
        json.dump({"pid": proc.pid, "node": socket.gethostname(), "started_at": "2026-01-01T00:00:00.000Z",
                   "expires_at": "2026-01-02T00:00:00.000Z", "set_id": "20260101T000000Z-full"}, handle)
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args_for(pg, store_path))
    assert not outcome.failed, outcome.result
    assert outcome.result["removed_partials"] == ["20260101T000000Z-full.partial"]
    assert outcome.result["stale_lock"]["reason"] == "its process %d is gone" % proc.pid
    assert sorted(os.listdir(base)) == [outcome.result["set_id"]]


@pytest.mark.skipif(not (shutil.which("age") and shutil.which("age-keygen") and ZSTD), reason="needs age and zstd")
def test_encrypted_backup(monkeypatch, tmp_path, pg, store_path):
    identity = str(tmp_path / "id.txt")
    subprocess.run(["age-keygen", "-o", identity], check=True, stderr=subprocess.DEVNULL)
    public = subprocess.run(["age-keygen", "-y", identity], check=True, stdout=subprocess.PIPE).stdout.decode().strip()
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup,
                         args_for(pg, store_path, compression="zstd", encrypt_recipients=[public]))
    assert not outcome.failed, outcome.result
    manifest = outcome.result["manifest"]
    assert [f["name"] for f in manifest["files"]] == ["dump.pgc.zst.age"]
    assert manifest["encryption"] == {"method": "age", "recipients": [_jobs.recipient_fingerprint(public)]}
    payload = os.path.join(outcome.result["path"], "dump.pgc.zst.age")
    plain = subprocess.run("age --decrypt -i %s %s | zstd -d -c" % (identity, payload), shell=True,
                           stdout=subprocess.PIPE, check=True).stdout
    assert plain == FAKE_DUMP


@pytest.mark.parametrize("error, sentence", [("No space left on device", "No space left on the device holding "),
                                             ("Disk quota exceeded", "Disk quota exceeded while writing ")])
def test_directory_dump_into_a_full_workspace(monkeypatch, tmp_path, pg, store_path, error, sentence):
    """pg_dump -Fd writes into the local workspace: a full disk there is named as such."""
    pg.behave({"pg_dump": {"rc": 1, "stderr": "pg_dump: error: could not write to output file: %s\n" % error}})
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args_for(pg, store_path, format="directory"))
    assert outcome.failed
    msg = outcome.result["msg"]
    assert msg.startswith(sentence) and "lifeboat-backup-" in msg and store_path not in msg
    # No set: only the failure record retention reads (objects/attempts/<set_id>.failed).
    assert os.listdir(_store_dir.DirStore({"path": store_path}).location("db1", "app")) == ["objects"]
