# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role hands a module every option backup_plan accepts for it.

backup_plan checks a source's keys against the engine module's own documentation; the role's
backup step then lists the options it passes, one by one. An option the plan accepts but the
task does not pass would be dropped without a word, so this test holds the two together: every
engine and every prepare kind has its task, and each task passes every option of its module
that a source may set.
"""

from __future__ import annotations

import os

import yaml

from ansible_collections.lifeboat.backup.plugins.filter import backup_job

ROLE_TASKS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "backup", "tasks", "backup.yml")


def _task_options():
    with open(ROLE_TASKS) as handle:
        tasks = yaml.safe_load(handle)
    found = {}
    for task in tasks:
        for key, value in task.items():
            if key.startswith(backup_job.COLLECTION + ".") and isinstance(value, dict):
                found[key.rsplit(".", 1)[1]] = set(value)
    return found


def _modules():
    yield from (module for module, _fragment in backup_job.ENGINES.values())
    yield from backup_job.PREPARE_KINDS.values()


def test_every_engine_and_prepare_kind_has_a_backup_task():
    tasks = _task_options()
    missing = [module for module in _modules() if module not in tasks]
    assert missing == [], "the role has no backup task for %s" % ", ".join(missing)


def test_each_backup_task_passes_every_option_a_source_may_set():
    tasks = _task_options()
    dropped = {}
    for module in _modules():
        accepted = set(backup_job._doc_options("module", module)) - set(backup_job.ROLE_OWNED)
        lost = sorted(accepted - tasks.get(module, set()))
        if lost:
            dropped[module] = lost
    assert dropped == {}


def test_each_backup_task_sets_the_role_owned_options():
    for module, options in _task_options().items():
        assert set(backup_job.ROLE_OWNED) <= options, module
