# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Inferred propagation (issue 15). A chain of real HTTP services
(tests/e2e/inferapp.py):

    load (client pod) -> front (propagates baggage) -> middle (does NOT)
        -> sink: baseline in pod base, the sandbox in pod sbx

The middle makes two calls per request while serving it, a background
call on a timer and, after some responses, a fire-and-forget call. Its
pod is served in-pod with inference set; the route sends dev-a's calls to
the sink to the sandbox. Ground truth comes from the apps' own logs
(request ids), never from shunt's counters: a call that carries a key it
should not (a background or post-response call with any key, a request's
call with another request's key) is a wrong injection, and there must be
none, at any rate. Recall per rate is printed (the closing note quotes it).
"""

import json
import os
import signal
import subprocess
import sys
import time

import node as N
from base import NodeTestCase

sys.path.insert(0, N.E2E_DIR)
import inferapp  # noqa: E402

MID4 = N.NET4 + ".41"
FRONT4 = N.NET4 + ".42"
SINK_PORT = 8081
MID_PORT = 8082
FRONT_PORT = 8083
GRPC_PORT = 8084
METRICS_PORT = 9478
POD = "test/mid"


LEARN_IDLE = "2s"  # --infer-learn-idle: short, for tests that take seconds
# Rates (requests/s) and seconds of the recall runs; SHUNT_INFER_RATES
# ("1:30,5:30,20:30,100:20,300:10") makes a longer measurement of it.
RATES = [tuple(float(x) for x in r.split(":")) for r in
         os.environ.get("SHUNT_INFER_RATES", "5:6,20:5,100:4").split(",")]


class InferChain(NodeTestCase):
    """The chain, set up for each test; the tests are in the subclasses."""
    MID_ARGS = ("--bg-ms", "40", "--post-prob", "0.4", "--work-ms", "6")

    @classmethod
    def prepare_node(cls, node):
        node.add_pod("mid", MID4, in_cgroup=True)
        node.add_pod("front", FRONT4)
        node.shuntd_args += ["--infer-learn-idle", LEARN_IDLE, "--metrics-addr", N.hostport(N.NODE4, METRICS_PORT)]

    def setUp(self):
        super().setUp()
        n = self.node
        self.tmp = os.path.join(n.tmp, "infer-%s" % self._testMethodName)
        os.makedirs(self.tmp, exist_ok=True)
        self.procs = []
        self.sinks = {}
        for pod, where in (("base", "baseline"), ("sbx", "sandbox")):
            log = self.app(pod, "sink", "--port", str(SINK_PORT), "--name", where)
            self.sinks[log] = where
        self.mid_log = self.app("mid", "middle", "--port", str(MID_PORT), "--name", "mid",
                                "--next", "%s:%d" % (N.BASE4, SINK_PORT), *self.MID_ARGS, in_cgroup=True)
        self.app("front", "front", "--port", str(FRONT_PORT), "--name", "front",
                 "--next", "%s:%d" % (MID4, MID_PORT))
        for pod, port in (("base", SINK_PORT), ("sbx", SINK_PORT), ("mid", MID_PORT), ("front", FRONT_PORT)):
            n.wait_listen(pod, port)
        self.route("%s:%d" % (N.BASE4, SINK_PORT), "dev-a", "%s:%d" % (N.SBX4, SINK_PORT))
        n.ctl_ok("pod", "add", POD, "--netns", n.netns_path("mid"))
        self.addCleanup(n.ctl, "pod", "del", POD)
        self.loads = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        super().tearDown()

    def app(self, pod, role, *args, in_cgroup=False):
        name = "%s-%s" % (role, pod)
        log = os.path.join(self.tmp, name + ".log")
        argv = [N.PYTHON, "-B", "-u", os.path.join(N.E2E_DIR, "inferapp.py"), "--role", role, "--log", log] + list(args)
        with open(os.path.join(self.tmp, name + ".stderr"), "ab") as errf:
            self.procs.append(self.node.pod_spawn(pod, argv, in_cgroup, stdout=subprocess.DEVNULL, stderr=errf))
        return log

    def load(self, rate, duration, keys="dev-a,dev-b,-", seed=1):
        log = os.path.join(self.tmp, "load-%g-%d.log" % (rate, len(self.loads)))
        argv = [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "inferapp.py"), "--role", "load",
                "--target", "%s:%d" % (FRONT4, FRONT_PORT), "--rate", str(rate), "--duration", str(duration),
                "--keys", keys, "--log", log, "--seed", str(seed + len(self.loads))]
        rc, out, err = self.node.pod_run("client", argv, in_cgroup=False, timeout=duration + 60)
        self.assertEqual(rc, 0, err)
        summary = json.loads(out.strip().splitlines()[-1])
        self.loads.append(log)
        return summary, log

    def infer(self, mode, *ports):
        args = ["pod", "infer", POD, mode]
        if ports:
            args += ["--port", ",".join(str(p) for p in ports)]
        return self.node.ctl_ok(*args)

    def stats(self):
        pods = [p for p in self.node.ctl_json("pod", "list") if p["name"] == POD]
        self.assertEqual(len(pods), 1, pods)
        return pods[0]["inference"]

    def paced(self, pod, host, port, key, prefix, n, every, start, abort=None):
        log = os.path.join(self.tmp, "paced-%s.log" % prefix)
        argv = [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "infer_paced.py"), host, str(port), log, key, prefix,
                str(n), str(every), "%.3f" % start]
        if abort is not None:
            argv.append(str(abort))
        with open(os.path.join(self.tmp, "paced.stderr"), "ab") as errf:
            p = self.node.pod_spawn(pod, argv, False, stdout=subprocess.DEVNULL, stderr=errf)
        self.procs.append(p)
        self.loads.append(log)
        return p

    def metrics_text(self):
        """/metrics, from the node (where --metrics-addr listens)."""
        url = "http://%s/metrics" % N.hostport(N.NODE4, METRICS_PORT)
        return N.run(self.node.nsenter("node") + ["curl", "-sSf", "--noproxy", "*", "--max-time", "5", url]).stdout

    def truth(self, loads=None, since=None):
        """Ground truth over loads (default: all so far), from what the
        sinks logged after since (sink_marks())."""
        sinks = self.sinks
        if since is not None:
            sinks = {}
            for log, where in self.sinks.items():
                part = "%s.%d" % (log, since[log])
                with open(log, "rb") as f, open(part, "wb") as out:
                    f.seek(since[log])
                    out.write(f.read())
                sinks[part] = where
        return inferapp.analyze(loads or self.loads, sinks, {"dev-a"})

    def sink_marks(self):
        return {log: os.path.getsize(log) for log in self.sinks}

    def assertNoWrong(self, t, what):
        self.assertEqual(t["wrong"], 0, "%s: wrong keys: %s" % (what, json.dumps(t["wrong_details"], indent=1)))
        self.assertEqual(t["unknown_rid"], 0, what)
        self.assertEqual(t["misplaced"], 0, what)


class Infer(InferChain):
    def test_without_inference_the_key_is_lost(self):
        """The reproduction: the middle drops the key, so dev-a's calls two
        hops down reach the baseline."""
        s, log = self.load(20, 3)
        self.assertEqual(s["failed"], 0, s)
        t = self.truth()
        self.assertGreater(t["should_key"], 10, t)
        self.assertEqual(t["carried_correct"], 0, t)
        self.assertEqual(t["missed"], t["should_key"], t)

    def test_shadow_decides_and_injects_nothing(self):
        self.infer("shadow", MID_PORT)
        s, _ = self.load(20, 4)
        self.assertEqual(s["failed"], 0, s)
        t = self.truth()
        self.assertNoWrong(t, "shadow")
        self.assertEqual(t["carried_correct"], 0, "shadow mode injected: %r" % (t,))
        self.assertEqual(t["inferred_marked"], 0, t)
        st = self.stats()
        self.assertEqual(st["mode"], "shadow", st)
        self.assertTrue(st["attached"], st)
        self.assertGreater(st["inbound_keyed"], 10, st)
        self.assertGreater(st["decided"], 0, st)
        self.assertEqual(st["injected"], 0, st)
        self.assertGreater(st["nothing_in_flight"], 0, "the background calls: %r" % (st,))
        self.assertGreater(st["idle_paths"], 0, st)
        # The same numbers on /metrics, per pod.
        m = self.metrics_text()
        pod = 'pod="%s"' % POD
        self.assertIn('shunt_infer_mode{%s,mode="shadow",switched_off="false"} 1' % pod, m)
        self.assertIn('shunt_infer_calls_total{%s,outcome="decided"} %d' % (pod, st["decided"]), m)
        self.assertIn('shunt_infer_injected_total{%s} 0' % pod, m)
        self.assertIn('shunt_infer_inbound_requests_total{%s,keyed="true"} %d' % (pod, st["inbound_keyed"]), m)
        taken = [ln for ln in m.splitlines() if ln.startswith('shunt_infer_kernel_total{event="taken"}')]
        self.assertEqual(len(taken), 1, m)
        self.assertGreaterEqual(int(taken[0].split()[-1]), st["accepted"])

    def test_on_reaches_the_sandbox_and_is_never_wrong(self):
        """Shadow first (the paths are learnt), then on, at several rates:
        0 wrong injections in every run; recall printed per rate."""
        self.infer("shadow", MID_PORT)
        self.load(20, 3)
        self.infer("on", MID_PORT)
        rows = []
        for rate, dur in RATES:
            since = self.sink_marks()
            s, log = self.load(rate, dur)
            self.assertEqual(s["failed"], 0, "rate %s: %r" % (rate, s))
            time.sleep(0.3)  # the last post-response calls
            t = self.truth(self.loads, since)
            self.assertNoWrong(t, "rate %s" % rate)
            rows.append((rate, t))
        st = self.stats()
        self.assertGreater(st["injected"], 0, st)
        sys.stderr.write("\n  pod list's inference after the runs: %s" % json.dumps(st))
        sys.stderr.write("\n  inference recall (rate/s: outbound calls, calls that should carry a key, "
                         "carried, recall, wrong):\n")
        for rate, t in rows:
            sys.stderr.write("   %5g: %6d %6d %6d %6.1f%% %d\n" % (rate, t["calls"], t["should_key"], t["carried_correct"],
                                                             100.0 * (t["recall"] or 0), t["wrong"]))
        low = rows[0][1]  # the lowest rate first
        self.assertGreater(low["carried_correct"], 0, "nothing reached the sandbox at 5/s: %r" % (low,))
        self.assertEqual(low["inferred_marked"], low["carried_correct"], "every inferred key is marked")
        self.assertGreaterEqual(low["recall"], 0.5, low)

    def test_agent_killed_traffic_flows(self):
        self.infer("on", MID_PORT)
        s, _ = self.load(20, 2)
        self.assertEqual(s["failed"], 0, s)
        n = self.node
        n.expected_exit = True
        n.shuntd.send_signal(signal.SIGKILL)
        n.shuntd.wait(5)
        s, _ = self.load(20, 2, keys="dev-a,-")
        self.assertEqual(s["failed"], 0, "killed agent: %r" % (s,))
        n.shuntd_start()

    def test_agent_hung_inbound_fails_open(self):
        """SIGSTOP: the heartbeat goes stale, the pod's inbound
        connections reach the app directly. (The route goes first: a hung
        agent still holds connections to steered services, as in every
        mode.)"""
        n = self.node
        self.infer("on", MID_PORT)
        s, _ = self.load(20, 2)
        self.assertEqual(s["failed"], 0, s)
        n.ctl_ok("route", "del", "--service", "%s:%d" % (N.BASE4, SINK_PORT), "--key", "dev-a")
        n.shuntd.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.5)
            s, _ = self.load(20, 2, keys="dev-a,-")
        finally:
            n.shuntd.send_signal(signal.SIGCONT)
        self.assertEqual(s["failed"], 0, "hung agent: %r" % (s,))

    def test_refusals(self):
        n = self.node
        r = n.ctl("pod", "infer", "test/nobody", "on", "--port", str(MID_PORT))
        self.assertEqual(r.returncode, 1)
        self.assertIn("not served in-pod", r.stderr)
        r = n.ctl("pod", "infer", POD, "on")
        self.assertEqual(r.returncode, 2)
        self.infer("on", MID_PORT)
        self.infer("off")
        st = self.stats()
        self.assertEqual(st["mode"], "off", st)
        self.assertFalse(st["attached"], st)
        s, _ = self.load(10, 1)
        self.assertEqual(s["failed"], 0, s)
        self.assertEqual(self.stats()["accepted"], st["accepted"], "off: nothing handed over")

    def test_grpc_per_stream(self):
        """HTTP/2 both ways: gRPC into the middle (its calls tracked per
        stream) and from it (its downstream calls, one multiplexed
        connection, get the key per stream). A keyed call's downstream
        call lands in the sandbox with the key marked inferred; an unkeyed
        one's never carries a key."""
        n = self.node
        for pod, name in (("base", "baseline"), ("sbx", "sandbox")):
            self.procs.append(n.pod_spawn(pod, [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "grpc_server.py"), "--name",
                                                name, "--port", str(GRPC_PORT), "--ready",
                                                os.path.join(self.tmp, name + ".grpc")], False))
        self.procs.append(n.pod_spawn("mid", [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "grpc_server.py"), "--name",
                                              "mid", "--port", str(GRPC_PORT), "--ready",
                                              os.path.join(self.tmp, "mid.grpc"), "--next",
                                              "%s:%d" % (N.BASE4, GRPC_PORT)], True))
        for pod in ("base", "sbx", "mid"):
            n.wait_listen(pod, GRPC_PORT)
        self.route("%s:%d" % (N.BASE4, GRPC_PORT), "dev-a", "%s:%d" % (N.SBX4, GRPC_PORT))
        self.infer("on", MID_PORT, GRPC_PORT)
        rc, out, err = n.pod_run("client", [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "grpc_client.py"),
                                            "%s:%d" % (MID4, GRPC_PORT), "dev-a", "relay", "150"],
                                 in_cgroup=False, timeout=60)
        self.assertEqual(rc, 0, err)
        calls = json.loads(out)["calls"]
        self.assertEqual([c for c in calls if c["err"]], [], calls)
        for c in calls:
            if not c["keyed"]:
                self.assertEqual(c["down"]["pod"], "baseline", c)
                self.assertEqual(c["down"]["baggage"], "", "an unkeyed call got a key: %r" % (c,))
            elif c["down"]["pod"] == "sandbox":
                self.assertEqual(c["down"]["baggage"], "sd-routing-key=dev-a;shunt-inferred", c)
            else:
                self.assertEqual(c["down"]["baggage"], "", c)
        landed = [c for c in calls if c["keyed"] and c["down"]["pod"] == "sandbox"]
        # Once the path has waited its idle time (--infer-learn-idle).
        self.assertGreaterEqual(len(landed), 10, (self.stats(), calls[-3:]))
        st = self.stats()
        self.assertGreaterEqual(st["inbound_keyed"], 20, st)
        self.assertEqual(st["ports"], [MID_PORT, GRPC_PORT], st)


