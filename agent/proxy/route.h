/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The routing decision: where one request goes. Protocol-free: it sees a
 * request's header fields (name/value spans, however the protocol carried
 * them), the connection's original destination and the route table, and
 * answers a destination and why. HTTP/1 calls it once per request head;
 * HTTP/2 will call it once per stream. No I/O, no counters: the caller
 * counts and connects.
 *
 * L4 overrides never reach this function: the kernel sends an overridden
 * connection straight to its new destination (SHUNT_ORIG_OVERRIDE), not
 * to the proxy.
 */
#ifndef SHUNT_ROUTE_H
#define SHUNT_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

#include "proxy/routekey.h"
#include "state/dstguard.h"

struct route_table;

enum route_reason {
	ROUTE_NO_KEY,	/* no routing key: the original destination */
	ROUTE_BAD_KEY,	/* a key that cannot be used: routed like no key */
	ROUTE_NO_ROUTE, /* a key without a live route for this service */
	ROUTE_SANDBOX,	/* the route's sandbox */
	ROUTE_REFUSED,	/* the destination is the node itself (dstguard) */
};

struct route_input {
	const struct rk_config *rk;
	const struct http_header *hdrs;
	size_t n_hdrs;
	const struct shunt_addr *orig; /* the captured original destination */
	const struct route_table *t;
	const struct dstguard *guard; /* NULL: refuse by address class only */
	uint64_t now_unix;	      /* 0: read the clock if a route has a TTL */
};

struct route_decision {
	struct shunt_addr dst;
	enum route_reason reason;
	bool to_sandbox;	/* a route matched (also when its sandbox is refused) */
	bool fallback;		/* the route falls back to the baseline */
	enum dst_class refused; /* ROUTE_REFUSED: why */
};

/* Decide; key (keysz >= SHUNT_ROUTE_KEY_LEN) receives the routing key,
 * NUL-terminated, "" when there is none or it is unusable. */
void route_decide(const struct route_input *in, struct route_decision *out, char *key,
		  size_t keysz);

/* "sandbox", "no-key", ...: for logs and tests. */
const char *route_reason_name(enum route_reason r);

#endif /* SHUNT_ROUTE_H */
