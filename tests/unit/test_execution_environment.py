# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""execution-environment.yml: `ansible-builder create` makes a build context holding what AWX needs.

No container engine runs here, so the image is not built; the test runs the real ansible-builder on
the real file next to a real collection tarball (ansible-galaxy collection build) and inspects the
context it generates, then has bindep parse the system requirements the image would install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import json

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def tool(name):
    path = os.path.join(BIN, name)
    return path if os.path.exists(path) else shutil.which(name)


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """(work dir, build context dir) after `ansible-builder create` on a copy of the project layout."""
    work = tmp_path_factory.mktemp("ee")
    for name in ("execution-environment.yml", "requirements.txt"):
        shutil.copy(os.path.join(ROOT, name), str(work / name))
    build = subprocess.run([tool("ansible-galaxy"), "collection", "build", "--force", "--output-path",
                            str(work / "build"), ROOT], capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    create = subprocess.run([tool("ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "context",
                             "--output-filename", "Containerfile"],
                            cwd=str(work), capture_output=True, text=True, timeout=300, check=False)
    assert create.returncode == 0, create.stdout + create.stderr
    return work, work / "context"


def galaxy():
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        return yaml.safe_load(handle)


def test_definition_is_version_3_and_names_this_collection():
    with open(os.path.join(ROOT, "execution-environment.yml")) as handle:
        definition = yaml.safe_load(handle)
    assert definition["version"] == 3
    meta = galaxy()
    tarball = "collections/%s-%s-%s.tar.gz" % (meta["namespace"], meta["name"], meta["version"])
    assert definition["dependencies"]["galaxy"]["collections"] == [{"name": tarball, "type": "file"}], \
        "execution-environment.yml must install the tarball of galaxy.yml's version"
    assert definition["dependencies"]["python"] == "requirements.txt"


def test_context_holds_the_collection_and_its_requirements(context):
    work, ctx = context
    meta = galaxy()
    containerfile = (ctx / "Containerfile").read_text()
    assert containerfile.startswith('ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"')
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.17.0,<2.20 ansible-runner>=2.3,<3"' in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    assert "RUN $PKGMGR install -y epel-release" in containerfile
    assert containerfile.index("epel-release") < containerfile.index("FROM base AS galaxy")
    # The collection tarball is in the context, and it is this collection.
    tarball = ctx / "_build" / "collections" / ("%s-%s-%s.tar.gz" % (meta["namespace"], meta["name"], meta["version"]))
    with tarfile.open(str(tarball)) as archive:
        manifest = json.load(archive.extractfile("MANIFEST.json"))
        names = archive.getnames()
    assert manifest["collection_info"]["namespace"] == "lifeboat"
    assert manifest["collection_info"]["name"] == "backup"
    assert "plugins/modules/backup_metrics.py" in names
    assert "roles/schedule/tasks/main.yml" in names
    requirements = yaml.safe_load((ctx / "_build" / "requirements.yml").read_text())
    assert requirements == {"collections": [{"name": "collections/" + tarball.name, "type": "file"}]}
    # Python requirements: the collection's own file, word for word.
    with open(os.path.join(ROOT, "requirements.txt")) as handle:
        assert (ctx / "_build" / "requirements.txt").read_text() == handle.read()


def test_system_requirements_parse_with_bindep(context):
    work, ctx = context
    bindep_txt = ctx / "_build" / "bindep.txt"
    lines = [line for line in bindep_txt.read_text().splitlines() if line.strip()]
    names = [line.split()[0] for line in lines]
    assert {"openssh-clients", "rsync", "tar", "zstd", "age"} <= set(names)
    # Every package is for the image's rpm platform; age from EPEL.
    assert all("platform:rpm" in line for line in lines)
    assert "age [platform:rpm epel]" in lines
    # bindep (installed with ansible-builder) must parse it: exit 2 means unparsable.
    proc = subprocess.run([tool("bindep"), "-f", str(bindep_txt), "-l", "newline"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    proc = subprocess.run([tool("bindep"), "-f", str(bindep_txt), "-l", "newline", "-b", "epel"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
