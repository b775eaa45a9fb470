#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""shunt benchmark: `make bench` (a command that reports, not a test).

    make bench [BENCH_ARGS='...']     (as root; about 9 minutes)
    /usr/bin/python3 tests/bench/bench.py --build build [--client c|python]
        [--requests N] [--warmup N] [--rounds N] [--no-pinned] [--duration S]
        [--wrk-warmup S] [--connections N] [--threads N] [--idle N]
        [--upstream-workers N] [--no-variants] [--baseline OTHER_BUILD] [--no-h2]
        [--h2-duration S] [--h2-warmup S] [--h2-rounds N] [--h2-clients N]
        [--h2-streams N] [--grpc-calls N] [--grpc-concurrency N]

    e.g. make bench BENCH_ARGS='--no-h2 --no-pinned'   (HTTP/1.1 only, quicker)

Builds a throwaway node with tests/e2e/node.py (netns, test cgroup, shuntd
in the node netns at 10.211.0.1:15001), then puts nginx in the pods as fast
upstreams (each answers a 20-byte body with "X-Pod: <pod>" and
"X-Peer: <client address it saw>"):

    baseline pod 10.211.0.20  :8180 the steered service (route dev-a -> sandbox)
                              :8181 the same server, no route: never captured
    sandbox pod  10.211.0.30  :8180
    node netns   10.211.0.1   :8280 nginx as the userspace routing peer:
                                    map $http_baggage (sd-routing-key=dev-a)
                                    -> proxy_pass sandbox or baseline,
                                    upstream keepalive, 1 worker, no access log
                              :8380 HAProxy as the second routing peer:
                                    use_backend sandbox on the baggage
                                    member, else baseline; nbthread 1,
                                    http-reuse always, no log

