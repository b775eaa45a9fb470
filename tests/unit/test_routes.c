/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/state/routes.c: the in-memory route index. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "addr_helpers.h"

#include "state/routes.h"

static struct shunt_addr svc4(uint32_t ip, uint16_t port)
{
	struct shunt_addr a;

	memset(&a, 0, sizeof(a));
	a.family = SHUNT_FAMILY_V4;
	addr_set_w(&a, 0, htonl(ip));
	a.port = port;
	return a;
}

static struct shunt_addr svc6(uint32_t last, uint16_t port)
{
	struct shunt_addr a;

	memset(&a, 0, sizeof(a));
	a.family = SHUNT_FAMILY_V6;
	addr_set_w(&a, 0, htonl(0xfd000000));
	addr_set_w(&a, 3, htonl(last));
	a.port = port;
	return a;
}

static struct shunt_route_key rkey(const struct shunt_addr *svc, const char *key)
{
	struct shunt_route_key k;

	route_key_make(&k, svc, key, strlen(key));
	return k;
}

static struct shunt_route rval(uint32_t to_ip, uint32_t flags)
{
	struct shunt_route v;

	memset(&v, 0, sizeof(v));
	v.to = svc4(to_ip, 8080);
	v.flags = flags;
	return v;
}

static struct route_table *t;

static void setup(void)
{
	t = route_table_new();
	cr_assert_not_null(t);
}

static void teardown(void)
{
	route_table_free(t);
	t = NULL;
}

Test(routes_key, make_is_canonical)
{
	struct shunt_addr svc = svc4(0x0a000001, 80), junk = svc;
	struct shunt_route_key a, b;
	char want[SHUNT_ROUTE_KEY_LEN] = "dev-a";

	memset(&a, 0xff, sizeof(a));
	route_key_make(&a, &svc, "dev-a", 5);
	cr_assert(memcmp(a.key, want, sizeof(want)) == 0, "key not NUL-padded");
	cr_assert(memcmp(&a.service, &svc, sizeof(svc)) == 0);

	/* Junk in bytes an IPv4 address does not use is dropped. */
	addr_set_w(&junk, 2, 0x12345678);
	junk.pad = 9;
	memset(&b, 0, sizeof(b));
	route_key_make(&b, &junk, "dev-a", 5);
	cr_assert(memcmp(&a, &b, sizeof(a)) == 0);

	/* keylen counts, not the NUL: "dev-abc" with 5 is "dev-a". */
	route_key_make(&b, &svc, "dev-abc", 5);
	cr_assert(memcmp(&a, &b, sizeof(a)) == 0);

	/* An embedded NUL ends the key. */
	route_key_make(&b, &svc, "dev-a\0zz", 8);
	cr_assert(memcmp(&a, &b, sizeof(a)) == 0);
}

Test(routes_key, make_truncates)
{
	struct shunt_addr svc = svc6(1, 443);
	struct shunt_route_key k;
	char longkey[200];

	memset(longkey, 'k', sizeof(longkey));
	route_key_make(&k, &svc, longkey, sizeof(longkey));
	cr_assert_eq(strnlen(k.key, sizeof(k.key)), SHUNT_ROUTE_KEY_LEN - 1);
	cr_assert_eq(k.key[SHUNT_ROUTE_KEY_LEN - 1], '\0');

	route_key_make(&k, &svc, NULL, 0);
	cr_assert_eq(k.key[0], '\0');
	cr_assert_eq(k.service.family, SHUNT_FAMILY_V6);
}

Test(routes, empty)
{
	struct shunt_addr svc = svc4(0x0a000001, 80);
	struct shunt_route_key k = rkey(&svc, "a");
	struct shunt_route_key *keys = (void *)1;
	struct shunt_route *vals = (void *)1;

	setup();
	cr_assert_eq(route_table_count(t), 0);
	cr_assert_null(route_table_get(t, &svc, "a", 1));
	cr_assert_eq(route_table_service_count(t, &svc), 0);
	cr_assert_eq(route_table_del(t, &k), -ENOENT);
	cr_assert_eq(route_table_sorted(t, &keys, &vals), 0);
	cr_assert_null(keys);
	cr_assert_null(vals);
	route_table_free(NULL);
	teardown();
}

