// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The control socket server (protocol in ctl_proto.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "agent.h"
#include "ops/caller.h"
#include "kernel/cgpeers.h"
#include "ops/ctl_proto.h"
#include "ops/server.h"
#include "k8s/watch.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/log.h"
#include "proxy/routekey.h"
#include "kernel/source.h"
#include "core/util.h"

/* A client gets this long to send its line and read the answer, and this
 * many connections are served at once: one that connects and stalls
 * cannot hold descriptors for ever, nor many of them starve the proxy. */
#define CTL_TIMEOUT_MS 5000
#define CTL_MAX_CONNS  32
/* A refused request is logged, then the next ones only counted for this
 * long: a caller looping on refusals cannot flood the log. */
#define CTL_REFUSED_LOG_MS 5000

struct ctl_conn;
struct control;

/* A status request's look at the cgroup tree, done on a thread of its own:
 * walking thousands of cgroups takes tens of milliseconds, which the
 * proxy's event loop must not wait for. The answer is written on the
 * loop once the thread is done (control's jobs pipe). */
struct status_job {
	struct status_job *next;
	struct ctl_conn *cc; /* NULL once the connection went away */
	pthread_t thread;
	int pipe_fd; /* where the thread posts the job when it is done */
	bool json;
	char cgroup[PATH_MAX];
	uint32_t own4, own6;
	struct cg_peers peers;
	/* Map entries, counted on the thread with the batched walk. */
	struct shunt_map_info maps[SHUNT_NR_MAPS];
	long counts[SHUNT_NR_MAPS];
	int nmaps;
};

struct jobs_handler {
	struct ev_handler h;
	struct control *ctl;
};

struct control {
	struct srv srv; /* accept, connections, deadlines */
	struct agent *a;
	char path[108];
	struct caller_self self;
	uint64_t refused_logged_ms; /* when the last refusal was logged */
	unsigned int refused_quiet; /* refusals since then, not logged */
	bool refused_any;
	int jobs_pipe[2];
	struct jobs_handler jobs_h;
	struct status_job *jobs; /* running or done, not yet collected */
};

struct ctl_conn {
	struct srv_conn c; /* its deadline: CTL_TIMEOUT_MS after accept */
	struct agent *a;
	/* A status answer is sent from here, after the loop's batch of
	 * events: one of them may be this connection's, and sending can
	 * close (free) it. */
	struct timer answer;
	char in[CTL_MAX_REQUEST];
	size_t inlen;
	struct buf out; /* the answer; out.failed: it could not grow */
	/* The first descriptor the client sent with its request (SCM_RIGHTS),
	 * or -1: a new shuntd's proof for a takeover. */
	int proof_fd;
	struct status_job *job; /* a status answer waits for it */
};

static int fail(struct ctl_conn *cc, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ctl_conn *cc, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	buf_reset(&cc->out);
	buf_printf(&cc->out, "error %d\n%s\n", code, msg);
	return -1;
}

static void cmd_route_add(struct ctl_conn *cc, const struct ctl_request *r)
{
	struct agent *a = cc->a;
	struct shunt_route_key k;
	struct shunt_route v = {};
	uint64_t now = (uint64_t)time(NULL);
	char err[256], s1[ADDR_STR_LEN], s2[ADDR_STR_LEN];
	bool newly_steered, shadowed;

	if (r->fallback_baseline)
		v.flags |= SHUNT_ROUTE_FALLBACK_BASELINE;
	route_key_make(&k, &r->service, r->key, strlen(r->key));
	newly_steered = route_table_service_count(a->store.t, &r->service) == 0;
	v.to = r->to;
	v.created_unix = now;
	v.expires_unix = r->ttl_sec ? deadline_after(r->ttl_sec) : 0;
	if (store_add_local(&a->store, &k, &v, &shadowed, err, sizeof(err))) {
		fail(cc, CTL_EXIT_FAILED, "route add: %s", err);
		return;
	}
	format_addr_port(&r->service, s1, sizeof(s1));
	format_addr_port(&r->to, s2, sizeof(s2));
	if (shadowed) {
		pr_info("route added: service %s key %s -> %s, hidden by its Kubernetes route", s1,
			r->key, s2);
		buf_printf(&cc->out,
			   "ok\nroute added: %s key=%s -> %s\nnote: a SandboxRoute holds this "
			   "service and key; this route takes effect when that one goes\n",
			   s1, r->key, s2);
		return;
	}
	pr_info("route added: service %s key %s -> %s%s", s1, r->key, s2,
		v.flags & SHUNT_ROUTE_FALLBACK_BASELINE ? " (fallback baseline)" : "");
	buf_printf(&cc->out, "ok\nroute added: %s key=%s -> %s\n", s1, r->key, s2);
	if (newly_steered)
		/* Capture happens at connect(): say so, or the first keyed
		 * request on an old keep-alive connection looks like a bug. */
		buf_printf(&cc->out,
			   "note: %s is steered from now on; connections opened to it before now "
			   "keep going to the baseline until they close\n",
			   s1);
}

static void cmd_route_del(struct ctl_conn *cc, const struct ctl_request *r)
{
	struct shunt_route_key k;
	char s1[ADDR_STR_LEN];
	int ret;

	route_key_make(&k, &r->service, r->key, strlen(r->key));
	format_addr_port(&r->service, s1, sizeof(s1));
	ret = store_del_local(&cc->a->store, &k);
	if (ret == -EPERM) {
		fail(cc, CTL_EXIT_FAILED,
		     "route del: the route for service %s key %s comes from a Kubernetes "
		     "SandboxRoute; change or delete that",
		     s1, r->key);
		return;
	}
	if (ret) {
		fail(cc, CTL_EXIT_FAILED, "route del: no route for service %s key %s", s1, r->key);
		return;
	}
	pr_info("route deleted: service %s key %s", s1, r->key);
	buf_printf(&cc->out, "ok\nroute deleted: %s key=%s\n", s1, r->key);
}

static const char *route_source(uint32_t flags)
{
	if (flags & SHUNT_ROUTE_FROM_K8S)
		return "k8s";
	return flags & SHUNT_ROUTE_FROM_FILE ? "file" : "api";
}

static void cmd_route_list(struct ctl_conn *cc, const struct ctl_request *r)
{
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	long cnt;
	bool json = r->json;
	uint64_t now = deadline_after(0); /* rounded up, as deadlines are */
	char s1[ADDR_STR_LEN], s2[ADDR_STR_LEN], d[32];

	cnt = route_table_sorted(cc->a->store.t, &keys, &vals);
	if (cnt < 0) {
		fail(cc, CTL_EXIT_FAILED, "out of memory");
		return;
	}
	buf_printf(&cc->out, "ok\n");
	if (json)
		buf_printf(&cc->out, "[");
	else
		buf_printf(&cc->out, "%-24s %-20s %-24s %-9s %-7s %s\n", "SERVICE", "KEY", "TO",
			   "FALLBACK", "SOURCE", "TTL");
	for (long i = 0; i < cnt; i++) {
		const struct shunt_route *v = &vals[i];
		uint64_t left = v->expires_unix > now ? v->expires_unix - now : 0;
		const char *fb = v->flags & SHUNT_ROUTE_FALLBACK_BASELINE ? "baseline" : "error";
		const char *src = route_source(v->flags);

		format_addr_port(&keys[i].service, s1, sizeof(s1));
		format_addr_port(&v->to, s2, sizeof(s2));
		if (!json) {
			buf_printf(&cc->out, "%-24s %-20s %-24s %-9s %-7s %s\n", s1, keys[i].key,
				   s2, fb, src,
				   v->expires_unix ? format_duration(left, d, sizeof(d)) : "-");
			continue;
		}
		buf_printf(&cc->out, "%s{\"service\":", i ? "," : "");
		json_str(&cc->out, s1);
		buf_printf(&cc->out, ",\"key\":");
		json_str(&cc->out, keys[i].key);
		buf_printf(&cc->out, ",\"to\":");
		json_str(&cc->out, s2);
		buf_printf(&cc->out,
			   ",\"fallback\":\"%s\",\"source\":\"%s\",\"created_unix\":%llu,"
			   "\"expires_unix\":%llu,\"ttl_left\":",
			   fb, src, (unsigned long long)v->created_unix,
			   (unsigned long long)v->expires_unix);
		if (v->expires_unix)
			buf_printf(&cc->out, "%llu}", (unsigned long long)left);
		else
			buf_printf(&cc->out, "null}");
	}
	if (json)
		buf_printf(&cc->out, "]\n");
	free(keys);
	free(vals);
}

static void cmd_override_add(struct ctl_conn *cc, const struct ctl_request *r)
{
	struct shunt_override_key k = {};
	struct shunt_override v = {};
	uint64_t now = (uint64_t)time(NULL);
	char err[256], s1[ADDR_STR_LEN], s2[ADDR_STR_LEN];
	uint32_t kind;
	uint64_t id;

	/* Resolved here, in the agent: the id is what the kernel matches. */
	if (source_resolve(r->from, &kind, &id, err, sizeof(err))) {
		fail(cc, CTL_EXIT_FAILED, "override add: %s", err);
		return;
	}
	k.src_kind = kind;
	k.src_id = id;
	k.dst = r->dst;
	v.to = r->to;
	v.created_unix = now;
	v.expires_unix = r->ttl_sec ? deadline_after(r->ttl_sec) : 0;
	strcpy(v.from, r->from);
	if (store_ovr_add(&cc->a->store, &k, &v, err, sizeof(err))) {
		fail(cc, CTL_EXIT_FAILED, "override add: %s", err);
		return;
	}
	format_addr_port(&r->dst, s1, sizeof(s1));
	format_addr_port(&r->to, s2, sizeof(s2));
	pr_info("override added: from %s (%s %llu) to %s -> %s", r->from,
		k.src_kind == SHUNT_SRC_NETNS ? "netns cookie" : "cgroup id",
		(unsigned long long)k.src_id, s1, s2);
	buf_printf(&cc->out, "ok\noverride added: from %s to %s -> %s\n", r->from, s1, s2);
	buf_printf(&cc->out, "note: connections opened from now on are redirected; open ones keep "
			     "their destination\n");
}

