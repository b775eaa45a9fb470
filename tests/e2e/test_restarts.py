# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Restarts that lose nothing, under steady keep-alive load with mixed keys
(restartload.py in the client pod):

  (a) takeover: a second shuntd with the same pins and control socket
      takes the listening sockets over; the first drains and exits.
      Zero failed, zero misrouted.
  (b) SIGTERM: in-flight requests finish within --drain-timeout, new
      connections fail open. Zero failed.
  (c) kill -9: only requests in flight on the killed process may fail;
      then new connections go straight to the baseline; a restarted agent
      recovers the routes and steers again.

Each test prints one line "restarts: CASE requests N failed N misrouted N"
(run with -v to see them)."""

import json
import os
import shlex
import signal
import subprocess
import time

import node as N
from base import SVC4, TO4, NodeTestCase

E2E = os.path.dirname(os.path.abspath(__file__))
KEYS = {"dev-a": "sandbox", "": "baseline", "dev-nobody": "baseline"}
WORKERS = 6


class Load:
    """restartload.py in the client pod, for restart tests (a mixin)."""

    def start_load(self, seconds=60, cpus=None, pod="client", in_cgroup=True):
        """Load until load_result() (seconds is only a cap); cpus: the CPUs
        (a set) it runs on, else wherever the scheduler puts it; from pod,
        in the test cgroup or (in_cgroup=False) not."""
        n = self.node
        stop_file = os.path.join(n.tmp, "load-stop-%d" % time.monotonic_ns())
        pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
        cmd = "exec " + shlex.join(pin + n.nsenter(pod) + [N.PYTHON, os.path.join(E2E, "restartload.py"), N.BASE4,
                                                         str(N.HTTP_PORT), str(seconds), str(WORKERS),
                                                         json.dumps(KEYS), stop_file])
        if in_cgroup:
            cmd = "echo $$ > %s && %s" % (shlex.quote(os.path.join(n.cg, "cgroup.procs")), cmd)
        p = n.spawn(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stop_file = stop_file
        return p

    def load_result(self, p, timeout, after=1.5):
        """Let the load run `after` seconds more, stop it, and read its counts."""
        time.sleep(after)
        open(p.stop_file, "w").close()
        out, err = p.communicate(timeout=timeout)
        self.node.procs.remove(p)
        self.assertEqual(p.returncode, 0, "load generator failed:\n%s" % err.decode())
        return json.loads(out)

    def wait_load_running(self, requests=100, timeout=30):
        """Until the proxy has served some of the load (python starts slowly
        in a TCG guest), so there is load on both sides of what comes next."""
        deadline = time.monotonic() + timeout
        base = self.node.status()["proxy"]["requests"]
        while self.node.status()["proxy"]["requests"] - base < requests:
            self.assertLess(time.monotonic(), deadline, "the load does not reach the proxy")
            time.sleep(0.1)

    def report(self, case, st):
        print("\nrestarts: %s requests %d failed %d misrouted %d connections %d failures %s" % (
            case, st["requests"], sum(st["failures"].values()), st["misroutes"], st["connections"],
            st["failures"]))

    def take_over(self):
        """A second shuntd takes over from the running one, which must drain
        and exit cleanly: (the old agent, the new one, the log since the new
        one started)."""
        n = self.node
        old = n.shuntd
        new = n.shuntd_spawn(["--drain-timeout", "5s"])
        off = n.shuntd_log_start = new.log_offset
        n.shuntd = new
        self.wait_log("ready: cgroup", off, timeout=30)  # loading takes seconds under TCG
        self.assertEqual(old.wait(8), 0, "the old agent did not drain and exit cleanly")
        return old, new, N._read_from(n.shuntd_log, off)

    def wait_log(self, text, since, timeout=10):
        deadline = time.monotonic() + timeout
        while text not in N._read_from(self.node.shuntd_log, since):
            self.assertLess(time.monotonic(), deadline, "no %r in shuntd's log" % text)
            time.sleep(0.02)


class Restarts(Load, NodeTestCase):
    def test_a_takeover_loses_nothing(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        load = self.start_load()
        self.wait_load_running()
        old, new, out = self.take_over()
        # Every worker's listener of each family (one per CPU here).
        socks = N.listener_socks()
        self.assertIn("took over %d listener(s)" % socks, out)
        # Two containers (pods) are two pid namespaces: the old agent sees
        # no pid of the new one, which proved itself by the program it
        # attached through the pinned link.
        if N.AC.AGENT_IMAGE:
            self.assertIn("handed %d listener(s) over to an agent in a PID namespace not visible here" % socks, out)
            self.assertIn("which it attached through our pinned connect4 link in place of ours", out)
        else:
            self.assertIn("handed %d listener(s) over to pid %d" % (socks, new.pid), out)
        if N.AC.AGENT_IMAGE:
            # The old pod's entrypoint idles until the pod is deleted (else
            # the kubelet would restart a shuntd that takes over back).
            self.assertTrue(old.proc.poll() is None, "the old agent's container ended after the handover")
            self.assertEqual(old.delete(), 0, "the old pod's container, deleted")
        st = self.load_result(load, 20)
        self.report("takeover", st)
        self.assertGreater(st["requests"], 200, "too little load to mean anything: %r" % st)
        self.assertEqual(st["failures"], {}, "requests failed across the takeover: %r" % st)
        self.assertEqual(st["misroutes"], 0, "requests misrouted across the takeover: %r" % st)
        # the new agent serves, with the routes, and the programs are its own
        # (attached once, not stacked)
        self.assertGreater(n.status()["proxy"]["requests"], 0, "the new agent served nothing")
        self.assertEqual([r["key"] for r in n.routes()], ["dev-a"])
        p = N.run(["bpftool", "-j", "cgroup", "show", n.cg])
        self.assertEqual(len(json.loads(p.stdout)), 5, p.stdout)

    def test_b_sigterm_drains_without_failures(self):
        n = self.node
        n.expected_exit = True
        n.shuntd_stop(signal.SIGINT)
        n.expected_exit = False
        n.shuntd_start(["--drain-timeout", "4s"])
        self.route(SVC4, "dev-a", TO4)
        load = self.start_load()
        self.wait_load_running()
        t0 = time.monotonic()
        n.expected_exit = True
        rc = n.shuntd_stop(signal.SIGTERM, timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0)
        # Every busy connection was told to close on its next response, so
        # the drain ends long before --drain-timeout cuts anything.
        self.assertLess(took, 2, "drain took %.1fs: connections were not told to close" % took)
        st = self.load_result(load, 20)
        self.report("sigterm", st)
        self.assertGreater(st["requests"], 200, st)
        self.assertEqual(st["failures"], {}, "requests failed across SIGTERM: %r" % st)
        # fail open: keyed requests reach the baseline from then on
        self.assertGreater(st["by_pod"].get("baseline", 0), 0)
        self.assertIn("drained", n.shuntd_output())

    def test_c_kill9_fails_only_in_flight(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        load = self.start_load()
        self.wait_load_running()
        n.expected_exit = True
        killed = time.monotonic()
        n.shuntd.send_signal(signal.SIGKILL)
        n.shuntd.wait(5)
        time.sleep(1.5)
        n.expected_exit = False
        n.shuntd_start()
        st = self.load_result(load, 20)
        self.report("kill9", st)
        # Only requests in flight on the killed process fail: the ones it was
        # serving, and ones whose connection was still in its listen queue,
        # all within a moment of the kill.
        k = killed - st["t0"]
        late = [t for t in st["failure_times"] if not k <= t <= k + 2.0]
        self.assertEqual(late, [], "failures away from the kill at %.2fs: %r" % (k, st))
        self.assertLessEqual(sum(st["failures"].values()), 3 * WORKERS, st)
        # (while connecting: a reset, the connection was in the dying
        # listener's queue; refused, its SYN reached the listener just after
        # it closed, the connect() having been sent there a moment before)
        self.assertEqual(set(st["failures"]) - {"ConnectionError", "ConnectionResetError",
                                                "connect: ConnectionResetError",
                                                "connect: ConnectionRefusedError"}, set(), st)
        self.assertGreater(st["requests"], 200, st)
        # Connections made while no agent ran went straight to the baseline
        # (and stay there while kept alive): that is the fail-open path.
        self.assertGreater(st["by_pod"].get("baseline", 0), 0)
        self.assertEqual([r["key"] for r in n.routes()], ["dev-a"], "routes not recovered")
        # New connections are steered again.
        self.assertPod(self.get(N.BASE4, "/after", [("baggage", "sd-routing-key=dev-a")]), "sandbox")
