/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The reuseport program (bpf/reuseport.bpf.c): which worker's listening
 * socket takes a new connection. Per agent, not pinned.
 */
#ifndef SHUNT_REUSEPORT_H
#define SHUNT_REUSEPORT_H

#include <stdbool.h>
#include <stdint.h>

struct shunt_reuseport;

struct reuseport {
	struct shunt_reuseport *skel;
	bool migrate; /* attached as SELECT_OR_MIGRATE (5.14 and later) */
};

/* Load the program with cpu_worker[cpu] for CPUs 0..ncpu-1: 0 or -errno
 * (said why). */
int reuseport_open(struct reuseport *r, const uint32_t *cpu_worker, int ncpu);
/* fd (listening, family SHUNT_FAMILY_V4 or _V6) is worker's: 0 or -errno. */
int reuseport_add(struct reuseport *r, int worker, uint8_t family, int fd);
/* Steer fd's reuseport group with the program: 0 or -errno. */
int reuseport_attach(struct reuseport *r, int fd);
void reuseport_close(struct reuseport *r);

#endif /* SHUNT_REUSEPORT_H */
