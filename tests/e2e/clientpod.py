# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The client side of the e2e suite, as a worker process in the client pod.

node.py starts this file as
    sh -c 'echo $$ > CGROUP/cgroup.procs && exec nsenter --net=/run/netns/CLIENT python3 clientpod.py'
so the process (and every socket it creates) belongs to the test cgroup
*before* it connects anything. The test process drives it with one JSON
command per line on stdin and reads one JSON reply per line on stdout;
bytes travel base64-encoded. Every socket operation has a timeout.

Commands (all take "id", a connection name, unless noted):
  connect   host port [timeout nodelay]    -> peer, local (getpeername/getsockname)
  send      data [chunk delay]              -> sent
  response  [method timeout]                -> one parsed HTTP response
  recv      [n timeout]                     -> data, closed (reads until n bytes, EOF or timeout)
  wait_closed [timeout]                     -> closed, after, data, error
  shutdown_wr, close
  hc_open host port [timeout]               http.client.HTTPConnection
  hc_request method path headers body       -> response + the local port used
  burst     plans [timeout req_timeout]   -> results (no id)
            one thread per plan {"host", "port", "requests": [{"path",
            "headers": [[name, value]...]}...]}, all started together, each
            sending its requests as GETs on one keep-alive http.client
            connection of its own, never silently reconnecting; per request
            {"status", "pod", "body", "local"} or {"error"} (which ends
            that plan)
  cgroup                                    -> /proc/self/cgroup (no id)
  run argv [timeout]                        -> rc, stdout, stderr (a child of this worker)
