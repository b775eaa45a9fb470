# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The seed case of L4 overrides: a sandbox that needs its own database.

Two real PostgreSQL servers (Debian's) in two pod namespaces: the shared
staging database and a sandbox's temporary one. An override sends the
connections from the sandbox pod to the shared database's address to the
temporary one, at connect() time and without the proxy; psql from another
pod still lands on the shared one."""

import glob
import os
import pwd
import shutil
import subprocess

import node as N
from base import NodeTestCase

SHARED4, TEMP4, APP_SBX4, APP_OTHER4 = (N.NET4 + ".%d" % i for i in (60, 61, 62, 63))
SHARED6 = N.NET6 + "60"
TEMP6 = N.NET6 + "61"
PG_PORT = 5432


def pg_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def pg_skip_reason():
    if not pg_bin() or not shutil.which("psql"):
        return "PostgreSQL not installed (apt-get install postgresql postgresql-client; scripts/deps.sh does)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user (the postgresql package creates it)"
    return None


class NeedsPostgres:
    """A test class mixin: the class is skipped, with the reason, where
    Debian's PostgreSQL is not installed (a failure under CI's --strict)."""

    @classmethod
    def setUpClass(cls):
        reason = pg_skip_reason()
        if reason:
            cls._skip = reason
            cls.node = None
            return
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        if cls.node is not None:
            super().tearDownClass()


class PostgresOverride(NeedsPostgres, NodeTestCase):
    node_opts = {"extra_pods": {
        "pg-shared": (SHARED4, SHARED6, False),
        "pg-temp": (TEMP4, TEMP6, False),
        "app-sbx": (APP_SBX4, N.NET6 + "62", True),
        "app-other": (APP_OTHER4, None, True),
    }}

    @classmethod
    def prepare_node(cls, node):
        bindir = pg_bin()
        pg = pwd.getpwnam("postgres")
        os.chmod(node.tmp, 0o711)  # the postgres user reaches its data dirs below
        for name, pod, v4, v6 in (("shared", "pg-shared", SHARED4, SHARED6), ("temp", "pg-temp", TEMP4, TEMP6)):
            data = os.path.join(node.tmp, "pg-" + name)
            os.mkdir(data, 0o700)
            os.chown(data, pg.pw_uid, pg.pw_gid)
            p = N.run(["runuser", "-u", "postgres", "--", os.path.join(bindir, "initdb"), "-D", data,
                       "--auth=trust", "-U", "postgres", "--no-sync"], check=False, timeout=120)
            if p.returncode:
                raise N.HarnessError("initdb %s: %s" % (name, p.stderr))
            with open(os.path.join(data, "pg_hba.conf"), "a") as f:
                f.write("host all all %s.0/24 trust\nhost all all %s/64 trust\n" % (N.NET4, N.NET6))
            proc = node.pod_spawn(pod, ["runuser", "-u", "postgres", "--", os.path.join(bindir, "postgres"),
                                        "-D", data, "-c", "listen_addresses=%s,%s" % (v4, v6),
                                        "-c", "port=%d" % PG_PORT, "-c", "unix_socket_directories=%s" % data,
                                        "-c", "cluster_name=%s" % name, "-c", "fsync=off"],
                                  stdout=open(os.path.join(node.tmp, "pg-%s.log" % name), "ab"),
                                  stderr=subprocess.STDOUT)
            node.wait_listen(pod, PG_PORT, timeout=60)
            if proc.poll() is not None:
                raise N.HarnessError("postgres %s exited with %d" % (name, proc.returncode))

    def psql(self, pod, sql, host=SHARED4):
        rc, out, err = self.node.pod_run(pod, ["psql", "-h", host, "-p", str(PG_PORT), "-U", "postgres",
                                               "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                                         timeout=30)
        self.assertEqual(rc, 0, "psql in %s: %s" % (pod, err))
        return out.strip()

    def test_sandbox_pod_gets_its_own_database(self):
        sbx_ns = "netns:" + self.node.netns_path("app-sbx")
        dst, to = N.hostport(SHARED4, PG_PORT), N.hostport(TEMP4, PG_PORT)
        # Before: everybody reaches the shared database.
        self.assertEqual(self.psql("app-sbx", "show cluster_name"), "shared")
        self.node.ctl_ok("override", "add", "--from", sbx_ns, "--dst", dst, "--to", to, "--ttl", "1h")
        self.addCleanup(self.node.ctl, "override", "del", "--from", sbx_ns, "--dst", dst)
        k0 = self.node.status()["kernel"]

        self.assertEqual(self.psql("app-sbx", "show cluster_name"), "temp")
        self.assertEqual(self.psql("app-other", "show cluster_name"), "shared")
        # The temporary database sees the sandbox pod itself: no proxy between.
        self.assertEqual(self.psql("app-sbx", "select host(inet_client_addr())"), APP_SBX4)
        # What the sandbox writes stays in its database.
        self.psql("app-sbx", "create table sandbox_only(x int); insert into sandbox_only values (42)")
        self.assertEqual(self.psql("app-sbx", "select x from sandbox_only"), "42")
        self.assertEqual(self.psql("app-other", "select to_regclass('sandbox_only') is null"), "t")
        k1 = self.node.status()["kernel"]
        self.assertGreaterEqual(k1["overridden"] - k0["overridden"], 4)
        self.assertEqual(k1["captured"], k0["captured"], "a database connection went to the HTTP proxy")

        # Deleted: the sandbox pod is back on the shared database.
        self.node.ctl_ok("override", "del", "--from", sbx_ns, "--dst", dst)
        self.assertEqual(self.psql("app-sbx", "show cluster_name"), "shared")

    def test_ipv6_database_address(self):
        sbx_ns = "netns:" + self.node.netns_path("app-sbx")
        dst, to = N.hostport(SHARED6, PG_PORT), N.hostport(TEMP6, PG_PORT)
        self.node.ctl_ok("override", "add", "--from", sbx_ns, "--dst", dst, "--to", to)
        self.addCleanup(self.node.ctl, "override", "del", "--from", sbx_ns, "--dst", dst)
        self.assertEqual(self.psql("app-sbx", "show cluster_name", host=SHARED6), "temp")
        # the IPv4 address of the same database has no override
        self.assertEqual(self.psql("app-sbx", "show cluster_name", host=SHARED4), "shared")
