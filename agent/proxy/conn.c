// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A client connection (struct conn): its buffers, reading from it, the
 * pump that moves bytes between it and its upstream, and its deadlines.
 * What the bytes mean is h1.c's (or tunnel.c's) business.
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
#include "proxy/h2.h"
#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/pool.h"
#include "proxy/reqstats.h"
#include "proxy/route.h"
#include "state/store.h"
#include "core/util.h"
#include "proxy/proxy_int.h"

/* Room to read into b: when it is full, grow it, doubling from
 * BUF_INITIAL, to at most limit bytes. 0, -ENOBUFS at the limit (the
 * other side must take bytes first), or -ENOMEM. */
int conn_buf_grow(struct proxy *p, struct buf *b, uint32_t limit)
{
	size_t have = b->cap ? b->cap - 1 : 0, want;

	if (buf_room(b))
		return 0;
	if (have >= limit)
		return -ENOBUFS;
	if (!have && limit >= BUF_INITIAL && p->n_spare) {
		/* A buffer another exchange of this worker let go of: still
		 * in the cache, and no allocator call. */
		b->data = p->spare[--p->n_spare];
		b->data[0] = '\0';
		b->start = b->end = 0;
		b->cap = b->max = BUF_INITIAL + 1;
		return 0;
	}
	want = have ? 2 * have : BUF_INITIAL;
	if (want > limit)
		want = limit;
	b->max = want + 1; /* exactly that, and core/buf's '\0' after the bytes */
	return buf_reserve(b, want - b->end);
}

void conn_buf_release(struct proxy *p, struct buf *b)
{
	if (b->cap != BUF_INITIAL + 1 || p->n_spare == BUF_SPARE_MAX) {
		buf_free(b);
		return;
	}
	p->spare[p->n_spare++] = b->data;
	b->data = NULL;
	b->start = b->end = b->cap = 0;
	b->failed = false;
}

/*
 * The deadline moves with every byte that moves, nearly always later: it
 * is kept in c->deadline, and the loop's timer heap is touched only when
 * the deadline comes sooner than the timer it has. A timer that fires
 * before the deadline re-arms for it (as nginx's lazy timers do). No
 * deadline (ms 0) leaves the timer to fire and find nothing to do.
 */
void client_set_deadline(struct conn *c, uint64_t ms)
{
	struct loop *l = c->p->loop;

	if (c->dead)
		return; /* a closed connection's timer stays off: it is freed soon */
	c->deadline = ms ? l->now_ms + ms : 0;
	if (!ms || (timer_armed(&c->timer) && c->timer.at_ms <= c->deadline))
		return;
	if (loop_timer_in(l, &c->timer, ms))
		pr_warn("no memory for a connection's timer: it has no deadline");
}

void client_timer_fired(struct timer *t)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
	struct loop *l = c->p->loop;

	if (c->dead || !c->deadline)
		return;
	if (c->deadline > l->now_ms) {
		if (loop_timer_in(l, t, c->deadline - l->now_ms))
			pr_warn("no memory for a connection's timer: it has no deadline");
		return;
	}
	client_expired(c);
}

void client_reset_request(struct conn *c)
{
	infer_in_end(&c->s.inf, rs_now_ns());
	c->s.head_done = c->s.req_done = c->s.resp_done = c->s.resp_started = false;
	c->s.is_head = c->s.is_connect = c->s.want_upgrade = c->s.idempotent = false;
	c->s.no_retry = c->s.up_connected = c->s.to_sandbox = c->s.fallback = false;
	c->s.h2c_no = c->s.pipelined = c->s.inf_tunnel = false;
	c->s.close_state = CLOSE_UNDECIDED;
	c->s.attempts = 0;
	c->s.body = BODY_NONE;
	c->s.body_left = 0;
	memset(&c->s.ck, 0, sizeof(c->s.ck));
	c->s.head_len = 0;
	c->s.key[0] = '\0';
	c->s.obs = (struct req_obs){.on_close = RS_CLIENT_ABORT};
	if (c->sent == c->in.end) {
		/* Nothing pipelined: an idle keep-alive connection holds no
		 * buffer, so thousands of them cost little memory. */
		conn_buf_release(c->p, &c->in);
		c->sent = c->parsed = 0;
	}
	c->s.req_start = c->sent;
	c->state = C_HEAD;
	llhttp_init(&c->s.req, HTTP_REQUEST, &c->p->req_settings);
	c->s.req.data = c;
	client_set_deadline(c, c->p->o.idle_timeout_ms);
}

