# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""A stand-in for the Deployment/StatefulSet/Job/EndpointSlice controllers,
the kubelet and kube-proxy on the netns node, driven by the fake API server
(tests/k8s/fakeapi.py): an object a test (or shunt's Sandbox controller)
creates in the fake API becomes real processes in real pod network
namespaces, with an IP, labels and a kubelet-style cgroup.

    kube = KubeStandIn(api, node, images={"echo:v1": server_image(),
                                          "echo:v2": server_image(name="v2-{pod}"),
                                          "busybox:1": exec_image()},
                       namespace_filter={"shop"}).start()
    cip4, cip6 = kube.alloc_cluster_ip()       # for a Service's spec.clusterIPs
    api.create(service_obj); api.create(deployment_obj)
    kube.wait_deployment("shop", "web")        # status says rolled out (the Deployment)
    pod = kube.wait_pods("shop", {"app": "web"}, 2)[0]   # exactly 2, all Ready (API objects)
    kube.wait_ready("shop", name); kube.wait_job("shop", "migrate")  # Complete or Failed
    kube.pod_ip("shop", name)                  # ("10.211.0.160", "fd00:211::a0"), or pod["status"]["podIP"]
    kube.sandbox("shop", name)                 # {"uid", "key", "netns", "v4", "v6", "cgroup", "pids", "done"}
    node.pod_client(kube.sandbox(...)["key"])  # a client worker in that pod's netns (node pod "k<N>"), test cgroup
    N.run(kube.pod_argv("shop", name, argv))   # argv in the pod's netns and container cgroup (kubectl exec)
    kube.server_events(name, ("request",))     # what a server_image() server logged
    kube.wait(pred, timeout, what); kube.check()   # check(): no step failed, the loop lives
    kube.close()                               # idempotent; node.close() calls it too

One stand-in per node at a time. Pods it made in an earlier life (a stand-in
closed, another started on the same API) are foreign to the new one (see
below): give each test its own namespace.

One background thread reconciles everything, level-triggered: after every
change of the fake API (api.wait_for_change) and at least every `interval`
seconds (processes exit without telling the API). Nothing here is an
informer: each round lists every resource and acts on the difference, so a
lost update, a 409 or a crash of one object's step is repaired next round.
What it does goes to <node.tmp>/kube-standin.log (one line per action).

Controllers (simplified, no ReplicaSets and no ControllerRevisions)
--------------------------------------------------------------------
Deployment   keeps spec.replicas (default 1) Pods named
             <deploy>-<10 hex of the template's hash>-<5 random>, with the
             template's labels plus pod-template-hash, an ownerReference to
             the Deployment itself (controller, blockOwnerDeletion; there is
             no ReplicaSet in between), spec = template spec + nodeName. A
             template change replaces the Pods: RollingUpdate creates the
             new ones and deletes the old ones once the new ones are all
             Ready; Recreate deletes the old ones first. Status through the
             status subresource: observedGeneration, replicas,
             updatedReplicas, readyReplicas, availableReplicas,
             unavailableReplicas, conditions Available and Progressing.
StatefulSet  Pods <name>-0..N-1 (labels + controller-revision-hash,
             statefulset.kubernetes.io/pod-name, apps.kubernetes.io/pod-index;
             hostname/subdomain), OrderedReady (one at a time, each after
             the previous is Ready) unless podManagementPolicy Parallel; a
             template change deletes outdated Pods from the highest ordinal,
             one at a time. Status replicas, readyReplicas, currentReplicas,
             updatedReplicas, availableReplicas, revisions.
Job          Pods <job>-<5 random> (labels job-name, controller-uid and their
             batch.kubernetes.io/ forms) run to completion: completions
             (default 1), parallelism (default 1), backoffLimit (default 6;
             a failed Pod, or a restart under OnFailure, counts one; more
             than backoffLimit fails the Job and deletes its active Pods).
             Status active/ready/succeeded/failed, startTime,
             completionTime, conditions Complete (CompletionsReached) or
             Failed (BackoffLimitExceeded).
EndpointSlice for every Service with a selector: <svc>-v4 / <svc>-v6 (one
             per IP family of the Service; a second port mapping gets
             <svc>-v4-2...), labels kubernetes.io/service-name and
             endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io,
             ownerReference to the Service, an endpoint per Pod of the
             namespace matching the selector that has an IP of that family
             and is not finished (conditions ready/serving/terminating,
             targetRef, nodeName), ports resolved from targetPort (a number,
             or a name looked up in the Pod's containerPorts). Services
             without a selector are left alone (their slices are the test's).
ClusterIP    a Service (ClusterIP type) without spec.clusterIP gets addresses
             from the service pool (alloc_cluster_ip() hands one out too).

kubelet
-------
Every Pod bound to node_name (an unbound one is bound first) and not
finished gets a sandbox: netns <node id>-k<N> (registered as node pod
"k<N>", so node.pod_run/wait_listen/pod_client work on it), eth0 on the
node's bridge with a fresh IPv4 and IPv6 address from the pod pool
(default 10.211.0.160-219 / fd00:211::a0-db: clear of node.py's fixed pods,
test_groups/test_postgres/test_k8s' extra addresses and the ClusterIP pool
10.211.0.220-250), a default route via the node, and a cgroup
<node.cg>/kubepods/pod<uid>/<container> (the kubelet's cgroupfs layout
that shuntd's agent/k8s/cgroup.c recognizes: a SandboxOverride selecting
the Pod finds it by uid; the processes are inside the node's test cgroup,
so shuntd's cgroup hooks capture their connect()s like any pod's).

Containers: images maps an image to callable(container, pod) -> argv, or
-> {"argv": [...], "env": {...}, "cwd": DIR}. The process runs in the
pod's netns and the container's cgroup with the environment PATH, HOME,
HOSTNAME, POD_NAME, POD_NAMESPACE, POD_IP, POD_IPS, NODE_NAME plus the
container's env (literal values, and fieldRef metadata.name/namespace/uid,
status.podIP, spec.nodeName, metadata.labels['k']); stdout and stderr go to
<node.tmp>/kube/<ns>_<pod>_<container>.log. server_image() and
exec_image() below make the usual callables. initContainers run first, in
order. An image not in images (or a callable that raises) leaves the Pod
Pending (no sandbox, no IP yet) with the container waiting, reason
ErrImagePull, retried every round (a test may add the image later).

Pod status (status subresource, merge patch: no conflicts): phase, podIP,
podIPs, hostIP(s), startTime, conditions PodScheduled, Initialized,
ContainersReady, Ready, containerStatuses (state, lastState,
restartCount, ready, started). A container is ready while its process runs
and every TCP port of its readinessProbe (tcpSocket/httpGet port), else of
its containerPorts, accepted a connection from the node since it started;
with no port, at once. restartPolicy Always restarts an exiting process
(after 0.2 s, doubling up to 2 s), OnFailure a failing one; a Pod whose
containers all ended is Succeeded (all exit 0) or Failed, and its
sandbox is torn down (the Pod object keeps its IPs). A Pod deleted (by
anyone: the test, a controller, the fake API's owner-reference GC), or
given a deletionTimestamp, gets SIGTERM, then SIGKILL after
min(terminationGracePeriodSeconds, grace) seconds (cgroup.kill catches
forks), and its netns, veth and cgroup go; its IPs return to the pool.
Pods already carrying a podIP when first seen are someone else's (hand
made, like test_k8s' cluster()) and are left alone.

kube-proxy stand-in
-------------------
For every ClusterIP of a Service with a port of protocol TCP, a userspace
TCP forwarder in this process listens on ClusterIP:port inside the node
netns, and each connection it accepts goes to one ready endpoint of the
same family (round robin over the Service's EndpointSlices, whoever wrote
them; port picked by the Service port's name), dialed from the node netns
(so the endpoint sees the node's address, as with kube-proxy's masquerade).
The ClusterIPs live on an interface "kube-ipvs0" in the node netns (a
dummy device, or a veth pair with both ends there when the kernel has no
dummy module), the way kube-proxy's IPVS mode holds them, so shuntd (default
--service-iface kube-ipvs0) knows they are Services, not the node, and its
proxy may dial them for requests without a route. The node netns answers
ARP for them (arp_ignore 0 there) and, for IPv6, neighbour solicitations on
the bridge (proxy_ndp with a proxy entry per address, forwarding on the
bridge only, proxy_delay 0). Nothing outside the namespaces the test made
is touched. Neighbour caches: start() pins the node bridge's MAC (a bridge
otherwise takes its lowest port's, so adding a pod veth could move the MAC
behind 10.211.0.1 and the ClusterIPs), and a pod's eth0 MAC is derived from
its IPv4 address (02:4b:<4 bytes>), so an address given again keeps its MAC.
shuntd's cgroup connect hooks run in the client's connect(),
before any packet leaves the pod: a connection to a steered ClusterIP goes
to shuntd's proxy, which sends keyed requests to the sandbox and dials
the ClusterIP (this forwarder, hence the baseline) for the rest; a
connection to an unsteered one reaches the forwarder directly. Either way
the forwarder only sees unkeyed / baseline traffic.
"""

import copy
import datetime
import errno
import hashlib
import ipaddress
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

import node as N

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "k8s"))
from fakeapi import socket_in_netns  # noqa: E402


MANAGED_BY = "endpointslice-controller.k8s.io"
SVC_LABEL = "kubernetes.io/service-name"
MANAGED_LABEL = "endpointslice.kubernetes.io/managed-by"
RAND_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what k8s' name generator uses
RESOURCES = ("deployments", "statefulsets", "jobs", "pods", "services", "endpointslices")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_hash(template):
    return hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]


def rand5():
    return "".join(random.choice(RAND_ALPHABET) for _ in range(5))


def md(o):
    return o.setdefault("metadata", {})


def labels_match(selector, labels):
    """selector: a LabelSelector ({"matchLabels", "matchExpressions"}) or a
    plain map (a Service's spec.selector)."""
    labels = labels or {}
    if selector is None:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        ml = selector.get("matchLabels") or {}
        exprs = selector.get("matchExpressions") or []
    else:
        ml, exprs = selector, []
    if any(labels.get(k) != v for k, v in ml.items()):
        return False
    for e in exprs:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def controller_uid(o):
    for r in md(o).get("ownerReferences") or []:
        if r.get("controller"):
            return r.get("uid")
    return None


def owner_ref(o, kind, api_version):
    return {"apiVersion": api_version, "kind": kind, "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def cond(o, typ):
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c
    return None


def is_true(o, typ):
    c = cond(o, typ)
    return c is not None and c.get("status") == "True"


def pod_ready(p):
    return is_true(p, "Ready")


def pod_finished(p):
    return (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_ips(p):
    st = p.get("status") or {}
    ips = [x.get("ip") for x in st.get("podIPs") or [] if x.get("ip")]
    if not ips and st.get("podIP"):
        ips = [st["podIP"]]
    return ips


def _strip_times(o):
    """o without the time stamps, to compare what a status says."""
    if isinstance(o, dict):
        return {k: _strip_times(v) for k, v in o.items()
                if not (k.endswith("Time") or k.endswith("At") or k in ("startTime", "lastProbeTime"))}
    if isinstance(o, list):
        return [_strip_times(v) for v in o]
    return o


def _conditions(old_status, new):
    """new: [(type, status, reason, message)] -> conditions keeping the old
    transition times when the status did not change."""
    old = {c.get("type"): c for c in (old_status or {}).get("conditions") or []}
    now = now_rfc3339()
    out = []
    for typ, st, reason, msg in new:
        c = {"type": typ, "status": st}
        if reason:
            c["reason"] = reason
        if msg:
            c["message"] = msg
        o = old.get(typ)
        c["lastTransitionTime"] = o.get("lastTransitionTime", now) if o and o.get("status") == st else now
        out.append(c)
    return out


def _fam(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _expand(s, env):
    """Kubernetes' $(VAR) expansion in command and args ($$ escapes)."""
    out, i = [], 0
    while i < len(s):
        if s.startswith("$$", i):
            out.append("$")
            i += 2
        elif s.startswith("$(", i) and ")" in s[i:]:
            j = s.index(")", i)
            name = s[i + 2:j]
            out.append(env[name] if name in env else s[i:j + 1])
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


# ---- images ------------------------------------------------------------------------
def server_image(name="{pod}", port=None, args=(), log_dir=None):
    """An image running tests/e2e/servers.py: X-Pod answers name (format
    fields {pod}, {namespace}, {container}, {image}), listening on port
    (default: the container's first containerPort, else 8080); args are
    servers.py flags (--next HOST:PORT makes it a hop of a call chain),
    followed by the container's args ($(VAR) expanded). Its JSON-lines
    log is <log_dir>/<name>.log, by default the stand-in's log dir, where
    KubeStandIn.server_events(name) reads it."""
    def make(c, p):
        m = p["metadata"]
        nm = name.format(pod=m["name"], namespace=m.get("namespace", ""), container=c["name"], image=c["image"])
        prt = port
        if prt is None:
            ports = [x["containerPort"] for x in c.get("ports") or []]
            prt = ports[0] if ports else N.HTTP_PORT
        argv = [N.PYTHON, "-B", "-u", os.path.join(N.E2E_DIR, "servers.py"), "--name", nm, "--port", str(prt)]
        argv += ["--log", os.path.join(log_dir or "$(STANDIN_LOG_DIR)", nm + ".log")]
        return argv + list(args) + list(c.get("args") or [])
    return make


def exec_image(default=("sleep", "infinity")):
    """An image whose entrypoint is the container's command + args (like a
    busybox image), default when it has neither."""
    def make(c, p):
        argv = list(c.get("command") or []) + list(c.get("args") or [])
        return argv or list(default)
    return make


# ---- per pod state -------------------------------------------------------------------
class _Ctr:
    def __init__(self, spec, init=False):
        self.spec = spec
        self.name = spec["name"]
        self.image = spec.get("image", "")
        self.init = init
        self.proc = None
        self.started_at = None
        self.restarts = 0
        self.ready = False
        self.started = False
        self.last_term = None  # {"exitCode", "reason", "startedAt", "finishedAt"}
        self.term = None  # terminated for good
        self.next_start = 0.0
        self.backoff = 0.2
        self.waiting = ("ContainerCreating", None)
        self.cid = 0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class _Sandbox:
    def __init__(self, pod, key, v4, v6):
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.key = key  # node pod name "k<N>"
        self.v4, self.v6 = v4, v6
        self.netns = None
        self.host_if = None
        self.cg = None
        self.ctr_cgs = []
        self.init = [_Ctr(c, True) for c in pod["spec"].get("initContainers") or []]
        self.ctrs = [_Ctr(c) for c in pod["spec"].get("containers") or []]
        self.restart_policy = pod["spec"].get("restartPolicy", "Always")
        self.grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        self.start_time = now_rfc3339()
        self.phase = "Pending"
        self.done = False  # finished: torn down, status final
        self.released = False  # its addresses are back in the pool
        self.removed = False  # netns and cgroup gone

    def ips(self):
        return [ip for ip in (self.v4, self.v6) if ip]


class KubeStandIn:
    def __init__(self, api, node, images, namespace_filter=None, node_name="e2e-node", interval=0.3, grace=1.0,
                 pod_pool=(160, 220), service_pool=(220, 251), v6=True, log_path=None):
        """api: a fakeapi.FakeAPI; node: a started node.Node; images:
        {image: callable(container, pod) -> argv | {"argv", "env", "cwd"}}
        (the dict is read each round: a test may add images later);
        namespace_filter: None (every namespace), a set/list of names or a
        callable(ns) -> bool; node_name: the node Pods are bound to (test_k8s
        runs shuntd with --node-name e2e-node); grace: the most seconds
        between SIGTERM and SIGKILL; pod_pool / service_pool: last-byte
        ranges [lo, hi) of 10.211.0.0/24 (the IPv6 address is
        fd00:211::<hex of it>); v6: give pods an IPv6 address too."""
        self.api = api
        self.node = node
        self.images = images
        if namespace_filter is None:
            self._ns_ok = lambda ns: True
        elif callable(namespace_filter):
            self._ns_ok = namespace_filter
        else:
            allowed = set([namespace_filter] if isinstance(namespace_filter, str) else namespace_filter)
            self._ns_ok = lambda ns: ns in allowed
        self.node_name = node_name
        self.interval = interval
        self.grace = grace
        self.v6 = v6
        self.pod_pool = list(range(*pod_pool))
        self.service_pool = list(range(*service_pool))
        self.log_path = log_path or os.path.join(node.tmp, "kube-standin.log")
        self.log_dir = os.path.join(node.tmp, "kube")
        self.errors = []  # tracebacks of failed steps (a test may assert there are none)
        self._lock = threading.RLock()
        self._sandboxes = {}  # pod uid -> _Sandbox
        self._foreign = set()  # pod uids with an IP we did not give: left alone
        self._pull_failed = {}  # pod uid -> waiting message (ErrImagePull), for the log once
        self._used = set()  # last bytes in use (pods and services)
        self._cursor = {}  # id(pool) -> next index to try
        self._k = 0
        self._job_terms = {}  # job uid -> {pod uid: "Succeeded"|"Failed"}
        self._job_restarts = {}  # job uid -> {pod uid: restartCount}
        self._fw = {}  # (ip, port) -> _Listener
        self._fw_eps = {}  # (ip, port) -> [(ip, port)] ready endpoints
        self.proxy_conns = []  # (ClusterIP, port), (peer ip, port): every connection the forwarder accepted
        self._rr = 0
        self._vips = set()  # addresses on kube-ipvs0
        self._thread = None
        self._stop = threading.Event()
        self._started = False
        self.closed = False
        self.rounds = 0
        self._missing_res = set()
        self._logf = None
        self._node_close = None

    # ---- lifecycle ---------------------------------------------------------------
    def start(self):
        if self._started:
            return self
        self._started = True
        os.makedirs(self.log_dir, exist_ok=True)
        self._logf = open(self.log_path, "a", buffering=1)
        self.log("start: node %s, node name %s" % (self.node.id, self.node_name))
        # node.close() (atexit, SIGTERM, a failed class setup) closes us first:
        # our cgroups are below the node's, which it could not remove otherwise.
        self._node_close = self.node.close
        self.node.close = self._close_then_node
        try:
            self._setup_node_netns()
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._run, name="kube-standin-%s" % self.node.id, daemon=True)
        self._thread.start()
        return self

    def _close_then_node(self):
        self.close()
        self._node_close()

    def close(self):
        """Stop the loop, kill every process, remove every netns, veth,
        cgroup and ClusterIP made here. Idempotent; never raises."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        problems = []
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)
            if self._thread.is_alive():
                problems.append("reconcile thread still running after 30s")
        with self._lock:
            sbs = list(self._sandboxes.values())
            self._sandboxes.clear()
        try:
            self._teardown_many(sbs, grace=min(self.grace, 1.0))
        except Exception:
            problems.append(traceback.format_exc())
        for key, lst in list(self._fw.items()):
            try:
                lst.close()
            except Exception:
                problems.append(traceback.format_exc())
        self._fw.clear()
        for ip in list(self._vips):
            try:
                self._vip_del(ip)
            except Exception:
                problems.append(traceback.format_exc())
        for d in ("kubepods",):
            try:
                os.rmdir(os.path.join(self.node.cg, d))
            except OSError:
                pass
        if self._node_close is not None and self.node.close == self._close_then_node:
            self.node.close = self._node_close
        self.log("closed%s" % ("; problems: " + "; ".join(problems) if problems else ""))
        if problems:
            self.errors += problems
        if self._logf:
            self._logf.close()

    def log(self, msg):
        if self._logf and not self._logf.closed:
            try:
                self._logf.write("%s %s\n" % (time.strftime("%H:%M:%S") + ("%.3f" % (time.time() % 1))[1:], msg))
            except ValueError:
                pass

    def _error(self, what):
        tb = traceback.format_exc()
        self.errors.append("%s\n%s" % (what, tb))
        self.log("ERROR %s\n%s" % (what, tb))

    # ---- node netns: kube-ipvs0 for ClusterIPs ---------------------------------------
    def _setup_node_netns(self):
        n = self.node
        nns = n.ns("node")
        br = n.id + "-br"
        if N.run(["ip", "-n", nns, "link", "show", "kube-ipvs0"], check=False).returncode != 0:
            # kube-proxy uses a dummy device; not every kernel has the module,
            # so a veth pair whose both ends stay in the node netns (carrier
            # up, nothing behind it) holds the addresses just as well.
            if N.run(["ip", "-n", nns, "link", "add", "kube-ipvs0", "type", "dummy"], check=False).returncode != 0:
                N.run(["ip", "-n", nns, "link", "add", "kube-ipvs0", "type", "veth", "peer", "name", "kube-ipvs0p"])
                N.run(["ip", "-n", nns, "link", "set", "kube-ipvs0p", "up"])
        N.run(["ip", "-n", nns, "link", "set", "kube-ipvs0", "up"])
        # A bridge takes the lowest MAC of its ports unless one was set: pin
        # the current one, or every pod veth we add or remove could change
        # the MAC behind the node's (and the ClusterIPs') addresses under
        # the neighbour caches of the pods.
        info = json.loads(N.run(["ip", "-j", "-n", nns, "link", "show", br]).stdout)
        N.run(["ip", "-n", nns, "link", "set", br, "address", info[0]["address"]])
        N.run(n.nsenter("node") + ["sh", "-c",
              "echo 0 > /proc/sys/net/ipv4/conf/all/arp_ignore; "
              "echo 0 > /proc/sys/net/ipv4/conf/{br}/arp_ignore; "
              "echo 1 > /proc/sys/net/ipv6/conf/{br}/proxy_ndp; "
              "echo 1 > /proc/sys/net/ipv6/conf/{br}/forwarding; "
              "echo 0 > /proc/sys/net/ipv6/neigh/{br}/proxy_delay".format(br=br)])

    def _vip_add(self, ip):
        if ip in self._vips:
            return
        nns = self.node.ns("node")
        if ":" in ip:
            N.run(["ip", "-n", nns, "addr", "replace", ip + "/128", "dev", "kube-ipvs0", "nodad"])
            N.run(["ip", "-n", nns, "-6", "neigh", "replace", "proxy", ip, "dev", self.node.id + "-br"])
        else:
            N.run(["ip", "-n", nns, "addr", "replace", ip + "/32", "dev", "kube-ipvs0"])
        self._vips.add(ip)
        self.log("kube-proxy: %s on kube-ipvs0" % ip)

    def _vip_del(self, ip):
        if ip not in self._vips:
            return
        nns = self.node.ns("node")
        self._vips.discard(ip)
        if ":" in ip:
            N.run(["ip", "-n", nns, "-6", "neigh", "del", "proxy", ip, "dev", self.node.id + "-br"], check=False)
            N.run(["ip", "-n", nns, "addr", "del", ip + "/128", "dev", "kube-ipvs0"], check=False)
        else:
            N.run(["ip", "-n", nns, "addr", "del", ip + "/32", "dev", "kube-ipvs0"], check=False)
        self.log("kube-proxy: %s off kube-ipvs0" % ip)

    # ---- addresses ---------------------------------------------------------------
    def _taken(self):
        out = set(self._used)
        for p in self.node.pods.values():
            if p.get("v4") and "k8s" not in p:  # the harness's pods (ours are in _used)
                ip = ipaddress.ip_address(p["v4"])
                if ip in N.NET4_CIDR:
                    out.add(int(p["v4"].rsplit(".", 1)[1]))
        return out

    def _alloc(self, pool):
        with self._lock:
            taken = self._taken()
            # round robin: an address freed is the last to be given again
            start = self._cursor.get(id(pool), 0)
            for i in range(len(pool)):
                b = pool[(start + i) % len(pool)]
                if b not in taken:
                    self._used.add(b)
                    self._cursor[id(pool)] = (start + i + 1) % len(pool)
                    return b
        raise N.HarnessError("kube stand-in: address pool %d-%d exhausted" % (pool[0], pool[-1]))

    @staticmethod
    def _v4(b):
        return "%s.%d" % (N.NET4, b)

    @staticmethod
    def _v6(b):
        return "%s%x" % (N.NET6, b)

    def alloc_cluster_ip(self):
        """A free (IPv4, IPv6) pair from the service pool, for a Service's
        clusterIPs; released by close()."""
        b = self._alloc(self.service_pool)
        return self._v4(b), self._v6(b)

    # ---- API helpers ----------------------------------------------------------------
    def _list(self, res):
        try:
            items = self.api.list(res)
        except Exception as e:
            if res not in self._missing_res:
                self._missing_res.add(res)
                self.log("cannot list %s (%r): treated as none" % (res, e))
            return []
        return [o for o in items if self._ns_ok(o["metadata"].get("namespace", "default"))]

    def _do(self, what, fn, *a, **kw):
        """One API write; failures (409 and the like) are logged and left
        to the next round, which re-reads everything."""
        try:
            r = fn(*a, **kw)
            self.log(what)
            return r if r is not None else True
        except Exception as e:
            code = getattr(e, "code", None)
            self.log("%s: failed (%s %r), retried next round" % (what, code, e))
            # 409 and 404 are the normal races of a level-triggered loop; a
            # refusal of what we sent (400, 422: a bad object), anything else
            # is a bug here, reported by check().
            if code not in (404, 409):
                msg = "%s: %r" % (what.split(":")[0], e)
                if msg not in self.errors:
                    self.errors.append(msg)
            return None

    def _patch_status(self, res, o, status):
        m = o["metadata"]
        what = "%s %s/%s: status %s" % (res, m["namespace"], m["name"],
                                        json.dumps(_strip_times(status), sort_keys=True)[:600])
        return self._do(what, self.api.patch, res, m["namespace"], m["name"], {"status": status}, "merge",
                        subresource="status")

    def _create(self, res, obj):
        m = obj["metadata"]
        return self._do("%s %s/%s: created" % (res, m["namespace"], m["name"]), self.api.create, obj)

    def _delete(self, res, o, why):
        m = o["metadata"]
        return self._do("%s %s/%s: deleted (%s)" % (res, m["namespace"], m["name"], why),
                        self.api.delete, res, m["namespace"], m["name"])

    # ---- the loop -------------------------------------------------------------------
    def _run(self):
        while not self._stop.is_set():
            # The RV before the round: a change made meanwhile (by anyone,
            # also by this round) starts the next round at once.
            try:
                rv = self.api.resource_version
            except Exception:
                rv = 0
            try:
                self._round()
            except Exception:
                self._error("round failed")
            self.rounds += 1
            try:
                if hasattr(self.api, "wait_for_change"):
                    self.api.wait_for_change(rv, self.interval)
                else:
                    self._stop.wait(self.interval)
            except Exception:
                self._stop.wait(self.interval)

    def _round(self):
        with self._lock:
            pods = self._list("pods")
            for res, step in (("deployments", self._deployment), ("statefulsets", self._statefulset),
                              ("jobs", self._job)):
                for o in self._list(res):
                    if self._stop.is_set():
                        return
                    try:
                        step(o, pods)
                    except Exception:
                        self._error("%s %s/%s" % (res, o["metadata"].get("namespace"), o["metadata"]["name"]))
            self._kubelet(self._list("pods"))
            services = self._list("services")
            self._cluster_ips(services)
            pods = self._list("pods")
            for s in services:
                try:
                    self._endpointslices(s, pods)
                except Exception:
                    self._error("endpointslices of %s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"]))
            self._proxy(services, self._list("endpointslices"))

    # ---- Deployments ----------------------------------------------------------------
    def _pod_from_template(self, owner, kind, api_version, name, extra_labels, extra_spec=None):
        tmpl = copy.deepcopy(owner["spec"].get("template") or {})
        tm = tmpl.get("metadata") or {}
        labels = dict(tm.get("labels") or {})
        labels.update(extra_labels)
        meta = {"name": name, "namespace": owner["metadata"]["namespace"], "labels": labels,
                "ownerReferences": [owner_ref(owner, kind, api_version)]}
        if tm.get("annotations"):
            meta["annotations"] = dict(tm["annotations"])
        spec = tmpl.get("spec") or {}
        spec["nodeName"] = self.node_name
        spec.update(extra_spec or {})
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    def _owned(self, o, pods):
        uid = o["metadata"]["uid"]
        ns = o["metadata"]["namespace"]
        return [p for p in pods if p["metadata"].get("namespace") == ns and controller_uid(p) == uid]

    def _deployment(self, d, pods):
        m = d["metadata"]
        spec = d.get("spec") or {}
        if m.get("deletionTimestamp"):
            return
        h = template_hash(spec.get("template") or {})
        want = spec.get("replicas", 1)
        owned = [p for p in self._owned(d, pods) if not p["metadata"].get("deletionTimestamp")]
        cur = [p for p in owned if (p["metadata"].get("labels") or {}).get("pod-template-hash") == h]
        old = [p for p in owned if p not in cur]
        cur_live = [p for p in cur if not pod_finished(p)]
        for p in cur:
            if pod_finished(p):  # a Deployment's pods restart always; one that ended is replaced
                self._delete("pods", p, "deployment %s: pod finished" % m["name"])
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        nready = sum(1 for p in cur_live if pod_ready(p))
        if recreate and old:
            for p in old:
                self._delete("pods", p, "deployment %s: Recreate, template %s" % (m["name"], h))
        else:
            if len(cur_live) < want:
                for _ in range(want - len(cur_live)):
                    name = "%s-%s-%s" % (m["name"], h, rand5())
                    self._create("pods", self._pod_from_template(d, "Deployment", "apps/v1", name,
                                                                 {"pod-template-hash": h}))
            elif len(cur_live) > want:
                extra = sorted(cur_live, key=lambda p: (pod_ready(p), p["metadata"].get("creationTimestamp", "")),
                               )[:len(cur_live) - want]
                for p in extra:
                    self._delete("pods", p, "deployment %s: scale to %d" % (m["name"], want))
            if old and (nready >= want or want == 0):
                for p in old:
                    self._delete("pods", p, "deployment %s: replaced by template %s" % (m["name"], h))
        ready_all = sum(1 for p in owned if pod_ready(p))
        avail_ok = ready_all >= want
        done = len(cur_live) == want and not old and nready >= want
        st = d.get("status") or {}
        status = {"observedGeneration": m.get("generation", 1), "replicas": len(owned),
                  "updatedReplicas": len(cur_live), "readyReplicas": ready_all, "availableReplicas": ready_all,
                  "unavailableReplicas": max(0, want - ready_all)}
        rs = "%s-%s" % (m["name"], h)
        conds = _conditions(st, [
            ("Available", "True" if avail_ok else "False",
             "MinimumReplicasAvailable" if avail_ok else "MinimumReplicasUnavailable",
             "Deployment has minimum availability." if avail_ok else "Deployment does not have minimum availability."),
            ("Progressing", "True", "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
             ('ReplicaSet "%s" has successfully progressed.' if done else 'ReplicaSet "%s" is progressing.') % rs)])
        for c in conds:
            c["lastUpdateTime"] = c["lastTransitionTime"]
            oc = cond(d, c["type"])
            if oc and oc.get("reason") == c.get("reason") and oc.get("status") == c["status"]:
                c["lastUpdateTime"] = oc.get("lastUpdateTime", c["lastTransitionTime"])
        status["conditions"] = conds
        if _strip_times(status) != _strip_times({k: st.get(k) for k in status}):
            self._patch_status("deployments", d, status)

    # ---- StatefulSets ---------------------------------------------------------------
    def _statefulset(self, s, pods):
        m = s["metadata"]
        spec = s.get("spec") or {}
        if m.get("deletionTimestamp"):
            return
        rev = "%s-%s" % (m["name"], template_hash(spec.get("template") or {}))
        want = spec.get("replicas", 1)
        parallel = spec.get("podManagementPolicy") == "Parallel"
        owned = self._owned(s, pods)
        by_name = {p["metadata"]["name"]: p for p in owned}
        others = {p["metadata"]["name"] for p in pods if p["metadata"].get("namespace") == m["namespace"]}
        live = [p for p in owned if not p["metadata"].get("deletionTimestamp")]
        # scale down: highest ordinal first
        extra = sorted([p for p in live if self._ordinal(p, m["name"]) >= want],
                       key=lambda p: -self._ordinal(p, m["name"]))
        for p in (extra if parallel else extra[:1]):
            self._delete("pods", p, "statefulset %s: scale to %d" % (m["name"], want))
        for i in range(want):
            name = "%s-%d" % (m["name"], i)
            p = by_name.get(name)
            if p is None:
                if name in others:
                    self.log("statefulset %s: pod %s exists and is not ours" % (m["name"], name))
                    break
                labels = {"controller-revision-hash": rev, "statefulset.kubernetes.io/pod-name": name,
                          "apps.kubernetes.io/pod-index": str(i)}
                extra_spec = {"hostname": name}
                if spec.get("serviceName"):
                    extra_spec["subdomain"] = spec["serviceName"]
                self._create("pods", self._pod_from_template(s, "StatefulSet", "apps/v1", name, labels, extra_spec))
                if not parallel:
                    break
            elif pod_finished(p) and not p["metadata"].get("deletionTimestamp"):
                self._delete("pods", p, "statefulset %s: pod finished" % m["name"])
                if not parallel:
                    break
            elif not parallel and not pod_ready(p):
                break
        else:
            # all there and ready (or parallel): roll one outdated pod, highest ordinal first
            outdated = sorted([p for p in live if (p["metadata"].get("labels") or {}).get("controller-revision-hash")
                               != rev and self._ordinal(p, m["name"]) < want],
                              key=lambda p: -self._ordinal(p, m["name"]))
            if outdated and all(pod_ready(p) for p in live if p not in outdated):
                self._delete("pods", outdated[0], "statefulset %s: update to %s" % (m["name"], rev))
        ready = sum(1 for p in live if pod_ready(p))
        updated = sum(1 for p in live if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == rev)
        st = s.get("status") or {}
        status = {"observedGeneration": m.get("generation", 1), "replicas": len(live), "readyReplicas": ready,
                  "currentReplicas": updated, "updatedReplicas": updated, "availableReplicas": ready,
                  "currentRevision": rev, "updateRevision": rev, "collisionCount": 0}
        if status != {k: st.get(k) for k in status}:
            self._patch_status("statefulsets", s, status)

    @staticmethod
    def _ordinal(p, base):
        try:
            return int(p["metadata"]["name"][len(base) + 1:])
        except ValueError:
            return 1 << 30

    # ---- Jobs -------------------------------------------------------------------------
    def _job(self, j, pods):
        m = j["metadata"]
        spec = j.get("spec") or {}
        uid = m["uid"]
        if m.get("deletionTimestamp"):
            return
        completions = spec.get("completions") or 1
        parallelism = spec.get("parallelism", 1)
        backoff = spec.get("backoffLimit", 6)
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy", "Never")
        owned = self._owned(j, pods)
        terms = self._job_terms.setdefault(uid, {})
        restarts = self._job_restarts.setdefault(uid, {})
        for p in owned:
            ph = (p.get("status") or {}).get("phase")
            if ph in ("Succeeded", "Failed"):
                terms[p["metadata"]["uid"]] = ph
            if policy == "OnFailure":
                restarts[p["metadata"]["uid"]] = max(
                    [restarts.get(p["metadata"]["uid"], 0)] + [c.get("restartCount", 0) for c in
                                                               (p.get("status") or {}).get("containerStatuses") or []])
        active = [p for p in owned if not pod_finished(p) and not p["metadata"].get("deletionTimestamp")]
        succeeded = sum(1 for v in terms.values() if v == "Succeeded")
        failed = sum(1 for v in terms.values() if v == "Failed") + sum(restarts.values())
        st = j.get("status") or {}
        finished = is_true(j, "Complete") or is_true(j, "Failed")
        conds = [dict(c) for c in st.get("conditions") or []]
        completion_time = st.get("completionTime")
        now = now_rfc3339()
        if not finished:
            if succeeded >= completions:
                conds.append({"type": "Complete", "status": "True", "reason": "CompletionsReached",
                              "message": "Reached expected number of succeeded pods",
                              "lastProbeTime": now, "lastTransitionTime": now})
                completion_time = now
                for p in active:
                    self._delete("pods", p, "job %s: complete" % m["name"])
                active = []
            elif failed > backoff:
                conds.append({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                              "message": "Job has reached the specified backoff limit",
                              "lastProbeTime": now, "lastTransitionTime": now})
                for p in active:
                    self._delete("pods", p, "job %s: failed" % m["name"])
                active = []
            elif not spec.get("suspend"):
                n = min(parallelism, completions - succeeded) - len(active)
                for _ in range(max(0, n)):
                    name = "%s-%s" % (m["name"], rand5())
                    labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": m["name"],
                              "controller-uid": uid, "job-name": m["name"]}
                    self._create("pods", self._pod_from_template(j, "Job", "batch/v1", name, labels))
        status = {"active": len(active), "ready": sum(1 for p in active if pod_ready(p)),
                  "succeeded": succeeded, "failed": failed, "startTime": st.get("startTime") or now,
                  "conditions": conds}
        if completion_time:
            status["completionTime"] = completion_time
        if not conds:
            status.pop("conditions")
        if _strip_times(status) != _strip_times({k: st.get(k) for k in status}) or not st.get("startTime"):
            self._patch_status("jobs", j, status)

    # ---- kubelet ----------------------------------------------------------------------
    def _kubelet(self, pods):
        seen = set()
        for p in pods:
            m = p["metadata"]
            uid = m.get("uid")
            node = (p.get("spec") or {}).get("nodeName")
            if node and node != self.node_name:
                continue
            seen.add(uid)
            try:
                self._kubelet_pod(p)
            except Exception:
                self._error("kubelet: pod %s/%s" % (m.get("namespace"), m["name"]))
        gone = [sb for uid, sb in self._sandboxes.items() if uid not in seen]
        if gone:
            for sb in gone:
                self.log("kubelet: pod %s/%s (%s) deleted: stopping it" % (sb.ns, sb.name, sb.uid))
                del self._sandboxes[sb.uid]
            self._teardown_many(gone)
        for uid in list(self._pull_failed):
            if uid not in seen:
                del self._pull_failed[uid]

    def _kubelet_pod(self, p):
        m = p["metadata"]
        uid = m["uid"]
        if not (p.get("spec") or {}).get("nodeName"):
            self._do("pods %s/%s: bound to %s" % (m["namespace"], m["name"], self.node_name),
                     self.api.patch, "pods", m["namespace"], m["name"], {"spec": {"nodeName": self.node_name}}, "merge")
            return
        sb = self._sandboxes.get(uid)
        if m.get("deletionTimestamp"):
            if sb is not None and not sb.done:
                self.log("kubelet: pod %s/%s terminating" % (m["namespace"], m["name"]))
                self._teardown_many([sb])
                sb.done = True
            return
        if sb is None:
            if uid in self._foreign or pod_finished(p):
                return
            if pod_ips(p):
                self._foreign.add(uid)
                self.log("kubelet: pod %s/%s has an IP we did not give (%s): left alone"
                         % (m["namespace"], m["name"], pod_ips(p)))
                return
            missing = self._unresolved(p)
            if missing:
                self._pending_pull(p, missing)
                return
            sb = self._make_sandbox(p)
            if sb is None:
                return
        if not sb.done:
            self._step(sb, p)
        self._write_pod_status(sb, p)

    def _unresolved(self, p):
        out = []
        for c in (p["spec"].get("initContainers") or []) + (p["spec"].get("containers") or []):
            if c.get("image") not in self.images:
                out.append(c)
        return out

    def _pending_pull(self, p, missing):
        m = p["metadata"]
        msgs = {c["name"]: 'image "%s" is not in the stand-in\'s images (%s)' % (
            c.get("image"), ", ".join(sorted(self.images))) for c in missing}
        if self._pull_failed.get(m["uid"]) != msgs:
            self._pull_failed[m["uid"]] = msgs
            self.log("kubelet: pod %s/%s: ErrImagePull %s" % (m["namespace"], m["name"], msgs))
        cs = []
        for c in p["spec"].get("containers") or []:
            cs.append({"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                       "started": False, "restartCount": 0,
                       "state": {"waiting": {"reason": "ErrImagePull", "message": msgs[c["name"]]} if c["name"] in msgs
                                 else {"reason": "PodInitializing"}}})
        st = p.get("status") or {}
        status = {"phase": "Pending", "hostIP": N.NODE4, "hostIPs": [{"ip": N.NODE4}, {"ip": N.NODE6}],
                  "conditions": _conditions(st, [
                      ("PodScheduled", "True", None, None), ("Initialized", "True", None, None),
                      ("ContainersReady", "False", "ContainersNotReady", "containers with unready status: [%s]"
                       % " ".join(c["name"] for c in p["spec"].get("containers") or [])),
                      ("Ready", "False", "ContainersNotReady", "containers with unready status: [%s]"
                       % " ".join(c["name"] for c in p["spec"].get("containers") or []))]),
                  "containerStatuses": cs, "qosClass": "BestEffort"}
        if _strip_times(status) != _strip_times({k: st.get(k) for k in status}):
            self._patch_status("pods", p, status)

    def _make_sandbox(self, p):
        n = self.node
        self._k += 1
        key = "k%d" % self._k
        while key in n.pods or os.path.exists(n.netns_path(key)):
            self._k += 1
            key = "k%d" % self._k
        b = self._alloc(self.pod_pool)
        sb = _Sandbox(p, key, self._v4(b), self._v6(b) if self.v6 else None)
        self._sandboxes[sb.uid] = sb
        try:
            nsname = n.ns(key)
            N.run(["ip", "netns", "add", nsname])
            sb.netns = n.netns_path(key)
            n.created["netns"].append(nsname)  # node.close() removes it if we could not
            N.run(["nsenter", "--net=" + sb.netns, "sh", "-c",
                   "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad; "
                   "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; "
                   "echo 0 > /proc/sys/net/ipv6/conf/all/dad_transmits; "
                   "echo 0 > /proc/sys/net/ipv6/conf/default/dad_transmits"])
            N.run(["ip", "-n", nsname, "link", "set", "lo", "up"])
            sb.host_if = "%s-%s" % (n.id, key)
            # eth0's MAC follows from its IPv4 address: an address used again
            # by a later pod keeps its MAC, so the neighbour caches of the
            # other pods and the node stay right (no gratuitous ARP needed).
            mac = "02:4b:" + ":".join("%02x" % int(x) for x in sb.v4.split("."))
            N.run(["ip", "-n", n.ns("node"), "link", "add", sb.host_if, "type", "veth", "peer", "name", "eth0",
                   "address", mac, "netns", nsname])
            N.run(["ip", "-n", n.ns("node"), "link", "set", sb.host_if, "master", n.id + "-br", "up"])
            N.run(["ip", "-n", nsname, "addr", "add", sb.v4 + "/24", "dev", "eth0"])
            if sb.v6:
                N.run(["ip", "-n", nsname, "addr", "add", sb.v6 + "/64", "dev", "eth0", "nodad"])
            N.run(["ip", "-n", nsname, "link", "set", "eth0", "up"])
            N.run(["ip", "-n", nsname, "route", "add", "default", "via", N.NODE4])
            if sb.v6:
                N.run(["ip", "-n", nsname, "-6", "route", "add", "default", "via", N.NODE6])
            n.pods[key] = {"ns": nsname, "netns": sb.netns, "v4": sb.v4, "v6": sb.v6, "in_cgroup": False,
                           "k8s": (sb.ns, sb.name)}
            kp = os.path.join(n.cg, "kubepods")
            os.makedirs(kp, exist_ok=True)
            sb.cg = os.path.join(kp, "pod" + sb.uid)
            os.makedirs(sb.cg, exist_ok=True)
        except Exception:
            self._error("kubelet: sandbox for pod %s/%s" % (sb.ns, sb.name))
            del self._sandboxes[sb.uid]
            self._teardown_many([sb])
            return None
        self.log("kubelet: pod %s/%s (%s): sandbox netns %s, %s %s, cgroup %s"
                 % (sb.ns, sb.name, sb.uid, sb.netns, sb.v4, sb.v6, sb.cg))
        return sb

    def _env(self, sb, p, c):
        env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
               "HOME": "/root", "HOSTNAME": p["spec"].get("hostname") or sb.name, "POD_NAME": sb.name,
               "POD_NAMESPACE": sb.ns, "POD_IP": sb.v4, "POD_IPS": ",".join(sb.ips()), "NODE_NAME": self.node_name,
               "STANDIN_LOG_DIR": self.log_dir}
        fields = {"metadata.name": sb.name, "metadata.namespace": sb.ns, "metadata.uid": sb.uid,
                  "status.podIP": sb.v4, "status.podIPs": ",".join(sb.ips()), "spec.nodeName": self.node_name,
                  "status.hostIP": N.NODE4}
        labels = p["metadata"].get("labels") or {}
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = _expand(str(e["value"]), env)
            elif "valueFrom" in e and "fieldRef" in e["valueFrom"]:
                fp = e["valueFrom"]["fieldRef"].get("fieldPath", "")
                if fp in fields:
                    env[e["name"]] = fields[fp]
                elif fp.startswith("metadata.labels['") and fp.endswith("']"):
                    env[e["name"]] = labels.get(fp[len("metadata.labels['"):-2], "")
            elif "valueFrom" in e:
                self.log("kubelet: pod %s/%s container %s: env %s valueFrom %s not supported: left out"
                         % (sb.ns, sb.name, c["name"], e["name"], list(e["valueFrom"])))
        return env

    def _start_ctr(self, sb, p, c):
        c.waiting = ("ContainerCreating", None)
        fn = self.images.get(c.image)
        if fn is None:
            c.waiting = ("ErrImagePull", 'image "%s" is not in the stand-in\'s images' % c.image)
            return
        env = self._env(sb, p, c.spec)
        try:
            r = fn(copy.deepcopy(c.spec), copy.deepcopy(p))
            cwd = None
            if isinstance(r, dict):
                env.update(r.get("env") or {})
                cwd = r.get("cwd")
                r = r["argv"]
            argv = [_expand(str(a), env) for a in r]
            if not argv:
                raise ValueError("empty argv")
        except Exception as e:
            c.waiting = ("CreateContainerError", "image %s: %r" % (c.image, e))
            self._error("kubelet: pod %s/%s container %s: image callable" % (sb.ns, sb.name, c.name))
            c.next_start = time.monotonic() + 2
            return
        ccg = os.path.join(sb.cg, c.name if c.name not in ("", ".", "..") else "ctr")
        os.makedirs(ccg, exist_ok=True)
        if ccg not in sb.ctr_cgs:
            sb.ctr_cgs.append(ccg)
        logp = os.path.join(self.log_dir, "%s_%s_%s.log" % (sb.ns, sb.name, c.name))
        cmd = "echo $$ > %s && exec nsenter --net=%s %s" % (
            shlex.quote(os.path.join(ccg, "cgroup.procs")), shlex.quote(sb.netns), shlex.join(argv))
        with open(logp, "ab") as lf:
            lf.write(("=== kube stand-in: start (restarts %d): %s\n" % (c.restarts, shlex.join(argv))).encode())
            lf.flush()
            c.proc = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                      env=env, cwd=cwd or "/", start_new_session=True, preexec_fn=N._child_setup)
        self.node.procs.append(c.proc)  # node.close() kills it if we could not
        c.cid += 1
        c.started_at = now_rfc3339()
        c.ready = False
        c.started = True
        c.waiting = None
        self.log("kubelet: pod %s/%s container %s: started pid %d: %s" % (sb.ns, sb.name, c.name, c.proc.pid,
                                                                         shlex.join(argv)))

    def _probe_ports(self, c):
        rp = c.spec.get("readinessProbe") or {}
        for k in ("tcpSocket", "httpGet"):
            if k in rp:
                port = rp[k].get("port")
                if isinstance(port, str):
                    port = next((x["containerPort"] for x in c.spec.get("ports") or [] if x.get("name") == port), None)
                return [port] if port else []
        return [x["containerPort"] for x in c.spec.get("ports") or [] if x.get("protocol", "TCP") == "TCP"]

    def _tcp_ok(self, ip, port):
        try:
            s = socket_in_netns(self.node.netns_path("node"), _fam(ip))
        except OSError:
            return False
        try:
            s.settimeout(0.3)
            s.connect((ip, port))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def _step(self, sb, p):
        """Start, watch, restart the pod's processes; readiness."""
        now = time.monotonic()
        # init containers, in order
        for c in sb.init:
            if c.term is not None and c.term["exitCode"] == 0:
                continue
            if c.alive():
                return
            if c.proc is not None:
                rc = c.proc.returncode
                self._ended(sb, c, rc)
                if rc == 0:
                    c.term = c.last_term
                    c.proc = None
                    continue
                if sb.restart_policy == "Never":
                    c.term = c.last_term
                    self._finish(sb, "Failed")
                    return
                c.proc = None
                c.restarts += 1
                c.next_start = now + c.backoff
                c.backoff = min(c.backoff * 2, 2.0)
            if now >= c.next_start:
                self._start_ctr(sb, p, c)
            return
        for c in sb.ctrs:
            if c.term is not None:
                continue
            if c.proc is not None and c.proc.poll() is not None:
                rc = c.proc.returncode
                self._ended(sb, c, rc)
                c.proc = None
                if sb.restart_policy == "Always" or (sb.restart_policy == "OnFailure" and rc != 0):
                    c.restarts += 1
                    c.next_start = now + c.backoff
                    c.backoff = min(c.backoff * 2, 2.0)
                    c.waiting = ("CrashLoopBackOff", "back-off restarting failed container %s" % c.name)
                else:
                    c.term = c.last_term
            if c.proc is None and c.term is None and now >= c.next_start:
                self._start_ctr(sb, p, c)
            if c.alive() and not c.ready:
                ports = self._probe_ports(c)
                if all(self._tcp_ok(sb.v4, port) for port in ports):
                    c.ready = True
                    c.backoff = 0.2
                    self.log("kubelet: pod %s/%s container %s: ready (ports %s)" % (sb.ns, sb.name, c.name, ports))
        if sb.ctrs and all(c.term is not None for c in sb.ctrs):
            self._finish(sb, "Succeeded" if all(c.term["exitCode"] == 0 for c in sb.ctrs) else "Failed")
        elif any(c.alive() for c in sb.ctrs) or any(c.restarts for c in sb.ctrs):
            sb.phase = "Running"

    def _ended(self, sb, c, rc):
        code = rc if rc >= 0 else 128 - rc
        c.last_term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                       "startedAt": c.started_at, "finishedAt": now_rfc3339(), "containerID": self._cid(sb, c)}
        if rc < 0:
            c.last_term["signal"] = -rc
        c.ready = False
        self.log("kubelet: pod %s/%s container %s: exited %d" % (sb.ns, sb.name, c.name, code))

    def _finish(self, sb, phase):
        sb.phase = phase
        self.log("kubelet: pod %s/%s: %s, tearing its sandbox down" % (sb.ns, sb.name, phase))
        self._teardown_many([sb], keep_state=True)
        sb.done = True

    def _cid(self, sb, c):
        return "standin://%s-%s-%d" % (sb.uid[:8], c.name, c.cid)

    def _ctr_status(self, sb, c):
        s = {"name": c.name, "image": c.image, "imageID": "standin://" + c.image, "ready": bool(c.ready and c.alive()),
             "started": bool(c.alive()), "restartCount": c.restarts}
        if c.alive():
            s["state"] = {"running": {"startedAt": c.started_at}}
            s["containerID"] = self._cid(sb, c)
        elif c.term is not None:
            s["state"] = {"terminated": dict(c.term)}
            s["containerID"] = c.term.get("containerID")
        else:
            reason, msg = c.waiting or ("ContainerCreating", None)
            s["state"] = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
        if c.last_term is not None and not (c.term is not None and c.term is c.last_term):
            s["lastState"] = {"terminated": dict(c.last_term)}
        return s

    def _write_pod_status(self, sb, p):
        st = p.get("status") or {}
        init_done = all(c.term is not None and c.term["exitCode"] == 0 for c in sb.init)
        ready = sb.phase == "Running" and not sb.done and all(c.ready and c.alive() for c in sb.ctrs)
        names = " ".join(c.name for c in sb.ctrs if not (c.ready and c.alive()))
        status = {"phase": sb.phase, "hostIP": N.NODE4, "hostIPs": [{"ip": N.NODE4}, {"ip": N.NODE6}],
                  "podIP": sb.v4, "podIPs": [{"ip": ip} for ip in sb.ips()], "startTime": sb.start_time,
                  "qosClass": "BestEffort",
                  "conditions": _conditions(st, [
                      ("PodScheduled", "True", None, None),
                      ("Initialized", "True" if init_done else "False",
                       None if init_done else "ContainersNotInitialized", None),
                      ("ContainersReady", "True" if ready else "False",
                       None if ready else ("PodCompleted" if sb.done else "ContainersNotReady"),
                       None if ready or sb.done else "containers with unready status: [%s]" % names),
                      ("Ready", "True" if ready else "False",
                       None if ready else ("PodCompleted" if sb.done else "ContainersNotReady"),
                       None if ready or sb.done else "containers with unready status: [%s]" % names)]),
                  "containerStatuses": [self._ctr_status(sb, c) for c in sb.ctrs]}
        if sb.init:
            status["initContainerStatuses"] = [self._ctr_status(sb, c) for c in sb.init]
        if _strip_times(status) != _strip_times({k: st.get(k) for k in status}):
            self._patch_status("pods", p, status)

    def _teardown_many(self, sbs, grace=None, keep_state=False):
        """SIGTERM every process of the sandboxes, SIGKILL what is left after
        the grace period, then remove cgroups and netns and free the IPs."""
        procs = []
        for sb in sbs:
            for c in sb.init + sb.ctrs:
                if c.alive():
                    procs.append(c.proc)
                    try:
                        os.killpg(c.proc.pid, signal.SIGTERM)
                    except (ProcessLookupError, PermissionError):
                        pass
        g = self.grace if grace is None else grace
        g = min([g] + [sb.grace for sb in sbs if sb.grace is not None])
        deadline = time.monotonic() + g
        while procs and time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.02)
        for sb in sbs:
            for c in sb.init + sb.ctrs:
                if c.proc is not None and c.proc.poll() is None:
                    try:
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            if sb.cg and os.path.isdir(sb.cg):
                self._cg_kill(sb.cg)
        for sb in sbs:
            for c in sb.init + sb.ctrs:
                if c.proc is not None:
                    try:
                        c.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        self.errors.append("pod %s/%s container %s: pid %d survived SIGKILL"
                                           % (sb.ns, sb.name, c.name, c.proc.pid))
                    if keep_state and c.term is None and c.proc.returncode is not None:
                        self._ended(sb, c, c.proc.returncode)
                        c.term = c.last_term
                    if c.proc in self.node.procs:
                        self.node.procs.remove(c.proc)
                    c.proc = None
            self._remove_sandbox_resources(sb)

    def _cg_kill(self, cg):
        kill = os.path.join(cg, "cgroup.kill")
        if os.path.exists(kill):
            try:
                with open(kill, "w") as f:
                    f.write("1")
                return
            except OSError:
                pass
        for root, dirs, files in os.walk(cg):
            try:
                for pid in open(os.path.join(root, "cgroup.procs")).read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            except OSError:
                pass

    def _remove_sandbox_resources(self, sb):
        if sb.removed:
            return
        sb.removed = True
        n = self.node
        if sb.cg and os.path.isdir(sb.cg):
            for attempt in range(100):
                try:
                    for d in sorted((os.path.join(sb.cg, x) for x in os.listdir(sb.cg)
                                     if os.path.isdir(os.path.join(sb.cg, x))), reverse=True):
                        os.rmdir(d)
                    os.rmdir(sb.cg)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or attempt == 99:
                        self.errors.append("cgroup %s: %r" % (sb.cg, e))
                        break
                    self._cg_kill(sb.cg)
                    time.sleep(0.05)
        if sb.netns:
            nsname = n.ns(sb.key)
            r = N.run(["ip", "netns", "del", nsname], check=False)
            if r.returncode == 0 or not os.path.exists(sb.netns):
                if nsname in n.created["netns"]:
                    n.created["netns"].remove(nsname)
            else:
                self.errors.append("netns %s: %s" % (nsname, r.stderr.strip()))
            sb.netns = None
        if sb.key in n.pods:
            # A tombstone, not a removal: node.add_pod() names host veths by
            # counting node.pods, so the count must never go down.
            n.pods[sb.key]["gone"] = True
        if not sb.released:
            sb.released = True
            with self._lock:
                self._used.discard(int(sb.v4.rsplit(".", 1)[1]))
        self.log("kubelet: pod %s/%s: sandbox removed (%s)" % (sb.ns, sb.name, sb.key))

    # ---- Services: ClusterIPs, EndpointSlices ------------------------------------------
    def _cluster_ips(self, services):
        for s in services:
            spec = s.get("spec") or {}
            if spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("clusterIP"):
                continue
            fams = spec.get("ipFamilies") or ["IPv4"]
            v4, v6 = self.alloc_cluster_ip()
            ips = [v4 if f == "IPv4" else v6 for f in fams]
            s2 = copy.deepcopy(s)
            s2["spec"].update({"clusterIP": ips[0], "clusterIPs": ips, "ipFamilies": fams})
            s2.setdefault("kind", "Service")
            s2.setdefault("apiVersion", "v1")
            m = s["metadata"]
            what = "services %s/%s: clusterIPs %s" % (m["namespace"], m["name"], ips)
            if self._do(what, self.api.update, s2) is None:
                with self._lock:
                    self._used.discard(int(v4.rsplit(".", 1)[1]))

    def _endpointslices(self, s, pods):
        m = s["metadata"]
        spec = s.get("spec") or {}
        sel = spec.get("selector")
        if not sel:
            return
        ns = m["namespace"]
        fams = spec.get("ipFamilies") or (["IPv6" if ":" in ip else "IPv4" for ip in spec.get("clusterIPs") or []
                                           if ip != "None"] or ["IPv4", "IPv6"])
        members = [p for p in pods if p["metadata"].get("namespace") == ns
                   and labels_match(sel, p["metadata"].get("labels")) and not pod_finished(p) and pod_ips(p)]
        members.sort(key=lambda p: p["metadata"]["name"])
        want = {}
        for fam in ("IPv4", "IPv6"):
            if fam not in fams:
                continue
            suffix = "v4" if fam == "IPv4" else "v6"
            groups = []  # [(ports, endpoints)]
            for p in members:
                ip = next((x for x in pod_ips(p) if (":" in x) == (fam == "IPv6")), None)
                if ip is None:
                    continue
                ports = self._resolve_ports(spec.get("ports") or [], p)
                ready = pod_ready(p)
                term = bool(p["metadata"].get("deletionTimestamp"))
                ep = {"addresses": [ip], "conditions": {"ready": ready and not term, "serving": ready,
                                                        "terminating": term},
                      "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"],
                                    "uid": p["metadata"]["uid"]}}
                if (p.get("spec") or {}).get("nodeName"):
                    ep["nodeName"] = p["spec"]["nodeName"]
                for g in groups:
                    if g[0] == ports:
                        g[1].append(ep)
                        break
                else:
                    groups.append((ports, [ep]))
            if not groups:
                groups = [([], [])]
            for i, (ports, eps) in enumerate(groups):
                name = "%s-%s" % (m["name"], suffix) + ("" if i == 0 else "-%d" % (i + 1))
                want[name] = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                              "metadata": {"name": name, "namespace": ns,
                                           "labels": {SVC_LABEL: m["name"], MANAGED_LABEL: MANAGED_BY},
                                           "ownerReferences": [owner_ref(s, "Service", "v1")]},
                              "addressType": fam, "endpoints": eps, "ports": ports}
        have = {e["metadata"]["name"]: e for e in self._list("endpointslices")
                if e["metadata"].get("namespace") == ns
                and (e["metadata"].get("labels") or {}).get(SVC_LABEL) == m["name"]
                and (e["metadata"].get("labels") or {}).get(MANAGED_LABEL) == MANAGED_BY}
        for name, obj in want.items():
            cur = have.get(name)
            if cur is None:
                self._create("endpointslices", obj)
                continue
            same = all(cur.get(k) == obj.get(k) for k in ("addressType", "endpoints", "ports")) and \
                (cur["metadata"].get("labels") or {}) == obj["metadata"]["labels"] and \
                (cur["metadata"].get("ownerReferences") or []) == obj["metadata"]["ownerReferences"]
            if same:
                continue
            if cur.get("addressType") != obj["addressType"]:
                self._delete("endpointslices", cur, "address type changed")
                continue
            upd = copy.deepcopy(cur)
            upd.setdefault("kind", "EndpointSlice")
            upd.setdefault("apiVersion", "discovery.k8s.io/v1")
            upd["metadata"]["labels"] = obj["metadata"]["labels"]
            upd["metadata"]["ownerReferences"] = obj["metadata"]["ownerReferences"]
            upd["endpoints"], upd["ports"] = obj["endpoints"], obj["ports"]
            self._do("endpointslices %s/%s: %s" % (ns, name, [(e["addresses"][0], e["conditions"]["ready"])
                                                           for e in obj["endpoints"]]), self.api.update, upd)
        for name, cur in have.items():
            if name not in want:
                self._delete("endpointslices", cur, "not wanted for service %s" % m["name"])

    @staticmethod
    def _resolve_ports(sports, p):
        out = []
        for sp in sports:
            tp = sp.get("targetPort", sp.get("port"))
            if isinstance(tp, str) and not tp.isdigit():
                num = None
                for c in (p.get("spec") or {}).get("containers") or []:
                    for cp in c.get("ports") or []:
                        if cp.get("name") == tp:
                            num = cp["containerPort"]
                if num is None:
                    continue  # like the real controller: this pod has no such port
                tp = num
            e = {"port": int(tp), "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                e["name"] = sp["name"]
            elif len(sports) == 1:
                e["name"] = ""
            if sp.get("appProtocol"):
                e["appProtocol"] = sp["appProtocol"]
            out.append(e)
        return out

    # ---- kube-proxy ---------------------------------------------------------------------
    def _proxy(self, services, slices):
        want = {}  # (ip, port) -> [endpoints]
        for s in services:
            spec = s.get("spec") or {}
            ips = [ip for ip in (spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
                   if ip and ip != "None"]
            if not ips:
                continue
            ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
            mine = [e for e in slices if e["metadata"].get("namespace") == ns
                    and (e["metadata"].get("labels") or {}).get(SVC_LABEL) == name]
            for ip in ips:
                fam = "IPv6" if ":" in ip else "IPv4"
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    continue
                for sp in spec.get("ports") or []:
                    if sp.get("protocol", "TCP") != "TCP":
                        continue
                    eps = []
                    for e in mine:
                        if e.get("addressType") != fam:
                            continue
                        port = next((x.get("port") for x in e.get("ports") or []
                                     if (x.get("name") or "") == (sp.get("name") or "")), None)
                        if port is None:
                            continue
                        for ep in e.get("endpoints") or []:
                            if (ep.get("conditions") or {}).get("ready", True):
                                eps += [(a, port) for a in ep.get("addresses") or []]
                    want[(ip, sp["port"])] = eps
        for key in list(self._fw):
            if key not in want:
                self._fw.pop(key).close()
                self.log("kube-proxy: %s stopped" % N.hostport(*key))
        for key, eps in want.items():
            if self._fw_eps.get(key) != eps:
                self.log("kube-proxy: %s -> %s" % (N.hostport(*key),
                                                   [N.hostport(*e) for e in eps] or "(no ready endpoint)"))
            self._fw_eps[key] = eps
            if key not in self._fw:
                try:
                    self._vip_add(key[0])
                    self._fw[key] = _Listener(self, key)
                except Exception:
                    self._error("kube-proxy: listen on %s" % N.hostport(*key))
        for key in list(self._fw_eps):
            if key not in want:
                del self._fw_eps[key]
        for ip in list(self._vips):
            if not any(k[0] == ip for k in self._fw):
                self._vip_del(ip)

    def _pick(self, key):
        eps = list(self._fw_eps.get(key) or [])
        if not eps:
            return []
        self._rr += 1
        i = self._rr % len(eps)
        return eps[i:] + eps[:i]

    # ---- for tests ----------------------------------------------------------------------
    def check(self):
        """Raise if the loop died or a step failed (with the tracebacks)."""
        if self._thread is not None and not self._thread.is_alive() and not self.closed:
            raise AssertionError("kube stand-in thread died; log %s" % self.log_path)
        if self.errors:
            raise AssertionError("kube stand-in errors:\n" + "\n".join(self.errors[-5:]))

    def wait(self, pred, timeout=20, what="condition"):
        """Poll pred() until truthy; returns its value or fails with what."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if self._thread is not None and not self._thread.is_alive() and not self.closed:
                raise AssertionError("kube stand-in thread died while waiting for %s" % what)
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %ss waiting for %s (stand-in log: %s)\n%s"
                                     % (timeout, what, self.log_path, self.log_tail()))
            time.sleep(0.05)

    def log_tail(self, n=30):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def pods(self, ns, selector=None):
        out = [p for p in self.api.list("pods", ns) if p["metadata"].get("namespace") == ns]
        if selector is not None:
            out = [p for p in out if labels_match(selector, p["metadata"].get("labels"))]
        return sorted(out, key=lambda p: p["metadata"]["name"])

    def wait_pods(self, ns, selector, count, ready=True, timeout=20):
        """Exactly count Pods of ns matching selector (a label map), all
        Ready (unless ready=False) and none terminating; returns them."""
        def ok():
            ps = [p for p in self.pods(ns, selector) if not p["metadata"].get("deletionTimestamp")]
            if len(ps) == count and (not ready or all(pod_ready(p) for p in ps)):
                return ps or [None]
            return None
        r = self.wait(ok, timeout, "%d %spods %s in %s" % (count, "ready " if ready else "", selector, ns))
        return [p for p in r if p is not None]

    def wait_ready(self, ns, name, timeout=20):
        """The Pod once it is Ready (API object)."""
        return self.wait(lambda: (lambda p: p if p and pod_ready(p) else None)(self.api.get("pods", ns, name)),
                         timeout, "pod %s/%s ready" % (ns, name))

    def wait_deployment(self, ns, name, timeout=20):
        """Until the Deployment's status says it rolled out: observedGeneration
        current, updated == ready == replicas == spec.replicas."""
        def ok():
            d = self.api.get("deployments", ns, name)
            if not d:
                return None
            st, want = d.get("status") or {}, d["spec"].get("replicas", 1)
            if st.get("observedGeneration") == d["metadata"].get("generation") and \
                    st.get("updatedReplicas") == want and st.get("readyReplicas") == want and \
                    st.get("replicas") == want:
                return d
            return None
        return self.wait(ok, timeout, "deployment %s/%s rolled out" % (ns, name))

    def wait_job(self, ns, name, timeout=30):
        """The Job once it has a Complete or Failed condition."""
        return self.wait(lambda: (lambda j: j if j and (is_true(j, "Complete") or is_true(j, "Failed")) else None)(
            self.api.get("jobs", ns, name)), timeout, "job %s/%s finished" % (ns, name))

    def sandbox(self, ns, name):
        """What the stand-in runs for a Pod: {"uid", "key" (node pod name:
        node.pod_run(key, ...)), "netns", "v4", "v6", "cgroup", "pids",
        "done"} or None."""
        with self._lock:
            for sb in self._sandboxes.values():
                if (sb.ns, sb.name) == (ns, name):
                    return {"uid": sb.uid, "key": sb.key, "netns": sb.netns, "v4": sb.v4, "v6": sb.v6,
                            "cgroup": sb.cg, "done": sb.done,
                            "pids": [c.proc.pid for c in sb.init + sb.ctrs if c.alive()]}
        return None

    def server_events(self, name, kinds=None, since=0):
        """The JSON-lines events of a server_image() server named name
        (servers.py: accept, request, error, close), after byte offset since
        (a previous len of the file: server_log_size(name))."""
        return N.server_events(os.path.join(self.log_dir, name + ".log"), since, kinds)

    def server_log_size(self, name):
        try:
            return os.path.getsize(os.path.join(self.log_dir, name + ".log"))
        except FileNotFoundError:
            return 0

    def pod_argv(self, ns, name, argv, container=None):
        """argv run as a process of the Pod: in its netns and its container's
        cgroup (container: a name, default the first), like kubectl exec, so
        shuntd's cgroup hooks and a SandboxOverride of the Pod apply to it.
        For N.run() or node.spawn(); it must end before the Pod goes."""
        sb = self.sandbox(ns, name)
        if sb is None or not sb["netns"]:
            raise N.HarnessError("pod %s/%s has no running sandbox" % (ns, name))
        with self._lock:
            s = self._sandboxes[sb["uid"]]
            c = container or s.ctrs[0].name
        cg = os.path.join(sb["cgroup"], c)
        return ["sh", "-c", "echo $$ > %s && exec nsenter --net=%s %s" % (
            shlex.quote(os.path.join(cg, "cgroup.procs")), shlex.quote(sb["netns"]),
            shlex.join([str(a) for a in argv]))]

    def pod_ip(self, ns, name):
        sb = self.sandbox(ns, name)
        return (sb["v4"], sb["v6"]) if sb else (None, None)

    def sandboxes(self):
        with self._lock:
            return [self.sandbox(sb.ns, sb.name) for sb in list(self._sandboxes.values())]


class _Listener:
    """One ClusterIP:port of the kube-proxy stand-in: a listening socket in
    the node netns and a thread per connection pair direction."""

    def __init__(self, kube, key):
        self.kube = kube
        self.key = key
        self.closed = False
        self.conns = set()
        self.lock = threading.Lock()
        ip, port = key
        s = socket_in_netns(kube.node.netns_path("node"), _fam(ip))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ":" in ip:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((ip, port))
        s.listen(128)
        s.settimeout(0.2)
        self.sock = s
        self.thread = threading.Thread(target=self._accept, name="kube-proxy-%s" % N.hostport(*key), daemon=True)
        self.thread.start()
        kube.log("kube-proxy: listening on %s" % N.hostport(*key))

    def _accept(self):
        while not self.closed:
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.kube.proxy_conns.append((self.key, tuple(peer[:2])))
            threading.Thread(target=self._serve, args=(c, peer), daemon=True).start()

    def _track(self, s, add=True):
        with self.lock:
            (self.conns.add if add else self.conns.discard)(s)

    def _serve(self, c, peer):
        c.settimeout(None)
        self._track(c)
        up = None
        u = None
        for ep in self.kube._pick(self.key):
            try:
                u = socket_in_netns(self.kube.node.netns_path("node"), _fam(ep[0]))
                u.settimeout(2)
                u.connect(ep)
                u.settimeout(None)
                up = u
                break
            except OSError as e:
                self.kube.log("kube-proxy: %s -> %s: %r" % (N.hostport(*self.key), N.hostport(*ep), e))
                try:
                    u.close()
                except Exception:
                    pass
        if up is None:
            self.kube.log("kube-proxy: %s: no endpoint for %s, reset" % (N.hostport(*self.key), peer[:2]))
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            c.close()
            self._track(c, False)
            return
        self._track(up)
        t = threading.Thread(target=self._pump, args=(up, c), daemon=True)
        t.start()
        self._pump(c, up)
        t.join()
        for s in (c, up):
            self._track(s, False)
            s.close()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(2)
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
