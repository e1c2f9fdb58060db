#!/usr/bin/env python
# A webhook receiver for the notify role's test, on 127.0.0.1 and a free port.
#   webhook.py start DIR   forks; writes DIR/port and DIR/pid; appends every POST to DIR/requests.jsonl
#   webhook.py stop DIR    ends it
# POST /ok answers 200 "ok" (as Slack does); POST /broken answers 500.
import http.server
import json
import os
import signal
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8")
        with open(os.path.join(self.server.state_dir, "requests.jsonl"), "a") as handle:
            handle.write(json.dumps({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                     "authorization": self.headers.get("Authorization"), "body": body}) + "\n")
        status = 500 if self.path == "/broken" else 200
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"broken")

    def log_message(self, *args):
        pass


def start(state_dir):
    os.makedirs(state_dir, exist_ok=True)
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.state_dir = state_dir
    if os.fork():
        return
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open(os.path.join(state_dir, "pid"), "w") as handle:
        handle.write(str(os.getpid()))
    with open(os.path.join(state_dir, "port.tmp"), "w") as handle:
        handle.write(str(server.server_address[1]))
    os.rename(os.path.join(state_dir, "port.tmp"), os.path.join(state_dir, "port"))
    server.serve_forever()


def stop(state_dir):
    try:
        with open(os.path.join(state_dir, "pid")) as handle:
            os.kill(int(handle.read()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    {"start": start, "stop": stop}[sys.argv[1]](sys.argv[2])
