// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * From SandboxRoutes, Services, EndpointSlices and Pods to routes, and
 * from SandboxOverrides to overrides.
 *
 * Every SandboxRoute keeps the routes it produced last time. A desired
 * route (service, key) remembers how many SandboxRoutes produce it, which
 * one wins (the smallest "namespace/name": deterministic on every node)
 * and the value last reported to the store, so that translating a
 * SandboxRoute again to the same result reports nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s_cache.h"
#include "routes.h"

struct k8s_group {
	void **v;
	size_t n, cap;
};

struct k8s_desired {
	struct shunt_route v;	     /* the winner's value */
	const struct k8s_sbr *owner; /* NULL once no SandboxRoute produces it */
	size_t n;		     /* SandboxRoutes producing it */
	struct shunt_route pub;	     /* last reported */
	bool published;
};

#define SET_MEMBER ((void *)1)

static const struct k8s_meta *meta_of(const void *obj)
{
	/* Every object type starts with its struct k8s_meta. */
	return (const struct k8s_meta *)obj;
}

void k8s_cache_init(struct k8s_cache *c)
{
	memset(c, 0, sizeof(*c));
}

static void groups_free(struct hmap *m)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(m, &i); e; e = hmap_next(m, e, &i)) {
		struct k8s_group *g = e->val;

		free(g->v);
		free(g);
	}
	hmap_free(m);
}

static void objs_free(struct hmap *m, enum k8s_kind kind)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(m, &i); e; e = hmap_next(m, e, &i))
		k8s_obj_free(kind, e->val);
	hmap_free(m);
}

static void ovr_map_clear(struct hmap *m)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(m, &i); e; e = hmap_next(m, e, &i))
		free(e->val);
	hmap_free(m);
}

void k8s_cache_free(struct k8s_cache *c)
{
	struct hmap_entry *e;
	size_t i;

	for (int k = 0; k < K8S_NKINDS; k++)
		objs_free(&c->objs[k], (enum k8s_kind)k);
	groups_free(&c->slices_by_svc);
	groups_free(&c->pods_by_ns);
	for (e = hmap_first(&c->desired, &i); e; e = hmap_next(&c->desired, e, &i))
		free(e->val);
	hmap_free(&c->desired);
	ovr_map_clear(&c->ovr_want);
	ovr_map_clear(&c->ovr_pub);
	hmap_free(&c->changed);
	hmap_free(&c->dirty);
	memset(c, 0, sizeof(*c));
}

static int group_add(struct hmap *m, const char *key, void *obj)
{
	struct k8s_group *g = hmap_sget(m, key);

	if (!g) {
		g = calloc(1, sizeof(*g));
		if (!g || hmap_put(m, key, strlen(key), g, NULL)) {
			free(g);
			return -ENOMEM;
		}
	}
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 4;
		void **v = realloc(g->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		g->v = v;
		g->cap = cap;
	}
	g->v[g->n++] = obj;
	return 0;
}

static void group_remove(struct hmap *m, const char *key, const void *obj)
{
	struct k8s_group *g = hmap_sget(m, key);

	if (!g)
		return;
	for (size_t i = 0; i < g->n; i++)
		if (g->v[i] == obj) {
			g->v[i] = g->v[--g->n];
			break;
		}
	if (!g->n) {
		hmap_del(m, key, strlen(key));
		free(g->v);
		free(g);
	}
}

static const struct k8s_group *group_get(const struct hmap *m, const char *ns, const char *name)
{
	char key[2 * K8S_NAME_MAX + 2];

	if (!name)
		return hmap_sget(m, ns);
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	return hmap_sget(m, key);
}

static int slice_index(struct k8s_cache *c, struct k8s_slice *sl, bool add)
{
	char key[2 * K8S_NAME_MAX + 2];

	if (!sl->service)
		return 0;
	snprintf(key, sizeof(key), "%s/%s", sl->m.ns, sl->service);
	if (add)
		return group_add(&c->slices_by_svc, key, sl);
	group_remove(&c->slices_by_svc, key, sl);
	return 0;
}

static int pod_index(struct k8s_cache *c, struct k8s_pod *p, bool add)
{
	if (add)
		return group_add(&c->pods_by_ns, p->m.ns, p);
	group_remove(&c->pods_by_ns, p->m.ns, p);
	return 0;
}

static int mark_dirty(struct k8s_cache *c, const struct k8s_sbr *r)
{
	return hmap_put(&c->dirty, r->m.id, strlen(r->m.id), SET_MEMBER, NULL);
}

