# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""In-pod mode (issue 14): a pod registered with `shuntctl pod add` gets
shunt's listeners inside its own network namespace, and its steered
requests' upstream connections are made there too. The upstream must see
the client pod's own address (X-Peer), keyed and unkeyed, IPv4 and IPv6,
where node mode shows the node's; a packet filter in the upstream pod that
drops the client pod blocks its steered requests exactly as its direct
ones; `pod del` releases everything (listeners, map entries, connections)
and the pod's connections go straight to their destination again; kill -9
fails open."""

import json
import os
import signal
import subprocess
import time

import node as N
from base import SVC4, SVC6, TO4, TO6, NodeTestCase
from httpmsg import key_header
import test_h2
import test_restarts
from test_h2 import H2_PORT, KEY as H2_KEY, svc

KEY = [key_header("dev-a")]
INPOD_PORT = 15001


def live_slots(n, name):
    """The keys of a pinned sockmap that hold a socket (bpftool shows an
    empty slot with an error as its value)."""
    p = N.run(["bpftool", "-j", "map", "dump", "pinned", os.path.join(n.pin, name)])
    return [e["key"] for e in json.loads(p.stdout or "[]") if isinstance(e.get("value"), list)]


def peer_ip(resp):
    return resp.header("X-Peer", "").rsplit(":", 1)[0].strip("[]")


class InPod(NodeTestCase):
    def setUp(self):
        super().setUp()
        self.node.ctl_ok("pod", "add", "test/client", "--netns", self.node.netns_path("client"))
        self.addCleanup(self.node.ctl, "pod", "del", "test/client")

    def pods(self):
        return self.node.ctl_json("pod", "list")

    def kernel(self):
        return self.node.status()["kernel"]

    def steered(self):
        """Requests the proxy routed so far (every worker)."""
        return self.node.status()["proxy"]["requests"]

    def test_upstream_sees_the_client_pod_v4_and_v6(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC6, "dev-a", TO6)
        for host, me, other in ((N.BASE4, N.CLIENT4, N.NODE4), (N.BASE6, N.CLIENT6, N.NODE6)):
            before = self.steered()
            r = self.get(host, "/k", KEY)
            self.assertPod(r, "sandbox")
            self.assertEqual(peer_ip(r), me, "keyed, %s: the sandbox saw %s" % (host, r.header("X-Peer")))
            r = self.get(host, "/u")
            self.assertPod(r, "baseline")
            self.assertEqual(peer_ip(r), me, "unkeyed, %s: the baseline saw %s" % (host, r.header("X-Peer")))
            self.assertEqual(self.steered() - before, 2, "both went through the proxy")
            self.assertNotEqual(me, other)
        pods = self.pods()
        self.assertEqual([p["name"] for p in pods], ["test/client"], pods)
        self.assertEqual(sorted(pods[0]["listen"]), sorted(["127.0.0.1:%d" % INPOD_PORT, "[::1]:%d" % INPOD_PORT]))
        self.assertGreaterEqual(pods[0]["accepted"], 4)
        # The kernel's view: the pod's entry, its listeners in their slots.
        ent = n.map_dump("shunt_inpod")
        self.assertEqual([e["key"] for e in ent], [pods[0]["netns_cookie"]], ent)
        socks = live_slots(n, "shunt_pod_socks")
        self.assertEqual(len(socks), 2, socks)
        self.assertGreaterEqual(self.kernel()["inpod"], 4)
        cap = n.status()["capture"]
        self.assertEqual(cap["inpod"]["pods"], 1, cap)
        self.assertGreaterEqual(cap["inpod"]["accepted"], 4, cap)
        self.assertEqual(cap["inpod"]["port"], INPOD_PORT, cap)
        text = n.ctl_ok("status").stdout
        self.assertIn("in-pod: 1 pod(s)", text)

    def test_node_mode_pod_still_shows_the_node(self):
        """A pod that is not registered is served as before, from the node."""
        n = self.node
        n.ctl_ok("pod", "del", "test/client")
        self.route(SVC4, "dev-a", TO4)
        r = self.get(N.BASE4, "/k", KEY)
        self.assertPod(r, "sandbox")
        self.assertEqual(peer_ip(r), N.NODE4)
        self.assertEqual(n.map_dump("shunt_inpod"), [])

    def test_packet_filter_in_the_upstream_pod_applies_to_steered_requests(self):
        """The baseline's pod drops the client pod's address: a steered
        (unkeyed) request is blocked like a direct connection to a port
        nobody steers. In node mode the same request gets through (the
        filter sees the node): the widening in-pod mode closes."""
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        rule = ["INPUT", "-s", N.CLIENT4, "-p", "tcp", "-j", "DROP"]
        rc, out, err = n.pod_run("base", ["iptables", "-w", "-I"] + rule)
        self.assertEqual(rc, 0, err)
        try:
            conn, rep = n.client.try_connect(N.BASE4, N.ECHO_PORT, timeout=1.5)
            self.assertIsNone(conn, "the filter lets the client pod's direct connections through")
            r = self.client.request(N.BASE4, N.HTTP_PORT, "GET", "/blocked", timeout=8)
            self.assertIn(r.status, (502, 503, 504), "a steered request got through the pod's filter: %r" % (r,))
            n.ctl_ok("pod", "del", "test/client")
            r = self.client.request(N.BASE4, N.HTTP_PORT, "GET", "/node-mode", timeout=8)
            self.assertPod(r, "baseline")
            self.assertEqual(peer_ip(r), N.NODE4, "node mode: the baseline sees the node")
        finally:
            n.pod_run("base", ["iptables", "-w", "-D"] + rule)
        r = self.get(N.BASE4, "/open")
        self.assertPod(r, "baseline")

    def test_pod_del_releases_everything(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        c = self.connect(N.BASE4)
        r = c.request("GET", "/held", KEY)
        self.assertPod(r, "sandbox")
        self.assertEqual(len(self.pods()), 1)
        n.ctl_ok("pod", "del", "test/client")
        self.assertEqual(self.pods(), [])
        self.assertEqual(n.map_dump("shunt_inpod"), [])
        # The listeners take what was captured just before, then go.
        deadline = time.monotonic() + 3
        while True:
            listening = N.run(n.nsenter("client") + ["ss", "-Hltn", "sport = :%d" % INPOD_PORT]).stdout.strip()
            socks = live_slots(n, "shunt_pod_socks")
            if (listening, socks) == ("", []) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(listening, "", "a listener stayed in the pod")
        self.assertEqual(socks, [])
        self.expect_closed(c, "the pod's connection after pod del")
        # Node mode again: captured to the node's listener.
        r = self.get(N.BASE4, "/after", KEY)
        self.assertPod(r, "sandbox")
        self.assertEqual(peer_ip(r), N.NODE4)
        # The agent holds nothing of the pod's namespace any more.
        fds = subprocess.run(["ls", "-l", "/proc/%d/fd" % n.shuntd.pid], capture_output=True, text=True).stdout
        ino = N.run(["stat", "-L", "-c", "%i", n.netns_path("client")]).stdout.strip()
        self.assertNotIn("net:[%s]" % ino, fds, "shuntd still holds the pod's network namespace")

    def test_refusals(self):
        n = self.node
        refused = [  # (shuntctl arguments, what the refusal says; None: anything)
            (("add", "test/client", "--netns", n.netns_path("client")), "already"),
            (("add", "test/other", "--netns", n.netns_path("client")), "served already"),
            (("add", "test/none", "--netns", "/run/netns/shunt-no-such-netns"), "No such file"),
            (("add", "bad name", "--netns", n.netns_path("base")), None),
            (("add", "test/node", "--netns", n.netns_path("node")), "the agent's own network namespace"),
            (("add", "test/file", "--netns", "/etc/hostname"), "is not a network namespace"),
            (("del", "test/none"), "not served"),
        ]
        for args, says in refused:
            p = n.ctl("pod", *args)
            self.assertEqual(p.returncode, 1, (args, p.stderr))
            if says is not None:
                self.assertIn(says, p.stderr)
        # Something of the app's own on the port: a clear refusal.
        srv = n.pod_spawn("sbx", ["python3", "-c",
                                  "import socket,time; s=socket.socket(); "
                                  "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                                  "s.bind(('127.0.0.1', %d)); s.listen(); time.sleep(30)" % INPOD_PORT])
        try:
            n.wait_listen("sbx", INPOD_PORT, proc=srv)
            p = n.ctl("pod", "add", "test/sbx", "--netns", n.netns_path("sbx"))
            self.assertEqual(p.returncode, 1)
            self.assertIn("127.0.0.1:%d" % INPOD_PORT, p.stderr)
            self.assertEqual([x["name"] for x in self.pods()], ["test/client"])
        finally:
            N._killpg(srv)

    def test_kill9_fails_open(self):
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        r = self.get(N.BASE4, "/k", KEY)
        self.assertPod(r, "sandbox")
        n.expected_exit = True
        n.shuntd.send_signal(signal.SIGKILL)
        n.shuntd.wait(5)
        r = self.get(N.BASE4, "/dead", KEY)
        self.assertPod(r, "baseline")  # straight to where it was going
        self.assertEqual(peer_ip(r), N.CLIENT4)
        # A new agent starts with no pods and no stale entry.
        n.shuntd_start()
        self.assertEqual(n.map_dump("shunt_inpod"), [])
        r = self.get(N.BASE4, "/restarted", KEY)
        self.assertPod(r, "sandbox")
        self.assertEqual(peer_ip(r), N.NODE4)


class InPodH2(NodeTestCase):
    """HTTP/2, per stream, from a pod served in-pod: the sessions to the
    upstreams are the pod's own, made from its address."""

    prepare_node = classmethod(test_h2.H2.prepare_node.__func__)
    curl = test_h2.H2.curl

    def setUp(self):
        super().setUp()
        self.node.ctl_ok("pod", "add", "test/client", "--netns", self.node.netns_path("client"))
        self.addCleanup(self.node.ctl, "pod", "del", "test/client")

    def peers_of(self, pod, port):
        """The remote addresses of the established connections to port in pod."""
        out = N.run(self.node.nsenter(pod) + ["ss", "-Htn", "state", "established", "sport = :%d" % port]).stdout
        return {ln.split()[-1].rsplit(":", 1)[0].strip("[]") for ln in out.splitlines() if ln.strip()}

    def test_streams_reach_their_upstream_from_the_pod(self):
        for ip, to, me in ((N.BASE4, N.SBX4, N.CLIENT4), (N.BASE6, N.SBX6, N.CLIENT6)):
            self.route(svc(ip, H2_PORT), H2_KEY, svc(to, H2_PORT))
            with self.subTest(ip=ip):
                url = "http://%s/who" % svc(ip, H2_PORT)
                self.assertEqual(self.curl(url), (200, "2", "baseline"))
                self.assertEqual(self.curl(url, "-H", "baggage: sd-routing-key=" + H2_KEY), (200, "2", "sandbox"))
                # The pooled sessions stay open: whose address they come from.
                self.assertIn(me, self.peers_of("sbx", H2_PORT))
                self.assertIn(me, self.peers_of("base", H2_PORT))
        for pod in ("sbx", "base"):
            self.assertFalse({N.NODE4, N.NODE6} & self.peers_of(pod, H2_PORT), "a session from the node")
        self.assertEqual(self.node.ctl_json("pod", "list")[0]["upstream_destinations"], 4)


