// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <shunt/shunt.h>

#include "reuseport.skel.h"
#include "core/log.h"
#include "kernel/reuseport.h"

/* Open and load, as SELECT_OR_MIGRATE or plain SELECT. */
static struct shunt_reuseport *load(bool migrate)
{
	struct shunt_reuseport *skel = shunt_reuseport__open();

	if (!skel)
		return NULL;
	if (!migrate)
		bpf_program__set_expected_attach_type(skel->progs.shunt_reuseport,
						      BPF_SK_REUSEPORT_SELECT);
	if (shunt_reuseport__load(skel)) {
		shunt_reuseport__destroy(skel);
		return NULL;
	}
	return skel;
}

int reuseport_open(struct reuseport *r, const uint32_t *cpu_worker, int ncpu)
{
	int err, fd;

	memset(r, 0, sizeof(*r));
	r->migrate = true;
	r->skel = load(true);
	if (!r->skel) {
		r->migrate = false;
		r->skel = load(false);
	}
	if (!r->skel) {
		err = -errno;
		pr_warn("load the reuseport program: %s", strerror(-err));
		return err;
	}
	fd = bpf_map__fd(r->skel->maps.shunt_cpu_worker);
	for (uint32_t cpu = 0; cpu < (uint32_t)ncpu && cpu < SHUNT_MAX_CPUS; cpu++)
		if (bpf_map_update_elem(fd, &cpu, &cpu_worker[cpu], BPF_ANY)) {
			err = -errno;
			reuseport_close(r);
			return err;
		}
	return 0;
}

int reuseport_add(struct reuseport *r, int worker, uint8_t family, int fd)
{
	struct bpf_map *m = family == SHUNT_FAMILY_V4 ? r->skel->maps.shunt_workers4
						      : r->skel->maps.shunt_workers6;
	__u32 k = (__u32)worker;
	__u64 v = (__u64)fd;

	return bpf_map_update_elem(bpf_map__fd(m), &k, &v, BPF_ANY) ? -errno : 0;
}

int reuseport_attach(struct reuseport *r, int fd)
{
	int prog = bpf_program__fd(r->skel->progs.shunt_reuseport);

	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)) ? -errno
											 : 0;
}

void reuseport_close(struct reuseport *r)
{
	shunt_reuseport__destroy(r->skel);
	r->skel = NULL;
}
