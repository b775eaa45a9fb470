/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/state/view.c: the route snapshots the proxy's
 * workers read. A copy is published only when the routes or the guard
 * changed, is never freed while a reader may hold it (ASan would report a
 * use after free in these tests), and is freed once no reader can. One
 * test runs real reader threads against a writer. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <criterion/criterion.h>

#include "state/dstguard.h"
#include "state/routes.h"
#include "state/view.h"

static struct shunt_addr v4(uint32_t ip, uint16_t port)
{
	struct shunt_addr a = {.family = SHUNT_FAMILY_V4, .port = port};

	ip = __builtin_bswap32(ip);
	memcpy(a.addr, &ip, 4);
	return a;
}

static void put(struct route_table *t, const char *key, uint32_t to)
{
	struct shunt_addr svc = v4(0x0a000001, 80);
	struct shunt_route_key k;
	struct shunt_route v = {.to = v4(to, 80)};

	route_key_make(&k, &svc, key, strlen(key));
	cr_assert_eq(route_table_put(t, &k, &v, NULL), 0);
}

static const struct shunt_route *get(const struct view_snap *s, const char *key)
{
	struct shunt_addr svc = v4(0x0a000001, 80);

	return route_table_get(s->t, &svc, key, strlen(key));
}

Test(view, publishes_a_copy_only_when_something_changed)
{
	struct route_table *t = route_table_new();
	struct dstguard g;
	struct view v;
	const struct view_snap *s0, *s1;
	struct shunt_addr node = v4(0x0a0000fe, 0);

	dstguard_init(&g, NULL, 0);
	cr_assert_eq(view_init(&v, 2), 0);
	put(t, "a", 0x0a000002);
	cr_assert_eq(view_sync(&v, t, &g), 0);
	cr_assert_eq(v.published, 1);
	s0 = view_enter(&v, 0);
	cr_assert_not_null(get(s0, "a"));
	/* nothing changed: nothing published */
	cr_assert_eq(view_sync(&v, t, &g), 0);
	cr_assert_eq(v.published, 1);
	/* the same node addresses again: nothing either */
	cr_assert_eq(dstguard_set_node(&g, &node, 1), 0);
	cr_assert_eq(view_sync(&v, t, &g), 0);
	cr_assert_eq(v.published, 2);
	cr_assert_eq(dstguard_set_node(&g, &node, 1), 0);
	cr_assert_eq(view_sync(&v, t, &g), 0);
	cr_assert_eq(v.published, 2);
	/* a route: a new copy; the reader still holds the first, unchanged */
	put(t, "b", 0x0a000003);
	cr_assert_eq(view_sync(&v, t, &g), 0);
	cr_assert_eq(v.published, 3);
	cr_assert_null(get(s0, "b"), "a published copy changed under its reader");
	cr_assert_eq(view_reclaim(&v), 2, "copies freed while reader 0 may hold one");
	view_leave(&v, 0);
	cr_assert_eq(view_reclaim(&v), 0);
	s1 = view_enter(&v, 1);
	cr_assert_not_null(get(s1, "b"));
	cr_assert_eq(dstguard_check(&s1->guard, &node), DST_NODE);
	view_leave(&v, 1);
	view_free(&v);
	route_table_free(t);
	dstguard_close(&g);
}

Test(view, a_reader_that_entered_later_does_not_hold_up_an_older_copy)
{
	struct route_table *t = route_table_new();
	struct dstguard g;
	struct view v;

	dstguard_init(&g, NULL, 0);
	cr_assert_eq(view_init(&v, 2), 0);
	cr_assert_eq(view_sync(&v, t, &g), 0);
	(void)view_enter(&v, 0);
	put(t, "a", 0x0a000002);
	cr_assert_eq(view_sync(&v, t, &g), 0); /* the first copy retires */
	(void)view_enter(&v, 1);	       /* holds the second */
	cr_assert_eq(view_reclaim(&v), 1);     /* reader 0 may hold the first */
	(void)view_enter(&v, 0);	       /* woke again: holds the second */
	cr_assert_eq(view_reclaim(&v), 0);
	view_free(&v);
	route_table_free(t);
	dstguard_close(&g);
}

/* Readers look a route up over and over, the writer flips it; every copy
 * a reader sees is whole (the route is there with one of the two values,
 * the table is readable), and ASan sees no copy freed under a reader. */
struct race {
	struct view v;
	atomic_bool stop;
	atomic_long reads;
	atomic_long bad;
};

static void *reader(void *arg)
{
	struct race *r = arg;
	static atomic_int next;
	int id = atomic_fetch_add(&next, 1) % 2;

	while (!atomic_load(&r->stop)) {
		const struct view_snap *s = view_enter(&r->v, id);

		for (int i = 0; i < 100; i++) {
			const struct shunt_route *rt = get(s, "a");
			uint8_t last = rt ? rt->to.addr[3] : 0;

			if (!rt || (last != 2 && last != 3))
				atomic_fetch_add(&r->bad, 1);
		}
		atomic_fetch_add(&r->reads, 1);
		view_leave(&r->v, id);
	}
	return NULL;
}

Test(view, readers_on_threads_never_see_a_freed_or_torn_copy)
{
	struct route_table *t = route_table_new();
	struct dstguard g;
	static struct race r;
	pthread_t th[2];

	dstguard_init(&g, NULL, 0);
	cr_assert_eq(view_init(&r.v, 2), 0);
	put(t, "a", 0x0a000002);
	cr_assert_eq(view_sync(&r.v, t, &g), 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, reader, &r), 0);
	for (int i = 0; i < 3000; i++) {
		put(t, "a", i % 2 ? 0x0a000002 : 0x0a000003);
		put(t, i % 3 ? "x" : "y", 0x0a000004); /* the table grows too */
		cr_assert_eq(view_sync(&r.v, t, &g), 0);
	}
	atomic_store(&r.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&r.bad), 0);
	cr_assert_gt(atomic_load(&r.reads), 0);
	cr_assert_eq(view_reclaim(&r.v), 0, "copies left once every reader left");
	view_free(&r.v);
	route_table_free(t);
	dstguard_close(&g);
}
