// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The control socket server (protocol in ctl_proto.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "agent.h"
#include "ctl_proto.h"
#include "k8s.h"
#include "log.h"
#include "routekey.h"
#include "source.h"
#include "util.h"

/* A client gets this long to send its line and read the answer, and this
 * many connections are served at once: one that connects and stalls
 * cannot hold descriptors for ever, nor many of them starve the proxy. */
#define CTL_TIMEOUT_MS 5000
#define CTL_MAX_CONNS  32

struct ctl_conn;

struct control {
	struct ev_handler h;
	struct agent *a;
	int fd;
	unsigned int nconns;
	struct ctl_conn *conns; /* oldest last */
	char path[108];
};

struct ctl_conn {
	struct ev_handler h;
	struct agent *a;
	struct ctl_conn *prev, *next;
	uint64_t started_ms;
	int fd;
	char in[CTL_MAX_REQUEST];
	size_t inlen;
	char *out;
	size_t outlen, outpos, outcap;
	int failed; /* could not grow the answer */
};

static void out_printf(struct ctl_conn *cc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void out_printf(struct ctl_conn *cc, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = cc->outcap - cc->outlen;

		va_start(ap, fmt);
		n = vsnprintf(cc->out ? cc->out + cc->outlen : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			cc->outlen += (size_t)n;
			return;
		}
		size_t cap = cc->outcap ? cc->outcap * 2 : 4096;
		while (cap - cc->outlen <= (size_t)n)
			cap *= 2;
		char *o = realloc(cc->out, cap);
		if (!o) {
			cc->failed = 1;
			return;
		}
		cc->out = o;
		cc->outcap = cap;
	}
}

/* A JSON string; the values we print are addresses and validated keys,
 * but escape anyway. */
static void out_json_str(struct ctl_conn *cc, const char *s)
{
	out_printf(cc, "\"");
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			out_printf(cc, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			out_printf(cc, "\\u%04x", ch);
		else
			out_printf(cc, "%c", ch);
	}
	out_printf(cc, "\"");
}

