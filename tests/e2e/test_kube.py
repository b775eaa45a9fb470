# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The kube stand-in (kube.py): Deployments, StatefulSets and Jobs of the
fake API server (tests/k8s/fakeapi.py) become real processes in real pod
netns on the netns node; their Services get EndpointSlices and a ClusterIP
that answers (kube-proxy stand-in).

KubeStandIn runs the stand-in alone (no shuntd); KubeStandInShuntd adds
shuntd in Kubernetes mode following the same fake API (--node-name e2e-node,
as test_k8s): a SandboxRoute on a stand-in Service steers keyed requests
to a stand-in sandbox pod while unkeyed ones reach the baseline through
shuntd's proxy and the ClusterIP forwarder, and a SandboxOverride selecting
stand-in pods finds their kubelet-style cgroup by uid.

Each test has its own namespace kt-<hex> and its own KubeStandIn (closed
by a cleanup, also when the test fails); traffic goes only to addresses of
the node's namespaces.
"""

import json
import os
import re
import secrets
import signal
import sys
import time

import node as N
from base import NodeTestCase
from httpmsg import key_header

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "k8s"))
try:
    import fakeapi as F  # noqa: E402
    _IMPORT_ERROR = None
except ImportError as e:  # python3-jsonschema / python3-yaml missing: skipped with the reason
    F, _IMPORT_ERROR = None, str(e)
import kube as K  # noqa: E402
import test_overrides as TO  # noqa: E402  (a module: its test class is not collected here)

NODE = "e2e-node"
POD_NAME_RE = re.compile(r"^web-[0-9a-f]{10}-[%s]{5}$" % K.RAND_ALPHABET)


def images():
    return {"echo:v1": K.server_image(), "echo:v2": K.server_image(name="v2-{pod}"), "busybox:1": K.exec_image()}


def deployment(ns, name, labels, image, replicas=None, port=N.HTTP_PORT, env=None):
    ctr = {"name": "app", "image": image, "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}]}
    if env:
        ctr["env"] = [{"name": k, "value": v} for k, v in env.items()]
    spec = {"selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [ctr]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)}, "spec": spec}


def service(ns, name, selector, ips, target="http"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "ClusterIP", "selector": dict(selector), "clusterIP": ips[0], "clusterIPs": list(ips),
                     "ipFamilies": ["IPv6" if ":" in ip else "IPv4" for ip in ips],
                     "ipFamilyPolicy": "PreferDualStack" if len(ips) > 1 else "SingleStack",
                     "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}]}}


def job(ns, name, script, backoff):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": ns},
            "spec": {"backoffLimit": backoff,
                     "template": {"metadata": {"labels": {"job": name}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "main", "image": "busybox:1",
                                                           "command": ["sh", "-c", script]}]}}}}


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class KubeBase(NodeTestCase):
    api = None
    k8s_agent = False  # shuntd follows the fake API

    @classmethod
    def prepare_node(cls, node):
        if F is None:
            raise N.Skip("tests/k8s/fakeapi.py cannot be imported: %s" % _IMPORT_ERROR)
        cls.token_file = os.path.join(node.tmp, "k8s-token")
        with open(cls.token_file, "w") as f:
            f.write("t0")
        os.chmod(cls.token_file, 0o600)
        cls.api = F.FakeAPI(token="t0", netns=node.netns_path("node"), bookmark_interval=1.0)
        cls.api.start()
        if cls.k8s_agent:
            node.shuntd_args += ["--k8s-api", cls.api.url, "--k8s-token-file", cls.token_file,
                                 "--node-name", NODE, "--sandbox-cidr", str(N.NET4_CIDR),
                                 "--sandbox-cidr", str(N.NET6_CIDR)]

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if cls.api is not None:
                cls.api.close()
                cls.api = None

    def setUp(self):
        super().setUp()
        self.ns = "kt-" + secrets.token_hex(3)
        self.images = images()
        self.kube = K.KubeStandIn(self.api, self.node, self.images, namespace_filter={self.ns},
                                  node_name=NODE).start()
        self.addCleanup(self.kube.close)

    def tearDown(self):
        try:
            if self._outcome_failed() and self.kube is not None:
                print("\n[kube stand-in log tail %s]\n%s" % (self.kube.log_path, self.kube.log_tail(60)))
        finally:
            super().tearDown()

    def _outcome_failed(self):
        o = getattr(self, "_outcome", None)
        res = getattr(o, "result", None)
        return bool(res and (getattr(res, "_bad", False)))

    # ---- helpers ---------------------------------------------------------------
    def web(self, replicas=None, image="echo:v1", name="web", labels=None, env=None):
        labels = labels or {"app": name}
        ips = self.kube.alloc_cluster_ip()
        svc = self.api.create(service(self.ns, name, labels, ips))
        dep = self.api.create(deployment(self.ns, name, labels, image, replicas, env=env))
        return svc, dep, ips

    def get_pod(self, host, port=80, key=None):
        r = self.get(host, "/", [key_header(key)] if key else [], port=port)
        self.assertEqual(r.status, 200, r)
        return r.pod

    def slice_eps(self, name):
        s = self.api.get("endpointslices", self.ns, name)
        if s is None:
            return None
        return sorted((e["addresses"][0], e["conditions"]["ready"], e["targetRef"]["name"]) for e in s["endpoints"])

    def assert_clean(self, sandboxes, what):
        for sb in sandboxes:
            self.assertFalse(os.path.exists(sb["netns"] or "/nonexistent"), "%s: netns %s left" % (what, sb["netns"]))
            self.assertFalse(os.path.exists(sb["cgroup"]), "%s: cgroup %s left" % (what, sb["cgroup"]))
            for pid in sb["pids"]:
                self.assertFalse(alive(pid), "%s: pid %d still runs" % (what, pid))


class KubeStandIn(KubeBase):
    node_opts = {"shuntd": False}

    def test_deployment_pod_service_endpoints(self):
        svc, dep, (cip4, cip6) = self.web(env={"GREETING": "hi $(POD_NAME)"})
        d = self.kube.wait_deployment(self.ns, "web")
        (p,) = self.kube.wait_pods(self.ns, {"app": "web"}, 1)
        m, st = p["metadata"], p["status"]
        self.assertRegex(m["name"], POD_NAME_RE)
        h = m["labels"]["pod-template-hash"]
        self.assertEqual(m["labels"], {"app": "web", "pod-template-hash": h})
        self.assertTrue(m["name"].startswith("web-%s-" % h), m["name"])
        self.assertEqual(m["ownerReferences"], [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                 "uid": dep["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}])
        self.assertEqual(p["spec"]["nodeName"], NODE)
        self.assertEqual(st["phase"], "Running")
        sb = self.kube.sandbox(self.ns, m["name"])
        self.assertEqual((st["podIP"], [x["ip"] for x in st["podIPs"]]), (sb["v4"], [sb["v4"], sb["v6"]]))
        self.assertEqual(self.kube.pod_ip(self.ns, m["name"]), (sb["v4"], sb["v6"]))
        self.assertTrue(160 <= int(sb["v4"].rsplit(".", 1)[1]) < 220, sb)
        self.assertEqual(st["containerStatuses"][0]["restartCount"], 0)
        self.assertTrue(st["containerStatuses"][0]["ready"])
        for c in ("Ready", "ContainersReady", "PodScheduled", "Initialized"):
            self.assertTrue(K.is_true(p, c), "condition %s: %r" % (c, st["conditions"]))
        ds = d["status"]
        self.assertEqual((ds["replicas"], ds["updatedReplicas"], ds["readyReplicas"], ds["availableReplicas"],
                          ds["observedGeneration"]), (1, 1, 1, 1, d["metadata"]["generation"]), ds)
        self.assertTrue(K.is_true(d, "Available") and K.is_true(d, "Progressing"), ds)
        # A real process in the pod's netns and kubelet-style cgroup.
        self.assertEqual(sb["cgroup"], os.path.join(self.node.cg, "kubepods", "pod" + m["uid"]))
        (pid,) = sb["pids"]
        with open(os.path.join(sb["cgroup"], "app", "cgroup.procs")) as f:
            self.assertIn(str(pid), f.read().split())
        self.assertEqual(os.stat("/proc/%d/ns/net" % pid).st_ino, os.stat(sb["netns"]).st_ino)
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = dict(x.split(b"=", 1) for x in f.read().split(b"\0") if b"=" in x)
        self.assertEqual((env[b"POD_NAME"], env[b"POD_IP"], env[b"GREETING"]),
                         (m["name"].encode(), sb["v4"].encode(), b"hi " + m["name"].encode()))
        # Its IPs, and the Service's ClusterIPs, answer from the client pod.
        for host, port in ((sb["v4"], N.HTTP_PORT), (sb["v6"], N.HTTP_PORT), (cip4, 80), (cip6, 80)):
            self.assertEqual(self.get_pod(host, port), m["name"], "%s:%d" % (host, port))
        reqs = self.kube.server_events(m["name"], ("request",))
        self.assertEqual(len(reqs), 4, reqs)
        # EndpointSlices like the real controller's.
        for name, fam, ip in (("web-v4", "IPv4", sb["v4"]), ("web-v6", "IPv6", sb["v6"])):
            s = self.api.get("endpointslices", self.ns, name)
            self.assertIsNotNone(s, name)
            self.assertEqual(s["addressType"], fam)
            self.assertEqual(s["metadata"]["labels"], {"kubernetes.io/service-name": "web",
                                                       "endpointslice.kubernetes.io/managed-by":
                                                           "endpointslice-controller.k8s.io"})
            self.assertEqual(s["metadata"]["ownerReferences"][0]["uid"], svc["metadata"]["uid"])
            self.assertEqual(s["ports"], [{"name": "http", "port": N.HTTP_PORT, "protocol": "TCP"}])
            (ep,) = s["endpoints"]
            self.assertEqual((ep["addresses"], ep["conditions"]["ready"], ep["targetRef"]["name"],
                              ep["targetRef"]["uid"], ep["nodeName"]), ([ip], True, m["name"], m["uid"], NODE))
        # Level-triggered but quiet: nothing changes, nothing is written.
        rv = self.api.resource_version
        time.sleep(1.5)
        self.assertEqual(self.api.resource_version, rv, "the stand-in keeps writing with nothing to do")
        self.kube.check()

    def test_scale_and_template_change_replace_pods(self):
        self.web(replicas=1)
        (p1,) = self.kube.wait_pods(self.ns, {"app": "web"}, 1)
        self.api.patch("deployments", self.ns, "web", {"spec": {"replicas": 2}})
        pods = self.kube.wait_pods(self.ns, {"app": "web"}, 2)
        names = sorted(p["metadata"]["name"] for p in pods)
        self.assertIn(p1["metadata"]["name"], names)
        ips = sorted(p["status"]["podIP"] for p in pods)
        self.kube.wait(lambda: sorted(e[0] for e in self.slice_eps("web-v4") or []) == ips
                       and all(e[1] for e in self.slice_eps("web-v4")), 10, "both pods in web-v4")
        cip4 = self.api.get("services", self.ns, "web")["spec"]["clusterIP"]
        seen = {self.get_pod(cip4) for _ in range(6)}
        self.assertEqual(seen, set(names), "the ClusterIP spreads over both ready endpoints")
        old = [self.kube.sandbox(self.ns, n) for n in names]

        d = self.api.get("deployments", self.ns, "web")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "echo:v2"
        self.api.update(d)
        self.kube.wait_deployment(self.ns, "web")
        new = self.kube.wait_pods(self.ns, {"app": "web"}, 2)
        new_names = sorted(p["metadata"]["name"] for p in new)
        self.assertFalse(set(new_names) & set(names), "the pods were replaced: %s -> %s" % (names, new_names))
        self.assertNotEqual(new[0]["metadata"]["labels"]["pod-template-hash"],
                            p1["metadata"]["labels"]["pod-template-hash"])
        self.kube.wait(lambda: all(self.kube.sandbox(self.ns, n) is None for n in names), 10, "old sandboxes gone")
        self.assert_clean(old, "replaced pods")
        self.kube.wait(lambda: sorted(e[2] for e in self.slice_eps("web-v4") or []) == new_names, 10,
                       "the new pods in web-v4")
        seen = {self.get_pod(cip4) for _ in range(6)}
        self.assertEqual(seen, {"v2-" + n for n in new_names})
        d = self.api.get("deployments", self.ns, "web")
        self.assertEqual(d["status"]["observedGeneration"], d["metadata"]["generation"])
        self.assertEqual(d["metadata"]["generation"], 3)  # replicas, then the template
        self.kube.check()

    def test_deployment_deleted_pods_and_sandboxes_gone(self):
        self.web(replicas=2)
        pods = self.kube.wait_pods(self.ns, {"app": "web"}, 2)
        sbs = [self.kube.sandbox(self.ns, p["metadata"]["name"]) for p in pods]
        self.assertTrue(all(sb and sb["pids"] for sb in sbs), sbs)
        self.api.delete("deployments", self.ns, "web")
        # The fake API's garbage collector deletes the owned pods at once.
        self.assertEqual(self.kube.pods(self.ns, {"app": "web"}), [])
        self.kube.wait(lambda: not self.kube.sandboxes(), 10, "the sandboxes torn down")
        self.assert_clean(sbs, "deleted deployment")
        self.kube.wait(lambda: self.slice_eps("web-v4") == [], 10, "web-v4 empty")
        self.kube.check()

    def test_job_complete_and_backoff_limit(self):
        self.api.create(job(self.ns, "ok", "exit 0", backoff=0))
        self.api.create(job(self.ns, "bad", "echo failing; exit 1", backoff=1))
        ok = self.kube.wait_job(self.ns, "ok")
        self.assertTrue(K.is_true(ok, "Complete"), ok["status"])
        self.assertEqual((ok["status"]["succeeded"], ok["status"]["failed"], ok["status"]["active"]), (1, 0, 0))
        self.assertIn("startTime", ok["status"])
        self.assertIn("completionTime", ok["status"])
        (p,) = self.kube.pods(self.ns, {"job-name": "ok"})
        self.assertEqual(p["status"]["phase"], "Succeeded")
        self.assertEqual(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0)
        bad = self.kube.wait_job(self.ns, "bad")
        self.assertTrue(K.is_true(bad, "Failed"), bad["status"])
        self.assertEqual(K.cond(bad, "Failed")["reason"], "BackoffLimitExceeded")
        self.assertEqual((bad["status"]["succeeded"], bad["status"]["failed"]), (0, 2), bad["status"])
        ps = self.kube.pods(self.ns, {"job-name": "bad"})
        self.assertEqual([x["status"]["phase"] for x in ps], ["Failed", "Failed"], ps)
        self.assertEqual({x["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for x in ps}, {1})
        with open(os.path.join(self.kube.log_dir, "%s_%s_main.log" % (self.ns, ps[0]["metadata"]["name"]))) as f:
            self.assertIn("failing", f.read())
        # Finished pods keep no sandbox.
        self.kube.wait(lambda: all(sb["done"] and not sb["pids"] for sb in self.kube.sandboxes()), 5,
                       "finished sandboxes torn down")
        time.sleep(1)  # nothing more happens: no third pod
        self.assertEqual(len(self.kube.pods(self.ns, {"job-name": "bad"})), 2)
        self.kube.check()

    def test_unknown_image_pending_then_pulled_and_restart(self):
        self.api.create(deployment(self.ns, "web", {"app": "web"}, "later:1"))
        (p,) = self.kube.wait_pods(self.ns, {"app": "web"}, 1, ready=False)
        name = p["metadata"]["name"]

        def waiting():
            q = self.api.get("pods", self.ns, name)
            cs = (q.get("status") or {}).get("containerStatuses") or []
            return cs and cs[0]["state"].get("waiting", {}).get("reason") == "ErrImagePull" and q
        q = self.kube.wait(waiting, 10, "ErrImagePull")
        self.assertEqual(q["status"]["phase"], "Pending")
        self.assertNotIn("podIP", q["status"])
        self.assertIsNone(self.kube.sandbox(self.ns, name))
        self.images["later:1"] = K.server_image()  # the image "arrives"
        self.kube.wait_ready(self.ns, name)
        sb = self.kube.sandbox(self.ns, name)
        self.assertEqual(self.get_pod(sb["v4"], N.HTTP_PORT), name)
        # restartPolicy Always: a killed process comes back, counted.
        os.kill(sb["pids"][0], signal.SIGKILL)

        def restarted():
            q = self.api.get("pods", self.ns, name)
            cs = q["status"]["containerStatuses"][0]
            return cs["restartCount"] == 1 and K.pod_ready(q) and q
        q = self.kube.wait(restarted, 15, "the container restarted and ready")
        self.assertEqual(q["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 128 + 9)
        self.assertNotEqual(self.kube.sandbox(self.ns, name)["pids"], sb["pids"])
        self.assertEqual(self.get_pod(sb["v4"], N.HTTP_PORT), name)
        self.kube.check()

    def test_init_containers_recreate_allocated_clusterip_pod_deleted(self):
        d = deployment(self.ns, "web", {"app": "web"}, "echo:v1")
        d["spec"]["strategy"] = {"type": "Recreate"}
        d["spec"]["template"]["spec"]["initContainers"] = [
            {"name": "init", "image": "busybox:1", "command": ["sh", "-c", "sleep 0.3; echo init-ran"]}]
        self.api.create(d)
        # No clusterIP: the stand-in allocates one; a numeric targetPort.
        self.api.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": self.ns},
                         "spec": {"selector": {"app": "web"}, "ports": [{"port": 81, "targetPort": 8080}]}})
        (p,) = self.kube.wait_pods(self.ns, {"app": "web"}, 1)
        (ini,) = p["status"]["initContainerStatuses"]
        self.assertEqual(ini["state"]["terminated"]["exitCode"], 0, ini)
        with open(os.path.join(self.kube.log_dir, "%s_%s_init.log" % (self.ns, p["metadata"]["name"]))) as f:
            self.assertIn("init-ran", f.read())
        cip = self.kube.wait(lambda: self.api.get("services", self.ns, "web")["spec"].get("clusterIP"), 10,
                             "a ClusterIP allocated")
        self.assertTrue(220 <= int(cip.rsplit(".", 1)[1]) < 251, cip)
        self.kube.wait(lambda: self.slice_eps("web-v4"), 10, "web-v4")
        self.assertEqual(self.api.get("endpointslices", self.ns, "web-v4")["ports"],
                         [{"name": "", "port": N.HTTP_PORT, "protocol": "TCP"}])
        self.assertEqual(self.get_pod(cip, 81), p["metadata"]["name"])
        # A pod deleted by hand comes back as a new one.
        old = self.kube.sandbox(self.ns, p["metadata"]["name"])
        self.api.delete("pods", self.ns, p["metadata"]["name"])
        (p2,) = self.kube.wait_pods(self.ns, {"app": "web"}, 1)
        self.assertNotEqual(p2["metadata"]["name"], p["metadata"]["name"])
        self.kube.wait(lambda: self.kube.sandbox(self.ns, p["metadata"]["name"]) is None, 10, "old sandbox gone")
        self.assert_clean([old], "deleted pod")
        # Recreate: the old pod goes before the new one starts.
        d = self.api.get("deployments", self.ns, "web")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "echo:v2"
        self.api.update(d)
        self.kube.wait_deployment(self.ns, "web")
        (p3,) = self.kube.wait_pods(self.ns, {"app": "web"}, 1)
        self.assertEqual(self.get_pod(cip, 81), "v2-" + p3["metadata"]["name"])
        with open(self.kube.log_path) as f:
            log = f.read()
        i_del = log.index("pods %s/%s: deleted" % (self.ns, p2["metadata"]["name"]))
        i_new = log.index("pods %s/%s: created" % (self.ns, p3["metadata"]["name"]))
        self.assertLess(i_del, i_new, "Recreate created the new pod before deleting the old one")
        self.kube.check()

    def test_statefulset(self):
        labels = {"app": "db"}
        self.api.create({"apiVersion": "apps/v1", "kind": "StatefulSet",
                         "metadata": {"name": "db", "namespace": self.ns},
                         "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": labels},
                                  "template": {"metadata": {"labels": labels},
                                               "spec": {"containers": [{"name": "db", "image": "echo:v1",
                                                                        "ports": [{"containerPort": 8080}]}]}}}})
        pods = self.kube.wait_pods(self.ns, labels, 2)
        self.assertEqual([p["metadata"]["name"] for p in pods], ["db-0", "db-1"])
        self.assertEqual(pods[1]["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "db-1")
        self.kube.wait(lambda: (self.api.get("statefulsets", self.ns, "db").get("status") or {})
                       .get("readyReplicas") == 2, 10, "statefulset status readyReplicas 2")
        self.assertEqual(self.get_pod(pods[0]["status"]["podIP"], N.HTTP_PORT), "db-0")
        self.kube.check()

    def test_close_leaves_nothing(self):
        _, _, (cip4, _) = self.web(replicas=2)
        self.kube.wait_pods(self.ns, {"app": "web"}, 2)
        self.api.create(job(self.ns, "sleeper", "sleep 600", backoff=0))
        self.kube.wait_pods(self.ns, {"job-name": "sleeper"}, 1)
        sbs = self.kube.sandboxes()
        self.assertEqual(len(sbs), 3)
        self.get_pod(cip4)
        self.kube.close()
        self.assert_clean(sbs, "after close()")
        self.assertFalse(os.path.exists(os.path.join(self.node.cg, "kubepods")), "kubepods cgroup left")
        nss = N.run(["ip", "netns", "list"]).stdout
        self.assertNotIn(self.node.id + "-k", nss)
        addrs = N.run(["ip", "-n", self.node.ns("node"), "addr", "show", "dev", "kube-ipvs0"]).stdout
        self.assertNotIn(cip4 + "/", addrs)
        c, r = self.client.try_connect(cip4, 80, timeout=1)
        self.assertIsNone(c, "the ClusterIP still answers after close(): %r" % r)
        self.kube.close()  # idempotent
        self.assertEqual(len(self.kube.pods(self.ns, {"app": "web"})), 2, "close() leaves the API objects")
        self.kube.check()


class KubeStandInShuntd(KubeBase):
    """shuntd in Kubernetes mode over stand-in pods."""
    k8s_agent = True

    def test_sandboxroute_and_override_on_standin_pods(self):
        key = "kt-" + secrets.token_hex(2)
        _, _, (cip4, cip6) = self.web(replicas=1)
        self.api.create(deployment(self.ns, "web-feat", {"app": "web-feat"}, "echo:v2"))
        (base,) = self.kube.wait_pods(self.ns, {"app": "web"}, 1)
        (sbx,) = self.kube.wait_pods(self.ns, {"app": "web-feat"}, 1)
        bname, sname = base["metadata"]["name"], sbx["metadata"]["name"]
        self.api.create(F.sandboxroute(self.ns, "feat", "web", [key], N.HTTP_PORT, selector={"app": "web-feat"}))
        want = {(N.hostport(cip4, 80), key), (N.hostport(cip6, 80), key)}

        def routed():
            got = {(r["service"], r["key"]) for r in self.node.routes() if r.get("source") == "k8s"}
            return want <= got
        self.kube.wait(routed, 10, "shuntd's k8s routes for the SandboxRoute")
        for host in (cip4, cip6):
            n = len(self.kube.proxy_conns)
            self.assertEqual(self.get_pod(host, key=key), "v2-" + sname, "keyed to %s" % host)
            self.assertEqual(self.kube.proxy_conns[n:], [], "a keyed request reached the ClusterIP forwarder")
            # Unkeyed: through shuntd's proxy, which dials the ClusterIP (on
            # kube-ipvs0, not an address of the node for shuntd): the forwarder.
            self.assertEqual(self.get_pod(host), bname, "unkeyed to %s" % host)
            got = self.kube.proxy_conns[n:]
            self.assertEqual(len(got), 1, got)
            self.assertNotIn(got[0][1][0], (N.CLIENT4, N.CLIENT6), "the unkeyed request did not go through shuntd")

        # A SandboxOverride selecting the sandbox pod finds its cgroup by uid.
        sb = self.kube.sandbox(self.ns, sname)
        bsb = self.kube.sandbox(self.ns, bname)
        self.api.create(F.sandboxoverride(self.ns, "feat-db", {"app": "web-feat"},
                                          {"addresses": [N.BASE4], "port": N.HTTP_PORT},
                                          {"addresses": [bsb["v4"]], "port": N.HTTP_PORT}))

        def override():
            got = [o for o in self.node.ctl_json("override", "list") if o.get("source") == "k8s"]
            return len(got) == 1 and got
        (o,) = self.kube.wait(override, 10, "the SandboxOverride's override")
        self.assertEqual(o["cgroup_id"], os.stat(sb["cgroup"]).st_ino, o)
        # A process in the sandbox pod's container cgroup and netns is redirected.
        p = N.run(self.kube.pod_argv(self.ns, sname, [N.PYTHON, "-c", TO.PROBE, N.BASE4, N.HTTP_PORT]),
                  check=False, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["pod"], bname)
        self.kube.check()


class KubeCapture(KubeBase):
    """Issue 14 in Kubernetes: shuntd registers this node's pods for in-pod
    or TC capture as they come and go: annotation shunt.dev/capture (node,
    in-pod, tc), else --pod-capture (auto here: in-pod, since the agent has
    CAP_SYS_ADMIN and sees the host's PIDs). A pod served in-pod reaches
    the sandbox from its own address; a deleted pod's registration goes."""
    k8s_agent = True

    @classmethod
    def prepare_node(cls, node):
        super().prepare_node(node)
        node.shuntd_args += ["--pod-capture", "auto"]

    def caller(self, name, capture=None):
        labels = {"app": name}
        dep = deployment(self.ns, name, labels, "busybox:1")
        dep["spec"]["template"]["spec"]["containers"][0].pop("ports")
        if capture:
            dep["spec"]["template"]["metadata"]["annotations"] = {"shunt.dev/capture": capture}
        self.api.create(dep)
        (pod,) = self.kube.wait_pods(self.ns, labels, 1)
        return pod["metadata"]["name"]

    def registered(self):
        return {p["name"]: p.get("mode") for p in self.node.ctl_json("pod", "list")}

    def curl(self, pod, url, key=None):
        argv = ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-D", "-", url]
        if key:
            argv[1:1] = ["-H", "%s: %s" % key_header(key)]
        p = N.run(self.kube.pod_argv(self.ns, pod, argv), check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        hs = dict(ln.split(": ", 1) for ln in p.stdout.splitlines()[1:] if ": " in ln)
        return hs.get("X-Pod"), hs.get("X-Peer", "").rsplit(":", 1)[0].strip("[]")

    def test_pods_registered_by_annotation_and_default(self):
        key = "kt-" + secrets.token_hex(2)
        st = self.node.status()["kubernetes"]
        self.assertEqual(st["pod_capture"], "in-pod", st)
        _, _, (cip4, _) = self.web(replicas=1)
        self.api.create(deployment(self.ns, "web-feat", {"app": "web-feat"}, "echo:v2"))
        (sbx,) = self.kube.wait_pods(self.ns, {"app": "web-feat"}, 1)
        self.api.create(F.sandboxroute(self.ns, "feat", "web", [key], N.HTTP_PORT, selector={"app": "web-feat"}))
        self.kube.wait(lambda: any(r.get("source") == "k8s" for r in self.node.routes()), 10, "the k8s route")
        plain = self.caller("caller")  # no annotation: --pod-capture auto -> in-pod
        kept = self.caller("kept", "node")
        vm = self.caller("vm", "tc")
        ids = {n: "%s/%s" % (self.ns, n) for n in (plain, kept, vm)}
        self.kube.wait(lambda: self.registered().get(ids[plain]) == "in-pod", 15, "the caller registered in-pod")
        self.kube.wait(lambda: self.node.status()["kubernetes"]["pods_capture_failed"] >= 1, 15,
                       "the tc-annotated pod refused")
        regs = self.registered()
        self.assertNotIn(ids[kept], regs, "annotation node: not registered")
        self.assertNotIn(ids[vm], regs, "tc on a bridged pod: refused")
        self.assertIn("k8s: pod %s (tc): the node reaches it through the bridge" % ids[vm],
                      N._read_from(self.node.shuntd_log))
        self.assertIn("pods_capture_pending", self.node.status()["kubernetes"])
        me = self.kube.sandbox(self.ns, plain)["v4"]
        self.assertEqual(self.curl(plain, "http://%s/" % cip4, key), ("v2-" + sbx["metadata"]["name"], me),
                         "keyed, in-pod: the sandbox sees the caller pod")
        who, peer = self.curl(kept, "http://%s/" % cip4, key)
        self.assertEqual((who, peer), ("v2-" + sbx["metadata"]["name"], N.NODE4), "node mode: the node dials")
        # The pod goes: so does its registration (and its map entry).
        cookie = [p for p in self.node.ctl_json("pod", "list") if p["name"] == ids[plain]][0]["netns_cookie"]
        self.assertIn(cookie, [e["key"] for e in self.node.map_dump("shunt_inpod")])
        self.api.delete("deployments", self.ns, "caller")
        self.kube.wait(lambda: ids[plain] not in self.registered(), 20, "the deleted pod's registration to go")
        self.assertNotIn(cookie, [e["key"] for e in self.node.map_dump("shunt_inpod")])

    def test_inference_from_annotations(self):
        """shunt.dev/infer on an in-pod pod: set with the ports its
        containers declare (or shunt.dev/infer-ports); a bad value is
        reported and served as off; the pod's own inbound requests reach
        it through shunt's listener in its namespace."""
        labels = {"app": "mid"}
        dep = deployment(self.ns, "mid", labels, "echo:v1")
        dep["spec"]["template"]["metadata"]["annotations"] = {"shunt.dev/infer": "shadow"}
        self.api.create(dep)
        (pod,) = self.kube.wait_pods(self.ns, labels, 1)
        name = "%s/%s" % (self.ns, pod["metadata"]["name"])

        def inference():
            got = [p.get("inference") for p in self.node.ctl_json("pod", "list") if p["name"] == name]
            return got[0] if got else None

        self.kube.wait(lambda: (inference() or {}).get("attached"), 15, "inference set from the annotation")
        inf = inference()
        self.assertEqual((inf["mode"], inf["ports"]), ("shadow", [N.HTTP_PORT]), inf)
        ip = self.kube.sandbox(self.ns, pod["metadata"]["name"])["v4"]
        caller = self.caller("caller2", "node")
        for _ in range(3):
            self.curl(caller, "http://%s:%d/" % (ip, N.HTTP_PORT), "dev-a")
        self.assertGreaterEqual(inference()["inbound_keyed"], 3, inference())
        # A bad value: reported, off; the pod stays registered.
        self.api.patch("deployments", self.ns, "mid",
                       {"spec": {"template": {"metadata": {"annotations": {"shunt.dev/infer": "always"}}}}})
        self.kube.wait(lambda: "annotation shunt.dev/infer is not off, shadow or on"
                       in N._read_from(self.node.shuntd_log), 20, "the bad value reported")

    def test_a_pod_recreated_under_its_name_is_registered_anew(self):
        labels = {"app": "db"}
        self.api.create({"apiVersion": "apps/v1", "kind": "StatefulSet",
                         "metadata": {"name": "db", "namespace": self.ns},
                         "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": labels},
                                  "template": {"metadata": {"labels": labels},
                                               "spec": {"containers": [{"name": "db", "image": "busybox:1"}]}}}})
        (pod,) = self.kube.wait_pods(self.ns, labels, 1)
        name = "%s/db-0" % self.ns

        def cookie():
            got = [p["netns_cookie"] for p in self.node.ctl_json("pod", "list") if p["name"] == name]
            return got[0] if got else None
        first = self.kube.wait(cookie, 15, "db-0 registered in-pod")
        uid = pod["metadata"]["uid"]
        self.api.delete("pods", self.ns, "db-0")
        self.kube.wait(lambda: any(p["metadata"]["uid"] != uid for p in self.kube.wait_pods(self.ns, labels, 1)),
                       20, "db-0 recreated")
        self.kube.wait(lambda: cookie() not in (None, first), 20, "db-0 registered with its new namespace")
        self.assertEqual([e["key"] for e in self.node.map_dump("shunt_inpod") if e["key"] == first], [],
                         "the old namespace's entry is gone")
