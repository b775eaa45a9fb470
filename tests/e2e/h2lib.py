# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Minimal raw HTTP/2 helpers for the review tests: frames, literal HPACK
# encoding, HPACK decoding through libnghttp2 (ctypes).
import ctypes
import ctypes.util
import socket
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINUP, CONT = range(10)
ES, EH, PADDED, PRIO = 0x1, 0x4, 0x8, 0x20


def frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, 1 if ack else 0, 0, b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in pairs))


def winup(stream, n):
    return frame(WINUP, 0, stream, n.to_bytes(4, "big"))


def rst(stream, code):
    return frame(RST, 0, stream, code.to_bytes(4, "big"))


def goaway(last, code=0):
    return frame(GOAWAY, 0, 0, last.to_bytes(4, "big") + code.to_bytes(4, "big"))


def _int(v, prefix, first=0):
    mx = (1 << prefix) - 1
    if v < mx:
        return bytes([first | v])
    out = [first | mx]
    v -= mx
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def hpack(fields):
    out = b""
    for name, value in fields:
        n = name.encode() if isinstance(name, str) else name
        v = value.encode() if isinstance(value, str) else value
        out += b"\x00" + _int(len(n), 7) + n + _int(len(v), 7) + v
    return out


class NV(ctypes.Structure):
    _fields_ = [("name", ctypes.POINTER(ctypes.c_uint8)), ("value", ctypes.POINTER(ctypes.c_uint8)),
                ("namelen", ctypes.c_size_t), ("valuelen", ctypes.c_size_t), ("flags", ctypes.c_uint8)]


_lib = ctypes.CDLL(ctypes.util.find_library("nghttp2") or "libnghttp2.so.14")
_lib.nghttp2_hd_inflate_hd2.restype = ctypes.c_ssize_t
_lib.nghttp2_hd_inflate_hd2.argtypes = [ctypes.c_void_p, ctypes.POINTER(NV), ctypes.POINTER(ctypes.c_int),
                                        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]


class Decoder:
    def __init__(self):
        self.p = ctypes.c_void_p()
        assert _lib.nghttp2_hd_inflate_new(ctypes.byref(self.p)) == 0

    def decode(self, block):
        out = []
        nv = NV()
        fl = ctypes.c_int()
        while True:
            fl.value = 0
            r = _lib.nghttp2_hd_inflate_hd2(self.p, ctypes.byref(nv), ctypes.byref(fl), block, len(block), 1)
            if r < 0:
                raise ValueError("hpack error %d" % r)
            block = block[r:]
            if fl.value & 2:
                out.append((ctypes.string_at(nv.name, nv.namelen).decode(),
                            ctypes.string_at(nv.value, nv.valuelen).decode("latin1")))
            if fl.value & 1:
                _lib.nghttp2_hd_inflate_end_headers(self.p)
                break
            if r == 0 and not block:
                break
        return out


class Conn:
    """A raw HTTP/2 connection (either side) over a socket, frame at a time."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.dec = Decoder()
        self.hb = {}  # stream -> partial header block

    def send(self, data):
        self.s.sendall(data)

    def read_frame(self, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                ln = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + ln:
                    hd, self.buf = self.buf[:9 + ln], self.buf[9 + ln:]
                    return hd[3], hd[4], int.from_bytes(hd[5:9], "big") & 0x7FFFFFFF, hd[9:]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame in %.1fs" % timeout)
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                raise TimeoutError("no frame in %.1fs" % timeout)
            if not d:
                raise EOFError("closed")
            self.buf += d

    def events(self, timeout=5):
        """Frames as events, header blocks decoded (CONTINUATION joined):
        (type, flags, stream, payload-or-fields)."""
        while True:
            t, fl, sid, p = self.read_frame(timeout)
            if t in (HEADERS, PUSH):
                if fl & PADDED:
                    pad = p[0]
                    p = p[1:len(p) - pad]
                if t == HEADERS and fl & PRIO:
                    p = p[5:]
                if t == PUSH:
                    p = p[4:]
                if not fl & EH:
                    self.hb[sid] = (t, fl, p)
                    continue
                return t, fl, sid, self.dec.decode(p)
            if t == CONT:
                t0, fl0, p0 = self.hb.pop(sid)
                p0 += p
                if not fl & EH:
                    self.hb[sid] = (t0, fl0, p0)
                    continue
                return t0, fl0, sid, self.dec.decode(p0)
            if t == DATA and fl & PADDED:
                pad = p[0]
                p = p[1:len(p) - pad]
            return t, fl, sid, p
