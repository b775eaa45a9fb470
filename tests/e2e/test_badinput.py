# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Malformed and oversized requests are refused by the proxy and never
forwarded; bytes that are not HTTP at all are tunnelled unchanged."""

import random

import node as N
from base import ECHO4, ECHO6, SBX_ECHO4, SVC4, TO4, NodeTestCase

H = b"Host: 10.211.0.20:8080\r\nbaggage: sd-routing-key=dev-a\r\n"


def _too_big_head():
    return b"GET /big-head HTTP/1.1\r\n" + H + b"X-Fill: " + b"a" * 70000 + b"\r\n\r\n"


def _too_many_headers():
    return b"GET /many HTTP/1.1\r\n" + H + b"".join(b"X-H-%d: v\r\n" % i for i in range(150)) + b"\r\n"


BAD = [
    # (what, bytes, expected status)
    ("head over 64 KiB", _too_big_head(), 431),
    ("too many headers", _too_many_headers(), 431),
    ("Content-Length and Transfer-Encoding",
     b"POST /clte HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
    ("differing duplicate Content-Length",
     b"POST /dupcl HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("Content-Length list with differing values",
     b"POST /clist HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!", 400),
    ("invalid chunk size",
     b"POST /badchunk HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("negative-looking chunk size",
     b"POST /negchunk HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("obs-fold", b"GET /fold HTTP/1.1\r\n" + H + b"X-Folded: a\r\n  b\r\n\r\n", 400),
    ("bare LF line endings", b"GET /lf HTTP/1.1\nHost: 10.211.0.20:8080\nbaggage: sd-routing-key=dev-a\n\n", 400),
    ("bare LF in one header line", b"GET /lf2 HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n", 400),
    ("invalid method", b"G@T /m HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("invalid version", b"GET /v HTTP/1.x\r\n" + H + b"\r\n", 400),
    ("unknown major version", b"GET /v2 HTTP/7.1\r\n" + H + b"\r\n", 400),
    ("space before colon", b"GET /sp HTTP/1.1\r\n" + H + b"X-Bad : 1\r\n\r\n", 400),
]


def client_hello():
    rnd = random.Random(1)
    sni = b"\x00\x00\x00\x10\x00\x0e\x00\x00\x0bexample.com"
    body = (b"\x03\x03" + rnd.randbytes(32) + b"\x00" + b"\x00\x04\x13\x01\x13\x02" + b"\x01\x00"
            + len(sni).to_bytes(2, "big") + sni)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs




class BadInput(NodeTestCase):
    def setUp(self):
        super().setUp()
        self.route(SVC4, "dev-a", TO4)

    def test_malformed_requests_rejected_and_not_forwarded(self):
        for what, data, status in BAD:
            with self.subTest(what):
                mark = self.node.mark()
                c = self.connect(N.BASE4)
                sent = c.try_send(data)
                r, reply = c.try_response(timeout=5)
                self.assertIsNotNone(r, "no %d response (%s; send: %s)" % (status, reply.get("error") or "EOF",
                                                                          sent.get("error") or "ok"))
                self.assertEqual(r.status, status, "%s: %r" % (what, r))
                closed = c.wait_closed(timeout=3)
                self.assertTrue(closed["closed"], "%s: connection left open after %d" % (what, status))
                self.assertNoUpstreamTraffic(mark, what)
                c.close()

    def test_malformed_after_good_request_on_same_connection(self):
        # A good keyed request first (the proxy now has an upstream for this
        # connection), then smuggling attempts: still nothing forwarded.
        for what, data, status in BAD[2:5]:
            with self.subTest(what):
                c = self.connect(N.BASE4)
                r = c.request("GET", "/good", [("baggage", "sd-routing-key=dev-a")])
                self.assertEqual(r.pod, "sandbox")
                mark = self.node.mark()
                c.try_send(data)
                r, reply = c.try_response(timeout=5)
                self.assertIsNotNone(r, "no response: %s" % reply.get("error"))
                self.assertEqual(r.status, status)
                self.assertTrue(c.wait_closed(timeout=3)["closed"])
                self.assertNoUpstreamTraffic(mark, what)
                c.close()

    def test_non_http_first_bytes_tunnelled_unchanged(self):
        self.route(ECHO4, "dev-a", SBX_ECHO4)
        self.route(ECHO6, "dev-a", N.hostport(N.SBX6, N.ECHO_PORT))
        rnd = random.Random(3)
        binary = b"\x8f\x00" + rnd.randbytes(5000)
        # (The HTTP/2 preface is routed per stream now: test_h2; with
        # --http2 off it is tunnelled like these, test_h2.H2Off.)
        cases = [("TLS ClientHello", client_hello()), ("random binary", binary)]
        for ip in (N.BASE4, N.BASE6):
            for what, data in cases:
                with self.subTest(what, ip=ip):
                    mark = self.node.mark()
                    before = self.node.status()["kernel"]["captured"]
                    c = self.connect(ip, N.ECHO_PORT)
                    c.send(data)
                    got, closed = c.recv(n=len(data), timeout=3)
                    self.assertEqual(got, data, "%s: echo differs (%d of %d bytes back, closed=%s)"
                                     % (what, len(got), len(data), closed))
                    more = b"second write \x00\x01\x02"
                    c.send(more)
                    self.assertEqual(c.recv(n=len(more), timeout=3)[0], more)
                    c.shutdown_wr()
                    self.assertTrue(c.wait_closed(timeout=3)["closed"], "tunnel not closed after EOF")
                    self.assertGreater(self.node.status()["kernel"]["captured"], before,
                                       "echo service was not captured: the test proves nothing")
                    self.assertEqual(len(self.node.events("baseline-echo", mark, kinds=("accept",))), 1,
                                     "expected one connection to the baseline echo server")
                    self.assertEqual(self.node.events("sandbox-echo", mark), [], "non-HTTP bytes went to the sandbox")
