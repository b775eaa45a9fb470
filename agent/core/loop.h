/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* An epoll loop: the agent's main one, and one per proxy worker thread. */
#ifndef SHUNT_LOOP_H
#define SHUNT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/timer.h"

/* Embed this first in anything registered with the loop. */
struct ev_handler {
	void (*fn)(struct ev_handler *h, uint32_t events);
};

/*
 * Adaptive polling (loop_poll_set): before a wait that would block, poll
 * (epoll_wait without sleeping) for up to window_us, but only while the
 * loop's traffic arrives about that fast: the time a wait took to see an
 * event, averaged over the last waits, is under a few windows. Between
 * polls the thread yields its CPU, so a task that wants it (often the one
 * whose answer is awaited, or under load anyone) runs at once. A poll that
 * ends with nothing doubles a back-off (that many of the next waits sleep
 * at once); one that finds an event halves it. Idle, the average grows
 * past the threshold and nothing is polled.
 *
 * Why: on a VM, waking a halted vCPU costs tens of microseconds, several
 * times what the proxy itself spends on a request (KERNEL-NOTES.md). A
 * worker that keeps its CPU awake for the moment the upstream takes to
 * answer is woken for nothing.
 */
struct loop_poll {
	uint32_t window_us; /* 0: never poll */
	uint32_t backoff;   /* waits left that sleep at once */
	uint32_t penalty;   /* the next back-off */
	uint64_t gap_ns;    /* average time a wait took to see an event */
	/* what it did (read by other threads as they stand) */
	uint64_t polls; /* waits that polled */
	uint64_t hits;	/* ... and found an event */
};

struct loop {
	int epfd;
	int stop;
	uint64_t now_ms; /* CLOCK_MONOTONIC, refreshed once per wakeup */
	struct timers timers;
	/* Optional: told asleep=true just before a wait that may block and
	 * asleep=false after every wait, before anything is dispatched (the
	 * proxy's workers pick up routes there: state/view.h). */
	void (*quiesce)(struct loop *l, bool asleep);
	void *ctx; /* the quiesce callback's */
	struct loop_poll poll;
};

int loop_init(struct loop *l);
void loop_close(struct loop *l);
int loop_add(struct loop *l, int fd, uint32_t events, struct ev_handler *h);
int loop_mod(struct loop *l, int fd, uint32_t events, struct ev_handler *h);
void loop_del(struct loop *l, int fd);
/* Wait up to timeout_ms (or until the nearest timer) and dispatch, then
 * fire the timers that are due; returns -errno on a loop failure. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Arm (or move) t to fire in_ms from the loop's now_ms: 0 or -ENOMEM. */
int loop_timer_in(struct loop *l, struct timer *t, uint64_t in_ms);
void loop_timer_cancel(struct loop *l, struct timer *t);
uint64_t monotonic_ms(void);
/* Poll before sleeping for up to window_us (0: never); see loop_poll. */
void loop_poll_set(struct loop *l, uint32_t window_us);

#endif /* SHUNT_LOOP_H */
