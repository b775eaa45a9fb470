// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The request side of the proxy as agent/proxy/proxy.c drives it: the bytes a
 * client sends on one connection, parsed the way parse_request(),
 * route_request() and frame_body() do -- skip empty lines, sniff the first
 * bytes, llhttp (HTTP_REQUEST, paused in on_headers_complete) up to the end
 * of the head, the max-head-bytes limit, http_head_check() over the head,
 * rk_extract() over its headers, then the body framed by Content-Length or
 * chunked_feed(), and the next pipelined request on a fresh parser while
 * the connection may be kept alive.
 *
 * Input: one byte seeding how the stream is cut into arrivals, then the
 * stream.
 *
 * Checks, besides the sanitizers:
 *  - the stream fed whole and fed in the seeded arrivals gives the same
 *    decisions (tunnel, refusal and status, each request's head, framing,
 *    body end): TCP segmentation must not change what shunt does;
 *  - a head both parsers accepted is read the same way by both: version,
 *    method, body framing and Content-Length;
 *  - every request shunt forwards is, for a fresh llhttp with default
 *    settings standing in for the upstream, exactly one complete message:
 *    no bytes left over (a smuggled request) and none missing (the next
 *    request swallowed as body).
 */
#include <stdbool.h>
#include <string.h>
#include <llhttp.h>

#include "fuzz.h"
#include "proxy/http.h"
#include "proxy/routekey.h"

/* shuntd's smallest --max-head-bytes and a small --max-headers, so that
 * both limits are within reach of short inputs. */
#define MAX_HEAD_BYTES 1024
#define MAX_HEADERS    16

enum ev_kind {
	EV_TUNNEL,     /* not HTTP: bytes go to the original destination */
	EV_REFUSED,    /* an error response, then the connection closes */
	EV_REQUEST,    /* a head accepted and routed */
	EV_BODY_DONE,  /* the request ended at pos */
	EV_STOP,       /* no more parsing on this connection (upgrade, close) */
	EV_INCOMPLETE, /* the stream ended inside a request */
};

struct event {
	enum ev_kind kind;
	size_t pos, len;
	int status;
	const char *reason; /* static strings from llhttp or http.c */
	bool head_bytes;    /* EV_REFUSED by the max-head-bytes limit */
	int method, minor, body, keep_alive, upgrade;
	uint64_t content_length;
};

struct sim {
	const char *buf;
	size_t end; /* bytes arrived */
	bool eof, first, head_done, routed, req_done, stopped;
	size_t req_start, parsed, head_len;
	llhttp_t req;
	llhttp_settings_t settings;
	struct http_header *hdrs;
	struct head_result hr;
	uint64_t body_left;
	struct chunked ck;
	int keep_alive, want_upgrade;
	struct event *ev; /* a request takes 16 bytes at least: one per byte is plenty */
	size_t n_ev, max_ev;
};

static struct event *add_event(struct sim *s, enum ev_kind kind, size_t pos)
{
	struct event *e;