/* The request under way on c ended: count it (reqstats.h says how) and,
 * when its service is steered, log it. */
void req_end(struct conn *c, enum rs_dest d, enum rs_outcome o, int status)
{
	struct proxy *p = c->p;
	uint64_t dur;

	if (!c->s.obs.t0_ns)
		return;
	dur = rs_now_ns() - c->s.obs.t0_ns;
	c->s.obs.t0_ns = 0;
	if (c->inbound)
		return; /* relayed to the pod's app: not a request to a service */
	if (d == RS_DEST_ERROR)
		c->s.obs.resp_bytes = c->out.start;
	reqstats_record(&p->rs, &c->orig, RS_HTTP1, d, o, dur);
	if (p->o.access_log && route_table_service_count(p->snap->t, &c->orig))
		rs_access_log(&c->orig, c->s.key, RS_HTTP1, d, c->s.obs.routed ? &c->s.dst : NULL,
			      status, o, &c->s.obs, dur);
}

/* The request under way ends now, however far it got. */
static void req_end_now(struct conn *c)
{
	int status = c->s.up && c->s.resp_started ? c->s.up->resp.status_code : 0;

	if (c->s.obs.status)
		req_end(c, RS_DEST_ERROR, rs_outcome_of_status(c->s.obs.status), c->s.obs.status);
	else if (c->state == C_REQUEST)
		req_end(c, c->s.to_sandbox ? RS_DEST_SANDBOX : RS_DEST_BASELINE,
			(enum rs_outcome)c->s.obs.on_close, status);
	else
		c->s.obs.t0_ns = 0; /* a head that never completed: not a request */
}

void client_close(struct conn *c)
{
	struct proxy *p = c->p;

	if (c->dead)
		return;
	/* Still in flight: the app may go on with it, unseen (a tunnel ends
	 * with its connection). */
	if (c->s.inf_tunnel)
		infer_in_end(&c->s.inf, rs_now_ns());
	else
		infer_in_abort(&c->s.inf, rs_now_ns());
	req_end_now(c);
	if (c->h2_wait)
		h2up_unwait(c, false);
	if (c->s.up)
		up_close(c->s.up);
	if (c->h2)
		h2_conn_free(c);
	loop_del(p->loop, c->fd);
	loop_timer_cancel(p->loop, &c->timer);
	close(c->fd);
	c->fd = -1;
	c->dead = true;
	conn_buf_release(p, &c->in);
	buf_free(&c->out);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = p->dead_clients;
	p->dead_clients = c;
	if (c->pod)
		pod_detach(c);
	if (c->inpod)
		p->st.inpod_active--;
	if (c->tc) {
		tc_conn_forget(c);
		p->st.tc_active--;
	}
	conn_count_down(p);
}

