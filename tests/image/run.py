#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""make test-image: the agent's image, built from deploy/Dockerfile and run
with the DaemonSet's security context under a real container runtime.

    tests/image/run.py --build build [--quick] [-k PATTERN]... [-v] [--keep-image]

1. base     Debian 12 minbase by debootstrap from the Debian archive apt
            uses here (no registry is reachable), imported as
            localhost/shunt-base:bookworm-YYYYMMDD into this test's own
            podman store under /var/cache/shunt-image; made once a day.
2. image    deploy/Dockerfile built by podman (buildah) with both stages'
            base set to it (BASE_IMAGE, RUNTIME_IMAGE), the repository root
            as context and deploy/Dockerfile.dockerignore, as `docker build`
            does; the build stage installs its packages with apt-get from
            that archive (host network during the build).
3. confine  a container with the DaemonSet's security context (below) must
            show exactly CAP_BPF + CAP_NET_ADMIN (effective, permitted,
            bounding; nothing inheritable or ambient), no_new_privs, seccomp
            filter mode and a read-only root, and must be able to pin a map
            in its pin directory: a bind mount of one subdirectory of the
            host's bpffs. If the runtime's default seccomp profile refuses
            bpf(2) (podman's does, to any container without CAP_SYS_ADMIN),
            the run says so and uses that profile plus bpf(2) for a
            container holding CAP_BPF, which is what containerd >= 1.7 and
            Docker >= 23 allow by default.
4. e2e      the core end-to-end cases with shuntd in such a container
            (tests/e2e/node.py, SHUNT_E2E_AGENT_IMAGE), plus
            tests/image/test_container.py; --quick runs fewer.

The security context, from deploy/daemonset.yaml: --cap-drop=all
--cap-add=BPF --cap-add=NET_ADMIN --read-only --security-opt
no-new-privileges, uid 0, the runtime's seccomp profile, the node's
network namespace, the node's cgroup2 root read-only at /host/sys/fs/cgroup,
the pin directory at /host/sys/fs/bpf/shunt, /run/shunt shared with the
host. Runtime: runc (podman's default crun refuses this VM's hybrid cgroup
layout); --ulimit nofile and nproc given explicitly (the VM refuses raising
them).

Every step prints its time. Containers, the per-run image tag, pins and temp
files are removed also on failure; the base and the package layers stay
cached in /var/cache/shunt-image. The last line is the e2e runner's
"N passed, N failed, N skipped"; the exit status is 1 on any failure.
"""

import argparse
import datetime
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
E2E = os.path.join(ROOT, "tests", "e2e")
sys.path.insert(0, E2E)
sys.dont_write_bytecode = True

import agent_container as AC  # noqa: E402  (tests/e2e)
import node as N  # noqa: E402

CACHE = os.environ.get("SHUNT_IMAGE_CACHE", "/var/cache/shunt-image")
SUITE = "bookworm"
IMAGE_REPO = "localhost/shuntd-test"
# The cases run against the containerized agent: capture, steering (v4, v6),
# route lifecycle, L4 overrides by cgroup, failure (SIGTERM, SIGINT, kill -9
# and recovery from the pins), restarts under load (takeover between two
# containers, SIGTERM drain, kill -9), and tests/image/test_container.py.
CORE = [
    "test_container.",
    "test_capture.",
    "test_steering.",
    "test_lifecycle.",
    "test_failure.",
    "test_restarts.",
    "test_overrides.Overrides.test_cgroup_override_applies_below_it",
    "test_overrides.Overrides.test_override_and_routes_on_one_service",
]
QUICK = [
    "test_container.",
    "test_steering.Steering.test_key_with_route_goes_to_sandbox",
    "test_steering.Steering.test_ipv6_steering",
    "test_failure.",
    "test_restarts.Restarts.test_a_takeover_loses_nothing",
]


SUMMARY = re.compile(r"^\d+ passed, \d+ failed(, \d+ skipped)?$")


class Failed(Exception):
    pass


def log(msg):
    print("image: " + msg, flush=True)


def run(argv, check=True, timeout=600, quiet=False, **kw):
    if not quiet:
        log("$ " + shlex.join(argv))
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise Failed("%s -> exit %d\n%s%s" % (shlex.join(argv), p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    return p


class Timer:
    def __init__(self):
        self.rows = []

    def step(self, name):
        timer = self

        class Step:
            def __enter__(self):
                self.t0 = time.monotonic()
                return self

            def __exit__(self, *exc):
                dt = time.monotonic() - self.t0
                timer.rows.append((name, dt, exc[0] is None))
                log("%s: %.1fs%s" % (name, dt, "" if exc[0] is None else " (failed)"))
        return Step()

    def report(self):
        log("timings:")
        for name, dt, ok in self.rows:
            print("  %-34s %7.1fs%s" % (name, dt, "" if ok else "  (failed)"))


# ---- the Debian archive apt uses ----------------------------------------------
def apt_sources():
    """[(uri, suite, components)] of the Debian entries (bookworm*) in this
    machine's apt configuration, one-line and deb822 formats."""
    out = []
    files = []
    if os.path.exists("/etc/apt/sources.list"):
        files.append("/etc/apt/sources.list")
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith((".list", ".sources"))]
    for path in files:
        text = open(path).read()
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.split()
                if "deb" not in fields.get("types", []) or fields.get("enabled", ["yes"]) == ["no"]:
                    continue
                for uri in fields.get("uris", []):
                    for suite in fields.get("suites", []):
                        out.append((uri, suite, fields.get("components", ["main"])))
        else:
            for line in text.splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    out.append((line[1], line[2], line[3:] or ["main"]))
    return [(u, s, c) for u, s, c in out if s.split("-")[0] == SUITE and re.search(r"/debian(-security)?/?$", u)]


