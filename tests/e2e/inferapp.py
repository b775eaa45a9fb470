# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Test applications and ground truth for routing-key inference.

shunt infers the routing key of a service's outbound calls when the service
does not propagate baggage itself. This file holds the apps of that test
and the analysis that says how well the keys were inferred. Python 3
standard library only; one script, its role chosen with --role:

    inferapp.py --role sink   --port P --name NAME --log FILE [--v6]
    inferapp.py --role middle --port P --name NAME --log FILE --next HOST:PORT
                [--work-ms 4] [--calls 2] [--keepalive] [--post-prob 0.3]
                [--post-delay-ms 0] [--bg-ms 50] [--bg-path /bg]
    inferapp.py --role front  --port P --name NAME --log FILE --next HOST:PORT
    inferapp.py --role load   --target HOST:PORT --rate R --duration S
                --keys dev-a,dev-b,- --log FILE [--concurrency 64] [--seed N]
    inferapp.py --self-test

Servers (sink, middle, front) are HTTP/1.1 keep-alive ThreadingHTTPServers
on 0.0.0.0 (:: with --v6; --bind ADDR overrides), always answer 200 with a
JSON body and a Content-Length, and exit promptly on SIGTERM. Every log is
JSON lines, one written (and flushed) per event, each with "t" (time.time()).

sink: the end of the chain. One line per request:
    {"pod","path","method","rid","kind","baggage","t"}
  rid and kind are the X-Req-Id and X-Kind headers (null when absent),
  baggage every baggage header line, in order.

middle: the service that does NOT propagate baggage. Per inbound request it
  sleeps W/N ms before each of its N calls GET NEXT/down?i=<k> with X-Req-Id
  (the inbound one), X-Kind: request and no baggage, then answers. Once the
  answer is written and flushed, with probability P a daemon thread makes
  GET NEXT/post (X-Req-Id, X-Kind: post) after D ms. A daemon thread calls
  GET NEXT/bg (X-Kind: bg, no X-Req-Id) every B ms (0: never). Calls use a
  new connection each, or with --keepalive one connection per thread (an
  inbound connection's handler thread, the bg thread). Logs
    {"pod","event":"in","rid","baggage","t"}
    {"pod","event":"out","kind","rid","path","status","error","t"}
  A failed call is logged (status null, error a string), never fatal.

front: a service that propagates: per request GET NEXT/work with the
  inbound X-Req-Id, X-Kind: request and every inbound baggage line
  unchanged; answers {"pod","path","status","error"} (of that call). Logs
  "in" and "out" like the middle.

load: Poisson arrivals at R/s (exponential gaps from random.Random(seed))
  for S seconds, each a GET /work on a new connection and its own thread (at
  most C at once: an arrival waits for a free one), with X-Req-Id
  "<seed>-<i>" and a key chosen uniformly from --keys ("-": no key, no
  baggage header; else "baggage: sd-routing-key=KEY"). The seed defaults to
  a random one, so the request ids of two loads differ. Logs
    {"rid","key","status","error","t0","t1"}
  and prints {"sent","ok","failed"} (ok: a 2xx answer) to stdout.

analyze(load_logs, sink_logs, routed_keys) compares what the sinks received
with the loads' ground truth (its docstring).
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY_NAME = "sd-routing-key"
INFERRED_PROP = "shunt-inferred"
KINDS = ("request", "post", "bg")
TIMEOUT = 10.0  # seconds, for every outbound call


class Log:
    """Append-only JSON lines, safe to share between threads; each line
    gets the fixed fields first and, with stamp, "t" last."""

    def __init__(self, path, stamp=True, **fixed):
        self.fixed = fixed
        self.stamp = stamp
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="utf-8")

    def write(self, **ev):
        if self.stamp:
            ev["t"] = time.time()
        line = json.dumps({**self.fixed, **ev}) + "\n"
        with self.lock:
            self.f.write(line)
            self.f.flush()


