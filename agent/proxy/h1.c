// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * HTTP/1: one exchange (struct stream) at a time on a client connection.
 * The request head is parsed with llhttp and checked, routed (route.c),
 * its body framed by us; the response is parsed to find its end. Pipelined
 * requests wait in the connection's buffer until the previous response
 * went out in full.
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

int on_req_headers(llhttp_t *ll)
{
	struct conn *c = ll->data;

	c->s.head_done = true;
	return HPE_PAUSED; /* stop at the end of the head: route first */
}

int on_resp_headers(llhttp_t *ll)
{
	struct conn *c = ll->data;

	if (!c)
		return -1;
	c->s.resp_started = true;
	if (ll->status_code >= 200)
		infer_in_unkey(&c->s.inf); /* answering: in flight without its key */
	/* Switching protocols, or a CONNECT tunnel established: the rest is
	 * opaque. A 101 nobody asked for switches all the same; the
	 * connection is never reused after it. */
	if (ll->status_code == 101 ||
	    (c->s.is_connect && ll->status_code >= 200 && ll->status_code < 300)) {
		infer_inbound_tunnel(c);
		return 2;
	}
	if (c->s.is_head && ll->status_code >= 200)
		return 1; /* a response to HEAD has no body, whatever it says */
	return 0;
}

int on_resp_complete(llhttp_t *ll)
{
	struct conn *c = ll->data;

	if (!c)
		return -1;
	if (ll->status_code >= 100 && ll->status_code < 200 && ll->status_code != 101)
		return 0; /* interim (100 Continue, 103): the final one follows */
	infer_in_end(&c->s.inf, rs_now_ns()); /* answered */
	c->s.resp_done = true;
	return HPE_PAUSED;
}

static bool method_is_idempotent(uint8_t m)
{
	/* RFC 9110 section 9.2.2: only these may be sent again on their own. */
	return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_TRACE ||
	       m == HTTP_PUT || m == HTTP_DELETE;
}

/* Does a header list ask for "Upgrade: h2c"? 1: yes, with one
 * HTTP2-Settings (*settings is it); -1: h2c without a usable one (the
 * upgrade must not happen, RFC 7540 section 3.2.1); 0: no h2c. */
static int h2c_asked(const struct http_header *h, size_t n, const struct http_header **settings)
{
	bool h2c = false;
	int ns = 0;

	for (size_t i = 0; i < n; i++) {
		if (h[i].name_len == 14 && !strncasecmp(h[i].name, "HTTP2-Settings", 14)) {
			*settings = &h[i];
			ns++;
		}
		if (h[i].name_len != 7 || strncasecmp(h[i].name, "Upgrade", 7))
			continue;
		for (size_t j = 0; j + 3 <= h[i].value_len; j++) {
			const char *v = h[i].value;

			if (!strncasecmp(v + j, "h2c", 3) &&
			    (j == 0 || v[j - 1] == ' ' || v[j - 1] == ',') &&
			    (j + 3 == h[i].value_len || v[j + 3] == ' ' || v[j + 3] == ','))
				h2c = true;
		}
	}
	if (!h2c)
		return 0;
	return ns == 1 ? 1 : -1;
}

/* An h2c upgrade shunt does not take (a request with a body, or without
 * its settings): the Upgrade and HTTP2-Settings lines leave the head, so
 * no upstream can switch the whole connection to HTTP/2 behind our back
 * (every later stream would then go where this request went). The
 * request is answered over HTTP/1.1, which RFC 7540 allows. */
