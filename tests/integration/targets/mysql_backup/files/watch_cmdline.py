"""Watch /proc/*/cmdline until FLAG_FILE exists; exit 1 if any process shows the password, else print how many
MySQL tool processes were seen (so a watch that saw nothing fails the test)."""
import os
import sys
import time

password = open(sys.argv[1], "rb").read().strip()
flag = sys.argv[2]
tools = (b"mariadb-dump", b"mysqldump", b"mariabackup", b"mariadb")
seen = set()
deadline = time.monotonic() + 120
while not os.path.exists(flag) and time.monotonic() < deadline:
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read()
        except OSError:
            continue
        if password in argv:
            print("password seen in the command line of pid %s" % pid)
            sys.exit(1)
        if any(os.path.basename(a) in tools for a in argv.split(b"\0")[:1]):
            seen.add(pid)
print(len(seen))
