// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The HTTP/2 glue (proxy/h2.c, h2up.c) under arbitrary client frame
 * sequences. The proxy runs for real (event loop, sessions, pool, routing,
 * flow control) between an HTTP/2 client driven by the input and fake
 * upstreams, all over socketpairs: no network.
 *
 * The input is a program: open a stream (method, routing key, any extra
 * header fields, a body of some size, the size of the answer), reset one,
 * change the client's SETTINGS (a tiny window makes it a slow reader),
 * stop reading for a while, send raw bytes, let everything run.
 *
 * Properties:
 *  - every request that reaches an upstream reached the one its key says
 *    (dev-a: the sandbox; dev-b's sandbox cannot be reached, so never
 *    anywhere; anything else: the baseline);
 *  - every answer from an upstream reaches the client on the stream that
 *    asked for it, and says so (x-id);
 *  - the proxy dials nothing but those three destinations;
 *  - at the end, with the client gone, nothing is left: no connection, no
 *    session, no stream, no pool entry (LeakSanitizer checks the rest).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <nghttp2/nghttp2.h>

#include "fuzz.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "proxy/h2.h"
#include "proxy/proxy_int.h"
#include "proxy/routekey.h"
#include "state/routes.h"
#include "state/routes.h"

#define SVC_IP	 0x0a000001u /* 10.0.0.1: the service (original destination) */
#define SBX_IP	 0x0a000002u /* dev-a's sandbox */
#define DOWN_IP	 0x0a000003u /* dev-b's sandbox: cannot be reached */
#define MAX_FAKE 16

static struct loop loop;
static struct view_snap snap;
static struct proxy_shared shared;
static struct proxy *P;
static struct rk_config rk;
static bool debug; /* FUZZ_H2_DEBUG=1: shunt's debug log and what the ends see */

static struct shunt_addr v4(uint32_t ip, uint16_t port)
{
	struct shunt_addr a = {.family = SHUNT_FAMILY_V4, .port = port};

	a.addr[0] = (uint8_t)(ip >> 24);
	a.addr[1] = (uint8_t)(ip >> 16);
	a.addr[2] = (uint8_t)(ip >> 8);
	a.addr[3] = (uint8_t)ip;
	return a;
}

/* Where a request with these fields must go: 1 baseline, 2 sandbox, 0
 * nowhere (its sandbox is down: refused). */
static int expected_for(const struct http_header *h, size_t n)
{
	char key[SHUNT_ROUTE_KEY_LEN];
	int r = rk_extract(&rk, h, n, key, sizeof(key));

	if (r > 0 && !strcmp(key, "dev-a"))
		return 2;
	if (r > 0 && !strcmp(key, "dev-b"))
		return 0;
	return 1;
}

/* ---- both ends the harness plays: a socket and an nghttp2 session ---- */

struct side {
	int fd;
	nghttp2_session *ng;
	struct buf out;
	bool dead, paused;
};

static void side_io(struct side *s)
{
	uint8_t b[16384];

	while (!s->dead) {
		ssize_t n;

		if (!buf_len(&s->out)) {
			const uint8_t *d;

			n = nghttp2_session_mem_send(s->ng, &d);
			if (n < 0)
				s->dead = true;
			if (n <= 0)
				break;
			buf_append(&s->out, d, (size_t)n);
		}
		n = send(s->fd, buf_head(&s->out), buf_len(&s->out), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno != EAGAIN)
				s->dead = true;
			break;
		}
		buf_consume(&s->out, (size_t)n);
		if (buf_len(&s->out))
			break;
		buf_reset(&s->out);
	}
	while (!s->dead && !s->paused) {
		ssize_t n = read(s->fd, b, sizeof(b));

		if (n == 0 || (n < 0 && errno != EAGAIN))
			s->dead = true;
		if (n <= 0)
			break;
		if (nghttp2_session_mem_recv(s->ng, b, (size_t)n) < 0)
			s->dead = true;
	}
}

/* ---- fake upstreams: HTTP/2 servers that say who they are ---- */

struct fake_stream {
	struct h2hb hb;
	uint32_t body;
	struct fake_stream *next;
};

struct fake {
	struct side s;
	int who; /* 1 baseline, 2 sandbox */
	struct fake_stream *streams;
};

static struct fake fakes[MAX_FAKE];
static int n_fakes;