static void cmd_override_del(struct ctl_conn *cc, const struct ctl_request *r)
{
	char s1[ADDR_STR_LEN];

	int ret;

	format_addr_port(&r->dst, s1, sizeof(s1));
	ret = store_ovr_del(&cc->a->store, r->from, &r->dst);
	if (ret == -EPERM) {
		fail(cc, CTL_EXIT_FAILED,
		     "override del: the override from %s to %s comes from a SandboxOverride; "
		     "delete that object instead",
		     r->from, s1);
		return;
	}
	if (ret) {
		fail(cc, CTL_EXIT_FAILED, "override del: no override from %s to %s", r->from, s1);
		return;
	}
	pr_info("override deleted: from %s to %s", r->from, s1);
	buf_printf(&cc->out, "ok\noverride deleted: from %s to %s\n", r->from, s1);
}

static int ovr_cmp(const void *pa, const void *pb)
{
	const struct override_entry *a = pa, *b = pb;
	int c = strcmp(a->v.from, b->v.from);

	return c ? c : memcmp(&a->k.dst, &b->k.dst, sizeof(a->k.dst));
}

static void cmd_override_list(struct ctl_conn *cc, const struct ctl_request *r)
{
	const struct store *st = &cc->a->store;
	struct override_entry *o = NULL;
	uint64_t now = deadline_after(0); /* rounded up, as deadlines are */
	char s1[ADDR_STR_LEN], s2[ADDR_STR_LEN], d[32];

	if (st->novr) {
		o = malloc(st->novr * sizeof(*o));
		if (!o) {
			fail(cc, CTL_EXIT_FAILED, "out of memory");
			return;
		}
		memcpy(o, st->ovr, st->novr * sizeof(*o));
		qsort(o, st->novr, sizeof(*o), ovr_cmp);
	}
	buf_printf(&cc->out, "ok\n");
	if (r->json)
		buf_printf(&cc->out, "[");
	else
		buf_printf(&cc->out, "%-36s %-24s %-24s %-7s %s\n", "FROM", "DST", "TO", "SOURCE",
			   "TTL");
	for (size_t i = 0; i < st->novr; i++) {
		const struct shunt_override *v = &o[i].v;
		uint64_t left = v->expires_unix > now ? v->expires_unix - now : 0;
		const char *src = v->flags & SHUNT_ROUTE_FROM_K8S    ? "k8s"
				  : v->flags & SHUNT_ROUTE_FROM_FILE ? "file"
								     : "api";

		format_addr_port(&o[i].k.dst, s1, sizeof(s1));
		format_addr_port(&v->to, s2, sizeof(s2));
		if (!r->json) {
			buf_printf(&cc->out, "%-36s %-24s %-24s %-7s %s\n", v->from, s1, s2, src,
				   v->expires_unix ? format_duration(left, d, sizeof(d)) : "-");
			continue;
		}
		buf_printf(&cc->out, "%s{\"from\":", i ? "," : "");
		json_str(&cc->out, v->from);
		buf_printf(&cc->out, ",\"%s\":%llu,\"dst\":",
			   o[i].k.src_kind == SHUNT_SRC_NETNS ? "netns_cookie" : "cgroup_id",
			   (unsigned long long)o[i].k.src_id);
		json_str(&cc->out, s1);
		buf_printf(&cc->out, ",\"to\":");
		json_str(&cc->out, s2);
		buf_printf(&cc->out,
			   ",\"source\":\"%s\",\"created_unix\":%llu,\"expires_unix\":%llu,"
			   "\"ttl_left\":",
			   src, (unsigned long long)v->created_unix,
			   (unsigned long long)v->expires_unix);
		if (v->expires_unix)
			buf_printf(&cc->out, "%llu}", (unsigned long long)left);
		else
			buf_printf(&cc->out, "null}");
	}
	if (r->json)
		buf_printf(&cc->out, "]\n");
	free(o);
}

static void cmd_pod_add(struct ctl_conn *cc, const struct ctl_request *r)
{
	char msg[512];

	if (workers_inpod_add(cc->a->workers, r->pod_name, r->netns, msg, sizeof(msg))) {
		fail(cc, CTL_EXIT_FAILED, "pod add %s: %s", r->pod_name, msg);
		return;
	}
	buf_printf(&cc->out,
		   "ok\npod %s served in-pod: its connections to steered services go to "
		   "shunt's listeners in %s, and leave from the pod's own address\n",
		   r->pod_name, r->netns);
}

static void cmd_pod_add_tc(struct ctl_conn *cc, const struct ctl_request *r)
{
	char msg[512];

	if (workers_tc_add(cc->a->workers, r->pod_name, r->ifname, msg, sizeof(msg))) {
		fail(cc, CTL_EXIT_FAILED, "pod add %s --tc %s: %s", r->pod_name, r->ifname, msg);
		return;
	}
	buf_printf(&cc->out,
		   "ok\npod %s captured with TC on %s: its new connections to steered services "
		   "go to shunt's TC listener\n",
		   r->pod_name, r->ifname);
}

static void cmd_pod_del(struct ctl_conn *cc, const struct ctl_request *r)
{
	char msg[512];

	if (!workers_tc_del(cc->a->workers, r->pod_name, msg, sizeof(msg))) {
		buf_printf(&cc->out,
			   "ok\npod %s no longer captured with TC; its new connections go where "
			   "they are addressed\n",
			   r->pod_name);
		return;
	}
	if (workers_inpod_del(cc->a->workers, r->pod_name, msg, sizeof(msg))) {
		fail(cc, CTL_EXIT_FAILED,
		     "pod del: pod '%s' is not served (neither in-pod nor captured with TC)",
		     r->pod_name);
		return;
	}
	buf_printf(&cc->out, "ok\npod %s no longer served in-pod; its connections were closed\n",
		   r->pod_name);
}

static void cmd_pod_infer(struct ctl_conn *cc, const struct ctl_request *r)
{
	static const char *const said[] = {
		[CTL_INFER_OFF] = "off: its inbound connections reach the app directly again",
		[CTL_INFER_SHADOW] = "in shadow mode: keys are inferred and counted, never added "
				     "(pod list shows what it would have done)",
		[CTL_INFER_ON] = "on: its outbound requests without a key get the key inferred "
				 "for them, marked " INFER_BAGGAGE_PROPERTY,
	};
	char msg[512];

	if (workers_infer_set(cc->a->workers, r->pod_name, (enum infer_mode)r->infer_mode,
			      r->infer_ports, r->n_infer_ports, msg, sizeof(msg))) {
		fail(cc, CTL_EXIT_FAILED, "pod infer %s: %s", r->pod_name, msg);
		return;
	}
	buf_printf(&cc->out, "ok\npod %s: inference %s\n", r->pod_name, said[r->infer_mode]);
}

/* A pod's inference in pod list: one line of text, or a JSON object
 * ("inference": null when never set). */
static void pod_infer_out(struct ctl_conn *cc, const struct inpod_info *p, bool json)
{
	const struct infer_stats *st = &p->infer.st;

	if (!p->infer.n_ports && p->infer.mode == INFER_OFF) {
		if (json)
			buf_printf(&cc->out, ",\"inference\":null");
		return;
	}
	if (!json) {
		buf_printf(&cc->out,
			   "  inference: %s%s%s%s, %llu inbound (%llu keyed), %llu calls without a "
			   "key: %llu decided, %llu injected, %llu ambiguous, %llu with nothing in "
			   "flight\n",
			   infer_mode_names[p->infer.mode],
			   p->infer.switched_off ? " (switched itself off: " : "",
			   p->infer.switched_off ? p->infer.why : "",
			   p->infer.switched_off ? ")" : "", (unsigned long long)st->inbound,
			   (unsigned long long)st->inbound_keyed, (unsigned long long)st->calls,
			   (unsigned long long)st->outcome[INFER_DECIDED],
			   (unsigned long long)st->injected,
			   (unsigned long long)st->outcome[INFER_AMBIGUOUS],
			   (unsigned long long)st->outcome[INFER_IDLE]);
		return;
	}
	buf_printf(&cc->out,
		   ",\"inference\":{\"mode\":\"%s\",\"attached\":%s,\"switched_off\":%s,"
		   "\"why\":",
		   infer_mode_names[p->infer.mode], p->infer.attached ? "true" : "false",
		   p->infer.switched_off ? "true" : "false");
	json_str(&cc->out, p->infer.why);
	buf_printf(&cc->out, ",\"ports\":[");
	for (int k = 0; k < p->infer.n_ports; k++)
		buf_printf(&cc->out, "%s%u", k ? "," : "", p->infer.ports[k]);
	buf_printf(&cc->out,
		   "],\"accepted\":%llu,\"in_flight\":%zu,\"untracked_connections\":%zu,"
		   "\"idle_ms\":%llu,\"learn_idle_ms\":%llu,\"paths\":%zu,\"idle_paths\":%zu,"
		   "\"inbound\":%llu,\"inbound_keyed\":%llu,\"keyed_calls\":%llu,\"calls\":%llu,"
		   "\"injected\":%llu,\"inject_failed\":%llu,\"switched_off_count\":%llu",
		   (unsigned long long)p->infer.accepted, p->infer.in_flight, p->infer.untracked,
		   (unsigned long long)p->infer.idle_ms, (unsigned long long)p->infer.learn_idle_ms,
		   p->infer.paths, p->infer.idle_paths, (unsigned long long)st->inbound,
		   (unsigned long long)st->inbound_keyed, (unsigned long long)st->keyed_calls,
		   (unsigned long long)st->calls, (unsigned long long)st->injected,
		   (unsigned long long)st->inject_failed, (unsigned long long)st->switched_off);
	for (int o = 0; o < INFER_OUTCOME_MAX; o++)
		buf_printf(&cc->out, ",\"%s\":%llu", infer_outcome_names[o],
			   (unsigned long long)st->outcome[o]);
	buf_printf(&cc->out, "}");
}

