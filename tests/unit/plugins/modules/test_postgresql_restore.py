# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""postgresql_restore against fake client tools, on sets written by postgresql_backup."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _pgrestore
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_backup
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_restore
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import (
    FAKE_DUMP,
    make_set,
    run_module,
)

PASSWORD = "rest0re:pw"
SOCKET = "/nonexistent/lifeboat-socket-dir"
needs_zstd = pytest.mark.skipif(not shutil.which("zstd"), reason="zstd is not installed")


def common(pg, store_path):
    return dict(store=dict(kind="dir", path=store_path), host="db1", login_unix_socket=SOCKET,
                login_password=PASSWORD, pg_bin_dir=pg.bin_dir)


def backup(monkeypatch, tmp_path, pg, store_path, **extra):
    args = dict(common(pg, store_path), db="app", compression="zstd")
    args.update(extra)
    outcome = run_module(monkeypatch, tmp_path, postgresql_backup, args)
    assert not outcome.failed, outcome.result
    return outcome.result


def restore(monkeypatch, tmp_path, pg, store_path, check_mode=False, **extra):
    args = dict(common(pg, store_path), source="app", target_db="app_copy")
    args.update(extra)
    return run_module(monkeypatch, tmp_path, postgresql_restore, args, check_mode=check_mode)


class Log(object):
    """Only the tool calls made after it was created."""

    def __init__(self, pg):
        self.pg = pg
        self.skip = len(pg.calls())

    def calls(self, tool=None):
        return [c for c in self.pg.calls()[self.skip:] if tool is None or c["tool"] == tool]

    def sql(self):
        """What every psql but the lock session was given (that one ends last, when its run does)."""
        return [c["stdin"] for c in self.calls("psql") if not c["stdin"].startswith("SELECT pg_try_advisory_lock(")]

    def locks(self):
        return [c["stdin"] for c in self.calls("psql") if c["stdin"].startswith("SELECT pg_try_advisory_lock(")]


def scratch(log):
    """The scratch database a run created (its name holds a random run id)."""
    for sql in log.sql():
        match = re.match(r'CREATE DATABASE "([^"]+)" TEMPLATE template0', sql)
        if match:
            return match.group(1)
    raise AssertionError("no scratch database was created: %r" % log.sql())


def swap_script(log):
    (script,) = [sql for sql in log.sql() if sql.startswith("BEGIN;")]
    return script.splitlines()


def age_argvs(result):
    return [argv for stages in result["cmd"] for argv in stages if argv[0] == shutil.which("age")]


def assert_no_secret(log, result):
    for call in log.calls():
        assert all("rest0re" not in arg for arg in call["argv"])
        assert all("rest0re" not in value for value in call["env"].values())
    assert "rest0re" not in json.dumps(result)


@needs_zstd
def test_round_trip_into_new_database(monkeypatch, tmp_path, pg, store_path):
    made = backup(monkeypatch, tmp_path, pg, store_path)
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert not outcome.failed, outcome.result
    result = outcome.result
    assert result["changed"] is True
    assert result["replaced"] is False
    assert result["set_id"] == made["set_id"]
    assert result["verified_files"] == 1
    assert result["bytes"] == made["bytes"]
    assert result["target_db"] == "app_copy"
    assert result["removed_scratch"] == []
    assert pg.restored() == [FAKE_DUMP]
    name = scratch(log)
    assert re.match(r"^app_copy_lifeboat_[0-9a-f]{8}$", name)
    sql = log.sql()
    assert sql[0] == "SELECT count(*) FROM pg_database WHERE datname = 'app_copy';\n"
    assert log.locks() == ["SELECT pg_try_advisory_lock(%d);\n" % _pgrestore.lock_key("app_copy")]
    assert sql[-2] == 'COMMENT ON DATABASE "%s" IS %s;\n' % (
        name, _postgres.quote_literal(_pgrestore.marker("scratch", "app_copy", name[-8:])))
    assert sql[-1] == "\n".join([
        "BEGIN;",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname IN ('app_copy', '%s') "
        "AND pid <> pg_backend_pid();" % name,
        'ALTER DATABASE "%s" RENAME TO "app_copy";' % name,
        'COMMENT ON DATABASE "app_copy" IS NULL;',
        "COMMIT;"]) + "\n"
    render, load = log.calls("pg_restore")
    assert render["argv"][1:5] == ["--create", "-n", render["argv"][3], "-f"]
    assert load["argv"] == [os.path.join(pg.bin_dir, "pg_restore"), "--no-password", "--exit-on-error",
                            "-d", "dbname='%s'" % name, "-F", "c"]
    assert load["passfile"] == SOCKET + ":5432:*:postgres:rest0re\\:pw\n"
    assert result["cmd"] == [[render["argv"]], [[shutil.which("zstd"), "-q", "-d", "-c"], load["argv"]]]
    assert_no_secret(log, result)