/* A body of *left bytes, for both ends: src->ptr is the count left. */
static ssize_t body_read(nghttp2_session *ng, int32_t id, uint8_t *b, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	uint32_t *left = src->ptr;
	size_t n = *left < len ? *left : len;

	(void)ng, (void)id, (void)user;
	memset(b, 'b', n);
	*left -= (uint32_t)n;
	if (!*left)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static void fake_answer(struct fake *f, nghttp2_session *ng, int32_t id, struct fake_stream *fs)
{
	struct http_header h[128];
	size_t n = h2_hb_headers(&fs->hb, h, ARRAY_SIZE(h));
	uint32_t il = 0, sl = 0;
	const char *idv = h2_hb_get(&fs->hb, "x-id", &il), *sz = h2_hb_get(&fs->hb, "x-size", &sl);
	char who[2] = {(char)('0' + f->who), 0};
	nghttp2_nv nv[3] = {
		{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
		{(uint8_t *)"x-who", (uint8_t *)who, 5, 1, 0},
		{(uint8_t *)"x-id", (uint8_t *)(idv ? idv : ""), 4, idv ? il : 0, 0},
	};
	nghttp2_data_provider prov = {.source.ptr = &fs->body, .read_callback = body_read};
	int want;

	want = expected_for(h, n);
	FUZZ_CHECK(want == f->who, "a request for upstream %d reached upstream %d", want, f->who);
	fs->body = 0;
	for (uint32_t i = 0; sz && i < sl && i < 6; i++)
		if (sz[i] >= '0' && sz[i] <= '9')
			fs->body = fs->body * 10 + (uint32_t)(sz[i] - '0');
	nghttp2_submit_response(ng, id, nv, 3, fs->body ? &prov : NULL);
}

static int fake_begin(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
	struct fake *f = user;
	struct fake_stream *fs;

	if (fr->hd.type != NGHTTP2_HEADERS || fr->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	fs->next = f->streams;
	f->streams = fs;
	nghttp2_session_set_stream_user_data(ng, fr->hd.stream_id, fs);
	return 0;
}

static int fake_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
		       const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
	struct fake_stream *fs = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);

	(void)flags, (void)user;
	if (fs && fr->headers.cat == NGHTTP2_HCAT_REQUEST)
		h2_hb_add(&fs->hb, name, nl, value, vl);
	return 0;
}

static int fake_frame(nghttp2_session *ng, const nghttp2_frame *fr, void *user)
{
	struct fake_stream *fs = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);

	if (fs && (fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) &&
	    (fr->hd.flags & NGHTTP2_FLAG_END_STREAM))
		fake_answer(user, ng, fr->hd.stream_id, fs);
	return 0;
}

static nghttp2_session_callbacks *fake_cbs;

