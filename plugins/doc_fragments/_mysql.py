# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # MySQL / MariaDB connection options (community.mysql's names), shared by every MySQL module.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the server (TCP). Ignored when O(login_unix_socket) is set.
      - When neither is set, the client's defaults (O(config_file), C(~/.my.cnf), the default socket) apply.
    type: str
  login_port:
    description:
      - TCP port of the server.
    type: int
    default: 3306
  login_user:
    description:
      - Account to connect as.
    type: str
  login_password:
    description:
      - Password of O(login_user).
      - It reaches the client tools in a C([client]) option file passed as C(--defaults-extra-file=/dev/fd/N),
        an in-memory file (C(memfd), mode 0600) that only the tools started by the module inherit; nothing
        is written to disk. Where the kernel has no C(memfd), a 0600 temporary file is used and always removed.
      - It never appears on a command line (C(ps), C(/proc/*/cmdline)), in results or in logs.
    type: str
  login_unix_socket:
    description:
      - Path of the server's Unix socket. Takes precedence over O(login_host).
    type: str
  config_file:
    description:
      - An option file the client tools read first (C(--defaults-file)), instead of the usual C(/etc/mysql/my.cnf)
        and C(~/.my.cnf). The connection options of the module are read after it and win.
      - M(lifeboat.backup.mysql_restore) also passes it to the physical copy-back, which takes the InnoDB paths
        from it.
    type: path
  ca_cert:
    description:
      - CA certificate to verify the server against (C(ssl-ca)).
    type: path
    aliases: [ssl_ca]
  client_cert:
    description:
      - Client certificate (C(ssl-cert)).
    type: path
    aliases: [ssl_cert]
  client_key:
    description:
      - Private key of O(client_cert) (C(ssl-key)).
    type: path
    aliases: [ssl_key]
  check_hostname:
    description:
      - Verify that the server certificate names the host connected to (C(ssl-verify-server-cert)).
    type: bool
  connect_timeout:
    description:
      - Seconds to wait for a connection.
    type: int
    default: 30
"""
