# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""HTTP/1 edge cases of the proxy: request framing (Transfer-Encoding,
chunked bodies, pipelining), CONNECT and 101, retries, upstream resets,
timeouts and accept bursts. Each test fails while the bug it names is
present; each asserts behaviour RFC 9110/9112 (or DESIGN.md)
requires. Scripted upstreams run in the sandbox pod on port 8081 and are
killed at the end of every test."""

import json
import os
import signal
import socket
import subprocess
import time

import node as N
from base import SVC4, TO4, NodeTestCase
from httpmsg import build_request, key_header

KEY = [key_header("dev-r")]  # routed to the scripted upstream where a test wants it
KEY_A = [key_header("dev-a")]  # routed to the stock sandbox server
SCRIPT_PORT = 8081
SCRIPTED = N.hostport(N.SBX4, SCRIPT_PORT)

# A tiny upstream whose misbehaviour (or legitimate-but-rare behaviour) is
# chosen by argv[1]. It logs one JSON line per request it read.
SCRIPT = r'''
import json, socket, sys, threading, time
mode, port, logp, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()
def log(**ev):
    with lock, open(logp, "a") as f:
        f.write(json.dumps(ev) + "\n")
def read_head(s, buf):
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None, buf
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest
def clen(head):
    for ln in head.split("\r\n")[1:]:
        k, _, v = ln.partition(":")
        if k.strip().lower() == "content-length":
            return int(v.strip())
    return 0
def read_body(s, buf, n):
    while len(buf) < n:
        d = s.recv(65536)
        if not d:
            return None, buf
        buf += d
    return buf[:n], buf[n:]
def echo(s, buf):
    if buf:
        s.sendall(buf)
    while True:
        d = s.recv(65536)
        if not d:
            break
        s.sendall(d)
    s.shutdown(socket.SHUT_WR)
def serve(s, peer):
    buf = b""
    n = 0
    try:
        while True:
            head, buf = read_head(s, buf)
            if head is None:
                return
            n += 1
            line = head.split("\r\n")[0]
            log(event="request", line=line, seq=n, peer=peer)
            if mode == "connect":
                if line.startswith("CONNECT "):
                    s.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    echo(s, buf)
                    return
            if mode == "blackhole":
                while s.recv(65536):
                    pass
                return
            if mode == "stallrst":
                # Read the head, not the body, then die: the body fills every window on
                # the way and the proxy still holds unsent bytes when the reset comes.
                time.sleep(0.7)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
                return
            body, buf = read_body(s, buf, clen(head))
            if body is None:
                return
            if mode == "dieonreuse" and n >= 2:
                log(event="died", line=line, seq=n, peer=peer)
                s.close()  # e.g. a crash after the side effect, before the answer
                return
            out = b"ok " + line.encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
    except OSError:
        pass
    finally:
        try:
            s.close()
        except OSError:
            pass
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", port))
ls.listen(128)
open(ready, "w").close()
while True:
    s, a = ls.accept()
    threading.Thread(target=serve, args=(s, "%s:%d" % a), daemon=True).start()
'''


class HttpEdgesBase(NodeTestCase):
    def setUp(self):
        super().setUp()
        self.scripted = []
        self.route(SVC4, "dev-a", TO4)

    def tearDown(self):
        for p, _ in self.scripted:
            N._killpg(p)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            if p in self.node.procs:
                self.node.procs.remove(p)
        super().tearDown()

    def scripted_upstream(self, mode, pod="sbx", port=SCRIPT_PORT):
        n = self.node
        tag = "%s-%d-%d" % (mode, port, len(self.scripted))
        logp = os.path.join(n.tmp, "scripted-%s.log" % tag)
        ready = os.path.join(n.tmp, "scripted-%s.ready" % tag)
        for f in (logp, ready):
            if os.path.exists(f):
                os.unlink(f)
        open(logp, "w").close()
        p = n.spawn(n.nsenter(pod) + [N.PYTHON, "-B", "-u", "-c", SCRIPT, mode, str(port), logp, ready],
                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(n.tmp, "scripted-%s.stderr" % tag), "ab"))
        self.scripted.append((p, logp))
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):
            self.assertIsNone(p.poll(), "scripted upstream %s exited" % mode)
            self.assertLess(time.monotonic(), deadline, "scripted upstream %s not ready" % mode)
            time.sleep(0.02)
        return logp

    @staticmethod
    def log_events(logp):
        with open(logp) as f:
            return [json.loads(ln) for ln in f if ln.strip()]


class HttpEdgeFraming(HttpEdgesBase):
    # ---- request framing -----------------------------------------------------------

    def test_http10_request_with_transfer_encoding_refused(self):
        # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing (many
        # HTTP/1.0-aware servers ignore TE there and read the chunks as the next request).
        mark = self.node.mark()
        c = self.connect(N.BASE4)
        c.send(b"POST /echo HTTP/1.0\r\nHost: svc\r\nConnection: keep-alive\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        r = c.response()
        self.assertIsNotNone(r)
        self.assertEqual((r.status, r.header("X-Shunt-Error")), (400, "400"),
                         "HTTP/1.0 + Transfer-Encoding was forwarded: %r" % r)
        self.assertNoUpstreamTraffic(mark, "an HTTP/1.0 request with Transfer-Encoding")

    def test_chunked_body_framing_strict(self):
        # llhttp 8.1.0 skips the two bytes after chunk data without checking that they are
        # CRLF, ends the trailer section on a bare LF and accepts obs-fold in trailers:
        # framing DESIGN.md says is refused with 400 and never forwarded.
        head = build_request("POST", "/echo", KEY_A + [("Transfer-Encoding", "chunked")], host=SVC4)
        cases = {
            "chunk data not followed by CRLF": b"5\r\nhelloXY0\r\n\r\n",
            "trailer section ended by a bare LF": b"5\r\nhello\r\n0\r\n\n",
            "obs-fold in a trailer": b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n",
        }
        for what, body in cases.items():
            with self.subTest(what):
                mark = self.node.mark()
                c = self.connect(N.BASE4)
                c.send(head + body)
                r, reply = c.try_response(timeout=3)
                self.assertIsNotNone(r, "no response (%s)" % reply)
                self.assertEqual((r.status, r.header("X-Shunt-Error")), (400, "400"),
                                 "%s: not refused by shunt: %r" % (what, r))
                self.assertNoUpstreamTraffic(mark, what)
                c.close()

    def test_empty_line_before_pipelined_request_ignored(self):
        # RFC 9112 2.2: a server SHOULD ignore at least one empty line received before a
        # request-line (some clients send CRLF after a POST body).
        c = self.connect(N.BASE4)
        c.send(build_request("POST", "/echo", KEY_A, b"abc", host=SVC4) + b"\r\n" +
               build_request("GET", "/second", KEY_A, host=SVC4))
        r1 = c.response()
        self.assertPod(r1, "sandbox")
        r2 = c.response()
        self.assertIsNotNone(r2, "connection closed instead of answering the second request")
        self.assertEqual(r2.status, 200, "second request refused: %r" % r2)
        self.assertPod(r2, "sandbox")

    # ---- CONNECT -------------------------------------------------------------------------

    def test_connect_method_tunnels_after_2xx(self):
        # RFC 9110 9.3.6: after a 2xx answer to CONNECT the connection is a tunnel both ways.
        self.route(SVC4, "dev-r", SCRIPTED)
        self.scripted_upstream("connect")
        c = self.connect(N.BASE4)
        c.send(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\nbaggage: sd-routing-key=dev-r\r\n\r\n")
        got, closed = c.recv(n=39, timeout=3)
        self.assertEqual(got, b"HTTP/1.1 200 Connection Established\r\n\r\n")
        c.send(b"client-first protocol bytes")
        got, closed = c.recv(n=27, timeout=3)
        self.assertEqual(got, b"client-first protocol bytes", "client bytes after CONNECT never reached the upstream")

    # ---- upstream failures ----------------------------------------------------------------

    def test_post_not_retried_after_upstream_received_it(self):
        # RFC 9110 9.2.2: "A proxy MUST NOT automatically retry non-idempotent requests."
        self.route(SVC4, "dev-r", SCRIPTED)
        logp = self.scripted_upstream("dieonreuse")
        a = self.connect(N.BASE4)
        r = a.request("GET", "/warm", KEY, host=SVC4)
        self.assertEqual(r.status, 200)
        a.close()  # the upstream connection goes to the pool
        time.sleep(0.2)
        b = self.connect(N.BASE4)
        b.send(build_request("POST", "/charge-card", KEY, b"amount=100", host=SVC4))
        r, _ = b.try_response(timeout=5)
        posts = [e for e in self.log_events(logp) if e["event"] == "request" and e["line"].startswith("POST")]
        self.assertEqual(len(posts), 1, "the POST reached the upstream %d times (%r); the client got %r"
                         % (len(posts), posts, r))

    def test_upstream_reset_mid_body_gets_its_502_sent(self):
        # The upstream resets while the proxy still holds unsent body bytes. The write error
        # turns into a 502, but client_pump() leaves its loop without progress and nothing
        # writes it: a second later the tick closes the connection, the client gets a reset.
        self.route(SVC4, "dev-r", SCRIPTED)
        self.scripted_upstream("stallrst")
        c = self.connect(N.BASE4)
        body_len = 6 << 20
        c.send(build_request("POST", "/upload", KEY + [("Content-Length", str(body_len))], host=SVC4))
        sent = c.try_send(b"x" * body_len, timeout=6)
        r, reply = c.try_response(timeout=3)
        self.assertIsNotNone(r, "no answer at all after the sandbox reset mid-body (send: %s; read: %s)"
                             % (sent.get("error", "ok"), reply.get("error", reply)))
        self.assertEqual((r.status, r.header("X-Shunt-Error")), (502, "502"), r)

    def test_unsolicited_101_connection_never_pooled(self):
        # A request with "Upgrade" but no "Connection: upgrade" is no upgrade for llhttp, yet the
        # stock server (like many) answers 101 and starts echoing. shunt forwards the 101 and then
        # pools that connection: the next client's request to the baseline is echoed back by it.
        a = self.connect(N.BASE4)
        a.send(build_request("GET", "/ws", [("Upgrade", "websocket")], host=SVC4))
        r = a.response()
        self.assertEqual(r.status, 101)
        time.sleep(0.2)
        b = self.connect(N.BASE4)
        b.send(build_request("GET", "/innocent", [], host=SVC4))
        r2, reply = b.try_response(timeout=3)
        self.assertIsNotNone(r2, "no answer for an innocent request: %s" % reply)
        self.assertEqual(r2.status, 200, "an innocent request got %r (went down a connection that had "
                         "switched protocols)" % r2)
        self.assertPod(r2, "baseline")

    def test_fallback_baseline_with_large_body(self):
        # fallback=baseline must also hold for a request whose body is larger than the buffer:
        # nothing was sent yet (the sandbox connect is still pending), yet client_make_room()
        # sets no_retry as soon as the buffer is full, and the fallback becomes a 502.
        self.route(SVC4, "dev-fb", N.hostport(N.SBX4, N.DEAD_PORT), fallback="baseline")
        body = os.urandom(300000)
        c = self.connect(N.BASE4)
        c.send(build_request("POST", "/echo", [key_header("dev-fb")], body, host=SVC4), timeout=10)
        r = c.response(timeout=10)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, "fallback to the baseline failed for a 300 kB body: %r" % r)
        self.assertPod(r, "baseline")
        self.assertEqual(r.body, body)

    # ---- sniffing ------------------------------------------------------------------------

    def test_short_non_http_then_eof_is_tunnelled(self):
        # A short printable greeting without a newline, then EOF: at EOF the sniffer has all
        # it will ever get, so the bytes must go to the original destination (echo).
        self.route(N.hostport(N.BASE4, N.ECHO_PORT), "dev-a", N.hostport(N.SBX4, N.ECHO_PORT))
        c = self.connect(N.BASE4, N.ECHO_PORT)
        c.send(b"hello")
        c.shutdown_wr()
        r = c.wait_closed(timeout=4)
        self.assertEqual(r["data"], b"hello", "non-HTTP bytes before EOF not tunnelled: %r" % r["data"][:80])


class HttpEdgeTimeouts(HttpEdgesBase):
    node_opts = {"shuntd_args": ["--head-timeout", "2s", "--idle-timeout", "2s"]}

    def test_stalled_request_body_times_out(self):
        # A client that sends a head with Content-Length: 10 and then 3 bytes holds a proxy
        # connection and an upstream connection; nothing ever times it out.
        c = self.connect(N.BASE4)
        c.send(build_request("POST", "/echo", KEY_A + [("Content-Length", "10")], host=SVC4) + b"abc")
        r = c.wait_closed(timeout=8)
        self.assertTrue(r["closed"], "request with a stalled body still open after %.1fs" % r["after"])

    def test_silent_upstream_times_out(self):
        # An upstream that accepts the request and never answers: with a 2s idle timeout the
        # client still waits forever (and if it goes away, both sockets stay open).
        self.route(SVC4, "dev-r", SCRIPTED)
        self.scripted_upstream("blackhole")
        c = self.connect(N.BASE4)
        c.send(build_request("GET", "/never", KEY, host=SVC4))
        r = c.wait_closed(timeout=10)
        self.assertTrue(r["closed"], "request to a silent upstream still pending after %.1fs (got %r)"
                        % (r["after"], r["data"][:100]))


class AcceptBurst(HttpEdgesBase):
    def test_burst_of_more_than_64_pending_connections_all_served(self):
        # The listener is edge-triggered but listener_event() accepts at most 64 and returns:
        # whatever else is in the backlog waits for the next connect(), possibly forever.
        n = self.node
        conns = []
        os.kill(n.shuntd.pid, signal.SIGSTOP)
        try:
            for i in range(80):
                conns.append(self.connect(N.BASE4))
        finally:
            os.kill(n.shuntd.pid, signal.SIGCONT)
        for i, c in enumerate(conns):
            c.send(build_request("GET", "/burst/%d" % i, [], host=SVC4))
        unanswered = []
        for i, c in enumerate(conns):
            r, reply = c.try_response(timeout=1.5 if not unanswered else 0.3)
            if r is None:
                unanswered.append(i)
        self.assertEqual(unanswered, [], "%d of %d connections made during a busy spell never got an answer"
                         % (len(unanswered), len(conns)))
