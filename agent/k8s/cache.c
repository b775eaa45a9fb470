// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * From SandboxRoutes, Services, EndpointSlices and Pods to routes, and
 * from SandboxOverrides to overrides.
 *
 * Every SandboxRoute keeps the routes its translation asks for; those of
 * the objects within their namespace's quota are claimed into the desired
 * set. A desired route (service, key) remembers every SandboxRoute
 * producing it, which one wins (the oldest: the same on every node) and
 * the value last reported to the store, so that translating a
 * SandboxRoute again to the same result reports nothing.
 *
 * EndpointSlice addresses count only once checked against the Pods
 * (slice_check()): each slice is indexed by the Pods its targetRefs name,
 * and a change to such a Pod checks the slice again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/cache.h"
#include "state/routes.h"

const char *const k8s_why_names[K8S_WHY_MAX] = {
	[K8S_WHY_CONFLICT] = "conflict",
	[K8S_WHY_QUOTA] = "quota",
	[K8S_WHY_CIDR] = "sandbox-cidr",
	[K8S_WHY_ENDPOINTS] = "endpoints",
};

struct k8s_group {
	void **v;
	size_t n, cap;
};

struct k8s_desired {
	struct shunt_route v;	     /* the winner's value */
	const struct k8s_sbr *owner; /* the winner; NULL once none produces it */
	const struct k8s_sbr **more; /* the n - 1 others producing it */
	size_t n;		     /* SandboxRoutes producing it */
	struct shunt_route pub;	     /* last reported */
	bool published;
};

/* An ovr_want value; owner is valid during ovr_recompute() only. */
struct k8s_ovr_want {
	struct k8s_override o; /* first: the changes copy it as such */
	const struct k8s_sbo *owner;
};

#define SET_MEMBER ((void *)1)

static const struct k8s_meta *meta_of(const void *obj)
{
	/* Every object type starts with its struct k8s_meta. */
	return (const struct k8s_meta *)obj;
}

int k8s_age_cmp(uint64_t created_a, const char *id_a, uint64_t created_b, const char *id_b)
{
	/* No creationTimestamp (the API server always sets one): newest. */
	uint64_t a = created_a ? created_a : UINT64_MAX, b = created_b ? created_b : UINT64_MAX;

	if (a != b)
		return a < b ? -1 : 1;
	return strcmp(id_a, id_b);
}

static int sbr_cmp(const struct k8s_sbr *a, const struct k8s_sbr *b)
{
	return k8s_age_cmp(a->created_unix, a->m.id, b->created_unix, b->m.id);
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
	groups_free(&c->slices_by_pod);
	groups_free(&c->pods_by_ns);
	groups_free(&c->sbrs_by_ns);
	for (e = hmap_first(&c->desired, &i); e; e = hmap_next(&c->desired, e, &i)) {
		struct k8s_desired *d = e->val;

		free(d->more);
		free(d);
	}
	hmap_free(&c->desired);
	ovr_map_clear(&c->ovr_want);
	ovr_map_clear(&c->ovr_pub);
	hmap_free(&c->ovr_lost);
	hmap_free(&c->contested);
	hmap_free(&c->changed);
	hmap_free(&c->dirty);
	hmap_free(&c->ns_dirty);
	hmap_free(&c->label_keys);
	memset(c, 0, sizeof(*c));
}

/* Add obj to the group key (once: nothing happens when it is there). */
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
	for (size_t i = g->n; i-- > 0;)
		if (g->v[i] == obj)
			return 0;
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
	char key[K8S_ID_MAX];

	if (!name)
		return hmap_sget(m, ns);
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	return hmap_sget(m, key);
}

/* ---- label keys the selectors use ----------------------------------------- */

static int key_ref(struct k8s_cache *c, const char *key, int delta)
{
	uintptr_t n = (uintptr_t)hmap_sget(&c->label_keys, key);

	if (delta > 0) {
		if (hmap_put(&c->label_keys, key, strlen(key), (void *)(n + 1), NULL))
			return -ENOMEM;
		if (!n)
			c->new_label_keys = true;
	} else if (n <= 1) {
		hmap_del(&c->label_keys, key, strlen(key));
	} else {
		/* An existing key: no allocation. */
		hmap_put(&c->label_keys, key, strlen(key), (void *)(n - 1), NULL);
	}
	return 0;
}

