# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Fairness between pods (issue 9, finding 7): one pod can no longer use up
the proxy for every other pod of the node.

  - --max-conns: at the limit the kernel stops capturing (new connections
    go straight to their destinations) instead of the proxy answering 503.
  - --max-conns-per-pod: a pod (its network namespace) at its cap is no
    longer captured until it is back under it; every other pod is captured
    and steered as before.
  - --max-upstream-conns-per-pod: a pod's keyed requests hold at most that
    many connections to one sandbox (503 beyond, naming the flag); another
    pod's keyed requests to the same sandbox still work, and a request
    without a route is never refused by an upstream limit.

A second client pod, "hog", lives in the test cgroup next to the usual
client pod. Whether a request went through the proxy shows in the
X-Peer header the upstream answers with: the node's address when the proxy
dialled, the pod's own when the connection was not captured."""

import subprocess
import time

import node as N
from base import SVC4, TO4, NodeTestCase
from httpmsg import key_header

KEY = [key_header("dev-a")]
HOG4, HOG6 = N.NET4 + ".60", N.NET6 + "60"
HOG = {"hog": (HOG4, HOG6, True)}
METRICS_PORT = 9464

# The netns cookie of the namespace this runs in (SO_NETNS_COOKIE, 5.14+).
NETNS_COOKIE = ("import socket; s = socket.socket(); "
                "print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), 'little'))")

SCRAPE = ("import sys, urllib.request; "
          "sys.stdout.write(urllib.request.urlopen('http://%s:%d/metrics', timeout=5).read().decode())"
          % (N.NODE4, METRICS_PORT))


def peer_ip(resp):
    """The address the upstream saw the request come from."""
    return resp.header("X-Peer", "").rsplit(":", 1)[0]


