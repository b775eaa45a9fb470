# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Request smuggling, table-driven: the classes HTTP Garden, PortSwigger's
research and RFC 9112 describe.

For every case either shunt refuses it (400/431, the connection closed,
nothing reaches any upstream), or shunt and the upstream agree on where
each request ends: the requests the upstreams logged are exactly, in order,
the requests the client got answers for. A request hidden in another's body
that an upstream parsed would show up upstream without an answer of its
own, or be answered by a pod its key does not name."""

import node as N
from base import SVC4, TO4, NodeTestCase

HOST = b"Host: 10.211.0.20:8080\r\n"
KEY = b"baggage: sd-routing-key=dev-a\r\n"
# What a smuggler hides: an un-keyed request that must never be parsed
# out of another request's body.
HIDDEN = b"GET /smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
AFTER = b"GET /after HTTP/1.1\r\n" + HOST + b"\r\n"


def post(path, headers, body):
    return b"POST " + path + b" HTTP/1.1\r\n" + HOST + KEY + headers + b"\r\n" + body


def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


# (what, bytes, status): every one must be refused with this status.
REFUSE = [
    ("CL.TE", post(b"/clte", b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + HIDDEN), 400),
    ("TE.CL", post(b"/tecl", b"Transfer-Encoding: chunked\r\nContent-Length: 60\r\n",
                   chunk(HIDDEN) + b"0\r\n\r\n"), 400),
    ("TE.TE xchunked", post(b"/te1", b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + HIDDEN), 400),
    ("TE.TE chunked, identity", post(b"/te2", b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), 400),
    ("TE.TE identity, chunked", post(b"/te3", b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n"), 400),
    ("TE.TE repeated", post(b"/te4", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                            b"0\r\n\r\n"), 400),
    ("TE.TE repeated, second bogus", post(b"/te5", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
                                          b"0\r\n\r\n"), 400),
    ("TE with a tab before the colon", post(b"/te6", b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n"), 400),
    ("TE with a space before the colon", post(b"/te7", b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), 400),
    ("TE value with a vertical tab", post(b"/te8", b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), 400),
    ("TE in HTTP/1.0", b"POST /te10 HTTP/1.0\r\n" + HOST + KEY + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400),
    ("TE obs-folded", post(b"/te9", b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), 400),
    ("CL with a plus sign", post(b"/cl1", b"Content-Length: +5\r\n", b"hello"), 400),
    ("CL negative", post(b"/cl2", b"Content-Length: -5\r\n", b"hello"), 400),
    ("CL list of equal values", post(b"/cl3", b"Content-Length: 5, 5\r\n", b"hello"), 400),
    ("CL list of differing values", post(b"/cl4", b"Content-Length: 5, 50\r\n", b"hello" + HIDDEN), 400),
    ("CL with inner space", post(b"/cl5", b"Content-Length: 5 0\r\n", b"hello"), 400),
    ("CL hexadecimal", post(b"/cl6", b"Content-Length: 0x5\r\n", b"hello"), 400),
    ("CL overflowing 64 bits", post(b"/cl7", b"Content-Length: 18446744073709551621\r\n", b"hello"), 400),
    ("CL duplicate, differing", post(b"/cl8", b"Content-Length: 5\r\nContent-Length: 42\r\n", b"hello" + HIDDEN),
     400),
    ("CL empty", post(b"/cl9", b"Content-Length:\r\n", b""), 400),
    ("CL with a tab", post(b"/cl10", b"Content-Length:\t5\r\n", b"hello"), 400),
    ("CL with trailing space", post(b"/cl11", b"Content-Length: 5 \r\n", b"hello"), 400),
    ("TE with a trailing tab", post(b"/te11", b"Transfer-Encoding: chunked\t\r\n", b"0\r\n\r\n" + HIDDEN), 400),
    ("TE with a trailing space", post(b"/te12", b"Transfer-Encoding: chunked \r\n", b"0\r\n\r\n"), 400),
    ("chunk size overflow", post(b"/ck1", b"Transfer-Encoding: chunked\r\n",
                                 b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk size with 0x prefix", post(b"/ck2", b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"),
     400),
    ("chunk size with trailing junk", post(b"/ck3", b"Transfer-Encoding: chunked\r\n",
                                           b"5g\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk size line with bare LF", post(b"/ck4", b"Transfer-Encoding: chunked\r\n", b"5\nhello\r\n0\r\n\r\n"),
     400),
    ("chunk data without CRLF", post(b"/ck5", b"Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX0\r\n\r\n"), 400),
    ("chunk data ended by bare LF", post(b"/ck6", b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\n0\r\n\r\n"),
     400),
    ("bare CR in chunk extension", post(b"/ck7", b"Transfer-Encoding: chunked\r\n",
                                        b"5;a=b\rc\r\nhello\r\n0\r\n\r\n"), 400),
    ("bare LF in chunk extension", post(b"/ck8", b"Transfer-Encoding: chunked\r\n",
                                        b"5;a\nb\r\nhello\r\n0\r\n\r\n"), 400),
    ("last chunk then bare LF", post(b"/ck9", b"Transfer-Encoding: chunked\r\n", b"0\r\n\n" + HIDDEN), 400),
    ("obs-fold in trailer", post(b"/ck10", b"Transfer-Encoding: chunked\r\n", b"0\r\nX: a\r\n b\r\n\r\n"), 400),
    ("NUL in a header value", b"GET /nul HTTP/1.1\r\n" + HOST + KEY + b"X-A: a\x00b\r\n\r\n", 400),
    ("NUL in a header name", b"GET /nul2 HTTP/1.1\r\n" + HOST + KEY + b"X\x00A: b\r\n\r\n", 400),
    ("control byte in a header value", b"GET /ctl HTTP/1.1\r\n" + HOST + KEY + b"X-A: a\x01b\r\n\r\n", 400),
    ("bare CR in a header value", b"GET /cr HTTP/1.1\r\n" + HOST + KEY + b"X-A: a\rb\r\n\r\n", 400),
    ("space in the request target", b"GET /a b HTTP/1.1\r\n" + HOST + KEY + b"\r\n", 400),
    ("HTTP/0.9 request line", b"GET /\r\n\r\n", 400),
    ("HTTP/1.2", b"GET /v HTTP/1.2\r\n" + HOST + KEY + b"\r\n", 400),
    ("HTTP/2.0 over HTTP/1 framing", b"GET /v HTTP/2.0\r\n" + HOST + KEY + b"\r\n", 400),
    ("HTTP/1.10", b"GET /v HTTP/1.10\r\n" + HOST + KEY + b"\r\n", 400),
    ("lowercase version", b"GET /v http/1.1\r\n" + HOST + KEY + b"\r\n", 400),
    ("two Host headers", b"GET /h HTTP/1.1\r\n" + HOST + HOST + KEY + b"\r\n", 400),
    ("request line over 64 KiB", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 431),
    ("one header over 64 KiB", b"GET /big HTTP/1.1\r\n" + HOST + b"X-A: " + b"b" * 70000 + b"\r\n\r\n", 431),
]

# (what, bytes): valid, if unusual: forwarded, and the upstream must parse
# exactly the requests shunt answered, in order.
ACCEPT = [
    ("chunk extensions", post(b"/ok1", b"Transfer-Encoding: chunked\r\n",
                              b"5;name=value;flag\r\nhello\r\n0;last\r\n\r\n")),
    ("chunked with trailers", post(b"/ok2", b"Transfer-Encoding: chunked\r\n",
                                   chunk(b"hello") + b"0\r\nX-Checksum: 1\r\n\r\n")),
    ("chunk size with leading zeros", post(b"/ok3", b"Transfer-Encoding: chunked\r\n",
                                           b"0005\r\nhello\r\n000\r\n\r\n")),
    ("CL with leading zeros", post(b"/ok4", b"Content-Length: 005\r\n", b"hello")),
    ("CL with leading spaces", post(b"/ok5", b"Content-Length:    5\r\n", b"hello")),
    ("TE value case", post(b"/ok6", b"Transfer-Encoding: ChUnKeD\r\n", chunk(b"hello") + b"0\r\n\r\n")),
    ("a body that looks like a request", post(b"/ok7", b"Content-Length: %d\r\n" % len(HIDDEN), HIDDEN)),
    ("chunked body that looks like a request", post(b"/ok8", b"Transfer-Encoding: chunked\r\n",
                                                    chunk(HIDDEN) + b"0\r\n\r\n")),
    ("absolute-form target", b"GET http://10.211.0.20:8080/ok9 HTTP/1.1\r\n" + HOST + KEY + b"\r\n"),
    ("empty lines before the request", b"\r\n\r\nGET /ok10 HTTP/1.1\r\n" + HOST + KEY + b"\r\n"),
    ("HTTP/1.0 with keep-alive", b"GET /ok11 HTTP/1.0\r\n" + HOST + KEY + b"Connection: keep-alive\r\n\r\n"),
    ("GET with a body", b"GET /ok12 HTTP/1.1\r\n" + HOST + KEY + b"Content-Length: 5\r\n\r\nhello"),
]


class Smuggling(NodeTestCase):
    def setUp(self):
        super().setUp()
        self.route(SVC4, "dev-a", TO4)

    def test_refused_and_never_forwarded(self):
        for what, data, status in REFUSE:
            with self.subTest(what):
                mark = self.node.mark()
                c = self.connect(N.BASE4)
                c.try_send(data + AFTER)
                r, reply = c.try_response(timeout=5)
                self.assertIsNotNone(r, "%s: no response (%s)" % (what, reply.get("error") or "EOF"))
                self.assertEqual(r.status, status, "%s: %r" % (what, r))
                self.assertTrue(c.wait_closed(timeout=3)["closed"], "%s: connection left open" % what)
                self.assertNoUpstreamTraffic(mark, what)
                c.close()

    def test_accepted_cases_parsed_alike_upstream(self):
        for what, data in ACCEPT:
            with self.subTest(what):
                mark = self.node.mark()
                c = self.connect(N.BASE4)
                c.send(data + AFTER)
                answered = []
                for _ in range(4):
                    r, reply = c.try_response(timeout=3)
                    if r is None:
                        break
                    self.assertEqual(r.status, 200, "%s: %r" % (what, r))
                    answered.append((r.pod, r.json()["path"]))
                    if answered[-1][1] == "/after":
                        break
                c.close()
                # The first request carried the key: sandbox; /after did not.
                self.assertEqual(len(answered), 2, "%s: answers %r" % (what, answered))
                self.assertEqual(answered[0][0], "sandbox", what)
                self.assertEqual(answered[1], ("baseline", "/after"), what)
                seen = [(name, ev["path"]) for name in ("baseline", "sandbox", "sandbox2")
                        for ev in self.node.requests(name, mark)]
                self.assertEqual(sorted(seen), sorted(answered),
                                 "%s: upstreams parsed %r, shunt answered %r" % (what, seen, answered))
                self.assertNotIn("/smuggled", [p for _, p in seen], what)

    def test_empty_line_split_before_the_first_request(self):
        # A CR alone in the first read, its LF later: not "non-HTTP bytes"
        # to be tunnelled unrouted, just the empty line RFC 9112 lets a
        # server ignore.
        c = self.connect(N.BASE4)
        c.send(b"\r")
        c.send(b"\nGET /split-crlf HTTP/1.1\r\n" + HOST + KEY + b"\r\n", chunk=1, delay=0.01)
        r, reply = c.try_response(timeout=5)
        self.assertIsNotNone(r, reply.get("error"))
        self.assertEqual((r.status, r.pod), (200, "sandbox"))
