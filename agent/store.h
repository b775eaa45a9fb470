/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The route store: keeps the in-memory route index, the pinned
 * shunt_routes map (the durable copy) and the shunt_services map (which
 * services the kernel captures) in step.
 */
#ifndef SHUNT_STORE_H
#define SHUNT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

#include "config.h"
#include "routes.h"

struct store {
	struct route_table *t;
	int routes_fd;	 /* -1: no kernel (unit tests) */
	int services_fd; /* -1: no kernel */
};

/* Recover every route from the routes map (dropping expired ones) and
 * rebuild the services map from them. Returns the number recovered or
 * -errno. */
long store_init(struct store *s, int routes_fd, int services_fd, uint64_t now_unix);
void store_free(struct store *s);

/* Add or replace a route. On failure returns -errno with a message. */
int store_add(struct store *s, const struct shunt_route_key *k, const struct shunt_route *v,
	      char *err, size_t errlen);
/* 0 or -ENOENT. */
int store_del(struct store *s, const struct shunt_route_key *k);
/* Remove routes whose deadline has passed; returns how many. */
int store_expire(struct store *s, uint64_t now_unix);
/* Make the file's routes the set of file routes: file routes no longer in
 * cfg go, every route in cfg is added or replaced. Returns 0 or -errno. */
int store_apply_file(struct store *s, const struct config *cfg, uint64_t now_unix, char *err,
		     size_t errlen);

#endif /* SHUNT_STORE_H */
