# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""shuntctl: JSON output, exit codes, and what bpftool shows of the pins."""

import os
import socket
import re
import time

import node as N
from base import SVC4, SVC6, TO4, TO6, NodeTestCase


def seconds(v):
    """ttl_left as a number of seconds (an int, or a duration like '59m58s')."""
    if isinstance(v, (int, float)):
        return v
    total = 0
    for num, unit in re.findall(r"(\d+)(ms|s|m|h|d)", str(v)):
        total += int(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total


class Shuntctl(NodeTestCase):
    def test_route_add_says_when_a_service_becomes_steered(self):
        first = self.route(SVC4, "dev-a", TO4).stdout
        self.assertIn("route added: %s key=dev-a -> %s" % (SVC4, TO4), first)
        self.assertIn("note: %s is steered from now on" % SVC4, first)
        second = self.route(SVC4, "dev-b", TO4).stdout
        self.assertNotIn("note:", second, "the service was already steered")

    def test_route_list_json(self):
        self.assertEqual(self.node.routes(), [], "routes left from an earlier test")
        self.route(SVC4, "dev-a", TO4)
        self.route(SVC6, "dev-b", TO6, ttl="1h", fallback="baseline")
        lst = self.node.routes()
        self.assertIsInstance(lst, list)
        by_key = {r["key"]: r for r in lst}
        self.assertEqual(set(by_key), {"dev-a", "dev-b"})
        a, b = by_key["dev-a"], by_key["dev-b"]
        for r in (a, b):
            for field in ("service", "key", "to", "fallback", "source", "expires_unix", "ttl_left"):
                self.assertIn(field, r, "route list entry lacks %r: %r" % (field, r))
        self.assertEqual((a["service"], a["to"], a["fallback"], a["source"]), (SVC4, TO4, "error", "api"))
        self.assertIn(a["expires_unix"], (0, None), "route without ttl has an expiry: %r" % a)
        self.assertEqual((b["service"], b["to"], b["fallback"], b["source"]), (SVC6, TO6, "baseline", "api"))
        self.assertLessEqual(abs(b["expires_unix"] - (time.time() + 3600)), 5, b)
        self.assertTrue(3590 <= seconds(b["ttl_left"]) <= 3600, "ttl_left %r" % b["ttl_left"])
        # text output names the routes too
        out = self.node.ctl_ok("route", "list").stdout
        self.assertIn("dev-a", out)
        self.assertIn("fd00:211::20", out)
        # del, then list again
        self.node.route_del(SVC4, "dev-a")
        self.assertEqual([r["key"] for r in self.node.routes()], ["dev-b"])

    def test_status_json(self):
        self.route(SVC4, "dev-a", TO4)
        st = self.node.status()
        self.assertEqual(st["routes"], 1)
        self.assertTrue(st["programs"], "no programs in status")
        for p in st["programs"]:
            for field in ("name", "id", "attach"):
                self.assertIn(field, p)
        maps = {m["name"]: m for m in st["maps"]}
        self.assertIn("shunt_routes", maps)
        self.assertEqual(maps["shunt_routes"]["entries"], 1)
        self.assertTrue(maps["shunt_routes"]["path"].startswith(self.node.pin + "/"), maps["shunt_routes"])
        self.assertGreaterEqual(maps["shunt_routes"]["max_entries"], 1)
        for k in ("connect", "captured", "fail_open", "own_socket", "established", "peer_restored"):
            self.assertIsInstance(st["kernel"].get(k), int, "kernel.%s" % k)
        for k in ("accepted", "active", "requests", "to_sandbox", "to_baseline", "errors", "bad_requests",
                  "tunnels", "upstream_connects", "upstream_reused"):
            self.assertIsInstance(st["proxy"].get(k), int, "proxy.%s" % k)
        r0 = st["proxy"]["requests"]
        self.get(N.BASE4, "/", [("baggage", "sd-routing-key=dev-a")])
        st2 = self.node.status()
        self.assertEqual(st2["proxy"]["requests"] - r0, 1)
        self.assertGreaterEqual(st2["kernel"]["peer_restored"], 0)

    def test_exit_codes(self):
        def check(args, codes, what, control=None):
            p = self.node.ctl(*args, control=control)
            self.assertIn(p.returncode, codes, "%s: `shuntctl %s` exited %d\nstdout: %s\nstderr: %s"
                          % (what, " ".join(args), p.returncode, p.stdout, p.stderr))
            if p.returncode != 0:
                self.assertTrue(p.stderr.strip(), "%s: no message on stderr" % what)
            return p

        check(["route", "add", "--service", "10.211.0.300:8080", "--key", "dev-a", "--to", TO4], (1, 2),
              "bad service address")
        check(["route", "add", "--service", SVC4, "--key", "dev-a", "--to", "sandbox:80"], (1, 2), "hostname as --to")
        check(["route", "add", "--service", SVC4, "--key", "dev-a", "--to", "10.211.0.30:99999"], (1, 2), "bad port")
        check(["route", "add", "--service", SVC4, "--key", "a,b", "--to", TO4], (1, 2), "bad key")
        check(["route", "add", "--service", SVC4, "--key", "k" * 64, "--to", TO4], (1, 2), "key too long")
        check(["route", "add", "--service", SVC4, "--key", "dev-a", "--to", TO4, "--ttl", "5x"], (1, 2), "bad ttl")
        check(["route", "add", "--service", SVC4, "--key", "dev-a", "--to", TO4, "--fallback", "maybe"], (1, 2),
              "bad fallback")
        self.assertEqual(self.node.routes(), [], "a rejected route add changed the table")
        check(["route", "del", "--service", SVC4, "--key", "nope"], (1,), "del of a missing route")
        check([], (2,), "no arguments")
        check(["route", "frobnicate"], (2,), "unknown subcommand")
        check(["route", "add", "--service", SVC4], (2,), "missing options")
        missing = os.path.join(self.node.tmp, "nope.sock")
        check(["status"], (3,), "unreachable control socket", control=missing)
        check(["route", "list"], (3,), "unreachable control socket", control=missing)
        check(["route", "list", "-o", "json"], (0,), "route list")

    def test_reload_without_config(self):
        p = self.node.ctl("reload")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(p.stderr, "shuntctl: reload: this shuntd runs without --config: there is nothing to "
                                   "reload\n")

    def test_bpftool_dump_shows_key_as_text(self):
        self.route(SVC4, "dev-a", TO4)
        path = os.path.join(self.node.pin, "shunt_routes")
        self.assertTrue(os.path.exists(path), "%s not pinned" % path)
        p = N.run(["bpftool", "map", "dump", "pinned", path], check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("dev-a", p.stdout, "key not printed as text (no BTF?):\n%s" % p.stdout[:2000])


class ControlSocket(NodeTestCase):
    """What a confused or hostile client of the control socket gets: an
    error for a bad line, a closed connection when it stalls, a busy error
    beyond the connection limit; never a crash, a hang or a changed table."""

    def raw(self, data, shut=True, timeout=5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.node.sock)
        try:
            if data:
                s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except BrokenPipeError:
            pass  # answered and closed before reading: the answer is still there
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        s.close()
        return out

    def test_bad_lines_get_an_error_and_change_nothing(self):
        cases = [
            (b"\n", b"error 2\nempty request\n"),
            (b"reboot\tnow\n", b"error 2\nunknown request 'reboot'\n"),
            (b"status\x00\ttext\n", b"error 2\nrequest has a NUL, CR or LF byte at offset 6\n"),
            (b"status\ttext\r\n", b"error 2\nrequest has a NUL, CR or LF byte at offset 11\n"),
            (b"route-add\t" + SVC4.encode() + b"\t\tdev-a\t" + TO4.encode() + b"\t0\n",
             b"error 2\nfield 2 is empty\n"),
            (b"route-add\t" + SVC4.encode() + b"\tdev-a\t" + TO4.encode() + b"\t99999999999\terror\n",
             b"error 1\n--ttl: '99999999999' is not a number of seconds up to 316224000\n"),
            (b"\xff" * 100 + b"\n", b"error 2\nunknown request '" + b"?" * 64 + b"'\n"),
            (b"x" * 5000, b"error 2\nrequest too long\n"),
        ]
        for data, want in cases:
            try:
                got = self.raw(data)
            except OSError as e:
                self.fail("for %r: %s" % (data[:60], e))
            self.assertEqual(got, want, "for %r" % data[:60])
        # a line without its LF, then EOF: no answer, nothing done
        self.assertEqual(self.raw(b"route-add\t%s\tdev-a\t%s\t0\terror" % (SVC4.encode(), TO4.encode())), b"")
        self.assertEqual(self.node.routes(), [])
        self.assertTrue(self.node.shuntd_running())
        ok = self.raw(b"route-add\t%s\tdev-a\t%s\t0\terror\n" % (SVC4.encode(), TO4.encode()))
        self.assertTrue(ok.startswith(b"ok\nroute added"), ok)
        self.assertEqual([r["key"] for r in self.node.routes()], ["dev-a"])

    def test_stalled_clients_are_closed_and_limited(self):
        stalled = []
        try:
            for _ in range(32):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.node.sock)
                s.sendall(b"status\t")  # never finished
                stalled.append(s)
            time.sleep(0.3)
            # the 33rd is told why, at once
            busy = self.raw(b"status\ttext\n", timeout=3)
            self.assertEqual(busy, b"error 1\nshuntd: too many control connections at once, try again\n")
            p = self.node.ctl("status")
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("too many control connections", p.stderr)
            # the proxy is not affected
            self.assertPod(self.get(N.BASE4, "/"), "baseline")
            # within the 5 s limit (plus a tick) every stalled one is closed
            t0 = time.monotonic()
            for s in stalled:
                s.settimeout(8)
                self.assertEqual(s.recv(100), b"", "stalled control connection got data")
            self.assertLess(time.monotonic() - t0, 6.5)
        finally:
            for s in stalled:
                s.close()
        self.node.ctl_ok("status")
        self.assertIn("did not finish its request", self.node.shuntd_output())
