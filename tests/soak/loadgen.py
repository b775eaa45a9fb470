# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Randomized traffic for `make soak`, run inside the client pod (in the
capture cgroup). Workers pick scenarios at random until the deadline:
keep-alive and new connections, pipelining, split writes, random keys,
random body sizes and encodings, aborts mid-request and mid-response, slow
readers. Every answer is checked against the pod its key must reach.

argv: SERVICE_IP PORT SECONDS WORKERS SEED KEYS_JSON
KEYS_JSON maps a routing key to the pod that must answer ("*" = either
baseline or sandbox, for keys whose route flaps), "" is the key-less case.
Prints one JSON object with the counts at the end."""

import hashlib
import json
import random
import socket
import sys
import threading
import time

SVC, PORT, SECONDS, WORKERS, SEED = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(
    sys.argv[5])
KEYS = json.loads(sys.argv[6])
DEADLINE = time.monotonic() + SECONDS
LOCK = threading.Lock()
STATS = {"requests": 0, "ok": 0, "misroutes": 0, "aborts": 0, "failures": {}}
MISROUTES = []


def count(field, n=1):
    with LOCK:
        STATS[field] += n


def fail(cause, detail=""):
    with LOCK:
        STATS["failures"][cause] = STATS["failures"].get(cause, 0) + 1
        if cause == "misroute":
            STATS["misroutes"] += 1
            if len(MISROUTES) < 20:
                MISROUTES.append(detail)


class Conn:
    def __init__(self, rnd, slow=False):
        self.rnd = rnd
        self.slow = slow
        self.s = socket.create_connection((SVC, PORT), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data, split=False):
        if not split:
            self.s.sendall(data)
            return
        i = 0
        while i < len(data):
            n = self.rnd.choice((1, 2, 7, 64, 1000))
            self.s.sendall(data[i:i + n])
            i += n
            if self.rnd.random() < 0.05:
                time.sleep(0.001)

    def _fill(self):
        if self.slow:
            time.sleep(0.001)
        d = self.s.recv(4096 if self.slow else 65536)
        if not d:
            raise EOFError("closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_only=False):
        """(status, headers dict, body)."""
        while True:
            status = int(self._line().split(b" ", 2)[1])
            hdrs = {}
            while True:
                line = self._line()
                if not line:
                    break
                k, v = line.split(b":", 1)
                hdrs[k.strip().lower().decode()] = v.strip().decode()
            if 100 <= status < 200:
                continue
            break
        if head_only or status in (204, 304):
            return status, hdrs, b""
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._exact(2)
            return status, hdrs, body
        return status, hdrs, self._exact(int(hdrs.get("content-length", "0")))

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def build(rnd, key, path):
    hdrs = [("Host", "%s:%d" % (SVC, PORT))]
    if key:
        fmt = rnd.randrange(4)
        if fmt == 0:
            hdrs.append(("baggage", "a=1, sd-routing-key=%s;p=1, z=2" % key))
        elif fmt == 1:
            hdrs.append(("BAGGAGE", "sd-routing-key=%s" % key))
        elif fmt == 2:
            hdrs.append(("tracestate", "v=1,sd-routing-key=%s" % key))
        else:
            hdrs.append(("uberctx-sd-routing-key", key))
    body = b""
    method = "GET"
    if rnd.random() < 0.4:
        method = "POST"
        body = rnd.randbytes(rnd.choice((0, 1, 100, 5000, 70000, 300000)))
        if rnd.random() < 0.5:
            hdrs.append(("Transfer-Encoding", "chunked"))
            enc, i = b"", 0
            while i < len(body):
                n = rnd.randrange(1, 40000)
                enc += b"%x\r\n" % len(body[i:i + n]) + body[i:i + n] + b"\r\n"
                i += n
            wire = enc + b"0\r\n\r\n"
        else:
            hdrs.append(("Content-Length", str(len(body))))
            wire = body
    else:
        wire = b""
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % h for h in hdrs) + "\r\n"
    return head.encode() + wire, hashlib.sha256(body).hexdigest(), len(body)


def check(key, status, hdrs, body, sha, blen, what):
    count("requests")
    if status != 200:
        fail("status-%d" % status)
        return False
    want, pod = KEYS.get(key, "baseline"), hdrs.get("x-pod")
    if (want == "*" and pod not in ("baseline", "sandbox")) or (want != "*" and pod != want):
        fail("misroute", "%s key=%r answered by %r, expected %r" % (what, key, pod, want))
        return False
    try:
        info = json.loads(body)
    except ValueError:
        fail("bad-body")
        return False
    if info.get("body_len") != blen or info.get("body_sha256") != sha:
        fail("body-mismatch")
        return False
    count("ok")
    return True


def pick_key(rnd):
    return rnd.choice(list(KEYS) + ["nobody-" + str(rnd.randrange(3))])


def sc_keepalive(rnd, split=False):
    c = Conn(rnd)
    try:
        for i in range(rnd.randrange(1, 15)):
            key = pick_key(rnd)
            wire, sha, blen = build(rnd, key, "/ka/%d" % i)
            c.send(wire, split)
            st, h, b = c.response()
            check(key, st, h, b, sha, blen, "keepalive")
    finally:
        c.close()


def sc_pipeline(rnd):
    c = Conn(rnd)
    try:
        reqs = []
        for i in range(rnd.randrange(2, 6)):
            key = pick_key(rnd)
            reqs.append((key,) + build(rnd, key, "/pipe/%d" % i))
        c.send(b"".join(r[1] for r in reqs), split=rnd.random() < 0.3)
        for i, (key, _, sha, blen) in enumerate(reqs):
            st, h, b = c.response()
            if check(key, st, h, b, sha, blen, "pipeline") and json.loads(b)["path"] != "/pipe/%d" % i:
                fail("out-of-order")
    finally:
        c.close()


def sc_abort_request(rnd):
    c = Conn(rnd)
    wire, _, _ = build(rnd, pick_key(rnd), "/abort-req")
    c.send(wire[:rnd.randrange(1, max(2, len(wire)))])
    c.close()
    count("aborts")


def sc_abort_response(rnd):
    c = Conn(rnd)
    key = pick_key(rnd)
    head = "GET /big?bytes=2000000 HTTP/1.1\r\nHost: %s:%d\r\nbaggage: sd-routing-key=%s\r\n\r\n"
    c.send((head % (SVC, PORT, key)).encode())
    try:
        c._fill()
    except (EOFError, OSError):
        pass
    c.close()
    count("aborts")


def sc_slow_reader(rnd):
    c = Conn(rnd, slow=True)
    try:
        key = pick_key(rnd)
        head = "GET /big?bytes=300000 HTTP/1.1\r\nHost: %s:%d\r\n" % (SVC, PORT)
        if key:
            head += "baggage: sd-routing-key=%s\r\n" % key
        c.send((head + "\r\n").encode())
        st, h, body = c.response()
        count("requests")
        want, pod = KEYS.get(key, "baseline"), h.get("x-pod")
        if st != 200 or len(body) != 300000:
            fail("slow-reader")
        elif (want == "*" and pod not in ("baseline", "sandbox")) or (want != "*" and pod != want):
            fail("misroute", "slow reader key=%r answered by %r" % (key, pod))
        else:
            count("ok")
    finally:
        c.close()


def sc_new_connection(rnd):
    c = Conn(rnd)
    try:
        key = pick_key(rnd)
        wire, sha, blen = build(rnd, key, "/new")
        c.send(wire)
        st, h, b = c.response()
        check(key, st, h, b, sha, blen, "new-connection")
    finally:
        c.close()


def sc_split_keepalive(rnd):
    sc_keepalive(rnd, split=True)


SCENARIOS = [(sc_keepalive, 40), (sc_split_keepalive, 10), (sc_pipeline, 20), (sc_new_connection, 10),
             (sc_abort_request, 8), (sc_abort_response, 8), (sc_slow_reader, 4)]


def worker(i):
    rnd = random.Random(SEED * 1000 + i)
    fns = [f for f, w in SCENARIOS for _ in range(w)]
    while time.monotonic() < DEADLINE:
        try:
            rnd.choice(fns)(rnd)
        except (OSError, EOFError, ValueError, IndexError) as e:
            fail(type(e).__name__)


def main():
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 60)
    STATS["misroute_examples"] = MISROUTES
    print(json.dumps(STATS), flush=True)


if __name__ == "__main__":
    main()
