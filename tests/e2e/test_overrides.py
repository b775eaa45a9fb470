# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""L4 overrides: connections from one pod (its netns or its cgroup) to a
destination go to another address at connect() time, without the proxy,
with getpeername() transparent; every other pod still reaches the original.
The PostgreSQL case is in test_postgres.py."""

import json
import os
import shlex
import signal
import time

import node as N
from base import SVC4, SVC6, TO2_4, TO4, TO6, NodeTestCase
from httpmsg import key_header

# One tiny client, run in a chosen cgroup: connect, GET, print what it saw.
PROBE = r"""
import json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=5)
peer = s.getpeername()[:2]
s.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
body = json.loads(data.split(b"\r\n\r\n", 1)[1])
print(json.dumps({"peer": list(peer), "pod": body["pod"], "seen_peer": body["peer"]}))
"""


class Overrides(NodeTestCase):
    def override(self, frm, dst, to, ttl=None):
        args = ["override", "add", "--from", self.node.agent_source(frm), "--dst", dst, "--to", to]
        if ttl:
            args += ["--ttl", ttl]
        return self.node.ctl_ok(*args)

    def overrides(self):
        return self.node.ctl_json("override", "list")

    def kernel(self):
        return self.node.status()["kernel"]

    def probe_in_cgroup(self, cg, host, port=N.HTTP_PORT):
        """Run PROBE in the client netns, as a process of cgroup cg."""
        cmd = "echo $$ > %s && exec %s" % (
            shlex.quote(os.path.join(cg, "cgroup.procs")),
            shlex.join(self.node.nsenter("client") + [N.PYTHON, "-c", PROBE, host, str(port)]))
        p = N.run(["sh", "-c", cmd], check=False, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def child_cgroup(self, name):
        path = os.path.join(self.node.cg, name)
        os.mkdir(path)
        self.addCleanup(os.rmdir, path)
        return path

    def test_netns_override_redirects_only_that_pod(self):
        client_ns = self.node.netns_path("client")
        k0 = self.kernel()
        out = self.override("netns:" + client_ns, SVC4, TO4)
        self.assertIn("override added: from netns:%s to %s -> %s" % (client_ns, SVC4, TO4), out.stdout)
        c = self.connect(N.BASE4)
        self.assertEqual(c.peer, (N.BASE4, N.HTTP_PORT), "getpeername() not transparent")
        r = c.request("GET", "/o1", [])
        self.assertPod(r, "sandbox", "overridden connection")
        # straight from the client, not through the proxy
        self.assertTrue(r.json()["peer"].startswith(N.CLIENT4 + ":"), r.json()["peer"])
        k1 = self.kernel()
        self.assertEqual(k1["overridden"] - k0["overridden"], 1)
        self.assertEqual(k1["captured"], k0["captured"], "an overridden connection went to the proxy")
        # another destination from the same pod is untouched
        self.assertPod(self.get(N.SBX2_4, "/"), "sandbox2")
        # an override for another pod's netns does not apply to the client
        self.node.ctl_ok("override", "del", "--from", "netns:" + client_ns, "--dst", SVC4)
        self.override("netns:" + self.node.netns_path("sbx2"), SVC4, TO4)
        self.assertPod(self.get(N.BASE4, "/o2"), "baseline", "override of another pod applied")
        self.assertEqual(self.kernel()["overridden"], k1["overridden"])

    def test_ipv6_and_listing(self):
        client_ns = "netns:" + self.node.netns_path("client")
        self.override(client_ns, SVC6, TO6, ttl="1h")
        c = self.connect(N.BASE6)
        self.assertEqual(c.peer[:2], (N.BASE6, N.HTTP_PORT))
        self.assertPod(c.request("GET", "/v6", []), "sandbox")
        lst = self.overrides()
        self.assertEqual(len(lst), 1, lst)
        o = lst[0]
        self.assertEqual((o["from"], o["dst"], o["to"], o["source"]), (client_ns, SVC6, TO6, "api"))
        self.assertIsInstance(o["netns_cookie"], int)
        self.assertTrue(3590 <= o["ttl_left"] <= 3600, o)
        text = self.node.ctl_ok("override", "list").stdout
        self.assertIn(client_ns, text)
        self.assertIn("fd00:211::30", text)
        self.assertEqual(self.node.status()["overrides"], 1)
        # the pinned map says the same, readably
        p = N.run(["bpftool", "map", "dump", "pinned", os.path.join(self.node.pin, "shunt_overrides")],
                  check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(self.node.netns_path("client"), p.stdout)

    def test_cgroup_override_applies_below_it(self):
        pod = self.child_cgroup("pod-a")
        ctr = self.child_cgroup("pod-a/ctr")
        other = self.child_cgroup("pod-b")
        self.override("cgroup:" + pod, SVC4, TO4)
        got = self.probe_in_cgroup(ctr, N.BASE4)
        self.assertEqual(got["pod"], "sandbox", "a task in a child of the override's cgroup: %r" % got)
        self.assertEqual(got["peer"], [N.BASE4, N.HTTP_PORT], "getpeername() not transparent")
        got = self.probe_in_cgroup(pod, N.BASE4)
        self.assertEqual(got["pod"], "sandbox", "a task in the override's cgroup itself")
        got = self.probe_in_cgroup(other, N.BASE4)
        self.assertEqual(got["pod"], "baseline", "a task in a sibling cgroup was redirected")
        # the deepest cgroup's override wins over its parent's
        self.override("cgroup:" + ctr, SVC4, TO2_4)
        self.assertEqual(self.probe_in_cgroup(ctr, N.BASE4)["pod"], "sandbox2")
        self.assertEqual(self.probe_in_cgroup(pod, N.BASE4)["pod"], "sandbox")

    def test_override_and_routes_on_one_service(self):
        # The service is steered by key for everybody; the override pod's
        # connections skip the proxy and go to its own target.
        self.route(SVC4, "dev-a", TO2_4)
        cg = self.child_cgroup("pod-db")
        self.override("cgroup:" + cg, SVC4, TO4)
        self.assertEqual(self.probe_in_cgroup(cg, N.BASE4)["pod"], "sandbox")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox2", "route through the proxy")
        self.assertPod(self.get(N.BASE4, "/"), "baseline")
        # deleting the override leaves the route's capture in place
        self.node.ctl_ok("override", "del", "--from", self.node.agent_source("cgroup:" + cg), "--dst", SVC4)
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox2")
        self.assertEqual(self.probe_in_cgroup(cg, N.BASE4)["pod"], "baseline")

    def test_ttl_expiry_and_services_map(self):
        client_ns = "netns:" + self.node.netns_path("client")
        self.override(client_ns, SVC4, TO4, ttl="2s")
        svcs = N.run(["bpftool", "-j", "map", "dump", "pinned", os.path.join(self.node.pin, "shunt_services")])
        entries = json.loads(svcs.stdout)
        self.assertEqual(len(entries), 1, entries)
        val = entries[0].get("formatted", entries[0])["value"]
        self.assertEqual((val["routes"], val["overrides"]), (0, 1), val)
        self.assertPod(self.get(N.BASE4, "/"), "sandbox")
        deadline = time.monotonic() + 8
        while self.overrides():
            self.assertLess(time.monotonic(), deadline, "override with --ttl 2s still listed after 8 s")
            time.sleep(0.2)
        self.assertPod(self.get(N.BASE4, "/"), "baseline", "after the override expired")
        for m in ("shunt_overrides", "shunt_services"):
            p = N.run(["bpftool", "-j", "map", "dump", "pinned", os.path.join(self.node.pin, m)])
            self.assertEqual(json.loads(p.stdout), [], "%s not empty after expiry" % m)
        self.assertIn("override expired: from " + client_ns, self.node.shuntd_output())

    def test_survives_agent_crash_and_is_recovered(self):
        client_ns = "netns:" + self.node.netns_path("client")
        self.override(client_ns, SVC4, TO4, ttl="1h")
        self.route(SVC6, "dev-a", TO6)
        before = self.overrides()
        self.node.expected_exit = True
        self.node.shuntd_stop(signal.SIGKILL)
        # No agent: the pinned links keep the programs attached, so the
        # override still holds (a sandbox never falls back to the shared
        # database), while steered services fail open to the baseline.
        self.assertPod(self.get(N.BASE4, "/"), "sandbox", "override lost when the agent died")
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-a")]), "baseline", "no fail open")
        self.node.shuntd_start()
        after = self.overrides()
        for o in before + after:
            o.pop("ttl_left")  # a second may have passed
        self.assertEqual(after, before, "override not recovered from the pinned map")
        self.assertIn("recovered 1 route(s) and 1 override(s)", self.node.shuntd_output())
        self.assertPod(self.get(N.BASE4, "/"), "sandbox", "recovered override not applied")

    def test_bad_input(self):
        def check(args, code, text):
            p = self.node.ctl("override", *args)
            self.assertEqual(p.returncode, code, "%s: %s %s" % (args, p.stdout, p.stderr))
            self.assertIn(text, p.stderr)

        ns = "netns:" + self.node.netns_path("client")
        check(["add", "--from", "bogus", "--dst", SVC4, "--to", TO4], 2,
              "is not netns:PATH, pid:PID or cgroup:PATH")
        check(["add", "--from", "netns:relative", "--dst", SVC4, "--to", TO4], 2, "must be absolute")
        check(["add", "--from", "netns:/etc/hostname", "--dst", SVC4, "--to", TO4], 1,
              "/etc/hostname is not a network namespace")
        check(["add", "--from", "netns:/nonexistent", "--dst", SVC4, "--to", TO4], 1, "No such file")
        check(["add", "--from", "cgroup:/tmp", "--dst", SVC4, "--to", TO4], 1, "is not a directory in a cgroup v2 hierarchy")
        check(["add", "--from", "pid:0", "--dst", SVC4, "--to", TO4], 2, "not a process id")
        check(["add", "--from", ns, "--dst", SVC4, "--to", TO6], 2, "address family")
        check(["add", "--from", ns, "--dst", SVC4], 2, "--to is required")
        check(["add", "--from", ns, "--dst", SVC4, "--to", TO4, "--key", "x"], 2, "takes --from")
        check(["del", "--from", ns, "--dst", SVC4], 1, "no override from")
        self.assertEqual(self.overrides(), [])
        # pid: names the process's netns
        self.override("pid:%d" % os.getpid(), SVC4, TO4)
        self.assertPod(self.get(N.BASE4, "/"), "baseline", "the test's own netns is not the client's")