/* The pods captured with TC, after the in-pod ones in pod list. */
static void pod_list_tc(struct ctl_conn *cc, const struct ctl_request *r, bool first)
{
	size_t n = workers_tc_count(cc->a->workers);
	struct tcpod_info *t = calloc(n ? n : 1, sizeof(*t));

	if (!t)
		return;
	n = (size_t)workers_tc_list(cc->a->workers, t, (int)n);
	if (!r->json && n)
		buf_printf(&cc->out, "\n%-32s %-16s %-8s %s\n", "POD (TC)", "INTERFACE", "IFINDEX",
			   "ATTACHED");
	for (size_t i = 0; i < n; i++) {
		if (!r->json) {
			buf_printf(&cc->out, "%-32s %-16s %-8d %s\n", t[i].name, t[i].ifname,
				   t[i].ifindex, t[i].kind);
			continue;
		}
		buf_printf(&cc->out, "%s{\"name\":", first && !i ? "" : ",");
		json_str(&cc->out, t[i].name);
		buf_printf(&cc->out, ",\"mode\":\"tc\",\"interface\":");
		json_str(&cc->out, t[i].ifname);
		buf_printf(&cc->out,
			   ",\"ifindex\":%d,\"attached\":\"%s\",\"link_id\":%u,\"prog_id\":%u}",
			   t[i].ifindex, t[i].kind, t[i].link_id, t[i].prog_id);
	}
	free(t);
}

static void cmd_pod_list(struct ctl_conn *cc, const struct ctl_request *r)
{
	size_t n = workers_inpod_count(cc->a->workers);
	struct inpod_info *pods = calloc(n ? n : 1, sizeof(*pods));
	char l4[ADDR_STR_LEN], l6[ADDR_STR_LEN];

	if (!pods) {
		fail(cc, CTL_EXIT_FAILED, "out of memory");
		return;
	}
	n = (size_t)workers_inpod_list(cc->a->workers, pods, (int)n);
	buf_printf(&cc->out, "ok\n%s", r->json ? "[" : "");
	if (!r->json)
		buf_printf(&cc->out, "%-32s %-20s %-18s %-18s %6s %8s %s\n", "POD", "NETNS_COOKIE",
			   "LISTEN4", "LISTEN6", "CONNS", "ACCEPTED", "NETNS");
	for (size_t i = 0; i < n; i++) {
		const struct inpod_info *p = &pods[i];

		if (p->listen[0].family)
			format_addr_port(&p->listen[0], l4, sizeof(l4));
		else
			strcpy(l4, "-");
		if (p->listen[1].family)
			format_addr_port(&p->listen[1], l6, sizeof(l6));
		else
			strcpy(l6, "-");
		if (!r->json) {
			buf_printf(&cc->out, "%-32s %-20llu %-18s %-18s %6llu %8llu %s\n", p->name,
				   (unsigned long long)p->netns, l4, l6,
				   (unsigned long long)p->conns, (unsigned long long)p->accepted,
				   p->netns_path);
			pod_infer_out(cc, p, false);
			continue;
		}
		buf_printf(&cc->out, "%s{\"name\":", i ? "," : "");
		json_str(&cc->out, p->name);
		buf_printf(&cc->out, ",\"mode\":\"in-pod\",\"netns\":");
		json_str(&cc->out, p->netns_path);
		buf_printf(&cc->out, ",\"netns_cookie\":%llu,\"slot\":%u,\"listen\":[",
			   (unsigned long long)p->netns, p->slot);
		if (p->listen[0].family)
			json_str(&cc->out, l4);
		if (p->listen[1].family) {
			buf_printf(&cc->out, "%s", p->listen[0].family ? "," : "");
			json_str(&cc->out, l6);
		}
		buf_printf(&cc->out,
			   "],\"conns\":%llu,\"accepted\":%llu,\"upstream_destinations\":%zu",
			   (unsigned long long)p->conns, (unsigned long long)p->accepted,
			   p->upstream_dsts);
		pod_infer_out(cc, p, true);
		buf_printf(&cc->out, "}");
	}
	pod_list_tc(cc, r, n == 0);
	if (r->json)
		buf_printf(&cc->out, "]\n");
	free(pods);
}

/* Read-only: for `shuntctl override wait` without --agent. */
static void cmd_override_ready(struct ctl_conn *cc, const struct ctl_request *r)
{
	char msg[512];

	if (k8s_overrides_ready(cc->a, r->pod_uid, msg, sizeof(msg)) < 0) {
		fail(cc, CTL_EXIT_FAILED, "override ready: %s", msg);
		return;
	}
	buf_printf(&cc->out, "ok\n%s\n", msg);
}

/* A new agent asks for the listening sockets: send them with the answer
 * and let the main loop start draining. */
#define HANDOVER_PODS_PER_MSG 64 /* 3 descriptors each: under SCM_MAX_FD (253) */
#define HANDOVER_MAX_FDS                                                                           \
	(3 * HANDOVER_PODS_PER_MSG > 2 * SHUNT_MAX_WORKERS ? 3 * HANDOVER_PODS_PER_MSG             \
							   : 2 * SHUNT_MAX_WORKERS)

/* All of buf on fd (non-blocking), the descriptors with its first byte;
 * waits up to a second at a time for room. 0 or -1. */
static int send_all(int fd, const char *buf, size_t len, const int *fds, size_t nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * HANDOVER_MAX_FDS)];
		struct cmsghdr align;
	} u = {};
	size_t off = 0;

	while (off < len) {
		struct iovec iov = {.iov_base = (void *)(buf + off), .iov_len = len - off};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		ssize_t n;

		if (!off && nfds) {
			struct cmsghdr *cm;

			mh.msg_control = u.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (poll(&pfd, 1, 1000) <= 0)
			return -1;
	}
	return 0;
}

/* After the listeners, the pods served in-pod: lines "pod NAME PATH MASK"
 * (TAB-separated; MASK 1: an IPv4 listener follows, 2: an IPv6 one) with,
 * per pod, its namespace and those listeners, in messages of at most
 * HANDOVER_PODS_PER_MSG pods. An agent from before in-pod mode reads only
 * "ok" and closes what it does not know. Returns the pods sent. */
static int takeover_pods(struct ctl_conn *cc)
{
	size_t n = workers_inpod_count(cc->a->workers);
	struct inpod_handover *h = n ? calloc(n, sizeof(*h)) : NULL;
	int sent = 0;

	if (!h)
		return 0;
	n = (size_t)workers_inpod_handover(cc->a->workers, h, (int)n);
	for (size_t i = 0; i < n; i += HANDOVER_PODS_PER_MSG) {
		char text[HANDOVER_PODS_PER_MSG * 340];
		int fds[3 * HANDOVER_PODS_PER_MSG];
		size_t len = 0, nfds = 0, k;

		for (k = i; k < n && k < i + HANDOVER_PODS_PER_MSG; k++) {
			unsigned mask = (h[k].lfd[0] >= 0 ? 1U : 0U) | (h[k].lfd[1] >= 0 ? 2U : 0U);

			len += (size_t)snprintf(text + len, sizeof(text) - len, "pod\t%s\t%s\t%u\n",
						h[k].name, h[k].netns_path, mask);
			fds[nfds++] = h[k].nsfd;
			for (int f = 0; f < 2; f++)
				if (h[k].lfd[f] >= 0)
					fds[nfds++] = h[k].lfd[f];
		}
		if (send_all(cc->c.fd, text, len, fds, nfds)) {
			pr_warn("takeover: handing over in-pod pods failed: %s; those not handed "
				"over fail open until added again",
				strerror(errno));
			break;
		}
		sent += (int)(k - i);
	}
	free(h);
	return sent;
}

/* After the in-pod pods, the pods captured with TC: lines "tcpod NAME
 * IFNAME", no descriptors (the successor attaches its own program). */
static void takeover_tcpods(struct ctl_conn *cc)
{
	size_t n = workers_tc_count(cc->a->workers);
	struct tcpod_handover *h = n ? calloc(n, sizeof(*h)) : NULL;
	struct buf b = {0};
	int tl[2];

	if (!h)
		return;
	n = (size_t)workers_tc_handover(cc->a->workers, h, (int)n, tl);
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "tcpod\t%s\t%s\n", h[i].name, h[i].ifname);
	if (b.end > b.start && send_all(cc->c.fd, b.data + b.start, b.end - b.start, NULL, 0))
		pr_warn("takeover: handing over the pods captured with TC failed: %s; they "
			"pass uncaptured until added again",
			strerror(errno));
	buf_free(&b);
	free(h);
}

