#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""shunt per-request profile: where shuntd's time and system calls go per request.

    /usr/bin/python3 tests/bench/hotpath.py --build build [--requests N] [--duration S]
        [--scenarios 1conn-nokey,1conn-key,wrk-nokey,wrk-key] [--freq HZ]
        [--call-graph MODE] [--profile-seconds S] [--connections N] [--threads N]
        [--no-calls] [--no-strace] [--extra-dsts N] [--shuntd-args 'ARGS'] [--top N]
        [--keep DIR] [--json FILE]

    (as root; about 4 minutes with the defaults)

A command that reports, not a test (issue 13, item 3). It builds the node of
tests/bench/bench.py (reusing its Bench class: tests/e2e/node.py's throwaway
netns node, nginx upstreams in the pods, the route dev-a -> sandbox) and
drives shuntd with four scenarios:

    1conn-nokey  one keep-alive connection, --requests requests, no key -> baseline
    1conn-key    the same with "baggage: ...sd-routing-key=dev-a..." -> sandbox
    wrk-nokey    wrk -t2 -c32 for --duration seconds, no key
    wrk-key      the same, keyed

Each scenario runs its client several times, one pass per measurement, so
that no measurement disturbs another:

  clean    nothing attached: on-CPU time of every shuntd thread from
           /proc/PID/task/*/schedstat (ns, precise; utime ticks at 10 ms) and
           context switches, divided by the requests shuntd counted
           (shuntctl status, read before and after the client ran);
  syscalls perf stat on the tracepoints syscalls:sys_enter_* (and
           raw_syscalls:sys_exit with ret < 0: failed calls, EAGAIN among
           them) of every shuntd thread, divided by its requests; without
           the tracepoints, strace -c -f (much slower: the counts hold, the
           client's numbers do not);
  calls    (--no-calls skips it) perf stat on uprobes: calls per request of
           malloc/free/realloc/calloc/clock_gettime in libc and of some of
           shuntd's own functions (the probes are removed right after; a
           uprobe hit costs microseconds, so only the counts of this pass
           mean anything);
  profile  perf record -e cpu-clock -F HZ --call-graph dwarf -p PID (every
           thread); for wrk only --profile-seconds in the middle of the run.
           Each sample is put into one bucket by its call chain, leaf first:
           a sample in the kernel goes to the system call it is in (read/recv,
           write/send, epoll_wait, epoll_ctl, other) or to "kernel, no system
           call" (interrupts, faults); a user-space sample to the first frame
           that names a bucket (HTTP parsing: llhttp; HTTP head check and
           framing, http.c; routing key extraction; route lookup and the
           destination guard; buffer management incl. malloc; timers and
           clock; stats; upstream pool and maps; proxy logic, the rest of
           shuntd), skipping libc's mem*/str* and clock_gettime, which count
           for their caller. libc's system call wrappers count for their
           system call. Cross-cuts are printed too: system call entry and
           exit, waking another task, softirq packet delivery, scheduler.
  strace   (--no-strace skips it) the 1conn scenarios once more, 20
           requests under strace: the system calls of one exchange, in order.

--extra-dsts N first gives shuntd N more upstream destinations, each with
an idle pooled connection (nginx on N more ports of the baseline pod, a
route for each so that they are captured, one request to each before every
pass), as on a node with many services: work done per loop iteration over
all destinations shows up then.

--shuntd-args 'ARGS' starts shuntd again with more flags ('--workers 1
--poll off', say) before the scenarios.

The report is one table, "where the time and the syscalls go per request",
with a column per scenario (percent of shuntd's CPU per bucket and its
microseconds per request, system calls per request by name, calls per
request), then the top symbols of each profile by self and by children
(samples whose call chain contains the symbol). Everything is summed over
shuntd's threads (perf -p and strace follow every thread there is when they
attach, and the ones those start), so a multi-threaded shuntd is measured as
a whole; the per-thread split of the CPU time is printed as well.

On this machine (2 shared vCPUs, a PVM guest) absolute times are noisy:
compare ratios, percentages and counts. cpu-clock cannot sample where
interrupts are off; such time shows up where they are turned on again
(pvm_irq_enable, _raw_spin_unlock_irqrestore), in the right call chain.

