# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Light tests of the fake API server itself (tests/k8s/fakeapi.py): the
behaviours shuntd's watcher is tested against must really be there.

Run by the e2e runner (tests/e2e/test_k8s.py imports these classes),
or alone: /usr/bin/python3 -m unittest discover -s tests/k8s -p 'test_*.py'
Needs no root; HTTPS needs the openssl CLI.
"""

import http.client
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakeapi as F  # noqa: E402

SVC_PATH = "/api/v1/services"


class Watch:
    """A watch stream read line by line from a raw chunked response."""

    def __init__(self, api, path, token="t0", ctx=None, timeout=10):
        self.conn = _conn(api, ctx, timeout)
        self.conn.request("GET", path, headers=_auth(token))
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next(self):
        """The next event, or None at the end of the stream."""
        line = self.resp.readline()
        if not line:
            return None
        return json.loads(line)

    def close(self):
        self.conn.close()


def _conn(api, ctx=None, timeout=10):
    if api.tls:
        return http.client.HTTPSConnection(api.host, api.port, context=ctx, timeout=timeout)
    return http.client.HTTPConnection(api.host, api.port, timeout=timeout)


def _auth(token):
    return {"Authorization": "Bearer " + token} if token else {}


def get(api, path, token="t0", ctx=None):
    c = _conn(api, ctx)
    try:
        c.request("GET", path, headers=_auth(token))
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


class FakeAPITest(unittest.TestCase):
    def setUp(self):
        self.api = F.FakeAPI(token="t0", bookmark_interval=0.3).start()
        self.api.apply(F.service("shop", "orders", "10.96.0.10", [("http", 80, 8080)]))
        self.api.apply(F.service("shop", "cart", "10.96.0.11", [("http", 80, 8080)]))
        self.api.apply(F.service("other", "x", "10.96.0.12", [(None, 80, 8080)]))

    def tearDown(self):
        self.api.close()

    def test_list_shapes_and_pagination(self):
        code, lst = get(self.api, SVC_PATH)
        self.assertEqual(code, 200)
        self.assertEqual((lst["kind"], lst["apiVersion"]), ("ServiceList", "v1"))
        self.assertEqual(lst["metadata"]["resourceVersion"], str(self.api.resource_version))
        self.assertEqual(len(lst["items"]), 3)
        for it in lst["items"]:
            self.assertNotIn("kind", it)
            self.assertNotIn("apiVersion", it)
            for f in ("uid", "resourceVersion", "creationTimestamp", "namespace", "name"):
                self.assertIn(f, it["metadata"])
        # Pages come from one snapshot: a change between pages is not seen.
        code, p1 = get(self.api, SVC_PATH + "?limit=2")
        self.assertEqual(len(p1["items"]), 2)
        self.assertEqual(p1["metadata"]["remainingItemCount"], 1)
        self.api.apply(F.service("zzz", "late", "10.96.0.99", [("http", 80, 8080)]))
        tok = urllib.parse.quote(p1["metadata"]["continue"])
        code, p2 = get(self.api, SVC_PATH + "?limit=2&continue=" + tok)
        self.assertEqual(code, 200)
        self.assertEqual(len(p2["items"]), 1)
        self.assertNotIn("continue", p2["metadata"])
        self.assertEqual(p2["metadata"]["resourceVersion"], p1["metadata"]["resourceVersion"])
        names = [i["metadata"]["name"] for i in p1["items"] + p2["items"]]
        self.assertEqual(sorted(names), ["cart", "orders", "x"])
        # A compacted snapshot: 410 Expired.
        self.api.compact()
        code, st = get(self.api, SVC_PATH + "?limit=2&continue=" + tok)
        self.assertEqual((code, st["kind"], st["code"]), (410, "Status", 410))
        # Namespaced list and get.
        code, ns = get(self.api, "/api/v1/namespaces/shop/services")
        self.assertEqual(sorted(i["metadata"]["name"] for i in ns["items"]), ["cart", "orders"])
        code, one = get(self.api, "/api/v1/namespaces/shop/services/orders")
        self.assertEqual((code, one["kind"], one["spec"]["clusterIP"]), (200, "Service", "10.96.0.10"))
        code, st = get(self.api, "/api/v1/nodes")
        self.assertEqual(code, 404)

    def test_bad_token_is_401_status(self):
        for tok in ("wrong", None):
            code, st = get(self.api, SVC_PATH, token=tok)
            self.assertEqual(code, 401)
            self.assertEqual((st["kind"], st["code"], st["reason"]), ("Status", 401, "Unauthorized"))
        self.api.set_token("t1")
        self.assertEqual(get(self.api, SVC_PATH)[0], 401)
        self.assertEqual(get(self.api, SVC_PATH, token="t1")[0], 200)
        self.assertEqual([r["status"] for r in self.api.requests()][-2:], [401, 200])

    def test_watch_replays_streams_bookmarks_and_times_out(self):
        rv0 = self.api.resource_version
        self.api.apply(F.service("shop", "orders", "10.96.0.10", [("http", 80, 9090)]))
        self.api.delete("services", "shop", "cart")
        self.api.apply(F.pod("shop", "p", {"app": "a"}, ["10.244.0.5"]))  # another resource: not in this watch
        w = Watch(self.api, SVC_PATH + "?watch=1&resourceVersion=%d&allowWatchBookmarks=true&timeoutSeconds=2"
                  % rv0)
        self.assertEqual(w.status, 200)
        self.assertEqual(w.resp.getheader("Transfer-Encoding"), "chunked")
        e1, e2 = w.next(), w.next()
        self.assertEqual((e1["type"], e1["object"]["kind"], e1["object"]["spec"]["ports"][0]["targetPort"]),
                         ("MODIFIED", "Service", 9090))
        self.assertEqual((e2["type"], e2["object"]["metadata"]["name"]), ("DELETED", "cart"))
        self.assertGreater(int(e2["object"]["metadata"]["resourceVersion"]),
                           int(e1["object"]["metadata"]["resourceVersion"]))
        t0 = time.monotonic()
        self.api.apply(F.service("shop", "new", "10.96.0.20", [("http", 80, 8080)]))
        e3 = w.next()
        self.assertEqual((e3["type"], e3["object"]["metadata"]["name"]), ("ADDED", "new"))
        self.assertLess(time.monotonic() - t0, 0.5, "a live event took too long")
        rest = []
        while True:
            e = w.next()
            if e is None:
                break
            rest.append(e)
        took = time.monotonic() - t0
        self.assertTrue(1.5 < took < 4, "timeoutSeconds=2 ended the stream after %.1fs" % took)
        self.assertTrue(rest and all(e["type"] == "BOOKMARK" for e in rest), rest)
        self.assertEqual(rest[-1]["object"]["metadata"], {"resourceVersion": str(self.api.resource_version)})
        w.close()

    def test_410_from_history_compaction_and_forced(self):
        rv0 = self.api.resource_version
        self.api.apply(F.service("shop", "a", "10.96.0.30", [("http", 80, 8080)]))
        self.api.compact()
        w = Watch(self.api, SVC_PATH + "?watch=1&resourceVersion=%d" % rv0)
        e = w.next()
        self.assertEqual(e["type"], "ERROR")
        self.assertEqual((e["object"]["kind"], e["object"]["code"]), ("Status", 410))
        self.assertIn("too old resource version", e["object"]["message"])
        self.assertIsNone(w.next())
        w.close()
        # Bounded history: older events fall out by themselves.
        small = F.FakeAPI(history=5).start()
        try:
            rv = small.resource_version
            for i in range(10):
                small.apply(F.pod("ns", "p%d" % i, {}, ["10.244.0.%d" % (i + 1)]))
            w = Watch(small, "/api/v1/pods?watch=1&resourceVersion=%d" % rv, token=None)
            self.assertEqual(w.next()["object"]["code"], 410)
            w.close()
            w = Watch(small, "/api/v1/pods?watch=1&timeoutSeconds=1&resourceVersion=%d"
                      % (small.resource_version - 5), token=None)
            self.assertEqual([e["object"]["metadata"]["name"] for e in iter(w.next, None)],
                             ["p5", "p6", "p7", "p8", "p9"])
            w.close()
        finally:
            small.close()
        # Forced, as an HTTP status and as an event.
        rv = self.api.resource_version
        self.api.force_gone(mode="http", resource="services")
        w = Watch(self.api, SVC_PATH + "?watch=1&resourceVersion=%d" % rv)
        self.assertEqual(w.status, 410)
        self.assertEqual(json.loads(w.resp.read())["code"], 410)
        w.close()
        self.api.force_gone()
        w = Watch(self.api, SVC_PATH + "?watch=1&resourceVersion=%d" % rv)
        self.assertEqual((w.status, w.next()["object"]["code"]), (200, 410))
        w.close()
        w = Watch(self.api, SVC_PATH + "?watch=1&timeoutSeconds=1&resourceVersion=%d" % rv)
        self.assertIsNone(w.next(), "the forced 410 was used up, the next watch is normal")
        w.close()

    def raw_watch_end(self, path):
        """Open a watch on a raw socket; returns (socket, fn reading to EOF)."""
        s = socket.create_connection((self.api.host, self.api.port), timeout=5)
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer t0\r\n\r\n" % path).encode())

        def to_eof():
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    return data
                data += b
        return s, to_eof

    def test_drop_stop_start_keep_port_and_state(self):
        rv = self.api.resource_version
        s, to_eof = self.raw_watch_end(SVC_PATH + "?watch=1&resourceVersion=%d" % rv)
        deadline = time.monotonic() + 5
        while not self.api.watches("services") and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(len(self.api.watches("services")), 1)
        self.api.drop_watches()
        data = to_eof()
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertFalse(data.endswith(b"\r\n0\r\n\r\n"), "a dropped watch must not end cleanly: %r" % data)
        # A watch that times out does end with the terminating chunk.
        s, to_eof = self.raw_watch_end(SVC_PATH + "?watch=1&timeoutSeconds=1&resourceVersion=%d" % rv)
        self.assertTrue(to_eof().endswith(b"\r\n0\r\n\r\n"))
        s.close()
        port, rv = self.api.port, self.api.resource_version
        self.api.stop()
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((self.api.host, port), timeout=2).close()
        self.api.start()
        self.assertEqual(self.api.port, port)
        code, lst = get(self.api, SVC_PATH)
        self.assertEqual((code, lst["metadata"]["resourceVersion"]), (200, str(rv)))

    def test_latency(self):
        self.api.set_latency(0.3)
        t0 = time.monotonic()
        self.assertEqual(get(self.api, SVC_PATH)[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)

    def test_object_shapes(self):
        es = F.endpointslice("shop", "orders-abc", "orders", [("10.244.1.5", True, "orders-1"),
                                                              ("10.244.1.6", False)], [("http", 8080)])
        self.assertEqual(es["metadata"]["labels"]["kubernetes.io/service-name"], "orders")
        self.assertEqual(es["endpoints"][1]["conditions"], {"ready": False, "serving": False, "terminating": False})
        self.assertEqual(es["endpoints"][0]["targetRef"]["kind"], "Pod")
        p = F.pod("shop", "o", {"app": "o"}, ["10.244.1.7", "fd00::7"])
        self.assertEqual(p["status"]["podIPs"], [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}])
        self.assertIn({"type": "Ready", "status": "True"}, p["status"]["conditions"])
        r = F.sandboxroute("shop", "r", "orders", ["k"], 8080, selector={"app": "o"}, ttl="8h")
        self.assertEqual(r["spec"]["sandbox"], {"port": 8080, "selector": {"matchLabels": {"app": "o"}}})
        stored = self.api.apply(r)
        again = self.api.apply(r)
        self.assertEqual(stored["metadata"]["uid"], again["metadata"]["uid"])
        self.assertEqual(stored["metadata"]["creationTimestamp"], again["metadata"]["creationTimestamp"])
        self.assertEqual(int(again["metadata"]["resourceVersion"]), int(stored["metadata"]["resourceVersion"]) + 1)
        self.assertEqual(get(self.api, "/apis/shunt.dev/v1alpha1/sandboxroutes")[1]["kind"], "SandboxRouteList")


# ---- writes (issue 12: what a controller needs) ------------------------------------
def call(api, method, path, body=None, ctype="application/json", token="t0", raw=None):
    """(status, decoded JSON answer) of one request."""
    c = _conn(api)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = dict(_auth(token))
        if data is not None:
            headers["Content-Type"] = ctype
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        text = r.read()
        return r.status, (json.loads(text) if text.strip() else None)
    finally:
        c.close()


NS = "shop"
CM = "/api/v1/namespaces/shop/configmaps"
DEP = "/apis/apps/v1/namespaces/shop/deployments"
PODS = "/api/v1/namespaces/shop/pods"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/shop/leases"
SBX = "/apis/shunt.dev/v1alpha1/namespaces/shop/sandboxes"

if "sandboxes" not in F.RESOURCES:  # deploy/crd-sandbox.yaml not there: a stand-in with the same names
    F.register_crd({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                    "metadata": {"name": "sandboxes.shunt.dev"},
                    "spec": {"group": "shunt.dev", "scope": "Namespaced",
                             "names": {"kind": "Sandbox", "plural": "sandboxes"},
                             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                           "subresources": {"status": {}},
                                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                               "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                               "metadata": {"type": "object"},
                                               "spec": {"type": "object", "required": ["forks"], "properties": {
                                                   "forks": {"type": "array", "items": {
                                                       "type": "object", "properties": {
                                                           "deployment": {"type": "string"},
                                                           "replicas": {"type": "integer", "maximum": 10,
                                                                        "default": 1}}}}}},
                                               "status": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}}}]}})


def sandbox(name, fork="orders"):
    return {"apiVersion": "shunt.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name, "namespace": NS},
            "spec": {"forks": [{"deployment": fork}]}}


class WriteBase(unittest.TestCase):
    def setUp(self):
        self.api = F.FakeAPI(token="t0", bookmark_interval=0.3).start()

    def tearDown(self):
        self.api.close()

    def events(self, path, rv, n, timeout=5):
        """The first n events of a watch of path from rv."""
        w = Watch(self.api, path + "?watch=1&timeoutSeconds=%d&resourceVersion=%s" % (timeout, rv), timeout=timeout + 5)
        out = []
        try:
            while len(out) < n:
                e = w.next()
                if e is None:
                    break
                if e["type"] != "BOOKMARK":
                    out.append(e)
        finally:
            w.close()
        return out

    def assert_status(self, got, code, reason):
        c, st = got
        self.assertEqual(c, code, st)
        self.assertEqual((st["kind"], st["code"], st["reason"]), ("Status", code, reason), st)
        return st


class FakeAPIWriteTest(WriteBase):
    def test_create_generate_name_and_errors(self):
        rv0 = self.api.resource_version
        code, o = call(self.api, "POST", CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"generateName": "cfg-"}, "data": {"a": "1"}})
        self.assertEqual(code, 201, o)
        md = o["metadata"]
        self.assertRegex(md["name"], r"^cfg-[a-z0-9]{5}$")
        self.assertEqual((md["namespace"], md["generation"]), (NS, 1))
        for f in ("uid", "creationTimestamp", "resourceVersion"):
            self.assertIn(f, md)
        self.assertEqual(call(self.api, "GET", CM + "/" + md["name"])[1]["data"], {"a": "1"})
        (e,) = self.events(CM, rv0, 1)
        self.assertEqual((e["type"], e["object"]["metadata"]["name"]), ("ADDED", md["name"]))
        # kind and apiVersion may be left out; the path's namespace fills in.
        code, o2 = call(self.api, "POST", CM, {"metadata": {"name": "plain"}, "data": {}})
        self.assertEqual((code, o2["kind"], o2["metadata"]["namespace"]), (201, "ConfigMap", NS))
        st = self.assert_status(call(self.api, "POST", CM, {"metadata": {"name": "plain"}}), 409, "AlreadyExists")
        self.assertEqual(st["details"], {"name": "plain", "group": "", "kind": "configmaps"})
        self.assert_status(call(self.api, "POST", CM, raw=b"{not json"), 400, "BadRequest")
        self.assert_status(call(self.api, "POST", CM, {"metadata": {"name": "x", "namespace": "other"}}),
                           400, "BadRequest")
        self.assert_status(call(self.api, "POST", CM, {"metadata": {"name": "x", "resourceVersion": "5"}}),
                           400, "BadRequest")
        self.assert_status(call(self.api, "POST", CM, {"kind": "Pod", "metadata": {"name": "x"}}), 400, "BadRequest")
        self.assert_status(call(self.api, "POST", CM, {"metadata": {}}), 422, "Invalid")
        # dryRun: the answer, nothing stored.
        code, o = call(self.api, "POST", CM + "?dryRun=All", {"metadata": {"name": "dry"}})
        self.assertEqual(code, 201)
        self.assertEqual(call(self.api, "GET", CM + "/dry")[0], 404)
        # A status is dropped for kinds with a status subresource.
        code, p = call(self.api, "POST", PODS, F.pod(NS, "p", {"app": "a"}, ["10.244.0.5"]))
        self.assertEqual((code, p["status"]), (201, {"phase": "Pending"}))
        self.assertEqual(self.api.requests()[-1]["verb"], "create")

    def test_update_conflict_generation_and_noop(self):
        code, d = call(self.api, "POST", DEP, F.deployment(NS, "orders", {"app": "orders"}))
        self.assertEqual((code, d["metadata"]["generation"]), (201, 1))
        rv = d["metadata"]["resourceVersion"]
        d["spec"]["replicas"] = 3
        code, d2 = call(self.api, "PUT", DEP + "/orders", d)
        self.assertEqual((code, d2["metadata"]["generation"], d2["spec"]["replicas"]), (200, 2, 3))
        self.assertGreater(int(d2["metadata"]["resourceVersion"]), int(rv))
        # The same object again with the old RV: 409 Conflict.
        st = self.assert_status(call(self.api, "PUT", DEP + "/orders", d), 409, "Conflict")
        self.assertIn("the object has been modified", st["message"])
        # No RV: unconditional. A label change is not a spec change.
        d2["metadata"]["labels"]["tier"] = "web"
        del d2["metadata"]["resourceVersion"]
        code, d3 = call(self.api, "PUT", DEP + "/orders", d2)
        self.assertEqual((code, d3["metadata"]["generation"], d3["metadata"]["labels"]["tier"]), (200, 2, "web"))
        self.assertEqual(d3["metadata"]["uid"], d["metadata"]["uid"])
        # A PUT that changes nothing: same RV, no event.
        rv3 = self.api.resource_version
        code, d4 = call(self.api, "PUT", DEP + "/orders", d3)
        self.assertEqual((code, d4["metadata"]["resourceVersion"]), (200, d3["metadata"]["resourceVersion"]))
        self.assertEqual(self.api.resource_version, rv3)
        # Wrong name, missing object, wrong uid.
        self.assert_status(call(self.api, "PUT", DEP + "/other", d3), 400, "BadRequest")
        gone = json.loads(json.dumps(d3))
        gone["metadata"]["name"] = "nope"
        self.assert_status(call(self.api, "PUT", DEP + "/nope", gone), 404, "NotFound")
        d3["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
        self.assert_status(call(self.api, "PUT", DEP + "/orders", d3), 409, "Conflict")
        self.assertEqual([r["verb"] for r in self.api.requests()][-2:], ["update", "update"])

    def test_lease_leader_election(self):
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "shunt-controller", "namespace": NS},
                 "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                          "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 0}}
        code, l0 = call(self.api, "POST", LEASES, lease)
        self.assertEqual(code, 201, l0)
        self.assert_status(call(self.api, "POST", LEASES, lease), 409, "AlreadyExists")
        # Two candidates update from the same RV: one wins, the other gets 409.
        a, b = json.loads(json.dumps(l0)), json.loads(json.dumps(l0))
        a["spec"]["holderIdentity"], b["spec"]["holderIdentity"] = "a", "b"
        a["spec"]["renewTime"] = b["spec"]["renewTime"] = "2026-01-01T00:00:05.000000Z"
        self.assertEqual(call(self.api, "PUT", LEASES + "/shunt-controller", b)[0], 200)
        self.assert_status(call(self.api, "PUT", LEASES + "/shunt-controller", a), 409, "Conflict")
        self.assertEqual(self.api.get("leases", NS, "shunt-controller")["spec"]["holderIdentity"], "b")

    def test_status_subresource_isolation(self):
        code, d = call(self.api, "POST", DEP, F.deployment(NS, "orders", {"app": "orders"}))
        # The main resource ignores status.
        d["status"] = {"replicas": 5}
        d["spec"]["replicas"] = 2
        code, d2 = call(self.api, "PUT", DEP + "/orders", d)
        self.assertEqual((code, d2.get("status"), d2["spec"]["replicas"]), (200, None, 2))
        # /status changes only status (and the RV), not spec or metadata.
        d2["status"] = {"replicas": 2, "readyReplicas": 1, "observedGeneration": 2}
        d2["spec"]["replicas"] = 9
        d2["metadata"]["labels"] = {"changed": "yes"}
        code, d3 = call(self.api, "PUT", DEP + "/orders/status", d2)
        self.assertEqual(code, 200, d3)
        self.assertEqual((d3["status"]["readyReplicas"], d3["spec"]["replicas"], d3["metadata"]["labels"],
                          d3["metadata"]["generation"]), (1, 2, {"app": "orders"}, 2))
        self.assertGreater(int(d3["metadata"]["resourceVersion"]), int(d2["metadata"]["resourceVersion"]))
        code, d4 = call(self.api, "PATCH", DEP + "/orders/status", {"status": {"readyReplicas": 2}},
                        "application/merge-patch+json")
        self.assertEqual((code, d4["status"]["readyReplicas"], d4["status"]["replicas"]), (200, 2, 2))
        code, d5 = call(self.api, "PATCH", DEP + "/orders", {"status": {"readyReplicas": 0}, "spec": {"replicas": 4}},
                        "application/merge-patch+json")
        self.assertEqual((d5["status"]["readyReplicas"], d5["spec"]["replicas"]), (2, 4))
        # The same for a CRD with subresources.status, and none for ConfigMaps.
        code, s = call(self.api, "POST", SBX, sandbox("pr-1"))
        self.assertEqual(code, 201, s)
        s["status"] = {"key": "k"}
        self.assertNotIn("status", call(self.api, "PUT", SBX + "/pr-1", s)[1])
        code, s2 = call(self.api, "PUT", SBX + "/pr-1/status", s)
        self.assertEqual((code, s2["status"]), (200, {"key": "k"}))
        call(self.api, "POST", CM, {"metadata": {"name": "c"}})
        self.assertEqual(call(self.api, "PUT", CM + "/c/status", {"metadata": {"name": "c"}})[0], 404)

    def test_patch_types(self):
        call(self.api, "POST", CM, {"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}},
                                    "data": {"x": "1", "y": "2"}})
        merge = "application/merge-patch+json"
        code, c = call(self.api, "PATCH", CM + "/c",
                       {"metadata": {"labels": {"a": None, "c": "3"}}, "data": {"y": "9"}}, merge)
        self.assertEqual((code, c["metadata"]["labels"], c["data"]), (200, {"b": "2", "c": "3"}, {"x": "1", "y": "9"}))
        jp = "application/json-patch+json"
        code, c = call(self.api, "PATCH", CM + "/c", [
            {"op": "test", "path": "/data/x", "value": "1"},
            {"op": "add", "path": "/data/z", "value": "3"},
            {"op": "remove", "path": "/data/y"},
            {"op": "replace", "path": "/metadata/labels/b", "value": "two"},
            {"op": "add", "path": "/metadata/finalizers", "value": ["a/b"]},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "c/d"}], jp)
        self.assertEqual(code, 200, c)
        self.assertEqual((c["data"], c["metadata"]["labels"]["b"], c["metadata"]["finalizers"]),
                         ({"x": "1", "z": "3"}, "two", ["a/b", "c/d"]))
        self.assert_status(call(self.api, "PATCH", CM + "/c", [{"op": "test", "path": "/data/x", "value": "0"}], jp),
                           422, "Invalid")
        self.assert_status(call(self.api, "PATCH", CM + "/c", [{"op": "remove", "path": "/data/nope"}], jp),
                           422, "Invalid")
        # Strategic merge patch: a merge patch here, lists replaced.
        code, c = call(self.api, "PATCH", CM + "/c", {"metadata": {"finalizers": ["c/d"]}},
                       "application/strategic-merge-patch+json")
        self.assertEqual((code, c["metadata"]["finalizers"]), (200, ["c/d"]))
        self.assert_status(call(self.api, "PATCH", CM + "/c", raw=b"data: {}", ctype="application/apply-patch+yaml"),
                           415, "UnsupportedMediaType")
        self.assert_status(call(self.api, "PATCH", CM + "/nope", {"data": {}}, merge), 404, "NotFound")
        # A resourceVersion in a patch is a precondition.
        self.assert_status(call(self.api, "PATCH", CM + "/c", {"metadata": {"resourceVersion": "1"}, "data": {}},
                                merge), 409, "Conflict")
        code, c2 = call(self.api, "PATCH", CM + "/c",
                        {"metadata": {"resourceVersion": c["metadata"]["resourceVersion"]}, "data": {"w": "1"}}, merge)
        self.assertEqual((code, c2["data"]["w"]), (200, "1"))
        # Patched into something the schema refuses: 422.
        st = self.assert_status(call(self.api, "PATCH", CM + "/c", {"data": {"n": 1}}, merge), 422, "Invalid")
        self.assertEqual(st["details"]["causes"][0]["field"], "data.n")
        self.assertEqual(self.api.requests()[-1]["verb"], "patch")

    def test_finalizers_and_deletion_timestamp(self):
        call(self.api, "POST", CM, {"metadata": {"name": "held", "finalizers": ["shunt.dev/cleanup"]}})
        rv = self.api.resource_version
        code, o = call(self.api, "DELETE", CM + "/held")
        self.assertEqual(code, 202, o)
        self.assertIn("deletionTimestamp", o["metadata"])
        self.assertEqual(o["metadata"]["deletionGracePeriodSeconds"], 0)
        code, again = call(self.api, "GET", CM + "/held")
        self.assertEqual((code, again["metadata"]["finalizers"]), (200, ["shunt.dev/cleanup"]))
        # No new finalizer on an object being deleted.
        self.assert_status(call(self.api, "PATCH", CM + "/held",
                                {"metadata": {"finalizers": ["shunt.dev/cleanup", "x/y"]}},
                                "application/merge-patch+json"), 422, "Invalid")
        # A second DELETE changes nothing.
        self.assertEqual(call(self.api, "DELETE", CM + "/held")[0], 202)
        # The last finalizer removed: gone.
        code, last = call(self.api, "PATCH", CM + "/held", {"metadata": {"finalizers": None}},
                          "application/merge-patch+json")
        self.assertEqual(code, 200, last)
        self.assertEqual(call(self.api, "GET", CM + "/held")[0], 404)
        evs = self.events(CM, rv, 2)
        self.assertEqual([e["type"] for e in evs], ["MODIFIED", "DELETED"])
        self.assertIn("deletionTimestamp", evs[0]["object"]["metadata"])
        self.assertNotIn("finalizers", evs[1]["object"]["metadata"])
        # Without finalizers: deleted at once, 200 with the last state; then 404.
        call(self.api, "POST", CM, {"metadata": {"name": "free"}})
        self.assertEqual(call(self.api, "DELETE", CM + "/free")[0], 200)
        self.assert_status(call(self.api, "DELETE", CM + "/free"), 404, "NotFound")
        # Preconditions.
        code, c = call(self.api, "POST", CM, {"metadata": {"name": "pre"}})
        self.assert_status(call(self.api, "DELETE", CM + "/pre", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                                  "preconditions": {"uid": "nope"}}), 409, "Conflict")
        self.assert_status(call(self.api, "DELETE", CM + "/pre", {"preconditions": {"resourceVersion": "1"}}),
                           409, "Conflict")
        self.assertEqual(call(self.api, "DELETE", CM + "/pre", {"preconditions": {"uid": c["metadata"]["uid"]}})[0],
                         200)
        self.assertEqual(self.api.requests()[-1]["verb"], "delete")

    def chain(self):
        """Sandbox -> Deployment -> two Pods (one holding a finalizer of its own)."""
        s = self.api.create(sandbox("pr-7"))
        d = self.api.create(F.deployment(NS, "pr-7-orders", {"app": "orders", "sandbox": "pr-7"}, owners=[s]))
        pods = []
        for i in range(2):
            p = F.pod(NS, "pr-7-orders-%d" % i, {"app": "orders", "sandbox": "pr-7"}, [])
            p["metadata"]["ownerReferences"] = [F.owner_ref(d)]
            pods.append(self.api.create(p))
        return s, d, pods

    def test_gc_cascade_background(self):
        s, d, pods = self.chain()
        other = self.api.create(F.deployment(NS, "baseline", {"app": "orders"}))  # owned by nothing: stays
        rv = self.api.resource_version
        code, o = call(self.api, "DELETE", SBX + "/pr-7")
        self.assertEqual(code, 200, o)
        for res, name in (("sandboxes", "pr-7"), ("deployments", "pr-7-orders"), ("pods", "pr-7-orders-0"),
                          ("pods", "pr-7-orders-1")):
            self.assertIsNone(self.api.get(res, NS, name), name)
        self.assertIsNotNone(self.api.get("deployments", NS, other["metadata"]["name"]))
        evs = self.events(DEP, rv, 1) + self.events(PODS, rv, 2)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in evs],
                         [("DELETED", "pr-7-orders"), ("DELETED", "pr-7-orders-0"), ("DELETED", "pr-7-orders-1")])
        # The GC window: with GC held, dependents stay until it runs; a
        # dependent's own finalizer holds it (deletionTimestamp set).
        s, d, pods = self.chain()
        self.api.patch("pods", NS, "pr-7-orders-1", {"metadata": {"finalizers": ["kubelet/x"]}})
        self.api.set_gc(False)
        self.assertTrue(self.api.delete("sandboxes", NS, "pr-7"))
        self.assertIsNone(self.api.get("sandboxes", NS, "pr-7"))
        self.assertIsNotNone(self.api.get("deployments", NS, "pr-7-orders"))
        self.api.run_gc()
        self.assertIsNone(self.api.get("deployments", NS, "pr-7-orders"))
        self.assertIsNone(self.api.get("pods", NS, "pr-7-orders-0"))
        held = self.api.get("pods", NS, "pr-7-orders-1")
        self.assertIn("deletionTimestamp", held["metadata"])
        self.api.set_gc(True)
        self.api.patch("pods", NS, "pr-7-orders-1", [{"op": "remove", "path": "/metadata/finalizers"}], "json")
        self.assertIsNone(self.api.get("pods", NS, "pr-7-orders-1"))

    def test_gc_foreground_orphan_and_two_owners(self):
        s, d, pods = self.chain()
        self.api.patch("pods", NS, "pr-7-orders-1", {"metadata": {"finalizers": ["kubelet/x"]}})
        code, o = call(self.api, "DELETE", SBX + "/pr-7", {"propagationPolicy": "Foreground"})
        self.assertEqual(code, 202, o)
        self.assertIn("foregroundDeletion", o["metadata"]["finalizers"])
        # Dependents first: the owner and the Deployment wait for the held pod.
        self.assertIsNone(self.api.get("pods", NS, "pr-7-orders-0"))
        self.assertIn("deletionTimestamp", self.api.get("pods", NS, "pr-7-orders-1")["metadata"])
        dep = self.api.get("deployments", NS, "pr-7-orders")
        self.assertEqual(dep["metadata"]["finalizers"], ["foregroundDeletion"])
        self.assertIsNotNone(self.api.get("sandboxes", NS, "pr-7"))
        self.api.patch("pods", NS, "pr-7-orders-1", {"metadata": {"finalizers": None}})
        for res, name in (("sandboxes", "pr-7"), ("deployments", "pr-7-orders"), ("pods", "pr-7-orders-1")):
            self.assertIsNone(self.api.get(res, NS, name), name)
        # Orphan: the dependents stay, without the reference.
        s, d, pods = self.chain()
        self.assertEqual(call(self.api, "DELETE", DEP + "/pr-7-orders", {"propagationPolicy": "Orphan"})[0], 200)
        self.assertIsNone(self.api.get("deployments", NS, "pr-7-orders"))
        for p in pods:
            left = self.api.get("pods", NS, p["metadata"]["name"])
            self.assertNotIn("ownerReferences", left["metadata"])
        # Two owners: one gone, the dependent stays with the other.
        cm = F.configmap(NS, "shared", {"a": "b"})
        cm["metadata"]["ownerReferences"] = [F.owner_ref(s, controller=False), F.owner_ref(d, controller=False)]
        self.api.delete("deployments", NS, "pr-7-orders")  # gone already: None
        self.api.create(cm)  # answers before the garbage collector looks at it, as the real server
        cm = self.api.get("configmaps", NS, "shared")
        self.assertEqual([r["name"] for r in cm["metadata"]["ownerReferences"]], ["pr-7"],
                         "a reference to an owner that is gone is dropped")
        self.api.delete("sandboxes", NS, "pr-7")
        self.assertIsNone(self.api.get("configmaps", NS, "shared"))

    def test_schema_refusal(self):
        d = F.deployment(NS, "orders", {"app": "orders"})
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
        st = self.assert_status(call(self.api, "POST", DEP, d), 422, "Invalid")
        self.assertEqual([c["field"] for c in st["details"]["causes"]],
                         ["spec.template.spec.containers[0].imagePullPolice"])
        self.assertIn("spec.template.spec.containers[0].imagePullPolice", st["message"])
        self.assertEqual((st["details"]["name"], st["details"]["kind"], st["details"]["group"]),
                         ("orders", "deployments", "apps"))
        bad = sandbox("pr-9")
        bad["spec"]["forks"][0]["replicas"] = 99
        bad["spec"]["noSuchField"] = True
        st = self.assert_status(call(self.api, "POST", SBX, bad), 422, "Invalid")
        self.assertEqual([c["field"] for c in st["details"]["causes"]],
                         ["spec.forks[0].replicas", "spec.noSuchField"])
        self.assertEqual(call(self.api, "GET", SBX + "/pr-9")[0], 404)
        # Served from deploy/crd-*.yaml with their status subresource.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        for crd in ("sandboxroute", "sandboxoverride", "sandbox"):
            if os.path.exists(os.path.join(root, "deploy", "crd-%s.yaml" % crd)):
                self.assertIn(crd + ("es" if crd == "sandbox" else "s"), F.CRD_SCHEMAS)
                self.assertIn(crd + ("es" if crd == "sandbox" else "s"), F.STATUS_SUBRESOURCE)
        # CRD defaults are filled in.
        code, s = call(self.api, "POST", SBX, sandbox("pr-10"))
        self.assertEqual((code, s["spec"]["forks"][0]["replicas"]), (201, 1))
        # An update is checked too; the stored object is unchanged.
        s["spec"]["forks"][0]["replicas"] = -1 if "minimum" in json.dumps(F.CRD_SCHEMAS["sandboxes"]) else 11
        self.assert_status(call(self.api, "PUT", SBX + "/pr-10", s), 422, "Invalid")
        self.assertEqual(self.api.get("sandboxes", NS, "pr-10")["spec"]["forks"][0]["replicas"], 1)
        # In-process: APIError naming the field; validate=False stores anyway.
        with self.assertRaises(F.APIError) as cm:
            self.api.apply(bad)
        self.assertEqual(cm.exception.code, 422)
        self.assertIn("spec.noSuchField", str(cm.exception))
        self.api.apply(bad, validate=False)
        self.assertTrue(self.api.get("sandboxes", NS, "pr-9")["spec"]["noSuchField"])
        bad_name = F.configmap(NS, "Not_A_Name", {})
        with self.assertRaises(F.APIError) as cm:
            self.api.create(bad_name)
        self.assertIn("metadata.name", str(cm.exception))

    def test_in_process_api(self):
        rv0 = self.api.resource_version
        c = self.api.create({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"generateName": "x-", "namespace": NS, "labels": {"app": "a"}}})
        self.assertRegex(c["metadata"]["name"], r"^x-[a-z0-9]{5}$")
        with self.assertRaises(F.APIError) as cm:
            self.api.create(F.configmap(NS, c["metadata"]["name"], {}))
        self.assertEqual((cm.exception.code, cm.exception.reason), (409, "AlreadyExists"))
        c["data"] = {"k": "v"}
        c2 = self.api.update(c)
        with self.assertRaises(F.APIError) as cm:
            self.api.update(c)  # stale RV
        self.assertEqual(cm.exception.code, 409)
        self.assertIn("Conflict", str(cm.exception))
        d = self.api.create(F.deployment(NS, "web", {"app": "web"}))
        d["status"] = {"replicas": 1, "readyReplicas": 1}
        d = self.api.update_status(d)
        self.assertEqual(d["status"]["readyReplicas"], 1)
        d = self.api.patch("deployments", NS, "web", {"spec": {"replicas": 2}})
        self.assertEqual((d["spec"]["replicas"], d["metadata"]["generation"]), (2, 2))
        d = self.api.patch("Deployment", NS, "web", [{"op": "replace", "path": "/status/readyReplicas", "value": 2}],
                           "json", subresource="status")
        self.assertEqual(d["status"]["readyReplicas"], 2)
        self.assertEqual([o["metadata"]["name"] for o in self.api.list("configmaps", NS, "app=a")],
                         [c["metadata"]["name"]])
        self.assertEqual(len(self.api.list("deployments", selector={"app": "web"})), 1)
        self.assertEqual(len(self.api.list("deployments", selector={"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["x"]}]})), 0)
        self.assertEqual(self.api.list("deployments", "other"), [])
        # wait_for_change returns at once when there is news, else at the timeout.
        rv = self.api.resource_version
        t0 = time.monotonic()
        self.assertEqual(self.api.wait_for_change(rv, 0.3), rv)
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        threading.Timer(0.1, lambda: self.api.delete("configmaps", NS, c["metadata"]["name"])).start()
        t0 = time.monotonic()
        self.assertGreater(self.api.wait_for_change(rv, 5), rv)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertIsNone(self.api.delete("configmaps", NS, c["metadata"]["name"]))
        with self.assertRaises(F.APIError) as cm:
            self.api.patch("configmaps", NS, "nope", {"data": {}})
        self.assertEqual(cm.exception.code, 404)
        # The same watch events as HTTP writes.
        evs = self.events(CM, rv0, 3)
        self.assertEqual([e["type"] for e in evs], ["ADDED", "MODIFIED", "DELETED"])
        self.assertEqual(c2["data"], {"k": "v"})


class FakeAPIRBACTest(WriteBase):
    def setUp(self):
        super().setUp()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.agent = F.rbac_rules_from_manifest(os.path.join(root, "deploy", "rbac.yaml"), ["shunt-agent"])
        self.ctl = [
            {"apiGroups": ["shunt.dev"], "resources": ["sandboxes"], "verbs": ["get", "list", "watch", "update"]},
            {"apiGroups": ["shunt.dev"], "resources": ["sandboxes/status"], "verbs": ["update", "patch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"],
             "resourceNames": ["shunt-controller"]}]
        self.api.set_rbac("agent", self.agent)
        self.api.set_rbac("ctl", self.ctl)

    def test_rules_allow_and_forbid(self):
        self.assertTrue(self.agent, "no ClusterRole rules read from deploy/rbac.yaml")
        self.assertEqual(call(self.api, "GET", "/apis/shunt.dev/v1alpha1/sandboxroutes", token="agent")[0], 200)
        st = self.assert_status(call(self.api, "POST", "/apis/shunt.dev/v1alpha1/namespaces/shop/sandboxroutes",
                                     F.sandboxroute(NS, "r", "web", ["k"], 8080, selector={"a": "b"}),
                                     token="agent"), 403, "Forbidden")
        self.assertIn('cannot create resource "sandboxroutes" in API group "shunt.dev"', st["message"])
        self.assertEqual(call(self.api, "GET", SVC_PATH, token="nobody")[0], 401)
        # The controller: its status but not the main resource's patch.
        s = self.api.create(sandbox("pr-1"))
        self.assertEqual(call(self.api, "PATCH", SBX + "/pr-1/status", {"status": {"key": "k"}},
                              "application/merge-patch+json", token="ctl")[0], 200)
        self.assert_status(call(self.api, "PATCH", SBX + "/pr-1", {"metadata": {"labels": {"a": "b"}}},
                                "application/merge-patch+json", token="ctl"), 403, "Forbidden")
        self.assert_status(call(self.api, "DELETE", SBX + "/pr-1", token="ctl"), 403, "Forbidden")
        # blockOwnerDeletion needs update on sandboxes/finalizers.
        dep = F.deployment(NS, "pr-1-orders", {"app": "o"}, owners=[s])
        st = self.assert_status(call(self.api, "POST", DEP, dep, token="ctl"), 403, "Forbidden")
        self.assertIn("blockOwnerDeletion", st["message"])
        self.api.set_rbac("ctl", self.ctl + [{"apiGroups": ["shunt.dev"], "resources": ["sandboxes/finalizers"],
                                              "verbs": ["update"]}])
        self.assertEqual(call(self.api, "POST", DEP, dep, token="ctl")[0], 201)
        # resourceNames.
        lease = {"metadata": {"name": "shunt-controller"}, "spec": {"holderIdentity": "a"}}
        self.assertEqual(call(self.api, "GET", LEASES + "/shunt-controller", token="ctl")[0], 404)
        self.assertEqual(call(self.api, "GET", LEASES + "/other", token="ctl")[0], 403)
        # A Role's rules grant in its namespace only.
        self.api.set_rbac("ns", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"],
                                  "namespace": "other"}])
        self.assertEqual(call(self.api, "POST", "/api/v1/namespaces/other/configmaps", {"metadata": {"name": "a"}},
                              token="ns")[0], 201)
        self.assertEqual(call(self.api, "POST", CM, {"metadata": {"name": "a"}}, token="ns")[0], 403)
        # The log tells which verbs a token used.
        verbs = sorted({(r["verb"], r["resource"] + ("/" + r["subresource"] if r["subresource"] else ""))
                        for r in self.api.requests() if r["auth"] == "Bearer ctl" and r["status"] < 400})
        self.assertEqual(verbs, [("create", "deployments"), ("patch", "sandboxes/status")])
        del lease


@unittest.skipUnless(shutil.which("openssl"), "no openssl CLI to make certificates")
class FakeAPITLSTest(unittest.TestCase):
    def test_https_with_its_own_ca(self):
        d = tempfile.mkdtemp(prefix="fakeapi-tls-")
        api = None
        try:
            tls = F.make_certs(d, ["127.0.0.1"])
            api = F.FakeAPI(token="t0", tls=tls).start()
            self.assertTrue(api.url.startswith("https://127.0.0.1:"))
            ctx = ssl.create_default_context(cafile=tls["ca"])
            self.assertEqual(get(api, SVC_PATH, ctx=ctx)[0], 200)
            with self.assertRaises(ssl.SSLError):  # not trusted without the CA
                get(api, SVC_PATH, ctx=ssl.create_default_context())
            # A client that connects and says nothing holds up no one.
            idle = socket.create_connection((api.host, api.port))
            try:
                t = threading.Thread(target=lambda: get(api, SVC_PATH, ctx=ctx))
                t.start()
                t.join(5)
                self.assertFalse(t.is_alive())
            finally:
                idle.close()
        finally:
            if api:
                api.close()
            shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main()
