# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # PostgreSQL connection options, shared by every PostgreSQL module.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - When neither O(login_host) nor O(login_unix_socket) is set, libpq's default socket is used.
    type: str
  login_port:
    description:
      - TCP port of the server, also the suffix of its Unix socket file.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - Role to connect as.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user).
      - It reaches libpq as a passfile (C(PGPASSFILE)) that exists only in memory (a C(memfd) of mode
        0600, handed to the client tools as C(/dev/fd/N)); nothing is written to disk, and nothing is left
        behind even when the module is killed. Where the kernel has no C(memfd), a 0600 temporary file is
        used and removed afterwards.
      - The passfile names the exact host (or socket directory), port and user of this connection, so
        the password is never offered to any other server.
      - It never appears on a command line, in results or in logs.
    type: str
  login_unix_socket:
    description:
      - Directory of the server's Unix socket. Takes precedence over O(login_host).
    type: str
  login_db:
    description:
      - Maintenance database used for server-level queries (existence checks, C(CREATE DATABASE), C(pg_dumpall)).
    type: str
    default: postgres
  ssl_mode:
    description:
      - libpq C(sslmode) for the connection.
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate(s) to verify the server against (libpq C(sslrootcert)).
    type: path
    aliases: [ssl_rootcert]
  ssl_cert:
    description:
      - Client certificate for certificate authentication (libpq C(sslcert)).
    type: path
  ssl_key:
    description:
      - Private key of O(ssl_cert) (libpq C(sslkey)).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for a connection before failing.
    type: int
    default: 10
  pg_bin_dir:
    description:
      - Directory holding the PostgreSQL client tools (C(pg_dump), C(pg_restore), C(psql)).
      - By default the newest C(/usr/lib/postgresql/<version>/bin) is used, then E(PATH).
    type: path
notes:
  - Inherited C(PGPASSWORD) and C(~/.pgpass) are ignored; pass O(login_password) instead.
"""