The exit status is 0, 1 on an error (misrouting, a failed client, a
leftover), 2 when a prerequisite is missing, 130 on Ctrl-C. The node, the
uprobes, perf and strace are removed at the end, on failure and on Ctrl-C too.
--keep DIR keeps the perf data (perf script text output, which needs no
binary), the strace logs and the results as JSON.
"""

import argparse
import collections
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback

sys.dont_write_bytecode = True  # before importing bench: no __pycache__ in the source tree
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import bench as B  # noqa: E402  (its Bench builds the node; it imports tests/e2e/node.py)

N = B.N
PERF = "/usr/bin/perf"
STRACE = "/usr/bin/strace"
SCENARIOS = ("1conn-nokey", "1conn-key", "wrk-nokey", "wrk-key")
STRACE_REQUESTS = 20

# ---- buckets ---------------------------------------------------------------------

K_READ, K_WRITE, K_EWAIT, K_ECTL, K_SYS, K_NOSYS = (
    "kernel: read/recv", "kernel: write/send", "kernel: epoll_wait", "kernel: epoll_ctl",
    "kernel: other syscalls", "kernel: no syscall (irq, fault)")
U_LLHTTP, U_HEAD, U_KEY, U_ROUTE, U_BUF, U_TIMER, U_STATS, U_POOL, U_LOOP, U_PROXY, U_OTHER = (
    "HTTP parsing: llhttp", "HTTP head check, framing (http.c)", "routing key extraction",
    "route lookup, destination guard", "buffer management, malloc", "timers, clock",
    "stats (reqstats)", "upstream pool, maps", "event loop, polling", "proxy logic (pump, state)",
    "other user space")
BUCKETS = (K_READ, K_WRITE, K_EWAIT, K_ECTL, K_SYS, K_NOSYS, U_LLHTTP, U_HEAD, U_KEY, U_ROUTE, U_BUF,
           U_TIMER, U_STATS, U_POOL, U_LOOP, U_PROXY, U_OTHER)

SYS_GROUP = {}
for _g, _names in ((K_READ, "read readv recvfrom recvmsg recvmmsg pread64"),
                   (K_WRITE, "write writev sendto send sendmsg sendmmsg pwrite64"),
                   (K_EWAIT, "epoll_wait epoll_pwait epoll_pwait2"),
                   (K_ECTL, "epoll_ctl")):
    for _n in _names.split():
        SYS_GROUP[_n] = _g

KSYS_RE = re.compile(r"^__(?:x64|ia32|se|do)_sys_(\w+)$")
# libc's system call wrappers (a sample there is the call's entry or exit)
LIBC_SYS_RE = re.compile(r"^(?:__GI_)?(?:__libc_|__)?(read|readv|recv|recvfrom|recvmsg|write|writev|send|sendto|"
                         r"sendmsg|epoll_wait|epoll_pwait|epoll_ctl|accept4?|connect|close|socket|setsockopt|"
                         r"getsockopt|getpeername|getsockname|shutdown|syscall|ioctl|sched_yield|futex|"
                         r"nanosleep|clock_nanosleep|poll|ppoll|fcntl|openat|io_uring_enter)(?:_nocancel)?$")
# Leaf functions that work for their caller: the caller's bucket counts.
TRANSPARENT_RE = re.compile(r"^(?:__GI_)?_*(?:mem|str|wmem|bsearch|clock_gettime|vdso|do_hres|vread|"
                            r"pvclock)|^(?:hash_bytes|hash_step|\[unknown\])$")
USER_RULES = [
    (U_LLHTTP, r"^(?:llhttp|llparse)|^on_(?:req|resp)_"),
    (U_HEAD, r"^(?:http_head_check|check_request_line|is_tchar|is_vchar_or_ws|name_is|value_is_digits|"
             r"parse_length|http_sniff|http_llhttp_err|chunked_feed|hexval|frame_body|head_start|"
             r"h2c_asked|strip_h2c|method_is_idempotent|bad)$"),
    (U_KEY, r"^(?:rk_\w+|list_find|member_value|name_eq|copy_key|header_source|trim_ows|cfg_name_len|"
            r"hex_val|ascii_lower|is_ows)$"),
    (U_ROUTE, r"^(?:route_decide|live_route|route_table_\w+|route_key_make|route_slot_find|svc_slot_find|"
              r"addr_canon|dstguard_\w+|dst_classify|addr_cmp)$"),
    (U_BUF, r"^(?:buf_\w+|conn_buf_grow|client_make_room|client_drop|up_make_room)$|"
            r"^(?:__GI_)?(?:__libc_)?(?:malloc|free|realloc|calloc|cfree)$|"
            r"^(?:_int_\w+|malloc_\w+|tcache\w*|sysmalloc|systrim|unlink_chunk|alloc_perturb|arena_get2|"
            r"_mid_memalign|checked_request2size)$"),
    (U_TIMER, r"^(?:timer_\w+|timers_\w+|sift_up|sift_down|place|loop_timer_\w+|client_set_deadline|"
              r"client_timer_fired|monotonic_ms)$"),
    (U_STATS, r"^(?:reqstats_\w+|service_row|slot_find|addr_hash|req_end|req_end_now|rs_\w+|"
              r"proxy_stats\w*)$"),
    (U_LOOP, r"^(?:loop_run_once|poll_first|loop_poll\w*|loop_quiesce\w*)$"),
    (U_POOL, r"^(?:pool_\w+|sweep_dst|up_close_idle|up_get|up_release|up_disown|up_of|attach_upstream|"
             r"hmap_\w+|hold_get|holds_sweep|ring_init|dst_key)$"),
]
USER_RULES = [(b, re.compile(r)) for b, r in USER_RULES]
ROOT_RE = re.compile(r"^(?:_start|main|__libc_start\w*|start_thread|clone3?|__clone3?|thread_start)$")

# Cross-cuts of the kernel's share (a sample may be in several).
CROSS = (
    ("syscall entry/exit (incl. libc wrapper)", "entry"),
    ("waking the reader (sock_def_readable, ttwu)", "wake"),
    ("softirq packet delivery (net_rx_action)", "softirq"),
    ("scheduler (__schedule: blocking, switching)", "sched"),
    ("irq-off time seen at irq enable", "irqon"),
)
WAKE_NAMES = frozenset(("sock_def_readable", "sock_def_write_space", "__wake_up_sync_key", "__wake_up_common",
                        "ep_poll_callback", "try_to_wake_up", "ttwu_do_activate"))
IRQON_RE = re.compile(r"irq_enable|irqrestore|_raw_spin_unlock_irq|local_bh_enable")
ENTRY_RE = re.compile(r"^(?:do_syscall_64|entry_SYSCALL\w*|syscall_exit\w*|exit_to_user_mode\w*|"
                      r"syscall_enter\w*|x64_sys_call|\w*pvm_\w*syscall\w*)$")

# ---- calls per request (uprobes) ---------------------------------------------------
LIBC_PROBES = ("malloc", "free", "realloc", "calloc", "clock_gettime")
SHUNTD_PROBES = ("llhttp_execute", "http_head_check", "rk_extract", "route_table_get", "dstguard_check",
                 "hmap_get", "reqstats_record", "rs_now_ns", "monotonic_ms", "timer_set", "timer_cancel",
                 "buf_reserve", "buf_compact", "pool_sweep", "sweep_dst")

# --extra-dsts: idle pooled upstream destinations, as a node with many services has.
EXTRA_PORT0 = 20000
TOUCH_SCRIPT = r"""
import http.client, sys
host, port0, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = 0
for port in range(port0, port0 + n):
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    ok += r.status == 200 and r.read() == b"extra\n"
    c.close()
