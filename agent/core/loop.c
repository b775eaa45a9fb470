// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>

#include "core/loop.h"

uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int loop_init(struct loop *l)
{
	l->stop = 0;
	l->quiesce = NULL;
	l->ctx = NULL;
	loop_poll_set(l, 0);
	l->timers = (struct timers){0};
	l->now_ms = monotonic_ms();
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? -errno : 0;
}

void loop_close(struct loop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
	timers_free(&l->timers);
}

int loop_add(struct loop *l, int fd, uint32_t events, struct ev_handler *h)
{
	struct epoll_event ev = {.events = events, .data.ptr = h};

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events, struct ev_handler *h)
{
	struct epoll_event ev = {.events = events, .data.ptr = h};

	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) ? -errno : 0;
}

void loop_del(struct loop *l, int fd)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void loop_poll_set(struct loop *l, uint32_t window_us)
{
	l->poll = (struct loop_poll){.window_us = window_us, .gap_ns = 1000000000};
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* Poll while the recent waits saw events within a few windows. */
#define POLL_GAP_WINDOWS 4
#define POLL_BACKOFF_MAX 1024

/* Before a wait that would sleep: poll for up to the window, giving the
 * CPU to whoever else wants it between polls (often the very task whose
 * answer we wait for). Returns the events found (0: none: sleep). */
static int poll_first(struct loop *l, struct epoll_event *evs, int max, uint64_t t0)
{
	struct loop_poll *p = &l->poll;
	uint64_t end = t0 + (uint64_t)p->window_us * 1000;
	int n;

	if (p->backoff) {
		p->backoff--;
		return 0;
	}
	if (p->gap_ns > (uint64_t)p->window_us * 1000 * POLL_GAP_WINDOWS)
		return 0;
	p->polls++;
	do {
		n = epoll_wait(l->epfd, evs, max, 0);
		if (n)
			break;
		sched_yield();
	} while (monotonic_ns() < end);
	if (n > 0) {
		p->hits++;
		p->penalty /= 2;
	} else {
		/* Nothing came: that was CPU for nothing, back off. */
		p->penalty = p->penalty ? p->penalty * 2 : 1;
		if (p->penalty > POLL_BACKOFF_MAX)
			p->penalty = POLL_BACKOFF_MAX;
		p->backoff = p->penalty;
	}
	return n;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[64];
	int64_t wait = timers_wait_ms(&l->timers, monotonic_ms());
	uint64_t t0 = 0;
	int n = 0;

	if (wait >= 0 && (timeout_ms < 0 || wait < timeout_ms))
		timeout_ms = (int)wait;
	if (l->quiesce && timeout_ms)
		l->quiesce(l, true);
	if (l->poll.window_us && timeout_ms) {
		t0 = monotonic_ns();
		n = poll_first(l, evs, 64, t0);
	}
	if (!n)
		n = epoll_wait(l->epfd, evs, 64, timeout_ms);
	if (t0 && n > 0) {
		/* How long an event took to come: the average decides
		 * whether the next waits poll. */
		uint64_t gap = monotonic_ns() - t0;

		l->poll.gap_ns = l->poll.gap_ns - l->poll.gap_ns / 8 + gap / 8;
	}
	if (l->quiesce)
		l->quiesce(l, false);
	l->now_ms = monotonic_ms();
	if (n < 0 && errno != EINTR)
		return -errno;
	for (int i = 0; i < n; i++) {
		struct ev_handler *h = evs[i].data.ptr;

		h->fn(h, evs[i].events);
	}
	timers_run(&l->timers, l->now_ms);
	return 0;
}

int loop_timer_in(struct loop *l, struct timer *t, uint64_t in_ms)
{
	return timer_set(&l->timers, t, l->now_ms + in_ms);
}

void loop_timer_cancel(struct loop *l, struct timer *t)
{
	timer_cancel(&l->timers, t);
}
