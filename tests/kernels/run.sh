#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Kernel matrix: boot Debian's packaged kernels under qemu (TCG) and, in
# each, load and attach every BPF program and run the end-to-end suite.
#
#   bash tests/kernels/run.sh [--build build] [--kernels "6.1 6.12"] [--quick]
#        [-k PATTERN]... [--timeout SECONDS] [--jobs N] [--smp N] [--cache DIR]
#
# A kernel is a series ("6.1": the newest linux-image-6.1.*-amd64-unsigned
# apt knows) or an exact release ("6.1.0-47-amd64"). Packages are fetched
# with apt-get download and unpacked, outside the tree, into
# /var/cache/shunt-kernels/<package>_<version>/ (reused by later runs;
# console and shuntd logs of the last run land in .../logs/). The guest
# sees the host's root read-only over virtio-9p under a tmpfs overlay, so
# it runs this very build with the host's tools (initramfs-init is stage 1,
# guest.sh stage 2). --quick runs only the kernel-dependent e2e classes;
# -k passes patterns to tests/e2e/run.py; SHUNT_TESTS_STRICT=1 (.ci/run) makes
# it --strict in the guest. Kernels boot --jobs at a time
# (default: one per CPU) with --smp vCPUs each (default: CPUs / jobs).
# Exit status 1 if any kernel failed to boot, to load the programs, or to
# pass the suite. Debugging: SHUNT_KERNELS_GUEST_CMD runs a command in each
# guest before the tests; SHUNT_KERNELS_BZIMAGE=1 boots the bzImage through
# SeaBIOS instead of the extracted vmlinux through qboot.

# shellcheck disable=SC2317 # cleanup and kill_qemu run from traps
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

BUILD=build
KERNELS="6.1 6.12"
CACHE=${SHUNT_KERNEL_CACHE:-/var/cache/shunt-kernels}
TIMEOUT= # per kernel, boot to power-off, qemu is killed after it: 1800 s, 1500 s --quick
QUICK=0
PATTERNS=()
JOBS= # kernels booted at once: as many as there are CPUs
SMP=  # vCPUs per guest: the CPUs shared out among the jobs
MEM=2G
# Under TCG the whole suite takes about 15 minutes per kernel; --quick runs
# the classes whose outcome depends on the kernel: capture and steering
# through connect4/6, getpeername4/6 and sockops, overrides (netns cookies,
# ancestor cgroup ids), fail-open, pinned links and takeover, map sizing,
# the agent's own connections (mark), and the bpffs mount. The rest is the
# proxy's HTTP handling and the control plane, which no kernel changes.
# --quick (what .ci/run runs; the whole suite takes longer than CI's
# budget under TCG): every class whose behaviour depends on the kernel —
# the programs and maps (capture, overrides, per-pod limits, pinned links
# and takeover, map sizing), the caller checks (SO_PEERPIDFD is 6.5+), the
# order of cgroup programs, the node's addresses, cgroup inotify.
QUICK_PATTERNS=(test_capture.Capture. test_steering.Steering. test_failure.Failure.
	test_overrides.Overrides. test_restarts.Restarts. test_limits.RouteTableFull.
	test_agent_config.AgentInCgroup. test_agent_config.FreshMachineBpffs.
	test_fairness. test_control. test_socketlb. test_nodesafety.
	test_k8s.K8s.test_sandboxoverride test_k8s.K8s.test_new_pod_that_waits
	test_workers.WorkersKernel. test_inpod.InPod. test_tc.)
# Loaded in stage 1 if the kernel builds them as modules (dependencies
# first, as modules.dep says); the rest are loaded on demand in stage 2.
INITRAMFS_MODULES=(virtio_pci 9pnet_virtio 9p overlay)
GUEST_MODULES="veth bridge"
QBOOT=/usr/share/qemu/qboot.rom

usage() {
	sed -n '3,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--kernels) KERNELS=$2; shift 2 ;;
	--cache) CACHE=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--smp) SMP=$2; shift 2 ;;
	--jobs) JOBS=$2; shift 2 ;;
	-k) PATTERNS+=("$2"); shift 2 ;;
	-h | --help) usage 0 ;;
	*) echo "run.sh: unknown argument '$1'" >&2; usage ;;
	esac
