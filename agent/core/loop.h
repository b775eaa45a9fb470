/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The agent's single-threaded epoll loop. */
#ifndef SHUNT_LOOP_H
#define SHUNT_LOOP_H

#include <stdint.h>

/* Embed this first in anything registered with the loop. */
struct ev_handler {
	void (*fn)(struct ev_handler *h, uint32_t events);
};

struct loop {
	int epfd;
	int stop;
	uint64_t now_ms; /* CLOCK_MONOTONIC, refreshed once per wakeup */
};

int loop_init(struct loop *l);
void loop_close(struct loop *l);
int loop_add(struct loop *l, int fd, uint32_t events, struct ev_handler *h);
int loop_mod(struct loop *l, int fd, uint32_t events, struct ev_handler *h);
void loop_del(struct loop *l, int fd);
/* Wait up to timeout_ms and dispatch; returns -errno on a loop failure. */
int loop_run_once(struct loop *l, int timeout_ms);
uint64_t monotonic_ms(void);

#endif /* SHUNT_LOOP_H */
