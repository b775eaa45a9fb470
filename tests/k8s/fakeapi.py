#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""A fake Kubernetes API server for what shuntd reads (docs/k8s-contract.md).

Serves list and watch of SandboxRoutes, Services, EndpointSlices and Pods,
cluster-wide and per namespace, the way the real API server does:

  GET <path>?limit=N&continue=T        {"kind": "ServiceList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": "42",
                                        "continue": "...", "remainingItemCount": N},
                                        "items": [...]}   (items without kind/apiVersion)
  GET <path>?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N
                                       200, chunked, one {"type", "object"} per line:
                                       ADDED / MODIFIED / DELETED / BOOKMARK / ERROR
  GET <path>/NAME (namespaced path)    one object (with kind/apiVersion)

One resourceVersion counter for everything (like etcd's revision). Watches
replay the events after RV from a bounded history; an RV older than the
history gets an ERROR event carrying a Status with code 410 ("too old
resource version"), or an HTTP 410 when the test asks for that. An empty RV
or "0" starts with a synthetic ADDED for every object. Bookmarks every
bookmark_interval seconds when allowed; timeoutSeconds ends the stream
cleanly. A wrong or missing "Authorization: Bearer" is a 401 Status. A
continue token names a snapshot of the list (consistent pages); a token
whose snapshot is gone is a 410 Expired, as for a compacted revision.

In-process use (the e2e tests and tests/k8s/scale.py):

    api = FakeAPI(token="t0", tls=make_certs(dir, ["127.0.0.1"]), netns="/run/netns/x-node")
    api.start()                 # listens; api.url is https://127.0.0.1:PORT
    api.apply(service("shop", "orders", "10.96.0.10", [("http", 80, 8080)]))
    api.delete("services", "shop", "orders")
    api.drop_watches(); api.force_gone(mode="event"|"http"); api.compact()
    api.stop(); api.start()     # same port
    api.set_token("t1"); api.set_latency(0.2)
    api.requests(...)           # what clients asked, with the status answered
    api.close()

Created in netns=PATH, the listening socket lives in that network namespace
(the creating thread enters it for the socket() call only), so a shuntd
started there reaches it on 127.0.0.1 while the tests keep a Python handle.

Standalone, with a small control endpoint (plain HTTP, JSON bodies):

    fakeapi.py --listen 127.0.0.1:6443 [--tls-dir DIR] [--token T]
               [--control 127.0.0.1:6444] [--load objects.json]
    curl -s -XPOST 127.0.0.1:6444/apply -d @service.json
    curl -s -XPOST 127.0.0.1:6444/delete -d '{"resource":"services","namespace":"shop","name":"orders"}'
    curl -s -XPOST 127.0.0.1:6444/drop-watches | /force-gone -d '{"mode":"http"}' | /compact
           | /stop | /start | /token -d '{"token":"t1"}' | /latency -d '{"seconds":0.2}'
    curl -s 127.0.0.1:6444/state       (resourceVersion, counts, watches, requests)

Python 3 standard library only; certificates come from the openssl CLI.
"""

import argparse
import base64
import bisect
import copy
import ctypes
import datetime
import http.server
import json
import os
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

# resource -> (group path, apiVersion, kind)
RESOURCES = {
    "sandboxroutes": ("/apis/shunt.dev/v1alpha1", "shunt.dev/v1alpha1", "SandboxRoute"),
    "services": ("/api/v1", "v1", "Service"),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "discovery.k8s.io/v1", "EndpointSlice"),
    "pods": ("/api/v1", "v1", "Pod"),
    "sandboxoverrides": ("/apis/shunt.dev/v1alpha1", "shunt.dev/v1alpha1", "SandboxOverride"),
}
KIND_TO_RESOURCE = {v[2]: k for k, v in RESOURCES.items()}

_PATH_RE = re.compile(r"^(?P<group>/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
                      r"/(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?/?$")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def now_rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code, reason, message):
    """A metav1.Status, as the API server sends for failures."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


# ---- objects with the real field layout ---------------------------------------
def _meta(namespace, name, labels=None, **extra):
    m = {"name": name, "namespace": namespace}
    if labels:
        m["labels"] = dict(labels)
    m.update(extra)
    return m


def service(namespace, name, cluster_ip, ports, cluster_ips=None, labels=None):
    """ports: [(name, port, targetPort)] or [(name, port, targetPort, protocol)];
    cluster_ip "None" makes a headless Service."""
    ps = []
    for p in ports:
        pname, port, target = p[0], p[1], p[2]
        proto = p[3] if len(p) > 3 else "TCP"
        e = {"port": port, "targetPort": target, "protocol": proto}
        if pname:
            e["name"] = pname
        ps.append(e)
    ips = list(cluster_ips) if cluster_ips else [cluster_ip]
    fams = ["IPv6" if ":" in ip else "IPv4" for ip in ips] if cluster_ip != "None" else ["IPv4"]
    return {"kind": "Service", "apiVersion": "v1", "metadata": _meta(namespace, name, labels),
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": ips, "ports": ps,
                     "ipFamilies": fams, "ipFamilyPolicy": "SingleStack" if len(ips) == 1 else "PreferDualStack",
                     "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}}


def endpointslice(namespace, name, service_name, endpoints, ports, address_type="IPv4"):
    """endpoints: [(ip, ready)] or [(ip, ready, pod_name)]; ports: [(name, port)]
    (name None for an unnamed port)."""
    eps = []
    for e in endpoints:
        ip, ready = e[0], e[1]
        ep = {"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": False}}
        if len(e) > 2 and e[2]:
            ep["targetRef"] = {"kind": "Pod", "namespace": namespace, "name": e[2]}
        eps.append(ep)
    ps = []
    for pname, port in ports:
        p = {"port": port, "protocol": "TCP"}
        if pname is not None:
            p["name"] = pname
        ps.append(p)
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": _meta(namespace, name, {"kubernetes.io/service-name": service_name,
                                                "endpointslice.kubernetes.io/managed-by":
                                                    "endpointslice-controller.k8s.io"}),
            "addressType": address_type, "endpoints": eps, "ports": ps}


