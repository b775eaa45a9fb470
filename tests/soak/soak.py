#!/usr/bin/env python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""`make soak DURATION=10m`: randomized traffic through a netns node while
routes are added, deleted and expire underneath (a command, not a test).

Reports requests, misroutes (must be 0), failures by cause, and shuntd's
RSS and open descriptors over time (must be flat once warm). Exit status 1
on a misroute, a dead agent or a growing agent; 0 otherwise."""

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import node as N  # noqa: E402

SVC = N.hostport(N.BASE4, N.HTTP_PORT)
SBX = N.hostport(N.SBX4, N.HTTP_PORT)


def seconds(text):
    m = re.fullmatch(r"(\d+)(s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError("a duration like 90s, 10m or 1h: %r" % text)
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def proc_sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def churn(node, stop, log):
    """dev-b's route flaps: added (sometimes with a 2s TTL), deleted."""
    rnd = random.Random(7)
    while not stop.is_set():
        ttl = "2s" if rnd.random() < 0.3 else None
        args = ["route", "add", "--service", SVC, "--key", "dev-b", "--to", SBX]
        if ttl:
            args += ["--ttl", ttl]
        node.ctl(*args)
        log["adds"] += 1
        stop.wait(rnd.uniform(0.3, 2.5))
        if not ttl or rnd.random() < 0.5:
            node.ctl("route", "del", "--service", SVC, "--key", "dev-b")
            log["dels"] += 1
        stop.wait(rnd.uniform(0.3, 2.5))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=seconds, default=seconds("10m"))
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()

    reason = N.prereq_skip_reason()
    if reason:
        print("soak: cannot run here: %s" % reason)
        return 2
    node = N.Node(args.build, shuntd_args=["--idle-timeout", "10s"])
    stop = threading.Event()
    churn_log = {"adds": 0, "dels": 0}
    samples = []
    try:
        node.start()
        node.route_add(SVC, "dev-a", SBX)
        keys = {"": "baseline", "dev-a": "sandbox", "dev-b": "*"}
        cmd = "echo $$ > %s && exec %s" % (
            shlex.quote(os.path.join(node.cg, "cgroup.procs")),
            shlex.join(node.nsenter("client") + [N.PYTHON, "-B", os.path.join(HERE, "loadgen.py"), N.BASE4,
                                                  str(N.HTTP_PORT), str(args.duration), str(args.workers),
                                                  str(args.seed), json.dumps(keys)]))
        print("soak: node %s, %ds, %d workers, seed %d; dev-a -> sandbox fixed, dev-b flapping"
              % (node.id, args.duration, args.workers, args.seed), flush=True)
        gen = node.spawn(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t = threading.Thread(target=churn, args=(node, stop, churn_log), daemon=True)
        t.start()
        pid = node.shuntd.pid
        t0 = time.monotonic()
        every = max(5, args.duration // 20)
        while gen.poll() is None:
            time.sleep(min(every, max(1, args.duration + 90 - (time.monotonic() - t0))))
            if not node.shuntd_running():
                print("soak: shuntd died (status %s)" % node.shuntd.returncode)
                print(node.shuntd_output()[-3000:])
                return 1
            rss, fds = proc_sample(pid)
            st = node.status()["proxy"]
            samples.append((time.monotonic() - t0, rss, fds, st["active"]))
            print("  t=%4.0fs  rss %6d KiB  fds %5d  active %4d  requests %d"
                  % (samples[-1][0], rss, fds, st["active"], st["requests"]), flush=True)
            if time.monotonic() - t0 > args.duration + 120:
                gen.kill()
                print("soak: load generator did not finish")
                return 1
        out, err = gen.communicate()
        stop.set()
        t.join(10)
        try:
            res = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            print("soak: load generator failed:\n" + err.decode()[-3000:])
            return 1
        time.sleep(1)
        rss_end, fds_end = proc_sample(pid)
        status = node.status()
        print("\nsoak results (%ds, seed %d)" % (args.duration, args.seed))
        print("  requests   %d checked, %d ok, %d aborted on purpose" % (res["requests"], res["ok"], res["aborts"]))
        print("  misroutes  %d" % res["misroutes"])
        for ex in res.get("misroute_examples", []):
            print("             " + ex)
        fails = res["failures"]
        print("  failures   %s" % (", ".join("%s %d" % kv for kv in sorted(fails.items())) or "none"))
        print("  routes     dev-b added %d times, deleted %d times (plus TTL expiries)"
              % (churn_log["adds"], churn_log["dels"]))
        print("  proxy      " + ", ".join("%s %d" % (k, v) for k, v in status["proxy"].items()))
        warm = [s for s in samples if s[0] >= args.duration * 0.2] or samples
        rss_warm = min(s[1] for s in warm)
        rss_max = max(s[1] for s in warm)
        fds_warm = [s[2] for s in warm]
        print("  rss        after warm-up %d..%d KiB, at the end (idle) %d KiB" % (rss_warm, rss_max, rss_end))
        print("  fds        after warm-up %d..%d, at the end (idle) %d" % (min(fds_warm), max(fds_warm), fds_end))
        growing = rss_end > rss_warm * 1.5 + 1024 or fds_end > min(fds_warm) + 10
        print("  verdict    %s" % ("MISROUTES" if res["misroutes"] else "GROWING" if growing else "ok"))
        return 1 if res["misroutes"] or growing else 0
    finally:
        stop.set()
        node.close()


if __name__ == "__main__":
    sys.exit(main())
