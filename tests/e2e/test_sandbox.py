# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Sandboxes end to end (issue 12, docs/sandboxes.md): shunt-controller,
shuntd and the kube stand-in (kube.py) on one netns node, all following
the in-process fake API server (tests/k8s/fakeapi.py).

A Sandbox object goes in; the controller makes forks, SandboxRoutes,
resources, hooks and SandboxOverrides; the stand-in turns the Deployments
and Jobs into processes in pod namespaces; shuntd steers by key. The
controller runs with the token of deploy/controller.yaml's RBAC rules
(the fake API refuses anything else with a 403), in its own namespace per
test (--namespace), with a short lease (3 s).

The chain: front -> middle -> back, each a Deployment of servers.py in
chain mode (image chain:v1, answering with the hops' pod names) behind a
ClusterIP Service on port 80; chain:v2 is the same program whose hops are
named v2-<pod>.
"""

import calendar
import json
import os
import signal
import subprocess
import time

import node as N
from test_kube import F, K, KubeBase, deployment, service
from test_postgres import PG_PORT, NeedsPostgres, pg_bin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CTL_RBAC = os.path.join(ROOT, "deploy", "controller.yaml")
LEASE_MS = 3000
READY_TIMEOUT = 45
SANITIZER_RE = r"(Sanitizer|runtime error:)"
OWNED = ("deployments", "statefulsets", "services", "configmaps", "jobs", "sandboxroutes", "sandboxoverrides",
         "pods")


def pg_image(tmp, name_arg_default="shared"):
    """postgres:16 -> a fresh data directory per pod, then postgres (as the
    postgres user) listening on the pod's addresses; the container's args
    are extra postgres flags (-c cluster_name=...)."""
    def make(c, p):
        bindir = pg_bin()
        data = os.path.join(tmp, "pg-" + p["metadata"]["uid"])
        extra = " ".join("'%s'" % a for a in c.get("args") or ["-c", "cluster_name=" + name_arg_default])
        script = ("set -e; rm -rf {d}; mkdir -p {d}; chown postgres {d}; chmod 700 {d}; "
                  "runuser -u postgres -- {b}/initdb -D {d} --auth=trust -U postgres --no-sync >/dev/null; "
                  "printf 'host all all 0.0.0.0/0 trust\\nhost all all ::/0 trust\\n' >> {d}/pg_hba.conf; "
                  "exec runuser -u postgres -- {b}/postgres -D {d} -c listen_addresses='*' -c port={port} "
                  "-c unix_socket_directories={d} -c fsync=off {extra}").format(
                      d=data, b=bindir, port=PG_PORT, extra=extra)
        return ["sh", "-c", script]
    return make


def images(tmp):
    return {"chain:v1": K.server_image(), "chain:v2": K.server_image(name="v2-{pod}"),
            "busybox:1": K.exec_image(),
            "psql:16": K.exec_image(), "postgres:16": pg_image(tmp)}


def sandbox(ns, name, forks, key=None, ttl=None, resources=None, hooks=None, overrides=None):
    spec = {"forks": forks}
    for k, v in (("key", key), ("ttl", ttl), ("resources", resources), ("hooks", hooks),
                 ("overrides", overrides)):
        if v is not None:
            spec[k] = v
    return {"apiVersion": "shunt.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def fork(deployment_name, image=None, container="app", replicas=None):
    f = {"deployment": deployment_name}
    if image:
        f["containers"] = [{"name": container, "image": image}]
    if replicas is not None:
        f["replicas"] = replicas
    return f


def job_spec(script, image="busybox:1"):
    return {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": image, "command": ["sh", "-c", script]}]}}}


def ready(sb):
    for c in (sb or {}).get("status", {}).get("conditions", []):
        if c["type"] == "Ready":
            return c
    return None


class SandboxBase(KubeBase):
    k8s_agent = True

    def setUp(self):
        super().setUp()
        self.images.update(images(self.node.tmp))
        self.ctls = {}
        self.ctl_token = "ctl-" + self.ns  # and -<ident>, one per controller
        self.req_mark = self.api.request_count()
        self.start_controller("a")

    def tearDown(self):
        try:
            if self._outcome_failed():
                for ident in self.ctls:
                    print("\n[shunt-controller %s log tail]\n%s" % (ident, self.ctl_log(ident)[-4000:]))
        finally:
            super().tearDown()

    # ---- the controller ---------------------------------------------------------
    def start_controller(self, ident, rules=None):
        """shunt-controller ident with its own token, limited to rules
        (default: deploy/controller.yaml's)."""
        token = "%s-%s" % (self.ctl_token, ident)
        if rules is None:
            rules = F.rbac_rules_from_manifest(CTL_RBAC, names=["shunt-controller", "shunt-controller-lease"])
        self.api.set_rbac(token, rules)
        self.addCleanup(self.api.set_rbac, token, None)
        tok = os.path.join(self.node.tmp, "ctl-token-%s-%s" % (self.ns, ident))
        with open(tok, "w") as f:
            f.write(token)
        log = open(os.path.join(self.node.tmp, "ctl-%s-%s.log" % (self.ns, ident)), "ab")
        p = self.node.pod_spawn("node", [os.path.join(self.node.build, "shunt-controller"),
                                         "--k8s-api", self.api.url, "--k8s-token-file", tok,
                                         "--namespace", self.ns, "--lease-namespace", "shunt-system",
                                         "--lease-name", "ctl-" + self.ns, "--id", ident,
                                         "--lease-duration", "%ds" % (LEASE_MS // 1000), "--resync", "5s", "-v"],
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.ctls[ident] = p
        self.addCleanup(self.stop_controller, ident)
        return p

    def stop_controller(self, ident, sig=signal.SIGTERM):
        p = self.ctls.get(ident)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            self.fail("shunt-controller %s did not stop within 10 s of SIGTERM" % ident)
        if sig == signal.SIGTERM:
            # A sanitizer build reports here (leaks at exit, UB at once).
            log = self.ctl_log(ident)
            self.assertEqual(p.returncode, 0, "shunt-controller %s exited %d:\n%s" % (ident, p.returncode,
                                                                                    log[-3000:]))
            self.assertNotRegex(log, SANITIZER_RE, "shunt-controller %s:\n%s" % (ident, log[-3000:]))

    def ctl_log(self, ident):
        with open(os.path.join(self.node.tmp, "ctl-%s-%s.log" % (self.ns, ident)), errors="replace") as f:
            return f.read()

    def ctl_requests(self):
        return [r for r in self.api.requests(self.req_mark) if r["auth"].startswith("Bearer %s-" % self.ctl_token)]

    # ---- objects ------------------------------------------------------------------
    def app(self, name, image, port=N.HTTP_PORT, args=None, replicas=None, svc_port=80, target="http"):
        """A Deployment and its ClusterIP Service; returns the Service's IPs."""
        ips = self.kube.alloc_cluster_ip()
        svc = service(self.ns, name, {"app": name}, ips, target=target)
        svc["spec"]["ports"][0]["port"] = svc_port
        self.api.create(svc)
        dep = deployment(self.ns, name, {"app": name}, image, replicas, port=port)
        if args:
            dep["spec"]["template"]["spec"]["containers"][0]["args"] = list(args)
        self.api.create(dep)
        return ips

    def chain(self):
        back = self.app("back", "chain:v1")
        middle = self.app("middle", "chain:v1", args=["--next", N.hostport(back[0], 80)])
        front = self.app("front", "chain:v1", args=["--next", N.hostport(middle[0], 80)])
        for d in ("back", "middle", "front"):
            self.kube.wait_deployment(self.ns, d, timeout=30)
        self.front = front[0]
        return front, middle, back

    def hops(self, key=None):
        hdrs = [("baggage", "sd-routing-key=" + key)] if key else []
        r = self.get(self.front, "/chain", hdrs, port=80, timeout=10)
        self.assertEqual(r.status, 200, r)
        return r.json()["hops"]

    def wait_ready(self, name, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        sb = None
        while time.monotonic() < deadline:
            sb = self.api.get("sandboxes", self.ns, name)
            c = ready(sb)
            if c and c["status"] == "True" and sb["status"].get("observedGeneration") == sb["metadata"]["generation"]:
                return sb
            time.sleep(0.1)
        self.fail("sandbox %s not Ready in %ss: %s" % (name, timeout, json.dumps((sb or {}).get("status"))))

    def wait_reason(self, name, reason, timeout=20):
        deadline = time.monotonic() + timeout
        sb = None
        while time.monotonic() < deadline:
            sb = self.api.get("sandboxes", self.ns, name)
            c = ready(sb)
            if c and c["reason"] == reason and sb["status"].get("observedGeneration") == sb["metadata"]["generation"]:
                return sb
            time.sleep(0.1)
        self.fail("sandbox %s never reported %s in %ss: %s" % (name, reason, timeout,
                                                             json.dumps((sb or {}).get("status"))))

    def owned(self, name):
        """Everything labelled as the sandbox's (pods included: the forks'
        and resources' pods carry the label too)."""
        out = []
        for res in OWNED:
            out += ["%s/%s" % (res, o["metadata"]["name"])
                    for o in self.api.list(res, self.ns, selector={"shunt.dev/sandbox": name})]
        return sorted(out)

    def wait_gone(self, name, timeout=30):
        """Until the Sandbox and everything it made are gone (and their
        processes: the stand-in tears a pod's sandbox down when the Pod
        object goes); returns the seconds it took."""
        t0 = time.monotonic()
        left = None
        while time.monotonic() - t0 < timeout:
            left = self.owned(name)
            if self.api.get("sandboxes", self.ns, name) is None and not left:
                return time.monotonic() - t0
            time.sleep(0.1)
        self.fail("sandbox %s: still there after %ss: %s, %r" % (
            name, timeout, left, (self.api.get("sandboxes", self.ns, name) or {}).get("status")))

    def wait_hops(self, pred, key, timeout=20, what=""):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            try:
                got = self.hops(key)
            except AssertionError as e:
                got = str(e)
            if not isinstance(got, str) and pred(got):
                return got
            time.sleep(0.1)
        self.fail("%s: the chain with key %s never did: %r" % (what, key, got))

    def assert_no_forbidden(self):
        bad = [(r["method"], r["path"], r["status"]) for r in self.ctl_requests() if r["status"] in (401, 403)]
        self.assertEqual(bad, [], "the controller asked for what its RBAC does not grant")


class Sandboxes(SandboxBase):
    def test_fork_in_the_middle_of_a_chain(self):
        self.chain()
        self.assertEqual([h.split("-")[0] for h in self.hops()], ["front", "middle", "back"])
        t0 = time.monotonic()
        self.api.create(sandbox(self.ns, "pr1", [fork("middle", "chain:v2")], key="pr-1"))
        got = self.wait_hops(lambda h: h[1].startswith("v2-pr1-middle-"), "pr-1", READY_TIMEOUT,
                             "the fork answering keyed requests")
        print("\nsandbox: create -> first keyed request answered by the fork: %.2f s" % (time.monotonic() - t0))
        self.assertTrue(got[0].startswith("front-") and got[2].startswith("back-"), got)
        sb = self.wait_ready("pr1")
        st = sb["status"]
        self.assertEqual((st["key"], st["forksReady"]), ("pr-1", "1/1"), st)
        self.assertEqual([(f["deployment"], f["name"], f["ready"]) for f in st["forks"]],
                         [("middle", "pr1-middle", True)])
        self.assertIn("shunt.dev/cleanup", sb["metadata"]["finalizers"])
        # Keyed requests through the fork, the rest of the chain baseline;
        # unkeyed (and other keys) never reach the fork.
        for _ in range(10):
            h = self.hops("pr-1")
            self.assertTrue(h[0].startswith("front-") and h[1].startswith("v2-pr1-middle-")
                            and h[2].startswith("back-"), h)
            for other in (None, "pr-2"):
                h = self.hops(other)
                self.assertEqual([x.split("-")[0] for x in h], ["front", "middle", "back"], (other, h))
        # Ready and nothing changing: the controller writes nothing (no
        # status that differs at every pass, no object rewritten).
        n0 = len(self.ctl_requests())
        time.sleep(2)
        writes = [(r["method"], r["path"]) for r in self.ctl_requests()[n0:]
                  if r["method"] != "GET" and r["resource"] != "leases"]
        self.assertEqual(writes, [], "writes while idle")
        # The fork's pods: none of the baseline Service's labels, ours instead.
        fork_dep = self.api.get("deployments", self.ns, "pr1-middle")
        labels = fork_dep["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(labels, {"shunt.dev/sandbox": "pr1", "shunt.dev/fork": "middle"})
        self.assertEqual(fork_dep["metadata"]["ownerReferences"][0]["uid"], sb["metadata"]["uid"])
        fork_ips = {p["status"]["podIP"] for p in self.kube.pods(self.ns, {"shunt.dev/fork": "middle"})}
        slice_ips = {e["addresses"][0] for e in self.api.get("endpointslices", self.ns, "middle-v4")["endpoints"]}
        self.assertTrue(fork_ips and not fork_ips & slice_ips, (fork_ips, slice_ips))
        sbr = self.api.get("sandboxroutes", self.ns, "pr1-middle-80")
        self.assertEqual((sbr["spec"]["keys"], sbr["spec"]["service"], sbr["spec"]["sandbox"]["port"]),
                         (["pr-1"], {"name": "middle", "ports": [80]}, N.HTTP_PORT))

        # Deleted: nothing of it is left, and keyed requests stay baseline.
        self.api.delete("sandboxes", self.ns, "pr1")
        took = self.wait_gone("pr1")
        print("sandbox: delete -> nothing left: %.2f s" % took)
        self.assertEqual([h.split("-")[0] for h in self.hops("pr-1")], ["front", "middle", "back"])
        self.assert_no_forbidden()

    def test_two_sandboxes_with_one_key_are_one_lane(self):
        self.chain()
        self.api.create(sandbox(self.ns, "fa", [fork("middle", "chain:v2")], key="feat-x"))
        self.api.create(sandbox(self.ns, "fb", [fork("back", "chain:v2")], key="feat-x"))
        self.wait_ready("fa")
        self.wait_ready("fb")
        h = self.wait_hops(lambda h: h[1].startswith("v2-fa-middle-") and h[2].startswith("v2-fb-back-"),
                           "feat-x", 20, "both forks")
        self.assertTrue(h[0].startswith("front-"), h)
        self.assertEqual([x.split("-")[0] for x in self.hops()], ["front", "middle", "back"])
        self.assert_no_forbidden()

    def test_ttl_expiry_removes_everything_and_runs_the_delete_hook(self):
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")
        marker = os.path.join(self.node.tmp, "delete-hook-" + self.ns)
        self.api.create(sandbox(
            self.ns, "short", [fork("web", "chain:v2")], ttl="10s",
            resources=[{"name": "cfg", "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {},
                                                     "data": {"a": "1"}}}],
            hooks={"delete": job_spec("echo ran > %s" % marker)}))
        sb = self.wait_ready("short")
        self.assertRegex(sb["status"]["key"], r"^sbx-[0-9a-f]{12}$", "a key made when none was given")
        self.assertEqual(sorted(o.split("/")[0] for o in self.owned("short") if not o.startswith("pods/")),
                         ["configmaps", "deployments", "sandboxroutes"])
        exp_unix = calendar.timegm(time.strptime(sb["status"]["expiresAt"], "%Y-%m-%dT%H:%M:%SZ"))
        created = calendar.timegm(time.strptime(sb["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        self.assertEqual(exp_unix - created, 10)
        self.wait_gone("short", timeout=40)
        gone_at = time.time()
        print("\nsandbox: ttl expiry -> nothing left: %.2f s" % (gone_at - exp_unix))
        self.assertTrue(os.path.exists(marker), "the delete hook did not run")
        self.assertFalse(self.api.list("jobs", self.ns), "the hook's Job went with the Sandbox")
        self.assertIn("expired", self.ctl_log("a"))
        self.assert_no_forbidden()
        # Idle again: no pass after pass for an expiry that has been dealt
        # with (once a busy loop of full passes with --namespace).
        n0 = len(self.ctl_requests())
        time.sleep(2.5)
        lists = [r for r in self.ctl_requests()[n0:] if r["resource"] == "sandboxes" and r["verb"] == "list"]
        self.assertLessEqual(len(lists), 2, "%d Sandbox lists in 2.5 s while idle" % len(lists))

    def test_the_fork_follows_its_baseline(self):
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")
        self.api.create(sandbox(self.ns, "fol", [{"deployment": "web", "containers": [
            {"name": "app", "image": "chain:v2", "env": [{"name": "MODE", "value": "sandbox"}]}]}]))
        self.wait_ready("fol")
        # The baseline's template changes (a new variable, a new label):
        # the fork gets it, with the sandbox's changes on top.
        base = self.api.get("deployments", self.ns, "web")
        tmpl = base["spec"]["template"]
        tmpl["metadata"]["labels"]["version"] = "2"
        tmpl["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "baseline"},
                                                {"name": "NEW", "value": "1"}]
        self.api.update(base)
        deadline = time.monotonic() + 15
        ctr = labels = None
        while time.monotonic() < deadline:
            d = self.api.get("deployments", self.ns, "fol-web")
            ctr = d["spec"]["template"]["spec"]["containers"][0]
            labels = d["spec"]["template"]["metadata"]["labels"]
            if labels.get("version") == "2":
                break
            time.sleep(0.1)
        self.assertEqual(labels, {"version": "2", "shunt.dev/sandbox": "fol", "shunt.dev/fork": "web"})
        self.assertEqual((ctr["image"], ctr["env"]), ("chain:v2", [{"name": "MODE", "value": "sandbox"},
                                                                   {"name": "NEW", "value": "1"}]))
        self.wait_ready("fol")
        self.assert_no_forbidden()

    def test_hooks_run_once_and_never_overlap(self):
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")
        log = os.path.join(self.node.tmp, "hooks-" + self.ns)
        self.api.create(sandbox(self.ns, "once", [fork("web")], hooks={
            "create": job_spec("echo create >> %s" % log), "delete": job_spec("echo delete >> %s" % log)}))
        self.wait_ready("once")
        # Its Job tidied away (ttlSecondsAfterFinished, or by hand): it is
        # not run again (that CREATE DATABASE would fail).
        self.api.delete("jobs", self.ns, "once-hook-create")
        time.sleep(2)
        self.assertIsNone(self.api.get("jobs", self.ns, "once-hook-create"))
        self.assertEqual(ready(self.api.get("sandboxes", self.ns, "once"))["reason"], "Ready")
        self.api.delete("sandboxes", self.ns, "once")
        self.wait_gone("once")
        with open(log) as f:
            self.assertEqual(f.read().split(), ["create", "delete"])
        # A Sandbox deleted while its create hook still runs: the create
        # hook is stopped (its pods gone) before the delete hook starts.
        self.api.create(sandbox(self.ns, "slow", [fork("web")], hooks={
            "create": job_spec("sleep 30; echo late-create >> %s" % log),
            "delete": job_spec("echo slow-delete >> %s" % log)}))
        self.wait_reason("slow", "HookPending")
        self.kube.wait(lambda: any(K.is_true(p, "Ready") or p["status"].get("phase") == "Running"
                                   for p in self.api.list("pods", self.ns, selector={"shunt.dev/hook": "create"})),
                       20, "the create hook's pod running")
        self.api.delete("sandboxes", self.ns, "slow")
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline and self.api.get("sandboxes", self.ns, "slow") is not None:
            jobs = {j["metadata"]["name"] for j in self.api.list("jobs", self.ns)}
            pods = {p["metadata"]["labels"].get("shunt.dev/hook") for p in self.api.list("pods", self.ns)}
            seen.append((jobs, pods))
            self.assertFalse("slow-hook-delete" in jobs and "create" in pods,
                             "the delete hook started while the create hook's pod lived")
            time.sleep(0.05)
        self.wait_gone("slow")
        with open(log) as f:
            self.assertEqual(f.read().split(), ["create", "delete", "slow-delete"])
        self.assert_no_forbidden()

    def test_status_follows_the_spec_and_stays_quiet(self):
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")
        self.api.create(sandbox(self.ns, "st", [fork("web")], ttl="1h", hooks={"delete": job_spec("true")}))
        sb = self.wait_ready("st")
        self.assertIn("expiresAt", sb["status"])
        self.assertEqual(sb["status"]["hooks"], {"delete": "Pending"})
        del sb["spec"]["ttl"], sb["spec"]["hooks"]
        self.api.update(sb)
        st = self.wait_ready("st")["status"]
        self.assertNotIn("expiresAt", st, "a status key the Sandbox no longer has stays (merge patch)")
        self.assertNotIn("hooks", st)
        n0 = len(self.ctl_requests())
        for i in range(3):  # unrelated changes in the namespace
            svc = self.api.get("services", self.ns, "web")
            svc["metadata"].setdefault("labels", {})["touched"] = str(i)
            self.api.update(svc)
            time.sleep(0.5)
        time.sleep(1)
        writes = [(r["method"], r["path"]) for r in self.ctl_requests()[n0:]
                  if r["method"] != "GET" and r["resource"] != "leases"]
        self.assertEqual(writes, [])

    def test_a_failing_list_is_retried_with_a_pause(self):
        # A controller that may not list Sandboxes (RBAC without it; the
        # same with the CRD missing, or the server failing).
        rules = [r for r in F.rbac_rules_from_manifest(CTL_RBAC, names=["shunt-controller",
                                                                     "shunt-controller-lease"])
                 if "sandboxes" not in r["resources"]]
        self.api.set_rbac(self.ctl_token + "-a", rules)
        time.sleep(1)
        n0 = len(self.ctl_requests())
        time.sleep(4)
        lists = [r for r in self.ctl_requests()[n0:] if r["resource"] == "sandboxes" and r["verb"] == "list"]
        self.assertTrue(all(r["status"] == 403 for r in lists), lists)
        self.assertLessEqual(len(lists), 4, "%d Sandbox lists in 4 s" % len(lists))
        self.assertGreaterEqual(len(lists), 1, "never tried again")

    def test_a_long_pass_keeps_the_lease(self):
        # Passes longer than the lease (a slow API server): the leader
        # renews between Sandboxes, the standby never takes over, nobody
        # writes while another leads.
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")
        for i in range(4):
            self.api.create(sandbox(self.ns, "lp%d" % i, [fork("web")]))
        for i in range(4):
            self.wait_ready("lp%d" % i)
        self.start_controller("b")
        self.api.set_latency(0.15)
        self.addCleanup(self.api.set_latency, 0)
        t0 = time.monotonic()
        # The baseline changes: every fork is to be rewritten, in one slow pass.
        base = self.api.get("deployments", self.ns, "web")
        base["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "V", "value": "2"}]
        self.api.update(base)

        def rewritten():
            return all(self.api.get("deployments", self.ns, "lp%d-web" % i)["spec"]["template"]["spec"]
                       ["containers"][0].get("env") == [{"name": "V", "value": "2"}] for i in range(4))
        self.kube.wait(rewritten, 40, "every fork rewritten by the slow pass")
        took = time.monotonic() - t0
        self.api.set_latency(0)
        self.assertGreater(took, LEASE_MS / 1000, "the pass was not longer than the lease: no test")
        lease = self.api.get("leases", "shunt-system", "ctl-" + self.ns)
        self.assertEqual((lease["spec"]["holderIdentity"], lease["spec"].get("leaseTransitions", 0)), ("a", 0))
        writers = {r["auth"] for r in self.ctl_requests() if r["method"] != "GET" and r["resource"] != "leases"
                   and r["t"] >= t0}
        self.assertEqual(writers, {"Bearer %s-a" % self.ctl_token}, "b wrote")
        self.assertIn("leading as a", self.ctl_log("a"))
        self.assertNotIn("leading as b", self.ctl_log("b"))

    def test_bad_sandboxes_are_refused_or_reported_never_half_applied(self):
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")
        # What the CRD's schema refuses never reaches the controller.
        with self.assertRaises(F.APIError) as cm:
            self.api.create(sandbox(self.ns, "bad0", [fork("web", replicas=11)]))
        self.assertEqual(cm.exception.code, 422)
        # What only the controller can know: reported, nothing made.
        self.api.create(sandbox(self.ns, "bad1", [{"deployment": "web", "containers": [
            {"name": "nope", "image": "chain:v2"}]}], resources=[
                {"name": "cfg", "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}}]))
        sb = self.wait_reason("bad1", "InvalidSpec")
        self.assertIn("no container nope", ready(sb)["message"])
        self.api.create(sandbox(self.ns, "bad2", [fork("nosuch")]))
        sb = self.wait_reason("bad2", "BaselineNotFound")
        self.assertIn("nosuch", ready(sb)["message"])
        # A kind outside the allowed set (the CRD's CEL rule, which this
        # fake server does not run): the controller refuses it as well.
        self.api.create(sandbox(self.ns, "bad3", [fork("web")], resources=[
            {"name": "s", "template": {"apiVersion": "v1", "kind": "Secret", "metadata": {}}}]))
        self.wait_reason("bad3", "InvalidSpec")
        # A name taken by someone else's object: reported, never taken over.
        foreign = self.api.create({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "bad4-cfg", "namespace": self.ns},
                                   "data": {"owner": "someone else"}})
        self.api.create(sandbox(self.ns, "bad4", [fork("web")], resources=[
            {"name": "cfg", "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {},
                                         "data": {"owner": "sandbox"}}}]))
        sb = self.wait_reason("bad4", "ResourceFailed")
        self.assertIn("does not belong", ready(sb)["message"])
        self.assertEqual(self.api.get("configmaps", self.ns, "bad4-cfg")["data"], foreign["data"])
        # ... also when an override points at it: no override to someone
        # else's Service, and no fork (it would reach the shared database).
        self.api.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad5-db", "namespace": self.ns},
                         "spec": {"selector": {"app": "someone"}, "ports": [{"port": 5432}]}})
        self.api.create(sandbox(self.ns, "bad5", [fork("web")], resources=[
            {"name": "db", "template": {"apiVersion": "v1", "kind": "Service", "metadata": {},
                                        "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}}],
            overrides=[{"destination": {"service": "web", "port": 80}, "to": {"resource": "db", "port": 5432}}]))
        self.wait_reason("bad5", "ResourceFailed")
        time.sleep(1)
        self.assertEqual(self.api.list("sandboxoverrides", self.ns), [])
        self.assertIsNone(self.api.get("deployments", self.ns, "bad5-web"))
        time.sleep(1)
        for name in ("bad1", "bad2", "bad3"):
            self.assertEqual(self.owned(name), [], "%s: half-applied" % name)
        # Fixed: it goes on.
        sb = self.api.get("sandboxes", self.ns, "bad1")
        sb["spec"]["forks"][0]["containers"][0]["name"] = "app"
        self.api.update(sb)
        self.wait_ready("bad1")
        self.assert_no_forbidden()

    def test_leader_killed_the_standby_takes_over(self):
        self.start_controller("b")
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")
        deadline = time.monotonic() + 10
        holder = None
        while time.monotonic() < deadline:
            lease = self.api.get("leases", "shunt-system", "ctl-" + self.ns)
            holder = lease and lease["spec"].get("holderIdentity")
            if holder in ("a", "b"):
                break
            time.sleep(0.1)
        self.assertIn(holder, ("a", "b"))
        other = "b" if holder == "a" else "a"
        self.stop_controller(holder, signal.SIGKILL)
        t0 = time.monotonic()
        self.api.create(sandbox(self.ns, "ha", [fork("web", "chain:v2", replicas=2)], key="ha"))
        self.wait_ready("ha", timeout=READY_TIMEOUT)
        took = time.monotonic() - t0
        print("\nsandbox: leader killed -> standby made the sandbox Ready in %.2f s (lease %d ms)"
              % (took, LEASE_MS))
        lease = self.api.get("leases", "shunt-system", "ctl-" + self.ns)
        self.assertEqual(lease["spec"]["holderIdentity"], other)
        self.assertGreaterEqual(lease["spec"]["leaseTransitions"], 1)
        self.assertIn("leading as %s" % other, self.ctl_log(other))
        # One fork, two pods: no duplicates from two leaders.
        self.assertEqual([d["metadata"]["name"] for d in self.api.list("deployments", self.ns,
                                                                       selector={"shunt.dev/sandbox": "ha"})],
                         ["ha-web"])
        self.assertEqual(len(self.kube.pods(self.ns, {"shunt.dev/fork": "web"})), 2)
        self.assert_no_forbidden()

    def test_kubectl_shunt_create_list_delete(self):
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")
        tok = os.path.join(self.node.tmp, "k8s-token")
        base = [os.path.join(self.node.build, "kubectl-shunt"), "--k8s-api", self.api.url,
                "--k8s-token-file", tok, "-n", self.ns]

        def run(*args, timeout=60):
            rc, out, err = self.node.pod_run("node", base + list(args), timeout=timeout)
            self.assertNotRegex(err, SANITIZER_RE, err)
            return rc, out, err
        rc, out, err = run("sandbox", "create", "ci-1", "--fork", "web", "--image", "app=chain:v2",
                           "--env", "app:MODE=ci", "--ttl", "1h", "--key", "ci-1", "--wait", "40s", "-q")
        self.assertEqual((rc, out.strip()), (0, "ci-1"), err)
        dep = self.api.get("deployments", self.ns, "ci-1-web")
        ctr = dep["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual((ctr["image"], ctr["env"][-1]), ("chain:v2", {"name": "MODE", "value": "ci"}))
        rc, out, err = run("sandbox", "create", "ci-1", "--fork", "web")
        self.assertEqual(rc, 1)
        self.assertIn("exists already", err)
        rc, out, err = run("sandbox", "list")
        self.assertEqual(rc, 0, err)
        row = [l.split() for l in out.splitlines() if l.startswith("ci-1 ")]
        self.assertEqual(row and row[0][:5], ["ci-1", "ci-1", "True", "Ready", "1/1"], out)
        # Without --key the key is the one the controller makes: printed at once.
        rc, out, err = run("sandbox", "create", "ci-3", "--fork", "web", "-q")
        self.assertEqual(rc, 0, err)
        made = self.wait_ready("ci-3")["status"]["key"]
        self.assertEqual(out.strip(), made)
        self.assertRegex(made, r"^sbx-[0-9a-f]{12}$")
        rc, out, err = run("sandbox", "create", "ci-2", "--fork", "web", "--key", "a,b")
        self.assertNotEqual(rc, 0)
        self.assertIn("spec.key", err)
        rc, out, err = run("sandbox", "delete", "ci-1", "--wait", "30s")
        self.assertEqual(rc, 0, err)
        self.assertIn("is gone", out)
        self.assertEqual(self.owned("ci-1"), [])
        rc, out, err = run("sandbox", "delete", "ci-1")
        self.assertEqual(rc, 1)
        self.assertIn("not found", err)

    def test_rbac_is_exactly_what_the_controller_uses(self):
        """deploy/controller.yaml grants exactly the verbs shunt-controller
        sends: a whole lifecycle (every resource kind, hooks, an override,
        a change of everything, the ttl) uses each grant and needs nothing
        else."""
        self.app("web", "chain:v1")
        self.kube.wait_deployment(self.ns, "web")

        def workload(kind, port=N.HTTP_PORT, image="chain:v1"):
            t = {"apiVersion": "apps/v1", "kind": kind, "metadata": {},
                 "spec": {"selector": {"matchLabels": {"r": kind.lower()}},
                          "template": {"metadata": {"labels": {"r": kind.lower()}},
                                       "spec": {"containers": [{"name": "c", "image": image,
                                                                "ports": [{"containerPort": port}]}]}}}}
            if kind == "StatefulSet":
                t["spec"]["serviceName"] = "svc"
            return t

        def resources(gen):
            return [{"name": "dep", "template": workload("Deployment", image="chain:v%d" % gen)},
                    {"name": "sts", "template": workload("StatefulSet", image="chain:v%d" % gen)},
                    {"name": "svc", "template": {"apiVersion": "v1", "kind": "Service", "metadata": {},
                                                 "spec": {"selector": {"r": "deployment"},
                                                          "ports": [{"port": 80 + gen, "targetPort": N.HTTP_PORT}]}}},
                    {"name": "cfg", "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {},
                                                 "data": {"gen": str(gen)}}},
                    {"name": "job", "template": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {},
                                                 "spec": job_spec("true")}}]
        self.api.create(sandbox(self.ns, "all", [fork("web", "chain:v2")], key="k1", ttl="30s",
                                resources=resources(1),
                                hooks={"create": job_spec("true"), "delete": job_spec("true")},
                                overrides=[{"destination": {"service": "web", "port": 80},
                                            "to": {"resource": "svc", "port": 81}}]))
        self.wait_ready("all", timeout=60)
        # Everything changes: the key (routes), the fork, each resource, the override.
        sb = self.api.get("sandboxes", self.ns, "all")
        sb["spec"]["key"] = "k2"
        sb["spec"]["forks"][0]["containers"][0]["image"] = "chain:v1"
        sb["spec"]["resources"] = resources(2)
        sb["spec"]["overrides"][0]["to"]["port"] = 82
        self.api.update(sb)
        self.wait_ready("all", timeout=60)
        self.assertEqual(self.api.get("configmaps", self.ns, "all-cfg")["data"], {"gen": "2"})
        self.assertEqual(self.api.get("sandboxroutes", self.ns, "all-web-80")["spec"]["keys"], ["k2"])
        # Resources removed from the spec go.
        sb = self.api.get("sandboxes", self.ns, "all")
        del sb["spec"]["resources"], sb["spec"]["overrides"]
        self.api.update(sb)
        self.wait_ready("all", timeout=30)
        for res, name in (("statefulsets", "all-sts"), ("configmaps", "all-cfg"), ("jobs", "all-job"),
                          ("deployments", "all-dep"), ("services", "all-svc"), ("sandboxoverrides", "all-override-0")):
            self.assertIsNone(self.api.get(res, self.ns, name), "%s %s stayed" % (res, name))
        # ... and the ttl ends it.
        self.wait_gone("all", timeout=60)
        self.assert_no_forbidden()

        used = {(r["resource"] + ("/" + r["subresource"] if r["subresource"] else ""), r["verb"])
                for r in self.ctl_requests()}
        granted = set()
        for r in F.rbac_rules_from_manifest(CTL_RBAC, names=["shunt-controller", "shunt-controller-lease"]):
            for res in r["resources"]:
                for v in r["verbs"]:
                    granted.add((res, v))
        # Checked by the API server (and the fake) when an owner reference
        # sets blockOwnerDeletion, never sent as a request.
        implicit = {("sandboxes/finalizers", "update")}
        self.assertEqual(sorted(used - granted), [], "used without a grant")
        self.assertEqual(sorted(granted - used - implicit), [], "granted and never used")


class SandboxDatabases(NeedsPostgres, SandboxBase):
    """A temporary PostgreSQL per sandbox, and a database on the shared
    server made and dropped by hooks (Debian's PostgreSQL)."""

    def setUp(self):
        super().setUp()
        os.chmod(self.node.tmp, 0o711)  # the postgres user reaches its data dirs below

    def shared_db(self):
        ips = self.app("postgres", "postgres:16", port=PG_PORT, svc_port=PG_PORT, target=PG_PORT,
                       args=["-c", "cluster_name=shared"])
        self.kube.wait_deployment(self.ns, "postgres", timeout=60)
        return ips[0]

    def psql_in_pod(self, pod, sql, host, db="postgres", timeout=20):
        """psql run in the pod's netns and its container's cgroup (so the
        pod's SandboxOverrides apply to it, as to the app)."""
        sb = self.kube.sandbox(self.ns, pod["metadata"]["name"])
        cg = os.path.join(sb["cgroup"], pod["spec"]["containers"][0]["name"], "cgroup.procs")
        argv = ["nsenter", "--net=" + sb["netns"], "sh", "-c",
                'echo $$ > %s && exec psql -h %s -p %d -U postgres -d %s -XAtq -v ON_ERROR_STOP=1 -c "%s"'
                % (cg, host, PG_PORT, db, sql)]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout.strip(), p.stderr.strip()

    def test_temporary_postgres_for_the_fork_only(self):
        shared = self.shared_db()
        self.app("orders", "chain:v1")
        self.kube.wait_deployment(self.ns, "orders")
        db_tmpl = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db"},
                   "spec": {"selector": {"matchLabels": {"app": "tmpdb"}},
                            "template": {"metadata": {"labels": {"app": "tmpdb"}},
                                         "spec": {"containers": [{"name": "postgres", "image": "postgres:16",
                                                                  "args": ["-c", "cluster_name=temp"],
                                                                  "ports": [{"containerPort": PG_PORT}]}]}}}}
        self.api.create(sandbox(self.ns, "pg1", [fork("orders", "chain:v2")], key="pg1",
                                resources=[{"name": "db", "template": db_tmpl}],
                                overrides=[{"destination": {"service": "postgres", "port": PG_PORT},
                                            "to": {"resource": "db", "port": PG_PORT}}]))
        sb = self.wait_ready("pg1", timeout=60)
        self.assertEqual(sb["status"]["resources"], [{"name": "db", "kind": "Deployment", "object": "pg1-db",
                                                      "ready": True}])
        (fork_pod,) = self.kube.pods(self.ns, {"shunt.dev/fork": "orders"})
        (base_pod,) = self.kube.pods(self.ns, {"app": "orders"})
        deadline = time.monotonic() + 15
        got = None
        while time.monotonic() < deadline:
            got = self.psql_in_pod(fork_pod, "show cluster_name", shared)
            if got[:2] == (0, "temp"):
                break
            time.sleep(0.2)
        self.assertEqual(got[:2], (0, "temp"), got)
        self.assertEqual(self.psql_in_pod(base_pod, "show cluster_name", shared)[:2], (0, "shared"))
        # The temporary database's pods: this sandbox's only.
        (db_pod,) = self.kube.pods(self.ns, {"shunt.dev/sandbox": "pg1", "shunt.dev/resource": "db"})
        self.assertEqual(db_pod["metadata"]["labels"]["app"], "tmpdb")
        self.api.delete("sandboxes", self.ns, "pg1")
        self.wait_gone("pg1", timeout=40)
        self.assertEqual(self.psql_in_pod(base_pod, "show cluster_name", shared)[:2], (0, "shared"))
        self.assert_no_forbidden()

    def test_hooks_make_and_drop_a_database_on_the_shared_server(self):
        shared = self.shared_db()
        self.app("orders", "chain:v1")
        self.kube.wait_deployment(self.ns, "orders")
        psql = "psql -h %s -p %d -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c" % (shared, PG_PORT)
        self.api.create(sandbox(self.ns, "hk", [fork("orders", "chain:v2")], key="hk", hooks={
            "create": job_spec("%s 'CREATE DATABASE sandbox_hk'" % psql, image="psql:16"),
            "delete": job_spec("%s 'DROP DATABASE IF EXISTS sandbox_hk WITH (FORCE)'" % psql, image="psql:16")}))
        sb = self.wait_ready("hk", timeout=60)
        self.assertEqual(sb["status"]["hooks"], {"create": "Succeeded", "delete": "Pending"})
        (base_pod,) = self.kube.pods(self.ns, {"app": "orders"})
        exists = "select count(*) from pg_database where datname = 'sandbox_hk'"
        self.assertEqual(self.psql_in_pod(base_pod, exists, shared)[:2], (0, "1"))
        self.api.delete("sandboxes", self.ns, "hk")
        self.wait_gone("hk", timeout=40)
        self.assertEqual(self.psql_in_pod(base_pod, exists, shared)[:2], (0, "0"), "the delete hook did not drop it")
        self.assert_no_forbidden()

    def test_create_hook_failure_holds_the_forks(self):
        self.app("orders", "chain:v1")
        self.kube.wait_deployment(self.ns, "orders")
        self.api.create(sandbox(self.ns, "hf", [fork("orders", "chain:v2")], hooks={"create": job_spec("exit 3")}))
        sb = self.wait_reason("hf", "HookFailed", timeout=40)
        self.assertEqual(sb["status"]["hooks"], {"create": "Failed"})
        self.assertIsNone(self.api.get("deployments", self.ns, "hf-orders"), "a fork before its create hook")
        self.assert_no_forbidden()
