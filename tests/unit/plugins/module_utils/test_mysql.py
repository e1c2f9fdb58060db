# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Argv builders (mariabackup vs xtrabackup), option files and parsers of _mysql."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _mysql

DEFAULTS = ["--defaults-extra-file=/dev/fd/7"]


@pytest.mark.parametrize("tool, extractor, last, apply_log_only", [
    ("mariabackup", "mbstream", False, False),
    ("mariabackup", "mbstream", True, False),
    ("xtrabackup", "xbstream", False, True),
    ("xtrabackup", "xbstream", True, False),
])
def test_prepare_differences(tool, extractor, last, apply_log_only):
    argv = _mysql.prepare_argv(tool, "/usr/bin/" + tool, "/w/full", incremental_dir="/w/inc", last=last)
    assert argv[:4] == ["/usr/bin/" + tool, "--prepare", "--target-dir=/w/full", "--incremental-dir=/w/inc"]
    assert ("--apply-log-only" in argv) is apply_log_only
    assert _mysql.TOOLS[tool]["extractor"] == (extractor,)


def test_prepare_full_alone():
    assert _mysql.prepare_argv("xtrabackup", "xb", "/w/full", last=True) == ["xb", "--prepare", "--target-dir=/w/full"]
    assert _mysql.prepare_argv("xtrabackup", "xb", "/w/full", last=False)[-1] == "--apply-log-only"


@pytest.mark.parametrize("tool", ["mariabackup", "xtrabackup"])
def test_backup_argv(tool):
    argv = _mysql.backup_argv(tool, tool, DEFAULTS, "/ws/target", "/ws/lsn", incremental_lsn=44404, parallel=4)
    assert argv == [tool, DEFAULTS[0], "--backup", "--stream=xbstream", "--target-dir=/ws/target",
                    "--extra-lsndir=/ws/lsn", "--parallel=4", "--incremental-lsn=44404"]
    full = _mysql.backup_argv(tool, tool, DEFAULTS, "/t", "/l")
    assert not [a for a in full if a.startswith("--incremental") or a.startswith("--parallel")]


def test_extract_and_copy_back():
    assert _mysql.extract_argv("mariabackup", "/usr/bin/mbstream", "/w/x") == ["/usr/bin/mbstream", "-x", "-C", "/w/x"]
    assert _mysql.copy_back_argv("mariabackup", "mb", "/w/full", "/var/lib/mysql") == [
        "mb", "--no-defaults", "--copy-back", "--target-dir=/w/full", "--datadir=/var/lib/mysql"]
    assert _mysql.copy_back_argv("xtrabackup", "xb", "/w/f", "/d", "/etc/my.cnf")[1] == "--defaults-file=/etc/my.cnf"


def test_dump_argv_defaults_first_and_names_after_double_dash():
    argv = _mysql.dump_argv("mariadb-dump", DEFAULTS, ["shop", "-weird", "café"])
    assert argv[1] == DEFAULTS[0]
    assert argv[-4:] == ["--", "shop", "-weird", "café"]
    for flag in ("--single-transaction", "--routines", "--events", "--triggers", "--master-data=2", "--gtid"):
        assert flag in argv
    off = _mysql.dump_argv("d", DEFAULTS, ["a"], single_transaction=False, routines=False, events=False,
                           triggers=False, binlog=False)
    assert "--single-transaction" not in off and "--master-data=2" not in off
    assert {"--skip-routines", "--skip-events", "--skip-triggers"} <= set(off)


def test_client_argv_sandbox():
    assert "--sandbox" in _mysql.client_argv("mariadb", DEFAULTS)
    assert "--sandbox" not in _mysql.client_argv("mariadb", DEFAULTS, sandbox=False, execute="SELECT 1")


PASSWORD = 'p"a\\s s:w\'o#rd\n2'


