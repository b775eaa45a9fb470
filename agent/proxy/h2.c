// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * HTTP/2 towards clients: a server session per client connection, and the
 * life of each stream (struct h2s) from its header block to its end in
 * both directions. h2.h has the picture.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <nghttp2/nghttp2.h>
#include <llhttp.h>

#include "core/log.h"
#include "core/util.h"
#include "proxy/h2.h"
#include "proxy/proxy_int.h"
#include "proxy/reqstats.h"
#include "proxy/route.h"
#include "state/dstguard.h"
#include "state/store.h"

bool h2_preface_at(const char *p, size_t len)
{
	return len >= H2_PREFACE_LEN && !memcmp(p, H2_PREFACE, H2_PREFACE_LEN);
}

/* ---- header blocks ---- */

int h2_hb_add(struct h2hb *hb, const uint8_t *name, size_t nl, const uint8_t *value, size_t vl)
{
	struct h2f *f;

	if (hb->n == hb->cap) {
		uint32_t cap = hb->cap ? 2 * hb->cap : 16;

		f = realloc(hb->f, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		hb->f = f;
		hb->cap = cap;
	}
	f = &hb->f[hb->n];
	f->no = (uint32_t)hb->b.end;
	f->nl = (uint32_t)nl;
	f->vo = (uint32_t)(hb->b.end + nl);
	f->vl = (uint32_t)vl;
	if (buf_append(&hb->b, name, nl) || buf_append(&hb->b, value, vl))
		return -ENOMEM;
	hb->n++;
	hb->list_size += nl + vl + 32;
	return 0;
}

void h2_hb_free(struct h2hb *hb)
{
	buf_free(&hb->b);
	free(hb->f);
	memset(hb, 0, sizeof(*hb));
}

nghttp2_nv *h2_hb_nv(const struct h2hb *hb)
{
	nghttp2_nv *nv = calloc(hb->n ? hb->n : 1, sizeof(*nv));

	for (uint32_t i = 0; nv && i < hb->n; i++) {
		nv[i].name = (uint8_t *)hb->b.data + hb->f[i].no;
		nv[i].namelen = hb->f[i].nl;
		nv[i].value = (uint8_t *)hb->b.data + hb->f[i].vo;
		nv[i].valuelen = hb->f[i].vl;
		nv[i].flags = NGHTTP2_NV_FLAG_NONE;
	}
	return nv;
}

size_t h2_hb_headers(const struct h2hb *hb, struct http_header *out, size_t max)
{
	size_t n = hb->n < max ? hb->n : max;

	for (size_t i = 0; i < n; i++) {
		out[i].name = hb->b.data + hb->f[i].no;
		out[i].name_len = hb->f[i].nl;
		out[i].value = hb->b.data + hb->f[i].vo;
		out[i].value_len = hb->f[i].vl;
	}
	return n;
}

const char *h2_hb_get(const struct h2hb *hb, const char *name, uint32_t *len)
{
	size_t nl = strlen(name);

	for (uint32_t i = 0; i < hb->n; i++)
		if (hb->f[i].nl == nl && !memcmp(hb->b.data + hb->f[i].no, name, nl)) {
			*len = hb->f[i].vl;
			return hb->b.data + hb->f[i].vo;
		}
	return NULL;
}

/* ---- writing, reading, the dirty list ---- */

void h2_mark(struct h2io *io)
{
	if (io->dirty || io->dead)
		return;
	io->dirty = true;
	io->dirty_next = io->p->h2_dirty;
	io->p->h2_dirty = io;
}

bool h2_io_flush(struct h2io *io)
{
	for (;;) {
		ssize_t n;

		while (buf_len(&io->out) < H2_OUT_HIGH) {
			const uint8_t *d;

			n = nghttp2_session_mem_send(io->ng, &d);
			if (n < 0)
				return false;
			if (n == 0)
				break;
			if (buf_append(&io->out, d, (size_t)n))
				return false;
		}
		if (!buf_len(&io->out)) {
			buf_free(&io->out); /* an idle session holds no buffer */
			return true;
		}
		if (!io->wr)
			return true;
		n = send(io->fd, buf_head(&io->out), buf_len(&io->out),
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return false;
			io->wr = false;
			return true;
		}
		buf_consume(&io->out, (size_t)n);
		if (buf_len(&io->out))
			io->wr = false; /* a short write: the socket is full */
		else
			buf_reset(&io->out);
	}
}

int h2_io_read(struct h2io *io)
{
	uint8_t b[16384];

	while (io->rd && !io->eof && !io->dead && !io->stop) {
		ssize_t n = read(io->fd, b, sizeof(b)), r;

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				io->rd = false;
				return 0;
			}
			return -errno;
		}
		if (n == 0) {
			io->eof = true;
			return 0;
		}
		io->rx = true;
		r = nghttp2_session_mem_recv(io->ng, b, (size_t)n);
		if (r < 0)
			return (int)r; /* an NGHTTP2_ERR_*: negative, never an errno */
	}
	return 0;
}

static bool cc_done(struct h2cc *cc)
{
	if (buf_len(&cc->io.out))
		return false;
	if (cc->io.eof && !cc->n_streams)
		return true;
	return !nghttp2_session_want_read(cc->io.ng) && !nghttp2_session_want_write(cc->io.ng);
}

