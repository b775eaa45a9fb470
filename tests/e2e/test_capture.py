# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""What is captured at connect() time, and route changes seen by open connections."""

import time

import node as N
from base import SVC4, TO2_4, TO4, NodeTestCase
from httpmsg import key_header


class Capture(NodeTestCase):
    def _counters(self):
        s = self.node.status()
        return s["kernel"], s["proxy"]

    def test_service_without_routes_is_not_captured(self):
        # Another service is steered, so the programs are live and busy.
        self.route(TO2_4, "dev-z", TO4)
        k0, p0 = self._counters()
        for i in range(5):
            r = self.get(N.BASE4, "/unsteered/%d" % i, [key_header("dev-a")])
            self.assertPod(r, "baseline")
            self.assertTrue(r.json()["peer"].startswith(N.CLIENT4 + ":"),
                            "baseline saw %s: not a direct connection from the client" % r.json()["peer"])
        k1, p1 = self._counters()
        self.assertGreaterEqual(k1["connect"] - k0["connect"], 5,
                                "connect hook did not see the client's connects (cgroup not attached?)")
        self.assertEqual(k1["captured"], k0["captured"], "a service without routes was captured")
        self.assertEqual(p1["accepted"], p0["accepted"], "the proxy accepted connections for an unsteered service")

        self.route(SVC4, "dev-a", TO4)
        for i in range(3):
            self.assertPod(self.get(N.BASE4, "/steered/%d" % i, [key_header("dev-a")]), "sandbox")
        k2, p2 = self._counters()
        self.assertGreaterEqual(k2["captured"] - k1["captured"], 3, "steered service not captured")
        self.assertGreaterEqual(p2["accepted"] - p1["accepted"], 3)
        self.assertGreaterEqual(p2["to_sandbox"] - p1["to_sandbox"], 3)

    def test_capture_stops_when_last_route_is_deleted(self):
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC4, "dev-b", TO2_4)
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox")
        self.node.route_del(SVC4, "dev-a")
        k0, _ = self._counters()
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-b")]), "sandbox2")
        k1, _ = self._counters()
        self.assertEqual(k1["captured"] - k0["captured"], 1, "service with one route left must stay captured")
        self.node.route_del(SVC4, "dev-b")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-b")]), "baseline")
        k2, _ = self._counters()
        self.assertEqual(k2["captured"], k1["captured"], "service still captured after its last route was deleted")

    def test_route_add_del_applies_to_open_keepalive_connection(self):
        # The service must be steered when the connection is made.
        self.route(SVC4, "dev-other", TO2_4)
        c = self.connect(N.BASE4)
        self.assertPod(c.request("GET", "/1", [key_header("dev-a")]), "baseline", "before route add")
        self.route(SVC4, "dev-a", TO4)
        self.assertPod(c.request("GET", "/2", [key_header("dev-a")]), "sandbox", "right after route add")
        self.assertPod(c.request("GET", "/3", []), "baseline")
        self.node.ctl_ok("route", "add", "--service", SVC4, "--key", "dev-a", "--to", TO2_4)
        self.assertPod(c.request("GET", "/4", [key_header("dev-a")]), "sandbox2", "after route replaced")
        self.node.route_del(SVC4, "dev-a")
        self.assertPod(c.request("GET", "/5", [key_header("dev-a")]), "baseline", "right after route del")
        paths = [e["path"] for e in self.node.requests("baseline", self.mark)]
        self.assertEqual(paths, ["/1", "/3", "/5"])

    def test_route_ttl_expires(self):
        self.route(SVC4, "dev-a", TO4, ttl="2s")
        self.route(SVC4, "dev-keep", TO2_4)
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox")
        lst = [r for r in self.node.routes() if r["key"] == "dev-a"]
        self.assertEqual(len(lst), 1)
        self.assertLessEqual(abs(lst[0]["expires_unix"] - (time.time() + 2)), 3, lst[0])
        deadline = time.monotonic() + 8
        while True:
            pod = self.get(N.BASE4, "/", [key_header("dev-a")]).pod
            if pod == "baseline":
                break
            self.assertLess(time.monotonic(), deadline, "route with ttl=2s still steering after 8s")
            time.sleep(0.5)
        # Expired routes may linger until the agent's next sweep, but not for long.
        deadline = time.monotonic() + 3
        while "dev-a" in [r["key"] for r in self.node.routes()]:
            self.assertLess(time.monotonic(), deadline, "expired route still listed 3s after it stopped steering: %r"
                            % [r for r in self.node.routes() if r["key"] == "dev-a"])
            time.sleep(0.2)
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-keep")]), "sandbox2", "route without ttl")
