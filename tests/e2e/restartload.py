# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Steady keep-alive load for the restart tests (test_restarts.py), run in
the client pod, inside the capture cgroup.

    restartload.py HOST PORT SECONDS WORKERS KEYS_JSON [STOP_FILE]

KEYS_JSON maps a routing key ("" = no key) to the pod that must answer.
Each worker keeps one connection and sends GETs back to back, cycling
through the keys, and behaves like a careful HTTP/1.1 client (urllib3,
Go's net/http): it opens a new connection after a response that says
"Connection: close", and before reusing an idle connection it checks the
server has not closed it. It never retries a request: every request that
got no complete response is a failure.

Prints one JSON object: requests, ok, misroutes, failures (by cause),
connections, t0 (time.monotonic() at start, comparable with the test's
own), and the times since t0 of the first 50 failures and misroutes."""

import json
import os
import select
import socket
import sys
import threading
import time

HOST, PORT, SECONDS, WORKERS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
KEYS = json.loads(sys.argv[5])
# The test ends the load early by creating STOP_FILE (SECONDS is the cap),
# so a slow machine (a TCG guest) still has load on both sides of an event.
STOP = sys.argv[6] if len(sys.argv) > 6 else None
T0 = time.monotonic()
DEADLINE = T0 + SECONDS
LOCK = threading.Lock()
# CLOCK_MONOTONIC is system-wide: the test compares its own times with t0.
ST = {"t0": T0, "requests": 0, "ok": 0, "misroutes": 0, "failures": {}, "connections": 0,
      "misroute_times": [], "failure_times": [], "by_pod": {}}


def note(kind, cause=None):
    now = round(time.monotonic() - T0, 3)
    with LOCK:
        if kind == "failure":
            ST["failures"][cause] = ST["failures"].get(cause, 0) + 1
            ST["failure_times"].append(now)
        elif kind == "misroute":
            ST["misroutes"] += 1
            ST["misroute_times"].append(now)


class Conn:
    def __init__(self):
        self.s = socket.create_connection((HOST, PORT), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        with LOCK:
            ST["connections"] += 1

    def dropped(self):
        """Has the server closed this idle connection? (What urllib3 asks.)"""
        r, _, _ = select.select([self.s], [], [], 0)
        return bool(r)

    def fill(self):
        b = self.s.recv(65536)
        if not b:
            raise ConnectionError("closed before a complete response")
        self.buf += b

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs.setdefault(k.strip().lower(), v.strip())
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self.fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def close(self):
        self.s.close()


def worker(i):
    keys = list(KEYS)
    conn = None
    n = 0
    while time.monotonic() < DEADLINE and not (STOP and n % 16 == 0 and os.path.exists(STOP)):
        key = keys[(n + i) % len(keys)]
        n += 1
        try:
            if conn is not None and conn.dropped():
                conn.close()
                conn = None
            if conn is None:
                conn = Conn()
        except OSError as e:
            note("failure", "connect: " + type(e).__name__)
            time.sleep(0.01)
            continue
        hdr = "baggage: sd-routing-key=%s\r\n" % key if key else ""
        req = "GET /load/%d/%d HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n" % (i, n, HOST, PORT, hdr)
        with LOCK:
            ST["requests"] += 1
        try:
            conn.s.sendall(req.encode())
            status, hdrs, _ = conn.response()
        except (OSError, ValueError, IndexError) as e:
            note("failure", type(e).__name__)
            conn.close()
            conn = None
            continue
        pod = hdrs.get("x-pod", "?")
        with LOCK:
            ST["by_pod"][pod] = ST["by_pod"].get(pod, 0) + 1
        if status != 200:
            note("failure", "status %d" % status)
        elif pod != KEYS[key]:
            note("misroute")
        else:
            with LOCK:
                ST["ok"] += 1
        if "close" in hdrs.get("connection", "").lower():
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def main():
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in ("misroute_times", "failure_times"):
        ST[k] = ST[k][:50]
    print(json.dumps(ST))


main()