class FairnessCase(NodeTestCase):
    def setUp(self):
        super().setUp()
        self.hog = self.node.pod_client("hog")

    def tearDown(self):
        self.hog.close()
        super().tearDown()

    def hold(self, n, keyed=True):
        """n connections from the hog, each with one answered request: so
        each has been accepted by the proxy (or went straight through)."""
        conns = []
        for i in range(n):
            c = self.hog.connect(N.BASE4, N.HTTP_PORT)
            self.conns.append(c)
            conns.append((c, c.request("GET", "/held-%d" % i, KEY if keyed else [])))
        return conns

    def wait_for(self, what, fn, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v:
                return v
            self.assertLess(time.monotonic(), deadline, "timed out waiting for %s" % what)
            time.sleep(0.05)

    def kernel(self):
        return self.node.status()["kernel"]

    def proxy(self):
        return self.node.status()["proxy"]

    def metrics(self):
        p = N.run(self.node.nsenter("node") + [N.PYTHON, "-c", SCRAPE])
        m = {}
        for ln in p.stdout.splitlines():
            if ln and not ln.startswith("#") and "{" not in ln:
                name, _, v = ln.partition(" ")
                m[name] = float(v)
        return m

    def assert_through_proxy(self, resp, pod, what):
        self.assertEqual(resp.status, 200, "%s: %r" % (what, resp))
        self.assertPod(resp, pod, what)
        self.assertEqual(peer_ip(resp), N.NODE4, "%s did not go through the proxy: %r" % (what, resp.headers))

    def assert_straight(self, resp, src, what):
        """Not captured: the baseline answered the pod itself."""
        self.assertEqual(resp.status, 200, "%s: %r" % (what, resp))
        self.assertPod(resp, "baseline", what)
        self.assertEqual(peer_ip(resp), src, "%s was captured: %r" % (what, resp.headers))


class GlobalLimit(FairnessCase):
    """Finding 7 as reported: a pod holding --max-conns idle connections made
    every other pod's requests 503, unkeyed ones included."""

    node_opts = {"shuntd_args": ["--max-conns", "4", "--max-conns-per-pod", "0"], "extra_pods": HOG}

    def test_a_pod_holding_every_slot_does_not_503_the_others(self):
        self.route(SVC4, "dev-a", TO4)
        for c, r in self.hold(4):
            self.assert_through_proxy(r, "sandbox", "a held connection")
        k0 = self.kernel()
        # another pod, unkeyed and keyed: the original destination, not a 503
        r = self.get(N.BASE4, "/other-unkeyed")
        self.assert_straight(r, N.CLIENT4, "the other pod's unkeyed request at the limit")
        r = self.get(N.BASE4, "/other-keyed", KEY)
        self.assert_straight(r, N.CLIENT4, "the other pod's keyed request at the limit")
        self.assertGreaterEqual(self.kernel()["conn_limit"] - k0["conn_limit"], 2)
        self.assertEqual(self.proxy()["conn_limit"], 1, "the limit was reached once")
        self.assertIn("connection limit (--max-conns 4) reached: new connections go to their destinations "
                      "uncaptured until 3 or fewer are open (1 so far)", self.node.shuntd_output())
        # the held connections keep working
        for c in self.conns[:4]:
            self.assert_through_proxy(c.request("GET", "/still", KEY), "sandbox", "a held connection")
        # back under the limit (with hysteresis: one slot free is enough at
        # 4), new connections are captured again
        self.conns[0].close()
        self.wait_for("the proxy under --max-conns", lambda: self.proxy()["active"] <= 3)
        r = self.get(N.BASE4, "/again", KEY)
        self.assert_through_proxy(r, "sandbox", "a keyed request under the limit again")


class PodConnCap(FairnessCase):
    node_opts = {"shuntd_args": ["--max-conns", "64", "--max-conns-per-pod", "4",
                                 "--metrics-addr", "%s:%d" % (N.NODE4, METRICS_PORT)],
                 "extra_pods": HOG}

    def test_a_pod_at_its_cap_is_not_captured_and_others_are(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        k0, m0 = self.kernel(), self.metrics()
        for c, r in self.hold(4):
            self.assert_through_proxy(r, "sandbox", "a connection under the cap")
        self.assertEqual(self.proxy()["pods_limited"], 1)
        # the kernel map holds the hog's network namespace
        rc, out, err = n.pod_run("hog", [N.PYTHON, "-c", NETNS_COOKIE], in_cgroup=False)
        self.assertEqual(rc, 0, err)
        cookie = int(out)
        dump = n.map_dump("shunt_pod_limit")
        self.assertEqual([e["key"] for e in dump], [cookie], dump)
        self.assertEqual(dump[0]["value"]["limit"], 4, dump)
        self.assertIn("pod %s (netns %d) reached --max-conns-per-pod 4" % (HOG4, cookie), n.shuntd_output())

        # the hog's new connections go straight to their destination: no
        # 503, whatever the key (a keyed one is not steered: fail open)
        for c, r in self.hold(2):
            self.assert_straight(r, HOG4, "the capped pod's new connection")
        self.assert_straight(self.conns[-1].request("GET", "/unkeyed-over"), HOG4, "unkeyed, over the cap")
        self.assertGreaterEqual(self.kernel()["pod_limit"] - k0["pod_limit"], 2)

        # every other pod: captured and steered as before
        self.assert_through_proxy(self.get(N.BASE4, "/other", KEY), "sandbox", "another pod's keyed request")
        self.assert_through_proxy(self.get(N.BASE4, "/other"), "baseline", "another pod's unkeyed request")
        m = self.metrics()
        self.assertEqual(m["shunt_pods_limited"], 1)
        self.assertEqual(m["shunt_pod_limit_reached_total"] - m0.get("shunt_pod_limit_reached_total", 0), 1)
        self.assertGreaterEqual(m["shunt_kernel_pod_limit_total"] - m0.get("shunt_kernel_pod_limit_total", 0), 2)

        # the other pod may hold as many as the hog: it reaches its own cap
        held = [self.connect(N.BASE4) for _ in range(4)]
        for c in held:
            self.assert_through_proxy(c.request("GET", "/other-held", KEY), "sandbox", "another pod at 4")
        self.wait_for("two pods limited", lambda: self.proxy()["pods_limited"] == 2)
        for c in held:
            c.close()
        self.wait_for("the client pod back under its cap", lambda: self.proxy()["pods_limited"] == 1)

        # the hog closes its captured connections: below its cap (less the
        # hysteresis) it is captured again
        for c in self.conns[:4]:
            c.close()
        self.wait_for("the hog back under its cap", lambda: self.proxy()["pods_limited"] == 0)
        self.assertEqual(n.map_dump("shunt_pod_limit"), [])
        for c, r in self.hold(1):
            self.assert_through_proxy(r, "sandbox", "the hog's keyed request, captured again")

    def test_a_burst_past_the_cap_is_answered_in_full(self):
        """Connections captured before the kernel heard of the cap are served
        (they reached the proxy already); the rest go straight through.
        None is refused."""
        self.route(SVC4, "dev-a", TO4)
        p0 = self.proxy()
        plans = [{"host": N.BASE4, "port": N.HTTP_PORT, "requests": [{"path": "/burst-%d" % i, "headers": []}]}
                 for i in range(24)]
        r = self.hog.call("burst", plans=plans, timeout=20)
        results = [x for plan in r["results"] for x in plan]
        self.assertEqual(len(results), 24, r)
        bad = [x for x in results if x.get("status") != 200 or x.get("pod") != "baseline"]
        self.assertEqual(bad, [], "requests of the burst not answered by the baseline: %r" % bad)
        p = self.proxy()
        self.assertGreaterEqual(p["pod_limit"] - p0["pod_limit"], 1, "the burst never reached the cap")
        print("\nburst: 24 connections, cap 4: %d accepted by the proxy, %d of them over the cap"
              % (p["accepted"] - p0["accepted"], p["over_limit"] - p0["over_limit"]))

    def test_takeover_starts_without_the_predecessors_limits(self):
        """The hog's connections stay with the old agent (draining); the new
        one counts from zero, so its first tick at the latest clears what
        the old one put in the kernel, and the hog is captured again."""
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.hold(4)
        self.assertEqual(len(n.map_dump("shunt_pod_limit")), 1)
        old, off = n.shuntd, N._size(n.shuntd_log)
        new = n.spawn(n.nsenter("node") + n.shuntd_argv(),
                      stdout=open(n.shuntd_log, "ab"), stderr=subprocess.STDOUT)
        n.shuntd, n.shuntd_log_start = new, off
        self.wait_for("the new agent ready", lambda: "ready: cgroup" in N._read_from(n.shuntd_log, off), 15)
        self.assertEqual(n.map_dump("shunt_pod_limit"), [])
        self.assertEqual(n.map_dump("shunt_config")[0]["value"]["flags"], 0)
        for c, r in self.hold(1):
            self.assert_through_proxy(r, "sandbox", "the hog's new connection, after the takeover")
        # the old agent drains once the idle connections it holds are gone
        for c in self.conns[:4]:
            c.close()
        self.assertEqual(old.wait(10), 0, "the old agent did not drain and exit cleanly")
        self.assertEqual(n.map_dump("shunt_pod_limit"), [], "the draining agent wrote the map")


class PodUpstreamCap(FairnessCase):
    node_opts = {"shuntd_args": ["--max-upstream-conns", "64", "--max-upstream-conns-per-pod", "2"],
                 "extra_pods": HOG}

    def test_a_pod_at_its_upstream_cap_gets_503_and_others_do_not(self):
        self.route(SVC4, "dev-a", TO4)
        p0 = self.proxy()
        slow = [self.hog.connect(N.BASE4, N.HTTP_PORT) for _ in range(3)]
        self.conns += slow
        for c in slow:
            c.send(N.build_request("GET", "/slow?ms=2000", KEY, host=SVC4))
        # meanwhile another pod's keyed requests reach the same sandbox
        mine = [self.connect(N.BASE4) for _ in range(2)]
        for c in mine:
            c.send(N.build_request("GET", "/slow?ms=300", KEY, host=SVC4))
        for c in mine:
            self.assertPod(c.response(timeout=5), "sandbox", "another pod's keyed request")
        results = [c.response(timeout=5) for c in slow]
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200, 200, 503], results)
        over = [r for r in results if r.status == 503][0]
        self.assertIn(b"(--max-upstream-conns-per-pod)", over.body)
        self.assertIn(b"2 connections to sandbox %s" % TO4.encode(), over.body)
        self.assertEqual(self.proxy()["pod_upstream_limit"] - p0["pod_upstream_limit"], 1)
        self.assertIn("pod %s (netns " % HOG4, self.node.shuntd_output())
        self.assertIn("): its requests hold 2 connections to sandbox %s (--max-upstream-conns-per-pod 2): "
                      "answering 503 (1 so far)" % TO4, self.node.shuntd_output())


