/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The Sandbox controller (shunt-controller): one leader, elected on a
 * coordination.k8s.io Lease, keeps the objects of every Sandbox in step
 * with what it asks for (sandbox.h).
 *
 * Level-triggered: a pass over a namespace lists its Sandboxes and, for
 * each, reads the baselines, the Services and the objects it owns, and
 * creates, updates or deletes the difference. Watches of Sandboxes,
 * Deployments, Services and Jobs only say which namespaces to pass over
 * now (events.c); a full pass runs at every --resync and when this
 * instance becomes the leader, so a lost event costs a delay, never a
 * wrong state. Names are fixed by the Sandbox (never generated), so two
 * leaders in a row, or a pass cut short, cannot make duplicates.
 */
#ifndef SHUNT_CTRL_H
#define SHUNT_CTRL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hmap.h"
#include "k8s/client.h"

#define CTRL_WATCHES 4 /* Sandboxes, Deployments, Services, Jobs */

struct ctrl_opts {
	struct k8s_where where;
	const char *ns;	      /* only this namespace; NULL: every one */
	const char *lease_ns; /* the Lease's namespace */
	const char *lease_name;
	const char *id;		  /* this instance in the Lease */
	unsigned int lease_ms;	  /* a leader that does not renew for this long is replaced */
	unsigned int resync_ms;	  /* full pass */
	unsigned int debounce_ms; /* after an event, wait this long for more */
};

struct ctrl_watch;

struct ctrl {
	struct ctrl_opts o;
	struct k8s_client cl; /* the main thread's */

	/* Leader election (lease.c), main thread. */
	bool leader;
	uint64_t renewed_ms;	/* the last successful renewal */
	char seen_rv[64];	/* the Lease record last seen ... */
	uint64_t seen_ms;	/* ... and since when */
	uint64_t leader_since;	/* for the log */
	uint64_t next_lease_ms; /* the next renewal or attempt */

	/* Shared with the watch threads, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct hmap dirty; /* namespaces to pass over now */
	bool dirty_all;
	int stop; /* atomic */

	struct ctrl_watch *w[CTRL_WATCHES];
	uint64_t next_expiry_unix; /* the earliest Sandbox ttl ahead, 0 none */
	unsigned long passes, writes;
};

/* lease.c: try to become or stay the leader; c->leader says. */
void ctrl_lease_tick(struct ctrl *c);
/* ... when it is due (every third of the lease), also in a long pass. */
void ctrl_lease_maybe_tick(struct ctrl *c);
/* May this instance write now? It leads, and its last renewal is less than
 * two thirds of the lease old: well before another may take over. */
bool ctrl_may_write(const struct ctrl *c);
/* Give the lease up (on a clean stop) so another instance takes over at once. */
void ctrl_lease_release(struct ctrl *c);

/* reconcile.c: pass over the Sandboxes of ns (NULL: every namespace this
 * controller follows). 0, or -errno when the list failed. */
int ctrl_pass(struct ctrl *c, const char *ns);

/* events.c: the watch threads. */
int ctrl_watches_start(struct ctrl *c);
void ctrl_watches_stop(struct ctrl *c);
/* Mark ns (NULL: all) for a pass and wake the main thread. */
void ctrl_mark(struct ctrl *c, const char *ns);

#endif /* SHUNT_CTRL_H */
