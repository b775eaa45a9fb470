// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * fuzz_h2 runs the proxy without a kernel: the two calls into shunt's BPF
 * loader it links must never happen there (no limits, no drain).
 */
#include <errno.h>

#include "fuzz.h"
#include "kernel/bpf.h"
#include "kernel/tc.h"

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

/* TC capture: fuzz_h2 has no TC program, so no pod is ever captured with
 * TC and nothing below it may be reached. */
int shunt_bpf_tc_prog_fd(struct shunt_bpf *b)
{
	(void)b;
	return -1;
}

int shunt_bpf_infer(struct shunt_bpf *b, struct shunt_infer_kern *out)
{
	(void)b;
	(void)out;
	return -EOPNOTSUPP;
}

int tc_sweep_stale(void)
{
	FUZZ_CHECK(0, "the proxy swept TC filters");
	return 0;
}

int tc_route_setup(uint32_t mark, char *msg, size_t msglen)
{
	FUZZ_CHECK(0, "the proxy set up TC routing (%u %p %zu)", mark, (void *)msg, msglen);
	return -1;
}

int tc_attach(int prog_fd, const char *ifname, struct tc_attachment *a, char *msg, size_t msglen)
{
	FUZZ_CHECK(0, "the proxy attached a TC program (%d %s %p %p %zu)", prog_fd, ifname,
		   (void *)a, (void *)msg, msglen);
	return -1;
}

void tc_detach(struct tc_attachment *a)
{
	FUZZ_CHECK(0, "the proxy detached a TC program (%p)", (void *)a);
}

const char *tc_attach_kind(const struct tc_attachment *a)
{
	(void)a;
	return "none";
}