class InferTakeover(InferChain):
    """A takeover hands each pod's inference over: the new agent sets it
    again (its own program and listeners), the chain's requests keep
    succeeding, and no key is wrong across it."""

    def test_takeover_keeps_inference(self):
        n = self.node
        self.infer("on", MID_PORT)
        log = os.path.join(self.tmp, "load-takeover.log")
        argv = [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "inferapp.py"), "--role", "load",
                "--target", "%s:%d" % (FRONT4, FRONT_PORT), "--rate", "20", "--duration", "6",
                "--keys", "dev-a,dev-b,-", "--log", log, "--seed", "77"]
        load = n.pod_spawn("client", argv, False, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2)
        old = n.shuntd
        new = n.shuntd_spawn(["--drain-timeout", "5s"])
        n.shuntd = new
        out, err = load.communicate(timeout=60)
        self.assertEqual(load.returncode, 0, err)
        self.assertEqual(old.wait(10), 0, "the old agent did not drain and exit cleanly")
        summary = json.loads(out.decode().strip().splitlines()[-1])
        self.assertEqual(summary["failed"], 0, summary)
        self.loads.append(log)
        self.assertNoWrong(self.truth(), "takeover")
        text = N._read_from(n.shuntd_log, new.log_offset)
        self.assertIn("inference: on for pod '%s'" % POD, text)
        st = self.stats()
        self.assertEqual((st["mode"], st["attached"], st["ports"]), ("on", True, [MID_PORT]), st)
        self.assertGreater(st["inbound"], 0, "the new agent read nothing: %r" % (st,))


