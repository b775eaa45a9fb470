/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The upstream pool: connections the proxy holds to each destination,
 * indexed by destination (address and port) in a hash, so finding the
 * idle connections for a request costs one lookup whatever the number of
 * destinations.
 *
 * A destination's entry counts every connection open to it (connecting,
 * busy or idle: --max-upstream-conns is checked against it) and keeps the
 * idle ones, most recently used first. Connections are linked in through
 * an embedded struct pool_link, so the pool holds any kind of connection:
 * today HTTP/1 upstreams (one request at a time, idle between requests);
 * an HTTP/2 session, which takes more streams while it is busy, goes on
 * the entry's mux list instead of the idle list.
 */
#ifndef SHUNT_POOL_H
#define SHUNT_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

#include "core/hmap.h"

struct pool_link {
	struct pool_link *prev, *next;
	uint64_t since; /* loop time it went idle */
};

struct pool;

struct pool_dst {
	struct shunt_addr dst; /* normalised: the hash key */
	struct pool *root;     /* the pool it is in */
	struct pool_link idle; /* ring head; next is the most recently used */
	size_t n_idle;
	size_t open;	      /* every connection to dst, in any state */
	struct pool_link mux; /* ring head: sessions with room for a stream */
	size_t n_mux;
	/* Does dst speak HTTP/2? What its last session showed (h2up.c),
	 * until h2_until (loop time); the entry is kept that long. */
	enum { POOL_H2_UNKNOWN, POOL_H2_YES, POOL_H2_NO } h2;
	uint64_t h2_until;
	uint32_t h2_max_streams; /* its last SETTINGS_MAX_CONCURRENT_STREAMS; 0: none seen */
};

struct pool {
	struct hmap by_dst; /* normalised struct shunt_addr -> struct pool_dst */
	/* Where its connections are made: the agent's own network
	 * namespace, or (in_pod) the namespace nsfd of a pod served in-pod,
	 * which has a pool of its own. */
	bool in_pod;
	int nsfd;
};

/* The entry of dst, created when asked; NULL when absent (or out of
 * memory when create). An entry lives while it has open connections;
 * pool_sweep() forgets empty ones. */
struct pool_dst *pool_dst_get(struct pool *pl, const struct shunt_addr *dst, bool create);

/* Idle connections: push the one just released (now: loop time), pop the
 * most recently used, or take one out wherever it is. */
void pool_idle_push(struct pool_dst *d, struct pool_link *l, uint64_t now);
struct pool_link *pool_idle_pop(struct pool_dst *d);
void pool_idle_remove(struct pool_dst *d, struct pool_link *l);

/* Close (through close_fn, which must pool_idle_remove it) every
 * connection idle for more than idle_ms, then forget entries with nothing
 * open. close_all: every idle connection, whatever its age (draining,
 * stopping). */
void pool_sweep(struct pool *pl, uint64_t now, uint64_t idle_ms, bool close_all,
		void (*close_fn)(struct pool_link *l));

/* Free every entry; their connections must be closed already. */
void pool_free(struct pool *pl);

#endif /* SHUNT_POOL_H */
