# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Another cgroup connect program next to shunt's (issue 9, finding 11).

A socket-level load balancer (Cilium's socket LB) turns a ClusterIP into
an endpoint's address at connect(). When its program runs before shunt's,
shunt sees only the endpoint: a route on the ClusterIP alone is never
hit. tests/e2e/bpf/xlate.bpf.c plays that balancer: it turns the virtual
address 10.211.0.99:8080 ([fd00:211::99]:8080) into the baseline pod's.

These tests check, on this kernel, where such a program runs relative to
shunt's (a keyed request to the virtual address reaches the sandbox only
when shunt's program sees the virtual address first), and that
`shuntctl status` lists the program with that order and warns exactly
when a route could be missed.

Cgroups: shunt is attached at <test cgroup>/inner; the "parent" is the
test cgroup, the "descendant" <test cgroup>/inner/pod.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import textwrap

import bpfsys
import node as N
from base import BUILD, SVC4, TO4, TO6, NodeTestCase

VIP4 = N.hostport("10.211.0.99", N.HTTP_PORT)
VIP6 = N.hostport("fd00:211::99", N.HTTP_PORT)
XLATE_OBJ = os.path.join(os.path.abspath(BUILD), "tests", "xlate.bpf.o")

# One keyed GET to host:port; prints the X-Pod of the answer and the peer
# address the application sees (getpeername).
ONE_GET = textwrap.dedent("""
    import socket, sys
    host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.create_connection((host, port), timeout=5)
    peer = s.getpeername()[0]
    s.sendall(("GET / HTTP/1.1\\r\\nHost: x\\r\\nbaggage: sd-routing-key=%s\\r\\nConnection: close\\r\\n\\r\\n"
               % key).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    pod = [line.split(b":", 1)[1].strip().decode() for line in data.split(b"\\r\\n")
           if line.lower().startswith(b"x-pod:")]
    print(pod[0] if pod else "-", peer)
""")


class SocketLB(NodeTestCase):
    @classmethod
    def prepare_node(cls, node):
        if not os.path.exists(XLATE_OBJ):
            raise N.HarnessError("%s is missing: `make test-e2e` builds it (make %s)"
                                 % (XLATE_OBJ, os.path.relpath(XLATE_OBJ)))
        cls.inner = os.path.join(node.cg, "inner")
        cls.pod = os.path.join(cls.inner, "pod")
        os.makedirs(cls.pod)
        node.shuntd_args += ["--cgroup", cls.inner]

    @classmethod
    def tearDownClass(cls):
        n = cls.node
        if n is not None:
            # the agent first (its links are on inner), then the cgroups
            # the node does not know about
            if n.shuntd_running():
                n.shuntd_stop(signal.SIGTERM)
            for d in (cls.pod, cls.inner):
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
        super().tearDownClass()

    # ---- the stand-in balancer -------------------------------------------------
    def attach_lb(self, cgroup, flags=bpfsys.ALLOW_MULTI):
        """Load xlate.bpf.o afresh and attach both its programs to cgroup;
        detached and unloaded when the test ends, whatever happens.
        Returns {"connect4": id, "connect6": id}."""
        d = os.path.join(self.node.pin, "lb-%d" % len(os.listdir(self.node.pin)))
        os.mkdir(d)
        self.addCleanup(shutil.rmtree, d, True)
        N.run(["bpftool", "prog", "loadall", XLATE_OBJ, d])
        cg_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, cg_fd)
        ids = {}
        for hook, kind in (("connect4", bpfsys.CONNECT4), ("connect6", bpfsys.CONNECT6)):
            fd = bpfsys.obj_get(os.path.join(d, "lb_" + hook))
            self.addCleanup(os.close, fd)
            try:
                bpfsys.attach(cg_fd, fd, kind, flags)
            except OSError as e:
                if flags & bpfsys.PREORDER and e.errno == 22:
                    self.skipTest(N.KERNEL_SKIP + "BPF_F_PREORDER needs Linux 6.15 (this kernel: %s)" % os.uname().release)
                raise
            self.addCleanup(bpfsys.detach, cg_fd, fd, kind)
            ids[hook] = bpfsys.prog_id(fd)
        return ids

    def restart_shuntd(self):
        """Stop the agent (its programs go) and start it again, so that its
        programs are attached after whatever is attached now."""
        n = self.node
        n.expected_exit = True
        self.assertEqual(n.shuntd_stop(signal.SIGTERM), 0)
        n.shuntd_start()
        n.expected_exit = False
        self.mark = n.mark()

    def keyed_get(self, host, cgroup, key="dev-a"):
        """The pod that answered a keyed GET from a task of cgroup."""
        return self.keyed_get_peer(host, cgroup, key)[0]

    def keyed_get_peer(self, host, cgroup, key="dev-a"):
        """(the pod that answered, the peer address the client saw)"""
        n = self.node
        inner = shlex.join(n.nsenter("client") + [N.PYTHON, "-c", ONE_GET, host, str(N.HTTP_PORT), key])
        argv = ["sh", "-c", "echo $$ > %s && exec %s" % (shlex.quote(os.path.join(cgroup, "cgroup.procs")), inner)]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, "client failed: %s" % p.stderr)
        return tuple(p.stdout.split())

    def others(self, st):
        return [(p["hook"], p["id"], p["relation"], p["order"], p["cgroup"])
                for p in st["cgroup_programs"]["programs"]]

    def warned_routes(self, st):
        return {w["hook"]: sorted((r["service"], r["key"]) for r in w["routes"]) for w in st["warnings"]}

    # ---- the cases --------------------------------------------------------------
    def test_balancer_attached_before_shunt_same_cgroup(self):
        n = self.node
        ids = self.attach_lb(self.inner)
        self.restart_shuntd()
        self.route(VIP4, "dev-a", TO4)
        self.route(VIP6, "dev-a", TO6)
        # the balancer runs first: shunt never sees the virtual address
        self.assertEqual(self.keyed_get("10.211.0.99", self.inner), "baseline")
        st = n.status()
        self.assertEqual(self.others(st), [("connect4", ids["connect4"], "same", "before", self.inner),
                                           ("connect6", ids["connect6"], "same", "before", self.inner)])
        self.assertEqual(self.warned_routes(st), {"connect4": [(VIP4, "dev-a")], "connect6": [(VIP6, "dev-a")]})
        for w in st["warnings"]:
            self.assertEqual(w["kind"], "connect_program_before_shunt")
            self.assertEqual(w["programs"], [ids[w["hook"]]])
        text = n.ctl_ok("status").stdout
        self.assertIn("connect4 id %-6u lb_connect4      before shunt's, attached at shunt's cgroup"
                      % ids["connect4"], text)
        self.assertIn("warning: a cgroup/connect4 program runs before shunt's", text)
        self.assertIn("  %s key dev-a -> %s\n" % (VIP4, TO4), text)
        # a route on the endpoint too, to the same sandbox: requests are
        # steered, and the IPv4 route is backed up
        self.route(SVC4, "dev-a", TO4)
        # (the application then sees the endpoint shunt saw as its peer)
        self.assertEqual(self.keyed_get_peer("10.211.0.99", self.inner), ("sandbox", N.BASE4))
        st = n.status()
        self.assertEqual(self.warned_routes(st), {"connect6": [(VIP6, "dev-a")]})
        # with every route backed up, nothing to warn about
        self.route("[fd00:211::20]:8080", "dev-a", TO6)
        self.assertEqual(n.status()["warnings"], [])
        self.assertNotIn("warning:", n.ctl_ok("status").stdout)

    def test_nothing_else_attached_no_warning(self):
        n = self.node
        self.route(VIP4, "dev-a", TO4)
        st = n.status()
        self.assertEqual(st["cgroup_programs"]["programs"], [])
        self.assertEqual(st["warnings"], [])
        self.assertFalse(st["cgroup_programs"]["truncated"])
        self.assertEqual(st["cgroup_programs"]["error"], "")
        self.assertGreaterEqual(st["cgroup_programs"]["cgroups_walked"], 1, "inner/pod was not looked at")
        self.assertIn("other cgroup connect programs: none", n.ctl_ok("status").stdout)

    def test_balancer_attached_after_shunt_same_cgroup(self):
        n = self.node
        ids = self.attach_lb(self.inner)
        self.route(VIP4, "dev-a", TO4)
        self.assertEqual(self.keyed_get_peer("10.211.0.99", self.inner), ("sandbox", "10.211.0.99"),
                         "shunt's program ran second")
        st = n.status()
        self.assertIn(("connect4", ids["connect4"], "same", "after", self.inner), self.others(st))
        self.assertEqual(st["warnings"], [])

    def test_balancer_at_a_parent_runs_after_shunt(self):
        n = self.node
        ids = self.attach_lb(n.cg)
        self.route(VIP4, "dev-a", TO4)
        self.assertEqual(self.keyed_get("10.211.0.99", self.inner), "sandbox", "the parent's program ran first")
        st = n.status()
        self.assertIn(("connect4", ids["connect4"], "ancestor", "after", n.cg), self.others(st))
        self.assertEqual(st["warnings"], [], "a parent's program runs after shunt's: nothing to warn about")
        self.assertIn("after shunt's, attached at a parent cgroup, %s" % n.cg, n.ctl_ok("status").stdout)

    def test_balancer_at_a_parent_with_preorder_runs_first(self):
        n = self.node
        ids = self.attach_lb(n.cg, bpfsys.ALLOW_MULTI | bpfsys.PREORDER)
        self.route(VIP4, "dev-a", TO4)
        self.assertEqual(self.keyed_get("10.211.0.99", self.inner), "baseline")
        st = n.status()
        self.assertIn(("connect4", ids["connect4"], "ancestor", "before", n.cg), self.others(st))
        self.assertEqual(self.warned_routes(st), {"connect4": [(VIP4, "dev-a")]})

    def test_balancer_at_a_descendant_runs_first_for_its_tasks(self):
        n = self.node
        ids = self.attach_lb(self.pod)
        self.route(VIP4, "dev-a", TO4)
        # a task of the descendant: the balancer first
        self.assertEqual(self.keyed_get("10.211.0.99", self.pod), "baseline")
        # a task of shunt's cgroup itself is not affected: no balancer there,
        # nobody serves the virtual address (the keyed request is steered)
        self.assertEqual(self.keyed_get("10.211.0.99", self.inner), "sandbox")
        st = n.status()
        self.assertIn(("connect4", ids["connect4"], "descendant", "before", self.pod), self.others(st))
        self.assertEqual(self.warned_routes(st), {"connect4": [(VIP4, "dev-a")]})
        self.assertIn("before shunt's for the tasks of %s (a descendant cgroup)\n" % self.pod,
                      n.ctl_ok("status").stdout)