(the e2e harness's own Python test servers stay on :8080, idle). Clients run
in the client pod inside the test cgroup, so shunt captures what it should.

Rows: direct-baseline (:8181), shunt-nokey and shunt-key (:8180, key in a
W3C baggage; shuntd with its default flags: one worker per CPU it may run
on, adaptive polling on), the variant rows, direct-sandbox, nginx-nokey and
nginx-key (:8280), haproxy-nokey and haproxy-key (:8380).
Variant rows (keyed only; --no-variants skips them): the same route through
--build's shuntd started with other flags, swapped in as for --baseline
(item 5 below): shunt-w1-nopoll-key (--workers 1 --poll off),
shunt-w1-poll-key (--workers 1 --poll on) and shunt-wN-nopoll-key
(--workers N --poll off, N = the CPUs here). They need a shuntd whose
--help lists --workers and --poll; with another the run says "variants
skipped: this shuntd has no --workers" and goes on without them.
In-pod rows (issue 14; when --help lists --inpod-port): shunt-inpod-nokey
and shunt-inpod-key go through the default shuntd with the client pod
served in-pod (shuntctl pod add): the upstream must see the client pod's
address, not the node's; the issue 13 targets are reported for them too.
TC rows (when --help lists --tc-mark): shunt-tc-nokey and shunt-tc-key
run their client in a routed pod "vm" (10.211.0.60, a /32 route to its veth, not on
the bridge) outside the test cgroup, captured with TC (shuntctl pod add
--tc): the cgroup hooks never see it; the upstream sees the node.
Inference relay rows (when shuntctl --help lists "pod infer"):
infer-relay-nokey and infer-relay-key call the baseline pod's never-routed
:8181 directly, as direct-baseline does, through the default shuntd with the
baseline pod served in-pod and `pod infer ... shadow --port 8181` (undone,
pod infer off and pod del, before any other row runs): the pod's sk_lookup
program hands each inbound connection to shunt, which relays it over the
pod's loopback (never steered), from 127.77.0.1, which the upstream sees
and the pod's inference.inbound (pod list) counts every request; the cost of
that one extra pass is the ratio to direct-baseline (no targets).
  1. One keep-alive connection per row: latclient.c (compiled on the fly;
     --client python for the http.client twin, whose own ~40 us per request
     would swamp a ~20 us direct round trip), 5000 requests after 500 warmup,
     split into 5 rounds interleaved across the rows, percentiles over all.
     Run twice: as scheduled, then with the client, shuntd, all nginx
     processes and HAProxy pinned to CPU 0 (cross-CPU wakeups are slow and
     erratic on this VM; pinned, what remains is each path's own cost).
     --no-pinned skips it. Free-scheduled, each round records where the
     client (its sched_getcpu at the end), the proxy and the upstream (the
     CPU of their busiest thread in the round) ran: a line per row.
  2. wrk -t2 -c32 -d10s --latency per row, after a 2 s warmup; every row
     twice, the second pass in reverse order (req/s, p50, p99 and CPU are
     the means of the two runs).
  Every table has a "cpu us/req" column for the rows through a proxy: the
  on-CPU time of every thread of the proxy (shuntd; the nginx peer's master
  and worker; HAProxy), summed from /proc/PID/task/*/schedstat (first field,
  ns) over each run, divided by the requests the upstream served meanwhile:
  over the latency rounds (warmup included) and over the wrk runs.
  3. shuntd's peak RSS (VmHWM, reset just before) with 1000 idle keep-alive
     connections through it (idleconns.py), half keyed, half not.
  4. Targets (issue 13), for shunt-nokey and shunt-key (the default agent),
     each against its direct row and the peer rows with the same key:
     (a) free-scheduled, the p50 shunt adds over direct at most 1.2x what it
     adds pinned; (b) free-scheduled p50 at or below both peers'; (c) pinned
     p50 at most 1.9x direct's; (d) CPU per request (wrk runs) at most 0.7x
     nginx's; (e) wrk req/s at least 1.2x nginx's; and shuntd's peak RSS
     under 32 MiB. (a) and (c) need the pinned pass.
  5. With --baseline OTHER_BUILD (before/after): two more rows,
     base:shunt-nokey and base:shunt-key, go through OTHER_BUILD's shuntd on
     the same node in the same run. The agents are swapped (SIGTERM, pins
     removed, the other one started, the route added again) whenever the next
     row needs the other one, so both meet the same rounds of the same
     machine; wrk's two passes run the rows new, base, then base, new; RSS is
     measured for both. The report ends with new/base ratios and the spread
     between rounds (latency) or between the two runs of one agent (wrk), which
     is what a difference has to exceed before it counts.
  6. HTTP/2 (--no-h2 skips it; --build's shuntd only), started after the
     above so those rows run as before. h2c (prior knowledge) upstreams:
     nginx `listen http2` in the pods (:8182 steered, :8183 the never-routed
     direct port on the baseline pod) and grpcbench.py, a python3-grpcio
     asyncio server (:50061 steered, :50062 direct); routes for both to the
     sandbox's same port. Peers in the node netns: nginx, 1 worker, the same
     map -> grpc_pass (:8282 h2, :8283 gRPC; nginx 1.22 reaches HTTP/2
     upstreams only through grpc_pass, which forwards any HTTP/2 request),
     and a second HAProxy, the same routing as the HTTP/1.1 one with proto
     h2 on both sides (:8382, :8383). Eight rows per client: direct-baseline,
     shunt-nokey, shunt-key, direct-sandbox, nginx-nokey, nginx-key,
     haproxy-nokey, haproxy-key, in --h2-rounds interleaved rounds:
       h2load -c4 -m10 -D4s after a 1 s warm-up, p50/p99 from its --log-file;
       grpcbench.py run: one channel, 4 unary calls in flight, 3000 calls
       after 300 warmup (both ends Python: the ratios are what matter).
     Targets: shunt's p50 and p99 at or below both peers', req/s at or above.
Every row is verified: the pod on every latency response (and every gRPC
answer), the peer the upstream saw (captured or not), nginx stub_status and
gRPC server request counters and shuntd's proxy counters before and after
every run (a single request at the wrong pod is an error). A thread watches
the CPU time other processes take meanwhile, since the 2 CPUs are shared.
Targets print PASS/FAIL; the exit status is 0 unless something went wrong
(misrouting, errors, a leftover), 2 when a prerequisite is missing, 130 on
Ctrl-C. Everything it creates carries the run id and is removed at the end,
on failure and on Ctrl-C too.
"""

import argparse
import datetime
import json
import os
import platform
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(BENCH_DIR), "e2e"))

import node as N  # noqa: E402  (the e2e harness: topology, cgroup, shuntd)

NGINX = "/usr/sbin/nginx"
WRK = "/usr/bin/wrk"
SVC_PORT = 8180  # steered service on the baseline pod; sandbox listens here too
DIRECT_PORT = 8181  # same nginx server block on the baseline pod, never routed
STATUS_PORT = 8189  # stub_status of each upstream nginx
PEER_PORT = 8280  # the nginx routing peer, in the node netns
HAP_PORT = 8380  # the HAProxy routing peer, in the node netns
KEY = "dev-a"
# A realistic W3C baggage: the key is one member among others.
KEY_HEADER = "baggage: tenant=acme,sd-routing-key=%s;ttl=60,span.origin=web" % KEY
# Targets of issue 13, for shunt-nokey and shunt-key (the default agent):
TARGET_FREE_ADD = 1.2  # (a) free-scheduled p50 minus direct's at most this times the same pinned
TARGET_PINNED = 1.9  # (c) pinned p50 at most this times direct's (the floor of a userspace relay here)
TARGET_CPU = 0.7  # (d) CPU per request (wrk runs) at most this times the nginx peer's
TARGET_RPS = 1.2  # (e) wrk req/s at least this times the nginx peer's
# (b) free-scheduled p50 at or below both peers' (nginx, HAProxy)
PIN_CPU = 0  # the CPU of the pinned single-connection test
VM4 = N.NET4 + ".60"  # the routed pod of the TC rows
INFER_RELAY_SRC = "127.77.0.1"  # where shunt's relays to a pod's app leave from (INFER_RELAY_SRC4)
INFER_POD = "bench/base"  # the baseline pod, in-pod with inference on DIRECT_PORT (the "infer" agent only)
TARGET_RSS_MIB = 32.0

# HTTP/2 (issue 11): servers started for that section only, so the rows above run as before.
H2LOAD = "/usr/bin/h2load"
HAPROXY = "/usr/sbin/haproxy"
H2_SVC_PORT = 8182  # nginx `listen http2` (h2c) in both pods; steered on the baseline pod
H2_DIRECT_PORT = 8183  # the same h2 server on the baseline pod, never routed
H2_STATUS_PORT = 8199  # stub_status of each h2 upstream nginx
GRPC_SVC_PORT = 50061  # grpcbench.py in both pods; steered on the baseline pod
GRPC_DIRECT_PORT = 50062  # the same gRPC server on the baseline pod, never routed
PEER_H2_PORT, PEER_GRPC_PORT = 8282, 8283  # the nginx HTTP/2 peer, in the node netns
HAP_H2_PORT, HAP_GRPC_PORT = 8382, 8383  # the HAProxy peer, in the node netns
GRPC_WARMUP = 300  # gRPC calls per run before the measured ones
GRPCBENCH = os.path.join(BENCH_DIR, "grpcbench.py")


class BenchError(Exception):
    """Something is wrong (misrouting, a failed client, a broken setup)."""


class Agent:
    """A shuntd the rows can go through: a build's binaries ("new": --build,
    "base": --baseline) started with extra flags (none: its defaults)."""

    def __init__(self, name, build, args=(), inpod=False, tc=False, infer=False):
        self.name, self.build, self.args = name, build, list(args)
        self.inpod = inpod  # the client pod is served in-pod (shuntctl pod add)
        self.tc = tc  # the routed pod "vm" is captured with TC (shuntctl pod add --tc)
        self.infer = infer  # the baseline pod in-pod, inference in shadow mode on DIRECT_PORT (INFER_POD)
        self.threads = 0  # the most threads seen in it during a run

    def flags(self):
        return " ".join(self.args) or "default flags"


def variant_agents(ncpu):
    """(name, flags) of the --build agents measured beside the default one
    (N workers, adaptive polling on): 1 worker without and with polling, N
    workers without; a duplicate of another (one CPU) is left out."""
    out, seen = [], {("--workers", str(ncpu), "--poll", "on")}
    for workers, poll in ((1, "off"), (1, "on"), (ncpu, "off")):
        args = ("--workers", str(workers), "--poll", poll)
        if args not in seen:
            seen.add(args)
            out.append(("w%d-%s" % (workers, "poll" if poll == "on" else "nopoll"), list(args)))
    return out


class Row:
    def __init__(self, name, host, port, keyed, pod, peer, ref, via, agent="new", proxy=None):
        self.name, self.host, self.port, self.keyed = name, host, port, keyed
        self.agent = agent  # the Agent (Bench.agents key) of a row through shunt
        self.proxy = proxy  # Bench.peers key of a peer row's process (e.g. "nginx", "haproxy-h2")
        self.round_p50 = {}  # mode -> [p50 ns of each round]
        self.wrk_runs = []
        self.pod = pod  # X-Pod every response must carry
        self.peer = peer  # the address the upstream must see (captured or not)
        self.ref = ref  # the direct row this one is compared with
        self.via = via  # "direct", "shunt", "nginx" or "haproxy"
        self.lat = {}  # "free" / "pinned" -> single-connection results
        self.wrk = None
        self.first = None  # (pod, peer) of the last latency connection's first response
        self.h2_runs = []  # HTTP/2 section: one result per round
        self.h2 = None  # HTTP/2 section: {"p50_us", "p99_us", "rps"} over the rounds
        self.cpu = {}  # "free", "pinned", "wrk", "h2" -> [the proxy's on-CPU ns, requests served] summed over runs
        self.placement = []  # free-scheduled latency rounds: (client, proxy, upstream) CPU at the end of each
        self.client = "client"  # the pod the client runs in ("vm": the routed pod, outside the cgroup)

    def cpu_us(self, kind):
        """The proxy's on-CPU microseconds per request over the runs of one kind; None for direct rows."""
        ns, n = self.cpu.get(kind, (0, 0))
        return ns / n / 1000.0 if n and self.via != "direct" else None


def peer_note(row):
    """What a row's expected peer means, for an error."""
    if row.via == "direct":
        return "captured by shunt"
    if row.peer == N.CLIENT4:
        return "in-pod: the upstream connection was not made in the pod"
    if row.via == "infer":
        return "inference: the connection was not relayed in the pod"
    return "not through the proxy"


def direct_row(host, port, pod):
    """A row straight to a pod (never captured): the reference of the rows that reach that pod."""
    return Row("direct-" + pod, host, port, False, pod, N.CLIENT4, "direct-" + pod, "direct")


def proxied_row(name, host, port, keyed, via, proxy=None, agent="new"):
    """A row through shunt (via "shunt", the service address) or a routing
    peer in the node netns (via "nginx"/"haproxy", proxy its Bench.peers key):
    the keyed ones must reach the sandbox, the others the baseline, and the
    upstream sees the node's address."""
    pod = "sandbox" if keyed else "baseline"
    return Row(name, host, port, keyed, pod, N.NODE4, "direct-" + pod, via, agent, proxy)


def peer_rows(via, proxy, port):
    return [proxied_row("%s-%s" % (via, k), N.NODE4, port, k == "key", via, proxy) for k in ("nokey", "key")]


def inpod_rows():
    """Through shunt in-pod: the same route, the client pod served in-pod,
    so the upstream sees the client pod's own address."""
    out = []
    for k in ("nokey", "key"):
        r = proxied_row("shunt-inpod-" + k, N.BASE4, SVC_PORT, k == "key", "shunt", agent="inpod")
        r.peer = N.CLIENT4
        out.append(r)
    return out


def tc_rows():
    """Through shunt with TC capture: the client in the routed pod "vm",
    outside the cgroup, its SYNs handed to shunt by the TC program on its
    host-side interface; the upstream sees the node (as in node mode)."""
    out = []
    for k in ("nokey", "key"):
        r = proxied_row("shunt-tc-" + k, N.BASE4, SVC_PORT, k == "key", "shunt", agent="tc")
        r.client = "vm"
        out.append(r)
    return out


def infer_rows():
    """Straight to the baseline pod's never-routed port (direct-baseline's
    host and port, no route), while the "infer" agent relays the pod's
    inbound connections there: sk_lookup hands each to shunt in the pod,
    which dials the app over the pod's loopback from 127.77.0.1, the
    address the upstream sees. The key is never used to steer (compared
    with direct-baseline too)."""
    return [Row("infer-relay-" + k, N.BASE4, DIRECT_PORT, k == "key", "baseline", INFER_RELAY_SRC, "direct-baseline",
                "infer", agent="infer") for k in ("nokey", "key")]


def make_rows(compare=False, variants=()):
    """The HTTP/1.1 rows; variants: names of the extra agents, one keyed
    row each ("inpod", "tc", "infer": both, see inpod_rows, tc_rows, infer_rows)."""
    base = [proxied_row("base:shunt-" + k, N.BASE4, SVC_PORT, k == "key", "shunt", agent="base")
            for k in ("nokey", "key")] if compare else []
    return ([direct_row(N.BASE4, DIRECT_PORT, "baseline")]
            + [proxied_row("shunt-" + k, N.BASE4, SVC_PORT, k == "key", "shunt") for k in ("nokey", "key")]
            + [proxied_row("shunt-%s-key" % v, N.BASE4, SVC_PORT, True, "shunt", agent=v)
               for v in variants if v not in ("inpod", "tc", "infer")]
            + (inpod_rows() if "inpod" in variants else [])
            + (tc_rows() if "tc" in variants else [])
            + (infer_rows() if "infer" in variants else [])
            + base + [direct_row(N.SBX4, SVC_PORT, "sandbox")]
            + peer_rows("nginx", "nginx", PEER_PORT) + peer_rows("haproxy", "haproxy", HAP_PORT))


def make_h2_rows(kind):
    """The HTTP/2 section's rows for one client: kind "h2" (h2load against
    nginx h2c upstreams) or "grpc" (grpcbench.py against its own servers)."""
    svc, direct, ngx, hap = ((H2_SVC_PORT, H2_DIRECT_PORT, PEER_H2_PORT, HAP_H2_PORT) if kind == "h2"
                             else (GRPC_SVC_PORT, GRPC_DIRECT_PORT, PEER_GRPC_PORT, HAP_GRPC_PORT))
    return ([direct_row(N.BASE4, direct, "baseline")]
            + [proxied_row("shunt-" + k, N.BASE4, svc, k == "key", "shunt") for k in ("nokey", "key")]
            + [direct_row(N.SBX4, svc, "sandbox")]
            + peer_rows("nginx", "nginx-h2", ngx) + peer_rows("haproxy", "haproxy-h2", hap))


# ---- nginx configurations ------------------------------------------------------

NGINX_COMMON = """\
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_processes {workers};
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server_tokens off;
    default_type text/plain;
{body}
}}
"""

UPSTREAM_BODY = """\
    server {{
{listens}
        location / {{
            add_header X-Pod {pod} always;
            add_header X-Peer $remote_addr always;
            return 200 "hello from {pod}\\n";
        }}
    }}
    server {{
        listen {ip}:{status_port};
        location / {{ stub_status; }}
    }}
"""

# The routing peer: what shunt does for one service, done by nginx. A member
# sd-routing-key=dev-a anywhere in the baggage list (optional whitespace,
# optional ;properties) selects the sandbox; anything else the baseline.
PEER_MAP = """\
    map $http_baggage $shunt_upstream {{
        default baseline;
        "~(^|,)[ \\t]*sd-routing-key[ \\t]*=[ \\t]*{key}[ \\t]*(;|,|$)" sandbox;
    }}
"""
PEER_BODY = PEER_MAP + """\
    upstream baseline {{
        server {base}:{port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    upstream sandbox {{
        server {sbx}:{port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {ip}:{peer_port};
        location / {{
            proxy_pass http://$shunt_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
"""

# The HTTP/2 peer: the same map. nginx 1.22 has no HTTP/2 for proxy_pass
# (HTTP/1.x upstreams only); grpc_pass is its HTTP/2 upstream client, and it
# forwards any HTTP/2 request, gRPC or not: both servers use it.
PEER_H2_BODY = PEER_MAP + """\
    upstream h2_baseline {{
        server {base}:{h2_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    upstream h2_sandbox {{
        server {sbx}:{h2_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    upstream grpc_baseline {{
        server {base}:{grpc_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    upstream grpc_sandbox {{
        server {sbx}:{grpc_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {ip}:{peer_h2_port} http2;
        location / {{
            grpc_pass grpc://h2_$shunt_upstream;
        }}
    }}
    server {{
        listen {ip}:{peer_grpc_port} http2;
        location / {{
            grpc_pass grpc://grpc_$shunt_upstream;
        }}
    }}
"""

# The HAProxy peers: one thread (like the nginx peer's one worker), no log
# section (nothing is logged). req.hdr() splits the baggage list on commas
# and trims each member, and an ACL tries every member: the regex matches the
# member sd-routing-key=KEY (optional ;properties) exactly, as shunt does.
# One HAProxy per section: HTTP/1.1 keep-alive on both sides with upstream
# connections shared between clients (http-reuse always, as nginx's upstream
# keepalive), and HTTP/2 (proto h2) on both sides for the HTTP/2 section.
HAPROXY_GLOBAL = """\
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
"""
HAPROXY_ROUTE = """\
frontend {name}
    bind {ip}:{port}{proto}
    acl keyed req.hdr(baggage) -m reg '{member_re}'
    use_backend {name}_sandbox if keyed
    default_backend {name}_baseline
backend {name}_baseline
{backend_opts}    server baseline {base}:{up_port}{proto}
backend {name}_sandbox
{backend_opts}    server sandbox {sbx}:{up_port}{proto}
"""
HAPROXY_MEMBER_RE = "^sd-routing-key[[:blank:]]*=[[:blank:]]*%s[[:blank:]]*(;|$)" % re.escape(KEY)

GRPC_COUNT_READER = r"""
import grpc, json, sys
out = {}
for arg in sys.argv[1:]:
    name, target = arg.split("=")
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as ch:
        out[name] = int(ch.unary_unary("/shunt.Bench/Count")(b"", timeout=5))
print(json.dumps(out))
"""

STUB_READER = r"""
import http.client, json, sys
out = {}
port = int(sys.argv[1])
for arg in sys.argv[2:]:
    name, ip = arg.split("=")
    c = http.client.HTTPConnection(ip, port, timeout=5)
    c.request("GET", "/")
    lines = c.getresponse().read().decode().splitlines()
    out[name] = int(lines[2].split()[2])
print(json.dumps(out))
"""


# ---- helpers ---------------------------------------------------------------------


def build_version(build):
    """git describe of the checkout a build directory belongs to."""
    src = os.path.dirname(os.path.abspath(build))
    p = N.run(["git", "-C", src, "describe", "--always", "--dirty"], check=False)
    return "git " + (p.stdout.strip() or "?")


def us(ns):
    return ns / 1000.0


def mib(kb):
    return kb / 1024.0


def fmt_ratio(x):
    return "-" if x is None else "%.2fx" % x


def fmt_cpu(x):
    return "-" if x is None else "%.1f" % x


def task_stats(pids):
    """{tid: (on-CPU ns, CPU it last ran on)} of every thread of these
    processes and of their descendants (nginx: the master and its workers).
    The time is the first field of /proc/PID/task/TID/schedstat (every thread
    counts: a multi-threaded shuntd is summed whole), the CPU field 39
    ("processor") of the thread's stat. A thread that exits between two
    samples takes its time with it."""
    out, todo, seen = {}, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except FileNotFoundError:
            continue
        for tid in tids:
            d = "/proc/%d/task/%s/" % (pid, tid)
            try:
                with open(d + "schedstat") as f:
                    ns = int(f.read().split()[0])
                with open(d + "stat") as f:
                    st = f.read()
                with open(d + "children") as f:
                    todo += [int(x) for x in f.read().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            out[int(tid)] = (ns, int(st[st.rfind(")") + 2:].split()[36]))
    return out


def cpu_delta(s0, s1):
    """On-CPU ns the threads of sample s1 spent since sample s0 (new threads from zero)."""
    return sum(ns - s0.get(tid, (0, 0))[0] for tid, (ns, _) in s1.items())


def busiest_cpu(s0, s1):
    """The CPU of the thread that ran most between two samples (None if none ran)."""
    ran = [(ns - s0.get(tid, (0, 0))[0], cpu) for tid, (ns, cpu) in s1.items()]
    best = max(ran, default=(0, None))
    return best[1] if best[0] > 0 else None


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads", "Name"):
                out[k] = v.strip()
    return out


def kb(s):
    return int(s.split()[0])


def parse_wrk(text):
    def to_us(v):
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
        if not m:
            raise BenchError("wrk: cannot parse latency %r" % v)
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[m.group(2)]

    pcts = {int(p): to_us(v) for p, v in re.findall(r"^\s+(\d+)%\s+([\d.]+(?:us|ms|s|m))\s*$", text, re.M)}
    m_rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    m_tot = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", text)
    if 50 not in pcts or 99 not in pcts or not m_rps or not m_tot:
        raise BenchError("wrk output not understood:\n" + text)
    m_non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    m_err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"p50_us": pcts[50], "p99_us": pcts[99], "rps": float(m_rps.group(1)), "requests": int(m_tot.group(1)),
            "non2xx": int(m_non.group(1)) if m_non else 0,
            "sock_errors": [int(x) for x in m_err.groups()] if m_err else [0, 0, 0, 0]}


class CpuWatch:
    """CPU time taken during the run by user-space processes that are not this bench's.

    A thread samples /proc every half second; a process counts as ours when
    this process is among its ancestors. Foreign processes that existed at the
    start count from their CPU time then; later ones from zero (so whatever
    other work starts on a shared machine during the run is seen too, except
    processes living less than one sampling interval)."""

    def __init__(self, interval=0.5):
        self.interval = interval
        self.me = os.getpid()
        self.first = {}  # key -> ticks when first seen (0 if born during the run)
        self.last = {}  # key -> (ticks, comm, pid)
        self.stop_ev = threading.Event()
        self.t0 = time.monotonic()
        self.sample(initial=True)
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def sample(self, initial=False):
        procs = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    data = f.read()
            except OSError:
                continue
            rest = data[data.rfind(")") + 2:].split()
            procs[int(pid)] = (int(rest[1]), rest[19], int(rest[11]) + int(rest[12]),
                               data[data.find("(") + 1:data.rfind(")")])
        for pid, (ppid, start, ticks, comm) in procs.items():
            p, ours = pid, False
            for _ in range(64):  # ancestry
                if p == self.me:
                    ours = True
                    break
                if p not in procs or p <= 1:
                    break
                p = procs[p][0]
            if ours or pid == 2 or ppid == 2:  # kernel threads (ksoftirqd may be doing our packets)
                continue
            key = (pid, start)
            if key not in self.first:
                self.first[key] = ticks if initial else 0
            self.last[key] = (ticks, comm, pid)

    def loop(self):
        while not self.stop_ev.wait(self.interval):
            self.sample()

    def stop(self):
        """(foreign CPU seconds, wall seconds, top three [(seconds, comm, pid)])"""
        self.stop_ev.set()
        self.thread.join()
        self.sample()
        tck = os.sysconf("SC_CLK_TCK")
        used = sorted(((t - self.first[k]) / tck, c, pid) for k, (t, c, pid) in self.last.items()
                      if t > self.first[k])
        used.reverse()
        return sum(u[0] for u in used), time.monotonic() - self.t0, used[:3]


def machine_busy(seconds=1.0):
    """Share of all CPUs busy over the next `seconds` (from /proc/stat)."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]

    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


class Bench:
    def __init__(self, args):
        self.a = args
        self.all_cpus = os.sched_getaffinity(0)
        self.node = None
        self.tmp = None
        self.nginx = {}  # name -> (Popen, its directory)
        self.peers = {}  # Row.proxy -> Popen of a routing peer: "nginx", "haproxy", "nginx-h2", "haproxy-h2"
        self.haproxy_version = "?"
        self.agents = {"new": Agent("new", "new")}
        if args.baseline:
            self.agents["base"] = Agent("base", "base")
        self.variants_note = self.find_variants()
        self.rows = make_rows(bool(args.baseline), [n for n in self.agents if n not in ("new", "base")])
        self.agent = "new"  # whose shuntd runs now (node.start() runs the default one)
        self.bins = {}  # build ("new", "base") -> (shuntd, shuntctl)
        self.build_ids = {}
        self.switches = 0
        self.pinned_now = False
        self.saved_affinity = {}  # tid -> its CPUs before pin(True)
        self.rss_by = {}
        self.by_name = {r.name: r for r in self.rows}
        self.rss_res = None
        self.t0 = time.monotonic()
        self.busy_before = None
        self.watch = None
        self.foreign = None  # (cpu seconds, wall seconds, [(seconds, comm, pid)]) of other processes
        self.routes = []  # (service, to) for KEY: added again whenever the agent is swapped
        self.h2_rows = make_h2_rows("h2") if args.h2 else []
        self.grpc_rows = make_h2_rows("grpc") if args.h2 else []
        self.h2_versions = {}

    def log(self, msg):
        print("[%5.1fs] %s" % (time.monotonic() - self.t0, msg), flush=True)

    def find_variants(self):
        """Add the variant agents when --build's shuntd has their flags;
        returns a line saying which were added or why none."""
        if not self.a.variants:
            return "variants skipped: --no-variants"
        p = N.run([os.path.join(self.a.build, "shuntd"), "--help"], check=False)
        lacks = [f for f in ("--workers", "--poll") if f not in p.stdout + p.stderr]
        if lacks:
            return "variants skipped: this shuntd has no %s" % lacks[0]
        ncpu = len(self.all_cpus)
        for name, args in variant_agents(ncpu):
            self.agents[name] = Agent(name, "new", args)
        if "--inpod-port" in p.stdout + p.stderr:
            self.agents["inpod"] = Agent("inpod", "new", inpod=True)
        if "--tc-mark" in p.stdout + p.stderr:
            self.agents["tc"] = Agent("tc", "new", tc=True)
        p = N.run([os.path.join(self.a.build, "shuntctl"), "--help"], check=False)
        if "pod infer" in p.stdout + p.stderr:
            self.agents["infer"] = Agent("infer", "new", infer=True)
        return "variants: %d CPUs here, so the default is --workers %d --poll on" % (ncpu, ncpu)

    # ---- setup ---------------------------------------------------------------------
    def setup(self):
        self.node = N.Node(self.a.build)
        self.tmp = "/tmp/shunt-bench-" + self.node.id
        os.makedirs(self.tmp)  # fails loudly on a (very unlikely) id clash
        # Private copies: a rebuild of the tree during the run must not change what is measured.
        builds = [("new", self.a.build)] + ([("base", self.a.baseline)] if self.a.baseline else [])
        for agent, build in builds:
            bindir = os.path.join(self.tmp, "bin-" + agent)
            os.makedirs(bindir)
            for b in ("shuntd", "shuntctl"):
                shutil.copy2(os.path.join(build, b), os.path.join(bindir, b))
            self.bins[agent] = (os.path.join(bindir, "shuntd"), os.path.join(bindir, "shuntctl"))
            self.build_ids[agent] = "%s, %s" % (os.path.abspath(os.path.join(build, "shuntd")), build_version(build))
        self.node.shuntd_bin, self.node.shuntctl_bin = self.bins["new"]
        self.build_id = self.build_ids["new"]
        self.log("node %s: starting topology, test cgroup and shuntd" % self.node.id)
        self.node.start()
        if "tc" in self.agents:
            self.node.add_routed_pod("vm", VM4)
        if self.a.client == "c":
            self.latclient = [os.path.join(self.tmp, "latclient")]
            N.run(["cc", "-O2", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-o", self.latclient[0],
                   os.path.join(BENCH_DIR, "latclient.c")], timeout=60)
        else:
            self.latclient = [N.PYTHON, os.path.join(BENCH_DIR, "latclient.py")]
        self.start_nginx("baseline", "base", self.a.upstream_workers, UPSTREAM_BODY.format(
            listens="        listen %s:%d;\n        listen %s:%d;" % (N.BASE4, SVC_PORT, N.BASE4, DIRECT_PORT),
            pod="baseline", ip=N.BASE4, status_port=STATUS_PORT))
        self.start_nginx("sandbox", "sbx", self.a.upstream_workers, UPSTREAM_BODY.format(
            listens="        listen %s:%d;" % (N.SBX4, SVC_PORT), pod="sandbox", ip=N.SBX4,
            status_port=STATUS_PORT))
        self.start_nginx("peer", "node", 1, PEER_BODY.format(
            key=re.escape(KEY), base=N.BASE4, sbx=N.SBX4, port=SVC_PORT, ip=N.NODE4, peer_port=PEER_PORT))
        self.wait_nginx()
        self.peers["nginx"] = self.nginx["peer"][0]
        self.start_haproxy("haproxy", [("http", HAP_PORT, SVC_PORT)], proto="",
                           backend_opts="    http-reuse always\n")
        p = N.run([HAPROXY, "-v"], check=False)
        self.haproxy_version = ((p.stdout.splitlines() or ["?"])[0].replace("HAProxy version ", "").split()
                                or ["?"])[0]
        svc = N.hostport(N.BASE4, SVC_PORT)
        self.add_route(svc, N.hostport(N.SBX4, SVC_PORT))
        self.log("route %s key %s -> %s; nginx upstreams, nginx and HAProxy routing peers up"
                 % (svc, KEY, N.hostport(N.SBX4, SVC_PORT)))
        self.shuntd_pid = self.find_shuntd()

    def add_route(self, service, to):
        self.node.route_add(service, KEY, to)
        self.routes.append((service, to))

    def start_nginx(self, name, pod, workers, body):
        d = os.path.join(self.tmp, "nginx-" + name)
        os.makedirs(d)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_COMMON.format(dir=d, workers=workers, body=body))
        p = N.run(self.node.nsenter(pod) + [NGINX, "-t", "-q", "-p", d + "/", "-e", os.path.join(d, "error.log"),
                                            "-c", conf], check=False)
        if p.returncode != 0:
            raise BenchError("nginx %s: bad configuration:\n%s%s" % (name, p.stdout, p.stderr))
        err = open(os.path.join(d, "stderr"), "ab")
        proc = self.node.spawn(self.node.nsenter(pod) + [NGINX, "-p", d + "/", "-e", os.path.join(d, "error.log"),
                                                          "-c", conf], stdout=err, stderr=err)
        err.close()
        self.nginx[name] = (proc, d)

    def start_haproxy(self, name, routes, proto, backend_opts=""):
        """An HAProxy in the node netns (Bench.peers[name]) routing each
        (frontend name, its port, upstream port) on the baggage member;
        returns once every frontend listens."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        cfg = os.path.join(d, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_GLOBAL + "".join(HAPROXY_ROUTE.format(
                name=fe, ip=N.NODE4, port=port, up_port=up_port, base=N.BASE4, sbx=N.SBX4, proto=proto,
                backend_opts=backend_opts, member_re=HAPROXY_MEMBER_RE) for fe, port, up_port in routes))
        p = N.run(self.node.nsenter("node") + [HAPROXY, "-c", "-q", "-f", cfg], check=False)
        if p.returncode != 0:
            raise BenchError("%s: bad configuration:\n%s%s" % (name, p.stdout, p.stderr))
        with open(os.path.join(d, "stderr"), "ab") as err:
            hap = self.node.spawn(self.node.nsenter("node") + [HAPROXY, "-db", "-f", cfg], stdout=err, stderr=err)
        try:
            for _, port, _ in routes:
                self.node.wait_listen("node", port, timeout=30, proc=hap)
        except N.HarnessError as e:
            raise BenchError("%s\n%s: %s" % (e, name, N._read_from(os.path.join(d, "stderr"))))
        if proc_status(hap.pid).get("Name") != "haproxy":  # nsenter execs it: same pid
            raise BenchError("pid %d is %r, not haproxy" % (hap.pid, proc_status(hap.pid).get("Name")))
        self.peers[name] = hap

    def wait_nginx(self):
        deadline = time.monotonic() + 10
        for name, (proc, d) in self.nginx.items():
            while not os.path.exists(os.path.join(d, "nginx.pid")):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("nginx %s did not start (rc %s):\n%s%s" % (
                        name, proc.poll(), N._read_from(os.path.join(d, "stderr")),
                        N._read_from(os.path.join(d, "error.log"))))
                time.sleep(0.02)

    def use_agent(self, agent):
        """Run the row's shuntd: stop the other one (SIGTERM; its pins are
        removed so that each starts from nothing), start this one (its
        build, its flags), add the routes again."""
        if agent == self.agent:
            return
        if self.agents[self.agent].infer:  # the baseline pod's inbound reaches its app directly again
            self.node.ctl_ok("pod", "infer", INFER_POD, "off")
            self.node.ctl_ok("pod", "del", INFER_POD)
        rc = self.node.shuntd_stop()
        if rc != 0:
            raise BenchError("shuntd (%s) exited with %s on SIGTERM" % (self.agent, rc))
        if os.path.isdir(self.node.pin):
            shutil.rmtree(self.node.pin)
        ag = self.agents[agent]
        self.node.shuntd_bin, self.node.shuntctl_bin = self.bins[ag.build]
        self.node.shuntd_start(extra=ag.args)
        for service, to in self.routes:
            self.node.route_add(service, KEY, to)
        if ag.inpod:
            self.node.ctl_ok("pod", "add", "bench/client", "--netns", self.node.netns_path("client"))
        if ag.tc:
            self.node.ctl_ok("pod", "add", "bench/vm", "--tc", self.node.pod("vm")["host_if"])
        if ag.infer:
            self.node.ctl_ok("pod", "add", INFER_POD, "--netns", self.node.netns_path("base"))
            self.node.ctl_ok("pod", "infer", INFER_POD, "shadow", "--port", str(DIRECT_PORT))
        self.agent = agent
        self.shuntd_pid = self.find_shuntd()
        self.switches += 1
        if self.pinned_now:
            self.pin(True)

    def find_shuntd(self):
        pid = self.node.shuntd.pid  # nsenter execs shuntd: same pid
        if proc_status(pid).get("Name") != "shuntd":
            raise BenchError("pid %d is %r, not shuntd" % (pid, proc_status(pid).get("Name")))
        return pid

    # ---- counters --------------------------------------------------------------------
    def upstream_counts(self, port=STATUS_PORT):
        p = N.run(self.node.nsenter("node") + [N.PYTHON, "-c", STUB_READER, str(port),
                                               "baseline=" + N.BASE4, "sandbox=" + N.SBX4])
        return json.loads(p.stdout)

    def grpc_counts(self):
        """Who calls each gRPC server answered (asked from the node netns: never captured)."""
        p = N.run(self.node.nsenter("node") + [N.PYTHON, "-c", GRPC_COUNT_READER,
                                               "baseline=" + N.hostport(N.BASE4, GRPC_DIRECT_PORT),
                                               "sandbox=" + N.hostport(N.SBX4, GRPC_SVC_PORT)])
        return json.loads(p.stdout)

    def shunt_counts(self):
        st = self.node.status()
        px = st.get("proxy") or st.get("proxy_counters") or {}
        if not isinstance(px, dict) or "accepted" not in px:
            raise BenchError("shuntctl status -o json has no proxy counters: %r" % st)
        if self.agents[self.agent].infer:
            inf = self.inference()
            px = dict(px, infer_accepted=inf["accepted"], infer_inbound=inf["inbound"],
                      infer_inbound_keyed=inf["inbound_keyed"])
        return px

    def inference(self):
        """INFER_POD's inference counters (shuntctl pod list -o json)."""
        pods = [p for p in self.node.ctl_json("pod", "list") if p.get("name") == INFER_POD]
        if len(pods) != 1 or not pods[0].get("inference") or pods[0]["inference"].get("mode") != "shadow":
            raise BenchError("shuntctl pod list -o json: %s is not in-pod with inference in shadow mode: %r"
                             % (INFER_POD, pods))
        return pods[0]["inference"]

    def client_run(self, argv, timeout, row=None):
        try:
            if row is not None and row.client != "client":
                return self.node.pod_run(row.client, argv, in_cgroup=False, timeout=timeout)
            return self.node.client_cmd(argv, timeout=timeout)
        except AssertionError as e:
            raise BenchError(str(e))

    def check_counts(self, row, up0, up1, sh0, sh1, completed, what, self_counted=1):
        """Upstream and shuntd counters moved as the row says, and only so;
        returns the requests the row's pod served meanwhile.
        self_counted: requests the second counter read adds itself (stub_status: 1)."""
        other = "sandbox" if row.pod == "baseline" else "baseline"
        got = up1[row.pod] - up0[row.pod] - self_counted
        stray = up1[other] - up0[other] - self_counted
        if stray != 0:
            raise BenchError("%s %s: MISROUTED: %d requests reached %s (and %d %s)"
                             % (row.name, what, stray, other, got, row.pod))
        if got < completed:
            raise BenchError("%s %s: %s served %d requests, the client completed %d"
                             % (row.name, what, row.pod, got, completed))
        acc = sh1["accepted"] - sh0["accepted"]
        req = sh1["requests"] - sh0["requests"]
        if row.via == "shunt":
            field = "to_sandbox" if row.keyed else "to_baseline"
            wrong = "to_baseline" if row.keyed else "to_sandbox"
            if sh1[field] - sh0[field] < completed:
                raise BenchError("%s %s: shuntd counted %d %s, the client completed %d"
                                 % (row.name, what, sh1[field] - sh0[field], field, completed))
            if sh1[wrong] - sh0[wrong]:
                raise BenchError("%s %s: MISROUTED: shuntd counted %d %s"
                                 % (row.name, what, sh1[wrong] - sh0[wrong], wrong))
        elif row.via == "infer":  # relayed in the pod: counted for the pod, never as proxy requests
            inb = sh1["infer_inbound"] - sh0["infer_inbound"]
            keyed = sh1["infer_inbound_keyed"] - sh0["infer_inbound_keyed"]
            taken = sh1["infer_accepted"] - sh0["infer_accepted"]
            if req or acc != taken:
                raise BenchError("%s %s: shuntd accepted %d connections (%d of them %s's inbound) and counted %d "
                                 "proxy requests: only relayed inbound connections expected"
                                 % (row.name, what, acc, taken, INFER_POD, req))
            if inb < completed:
                raise BenchError("%s %s: shuntd relayed %d inbound requests of %s, the client completed %d"
                                 % (row.name, what, inb, INFER_POD, completed))
            if keyed != (inb if row.keyed else 0):
                raise BenchError("%s %s: shuntd saw %d of the %d inbound requests keyed, the client sent %s"
                                 % (row.name, what, keyed, inb, "all" if row.keyed else "none"))
        elif acc or req:
            raise BenchError("%s %s: shuntd captured %d connections / %d requests of a row that must bypass it"
                             % (row.name, what, acc, req))
        return got

    def proxy_pids(self, row):
        """The processes whose threads do the row's proxying (none for a direct row)."""
        if row.via == "direct":
            return []
        return [self.shuntd_pid] if row.via in ("shunt", "infer") else [self.peers[row.proxy].pid]

    def account(self, row, kind, s0, s1, served):
        """Add one run's proxy CPU time (samples s0, s1 of task_stats) and the requests it served."""
        c = row.cpu.setdefault(kind, [0, 0])
        c[0] += cpu_delta(s0, s1)
        c[1] += served
        if row.via in ("shunt", "infer"):
            ag = self.agents[row.agent]
            ag.threads = max(ag.threads, len(s0), len(s1))

    # ---- the single-connection latency test --------------------------------------------
    def latency_once(self, row, n, warmup, mode=None):
        """One connection, warmup + n requests; returns latclient's JSON.
        mode: "free" or "pinned" to add the proxy's CPU time to the row's (None: a discarded run)."""
        self.use_agent(row.agent)
        argv = self.latclient + [row.host, str(row.port), str(n), str(warmup), row.pod]
        if row.keyed:
            argv.append(KEY_HEADER)
        up0, sh0 = self.upstream_counts(), self.shunt_counts()
        pids, up_pids = self.proxy_pids(row), [self.nginx[row.pod][0].pid]
        t0, u0 = task_stats(pids), task_stats(up_pids)
        rc, out, err = self.client_run(argv, timeout=120, row=row)
        t1, u1 = task_stats(pids), task_stats(up_pids)
        if rc != 0:
            raise BenchError("%s: latency client failed (rc %d): %s%s" % (row.name, rc, err.strip(), out.strip()))
        res = json.loads(out.strip().splitlines()[-1])
        if res["pod"] != row.pod:
            raise BenchError("%s: MISROUTED: answer from %r, expected %r" % (row.name, res["pod"], row.pod))
        if res["peer"] != row.peer:
            raise BenchError("%s: upstream saw the client as %r, expected %r (%s)" % (
                row.name, res["peer"], row.peer,
                peer_note(row)))
        served = self.check_counts(row, up0, self.upstream_counts(), sh0, self.shunt_counts(), n + warmup,
                                   "latency run")
        if mode:
            self.account(row, mode, t0, t1, served)
        if mode == "free":
            row.placement.append((res.get("cpu"), busiest_cpu(t0, t1) if pids else None, busiest_cpu(u0, u1)))
        return res

    def latency_all(self, pinned):
        """Interleaved rounds, one connection per row and round; samples pooled per row.

        A discarded pass first (everything hot), then `rounds` passes over all
        rows in a rotating order, so a slow spell of the machine lands on every
        row alike instead of on whichever row happened to run then. pinned:
        the client, shuntd, every nginx process and HAProxy on CPU 0 (see pin())."""
        a = self.a
        rounds = max(1, a.rounds)
        per = max(1, a.requests // rounds)
        warm = max(1, a.warmup // rounds)
        mode = "pinned" if pinned else "free"
        tag = "1-cpu0" if pinned else "1-conn"
        prefix = ["taskset", "-c", str(PIN_CPU)] if pinned else []
        base = self.latclient
        self.latclient = prefix + base
        try:
            if pinned:
                self.pin(True)
                self.pinned_now = True
            for r in self.rows:
                self.latency_once(r, max(1, min(200, a.warmup)), 0)
            samples = {r.name: [] for r in self.rows}
            total_ns = {r.name: 0 for r in self.rows}
            for k in range(rounds):
                order = self.rows[k % len(self.rows):] + self.rows[:k % len(self.rows)]
                for r in order:
                    res = self.latency_once(r, per, warm, mode)
                    samples[r.name] += res["lat_ns"]
                    r.round_p50.setdefault(mode, []).append(sorted(res["lat_ns"])[len(res["lat_ns"]) // 2])
                    total_ns[r.name] += res["total_ns"]
                    r.first = (res["pod"], res["peer"])
        finally:
            self.latclient = base
            if pinned:
                self.pinned_now = False
                self.pin(False)
        for r in self.rows:
            lat = sorted(samples[r.name])
            n = len(lat)

            def pct(p):
                return lat[min(max(-(-p * n // 100), 1), n) - 1]

            r.lat[mode] = {"n": n, "p50_ns": pct(50), "p99_ns": pct(99), "mean_ns": sum(lat) / n,
                           "rps": n / (total_ns[r.name] / 1e9)}
            x = r.lat[mode]
            self.log("%s %-19s p50 %7.1f us  p99 %7.1f us  %8.0f req/s  cpu %5s us/req  (%d requests, every one "
                     "from %s; peer seen %s)" % (tag, r.name, us(x["p50_ns"]), us(x["p99_ns"]), x["rps"],
                                                 fmt_cpu(r.cpu_us(mode)), n, r.first[0], r.first[1]))

    def pin(self, on):
        """Every thread of shuntd, of the nginx processes and of HAProxy on
        CPU PIN_CPU (on) or back on the CPUs it had before (shuntd's workers
        pin themselves, one per CPU); a thread first seen pinned (an agent
        swapped in meanwhile) keeps the affinity it had then."""
        pids = ([self.shuntd_pid] + [p.pid for name, p in self.peers.items() if name.startswith("haproxy")]
                + [proc.pid for proc, _ in self.nginx.values()])
        for tid in task_stats(pids):
            try:
                if on:
                    self.saved_affinity.setdefault(tid, os.sched_getaffinity(tid))
                os.sched_setaffinity(tid, {PIN_CPU} if on else self.saved_affinity.get(tid, self.all_cpus))
            except ProcessLookupError:  # a thread that just exited
                pass
        if not on:
            self.saved_affinity = {}

    # ---- wrk -----------------------------------------------------------------------------
    def wrk_argv(self, row, duration):
        argv = [WRK, "-t%d" % self.a.threads, "-c%d" % self.a.connections, "-d%ds" % duration, "--latency"]
        if row.keyed:
            argv += ["-H", KEY_HEADER]
        return argv + ["http://%s/" % N.hostport(row.host, row.port)]

    def load(self, row):
        self.use_agent(row.agent)
        if self.a.wrk_warmup > 0:
            rc, out, err = self.client_run(self.wrk_argv(row, self.a.wrk_warmup), timeout=self.a.wrk_warmup + 30,
                                           row=row)
            if rc != 0:
                raise BenchError("%s: wrk warmup failed (rc %d): %s%s" % (row.name, rc, out, err))
        up0, sh0 = self.upstream_counts(), self.shunt_counts()
        pids = self.proxy_pids(row)
        t0 = task_stats(pids)
        rc, out, err = self.client_run(self.wrk_argv(row, self.a.duration), timeout=self.a.duration + 30, row=row)
        t1 = task_stats(pids)
        if rc != 0:
            raise BenchError("%s: wrk failed (rc %d): %s%s" % (row.name, rc, out, err))
        res = parse_wrk(out)
        if res["non2xx"] or any(res["sock_errors"]):
            raise BenchError("%s: wrk saw %d non-2xx responses and socket errors (connect, read, write, "
                             "timeout) %s:\n%s" % (row.name, res["non2xx"], res["sock_errors"], out))
        served = self.check_counts(row, up0, self.upstream_counts(), sh0, self.shunt_counts(), res["requests"],
                                   "wrk run")
        self.account(row, "wrk", t0, t1, served)
        res["cpu_us"] = cpu_delta(t0, t1) / served / 1000.0 if pids and served else 0.0
        row.wrk_runs.append(res)
        row.wrk = {k: sum(x[k] for x in row.wrk_runs) / len(row.wrk_runs) for k in ("p50_us", "p99_us", "rps")}
        self.log("wrk    %-19s p50 %7.1f us  p99 %7.1f us  %8.0f req/s  cpu %5s us/req  (%d requests, all 200 "
                 "from %s)" % (row.name, res["p50_us"], res["p99_us"], res["rps"], fmt_cpu(row.cpu_us("wrk")),
                               res["requests"], row.pod))

    # ---- RSS with many idle keep-alive connections -------------------------------------
    def rss(self):
        for agent in ("new", "base") if self.a.baseline else ("new",):
            self.use_agent(agent)
            self.rss_once()
            self.rss_by[agent] = self.rss_res
        self.rss_res = self.rss_by["new"]

    def rss_once(self):
        pid, n = self.shuntd_pid, self.a.idle
        before = proc_status(pid)
        hwm_reset = True
        try:
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            hwm_reset = False
        sh0 = self.shunt_counts()
        cmd = "echo $$ > %s && exec %s" % (
            shlex.quote(os.path.join(self.node.cg, "cgroup.procs")),
            shlex.join(self.node.nsenter("client") + [N.PYTHON, os.path.join(BENCH_DIR, "idleconns.py"), N.BASE4,
                                                      str(SVC_PORT), str(n), KEY_HEADER, "sandbox", "baseline"]))
        errf = os.path.join(self.tmp, "idleconns.stderr")
        p = self.node.spawn(["sh", "-c", cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(errf, "ab"))

        def line(timeout):
            r, _, _ = select.select([p.stdout], [], [], timeout)
            if not r:
                raise BenchError("idle-connection client: no answer in %ds; stderr: %s" % (timeout, N._read_from(errf)))
            txt = p.stdout.readline()
            if not txt:
                raise BenchError("idle-connection client exited (rc %s): %s" % (p.wait(5), N._read_from(errf)))
            msg = json.loads(txt)
            if "error" in msg:
                raise BenchError("idle-connection client: %s" % msg["error"])
            return msg

        try:
            ready = line(60)
            time.sleep(1.0)  # let it settle: every connection idle, upstreams back in the pool or closed
            sh1 = self.shunt_counts()
            held = proc_status(pid)
            fds = len(os.listdir("/proc/%d/fd" % pid))
            p.stdin.write(b"close\n")
            p.stdin.flush()
            closed = line(30)
            p.wait(10)
        finally:
            if p.poll() is None:
                N._killpg(p)
                p.wait(5)
        time.sleep(0.5)
        after = proc_status(pid)
        if ready["pods"] != {"sandbox": (n + 1) // 2, "baseline": n // 2}:
            raise BenchError("idle connections: wrong pods %r" % ready["pods"])
        if sh1["accepted"] - sh0["accepted"] != n or sh1["active"] < n:
            raise BenchError("idle connections: shuntd accepted %d (active %d), expected %d"
                             % (sh1["accepted"] - sh0["accepted"], sh1["active"], n))
        if closed["alive_before_close"] != n:
            raise BenchError("idle connections: only %d of %d were still open after the measurement"
                             % (closed["alive_before_close"], n))
        self.rss_res = {"n": n, "before_kb": kb(before["VmRSS"]), "held_rss_kb": kb(held["VmRSS"]),
                    "peak_kb": kb(held["VmHWM"]), "after_kb": kb(after["VmRSS"]), "hwm_reset": hwm_reset,
                    "fds": fds, "active": sh1["active"], "threads": held["Threads"],
                    "setup_s": ready["setup_s"]}
        self.log("rss    %d idle keep-alive connections through shunt: VmHWM %.1f MiB, VmRSS %.1f MiB "
                 "(before %.1f MiB), shuntd holds %d fds" % (n, mib(self.rss_res["peak_kb"]),
                                                            mib(self.rss_res["held_rss_kb"]),
                                                            mib(self.rss_res["before_kb"]), fds))

    # ---- HTTP/2: h2load and gRPC unary, direct, through shunt, nginx and HAProxy --------------
    def h2_setup(self):
        """HTTP/2 servers and peers, started now so that the rows above ran as before."""
        self.use_agent("new")  # the HTTP/2 rows measure --build's shuntd only
        self.start_nginx("h2-baseline", "base", self.a.upstream_workers, UPSTREAM_BODY.format(
            listens="        listen %s:%d http2;\n        listen %s:%d http2;" % (
                N.BASE4, H2_SVC_PORT, N.BASE4, H2_DIRECT_PORT),
            pod="baseline", ip=N.BASE4, status_port=H2_STATUS_PORT))
        self.start_nginx("h2-sandbox", "sbx", self.a.upstream_workers, UPSTREAM_BODY.format(
            listens="        listen %s:%d http2;" % (N.SBX4, H2_SVC_PORT), pod="sandbox", ip=N.SBX4,
            status_port=H2_STATUS_PORT))
        self.start_nginx("peer-h2", "node", 1, PEER_H2_BODY.format(
            key=re.escape(KEY), base=N.BASE4, sbx=N.SBX4, h2_port=H2_SVC_PORT, grpc_port=GRPC_SVC_PORT, ip=N.NODE4,
            peer_h2_port=PEER_H2_PORT, peer_grpc_port=PEER_GRPC_PORT))
        self.start_haproxy("haproxy-h2", [("h2", HAP_H2_PORT, H2_SVC_PORT), ("grpc", HAP_GRPC_PORT, GRPC_SVC_PORT)],
                           proto=" proto h2")
        started = []
        for pod, name, ports in (("base", "baseline", (GRPC_SVC_PORT, GRPC_DIRECT_PORT)),
                                 ("sbx", "sandbox", (GRPC_SVC_PORT,))):
            with open(os.path.join(self.tmp, "grpc-%s.stderr" % name), "ab") as err:
                p = self.node.spawn(self.node.nsenter(pod) + [
                    N.PYTHON, "-B", GRPCBENCH, "serve", "--name", name, "--ports", ",".join(map(str, ports)),
                    "--ready", os.path.join(self.tmp, "grpc-%s.ready" % name)], stdout=subprocess.DEVNULL, stderr=err)
            started += [(pod, port, p) for port in ports]
        self.wait_nginx()
        self.peers["nginx-h2"] = self.nginx["peer-h2"][0]
        try:
            for pod, port, proc in started:
                self.node.wait_listen(pod, port, timeout=30, proc=proc)
        except N.HarnessError as e:
            logs = [os.path.join(self.tmp, "grpc-%s.stderr" % n) for n in ("baseline", "sandbox")]
            raise BenchError("%s\ngRPC servers: %s%s" % ((e,) + tuple(map(N._read_from, logs))))
        for port in (H2_SVC_PORT, GRPC_SVC_PORT):
            self.add_route(N.hostport(N.BASE4, port), N.hostport(N.SBX4, port))
        p = N.run([H2LOAD, "--version"], check=False)
        self.h2_versions["h2load"] = p.stdout.strip()
        p = N.run([N.PYTHON, "-c", "import grpc; print(grpc.__version__)"], check=False)
        self.h2_versions["grpc"] = p.stdout.strip() or "?"
        self.log("HTTP/2: h2c nginx and gRPC servers in the pods, nginx (grpc_pass) and HAProxy peers up; routes "
                 "%s and %s key %s -> sandbox" % (N.hostport(N.BASE4, H2_SVC_PORT), N.hostport(N.BASE4, GRPC_SVC_PORT),
                                                 KEY))

    def h2_first(self, row):
        """One HTTP/2 request with curl: the answering pod and the peer it saw."""
        argv = ["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", "-o", "/dev/null", "-D", "-"]
        if row.keyed:
            argv += ["-H", KEY_HEADER]
        rc, out, err = self.client_run(argv + ["http://%s/" % N.hostport(row.host, row.port)], timeout=30)
        hdrs = {}
        for ln in out.splitlines():
            k, sep, v = ln.partition(":")
            if sep:
                hdrs[k.strip().lower()] = v.strip()
        if rc != 0 or not out.startswith("HTTP/2 200"):
            raise BenchError("%s (h2): curl --http2-prior-knowledge failed (rc %d): %s%s" % (row.name, rc, err, out))
        return hdrs.get("x-pod"), hdrs.get("x-peer")

    def check_first(self, row, pod, peer, what):
        if pod != row.pod:
            raise BenchError("%s (%s): MISROUTED: answer from %r, expected %r" % (row.name, what, pod, row.pod))
        if peer != row.peer:
            raise BenchError("%s (%s): upstream saw the client as %r, expected %r (%s)" % (
                row.name, what, peer, row.peer,
                peer_note(row)))

    def h2load_once(self, row):
        """h2load for one row: {"lat_us": [...], "rps", "requests"}; every count checked."""
        a = self.a
        pod, peer = self.h2_first(row)
        self.check_first(row, pod, peer, "h2")
        log = os.path.join(self.tmp, "h2load.log")
        if os.path.exists(log):
            os.unlink(log)
        argv = [H2LOAD, "-c%d" % a.h2_clients, "-m%d" % a.h2_streams, "-D%d" % a.h2_duration, "--log-file=" + log]
        if a.h2_warmup > 0:
            argv.append("--warm-up-time=%d" % a.h2_warmup)
        if row.keyed:
            argv += ["-H", KEY_HEADER]
        argv.append("http://%s/" % N.hostport(row.host, row.port))
        up0, sh0 = self.upstream_counts(H2_STATUS_PORT), self.shunt_counts()
        pids = self.proxy_pids(row)
        t0 = task_stats(pids)
        rc, out, err = self.client_run(argv, timeout=a.h2_duration + a.h2_warmup + 60)
        t1 = task_stats(pids)
        if rc != 0:
            raise BenchError("%s: h2load failed (rc %d): %s%s" % (row.name, rc, err, out))
        m_rps = re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s", out, re.M)
        m_req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                          r"(\d+) errored, (\d+) timeout", out, re.M)
        m_st = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
        if not (m_rps and m_req and m_st):
            raise BenchError("%s: h2load output not understood:\n%s" % (row.name, out))
        if not re.search(r"^Application protocol: h2c$", out, re.M):
            raise BenchError("%s: h2load did not speak h2c:\n%s" % (row.name, out))
        bad = [int(x) for x in m_req.groups()[4:]] + [int(x) for x in m_st.groups()[1:]]
        if any(bad):
            raise BenchError("%s: h2load saw failed/errored/timed-out streams or non-2xx answers %s:\n%s"
                             % (row.name, bad, out))
        lat, other = [], 0
        with open(log) as f:
            for ln in f:
                cols = ln.split("\t")
                if len(cols) < 3:
                    continue
                if cols[1] == "200":
                    lat.append(int(cols[2]))
                elif cols[1] != "0":  # 0: a stream still open when the duration ended
                    other += 1
        if other or not lat:
            raise BenchError("%s: h2load logged %d requests that were not 200 and %d that were"
                             % (row.name, other, len(lat)))
        served = self.check_counts(row, up0, self.upstream_counts(H2_STATUS_PORT), sh0, self.shunt_counts(),
                                   len(lat), "h2load run")
        self.account(row, "h2", t0, t1, served)  # served: h2load's warm-up requests too, as the CPU time
        return {"lat_us": lat, "rps": float(m_rps.group(1)), "requests": len(lat)}

    def grpc_once(self, row):
        """grpcbench.py run for one row: {"lat_us": [...], "rps", "requests"}; every call checked."""
        a = self.a
        argv = [N.PYTHON, "-B", GRPCBENCH, "run", N.hostport(row.host, row.port), str(a.grpc_calls),
                str(a.grpc_concurrency), str(GRPC_WARMUP)]
        if row.keyed:
            argv.append(KEY_HEADER.split(":", 1)[1].strip())
        up0, sh0 = self.grpc_counts(), self.shunt_counts()
        pids = self.proxy_pids(row)
        t0 = task_stats(pids)
        rc, out, err = self.client_run(argv, timeout=180)
        t1 = task_stats(pids)
        if rc != 0:
            raise BenchError("%s: gRPC client failed (rc %d): %s%s" % (row.name, rc, err.strip(), out.strip()))
        res = json.loads(out.strip().splitlines()[-1])
        if res["failed"]:
            raise BenchError("%s: %d gRPC calls failed: %s" % (row.name, res["failed"], res["errors"]))
        self.check_first(row, res["first"]["pod"], res["first"]["peer"], "gRPC")
        calls = a.grpc_calls + GRPC_WARMUP
        if res["pods"] != {row.pod: calls}:
            raise BenchError("%s: MISROUTED: gRPC answers from %r, expected %d from %s"
                             % (row.name, res["pods"], calls, row.pod))
        served = self.check_counts(row, up0, self.grpc_counts(), sh0, self.shunt_counts(), calls, "gRPC run",
                                   self_counted=0)
        self.account(row, "h2", t0, t1, served)
        return {"lat_us": [x / 1000.0 for x in res["lat_ns"]], "rps": res["rps"], "requests": res["n"]}

    def h2_all(self):
        """Both HTTP/2 clients over their rows, in interleaved rounds (as latency_all)."""
        a = self.a
        self.h2_setup()
        rounds = max(1, a.h2_rounds)
        for tag, rows, once in (("h2load", self.h2_rows, self.h2load_once), ("grpc", self.grpc_rows, self.grpc_once)):
            if tag == "h2load":
                self.log("HTTP/2 h2load -c%d -m%d -D%ds per row, %d rounds" % (a.h2_clients, a.h2_streams,
                                                                             a.h2_duration, rounds))
            else:
                self.log("HTTP/2 gRPC unary: %d calls per row, %d in flight, %d rounds" % (
                    a.grpc_calls, a.grpc_concurrency, rounds))
            for k in range(rounds):
                for r in rows[k % len(rows):] + rows[:k % len(rows)]:
                    r.h2_runs.append(once(r))
            for r in rows:
                lat = sorted(x for run in r.h2_runs for x in run["lat_us"])
                n = len(lat)

                def pct(p):
                    return lat[min(max(-(-p * n // 100), 1), n) - 1]

                r.h2 = {"n": n, "p50_us": pct(50), "p99_us": pct(99),
                        "rps": sum(x["rps"] for x in r.h2_runs) / len(r.h2_runs)}
                self.log("%-6s %-16s p50 %7.1f us  p99 %7.1f us  %8.0f req/s  cpu %5s us/req  (%d requests, all "
                         "from %s)" % (tag, r.name, r.h2["p50_us"], r.h2["p99_us"], r.h2["rps"],
                                       fmt_cpu(r.cpu_us("h2")), n, r.pod))

    # ---- report ----------------------------------------------------------------------------
    def report(self):
        a = self.a
        ncpu = os.cpu_count()
        try:
            model = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")][0]
        except (OSError, IndexError):
            model = "?"
        client = "C client latclient.c" if a.client == "c" else "Python http.client loop latclient.py"
        P = print
        P()
        P("=" * 92)
        P("shunt benchmark  run %s  %s" % (self.node.id, datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")))
        P("machine   %d CPUs (%s), Linux %s: client, proxy and upstream servers share them"
          % (ncpu, model, platform.release()))
        P("shuntd    %s" % self.build_id)
        P("          in the node netns, captured via cgroup/connect4; rows shunt-nokey, shunt-key: %s"
          % self.agent_text("new"))
        for name, ag in self.agents.items():
            if ag.infer:
                P("          rows infer-relay-*: %s; %s in-pod (the baseline pod), pod infer shadow --port %d"
                  % (self.agent_text(name), INFER_POD, DIRECT_PORT))
            elif name not in ("new", "base"):
                P("          row shunt-%s-key: %s" % (name, self.agent_text(name)))
        P("          " + self.variants_note)
        if a.baseline:
            P("baseline  %s" % self.build_ids["base"])
            P("          rows base:*: %s; agents swapped %d times" % (self.agent_text("base"), self.switches))
        elif len(self.agents) > 1:
            P("          agents swapped %d times" % self.switches)
        P("nginx     routing peer in the node netns: 1 worker, map $http_baggage -> proxy_pass, upstream")
        P("          keepalive 64, access_log off (%s)" % self.nginx_version)
        P("haproxy   routing peer in the node netns: nbthread 1, use_backend sandbox when a baggage member")
        P("          (req.hdr) matches ^sd-routing-key=%s(;|$), http-reuse always, no log (HAProxy %s)"
          % (KEY, self.haproxy_version))
        P("upstreams nginx in the baseline and sandbox pods, %s workers each, 20-byte body, access_log off"
          % a.upstream_workers)
        P("key       %s" % KEY_HEADER)
        P("cpu       us/req: the proxy's on-CPU time over a run (first field of /proc/PID/task/*/schedstat, every")
        P("          thread of shuntd, of the nginx peer's master and worker, of HAProxy) divided by the requests")
        P("          the upstream served meanwhile; latency tables: every round with its warmup; wrk: the measured")
        P("          runs, not their warmup")
        cpu_s, wall, top = self.foreign
        share = cpu_s / (wall * (ncpu or 1))
        P("other     CPUs %.0f%% busy just before the run; other user processes took %.1f CPU-s during"
          % (100 * self.busy_before, cpu_s))
        P("          its %.0f s (%.0f%% of the machine)%s" % (
            wall, 100 * share, ": " + ", ".join("%s[%d] %.1fs" % (c, p, t) for t, c, p in top) if top else ""))
        if share > 0.05 or self.busy_before > 0.10:
            P("          WARNING: the machine was not idle; every number below is disturbed by that load")
        P("ratios    *-nokey rows against direct-baseline, *-key rows against direct-sandbox")
        if "infer-relay-nokey" in self.by_name:
            P("          but infer-relay-* (direct-baseline's port, relayed in the pod) against direct-baseline")
        P()
        P("Single keep-alive connection per row and round (%s): %d requests per row after %d warmup,"
          % (client, a.requests, a.warmup))
        P("in %d interleaved rounds, percentiles over all; latency = first byte written to last byte read"
          % a.rounds)
        if a.client == "python":
            P("(the Python client's own per-request cost, tens of us, is in every row alike: the ratios")
            P(" understate the proxy's share; the default C client avoids that)")
        hdr = "  %-19s %9s %9s %10s %10s %10s %10s"
        for mode, title in self.lat_modes():
            P()
            P(title)
            P(hdr % ("row", "p50 us", "p99 us", "req/s", "p50 ratio", "p99 ratio", "cpu us/req"))
            for r in self.rows:
                x, ref = r.lat[mode], self.by_name[r.ref].lat[mode]
                P("  %-19s %9.1f %9.1f %10.0f %10s %10s %10s" % (
                    r.name, us(x["p50_ns"]), us(x["p99_ns"]), x["rps"], fmt_ratio(x["p50_ns"] / ref["p50_ns"]),
                    fmt_ratio(x["p99_ns"] / ref["p99_ns"]), fmt_cpu(r.cpu_us(mode))))
            if mode == "free":
                self.report_placement()
        P()
        P("Load: wrk -t%d -c%d -d%ds --latency (after a %ds warmup per row)"
          % (a.threads, a.connections, a.duration, a.wrk_warmup))
        P(hdr % ("row", "p50 us", "p99 us", "req/s", "p50 ratio", "req/s ratio", "cpu us/req"))
        for r in self.rows:
            ref = self.by_name[r.ref].wrk
            P("  %-19s %9.1f %9.1f %10.0f %10s %10s %10s" % (
                r.name, r.wrk["p50_us"], r.wrk["p99_us"], r.wrk["rps"], fmt_ratio(r.wrk["p50_us"] / ref["p50_us"]),
                fmt_ratio(r.wrk["rps"] / ref["rps"]), fmt_cpu(r.cpu_us("wrk"))))
        P()
        s = self.rss_res
        P("RSS       shuntd with %d idle keep-alive connections (half keyed -> sandbox, half -> baseline):"
          % s["n"])
        P("          peak VmHWM %.1f MiB%s, VmRSS %.1f MiB while held, %.1f MiB before, %.1f MiB after close"
          % (mib(s["peak_kb"]), " (reset just before)" if s["hwm_reset"] else " (since start)",
             mib(s["held_rss_kb"]), mib(s["before_kb"]), mib(s["after_kb"])))
        P("          shuntd: %d open fds, %d active client connections, %s thread(s)"
          % (s["fds"], s["active"], s["threads"]))
        P()
        P("Targets of issue 13 for the default agent, and (issue 14) the same for it in-pod (reported; they do\n"
          "not change the exit status)")
        res = []

        def target(ok, text):
            if ok is not None:
                res.append(ok)
            P("  %s  %s" % ("skip" if ok is None else "PASS" if ok else "FAIL", text))

        pinned = "pinned" in self.rows[0].lat
        modes = (["shunt-"] + (["shunt-inpod-"] if "shunt-inpod-key" in self.by_name else [])
                 + (["shunt-tc-"] if "shunt-tc-key" in self.by_name else []))
        pairs = [(self.by_name[m + k], self.by_name["nginx-" + k], self.by_name["haproxy-" + k])
                 for m in modes for k in ("nokey", "key")]
        for r, _, _ in pairs:
            ref = self.by_name[r.ref]
            free_add = us(r.lat["free"]["p50_ns"] - ref.lat["free"]["p50_ns"])
            if not pinned:
                target(None, "(a) %-12s free-scheduled added latency vs pinned: needs the pinned pass (--no-pinned)"
                       % r.name)
                continue
            pin_add = us(r.lat["pinned"]["p50_ns"] - ref.lat["pinned"]["p50_ns"])
            target(free_add <= TARGET_FREE_ADD * pin_add,
                   "(a) %-12s p50 over %s: free-scheduled +%.1f us, pinned +%.1f us: %s (target <= %.1fx)"
                   % (r.name, r.ref, free_add, pin_add, fmt_ratio(free_add / pin_add if pin_add > 0 else None),
                      TARGET_FREE_ADD))
        for r, ngx, hap in pairs:
            mine = r.lat["free"]["p50_ns"]
            target(all(mine <= p.lat["free"]["p50_ns"] for p in (ngx, hap)),
                   "(b) %-12s free-scheduled p50 %.1f us vs %s %.1f us, %s %.1f us (target <= both)"
                   % (r.name, us(mine), ngx.name, us(ngx.lat["free"]["p50_ns"]), hap.name,
                      us(hap.lat["free"]["p50_ns"])))
        for r, _, _ in pairs:
            if not pinned:
                target(None, "(c) %-12s pinned p50 vs direct: needs the pinned pass (--no-pinned)" % r.name)
                continue
            mine, ref = r.lat["pinned"]["p50_ns"], self.by_name[r.ref].lat["pinned"]["p50_ns"]
            target(mine <= TARGET_PINNED * ref, "(c) %-12s pinned p50 %.1f us, %s %.1f us: %.2fx (target <= %.1fx)"
                   % (r.name, us(mine), r.ref, us(ref), mine / ref, TARGET_PINNED))
        for r, ngx, _ in pairs:
            mine, theirs = r.cpu_us("wrk"), ngx.cpu_us("wrk")
            target(mine <= TARGET_CPU * theirs, "(d) %-12s cpu %.1f us/req, %s %.1f us/req: %.2fx (target <= %.1fx; "
                   "wrk runs)" % (r.name, mine, ngx.name, theirs, mine / theirs, TARGET_CPU))
        for r, ngx, _ in pairs:
            mine, theirs = r.wrk["rps"], ngx.wrk["rps"]
            target(mine >= TARGET_RPS * theirs, "(e) %-12s wrk-c%d %.0f req/s, %s %.0f req/s: %.2fx (target >= %.1fx)"
                   % (r.name, a.connections, mine, ngx.name, theirs, mine / theirs, TARGET_RPS))
        target(mib(s["peak_kb"]) < TARGET_RSS_MIB, "rss %-12s peak %.1f MiB with %d idle connections (target < %d MiB)"
               % ("shuntd", mib(s["peak_kb"]), s["n"], TARGET_RSS_MIB))
        P("  %d of %d targets met" % (sum(res), len(res)))
        if a.baseline:
            self.report_compare()

    def report_h2(self):
        """The HTTP/2 section: h2load and gRPC tables, then their targets."""
        a = self.a
        P = print
        P()
        P("=" * 92)
        P("HTTP/2 (h2c, prior knowledge): every stream routed by its own baggage; same node, shuntd and run")
        P("shunt     routes %s and %s, key %s -> the sandbox pod's same port"
          % (N.hostport(N.BASE4, H2_SVC_PORT), N.hostport(N.BASE4, GRPC_SVC_PORT), KEY))
        P("nginx     HTTP/2 peer in the node netns: 1 worker, the same map $http_baggage -> grpc_pass, upstream")
        P("          keepalive 64 (%s). nginx 1.22's proxy_pass has no HTTP/2 upstreams; grpc_pass is its only"
          % self.nginx_version)
        P("          HTTP/2 upstream client and forwards any HTTP/2 request, so the h2load rows use it too")
        P("haproxy   peer in the node netns: nbthread 1, bind proto h2, servers proto h2, use_backend sandbox when")
        P("          a baggage member (req.hdr) matches ^sd-routing-key=%s(;|$) (HAProxy %s)"
          % (KEY, self.haproxy_version))
        P("upstreams h2: nginx `listen ... http2` in the pods, %s workers, 20-byte body; gRPC: grpcbench.py"
          % a.upstream_workers)
        P("          (python3-grpcio %s, asyncio) in the pods, unary /shunt.Bench/Who answers the pod name"
          % self.h2_versions["grpc"])
        P("ratios    *-nokey rows against direct-baseline, *-key rows against direct-sandbox")
        P("cpu       us/req as in the HTTP/1.1 section, over every run of the row (h2load's warm-up included)")
        hdr = "  %-16s %9s %9s %10s %10s %10s %10s %10s"
        rounds = max(1, a.h2_rounds)
        tables = (
            (self.h2_rows, "h2load -c%d -m%d -D%ds (--warm-up-time %ds) per row and round, %d interleaved rounds "
             "(%s);\np50/p99 over every request of every round (--log-file), req/s the mean of the rounds"
             % (a.h2_clients, a.h2_streams, a.h2_duration, a.h2_warmup, rounds, self.h2_versions["h2load"])),
            (self.grpc_rows, "gRPC unary (grpcbench.py run): one channel, %d calls in flight, %d calls per row and "
             "round after %d warmup,\n%d interleaved rounds, percentiles over all; both ends are Python and take "
             "most of each call" % (a.grpc_concurrency, a.grpc_calls, GRPC_WARMUP, rounds)),
        )
        for rows, title in tables:
            by = {r.name: r for r in rows}
            P()
            P(title)
            P(hdr % ("row", "p50 us", "p99 us", "req/s", "p50 ratio", "p99 ratio", "req/s ratio", "cpu us/req"))
            for r in rows:
                x, ref = r.h2, by[r.ref].h2
                P("  %-16s %9.1f %9.1f %10.0f %10s %10s %10s %10s" % (
                    r.name, x["p50_us"], x["p99_us"], x["rps"], fmt_ratio(x["p50_us"] / ref["p50_us"]),
                    fmt_ratio(x["p99_us"] / ref["p99_us"]), fmt_ratio(x["rps"] / ref["rps"]), fmt_cpu(r.cpu_us("h2"))))
        P()
        P("Targets, HTTP/2 (reported; they do not change the exit status): shunt's p50 and p99 at or below both")
        P("peers', req/s at or above both")
        res = []
        for lab, rows in (("h2load", self.h2_rows), ("grpc", self.grpc_rows)):
            by = {r.name: r for r in rows}
            for name in ("shunt-nokey", "shunt-key"):
                sfx = name.split("-", 1)[1]
                mine, peers = by[name].h2, [by["nginx-" + sfx], by["haproxy-" + sfx]]
                for k, what, fmt in (("p50_us", "p50", "%.1f us"), ("p99_us", "p99", "%.1f us"),
                                     ("rps", "req/s", "%.0f req/s")):
                    higher_better = k == "rps"
                    ok = all(mine[k] >= p.h2[k] if higher_better else mine[k] <= p.h2[k] for p in peers)
                    res.append(ok)
                    P("  %s  %-6s %-12s %-5s %s %s %s" % (
                        "PASS" if ok else "FAIL", lab, name, what, fmt % mine[k], ">=" if higher_better else "<=",
                        ", ".join(("%s " + fmt) % (p.name, p.h2[k]) for p in peers)))
        P("  %d of %d targets met" % (sum(res), len(res)))

    def report_compare(self):
        """new/base per measurement, and whether the difference exceeds the noise."""
        P = print
        P()
        P("Before/after: this build (new) against --baseline (base), same node, same run")
        P("  noise = the spread of the per-round new/base p50 ratios, or of the direct row's per-round p50")
        P("          (latency: rounds interleave both agents; --baseline set to --build itself shows the floor)")
        P("          or the larger relative difference between the two wrk runs of one agent; a row is")
        P("          WORSE only when new/base exceeds 1 + max(5%, noise)")
        P("  %-26s %10s %10s %8s %8s  %s" % ("measurement", "new", "base", "new/base", "noise", "verdict"))
        worse = []

        def line(what, new, base, noise, higher_is_worse=True, unit="us"):
            ratio = new / base if base else float("inf")
            bad = ratio if higher_is_worse else (1 / ratio if ratio else float("inf"))
            verdict = "WORSE" if bad > 1 + max(0.05, noise) else "same" if bad > 1 - max(0.05, noise) else "better"
            if verdict == "WORSE":
                worse.append(what)
            P("  %-26s %8.1f%-2s %8.1f%-2s %8.3f %7.1f%%  %s" % (what, new, unit, base, unit, ratio, 100 * noise,
                                                                 verdict))

        for mode, _ in self.lat_modes():
            tag = "1-conn" if mode == "free" else "1-cpu0"
            for name in ("shunt-nokey", "shunt-key"):
                n, b = self.by_name[name], self.by_name["base:" + name]
                per = [x / y for x, y in zip(n.round_p50[mode], b.round_p50[mode])]
                noise = (max(per) - min(per)) / 2 if len(per) > 1 else 0.0
                d = self.by_name[n.ref].round_p50[mode]  # the direct row: the machine's own wobble
                noise = max(noise, (max(d) - min(d)) / (2 * min(d)) if len(d) > 1 else 0.0)
                line("%s %s p50" % (tag, name), us(n.lat[mode]["p50_ns"]), us(b.lat[mode]["p50_ns"]), noise)
                line("%s %s p99" % (tag, name), us(n.lat[mode]["p99_ns"]), us(b.lat[mode]["p99_ns"]), max(noise, 0.10))
        for name in ("shunt-nokey", "shunt-key"):
            n, b = self.by_name[name], self.by_name["base:" + name]

            def spread(runs, k):
                v = [x[k] for x in runs]
                return (max(v) - min(v)) / (sum(v) / len(v)) if len(v) > 1 else 0.0

            for k, hw, unit in (("rps", False, "/s"), ("p50_us", True, "us"), ("p99_us", True, "us")):
                noise = max(spread(n.wrk_runs, k), spread(b.wrk_runs, k))
                line("wrk %s %s" % (name, k.replace("_us", "")), n.wrk[k], b.wrk[k], noise, hw, unit)
            line("wrk %s cpu/req" % name, n.cpu_us("wrk"), b.cpu_us("wrk"),
                 max(spread(n.wrk_runs, "cpu_us"), spread(b.wrk_runs, "cpu_us")))
        line("rss peak (MiB)", mib(self.rss_by["new"]["peak_kb"]), mib(self.rss_by["base"]["peak_kb"]), 0.0,
             True, "Mi")
        P("  %s" % ("no row worse beyond noise" if not worse else "WORSE beyond noise: " + ", ".join(worse)))

    def report_placement(self):
        """One line per row: where the client, the proxy and the upstream ran in each free-scheduled round."""
        P = print
        P()
        P("Placement, free-scheduled: CPU of client/proxy/upstream at the end of each round (the client's")
        P("sched_getcpu; the proxy's and the upstream nginx's busiest thread in the round, /proc task stat")
        P("field 39; - = no proxy)")
        for r in self.rows:
            txt = ["/".join("-" if c is None else str(c) for c in p) for p in r.placement]
            one = sum(1 for p in r.placement if len({c for c in p if c is not None}) == 1)
            P("  %-19s %s  (one CPU in %d of %d rounds)" % (r.name, " ".join(txt), one, len(r.placement)))

    def agent_text(self, name):
        ag = self.agents[name]
        return "%s, %d thread%s" % (ag.flags(), ag.threads, "" if ag.threads == 1 else "s")

    def lat_modes(self):
        out = [("free", "Scheduler's choice of CPUs (as on a real node):")]
        if "pinned" in self.rows[0].lat:
            out.append(("pinned", "Client, shuntd, every nginx process and HAProxy pinned to CPU %d (no cross-CPU "
                                  "wakeups, which are slow\nand erratic on this VM: what remains is each path's own "
                                  "cost):" % PIN_CPU))
        return out

    def run(self):
        self.busy_before = machine_busy(1.0)
        self.log("CPUs busy before the run (other processes): %.0f%%" % (100 * self.busy_before))
        self.watch = CpuWatch()
        self.log(self.variants_note)
        self.setup()
        p = N.run([NGINX, "-v"], check=False)
        self.nginx_version = (p.stderr or p.stdout).strip().replace("nginx version: ", "")
        self.log("single keep-alive connection: %d requests per row after %d warmup, in %d interleaved rounds"
                 % (self.a.requests, self.a.warmup, self.a.rounds))
        self.latency_all(pinned=False)
        if self.a.pinned:
            self.log("the same with the client, shuntd, every nginx process and HAProxy on CPU %d" % PIN_CPU)
            self.latency_all(pinned=True)
        self.log("load: wrk -t%d -c%d -d%ds per row" % (self.a.threads, self.a.connections, self.a.duration))
        # Every row twice, the second pass in reverse order: a drift of the
        # machine over the minutes lands on every row alike, and the two
        # runs of a row show how far its number can be trusted.
        for r in self.rows + list(reversed(self.rows)):
            self.load(r)
        self.rss()
        if self.a.h2:
            self.h2_all()
        self.foreign_cpu()
        self.report()
        if self.a.h2:
            self.report_h2()

    def foreign_cpu(self):
        self.foreign = self.watch.stop()

    def cleanup(self):
        ids = []
        for proc, _ in self.nginx.values():  # fast shutdown: the master reaps its workers
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except OSError:
                    pass
        for proc, _ in self.nginx.values():
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
        if self.node is not None:
            ids.append(self.node.id)
            self.node.close()  # processes (nginx too: spawned through the node), netns, cgroup, pins, its tmp
        if self.tmp and os.path.isdir(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)
        left = N.leaks(ids) if ids else []
        if self.tmp and os.path.exists(self.tmp):
            left.append("temp dir " + self.tmp)
        for i in ids:
            for ln in N.run(["ps", "-eo", "pid,args"], check=False).stdout.splitlines():
                if "shunt-bench-" + i in ln and "ps -eo" not in ln:
                    left.append("process " + ln.strip())
        return left


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="directory with shuntd and shuntctl (default: build)")
    ap.add_argument("--client", choices=("c", "python"), default="c",
                    help="single-connection client: c (default, compiled on the fly) or python (http.client)")
    ap.add_argument("--requests", type=int, default=5000, help="single-connection requests per row (default 5000)")
    ap.add_argument("--warmup", type=int, default=500, help="single-connection warmup requests (default 500)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="single-connection test: interleaved rounds the requests are split into (default 5)")
    ap.add_argument("--no-pinned", dest="pinned", action="store_false",
                    help="skip the second single-connection pass with everything pinned to CPU 0")
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds per row (default 10)")
    ap.add_argument("--wrk-warmup", type=int, default=2, help="wrk warmup seconds per row (default 2)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--idle", type=int, default=1000, help="idle keep-alive connections for RSS (default 1000)")
    ap.add_argument("--upstream-workers", default="auto", help="nginx workers of each upstream pod (default auto)")
    ap.add_argument("--no-variants", dest="variants", action="store_false",
                    help="skip the rows of the shuntd variants (--workers 1/N, --poll off/on, in-pod, TC, "
                         "inference relay)")
    ap.add_argument("--baseline", metavar="OTHER_BUILD",
                    help="also measure OTHER_BUILD's shuntd (rows base:*) in the same run: before/after")
    ap.add_argument("--no-h2", dest="h2", action="store_false",
                    help="skip the HTTP/2 section (h2load and gRPC rows, nginx and HAProxy peers)")
    ap.add_argument("--h2-duration", type=int, default=4, help="h2load seconds per row and round (default 4)")
    ap.add_argument("--h2-warmup", type=int, default=1, help="h2load warm-up seconds per run (default 1)")
    ap.add_argument("--h2-rounds", type=int, default=2,
                    help="HTTP/2 section: interleaved rounds of each client over its rows (default 2)")
    ap.add_argument("--h2-clients", type=int, default=4, help="h2load connections, -c (default 4)")
    ap.add_argument("--h2-streams", type=int, default=10,
                    help="h2load concurrent streams per connection, -m (default 10)")
    ap.add_argument("--grpc-calls", type=int, default=3000, help="gRPC unary calls per row and round (default 3000)")
    ap.add_argument("--grpc-concurrency", type=int, default=4,
                    help="gRPC calls in flight on the one channel (default 4)")
    args = ap.parse_args()

    missing = []
    if not os.access(WRK, os.X_OK):
        missing.append("wrk not found at %s: install it with  apt-get install wrk" % WRK)
    if not os.access(NGINX, os.X_OK):
        missing.append("nginx not found at %s: install it with  apt-get install nginx-light" % NGINX)
    if args.pinned and not shutil.which("taskset"):
        missing.append("taskset not found (util-linux): install it, or use --no-pinned")
    if args.client == "c" and not shutil.which("cc"):
        missing.append("no C compiler (cc) for the latency client: apt-get install gcc, or use --client python")
    if not os.access(HAPROXY, os.X_OK):
        missing.append("haproxy not found at %s: install it with  apt-get install haproxy" % HAPROXY)
    if args.h2:
        if not os.access(H2LOAD, os.X_OK):
            missing.append("%s not found: install it with  apt-get install nghttp2-client, or use --no-h2" % H2LOAD)
        if not shutil.which("curl"):
            missing.append("curl not found (HTTP/2 rows check each path with it): apt-get install curl, or use --no-h2")
        if N.run([N.PYTHON, "-c", "import grpc"], check=False).returncode != 0:
            missing.append("python3-grpcio missing for %s: apt-get install python3-grpcio, or use --no-h2" % N.PYTHON)
        if min(args.h2_duration, args.h2_clients, args.h2_streams, args.grpc_calls, args.grpc_concurrency) < 1 \
                or args.h2_warmup < 0:
            missing.append("--h2-duration, --h2-clients, --h2-streams, --grpc-calls and --grpc-concurrency must be "
                           ">= 1, --h2-warmup >= 0")
    reason = N.prereq_skip_reason()
    if reason:
        missing.append(reason)
    for build in [args.build] + ([args.baseline] if args.baseline else []):
        for f in ("shuntd", "shuntctl"):
            if not os.access(os.path.join(build, f), os.X_OK):
                missing.append("%s/%s missing: run make first" % (build, f))
    if missing:
        for m in missing:
            print("bench: " + m, file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    # SIGINT too: a shell that starts us in the background sets it to "ignore".
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    b = Bench(args)
    rc = 0
    try:
        b.run()
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    except (BenchError, N.HarnessError, N.Skip) as e:
        print("\nbench: ERROR: %s" % e, file=sys.stderr)
        if b.node is not None and not b.node.closed:
            print(b.node.diagnostics(), file=sys.stderr)
        rc = 1
    except Exception:
        traceback.print_exc()
        if b.node is not None and not b.node.closed:
            print(b.node.diagnostics(), file=sys.stderr)
        rc = 1
    finally:
        # Ctrl-C during the cleanup must not stop it halfway.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left = b.cleanup()
        signal.signal(signal.SIGINT, old)
    if left:
        print("bench: ERROR: left behind: %s" % "; ".join(left), file=sys.stderr)
        rc = rc or 1
    else:
        print("cleanup   ok: namespaces, cgroup, pins, processes and temp dirs of run %s removed"
              % (b.node.id if b.node else "-"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