static void cc_deadline(struct h2cc *cc)
{
	struct proxy *p = cc->io.p;

	if (cc->c->p->draining && !cc->goaway)
		return; /* the GOAWAY timer stands */
	client_set_deadline(cc->c, cc->n_streams ? p->o.tunnel_timeout_ms : p->o.idle_timeout_ms);
}

void h2_flush_dirty(struct proxy *p)
{
	while (p->h2_dirty) {
		struct h2io *io = p->h2_dirty;

		p->h2_dirty = io->dirty_next;
		io->dirty = false;
		io->dirty_next = NULL;
		if (io->dead)
			continue;
		if (io->upstream) {
			struct h2up *u = (struct h2up *)((char *)io - offsetof(struct h2up, io));

			/* Nothing is taken from a stream before the session
			 * connected: a sandbox that cannot be reached leaves the
			 * whole request for the fallback. */
			if (!u->connected)
				continue;
			if (!h2_io_flush(io))
				h2up_close(u, -EPIPE);
			else if (!nghttp2_session_want_read(io->ng) &&
				 !nghttp2_session_want_write(io->ng) && !buf_len(&io->out))
				h2up_close(u, -ECONNRESET);
			continue;
		}
		struct h2cc *cc = (struct h2cc *)((char *)io - offsetof(struct h2cc, io));

		if (!h2_io_flush(io) || cc_done(cc))
			client_close(cc->c);
		else
			cc_deadline(cc);
	}
}

/* ---- streams ---- */

static struct h2s *stream_of(nghttp2_session *ng, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(ng, id) : NULL;
}

static void stream_record(struct h2s *s)
{
	struct conn *c = s->cc->c;
	struct proxy *p = c->p;
	enum rs_dest d = s->ours	 ? RS_DEST_ERROR
			 : s->to_sandbox ? RS_DEST_SANDBOX
					 : RS_DEST_BASELINE;
	enum rs_outcome o;
	struct req_obs obs = {.req_bytes = s->req_bytes,
			      .resp_bytes = s->resp_bytes,
			      .status = s->ours ? s->status : 0,
			      .routed = s->routed};
	uint64_t dur;

	if (!s->t0_ns || !(s->routed || s->ours))
		return;
	dur = rs_now_ns() - s->t0_ns;
	s->t0_ns = 0;
	if (s->ours || (s->status && s->close_code == NGHTTP2_NO_ERROR))
		o = rs_outcome_of_status(s->status);
	else if (s->up_failed)
		o = RS_UPSTREAM_ERROR;
	else
		o = RS_CLIENT_ABORT;
	p->st.h2_streams++;
	reqstats_record(&p->rs, &c->orig, RS_HTTP2, d, o, dur);
	if (p->o.access_log && route_table_service_count(p->snap->t, &c->orig))
		rs_access_log(&c->orig, s->key, RS_HTTP2, d, s->routed ? &s->dst : NULL, s->status,
			      o, &obs, dur);
}

/* --max-upstream-conns-per-pod for HTTP/2: a pod's streams to one sandbox
 * count H2_UP_MAX_STREAMS (one session's worth) to a connection. false:
 * the pod is at its limit. */
static bool h2s_hold(struct h2s *s)
{
	struct conn *c = s->cc->c;
	struct proxy *p = c->p;
	struct pod_hold *h;

	if (s->hold || !s->to_sandbox || !c->pod || !p->o.max_upstream_per_pod)
		return true;
	h = hold_take(p, c->pod->netns, &s->dst, true);
	if (!h && errno == EPOD_UPSTREAM_LIMIT) {
		p->st.pod_upstream_limit++;
		return false;
	}
	s->hold = h; /* NULL: out of memory, not counted, not refused */
	return true;
}

static void h2s_unhold(struct h2s *s)
{
	if (s->hold) {
		hold_put(s->cc->c->p, s->hold, true);
		s->hold = NULL;
	}
}

void h2s_free_if_done(struct h2s *s)
{
	struct h2cc *cc = s->cc;

	if (s->id || s->up)
		return;
	infer_in_abort(&s->inf, rs_now_ns()); /* still in flight: the app may go on */
	h2s_unhold(s);
	stream_record(s);
	if (s->cprev)
		s->cprev->cnext = s->cnext;
	else
		cc->streams = s->cnext;
	if (s->cnext)
		s->cnext->cprev = s->cprev;
	cc->n_streams--;
	h2_hb_free(&s->reqh);
	h2_hb_free(&s->req_trl);
	h2_hb_free(&s->resph);
	h2_hb_free(&s->resp_trl);
	buf_free(&s->req);
	buf_free(&s->resp);
	free(s);
}

static void kick_client(struct h2s *s)
{
	if (!s->id)
		return;
	if (s->resp_deferred) {
		s->resp_deferred = false;
		nghttp2_session_resume_data(s->cc->io.ng, s->id);
	}
	h2_mark(&s->cc->io);
}

/* The client's side of the response body: what the upstream sent, or our
 * own answer's body. */
