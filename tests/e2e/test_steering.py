# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Capture and steering: which pod answers, for every way of carrying a key."""

import json
import shutil

import node as N
from base import SVC4, SVC6, TO2_4, TO4, TO6, NodeTestCase
from httpmsg import key_header


class Steering(NodeTestCase):
    def test_no_key_goes_to_baseline(self):
        self.route(SVC4, "dev-a", TO4)
        for hs in ([], [("baggage", "other=1")], [("X-Something", "sd-routing-key=dev-a")]):
            with self.subTest(headers=hs):
                self.assertPod(self.get(N.BASE4, "/nokey", hs), "baseline")

    def test_key_with_route_goes_to_sandbox(self):
        self.route(SVC4, "dev-a", TO4)
        r = self.get(N.BASE4, "/keyed?x=1", [key_header("dev-a")])
        self.assertEqual(r.status, 200)
        self.assertPod(r, "sandbox")
        j = r.json()
        self.assertEqual(j["path"], "/keyed?x=1", "request target must reach the sandbox unchanged")
        self.assertIn(["baggage", "sd-routing-key=dev-a"], j["headers"], "routing header must be forwarded")
        self.assertEqual(self.node.requests("baseline", self.mark), [], "a keyed request also reached the baseline")

    def test_key_without_route_goes_to_baseline(self):
        self.route(SVC4, "dev-a", TO4)
        for key in ("dev-b", "dev-aa", "dev", "DEV-A"):
            with self.subTest(key=key):
                self.assertPod(self.get(N.BASE4, "/", [key_header(key)]), "baseline")

    def test_two_keys_two_sandboxes_and_other_service(self):
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC4, "dev-b", TO2_4)
        self.route(SVC6, "dev-c", TO6)
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-b")]), "sandbox2")
        # dev-c has a route only for the IPv6 service.
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-c")]), "baseline")
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-c")]), "sandbox")
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-a")]), "baseline")

    def test_ipv6_steering(self):
        self.route(SVC6, "dev-a", TO6)
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-a")]), "sandbox")
        self.assertPod(self.get(N.BASE6, "/", []), "baseline")
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-x")]), "baseline")
        c = self.connect(N.BASE6)
        self.assertEqual(c.peer[:2], (N.BASE6, N.HTTP_PORT))
        self.assertPod(c.request("GET", "/", [key_header("dev-a", "uber")]), "sandbox")
        self.assertPod(c.request("GET", "/", []), "baseline")

    def test_keepalive_http_client_different_key_each_request(self):
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC4, "dev-b", TO2_4)
        h = self.http_client(N.BASE4)
        plan = [("dev-a", "baggage", "sandbox"), (None, None, "baseline"), ("dev-b", "tracestate", "sandbox2"),
                ("dev-zz", "baggage", "baseline"), ("dev-a", "ot", "sandbox"), ("dev-a", "uber", "sandbox"),
                (None, None, "baseline"), ("dev-b", "baggage", "sandbox2"), ("dev-a", "baggage", "sandbox")]
        locals_ = set()
        for i, (key, fmt, pod) in enumerate(plan):
            hs = [key_header(key, fmt)] if key else []
            r = h.request("GET", "/req/%d" % i, hs)
            self.assertEqual(r.status, 200)
            self.assertPod(r, pod, "request %d key=%s via %s" % (i, key, fmt))
            self.assertEqual(r.json()["path"], "/req/%d" % i)
            self.assertFalse(r.will_close, "proxy asked to close a keep-alive connection")
            locals_.add(tuple(r.local))
        self.assertEqual(len(locals_), 1, "http.client had to reconnect: %s" % locals_)

    def _curl(self, url, hs=()):
        argv = ["curl", "-sS", "-g", "--max-time", "5", "-D", "-", "--http1.1"]
        for k, v in hs:
            argv += ["-H", "%s: %s" % (k, v)]
        rc, out, err = self.node.client_cmd(argv + [url])
        self.assertEqual(rc, 0, "curl %s failed: %s" % (url, err))
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        pod = [ln.split(":", 1)[1].strip() for ln in head.splitlines() if ln.lower().startswith("x-pod:")]
        return pod[0] if pod else None, json.loads(body)

    def test_curl_v4_and_v6(self):
        if not shutil.which("curl"):
            self.skipTest("curl not installed")
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC6, "dev-a", TO6)
        for base in ("http://10.211.0.20:8080", "http://[fd00:211::20]:8080"):
            with self.subTest(base=base):
                pod, j = self._curl(base + "/c", [key_header("dev-a")])
                self.assertEqual(pod, "sandbox")
                self.assertEqual(j["path"], "/c")
                pod, _ = self._curl(base + "/c")
                self.assertEqual(pod, "baseline")
                pod, _ = self._curl(base + "/c", [("uberctx-sd-routing-key", "dev-b")])
                self.assertEqual(pod, "baseline")

    def test_getpeername_is_the_service(self):
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC6, "dev-a", TO6)
        for ip in (N.BASE4, N.BASE6):
            with self.subTest(ip=ip):
                before = self.node.status()["kernel"]
                c = self.connect(ip)
                after = self.node.status()["kernel"]
                self.assertEqual(c.peer[:2], (ip, N.HTTP_PORT),
                                 "getpeername() after connect() shows %s, not the service" % (c.peer,))
                # Not vacuous: this connection really was captured.
                self.assertGreater(after["captured"], before["captured"], "connection was not captured")
                self.assertPod(c.request("GET", "/", [key_header("dev-a")]), "sandbox")

    def test_key_formats_and_header_case(self):
        self.route(SVC4, "dev-a", TO4)
        cases = [
            ("baggage", "sd-routing-key=dev-a"),
            ("Baggage", "sd-routing-key=dev-a"),
            ("BAGGAGE", "sd-routing-key=dev-a"),
            ("tracestate", "sd-routing-key=dev-a"),
            ("TraceState", "vendor=x,sd-routing-key=dev-a"),
            ("ot-baggage-sd-routing-key", "dev-a"),
            ("OT-Baggage-SD-Routing-Key", "dev-a"),
            ("uberctx-sd-routing-key", "dev-a"),
            ("UBERCTX-SD-ROUTING-KEY", "dev-a"),
            ("uberctx-sd-routing-key", "  dev-a  "),
        ]
        c = self.connect(N.BASE4)
        for name, value in cases:
            with self.subTest(header=name, value=value):
                self.assertPod(c.request("GET", "/", [(name, value)]), "sandbox")
                self.assertPod(c.request("GET", "/", []), "baseline")

    def test_baggage_variants(self):
        self.route(SVC4, "dev-a", TO4)
        many = ", ".join("m%d=v%d" % (i, i) for i in range(60))
        hit = [
            ("many members", [("baggage", many + ", sd-routing-key=dev-a, z=1")]),
            ("first member", [("baggage", "sd-routing-key=dev-a," + many)]),
            ("optional whitespace", [("baggage", "a=1 ,\t sd-routing-key = dev-a\t, c=3")]),
            ("properties", [("baggage", "a=1;p, sd-routing-key=dev-a;prop1=x;prop2, c=3")]),
            ("split header lines", [("baggage", "a=1, b=2"), ("X-Other", "1"), ("baggage", "sd-routing-key=dev-a")]),
            ("percent-encoded value", [("baggage", "sd-routing-key=dev%2Da")]),
            ("baggage wins over uberctx", [("baggage", "sd-routing-key=dev-a"), ("uberctx-sd-routing-key", "dev-b")]),
        ]
        miss = [
            ("prefixed member name", [("baggage", "x-sd-routing-key=dev-a")]),
            ("suffixed member name", [("baggage", "sd-routing-key-2=dev-a")]),
            ("key in a property", [("baggage", "a=1;sd-routing-key=dev-a")]),
            ("longer value", [("baggage", "sd-routing-key=dev-ab")]),
            ("empty value (unusable key)", [("baggage", "sd-routing-key=")]),
            ("overlong value (unusable key)", [("baggage", "sd-routing-key=dev-a" + "x" * 80)]),
            ("baggage wins over uberctx (no route)", [("baggage", "sd-routing-key=dev-b"),
                                                     ("uberctx-sd-routing-key", "dev-a")]),
        ]
        c = self.connect(N.BASE4)
        for what, hs in hit:
            with self.subTest(what):
                self.assertPod(c.request("GET", "/", hs), "sandbox", what)
        for what, hs in miss:
            with self.subTest(what):
                self.assertPod(c.request("GET", "/", hs), "baseline", what)

    def test_v4_mapped_address_on_dual_stack_socket(self):
        # Java and Node clients often use AF_INET6 sockets for IPv4 destinations.
        self.route(SVC4, "dev-a", TO4)
        mapped = "::ffff:" + N.BASE4
        before = self.node.status()["kernel"]["captured"]
        c = self.connect(mapped)
        self.assertGreater(self.node.status()["kernel"]["captured"], before, "v4-mapped connect not captured")
        self.assertEqual(c.peer[:2], (mapped, N.HTTP_PORT), "getpeername() on a dual-stack socket")
        self.assertPod(c.request("GET", "/", [key_header("dev-a")]), "sandbox")
        self.assertPod(c.request("GET", "/", []), "baseline")
