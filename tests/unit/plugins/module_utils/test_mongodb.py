# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""argv builders and log parsers of _mongodb, checked against the fake of the Database Tools 100.x contract."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _mongodb
from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError

FAKES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fakes", "mongodb")
DUMP = os.path.join(FAKES, "mongodump")
RESTORE = os.path.join(FAKES, "mongorestore")
HARNESS = os.path.join(FAKES, "fakemongo.py")
# Every flag of mongodump 100.x the builders may emit, with the form they use.
DUMP_FLAGS = {"--config", "--host", "--port", "--username", "--authenticationDatabase", "--authenticationMechanism",
              "--ssl", "--sslCAFile", "--sslPEMKeyFile", "--sslCRLFile", "--tlsInsecure", "--db", "--collection",
              "--excludeCollection", "--query", "--readPreference", "--oplog", "-v", "--archive"}
RESTORE_FLAGS = {"--config", "--host", "--port", "--username", "--authenticationDatabase", "--authenticationMechanism",
                 "--ssl", "--sslCAFile", "--sslPEMKeyFile", "--sslCRLFile", "--tlsInsecure", "--archive",
                 "--nsInclude", "--nsExclude", "--nsFrom", "--nsTo", "--drop", "--oplogReplay", "--stopOnError",
                 "--dryRun"}

PARAMS = dict(login_host="db1", login_port=27018, login_user="backup", login_password="pw", login_database="admin",
              auth_mechanism="SCRAM-SHA-256", replica_set=None, uri=None, tls=True, tls_ca_file="/ca.pem",
              tls_certificate_key_file="/client.pem", tls_certificate_key_file_password="kp", tls_crl_file="/crl.pem",
              tls_allow_invalid_certificates=True)


def flags(argv):
    return set(a.split("=", 1)[0] for a in argv[1:])


def test_connection_args_never_hold_a_secret():
    args = _mongodb.connection_args(PARAMS, "/dev/fd/5")
    assert args == ["--config=/dev/fd/5", "--host=db1", "--port=27018", "--username=backup",
                    "--authenticationDatabase=admin", "--authenticationMechanism=SCRAM-SHA-256", "--ssl",
                    "--sslCAFile=/ca.pem", "--sslPEMKeyFile=/client.pem", "--sslCRLFile=/crl.pem", "--tlsInsecure"]
    assert not any("pw" == a.split("=")[-1] or "kp" in a for a in args)


def test_uri_goes_to_the_config_file_not_argv():
    params = dict(PARAMS, uri="mongodb://u:secret@h/?replicaSet=rs0", login_user=None, login_password=None,
                  tls=False, tls_certificate_key_file_password=None)
    args = _mongodb.connection_args(params, "/dev/fd/5")
    assert args == ["--config=/dev/fd/5"]
    assert _mongodb.config_text(params) == 'uri: "mongodb://u:secret@h/?replicaSet=rs0"\n'


def test_replica_set_host_form():
    args = _mongodb.connection_args(dict(PARAMS, replica_set="rs0", tls=False))
    assert args[:1] == ["--host=rs0/db1:27018"]
    assert not any(a.startswith("--port") for a in args)


def test_dump_argv_uses_only_mongodump_flags():
    argv = _mongodb.mongodump_argv("mongodump", _mongodb.connection_args(PARAMS, "/c"), db="app", collection="c",
                                   exclude_collections=["x"], read_preference="secondary", oplog=False,
                                   query=_mongodb.EMPTY_QUERY, verbose=True)
    assert flags(argv) <= DUMP_FLAGS
    assert argv[-1] == "--archive"


def test_restore_argv_uses_only_mongorestore_flags():
    argv = _mongodb.mongorestore_argv("mongorestore", _mongodb.connection_args(PARAMS, "/c"), drop=True,
                                      oplog_replay=True, ns_from=["a.*"], ns_to=["b.*"], ns_include=["a.*"],
                                      dry_run=True)
    assert flags(argv) <= RESTORE_FLAGS
    assert argv.index("--nsFrom=a.*") + 1 == argv.index("--nsTo=b.*")