static ssize_t resp_read(nghttp2_session *ng, int32_t id, uint8_t *b, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct h2s *s = src->ptr;
	size_t n = buf_len(&s->resp);

	(void)user;
	if (n > len)
		n = len;
	if (n) { /* an empty buffer may have no storage at all */
		memcpy(b, buf_head(&s->resp), n);
		buf_consume(&s->resp, n);
	}
	s->resp_bytes += n;
	if (n && s->up && s->up_id) {
		nghttp2_session_consume_stream(s->up->io.ng, s->up_id, n);
		h2_mark(&s->up->io);
	}
	if (buf_len(&s->resp))
		return (ssize_t)n;
	buf_reset(&s->resp);
	if (!s->resp_end) {
		if (n)
			return (ssize_t)n;
		s->resp_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	if (s->resp_trl.n) {
		nghttp2_nv *nv = h2_hb_nv(&s->resp_trl);

		*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (!nv || nghttp2_submit_trailer(ng, id, nv, s->resp_trl.n))
			nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id,
						  NGHTTP2_INTERNAL_ERROR);
		free(nv);
	}
	return (ssize_t)n;
}

/* grpc-message is percent-encoded (gRPC over HTTP/2, "Responses"). */
static void grpc_message(const char *msg, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *msg && o + 4 < len; msg++) {
		unsigned char ch = (unsigned char)*msg;

		if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
}

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE     \
	}

/* Answer s ourselves: for gRPC a trailers-only response (grpc-status 14,
 * UNAVAILABLE, for what a retry may fix; 13 otherwise), else status and a
 * text body. Too late once the upstream's response began: reset. */
