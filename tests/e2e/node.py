# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""A throwaway single "node" for the shunt end-to-end tests.

    netns <id>-node     plays the host: bridge <id>-br 10.211.0.1/24, fd00:211::1/64;
                        shuntd runs here
    netns <id>-client   10.211.0.10 / fd00:211::10   clients, inside the test cgroup
    netns <id>-base     10.211.0.20 / fd00:211::20   baseline: HTTP :8080, TCP echo :9000
    netns <id>-sbx      10.211.0.30 / fd00:211::30   sandbox:  HTTP :8080, TCP echo :9000
    netns <id>-sbx2     10.211.0.31 / fd00:211::31   sandbox2: HTTP :8080

Every name carries the node's random id ('sh' + 4 hex): netns, veths, the
cgroup <cgroot>/shunt-e2e-<id>, the pin dir /sys/fs/bpf/shunt-e2e-<id>, the
temp dir /tmp/shunt-e2e-<id> (control socket, logs). close() undoes all of
it, and runs from atexit and on SIGINT/SIGTERM too.

Processes that must live inside a namespace are started with
`nsenter --net=/run/netns/<name>` (never `ip netns exec`, which remounts
/sys and hides the cgroup tree and the bpffs). Client processes join the
cgroup before they exec anything:
    sh -c 'echo $$ > CG/cgroup.procs && exec nsenter --net=/run/netns/CLIENT cmd...'

Extra pods
----------
A test can ask for more pods than the fixed set: each is its own netns
<id>-<name> with eth0 (v4/24, v6/64) on the node's bridge and its host end
<id>-x<N> in the node netns; close() removes it like the others, also when
start() or the test failed half-way.

    Node(build, extra_pods={"db": ("10.211.0.50", "fd00:211::50"),
                            "app": ("10.211.0.51", None, True)})  # made by start()
    node.add_pod("db", "10.211.0.50", "fd00:211::50", in_cgroup=False)  # after start()

Addresses must lie in 10.211.0.0/24 and fd00:211::/64 (v6 may be None), not
.0, .1 or .255 and not taken; names are [a-z0-9-], up to 24 characters.
in_cgroup says whether the pod's processes join the test cgroup by default:
they must when their outbound connect()s are to be captured by shunt (an
app calling other services); a pure server need not (the cgroup hooks see
connect(), never accept()). Running things in a pod:

    node.pod_argv(pod, argv, in_cgroup=None)   argv that runs argv in the pod
                                               (and the cgroup; None = pod default)
    node.pod_spawn(pod, argv, in_cgroup=None, **popen)  a background process,
                                               killed (process group) by close()
    node.pod_run(pod, argv, in_cgroup=None, timeout=20) -> (rc, stdout, stderr)
    node.wait_listen(pod, port, timeout=15)    until a TCP socket listens there
    node.start_server(name, pod, port, args=(), in_cgroup=None)
                                               a servers.py instance; logs and
                                               readiness like the built-in ones
    node.pod(name) -> {"ns", "netns", "v4", "v6", "in_cgroup"}   any pod
    node.pod_client(pod) -> PodClient   a client worker (like node.client)
                                        in that pod and the test cgroup

NodeTestCase (base.py) sets a class's pods with node_opts = {"extra_pods":
...} and starts its servers in the prepare_node(node) hook.

The agent in a container
------------------------
With SHUNT_E2E_AGENT_IMAGE set (make test-image), shuntd_start() and
shuntd_spawn() run the agent's image with podman and the DaemonSet's
security context instead of nsenter (agent_container.py): node.shuntd is
then a ContainerAgent, which answers like a Popen. The agent sees the
DaemonSet's paths: node.agent_path(host_path) and node.agent_source(spec)
translate what a test hands to it (a cgroup: override source, say).
"""

import atexit
import ctypes
import ipaddress
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time

import agent_container as AC
from httpmsg import Response, build_request

E2E_DIR = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"

NET4 = "10.211.0"
NET6 = "fd00:211::"
NODE4, NODE6 = NET4 + ".1", NET6 + "1"
CLIENT4, CLIENT6 = NET4 + ".10", NET6 + "10"
BASE4, BASE6 = NET4 + ".20", NET6 + "20"
SBX4, SBX6 = NET4 + ".30", NET6 + "30"
SBX2_4, SBX2_6 = NET4 + ".31", NET6 + "31"
HTTP_PORT = 8080
ECHO_PORT = 9000
PROXY_PORT = 15001
DEAD_PORT = 8099  # nobody listens here, in any pod

PODS = {  # name -> (short, v4, v6)
    "client": ("cl", CLIENT4, CLIENT6),
    "base": ("bs", BASE4, BASE6),
    "sbx": ("sb", SBX4, SBX6),
    "sbx2": ("s2", SBX2_4, SBX2_6),
}
NET4_CIDR = ipaddress.ip_network(NET4 + ".0/24")
NET6_CIDR = ipaddress.ip_network(NET6 + "/64")
POD_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")


def hostport(ip, port):
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def addr_text(a):
    """A struct shunt_addr as bpftool prints it -> 'ip:port' or '[ip6]:port'."""
    raw = bytes(a["addr"])
    ip = ipaddress.ip_address(raw[:4] if a["family"] == 4 else raw)
    return hostport(str(ip), a["port"])


# The reason of a skip because the running kernel lacks a feature starts with
# this; run.py --strict fails every other skip (a missing prerequisite).
KERNEL_SKIP = "kernel: "


def listener_socks(addrs=2):
    """Listening sockets an agent started by the harness has (and hands
    over): one per --proxy-addr for each of its workers, one worker per CPU
    it may run on (it inherits the harness's affinity)."""
    return addrs * len(os.sched_getaffinity(0))


class Skip(Exception):
    """A prerequisite of the machine is missing."""


class HarnessError(Exception):
    pass


_LIVE = set()  # nodes not yet closed
# Problems of the agent found at teardown (sanitizer reports, a bad exit):
# run.py fails the run on any.
AGENT_PROBLEMS = []
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
ALL_IDS = []  # every id this process created, for the leak check


def close_all_nodes():
    for n in list(_LIVE):
        n.close()


atexit.register(close_all_nodes)

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup():
    # Die with the test runner even if it is SIGKILLed.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _mounts():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            out.append((parts[4], parts[sep + 1]))
    return out


def cgroup2_root():
    fs = dict(_mounts())
    for cand in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if fs.get(cand) == "cgroup2":
            return cand
    return None


def ensure_bpffs():
    """Returns None when /sys/fs/bpf is (now) a bpffs, else the reason."""
    if dict(_mounts()).get("/sys/fs/bpf") == "bpf":
        return None
    # shuntd mounts one here too when none is mounted; do what it would.
    os.makedirs("/sys/fs/bpf", exist_ok=True)
    p = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True, text=True)
    if p.returncode != 0 or dict(_mounts()).get("/sys/fs/bpf") != "bpf":
        return "no bpffs at /sys/fs/bpf and mounting one failed: %s" % p.stderr.strip()
    return None


