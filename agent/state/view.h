/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the proxy's workers read on every request: the route table and the
 * destination guard, as one immutable snapshot.
 *
 * The main thread owns the store and the guard and changes them; after a
 * change view_sync() publishes a copy. A worker picks up the newest copy
 * each time it wakes (view_enter) and lets go of it before it blocks
 * (view_leave), so readers take no lock and write nothing shared but their
 * own epoch. A replaced copy is freed once every worker has woken since it
 * was replaced, or is asleep: quiescent-state-based reclamation, the
 * scheme of the kernel's RCU reduced to one writer and a handful of event
 * loops that pass through a quiescent state on every epoll_wait().
 */
#ifndef SHUNT_VIEW_H
#define SHUNT_VIEW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/dstguard.h"
#include "state/routes.h"

struct view_snap {
	const struct route_table *t;
	struct dstguard guard; /* a copy: the proxy's and the node's addresses */
	uint64_t retired_at;   /* the epoch that replaced it */
	struct view_snap *next_retired;
};

/* One per reader, on a cache line of its own: the epoch it entered at,
 * 0 while it holds nothing. */
struct view_reader {
	_Atomic uint64_t epoch;
	char pad[64 - sizeof(uint64_t)];
};

struct view {
	struct view_snap *_Atomic cur;
	_Atomic uint64_t epoch; /* 1 + the number of publications */
	struct view_reader *readers;
	int n_readers;
	struct view_snap *retired; /* replaced, not yet freed */
	/* What cur was made from: republished when either changes. */
	const struct route_table *from_t;
	uint64_t t_gen, g_gen;
	uint64_t published; /* copies made, for status */
};

/* n_readers: the workers that will call view_enter/leave. 0 or -ENOMEM. */
int view_init(struct view *v, int n_readers);
/* Every reader must have stopped. */
void view_free(struct view *v);

/* Main thread: publish a copy of t and g if either changed since the last
 * one (cheap when nothing did), and free copies no reader can hold any
 * more. 0, or -ENOMEM (the previous copy stays in force). */
int view_sync(struct view *v, const struct route_table *t, const struct dstguard *g);
/* Free what can be freed; returns how many copies are still waiting. */
int view_reclaim(struct view *v);

/* Reader `r`: the newest copy, valid until view_leave(). */
static inline const struct view_snap *view_enter(struct view *v, int r)
{
	atomic_store(&v->readers[r].epoch, atomic_load(&v->epoch));
	return atomic_load(&v->cur);
}

/* Reader `r` holds no copy from here on (before it blocks). */
static inline void view_leave(struct view *v, int r)
{
	atomic_store(&v->readers[r].epoch, 0);
}

#endif /* SHUNT_VIEW_H */
