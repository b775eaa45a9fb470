# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Node safety in Kubernetes mode (issue 9, finding 1): a SandboxRoute
whose sandbox is the node itself — explicit addresses on its loopback or
its own address, or a selector picking a hostNetwork pod (whose IP is the
node's) — never makes the proxy dial the node. test_nodesafety.py has the
control socket and the routes file; the cluster and fake API server are
test_k8s.py's."""

import time

import node as N
import test_k8s as TK
from httpmsg import key_header

NODE_PORT = 8081
SERVER = "node-self"


class K8sNodeSafety(TK.K8sBase):
    # The administrator allows every address for sandboxes: what refuses
    # the node's is the destination guard, not --sandbox-cidr.
    agent_args = ["--sandbox-cidr", "0.0.0.0/0", "--sandbox-cidr", "::/0"]

    @classmethod
    def prepare_node(cls, node):
        super().prepare_node(node)
        node.start_server(SERVER, "node", NODE_PORT)

    def tearDown(self):
        try:
            self.assertEqual(self.node.requests(SERVER, self.mark), [],
                             "a request reached a server on the node itself")
        finally:
            super().tearDown()

    def wait_log(self, needle, timeout=TK.CHANGE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while needle not in self.node.shuntd_output(since=self.mark["_shuntd"]):
            self.assertLess(time.monotonic(), deadline, "shuntd did not log %r; it said:\n%s"
                            % (needle, self.node.shuntd_output(since=self.mark["_shuntd"])[-3000:]))
            time.sleep(0.05)

    def test_sandbox_addresses_on_the_node_are_never_dialled(self):
        for addrs, why in [(["127.0.0.1", "::1"], "a loopback address"),
                           ([N.NODE4, N.NODE6], "an address of this node"),
                           (["169.254.169.254"], "a link-local address")]:
            # validate=False: loopback and link-local break the CRD's CEL
            # rule (a real API server refuses them); shuntd must too.
            self.api.apply(TK.F.sandboxroute(TK.NS, "evil", "web", ["k-evil"], NODE_PORT, addresses=addrs),
                           validate=False)
            self.wait_log("could not be installed: sandbox ")
            self.wait_log("is %s" % why)
            self.wait_log("shunt never sends traffic to the node")
            self.hold({}, 0.5, "routes of a SandboxRoute whose sandbox is the node (%s)" % why)
            lost = [e for e in self.k8s_status().get("not_installed", []) if e["object"] == TK.NS + "/evil"]
            self.assertTrue(lost and why in lost[0]["error"], "status does not report the refusal: %r"
                            % self.k8s_status())
            self.assertEqual(self.get_pod(N.BASE4, "k-evil"), "baseline")
            self.mark["_shuntd"] = self.node.mark()["_shuntd"]
        # The same object pointing at a pod is steered: the refusal was
        # about the address, nothing else.
        self.api.apply(TK.F.sandboxroute(TK.NS, "evil", "web", ["k-evil"], N.HTTP_PORT, addresses=[N.SBX4]))
        self.wait_routes(TK.routes_for("k-evil", TK.SBX_TO4), TK.CHANGE_TIMEOUT, "the route to a pod")
        self.assertEqual(self.get_pod(N.BASE4, "k-evil"), "sandbox")

    def test_selector_picking_a_host_network_pod_is_refused(self):
        # A hostNetwork pod's IP is the node's: selecting it as the sandbox
        # would point the proxy at the node.
        sel = {"app": "web", "sandbox": "hostnet"}
        self.api.apply(TK.F.pod(TK.NS, "hostnet", sel, [N.NODE4, N.NODE6]))
        self.api.apply(TK.F.sandboxroute(TK.NS, "hostnet", "web", ["k-host"], NODE_PORT, selector=sel))
        self.wait_log("is an address of this node: shunt never sends traffic to the node")
        self.hold({}, 0.5, "routes to a hostNetwork pod")
        self.assertEqual(self.get_pod(N.BASE4, "k-host"), "baseline")
        self.assertEqual(self.get_pod(N.BASE6, "k-host"), "baseline")
        # Unkeyed traffic is untouched.
        self.assertEqual(self.get_pod(N.BASE4, None), "baseline")
        self.assertEqual(self.get(N.BASE4, "/", [key_header("k-host")]).status, 200)