done
# TCG runs a vCPU as a host thread; more vCPUs than host CPUs and the guests'
# spinlocks spin on preempted holders (measured, --quick, both kernels, 2
# CPUs: 2 guests x 1 vCPU 71 s, 2 guests x 2 vCPUs 158 s, 1 at a time x 2
# vCPUs 133 s).
NCPU=$(nproc)
NK=$(echo "$KERNELS" | wc -w)
[ -n "$JOBS" ] || JOBS=$((NK < NCPU ? NK : NCPU))
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=1
[ -n "$SMP" ] || SMP=$((NCPU / JOBS > 1 ? NCPU / JOBS : 1))
[ -n "$TIMEOUT" ] || TIMEOUT=$([ $QUICK = 1 ] && echo 1500 || echo 1800)
[[ $TIMEOUT =~ ^[0-9]+$ ]] || { echo "run.sh: --timeout: '$TIMEOUT' is not a number of seconds" >&2; exit 2; }

log() { echo "kernels: $*"; }
die() {
	echo "kernels: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (apt-get, qemu with a 9p share of /)"
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "--build: no such directory (run make first)"
if [ ! -x "$BUILD/shuntd" ] || [ ! -x "$BUILD/shuntctl" ]; then
	die "$BUILD/shuntd or shuntctl missing (run make first)"
fi
# The guest mounts fresh filesystems on these, hiding the host's (a
# checkout under /tmp or /run is held aside and put back by guest.sh).
for p in "$REPO" "$BUILD"; do
	case $p/ in
	/dev/* | /proc/* | /sys/*)
		die "$p: the guest cannot see the host's /dev, /proc or /sys; use a directory elsewhere" ;;
	esac
done

# ---- host packages ---------------------------------------------------------
apt_updated=0
apt_update() {
	if [ $apt_updated = 0 ]; then
		log "apt-get update"
		apt-get update -qq
		apt_updated=1
	fi
}

ensure_pkgs() {
	local missing=() p st
	for p in "$@"; do
		st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		[ "$st" = "install ok installed" ] || missing+=("$p")
	done
	[ ${#missing[@]} = 0 ] && return
	log "installing ${missing[*]} (apt-get install)"
	st=$(apt-cache policy "${missing[@]}" 2>/dev/null || true)
	if [[ $st != *"Candidate: "[0-9]* ]]; then
		apt_update
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt_update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# qemu-system-x86 brings qemu-system-data (qboot.rom); busybox-static is
# the initramfs and the guest's modprobe/depmod; zstd unpacks 6.12's vmlinuz.
ensure_pkgs qemu-system-x86 qemu-system-data busybox-static zstd xz-utils
[ -r "$QBOOT" ] || die "$QBOOT missing (qemu-system-data)"

# ---- kernel packages ---------------------------------------------------------
# resolve SPEC: sets PKG and VER (the candidate version).
resolve() {
	local spec=$1 names re
	if [[ $spec =~ ^[0-9]+\.[0-9]+$ ]]; then
		re="^linux-image-${spec//./\\.}[.-][0-9][0-9.]*(-[0-9]+)?(\\+deb[0-9]+)?-amd64-unsigned\$"
	else
		spec=${spec%-amd64}
		re="^linux-image-${spec//./\\.}-amd64-unsigned\$"
		re=${re//+/\\+}
	fi
	names=$(apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$re" || true)
	if [ -z "$names" ] && [ $apt_updated = 0 ]; then
		apt_update
		names=$(apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$re" || true)
	fi
	[ -n "$names" ] || return 1
	PKG=$(echo "$names" | sort -V | tail -n 1)
	VER=$(apt-cache policy "$PKG" | sed -n 's/^ *Candidate: //p')
	[ -n "$VER" ] && [ "$VER" != "(none)" ]
}

# fetch PACKAGE VERSION: unpack into $CACHE/<pkg>_<ver> once; sets KDIR.
fetch() {
	local pkg=$1 ver=$2 dir tmp rel
	dir=$CACHE/${pkg}_${ver}
	KDIR=$dir
	if [ -e "$dir/.complete" ]; then
		log "$pkg $ver: cached in $dir"
		return
	fi
	mkdir -p "$CACHE"
	tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
	TMPDIRS+=("$tmp")
	chown _apt "$tmp" 2>/dev/null || true # else apt warns it downloads unsandboxed
	log "$pkg $ver: apt-get download, dpkg-deb -x into $dir"
	(cd "$tmp" && apt-get download -q "$pkg=$ver" >/dev/null) || return 1
	mkdir "$tmp/root"
	dpkg-deb -x "$tmp"/*.deb "$tmp/root" || return 1
	rm -f "$tmp"/*.deb
	rel=$(ls "$tmp/root/lib/modules")
	# The ELF boots directly (PVH, qboot): measured 4.5 s to stage 2 and
	# 11 s for a whole no-test run; the bzImage through SeaBIOS, the
	# fallback, took 11 s and 30-39 s.
	/usr/bin/python3 "$HERE/extract-vmlinux.py" "$tmp/root/boot/vmlinuz-$rel" "$tmp/root/vmlinux" ||
		log "no ELF vmlinux: will boot the bzImage through SeaBIOS"
	# Busybox modprobe hands compressed modules to init_module() first (the
	# kernel logs "Invalid ELF header magic" before it falls back): store
	# them plain. Debian's postinst runs depmod; busybox's writes the
	# modules.dep that busybox modprobe reads (kmod need not be installed).
	find "$tmp/root/lib/modules" -name '*.ko.xz' -print0 | xargs -0 -r -P "$(nproc)" -n 64 unxz || return 1
	find "$tmp/root/lib/modules" -name '*.ko.zst' -print0 | xargs -0 -r -P "$(nproc)" -n 64 zstd -dq --rm || return 1
	busybox depmod -b "$tmp/root" "$rel" || return 1
	echo "$rel" >"$tmp/root/release"
	touch "$tmp/root/.complete"
	rm -rf "$dir"
	mv "$tmp/root" "$dir"
}

# closure MODULES_DIR NAME...: module files to insmod, dependencies first.
closure() {
	local mdir=$1 m line deps f
	shift
	declare -A seen=()
	for m in "$@"; do
		line=$(grep -E "(^|/)${m}\\.ko(\\.xz|\\.zst|\\.gz)?:" "$mdir/modules.dep" || true)
		if [ -z "$line" ]; then
			grep -qE "(^|/)${m}\\.ko\$" "$mdir/modules.builtin" ||
				{ echo "kernels: module $m neither built in nor in modules.dep" >&2; return 1; }
			continue
		fi
		deps=${line#*:}
		# modules.dep lists what a module needs, the deepest last.
		for f in $(echo "$deps" | tr ' ' '\n' | tac) "${line%%:*}"; do
			[ -n "${seen[$f]:-}" ] && continue
			seen[$f]=1
			echo "$f"
		done
	done
}

# initramfs KERNEL_DIR OUT: busybox, stage 1 and the modules it needs.
initramfs() {
	local kdir=$1 out=$2 rel mdir work f n=0
	rel=$(cat "$kdir/release")
	mdir=$kdir/lib/modules/$rel
	work=$(dirname "$out")/initramfs
	mkdir -p "$work"/{bin,dev,proc,sys,mods}
	cp /bin/busybox "$work/bin/busybox"
	cp "$HERE/initramfs-init" "$work/init"
	chmod 755 "$work/init"
	: >"$work/mods/order"
	for f in $(closure "$mdir" "${INITRAMFS_MODULES[@]}"); do
		n=$((n + 1))
		case $f in
		*.xz) xz -dc "$mdir/$f" >"$work/mods/$n.ko" ;;
		*.zst) zstd -dcq "$mdir/$f" >"$work/mods/$n.ko" ;;
		*.gz) gzip -dc "$mdir/$f" >"$work/mods/$n.ko" ;;
		*) cp "$mdir/$f" "$work/mods/$n.ko" ;;
		esac
		echo "$n.ko" >>"$work/mods/order"
	done
	(cd "$work" && find . | busybox cpio -o -H newc 2>/dev/null) >"$out"
}

# ---- booting -------------------------------------------------------------------
TMPDIRS=()
MAIN_PID=$$

# A killed process stays a zombie until its parent reaps it: kill -0 says
# nothing.
main_alive() {
	local st
	st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$MAIN_PID/status" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

# kill_qemu TMP: stop the qemu whose -pidfile is in TMP, if it still runs.
kill_qemu() {
	local pid
	pid=$(cat "$1/qemu.pid" 2>/dev/null) || return 0
	grep -qa qemu-system "/proc/$pid/cmdline" 2>/dev/null || return 0
	log "stopping qemu (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		grep -qa qemu-system "/proc/$pid/cmdline" 2>/dev/null || return 0
		sleep 0.5
	done
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local d
	for d in "${TMPDIRS[@]}"; do
		kill_qemu "$d"
	done
	wait 2>/dev/null || true # the boot_kernel jobs end with their qemu
	for d in "${TMPDIRS[@]}"; do
		rm -rf "$d"
	done
	TMPDIRS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# boot_kernel SPEC KERNEL_DIR TMP: boot, load, e2e; writes the summary line
# to TMP/line and returns non-zero if anything failed.
boot_kernel() {
	local spec=$1 kdir=$2 tmp=$3 rel out qrc t0 secs args=() p
	local load e2e_rc summary failed why warn
	rel=$(cat "$kdir/release")
	out=$tmp/out
	mkdir -p "$out"
	echo "kernel $spec: FAILED to build the initramfs ($rel)" >"$tmp/line"
	initramfs "$kdir" "$tmp/initramfs.cpio" || return 1
	if [ $QUICK = 1 ]; then
		for p in "${QUICK_PATTERNS[@]}"; do args+=(-k "$p"); done
	fi
	for p in "${PATTERNS[@]}"; do args+=(-k "$p"); done
	# The guest runs the host's tools: the only skip there is a kernel
	# feature (BPF_F_PREORDER before 6.15), which stays a skip.
	[ "${SHUNT_TESTS_STRICT:-}" != 1 ] || args+=(--strict)
	{
		printf 'REPO=%q\nBUILD=%q\nGUEST_MODULES=%q\nGUEST_DEBUG=%q\n' "$REPO" "$BUILD" "$GUEST_MODULES" \
			"${SHUNT_KERNELS_GUEST_CMD:-}"
		printf 'E2E_ARGS=('
		[ ${#args[@]} = 0 ] || printf '%q ' "${args[@]}"
		printf ')\n'
	} >"$out/config"

	local boot=(-bios "$QBOOT" -kernel "$kdir/vmlinux") how="vmlinux via qboot"
	if [ ! -e "$kdir/vmlinux" ] || [ -n "${SHUNT_KERNELS_BZIMAGE:-}" ]; then
		boot=(-kernel "$kdir/boot/vmlinuz-$rel") how="bzImage via SeaBIOS"
	fi
	log "kernel $spec: booting $rel ($how) under qemu (TCG, $SMP vCPUs), timeout ${TIMEOUT}s"
	t0=$(date +%s)
	: >"$tmp/console.log"
	# PVH boot of the ELF vmlinux through qboot: a few seconds to userspace
	# under TCG. mitigations=off: page table isolation costs a TLB flush per
	# syscall, which TCG pays dearly for (the BPF verifier skips its Spectre
	# masking for root either way).
	timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
		-accel tcg -cpu max -smp "$SMP" -m "$MEM" \
		-nodefaults -no-user-config -display none -no-reboot -pidfile "$tmp/qemu.pid" \
		"${boot[@]}" -initrd "$tmp/initramfs.cpio" \
		-append "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off rdinit=/init shunt_stage2=$HERE/guest.sh" \
		-serial stdio \
		-fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
		-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
		-fsdev "local,id=modules,path=$kdir/lib/modules/$rel,security_model=none,readonly=on" \
		-device virtio-9p-pci,fsdev=modules,mount_tag=modules \
		-fsdev "local,id=out,path=$out,security_model=none" \
		-device virtio-9p-pci,fsdev=out,mount_tag=out \
		</dev/null >>"$tmp/console.log" 2>&1 &
	local qpid=$!
	# Belt and braces for the EXIT trap: should this script die without
	# running it (SIGKILL), its qemu goes too, not only at the timeout.
	(
		while main_alive && kill -0 "$qpid" 2>/dev/null; do
			sleep 2
		done
		main_alive || { kill_qemu "$tmp" && rm -rf "$tmp"; }
	) &
	# Stream the console, one prefixed line at a time, until qemu is gone.
	tail -n +1 -f --pid="$qpid" "$tmp/console.log" | sed -u "s/\r\$//; s/^/[$spec] /" || true
	qrc=0
	wait "$qpid" || qrc=$?
	secs=$(($(date +%s) - t0))
	mkdir -p "$CACHE/logs"
	cp "$tmp/console.log" "$CACHE/logs/$rel.console.log"
	cp "$out/load.log" "$CACHE/logs/$rel.load.log" 2>/dev/null || true

	load=$(sed -n 's/^load=//p' "$out/result" 2>/dev/null)
	why=$(sed -n 's/^load_why=//p' "$out/result" 2>/dev/null)
	e2e_rc=$(sed -n 's/^e2e_rc=//p' "$out/result" 2>/dev/null)
	summary=$(sed -n 's/^e2e_summary=//p' "$out/result" 2>/dev/null)
	failed=$(sed -n 's/^e2e_failed=//p' "$out/result" 2>/dev/null)
	if ! grep -q '^done=1$' "$out/result" 2>/dev/null; then
		if [ $qrc = 124 ] || [ $qrc = 137 ]; then
			p="TIMEOUT after ${TIMEOUT}s"
		else
			p="guest died (qemu exit $qrc)"
		fi
		echo "kernel $spec: $p, load ${load:-not reached}, e2e ${summary:-not finished} ($rel; console: $CACHE/logs/$rel.console.log)" >"$tmp/line"
		return 1
	fi
	p="kernel $spec: load $load${why:+ ($why; verifier log: $CACHE/logs/$rel.load.log)}, e2e ${summary:-no summary line, exit $e2e_rc} ($rel, ${secs}s)${failed:+
    $failed}"
	if [ -s "$out/dmesg-warnings" ]; then
		warn=$(head -n 5 "$out/dmesg-warnings")
		p="$p; kernel warnings in dmesg:
    ${warn//$'\n'/$'\n'    }"
	fi
	echo "$p" >"$tmp/line"
	[ "$load" = ok ] && [ "$e2e_rc" = 0 ] && [ ! -s "$out/dmesg-warnings" ]
}

log "build $BUILD, kernels: $KERNELS, cache $CACHE, $JOBS at a time$([ $QUICK = 1 ] && echo ", quick")"
T0=$(date +%s)
FAILED=0
LINES=()
TMPS=()
# Resolve and fetch one after the other (apt), then boot $JOBS at a time.
for k in $KERNELS; do
	if ! resolve "$k"; then
		LINES+=("kernel $k: FAILED, no linux-image-$k*-amd64-unsigned package known to apt")
		FAILED=1
		continue
	fi
	if ! fetch "$PKG" "$VER"; then
		LINES+=("kernel $k: FAILED to fetch $PKG $VER")
		FAILED=1
		continue
	fi
	tmp=$(mktemp -d /tmp/shunt-kernels.XXXXXX)
	TMPDIRS+=("$tmp")
	TMPS+=("$tmp")
	echo "kernel $k: FAILED (no result)" >"$tmp/line"
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
		wait -n || true
	done
	(boot_kernel "$k" "$KDIR" "$tmp" && echo 0 >"$tmp/rc" || echo 1 >"$tmp/rc") &
	sleep 1 # let its first lines out before the next starts
done
wait || true
for tmp in "${TMPS[@]}"; do
	[ "$(cat "$tmp/rc" 2>/dev/null)" = 0 ] || FAILED=1
	LINES+=("$(cat "$tmp/line")")
done

echo
for l in "${LINES[@]}"; do
	echo "$l"
done
echo "kernels: $(($(date +%s) - T0))s total, $([ $FAILED = 0 ] && echo "all passed" || echo "FAILED")"
exit $FAILED
