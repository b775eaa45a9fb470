// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>

#include "core/log.h"
#include "kernel/source.h"
#include "state/store.h"
#include "core/util.h"

size_t store_ovr_dst_count(const struct store *s, const struct shunt_addr *dst)
{
	size_t n = 0;

	for (size_t i = 0; i < s->novr; i++)
		n += !memcmp(&s->ovr[i].k.dst, dst, sizeof(*dst));
	return n;
}

/* Tell the kernel how many routes and overrides name svc; none stops its
 * capture. */
static int sync_service(struct store *s, const struct shunt_addr *svc)
{
	struct shunt_service val = {};

	if (s->services_fd < 0)
		return 0;
	val.routes = (__u32)route_table_service_count(s->t, svc);
	val.overrides = (__u32)store_ovr_dst_count(s, svc);
	if (!val.routes && !val.overrides)
		return bpf_map_delete_elem(s->services_fd, svc) && errno != ENOENT ? -errno : 0;
	return bpf_map_update_elem(s->services_fd, svc, &val, BPF_ANY) ? -errno : 0;
}

static int sync_all_services(struct store *s)
{
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	long cnt = route_table_sorted(s->t, &keys, &vals);
	int err = 0;

	if (cnt < 0)
		return (int)cnt;
	for (long i = 0; i < cnt && !err; i++)
		err = sync_service(s, &keys[i].service);
	for (size_t i = 0; i < s->novr && !err; i++)
		err = sync_service(s, &s->ovr[i].k.dst);
	free(keys);
	free(vals);
	return err;
}

/* Drop services no route names any more (left by an earlier agent). */
static int prune_services(struct store *s)
{
	struct shunt_addr key, next;
	void *prev = NULL;

	if (s->services_fd < 0)
		return 0;
	while (bpf_map_get_next_key(s->services_fd, prev, &next) == 0) {
		key = next;
		if (!route_table_service_count(s->t, &key) && !store_ovr_dst_count(s, &key)) {
			if (bpf_map_delete_elem(s->services_fd, &key) && errno != ENOENT)
				return -errno;
			continue; /* restart from prev: key is gone */
		}
		prev = &key;
	}
	return 0;
}

static int ovr_find(const struct store *s, const struct shunt_override_key *k)
{
	for (size_t i = 0; i < s->novr; i++)
		if (!memcmp(&s->ovr[i].k, k, sizeof(*k)))
			return (int)i;
	return -1;
}

/* Into the array only (recovery, and the second half of an add). */
static int ovr_put(struct store *s, const struct shunt_override_key *k,
		   const struct shunt_override *v)
{
	int i = ovr_find(s, k);

	if (i < 0) {
		if (s->novr == s->ovr_cap) {
			size_t cap = s->ovr_cap ? s->ovr_cap * 2 : 16;
			struct override_entry *o = realloc(s->ovr, cap * sizeof(*o));

			if (!o)
				return -ENOMEM;
			s->ovr = o;
			s->ovr_cap = cap;
		}
		i = (int)s->novr++;
		s->ovr[i].k = *k;
	}
	s->ovr[i].v = *v;
	return 0;
}

static int recover_overrides(struct store *s)
{
	struct shunt_override_key key, next;
	struct shunt_override val;
	void *prev = NULL;
	int err;

	while (bpf_map_get_next_key(s->overrides_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(s->overrides_fd, &key, &val))
			continue;
		val.from[sizeof(val.from) - 1] = '\0';
		err = ovr_put(s, &key, &val);
		if (err)
			return err;
	}
	return 0;
}

