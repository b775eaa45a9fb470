/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/state/dstguard.c and the route store's use of it: shunt
 * never sends traffic to the node, whatever the source of the route. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "state/config.h"
#include "state/dstguard.h"
#include "state/routes.h"
#include "state/store.h"
#include "core/util.h"

static struct shunt_addr A(const char *s) {
	struct shunt_addr a;

	/* "IP:PORT", "[IPv6]:PORT", or an address alone (port 0). */
	if (parse_addr_port(s, &a) == 0)
		return a;
	cr_assert_eq(parse_addr(s, &a), 0, "%s", s);
	return a;
}

static enum dst_class
cls(const char *s)
{
	struct shunt_addr a = A(s);

	return dst_classify(&a);
}

Test(dstguard, classify_v4_by_value)
{
	cr_expect_eq(cls("0.0.0.0"), DST_UNSPECIFIED);
	cr_expect_eq(cls("0.1.2.3"), DST_UNSPECIFIED);
	cr_expect_eq(cls("127.0.0.1"), DST_LOOPBACK);
	cr_expect_eq(cls("127.255.255.254"), DST_LOOPBACK);
	cr_expect_eq(cls("169.254.169.254"), DST_LINK_LOCAL);
	cr_expect_eq(cls("169.254.0.0"), DST_LINK_LOCAL);
	cr_expect_eq(cls("224.0.0.1"), DST_MULTICAST);
	cr_expect_eq(cls("239.255.255.255"), DST_MULTICAST);
	cr_expect_eq(cls("255.255.255.255"), DST_BROADCAST);
	/* Neighbours of each range are ordinary addresses. */
	cr_expect_eq(cls("1.0.0.0"), DST_OK);
	cr_expect_eq(cls("126.255.255.255"), DST_OK);
	cr_expect_eq(cls("128.0.0.0"), DST_OK);
	cr_expect_eq(cls("169.253.255.255"), DST_OK);
	cr_expect_eq(cls("169.255.0.0"), DST_OK);
	cr_expect_eq(cls("223.255.255.255"), DST_OK);
	cr_expect_eq(cls("10.96.0.10"), DST_OK);
	cr_expect_eq(cls("255.255.255.254"), DST_OK);
}

Test(dstguard, classify_v6_by_value)
{
	cr_expect_eq(cls("::"), DST_UNSPECIFIED);
	cr_expect_eq(cls("::1"), DST_LOOPBACK);
	cr_expect_eq(cls("fe80::1"), DST_LINK_LOCAL);
	cr_expect_eq(cls("febf:ffff::1"), DST_LINK_LOCAL);
	cr_expect_eq(cls("ff02::1"), DST_MULTICAST);
	cr_expect_eq(cls("fec0::1"), DST_OK);
	cr_expect_eq(cls("fe7f::1"), DST_OK);
	cr_expect_eq(cls("::2"), DST_OK);
	cr_expect_eq(cls("fd00::10"), DST_OK);
	/* A v4-mapped address is its IPv4 form (parse_addr makes it V4). */
	cr_expect_eq(cls("::ffff:127.0.0.1"), DST_LOOPBACK);
	cr_expect_eq(cls("::ffff:169.254.169.254"), DST_LINK_LOCAL);
	cr_expect_eq(cls("::ffff:10.0.0.1"), DST_OK);
}

static struct dstguard g;

static void guard_setup(void)
{
	struct shunt_addr proxy[2] = {A("10.0.0.5:15001"), A("[fd00::5]:15001")};
	struct shunt_addr node[40];
	size_t n = 0;

	dstguard_init(&g, proxy, 2);
	/* Many addresses, out of order, one twice: the set is sorted and
	 * searched. */
	for (int i = 39; i >= 4; i--) {
		char s[32];

		snprintf(s, sizeof(s), "10.1.%d.1", i);
		node[n++] = A(s);
	}
	node[n++] = A("192.168.7.9");
	node[n++] = A("fd00:99::1");
	node[n++] = A("192.168.7.9");
	node[n] = A("192.168.7.255");
	node[n++].pad = 1; /* a subnet broadcast, as dstguard_refresh marks it */
	cr_assert_eq(dstguard_set_node(&g, node, n), 0);
	cr_assert_eq(g.n_node, n - 1, "the duplicate is dropped");
}

static void guard_teardown(void)
{
	dstguard_close(&g);
}

