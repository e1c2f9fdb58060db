# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # MongoDB connection options (names as in community.mongodb), shared by every MongoDB module.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or address of the MongoDB server (a member of the replica set with O(replica_set)).
    type: str
    default: localhost
  login_port:
    description:
      - TCP port of the server.
    type: int
    default: 27017
  login_user:
    description:
      - User to authenticate as. Without it the tools connect without authentication.
    type: str
  login_password:
    description:
      - Password of O(login_user).
      - It reaches C(mongodump) and C(mongorestore) only inside their own C(--config) YAML file, which exists
        only in memory (a C(memfd) of mode 0600 that the tool opens as C(/dev/fd/N)); where the kernel has no
        C(memfd), a 0600 temporary file that is always removed. It never appears on a command line, in a
        connection string on a command line, in results or in logs.
    type: str
  login_database:
    description:
      - Authentication database of O(login_user) (C(--authenticationDatabase)).
    type: str
    default: admin
  auth_mechanism:
    description:
      - Authentication mechanism (C(--authenticationMechanism)); the tools' default when unset.
    type: str
    choices: [SCRAM-SHA-1, SCRAM-SHA-256, MONGODB-X509, GSSAPI, PLAIN, MONGODB-AWS]
  replica_set:
    description:
      - Name of the replica set; the tools then connect as C(--host=<replica_set>/<login_host>:<login_port>).
    type: str
  uri:
    description:
      - A MongoDB connection string, instead of the O(login_host) family of options.
      - It can hold a password, so it goes into the C(--config) file (never on a command line) and is never
        returned or logged.
    type: str
  tls:
    description:
      - Connect with TLS (C(--ssl)).
    type: bool
    default: false
    aliases: [ssl]
  tls_ca_file:
    description:
      - CA certificates to verify the server with (C(--sslCAFile)).
    type: path
  tls_certificate_key_file:
    description:
      - Client certificate and key (C(--sslPEMKeyFile)).
    type: path
  tls_certificate_key_file_password:
    description:
      - Password of O(tls_certificate_key_file); handed over in the C(--config) file like O(login_password).
    type: str
  tls_crl_file:
    description:
      - Certificate revocation list (C(--sslCRLFile)).
    type: path
  tls_allow_invalid_certificates:
    description:
      - Skip the verification of the server's certificate and host name (C(--tlsInsecure)).
    type: bool
    default: false
  mongo_bin_dir:
    description:
      - Directory holding C(mongodump) and C(mongorestore); by default they are looked up on E(PATH).
    type: path
notes:
  - Needs the MongoDB Database Tools 100.3 or later (C(--config) appeared in 100.3.0).
  - B(What was tested, and how.) No MongoDB server or tool can be installed where this collection is
    developed and tested. The modules were exercised only against a fake of the command-line contract of
    C(mongodump) and C(mongorestore) 100.x (its flags, C(--config) YAML, C(--archive) on stdout and stdin,
    log lines, and the exit status and C(Failed:) lines for a wrong password and an unreachable host), kept
    in the collection's C(tests/fakes/mongodb/). Nothing was run against a real MongoDB.
"""
