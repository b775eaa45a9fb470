#!/bin/sh
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# shuntd-pod: PID 1 of the agent's container. Runs shuntd with the given
# arguments and forwards SIGTERM, SIGINT and SIGHUP to it.
#
# Why a wrapper: on a DaemonSet rolling update with maxSurge the new pod's
# shuntd takes over from the old pod's (same --control and --bpffs on the
# node), and the old shuntd then drains and exits 0 by itself. A pod's
# restartPolicy is Always, so the kubelet would start the old container
# again, and that shuntd would take over back from the new one. So when
# shuntd exits 0 without having been asked to stop, this script stays up,
# doing nothing, until the pod is deleted (SIGTERM). Any other exit is
# passed on, and the kubelet restarts the container as usual (a crashed
# agent's successor recovers every route from the pinned maps).
#
# SHUNTD overrides the binary (the tests use a fake one).
set -u

shuntd=${SHUNTD:-/usr/local/bin/shuntd}
child=
stopping=0

forward() {
	# $1: the signal; TERM and INT mean the pod is going away.
	case $1 in
	TERM | INT) stopping=1 ;;
	esac
	if [ -n "$child" ]; then
		kill -s "$1" "$child" 2>/dev/null
	fi
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP

"$shuntd" "$@" &
child=$!
# A signal trapped between the fork and the line above found no child to
# pass it to: pass it now.
[ "$stopping" -eq 1 ] && kill -s TERM "$child" 2>/dev/null
# A trapped signal interrupts wait with a status above 128 while the
# child still runs: wait again until it is really gone. (A status above
# 128 is also a child killed by a signal; a shell that has already reaped
# the child answers the second wait with its status, else with 127.)
while :; do
	wait "$child"
	rc=$?
	[ "$rc" -le 128 ] && break
	kill -0 "$child" 2>/dev/null && continue
	wait "$child" 2>/dev/null
	again=$?
	[ "$again" -ne 127 ] && rc=$again
	break
done
child=

if [ "$rc" -ne 0 ] || [ "$stopping" -eq 1 ]; then
	exit "$rc"
fi

echo "shuntd-pod: shuntd exited 0 without being stopped: it handed over to a newer agent;" \
	"idling until this pod is deleted" >&2
# sleep in the background so that the trap runs as soon as SIGTERM comes.
# stopping is checked again once child is set: a SIGTERM trapped before
# that killed no sleep, and waiting for it would take an hour.
while [ "$stopping" -eq 0 ]; do
	sleep 3600 &
	child=$!
	[ "$stopping" -eq 0 ] && wait "$child" 2>/dev/null
	kill "$child" 2>/dev/null
	child=
done
exit 0
