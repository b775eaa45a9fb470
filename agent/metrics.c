// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The metrics endpoint: exposition, request parsing, and its server. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "agent.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "version.h"

/* Map entries counted per scrape and map: a full 64k-entry LRU map is
 * counted over several scrapes (about a millisecond each) and shows the
 * last complete count, instead of stalling the proxy for tens of ms. */
#define METRICS_MAP_BUDGET 8192U

/* ------------------------------------------------------------- buffer */

void mbuf_put(struct mbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->cap - b->len <= n) {
		size_t cap = b->cap ? b->cap : 4096;
		char *d;

		while (cap - b->len <= n)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d) {
			b->failed = true;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
	char small[256], *big;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		mbuf_put(b, small, (size_t)n);
		return;
	}
	big = malloc((size_t)n + 1);
	if (!big) {
		b->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	mbuf_put(b, big, (size_t)n);
	free(big);
}

void mbuf_free(struct mbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* --------------------------------------------------------- exposition */

void metrics_label_value(struct mbuf *out, const char *v)
{
	const char *run = v;

	for (; *v; v++) {
		const char *esc = *v == '\\'   ? "\\\\"
				  : *v == '"'  ? "\\\""
				  : *v == '\n' ? "\\n"
					       : NULL;

		if (!esc)
			continue;
		mbuf_put(out, run, (size_t)(v - run));
		mbuf_put(out, esc, 2);
		run = v + 1;
	}
	mbuf_put(out, run, (size_t)(v - run));
}

static void family(struct mbuf *o, const char *name, const char *type, const char *help)
{
	mbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct mbuf *o, const char *name, uint64_t v)
{
	mbuf_printf(o, "%s %llu\n", name, (unsigned long long)v);
}

static void one(struct mbuf *o, const char *name, const char *type, const char *help, uint64_t v)
{
	family(o, name, type, help);
	sample(o, name, v);
}

/* name{label="value"} v, the value escaped. */
static void labelled(struct mbuf *o, const char *name, const char *label, const char *value,
		     uint64_t v)
{
	mbuf_printf(o, "%s{%s=\"", name, label);
	metrics_label_value(o, value);
	mbuf_printf(o, "\"} %llu\n", (unsigned long long)v);
}

static const char *const kernel_help[SHUNT_STAT_MAX] = {
	[SHUNT_STAT_CONNECT] = "connect() calls seen by the cgroup hooks.",
	[SHUNT_STAT_CAPTURED] = "Connections to steered services redirected to the proxy.",
	[SHUNT_STAT_FAIL_OPEN] = "Connections to steered services let through: no live proxy "
				 "listener.",
	[SHUNT_STAT_OWN_SOCKET] =
		"connect() calls of the agent's own (marked) sockets, left alone.",
	[SHUNT_STAT_ORIG_FULL] = "Captures whose original destination could not be recorded.",
	[SHUNT_STAT_ESTABLISHED] = "Captured connections established.",
	[SHUNT_STAT_PEER_RESTORED] = "getpeername() calls answered with the original destination.",
	[SHUNT_STAT_CONN_LIMIT] =
		"Connections to steered services let through uncaptured: the proxy "
		"held --max-conns.",
	[SHUNT_STAT_POD_LIMIT] =
		"Connections to steered services let through uncaptured: their pod "
		"held --max-conns-per-pod.",
};

static void render_proxy(struct mbuf *o, const struct proxy_stats *ps)
{
	const struct {
		const char *name, *type, *help;
		uint64_t v;
	} m[] = {
		{"shunt_connections_accepted_total", "counter",
		 "Captured connections accepted by the proxy.", ps->accepted},
		{"shunt_connections_open", "gauge", "Captured connections open in the proxy now.",
		 ps->active},
		{"shunt_connections_uncaptured_total", "counter",
		 "Connections accepted without a capture record, closed at once.", ps->unknown},
		{"shunt_connections_refused_total", "counter",
		 "Connections refused because the agent was out of file descriptors.", ps->refused},
		{"shunt_connections_limited_total", "counter",
		 "Times the proxy reached --max-conns and the kernel stopped capturing new "
		 "connections.",
		 ps->conn_limit},
		{"shunt_pod_limit_reached_total", "counter",
		 "Times a pod reached --max-conns-per-pod and the kernel stopped capturing its new "
		 "connections.",
		 ps->pod_limit},
		{"shunt_pods_limited", "gauge",
		 "Pods at --max-conns-per-pod now, whose new connections are not captured.",
		 ps->pods_limited},
		{"shunt_connections_over_limit_total", "counter",
		 "Connections accepted at --max-conns or their pod's cap (captured just before the "
		 "kernel stopped capturing), served all the same.",
		 ps->over_limit},
		{"shunt_connections_pod_unknown_total", "counter",
		 "Connections accepted without a record of their pod (captured by an earlier "
		 "agent's programs): not counted per pod.",
		 ps->pod_unknown},
		{"shunt_upstream_limited_total", "counter",
		 "Keyed requests answered 503 because --max-upstream-conns connections to their "
		 "sandbox were open.",
		 ps->upstream_limit},
		{"shunt_upstream_pod_limited_total", "counter",
		 "Keyed requests answered 503 because their pod's requests held "
		 "--max-upstream-conns-per-pod connections to the sandbox.",
		 ps->pod_upstream_limit},
		{"shunt_tunnels_total", "counter",
		 "Connections tunnelled unchanged: not HTTP/1.x, or after an upgrade or CONNECT.",
		 ps->tunnels},
		{"shunt_upstream_connects_total", "counter",
		 "New connections to upstreams (sandboxes and baselines).", ps->upstream_connects},
		{"shunt_upstream_reuses_total", "counter",
		 "Requests sent on a pooled upstream connection.", ps->upstream_reused},
		{"shunt_upstream_retries_total", "counter",
		 "Idempotent requests sent again because a pooled connection had been closed.",
		 ps->retries},
		{"shunt_fallbacks_total", "counter",
		 "Requests sent to the baseline because their sandbox was unreachable and the "
		 "route says fallback baseline.",
		 ps->fallbacks},
		{"shunt_proxy_timeouts_total", "counter",
		 "Connections or requests ended by a head, idle or tunnel timeout.", ps->timeouts},
	};

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		one(o, m[i].name, m[i].type, m[i].help, m[i].v);
}

static void render_service(struct mbuf *o, const struct rs_service *s, const char *name)
{
	char a[ADDR_STR_LEN];

	if (!name)
		name = format_addr_port(&s->svc, a, sizeof(a));
	for (int d = 0; d < RS_DEST_MAX; d++) {
		for (int k = 0; k < RS_OUTCOME_MAX; k++) {
			if (!s->n[d][k])
				continue;
			mbuf_put(o, "shunt_requests_total{service=\"", 30);
			metrics_label_value(o, name);
			mbuf_printf(o, "\",destination=\"%s\",outcome=\"%s\"} %llu\n",
				    rs_dest_names[d], rs_outcome_names[k],
				    (unsigned long long)s->n[d][k]);
		}
	}
}

static void render_requests(struct mbuf *o, const struct reqstats *rs)
{
	family(o, "shunt_requests_total", "counter",
	       "HTTP requests by service (original destination; \"other\" past the table's "
	       "size), destination (baseline, sandbox, or error: answered by shunt itself) and "
	       "outcome (1xx..5xx: final status class; upstream_error, timeout, client_abort).");
	for (size_t i = 0; i < rs->cap; i++)
		if (rs->slots[i].svc.family)
			render_service(o, &rs->slots[i], NULL);
	render_service(o, &rs->other, "other");

	family(o, "shunt_request_duration_seconds", "histogram",
	       "Request latency by destination: from the request's first byte in the proxy to "
	       "the last response byte written to the client.");
	for (int d = 0; d < RS_DEST_MAX; d++) {
		const struct rs_hist *h = &rs->hist[d];
		uint64_t cum = 0;

		for (int i = 0; i < RS_NBUCKETS; i++) {
			cum += h->bucket[i];
			mbuf_printf(o,
				    "shunt_request_duration_seconds_bucket{destination=\"%s\","
				    "le=\"%s\"} %llu\n",
				    rs_dest_names[d], rs_bucket_le[i], (unsigned long long)cum);
		}
		mbuf_printf(o,
			    "shunt_request_duration_seconds_bucket{destination=\"%s\",le=\"+Inf\"} "
			    "%llu\n"
			    "shunt_request_duration_seconds_sum{destination=\"%s\"} %llu.%09llu\n"
			    "shunt_request_duration_seconds_count{destination=\"%s\"} %llu\n",
			    rs_dest_names[d], (unsigned long long)h->count, rs_dest_names[d],
			    (unsigned long long)(h->sum_ns / 1000000000),
			    (unsigned long long)(h->sum_ns % 1000000000), rs_dest_names[d],
			    (unsigned long long)h->count);
	}

	family(o, "shunt_parse_errors_total", "counter",
	       "Requests refused with 400 or 431 by reason; bad_routing_key counts requests "
	       "whose key was unusable (not refused: sent to the baseline).");
	for (int i = HTTP_ERR_NONE + 1; i < HTTP_ERR_MAX; i++)
		labelled(o, "shunt_parse_errors_total", "reason", http_err_names[i],
			 rs->parse_errors[i]);
}

int metrics_render(const struct metrics_snapshot *s, struct mbuf *o)
{
	char name[96];

	family(o, "shunt_build_info", "gauge", "Always 1; the agent's version in a label.");
	labelled(o, "shunt_build_info", "version", s->version ? s->version : "unknown", 1);
	family(o, "shunt_start_time_seconds", "gauge",
	       "When the agent started, in seconds since the Unix epoch.");
	sample(o, "shunt_start_time_seconds", s->start_time_unix);

	if (s->req)
		render_requests(o, s->req);
	if (s->proxy)
		render_proxy(o, s->proxy);

	one(o, "shunt_routes", "gauge", "Routes in force (service, routing key -> sandbox).",
	    s->routes);
	one(o, "shunt_overrides", "gauge",
	    "L4 overrides in force (source pod, destination -> another address).", s->overrides);

	family(o, "shunt_bpf_map_entries", "gauge",
	       "Entries in each pinned BPF map (arrays count as full; a large hash map is "
	       "counted over several scrapes).");
	for (size_t i = 0; i < s->n_maps; i++)
		if (s->maps[i].entries >= 0)
			labelled(o, "shunt_bpf_map_entries", "map", s->maps[i].name,
				 (uint64_t)s->maps[i].entries);
	family(o, "shunt_bpf_map_max_entries", "gauge", "Capacity of each pinned BPF map.");
	for (size_t i = 0; i < s->n_maps; i++)
		labelled(o, "shunt_bpf_map_max_entries", "map", s->maps[i].name,
			 s->maps[i].max_entries);

	if (s->kernel) {
		for (int i = 0; i < SHUNT_STAT_MAX; i++) {
			snprintf(name, sizeof(name), "shunt_kernel_%s_total", shunt_stat_names[i]);
			one(o, name, "counter",
			    kernel_help[i] ? kernel_help[i] : "A counter of the kernel programs.",
			    s->kernel[i]);
		}
	}
	return o->failed ? -ENOMEM : 0;
}

/* -------------------------------------------------------------- server */

struct metrics_conn;

struct metrics {
	struct ev_handler h;
	struct agent *a;
	int fd;
	unsigned int nconns;
	struct metrics_conn *conns;
	uint64_t last_busy_warn;
	struct shunt_map_walk walks[METRICS_MAX_MAPS];
	long entries[METRICS_MAX_MAPS]; /* last complete count, -1 none yet */
};

struct metrics_conn {
	struct ev_handler h;
	struct metrics *m;
	struct metrics_conn *prev, *next;
	uint64_t started_ms;
	int fd;
	bool answered;
	size_t inlen;
	struct mbuf out;
	size_t outpos;
	char in[METRICS_MAX_REQUEST];
};

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

/* Why the agent is not ready, or NULL when it is. */
static const char *not_ready(struct agent *a)
{
	struct shunt_prog_info progs[SHUNT_NR_PROGS];

	if (a->draining)
		return "draining (stopping, or handed over to a new agent)";
	if (shunt_bpf_progs(&a->bpf, progs) != SHUNT_NR_PROGS)
		return "not every program is attached";
	if (!a->proxy || proxy_listening(a->proxy) != a->popts.n_listen)
		return "the proxy is not listening";
	for (int i = 0; i < a->popts.n_listen; i++) {
		enum shunt_listener_slot slot = a->popts.listen[i].family == SHUNT_FAMILY_V4
							? SHUNT_LISTENER_V4
							: SHUNT_LISTENER_V6;

		/* An error (a kernel that cannot look a sockmap up) is no
		 * evidence either way: the socket is open. */
		if (shunt_bpf_listener_present(&a->bpf, slot) == 0)
			return "a proxy listener is missing from shunt_listeners";
	}
	return NULL;
}

static void collect(struct metrics *m, struct metrics_snapshot *s, uint64_t *ks)
{
	struct agent *a = m->a;
	struct shunt_map_info maps[METRICS_MAX_MAPS];
	int nm = shunt_bpf_maps(&a->bpf, maps);

	memset(s, 0, sizeof(*s));
	s->version = SHUNT_VERSION;
	s->start_time_unix = a->started_unix;
	s->proxy = a->proxy ? proxy_stats(a->proxy) : NULL;
	s->req = a->proxy ? proxy_reqstats(a->proxy) : NULL;
	s->routes = route_table_count(a->store.t);
	s->overrides = a->store.novr;
	for (int i = 0; i < nm && i < METRICS_MAX_MAPS; i++) {
		long cnt;
		int r = shunt_bpf_map_walk(&maps[i], &m->walks[i], METRICS_MAP_BUDGET, &cnt);

		if (r == 1)
			m->entries[i] = cnt;
		else if (r < 0) {
			pr_debug("metrics: count %s: %s", maps[i].name, strerror(-r));
			m->entries[i] = -1;
		}
		s->maps[i] = (struct metrics_map){maps[i].name, m->entries[i], maps[i].max_entries};
		s->n_maps++;
	}
	s->kernel = shunt_bpf_stats(&a->bpf, ks) ? NULL : ks;
}

static void respond(struct metrics_conn *mc, int status, const struct metrics_request *r,
		    const char *ctype, const char *body, size_t blen)
{
	mbuf_printf(&mc->out,
		    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		    "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
		    status, reason_phrase(status), ctype, blen,
		    status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!r || !r->head)
		mbuf_put(&mc->out, body, blen);
}

static void answer(struct metrics_conn *mc, int status, const struct metrics_request *r)
{
	static const char text[] = "text/plain; charset=utf-8";
	struct agent *a = mc->m->a;
	const char *why;

	mc->answered = true;
	if (status) {
		respond(mc, status, NULL, text, "bad request\n", 12);
		return;
	}
	if (r->target == METRICS_T_OTHER) {
		respond(mc, 404, r, text, "not found\n", 10);
		return;
	}
	if (!r->get && !r->head) {
		respond(mc, 405, r, text, "method not allowed\n", 19);
		return;
	}
	switch (r->target) {
	case METRICS_T_METRICS: {
		struct metrics_snapshot s;
		uint64_t ks[SHUNT_STAT_MAX];
		struct mbuf body = {};

		collect(mc->m, &s, ks);
		if (metrics_render(&s, &body))
			respond(mc, 500, r, text, "out of memory\n", 14);
		else
			respond(mc, 200, r, "text/plain; version=0.0.4; charset=utf-8", body.data,
				body.len);
		mbuf_free(&body);
		break;
	}
	case METRICS_T_READYZ:
		why = not_ready(a);
		if (why) {
			char msg[128];
			int n = snprintf(msg, sizeof(msg), "not ready: %s\n", why);

			respond(mc, 503, r, text, msg, (size_t)n);
			break;
		}
		/* fall through */
	case METRICS_T_HEALTHZ:
		respond(mc, 200, r, text, "ok\n", 3);
		break;
	default:
		break;
	}
}

/* Read and drop what the client sent beyond its request (bounded), so
 * closing with unread bytes does not reset the connection and lose the
 * answer. */
static void drain_input(int fd)
{
	char junk[4096];

	for (int i = 0; i < 16; i++)
		if (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
			return;
}

static void conn_close(struct metrics_conn *mc)
{
	struct metrics *m = mc->m;

	if (mc->prev)
		mc->prev->next = mc->next;
	else
		m->conns = mc->next;
	if (mc->next)
		mc->next->prev = mc->prev;
	m->nconns--;
	loop_del(&m->a->loop, mc->fd);
	drain_input(mc->fd);
	close(mc->fd);
	mbuf_free(&mc->out);
	free(mc);
}

static void conn_event(struct ev_handler *h, uint32_t events)
{
	struct metrics_conn *mc = (struct metrics_conn *)h;
	struct metrics_request r;
	ssize_t n;

	while (!mc->answered) {
		n = read(mc->fd, mc->in + mc->inlen, sizeof(mc->in) - mc->inlen);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(mc); /* gone before asking anything */
			return;
		}
		mc->inlen += (size_t)n;
		int st = metrics_parse_request(mc->in, mc->inlen, &r);

		if (st != -EAGAIN)
			answer(mc, st, &r);
	}
	if (mc->out.failed) {
		conn_close(mc);
		return;
	}
	while (mc->outpos < mc->out.len) {
		n = send(mc->fd, mc->out.data + mc->outpos, mc->out.len - mc->outpos,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* EPOLLOUT brings us back */
		if (n <= 0) {
			conn_close(mc);
			return;
		}
		mc->outpos += (size_t)n;
	}
	shutdown(mc->fd, SHUT_WR);
	conn_close(mc);
}

static void refuse_busy(struct metrics *m, int fd)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
				   "Connection: close\r\n\r\n";

	/* A flood of stalled scrapers must not flood the log too. */
	if (!m->last_busy_warn || m->a->loop.now_ms - m->last_busy_warn >= 10000) {
		m->last_busy_warn = m->a->loop.now_ms;
		pr_warn("metrics: %u connections open, refusing more", m->nconns);
	}
	(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	drain_input(fd);
	close(fd);
}

static void listener_event(struct ev_handler *h, uint32_t events)
{
	struct metrics *m = (struct metrics *)h;

	/* Edge-triggered: take the whole backlog. */
	for (;;) {
		int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct metrics_conn *mc;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pr_warn("metrics: accept: %s", strerror(errno));
			return;
		}
		if (m->nconns >= METRICS_MAX_CONNS) {
			refuse_busy(m, fd);
			continue;
		}
		mc = calloc(1, sizeof(*mc));
		if (!mc) {
			close(fd);
			continue;
		}
		mc->h.fn = conn_event;
		mc->m = m;
		mc->fd = fd;
		mc->started_ms = m->a->loop.now_ms;
		if (loop_add(&m->a->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &mc->h)) {
			close(fd);
			free(mc);
			continue;
		}
		mc->next = m->conns;
		if (mc->next)
			mc->next->prev = mc;
		m->conns = mc;
		m->nconns++;
	}
}

int metrics_start(struct agent *a, const struct shunt_addr *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(addr, &ss);
	char s[ADDR_STR_LEN];
	struct metrics *m;
	int one = 1, err;

	format_addr_port(addr, s, sizeof(s));
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	for (int i = 0; i < METRICS_MAX_MAPS; i++)
		m->entries[i] = -1;
	m->h.fn = listener_event;
	m->a = a;
	/* Not marked: the agent's mark keeps its own connect() calls out of
	 * the capture hooks, and a listener connects nowhere. */
	m->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (m->fd < 0) {
		err = -errno;
		goto fail;
	}
	setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* A new agent taking over binds the same address while the old one
	 * still serves; the old one closes its listener once it hands over. */
	setsockopt(m->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(m->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(m->fd, (struct sockaddr *)&ss, sl) || listen(m->fd, 64) ||
	    loop_add(&a->loop, m->fd, EPOLLIN | EPOLLET, &m->h)) {
		err = -errno;
		close(m->fd);
		goto fail;
	}
	a->metrics = m;
	pr_info("metrics on http://%s/metrics", s);
	return 0;
fail:
	pr_err("metrics listen on %s: %s", s, strerror(-err));
	free(m);
	return err;
}

void metrics_tick(struct agent *a)
{
	struct metrics_conn *mc, *next;

	if (!a->metrics)
		return;
	for (mc = a->metrics->conns; mc; mc = next) {
		next = mc->next;
		if (a->loop.now_ms - mc->started_ms >= METRICS_TIMEOUT_MS) {
			pr_debug("metrics: a scrape took more than %d ms, closing it",
				 METRICS_TIMEOUT_MS);
			conn_close(mc);
		}
	}
}

void metrics_stop(struct agent *a)
{
	struct metrics *m = a->metrics;

	if (!m)
		return;
	while (m->conns)
		conn_close(m->conns);
	loop_del(&a->loop, m->fd);
	close(m->fd);
	free(m);
	a->metrics = NULL;
}