/* SandboxRoutes naming the Service ns/name. */
static int mark_service_users(struct k8s_cache *c, const char *ns, const char *name)
{
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	if (!name)
		return 0;
	for (e = hmap_first(&c->objs[K8S_SBR], &i); e && !err;
	     e = hmap_next(&c->objs[K8S_SBR], e, &i)) {
		const struct k8s_sbr *r = e->val;

		if (!strcmp(r->service, name) && !strcmp(r->m.ns, ns))
			err = mark_dirty(c, r);
	}
	return err;
}

/* SandboxRoutes whose selector picks pod p. */
static int mark_pod_users(struct k8s_cache *c, const struct k8s_pod *p)
{
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	for (e = hmap_first(&c->objs[K8S_SBR], &i); e && !err;
	     e = hmap_next(&c->objs[K8S_SBR], e, &i)) {
		const struct k8s_sbr *r = e->val;

		if (!r->naddrs && !strcmp(r->m.ns, p->m.ns) &&
		    k8s_selector_match(r, p->labels, p->nlabels))
			err = mark_dirty(c, r);
	}
	return err;
}

/* Pods change often (status heartbeats, container restarts) in ways that
 * do not matter here: only labels, readiness and addresses do. */
static bool pod_same(const struct k8s_pod *a, const struct k8s_pod *b)
{
	if (a->ready != b->ready || a->ended != b->ended || a->nips != b->nips ||
	    a->nlabels != b->nlabels || memcmp(a->ips, b->ips, sizeof(a->ips)) ||
	    strcmp(a->uid, b->uid) || strcmp(a->node, b->node))
		return false;
	for (size_t i = 0; i < a->nlabels; i++)
		if (strcmp(a->labels[i].key, b->labels[i].key) ||
		    strcmp(a->labels[i].val, b->labels[i].val))
			return false;
	return true;
}

static int sbr_cmp(const struct k8s_sbr *a, const struct k8s_sbr *b)
{
	return strcmp(a->m.id, b->m.id);
}

static int note_changed(struct k8s_cache *c, const struct shunt_route_key *k)
{
	return hmap_put(&c->changed, k, sizeof(*k), SET_MEMBER, NULL);
}

static const struct k8s_route *sbr_find_route(const struct k8s_sbr *r,
					      const struct shunt_route_key *k)
{
	for (size_t i = 0; i < r->nroutes; i++)
		if (!memcmp(&r->routes[i].k, k, sizeof(*k)))
			return &r->routes[i];
	return NULL;
}

/* Withdraw what r contributes; another SandboxRoute producing the same
 * route (a conflict, rare) takes over. */
static int release(struct k8s_cache *c, struct k8s_sbr *r)
{
	int err = 0;

	for (size_t i = 0; i < r->nroutes; i++) {
		const struct shunt_route_key *k = &r->routes[i].k;
		struct k8s_desired *d = hmap_get(&c->desired, k, sizeof(*k));

		if (!d)
			continue;
		if (!--d->n)
			c->nroutes--;
		if (d->owner == r) {
			struct hmap_entry *e;
			size_t j;

			d->owner = NULL;
			for (e = hmap_first(&c->objs[K8S_SBR], &j); e && d->n;
			     e = hmap_next(&c->objs[K8S_SBR], e, &j)) {
				const struct k8s_sbr *o = e->val;
				const struct k8s_route * or ;

				if (o == r || (d->owner && sbr_cmp(o, d->owner) > 0))
					continue;
				or = sbr_find_route(o, k);
				if (or) {
					d->owner = o;
					d->v = or->v;
				}
			}
		}
		err = err ? err : note_changed(c, k);
	}
	free(r->routes);
	r->routes = NULL;
	r->nroutes = 0;
	return err;
}

static int claim(struct k8s_cache *c, struct k8s_sbr *r, struct k8s_route *routes, size_t n)
{
	int err = 0;

	r->routes = routes;
	r->nroutes = n;
	for (size_t i = 0; i < n && !err; i++) {
		const struct shunt_route_key *k = &routes[i].k;
		struct k8s_desired *d = hmap_get(&c->desired, k, sizeof(*k));

		if (!d) {
			d = calloc(1, sizeof(*d));
			if (!d || hmap_put(&c->desired, k, sizeof(*k), d, NULL)) {
				free(d);
				/* Keep only what was counted. */
				r->nroutes = i;
				return -ENOMEM;
			}
		}
		if (!d->n++)
			c->nroutes++;
		if (!d->owner || sbr_cmp(r, d->owner) < 0) {
			d->owner = r;
			d->v = routes[i].v;
		}
		err = note_changed(c, k);
	}
	return err;
}

/* Can a change to an object of kind change what the SandboxOverrides
 * imply? */
