# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Observability: the metrics endpoint (--metrics-addr), the access log
(--access-log) and json logs (--log-format json).

The endpoint listens on the node's bridge address in the node netns, where
shuntd runs; the tests scrape it from there with a small Python client
(nsenter), never through the capture cgroup."""

import base64
import json
import re
import signal
import subprocess
import time

import node as N
from base import DEAD4, SVC4, SVC6, TO4, TO6, NodeTestCase
from httpmsg import build_request, key_header

# One HTTP exchange with the endpoint: send the request bytes, read to EOF.
SCRAPER = r"""
import base64, json, socket, sys
host, port, timeout, req = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), base64.b64decode(sys.argv[4])
s = socket.create_connection((host, port), timeout=timeout)
s.sendall(req)
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print(json.dumps({"data": base64.b64encode(data).decode()}))
"""

# n connections that send half a request line and stall, then one more that
# only reads; reports what the extra one got, then when each stalled one was
# closed by the server (seconds after they were opened).
STALLER = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = []
t0 = time.monotonic()
for i in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET /metr")
    conns.append(s)
time.sleep(0.3)
extra = socket.create_connection((host, port), timeout=5)
data = b""
while True:
    b = extra.recv(4096)
    if not b:
        break
    data += b
print(json.dumps({"opened": n, "extra": data.decode("latin-1")}), flush=True)
closed = []
for s in conns:
    s.settimeout(max(0.1, 15 - (time.monotonic() - t0)))
    try:
        b = s.recv(100)
        closed.append([time.monotonic() - t0, len(b)])
    except socket.timeout:
        closed.append([None, 0])
    except OSError as e:
        closed.append([time.monotonic() - t0, repr(e)])
print(json.dumps({"closed": closed}), flush=True)
"""

# Holds n idle connections per source address to host:port (sends
# nothing), like a pod keeping scrape connections open; a connection the
# server answers or closes is opened again 0.2 s later. Prints one JSON
# line 0.5 s after the first round ({"held": connections the server kept
# open, "refused": answered or closed at once}), then runs until killed.
HOLDER = r"""
import json, selectors, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
srcs = sys.argv[4:] or [None]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
sel = selectors.DefaultSelector()
again = []  # (when, source) of connections to open again

def open_one(src):
    s = socket.socket(fam, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(5)
    try:
        s.connect((host, port))
    except OSError:
        s.close()
        again.append((time.monotonic() + 0.2, src))
        return
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, src)

def poll(timeout):
    gone = 0
    for key, _ in sel.select(timeout):
        try:
            key.fileobj.recv(4096)
        except OSError:
            pass
        sel.unregister(key.fileobj)
        key.fileobj.close()
        again.append((time.monotonic() + 0.2, key.data))
        gone += 1
    return gone

for src in srcs:
    for _ in range(n):
        open_one(src)
t0, refused = time.monotonic(), 0
while time.monotonic() - t0 < 0.5:
    refused += poll(0.05)
print(json.dumps({"held": len(sel.get_map()), "refused": refused}), flush=True)
while True:
    poll(0.05)
    now = time.monotonic()
    due = [a for a in again if a[0] <= now]
    again[:] = [a for a in again if a[0] > now]
    for _, src in due:
        open_one(src)
"""

# Asks for /metrics with the smallest receive buffer and reads nothing for
# a while (a slow-loris reader); then reports what it could still read.
SLOW_READER = r"""
import json, socket, sys, time
host, port, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
s.connect((host, port))
s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
print(json.dumps({"port": s.getsockname()[1]}), flush=True)
time.sleep(wait)
got, err = 0, None
s.settimeout(2)
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
except OSError as e:
    err = repr(e)
print(json.dumps({"got": got, "error": err}), flush=True)
"""

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


