# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""TC capture (issue 14): a pod whose processes are outside the hooked
cgroup (standing in for a VM-isolated pod, whose connect() runs in another
kernel) is plugged into the node the way routed CNIs plug theirs, and
registered with `shuntctl pod add NAME --tc IFNAME`. The TC program on its
host-side interface hands its new connections to steered services to
shunt, which routes each request by its key: HTTP/1.1 and HTTP/2, IPv4
and IPv6. Without the registration, or with the agent killed, the same
requests go where they are addressed (fail open), and a restarted agent,
with its pins kept or removed, captures the pod again once it is told."""

import json
import os
import shutil
import signal
import time

import node as N
from base import SVC4, SVC6, TO4, TO6, NodeTestCase
from httpmsg import key_header
import test_h2
import test_restarts
from test_h2 import H2_PORT, KEY as H2_KEY, svc

KEY = [key_header("dev-a")]
VM4, VM6 = N.NET4 + ".60", N.NET6 + "60"
VM2_4 = N.NET4 + ".61"
POD = "test/vm"
VIP4 = "10.96.7.7"  # a ClusterIP the node DNATs to the baseline, as kube-proxy would


def peer_ip(resp):
    return resp.header("X-Peer", "").rsplit(":", 1)[0].strip("[]")


def live_slots(n, name):
    p = N.run(["bpftool", "-j", "map", "dump", "pinned", os.path.join(n.pin, name)])
    return [int(e["key"][0], 16) for e in json.loads(p.stdout or "[]") if isinstance(e.get("value"), list)]


def tc_attached(n, host_if, link_ids=()):
    """What of ours is on host_if's ingress: tcx links among link_ids that
    still exist (bpftool lists every link; this one does not name tcx
    links' interfaces), and clsact filters running shunt_tc_ingress."""
    out = []
    links = json.loads(N.run(["bpftool", "-j", "link", "show"]).stdout or "[]")
    out += [("tcx", l["id"]) for l in links if l["id"] in link_ids]
    p = N.run(n.nsenter("node") + ["tc", "-j", "filter", "show", "dev", host_if, "ingress"], check=False)
    for f in json.loads(p.stdout or "[]") if p.returncode == 0 else []:
        name = (f.get("options") or {}).get("bpf_name", "")
        if name.startswith("shunt_tc_ingres"):  # BPF_OBJ_NAME_LEN: 15 bytes
            out.append(("clsact", name))
    return out


class TcBase(NodeTestCase):
    @classmethod
    def prepare_node(cls, node):
        node.add_routed_pod("vm", VM4, VM6)
        node.add_routed_pod("vm2", VM2_4)

    def setUp(self):
        super().setUp()
        self.vm = self.node.pod_client("vm", in_cgroup=False)
        self.addCleanup(self.vm.close)
        self.host_if = self.node.pod("vm")["host_if"]

    def add(self):
        self.node.ctl_ok("pod", "add", POD, "--tc", self.host_if)
        self.addCleanup(self.node.ctl, "pod", "del", POD)

    def vget(self, host, path="/", headers=(), **kw):
        return self.vm.request(host, N.HTTP_PORT, "GET", path, headers=headers, **kw)

    def attached(self):
        """Our program on the pod's interface, as the kernel shows it."""
        ids = []
        if self.node.shuntd is not None and self.node.shuntd.poll() is None:
            ids = [p["link_id"] for p in self.node.ctl_json("pod", "list") if p.get("mode") == "tc" and p["link_id"]]
        self.link_ids = set(getattr(self, "link_ids", set())) | set(ids)
        return tc_attached(self.node, self.host_if, self.link_ids)

    def node_sh(self, cmd):
        rc, out, err = self.node.pod_run("node", ["sh", "-c", cmd])
        self.assertEqual(rc, 0, "%s: %s" % (cmd, err))
        return out

    def tc_status(self):
        return self.node.status()["capture"]["tc"]


class Tc(TcBase):
    def test_keyed_requests_reach_the_sandbox_v4_and_v6(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC6, "dev-a", TO6)
        # Not registered: the cgroup hooks cannot see the pod; nothing is steered.
        for host in (N.BASE4, N.BASE6):
            self.assertPod(self.vget(host, "/before", KEY), "baseline", "%s before pod add" % host)
        self.add()
        for host, me in ((N.BASE4, VM4), (N.BASE6, VM6)):
            before = n.status()["proxy"]["requests"]
            r = self.vget(host, "/k", KEY)
            self.assertPod(r, "sandbox", host)
            r = self.vget(host, "/u")
            self.assertPod(r, "baseline", host)
            self.assertEqual(peer_ip(r), N.NODE4 if ":" not in host else N.NODE6,
                             "TC mode dials from the node")
            self.assertEqual(n.status()["proxy"]["requests"] - before, 2, "both went through the proxy")
        st = self.tc_status()
        self.assertEqual(st["pods"], 1, st)
        self.assertGreaterEqual(st["accepted"], 4, st)
        self.assertTrue(st["available"], st)
        self.assertGreaterEqual(n.status()["kernel"]["tc"], 4)
        pods = n.ctl_json("pod", "list")
        tc = [p for p in pods if p.get("mode") == "tc"]
        self.assertEqual([(p["name"], p["interface"]) for p in tc], [(POD, self.host_if)], pods)
        # tcx where the kernel has it (6.6), a clsact filter before.
        release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
        self.assertEqual(tc[0]["attached"], "tcx" if release >= (6, 6) else "clsact", tc)
        self.assertEqual(len(self.attached()), 1, self.attached())
        self.assertEqual(sorted(live_slots(n, "shunt_tc_socks")), [0, 1])

    def test_keep_alive_each_request_by_its_key(self):
        self.route(SVC4, "dev-a", TO4)
        self.add()
        c = self.vm.http_client(N.BASE4, N.HTTP_PORT)
        try:
            for i in range(6):
                keyed = i % 2 == 0
                r = c.request("GET", "/ka%d" % i, headers=KEY if keyed else ())
                self.assertPod(r, "sandbox" if keyed else "baseline", "request %d" % i)
        finally:
            c.close()

    def test_unsteered_traffic_is_untouched(self):
        n = self.node
        self.add()
        # No route for the service: the TC program lets it pass.
        before = n.status()["proxy"]["accepted"]
        r = self.vget(N.BASE4, "/plain", KEY)
        self.assertPod(r, "baseline")
        self.assertEqual(peer_ip(r), VM4, "passed untouched: the baseline sees the pod")
        self.assertEqual(n.status()["proxy"]["accepted"], before)

    def test_pod_del_detaches(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.add()
        self.assertPod(self.vget(N.BASE4, "/k", KEY), "sandbox")
        self.assertEqual(len(self.attached()), 1)
        n.ctl_ok("pod", "del", POD)
        self.assertEqual(self.attached(), [])
        self.assertEqual(live_slots(n, "shunt_tc_socks"), [], "the last TC pod took the listeners along")
        r = self.vget(N.BASE4, "/after", KEY)
        self.assertPod(r, "baseline")
        self.assertEqual(peer_ip(r), VM4)
        self.assertEqual(self.tc_status()["pods"], 0)

    def test_refusals(self):
        n = self.node
        self.add()
        for args, code, text in (
                ((POD, "--tc", self.host_if), 1, "already"),
                (("test/other", "--tc", self.host_if), 1, "already"),
                (("test/nope", "--tc", "nosuch0"), 1, "nosuch0"),
                (("test/bad", "--tc", "a/b"), 1, "interface name"),
                (("test/both", "--tc", self.host_if, "--netns", "/run/netns/x"), 2, "not both")):
            with self.subTest(args=args):
                p = n.ctl("pod", "add", *args)
                self.assertEqual(p.returncode, code, p.stderr)
                self.assertIn(text, p.stderr)
        self.assertEqual([p["name"] for p in n.ctl_json("pod", "list")], [POD])
        self.assertEqual(len(self.attached()), 1)

    def test_kill9_fails_open_and_a_restart_captures_again(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.add()
        self.assertPod(self.vget(N.BASE4, "/k", KEY), "sandbox")
        n.expected_exit = True
        n.shuntd.send_signal(signal.SIGKILL)
        n.shuntd.wait(5)
        r = self.vget(N.BASE4, "/dead", KEY)
        self.assertPod(r, "baseline")
        self.assertEqual(peer_ip(r), VM4, "straight to where it was going")
        # Pins kept: the route is still there; the pod is registered again.
        n.shuntd_start()
        self.assertEqual(self.tc_status()["pods"], 0, "registrations do not outlive the agent")
        self.assertPod(self.vget(N.BASE4, "/unregistered", KEY), "baseline")
        n.ctl_ok("pod", "add", POD, "--tc", self.host_if)
        self.assertPod(self.vget(N.BASE4, "/again", KEY), "sandbox")
        self.assertEqual(len(self.attached()), 1, self.attached())

    def test_restart_without_pins(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.add()
        self.assertPod(self.vget(N.BASE4, "/k", KEY), "sandbox")
        self.assertEqual(len(self.attached()), 1)
        n.shuntd_stop()
        self.assertEqual(self.attached(), [], "a clean stop takes the program off")
        N.run(["rm", "-rf", n.pin])
        n.shuntd_start()
        self.assertPod(self.vget(N.BASE4, "/nopins", KEY), "baseline", "no route any more")
        self.route(SVC4, "dev-a", TO4)
        n.ctl_ok("pod", "add", POD, "--tc", self.host_if)
        self.assertPod(self.vget(N.BASE4, "/again", KEY), "sandbox")

    def test_other_pods_connections_survive_a_pod_del(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.add()
        vm2 = n.pod_client("vm2", in_cgroup=False)
        self.addCleanup(vm2.close)
        n.ctl_ok("pod", "add", "test/vm2", "--tc", n.pod("vm2")["host_if"])
        self.addCleanup(n.ctl, "pod", "del", "test/vm2")
        mine, other = self.vm.http_client(N.BASE4, N.HTTP_PORT), vm2.http_client(N.BASE4, N.HTTP_PORT)
        self.addCleanup(mine.close)
        self.addCleanup(other.close)
        self.assertPod(mine.request("GET", "/a", headers=KEY), "sandbox")
        self.assertPod(other.request("GET", "/b", headers=KEY), "sandbox")
        n.ctl_ok("pod", "del", POD)
        # The deleted pod's connection is closed by shunt (its packets are
        # no longer handed over); the other pod's goes on.
        r = mine.pod.rpc("hc_request", id=mine.id, method="GET", path="/c", headers=KEY, timeout=3)
        self.assertFalse(r.get("ok") and r.get("status") == 200, "the deleted pod's connection still served: %r" % r)
        self.assertPod(other.request("GET", "/d", headers=KEY), "sandbox")
        self.assertEqual(self.tc_status()["active"], 1, self.tc_status())

    def test_failed_add_leaves_nothing(self):
        n = self.node
        p = n.ctl("pod", "add", "test/nope", "--tc", "nosuch0")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(live_slots(n, "shunt_tc_socks"), [])
        self.assertEqual(self.tc_status()["pods"], 0)

    def test_dnat_of_the_service_on_the_node(self):
        """kube-proxy's iptables mode DNATs a ClusterIP after the TC hook:
        the proxy's socket gets the backend's address; shunt still routes by
        the address the pod dialled (SO_ORIGINAL_DST) and keeps the
        connection's later packets (shunt_tc_conns)."""
        n = self.node
        if not shutil.which("iptables"):
            self.fail("iptables is not installed (scripts/deps.sh installs it)")
        rules = [["-t", "nat", chain, "-d", VIP4, "-p", "tcp", "--dport", str(N.HTTP_PORT), "-j", "DNAT",
                  "--to-destination", N.hostport(N.BASE4, N.HTTP_PORT)] for chain in ("PREROUTING", "OUTPUT")]
        for r in rules:
            self.node_sh("iptables -w -A " + " ".join(r[2:3]) + " " + " ".join(r[:2] + r[3:]))
            self.addCleanup(n.pod_run, "node", ["sh", "-c", "iptables -w -D " + " ".join(r[2:3]) + " " +
                                                 " ".join(r[:2] + r[3:])])
        # A node has a route for the service range (the proxy dials the
        # ClusterIP, OUTPUT DNATs it).
        self.node_sh("ip route add %s/32 dev %s-br" % (VIP4, n.id))
        self.addCleanup(n.pod_run, "node", ["ip", "route", "del", VIP4 + "/32"])
        vip = N.hostport(VIP4, N.HTTP_PORT)
        self.assertPod(self.vget(VIP4, "/direct", KEY), "baseline", "the DNAT works without shunt")
        self.route(vip, "dev-a", TO4)
        self.add()
        c = self.vm.http_client(VIP4, N.HTTP_PORT)
        self.addCleanup(c.close)
        for i in range(4):
            keyed = i % 2 == 0
            r = c.request("GET", "/vip%d" % i, headers=KEY if keyed else ())
            self.assertPod(r, "sandbox" if keyed else "baseline", "request %d through the DNAT" % i)
        self.assertGreaterEqual(self.tc_status()["accepted"], 1)

    def test_syn_cookies(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.add()
        old = self.node_sh("cat /proc/sys/net/ipv4/tcp_syncookies").strip()
        self.node_sh("echo 2 > /proc/sys/net/ipv4/tcp_syncookies")  # a cookie for every SYN
        self.addCleanup(self.node_sh, "echo %s > /proc/sys/net/ipv4/tcp_syncookies" % old)
        for i in range(3):
            self.assertPod(self.vget(N.BASE4, "/cookie%d" % i, KEY), "sandbox")
        self.assertGreaterEqual(self.tc_status()["accepted"], 3)
        self.assertEqual(n.status()["proxy"]["unknown"], 0)

    def test_a_connection_outlives_its_route_and_a_routing_change(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.add()
        c = self.vm.http_client(N.BASE4, N.HTTP_PORT)
        self.addCleanup(c.close)
        self.assertPod(c.request("GET", "/1", headers=KEY), "sandbox")
        n.route_del(SVC4, "dev-a")
        self.node_sh("ip route add 192.0.2.0/24 dev lo")  # any change: cached routes go
        self.addCleanup(n.pod_run, "node", ["ip", "route", "del", "192.0.2.0/24", "dev", "lo"])
        self.assertPod(c.request("GET", "/2", headers=KEY), "baseline", "no route now: the same connection goes on")

    def test_a_mark_above_the_main_rule(self):
        n = self.node
        n.shuntd_stop()
        n.shuntd_start(extra=["--tc-mark", "40000"])
        self.route(SVC4, "dev-a", TO4)
        self.add()
        self.assertPod(self.vget(N.BASE4, "/m", KEY), "sandbox")
        rules = self.node_sh("ip rule show")
        self.assertIn("lookup 40000", rules)
        n.shuntd_stop()
        self.assertNotIn("lookup 40000", self.node_sh("ip rule show"), "a clean stop removes the rule")
        n.shuntd_start()


class TcH2(TcBase):
    """HTTP/2 from a TC-captured pod: every stream by its own key."""

    @classmethod
    def prepare_node(cls, node):
        test_h2.H2.prepare_node.__func__(cls, node)
        node.add_routed_pod("vm", VM4, VM6)

    def curl(self, url, *extra):
        rc, out, err = self.node.pod_run("vm", ["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge",
                                               "-o", "-", "-w", "\n%{http_code} %{http_version}"]
                                         + list(extra) + [url], in_cgroup=False)
        self.assertEqual(rc, 0, "curl %s: %s" % (url, err))
        body, _, tail = out.rpartition("\n")
        code, version = tail.split()
        return int(code), version, body.rstrip("\n")

    def test_streams_by_their_key_v4_and_v6(self):
        self.add()
        for ip, to in ((N.BASE4, N.SBX4), (N.BASE6, N.SBX6)):
            self.route(svc(ip, H2_PORT), H2_KEY, svc(to, H2_PORT))
            with self.subTest(ip=ip):
                url = "http://%s/who" % svc(ip, H2_PORT)
                before = self.node.status()["proxy"]["h2_streams"]
                self.assertEqual(self.curl(url), (200, "2", "baseline"))
                self.assertEqual(self.curl(url, "-H", "baggage: sd-routing-key=" + H2_KEY), (200, "2", "sandbox"))
                self.assertEqual(self.node.status()["proxy"]["h2_streams"] - before, 2, "both streams were shunt's")


class TcTakeover(test_restarts.Load, TcBase):
    """A takeover hands the TC pods and listeners over: under keyed and
    unkeyed load from the pod, nothing fails or goes astray."""

    def test_takeover_keeps_capturing(self):
        n = self.node
        self.add()
        self.route(SVC4, "dev-a", TO4)
        load = self.start_load(pod="vm", in_cgroup=False)
        self.wait_load_running()
        _, _, out = self.take_over()
        self.assertIn("took over 1 pod(s) captured with TC", out)
        self.assertIn("TC: capturing pod '%s'" % POD, out)
        st = self.load_result(load, 20)
        self.report("TC takeover", st)
        self.assertGreater(st["requests"], 200, "too little load to mean anything: %r" % st)
        self.assertEqual(st["failures"], {}, "requests failed across the takeover: %r" % st)
        self.assertEqual(st["misroutes"], 0, "requests misrouted across the takeover: %r" % st)
        self.assertGreater(self.tc_status()["accepted"], 0, "the new agent captured nothing")
        self.assertEqual(len(self.attached()), 1, self.attached())
        self.assertPod(self.vget(N.BASE4, "/after", KEY), "sandbox")
