// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Route snapshots for the workers (see view.h).
 *
 * Why it is safe: the writer stores cur, then increments epoch, then
 * retires the old copy at the new epoch; a reader stores its epoch, then
 * loads cur. All four are sequentially consistent. A reader whose stored
 * epoch is below the retiring epoch may hold the old copy, so the copy
 * waits; a reader that stored the new epoch (or a later one) loads cur
 * after the writer stored it, so it holds the new copy; a reader at 0
 * holds nothing, and when it next enters it can only load the new one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state/view.h"

static void snap_free(struct view_snap *s)
{
	if (!s)
		return;
	route_table_free((struct route_table *)s->t);
	dstguard_close(&s->guard);
	free(s);
}

int view_init(struct view *v, int n_readers)
{
	memset(v, 0, sizeof(*v));
	v->readers = calloc((size_t)(n_readers > 0 ? n_readers : 1), sizeof(*v->readers));
	if (!v->readers)
		return -ENOMEM;
	v->n_readers = n_readers;
	atomic_store(&v->epoch, 1);
	return 0;
}

void view_free(struct view *v)
{
	struct view_snap *s = atomic_load(&v->cur);

	snap_free(s);
	while (v->retired) {
		s = v->retired;
		v->retired = s->next_retired;
		snap_free(s);
	}
	atomic_store(&v->cur, NULL);
	free(v->readers);
	v->readers = NULL;
}

/* The lowest epoch a reader holding something entered at; UINT64_MAX
 * when none holds anything. */
static uint64_t oldest_reader(const struct view *v)
{
	uint64_t min = UINT64_MAX;

	for (int i = 0; i < v->n_readers; i++) {
		uint64_t e = atomic_load(&v->readers[i].epoch);

		if (e && e < min)
			min = e;
	}
	return min;
}

int view_reclaim(struct view *v)
{
	struct view_snap **pp = &v->retired;
	uint64_t oldest;
	int left = 0;

	if (!v->retired)
		return 0;
	oldest = oldest_reader(v);
	while (*pp) {
		struct view_snap *s = *pp;

		if (oldest >= s->retired_at) {
			*pp = s->next_retired;
			snap_free(s);
		} else {
			pp = &s->next_retired;
			left++;
		}
	}
	return left;
}

int view_sync(struct view *v, const struct route_table *t, const struct dstguard *g)
{
	struct view_snap *old = atomic_load(&v->cur), *s;

	if (old && v->from_t == t && v->t_gen == route_table_gen(t) && v->g_gen == g->gen) {
		view_reclaim(v);
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->guard.nl_fd = -1;
	s->t = route_table_clone(t);
	if (!s->t || dstguard_copy(&s->guard, g)) {
		snap_free(s);
		return -ENOMEM;
	}
	atomic_store(&v->cur, s);
	v->from_t = t;
	v->t_gen = route_table_gen(t);
	v->g_gen = g->gen;
	v->published++;
	if (old) {
		old->retired_at = atomic_fetch_add(&v->epoch, 1) + 1;
		old->next_retired = v->retired;
		v->retired = old;
	}
	view_reclaim(v);
	return 0;
}
