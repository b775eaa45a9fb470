// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The upstream pool (see pool.h).
 */
#include <stdlib.h>
#include <string.h>

#include "proxy/pool.h"

/* Only the bytes the family uses, and no padding: equal destinations are
 * equal keys. */
static void dst_key(struct shunt_addr *k, const struct shunt_addr *dst)
{
	memset(k, 0, sizeof(*k));
	k->family = dst->family;
	k->port = dst->port;
	memcpy(k->addr, dst->addr, dst->family == SHUNT_FAMILY_V4 ? 4 : sizeof(k->addr));
}

static void ring_init(struct pool_link *head)
{
	head->prev = head->next = head;
}

struct pool_dst *pool_dst_get(struct pool *pl, const struct shunt_addr *dst, bool create)
{
	struct shunt_addr k;
	struct pool_dst *d;

	dst_key(&k, dst);
	d = hmap_get(&pl->by_dst, &k, sizeof(k));
	if (d || !create)
		return d;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->dst = k;
	d->root = pl;
	ring_init(&d->idle);
	ring_init(&d->mux);
	if (hmap_put(&pl->by_dst, &d->dst, sizeof(d->dst), d, NULL)) {
		free(d);
		return NULL;
	}
	return d;
}

void pool_idle_push(struct pool_dst *d, struct pool_link *l, uint64_t now)
{
	l->since = now;
	l->prev = &d->idle;
	l->next = d->idle.next;
	d->idle.next->prev = l;
	d->idle.next = l;
	d->n_idle++;
}

void pool_idle_remove(struct pool_dst *d, struct pool_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = NULL;
	d->n_idle--;
}

struct pool_link *pool_idle_pop(struct pool_dst *d)
{
	struct pool_link *l = d->idle.next;

	if (l == &d->idle)
		return NULL;
	pool_idle_remove(d, l);
	return l;
}

/* Oldest first, from the tail: the idle list is in release order, so the
 * first one still young ends the walk. */
static void sweep_dst(struct pool_dst *d, uint64_t now, uint64_t idle_ms, bool close_all,
		      void (*close_fn)(struct pool_link *l))
{
	while (d->idle.prev != &d->idle) {
		struct pool_link *l = d->idle.prev;

		if (!close_all && now - l->since <= idle_ms)
			break;
		close_fn(l);
	}
}

void pool_sweep(struct pool *pl, uint64_t now, uint64_t idle_ms, bool close_all,
		void (*close_fn)(struct pool_link *l))
{
	struct hmap_entry *e, *next;
	size_t it;

	for (e = hmap_first(&pl->by_dst, &it); e; e = next) {
		struct pool_dst *d = e->val;

		next = hmap_next(&pl->by_dst, e, &it);
		sweep_dst(d, now, idle_ms, close_all, close_fn);
		if (!d->n_idle && !d->open && !d->n_mux && (close_all || d->h2_until <= now)) {
			/* No connection left: forget the destination. */
			hmap_del(&pl->by_dst, &d->dst, sizeof(d->dst));
			free(d);
		}
	}
}

void pool_free(struct pool *pl)
{
	struct hmap_entry *e;
	size_t it;

	for (e = hmap_first(&pl->by_dst, &it); e; e = hmap_next(&pl->by_dst, e, &it))
		free(e->val);
	hmap_free(&pl->by_dst);
}
