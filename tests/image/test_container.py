# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The agent's container itself (make test-image runs these with the e2e
cases; SHUNT_E2E_AGENT_IMAGE names the image): confined exactly as
deploy/daemonset.yaml says, pins through a mount of shunt's own directory
only, both address families from one --proxy-addr list, and the
entrypoint passing a crash on."""

import os
import signal
import unittest

import yaml

import agent_container as AC
import node as N
from base import SVC4, SVC6, TO4, TO6, NodeTestCase
from httpmsg import key_header

DAEMONSET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "daemonset.yaml")


def daemonset():
    for doc in yaml.safe_load_all(open(DAEMONSET)):
        if doc and doc.get("kind") == "DaemonSet":
            return doc
    raise AssertionError("no DaemonSet in %s" % DAEMONSET)


class Container(NodeTestCase):
    @classmethod
    def setUpClass(cls):
        if not AC.AGENT_IMAGE:
            raise unittest.SkipTest("SHUNT_E2E_AGENT_IMAGE not set (make test-image sets it)")
        super().setUpClass()

    def test_the_run_is_the_daemonsets(self):
        """What agent_container.py runs is what the manifest asks for: if
        one changes, this fails until the other follows."""
        pod = daemonset()["spec"]["template"]["spec"]
        c = pod["containers"][0]
        sc = c["securityContext"]
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"], "add": ["BPF", "NET_ADMIN"]})
        self.assertEqual((sc["runAsUser"], sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"],
                          sc["privileged"], sc["seccompProfile"]["type"]), (0, False, True, False, "RuntimeDefault"))
        self.assertTrue(pod["hostNetwork"])
        argv = AC.podman_run_argv(["podman"], "x", "img")
        for flag in ("--cap-drop=all", "--cap-add=BPF", "--cap-add=NET_ADMIN", "--read-only",
                     "--read-only-tmpfs=false", "no-new-privileges", "--memory=512m"):
            self.assertIn(flag, argv)
        self.assertEqual(c["resources"]["limits"]["memory"], "512Mi")
        self.assertEqual(c["command"], ["/usr/local/bin/shuntd-pod"])
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        vols = {v["name"]: v["hostPath"] for v in pod["volumes"]}
        args = dict(a.split("=", 1) for a in c["args"] if "=" in a)
        self.assertEqual((vols["bpffs"]["path"], mounts["bpffs"]["mountPath"], args["--bpffs"]),
                         ("/sys/fs/bpf/shunt", AC.CTR_PIN, AC.CTR_PIN))
        self.assertEqual(vols["bpffs"]["type"], "DirectoryOrCreate")
        self.assertEqual((vols["cgroup"]["path"], mounts["cgroup"]["mountPath"], mounts["cgroup"]["readOnly"]),
                         ("/sys/fs/cgroup", AC.CTR_CGROOT, True))
        self.assertEqual(args["--cgroup"], AC.CTR_CGROOT)
        self.assertEqual((vols["run-shunt"]["path"], mounts["run-shunt"]["mountPath"]), ("/run/shunt", AC.CTR_RUN))
        self.assertEqual(os.path.dirname(args["--control"]), AC.CTR_RUN)

    def test_confined(self):
        """The running shuntd: exactly CAP_BPF + CAP_NET_ADMIN, no_new_privs,
        seccomp filter, read-only root and cgroup tree, no bpffs but its
        own pin directory."""
        self.assertEqual(self.node.shuntd.confinement_problems(), [])
        pid = self.node.shuntd.pid
        self.assertNotEqual(pid, os.getpid())
        # It is in a pid namespace of its own (hostPID: false).
        self.assertNotEqual(os.readlink("/proc/%d/ns/pid" % pid), os.readlink("/proc/self/ns/pid"))
        # and in the node's network namespace (hostNetwork: true).
        self.assertEqual(os.stat("/proc/%d/ns/net" % pid).st_ino, os.stat(self.node.netns_path("node")).st_ino)

    def test_pins_through_its_own_directory(self):
        """The pin directory is one directory of the host's bpffs, bind
        mounted (the DaemonSet's hostPath /sys/fs/bpf/shunt): the pins land
        there on the host, and nothing else of the bpffs is visible."""
        n = self.node
        pins = sorted(os.listdir(n.pin))
        for name in ("shunt_routes", "shunt_listeners"):
            self.assertIn(name, pins)
        self.assertTrue([p for p in pins if p.startswith("link_")], "no pinned link in %s: %s" % (n.pin, pins))
        bpf = []
        for line in open("/proc/%d/mountinfo" % n.shuntd.pid):
            parts = line.split()
            if parts[parts.index("-") + 1] == "bpf":
                bpf.append((parts[3], parts[4]))  # (root inside the fs, mount point)
        self.assertEqual(bpf, [("/" + os.path.basename(n.pin), AC.CTR_PIN)])

    def test_both_families_from_one_proxy_addr_list(self):
        """--proxy-addr=<v4>,<v6>, as the DaemonSet passes status.hostIPs:
        keyed requests of both families reach the sandbox."""
        self.assertIn("--proxy-addr=%s,%s" % (N.NODE4, N.NODE6), self.node.agent_argv())
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC6, "dev-a", TO6)
        for ip in (N.BASE4, N.BASE6):
            self.assertPod(self.get(ip, "/", [key_header("dev-a")]), "sandbox", ip)
            self.assertPod(self.get(ip, "/"), "baseline", ip)

    def test_crash_is_passed_on(self):
        """kill -9 of shuntd ends the container with 128+9 (the entrypoint
        passes the status on, so the kubelet restarts it), pins stay."""
        n = self.node
        n.expected_exit = True
        n.shuntd.send_signal(signal.SIGKILL)
        self.assertEqual(n.shuntd.wait(10), -signal.SIGKILL)
        self.assertEqual(n.shuntd.proc.returncode, 128 + signal.SIGKILL)
        self.assertTrue(os.path.exists(os.path.join(n.pin, "shunt_routes")))
        # (the next test's setUp starts a new container)