static const char *status_text(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 504:
		return "Gateway Timeout";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

/* Answer with a response of our own and close: whatever the client sent
 * after this point is not forwarded anywhere. */
void client_error(struct conn *c, int status, const char *fmt, ...)
{
	char body[512], head[256];
	va_list ap;
	int bl, hl;

	va_start(ap, fmt);
	bl = vsnprintf(body, sizeof(body) - 1, fmt, ap);
	va_end(ap);
	if (bl < 0)
		bl = 0;
	if (bl > (int)sizeof(body) - 2)
		bl = (int)sizeof(body) - 2;
	body[bl++] = '\n';
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
		      "Connection: close\r\nX-Shunt-Error: %d\r\n\r\n",
		      status, status_text(status), bl, status);
	if (status >= 500)
		c->p->st.errors++;
	else
		c->p->st.bad_requests++;
	c->s.obs.status = status;
	infer_in_abort(&c->s.inf, rs_now_ns()); /* shunt answered: the app may go on */
	if (!c->s.obs.t0_ns)
		c->s.obs.t0_ns = rs_now_ns();
	if (c->state == C_HEAD)
		c->s.obs.req_bytes = c->parsed - c->s.req_start;
	if (c->s.up)
		up_close(c->s.up);
	buf_free(&c->out);
	if (buf_append(&c->out, head, (size_t)hl) || buf_append(&c->out, body, (size_t)bl)) {
		client_close(c);
		return;
	}
	c->state = C_ERROR;
	client_set_deadline(c, LINGER_MS);
}

/* Write bytes from b[start, lim) to fd. Returns true on progress; sets
 * *ready false on EAGAIN, returns false with *err on failure. */
static bool write_out(int fd, struct buf *b, uint32_t lim, bool *ready, int *err)
{
	ssize_t n;

	*err = 0;
	if (!*ready || b->start >= lim)
		return false;
	n = send(fd, b->data + b->start, lim - b->start, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			*ready = false;
		else
			*err = errno;
		return false;
	}
	b->start += (uint32_t)n;
	return n > 0;
}

/* Make room in c->in for more request bytes. */
static void client_drop(struct conn *c, uint32_t shift)
{
	struct buf *b = &c->in;

	if (!shift)
		return;
	b->start = shift;
	buf_compact(b);
	c->parsed -= shift;
	c->sent -= shift;
	c->s.req_start = c->s.req_start >= shift ? c->s.req_start - shift : 0;
}

static int client_make_room(struct conn *c)
{
	struct buf *b = &c->in;
	uint32_t limit = BUF_STREAM_MAX;

	if (buf_room(b))
		return 0;
	if (c->state == C_HEAD && c->p->o.max_head_bytes + 4096 > limit)
		limit = (uint32_t)c->p->o.max_head_bytes + 4096;
	/* Bytes of earlier requests are done with; the current request's are
	 * kept while it may have to be sent again. */
	if (c->state == C_TUNNEL || c->s.no_retry)
		client_drop(c, c->sent);
	else
		client_drop(c, c->s.req_start < c->sent ? c->s.req_start : c->sent);
	if (buf_room(b) || conn_buf_grow(c->p, b, limit) == 0)
		return 0;
	if (c->state == C_REQUEST && c->sent > c->s.req_start) {
		/* Full of this request: let go of what was sent, and of any
		 * chance to send it again. */
		c->s.no_retry = true;
		client_drop(c, c->sent);
		return buf_room(b) ? 0 : -ENOBUFS;
	}
	return -ENOBUFS; /* back-pressure: the upstream must take bytes first */
}

static bool read_client(struct conn *c)
{
	ssize_t n;

	if (!c->rd || c->eof)
		return false;
	/* While a request is in flight, its bytes are all we read: a
	 * pipelined request stays in the kernel until its turn. */
	if (c->state == C_REQUEST && c->s.req_done)
		return false;
	if (client_make_room(c)) {
		if (c->state == C_HEAD) {
			c->p->rs.parse_errors[HTTP_ERR_HEAD_TOO_LARGE]++;
			client_error(c, 431, "shunt: request head larger than %zu bytes",
				     c->p->o.max_head_bytes);
			return true;
		}
		return false;
	}
	n = read(c->fd, buf_tail(&c->in), buf_room(&c->in));
	if (n > 0 && (size_t)n < buf_room(&c->in) && !c->rdhup)
		c->rd = false; /* short read: drained; the next byte brings an edge */
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->rd = false;
			return false;
		}
		client_close(c);
		return true;
	}
	if (n == 0) {
		c->eof = true;
		return true;
	}
	buf_commit(&c->in, (size_t)n);
	return true;
}

