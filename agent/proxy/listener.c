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

int map_take(struct proxy *p, int fd, const void *key, void *val)
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
int conn_peer(struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl))
		return -1;
	return addr_from_sockaddr((struct sockaddr *)&ss, &c->peer) ? -1 : 0;
}

static bool take_capture_record(struct proxy *p, struct conn *c)
{
	struct shunt_orig orig;
	struct shunt_conn_src src;
	char a[ADDR_STR_LEN];

	if (conn_peer(c) || map_take(p, p->sh->bpf->conns_fd, &c->peer, &orig)) {
		p->st.unknown++;
		pr_debug("connection from %s was not captured by shunt: closing",
			 format_addr_port(&c->peer, a, sizeof(a)));
		client_close(c);
		return false;
	}
	c->orig = orig.dst;
	if (p->sh->track_pods) {
		/* Captured by an agent before us (a takeover) or evicted:
		 * served, but not counted against a pod. */
		if (map_take(p, p->sh->bpf->conn_src_fd, &c->peer, &src))
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
	conn_count_up(p);
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

static void accept_one(struct proxy *p, int fd, void *ctx)
{
	struct conn *c = conn_new(p, fd);

	(void)ctx;
	if (c && take_capture_record(p, c))
		conn_begin(c);
}

void accept_backlog(struct proxy *p, int lfd, void (*take)(struct proxy *p, int fd, void *ctx),
		    void *ctx)
{
	/* Edge-triggered: drain the whole backlog, or the connections left
	 * in it wait for the next one to arrive. */
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && p->spare_fd >= 0) {
				/* Out of descriptors: refuse the oldest waiting
				 * connection with a close instead of leaving the
				 * backlog to stall until the next edge. */
				close(p->spare_fd);
				fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0)
					close(fd);
				p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				p->st.refused++;
				pr_warn("out of file descriptors: refused a connection");
				if (fd >= 0)
					continue;
				return;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pr_warn("accept: %s", strerror(errno));
			return;
		}
		take(p, fd, ctx);
	}
}

static void listener_event(struct ev_handler *h, uint32_t events)
{
	struct listener *l = (struct listener *)h;

	(void)events;
	accept_backlog(l->p, l->fd, accept_one, NULL);
}

/* The address a listening socket is bound to; 0 or -1. */
static int bound_to(int fd, struct shunt_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -1;
	return addr_from_sockaddr((struct sockaddr *)&ss, a);
}

/* An inherited listening socket bound to exactly a, or -1. */
static int take_inherited(struct proxy_opts *o, const struct shunt_addr *a)
{
	for (int i = 0; i < o->n_inherited; i++) {
		struct shunt_addr got;
		int fd = o->inherited[i];

		if (fd < 0 || bound_to(fd, &got) || memcmp(&got, a, sizeof(got)))
			continue;
		o->inherited[i] = -1;
		return fd;
	}
	return -1;
}

/* A TCP socket bound to ss, with SO_REUSEPORT when shared: the fd or
 * -errno. An agent that just stopped may hold the port for its last
 * moments of draining: wait for it a little. */
