# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The agent dying, restarting and stopping: fail open, routes recovered
from the pinned maps, programs detached on a clean exit."""

import json
import signal
import time

import node as N
from base import SVC4, SVC6, TO4, TO6, NodeTestCase
from httpmsg import key_header

KEY = [key_header("dev-a")]


class Failure(NodeTestCase):
    def _cgroup_progs(self):
        p = N.run(["bpftool", "-j", "cgroup", "show", self.node.cg], check=False)
        self.assertEqual(p.returncode, 0, "bpftool cgroup show failed: %s" % p.stderr)
        # bpftool -j prints a bare newline, not [], when nothing is attached.
        return json.loads(p.stdout.strip() or "[]")

    def _kill9(self):
        self.node.expected_exit = True
        t0 = time.monotonic()
        self.node.shuntd.send_signal(signal.SIGKILL)
        self.node.shuntd.wait(5)
        return t0

    def test_kill9_fails_open_to_baseline(self):
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC6, "dev-a", TO6)
        self.assertPod(self.get(N.BASE4, "/", KEY), "sandbox")
        t0 = self._kill9()
        for ip in (N.BASE4, N.BASE6):
            c, reply = self.client.try_connect(ip, N.HTTP_PORT, timeout=1)
            self.assertIsNotNone(c, "first connection to %s after kill -9 failed: %s" % (ip, reply.get("error")))
            self.conns.append(c)
            self.assertEqual(c.peer[:2], (ip, N.HTTP_PORT))
            r = c.request("GET", "/after-kill", KEY, timeout=1)
            self.assertPod(r, "baseline", "after kill -9 of shuntd")
            if ip == N.BASE4:
                elapsed = time.monotonic() - t0
                self.assertLess(elapsed, 1.0, "fail open took %.2fs" % elapsed)

    def test_restart_recovers_routes(self):
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC6, "dev-a", TO6, fallback="baseline")
        self.route(SVC4, "dev-ttl", TO6, ttl="1h")
        want = sorted((r["service"], r["key"], r["to"], r["fallback"]) for r in self.node.routes())
        self.assertEqual(len(want), 3)
        progs = sorted((p.get("attach_type"), p.get("name")) for p in self._cgroup_progs())
        self._kill9()
        self.assertPod(self.get(N.BASE4, "/", KEY), "baseline", "while shuntd is down")
        self.node.shuntd_start()
        got = sorted((r["service"], r["key"], r["to"], r["fallback"]) for r in self.node.routes())
        self.assertEqual(got, want, "routes after restart differ")
        ttl = [r for r in self.node.routes() if r["key"] == "dev-ttl"][0]
        self.assertGreater(ttl["expires_unix"], time.time() + 3000, "TTL lost across restart: %r" % ttl)
        self.assertPod(self.get(N.BASE4, "/", KEY), "sandbox", "keyed request after restart")
        self.assertPod(self.get(N.BASE6, "/", KEY), "sandbox", "keyed request after restart (IPv6)")
        self.assertPod(self.get(N.BASE4, "/", []), "baseline")
        st = self.node.status()
        self.assertEqual(st["routes"], 3)
        # A second crash and restart: attachments are replaced, never stacked.
        self._kill9()
        self.node.shuntd_start()
        self.assertEqual(sorted((p.get("attach_type"), p.get("name")) for p in self._cgroup_progs()), progs,
                         "programs attached to the cgroup after two restarts differ from the first start")
        self.assertPod(self.get(N.BASE4, "/", KEY), "sandbox", "keyed request after a second restart")

    def test_sigterm_exits_0_and_detaches(self):
        self.route(SVC4, "dev-a", TO4)
        self.assertPod(self.get(N.BASE4, "/", KEY), "sandbox")
        self.assertNotEqual(self._cgroup_progs(), [], "no programs attached while shuntd runs?")
        self.node.expected_exit = True
        rc = self.node.shuntd_stop(signal.SIGTERM, timeout=5)
        self.assertEqual(rc, 0, "shuntd exit status after SIGTERM")
        self.assertEqual(self._cgroup_progs(), [], "programs still attached to the cgroup after SIGTERM")
        self.assertPod(self.get(N.BASE4, "/", KEY), "baseline", "after SIGTERM")
        # The pinned routes survive a clean stop too.
        self.node.shuntd_start()
        self.assertIn(("dev-a", TO4), [(r["key"], r["to"]) for r in self.node.routes()])
        self.assertPod(self.get(N.BASE4, "/", KEY), "sandbox", "after restart")

    def test_sigint_exits_0(self):
        self.node.expected_exit = True
        rc = self.node.shuntd_stop(signal.SIGINT, timeout=5)
        self.assertEqual(rc, 0, "shuntd exit status after SIGINT")
        self.assertEqual(self._cgroup_progs(), [])