static void strip_h2c(struct conn *c, const struct http_header *h, size_t n)
{
	/* Last line first: the spans before it stay where they are. */
	for (size_t k = n; k-- > 0;) {
		char *line, *end;
		size_t cut;

		if (!((h[k].name_len == 7 && !strncasecmp(h[k].name, "Upgrade", 7)) ||
		      (h[k].name_len == 14 && !strncasecmp(h[k].name, "HTTP2-Settings", 14))))
			continue;
		line = (char *)h[k].name;
		end = memchr(h[k].value + h[k].value_len, '\n',
			     (size_t)(c->in.data + c->in.end - (h[k].value + h[k].value_len)));
		if (!end)
			continue;
		cut = (size_t)(end + 1 - line);
		memmove(line, end + 1, (size_t)(c->in.data + c->in.end - (end + 1)));
		c->in.end -= cut;
		c->parsed -= (uint32_t)cut;
		c->s.head_len -= (uint32_t)cut;
	}
	c->s.req.upgrade = 0;
}

/* May the h2c upgrade of c's request happen? Only where the server would
 * take it directly: the request's destination (by its key) and the
 * connection's original one (where the streams after it without a key
 * go) must both speak HTTP/2. Otherwise the request goes on over HTTP/1.1
 * without the Upgrade, as a server that ignores it would answer. 1: yes;
 * 0: no; -1: c waits to find out (C_H2WAIT), h1_h2c_resume() follows. */
static int h2c_take(struct conn *c, const struct http_header *h, size_t n)
{
	struct proxy *p = c->p;
	struct route_input in = {.rk = &p->o.rk,
				 .hdrs = h,
				 .n_hdrs = n,
				 .orig = &c->orig,
				 .t = p->snap->t,
				 .guard = &p->snap->guard};
	struct route_decision rd;
	const struct shunt_addr *dsts[2];

	if (c->s.h2c_no || p->draining)
		return 0;
	route_decide(&in, &rd, c->s.key, sizeof(c->s.key));
	if (rd.reason == ROUTE_REFUSED)
		return 0; /* refused over HTTP/1.1 below */
	dsts[0] = &rd.dst;
	dsts[1] = &c->orig;
	for (int i = 0; i < 2; i++) {
		switch (h2up_speaks(p, conn_pool(c), dsts[i])) {
		case POOL_H2_YES:
			continue;
		case POOL_H2_NO:
			return 0;
		default:
			if (!h2up_probe(p, dsts[i], c))
				return 0;
			c->state = C_H2WAIT;
			client_set_deadline(c, p->o.connect_timeout_ms);
			return -1;
		}
	}
	return 1;
}

/* An inbound request of a pod with inference on goes where it was going
 * (the app, over the pod's loopback), whatever its key says; its key and
 * lifetime are noted. */
static void inbound_route(struct conn *c, const struct route_input *in, struct route_decision *rd)
{
	int klen = rk_extract(in->rk, in->hdrs, in->n_hdrs, c->s.key, sizeof(c->s.key));

	if (klen <= 0)
		c->s.key[0] = '\0';
	memset(rd, 0, sizeof(*rd));
	rd->dst = c->orig;
	rd->reason = klen < 0 ? ROUTE_BAD_KEY : klen ? ROUTE_NO_ROUTE : ROUTE_NO_KEY;
	infer_inbound_begin(c);
}

/* Decide where the request whose head is in[req_start, req_start+head_len)
 * goes, and get a connection there. */
