# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module documentation a first-time user copies from: examples, links, shared options."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from ansible_collections.lifeboat.backup.plugins.doc_fragments import _postgres as postgres_fragment
from ansible_collections.lifeboat.backup.plugins.module_utils import _postgres
from ansible_collections.lifeboat.backup.plugins.modules import backup_info
from ansible_collections.lifeboat.backup.plugins.modules import backup_verify
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_backup
from ansible_collections.lifeboat.backup.plugins.modules import postgresql_restore

MODULES = [postgresql_backup, postgresql_restore, backup_info, backup_verify]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
# An age public key written out literally: a reader would encrypt backups to a stranger's key.
AGE_KEY = re.compile(r"age1[0-9a-z]{58}")


def tasks(module):
    return yaml.safe_load(module.EXAMPLES)


@pytest.mark.parametrize("module", [postgresql_backup, postgresql_restore, backup_verify], ids=lambda m: m.__name__)
def test_every_example_names_the_host(module):
    for task in tasks(module):
        (args,) = [value for key, value in task.items() if key.startswith("lifeboat.backup.")]
        assert "host" in args, task["name"]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_examples_do_not_encrypt_to_a_literal_key(module):
    assert not AGE_KEY.search(module.EXAMPLES)
    for task in tasks(module):
        (args,) = [value for key, value in task.items() if key.startswith("lifeboat.backup.")]
        for recipient in args.get("encrypt_recipients", []):
            assert re.match(r"^\{\{ *vault_\w+ *\}\}$", recipient), recipient


def links(text):
    return re.findall(r"https?://[^\s\"')>]+", text)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_module_links_are_real(module):
    for url in links(module.DOCUMENTATION + module.EXAMPLES + module.RETURN):
        assert ".invalid" not in url and "example." not in url, url


def test_galaxy_links_are_real_or_absent():
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        galaxy = yaml.safe_load(handle)
    for key in ("repository", "documentation", "homepage", "issues"):
        value = galaxy.get(key)
        if value:
            assert ".invalid" not in value and "example." not in value, (key, value)
    for name in ("README.md",):
        with open(os.path.join(ROOT, name)) as handle:
            text = handle.read()
        assert not AGE_KEY.search(text)
        assert "example.invalid" not in text


def test_port_alias_is_documented_like_the_spec():
    options = yaml.safe_load(postgres_fragment.ModuleDocFragment.DOCUMENTATION)["options"]
    for name, spec in _postgres.connection_argument_spec().items():
        assert options[name].get("aliases", []) == spec.get("aliases", []), name
    assert options["login_port"]["aliases"] == ["port"]
