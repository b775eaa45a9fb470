# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Route lifecycle: TTL deadlines in every copy of the routes (the agent's
table, the pinned maps, the proxy's decisions), TTL renewal, and what
happens to capture and to open connections when a service's last route goes.

test_capture.py has the basics (a 2s route stops steering; capture stops
after the last del); these look at the deadline itself, the kernel state
and the keep-alive connections.

Deadlines are whole unix seconds (expires_unix = now + ttl, truncated) and
the agent sweeps once a second, so a route is removed in
[expires_unix, expires_unix + 1s + scheduling]. The tests poll and compare
against expires_unix as the agent reports it, never against a sleep.
"""

import signal
import time

import node as N
from base import SVC4, SVC6, TO2_4, TO4, TO6, NodeTestCase
from httpmsg import key_header

SWEEP_SLACK = 3.5  # one sweep period, plus room for a busy 2-CPU machine
COARSE_CLOCK = 0.05  # time() in the agent may lag time.time() by a tick


def start_of_second():
    """Wait for the start of a wall-clock second, so that a TTL of N seconds
    lasts almost N seconds (the agent truncates now to whole seconds)."""
    frac = time.time() % 1
    if frac > 0.25:
        time.sleep(1.02 - frac)


class Lifecycle(NodeTestCase):
    # ---- views of the three copies of the routes ------------------------------
    def listed(self, service, key):
        """(the route-list entry or None, time before asking, time after)."""
        t0 = time.time()
        lst = self.node.routes()
        t1 = time.time()
        hit = [r for r in lst if r["service"] == service and r["key"] == key]
        self.assertLessEqual(len(hit), 1, lst)
        return (hit[0] if hit else None), t0, t1

    def pinned_routes(self):
        """(service, key) -> value, from <pin>/shunt_routes."""
        return {(N.addr_text(e["key"]["service"]), e["key"]["key"]): e["value"]
                for e in self.node.map_dump("shunt_routes")}

    def pinned_services(self):
        """service -> number of routes, from <pin>/shunt_services."""
        return {N.addr_text(e["key"]): e["value"]["routes"] for e in self.node.map_dump("shunt_services")}

    def kernel(self):
        return self.node.status()["kernel"]

    def wait_gone(self, service, key, deadline_unix):
        """Poll route list until the route is gone; it must not go before
        deadline_unix, and must be gone by deadline_unix + SWEEP_SLACK.
        Returns the ttl_left values seen on the way."""
        seen = []
        while True:
            r, t0, t1 = self.listed(service, key)
            if r is None:
                self.assertGreaterEqual(t1, deadline_unix, "route %s %s removed before its deadline %d (%.2fs early)"
                                        % (service, key, deadline_unix, deadline_unix - t1))
                return seen
            self.assertEqual(r["expires_unix"], deadline_unix, "the deadline moved by itself: %r" % r)
            # ttl_left is the deadline minus the agent's now rounded up to a
            # whole second (as deadlines are); its clock may be a tick behind.
            lo, hi = max(deadline_unix - int(t1) - 1, 0), max(deadline_unix - int(t0 - COARSE_CLOCK), 0)
            self.assertTrue(lo <= r["ttl_left"] <= hi, "ttl_left %r, expected %d..%d" % (r["ttl_left"], lo, hi))
            seen.append(r["ttl_left"])
            self.assertLess(t0, deadline_unix + SWEEP_SLACK, "route %s %s still listed %.1fs after its deadline"
                            % (service, key, t0 - deadline_unix))
            time.sleep(0.1)

    # ---- tests ---------------------------------------------------------------
    def test_ttl_route_removed_at_its_deadline_everywhere(self):
        self.route(SVC4, "dev-keep", TO2_4)  # SVC4 stays steered by this one
        start_of_second()
        self.route(SVC4, "dev-ttl", TO4, ttl="2s")
        self.route(SVC6, "dev-ttl", TO6, ttl="2s")  # SVC6's only route
        added = time.time()
        r4, _, _ = self.listed(SVC4, "dev-ttl")
        r6, _, _ = self.listed(SVC6, "dev-ttl")
        self.assertIsNotNone(r4)
        self.assertIsNotNone(r6)
        deadline = r4["expires_unix"]
        # rounded up: a 2 s TTL never ends before 2 s have passed
        self.assertIn(deadline - int(added), (2, 3), "ttl 2s became deadline %d at %.2f" % (deadline, added))
        self.assertIn(r6["expires_unix"], (deadline, deadline + 1))

        routes = self.pinned_routes()
        self.assertEqual(routes[(SVC4, "dev-ttl")]["expires_unix"], deadline, "pinned copy: %r" % routes)
        self.assertEqual(routes[(SVC4, "dev-keep")]["expires_unix"], 0)
        self.assertEqual(self.pinned_services(), {SVC4: 2, SVC6: 1})
        if time.time() < deadline - 0.3:
            self.assertPod(self.get(N.BASE4, "/", [key_header("dev-ttl")]), "sandbox", "before the deadline")
            self.assertPod(self.get(N.BASE6, "/", [key_header("dev-ttl")]), "sandbox", "before the deadline")

        seen = self.wait_gone(SVC4, "dev-ttl", deadline)
        self.assertGreaterEqual(len(set(seen)), 2, "route list never showed the time left go down: %r" % seen)
        self.assertEqual(seen, sorted(seen, reverse=True), "time left went up: %r" % seen)
        self.wait_gone(SVC6, "dev-ttl", r6["expires_unix"])

        # Gone from the pinned maps too: the durable copy of the route and,
        # for SVC6, the service (so its connect()s are not captured).
        routes = self.pinned_routes()
        self.assertEqual(sorted(routes), [(SVC4, "dev-keep")], "pinned shunt_routes after expiry")
        self.assertEqual(self.pinned_services(), {SVC4: 1}, "pinned shunt_services after expiry")
        self.assertEqual(self.node.status()["routes"], 1)

        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-ttl")]), "baseline")
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-ttl")]), "baseline")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-keep")]), "sandbox2", "the route without a ttl")
        self.assertIn("route expired: service %s key dev-ttl" % SVC6, self.node.shuntd_output())

    def test_readding_a_route_renews_its_ttl(self):
        start_of_second()
        self.route(SVC4, "dev-a", TO4, ttl="3s")
        first, _, _ = self.listed(SVC4, "dev-a")
        old = first["expires_unix"]
        # Two seconds on, one before the deadline, add the same route again.
        while time.time() < old - 0.95:
            time.sleep(0.05)
        self.route(SVC4, "dev-a", TO4, ttl="3s")
        again, _, _ = self.listed(SVC4, "dev-a")
        new = again["expires_unix"]
        self.assertGreaterEqual(new, old + 2, "re-adding did not move the deadline: %d -> %d" % (old, new))
        self.assertGreater(again["ttl_left"], 1, again)
        self.assertEqual(self.pinned_routes()[(SVC4, "dev-a")]["expires_unix"], new,
                         "the pinned copy (what a restarted agent recovers) kept the old deadline")

        # Past the old deadline (and a sweep) the route lives on and steers.
        while time.time() < old + 0.3:
            time.sleep(0.05)
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox", "after the old deadline")
        self.wait_gone(SVC4, "dev-a", new)
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "baseline", "after the new deadline")

    def _last_route_goes(self, how, service, ip, to, node_ip):
        self.route(service, "dev-a", to, ttl="2s" if how == "expiry" else None)
        k0 = self.kernel()
        c = self.connect(ip)
        k1 = self.kernel()
        self.assertEqual(k1["captured"] - k0["captured"], 1, "the keep-alive connection was not captured")
        self.assertPod(c.request("GET", "/ka/1", [key_header("dev-a")]), "sandbox")
        self.assertPod(c.request("GET", "/ka/2", []), "baseline")

        if how == "del":
            self.node.route_del(service, "dev-a")
            self.assertIsNone(self.listed(service, "dev-a")[0])
        else:
            r, _, _ = self.listed(service, "dev-a")
            self.wait_gone(service, "dev-a", r["expires_unix"])
        self.assertNotIn(service, self.pinned_services(), "service still in shunt_services: still captured")
        self.assertEqual(self.pinned_routes(), {})

        # New connections are left alone by the kernel: not captured, and
        # the baseline sees the client itself, not the proxy.
        mark = self.node.mark()
        k2 = self.kernel()
        for i in range(3):
            r = self.get(ip, "/new/%d" % i, [key_header("dev-a")])
            self.assertPod(r, "baseline")
        k3 = self.kernel()
        self.assertGreaterEqual(k3["connect"] - k2["connect"], 3, "the connect hook did not see the new connections")
        self.assertEqual(k3["captured"], k2["captured"], "a service without routes is still captured")
        peers = [e["peer"] for e in self.node.requests("baseline", mark)]
        self.assertEqual(len(peers), 3)
        for p in peers:
            self.assertFalse(p.startswith(node_ip + ":"), "a new connection went through the proxy: %s" % p)

        # The connection captured earlier still works, through the proxy,
        # to the baseline whatever its key.
        p0 = self.node.status()["proxy"]
        mark = self.node.mark()
        for i, hs in enumerate(([key_header("dev-a")], [], [key_header("dev-a", "uber")])):
            r = c.request("GET", "/ka/after/%d" % i, hs)
            self.assertEqual(r.status, 200)
            self.assertPod(r, "baseline", "request %d on the old keep-alive connection" % i)
        p1 = self.node.status()["proxy"]
        self.assertEqual(p1["requests"] - p0["requests"], 3, "the old connection no longer goes through the proxy")
        self.assertEqual(p1["to_baseline"] - p0["to_baseline"], 3)
        reqs = self.node.requests("baseline", mark)
        self.assertEqual([e["path"] for e in reqs], ["/ka/after/0", "/ka/after/1", "/ka/after/2"])
        for e in reqs:
            self.assertTrue(e["peer"].startswith(node_ip + ":"),
                            "a request on the captured connection bypassed the proxy: %s" % e["peer"])
        self.assertEqual(self.kernel()["captured"], k3["captured"])

    def test_last_route_expires_capture_stops_keepalive_lives_on(self):
        self._last_route_goes("expiry", SVC4, N.BASE4, TO4, N.NODE4)

    def test_last_route_deleted_capture_stops_keepalive_lives_on_v6(self):
        self._last_route_goes("del", SVC6, N.BASE6, TO6, "[%s]" % N.NODE6)

    def test_expiry_of_one_route_keeps_the_service_captured(self):
        start_of_second()
        self.route(SVC4, "dev-a", TO4, ttl="1s")
        self.route(SVC4, "dev-b", TO2_4)
        r, _, _ = self.listed(SVC4, "dev-a")
        self.wait_gone(SVC4, "dev-a", r["expires_unix"])
        self.assertEqual(self.pinned_services(), {SVC4: 1})
        k0 = self.kernel()
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-b")]), "sandbox2")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "baseline")
        self.assertEqual(self.kernel()["captured"] - k0["captured"], 2, "the service must stay captured")

    def test_deadline_passing_while_the_agent_is_down(self):
        self.route(SVC4, "dev-keep", TO2_4)
        start_of_second()
        self.route(SVC6, "dev-a", TO6, ttl="2s")  # SVC6's only route
        deadline = self.listed(SVC6, "dev-a")[0]["expires_unix"]
        self.node.expected_exit = True
        self.assertEqual(self.node.shuntd_stop(signal.SIGTERM, timeout=5), 0)
        while time.time() < deadline + 0.2:
            time.sleep(0.05)
        # The pins still hold the route and the steered service...
        self.assertIn((SVC6, "dev-a"), self.pinned_routes())
        self.assertIn(SVC6, self.pinned_services())
        self.node.shuntd_start()
        self.node.expected_exit = False
        # ...and the restarted agent drops both before it serves anything.
        self.assertIsNone(self.listed(SVC6, "dev-a")[0], "expired route recovered from the pins")
        self.assertEqual(sorted(self.pinned_routes()), [(SVC4, "dev-keep")])
        self.assertEqual(self.pinned_services(), {SVC4: 1})
        k0 = self.kernel()
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-a")]), "baseline")
        self.assertEqual(self.kernel()["captured"], k0["captured"], "service of an expired route captured")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-keep")]), "sandbox2")
