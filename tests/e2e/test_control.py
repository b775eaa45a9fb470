# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Who may use the control socket (issue 9, finding 5).

The socket file's mode lets root in; what root may then do depends on its
capabilities: changing routes or overrides, reload and takeover need
CAP_NET_ADMIN in the agent's user namespace, listing and status do not.
A root process stripped of every capability (setpriv) is refused with a
message naming the capability and itself, and changes nothing: the route
table stays, the agent keeps serving and keeps its listening sockets.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time

import node as N
from base import SVC4, TO4, TO2_4, NodeTestCase

KEYED = [("baggage", "sd-routing-key=dev-a")]
CAP_NET_ADMIN = 12

# A raw takeover request, as a new shuntd sends it: prints what came back
# (the answer, how many descriptors) and the caller's own CapEff.
RAW_TAKEOVER = textwrap.dedent("""
    import array, json, os, socket, sys
    cap = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff:")][0]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(b"takeover\\n")
    data, fds = b"", 0
    while True:
        msg, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64))
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(raw[:len(raw) - len(raw) % a.itemsize])
                fds += len(a)
                for fd in a:
                    os.close(fd)
        if not msg:
            break
        data += msg
    print(json.dumps({"capeff": cap, "answer": data.decode("utf-8", "replace"), "fds": fds}))
""")


# n route-add requests, each on its own connection; prints the answers.
RAW_MANY = textwrap.dedent("""
    import json, socket, sys
    path, svc, to, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    out = []
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
        s.sendall(("route-add\\t%s\\tk%d\\t%s\\t0\\terror\\n" % (svc, i, to)).encode())
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        out.append(data.decode())
    print(json.dumps(out))
""")


def setpriv_argv(caps=None):
    """setpriv that leaves a root process exactly `caps` (None: none at all).
    Root gets its bounding set at exec, so the bounding set is the limit."""
    bound = "-all" if not caps else "-all," + ",".join("+" + c for c in caps)
    return ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=" + bound, "--"]


def capeff_has(hexmask, cap):
    return bool(int(hexmask, 16) & (1 << cap))


