#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Stage 2 of a kernel-matrix guest: PID 1 on the host's root (read-only 9p
# under a tmpfs overlay), started by initramfs-init. Reads its settings from
# /mnt/shunt-out/config (written by run.sh), then
#   1. loads and attaches every BPF program: shuntd -v -v against a
#      throwaway cgroup with loopback proxy addresses, then SIGTERM;
#   2. runs the end-to-end suite;
# and leaves load.log, e2e.log and result (KEY=VALUE lines) in
# /mnt/shunt-out for the host. Powers the machine off in every case.
set -u
OUT=/mnt/shunt-out
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

say() { echo "shunt-kernels: $*"; }

result() { echo "$1=$2" >>"$OUT/result"; }

finish() {
	sync
	umount "$OUT" 2>/dev/null
	echo o >/proc/sysrq-trigger
	/bin/busybox poweroff -f
}

# shellcheck source=/dev/null
. "$OUT/config" || {
	say "cannot read $OUT/config"
	finish
}
: >"$OUT/result"
result kernel "$(uname -r)"

# A checkout under /tmp or /run (a CI clone, say) would vanish under the
# fresh filesystems mounted there: hold it aside with a bind mount and put
# it back at the same path afterwards.
held=()
for d in "$REPO" "$BUILD"; do
	case $d/ in
	/tmp/* | /run/*)
		h=/mnt/shunt-held${#held[@]}
		mkdir -p "$h" && mount --bind "$d" "$h" && held+=("$d")
		;;
	esac
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
for i in "${!held[@]}"; do
	mkdir -p "${held[$i]}" && mount --bind "/mnt/shunt-held$i" "${held[$i]}" ||
		say "cannot put ${held[$i]} back in place"
done
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
ip link set lo up
hostname "shunt-$(uname -r | tr -c 'a-z0-9\n' -)"

# No kmod on the host: busybox modprobe reads the modules.dep that run.sh
# generated, for explicit loads here and for the kernel's own requests.
mkdir -p /run/shunt-kernels
ln -s /bin/busybox /run/shunt-kernels/modprobe
echo /run/shunt-kernels/modprobe >/proc/sys/kernel/modprobe
for m in $GUEST_MODULES; do
	/run/shunt-kernels/modprobe "$m" || say "modprobe $m failed"
done
if [ -n "${GUEST_DEBUG:-}" ]; then
	eval "$GUEST_DEBUG"
fi

cd "$REPO" || finish
say "$(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s, $(nproc) CPUs"

# ---- 1. load and attach ---------------------------------------------------
cg=/sys/fs/cgroup/shunt-kload
pins=/sys/fs/bpf/shunt-kload
log=$OUT/load.log
mkdir -p "$cg"
say "loading BPF: $BUILD/shuntd --cgroup $cg --proxy-addr 127.0.0.1 --proxy-addr ::1 -v -v"
t0=$(date +%s)
"$BUILD/shuntd" --cgroup "$cg" --proxy-addr 127.0.0.1 --proxy-addr ::1 \
	--control /run/shunt-kload.sock --bpffs "$pins" -v -v >"$log" 2>&1 &
pid=$!
load=FAILED
why="no 'ready' within 120 s"
for _ in $(seq 1200); do
	if grep -q "ready:" "$log"; then
		load=ok
		break
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		why="shuntd exited with $? before 'ready'"
		break
	fi
	sleep 0.1
done
if [ "$load" = ok ]; then
	attached=$(bpftool cgroup show "$cg" 2>&1)
	n=$(echo "$attached" | grep -c -E 'sock_ops|connect4|connect6|getpeername4|getpeername6')
	echo "$attached"
	if [ "$n" -ne 5 ]; then
		load=FAILED
		why="$n of 5 programs attached to $cg"
	fi
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		load=FAILED
		why="shuntd exited with $rc after SIGTERM"
	elif [ -n "$(bpftool cgroup show "$cg" 2>&1)" ]; then
		load=FAILED
		why="programs still attached after shuntd stopped"
	fi
else
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
fi
rm -rf "$pins"
rmdir "$cg"
result load "$load"
if [ "$load" = ok ]; then
	say "load ok in $(($(date +%s) - t0)) s: 5 programs attached and detached"
else
	# Name the program and the verifier's verdict (its last line before
	# "processed N insns"); print the verifier logs, not libbpf's CO-RE
	# chatter (the whole output goes back to the host as load.log).
	prog=$(sed -n "s/^libbpf: prog '\([^']*\)': BPF program load failed.*/\1/p" "$log" | head -n 1)
	msg=$(sed -n '/-- BEGIN PROG LOAD LOG --/,/-- END PROG LOAD LOG --/p' "$log" |
		grep -v -e '^processed [0-9]* insns' -e 'END PROG LOAD LOG' | tail -n 1)
	[ -n "$prog" ] && why="$prog: ${msg:-rejected}"
	result load_why "$why"
	say "load FAILED: $why"
	if grep -q 'BEGIN PROG LOAD LOG' "$log"; then
		sed -n '/-- BEGIN PROG LOAD LOG --/,/-- END PROG LOAD LOG --/p' "$log"
		grep -E '^shuntd: |failed|error' "$log" | grep -v 'relo #'
	else
		tail -n 40 "$log"
	fi
fi

# ---- 2. end-to-end suite ----------------------------------------------------
say "e2e: /usr/bin/python3 tests/e2e/run.py --build $BUILD ${E2E_ARGS[*]}"
t0=$(date +%s)
/usr/bin/python3 tests/e2e/run.py --build "$BUILD" "${E2E_ARGS[@]}" 2>&1 | tee "$OUT/e2e.log"
rc=${PIPESTATUS[0]}
result e2e_rc "$rc"
result e2e_seconds "$(($(date +%s) - t0))"
result e2e_summary "$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$OUT/e2e.log" | tail -n 1)"
result e2e_failed "$(grep -E '^failed: ' "$OUT/e2e.log" | tail -n 1)"

# Kernel warnings during the run are findings too.
dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace' >"$OUT/dmesg-warnings" || true
dmesg >"$OUT/dmesg"
result 'done' 1
finish