# ---- 1. the base ----------------------------------------------------------------
def make_base(pm, tmp):
    key = "%s-%s" % (SUITE, datetime.datetime.utcnow().strftime("%Y%m%d"))
    tag = "localhost/shunt-base:" + key
    if run(pm + ["image", "exists", tag], check=False, quiet=True).returncode == 0:
        log("base %s: cached" % tag)
        return tag, False
    sources = apt_sources()
    mirror = next((u for u, s, _ in sources if s == SUITE), None)
    if mirror is None:
        raise Failed("no Debian %s archive in /etc/apt/sources.list*: debootstrap needs one" % SUITE)
    root = os.path.join(tmp, "rootfs")
    run(["debootstrap", "--variant=minbase", SUITE, root, mirror], timeout=1800)
    # apt inside the image reads the same archive (updates and security
    # too, when this machine has them), as the official image's does.
    with open(os.path.join(root, "etc/apt/sources.list"), "w") as f:
        for uri, suite, comps in sources:
            f.write("deb %s %s %s\n" % (uri, suite, " ".join(comps)))
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for name in os.listdir(os.path.join(root, sub)):
            p = os.path.join(root, sub, name)
            if os.path.isfile(p) and name != "lock":
                os.unlink(p)
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", root, "-c", "."], stdout=subprocess.PIPE)
    p = subprocess.run(pm + ["import", "--change", 'CMD ["/bin/bash"]', "-", tag], stdin=tar.stdout,
                       capture_output=True, text=True, timeout=600)
    tar.stdout.close()
    if tar.wait() != 0 or p.returncode != 0:
        raise Failed("podman import of the debootstrap tree failed: %s" % p.stderr)
    shutil.rmtree(root)
    # Older days' bases go (their layers with them, at the prune).
    for line in run(pm + ["images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/shunt-base"],
                    quiet=True).stdout.split():
        if line != tag:
            run(pm + ["rmi", "-f", line], check=False)
    return tag, True


# ---- 3. confinement -----------------------------------------------------------------
def seccomp_with_bpf(default_json, out_path):
    """The runtime's default profile plus bpf(2) for a container that holds
    CAP_BPF; nothing else changes."""
    prof = json.load(open(default_json))
    for rule in prof["syscalls"]:
        if "bpf" in rule.get("names", []) and rule.get("action") != "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule["names"] if n != "bpf"]
    prof["syscalls"] = [r for r in prof["syscalls"] if r.get("names")]
    prof["syscalls"].append({"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_BPF"]}})
    with open(out_path, "w") as f:
        json.dump(prof, f, indent=1)
    return out_path