class UnkeyedNotUpstreamLimited(FairnessCase):
    """The other half of finding 7: requests without a route held up to
    --max-upstream-conns connections to their destination, and the next
    pod's requests to it got 503. Such a request goes where the app was
    going anyway: no upstream limit applies to it."""

    node_opts = {"shuntd_args": ["--max-upstream-conns", "2"], "extra_pods": HOG}

    def test_requests_without_a_route_are_never_upstream_limited(self):
        self.route(SVC4, "dev-a", TO4)
        p0 = self.proxy()
        slow = [self.hog.connect(N.BASE4, N.HTTP_PORT) for _ in range(3)]
        self.conns += slow
        for c in slow:
            c.send(N.build_request("GET", "/slow?ms=1500", [], host=SVC4))
        time.sleep(0.2)
        self.assert_through_proxy(self.get(N.BASE4, "/other"), "baseline", "another pod's unkeyed request")
        for c in slow:
            self.assert_through_proxy(c.response(timeout=5), "baseline", "a slow unkeyed request")
        p = self.proxy()
        self.assertEqual(p["upstream_limit"], p0["upstream_limit"])


class PerPodCapsOff(FairnessCase):
    """Both per-pod caps off: sockops files no netns (its call is dead code
    the verifier skips), the proxy counts nothing per pod."""

    node_opts = {"shuntd_args": ["--max-conns-per-pod", "0", "--max-upstream-conns-per-pod", "0"],
                 "extra_pods": HOG}

    def test_nothing_is_counted_per_pod(self):
        self.route(SVC4, "dev-a", TO4)
        self.assertIn("--max-conns-per-pod 0, --max-upstream-conns 1024, --max-upstream-conns-per-pod 0",
                      self.node.shuntd_output())
        for c, r in self.hold(6):
            self.assert_through_proxy(r, "sandbox", "a keyed request")
        self.assertEqual(self.node.map_dump("shunt_conn_src"), [])
        p = self.proxy()
        self.assertEqual((p["pods_limited"], p["pod_unknown"]), (0, 0))


class PerPodFlags(NodeTestCase):
    needs_shuntd = False
    node_opts = {"shuntd": False}

    def test_bad_values_are_refused_naming_the_flag(self):
        n = self.node
        for args, msg in ((["--max-conns-per-pod", "x"], "--max-conns-per-pod: 'x' is not a number"),
                          (["--max-upstream-conns-per-pod", "-1"], "--max-upstream-conns-per-pod: '-1'"),
                          (["--max-conns", "10", "--max-conns-per-pod", "11"],
                           "--max-conns-per-pod 11 is above --max-conns 10"),
                          (["--max-upstream-conns", "10", "--max-upstream-conns-per-pod", "11"],
                           "--max-upstream-conns-per-pod 11 is above --max-upstream-conns 10")):
            p = N.run(n.nsenter("node") + n.shuntd_argv(args), check=False)
            self.assertEqual(p.returncode, 2, (args, p.stdout, p.stderr))
            self.assertIn(msg, p.stderr, args)
