/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests of the protocol-free routing decision: header fields and the
 * original destination in, destination and reason out.
 */
#include <string.h>
#include <criterion/criterion.h>

#include "core/util.h"
#include "proxy/route.h"
#include "state/dstguard.h"
#include "state/routes.h"

static struct route_table *t;
static struct dstguard g;
static struct rk_config rk;
static struct shunt_addr svc;

static struct shunt_addr A(const char *s) {
	struct shunt_addr a;

	cr_assert_eq(parse_addr_port(s, &a), 0, "%s", s);
	return a;
}

static void
add_route(const char *key, const char *to, uint32_t flags, uint64_t expires)
{
	struct shunt_route_key k;
	struct shunt_route v;

	memset(&v, 0, sizeof(v));
	v.to = A(to);
	v.flags = flags;
	v.expires_unix = expires;
	route_key_make(&k, &svc, key, strlen(key));
	cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
}

static void setup(void)
{
	struct shunt_addr proxy[1] = {A("10.0.0.5:15001")};
	struct shunt_addr node[1];

	cr_assert_eq(parse_addr("10.0.0.5", &node[0]), 0);
	t = route_table_new();
	cr_assert_not_null(t);
	dstguard_init(&g, proxy, 1);
	cr_assert_eq(dstguard_set_node(&g, node, 1), 0);
	rk_config_default(&rk);
	svc = A("10.96.0.10:80");
	add_route("dev-a", "10.244.1.7:8080", 0, 0);
	add_route("dev-fb", "10.244.1.8:8080", SHUNT_ROUTE_FALLBACK_BASELINE, 0);
	add_route("dev-old", "10.244.1.9:8080", 0, 1000);
	add_route("dev-node", "10.0.0.5:8080", 0, 0);
	add_route("dev-lo", "127.0.0.1:8080", 0, 0);
}

static void teardown(void)
{
	route_table_free(t);
	t = NULL;
	dstguard_close(&g);
}

/* Decide for a request carrying one header (name == NULL: none). */
static void decide(const char *name, const char *value, const struct shunt_addr *orig,
		   struct route_decision *rd, char *key)
{
	struct http_header h = {name, name ? strlen(name) : 0, value, value ? strlen(value) : 0};
	struct route_input in = {
		.rk = &rk,
		.hdrs = &h,
		.n_hdrs = name ? 1 : 0,
		.orig = orig,
		.t = t,
		.guard = &g,
		.now_unix = 2000,
	};

	route_decide(&in, rd, key, SHUNT_ROUTE_KEY_LEN);
}

/* cppcheck-suppress unknownMacro */
TestSuite(route_decision, .init = setup, .fini = teardown);

Test(route_decision, no_key_goes_to_the_original_destination)
{
	struct route_decision rd;
	char key[SHUNT_ROUTE_KEY_LEN];

	decide(NULL, NULL, &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_NO_KEY);
	cr_assert(addr_equal(&rd.dst, &svc));
	cr_assert_not(rd.to_sandbox);
	cr_assert_str_eq(key, "");
	decide("accept", "*/*", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_NO_KEY);
	cr_assert(addr_equal(&rd.dst, &svc));
}

Test(route_decision, key_without_route_goes_to_the_original_destination)
{
	struct route_decision rd;
	char key[SHUNT_ROUTE_KEY_LEN];
	struct shunt_addr other = A("10.96.0.11:80");

	decide("baggage", "sd-routing-key=dev-b", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_NO_ROUTE);
	cr_assert(addr_equal(&rd.dst, &svc));
	cr_assert_str_eq(key, "dev-b");
	/* A route is per service: dev-a on another service has none. */
	decide("baggage", "sd-routing-key=dev-a", &other, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_NO_ROUTE);
	cr_assert(addr_equal(&rd.dst, &other));
	cr_assert_not(rd.to_sandbox);
}

Test(route_decision, key_with_route_goes_to_the_sandbox)
{
	struct route_decision rd;
	char key[SHUNT_ROUTE_KEY_LEN];
	struct shunt_addr sb = A("10.244.1.7:8080");

	decide("baggage", "sd-routing-key=dev-a", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_SANDBOX);
	cr_assert(addr_equal(&rd.dst, &sb));
	cr_assert(rd.to_sandbox);
	cr_assert_not(rd.fallback);
	cr_assert_str_eq(key, "dev-a");
	decide("ot-baggage-sd-routing-key", "dev-a", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_SANDBOX);
	decide("baggage", "sd-routing-key=dev-fb", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_SANDBOX);
	cr_assert(rd.fallback);
	cr_assert_str_eq(route_reason_name(rd.reason), "sandbox");
}

Test(route_decision, expired_route_is_no_route)
{
	struct route_decision rd;
	char key[SHUNT_ROUTE_KEY_LEN];

	decide("baggage", "sd-routing-key=dev-old", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_NO_ROUTE);
	cr_assert(addr_equal(&rd.dst, &svc));
	cr_assert_not(rd.to_sandbox);
}

Test(route_decision, unusable_key_routes_like_no_key)
{
	struct route_decision rd;
	char key[SHUNT_ROUTE_KEY_LEN];

	decide("baggage", "sd-routing-key=dev%zz", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_BAD_KEY);
	cr_assert(addr_equal(&rd.dst, &svc));
	cr_assert_not(rd.to_sandbox);
	cr_assert_str_eq(key, "");
}

Test(route_decision, refused_destination)
{
	struct route_decision rd;
	char key[SHUNT_ROUTE_KEY_LEN];
	struct shunt_addr lo = A("127.0.0.1:80");

	/* A route to the node: still a sandbox request, but refused. */
	decide("baggage", "sd-routing-key=dev-node", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_REFUSED);
	cr_assert_eq(rd.refused, DST_NODE);
	cr_assert(rd.to_sandbox);
	decide("baggage", "sd-routing-key=dev-lo", &svc, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_REFUSED);
	cr_assert_eq(rd.refused, DST_LOOPBACK);
	/* An original destination that is the node, without a key. */
	decide(NULL, NULL, &lo, &rd, key);
	cr_assert_eq(rd.reason, ROUTE_REFUSED);
	cr_assert_not(rd.to_sandbox);
	/* No guard: the node's addresses are not known, loopback still is. */
	{
		struct shunt_addr node = A("10.0.0.5:80");
		struct route_input in = {.rk = &rk, .orig = &node, .t = t, .now_unix = 1};

		route_decide(&in, &rd, key, sizeof(key));
		cr_assert_eq(rd.reason, ROUTE_NO_KEY);
	}
}