@pytest.mark.parametrize("databases, collections, exclude, oplog, replica_set, runs, use_oplog", [
    ([], [], [], None, "rs0", [("dump", None, None)], True),
    ([], [], [], None, None, [("dump", None, None)], False),
    ([], [], [], False, "rs0", [("dump", None, None)], False),
    (["a", "b"], [], [], None, "rs0", [("dump-000", "a", None), ("dump-001", "b", None)], False),
    (["a"], ["x", "y"], [], None, None, [("dump-000", "a", "x"), ("dump-001", "a", "y")], False),
])
def test_dump_plan(databases, collections, exclude, oplog, replica_set, runs, use_oplog):
    assert _mongodb.dump_plan(databases, collections, exclude, oplog, replica_set) == (runs, use_oplog)


@pytest.mark.parametrize("databases, collections, exclude, oplog, message", [
    (["a"], [], [], True, "full dumps only"),
    (["a", "b"], ["x"], [], None, "exactly one database"),
    ([], [], ["x"], None, "needs databases"),
    (["a.b"], [], [], None, "forbids"),
    (["a", "a"], [], [], None, "more than once"),
])
def test_dump_plan_refuses(databases, collections, exclude, oplog, message):
    with pytest.raises(LifeboatError) as info:
        _mongodb.dump_plan(databases, collections, exclude, oplog, "rs0")
    assert message in str(info.value)


def test_parse_dump_log():
    log = ("2026-01-01T00:00:00.000+0000\tchecking if oplog entry {1700000000 7} still exists\n"
           "2026-01-01T00:00:00.000+0000\twriting `app.a b` to archive on stdout\n"
           "2026-01-01T00:00:00.000+0000\tdone dumping `app.a b` (1 document)\n"
           "2026-01-01T00:00:00.000+0000\tdone dumping \"app.x`y\" (12 documents)\n"
           "2026-01-01T00:00:00.000+0000\tdone dumping app.old (3 documents)\n"
           "2026-01-01T00:00:00.000+0000\t\tdumped 5 oplog entries\n")
    parsed = _mongodb.parse_dump_log(log)
    assert parsed["namespaces"] == [{"namespace": "app.a b", "documents": 1},
                                    {"namespace": "app.x`y", "documents": 12},
                                    {"namespace": "app.old", "documents": 3}]
    assert parsed["oplog_start"] == {"t": 1700000000, "i": 7}
    assert parsed["oplog_entries"] == 5


def test_probe_and_restore_log_parsers():
    assert _mongodb.probe_says_exists("x\tnamespace with DB `a` and collection `b c` does not exist\n") is False
    assert _mongodb.probe_says_exists("x\tdone dumping `a.b` (0 documents)\n") is True
    assert _mongodb.probe_says_exists("") is None
    assert _mongodb.parse_restore_log("x\tapplied 2 oplog entries\nx\t10 document(s) restored successfully. "
                                      "1 document(s) failed to restore.\n") == (10, 1, 2)
    assert _mongodb.parse_version("mongodump version: 100.9.4\ngit version: abc\n") == "100.9.4"


@pytest.mark.parametrize("sources, targets, namespace, expected", [
    (["app.*"], ["copy.*"], "app.users", "copy.users"),
    (["app.*"], ["copy.*"], "other.users", "other.users"),
    (["data.$p$_$c$"], ["$c$.$p$"], "data.x_y", "y.x"),
    (["a.b*c"], ["z.*"], "a.b.x.c", "z..x."),
    (["a.\\*"], ["b.star"], "a.*", "b.star"),
])
def test_renamer(sources, targets, namespace, expected):
    assert _mongodb.Renamer(sources, targets).rename(namespace) == expected


