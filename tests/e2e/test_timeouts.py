# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Idle and head timeouts, with shuntd run with short ones (2s)."""

import time

import node as N
from base import SVC4, TO4, NodeTestCase
from httpmsg import build_request, key_header

TIMEOUT = 2.0
SLACK = 2.5


class Timeouts(NodeTestCase):
    node_opts = {"shuntd_args": ["--head-timeout", "2s", "--idle-timeout", "2s"]}

    def setUp(self):
        super().setUp()
        self.route(SVC4, "dev-a", TO4)

    def test_idle_keepalive_connection_closed(self):
        c = self.connect(N.BASE4)
        self.assertPod(c.request("GET", "/", [key_header("dev-a")]), "sandbox")
        r = c.wait_closed(timeout=TIMEOUT + SLACK + 2)
        self.assertTrue(r["closed"], "idle connection still open after %.1fs" % r["after"])
        self.assertGreaterEqual(r["after"], TIMEOUT - 0.6, "closed too early (%.1fs)" % r["after"])
        self.assertLessEqual(r["after"], TIMEOUT + SLACK, "closed late (%.1fs)" % r["after"])

    def test_connection_without_any_bytes_closed(self):
        c = self.connect(N.BASE4)
        r = c.wait_closed(timeout=TIMEOUT + SLACK + 2)
        self.assertTrue(r["closed"], "silent connection still open after %.1fs" % r["after"])
        self.assertLessEqual(r["after"], TIMEOUT + SLACK)

    def test_incomplete_head_closed(self):
        mark = self.node.mark()
        c = self.connect(N.BASE4)
        c.send(b"GET /incomplete HTTP/1.1\r\nHost: svc\r\nbaggage: sd-routing-key=dev-a\r\n")
        r = c.wait_closed(timeout=TIMEOUT + SLACK + 2)
        self.assertTrue(r["closed"], "incomplete head still open after %.1fs" % r["after"])
        self.assertLessEqual(r["after"], TIMEOUT + SLACK)
        if r["data"]:
            self.assertTrue(r["data"].startswith(b"HTTP/1.1 408") or r["data"].startswith(b"HTTP/1.1 400"),
                            "unexpected answer to an incomplete head: %r" % r["data"][:200])
        self.assertNoUpstreamTraffic(mark, "an incomplete head")

    def test_head_trickled_slower_than_head_timeout_closed(self):
        # Slowloris: every byte arrives well inside the idle timeout, the head never completes in time.
        mark = self.node.mark()
        c = self.connect(N.BASE4)
        head = build_request("GET", "/trickle", [key_header("dev-a")], host=SVC4)
        t0 = time.monotonic()
        closed_at = None
        for i in range(len(head)):
            r = c.try_send(head[i : i + 1])
            if not r.get("ok"):
                closed_at = time.monotonic() - t0
                break
            got, closed = c.recv(timeout=0.4)
            if closed:
                closed_at = time.monotonic() - t0
                break
            if time.monotonic() - t0 > TIMEOUT + SLACK + 2:
                break
        self.assertIsNotNone(closed_at, "a head trickled over %.1fs was not cut off" % (time.monotonic() - t0))
        self.assertLessEqual(closed_at, TIMEOUT + SLACK)
        self.assertNoUpstreamTraffic(mark, "a trickled head")

    def test_active_connection_not_cut(self):
        c = self.connect(N.BASE4)
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 2.5 * TIMEOUT:
            self.assertPod(c.request("GET", "/active/%d" % i, [key_header("dev-a")] if i % 2 else []),
                           "sandbox" if i % 2 else "baseline", "request %d at %.1fs" % (i, time.monotonic() - t0))
            i += 1
            time.sleep(TIMEOUT / 2)

    def test_slow_upstream_response_not_cut_by_head_timeout(self):
        c = self.connect(N.BASE4)
        r = c.request("GET", "/slow?ms=1500", [key_header("dev-a")], timeout=10)
        self.assertPod(r, "sandbox")