@needs_zstd
def test_clean_swaps_in_one_transaction_after_the_copy_is_complete(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path)
    pg.behave({"psql": {"count": "1\n"}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, clean=True)
    assert not outcome.failed, outcome.result
    assert outcome.result["replaced"] is True
    name = scratch(log)
    run = name[-8:]
    aside = "app_copy_lifeboat_old_%s" % run
    script = swap_script(log)
    assert script[0] == "BEGIN;" and script[-1] == "COMMIT;"
    assert script[2:6] == [
        'ALTER DATABASE "app_copy" RENAME TO "%s";' % aside,
        'COMMENT ON DATABASE "%s" IS %s;' % (aside, _postgres.quote_literal(
            _pgrestore.marker("old copy", "app_copy", run))),
        'ALTER DATABASE "%s" RENAME TO "app_copy";' % name,
        'COMMENT ON DATABASE "app_copy" IS NULL;',
    ]
    # the old copy is dropped only after the swap committed, and nothing is ever dropped before
    assert log.sql()[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % aside
    assert not any(sql.startswith("DROP") for sql in log.sql()[:-1])
    order = [c["tool"] for c in log.calls()]
    assert order.index("pg_restore") < len(order) - 2


@needs_zstd
def test_failed_swap_keeps_the_old_database_and_says_so(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path)
    pg.behave({"psql": {"count": "1\n", "fail_if": {
        "BEGIN;": 'psql:<stdin>:5: ERROR:  database "app_copy_lifeboat_x" is being accessed by other users\n'}}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, clean=True)
    assert outcome.failed
    assert outcome.result["msg"].startswith('Swapping the restored copy in as "app_copy" failed, so the old "app_copy" '
                                            'was kept as it was and the restored copy dropped: ')
    assert "being accessed by other users" in outcome.result["msg"]
    assert outcome.result["changed"] is False
    name = scratch(log)
    sql = log.sql()
    # tried three times, then the scratch copy (only it) was dropped
    assert len([s for s in sql if s.startswith("BEGIN;")]) == 3
    assert sql[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % name
    assert [s for s in sql if s.startswith("DROP")] == [sql[-1]]


@needs_zstd
def test_existing_database_without_clean_is_refused(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path)
    pg.behave({"psql": {"count": "1\n"}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == ('Database "app_copy" already exists; set clean: true to replace it, '
                                     "or pick another target_db.")
    assert [c["tool"] for c in log.calls()] == ["psql"]


@needs_zstd
def test_check_mode_only_reads(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path)
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, check_mode=True)
    assert not outcome.failed, outcome.result
    assert outcome.result["changed"] is True
    assert outcome.result["replaced"] is False
    assert outcome.result["removed_scratch"] == []
    assert all(sql.startswith("SELECT ") for sql in log.sql())
    assert log.calls("pg_restore") == []


@needs_zstd
def test_corrupt_set_is_refused_before_changing_the_server(monkeypatch, tmp_path, pg, store_path):
    made = backup(monkeypatch, tmp_path, pg, store_path)
    payload = os.path.join(made["path"], "dump.pgc.zst")
    with open(payload, "r+b") as handle:
        handle.seek(10)
        byte = handle.read(1)
        handle.seek(10)
        handle.write(bytes([byte[0] ^ 0xFF]))
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == ("Set db1/app/%s failed verification (dump.pgc.zst: SHA-256 mismatch); "
                                     "refusing to restore from it." % made["set_id"])
    # At most read-only queries ran: nothing was created, dropped or restored.
    assert log.calls("pg_restore") == []
    assert all(sql.startswith("SELECT ") for sql in log.sql())


@needs_zstd
def test_failed_restore_drops_the_scratch_database(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path)
    pg.behave({"pg_restore": {"rc": 1, "stderr": "pg_restore: error: could not execute query: ERROR:  "
                                                 "permission denied for schema public\n"}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == ("User lacks the privilege to read public on PostgreSQL at %s port 5432; "
                                     "grant it or use another login_user." % SOCKET)
    sql = log.sql()
    assert sql[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % scratch(log)
    assert not any("RENAME" in s for s in sql)
    assert outcome.result["changed"] is False


@needs_zstd
def test_parallel_restore_unpacks_into_work_dir(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path)
    work = tmp_path / "work"
    work.mkdir()
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, jobs=3, no_owner=True, work_dir=str(work))
    assert not outcome.failed, outcome.result
    render, call = log.calls("pg_restore")
    assert render["argv"][-1] == call["argv"][-1]  # the entries are read from the unpacked copy
    argv = call["argv"]
    assert call["passfile"] == SOCKET + ":5432:*:postgres:rest0re\\:pw\n"
    assert argv[1:-1] == ["--no-password", "--exit-on-error", "-d", "dbname='%s'" % scratch(log), "--no-owner",
                          "--no-privileges", "-j", "3", "-F", "c"]
    assert argv[-1].startswith(str(work)) and argv[-1].endswith("dump.pgc")
    assert pg.restored() == [FAKE_DUMP]
    assert os.listdir(str(work)) == []  # the unpacked copy is removed


def test_uncompressed_parallel_restore_copies_out_of_the_store(monkeypatch, tmp_path, pg, store_path):
    made = backup(monkeypatch, tmp_path, pg, store_path, compression="none")
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, jobs=2)
    assert not outcome.failed, outcome.result
    dummy, call = log.calls("pg_restore")
    # pg_restore -j reads a private copy: no tool is pointed at a path inside the store
    assert not call["argv"][-1].startswith(made["path"])
    assert call["argv"][-1].endswith("dump.pgc")
    assert pg.restored() == [FAKE_DUMP]


@needs_zstd
def test_directory_format_round_trip(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path, format="directory", jobs=2)
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, jobs=2)
    assert not outcome.failed, outcome.result
    dummy, call = log.calls("pg_restore")
    assert call["argv"][-3:-1] == ["-F", "d"]
    # the fake pg_restore concatenates the directory's files in name order
    assert pg.restored() == [b"rows\n" * 100 + b"TOC"]


PLAIN = (b"--\n-- PostgreSQL database dump\n--\n\n\\restrict Xy12\n\nSET client_encoding = 'UTF8';\n"
         b"CREATE TABLE t (a text);\nCOPY public.t (a) FROM stdin;\n\\N\nline\\\\with\\tescapes\n\\.\n\n"
         b"\\unrestrict Xy12\n")


def plain_set(store_path, payload, method="pg_dump", fmt="plain"):
    store = _store_dir.DirStore({"path": store_path})
    name = "dump.sql" if method == "pg_dump" else "dumpall.sql"
    return make_set(store, "db1", "app" if method == "pg_dump" else "globals", "20261101T000000Z-full",
                    files={name: payload}, method=method,
                    options={"format": fmt, "globals_only": method == "pg_dumpall"})


def test_plain_format_replays_in_restricted_psql(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, PLAIN)
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert not outcome.failed, outcome.result
    name = scratch(log)
    (replay,) = [c for c in log.calls("psql") if "-f" in c["argv"]]
    assert replay["argv"][1:] == ["--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                  "-d", "dbname='%s'" % name, "-f", "-"]
    first, rest = replay["stdin"].split("\n", 1)
    # a fresh random key, before any byte of the set; the set's own key lines are blanked
    assert re.match(r"^\\restrict [0-9a-f]{64}$", first)
    assert first[10:] not in outcome.result["cmd"].__repr__()
    assert rest == PLAIN.decode().replace("\\restrict Xy12", "").replace("\\unrestrict Xy12", "")
    assert outcome.result["database_sql"] == []
    assert log.calls("pg_restore") == []


@pytest.mark.parametrize("line, command", [
    (b"\\! touch /tmp/owned", "\\!"),
    (b"\\o /tmp/owned", "\\o"),
    (b"\\copy t to '/tmp/owned'", "\\copy"),
    (b"SELECT 1 \\g /tmp/owned", "\\g"),
    (b"\\unrestrict `touch /tmp/owned`", "\\unrestrict"),
    (b"\\connect host=elsewhere dbname=x", "\\connect"),
])
def test_plain_meta_command_is_refused_before_psql_sees_it(monkeypatch, tmp_path, pg, store_path, line, command):
    plain_set(store_path, b"CREATE TABLE t (a int);\n" + line + b"\nSELECT 2;\n")
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == (
        "The set's SQL holds the psql meta-command %s at line 2; a restore never runs client-side commands from a "
        "set, so it refuses this one (the set may have been tampered with)." % command)
    replays = [c for c in log.calls("psql") if c["stdin"].startswith("\\restrict ")]
    assert all(line not in c["stdin"].encode() for c in replays)
    assert log.sql()[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % scratch(log)
    assert outcome.result["changed"] is False


def test_what_restricted_psql_refuses_fails_the_restore_naming_the_line(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, b"SELECT 1;\nSELECT 'b';\n")
    refusal = "psql:<stdin>:3: error: backslash commands are restricted; only \\unrestrict is allowed\n"
    pg.behave({"psql": {"fail_if": {"SELECT 'b'": refusal}}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == (
        "psql refused a meta-command at line 2 of the set's SQL (restricted mode); a restore never runs client-side "
        "commands from a set, so it stopped (the set may have been tampered with).")
    assert log.sql()[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % scratch(log)


def test_a_failing_plain_replay_is_explained_with_its_line(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, b"CREATE TABLE t (a int);\nALTER TABLE t OWNER TO ghost;\n")
    pg.behave({"psql": {"fail_if": {"OWNER TO ghost": 'psql:<stdin>:3: ERROR:  role "ghost" does not exist\n'}}})
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == (
        'The set refers to role "ghost", which does not exist on PostgreSQL at %s port 5432; create that role first, '
        "since a plain set's SQL runs as written (line 2 of the set's SQL)." % SOCKET)
    assert outcome.result["changed"] is False


def test_psql_without_restrict_is_refused(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, PLAIN)
    pg.behave({"psql": {"no_restrict": True}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == (
        "%s has no \\restrict, which a restore of a plain or pg_dumpall set needs to keep the set's SQL from running "
        "client-side commands; use psql 13.22, 14.19, 15.14, 16.10, 17.6 or 18.0 or later (pg_bin_dir)."
        % os.path.join(pg.bin_dir, "psql"))
    assert all(sql.startswith(("SELECT ", "\\restrict lifeboatprobe")) for sql in log.sql())


@pytest.mark.parametrize("fmt", ["bogus", 7, None])
def test_unknown_format_is_refused_before_the_server_is_touched(monkeypatch, tmp_path, pg, store_path, fmt):
    plain_set(store_path, b"SELECT 1;\n", fmt=fmt)
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == ("Set 20261101T000000Z-full names the dump format %r, which postgresql_restore "
                                     "cannot restore (it knows custom, directory, plain)." % (fmt,))
    assert log.calls() == []


def test_any_exception_drops_the_scratch_database(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, PLAIN)

    def boom(*args, **kwargs):
        raise KeyError("format")

    monkeypatch.setattr(_pgrestore.LogicalRestore, "restore_database", boom)
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == "The restore failed unexpectedly (KeyError: 'format')."
    assert log.sql()[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % scratch(log)


def test_a_scratch_database_that_cannot_be_marked_is_dropped(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, PLAIN)
    pg.behave({"psql": {"fail_if": {"IS 'lifeboat.backup restore scratch": "ERROR:  permission denied\n"}}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert log.sql()[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % scratch(log)


def test_leftovers_of_a_killed_run_are_dropped_and_reported(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, PLAIN)
    rows = [
        {"name": "app_copy_lifeboat_0badc0de", "comment": _pgrestore.marker("scratch", "app_copy", "0badc0de")},
        {"name": "app_copy_lifeboat_old_1badc0de",
         "comment": _pgrestore.marker("old copy", "app_copy", "1badc0de")},
        {"name": "other_lifeboat_2badc0de", "comment": _pgrestore.marker("scratch", "other", "2badc0de")},
        {"name": "forged", "comment": "lifeboat.backup restore scratch {not json"},
    ]
    pg.behave({"psql": {"leftovers": json.dumps(rows) + "\n"}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, check_mode=True)
    assert outcome.result["removed_scratch"] == ["app_copy_lifeboat_0badc0de", "app_copy_lifeboat_old_1badc0de"]
    assert not any(sql.startswith("DROP") for sql in log.sql())
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert not outcome.failed, outcome.result
    assert outcome.result["removed_scratch"] == ["app_copy_lifeboat_0badc0de", "app_copy_lifeboat_old_1badc0de"]
    drops = [sql for sql in log.sql() if sql.startswith("DROP")]
    assert drops == ['DROP DATABASE IF EXISTS "app_copy_lifeboat_0badc0de" WITH (FORCE);\n',
                     'DROP DATABASE IF EXISTS "app_copy_lifeboat_old_1badc0de" WITH (FORCE);\n']


def test_a_second_restore_of_the_same_target_waits_for_none(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, PLAIN)
    pg.behave({"psql": {"lock": "f"}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == ('Another restore into database "app_copy" is running on PostgreSQL at %s port '
                                     '5432; wait for it to finish.' % SOCKET)
    assert not any(sql.startswith(("CREATE", "DROP")) for sql in log.sql())


RENDERED = """--
-- Name: app; Type: DATABASE; Schema: -; Owner: appowner
--

CREATE DATABASE app WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8';


ALTER DATABASE app OWNER TO appowner;

\\unrestrict abc
\\connect app
\\restrict abc

COMMENT ON DATABASE app IS 'closed;
to the public';
ALTER DATABASE app SET work_mem TO '7MB';
ALTER ROLE reader IN DATABASE app SET statement_timeout TO '5s';
REVOKE CONNECT,TEMPORARY ON DATABASE app FROM PUBLIC;
GRANT CONNECT ON DATABASE app TO reader;
SECURITY LABEL FOR selinux ON DATABASE app IS 'x';
"""


@needs_zstd
@pytest.mark.parametrize("no_owner", [False, True])
def test_database_properties_are_rebuilt_for_the_new_name(monkeypatch, tmp_path, pg, store_path, no_owner):
    backup(monkeypatch, tmp_path, pg, store_path)
    pg.behave({"pg_restore": {"render": RENDERED}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, no_owner=no_owner)
    assert not outcome.failed, outcome.result
    name = scratch(log)
    create = [sql for sql in log.sql() if sql.startswith("CREATE DATABASE")]
    assert create == ['CREATE DATABASE "%s" TEMPLATE template0 ENCODING \'UTF8\' LOCALE \'C.UTF-8\';\n' % name]
    props = [
        'ALTER DATABASE "app_copy" OWNER TO "appowner";',
        'COMMENT ON DATABASE "app_copy" IS \'closed;\nto the public\';',
        'ALTER DATABASE "app_copy" SET "work_mem" TO \'7MB\';',
        'ALTER ROLE "reader" IN DATABASE "app_copy" SET "statement_timeout" TO \'5s\';',
        'REVOKE CONNECT,TEMPORARY ON DATABASE "app_copy" FROM PUBLIC;',
        'GRANT CONNECT ON DATABASE "app_copy" TO "reader";',
    ]
    if no_owner:
        props = [props[1], props[2]]
    assert outcome.result["database_sql"] == props
    assert "\n".join(swap_script(log)).endswith("\n".join(props) + "\nCOMMIT;")
    assert outcome.result["not_carried"][0] == "not carried: SECURITY LABEL FOR selinux ON DATABASE app IS 'x';"
    assert len(outcome.result["not_carried"]) == (4 if no_owner else 1)


@pytest.mark.skipif(not (shutil.which("age-keygen") and shutil.which("age") and shutil.which("zstd")),
                    reason="needs age and zstd")
def test_encrypted_set(monkeypatch, tmp_path, pg, store_path):
    identity = str(tmp_path / "id.txt")
    subprocess.run(["age-keygen", "-o", identity], check=True, stderr=subprocess.DEVNULL)
    public = subprocess.run(["age-keygen", "-y", identity], check=True, stdout=subprocess.PIPE).stdout.decode().strip()
    with open(identity) as handle:
        secret = [line for line in handle.read().splitlines() if line.startswith("AGE-SECRET-KEY-")][0]
    made = backup(monkeypatch, tmp_path, pg, store_path, encrypt_recipients=[public])

    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == ("Set %s is encrypted with age; pass age_identity (from Ansible Vault) or "
                                     "age_identity_file." % made["set_id"])
    assert log.calls() == []

    outcome = restore(monkeypatch, tmp_path, pg, store_path, age_identity_file=identity)
    assert not outcome.failed, outcome.result
    assert age_argvs(outcome.result)[0] == [shutil.which("age"), "--decrypt", "-i", identity]

    outcome = restore(monkeypatch, tmp_path, pg, store_path, age_identity=secret, clean=True)
    assert not outcome.failed, outcome.result
    age_argv = age_argvs(outcome.result)[0]
    assert age_argv[:3] == [shutil.which("age"), "--decrypt", "-i"]
    assert not os.path.exists(age_argv[3])  # the temporary identity file is gone
    assert secret not in json.dumps(outcome.result)
    assert pg.restored() == [FAKE_DUMP, FAKE_DUMP]

    other = str(tmp_path / "other.txt")
    subprocess.run(["age-keygen", "-o", other], check=True, stderr=subprocess.DEVNULL)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, age_identity_file=other, clean=True)
    assert outcome.failed
    assert outcome.result["msg"].startswith("The age identity does not match any recipient of set %s"
                                            % made["set_id"])


def test_globals_replay_ignores_already_exists(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path, method="pg_dumpall", globals_only=True, db=None,
           compression="none")
    pg.behave({"psql": {"stderr": 'psql:<stdin>:2: ERROR:  role "app" already exists\n'
                                  'psql:<stdin>:3: ERROR:  role "we"ird" already exists\n'}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, source="globals", target_db=None)
    assert not outcome.failed, outcome.result
    assert outcome.result["warnings_sql"] == ['psql:<stdin>:2: ERROR:  role "app" already exists',
                                              'psql:<stdin>:3: ERROR:  role "we"ird" already exists']
    (replay,) = [c for c in log.calls("psql") if c["stdin"].startswith("\\restrict ") and "probe" not in c["stdin"]]
    assert replay["argv"][1:] == ["--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", "dbname='postgres'",
                                  "-f", "-"]
    assert replay["stdin"].split("\n", 1)[1] == "-- fake pg_dumpall\nCREATE ROLE app;\n"


def test_globals_replay_judges_all_of_its_output(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path, method="pg_dumpall", globals_only=True, db=None,
           compression="none")
    notices = "".join("psql:<stdin>:4: NOTICE:  %s\n" % ("x" * 100) for dummy in range(80))
    pg.behave({"psql": {"stderr": 'psql:<stdin>:2: ERROR:  role "app" already exists\n'
                                  "psql:<stdin>:3: ERROR:  syntax error at or near \"CREAT\"\n" + notices}})
    outcome = restore(monkeypatch, tmp_path, pg, store_path, source="globals", target_db=None)
    assert outcome.failed
    # the replay ran, so the cluster may have changed
    assert outcome.result["changed"] is True
    assert outcome.result["msg"] == ('Replaying the pg_dumpall set hit 1 error(s), the first at line 2 of the set\'s '
                                     'SQL: psql:<stdin>:3: ERROR:  syntax error at or near "CREAT"')


def test_whole_cluster_set_needs_an_empty_cluster(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path, method="pg_dumpall", db=None, compression="none")
    pg.behave({"psql": {"datnames": "app\ncrm\n"}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, source="cluster", target_db=None)
    assert outcome.failed
    assert "restores only into an empty cluster, but this one holds app, crm" in outcome.result["msg"]
    assert len(log.calls("psql")) == 1


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (dict(jobs=0), "jobs must be 1 or more, not 0."),
        (dict(set_id="20200101T000000Z-full"), "Set 20200101T000000Z-full is not in the store (or is incomplete)."),
        (dict(target_db=None), "target_db is required to restore a pg_dump set."),
        (dict(source="other"), "holds no complete set for host db1, source other; sources of db1 there: app."),
        (dict(store=dict(kind="dir", path="relative")), "must be an absolute path"),
    ],
)
def test_bad_requests(monkeypatch, tmp_path, pg, store_path, extra, fragment):
    backup(monkeypatch, tmp_path, pg, store_path, compression="none")
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, **extra)
    assert outcome.failed
    assert fragment in outcome.result["msg"]
    assert log.calls() == []


def test_set_of_another_engine_is_refused(monkeypatch, tmp_path, pg, store_path):
    store = _store_dir.DirStore({"path": store_path})
    make_set(store, "db1", "app", "20261101T000000Z-full", engine="mysql", method="mysqldump")
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == ("Set 20261101T000000Z-full was made by mysql, not PostgreSQL; "
                                     "use that engine's restore module.")


@pytest.mark.parametrize("target", ["app", "a" * 63, "a" * 62, "é" * 31 + "x", "名" * 21, "x" * 40 + "é" * 11,
                                    "Mixed Case", "a=b", 'q"uote'])
def test_scratch_and_aside_names_fit_in_63_bytes(target):
    """PostgreSQL cuts names at 63 bytes: a name cut by characters could equal the target and drop it."""
    for make, tag in ((_pgrestore.scratch_name, "_lifeboat_0123abcd"),
                      (_pgrestore.aside_name, "_lifeboat_old_0123abcd")):
        name = make(target, "0123abcd")
        raw = name.encode("utf-8")
        assert len(raw) <= _pgrestore.MAX_IDENT
        assert name.endswith(tag)
        assert target.startswith(name[:-len(tag)])
        assert name != target
        assert raw[:_pgrestore.MAX_IDENT].decode("utf-8") == name
    assert _pgrestore.scratch_name(target, "0123abcd") != _pgrestore.aside_name(target, "0123abcd")


def test_target_longer_than_63_bytes_is_refused(monkeypatch, tmp_path, pg, store_path):
    plain_set(store_path, PLAIN)
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, target_db="é" * 32)
    assert outcome.failed
    assert outcome.result["msg"] == 'target_db "%s" is 64 bytes long; PostgreSQL names hold at most 63 bytes.' % ("é" * 32)
    assert log.calls() == []


@pytest.mark.parametrize("comment, parsed", [
    (_pgrestore.marker("scratch", "a\tb\n", "00ff"), ("scratch", "a\tb\n", "00ff")),
    (_pgrestore.marker("old copy", 'x"y', "1"), ("old copy", 'x"y', "1")),
    ("lifeboat.backup restore scratch []", None),
    ("lifeboat.backup restore scratch {\"target\": 1, \"run\": \"x\"}", None),
    ("a comment", None),
    (None, None),
])
def test_markers(comment, parsed):
    assert _pgrestore.parse_marker(comment) == parsed


@pytest.mark.parametrize(
    "line, ignorable",
    [
        ('psql:<stdin>:12: ERROR:  role "postgres" already exists', True),
        ('ERROR:  database "app" already exists', True),
        ('ERROR:  tablespace "fast" already exists', True),
        ('ERROR:  schema "public" already exists', True),
        ('psql:<stdin>:7: ERROR:  role "we"ird" already exists', True),
        ('ERROR:  role "a" already exists" and more', False),
        ('ERROR:  relation "t" already exists', False),
        ('ERROR:  role "x" does not exist', False),
        ("ERROR:  syntax error at or near \"x\"", False),
    ],
)
def test_ignorable_sql_errors(line, ignorable):
    assert bool(_pgrestore.IGNORABLE_SQL_ERROR.search(line)) is ignorable


def forged_directory_set(store_path, compression):
    """A directory-format set whose tar holds `3338.dat -> /etc/shadow`, with a manifest that matches it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("./toc.dat", b"TOC"), ("./3337.dat", b"1\tok\n\\.\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./3338.dat")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    payload, name = raw.getvalue(), "dump.dir.tar"
    if compression == "zstd":
        payload = subprocess.run([shutil.which("zstd"), "-q", "-c"], input=payload, stdout=subprocess.PIPE,
                                 check=True).stdout
        name += ".zst"
    return make_set(_store_dir.DirStore({"path": store_path}), "db1", "app", "20261101T000000Z-full", files={name: payload},
                    compression=compression, options={"format": "directory", "database": "app", "jobs": 1})


@pytest.mark.parametrize("compression", ["none", pytest.param("zstd", marks=needs_zstd)])
def test_directory_set_with_a_symlink_member_is_refused_before_extraction(monkeypatch, tmp_path, pg, store_path,
                                                                          compression):
    forged_directory_set(store_path, compression)
    extracted = []
    real_extract = _archive.extract_tar
    monkeypatch.setattr(_archive, "extract_tar", lambda *args, **kwargs: extracted.append(args) or real_extract(
        *args, **kwargs))
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert outcome.failed
    assert outcome.result["msg"] == (
        "The payload %s of set 20261101T000000Z-full holds member './3338.dat', which is a symbolic link "
        "(to '/etc/shadow'), not a regular file or directory; refusing to extract it."
        % ("dump.dir.tar.zst" if compression == "zstd" else "dump.dir.tar"))
    assert extracted == []
    assert log.calls("pg_restore") == []
    # No scratch database is left: none was made, or it was dropped again.
    if any(sql.startswith("CREATE DATABASE") for sql in log.sql()):
        assert 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % scratch(log) in log.sql()[-1]
    assert os.listdir(str(tmp_path / "module-tmp")) == []
