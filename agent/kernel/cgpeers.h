/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The other cgroup connect4/connect6 programs that act on the tasks of
 * shunt's cgroup, and whether each runs before or after shunt's.
 *
 * A connect() runs, in order, the effective program array of the task's
 * cgroup (kernel/bpf/cgroup.c compute_effective_progs; checked on 6.18 by
 * tests/e2e/test_socketlb.py): programs attached with BPF_F_PREORDER at
 * the ancestors, root first; then the cgroup's own programs in attach
 * order (or where BPF_F_BEFORE/AFTER put them); then the parent's, the
 * grandparent's. So, next to shunt's programs, a program attached
 * earlier at the same cgroup, a preorder one at an ancestor, and any at a
 * descendant (a pod's) run before shunt's; one attached later at the same
 * cgroup, or plainly at an ancestor, runs after. The array that
 * BPF_PROG_QUERY returns with BPF_F_QUERY_EFFECTIVE is that order: that
 * is what is read here, for shunt's cgroup and for each descendant that
 * has programs of its own, rather than predicted.
 *
 * Why it matters: a socket-level load balancer (Cilium's socket LB)
 * turns a ClusterIP into an endpoint's address at connect(); running
 * before shunt's program, it leaves shunt only the endpoint to match, so
 * a route on the ClusterIP alone is never hit (docs/operations.md,
 * "Socket-level load balancers").
 */
#ifndef SHUNT_CGPEERS_H
#define SHUNT_CGPEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

/* Where the other program is attached, seen from shunt's cgroup. */
enum cg_relation {
	CG_SAME,       /* shunt's cgroup itself */
	CG_ANCESTOR,   /* a parent (path empty: above the visible tree) */
	CG_DESCENDANT, /* below: runs for the tasks there only */
};

struct cg_prog {
	uint32_t id;
	uint8_t family; /* SHUNT_FAMILY_V4 (connect4) or _V6 (connect6) */
	uint8_t relation;
	bool before;	  /* runs before shunt's program (for the tasks it acts on) */
	uint32_t cgroups; /* descendants: in how many cgroups (path: the first) */
	char name[16];	  /* "" when the agent may not read it (CAP_SYS_ADMIN) */
	char path[512];
};

#define CG_MAX_WALK 4096 /* descendant cgroups looked at, at most */

struct cg_peers {
	struct cg_prog *progs;
	size_t n, cap;
	size_t walked;	/* descendant cgroups looked at */
	bool truncated; /* stopped at CG_MAX_WALK */
	char err[256];	/* what could not be read, "" if all was */
};

/* Fill out for the cgroup directory shunt is attached to, whose own
 * connect4 and connect6 programs have the given ids. 0, or -errno when
 * shunt's cgroup itself cannot be queried (out->err says why); partial
 * failures below only fill out->err. Free with cg_peers_free(). */
int cg_peers_scan(const char *cgroup, uint32_t own4, uint32_t own6, struct cg_peers *out);
void cg_peers_free(struct cg_peers *p);

/* Is some other program of this family running before shunt's? */
bool cg_peers_before(const struct cg_peers *p, uint8_t family);

/*
 * Routes whose service address could be a virtual one that such a
 * program translates, with nothing on the other side to catch it: lone[i]
 * is set for each route i that no other route of the same routing key and
 * the same sandbox (to) covers on a different service address. (Kubernetes
 * mode puts a SandboxRoute on the ClusterIP and on every ready endpoint,
 * all to the same sandbox: none of those is lone; a manual route on a
 * ClusterIP alone is.) Returns how many are lone, or -ENOMEM.
 */
long routes_lone_address(const struct shunt_route_key *keys, const struct shunt_route *vals,
			 size_t n, bool *lone);

#endif /* SHUNT_CGPEERS_H */