static bool ovr_affected(const struct k8s_cache *c, enum k8s_kind kind)
{
	return kind == K8S_SBO || (kind != K8S_SBR && c->objs[K8S_SBO].n);
}

int k8s_cache_put(struct k8s_cache *c, enum k8s_kind kind, void *obj)
{
	const struct k8s_meta *m = meta_of(obj);
	void *old = hmap_sget(&c->objs[kind], m->id);
	int err = 0;

	if (old && kind == K8S_SBR)
		err = release(c, old);
	if (old && kind == K8S_SLICE) {
		slice_index(c, old, false);
		err = mark_service_users(c, m->ns, ((struct k8s_slice *)old)->service);
	}
	if (old && kind == K8S_POD) {
		pod_index(c, old, false);
		if (!pod_same(old, obj))
			err = mark_pod_users(c, old);
	}
	if (hmap_put(&c->objs[kind], m->id, strlen(m->id), obj, NULL)) {
		/* The old object is still in the map: put it back where it
		 * was indexed, and drop the new one. */
		if (old && kind == K8S_SLICE)
			slice_index(c, old, true);
		if (old && kind == K8S_POD)
			pod_index(c, old, true);
		if (old && kind == K8S_SBR)
			mark_dirty(c, old);
		k8s_obj_free(kind, obj);
		return -ENOMEM;
	}
	switch (kind) {
	case K8S_SBR:
		err = err ? err : mark_dirty(c, obj);
		break;
	case K8S_SERVICE:
		err = err ? err : mark_service_users(c, m->ns, m->name);
		break;
	case K8S_SLICE:
		err = err ? err : slice_index(c, obj, true);
		err = err ? err : mark_service_users(c, m->ns, ((struct k8s_slice *)obj)->service);
		break;
	case K8S_POD:
		err = err ? err : pod_index(c, obj, true);
		if (!old || !pod_same(old, obj))
			err = err ? err : mark_pod_users(c, obj);
		break;
	case K8S_SBO:
	case K8S_NKINDS:
		break;
	}
	if (ovr_affected(c, kind) && !(kind == K8S_POD && old && pod_same(old, obj)))
		c->ovr_dirty = true;
	k8s_obj_free(kind, old);
	/* Out of memory half way: translate everything again next time. */
	if (err)
		c->all_dirty = true;
	return err;
}

int k8s_cache_del(struct k8s_cache *c, enum k8s_kind kind, const char *id)
{
	void *old = hmap_del(&c->objs[kind], id, strlen(id));
	const struct k8s_meta *m = old ? meta_of(old) : NULL;
	int err = 0;

	if (!old)
		return -ENOENT;
	switch (kind) {
	case K8S_SBR:
		err = release(c, old);
		break;
	case K8S_SERVICE:
		err = mark_service_users(c, m->ns, m->name);
		break;
	case K8S_SLICE:
		slice_index(c, old, false);
		err = mark_service_users(c, m->ns, ((struct k8s_slice *)old)->service);
		break;
	case K8S_POD:
		pod_index(c, old, false);
		err = mark_pod_users(c, old);
		break;
	case K8S_SBO:
	case K8S_NKINDS:
		break;
	}
	if (ovr_affected(c, kind))
		c->ovr_dirty = true;
	k8s_obj_free(kind, old);
	if (err)
		c->all_dirty = true;
	return 0;
}

int k8s_cache_replace(struct k8s_cache *c, enum k8s_kind kind, struct hmap *fresh)
{
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	if (kind == K8S_SBR)
		for (e = hmap_first(&c->objs[kind], &i); e; e = hmap_next(&c->objs[kind], e, &i))
			err = err ? err : release(c, e->val);
	objs_free(&c->objs[kind], kind);
	if (kind == K8S_SLICE)
		groups_free(&c->slices_by_svc);
	if (kind == K8S_POD)
		groups_free(&c->pods_by_ns);
	for (e = hmap_first(fresh, &i); e; e = hmap_next(fresh, e, &i)) {
		const struct k8s_meta *m = meta_of(e->val);

		if (hmap_put(&c->objs[kind], m->id, strlen(m->id), e->val, NULL)) {
			k8s_obj_free(kind, e->val);
			err = -ENOMEM;
			continue;
		}
		if (kind == K8S_SLICE)
			err = err ? err : slice_index(c, e->val, true);
		if (kind == K8S_POD)
			err = err ? err : pod_index(c, e->val, true);
	}
	hmap_free(fresh);
	c->all_dirty = true;
	if (ovr_affected(c, kind))
		c->ovr_dirty = true;
	return err;
}

