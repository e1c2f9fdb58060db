# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""argv builders and log parsers of _mongodb, checked against the fake of the Database Tools 100.x contract."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _mongodb
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
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


# ------------------------------------------------------------------ the archive format and the oplog time reached

sys.path.insert(0, os.path.realpath(FAKES))
import fakemongo  # noqa: E402  pylint: disable=wrong-import-position,import-error

try:
    import hypothesis
    hypothesis.configuration.set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "lifeboat-unit-hypothesis"))
    from hypothesis import given, settings, strategies as st
except ImportError:  # the deterministic mutations below still run
    hypothesis = None

START = [1764547200, 1]


def make_archive(docs=250, oplog=(), with_oplog=True, collections=("a", "b")):
    """An archive as the fake mongodump writes it: ``collections`` of app, then the oplog entries."""
    out = io.BytesIO()
    namespaces = [("app", c) for c in collections] + ([fakemongo.OPLOG_NS] if with_oplog else [])
    writer = fakemongo.ArchiveWriter(out, namespaces)
    for coll in collections:
        batch = [{"_id": n, "name": "doc %d" % n, "nested": {"list": [n, 1.5, None, True], "big": 2 ** 40}}
                 for n in range(docs)]
        for first in range(0, len(batch), fakemongo.SEGMENT):
            writer.segment("app", coll, batch[first:first + fakemongo.SEGMENT])
        writer.eof("app", coll)
    if with_oplog:
        if oplog:
            writer.segment("", "oplog", list(oplog))
        writer.eof("", "oplog")
    return out.getvalue()


def entry(t, i, **extra):
    doc = {"ts": fakemongo.Timestamp(t, i), "t": 1, "v": 2, "op": "i", "ns": "app.a", "o": {"_id": "w%d" % t}}
    doc.update(extra)
    return doc


def test_read_archive_walks_what_the_fake_writes():
    oplog = [entry(START[0] + 1, 1), entry(START[0] + 1, 2), entry(START[0] + 5, 3)]
    result = _mongodb.read_archive(io.BytesIO(make_archive(oplog=oplog)))
    assert result == {"namespaces": 3, "documents": 500, "oplog_entries": 3, "oplog_last": (START[0] + 5, 3)}


def test_read_archive_finds_ts_anywhere_in_an_entry():
    # A retryable write's entry puts lsid and txnNumber first; every BSON type the walker skips comes before ts.
    late = {"lsid": {"id": "x"}, "txnNumber": 2 ** 40, "stmtId": 0, "f": 1.5, "b": True, "n": None,
            "arr": [1, "two"], "ts": fakemongo.Timestamp(START[0] + 9, 7), "after": "tail"}
    result = _mongodb.read_archive(io.BytesIO(make_archive(docs=3, oplog=[late])))
    assert result["oplog_last"] == (START[0] + 9, 7)


def test_read_archive_without_oplog_entries():
    assert _mongodb.read_archive(io.BytesIO(make_archive(docs=2)))["oplog_last"] is None
    assert _mongodb.read_archive(io.BytesIO(make_archive(docs=2, with_oplog=False)))["oplog_entries"] == 0


def test_fake_round_trips_its_archive_and_checks_the_crc(tmp_path):
    data = make_archive(docs=120, oplog=[entry(START[0] + 1, 1)])
    reader = fakemongo.ArchiveReader(io.BytesIO(data))
    header, metadata = reader.prelude()
    assert header["version"] == "0.1" and [(m["db"], m["collection"]) for m in metadata][-1] == ("", "oplog")
    docs = [item for item in reader.body() if item[0] == "doc" and item[1] == "app"]
    assert len(docs) == 240 and docs[0][4]["nested"]["big"] == 2 ** 40
    assert data[:4] == b"\x6d\xe2\x99\x81"
    assert fakemongo.crc64(0, b"123456789") == 0x995DC9BBDF1939FA  # CRC-64/XZ (Go's crc64.ECMA) check value


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"LIFEBOAT" + d[8:], "magic number"),
    (lambda d: d[:4], "ends inside the archive header"),
    (lambda d: d[:4] + b"\xff\xff\xff\xff" + d[8:], "no header document"),
    (lambda d: d[:4] + b"\x00\x00\x00\x7f" + d[8:], "impossible BSON length"),
    (lambda d: d[:-1], "ends inside"),
    (lambda d: d + b"\xff\xff\xff\xff", "terminator stands where a namespace header belongs"),
    (lambda d: d + b"\x05\x00\x00\x00\x00", "names no db and collection"),
])
def test_read_archive_refuses_broken_streams(mutate, message):
    with pytest.raises(_mongodb.ArchiveFormatError) as info:
        _mongodb.read_archive(io.BytesIO(mutate(make_archive(docs=3, oplog=[entry(START[0] + 1, 1)]))))
    assert message in str(info.value)


