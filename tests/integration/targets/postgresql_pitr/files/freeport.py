"""Print a TCP port that is free on 127.0.0.1 right now."""
import socket

probe = socket.socket()
probe.bind(("127.0.0.1", 0))
print(probe.getsockname()[1])
probe.close()
