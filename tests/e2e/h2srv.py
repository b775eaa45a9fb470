# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A scriptable raw HTTP/2 server for the review tests. Behaviour by :path.
import argparse
import json
import socket
import sys
import threading
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
import h2lib as H  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--name", default="raw")
ap.add_argument("--mcs", type=int, default=None)
ap.add_argument("--log", default=None)
ap.add_argument("--no-settings", action="store_true")
ap.add_argument("--reset-first", type=int, default=0)
args = ap.parse_args()
loglock = threading.Lock()


def log(**kw):
    if args.log:
        with loglock, open(args.log, "a") as f:
            f.write(json.dumps(kw) + "\n")


def hdrs(sid, fields, end=False):
    return H.frame(H.HEADERS, H.EH | (H.ES if end else 0), sid, H.hpack(fields))


def serve(sock, cid):
    c = H.Conn(sock)
    wlock = threading.Lock()

    def send(b):
        with wlock:
            c.send(b)

    try:
        pre = b""
        while len(pre) < 24:
            d = sock.recv(24 - len(pre))
            if not d:
                return
            pre += d
        if not args.no_settings:
            st = [(4, 1 << 20)]
            if args.mcs is not None:
                st.append((3, args.mcs))
            send(H.settings(*st) + H.winup(0, 1 << 24))
        streams = {}
        while True:
            t, fl, sid, p = c.events(timeout=3600)
            if t == H.SETTINGS and not fl & 1:
                send(H.settings(ack=True))
            elif t == H.PING and not fl & 1:
                send(H.frame(H.PING, 1, 0, p))
            elif t == H.HEADERS:
                if sid not in streams:
                    f = dict(p)
                    streams[sid] = {"path": f.get(":path", ""), "body": 0, "fields": p, "trl": None}
                    log(ev="req", conn=cid, sid=sid, path=f.get(":path"), end=bool(fl & H.ES),
                        key=f.get("baggage"))
                    on_headers(send, sid, streams[sid], sock)
                else:
                    streams[sid]["trl"] = p
                    log(ev="trailers", conn=cid, sid=sid, fields=p)
                if fl & H.ES:
                    on_end(send, sid, streams[sid], sock)
            elif t == H.DATA:
                st = streams.get(sid)
                if p:
                    if not (st and st["path"].startswith("/noread")):
                        send(H.winup(sid, len(p)))
                    send(H.winup(0, len(p)))
                if st:
                    st["body"] += len(p)
                    if fl & H.ES:
                        on_end(send, sid, st, sock)
            elif t == H.RST:
                log(ev="rst", conn=cid, sid=sid, code=int.from_bytes(p, "big"))
            elif t == H.GOAWAY:
                log(ev="goaway", conn=cid)
    except (EOFError, ConnectionError, OSError, TimeoutError):
        pass
    finally:
        log(ev="closed", conn=cid)
        try:
            sock.close()
        except OSError:
            pass


def on_headers(send, sid, st, sock):
    path = st["path"]
    if path.startswith("/early"):
        send(hdrs(sid, [(":status", "200")]) + H.frame(H.DATA, H.ES, sid, b"early\n") + H.rst(sid, 0))
    elif path.startswith("/refuse"):
        send(H.rst(sid, 7))


def on_end(send, sid, st, sock):
    path = st["path"]
    body = (args.name + "\n").encode()
    if path.startswith("/hold") or path.startswith("/early") or path.startswith("/refuse"):
        return
    if path.startswith("/interim"):
        send(hdrs(sid, [(":status", "103"), ("link", "</a.css>; rel=preload")]))
        send(hdrs(sid, [(":status", "200"), ("content-type", "text/plain")]) + H.frame(H.DATA, 0, sid, body)
             + hdrs(sid, [("x-trl", "yes")], end=True))
    elif path.startswith("/trailers"):
        send(hdrs(sid, [(":status", "200")]) + H.frame(H.DATA, 0, sid, body) + hdrs(sid, [("x-trl", "yes")], end=True))
    elif path.startswith("/trlonly"):
        send(hdrs(sid, [(":status", "200")]) + hdrs(sid, [("x-trl", "only")], end=True))
    elif path.startswith("/closemid"):
        send(hdrs(sid, [(":status", "200")]) + H.frame(H.DATA, 0, sid, b"part"))
        time.sleep(0.2)
        sock.shutdown(socket.SHUT_RDWR)
    elif path.startswith("/rstmid"):
        send(hdrs(sid, [(":status", "200")]) + H.frame(H.DATA, 0, sid, b"part") + H.rst(sid, 2))
    elif path.startswith("/goaway"):
        send(H.goaway(sid) + hdrs(sid, [(":status", "200")]) + H.frame(H.DATA, H.ES, sid, body))
    elif path.startswith("/echo") or path.startswith("/noread"):
        trl = json.dumps(st["trl"]).encode() if st["trl"] else b"-"
        send(hdrs(sid, [(":status", "200")]) + H.frame(H.DATA, H.ES, sid, b"%d %s\n" % (st["body"], trl)))
    elif path.startswith("/head"):
        send(hdrs(sid, [(":status", "200"), ("content-length", "1234")], end=True))
    else:
        send(hdrs(sid, [(":status", "200"), ("content-length", str(len(body)))]) + H.frame(H.DATA, H.ES, sid, body))


s = socket.socket(socket.AF_INET6 if False else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", args.port))
s.listen(128)
n = 0
while True:
    a, _ = s.accept()
    n += 1
    log(ev="accept", conn=n)
    if n <= args.reset_first:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        a.close()
        continue
    threading.Thread(target=serve, args=(a, n), daemon=True).start()
