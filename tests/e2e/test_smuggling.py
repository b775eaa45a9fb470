# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Request smuggling, table-driven: the classes HTTP Garden, PortSwigger's
research and RFC 9112 describe.

For every case either shunt refuses it (400/431, the connection closed,
nothing reaches any upstream), or shunt and the upstream agree on where
each request ends: the requests the upstreams logged are exactly, in order,
the requests the client got answers for. A request hidden in another's body
that an upstream parsed would show up upstream without an answer of its
own, or be answered by a pod its key does not name."""

import os
import re
import shutil
import subprocess
import time

import node as N
import test_h2 as h2
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


# ---- HTTP/2 ----------------------------------------------------------------------
# An HTTP/2 upstream gets every stream with explicit framing (shunt never
# turns HTTP/2 into HTTP/1.1), so the classic smuggling of a request inside
# another cannot happen on the way out. What must hold is RFC 9113 section
# 8.1.1: a malformed request is answered with RST_STREAM (or GOAWAY) and
# never forwarded, and a well-formed one in an unusual shape reaches the
# upstream its key names, once, with nothing else. The upstreams are
# nghttpd -v: its log shows every :path it received.

H2_PORT = 8082
H2_AUTH = "%s:%d" % (N.BASE4, H2_PORT)
H2_KEY = ("baggage", "sd-routing-key=dev-a")


def h2_get(path, *extra, method="GET", key=True):
    return ([(":method", method), (":scheme", "http"), (":authority", H2_AUTH), (":path", path)]
            + ([H2_KEY] if key else []) + list(extra))


def h2_headers(sid, fields, end=True):
    return h2.frame(1, 0x04 | (0x01 if end else 0), sid, h2.hpack_literal(fields))


def h2_data(sid, data, end=True):
    return h2.frame(0, 0x01 if end else 0, sid, data)


def h2_without(fields, name):
    return [f for f in fields if f[0] != name]


# (what, frames of stream 1 given its path, kind): "header" cases are
# refused before routing (never reach any upstream); "body" cases are
# routed when their head arrives and reset when the body breaks the rules
# (the upstream gets RST_STREAM, never a request that ended).
H2_REFUSE = [
    ("uppercase field name", lambda p: h2_headers(1, h2_get(p, ("X-Upper", "v"))), "header"),
    ("connection", lambda p: h2_headers(1, h2_get(p, ("connection", "keep-alive"))), "header"),
    ("keep-alive", lambda p: h2_headers(1, h2_get(p, ("keep-alive", "5"))), "header"),
    ("proxy-connection", lambda p: h2_headers(1, h2_get(p, ("proxy-connection", "x"))), "header"),
    ("H2.TE: transfer-encoding", lambda p: h2_headers(1, h2_get(p, ("transfer-encoding", "chunked"))), "header"),
    ("upgrade", lambda p: h2_headers(1, h2_get(p, ("upgrade", "websocket"))), "header"),
    ("te other than trailers", lambda p: h2_headers(1, h2_get(p, ("te", "gzip"))), "header"),
    ("duplicate :path", lambda p: h2_headers(1, h2_get(p, (":path", "/other"))), "header"),
    ("no :path", lambda p: h2_headers(1, h2_without(h2_get(p), ":path") + [("x-was", p)]), "header"),
    ("no :method", lambda p: h2_headers(1, h2_without(h2_get(p), ":method")), "header"),
    ("no :scheme", lambda p: h2_headers(1, h2_without(h2_get(p), ":scheme")), "header"),
    ("empty :path", lambda p: h2_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", H2_AUTH),
                                             (":path", ""), H2_KEY, ("x-was", p)]), "header"),
    ("pseudo-header after a field", lambda p: h2_headers(1, [H2_KEY] + h2_get(p, key=False)), "header"),
    ("unknown pseudo-header", lambda p: h2_headers(1, h2_get(p, (":foo", "bar"))), "header"),
    ("response pseudo-header", lambda p: h2_headers(1, h2_get(p, (":status", "200"))), "header"),
    ("CR in a value", lambda p: h2_headers(1, h2_get(p, ("x", "a\rb"))), "header"),
    ("LF in a value", lambda p: h2_headers(1, h2_get(p, ("x", "a\nb"))), "header"),
    ("NUL in a value", lambda p: h2_headers(1, h2_get(p, ("x", "a\x00b"))), "header"),
    ("CRLF and a header in :path", lambda p: h2_headers(1, h2_get(p + "\r\nx-smuggled: 1")), "header"),
    ("space in :path", lambda p: h2_headers(1, h2_get(p + " HTTP/1.1")), "header"),
    ("space in a field name", lambda p: h2_headers(1, h2_get(p, ("x y", "v"))), "header"),
    ("colon in a field name", lambda p: h2_headers(1, h2_get(p, ("x:y", "v"))), "header"),
    ("empty field name", lambda p: h2_headers(1, h2_get(p, ("", "v"))), "header"),
    ("two content-lengths", lambda p: h2_headers(1, h2_get(p, ("content-length", "0"), ("content-length", "0"),
                                                           method="POST")), "header"),
    ("CONNECT with a :path", lambda p: h2_headers(1, h2_get(p, method="CONNECT"), end=False), "header"),
    ("extended CONNECT without the setting",
     lambda p: h2_headers(1, h2_get(p, (":protocol", "websocket"), method="CONNECT"), end=False), "header"),
    ("H2.CL: content-length 0 with a body",
     lambda p: h2_headers(1, h2_get(p, ("content-length", "0"), method="POST"), end=False)
     + h2_data(1, b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"), "body"),
    ("content-length longer than the body",
     lambda p: h2_headers(1, h2_get(p, ("content-length", "5"), method="POST"), end=False) + h2_data(1, b"012"), "body"),
    ("content-length shorter than the body",
     lambda p: h2_headers(1, h2_get(p, ("content-length", "5"), method="POST"), end=False)
     + h2_data(1, b"0123456789"), "body"),
    ("pseudo-header in trailers",
     lambda p: h2_headers(1, h2_get(p, method="POST"), end=False) + h2_data(1, b"x", end=False)
     + h2_headers(1, [(":path", "/smuggled")]), "body"),
    ("trailers without END_STREAM",
     lambda p: h2_headers(1, h2_get(p, method="POST"), end=False) + h2_data(1, b"x", end=False)
     + h2_headers(1, [("x-t", "1")], end=False), "body"),
]


def h2_split(sid, fields, cuts):
    """HEADERS + CONTINUATION frames: the block cut at the given offsets."""
    block = h2.hpack_literal(fields)
    parts = [block[a:b] for a, b in zip([0] + cuts, cuts + [len(block)])]
    out = h2.frame(1, 0x01, sid, parts[0])
    for i, part in enumerate(parts[1:]):
        out += h2.frame(9, 0x04 if i == len(parts) - 2 else 0, sid, part)
    return out


def h2_padded_headers(sid, fields):
    block = h2.hpack_literal(fields)
    # PADDED | PRIORITY | END_HEADERS | END_STREAM: pad length 7, then
    # the stream dependency (0, weight 16), the block, seven zeros.
    return h2.frame(1, 0x08 | 0x20 | 0x04 | 0x01, sid, b"\x07" + b"\x00\x00\x00\x00\x0f" + block + b"\x00" * 7)


# (what, frames of stream 1 given its path): well-formed requests in
# unusual shapes. Each must reach the sandbox once, and nothing else.
H2_ACCEPT = [
    ("te: trailers", lambda p: h2_headers(1, h2_get(p, ("te", "trailers")))),
    ("header block in CONTINUATION frames", lambda p: h2_split(1, h2_get(p, ("x-pad", "v" * 100)), [3, 40, 90])),
    ("the key in CONTINUATION", lambda p: h2_split(1, h2_get(p, key=False) + [("x-pad", "v" * 50), H2_KEY], [60])),
    ("padding and priority in HEADERS", lambda p: h2_padded_headers(1, h2_get(p))),
    ("padded DATA", lambda p: h2_headers(1, h2_get(p, ("content-length", "5"), method="POST"), end=False)
     + h2.frame(0, 0x08 | 0x01, 1, b"\x03hello\x00\x00\x00")),
    ("body in one-byte DATA frames, then an empty one",
     lambda p: h2_headers(1, h2_get(p, ("content-length", "5"), method="POST"), end=False)
     + b"".join(h2_data(1, bytes([c]), end=False) for c in b"hello") + h2_data(1, b"")),
    ("a body that looks like an HTTP/1 request",
     lambda p: h2_headers(1, h2_get(p, method="POST"), end=False)
     + h2_data(1, b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")),
    ("request trailers", lambda p: h2_headers(1, h2_get(p, ("te", "trailers"), method="POST"), end=False)
     + h2_data(1, b"hello", end=False) + h2_headers(1, [("x-checksum", "1")])),
    ("the key in the second of two baggage fields",
     lambda p: h2_headers(1, h2_get(p, ("baggage", "other=1"), key=False) + [H2_KEY])),
    ("cookie in two fields", lambda p: h2_headers(1, h2_get(p, ("cookie", "a=1"), ("cookie", "b=2")))),
]


class SmugglingH2(NodeTestCase):
    @classmethod
    def prepare_node(cls, node):
        if not shutil.which("nghttpd"):
            raise N.Skip("nghttpd is not installed (scripts/deps.sh installs it)")
        cls.h2logs = {}
        for pod, name in (("base", "baseline"), ("sbx", "sandbox")):
            docroot = os.path.join(node.tmp, "smuggle-" + name)
            os.makedirs(docroot, exist_ok=True)
            with open(os.path.join(docroot, "who"), "w") as f:
                f.write(name + "\n")
            log = os.path.join(node.tmp, "nghttpd-%s.log" % name)
            p = node.pod_spawn(pod, ["stdbuf", "-oL", "nghttpd", "-v", "--no-tls", "-d", docroot, str(H2_PORT)],
                               in_cgroup=False, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
            node.wait_listen(pod, H2_PORT, proc=p)
            cls.h2logs[name] = log

    def setUp(self):
        super().setUp()
        self.route(H2_AUTH, "dev-a", "%s:%d" % (N.SBX4, H2_PORT))

    def seen(self):
        """{pod: [every :path its upstream received]}"""
        time.sleep(0.2)
        out = {}
        for name, log in self.h2logs.items():
            with open(log, "rb") as f:
                out[name] = re.findall(rb"recv \(stream_id=\d+\) :path: (.*)", f.read())
        return out

    def exchange(self, frames, after_path):
        """frames for stream 1, then a good unkeyed stream 3 on the same
        connection: what came back per stream."""
        c = self.connect(N.BASE4, H2_PORT)
        c.send(h2.PREFACE + h2.SETTINGS + frames + h2_headers(3, h2_get(after_path, key=False)))
        try:
            return h2.read_streams(c, (1, 3))
        finally:
            c.close()

    def test_malformed_requests_are_reset_and_never_forwarded(self):
        for n, (what, build, kind) in enumerate(H2_REFUSE):
            with self.subTest(what):
                path, after = "/who?bad=%d" % n, "/who?after-refused=%d" % n
                routed = self.node.status()["proxy"]["requests"]
                got = self.exchange(build(path), after)
                # RST_STREAM PROTOCOL_ERROR for the stream, or GOAWAY for
                # the connection (then stream 3 was never processed).
                self.assertIn(got.get(1, got.get(0)), (b"RST_STREAM 1", b"GOAWAY 1"), got)
                if 0 not in got:
                    self.assertEqual(got.get(3), b"baseline\n", "the stream after it: %r" % got)
                seen = self.seen()
                if kind == "header":
                    self.assertEqual(self.node.status()["proxy"]["requests"] - routed, 0 if 0 in got else 1,
                                     "a malformed stream was routed")
                    self.assertEqual([p for ps in seen.values() for p in ps if p.startswith(path.encode())], [])

    def test_unusual_but_valid_requests_reach_their_upstream_once(self):
        for n, (what, build) in enumerate(H2_ACCEPT):
            with self.subTest(what):
                path, after = "/who?ok=%d" % n, "/who?after-accepted=%d" % n
                got = self.exchange(build(path), after)
                self.assertEqual((got.get(1), got.get(3)), (b"sandbox\n", b"baseline\n"), got)
                seen = self.seen()
                mine = (path.encode(), after.encode())
                self.assertEqual(([p for p in seen["sandbox"] if p in mine], [p for p in seen["baseline"] if p in mine]),
                                 ([path.encode()], [after.encode()]), seen)