"""

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

MAX_HEAD = 1 << 20


class ProtocolError(Exception):
    pass


def b64(data):
    return base64.b64encode(bytes(data)).decode()


def unb64(s):
    return base64.b64decode(s) if s else b""


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        data = self.sock.recv(262144)
        if not data:
            self.eof = True
            raise EOFError()
        self.buf += data

    def read_until(self, delim, limit, deadline):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ProtocolError("no %r within %d bytes" % (delim, limit))
            start = max(0, len(self.buf) - len(delim) + 1)
            self.fill(deadline)

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            self.fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, method, timeout):
        """One response, strictly framed; interim 1xx come back on their own."""
        deadline = time.monotonic() + timeout
        if not self.buf and self.eof:
            return {"eof": True}
        try:
            head = self.read_until(b"\r\n\r\n", MAX_HEAD, deadline)
        except EOFError:
            if not self.buf:
                return {"eof": True}
            raise ProtocolError("EOF inside a response head: %r" % bytes(self.buf[:300]))
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError("bad status line %r" % lines[0][:300])
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for ln in lines[1:]:
            name, sep, value = ln.partition(b":")
            if not sep:
                raise ProtocolError("bad header line %r" % ln[:300])
            headers.append([name.decode("latin-1"), value.strip(b" \t").decode("latin-1")])
        hmap = {}
        for k, v in headers:
            hmap.setdefault(k.lower(), []).append(v)
        resp = {"status": status, "reason": reason, "version": parts[0], "headers": headers,
                "body": "", "trailers": [], "framing": "none"}
        if 100 <= status < 200 or method == "HEAD" or status in (204, 304):
            return resp
        te = ",".join(hmap.get("transfer-encoding", [])).lower()
        try:
            if "chunked" in te:
                resp["framing"] = "chunked"
                body = bytearray()
                while True:
                    line = self.read_until(b"\r\n", 4096, deadline)[:-2]
                    try:
                        size = int(line.split(b";")[0].strip(), 16)
                    except ValueError:
                        raise ProtocolError("bad chunk size line %r" % line[:100])
                    if size == 0:
                        while True:
                            t = self.read_until(b"\r\n", 65536, deadline)
                            if t == b"\r\n":
                                break
                            k, _, v = t[:-2].partition(b":")
                            resp["trailers"].append([k.decode("latin-1"), v.strip().decode("latin-1")])
                        break
                    body += self.read_exact(size, deadline)
                    if self.read_exact(2, deadline) != b"\r\n":
                        raise ProtocolError("chunk data not followed by CRLF")
                resp["body"] = b64(body)
            elif "content-length" in hmap:
                resp["framing"] = "content-length"
                n = int(hmap["content-length"][0])
                resp["body"] = b64(self.read_exact(n, deadline))
            else:
                resp["framing"] = "close"
                while True:
                    try:
                        self.fill(deadline)
                    except EOFError:
                        break
                resp["body"] = b64(self.buf)
                del self.buf[:]
        except EOFError:
            raise ProtocolError("EOF inside the body of a %d response (%s)" % (status, resp["framing"]))
        return resp


class Worker:
    def __init__(self):
        self.conns = {}
        self.hcs = {}

    def c(self, cmd):
        try:
            return self.conns[cmd["id"]]
        except KeyError:
            raise ProtocolError("no connection %r" % cmd.get("id"))

    def do_connect(self, cmd):
        host, port = cmd["host"], int(cmd["port"])
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(float(cmd.get("timeout", 5)))
        if cmd.get("nodelay", True):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        try:
            s.connect((host, port))
        except OSError:
            s.close()
            raise
        old = self.conns.pop(cmd["id"], None)
        if old:
            old.sock.close()
        self.conns[cmd["id"]] = Conn(s)
        return {"peer": list(s.getpeername()[:2]), "local": list(s.getsockname()[:2]),
                "connect_s": time.monotonic() - t0}

    def do_send(self, cmd):
        c = self.c(cmd)
        data = unb64(cmd["data"])
        chunk = cmd.get("chunk")
        delay = float(cmd.get("delay", 0))
        c.sock.settimeout(float(cmd.get("timeout", 5)))
        if not chunk:
            c.sock.sendall(data)
        else:
            for i in range(0, len(data), chunk):
                c.sock.sendall(data[i : i + chunk])
                if delay:
                    time.sleep(delay)
        return {"sent": len(data)}

    def do_response(self, cmd):
        c = self.c(cmd)
        return c.read_response(cmd.get("method", "GET"), float(cmd.get("timeout", 5)))

    def do_recv(self, cmd):
        c = self.c(cmd)
        n = cmd.get("n")
        deadline = time.monotonic() + float(cmd.get("timeout", 5))
        closed = False
        err = None
        try:
            while n is None or len(c.buf) < n:
                c.fill(deadline)
        except EOFError:
            closed = True
        except socket.timeout:
            pass
        except OSError as e:
            err = repr(e)
            closed = True
        k = len(c.buf) if n is None else min(n, len(c.buf))
        data = bytes(c.buf[:k])
        del c.buf[:k]
        return {"data": b64(data), "closed": closed, "error": err}

    def do_wait_closed(self, cmd):
        c = self.c(cmd)
        t0 = time.monotonic()
        deadline = t0 + float(cmd.get("timeout", 5))
        closed = False
        err = None
        try:
            while True:
                c.fill(deadline)
        except EOFError:
            closed = True
        except socket.timeout:
            pass
        except OSError as e:
            closed = True
            err = repr(e)
        data = bytes(c.buf)
        del c.buf[:]
        return {"closed": closed, "after": time.monotonic() - t0, "data": b64(data), "error": err}

    def do_shutdown_wr(self, cmd):
        self.c(cmd).sock.shutdown(socket.SHUT_WR)
        return {}

    def do_close(self, cmd):
        c = self.conns.pop(cmd["id"], None)
        if c:
            c.sock.close()
        hc = self.hcs.pop(cmd["id"], None)
        if hc:
            hc.close()
        return {}

    def do_hc_open(self, cmd):
        old = self.hcs.pop(cmd["id"], None)
        if old:
            old.close()
        hc = http.client.HTTPConnection(cmd["host"], int(cmd["port"]), timeout=float(cmd.get("timeout", 5)))
        hc.auto_open = 0  # a silent reconnect would hide a dropped keep-alive connection
        hc.connect()
        self.hcs[cmd["id"]] = hc
        return {"peer": list(hc.sock.getpeername()[:2]), "local": list(hc.sock.getsockname()[:2])}

    def do_hc_request(self, cmd):
        hc = self.hcs[cmd["id"]]
        if hc.sock is None:
            raise ProtocolError("http.client connection %r was closed" % cmd["id"])
        local = list(hc.sock.getsockname()[:2])
        hc.putrequest(cmd.get("method", "GET"), cmd.get("path", "/"), skip_accept_encoding=True)
        body = unb64(cmd.get("body"))
        names = set()
        for k, v in cmd.get("headers", []):
            hc.putheader(k, v)
            names.add(k.lower())
        if body and "content-length" not in names and "transfer-encoding" not in names:
            hc.putheader("Content-Length", str(len(body)))
        hc.endheaders(body if body else None)
        r = hc.getresponse()
        data = r.read()
        return {"status": r.status, "reason": r.reason, "headers": [list(x) for x in r.getheaders()],
                "body": b64(data), "local": local, "will_close": r.will_close}

    def do_burst(self, cmd):
        timeout = float(cmd.get("req_timeout", 5))
        plans = cmd["plans"]
        results = [[] for _ in plans]
        start = threading.Barrier(len(plans))

        def run(i):
            out = results[i]
            hc = http.client.HTTPConnection(plans[i]["host"], int(plans[i]["port"]), timeout=timeout)
            hc.auto_open = 0
            try:
                err = None
                try:
                    hc.connect()
                except Exception as e:
                    err = e
                try:
                    start.wait(timeout)
                except threading.BrokenBarrierError:
                    pass
                if err is not None:
                    out.append({"error": "connect: %r" % err})
                    return
                for req in plans[i]["requests"]:
                    try:
                        local = list(hc.sock.getsockname()[:2]) if hc.sock else None
                        hc.putrequest("GET", req["path"], skip_accept_encoding=True)
                        for k, v in req.get("headers") or ():
                            hc.putheader(k, v)
                        hc.endheaders()
                        r = hc.getresponse()
                        body = r.read()
                    except Exception as e:
                        out.append({"error": "%s: %r" % (req["path"], e)})
                        return
                    out.append({"status": r.status, "pod": r.getheader("X-Pod"),
                                "body": body.decode("utf-8", "replace"), "local": local})
            finally:
                hc.close()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(plans))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + float(cmd.get("timeout", 60))
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            raise ProtocolError("burst: threads still running at the deadline")
        return {"results": results}

    def do_cgroup(self, cmd):
        with open("/proc/self/cgroup") as f:
            return {"cgroup": f.read()}

    def do_run(self, cmd):
        p = subprocess.run(cmd["argv"], capture_output=True, timeout=float(cmd.get("timeout", 20)))
        return {"rc": p.returncode, "stdout": b64(p.stdout), "stderr": b64(p.stderr)}

    def handle(self, cmd):
        fn = getattr(self, "do_" + cmd["op"], None)
        if fn is None:
            raise ProtocolError("unknown op %r" % cmd["op"])
        return fn(cmd)


def main():
    w = Worker()
    out = sys.stdout
    out.write(json.dumps({"ok": True, "ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        try:
            res = {"ok": True, **(w.handle(cmd) or {})}
        except Exception as e:  # reported to the test, which decides
            res = {"ok": False, "exc": type(e).__name__, "error": "%s: %s" % (type(e).__name__, e)}
        out.write(json.dumps(res) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