def pod(namespace, name, labels, ips, ready=True, phase="Running", node="node-1", uid=None):
    """ips: a list of pod IPs (the first is status.podIP); [] before scheduling.
    uid: metadata.uid (apply() makes one up when None)."""
    ips = [ips] if isinstance(ips, str) else list(ips)
    st = {"phase": phase, "conditions": [
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": "True" if ready else "False"},
        {"type": "ContainersReady", "status": "True" if ready else "False"},
        {"type": "PodScheduled", "status": "True"}]}
    if ips:
        st["podIP"] = ips[0]
        st["podIPs"] = [{"ip": ip} for ip in ips]
        st["hostIP"] = "10.0.0.1"
    extra = {"uid": uid} if uid else {}
    return {"kind": "Pod", "apiVersion": "v1", "metadata": _meta(namespace, name, labels, **extra),
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
            "status": st}


def sandboxroute(namespace, name, service_name, keys, port, selector=None, addresses=None, ports=None,
                 ttl=None, fallback=None, match_expressions=None):
    sb = {"port": port}
    if addresses is not None:
        sb["addresses"] = list(addresses)
    if selector is not None or match_expressions is not None:
        sel = {}
        if selector is not None:
            sel["matchLabels"] = dict(selector)
        if match_expressions is not None:
            sel["matchExpressions"] = list(match_expressions)
        sb["selector"] = sel
    spec = {"service": {"name": service_name}, "keys": list(keys), "sandbox": sb}
    if ports is not None:
        spec["service"]["ports"] = list(ports)
    if ttl is not None:
        spec["ttl"] = ttl
    if fallback is not None:
        spec["fallback"] = fallback
    return {"kind": "SandboxRoute", "apiVersion": "shunt.dev/v1alpha1", "metadata": _meta(namespace, name),
            "spec": spec}


def sandboxoverride(namespace, name, pod_selector, destination, to, ttl=None):
    """destination: {"service": NAME | "addresses": [...], "port": N};
    to: {"service": NAME | "selector": {"matchLabels": ...} | "addresses": [...], "port": N}
    (deploy/crd-sandboxoverride.yaml)."""
    spec = {"podSelector": {"matchLabels": dict(pod_selector)}, "destination": dict(destination),
            "to": dict(to)}
    if ttl is not None:
        spec["ttl"] = ttl
    return {"kind": "SandboxOverride", "apiVersion": "shunt.dev/v1alpha1",
            "metadata": _meta(namespace, name), "spec": spec}


