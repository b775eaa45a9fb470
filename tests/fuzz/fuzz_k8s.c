// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The Kubernetes object decoders (k8s_obj.c) and the translation to routes
 * and overrides (k8s_cache.c) over any API answer.
 *
 * Input: lines; each is a kind digit (0 SandboxRoute, 1 Service,
 * 2 EndpointSlice, 3 Pod, 4 SandboxOverride; '-' + digit deletes that
 * kind's object named in the rest) and a JSON object, as a watch event's
 * "object" would be. The objects go into one cache in order, as a watch
 * would deliver them, decoded as on node "n1" (whose pods "uid-0".."uid-7"
 * have cgroups; others not yet), with sandbox addresses allowed in
 * 10.0.0.0/8 and fd00::/8 and at most 64 routes per namespace.
 *
 * Checks: a decoder returns 0 with an object or -EINVAL with a printable
 * message and nothing (-ENOMEM only when memory runs out); a decoded
 * object holds what the contract allows (keys valid and NUL-terminated,
 * ports and counts in range, addresses of a known family, exactly one
 * destination and one target); every route the cache reports comes from
 * Kubernetes, has a valid key, a sandbox of the captured address's family
 * and non-zero ports, and names its SandboxRoute; every override comes
 * from a pod cgroup, has a target of its destination's family and a
 * "k8s:" origin; no namespace has more routes claimed than its quota; the
 * problems listed are well formed; a full report equals the incremental
 * ones (routes and overrides); and once every SandboxRoute and
 * SandboxOverride is gone nothing is left, and everything reported was
 * taken back.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "k8s/cache.h"
#include "proxy/routekey.h"
#include "state/routes.h"
#include "core/util.h"

#define NOW	 1800000000ULL
#define NODE	 "n1"
#define NS_QUOTA 64
#define MAX_SEEN 4096

static void check_msg(const char *err)
{
	FUZZ_CHECK(err[0], "refused without a message");
	for (const char *p = err; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
			   "unprintable byte %#x in '%s'", (unsigned char)*p, err);
}

static void check_addr(const struct shunt_addr *a, bool port)
{
	FUZZ_CHECK(a->family == SHUNT_FAMILY_V4 || a->family == SHUNT_FAMILY_V6, "family %u",
		   a->family);
	FUZZ_CHECK(!port || a->port, "port 0");
}

static void check_selector(const struct k8s_selector *sel)
{
	FUZZ_CHECK(sel->nmatch || sel->nexpr, "empty selector");
	for (size_t i = 0; i < sel->nexpr; i++) {
		const struct k8s_expr *e = &sel->expr[i];
		bool set = e->op == K8S_SEL_IN || e->op == K8S_SEL_NOT_IN;

		FUZZ_CHECK(set == (e->nvalues > 0), "expression %zu values", i);
	}
}

static void check_obj(enum k8s_kind kind, const void *o)
{
	const struct k8s_meta *m = o;

	FUZZ_CHECK(m->ns && m->name && m->id && *m->ns && *m->name, "meta");
	FUZZ_CHECK(!strchr(m->ns, '/') && !strchr(m->name, '/'), "slash in a name");
	FUZZ_CHECK(strlen(m->id) == strlen(m->ns) + 1 + strlen(m->name) &&
			   !strncmp(m->id, m->ns, strlen(m->ns)) &&
			   !strcmp(m->id + strlen(m->ns) + 1, m->name),
		   "id %s is not ns/name", m->id);
	if (kind == K8S_SBR) {
		const struct k8s_sbr *r = o;

		FUZZ_CHECK(r->nkeys >= 1 && r->nkeys <= K8S_MAX_KEYS, "%zu keys", r->nkeys);
		for (size_t i = 0; i < r->nkeys; i++)
			FUZZ_CHECK(memchr(r->keys[i], '\0', sizeof(r->keys[i])) &&
					   rk_validate(r->keys[i]) == 0,
				   "key %zu", i);
		FUZZ_CHECK(r->port, "sandbox port 0");
		FUZZ_CHECK(!r->naddrs != !(r->nmatch || r->nexpr), "selector and addresses");
		for (size_t i = 0; i < r->naddrs; i++)
			check_addr(&r->addrs[i], false);
		for (size_t i = 0; i < r->nports; i++)
			FUZZ_CHECK(r->ports[i], "service port 0");
		FUZZ_CHECK(!r->expires_unix || r->expires_unix > r->created_unix, "deadline");
		FUZZ_CHECK(!r->routes && !r->claimed, "fresh object with routes");
	} else if (kind == K8S_SERVICE) {
		const struct k8s_service *s = o;

		FUZZ_CHECK(s->ncips <= 2, "%zu ClusterIPs", s->ncips);
		for (size_t i = 0; i < s->ncips; i++)
			check_addr(&s->cips[i], false);
	} else if (kind == K8S_SLICE) {
		const struct k8s_slice *sl = o;

		for (size_t i = 0; i < sl->naddrs; i++) {
			check_addr(&sl->addrs[i], false);
			FUZZ_CHECK(!sl->pods[i] || (*sl->pods[i] && !strchr(sl->pods[i], '/')),
				   "endpoint %zu's pod", i);
		}
	} else if (kind == K8S_POD) {
		const struct k8s_pod *p = o;

		FUZZ_CHECK(p->nips <= K8S_MAX_POD_IPS, "%u pod IPs", p->nips);
		for (size_t i = 0; i < p->nips; i++)
			check_addr(&p->ips[i], false);
		FUZZ_CHECK(!p->uid || p->local, "a uid kept for another node's pod");
		FUZZ_CHECK(!(p->ready && p->ended), "ready and ended");
	} else {
		const struct k8s_sbo *s = o;

		check_selector(&s->sel);
		FUZZ_CHECK(!s->dst_service != !s->ndst, "destination: service and addresses");
		FUZZ_CHECK(s->ndst <= K8S_MAX_SBO_ADDRS && s->nto <= K8S_MAX_SBO_ADDRS,
			   "addresses");
		FUZZ_CHECK(!!s->to_service + s->to_sel_set + !!s->nto == 1, "exactly one target");
		if (s->to_sel_set)
			check_selector(&s->to_sel);
		for (size_t i = 0; i < s->ndst; i++)
			check_addr(&s->dst_addrs[i], false);
		for (size_t i = 0; i < s->nto; i++)
			check_addr(&s->to_addrs[i], false);
		FUZZ_CHECK(s->dst_port && s->to_port, "port 0");
		FUZZ_CHECK(!s->expires_unix || s->expires_unix > s->created_unix, "deadline");
	}
}

static void check_ops(const struct k8s_op *ops, long n)
{
	for (long i = 0; i < n; i++) {
		const struct k8s_route *r = &ops[i].r;

		FUZZ_CHECK(r->v.flags & SHUNT_ROUTE_FROM_K8S, "route without FROM_K8S");
		FUZZ_CHECK(memchr(r->k.key, '\0', sizeof(r->k.key)) && rk_validate(r->k.key) == 0,
			   "route key");
		check_addr(&r->k.service, true);
		check_addr(&r->v.to, true);
		FUZZ_CHECK(r->k.service.family == r->v.to.family, "families differ");
		FUZZ_CHECK(ops[i].del == !ops[i].owner, "a put without its owner, a delete with");
		FUZZ_CHECK(!ops[i].owner || strchr(ops[i].owner, '/'), "owner %s", ops[i].owner);
	}
}

static void check_ovr_ops(const struct k8s_ovr_op *ops, long n)
{
	for (long i = 0; i < n; i++) {
		const struct k8s_override *o = &ops[i].o;

		FUZZ_CHECK(o->k.src_kind == SHUNT_SRC_CGROUP && o->k.src_id, "source");
		FUZZ_CHECK(o->v.flags == SHUNT_ROUTE_FROM_K8S, "flags %#x", o->v.flags);
		check_addr(&o->k.dst, true);
		check_addr(&o->v.to, true);
		FUZZ_CHECK(o->k.dst.family == o->v.to.family, "families differ");
		FUZZ_CHECK(memchr(o->v.from, '\0', sizeof(o->v.from)) &&
				   !strncmp(o->v.from, "k8s:", 4),
			   "from");
	}
}

static void check_problems(const struct k8s_cache *c)
{
	struct k8s_problem *v;
	long n = k8s_cache_problems(c, &v);

	FUZZ_CHECK(n >= 0, "problems: %ld", n);
	for (long i = 0; i < n; i++) {
		const struct k8s_problem *p = &v[i];

		FUZZ_CHECK((unsigned)p->why < K8S_WHY_MAX, "why %d", p->why);
		if (p->why == K8S_WHY_ENDPOINTS)
			FUZZ_CHECK(p->kind == K8S_SLICE, "kind %d", p->kind);
		else if (p->why == K8S_WHY_CONFLICT)
			FUZZ_CHECK(p->kind == K8S_SBR || p->kind == K8S_SBO, "kind %d", p->kind);
		else
			FUZZ_CHECK(p->kind == K8S_SBR, "kind %d", p->kind);
		FUZZ_CHECK(strchr(p->id, '/'), "id %s", p->id);
		FUZZ_CHECK((p->why == K8S_WHY_CONFLICT) == (p->other[0] != '\0'), "other");
		FUZZ_CHECK(p->why == K8S_WHY_CIDR || p->n, "%s: n 0", p->id);
		FUZZ_CHECK(memchr(p->detail, '\0', sizeof(p->detail)), "detail");
		FUZZ_CHECK(strcmp(p->id, p->other), "%s lost to itself", p->id);
	}
	free(v);
}

/* No namespace has more routes claimed than the quota. */
static void check_quota(const struct k8s_cache *c)
{
	struct hmap used = {};
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(&c->objs[K8S_SBR], &i); e; e = hmap_next(&c->objs[K8S_SBR], e, &i)) {
		const struct k8s_sbr *r = e->val;
		uintptr_t n = (uintptr_t)hmap_sget(&used, r->m.ns);

		FUZZ_CHECK(!(r->claimed && r->over_quota), "claimed and over the quota");
		if (!r->claimed)
			continue;
		n += r->nroutes;
		FUZZ_CHECK(n <= NS_QUOTA, "namespace %s: %zu routes", r->m.ns, (size_t)n);
		if (hmap_put(&used, r->m.ns, strlen(r->m.ns), (void *)n, NULL))
			abort();
	}
	hmap_free(&used);
}

