// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
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

int loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[64];
	int64_t wait = timers_wait_ms(&l->timers, monotonic_ms());
	int n;

	if (wait >= 0 && (timeout_ms < 0 || wait < timeout_ms))
		timeout_ms = (int)wait;
	n = epoll_wait(l->epfd, evs, 64, timeout_ms);
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