static int sel_keys_ref(struct k8s_cache *c, const struct k8s_selector *sel, int delta)
{
	int err = 0;

	for (size_t i = 0; i < sel->nmatch; i++)
		err = err ? err : key_ref(c, sel->match[i].key, delta);
	for (size_t i = 0; i < sel->nexpr; i++)
		err = err ? err : key_ref(c, sel->expr[i].key, delta);
	return err;
}

/* The label keys an object's selectors use, counted in (delta 1) or out
 * (-1). */
static int obj_keys_ref(struct k8s_cache *c, enum k8s_kind kind, const void *obj, int delta)
{
	if (kind == K8S_SBR) {
		const struct k8s_selector sel = k8s_sbr_selector(obj);

		return sel_keys_ref(c, &sel, delta);
	}
	if (kind == K8S_SBO) {
		const struct k8s_sbo *o = obj;
		int err = sel_keys_ref(c, &o->sel, delta);

		return err ? err : sel_keys_ref(c, &o->to_sel, delta);
	}
	return 0;
}

/* ---- EndpointSlice addresses and their Pods ---------------------------------- */

static bool pod_has(const struct k8s_pod *p, const struct shunt_addr *a)
{
	for (size_t i = 0; i < p->nips; i++)
		if (p->ips[i].family == a->family && !memcmp(p->ips[i].addr, a->addr, 16))
			return true;
	return false;
}

/* Check each address of the slice against the Pod its targetRef names: it
 * counts when that Pod is in the cache, in the slice's namespace, has not
 * ended (its IP may be another pod's by now) and has that address. So a
 * hand-written slice cannot claim another namespace's pod IP, not even by
 * naming a made-up pod. Returns whether any address changed. */
static bool slice_check(const struct k8s_cache *c, struct k8s_slice *sl)
{
	char key[K8S_ID_MAX];
	bool changed = false;
	size_t bad = 0;

	for (size_t i = 0; i < sl->naddrs; i++) {
		const struct k8s_pod *p = NULL;
		bool ok;

		if (sl->pods[i]) {
			snprintf(key, sizeof(key), "%s/%s", sl->m.ns, sl->pods[i]);
			p = hmap_sget(&c->objs[K8S_POD], key);
		}
		ok = p && !p->ended && pod_has(p, &sl->addrs[i]);
		changed |= ok != sl->valid[i];
		sl->valid[i] = ok;
		bad += !ok;
	}
	sl->ninvalid = bad;
	return changed;
}