class InPodTakeover(test_restarts.Load, NodeTestCase):
    """A takeover hands the in-pod pods over with their listeners: under
    keyed and unkeyed load from the pod, nothing fails or goes astray, and
    the new agent serves the pod in-pod, from the pod's address."""

    def test_takeover_keeps_the_pod_in_pod(self):
        n = self.node
        n.ctl_ok("pod", "add", "test/client", "--netns", n.netns_path("client"))
        self.route(SVC4, "dev-a", TO4)
        cookie = self.pods_of(n)[0]["netns_cookie"]
        load = self.start_load()
        self.wait_load_running()
        _, _, out = self.take_over()
        self.assertIn("took over 1 in-pod pod(s) from the running agent", out)
        self.assertIn("handed 1 in-pod pod(s) over with their listeners", out)
        self.assertIn("serving pod 'test/client'", out)
        st = self.load_result(load, 20)
        self.report("in-pod takeover", st)
        self.assertGreater(st["requests"], 200, "too little load to mean anything: %r" % st)
        self.assertEqual(st["failures"], {}, "requests failed across the takeover: %r" % st)
        self.assertEqual(st["misroutes"], 0, "requests misrouted across the takeover: %r" % st)
        pods = self.pods_of(n)
        self.assertEqual([(p["name"], p["netns_cookie"]) for p in pods], [("test/client", cookie)])
        self.assertGreater(n.status()["capture"]["inpod"]["accepted"], 0, "the new agent served nothing in-pod")
        self.assertEqual([e["key"] for e in n.map_dump("shunt_inpod")], [cookie])
        r = self.get(N.BASE4, "/after", KEY)
        self.assertPod(r, "sandbox")
        self.assertEqual(peer_ip(r), N.CLIENT4)
        n.ctl_ok("pod", "del", "test/client")

    @staticmethod
    def pods_of(n):
        return n.ctl_json("pod", "list")
