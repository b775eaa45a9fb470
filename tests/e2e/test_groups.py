# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Route groups: one routing key forking several services of a real call chain.

Three chained services A -> B -> C, each a baseline pod and a sandbox pod
(six extra pods, all in the test cgroup so their outbound calls are
captured). Each hop is a servers.py in chain mode: it calls the next
service's address (its baseline pod IP:8080, like SVC4 elsewhere) with the
incoming baggage forwarded, and answers with the pods that handled the
request at every hop. Routes, added before every test:

    feat-1: A -> a-sandbox, C -> c-sandbox      (a group of two routes)
    feat-2: B -> b-sandbox

for the IPv4 and the IPv6 address of each service.
"""

import json
import threading
import time
from collections import Counter

import node as N
from base import NodeTestCase
from httpmsg import key_header

HOPS = ("a", "b", "c")
SUFFIX = {"a-base": 40, "a-sbx": 41, "b-base": 42, "b-sbx": 43, "c-base": 44, "c-sbx": 45}
ADDR = {pod: ("%s.%d" % (N.NET4, n), "%s%d" % (N.NET6, n)) for pod, n in SUFFIX.items()}
SERVER = {"base": "base", "sbx": "sandbox"}  # pod kind -> server name part


def svc(hop, v6=False):
    """The service address of hop: its baseline pod's IP:8080."""
    return N.hostport(ADDR[hop + "-base"][1 if v6 else 0], N.HTTP_PORT)


def sbx(hop, v6=False):
    return N.hostport(ADDR[hop + "-sbx"][1 if v6 else 0], N.HTTP_PORT)


GROUPS = {"feat-1": ("a", "c"), "feat-2": ("b",)}


def expected_path(key):
    forked = GROUPS.get(key, ())
    return ["%s-%s" % (h, "sandbox" if h in forked else "base") for h in HOPS]


ALL_BASE = expected_path(None)