print(ok)
"""


class ProfError(Exception):
    """Something is wrong (misrouting, a failed client, perf failing)."""


def fmt(x, digits=2):
    return "-" if x is None else ("%.*f" % (digits, x))


def sched_sample(pid):
    """{tid: (on-CPU ns, voluntary switches, involuntary switches, comm)} of every thread."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError as e:
        raise ProfError("shuntd (pid %d) is gone: %s" % (pid, e))
    for tid in tids:
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "schedstat") as f:
                ns = int(f.read().split()[0])
            vol = inv = 0
            with open(base + "status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        inv = int(line.split()[1])
            with open(base + "comm") as f:
                comm = f.read().strip()
        except (OSError, ValueError, IndexError):
            continue  # the thread exited meanwhile
        out[int(tid)] = (ns, vol, inv, comm)
    return out


def sched_delta(a, b):
    """Sum over threads of b - a; threads born in between count from 0."""
    ns = vol = inv = 0
    per = {}
    for tid, (n1, v1, i1, comm) in b.items():
        n0, v0, i0, _ = a.get(tid, (0, 0, 0, comm))
        ns += n1 - n0
        vol += v1 - v0
        inv += i1 - i0
        per["%s/%d" % (comm, tid)] = n1 - n0
    return {"cpu_ns": ns, "vol": vol, "invol": inv, "threads": len(b), "per_thread_ns": per}


class PerfSession:
    """perf stat or perf record attached to a process, started disabled
    (-D -1) and switched on and off through its control FIFOs, so that only
    the client's run is counted."""

    def __init__(self, prof, name, perf_args, pid):
        d = prof.work
        self.name = name
        self.ctl, self.ack = os.path.join(d, name + ".ctl"), os.path.join(d, name + ".ack")
        for f in (self.ctl, self.ack):
            os.mkfifo(f)
        # O_RDWR: opening never blocks, whoever comes first.
        self.ctl_fd = os.open(self.ctl, os.O_RDWR)
        self.ack_fd = os.open(self.ack, os.O_RDWR)
        self.errf = os.path.join(d, name + ".stderr")
        self.argv = [PERF] + perf_args + ["-D", "-1", "--control", "fifo:%s,%s" % (self.ctl, self.ack),
                                          "-p", str(pid)]
        with open(self.errf, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        prof.procs.append(self.proc)

    def stderr(self):
        return N._read_from(self.errf)

    def command(self, word, timeout=120):
        os.write(self.ctl_fd, (word + "\n").encode())
        deadline = time.monotonic() + timeout
        got = b""
        while b"ack" not in got:
            if self.proc.poll() is not None:
                raise ProfError("%s exited (rc %s) before acknowledging %r: %s\n%s" % (
                    self.name, self.proc.returncode, word, " ".join(self.argv), self.stderr()))
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProfError("%s did not acknowledge %r in %ds: %s" % (self.name, word, timeout, self.stderr()))
            r, _, _ = select.select([self.ack_fd], [], [], min(left, 0.5))
            if r:
                got += os.read(self.ack_fd, 64)

    def enable(self):
        self.command("enable")

    def disable(self):
        self.command("disable")

    def stop(self, timeout=120):
        """SIGINT (perf writes its results), then wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise ProfError("%s did not stop on SIGINT in %ds" % (self.name, timeout))
        for fd in (self.ctl_fd, self.ack_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.returncode not in (0, -signal.SIGINT, 130):
            raise ProfError("%s failed (rc %s): %s" % (self.name, self.proc.returncode, self.stderr()))


def parse_perf_stat(path):
    """perf stat -x, output -> {event: count} (events not counted are left out)."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(",")
            if len(parts) < 3 or line.startswith("#"):
                continue
            try:
                out[parts[2]] = out.get(parts[2], 0) + int(float(parts[0]))
            except ValueError:
                continue  # <not counted>, <not supported>
    return out


# ---- perf script parsing and classification ---------------------------------------------

FRAME_RE = re.compile(r"^\s*([0-9a-f]+) (.*) \((.*)\)$")


def read_samples(text):
    """perf script -F tid,period,ip,sym,dso output -> [(tid, period, [(sym, dso, kernel)], leaf first)]."""
    samples = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        head = lines[0].split()
        if len(head) < 2 or not head[0].isdigit():
            continue
        tid, period = int(head[0]), int(head[1])
        raw = []
        for ln in lines[1:]:
            m = FRAME_RE.match(ln)
            if m:
                raw.append((int(m.group(1), 16), m.group(2), m.group(3)))
            else:
                raw.append((0, ln.strip(), "?"))
        frames = []
        for i, (ip, sym, dso) in enumerate(raw):
            if dso == "inlined":  # the dso of the function it was inlined into: next frame at that ip
                dso = next((d for ip2, _, d in raw[i + 1:] if ip2 == ip and d != "inlined"),
                           "libc.so.6" if LIBC_SYS_RE.match(sym) or sym.startswith("__GI_") else "inlined")
            kernel = dso.startswith("[kernel") or ip >= 0xffff800000000000
            if sym.startswith("[unknown]"):
                sym = "[unknown]"
            frames.append((sym, os.path.basename(dso) if dso.startswith("/") else dso, kernel))
        if frames:
            samples.append((tid, period, frames))
    return samples


def user_bucket(sym, dso):
    m = LIBC_SYS_RE.match(sym)
    if m and not dso.endswith("shuntd"):
        return SYS_GROUP.get(m.group(1), K_SYS)
    for bucket, rx in USER_RULES:
        if rx.match(sym):
            return bucket
    if TRANSPARENT_RE.match(sym) or dso == "[vdso]":
        return None
    if dso == "shuntd":
        return U_PROXY
    return U_OTHER


def classify(frames):
    """(bucket, syscall name or None, set of cross-cut tags) of one sample."""
    tags = set()
    names = [f[0] for f in frames]
    if frames[0][2]:  # in the kernel
        sysname = None
        for sym, _, kernel in frames:
            if not kernel:
                break
            m = KSYS_RE.match(sym)
            if m:
                sysname = m.group(1)
                break
        if sysname is None:  # entry/exit or preemption on the way back: the wrapper tells
            for sym, dso, kernel in frames:
                if not kernel:
                    m = LIBC_SYS_RE.match(sym)
                    if m and not dso.endswith("shuntd"):
                        sysname = m.group(1)
                    break
        first = next((s for s in names if not IRQON_RE.search(s) and "callee_save" not in s), "")
        if IRQON_RE.search(names[0]) or "callee_save" in names[0]:
            tags.add("irqon")
        if ENTRY_RE.match(first) and "__schedule" not in names:
            tags.add("entry")
        if any(s in WAKE_NAMES for s in names):
            tags.add("wake")
        if "net_rx_action" in names:
            tags.add("softirq")
        if "__schedule" in names:
            tags.add("sched")
        if sysname is None:
            return K_NOSYS, None, tags
        sysname = {"send": "sendto", "recv": "recvfrom"}.get(sysname, sysname)
        return SYS_GROUP.get(sysname, K_SYS), sysname, tags
    for sym, dso, _ in frames:
        b = user_bucket(sym, dso)
        if b is None:
            continue
        if b.startswith("kernel:"):
            tags.add("entry")  # a sample in the wrapper: the call's entry or return
            m = LIBC_SYS_RE.match(sym)
            return b, {"send": "sendto", "recv": "recvfrom"}.get(m.group(1), m.group(1)), tags
        return b, None, tags
    return U_OTHER, None, tags


def analyse(samples):
    total = sum(p for _, p, _ in samples) or 1
    buckets = collections.Counter()
    sys_split = collections.Counter()
    sys_cross = collections.defaultdict(collections.Counter)
    cross = collections.Counter()
    selfc = collections.Counter()
    children = collections.Counter()
    threads = collections.Counter()
    rooted = user = kernel_only = 0
    for tid, period, frames in samples:
        b, sysname, tags = classify(frames)
        buckets[b] += period
        if sysname:
            sys_split[sysname] += period
            for t in tags:
                sys_cross[sysname][t] += period
        for t in tags:
            cross[t] += period
        threads[tid] += period
        sym, dso, kern = frames[0]
        selfc[(sym, "kernel" if kern else dso)] += period
        for key in {(s, "kernel" if k else d) for s, d, k in frames}:
            children[key] += period
        if any(not k for _, _, k in frames):
            user += 1
            if ROOT_RE.match(frames[-1][0]):
                rooted += 1
        else:
            kernel_only += 1
    pct = {k: 100.0 * v / total for k, v in buckets.items()}
    return {
        "samples": len(samples), "sampled_ms": total / 1e6,
        "buckets_pct": {b: pct.get(b, 0.0) for b in BUCKETS},
        "syscall_pct": {k: 100.0 * v / total for k, v in sys_split.most_common()},
        "syscall_cross_pct": {k: {t: 100.0 * v / total for t, v in c.items()} for k, c in sys_cross.items()},
        "cross_pct": {t: 100.0 * cross[t] / total for _, t in CROSS},
        "kernel_pct": sum(pct.get(b, 0.0) for b in BUCKETS if b.startswith("kernel:")),
        "self": [(s, d, 100.0 * v / total) for (s, d), v in selfc.most_common(60)],
        "children": [(s, d, 100.0 * v / total) for (s, d), v in children.most_common(80)],
        "threads_pct": {str(t): 100.0 * v / total for t, v in threads.most_common()},
        "unwound_pct": 100.0 * rooted / user if user else None,
        "kernel_only_samples": kernel_only,
    }


# ---- the profiler -----------------------------------------------------------------------


class Scenario:
    def __init__(self, name, row):
        self.name = name
        self.kind = name.split("-")[0]  # "1conn" or "wrk"
        self.row = row
        self.res = {}  # pass -> results


class Profiler:
    def __init__(self, args):
        self.a = args
        # What bench.py's Bench reads of its arguments; the rest is ours.
        bargs = argparse.Namespace(build=args.build, baseline=None, client="c", h2=False, variants=False,
                                   upstream_workers=args.upstream_workers, wrk_warmup=args.wrk_warmup,
                                   duration=args.duration, threads=args.threads,
                                   connections=args.connections)
        self.b = B.Bench(bargs)
        self.b.log = self.log
        rows = {r.name: r for r in self.b.rows}
        self.sc = [Scenario(n, rows["shunt-key" if n.endswith("-key") else "shunt-nokey"])
                   for n in args.scenarios]
        self.procs = []  # perf and strace processes we started
        self.probe_group = None
        self.work = None
        self.t0 = time.monotonic()
        self.pid = None
        self.notes = []
        self.idle = None
        self.foreign = None
        self.busy_before = None
        self.watch = None
        self.syscall_source = None

    def log(self, msg):
        print("[%5.1fs] %s" % (time.monotonic() - self.t0, msg), flush=True)

    # ---- running a client ----------------------------------------------------------
    def client_argv(self, sc, n=None, warmup=0, duration=None):
        if sc.kind == "1conn":
            argv = list(self.b.latclient) + [sc.row.host, str(sc.row.port), str(n), str(warmup), sc.row.pod]
            if sc.row.keyed:
                argv.append(B.KEY_HEADER)
            return argv
        return self.b.wrk_argv(sc.row, duration)

    def run_client(self, sc, what, n=None, duration=None, start=None, stop=None, during=None):
        """Run the scenario's client once; start() just before it starts,
        stop() just after it ended (or during(proc) while it runs). Checks
        the routing like bench.py does; returns (client result, requests
        shuntd counted)."""
        b = self.b
        argv = self.client_argv(sc, n=n, duration=duration)
        out = os.path.join(self.work, "client.out")
        err = os.path.join(self.work, "client.err")
        if self.a.extra_dsts:
            self.touch_extra()  # before the counters: not part of the measurement
        up0, sh0 = b.upstream_counts(), b.shunt_counts()
        if start:
            start()
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = b.node.pod_spawn("client", argv, in_cgroup=True, stdout=fo, stderr=fe)
        limit = 120 + (duration or 0) + (n or 0) / 1000.0
        try:
            if during:
                during(proc)
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ProfError("%s %s: client did not finish in %ds" % (sc.name, what, limit))
        if stop:
            stop()
        up1, sh1 = b.upstream_counts(), b.shunt_counts()
        text, etext = N._read_from(out), N._read_from(err)
        if proc.returncode != 0:
            raise ProfError("%s %s: client failed (rc %d): %s%s" % (sc.name, what, proc.returncode, etext, text))
        if sc.kind == "1conn":
            res = json.loads(text.strip().splitlines()[-1])
            res.pop("lat_ns", None)
            if res["pod"] != sc.row.pod or res["peer"] != sc.row.peer:
                raise ProfError("%s %s: MISROUTED: answer from %r seeing %r, expected %r seeing %r" % (
                    sc.name, what, res["pod"], res["peer"], sc.row.pod, sc.row.peer))
            completed = res["n"]
        else:
            res = B.parse_wrk(text)
            if res["non2xx"] or any(res["sock_errors"]):
                raise ProfError("%s %s: wrk saw %d non-2xx responses, socket errors %s:\n%s" % (
                    sc.name, what, res["non2xx"], res["sock_errors"], text))
            completed = res["requests"]
        try:
            b.check_counts(sc.row, up0, up1, sh0, sh1, completed, what)
        except B.BenchError as e:
            raise ProfError(str(e))
        return res, sh1["requests"] - sh0["requests"]

    def run_pass(self, sc, what, start=None, stop=None, during=None):
        if sc.kind == "1conn":
            return self.run_client(sc, what, n=self.a.requests, start=start, stop=stop, during=during)
        return self.run_client(sc, what, duration=self.a.duration, start=start, stop=stop, during=during)

    def restart_shuntd(self, extra):
        """bench.py's node starts shuntd with its default flags: swap in
        an agent of the same build with extra ones, as bench.py does for its
        variant rows (SIGTERM, pins removed, the routes added again)."""
        b = self.b
        b.agents["profile"] = B.Agent("profile", "new", extra)
        b.use_agent("profile")
        self.log("shuntd started again with %s" % " ".join(extra))

    # ---- many destinations --------------------------------------------------------------
    def make_extra_dsts(self, n):
        """nginx on n more ports of the baseline pod, a route for each (so
        their connections are captured), one request to each through shuntd:
        n idle connections in its pool, each its own destination."""
        b = self.b
        listens = "\n".join("        listen %s:%d;" % (N.BASE4, EXTRA_PORT0 + i) for i in range(n))
        b.start_nginx("extra", "base", 1, "    server {\n%s\n        location / { return 200 \"extra\\n\"; }\n"
                                          "    }\n" % listens)
        b.wait_nginx()
        for i in range(n):
            b.node.route_add(N.hostport(N.BASE4, EXTRA_PORT0 + i), B.KEY, N.hostport(N.SBX4, B.SVC_PORT))
        self.touch_extra()

    def touch_extra(self):
        """One unkeyed request to each extra destination (its pooled
        connection would be closed after POOL_IDLE_MS otherwise)."""
        n = self.a.extra_dsts
        rc, out, err = self.b.node.client_cmd([N.PYTHON, "-c", TOUCH_SCRIPT, N.BASE4, str(EXTRA_PORT0), str(n)],
                                              timeout=60 + n)
        if rc != 0 or out.strip() != str(n):
            raise ProfError("requests to the %d extra destinations: rc %d, %s %s" % (n, rc, out.strip(), err.strip()))

    # ---- passes ------------------------------------------------------------------------
    def warm(self, sc):
        if sc.kind == "1conn":
            self.run_client(sc, "warmup", n=max(1, self.a.warmup))
        elif self.a.wrk_warmup > 0:
            self.run_client(sc, "warmup", duration=self.a.wrk_warmup)

    def pass_clean(self, sc):
        box = {}

        def start():
            box["s0"] = sched_sample(self.pid)
            box["t0"] = time.monotonic()

        def stop():
            box["s1"] = sched_sample(self.pid)
            box["t1"] = time.monotonic()

        res, reqs = self.run_pass(sc, "clean pass", start=start, stop=stop)
        d = sched_delta(box["s0"], box["s1"])
        wall = box["t1"] - box["t0"]
        if reqs <= 0:
            raise ProfError("%s: shuntd counted no requests" % sc.name)
        sc.res["clean"] = {
            "requests": reqs, "wall_s": wall, "client": res, "cpu_ns": d["cpu_ns"],
            "cpu_us_per_req": d["cpu_ns"] / 1e3 / reqs, "cpu_util": d["cpu_ns"] / 1e9 / wall,
            "vol_per_req": d["vol"] / reqs, "invol_per_req": d["invol"] / reqs, "threads": d["threads"],
            "per_thread_pct": {k: 100.0 * v / max(1, d["cpu_ns"]) for k, v in d["per_thread_ns"].items() if v > 0},
            "req_per_s": reqs / wall,
        }
        c = sc.res["clean"]
        lat = ("p50 %.1f us" % (res["p50_ns"] / 1e3)) if sc.kind == "1conn" else ("%.0f req/s, p50 %.0f us" % (
            res["rps"], res["p50_us"]))
        self.log("%-12s clean:    %d requests, %.2f us CPU/request (%.0f%% of a CPU), %.2f voluntary "
                 "switches/request; client %s" % (sc.name, reqs, c["cpu_us_per_req"], 100 * c["cpu_util"],
                                                  c["vol_per_req"], lat))

    def pass_syscalls(self, sc):
        if self.syscall_source == "perf":
            ps = PerfSession(self, sc.name + "-stat", [
                "stat", "-x", ",", "-o", os.path.join(self.work, sc.name + "-stat.csv"),
                "-e", "syscalls:sys_enter_*", "-e", "raw_syscalls:sys_enter",
                "-e", "raw_syscalls:sys_exit", "--filter", "ret < 0"], self.pid)
            try:
                res, reqs = self.run_pass(sc, "syscall pass", start=ps.enable, stop=ps.disable)
            finally:
                ps.stop()
            counts = parse_perf_stat(os.path.join(self.work, sc.name + "-stat.csv"))
            per = {}
            for ev, v in counts.items():
                if ev.startswith("syscalls:sys_enter_") and v:
                    per[ev[len("syscalls:sys_enter_"):]] = v / reqs
            total = counts.get("raw_syscalls:sys_enter", 0) / reqs
            failed = counts.get("raw_syscalls:sys_exit", 0) / reqs
        else:
            per, total, failed, reqs = self.strace_counts(sc)
        sc.res["syscalls"] = {"requests": reqs, "per_req": dict(sorted(per.items(), key=lambda kv: -kv[1])),
                              "total_per_req": total, "failed_per_req": failed}
        self.log("%-12s syscalls: %.3f per request (%s); failed %.3f" % (
            sc.name, total, ", ".join("%s %.3f" % kv for kv in list(sc.res["syscalls"]["per_req"].items())[:6]),
            failed if failed is not None else float("nan")))

    def strace_counts(self, sc):
        """Fallback without syscall tracepoints: strace -c -f on every thread."""
        out = os.path.join(self.work, sc.name + "-strace-c.txt")
        box = {}

        def start():
            box["p"] = self.start_strace(["-c", "-o", out])

        def stop():
            self.stop_strace(box["p"])

        res, reqs = self.run_pass(sc, "syscall pass (strace -c)", start=start, stop=stop)
        per, total, failed = {}, 0, 0
        for line in N._read_from(out).splitlines():
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                calls = int(f[3])
                errs = int(f[4]) if len(f) == 6 else 0
                per[f[-1]] = calls / reqs
                total += calls
                failed += errs
        return per, total / reqs, failed / reqs, reqs

    def start_strace(self, opts):
        """strace -f -p PID attaches every thread of the process (and
        follows the ones it starts); returns once it has."""
        errf = os.path.join(self.work, "strace.stderr")
        argv = [STRACE] + opts + ["-f", "-p", str(self.pid)]
        with open(errf, "wb") as err:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        self.procs.append(p)
        deadline = time.monotonic() + 20
        while "attached" not in N._read_from(errf):
            if p.poll() is not None or time.monotonic() > deadline:
                raise ProfError("strace did not attach (rc %s): %s" % (p.poll(), N._read_from(errf)))
            time.sleep(0.05)
        return p

    def stop_strace(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # ---- calls per request: uprobes -------------------------------------------------------
    def add_probes(self):
        """Uprobes on libc's allocator and clock and on some of shuntd's
        functions, in a group of our own; returns {event: function}."""
        self.probe_group = "shuntprof_" + self.b.node.id
        exe = os.readlink("/proc/%d/exe" % self.pid)
        libc = None
        with open("/proc/%d/maps" % self.pid) as f:
            for line in f:
                p = line.split()
                if len(p) >= 6 and re.search(r"/libc[.-][^/]*so", p[5]):
                    libc = p[5]
                    break
        added = {}
        for binary, funcs in ((libc, LIBC_PROBES), (exe, SHUNTD_PROBES)):
            if not binary:
                continue
            for fn in funcs:
                ev = "%s:%s" % (self.probe_group, fn)
                p = N.run([PERF, "probe", "-q", "-x", binary, "-a", "%s=%s" % (ev, fn)], check=False, timeout=60)
                if p.returncode == 0:
                    added[fn] = os.path.basename(binary)
                else:
                    self.notes.append("uprobe on %s in %s not added: %s" % (
                        fn, binary, (p.stderr.strip().splitlines() or ["?"])[-1]))
        return added

    def del_probes(self):
        if not self.probe_group:
            return
        N.run([PERF, "probe", "-q", "-d", self.probe_group + ":*"], check=False, timeout=60)
        try:
            with open("/sys/kernel/tracing/uprobe_events") as f:
                if self.probe_group in f.read():
                    return
        except OSError:
            pass
        self.probe_group = None

    def pass_calls(self, sc, probes):
        csv = os.path.join(self.work, sc.name + "-calls.csv")
        ps = PerfSession(self, sc.name + "-calls", ["stat", "-x", ",", "-o", csv, "-e", self.probe_group + ":*"],
                         self.pid)
        try:
            res, reqs = self.run_pass(sc, "calls pass", start=ps.enable, stop=ps.disable)
        finally:
            ps.stop()
        counts = parse_perf_stat(csv)
        per = {}
        for fn in probes:
            per[fn] = counts.get("%s:%s" % (self.probe_group, fn), 0) / reqs
        sc.res["calls"] = {"requests": reqs, "per_req": per, "where": probes}
        self.log("%-12s calls:    %s" % (sc.name, ", ".join("%s %.2f" % (k, v) for k, v in per.items())))

    # ---- the profile ------------------------------------------------------------------------
    def pass_profile(self, sc):
        data = os.path.join(self.work, sc.name + ".perf.data")
        ps = PerfSession(self, sc.name + "-record", [
            "record", "-q", "-N", "-e", "cpu-clock", "-F", str(self.a.freq), "--call-graph", self.a.call_graph,
            "-o", data], self.pid)
        try:
            if sc.kind == "1conn":
                self.run_pass(sc, "profile pass", start=ps.enable, stop=ps.disable)
            else:
                secs = self.a.profile_seconds or max(1, self.a.duration - 2)
                secs = min(secs, max(1, self.a.duration - 1))

                def during(proc):
                    time.sleep(min(1.0, max(0.0, self.a.duration - secs) / 2))
                    ps.enable()
                    time.sleep(secs)
                    ps.disable()

                self.run_pass(sc, "profile pass", during=during)
        finally:
            ps.stop()
        p = subprocess.run([PERF, "script", "-i", data, "-F", "tid,period,ip,sym,dso"], capture_output=True,
                           text=True, timeout=900)
        if p.returncode != 0:
            raise ProfError("perf script failed (rc %d): %s" % (p.returncode, p.stderr[-2000:]))
        if self.a.keep:
            with open(os.path.join(self.a.keep, sc.name + ".perf-script.txt"), "w") as f:
                f.write(p.stdout)
        samples = read_samples(p.stdout)
        if not samples:
            raise ProfError("%s: perf recorded no samples of shuntd: %s" % (sc.name, ps.stderr()))
        sc.res["profile"] = analyse(samples)
        os.unlink(data)
        pr = sc.res["profile"]
        self.log("%-12s profile:  %d samples (%.0f ms on CPU), kernel %.1f%%, call chains unwound to main: %s%%" % (
            sc.name, pr["samples"], pr["sampled_ms"], pr["kernel_pct"], fmt(pr["unwound_pct"], 0)))

    # ---- strace of one exchange ---------------------------------------------------------------
    def pass_strace(self, sc):
        out = os.path.join(self.work, sc.name + ".strace")
        box = {}

        def start():
            box["p"] = self.start_strace(["-s", "32", "-o", out])

        def stop():
            self.stop_strace(box["p"])

        self.run_client(sc, "strace pass", n=STRACE_REQUESTS, start=start, stop=stop)
        lines = N._read_from(out).splitlines()
        if self.a.keep:
            shutil.copy(out, os.path.join(self.a.keep, sc.name + ".strace.txt"))
        # A request's cycle starts where its head is read from the client.
        starts = [i for i, ln in enumerate(lines) if re.search(r'\bread\(\d+, "GET / HTTP/1\.1', ln)]
        if len(starts) < 3:
            sc.res["strace"] = {"exchange": [], "note": "no steady exchange found (%d lines)" % len(lines)}
            return
        k = len(starts) // 2
        tid = lines[starts[k]].split()[0]
        seq = [ln for ln in lines[starts[k]:starts[k + 1]] if ln.split()[0] == tid]
        sc.res["strace"] = {"exchange": [re.sub(r"^\d+\s+", "", ln) for ln in seq]}

    # ---- the whole run -------------------------------------------------------------------------
    def idle_cpu(self, seconds=2.0):
        s0 = sched_sample(self.pid)
        time.sleep(seconds)
        d = sched_delta(s0, sched_sample(self.pid))
        self.idle = d["cpu_ns"] / 1e3 / seconds

    def run(self):
        a = self.a
        self.busy_before = B.machine_busy(1.0)
        self.log("CPUs busy before the run (other processes): %.0f%%" % (100 * self.busy_before))
        self.watch = B.CpuWatch()
        self.b.setup()
        if a.shuntd_args:
            self.restart_shuntd(shlex.split(a.shuntd_args))
        self.pid = self.b.shuntd_pid
        self.work = os.path.join(self.b.tmp, "profile")
        os.makedirs(self.work)
        self.syscall_source = "perf" if tracepoints_work() else "strace"
        if self.syscall_source == "strace":
            self.notes.append("syscall tracepoints unavailable: counted with strace -c -f")
        if a.extra_dsts:
            self.log("%d more destinations (ports %d-%d of the baseline pod), routes and pooled connections" % (
                a.extra_dsts, EXTRA_PORT0, EXTRA_PORT0 + a.extra_dsts - 1))
            self.make_extra_dsts(a.extra_dsts)
        self.idle_cpu()
        self.log("shuntd pid %d, %d thread(s); idle it takes %.0f us of CPU per second" % (
            self.pid, len(os.listdir("/proc/%d/task" % self.pid)), self.idle))
        probes = None
        for sc in self.sc:
            self.log("---- %s: %s" % (sc.name, " ".join(self.client_argv(sc, n=a.requests, duration=a.duration)[-6:])))
            self.warm(sc)
            self.pass_clean(sc)
            self.pass_syscalls(sc)
            if a.calls:
                if probes is None:
                    probes = self.add_probes()
                    if not probes:
                        self.notes.append("no uprobe could be added: calls per request skipped")
                if probes:
                    try:
                        self.pass_calls(sc, probes)
                    finally:
                        self.del_probes()
                        probes = None
            self.pass_profile(sc)
            if a.strace and sc.kind == "1conn":
                self.pass_strace(sc)
        self.foreign = self.watch.stop()
        self.report()

    # ---- report ---------------------------------------------------------------------------------
    def report(self):
        a, scs = self.a, self.sc
        w = max(12, max(len(s.name) for s in scs) + 1)
        lw = 46

        def row(label, vals):
            print("%-*s" % (lw, label) + "".join("%*s" % (w + 3, v) for v in vals))

        print()
        print("=" * (lw + (w + 3) * len(scs)))
        print("Where the time and the syscalls go per request: shuntd %s%s" % (
            self.b.build_id, (" " + a.shuntd_args) if a.shuntd_args else ""))
        print("1conn: one keep-alive connection, %d requests per pass; wrk: -t%d -c%d, %d s per pass "
              "(profile: %s s of it); %d extra idle destinations" % (
                  a.requests, a.threads, a.connections, a.duration, a.profile_seconds or max(1, a.duration - 2),
                  a.extra_dsts))
        print("=" * (lw + (w + 3) * len(scs)))
        row("", [s.name for s in scs])
        get = lambda s, p, k: s.res.get(p, {}).get(k)  # noqa: E731
        row("requests (clean pass)", ["%d" % get(s, "clean", "requests") for s in scs])
        row("client: p50 us (1conn) / req/s (wrk)", [
            ("%.1f" % (get(s, "clean", "client")["p50_ns"] / 1e3)) if s.kind == "1conn"
            else ("%.0f" % get(s, "clean", "client")["rps"]) for s in scs])
        row("shuntd CPU us per request (schedstat)", [fmt(get(s, "clean", "cpu_us_per_req")) for s in scs])
        row("shuntd CPU utilisation (% of one CPU)", [fmt(100 * get(s, "clean", "cpu_util"), 0) for s in scs])
        row("voluntary switches (blocking) per request", [fmt(get(s, "clean", "vol_per_req")) for s in scs])
        row("involuntary switches per request", [fmt(get(s, "clean", "invol_per_req"), 3) for s in scs])
        row("threads", ["%d" % get(s, "clean", "threads") for s in scs])

        prof = [s for s in scs if "profile" in s.res]
        if prof:
            print()
            print("-- % of shuntd's CPU (perf cpu-clock) [us per request = % x CPU us per request]")
            row("samples", ["%d" % s.res["profile"]["samples"] if "profile" in s.res else "-" for s in scs])
            for bk in BUCKETS:
                vals = []
                for s in scs:
                    p = s.res.get("profile")
                    if not p:
                        vals.append("-")
                        continue
                    pc = p["buckets_pct"][bk]
                    vals.append("%5.1f%% %5.2f" % (pc, pc / 100 * get(s, "clean", "cpu_us_per_req")))
                row("  " + bk, vals)
            row("  = kernel total", ["%5.1f%%" % s.res["profile"]["kernel_pct"] if "profile" in s.res else "-"
                                     for s in scs])
            row("  = user space total", ["%5.1f%%" % (100 - s.res["profile"]["kernel_pct"]) if "profile" in s.res
                                         else "-" for s in scs])
            print("   cross-cuts (overlapping; part of the buckets above):")
            for label, tag in CROSS:
                row("    " + label, ["%5.1f%%" % s.res["profile"]["cross_pct"][tag] if "profile" in s.res else "-"
                                     for s in scs])
            row("   call chains unwound to main (user samples)",
                [fmt(s.res["profile"]["unwound_pct"], 0) + "%" if "profile" in s.res else "-" for s in scs])

        print()
        print("-- system calls per request (%s)" % ("perf stat, syscalls:sys_enter_*" if self.syscall_source == "perf"
                                                   else "strace -c -f"))
        names = []
        for s in scs:
            for k in s.res.get("syscalls", {}).get("per_req", {}):
                if k not in names:
                    names.append(k)
        names.sort(key=lambda k: -max(s.res.get("syscalls", {}).get("per_req", {}).get(k, 0) for s in scs))
        for k in names:
            row("  " + k, ["%.3f" % s.res["syscalls"]["per_req"].get(k, 0) if "syscalls" in s.res else "-"
                           for s in scs])
        row("  = total", [fmt(get(s, "syscalls", "total_per_req"), 3) for s in scs])
        row("  of which failed (ret < 0, e.g. EAGAIN)", [fmt(get(s, "syscalls", "failed_per_req"), 3) for s in scs])
        row("  entry/exit us per syscall (cross-cut x CPU/req)", [
            fmt(s.res["profile"]["cross_pct"]["entry"] / 100 * get(s, "clean", "cpu_us_per_req")
                / get(s, "syscalls", "total_per_req"))
            if get(s, "syscalls", "total_per_req") and "profile" in s.res else "-" for s in scs])
        row("  kernel us per syscall (kernel % x CPU/req)", [
            fmt(s.res["profile"]["kernel_pct"] / 100 * get(s, "clean", "cpu_us_per_req")
                / get(s, "syscalls", "total_per_req"))
            if get(s, "syscalls", "total_per_req") and "profile" in s.res else "-" for s in scs])

        if any("calls" in s.res for s in scs):
            print()
            print("-- calls per request (uprobes, a separate pass)")
            fns = next(s.res["calls"]["where"] for s in scs if "calls" in s.res)
            for fn, where in fns.items():
                row("  %s (%s)" % (fn, where), ["%.2f" % s.res["calls"]["per_req"][fn] if "calls" in s.res else "-"
                                                for s in scs])

        multi = [s for s in scs if get(s, "clean", "threads") and len(get(s, "clean", "per_thread_pct")) > 1]
        if multi:
            print()
            print("-- CPU by thread (clean pass)")
            for s in multi:
                print("  %-12s %s" % (s.name, ", ".join("%s %.0f%%" % kv for kv in sorted(
                    s.res["clean"]["per_thread_pct"].items(), key=lambda kv: -kv[1]))))

        for s in prof:
            p = s.res["profile"]
            print()
            print("-- %s: top symbols by self (%% of shuntd's CPU, %d samples)" % (s.name, p["samples"]))
            for sym, dso, pc in p["self"][:a.top]:
                print("  %6.2f%%  %s  [%s]" % (pc, sym, dso))
            print("-- %s: top symbols by children (samples whose call chain holds it; "
                  "frames in ~every sample left out)" % s.name)
            kids = [c for c in p["children"] if not ROOT_RE.match(c[0]) and c[2] < 99.0]
            for sym, dso, pc in kids[:a.top]:
                print("  %6.2f%%  %s  [%s]" % (pc, sym, dso))
            print("-- %s: CPU by system call (%% of shuntd's CPU; of it: %s)" % (
                s.name, ", ".join(t for _, t in CROSS)))
            for name, pc in list(p["syscall_pct"].items())[:8]:
                cx = p["syscall_cross_pct"].get(name, {})
                print("  %-12s %5.1f%%   (%s)" % (name, pc, ", ".join("%s %.1f" % (t, cx.get(t, 0.0))
                                                                     for _, t in CROSS)))

        for s in scs:
            st = s.res.get("strace")
            if st and st.get("exchange"):
                print()
                print("-- %s: the system calls of one exchange (strace, request %d of %d)" % (
                    s.name, STRACE_REQUESTS // 2, STRACE_REQUESTS))
                for ln in st["exchange"]:
                    print("  " + (ln if len(ln) <= 150 else ln[:147] + "..."))
            elif st:
                print("\n-- %s: strace: %s" % (s.name, st.get("note")))

        print()
        print("shuntd idle: %.0f us CPU per second (ticks); that share of each pass is in the numbers above"
              % self.idle)
        fsec, fwall, ftop = self.foreign
        print("other processes took %.1f CPU-seconds in %.0f s (%.0f%% of the 2 CPUs; busy before: %.0f%%): %s" % (
            fsec, fwall, 100 * fsec / max(1e-9, fwall * len(os.sched_getaffinity(0))), 100 * self.busy_before,
            ", ".join("%s[%d] %.1fs" % (c, pid, t) for t, c, pid in ftop) or "none"))
        for n in self.notes:
            print("note: " + n)
        if a.json or a.keep:
            doc = {"build": self.b.build_id, "args": vars(a), "idle_us_per_s": self.idle,
                   "syscall_source": self.syscall_source, "notes": self.notes,
                   "scenarios": {s.name: s.res for s in scs}}
            for path in [a.json] if a.json else []:
                with open(path, "w") as f:
                    json.dump(doc, f, indent=1, default=str)
            if a.keep:
                with open(os.path.join(a.keep, "profile.json"), "w") as f:
                    json.dump(doc, f, indent=1, default=str)

    def cleanup(self):
        left = []
        for p in self.procs:  # ours only, by pid
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGINT)
                    p.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    p.kill()
                    p.wait()
        if self.probe_group:
            self.del_probes()
            if self.probe_group:
                left.append("uprobes of group %s (perf probe -d '%s:*')" % (self.probe_group, self.probe_group))
        if self.watch is not None and self.foreign is None:
            self.watch.stop()
        return left + self.b.cleanup()


def tracepoints_work():
    p = N.run([PERF, "stat", "-x", ",", "-e", "raw_syscalls:sys_enter,syscalls:sys_enter_getppid", "--",
               "/bin/true"], check=False, timeout=60)
    return p.returncode == 0 and "not supported" not in p.stderr and "raw_syscalls:sys_enter" in p.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__[__doc__.index("A command that reports"):],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="directory with shuntd and shuntctl (default: build)")
    ap.add_argument("--requests", type=int, default=20000,
                    help="requests per 1conn pass, on one keep-alive connection (default 20000)")
    ap.add_argument("--warmup", type=int, default=500, help="1conn warmup requests per scenario (default 500)")
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds per pass (default 10)")
    ap.add_argument("--wrk-warmup", type=int, default=2, help="wrk warmup seconds per scenario (default 2)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma list out of %s (default all)" % ",".join(SCENARIOS))
    ap.add_argument("--freq", type=int, default=4000, help="perf record sampling frequency, Hz (default 4000)")
    ap.add_argument("--call-graph", default="dwarf,8192",
                    help="perf record --call-graph (default dwarf,8192: shuntd and libc have no frame "
                         "pointers; 'fp' for a build with -fno-omit-frame-pointer)")
    ap.add_argument("--profile-seconds", type=int, default=0,
                    help="wrk: seconds recorded in the middle of the profile pass (default duration - 2)")
    ap.add_argument("--no-calls", dest="calls", action="store_false",
                    help="skip the uprobe pass (calls per request of malloc, clock_gettime, ...)")
    ap.add_argument("--no-strace", dest="strace", action="store_false",
                    help="skip the strace of one exchange (1conn scenarios)")
    ap.add_argument("--top", type=int, default=20, help="symbols listed per profile (default 20)")
    ap.add_argument("--upstream-workers", default="auto", help="nginx workers of each upstream pod (default auto)")
    ap.add_argument("--shuntd-args", metavar="'ARGS'",
                    help="more shuntd flags, e.g. '--workers 1 --poll off' (shuntd is started again with them)")
    ap.add_argument("--extra-dsts", type=int, default=0, metavar="N",
                    help="first give shuntd N more upstream destinations with an idle pooled connection each "
                         "(nginx on N ports, N routes), as on a node with many services (default 0)")
    ap.add_argument("--keep", metavar="DIR", help="keep perf script output, strace logs and profile.json in DIR")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    args = ap.parse_args()
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]

    missing = []
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    if bad or not args.scenarios:
        missing.append("--scenarios: unknown %s (choose from %s)" % (",".join(bad) or "(none)", ",".join(SCENARIOS)))
    if os.geteuid() != 0:
        missing.append("must run as root")
    if not os.access(PERF, os.X_OK):
        missing.append("perf not found at %s: install it with  apt-get install linux-perf" % PERF)
    if (args.strace or not os.access(PERF, os.X_OK)) and not os.access(STRACE, os.X_OK):
        missing.append("strace not found at %s: apt-get install strace, or use --no-strace" % STRACE)
    if any(s.startswith("wrk") for s in args.scenarios) and not os.access(B.WRK, os.X_OK):
        missing.append("wrk not found at %s: install it with  apt-get install wrk" % B.WRK)
    if not os.access(B.NGINX, os.X_OK):
        missing.append("nginx not found at %s: install it with  apt-get install nginx-light" % B.NGINX)
    if not os.access(B.HAPROXY, os.X_OK):
        missing.append("haproxy not found at %s (bench.py's node starts it): apt-get install haproxy" % B.HAPROXY)
    if not shutil.which("cc"):
        missing.append("no C compiler (cc) for the latency client: apt-get install gcc")
    if min(args.requests, args.duration, args.freq, args.connections, args.threads) < 1 or args.warmup < 0:
        missing.append("--requests, --duration, --freq, --connections and --threads must be >= 1")
    if not 0 <= args.extra_dsts <= 10000:
        missing.append("--extra-dsts must be between 0 and 10000")
    reason = N.prereq_skip_reason()
    if reason:
        missing.append(reason)
    for f in ("shuntd", "shuntctl"):
        if not os.access(os.path.join(args.build, f), os.X_OK):
            missing.append("%s/%s missing: run make first" % (args.build, f))
    if missing:
        for m in missing:
            print("profile: " + m, file=sys.stderr)
        return 2
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    # SIGINT too: a shell that starts us in the background sets it to "ignore".
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    prof = Profiler(args)
    rc = 0
    try:
        prof.run()
    except KeyboardInterrupt:
        print("\nprofile: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    except (ProfError, B.BenchError, N.HarnessError, N.Skip) as e:
        print("\nprofile: ERROR: %s" % e, file=sys.stderr)
        if prof.b.node is not None and not prof.b.node.closed:
            print(prof.b.node.diagnostics(), file=sys.stderr)
        rc = 1
    except Exception:
        traceback.print_exc()
        if prof.b.node is not None and not prof.b.node.closed:
            print(prof.b.node.diagnostics(), file=sys.stderr)
        rc = 1
    finally:
        # Ctrl-C during the cleanup must not stop it halfway.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left = prof.cleanup()
        signal.signal(signal.SIGINT, old)
    if left:
        print("profile: ERROR: left behind: %s" % "; ".join(left), file=sys.stderr)
        rc = rc or 1
    else:
        print("cleanup   ok: namespaces, cgroup, pins, uprobes, processes and temp dirs of run %s removed"
              % (prof.b.node.id if prof.b.node else "-"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