def prereq_skip_reason(need=("ip", "nsenter", "bpftool", "mount")):
    if os.geteuid() != 0:
        return "not root (the e2e tests create netns, cgroups and BPF pins)"
    for tool in need:
        if not shutil.which(tool):
            return "tool %r not found in PATH" % tool
    if not os.path.exists(PYTHON):
        return "%s not found" % PYTHON
    if not cgroup2_root():
        return "no cgroup2 mounted at /sys/fs/cgroup/unified or /sys/fs/cgroup"
    return ensure_bpffs()


def run(argv, check=True, timeout=20, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise HarnessError("%s -> rc %d: %s%s" % (shlex.join(argv), p.returncode, p.stdout, p.stderr))
    return p


def _read_from(path, offset=0):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def server_events(path, offset=0, kinds=None):
    """The JSON-lines events servers.py wrote to its log at path after
    byte offset, of the given kinds (all when None)."""
    out = []
    for line in _read_from(path, offset).splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if kinds is None or ev.get("event") in kinds:
            out.append(ev)
    return out


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


class PodClient:
    """Drives clientpod.py, a worker living in a pod's netns (the client
    pod's unless told) and the test cgroup."""

    def __init__(self, node, pod="client", in_cgroup=True):
        self.node = node
        self.errlog = os.path.join(node.tmp, "client.stderr" if pod == "client" else "client-%s.stderr" % pod)
        cmd = "exec nsenter --net=%s %s -B -u %s" % (
            shlex.quote(node.netns_path(pod)), PYTHON, shlex.quote(os.path.join(E2E_DIR, "clientpod.py")))
        if in_cgroup:
            cmd = "echo $$ > %s && %s" % (shlex.quote(os.path.join(node.cg, "cgroup.procs")), cmd)
        self.proc = node.spawn(["sh", "-c", cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=open(self.errlog, "ab"))
        self.buf = b""
        self.n = 0
        hello = self._read_line(10)
        if not hello.get("ready"):
            raise HarnessError("client worker did not start: %r" % hello)
        self.pid = hello["pid"]

    def _read_line(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError("client worker gave no answer within %.0fs (stuck?); stderr: %s"
                                   % (timeout, _read_from(self.errlog)[-2000:]))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                data = os.read(fd, 1 << 20)
                if not data:
                    raise HarnessError("client worker exited (rc %s); stderr: %s"
                                       % (self.proc.poll(), _read_from(self.errlog)[-2000:]))
                self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def rpc(self, op, timeout=10.0, **kw):
        """One command; {'ok': False, 'error': ...} comes back as a dict, not an exception."""
        if self.proc.poll() is not None:
            raise HarnessError("client worker is gone (rc %s)" % self.proc.returncode)
        kw["op"] = op
        kw["timeout"] = timeout  # the operation's own timeout; we wait 10s longer for the reply
        self.proc.stdin.write((json.dumps(kw) + "\n").encode())
        self.proc.stdin.flush()
        return self._read_line(timeout + 10)

    def call(self, op, timeout=10.0, **kw):
        """Like rpc, but an error in the client becomes an AssertionError."""
        r = self.rpc(op, timeout=timeout, **kw)
        if not r.get("ok"):
            raise AssertionError("client %s %s failed: %s" % (op, kw.get("id", ""), r.get("error")))
        return r

    def connect(self, host, port, timeout=5, nodelay=True):
        self.n += 1
        cid = "c%d" % self.n
        r = self.call("connect", id=cid, host=host, port=port, timeout=timeout, nodelay=nodelay)
        return ClientConn(self, cid, r)

    def try_connect(self, host, port, timeout=5):
        """(ClientConn or None, reply)"""
        self.n += 1
        cid = "c%d" % self.n
        r = self.rpc("connect", id=cid, host=host, port=port, timeout=timeout)
        return (ClientConn(self, cid, r) if r.get("ok") else None), r

    def http_client(self, host, port, timeout=5):
        self.n += 1
        cid = "h%d" % self.n
        r = self.call("hc_open", id=cid, host=host, port=port, timeout=timeout)
        return HttpClientConn(self, cid, r)

    def request(self, host, port, method="GET", path="/", headers=(), body=b"", timeout=5, **kw):
        """One request on a fresh connection, which is then closed."""
        c = self.connect(host, port, timeout=timeout)
        try:
            return c.request(method, path, headers=headers, body=body, host=hostport(host, port),
                             timeout=timeout, **kw)
        finally:
            c.close()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                pass


class ClientConn:
    def __init__(self, pod, cid, info):
        self.pod = pod
        self.id = cid
        self.peer = tuple(info["peer"])
        self.local = tuple(info["local"])
        self.connect_s = info.get("connect_s")

    def send(self, data, chunk=None, delay=0.0, timeout=5):
        if isinstance(data, str):
            data = data.encode()
        total = timeout + (len(data) / chunk) * delay if chunk else timeout
        return self.pod.call("send", id=self.id, data=_b64(data), chunk=chunk, delay=delay, timeout=total)

    def try_send(self, data, timeout=5):
        return self.pod.rpc("send", id=self.id, data=_b64(data), timeout=timeout)

    def response(self, method="GET", timeout=5):
        """The next response (interim 1xx included), or None on a clean EOF."""
        r = self.pod.call("response", id=self.id, method=method, timeout=timeout)
        if r.get("eof"):
            return None
        return Response(r)

    def try_response(self, method="GET", timeout=5):
        """(Response or None, reply) without raising on errors."""
        r = self.pod.rpc("response", id=self.id, method=method, timeout=timeout)
        if not r.get("ok") or r.get("eof"):
            return None, r
        return Response(r), r

    def request(self, method="GET", path="/", headers=(), body=b"", timeout=5, host=None, **kw):
        if host is None:
            host = hostport(*self.peer[:2])
        self.send(build_request(method, path, headers, body, host=host, **kw), timeout=timeout)
        r = self.response(method=method, timeout=timeout)
        if r is None:
            raise AssertionError("connection closed before a response to %s %s" % (method, path))
        return r

    def recv(self, n=None, timeout=2):
        r = self.pod.call("recv", id=self.id, n=n, timeout=timeout)
        return _unb64(r["data"]), r["closed"]

    def wait_closed(self, timeout=5):
        r = self.pod.call("wait_closed", id=self.id, timeout=timeout)
        r["data"] = _unb64(r["data"])
        return r

    def shutdown_wr(self):
        self.pod.call("shutdown_wr", id=self.id)

    def close(self):
        self.pod.rpc("close", id=self.id)


class HttpClientConn:
    """http.client.HTTPConnection in the client pod, never silently reconnecting."""

    def __init__(self, pod, cid, info):
        self.pod = pod
        self.id = cid
        self.peer = tuple(info["peer"])
        self.local = tuple(info["local"])

    def request(self, method="GET", path="/", headers=(), body=b"", timeout=5):
        r = self.pod.call("hc_request", id=self.id, method=method, path=path, headers=list(headers),
                          body=_b64(body), timeout=timeout)
        return Response(r)

    def close(self):
        self.pod.rpc("close", id=self.id)


def _b64(data):
    import base64

    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def _unb64(s):
    import base64

    return base64.b64decode(s or "")


class Node:
    def __init__(self, build, shuntd=True, shuntd_args=(), config=None, verbose=False, shuntd_in_cgroup=False,
                 extra_pods=None, proxy_addrs=(NODE4, NODE6)):
        """extra_pods: {name: (v4, v6) or (v4, v6, in_cgroup)}, made by
        start(); see add_pod(). proxy_addrs: shuntd's --proxy-addr list."""
        self.proxy_addrs = tuple(proxy_addrs)
        self.build = os.path.abspath(build)
        self.shuntd_bin = os.path.join(self.build, "shuntd")
        self.shuntctl_bin = os.path.join(self.build, "shuntctl")
        self.want_shuntd = shuntd
        self.shuntd_in_cgroup = shuntd_in_cgroup  # like an agent pod under the attached cgroup
        self.shuntd_args = list(shuntd_args)
        self.config_text = config
        self.verbose = verbose
        self.procs = []  # every Popen we started (each its own process group)
        self.servers = {}
        # Every pod but "node": name -> {"ns", "netns", "v4", "v6", "in_cgroup"}.
        self.pods = {}
        self.extra_pods = dict(extra_pods or {})
        self.shuntd = None
        self.shuntd_starts = 0
        self.shuntd_log_start = 0
        self.expected_exit = False  # a test stopped shuntd on purpose
        self.start_error = None
        self.client = None
        self.closed = False
        self.created = {"netns": [], "cg": False, "pin": False, "tmp": False}
        self.containers = []  # every ContainerAgent started (SHUNT_E2E_AGENT_IMAGE)
        cgroot = cgroup2_root()
        if cgroot is None:
            raise Skip("no cgroup2")
        for _ in range(20):
            self.id = "sh" + secrets.token_hex(2)
            if not os.path.exists("/run/netns/%s-node" % self.id) and \
                    not os.path.exists("/tmp/shunt-e2e-%s" % self.id):
                break
        ALL_IDS.append(self.id)
        self.cgroot = cgroot
        self.cg = os.path.join(cgroot, "shunt-e2e-" + self.id)
        self.pin = "/sys/fs/bpf/shunt-e2e-" + self.id
        self.tmp = "/tmp/shunt-e2e-" + self.id
        self.sock = os.path.join(self.tmp, "shunt.sock")
        self.shuntd_log = os.path.join(self.tmp, "shuntd.log")
        self.config_path = os.path.join(self.tmp, "routes.conf")
        _LIVE.add(self)

    # ---- names -------------------------------------------------------------
    def ns(self, pod):
        return "%s-%s" % (self.id, pod)

    def netns_path(self, pod):
        return "/run/netns/" + self.ns(pod)

    def nsenter(self, pod):
        return ["nsenter", "--net=" + self.netns_path(pod)]

    # ---- lifecycle -----------------------------------------------------------
    def start(self, with_shuntd=True):
        try:
            os.makedirs(self.tmp)
            self.created["tmp"] = True
            self._topology()
            os.mkdir(self.cg)
            self.created["cg"] = True
            self._servers()
            self.client = PodClient(self)
            if self.config_text is not None:
                self.write_config(self.config_text)
            if self.want_shuntd and with_shuntd:
                self.shuntd_start()
        except BaseException:
            self.close()
            raise
        return self

    def spawn(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, preexec_fn=_child_setup, **kw)
        self.procs.append(p)
        return p

    def _topology(self):
        self._add_netns("node")
        node = self.ns("node")
        br = self.id + "-br"
        run(["ip", "-n", node, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
        run(["ip", "-n", node, "addr", "add", NODE4 + "/24", "dev", br])
        run(["ip", "-n", node, "addr", "add", NODE6 + "/64", "dev", br, "nodad"])
        run(["ip", "-n", node, "link", "set", br, "up"])
        for pod, (short, v4, v6) in PODS.items():
            self._plug_pod(pod, short, v4, v6, in_cgroup=(pod == "client"))
        for name, spec in self.extra_pods.items():
            self.add_pod(name, *spec, wait=False)
        self._wait_addresses(("node",) + tuple(self.pods))

    def _add_netns(self, pod):
        run(["ip", "netns", "add", self.ns(pod)])
        self.created["netns"].append(self.ns(pod))
        # No DAD anywhere: addresses must be usable at once.
        run(self.nsenter(pod) + ["sh", "-c",
            "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad; "
            "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; "
            "echo 0 > /proc/sys/net/ipv6/conf/all/dad_transmits; "
            "echo 0 > /proc/sys/net/ipv6/conf/default/dad_transmits"])
        run(["ip", "-n", self.ns(pod), "link", "set", "lo", "up"])

    def _plug_pod(self, pod, short, v4, v6, in_cgroup):
        """A netns with eth0 on the bridge; the host end is <id>-<short>."""
        self.pods[pod] = {"ns": self.ns(pod), "netns": self.netns_path(pod), "v4": v4, "v6": v6,
                          "in_cgroup": bool(in_cgroup)}
        self._add_netns(pod)
        node = self.ns("node")
        host_if = "%s-%s" % (self.id, short)
        run(["ip", "-n", node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
             "netns", self.ns(pod)])
        run(["ip", "-n", node, "link", "set", host_if, "master", self.id + "-br", "up"])
        run(["ip", "-n", self.ns(pod), "addr", "add", v4 + "/24", "dev", "eth0"])
        if v6:
            run(["ip", "-n", self.ns(pod), "addr", "add", v6 + "/64", "dev", "eth0", "nodad"])
        run(["ip", "-n", self.ns(pod), "link", "set", "eth0", "up"])

    def _wait_addresses(self, pods):
        deadline = time.monotonic() + 10
        for pod in pods:
            while run(["ip", "-n", self.ns(pod), "-6", "addr", "show", "tentative"]).stdout.strip():
                if time.monotonic() > deadline:
                    raise HarnessError("IPv6 addresses in %s stay tentative" % self.ns(pod))
                time.sleep(0.05)

    def add_pod(self, name, v4, v6=None, in_cgroup=False, wait=True):
        """One more pod on the bridge (see the module docstring); returns
        pod(name). Works from start() on; close() removes the pod whatever
        happened in between."""
        if self.closed or self.ns("node") not in self.created["netns"]:
            raise HarnessError("add_pod(%r): node not started (pass extra_pods= or call start() first)" % (name,))
        if not isinstance(name, str) or not POD_NAME_RE.match(name) or name == "node" or name in self.pods:
            raise HarnessError("add_pod: bad or taken pod name %r (want [a-z0-9-]{1,24}, unique)" % (name,))
        taken = {ipaddress.ip_address(a) for a in (NODE4, NODE6)}
        taken |= {ipaddress.ip_address(p[k]) for p in self.pods.values() for k in ("v4", "v6") if p[k]}
        for addr, net in ((v4, NET4_CIDR), (v6, NET6_CIDR)):
            if addr is None and net is NET6_CIDR:
                continue
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                raise HarnessError("add_pod(%r): %r is not an address" % (name, addr))
            if ip not in net or ip in (net.network_address, net.broadcast_address) or ip in taken:
                raise HarnessError("add_pod(%r): %s is outside %s or taken" % (name, addr, net))
        short = "x%d" % sum(1 for p in self.pods if p not in PODS)
        self._plug_pod(name, short, v4, v6, in_cgroup)
        if wait:
            self._wait_addresses((name,))
        return self.pod(name)

    def pod_client(self, name, in_cgroup=True):
        """A client worker (PodClient, like node.client) in pod name, in the
        test cgroup whatever the pod's default (its connect()s are
        captured), or, in_cgroup=False, outside it (the cgroup hooks never
        see it: a VM-isolated pod). close() stops it with the pod's other
        processes."""
        self.pod(name)
        return PodClient(self, name, in_cgroup=in_cgroup)

    def add_routed_pod(self, name, v4, v6=None):
        """A pod plugged the way routed CNIs (Calico, kindnet's ptp) plug
        theirs, not on the bridge: eth0 with v4/32 (and v6/128), default
        route via the node; on the node a /32 (/128) route to it through its
        host end <id>-r<N> (pod(name)["host_if"]), and proxy ARP/NDP on the
        bridge so the bridge's pods reach it. Its traffic to them is routed
        by the node, so a TC program on host_if sees it. Its processes are
        outside the test cgroup. Addresses as for add_pod."""
        if self.closed or self.ns("node") not in self.created["netns"]:
            raise HarnessError("add_routed_pod(%r): node not started" % (name,))
        if not isinstance(name, str) or not POD_NAME_RE.match(name) or name == "node" or name in self.pods:
            raise HarnessError("add_routed_pod: bad or taken pod name %r" % (name,))
        for addr, net in ((v4, NET4_CIDR), (v6, NET6_CIDR)):
            if addr is not None and ipaddress.ip_address(addr) not in net:
                raise HarnessError("add_routed_pod(%r): %s is outside %s" % (name, addr, net))
        host_if = "%s-r%d" % (self.id, sum(1 for p in self.pods.values() if p.get("host_if")))
        self.pods[name] = {"ns": self.ns(name), "netns": self.netns_path(name), "v4": v4, "v6": v6,
                           "in_cgroup": False, "host_if": host_if}
        self._add_netns(name)
        node, pod, br = self.ns("node"), self.ns(name), self.id + "-br"
        run(["ip", "-n", node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod])
        run(["ip", "-n", node, "link", "set", host_if, "up"])
        run(["ip", "-n", pod, "link", "set", "eth0", "up"])
        run(["ip", "-n", pod, "addr", "add", v4 + "/32", "dev", "eth0"])
        run(["ip", "-n", pod, "route", "add", "default", "via", NODE4, "dev", "eth0", "onlink"])
        run(["ip", "-n", node, "route", "add", v4 + "/32", "dev", host_if])
        sysctls = ["net/ipv4/ip_forward", "net/ipv4/conf/%s/proxy_arp" % br]
        if v6:
            run(["ip", "-n", node, "addr", "add", "fe80::1/64", "dev", host_if, "nodad"])
            run(["ip", "-n", pod, "addr", "add", v6 + "/128", "dev", "eth0", "nodad"])
            run(["ip", "-n", pod, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"])
            run(["ip", "-n", node, "-6", "route", "add", v6 + "/128", "dev", host_if])
            run(["ip", "-n", node, "-6", "neigh", "add", "proxy", v6, "dev", br])
            sysctls += ["net/ipv6/conf/all/forwarding", "net/ipv6/conf/%s/proxy_ndp" % br]
        run(self.nsenter("node") + ["sh", "-c", "; ".join("echo 1 > /proc/sys/" + k for k in sysctls)])
        self._wait_addresses((name,))
        return self.pod(name)

    def pod(self, name):
        try:
            return self.pods[name]
        except KeyError:
            raise HarnessError("no pod %r on node %s (have %s)" % (name, self.id, ", ".join(sorted(self.pods))))

    # ---- processes in pods -------------------------------------------------------
    def pod_argv(self, pod, argv, in_cgroup=None):
        """argv run in the pod's netns. With in_cgroup (None: the pod's own
        setting) the process joins the test cgroup before it execs anything,
        so the cgroup hooks see every socket it makes. pod "node" is the
        node itself (where shuntd runs), never in the cgroup."""
        info = {"in_cgroup": False} if pod == "node" else self.pod(pod)
        inner = self.nsenter(pod) + [str(a) for a in argv]
        if in_cgroup is None:
            in_cgroup = info["in_cgroup"]
        if not in_cgroup:
            return inner
        if not self.created["cg"]:
            raise HarnessError("pod_argv(%r): the test cgroup does not exist yet" % pod)
        return ["sh", "-c", "echo $$ > %s && exec %s" % (shlex.quote(os.path.join(self.cg, "cgroup.procs")),
                                                          shlex.join(inner))]

    def pod_spawn(self, pod, argv, in_cgroup=None, **kw):
        """A background process in the pod; close() kills its process group."""
        return self.spawn(self.pod_argv(pod, argv, in_cgroup), **kw)

    def pod_run(self, pod, argv, in_cgroup=None, timeout=20):
        """Run argv in the pod to completion: (rc, stdout, stderr)."""
        p = self.pod_spawn(pod, argv, in_cgroup, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(p)
            p.communicate()
            raise AssertionError("%s timed out after %ss" % (shlex.join(argv), timeout))
        self.procs.remove(p)
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def wait_listen(self, pod, port, timeout=15, proc=None):
        """Until a TCP socket listens on port in the pod (any address); fails
        at once if proc (a Popen) exits meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            if run(self.nsenter(pod) + ["ss", "-Hltn", "sport = :%d" % port], check=False).stdout.strip():
                return
            if proc is not None and proc.poll() is not None:
                raise HarnessError("process in pod %s exited (rc %s) before listening on port %d"
                                   % (pod, proc.returncode, port))
            if time.monotonic() > deadline:
                raise HarnessError("nothing listens on port %d in pod %s after %ss" % (port, pod, timeout))
            time.sleep(0.05)

    def _servers(self):
        specs = [
            ("base", "baseline", HTTP_PORT, ()),
            ("base", "baseline-echo", ECHO_PORT, ("--echo",)),
            ("sbx", "sandbox", HTTP_PORT, ()),
            ("sbx", "sandbox-echo", ECHO_PORT, ("--echo",)),
            ("sbx2", "sandbox2", HTTP_PORT, ()),
        ]
        started = [self._spawn_server(name, pod, port, args, False) for pod, name, port, args in specs]
        self._wait_servers(started, 15)

    def start_server(self, name, pod, port, args=(), in_cgroup=None, ready_timeout=15):
        """A servers.py instance in the pod (args: see servers.py). It answers
        with X-Pod: <name> and logs to <tmp>/<name>.log, so mark(), events()
        and diagnostics() cover it like the built-in servers."""
        self._wait_servers([self._spawn_server(name, pod, port, args, in_cgroup)], ready_timeout)
        return self.servers[name]

    def _spawn_server(self, name, pod, port, args, in_cgroup):
        if name in self.servers or not POD_NAME_RE.match(name):
            raise HarnessError("server name %r is taken or not [a-z0-9-]" % (name,))
        log = os.path.join(self.tmp, name + ".log")
        rf = os.path.join(self.tmp, name + ".ready")
        open(log, "a").close()
        argv = [PYTHON, "-B", "-u", os.path.join(E2E_DIR, "servers.py"), "--name", name, "--port", str(port),
                "--log", log, "--ready", rf] + list(args)
        with open(os.path.join(self.tmp, name + ".stderr"), "ab") as errf:
            p = self.pod_spawn(pod, argv, in_cgroup, stdout=subprocess.DEVNULL, stderr=errf)
        self.servers[name] = {"proc": p, "log": log, "pod": pod, "port": port}
        return name, rf, p

    def _wait_servers(self, started, timeout):
        deadline = time.monotonic() + timeout
        for name, rf, p in started:
            while not os.path.exists(rf):
                if p.poll() is not None:
                    raise HarnessError("server %s exited: %s"
                                       % (name, _read_from(os.path.join(self.tmp, name + ".stderr"))))
                if time.monotonic() > deadline:
                    raise HarnessError("server %s not ready" % name)
                time.sleep(0.02)

    def close(self):
        """Tear everything down; safe to call twice; never raises."""
        if self.closed:
            return
        self.closed = True
        _LIVE.discard(self)
        errors = []

        def step(what, fn):
            try:
                fn()
            except Exception as e:  # keep going: the rest must be cleaned up too
                errors.append("%s: %r" % (what, e))

        if self.client:
            step("client", self.client.close)
        if self.shuntd and self.shuntd.poll() is None:
            step("shuntd", lambda: self.shuntd_stop(signal.SIGTERM, timeout=5))
            if self.shuntd.returncode not in (0, None):
                AGENT_PROBLEMS.append("node %s: shuntd exited %s at teardown (SIGTERM)"
                                      % (self.id, self.shuntd.returncode))
        for c in self.containers:
            if c.proc.poll() is None:  # (podman run --rm removed the others)
                step("container " + c.name, c.kill)
        for p in self.procs:
            if p.poll() is None:
                step("killpg", lambda p=p: _killpg(p))
        for p in self.procs:
            step("wait", lambda p=p: p.wait(5))
        if self.created["cg"]:
            step("cgroup", self._remove_cgroup)
        for ns in reversed(self.created["netns"]):
            step("netns " + ns, lambda ns=ns: run(["ip", "netns", "del", ns]))
        if os.path.isdir(self.pin):
            step("pin", lambda: shutil.rmtree(self.pin))
        if self.created["tmp"]:
            step("sanitizers", self._scan_logs)
            step("tmp", lambda: shutil.rmtree(self.tmp))
        if errors:
            print("[e2e %s] teardown problems: %s" % (self.id, "; ".join(errors)), file=sys.stderr)

    def _scan_logs(self):
        """A sanitizer report in any agent log fails the run, even when no
        test noticed (the logs are deleted with the temp dir)."""
        for name in sorted(os.listdir(self.tmp)):
            if not name.endswith(".log"):
                continue
            text = _read_from(os.path.join(self.tmp, name))
            for marker in SANITIZER_MARKERS:
                i = text.find(marker)
                if i >= 0:
                    AGENT_PROBLEMS.append("node %s: %s in %s:\n%s" % (self.id, marker, name, text[i:i + 3000]))
                    break

    def _remove_cgroup(self):
        procs = os.path.join(self.cg, "cgroup.procs")
        for attempt in range(50):
            try:
                pids = [int(x) for x in open(procs).read().split()]
            except FileNotFoundError:
                return
            for pid in pids:  # move leftovers out first
                try:
                    with open(os.path.join(self.cgroot, "cgroup.procs"), "w") as f:
                        f.write(str(pid))
                except OSError:
                    pass
            try:
                os.rmdir(self.cg)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)
        os.rmdir(self.cg)

    # ---- shuntd --------------------------------------------------------------
    def shuntd_argv(self, extra=()):
        argv = [self.shuntd_bin, "--cgroup", self.cg, "--proxy-addr", ",".join(self.proxy_addrs),
                "--proxy-port", str(PROXY_PORT), "--control", self.sock, "--bpffs", self.pin, "-v"]
        if self.config_text is not None:
            argv += ["--config", self.config_path]
        return argv + self.shuntd_args + list(extra)

    def agent_path(self, path):
        """A host path as the agent sees it: itself on the host, the
        DaemonSet's mount of it in the container (SHUNT_E2E_AGENT_IMAGE)."""
        if not AC.AGENT_IMAGE:
            return path
        for host, ctr in ((self.pin, AC.CTR_PIN), (self.tmp, AC.CTR_RUN), (self.cgroot, AC.CTR_CGROOT)):
            if path == host or path.startswith(host + "/"):
                return ctr + path[len(host):]
        return path

    def agent_source(self, spec):
        """An override source (netns:, pid:, cgroup:) for the agent to resolve."""
        if spec.startswith("cgroup:"):
            return "cgroup:" + self.agent_path(spec[len("cgroup:"):])
        return spec

    def agent_argv(self, extra=()):
        """shuntd's flags (no binary) with the paths the agent sees; in a
        container the proxy addresses are one comma list, as the
        DaemonSet passes status.hostIPs."""
        if not AC.AGENT_IMAGE:
            return self.shuntd_argv(extra)[1:]
        argv = ["--cgroup", self.agent_path(self.cg), "--proxy-addr=%s,%s" % (NODE4, NODE6),
                "--proxy-port", str(PROXY_PORT), "--control", self.agent_path(self.sock),
                "--bpffs", AC.CTR_PIN, "-v"]
        if self.config_text is not None:
            argv += ["--config", self.agent_path(self.config_path)]
        return argv + [self.agent_path(a) if a.startswith("/") else a for a in self.shuntd_args + list(extra)]

    def shuntd_spawn(self, extra=(), log=None):
        """Start an agent (output appended to log, default the node's
        shuntd log) and return its process; shuntd_start() waits for it
        too. With SHUNT_E2E_AGENT_IMAGE a ContainerAgent."""
        log = log or self.shuntd_log
        self.shuntd_starts += 1
        if AC.AGENT_IMAGE:
            if self.shuntd_in_cgroup:
                raise HarnessError("shuntd_in_cgroup: not with the agent in a container")
            if not os.path.isdir(self.pin):
                os.mkdir(self.pin)  # the DaemonSet's hostPath, DirectoryOrCreate
            name = "shunt-e2e-%s-%d" % (self.id, self.shuntd_starts)
            pm = AC.podman_base()
            argv = AC.podman_run_argv(pm, name, AC.AGENT_IMAGE, seccomp=AC.AGENT_SECCOMP,
                                      netns=self.netns_path("node"),
                                      mounts=[(self.cgroot, AC.CTR_CGROOT, True), (self.pin, AC.CTR_PIN, False),
                                              (self.tmp, AC.CTR_RUN, False)]) + self.agent_argv(extra)
        else:
            argv = self.nsenter("node") + self.shuntd_argv(extra)
            if self.shuntd_in_cgroup:
                argv = ["sh", "-c", "echo $$ > %s && exec %s" % (
                    shlex.quote(os.path.join(self.cg, "cgroup.procs")), shlex.join(argv))]
        with open(log, "ab") as f:
            f.write(("=== e2e: shuntd start #%d: %s\n" % (self.shuntd_starts, shlex.join(argv))).encode())
        off = _size(log)
        with open(log, "ab") as logf:
            p = self.spawn(argv, stdout=logf, stderr=logf)
        if AC.AGENT_IMAGE:
            p = AC.ContainerAgent(p, name, pm, off)
            self.containers.append(p)
        p.log_offset = off
        return p

    def shuntd_start(self, extra=(), timeout=15):
        if not AC.AGENT_IMAGE and not os.access(self.shuntd_bin, os.X_OK):
            raise HarnessError("%s does not exist or is not executable (run make first)" % self.shuntd_bin)
        if self.shuntd and self.shuntd.poll() is None:
            raise HarnessError("shuntd already running")
        self.shuntd = self.shuntd_spawn(extra)
        off = self.shuntd_log_start = self.shuntd.log_offset
        deadline = time.monotonic() + timeout
        while True:
            text = _read_from(self.shuntd_log, off)
            if "ready" in text:
                break
            if self.shuntd.poll() is not None:
                raise HarnessError("shuntd exited with %d before 'ready':\n%s" % (self.shuntd.returncode, text[-4000:]))
            if time.monotonic() > deadline:
                raise HarnessError("shuntd not ready within %ds:\n%s" % (timeout, text[-4000:]))
            time.sleep(0.02)
        if AC.AGENT_IMAGE:
            self.shuntd.record_start()
            bad = self.shuntd.confinement_problems()
            if bad:
                raise HarnessError("the agent's container is not confined as the DaemonSet says:\n  "
                                   + "\n  ".join(bad))
        return self.shuntd

    def shuntd_running(self):
        return self.shuntd is not None and self.shuntd.poll() is None

    def shuntd_stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal shuntd and wait; returns its exit status (negative = signal)."""
        p = self.shuntd
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            _killpg(p)
            p.wait(5)
            raise HarnessError("shuntd did not exit within %ss of signal %d" % (timeout, sig))

    def shuntd_output(self, since=None):
        return _read_from(self.shuntd_log, self.shuntd_log_start if since is None else since)

    def config_text_now(self):
        try:
            with open(self.config_path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config_path)

    # ---- shuntctl --------------------------------------------------------------
    def backtrace(self):
        """Every thread's stack of a running shuntd (gdb), for reports."""
        if not self.shuntd_running() or not shutil.which("gdb"):
            return "(no backtrace: shuntd not running or gdb missing)"
        p = run(["gdb", "-p", str(self.shuntd.pid), "-batch", "-ex", "thread apply all bt"], check=False, timeout=30)
        return "\n".join(ln for ln in p.stdout.splitlines() if ln.startswith(("#", "Thread")))

    def ctl(self, *args, control=None, timeout=5):
        """shuntctl against the agent. With the agent in a container, from
        inside it (`podman exec`, as `kubectl exec` into the agent pod): a
        host process is outside the agent's PID namespace, where it cannot
        check the caller's capabilities, so it may only list."""
        argv = [self.shuntctl_bin, "--control", control or self.sock] + [str(a) for a in args]
        if AC.AGENT_IMAGE and control is None and self.shuntd_running():
            argv = self.shuntd.pm + ["exec", self.shuntd.name, "/usr/local/bin/shuntctl", "--control",
                                     self.agent_path(self.sock)] + [str(a) for a in args]
            timeout += 10
        elif not os.access(self.shuntctl_bin, os.X_OK):
            raise HarnessError("%s does not exist (run make first)" % self.shuntctl_bin)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        p.argv = argv
        return p

    def ctl_ok(self, *args, **kw):
        p = self.ctl(*args, **kw)
        if p.returncode != 0:
            raise AssertionError("%s -> exit %d\nstdout: %s\nstderr: %s"
                                 % (shlex.join(p.argv), p.returncode, p.stdout, p.stderr))
        return p

    def ctl_json(self, *args):
        p = self.ctl_ok(*args, "-o", "json")
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise AssertionError("%s printed no JSON: %r" % (shlex.join(p.argv), p.stdout[:2000]))

    def route_add(self, service, key, to, ttl=None, fallback=None):
        args = ["route", "add", "--service", service, "--key", key, "--to", to]
        if ttl:
            args += ["--ttl", ttl]
        if fallback:
            args += ["--fallback", fallback]
        return self.ctl_ok(*args)

    def route_del(self, service, key):
        return self.ctl_ok("route", "del", "--service", service, "--key", key)

    def routes(self):
        return self.ctl_json("route", "list")

    def status(self):
        return self.ctl_json("status")

    def map_dump(self, name):
        """The pinned map <pin>/<name> as bpftool prints it with BTF: a list
        of {"key": ..., "value": ...} with named fields."""
        p = run(["bpftool", "-j", "map", "dump", "pinned", os.path.join(self.pin, name)])
        out = []
        for e in json.loads(p.stdout or "[]"):
            if "formatted" not in e:
                raise HarnessError("bpftool printed %s without BTF names: %r" % (name, e))
            out.append(e["formatted"])
        return out

    def clear_api_routes(self):
        """Delete the routes and overrides added through the control socket."""
        for r in self.routes():
            if r.get("source", "api") == "api":
                self.ctl("route", "del", "--service", r["service"], "--key", r["key"])
        for o in self.ctl_json("override", "list"):
            if o.get("source", "api") == "api":
                self.ctl("override", "del", "--from", o["from"], "--dst", o["dst"])

    # ---- clients ---------------------------------------------------------------
    def client_cmd(self, argv, timeout=20, cpus=None):
        """Run a program in the client pod, in the test cgroup; cpus (a
        set): only on those (its connections go to their proxy workers)."""
        pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
        return self.pod_run("client", pin + argv, in_cgroup=True, timeout=timeout)

    # ---- logs ------------------------------------------------------------------
    def mark(self):
        m = {name: _size(s["log"]) for name, s in self.servers.items()}
        m["_shuntd"] = _size(self.shuntd_log)
        m["_client"] = _size(self.client.errlog) if self.client else 0
        return m

    def events(self, name, since=None, kinds=None):
        return server_events(self.servers[name]["log"], (since or {}).get(name, 0), kinds)

    def requests(self, name, since=None):
        return self.events(name, since, kinds=("request",))

    def upstream_traffic(self, since):
        """Every request or unparsable input any upstream saw since the mark."""
        out = []
        for name in self.servers:
            for ev in self.events(name, since, kinds=("request", "error")):
                out.append(ev)
        return out

    def diagnostics(self, since=None, lines=40):
        since = since or {}
        out = ["---- e2e node %s (tmp %s) ----" % (self.id, self.tmp)]
        if self.shuntd is not None:
            st = self.shuntd.poll()
            out.append("shuntd: %s" % ("running, pid %d" % self.shuntd.pid if st is None else "exited with %d" % st))
        if self.want_shuntd:
            text = _read_from(self.shuntd_log, since.get("_shuntd", 0))
            tail = text.splitlines()[-lines:]
            out.append("shuntd output since the test began (last %d lines):" % len(tail))
            out += ["  | " + ln for ln in tail]
        for name, s in self.servers.items():
            evs = _read_from(s["log"], since.get(name, 0)).splitlines()[-12:]
            out.append("server %s log since the test began (last %d):" % (name, len(evs)))
            out += ["  | " + ln[:400] for ln in evs]
        if self.client:
            ce = _read_from(self.client.errlog, since.get("_client", 0)).strip()
            if ce:
                out.append("client worker stderr:")
                out += ["  | " + ln for ln in ce.splitlines()[-lines:]]
        return "\n".join(out)


def _killpg(p):
    if isinstance(p, AC.ContainerAgent):
        p.kill()
        return
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def leaks(ids):
    """What is left behind of the given node ids (empty list = nothing)."""
    out = []
    nss = run(["ip", "netns", "list"], check=False).stdout
    for i in ids:
        tag = "shunt-e2e-" + i
        for ln in nss.splitlines():
            if ln.split() and ln.split()[0].startswith(i + "-"):
                out.append("netns " + ln.split()[0])
        if os.path.exists("/sys/fs/bpf/" + tag):
            out.append("pin dir /sys/fs/bpf/" + tag)
        if os.path.exists("/tmp/" + tag):
            out.append("temp dir /tmp/" + tag)
        for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            if os.path.exists(os.path.join(root, tag)):
                out.append("cgroup " + os.path.join(root, tag))
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if tag in cmd or ("/run/netns/%s-" % i) in cmd:
                out.append("process %s: %s" % (pid, cmd[:200]))
    if AC.AGENT_IMAGE:
        names = run(AC.podman_base() + ["ps", "-a", "--format", "{{.Names}}"], check=False, timeout=60).stdout
        out += ["container " + n for n in names.split() if any(n.startswith("shunt-e2e-%s-" % i) for i in ids)]
    return out
