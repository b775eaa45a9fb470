// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The metrics endpoint: exposition, request parsing, and its server. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "agent.h"
#include "k8s/watch.h"
#include "core/log.h"
#include "ops/metrics.h"
#include "ops/server.h"
#include "core/util.h"
#include "version.h"

/* Map entries counted per scrape and map: a full 64k-entry LRU map is
 * counted over several scrapes (about a millisecond each) and shows the
 * last complete count, instead of stalling the proxy for tens of ms. */
#define METRICS_MAP_BUDGET 8192U

void metrics_label_value(struct buf *out, const char *v)
{
	const char *run = v;

	for (; *v; v++) {
		const char *esc = *v == '\\'   ? "\\\\"
				  : *v == '"'  ? "\\\""
				  : *v == '\n' ? "\\n"
					       : NULL;

		if (!esc)
			continue;
		buf_append(out, run, (size_t)(v - run));
		buf_append(out, esc, 2);
		run = v + 1;
	}
	buf_append(out, run, (size_t)(v - run));
}

static void family(struct buf *o, const char *name, const char *type, const char *help)
{
	buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct buf *o, const char *name, uint64_t v)
{
	buf_printf(o, "%s %llu\n", name, (unsigned long long)v);
}

static void one(struct buf *o, const char *name, const char *type, const char *help, uint64_t v)
{
	family(o, name, type, help);
	sample(o, name, v);
}

