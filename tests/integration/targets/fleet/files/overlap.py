"""Read the manifests of one day's sets under a dir store and print, as JSON, each host's
[first start, last end] interval and whether any two hosts' intervals overlap."""
import datetime
import glob
import json
import os
import sys

store, since = sys.argv[1], sys.argv[2]
spans = {}
for path in glob.glob(os.path.join(store, "**", "manifest.json"), recursive=True):
    with open(path) as handle:
        manifest = json.load(handle)
    if manifest["set_id"] < since:
        continue
    start = datetime.datetime.fromisoformat(manifest["started_at"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(manifest["ended_at"].replace("Z", "+00:00"))
    first, last = spans.get(manifest["host"], (start, end))
    spans[manifest["host"]] = (min(first, start), max(last, end))
hosts = sorted(spans)
overlaps = [[a, b] for i, a in enumerate(hosts) for b in hosts[i + 1:]
            if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]
print(json.dumps({"spans": dict((h, [s.isoformat(), e.isoformat()]) for h, (s, e) in spans.items()),
                  "overlaps": overlaps}))