def make_certs(directory, ips=("127.0.0.1",), dns=("localhost",)):
    """A throwaway CA and a server certificate it signs (openssl CLI).
    Returns {"ca", "cert", "key"} file paths."""
    os.makedirs(directory, exist_ok=True)
    p = {k: os.path.join(directory, f) for k, f in
         (("ca", "ca.crt"), ("ca_key", "ca.key"), ("cert", "server.crt"), ("key", "server.key"),
          ("csr", "server.csr"), ("ext", "server.ext"))}
    san = ",".join(["IP:" + ip for ip in ips] + ["DNS:" + d for d in dns])

    def ossl(*args):
        r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (args[0], r.stderr.strip()))

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2", "-subj", "/CN=fakeapi-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", p["key"], "-out", p["csr"], "-subj", "/CN=kube-apiserver")
    with open(p["ext"], "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n" % san)
    ossl("x509", "-req", "-in", p["csr"], "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial",
         "-out", p["cert"], "-days", "2", "-extfile", p["ext"])
    return {"ca": p["ca"], "cert": p["cert"], "key": p["key"]}


# ---- label selectors (for clients that filter server-side) ------------------------
def _parse_selector(text):
    """'a=b,c!=d,e,!f,g in (x,y)' -> predicate over a labels dict."""
    if not text:
        return lambda labels: True
    reqs = []
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        part = part.strip()
        m = re.match(r"^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$", part)
        if m:
            vals = {v.strip() for v in m.group(3).split(",")}
            if m.group(2) == "in":
                reqs.append(lambda l, k=m.group(1), v=vals: l.get(k) in v)
            else:
                reqs.append(lambda l, k=m.group(1), v=vals: l.get(k) not in v)
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(lambda l, k=k.strip(), v=v.strip(): l.get(k) != v)
        elif "=" in part:
            k, v = part.replace("==", "=").split("=", 1)
            reqs.append(lambda l, k=k.strip(), v=v.strip(): l.get(k) == v)
        elif part.startswith("!"):
            reqs.append(lambda l, k=part[1:].strip(): k not in l)
        elif part:
            reqs.append(lambda l, k=part: k in l)
    return lambda labels: all(r(labels) for r in reqs)