/* name{label="value"} v, the value escaped. */
static void labelled(struct buf *o, const char *name, const char *label, const char *value,
		     uint64_t v)
{
	buf_printf(o, "%s{%s=\"", name, label);
	metrics_label_value(o, value);
	buf_printf(o, "\"} %llu\n", (unsigned long long)v);
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

static void render_proxy(struct buf *o, const struct proxy_stats *ps)
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
		{"shunt_h2_connections_total", "counter",
		 "Client connections that spoke HTTP/2 (prior knowledge): routed per stream.",
		 ps->h2_conns},
		{"shunt_h2_streams_total", "counter",
		 "HTTP/2 streams that ended (each is also a request in shunt_requests_total).",
		 ps->h2_streams},
		{"shunt_h2_calmed_total", "counter",
		 "HTTP/2 client connections told ENHANCE_YOUR_CALM: they reset streams opened "
		 "upstream faster than 33 a second (after a burst of 1000).",
		 ps->h2_calmed},
		{"shunt_h2c_declined_total", "counter",
		 "Upgrade: h2c requests answered over HTTP/1.1 because a destination does not "
		 "speak HTTP/2 (as the server would have, directly).",
		 ps->h2c_declined},
		{"shunt_h2_upstream_sessions", "gauge",
		 "HTTP/2 sessions to upstreams open now (each carries many streams).",
		 ps->h2_sessions},
		{"shunt_proxy_polls_total", "counter",
		 "Waits of the proxy's event loops that polled before sleeping (--poll).",
		 ps->polls},
		{"shunt_proxy_poll_hits_total", "counter",
		 "Polls that found an event without sleeping.", ps->poll_hits},
		{"shunt_inpod_pods", "gauge",
		 "Pods served in-pod now: shunt's sockets for them live in their own network "
		 "namespace.",
		 ps->inpod_pods},
		{"shunt_inpod_connections_open", "gauge",
		 "Captured connections of pods served in-pod open now (also in "
		 "shunt_connections_open).",
		 ps->inpod_active},
		{"shunt_inpod_connections_accepted_total", "counter",
		 "Captured connections accepted on in-pod listeners (also in "
		 "shunt_connections_accepted_total).",
		 ps->inpod_accepted},
		{"shunt_tc_pods", "gauge",
		 "Pods captured with TC now: the TC program on their host-side interface hands "
		 "their connections to steered services to shunt.",
		 ps->tc_pods},
		{"shunt_tc_connections_open", "gauge",
		 "Connections captured with TC open now (also in shunt_connections_open).",
		 ps->tc_active},
		{"shunt_tc_connections_accepted_total", "counter",
		 "Connections captured with TC accepted (also in "
		 "shunt_connections_accepted_total).",
		 ps->tc_accepted},
		{"shunt_upstream_connects_total", "counter",
		 "New connections to upstreams (sandboxes and baselines).", ps->upstream_connects},
		{"shunt_upstream_reuses_total", "counter",
		 "Requests sent on a pooled upstream connection.", ps->upstream_reused},
		{"shunt_upstream_retries_total", "counter",
		 "Idempotent requests sent again because a pooled connection had been closed.",
		 ps->retries},
		{"shunt_upstream_refused_total", "counter",
		 "Upstream connections not made because the destination is the node itself "
		 "(loopback, link-local, a node or proxy address).",
		 ps->dst_refused},
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

static void render_service(struct buf *o, const struct rs_service *s, const char *name)
{
	char a[ADDR_STR_LEN];

	if (!name)
		name = format_addr_port(&s->svc, a, sizeof(a));
	for (int p = 0; p < RS_PROTO_MAX; p++)
		for (int d = 0; d < RS_DEST_MAX; d++)
			for (int k = 0; k < RS_OUTCOME_MAX; k++) {
				if (!s->n[p][d][k])
					continue;
				buf_append(o, "shunt_requests_total{service=\"", 30);
				metrics_label_value(o, name);
				buf_printf(o,
					   "\",protocol=\"%s\",destination=\"%s\",outcome=\"%s\"} "
					   "%llu\n",
					   rs_proto_names[p], rs_dest_names[d], rs_outcome_names[k],
					   (unsigned long long)s->n[p][d][k]);
			}
}

static void render_requests(struct buf *o, const struct reqstats *rs)
{
	family(o, "shunt_requests_total", "counter",
	       "HTTP requests (HTTP/2: streams) by service (original destination; \"other\" "
	       "past the table's size), protocol (http/1.1, h2), destination (baseline, sandbox, "
	       "or error: answered by shunt itself) and "
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
			buf_printf(o,
				   "shunt_request_duration_seconds_bucket{destination=\"%s\","
				   "le=\"%s\"} %llu\n",
				   rs_dest_names[d], rs_bucket_le[i], (unsigned long long)cum);
		}
		buf_printf(o,
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

/* What the cluster asks for and does not get (docs/k8s-contract.md
 * "Tenancy"): gauges of the state now. */
static void render_k8s(struct buf *o, const struct k8s_status *k)
{
	one(o, "shunt_k8s_conflicts", "gauge",
	    "Kubernetes objects losing routes or overrides to an older object that produces "
	    "the same ones.",
	    k->conflicts.total);
	family(o, "shunt_k8s_refused", "gauge",
	       "SandboxRoutes that get no routes, by reason: quota (--max-routes-per-namespace) "
	       "or sandbox_cidr (a sandbox address outside every --sandbox-cidr).");
	labelled(o, "shunt_k8s_refused", "reason", "quota", k->refused_quota.total);
	labelled(o, "shunt_k8s_refused", "reason", "sandbox_cidr", k->refused_cidr.total);
	family(o, "shunt_k8s_not_installed", "gauge",
	       "Routes and overrides the cluster asks for that the agent could not install "
	       "(route table full, a destination refused), by kind.");
	labelled(o, "shunt_k8s_not_installed", "kind", "route", k->routes_not_installed);
	labelled(o, "shunt_k8s_not_installed", "kind", "override", k->overrides_not_installed);
	one(o, "shunt_k8s_endpoints_ignored", "gauge",
	    "EndpointSlice addresses of steered Services not counted: their targetRef names no "
	    "Pod of the slice's namespace that has that address.",
	    k->endpoint_addrs_ignored);
}

/* name{pod="...",label="value"} v */
static void pod_sample(struct buf *o, const char *name, const char *pod, const char *label,
		       const char *value, uint64_t v)
{
	buf_printf(o, "%s{pod=\"", name);
	metrics_label_value(o, pod);
	if (label)
		buf_printf(o, "\",%s=\"%s", label, value);
	buf_printf(o, "\"} %llu\n", (unsigned long long)v);
}

static bool infer_set(const struct inpod_info *p)
{
	return p->infer.n_ports || p->infer.mode != INFER_OFF;
}

/* Inferred propagation, per pod that has it set (docs/operations.md,
 * "Reading inference's metrics"). */
static void render_infer(struct buf *o, const struct metrics_snapshot *s)
{
	static const char *const events[SHUNT_INFER_STAT_MAX] = {"taken", "stale", "no_socket"};
	const struct inpod_info *p;
	size_t i;

	family(o, "shunt_infer_mode", "gauge",
	       "1 for the pod's inference mode (off, shadow, on); switched_off=\"true\" when it "
	       "switched itself off as unsafe.");
	for (i = 0, p = s->pods; i < s->n_pods; i++, p++)
		if (infer_set(p)) {
			buf_printf(o, "shunt_infer_mode{pod=\"");
			metrics_label_value(o, p->name);
			buf_printf(o, "\",mode=\"%s\",switched_off=\"%s\"} 1\n",
				   infer_mode_names[p->infer.mode],
				   p->infer.switched_off ? "true" : "false");
		}
	family(o, "shunt_infer_inbound_requests_total", "counter",
	       "Inbound requests of the pod shunt read, with and without a routing key.");
	for (i = 0, p = s->pods; i < s->n_pods; i++, p++)
		if (infer_set(p)) {
			pod_sample(o, "shunt_infer_inbound_requests_total", p->name, "keyed",
				   "true", p->infer.st.inbound_keyed);
			pod_sample(o, "shunt_infer_inbound_requests_total", p->name, "keyed",
				   "false", p->infer.st.inbound - p->infer.st.inbound_keyed);
		}
	family(o, "shunt_infer_calls_total", "counter",
	       "Outbound requests the pod sent without a key, by what inference made of them: "
	       "decided (a key: injected when on), nothing_in_flight, ambiguous, or the refusal.");
	for (i = 0, p = s->pods; i < s->n_pods; i++, p++)
		for (int k = 0; infer_set(p) && k < INFER_OUTCOME_MAX; k++)
			pod_sample(o, "shunt_infer_calls_total", p->name, "outcome",
				   infer_outcome_names[k], p->infer.st.outcome[k]);
	family(o, "shunt_infer_injected_total", "counter",
	       "Outbound requests that got an inferred key (mode on).");
	for (i = 0, p = s->pods; i < s->n_pods; i++, p++)
		if (infer_set(p))
			pod_sample(o, "shunt_infer_injected_total", p->name, NULL, NULL,
				   p->infer.st.injected);
	family(o, "shunt_infer_keyed_calls_total", "counter",
	       "Outbound requests that carried the app's own key (left as they are).");
	for (i = 0, p = s->pods; i < s->n_pods; i++, p++)
		if (infer_set(p))
			pod_sample(o, "shunt_infer_keyed_calls_total", p->name, NULL, NULL,
				   p->infer.st.keyed_calls);
	family(o, "shunt_infer_untracked_connections", "gauge",
	       "Inbound connections to the pod's ports that bypass shunt: while there are any, "
	       "no key is inferred.");
	for (i = 0, p = s->pods; i < s->n_pods; i++, p++)
		if (infer_set(p))
			pod_sample(o, "shunt_infer_untracked_connections", p->name, NULL, NULL,
				   p->infer.untracked);
	if (!s->infer_kernel)
		return;
	family(o, "shunt_infer_kernel_total", "counter",
	       "The sk_lookup program: connections handed to shunt (taken), let through because "
	       "the agent's heartbeat was stale (stale), or with no listener (no_socket).");
	for (int k = 0; k < SHUNT_INFER_STAT_MAX; k++)
		labelled(o, "shunt_infer_kernel_total", "event", events[k], s->infer_kernel[k]);
}

int metrics_render(const struct metrics_snapshot *s, struct buf *o)
{
	char name[96];

	family(o, "shunt_build_info", "gauge", "Always 1; the agent's version in a label.");
	labelled(o, "shunt_build_info", "version", s->version ? s->version : "unknown", 1);
	family(o, "shunt_start_time_seconds", "gauge",
	       "When the agent started, in seconds since the Unix epoch.");
	sample(o, "shunt_start_time_seconds", s->start_time_unix);

	if (s->req)
		render_requests(o, s->req);
	if (s->proxy) {
		render_proxy(o, s->proxy);
		one(o, "shunt_proxy_workers", "gauge",
		    "The proxy's event loops (--workers), one per CPU by default.", s->workers);
	}

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

	if (s->k8s)
		render_k8s(o, s->k8s);
	if (s->pods || s->infer_kernel)
		render_infer(o, s);
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

/* ------------------------------------------------------------ families */

void metrics_families(const struct shunt_addr *listen, int n, struct buf *out)
{
	static const struct {
		uint8_t family;
		const char *name;
	} fams[] = {{SHUNT_FAMILY_V4, "ipv4"}, {SHUNT_FAMILY_V6, "ipv6"}};
	char s[ADDR_STR_LEN];

	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		int i = 0;

		while (i < n && listen[i].family != fams[f].family)
			i++;
		if (i < n)
			buf_printf(out, "%s %s\n", fams[f].name,
				   format_addr_port(&listen[i], s, sizeof(s)));
		else
			buf_printf(out, "%s none (no --proxy-addr of this family)\n", fams[f].name);
	}
}

/* -------------------------------------------------------------- server */

#define TARGET(t) (1U << (t))

/* What a listener serves, and to how many at once. */
struct metrics_endpoint {
	const char *name; /* in logs */
	const char *flag;
	unsigned int targets; /* TARGET() of each path served; others 404 */
	unsigned int max_conns;
	unsigned int max_per_source; /* 0: no limit per client address */
};

static const struct metrics_endpoint ep_metrics = {
	.name = "metrics",
	.flag = "--metrics-addr",
	/* The probes stay here too, for whoever checks them on this port. */
	.targets = TARGET(METRICS_T_METRICS) | TARGET(METRICS_T_HEALTHZ) |
		   TARGET(METRICS_T_READYZ) | TARGET(METRICS_T_OVERRIDES),
	.max_conns = METRICS_MAX_CONNS,
	.max_per_source = METRICS_MAX_CONNS_PER_SOURCE,
};

/* Only the node reaches it (127.0.0.1 on the host network), and every
 * local process shares that one source address: no limit per source. */
static const struct metrics_endpoint ep_health = {
	.name = "health",
	.flag = "--health-addr",
	.targets = TARGET(METRICS_T_HEALTHZ) | TARGET(METRICS_T_READYZ),
	.max_conns = HEALTH_MAX_CONNS,
};

#define METRICS_MAX_LISTENERS 2

struct metrics_conn;

struct metrics_listener {
	struct srv srv; /* accept, connections, deadlines */
	struct metrics *m;
	const struct metrics_endpoint *ep;
	uint64_t last_busy_warn, last_source_warn, last_rate_warn;
	struct scrape_rates rates;
};

bool scrape_allowed(struct scrape_rates *t, const struct shunt_addr *peer, uint64_t now_ms)
{
	const uint64_t full = (uint64_t)METRICS_SCRAPE_BURST * METRICS_SCRAPE_EVERY_MS;
	unsigned int i, oldest = 0;

	for (i = 0; i < t->n; i++) {
		if (addr_equal(&t->s[i].peer, peer))
			break;
		if (t->s[i].seen_ms < t->s[oldest].seen_ms)
			oldest = i;
	}
	if (i == t->n) {
		/* A new source starts full; one remembered longest goes. */
		i = t->n < METRICS_SCRAPE_SOURCES ? t->n++ : oldest;
		t->s[i].peer = *peer;
		t->s[i].credit_ms = full;
	} else {
		t->s[i].credit_ms += now_ms - t->s[i].seen_ms;
		if (t->s[i].credit_ms > full)
			t->s[i].credit_ms = full;
	}
	t->s[i].seen_ms = now_ms;
	if (t->s[i].credit_ms < METRICS_SCRAPE_EVERY_MS)
		return false;
	t->s[i].credit_ms -= METRICS_SCRAPE_EVERY_MS;
	return true;
}

/* The server: its listeners, and the state scrapes share. */
struct metrics {
	struct agent *a;
	struct metrics_listener *ls[METRICS_MAX_LISTENERS];
	int nls;
	struct shunt_map_walk walks[METRICS_MAX_MAPS];
	long entries[METRICS_MAX_MAPS]; /* last complete count, -1 none yet */
};

struct metrics_conn {
	struct srv_conn c; /* c.peer: port 0, the source address counts */
	struct metrics_listener *l;
	bool answered;
	size_t inlen;
	struct buf out;
	char in[METRICS_MAX_REQUEST];
};

#define TEXT_PLAIN "text/plain; charset=utf-8"

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
	case 429:
		return "Too Many Requests";
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
	if (!a->workers || workers_listening(a->workers) != a->popts.n_listen)
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

/* ps and rq hold what s->proxy and s->req point to; rq is the caller's to
 * free. */
static void collect(struct metrics *m, struct metrics_snapshot *s, uint64_t *ks,
		    struct proxy_stats *ps, struct reqstats *rq, struct inpod_info **pods,
		    uint64_t *iks)
{
	struct agent *a = m->a;
	struct shunt_map_info maps[METRICS_MAX_MAPS];
	int nm = shunt_bpf_maps(&a->bpf, maps);

	memset(s, 0, sizeof(*s));
	s->version = SHUNT_VERSION;
	s->start_time_unix = a->started_unix;
	reqstats_init(rq, SHUNT_MAX_SERVICES);
	if (a->workers) {
		s->workers = (uint64_t)workers_stats(a->workers, ps, NULL, 0);
		workers_reqstats(a->workers, rq);
		s->proxy = ps;
		s->req = rq;
		s->n_pods = workers_inpod_count(a->workers);
		*pods = s->n_pods ? calloc(s->n_pods, sizeof(**pods)) : NULL;
		s->n_pods =
			*pods ? (size_t)workers_inpod_list(a->workers, *pods, (int)s->n_pods) : 0;
		s->pods = *pods;
		if (workers_infer_kernel_stats(a->workers, iks))
			s->infer_kernel = iks;
	}
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
	if (a->k8s) {
		static struct k8s_status st; /* large; the main loop is the only caller */

		k8s_get_status(a, &st);
		s->k8s = &st;
	}
}

static void respond(struct metrics_conn *mc, int status, const struct metrics_request *r,
		    const char *ctype, const char *body, size_t blen)
{
	buf_printf(&mc->out,
		   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		   "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
		   status, reason_phrase(status), ctype, blen,
		   status == 405   ? "Allow: GET, HEAD\r\n"
		   : status == 429 ? "Retry-After: 1\r\n"
				   : "");
	if (!r || !r->head)
		buf_append(&mc->out, body, blen);
}

static void answer_readyz(struct metrics_conn *mc, const struct metrics_request *r)
{
	struct agent *a = mc->l->m->a;
	const char *why = not_ready(a);
	struct buf body = {};

	if (why)
		buf_printf(&body, "not ready: %s\n", why);
	else
		buf_append(&body, "ok\n", 3);
	metrics_families(a->popts.listen, a->popts.n_listen, &body);
	if (body.failed)
		respond(mc, 500, r, TEXT_PLAIN, "out of memory\n", 14);
	else
		respond(mc, why ? 503 : 200, r, TEXT_PLAIN, buf_head(&body), buf_len(&body));
	buf_free(&body);
}

static bool warn_due(struct metrics_listener *l, uint64_t *last);

static void answer(struct metrics_conn *mc, int status, const struct metrics_request *r)
{
	mc->answered = true;
	if (status) {
		respond(mc, status, NULL, TEXT_PLAIN, "bad request\n", 12);
		return;
	}
	if (!(mc->l->ep->targets & TARGET(r->target))) {
		respond(mc, 404, r, TEXT_PLAIN, "not found\n", 10);
		return;
	}
	if (!r->get && !r->head) {
		respond(mc, 405, r, TEXT_PLAIN, "method not allowed\n", 19);
		return;
	}
	switch (r->target) {
	case METRICS_T_METRICS: {
		struct metrics_snapshot s;
		uint64_t ks[SHUNT_STAT_MAX], iks[SHUNT_INFER_STAT_MAX];
		struct inpod_info *pods = NULL;
		struct buf body = {};
		struct metrics_listener *l = mc->l;
		struct proxy_stats ps;
		struct reqstats rq;
		int err;

		if (!scrape_allowed(&l->rates, &mc->c.peer, l->m->a->loop.now_ms)) {
			static const char slow[] =
				"too many scrapes from this address: at most one "
				"every 100 ms after a burst of 20\n";

			if (warn_due(l, &l->last_rate_warn))
				pr_warn("%s: scrapes from one address over the rate, answering 429",
					l->ep->name);
			respond(mc, 429, r, TEXT_PLAIN, slow, sizeof(slow) - 1);
			break;
		}
		collect(mc->l->m, &s, ks, &ps, &rq, &pods, iks);
		err = metrics_render(&s, &body);
		reqstats_free(&rq);
		free(pods);
		if (err)
			respond(mc, 500, r, TEXT_PLAIN, "out of memory\n", 14);
		else
			respond(mc, 200, r, "text/plain; version=0.0.4; charset=utf-8",
				buf_head(&body), buf_len(&body));
		buf_free(&body);
		break;
	}
	case METRICS_T_READYZ:
		answer_readyz(mc, r);
		break;
	case METRICS_T_HEALTHZ:
		respond(mc, 200, r, TEXT_PLAIN, "ok\n", 3);
		break;
	case METRICS_T_OVERRIDES: {
		char msg[512];
		int ret = -EINVAL, n;

		if (r->pod[0])
			ret = k8s_overrides_ready(mc->l->m->a, r->pod, msg, sizeof(msg) - 1);
		else
			snprintf(msg, sizeof(msg) - 1,
				 "bad request: give pod=UID, the pod's metadata.uid");
		n = (int)strlen(msg);
		msg[n++] = '\n';
		respond(mc,
			ret == 1	  ? 200
			: !ret		  ? 503
			: ret == -ENOTSUP ? 404
					  : 400,
			r, TEXT_PLAIN, msg, (size_t)n);
		break;
	}
	default:
		break;
	}
}

static void conn_fini(struct srv_conn *c)
{
	buf_free(&((struct metrics_conn *)c)->out);
}

static void conn_expired(struct srv_conn *c)
{
	pr_debug("%s: a request took more than %d ms, closing it",
		 ((struct metrics_conn *)c)->l->ep->name, METRICS_TIMEOUT_MS);
}

static void conn_event(struct srv_conn *c, uint32_t events)
{
	struct metrics_conn *mc = (struct metrics_conn *)c;
	struct metrics_request r;
	ssize_t n;

	while (!mc->answered) {
		n = read(mc->c.fd, mc->in + mc->inlen, sizeof(mc->in) - mc->inlen);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			srv_close(&mc->c); /* gone before asking anything */
			return;
		}
		mc->inlen += (size_t)n;
		int st = metrics_parse_request(mc->in, mc->inlen, &r);

		if (st != -EAGAIN)
			answer(mc, st, &r);
	}
	if (mc->out.failed) {
		srv_close(&mc->c);
		return;
	}
	while (buf_len(&mc->out)) {
		n = send(mc->c.fd, buf_head(&mc->out), buf_len(&mc->out),
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* EPOLLOUT brings us back */
		if (n <= 0) {
			srv_close(&mc->c);
			return;
		}
		buf_consume(&mc->out, (size_t)n);
	}
	shutdown(mc->c.fd, SHUT_WR);
	srv_close(&mc->c);
}

/* At most one warning per kind and listener every 10 s: a flood of
 * stalled clients must not flood the log too. */
static bool warn_due(struct metrics_listener *l, uint64_t *last)
{
	uint64_t now = l->m->a->loop.now_ms;

	if (*last && now - *last < 10000)
		return false;
	*last = now;
	return true;
}

/* A connection over a limit: a fixed 503, no state kept. */
static void refuse(struct srv *s, int fd)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
				   "Connection: close\r\n\r\n";

	(void)s;
	(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	srv_drain_input(fd);
	close(fd);
}

/* May a connection from peer have a slot? Says why not in the log. */
static bool admit(struct srv *s, const struct shunt_addr *peer)
{
	struct metrics_listener *l = s->owner;
	const struct metrics_endpoint *ep = l->ep;
	char a[INET6_ADDRSTRLEN];

	if (s->nconns >= ep->max_conns) {
		if (warn_due(l, &l->last_busy_warn))
			pr_warn("%s: %u connections open, refusing more", ep->name, s->nconns);
		return false;
	}
	if (ep->max_per_source && peer->family && srv_conns_from(s, peer) >= ep->max_per_source) {
		if (warn_due(l, &l->last_source_warn)) {
			inet_ntop(peer->family == SHUNT_FAMILY_V4 ? AF_INET : AF_INET6, peer->addr,
				  a, sizeof(a));
			pr_warn("%s: %u connections open from %s, refusing more from it", ep->name,
				ep->max_per_source, a);
		}
		return false;
	}
	return true;
}

static int conn_init(struct srv_conn *c)
{
	unsigned int user_timeout = METRICS_TIMEOUT_MS;

	((struct metrics_conn *)c)->l = c->srv->owner;
	/* A reader that opens no window for the answer: the kernel gives up
	 * too, instead of keeping the rest of the answer in an orphaned
	 * socket after we closed it. */
	setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
	return 0;
}

/* Both endpoints' (the listener's srv.name is its endpoint's). */
static const struct srv_ops metrics_srv_ops = {
	.name = "metrics",
	.conn_size = sizeof(struct metrics_conn),
	.timeout_ms = METRICS_TIMEOUT_MS,
	.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
	.admit = admit,
	.refuse = refuse,
	.init = conn_init,
	.event = conn_event,
	.expired = conn_expired,
	.fini = conn_fini,
};

static struct metrics *server(struct agent *a)
{
	struct metrics *m = a->metrics;

	if (m)
		return m;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	for (int i = 0; i < METRICS_MAX_MAPS; i++)
		m->entries[i] = -1;
	m->a = a;
	a->metrics = m;
	return m;
}

static int listen_on(struct agent *a, const struct shunt_addr *addr,
		     const struct metrics_endpoint *ep)
{
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(addr, &ss);
	struct metrics *m = server(a);
	struct metrics_listener *l;
	char s[ADDR_STR_LEN];
	int one = 1, err, fd;

	format_addr_port(addr, s, sizeof(s));
	if (!m || m->nls == METRICS_MAX_LISTENERS) {
		err = m ? -EBUSY : -ENOMEM;
		goto fail;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		err = -ENOMEM;
		goto fail;
	}
	l->m = m;
	l->ep = ep;
	/* Not marked: the agent's mark keeps its own connect() calls out of
	 * the capture hooks, and a listener connects nowhere. */
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		free(l);
		goto fail;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* A new agent taking over binds the same address while the old one
	 * still serves; the old one closes its listeners once it hands over. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 64)) {
		err = -errno;
		close(fd);
		free(l);
		goto fail;
	}
	err = srv_start(&l->srv, &a->loop, fd, &metrics_srv_ops, l);
	if (err) {
		free(l);
		goto fail;
	}
	l->srv.name = ep->name;
	m->ls[m->nls++] = l;
	if (ep == &ep_metrics)
		pr_info("metrics on http://%s/metrics", s);
	else
		pr_info("probes on http://%s/healthz and /readyz", s);
	return 0;
fail:
	pr_err("%s listen on %s (%s): %s", ep->name, s, ep->flag, strerror(-err));
	if (m && !m->nls) { /* as if never started */
		free(m);
		a->metrics = NULL;
	}
	return err;
}

int metrics_start(struct agent *a, const struct shunt_addr *addr)
{
	return listen_on(a, addr, &ep_metrics);
}

int metrics_start_health(struct agent *a, const struct shunt_addr *addr)
{
	return listen_on(a, addr, &ep_health);
}

void metrics_stop(struct agent *a)
{
	struct metrics *m = a->metrics;

	if (!m)
		return;
	for (int i = 0; i < m->nls; i++) {
		srv_stop(&m->ls[i]->srv);
		free(m->ls[i]);
	}
	free(m);
	a->metrics = NULL;
}
