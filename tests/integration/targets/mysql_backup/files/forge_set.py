"""Write a mysqldump set whose payload is the given SQL file (a hostile payload), through the core's BackupJob.

usage: forge_set.py STORE_DIR HOST SOURCE DATABASE SQL_FILE
"""
import os
import sys

root = os.environ["ANSIBLE_COLLECTIONS_PATH"].split(":")[0]
sys.path.insert(0, root)

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds  # noqa: E402

store_dir, host, source, database, sql_file = sys.argv[1:6]
store = _store_kinds.open_store({"kind": "dir", "path": store_dir})
job = _jobs.BackupJob(store, host, source, "mysql", "mysqldump")


def produce(writer, manifest, workspace):
    _jobs.write_stream(writer, manifest, "dump.sql", [_jobs._pipeline.Stage("cat", ["cat", sql_file])])
    manifest["options"] = {"databases": [database], "payload": "dump.sql"}


manifest, extras = job.run(produce)
print(manifest["set_id"])