Test(routes, put_get_replace_del)
{
	struct shunt_addr svc = svc4(0x0a000001, 80);
	struct shunt_route_key k = rkey(&svc, "dev-a"), k2;
	struct shunt_route v1 = rval(0x0a000101, 0), v2 = rval(0x0a000102, 3);
	const struct shunt_route *got;
	int created = -1;

	setup();
	cr_assert_eq(route_table_put(t, &k, &v1, &created), 0);
	cr_assert_eq(created, 1);
	cr_assert_eq(route_table_count(t), 1);
	cr_assert_eq(route_table_service_count(t, &svc), 1);

	got = route_table_get(t, &svc, "dev-a", 5);
	cr_assert_not_null(got);
	cr_assert(memcmp(got, &v1, sizeof(v1)) == 0);

	/* Lookups take a span that need not be NUL-terminated. */
	cr_assert_not_null(route_table_get(t, &svc, "dev-a;more", 5));
	cr_assert_null(route_table_get(t, &svc, "dev-", 4));
	cr_assert_null(route_table_get(t, &svc, "dev-ab", 6));
	cr_assert_null(route_table_get(t, &svc, "", 0));

	cr_assert_eq(route_table_put(t, &k, &v2, &created), 0);
	cr_assert_eq(created, 0);
	cr_assert_eq(route_table_count(t), 1);
	cr_assert_eq(route_table_service_count(t, &svc), 1, "replace counted twice");
	got = route_table_get(t, &svc, "dev-a", 5);
	cr_assert_eq(got->flags, 3);
	cr_assert_eq(addr_w(&got->to, 0), addr_w(&v2.to, 0));

	/* created may be NULL. */
	cr_assert_eq(route_table_put(t, &k, &v1, NULL), 0);

	/* Counts per service go up and down one route at a time. */
	k2 = rkey(&svc, "dev-b");
	cr_assert_eq(route_table_put(t, &k2, &v1, &created), 0);
	cr_assert_eq(created, 1);
	cr_assert_eq(route_table_service_count(t, &svc), 2);
	cr_assert_eq(route_table_del(t, &k2), 0);
	cr_assert_eq(route_table_service_count(t, &svc), 1);
	cr_assert_eq(route_table_count(t), 1);

	cr_assert_eq(route_table_del(t, &k), 0);
	cr_assert_null(route_table_get(t, &svc, "dev-a", 5));
	cr_assert_eq(route_table_count(t), 0);
	cr_assert_eq(route_table_service_count(t, &svc), 0);
	cr_assert_eq(route_table_del(t, &k), -ENOENT);
	teardown();
}

Test(routes, service_and_key_both_matter)
{
	struct shunt_addr a = svc4(0x0a000001, 80), b = svc4(0x0a000001, 81);
	struct shunt_addr c = svc6(0x0a000001, 80), d = svc4(0x0a000002, 80);
	struct shunt_route_key k;
	struct shunt_route v = rval(1, 0);
	const struct shunt_route *got;

	setup();
	k = rkey(&a, "x");
	v.flags = 1;
	cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
	k = rkey(&b, "x");
	v.flags = 2;
	cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
	k = rkey(&c, "x");
	v.flags = 3;
	cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
	k = rkey(&a, "y");
	v.flags = 4;
	cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);

	cr_assert_eq(route_table_count(t), 4);
	cr_assert_eq(route_table_get(t, &a, "x", 1)->flags, 1);
	cr_assert_eq(route_table_get(t, &b, "x", 1)->flags, 2);
	cr_assert_eq(route_table_get(t, &c, "x", 1)->flags, 3);
	cr_assert_eq(route_table_get(t, &a, "y", 1)->flags, 4);
	cr_assert_null(route_table_get(t, &d, "x", 1));
	cr_assert_null(route_table_get(t, &b, "y", 1));

	cr_assert_eq(route_table_service_count(t, &a), 2);
	cr_assert_eq(route_table_service_count(t, &b), 1);
	cr_assert_eq(route_table_service_count(t, &c), 1);
	cr_assert_eq(route_table_service_count(t, &d), 0);

	/* A lookup address with junk in unused bytes still matches. */
	d = a;
	addr_set_w(&d, 1, 0xffffffff);
	d.pad = 1;
	got = route_table_get(t, &d, "x", 1);
	cr_assert_not_null(got);
	cr_assert_eq(got->flags, 1);
	cr_assert_eq(route_table_service_count(t, &d), 2);
	teardown();
}

