# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Routes from --config FILE, reloaded on SIGHUP."""

import os
import signal
import time

import node as N
from base import SVC4, SVC6, TO2_4, NodeTestCase
from httpmsg import key_header

INITIAL = """\
# e2e initial routes
route 10.211.0.20:8080 dev-file 10.211.0.30:8080
route [fd00:211::20]:8080\tdev-file\t[fd00:211::30]:8080   # trailing comment

route 10.211.0.20:8080 dev-file-fb 10.211.0.30:8099 fallback=baseline
"""


class Config(NodeTestCase):
    node_opts = {"config": INITIAL}

    def setUp(self):
        super().setUp()
        if self.node.config_text_now() != INITIAL:
            self.reload(INITIAL)
            self.wait_keys({"dev-file", "dev-file-fb"})

    def reload(self, text):
        self.node.write_config(text)
        self.node.shuntd.send_signal(signal.SIGHUP)

    def file_keys(self):
        return {r["key"] for r in self.node.routes() if r.get("source") == "file"}

    def wait_keys(self, keys, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            got = self.file_keys()
            if got == keys:
                return
            self.assertLess(time.monotonic(), deadline, "file routes %s, expected %s" % (got, keys))
            time.sleep(0.1)

    def test_routes_from_config_apply(self):
        lst = [r for r in self.node.routes() if r["key"] == "dev-file"]
        self.assertEqual(sorted(r["service"] for r in lst), sorted([SVC4, SVC6]))
        for r in lst:
            self.assertEqual(r["source"], "file")
        fb = [r for r in self.node.routes() if r["key"] == "dev-file-fb"]
        self.assertEqual(len(fb), 1)
        self.assertEqual(fb[0]["fallback"], "baseline")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-file")]), "sandbox")
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-file")]), "sandbox")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-file-fb")]), "baseline")
        self.assertPod(self.get(N.BASE4, "/", []), "baseline")

    def test_edit_and_sighup_applies(self):
        self.reload("route 10.211.0.20:8080 dev-new 10.211.0.31:8080\n"
                    "route [fd00:211::20]:8080 dev-file [fd00:211::30]:8080 ttl=1h\n")
        self.wait_keys({"dev-new", "dev-file"})
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-new")]), "sandbox2")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-file")]), "baseline", "route removed from the file")
        self.assertPod(self.get(N.BASE6, "/", [key_header("dev-file")]), "sandbox")
        r = [r for r in self.node.routes() if r["key"] == "dev-file"][0]
        self.assertGreater(r["expires_unix"], time.time() + 3000, "ttl=1h from the file not applied: %r" % r)

    def test_bad_file_keeps_old_routes(self):
        before = sorted((r["service"], r["key"], r["to"]) for r in self.node.routes())
        off = os.path.getsize(self.node.shuntd_log)
        self.reload("route 10.211.0.20:8080 dev-new 10.211.0.31:8080\n"
                    "# fine so far\n"
                    "route 10.211.0.20:8080 dev-bad 10.211.0.300:8080\n")
        deadline = time.monotonic() + 5
        want = "routes.conf:3"
        while want not in self.node.shuntd_output(since=off):
            self.assertLess(time.monotonic(), deadline, "no error naming %s logged; shuntd said:\n%s"
                            % (want, self.node.shuntd_output(since=off)[-2000:]))
            time.sleep(0.1)
        self.assertTrue(self.node.shuntd_running(), "a bad config file killed shuntd")
        after = sorted((r["service"], r["key"], r["to"]) for r in self.node.routes())
        self.assertEqual(after, before, "a bad file changed the routes")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-file")]), "sandbox")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-new")]), "baseline", "half of a bad file applied")

    def test_api_routes_survive_reload(self):
        self.route(SVC4, "dev-api", TO2_4)
        self.reload(INITIAL + "route 10.211.0.20:8080 dev-extra 10.211.0.31:8080\n")
        self.wait_keys({"dev-file", "dev-file-fb", "dev-extra"})
        api = [r for r in self.node.routes() if r["key"] == "dev-api"]
        self.assertEqual(len(api), 1, "API route dropped by a file reload")
        self.assertEqual(api[0]["source"], "api")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-api")]), "sandbox2")
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-extra")]), "sandbox2")

    def test_missing_file_on_reload_keeps_routes(self):
        os.unlink(self.node.config_path)
        off = os.path.getsize(self.node.shuntd_log)
        self.node.shuntd.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "routes.conf" not in self.node.shuntd_output(since=off):
            self.assertLess(time.monotonic(), deadline, "no error naming the missing file was logged")
            time.sleep(0.1)
        self.assertTrue(self.node.shuntd_running())
        self.assertEqual(self.file_keys(), {"dev-file", "dev-file-fb"})
        self.assertPod(self.get(N.BASE4, "/", [key_header("dev-file")]), "sandbox")



class ConfigOverrides(NodeTestCase):
    """Overrides in the routes file: applied, replaced on reload, and a file
    whose override source cannot be resolved is refused as a whole."""

    node_opts = {"config": INITIAL}

    def reload(self, text, expect):
        off = N._size(self.node.shuntd_log)
        self.node.write_config(text)
        self.node.shuntd.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while expect not in N._read_from(self.node.shuntd_log, off):
            self.assertLess(time.monotonic(), deadline, "no %r after SIGHUP" % expect)
            time.sleep(0.05)

    def test_override_lines(self):
        ns = self.node.netns_path("client")
        good = INITIAL + "override netns:%s %s %s ttl=1h\n" % (ns, SVC4, TO2_4)
        self.reload(good, "1 override(s) in force")
        lst = self.node.ctl_json("override", "list")
        self.assertEqual([(o["from"], o["dst"], o["to"], o["source"]) for o in lst],
                         [("netns:" + ns, SVC4, TO2_4, "file")])
        self.assertPod(self.get(N.BASE4, "/"), "sandbox2", "override from the file")
        # A source that does not exist refuses the whole file: the route
        # change on the first line does not happen either.
        bad = good.replace("dev-file-fb", "dev-renamed") + \
            "override netns:/run/netns/nope-%d 10.211.0.20:9000 10.211.0.30:9000\n" % os.getpid()
        self.reload(bad, "the previous routes stay in force")
        out = self.node.shuntd_output()
        self.assertIn("line 7: --from: /run/netns/nope-", out)
        keys = {r["key"] for r in self.node.routes()}
        self.assertIn("dev-file-fb", keys)
        self.assertNotIn("dev-renamed", keys)
        self.assertEqual(len(self.node.ctl_json("override", "list")), 1)
        # removed from the file: gone
        self.reload(INITIAL, "0 override(s) in force")
        self.assertEqual(self.node.ctl_json("override", "list"), [])
        self.assertPod(self.get(N.BASE4, "/"), "baseline")