static void h2s_error(struct h2s *s, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void h2s_error(struct h2s *s, int status, const char *fmt, ...)
{
	struct proxy *p = s->cc->io.p;
	nghttp2_data_provider prov = {.source.ptr = s, .read_callback = resp_read};
	char msg[512], enc[1600], st[8], cl[24];
	va_list ap;
	int r;

	if (s->up)
		h2up_detach(s, NGHTTP2_CANCEL);
	if (!s->id)
		return;
	if (s->resp_sent) {
		nghttp2_submit_rst_stream(s->cc->io.ng, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_INTERNAL_ERROR);
		h2_mark(&s->cc->io);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(st, sizeof(st), "%d", status);
	if (status >= 500)
		p->st.errors++;
	else
		p->st.bad_requests++;
	s->status = status;
	s->ours = s->answered = s->resp_sent = s->resp_final = true;
	infer_in_abort(&s->inf, rs_now_ns()); /* shunt answered: the app may go on */
	if (s->grpc) {
		const char *code = status == 502 || status == 503 || status == 504 ? "14" : "13";
		nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
				   NV("grpc-status", code), NV("grpc-message", enc),
				   NV("x-shunt-error", st)};

		grpc_message(msg, enc, sizeof(enc));
		nv[3].valuelen = strlen(enc);
		s->resp_end = true;
		r = nghttp2_submit_response(s->cc->io.ng, s->id, nv, 5, NULL);
	} else {
		size_t ml = strlen(msg);

		snprintf(cl, sizeof(cl), "%zu", ml + 1);
		nghttp2_nv nv[] = {NV(":status", st), NV("content-type", "text/plain"),
				   NV("content-length", cl), NV("x-shunt-error", st)};

		buf_reset(&s->resp);
		if (buf_append(&s->resp, msg, ml) || buf_append(&s->resp, "\n", 1)) {
			nghttp2_submit_rst_stream(s->cc->io.ng, NGHTTP2_FLAG_NONE, s->id,
						  NGHTTP2_INTERNAL_ERROR);
			h2_mark(&s->cc->io);
			return;
		}
		s->resp_end = true;
		r = nghttp2_submit_response(s->cc->io.ng, s->id, nv, 4, s->is_head ? NULL : &prov);
	}
	if (r)
		nghttp2_submit_rst_stream(s->cc->io.ng, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_INTERNAL_ERROR);
	h2_mark(&s->cc->io);
}

/* No session could carry s (errno from h2up_submit). */
static void h2s_no_upstream(struct h2s *s, int err)
{
	struct proxy *p = s->cc->io.p;
	char a[ADDR_STR_LEN];

	format_addr_port(&s->dst, a, sizeof(a));
	if (err == EPOD_UPSTREAM_LIMIT) {
		char who[INET6_ADDRSTRLEN], tail[96];
		struct pod *pod = s->cc->c->pod;

		if (limit_log(p, p->st.pod_upstream_limit, tail, sizeof(tail)))
			pr_warn("pod %s (netns %llu): its HTTP/2 streams to sandbox %s are at %zu "
				"(--max-upstream-conns-per-pod %zu x %d streams): answering 503 "
				"(%s)",
				pod_name(pod, who, sizeof(who)), (unsigned long long)pod->netns, a,
				p->o.max_upstream_per_pod * H2_UP_MAX_STREAMS,
				p->o.max_upstream_per_pod, H2_UP_MAX_STREAMS, tail);
		h2s_error(s, 503,
			  "shunt: this pod has %zu HTTP/2 streams open to sandbox %s, the limit "
			  "(--max-upstream-conns-per-pod x %d); try again",
			  p->o.max_upstream_per_pod * H2_UP_MAX_STREAMS, a, H2_UP_MAX_STREAMS);
	} else if (err == EUPSTREAM_LIMIT)
		h2s_error(s, 503,
			  "shunt: %zu connections to %s are in use, the limit "
			  "(--max-upstream-conns); try again",
			  p->o.max_upstream_per_dst, a);
	else if (err == EDST_REFUSED)
		h2s_error(s, 502,
			  "shunt: refusing to connect to %s: it is %s; shunt never sends traffic "
			  "to the node",
			  a, dst_class_text(dstguard_check(&p->snap->guard, &s->dst)));
	else
		h2s_error(s, 503, "shunt: no connection to %s: %s", a, strerror(err));
}

static void h2s_unreachable(struct h2s *s, int err)
{
	char a[ADDR_STR_LEN];
	const char *why =
		err == -EPROTONOSUPPORT
			? "it does not speak HTTP/2 (no SETTINGS after the connection preface)"
		: err < 0 ? strerror(-err)
			  : nghttp2_http2_strerror((uint32_t)err);

	format_addr_port(&s->dst, a, sizeof(a));
	if (s->to_sandbox)
		h2s_error(s, err == -ETIMEDOUT ? 503 : 502,
			  "shunt: sandbox %s for routing key \"%s\" is unreachable: %s", a, s->key,
			  why);
	else
		h2s_error(s, err == -ETIMEDOUT ? 503 : 502, "shunt: upstream %s is unreachable: %s",
			  a, why);
}

/* The upstream answered in full and stopped reading the request: once
 * the response's end went out, the client gets RST_STREAM(NO_ERROR). */
static void stop_request(struct h2s *s)
{
	if (s->id && s->up_stopped && s->resp_end_sent && !s->req_end) {
		nghttp2_submit_rst_stream(s->cc->io.ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
		s->up_stopped = false;
		h2_mark(&s->cc->io);
	}
}

/* A sandbox route with fallback=baseline: s goes to its baseline. */
static void h2s_fall_back(struct h2s *s, const char *why)
{
	struct proxy *p = s->cc->io.p;
	char a[ADDR_STR_LEN], b[ADDR_STR_LEN];

	pr_info("sandbox %s for key %s unreachable (%s): falling back to baseline %s",
		format_addr_port(&s->dst, a, sizeof(a)), s->key, why,
		format_addr_port(&s->cc->c->orig, b, sizeof(b)));
	s->dst = s->cc->c->orig;
	s->to_sandbox = false;
	h2s_unhold(s);
	p->st.fallbacks++;
}

void h2s_upstream_closed(struct h2s *s, int err, bool refused_unprocessed)
{
	struct proxy *p = s->cc->io.p;

	if (!err && s->resp_end) {
		kick_client(s);
		stop_request(s);
		h2s_free_if_done(s);
		return;
	}
	if (!err)
		err = NGHTTP2_INTERNAL_ERROR; /* closed without the end of a response */
	if (s->id && !s->resp_sent && !s->answered) {
		bool retry = false;

		/* A stream refused by a session that had not said its limits
		 * yet was sent blind: up to H2_BLIND_RETRIES more tries, the
		 * limit is known from the second session on. */
		if (refused_unprocessed && !s->req_fwd &&
		    (s->attempts < 2 || (s->up_unsettled && s->attempts < H2_BLIND_RETRIES))) {
			retry = true; /* the upstream never saw it: send it again */
			p->st.retries++;
		} else if (s->to_sandbox && s->fallback && !s->up_connected && err < 0) {
			h2s_fall_back(s, strerror(-err));
			retry = true;
		}
		if (retry) {
			s->attempts++;
			if (!h2up_submit(p, s))
				h2s_no_upstream(s, errno);
		} else {
			h2s_unreachable(s, err);
		}
	} else if (s->id && !s->resp_end) {
		/* Part of the response went out: pass the error on. */
		s->up_failed = true;
		nghttp2_submit_rst_stream(s->cc->io.ng, NGHTTP2_FLAG_NONE, s->id,
					  err > 0 ? (uint32_t)err : NGHTTP2_INTERNAL_ERROR);
		h2_mark(&s->cc->io);
	} else {
		kick_client(s);
	}
	h2s_free_if_done(s);
}

/* The final response head from the upstream: on to the client. */
void h2s_respond(struct h2s *s)
{
	nghttp2_data_provider prov = {.source.ptr = s, .read_callback = resp_read};
	nghttp2_nv *nv;
	uint32_t vl;
	const char *v = h2_hb_get(&s->resph, ":status", &vl);
	int st = v && vl == 3 ? atoi(v) : 0, r;

	if (st >= 200 && s->resp_end)
		infer_in_end(&s->inf, rs_now_ns()); /* answered, no body */
	else if (st >= 200)
		infer_in_unkey(&s->inf); /* answering: in flight without its key */
	if (!s->id)
		return;
	if (st >= 100 && st < 200) {
		/* Interim (100 Continue, 103): passed on, the final one follows. */
		nv = h2_hb_nv(&s->resph);
		if (nv)
			nghttp2_submit_headers(s->cc->io.ng, NGHTTP2_FLAG_NONE, s->id, NULL, nv,
					       s->resph.n, NULL);
		free(nv);
		h2_hb_free(&s->resph);
		h2_mark(&s->cc->io);
		return;
	}
	s->resp_final = s->resp_sent = true;
	s->status = st;
	nv = h2_hb_nv(&s->resph);
	r = nv ? nghttp2_submit_response(
			 s->cc->io.ng, s->id, nv, s->resph.n,
			 s->resp_end && !buf_len(&s->resp) && !s->resp_trl.n ? NULL : &prov)
	       : -1;
	free(nv);
	if (r)
		nghttp2_submit_rst_stream(s->cc->io.ng, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_INTERNAL_ERROR);
	h2_mark(&s->cc->io);
}

void h2s_resp_data(struct h2s *s, const uint8_t *d, size_t len, bool end)
{
	if (len && s->id && buf_append(&s->resp, d, len)) {
		h2s_error(s, 502, "shunt: out of memory");
		return;
	}
	if (!s->id && len && s->up && s->up_id)
		nghttp2_session_consume_stream(s->up->io.ng, s->up_id, len); /* nobody to read it */
	if (end) {
		s->resp_end = true;
		infer_in_end(&s->inf, rs_now_ns()); /* answered */
	}
	if (s->resp_sent)
		kick_client(s);
}

/* Where s goes, decided from its own header block. */
static void h2s_route(struct h2s *s)
{
	struct proxy *p = s->cc->io.p;
	struct route_input in;
	struct route_decision rd;
	uint32_t vl;
	const char *v;
	size_t n = h2_hb_headers(&s->reqh, p->hdrs, p->o.max_headers);

	v = h2_hb_get(&s->reqh, "content-type", &vl);
	s->grpc = v && vl >= 16 && !strncasecmp(v, "application/grpc", 16);
	v = h2_hb_get(&s->reqh, ":method", &vl);
	s->is_head = v && vl == 4 && !memcmp(v, "HEAD", 4);
	in.rk = &p->o.rk;
	in.hdrs = p->hdrs;
	in.n_hdrs = n;
	in.orig = &s->cc->c->orig;
	in.t = p->snap->t;
	in.guard = &p->snap->guard;
	in.now_unix = 0;
	if (s->cc->c->inbound) {
		/* To the app, whatever its key: noted for inference. */
		int klen = rk_extract(in.rk, in.hdrs, in.n_hdrs, s->key, sizeof(s->key));

		if (klen <= 0)
			s->key[0] = '\0';
		s->dst = s->cc->c->orig;
		s->routed = true;
		infer_inbound_begin_h2(s->cc->c, &s->inf, s->key);
		if (!h2up_submit(p, s))
			h2s_no_upstream(s, errno);
		return;
	}
	route_decide(&in, &rd, s->key, sizeof(s->key));
	if (s->cc->c->inpod && s->cc->c->inpod->infer &&
	    infer_outbound_h2(s->cc->c, rd.reason == ROUTE_NO_KEY, &s->reqh)) {
		/* The header block gained a baggage field: route by it. */
		in.n_hdrs = h2_hb_headers(&s->reqh, p->hdrs, p->o.max_headers);
		route_decide(&in, &rd, s->key, sizeof(s->key));
	}
	if (rd.reason == ROUTE_BAD_KEY) {
		p->st.bad_keys++;
		p->rs.parse_errors[HTTP_ERR_ROUTING_KEY]++;
	}
	p->st.requests++;
	s->dst = rd.dst;
	s->to_sandbox = rd.to_sandbox;
	s->fallback = rd.fallback;
	s->routed = true;
	if (rd.to_sandbox)
		p->st.to_sandbox++;
	else
		p->st.to_baseline++;
	if (rd.reason == ROUTE_REFUSED) {
		p->st.dst_refused++;
		h2s_no_upstream(s, EDST_REFUSED);
	} else if (!h2s_hold(s)) {
		h2s_no_upstream(s, EPOD_UPSTREAM_LIMIT);
	} else if (h2up_speaks(p, conn_pool(s->cc->c), &s->dst) == POOL_H2_NO &&
		   !(s->to_sandbox && s->fallback)) {
		h2s_unreachable(s, -EPROTONOSUPPORT); /* a session to it just showed that */
	} else if (h2up_speaks(p, conn_pool(s->cc->c), &s->dst) == POOL_H2_NO) {
		h2s_fall_back(s, "it does not speak HTTP/2");
		if (!h2up_submit(p, s))
			h2s_no_upstream(s, errno);
	} else if (!h2up_submit(p, s)) {
		h2s_no_upstream(s, errno);
	}
}

/* ---- the client's session: nghttp2's callbacks ---- */

/* -v: every frame a client connection sends or receives, for debugging. */
static void log_frame(const char *dir, const nghttp2_frame *f)
{
	static const char *const names[] = {
		"DATA",		"HEADERS", "PRIORITY", "RST_STREAM",	"SETTINGS",
		"PUSH_PROMISE", "PING",	   "GOAWAY",   "WINDOW_UPDATE", "CONTINUATION"};
	uint32_t code = f->hd.type == NGHTTP2_RST_STREAM ? f->rst_stream.error_code
			: f->hd.type == NGHTTP2_GOAWAY	 ? f->goaway.error_code
							 : 0;

	pr_debug("h2 client %s %s stream %d flags 0x%02x length %zu%s%s", dir,
		 f->hd.type < 10 ? names[f->hd.type] : "(extension)", f->hd.stream_id, f->hd.flags,
		 f->hd.length, code ? " error " : "", code ? nghttp2_http2_strerror(code) : "");
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
	struct h2cc *cc = user;
	struct h2s *s;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	s->cc = cc;
	s->id = f->hd.stream_id;
	s->t0_ns = rs_now_ns();
	s->cnext = cc->streams;
	if (cc->streams)
		cc->streams->cprev = s;
	cc->streams = s;
	cc->n_streams++;
	nghttp2_session_set_stream_user_data(ng, s->id, s);
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
	struct h2cc *cc = user;
	struct proxy *p = cc->io.p;
	struct h2s *s = stream_of(ng, f->hd.stream_id);
	struct h2hb *hb;

	(void)flags;
	if (!s || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	hb = f->headers.cat == NGHTTP2_HCAT_REQUEST ? &s->reqh : &s->req_trl;
	if (hb->list_size + nl + vl + 32 > p->o.max_head_bytes || hb->n >= p->o.max_headers) {
		p->rs.parse_errors[HTTP_ERR_HEAD_TOO_LARGE]++;
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
	}
	s->req_bytes += nl + vl;
	if (h2_hb_add(hb, name, nl, value, vl))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

/* A stream open upstream was reset on the client's connection, by the
 * client (RST_STREAM) or by nghttp2 for the client's protocol error (a
 * window overflow, a bad trailer: "MadeYouReset", CVE-2025-8671): one
 * token. false
 * when none is left (the connection was told to calm down). */
static bool reset_taken(struct h2cc *cc)
{
	struct proxy *p = cc->io.p;
	uint64_t now = p->loop->now_ms;
	uint64_t add = (now - cc->reset_refill_ms) * H2_RESET_RATE / 1000;

	if (add) {
		cc->reset_tokens = add >= H2_RESET_BURST - cc->reset_tokens
					   ? H2_RESET_BURST
					   : cc->reset_tokens + (uint32_t)add;
		cc->reset_refill_ms = now;
	}
	if (cc->reset_tokens) {
		cc->reset_tokens--;
		return true;
	}
	if (!cc->calm) {
		char a[ADDR_STR_LEN];

		cc->calm = true;
		cc->io.stop = true;
		p->st.h2_calmed++;
		pr_warn("client %s: HTTP/2 streams reset faster than %d a second: GOAWAY "
			"ENHANCE_YOUR_CALM",
			format_addr_port(&cc->c->peer, a, sizeof(a)), H2_RESET_RATE);
		nghttp2_session_terminate_session(cc->io.ng, NGHTTP2_ENHANCE_YOUR_CALM);
	}
	return false;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
	struct h2cc *cc = user;
	struct h2s *s = stream_of(ng, f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	if (log_threshold >= LOG_DEBUG)
		log_frame("got", f);
	if (!s)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
		s->req_end = end;
		if (cc->calm)
			nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id,
						  NGHTTP2_REFUSED_STREAM); /* never routed */
		else
			h2s_route(s);
		return 0;
	}

	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && end) {
		s->req_end = true;
		h2up_kick(s);
	}
	return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
		   void *user)
{
	struct h2s *s = stream_of(ng, id);

	(void)flags;
	(void)user;
	nghttp2_session_consume_connection(ng, len);
	if (!s || !s->up || s->answered) {
		/* Nobody will take it (answered by us, or the upstream is
		 * done): dropped, and the client may send more. */
		nghttp2_session_consume_stream(ng, id, len);
		return 0;
	}
	s->req_bytes += len;
	if (buf_append(&s->req, d, len))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	h2up_kick(s);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
	struct h2s *s = stream_of(ng, id);

	(void)user;
	if (!s)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	s->id = 0;
	s->close_code = code;
	if (code != NGHTTP2_NO_ERROR && s->up_id && !s->resp_end)
		reset_taken(s->cc);
	if (s->up)
		h2up_detach(s, NGHTTP2_CANCEL);
	h2s_free_if_done(s);
	return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
	struct h2s *s = stream_of(ng, f->hd.stream_id);

	(void)user;
	if (log_threshold >= LOG_DEBUG)
		log_frame("sent", f);
	if (s && (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		s->resp_end_sent = true;
		stop_request(s);
	}
	return 0;
}

static nghttp2_session_callbacks *server_cbs;

static void server_callbacks_make(void)
{
	nghttp2_session_callbacks *cbs;

	if (nghttp2_session_callbacks_new(&cbs))
		return;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	server_cbs = cbs;
}

/* Made once for every worker (nghttp2 copies them into each session); NULL
 * when out of memory then. */
static nghttp2_session_callbacks *server_callbacks(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, server_callbacks_make);
	return server_cbs;
}

/* ---- the client connection ---- */

/* The server session of c, with our SETTINGS queued after whatever
 * c->h2->io.out holds already (the 101 of an upgrade). */
static struct h2cc *session_new(struct conn *c)
{
	struct proxy *p = c->p;
	nghttp2_session_callbacks *cbs = server_callbacks();
	nghttp2_option *opt = NULL;
	struct h2cc *cc = calloc(1, sizeof(*cc));
	int r;

	if (!cc || !cbs || nghttp2_option_new(&opt)) {
		free(cc);
		return NULL;
	}
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_send_header_block_length(opt, 256 * 1024);
	r = nghttp2_session_server_new2(&cc->io.ng, cbs, cc, opt);
	nghttp2_option_del(opt);
	if (r) {
		free(cc);
		return NULL;
	}
	cc->c = c;
	cc->reset_tokens = H2_RESET_BURST;
	cc->reset_refill_ms = p->loop->now_ms;
	cc->io.p = p;
	cc->io.fd = c->fd;
	cc->io.rd = true;
	cc->io.wr = c->wr;
	c->h2 = cc;
	c->state = C_H2;
	p->st.h2_conns++;
	return cc;
}

static int session_settings(struct h2cc *cc)
{
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cc->io.p->o.max_head_bytes},
	};

	if (nghttp2_submit_settings(cc->io.ng, NGHTTP2_FLAG_NONE, iv, 3) ||
	    nghttp2_session_set_local_window_size(cc->io.ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW))
		return -1;
	return 0;
}

