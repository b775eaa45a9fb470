/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/kernel/cgpeers.c: which routes a socket-level load
 * balancer running first would leave unreachable. */
#include <stdbool.h>
#include <string.h>

#include <criterion/criterion.h>

#include "kernel/cgpeers.h"
#include "core/util.h"

static struct shunt_route_key keys[8];
static struct shunt_route vals[8];
static size_t n;

static void route(const char *svc, const char *key, const char *to)
{
	memset(&keys[n], 0, sizeof(keys[n]));
	memset(&vals[n], 0, sizeof(vals[n]));
	cr_assert_eq(parse_addr_port(svc, &keys[n].service), 0, "%s", svc);
	cr_assert_eq(parse_addr_port(to, &vals[n].to), 0, "%s", to);
	strcpy(keys[n].key, key);
	n++;
}

static long lone_of(bool *lone)
{
	memset(lone, 0x5a, n * sizeof(*lone));
	return routes_lone_address(keys, vals, n, lone);
}

Test(cgpeers, a_route_on_one_address_is_lone)
{
	bool lone[8];

	n = 0;
	route("10.96.0.10:80", "dev-a", "10.244.1.7:8080");
	cr_assert_eq(lone_of(lone), 1);
	cr_assert(lone[0]);
	cr_assert_eq(routes_lone_address(keys, vals, 0, lone), 0);
}

/* What Kubernetes mode installs for one SandboxRoute: the ClusterIP and
 * each ready endpoint, one key, one sandbox. */
Test(cgpeers, clusterip_and_endpoints_back_each_other_up)
{
	bool lone[8];

	n = 0;
	route("10.96.0.10:80", "dev-a", "10.244.1.7:8080");
	route("10.244.2.1:8080", "dev-a", "10.244.1.7:8080");
	route("10.244.3.1:8080", "dev-a", "10.244.1.7:8080");
	/* another key on the same ClusterIP, no endpoint route: lone */
	route("10.96.0.10:80", "dev-b", "10.244.1.8:8080");
	/* the same key to another sandbox: its own group, lone */
	route("10.96.0.12:80", "dev-a", "10.244.1.9:8080");
	/* two ports of one address do not back each other up */
	route("10.96.0.13:80", "dev-c", "10.244.1.7:8080");
	route("10.96.0.13:443", "dev-c", "10.244.1.7:8080");
	/* IPv6: a different address of the same key and sandbox */
	route("[fd00::10]:80", "dev-d", "[fd00::7]:8080");
	cr_assert_eq(lone_of(lone), 5);
	cr_assert(!lone[0] && !lone[1] && !lone[2]);
	cr_assert(lone[3]);
	cr_assert(lone[4]);
	cr_assert(lone[5] && lone[6]);
	cr_assert(lone[7]);
}

Test(cgpeers, the_sandbox_port_matters)
{
	bool lone[8];

	n = 0;
	route("10.96.0.10:80", "dev-a", "10.244.1.7:8080");
	route("10.244.2.1:8080", "dev-a", "10.244.1.7:9090");
	cr_assert_eq(lone_of(lone), 2);
	route("10.244.2.2:8080", "dev-a", "10.244.1.7:9090");
	cr_assert_eq(lone_of(lone), 1);
	cr_assert(lone[0] && !lone[1] && !lone[2]);
}
