#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Kubernetes mode at scale: shuntd following a large fake cluster.

    make bench-k8s [BENCH_K8S_ARGS='--changes 300']
    /usr/bin/python3 tests/k8s/scale.py --build build [--routes 1000] [--services 1000]
        [--endpoints 10000] [--steered 1000] [--pods 20000] [--labels 50]
        [--changes 300] [--json FILE]

Builds a throwaway netns node (tests/e2e/node.py, cleaned up on any exit)
with shuntd in Kubernetes mode against the fake API server
(tests/k8s/fakeapi.py, in this process, listening inside the node netns):

  --services Services, each with one EndpointSlice; --endpoints endpoints
  spread evenly over them, each a ready baseline Pod; --routes
  SandboxRoutes, one routing key each, spread over the first --steered
  Services, each selecting its own ready sandbox Pod; and --pods more Pods
  that no SandboxRoute selects nor any EndpointSlice names (the workloads
  of the rest of the cluster, half of them Pending without an IP, spread
  over 50 nodes), each carrying --labels labels: what the agent keeps of
  every Pod of the cluster is what bounds its memory (finding 10 of
  issue 9: one tenant creating pending pods must not OOM-kill the agents).

Reported:
  * start -> synced: from spawning shuntd to its "k8s: synced" log line,
    and to the moment every expected route is in the pinned shunt_routes;
  * shuntd's VmHWM (peak RSS) and VmRSS after the sync and after the
    changes; the target is a VmHWM under 64 MiB;
  * watch event -> kernel map latency over --changes changes, p50/p99/max.

