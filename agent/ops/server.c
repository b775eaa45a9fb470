// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The small connection server (see server.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "ops/server.h"

void srv_drain_input(int fd)
{
	char junk[4096];

	for (int i = 0; i < 16; i++)
		if (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
			return;
}

void srv_close(struct srv_conn *c)
{
	struct srv *s = c->srv;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	loop_timer_cancel(s->loop, &c->deadline);
	loop_del(s->loop, c->fd);
	if (s->ops->fini)
		s->ops->fini(c);
	srv_drain_input(c->fd);
	close(c->fd);
	free(c);
}

static void conn_expired(struct timer *t)
{
	struct srv_conn *c = (struct srv_conn *)((char *)t - offsetof(struct srv_conn, deadline));

	if (c->srv->ops->expired)
		c->srv->ops->expired(c);
	srv_close(c);
}

static void conn_event(struct ev_handler *h, uint32_t events)
{
	struct srv_conn *c = (struct srv_conn *)h;

	c->srv->ops->event(c, events);
}

unsigned int srv_conns_from(const struct srv *s, const struct shunt_addr *peer)
{
	unsigned int n = 0;

	for (const struct srv_conn *c = s->conns; c; c = c->next)
		n += (unsigned int)addr_equal(&c->peer, peer);
	return n;
}

/* A new connection on the list and the loop; false: it was dropped. */
static bool conn_new(struct srv *s, int fd, const struct shunt_addr *peer)
{
	struct srv_conn *c = calloc(1, s->ops->conn_size);

	if (!c) {
		close(fd);
		return false;
	}
	c->h.fn = conn_event;
	c->srv = s;
	c->fd = fd;
	c->peer = *peer;
	timer_init(&c->deadline, conn_expired);
	if ((s->ops->init && s->ops->init(c)) ||
	    loop_timer_in(s->loop, &c->deadline, s->ops->timeout_ms) ||
	    loop_add(s->loop, fd, s->ops->events | EPOLLET, &c->h)) {
		loop_timer_cancel(s->loop, &c->deadline);
		if (s->ops->fini)
			s->ops->fini(c);
		close(fd);
		free(c);
		return false;
	}
	c->next = s->conns;
	if (c->next)
		c->next->prev = c;
	s->conns = c;
	s->nconns++;
	return true;
}

static void listener_event(struct ev_handler *h, uint32_t events)
{
	struct srv *s = (struct srv *)h;

	(void)events;
	/* Edge-triggered: take the whole backlog. */
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct shunt_addr peer = {};
		int fd = accept4(s->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pr_warn("%s: accept: %s", s->name, strerror(errno));
			return;
		}
		if (addr_from_sockaddr((struct sockaddr *)&ss, &peer) == 0)
			peer.port = 0;
		else
			memset(&peer, 0, sizeof(peer));
		if (s->ops->admit && !s->ops->admit(s, &peer)) {
			s->ops->refuse(s, fd);
			continue;
		}
		conn_new(s, fd, &peer);
	}
}

int srv_start(struct srv *s, struct loop *l, int fd, const struct srv_ops *ops, void *owner)
{
	int err;

	memset(s, 0, sizeof(*s));
	s->h.fn = listener_event;
	s->loop = l;
	s->ops = ops;
	s->name = ops->name;
	s->owner = owner;
	s->fd = fd;
	if (loop_add(l, fd, EPOLLIN | EPOLLET, &s->h)) {
		err = -errno;
		close(fd);
		s->fd = -1;
		return err;
	}
	return 0;
}

void srv_stop(struct srv *s)
{
	while (s->conns)
		srv_close(s->conns);
	if (s->fd >= 0) {
		loop_del(s->loop, s->fd);
		close(s->fd);
		s->fd = -1;
	}
}