# ---- the server ---------------------------------------------------------------------
class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, api, sock_addr, handler):
        self.api = api
        self.tls_ctx = None
        super().__init__(sock_addr, handler, bind_and_activate=False)

    def get_request(self):
        conn, addr = self.socket.accept()
        if self.tls_ctx is not None:
            # The handshake happens on the first read, in the handler's
            # thread: a silent client cannot hold up accept().
            conn = self.tls_ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request, client_address):
        # Clients that hang up, fail the TLS handshake or are cut by
        # stop()/drop_watches() are normal here: note, do not print.
        self.api._note_conn_error(repr(sys.exc_info()[1]))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeapi"

    def log_message(self, fmt, *args):  # quiet; the request log is api.requests()
        pass

    def setup(self):
        super().setup()
        self.server.api._conn_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.api._conn_closed(self.connection)

    def do_GET(self):
        self.server.api._handle(self)

    def send_json(self, code, obj, headers=()):
        body = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class FakeAPI:
    def __init__(self, host="127.0.0.1", port=0, token=None, tls=None, netns=None, history=2000,
                 bookmark_interval=1.0, default_watch_timeout=1800):
        """token None accepts anything (no Authorization needed); tls is
        make_certs()'s dict or None for plain HTTP."""
        self.host = host
        self.port = port
        self.tls = tls
        self.netns = netns
        self.history_limit = history
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self._token = token
        self._latency = 0.0
        self._lock = threading.Condition()
        self._rv = 1
        self._objects = {r: {} for r in RESOURCES}  # resource -> {(ns, name): obj}
        self._history = []  # [(rv, resource, type, obj)] ascending rv
        self._history_rvs = []
        self._oldest = 0  # every event with rv > _oldest is in _history
        self._snapshots = {}  # continue token id -> (rv, [objects])
        self._snap_order = []
        self._drop_gen = 0
        self._gone = []  # pending forced 410s: [(resource or None, mode)]
        self._conns = set()
        self._watches = {}  # id -> {"resource", "ns", "since", "peer"}
        self._watch_n = 0
        self._reqlog = []
        self._sent = {}  # (resource, rv) -> monotonic time the event went out on a watch
        self._conn_errors = []
        self._server = None
        self._thread = None

    # ---- lifecycle --------------------------------------------------------------
    @property
    def url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % ("https" if self.tls else "http", host, self.port)

    def _make_socket(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if not self.netns:
            return socket.socket(fam, socket.SOCK_STREAM)
        # Enter the netns on this thread only, for the socket() call: the
        # socket belongs to that namespace for good.
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.netns, os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns(%s)" % self.netns)
            try:
                return socket.socket(fam, socket.SOCK_STREAM)
            finally:
                if _libc.setns(own, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to our own netns")
        finally:
            os.close(own)
            os.close(target)

    def start(self):
        """Listen (again) on host:port; port 0 picks one the first time and
        keeps it for later starts."""
        if self._server is not None:
            return self
        srv = _Server(self, (self.host, self.port), _Handler)
        srv.socket.close()
        srv.socket = self._make_socket()
        srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.socket.bind((self.host, self.port))
        srv.socket.listen(srv.request_queue_size)
        srv.server_address = srv.socket.getsockname()
        self.port = srv.server_address[1]
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
            srv.tls_ctx = ctx
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fakeapi-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and cut every open connection (the objects and the
        resourceVersion stay)."""
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        self._cut_all()
        self._thread.join(5)

    def close(self):
        self.stop()

    def _cut_all(self):
        with self._lock:
            conns = list(self._conns)
            self._drop_gen += 1
            self._lock.notify_all()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _conn_opened(self, c):
        with self._lock:
            self._conns.add(c)

    def _conn_closed(self, c):
        with self._lock:
            self._conns.discard(c)

    def _note_conn_error(self, e):
        with self._lock:
            self._conn_errors = self._conn_errors[-99:] + [e]

    # ---- control ------------------------------------------------------------------
    def set_token(self, token):
        with self._lock:
            self._token = token

    def set_latency(self, seconds):
        """Delay before every API answer (lists, watch starts, 401s)."""
        with self._lock:
            self._latency = float(seconds)

    def reset_faults(self):
        """No latency, no pending forced 410s."""
        with self._lock:
            self._latency = 0.0
            self._gone = []

    def drop_watches(self):
        """Cut every open watch stream mid-way (no terminating chunk)."""
        with self._lock:
            self._drop_gen += 1
            self._lock.notify_all()

    def force_gone(self, count=1, mode="event", resource=None):
        """The next count watches (of resource, or any) get a 410: an ERROR
        event with a Status (mode "event", what the real server sends for a
        too old RV) or an HTTP 410 (mode "http")."""
        if mode not in ("event", "http"):
            raise ValueError("mode must be event or http")
        with self._lock:
            self._gone += [(resource, mode)] * count

    def compact(self):
        """Forget the whole history: any watch from an RV before now is 410."""
        with self._lock:
            self._history = []
            self._history_rvs = []
            self._oldest = self._rv
            self._snapshots.clear()
            self._snap_order = []

    @property
    def resource_version(self):
        with self._lock:
            return self._rv

    def watches(self, resource=None):
        with self._lock:
            return [dict(w) for w in self._watches.values() if resource in (None, w["resource"])]

    def requests(self, since=0, resource=None, watch=None):
        """Request records after index since: dicts with i, t (monotonic),
        resource, ns, watch, query, status, auth."""
        with self._lock:
            out = self._reqlog[since:]
        return [r for r in out if (resource is None or r["resource"] == resource)
                and (watch is None or r["watch"] == watch)]

    def request_count(self):
        with self._lock:
            return len(self._reqlog)

    def sent_time(self, resource, rv):
        """When the event with this RV was first written to a watch of
        resource (stamped just before the send() call)."""
        with self._lock:
            return self._sent.get((resource, rv))

    def conn_errors(self):
        with self._lock:
            return list(self._conn_errors)

    # ---- objects ------------------------------------------------------------------
    @staticmethod
    def _resource_of(obj_or_name):
        if isinstance(obj_or_name, dict):
            return KIND_TO_RESOURCE[obj_or_name["kind"]]
        if obj_or_name in RESOURCES:
            return obj_or_name
        return KIND_TO_RESOURCE[obj_or_name]

    def _record(self, res, typ, obj):
        self._history.append((self._rv, res, typ, obj))
        self._history_rvs.append(self._rv)
        if len(self._history) > self.history_limit:
            drop = len(self._history) - self.history_limit
            self._oldest = self._history_rvs[drop - 1]
            del self._history[:drop]
            del self._history_rvs[:drop]
        self._lock.notify_all()

    def apply(self, obj):
        """Create or replace an object (kind decides the resource). Keeps
        uid and creationTimestamp of an existing one unless obj sets them.
        Returns the stored object (with its resourceVersion)."""
        res = self._resource_of(obj)
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md.setdefault("namespace", "default")
        key = (md["namespace"], md["name"])
        with self._lock:
            old = self._objects[res].get(key)
            self._rv += 1
            if old is None:
                md.setdefault("uid", str(uuid.uuid4()))
                md.setdefault("creationTimestamp", now_rfc3339())
                md.setdefault("generation", 1)
            else:
                om = old["metadata"]
                md.setdefault("uid", om["uid"])
                md.setdefault("creationTimestamp", om["creationTimestamp"])
                md["generation"] = om.get("generation", 1) + (1 if obj.get("spec") != old.get("spec") else 0)
            md["resourceVersion"] = str(self._rv)
            self._objects[res][key] = obj
            self._record(res, "ADDED" if old is None else "MODIFIED", obj)
            return copy.deepcopy(obj)

    def apply_many(self, objs):
        return [self.apply(o) for o in objs]

    def delete(self, resource, namespace, name):
        """Delete; the DELETED event carries the last state with a new RV.
        Returns that RV, or None if there was no such object."""
        res = self._resource_of(resource)
        with self._lock:
            old = self._objects[res].pop((namespace, name), None)
            if old is None:
                return None
            self._rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._record(res, "DELETED", gone)
            return self._rv

    def get(self, resource, namespace, name):
        res = self._resource_of(resource)
        with self._lock:
            o = self._objects[res].get((namespace, name))
            return copy.deepcopy(o) if o else None

    def objects(self, resource):
        """Every stored object of a resource (copies)."""
        with self._lock:
            return copy.deepcopy(list(self._objects[self._resource_of(resource)].values()))

    def count(self, resource):
        with self._lock:
            return len(self._objects[self._resource_of(resource)])

    # ---- request handling ------------------------------------------------------------
    def _handle(self, h):
        t0 = time.monotonic()
        u = urllib.parse.urlsplit(h.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        m = _PATH_RE.match(u.path)
        with self._lock:
            latency, token = self._latency, self._token
        rec = {"i": 0, "t": t0, "path": u.path, "query": q, "resource": None, "ns": None,
               "watch": q.get("watch") in ("1", "true"), "status": 0,
               "auth": h.headers.get("Authorization", "")}
        with self._lock:
            rec["i"] = len(self._reqlog)
            self._reqlog.append(rec)
        if latency:
            time.sleep(latency)
        if u.path in ("/version", "/healthz", "/readyz", "/livez"):  # public, like system:public-info-viewer
            rec["status"] = 200
            return h.send_json(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fakeapi"}
                               if u.path == "/version" else {"status": "ok"})
        if token is not None and rec["auth"] != "Bearer " + token:
            rec["status"] = 401
            return h.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        if not m or m.group("res") not in RESOURCES or RESOURCES[m.group("res")][0] != m.group("group"):
            rec["status"] = 404
            return h.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        res, ns, name = m.group("res"), m.group("ns"), m.group("name")
        rec["resource"], rec["ns"] = res, ns
        if name is not None:
            if ns is None:
                rec["status"] = 404
                return h.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
            o = self.get(res, ns, name)
            if o is None:
                rec["status"] = 404
                return h.send_json(404, status(404, "NotFound", '%s "%s" not found' % (res, name)))
            rec["status"] = 200
            return h.send_json(200, o)
        try:
            sel = _parse_selector(q.get("labelSelector", ""))
        except re.error:
            rec["status"] = 400
            return h.send_json(400, status(400, "BadRequest", "unable to parse requirement"))
        if rec["watch"]:
            return self._watch(h, rec, res, ns, q, sel)
        return self._list(h, rec, res, ns, q, sel)

    def _matching(self, res, ns, sel):
        items = [o for (ons, _), o in self._objects[res].items() if ns is None or ons == ns]
        items = [o for o in items if sel(o["metadata"].get("labels") or {})]
        items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
        return items

    def _list(self, h, rec, res, ns, q, sel):
        group, api_version, kind = RESOURCES[res]
        try:
            limit = int(q.get("limit") or 0)
            if limit < 0:
                raise ValueError
        except ValueError:
            rec["status"] = 400
            return h.send_json(400, status(400, "BadRequest", "invalid limit"))
        cont = q.get("continue")
        with self._lock:
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode() + b"=" * (-len(cont) % 4)))
                    snap_id, start = tok["s"], int(tok["start"])
                except (ValueError, KeyError, TypeError):
                    rec["status"] = 400
                    return h.send_json(400, status(400, "BadRequest", "continue key is not valid"))
                snap = self._snapshots.get(snap_id)
                if snap is None or snap[2] != (res, ns):
                    rec["status"] = 410
                    return h.send_json(410, status(
                        410, "Expired", "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter."))
                rv, items = snap[0], snap[1]
            else:
                rv, items, start = self._rv, self._matching(res, ns, sel), 0
                snap_id = None
            page = items[start:start + limit] if limit else items[start:]
            nxt = start + len(page)
            meta = {"resourceVersion": str(rv)}
            if nxt < len(items):
                if snap_id is None:
                    snap_id = uuid.uuid4().hex
                    self._snapshots[snap_id] = (rv, items, (res, ns))
                    self._snap_order.append(snap_id)
                    while len(self._snap_order) > 32:
                        self._snapshots.pop(self._snap_order.pop(0), None)
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"s": snap_id, "start": nxt, "rv": rv}).encode()).decode().rstrip("=")
                meta["remainingItemCount"] = len(items) - nxt
            body_items = []
            for o in page:
                o = dict(o)
                o.pop("kind", None)
                o.pop("apiVersion", None)
                body_items.append(o)
        rec["status"] = 200
        h.send_json(200, {"kind": kind + "List", "apiVersion": api_version, "metadata": meta, "items": body_items})

    def _watch(self, h, rec, res, ns, q, sel):
        group, api_version, kind = RESOURCES[res]
        rv_text = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout = int(q["timeoutSeconds"]) if q.get("timeoutSeconds") else self.default_watch_timeout
            since = int(rv_text) if rv_text not in ("", "0") else None
        except ValueError:
            rec["status"] = 400
            return h.send_json(400, status(400, "BadRequest", "invalid resourceVersion or timeoutSeconds"))
        with self._lock:
            gone_mode = None
            for i, (gres, mode) in enumerate(self._gone):
                if gres in (None, res):
                    gone_mode = mode
                    del self._gone[i]
                    break
            if gone_mode is None and since is not None and since < self._oldest:
                gone_mode = "event"
            oldest = self._oldest
            drop_gen = self._drop_gen
            initial = []
            if since is None:  # "0"/"": start with the current state, like the watch cache
                since = self._rv
                initial = [("ADDED", o) for o in self._matching(res, ns, sel)]
        too_old = "too old resource version: %s (%d)" % (rv_text or "0", oldest + 1)
        if gone_mode == "http":
            rec["status"] = 410
            return h.send_json(410, status(410, "Expired", too_old))
        rec["status"] = 200
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        if gone_mode == "event":
            h.chunk(self._event("ERROR", status(410, "Expired", too_old)))
            h.chunk(b"")
            return
        with self._lock:
            self._watch_n += 1
            wid = self._watch_n
            self._watches[wid] = {"resource": res, "ns": ns, "since": since, "peer": h.client_address[0],
                                  "id": wid}
        end = time.monotonic() + timeout
        next_bm = time.monotonic() + self.bookmark_interval
        pos = since
        try:
            for typ, o in initial:
                h.chunk(self._event(typ, self._typed(o, kind, api_version)))
            while True:
                with self._lock:
                    while True:
                        if self._drop_gen != drop_gen or self._server is None:
                            dropped = True
                            break
                        dropped = False
                        i = bisect.bisect_right(self._history_rvs, pos)
                        evs = [e for e in self._history[i:] if e[1] == res and
                               (ns is None or e[3]["metadata"]["namespace"] == ns) and
                               sel(e[3]["metadata"].get("labels") or {})]
                        if self._history_rvs and self._history_rvs[-1] > pos:
                            if pos < self._oldest:  # history moved past us: compacted
                                evs = None
                            newpos = self._history_rvs[-1]
                        else:
                            newpos = pos
                        if evs or evs is None:
                            break
                        pos = newpos
                        t = time.monotonic()
                        wake = min(end, next_bm) if bookmarks else end
                        if t >= wake:
                            break
                        self._lock.wait(wake - t)
                    rv_now = self._rv
                if dropped:
                    # Like a broken connection: no terminating chunk.
                    try:
                        h.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if evs is None:
                    h.chunk(self._event("ERROR", status(410, "Expired", "too old resource version: %d (%d)"
                                                        % (pos, self._oldest + 1))))
                    break
                for rv, _, typ, o in evs:
                    data = self._event(typ, o)
                    with self._lock:  # stamped before the send: the reader may act before we run again
                        self._sent.setdefault((res, rv), time.monotonic())
                    h.chunk(data)
                pos = newpos
                t = time.monotonic()
                if t >= end:
                    break
                if bookmarks and t >= next_bm:
                    h.chunk(self._event("BOOKMARK", {"kind": kind, "apiVersion": api_version,
                                                     "metadata": {"resourceVersion": str(max(pos, rv_now))}}))
                    pos = max(pos, rv_now)
                    next_bm = t + self.bookmark_interval
            h.chunk(b"")
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._watches.pop(wid, None)

    @staticmethod
    def _typed(o, kind, api_version):
        o = dict(o)
        o["kind"], o["apiVersion"] = kind, api_version
        return o

    @staticmethod
    def _event(typ, obj):
        return (json.dumps({"type": typ, "object": obj}, separators=(",", ":")) + "\n").encode()


# ---- standalone with a control endpoint ----------------------------------------------
class _ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        api = self.server.api
        if self.path == "/state":
            return self._reply(200, {"url": api.url, "resourceVersion": api.resource_version,
                                     "counts": {r: api.count(r) for r in RESOURCES},
                                     "watches": api.watches(), "requests": api.request_count(),
                                     "conn_errors": api.conn_errors()})
        if self.path.startswith("/requests"):
            return self._reply(200, api.requests())
        self._reply(404, {"error": "no such control path"})

    def do_POST(self):
        api = self.server.api
        n = int(self.headers.get("Content-Length") or 0)
        try:
            arg = json.loads(self.rfile.read(n) or b"{}")
            p = self.path
            if p == "/apply":
                out = api.apply_many(arg if isinstance(arg, list) else arg.get("items", [arg]))
                return self._reply(200, {"resourceVersions": [o["metadata"]["resourceVersion"] for o in out]})
            if p == "/delete":
                return self._reply(200, {"deleted": api.delete(arg["resource"], arg["namespace"], arg["name"])})
            if p == "/drop-watches":
                api.drop_watches()
            elif p == "/force-gone":
                api.force_gone(arg.get("count", 1), arg.get("mode", "event"), arg.get("resource"))
            elif p == "/compact":
                api.compact()
            elif p == "/stop":
                api.stop()
            elif p == "/start":
                api.start()
            elif p == "/token":
                api.set_token(arg.get("token"))
            elif p == "/latency":
                api.set_latency(arg.get("seconds", 0))
            else:
                return self._reply(404, {"error": "no such control path"})
            return self._reply(200, {"ok": True, "resourceVersion": api.resource_version})
        except (ValueError, KeyError, TypeError) as e:
            return self._reply(400, {"error": repr(e)})


def _hostport(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT of the API (default %(default)s)")
    ap.add_argument("--tls-dir", help="serve HTTPS with a fresh CA and certificate made here (ca.crt for clients)")
    ap.add_argument("--token", help="the valid bearer token (default: no authentication)")
    ap.add_argument("--control", help="HOST:PORT of the control endpoint (plain HTTP)")
    ap.add_argument("--netns", help="listen inside this network namespace (/run/netns/NAME)")
    ap.add_argument("--load", help="a JSON file with a list of objects to create first")
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    args = ap.parse_args()
    host, port = _hostport(args.listen)
    tls = make_certs(args.tls_dir, [host] if re.match(r"^[0-9.:]+$", host) else [], ["localhost"]) \
        if args.tls_dir else None
    api = FakeAPI(host, port, token=args.token, tls=tls, netns=args.netns, bookmark_interval=args.bookmark_interval)
    if args.load:
        with open(args.load) as f:
            data = json.load(f)
        api.apply_many(data if isinstance(data, list) else data.get("items", []))
    api.start()
    print("fakeapi: serving %s%s" % (api.url, " (CA %s)" % tls["ca"] if tls else ""), flush=True)
    if args.control:
        chost, cport = _hostport(args.control)
        ctl = http.server.ThreadingHTTPServer((chost, cport), _ControlHandler)
        ctl.api = api
        print("fakeapi: control on http://%s:%d" % (chost, cport), flush=True)
        threading.Thread(target=ctl.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
