# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""shuntd in a container, as the DaemonSet runs it (make test-image).

With SHUNT_E2E_AGENT_IMAGE=<local image> (built from deploy/Dockerfile by
tests/image/run.py), Node.shuntd_start() and Node.shuntd_spawn() run the
agent with `podman run` instead of nsenter, with the DaemonSet's security
context and volumes:

    --cap-drop=all --cap-add=BPF --cap-add=NET_ADMIN, uid 0
    --read-only (no tmpfs added), --security-opt no-new-privileges
    seccomp: the runtime's default, or SHUNT_E2E_AGENT_SECCOMP (a file)
    --network ns:/run/netns/<id>-node          (hostNetwork: the node's)
    <cgroup2 root>  -> /host/sys/fs/cgroup     read-only
    <node pin dir>  -> /host/sys/fs/bpf/shunt  one directory of the bpffs
    <node temp dir> -> /run/shunt              control socket, routes file
    the image's entrypoint (deploy/shuntd-pod.sh) as PID 1, the agent's
    flags with these container paths, --proxy-addr as one comma list.

SHUNT_E2E_PODMAN is the podman command (store, runtime); default
`podman --runtime runc`. SHUNT_E2E_AGENT_TIMES names a file that gets each
start's seconds from `podman run` to shuntd's "ready".
"""

import os
import resource
import shlex
import signal
import subprocess
import time

AGENT_IMAGE = os.environ.get("SHUNT_E2E_AGENT_IMAGE") or None
AGENT_SECCOMP = os.environ.get("SHUNT_E2E_AGENT_SECCOMP", "")
AGENT_TIMES = os.environ.get("SHUNT_E2E_AGENT_TIMES")

# The DaemonSet's paths inside the container (deploy/daemonset.yaml).
CTR_CGROOT = "/host/sys/fs/cgroup"
CTR_PIN = "/host/sys/fs/bpf/shunt"
CTR_RUN = "/run/shunt"

CAP_NET_ADMIN, CAP_BPF = 12, 39
WANT_CAPS = (1 << CAP_NET_ADMIN) | (1 << CAP_BPF)
# podman 4.3 sets its own RLIMIT_NPROC to 32768 and runc cannot raise it.
NPROC_MAX = 32768


def podman_base(cache=None):
    """The podman command: with cache, runc and the test's own store there;
    else SHUNT_E2E_PODMAN or podman with runc."""
    if cache is None:
        return shlex.split(os.environ.get("SHUNT_E2E_PODMAN") or "podman --runtime runc")
    return ["podman", "--root", os.path.join(cache, "storage"), "--runroot", "/run/shunt-image/podman",
            "--runtime", "runc"]


def podman_run_argv(pm, name, image, seccomp="", mounts=(), netns=None, entrypoint=None):
    """`podman run` with the DaemonSet's security context. mounts:
    [(host path, container path, read_only)]."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = NPROC_MAX if nproc == resource.RLIM_INFINITY else min(nproc, NPROC_MAX)
    argv = pm + ["run", "--rm", "--name", name, "--pull=never", "--log-driver=passthrough",
                 "--user", "0:0", "--cap-drop=all", "--cap-add=BPF", "--cap-add=NET_ADMIN",
                 "--read-only", "--read-only-tmpfs=false", "--security-opt", "no-new-privileges",
                 "--ulimit", "nofile=%d:%d" % (nofile, nofile), "--ulimit", "nproc=%d:%d" % (nproc, nproc),
                 # the DaemonSet's memory limit (BPF maps are charged too)
                 "--memory=512m",
                 "--network", ("ns:" + netns) if netns else "none"]
    if seccomp:
        argv += ["--security-opt", "seccomp=" + seccomp]
    for host, ctr, ro in mounts:
        argv += ["-v", "%s:%s:%s" % (host, ctr, "ro" if ro else "rw")]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    return argv + [image]


def status_problems(text):
    """What is wrong with a /proc/PID/status (text) for the DaemonSet's
    context: exactly CAP_BPF + CAP_NET_ADMIN, no_new_privs, seccomp filter."""
    f = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        f[k.strip()] = v.strip()
    out = []
    for k, want in (("CapEff", WANT_CAPS), ("CapPrm", WANT_CAPS), ("CapBnd", WANT_CAPS), ("CapInh", 0),
                    ("CapAmb", 0)):
        if k not in f:
            out.append("%s missing" % k)
        elif int(f[k], 16) != want:
            out.append("%s is %s, want %016x (CAP_BPF + CAP_NET_ADMIN)" % (k, f[k], want) if want else
                       "%s is %s, want 0" % (k, f[k]))
    if f.get("NoNewPrivs") != "1":
        out.append("NoNewPrivs is %r, want 1" % f.get("NoNewPrivs"))
    if f.get("Seccomp") != "2":
        out.append("Seccomp is %r, want 2 (a filter: the runtime's profile)" % f.get("Seccomp"))
    return out


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class ContainerAgent:
    """An agent container, standing in for the subprocess.Popen of an agent
    started with nsenter:

      pid            shuntd's pid on the host (a child of the container's
                     PID 1, the entrypoint)
      send_signal()  TERM, INT, HUP go to PID 1, which forwards them (as
                     the kubelet's runtime signals a pod); KILL, STOP and
                     CONT go to shuntd itself (a crash, a stall)
      wait(), poll() shuntd's exit status: the container's, which the
                     entrypoint passes on (128+N -> -N, as Popen reports a
                     signal); 0 once shuntd exited 0 by itself (a handover)
                     and the entrypoint idles, the container still up
                     (delete() ends it, as the DaemonSet controller does)
    """

    def __init__(self, proc, name, pm, log_offset):
        self.proc = proc  # podman run
        self.name = name
        self.pm = pm
        self.log_offset = log_offset  # where its output begins in the log
        self.t0 = time.monotonic()
        self._init = None
        self._pid = None
        self._rc = None

    # -- pids ------------------------------------------------------------------
    def init_pid(self, timeout=15):
        deadline = time.monotonic() + timeout
        while self._init is None:
            p = subprocess.run(self.pm + ["inspect", "--format", "{{.State.Pid}}", self.name],
                               capture_output=True, text=True, timeout=20)
            pid = int(p.stdout.strip() or 0) if p.returncode == 0 else 0
            if pid > 0:
                self._init = pid
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return self._init

    @property
    def pid(self):
        if self._pid is None:
            deadline = time.monotonic() + 15
            while self._pid is None and time.monotonic() < deadline and self.proc.poll() is None:
                init = self.init_pid()
                kids = _children(init) if init else []
                if kids:
                    self._pid = kids[0]
                else:
                    time.sleep(0.05)
        return self._pid

    # -- Popen-like ------------------------------------------------------------
    @staticmethod
    def _map(rc):
        return -(rc - 128) if rc is not None and 128 < rc < 160 else rc

    def _idle(self):
        """The entrypoint outlives shuntd only when shuntd exited 0 by
        itself: it then idles in `sleep`, its only child."""
        if self._init is None or self.proc.poll() is not None:
            return False
        kids = _children(self._init)
        if not kids or (self._pid is not None and self._pid in kids):
            return False
        try:
            return all(open("/proc/%d/comm" % k).read().strip() == "sleep" for k in kids)
        except OSError:
            return False

    def poll(self):
        if self._rc is not None:
            return self._rc
        rc = self.proc.poll()
        if rc is not None:
            self._rc = self._map(rc)
        elif self._idle():
            self._rc = 0
        return self._rc

    @property
    def returncode(self):
        return self.poll()

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.name, timeout)
            time.sleep(0.02)
        return self._rc

    def send_signal(self, sig):
        if self.proc.poll() is not None:
            return  # (its pids may belong to others by now)
        if sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT):
            target = self.pid
        else:
            target = self.init_pid()
        if target:
            try:
                os.kill(target, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        """The whole container, now, by name (teardown)."""
        subprocess.run(self.pm + ["rm", "-f", "-t", "0", self.name], capture_output=True, timeout=60)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def delete(self, timeout=10):
        """What deleting the pod does: SIGTERM to PID 1, then wait for the
        container to end; returns its exit status."""
        self.send_signal(signal.SIGTERM)
        try:
            return self._map(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def record_start(self):
        if AGENT_TIMES:
            with open(AGENT_TIMES, "a") as f:
                f.write("%.3f\n" % (time.monotonic() - self.t0))

    def confinement_problems(self):
        """The running shuntd's /proc status and mounts against the
        DaemonSet's context; [] when all is as it should be."""
        pid = self.pid
        if not pid:
            return ["shuntd's pid not found in container %s" % self.name]
        try:
            out = status_problems(open("/proc/%d/status" % pid).read())
            mounts = open("/proc/%d/mountinfo" % pid).read().splitlines()
        except OSError as e:
            return ["reading /proc/%d: %s" % (pid, e)]
        for line in mounts:
            parts = line.split()
            sep = parts.index("-")
            mnt, opts, fstype = parts[4], parts[5].split(","), parts[sep + 1]
            if mnt == "/" and "ro" not in opts:
                out.append("the root filesystem is mounted %s" % parts[5])
            if fstype == "bpf" and mnt != CTR_PIN:
                out.append("a bpffs at %s besides the pin directory" % mnt)
            if mnt == CTR_CGROOT and "ro" not in opts:
                out.append("the cgroup tree is mounted %s" % parts[5])
        return out