static int bind_tcp(const struct sockaddr_storage *ss, socklen_t sl, bool shared, const char *s)
{
	int one = 1, err, fd;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (shared)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	for (int tries = 0;; tries++) {
		if (!bind(fd, (const struct sockaddr *)ss, sl))
			return fd;
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
}

/* A new listening socket on a (s: a, printed): the fd, or -errno. Every
 * worker has one on the same address (SO_REUSEPORT): the kernel hands a
 * connection to one of them (workers.c says which). The first (first)
 * must not join sockets of anyone else's, a second agent started on the
 * same address without taking over included: SO_REUSEPORT would let it,
 * so the address is first bound without, to see that it is free. */
static int bind_listener(const struct shunt_addr *a, const char *s, bool first)
{
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(a, &ss);
	int one = 1, err, fd;

	if (first) {
		fd = bind_tcp(&ss, sl, false, s);
		if (fd < 0)
			return fd;
		close(fd);
	}
	fd = bind_tcp(&ss, sl, true, s);
	if (fd < 0)
		return fd;
	/* Accepted sockets inherit TCP_NODELAY from the listener. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (listen(fd, 4096)) {
		err = -errno;
		pr_err("proxy listen on %s: %s", s, strerror(-err));
		close(fd);
		return err;
	}
	return fd;
}

/* fd (listening on a) joins the loop as one of p's listeners. */
static int listener_add(struct proxy *p, int fd, const struct shunt_addr *a, uint64_t close_at)
{
	struct listener *l;
	int err;

	if (p->n_listeners == PROXY_MAX_LISTENERS)
		return -ENOSPC;
	l = &p->listeners[p->n_listeners];
	l->h.fn = listener_event;
	l->p = p;
	l->fd = fd;
	l->family = a->family;
	l->close_at = close_at;
	err = loop_add(p->loop, fd, EPOLLIN | EPOLLET, &l->h);
	if (err)
		return err;
	p->n_listeners++;
	if (!p->draining)
		listener_event(&l->h, EPOLLIN); /* a handed-over backlog has no new edge */
	return 0;
}

int listen_on(struct proxy *p, const struct shunt_addr *a)
{
	char s[ADDR_STR_LEN];
	int err, fd, one = 1;

	format_addr_port(a, s, sizeof(s));
	fd = take_inherited(&p->o, a);
	if (fd >= 0) {
		/* Handed over by the agent before us, with its backlog: not
		 * one waiting connection is lost. An agent from before
		 * workers did not set SO_REUSEPORT: set now, the other
		 * workers' sockets can join it. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		pr_debug("worker %d: proxy listening on %s (taken over)", p->id, s);
	} else {
		fd = bind_listener(a, s, !p->id);
		if (fd < 0)
			return fd;
		pr_debug("worker %d: proxy listening on %s", p->id, s);
	}
	err = listener_add(p, fd, a, 0);
	/* Worker 0's listeners stand for all in the sockmap: the slot
	 * empties when the agent dies (fail open). */
	if (!err && !p->id)
		err = shunt_bpf_set_listener(
			p->sh->bpf,
			a->family == SHUNT_FAMILY_V4 ? SHUNT_LISTENER_V4 : SHUNT_LISTENER_V6, fd);
	if (err) {
		pr_err("register proxy listener %s: %s", s, strerror(-err));
		close(fd);
		return err;
	}
	return 0;
}

void listen_adopt(struct proxy *p, int fd)
{
	struct shunt_addr a;
	bool ours = false;

	if (!bound_to(fd, &a))
		for (int i = 0; i < p->o.n_listen; i++)
			ours = ours || !memcmp(&a, &p->o.listen[i], sizeof(a));
	/* The kernel hands it nothing new once our reuseport program is in
	 * (workers.c); what is queued on it is accepted until it closes. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (!ours || listener_add(p, fd, &a, p->loop->now_ms + LISTEN_GRACE_MS)) {
		pr_warn("a handed-over listener %s: closing it",
			ours ? "is one too many to serve" : "matches no --proxy-addr");
		close(fd);
	}
}

static void listener_close(struct proxy *p, int i)
{
	struct listener *l = &p->listeners[i];

	loop_del(p->loop, l->fd);
	close(l->fd);
	if (i != --p->n_listeners) {
		/* The last one moves into the gap: the loop gets its new
		 * address (epoll hands back the handler pointer). */
		*l = p->listeners[p->n_listeners];
		loop_mod(p->loop, l->fd, EPOLLIN | EPOLLET, &l->h);
	}
}

void listeners_expire(struct proxy *p)
{
	for (int i = 0; i < p->n_listeners; i++)
		if (p->listeners[i].close_at && p->loop->now_ms >= p->listeners[i].close_at) {
			/* Whatever reached it since the last edge. */
			listener_event(&p->listeners[i].h, EPOLLIN);
			listener_close(p, i--);
		}
}

void close_listeners(struct proxy *p)
{
	while (p->n_listeners)
		listener_close(p, 0);
	p->listen_close_at = 0;
}

int proxy_listener_fds(struct proxy *p, int *fds, int max)
{
	int n = 0;

	for (int i = 0; i < p->n_listeners && n < max; i++)
		if (!p->listeners[i].close_at)
			fds[n++] = p->listeners[i].fd;
	return n;
}
