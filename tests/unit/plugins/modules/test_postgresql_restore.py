# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""postgresql_restore against fake client tools, on sets written by postgresql_backup."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _archive
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores
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
        return [c["stdin"] for c in self.calls("psql")]


def scratch():
    return postgresql_restore.scratch_name("app_copy")


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
    assert pg.restored() == [FAKE_DUMP]
    assert log.sql() == [
        "SELECT count(*) FROM pg_database WHERE datname = 'app_copy';\n",
        'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % scratch(),
        'CREATE DATABASE "%s" TEMPLATE template0;\n' % scratch(),
        'ALTER DATABASE "%s" RENAME TO "app_copy";\n' % scratch(),
    ]
    (pg_restore,) = log.calls("pg_restore")
    assert pg_restore["argv"] == [os.path.join(pg.bin_dir, "pg_restore"), "--no-password", "--exit-on-error",
                                  "-d", scratch(), "-F", "c"]
    assert pg_restore["passfile"] == SOCKET + ":5432:*:postgres:rest0re\\:pw\n"
    assert all(call.get("passfile") == pg_restore["passfile"] for call in log.calls())
    assert result["cmd"] == [[[shutil.which("zstd"), "-q", "-d", "-c"], pg_restore["argv"]]]
    assert_no_secret(log, result)


@needs_zstd
def test_clean_replaces_existing_database_after_the_copy_is_complete(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path)
    pg.behave({"psql": {"count": "1\n"}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, clean=True)
    assert not outcome.failed, outcome.result
    assert outcome.result["replaced"] is True
    sql = log.sql()
    assert sql[-2:] == ['DROP DATABASE "app_copy" WITH (FORCE);\n',
                        'ALTER DATABASE "%s" RENAME TO "app_copy";\n' % scratch()]
    # the old database is dropped only after pg_restore finished
    order = [c["tool"] for c in log.calls()]
    assert order.index("pg_restore") < len(order) - 2


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
    assert log.sql() == ["SELECT count(*) FROM pg_database WHERE datname = 'app_copy';\n"]
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
    assert sql[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % scratch()
    assert not any("RENAME" in s for s in sql)


@needs_zstd
def test_parallel_restore_unpacks_into_work_dir(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path)
    work = tmp_path / "work"
    work.mkdir()
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, jobs=3, no_owner=True, work_dir=str(work))
    assert not outcome.failed, outcome.result
    (call,) = log.calls("pg_restore")
    argv = call["argv"]
    assert call["passfile"] == SOCKET + ":5432:*:postgres:rest0re\\:pw\n"
    assert argv[1:-1] == ["--no-password", "--exit-on-error", "-d", scratch(), "--no-owner", "--no-privileges",
                          "-j", "3", "-F", "c"]
    assert argv[-1].startswith(str(work)) and argv[-1].endswith("dump.pgc")
    assert pg.restored() == [FAKE_DUMP]
    assert os.listdir(str(work)) == []  # the unpacked copy is removed


def test_uncompressed_parallel_restore_copies_out_of_the_store(monkeypatch, tmp_path, pg, store_path):
    made = backup(monkeypatch, tmp_path, pg, store_path, compression="none")
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, jobs=2)
    assert not outcome.failed, outcome.result
    (call,) = log.calls("pg_restore")
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
    (call,) = log.calls("pg_restore")
    assert call["argv"][-3:-1] == ["-F", "d"]
    # the fake pg_restore concatenates the directory's files in name order
    assert pg.restored() == [b"rows\n" * 100 + b"TOC"]


def test_plain_format_replays_with_psql(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path, format="plain", compression="none")
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path)
    assert not outcome.failed, outcome.result
    replay = [c for c in log.calls("psql") if "-f" in c["argv"]]
    assert len(replay) == 1
    assert replay[0]["argv"][1:] == ["--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                     "-d", scratch(), "-f", "-"]
    assert replay[0]["stdin"] == FAKE_DUMP.decode("utf-8", "replace")


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
    assert outcome.result["cmd"][0][0] == [shutil.which("age"), "--decrypt", "-i", identity]

    outcome = restore(monkeypatch, tmp_path, pg, store_path, age_identity=secret, clean=True)
    assert not outcome.failed, outcome.result
    age_argv = outcome.result["cmd"][0][0]
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
    pg.behave({"psql": {"stderr": 'psql:<stdin>:2: ERROR:  role "app" already exists\n'}})
    log = Log(pg)
    outcome = restore(monkeypatch, tmp_path, pg, store_path, source="globals", target_db=None)
    assert not outcome.failed, outcome.result
    assert outcome.result["warnings_sql"] == ['psql:<stdin>:2: ERROR:  role "app" already exists']
    (replay,) = log.calls("psql")
    assert replay["argv"][1:] == ["--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", "postgres", "-f", "-"]
    assert replay["stdin"] == "-- fake pg_dumpall\nCREATE ROLE app;\n"


def test_globals_replay_fails_on_real_errors(monkeypatch, tmp_path, pg, store_path):
    backup(monkeypatch, tmp_path, pg, store_path, method="pg_dumpall", globals_only=True, db=None,
           compression="none")
    pg.behave({"psql": {"stderr": 'psql:<stdin>:2: ERROR:  role "app" already exists\n'
                                  "psql:<stdin>:3: ERROR:  syntax error at or near \"CREAT\"\n"}})
    outcome = restore(monkeypatch, tmp_path, pg, store_path, source="globals", target_db=None)
    assert outcome.failed
    assert outcome.result["msg"] == ('Replaying the pg_dumpall set hit 1 error(s), first: '
                                     'psql:<stdin>:3: ERROR:  syntax error at or near "CREAT"')


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


@pytest.mark.parametrize("target", ["app", "a" * 63, "x" * 100, "Mixed Case", ""])
def test_scratch_name(target):
    name = postgresql_restore.scratch_name(target)
    suffix = "_lifeboat_%d" % os.getpid()
    assert name.endswith(suffix)
    assert len(name) <= postgresql_restore.MAX_IDENT
    assert name == target[:63 - len(suffix)] + suffix
    assert name != target


@pytest.mark.parametrize(
    "line, ignorable",
    [
        ('psql:<stdin>:12: ERROR:  role "postgres" already exists', True),
        ('ERROR:  database "app" already exists', True),
        ('ERROR:  tablespace "fast" already exists', True),
        ('ERROR:  schema "public" already exists', True),
        ('ERROR:  relation "t" already exists', False),
        ('ERROR:  role "x" does not exist', False),
        ("ERROR:  syntax error at or near \"x\"", False),
    ],
)
def test_ignorable_sql_errors(line, ignorable):
    assert bool(postgresql_restore.IGNORABLE_SQL_ERROR.search(line)) is ignorable


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
    # The scratch database made for the restore is dropped again.
    assert log.sql()[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % scratch()
    assert os.listdir(str(tmp_path / "module-tmp")) == []
