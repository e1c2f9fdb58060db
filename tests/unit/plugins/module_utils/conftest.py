# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The s3 store kind joins the contract suite here, on a moto server in server mode.

The server (``python -m moto.server -H 127.0.0.1 -p <free port>``) starts once
per test session, on the first test that needs it, and stops when the session
ends; each test gets a bucket of its own.
"""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import moto_harness
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import ssh_harness
from ansible_collections.lifeboat.backup.tests.unit.plugins.module_utils import store_kinds

S3_PREFIX = "backups/lifeboat"


def s3_store(tmp_path, **options):
    server = moto_harness.server()
    bucket = server.new_bucket()
    spec = dict(kind="s3", bucket=bucket, prefix=S3_PREFIX, **server.connection())
    spec.update(options)
    store = _store_kinds.open_store(spec)

    def tamper(host, source, set_id, name, data):
        """Overwrite a stored object behind the store's back."""
        key = "/".join([S3_PREFIX, host, source, set_id, name])
        server.client().put_object(Bucket=bucket, Key=key, Body=data)
    return store, tamper


store_kinds.FACTORIES["s3"] = s3_store


def ssh_store(tmp_path, **options):
    """A store on the session's private sshd (127.0.0.1), its root in the test's tmp_path."""
    root = tmp_path / "ssh-store"
    store = _store_kinds.open_store(ssh_harness.spec(root, **options))

    def tamper(host, source, set_id, name, data):
        """Rewrite a stored file on the server behind the store's back (the server is this machine)."""
        with open(str(root / host / source / set_id / name), "wb") as handle:
            handle.write(data)
    return store, tamper


store_kinds.FACTORIES["ssh"] = ssh_store


@pytest.fixture(scope="session", autouse=True)
def _stop_moto_at_the_end():
    yield
    moto_harness.stop()
    ssh_harness.stop()


@pytest.fixture(scope="session")
def moto():
    """The session's moto server."""
    return moto_harness.server()
