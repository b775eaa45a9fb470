# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# shunt: make builds build/shuntd, build/shuntctl and build/shunt-controller; make test runs every
# test; make bench runs the benchmark; make check lints. V=1 for verbose.

OUTPUT ?= build
ARCH ?= $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
CLANG ?= clang
CC ?= cc
BPFTOOL ?= bpftool
PYTHON ?= /usr/bin/python3
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

# Sanitizer build (SAN=1) goes to its own output tree.
ifeq ($(SAN),1)
override OUTPUT := $(OUTPUT)/san
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wmissing-prototypes -Wstrict-prototypes
CFLAGS ?= -O2 -g
# The Kubernetes watcher: libcurl (HTTP), json-c (the API's JSON), libyaml
# (kubeconfig).
PKGS := libcurl json-c yaml-0.1 libnghttp2
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS))
ALL_CFLAGS := $(CFLAGS) $(WARN) $(SAN_FLAGS) -std=gnu11 -D_GNU_SOURCE -MMD -MP -pthread \
	-Iinclude -Iagent -Itests/unit -I$(OUTPUT) -I$(LLHTTP_INC) $(PKG_CFLAGS)
LDLIBS := -lbpf -lelf -lz $(PKG_LIBS) -pthread
LDFLAGS += $(SAN_FLAGS)

BPF_CFLAGS := -g -O2 -Wall -Werror -target bpf -D__BPF__ -D__TARGET_ARCH_$(ARCH) \
	-Ivmlinux/$(ARCH) -Iinclude -Ibpf

BPF_PROGS := sock_addr sockops reuseport tc infer
BPF_OBJS := $(patsubst %,$(OUTPUT)/bpf/%.bpf.o,$(BPF_PROGS))
SKELS := $(patsubst %,$(OUTPUT)/%.skel.h,$(BPF_PROGS))

