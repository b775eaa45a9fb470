# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""NodeTestCase: one throwaway node per test class, shared by its tests.

Each test begins with a log mark (so failures show only what this test
caused) and ends by removing the routes it added through the API."""

import os
import subprocess
import traceback
import unittest

import node as N

BUILD = os.environ.get("SHUNT_E2E_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))

SVC4 = N.hostport(N.BASE4, N.HTTP_PORT)
SVC6 = N.hostport(N.BASE6, N.HTTP_PORT)
TO4 = N.hostport(N.SBX4, N.HTTP_PORT)
TO6 = N.hostport(N.SBX6, N.HTTP_PORT)
TO2_4 = N.hostport(N.SBX2_4, N.HTTP_PORT)
ECHO4 = N.hostport(N.BASE4, N.ECHO_PORT)
ECHO6 = N.hostport(N.BASE6, N.ECHO_PORT)
SBX_ECHO4 = N.hostport(N.SBX4, N.ECHO_PORT)
DEAD4 = N.hostport(N.SBX4, N.DEAD_PORT)
DEAD6 = N.hostport(N.SBX6, N.DEAD_PORT)


class NodeTestCase(unittest.TestCase):
    """Subclasses set node_opts (Node keyword arguments)."""

    node_opts = {}
    needs_shuntd = True  # (re)start shuntd before each test if it is not running
    node = None
    _skip = None
    _setup_error = None

    @classmethod
    def setUpClass(cls):
        cls.node = None
        cls._skip = N.prereq_skip_reason()
        cls._setup_error = None
        if cls._skip:
            return
        try:
            cls.node = N.Node(BUILD, verbose=os.environ.get("SHUNT_E2E_VERBOSE") == "1", **cls.node_opts)
            cls.node.start(with_shuntd=False)  # setUp starts it, once per failure
            cls.prepare_node(cls.node)
        except N.Skip as e:
            cls._skip = str(e)
        except Exception:
            cls._setup_error = traceback.format_exc()
            if cls.node is not None:
                cls._setup_error += "\n" + cls.node.diagnostics()
                cls.node.close()
            cls.node = None

    @classmethod
    def prepare_node(cls, node):
        """Runs once per class after the node has started (without shuntd):
        the place to start servers in extra pods (node_opts["extra_pods"]).
        An exception here fails every test of the class, with diagnostics,
        and the node is torn down."""

    @classmethod
    def tearDownClass(cls):
        if cls.node is not None:
            cls.node.close()
            cls.node = None

    def setUp(self):
        if self._skip:
            raise unittest.SkipTest(self._skip)
        if self._setup_error:
            self.fail("node setup failed:\n" + self._setup_error)
        self.mark = self.node.mark()
        n = self.node
        if self.needs_shuntd and n.want_shuntd and not n.shuntd_running():
            if n.start_error:
                self.fail("shuntd could not be started earlier in this class:\n" + n.start_error)
            if n.shuntd is not None and not n.expected_exit:
                print("\n[e2e] note: shuntd had exited (status %s); restarting it" % n.shuntd.returncode)
            n.expected_exit = False
            try:
                n.shuntd_start()
            except Exception as e:
                n.start_error = str(e)
                raise
            # Routes live on in the pinned maps across restarts: start clean.
            n.clear_api_routes()
            self.mark = n.mark()
        self.conns = []

    def tearDown(self):
        for c in self.conns:
            try:
                c.close()
            except Exception:
                pass
        n = self.node
        if n is not None and n.want_shuntd and n.shuntd is not None and not n.shuntd_running() \
                and not n.expected_exit:
            n.expected_exit = True  # report it once
            self.fail("shuntd died during this test (exit status %s)" % n.shuntd.returncode)
        if n is not None and n.shuntd_running():
            try:
                n.clear_api_routes()
            except subprocess.TimeoutExpired:
                # Wedged (busy loop, deadlock): take a backtrace for the
                # report, then kill it so the next test gets a fresh one.
                bt = n.backtrace()
                n.expected_exit = True
                N._killpg(n.shuntd)
                n.shuntd.wait(5)
                self.fail("shuntd stopped answering its control socket; killed it. Backtrace:\n" + bt)
            except Exception as e:
                print("\n[e2e] could not clear routes after %s: %s" % (self.id(), e))

    # ---- helpers for tests ---------------------------------------------------
    @property
    def client(self):
        return self.node.client

    def connect(self, host, port=N.HTTP_PORT, **kw):
        c = self.node.client.connect(host, port, **kw)
        self.conns.append(c)
        return c

    def http_client(self, host, port=N.HTTP_PORT, **kw):
        c = self.node.client.http_client(host, port, **kw)
        self.conns.append(c)
        return c

    def get(self, host, path="/", headers=(), port=N.HTTP_PORT, **kw):
        return self.node.client.request(host, port, "GET", path, headers=headers, **kw)

    def assertPod(self, resp, pod, msg=""):
        self.assertIsNotNone(resp, "no response %s" % msg)
        self.assertEqual(resp.pod, pod, "answered by %r, expected %r (%s) %r" % (resp.pod, pod, msg, resp))

    def assertNoUpstreamTraffic(self, since, what):
        evs = self.node.upstream_traffic(since)
        self.assertEqual(evs, [], "%s reached an upstream:\n%s" % (what, "\n".join(map(str, evs))))

    def expect_closed(self, conn, what, timeout=3):
        r = conn.wait_closed(timeout=timeout)
        self.assertTrue(r["closed"], "%s: connection still open %.1fs later" % (what, timeout))
        return r

    def route(self, service, key, to, **kw):
        return self.node.route_add(service, key, to, **kw)
