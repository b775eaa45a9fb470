// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The Kubernetes object decoders (k8s_obj.c) and the translation to routes
 * (k8s_cache.c) over any API answer.
 *
 * Input: lines; each is a kind digit (0 SandboxRoute, 1 Service,
 * 2 EndpointSlice, 3 Pod; '-' + digit deletes that kind's object named in
 * the rest) and a JSON object, as a watch event's "object" would be. The
 * objects go into one cache in order, as a watch would deliver them.
 *
 * Checks: a decoder returns 0 with an object or -EINVAL with a printable
 * message and nothing (-ENOMEM only when memory runs out); a decoded
 * object holds what the contract allows (keys valid and NUL-terminated,
 * ports and counts in range, addresses of a known family); every route
 * the cache reports comes from Kubernetes, has a valid key, a sandbox of
 * the captured address's family and non-zero ports; a full report equals
 * the incremental ones; and once every SandboxRoute is gone no route is
 * left, and every route reported was taken back.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "k8s_cache.h"
#include "routekey.h"
#include "routes.h"

#define NOW 1800000000ULL

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

static void check_obj(enum k8s_kind kind, const void *o)
{
	const struct k8s_meta *m = o;

	FUZZ_CHECK(m->ns && m->name && m->id && *m->ns && *m->name, "meta");
	FUZZ_CHECK(!strchr(m->ns, '/') && !strchr(m->name, '/'), "slash in a name");
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
	} else if (kind == K8S_SERVICE) {
		const struct k8s_service *s = o;

		FUZZ_CHECK(s->ncips <= 2, "%zu ClusterIPs", s->ncips);
		for (size_t i = 0; i < s->ncips; i++)
			check_addr(&s->cips[i], false);
	} else if (kind == K8S_SLICE) {
		const struct k8s_slice *sl = o;

		for (size_t i = 0; i < sl->naddrs; i++)
			check_addr(&sl->addrs[i], false);
	} else {
		const struct k8s_pod *p = o;

		FUZZ_CHECK(p->nips <= K8S_MAX_POD_IPS, "%zu pod IPs", p->nips);
		for (size_t i = 0; i < p->nips; i++)
			check_addr(&p->ips[i], false);
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
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct k8s_cache c;
	struct k8s_op *ops;
	struct route_table *seen = route_table_new();
	const char *p = (const char *)data, *end = p + size;
	char err[256];
	long n;

	if (!seen)
		abort();
	k8s_cache_init(&c);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		bool del = len && p[0] == '-';
		const char *q = p + del;
		size_t qlen = len - del;

		p += len + 1;
		if (!qlen || q[0] < '0' || q[0] > '3')
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
			char id[2 * K8S_NAME_MAX + 2];

			if (k8s_object_id(o, id, sizeof(id)) == 0)
				k8s_cache_del(&c, kind, id);
			json_object_put(o);
			continue;
		}
		memset(err, 0, sizeof(err));
		ret = k8s_decode(kind, o, &obj, err, sizeof(err));
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
		if (size % 3 == 0 && k8s_cache_recompute(&c, NOW) == 0) {
			n = k8s_cache_changes(&c, false, &ops);
			FUZZ_CHECK(n >= 0, "changes: %ld", n);
			check_ops(ops, n);
			for (long i = 0; i < n; i++)
				if (ops[i].del)
					route_table_del(seen, &ops[i].r.k);
				else
					route_table_put(seen, &ops[i].r.k, &ops[i].r.v, NULL);
			free(ops);
		}
	}
	FUZZ_CHECK(k8s_cache_recompute(&c, NOW) == 0, "recompute");
	n = k8s_cache_changes(&c, false, &ops);
	FUZZ_CHECK(n >= 0, "changes");
	check_ops(ops, n);
	for (long i = 0; i < n; i++)
		if (ops[i].del)
			route_table_del(seen, &ops[i].r.k);
		else
			route_table_put(seen, &ops[i].r.k, &ops[i].r.v, NULL);
	free(ops);
	FUZZ_CHECK(route_table_count(seen) == c.nroutes, "%zu routes reported, %zu desired",
		   route_table_count(seen), c.nroutes);

	/* A full report lists exactly what the increments built up. */
	n = k8s_cache_changes(&c, true, &ops);
	FUZZ_CHECK(n >= 0 && (size_t)n == c.nroutes, "full: %ld of %zu", n, c.nroutes);
	for (long i = 0; i < n; i++) {
		const struct shunt_route *v = route_table_get(
			seen, &ops[i].r.k.service, ops[i].r.k.key, strlen(ops[i].r.k.key));

		FUZZ_CHECK(v && !memcmp(v, &ops[i].r.v, sizeof(*v)), "full report differs");
	}
	free(ops);

	/* Every SandboxRoute gone: every route taken back. */
	{
		struct hmap fresh = {};

		k8s_cache_replace(&c, K8S_SBR, &fresh);
	}
	FUZZ_CHECK(k8s_cache_recompute(&c, NOW) == 0, "recompute");
	n = k8s_cache_changes(&c, false, &ops);
	FUZZ_CHECK(n >= 0, "changes");
	for (long i = 0; i < n; i++) {
		FUZZ_CHECK(ops[i].del, "a put with no SandboxRoute left");
		route_table_del(seen, &ops[i].r.k);
	}
	free(ops);
	FUZZ_CHECK(c.nroutes == 0 && c.desired.n == 0, "%zu routes left", c.nroutes);
	FUZZ_CHECK(route_table_count(seen) == 0, "%zu routes never taken back",
		   route_table_count(seen));
	k8s_cache_free(&c);
	route_table_free(seen);
	return 0;
}