/* After the TC pods, the in-pod pods' inference: lines "infer NAME MODE
 * PORTS" (ports comma-separated), no descriptors (the successor attaches
 * its own program and listeners). */
static void takeover_infers(struct ctl_conn *cc)
{
	size_t n = workers_inpod_count(cc->a->workers);
	struct infer_handover *h = n ? calloc(n, sizeof(*h)) : NULL;
	struct buf b = {0};

	if (!h)
		return;
	n = (size_t)workers_infer_handover(cc->a->workers, h, (int)n);
	for (size_t i = 0; i < n; i++) {
		buf_printf(&b, "infer\t%s\t%s\t", h[i].name, infer_mode_names[h[i].mode]);
		for (int k = 0; k < h[i].n_ports; k++)
			buf_printf(&b, "%s%u", k ? "," : "", h[i].ports[k]);
		buf_printf(&b, "\n");
	}
	if (b.end > b.start && send_all(cc->c.fd, b.data + b.start, b.end - b.start, NULL, 0))
		pr_warn("takeover: handing over the pods' inference failed: %s; set it again",
			strerror(errno));
	buf_free(&b);
	free(h);
}

static void cmd_takeover(struct ctl_conn *cc)
{
	struct agent *a = cc->a;
	struct ucred cred = {};
	socklen_t cl = sizeof(cred);
	int fds[2 * SHUNT_MAX_WORKERS + 2], n, np;

	if (a->draining || a->handed_over) {
		fail(cc, CTL_EXIT_FAILED,
		     "this shuntd is already draining; start the new one after it exits");
		return;
	}
	n = workers_listener_fds(a->workers, fds, 2 * SHUNT_MAX_WORKERS);
	/* The TC listeners go with the node's: an agent that does not know
	 * them closes them as listeners of no address of its own. */
	if (n >= 0) {
		struct tcpod_handover none;
		int tl[2];

		workers_tc_handover(a->workers, &none, 0, tl);
		for (int i = 0; i < 2; i++)
			if (tl[i] >= 0)
				fds[n++] = tl[i];
	}
	if (send_all(cc->c.fd, "ok\n", 3, fds, n > 0 ? (size_t)n : 0)) {
		pr_warn("takeover: sending the listeners failed: %s; not draining",
			strerror(errno));
		return;
	}
	np = takeover_pods(cc);
	takeover_tcpods(cc);
	takeover_infers(cc);
	getsockopt(cc->c.fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
	if (np)
		pr_info("handed %d in-pod pod(s) over with their listeners", np);
	if (cred.pid)
		pr_info("handed %d listener(s) over to pid %d; draining", n, (int)cred.pid);
	else
		pr_info("handed %d listener(s) over to an agent in a PID namespace not visible "
			"here; draining",
			n);
	a->handed_over = true;
}

static const char *const k8s_kind_singular[K8S_NKINDS] = {
	[K8S_SBR] = "SandboxRoute", [K8S_SERVICE] = "Service",	   [K8S_SLICE] = "EndpointSlice",
	[K8S_POD] = "Pod",	    [K8S_SBO] = "SandboxOverride",
};

/* One list of objects that get less than they ask for, in text: a line
 * each, and how many more there are. */
static void status_k8s_list_text(struct ctl_conn *cc, const char *title,
				 const struct k8s_status_list *l, const char *reason)
{
	buf_printf(&cc->out, "  %-18s %zu\n", title, l->total);
	for (size_t i = 0; i < l->n; i++) {
		const struct k8s_status_entry *e = &l->e[i];

		buf_printf(&cc->out, "    %s %s: %zu %s", k8s_kind_singular[e->kind], e->object,
			   e->n,
			   e->kind == K8S_SLICE ? "address(es)"
			   : e->kind == K8S_SBO ? "override(s)"
						: "route(s)");
		if (e->other[0])
			buf_printf(&cc->out, " lost to %s", e->other);
		if (e->detail[0])
			buf_printf(&cc->out, " (%s%s)", reason, e->detail);
		buf_printf(&cc->out, "\n");
	}
	if (l->total > l->n)
		buf_printf(&cc->out, "    ... and %zu more\n", l->total - l->n);
}

/* The same as a JSON array of objects. what: "conflict" (object, lost_to,
 * routes or overrides), "refused" (object, reason, routes, detail),
 * "endpoints" (object, addresses, example), "not_installed" (object,
 * routes or overrides, error). */
static void status_k8s_list_json(struct ctl_conn *cc, const struct k8s_status_list *l,
				 const char *what, const char *reason, bool *first)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct k8s_status_entry *e = &l->e[i];
		const char *count = e->kind == K8S_SLICE ? "addresses"
				    : e->kind == K8S_SBO ? "overrides"
							 : "routes";

		buf_printf(&cc->out, "%s{\"kind\":\"%s\",\"object\":", *first ? "" : ",",
			   k8s_kind_singular[e->kind]);
		*first = false;
		json_str(&cc->out, e->object);
		if (!strcmp(what, "conflict")) {
			buf_printf(&cc->out, ",\"lost_to\":");
			json_str(&cc->out, e->other);
		}
		if (reason)
			buf_printf(&cc->out, ",\"reason\":\"%s\"", reason);
		buf_printf(&cc->out, ",\"%s\":%zu", count, e->n);
		if (strcmp(what, "conflict")) {
			buf_printf(&cc->out, ",\"%s\":",
				   !strcmp(what, "endpoints")	    ? "example"
				   : !strcmp(what, "not_installed") ? "error"
								    : "detail");
			json_str(&cc->out, e->detail);
		}
		buf_printf(&cc->out, "}");
	}
}

/* The "kubernetes" part of status (docs/k8s-contract.md). */
static void status_k8s(struct ctl_conn *cc, bool json)
{
	static struct k8s_status st; /* large; the main loop is the only caller */
	char pfx[ADDR_STR_LEN];
	bool first;

	k8s_get_status(cc->a, &st);
	if (!json) {
		buf_printf(&cc->out,
			   "kubernetes:\n  connected          %s\n  synced             %s\n"
			   "  node               %s\n  routes             %zu\n"
			   "  overrides          %zu (%zu pod(s) without a cgroup yet)\n"
			   "  pod cgroups        %s (%zu directories watched)\n",
			   st.connected ? "yes" : "no", st.synced ? "yes" : "no", st.node,
			   st.routes, st.overrides, st.overrides_unresolved,
			   st.cgroup_watches ? "followed with inotify" : "scanned for",
			   st.cgroup_watches);
		for (int i = 0; i < K8S_NKINDS; i++)
			buf_printf(&cc->out, "  %-18s %zu (resourceVersion %s)\n",
				   k8s_kind_names[i], st.objects[i], st.rv[i][0] ? st.rv[i] : "-");
		buf_printf(&cc->out,
			   "  pods captured      %zu in-pod, %zu with TC (%zu failed, %zu waiting "
			   "for a process, %zu whose inference failed; default %s)\n",
			   st.pods_inpod, st.pods_tc, st.pods_capture_failed,
			   st.pods_capture_pending, st.pods_infer_failed,
			   cc->a->kopts.pod_capture == K8S_CAPTURE_INPOD ? "in-pod" : "node");
		buf_printf(&cc->out, "  last error         %s\n",
			   st.last_error[0] ? st.last_error : "-");
		buf_printf(&cc->out, "  routes per namespace at most %zu\n  sandbox-cidr      ",
			   st.max_routes_per_ns);
		for (size_t i = 0; i < cc->a->kopts.n_sandbox_cidrs; i++)
			buf_printf(&cc->out, " %s",
				   format_prefix(&cc->a->kopts.sandbox_cidrs[i], pfx, sizeof(pfx)));
		buf_printf(&cc->out, "%s\n",
			   cc->a->kopts.n_sandbox_cidrs ? "" : " - (no explicit addresses)");
		status_k8s_list_text(cc, "conflicts", &st.conflicts, "");
		status_k8s_list_text(cc, "over the quota", &st.refused_quota, "");
		status_k8s_list_text(cc, "outside sandbox-cidr", &st.refused_cidr, "address ");
		status_k8s_list_text(cc, "slices ignored", &st.endpoints_ignored, "first ");
		status_k8s_list_text(cc, "not installed", &st.not_installed, "");
		return;
	}
	buf_printf(&cc->out, ",\"kubernetes\":{\"connected\":%s,\"synced\":%s",
		   st.connected ? "true" : "false", st.synced ? "true" : "false");
	for (int i = 0; i < K8S_NKINDS; i++)
		buf_printf(&cc->out, ",\"%s\":%zu", k8s_kind_names[i], st.objects[i]);
	buf_printf(&cc->out,
		   ",\"routes\":%zu,\"overrides\":%zu,\"overrides_unresolved\":%zu,"
		   "\"cgroup_watches\":%zu,\"pods_inpod\":%zu,\"pods_tc\":%zu,"
		   "\"pods_capture_failed\":%zu,\"pods_capture_pending\":%zu,"
		   "\"pods_infer_failed\":%zu,\"pod_capture\":\"%s\",\"node\":",
		   st.routes, st.overrides, st.overrides_unresolved, st.cgroup_watches,
		   st.pods_inpod, st.pods_tc, st.pods_capture_failed, st.pods_capture_pending,
		   st.pods_infer_failed,
		   cc->a->kopts.pod_capture == K8S_CAPTURE_INPOD ? "in-pod" : "node");
	json_str(&cc->out, st.node);
	buf_printf(&cc->out, ",\"last_error\":");
	json_str(&cc->out, st.last_error);
	buf_printf(&cc->out, ",\"resource_versions\":{");
	for (int i = 0; i < K8S_NKINDS; i++) {
		buf_printf(&cc->out, "%s\"%s\":", i ? "," : "", k8s_kind_names[i]);
		json_str(&cc->out, st.rv[i]);
	}
	buf_printf(&cc->out, "},\"max_routes_per_namespace\":%zu,\"sandbox_cidrs\":[",
		   st.max_routes_per_ns);
	for (size_t i = 0; i < cc->a->kopts.n_sandbox_cidrs; i++)
		buf_printf(&cc->out, "%s\"%s\"", i ? "," : "",
			   format_prefix(&cc->a->kopts.sandbox_cidrs[i], pfx, sizeof(pfx)));
	buf_printf(&cc->out, "],\"conflicts\":[");
	first = true;
	status_k8s_list_json(cc, &st.conflicts, "conflict", NULL, &first);
	buf_printf(&cc->out, "],\"conflicts_total\":%zu,\"refused\":[", st.conflicts.total);
	first = true;
	status_k8s_list_json(cc, &st.refused_quota, "refused", "quota", &first);
	status_k8s_list_json(cc, &st.refused_cidr, "refused", "sandbox-cidr", &first);
	buf_printf(&cc->out, "],\"refused_total\":%zu,\"endpoints_ignored\":[",
		   st.refused_quota.total + st.refused_cidr.total);
	first = true;
	status_k8s_list_json(cc, &st.endpoints_ignored, "endpoints", NULL, &first);
	buf_printf(&cc->out, "],\"endpoint_addresses_ignored\":%zu,\"not_installed\":[",
		   st.endpoint_addrs_ignored);
	first = true;
	status_k8s_list_json(cc, &st.not_installed, "not_installed", NULL, &first);
	buf_printf(&cc->out, "],\"routes_not_installed\":%zu,\"overrides_not_installed\":%zu}",
		   st.routes_not_installed, st.overrides_not_installed);
}

