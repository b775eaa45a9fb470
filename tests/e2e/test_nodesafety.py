# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The proxy never dials into the node (issue 9, finding 1).

A server listens on every address of the node netns (where shuntd runs)
at NODE_PORT: its loopback (127.0.0.1, ::1), the node's own addresses
(10.211.0.1, fd00:211::1, and one added during a test) and anything else
the node holds. A route, routes-file line or override that would send
traffic there is refused with the rule it breaks, and the proxy checks
again before every upstream connect(): the server must never see a
request. (SandboxRoutes: test_k8s.py, K8sNodeSafety.)
"""

import os
import signal
import time

import node as N
from base import SVC4, SVC6, NodeTestCase
from httpmsg import key_header

NODE_PORT = 8081
SERVER = "node-self"
RULE = "shunt never sends traffic to the node"

# (target, what the refusal says)
REFUSED_TARGETS = [
    ("127.0.0.1:%d" % NODE_PORT, "a loopback address"),
    ("127.1.2.3:%d" % NODE_PORT, "a loopback address"),
    ("[::1]:%d" % NODE_PORT, "a loopback address"),
    ("%s:%d" % (N.NODE4, NODE_PORT), "an address of this node"),
    ("[%s]:%d" % (N.NODE6, NODE_PORT), "an address of this node"),
    ("169.254.169.254:80", "a link-local address"),
    ("[fe80::1]:80", "a link-local address"),
    ("%s:%d" % (N.NODE4, N.PROXY_PORT), "the proxy's own listen address"),
    ("0.0.0.0:%d" % NODE_PORT, "an unspecified address"),
    ("[::]:%d" % NODE_PORT, "an unspecified address"),
    ("224.0.0.1:%d" % NODE_PORT, "a multicast address"),
    ("[ff02::1]:%d" % NODE_PORT, "a multicast address"),
    ("255.255.255.255:%d" % NODE_PORT, "a broadcast address"),
    ("%s.255:%d" % (N.NET4, NODE_PORT), "a broadcast address"),  # the node subnet's
]


class NodeSafety(NodeTestCase):
    node_opts = {"config": "# e2e: empty at first\n"}

    @classmethod
    def prepare_node(cls, node):
        # Listens on :: (dual-stack) in the node netns: every node address.
        node.start_server(SERVER, "node", NODE_PORT)

    def tearDown(self):
        try:
            self.assertEqual(self.node.requests(SERVER, self.mark), [],
                             "a request reached a server on the node itself")
        finally:
            super().tearDown()

    def reload(self, text):
        off = os.path.getsize(self.node.shuntd_log)
        self.node.write_config(text)
        self.node.shuntd.send_signal(signal.SIGHUP)
        return off

    def wait_log(self, off, needle, timeout=5):
        deadline = time.monotonic() + timeout
        while needle not in self.node.shuntd_output(since=off):
            self.assertLess(time.monotonic(), deadline, "shuntd did not log %r; it said:\n%s"
                            % (needle, self.node.shuntd_output(since=off)[-2000:]))
            time.sleep(0.05)

    def test_shuntctl_refuses_every_node_destination(self):
        for target, why in REFUSED_TARGETS:
            svc = SVC6 if target.startswith("[") else SVC4
            p = self.node.ctl("route", "add", "--service", svc, "--key", "k-node", "--to", target)
            self.assertEqual(p.returncode, 1, "route add --to %s: %s%s" % (target, p.stdout, p.stderr))
            self.assertIn(why, p.stderr, target)
            self.assertIn(RULE, p.stderr, target)
            self.assertIn("sandbox " + target, p.stderr)
        # The captured service too: the proxy dials it for unkeyed requests.
        for svc, why in [("127.0.0.1:%d" % NODE_PORT, "a loopback address"),
                         ("%s:%d" % (N.NODE4, NODE_PORT), "an address of this node"),
                         ("169.254.169.254:80", "a link-local address")]:
            p = self.node.ctl("route", "add", "--service", svc, "--key", "k-node", "--to", TO_OK)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("service %s is %s" % (svc, why), p.stderr)
        # Where an override sends a pod's connections: likewise.
        p = self.node.ctl("override", "add", "--from", "netns:" + self.node.netns_path("client"),
                          "--dst", SVC4, "--to", "127.0.0.1:%d" % NODE_PORT)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("override target 127.0.0.1:%d is a loopback address" % NODE_PORT, p.stderr)
        self.assertEqual([r for r in self.node.routes() if r["key"] == "k-node"], [])
        self.assertEqual(self.node.ctl_json("override", "list"), [])
        self.assertEqual(self.node.map_dump("shunt_services"), [], "something is captured")
        # Keyed requests keep reaching the baseline, never the node.
        self.assertPod(self.get(N.BASE4, "/", [key_header("k-node")]), "baseline")
        # A pod-to-pod route is fine, and the refusals left no trace.
        self.node.route_add(SVC4, "k-ok", TO_OK)
        self.assertPod(self.get(N.BASE4, "/", [key_header("k-ok")]), "sandbox")

    def test_routes_file_refused_whole_naming_the_line(self):
        off = self.reload("route %s k-file %s\n" % (SVC4, TO_OK))
        self.wait_log(off, "1 route(s) and 0 override(s) in force")
        self.assertPod(self.get(N.BASE4, "/", [key_header("k-file")]), "sandbox")
        for target, why in [("127.0.0.1:%d" % NODE_PORT, "a loopback address"),
                            ("%s:%d" % (N.NODE4, NODE_PORT), "an address of this node"),
                            ("169.254.169.254:80", "a link-local address")]:
            off = self.reload("route %s k-file %s\n# the next line is refused\nroute %s k-bad %s\n"
                              % (SVC6, "[%s]:8080" % N.SBX6, SVC4, target))
            self.wait_log(off, "routes.conf: line 3: sandbox %s is %s" % (target, why))
            self.wait_log(off, "the previous routes stay in force")
            keys = {(r["service"], r["key"]) for r in self.node.routes() if r["source"] == "file"}
            self.assertEqual(keys, {(SVC4, "k-file")}, "the bad file changed the routes")
            self.assertPod(self.get(N.BASE4, "/", [key_header("k-bad")]), "baseline")
        off = self.reload("override netns:%s %s 127.0.0.1:%d\n" % (self.node.netns_path("client"), SVC4, NODE_PORT))
        self.wait_log(off, "routes.conf: line 1: override target 127.0.0.1:%d is a loopback" % NODE_PORT)
        self.assertEqual(self.node.ctl_json("override", "list"), [])
        self.reload("# e2e: empty\n")

    def test_checked_again_at_connect_time(self):
        # Routes to an address nobody has yet, and a service at another.
        spare_to, spare_svc = N.NET4 + ".77", N.NET4 + ".78"
        to = "%s:%d" % (spare_to, NODE_PORT)
        svc = "%s:%d" % (spare_svc, NODE_PORT)
        self.node.route_add(SVC4, "k-late", to)
        self.node.route_add(svc, "k-any", TO_OK)
        before = self.node.status()["proxy"]["dst_refused"]
        # Then the node takes both addresses (a new node IP, a VIP).
        for a in (spare_to, spare_svc):
            N.run(["ip", "-n", self.node.ns("node"), "addr", "add", a + "/32", "dev", "lo"])
            self.addCleanup(N.run, ["ip", "-n", self.node.ns("node"), "addr", "del", a + "/32", "dev", "lo"],
                            check=False)
        deadline = time.monotonic() + 5
        while True:
            r = self.get(N.BASE4, "/", [key_header("k-late")])
            if r.status == 502 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 502, "the sandbox turned node address was dialled: %r" % r)
        self.assertIn(b"refusing to connect to %s: it is an address of this node" % to.encode(), r.body)
        # The original destination of a captured connection, likewise.
        r = self.get(spare_svc, "/", [], port=NODE_PORT)
        self.assertEqual(r.status, 502, r)
        self.assertIn(b"refusing to connect to %s" % svc.encode(), r.body)
        self.assertGreaterEqual(self.node.status()["proxy"]["dst_refused"], before + 2)
        # A restart does not bring them back from the pins.
        self.node.shuntd_stop(signal.SIGKILL)
        self.node.expected_exit = True
        off = os.path.getsize(self.node.shuntd_log)
        self.node.shuntd_start()
        self.node.expected_exit = False
        self.wait_log(off, "recovered route key k-late dropped: sandbox %s is an address of this node" % to)
        self.assertEqual({r["key"] for r in self.node.routes()} & {"k-late", "k-any"}, set())


TO_OK = "%s:%d" % (N.SBX4, N.HTTP_PORT)


class NodeSafetyV4Only(NodeTestCase):
    """Dual-stack: a family without a proxy address is not steered, and
    says so instead of failing open silently (finding 9)."""

    node_opts = {"proxy_addrs": (N.NODE4,), "config": "# e2e\n"}

    def test_ipv6_route_refused_naming_proxy_addr(self):
        p = self.node.ctl("route", "add", "--service", SVC6, "--key", "k6", "--to", "[%s]:8080" % N.SBX6)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("service %s is IPv6 and the proxy has no IPv6 address (--proxy-addr)" % SVC6, p.stderr)
        self.assertEqual(self.node.routes(), [])
        st = self.node.status()
        self.assertEqual(st["listen"]["ipv4"], "%s:%d" % (N.NODE4, N.PROXY_PORT), st)
        self.assertIsNone(st["listen"]["ipv6"], st)
        text = self.node.ctl_ok("status").stdout
        self.assertIn("IPv6 none (no --proxy-addr of this family", text)
        off = os.path.getsize(self.node.shuntd_log)
        self.node.write_config("route %s k6 [%s]:8080\n" % (SVC6, N.SBX6))
        self.node.shuntd.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "line 1: service %s is IPv6" % SVC6 not in self.node.shuntd_output(since=off):
            self.assertLess(time.monotonic(), deadline, self.node.shuntd_output(since=off))
            time.sleep(0.05)
        # IPv4 is steered as ever.
        self.node.route_add(SVC4, "k4", TO_OK)
        self.assertPod(self.get(N.BASE4, "/", [key_header("k4")]), "sandbox")
        self.assertPod(self.get(N.BASE6, "/", [key_header("k6")]), "baseline")

    def test_proxy_addr_list_syntax(self):
        for bad, why in [("10.211.0.1,10.211.0.2", "two addresses of one family"),
                         ("10.211.0.1,", "not an address list"), ("nope", "not an IP address"),
                         (",fd00::1", "not an address list")]:
            p = N.run([self.node.shuntd_bin, "--cgroup", self.node.cg, "--proxy-addr", bad], check=False)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(why, p.stderr)
