#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Hold many idle keep-alive connections open (bench.py's RSS measurement).

    idleconns.py HOST PORT COUNT HEADER_LINE KEYED_POD UNKEYED_POD

Opens COUNT connections to HOST:PORT; on every second one sends a request
with HEADER_LINE (expects X-Pod KEYED_POD), on the others one without it
(expects UNKEYED_POD); all requests are in flight at the same time. Once
every response is read (keep-alive, the connections stay open), prints one
JSON line {"ready": true, "open": N, ...} and waits for a line or EOF on
stdin; then closes everything and prints {"closed": N}. Errors print
{"error": ...} and exit 1.
"""

import json
import resource
import selectors
import socket
import sys
import time


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    header, keyed_pod, unkeyed_pod = sys.argv[4], sys.argv[5], sys.argv[6]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    t0 = time.monotonic()
    socks = []
    for i in range(count):
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    for i, s in enumerate(socks):
        extra = header + "\r\n" if i % 2 == 0 else ""
        s.sendall(("GET / HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n" % (host, port, extra)).encode())
        s.setblocking(False)
    sel = selectors.DefaultSelector()
    bufs = {}
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
        bufs[i] = b""
    pending = set(range(count))
    pods = {}
    deadline = time.monotonic() + 30
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            out({"error": "%d of %d responses missing after 30s" % (len(pending), count)})
            return 1
        for key, _ in sel.select(left):
            i = key.data
            data = socks[i].recv(65536)
            if not data:
                out({"error": "connection %d closed before its response" % i})
                return 1
            bufs[i] += data
            head, sep, body = bufs[i].partition(b"\r\n\r\n")
            if not sep:
                continue
            hdrs = {}
            for ln in head.split(b"\r\n")[1:]:
                k, _, v = ln.partition(b":")
                hdrs[k.strip().lower().decode()] = v.strip().decode()
            if len(body) < int(hdrs.get("content-length", "0")):
                continue
            status = int(head.split(b" ", 2)[1])
            want_pod = keyed_pod if i % 2 == 0 else unkeyed_pod
            if status != 200 or hdrs.get("x-pod") != want_pod:
                out({"error": "connection %d: status %d from pod %r, expected %r"
                     % (i, status, hdrs.get("x-pod"), want_pod)})
                return 1
            pods[want_pod] = pods.get(want_pod, 0) + 1
            pending.discard(i)
            sel.unregister(socks[i])
    out({"ready": True, "open": count, "pods": pods, "setup_s": round(time.monotonic() - t0, 3)})
    sys.stdin.readline()
    # Still open? (the proxy must not have dropped idle connections meanwhile)
    alive = 0
    for s in socks:
        try:
            alive += 1 if s.recv(1, socket.MSG_PEEK) != b"" else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    out({"closed": count, "alive_before_close": alive})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one JSON error line, whatever happened
        out({"error": "%s: %s" % (type(e).__name__, e)})
        sys.exit(1)