int store_route_allowed(const struct store *s, const struct shunt_route_key *k,
			const struct shunt_route *v, char *err, size_t errlen)
{
	enum dst_class c;
	char a[ADDR_STR_LEN];

	if (!dstguard_family_served(s->guard, k->service.family))
		return err_printf(err, errlen, -EAFNOSUPPORT,
				  "service %s is IPv%u and the proxy has no IPv%u address "
				  "(--proxy-addr): it cannot be steered",
				  format_addr_port(&k->service, a, sizeof(a)), k->service.family,
				  k->service.family);
	/* The captured service too: the proxy dials it for every request
	 * without a route. */
	c = dstguard_check(s->guard, &k->service);
	if (c != DST_OK)
		return dstguard_refusal(err, errlen, "service", &k->service, c);
	c = dstguard_check(s->guard, &v->to);
	if (c != DST_OK)
		return dstguard_refusal(err, errlen, "sandbox", &v->to, c);
	return 0;
}

int store_ovr_allowed(const struct store *s, const struct shunt_override_key *k,
		      const struct shunt_override *v, char *err, size_t errlen)
{
	enum dst_class c = dstguard_check(s->guard, &v->to);

	(void)k;
	/* The destination a pod asked for is its own business (the kernel
	 * rewrites its connect(), no proxy is involved); where it is sent
	 * instead is ours. */
	if (c != DST_OK)
		return dstguard_refusal(err, errlen, "override target", &v->to, c);
	return 0;
}

/* Drop what the guard refuses now from what an earlier agent left. */
static void recover_check(struct store *s)
{
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	long cnt = route_table_sorted(s->t, &keys, &vals);
	char err[256];

	for (long i = 0; i < cnt; i++) {
		if (!store_route_allowed(s, &keys[i], &vals[i], err, sizeof(err)))
			continue;
		pr_warn("recovered route key %s dropped: %s", keys[i].key, err);
		route_table_del(s->t, &keys[i]);
		if (s->routes_fd >= 0)
			bpf_map_delete_elem(s->routes_fd, &keys[i]);
	}
	if (cnt > 0) {
		free(keys);
		free(vals);
	}
	for (size_t i = 0; i < s->novr;) {
		if (!store_ovr_allowed(s, &s->ovr[i].k, &s->ovr[i].v, err, sizeof(err))) {
			i++;
			continue;
		}
		pr_warn("recovered override from %s dropped: %s", s->ovr[i].v.from, err);
		if (s->overrides_fd >= 0)
			bpf_map_delete_elem(s->overrides_fd, &s->ovr[i].k);
		s->ovr[i] = s->ovr[--s->novr];
	}
}

long store_init(struct store *s, int routes_fd, int services_fd, int overrides_fd,
		uint64_t now_unix, const struct dstguard *guard)
{
	struct shunt_route_key key, next;
	struct shunt_route val;
	void *prev = NULL;
	long n;
	int err;

	memset(s, 0, sizeof(*s));
	s->max_routes = SHUNT_MAX_ROUTES;
	s->routes_fd = routes_fd;
	s->services_fd = services_fd;
	s->overrides_fd = overrides_fd;
	s->guard = guard;
	s->t = route_table_new();
	s->shadow = route_table_new();
	if (!s->t || !s->shadow)
		return -ENOMEM;
	if (overrides_fd >= 0) {
		err = recover_overrides(s);
		if (err)
			return err;
	}
	if (routes_fd < 0)
		return 0;

	while (bpf_map_get_next_key(routes_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(routes_fd, &key, &val))
			continue; /* deleted under us */
		err = route_table_put(s->t, &key, &val, NULL);
		if (err)
			return err;
	}
	recover_check(s);
	n = (long)route_table_count(s->t);
	/* The services map is derived state: bring it in line with the
	 * routes without ever removing a service that is still steered. */
	store_expire(s, now_unix);
	err = sync_all_services(s);
	if (!err)
		err = prune_services(s);
	if (err)
		return err;
	return n;
}

void store_free(struct store *s)
{
	route_table_free(s->t);
	s->t = NULL;
	route_table_free(s->shadow);
	s->shadow = NULL;
	free(s->ovr);
	s->ovr = NULL;
	s->novr = s->ovr_cap = 0;
}

static void ovr_remove_at(struct store *s, size_t i);

