#!/usr/bin/env python
"""Watch /proc/*/cmdline until told to stop; exit 1 if a needle (read from a file) was ever seen."""
import os
import sys
import time

needle = open(sys.argv[1], "rb").read().rstrip(b"\n")
stop = sys.argv[2]
seen = 0
scans = 0
while not os.path.exists(stop):
    scans += 1
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    if needle in handle.read():
                        seen += 1
            except OSError:
                pass
    time.sleep(0.005)
print('{"seen": %d, "scans": %d}' % (seen, scans))
