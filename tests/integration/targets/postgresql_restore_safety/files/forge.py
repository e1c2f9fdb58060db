"""Rewrite a set as someone who can write to the store would, keeping its checksums right.

Usage: forge.py SET_DIR [--append TEXT] [--prepend TEXT] [--option KEY=JSON]

The payload must be uncompressed and unencrypted. After the change, the
manifest's size and SHA-256 match the payload again, so verification passes:
only what the restore does with the content stands between the set and the host.
"""

import argparse
import hashlib
import json
import os
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("set_dir")
    parser.add_argument("--append", default="")
    parser.add_argument("--prepend", default="")
    parser.add_argument("--option", action="append", default=[])
    args = parser.parse_args()
    manifest_path = os.path.join(args.set_dir, "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    if manifest["compression"]["algorithm"] != "none" or manifest["encryption"]:
        print("forge.py: the set must be uncompressed and unencrypted", file=sys.stderr)
        return 2
    entry = manifest["files"][0]
    payload = os.path.join(args.set_dir, entry["name"])
    with open(payload, "rb") as handle:
        data = handle.read()
    data = args.prepend.encode("utf-8") + data + args.append.encode("utf-8")
    with open(payload, "wb") as handle:
        handle.write(data)
    entry["size"] = len(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["bytes"] = sum(f["size"] for f in manifest["files"])
    for option in args.option:
        key, value = option.split("=", 1)
        manifest["options"][key] = json.loads(value)
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
    print(json.dumps({"size": len(data), "sha256": entry["sha256"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