def runtime_default_seccomp():
    for p in ("/etc/containers/seccomp.json", "/usr/share/containers/seccomp.json"):
        if os.path.exists(p):
            return p
    raise Failed("podman's default seccomp profile (/usr/share/containers/seccomp.json) not found")


def confinement(pm, image, tmp, runid):
    """Checks the security context inside a container; returns the seccomp
    profile to run the agent with ('' = the runtime's default)."""
    pin = "/sys/fs/bpf/shunt-image-" + runid
    os.mkdir(pin)
    try:
        def ctr(entry, args, seccomp=""):
            argv = AC.podman_run_argv(pm, "shunt-image-%s-probe" % runid, image, seccomp=seccomp,
                                      mounts=[(pin, AC.CTR_PIN, False)], entrypoint=entry) + args
            return run(argv, check=False)

        t0 = time.monotonic()
        p = ctr("/bin/sh", ["-c", "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; "
                            "if touch /probe 2>/dev/null; then echo rootfs-writable; fi; "
                            "shuntd --help >/dev/null && echo shuntd-runs"])
        log("a container's start and exit: %.2fs" % (time.monotonic() - t0))
        if p.returncode != 0:
            raise Failed("the probe container failed (exit %d): %s" % (p.returncode, p.stderr))
        problems = AC.status_problems(p.stdout)
        if "rootfs-writable" in p.stdout:
            problems.append("the root filesystem is writable")
        if "shuntd-runs" not in p.stdout:
            problems.append("shuntd --help did not run in the image")
        if problems:
            raise Failed("security context inside the container:\n  %s\n%s" % ("\n  ".join(problems), p.stdout))
        log("inside: exactly CAP_BPF + CAP_NET_ADMIN, NoNewPrivs 1, Seccomp 2, read-only root")

        mk = ["map", "create", AC.CTR_PIN + "/probe", "type", "array", "key", "4", "value", "4",
              "entries", "1", "name", "shunt_probe"]
        p = ctr("/usr/sbin/bpftool", mk)
        if p.returncode == 0 and os.path.exists(os.path.join(pin, "probe")):
            log("the runtime's default seccomp profile allows bpf(2) with CAP_BPF: the agent runs under it")
            return ""
        log("the runtime's default seccomp profile (%s) refuses bpf(2) without CAP_SYS_ADMIN: %s"
            % (runtime_default_seccomp(), (p.stderr or p.stdout).strip().splitlines()[-1:]))
        prof = seccomp_with_bpf(runtime_default_seccomp(), os.path.join(tmp, "seccomp-default-plus-bpf.json"))
        p = ctr("/usr/sbin/bpftool", mk, seccomp=prof)
        if p.returncode != 0 or not os.path.exists(os.path.join(pin, "probe")):
            raise Failed("pinning a map in the pin directory mount failed even with bpf(2) allowed: %s%s"
                         % (p.stdout, p.stderr))
        log("with bpf(2) allowed for CAP_BPF (%s): a map pinned through the pin directory mount" % prof)
        return prof
    finally:
        shutil.rmtree(pin, ignore_errors=True)