/* Bytes the client sent after what HTTP/1 looked at (from, to the end of
 * c->in) go to the session; c->in is done with. */
static bool session_feed(struct conn *c, size_t from)
{
	ssize_t r = 0;

	if (from < c->in.end)
		r = nghttp2_session_mem_recv(c->h2->io.ng, (const uint8_t *)c->in.data + from,
					     c->in.end - from);
	conn_buf_release(c->p, &c->in);
	c->parsed = c->sent = 0;
	if (r < 0) {
		client_close(c);
		return false;
	}
	return true;
}

bool h2_start(struct conn *c)
{
	if (!session_new(c) || session_settings(c->h2)) {
		client_close(c);
		return false;
	}
	/* What was read so far (the preface, maybe more) goes in first. */
	if (!session_feed(c, c->s.req_start))
		return false;
	h2_conn_event(c, 0);
	return true;
}

/* HTTP2-Settings is base64url without padding (RFC 7540 section 3.2.1). */
static ssize_t b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	size_t o = 0;
	int bits = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = in[i];
		int v = ch >= 'A' && ch <= 'Z'	 ? ch - 'A'
			: ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
			: ch >= '0' && ch <= '9' ? ch - '0' + 52
			: ch == '-'		 ? 62
			: ch == '_'		 ? 63
						 : -1;

		if (ch == '=' && i + 2 >= len)
			break; /* padding some clients send anyway */
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return (ssize_t)o;
}

