#!/usr/bin/env python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The README's demo: shunt steering requests on a throwaway single-node
"cluster" made of network namespaces, then cleaning everything up.

    client pod 10.211.0.10  --(connect 10.211.0.20:8080)-->  baseline pod 10.211.0.20
                                                         \-> sandbox pod  10.211.0.30
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
import node as nodemod  # noqa: E402

CLIENT = r'''
import http.client, json
conn = http.client.HTTPConnection("10.211.0.20", 8080, timeout=5)
conn.connect()
print("  client connected to 10.211.0.20:8080; getpeername() says %s:%d" % conn.sock.getpeername()[:2])
for i, (hdrs, what) in enumerate([
        ({}, "no routing key"),
        ({"baggage": "sd-routing-key=dev-a"}, "baggage: sd-routing-key=dev-a"),
        ({"baggage": "userid=7, sd-routing-key=dev-b;ttl=1"}, "baggage: ..., sd-routing-key=dev-b (no route)"),
        ({"uberctx-sd-routing-key": "dev-a"}, "uberctx-sd-routing-key: dev-a"),
        ({}, "no routing key")]):
    conn.request("GET", "/demo", headers=hdrs)
    r = conn.getresponse()
    r.read()
    print("  request %d on the same connection, %-46s -> answered by %s" % (i + 1, what, r.getheader("X-Pod")))
'''


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    reason = nodemod.prereq_skip_reason()
    if reason:
        print("demo: cannot run here: %s" % reason)
        return 1
    n = nodemod.Node(build)
    try:
        print("== a throwaway node: netns client, baseline and sandbox pods, shuntd on the node")
        n.start()
        print("== shuntctl route add --service 10.211.0.20:8080 --key dev-a --to 10.211.0.30:8080")
        print("  " + n.route_add("10.211.0.20:8080", "dev-a", "10.211.0.30:8080").stdout.strip())
        print("== one keep-alive connection from the client pod, a different key on each request")
        rc, out, err = n.client_cmd(["/usr/bin/python3", "-c", CLIENT])
        sys.stdout.write(out)
        if rc:
            sys.stdout.write(err)
            return 1
        print("== shuntctl status")
        sys.stdout.write("".join("  " + l + "\n" for l in n.ctl_ok("status").stdout.splitlines()))
        print("== bpftool map dump pinned %s/shunt_routes" % n.pin)
        p = subprocess.run(["bpftool", "map", "dump", "pinned", n.pin + "/shunt_routes"],
                           capture_output=True, text=True)
        sys.stdout.write(p.stdout)
        print("== cleaning up (namespaces, cgroup, pins, processes)")
    finally:
        n.close()
    print("demo: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
