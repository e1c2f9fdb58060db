# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A moto S3 server for the unit tests: ``python -m moto.server`` on 127.0.0.1 and a free port.

``server()`` starts it on first use (once per test process) and ``stop()``
ends it; conftest.py stops it when the session ends. Every test makes a
bucket of its own with ``new_bucket()``. It runs with dummy credentials;
moto accepts any.

Under ``ansible-test units``, which forks every test from its pytest worker,
tests/unit/plugins/conftest.py starts the server in the worker before the fork:
a forked test then shares it (``start`` sees it answer) instead of starting
one of its own, and its ``stop`` leaves it to the worker that started it.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from ansible_collections.lifeboat.backup.plugins.module_utils import _runner

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
START_TIMEOUT = 60.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url, timeout=1.0):
    """Does an HTTP server answer at ``url`` (any status)?"""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # nosec - a local test server
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


class MotoServer(object):
    """One moto server process in server mode (real HTTP)."""

    def __init__(self, env=None):
        self.env = env or {}
        self.proc = None
        self.owner = None  # the pid that started proc
        self.port = None
        self.log = None
        self._client = None

    @property
    def endpoint_url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        if self.proc is not None:
            if self.owner == os.getpid():
                if self.proc.poll() is None:
                    return self
            elif answers(self.endpoint_url + "/moto-api/"):
                return self  # the server of the process this test was forked from
            else:
                self._forget()
        try:
            import moto.server  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
        except ImportError:
            raise RuntimeError("moto[server] is not installed in %s; run `make setup` (tests/requirements.txt "
                               "lists it): the s3 store tests need it." % sys.executable)
        env = dict(os.environ)
        for name in list(env):
            if name.startswith("AWS_") or name.startswith("MOTO_"):
                del env[name]
        env.update(self.env)
        last = ""
        for dummy in range(3):
            self.port = free_port()
            self.log = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with,subprocess-popen-preexec-fn
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=_runner._die_with_parent(os.getpid()),  # pylint: disable=protected-access
            )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if answers(self.endpoint_url + "/moto-api/"):
                    self.owner = os.getpid()
                    atexit.register(self.stop)
                    return self
                time.sleep(0.1)
            last = self._log_tail()
            self.stop()
        raise RuntimeError("The moto server did not start: %s" % last)

    def _log_tail(self):
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace").strip()[-500:]

    def _forget(self):
        """Drop a server this process did not start (a forked test's copy of its parent's)."""
        self.proc = None
        self.owner = None
        self.log = None
        self._client = None

    def stop(self):
        if self.proc is not None and self.owner != os.getpid():
            self._forget()
            return
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            self.owner = None
        if self.log is not None:
            self.log.close()
            self.log = None
        self._client = None

    def connection(self, **extra):
        """The s3 store options that reach this server."""
        options = dict(endpoint_url=self.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION)
        options.update(extra)
        return options

    def client(self):
        """A plain boto3 client, for fixtures and tampering behind the store's back."""
        if self._client is None:
            import boto3  # pylint: disable=import-outside-toplevel
            import botocore.config  # pylint: disable=import-outside-toplevel
            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                region_name=REGION, config=botocore.config.Config(s3={"addressing_style": "path"}))
        return self._client

    def new_bucket(self, **kwargs):
        name = "lb-%s" % uuid.uuid4().hex[:20]
        self.client().create_bucket(Bucket=name, **kwargs)
        return name

    def empty_bucket(self, name):
        """Remove every object and upload of a bucket (frees the server's memory after a big test)."""
        client = self.client()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads") or []:
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents") or []:
                client.delete_object(Bucket=name, Key=item["Key"])


_SERVER = MotoServer()


def server():
    """The test process's moto server, started on first use."""
    return _SERVER.start()


def stop():
    _SERVER.stop()
