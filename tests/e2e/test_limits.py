# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Limits: a full route table, the proxy's connection limit, the limit of
connections to one sandbox. Each gives a clear error naming the limit (or,
for the connection limit, fails open), is counted, and the agent goes on
serving. Limits per pod are in test_fairness.py. (Running out of file descriptors
is test_agent_config.FdExhaustion.)"""

import time

import node as N
from base import SVC4, SVC6, TO2_4, TO4, NodeTestCase
from httpmsg import key_header

KEY = [key_header("dev-a")]


class RouteTableFull(NodeTestCase):
    node_opts = {"shuntd_args": ["--max-routes", "4"]}

    def test_route_add_beyond_the_table_is_refused(self):
        for k in ("k1", "k2", "k3", "k4"):
            self.route(SVC4, k, TO4)
        p = self.node.ctl("route", "add", "--service", SVC4, "--key", "k5", "--to", TO4)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("route table full (4 routes, the limit: --max-routes)", p.stderr)
        self.assertEqual(sorted(r["key"] for r in self.node.routes()), ["k1", "k2", "k3", "k4"])
        # every route may name its own service, every override its own
        # destination: the services map is sized for both
        maps = {m["name"]: m for m in self.node.status()["maps"]}
        self.assertEqual(maps["shunt_routes"]["max_entries"], 4)
        self.assertEqual(maps["shunt_services"]["max_entries"], 4 + 1024)
        # replacing a route needs no new slot; deleting one makes room
        self.route(SVC4, "k1", TO2_4)
        self.node.route_del(SVC4, "k2")
        self.route(SVC6, "k5", TO4)
        self.assertPod(self.get(N.BASE4, "/", [key_header("k1")]), "sandbox2")
        # the pinned map keeps its size across a restart that asks for more
        self.node.expected_exit = True
        self.node.shuntd_stop()
        self.node.expected_exit = False
        self.node.shuntd_start(["--max-routes", "100"])
        self.assertIn("holds at most 4 routes, not 100: keeping it", self.node.shuntd_output())
        self.assertEqual(len(self.node.routes()), 4)


class ConnLimit(NodeTestCase):
    node_opts = {"shuntd_args": ["--max-conns", "3"]}

    def test_connections_over_the_limit_fail_open(self):
        self.route(SVC4, "dev-a", TO4)
        st0, k0 = self.node.status()["proxy"], self.node.status()["kernel"]
        held = [self.connect(N.BASE4) for _ in range(3)]
        for c in held:
            self.assertPod(c.request("GET", "/held", KEY), "sandbox")
        # at the limit the kernel stops capturing: the next connection goes
        # straight to where the application was going (not steered, not
        # refused), and the proxy is not involved
        c = self.connect(N.BASE4)
        r = c.request("GET", "/over", KEY)
        self.assertEqual(r.status, 200, r)
        self.assertPod(r, "baseline")
        self.assertEqual(r.header("X-Peer").rsplit(":", 1)[0], N.CLIENT4, "the connection was captured")
        st, k = self.node.status()["proxy"], self.node.status()["kernel"]
        self.assertEqual(st["conn_limit"] - st0["conn_limit"], 1)
        self.assertEqual(st["accepted"] - st0["accepted"], 3)
        self.assertEqual(k["conn_limit"] - k0["conn_limit"], 1)
        # the held ones still work, and closing one (1/8 of 3, rounded up to
        # one) lifts the limit
        self.assertPod(held[0].request("GET", "/still", KEY), "sandbox")
        held[1].close()
        deadline = time.monotonic() + 3
        while self.node.status()["proxy"]["active"] > 2:
            self.assertLess(time.monotonic(), deadline, "closed connection still counted")
            time.sleep(0.05)
        self.assertPod(self.get(N.BASE4, "/again", KEY), "sandbox")
        self.assertIn("connection limit (--max-conns 3) reached", self.node.shuntd_output())


class UpstreamLimit(NodeTestCase):
    node_opts = {"shuntd_args": ["--max-upstream-conns", "2"]}

    def test_requests_beyond_the_upstream_limit_get_503(self):
        self.route(SVC4, "dev-a", TO4)
        slow = [self.connect(N.BASE4) for _ in range(3)]
        for c in slow:
            c.send(N.build_request("GET", "/slow?ms=1500", KEY, host=SVC4))
        results = [c.response(timeout=5) for c in slow]
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200, 200, 503], statuses)
        over = [r for r in results if r.status == 503][0]
        self.assertIn(b"2 connections to %s are in use, the limit (--max-upstream-conns)" % TO4.encode(),
                      over.body)
        self.assertGreaterEqual(self.node.status()["proxy"]["upstream_limit"], 1)
        # other destinations are not limited by it, and the sandbox is
        # reachable again once the slow requests are done
        self.assertPod(self.get(N.BASE4, "/"), "baseline")
        self.assertPod(self.get(N.BASE4, "/", KEY), "sandbox")
