# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""shuntd options and placement: the agent inside the attached cgroup, custom
routing-key names, configurable head limits."""

import os
import shlex
import signal
import subprocess
import time

import node as N
from base import SVC4, TO4, NodeTestCase
from httpmsg import build_request, key_header


class AgentInCgroup(NodeTestCase):
    """On a real node the agent's pod sits under the cgroup the programs are
    attached to: its own upstream connections must never be captured."""

    node_opts = {"shuntd_in_cgroup": True}

    def test_own_upstream_connections_not_captured(self):
        with open("/proc/%d/cgroup" % self.node.shuntd.pid) as f:
            self.assertIn("shunt-e2e-%s" % self.node.id, f.read(), "shuntd is not in the test cgroup")
        self.route(SVC4, "dev-a", TO4)
        k0 = self.node.status()["kernel"]
        # The baseline is itself the steered service: a captured upstream connect would loop.
        self.assertPod(self.get(N.BASE4, "/", []), "baseline")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox")
        c = self.connect(N.BASE4)
        for i in range(3):
            self.assertPod(c.request("GET", "/%d" % i, [key_header("dev-a")] if i % 2 else []),
                           "sandbox" if i % 2 else "baseline")
        k1 = self.node.status()["kernel"]
        self.assertGreaterEqual(k1["own_socket"] - k0["own_socket"], 1, "own_socket counter did not move")
        self.assertEqual(k1["captured"] - k0["captured"], 3, "captured should count only the 3 client connections")


class KeyNamesAndLimits(NodeTestCase):
    node_opts = {"shuntd_args": ["--key-member", "tenant", "--key-header", "x-route-key",
                                 "--max-headers", "20", "--max-head-bytes", "4096"]}

    def setUp(self):
        super().setUp()
        self.route(SVC4, "dev-a", TO4)

    def test_custom_member_and_header(self):
        c = self.connect(N.BASE4)
        self.assertPod(c.request("GET", "/", [("baggage", "a=1, tenant=dev-a")]), "sandbox", "--key-member")
        self.assertPod(c.request("GET", "/", [("tracestate", "tenant=dev-a")]), "sandbox", "--key-member")
        self.assertPod(c.request("GET", "/", [("X-Route-Key", "dev-a")]), "sandbox", "--key-header")
        self.assertPod(c.request("GET", "/", [("baggage", "sd-routing-key=dev-a")]), "baseline",
                       "the default member name still used after --key-member tenant")
        self.assertPod(c.request("GET", "/", []), "baseline")

    def test_configured_limits(self):
        ok = [("X-H-%d" % i, "v") for i in range(15)] + [("X-Route-Key", "dev-a")]
        self.assertPod(self.get(N.BASE4, "/", ok), "sandbox", "17 headers, under --max-headers 20")
        for what, hs in (("25 headers > --max-headers 20", [("X-H-%d" % i, "v") for i in range(25)]),
                         ("5000-byte head > --max-head-bytes 4096", [("X-Fill", "f" * 5000)])):
            with self.subTest(what):
                mark = self.node.mark()
                c = self.connect(N.BASE4)
                c.try_send(build_request("GET", "/limit", hs + [("X-Route-Key", "dev-a")], host=SVC4))
                r, reply = c.try_response()
                self.assertIsNotNone(r, "no response: %s" % reply.get("error"))
                self.assertEqual(r.status, 431, what)
                self.assertNoUpstreamTraffic(mark, what)


class FreshMachineBpffs(NodeTestCase):
    """A fresh node has no bpffs at /sys/fs/bpf: shuntd mounts one. Run it in
    a private mount namespace where /sys/fs/bpf is unmounted, so the host's
    bpffs is neither needed nor touched."""

    needs_shuntd = False

    def test_shuntd_mounts_bpffs_when_none_is_mounted(self):
        n = self.node
        log = os.path.join(n.tmp, "fresh-shuntd.log")
        script = ("while umount /sys/fs/bpf 2>/dev/null; do :; done; "
                  "if grep -q ' /sys/fs/bpf bpf ' /proc/self/mounts; then exit 99; fi; "
                  "exec " + shlex.join(n.nsenter("node") + n.shuntd_argv()))
        with open(log, "wb") as f:
            p = n.spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                        stdout=f, stderr=f)
        try:
            deadline = time.monotonic() + 15
            while "ready" not in open(log).read():
                self.assertIsNone(p.poll(), "shuntd exited %s:\n%s" % (p.returncode, open(log).read()))
                self.assertLess(time.monotonic(), deadline, "not ready:\n" + open(log).read())
                time.sleep(0.05)
            self.assertIn("mounted a bpffs at /sys/fs/bpf", open(log).read())
            # Its pins live in its own bpffs, not in the host's.
            self.assertFalse(os.path.exists(n.pin), "pins appeared in the host's bpffs")
            self.route(SVC4, "dev-a", TO4)
            self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox")
            self.assertPod(self.get(N.BASE4, "/", []), "baseline")
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0, open(log).read())
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)


class FdExhaustion(NodeTestCase):
    """Out of file descriptors, shuntd refuses connections with a close or
    answers 503; it never leaves a connection hanging, and it recovers."""

    def test_out_of_descriptors_refuses_cleanly_and_recovers(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        pid = n.shuntd.pid
        limit = len(os.listdir("/proc/%d/fd" % pid)) + 16
        p = subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (limit, limit)],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        outcomes = {"answered": 0, "503": 0, "closed": 0}
        conns = [self.connect(N.BASE4) for _ in range(40)]
        for c in conns:
            c.try_send(build_request("GET", "/fd", [key_header("dev-a")], host=SVC4))
        for c in conns:
            r, reply = c.try_response(timeout=3)
            if r is None:
                self.assertTrue(reply.get("eof") or "reset" in str(reply.get("error", "")).lower(),
                                "a connection neither answered nor closed: %r" % reply)
                outcomes["closed"] += 1
            elif r.status == 503:
                outcomes["503"] += 1
            else:
                self.assertEqual(r.status, 200)
                self.assertPod(r, "sandbox")
                outcomes["answered"] += 1
        # More clients than descriptors: some were refused (closed) or got a
        # 503 (no descriptor left for their upstream); none was left hanging.
        self.assertEqual(sum(outcomes.values()), len(conns), outcomes)
        self.assertGreater(outcomes["closed"], 0, outcomes)
        for c in conns:
            c.close()
        self.conns = []
        deadline = time.monotonic() + 5
        while True:  # the descriptors come back as the closes are seen
            r = self.node.client.request(N.BASE4, N.HTTP_PORT, "GET", "/after",
                                         headers=[key_header("dev-a")], timeout=3)
            if r is not None and r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertPod(r, "sandbox", "after the connections were released")
        self.assertGreaterEqual(n.status()["proxy"]["refused"], outcomes["closed"])