/* The proxy's address of each family, or why there is none: a family
 * without one has no steering (routes for it are refused). */
static void status_proxy(struct ctl_conn *cc, bool json)
{
	const struct proxy_opts *po = &cc->a->popts;
	static const uint8_t fams[2] = {SHUNT_FAMILY_V4, SHUNT_FAMILY_V6};
	char s[ADDR_STR_LEN];

	buf_printf(&cc->out, json ? ",\"listen\":{" : "listen:    ");
	for (int f = 0; f < 2; f++) {
		const struct shunt_addr *l = NULL;

		for (int i = 0; i < po->n_listen; i++)
			if (po->listen[i].family == fams[f])
				l = &po->listen[i];
		if (json) {
			buf_printf(&cc->out, "%s\"ipv%u\":", f ? "," : "", fams[f]);
			if (l)
				json_str(&cc->out, format_addr_port(l, s, sizeof(s)));
			else
				buf_printf(&cc->out, "null");
		} else if (l) {
			buf_printf(&cc->out, "%sIPv%u %s", f ? ", " : "", fams[f],
				   format_addr_port(l, s, sizeof(s)));
		} else {
			buf_printf(&cc->out,
				   "%sIPv%u none (no --proxy-addr of this family: not steered)",
				   f ? ", " : "", fams[f]);
		}
	}
	buf_printf(&cc->out, json ? "}" : "\n");
}

/* The capture modes in use: node (the listeners above) and in-pod. */
static void status_capture(struct ctl_conn *cc, bool json, const struct proxy_stats *ps)
{
	unsigned long long node = ps->active - ps->inpod_active - ps->tc_active;
	unsigned long long node_acc = ps->accepted - ps->inpod_accepted - ps->tc_accepted;

	if (json) {
		buf_printf(&cc->out,
			   ",\"capture\":{\"node\":{\"active\":%llu,\"accepted\":%llu},"
			   "\"inpod\":{\"pods\":%llu,\"active\":%llu,\"accepted\":%llu,"
			   "\"port\":%u},\"tc\":{\"pods\":%llu,\"active\":%llu,"
			   "\"accepted\":%llu,\"available\":%s,\"mark\":%u}}",
			   node, node_acc, (unsigned long long)ps->inpod_pods,
			   (unsigned long long)ps->inpod_active,
			   (unsigned long long)ps->inpod_accepted, cc->a->popts.inpod_port,
			   (unsigned long long)ps->tc_pods, (unsigned long long)ps->tc_active,
			   (unsigned long long)ps->tc_accepted,
			   shunt_bpf_tc_prog_fd(&cc->a->bpf) >= 0 ? "true" : "false",
			   cc->a->bpf.tc_mark);
		return;
	}
	buf_printf(&cc->out,
		   "capture:   node: %llu open; in-pod: %llu pod(s), %llu open, %llu accepted; "
		   "TC: %llu pod(s), %llu open, %llu accepted%s (shuntctl pod list)\n",
		   node, (unsigned long long)ps->inpod_pods, (unsigned long long)ps->inpod_active,
		   (unsigned long long)ps->inpod_accepted, (unsigned long long)ps->tc_pods,
		   (unsigned long long)ps->tc_active, (unsigned long long)ps->tc_accepted,
		   shunt_bpf_tc_prog_fd(&cc->a->bpf) >= 0 ? "" : " (not on this kernel)");
}

/* The proxy's workers: how connections reach them, what each holds. */
static void status_workers(struct ctl_conn *cc, bool json, const struct proxy_stats *per, int n)
{
	const char *how = workers_steering(cc->a->workers);

	if (json) {
		buf_printf(&cc->out, ",\"workers\":{\"count\":%d,\"steering\":", n);
		json_str(&cc->out, how);
		buf_printf(&cc->out, ",\"each\":[");
	} else {
		buf_printf(&cc->out, "workers:   %d, connections steered %s\n", n, how);
	}
	for (int i = 0; i < n; i++) {
		unsigned long long act = per[i].active, acc = per[i].accepted,
				   req = per[i].requests;

		if (json)
			buf_printf(&cc->out,
				   "%s{\"active\":%llu,\"accepted\":%llu,\"requests\":%llu}",
				   i ? "," : "", act, acc, req);
		else
			buf_printf(&cc->out,
				   "  worker %d: %llu open, %llu accepted, %llu requests\n", i, act,
				   acc, req);
	}
	if (json)
		buf_printf(&cc->out, "]}");
}

#define STATUS_MAX_LONE 10 /* lone routes named in the text of a warning */

static const char *const cg_relation_names[] = {
	[CG_SAME] = "same",
	[CG_ANCESTOR] = "ancestor",
	[CG_DESCENDANT] = "descendant",
};

static void status_other_progs(struct ctl_conn *cc, bool json, const struct cg_peers *p)
{
	if (json) {
		buf_printf(&cc->out, ",\"cgroup_programs\":{\"programs\":[");
		for (size_t i = 0; i < p->n; i++) {
			const struct cg_prog *c = &p->progs[i];

			buf_printf(&cc->out,
				   "%s{\"hook\":\"connect%c\",\"id\":%u,\"name\":", i ? "," : "",
				   c->family == SHUNT_FAMILY_V4 ? '4' : '6', c->id);
			json_str(&cc->out, c->name);
			buf_printf(&cc->out, ",\"relation\":\"%s\",\"cgroup\":",
				   cg_relation_names[c->relation]);
			json_str(&cc->out, c->path);
			buf_printf(&cc->out, ",\"cgroups\":%u,\"order\":\"%s\"}", c->cgroups,
				   c->before ? "before" : "after");
		}
		buf_printf(&cc->out,
			   "],\"cgroups_walked\":%zu,\"truncated\":%s,\"error\":", p->walked,
			   p->truncated ? "true" : "false");
		json_str(&cc->out, p->err);
		buf_printf(&cc->out, "}");
		return;
	}
	buf_printf(&cc->out, "other cgroup connect programs:%s\n", p->n ? "" : " none");
	for (size_t i = 0; i < p->n; i++) {
		const struct cg_prog *c = &p->progs[i];

		buf_printf(&cc->out, "  connect%c id %-6u %-16s %s shunt's",
			   c->family == SHUNT_FAMILY_V4 ? '4' : '6', c->id,
			   c->name[0] ? c->name : "-", c->before ? "before" : "after");
		if (c->relation == CG_SAME)
			buf_printf(&cc->out, ", attached at shunt's cgroup\n");
		else if (c->relation == CG_ANCESTOR && c->path[0])
			buf_printf(&cc->out, ", attached at a parent cgroup, %s\n", c->path);
		else if (c->relation == CG_ANCESTOR)
			buf_printf(&cc->out,
				   ", attached at a parent cgroup (above the visible tree)\n");
		else if (c->cgroups > 1)
			buf_printf(&cc->out,
				   " for the tasks of %s (a descendant cgroup; also at %u more)\n",
				   c->path, c->cgroups - 1);
		else
			buf_printf(&cc->out, " for the tasks of %s (a descendant cgroup)\n",
				   c->path);
	}
	if (p->truncated)
		buf_printf(&cc->out, "  (looked at the first %zu cgroups below shunt's only)\n",
			   p->walked);
	if (p->err[0])
		buf_printf(&cc->out, "  (not all could be read: %s)\n", p->err);
}

struct lone_routes {
	const struct shunt_route_key *keys;
	const struct shunt_route *vals;
	const bool *lone;
	long n;
};