class InferHostile(InferChain):
    """The load shapes a review found a naive rule wrong under
    (infer_hostile.py), inference turned on with no shadow phase first:
    no key may be wrong. Each one was reproduced against the first
    version (38 of 40 calls wrong in 'preexisting' and 'post')."""
    MID_ARGS = ("--work-ms", "30", "--post-prob", "0", "--bg-ms", "0")

    def drive(self, mode):
        log = os.path.join(self.tmp, "hostile-%s.log" % mode)
        go = os.path.join(self.tmp, "go")
        argv = [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "infer_hostile.py"), mode, MID4, str(MID_PORT), log, go]
        with open(os.path.join(self.tmp, "hostile.stderr"), "ab") as errf:
            p = self.node.pod_spawn("client", argv, False, stdout=subprocess.DEVNULL, stderr=errf)
        self.procs.append(p)
        deadline = time.monotonic() + 30
        while mode == "preexisting" and not os.path.exists(go + ".ready"):
            self.assertIsNone(p.poll(), "infer_hostile.py exited early")
            self.assertLess(time.monotonic(), deadline, "the connection was never opened")
            time.sleep(0.05)
        self.infer("on", MID_PORT)
        open(go, "w").close()
        self.assertEqual(p.wait(60), 0, "infer_hostile.py %s failed" % mode)
        self.loads.append(log)
        t = self.truth()
        self.assertNoWrong(t, mode)
        self.assertGreater(t["should_key"], 20, t)
        return t, self.stats()

    def test_preexisting_connection_blocks_inference(self):
        t, st = self.drive("preexisting")
        self.assertGreater(st["untracked"], 0, st)

    def test_post_response_calls_of_a_never_idle_pod(self):
        self.restart_middle("--work-ms", "30", "--post-prob", "1", "--post-delay-ms", "5", "--bg-ms", "0")
        t, st = self.drive("post")
        self.assertEqual(st["decided"], 0, st)
        self.assertGreater(st["learning"], 0, st)

    def test_background_calls_under_a_keyed_stream(self):
        self.restart_middle("--work-ms", "30", "--post-prob", "0", "--bg-ms", "40")
        t, st = self.drive("stream")
        self.assertGreater(t["per_kind"]["bg"]["calls"], 10, t)

    def restart_middle(self, *args):
        """The middle again, with other behaviour (its log: a new file)."""
        mid = self.procs[2]
        mid.send_signal(signal.SIGTERM)
        mid.wait(5)
        self.mid_log = self.app("mid", "middle", "--port", str(MID_PORT), "--name", "mid2",
                                "--next", "%s:%d" % (N.BASE4, SINK_PORT), *args, in_cgroup=True)
        self.node.wait_listen("mid", MID_PORT)