int store_ovr_add(struct store *s, const struct shunt_override_key *k,
		  const struct shunt_override *v, char *err, size_t errlen)
{
	int ret, at = ovr_find(s, k);

	/* A SandboxOverride's is the watcher's to change. */
	if (at >= 0 && (s->ovr[at].v.flags & SHUNT_ROUTE_FROM_K8S) &&
	    !(v->flags & SHUNT_ROUTE_FROM_K8S)) {
		snprintf(err, errlen, "a SandboxOverride holds this source and destination (%s)",
			 s->ovr[at].v.from);
		return -EPERM;
	}
	ret = store_ovr_allowed(s, k, v, err, errlen);
	if (ret)
		return ret;
	if (at < 0 && s->novr >= SHUNT_MAX_OVERRIDES) {
		snprintf(err, errlen, "override table full (%u overrides, the limit)",
			 SHUNT_MAX_OVERRIDES);
		return -ENOSPC;
	}
	if (s->overrides_fd >= 0 && bpf_map_update_elem(s->overrides_fd, k, v, BPF_ANY)) {
		ret = -errno;
		if (ret == -E2BIG || ret == -ENOMEM || ret == -ENOSPC)
			snprintf(err, errlen, "override table full (%u overrides, the limit)",
				 SHUNT_MAX_OVERRIDES);
		else
			snprintf(err, errlen, "update shunt_overrides: %s", strerror(-ret));
		return ret;
	}
	ret = ovr_put(s, k, v);
	if (ret) {
		snprintf(err, errlen, "out of memory");
		if (s->overrides_fd >= 0)
			bpf_map_delete_elem(s->overrides_fd, k);
		return ret;
	}
	/* The override is in the map before the services entry counts it,
	 * so the first connect() it applies to finds it. */
	ret = sync_service(s, &k->dst);
	if (ret) {
		snprintf(err, errlen, "update shunt_services: %s", strerror(-ret));
		at = ovr_find(s, k);
		if (at >= 0)
			ovr_remove_at(s, (size_t)at);
	}
	return ret;
}

static void ovr_remove_at(struct store *s, size_t i)
{
	struct shunt_addr dst = s->ovr[i].k.dst;

	if (s->overrides_fd >= 0)
		bpf_map_delete_elem(s->overrides_fd, &s->ovr[i].k);
	s->ovr[i] = s->ovr[--s->novr];
	sync_service(s, &dst);
}

int store_ovr_del(struct store *s, const char *from, const struct shunt_addr *dst)
{
	for (size_t i = 0; i < s->novr; i++)
		if (!strcmp(s->ovr[i].v.from, from) &&
		    !memcmp(&s->ovr[i].k.dst, dst, sizeof(*dst))) {
			if (s->ovr[i].v.flags & SHUNT_ROUTE_FROM_K8S)
				return -EPERM;
			ovr_remove_at(s, i);
			return 0;
		}
	return -ENOENT;
}

int store_ovr_k8s_del(struct store *s, const struct shunt_override_key *k)
{
	int at = ovr_find(s, k);

	if (at < 0 || !(s->ovr[at].v.flags & SHUNT_ROUTE_FROM_K8S))
		return -ENOENT;
	ovr_remove_at(s, (size_t)at);
	return 0;
}

int store_add(struct store *s, const struct shunt_route_key *k, const struct shunt_route *v,
	      char *err, size_t errlen)
{
	int ret = store_route_allowed(s, k, v, err, errlen);

	if (ret)
		return ret;
	if (s->routes_fd >= 0 && bpf_map_update_elem(s->routes_fd, k, v, BPF_ANY)) {
		ret = -errno;
		if (ret == -E2BIG || ret == -ENOMEM || ret == -ENOSPC)
			snprintf(err, errlen,
				 "route table full (%u routes, the limit: --max-routes)",
				 s->max_routes);
		else
			snprintf(err, errlen, "update shunt_routes: %s", strerror(-ret));
		return ret;
	}
	ret = route_table_put(s->t, k, v, NULL);
	if (ret) {
		snprintf(err, errlen, "out of memory");
		if (s->routes_fd >= 0)
			bpf_map_delete_elem(s->routes_fd, k);
		return ret;
	}
	/* The route is in the index before capture starts, so the first
	 * captured request already finds it. */
	ret = sync_service(s, &k->service);
	if (ret) {
		snprintf(err, errlen, "update shunt_services: %s", strerror(-ret));
		store_del(s, k);
	}
	return ret;
}