Test(dstguard, node_and_proxy_addresses)
{
	struct shunt_addr a;

	guard_setup();
	a = A("192.168.7.9:22");
	cr_expect_eq(dstguard_check(&g, &a), DST_NODE, "any port of a node address");
	a = A("10.1.4.1:80");
	cr_expect_eq(dstguard_check(&g, &a), DST_NODE);
	a = A("10.1.39.1:80");
	cr_expect_eq(dstguard_check(&g, &a), DST_NODE);
	a = A("10.1.40.1:80");
	cr_expect_eq(dstguard_check(&g, &a), DST_OK);
	a = A("[fd00:99::1]:80");
	cr_expect_eq(dstguard_check(&g, &a), DST_NODE);
	a = A("192.168.7.255:80");
	cr_expect_eq(dstguard_check(&g, &a), DST_BROADCAST);
	a = A("10.0.0.5:15001");
	cr_expect_eq(dstguard_check(&g, &a), DST_PROXY, "the proxy's endpoint");
	a = A("10.0.0.5:8080");
	cr_expect_eq(dstguard_check(&g, &a), DST_OK, "not a node address, another port");
	a = A("[fd00::5]:15001");
	cr_expect_eq(dstguard_check(&g, &a), DST_PROXY);
	a = A("127.0.0.1:80");
	cr_expect_eq(dstguard_check(&g, &a), DST_LOOPBACK);
	a = A("10.244.1.7:8080");
	cr_expect_eq(dstguard_check(&g, &a), DST_OK);
	cr_expect_eq(dstguard_check(NULL, &a), DST_OK);
	a = A("127.0.0.1:80");
	cr_expect_eq(dstguard_check(NULL, &a), DST_LOOPBACK, "no guard still knows loopback");
	guard_teardown();
}

Test(dstguard, refusal_message)
{
	struct shunt_addr a = A("169.254.169.254:80");
	char err[256];

	cr_assert_eq(dstguard_refusal(err, sizeof(err), "sandbox", &a, dst_classify(&a)), -EACCES);
	cr_expect_str_eq(err,
			 "sandbox 169.254.169.254:80 is a link-local address (such as a cloud's "
			 "metadata service): shunt never sends traffic to the node");
	a.port = 0;
	dstguard_refusal(err, sizeof(err), "override target", &a, DST_NODE);
	cr_expect_str_eq(err, "override target 169.254.169.254 is an address of this node: shunt "
			      "never sends traffic to the node");
}

Test(dstguard, refresh_reads_this_namespace)
{
	struct shunt_addr lo = A("127.0.0.1:80");

	guard_setup();
	/* Every namespace has lo: 127.0.0.1 is read as a node address (and
	 * is refused as loopback before that matters). */
	cr_assert_eq(dstguard_refresh(&g), 0);
	cr_expect_eq(dstguard_check(&g, &lo), DST_LOOPBACK);
	cr_expect_neq(g.refreshed_ms, 0);
	guard_teardown();
}

/* ---- the route store refuses them from every source ---------------------- */

static struct store st;

static void store_setup(void)
{
	guard_setup();
	g.n_proxy = 1; /* IPv4 only: IPv6 services cannot be steered */
	cr_assert_eq(store_init(&st, -1, -1, -1, 1000, &g), 0);
}

static void store_teardown(void)
{
	store_free(&st);
	guard_teardown();
}

static int add(const char *svc, const char *key, const char *to, char *err)
{
	struct shunt_addr s = A(svc);
	struct shunt_route_key k;
	struct shunt_route v = {.to = A(to)};

	route_key_make(&k, &s, key, strlen(key));
	return store_add(&st, &k, &v, err, 256);
}

Test(store_guard, routes_to_the_node_are_refused)
{
	char err[256];

	store_setup();
	cr_expect_eq(add("10.96.0.10:80", "k", "127.0.0.1:8080", err), -EACCES);
	cr_expect_str_eq(err, "sandbox 127.0.0.1:8080 is a loopback address (the node itself): "
			      "shunt never sends traffic to the node");
	cr_expect_eq(add("10.96.0.10:80", "k", "169.254.169.254:80", err), -EACCES);
	cr_expect_eq(add("10.96.0.10:80", "k", "192.168.7.9:10250", err), -EACCES);
	cr_expect(strstr(err, "an address of this node"), "%s", err);
	cr_expect_eq(add("10.96.0.10:80", "k", "10.0.0.5:15001", err), -EACCES);
	cr_expect(strstr(err, "the proxy's own listen address"), "%s", err);
	cr_expect_eq(add("10.96.0.10:80", "k", "0.0.0.0:80", err), -EACCES);
	cr_expect_eq(add("10.96.0.10:80", "k", "224.0.0.1:80", err), -EACCES);
	cr_expect_eq(add("10.96.0.10:80", "k", "192.168.7.255:80", err), -EACCES);
	/* The captured service too: the proxy dials it for unrouted requests. */
	cr_expect_eq(add("127.0.0.1:80", "k", "10.244.1.7:8080", err), -EACCES);
	cr_expect_str_eq(err, "service 127.0.0.1:80 is a loopback address (the node itself): "
			      "shunt never sends traffic to the node");
	cr_expect_eq(add("192.168.7.9:22", "k", "10.244.1.7:8080", err), -EACCES);
	/* No IPv6 proxy: an IPv6 service cannot be steered. */
	cr_expect_eq(add("[fd00::10]:80", "k", "[fd00::7]:8080", err), -EAFNOSUPPORT);
	cr_expect_str_eq(err, "service [fd00::10]:80 is IPv6 and the proxy has no IPv6 address "
			      "(--proxy-addr): it cannot be steered");
	cr_expect_eq(route_table_count(st.t), 0, "nothing refused went in");
	cr_expect_eq(add("10.96.0.10:80", "k", "10.244.1.7:8080", err), 0, "%s", err);
	cr_expect_eq(route_table_count(st.t), 1);
	store_teardown();
}

