// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Upstream connections: a new one or a pooled one (pool.c) for the current
 * exchange, the upstream limits, and what happens when one fails (retry,
 * fallback to the baseline, or an error response).
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

static uint32_t up_events(void)
{
	return EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
}

static struct upstream *up_of(struct pool_link *l)
{
	return (struct upstream *)((char *)l - offsetof(struct upstream, link));
}

/* u no longer works for a client (the exchange ended or u closes). */
static void up_disown(struct upstream *u)
{
	u->owner = NULL;
	if (u->hold) {
		hold_put(u->p, u->hold, false);
		u->hold = NULL;
	}
}

void up_close(struct upstream *u)
{
	struct proxy *p = u->p;

	if (u->dead)
		return;
	if (u->state == UP_IDLE)
		pool_idle_remove(u->pool, &u->link);
	u->pool->open--;
	if (u->counted)
		dst_put(p, &u->dst);
	if (u->owner && u->owner->s.up == u)
		u->owner->s.up = NULL;
	up_disown(u);
	loop_del(p->loop, u->fd);
	close(u->fd);
	u->fd = -1;
	u->dead = true;
	conn_buf_release(p, &u->in);
	u->dead_next = p->dead_ups;
	p->dead_ups = u;
}

/* pool_sweep() closes an idle connection. */
void up_close_idle(struct pool_link *l)
{
	up_close(up_of(l));
}

/* A finished exchange: keep the connection for the next request to dst. */
void up_release(struct upstream *u)
{
	struct proxy *p = u->p;
	struct pool_dst *pl;

	up_disown(u);
	pl = u->pool;
	if (pl->n_idle >= p->o.max_idle_per_dst || u->eof || u->in.end != u->parsed) {
		up_close(u);
		return;
	}
	conn_buf_release(p, &u->in);
	if (u->counted) {
		/* --max-upstream-conns counts connections in use: an idle
		 * one in this worker's pool must not keep the other workers
		 * (which cannot use it) from the sandbox. */
		dst_put(p, &u->dst);
		u->counted = false;
	}
	u->parsed = 0;
	u->state = UP_IDLE;
	u->reused = true;
	pool_idle_push(pl, &u->link, p->loop->now_ms);
}

static void up_event(struct ev_handler *h, uint32_t events)
{
	struct upstream *u = (struct upstream *)h;

	if (u->dead)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->rd = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->rdhup = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		u->wr = true;
	if (u->state == UP_IDLE) {
		/* An idle connection has nothing to say: readable means the
		 * server closed it (or broke protocol), and either way it is
		 * no longer usable. Write space (the ACK of the last request
		 * arriving late) says nothing. */
		if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			up_close(u);
		return;
	}
	if (u->owner)
		client_pump(u->owner);
}

int upstream_dial(struct proxy *p, const struct pool *root, const struct shunt_addr *dst,
		  int *conn_err)
{
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(dst, &ss);
	int one = 1, fd;

	*conn_err = 0;
	if (p->dial) {
		fd = p->dial(p, dst);
		if (fd < 0) {
			errno = -fd;
			return -1;
		}
		return fd;
	}
	/* In-pod: made in the pod's network namespace, the connection
	 * leaves from the pod's address. */
	if (root->in_pod)
		fd = inpod_socket(p, root->nsfd, ss.ss_family);
	else
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (root->in_pod && infer_relay_dst(root, dst)) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		inet_pton(AF_INET, INFER_RELAY_SRC4, &src.sin_addr);
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)))
			pr_debug("bind the relay to %s: %s", INFER_RELAY_SRC4, strerror(errno));
	}
	/* The mark keeps our own connect() out of cgroup/connect's reach. */
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &p->o.mark, sizeof(p->o.mark)))
		pr_debug("SO_MARK on upstream socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS)
		*conn_err = errno;
	return fd;
}

/* limited: dst is a sandbox, which --max-upstream-conns protects. A request
 * without a route goes where the application was going anyway: no upstream
 * limit applies to it (the connection limits bound those). */
