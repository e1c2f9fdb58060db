# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throwaway MariaDB servers (mariadbd) for the lifeboat.backup tests and benchmark.

Each server lives in its own directory DIR: ``my.cnf`` (its ``--defaults-file``),
``data/`` (datadir), ``run/`` (socket and pid file), ``mariadbd.log`` and
``server.json`` (connection facts). It runs as the ``mysql`` user when started by
root, listens on 127.0.0.1 and on its own socket, and has one password account
``lifeboat`` (all privileges, from 127.0.0.1 and localhost) beside root over the socket.
"""

import json
import os
import shutil
import socket

from harness.core import Fail, chown_to, free_port, port_answers, read_json, run, write_json
from harness.daemon import Daemon

HERE = os.path.dirname(os.path.abspath(__file__))
SQL_DIR = os.path.join(HERE, "sql", "mariadb")
USER = "mysql"


def layout(directory):
    directory = os.path.abspath(directory)
    return dict(dir=directory, cnf=os.path.join(directory, "my.cnf"), data=os.path.join(directory, "data"),
                run=os.path.join(directory, "run"), socket=os.path.join(directory, "run", "mysqld.sock"),
                json=os.path.join(directory, "server.json"))


def daemon(directory):
    return Daemon(layout(directory)["dir"], "mariadbd", layout(directory)["cnf"])


def write_cnf(paths, port, server_id):
    text = "\n".join([
        "[mariadbd]",
        "datadir=%s" % paths["data"],
        "socket=%s" % paths["socket"],
        "port=%d" % port,
        "bind-address=127.0.0.1",
        "pid-file=%s" % os.path.join(paths["run"], "mariadbd.pid"),
        "log-error=%s" % os.path.join(paths["dir"], "mariadbd.log"),
        "server-id=%d" % server_id,
        "log-bin=%s" % os.path.join(paths["data"], "binlog"),
        "innodb_buffer_pool_size=32M",
        "innodb_log_file_size=16M",
        "skip-name-resolve",
        "character-set-server=utf8mb4",
        "collation-server=utf8mb4_unicode_ci",
        "",
        "[client]",
        "socket=%s" % paths["socket"],
        "",
    ])
    with open(paths["cnf"], "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(paths["cnf"], 0o644)


def socket_answers(path):
    if not os.path.exists(path):
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def client(paths, sql=None, db=None, stdin=None, check=True, extra=()):
    """Run SQL as root over the server's socket; return stdout text."""
    argv = ["mariadb", "--defaults-file=%s" % paths["cnf"], "--user=root", "--batch", "--skip-column-names",
            "--default-character-set=utf8mb4"] + list(extra)
    if sql is not None:
        argv += ["-e", sql]
    if db:
        argv.append(db)
    proc = run(argv, stdin=stdin, check=check, what="mariadb client")
    return proc.stdout.decode("utf-8", "replace")


def start(directory, port=None, password=None, server_id=1):
    """Create (first time) and start the server in ``directory``; return its facts."""
    paths = layout(directory)
    dmn = daemon(directory)
    if dmn.running():
        facts = read_json(paths["json"])
        dmn.wait_ready(lambda: socket_answers(paths["socket"]))
        return facts
    os.makedirs(paths["run"], exist_ok=True)
    os.chmod(paths["dir"], 0o755)
    if port is None:
        port = free_port()
    write_cnf(paths, port, server_id)
    fresh = not os.path.isdir(os.path.join(paths["data"], "mysql"))
    for path in (paths["run"],):
        chown_to(path, USER)
    if fresh:
        os.makedirs(paths["data"], exist_ok=True)
        chown_to(paths["data"], USER)
        run(["mariadb-install-db", "--defaults-file=%s" % paths["cnf"], "--user=%s" % USER,
             "--auth-root-authentication-method=socket", "--skip-test-db"], what="mariadb-install-db")
    dmn.start(["mariadbd", "--defaults-file=%s" % paths["cnf"], "--user=%s" % USER],
              lambda: socket_answers(paths["socket"]) and port_answers(port), user=USER)
    if fresh and password is not None:
        sql = []
        for host in ("127.0.0.1", "localhost"):
            sql.append("CREATE OR REPLACE USER 'lifeboat'@'%s' IDENTIFIED BY '%s';" % (host, password.replace("\\", "\\\\").replace("'", "''")))
            sql.append("GRANT ALL PRIVILEGES ON *.* TO 'lifeboat'@'%s' WITH GRANT OPTION;" % host)
        client(paths, stdin=None, sql="".join(sql))
    facts = dict(dir=paths["dir"], host="127.0.0.1", port=port, socket=paths["socket"], user="lifeboat",
                 defaults_file=paths["cnf"], datadir=paths["data"], pid=dmn.pid())
    write_json(paths["json"], facts)
    return facts


def stop(directory, remove=False):
    paths = layout(directory)
    stopped = daemon(directory).stop(timeout=30)
    if remove and os.path.isdir(paths["dir"]):
        if not os.path.exists(paths["cnf"]):
            raise Fail("refusing to remove %s: it does not look like a mariadb harness directory" % paths["dir"])
        shutil.rmtree(paths["dir"])
    return stopped


def status(directory):
    paths = layout(directory)
    facts = read_json(paths["json"]) if os.path.exists(paths["json"]) else {}
    facts["running"] = daemon(directory).running()
    return facts


def sql_file(directory, db, path):
    paths = layout(directory)
    with open(path, "rb") as handle:
        client(paths, db=db, stdin=handle)


def checksum(directory, databases):
    """{db: {table: [rows, md5 of the ordered rows]}, plus views, routines and triggers by name}.

    Identical for two servers with the same contents of those databases.
    """
    paths = layout(directory)
    out = {}
    for db in databases:
        qdb = db.replace("'", "''")
        tables = client(paths, "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema='%s' "
                               "ORDER BY table_name" % qdb)
        entry = {"tables": {}, "views": [], "routines": [], "triggers": []}
        for line in tables.splitlines():
            name, kind = line.split("\t")
            if kind == "VIEW":
                entry["views"].append(name)
                continue
            qname = "`%s`.`%s`" % (db.replace("`", "``"), name.replace("`", "``"))
            cols = client(paths, "SELECT column_name FROM information_schema.columns WHERE table_schema='%s' AND "
                                 "table_name='%s' ORDER BY ordinal_position" % (qdb, name.replace("'", "''"))).split()
            concat = "CONCAT_WS('|', %s)" % ", ".join("IFNULL(HEX(`%s`),'~')" % c for c in cols)
            row = client(paths, "SET SESSION group_concat_max_len=1073741824; "
                                "SELECT COUNT(*), IFNULL(MD5(GROUP_CONCAT(MD5(%s) ORDER BY MD5(%s) SEPARATOR '')),'')"
                                " FROM %s" % (concat, concat, qname))
            count, digest = row.strip().split("\t")
            entry["tables"][name] = [int(count), digest]
        entry["routines"] = client(paths, "SELECT routine_name FROM information_schema.routines WHERE routine_schema='%s'"
                                          " ORDER BY 1" % qdb).split()
        entry["triggers"] = client(paths, "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema='%s'"
                                          " ORDER BY 1" % qdb).split()
        out[db] = entry
    return out


def describe(facts):
    return json.dumps(facts, indent=2, sort_keys=True)