/* The cgroups of this node's pods: uid-0 .. uid-7 started, others not. */
static int fake_cgroup(void *ud, const char *uid, uint64_t *id)
{
	(void)ud;
	if (strncmp(uid, "uid-", 4) || uid[4] < '0' || uid[4] > '7' || uid[5])
		return -ENOENT;
	*id = 1000 + (uint64_t)(uid[4] - '0');
	return 0;
}

struct seen_ovr {
	struct shunt_override_key k[MAX_SEEN];
	struct shunt_override v[MAX_SEEN];
	size_t n;
};

static long ovr_find(const struct seen_ovr *s, const struct shunt_override_key *k)
{
	for (size_t i = 0; i < s->n; i++)
		if (!memcmp(&s->k[i], k, sizeof(*k)))
			return (long)i;
	return -1;
}

static void ovr_apply(struct seen_ovr *s, const struct k8s_ovr_op *ops, long n)
{
	for (long i = 0; i < n; i++) {
		long j = ovr_find(s, &ops[i].o.k);

		if (ops[i].del) {
			FUZZ_CHECK(j >= 0, "an override deleted that was never reported");
			s->k[j] = s->k[s->n - 1];
			s->v[j] = s->v[s->n - 1];
			s->n--;
			continue;
		}
		if (j < 0) {
			FUZZ_CHECK(s->n < MAX_SEEN, "more overrides than the harness holds");
			j = (long)s->n++;
		}
		s->k[j] = ops[i].o.k;
		s->v[j] = ops[i].o.v;
	}
}