static int fail(struct ctl_conn *cc, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ctl_conn *cc, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cc->outlen = 0;
	out_printf(cc, "error %d\n%s\n", code, msg);
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
		out_printf(cc,
			   "ok\nroute added: %s key=%s -> %s\nnote: a SandboxRoute holds this "
			   "service and key; this route takes effect when that one goes\n",
			   s1, r->key, s2);
		return;
	}
	pr_info("route added: service %s key %s -> %s%s", s1, r->key, s2,
		v.flags & SHUNT_ROUTE_FALLBACK_BASELINE ? " (fallback baseline)" : "");
	out_printf(cc, "ok\nroute added: %s key=%s -> %s\n", s1, r->key, s2);
	if (newly_steered)
		/* Capture happens at connect(): say so, or the first keyed
		 * request on an old keep-alive connection looks like a bug. */
		out_printf(cc,
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
	out_printf(cc, "ok\nroute deleted: %s key=%s\n", s1, r->key);
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
	out_printf(cc, "ok\n");
	if (json)
		out_printf(cc, "[");
	else
		out_printf(cc, "%-24s %-20s %-24s %-9s %-7s %s\n", "SERVICE", "KEY", "TO",
			   "FALLBACK", "SOURCE", "TTL");
	for (long i = 0; i < cnt; i++) {
		const struct shunt_route *v = &vals[i];
		uint64_t left = v->expires_unix > now ? v->expires_unix - now : 0;
		const char *fb = v->flags & SHUNT_ROUTE_FALLBACK_BASELINE ? "baseline" : "error";
		const char *src = route_source(v->flags);

		format_addr_port(&keys[i].service, s1, sizeof(s1));
		format_addr_port(&v->to, s2, sizeof(s2));
		if (!json) {
			out_printf(cc, "%-24s %-20s %-24s %-9s %-7s %s\n", s1, keys[i].key, s2, fb,
				   src,
				   v->expires_unix ? format_duration(left, d, sizeof(d)) : "-");
			continue;
		}
		out_printf(cc, "%s{\"service\":", i ? "," : "");
		out_json_str(cc, s1);
		out_printf(cc, ",\"key\":");
		out_json_str(cc, keys[i].key);
		out_printf(cc, ",\"to\":");
		out_json_str(cc, s2);
		out_printf(cc,
			   ",\"fallback\":\"%s\",\"source\":\"%s\",\"created_unix\":%llu,"
			   "\"expires_unix\":%llu,\"ttl_left\":",
			   fb, src, (unsigned long long)v->created_unix,
			   (unsigned long long)v->expires_unix);
		if (v->expires_unix)
			out_printf(cc, "%llu}", (unsigned long long)left);
		else
			out_printf(cc, "null}");
	}
	if (json)
		out_printf(cc, "]\n");
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
	out_printf(cc, "ok\noverride added: from %s to %s -> %s\n", r->from, s1, s2);
	out_printf(cc, "note: connections opened from now on are redirected; open ones keep "
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
	out_printf(cc, "ok\noverride deleted: from %s to %s\n", r->from, s1);
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
	out_printf(cc, "ok\n");
	if (r->json)
		out_printf(cc, "[");
	else
		out_printf(cc, "%-36s %-24s %-24s %-7s %s\n", "FROM", "DST", "TO", "SOURCE", "TTL");
	for (size_t i = 0; i < st->novr; i++) {
		const struct shunt_override *v = &o[i].v;
		uint64_t left = v->expires_unix > now ? v->expires_unix - now : 0;
		const char *src = v->flags & SHUNT_ROUTE_FROM_K8S    ? "k8s"
				  : v->flags & SHUNT_ROUTE_FROM_FILE ? "file"
								     : "api";

		format_addr_port(&o[i].k.dst, s1, sizeof(s1));
		format_addr_port(&v->to, s2, sizeof(s2));
		if (!r->json) {
			out_printf(cc, "%-36s %-24s %-24s %-7s %s\n", v->from, s1, s2, src,
				   v->expires_unix ? format_duration(left, d, sizeof(d)) : "-");
			continue;
		}
		out_printf(cc, "%s{\"from\":", i ? "," : "");
		out_json_str(cc, v->from);
		out_printf(cc, ",\"%s\":%llu,\"dst\":",
			   o[i].k.src_kind == SHUNT_SRC_NETNS ? "netns_cookie" : "cgroup_id",
			   (unsigned long long)o[i].k.src_id);
		out_json_str(cc, s1);
		out_printf(cc, ",\"to\":");
		out_json_str(cc, s2);
		out_printf(cc,
			   ",\"source\":\"%s\",\"created_unix\":%llu,\"expires_unix\":%llu,"
			   "\"ttl_left\":",
			   src, (unsigned long long)v->created_unix,
			   (unsigned long long)v->expires_unix);
		if (v->expires_unix)
			out_printf(cc, "%llu}", (unsigned long long)left);
		else
			out_printf(cc, "null}");
	}
	if (r->json)
		out_printf(cc, "]\n");
	free(o);
}

/* A new agent asks for the listening sockets: send them with the answer
 * and let the main loop start draining. */
static void cmd_takeover(struct ctl_conn *cc)
{
	struct agent *a = cc->a;
	static const char ok[] = "ok\n";
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2)];
		struct cmsghdr align;
	} u = {};
	struct iovec iov = {.iov_base = (void *)ok, .iov_len = sizeof(ok) - 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct ucred cred = {};
	socklen_t cl = sizeof(cred);
	struct cmsghdr *cm;
	int fds[2], n;

	if (a->draining || a->handed_over) {
		fail(cc, CTL_EXIT_FAILED,
		     "this shuntd is already draining; start the new one after it exits");
		return;
	}
	n = proxy_listener_fds(a->proxy, fds);
	if (n > 0) {
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
	}
	if (sendmsg(cc->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)iov.iov_len) {
		pr_warn("takeover: sending the listeners failed: %s; not draining",
			strerror(errno));
		return;
	}
	getsockopt(cc->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
	pr_info("handed %d listener(s) over to pid %d; draining", n, (int)cred.pid);
	a->handed_over = true;
}

/* The "kubernetes" part of status (docs/k8s-contract.md). */
static void status_k8s(struct ctl_conn *cc, bool json)
{
	struct k8s_status st;

	k8s_get_status(cc->a, &st);
	if (!json) {
		out_printf(cc,
			   "kubernetes:\n  connected          %s\n  synced             %s\n"
			   "  node               %s\n  routes             %zu\n"
			   "  overrides          %zu (%zu pod(s) without a cgroup yet)\n",
			   st.connected ? "yes" : "no", st.synced ? "yes" : "no", st.node,
			   st.routes, st.overrides, st.overrides_unresolved);
		for (int i = 0; i < K8S_NKINDS; i++)
			out_printf(cc, "  %-18s %zu (resourceVersion %s)\n", k8s_kind_names[i],
				   st.objects[i], st.rv[i][0] ? st.rv[i] : "-");
		out_printf(cc, "  last error         %s\n", st.last_error[0] ? st.last_error : "-");
		return;
	}
	out_printf(cc, ",\"kubernetes\":{\"connected\":%s,\"synced\":%s",
		   st.connected ? "true" : "false", st.synced ? "true" : "false");
	for (int i = 0; i < K8S_NKINDS; i++)
		out_printf(cc, ",\"%s\":%zu", k8s_kind_names[i], st.objects[i]);
	out_printf(cc, ",\"routes\":%zu,\"overrides\":%zu,\"overrides_unresolved\":%zu,\"node\":",
		   st.routes, st.overrides, st.overrides_unresolved);
	out_json_str(cc, st.node);
	out_printf(cc, ",\"last_error\":");
	out_json_str(cc, st.last_error);
	out_printf(cc, ",\"resource_versions\":{");
	for (int i = 0; i < K8S_NKINDS; i++) {
		out_printf(cc, "%s\"%s\":", i ? "," : "", k8s_kind_names[i]);
		out_json_str(cc, st.rv[i]);
	}
	out_printf(cc, "}}");
}

static void cmd_status(struct ctl_conn *cc, const struct ctl_request *r)
{
	struct agent *a = cc->a;
	struct shunt_prog_info progs[SHUNT_NR_PROGS];
	struct shunt_map_info maps[SHUNT_NR_MAPS];
	uint64_t ks[SHUNT_STAT_MAX] = {};
	const struct proxy_stats *ps = proxy_stats(a->proxy);
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
	};
	size_t npc = sizeof(pc) / sizeof(pc[0]);

	shunt_bpf_stats(&a->bpf, ks);
	out_printf(cc, "ok\n");
	if (!json) {
		out_printf(cc,
			   "cgroup:    %s\npins:      %s\ncontrol:   %s\nroutes:    %zu\n"
			   "overrides: %zu\n\n",
			   a->cgroup, a->pin_dir, a->control_path, route_table_count(a->store.t),
			   a->store.novr);
		out_printf(cc, "programs:\n");
		for (int i = 0; i < np; i++)
			out_printf(cc, "  %-20s id %-6u %s\n", progs[i].name, progs[i].id,
				   progs[i].attach);
		out_printf(cc, "maps:\n");
		for (int i = 0; i < nm; i++) {
			long cnt = shunt_bpf_map_count(maps[i].fd, 128);

			out_printf(cc, "  %-16s %s/%s  %ld/%u\n", maps[i].name, a->pin_dir,
				   maps[i].name, cnt, maps[i].max_entries);
		}
		out_printf(cc, "kernel counters:\n");
		for (int i = 0; i < SHUNT_STAT_MAX; i++)
			out_printf(cc, "  %-18s %llu\n", shunt_stat_names[i],
				   (unsigned long long)ks[i]);
		out_printf(cc, "proxy counters:\n");
		for (size_t i = 0; i < npc; i++)
			out_printf(cc, "  %-18s %llu\n", pc[i].name, (unsigned long long)pc[i].v);
		if (a->k8s)
			status_k8s(cc, false);
		return;
	}
	out_printf(cc, "{\"cgroup\":");
	out_json_str(cc, a->cgroup);
	out_printf(cc, ",\"pin_dir\":");
	out_json_str(cc, a->pin_dir);
	out_printf(cc, ",\"routes\":%zu,\"overrides\":%zu,\"programs\":[",
		   route_table_count(a->store.t), a->store.novr);
	for (int i = 0; i < np; i++)
		out_printf(cc, "%s{\"name\":\"%s\",\"id\":%u,\"attach\":\"%s\"}", i ? "," : "",
			   progs[i].name, progs[i].id, progs[i].attach);
	out_printf(cc, "],\"maps\":[");
	for (int i = 0; i < nm; i++) {
		long cnt = shunt_bpf_map_count(maps[i].fd, 128);

		out_printf(cc, "%s{\"name\":\"%s\",\"path\":", i ? "," : "", maps[i].name);
		{
			char path[512];

			snprintf(path, sizeof(path), "%s/%s", a->pin_dir, maps[i].name);
			out_json_str(cc, path);
		}
		out_printf(cc, ",\"entries\":%ld,\"max_entries\":%u}", cnt, maps[i].max_entries);
	}
	out_printf(cc, "],\"kernel\":{");
	for (int i = 0; i < SHUNT_STAT_MAX; i++)
		out_printf(cc, "%s\"%s\":%llu", i ? "," : "", shunt_stat_names[i],
			   (unsigned long long)ks[i]);
	out_printf(cc, "},\"proxy\":{");
	for (size_t i = 0; i < npc; i++)
		out_printf(cc, "%s\"%s\":%llu", i ? "," : "", pc[i].name,
			   (unsigned long long)pc[i].v);
	out_printf(cc, "}");
	if (a->k8s)
		status_k8s(cc, true);
	out_printf(cc, "}\n");
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
		cmd_status(cc, &r);
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
	}
	if (cc->failed)
		fail(cc, CTL_EXIT_FAILED, "out of memory");
}