def test_option_file_holds_the_password_escaped_and_argv_does_not():
    params = dict(login_user="backup", login_password=PASSWORD, login_host="db1", login_port=3307,
                  login_unix_socket=None, ca_cert="/ca.pem", client_cert=None, client_key=None,
                  check_hostname=True, connect_timeout=5, config_file=None)
    text = _mysql.client_options(params)
    assert 'password="p\\"a\\\\s s:w\'o#rd\\n2"' in text
    assert "host=\"db1\"" in text and "port=3307" in text and "protocol=tcp" in text
    assert "ssl-verify-server-cert" in text and "loose-connect-timeout=5" in text
    with _mysql.Credentials(params) as creds:
        assert PASSWORD not in " ".join(creds.defaults)
        assert creds.defaults[0].startswith("--defaults-extra-file=/dev/fd/")
        with open(creds.defaults[0].split("=", 1)[1]) as handle:
            assert handle.read() == text
        assert oct(os.fstat(creds.pass_fds[0]).st_mode & 0o777) == "0o600"


def test_socket_wins_over_host():
    text = _mysql.client_options(dict(login_unix_socket="/run/m.sock", login_host="db1", login_port=3306))
    assert "socket=\"/run/m.sock\"" in text and "host=" not in text


@pytest.mark.skipif(not shutil.which("my_print_defaults"), reason="needs my_print_defaults (mariadb-client)")
def test_option_file_round_trips_through_the_real_parser(tmp_path):
    path = tmp_path / "c.cnf"
    path.write_text(_mysql.client_options(dict(login_user="u", login_password=PASSWORD)))
    out = subprocess.run(["my_print_defaults", "--defaults-file=%s" % path, "client"],
                         capture_output=True, check=True).stdout.decode()
    assert "--password=%s" % PASSWORD in out


def test_parse_checkpoints():
    text = "backup_type = incremental\nfrom_lsn = 44404\nto_lsn = 60001\nlast_lsn = 60123\nrecover_binlog_info = 0\n"
    assert _mysql.parse_checkpoints(text) == {"backup_type": "incremental", "from_lsn": 44404, "to_lsn": 60001,
                                              "last_lsn": 60123, "recover_binlog_info": "0"}
    with pytest.raises(_mysql.MysqlError, match="lacks"):
        _mysql.parse_checkpoints("backup_type = full-backuped\n")
    with pytest.raises(_mysql.MysqlError, match="not a number"):
        _mysql.parse_checkpoints("backup_type = full\nto_lsn = 12x\n")


