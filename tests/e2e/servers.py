# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Test upstream servers for the shunt end-to-end suite.

Runs inside a pod network namespace (started by node.py through nsenter).
Written on raw sockets so that the tests control and see every byte.

HTTP mode (default):
    servers.py --name baseline --port 8080 --log FILE [--ready FILE]

  Every response carries "X-Pod: <name>" and "X-Peer: ip:port". Unless a
  path says otherwise the body is JSON:
    {"pod","method","path","headers":[[k,v]...],"body_len","body_sha256",
     "peer","conn_seq"}
  Paths:
    /status/N      answer with status N (204 and 304 without a body)
    /chunked       chunked response (several chunks and a trailer)
    /close         "Connection: close", then the server closes
    /ws            Upgrade -> 101, then echoes raw bytes until EOF
    /slow?ms=N     wait N ms before answering
    /big?bytes=N   N bytes of a fixed pattern (&chunked=1 for chunked)
    /echo          the request body back (&chunked=1 for chunked)
    /truncate      promises Content-Length: 1000, sends 10 bytes and closes
    /stall?ms=N    Content-Length: 20, sends 10 bytes, waits N ms (10000), sends the rest
    /early         an interim 103 Early Hints before the answer
    /eof-body      a body delimited by the connection's end (no length, not chunked)
  Any method; HEAD answers like GET without a body. Keep-alive,
  Content-Length and chunked request bodies, Expect: 100-continue (the
  interim 100 is sent before the body is read).

  Chain mode (--next HOST:PORT, --next6 [HOST]:PORT): the server is one hop
  of a call chain, an app that calls the next service for each request:
    /chain...      calls the next service (--next6 with ?af=6 in the target,
                   else --next) with the same target, forwarding every
                   incoming baggage header line unchanged, on a keep-alive
                   connection of its own per incoming connection (tried
                   once more on a new one if the old one was closed); answers
                   {"pod","path","hops","baggage","next","next_reused",
                    "next_retried","next_local"}
                   where hops is [name] + the next hop's hops. The end of a
                   chain (no next) answers hops [name]. A failed call, or
                   an answer for another path, answers 502 with hops
                   [name, "error: ..."].
  Run it in the test cgroup so its outbound connect()s are captured.

  The log gets one JSON line per event:
    {"event":"accept","peer"}                       a connection came in
    {"event":"request","method","path","headers","body_len","body_sha256","peer"}
    {"event":"error","peer","detail","data"}        bytes that did not parse
    {"event":"close","peer","requests"}             the connection ended
    {"event":"chain","path","next","status","hops","reused","retried","local"}  a call to the next hop

Echo mode:
    servers.py --echo --name echo --port 9000 --log FILE
  echoes every byte back; logs accept and close (with the byte count).
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

MAX_HEAD = 1 << 20
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Log:
    def __init__(self, path, pod):
        self.pod = pod
        self.lock = threading.Lock()
        self.f = open(path, "a", buffering=1) if path else None

    def write(self, **ev):
        ev = {"t": round(time.time(), 6), "pod": self.pod, **ev}
        line = json.dumps(ev, separators=(",", ":")) + "\n"
        if self.f:
            with self.lock:
                self.f.write(line)
                self.f.flush()


def peer_str(addr):
    host, port = addr[0], addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


class BadRequest(Exception):
    pass


class Eof(Exception):
    pass


def pattern_bytes(n):
    unit = bytes(range(256)) * 64  # 16 KiB, every byte value
    reps = n // len(unit) + 1
    return (unit * reps)[:n]