static int slice_index(struct k8s_cache *c, struct k8s_slice *sl, bool add)
{
	char key[K8S_ID_MAX];
	int err = 0;

	for (size_t i = 0; i < sl->naddrs && !err; i++) {
		if (!sl->pods[i])
			continue;
		snprintf(key, sizeof(key), "%s/%s", sl->m.ns, sl->pods[i]);
		if (add)
			err = group_add(&c->slices_by_pod, key, sl);
		else
			group_remove(&c->slices_by_pod, key, sl);
	}
	if (add)
		slice_check(c, sl);
	if (!sl->service || err)
		return err;
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

static int mark_ns(struct k8s_cache *c, const char *ns)
{
	return hmap_put(&c->ns_dirty, ns, strlen(ns), SET_MEMBER, NULL);
}

/* SandboxRoutes naming the Service ns/name. */
static int mark_service_users(struct k8s_cache *c, const char *ns, const char *name)
{
	const struct k8s_group *g = name ? hmap_sget(&c->sbrs_by_ns, ns) : NULL;
	int err = 0;

	for (size_t i = 0; g && i < g->n && !err; i++) {
		const struct k8s_sbr *r = g->v[i];

		if (!strcmp(r->service, name))
			err = mark_dirty(c, r);
	}
	return err;
}

/* SandboxRoutes whose selector picks pod p. */
static int mark_pod_users(struct k8s_cache *c, const struct k8s_pod *p)
{
	const struct k8s_group *g = hmap_sget(&c->sbrs_by_ns, p->m.ns);
	int err = 0;

	for (size_t i = 0; g && i < g->n && !err; i++) {
		const struct k8s_sbr *r = g->v[i];

		if (!r->naddrs && k8s_selector_match(r, p->labels, p->nlabels))
			err = mark_dirty(c, r);
	}
	return err;
}

/* Pod pod_id appeared, went or changed its addresses or phase: the slices
 * naming it are checked again, and where that changes what counts, the
 * SandboxRoutes of their Service are translated again. */
static int pod_slices_changed(struct k8s_cache *c, const char *pod_id)
{
	const struct k8s_group *g = hmap_sget(&c->slices_by_pod, pod_id);
	int err = 0;

	for (size_t i = 0; g && i < g->n; i++) {
		struct k8s_slice *sl = g->v[i];

		if (slice_check(c, sl)) {
			err = err ? err : mark_service_users(c, sl->m.ns, sl->service);
			c->ovr_dirty |= c->objs[K8S_SBO].n > 0;
		}
	}
	return err;
}

/* What a slice needs of a Pod: the same? */
static bool pod_addr_same(const struct k8s_pod *a, const struct k8s_pod *b)
{
	return a->ended == b->ended && a->nips == b->nips &&
	       !memcmp(a->ips, b->ips, sizeof(a->ips));
}

/* Pods change often (status heartbeats, container restarts) in ways that
 * do not matter here: only labels, readiness and addresses do. */
static bool pod_same(const struct k8s_pod *a, const struct k8s_pod *b)
{
	if (a->ready != b->ready || !pod_addr_same(a, b) || a->local != b->local ||
	    (a->local && (a->capture != b->capture || a->host_network != b->host_network)) ||
	    a->nlabels != b->nlabels || !a->uid != !b->uid || (a->uid && strcmp(a->uid, b->uid)))
		return false;
	for (size_t i = 0; i < a->nlabels; i++)
		if (strcmp(a->labels[i].key, b->labels[i].key) ||
		    strcmp(a->labels[i].val, b->labels[i].val))
			return false;
	return true;
}

/* ---- the desired routes ----------------------------------------------------- */

static int note_changed(struct k8s_cache *c, const struct shunt_route_key *k)
{
	return hmap_put(&c->changed, k, sizeof(*k), SET_MEMBER, NULL);
}

static int route_cmp(const void *pa, const void *pb)
{
	const struct k8s_route *a = pa, *b = pb;

	return memcmp(&a->k, &b->k, sizeof(a->k));
}

/* An object's routes are sorted by key (k8s_sbr_routes()). */
static const struct k8s_route *sbr_find_route(const struct k8s_sbr *r,
					      const struct shunt_route_key *k)
{
	struct k8s_route want = {.k = *k};

	return bsearch(&want, r->routes, r->nroutes, sizeof(*r->routes), route_cmp);
}

/* Withdraw the first n routes r claimed; the oldest other SandboxRoute
 * producing the same route (a conflict) takes over. */
static int release_n(struct k8s_cache *c, struct k8s_sbr *r, size_t n)
{
	int err = 0;

	for (size_t i = 0; i < n; i++) {
		const struct shunt_route_key *k = &r->routes[i].k;
		struct k8s_desired *d = hmap_get(&c->desired, k, sizeof(*k));

		if (!d || !d->n)
			continue;
		if (d->owner == r && d->n == 1) {
			d->owner = NULL;
			c->nroutes--;
		} else if (d->owner == r) {
			size_t b = 0;

			for (size_t j = 1; j < d->n - 1; j++)
				if (sbr_cmp(d->more[j], d->more[b]) < 0)
					b = j;
			d->owner = d->more[b];
			d->more[b] = d->more[d->n - 2];
			d->v = sbr_find_route(d->owner, k)->v;
		} else {
			for (size_t j = 0; j < d->n - 1; j++)
				if (d->more[j] == r) {
					d->more[j] = d->more[d->n - 2];
					break;
				}
		}
		if (--d->n <= 1) {
			free(d->more);
			d->more = NULL;
			hmap_del(&c->contested, k, sizeof(*k));
		}
		err = err ? err : note_changed(c, k);
	}
	r->claimed = false;
	return err;
}

static int release(struct k8s_cache *c, struct k8s_sbr *r)
{
	return r->claimed ? release_n(c, r, r->nroutes) : 0;
}

/* Claim r's routes into the desired set. */
static int claim(struct k8s_cache *c, struct k8s_sbr *r)
{
	int err = 0;
	size_t i;

	for (i = 0; i < r->nroutes; i++) {
		const struct shunt_route_key *k = &r->routes[i].k;
		struct k8s_desired *d = hmap_get(&c->desired, k, sizeof(*k));

		if (!d) {
			d = calloc(1, sizeof(*d));
			if (!d || hmap_put(&c->desired, k, sizeof(*k), d, NULL)) {
				free(d);
				err = -ENOMEM;
				break;
			}
		}
		if (!d->n) {
			d->owner = r;
			d->v = r->routes[i].v;
			c->nroutes++;
		} else {
			const struct k8s_sbr **m = realloc(d->more, d->n * sizeof(*m));

			if (!m || hmap_put(&c->contested, k, sizeof(*k), SET_MEMBER, NULL)) {
				if (m)
					d->more = m;
				err = -ENOMEM;
				break;
			}
			d->more = m;
			if (sbr_cmp(r, d->owner) < 0) {
				m[d->n - 1] = d->owner;
				d->owner = r;
				d->v = r->routes[i].v;
			} else {
				m[d->n - 1] = r;
			}
		}
		d->n++;
		err = note_changed(c, k);
		if (err) {
			i++; /* counted: released below with the others */
			break;
		}
	}
	if (err) {
		/* Nothing half claimed: the recompute tries again. */
		release_n(c, r, i);
		return err;
	}
	r->claimed = true;
	return 0;
}

/* Can a change to an object of kind change what the SandboxOverrides
 * imply? */
static bool ovr_affected(const struct k8s_cache *c, enum k8s_kind kind)
{
	return kind == K8S_SBO || (kind != K8S_SBR && c->objs[K8S_SBO].n);
}

/* Undo what indexes old (about to be replaced or deleted) and mark what
 * depends on it. */
static int unhook(struct k8s_cache *c, enum k8s_kind kind, void *old)
{
	const struct k8s_meta *m = meta_of(old);
	int err = 0;

	switch (kind) {
	case K8S_SBR:
		err = release(c, old);
		obj_keys_ref(c, kind, old, -1);
		group_remove(&c->sbrs_by_ns, m->ns, old);
		err = err ? err : mark_ns(c, m->ns);
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
		break;
	case K8S_SBO:
		obj_keys_ref(c, kind, old, -1);
		break;
	case K8S_NKINDS:
		break;
	}
	return err;
}

int k8s_cache_put(struct k8s_cache *c, enum k8s_kind kind, void *obj)
{
	const struct k8s_meta *m = meta_of(obj);
	void *old = hmap_sget(&c->objs[kind], m->id);
	bool same_pod = kind == K8S_POD && old && pod_same(old, obj);
	int err = 0;

	if (kind == K8S_POD && !same_pod &&
	    (((struct k8s_pod *)obj)->local || (old && ((struct k8s_pod *)old)->local)))
		c->local_pods_gen++;

	if (old) {
		err = unhook(c, kind, old);
		if (kind == K8S_POD && !same_pod)
			err = err ? err : mark_pod_users(c, old);
	}
	if (hmap_put(&c->objs[kind], m->id, strlen(m->id), obj, NULL)) {
		/* The old object is still in the map: put it back where it
		 * was indexed, translate everything again, drop the new one. */
		if (old && kind == K8S_SLICE)
			slice_index(c, old, true);
		if (old && kind == K8S_POD)
			pod_index(c, old, true);
		if (old && kind == K8S_SBR)
			group_add(&c->sbrs_by_ns, m->ns, old);
		if (old)
			obj_keys_ref(c, kind, old, 1);
		c->all_dirty = true;
		k8s_obj_free(kind, obj);
		return -ENOMEM;
	}
	switch (kind) {
	case K8S_SBR:
		err = err ? err : group_add(&c->sbrs_by_ns, m->ns, obj);
		err = err ? err : obj_keys_ref(c, kind, obj, 1);
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
		if (!same_pod)
			err = err ? err : mark_pod_users(c, obj);
		if (!old || !pod_addr_same(old, obj))
			err = err ? err : pod_slices_changed(c, m->id);
		break;
	case K8S_SBO:
		err = err ? err : obj_keys_ref(c, kind, obj, 1);
		break;
	case K8S_NKINDS:
		break;
	}
	if (ovr_affected(c, kind) && !same_pod)
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
	int err;

	if (!old)
		return -ENOENT;
	err = unhook(c, kind, old);
	if (kind == K8S_POD) {
		if (((struct k8s_pod *)old)->local)
			c->local_pods_gen++;
		err = err ? err : mark_pod_users(c, old);
		err = err ? err : pod_slices_changed(c, meta_of(old)->id);
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
	struct hmap *objs = &c->objs[kind];
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	for (e = hmap_first(objs, &i); e; e = hmap_next(objs, e, &i)) {
		if (kind == K8S_SBR)
			err = err ? err : release(c, e->val);
		obj_keys_ref(c, kind, e->val, -1);
	}
	objs_free(objs, kind);
	if (kind == K8S_SLICE) {
		groups_free(&c->slices_by_svc);
		groups_free(&c->slices_by_pod);
	}
	if (kind == K8S_POD) {
		groups_free(&c->pods_by_ns);
		c->local_pods_gen++; /* pods may have come or gone unseen */
	}
	if (kind == K8S_SBR)
		groups_free(&c->sbrs_by_ns);
	for (e = hmap_first(fresh, &i); e; e = hmap_next(fresh, e, &i)) {
		const struct k8s_meta *m = meta_of(e->val);

		if (hmap_put(objs, m->id, strlen(m->id), e->val, NULL)) {
			k8s_obj_free(kind, e->val);
			err = -ENOMEM;
			continue;
		}
		if (kind == K8S_SLICE)
			err = err ? err : slice_index(c, e->val, true);
		if (kind == K8S_POD)
			err = err ? err : pod_index(c, e->val, true);
		if (kind == K8S_SBR)
			err = err ? err : group_add(&c->sbrs_by_ns, m->ns, e->val);
		err = err ? err : obj_keys_ref(c, kind, e->val, 1);
	}
	hmap_free(fresh);
	/* Other pods now: every slice's addresses are checked again. */
	if (kind == K8S_POD)
		for (e = hmap_first(&c->objs[K8S_SLICE], &i); e;
		     e = hmap_next(&c->objs[K8S_SLICE], e, &i))
			slice_check(c, e->val);
	c->all_dirty = true;
	if (ovr_affected(c, kind))
		c->ovr_dirty = true;
	return err;
}

int k8s_cache_put_json(struct k8s_cache *c, enum k8s_kind kind, const char *json, char *err,
		       size_t errlen)
{
	const struct k8s_decode_opts opts = {.node = c->node};
	struct json_object *o = json_tokener_parse(json);
	void *obj;
	int ret;

	if (!o) {
		snprintf(err, errlen, "not JSON");
		return -EINVAL;
	}
	ret = k8s_decode_ex(kind, o, &opts, &obj, err, errlen);
	json_object_put(o);
	return ret ? ret : k8s_cache_put(c, kind, obj);
}

static int addr_cmp(const struct shunt_addr *a, const struct shunt_addr *b)
{
	return memcmp(a->addr, b->addr, a->family == SHUNT_FAMILY_V4 ? 4 : 16);
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

/* The first of r's sandbox addresses outside every allowed prefix (the
 * administrator's --sandbox-cidr), or NULL. Explicit addresses are the
 * one way a SandboxRoute names something that is not a Pod of its own
 * namespace: only where the administrator says sandboxes live. */
static const struct shunt_addr *sbr_bad_addr(const struct k8s_cache *c, const struct k8s_sbr *r)
{
	for (size_t i = 0; i < r->naddrs; i++) {
		bool in = false;

		for (size_t j = 0; j < c->n_sandbox_cidrs && !in; j++)
			in = prefix_contains(&c->sandbox_cidrs[j], &r->addrs[i]);
		if (!in)
			return &r->addrs[i];
	}
	return NULL;
}

long k8s_sbr_routes(const struct k8s_cache *c, const struct k8s_sbr *r, uint64_t now_unix,
		    struct k8s_route **out)
{
	char id[K8S_ID_MAX];
	const struct k8s_service *svc;
	const struct k8s_group *slices;
	struct shunt_addr sb4 = {}, sb6 = {};
	struct route_vec rv = {};
	size_t w;
	int err = 0;

	*out = NULL;
	if ((r->expires_unix && r->expires_unix <= now_unix) || sbr_bad_addr(c, r))
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
				if (sl->valid[k])
					err = add_captured(&rv, r, sl->addrs[k], p->port, &sb4,
							   &sb6);
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
		char id[K8S_ID_MAX];
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
				if (sl->valid[k])
					best_of_family(t4, t6, sl->addrs[k], p->port);
		}
	}
}

/* What the pods connect to: the addresses with their ports. */
static int sbo_destinations(const struct k8s_cache *c, const struct k8s_sbo *o,
			    struct addr_vec *dst)
{
	char id[K8S_ID_MAX];
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
			if (sl->valid[k])
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
		if (p->ended || !p->local || !p->uid ||
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

static int sbo_age_cmp(const void *pa, const void *pb)
{
	const struct k8s_sbo *a = *(const struct k8s_sbo *const *)pa;
	const struct k8s_sbo *b = *(const struct k8s_sbo *const *)pb;

	return k8s_age_cmp(a->created_unix, a->m.id, b->created_unix, b->m.id);
}

/* One more override of loser that winner has: counted in ovr_lost under
 * "loser\0winner". */
static int ovr_note_lost(struct k8s_cache *c, const struct k8s_sbo *loser,
			 const struct k8s_sbo *winner)
{
	char key[2 * K8S_ID_MAX];
	size_t l = strlen(loser->m.id), w = strlen(winner->m.id);
	uintptr_t n;

	memcpy(key, loser->m.id, l + 1);
	memcpy(key + l + 1, winner->m.id, w);
	n = (uintptr_t)hmap_get(&c->ovr_lost, key, l + 1 + w);
	return hmap_put(&c->ovr_lost, key, l + 1 + w, (void *)(n + 1), NULL);
}

/* Every SandboxOverride again, into ovr_want. Two producing the same
 * (cgroup, destination): the older one wins, as for SandboxRoutes. */
static int ovr_recompute(struct k8s_cache *c, uint64_t now_unix)
{
	struct hmap *sbos = &c->objs[K8S_SBO];
	const struct k8s_sbo **v = NULL;
	struct hmap_entry *e;
	size_t i, n = 0;
	int err = 0;

	ovr_map_clear(&c->ovr_want);
	hmap_free(&c->ovr_lost);
	c->ovr_unresolved = 0;
	c->ovr_deadline = 0;
	if (sbos->n) {
		v = malloc(sbos->n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (e = hmap_first(sbos, &i); e; e = hmap_next(sbos, e, &i))
			v[n++] = e->val;
		qsort(v, n, sizeof(*v), sbo_age_cmp);
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
			const struct k8s_ovr_want *had =
				hmap_get(&c->ovr_want, &ovs[j].k, sizeof(ovs[j].k));
			struct k8s_ovr_want *ov;

			if (had) {
				err = ovr_note_lost(c, v[i], had->owner);
				continue;
			}
			ov = malloc(sizeof(*ov));
			if (!ov || hmap_put(&c->ovr_want, &ovs[j].k, sizeof(ovs[j].k), ov, NULL)) {
				free(ov);
				err = -ENOMEM;
				break;
			}
			ov->o = ovs[j];
			ov->owner = v[i];
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

/* Translate r again: its new routes replace the old ones (released if
 * they were claimed); its namespace's quota is settled afterwards. */
static int retranslate(struct k8s_cache *c, struct k8s_sbr *r, uint64_t now_unix)
{
	const struct shunt_addr *bad = sbr_bad_addr(c, r);
	struct k8s_route *routes;
	long n = k8s_sbr_routes(c, r, now_unix, &routes);
	int err;

	if (n < 0)
		return (int)n;
	r->cidr_refused = bad != NULL;
	if (bad)
		r->bad = *bad;
	/* The same routes (a pod's heartbeat, an unrelated endpoint): no
	 * change to report, and the quota is unchanged. */
	if ((size_t)n == r->nroutes &&
	    (!n || !memcmp(routes, r->routes, (size_t)n * sizeof(*routes)))) {
		free(routes);
		return 0;
	}
	err = release(c, r);
	if (err) {
		free(routes);
		return err;
	}
	free(r->routes);
	r->routes = routes;
	r->nroutes = (size_t)n;
	return mark_ns(c, r->m.ns);
}

static int sbr_age_qcmp(const void *pa, const void *pb)
{
	return sbr_cmp(*(const struct k8s_sbr *const *)pa, *(const struct k8s_sbr *const *)pb);
}

/* The quota of namespace ns: its SandboxRoutes, oldest first, get their
 * routes while the namespace's total stays within max_ns_routes; one
 * that would go over gets none (a whole object, never a part of one), and
 * a younger, smaller one may still fit. */
static int settle_ns(struct k8s_cache *c, const char *ns)
{
	const struct k8s_group *g = hmap_sget(&c->sbrs_by_ns, ns);
	struct k8s_sbr **v;
	size_t used = 0;
	int err = 0;

	if (!g)
		return 0;
	v = malloc(g->n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memcpy(v, g->v, g->n * sizeof(*v));
	qsort(v, g->n, sizeof(*v), sbr_age_qcmp);
	for (size_t i = 0; i < g->n && !err; i++) {
		struct k8s_sbr *r = v[i];

		if (r->nroutes && c->max_ns_routes && used + r->nroutes > c->max_ns_routes) {
			err = release(c, r);
			r->over_quota = true;
			r->quota_used = used;
			continue;
		}
		r->over_quota = false;
		used += r->nroutes;
		if (!r->claimed)
			err = claim(c, r);
	}
	free(v);
	return err;
}

bool k8s_cache_pending(const struct k8s_cache *c, uint64_t now_unix)
{
	return c->all_dirty || c->dirty.n || c->ns_dirty.n ||
	       (c->next_deadline && c->next_deadline <= now_unix) || c->ovr_dirty ||
	       (c->ovr_deadline && c->ovr_deadline <= now_unix);
}

int k8s_cache_recompute(struct k8s_cache *c, uint64_t now_unix)
{
	struct hmap *sbrs = &c->objs[K8S_SBR];
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	if (c->all_dirty) {
		for (e = hmap_first(sbrs, &i); e && !err; e = hmap_next(sbrs, e, &i))
			err = retranslate(c, e->val, now_unix);
		/* Every namespace: one that failed half way too. */
		for (e = hmap_first(&c->sbrs_by_ns, &i); e && !err;
		     e = hmap_next(&c->sbrs_by_ns, e, &i))
			err = mark_ns(c, e->key);
	} else {
		for (e = hmap_first(&c->dirty, &i); e && !err; e = hmap_next(&c->dirty, e, &i)) {
			struct k8s_sbr *r = hmap_get(sbrs, e->key, e->klen);

			if (r)
				err = retranslate(c, r, now_unix);
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
				err = retranslate(c, r, now_unix);
		} else if (!c->next_deadline || r->expires_unix < c->next_deadline) {
			c->next_deadline = r->expires_unix;
		}
	}
	for (e = hmap_first(&c->ns_dirty, &i); e && !err; e = hmap_next(&c->ns_dirty, e, &i))
		err = settle_ns(c, e->key);
	if (!err)
		hmap_free(&c->ns_dirty);
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
		   const struct k8s_sbr *owner)
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
	ov->v[ov->n].del = !owner;
	ov->v[ov->n].owner = owner ? owner->m.id : NULL;
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
				err = op_push(&ov, &k, &d->pub, NULL);
			if (!err) {
				hmap_del(&c->desired, &k, sizeof(k));
				free(d);
			}
		} else if (d && !full && (!d->published || memcmp(&d->pub, &d->v, sizeof(d->v)))) {
			err = op_push(&ov, &k, &d->v, d->owner);
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

		if (!d->n)
			continue;
		memcpy(&k, e->key, sizeof(k));
		err = op_push(&ov, &k, &d->v, d->owner);
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

/* ---- what is refused or lost ------------------------------------------------- */

struct prob_vec {
	struct k8s_problem *v;
	size_t n, cap;
};

static struct k8s_problem *prob_push(struct prob_vec *pv, enum k8s_kind kind, enum k8s_why why,
				     const char *id, const char *other, size_t n)
{
	struct k8s_problem *p;

	if (pv->n == pv->cap) {
		size_t cap = pv->cap ? pv->cap * 2 : 8;
		struct k8s_problem *v = realloc(pv->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		pv->v = v;
		pv->cap = cap;
	}
	p = &pv->v[pv->n++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->why = why;
	p->n = n;
	snprintf(p->id, sizeof(p->id), "%s", id);
	snprintf(p->other, sizeof(p->other), "%s", other ? other : "");
	return p;
}

static int prob_cmp(const void *pa, const void *pb)
{
	const struct k8s_problem *a = pa, *b = pb;
	int d;

	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if (a->why != b->why)
		return a->why < b->why ? -1 : 1;
	d = strcmp(a->id, b->id);
	return d ? d : strcmp(a->other, b->other);
}

/* Route conflicts, per (loser, winner): the contested routes' other
 * producers lost them to the owner. */
static int conflicts(const struct k8s_cache *c, struct prob_vec *pv)
{
	struct hmap pairs = {};
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	for (e = hmap_first(&c->contested, &i); e && !err; e = hmap_next(&c->contested, e, &i)) {
		const struct k8s_desired *d = hmap_get(&c->desired, e->key, e->klen);

		for (size_t j = 0; d && d->owner && j + 1 < d->n && !err; j++) {
			const void *key[2] = {d->more[j], d->owner};
			uintptr_t n = (uintptr_t)hmap_get(&pairs, key, sizeof(key));

			err = hmap_put(&pairs, key, sizeof(key), (void *)(n + 1), NULL);
		}
	}
	for (e = hmap_first(&pairs, &i); e && !err; e = hmap_next(&pairs, e, &i)) {
		const struct k8s_sbr *key[2];

		memcpy(key, e->key, sizeof(key));
		if (!prob_push(pv, K8S_SBR, K8S_WHY_CONFLICT, key[0]->m.id, key[1]->m.id,
			       (uintptr_t)e->val))
			err = -ENOMEM;
	}
	hmap_free(&pairs);
	for (e = hmap_first(&c->ovr_lost, &i); e && !err; e = hmap_next(&c->ovr_lost, e, &i)) {
		/* "loser\0winner" */
		if (!prob_push(pv, K8S_SBO, K8S_WHY_CONFLICT, e->key, e->key + strlen(e->key) + 1,
			       (uintptr_t)e->val))
			err = -ENOMEM;
	}
	return err;
}

/* An address without a port: "10.244.0.5", "fd00::5". */
static void addr_text(const struct shunt_addr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family == SHUNT_FAMILY_V4 ? AF_INET : AF_INET6, a->addr, buf,
		       (socklen_t)len))
		snprintf(buf, len, "?");
}

/* Does some SandboxRoute or SandboxOverride of namespace ns use Service
 * ns/svc? */
static bool service_used(const struct k8s_cache *c, const char *ns, const char *svc)
{
	const struct k8s_group *g = hmap_sget(&c->sbrs_by_ns, ns);
	const struct hmap *sbos = &c->objs[K8S_SBO];
	struct hmap_entry *e;
	size_t i;

	for (i = 0; g && i < g->n; i++)
		if (!strcmp(((const struct k8s_sbr *)g->v[i])->service, svc))
			return true;
	for (e = hmap_first(sbos, &i); e; e = hmap_next(sbos, e, &i)) {
		const struct k8s_sbo *o = e->val;

		if (!strcmp(o->m.ns, ns) && ((o->dst_service && !strcmp(o->dst_service, svc)) ||
					     (o->to_service && !strcmp(o->to_service, svc))))
			return true;
	}
	return false;
}

/* Slices of Services some object uses whose addresses do not count:
 * worth a look (a hand-written slice naming another namespace's pod, or a
 * pod not seen yet). Slices of Services nobody steers are nobody's
 * business here (external endpoints of a selector-less Service, say). */
static int ignored_endpoints(const struct k8s_cache *c, struct prob_vec *pv)
{
	const struct hmap *slices = &c->objs[K8S_SLICE];
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(slices, &i); e; e = hmap_next(slices, e, &i)) {
		const struct k8s_slice *sl = e->val;
		struct k8s_problem *p;

		if (!sl->ninvalid || !sl->service || !service_used(c, sl->m.ns, sl->service))
			continue;
		p = prob_push(pv, K8S_SLICE, K8S_WHY_ENDPOINTS, sl->m.id, NULL, sl->ninvalid);
		if (!p)
			return -ENOMEM;
		for (size_t k = 0; k < sl->naddrs; k++)
			if (!sl->valid[k]) {
				addr_text(&sl->addrs[k], p->detail, sizeof(p->detail));
				break;
			}
	}
	return 0;
}

long k8s_cache_problems(const struct k8s_cache *c, struct k8s_problem **out)
{
	struct prob_vec pv = {};
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	*out = NULL;
	for (e = hmap_first(&c->objs[K8S_SBR], &i); e && !err;
	     e = hmap_next(&c->objs[K8S_SBR], e, &i)) {
		const struct k8s_sbr *r = e->val;
		struct k8s_problem *p = NULL;
		char a[ADDR_STR_LEN];

		if (r->cidr_refused) {
			p = prob_push(&pv, K8S_SBR, K8S_WHY_CIDR, r->m.id, NULL, 0);
			if (p) {
				struct shunt_addr bad = r->bad;

				bad.port = r->port;
				snprintf(p->detail, sizeof(p->detail), "%s",
					 format_addr_port(&bad, a, sizeof(a)));
			}
		} else if (r->over_quota) {
			p = prob_push(&pv, K8S_SBR, K8S_WHY_QUOTA, r->m.id, NULL, r->nroutes);
			if (p)
				snprintf(p->detail, sizeof(p->detail), "%zu of %zu in use",
					 r->quota_used, c->max_ns_routes);
		} else {
			continue;
		}
		if (!p)
			err = -ENOMEM;
	}
	err = err ? err : conflicts(c, &pv);
	err = err ? err : ignored_endpoints(c, &pv);
	if (err) {
		free(pv.v);
		return -ENOMEM;
	}
	if (pv.n > 1)
		qsort(pv.v, pv.n, sizeof(*pv.v), prob_cmp);
	*out = pv.v;
	return (long)pv.n;
}