@pytest.mark.parametrize("text, expected", [
    ("binlog.000001\t295772\t0-1-19\n", {"binlog_file": "binlog.000001", "binlog_position": 295772, "gtid": "0-1-19"}),
    ("mysql-bin.000003\t157\n", {"binlog_file": "mysql-bin.000003", "binlog_position": 157}),
    ("mysql-bin.000003\t157\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n"
     "4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3\n",
     {"binlog_file": "mysql-bin.000003", "binlog_position": 157,
      "gtid": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3"}),
    ("", {}),
])
def test_parse_binlog_info(text, expected):
    assert _mysql.parse_binlog_info(text) == expected


def test_parse_binlog_info_garbage():
    with pytest.raises(_mysql.MysqlError):
        _mysql.parse_binlog_info("just-a-file\tnot-a-number\n")


def test_parse_info_and_dump_header():
    info = "tool_name = mariabackup\nbinlog_pos = filename 'binlog.000001', position '295772', GTID of the last change '0-1-19'\n"
    assert _mysql.parse_info_binlog(info) == {"binlog_file": "binlog.000001", "binlog_position": 295772, "gtid": "0-1-19"}
    head = ("-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n"
            "-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=4711;\n"
            "...\n-- SET GLOBAL gtid_slave_pos='0-1-42';\n")
    assert _mysql.parse_dump_header(head) == {"binlog_file": "binlog.000002", "binlog_position": 4711, "gtid": "0-1-42"}


@pytest.mark.parametrize("text, flavour, version, sandbox", [
    ("mariadb  Ver 15.1 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)", "mariadb", (10, 11, 19), True),
    ("mariadb  Ver 15.1 Distrib 10.11.7-MariaDB, for debian-linux-gnu", "mariadb", (10, 11, 7), False),
    ("mariadb from 11.4.3-MariaDB, client 15.2 for Linux", "mariadb", (11, 4, 3), True),
    ("mysql  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", "mysql", (8, 0, 36), None),
])
def test_parse_version_and_sandbox(text, flavour, version, sandbox):
    got_flavour, got_version = _mysql.parse_version(text)
    assert (got_flavour, got_version) == (flavour, version)
    if sandbox is not None:
        assert _mysql.sandbox_supported(got_version) is sandbox


def chunk(name, data=b"", kind=b"P"):
    raw = name.encode()
    head = _mysql.XB_MAGIC + b"\0" + kind + struct.pack("<I", len(raw)) + raw
    if kind == b"E":
        return head
    return head + struct.pack("<QQI", len(data), 0, 0) + data


def test_check_xbstream_accepts_plain_names(tmp_path):
    path = tmp_path / "s.xb"
    path.write_bytes(chunk("ibdata1", b"x" * 10) + chunk("ibdata1", kind=b"E") + chunk("shop/t.ibd", b"y")
                     + chunk("shop/t.ibd", kind=b"E"))
    assert _mysql.check_xbstream(str(path)) == ["ibdata1", "shop/t.ibd"]


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", ""])
def test_check_xbstream_refuses_unsafe_names(tmp_path, name):
    path = tmp_path / "s.xb"
    path.write_bytes(chunk("ok", b"1") + chunk(name, b"evil"))
    with pytest.raises(_mysql.StreamError):
        _mysql.check_xbstream(str(path))


def test_check_xbstream_refuses_truncation_and_garbage(tmp_path):
    path = tmp_path / "s.xb"
    path.write_bytes(chunk("ok", b"123456")[:-3])
    with pytest.raises(_mysql.StreamError, match="ends inside"):
        _mysql.check_xbstream(str(path))
    path.write_bytes(b"NOTXBSTREAM")
    with pytest.raises(_mysql.StreamError, match="not an xbstream"):
        _mysql.check_xbstream(str(path))


@pytest.mark.skipif(not shutil.which("mbstream"), reason="needs mbstream (mariadb-backup)")
def test_check_xbstream_reads_what_mbstream_writes(tmp_path):
    src = tmp_path / "src"
    (src / "db").mkdir(parents=True)
    (src / "db" / "t.ibd").write_bytes(os.urandom(300000))
    (src / "top").write_bytes(b"hello")
    out = subprocess.run(["mbstream", "-c", "db/t.ibd", "top"], cwd=str(src), capture_output=True, check=True).stdout
    path = tmp_path / "s.xb"
    path.write_bytes(out)
    assert _mysql.check_xbstream(str(path)) == ["db/t.ibd", "top"]


def test_check_datadir(tmp_path):
    assert _mysql.check_datadir(str(tmp_path / "missing"), False) == []
    assert _mysql.check_datadir(str(tmp_path), False) == []
    (tmp_path / "ibdata1").write_bytes(b"x")
    with pytest.raises(_mysql.MysqlError, match="not empty"):
        _mysql.check_datadir(str(tmp_path), False)
    assert _mysql.check_datadir(str(tmp_path), True) == ["ibdata1"]
    aside = _mysql.move_aside(str(tmp_path), ["ibdata1"], "t1")
    assert os.listdir(aside) == ["ibdata1"] and os.listdir(str(tmp_path)) == []


def test_a_process_working_in_the_datadir_is_a_running_server(tmp_path):
    proc = subprocess.Popen(["sleep", "30"], cwd=str(tmp_path))
    try:
        with pytest.raises(_mysql.MysqlError, match="running on datadir"):
            _mysql.check_datadir(str(tmp_path), True)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("stderr, expected", [
    ("ERROR 1045 (28000): Access denied for user 'u'@'localhost' (using password: YES)", "access denied"),
    ("mysqldump: Got error: 1049: \"Unknown database 'nope'\" when selecting the database", "database nope does not"),
    ("ERROR 2002 (HY000): Can't connect to local server through socket '/x' (2)", "could not connect"),
    ("ERROR at line 3: Not allowed in the sandbox mode", "sandbox"),
])
def test_explain(stderr, expected):
    message = _mysql.explain(stderr, {"login_user": "u", "login_host": "db1"}, "mariadb")
    assert expected in message and "\n" not in message