/* An HTTP/1 header that HTTP/2 forbids or that the upgrade used up. */
static bool h1_only(const struct http_header *h)
{
	static const char *const names[] = {
		"connection",	  "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
		"http2-settings", "host",	"content-length"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (h->name_len == strlen(names[i]) && !strncasecmp(h->name, names[i], h->name_len))
			return true;
	return h->name_len == 2 && !strncasecmp(h->name, "te", 2) &&
	       !(h->value_len == 8 && !strncasecmp(h->value, "trailers", 8));
}

/* The upgrade request as stream 1's header block. */
static int upgrade_headers(struct conn *c, struct h2s *s, const struct http_header *h, size_t n)
{
	const char *line = c->in.data + c->s.req_start, *sp1, *sp2, *auth = NULL;
	const char *method = llhttp_method_name((llhttp_method_t)c->s.req.method);
	size_t auth_len = 0, tl;
	int r = 0;

	sp1 = memchr(line, ' ', c->s.head_len);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', c->s.head_len - (size_t)(sp1 + 1 - line)) : NULL;
	if (!sp2)
		return -1;
	tl = (size_t)(sp2 - sp1 - 1);
	for (size_t i = 0; i < n; i++)
		if (h[i].name_len == 4 && !strncasecmp(h[i].name, "host", 4)) {
			auth = h[i].value;
			auth_len = h[i].value_len;
		}
	if (!auth || !tl || sp1[1] != '/')
		return -1; /* no Host, or not origin-form: stays HTTP/1 */
	r |= h2_hb_add(&s->reqh, (const uint8_t *)":method", 7, (const uint8_t *)method,
		       strlen(method));
	r |= h2_hb_add(&s->reqh, (const uint8_t *)":scheme", 7, (const uint8_t *)"http", 4);
	r |= h2_hb_add(&s->reqh, (const uint8_t *)":authority", 10, (const uint8_t *)auth,
		       auth_len);
	r |= h2_hb_add(&s->reqh, (const uint8_t *)":path", 5, (const uint8_t *)sp1 + 1, tl);
	for (size_t i = 0; i < n && !r; i++) {
		char name[256];

		if (h1_only(&h[i]) || h[i].name_len >= sizeof(name))
			continue;
		for (size_t j = 0; j < h[i].name_len; j++)
			name[j] = (char)((h[i].name[j] >= 'A' && h[i].name[j] <= 'Z')
						 ? h[i].name[j] + 32
						 : h[i].name[j]);
		r |= h2_hb_add(&s->reqh, (const uint8_t *)name, h[i].name_len,
			       (const uint8_t *)h[i].value, h[i].value_len);
	}
	return r ? -1 : 0;
}

void h2_upgrade(struct conn *c, const struct http_header *h, size_t n,
		const struct http_header *settings)
{
	static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
				 "Upgrade: h2c\r\n\r\n";
	uint8_t payload[256];
	ssize_t plen =
		b64url_decode(settings->value, settings->value_len, payload, sizeof(payload));
	size_t after = c->s.req_start + c->s.head_len;
	struct h2s *s = calloc(1, sizeof(*s));
	struct h2cc *cc;

	if (!s || plen < 0 || upgrade_headers(c, s, h, n)) {
		if (s)
			h2_hb_free(&s->reqh);
		free(s);
		c->p->rs.parse_errors[HTTP_ERR_HEADER]++;
		client_error(c, 400,
			     "shunt: Upgrade: h2c with an invalid HTTP2-Settings or target");
		return;
	}
	cc = session_new(c);
	if (!cc || buf_append(&cc->io.out, sw, sizeof(sw) - 1) || session_settings(cc) ||
	    nghttp2_session_upgrade2(cc->io.ng, payload, (size_t)plen, c->s.req.method == HTTP_HEAD,
				     s)) {
		h2_hb_free(&s->reqh);
		free(s);
		client_close(c);
		return;
	}
	s->cc = cc;
	s->id = 1;
	s->req_end = true;
	s->t0_ns = c->s.obs.t0_ns ? c->s.obs.t0_ns : rs_now_ns();
	c->s.obs.t0_ns = 0; /* counted as stream 1, not as an HTTP/1 request */
	s->req_bytes = c->s.head_len;
	cc->streams = s;
	cc->n_streams = 1;
	h2s_route(s);
	/* The client's preface and frames may have come right behind. */
	if (!session_feed(c, after))
		return;
	h2_conn_event(c, 0);
}

void h2_conn_event(struct conn *c, uint32_t events)
{
	struct h2cc *cc = c->h2;
	struct proxy *p = c->p;
	int r;

	if (events & EPOLLERR) {
		client_close(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
		cc->io.rd = true;
	if (events & (EPOLLOUT | EPOLLHUP))
		cc->io.wr = true;
	r = h2_io_read(&cc->io);
	if (r < 0) {
		char a[ADDR_STR_LEN];

		pr_debug("client %s: HTTP/2: %s", format_addr_port(&c->peer, a, sizeof(a)),
			 r > -4096 ? strerror(-r) : nghttp2_strerror(r));
		if (r <= -4096 || r == NGHTTP2_ERR_CALLBACK_FAILURE)
			p->st.bad_requests++;
		h2_io_flush(&cc->io); /* the GOAWAY nghttp2 queued, if it can */
		client_close(c);
		h2_flush_dirty(p);
		return;
	}
	if (cc->io.eof && cc->n_streams) {
		/* HTTP/2 has no half-close: a client's FIN means it is gone
		 * (as nginx and Envoy take it). Its streams still open
		 * upstream are cancelled there now, not held until
		 * --tunnel-timeout. */
		client_close(c);
		h2_flush_dirty(p);
		return;
	}
	h2_mark(&cc->io);
	h2_flush_dirty(p);
}

void h2_conn_drain(struct conn *c)
{
	struct h2cc *cc = c->h2;

	/* First "finish what you have, open nothing new" (a GOAWAY with the
	 * largest stream id), then the real last stream id a moment later,
	 * so streams already on their way are not refused. */
	nghttp2_submit_shutdown_notice(cc->io.ng);
	h2_mark(&cc->io);
	client_set_deadline(c, LISTEN_GRACE_MS * 4);
}

void h2_conn_expired(struct conn *c)
{
	struct h2cc *cc = c->h2;
	struct proxy *p = c->p;

	if (p->draining && !cc->goaway) {
		cc->goaway = true;
		nghttp2_submit_goaway(cc->io.ng, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(cc->io.ng),
				      NGHTTP2_NO_ERROR, NULL, 0);
		h2_mark(&cc->io);
		h2_flush_dirty(p);
		return;
	}
	p->st.timeouts++;
	if (!cc->n_streams) {
		/* Idle: say goodbye properly, then close. */
		nghttp2_submit_goaway(cc->io.ng, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(cc->io.ng),
				      NGHTTP2_NO_ERROR, NULL, 0);
		h2_io_flush(&cc->io);
	}
	client_close(c);
	h2_flush_dirty(p);
}

void h2_conn_free(struct conn *c)
{
	struct h2cc *cc = c->h2;

	cc->io.dead = true;
	while (cc->streams) {
		struct h2s *s = cc->streams;

		if (s->id)
			nghttp2_session_set_stream_user_data(cc->io.ng, s->id, NULL);
		s->id = 0;
		if (s->up)
			h2up_detach(s, NGHTTP2_CANCEL);
		h2s_free_if_done(s);
	}
	nghttp2_session_del(cc->io.ng);
	cc->io.ng = NULL;
	buf_free(&cc->io.out);
	/* cc itself is freed with c (proxy_reap): it may still be on the
	 * dirty list until then. */
}