def test_read_archive_refuses_an_entry_without_ts():
    data = make_archive(docs=1, oplog=[{"op": "n", "o": {"msg": "no ts"}}])
    with pytest.raises(_mongodb.ArchiveFormatError) as info:
        _mongodb.read_archive(io.BytesIO(data))
    assert "no ts Timestamp" in str(info.value)


def check_mutation(data, full):
    """A mutated archive is either refused with ArchiveFormatError or read; never another error."""
    try:
        result = _mongodb.read_archive(io.BytesIO(data))
    except _mongodb.ArchiveFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert result["oplog_entries"] <= full["oplog_entries"] + 1


SMALL = make_archive(docs=3, oplog=[entry(START[0] + 1, 1), entry(START[0] + 2, 1)], collections=("a",))


def test_read_archive_survives_every_truncation_and_deterministic_garbage():
    full = _mongodb.read_archive(io.BytesIO(SMALL))
    for cut in range(len(SMALL)):
        check_mutation(SMALL[:cut], full)
    generator = random.Random(12)
    for dummy in range(400):
        data = bytearray(SMALL)
        for dummy2 in range(generator.randint(1, 4)):
            data[generator.randrange(len(data))] = generator.randrange(256)
        check_mutation(bytes(data), full)


if hypothesis is not None:
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), max_size=6),
           st.integers(0, len(SMALL)), st.binary(max_size=40))
    def test_read_archive_property_hostile_streams(flips, cut, tail):
        data = bytearray(SMALL)
        for offset, value in flips:
            data[offset] = value
        check_mutation(bytes(data[:cut]) + tail, _mongodb.read_archive(io.BytesIO(SMALL)))


class Sink(object):
    def __init__(self):
        self.data = io.BytesIO()

    def write(self, block):
        self.data.write(bytes(block))


def run_tap(producer):
    tap = _mongodb.ArchiveTap()
    stages = [producer, _pipeline.Stage("tee", ["tee", tap.path], pass_fds=(tap.write_fd,))]
    sink = Sink()
    try:
        _pipeline.run_to_sink(stages, sink)
    finally:
        tap.close()
    return tap, sink.data.getvalue()


def test_tap_reads_the_oplog_time_while_the_archive_streams(server):
    env, password, tmp_path = server
    subprocess.check_call([sys.executable, HARNESS, "set", "--root", env["LIFEBOAT_FAKE_MONGO_ROOT"], "--port",
                           "27018", "--host", "db1", "--json",
                           '{"replica_set": "rs0", "oplog_during_dump": [{"op": "i", "ns": "app.users", '
                           '"o": {"_id": "late"}}, {"op": "i", "ns": "app.users", "o": {"_id": "later"}}]}'])
    config = tmp_path / "config.yaml"
    config.write_text(_mongodb.config_text(dict(PARAMS, login_password=password)))
    params = dict(PARAMS, login_password=password, tls=False, auth_mechanism=None, replica_set="rs0")
    argv = _mongodb.mongodump_argv(DUMP, _mongodb.connection_args(params, str(config)), oplog=True, verbose=True)
    os.environ["LIFEBOAT_FAKE_MONGO_ROOT"] = env["LIFEBOAT_FAKE_MONGO_ROOT"]
    try:
        tap, data = run_tap(_pipeline.Stage("mongodump", argv))
    finally:
        del os.environ["LIFEBOAT_FAKE_MONGO_ROOT"]
    assert tap.error is None
    assert tap.result["oplog_last"] == (START[0] + 2, 1)
    assert _mongodb.read_archive(io.BytesIO(data)) == tap.result  # the store got the same bytes
    position, warning = _mongodb.reached_position({"t": START[0], "i": START[1]}, tap.result, tap.error)
    assert warning is None
    assert position["oplog_reached_t"] == START[0] + 2 and position["oplog_reached_from"] == "archive"
    assert position["oplog_reached_time"] > position["oplog_start_time"]


def test_tap_on_a_malformed_stream_never_fails_the_pipeline():
    # 3 MiB of garbage: the reader gives up at once but keeps draining, so tee is neither blocked nor killed.
    tap, data = run_tap(_pipeline.Stage("head", ["head", "-c", str(3 * 1024 * 1024), "/dev/urandom"]))
    assert len(data) == 3 * 1024 * 1024
    assert tap.result is None and "magic number" in tap.error
    position, warning = _mongodb.reached_position({"t": START[0], "i": START[1]}, tap.result, tap.error)
    assert position["oplog_reached_t"] == START[0] and position["oplog_reached_from"] == "start"
    assert "could not be read" in warning and "magic number" in warning


