"""Stop the restored cluster in DATA_DIR (if its server runs) as postgres, then remove DATA_DIR.

usage: dropcluster.py PG_CTL DATA_DIR  (one task instead of two: a stop and a file: state=absent)
"""
import os
import shutil
import subprocess
import sys

pg_ctl, data_dir = sys.argv[1:3]
if os.path.isfile(os.path.join(data_dir, "postmaster.pid")):
    subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", data_dir, "-m", "immediate", "-w", "stop"],
                   cwd="/", stdout=subprocess.DEVNULL, check=False)
if os.path.lexists(data_dir):
    if os.path.islink(data_dir) or not os.path.isdir(data_dir):
        os.unlink(data_dir)
    else:
        shutil.rmtree(data_dir)
print("removed" if not os.path.lexists(data_dir) else "left")