class Exposition:
    """Parsed text format: samples by (name, sorted labels), types by family."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        helps = set()
        for line in text.splitlines():
            if line.startswith("# HELP "):
                helps.add(line.split(" ")[2])
                continue
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(" ", 3)
                assert name not in self.types, "TYPE %s twice" % name
                assert name in helps, "TYPE %s without HELP" % name
                self.types[name] = typ
                continue
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            name, labels, value = m.groups()
            lab = {}
            rest = labels or ""
            while rest:
                lm = LABEL.match(rest)
                assert lm, "bad labels in %r" % line
                lab[lm.group(1)] = lm.group(2)
                rest = rest[lm.end():]
            key = (name, tuple(sorted(lab.items())))
            assert key not in self.samples, "sample twice: %r" % line
            self.samples[key] = float(value)

    def get(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def has(self, name, **labels):
        return (name, tuple(sorted(labels.items()))) in self.samples

    def series(self, name, **match):
        """{labels-dict-as-tuple: value} of every sample of name matching match."""
        out = {}
        for (n, lab), v in self.samples.items():
            d = dict(lab)
            if n == name and all(d.get(k) == v2 for k, v2 in match.items()):
                out[lab] = v
        return out


def delta(after, before, name, **match):
    """{labels: increase} over the series of name, zero increases left out."""
    a, b = after.series(name, **match), before.series(name, **match)
    out = {}
    for lab in set(a) | set(b):
        d = a.get(lab, 0.0) - b.get(lab, 0.0)
        if d:
            out[lab] = d
    return out


def requests_delta(after, before, service):
    return {(dict(lab)["destination"], dict(lab)["outcome"]): int(v)
            for lab, v in delta(after, before, "shunt_requests_total", service=service).items()}


def free_port(node, host):
    fam = "AF_INET6" if ":" in host else "AF_INET"
    p = N.run(node.nsenter("node") + [N.PYTHON, "-c", "import socket; s = socket.socket(socket.%s); "
                                      "s.bind(('%s', 0)); print(s.getsockname()[1])" % (fam, host)])
    return int(p.stdout)


class HttpReply:
    def __init__(self, raw):
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        self.headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            self.headers[k.strip().lower()] = v.strip()


class MetricsBase(NodeTestCase):
    extra_args = []
    host = N.NODE4  # where --metrics-addr listens

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.node is not None:
            cls.port = free_port(cls.node, cls.host)
            cls.node.shuntd_args += ["--metrics-addr", N.hostport(cls.host, cls.port)] + cls.extra_args

    def exchange(self, raw, timeout=5, host=None, port=None):
        """raw to --metrics-addr (or host:port), from the node."""
        host, port = host or self.host, port or self.port
        p = N.run(self.node.nsenter("node") + [N.PYTHON, "-B", "-c", SCRAPER, host, str(port),
                                               str(timeout), base64.b64encode(raw).decode()],
                  timeout=timeout + 10)
        return HttpReply(base64.b64decode(json.loads(p.stdout)["data"]))

    def http(self, method, path, host=None, port=None):
        host, port = host or self.host, port or self.port
        return self.exchange(("%s %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                              % (method, path, N.hostport(host, port))).encode(), host=host, port=port)

    def scrape(self):
        r = self.http("GET", "/metrics")
        self.assertEqual(r.status, 200, r.raw[:300])
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
                        r.headers)
        self.assertEqual(int(r.headers["content-length"]), len(r.body))
        return Exposition(r.body.decode())

    def wait_for(self, what, pred, timeout=10, show=None):
        deadline = time.monotonic() + timeout
        while True:
            m = self.scrape()
            if pred(m):
                return m
            if time.monotonic() > deadline:
                self.fail("%s: not seen within %ss%s" % (what, timeout, "; last: %r" % (show(m),) if show else ""))
            time.sleep(0.2)

    def bad(self, data, status):
        c = self.connect(N.BASE4)
        c.try_send(data)
        r, reply = c.try_response(timeout=5)
        self.assertIsNotNone(r, "no %d for %r: %s" % (status, data[:60], reply.get("error")))
        self.assertEqual(r.status, status, data[:80])
        self.assertEqual(r.header("X-Shunt-Error"), str(status))
        c.close()


H = [("baggage", "sd-routing-key=dev-a")]
# /readyz of an agent with a proxy address of each family
READY_BOTH = ("ok\nipv4 %s\nipv6 %s\n" % (N.hostport(N.NODE4, N.PROXY_PORT),
                                          N.hostport(N.NODE6, N.PROXY_PORT))).encode()


class Metrics(MetricsBase):
    extra_args = ["--idle-timeout", "3s"]

    def test_requests_by_service_destination_and_outcome(self):
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC4, "dev-dead", DEAD4)
        m0 = self.scrape()
        t0 = time.monotonic()
        c = self.connect(N.BASE4)
        self.assertEqual(c.request("GET", "/", H).pod, "sandbox")
        self.assertEqual(c.request("GET", "/status/404", H).status, 404)
        self.assertEqual(c.request("GET", "/", []).pod, "baseline")
        self.assertEqual(c.request("GET", "/status/503", []).status, 503)
        self.assertEqual(c.request("GET", "/status/302", []).status, 302)
        self.assertEqual(c.request("GET", "/", [key_header("dev-zz")]).pod, "baseline")
        self.assertEqual(c.request("GET", "/", [("baggage", "sd-routing-key=%ZZ")]).pod, "baseline",
                         "an unusable key goes to the baseline")
        r = self.connect(N.BASE4).request("GET", "/", [key_header("dev-dead")])
        self.assertEqual(r.status, 502)
        # upstream dies half-way through the body
        t = self.connect(N.BASE4)
        t.send(build_request("GET", "/truncate", [], host=SVC4))
        self.assertTrue(t.wait_closed(timeout=4)["closed"])
        # an upgrade: the 101 ends the request, the tunnel is not one
        w = self.connect(N.BASE4)
        r = w.request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                     ("Sec-WebSocket-Version", "13")])
        self.assertEqual(r.status, 101)
        w.send(b"\x81\x05hello")
        self.assertEqual(w.recv(n=7, timeout=3)[0], b"\x81\x05hello")
        w.close()
        hd = b"Host: %s\r\n" % SVC4.encode()
        refused = [
            ("bad_request_line", b"G@T / HTTP/1.1\r\n" + hd + b"\r\n", 400),
            ("bad_header", b"GET / HTTP/1.1\r\n" + hd + b"X-Bad : 1\r\n\r\n", 400),
            ("too_many_headers", b"GET / HTTP/1.1\r\n" + hd + b"".join(b"X-H-%d: v\r\n" % i for i in range(150))
             + b"\r\n", 431),
            ("header_too_large", b"GET / HTTP/1.1\r\n" + hd + b"X-Fill: " + b"a" * 70000 + b"\r\n\r\n", 431),
            ("bad_content_length", b"POST / HTTP/1.1\r\n" + hd + b"Content-Length: 6\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
            ("bad_transfer_encoding", b"POST / HTTP/1.1\r\n" + hd + b"Transfer-Encoding: gzip\r\n\r\n", 400),
            ("bad_chunk", b"POST / HTTP/1.1\r\n" + hd + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
             400),
        ]
        for _, data, status in refused:
            self.bad(data, status)
        elapsed = time.monotonic() - t0
        m1 = self.scrape()

        got = requests_delta(m1, m0, SVC4)
        want = {("sandbox", "2xx"): 1, ("sandbox", "4xx"): 1, ("baseline", "2xx"): 3, ("baseline", "5xx"): 1,
                ("baseline", "3xx"): 1, ("baseline", "upstream_error"): 1, ("baseline", "1xx"): 1,
                ("error", "5xx"): 1, ("error", "4xx"): len(refused)}
        self.assertEqual(got, want, "shunt_requests_total{service=%s} increases" % SVC4)
        self.assertEqual(delta(m1, m0, "shunt_requests_total", service="other"), {})

        reasons = {dict(lab)["reason"]: int(v) for lab, v in delta(m1, m0, "shunt_parse_errors_total").items()}
        want_reasons = {why: 1 for why, _, _ in refused}
        want_reasons["bad_routing_key"] = 1
        self.assertEqual(reasons, want_reasons, "shunt_parse_errors_total increases")
        self.assertEqual(self.node.status()["proxy"]["bad_keys"], m1.get("shunt_parse_errors_total",
                                                                         reason="bad_routing_key"))

        # The histogram counts the same requests, per destination, and is whole.
        h = "shunt_request_duration_seconds"
        self.assertEqual(m1.types[h], "histogram")
        for dest in ("baseline", "sandbox", "error"):
            n = sum(v for (d, _), v in want.items() if d == dest)
            dc = m1.get(h + "_count", destination=dest) - m0.get(h + "_count", destination=dest)
            ds = m1.get(h + "_sum", destination=dest) - m0.get(h + "_sum", destination=dest)
            self.assertEqual(dc, n, "%s_count{destination=%s}" % (h, dest))
            self.assertGreater(ds, 0, "%s_sum{destination=%s} did not grow" % (h, dest))
            self.assertLessEqual(ds, elapsed + 0.5, "%s_sum{destination=%s} grew by more than the test took"
                                 % (h, dest))
            les = [(float(dict(lab)["le"]), v) for lab, v in m1.series(h + "_bucket", destination=dest).items()]
            les.sort()
            self.assertEqual(les[0][0], 0.00005)
            self.assertEqual(les[-1], (float("inf"), m1.get(h + "_count", destination=dest)))
            for (a, va), (b, vb) in zip(les, les[1:]):
                self.assertLessEqual(va, vb, "buckets not cumulative at le=%s" % b)
        self.assertEqual(m1.get("shunt_tunnels_total") - m0.get("shunt_tunnels_total"), 1, "the upgrade")

    def test_latency_lands_in_its_bucket(self):
        self.route(SVC4, "dev-a", TO4)
        c = self.connect(N.BASE4)
        c.request("GET", "/", H)  # the upstream connection exists: only the wait is measured
        m0 = self.scrape()
        t0 = time.monotonic()
        self.assertEqual(c.request("GET", "/slow?ms=300", H).pod, "sandbox")
        took = time.monotonic() - t0
        m1 = self.scrape()
        h = "shunt_request_duration_seconds"
        d = lambda name, **kw: m1.get(name, **kw) - m0.get(name, **kw)
        self.assertEqual(d(h + "_count", destination="sandbox"), 1)
        s = d(h + "_sum", destination="sandbox")
        # The proxy reads its clock after its last write: on a busy machine
        # that can be a little after the client already had the response.
        self.assertTrue(0.3 <= s <= took + 0.5, "duration %.6f s for a 300 ms answer seen in %.3f s" % (s, took))
        self.assertEqual(d(h + "_bucket", destination="sandbox", le="0.25"), 0)
        self.assertEqual(d(h + "_bucket", destination="sandbox", le="+Inf"), 1)

    def test_timeout_and_client_abort_outcomes(self):
        self.route(SVC4, "dev-a", TO4)  # steered: captured, through the proxy
        m0 = self.scrape()
        # An upstream that stops half-way through its response: no byte
        # moves for --idle-timeout (3s), the connection is closed.
        slow = self.connect(N.BASE4)
        slow.send(build_request("GET", "/stall?ms=8000", [], host=SVC4))
        # A client that goes away in the middle of its request body.
        gone = self.connect(N.BASE4)
        gone.send(build_request("POST", "/echo", [("Content-Length", "100")], body=b"", host=SVC4) + b"x" * 10)
        time.sleep(0.3)
        gone.close()
        m1 = self.wait_for("a timeout and a client abort",
                           lambda m: requests_delta(m, m0, SVC4).get(("baseline", "timeout")) == 1 and
                           requests_delta(m, m0, SVC4).get(("baseline", "client_abort")) == 1, timeout=15,
                           show=lambda m: requests_delta(m, m0, SVC4))
        self.assertEqual(requests_delta(m1, m0, SVC4), {("baseline", "timeout"): 1, ("baseline", "client_abort"): 1})
        self.assertGreaterEqual(m1.get("shunt_proxy_timeouts_total") - m0.get("shunt_proxy_timeouts_total"), 1)

    def test_gauges_maps_and_kernel_counters(self):
        # Connections of earlier tests may still be closing.
        m0 = self.wait_for("no captured connection open", lambda m: m.get("shunt_connections_open") == 0)
        self.assertEqual(m0.get("shunt_routes"), 0)
        for name in ("shunt_services", "shunt_routes", "shunt_orig", "shunt_conns", "shunt_listeners",
                     "shunt_config", "shunt_stats"):
            self.assertTrue(m0.has("shunt_bpf_map_max_entries", map=name), name)
            self.assertTrue(m0.has("shunt_bpf_map_entries", map=name), name)
        self.assertEqual(m0.get("shunt_bpf_map_entries", map="shunt_listeners"), 2, "one v4, one v6 listener")
        self.assertEqual(m0.get("shunt_bpf_map_entries", map="shunt_routes"), 0)
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC4, "dev-b", TO4)
        self.route(SVC6, "dev-a", TO6)
        m1 = self.scrape()
        self.assertEqual(m1.get("shunt_routes"), 3)
        self.assertEqual(m1.get("shunt_bpf_map_entries", map="shunt_routes"), 3)
        self.assertEqual(m1.get("shunt_bpf_map_entries", map="shunt_services"), 2)
        st = self.node.status()
        for mp in st["maps"]:
            self.assertEqual(m1.get("shunt_bpf_map_max_entries", map=mp["name"]), mp["max_entries"], mp["name"])

        conns = [self.connect(ip) for ip in (N.BASE4, N.BASE6, N.BASE4)]
        for c in conns:
            self.assertEqual(c.request("GET", "/", H).pod, "sandbox")
        m2 = self.scrape()
        d = lambda name: m2.get(name) - m1.get(name)
        self.assertEqual(d("shunt_kernel_captured_total"), 3)
        self.assertEqual(d("shunt_kernel_established_total"), 3)
        self.assertEqual(d("shunt_connections_accepted_total"), 3)
        self.assertEqual(d("shunt_connections_open"), 3)
        self.assertEqual(m2.types["shunt_kernel_captured_total"], "counter")
        self.assertEqual(m2.types["shunt_connections_open"], "gauge")
        for c in conns:
            c.close()
        self.wait_for("connections closed", lambda m: m.get("shunt_connections_open") == m1.get("shunt_connections_open"))

        # Quiet now: the kernel counters read the same through both interfaces.
        st = self.node.status()
        m3 = self.scrape()
        for k, v in st["kernel"].items():
            self.assertEqual(m3.get("shunt_kernel_%s_total" % k), v, k)
        self.assertEqual(m3.get("shunt_upstream_connects_total"), st["proxy"]["upstream_connects"])
        self.assertEqual(m3.get("shunt_upstream_reuses_total"), st["proxy"]["upstream_reused"])
        self.node.route_del(SVC4, "dev-b")
        m4 = self.scrape()
        self.assertEqual(m4.get("shunt_routes"), 2)
        self.assertEqual(m4.get("shunt_bpf_map_entries", map="shunt_routes"), 2)
        bi = m4.series("shunt_build_info")
        self.assertEqual(list(bi.values()), [1.0], bi)
        self.assertTrue(dict(next(iter(bi)))["version"], bi)
        self.assertLessEqual(abs(m4.get("shunt_start_time_seconds") - time.time()), 3600)

    def test_health_ready_and_bad_requests(self):
        for path in ("/healthz", "/readyz"):
            r = self.http("GET", path)
            self.assertEqual((r.status, r.body.split(b"\n")[0]), (200, b"ok"), path)
            self.assertEqual(r.headers.get("connection"), "close")
        self.assertEqual(self.http("GET", "/healthz").body, b"ok\n")
        self.assertEqual(self.http("GET", "/readyz").body, READY_BOTH)
        r = self.http("HEAD", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"", "HEAD answered with a body")
        self.assertGreater(int(r.headers["content-length"]), 1000)
        self.assertEqual(self.http("GET", "/metrics?x=1").status, 200, "a query string is ignored")
        self.assertEqual(self.http("GET", "/").status, 404)
        self.assertEqual(self.http("GET", "/metrics/x").status, 404)
        r = self.http("POST", "/metrics")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers.get("allow"), "GET, HEAD")
        for raw in (b"\x16\x03\x01\x00\x05hello\r\n\r\n", b"GET /metrics\r\n\r\n", b"GET /metrics HTTP/2.0\r\n\r\n",
                    b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n"):
            r = self.exchange(raw)
            self.assertEqual(r.status, 400, raw[:40])
        # and the proxy did not notice
        self.assertEqual(self.get(N.BASE4, "/").pod, "baseline")

    def test_stalled_scrapers_are_closed_and_limited(self):
        # METRICS_MAX_CONNS_PER_SOURCE from the node's address, then one more
        p = self.node.spawn(self.node.nsenter("node") + [N.PYTHON, "-B", "-u", "-c", STALLER, N.NODE4,
                                                          str(self.port), "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = p.stdout.readline()
            if not line:  # (reading stderr waits for the staller to exit)
                self.fail("staller died: %s" % p.stderr.read()[-2000:])
            first = json.loads(line)
            self.assertTrue(first["extra"].startswith("HTTP/1.1 503 "), "3rd connection: %r" % first["extra"][:200])
            # the proxy and the control socket do not wait for the scrapers
            t0 = time.monotonic()
            self.assertEqual(self.get(N.BASE4, "/").pod, "baseline")
            self.node.ctl_ok("status")
            self.assertLess(time.monotonic() - t0, 2)
            line = p.stdout.readline()
            if not line:  # (reading stderr waits for the staller to exit)
                self.fail("staller died: %s" % p.stderr.read()[-2000:])
            closed = json.loads(line)["closed"]
            for after, got in closed:
                self.assertIsNotNone(after, "a stalled scrape connection was never closed")
                self.assertEqual(got, 0, "a stalled connection got data or a reset: %r" % (got,))
                self.assertTrue(4.5 <= after <= 7.5, "closed %.2fs after it stalled (limit 5s)" % after)
        finally:
            if p.poll() is None:
                N._killpg(p)
            p.wait(5)
        self.scrape()  # serving again
        self.assertIn("metrics: 2 connections open from %s, refusing more from it" % N.NODE4,
                      self.node.shuntd_output())


class AccessLog(MetricsBase):
    extra_args = ["--access-log"]

    def access_lines(self, since):
        out = []
        for ln in self.node.shuntd_output(since=since["_shuntd"]).splitlines():
            if ln.startswith("shuntd: info: access "):
                out.append(dict((k, v.strip('"')) for k, v in re.findall(r'(\w+)=("[^"]*"|\S*)', ln[21:])))
        return out

    def test_one_line_per_steered_request(self):
        self.route(SVC4, "dev-a", TO4)
        mark = self.node.mark()
        req = build_request("POST", "/echo", H + [("Authorization", "Bearer secret-token-xyz"),
                                                 ("Connection", "close")], body=b"body-secret-123", host=SVC4)
        c = self.connect(N.BASE4)
        c.send(req)
        r = c.wait_closed(timeout=5)
        self.assertTrue(r["closed"])
        self.assertIn(b"X-Pod: sandbox", r["data"])
        self.bad(b"G@T / HTTP/1.1\r\n\r\n", 400)
        time.sleep(0.2)
        lines = self.access_lines(mark)
        self.assertEqual(len(lines), 2, lines)
        a, b = lines
        self.assertEqual({k: a[k] for k in ("service", "key", "destination", "upstream", "status", "outcome")},
                         {"service": SVC4, "key": "dev-a", "destination": "sandbox", "upstream": TO4,
                          "status": "200", "outcome": "2xx"})
        self.assertEqual(int(a["request_bytes"]), len(req))
        self.assertEqual(int(a["response_bytes"]), len(r["data"]))
        self.assertTrue(0 < float(a["duration_s"]) < 5, a)
        self.assertEqual({k: b[k] for k in ("service", "key", "destination", "upstream", "status", "outcome")},
                         {"service": SVC4, "key": "", "destination": "error", "upstream": "", "status": "400",
                          "outcome": "4xx"})
        out = self.node.shuntd_output(since=mark["_shuntd"])
        for secret in ("secret-token-xyz", "body-secret-123", "Authorization"):
            self.assertNotIn(secret, out, "a header or body reached the log")

    def test_no_line_for_unsteered_requests(self):
        self.route(SVC4, "dev-a", TO4)
        c = self.connect(N.BASE4)  # captured while the service is steered
        self.assertEqual(c.request("GET", "/", []).pod, "baseline")
        time.sleep(0.1)
        self.node.route_del(SVC4, "dev-a")
        mark = self.node.mark()
        self.assertEqual(c.request("GET", "/", [key_header("dev-a")]).pod, "baseline")
        self.assertEqual(c.request("GET", "/", []).pod, "baseline")
        # never captured at all: no route for the v6 service
        self.assertEqual(self.get(N.BASE6, "/").pod, "baseline")
        time.sleep(0.2)
        self.assertEqual(self.access_lines(mark), [], "access lines for requests to a service without routes")
        self.assertEqual(self.node.status()["routes"], 0)


class JsonLogs(MetricsBase):
    extra_args = ["--log-format", "json", "--access-log"]

    def test_every_line_is_a_json_object(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.assertEqual(self.get(N.BASE4, "/", H).pod, "sandbox")
        self.bad(b"GET / HTTP/1.1\r\nX-Bad : 1\r\n\r\n", 400)
        n.ctl("route", "add", "--service", SVC4, "--key", "a,b", "--to", TO4)  # refused: an error line
        n.route_del(SVC4, "dev-a")
        self.scrape()
        self.assertEqual(n.shuntd_stop(signal.SIGTERM), 0)
        n.expected_exit = True
        lines = n.shuntd_output().splitlines()
        self.assertGreater(len(lines), 5)
        objs = []
        for ln in lines:
            try:
                o = json.loads(ln)
            except ValueError:
                self.fail("not JSON: %r" % ln)
            self.assertIsInstance(o, dict, ln)
            self.assertRegex(o.get("ts", ""), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", ln)
            self.assertIn(o.get("level"), ("error", "warning", "info", "debug"), ln)
            self.assertIsInstance(o.get("msg"), str, ln)
            objs.append(o)
        msgs = [o["msg"] for o in objs]
        self.assertTrue(any(m.startswith("ready: ") for m in msgs), msgs)
        self.assertTrue(any("stopped" in m for m in msgs), msgs)
        acc = [o for o in objs if o["msg"] == "access"]
        self.assertEqual(len(acc), 2, acc)
        a = acc[0]
        self.assertEqual({k: a.get(k) for k in ("service", "key", "destination", "upstream", "status", "outcome")},
                         {"service": SVC4, "key": "dev-a", "destination": "sandbox", "upstream": TO4,
                          "status": 200, "outcome": "2xx"})
        for k in ("duration_s", "request_bytes", "response_bytes"):
            self.assertIsInstance(a.get(k), (int, float), k)
        self.assertEqual((acc[1]["destination"], acc[1]["status"]), ("error", 400))


class MetricsIPv6(MetricsBase):
    host = N.NODE6

    def test_endpoint_on_ipv6(self):
        self.assertEqual(self.http("GET", "/readyz").status, 200)
        self.route(SVC6, "dev-a", TO6)
        m0 = self.scrape()
        self.assertEqual(self.get(N.BASE6, "/", H).pod, "sandbox")
        m1 = self.scrape()
        self.assertEqual(requests_delta(m1, m0, SVC6), {("sandbox", "2xx"): 1})
        self.assertIn("shunt_requests_total{service=\"%s\"" % SVC6, m1.text)

    def test_override_wait_without_kubernetes(self):
        """/v1/overrides on an agent that follows no cluster: 404 with the
        reason, and `shuntctl override wait` gives up at once (over IPv6
        here, and over the control socket) instead of waiting it out."""
        uid = "0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b"
        why = "this agent does not follow a Kubernetes cluster"
        r = self.http("GET", "/v1/overrides?pod=" + uid)
        self.assertEqual((r.status, r.body), (404, (why + "\n").encode()))
        self.assertEqual(self.http("GET", "/v1/overrides").status, 400)
        t0 = time.monotonic()
        p = N.run(self.node.nsenter("client") + [
            self.node.shuntctl_bin, "override", "wait", "--pod-uid", uid,
            "--agent", N.hostport(self.host, self.port), "--timeout", "30s"], check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(p.stderr, "shuntctl: override wait: %s\n" % why)
        self.assertLess(time.monotonic() - t0, 5, "waited for an answer that cannot come")
        p = self.node.ctl("override", "wait", "--pod-uid", uid, "--timeout", "30s")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(p.stderr, "shuntctl: override wait: override ready: %s\n" % why)


class MetricsAcrossTakeover(MetricsBase):
    """A new agent taking over binds the same --metrics-addr (SO_REUSEPORT)
    while the old one still runs; once the old one hands over, scrapes and
    probes reach the new one; a SIGTERMed agent says 'draining' on /readyz."""

    def test_takeover_keeps_the_endpoint(self):
        n = self.node
        old = n.shuntd
        off = N._size(n.shuntd_log)
        new = n.spawn(n.nsenter("node") + n.shuntd_argv(["--drain-timeout", "3s"]),
                      stdout=open(n.shuntd_log, "ab"), stderr=subprocess.STDOUT)
        n.shuntd = new
        n.shuntd_log_start = off
        deadline = time.monotonic() + 15
        while "ready: cgroup" not in N._read_from(n.shuntd_log, off):
            self.assertIsNone(new.poll(), "the new agent exited:\n" + N._read_from(n.shuntd_log, off))
            self.assertLess(time.monotonic(), deadline, "the new agent is not ready")
            time.sleep(0.05)
        self.assertEqual(old.wait(10), 0)
        self.assertNotIn("metrics listen on", N._read_from(n.shuntd_log, off), "the new agent could not bind")
        for _ in range(5):  # every connection reaches the new agent now
            self.assertEqual(self.http("GET", "/readyz").status, 200)
        self.assertGreater(self.scrape().get("shunt_start_time_seconds"), 0)

    def test_readyz_says_draining_during_sigterm(self):
        self.route(SVC4, "dev-a", TO4)
        c = self.connect(N.BASE4)  # keeps the drain going until its next response
        self.assertPod(c.request("GET", "/", []), "baseline")
        self.node.shuntd.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            r = self.http("GET", "/readyz")
            if r.status == 503:
                break
            self.assertLess(time.monotonic(), deadline, "readyz still %s during the drain" % r.status)
            time.sleep(0.05)
        self.assertIn(b"draining", r.body)
        self.assertPod(c.request("GET", "/last", []), "baseline")
        self.node.expected_exit = True
        self.assertEqual(self.node.shuntd.wait(10), 0)


class TwoPods:
    """Mixin: a "tenant" pod that holds connections, a "prom" pod that
    scrapes."""

    node_opts = {"extra_pods": {"tenant": ("10.211.0.60", None), "prom": ("10.211.0.61", None)}}

    def hold(self, pod, port, n, sources=(), host=N.NODE4):
        """HOLDER in pod; returns (process, its first report)."""
        p = self.node.pod_spawn(pod, [N.PYTHON, "-B", "-u", "-c", HOLDER, host, str(port), str(n)] + list(sources),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.poll() is None and N._killpg(p), p.wait(5)))
        line = p.stdout.readline()
        if not line:
            self.fail("holder died: %s" % p.stderr.read()[-2000:].decode("utf-8", "replace"))
        return p, json.loads(line)

    def scrape_from(self, pod):
        rc, out, err = self.node.pod_run(pod, [N.PYTHON, "-B", "-c", SCRAPER, self.host, str(self.port), "5",
                                               base64.b64encode(("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                                                                .encode()).decode()])
        self.assertEqual(rc, 0, err[-2000:])
        return HttpReply(base64.b64decode(json.loads(out)["data"]))

    def probes(self, probe, n=10, every=0.6):
        """n probes spread over one metrics connection timeout and more:
        [(status, first body line)]."""
        out = []
        for _ in range(n):
            r = probe()
            out.append((r.status, r.body.split(b"\n")[0].decode("latin-1")))
            time.sleep(every)
        return out


class ProbeStarvation(TwoPods, MetricsBase):
    """Issue 9, finding 6: connections from pods to --metrics-addr must not
    make a probe fail (the kubelet would restart the agent, and every
    restart drops steering), nor hold anything past the timeout."""

    def test_idle_connections_of_one_pod_fail_no_probe(self):
        _, held = self.hold("tenant", self.port, 20)
        got = self.probes(lambda: self.http("GET", "/healthz"))
        self.assertEqual(got, [(200, "ok")] * len(got), "/healthz on --metrics-addr while a pod holds idle "
                                                          "connections to it")
        self.assertEqual(self.scrape_from("prom").status, 200, "/metrics from another pod")
        self.assertEqual(held["held"], 2, "connections of one source kept open: %r" % held)

    def test_scrapes_in_a_loop_are_rate_limited_per_source(self):
        # A rendering of /metrics costs the event loop ~0.2 ms: a pod
        # scraping in a loop would otherwise take most of the proxy's time.
        loop = ("import socket,sys,time\n"
                "ok=slow=0\nt0=time.monotonic()\n"
                "for _ in range(80):\n"
                "    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5)\n"
                "    s.sendall(b'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
                "    d=b''\n"
                "    while True:\n"
                "        c=s.recv(65536)\n"
                "        if not c: break\n"
                "        d+=c\n"
                "    s.close()\n"
                "    st=int(d.split(b' ')[1])\n"
                "    ok+=st==200\n"
                "    slow+=st==429\n"
                "print(ok,slow,time.monotonic()-t0)\n")
        rc, out, err = self.node.pod_run("tenant", [N.PYTHON, "-B", "-c", loop, self.host, str(self.port)],
                                         timeout=60)
        self.assertEqual(rc, 0, err[-2000:])
        ok, slow, took = out.split()
        ok, slow, took = int(ok), int(slow), float(took)
        self.assertEqual(ok + slow, 80, out)
        self.assertGreater(slow, 0, "80 scrapes in %.2f s from one pod all rendered" % took)
        self.assertLessEqual(ok, 20 + int(took / 0.1) + 1, "more renderings than the bucket allows: %s" % out)
        self.assertEqual(self.scrape_from("prom").status, 200, "another pod's scrape")
        self.assertEqual(self.http("GET", "/healthz").status, 200)

    def test_slow_reader_holds_nothing_after_the_timeout(self):
        # The answer (about 10 kB) does not fit in the reader's window: the
        # rest waits in the node's socket buffer.
        p = self.node.pod_spawn("tenant", [N.PYTHON, "-B", "-u", "-c", SLOW_READER, self.host, str(self.port), "8"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.poll() is None and N._killpg(p), p.wait(5)))
        line = p.stdout.readline()
        if not line:
            self.fail("reader died: %s" % p.stderr.read()[-2000:].decode("utf-8", "replace"))
        cport = json.loads(line)["port"]
        time.sleep(6.5)
        # Past METRICS_TIMEOUT_MS the node keeps no socket of that
        # connection: not the agent's, not an orphan with the rest of the
        # answer waiting for a window that never opens.
        left = N.run(self.node.nsenter("node") + ["ss", "-Htni", "dst", "10.211.0.60:%d" % cport]).stdout
        self.assertEqual(left.strip(), "", "left on the node 6.5 s after the request")
        out = json.loads(p.stdout.readline())
        self.assertIsNotNone(out["error"], "the reader got the whole answer (%d bytes): no slow reader" % out["got"])
        self.scrape()


class HealthBase(MetricsBase):
    """--health-addr on the node's loopback, as the DaemonSet runs it."""

    health_host = "127.0.0.1"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.node is not None:
            cls.hport = free_port(cls.node, cls.health_host)
            cls.node.shuntd_args += ["--health-addr", N.hostport(cls.health_host, cls.hport)]

    def probe(self, method, path):
        return self.http(method, path, host=self.health_host, port=self.hport)