class HttpConn:
    def __init__(self, sock, peer, args, log):
        self.sock = sock
        self.peer = peer
        self.args = args
        self.log = log
        self.buf = bytearray()
        self.seq = 0
        self.next_conns = {}  # address family -> keep-alive HTTPConnection to the next hop

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Eof()
        self.buf += data

    def read_until(self, delim, limit):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise BadRequest("line/head too long")
            start = max(0, len(self.buf) - len(delim) + 1)
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send(self, data):
        self.sock.sendall(data)

    def read_head(self):
        # Skip empty lines between requests (RFC 9112 2.2 allows a leading CRLF).
        while self.buf[:2] == b"\r\n":
            del self.buf[:2]
        if not self.buf:
            self.fill()
            while self.buf[:2] == b"\r\n":
                del self.buf[:2]
        head = self.read_until(b"\r\n\r\n", MAX_HEAD)
        lines = head[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            raise BadRequest("bad request line %r" % lines[0][:200])
        if not version.startswith("HTTP/1."):
            raise BadRequest("bad version %r" % version)
        headers = []
        for ln in lines[1:]:
            if b"\n" in ln or b"\r" in ln:
                raise BadRequest("bare CR/LF in header")
            if ln[:1] in (b" ", b"\t"):
                raise BadRequest("obs-fold")
            name, sep, value = ln.partition(b":")
            if not sep or not name or name != name.strip():
                raise BadRequest("bad header line %r" % ln[:200])
            headers.append([name.decode("latin-1"), value.strip(b" \t").decode("latin-1")])
        return method, target, version, headers

    def read_body(self, headers, expect_continue):
        te = [v for k, v in headers if k.lower() == "transfer-encoding"]
        cl = [v for k, v in headers if k.lower() == "content-length"]
        if te and cl:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if te:
            if te[-1].lower().split(",")[-1].strip() != "chunked":
                raise BadRequest("unsupported transfer-encoding %r" % te)
            if expect_continue:
                self.send(b"HTTP/1.1 100 Continue\r\nX-Pod: %s\r\n\r\n" % self.args.name.encode())
            body = bytearray()
            while True:
                line = self.read_until(b"\r\n", 4096)[:-2]
                size_s = line.split(b";")[0].strip()
                try:
                    size = int(size_s, 16)
                except ValueError:
                    raise BadRequest("bad chunk size %r" % line[:100])
                if size == 0:
                    # trailers
                    while True:
                        t = self.read_until(b"\r\n", 65536)
                        if t == b"\r\n":
                            break
                    return bytes(body)
                body += self.read_exact(size)
                if self.read_exact(2) != b"\r\n":
                    raise BadRequest("chunk not followed by CRLF")
        if cl:
            if len(set(v.strip() for v in cl)) != 1 or not cl[0].strip().isdigit():
                raise BadRequest("bad Content-Length %r" % cl)
            n = int(cl[0])
            if n and expect_continue:
                self.send(b"HTTP/1.1 100 Continue\r\nX-Pod: %s\r\n\r\n" % self.args.name.encode())
            return self.read_exact(n)
        return b""

    def respond(self, status, reason, headers, body, head_only=False, chunked=False, trailers=None, close=False):
        hs = [("X-Pod", self.args.name), ("X-Peer", self.peer), ("X-Conn-Seq", str(self.seq))]
        hs += headers
        if close:
            hs.append(("Connection", "close"))
        no_body = status in (204, 304) or 100 <= status < 200
        if chunked and not no_body:
            hs.append(("Transfer-Encoding", "chunked"))
        elif not no_body:
            hs.append(("Content-Length", str(len(body))))
        out = bytearray(b"HTTP/1.1 %d %s\r\n" % (status, reason.encode()))
        for k, v in hs:
            out += b"%s: %s\r\n" % (k.encode(), v.encode())
        out += b"\r\n"
        if not head_only and not no_body:
            if chunked:
                # Uneven chunk sizes so a proxy that re-chunks or mis-frames shows.
                sizes = [1, 7, 100, 4096]
                i = 0
                k = 0
                while i < len(body):
                    n = sizes[k % len(sizes)]
                    k += 1
                    part = body[i : i + n]
                    out += b"%x\r\n" % len(part) + part + b"\r\n"
                    i += n
                out += b"0\r\n"
                for tk, tv in trailers or []:
                    out += b"%s: %s\r\n" % (tk.encode(), tv.encode())
                out += b"\r\n"
            else:
                out += body
        self.send(bytes(out))

    def serve(self):
        while True:
            try:
                method, target, version, headers = self.read_head()
            except Eof:
                if self.buf:
                    self.log.write(event="error", peer=self.peer, detail="eof inside head",
                                   data=base64.b64encode(bytes(self.buf[:512])).decode())
                return
            except BadRequest as e:
                self.log.write(event="error", peer=self.peer, detail=str(e),
                               data=base64.b64encode(bytes(self.buf[:512])).decode())
                self.send(b"HTTP/1.1 400 Bad Request\r\nX-Pod: %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                          % self.args.name.encode())
                return
            hmap = {}
            for k, v in headers:
                hmap.setdefault(k.lower(), []).append(v)
            expect = any(v.lower() == "100-continue" for v in hmap.get("expect", []))
            try:
                body = self.read_body(headers, expect)
            except Eof:
                self.log.write(event="error", peer=self.peer, detail="eof inside body of %s %s" % (method, target),
                               headers=headers, data=base64.b64encode(bytes(self.buf[:512])).decode())
                return
            except BadRequest as e:
                self.log.write(event="error", peer=self.peer, detail=str(e), headers=headers,
                               data=base64.b64encode(bytes(self.buf[:512])).decode())
                self.send(b"HTTP/1.1 400 Bad Request\r\nX-Pod: %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                          % self.args.name.encode())
                return
            self.seq += 1
            sha = hashlib.sha256(body).hexdigest()
            self.log.write(event="request", method=method, path=target, version=version, headers=headers,
                           body_len=len(body), body_sha256=sha, peer=self.peer, conn_seq=self.seq)
            conn_tokens = ",".join(hmap.get("connection", [])).lower()
            close = "close" in conn_tokens or (version == "HTTP/1.0" and "keep-alive" not in conn_tokens)
            if not self.handle(method, target, version, headers, hmap, body, sha, close):
                return
            if close:
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return

    def handle(self, method, target, version, headers, hmap, body, sha, close):
        """Answer one request; return False when the connection is done."""
        u = urllib.parse.urlsplit(target)
        q = dict(urllib.parse.parse_qsl(u.query))
        path = u.path
        head_only = method == "HEAD"
        info = {"pod": self.args.name, "method": method, "path": target, "headers": headers,
                "body_len": len(body), "body_sha256": sha, "peer": self.peer, "conn_seq": self.seq}
        jbody = json.dumps(info).encode()
        jh = [("Content-Type", "application/json")]
        if path.startswith("/slow"):
            time.sleep(int(q.get("ms", "100")) / 1000.0)
        if path.startswith("/chain"):
            self.chain(target, q.get("af") == "6", hmap, head_only, close)
            return True
        if path.startswith("/status/"):
            try:
                code = int(path.split("/")[2])
            except ValueError:
                code = 400
            self.respond(code, "Status", jh, jbody, head_only=head_only, close=close)
            return True
        if path == "/chunked":
            self.respond(200, "OK", jh, jbody, head_only=head_only, chunked=True,
                         trailers=[("X-Trailer", "done")], close=close)
            return True
        if path == "/close":
            self.respond(200, "OK", jh, jbody, head_only=head_only, close=True)
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return False
        if path == "/early":
            # Interim 103 Early Hints, then the real answer.
            self.send(b"HTTP/1.1 103 Early Hints\r\nX-Pod: %s\r\nLink: </style.css>; rel=preload\r\n\r\n"
                      % self.args.name.encode())
            self.respond(200, "OK", jh, jbody, head_only=head_only, close=close)
            return True
        if path == "/eof-body":
            # No Content-Length, not chunked: the body ends when the connection does.
            self.send(b"HTTP/1.1 200 OK\r\nX-Pod: %s\r\nConnection: close\r\n\r\n" % self.args.name.encode()
                      + (b"" if head_only else b"until-eof:" + jbody))
            self.sock.shutdown(socket.SHUT_WR)
            return False
        if path == "/truncate":
            # Promise more than we send, then close: a broken upstream.
            self.send(b"HTTP/1.1 200 OK\r\nX-Pod: %s\r\nContent-Length: 1000\r\n\r\n0123456789"
                      % self.args.name.encode())
            return False
        if path == "/stall":
            # Half a response, then nothing for ms: a stalled upstream.
            self.send(b"HTTP/1.1 200 OK\r\nX-Pod: %s\r\nContent-Length: 20\r\n\r\n0123456789"
                      % self.args.name.encode())
            time.sleep(int(q.get("ms", "10000")) / 1000.0)
            self.send(b"0123456789")
            return True
        if path == "/big":
            data = pattern_bytes(int(q.get("bytes", "1048576")))
            self.respond(200, "OK", [("Content-Type", "application/octet-stream"),
                                     ("X-Body-Sha256", hashlib.sha256(data).hexdigest())],
                         data, head_only=head_only, chunked=q.get("chunked") == "1", close=close)
            return True
        if path == "/echo":
            self.respond(200, "OK", [("Content-Type", "application/octet-stream"), ("X-Body-Sha256", sha)],
                         body, head_only=head_only, chunked=q.get("chunked") == "1", close=close)
            return True
        if path == "/ws":
            if "upgrade" not in hmap:
                self.respond(426, "Upgrade Required", jh, jbody, head_only=head_only, close=close)
                return True
            hs = [("Upgrade", hmap["upgrade"][0]), ("Connection", "Upgrade")]
            key = hmap.get("sec-websocket-key")
            if key:
                acc = base64.b64encode(hashlib.sha1((key[0] + WS_GUID).encode()).digest()).decode()
                hs.append(("Sec-WebSocket-Accept", acc))
            out = b"HTTP/1.1 101 Switching Protocols\r\nX-Pod: %s\r\nX-Peer: %s\r\n" % (
                self.args.name.encode(), self.peer.encode())
            for k, v in hs:
                out += b"%s: %s\r\n" % (k.encode(), v.encode())
            out += b"\r\n"
            self.send(out)
            # Anything the client sent after the head is tunnel data already.
            if self.buf:
                self.send(bytes(self.buf))
                del self.buf[:]
            echo_loop(self.sock)
            return False
        self.respond(200, "OK", jh, jbody, head_only=head_only, close=close)
        return True


    def chain(self, target, v6, hmap, head_only, close):
        """One hop of a call chain: ask the next service, answer with the path."""
        nxt = self.args.next6 if v6 else self.args.next
        baggage = hmap.get("baggage", [])
        out = {"pod": self.args.name, "path": target, "hops": [self.args.name], "baggage": baggage, "next": nxt}
        status = 200
        if nxt:
            fam = 6 if v6 else 4
            hc = self.next_conns.get(fam)
            if hc is None:
                host, port = split_hostport(nxt)
                hc = self.next_conns[fam] = http.client.HTTPConnection(host, port, timeout=5)
            reused = hc.sock is not None
            local = None
            retried = False
            while True:
                try:
                    if hc.sock is None:
                        hc.connect()
                    local = peer_str(hc.sock.getsockname())
                    hc.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
                    hc.putheader("Host", nxt)
                    for v in baggage:  # every line, unchanged, as an OpenTelemetry propagator would
                        hc.putheader("baggage", v)
                    hc.putheader("X-Chain-From", self.args.name)
                    hc.endheaders()
                    r = hc.getresponse()
                    body = r.read()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                    hc.close()
                    if reused and not retried:
                        # An idle keep-alive connection closed by the other
                        # end: like any HTTP client, try once on a new one.
                        retried = True
                        continue
                    out["hops"].append("error: %s: %r" % (nxt, e))
                    status = 502
                    break
                except (OSError, http.client.HTTPException) as e:
                    hc.close()
                    out["hops"].append("error: %s: %r" % (nxt, e))
                    status = 502
                    break
                try:
                    down = json.loads(body) if r.getheader("Content-Type") == "application/json" else {}
                except ValueError:
                    down = {}
                if down.get("path") not in (None, target):
                    # Crossed wires: the answer to some other request.
                    out["hops"].append("error: %s answered %r, not %r" % (nxt, down["path"], target))
                    status = 502
                    break
                out["hops"] += down.get("hops") or ["error: status %d from %s: %r" % (r.status, nxt, body[:200])]
                if r.status != 200:
                    status = 502
                break
            out.update(next_reused=reused, next_local=local, next_retried=retried)
            self.log.write(event="chain", path=target, next=nxt, status=status, hops=out["hops"],
                           reused=reused, retried=retried, local=local)
        self.respond(status, "OK" if status == 200 else "Bad Gateway", [("Content-Type", "application/json")],
                     json.dumps(out).encode(), head_only=head_only, close=close)


def split_hostport(s):
    """'10.0.0.1:80' or '[fd00::1]:80' -> (host, port)."""
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def echo_loop(sock):
    total = 0
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            break
        if not data:
            break
        total += len(data)
        try:
            sock.sendall(data)
        except OSError:
            break
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    return total


def serve_conn(sock, addr, args, log):
    peer = peer_str(addr)
    log.write(event="accept", peer=peer)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.echo:
            total = echo_loop(sock)
            log.write(event="close", peer=peer, bytes=total)
        else:
            hc = HttpConn(sock, peer, args, log)
            try:
                hc.serve()
            finally:
                for nc in hc.next_conns.values():
                    nc.close()
                log.write(event="close", peer=peer, requests=hc.seq)
    except OSError as e:
        log.write(event="conn-error", peer=peer, detail=repr(e))
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log")
    ap.add_argument("--ready")
    ap.add_argument("--echo", action="store_true")
    ap.add_argument("--next", help="chain mode: the next service, HOST:PORT")
    ap.add_argument("--next6", help="chain mode: the next service for ?af=6, [HOST]:PORT")
    args = ap.parse_args()

    log = Log(args.log, args.name)
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::", args.port))
    ls.listen(128)
    if args.ready:
        tmp = args.ready + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(tmp, args.ready)
    print("ready", flush=True)
    while True:
        sock, addr = ls.accept()
        t = threading.Thread(target=serve_conn, args=(sock, addr, args, log), daemon=True)
        t.start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