static void route_request(struct conn *c)
{
	struct proxy *p = c->p;
	const char *head = c->in.data + c->s.req_start;
	struct head_result hr;
	struct route_input in;
	struct route_decision rd;
	char a[ADDR_STR_LEN];
	int st;

	st = http_head_check(head, c->s.head_len, p->hdrs, p->o.max_headers, &hr);
	if (st) {
		p->rs.parse_errors[hr.err]++;
		pr_debug("client %s: %d %s", format_addr_port(&c->peer, a, sizeof(a)), st,
			 hr.reason);
		client_error(c, st, "shunt: %s", hr.reason);
		return;
	}
	if (c->s.req.upgrade && p->o.http2 && !c->inbound) {
		const struct http_header *settings = NULL;
		int h2c = h2c_asked(p->hdrs, hr.n_headers, &settings);

		int take = h2c > 0 && hr.body == BODY_NONE ? h2c_take(c, p->hdrs, hr.n_headers) : 0;

		if (take > 0) {
			/* This request becomes stream 1, routed by its own key
			 * like every stream after it. */
			h2_upgrade(c, p->hdrs, hr.n_headers, settings);
			return;
		}
		if (take < 0)
			return; /* h1_h2c_resume() */
		if (h2c > 0 && hr.body == BODY_NONE)
			p->st.h2c_declined++;
		if (h2c) {
			strip_h2c(c, p->hdrs, hr.n_headers);
			http_head_check(head, c->s.head_len, p->hdrs, p->o.max_headers, &hr);
		}
	}
	c->s.is_head = c->s.req.method == HTTP_HEAD;
	c->s.is_connect = c->s.req.method == HTTP_CONNECT;
	c->s.idempotent = method_is_idempotent(c->s.req.method);
	c->s.want_upgrade = c->s.req.upgrade || c->s.is_connect;
	c->s.keep_alive = llhttp_should_keep_alive(&c->s.req);
	c->s.body = hr.body;
	c->s.body_left = hr.content_length;

	in.rk = &p->o.rk;
	in.hdrs = p->hdrs;
	in.n_hdrs = hr.n_headers;
	in.orig = &c->orig;
	in.t = p->snap->t;
	in.guard = &p->snap->guard;
	in.now_unix = 0;
	if (c->inbound) {
		inbound_route(c, &in, &rd);
	} else {
		route_decide(&in, &rd, c->s.key, sizeof(c->s.key));
		if (c->inpod && c->inpod->infer &&
		    infer_outbound(c, rd.reason == ROUTE_NO_KEY, hr.n_headers)) {
			/* A baggage line was added: the head moved, and routes
			 * by the key it now carries. */
			head = c->in.data + c->s.req_start;
			http_head_check(head, c->s.head_len, p->hdrs, p->o.max_headers, &hr);
			in.n_hdrs = hr.n_headers;
			route_decide(&in, &rd, c->s.key, sizeof(c->s.key));
		}
	}
	if (rd.reason == ROUTE_BAD_KEY) {
		p->st.bad_keys++;
		p->rs.parse_errors[HTTP_ERR_ROUTING_KEY]++;
	}
	if (!c->inbound)
		p->st.requests++;
	c->s.dst = rd.dst;
	c->s.to_sandbox = rd.to_sandbox;
	c->s.fallback = rd.fallback;
	if (rd.to_sandbox)
		p->st.to_sandbox++;
	else if (!c->inbound)
		p->st.to_baseline++;
	c->s.obs.routed = true;
	c->s.obs.req_bytes = c->s.head_len;
	c->state = C_REQUEST;
	if (rd.reason == ROUTE_REFUSED) {
		/* Counted like up_new() counts a refused connect. */
		p->st.dst_refused++;
		no_upstream(c, EDST_REFUSED);
	} else if (!attach_upstream(c, false))
		no_upstream(c, errno);
}

/* A framing error in the request body: refuse it if we still can. */
static void body_error(struct conn *c, const char *reason)
{
	c->p->rs.parse_errors[HTTP_ERR_CHUNK]++;
	if (c->s.resp_started)
		client_close(c); /* no 400 in the middle of a response */
	else
		client_error(c, 400, "shunt: %s", reason);
}

/* Advance over the body bytes read so far; sets req_done at its end. */
static void frame_body(struct conn *c)
{
	uint64_t avail = c->in.end - c->parsed;
	const char *why = NULL;
	bool done = false;
	long n;

	switch (c->s.body) {
	case BODY_NONE:
		c->s.req_done = true;
		return;
	case BODY_LENGTH:
		n = (long)(avail < c->s.body_left ? avail : c->s.body_left);
		c->parsed += (uint32_t)n;
		c->s.obs.req_bytes += (uint64_t)n;
		c->s.body_left -= (uint64_t)n;
		c->s.req_done = c->s.body_left == 0;
		return;
	case BODY_CHUNKED:
		if (!avail)
			return;
		n = chunked_feed(&c->s.ck, c->in.data + c->parsed, avail, &done, &why);
		if (n < 0) {
			body_error(c, why);
			return;
		}
		c->parsed += (uint32_t)n;
		c->s.obs.req_bytes += (uint64_t)n;
		c->s.req_done = done;
		return;
	}
}

