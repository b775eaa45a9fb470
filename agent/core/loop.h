/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The agent's single-threaded epoll loop. */
#ifndef SHUNT_LOOP_H
#define SHUNT_LOOP_H

#include <stdint.h>

#include "core/timer.h"

/* Embed this first in anything registered with the loop. */
struct ev_handler {
	void (*fn)(struct ev_handler *h, uint32_t events);
};

struct loop {
	int epfd;
	int stop;
	uint64_t now_ms; /* CLOCK_MONOTONIC, refreshed once per wakeup */
	struct timers timers;
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

#endif /* SHUNT_LOOP_H */
