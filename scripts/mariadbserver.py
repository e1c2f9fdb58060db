#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throwaway MariaDB servers for the lifeboat.backup tests and benchmark.

Python 3 standard library only. Run as root (mariadbd then runs as ``mysql``).

Commands::

  mariadbserver.py start    --dir DIR [--port N] [--server-id N] [--password-file F]
  mariadbserver.py stop     --dir DIR [--remove]
  mariadbserver.py status   --dir DIR                 # exit 0 running, 3 not running
  mariadbserver.py sql      --dir DIR [--db NAME] [-f FILE]   # else SQL on stdin; root over the socket
  mariadbserver.py checksum --dir DIR --db NAME [--db NAME ...]

``checksum`` prints one JSON line, identical for two servers whose databases
hold the same rows, views, routines and triggers.

Expected failures print one line on stderr and exit 1. The work is done by
scripts/harness/mariadb.py; sample data is in scripts/harness/sql/mariadb/.
"""

import argparse
import json
import sys

from harness import mariadb
from harness.core import Fail, cli_main, print_facts


def cmd_start(args):
    password = None
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as handle:
            password = handle.read().rstrip("\n")
    print_facts(mariadb.start(args.dir, port=args.port, password=password, server_id=args.server_id))
    return 0


def cmd_stop(args):
    mariadb.stop(args.dir, remove=args.remove)
    return 0


def cmd_status(args):
    facts = mariadb.status(args.dir)
    print_facts(facts)
    return 0 if facts["running"] else 3


def cmd_sql(args):
    paths = mariadb.layout(args.dir)
    if args.file:
        with open(args.file, "rb") as handle:
            sys.stdout.write(mariadb.client(paths, db=args.db, stdin=handle))
    else:
        sys.stdout.write(mariadb.client(paths, db=args.db, stdin=sys.stdin.buffer))
    return 0


def cmd_checksum(args):
    if not args.db:
        raise Fail("name at least one --db")
    print(json.dumps(mariadb.checksum(args.dir, args.db), sort_keys=True, ensure_ascii=False))
    return 0


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", required=True, help="server directory (my.cnf, data/, run/, server.json)")
    parser = argparse.ArgumentParser(prog="mariadbserver.py", description="Throwaway mariadbd for lifeboat.backup tests.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("start", parents=[common], help="create (first time) and start; print facts as JSON")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--server-id", type=int, default=1)
    p.add_argument("--password-file", help="password of the 'lifeboat' account (set at creation)")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", parents=[common], help="stop the server")
    p.add_argument("--remove", action="store_true", help="also delete DIR")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("status", parents=[common], help="facts and running; exit 0 if running, else 3")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("sql", parents=[common], help="run SQL as root over the socket")
    p.add_argument("--db")
    p.add_argument("-f", "--file")
    p.set_defaults(func=cmd_sql)
    p = sub.add_parser("checksum", parents=[common], help="rows, views, routines and triggers as one JSON line")
    p.add_argument("--db", action="append", default=[])
    p.set_defaults(func=cmd_checksum)
    return parser


if __name__ == "__main__":
    sys.exit(cli_main(build_parser()))