/* Before a request head is parsed: skip the empty lines RFC 9112
 * section 2.2 allows before it, and on a new connection tell HTTP from
 * anything else (which becomes a tunnel). false: not yet, or not HTTP. */
static bool head_start(struct conn *c)
{
	int r;

	while (c->parsed == c->s.req_start && c->in.end - c->s.req_start >= 2 &&
	       c->in.data[c->s.req_start] == '\r' && c->in.data[c->s.req_start + 1] == '\n') {
		c->s.req_start += 2;
		c->parsed = c->sent = c->s.req_start;
	}
	if (c->parsed == c->in.end)
		return false;
	if (c->parsed == c->s.req_start && c->in.end - c->s.req_start == 1 &&
	    c->in.data[c->s.req_start] == '\r' && !c->eof)
		return false; /* a CR whose LF is still on its way */
	if (c->first && (c->p->o.http2 || c->inbound)) {
		const char *b = c->in.data + c->s.req_start;
		size_t have = c->in.end - c->s.req_start;

		if (!memcmp(b, H2_PREFACE, have < H2_PREFACE_LEN ? have : H2_PREFACE_LEN)) {
			if (have >= H2_PREFACE_LEN && c->inbound && !c->p->o.http2) {
				/* To the app as it is: without HTTP/2 (--no-http2)
				 * inbound streams are not read, nor tracked. */
				start_tunnel(c);
				return false;
			}
			if (have >= H2_PREFACE_LEN) {
				h2_start(c); /* the client knows we speak HTTP/2 */
				return false;
			}
			if (!c->eof)
				return false; /* the rest of the preface is on its way */
		}
	}
	if (c->first) {
		r = http_sniff(c->in.data + c->s.req_start, c->in.end - c->s.req_start);
		if (r < 0 && !c->eof)
			return false; /* too early to tell */
		if (r <= 0) {
			/* Not HTTP (or the client said all it will say). */
			start_tunnel(c);
			return false;
		}
		c->first = false;
	}
	return true;
}

/* Parse what was read: the head with llhttp, then the body with our own
 * framing, so that shunt and every upstream agree on where a request
 * ends. */
void parse_request(struct conn *c)
{
	struct proxy *p = c->p;
	llhttp_errno_t e;
	const char *pos;

	if (c->state == C_REQUEST) {
		if (!c->s.req_done)
			frame_body(c);
		return;
	}
	if (c->state != C_HEAD || !head_start(c))
		return;
	if (c->parsed == c->s.req_start)
		client_set_deadline(c, p->o.head_timeout_ms);
	if (!c->s.obs.t0_ns)
		c->s.obs.t0_ns = rs_now_ns();

	e = llhttp_execute(&c->s.req, c->in.data + c->parsed, c->in.end - c->parsed);
	pos = e == HPE_OK ? c->in.data + c->in.end : llhttp_get_error_pos(&c->s.req);
	c->parsed = (uint32_t)(pos - c->in.data);
	if (e != HPE_OK && e != HPE_PAUSED) {
		p->rs.parse_errors[http_llhttp_err(e, c->in.data + c->s.req_start, pos)]++;
		client_error(c, 400, "shunt: %s", llhttp_get_error_reason(&c->s.req));
		return;
	}
	if (c->parsed - c->s.req_start > p->o.max_head_bytes) {
		p->rs.parse_errors[HTTP_ERR_HEAD_TOO_LARGE]++;
		client_error(c, 431, "shunt: request head larger than %zu bytes",
			     p->o.max_head_bytes);
		return;
	}
	if (!c->s.head_done)
		return;
	c->s.head_len = c->parsed - c->s.req_start;
	route_request(c);
	if (c->state == C_REQUEST)
		frame_body(c);
}

