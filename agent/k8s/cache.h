/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The watcher's picture of the cluster and the routes it implies
 * (docs/k8s-contract.md). Pure: no I/O, no clock, no threads; the watcher
 * feeds it objects and events, and the unit tests feed it JSON fixtures.
 *
 * Each change marks the SandboxRoutes it can affect as dirty; recompute
 * translates only those, and changes() reports only the routes whose
 * value differs from what was last reported. A burst of events costs one
 * translation per affected SandboxRoute, not one per event.
 *
 * Tenancy (docs/k8s-contract.md "Tenancy"): an object uses only Services
 * and Pods of its own namespace; an EndpointSlice address counts only when
 * its targetRef names a Pod of the slice's namespace that exists and has
 * that address; sandbox.addresses must lie inside an allowed prefix; a
 * namespace's SandboxRoutes together ask for at most max_ns_routes routes
 * (older objects first, whole objects); of two objects producing the same
 * route or override, the older one wins. What is refused or lost is
 * listed by k8s_cache_problems().
 *
 * SandboxOverrides are few (the kernel holds SHUNT_MAX_OVERRIDES): any
 * change that can touch one translates them all again, and the overrides
 * reported are the difference from the last set. Their source is a pod's
 * cgroup on this node, which the cache asks of an injected lookup.
 */
#ifndef SHUNT_K8S_CACHE_H
#define SHUNT_K8S_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hmap.h"
#include "k8s/obj.h"
#include "core/util.h"

/* A route as the store takes it. */
struct k8s_route {
	struct shunt_route_key k;
	struct shunt_route v; /* flags include SHUNT_ROUTE_FROM_K8S */
};

/* One change for the store: put (replace) or delete a route. owner is
 * the "namespace/name" of the SandboxRoute a put comes from (the cache's
 * string: valid until the cache changes again). */
struct k8s_op {
	struct k8s_route r;
	bool del;
	const char *owner;
};

/* An override as the store takes it. */
struct k8s_override {
	struct shunt_override_key k;
	struct shunt_override v; /* flags SHUNT_ROUTE_FROM_K8S */
};

struct k8s_ovr_op {
	struct k8s_override o;
	bool del;
};

/* The id of the pod-level cgroup of the pod with this uid on this node:
 * 0, or -ENOENT while it has none (not started yet, or gone). */
typedef int (*k8s_cgroup_fn)(void *ud, const char *pod_uid, uint64_t *id);

/* Why an object gets less than it asks for. */
enum k8s_why {
	K8S_WHY_CONFLICT = 0, /* routes/overrides an older object produces too */
	K8S_WHY_QUOTA,	      /* its namespace would go over max_ns_routes */
	K8S_WHY_CIDR,	      /* a sandbox address outside every allowed prefix */
	K8S_WHY_ENDPOINTS,    /* slice addresses not counted (targetRef) */
	K8S_WHY_MAX,
};

extern const char *const k8s_why_names[K8S_WHY_MAX]; /* "conflict", "quota", ... */

struct k8s_problem {
	enum k8s_kind kind; /* K8S_SBR, K8S_SBO or K8S_SLICE */
	enum k8s_why why;
	char id[K8S_ID_MAX];	/* the object */
	char other[K8S_ID_MAX]; /* conflict: the object that won; else "" */
	size_t n;		/* routes / overrides lost or refused; addresses ignored */
	char detail[96];	/* the first address concerned, or the quota's use */
};

struct k8s_cache {
	struct hmap objs[K8S_NKINDS]; /* "ns/name" -> object */
	struct hmap slices_by_svc;    /* "ns/service" -> struct k8s_group of slices */
	struct hmap slices_by_pod;    /* "ns/pod" -> slices whose targetRefs name it */
	struct hmap pods_by_ns;	      /* "ns" -> struct k8s_group of pods */
	struct hmap sbrs_by_ns;	      /* "ns" -> struct k8s_group of SandboxRoutes */
	struct hmap desired;	      /* route key -> struct k8s_desired */
	struct hmap contested;	      /* route keys two or more SandboxRoutes produce */
	struct hmap changed;	      /* route keys to report */
	struct hmap dirty;	      /* SandboxRoute ids to translate again */
	struct hmap ns_dirty;	      /* namespaces whose quota to settle again */
	bool all_dirty;
	uint64_t local_pods_gen; /* changes with this node's pods (capture modes) */
	size_t nroutes;		 /* desired routes (with an owner) */
	uint64_t next_deadline;	 /* earliest ttl deadline still ahead, 0 none */

	/* Settings; set before the first put. */
	const struct addr_prefix *sandbox_cidrs; /* sandbox.addresses allowed here */
	size_t n_sandbox_cidrs;
	size_t max_ns_routes; /* routes per namespace; 0: no limit */

