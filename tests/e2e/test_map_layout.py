# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Pinned maps left by an agent of another version (another map layout):
the new agent migrates what it can convert, drops what it refills itself,
and otherwise refuses to start with a message saying what to run
(--reset-maps). The other agent is faked by pinning maps of another
layout with bpftool, as it would have left them."""

import json
import os
import signal
import struct
import time

import node as N
from base import NodeTestCase, SVC4, TO4
from httpmsg import key_header

ROUTE_KEY_SIZE = 84  # struct shunt_route_key
ROUTE_SIZE = 40  # struct shunt_route (this agent's)
OLD_ROUTE_SIZE = 32  # without created_unix: what an older agent pinned


def addr_bytes(ip4, port):
    """struct shunt_addr: 16 address bytes, host-order port, family 4, pad."""
    return bytes(int(x) for x in ip4.split(".")) + bytes(12) + struct.pack("<HBB", port, 4, 0)


def hexargs(data):
    return ["hex"] + ["%02x" % b for b in data]


class MapLayout(NodeTestCase):
    def _stop(self):
        self.node.expected_exit = True
        self.assertEqual(self.node.shuntd_stop(signal.SIGTERM, timeout=5), 0)

    def _pin(self, name):
        return os.path.join(self.node.pin, name)

    def _create(self, name, key, value, entries, kind="hash"):
        path = self._pin(name)
        if os.path.exists(path):
            os.unlink(path)
        N.run(["bpftool", "map", "create", path, "type", kind, "key", str(key), "value", str(value),
               "entries", str(entries), "name", name])

    def _update(self, name, key, value):
        N.run(["bpftool", "map", "update", "pinned", self._pin(name), "key"] + hexargs(key)
              + ["value"] + hexargs(value))

    def _old_route(self, service_ip, port, rkey, to_ip):
        key = addr_bytes(service_ip, port) + rkey.encode().ljust(64, b"\0")
        value = addr_bytes(to_ip, port) + struct.pack("<IQ", 0, 0)
        self.assertEqual((len(key), len(value)), (ROUTE_KEY_SIZE, OLD_ROUTE_SIZE))
        return key, value

    def _start_fails(self, extra=()):
        """Start an agent that must refuse; its output."""
        log_start = os.path.getsize(self.node.shuntd_log)
        p = self.node.shuntd_spawn(extra)
        rc = p.wait(15)
        self.assertNotEqual(rc, 0, "shuntd started over pins it cannot convert")
        with open(self.node.shuntd_log, errors="replace") as f:
            f.seek(log_start)
            return f.read()

    def _restart(self, extra=()):
        self.node.expected_exit = False
        self.node.shuntd_start(extra)
        return self.node.shuntd_output()

    def _routes(self):
        return sorted((r["service"], r["key"], r["to"]) for r in self.node.routes())

    def test_a_pins_without_a_layout_record_are_reused(self):
        # An agent older than shunt_abi: the maps as they are, no record.
        self.route(SVC4, "dev-a", TO4)
        self._stop()
        os.unlink(self._pin("shunt_abi"))
        out = self._restart()
        self.assertNotIn("migrat", out)
        self.assertNotIn("dropping", out)
        self.assertEqual(self._routes(), [(SVC4, "dev-a", TO4)])
        self.assertTrue(os.path.exists(self._pin("shunt_abi")), "shunt_abi not pinned again")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox")

    def test_b_older_route_values_are_migrated(self):
        self._stop()
        os.unlink(self._pin("shunt_abi"))
        self._create("shunt_routes", ROUTE_KEY_SIZE, OLD_ROUTE_SIZE, N_ROUTES)
        self._update("shunt_routes", *self._old_route(N.BASE4, N.HTTP_PORT, "dev-old", N.SBX4))
        # A transient map of another layout is dropped, not migrated.
        self._create("shunt_conns", 20, 24, 65536, kind="lru_hash")
        out = self._restart()
        print("\n" + "\n".join(l for l in out.splitlines() if "shunt_routes" in l or "shunt_conns" in l))
        self.assertIn("shunt_routes: layout v0 (type 1, key 84, value 32 bytes", out)
        self.assertIn("migrating its 1 entries", out)
        self.assertIn("shunt_conns: layout v0", out)
        self.assertIn("dropping it for a new one (the agent refills it)", out)
        self.assertEqual(self._routes(), [(SVC4, "dev-old", TO4)])
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-old")]), "sandbox", "migrated route")
        info = json.loads(N.run(["bpftool", "-j", "map", "show", "pinned", self._pin("shunt_routes")]).stdout)
        self.assertEqual((info["bytes_key"], info["bytes_value"]), (ROUTE_KEY_SIZE, ROUTE_SIZE))
        # The next start finds the record and the layout it expects.
        self._stop()
        out = self._restart()
        self.assertNotIn("migrat", out)
        self.assertEqual(self._routes(), [(SVC4, "dev-old", TO4)])

    def test_c_unconvertible_routes_refuse_then_reset(self):
        self._stop()
        self._create("shunt_routes", ROUTE_KEY_SIZE - 4, ROUTE_SIZE, N_ROUTES)
        out = self._start_fails()
        print("\n" + "\n".join(l for l in out.splitlines() if "shunt_routes" in l or "--reset-maps" in l))
        self.assertIn("shunt_routes: layout v0 (type 1, key 80", out)
        self.assertIn("cannot be converted", out)
        self.assertIn("start this one with --reset-maps", out)
        self.assertIn("rm %s/shunt_*" % self.node.agent_path(self.node.pin), out)
        self.assertTrue(os.path.exists(self._pin("shunt_routes")), "a refusing agent removed the pin")
        out = self._restart(["--reset-maps"])
        self.assertIn("dropping it for a new one (--reset-maps)", out)
        self.assertEqual(self._routes(), [])

    def test_d_a_newer_layout_version_refuses(self):
        # Same sizes, but shunt_abi says a newer agent changed their meaning.
        self._stop()
        dump = json.loads(N.run(["bpftool", "-j", "map", "dump", "pinned", self._pin("shunt_abi")]).stdout)
        slot = None
        for e in dump:
            name = bytes(int(b, 16) for b in e["value"][:16]).rstrip(b"\0").decode() if "value" in e else \
                e["formatted"]["value"]["name"]
            if name == "shunt_routes":
                slot = e["key"] if "key" in e else e["formatted"]["key"]
                break
        self.assertIsNotNone(slot, "no shunt_routes record in shunt_abi: %r" % dump)
        rec = b"shunt_routes".ljust(16, b"\0") + struct.pack("<6I", 99, 1, ROUTE_KEY_SIZE, ROUTE_SIZE, N_ROUTES, 0)
        self._update("shunt_abi", struct.pack("<I", int(slot) if not isinstance(slot, list) else int(slot[0], 16)), rec)
        out = self._start_fails()
        self.assertIn("shunt_routes: layout v99", out)
        self.assertIn("--reset-maps", out)
        self._restart(["--reset-maps"])

    def test_e_takeover_across_a_layout_change(self):
        # The running agent's pins are swapped for those an agent of the
        # previous layout would have left (it keeps its own maps through
        # its descriptors): the new agent migrates, drops, then takes the
        # listeners over from it as from any running agent.
        n = self.node
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC4, "dev-b", TO4)
        for name in ("shunt_abi", "shunt_routes", "shunt_conn_src"):
            os.unlink(self._pin(name))
        self._create("shunt_routes", ROUTE_KEY_SIZE, OLD_ROUTE_SIZE, N_ROUTES)
        self._update("shunt_routes", *self._old_route(N.BASE4, N.HTTP_PORT, "dev-a", N.SBX4))
        self._create("shunt_conn_src", 20, 16, 16384, kind="lru_hash")
        old = n.shuntd
        new = n.shuntd_spawn(["--drain-timeout", "2s"])
        off = n.shuntd_log_start = new.log_offset
        n.shuntd = new
        deadline = time.monotonic() + 15
        while "ready: cgroup" not in N._read_from(n.shuntd_log, off):
            self.assertIsNone(new.poll(), "the new agent exited:\n" + N._read_from(n.shuntd_log, off))
            self.assertLess(time.monotonic(), deadline, "the new agent is not ready")
            time.sleep(0.05)
        self.assertEqual(old.wait(8), 0, "the old agent did not drain and exit cleanly")
        out = N._read_from(n.shuntd_log, off)
        print("\n" + out)
        self.assertIn("shunt_routes: layout v0 (type 1, key 84, value 32 bytes", out)
        self.assertIn("migrating its 1 entries", out)
        self.assertIn("shunt_conn_src: layout v0 (type 9, key 20, value 16 bytes", out)
        self.assertIn("took over %d listener(s)" % N.listener_socks(), out)
        # What the other agent's pins held, not what it had in memory.
        self.assertEqual(self._routes(), [(SVC4, "dev-a", TO4)])
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-a")]), "sandbox", "after the takeover")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-b")]), "baseline", "after the takeover")



N_ROUTES = 16384  # SHUNT_MAX_ROUTES, the default --max-routes