void h1_h2c_resume(struct conn *c)
{
	if (c->dead || c->state != C_H2WAIT)
		return;
	c->state = C_HEAD;
	c->s.pipelined = true; /* read a while ago: when it was sent is unknown */
	route_request(c);
	if (c->state == C_REQUEST)
		frame_body(c);
	client_pump(c);
}

/* After the final response went out in full. */
void finish_exchange(struct conn *c)
{
	struct upstream *u = c->s.up;
	bool reuse = c->s.keep_alive && llhttp_should_keep_alive(&u->resp) && c->s.req_done &&
		     c->sent == c->parsed && !c->s.want_upgrade;

	req_end(c, c->s.to_sandbox ? RS_DEST_SANDBOX : RS_DEST_BASELINE,
		rs_outcome_of_status(u->resp.status_code), u->resp.status_code);
	c->s.up = NULL;
	if (reuse && !c->p->draining)
		up_release(u);
	else
		up_close(u);
	if (!reuse || c->s.close_state == CLOSE_INJECTED) {
		/* Connection: close (either side), HTTP/1.0 without keep-alive,
		 * a response that came before the request was done, or an
		 * upgrade that was refused. */
		shutdown(c->fd, SHUT_WR);
		client_close(c);
		return;
	}
	client_reset_request(c);
	/* The next request is here already: it was sent before this
	 * response came (pipelined), at a moment nobody knows. */
	c->s.pipelined = c->inpod && c->inpod->infer && !c->inbound && infer_pipelined(c);
}

/* Room in u->in for more response bytes: what reached the client goes.
 * false when full (the client must read first). */
static bool up_make_room(struct upstream *u)
{
	/* Everything before start reached the client: slide down when full,
	 * or when nothing is left. */
	if (u->in.start && (!buf_room(&u->in) || u->in.start == u->in.end)) {
		u->parsed -= u->in.start;
		buf_compact(&u->in);
	}
	return conn_buf_grow(u->p, &u->in, BUF_STREAM_MAX) == 0;
}

/* The upstream closed its side. */
static void upstream_eof(struct conn *c, struct upstream *u)
{
	u->eof = true;
	if (c->state == C_TUNNEL)
		return;
	if (!c->s.resp_started && u->in.end == u->parsed) {
		upstream_failed(c, ECONNRESET);
		return;
	}
	/* A response delimited by the connection close ends here. */
	if (!c->s.resp_done)
		llhttp_finish(&u->resp);
	if (!c->s.resp_done) {
		c->s.obs.on_close = RS_UPSTREAM_ERROR;
		client_close(c); /* truncated or invalid response */
	}
}

/* The response switched protocols (101, or 2xx to CONNECT): from here on
 * both directions are opaque. The client's bytes after the request go
 * too. */
static void response_upgraded(struct conn *c, struct upstream *u, int status)
{
	req_end(c, c->s.to_sandbox ? RS_DEST_SANDBOX : RS_DEST_BASELINE,
		rs_outcome_of_status(status), status);
	c->state = C_TUNNEL;
	c->p->st.tunnels++;
	c->s.resp_done = false;
	u->parsed = u->in.end;
	c->parsed = c->in.end;
}

/* Parse the response bytes that arrived. */
static void parse_response(struct conn *c, struct upstream *u)
{
	llhttp_errno_t e = llhttp_execute(&u->resp, u->in.data + u->parsed, u->in.end - u->parsed);
	char a[ADDR_STR_LEN];
	int status;

	if (e == HPE_OK) {
		u->parsed = u->in.end;
		return;
	}
	if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
		u->parsed = (uint32_t)(llhttp_get_error_pos(&u->resp) - u->in.data);
		status = u->resp.status_code;
		if (e == HPE_PAUSED_UPGRADE || status == 101 ||
		    (c->s.is_connect && status >= 200 && status < 300))
			response_upgraded(c, u, status);
		return;
	}
	pr_warn("invalid response from %s: %s", format_addr_port(&u->dst, a, sizeof(a)),
		llhttp_get_error_reason(&u->resp));
	if (u->in.start == 0 && u->parsed == 0 && !c->out.end) {
		c->s.resp_started = false;
		client_error(c, 502, "shunt: invalid response from %s", a);
	} else {
		c->s.obs.on_close = RS_UPSTREAM_ERROR;
		client_close(c);
	}
}