class ControlCapsBase(NodeTestCase):
    node_opts = {"config": ""}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not cls._skip and not shutil.which("setpriv"):
            cls._skip = "setpriv (util-linux) not found"

    def ctl_as(self, prefix, *args):
        """shuntctl run under prefix (e.g. setpriv_argv()); returns the
        CompletedProcess and the CapEff the process had just before exec."""
        capfile = os.path.join(self.node.tmp, "capeff-%d" % time.monotonic_ns())
        open(capfile, "w").close()
        os.chmod(capfile, 0o666)  # for a caller that is not root
        argv = prefix + ["sh", "-c", 'sed -n "s/^CapEff:\\t//p" /proc/self/status > "$0"; exec "$@"',
                         capfile, self.node.shuntctl_bin, "--control", self.node.sock] + [str(a) for a in args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        with open(capfile) as f:
            cap = f.read().strip()
        os.unlink(capfile)
        p.argv = argv
        return p, cap

    def raw_takeover_as(self, prefix):
        p = subprocess.run(prefix + [N.PYTHON, "-c", RAW_TAKEOVER, self.node.sock], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(p.returncode, 0, "raw takeover client failed: %s" % p.stderr)
        return json.loads(p.stdout)

    def assertRefused(self, p, what):
        self.assertEqual(p.returncode, 1, "%s: exit %d, stdout %r stderr %r" % (what, p.returncode, p.stdout,
                                                                                 p.stderr))
        self.assertIn("%s: needs CAP_NET_ADMIN" % what, p.stderr)
        self.assertEqual(p.stdout, "")

    def assertServing(self):
        self.assertTrue(self.node.shuntd_running(), "the agent is gone")
        self.assertPod(self.get(N.BASE4, "/", KEYED), "sandbox", "the agent no longer steers")
        # the proxy listeners are still its own: in the sockmap, not handed over
        st = self.node.status()
        self.assertNotIn("handed", self.node.shuntd_output(self.mark["_shuntd"]))
        self.assertEqual({m["name"]: m["entries"] for m in st["maps"]}["shunt_listeners"], 2, st["maps"])


class ControlCaps(ControlCapsBase):
    def test_capless_root_changes_nothing(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        n.write_config("route %s dev-f %s\n" % (SVC4, TO4))
        before = n.routes()
        nocaps = setpriv_argv()
        for args, what in [
            (["route", "add", "--service", SVC4, "--key", "dev-b", "--to", TO4], "route add"),
            (["route", "add", "--service", SVC4, "--key", "dev-a", "--to", TO2_4], "route add"),
            (["route", "del", "--service", SVC4, "--key", "dev-a"], "route del"),
            (["override", "add", "--from", "pid:%d" % os.getpid(), "--dst", SVC4, "--to", TO4], "override add"),
            (["override", "del", "--from", "pid:%d" % os.getpid(), "--dst", SVC4], "override del"),
            (["reload"], "reload"),
        ]:
            p, cap = self.ctl_as(nocaps, *args)
            self.assertEqual(int(cap, 16), 0, "setpriv left capabilities: CapEff %s" % cap)
            self.assertEqual(os.getuid(), 0)
            self.assertRefused(p, what)
            self.assertRegex(p.stderr, r"the caller, pid \d+ uid 0, has not")
        self.assertEqual(n.routes(), before, "a refused request changed the routes")
        self.assertEqual(n.ctl_json("override", "list"), [])
        # listing and status stay open
        p, cap = self.ctl_as(nocaps, "route", "list", "-o", "json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), before)
        p, cap = self.ctl_as(nocaps, "status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("routes:", p.stdout)
        p, cap = self.ctl_as(nocaps, "override", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertServing()

    def test_capless_takeover_is_refused(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        before = n.routes()
        # a takeover: no listening socket comes back, the agent keeps them
        got = self.raw_takeover_as(setpriv_argv())
        self.assertEqual(int(got["capeff"], 16), 0)
        self.assertEqual(got["fds"], 0, "the listening sockets were handed to a process without "
                                        "capabilities: %r" % got)
        self.assertTrue(got["answer"].startswith("error 1\ntakeover: needs CAP_NET_ADMIN"), got)
        time.sleep(0.5)  # a drain would have begun by now
        self.assertServing()
        self.assertEqual(n.routes(), before)

    def test_net_admin_is_the_capability(self):
        n = self.node
        st = os.stat(n.sock)
        self.assertEqual((st.st_mode & 0o777, st.st_uid, st.st_gid), (0o600, 0, 0), "root only by default")
        # everything but CAP_NET_ADMIN: still refused
        allbut = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-net_admin", "--"]
        p, cap = self.ctl_as(allbut, "route", "add", "--service", SVC4, "--key", "dev-b", "--to", TO4)
        self.assertFalse(capeff_has(cap, CAP_NET_ADMIN))
        self.assertTrue(capeff_has(cap, 21), "expected CAP_SYS_ADMIN in %s" % cap)
        self.assertRefused(p, "route add")
        # CAP_NET_ADMIN alone: allowed
        p, cap = self.ctl_as(setpriv_argv(["net_admin"]), "route", "add", "--service", SVC4, "--key", "dev-b",
                             "--to", TO4)
        self.assertEqual(int(cap, 16), 1 << CAP_NET_ADMIN)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([r["key"] for r in n.routes()], ["dev-b"])
        p, cap = self.ctl_as(setpriv_argv(["net_admin"]), "route", "del", "--service", SVC4, "--key", "dev-b")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(n.routes(), [])

    def test_refusals_are_logged_but_not_flooded(self):
        n = self.node
        time.sleep(5.2)  # past the quiet period of an earlier test's refusal
        mark = N._size(n.shuntd_log)
        # 20 requests from one process without capabilities, well within 5 s
        p = subprocess.run(setpriv_argv() + [N.PYTHON, "-c", RAW_MANY, n.sock, SVC4, TO4, "20"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        answers = json.loads(p.stdout)
        self.assertEqual(len(answers), 20)
        for a in answers:
            self.assertTrue(a.startswith("error 1\nroute add: needs CAP_NET_ADMIN"), a)
        logged = [ln for ln in N._read_from(n.shuntd_log, mark).splitlines() if "control: refused" in ln]
        self.assertEqual(len(logged), 1, logged)
        self.assertRegex(logged[0], r"control: refused: route add: needs CAP_NET_ADMIN \(the caller, pid \d+ "
                                    r"uid 0, has not\)"
                                    r"( \(and \d+ more since the last such message\))?$")
        time.sleep(5.2)
        p, _ = self.ctl_as(setpriv_argv(), "reload")
        self.assertRefused(p, "reload")
        logged = [ln for ln in N._read_from(n.shuntd_log, mark).splitlines() if "control: refused" in ln]
        self.assertEqual(len(logged), 2, logged)
        self.assertIn("reload: needs CAP_NET_ADMIN", logged[1])
        self.assertIn("(and 19 more since the last such message)", logged[1])
        self.assertEqual(n.routes(), [])

    def test_reload_op(self):
        n = self.node
        try:
            n.write_config("route %s dev-f %s ttl=1h\n" % (SVC4, TO4))
            p = n.ctl_ok("reload")
            self.assertEqual(p.stdout, "reloaded %s: 1 route(s) and 0 override(s) in force\n" % n.config_path)
            self.assertEqual([(r["key"], r["source"]) for r in n.routes()], [("dev-f", "file")])
            self.assertPod(self.get(N.BASE4, "/", [("baggage", "sd-routing-key=dev-f")]), "sandbox")
            # a bad file: the error names the line and field, nothing changes
            n.write_config("route %s dev-g %s\nroute %s dev-h nowhere\n" % (SVC4, TO4, SVC4))
            p = n.ctl("reload")
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertEqual(p.stderr, "shuntctl: reload: %s:2: field 'to': 'nowhere' is not IP:PORT; the previous "
                                       "routes stay in force\n" % n.config_path)
            self.assertEqual([r["key"] for r in n.routes()], ["dev-f"])
            self.assertIn("reload requested on the control socket", n.shuntd_output(self.mark["_shuntd"]))
            p = n.ctl("reload", "now")
            self.assertEqual(p.returncode, 2, p.stderr)
        finally:
            n.write_config("")
            n.ctl("reload")
        self.assertEqual(n.routes(), [])

    def test_status_clients_that_leave_early(self):
        # status is answered once its look at the cgroup tree (on a thread)
        # is done: a client gone by then costs nothing
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.node.sock)
            s.sendall(b"status\tjson\n")
            s.close()
        self.assertTrue(self.node.shuntd_running())
        self.assertIn("cgroup_programs", self.node.status())


# A raw takeover that sends a descriptor of /dev/null as its "proof".
RAW_TAKEOVER_BOGUS_PROOF = textwrap.dedent("""
    import json, os, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sys.argv[1])
    fd = os.open("/dev/null", os.O_RDONLY)
    s.sendmsg([b"takeover\\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
    data, fds = b"", 0
    while True:
        msg, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64))
        fds += sum(len(raw) // 4 for level, kind, raw in anc if kind == socket.SCM_RIGHTS)
        if not msg:
            break
        data += msg
    print(json.dumps({"answer": data.decode(), "fds": fds}))
""")


class PidNamespaces(ControlCapsBase):
    """An agent in a pod without hostPID cannot see the processes of the
    host or of another pod: their capabilities cannot be read, so they may
    only list. A new agent in such a place takes over by showing the
    program it swapped into the pinned links."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not cls._skip and not shutil.which("unshare"):
            cls._skip = "unshare (util-linux) not found"

    def start_agent(self, prefix):
        """A second shuntd (under prefix) that takes over from the running
        one; returns it once it is ready and the old one has exited 0."""
        n = self.node
        old = n.shuntd
        off = N._size(n.shuntd_log)
        with open(n.shuntd_log, "ab") as logf:
            new = n.spawn(prefix + n.nsenter("node") + n.shuntd_argv(["--drain-timeout", "3s"]), stdout=logf,
                          stderr=subprocess.STDOUT)
        n.shuntd = new
        n.shuntd_log_start = off
        deadline = time.monotonic() + 15
        while "ready: cgroup" not in N._read_from(n.shuntd_log, off):
            self.assertIsNone(new.poll(), "the new agent exited:\n" + N._read_from(n.shuntd_log, off))
            self.assertLess(time.monotonic(), deadline, "the new agent is not ready")
            time.sleep(0.05)
        self.assertEqual(old.wait(10), 0, "the old agent did not hand over and exit")
        return new

    def test_agent_in_its_own_pid_namespace(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        # B: like the agent of a pod without hostPID
        b = self.start_agent(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"])
        try:
            self.check_agent_in_its_own_pid_namespace()
        finally:
            if b.poll() is None:
                # unshare ignores SIGTERM while it waits: stop shuntd itself
                kids = open("/proc/%d/task/%d/children" % (b.pid, b.pid)).read().split()
                for k in kids:
                    os.kill(int(k), signal.SIGTERM)
                b.wait(10)
                n.expected_exit = True

    def check_agent_in_its_own_pid_namespace(self):
        n = self.node
        self.mark = n.mark()
        self.assertPod(self.get(N.BASE4, "/", KEYED), "sandbox")
        # root of the host, every capability, but not visible from B
        p = n.ctl("route", "add", "--service", SVC4, "--key", "dev-b", "--to", TO4)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("route add: needs CAP_NET_ADMIN (the caller, uid 0, is in a PID namespace this agent "
                      "cannot see, so its capabilities cannot be read: run shuntctl in the agent's PID "
                      "namespace", p.stderr)
        self.assertEqual([r["key"] for r in n.routes()], ["dev-a"], "listing is open")
        got = self.raw_takeover_as([])
        self.assertEqual(got["fds"], 0, got)
        self.assertTrue(got["answer"].startswith("error 1\ntakeover: needs CAP_NET_ADMIN"), got)
        p = subprocess.run([N.PYTHON, "-c", RAW_TAKEOVER_BOGUS_PROOF, n.sock], capture_output=True, text=True,
                           timeout=10)
        got = json.loads(p.stdout)
        self.assertEqual(got["fds"], 0, got)
        self.assertIn("the descriptor it sent is not the program attached through our connect4 link",
                      got["answer"])
        time.sleep(0.5)
        self.assertServing()
        # C: a new agent on the host takes over from B by its program
        self.start_agent([])
        out = n.shuntd_output()
        self.assertRegex(N._read_from(n.shuntd_log, self.mark["_shuntd"]),
                         r"takeover: the caller \(in a PID namespace not visible here, uid 0\) holds program "
                         r"id \d+, which it attached through our pinned connect4 link in place of ours")
        self.assertIn("handed %d listener(s) over to an agent in a PID namespace not visible here" % N.listener_socks(),
                      N._read_from(n.shuntd_log, self.mark["_shuntd"]))
        self.assertIn("took over %d listener(s)" % N.listener_socks(), out)
        self.assertPod(self.get(N.BASE4, "/", KEYED), "sandbox")
        self.assertEqual([r["key"] for r in n.routes()], ["dev-a"])
        n.ctl_ok("route", "add", "--service", SVC4, "--key", "dev-b", "--to", TO4)

    def test_caller_in_another_user_namespace(self):
        # root of a user namespace of its own: every capability there, none here
        p, cap = self.ctl_as(["unshare", "--user", "--map-root-user"], "route", "add", "--service", SVC4,
                             "--key", "dev-u", "--to", TO4)
        self.assertTrue(capeff_has(cap, CAP_NET_ADMIN), cap)
        self.assertRefused(p, "route add")
        self.assertIn("is in another user namespace", p.stderr)
        self.assertEqual(self.node.routes(), [])


def nobody(gid=65534, groups=None):
    """setpriv that runs as uid 65534 (nobody) with gid and groups."""
    return ["setpriv", "--reuid=65534", "--regid=%d" % gid,
            "--groups=" + ",".join(map(str, groups)) if groups else "--clear-groups", "--"]


class ControlGroup(ControlCapsBase):
    """--control-group: its members may list and read the status without
    root; changes still need CAP_NET_ADMIN; others cannot connect."""

    node_opts = {"shuntd_args": ["--control-group", "nogroup"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not cls._skip:
            try:
                import grp
                cls.gid = grp.getgrnam("nogroup").gr_gid
            except KeyError:
                cls._skip = "no group 'nogroup' on this machine"

    def test_members_list_others_cannot_connect(self):
        n = self.node
        st = os.stat(n.sock)
        self.assertEqual((st.st_mode & 0o777, st.st_uid, st.st_gid), (0o660, 0, self.gid))
        os.chmod(n.tmp, 0o755)  # the harness's temp dir: let nobody reach the socket
        self.route(SVC4, "dev-a", TO4)
        p, cap = self.ctl_as(nobody(self.gid), "route", "list", "-o", "json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([r["key"] for r in json.loads(p.stdout)], ["dev-a"])
        p, cap = self.ctl_as(nobody(self.gid), "status")
        self.assertEqual(p.returncode, 0, p.stderr)
        p, cap = self.ctl_as(nobody(self.gid), "route", "del", "--service", SVC4, "--key", "dev-a")
        self.assertRefused(p, "route del")
        self.assertRegex(p.stderr, r"the caller, pid \d+ uid 65534, has not")
        # a supplementary group is enough
        p, cap = self.ctl_as(nobody(65533, [self.gid]), "status")
        self.assertEqual(p.returncode, 0, p.stderr)
        # not a member: the socket's mode keeps it out
        p, cap = self.ctl_as(nobody(65533), "status")
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertIn("Permission denied", p.stderr)
        self.assertEqual([r["key"] for r in n.routes()], ["dev-a"])
        self.assertIn("group nogroup (gid %d) may list" % self.gid, n.shuntd_output())

    def test_unknown_group_stops_the_start(self):
        p = subprocess.run([self.node.shuntd_bin, "--cgroup", self.node.cg, "--proxy-addr", "127.0.0.1",
                            "--control", os.path.join(self.node.tmp, "other.sock"), "--control-group",
                            "shunt-no-such-group"], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--control-group: 'shunt-no-such-group' is not a group here", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.node.tmp, "other.sock")))