Latency method: each change (a key added to a SandboxRoute, the key
removed, the sandbox Pod turning not ready, ready again, the SandboxRoute
deleted, created again) touches the routes of one SandboxRoute: every
captured address of its Service x its key. After the change this process
polls exactly those keys in the pinned shunt_routes map with the bpf(2)
syscall (BPF_MAP_LOOKUP_ELEM, a few microseconds each, sleeping 100 us
between rounds so the server's threads run) until all of them are in the
new state. The clock starts when the fake API server wrote the watch event
to shuntd's socket (fakeapi.sent_time) -- so the API server's own
scheduling is not counted -- and also, for reference, when apply()
returned. Changes are made one at a time.
"""

import argparse
import ctypes
import ipaddress
import json
import os
import platform
import re
import shlex
import signal
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.dont_write_bytecode = True

import fakeapi as F  # noqa: E402
import node as N  # noqa: E402

# ---- the pinned map through bpf(2) -------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
BPF_MAP_LOOKUP_ELEM, BPF_OBJ_GET = 1, 7
ROUTE_KEY_LEN = 64  # SHUNT_ROUTE_KEY_LEN
SHUNT_FAMILY_V4 = 4


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = _libc.syscall(_NR_BPF, cmd, buf, 128)
    if r < 0:
        return -ctypes.get_errno()
    return r


def obj_get(path):
    p = ctypes.create_string_buffer(path.encode())
    fd = bpf(BPF_OBJ_GET, struct.pack("=QII", ctypes.addressof(p), 0, 0))
    if fd < 0:
        raise OSError(-fd, "BPF_OBJ_GET %s" % path)
    return fd


class RouteMap:
    """Lookups in <pin>/shunt_routes: struct shunt_route_key -> struct shunt_route."""

    VALUE_SIZE = 40

    def __init__(self, path):
        self.fd = obj_get(path)
        self.val = ctypes.create_string_buffer(self.VALUE_SIZE)

    @staticmethod
    def key(ip, port, routing_key):
        a = ipaddress.ip_address(ip)
        addr = a.packed.ljust(16, b"\0")
        return addr + struct.pack("=HBB", port, a.version if a.version == 6 else SHUNT_FAMILY_V4, 0) + \
            routing_key.encode().ljust(ROUTE_KEY_LEN, b"\0")

    def lookup(self, keybuf):
        """The sandbox 'ip:port' the route leads to, or None."""
        k = ctypes.create_string_buffer(keybuf, len(keybuf))
        r = bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("=IIQQQ", self.fd, 0, ctypes.addressof(k),
                                                 ctypes.addressof(self.val), 0))
        if r < 0:
            return None
        raw = self.val.raw
        fam = raw[18]
        ip = ipaddress.ip_address(raw[:4] if fam == SHUNT_FAMILY_V4 else raw[:16])
        return N.hostport(str(ip), struct.unpack_from("=H", raw, 16)[0])

    def close(self):
        os.close(self.fd)


# ---- the cluster ---------------------------------------------------------------------------------
def ip_in(net, n):
    """The n-th usable address of a /16 like 10.244.0.0, avoiding .0 and .255."""
    base = int(ipaddress.ip_address(net))
    return str(ipaddress.ip_address(base + (n // 250) * 256 + (n % 250) + 1))


class Cluster:
    def __init__(self, services, endpoints, routes, steered, pods=0, labels=0):
        self.services, self.endpoints, self.routes, self.steered = services, endpoints, routes, steered
        self.pods, self.labels = pods, labels
        self.per_svc = [endpoints // services + (1 if i < endpoints % services else 0) for i in range(services)]

    @staticmethod
    def ns(i):
        # 20 namespaces (a platform's low end): 50 SandboxRoutes and 550
        # routes each, inside the default --max-routes-per-namespace.
        return "ns-%d" % (i % 20)

    def cluster_ip(self, i):
        return ip_in("10.96.0.0", i)

    def sandbox_ip(self, r):
        return ip_in("10.245.0.0", r)

    def svc_of(self, r):
        return r % self.steered

    def objects(self):
        out, ep = [], 0
        for i in range(self.services):
            ns, name = self.ns(i), "svc-%d" % i
            out.append(F.service(ns, name, self.cluster_ip(i), [("http", 80, 8080)]))
            eps = []
            for _ in range(self.per_svc[i]):
                ip = ip_in("10.244.0.0", ep)
                pname = "%s-%d" % (name, ep)
                eps.append((ip, True, pname))
                out.append(F.pod(ns, pname, {"app": name}, [ip]))
                ep += 1
            out.append(F.endpointslice(ns, name + "-0", name, eps, [("http", 8080)]))
        for r in range(self.routes):
            out.append(self.sandbox_pod(r, True))
            out.append(self.sandboxroute(r, ["k-%d" % r]))
        out.extend(self.noise_pod(p) for p in range(self.pods))
        return out

    def noise_pod(self, p):
        """A Pod of someone else's workload: labels the way controllers
        and platforms stamp them (an app label, the rest under prefixes),
        Running with an IP or Pending without one."""
        labels = {"app": "work-%d" % (p // 20)}
        for j in range(self.labels - 1):
            labels["team%02d.platform.example.com/attribute-%02d" % (j % 7, j)] = "value-%d-%d" % (p, j)
        pending = p % 2 == 1
        return F.pod("work-%d" % (p % 40), "work-%d" % p, labels, [] if pending else [ip_in("10.246.0.0", p)],
                     ready=not pending, phase="Pending" if pending else "Running", node="node-%d" % (p % 50))

    def sandbox_pod(self, r, ready):
        i = self.svc_of(r)
        return F.pod(self.ns(i), "sbx-%d" % r, {"app": "svc-%d" % i, "sandbox": "sb-%d" % r},
                     [self.sandbox_ip(r)], ready=ready)

    def sandboxroute(self, r, keys):
        i = self.svc_of(r)
        return F.sandboxroute(self.ns(i), "route-%d" % r, "svc-%d" % i, keys, 8080,
                              selector={"app": "svc-%d" % i, "sandbox": "sb-%d" % r})

    def captured(self, i):
        """(ip, port) of every captured address of Service i."""
        first = sum(self.per_svc[:i])
        return [(self.cluster_ip(i), 80)] + [(ip_in("10.244.0.0", first + e), 8080) for e in range(self.per_svc[i])]

    def expected_routes(self):
        return sum(len(self.captured(self.svc_of(r))) for r in range(self.routes))


# ---- the run ---------------------------------------------------------------------------------------
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))]


def mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            m = re.match(r"^(VmHWM|VmRSS):\s+(\d+) kB", ln)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def wait_for(pred, timeout, what, poll=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise TimeoutError("%s: not within %ss" % (what, timeout))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--routes", type=int, default=1000, help="SandboxRoutes (default %(default)s)")
    ap.add_argument("--services", type=int, default=1000, help="Services (default %(default)s)")
    ap.add_argument("--endpoints", type=int, default=10000, help="endpoints over all Services (default %(default)s)")
    ap.add_argument("--steered", type=int, default=1000,
                    help="Services the SandboxRoutes spread over (default %(default)s): each one's ClusterIP "
                         "and endpoints are captured, so the routes (this times endpoints per Service + 1, "
                         "times keys) must fit --max-routes")
    ap.add_argument("--pods", type=int, default=20000,
                    help="Pods besides the endpoints and sandboxes, selected by nothing (default %(default)s)")
    ap.add_argument("--labels", type=int, default=50, help="labels on each of those Pods (default %(default)s)")
    ap.add_argument("--agent-args", default="",
                    help="more shuntd arguments (a quoted string), e.g. '--max-routes-per-namespace 2048'")
    ap.add_argument("--changes", type=int, default=300, help="changes timed (default %(default)s)")
    ap.add_argument("--sync-timeout", type=float, default=120)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.steered > args.services or args.routes < 1:
        ap.error("--steered must be <= --services, --routes >= 1")
    reason = N.prereq_skip_reason()
    if reason:
        print("bench-k8s: cannot run: %s" % reason)
        return 2
    if _NR_BPF is None:
        print("bench-k8s: no bpf(2) syscall number for %s" % platform.machine())
        return 2
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))

    cl = Cluster(args.services, args.endpoints, args.routes, args.steered, args.pods, max(1, args.labels))
    want_routes = cl.expected_routes()
    max_routes = max(16384, want_routes * 2 + 64)
    node = N.Node(args.build, shuntd=False)
    api = None
    res = {"routes": args.routes, "services": args.services, "endpoints": args.endpoints,
           "steered_services": args.steered, "other_pods": args.pods, "labels_per_pod": args.labels,
           "expected_kernel_routes": want_routes}
    try:
        node.start(with_shuntd=False)
        token = os.path.join(node.tmp, "k8s-token")
        with open(token, "w") as f:
            f.write("bench")
        api = F.FakeAPI(token="bench", netns=node.netns_path("node"), history=20000, bookmark_interval=5.0)
        t = time.monotonic()
        api.apply_many(cl.objects())
        api.start()
        print("bench-k8s: fake cluster: %d Services, %d EndpointSlices, %d Pods, %d SandboxRoutes (%.1fs to build); "
              "%d kernel routes expected" % (api.count("services"), api.count("endpointslices"), api.count("pods"),
                                             api.count("sandboxroutes"), time.monotonic() - t, want_routes),
              flush=True)
        node.want_shuntd = True
        node.shuntd_args = ["--k8s-api", api.url, "--k8s-token-file", token, "--max-routes", str(max_routes)] + \
            shlex.split(args.agent_args)
        t0 = time.monotonic()
        node.shuntd_start(timeout=60)
        pid = node.shuntd.pid
        synced = wait_for(lambda: "k8s: synced" in node.shuntd_output() and time.monotonic(),
                          args.sync_timeout, "the 'k8s: synced' log line")
        line = [ln for ln in node.shuntd_output().splitlines() if "k8s: synced" in ln][0]
        rm = RouteMap(os.path.join(node.pin, "shunt_routes"))
        try:
            probe = [rm.key(ip, port, "k-%d" % r) for r in (0, args.routes // 2, args.routes - 1)
                     for ip, port in cl.captured(cl.svc_of(r))]
            wait_for(lambda: all(rm.lookup(k) for k in probe), args.sync_timeout, "the probe routes in the map")
            full = wait_for(lambda: node.status().get("routes", 0) >= want_routes and time.monotonic(),
                            args.sync_timeout, "all %d routes (shuntctl status)" % want_routes, poll=0.05)
            res["start_to_synced_log_s"] = round(synced - t0, 3)
            res["start_to_all_routes_s"] = round(full - t0, 3)
            res["synced_line"] = line.strip()
            res["mem_after_sync_kB"] = mem(pid)
            st = node.status()
            res["status_kubernetes"] = st.get("kubernetes")
            res["status_routes"] = st.get("routes")
            print("bench-k8s: %s" % line.strip(), flush=True)

            lat_sent, lat_apply, kinds = [], [], {}
            step = max(1, args.routes // max(1, args.changes // 6))
            r = 0
            n = 0
            while n < args.changes:
                i = cl.svc_of(r)
                addrs = cl.captured(i)
                k_main = [rm.key(ip, port, "k-%d" % r) for ip, port in addrs]
                k_extra = [rm.key(ip, port, "k-%d-x" % r) for ip, port in addrs]
                to = "%s:8080" % cl.sandbox_ip(r)
                plan = [
                    ("key-added", "sandboxroutes", lambda: api.apply(cl.sandboxroute(r, ["k-%d" % r, "k-%d-x" % r])),
                     k_extra, True),
                    ("key-removed", "sandboxroutes", lambda: api.apply(cl.sandboxroute(r, ["k-%d" % r])),
                     k_extra, False),
                    ("pod-not-ready", "pods", lambda: api.apply(cl.sandbox_pod(r, False)), k_main, False),
                    ("pod-ready", "pods", lambda: api.apply(cl.sandbox_pod(r, True)), k_main, True),
                    ("route-deleted", "sandboxroutes",
                     lambda: {"metadata": {"resourceVersion": str(api.delete("sandboxroutes", cl.ns(i),
                                                                              "route-%d" % r))}}, k_main, False),
                    ("route-created", "sandboxroutes", lambda: api.apply(cl.sandboxroute(r, ["k-%d" % r])),
                     k_main, True),
                ]
                for kind, resource, do, keys, present in plan:
                    if n >= args.changes:
                        break
                    obj = do()
                    t_apply = time.monotonic()
                    rv = int(obj["metadata"]["resourceVersion"])

                    def done():
                        for k in keys:
                            v = rm.lookup(k)
                            if (v == to) != present:
                                return False
                        return True
                    deadline = t_apply + 10
                    while not done():
                        if time.monotonic() > deadline:
                            raise TimeoutError("change %d (%s of route-%d) not in the map after 10 s" % (n, kind, r))
                        time.sleep(0.0001)
                    t_map = time.monotonic()
                    sent = api.sent_time(resource, rv)
                    if sent is None:
                        raise RuntimeError("change %d: the fake server has no send time for rv %d" % (n, rv))
                    lat_sent.append(t_map - sent)
                    lat_apply.append(t_map - t_apply)
                    kinds.setdefault(kind, []).append(t_map - sent)
                    n += 1
                r = (r + step) % args.routes
            ms = lambda x: round(x * 1000, 2)  # noqa: E731
            res["changes"] = n
            res["event_to_map_ms"] = {"p50": ms(pct(lat_sent, 50)), "p99": ms(pct(lat_sent, 99)),
                                      "max": ms(max(lat_sent)), "mean": ms(statistics.mean(lat_sent))}
            res["apply_to_map_ms"] = {"p50": ms(pct(lat_apply, 50)), "p99": ms(pct(lat_apply, 99)),
                                      "max": ms(max(lat_apply))}
            res["event_to_map_ms_by_kind"] = {k: {"p50": ms(pct(v, 50)), "p99": ms(pct(v, 99)), "n": len(v)}
                                              for k, v in kinds.items()}
            res["mem_after_changes_kB"] = mem(pid)
        finally:
            rm.close()
        if node.shuntd.poll() is not None:
            raise RuntimeError("shuntd exited (%s)" % node.shuntd.returncode)
    except (Exception, KeyboardInterrupt) as e:
        print("bench-k8s: FAILED: %r" % (e,))
        print(node.diagnostics(lines=30))
        res["error"] = repr(e)
    finally:
        node.close()
        if api is not None:
            api.close()
    report(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    left = N.leaks([node.id])
    if left:
        print("bench-k8s: left behind: %s" % left)
        return 1
    return 1 if "error" in res else 0


def report(res):
    print("\nbench-k8s: %(routes)d SandboxRoutes over %(steered_services)d of %(services)d Services, "
          "%(endpoints)d endpoints -> %(expected_kernel_routes)d kernel routes; "
          "%(other_pods)d other Pods with %(labels_per_pod)d labels each" % res)
    if "start_to_synced_log_s" in res:
        print("  start -> 'k8s: synced'        %.2f s" % res["start_to_synced_log_s"])
        print("  start -> all routes in maps    %.2f s" % res["start_to_all_routes_s"])
        m = res["mem_after_sync_kB"]
        print("  RSS after sync                 VmHWM %.1f MiB, VmRSS %.1f MiB" % (m["VmHWM"] / 1024, m["VmRSS"] / 1024))
    if "event_to_map_ms" in res:
        e, a = res["event_to_map_ms"], res["apply_to_map_ms"]
        print("  watch event -> kernel map      p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d changes)"
              % (e["p50"], e["p99"], e["max"], res["changes"]))
        print("  API apply -> kernel map        p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (a["p50"], a["p99"], a["max"]))
        for k, v in res["event_to_map_ms_by_kind"].items():
            print("    %-16s p50 %.2f ms, p99 %.2f ms (n=%d)" % (k, v["p50"], v["p99"], v["n"]))
        m = res["mem_after_changes_kB"]
        print("  RSS after the changes          VmHWM %.1f MiB, VmRSS %.1f MiB"
              % (m["VmHWM"] / 1024, m["VmRSS"] / 1024))
        ok_lat = e["p99"] < 100
        ok_mem = m["VmHWM"] < 64 * 1024
        print("  targets: p99 < 100 ms %s; RSS < 64 MiB %s" % ("met" if ok_lat else "MISSED",
                                                               "met" if ok_mem else "MISSED"))


if __name__ == "__main__":
    sys.exit(main())
