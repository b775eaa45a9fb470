#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The Sandbox row of make bench-k8s: how long from creating a Sandbox to
the first keyed request answered by its fork, and from its ttl running out
to nothing left of it.

    /usr/bin/python3 tests/k8s/sandbox_bench.py --build build [--rounds 10] [--ttl-rounds 5] [--json FILE]

A throwaway netns node (tests/e2e/node.py) with shuntd following the fake
API server (tests/k8s/fakeapi.py, in this process), shunt-controller, and
the kube stand-in (tests/e2e/kube.py) that turns Deployments into pods. A
baseline "web" (servers.py) behind a ClusterIP Service. Each round creates
a Sandbox forking web with another image (answers named v2-<pod>) and a
key of its own, and times, polling every few milliseconds:

  create -> fork Deployment   the controller's part (watch, pass, POST);
  fork Deployment -> pod Ready the fork's own start-up here (the stand-in's
                               Deployment controller, kubelet, the app);
  pod Ready -> first keyed answer
                               the SandboxRoute (controller) and the routes
                               (shuntd) once the pod is there;
  create -> first keyed answer the whole, and the whole minus the start-up.

Then --ttl-rounds Sandboxes with ttl 3s: from status.expiresAt to the
Sandbox and everything labelled as its (Deployments, SandboxRoutes, Pods,
...) gone from the API (the fake API collects owned objects at once, as a
real one does within its garbage collector's delay).

The machine is shared: p50 and max of the rounds, one run.
"""

import argparse
import calendar
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import fakeapi as F  # noqa: E402
import kube as K  # noqa: E402
import node as N  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
NS = "bench"
OWNED = ("deployments", "sandboxroutes", "sandboxoverrides", "services", "configmaps", "jobs", "pods")


def now():
    return time.monotonic()


def wait(pred, timeout, what, poll=0.003):
    deadline = now() + timeout
    while now() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise TimeoutError("waited %ss for %s" % (timeout, what))


def stats(xs):
    xs = sorted(xs)
    return {"p50": round(statistics.median(xs), 3), "max": round(xs[-1], 3), "n": len(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--ttl-rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    reason = N.prereq_skip_reason()
    if reason:
        print("bench-k8s sandbox: cannot run: %s" % reason)
        return 2
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    node = N.Node(args.build, shuntd=False)
    api = kube = ctl = None
    res = {}
    try:
        node.start(with_shuntd=False)
        token = os.path.join(node.tmp, "k8s-token")
        with open(token, "w") as f:
            f.write("bench")
        api = F.FakeAPI(token="bench", netns=node.netns_path("node"), bookmark_interval=5.0)
        api.start()
        node.want_shuntd = True
        node.shuntd_args = ["--k8s-api", api.url, "--k8s-token-file", token, "--node-name", "e2e-node",
                            "--sandbox-cidr", str(N.NET4_CIDR), "--sandbox-cidr", str(N.NET6_CIDR)]
        node.shuntd_start(timeout=60)
        kube = K.KubeStandIn(api, node, {"web:v1": K.server_image(), "web:v2": K.server_image(name="v2-{pod}")},
                             namespace_filter={NS}).start()
        ips = kube.alloc_cluster_ip()
        api.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
                    "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "clusterIP": ips[0],
                             "clusterIPs": list(ips), "ipFamilies": ["IPv4", "IPv6"],
                             "ipFamilyPolicy": "PreferDualStack",
                             "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}})
        api.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
                    "spec": {"selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": {"containers": [{"name": "app", "image": "web:v1", "ports": [
                                              {"name": "http", "containerPort": N.HTTP_PORT}]}]}}}})
        kube.wait_deployment(NS, "web", timeout=30)
        log = open(os.path.join(node.tmp, "controller.log"), "ab")
        ctl = node.pod_spawn("node", [os.path.join(node.build, "shunt-controller"), "--k8s-api", api.url,
                                      "--k8s-token-file", token, "--namespace", NS, "--lease-namespace", NS,
                                      "--lease-duration", "3s"], stdout=log, stderr=subprocess.STDOUT)
        wait(lambda: (api.get("leases", NS, "shunt-controller") or {}).get("spec", {}).get("holderIdentity"),
             15, "the controller to lead")

        def answered_by(key):
            try:
                r = node.client.request(ips[0], 80, "GET", "/", headers=[("baggage", "sd-routing-key=" + key)],
                                        timeout=2)
                return r.pod if r.status == 200 else None
            except AssertionError:
                return None

        rows = {"controller": [], "startup": [], "route": [], "total": [], "total_minus_startup": []}
        for i in range(args.rounds):
            name, key = "sb%d" % i, "bench-%d" % i
            t0 = now()
            api.create({"apiVersion": "shunt.dev/v1alpha1", "kind": "Sandbox",
                        "metadata": {"name": name, "namespace": NS},
                        "spec": {"key": key, "forks": [{"deployment": "web", "containers": [
                            {"name": "app", "image": "web:v2"}]}]}})
            t_dep = wait(lambda: api.get("deployments", NS, name + "-web") and now(), 30, "the fork Deployment")

            def pod_ready():
                for p in api.list("pods", NS, selector={"shunt.dev/sandbox": name}):
                    if K.is_true(p, "Ready"):
                        return now()
                return None
            t_ready = wait(pod_ready, 60, "the fork's pod Ready")
            t_keyed = wait(lambda: (answered_by(key) or "").startswith("v2-" + name) and now(), 30,
                           "a keyed answer from the fork", poll=0.001)
            rows["controller"].append(t_dep - t0)
            rows["startup"].append(t_ready - t_dep)
            rows["route"].append(max(0.0, t_keyed - t_ready))
            rows["total"].append(t_keyed - t0)
            rows["total_minus_startup"].append(t_keyed - t0 - (t_ready - t_dep))
            api.delete("sandboxes", NS, name)
            wait(lambda: not any(api.list(r, NS, selector={"shunt.dev/sandbox": name}) for r in OWNED)
                 and api.get("sandboxes", NS, name) is None, 30, "round %d cleaned up" % i, poll=0.01)
        res["create"] = {k: stats(v) for k, v in rows.items()}

        gone = []
        for i in range(args.ttl_rounds):
            name = "ttl%d" % i
            api.create({"apiVersion": "shunt.dev/v1alpha1", "kind": "Sandbox",
                        "metadata": {"name": name, "namespace": NS},
                        "spec": {"ttl": "3s", "forks": [{"deployment": "web"}]}})
            sb = wait(lambda: (api.get("sandboxes", NS, name) or {}).get("status", {}).get("expiresAt") and
                      api.get("sandboxes", NS, name), 30, "expiresAt in status")
            exp = calendar.timegm(time.strptime(sb["status"]["expiresAt"], "%Y-%m-%dT%H:%M:%SZ"))
            wait(lambda: api.get("sandboxes", NS, name) is None and
                 not any(api.list(r, NS, selector={"shunt.dev/sandbox": name}) for r in OWNED), 30,
                 "expired sandbox %s gone" % name, poll=0.005)
            gone.append(time.time() - exp)
        res["ttl_expiry_to_nothing_left"] = stats(gone)
        res["rounds"] = args.rounds
    finally:
        if ctl is not None and ctl.poll() is None:
            ctl.send_signal(signal.SIGTERM)
            try:
                ctl.wait(10)
            except subprocess.TimeoutExpired:
                ctl.kill()
        if kube is not None:
            kube.close()
        node.close()
        if api is not None:
            api.close()
    c = res["create"]
    print("\nbench-k8s sandbox (%d rounds; p50 / max, seconds)" % args.rounds)
    print("  create -> fork Deployment (controller)          %6.3f / %6.3f" % (c["controller"]["p50"],
                                                                              c["controller"]["max"]))
    print("  fork Deployment -> pod Ready (fork start-up)    %6.3f / %6.3f" % (c["startup"]["p50"],
                                                                              c["startup"]["max"]))
    print("  pod Ready -> first keyed answer (routes)        %6.3f / %6.3f" % (c["route"]["p50"], c["route"]["max"]))
    print("  create -> first keyed answer                    %6.3f / %6.3f" % (c["total"]["p50"], c["total"]["max"]))
    print("  ... apart from the fork's start-up              %6.3f / %6.3f" % (c["total_minus_startup"]["p50"],
                                                                              c["total_minus_startup"]["max"]))
    t = res["ttl_expiry_to_nothing_left"]
    print("  ttl expiry -> nothing left (%d rounds)           %6.3f / %6.3f" % (t["n"], t["p50"], t["max"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