/* The warning for one family, if a program of it runs before shunt's and
 * some route of it is lone. Returns whether one was written. */
static bool status_warn_family(struct ctl_conn *cc, bool json, bool first, uint8_t fam,
			       const struct cg_peers *p, const struct lone_routes *lr)
{
	char hook = fam == SHUNT_FAMILY_V4 ? '4' : '6';
	char s1[ADDR_STR_LEN], s2[ADDR_STR_LEN];
	long nlone = 0, shown = 0;
	bool any = false;

	if (!cg_peers_before(p, fam))
		return false;
	for (long i = 0; i < lr->n; i++)
		nlone += lr->lone[i] && lr->keys[i].service.family == fam;
	if (!nlone)
		return false;
	if (json) {
		buf_printf(&cc->out, "%s{\"kind\":\"connect_program_before_shunt\",",
			   first ? "" : ",");
		buf_printf(&cc->out, "\"hook\":\"connect%c\",\"programs\":[", hook);
		for (size_t i = 0; i < p->n; i++) {
			if (p->progs[i].family != fam || !p->progs[i].before)
				continue;
			buf_printf(&cc->out, "%s%u", any ? "," : "", p->progs[i].id);
			any = true;
		}
		buf_printf(&cc->out, "],\"routes\":[");
	} else {
		buf_printf(&cc->out,
			   "warning: a cgroup/connect%c program runs before shunt's (above).\n",
			   hook);
		buf_printf(&cc->out,
			   "  If it translates service addresses (a socket-level load balancer\n");
		buf_printf(&cc->out,
			   "  such as Cilium's turns a ClusterIP into an endpoint), shunt sees\n");
		buf_printf(&cc->out,
			   "  only the translated address, and these %ld route(s), which no\n",
			   nlone);
		buf_printf(&cc->out,
			   "  route of the same key and sandbox on another address backs up,\n");
		buf_printf(&cc->out, "  are never hit:\n");
	}
	for (long i = 0; i < lr->n; i++) {
		if (!lr->lone[i] || lr->keys[i].service.family != fam)
			continue;
		format_addr_port(&lr->keys[i].service, s1, sizeof(s1));
		format_addr_port(&lr->vals[i].to, s2, sizeof(s2));
		if (json) {
			buf_printf(&cc->out, "%s{\"service\":", shown ? "," : "");
			json_str(&cc->out, s1);
			buf_printf(&cc->out, ",\"key\":");
			json_str(&cc->out, lr->keys[i].key);
			buf_printf(&cc->out, ",\"to\":");
			json_str(&cc->out, s2);
			buf_printf(&cc->out, "}");
		} else if (shown < STATUS_MAX_LONE) {
			buf_printf(&cc->out, "    %s key %s -> %s\n", s1, lr->keys[i].key, s2);
		}
		shown++;
	}
	if (json) {
		buf_printf(&cc->out,
			   "],\"message\":\"a connect%c program runs before shunt's: ", hook);
		buf_printf(&cc->out, "routes on a virtual address it translates are never hit; ");
		buf_printf(&cc->out, "add routes on the endpoint addresses too\"}");
		return true;
	}
	if (shown > STATUS_MAX_LONE)
		buf_printf(&cc->out, "    ... and %ld more (status -o json lists all)\n",
			   shown - STATUS_MAX_LONE);
	buf_printf(&cc->out,
		   "  Add routes on the endpoint addresses too (Kubernetes mode does);\n");
	buf_printf(&cc->out, "  docs/operations.md, \"Socket-level load balancers\".\n");
	return true;
}

/* The other cgroup connect programs next to shunt's, and a warning for
 * each family in which one runs first while some route has no route on
 * another address to back it up (cgpeers.h; docs/operations.md,
 * "Socket-level load balancers"). */
static void status_cgroup_programs(struct ctl_conn *cc, bool json)
{
	struct agent *a = cc->a;
	struct shunt_route_key *keys = NULL;
	struct shunt_route *vals = NULL;
	struct lone_routes lr = {};
	struct cg_peers p = {};
	long nr = route_table_sorted(a->store.t, &keys, &vals);
	bool *lone = nr > 0 ? calloc((size_t)nr, sizeof(*lone)) : NULL;
	bool warned = false;

	if (cc->job) {
		p = cc->job->peers; /* the job's thread is done with it */
		memset(&cc->job->peers, 0, sizeof(cc->job->peers));
	} else {
		snprintf(p.err, sizeof(p.err), "the cgroup tree was not looked at");
	}
	if (nr > 0 && lone && routes_lone_address(keys, vals, (size_t)nr, lone) >= 0)
		lr = (struct lone_routes){.keys = keys, .vals = vals, .lone = lone, .n = nr};
	else if (nr != 0 && !p.err[0])
		snprintf(p.err, sizeof(p.err), "routes: out of memory");
	status_other_progs(cc, json, &p);
	if (json)
		buf_printf(&cc->out, ",\"warnings\":[");
	warned |= status_warn_family(cc, json, !warned, SHUNT_FAMILY_V4, &p, &lr);
	warned |= status_warn_family(cc, json, !warned, SHUNT_FAMILY_V6, &p, &lr);
	if (json)
		buf_printf(&cc->out, "]");
	cg_peers_free(&p);
	free(lone);
	free(keys);
	free(vals);
}

/* Entries in m: a whole pass of the batched walk metrics uses. */
static long map_entries(const struct shunt_map_info *m)
{
	struct shunt_map_walk w = {0};
	long cnt = 0;
	int ret;

	while ((ret = shunt_bpf_map_walk(m, &w, UINT32_MAX, &cnt)) == 0)
		;
	return ret < 0 ? ret : cnt;
}

/* The count for maps[i]: from the status job when there is one (it
 * counted off the event loop), else counted now. */
static long status_map_entries(const struct ctl_conn *cc, const struct shunt_map_info *maps, int i)
{
	const struct status_job *job = cc->job;

	if (job && i < job->nmaps && job->maps[i].fd == maps[i].fd)
		return job->counts[i];
	return map_entries(&maps[i]);
}

static void cmd_status(struct ctl_conn *cc, const struct ctl_request *r)
{
	struct agent *a = cc->a;
	struct shunt_prog_info progs[SHUNT_NR_PROGS];
	struct shunt_map_info maps[SHUNT_NR_MAPS];
	uint64_t ks[SHUNT_STAT_MAX] = {};
	struct proxy_stats sum, per[SHUNT_MAX_WORKERS];
	int nw = workers_stats(a->workers, &sum, per, SHUNT_MAX_WORKERS);
	const struct proxy_stats *ps = &sum;
	bool json = r->json;
	int np = shunt_bpf_progs(&a->bpf, progs);
	int nm = shunt_bpf_maps(&a->bpf, maps);
	const struct {
		const char *name;
		uint64_t v;
	} pc[] = {
		{"accepted", ps->accepted},
		{"active", ps->active},
		{"unknown", ps->unknown},
		{"refused", ps->refused},
		{"conn_limit", ps->conn_limit},
		{"pod_limit", ps->pod_limit},
		{"pods_limited", ps->pods_limited},
		{"over_limit", ps->over_limit},
		{"pod_unknown", ps->pod_unknown},
		{"upstream_limit", ps->upstream_limit},
		{"pod_upstream_limit", ps->pod_upstream_limit},
		{"requests", ps->requests},
		{"to_sandbox", ps->to_sandbox},
		{"to_baseline", ps->to_baseline},
		{"fallbacks", ps->fallbacks},
		{"errors", ps->errors},
		{"bad_requests", ps->bad_requests},
		{"bad_keys", ps->bad_keys},
		{"tunnels", ps->tunnels},
		{"timeouts", ps->timeouts},
		{"upstream_connects", ps->upstream_connects},
		{"upstream_reused", ps->upstream_reused},
		{"retries", ps->retries},
		{"dst_refused", ps->dst_refused},
		{"h2_conns", ps->h2_conns},
		{"h2_streams", ps->h2_streams},
		{"h2c_declined", ps->h2c_declined},
		{"h2_calmed", ps->h2_calmed},
		{"h2_sessions", ps->h2_sessions},
		{"polls", ps->polls},
		{"poll_hits", ps->poll_hits},
		{"inpod_pods", ps->inpod_pods},
		{"inpod_active", ps->inpod_active},
		{"inpod_accepted", ps->inpod_accepted},
		{"tc_pods", ps->tc_pods},
		{"tc_active", ps->tc_active},
		{"tc_accepted", ps->tc_accepted},
	};
	size_t npc = sizeof(pc) / sizeof(pc[0]);

	shunt_bpf_stats(&a->bpf, ks);
	buf_printf(&cc->out, "ok\n");
	if (!json) {
		buf_printf(&cc->out,
			   "cgroup:    %s\npins:      %s\ncontrol:   %s\nroutes:    %zu\n"
			   "overrides: %zu\n",
			   a->cgroup, a->pin_dir, a->control_path, route_table_count(a->store.t),
			   a->store.novr);
		status_proxy(cc, false);
		status_capture(cc, false, ps);
		status_workers(cc, false, per, nw);
		buf_printf(&cc->out, "\nprograms:\n");
		for (int i = 0; i < np; i++)
			buf_printf(&cc->out, "  %-20s id %-6u %s\n", progs[i].name, progs[i].id,
				   progs[i].attach);
		buf_printf(&cc->out, "maps:\n");
		for (int i = 0; i < nm; i++) {
			long cnt = status_map_entries(cc, maps, i);

			buf_printf(&cc->out, "  %-16s %s/%s  %ld/%u\n", maps[i].name, a->pin_dir,
				   maps[i].name, cnt, maps[i].max_entries);
		}
		buf_printf(&cc->out, "kernel counters:\n");
		for (int i = 0; i < SHUNT_STAT_MAX; i++)
			buf_printf(&cc->out, "  %-18s %llu\n", shunt_stat_names[i],
				   (unsigned long long)ks[i]);
		buf_printf(&cc->out, "proxy counters:\n");
		for (size_t i = 0; i < npc; i++)
			buf_printf(&cc->out, "  %-18s %llu\n", pc[i].name,
				   (unsigned long long)pc[i].v);
		if (a->k8s)
			status_k8s(cc, false);
		status_cgroup_programs(cc, false);
		return;
	}
	buf_printf(&cc->out, "{\"cgroup\":");
	json_str(&cc->out, a->cgroup);
	buf_printf(&cc->out, ",\"pin_dir\":");
	json_str(&cc->out, a->pin_dir);
	buf_printf(&cc->out, ",\"routes\":%zu,\"overrides\":%zu", route_table_count(a->store.t),
		   a->store.novr);
	status_proxy(cc, true);
	status_capture(cc, true, ps);
	status_workers(cc, true, per, nw);
	buf_printf(&cc->out, ",\"programs\":[");
	for (int i = 0; i < np; i++)
		buf_printf(&cc->out, "%s{\"name\":\"%s\",\"id\":%u,\"attach\":\"%s\"}",
			   i ? "," : "", progs[i].name, progs[i].id, progs[i].attach);
	buf_printf(&cc->out, "],\"maps\":[");
	for (int i = 0; i < nm; i++) {
		long cnt = status_map_entries(cc, maps, i);

		buf_printf(&cc->out, "%s{\"name\":\"%s\",\"path\":", i ? "," : "", maps[i].name);
		{
			char path[512];

			snprintf(path, sizeof(path), "%s/%s", a->pin_dir, maps[i].name);
			json_str(&cc->out, path);
		}
		buf_printf(&cc->out, ",\"entries\":%ld,\"max_entries\":%u}", cnt,
			   maps[i].max_entries);
	}
	buf_printf(&cc->out, "],\"kernel\":{");
	for (int i = 0; i < SHUNT_STAT_MAX; i++)
		buf_printf(&cc->out, "%s\"%s\":%llu", i ? "," : "", shunt_stat_names[i],
			   (unsigned long long)ks[i]);
	buf_printf(&cc->out, "},\"proxy\":{");
	for (size_t i = 0; i < npc; i++)
		buf_printf(&cc->out, "%s\"%s\":%llu", i ? "," : "", pc[i].name,
			   (unsigned long long)pc[i].v);
	buf_printf(&cc->out, "}");
	if (a->k8s)
		status_k8s(cc, true);
	status_cgroup_programs(cc, true);
	buf_printf(&cc->out, "}\n");
}