# agent/ holds the two programs' main files; everything in its subsystem
# folders (core, kernel, state, proxy, k8s, ops) is a library that the unit
# tests link too.
AGENT_DIRS := core kernel state proxy k8s ops
AGENT_LIB_SRCS := $(wildcard $(patsubst %,agent/%/*.c,$(AGENT_DIRS)))
AGENT_LIB_OBJS := $(patsubst agent/%.c,$(OUTPUT)/agent/%.o,$(AGENT_LIB_SRCS))
# The Sandbox controller (agent/ctrl) is its own program on the same
# library: shuntd does not carry it.
CTRL_OBJS := $(patsubst agent/%.c,$(OUTPUT)/agent/%.o,$(wildcard agent/ctrl/*.c))
LLHTTP_OBJS := $(patsubst %,$(OUTPUT)/llhttp/%.o,api http llhttp)

UNIT_SRCS := $(wildcard tests/unit/test_*.c) tests/unit/main.c
UNIT_OBJS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%.o,$(UNIT_SRCS))

.DELETE_ON_ERROR:
.SECONDARY: $(BPF_OBJS)
.PHONY: FORCE all clean test test-unit test-e2e test-deploy test-image deploy-schemas bench bench-k8s profile soak fuzz \
	fuzz-smoke test-kernels check format vmlinux demo

all: $(OUTPUT)/shuntd $(OUTPUT)/shuntctl $(OUTPUT)/shunt-controller $(OUTPUT)/kubectl-shunt

$(OUTPUT)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/lib/*.h) include/shunt/shunt.h | $(OUTPUT)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	$(Q)$(BPFTOOL) gen object $@ $@.tmp && rm -f $@.tmp

$(OUTPUT)/%.skel.h: $(OUTPUT)/bpf/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name shunt_$* > $@

# The version (git describe) for shunt_build_info: rewritten only when it
# changes, so it rebuilds only what includes it.
SHUNT_VERSION = $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(OUTPUT)/version.h: FORCE | $(OUTPUT)/agent
	$(Q)printf '#define SHUNT_VERSION "%s"\n' '$(SHUNT_VERSION)' > $@.tmp
	$(Q)cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(OUTPUT)/agent/ops/metrics.o: $(OUTPUT)/version.h
FORCE:

$(OUTPUT)/agent/%.o: agent/%.c $(SKELS) | $(OUTPUT)/agent
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# llhttp is third-party generated code: its own warnings are not ours.
$(OUTPUT)/llhttp/%.o: $(LLHTTP_SRC)/%.c | $(OUTPUT)/llhttp
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) -w -I$(LLHTTP_INC) -c $< -o $@

$(OUTPUT)/shuntd: $(OUTPUT)/agent/shuntd.o $(AGENT_LIB_OBJS) $(LLHTTP_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# shuntctl takes from an archive only the objects it uses, and --as-needed
# drops the libraries they do not need (libcurl and its dozens of
# dependencies cost every shuntctl run milliseconds to load).
$(OUTPUT)/libshunt.a: $(AGENT_LIB_OBJS) $(LLHTTP_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(OUTPUT)/shuntctl: $(OUTPUT)/agent/shuntctl.o $(OUTPUT)/libshunt.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -Wl,--as-needed $^ $(LDLIBS) -o $@

$(OUTPUT)/shunt-controller: $(OUTPUT)/agent/shunt-controller.o $(CTRL_OBJS) $(OUTPUT)/libshunt.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -Wl,--as-needed $^ $(LDLIBS) -o $@

$(OUTPUT)/kubectl-shunt: $(OUTPUT)/agent/kubectl-shunt.o $(CTRL_OBJS) $(OUTPUT)/libshunt.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -Wl,--as-needed $^ $(LDLIBS) -o $@

$(OUTPUT)/tests/%.o: tests/unit/%.c $(SKELS) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(OUTPUT)/unit-tests: $(UNIT_OBJS) $(AGENT_LIB_OBJS) $(CTRL_OBJS) $(LLHTTP_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcriterion -o $@

$(OUTPUT)/bpf $(OUTPUT)/agent $(OUTPUT)/llhttp $(OUTPUT)/tests:
	$(Q)mkdir -p $@

# A sanitizer's report in a test's teardown does not fail Criterion's
# verdict (the test already passed): the log is read for one.
test-unit: $(OUTPUT)/unit-tests
	$(Q)$(OUTPUT)/unit-tests > $(OUTPUT)/unit-tests.log 2>&1; rc=$$?; cat $(OUTPUT)/unit-tests.log; \
	if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' $(OUTPUT)/unit-tests.log; then \
		echo "unit tests: a sanitizer reported an error (above)"; exit 1; fi; exit $$rc

# BPF objects the end-to-end tests load themselves (tests/e2e/bpf/).
E2E_BPF_OBJS := $(patsubst tests/e2e/bpf/%.bpf.c,$(OUTPUT)/tests/%.bpf.o,$(wildcard tests/e2e/bpf/*.bpf.c))

$(OUTPUT)/tests/%.bpf.o: tests/e2e/bpf/%.bpf.c | $(OUTPUT)/tests
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# End-to-end: network namespaces, a cgroup, real servers and clients.
test-e2e: all $(E2E_BPF_OBJS)
	$(PYTHON) tests/e2e/run.py --build $(OUTPUT) $(E2E_ARGS)

# deploy/ offline: manifests against the Kubernetes schemas, the CRDs'
# own schema and CEL rules against good and bad SandboxRoutes, the
# DaemonSet's invariants, the pod entrypoint (tests/deploy/validate.py).
test-deploy: all
	$(PYTHON) tests/deploy/validate.py --build $(OUTPUT)

# The image: deploy/Dockerfile built by podman on a debootstrap'ed Debian
# base, then the core e2e cases against shuntd in a container with the
# DaemonSet's security context (tests/image/run.py --help). Several
# minutes; IMAGE_ARGS=--quick runs fewer cases.
test-image: all
	$(PYTHON) tests/image/run.py --build $(OUTPUT) $(IMAGE_ARGS)

test: test-unit test-deploy test-e2e

# Regenerate tests/deploy/schemas/k8s.json from the npm packages
# (kubernetes-models); pass K8S_MODELS_VERSION to move to another one.
K8S_MODELS_VERSION ?= 5.1.0
K8S_APIMACHINERY_VERSION ?= 3.0.2
deploy-schemas:
	d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && cd "$$d" && \
	npm pack --silent kubernetes-models@$(K8S_MODELS_VERSION) \
		@kubernetes-models/apimachinery@$(K8S_APIMACHINERY_VERSION) >/dev/null && \
	mkdir km am && tar xzf kubernetes-models-$(K8S_MODELS_VERSION).tgz -C km && \
	tar xzf kubernetes-models-apimachinery-$(K8S_APIMACHINERY_VERSION).tgz -C am && \
	$(PYTHON) $(CURDIR)/tests/deploy/gen_k8s_schemas.py km/package am/package \
		$(CURDIR)/tests/deploy/schemas/k8s.json

demo: all
	$(PYTHON) tests/demo.py $(OUTPUT)

bench: all
	$(PYTHON) tests/bench/bench.py --build $(OUTPUT) $(BENCH_ARGS)

# Where shuntd's time and system calls go per request (perf, strace).
profile: all
	$(PYTHON) tests/bench/hotpath.py --build $(OUTPUT) $(PROFILE_ARGS)

# libFuzzer harnesses (tests/fuzz/): FUZZ_TIME seconds each; fuzz-smoke ~10 s.
FUZZ_TIME ?= 60
FUZZ_ENV = OUTPUT=$(OUTPUT) CLANG=$(CLANG) LLHTTP_SRC=$(LLHTTP_SRC) LLHTTP_INC=$(LLHTTP_INC)
fuzz:
	$(FUZZ_ENV) bash tests/fuzz/run.sh $(FUZZ_TIME)

fuzz-smoke:
	$(FUZZ_ENV) bash tests/fuzz/run.sh --smoke

# Verifier acceptance and the e2e suite under Debian's 6.1 and 6.12 kernels.
test-kernels: all $(E2E_BPF_OBJS)
	bash tests/kernels/run.sh --build $(OUTPUT) $(KERNELS_ARGS)

# Randomized traffic under route churn; reports misroutes, failures, RSS/fds.
DURATION ?= 10m
soak: all
	$(PYTHON) tests/soak/soak.py --build $(OUTPUT) --duration $(DURATION) $(SOAK_ARGS)

C_SRCS := $(wildcard agent/*.c agent/*.h agent/*/*.c agent/*/*.h include/shunt/*.h bpf/*.c bpf/lib/*.h tests/unit/*.c tests/unit/*.h \
	tests/e2e/bpf/*.c)
format:
	clang-format -i $(C_SRCS)

check: all $(OUTPUT)/unit-tests
	clang-format --dry-run --Werror $(C_SRCS)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
		--inline-suppr --suppress=missingIncludeSystem -D__x86_64__ \
		-Iinclude -Iagent -I$(OUTPUT) agent tests/unit

vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/$(ARCH)/vmlinux.h

clean:
	rm -rf $(OUTPUT)

-include $(wildcard $(OUTPUT)/agent/*.d $(OUTPUT)/agent/*/*.d $(OUTPUT)/tests/*.d)

# Kubernetes mode at scale against tests/k8s/fakeapi.py: sync time, RSS,
# watch event -> kernel map latency (tests/k8s/scale.py --help).
.PHONY: bench-k8s
bench-k8s: all
	$(PYTHON) tests/k8s/scale.py --build $(OUTPUT) $(BENCH_K8S_ARGS)
	$(PYTHON) tests/k8s/sandbox_bench.py --build $(OUTPUT)
