# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The harness itself, without shuntd: topology, cgroup membership, and the
test servers' behaviour when talked to directly. When a test in another
module fails through the proxy, these say the same request works direct."""

import node as N
from base import NodeTestCase
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
