#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""A gRPC server (python3-grpcio) for the HTTP/2 tests: every answer says
which pod gave it and the routing header it saw. Messages are raw bytes
(no protobuf): the tests need the transport, not a schema.

  shunt.Test/Who      unary: {"pod", "baggage", "n"} as JSON
  shunt.Test/Stream   server streaming: n messages (n = request as a number)
  shunt.Test/Collect  client streaming: {"pod", "count", "bytes"}
  shunt.Test/Echo     bidirectional: each message back, prefixed "pod:"
  shunt.Test/Big      unary: a message of the size asked for (bytes of 'x')
  shunt.Test/Slow     unary: answers after the asked number of milliseconds
  shunt.Test/Relay    unary (with --next): calls Who there WITHOUT passing on
                      the caller's metadata (an app that does not propagate),
                      answers {"pod", "baggage", "down": Who's answer}
  shunt.Test/RelayLate unary, request "RID:MS": sleeps MS ms, then as Relay,
                      whatever became of the caller (a handler goes on past
                      the client's deadline), and logs {"rid", "down"} to
                      --relay-log

--max-age-ms: the server sends GOAWAY on each connection that old.
"""
import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ready", required=True, help="file created once listening")
    ap.add_argument("--next", help="HOST:PORT whose Who Relay calls")
    ap.add_argument("--relay-log", help="RelayLate's log (JSON lines)")
    ap.add_argument("--max-age-ms", type=int, default=0,
                    help="send GOAWAY on every connection this old (in-flight calls finish)")
    a = ap.parse_args()
    name = a.name.encode()
    counter = {"n": 0}

    def md(ctx):
        return dict(ctx.invocation_metadata())

    def who(req, ctx):
        counter["n"] += 1
        return json.dumps({"pod": a.name, "baggage": md(ctx).get("baggage", ""), "req": req.decode(),
                           "n": counter["n"]}).encode()

    def stream(req, ctx):
        for i in range(int(req or b"3")):
            yield name + b":" + str(i).encode()

    def collect(it, ctx):
        count = size = 0
        for m in it:
            count += 1
            size += len(m)
        return json.dumps({"pod": a.name, "count": count, "bytes": size}).encode()

    def echo(it, ctx):
        for m in it:
            yield name + b":" + m

    def big(req, ctx):
        return b"x" * int(req)

    def slow(req, ctx):
        time.sleep(int(req) / 1000.0)
        return name

    down = grpc.insecure_channel(a.next, options=[("grpc.enable_http_proxy", 0)]) if a.next else None

    def relay(req, ctx):
        try:
            got = json.loads(down.unary_unary("/shunt.Test/Who")(req, timeout=10))
        except grpc.RpcError as e:
            got = {"error": "%s: %s" % (e.code().name, e.details())}
        return json.dumps({"pod": a.name, "baggage": md(ctx).get("baggage", ""), "down": got}).encode()

    relay_log = open(a.relay_log, "a") if a.relay_log else None
    log_lock = threading.Lock()

    def relay_late(req, ctx):
        rid, ms = req.decode().split(":")
        time.sleep(int(ms) / 1000.0)
        try:
            got = json.loads(down.unary_unary("/shunt.Test/Who")(rid.encode(), timeout=10))
        except grpc.RpcError as e:
            got = {"error": e.code().name}
        with log_lock:
            relay_log.write(json.dumps({"rid": rid, "down": got}) + "\n")
            relay_log.flush()
        return b"{}"

    handlers = {
        "Relay": grpc.unary_unary_rpc_method_handler(relay),
        "RelayLate": grpc.unary_unary_rpc_method_handler(relay_late),
        "Who": grpc.unary_unary_rpc_method_handler(who),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Echo": grpc.stream_stream_rpc_method_handler(echo),
        "Big": grpc.unary_unary_rpc_method_handler(big),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    if a.max_age_ms:
        opts += [("grpc.max_connection_age_ms", a.max_age_ms), ("grpc.max_connection_age_grace_ms", 10000)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=opts)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shunt.Test", handlers),))
    if not server.add_insecure_port("[::]:%d" % a.port):
        sys.exit("grpc_server: cannot listen on port %d" % a.port)
    server.start()
    open(a.ready, "w").close()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