static void *status_job_run(void *arg)
{
	struct status_job *job = arg;

	cg_peers_scan(job->cgroup, job->own4, job->own6, &job->peers);
	for (int i = 0; i < job->nmaps; i++)
		job->counts[i] = map_entries(&job->maps[i]);
	/* A pointer is far below PIPE_BUF: the write is whole, and the pipe
	 * holds thousands (there are at most CTL_MAX_CONNS jobs). Were it
	 * lost, the client would be closed at CTL_TIMEOUT_MS and the job
	 * collected at control_stop(). */
	(void)!write(job->pipe_fd, &job, sizeof(job));
	return NULL;
}

static void status_job_free(struct status_job *job)
{
	cg_peers_free(&job->peers);
	free(job);
}

/* status: look at the cgroup tree on a thread, answer when it is done. */
static void status_start(struct ctl_conn *cc, const struct ctl_request *r)
{
	struct control *ctl = cc->a->ctl;
	struct shunt_prog_info progs[SHUNT_NR_PROGS];
	int np = shunt_bpf_progs(&cc->a->bpf, progs);
	struct status_job *job = calloc(1, sizeof(*job));

	if (!job) {
		fail(cc, CTL_EXIT_FAILED, "out of memory");
		return;
	}
	snprintf(job->cgroup, sizeof(job->cgroup), "%s", cc->a->cgroup);
	for (int i = 0; i < np; i++) {
		if (!strcmp(progs[i].name, "shunt_connect4"))
			job->own4 = progs[i].id;
		else if (!strcmp(progs[i].name, "shunt_connect6"))
			job->own6 = progs[i].id;
	}
	job->nmaps = shunt_bpf_maps(&cc->a->bpf, job->maps);
	if (job->nmaps < 0)
		job->nmaps = 0;
	job->json = r->json;
	job->cc = cc;
	job->pipe_fd = ctl->jobs_pipe[1];
	if (thread_start(&job->thread, status_job_run, job)) {
		/* No thread: the answer without the cgroup tree. */
		free(job);
		cmd_status(cc, r);
		return;
	}
	job->next = ctl->jobs;
	ctl->jobs = job;
	cc->job = job;
}

static void conn_event(struct srv_conn *c, uint32_t events);
static void conn_close(struct ctl_conn *cc);

/* Status jobs done: answer the ones whose client is still there. */
static void jobs_event(struct ev_handler *h, uint32_t events)
{
	struct control *ctl = ((struct jobs_handler *)h)->ctl;
	struct status_job *job, **pp;

	while (read(ctl->jobs_pipe[0], &job, sizeof(job)) == sizeof(job)) {
		pthread_join(job->thread, NULL);
		for (pp = &ctl->jobs; *pp; pp = &(*pp)->next) {
			if (*pp == job) {
				*pp = job->next;
				break;
			}
		}
		if (job->cc) {
			struct ctl_conn *cc = job->cc;
			struct ctl_request r = {.op = CTL_OP_STATUS, .json = job->json};

			cmd_status(cc, &r);
			cc->job = NULL;
			if (cc->out.failed)
				fail(cc, CTL_EXIT_FAILED, "out of memory");
			if (loop_timer_in(&cc->a->loop, &cc->answer, 0))
				conn_close(cc); /* no memory to send it later */
		}
		status_job_free(job);
	}
}

/* SIGHUP over the socket: with the answer the operator sees at once
 * whether the file was taken. */
static void cmd_reload(struct ctl_conn *cc)
{
	struct agent *a = cc->a;
	char msg[768];

	if (!a->config_path || !a->reload) {
		fail(cc, CTL_EXIT_FAILED,
		     "reload: this shuntd runs without --config: there is nothing to reload");
		return;
	}
	pr_info("reload requested on the control socket: reloading %s", a->config_path);
	if (a->reload(a, msg, sizeof(msg))) {
		fail(cc, CTL_EXIT_FAILED, "reload: %s; the previous routes stay in force", msg);
		return;
	}
	buf_printf(&cc->out, "ok\nreloaded %s\n", msg);
}

static void log_refusal(struct control *ctl, const char *msg)
{
	uint64_t now = ctl->a->loop.now_ms;

	if (ctl->refused_any && now - ctl->refused_logged_ms < CTL_REFUSED_LOG_MS) {
		ctl->refused_quiet++;
		return;
	}
	if (ctl->refused_quiet)
		pr_warn("control: refused: %s (and %u more since the last such message)", msg,
			ctl->refused_quiet);
	else
		pr_warn("control: refused: %s", msg);
	ctl->refused_any = true;
	ctl->refused_logged_ms = now;
	ctl->refused_quiet = 0;
}

/* May the caller run op, which changes the agent? If not, the answer and
 * the log say why. */
static bool caller_may_change(struct ctl_conn *cc, enum ctl_op op)
{
	struct control *ctl = cc->a->ctl;
	struct caller c;
	char msg[768];

	caller_check(cc->c.fd, &ctl->self, &c);
	if (c.net_admin) {
		pr_debug("control: %s by pid %d uid %u (CapEff %016llx%s)", ctl_op_name(op), c.pid,
			 c.uid, (unsigned long long)c.capeff,
			 c.pid_verified ? ", pidfd-verified" : "");
		return true;
	}
	if (op == CTL_OP_TAKEOVER && cc->proof_fd >= 0) {
		/* A new agent in another pod (another PID namespace) cannot be
		 * seen from here, so its capabilities cannot be read; it shows
		 * the program it swapped into our links instead. */
		uint32_t id;
		int ret = shunt_bpf_is_successor_prog(&cc->a->bpf, cc->proof_fd, &id);

		if (ret == 1) {
			char who[64];

			if (c.pid)
				snprintf(who, sizeof(who), "pid %d", c.pid);
			else
				snprintf(who, sizeof(who), "in a PID namespace not visible here");
			pr_info("takeover: the caller (%s, uid %u) holds program id %u, which it "
				"attached through our pinned connect4 link in place of ours",
				who, c.uid, id);
			return true;
		}
		snprintf(c.why + strlen(c.why), sizeof(c.why) - strlen(c.why),
			 "; the descriptor it sent is not the program attached through our "
			 "connect4 link");
	}
	snprintf(msg, sizeof(msg), "%s: needs CAP_NET_ADMIN (%s)", ctl_op_name(op), c.why);
	log_refusal(ctl, msg);
	fail(cc, CTL_EXIT_FAILED, "%s", msg);
	return false;
}