/* C_ERROR: write our answer out, then read and drop until the client
 * closes, so our answer is not destroyed by a reset. */
static void pump_error_reply(struct conn *c)
{
	int err;

	if (c->out.start < c->out.end) {
		write_out(c->fd, &c->out, c->out.end, &c->wr, &err);
		if (err) {
			client_close(c);
			return;
		}
		if (c->out.start == c->out.end) {
			shutdown(c->fd, SHUT_WR);
			req_end_now(c);
		}
	}
	while (c->rd && !c->eof) {
		char sink[4096];
		ssize_t n = read(c->fd, sink, sizeof(sink));

		if (n > 0)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			c->eof = true;
		c->rd = false;
	}
	if (c->eof && c->out.start == c->out.end)
		client_close(c);
}

/* Parse what arrived of the request; true when that moved anything. */
static bool pump_parse(struct conn *c)
{
	uint32_t before = c->parsed;
	enum client_state st = c->state;
	bool done = c->s.req_done;

	parse_request(c);
	if (c->dead)
		return false;
	return c->parsed != before || c->state != st || c->s.req_done != done;
}

/* Has u's connect() completed? 1: u is usable, 0: not yet, -1: it failed
 * (the client was answered or closed). *progress is set on a change. */
static int pump_connected(struct conn *c, struct upstream *u, bool *progress)
{
	socklen_t sl = sizeof(int);
	int soerr = 0;

	if (u->state == UP_CONNECTING && u->wr) {
		if (u->conn_err)
			soerr = u->conn_err;
		else if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
			soerr = errno;
		*progress = true;
		if (soerr) {
			if (c->state == C_TUNNEL)
				client_close(c); /* as the app's connect() would */
			else
				upstream_failed(c, soerr);
			return -1;
		}
		u->state = UP_ACTIVE;
		c->s.up_connected = true;
	}
	return u->state == UP_ACTIVE;
}

/* client -> upstream: the parsed request bytes (every byte in a tunnel).
 * false when the upstream failed (handled). */
static bool pump_to_upstream(struct conn *c, struct upstream *u, bool *progress)
{
	struct buf view = c->in;
	uint32_t lim = c->state == C_TUNNEL ? c->in.end : c->parsed;
	int err;

	view.start = c->sent;
	if (write_out(u->fd, &view, lim, &u->wr, &err))
		*progress = true;
	c->sent = view.start;
	if (err) {
		if (c->state == C_TUNNEL)
			client_close(c);
		else
			upstream_failed(c, err);
		*progress = true;
		return false;
	}
	if (c->state == C_TUNNEL && c->eof && c->sent == c->in.end && !c->shut_wr_up) {
		shutdown(u->fd, SHUT_WR);
		c->shut_wr_up = true;
	}
	return true;
}

/* upstream -> client: the parsed response bytes. false when the client
 * connection failed (closed). */
static bool pump_to_client(struct conn *c, struct upstream *u, bool *progress)
{
	uint32_t lim = u->parsed, before = u->in.start;
	int err;

	if (c->p->draining && c->s.close_state == CLOSE_UNDECIDED && c->state == C_REQUEST)
		lim = drain_inject(c);
	if (write_out(c->fd, &u->in, lim, &c->wr, &err))
		*progress = true;
	c->s.obs.resp_bytes += u->in.start - before;
	if (err) {
		client_close(c);
		return false;
	}
	return true;
}

/* One pass over both directions; true when something moved (false too
 * when c closed). */