static void take(struct k8s_cache *c, struct route_table *seen, struct seen_ovr *so)
{
	struct k8s_op *ops;
	struct k8s_ovr_op *ovr;
	long n;

	FUZZ_CHECK(k8s_cache_recompute(c, NOW) == 0, "recompute");
	n = k8s_cache_changes(c, false, &ops);
	FUZZ_CHECK(n >= 0, "changes: %ld", n);
	check_ops(ops, n);
	for (long i = 0; i < n; i++)
		if (ops[i].del)
			route_table_del(seen, &ops[i].r.k);
		else
			route_table_put(seen, &ops[i].r.k, &ops[i].r.v, NULL);
	free(ops);
	n = k8s_cache_ovr_changes(c, false, &ovr);
	FUZZ_CHECK(n >= 0, "override changes: %ld", n);
	check_ovr_ops(ovr, n);
	ovr_apply(so, ovr, n);
	free(ovr);
	check_quota(c);
	check_problems(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen_ovr so;
	const struct k8s_decode_opts opts = {.node = NODE};
	struct addr_prefix cidrs[2];
	struct k8s_cache c;
	struct k8s_op *ops;
	struct k8s_ovr_op *ovr;
	struct route_table *seen = route_table_new();
	const char *p = (const char *)data, *end = p + size;
	char err[256];
	long n;

	if (!seen || parse_prefix("10.0.0.0/8", &cidrs[0]) || parse_prefix("fd00::/8", &cidrs[1]))
		abort();
	so.n = 0;
	k8s_cache_init(&c);
	c.node = NODE;
	c.cgroup_of = fake_cgroup;
	c.sandbox_cidrs = cidrs;
	c.n_sandbox_cidrs = 2;
	c.max_ns_routes = NS_QUOTA;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		bool del = len && p[0] == '-';
		const char *q = p + del;
		size_t qlen = len - del;

		p += len + 1;
		if (!qlen || q[0] < '0' || q[0] > '4')
			continue;
		enum k8s_kind kind = (enum k8s_kind)(q[0] - '0');
		char *text = fuzz_dup(q + 1, qlen - 1);
		json_tokener *tok = json_tokener_new_ex(64);
		struct json_object *o;
		void *obj;
		int ret;

		if (!tok)
			abort();
		o = json_tokener_parse_ex(tok, text, (int)(qlen - 1));
		json_tokener_free(tok);
		free(text);
		if (!o)
			continue;
		if (del) {
			char id[K8S_ID_MAX];

			if (k8s_object_id(o, id, sizeof(id)) == 0)
				k8s_cache_del(&c, kind, id);
			json_object_put(o);
			continue;
		}
		memset(err, 0, sizeof(err));
		ret = k8s_decode_ex(kind, o, &opts, &obj, err, sizeof(err));
		json_object_put(o);
		FUZZ_CHECK(ret == 0 || ret == -EINVAL || ret == -ENOMEM, "ret %d", ret);
		if (ret) {
			FUZZ_CHECK(!obj, "object left on error");
			check_msg(err);
			continue;
		}
		check_obj(kind, obj);
		k8s_cache_put(&c, kind, obj);
		/* Now and then translate mid-stream, as the watcher does. */
		if (size % 3 == 0)
			take(&c, seen, &so);
	}
	take(&c, seen, &so);
	FUZZ_CHECK(route_table_count(seen) == c.nroutes, "%zu routes reported, %zu desired",
		   route_table_count(seen), c.nroutes);
	FUZZ_CHECK(so.n == c.ovr_want.n, "%zu overrides reported, %zu desired", so.n,
		   (size_t)c.ovr_want.n);

	/* A full report lists exactly what the increments built up. */
	n = k8s_cache_changes(&c, true, &ops);
	FUZZ_CHECK(n >= 0 && (size_t)n == c.nroutes, "full: %ld of %zu", n, c.nroutes);
	for (long i = 0; i < n; i++) {
		const struct shunt_route *v = route_table_get(
			seen, &ops[i].r.k.service, ops[i].r.k.key, strlen(ops[i].r.k.key));

		FUZZ_CHECK(v && !memcmp(v, &ops[i].r.v, sizeof(*v)), "full report differs");
	}
	free(ops);
	n = k8s_cache_ovr_changes(&c, true, &ovr);
	FUZZ_CHECK(n >= 0 && (size_t)n == so.n, "full overrides: %ld of %zu", n, so.n);
	for (long i = 0; i < n; i++) {
		long j = ovr_find(&so, &ovr[i].o.k);

		FUZZ_CHECK(j >= 0 && !memcmp(&so.v[j], &ovr[i].o.v, sizeof(so.v[j])),
			   "full override report differs");
	}
	free(ovr);

	/* Every SandboxRoute and SandboxOverride gone: everything taken back. */
	{
		struct hmap fresh = {};

		k8s_cache_replace(&c, K8S_SBR, &fresh);
		k8s_cache_replace(&c, K8S_SBO, &fresh);
	}
	FUZZ_CHECK(k8s_cache_recompute(&c, NOW) == 0, "recompute");
	n = k8s_cache_changes(&c, false, &ops);
	FUZZ_CHECK(n >= 0, "changes");
	for (long i = 0; i < n; i++) {
		FUZZ_CHECK(ops[i].del, "a put with no SandboxRoute left");
		route_table_del(seen, &ops[i].r.k);
	}
	free(ops);
	n = k8s_cache_ovr_changes(&c, false, &ovr);
	FUZZ_CHECK(n >= 0, "override changes");
	for (long i = 0; i < n; i++)
		FUZZ_CHECK(ovr[i].del, "an override put with no SandboxOverride left");
	ovr_apply(&so, ovr, n);
	free(ovr);
	FUZZ_CHECK(c.nroutes == 0 && c.desired.n == 0 && c.contested.n == 0, "%zu routes left",
		   c.nroutes);
	FUZZ_CHECK(route_table_count(seen) == 0, "%zu routes never taken back",
		   route_table_count(seen));
	FUZZ_CHECK(so.n == 0 && c.ovr_want.n == 0, "%zu overrides never taken back", so.n);
	FUZZ_CHECK(c.label_keys.n == 0, "%zu label keys with no selector left",
		   (size_t)c.label_keys.n);
	k8s_cache_free(&c);
	route_table_free(seen);
	return 0;
}
