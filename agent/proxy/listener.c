// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Listening sockets (bound here or inherited from the agent before us),
 * accepting connections and finding each one's original destination in
 * the capture record the kernel filed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <llhttp.h>
#include "kernel/bpf.h"
#include "state/dstguard.h"
#include "core/hmap.h"
#include "proxy/http.h"
#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/pool.h"
#include "proxy/reqstats.h"
#include "proxy/route.h"
#include "state/store.h"
#include "core/util.h"
#include "proxy/proxy_int.h"

/* Read and remove a connection's record: one system call where the kernel
 * can (LOOKUP_AND_DELETE on hash maps, 5.14), two where it cannot. */
static int map_take(struct proxy *p, int fd, const void *key, void *val)
{
	if (!p->no_take) {
		if (!bpf_map_lookup_and_delete_elem(fd, key, val))
			return 0;
		if (errno != EINVAL && errno != ENOTSUPP_KERNEL && errno != EOPNOTSUPP)
			return -errno;
		p->no_take = true;
	}
	if (bpf_map_lookup_elem(fd, key, val))
		return -errno;
	bpf_map_delete_elem(fd, key);
	return 0;
}

/* Find the destination the application asked for, and its pod. The
 * sockops program filed it under the client's address before the
 * handshake completed, so it is there by the time accept() returns.
 * false: not captured by shunt (c is closed). */
static bool take_capture_record(struct proxy *p, struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct shunt_orig orig;
	struct shunt_conn_src src;
	char a[ADDR_STR_LEN];

	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) ||
	    addr_from_sockaddr((struct sockaddr *)&ss, &c->peer) ||
	    map_take(p, p->bpf->conns_fd, &c->peer, &orig)) {
		p->st.unknown++;
		pr_debug("connection from %s was not captured by shunt: closing",
			 format_addr_port(&c->peer, a, sizeof(a)));
		client_close(c);
		return false;
	}
	c->orig = orig.dst;
	if (p->track_pods) {
		/* Captured by an agent before us (a takeover) or evicted:
		 * served, but not counted against a pod. */
		if (map_take(p, p->bpf->conn_src_fd, &c->peer, &src))
			p->st.pod_unknown++;
		else
			pod_attach(c, src.netns);
	}
	return true;
}

struct conn *conn_new(struct proxy *p, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c) {
		close(fd);
		return NULL;
	}
	c->h.fn = client_event;
	timer_init(&c->timer, client_timer_fired);
	c->p = p;
	c->fd = fd;
	c->first = true;
	p->st.accepted++;
	p->st.active++;
	c->next = p->clients;
	if (p->clients)
		p->clients->prev = c;
	p->clients = c;
	return c;
}

bool conn_begin(struct conn *c)
{
	client_reset_request(c);
	if (loop_add(c->p->loop, c->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->h)) {
		pr_warn("epoll add: %s", strerror(errno));
		client_close(c);
		return false;
	}
	return true;
}

static void accept_one(struct proxy *p, int fd)
{
	struct conn *c = conn_new(p, fd);

	if (!c || !take_capture_record(p, c) || !conn_begin(c))
		return;
	/*
	 * At a limit the kernel stops capturing (fail open: the connections
	 * go where the applications were going). Connections captured before
	 * it heard are here already, at most a listen backlog of them: they
	 * are served like any other, since the only alternative left would be
	 * to refuse them.
	 */
	if (p->o.max_conns && p->st.active >= p->o.max_conns) {
		if (p->st.active > p->o.max_conns)
			p->st.over_limit++;
		if (!p->conn_limited)
			conn_limit_set(p, true);
	}
}