static struct upstream *up_new(struct proxy *p, struct pool *root, const struct shunt_addr *dst,
			       bool limited)
{
	struct pool_dst *pl = pool_dst_get(root, dst, true);
	struct upstream *u;
	int fd, conn_err;

	if (!pl) {
		errno = ENOMEM;
		return NULL;
	}
	/* Checked again here, not only when the route was added: the node's
	 * addresses change, and the original destination of a captured
	 * connection was never a route's. */
	if (dstguard_check(&p->snap->guard, dst) != DST_OK) {
		p->st.dst_refused++;
		errno = EDST_REFUSED;
		return NULL;
	}
	limited = limited && p->o.max_upstream_per_dst;
	if (limited && !dst_take(p, dst))
		return NULL;
	fd = upstream_dial(p, root, dst, &conn_err);
	u = fd < 0 ? NULL : calloc(1, sizeof(*u));
	if (!u) {
		if (fd >= 0)
			close(fd);
		if (limited)
			dst_put(p, dst);
		return NULL;
	}
	u->counted = limited;
	u->h.fn = up_event;
	u->p = p;
	u->fd = fd;
	u->dst = *dst;
	u->pool = pl;
	u->state = UP_CONNECTING;
	if (conn_err) {
		/* Reported by the pump like an asynchronous failure. */
		u->conn_err = conn_err;
		u->rd = u->wr = true;
	}
	if (loop_add(p->loop, fd, up_events(), &u->h)) {
		close(fd);
		free(u);
		if (limited)
			dst_put(p, dst);
		return NULL;
	}
	pl->open++;
	p->st.upstream_connects++;
	return u;
}

/* A pooled connection if one is idle, else a new one. */
static struct upstream *up_get(struct proxy *p, struct pool *root, const struct shunt_addr *dst,
			       bool fresh, bool limited)
{
	struct pool_dst *pl = fresh ? NULL : pool_dst_get(root, dst, false);
	struct pool_link *l;
	struct upstream *u;

	while (pl && (l = pool_idle_pop(pl))) {
		char probe;
		ssize_t n;

		u = up_of(l);
		u->state = UP_ACTIVE;
		/* A server that closed an idle connection (or wrote to it out
		 * of turn) may not have been heard yet: look before reusing
		 * one that sat idle a while. Servers do not close keep-alive
		 * connections within a second of a response, so the request
		 * loops of busy clients save the system call. */
		if (p->loop->now_ms - u->link.since >= POOL_PEEK_AFTER_MS) {
			n = recv(u->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
			if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				up_close(u);
				continue;
			}
		}
		if (limited && p->o.max_upstream_per_dst) {
			if (!dst_take(p, dst)) {
				int err = errno;

				/* at the limit: it stays idle for later */
				u->state = UP_IDLE;
				pool_idle_push(pl, &u->link, u->link.since);
				errno = err;
				return NULL;
			}
			u->counted = true;
		}
		p->st.upstream_reused++;
		return u;
	}
	return up_new(p, root, dst, limited);
}

/* Get a connection to c->s.dst for the current request: pooled unless
 * fresh, with a response parser ready. Returns false when none can be had. */
bool attach_upstream(struct conn *c, bool fresh)
{
	struct proxy *p = c->p;
	struct pod_hold *h = NULL;
	struct upstream *u;

	if (c->s.to_sandbox && c->pod && p->o.max_upstream_per_pod) {
		h = hold_take(p, c->pod->netns, &c->s.dst, false);
		if (!h) {
			if (errno == EPOD_UPSTREAM_LIMIT)
				p->st.pod_upstream_limit++;
			return false;
		}
	}
	u = up_get(p, conn_pool(c), &c->s.dst, fresh, c->s.to_sandbox);
	if (!u) {
		if (h) {
			int err = errno;

			hold_put(p, h, false);
			errno = err;
		}
		return false;
	}
	c->s.up = u;
	u->owner = c;
	u->hold = h;
	llhttp_init(&u->resp, HTTP_RESPONSE, &p->resp_settings);
	/* An interim response that says "close" must not stop the parser
	 * before the final response it announces. */
	llhttp_set_lenient_keep_alive(&u->resp, 1);
	u->resp.data = c;
	c->s.up_connected = u->state != UP_CONNECTING;
	client_set_deadline(c, c->s.up_connected ? p->o.idle_timeout_ms : p->o.connect_timeout_ms);
	return true;
}