/* Read and drop what the client sent beyond its request: closing a unix
 * socket with unread bytes resets the peer, which would lose the answer
 * (a too-long request, a busy refusal). Bounded: a client that keeps
 * writing gets its reset. */
static void drain_input(int fd)
{
	char junk[4096];

	for (int i = 0; i < 16; i++)
		if (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
			return;
}

static void conn_close(struct ctl_conn *cc)
{
	struct control *ctl = cc->a->ctl;

	if (cc->prev)
		cc->prev->next = cc->next;
	else
		ctl->conns = cc->next;
	if (cc->next)
		cc->next->prev = cc->prev;
	ctl->nconns--;
	loop_del(&cc->a->loop, cc->fd);
	drain_input(cc->fd);
	close(cc->fd);
	free(cc->out);
	free(cc);
}

static void conn_event(struct ev_handler *h, uint32_t events)
{
	struct ctl_conn *cc = (struct ctl_conn *)h;
	ssize_t n;

	/* Read until the request line is complete. */
	while (!cc->outlen) {
		n = read(cc->fd, cc->in + cc->inlen, sizeof(cc->in) - cc->inlen);
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
	while (cc->outpos < cc->outlen) {
		n = send(cc->fd, cc->out + cc->outpos, cc->outlen - cc->outpos,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			break;
		cc->outpos += (size_t)n;
	}
	conn_close(cc);
}

static void ctl_event(struct ev_handler *h, uint32_t events)
{
	struct control *ctl = (struct control *)h;

	for (;;) {
		int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ctl_conn *cc;

		if (fd < 0)
			return;
		if (ctl->nconns >= CTL_MAX_CONNS) {
			static const char busy[] = "error 1\nshuntd: too many control connections "
						   "at once, try again\n";

			pr_warn("control: %u connections open, refusing one", ctl->nconns);
			(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			drain_input(fd);
			close(fd);
			continue;
		}
		cc = calloc(1, sizeof(*cc));
		if (!cc) {
			close(fd);
			continue;
		}
		cc->h.fn = conn_event;
		cc->a = ctl->a;
		cc->fd = fd;
		cc->started_ms = ctl->a->loop.now_ms;
		if (loop_add(&ctl->a->loop, fd, EPOLLIN | EPOLLOUT | EPOLLET, &cc->h)) {
			close(fd);
			free(cc);
			continue;
		}
		cc->next = ctl->conns;
		if (cc->next)
			cc->next->prev = cc;
		ctl->conns = cc;
		ctl->nconns++;
	}
}

int control_start(struct agent *a, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct control *ctl;
	char dir[sizeof(sun.sun_path)];
	char *slash;
	int err;

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
	ctl->h.fn = ctl_event;
	ctl->a = a;
	strcpy(ctl->path, path);
	ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd < 0) {
		err = -errno;
		free(ctl);
		return err;
	}
	unlink(path); /* a stale socket from a crashed agent */
	if (bind(ctl->fd, (struct sockaddr *)&sun, sizeof(sun)) || chmod(path, 0600) ||
	    listen(ctl->fd, 64) || loop_add(&a->loop, ctl->fd, EPOLLIN | EPOLLET, &ctl->h)) {
		err = -errno;
		pr_err("control socket %s: %s", path, strerror(-err));
		close(ctl->fd);
		free(ctl);
		return err;
	}
	a->ctl = ctl;
	return 0;
}

void control_tick(struct agent *a)
{
	struct ctl_conn *cc, *next;

	if (!a->ctl)
		return;
	for (cc = a->ctl->conns; cc; cc = next) {
		next = cc->next;
		if (a->loop.now_ms - cc->started_ms >= CTL_TIMEOUT_MS) {
			pr_warn("control: a client did not finish its request in %d ms, closing it",
				CTL_TIMEOUT_MS);
			conn_close(cc);
		}
	}
}

void control_stop(struct agent *a)
{
	if (!a->ctl)
		return;
	while (a->ctl->conns)
		conn_close(a->ctl->conns);
	loop_del(&a->loop, a->ctl->fd);
	close(a->ctl->fd);
	/* After a takeover the path is the successor's socket. */
	if (!a->handed_over)
		unlink(a->ctl->path);
	free(a->ctl);
	a->ctl = NULL;
}
