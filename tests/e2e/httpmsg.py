# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""HTTP/1.1 messages as the tests write and read them: byte-exact requests
and the parsed responses the client pod sends back."""

import base64
import hashlib
import json


def build_request(method="GET", path="/", headers=(), body=b"", chunked=False, host="svc",
                  version="HTTP/1.1", chunk_sizes=(3, 1000, 17), content_length=True, trailers=()):
    """Request bytes. headers is a list of (name, value); Host is added
    unless given (host=None leaves it out). With chunked=True the body is
    sent in chunks of the given sizes (cycled)."""
    if isinstance(body, str):
        body = body.encode()
    hs = list(headers)
    names = {k.lower() for k, _ in hs}
    if host is not None and "host" not in names:
        hs.insert(0, ("Host", host))
    if chunked:
        if "transfer-encoding" not in names:
            hs.append(("Transfer-Encoding", "chunked"))
    elif body and content_length and "content-length" not in names:
        hs.append(("Content-Length", str(len(body))))
    out = bytearray(("%s %s %s\r\n" % (method, path, version)).encode("latin-1"))
    for k, v in hs:
        out += ("%s: %s\r\n" % (k, v)).encode("latin-1")
    out += b"\r\n"
    if chunked:
        i = 0
        k = 0
        while i < len(body):
            n = chunk_sizes[k % len(chunk_sizes)]
            k += 1
            part = body[i : i + n]
            out += b"%x\r\n" % len(part) + part + b"\r\n"
            i += n
        out += b"0\r\n"
        for tk, tv in trailers:
            out += ("%s: %s\r\n" % (tk, tv)).encode("latin-1")
        out += b"\r\n"
    else:
        out += body
    return bytes(out)


def key_header(key, fmt="baggage"):
    """The header carrying a routing key in one of the supported formats."""
    if fmt == "baggage":
        return ("baggage", "sd-routing-key=%s" % key)
    if fmt == "tracestate":
        return ("tracestate", "sd-routing-key=%s" % key)
    if fmt == "ot":
        return ("ot-baggage-sd-routing-key", key)
    if fmt == "uber":
        return ("uberctx-sd-routing-key", key)
    raise ValueError(fmt)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Response:
    def __init__(self, d):
        self.raw = d
        self.status = d["status"]
        self.reason = d.get("reason", "")
        self.headers = [tuple(h) for h in d.get("headers", [])]
        self.trailers = [tuple(h) for h in d.get("trailers", [])]
        self.body = base64.b64decode(d.get("body") or "")
        self.framing = d.get("framing")
        self.local = d.get("local")
        self.will_close = d.get("will_close")

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def pod(self):
        return self.header("X-Pod")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("response body is not JSON: %r" % self.body[:300])

    def __repr__(self):
        return "<Response %d pod=%s %d body bytes: %r>" % (self.status, self.pod, len(self.body), self.body[:160])
