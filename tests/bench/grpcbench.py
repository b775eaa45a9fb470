#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""gRPC unary server and client for `make bench` (python3-grpcio, asyncio
API: the fastest the Python package gets). Messages are raw bytes, no
protobuf: the bench measures the transport and the proxies, not a schema.

  grpcbench.py serve --name POD --ports P[,P...] --ready FILE
      /shunt.Bench/Who    answers the pod name (every call of the load)
      /shunt.Bench/Peer   {"pod", "peer"} as JSON: the address the server saw
      /shunt.Bench/Count  how many Who calls it has answered, as a number

  grpcbench.py run TARGET N CONCURRENCY WARMUP [BAGGAGE]
      one channel (one HTTP/2 connection), WARMUP calls then N unary Who
      calls with CONCURRENCY of them in flight at any time, each with
      "baggage: BAGGAGE" when given; prints one JSON object: the pod and
      peer of a first Peer call, per-call latencies (lat_ns, sorted) and
      their percentiles, req/s, the pods that answered, failures.
"""
import asyncio
import json
import signal
import sys
import time

import grpc

OPTS = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0), ("grpc.so_reuseport", 0)]


async def serve(name, ports, ready):
    pod = name.encode()
    count = [0]

    async def who(req, ctx):
        count[0] += 1
        return pod

    async def peer(req, ctx):
        p = ctx.peer()  # "ipv4:10.211.0.40:40000" or "ipv6:[fd00:211::40]:40000"
        host = p.split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
        return json.dumps({"pod": name, "peer": host}).encode()

    async def counter(req, ctx):
        return str(count[0]).encode()

    handlers = {
        "Who": grpc.unary_unary_rpc_method_handler(who),
        "Peer": grpc.unary_unary_rpc_method_handler(peer),
        "Count": grpc.unary_unary_rpc_method_handler(counter),
    }
    server = grpc.aio.server(options=OPTS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shunt.Bench", handlers),))
    for port in ports:
        if not server.add_insecure_port("0.0.0.0:%d" % port):
            sys.exit("grpcbench: cannot listen on port %d" % port)
    await server.start()
    open(ready, "w").close()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


async def run(target, n, conc, warmup, baggage):
    md = (("baggage", baggage),) if baggage else None
    async with grpc.aio.insecure_channel(target, options=OPTS) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        who = ch.unary_unary("/shunt.Bench/Who")
        first = json.loads(await ch.unary_unary("/shunt.Bench/Peer")(b"", metadata=md, timeout=10))
        pods, errors, lat = {}, [], []
        left = [warmup, n]  # calls still to start: warmup, then measured

        async def worker():
            while left[0] > 0 or left[1] > 0:
                measured = left[0] <= 0
                left[1 if measured else 0] -= 1
                t0 = time.perf_counter_ns()
                try:
                    pod = (await who(b"", metadata=md, timeout=30)).decode()
                except grpc.RpcError as e:
                    errors.append("%s: %s" % (e.code().name, e.details()))
                    continue
                if measured:
                    lat.append(time.perf_counter_ns() - t0)
                pods[pod] = pods.get(pod, 0) + 1

        # Warmup on its own first, then the clock: req/s covers measured calls only.
        start = None
        if warmup:
            saved, left[1] = left[1], 0
            await asyncio.gather(*(worker() for _ in range(conc)))
            left[1] = saved
        start = time.perf_counter_ns()
        await asyncio.gather(*(worker() for _ in range(conc)))
        total = time.perf_counter_ns() - start
    lat.sort()
    k = len(lat)

    def pct(p):
        return lat[min(max(-(-p * k // 100), 1), k) - 1] if k else 0

    print(json.dumps({"n": k, "p50_ns": pct(50), "p99_ns": pct(99), "mean_ns": sum(lat) / k if k else 0,
                      "rps": k / (total / 1e9) if total else 0, "pods": pods, "errors": errors[:5],
                      "failed": len(errors), "first": first, "lat_ns": lat}))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        import argparse

        ap = argparse.ArgumentParser(prog="grpcbench.py serve")
        ap.add_argument("--name", required=True)
        ap.add_argument("--ports", required=True)
        ap.add_argument("--ready", required=True)
        a = ap.parse_args(sys.argv[2:])
        asyncio.run(serve(a.name, [int(p) for p in a.ports.split(",")], a.ready))
    elif len(sys.argv) in (6, 7) and sys.argv[1] == "run":
        target, n, conc, warmup = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        asyncio.run(run(target, n, max(1, conc), warmup, sys.argv[6] if len(sys.argv) == 7 else None))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
