#!/usr/bin/env python
"""interrupt.py COLLECTIONS_ROOT MODULE ARGS_JSON WATCH_DIR: run a module, SIGKILL it mid-backup.

The module runs as a child of this script. Once WATCH_DIR (the store's source
directory) holds a ``.partial`` set, the child is killed with SIGKILL, so
nothing in it can clean up: what it leaves is what a killed run leaves.
Prints JSON: killed (bool), partials (the .partial names seen).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time


def main():
    root, module, args, watch = sys.argv[1:5]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": json.loads(args)}, handle)
        args_file = handle.name
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.Popen([sys.executable, os.path.join(root, "ansible_collections", "lifeboat", "backup",
                                                          "plugins", "modules", module + ".py"), args_file],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/")
    seen, killed = [], False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.isdir(watch):
                seen = [n for n in os.listdir(watch) if n.endswith(".partial")]
                if seen:
                    time.sleep(0.3)  # let the send stream start writing
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
            time.sleep(0.05)
        proc.wait()
    finally:
        os.unlink(args_file)
    out = proc.stdout.read().decode("utf-8", "replace")
    print(json.dumps({"killed": killed, "partials": seen, "returncode": proc.returncode, "stdout": out[-2000:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
