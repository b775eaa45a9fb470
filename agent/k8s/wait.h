/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * "Are the overrides this pod should have in the kernel?" for a pod uid
 * (`shuntctl override wait`, GET /v1/overrides?pod=UID): what a sandbox
 * pod's init container asks before its app opens its first connection.
 *
 * The watcher thread, which alone reads the cluster cache, builds a
 * snapshot of this node's pods after each change: which SandboxOverrides
 * select each one, whether its cgroup was found, and the overrides the
 * translation wants for it. The main thread answers from the snapshot and
 * the store (what is in the kernel). Pure: no I/O, no locks; the caller
 * passes the snapshot it holds.
 */
#ifndef SHUNT_K8S_WAIT_H
#define SHUNT_K8S_WAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hmap.h"
#include "k8s/cache.h"
#include "k8s/uid.h"

struct override_entry;

/* One pod of this node. */
struct k8s_wait_pod {
	char *id;		   /* "namespace/name" */
	size_t nsel;		   /* SandboxOverrides (not expired) selecting it */
	char *sbo;		   /* the first of them by namespace/name; NULL none */
	bool cgroup;		   /* its cgroup was found */
	size_t nwant;		   /* overrides the translation wants for it */
	struct k8s_override *want; /* malloc'd */
};

struct k8s_wait {
	struct hmap pods; /* uid -> struct k8s_wait_pod */
};

/* The snapshot of c's pods on c->node at now_unix, into a new *out (freed
 * with k8s_wait_free). Looks cgroups up with c->cgroup_of, for selected
 * pods only. 0 or -ENOMEM. */
int k8s_wait_build(const struct k8s_cache *c, uint64_t now_unix, struct k8s_wait **out);
void k8s_wait_free(struct k8s_wait *w);

/* The answer for the pod uid: 1 ready or 0 pending, with a one-line
 * reason in msg ("ready: ..." / "pending: ..."). w NULL: the agent has not
 * listed the cluster yet. ovr/novr: the overrides in the store (and so in
 * the kernel). */
int k8s_wait_check(const struct k8s_wait *w, const char *node, const char *uid,
		   const struct override_entry *ovr, size_t novr, char *msg, size_t len);

#endif /* SHUNT_K8S_WAIT_H */