int store_del(struct store *s, const struct shunt_route_key *k)
{
	int ret = route_table_del(s->t, k);

	if (ret)
		return ret;
	if (s->routes_fd >= 0)
		bpf_map_delete_elem(s->routes_fd, k);
	return sync_service(s, &k->service);
}

/* A shadowed route keeps its own deadline. */
static int shadow_expire(struct store *s, uint64_t now_unix)
{
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	long cnt = route_table_sorted(s->shadow, &keys, &vals);
	int removed = 0;

	if (cnt <= 0)
		return 0;
	for (long i = 0; i < cnt; i++)
		if (vals[i].expires_unix && vals[i].expires_unix <= now_unix)
			removed += route_table_del(s->shadow, &keys[i]) == 0;
	free(keys);
	free(vals);
	return removed;
}

static const struct shunt_route *route_get(const struct route_table *t,
					   const struct shunt_route_key *k)
{
	return route_table_get(t, &k->service, k->key, strnlen(k->key, sizeof(k->key)));
}

int store_add_local(struct store *s, const struct shunt_route_key *k, const struct shunt_route *v,
		    bool *shadowed, char *err, size_t errlen)
{
	const struct shunt_route *cur = route_get(s->t, k);
	int ret;

	*shadowed = cur && (cur->flags & SHUNT_ROUTE_FROM_K8S);
	if (!*shadowed)
		return store_add(s, k, v, err, errlen);
	/* Kept aside, it comes back later: refuse it now, not then. */
	ret = store_route_allowed(s, k, v, err, errlen);
	if (ret)
		return ret;
	if (route_table_put(s->shadow, k, v, NULL)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int store_del_local(struct store *s, const struct shunt_route_key *k)
{
	const struct shunt_route *cur = route_get(s->t, k);

	if (route_table_del(s->shadow, k) == 0)
		return 0;
	if (cur && (cur->flags & SHUNT_ROUTE_FROM_K8S))
		return -EPERM;
	return store_del(s, k);
}

int store_k8s_put(struct store *s, const struct shunt_route_key *k, const struct shunt_route *v,
		  char *err, size_t errlen)
{
	const struct shunt_route *cur = route_get(s->t, k);
	bool hid = false;
	int ret;

	if (cur && !(cur->flags & SHUNT_ROUTE_FROM_K8S)) {
		if (route_table_put(s->shadow, k, cur, NULL)) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		hid = true;
	}
	ret = store_add(s, k, v, err, errlen);
	if (ret && hid)
		route_table_del(s->shadow, k); /* the hidden route is still in force */
	return ret;
}

int store_k8s_del(struct store *s, const struct shunt_route_key *k)
{
	const struct shunt_route *cur = route_get(s->t, k);
	const struct shunt_route *hidden;
	struct shunt_route v;
	char err[256];
	int ret;

	if (!cur || !(cur->flags & SHUNT_ROUTE_FROM_K8S))
		return -ENOENT;
	ret = store_del(s, k);
	if (ret)
		return ret;
	hidden = route_get(s->shadow, k);
	if (!hidden)
		return 0;
	v = *hidden;
	route_table_del(s->shadow, k);
	if (v.expires_unix && v.expires_unix <= (uint64_t)time(NULL))
		return 0;
	if (store_add(s, k, &v, err, sizeof(err)))
		pr_warn("route for service key %s could not come back after its Kubernetes route: "
			"%s",
			k->key, err);
	return 0;
}

int store_expire(struct store *s, uint64_t now_unix)
{
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	long cnt = route_table_sorted(s->t, &keys, &vals);
	int removed = 0;
	char a[ADDR_STR_LEN], b[ADDR_STR_LEN];

	if (cnt < 0)
		return (int)cnt;
	for (long i = 0; i < cnt; i++) {
		if (!vals[i].expires_unix || vals[i].expires_unix > now_unix)
			continue;
		if ((vals[i].flags & SHUNT_ROUTE_FROM_K8S ? store_k8s_del(s, &keys[i])
							  : store_del(s, &keys[i])) == 0) {
			pr_info("route expired: service %s key %s",
				format_addr_port(&keys[i].service, a, sizeof(a)), keys[i].key);
			removed++;
		}
	}
	free(keys);
	free(vals);
	removed += shadow_expire(s, now_unix);
	for (size_t i = 0; i < s->novr;) {
		const struct override_entry *o = &s->ovr[i];

		if (!o->v.expires_unix || o->v.expires_unix > now_unix) {
			i++;
			continue;
		}
		pr_info("override expired: from %s to %s -> %s", o->v.from,
			format_addr_port(&o->k.dst, a, sizeof(a)),
			format_addr_port(&o->v.to, b, sizeof(b)));
		ovr_remove_at(s, i); /* the last one moved into i */
		removed++;
	}
	return removed;
}

/* Would the table hold the file's routes and overrides next to the ones
 * added through the control socket? Checked before anything changes, so a
 * file that does not fit leaves everything as it was. */
static int file_fits(struct store *s, const struct config *cfg, char *err, size_t errlen)
{
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	long cnt = route_table_sorted(s->t, &keys, &vals);
	size_t total = cfg->n, ototal = cfg->n_overrides;

	if (cnt < 0) {
		snprintf(err, errlen, "out of memory");
		return (int)cnt;
	}
	for (long i = 0; i < cnt; i++) {
		bool in_file = false;

		if (vals[i].flags & SHUNT_ROUTE_FROM_FILE)
			continue;
		for (size_t j = 0; j < cfg->n && !in_file; j++)
			in_file = !memcmp(&cfg->routes[j].k, &keys[i], sizeof(keys[i]));
		total += !in_file;
	}
	free(keys);
	free(vals);
	for (size_t i = 0; i < s->novr; i++) {
		bool in_file = false;

		if (s->ovr[i].v.flags & SHUNT_ROUTE_FROM_FILE)
			continue;
		for (size_t j = 0; j < cfg->n_overrides && !in_file; j++)
			in_file = !strcmp(cfg->overrides[j].from, s->ovr[i].v.from) &&
				  addr_equal(&cfg->overrides[j].dst, &s->ovr[i].k.dst);
		ototal += !in_file;
	}
	if (total > s->max_routes) {
		snprintf(err, errlen,
			 "%zu routes with the ones added by shuntctl, more than the table holds "
			 "(%u, --max-routes)",
			 total, s->max_routes);
		return -ENOSPC;
	}
	if (ototal > SHUNT_MAX_OVERRIDES) {
		snprintf(err, errlen, "%zu overrides with the ones added by shuntctl, more than %u",
			 ototal, SHUNT_MAX_OVERRIDES);
		return -ENOSPC;
	}
	return 0;
}

int store_apply_file(struct store *s, const struct config *cfg, uint64_t now_unix, char *err,
		     size_t errlen)
{
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	struct shunt_override_key *okeys = NULL;
	long cnt;
	int ret = 0;

	(void)now_unix;
	/* Everything that can fail is checked first: a source that cannot be
	 * resolved (its pod is gone) or a table too small refuses the whole
	 * file, and the routes in force stay as they are. */
	if (cfg->n_overrides) {
		okeys = calloc(cfg->n_overrides, sizeof(*okeys));
		if (!okeys) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	for (size_t j = 0; j < cfg->n_overrides; j++) {
		char msg[256];
		uint32_t kind;
		uint64_t id;

		ret = source_resolve(cfg->overrides[j].from, &kind, &id, msg, sizeof(msg));
		if (ret) {
			snprintf(err, errlen, "line %u: %s", cfg->overrides[j].line, msg);
			free(okeys);
			return ret;
		}
		okeys[j].src_kind = kind;
		okeys[j].src_id = id;
		okeys[j].dst = cfg->overrides[j].dst;
	}
	for (size_t j = 0; j < cfg->n; j++) {
		char msg[256];

		ret = store_route_allowed(s, &cfg->routes[j].k, &cfg->routes[j].v, msg,
					  sizeof(msg));
		if (ret) {
			snprintf(err, errlen, "line %u: %s", cfg->routes[j].line, msg);
			free(okeys);
			return ret;
		}
	}
	for (size_t j = 0; j < cfg->n_overrides; j++) {
		struct shunt_override v = {.to = cfg->overrides[j].to};
		char msg[256];

		ret = store_ovr_allowed(s, &okeys[j], &v, msg, sizeof(msg));
		if (ret) {
			snprintf(err, errlen, "line %u: %s", cfg->overrides[j].line, msg);
			free(okeys);
			return ret;
		}
	}
	ret = file_fits(s, cfg, err, errlen);
	if (ret) {
		free(okeys);
		return ret;
	}

	cnt = route_table_sorted(s->t, &keys, &vals);
	if (cnt < 0) {
		free(okeys);
		return (int)cnt;
	}
	for (long i = 0; i < cnt; i++) {
		int keep = 0;

		if (!(vals[i].flags & SHUNT_ROUTE_FROM_FILE))
			continue;
		for (size_t j = 0; j < cfg->n && !keep; j++)
			keep = !memcmp(&cfg->routes[j].k, &keys[i], sizeof(keys[i]));
		if (!keep)
			store_del(s, &keys[i]);
	}
	free(keys);
	free(vals);
	cnt = route_table_sorted(s->shadow, &keys, &vals);
	for (long i = 0; i < cnt; i++) {
		int keep = 0;

		if (!(vals[i].flags & SHUNT_ROUTE_FROM_FILE))
			continue;
		for (size_t j = 0; j < cfg->n && !keep; j++)
			keep = !memcmp(&cfg->routes[j].k, &keys[i], sizeof(keys[i]));
		if (!keep)
			route_table_del(s->shadow, &keys[i]);
	}
	if (cnt >= 0) {
		free(keys);
		free(vals);
	}
	for (size_t i = 0; i < s->novr;) {
		int keep = 0;

		for (size_t j = 0; j < cfg->n_overrides && !keep; j++)
			keep = !memcmp(&okeys[j], &s->ovr[i].k, sizeof(okeys[j]));
		if ((s->ovr[i].v.flags & SHUNT_ROUTE_FROM_FILE) && !keep)
			ovr_remove_at(s, i); /* the last one moved into i */
		else
			i++;
	}

	for (size_t j = 0; j < cfg->n && !ret; j++) {
		struct shunt_route v = cfg->routes[j].v;
		bool shadowed;

		v.flags |= SHUNT_ROUTE_FROM_FILE;
		v.created_unix = (uint64_t)time(NULL);
		v.expires_unix =
			cfg->routes[j].ttl_sec ? deadline_after(cfg->routes[j].ttl_sec) : 0;
		ret = store_add_local(s, &cfg->routes[j].k, &v, &shadowed, err, errlen);
	}
	for (size_t j = 0; j < cfg->n_overrides && !ret; j++) {
		const struct config_override *o = &cfg->overrides[j];
		struct shunt_override v = {};

		v.to = o->to;
		v.flags = SHUNT_ROUTE_FROM_FILE;
		v.created_unix = (uint64_t)time(NULL);
		v.expires_unix = o->ttl_sec ? deadline_after(o->ttl_sec) : 0;
		strcpy(v.from, o->from);
		ret = store_ovr_add(s, &okeys[j], &v, err, errlen);
	}
	free(okeys);
	return ret;
}