class RouteGroups(NodeTestCase):
    node_opts = {"extra_pods": {pod: (v4, v6, True) for pod, (v4, v6) in ADDR.items()}}

    @classmethod
    def prepare_node(cls, node):
        for i, hop in enumerate(HOPS):
            nxt = HOPS[i + 1] if i + 1 < len(HOPS) else None
            args = ["--next", svc(nxt), "--next6", svc(nxt, True)] if nxt else []
            for kind in ("base", "sbx"):
                node.start_server("%s-%s" % (hop, SERVER[kind]), "%s-%s" % (hop, kind), N.HTTP_PORT, args)

    def setUp(self):
        super().setUp()
        for key, hops in GROUPS.items():
            for hop in hops:
                for v6 in (False, True):
                    self.route(svc(hop, v6), key, sbx(hop, v6))

    def chain(self, key=None, path="/chain", v6=False, conn=None, headers=None):
        """One request to A; returns (hops, the parsed answer)."""
        if headers is None:
            headers = [key_header(key)] if key else []
        if v6:
            path += "?af=6"
        host = ADDR["a-base"][1 if v6 else 0]
        if conn is not None:
            r = conn.request("GET", path, headers)
        else:
            r = self.get(host, path, headers)
        self.assertEqual(r.status, 200, "chain request failed: %r" % r)
        j = r.json()
        self.assertEqual(j["path"], path, "the answer to another request")
        return j["hops"], j

    def test_feat1_forks_a_and_c(self):
        hops, j = self.chain("feat-1", "/chain/f1")
        self.assertEqual(hops, ["a-sandbox", "b-base", "c-sandbox"])
        self.assertEqual(j["baggage"], ["sd-routing-key=feat-1"], "the key did not reach the end of the chain")
        # Every hop was asked exactly once, through the proxy.
        for name in ("a-sandbox", "b-base", "c-sandbox"):
            reqs = self.node.requests(name, self.mark)
            self.assertEqual([e["path"] for e in reqs], ["/chain/f1"], name)
            self.assertIn(["baggage", "sd-routing-key=feat-1"], reqs[0]["headers"], name)
            self.assertTrue(reqs[0]["peer"].startswith(N.NODE4 + ":"), "%s was reached around the proxy: %s"
                            % (name, reqs[0]["peer"]))
        for name in ("a-base", "b-sandbox", "c-base"):
            self.assertEqual(self.node.requests(name, self.mark), [], "%s got a feat-1 request" % name)

    def test_feat2_forks_only_b(self):
        hops, _ = self.chain("feat-2")
        self.assertEqual(hops, ["a-base", "b-sandbox", "c-base"])

    def test_no_key_or_unrouted_key_goes_to_all_baselines(self):
        cases = [
            ("no key", []),
            ("unrouted key", [key_header("feat-3")]),
            ("longer key", [key_header("feat-11")]),
            ("other baggage only", [("baggage", "tenant=feat-1")]),
        ]
        for what, hs in cases:
            with self.subTest(what):
                hops, _ = self.chain(headers=hs)
                self.assertEqual(hops, ALL_BASE, what)

    def test_key_among_other_baggage_members_and_lines(self):
        # The apps forward baggage unchanged, other members and lines included.
        hs = [("baggage", "tenant=t1, sd-routing-key=feat-2;prop=x"), ("baggage", "user=u9")]
        hops, j = self.chain(headers=hs)
        self.assertEqual(hops, ["a-base", "b-sandbox", "c-base"])
        self.assertEqual(j["baggage"], ["tenant=t1, sd-routing-key=feat-2;prop=x", "user=u9"])

    def test_ipv6_chain(self):
        for key in ("feat-1", "feat-2", None, "feat-3"):
            with self.subTest(key=key):
                hops, j = self.chain(key, v6=True)
                self.assertEqual(hops, expected_path(key))
        # The calls really went over IPv6, hop by hop.
        for ev in self.node.events("a-sandbox", self.mark, kinds=("chain",)) + \
                self.node.events("b-base", self.mark, kinds=("chain",)):
            self.assertTrue(ev["next"].startswith("[fd00:211::"), ev)

    def test_keys_alternating_on_one_keepalive_connection(self):
        c = self.connect(ADDR["a-base"][0])
        keys = ["feat-1", "feat-2", None, "feat-1", "feat-1", "feat-2", "feat-9", None, "feat-2", "feat-1"]
        for i, key in enumerate(keys):
            hops, _ = self.chain(key, "/chain/ka%d" % i, conn=c)
            self.assertEqual(hops, expected_path(key), "request %d, key %s" % (i, key))
        # The inner hops kept their connections too.
        chains = self.node.events("a-base", self.mark, kinds=("chain",)) + \
            self.node.events("a-sandbox", self.mark, kinds=("chain",))
        self.assertTrue(any(e["reused"] for e in chains), "A never reused its connection to B: %s" % chains)

    def test_group_member_removed_leaves_the_rest(self):
        self.assertEqual(self.chain("feat-1")[0], ["a-sandbox", "b-base", "c-sandbox"])
        self.node.route_del(svc("c"), "feat-1")
        self.assertEqual(self.chain("feat-1")[0], ["a-sandbox", "b-base", "c-base"])
        self.assertEqual(self.chain("feat-1", v6=True)[0], ["a-sandbox", "b-base", "c-sandbox"],
                         "deleting the IPv4 route of C changed the IPv6 one")
        self.assertEqual(self.chain("feat-2")[0], ["a-base", "b-sandbox", "c-base"])

    def test_concurrent_keys_no_misroutes(self):
        keys = ["feat-1", "feat-2", None, "feat-1", "feat-2", "feat-7"]
        threads, per_thread = 8, 40
        plans = []
        want = {}  # path -> (key, expected hops)
        for t in range(threads):
            v6 = t >= 6  # two of the eight over IPv6
            reqs = []
            for i in range(per_thread):
                if t % 2:
                    key = keys[(t + i) % len(keys)]  # a different key on every request
                else:
                    key = ("feat-1", "feat-2", None)[t // 2 % 3]  # one key per connection
                path = "/chain/t%d/r%d" % (t, i) + ("?af=6" if v6 else "")
                reqs.append({"path": path, "headers": [list(key_header(key))] if key else []})
                want[path] = (key, expected_path(key))
            plans.append({"host": ADDR["a-base"][1 if v6 else 0], "port": N.HTTP_PORT, "requests": reqs})
        st0 = self.node.status()
        results = self.client.call("burst", plans=plans, timeout=90, req_timeout=10)["results"]
        st1 = self.node.status()

        misroutes, errors, total = [], [], 0
        per_key = Counter()
        for plan, res in zip(plans, results):
            locals_ = set()
            for req, got in zip(plan["requests"], res):
                total += 1
                key, hops = want[req["path"]]
                if "error" in got:
                    errors.append(got["error"])
                    continue
                body = json.loads(got["body"]) if got["status"] == 200 else {}
                if got["status"] != 200 or body.get("hops") != hops or body.get("path") != req["path"]:
                    misroutes.append((req["path"], key, got["status"], body.get("path"),
                                      body.get("hops") or got["body"][:300]))
                per_key[key] += 1
                locals_.add(tuple(got["local"]))
            self.assertEqual(len(res), len(plan["requests"]), "a thread stopped early: %s" % res[-1:])
            self.assertEqual(len(locals_), 1, "a keep-alive connection was replaced: %s" % locals_)
        self.assertEqual(errors, [])
        self.assertEqual(misroutes, [], "%d of %d requests misrouted" % (len(misroutes), total))
        self.assertEqual(total, threads * per_thread)

        # Each hop's server saw exactly the requests meant for it.
        seen = {}
        for name in self.node.servers:
            for ev in self.node.requests(name, self.mark):
                self.assertNotIn(ev["path"], seen.get(name, set()), "%s got %s twice" % (name, ev["path"]))
                seen.setdefault(name, set()).add(ev["path"])
        for path, (key, hops) in want.items():
            for hop in hops:
                self.assertIn(path, seen.get(hop, set()), "%s (key %s) never reached %s" % (path, key, hop))
        self.assertEqual(sum(len(v) for v in seen.values()), 3 * total, "requests reached pods off their path")

        # The proxy decided every hop of every request, and sent to a sandbox
        # exactly the forked ones: feat-1 forks two hops, feat-2 one.
        dp = {k: st1["proxy"][k] - st0["proxy"][k] for k in ("requests", "to_sandbox", "errors")}
        self.assertEqual(dp["requests"], 3 * total, dp)
        self.assertEqual(dp["to_sandbox"], 2 * per_key["feat-1"] + per_key["feat-2"], dp)
        self.assertEqual(dp["errors"], 0, dp)

    def test_churn_of_one_key_leaves_the_group_alone(self):
        # feat-3 comes and goes on B (B stays steered through feat-2, so the
        # chain's connections stay captured) while feat-1, feat-2 and
        # unkeyed requests run: they must not notice, and feat-3 lands on one
        # of B's two pods, never anywhere else.
        stop = threading.Event()
        churns = []
        errors = []

        def churn():
            try:
                while not stop.is_set():
                    for v6 in (False, True):
                        self.node.route_add(svc("b", v6), "feat-3", sbx("b", v6))
                    for v6 in (False, True):
                        self.node.route_del(svc("b", v6), "feat-3")
                    churns.append(1)
            except Exception as e:  # reported below, in the test's thread
                errors.append(repr(e))

        keys = ["feat-1", "feat-3", "feat-2", None]
        plans = []
        for t in range(6):
            v6 = t >= 4
            reqs = [{"path": "/chain/churn/t%d/r%d%s" % (t, i, "?af=6" if v6 else ""),
                     "headers": [list(key_header(keys[(t + i) % len(keys)]))] if keys[(t + i) % len(keys)] else []}
                    for i in range(40)]
            plans.append({"host": ADDR["a-base"][1 if v6 else 0], "port": N.HTTP_PORT, "requests": reqs})
        th = threading.Thread(target=churn, daemon=True)
        th.start()
        try:
            # One churn round first, so the burst surely overlaps the churn
            # even when shuntctl is slow (sanitizers, a loaded machine).
            deadline = time.monotonic() + 30
            while not churns and not errors and time.monotonic() < deadline:
                time.sleep(0.01)
            results = self.client.call("burst", plans=plans, timeout=90, req_timeout=10)["results"]
        finally:
            stop.set()
            th.join(30)
        self.assertEqual(errors, [], "route churn failed")
        self.assertGreaterEqual(len(churns), 2, "too little churn to mean anything")
        bad = []
        for plan, res in zip(plans, results):
            self.assertEqual(len(res), len(plan["requests"]), "a thread stopped early: %s" % res[-1:])
            for req, got in zip(plan["requests"], res):
                hs = req["headers"]
                key = hs[0][1].split("=", 1)[1] if hs else None
                body = json.loads(got["body"]) if got.get("status") == 200 else {}
                hops = body.get("hops")
                if key == "feat-3":
                    ok = hops in (ALL_BASE, ["a-base", "b-sandbox", "c-base"])
                else:
                    ok = hops == expected_path(key)
                if not ok or body.get("path") != req["path"]:
                    bad.append((req["path"], key, got))
        self.assertEqual(bad, [], "%d requests misrouted or failed during route churn" % len(bad))
        self.assertNotIn("feat-3", [r["key"] for r in self.node.routes()], "churn left a feat-3 route behind")