static bool pump_once(struct conn *c)
{
	struct upstream *u;
	bool progress = read_client(c);

	if (c->dead)
		return false;
	if (c->state == C_HEAD || (c->state == C_REQUEST && !c->s.req_done)) {
		progress |= pump_parse(c);
		if (c->dead)
			return false;
		if (c->state == C_ERROR)
			return progress;
	}
	u = c->s.up;
	if (!u) {
		if (c->eof && c->state == C_HEAD && c->parsed == c->in.end) {
			client_close(c); /* client went away between requests */
			return false;
		}
		return progress;
	}
	if (pump_connected(c, u, &progress) <= 0)
		return progress;
	if (!pump_to_upstream(c, u, &progress))
		return progress;
	progress |= read_upstream(c);
	if (c->dead || c->s.up != u || c->state == C_ERROR)
		return progress;
	if (!pump_to_client(c, u, &progress))
		return false;
	if (c->state == C_TUNNEL)
		return tunnel_ended(c, u) ? false : progress;
	if (c->s.resp_done && u->in.start == u->parsed) {
		finish_exchange(c);
		progress = true;
	}
	if (progress && !c->dead && c->s.up && c->s.up->state == UP_ACTIVE)
		/* Bytes moved: the inactivity clock starts over. */
		client_set_deadline(c, c->state == C_TUNNEL ? c->p->o.tunnel_timeout_ms
							    : c->p->o.idle_timeout_ms);
	return progress;
}

/* Move every byte that can move, until nothing does. */
void client_pump(struct conn *c)
{
	bool progress;

	do {
		if (c->dead || c->state == C_H2 || c->state == C_H2WAIT)
			return; /* C_H2WAIT: h1_h2c_resume() pumps */
		if (c->state == C_ERROR) {
			pump_error_reply(c);
			return;
		}
		progress = pump_once(c);
	} while (progress);

	if (!c->dead && c->eof && c->state == C_REQUEST && !c->s.req_done && c->s.up &&
	    c->sent == c->in.end) {
		/* The client stopped mid-request: nothing more can come. */
		client_close(c);
	}
}

void client_event(struct ev_handler *h, uint32_t events)
{
	struct conn *c = (struct conn *)h;

	if (c->dead)
		return;
	if (c->state == C_H2) {
		h2_conn_event(c, events);
		return;
	}
	if (events & EPOLLERR) {
		/* Reset by the client: nothing more can be said to it. */
		client_close(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rd = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rdhup = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->wr = true;
	client_pump(c);
}

/* A deadline passed for c: what that means depends on where it is. */
void client_expired(struct conn *c)
{
	struct proxy *p = c->p;
	char a[ADDR_STR_LEN];

	switch (c->state) {
	case C_HEAD:
		p->st.timeouts++;
		if (c->parsed == c->s.req_start && c->in.end == c->s.req_start)
			client_close(c); /* idle keep-alive connection */
		else
			client_error(c, 408, "shunt: request head not received in time");
		break;
	case C_REQUEST:
		if (c->s.up && c->s.up->state == UP_CONNECTING) {
			upstream_failed(c, ETIMEDOUT);
			break;
		}
		p->st.timeouts++;
		if (c->s.resp_started) {
			c->s.obs.on_close = RS_TIMEOUT;
			client_close(c); /* a response stalled half-way */
		} else if (!c->s.req_done)
			client_error(c, 408, "shunt: request body not received in time");
		else
			client_error(c, 504, "shunt: %s %s did not answer in time",
				     c->s.to_sandbox ? "sandbox" : "upstream",
				     format_addr_port(&c->s.dst, a, sizeof(a)));
		break;
	case C_TUNNEL:
		if (!c->s.up || c->s.up->state != UP_CONNECTING)
			p->st.timeouts++;
		client_close(c);
		break;
	case C_ERROR:
		client_close(c); /* the client did not close after our answer */
		break;
	case C_H2:
		h2_conn_expired(c);
		return;
	case C_H2WAIT:
		/* No answer from the destinations in time: the request goes
		 * on over HTTP/1.1, as a server that ignores Upgrade would. */
		h2up_unwait(c, true);
		c->s.h2c_no = true;
		h1_h2c_resume(c);
		return;
	}
	if (!c->dead)
		client_pump(c);
}
