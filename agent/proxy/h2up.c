// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * HTTP/2 towards upstreams: client sessions pooled by destination. A
 * session takes streams from any client connection while it has room
 * (the peer's SETTINGS_MAX_CONCURRENT_STREAMS, at most H2_UP_MAX_STREAMS)
 * and sits on its destination's mux ring meanwhile; full, going away
 * (GOAWAY) or failed, it leaves the ring and another one opens. A session
 * with no stream for POOL_IDLE_MS is closed.
 *
 * What a session shows is remembered per destination (pool_dst.h2): its
 * SETTINGS came (the destination speaks HTTP/2), or it connected and
 * failed before them (it does not). An HTTP/1.1 request that asks for
 * "Upgrade: h2c" is switched only where that is known to hold; to find
 * out, it waits for a session to show it (h2up_probe).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <nghttp2/nghttp2.h>

#include "core/log.h"
#include "core/util.h"
#include "proxy/h2.h"
#include "proxy/proxy_int.h"
#include "state/dstguard.h"
#include "state/store.h"

static struct h2up *up_of_link(struct pool_link *l)
{
	return (struct h2up *)((char *)l - offsetof(struct h2up, link));
}

#define H2_KNOWN_YES_MS (5 * 60 * 1000) /* after its last session showed SETTINGS */
#define H2_KNOWN_NO_MS	(60 * 1000)	/* a redeployed server is asked again soon */

static void learned(struct h2up *u, bool speaks)
{
	u->pool->h2 = speaks ? POOL_H2_YES : POOL_H2_NO;
	u->pool->h2_until = u->io.p->loop->now_ms + (speaks ? H2_KNOWN_YES_MS : H2_KNOWN_NO_MS);
}

/* The requests waiting for u to show whether it speaks HTTP/2 go on;
 * those of a session that failed without saying go on over HTTP/1.1. */
static void wake_waiters(struct h2up *u, bool failed)
{
	while (u->waiters) {
		struct conn *c = u->waiters;

		u->waiters = c->h2_wait_next;
		c->h2_wait = NULL;
		c->h2_wait_next = NULL;
		if (failed)
			c->s.h2c_no = true;
		h1_h2c_resume(c);
	}
}

int h2up_speaks(struct proxy *p, struct pool *root, const struct shunt_addr *dst)
{
	struct pool_dst *pl = pool_dst_get(root, dst, false);

	if (!pl || pl->h2_until <= p->loop->now_ms)
		return POOL_H2_UNKNOWN;
	return (int)pl->h2;
}

static bool has_room(struct h2up *u)
{
	uint32_t max;

	if (u->goaway || u->io.dead)
		return false;
	/* Before the peer's SETTINGS, what its last session said: a server
	 * that allows one stream refuses the rest of a burst otherwise. */
	max = !u->settings && u->pool->h2_max_streams
		      ? u->pool->h2_max_streams
		      : nghttp2_session_get_remote_settings(
				u->io.ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	if (max > H2_UP_MAX_STREAMS)
		max = H2_UP_MAX_STREAMS;
	/* Stream ids run out after 2^31: the session is done then. */
	return u->n_streams < max && nghttp2_session_get_next_stream_id(u->io.ng) < (1U << 30);
}

static void mux_remove(struct h2up *u)
{
	if (!u->on_mux)
		return;
	u->link.prev->next = u->link.next;
	u->link.next->prev = u->link.prev;
	u->link.prev = u->link.next = NULL;
	u->pool->n_mux--;
	u->on_mux = false;
}

static void mux_add(struct h2up *u)
{
	struct pool_link *head = &u->pool->mux;

	if (u->on_mux || !has_room(u))
		return;
	u->link.prev = head;
	u->link.next = head->next;
	head->next->prev = &u->link;
	head->next = &u->link;
	u->pool->n_mux++;
	u->on_mux = true;
}

/* --max-upstream-conns counts sessions in use: an idle one of this worker
 * must not keep another worker's streams out. */
static void uncount_if_idle(struct h2up *u)
{
	if (!u->n_streams && u->counted) {
		dst_put(u->io.p, &u->dst);
		u->counted = false;
	}
}

static void unlink_stream(struct h2up *u, struct h2s *s)
{
	if (s->uprev)
		s->uprev->unext = s->unext;
	else
		u->streams = s->unext;
	if (s->unext)
		s->unext->uprev = s->uprev;
	s->unext = s->uprev = NULL;
	s->up = NULL;
	s->up_id = 0;
	u->n_streams--;
	uncount_if_idle(u);
	if (!u->n_streams && !u->io.dead)
		loop_timer_in(u->io.p->loop, &u->idle, POOL_IDLE_MS);
	mux_add(u);
}

void h2up_close(struct h2up *u, int err)
{
	struct proxy *p = u->io.p;

	if (u->io.dead)
		return;
	u->io.dead = true;
	mux_remove(u);
	u->pool->open--;
	if (u->counted)
		dst_put(p, &u->dst);
	loop_del(p->loop, u->io.fd);
	loop_timer_cancel(p->loop, &u->idle);
	loop_timer_cancel(p->loop, &u->connecting);
	close(u->io.fd);
	u->io.fd = -1;
	p->st.h2_sessions--;
	if (u->connected && !u->settings && u->io.rx) {
		/* It answered the preface with something else than SETTINGS
		 * (an HTTP/1.1 error, say): no HTTP/2. A bare reset or close
		 * says nothing (a server restarting). */
		learned(u, false);
		err = -EPROTONOSUPPORT;
	}
	while (u->streams) {
		struct h2s *s = u->streams;

		unlink_stream(u, s);
		h2s_upstream_closed(s, err, false);
	}
	wake_waiters(u, !u->connected || u->settings);
	/* The nghttp2 session goes at h2up_reap: this may run inside one
	 * of its callbacks' callers. */
	u->dead_next = p->h2_dead_ups;
	p->h2_dead_ups = u;
}

void h2up_detach(struct h2s *s, uint32_t rst_code)
{
	struct h2up *u = s->up;

	if (!u)
		return;
	if (!u->io.dead && s->up_id) {
		nghttp2_session_set_stream_user_data(u->io.ng, s->up_id, NULL);
		nghttp2_submit_rst_stream(u->io.ng, NGHTTP2_FLAG_NONE, s->up_id, rst_code);
		h2_mark(&u->io);
	}
	unlink_stream(u, s);
}

void h2up_kick(struct h2s *s)
{
	struct h2up *u = s->up;

	if (!u || !s->up_id)
		return;
	if (s->req_deferred) {
		s->req_deferred = false;
		nghttp2_session_resume_data(u->io.ng, s->up_id);
	}
	h2_mark(&u->io);
}

/* The request body, from the client's stream to the upstream's. */
static ssize_t req_read(nghttp2_session *ng, int32_t id, uint8_t *b, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *user)
{
	struct h2s *s = src->ptr;
	size_t n = buf_len(&s->req);

	(void)user;
	if (n > len)
		n = len;
	if (n) { /* an empty buffer may have no storage at all */
		memcpy(b, buf_head(&s->req), n);
		buf_consume(&s->req, n);
	}
	s->req_fwd += n;
	if (n && s->id) {
		nghttp2_session_consume_stream(s->cc->io.ng, s->id, n);
		h2_mark(&s->cc->io);
	}
	if (buf_len(&s->req))
		return (ssize_t)n;
	buf_reset(&s->req);
	if (!s->req_end) {
		if (n)
			return (ssize_t)n;
		s->req_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	if (s->req_trl.n) {
		nghttp2_nv *nv = h2_hb_nv(&s->req_trl);

		*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (!nv || nghttp2_submit_trailer(ng, id, nv, s->req_trl.n))
			nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id,
						  NGHTTP2_INTERNAL_ERROR);
		free(nv);
	}
	return (ssize_t)n;
}

/* ---- the upstream's session: nghttp2's callbacks ---- */

static struct h2s *stream_of(nghttp2_session *ng, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(ng, id) : NULL;
}

/* The peer's first SETTINGS allow fewer streams than were submitted before
 * they came. nghttp2 holds the ones it has not opened until enough of the
 * others end: forever, behind a long upload. Those go elsewhere, as if
 * refused (never processed, RFC 9113 section 8.7), the highest ids first. A
 * stream nghttp2 will not let go of (its user data cannot be cleared)
 * stays: no callback may reach it once it is carried by another session. */
static void shed_unopened(struct h2up *u)
{
	nghttp2_session *ng = u->io.ng;
	uint32_t max =
		nghttp2_session_get_remote_settings(ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);

	for (;;) {
		struct h2s *last = NULL;
		uint32_t n = 0;

		for (struct h2s *s = u->streams; s; s = s->unext) {
			n++;
			if (!nghttp2_session_find_stream(ng, s->up_id) &&
			    (!last || s->up_id > last->up_id))
				last = s;
		}
		if (!last || n <= max ||
		    nghttp2_session_set_stream_user_data(ng, last->up_id, NULL))
			return;
		pr_debug("h2 upstream: stream %d was submitted before the peer's SETTINGS "
			 "(max %u streams): sent on another session",
			 last->up_id, max);
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, last->up_id,
					  NGHTTP2_REFUSED_STREAM);
		unlink_stream(u, last);
		h2s_upstream_closed(last, NGHTTP2_REFUSED_STREAM, true);
	}
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
	struct h2up *u = user;
	struct h2s *s = stream_of(ng, f->hd.stream_id);
	struct h2hb *hb;

	(void)flags;
	if (!s || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	hb = s->resp_final ? &s->resp_trl : &s->resph;
	if (hb->list_size + nl + vl + 32 > 4 * u->io.p->o.max_head_bytes)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM: 502 below */
	if (h2_hb_add(hb, name, nl, value, vl))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
	struct h2up *u = user;
	struct h2s *s = stream_of(ng, f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	switch (f->hd.type) {
	case NGHTTP2_GOAWAY:
		/* Streams above last_stream_id are closed by nghttp2 with
		 * REFUSED_STREAM (never processed: sent again elsewhere); the
		 * rest finish here. */
		u->goaway = true;
		mux_remove(u);
		return 0;
	case NGHTTP2_SETTINGS:
		if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
			u->pool->h2_max_streams = nghttp2_session_get_remote_settings(
				ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
			if (!u->settings) {
				u->settings = true;
				learned(u, true);
				shed_unopened(u);
			}
		}
		mux_add(u);
		return 0;
	case NGHTTP2_HEADERS:
		if (!s)
			return 0;
		if (!s->resp_final) {
			s->resp_end = end;
			h2s_respond(s);
		} else {
			s->resp_end = true; /* trailers */
			h2s_resp_data(s, NULL, 0, true);
		}
		return 0;
	case NGHTTP2_DATA:
		if (s && end)
			h2s_resp_data(s, NULL, 0, true);
		return 0;
	default:
		return 0;
	}
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
		   void *user)
{
	struct h2s *s = stream_of(ng, id);

	(void)flags;
	(void)user;
	nghttp2_session_consume_connection(ng, len);
	if (!s || !s->id) {
		nghttp2_session_consume_stream(ng, id, len);
		return 0;
	}
	h2s_resp_data(s, d, len, false);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
	struct h2up *u = user;
	struct h2s *s = stream_of(ng, id);
	bool refused;

	if (!s)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	/* REFUSED_STREAM, or a GOAWAY's stream nghttp2 closed: the upstream
	 * did not process it (RFC 9113 section 8.7). */
	refused = code == NGHTTP2_REFUSED_STREAM && !s->resp_final;
	/* Closed cleanly while the request was still coming: the upstream
	 * answered in full and sent RST_STREAM(NO_ERROR), "stop sending"
	 * (RFC 9113 section 8.1). The client is told the same. */
	if (code == NGHTTP2_NO_ERROR && s->resp_end && !s->req_end)
		s->up_stopped = true;
	unlink_stream(u, s);
	h2s_upstream_closed(s, (int)code, refused);
	return 0;
}

static nghttp2_session_callbacks *client_cbs;

static void client_callbacks_make(void)
{
	nghttp2_session_callbacks *cbs;

	if (nghttp2_session_callbacks_new(&cbs))
		return;
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	client_cbs = cbs;
}

/* Made once for every worker (see h2.c's server_callbacks). */
static nghttp2_session_callbacks *client_callbacks(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, client_callbacks_make);
	return client_cbs;
}

/* ---- the session's socket ---- */

static void up_connected(struct h2up *u)
{
	socklen_t sl = sizeof(int);
	int soerr = 0;

	if (u->connected || !u->io.wr)
		return;
	if (u->conn_err)
		soerr = u->conn_err;
	else if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
		soerr = errno;
	if (soerr) {
		h2up_close(u, -soerr);
		return;
	}
	u->connected = true;
	loop_timer_cancel(u->io.p->loop, &u->connecting);
	for (struct h2s *s = u->streams; s; s = s->unext)
		s->up_connected = true;
}

static void up_event(struct ev_handler *h, uint32_t events)
{
	struct h2up *u = (struct h2up *)h;
	struct proxy *p = u->io.p;
	int r;

	if (u->io.dead)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->io.rd = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		u->io.wr = true;
	up_connected(u);
	if (u->io.dead || !u->connected) {
		h2_flush_dirty(p);
		return;
	}
	r = h2_io_read(&u->io);
	if (u->settings && u->waiters && r >= 0)
		wake_waiters(u, false);
	if (u->io.dead) {
		h2_flush_dirty(p);
		return;
	}
	if (r < 0 || u->io.eof) {
		char a[ADDR_STR_LEN];

		if (r < 0)
			pr_warn("HTTP/2 upstream %s: %s", format_addr_port(&u->dst, a, sizeof(a)),
				r > -4096 ? strerror(-r) : nghttp2_strerror(r));
		h2up_close(u, r < 0 && r > -4096 ? r : -ECONNRESET);
	} else {
		h2_mark(&u->io);
	}
	h2_flush_dirty(p);
}

static void idle_fired(struct timer *t)
{
	struct h2up *u = (struct h2up *)((char *)t - offsetof(struct h2up, idle));

	if (!u->io.dead && !u->n_streams) {
		nghttp2_submit_goaway(u->io.ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
		h2_io_flush(&u->io);
		h2up_close(u, -ECONNRESET);
	}
}

/* As for HTTP/1 (client_expired): a connect() that takes longer than
 * --connect-timeout failed; its streams fall back or are answered. */
static void connecting_fired(struct timer *t)
{
	struct h2up *u = (struct h2up *)((char *)t - offsetof(struct h2up, connecting));
	struct proxy *p = u->io.p;

	if (!u->io.dead && !u->connected) {
		p->st.timeouts++;
		h2up_close(u, -ETIMEDOUT);
		h2_flush_dirty(p);
	}
}

static int up_session(struct h2up *u)
{
	nghttp2_session_callbacks *cbs = client_callbacks();
	nghttp2_option *opt;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
	};
	int r;

	if (!cbs || nghttp2_option_new(&opt))
		return -ENOMEM;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_peer_max_concurrent_streams(opt, H2_UP_MAX_STREAMS);
	r = nghttp2_session_client_new2(&u->io.ng, cbs, u, opt);
	nghttp2_option_del(opt);
	if (r)
		return -ENOMEM;
	if (nghttp2_submit_settings(u->io.ng, NGHTTP2_FLAG_NONE, iv, 2) ||
	    nghttp2_session_set_local_window_size(u->io.ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW))
		return -ENOMEM;
	return 0;
}

static struct h2up *up_new(struct proxy *p, struct pool *root, const struct shunt_addr *dst,
			   bool sandbox)
{
	struct pool_dst *pl = pool_dst_get(root, dst, true);
	struct h2up *u;
	bool counted;
	int fd, err;

	if (!pl) {
		errno = ENOMEM;
		return NULL;
	}
	if (dstguard_check(&p->snap->guard, dst) != DST_OK) {
		p->st.dst_refused++;
		errno = EDST_REFUSED;
		return NULL;
	}
	counted = sandbox && p->o.max_upstream_per_dst;
	if (counted && !dst_take(p, dst))
		return NULL;
	u = calloc(1, sizeof(*u));
	if (!u)
		goto fail;
	if (up_session(u)) {
		errno = ENOMEM;
		goto fail_session;
	}
	fd = upstream_dial(p, root, dst, &u->conn_err);
	if (fd < 0)
		goto fail_session;
	u->io.wr = u->conn_err != 0; /* reported by up_connected, like a late failure */
	u->h.fn = up_event;
	u->io.p = p;
	u->io.fd = fd;
	u->io.upstream = true;
	u->dst = *dst;
	u->pool = pl;
	timer_init(&u->idle, idle_fired);
	timer_init(&u->connecting, connecting_fired);
	if (loop_add(p->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &u->h)) {
		close(fd);
		goto fail_session;
	}
	u->counted = counted;
	loop_timer_in(p->loop, &u->connecting, p->o.connect_timeout_ms);
	pl->open++;
	p->st.upstream_connects++;
	p->st.h2_sessions++;
	u->all_next = p->h2_all;
	if (p->h2_all)
		p->h2_all->all_prev = u;
	p->h2_all = u;
	mux_add(u);
	return u;

fail_session:
	err = errno;
	nghttp2_session_del(u->io.ng);
	free(u);
	errno = err;
fail:
	if (counted) {
		err = errno;
		dst_put(p, dst);
		errno = err;
	}
	return NULL;
}

bool h2up_submit(struct proxy *p, struct h2s *s)
{
	nghttp2_data_provider prov = {.source.ptr = s, .read_callback = req_read};
	struct pool *root = conn_pool(s->cc->c);
	struct pool_dst *pl = pool_dst_get(root, &s->dst, false);
	struct h2up *u = NULL;
	nghttp2_nv *nv;
	int32_t id;

	if (pl)
		for (struct pool_link *l = pl->mux.next; l != &pl->mux; l = l->next)
			if (has_room(up_of_link(l))) {
				u = up_of_link(l);
				p->st.upstream_reused++;
				break;
			}
	if (!u)
		u = up_new(p, root, &s->dst, s->to_sandbox);
	if (!u)
		return false;
	if (!u->counted && s->to_sandbox && p->o.max_upstream_per_dst) {
		/* an idle session of ours back in use */
		if (!dst_take(p, &s->dst))
			return false;
		u->counted = true;
	}
	nv = h2_hb_nv(&s->reqh);
	if (!nv) {
		uncount_if_idle(u);
		errno = ENOMEM;
		return false;
	}
	id = nghttp2_submit_request(u->io.ng, NULL, nv, s->reqh.n,
				    s->req_end && !buf_len(&s->req) && !s->req_trl.n ? NULL : &prov,
				    s);
	free(nv);
	if (id < 0) {
		uncount_if_idle(u);
		errno = EPROTO;
		return false;
	}
	s->up = u;
	s->up_id = id;
	s->up_connected = u->connected;
	s->up_unsettled = !u->settings;
	s->unext = u->streams;
	if (u->streams)
		u->streams->uprev = s;
	u->streams = s;
	u->n_streams++;
	loop_timer_cancel(p->loop, &u->idle);
	if (!has_room(u))
		mux_remove(u);
	h2_mark(&u->io);
	return true;
}

void h2up_close_all(struct proxy *p, const struct pool *root)
{
	/* A closed session waits on the list for h2up_reap, its pool entry
	 * possibly freed already: never look at it again. */
	for (struct h2up *u = p->h2_all; u; u = u->all_next)
		if (!u->io.dead && (!root || u->pool->root == root))
			h2up_close(u, -ECONNRESET);
}

void h2up_reap(struct proxy *p)
{
	while (p->h2_dead_ups) {
		struct h2up *u = p->h2_dead_ups;

		p->h2_dead_ups = u->dead_next;
		if (u->all_prev)
			u->all_prev->all_next = u->all_next;
		else
			p->h2_all = u->all_next;
		if (u->all_next)
			u->all_next->all_prev = u->all_prev;
		nghttp2_session_del(u->io.ng);
		buf_free(&u->io.out);
		free(u);
	}
}

bool h2up_probe(struct proxy *p, const struct shunt_addr *dst, struct conn *c)
{
	struct pool_dst *pl = pool_dst_get(conn_pool(c), dst, false);
	struct h2up *u = NULL;

	/* A session to dst that has not shown its SETTINGS yet, or a new one
	 * (pooled like any: the streams after the upgrade use it). */
	if (pl)
		for (struct pool_link *l = pl->mux.next; l != &pl->mux && !u; l = l->next)
			if (!up_of_link(l)->settings)
				u = up_of_link(l);
	if (!u) {
		u = up_new(p, conn_pool(c), dst, false);
		if (!u)
			return false;
		loop_timer_in(p->loop, &u->idle, POOL_IDLE_MS);
		h2_mark(&u->io); /* the preface and SETTINGS */
	}
	c->h2_wait = u;
	c->h2_wait_next = u->waiters;
	u->waiters = c;
	return true;
}

void h2up_unwait(struct conn *c, bool timed_out)
{
	struct h2up *u = c->h2_wait;

	if (!u)
		return;
	if (timed_out && u->connected && !u->settings)
		learned(u, false);
	for (struct conn **pp = &u->waiters; *pp; pp = &(*pp)->h2_wait_next)
		if (*pp == c) {
			*pp = c->h2_wait_next;
			break;
		}
	c->h2_wait = NULL;
	c->h2_wait_next = NULL;
}

size_t h2up_count(const struct proxy *p)
{
	return (size_t)p->st.h2_sessions;
}