	FUZZ_CHECK(s->n_ev < s->max_ev, "too many events");
	e = &s->ev[s->n_ev++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->pos = pos;
	return e;
}

static void refuse(struct sim *s, int status, const char *reason, bool head_bytes)
{
	struct event *e = add_event(s, EV_REFUSED, s->req_start);

	e->status = status;
	e->reason = reason;
	e->head_bytes = head_bytes;
	s->stopped = true;
}

static int on_headers_complete(llhttp_t *ll)
{
	struct sim *s = ll->data;

	s->head_done = true;
	return HPE_PAUSED; /* as proxy.c on_req_headers() */
}

/* client_reset_request(): the next request starts where this one ended. */
static void reset_request(struct sim *s)
{
	s->head_done = s->routed = s->req_done = false;
	s->head_len = 0;
	s->body_left = 0;
	memset(&s->ck, 0, sizeof(s->ck));
	s->req_start = s->parsed;
	llhttp_init(&s->req, HTTP_REQUEST, &s->settings);
	s->req.data = s;
}

/* Consistency of the two readings of an accepted head. */
static void check_head(struct sim *s, const char *head, size_t len)
{
	const struct head_result *hr = &s->hr;
	const char *name = llhttp_method_name((llhttp_method_t)s->req.method);
	const char *sp = memchr(head, ' ', len);
	uint16_t flags = s->req.flags;

	FUZZ_CHECK(len >= 4 && !memcmp(head + len - 4, "\r\n\r\n", 4),
		   "accepted head does not end in CRLF CRLF");
	FUZZ_CHECK(s->req.http_major == 1 && s->req.http_minor == hr->http_minor,
		   "llhttp HTTP/%u.%u, http_head_check minor %d", s->req.http_major,
		   s->req.http_minor, hr->http_minor);
	FUZZ_CHECK(sp && (size_t)(sp - head) == strlen(name) && !memcmp(head, name, strlen(name)),
		   "llhttp method %s, request line '%.*s'", name, (int)(sp ? sp - head : 0), head);
	switch (hr->body) {
	case BODY_CHUNKED:
		FUZZ_CHECK(flags & F_CHUNKED, "shunt: chunked, llhttp flags %#x", flags);
		break;
	case BODY_LENGTH:
		FUZZ_CHECK((flags & F_CONTENT_LENGTH) && !(flags & F_CHUNKED) &&
				   s->req.content_length == hr->content_length,
			   "shunt: length %llu, llhttp flags %#x length %llu",
			   (unsigned long long)hr->content_length, flags,
			   (unsigned long long)s->req.content_length);
		break;
	case BODY_NONE:
		FUZZ_CHECK(!(flags & (F_CHUNKED | F_CONTENT_LENGTH | F_TRANSFER_ENCODING)),
			   "shunt: no body, llhttp flags %#x", flags);
		break;
	}
}

/* route_request(), minus the upstream. */
static void route_request(struct sim *s)
{
	const char *head = s->buf + s->req_start;
	struct rk_config rk;
	struct event *e;
	char key[SHUNT_ROUTE_KEY_LEN];
	int st;

	st = http_head_check(head, s->head_len, s->hdrs, MAX_HEADERS, &s->hr);
	if (st) {
		refuse(s, st, s->hr.reason, false);
		return;
	}
	check_head(s, head, s->head_len);
	rk_config_default(&rk);
	rk_extract(&rk, s->hdrs, s->hr.n_headers, key, sizeof(key));

	s->keep_alive = llhttp_should_keep_alive(&s->req);
	s->want_upgrade = s->req.upgrade || s->req.method == HTTP_CONNECT;
	s->body_left = s->hr.content_length;
	s->routed = true;
	e = add_event(s, EV_REQUEST, s->req_start);
	e->len = s->head_len;
	e->method = s->req.method;
	e->minor = s->hr.http_minor;
	e->body = s->hr.body;
	e->content_length = s->hr.content_length;
	e->keep_alive = s->keep_alive;
	e->upgrade = s->want_upgrade;
}

/* frame_body(). */
static void frame_body(struct sim *s)
{
	size_t avail = s->end - s->parsed, n;
	const char *why = NULL;
	bool done = false;
	long r;

	switch (s->hr.body) {
	case BODY_NONE:
		s->req_done = true;
		break;
	case BODY_LENGTH:
		n = avail < s->body_left ? avail : (size_t)s->body_left;
		s->parsed += n;
		s->body_left -= n;
		s->req_done = s->body_left == 0;
		break;
	case BODY_CHUNKED:
		if (!avail)
			return;
		r = chunked_feed(&s->ck, s->buf + s->parsed, avail, &done, &why);
		if (r < 0) {
			refuse(s, 400, why, false);
			return;
		}
		FUZZ_CHECK((size_t)r <= avail && (done || (size_t)r == avail),
			   "chunked_feed %ld of %zu", r, avail);
		s->parsed += (size_t)r;
		s->req_done = done;
		break;
	}
	if (s->req_done)
		add_event(s, EV_BODY_DONE, s->parsed);
}

/* parse_request(), once per arrival; returns true when it made progress
 * that may allow more (a request finished and the next may be parsed). */
static bool parse_request(struct sim *s)
{
	llhttp_errno_t e;
	const char *pos;
	int r;

	if (s->stopped)
		return false;
	if (s->routed) {
		if (!s->req_done)
			frame_body(s);
		if (!s->req_done || s->stopped)
			return false;
		/* finish_exchange(): the response went out; keep the connection
		 * only when the request allows it. */
		if (!s->keep_alive || s->want_upgrade) {
			add_event(s, EV_STOP, s->parsed);
			s->stopped = true;
			return false;
		}
		reset_request(s);
		return true;
	}

	while (s->parsed == s->req_start && s->end - s->req_start >= 2 &&
	       s->buf[s->req_start] == '\r' && s->buf[s->req_start + 1] == '\n') {
		s->req_start += 2;
		s->parsed = s->req_start;
	}
	if (s->parsed == s->end)
		return false;
	if (s->parsed == s->req_start && s->end - s->req_start == 1 &&
	    s->buf[s->req_start] == '\r' && !s->eof)
		return false; /* a CR whose LF is still on its way */
	if (s->first) {
		r = http_sniff(s->buf + s->req_start, s->end - s->req_start);
		FUZZ_CHECK(r >= -1 && r <= 1, "http_sniff %d", r);
		if (r < 0 && !s->eof)
			return false;
		if (r <= 0) {
			add_event(s, EV_TUNNEL, s->req_start);
			s->stopped = true;
			return false;
		}
		s->first = false;
	}

	e = llhttp_execute(&s->req, s->buf + s->parsed, s->end - s->parsed);
	pos = e == HPE_OK ? s->buf + s->end : llhttp_get_error_pos(&s->req);
	FUZZ_CHECK(pos >= s->buf + s->parsed && pos <= s->buf + s->end, "llhttp error_pos outside");
	s->parsed = (size_t)(pos - s->buf);
	if (e != HPE_OK && e != HPE_PAUSED) {
		refuse(s, 400, llhttp_get_error_reason(&s->req), false);
		return false;
	}
	FUZZ_CHECK(e == HPE_OK || s->head_done, "paused before the end of the head");
	if (s->parsed - s->req_start > MAX_HEAD_BYTES) {
		refuse(s, 431, "request head too large", true);
		return false;
	}
	if (!s->head_done)
		return false;
	s->head_len = s->parsed - s->req_start;
	route_request(s);
	if (s->routed)
		frame_body(s);
	return !s->stopped;
}

/* The stream in arrivals of the given sizes (NULL: all at once), then EOF. */
static void run(struct sim *s, const char *buf, size_t len, const size_t *sizes, size_t n)
{
	size_t k = 0;

	memset(s, 0, sizeof(*s));
	s->buf = buf;
	s->first = true;
	s->hdrs = malloc(MAX_HEADERS * sizeof(*s->hdrs));
	s->max_ev = len + 8;
	s->ev = malloc(s->max_ev * sizeof(*s->ev));
	if (!s->hdrs || !s->ev)
		abort();
	llhttp_settings_init(&s->settings);
	s->settings.on_headers_complete = on_headers_complete;
	reset_request(s);

	while (!s->stopped) {
		if (s->end < len) {
			size_t piece = sizes ? sizes[k++ % n] : len;

			s->end += piece < len - s->end ? piece : len - s->end;
		}
		s->eof = s->end == len;
		/* The proxy parses again as long as something moves. */
		while (parse_request(s))
			;
		if (s->eof)
			break;
	}
	/* At EOF the proxy's parse_request() runs once more (the sniff case
	 * above); whatever is still open is cut short. */
	if (!s->stopped && (s->routed || s->end > s->req_start))
		add_event(s, EV_INCOMPLETE, s->req_start);
	free(s->hdrs);
}

static void sim_free(struct sim *s)
{
	free(s->ev);
	s->ev = NULL;
}

static bool event_eq(const struct event *a, const struct event *b)
{
	if (a->kind != b->kind || a->pos != b->pos)
		return false;
	if (a->kind == EV_REFUSED) {
		/* A head that outgrows the limit before llhttp sees its bad
		 * byte is refused with 431 or 400 depending on the arrivals;
		 * either way it is refused at the same place. */
		if (a->head_bytes || b->head_bytes)
			return true;
		return a->status == b->status &&
		       (a->reason == b->reason ||
			(a->reason && b->reason && !strcmp(a->reason, b->reason)));
	}
	if (a->kind == EV_REQUEST)
		return a->len == b->len && a->method == b->method && a->minor == b->minor &&
		       a->body == b->body && a->content_length == b->content_length &&
		       a->keep_alive == b->keep_alive && a->upgrade == b->upgrade;
	return true;
}

static const char *ev_name(enum ev_kind k)
{
	static const char *names[] = {"tunnel",	   "refused", "request",
				      "body-done", "stop",    "incomplete"};

	return names[k];
}

static void dump(const char *what, const struct sim *s)
{
	fprintf(stderr, "%s:\n", what);
	for (size_t i = 0; i < s->n_ev; i++)
		fprintf(stderr, "  %s at %zu len %zu status %d reason %s\n", ev_name(s->ev[i].kind),
			s->ev[i].pos, s->ev[i].len, s->ev[i].status,
			s->ev[i].reason ? s->ev[i].reason : "-");
}

/* ---- the upstream's reading of what shunt forwards ---- */

static int on_upstream_complete(llhttp_t *ll)
{
	return HPE_PAUSED;
}

static void check_upstream(const char *buf, size_t start, size_t end)
{
	llhttp_settings_t st;
	llhttp_t up;
	llhttp_errno_t e;
	const char *pos;

	llhttp_settings_init(&st);
	st.on_message_complete = on_upstream_complete;
	llhttp_init(&up, HTTP_REQUEST, &st);
	e = llhttp_execute(&up, buf + start, end - start);
	if (e == HPE_PAUSED) {
		pos = llhttp_get_error_pos(&up);
		FUZZ_CHECK(pos == buf + end,
			   "upstream llhttp ends the request at %zu, shunt at %zu: %zu bytes "
			   "smuggled as a next request",
			   (size_t)(pos - buf), end, (size_t)(buf + end - pos));
	} else {
		FUZZ_CHECK(e != HPE_OK,
			   "upstream llhttp still inside the request at %zu where shunt ended it: "
			   "the next request would be read as its body",
			   end);
		/* Any other error: the upstream refuses what shunt passed,
		 * which is safe. */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sim whole, split;
	size_t sizes[32], n, len;
	uint32_t seed;
	const char *buf;

	if (size < 1)
		return 0;
	seed = 0x2545f491u ^ (uint32_t)data[0] * 0x01000193u;
	n = 1 + data[0] % ARRAY_SIZE(sizes);
	for (size_t i = 0; i < n; i++) {
		uint32_t x = fuzz_rand(&seed);

		sizes[i] = x % 4 == 0 ? 1 + x % 512 : 1 + x % 9;
	}
	buf = (const char *)data + 1;
	len = size - 1;

	run(&whole, buf, len, NULL, 0);
	run(&split, buf, len, sizes, n);

	if (whole.n_ev != split.n_ev) {
		dump("whole", &whole);
		dump("in pieces", &split);
	}
	FUZZ_CHECK(whole.n_ev == split.n_ev, "%zu events fed whole, %zu fed in pieces", whole.n_ev,
		   split.n_ev);
	for (size_t i = 0; i < whole.n_ev; i++) {
		if (!event_eq(&whole.ev[i], &split.ev[i])) {
			dump("whole", &whole);
			dump("in pieces", &split);
		}
		FUZZ_CHECK(event_eq(&whole.ev[i], &split.ev[i]), "event %zu differs", i);
	}

	/* Every request shunt forwards in full, as the upstream reads it. */
	for (size_t i = 0; i + 1 < whole.n_ev; i++) {
		const struct event *rq = &whole.ev[i], *done = &whole.ev[i + 1];

		if (rq->kind == EV_REQUEST && done->kind == EV_BODY_DONE && !rq->upgrade)
			check_upstream(buf, rq->pos, done->pos);
	}
	sim_free(&whole);
	sim_free(&split);
	return 0;
}