Test(routes, long_lookup_key_is_not_truncated)
{
	struct shunt_addr svc = svc4(0x0a000001, 80);
	char longkey[SHUNT_ROUTE_KEY_LEN + 10];
	struct shunt_route_key k;
	struct shunt_route v = rval(1, 0);

	setup();
	memset(longkey, 'a', sizeof(longkey));
	route_key_make(&k, &svc, longkey, SHUNT_ROUTE_KEY_LEN - 1);
	cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
	cr_assert_not_null(route_table_get(t, &svc, longkey, SHUNT_ROUTE_KEY_LEN - 1));
	cr_assert_null(route_table_get(t, &svc, longkey, SHUNT_ROUTE_KEY_LEN));
	cr_assert_null(route_table_get(t, &svc, longkey, sizeof(longkey)));
	teardown();
}

Test(routes, put_from_own_pointer)
{
	struct shunt_addr svc = svc4(0x0a000001, 80);
	struct shunt_route_key k = rkey(&svc, "self");
	struct shunt_route v = rval(7, 1);
	const struct shunt_route *got;
	int created;

	setup();
	cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
	got = route_table_get(t, &svc, "self", 4);
	cr_assert_eq(route_table_put(t, &k, got, &created), 0);
	cr_assert_eq(created, 0);
	cr_assert_eq(addr_w(&route_table_get(t, &svc, "self", 4)->to, 0), htonl(7));
	teardown();
}

#define MANY	  10000
#define MANY_SVCS 10

static void many_key(unsigned i, struct shunt_route_key *k, struct shunt_addr *svc)
{
	char key[32];
	int n = snprintf(key, sizeof(key), "key-%u", i);

	*svc = (i % 2) ? svc4(0x0a000000 + i % MANY_SVCS, 80) : svc6(i % MANY_SVCS, 443);
	route_key_make(k, svc, key, (size_t)n);
}

static const struct shunt_route *many_get(unsigned i)
{
	struct shunt_route_key k;
	struct shunt_addr svc;

	many_key(i, &k, &svc);
	return route_table_get(t, &svc, k.key, strlen(k.key));
}

static size_t many_svc_count(unsigned s)
{
	struct shunt_addr svc = (s % 2) ? svc4(0x0a000000 + s, 80) : svc6(s, 443);

	return route_table_service_count(t, &svc);
}

Test(routes, many_entries_grow_and_shrink)
{
	struct shunt_route_key k;
	struct shunt_addr svc;
	struct shunt_route v;
	unsigned i, s;
	int created;

	setup();
	for (i = 0; i < MANY; i++) {
		many_key(i, &k, &svc);
		v = rval(i, 0);
		cr_assert_eq(route_table_put(t, &k, &v, &created), 0);
		cr_assert_eq(created, 1);
		cr_assert_eq(route_table_count(t), i + 1);
	}
	for (i = 0; i < MANY; i++) {
		const struct shunt_route *got = many_get(i);

		cr_assert_not_null(got, "route %u lost after growth", i);
		cr_assert_eq(addr_w(&got->to, 0), htonl(i));
	}
	for (s = 0; s < MANY_SVCS; s++)
		cr_assert_eq(many_svc_count(s), MANY / MANY_SVCS);

	/* Delete every third route; the rest must survive the moves. */
	for (i = 0; i < MANY; i += 3) {
		many_key(i, &k, &svc);
		cr_assert_eq(route_table_del(t, &k), 0, "del %u", i);
	}
	for (i = 0; i < MANY; i++) {
		const struct shunt_route *got = many_get(i);

		if (i % 3 == 0) {
			cr_assert_null(got, "route %u still there", i);
		} else {
			cr_assert_not_null(got, "route %u lost after deletes", i);
			cr_assert_eq(addr_w(&got->to, 0), htonl(i));
		}
	}
	cr_assert_eq(route_table_count(t), MANY - (MANY + 2) / 3);
	for (s = 0; s < MANY_SVCS; s++) {
		size_t want = 0;

		for (i = s; i < MANY; i += MANY_SVCS)
			want += i % 3 != 0;
		cr_assert_eq(many_svc_count(s), want, "service %u", s);
	}

	/* Replace all that are left, then delete everything. */
	for (i = 0; i < MANY; i++) {
		many_key(i, &k, &svc);
		v = rval(i + 1, 0);
		cr_assert_eq(route_table_put(t, &k, &v, &created), 0);
		cr_assert_eq(created, i % 3 == 0);
	}
	cr_assert_eq(route_table_count(t), MANY);
	cr_assert_eq(addr_w(&many_get(4)->to, 0), htonl(5));
	for (i = MANY; i-- > 0;) {
		many_key(i, &k, &svc);
		cr_assert_eq(route_table_del(t, &k), 0);
		cr_assert_eq(route_table_service_count(t, &svc), i / MANY_SVCS,
			     "service count after del %u", i);
	}
	cr_assert_eq(route_table_count(t), 0);
	for (s = 0; s < MANY_SVCS; s++)
		cr_assert_eq(many_svc_count(s), 0);
	cr_assert_null(many_get(1));
	teardown();
}