def split_hostport(s):
    """"host:port" or "[v6]:port" -> (host, port)."""
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def get(conn, path, headers):
    """One GET on an http.client connection; headers is a list of pairs, so
    a name may repeat. Returns the response, read to its end."""
    conn.putrequest("GET", path, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    resp.read()
    return resp


# ---------------------------------------------------------------- servers


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # server_close() must not wait for keep-alive connections

    def __init__(self, bind, port, handler, app):
        self.address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.app = app
        super().__init__((bind, port), handler)

    def server_bind(self):
        # HTTPServer.server_bind() would ask the resolver for our name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class Handler(BaseHTTPRequestHandler):
    """The part every role shares: reads the request, answers 200 with the
    JSON of serve() and a Content-Length, then runs after()."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the head and the body are two writes

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.rid = self.headers.get("X-Req-Id")
        self.kind = self.headers.get("X-Kind")
        self.baggage = self.headers.get_all("baggage") or []
        body = json.dumps(self.serve(self.server.app)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        self.after(self.server.app)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

    def serve(self, app):
        """Returns the answer's JSON object."""
        raise NotImplementedError

    def after(self, app):
        """Runs once the answer is written and flushed."""

    def log_message(self, fmt, *args):
        pass


class SinkHandler(Handler):
    def serve(self, app):
        app.log.write(path=self.path, method=self.command, rid=self.rid, kind=self.kind,
                      baggage=self.baggage)
        return {"pod": app.name, "path": self.path}


class FrontHandler(Handler):
    def serve(self, app):
        app.log.write(event="in", rid=self.rid, baggage=self.baggage)
        status, error = app.caller.call("/work", "request", self.rid, self.baggage)
        return {"pod": app.name, "path": self.path, "status": status, "error": error}


class MiddleHandler(Handler):
    def serve(self, app):
        app.log.write(event="in", rid=self.rid, baggage=self.baggage)
        a = app.args
        statuses = []
        for k in range(a.calls):
            time.sleep(a.work_ms / a.calls / 1000)
            statuses.append(app.caller.call(f"/down?i={k}", "request", self.rid)[0])
        return {"pod": app.name, "path": self.path, "statuses": statuses}

    def after(self, app):
        if random.random() < app.args.post_prob:
            threading.Thread(target=app.post, args=(self.rid,), daemon=True).start()


class Caller:
    """Outbound GETs to one HOST:PORT, each logged as an "out" event; a
    failure is logged and returned, never raised."""

    def __init__(self, target, log, keepalive):
        self.host, self.port = split_hostport(target)
        self.log = log
        self.keepalive = keepalive
        self.local = threading.local()  # .conn: this thread's idle connection

    def call(self, path, kind, rid=None, baggage=(), keep=True):
        headers = [("X-Req-Id", rid)] if rid is not None else []
        headers.append(("X-Kind", kind))
        headers += [("baggage", b) for b in baggage]
        status = error = None
        try:
            status = self._request(path, headers, keep and self.keepalive)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        self.log.write(event="out", kind=kind, rid=rid, path=path, status=status, error=error)
        return status, error

    def _request(self, path, headers, keep):
        conn, self.local.conn = getattr(self.local, "conn", None), None
        if keep and conn is not None:
            try:
                return self._exchange(conn, path, headers, keep)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                pass  # the server closed the idle connection: once more on a new one
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        return self._exchange(conn, path, headers, keep)

    def _exchange(self, conn, path, headers, keep):
        try:
            resp = get(conn, path, headers)
        except BaseException:
            conn.close()
            raise
        if keep and not resp.will_close:
            self.local.conn = conn
        else:
            conn.close()
        return resp.status


class App:
    """A server role's state, shared by its handler threads."""

    def __init__(self, args):
        self.args = args
        self.name = args.name
        self.log = Log(args.log, pod=args.name)
        self.caller = Caller(args.next, self.log, args.keepalive) if args.next else None

    def post(self, rid):
        """The middle's fire-and-forget call after an answer."""
        time.sleep(self.args.post_delay_ms / 1000)
        self.caller.call("/post", "post", rid, keep=False)

    def background(self):
        """The middle's periodic call that belongs to no request."""
        while True:
            self.caller.call(self.args.bg_path, "bg")
            time.sleep(self.args.bg_ms / 1000)


HANDLERS = {"sink": SinkHandler, "middle": MiddleHandler, "front": FrontHandler}


def run_server(args):
    app = App(args)
    bind = args.bind or ("::" if args.v6 else "0.0.0.0")
    server = Server(bind, args.port, HANDLERS[args.role], app)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.role == "middle" and args.bg_ms > 0:
        threading.Thread(target=app.background, daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()


# ------------------------------------------------------------------- load


def run_load(target, rate, duration, keys, log_path, concurrency=64, seed=None):
    """The load role; returns its summary {"sent","ok","failed"}. keys: a
    list of keys, None for a request without one."""
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    host, port = split_hostport(target)
    log = Log(log_path, stamp=False)  # t0 and t1 instead
    slots = threading.BoundedSemaphore(concurrency)
    lock = threading.Lock()
    summary = {"sent": 0, "ok": 0, "failed": 0}
    sent = 0

    def one(rid, key):
        headers = [("X-Req-Id", rid)]
        if key is not None:
            headers.append(("baggage", f"{KEY_NAME}={key}"))
        status = error = None
        t0 = time.time()
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        try:
            status = get(conn, "/work", headers).status
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        try:
            log.write(rid=rid, key=key, status=status, error=error, t0=t0, t1=time.time())
            with lock:
                summary["ok" if status is not None and 200 <= status < 300 else "failed"] += 1
        finally:
            slots.release()

    start = time.monotonic()
    at = rng.expovariate(rate)
    while at < duration:
        key = rng.choice(keys)
        time.sleep(max(0.0, start + at - time.monotonic()))
        slots.acquire()
        threading.Thread(target=one, args=(f"{seed}-{sent}", key), daemon=True).start()
        sent += 1
        at += rng.expovariate(rate)
    for _ in range(concurrency):  # every request has ended once all slots are free
        slots.acquire()
    summary["sent"] = sent
    return summary


# --------------------------------------------------------------- analysis


def baggage_members(lines):
    """W3C baggage header lines -> [(name, value, [property names])...] in
    order. Names are lower-cased, values percent-decoded; a member without
    '=' is skipped."""
    members = []
    for line in lines:
        for member in line.split(","):
            kv, *props = member.split(";")
            name, eq, value = kv.partition("=")
            if eq:
                members.append((name.strip().lower(), urllib.parse.unquote(value.strip()),
                                [p.partition("=")[0].strip().lower() for p in props]))
    return members


def routing_key(lines):
    """(key, inferred) that baggage header lines carry: the first
    sd-routing-key member's value, and whether it has the shunt-inferred
    property; (None, False) without one."""
    for name, value, props in baggage_members(lines):
        if name == KEY_NAME:
            return value, INFERRED_PROP in props
    return None, False


def read_jsonl(path):
    """The JSON lines of a log. A last line without its newline (a write cut
    short by the writer's death) is left out; any other bad line raises."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out = []
    for n, line in enumerate(lines[:-1], 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: {e}") from None
    return out


def analyze(load_logs, sink_logs, routed_keys):
    """What the sinks received against the ground truth.

    load_logs: paths of load logs (rid -> the key the request was sent with).
    sink_logs: {path: "sandbox" | "baseline"}, the logs of sinks and where
    each one is. routed_keys: the keys with a route to the sandbox.

    For every call a sink logged with kind request, post or bg, the key it
    carried (routing_key()) is compared with the expected one: the load's
    key for its rid if kind is request, else None (background and
    post-response calls must never get a key). A request whose rid no load
    log knows (unknown_rid) is expected to carry none. Returns
      calls            calls of those kinds
      should_key       requests expected to carry a key
      carried_correct  calls that carried the expected key
      missed           calls expected to carry a key that carried none
      wrong            calls that carried a key other than the expected one
                       (any key on a post or bg call)
      wrong_details    the first 20 of those: log, pod, kind, rid, path,
                       expected, received, baggage
      inferred_marked  calls whose key had the shunt-inferred property
      misplaced        calls on the sandbox whose key has no route, or on
                       the baseline whose key has one
      unknown_rid      requests whose rid no load log knows
      recall           carried_correct / should_key (None if should_key is 0)
      per_kind         {kind: {"calls", "keyed"}}
    """
    truth = {}
    for path in load_logs:
        for ev in read_jsonl(path):
            truth[ev["rid"]] = ev["key"]
    res = {"calls": 0, "should_key": 0, "carried_correct": 0, "missed": 0, "wrong": 0,
           "wrong_details": [], "inferred_marked": 0, "misplaced": 0, "unknown_rid": 0,
           "recall": None, "per_kind": {}}
    for path, where in sink_logs.items():
        if where not in ("sandbox", "baseline"):
            raise ValueError(f"{path}: where is {where!r}, not sandbox or baseline")
        for ev in read_jsonl(path):
            kind = ev.get("kind")
            if kind not in KINDS:
                continue
            received, inferred = routing_key(ev.get("baggage") or [])
            expected = None
            if kind == "request":
                if ev.get("rid") in truth:
                    expected = truth[ev["rid"]]
                else:
                    res["unknown_rid"] += 1
            res["calls"] += 1
            per = res["per_kind"].setdefault(kind, {"calls": 0, "keyed": 0})
            per["calls"] += 1
            per["keyed"] += received is not None
            res["inferred_marked"] += received is not None and inferred
            res["misplaced"] += (where == "sandbox") != (received in routed_keys)
            if expected is not None:
                res["should_key"] += 1
                res["carried_correct"] += received == expected
                res["missed"] += received is None
            if received is not None and received != expected:
                res["wrong"] += 1
                if len(res["wrong_details"]) < 20:
                    res["wrong_details"].append({
                        "log": path, "pod": ev.get("pod"), "kind": kind, "rid": ev.get("rid"),
                        "path": ev.get("path"), "expected": expected, "received": received,
                        "baggage": ev.get("baggage")})
    if res["should_key"]:
        res["recall"] = res["carried_correct"] / res["should_key"]
    return res


# -------------------------------------------------------------- self-test


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, errfile, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}): {read_tail(errfile)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def read_tail(path, n=2000):
    with open(path, errors="replace") as f:
        return f.read()[-n:]


def check(ok, what, detail=None):
    if not ok:
        raise AssertionError(what + (f": {detail}" if detail is not None else ""))


def check_parser():
    check(routing_key(["a=1, sd-routing-key = dev-a ; p1 ; shunt-inferred=1", "sd-routing-key=x"])
          == ("dev-a", True), "baggage: OWS and properties")
    check(routing_key(["a=1", "SD-Routing-Key=dev%2Db;shunt-inferredx"]) == ("dev-b", False),
          "baggage: second line, name case, percent-decoding")
    check(routing_key(["sd-routing-key", "other=sd-routing-key=x"]) == (None, False),
          "baggage: no sd-routing-key member")


def check_handmade(tmp):
    """The counts on hand-made logs: one bg call with an inferred key, one
    request with the wrong key."""
    load, sink = os.path.join(tmp, "hand-load.log"), os.path.join(tmp, "hand-sink.log")
    with open(load, "w") as f:
        f.write(json.dumps({"rid": "h-1", "key": "dev-a"}) + "\n")
    with open(sink, "w") as f:
        f.write(json.dumps({"pod": "s", "path": "/bg", "kind": "bg", "rid": None,
                            "baggage": [f"{KEY_NAME}=dev-a;{INFERRED_PROP}"]}) + "\n")
        f.write(json.dumps({"pod": "s", "path": "/down?i=0", "kind": "request", "rid": "h-1",
                            "baggage": [f"{KEY_NAME}=dev-b"]}) + "\n")
    r = analyze([load], {sink: "sandbox"}, {"dev-a"})
    check(r["wrong"] == 2, "hand-made: wrong", r)
    check(r["inferred_marked"] == 1, "hand-made: inferred_marked", r)
    check(r["misplaced"] == 1 and r["should_key"] == 1 and r["recall"] == 0.0,
          "hand-made: misplaced, should_key, recall", r)


def check_chain(tmp):
    """load -> front -> middle -> sink on 127.0.0.1: the middle drops the
    keys and nobody puts one back."""
    procs = {}
    logs = {role: os.path.join(tmp, f"{role}.log") for role in ("sink", "middle", "front", "load")}
    me = [sys.executable, os.path.abspath(__file__)]
    try:
        nxt = None
        for role in ("sink", "middle", "front"):
            port, err = free_port(), os.path.join(tmp, f"{role}.err")
            cmd = me + ["--role", role, "--bind", "127.0.0.1", "--port", str(port),
                        "--name", role, "--log", logs[role]]
            if nxt:
                cmd += ["--next", nxt]
            if role == "middle":
                cmd += ["--post-prob", "0.5"]
            with open(err, "w") as ef:
                procs[role] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=ef)
            wait_port(port, procs[role], err)
            nxt = f"127.0.0.1:{port}"
        out = subprocess.run(me + ["--role", "load", "--target", nxt, "--rate", "20",
                                   "--duration", "3", "--keys", "dev-a,-", "--seed", "7",
                                   "--log", logs["load"]],
                             capture_output=True, text=True, timeout=15)
        check(out.returncode == 0, "load failed", out.stderr)
        summary = json.loads(out.stdout)
        check(summary["sent"] > 0 and summary["failed"] == 0, "load summary", summary)
        time.sleep(0.3)  # the last post-response calls
        for role, p in procs.items():
            p.send_signal(signal.SIGTERM)
        for role, p in procs.items():
            try:
                rc = p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{role} did not exit within 3 s of SIGTERM") from None
            check(rc == 0, f"{role} exit status after SIGTERM", rc)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    keyed = sum(ev["key"] is not None for ev in read_jsonl(logs["load"]))
    middle_in = [ev for ev in read_jsonl(logs["middle"]) if ev["event"] == "in"]
    check(sum(ev["baggage"] == [f"{KEY_NAME}=dev-a"] for ev in middle_in) == keyed,
          "the front propagated every key", (keyed, middle_in[:3]))
    r = analyze([logs["load"]], {logs["sink"]: "baseline"}, {"dev-a"})
    kinds = r["per_kind"]
    check(r["wrong"] == 0, "wrong", r)
    check(r["carried_correct"] == 0, "carried_correct", r)
    check(r["should_key"] > 0 and r["missed"] == r["should_key"], "should_key, missed", r)
    check(r["misplaced"] == 0 and r["unknown_rid"] == 0, "misplaced, unknown_rid", r)
    check(kinds.get("request", {}).get("calls") == 2 * summary["sent"], "2 calls per request", r)
    check(kinds.get("bg", {}).get("calls", 0) > 0 and kinds.get("post", {}).get("calls", 0) > 0,
          "bg and post calls", r)
    return r


def self_test():
    t0 = time.monotonic()
    try:
        check_parser()
        with tempfile.TemporaryDirectory(prefix="inferapp-") as tmp:
            r = check_chain(tmp)
            check_handmade(tmp)
    except AssertionError as e:
        print(f"inferapp self-test FAILED: {e}", file=sys.stderr)
        return 1
    del r["wrong_details"]
    print(f"inferapp self-test passed in {time.monotonic() - t0:.1f} s: {json.dumps(r)}")
    return 0


# ------------------------------------------------------------------- main

NEEDS = {
    "sink": ("port", "name", "log"),
    "middle": ("port", "name", "log", "next"),
    "front": ("port", "name", "log", "next"),
    "load": ("target", "rate", "duration", "keys", "log"),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--role", choices=sorted(NEEDS))
    p.add_argument("--log")
    # servers
    p.add_argument("--port", type=int)
    p.add_argument("--name")
    p.add_argument("--v6", action="store_true", help="listen on :: instead of 0.0.0.0")
    p.add_argument("--bind", help="listen on this address instead")
    p.add_argument("--next", help="HOST:PORT of the next service (middle, front)")
    p.add_argument("--keepalive", action="store_true", help="middle: one connection per thread")
    p.add_argument("--work-ms", type=float, default=4.0)
    p.add_argument("--calls", type=int, default=2)
    p.add_argument("--post-prob", type=float, default=0.3)
    p.add_argument("--post-delay-ms", type=float, default=0.0)
    p.add_argument("--bg-ms", type=float, default=50.0)
    p.add_argument("--bg-path", default="/bg")
    # load
    p.add_argument("--target")
    p.add_argument("--rate", type=float)
    p.add_argument("--duration", type=float)
    p.add_argument("--keys", help='comma list, "-" for no key')
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seed", type=int)
    args = p.parse_args()

    if args.self_test:
        return self_test()
    if not args.role:
        p.error("--role or --self-test is required")
    missing = [n for n in NEEDS[args.role] if getattr(args, n) is None]
    if missing:
        p.error(f"--role {args.role} needs " + ", ".join("--" + n for n in missing))
    if args.role == "load":
        keys = [None if k.strip() == "-" else k.strip() for k in args.keys.split(",")]
        summary = run_load(args.target, args.rate, args.duration, keys, args.log,
                           args.concurrency, args.seed)
        print(json.dumps(summary), flush=True)
        return 0
    run_server(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