/* No connection could be had for the current request. */
void no_upstream(struct conn *c, int err)
{
	struct proxy *p = c->p;
	char a[ADDR_STR_LEN], who[INET6_ADDRSTRLEN], tail[96];

	format_addr_port(&c->s.dst, a, sizeof(a));
	if (err == EPOD_UPSTREAM_LIMIT) {
		if (limit_log(p, p->st.pod_upstream_limit, tail, sizeof(tail)))
			pr_warn("pod %s (netns %llu): its requests hold %zu connections to "
				"sandbox %s (--max-upstream-conns-per-pod %zu): answering 503 (%s)",
				pod_name(c->pod, who, sizeof(who)),
				(unsigned long long)c->pod->netns, p->o.max_upstream_per_pod, a,
				p->o.max_upstream_per_pod, tail);
		client_error(c, 503,
			     "shunt: this pod's requests hold %zu connections to sandbox %s, the "
			     "limit (--max-upstream-conns-per-pod); try again",
			     p->o.max_upstream_per_pod, a);
	} else if (err == EUPSTREAM_LIMIT)
		client_error(c, 503,
			     "shunt: %zu connections to %s are in use, the limit "
			     "(--max-upstream-conns); try again",
			     c->p->o.max_upstream_per_dst, a);
	else if (err == EDST_REFUSED)
		client_error(
			c, 502,
			"shunt: refusing to connect to %s: it is %s; shunt never sends traffic "
			"to the node",
			a, dst_class_text(dstguard_check(&c->p->snap->guard, &c->s.dst)));
	else
		client_error(c, 503, "shunt: no connection to %s: %s", a, strerror(err));
}

/* The upstream could not be reached, or died before answering. */
void upstream_failed(struct conn *c, int err)
{
	struct proxy *p = c->p;
	char a[ADDR_STR_LEN], b[ADDR_STR_LEN];
	bool retry = false, reused = c->s.up && c->s.up->reused;

	format_addr_port(&c->s.dst, a, sizeof(a));
	if (c->s.resp_started || c->s.no_retry) {
		/* Nothing can be sent again. */
	} else if (reused && c->s.up_connected && c->s.idempotent && c->s.attempts == 0) {
		/* A pooled connection the server had closed: send the request
		 * once more on a new one. Never a non-idempotent one: the
		 * server may have acted on it before closing. */
		retry = true;
		p->st.retries++;
	} else if (c->s.to_sandbox && c->s.fallback && !c->s.up_connected) {
		/* The sandbox cannot be reached at all: the route asks for the
		 * baseline instead. Nothing was sent anywhere yet. */
		pr_info("sandbox %s for key %s unreachable (%s): falling back to baseline %s", a,
			c->s.key, strerror(err), format_addr_port(&c->orig, b, sizeof(b)));
		c->s.dst = c->orig;
		c->s.to_sandbox = false;
		p->st.fallbacks++;
		retry = true;
	}
	if (c->s.up)
		up_close(c->s.up);
	if (retry) {
		c->s.attempts++;
		c->sent = c->s.req_start;
		if (attach_upstream(c, true))
			return;
		err = errno;
		if ((err == EUPSTREAM_LIMIT || err == EPOD_UPSTREAM_LIMIT || err == EDST_REFUSED) &&
		    !c->s.resp_started) {
			no_upstream(c, err);
			return;
		}
	}
	if (c->s.resp_started) {
		c->s.obs.on_close = RS_UPSTREAM_ERROR;
		client_close(c); /* part of a response went out: all we can do */
		return;
	}
	if (c->s.to_sandbox)
		client_error(c, err == ETIMEDOUT ? 503 : 502,
			     "shunt: sandbox %s for routing key \"%s\" is unreachable: %s", a,
			     c->s.key, strerror(err));
	else
		client_error(c, err == ETIMEDOUT ? 503 : 502,
			     "shunt: upstream %s is unreachable: %s", a, strerror(err));
}
