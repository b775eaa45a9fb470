# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Light tests of the fake API server itself (tests/k8s/fakeapi.py): the
behaviours shuntd's watcher is tested against must really be there.

Run by the e2e runner (tests/e2e/test_k8s_fakeapi.py imports this class),
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