/* Read what the upstream sent and parse it. Returns true on progress. */
bool read_upstream(struct conn *c)
{
	struct upstream *u = c->s.up;
	ssize_t n;

	if (!u->rd || u->eof || !up_make_room(u))
		return false;
	n = read(u->fd, buf_tail(&u->in), buf_room(&u->in));
	if (n > 0 && (size_t)n < buf_room(&u->in) && !u->rdhup)
		u->rd = false; /* short read: drained; the next byte brings an edge */
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			u->rd = false;
			return false;
		}
		if (c->state == C_TUNNEL)
			client_close(c);
		else
			upstream_failed(c, errno);
		return true;
	}
	if (n == 0) {
		upstream_eof(c, u);
		return true;
	}
	c->s.resp_started = true;
	c->s.no_retry = true;
	buf_commit(&u->in, (size_t)n);
	if (c->state == C_TUNNEL)
		u->parsed = u->in.end;
	else if (!c->s.resp_done) /* bytes after the response: never forwarded */
		parse_response(c, u);
	return true;
}

/* The status code of the response whose status line is [p, eol). The
 * parser has accepted it, so it is "HTTP/x.y NNN ...". */
static int status_of(const char *p, const char *eol)
{
	if (eol - p < 12)
		return 0;
	return (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
}

/* One past the blank line ending the head that starts at pos, or 0. */
static uint32_t head_end(const char *d, uint32_t pos, uint32_t end)
{
	for (uint32_t i = pos; i + 1 < end; i++) {
		if (d[i] != '\n')
			continue;
		if (d[i + 1] == '\n')
			return i + 2;
		if (i + 2 < end && d[i + 1] == '\r' && d[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/*
 * Draining: put "Connection: close" into the final response's head, right
 * after its status line (first, so that clients reading only the first
 * Connection header see it too), so the client opens its next connection
 * to whoever accepts now instead of reusing this one. Interim responses
 * (100 Continue) pass unchanged. Returns how far the response may be
 * forwarded: up to the head still incomplete while the decision waits.
 */
uint32_t drain_inject(struct conn *c)
{
	static const char hdr[] = "Connection: close\r\n";
	const uint32_t hlen = sizeof(hdr) - 1;
	struct upstream *u = c->s.up;
	uint32_t pos = u->in.start, at;

	for (;;) {
		char *d = u->in.data, *eol;
		int status;

		if (pos >= u->parsed)
			return pos;
		eol = memchr(d + pos, '\n', u->parsed - pos);
		if (!eol)
			return pos; /* status line still incomplete */
		status = status_of(d + pos, eol);
		if (status >= 100 && status < 200 && status != 101) {
			uint32_t e = head_end(d, pos, u->parsed);

			if (!e)
				return pos;
			pos = e;
			continue;
		}
		if (status == 101 || c->s.want_upgrade || c->s.is_connect) {
			c->s.close_state = CLOSE_TOO_LATE; /* becomes a tunnel */
			return u->parsed;
		}
		at = (uint32_t)(eol - d) + 1;
		if (buf_room(&u->in) < hlen) {
			/* Past the window's limit by the header, no more. */
			u->in.max = u->in.cap + hlen;
			if (buf_reserve(&u->in, hlen)) {
				c->s.close_state = CLOSE_TOO_LATE;
				return u->parsed;
			}
			d = u->in.data;
		}
		memmove(d + at + hlen, d + at, u->in.end - at);
		memcpy(d + at, hdr, hlen);
		buf_commit(&u->in, hlen);
		u->parsed += hlen;
		c->s.close_state = CLOSE_INJECTED;
		return u->parsed;
	}
}
