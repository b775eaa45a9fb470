# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The harness itself, without shuntd: topology, cgroup membership, and the
test servers' behaviour when talked to directly. When a test in another
module fails through the proxy, these say the same request works direct."""

import node as N
from base import BUILD, NodeTestCase
from httpmsg import build_request, key_header, sha256


class Harness(NodeTestCase):
    node_opts = {"shuntd": False}

    def test_topology_v4_v6(self):
        for ip, pod in ((N.BASE4, "baseline"), (N.BASE6, "baseline"), (N.SBX4, "sandbox"), (N.SBX6, "sandbox"),
                        (N.SBX2_4, "sandbox2"), (N.SBX2_6, "sandbox2")):
            with self.subTest(ip=ip):
                r = self.get(ip, "/hello")
                self.assertEqual(r.status, 200)
                self.assertPod(r, pod)
                peer = r.json()["peer"]
                want = N.CLIENT6 if ":" in ip else N.CLIENT4
                self.assertIn(want, peer, "direct connection should come from the client pod")

    def test_client_worker_and_commands_in_cgroup(self):
        cg = self.client.call("cgroup")["cgroup"]
        self.assertIn("0::/shunt-e2e-%s\n" % self.node.id, cg)
        rc, out, _ = self.node.client_cmd(["cat", "/proc/self/cgroup"])
        self.assertEqual(rc, 0)
        self.assertIn("0::/shunt-e2e-%s\n" % self.node.id, out)
        rc, out, _ = self.node.client_cmd(["ip", "-o", "addr", "show", "dev", "eth0"])
        self.assertIn(N.CLIENT4 + "/24", out)
        # The cgroup tree and the bpffs stay visible inside (nsenter, not ip netns exec).
        rc, out, _ = self.node.client_cmd(["ls", self.node.cg])
        self.assertEqual(rc, 0, "cgroup dir not visible from the client netns")

    def test_server_keepalive_bodies_and_framing(self):
        c = self.connect(N.BASE4)
        body = bytes(range(256)) * 1000
        r = c.request("POST", "/echo", body=body)
        self.assertEqual(r.body, body)
        r = c.request("POST", "/echo?chunked=1", body=body, chunked=True)
        self.assertEqual((r.framing, r.body), ("chunked", body))
        r = c.request("GET", "/chunked")
        self.assertEqual(r.trailers, [("X-Trailer", "done")])
        r = c.request("HEAD", "/")
        self.assertEqual((r.status, r.body), (200, b""))
        self.assertNotEqual(r.header("Content-Length"), "0")
        for code in (204, 304):
            r = c.request("GET", "/status/%d" % code)
            self.assertEqual((r.status, r.body), (code, b""))
        r = c.request("GET", "/big?bytes=300000")
        self.assertEqual(sha256(r.body), r.header("X-Body-Sha256"))
        reqs = self.node.requests("baseline", self.mark)
        self.assertEqual(len(reqs), 7)
        self.assertEqual(len({e["peer"] for e in reqs}), 1, "one keep-alive connection expected")
        self.assertEqual(reqs[1]["body_sha256"], sha256(body))

    def test_server_expect_close_upgrade_echo(self):
        c = self.connect(N.SBX6)
        c.send(build_request("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", "5")], content_length=False))
        r = c.response()
        self.assertEqual(r.status, 100)
        c.send(b"hello")
        self.assertEqual(c.response().body, b"hello")
        r = c.request("GET", "/close")
        self.assertEqual(r.header("Connection"), "close")
        self.expect_closed(c, "/close")

        c = self.connect(N.SBX4)
        r = c.request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        self.assertEqual(r.status, 101)
        c.send(b"GET / HTTP/1.1\r\n\r\n\x00\xff")
        self.assertEqual(c.recv(n=20)[0], b"GET / HTTP/1.1\r\n\r\n\x00\xff")

        e = self.connect(N.BASE6, N.ECHO_PORT)
        e.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        self.assertEqual(e.recv(n=24)[0], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

    def test_server_logs_show_malformed_input(self):
        # assertNoUpstreamTraffic relies on this: bad bytes that reach a server are logged.
        c = self.connect(N.BASE4)
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertEqual(c.response().status, 400)
        c = self.connect(N.BASE4)
        c.send(b"GET / HTTP/1.1\nHost: x\n\n")
        c.shutdown_wr()
        c.wait_closed()
        with self.assertRaises(AssertionError):
            self.assertNoUpstreamTraffic(self.mark, "self-check")
        evs = self.node.events("baseline", self.mark, kinds=("error",))
        self.assertEqual(len(evs), 2, evs)

    def test_key_header_helper(self):
        self.assertEqual(key_header("dev-a"), ("baggage", "sd-routing-key=dev-a"))
        self.assertEqual(build_request("GET", "/", host="h"), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")


class ExtraPods(NodeTestCase):
    """Node(extra_pods=...), add_pod() and the pod_* helpers other suites build on."""

    node_opts = {"shuntd": False,
                 "extra_pods": {"xa": (N.NET4 + ".50", N.NET6 + "50"), "xb": (N.NET4 + ".51", None, True)}}

    @classmethod
    def prepare_node(cls, node):
        node.start_server("extra-a", "xa", N.HTTP_PORT)

    def _cgroup_of(self, pod, **kw):
        rc, out, err = self.node.pod_run(pod, ["cat", "/proc/self/cgroup"], **kw)
        self.assertEqual(rc, 0, err)
        return "0::/shunt-e2e-%s\n" % self.node.id in out

    def test_extra_pods_on_the_bridge_and_in_the_cgroup_when_asked(self):
        for ip in (N.NET4 + ".50", N.NET6 + "50"):
            with self.subTest(ip=ip):
                self.assertPod(self.get(ip, "/x"), "extra-a")
        self.assertEqual(len(self.node.requests("extra-a", self.mark)), 2, "extra-a's log")
        self.assertEqual(self.node.pod("xa")["ns"], "%s-xa" % self.node.id)
        self.assertFalse(self._cgroup_of("xa"), "xa was not asked to be in the cgroup")
        self.assertTrue(self._cgroup_of("xb"))
        self.assertTrue(self._cgroup_of("xa", in_cgroup=True), "in_cgroup=True per process")
        rc, out, _ = self.node.pod_run("xb", ["ip", "-o", "addr", "show", "dev", "eth0"])
        self.assertIn(N.NET4 + ".51/24", out)
        self.assertNotIn("fd00:211:", out, "xb has no IPv6 address")
        # xb reaches the other pods (through the bridge).
        rc, out, err = self.node.pod_run("xb", [N.PYTHON, "-c", "import socket; socket.create_connection(('%s', %d), 3)"
                                                % (N.BASE4, N.HTTP_PORT)])
        self.assertEqual(rc, 0, err)

    def test_add_pod_after_start_and_its_checks(self):
        self.node.add_pod("xc", N.NET4 + ".52", N.NET6 + "52")
        p = self.node.pod_spawn("xc", [N.PYTHON, "-c", "import socket,time; s=socket.create_server(('::', 7000),"
                                       " family=socket.AF_INET6, dualstack_ipv6=True); time.sleep(60)"])
        self.node.wait_listen("xc", 7000, proc=p)
        c = self.connect(N.NET6 + "52", 7000)
        self.assertEqual(c.peer[:2], (N.NET6 + "52", 7000))
        bad = [("node", N.NET4 + ".53", None), ("client", N.NET4 + ".53", None), ("Bad_Name", N.NET4 + ".53", None),
               ("xc", N.NET4 + ".53", None), ("xd", N.NET4 + ".50", None), ("xd", N.NODE4, None),
               ("xd", "10.9.9.9", None), ("xd", N.NET4 + ".255", None), ("xd", N.NET4 + ".53", "fd00:999::1"),
               ("xd", N.NET4 + ".53", N.NET6 + "50"), ("xd", "nope", None)]
        for name, v4, v6 in bad:
            with self.subTest(name=name, v4=v4, v6=v6):
                with self.assertRaises(N.HarnessError):
                    self.node.add_pod(name, v4, v6)
        self.assertNotIn("xd", self.node.pods)

    def test_close_removes_extra_pods_also_after_a_failed_start(self):
        n = N.Node(BUILD, shuntd=False, extra_pods={"ok": (N.NET4 + ".60", N.NET6 + "60"), "bad": ("10.99.0.1", None)})
        try:
            with self.assertRaises(N.HarnessError):
                n.start()
        finally:
            n.close()
        self.assertEqual(N.leaks([n.id]), [])

        n = N.Node(BUILD, shuntd=False, extra_pods={"ok": (N.NET4 + ".60", N.NET6 + "60", True)})
        try:
            n.start()
            n.add_pod("late", N.NET4 + ".61")
            n.pod_spawn("ok", ["sleep", "60"])
            n.pod_spawn("late", ["sleep", "60"], in_cgroup=True)
            self.assertIn("%s-late" % n.id, N.run(["ip", "netns", "list"]).stdout)
            self.assertTrue(N.leaks([n.id]), "leaks() does not see a live node")
        finally:
            n.close()
        self.assertEqual(N.leaks([n.id]), [])