class InferPaced(InferChain):
    """Paced loads (infer_paced.py) against a middle that makes one call
    200 ms into each request: u-i without a key at t, a-i with dev-a at
    t+30 ms, so u-i's call is made while a-i is in flight. Each test is a
    way a second review got a wrong key out of the previous version."""
    MID_ARGS = ("--work-ms", "200", "--calls", "1", "--post-prob", "0", "--bg-ms", "0")

    def learn(self):
        """/down learnt: dev-a requests one at a time, then the pod idle
        for longer than --infer-learn-idle."""
        self.infer("on", MID_PORT)
        p = self.paced("client", MID4, MID_PORT, "dev-a", "l", 6, 0.3, time.time() + 0.5)
        self.assertEqual(p.wait(30), 0)
        time.sleep(2.5)

    def attack(self, upod, uhost, uport, abort=None):
        self.learn()
        t0 = time.time() + 0.5
        u = self.paced(upod, uhost, uport, "-", "u", 10, 0.6, t0, abort)
        a = self.paced("client", MID4, MID_PORT, "dev-a", "a", 10, 0.6, t0 + 0.03)
        self.assertEqual(u.wait(60), 0)
        self.assertEqual(a.wait(60), 0)
        time.sleep(0.5)
        t = self.truth()
        self.assertNoWrong(t, self._testMethodName)
        self.assertEqual(t["per_kind"]["request"]["calls"], 26, t)  # every call was made
        return t

    def test_a_client_reset_leaves_the_handler_running(self):
        """u-i is reset 10 ms in: the app's handler goes on, unseen (A)."""
        self.attack("client", MID4, MID_PORT, abort=0.01)
        self.assertGreater(self.stats()["aborted"], 0)

    def test_loopback_and_self_calls_are_work_shunt_does_not_see(self):
        """u-i comes from inside the pod to 127.0.0.1 (a sidecar, the app
        itself): counted as untracked while it lasts (U)."""
        self.attack("mid", "127.0.0.1", MID_PORT)
        self.assertGreater(self.stats()["untracked"], 0)

    def test_a_port_not_listed(self):
        """The app also serves a port not in --port (U)."""
        self.app("mid", "middle", "--port", str(MID_PORT + 10), "--name", "mid-b",
                 "--next", "%s:%d" % (N.BASE4, SINK_PORT), *self.MID_ARGS, in_cgroup=True)
        self.node.wait_listen("mid", MID_PORT + 10)
        self.attack("client", MID4, MID_PORT + 10)
        self.assertGreater(self.stats()["untracked"], 0)

    def test_grpc_deadline_leaves_the_handler_running(self):
        """gRPC u-i gives up after 50 ms (RST_STREAM); its handler calls
        out 300 ms in, while a-i (dev-a) is in flight (A)."""
        n = self.node
        for pod, name in (("base", "baseline"), ("sbx", "sandbox")):
            self.procs.append(n.pod_spawn(pod, [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "grpc_server.py"), "--name",
                                                name, "--port", str(GRPC_PORT), "--ready",
                                                os.path.join(self.tmp, name + ".grpc")], False))
        log = os.path.join(self.tmp, "relay-late.log")
        self.procs.append(n.pod_spawn("mid", [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "grpc_server.py"), "--name",
                                              "mid", "--port", str(GRPC_PORT), "--ready",
                                              os.path.join(self.tmp, "mid.grpc"), "--next",
                                              "%s:%d" % (N.BASE4, GRPC_PORT), "--relay-log", log], True))
        for pod in ("base", "sbx", "mid"):
            n.wait_listen(pod, GRPC_PORT)
        self.route("%s:%d" % (N.BASE4, GRPC_PORT), "dev-a", "%s:%d" % (N.SBX4, GRPC_PORT))
        self.infer("on", GRPC_PORT)
        rc, out, err = n.pod_run("client", [N.PYTHON, "-B", os.path.join(N.E2E_DIR, "grpc_client.py"),
                                            "%s:%d" % (MID4, GRPC_PORT), "dev-a", "late"], in_cgroup=False, timeout=60)
        self.assertEqual(rc, 0, err)
        time.sleep(0.5)
        with open(log) as f:
            evs = [json.loads(ln) for ln in f]
        u = [e for e in evs if e["rid"].startswith("u-")]
        self.assertEqual(len(u), 5, evs)
        self.assertEqual([e for e in u if e["down"].get("baggage")], [], "an abandoned call got a key")
        self.assertGreater(self.stats()["aborted"], 0)


class InferOffOn(InferChain):
    """A pod that is never idle (dev-a every 15 ms, 30 ms of work, a call
    5 ms after each answer): W keeps its post-response path undecided --
    also when inference is off for a while in between (the idle time of a
    pod nobody watched does not count)."""
    MID_ARGS = ("--work-ms", "30", "--post-prob", "1", "--post-delay-ms", "5", "--bg-ms", "0")

    def phase(self, tag, off_after=None):
        t0 = time.time() + 1.0
        p = self.paced("client", MID4, MID_PORT, "dev-a", tag, 70, 0.015, t0)
        if off_after is not None:
            time.sleep(max(0.0, t0 + off_after - time.time()))
            self.infer("off")
        self.assertEqual(p.wait(60), 0)

    def test_off_then_on_learns_again(self):
        self.infer("on", MID_PORT)
        self.phase("p1", off_after=0.8)
        time.sleep(3)
        self.infer("on", MID_PORT)
        self.phase("p2")
        t = self.truth()
        self.assertNoWrong(t, "off, then on")
        self.assertGreater(t["per_kind"]["post"]["calls"], 50, t)
        self.assertEqual(t["per_kind"]["post"]["keyed"], 0, t)
