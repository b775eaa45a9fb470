#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Python twin of latclient.c (bench.py --client python): the same arguments,
the same JSON line, one keep-alive connection through http.client.

    latclient.py HOST PORT N WARMUP EXPECT_POD [HEADER_LINE]
"""

import http.client
import json
import socket
import sys
import time


def main():
    if len(sys.argv) not in (6, 7):
        print("usage: latclient.py HOST PORT N WARMUP EXPECT_POD [HEADER_LINE]", file=sys.stderr)
        return 2
    host, port, n, warm, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    headers = {}
    if len(sys.argv) == 7:
        k, _, v = sys.argv[6].partition(":")
        headers[k.strip()] = v.strip()
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = c.sock
    lat = []
    clock = time.perf_counter_ns
    peer = ""
    pod = ""
    status = 0
    start = clock()
    for i in range(-warm, n):
        if i == 0:
            start = clock()
        t0 = clock()
        c.request("GET", "/", headers=headers)
        r = c.getresponse()
        r.read()
        t1 = clock()
        if c.sock is not sock:
            raise SystemExit("latclient.py: request %d: connection was reopened (keep-alive broken)" % i)
        status, pod = r.status, r.getheader("X-Pod", "")
        if status != 200 or pod != expect:
            raise SystemExit("latclient.py: request %d: status %d from pod %r, expected pod %r" % (i, status, pod, expect))
        if i == -warm:
            peer = r.getheader("X-Peer", "")
        if i >= 0:
            lat.append(t1 - t0)
    total = clock() - start
    with open("/proc/self/stat") as f:  # field 39: the CPU it last ran on
        st = f.read()
    cpu = int(st[st.rfind(")") + 2:].split()[36])
    c.close()
    raw = list(lat)
    lat.sort()

    def pct(p):
        k = min(max(int(-(-p * n // 100)), 1), n)
        return lat[k - 1]

    print(json.dumps({"n": n, "p50_ns": pct(50), "p90_ns": pct(90), "p99_ns": pct(99), "min_ns": lat[0],
                      "max_ns": lat[-1], "mean_ns": sum(lat) // n, "total_ns": total, "pod": pod, "peer": peer,
                      "status": status, "cpu": cpu, "lat_ns": raw}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