Test(store_guard, kubernetes_and_set_aside_routes_too)
{
	struct shunt_addr svc = A("10.96.0.10:80");
	struct shunt_route_key k;
	struct shunt_route kv = {.to = A("10.244.1.7:8080"), .flags = SHUNT_ROUTE_FROM_K8S};
	struct shunt_route bad = {.to = A("127.0.0.1:8080"), .flags = SHUNT_ROUTE_FROM_K8S};
	struct shunt_route local = {.to = A("169.254.169.254:80")};
	char err[256];
	bool shadowed;

	store_setup();
	route_key_make(&k, &svc, "k", 1);
	cr_expect_eq(store_k8s_put(&st, &k, &bad, err, sizeof(err)), -EACCES);
	cr_assert_eq(store_k8s_put(&st, &k, &kv, err, sizeof(err)), 0, "%s", err);
	/* An API route for the same key would be kept aside until the
	 * Kubernetes one goes: it is refused now, not when it comes back. */
	cr_expect_eq(store_add_local(&st, &k, &local, &shadowed, err, sizeof(err)), -EACCES);
	cr_expect_eq(store_k8s_del(&st, &k), 0);
	cr_expect_eq(route_table_count(st.t), 0, "no refused route came back");
	store_teardown();
}

Test(store_guard, override_targets)
{
	struct shunt_override_key k = {.src_kind = SHUNT_SRC_CGROUP, .src_id = 7};
	struct shunt_override v = {.from = "cgroup:/x"};
	char err[256];

	store_setup();
	k.dst = A("10.96.0.50:5432");
	v.to = A("127.0.0.1:5432");
	cr_expect_eq(store_ovr_add(&st, &k, &v, err, sizeof(err)), -EACCES);
	cr_expect_str_eq(err, "override target 127.0.0.1:5432 is a loopback address (the node "
			      "itself): shunt never sends traffic to the node");
	v.to = A("192.168.7.9:5432");
	cr_expect_eq(store_ovr_add(&st, &k, &v, err, sizeof(err)), -EACCES);
	cr_expect_eq(st.novr, 0);
	/* The destination a pod asks for is its own: only the target counts. */
	k.dst = A("169.254.20.10:53");
	v.to = A("10.244.1.9:53");
	cr_expect_eq(store_ovr_add(&st, &k, &v, err, sizeof(err)), 0, "%s", err);
	store_teardown();
}

Test(store_guard, routes_file_refused_whole_with_its_line)
{
	static const char good[] = "route 10.96.0.10:80 dev-a 10.244.1.7:8080\n";
	static const char bad[] = "route 10.96.0.10:80 dev-a 10.244.1.7:8080\n"
				  "route 10.96.0.11:80 dev-b 10.244.1.8:8080\n"
				  "route 10.96.0.12:80 dev-c 127.0.0.1:8080\n";
	struct config cfg = {};
	char err[512];

	store_setup();
	cr_assert_eq(config_parse("r.conf", good, strlen(good), &cfg, err, sizeof(err)), 0);
	cr_assert_eq(store_apply_file(&st, &cfg, 1000, err, sizeof(err)), 0, "%s", err);
	config_free(&cfg);
	cr_assert_eq(config_parse("r.conf", bad, strlen(bad), &cfg, err, sizeof(err)), 0);
	cr_expect_eq(store_apply_file(&st, &cfg, 1000, err, sizeof(err)), -EACCES);
	cr_expect_str_eq(err, "line 3: sandbox 127.0.0.1:8080 is a loopback address (the node "
			      "itself): shunt never sends traffic to the node");
	config_free(&cfg);
	/* Nothing changed: the previous file's route alone. */
	cr_expect_eq(route_table_count(st.t), 1);
	store_teardown();
}