# ---- main ---------------------------------------------------------------------------------
def _interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="the host build (shuntctl for the tests)")
    ap.add_argument("--quick", action="store_true", help="a smaller subset of the e2e cases")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="e2e cases to run instead of the core set (see tests/e2e/run.py -k)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--keep-image", action="store_true", help="keep the image built (tag printed)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("image: needs root (podman, netns, BPF pins)", file=sys.stderr)
        return 1
    missing = [t for t in ("podman", "runc", "debootstrap", "tar") if not shutil.which(t)]
    if missing:
        print("image: %s not installed (scripts/deps.sh installs them)" % ", ".join(missing), file=sys.stderr)
        return 1
    reason = N.prereq_skip_reason()  # also mounts a bpffs at /sys/fs/bpf if there is none
    if reason:
        print("image: cannot run the e2e cases: %s" % reason, file=sys.stderr)
        return 1

    timer = Timer()
    runid = secrets.token_hex(3)
    tmp = "/tmp/shunt-image-" + runid
    os.makedirs(tmp)
    os.makedirs(CACHE, exist_ok=True)
    pm = AC.podman_base(CACHE)
    image = "%s:%s" % (IMAGE_REPO, runid)
    lockf = open(os.path.join(CACHE, "lock"), "w")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    rc = 1
    summary = None
    e2e = None
    t_all = time.monotonic()
    try:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # one run at a time: one store, one base per day
        log("podman store %s, runtime runc, run %s" % (CACHE, runid))
        with timer.step("1. base (debootstrap + import)"):
            base, made = make_base(pm, tmp)
        if not made:
            timer.rows[-1] = ("1. base (cached)",) + timer.rows[-1][1:]
        with timer.step("2. image build"):
            # The build stage's packages are a stage of their own
            # (build-deps): tagged per base, so the next run reuses them.
            common = ["--network", "host", "--pull=never", "--layers",
                      "--ignorefile", os.path.join(ROOT, "deploy", "Dockerfile.dockerignore"),
                      "-f", os.path.join(ROOT, "deploy", "Dockerfile"),
                      "--build-arg", "BASE_IMAGE=" + base, "--build-arg", "RUNTIME_IMAGE=" + base]
            deps = "localhost/shunt-build-deps:" + base.split(":")[1]
            run(pm + ["build"] + common + ["--target", "build-deps", "-t", deps, ROOT], timeout=3600)
            run(pm + ["build"] + common + ["-t", image, ROOT], timeout=3600)
            size = run(pm + ["image", "inspect", "--format", "{{.Size}}", image], quiet=True).stdout.strip()
            log("image %s: %.0f MB" % (image, int(size) / 1e6))
        with timer.step("3. confinement checks"):
            seccomp = confinement(pm, image, tmp, runid)
        with timer.step("4. e2e against the container"):
            times = os.path.join(tmp, "agent-starts")
            env = dict(os.environ, SHUNT_E2E_AGENT_IMAGE=image, SHUNT_E2E_PODMAN=shlex.join(pm),
                       SHUNT_E2E_AGENT_SECCOMP=seccomp, SHUNT_E2E_AGENT_TIMES=times)
            pats = args.patterns or (QUICK if args.quick else CORE)
            argv = [sys.executable, "-B", os.path.join(E2E, "run.py"), "--build", args.build,
                    "--also", HERE] + [a for p in pats for a in ("-k", p)] + (["-v"] if args.verbose else [])
            log("$ SHUNT_E2E_AGENT_IMAGE=%s %s" % (image, shlex.join(argv)))
            e2e = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in e2e.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                if SUMMARY.match(line.strip()):
                    summary = line.strip()
            e2e.wait()
            starts = [float(x) for x in open(times).read().split()] if os.path.exists(times) else []
            if starts:
                log("agent container starts (podman run -> shuntd ready): %d, median %.2fs, max %.2fs"
                    % (len(starts), statistics.median(starts), max(starts)))
            if e2e.returncode != 0:
                raise Failed("the e2e cases against the container failed")
        rc = 0
    except Failed as e:
        print("image: FAIL: %s" % e, flush=True)
    except KeyboardInterrupt:
        print("image: interrupted", flush=True)
    finally:
        if e2e is not None and e2e.poll() is None:
            e2e.terminate()  # its teardown removes its nodes and containers
            try:
                e2e.wait(120)
            except subprocess.TimeoutExpired:
                e2e.kill()
        with timer.step("cleanup"):
            for name in run(pm + ["ps", "-a", "--format", "{{.Names}}"], check=False, quiet=True).stdout.split():
                if name.startswith("shunt-image-%s-" % runid):
                    run(pm + ["rm", "-f", "-t", "0", name], check=False)
            if args.keep_image:
                log("kept %s (remove: %s rmi %s)" % (image, shlex.join(pm), image))
            else:
                run(pm + ["rmi", "-f", image], check=False, quiet=True)
            # Dangling layers of earlier runs; the base and build-deps stay.
            run(pm + ["image", "prune", "-f"], check=False, quiet=True)
            shutil.rmtree(tmp, ignore_errors=True)
        timer.report()
        log("total %.1fs" % (time.monotonic() - t_all))
        lockf.close()
    # The e2e runner's count, last; a failure before it counts as one.
    if summary is None or (rc != 0 and " 0 failed" in summary):
        summary = "0 passed, 1 failed, 0 skipped"
    print("image: " + summary, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
