# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""HTTP/1.1 semantics through the proxy: framing, bodies, interim responses,
connection management, upgrades, upstream pooling and upstream failures."""

import json
import os
import random
import time

import node as N
from base import DEAD4, DEAD6, SVC4, SVC6, TO2_4, TO4, TO6, NodeTestCase
from httpmsg import build_request, key_header, sha256

KEY = [key_header("dev-a")]


class Http(NodeTestCase):
    def setUp(self):
        super().setUp()
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC4, "dev-b", TO2_4)
        self.route(SVC6, "dev-a", TO6)

    def test_head_split_across_writes(self):
        hs = [("User-Agent", "split-test"), ("Accept", "*/*"), ("X-Padding", "p" * 40), key_header("dev-a")]
        for chunk, delay in ((1, 0.003), (2, 0.002), (7, 0.005), (50, 0.02)):
            with self.subTest(chunk=chunk):
                c = self.connect(N.BASE4)
                req = build_request("GET", "/split/%d" % chunk, hs, host=SVC4)
                c.send(req, chunk=chunk, delay=delay)
                r = c.response()
                self.assertPod(r, "sandbox", "head sent %d byte(s) per write" % chunk)
                self.assertEqual(r.json()["path"], "/split/%d" % chunk)
                # and the connection still works for a second, unkeyed request
                self.assertPod(c.request("GET", "/after", []), "baseline")
                c.close()
        # A body split byte by byte too, with the key in the last header line.
        c = self.connect(N.BASE4)
        body = b"0123456789" * 5
        c.send(build_request("POST", "/echo", [("Content-Length", "50"), key_header("dev-b")], body, host=SVC4),
               chunk=1, delay=0.001)
        r = c.response()
        self.assertPod(r, "sandbox2")
        self.assertEqual(r.body, body)

    def test_pipelined_requests_different_keys_in_order(self):
        plan = [("/slow?ms=400&n=1", [key_header("dev-a")], "sandbox"),
                ("/p2", [], "baseline"),
                ("/slow?ms=200&n=3", [key_header("dev-b")], "sandbox2"),
                ("/p4", [key_header("dev-a", "uber")], "sandbox"),
                ("/p5", [key_header("nobody")], "baseline"),
                ("/p6", [key_header("dev-a")], "sandbox")]
        data = b"".join(build_request("GET", p, hs, host=SVC4) for p, hs, _ in plan)
        c = self.connect(N.BASE4)
        c.send(data)  # one write
        for i, (path, _, pod) in enumerate(plan):
            r = c.response(timeout=10)
            self.assertIsNotNone(r, "connection closed after %d of %d pipelined responses" % (i, len(plan)))
            self.assertPod(r, pod, "pipelined response %d" % i)
            self.assertEqual(r.json()["path"], path, "pipelined responses out of order")
        rest, closed = c.recv(timeout=0.3)
        self.assertEqual(rest, b"", "extra bytes after the pipelined responses")

    def test_content_length_bodies_both_directions(self):
        rnd = random.Random(7)
        c = self.connect(N.BASE4)
        for size, hs, pod in ((1, KEY, "sandbox"), (70000, KEY, "sandbox"), (1 << 20, [], "baseline"),
                              (333333, [key_header("dev-b")], "sandbox2")):
            with self.subTest(size=size, pod=pod):
                body = rnd.randbytes(size)
                r = c.request("POST", "/echo", hs, body, timeout=20)
                self.assertPod(r, pod)
                self.assertEqual(r.framing, "content-length")
                self.assertEqual(len(r.body), size)
                self.assertEqual(sha256(r.body), sha256(body), "body corrupted on the way")
                self.assertEqual(r.header("X-Body-Sha256"), sha256(body), "upstream received a different body")
        r = c.request("GET", "/big?bytes=5000000", KEY, timeout=20)
        self.assertPod(r, "sandbox")
        self.assertEqual(sha256(r.body), r.header("X-Body-Sha256"))

    def test_chunked_bodies_both_directions(self):
        rnd = random.Random(8)
        c = self.connect(N.BASE4)
        for size, hs, pod in ((0, KEY, "sandbox"), (5, KEY, "sandbox"), (200000, KEY, "sandbox"),
                              (100000, [], "baseline")):
            with self.subTest(size=size, pod=pod):
                body = rnd.randbytes(size)
                r = c.request("POST", "/echo?chunked=1", hs, body, chunked=True, chunk_sizes=(1, 4096, 100, 77777),
                              timeout=20)
                self.assertPod(r, pod)
                self.assertEqual(r.framing, "chunked")
                self.assertEqual(sha256(r.body), sha256(body), "chunked body corrupted")
                self.assertEqual(r.header("X-Body-Sha256"), sha256(body), "upstream received a different body")
        with self.subTest("chunked request with trailers, extensions"):
            raw = build_request("POST", "/echo", KEY + [("Transfer-Encoding", "chunked")], host=SVC4)
            raw += b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trail: t\r\n\r\n"
            c.send(raw)
            r = c.response()
            self.assertPod(r, "sandbox")
            self.assertEqual(r.body, b"hello world")
        with self.subTest("chunked response with trailer"):
            r = c.request("GET", "/chunked", KEY)
            self.assertPod(r, "sandbox")
            self.assertEqual(r.framing, "chunked")
            self.assertEqual(r.json()["path"], "/chunked")
            self.assertIn(("X-Trailer", "done"), r.trailers, "response trailer lost")
        r = c.request("GET", "/big?bytes=3000000&chunked=1", [], timeout=20)
        self.assertPod(r, "baseline")
        self.assertEqual(sha256(r.body), r.header("X-Body-Sha256"))
        self.assertPod(c.request("GET", "/after", KEY), "sandbox")

    def test_expect_100_continue(self):
        for hs, pod in ((KEY, "sandbox"), ([], "baseline")):
            with self.subTest(pod=pod):
                c = self.connect(N.BASE4)
                body = b"x" * 10000
                c.send(build_request("POST", "/echo", hs + [("Expect", "100-continue"), ("Content-Length", "10000")],
                                     host=SVC4, content_length=False))
                r = c.response(timeout=3)
                self.assertIsNotNone(r)
                self.assertEqual(r.status, 100, "expected an interim 100 Continue before the body is sent, got %r" % r)
                c.send(body)
                r = c.response()
                self.assertEqual(r.status, 200)
                self.assertPod(r, pod)
                self.assertEqual(r.body, body)
                self.assertPod(c.request("GET", "/again", hs), pod, "keep-alive after 100-continue")

    def test_connection_close_from_client(self):
        c = self.connect(N.BASE4)
        r = c.request("GET", "/", KEY + [("Connection", "close")])
        self.assertPod(r, "sandbox")
        self.expect_closed(c, "client sent Connection: close", timeout=3)

    def test_connection_close_from_upstream(self):
        for hs, pod in ((KEY, "sandbox"), ([], "baseline")):
            with self.subTest(pod=pod):
                c = self.connect(N.BASE4)
                r = c.request("GET", "/close", hs)
                self.assertPod(r, pod)
                self.assertIn("close", (r.header("Connection") or "").lower())
                self.expect_closed(c, "upstream answered Connection: close", timeout=3)

    def test_head_204_304_keep_alive(self):
        c = self.connect(N.BASE4)
        steps = [("HEAD", "/", KEY, 200, "sandbox"), ("GET", "/status/204", KEY, 204, "sandbox"),
                 ("GET", "/status/304", [], 304, "baseline"), ("HEAD", "/chunked", KEY, 200, "sandbox"),
                 ("HEAD", "/big?bytes=100000", [], 200, "baseline"), ("GET", "/status/204", [], 204, "baseline"),
                 ("GET", "/status/304", KEY, 304, "sandbox"), ("GET", "/last", KEY, 200, "sandbox")]
        for method, path, hs, status, pod in steps:
            with self.subTest(method=method, path=path):
                r = c.request(method, path, hs)
                self.assertEqual(r.status, status)
                self.assertPod(r, pod)
                if method == "HEAD" or status in (204, 304):
                    self.assertEqual(r.body, b"")
        self.assertEqual(r.json()["path"], "/last")
        rest, closed = c.recv(timeout=0.3)
        self.assertEqual((rest, closed), (b"", False), "stray bytes or close after bodiless responses")

    def test_upgrade_websocket_tunnelled(self):
        payload = (b"GET /not-a-request HTTP/1.1\r\nbaggage: sd-routing-key=dev-b\r\n\r\n" + bytes(range(256)) * 40)
        for hs, pod in ((KEY, "sandbox"), ([], "baseline"), ([key_header("dev-b")], "sandbox2")):
            with self.subTest(pod=pod):
                mark = self.node.mark()
                c = self.connect(N.BASE4)
                r = c.request("GET", "/ws", hs + [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                 ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                 ("Sec-WebSocket-Version", "13")])
                self.assertEqual(r.status, 101)
                self.assertPod(r, pod)
                self.assertEqual(r.header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                for part in (payload, b"\x81\x05hello", payload[:7]):
                    c.send(part)
                    got, closed = c.recv(n=len(part), timeout=3)
                    self.assertEqual(got, part, "tunnelled bytes changed or lost")
                c.shutdown_wr()
                self.expect_closed(c, "tunnel after client EOF", timeout=3)
                reqs = [e["path"] for n in ("baseline", "sandbox", "sandbox2") for e in self.node.requests(n, mark)]
                self.assertEqual(reqs, ["/ws"], "bytes after the upgrade were parsed as HTTP")

    def test_upstream_connection_pooling(self):
        # Each worker has its own pool: connections made on one CPU go to
        # one worker, so the client stays on one CPU.
        cpus = os.sched_getaffinity(self.node.client.pid)
        os.sched_setaffinity(self.node.client.pid, {min(cpus)})
        try:
            self.pooling()
        finally:
            os.sched_setaffinity(self.node.client.pid, cpus)

    def pooling(self):
        for hs, pod in ((KEY, "sandbox"), ([], "baseline")):
            with self.subTest(pod=pod):
                mark = self.node.mark()
                before = self.node.status()["proxy"]
                for i in range(4):
                    c = self.connect(N.BASE4)
                    self.assertPod(c.request("GET", "/pool/%d" % i, hs), pod)
                    c.close()
                after = self.node.status()["proxy"]
                peers = [e["peer"] for e in self.node.requests(pod, mark)]
                self.assertEqual(len(peers), 4)
                self.assertEqual(len(set(peers)), 1, "upstream connections not reused: %s" % peers)
                self.assertGreaterEqual(after["upstream_reused"] - before["upstream_reused"], 3)

    def test_sandbox_unreachable_is_an_explicit_error(self):
        self.route(SVC4, "dev-dead", DEAD4)
        self.route(SVC6, "dev-dead", DEAD6)
        for ip, dead in ((N.BASE4, DEAD4), (N.BASE6, DEAD6)):
            with self.subTest(ip=ip):
                mark = self.node.mark()
                c = self.connect(ip)
                r = c.request("GET", "/", [key_header("dev-dead")], timeout=8)
                self.assertIn(r.status, (502, 503), r)
                self.assertIn(dead.encode(), r.body, "error body does not name the sandbox %s: %r" % (dead, r.body))
                self.assertEqual(self.node.upstream_traffic(mark), [], "request silently went somewhere")
                # The client connection stays usable (or is closed cleanly), never hangs.
                if "close" not in (r.header("Connection") or "").lower():
                    self.assertPod(c.request("GET", "/next", []), "baseline")

    def test_sandbox_unreachable_fallback_baseline(self):
        self.route(SVC4, "dev-fb", DEAD4, fallback="baseline")
        self.route(SVC6, "dev-fb", DEAD6, fallback="baseline")
        for ip in (N.BASE4, N.BASE6):
            with self.subTest(ip=ip):
                r = self.get(ip, "/fb", [key_header("dev-fb")], timeout=8)
                self.assertEqual(r.status, 200)
                self.assertPod(r, "baseline")
                self.assertEqual(r.json()["path"], "/fb")

    def test_client_half_close_still_gets_response(self):
        c = self.connect(N.BASE4)
        c.send(build_request("GET", "/half", KEY, host=SVC4))
        c.shutdown_wr()
        r = c.response()
        self.assertIsNotNone(r, "no response after the client half-closed")
        self.assertPod(r, "sandbox")
        self.expect_closed(c, "after the response to a half-closed client")

    def test_truncated_upstream_response_closes_client(self):
        for hs in (KEY, []):
            with self.subTest(keyed=bool(hs)):
                c = self.connect(N.BASE4)
                c.send(build_request("GET", "/truncate", hs, host=SVC4))
                r = c.wait_closed(timeout=4)
                self.assertTrue(r["closed"], "client left hanging after the upstream died mid-body (got %r)"
                                % r["data"][:200])
                # Never a complete-looking response with a short body followed by keep-alive.
                self.assertLessEqual(len(r["data"].partition(b"\r\n\r\n")[2]), 10)

    def test_slow_upstream_does_not_block_other_connections(self):
        slow = self.connect(N.BASE4)
        slow.send(build_request("GET", "/slow?ms=1500", KEY, host=SVC4))
        fast = self.connect(N.BASE4)
        for hs, pod in ((KEY, "sandbox"), ([], "baseline")):
            c, _ = self.client.try_connect(N.BASE4, N.HTTP_PORT)
            self.conns.append(c)
            r = c.request("GET", "/fast", hs, timeout=1)
            self.assertPod(r, pod, "while another request waits on a slow upstream")
        self.assertPod(fast.request("GET", "/fast2", KEY, timeout=1), "sandbox")
        self.assertPod(slow.response(timeout=5), "sandbox")

    def test_many_concurrent_connections(self):
        conns = [self.connect(N.BASE4 if i % 3 else N.BASE6) for i in range(40)]
        keys = [("dev-a", "sandbox"), (None, "baseline"), ("dev-b", "sandbox2"), ("dev-zz", "baseline")]
        for rnd in range(4):
            for i, c in enumerate(conns):
                key, _ = keys[(i + rnd) % len(keys)]
                if c.peer[0] == N.BASE6 and key == "dev-b":
                    key = "dev-zz"  # dev-b has no IPv6 route
                c.send(build_request("GET", "/conc/%d/%d" % (i, rnd), [key_header(key)] if key else [], host="svc"))
            for i, c in enumerate(conns):
                key, pod = keys[(i + rnd) % len(keys)]
                if c.peer[0] == N.BASE6 and key == "dev-b":
                    pod = "baseline"
                r = c.response(timeout=10)
                self.assertPod(r, pod, "connection %d round %d" % (i, rnd))
                self.assertEqual(r.json()["path"], "/conc/%d/%d" % (i, rnd))
        for c in conns:
            c.close()
        # Nothing leaks: the proxy's count of client connections drains.
        deadline = time.monotonic() + 3
        while self.node.status()["proxy"]["active"] > 0:
            self.assertLess(time.monotonic(), deadline,
                            "proxy.active stays at %d after every client closed" % self.node.status()["proxy"]["active"])
            time.sleep(0.1)

    def test_interim_103_then_final_response(self):
        c = self.connect(N.BASE4)
        for hs, pod in ((KEY, "sandbox"), ([], "baseline"), (KEY, "sandbox")):
            c.send(build_request("GET", "/early", hs, host=SVC4))
            r = c.response()
            self.assertEqual(r.status, 103, "interim 103 not forwarded: %r" % r)
            r = c.response()
            self.assertEqual(r.status, 200)
            self.assertPod(r, pod)
            self.assertEqual(r.json()["path"], "/early")

    def test_close_delimited_upstream_body(self):
        for hs, pod in ((KEY, "sandbox"), ([], "baseline")):
            with self.subTest(pod=pod):
                c = self.connect(N.BASE4)
                r = c.request("GET", "/eof-body", hs)
                self.assertPod(r, pod)
                self.assertTrue(r.body.startswith(b"until-eof:{"), r.body[:100])
                self.assertEqual(json.loads(r.body[len(b"until-eof:"):])["path"], "/eof-body")
                self.expect_closed(c, "after a close-delimited body")

    def test_http_1_0_request(self):
        for hs, pod in ((KEY, "sandbox"), ([], "baseline")):
            with self.subTest(pod=pod):
                c = self.connect(N.BASE4)
                c.send(build_request("GET", "/old", hs, host=SVC4, version="HTTP/1.0"))
                r = c.response()
                self.assertEqual(r.status, 200)
                self.assertPod(r, pod)
                self.expect_closed(c, "HTTP/1.0 request without keep-alive")
        c = self.connect(N.BASE4)
        for i in range(2):
            r = c.request("GET", "/old-ka/%d" % i, KEY + [("Connection", "keep-alive")], version="HTTP/1.0")
            self.assertPod(r, "sandbox", "HTTP/1.0 keep-alive request %d" % i)
