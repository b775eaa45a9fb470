#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Build every libFuzzer harness of tests/fuzz/ into build/fuzz/ and run each
# in turn, starting from its seed corpus in tests/fuzz/corpus/<harness>/.
#
#   tests/fuzz/run.sh                 60 s per harness
#   tests/fuzz/run.sh 300             5 min per harness
#   tests/fuzz/run.sh --smoke         ~10 s per harness (CI)
#   tests/fuzz/run.sh 120 fuzz_http   only the harnesses named
#   tests/fuzz/run.sh --build         build only
#
# First each harness replays tests/fuzz/crashes/<harness>-*, the inputs
# that crashed it before: while one still fails, that harness is not fuzzed
# (the bug comes first). Inputs the fuzzer finds
# go to build/fuzz/corpus/<harness>/ (the seeds in the tree are never
# written). A crash, leak, timeout or out-of-memory input is copied to
# tests/fuzz/crashes/<harness>-<kind>-<sha1>, and the script exits 1 once
# every harness has run. Reproduce one with
#   build/fuzz/<harness> tests/fuzz/crashes/<file>
#
# Environment: CLANG (default clang), OUTPUT (default build), LLHTTP_SRC and
# LLHTTP_INC (Debian's node-llhttp paths by default), FUZZ_FLAGS (extra
# libFuzzer flags).
set -euo pipefail

SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/../.."

CLANG=${CLANG:-clang}
OUT=${OUTPUT:-build}/fuzz
LLHTTP_SRC=${LLHTTP_SRC:-/usr/share/llhttp}
LLHTTP_INC=${LLHTTP_INC:-/usr/share/include/llhttp}
SECONDS_EACH=60
BUILD_ONLY=0
WANT=()

usage() {
	awk 'NR > 2 && !/^#/ { exit } NR > 3 { sub(/^# ?/, ""); print }' "$SELF"
	exit 2
}

for arg in "$@"; do
	case "$arg" in
	--smoke) SECONDS_EACH=10 ;;
	--build) BUILD_ONLY=1 ;;
	-h | --help) usage ;;
	[0-9]*) SECONDS_EACH=$arg ;;
	fuzz_*) WANT+=("$arg") ;;
	*) usage ;;
	esac
done

# The agent sources each harness compiles in, directly: no Makefile objects,
# which are built without coverage instrumentation.
declare -A SRCS=(
	[fuzz_routekey]="agent/proxy/routekey.c agent/state/routes.c agent/core/hash.c"
	[fuzz_http]="agent/proxy/http.c"
	[fuzz_chunked]="agent/proxy/http.c"
	[fuzz_config]="agent/state/config.c agent/state/routes.c agent/core/hash.c agent/core/buf.c agent/core/util.c agent/proxy/routekey.c agent/kernel/source.c"
	[fuzz_util]="agent/core/util.c"
	[fuzz_llhttp]="agent/proxy/http.c agent/proxy/routekey.c agent/state/routes.c agent/core/hash.c"
	[fuzz_ctl]="agent/ops/ctl_proto.c agent/kernel/source.c agent/state/routes.c agent/core/hash.c agent/core/util.c"
	[fuzz_metrics]="agent/ops/metrics_req.c"
	[fuzz_json]="agent/core/json.c agent/core/buf.c"
	[fuzz_k8s]="agent/k8s/obj.c agent/k8s/cache.c agent/core/hmap.c agent/state/routes.c agent/core/hash.c agent/core/util.c agent/proxy/routekey.c"
	[fuzz_h2]="agent/proxy/h2.c agent/proxy/h2up.c agent/proxy/conn.c agent/proxy/h1.c agent/proxy/upstream.c agent/proxy/tunnel.c agent/proxy/limits.c agent/proxy/listener.c agent/proxy/proxy.c agent/proxy/pool.c agent/proxy/inpod.c agent/proxy/tcpod.c agent/proxy/inferpod.c agent/proxy/infer.c agent/proxy/route.c agent/proxy/routekey.c agent/proxy/reqstats.c agent/proxy/http.c agent/core/loop.c agent/core/timer.c agent/core/buf.c agent/core/hash.c agent/core/hmap.c agent/core/log.c agent/core/util.c agent/core/json.c agent/state/routes.c agent/state/dstguard.c tests/fuzz/stub_bpf.c"
)
# Libraries a harness links (the Kubernetes decoders read JSON with json-c).
declare -A LIBS=(
	[fuzz_k8s]="$(pkg-config --cflags --libs json-c)"
	[fuzz_json]="$(pkg-config --cflags --libs json-c)"
	[fuzz_h2]="$(pkg-config --cflags --libs libnghttp2 libbpf)"
)
# libFuzzer's -max_len per harness (default 4096): fuzz_http reaches past
# http_sniff()'s 8 KiB first-line limit; fuzz_k8s holds a few objects.
declare -A MAXLEN=(
	[fuzz_http]=12288
	[fuzz_k8s]=16384
)
# Dictionaries of the tokens each format is made of.
declare -A DICT=(
	[fuzz_routekey]=routekey.dict
	[fuzz_http]=http.dict
	[fuzz_chunked]=chunked.dict
	[fuzz_config]=config.dict
	[fuzz_util]=config.dict
	[fuzz_llhttp]=http.dict
	[fuzz_ctl]=ctl.dict
	[fuzz_metrics]=http.dict
	[fuzz_k8s]=k8s.dict
	[fuzz_json]=json.dict
	[fuzz_h2]=h2.dict
)
ALL=(fuzz_routekey fuzz_http fuzz_chunked fuzz_config fuzz_util fuzz_llhttp fuzz_ctl fuzz_metrics
	fuzz_k8s fuzz_json fuzz_h2)
