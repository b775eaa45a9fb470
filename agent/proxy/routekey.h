/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Routing-key extraction from a parsed HTTP request head. The formats are
 * those OpenTelemetry and existing sandbox tooling propagate:
 *   baggage: k1=v1, sd-routing-key=dev-a;prop=1, k3=v3    (W3C baggage)
 *   tracestate: vendor=x, sd-routing-key=dev-a             (W3C tracestate)
 *   ot-baggage-sd-routing-key: dev-a                       (OpenTracing)
 *   uberctx-sd-routing-key: dev-a                          (Jaeger)
 * Header and member names are configurable and compared case-insensitively.
 */
#ifndef SHUNT_ROUTEKEY_H
#define SHUNT_ROUTEKEY_H

#include <stddef.h>
#include <shunt/shunt.h>

/* One header line of a request head; not NUL-terminated. */
struct http_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

#define RK_NAME_MAX   128
#define RK_MAX_DIRECT 4

struct rk_config {
	char baggage_header[RK_NAME_MAX];    /* "" disables; default "baggage" */
	char tracestate_header[RK_NAME_MAX]; /* "" disables; default "tracestate" */
	char member[RK_NAME_MAX];	     /* default "sd-routing-key" */
	/* Headers whose whole value is the key; default
	 * "ot-baggage-sd-routing-key" and "uberctx-sd-routing-key". */
	char direct[RK_MAX_DIRECT][RK_NAME_MAX];
	size_t n_direct;
};

void rk_config_default(struct rk_config *cfg);

/* Search, in this order of precedence: baggage (every baggage header line,
 * in order), tracestate, then each direct header in configured order; the
 * first occurrence wins. Values are trimmed of optional whitespace;
 * baggage values are percent-decoded; properties after ';' are ignored.
 *
 * Returns the key length (> 0) with the key NUL-terminated in out
 * (outsz >= SHUNT_ROUTE_KEY_LEN), 0 when the request carries no key, or
 * -EINVAL when the first key found is unusable: empty, longer than
 * SHUNT_ROUTE_KEY_LEN - 1, bad percent-encoding, or containing bytes
 * outside visible ASCII (0x21..0x7e) or any of  , ; = " \  .
 * Never reads outside the given spans. */
int rk_extract(const struct rk_config *cfg, const struct http_header *hdrs, size_t n, char *out,
	       size_t outsz);

#endif /* SHUNT_ROUTEKEY_H */
