// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/timer.h"

void timer_init(struct timer *t, timer_fn fn)
{
	t->at_ms = 0;
	t->fn = fn;
	t->idx = TIMER_IDLE;
}

static void place(struct timers *ts, size_t i, struct timer *t)
{
	ts->heap[i] = t;
	t->idx = i;
}

static void sift_up(struct timers *ts, size_t i)
{
	struct timer *t = ts->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (ts->heap[parent]->at_ms <= t->at_ms)
			break;
		place(ts, i, ts->heap[parent]);
		i = parent;
	}
	place(ts, i, t);
}

static void sift_down(struct timers *ts, size_t i)
{
	struct timer *t = ts->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= ts->n)
			break;
		if (c + 1 < ts->n && ts->heap[c + 1]->at_ms < ts->heap[c]->at_ms)
			c++;
		if (t->at_ms <= ts->heap[c]->at_ms)
			break;
		place(ts, i, ts->heap[c]);
		i = c;
	}
	place(ts, i, t);
}

int timer_set(struct timers *ts, struct timer *t, uint64_t at_ms)
{
	if (timer_armed(t)) {
		uint64_t old = t->at_ms;

		t->at_ms = at_ms;
		if (at_ms < old)
			sift_up(ts, t->idx);
		else
			sift_down(ts, t->idx);
		return 0;
	}
	if (ts->n == ts->cap) {
		size_t cap = ts->cap ? ts->cap * 2 : 64;
		struct timer **h = realloc(ts->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		ts->heap = h;
		ts->cap = cap;
	}
	t->at_ms = at_ms;
	ts->heap[ts->n] = t;
	t->idx = ts->n++;
	sift_up(ts, t->idx);
	return 0;
}

void timer_cancel(struct timers *ts, struct timer *t)
{
	size_t i = t->idx;
	struct timer *last;

	if (!timer_armed(t))
		return;
	t->idx = TIMER_IDLE;
	last = ts->heap[--ts->n];
	if (i == ts->n)
		return;
	place(ts, i, last);
	if (i > 0 && ts->heap[(i - 1) / 2]->at_ms > last->at_ms)
		sift_up(ts, i);
	else
		sift_down(ts, i);
}

int64_t timers_wait_ms(const struct timers *ts, uint64_t now_ms)
{
	uint64_t at;

	if (!ts->n)
		return -1;
	at = ts->heap[0]->at_ms;
	return at <= now_ms ? 0 : (int64_t)(at - now_ms);
}

unsigned int timers_run(struct timers *ts, uint64_t now_ms)
{
	unsigned int fired = 0;
	/* At most as many as were armed: a timer that keeps re-arming itself
	 * for a due time cannot hold the loop here. */
	size_t budget = ts->n;

	while (ts->n && ts->heap[0]->at_ms <= now_ms && budget--) {
		struct timer *t = ts->heap[0];

		timer_cancel(ts, t);
		fired++;
		t->fn(t);
	}
	return fired;
}

void timers_free(struct timers *ts)
{
	for (size_t i = 0; i < ts->n; i++)
		ts->heap[i]->idx = TIMER_IDLE;
	free(ts->heap);
	memset(ts, 0, sizeof(*ts));
}
