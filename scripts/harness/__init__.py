# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared pieces of the throwaway servers that the tests, the demo and the benchmark start.

Python 3 standard library only, so that an Ansible integration target can run
an entry script with ``{{ ansible_python_interpreter }} <path>``. The entry
scripts live one level up, in scripts/, and import this package from their own
directory (Python puts a script's directory first on ``sys.path``); the bench
puts scripts/ on ``sys.path`` itself.

Modules:

``core``
    one-line errors (``Fail``) and the command-line wrapper that prints them,
    JSON facts on stdout, a free port on 127.0.0.1, running a program as
    another OS user, per-directory locks, atomic JSON files, log tails.
``daemon``
    ``Daemon``: a server started in the background with a pidfile, waited on
    until it answers, and stopped by that pidfile (never by name).
``pg``
    PostgreSQL 15 clusters (initdb, pg_ctl, roles, sample data, checksums);
    ``scripts/pgcluster.py`` is its command line. The sample-data SQL is in
    ``sql/`` as psql scripts.

Each further server gets its own module here and a thin entry script in
scripts/: the moto S3 server (``moto``, command line ``scripts/motoserver.py``)
next, then MariaDB and a private sshd. Such a module builds on ``Daemon``
(pidfile, wait until ready, stop by pid) and ``core`` (``free_port``,
``print_facts``, ``cli_main``), and its entry script keeps the same shape as
pgcluster.py: ``start`` prints the connection facts as JSON, ``stop``
and ``status`` take the same ``--dir``.
"""
