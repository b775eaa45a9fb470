/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The route store: keeps the in-memory route index, the pinned
 * shunt_routes map (the durable copy) and the shunt_services map (which
 * services the kernel captures) in step.
 */
#ifndef SHUNT_STORE_H
#define SHUNT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

#include "state/config.h"
#include "state/dstguard.h"
#include "state/routes.h"

/* An override as the store keeps it: exactly the map's key and value. */
struct override_entry {
	struct shunt_override_key k;
	struct shunt_override v;
};

struct store {
	struct route_table *t;
	/* File and API routes hidden by a Kubernetes route for the same
	 * (service, key): the Kubernetes one wins, and when it goes the
	 * hidden one comes back. In memory only. */
	struct route_table *shadow;
	struct override_entry *ovr; /* few: a plain array */
	size_t novr, ovr_cap;
	int routes_fd;	     /* -1: no kernel (unit tests) */
	int services_fd;     /* -1: no kernel */
	int overrides_fd;    /* -1: no kernel */
	uint32_t max_routes; /* the routes map's size, for messages */
	/* Which destinations are allowed (never the node itself) and which
	 * families the proxy serves; NULL: anything (unit tests). */
	const struct dstguard *guard;
};

/* Recover every route and override from the pinned maps (dropping expired
 * ones, and those the guard refuses now: an address that became the
 * node's, a family the proxy no longer serves) and rebuild the services
 * map from them. Returns the number of routes recovered (s->novr has the
 * overrides) or -errno. */
long store_init(struct store *s, int routes_fd, int services_fd, int overrides_fd,
		uint64_t now_unix, const struct dstguard *guard);

/* Would the guard let this route or override in? 0, or -EACCES (a
 * destination of the node) / -EAFNOSUPPORT (no proxy listener of the
 * service's family) with a message. Every add below checks it. */
int store_route_allowed(const struct store *s, const struct shunt_route_key *k,
			const struct shunt_route *v, char *err, size_t errlen);
int store_ovr_allowed(const struct store *s, const struct shunt_override_key *k,
		      const struct shunt_override *v, char *err, size_t errlen);
void store_free(struct store *s);

/* Add or replace a route. On failure returns -errno with a message. */
int store_add(struct store *s, const struct shunt_route_key *k, const struct shunt_route *v,
	      char *err, size_t errlen);
/* 0 or -ENOENT. */
int store_del(struct store *s, const struct shunt_route_key *k);
/* A file or API route: added, or, where a Kubernetes route holds the same
 * (service, key), kept aside until that one goes (*shadowed = true). */
int store_add_local(struct store *s, const struct shunt_route_key *k, const struct shunt_route *v,
		    bool *shadowed, char *err, size_t errlen);
/* Delete a file or API route (also a shadowed one); -EPERM when the
 * route in force comes from Kubernetes, -ENOENT when there is none. */
int store_del_local(struct store *s, const struct shunt_route_key *k);

/* Kubernetes routes (v has SHUNT_ROUTE_FROM_K8S): put sets a file or API
 * route for the same (service, key) aside; del removes only a Kubernetes
 * route (else -ENOENT) and brings back what it hid. */
int store_k8s_put(struct store *s, const struct shunt_route_key *k, const struct shunt_route *v,
		  char *err, size_t errlen);
int store_k8s_del(struct store *s, const struct shunt_route_key *k);

/* Remove routes and overrides whose deadline has passed; returns how
 * many. */
int store_expire(struct store *s, uint64_t now_unix);

/* Add or replace the override for (k->src, k->dst); the first connect()
 * after it returns is redirected. On failure -errno with a message;
 * -EPERM when a Kubernetes override (SHUNT_ROUTE_FROM_K8S) holds the key
 * and v is not one: those belong to the watcher. */
int store_ovr_add(struct store *s, const struct shunt_override_key *k,
		  const struct shunt_override *v, char *err, size_t errlen);
/* Remove the override given as `from` (the text it was added with) for
 * dst: 0, -ENOENT, or -EPERM for a Kubernetes override. */
int store_ovr_del(struct store *s, const char *from, const struct shunt_addr *dst);
/* Remove the Kubernetes override with key k: 0 or -ENOENT (none, or not
 * from Kubernetes). */
int store_ovr_k8s_del(struct store *s, const struct shunt_override_key *k);
/* Overrides naming dst as their destination. */
size_t store_ovr_dst_count(const struct store *s, const struct shunt_addr *dst);
/* Make the file's routes the set of file routes: file routes no longer in
 * cfg go, every route in cfg is added or replaced. Returns 0 or -errno. */
int store_apply_file(struct store *s, const struct config *cfg, uint64_t now_unix, char *err,
		     size_t errlen);

#endif /* SHUNT_STORE_H */
