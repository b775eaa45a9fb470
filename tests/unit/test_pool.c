/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests of the upstream pool's index: entries by destination, idle
 * connections most recently used first, sweeping by age.
 */
#include <string.h>
#include <criterion/criterion.h>

#include "core/util.h"
#include "proxy/pool.h"

struct fake {
	struct pool_link link;
	struct pool_dst *d;
	bool closed;
};

static struct fake *fake_of(struct pool_link *l)
{
	return (struct fake *)((char *)l - offsetof(struct fake, link));
}

static void fake_close(struct pool_link *l)
{
	struct fake *f = fake_of(l);

	pool_idle_remove(f->d, l);
	f->d->open--;
	f->closed = true;
}

static struct shunt_addr A(const char *s) {
	struct shunt_addr a;

	cr_assert_eq(parse_addr_port(s, &a), 0, "%s", s);
	return a;
}

Test(pool, entries_by_destination)
{
	struct pool pl;
	struct shunt_addr a = A("10.244.1.7:8080"), b = A("10.244.1.7:8081");
	struct pool_dst *da, *db;

	memset(&pl, 0, sizeof(pl));
	cr_assert_null(pool_dst_get(&pl, &a, false));
	da = pool_dst_get(&pl, &a, true);
	db = pool_dst_get(&pl, &b, true);
	cr_assert_not_null(da);
	cr_assert_not_null(db);
	cr_assert_neq(da, db);
	/* Junk in the bytes IPv4 does not use, and pad, do not matter. */
	a.addr[12] = 0x55;
	a.pad = 7;
	cr_assert_eq(pool_dst_get(&pl, &a, false), da);
	pool_free(&pl);
}

Test(pool, idle_order_and_sweep)
{
	struct pool pl;
	struct shunt_addr a = A("[fd00::7]:80");
	struct pool_dst *d;
	struct fake f[3];

	memset(&pl, 0, sizeof(pl));
	memset(f, 0, sizeof(f));
	d = pool_dst_get(&pl, &a, true);
	for (int i = 0; i < 3; i++) {
		f[i].d = d;
		d->open++;
		pool_idle_push(d, &f[i].link, 100 * (uint64_t)i);
	}
	cr_assert_eq(d->n_idle, 3);
	/* Most recently used first. */
	cr_assert_eq(pool_idle_pop(d), &f[2].link);
	pool_idle_push(d, &f[2].link, 400);
	/* Idle for more than 500 at 650: f[0] (0) and f[1] (100) go. */
	pool_sweep(&pl, 650, 500, false, fake_close);
	cr_assert(f[0].closed);
	cr_assert(f[1].closed);
	cr_assert_not(f[2].closed);
	cr_assert_eq(d->n_idle, 1);
	cr_assert_eq(pool_dst_get(&pl, &a, false), d);
	/* Everything closed: the entry is forgotten. */
	pool_sweep(&pl, 650, 500, true, fake_close);
	cr_assert(f[2].closed);
	cr_assert_null(pool_dst_get(&pl, &a, false));
	cr_assert_null(pool_idle_pop(d = pool_dst_get(&pl, &a, true)));
	pool_free(&pl);
}