def test_renamer_refuses_unknown_variable():
    with pytest.raises(LifeboatError):
        _mongodb.Renamer(["a.$x$"], ["b.$y$"])


@pytest.mark.parametrize("stderr, expected", [
    ("t\tFailed: can't create session: failed to connect to mongodb://h:1/: connection() error occurred during "
     "connection handshake: auth error: sasl conversation error: unable to authenticate using mechanism "
     "\"SCRAM-SHA-256\": (AuthenticationFailed) Authentication failed.", "authentication failed"),
    ("t\tFailed: can't create session: failed to connect to mongodb://h:1/: server selection error: x", "could not reach"),
    ("t\terror parsing command line options: unknown option `nope`\nt\ttry 'mongodump --help' for more information",
     "rejected an option"),
])
def test_explain_error(stderr, expected):
    message = _mongodb.explain_error(stderr, PARAMS, "mongodump")
    assert expected in message
    assert "\n" not in message


# ------------------------------------------------------------------ the argv against the fake's contract

@pytest.fixture
def server(tmp_path):
    root = str(tmp_path / "servers")
    password = 'p:"w\' #\\é\u2028\U0001f600\n'.rstrip("\n") + "x"
    (tmp_path / "pw").write_text(password)
    subprocess.check_call([sys.executable, HARNESS, "init", "--root", root, "--port", "27018", "--host", "db1",
                           "--user", "backup", "--password-file", str(tmp_path / "pw")])
    subprocess.check_call([sys.executable, HARNESS, "seed", "--root", root, "--port", "27018", "--host", "db1",
                           "--db", "app", "--coll", "users", "--count", "5"])
    env = dict(os.environ, LIFEBOAT_FAKE_MONGO_ROOT=root)
    return env, password, tmp_path


def run(argv, env, data=None):
    proc = subprocess.run([sys.executable] + argv, input=data, env=env, capture_output=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr.decode()


def test_config_yaml_carries_any_password(server):
    env, password, tmp_path = server
    params = dict(PARAMS, login_password=password, tls=False, auth_mechanism=None,
                  tls_certificate_key_file_password=None)
    config = tmp_path / "config.yaml"
    config.write_text(_mongodb.config_text(params))
    argv = _mongodb.mongodump_argv(DUMP, _mongodb.connection_args(params, str(config)), db="app")
    rc, out, err = run(argv, env)
    assert rc == 0, err
    assert [n["namespace"] for n in _mongodb.parse_dump_log(err)["namespaces"]] == ["app.users"]
    config.write_text(_mongodb.config_text(dict(params, login_password=password + "!")))
    rc, out, err = run(argv, env)
    assert rc == 1
    assert "authentication failed" in _mongodb.explain_error(err, params, "mongodump")


def test_fake_rejects_unknown_flags_like_the_tools(server):
    env = server[0]
    rc, out, err = run([DUMP, "--gzipp"], env)
    assert rc == 1
    assert "error parsing command line options: unknown option `gzipp`" in err
    assert "try 'mongodump --help' for more information" in err
    rc, out, err = run([RESTORE, "--oplog"], env)  # a mongodump flag, not a mongorestore one
    assert rc == 1 and "unknown option `oplog`" in err


def test_probe_argv_reports_existence(server):
    env, password, tmp_path = server
    params = dict(PARAMS, login_password=password, tls=False, auth_mechanism=None,
                  tls_certificate_key_file_password=None)
    config = tmp_path / "config.yaml"
    config.write_text(_mongodb.config_text(params))
    conn = _mongodb.connection_args(params, str(config))
    for collection, expected in (("users", True), ("nope", False)):
        argv = _mongodb.mongodump_argv(DUMP, conn, db="app", collection=collection, query=_mongodb.EMPTY_QUERY,
                                       archive=os.devnull)
        rc, out, err = run(argv, env)
        assert rc == 0, err
        assert _mongodb.probe_says_exists(err) is expected