static int dial(struct proxy *p, const struct shunt_addr *dst)
{
	struct shunt_addr base = v4(SVC_IP, 80), sbx = v4(SBX_IP, 80), down = v4(DOWN_IP, 80);
	int sv[2], who = addr_equal(dst, &base) ? 1 : addr_equal(dst, &sbx) ? 2 : 0;
	struct fake *f;

	(void)p;
	if (debug)
		fprintf(stderr, "dial who=%d\n", who);
	FUZZ_CHECK(who || addr_equal(dst, &down), "the proxy dialled an unknown destination");
	if (!who)
		return -ECONNREFUSED;
	if (n_fakes == MAX_FAKE ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		return -EMFILE;
	f = &fakes[n_fakes];
	memset(f, 0, sizeof(*f));
	if (nghttp2_session_server_new(&f->s.ng, fake_cbs, f)) {
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	nghttp2_submit_settings(f->s.ng, NGHTTP2_FLAG_NONE, NULL, 0);
	f->s.fd = sv[1];
	f->who = who;
	n_fakes++;
	return sv[0];
}

/* ---- the client the input drives ---- */

struct cstream {
	int want; /* expected_for() its fields */
	unsigned id;
	uint32_t body;
	bool answered;
	struct cstream *next;
};

static struct side cl;
static struct cstream *cstreams;
/* What the inputs did, printed at exit with FUZZ_H2_STATS=1: a harness
 * whose streams never reach an upstream proves nothing. */
static unsigned long n_answered[3], n_streams;

static void print_stats(void)
{
	fprintf(stderr,
		"fuzz_h2: %lu streams opened; answered by the baseline %lu, the sandbox %lu\n",
		n_streams, n_answered[1], n_answered[2]);
}

static int cl_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
	struct cstream *cs = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
	char idv[16];

	(void)flags, (void)user;
	if (debug)
		fprintf(stderr, "client: stream %d %.*s: %.*s\n", fr->hd.stream_id, (int)nl, name,
			(int)vl, value);
	if (!cs || fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (nl == 5 && !memcmp(name, "x-who", 5)) {
		FUZZ_CHECK(vl == 1 && value[0] - '0' == cs->want,
			   "stream %d (for upstream %d) answered by upstream %.*s",
			   fr->hd.stream_id, cs->want, (int)vl, value);
		cs->answered = true;
		n_answered[cs->want]++;
	}
	if (nl == 4 && !memcmp(name, "x-id", 4)) {
		snprintf(idv, sizeof(idv), "%u", cs->id);
		FUZZ_CHECK(vl == strlen(idv) && !memcmp(value, idv, vl),
			   "stream %d got the answer meant for x-id %.*s", fr->hd.stream_id,
			   (int)vl, value);
	}
	return 0;
}

static nghttp2_session_callbacks *cl_cbs;

/* ---- running it ---- */

static void pump(int rounds)
{
	for (int i = 0; i < rounds; i++) {
		side_io(&cl);
		for (int f = 0; f < n_fakes; f++)
			side_io(&fakes[f].s);
		loop_run_once(&loop, 0);
		h2_flush_dirty(P);
		proxy_reap(P);
	}
}

struct reader {
	const uint8_t *d;
	size_t n;
};

static uint32_t take(struct reader *r, uint32_t mod)
{
	uint32_t v;

	if (!r->n || !mod)
		return 0;
	v = *r->d;
	r->d++;
	r->n--;
	return v % mod;
}

/* A field from the input: a name of up to 15 bytes, a value of up to 47. */
static void take_field(struct reader *r, uint8_t *buf, nghttp2_nv *nv)
{
	static const char *const names[] = {
		"baggage",	  "tracestate", "ot-baggage-sd-routing-key",
		"content-length", "te",		"x-any"};
	uint32_t nl = take(r, 16), vl = take(r, 48);

	if (take(r, 3)) {
		const char *name = names[take(r, ARRAY_SIZE(names))];

		nv->name = (uint8_t *)name;
		nv->namelen = strlen(name);
	} else {
		for (uint32_t i = 0; i < nl; i++)
			buf[i] = (uint8_t)take(r, 256);
		nv->name = buf;
		nv->namelen = nl ? nl : 1;
		if (!nl)
			buf[0] = 'z';
	}
	for (uint32_t i = 0; i < vl; i++)
		buf[16 + i] = (uint8_t)take(r, 256);
	nv->value = buf + 16;
	nv->valuelen = vl;
	nv->flags = 0;
}

static void open_stream(struct reader *r, unsigned id)
{
	static const char *const keys[] = {NULL,
					   "sd-routing-key=dev-a",
					   "sd-routing-key=dev-b",
					   "other=1, sd-routing-key=dev-a;p=1",
					   "sd-routing-key=dev-c",
					   "sd-routing-key=%zz"};
	static const uint32_t sizes[] = {0, 1, 100, 70000, 300000};
	uint8_t fb[8][64];
	char ids[16], rsz[16];
	nghttp2_nv nv[16];
	struct http_header h[16];
	struct cstream *cs = calloc(1, sizeof(*cs));
	nghttp2_data_provider prov = {.read_callback = body_read};
	size_t n = 0;
	const char *key = keys[take(r, ARRAY_SIZE(keys))];
	uint32_t extra = take(r, 9);
	const char *method;

	if (!cs)
		return;
#define ADD(k, v) nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
	method = take(r, 2) ? "POST" : "GET"; /* ADD evaluates its arguments twice */
	ADD(":method", method);
	ADD(":scheme", "http");
	ADD(":authority", "svc");
	ADD(":path", "/");
	snprintf(ids, sizeof(ids), "%u", id);
	ADD("x-id", ids);
	snprintf(rsz, sizeof(rsz), "%u", sizes[take(r, ARRAY_SIZE(sizes))]);
	ADD("x-size", rsz);
	if (key)
		ADD("baggage", key);
#undef ADD
	for (uint32_t i = 0; i < extra && i < 8; i++)
		take_field(r, fb[i], &nv[n++]);
	for (size_t i = 0; i < n; i++) {
		h[i].name = (const char *)nv[i].name;
		h[i].name_len = nv[i].namelen;
		h[i].value = (const char *)nv[i].value;
		h[i].value_len = nv[i].valuelen;
	}
	cs->want = expected_for(h, n);
	cs->id = id;
	cs->body = sizes[take(r, ARRAY_SIZE(sizes))];
	prov.source.ptr = &cs->body;
	if (nghttp2_submit_request(cl.ng, NULL, nv, n, cs->body ? &prov : NULL, cs) < 0) {
		free(cs);
		return;
	}
	cs->next = cstreams;
	cstreams = cs;
	n_streams++;
}

static void setup(void)
{
	struct shunt_route_key k;
	struct shunt_route v = {.to = v4(SBX_IP, 80)};
	struct shunt_addr svc = v4(SVC_IP, 80);
	struct route_table *t;

	debug = getenv("FUZZ_H2_DEBUG");
	log_threshold = debug ? LOG_DEBUG : LOG_ERR;
	if (getenv("FUZZ_H2_STATS"))
		atexit(print_stats);
	loop_init(&loop);
	rk_config_default(&rk);
	t = route_table_new();
	route_key_make(&k, &svc, "dev-a", 5);
	route_table_put(t, &k, &v, NULL);
	v.to = v4(DOWN_IP, 80);
	route_key_make(&k, &svc, "dev-b", 5);
	route_table_put(t, &k, &v, NULL);
	snap.t = t;
	snap.guard.nl_fd = -1;
	P = calloc(1, sizeof(*P));
	P->loop = &loop;
	P->snap = &snap;
	P->sh = &shared;
	proxy_shared_init(&shared, &P->o, NULL, NULL);
	P->o.max_head_bytes = 65536;
	P->o.max_headers = 100;
	P->o.idle_timeout_ms = P->o.tunnel_timeout_ms = P->o.head_timeout_ms = 60000;
	P->o.connect_timeout_ms = 5000;
	P->o.http2 = true;
	P->o.rk = rk;
	P->hdrs = calloc(P->o.max_headers, sizeof(*P->hdrs));
	P->dial = dial;
	reqstats_init(&P->rs, 16);
	nghttp2_session_callbacks_new(&fake_cbs);
	nghttp2_session_callbacks_set_on_begin_headers_callback(fake_cbs, fake_begin);
	nghttp2_session_callbacks_set_on_header_callback(fake_cbs, fake_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(fake_cbs, fake_frame);
	nghttp2_session_callbacks_new(&cl_cbs);
	nghttp2_session_callbacks_set_on_header_callback(cl_cbs, cl_header);
}

static void teardown(void)
{
	/* The client goes: everything it caused must go with it. */
	close(cl.fd);
	cl.dead = true;
	for (int i = 0; i < 50 && P->clients; i++)
		pump(1);
	while (P->clients)
		client_close(P->clients);
	h2up_close_all(P, NULL);
	h2_flush_dirty(P);
	proxy_reap(P);
	pool_sweep(&P->pool, loop.now_ms, 0, true, up_close_idle);
	FUZZ_CHECK(!P->st.active && !P->h2_all && !P->h2_dirty && !P->st.h2_sessions,
		   "left behind: %llu connections, sessions %p", (unsigned long long)P->st.active,
		   (void *)P->h2_all);
	FUZZ_CHECK(P->pool.by_dst.n == 0, "%zu pool entries left", P->pool.by_dst.n);
	nghttp2_session_del(cl.ng);
	buf_free(&cl.out);
	while (cstreams) {
		struct cstream *cs = cstreams;

		cstreams = cs->next;
		free(cs);
	}
	for (int f = 0; f < n_fakes; f++) {
		close(fakes[f].s.fd);
		nghttp2_session_del(fakes[f].s.ng);
		buf_free(&fakes[f].s.out);
		while (fakes[f].streams) {
			struct fake_stream *fs = fakes[f].streams;

			fakes[f].streams = fs->next;
			h2_hb_free(&fs->hb);
			free(fs);
		}
	}
	n_fakes = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct reader r = {data, size};
	struct shunt_addr peer = v4(0x0a000009, 40000);
	unsigned id = 0;
	struct conn *c;
	int sv[2];

	if (!ready) {
		setup();
		ready = true;
	}
	memset(&cl, 0, sizeof(cl));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		return 0;
	cl.fd = sv[1];
	nghttp2_session_client_new(&cl.ng, cl_cbs, NULL);
	nghttp2_submit_settings(cl.ng, NGHTTP2_FLAG_NONE, NULL, 0);
	c = conn_new(P, sv[0]);
	if (!c)
		return 0;
	c->peer = peer;
	c->orig = v4(SVC_IP, 80);
	if (!conn_begin(c))
		return 0;
	/* nghttp2's client session opens with the preface: every connection
	 * is HTTP/2 (HTTP/1 is fuzzed elsewhere). */
	while (r.n && !cl.dead) {
		switch (take(&r, 8)) {
		case 0:
		case 1:
		case 2:
			open_stream(&r, ++id);
			break;
		case 3: /* reset one of ours */
			nghttp2_submit_rst_stream(cl.ng, NGHTTP2_FLAG_NONE,
						  (int32_t)(2 * take(&r, 16) + 1), take(&r, 14));
			break;
		case 4: { /* a window of a few bytes: the slowest reader */
			nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
						     take(&r, 4) * 7};

			nghttp2_submit_settings(cl.ng, NGHTTP2_FLAG_NONE, &iv, 1);
			break;
		}
		case 5: /* stop reading for a while */
			cl.paused = !cl.paused;
			break;
		case 6: { /* raw bytes into the connection */
			uint8_t raw[64];
			uint32_t len = take(&r, 64);

			side_io(&cl);
			for (uint32_t i = 0; i < len; i++)
				raw[i] = (uint8_t)take(&r, 256);
			if (len && send(cl.fd, raw, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				cl.dead = true;
			break;
		}
		default:
			pump(1 + (int)take(&r, 8));
			break;
		}
	}
	cl.paused = false;
	pump(30);
	teardown();
	return 0;
}