[ ${#WANT[@]} -gt 0 ] || WANT=("${ALL[@]}")

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-g -O1 $SAN -std=gnu11 -D_GNU_SOURCE -Iinclude -Iagent -Itests/fuzz -I$LLHTTP_INC"
WARN="-Wall -Wextra -Werror -Wno-unused-parameter"

mkdir -p "$OUT/llhttp"

# llhttp is third-party generated code: instrumented for coverage, built
# without our warnings.
LLHTTP_OBJS=()
for f in api http llhttp; do
	o="$OUT/llhttp/$f.o"
	if [ ! -e "$o" ] || [ "$LLHTTP_SRC/$f.c" -nt "$o" ]; then
		echo "  CC       $o"
		$CLANG -g -O1 $SAN -fsanitize=fuzzer-no-link -w -I"$LLHTTP_INC" -c "$LLHTTP_SRC/$f.c" -o "$o"
	fi
	LLHTTP_OBJS+=("$o")
done

for h in "${WANT[@]}"; do
	[ -n "${SRCS[$h]+x}" ] || { echo "run.sh: no harness $h" >&2; exit 2; }
	extra=()
	case "$h" in fuzz_llhttp | fuzz_h2) extra=("${LLHTTP_OBJS[@]}") ;; esac
	echo "  FUZZ     $OUT/$h"
	# shellcheck disable=SC2086
	$CLANG $CFLAGS $WARN -fsanitize=fuzzer "tests/fuzz/$h.c" ${SRCS[$h]} "${extra[@]}" ${LIBS[$h]:-} -o "$OUT/$h"
done
[ "$BUILD_ONLY" = 1 ] && exit 0

failed=()
mkdir -p tests/fuzz/crashes
for h in "${WANT[@]}"; do
	work="$OUT/corpus/$h"
	art="$OUT/artifacts/$h/"
	log="$OUT/$h.log"
	mkdir -p "$work" "$art" "tests/fuzz/corpus/$h"
	opts=(-max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
		-artifact_prefix="$art" -max_len="${MAXLEN[$h]:-4096}")
	opts+=(-dict="tests/fuzz/${DICT[$h]}")
	known=(tests/fuzz/crashes/"$h"-*)
	if [ -e "${known[0]}" ]; then
		if ! "$OUT/$h" -runs=1 "${known[@]}" >"$log" 2>&1; then
			echo "== $h: an input in tests/fuzz/crashes/ still fails; not fuzzed:"
			grep -E 'property violated|ERROR: |runtime error|^Running' "$log" | sed 's/^/   | /'
			failed+=("$h")
			continue
		fi
	fi
	echo "== $h: ${SECONDS_EACH}s (log: $log)"
	rc=0
	# shellcheck disable=SC2086
	"$OUT/$h" "${opts[@]}" ${FUZZ_FLAGS:-} "$work" "tests/fuzz/corpus/$h" >"$log" 2>&1 || rc=$?
	grep -E '^(stat::|#[0-9]+[[:space:]]+DONE)' "$log" | sed 's/^/   /' || true
	found=0
	for a in "$art"crash-* "$art"leak-* "$art"timeout-* "$art"oom-* "$art"slow-unit-*; do
		[ -e "$a" ] || continue
		kind=$(basename "$a")
		case "$kind" in slow-unit-*) continue ;; esac
		dst="tests/fuzz/crashes/$h-$kind"
		cp "$a" "$dst"
		rm -f "$a"
		echo "   CRASH  $dst"
		found=1
	done
	if [ "$rc" -ne 0 ] || [ "$found" = 1 ]; then
		echo "   FAILED (exit $rc); the end of $log:"
		tail -n 40 "$log" | sed 's/^/   | /'
		failed+=("$h")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: failed: ${failed[*]}"
	exit 1
fi
echo "fuzz: ${#WANT[@]} harnesses, ${SECONDS_EACH}s each, no crash"