static void listener_event(struct ev_handler *h, uint32_t events)
{
	struct listener *l = (struct listener *)h;

	/* Edge-triggered: drain the whole backlog, or the connections left
	 * in it wait for the next one to arrive. */
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && l->p->spare_fd >= 0) {
				/* Out of descriptors: refuse the oldest waiting
				 * connection with a close instead of leaving the
				 * backlog to stall until the next edge. */
				close(l->p->spare_fd);
				fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0)
					close(fd);
				l->p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				l->p->st.refused++;
				pr_warn("out of file descriptors: refused a connection");
				if (fd >= 0)
					continue;
				return;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pr_warn("accept: %s", strerror(errno));
			return;
		}
		accept_one(l->p, fd);
	}
}

/* An inherited listening socket bound to exactly a, or -1. */
static int take_inherited(struct proxy_opts *o, const struct shunt_addr *a)
{
	for (int i = 0; i < o->n_inherited; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct shunt_addr got;
		int fd = o->inherited[i];

		if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) ||
		    addr_from_sockaddr((struct sockaddr *)&ss, &got) ||
		    memcmp(&got, a, sizeof(got)))
			continue;
		o->inherited[i] = -1;
		return fd;
	}
	return -1;
}

/* A new listening socket on a (s: a, printed): the fd, or -errno. */
static int bind_listener(const struct shunt_addr *a, const char *s)
{
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(a, &ss);
	int one = 1, err, fd;

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Accepted sockets inherit TCP_NODELAY from the listener. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* An agent that just stopped may hold the port for its last
	 * moments of draining: wait for it a little. */
	for (int tries = 0;; tries++) {
		if (!bind(fd, (struct sockaddr *)&ss, sl))
			break;
		err = -errno;
		if (err != -EADDRINUSE || tries >= 50) {
			pr_err("proxy listen on %s: %s", s, strerror(-err));
			close(fd);
			return err;
		}
		if (tries == 0)
			pr_info("proxy address %s in use; waiting up to 5 s for it", s);
		usleep(100 * 1000);
	}
	if (listen(fd, 4096)) {
		err = -errno;
		pr_err("proxy listen on %s: %s", s, strerror(-err));
		close(fd);
		return err;
	}
	pr_info("proxy listening on %s", s);
	return fd;
}

int listen_on(struct proxy *p, const struct shunt_addr *a)
{
	struct listener *l = &p->listeners[p->n_listeners];
	char s[ADDR_STR_LEN];
	int err;

	format_addr_port(a, s, sizeof(s));
	l->fd = take_inherited(&p->o, a);
	if (l->fd >= 0) {
		/* Handed over by the agent before us, with its backlog: not
		 * one waiting connection is lost. */
		fcntl(l->fd, F_SETFL, fcntl(l->fd, F_GETFL) | O_NONBLOCK);
		fcntl(l->fd, F_SETFD, FD_CLOEXEC);
		pr_info("proxy listening on %s (taken over)", s);
		goto registered;
	}
	l->fd = bind_listener(a, s);
	if (l->fd < 0)
		return l->fd;
registered:
	l->h.fn = listener_event;
	l->p = p;
	l->family = a->family;
	err = loop_add(p->loop, l->fd, EPOLLIN | EPOLLET, &l->h);
	if (!err)
		err = shunt_bpf_set_listener(p->bpf,
					     a->family == SHUNT_FAMILY_V4 ? SHUNT_LISTENER_V4
									  : SHUNT_LISTENER_V6,
					     l->fd);
	if (err) {
		pr_err("register proxy listener %s: %s", s, strerror(-err));
		close(l->fd);
		return err;
	}
	p->n_listeners++;
	if (l->fd >= 0 && !p->draining)
		listener_event(&l->h, EPOLLIN); /* a handed-over backlog has no new edge */
	return 0;
}

void close_listeners(struct proxy *p)
{
	for (int i = 0; i < p->n_listeners; i++) {
		loop_del(p->loop, p->listeners[i].fd);
		close(p->listeners[i].fd);
	}
	p->n_listeners = 0;
	p->listen_close_at = 0;
}

int proxy_listener_fds(struct proxy *p, int fds[2])
{
	for (int i = 0; i < p->n_listeners; i++)
		fds[i] = p->listeners[i].fd;
	return p->n_listeners;
}