class HealthEndpoint(TwoPods, HealthBase):
    """The probe listener: its two paths only, its own connection budget,
    and the metrics listener's takeover and drain behaviour."""

    def test_serves_only_the_probes(self):
        r = self.probe("GET", "/healthz")
        self.assertEqual((r.status, r.body, r.headers.get("connection")), (200, b"ok\n", "close"))
        r = self.probe("GET", "/readyz")
        self.assertEqual((r.status, r.body), (200, READY_BOTH))
        r = self.probe("HEAD", "/readyz")
        self.assertEqual((r.status, r.body, int(r.headers["content-length"])), (200, b"", len(READY_BOTH)))
        self.assertEqual(self.probe("HEAD", "/healthz").status, 200)
        self.assertEqual(self.probe("GET", "/readyz?verbose=1").status, 200, "a query string is ignored")
        for path in ("/metrics", "/metrics?x=1", "/", "/healthz/x", "/livez"):
            self.assertEqual(self.probe("GET", path).status, 404, path)
        self.assertEqual(self.probe("HEAD", "/metrics").status, 404)
        r = self.probe("POST", "/readyz")
        self.assertEqual((r.status, r.headers.get("allow")), (405, "GET, HEAD"))
        r = self.exchange(b"GET /readyz\r\n\r\n", host=self.health_host, port=self.hport)
        self.assertEqual(r.status, 400)
        # the metrics listener still answers the probes, and /metrics
        self.assertEqual(self.http("GET", "/readyz").body, READY_BOTH)
        self.assertEqual(self.http("GET", "/healthz").body, b"ok\n")
        self.scrape()
        # a pod cannot reach the probe port: it listens on the node's loopback only
        rc, out, err = self.node.pod_run("tenant", [N.PYTHON, "-B", "-c",
                                                    "import socket, sys\n"
                                                    "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)\n"
                                                    "except ConnectionRefusedError:\n print('refused')\n",
                                                    N.NODE4, str(self.hport)])
        self.assertEqual((rc, out.strip()), (0, "refused"), err)

    def test_probes_pass_while_metrics_is_full(self):
        # Enough source addresses in one pod to fill METRICS_MAX_CONNS
        # despite the limit per source.
        srcs = ["10.211.0.%d" % i for i in range(100, 120)]
        for a in srcs:
            N.run(["ip", "-n", self.node.ns("tenant"), "addr", "add", a + "/24", "dev", "eth0"])
        _, held = self.hold("tenant", self.port, 3, srcs)
        self.assertEqual(held["held"], 32, "connections kept open on --metrics-addr: %r" % held)
        # The metrics listener is full: a probe there would fail...
        self.assertEqual(self.scrape_from("prom").status, 503, "/metrics from another pod")
        self.assertEqual(self.http("GET", "/healthz").status, 503)
        # ... the probe listener does not notice.
        got = self.probes(lambda: self.probe("GET", "/healthz"), n=5)
        got += self.probes(lambda: self.probe("GET", "/readyz"), n=5)
        self.assertEqual(got, [(200, "ok")] * 10, "probes on --health-addr while --metrics-addr is full")
        self.assertIn("metrics: 32 connections open, refusing more", self.node.shuntd_output(since=self.mark["_shuntd"]))
        self.assertNotIn("health: ", self.node.shuntd_output(since=self.mark["_shuntd"]))

    def wait_log(self, text, since, timeout=15):
        deadline = time.monotonic() + timeout
        while text not in N._read_from(self.node.shuntd_log, since):
            self.assertLess(time.monotonic(), deadline, "no %r in shuntd's log" % text)
            time.sleep(0.05)

    def test_takeover_moves_the_probes(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        c = self.connect(N.BASE4)  # keeps the old agent draining until its next response
        self.assertPod(c.request("GET", "/", []), "baseline")
        old = n.shuntd
        off = N._size(n.shuntd_log)
        new = n.spawn(n.nsenter("node") + n.shuntd_argv(["--drain-timeout", "3s"]),
                      stdout=open(n.shuntd_log, "ab"), stderr=subprocess.STDOUT)
        n.shuntd = new
        n.shuntd_log_start = off
        self.wait_log("ready: cgroup", off)
        self.wait_log("handed %d listener(s) over to pid %d" % (N.listener_socks(), new.pid), off)
        time.sleep(0.2)  # the old agent closes its endpoints as it starts draining
        out = N._read_from(n.shuntd_log, off)
        self.assertNotIn("listen on", out, "the new agent could not bind")
        self.assertIn("probes on http://%s/healthz" % N.hostport(self.health_host, self.hport), out)
        # Every probe reaches the new agent; the old one, still draining,
        # would say 503 "draining".
        got = [(r.status, r.body) for r in (self.probe("GET", "/readyz") for _ in range(8))]
        self.assertIsNone(old.poll(), "the old agent is no longer draining: the test proves nothing")
        self.assertEqual(got, [(200, READY_BOTH)] * 8)
        self.assertEqual([self.http("GET", "/readyz").status for _ in range(4)], [200] * 4)
        self.assertPod(c.request("GET", "/last", []), "baseline")
        self.assertEqual(old.wait(10), 0)
        self.assertEqual(self.probe("GET", "/healthz").status, 200)

    def test_readyz_says_draining_during_sigterm(self):
        self.route(SVC4, "dev-a", TO4)
        c = self.connect(N.BASE4)  # keeps the drain going until its next response
        self.assertPod(c.request("GET", "/", []), "baseline")
        self.node.shuntd.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            r = self.probe("GET", "/readyz")
            if r.status == 503:
                break
            self.assertLess(time.monotonic(), deadline, "readyz still %s during the drain" % r.status)
            time.sleep(0.05)
        self.assertTrue(r.body.startswith(b"not ready: draining"), r.body)
        self.assertTrue(r.body.endswith(READY_BOTH[3:]), "families: %r" % r.body)
        self.assertEqual(self.probe("GET", "/healthz").status, 200, "alive while draining")
        self.assertEqual(self.http("GET", "/readyz").status, 503, "--metrics-addr says so too")
        self.assertPod(c.request("GET", "/last", []), "baseline")
        self.node.expected_exit = True
        self.assertEqual(self.node.shuntd.wait(10), 0)


def without_proxy6(argv):
    """shuntd's argv with its IPv6 --proxy-addr left out (either form:
    given twice, or as a comma list)."""
    out, it = [], iter(argv)
    for a in it:
        if a == "--proxy-addr":
            v = ",".join(x for x in next(it).split(",") if ":" not in x)
            if v:
                out += [a, v]
        elif a.startswith("--proxy-addr="):
            v = ",".join(x for x in a.split("=", 1)[1].split(",") if ":" not in x)
            if v:
                out.append("--proxy-addr=" + v)
        else:
            out.append(a)
    return out


class ReadyzFamilies(HealthBase):
    """/readyz says which address families the proxy serves (issue 9,
    finding 9): here IPv4 only."""

    @classmethod
    def prepare_node(cls, node):
        argv = node.shuntd_argv
        node.shuntd_argv = lambda extra=(): without_proxy6(argv(extra))

    def test_readyz_lists_the_families(self):
        want = ("ok\nipv4 %s\nipv6 none (no --proxy-addr of this family)\n"
                % N.hostport(N.NODE4, N.PROXY_PORT)).encode()
        self.assertNotIn(N.NODE6, self.node.shuntd_argv())
        self.assertEqual(self.probe("GET", "/readyz").body, want)
        self.assertEqual(self.http("GET", "/readyz").body, want)