static void handle_request(struct ctl_conn *cc, size_t len)
{
	struct ctl_request r;
	char err[512];
	int code = ctl_parse_request(cc->in, len, &r, err, sizeof(err));

	if (code) {
		fail(cc, code, "%s", err);
		return;
	}
	if (cc->a->handed_over) {
		/* The successor reads the maps now: change nothing here. */
		fail(cc, CTL_EXIT_UNREACHABLE, "this shuntd handed over to a new one; try again");
		return;
	}
	if (ctl_op_privileged(r.op) && !caller_may_change(cc, r.op))
		return;
	switch (r.op) {
	case CTL_OP_ROUTE_ADD:
		cmd_route_add(cc, &r);
		break;
	case CTL_OP_ROUTE_DEL:
		cmd_route_del(cc, &r);
		break;
	case CTL_OP_ROUTE_LIST:
		cmd_route_list(cc, &r);
		break;
	case CTL_OP_STATUS:
		status_start(cc, &r);
		break;
	case CTL_OP_OVERRIDE_ADD:
		cmd_override_add(cc, &r);
		break;
	case CTL_OP_OVERRIDE_DEL:
		cmd_override_del(cc, &r);
		break;
	case CTL_OP_OVERRIDE_LIST:
		cmd_override_list(cc, &r);
		break;
	case CTL_OP_TAKEOVER:
		cmd_takeover(cc);
		break;
	case CTL_OP_OVERRIDE_READY:
		cmd_override_ready(cc, &r);
		break;
	case CTL_OP_RELOAD:
		cmd_reload(cc);
		break;
	case CTL_OP_POD_ADD:
		cmd_pod_add(cc, &r);
		break;
	case CTL_OP_POD_ADD_TC:
		cmd_pod_add_tc(cc, &r);
		break;
	case CTL_OP_POD_INFER:
		cmd_pod_infer(cc, &r);
		break;
	case CTL_OP_POD_DEL:
		cmd_pod_del(cc, &r);
		break;
	case CTL_OP_POD_LIST:
		cmd_pod_list(cc, &r);
		break;
	}
	/* A route this request changed is in force for the workers before
	 * the answer goes out. */
	if (view_sync(&cc->a->view, cc->a->store.t, &cc->a->guard))
		pr_warn("routes: no memory for a copy for the workers");
	if (cc->out.failed)
		fail(cc, CTL_EXIT_FAILED, "out of memory");
}

/* A descriptor a client sent: closed so that it cannot stall us. */
static void drop_fd(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct stat st;

	/* Closing the last reference to a TCP socket with SO_LINGER set
	 * waits for its data to leave, in close(): reset it instead. */
	if (!fstat(fd, &st) && S_ISSOCK(st.st_mode))
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Read what the client sent, keeping the first descriptor that came
 * with it (SCM_RIGHTS) and dropping any other. */
static ssize_t conn_recv(struct ctl_conn *cc)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = cc->in + cc->inlen, .iov_len = sizeof(cc->in) - cc->inlen};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cm;
	ssize_t n = recvmsg(cc->c.fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

	if (n < 0)
		return n;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; CMSG_LEN((i + 1) * sizeof(int)) <= cm->cmsg_len; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (cc->proof_fd < 0)
				cc->proof_fd = fd;
			else
				drop_fd(fd);
		}
	}
	return n;
}

static void conn_close(struct ctl_conn *cc)
{
	srv_close(&cc->c);
}

/* The server closes the socket; the connection's own parts go here. */
static void conn_fini(struct srv_conn *c)
{
	struct ctl_conn *cc = (struct ctl_conn *)c;

	loop_timer_cancel(&cc->a->loop, &cc->answer);
	if (cc->proof_fd >= 0)
		drop_fd(cc->proof_fd);
	if (cc->job)
		cc->job->cc = NULL; /* its thread finishes; the answer is dropped */
	buf_free(&cc->out);
}

static void conn_expired(struct srv_conn *c)
{
	(void)c;
	pr_warn("control: a client did not finish its request in %d ms, closing it",
		CTL_TIMEOUT_MS);
}

static void conn_answer(struct timer *t)
{
	struct ctl_conn *cc = (struct ctl_conn *)((char *)t - offsetof(struct ctl_conn, answer));

	conn_event(&cc->c, EPOLLOUT);
}

static void conn_event(struct srv_conn *c, uint32_t events)
{
	struct ctl_conn *cc = (struct ctl_conn *)c;
	ssize_t n;

	if (cc->job)
		return; /* the answer waits for its status job */
	/* Read until the request line is complete. */
	while (!buf_len(&cc->out)) {
		n = conn_recv(cc);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(cc);
			return;
		}
		cc->inlen += (size_t)n;
		if (memchr(cc->in, '\n', cc->inlen)) {
			handle_request(cc,
				       (size_t)((char *)memchr(cc->in, '\n', cc->inlen) - cc->in));
			break;
		}
		if (cc->inlen == sizeof(cc->in)) {
			fail(cc, CTL_EXIT_USAGE, "request too long");
			break;
		}
	}
	if (cc->job)
		return;
	while (buf_len(&cc->out)) {
		n = send(cc->c.fd, buf_head(&cc->out), buf_len(&cc->out),
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			break;
		buf_consume(&cc->out, (size_t)n);
	}
	conn_close(cc);
}

static bool ctl_admit(struct srv *s, const struct shunt_addr *peer)
{
	(void)peer;
	if (s->nconns < CTL_MAX_CONNS)
		return true;
	pr_warn("control: %u connections open, refusing one", s->nconns);
	return false;
}

static void ctl_refuse(struct srv *s, int fd)
{
	static const char busy[] = "error 1\nshuntd: too many control connections "
				   "at once, try again\n";

	(void)s;
	(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	srv_drain_input(fd);
	close(fd);
}

static int conn_init(struct srv_conn *c)
{
	struct ctl_conn *cc = (struct ctl_conn *)c;

	cc->a = ((struct control *)c->srv->owner)->a;
	cc->proof_fd = -1;
	timer_init(&cc->answer, conn_answer);
	return 0;
}

static const struct srv_ops ctl_srv_ops = {
	.name = "control",
	.conn_size = sizeof(struct ctl_conn),
	.timeout_ms = CTL_TIMEOUT_MS,
	.events = EPOLLIN | EPOLLOUT,
	.admit = ctl_admit,
	.refuse = ctl_refuse,
	.init = conn_init,
	.event = conn_event,
	.expired = conn_expired,
	.fini = conn_fini,
};

int control_start(struct agent *a, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct control *ctl;
	char dir[sizeof(sun.sun_path)];
	char *slash;
	int err, fd = -1;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		pr_err("control socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755); /* /run/shunt on a fresh node */
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->a = a;
	ctl->jobs_h.h.fn = jobs_event;
	ctl->jobs_h.ctl = ctl;
	strcpy(ctl->path, path);
	if (pipe2(ctl->jobs_pipe, O_NONBLOCK | O_CLOEXEC) ||
	    loop_add(&a->loop, ctl->jobs_pipe[0], EPOLLIN, &ctl->jobs_h.h)) {
		err = -errno;
		pr_err("control: status jobs pipe: %s", strerror(-err));
		free(ctl);
		return err;
	}
	{
		char warn[256];

		caller_self_init(&ctl->self, warn, sizeof(warn));
		if (warn[0])
			pr_warn("%s", warn);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto fail;
	}
	unlink(path); /* a stale socket from a crashed agent */
	{
		/* Never reachable by more than root before its mode is set. */
		mode_t old = umask(0177);

		err = bind(fd, (struct sockaddr *)&sun, sizeof(sun)) ? -errno : 0;
		umask(old);
	}
	if (!err && a->control_group && chown(path, (uid_t)-1, a->control_gid)) {
		err = -errno;
		pr_err("--control-group %s: chown %s to group %u: %s (shuntd needs CAP_CHOWN, or "
		       "that group among its supplementary groups)",
		       a->control_group, path, (unsigned int)a->control_gid, strerror(-err));
		unlink(path);
		goto fail;
	}
	if (err || chmod(path, a->control_group ? 0660 : 0600) || listen(fd, 64)) {
		err = err ? err : -errno;
		pr_err("control socket %s: %s", path, strerror(-err));
		goto fail;
	}
	err = srv_start(&ctl->srv, &a->loop, fd, &ctl_srv_ops, ctl);
	fd = -1; /* the server's now, also on failure */
	if (err) {
		pr_err("control socket %s: %s", path, strerror(-err));
		unlink(path);
		goto fail;
	}
	if (a->control_group)
		pr_info("control socket %s: group %s (gid %u) may list and read the status", path,
			a->control_group, (unsigned int)a->control_gid);
	a->ctl = ctl;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	loop_del(&a->loop, ctl->jobs_pipe[0]);
	close(ctl->jobs_pipe[0]);
	close(ctl->jobs_pipe[1]);
	free(ctl);
	return err;
}

void control_stop(struct agent *a)
{
	if (!a->ctl)
		return;
	srv_stop(&a->ctl->srv); /* the connections and the listening socket */
	/* Status jobs still looking at the cgroup tree: a moment each. */
	while (a->ctl->jobs) {
		struct status_job *job = a->ctl->jobs;

		a->ctl->jobs = job->next;
		pthread_join(job->thread, NULL);
		status_job_free(job);
	}
	loop_del(&a->loop, a->ctl->jobs_pipe[0]);
	close(a->ctl->jobs_pipe[0]);
	close(a->ctl->jobs_pipe[1]);
	/* After a takeover the path is the successor's socket. */
	if (!a->handed_over)
		unlink(a->ctl->path);
	free(a->ctl);
	a->ctl = NULL;
}
