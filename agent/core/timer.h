/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Deadlines as a binary min-heap: arming, cancelling and rescheduling are
 * O(log n), and a deadline costs nothing until it is the nearest one. The
 * event loop (core/loop.h) owns one and sleeps until its first deadline. */
#ifndef SHUNT_TIMER_H
#define SHUNT_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMER_IDLE ((size_t)-1)

struct timer;
typedef void (*timer_fn)(struct timer *t);

/* Embed in the object the deadline belongs to; find it with container_of
 * (or offsetof) in fn. */
struct timer {
	uint64_t at_ms; /* deadline, on the loop's monotonic clock */
	timer_fn fn;
	size_t idx; /* position in the heap; TIMER_IDLE when not armed */
};

struct timers {
	struct timer **heap;
	size_t n, cap;
};

/* Before first use: not armed, fires fn. */
void timer_init(struct timer *t, timer_fn fn);
static inline bool timer_armed(const struct timer *t)
{
	return t->idx != TIMER_IDLE;
}
/* Arm t for at_ms, or move it there if already armed: 0 or -ENOMEM. */
int timer_set(struct timers *ts, struct timer *t, uint64_t at_ms);
/* Disarm; harmless if not armed. */
void timer_cancel(struct timers *ts, struct timer *t);
/* Milliseconds from now_ms until the nearest deadline (0 if due), or -1
 * when nothing is armed. */
int64_t timers_wait_ms(const struct timers *ts, uint64_t now_ms);
/* Fire every timer due at now_ms, nearest first; a timer is disarmed
 * before its fn runs, so fn may re-arm it, free it or touch others. At
 * most as many fire as were armed when the run began. Returns how many
 * fired. */
unsigned int timers_run(struct timers *ts, uint64_t now_ms);
void timers_free(struct timers *ts);

#endif /* SHUNT_TIMER_H */
