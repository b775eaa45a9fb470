// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * fuzz_h2 runs the proxy without a kernel: the two calls into shunt's BPF
 * loader it links must never happen there (no limits, no drain).
 */
#include "fuzz.h"
#include "kernel/bpf.h"

int shunt_bpf_set_config_flags(struct shunt_bpf *b, uint32_t mask, uint32_t flags)
{
	FUZZ_CHECK(0, "the proxy set kernel config flags (%p %u %u)", (void *)b, mask, flags);
	return -1;
}

int shunt_bpf_set_listener(struct shunt_bpf *b, enum shunt_listener_slot slot, int fd)
{
	FUZZ_CHECK(0, "the proxy changed a listener slot (%p %d %d)", (void *)b, (int)slot, fd);
	return -1;
}