	/* Label keys some selector uses (key -> how many selectors, as a
	 * uintptr_t): what a Pod needs to keep. new_label_keys says one
	 * appeared since the watcher last looked. */
	struct hmap label_keys;
	bool new_label_keys;

	/* SandboxOverrides. Set node and cgroup_of before the first put. */
	const char *node; /* this node's name: pods elsewhere are not ours */
	k8s_cgroup_fn cgroup_of;
	void *cgroup_ud;
	struct hmap ovr_want; /* override key -> struct k8s_ovr_want */
	struct hmap ovr_pub;  /* ... as last reported (struct k8s_override) */
	struct hmap ovr_lost; /* "loser\0winner" ids -> overrides lost (uintptr_t) */
	bool ovr_dirty;
	size_t ovr_unresolved; /* selected pods without a cgroup: ask again later */
	uint64_t ovr_deadline; /* earliest SandboxOverride ttl still ahead, 0 none */
};

void k8s_cache_init(struct k8s_cache *c);
void k8s_cache_free(struct k8s_cache *c);

/* Add or replace an object (owned by the cache from here, also on
 * failure). 0 or -ENOMEM. */
int k8s_cache_put(struct k8s_cache *c, enum k8s_kind kind, void *obj);
/* Remove the object "ns/name": 0 or -ENOENT. */
int k8s_cache_del(struct k8s_cache *c, enum k8s_kind kind, const char *id);
/* Replace every object of kind with those in fresh ("ns/name" -> object,
 * emptied and left for the caller to free): the end of a (re)list. */
int k8s_cache_replace(struct k8s_cache *c, enum k8s_kind kind, struct hmap *fresh);

/* Decode a JSON object of kind and put it (the unit tests, the fuzzer),
 * as the watcher would on this node (c->node) keeping every label: 0,
 * -EINVAL with a message, -ENOMEM. */
int k8s_cache_put_json(struct k8s_cache *c, enum k8s_kind kind, const char *json, char *err,
		       size_t errlen);

/* The routes one SandboxRoute implies at now_unix (none when it has
 * expired, its Service is missing, it has no ready sandbox endpoint or a
 * sandbox address is outside every allowed prefix), in a malloc'd array.
 * The quota and conflicts with other objects are not applied here. Pure:
 * reads only the cache. Returns the count or -ENOMEM. */
long k8s_sbr_routes(const struct k8s_cache *c, const struct k8s_sbr *r, uint64_t now_unix,
		    struct k8s_route **out);

/* The overrides one SandboxOverride implies at now_unix (none when it has
 * expired or its destination or target is missing), in a malloc'd array;
 * *unresolved counts the selected pods on this node whose cgroup the
 * lookup did not find. Returns the count or -ENOMEM. */
long k8s_sbo_overrides(const struct k8s_cache *c, const struct k8s_sbo *o, uint64_t now_unix,
		       struct k8s_override **out, size_t *unresolved);

/* Translate the SandboxOverrides again at the next recompute (the watcher
 * does when pods were unresolved: their cgroups may exist now). */
static inline void k8s_cache_ovr_retry(struct k8s_cache *c)
{
	c->ovr_dirty = true;
}

/* The override changes since the last call (full: every desired override
 * as a put), in a malloc'd array. Returns the count or -ENOMEM. */
long k8s_cache_ovr_changes(struct k8s_cache *c, bool full, struct k8s_ovr_op **out);

/* Translate again every dirty SandboxRoute (and those whose deadline has
 * passed), settle the quota of their namespaces, and the SandboxOverrides
 * when one may have changed. 0 or -ENOMEM. */
int k8s_cache_recompute(struct k8s_cache *c, uint64_t now_unix);
bool k8s_cache_pending(const struct k8s_cache *c, uint64_t now_unix);

/* The changes since the last call (full: every desired route as a put,
 * for a resync), in a malloc'd array. Returns the count or -ENOMEM. */
long k8s_cache_changes(struct k8s_cache *c, bool full, struct k8s_op **out);

/* Everything refused or lost as of the last recompute, sorted by kind,
 * reason and id, in a malloc'd array: SandboxRoutes over the quota or
 * with addresses outside the allowed prefixes, SandboxRoutes and
 * SandboxOverrides losing routes or overrides to older ones (one entry
 * per loser and winner), EndpointSlices of Services some object uses
 * whose addresses do not count. Returns the count or -ENOMEM. */
long k8s_cache_problems(const struct k8s_cache *c, struct k8s_problem **out);

/* Ordering of objects when they compete (conflicts, quota): the older
 * first (creationTimestamp; none counts as newest), then "ns/name". */
int k8s_age_cmp(uint64_t created_a, const char *id_a, uint64_t created_b, const char *id_b);

#endif /* SHUNT_K8S_CACHE_H */
