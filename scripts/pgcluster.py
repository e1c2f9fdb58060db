#!/usr/bin/env python
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throwaway PostgreSQL 15 clusters for the lifeboat.backup demo, tests and benchmark.

Python 3 standard library only.  Must run as root (PostgreSQL programs are then
run as the ``postgres`` user) or directly as the user that owns the cluster.

Commands::

  pgcluster.py start    --dir DIR [--port N] [--user NAME] [--password-env VAR | --password-file F]
  pgcluster.py stop     --dir DIR [--remove]
  pgcluster.py status   --dir DIR                  # exit 0 running, 3 not running
  pgcluster.py sql      --dir DIR [--db NAME] [-f FILE]   # else SQL on stdin
  pgcluster.py sample   --dir DIR --db NAME [--mb N]
  pgcluster.py checksum --dir DIR --db NAME

Layout of DIR: ``data/`` (PGDATA), ``sock/`` (unix socket), ``log`` (server
log), ``cluster.json`` (connection facts, also printed by start/status).

``checksum`` prints one JSON line ``{"md5": "...", "tables": {"name": rows}}``
that is identical for two databases with the same user-table contents, whatever
cluster they live in.

Expected failures print one line on stderr and exit 1.  The work is done by
scripts/harness/pg.py; the sample data comes from scripts/harness/sql/.
"""

import argparse
import sys

from harness import pg
from harness.core import cli_main, print_facts


def cmd_start(args):
    password = pg.read_password(args.user, args.password_env, args.password_file)
    print_facts(pg.start(args.dir, port=args.port, user=args.user, password=password, bin_dir=args.bin_dir))
    return 0


def cmd_stop(args):
    pg.stop(args.dir, remove=args.remove, bin_dir=args.bin_dir)
    return 0


def cmd_status(args):
    running, facts = pg.status(args.dir, bin_dir=args.bin_dir)
    print_facts(facts)
    return 0 if running else 3


def cmd_sql(args):
    return pg.sql(args.dir, db=args.db, path=args.file, bin_dir=args.bin_dir)


def cmd_sample(args):
    print_facts(pg.sample(args.dir, args.db, mb=args.mb, bin_dir=args.bin_dir), indent=None)
    return 0


def cmd_checksum(args):
    print_facts(pg.checksum(args.dir, args.db, bin_dir=args.bin_dir), indent=None)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pgcluster.py",
        description="Manage throwaway PostgreSQL 15 clusters for lifeboat.backup tests.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", required=True, help="cluster directory (data/, sock/, log)")
    common.add_argument("--bin-dir", default=None,
                        help="PostgreSQL bin directory (default: $LIFEBOAT_PG_BIN_DIR or %s)"
                        % pg.DEFAULT_BIN_DIR)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("start", parents=[common], help="create (if needed) and start a cluster")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    p.add_argument("--user", default=None, help="create/update a LOGIN SUPERUSER role")
    p.add_argument("--password-env", default=pg.DEFAULT_PASSWORD_ENV, metavar="VAR",
                   help="environment variable holding the --user password (default %s)"
                   % pg.DEFAULT_PASSWORD_ENV)
    p.add_argument("--password-file", default=None, metavar="FILE",
                   help="file holding the --user password (instead of --password-env)")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", parents=[common], help="stop a cluster (fast shutdown)")
    p.add_argument("--remove", action="store_true", help="also delete DIR")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", parents=[common],
                       help="print cluster.json and running; exit 0 if running, else 3")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sql", parents=[common], help="run SQL as the postgres superuser")
    p.add_argument("--db", default="postgres", help="database (default postgres)")
    p.add_argument("-f", "--file", default=None, help="SQL file (default: stdin)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("sample", parents=[common], help="(re)create a database with sample data")
    p.add_argument("--db", required=True)
    p.add_argument("--mb", type=float, default=1.0,
                   help="approximate size of the sample data in MiB (default 1)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("checksum", parents=[common],
                       help="print {md5, tables: {name: rows}} over all user tables")
    p.add_argument("--db", required=True)
    p.set_defaults(func=cmd_checksum)
    return parser


def main(argv=None):
    return cli_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
