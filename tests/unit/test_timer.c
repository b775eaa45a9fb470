/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/core/timer.c and the loop's timers. */
#include <stddef.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "core/loop.h"
#include "core/timer.h"

struct tick {
	struct timer t;
	int fired;
	int order;
};

static int fire_seq;

static void on_fire(struct timer *t)
{
	struct tick *k = (struct tick *)((char *)t - offsetof(struct tick, t));

	k->fired++;
	k->order = ++fire_seq;
}

static void check_heap(const struct timers *ts)
{
	for (size_t i = 0; i < ts->n; i++) {
		cr_assert_eq(ts->heap[i]->idx, i);
		if (i)
			cr_assert_leq(ts->heap[(i - 1) / 2]->at_ms, ts->heap[i]->at_ms);
	}
}

Test(timer, fires_in_deadline_order)
{
	struct timers ts = {0};
	struct tick k[5];
	const uint64_t at[5] = {50, 10, 40, 20, 30};

	fire_seq = 0;
	for (int i = 0; i < 5; i++) {
		timer_init(&k[i].t, on_fire);
		k[i].fired = 0;
		cr_assert_eq(timer_set(&ts, &k[i].t, at[i]), 0);
	}
	check_heap(&ts);
	cr_assert_eq(timers_wait_ms(&ts, 0), 10);
	cr_assert_eq(timers_run(&ts, 9), 0);
	cr_assert_eq(timers_run(&ts, 30), 3);
	cr_assert_eq(k[1].order, 1);
	cr_assert_eq(k[3].order, 2);
	cr_assert_eq(k[4].order, 3);
	cr_assert_not(timer_armed(&k[1].t));
	cr_assert(timer_armed(&k[0].t));
	cr_assert_eq(timers_wait_ms(&ts, 35), 5);
	cr_assert_eq(timers_run(&ts, 100), 2);
	cr_assert_eq(timers_wait_ms(&ts, 100), -1);
	timers_free(&ts);
}

Test(timer, cancel_and_reschedule_keep_the_heap)
{
	struct timers ts = {0};
	struct tick *k = calloc(1000, sizeof(*k));

	srand(7);
	for (int i = 0; i < 1000; i++) {
		timer_init(&k[i].t, on_fire);
		timer_set(&ts, &k[i].t, (uint64_t)(rand() % 10000));
	}
	check_heap(&ts);
	for (int i = 0; i < 1000; i += 3)
		timer_cancel(&ts, &k[i].t);
	check_heap(&ts);
	for (int i = 1; i < 1000; i += 3)
		timer_set(&ts, &k[i].t, (uint64_t)(rand() % 10000));
	check_heap(&ts);
	timer_cancel(&ts, &k[0].t); /* not armed: harmless */
	cr_assert_eq(ts.n, 1000 - 334);
	uint64_t last = 0;

	while (ts.n) {
		struct timer *t = ts.heap[0];

		cr_assert_geq(t->at_ms, last);
		last = t->at_ms;
		timers_run(&ts, t->at_ms);
		check_heap(&ts);
	}
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(k[i].fired, i % 3 == 0 ? 0 : 1);
	timers_free(&ts);
	free(k);
}

static struct timers *rearm_ts;

static void rearm(struct timer *t)
{
	on_fire(t);
	timer_set(rearm_ts, t, t->at_ms); /* due again at once */
}

Test(timer, a_timer_rearming_itself_cannot_hold_the_run)
{
	struct timers ts = {0};
	struct tick k = {0};

	rearm_ts = &ts;
	timer_init(&k.t, rearm);
	timer_set(&ts, &k.t, 5);
	cr_assert_eq(timers_run(&ts, 10), 1);
	cr_assert(timer_armed(&k.t));
	timers_free(&ts);
	cr_assert_not(timer_armed(&k.t));
}

Test(timer, the_loop_sleeps_until_the_nearest_deadline)
{
	struct loop l;
	struct tick k = {0};
	uint64_t t0;

	cr_assert_eq(loop_init(&l), 0);
	timer_init(&k.t, on_fire);
	cr_assert_eq(loop_timer_in(&l, &k.t, 30), 0);
	t0 = monotonic_ms();
	while (!k.fired)
		cr_assert_eq(loop_run_once(&l, 5000), 0);
	cr_assert_geq(l.now_ms - t0, 29);
	cr_assert_lt(l.now_ms - t0, 2000, "the loop waited for its timeout, not the timer");
	loop_timer_in(&l, &k.t, 10);
	loop_timer_cancel(&l, &k.t);
	cr_assert_not(timer_armed(&k.t));
	loop_close(&l);
}
