// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The routing decision (see route.h).
 */
#include <string.h>
#include <time.h>

#include "proxy/route.h"
#include "state/routes.h"

/* The live route for (orig, key), or NULL: an expired one is left for the
 * sweeper and routes like none. */
static const struct shunt_route *live_route(const struct route_input *in, const char *key,
					    size_t klen)
{
	const struct shunt_route *r = route_table_get(in->t, in->orig, key, klen);
	uint64_t now;

	if (!r || !r->expires_unix)
		return r;
	now = in->now_unix ? in->now_unix : (uint64_t)time(NULL);
	return r->expires_unix <= now ? NULL : r;
}

void route_decide(const struct route_input *in, struct route_decision *out, char *key, size_t keysz)
{
	const struct shunt_route *r = NULL;
	int klen;

	memset(out, 0, sizeof(*out));
	klen = rk_extract(in->rk, in->hdrs, in->n_hdrs, key, keysz);
	if (klen < 0) {
		key[0] = '\0';
		out->reason = ROUTE_BAD_KEY;
	} else if (klen == 0) {
		out->reason = ROUTE_NO_KEY;
	} else {
		r = live_route(in, key, (size_t)klen);
		out->reason = r ? ROUTE_SANDBOX : ROUTE_NO_ROUTE;
	}
	if (r) {
		out->dst = r->to;
		out->to_sandbox = true;
		out->fallback = r->flags & SHUNT_ROUTE_FALLBACK_BASELINE;
	} else {
		out->dst = *in->orig;
	}
	out->refused = dstguard_check(in->guard, &out->dst);
	if (out->refused != DST_OK)
		out->reason = ROUTE_REFUSED;
}

const char *route_reason_name(enum route_reason r)
{
	switch (r) {
	case ROUTE_NO_KEY:
		return "no-key";
	case ROUTE_BAD_KEY:
		return "bad-key";
	case ROUTE_NO_ROUTE:
		return "no-route";
	case ROUTE_SANDBOX:
		return "sandbox";
	case ROUTE_REFUSED:
		return "refused";
	}
	return "?";
}