/* xorshift32: deterministic, so a failure reproduces. */
static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

#define MODEL_KEYS 600
#define MODEL_SVCS 5

/* Random puts, deletes and gets against a plain array: deletions in a
 * linear-probing table are where such tables go wrong. A large key space
 * keeps the table big; a small one keeps per-service counts near zero. */
static void random_ops(unsigned nkeys, uint32_t seed)
{
	static uint32_t model[MODEL_SVCS][MODEL_KEYS]; /* to ip, 0 = absent */
	size_t n = 0, per_svc[MODEL_SVCS] = {0};
	unsigned op, s, i;

	memset(model, 0, sizeof(model));
	for (op = 0; op < 200000; op++) {
		uint32_t r = rnd(&seed);
		struct shunt_addr svc;
		struct shunt_route_key k;
		struct shunt_route v;
		const struct shunt_route *got;
		char key[16];
		int len, created;

		s = r % MODEL_SVCS;
		i = (r >> 8) % nkeys;
		svc = svc4(0xc0000200 + s, 80);
		len = snprintf(key, sizeof(key), "k%u", i);
		route_key_make(&k, &svc, key, (size_t)len);

		switch ((r >> 24) % 3) {
		case 0:
			v = rval(op + 1, 0);
			cr_assert_eq(route_table_put(t, &k, &v, &created), 0);
			cr_assert_eq(created, model[s][i] == 0, "op %u", op);
			if (!model[s][i]) {
				n++;
				per_svc[s]++;
			}
			model[s][i] = op + 1;
			break;
		case 1:
			cr_assert_eq(route_table_del(t, &k), model[s][i] ? 0 : -ENOENT, "op %u",
				     op);
			if (model[s][i]) {
				n--;
				per_svc[s]--;
			}
			model[s][i] = 0;
			break;
		default:
			got = route_table_get(t, &svc, key, (size_t)len);
			if (model[s][i]) {
				cr_assert_not_null(got, "op %u: lost s%u k%u", op, s, i);
				cr_assert_eq(addr_w(&got->to, 0), htonl(model[s][i]));
			} else {
				cr_assert_null(got, "op %u: ghost s%u k%u", op, s, i);
			}
			break;
		}
		cr_assert_eq(route_table_count(t), n);
		cr_assert_eq(route_table_service_count(t, &svc), per_svc[s]);
	}
	for (s = 0; s < MODEL_SVCS; s++) {
		struct shunt_addr svc = svc4(0xc0000200 + s, 80);

		for (i = 0; i < nkeys; i++) {
			char key[16];
			int len = snprintf(key, sizeof(key), "k%u", i);

			cr_assert_eq(route_table_get(t, &svc, key, (size_t)len) != NULL,
				     model[s][i] != 0);
		}
	}
}

Test(routes, random_ops_large)
{
	setup();
	random_ops(MODEL_KEYS, 0x12345678);
	teardown();
}

Test(routes, random_ops_small)
{
	setup();
	random_ops(4, 0x9e3779b9);
	teardown();
}

struct visit_ctx {
	unsigned char *seen;
	size_t calls;
	size_t stop_after;
};

static int visit(const struct shunt_route_key *k, const struct shunt_route *v, void *ctx)
{
	struct visit_ctx *c = ctx;
	unsigned i = ntohl(addr_w(&v->to, 0));

	cr_assert_lt(i, MANY);
	cr_assert_eq(c->seen[i], 0, "route %u visited twice", i);
	cr_assert_eq(strncmp(k->key, "key-", 4), 0);
	c->seen[i] = 1;
	c->calls++;
	return c->calls == c->stop_after ? 42 : 0;
}

