# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""module_defaults for an action group must never hand a member an option it rejects."""

from __future__ import annotations

import os

import pytest
import yaml

from ansible.plugins.loader import fragment_loader  # noqa: F401  pylint: disable=unused-import
from ansible.utils.plugin_docs import get_docstring

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The options that define each group: every member must accept all of them.
FAMILIES = {
    "store": ["store", "host"],
    "postgresql": ["login_host", "login_port", "login_user", "login_password", "login_unix_socket", "login_db",
                   "ssl_mode", "ca_cert", "ssl_cert", "ssl_key", "connect_timeout", "pg_bin_dir"],
    "backup": ["compression", "compression_level", "compression_threads", "encrypt_recipients", "sign_key",
               "sign_key_file"],
    "trust": ["trusted_signers", "trusted_signers_file"],
    "restore": ["age_identity", "age_identity_file"],
    "mysql": ["login_host", "login_port", "login_user", "login_password", "login_unix_socket", "config_file",
              "ca_cert", "client_cert", "client_key", "check_hostname", "connect_timeout"],
    "mongodb": ["login_host", "login_port", "login_user", "login_password", "login_database", "auth_mechanism",
                "replica_set", "uri", "tls", "tls_ca_file", "tls_certificate_key_file",
                "tls_certificate_key_file_password", "tls_crl_file", "tls_allow_invalid_certificates",
                "mongo_bin_dir"],
    "aws": ["access_key", "secret_key", "session_token", "profile", "region", "endpoint_url", "aws_ca_bundle",
            "validate_certs", "max_attempts"],
}


def groups():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as handle:
        return yaml.safe_load(handle)["action_groups"]


def module_options(name):
    path = os.path.join(ROOT, "plugins", "modules", name + ".py")
    doc, dummy, dummy2, dummy3 = get_docstring(path, fragment_loader, collection_name="lifeboat.backup")
    return set(doc["options"])


def test_every_group_has_a_family():
    assert sorted(groups()) == sorted(FAMILIES)


@pytest.mark.parametrize("group", sorted(FAMILIES))
def test_members_accept_the_family(group):
    for member in groups()[group]:
        missing = set(FAMILIES[group]) - module_options(member)
        assert not missing, "%s in group %s lacks %s" % (member, group, sorted(missing))


def test_every_module_is_in_the_store_group():
    """Every module that takes a store is in the group (backup_metrics takes the three stores by role)."""
    modules = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "plugins", "modules")) if n.endswith(".py"))
    assert sorted(groups()["store"]) == [m for m in modules if "store" in module_options(m)]
