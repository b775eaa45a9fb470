# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""HTTP/2 edges from a hostile review of the glue (h2.c, h2up.c): upstreams
that misbehave on purpose (h2srv.py, behaviour by :path), upstreams that
allow one stream at a time (nghttpd -m 1), and raw-frame clients (h2lib.py)
that do what libraries never do. Each finding of the review is a case here
that failed before its fix."""
import json
import os
import subprocess
import textwrap
import time

import node as N
from base import NodeTestCase
from test_h2 import make_docroot

E2E = os.path.dirname(os.path.abspath(__file__))
KEY = "dev-h2"
NGHTTPD = 8081     # nghttpd in base/sbx/sbx2
NGHTTPD_M1 = 8083  # nghttpd -m 1 in base/sbx
RAW = 8084         # h2srv.py in base/sbx/sbx2
NAMES = {"base": "baseline", "sbx": "sandbox", "sbx2": "sandbox2"}

CLIENT_PRELUDE = """
import json, socket, sys, time
sys.path.insert(0, %r)
import h2lib as H
def conn(ip, port, settings=()):
    s = socket.create_connection((ip, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = H.Conn(s)
    c.send(H.PREFACE + H.settings(*settings))
    return c
def req(sid, path, auth, key=None, end=True, method="GET", extra=()):
    f = [(":method", method), (":scheme", "http"), (":authority", auth), (":path", path)]
    if key:
        f.append(("baggage", "sd-routing-key=" + key))
    f += list(extra)
    return H.frame(H.HEADERS, H.EH | (H.ES if end else 0), sid, H.hpack(f))
def collect(c, want, timeout=5, out=None):
    out = out if out is not None else {}
    ended = set()
    try:
        while not set(want) <= ended:
            t, fl, sid, p = c.events(timeout)
            if t == H.SETTINGS and not fl & 1:
                c.send(H.settings(ack=True))
            st = out.setdefault(sid, {"hdrs": [], "body": "", "rst": None})
            if t == H.HEADERS:
                st["hdrs"].append(p)
            elif t == H.DATA:
                st["body"] += p.decode("latin1")
            elif t == H.RST:
                st["rst"] = int.from_bytes(p, "big"); ended.add(sid)
            elif t == H.GOAWAY:
                out["goaway"] = int.from_bytes(p[4:8], "big"); break
            if t in (H.HEADERS, H.DATA) and fl & H.ES:
                ended.add(sid)
    except (TimeoutError, EOFError) as e:
        out["error"] = str(e)
    return {str(k): v for k, v in out.items()}
""" % E2E


class H2Edges(NodeTestCase):
    node_opts = {"shuntd_args": ["--access-log"]}

    @classmethod
    def prepare_node(cls, node):
        started = []
        for pod, name in NAMES.items():
            docroot = make_docroot(node, "h2r-" + name, name)
            p = node.pod_spawn(pod, ["nghttpd", "--no-tls", "-d", docroot, str(NGHTTPD)], in_cgroup=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append((pod, NGHTTPD, p))
            p = node.pod_spawn(pod, ["nghttpd", "--no-tls", "-m", "1", "-d", docroot, str(NGHTTPD_M1)],
                               in_cgroup=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append((pod, NGHTTPD_M1, p))
            p = node.pod_spawn(pod, [N.PYTHON, "-B", os.path.join(E2E, "h2srv.py"), "--port", str(RAW), "--name", name,
                                     "--log", os.path.join(node.tmp, "h2srv-%s.log" % pod)], in_cgroup=False,
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(node.tmp, "h2srv-%s.err" % pod), "ab"))
            started.append((pod, RAW, p))
        for pod, port, p in started:
            node.wait_listen(pod, port, proc=p, timeout=30)

    def srvlog(self, pod):
        try:
            with open(os.path.join(self.node.tmp, "h2srv-%s.log" % pod)) as f:
                return [json.loads(ln) for ln in f]
        except FileNotFoundError:
            return []

    cpus = None  # where raw() clients run (None: anywhere)

    def raw(self, body, timeout=30):
        code = CLIENT_PRELUDE + textwrap.dedent(body)
        rc, out, err = self.node.client_cmd([N.PYTHON, "-B", "-c", code], timeout=timeout, cpus=self.cpus)
        self.assertEqual(rc, 0, err[-3000:])
        return json.loads(out.strip().splitlines()[-1])

    def svc(self, ip, port):
        return N.hostport(ip, port)

    def curl(self, url, *extra, max_time=10):
        rc, out, err = self.node.client_cmd(["curl", "-sS", "--max-time", str(max_time), "--http2-prior-knowledge",
                                             "-o", "-", "-w", "\n%{http_code}"] + list(extra) + [url],
                                            timeout=max_time + 10)
        body, _, code = out.rpartition("\n")
        return rc, code, body, err

    # ------------------------------------------------------------------------
    def test_mcs1_concurrent_streams_all_succeed(self):
        # An upstream that advertises SETTINGS_MAX_CONCURRENT_STREAMS=1
        # (nghttpd -m 1); one client connection, 10 concurrent keyed and
        # 10 unkeyed streams on a fresh pool.
        self.route(self.svc(N.BASE4, NGHTTPD_M1), KEY, self.svc(N.SBX4, NGHTTPD_M1))
        auth = self.svc(N.BASE4, NGHTTPD_M1)
        r = self.raw("""
            c = conn(%r, %d)
            out = b""
            for i in range(10):
                out += req(1 + 4 * i, "/who?i=%%d" %% i, %r, key=%r) + req(3 + 4 * i, "/who?j=%%d" %% i, %r)
            c.send(out)
            print(json.dumps(collect(c, range(1, 41, 2), timeout=10)))
        """ % (N.BASE4, NGHTTPD_M1, auth, KEY, auth))
        bad = {k: v for k, v in r.items() if k.isdigit() and k != "0" and v["body"] != ("sandbox\n" if int(k) % 4 == 1 else "baseline\n")}
        self.assertEqual(bad, {}, "streams that failed or hung (of 20)")
        self.assertEqual(len([k for k in r if k.isdigit() and k != "0"]), 20, r)

    def test_mcs1_long_stream_does_not_block_others(self):
        # Upstream MAX_CONCURRENT_STREAMS=1. Stream 1 is a long upload (no
        # END_STREAM yet); stream 3, sent right behind it, must not wait
        # for stream 1 to finish.
        self.route(self.svc(N.BASE4, NGHTTPD_M1), KEY, self.svc(N.SBX4, NGHTTPD_M1))
        auth = self.svc(N.BASE4, NGHTTPD_M1)
        r = self.raw("""
            c = conn(%r, %d)
            c.send(req(1, "/who", %r, end=False, method="POST") + req(3, "/who?x", %r))
            out = collect(c, (3,), timeout=4)
            print(json.dumps(out))
        """ % (N.BASE4, NGHTTPD_M1, auth, auth))
        self.assertEqual(r.get("3", {}).get("body"), "baseline\n", r)

    def rawreq(self, streams, want, timeout=5, settings=(), pre=""):
        """streams: list of python expressions producing bytes (using req());
        want: stream ids to wait for."""
        auth = self.svc(N.BASE4, RAW)
        return self.raw("""
            AUTH = %r
            c = conn(%r, %d, settings=%r)
            %s
            c.send(b"".join([%s]))
            print(json.dumps(collect(c, %r, timeout=%r)))
        """ % (auth, N.BASE4, RAW, tuple(settings), pre, ", ".join(streams), tuple(want), timeout))

    def test_upstream_behaviours(self):
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        r = self.rawreq(['req(1, "/interim", AUTH, key=%r)' % KEY,
                         'req(3, "/trailers", AUTH)',
                         'req(5, "/trlonly", AUTH)',
                         'req(7, "/rstmid", AUTH)',
                         'req(9, "/head", AUTH, method="HEAD")',
                         ], (1, 3, 5, 7, 9))
        got = {k: r[k] for k in ("1", "3", "5", "7", "9")}
        self.assertEqual([h[0] for h in got["1"]["hdrs"]][:1], [[":status", "103"], ][:1] and [got["1"]["hdrs"][0][0]])
        self.assertEqual(got["1"]["hdrs"][0][0], [":status", "103"])
        self.assertEqual(got["1"]["hdrs"][1][0], [":status", "200"])
        self.assertEqual(got["1"]["hdrs"][2], [["x-trl", "yes"]])
        self.assertEqual(got["1"]["body"], "sandbox\n")
        self.assertEqual(got["3"]["hdrs"][1], [["x-trl", "yes"]])
        self.assertEqual(got["5"]["hdrs"][1], [["x-trl", "only"]])
        self.assertEqual(got["7"]["rst"], 2)
        self.assertEqual(got["9"]["hdrs"][0][0], [":status", "200"])

    def test_upstream_closes_mid_response(self):
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        r = self.rawreq(['req(1, "/closemid", AUTH)', 'req(3, "/hold", AUTH)'], (1, 3))
        self.assertEqual((r["1"]["body"], r["1"]["rst"] is not None), ("part", True), r)
        self.assertIn(r["3"]["hdrs"][0][0], ([":status", "502"], [":status", "503"]), r)
        # and the next one works on a new session
        r = self.rawreq(['req(1, "/who", AUTH)'], (1,))
        self.assertEqual(r["1"]["body"], "baseline\n", r)

    def test_request_trailers(self):
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        r = self.rawreq(['req(1, "/echo", AUTH, method="POST", end=False)',
                         'H.frame(H.DATA, 0, 1, b"hello")',
                         'H.frame(H.HEADERS, H.EH | H.ES, 1, H.hpack([("x-req-trl", "1")]))',
                         'req(3, "/echo", AUTH, method="POST", end=False)',
                         'H.frame(H.HEADERS, H.EH | H.ES, 3, H.hpack([("x-req-trl", "3")]))',
                         'req(5, "/echo", AUTH, method="POST", end=False)',
                         'H.frame(H.DATA, 0, 5, b"abc")',
                         'H.frame(H.DATA, H.ES, 5, b"")',
                         ], (1, 3, 5))
        self.assertEqual(r["1"]["body"], '5 [["x-req-trl", "1"]]\n', r)
        self.assertEqual(r["3"]["body"], '0 [["x-req-trl", "3"]]\n', r)
        self.assertEqual(r["5"]["body"], '3 -\n', r)

    def test_early_response_then_rst_no_error(self):
        # RFC 9113 8.1: the upstream answers before the request is complete,
        # then RST_STREAM(NO_ERROR) "stop sending". Directly, the client
        # gets that reset and stops uploading; through shunt it never
        # comes: the client's stream stays open and its upload goes on
        # into a stream nobody reads (shunt drops the DATA).
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        r = self.raw("""
            c = conn(%r, %d)
            c.send(req(1, "/early", %r, method="POST", end=False) + H.frame(H.DATA, 0, 1, b"x" * 1000))
            res = collect(c, (1,), timeout=3)
            rst = None
            try:
                while rst is None:
                    t, fl, sid, p = c.events(timeout=1.5)
                    if t == H.RST and sid == 1:
                        rst = int.from_bytes(p, "big")
            except TimeoutError:
                pass
            print(json.dumps({"body": res["1"]["body"], "rst": rst}))
        """ % (N.BASE4, RAW, self.svc(N.BASE4, RAW)))
        self.assertEqual(r, {"body": "early\n", "rst": 0})

    def test_client_gone_cancels_held_upstream_stream(self):
        # A client with a stream the upstream has not answered yet (a
        # long-poll / gRPC watch) goes away: close() sends FIN. The
        # upstream stream must be reset (CANCEL), not held until the
        # upstream happens to write (or --tunnel-timeout, 1 h).
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        before = len(self.srvlog("base"))
        self.raw("""
            c = conn(%r, %d)
            c.send(req(1, "/hold", %r))
            collect(c, (1,), timeout=0.5)   # read what shunt sent: close() then sends FIN, not RST
            c.s.close()
            print("{}")
        """ % (N.BASE4, RAW, self.svc(N.BASE4, RAW)))
        time.sleep(2)
        evs = self.srvlog("base")[before:]
        self.assertEqual([e["path"] for e in evs if e["ev"] == "req"], ["/hold"])
        self.assertEqual([e.get("code") for e in evs if e["ev"] == "rst"], [8],
                         "the upstream stream was not reset after the client left: %s" % evs)

    def test_transient_reset_does_not_mark_h2_off_for_a_minute(self):
        # A server that is restarting resets one connection right after the
        # accept (SO_LINGER 0); the next stream, 0.5 s later, should be tried
        # again, not answered 502 "does not speak HTTP/2" for 60 s.
        port = 8085
        p = self.node.pod_spawn("sbx2", [N.PYTHON, "-B", os.path.join(E2E, "h2srv.py"), "--port", str(port),
                                         "--name", "flaky", "--reset-first", "1"], in_cgroup=False)
        self.node.wait_listen("sbx2", port, proc=p)
        self.route(self.svc(N.BASE4, NGHTTPD), KEY, self.svc(N.SBX2_4, port), fallback="baseline")
        url = "http://%s/who" % self.svc(N.BASE4, NGHTTPD)
        first = self.curl(url, "-H", "baggage: sd-routing-key=" + KEY)
        time.sleep(0.5)
        second = self.curl(url, "-H", "baggage: sd-routing-key=" + KEY)
        print("first:", first[:3], "second:", second[:3])
        self.assertEqual(second[:3], (0, "200", "flaky\n"), second)

    def test_client_window_zero_then_raised(self):
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        r = self.raw("""
            c = conn(%r, %d, settings=[(4, 0)])
            c.send(req(1, "/who", %r) + req(3, "/who", %r, key=%r))
            a = collect(c, (1, 3), timeout=1.5)
            c.send(H.winup(3, 100))
            b = collect(c, (3,), timeout=2)
            c.send(H.settings((4, 65535)))
            d = collect(c, (1,), timeout=2)
            print(json.dumps([a, b, d]))
        """ % (N.BASE4, RAW, self.svc(N.BASE4, RAW), self.svc(N.BASE4, RAW), KEY))
        a, b, d = r
        self.assertEqual((a.get("1", {}).get("body"), a.get("3", {}).get("body")), ("", ""), a)
        self.assertEqual(b.get("3", {}).get("body"), "sandbox\n", b)
        self.assertEqual(d.get("1", {}).get("body"), "baseline\n", d)

    def test_slow_reader_does_not_stall_other_connection(self):
        self.route(self.svc(N.BASE4, NGHTTPD), KEY, self.svc(N.SBX4, NGHTTPD))
        auth = self.svc(N.BASE4, NGHTTPD)
        r = self.raw("""
            slow = conn(%r, %d, settings=[(4, 0)])
            slow.send(req(1, "/big", %r) + req(3, "/big", %r, key=%r))
            collect(slow, (), timeout=0.5)
            fast = conn(%r, %d, settings=[(4, (1 << 31) - 1)])
            fast.send(H.winup(0, (1 << 31) - 1 - 65535))
            t0 = time.monotonic()
            n = {1: 0, 3: 0}
            fast.send(req(1, "/big", %r) + req(3, "/big", %r, key=%r))
            done = set()
            while done != {1, 3} and time.monotonic() - t0 < 8:
                try:
                    t, fl, sid, p = fast.events(timeout=8)
                except Exception as e:
                    break
                if t == H.DATA:
                    n[sid] += len(p)
                if t in (H.DATA, H.HEADERS) and fl & H.ES:
                    done.add(sid)
                if t == H.SETTINGS and not fl & 1:
                    fast.send(H.settings(ack=True))
            print(json.dumps({"n": n, "t": time.monotonic() - t0}))
        """ % (N.BASE4, NGHTTPD, auth, auth, KEY, N.BASE4, NGHTTPD, auth, auth, KEY), timeout=40)
        self.assertEqual(r["n"], {"1": 4 << 20, "3": 4 << 20}, r)

    def test_mcs1_h2load(self):
        # An upstream with SETTINGS_MAX_CONCURRENT_STREAMS=1 (nghttpd -m 1),
        # a fresh pool, h2load with 20 connections x 10 streams: every
        # request must succeed. Four fresh upstreams, one round each (the
        # failure needs a fresh pool, it shows in most rounds).
        docroot = os.path.join(self.node.tmp, "h2r-sandbox2")
        ports = (8091, 8092, 8093, 8094)
        for port in ports:
            p = self.node.pod_spawn("sbx2", ["nghttpd", "--no-tls", "-m", "1", "-d", docroot, str(port)],
                                    in_cgroup=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.node.wait_listen("sbx2", port, proc=p)
        off = N._size(self.node.shuntd_log)
        fails = []
        for port in ports:
            url = "http://%s/who" % self.svc(N.SBX2_4, port)
            self.route(self.svc(N.SBX2_4, port), KEY, self.svc(N.SBX4, NGHTTPD_M1))  # only to capture it
            rc, out, err = self.node.client_cmd(["h2load", "-n", "2000", "-c", "20", "-m", "10", url], timeout=60)
            fails += [ln for ln in out.splitlines() if "requests:" in ln and " 0 failed" not in ln]
        log = N._read_from(self.node.shuntd_log, off)
        bad = [ln for ln in log.splitlines() if "status=5" in ln]
        self.assertEqual(fails, [], "%d 5xx in the access log, e.g. %s" % (len(bad), bad[:1]))

    def test_mcs1_burst_raw(self):
        # 5 client connections, 20 streams each, all at once, to an upstream
        # with SETTINGS_MAX_CONCURRENT_STREAMS=1 and a fresh pool.
        self.route(self.svc(N.BASE4, NGHTTPD_M1), KEY, self.svc(N.SBX4, NGHTTPD_M1))
        auth = self.svc(N.BASE4, NGHTTPD_M1)
        r = self.raw("""
            cs = [conn(%r, %d) for i in range(5)]
            for c in cs:
                c.send(b"".join(req(1 + 2 * i, "/who?i=%%d" %% i, %r, key=%r) for i in range(20)))
            res = [collect(c, range(1, 41, 2), timeout=10) for c in cs]
            bad = [v["hdrs"][0][0][1] + " " + v["body"] for r in res for k, v in r.items()
                   if k != "0" and k.isdigit() and v["body"] != "sandbox\\n"]
            print(json.dumps({"bad": bad, "n": sum(len(r) - 1 for r in res)}))
        """ % (N.BASE4, NGHTTPD_M1, auth, KEY))
        self.assertEqual(r["bad"], [], r)
        self.assertEqual(r["n"], 100)

    def test_made_you_reset_is_stopped(self):
        # "MadeYouReset" (CVE-2025-8671): like rapid reset, but the client
        # makes shunt's own nghttp2 reset each stream (a WINDOW_UPDATE that
        # overflows the stream's window: FLOW_CONTROL_ERROR, a stream error)
        # instead of sending RST_STREAM itself. Every stream is routed and
        # then cancelled upstream; the reset budget must count these too.
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        before = self.node.status()["proxy"]
        seen0 = len(self.srvlog("sbx"))
        r = self.raw("""
            c = conn(%r, %d)
            c.send(H.settings(ack=True))
            sid, sent, rsts, goaway = 1, 0, 0, None
            try:
                for batch in range(60):
                    out, bad = b"", b""
                    for i in range(50):
                        out += req(sid, "/hold", %r, key=%r, end=False)
                        bad += H.winup(sid, 0x7FFFFFFF)
                        sid += 2
                    c.send(out)
                    time.sleep(0.01)
                    c.send(bad)
                    sent += 50
                    got = 0
                    while got < 50:
                        t, fl, s, p = c.events(timeout=3)
                        if t == H.RST:
                            got += 1
                        if t == H.GOAWAY:
                            goaway = int.from_bytes(p[4:8], "big")
                            raise EOFError
                    rsts += got
            except (EOFError, OSError, TimeoutError) as e:
                pass
            print(json.dumps({"sent": sent, "rsts": rsts, "goaway": goaway}))
        """ % (N.BASE4, RAW, self.svc(N.BASE4, RAW), KEY), timeout=60)
        after = self.node.status()["proxy"]
        routed = after["requests"] - before["requests"]
        time.sleep(1)
        seen = [e for e in self.srvlog("sbx")[seen0:] if e["ev"] == "req"]
        print("made-you-reset:", r, "routed", routed, "seen by the sandbox", len(seen),
              "calmed", after["h2_calmed"] - before["h2_calmed"])
        self.assertLessEqual(routed, 1300)

    def test_client_reset_close_cancels_and_session_is_reused(self):
        # Each proxy worker has its own upstream sessions: these clients
        # run on one CPU, so they reach one worker.
        self.cpus = {min(os.sched_getaffinity(0))}
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        auth = self.svc(N.BASE4, RAW)
        self.rawreq(['req(1, "/who", AUTH)'], (1,))  # a session to the baseline
        before = len(self.srvlog("base"))
        self.raw("""
            c = conn(%r, %d)
            c.send(req(1, "/hold", %r) + req(3, "/hold", %r) + req(5, "/hold", %r, end=False, method="POST"))
            time.sleep(0.5)
            import struct
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.s.close()
            print("{}")
        """ % (N.BASE4, RAW, auth, auth, auth))
        time.sleep(0.5)
        r = self.rawreq(['req(1, "/who", AUTH)', 'req(3, "/trailers", AUTH)'], (1, 3))
        self.assertEqual((r["1"]["body"], r["3"]["body"]), ("baseline\n", "baseline\n"), r)
        evs = self.srvlog("base")[before:]
        self.assertEqual(sorted(e["code"] for e in evs if e["ev"] == "rst"), [8, 8, 8], evs)
        self.assertEqual([e for e in evs if e["ev"] == "accept"], [], "the session was not reused")

    def test_upstream_goaway_then_new_session(self):
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        before = len(self.srvlog("base"))
        r = self.rawreq(['req(1, "/goaway", AUTH)'], (1,))
        self.assertEqual(r["1"]["body"], "baseline\n", r)
        time.sleep(0.2)
        r = self.rawreq(['req(1, "/who", AUTH)', 'req(3, "/who", AUTH)'], (1, 3))
        self.assertEqual((r["1"]["body"], r["3"]["body"]), ("baseline\n", "baseline\n"), r)
        evs = self.srvlog("base")[before:]
        print(evs)

    def test_continuation_and_priority(self):
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        r = self.rawreq([
            # PRIORITY for idle streams, self-unrelated deps, then a split header block
            'H.frame(H.PRIORITY, 0, 11, (3).to_bytes(4, "big") + b"\\x10")',
            'H.frame(H.PRIORITY, 0, 3, (0x80000000 | 1).to_bytes(4, "big") + b"\\xff")',
            'H.frame(H.HEADERS, H.ES, 1, H.hpack([(":method", "GET"), (":scheme", "http")]))',
            'H.frame(H.CONT, 0, 1, H.hpack([(":authority", AUTH), (":path", "/who")]))',
            'H.frame(H.CONT, H.EH, 1, H.hpack([("baggage", "sd-routing-key=%s")]))' % KEY,
            'H.frame(H.HEADERS, H.EH | H.ES | H.PRIO, 3, (1).to_bytes(4, "big") + b"\\x05" + '
            'H.hpack([(":method", "GET"), (":scheme", "http"), (":authority", AUTH), (":path", "/who")]))',
        ], (1, 3))
        self.assertEqual((r["1"]["body"], r["3"]["body"]), ("sandbox\n", "baseline\n"), r)

    def test_continuation_flood(self):
        self.route(self.svc(N.BASE4, RAW), KEY, self.svc(N.SBX4, RAW))
        r = self.raw("""
            c = conn(%r, %d)
            blk = H.hpack([(":method", "GET"), (":scheme", "http"), (":authority", %r), (":path", "/who")])
            out = H.frame(H.HEADERS, H.ES, 1, blk)
            c.send(out)
            t0 = time.monotonic()
            n = 0
            try:
                for i in range(2000):
                    c.send(b"".join(H.frame(H.CONT, 0, 1, H.hpack([("x-h%%d" %% (i * 50 + j), "v" * 100)])) for j in range(50)))
                    n += 50
            except OSError as e:
                pass
            try:
                res = collect(c, (1,), timeout=2)
            except Exception as e:
                res = repr(e)
            print(json.dumps({"n": n, "t": time.monotonic() - t0, "res": res}))
        """ % (N.BASE4, RAW, self.svc(N.BASE4, RAW)))
        print(r)
        self.assertLess(r["n"], 10000)

    def test_head_prior_knowledge_and_upgrade(self):
        self.route(self.svc(N.BASE4, NGHTTPD), KEY, self.svc(N.SBX4, NGHTTPD))
        url = "http://%s/who" % self.svc(N.BASE4, NGHTTPD)
        for mode in ("--http2-prior-knowledge", "--http2"):
            for extra in ([], ["-H", "baggage: sd-routing-key=" + KEY]):
                rc, out, err = self.node.client_cmd(["curl", "-sS", "--max-time", "5", mode, "-I", "-w",
                                                     "%{http_code} %{http_version}"] + extra + [url])
                self.assertEqual(rc, 0, err)
                self.assertTrue(out.endswith("200 2"), out)
        # our own answer to HEAD
        self.route(self.svc(N.BASE4, NGHTTPD), "dead", self.svc(N.SBX4, N.DEAD_PORT))
        rc, out, err = self.node.client_cmd(["curl", "-sS", "--max-time", "5", "--http2-prior-knowledge", "-I", "-w",
                                             "%{http_code} %{http_version}", "-H", "baggage: sd-routing-key=dead", url])
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.endswith("502 2"), out)
