#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Install every Debian package shunt needs to build, test and benchmark.
# Idempotent and quick when everything is already there.
set -euo pipefail

PKGS=(
	make clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config
	libcriterion-dev node-llhttp libnghttp2-dev
	libcurl4-openssl-dev libjson-c-dev libyaml-dev
	iproute2 util-linux procps python3 curl openssl dpkg
	python3-jsonschema python3-yaml
	wrk nginx-light haproxy
	# make profile (tests/bench/hotpath.py)
	linux-perf strace
	# HTTP/2 and gRPC tests: real clients and servers (tests/e2e/test_h2.py)
	nghttp2-client nghttp2-server python3-grpcio
	# in-pod mode: a packet filter in an upstream pod (tests/e2e/test_inpod.py)
	iptables
	postgresql postgresql-client
	clang-format cppcheck binutils
	# make test-image: a debootstrap'ed base, the image built and run by
	# podman (buildah underneath) with runc (crun refuses hybrid cgroups)
	podman buildah runc debootstrap
)

# tests/deploy/validate.py runs `kubectl kustomize deploy/`; Debian ships
# kubectl as kubernetes-client (keep a kubectl installed another way).
command -v kubectl >/dev/null 2>&1 || PKGS+=(kubernetes-client)

if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: run as root (apt-get install)" >&2
	exit 1
fi
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx-light's package starts a system nginx on port 80; shunt's tests and
# benchmark run their own instances and do not need it.
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now nginx >/dev/null 2>&1 || true
fi
echo "deps.sh: all dependencies present"
