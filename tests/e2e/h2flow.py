#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""A raw HTTP/2 client for the flow-control tests: on ONE connection it
opens streams that it never reads (their windows stay shut after 64 KiB)
next to streams it reads in full, and reports what each got. The
connection window is kept wide open, so only stream windows hold anything
back. Prints one JSON object: {"streams": {id: {"path", "keyed", "bytes",
"ended", "body"}}}.

  h2flow.py HOST:PORT KEY STALLED
      STALLED keyed /big streams never read; beside them /big keyed and
      unkeyed, /who keyed and unkeyed, read to the end. With --hold S the
      connection stays open S seconds after that (prints "read" to stderr
      first), so the caller can look at the proxy meanwhile.
"""
import json
import socket
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def literal(fields):
    """Literal header fields without indexing (RFC 7541 6.2.2)."""
    out = b""
    for name, value in fields:
        n, v = name.encode(), value.encode()
        out += b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v
    return out


def window_update(sid, n):
    return frame(8, 0, sid, n.to_bytes(4, "big"))


def main():
    target, key, stalled = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hold = float(sys.argv[sys.argv.index("--hold") + 1]) if "--hold" in sys.argv else 0
    host, port = target.rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=20)
    out = PREFACE + frame(4, 0, 0, b"") + window_update(0, (1 << 31) - 1 - 65535)
    streams, sid = {}, 1
    plan = [("/big", True, False)] * stalled + [("/big", True, True), ("/big", False, True),
                                                ("/who", True, True), ("/who", False, True)]
    for path, keyed, read in plan:
        fields = [(":method", "GET"), (":scheme", "http"), (":authority", target), (":path", path)]
        if keyed:
            fields.append(("baggage", "sd-routing-key=" + key))
        out += frame(1, 0x05, sid, literal(fields))
        streams[sid] = {"path": path, "keyed": keyed, "read": read, "bytes": 0, "ended": False, "body": b""}
        sid += 2
    s.sendall(out)
    buf = b""
    deadline = time.monotonic() + 20

    def done():
        return all(st["ended"] for st in streams.values() if st["read"])

    while not done() and time.monotonic() < deadline:
        data = s.recv(1 << 20)
        if not data:
            break
        buf += data
        while len(buf) >= 9:
            ln = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + ln:
                break
            ftype, flags, fsid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9:9 + ln], buf[9 + ln:]
            st = streams.get(fsid)
            if ftype == 4 and not flags & 1:
                s.sendall(frame(4, 1, 0, b""))  # SETTINGS ACK
            elif ftype == 6 and not flags & 1:
                s.sendall(frame(6, 1, 0, payload))  # PING ACK
            elif ftype == 0 and st is not None:
                st["bytes"] += ln
                if len(st["body"]) < 64:
                    st["body"] += payload[:64]
                if ln:
                    # The connection window always; the stream's only when read.
                    s.sendall(window_update(0, ln) + (window_update(fsid, ln) if st["read"] else b""))
                st["ended"] = st["ended"] or bool(flags & 1)
            elif ftype == 1 and st is not None and flags & 1:
                st["ended"] = True
            elif ftype == 3 and st is not None:
                st["ended"] = True
                st["reset"] = int.from_bytes(payload, "big")
            elif ftype == 7:
                print(json.dumps({"error": "GOAWAY %d" % int.from_bytes(payload[4:8], "big")}))
                return
    if hold:
        print("read", file=sys.stderr, flush=True)
        time.sleep(hold)
    res = {}
    for k, st in streams.items():
        st["body"] = st["body"].decode("latin-1") if st["path"] == "/who" else ""
        del st["read"]
        res[k] = st
    print(json.dumps({"streams": res}))


if __name__ == "__main__":
    main()