@pytest.mark.parametrize("tapped, reached, source", [
    ({"oplog_last": None}, (START[0], 1), "start"),
    ({"oplog_last": (START[0] + 3, 2)}, (START[0] + 3, 2), "archive"),
    ({"oplog_last": (START[0] - 3, 2)}, (START[0], 1), "start"),  # an entry before the start is not a reach
])
def test_reached_position(tapped, reached, source):
    position, warning = _mongodb.reached_position({"t": START[0], "i": 1}, tapped, None)
    assert (position["oplog_reached_t"], position["oplog_reached_i"]) == reached
    assert position["oplog_reached_from"] == source and warning is None


# ------------------------------------------------------------------ flag combinations the real tools refuse

@pytest.mark.parametrize("tool, argv, message", [
    (DUMP, ["--oplog", "--db=app", "--archive"], "Failed: bad option: --oplog mode only supported on full dumps"),
    (DUMP, ["--oplog", "--collection=c", "--archive"],
     "Failed: bad option: cannot dump a collection without a specified database"),
    (DUMP, ["--db=app", "--collection=c", "--excludeCollection=x", "--archive"],
     "--collection is not allowed when --excludeCollection is specified"),
    (DUMP, ["--out=/tmp/x", "--archive"], "--out not allowed when --archive is specified"),
    (RESTORE, ["--archive", "--oplogReplay", "--nsInclude=app.*"], "cannot use --oplogReplay with includes specified"),
    (RESTORE, ["--archive", "--oplogReplay", "--nsExclude=app.x"], "cannot use --oplogReplay with excludes specified"),
    (RESTORE, ["--archive", "--oplogReplay", "--nsFrom=app.*", "--nsTo=b.*"],
     "cannot use --oplogReplay with namespace renames specified"),
])
def test_fake_refuses_what_the_tools_refuse(server, tool, argv, message):
    env, password, tmp_path = server
    config = tmp_path / "config.yaml"
    config.write_text(_mongodb.config_text(dict(PARAMS, login_password=password)))
    conn = _mongodb.connection_args(dict(PARAMS, login_password=password, tls=False, auth_mechanism=None),
                                    str(config))
    rc, out, err = run([tool] + conn + argv, env, data=b"")
    assert rc == 1 and message in err, err


def test_fake_restore_refuses_a_bad_crc_and_a_missing_eof(server):
    env, password, tmp_path = server
    config = tmp_path / "config.yaml"
    config.write_text(_mongodb.config_text(dict(PARAMS, login_password=password)))
    conn = _mongodb.connection_args(dict(PARAMS, login_password=password, tls=False, auth_mechanism=None),
                                    str(config))
    good = make_archive(docs=2, with_oplog=False, collections=("a",))
    eof = fakemongo.encode({"db": "app", "collection": "a", "EOF": True, "CRC": fakemongo.Int64(0)}) + b"\xff" * 4
    # Like mongorestore, the fake finds these at the end, after it has written the documents: each run its own target.
    for target, data, expected in (("x1", good[:-len(eof)] + eof, "CRC mismatch for namespace app.a"),
                                   ("x2", good[:-len(eof)], "no EOF for namespace app.a"),
                                   ("x3", good, None)):
        argv = _mongodb.mongorestore_argv(RESTORE, conn, ns_from=["app.*"], ns_to=[target + ".*"])
        rc, out, err = run(argv, env, data=data)
        if expected:
            assert rc == 1 and expected in err, err
        else:
            assert rc == 0 and _mongodb.parse_restore_log(err)[0] == 2, err


class FakeModule(object):
    def __init__(self, **params):
        self.params = dict(ns_from=[], ns_to=[], ns_include=[], oplog_replay=None, drop=False)
        self.params.update(params)
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


@pytest.mark.parametrize("params, has_oplog, expected", [
    ({}, True, True),
    ({}, False, False),
    ({"oplog_replay": False}, True, False),
    ({"ns_from": ["a.*"], "ns_to": ["b.*"]}, True, False),
    ({"ns_include": ["a.*"]}, True, False),
    ({"oplog_replay": True, "ns_from": ["a.*"], "ns_to": ["b.*"]}, True, "refused"),
    ({"oplog_replay": True, "ns_include": ["a.*"]}, False, False),
])
def test_restore_replays_the_oplog_only_where_mongorestore_can(params, has_oplog, expected):
    engine = _mongodb.RestoreEngine(FakeModule(**params), "mongorestore", "mongodump", None)
    member = {"set_id": "S", "position": {"oplog": has_oplog}}
    if expected == "refused":
        with pytest.raises(_mongodb.MongoError) as info:
            engine.replay(member)
        assert "oplog_replay cannot be used with ns_from" in str(info.value)
    else:
        assert engine.replay(member) is expected