Test(routes, foreach)
{
	struct visit_ctx c = {0};
	struct shunt_route_key k;
	struct shunt_addr svc;
	struct shunt_route v;
	unsigned i;

	setup();
	cr_assert_eq(route_table_foreach(t, visit, &c), 0);
	cr_assert_eq(c.calls, 0);

	for (i = 0; i < MANY; i++) {
		many_key(i, &k, &svc);
		v = rval(i, 0);
		cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
	}
	for (i = 0; i < MANY; i += 2) {
		many_key(i, &k, &svc);
		cr_assert_eq(route_table_del(t, &k), 0);
	}

	c.seen = calloc(MANY, 1);
	cr_assert_not_null(c.seen);
	cr_assert_eq(route_table_foreach(t, visit, &c), 0);
	cr_assert_eq(c.calls, MANY / 2);
	for (i = 0; i < MANY; i++)
		cr_assert_eq(c.seen[i], i % 2, "route %u", i);

	memset(c.seen, 0, MANY);
	c.calls = 0;
	c.stop_after = 10;
	cr_assert_eq(route_table_foreach(t, visit, &c), 42);
	cr_assert_eq(c.calls, 10, "did not stop early");
	free(c.seen);
	teardown();
}

Test(routes, sorted_order)
{
	/* Inserted out of order; want[] is the order sorted() must give. */
	struct {
		struct shunt_addr svc;
		const char *key;
	} want[] = {
		{svc4(0x0a000002, 80), "a"},
		{svc4(0x0a000002, 80), "ab"},
		{svc4(0x0a000002, 80), "b"},
		{svc4(0x0a000002, 255), "a"},
		{svc4(0x0a000002, 256), "a"},
		{svc4(0x0a000002, 65535), "a"},
		{svc4(0x0a00000a, 1), "a"},
		{svc4(0x0b000001, 1), "a"},
		{svc4(0xc0a80001, 1), "Z"},
		{svc4(0xc0a80001, 1), "a"},
		{svc6(1, 1), "a"},
		{svc6(2, 1), "a"},
		{svc6(0x100, 1), "a"},
	};
	static const unsigned insert_order[] = {12, 3, 0, 9, 5, 11, 1, 7, 4, 10, 2, 8, 6};
	size_t n = sizeof(want) / sizeof(want[0]), i;
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	long got;

	setup();
	for (i = 0; i < n; i++) {
		unsigned j = insert_order[i];
		struct shunt_route_key k = rkey(&want[j].svc, want[j].key);
		struct shunt_route v = rval(j, 0);

		cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
	}
	got = route_table_sorted(t, &keys, &vals);
	cr_assert_eq(got, (long)n);
	for (i = 0; i < n; i++) {
		struct shunt_route_key k = rkey(&want[i].svc, want[i].key);

		cr_assert(memcmp(&keys[i], &k, sizeof(k)) == 0, "position %zu: got key '%s'", i,
			  keys[i].key);
		cr_assert_eq(ntohl(addr_w(&vals[i].to, 0)), i, "value not with its key at %zu", i);
	}
	free(keys);
	free(vals);
	/* sorted() copies: the table is unchanged. */
	cr_assert_eq(route_table_count(t), n);
	teardown();
}

static int key_cmp_ok(const struct shunt_route_key *a, const struct shunt_route_key *b)
{
	int c;

	if (a->service.family != b->service.family)
		return a->service.family < b->service.family;
	c = memcmp(a->service.addr, b->service.addr, 16);
	if (c)
		return c < 0;
	if (a->service.port != b->service.port)
		return a->service.port < b->service.port;
	return memcmp(a->key, b->key, sizeof(a->key)) < 0;
}

Test(routes, sorted_many)
{
	struct shunt_route_key k, *keys;
	struct shunt_addr svc;
	struct shunt_route v, *vals;
	long n, i;

	setup();
	for (i = 0; i < MANY; i++) {
		many_key((unsigned)i, &k, &svc);
		v = rval((uint32_t)i, 0);
		cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
	}
	n = route_table_sorted(t, &keys, &vals);
	cr_assert_eq(n, MANY);
	for (i = 1; i < n; i++)
		cr_assert(key_cmp_ok(&keys[i - 1], &keys[i]), "out of order at %ld", i);
	for (i = 0; i < n; i++) {
		const struct shunt_route *got =
			route_table_get(t, &keys[i].service, keys[i].key, strlen(keys[i].key));

		cr_assert_not_null(got);
		cr_assert(memcmp(got, &vals[i], sizeof(*got)) == 0);
	}
	free(keys);
	free(vals);
	teardown();
}
