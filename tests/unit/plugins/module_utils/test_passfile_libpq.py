# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The passfile as the real libpq (psql) reads it: the password goes only to the server it belongs to.

Stand-in servers speak just enough of the PostgreSQL wire protocol to ask for a
cleartext password and record what a client sends, so that a test can see
which connections were handed the password and which were not.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import threading

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.module_utils._postgres import PostgresError
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import FakeModule

PSQL = shutil.which("psql") or next(
    (os.path.join(d, "psql") for d in _postgres.PG_BIN_DIRS if os.access(os.path.join(d, "psql"), os.X_OK)), None)
needs_psql = pytest.mark.skipif(not PSQL, reason="psql is not installed")
PASSWORD = "only-for-A:\\pw"

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def _message(kind, payload=b""):
    return kind + struct.pack("!I", len(payload) + 4) + payload


def _recv_exact(conn, size):
    data = b""
    while len(data) < size:
        block = conn.recv(size - len(data))
        if not block:
            raise EOFError
        data += block
    return data


class FakeServer(object):
    """Accepts connections on (address, port); asks each for a cleartext password and records the answer."""

    def __init__(self, address="127.0.0.1", port=0, accept=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(8)
        self.address = address
        self.port = self.sock.getsockname()[1]
        self.accept = accept
        self.connections = []
        self.thread = threading.Thread(target=self._serve)
        self.thread.daemon = True
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            worker = threading.Thread(target=self._session, args=(conn,))
            worker.daemon = True
            worker.start()

    def _session(self, conn):
        record = {"startup": None, "password": None}
        self.connections.append(record)
        try:
            while True:
                length = struct.unpack("!I", _recv_exact(conn, 4))[0]
                body = _recv_exact(conn, length - 4)
                code = struct.unpack("!I", body[:4])[0]
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    conn.sendall(b"N")
                    continue
                fields = body[4:].split(b"\0")
                record["startup"] = dict(zip(fields[0::2], fields[1::2]))
                break
            conn.sendall(_message(b"R", struct.pack("!I", 3)))  # AuthenticationCleartextPassword
            kind = _recv_exact(conn, 1)
            length = struct.unpack("!I", _recv_exact(conn, 4))[0]
            payload = _recv_exact(conn, length - 4)
            if kind != b"p":
                return
            record["password"] = payload.rstrip(b"\0").decode("utf-8")
            if not self.accept:
                conn.sendall(_message(b"E", b"SFATAL\0C28P01\0Mfake server refuses\0\0"))
                return
            conn.sendall(_message(b"R", struct.pack("!I", 0)))
            for name, value in ((b"server_version", b"15.18"), (b"client_encoding", b"UTF8"),
                                (b"standard_conforming_strings", b"on"), (b"integer_datetimes", b"on")):
                conn.sendall(_message(b"S", name + b"\0" + value + b"\0"))
            conn.sendall(_message(b"K", struct.pack("!II", 1, 2)))
            conn.sendall(_message(b"Z", b"I"))
            # Idle until the client leaves (psql runs \connect meanwhile).
            while conn.recv(4096):
                pass
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def passwords(self):
        return [c["password"] for c in self.connections if c["startup"] is not None]

    def close(self):
        self.sock.close()


@pytest.fixture
def servers():
    made = []

    def make(**kwargs):
        server = FakeServer(**kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def params_for(server, user="lifeboat"):
    return {"login_host": server.address, "login_port": server.port, "login_user": user,
            "login_password": PASSWORD, "ssl_mode": "prefer", "connect_timeout": 5}


def connect(creds, env_update=None, script="SELECT 1;\n"):
    """psql through the module's own path (run_sql: runner, passfile descriptor), pointed where env says."""
    env = creds.env("postgres")
    env["PGGSSENCMODE"] = "disable"
    env.update(env_update or {})
    module = FakeModule(params=creds.params)
    try:
        _postgres.run_sql(module, PSQL, env, "postgres", script)
    except PostgresError as exc:
        return str(exc)
    return None


@needs_psql
def test_libpq_reads_the_memfd_passfile_for_its_own_server(servers, tmp_path):
    own = servers()
    with _postgres.Credentials(params_for(own), tmpdir=str(tmp_path)) as creds:
        assert creds.passfile.startswith("/dev/fd/")
        connect(creds)
    assert own.passwords() == [PASSWORD]


@needs_psql
def test_password_is_not_given_to_another_port_host_or_user(servers, tmp_path):
    own = servers()
    other_port = servers()
    # Same port number, another address: only the host field tells them apart.
    other_host = servers(address="127.0.0.2", port=own.port)
    with _postgres.Credentials(params_for(own), tmpdir=str(tmp_path)) as creds:
        message = connect(creds, {"PGPORT": str(other_port.port)})
        assert "asks for a password and none was given" in message
        connect(creds, {"PGHOST": "127.0.0.2"})
        connect(creds, {"PGUSER": "postgres"})
        connect(creds)
    assert other_port.passwords() == [None]
    assert other_host.passwords() == [None]
    assert own.passwords() == [None, PASSWORD]
    assert [c["startup"][b"user"] for c in own.connections] == [b"postgres", b"lifeboat"]


@needs_psql
def test_connect_meta_command_to_elsewhere_gets_no_password(servers, tmp_path):
    """A `\\connect host=elsewhere` in SQL that psql runs: the new connection is not given the password."""
    own = servers(accept=True)
    elsewhere = servers(address="127.0.0.2")
    with _postgres.Credentials(params_for(own), tmpdir=str(tmp_path)) as creds:
        connect(creds, script="\\connect 'host=127.0.0.2 port=%d dbname=stolen'\n" % elsewhere.port)
    assert own.passwords() == [PASSWORD]
    assert len(elsewhere.connections) == 1
    assert elsewhere.connections[0]["startup"][b"database"] == b"stolen"
    assert elsewhere.passwords() == [None]
