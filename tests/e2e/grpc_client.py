#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""gRPC calls for the HTTP/2 tests, over ONE channel (one HTTP/2
connection), keyed and unkeyed interleaved; prints one JSON object with
where every call landed. Exit status 0 even when calls failed: the test
reads the report.

  grpc_client.py TARGET KEY mix N        N unary calls at once, every other one keyed
  grpc_client.py TARGET KEY mixfor S     mix 50, again and again for S seconds
  grpc_client.py TARGET KEY kinds        every call kind, keyed and unkeyed
  grpc_client.py TARGET KEY one [--key]  one unary call: its status and message
  grpc_client.py TARGET KEY deadline     a call past its deadline, then one that is not
  grpc_client.py TARGET KEY cancel       a server stream cancelled half-way, then a call
  grpc_client.py TARGET KEY slow MS N    N slow calls at once (for drain tests)
  grpc_client.py TARGET KEY relay N      N Relay calls one after the other, odd ones keyed
  grpc_client.py TARGET KEY late         5 keyed RelayLate calls at once (learning), 2.5 s,
                                         then 5 times: u-i unkeyed with a 50 ms deadline
                                         (RST_STREAM), a-i keyed 20 ms later
"""
import json
import sys
import threading
import time

import grpc

OPTS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
        ("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]


def main():
    target, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    ch = grpc.insecure_channel(target, options=OPTS)
    grpc.channel_ready_future(ch).result(timeout=10)
    keyed = (("baggage", "sd-routing-key=" + key),)
    m = {n: "/shunt.Test/" + n for n in ("Who", "Stream", "Collect", "Echo", "Big", "Slow")}
    who = ch.unary_unary(m["Who"])
    out = {"calls": []}

    def record(kind, k, pod=None, err=None, **extra):
        out["calls"].append(dict(kind=kind, keyed=k, pod=pod, err=err, **extra))

    def code(e):
        return "%s: %s" % (e.code().name, e.details())

    if mode == "mix":
        n = int(args[0])
        futs = [(i % 2 == 1, who.future(b"%d" % i, metadata=keyed if i % 2 else None, timeout=30))
                for i in range(n)]
        for k, f in futs:
            try:
                r = json.loads(f.result())
                record("unary", k, r["pod"], saw_key=r["baggage"] != "")
            except grpc.RpcError as e:
                record("unary", k, err=code(e))
    elif mode == "mixfor":
        end = time.monotonic() + float(args[0])
        while time.monotonic() < end:
            futs = [(i % 2 == 1, who.future(b"%d" % i, metadata=keyed if i % 2 else None, timeout=30))
                    for i in range(50)]
            for k, f in futs:
                try:
                    record("unary", k, json.loads(f.result())["pod"])
                except grpc.RpcError as e:
                    record("unary", k, err=code(e))
    elif mode == "kinds":
        for k in (False, True, False, True):
            md = keyed if k else None
            try:
                record("unary", k, json.loads(who(b"u", metadata=md, timeout=20))["pod"])
                msgs = list(ch.unary_stream(m["Stream"])(b"5", metadata=md, timeout=20))
                record("server-stream", k, msgs[0].split(b":")[0].decode(), count=len(msgs))
                r = json.loads(ch.stream_unary(m["Collect"])(iter([b"a" * 1000] * 50), metadata=md, timeout=20))
                record("client-stream", k, r["pod"], count=r["count"], bytes=r["bytes"])
                rs = list(ch.stream_stream(m["Echo"])(iter([b"p%d" % i for i in range(20)]), metadata=md, timeout=20))
                record("bidi", k, rs[0].split(b":")[0].decode(), count=len(rs),
                       ordered=[r.split(b":", 1)[1] for r in rs] == [b"p%d" % i for i in range(20)])
                size = 8 << 20
                big = ch.unary_unary(m["Big"])(b"%d" % size, metadata=md, timeout=30)
                record("large", k, json.loads(who(b"after-big", metadata=md, timeout=20))["pod"],
                       size=len(big), want=size)
            except grpc.RpcError as e:
                record("error", k, err=code(e))
    elif mode == "one":
        k = "--key" in args
        try:
            record("unary", k, json.loads(who(b"one", metadata=keyed if k else None, timeout=10))["pod"])
        except grpc.RpcError as e:
            record("unary", k, err=code(e))
    elif mode == "deadline":
        try:
            ch.unary_unary(m["Slow"])(b"3000", metadata=keyed, timeout=0.3)
            record("deadline", True, err="no deadline error")
        except grpc.RpcError as e:
            record("deadline", True, err=e.code().name)
        record("after", True, json.loads(who(b"after", metadata=keyed, timeout=10))["pod"])
    elif mode == "cancel":
        it = ch.unary_stream(m["Stream"])(b"100000", metadata=keyed, timeout=20)
        got = 0
        for _ in it:
            got += 1
            if got == 10:
                it.cancel()
                break
        record("cancel", True, got=got)
        record("after", False, json.loads(who(b"after", timeout=10))["pod"])
        record("after", True, json.loads(who(b"after", metadata=keyed, timeout=10))["pod"])
    elif mode == "slow":
        ms, n = args[0], int(args[1])
        slow = ch.unary_unary(m["Slow"])
        futs = [(i % 2 == 1, slow.future(ms.encode(), metadata=keyed if i % 2 else None, timeout=30))
                for i in range(n)]
        print("started", file=sys.stderr, flush=True)
        for k, f in futs:
            try:
                record("slow", k, f.result().decode())
            except grpc.RpcError as e:
                record("slow", k, err=code(e))
    elif mode == "relay":
        relay = ch.unary_unary("/shunt.Test/Relay")
        for i in range(int(args[0])):
            k = i % 2 == 1
            try:
                got = json.loads(relay(b"r%d" % i, metadata=keyed if k else None, timeout=10))
                record("relay", k, got["pod"], down=got["down"])
            except grpc.RpcError as e:
                record("relay", k, err=code(e))
            time.sleep(0.02)
    elif mode == "late":
        late = ch.unary_unary("/shunt.Test/RelayLate")

        def go(rid, ms, md, timeout):
            try:
                late(("%s:%d" % (rid, ms)).encode(), metadata=md, timeout=timeout)
                record("late", md is not None, rid)
            except grpc.RpcError as e:
                record("late", md is not None, rid, err=code(e))

        def together(calls):
            ts = []
            for delay, args in calls:
                time.sleep(delay)
                ts.append(threading.Thread(target=go, args=args))
                ts[-1].start()
            for t in ts:
                t.join()

        together([(0.01, ("l-%d" % i, 200, keyed, 10)) for i in range(5)])
        time.sleep(2.5)
        for i in range(5):
            together([(0, ("u-%d" % i, 300, None, 0.05)), (0.02, ("a-%d" % i, 400, keyed, 10))])
            time.sleep(0.3)
    else:
        sys.exit("grpc_client: unknown mode " + mode)
    ch.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
