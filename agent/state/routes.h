/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The agent's in-memory index of routes: (service, routing key) -> route.
 * The pinned BPF map shunt_routes holds the same entries and is the truth
 * after a restart; this index serves the proxy's per-request lookups.
 */
#ifndef SHUNT_ROUTES_H
#define SHUNT_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

struct route_table;

/* Fill a map key: zeroed, then service and key copied (key truncated to
 * SHUNT_ROUTE_KEY_LEN - 1 bytes), so equal routes are bytewise equal. */
/*
 * Visible ASCII minus the delimiters of the formats that carry keys, so a
 * key survives being written back into any of them unquoted and unescaped.
 */
static inline bool rk_key_byte_ok(unsigned char c)
{
	if (c < 0x21 || c > 0x7e)
		return false;
	switch (c) {
	case ',':
	case ';':
	case '=':
	case '"':
	case '\\':
		return false;
	default:
		return true;
	}
}

/* A routing key as given by an operator (route add, config file, an API
 * object) or taken from a request: 1 to 63 such bytes. Returns 0 or
 * -EINVAL. */
int rk_validate(const char *key);

void route_key_make(struct shunt_route_key *k, const struct shunt_addr *svc, const char *key,
		    size_t keylen);

struct route_table *route_table_new(void);
void route_table_free(struct route_table *t);

/* A copy that shares nothing with t (for readers on other threads while
 * t changes), or NULL when out of memory. */
struct route_table *route_table_clone(const struct route_table *t);

/* Changes with every put and delete: equal values, equal contents. */
uint64_t route_table_gen(const struct route_table *t);

/* Insert or replace. *created (if non-NULL) says which. 0 or -ENOMEM. */
int route_table_put(struct route_table *t, const struct shunt_route_key *k,
		    const struct shunt_route *v, int *created);

/* 0, or -ENOENT when there is no such route. */
int route_table_del(struct route_table *t, const struct shunt_route_key *k);

/* The route for (svc, key[0..keylen)), or NULL. */
const struct shunt_route *route_table_get(const struct route_table *t, const struct shunt_addr *svc,
					  const char *key, size_t keylen);

size_t route_table_count(const struct route_table *t);

/* How many routes name this service (the kernel captures a service while
 * this is > 0). */
size_t route_table_service_count(const struct route_table *t, const struct shunt_addr *svc);

/* Visit every route; stop early when fn returns non-zero (returned). The
 * table must not be modified from fn. */
int route_table_foreach(const struct route_table *t,
			int (*fn)(const struct shunt_route_key *k, const struct shunt_route *v,
				  void *ctx),
			void *ctx);

/* All routes, sorted by service (family, address, port) then key, in a
 * malloc'd array the caller frees. Returns the count or -ENOMEM. */
long route_table_sorted(const struct route_table *t, struct shunt_route_key **keys,
			struct shunt_route **vals);

#endif /* SHUNT_ROUTES_H */