int k8s_cache_put_json(struct k8s_cache *c, enum k8s_kind kind, const char *json, char *err,
		       size_t errlen)
{
	struct json_object *o = json_tokener_parse(json);
	void *obj;
	int ret;

	if (!o) {
		snprintf(err, errlen, "not JSON");
		return -EINVAL;
	}
	ret = k8s_decode(kind, o, &obj, err, errlen);
	json_object_put(o);
	return ret ? ret : k8s_cache_put(c, kind, obj);
}

static int addr_cmp(const struct shunt_addr *a, const struct shunt_addr *b)
{
	return memcmp(a->addr, b->addr, a->family == SHUNT_FAMILY_V4 ? 4 : 16);
}

static int route_cmp(const void *pa, const void *pb)
{
	const struct k8s_route *a = pa, *b = pb;

	return memcmp(&a->k, &b->k, sizeof(a->k));
}

struct route_vec {
	struct k8s_route *v;
	size_t n, cap;
};

static int vec_push(struct route_vec *rv, const struct k8s_route *r)
{
	if (rv->n == rv->cap) {
		size_t cap = rv->cap ? rv->cap * 2 : 16;
		struct k8s_route *v = realloc(rv->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		rv->v = v;
		rv->cap = cap;
	}
	rv->v[rv->n++] = *r;
	return 0;
}

/* Routes for one captured address: one per key, to the sandbox endpoint
 * of the address's family. */
static int add_captured(struct route_vec *rv, const struct k8s_sbr *r, struct shunt_addr cap,
			uint16_t port, const struct shunt_addr *sb4, const struct shunt_addr *sb6)
{
	const struct shunt_addr *to = cap.family == SHUNT_FAMILY_V4 ? sb4 : sb6;
	struct k8s_route route = {};
	int err = 0;

	if (!to->family)
		return 0;
	cap.port = port;
	route.v.to = *to;
	route.v.to.port = r->port;
	route.v.flags = SHUNT_ROUTE_FROM_K8S;
	if (r->fallback_baseline)
		route.v.flags |= SHUNT_ROUTE_FALLBACK_BASELINE;
	route.v.created_unix = r->created_unix;
	route.v.expires_unix = r->expires_unix;
	for (size_t i = 0; i < r->nkeys && !err; i++) {
		route_key_make(&route.k, &cap, r->keys[i], strlen(r->keys[i]));
		err = vec_push(rv, &route);
	}
	return err;
}

static bool port_wanted(const struct k8s_sbr *r, const struct k8s_port *p)
{
	if (!p->tcp || !p->port)
		return false;
	if (!r->nports)
		return true;
	for (size_t i = 0; i < r->nports; i++)
		if (r->ports[i] == p->port)
			return true;
	return false;
}

/* The slice's port for the Service port sp: same name, or the only one
 * when the Service has a single port. */
static const struct k8s_port *slice_port(const struct k8s_service *svc, const struct k8s_port *sp,
					 const struct k8s_slice *sl)
{
	for (size_t i = 0; i < sl->nports; i++)
		if (!strcmp(sl->ports[i].name, sp->name))
			return sl->ports[i].tcp && sl->ports[i].port ? &sl->ports[i] : NULL;
	if (svc->nports == 1 && sl->nports == 1 && sl->ports[0].tcp && sl->ports[0].port)
		return &sl->ports[0];
	return NULL;
}

long k8s_sbr_routes(const struct k8s_cache *c, const struct k8s_sbr *r, uint64_t now_unix,
		    struct k8s_route **out)
{
	char id[2 * K8S_NAME_MAX + 2];
	const struct k8s_service *svc;
	const struct k8s_group *slices;
	struct shunt_addr sb4 = {}, sb6 = {};
	struct route_vec rv = {};
	size_t w;
	int err = 0;

	*out = NULL;
	if (r->expires_unix && r->expires_unix <= now_unix)
		return 0;
	snprintf(id, sizeof(id), "%s/%s", r->m.ns, r->service);
	svc = hmap_sget(&c->objs[K8S_SERVICE], id);
	if (!svc)
		return 0;

	/* The sandbox endpoint of each family. */
	if (r->naddrs) {
		for (size_t i = r->naddrs; i-- > 0;)
			*(r->addrs[i].family == SHUNT_FAMILY_V4 ? &sb4 : &sb6) = r->addrs[i];
	} else {
		const struct k8s_group *pods = group_get(&c->pods_by_ns, r->m.ns, NULL);

		for (size_t i = 0; pods && i < pods->n; i++) {
			const struct k8s_pod *p = pods->v[i];

			if (!p->ready || !k8s_selector_match(r, p->labels, p->nlabels))
				continue;
			for (size_t j = 0; j < p->nips; j++) {
				struct shunt_addr *best =
					p->ips[j].family == SHUNT_FAMILY_V4 ? &sb4 : &sb6;

				if (!best->family || addr_cmp(&p->ips[j], best) < 0)
					*best = p->ips[j];
			}
		}
	}
	if (!sb4.family && !sb6.family)
		return 0;

	slices = group_get(&c->slices_by_svc, r->m.ns, r->service);
	for (size_t i = 0; i < svc->nports && !err; i++) {
		const struct k8s_port *sp = &svc->ports[i];

		if (!port_wanted(r, sp))
			continue;
		for (size_t j = 0; j < svc->ncips && !err; j++)
			err = add_captured(&rv, r, svc->cips[j], sp->port, &sb4, &sb6);
		for (size_t j = 0; slices && j < slices->n && !err; j++) {
			const struct k8s_slice *sl = slices->v[j];
			const struct k8s_port *p = slice_port(svc, sp, sl);

			for (size_t k = 0; p && k < sl->naddrs && !err; k++)
				err = add_captured(&rv, r, sl->addrs[k], p->port, &sb4, &sb6);
		}
	}
	if (err) {
		free(rv.v);
		return -ENOMEM;
	}
	/* One route per key: an endpoint may be in two slices for a while,
	 * and a ClusterIP may also be listed as an endpoint. */
	if (rv.n > 1)
		qsort(rv.v, rv.n, sizeof(*rv.v), route_cmp);
	w = 0;
	for (size_t i = 0; i < rv.n; i++)
		if (!w || memcmp(&rv.v[w - 1].k, &rv.v[i].k, sizeof(rv.v[i].k)))
			rv.v[w++] = rv.v[i];
	*out = rv.v;
	return (long)w;
}

/* ---- SandboxOverrides ---------------------------------------------------- */

struct addr_vec {
	struct shunt_addr *v;
	size_t n, cap;
};

static int addr_push(struct addr_vec *av, struct shunt_addr a, uint16_t port)
{
	if (av->n == av->cap) {
		size_t cap = av->cap ? av->cap * 2 : 8;
		struct shunt_addr *v = realloc(av->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		av->v = v;
		av->cap = cap;
	}
	a.port = port;
	av->v[av->n++] = a;
	return 0;
}

/* The TCP port of svc numbered port. */
static const struct k8s_port *service_port(const struct k8s_service *svc, uint16_t port)
{
	for (size_t i = 0; i < svc->nports; i++)
		if (svc->ports[i].tcp && svc->ports[i].port == port)
			return &svc->ports[i];
	return NULL;
}

/* Keep a as the family's best (lowest address) endpoint. */
static void best_of_family(struct shunt_addr *b4, struct shunt_addr *b6, struct shunt_addr a,
			   uint16_t port)
{
	struct shunt_addr *best = a.family == SHUNT_FAMILY_V4 ? b4 : b6;

	a.port = port;
	if (!best->family || addr_cmp(&a, best) < 0)
		*best = a;
}

/* Where the connections go instead, one endpoint per family (port set):
 * the first address of each family, or the ready pod (or ready endpoint of
 * the Service) with the lowest address, as for a SandboxRoute's sandbox. */
static void sbo_targets(const struct k8s_cache *c, const struct k8s_sbo *o, struct shunt_addr *t4,
			struct shunt_addr *t6)
{
	memset(t4, 0, sizeof(*t4));
	memset(t6, 0, sizeof(*t6));
	if (o->nto) {
		for (size_t i = o->nto; i-- > 0;) {
			*(o->to_addrs[i].family == SHUNT_FAMILY_V4 ? t4 : t6) = o->to_addrs[i];
			(o->to_addrs[i].family == SHUNT_FAMILY_V4 ? t4 : t6)->port = o->to_port;
		}
	} else if (o->to_sel_set) {
		const struct k8s_group *pods = group_get(&c->pods_by_ns, o->m.ns, NULL);

		for (size_t i = 0; pods && i < pods->n; i++) {
			const struct k8s_pod *p = pods->v[i];

			if (!p->ready || !k8s_labels_match(&o->to_sel, p->labels, p->nlabels))
				continue;
			for (size_t j = 0; j < p->nips; j++)
				best_of_family(t4, t6, p->ips[j], o->to_port);
		}
	} else {
		char id[2 * K8S_NAME_MAX + 2];
		const struct k8s_service *svc;
		const struct k8s_port *sp;
		const struct k8s_group *slices;

		snprintf(id, sizeof(id), "%s/%s", o->m.ns, o->to_service);
		svc = hmap_sget(&c->objs[K8S_SERVICE], id);
		sp = svc ? service_port(svc, o->to_port) : NULL;
		slices = sp ? group_get(&c->slices_by_svc, o->m.ns, o->to_service) : NULL;
		for (size_t j = 0; slices && j < slices->n; j++) {
			const struct k8s_slice *sl = slices->v[j];
			const struct k8s_port *p = slice_port(svc, sp, sl);

			for (size_t k = 0; p && k < sl->naddrs; k++)
				best_of_family(t4, t6, sl->addrs[k], p->port);
		}
	}
}

/* What the pods connect to: the addresses with their ports. */
static int sbo_destinations(const struct k8s_cache *c, const struct k8s_sbo *o,
			    struct addr_vec *dst)
{
	char id[2 * K8S_NAME_MAX + 2];
	const struct k8s_service *svc;
	const struct k8s_port *sp;
	const struct k8s_group *slices;
	int err = 0;

	if (!o->dst_service) {
		for (size_t i = 0; i < o->ndst && !err; i++)
			err = addr_push(dst, o->dst_addrs[i], o->dst_port);
		return err;
	}
	snprintf(id, sizeof(id), "%s/%s", o->m.ns, o->dst_service);
	svc = hmap_sget(&c->objs[K8S_SERVICE], id);
	sp = svc ? service_port(svc, o->dst_port) : NULL;
	if (!sp)
		return 0;
	for (size_t i = 0; i < svc->ncips && !err; i++)
		err = addr_push(dst, svc->cips[i], sp->port);
	slices = group_get(&c->slices_by_svc, o->m.ns, o->dst_service);
	for (size_t j = 0; slices && j < slices->n && !err; j++) {
		const struct k8s_slice *sl = slices->v[j];
		const struct k8s_port *p = slice_port(svc, sp, sl);

		for (size_t k = 0; p && k < sl->naddrs && !err; k++)
			err = addr_push(dst, sl->addrs[k], p->port);
	}
	return err;
}

static int ovr_cmp(const void *pa, const void *pb)
{
	const struct k8s_override *a = pa, *b = pb;

	return memcmp(&a->k, &b->k, sizeof(a->k));
}

long k8s_sbo_overrides(const struct k8s_cache *c, const struct k8s_sbo *o, uint64_t now_unix,
		       struct k8s_override **out, size_t *unresolved)
{
	const struct k8s_group *pods = group_get(&c->pods_by_ns, o->m.ns, NULL);
	struct shunt_addr t4, t6;
	struct addr_vec dst = {};
	struct k8s_override *v = NULL;
	size_t n = 0, cap = 0, w = 0;
	int err;

	*out = NULL;
	if ((o->expires_unix && o->expires_unix <= now_unix) || !c->node || !c->node[0] ||
	    !c->cgroup_of || !pods)
		return 0;
	sbo_targets(c, o, &t4, &t6);
	if (!t4.family && !t6.family)
		return 0;
	err = sbo_destinations(c, o, &dst);
	for (size_t i = 0; i < pods->n && !err && dst.n; i++) {
		const struct k8s_pod *p = pods->v[i];
		uint64_t cg;

		/* Every pod of ours that matches, ready or not: what its init
		 * containers open counts too. */
		if (p->ended || strcmp(p->node, c->node) || !p->uid[0] ||
		    !k8s_labels_match(&o->sel, p->labels, p->nlabels))
			continue;
		if (c->cgroup_of(c->cgroup_ud, p->uid, &cg)) {
			(*unresolved)++;
			continue;
		}
		for (size_t j = 0; j < dst.n; j++) {
			const struct shunt_addr *to =
				dst.v[j].family == SHUNT_FAMILY_V4 ? &t4 : &t6;
			struct k8s_override *ov;

			if (!to->family)
				continue;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 8;
				struct k8s_override *nv = realloc(v, ncap * sizeof(*nv));

				if (!nv) {
					err = -ENOMEM;
					break;
				}
				v = nv;
				cap = ncap;
			}
			ov = &v[n++];
			memset(ov, 0, sizeof(*ov));
			ov->k.src_kind = SHUNT_SRC_CGROUP;
			ov->k.src_id = cg;
			ov->k.dst = dst.v[j];
			ov->v.to = *to;
			ov->v.flags = SHUNT_ROUTE_FROM_K8S;
			ov->v.created_unix = o->created_unix;
			ov->v.expires_unix = o->expires_unix;
			/* Names are ASCII: cutting one short is still text. */
			snprintf(ov->v.from, sizeof(ov->v.from), "k8s:%s pod %s", o->m.id,
				 p->m.name);
		}
	}
	free(dst.v);
	if (err) {
		free(v);
		return -ENOMEM;
	}
	/* A ClusterIP may also be listed as an endpoint, an endpoint in two
	 * slices: one override per (cgroup, destination). */
	if (n > 1)
		qsort(v, n, sizeof(*v), ovr_cmp);
	for (size_t i = 0; i < n; i++)
		if (!w || memcmp(&v[w - 1].k, &v[i].k, sizeof(v[i].k)))
			v[w++] = v[i];
	*out = v;
	return (long)w;
}

static int sbo_id_cmp(const void *pa, const void *pb)
{
	const struct k8s_sbo *a = *(const struct k8s_sbo *const *)pa;
	const struct k8s_sbo *b = *(const struct k8s_sbo *const *)pb;

	return strcmp(a->m.id, b->m.id);
}

/* Every SandboxOverride again, into ovr_want. Two producing the same
 * (cgroup, destination): the one whose namespace/name sorts first wins. */
static int ovr_recompute(struct k8s_cache *c, uint64_t now_unix)
{
	struct hmap *sbos = &c->objs[K8S_SBO];
	const struct k8s_sbo **v = NULL;
	struct hmap_entry *e;
	size_t i, n = 0;
	int err = 0;

	ovr_map_clear(&c->ovr_want);
	c->ovr_unresolved = 0;
	c->ovr_deadline = 0;
	if (sbos->n) {
		v = malloc(sbos->n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (e = hmap_first(sbos, &i); e; e = hmap_next(sbos, e, &i))
			v[n++] = e->val;
		qsort(v, n, sizeof(*v), sbo_id_cmp);
	}
	for (i = 0; i < n && !err; i++) {
		struct k8s_override *ovs;
		long cnt = k8s_sbo_overrides(c, v[i], now_unix, &ovs, &c->ovr_unresolved);

		if (v[i]->expires_unix > now_unix &&
		    (!c->ovr_deadline || v[i]->expires_unix < c->ovr_deadline))
			c->ovr_deadline = v[i]->expires_unix;
		if (cnt < 0) {
			err = (int)cnt;
			break;
		}
		for (long j = 0; j < cnt && !err; j++) {
			struct k8s_override *ov;

			if (hmap_get(&c->ovr_want, &ovs[j].k, sizeof(ovs[j].k)))
				continue;
			ov = malloc(sizeof(*ov));
			if (!ov || hmap_put(&c->ovr_want, &ovs[j].k, sizeof(ovs[j].k), ov, NULL)) {
				free(ov);
				err = -ENOMEM;
				break;
			}
			*ov = ovs[j];
		}
		free(ovs);
	}
	free(v);
	if (!err)
		c->ovr_dirty = false;
	return err;
}

static int ovr_op_push(struct k8s_ovr_op **v, size_t *n, size_t *cap, const struct k8s_override *o,
		       bool del)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct k8s_ovr_op *nv = realloc(*v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	(*v)[*n].o = *o;
	(*v)[(*n)++].del = del;
	return 0;
}

long k8s_cache_ovr_changes(struct k8s_cache *c, bool full, struct k8s_ovr_op **out)
{
	struct k8s_ovr_op *v = NULL;
	struct hmap pub = {};
	struct hmap_entry *e;
	size_t i, n = 0, cap = 0;
	int err = 0;

	*out = NULL;
	for (e = hmap_first(&c->ovr_pub, &i); e && !full && !err; e = hmap_next(&c->ovr_pub, e, &i))
		if (!hmap_get(&c->ovr_want, e->key, e->klen))
			err = ovr_op_push(&v, &n, &cap, e->val, true);
	for (e = hmap_first(&c->ovr_want, &i); e && !err; e = hmap_next(&c->ovr_want, e, &i)) {
		const struct k8s_override *was = hmap_get(&c->ovr_pub, e->key, e->klen);
		struct k8s_override *copy = malloc(sizeof(*copy));

		if (!copy || hmap_put(&pub, e->key, e->klen, copy, NULL)) {
			free(copy);
			err = -ENOMEM;
			break;
		}
		*copy = *(const struct k8s_override *)e->val;
		if (full || !was || memcmp(was, copy, sizeof(*copy)))
			err = ovr_op_push(&v, &n, &cap, copy, false);
	}
	if (err) {
		ovr_map_clear(&pub);
		free(v);
		return -ENOMEM;
	}
	ovr_map_clear(&c->ovr_pub);
	c->ovr_pub = pub;
	*out = v;
	return (long)n;
}

static int recompute_one(struct k8s_cache *c, struct k8s_sbr *r, uint64_t now_unix)
{
	struct k8s_route *routes;
	long n = k8s_sbr_routes(c, r, now_unix, &routes);
	int err;

	if (n < 0)
		return (int)n;
	err = release(c, r);
	if (err) {
		free(routes);
		return err;
	}
	return claim(c, r, routes, (size_t)n);
}

bool k8s_cache_pending(const struct k8s_cache *c, uint64_t now_unix)
{
	return c->all_dirty || c->dirty.n || (c->next_deadline && c->next_deadline <= now_unix) ||
	       c->ovr_dirty || (c->ovr_deadline && c->ovr_deadline <= now_unix);
}

int k8s_cache_recompute(struct k8s_cache *c, uint64_t now_unix)
{
	struct hmap *sbrs = &c->objs[K8S_SBR];
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	if (c->all_dirty) {
		for (e = hmap_first(sbrs, &i); e && !err; e = hmap_next(sbrs, e, &i))
			err = recompute_one(c, e->val, now_unix);
	} else {
		for (e = hmap_first(&c->dirty, &i); e && !err; e = hmap_next(&c->dirty, e, &i)) {
			struct k8s_sbr *r = hmap_get(sbrs, e->key, e->klen);

			if (r)
				err = recompute_one(c, r, now_unix);
		}
	}
	if (err) {
		c->all_dirty = true;
		return err;
	}
	c->all_dirty = false;
	hmap_free(&c->dirty);

	/* Deadlines: what expired goes now, and the next one is noted. */
	c->next_deadline = 0;
	for (e = hmap_first(sbrs, &i); e && !err; e = hmap_next(sbrs, e, &i)) {
		struct k8s_sbr *r = e->val;

		if (!r->expires_unix)
			continue;
		if (r->expires_unix <= now_unix) {
			if (r->nroutes)
				err = recompute_one(c, r, now_unix);
		} else if (!c->next_deadline || r->expires_unix < c->next_deadline) {
			c->next_deadline = r->expires_unix;
		}
	}
	if (!err && (c->ovr_dirty || (c->ovr_deadline && c->ovr_deadline <= now_unix)))
		err = ovr_recompute(c, now_unix);
	if (c->ovr_deadline && (!c->next_deadline || c->ovr_deadline < c->next_deadline))
		c->next_deadline = c->ovr_deadline;
	if (err)
		c->all_dirty = true;
	return err;
}

struct op_vec {
	struct k8s_op *v;
	size_t n, cap;
};

static int op_push(struct op_vec *ov, const struct shunt_route_key *k, const struct shunt_route *v,
		   bool del)
{
	if (ov->n == ov->cap) {
		size_t cap = ov->cap ? ov->cap * 2 : 64;
		struct k8s_op *o = realloc(ov->v, cap * sizeof(*o));

		if (!o)
			return -ENOMEM;
		ov->v = o;
		ov->cap = cap;
	}
	ov->v[ov->n].r.k = *k;
	ov->v[ov->n].r.v = *v;
	ov->v[ov->n].del = del;
	ov->n++;
	return 0;
}

long k8s_cache_changes(struct k8s_cache *c, bool full, struct k8s_op **out)
{
	struct op_vec ov = {};
	struct hmap_entry *e, *next;
	size_t i;
	int err = 0;

	*out = NULL;
	for (e = hmap_first(&c->changed, &i); e && !err; e = next) {
		struct shunt_route_key k;
		struct k8s_desired *d;

		next = hmap_next(&c->changed, e, &i);
		memcpy(&k, e->key, sizeof(k));
		d = hmap_get(&c->desired, &k, sizeof(k));
		if (d && !d->n) {
			if (d->published)
				err = op_push(&ov, &k, &d->pub, true);
			if (!err) {
				hmap_del(&c->desired, &k, sizeof(k));
				free(d);
			}
		} else if (d && !full && (!d->published || memcmp(&d->pub, &d->v, sizeof(d->v)))) {
			err = op_push(&ov, &k, &d->v, false);
			if (!err) {
				d->pub = d->v;
				d->published = true;
			}
		}
		if (!err)
			hmap_del(&c->changed, &k, sizeof(k));
	}
	for (e = hmap_first(&c->desired, &i); full && e && !err;
	     e = hmap_next(&c->desired, e, &i)) {
		struct k8s_desired *d = e->val;
		struct shunt_route_key k;

		memcpy(&k, e->key, sizeof(k));
		err = op_push(&ov, &k, &d->v, false);
		d->pub = d->v;
		d->published = true;
	}
	if (err) {
		free(ov.v);
		return -ENOMEM;
	}
	*out = ov.v;
	return (long)ov.n;
}
