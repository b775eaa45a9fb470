/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Routes live in a dense array (so foreach and sorted are plain scans and a
 * delete is a swap with the last entry) indexed by an open-addressing hash
 * table with linear probing. Deletion shifts later members of the probe run
 * back instead of leaving tombstones, so lookups never slow down as routes
 * come and go. A second open-addressing table counts routes per service,
 * because every add and delete asks for that count.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "core/hash.h"
#include "state/routes.h"

/* Initial number of slots in either index; a power of two. */
#define TABLE_MIN_SLOTS 16U

/* Slot values are entry index + 1, 0 meaning empty, so they fit a uint32. */
#define ROUTE_SLOT_EMPTY 0U
#define ROUTES_MAX	 (UINT32_MAX - 1U)

struct route_entry {
	struct shunt_route_key k;
	struct shunt_route v;
	uint64_t hash;
};

struct svc_slot {
	struct shunt_addr svc;
	uint32_t routes; /* 0 = empty slot */
	uint64_t hash;
};

struct route_table {
	struct route_entry *entries; /* dense, n used */
	size_t n;
	size_t entries_cap;
	uint32_t *slots; /* nslots, power of two, at most half full */
	size_t nslots;
	struct svc_slot *svcs; /* nsvcs_slots, power of two, at most half full */
	size_t nsvc_slots;
	size_t nsvcs;
	uint64_t seed; /* keys in lookups come from requests */
	uint64_t gen;  /* changes with every put and delete */
};

/* Only the bytes the family uses are copied, so an address built by hand
 * with junk in pad or addr[4..15] still makes the canonical key. */
static void addr_canon(struct shunt_addr *dst, const struct shunt_addr *src)
{
	memset(dst, 0, sizeof(*dst));
	if (!src)
		return;
	dst->family = src->family;
	dst->port = src->port;
	if (src->family == SHUNT_FAMILY_V4)
		memcpy(dst->addr, src->addr, 4);
	else
		memcpy(dst->addr, src->addr, sizeof(dst->addr));
}

void route_key_make(struct shunt_route_key *k, const struct shunt_addr *svc, const char *key,
		    size_t keylen)
{
	memset(k, 0, sizeof(*k));
	addr_canon(&k->service, svc);
	if (!key)
		return;
	if (keylen > SHUNT_ROUTE_KEY_LEN - 1)
		keylen = SHUNT_ROUTE_KEY_LEN - 1;
	/* Stop at a NUL: the key is a C string in the map, and bytes after
	 * an embedded NUL would make two equal strings unequal keys. */
	memcpy(k->key, key, strnlen(key, keylen));
}

int rk_validate(const char *key)
{
	size_t i, len;

	if (!key)
		return -EINVAL;
	len = strnlen(key, SHUNT_ROUTE_KEY_LEN);
	if (!len || len == SHUNT_ROUTE_KEY_LEN)
		return -EINVAL;
	for (i = 0; i < len; i++)
		if (!rk_key_byte_ok(key[i]))
			return -EINVAL;
	return 0;
}

struct route_table *route_table_new(void)
{
	struct route_table *t = calloc(1, sizeof(struct route_table));

	if (t)
		t->seed = hash_random_seed();
	return t;
}

/* Copy an array of n elements of size sz (NULL for none). */
static void *dup_array(const void *src, size_t n, size_t sz)
{
	void *d;

	if (!n)
		return NULL;
	d = malloc(n * sz);
	if (d)
		memcpy(d, src, n * sz);
	return d;
}

struct route_table *route_table_clone(const struct route_table *t)
{
	struct route_table *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	*c = *t;
	c->entries = dup_array(t->entries, t->n, sizeof(*t->entries));
	c->entries_cap = t->n;
	c->slots = dup_array(t->slots, t->nslots, sizeof(*t->slots));
	c->svcs = dup_array(t->svcs, t->nsvc_slots, sizeof(*t->svcs));
	if ((t->n && !c->entries) || (t->nslots && !c->slots) || (t->nsvc_slots && !c->svcs)) {
		route_table_free(c);
		return NULL;
	}
	return c;
}

uint64_t route_table_gen(const struct route_table *t)
{
	return t->gen;
}

void route_table_free(struct route_table *t)
{
	if (!t)
		return;
	free(t->entries);
	free(t->slots);
	free(t->svcs);
	free(t);
}

/* The slot that holds k, or the empty slot where it would go. */
static size_t route_slot_find(const struct route_table *t, const struct shunt_route_key *k,
			      uint64_t h)
{
	size_t mask = t->nslots - 1, i = (size_t)h & mask;

	for (;; i = (i + 1) & mask) {
		uint32_t s = t->slots[i];
		const struct route_entry *e;

		if (s == ROUTE_SLOT_EMPTY)
			return i;
		e = &t->entries[s - 1];
		if (e->hash == h && memcmp(&e->k, k, sizeof(*k)) == 0)
			return i;
	}
}

/* Rebuild the index with nslots slots from the dense array. */
static int route_index_resize(struct route_table *t, size_t nslots)
{
	uint32_t *slots = calloc(nslots, sizeof(*slots));
	size_t i, j, mask = nslots - 1;

	if (!slots)
		return -ENOMEM;
	for (i = 0; i < t->n; i++) {
		for (j = (size_t)t->entries[i].hash & mask; slots[j]; j = (j + 1) & mask)
			;
		slots[j] = (uint32_t)(i + 1);
	}
	free(t->slots);
	t->slots = slots;
	t->nslots = nslots;
	return 0;
}

static size_t svc_slot_find(const struct route_table *t, const struct shunt_addr *svc, uint64_t h)
{
	size_t mask = t->nsvc_slots - 1, i = (size_t)h & mask;

	for (;; i = (i + 1) & mask) {
		const struct svc_slot *s = &t->svcs[i];

		if (!s->routes)
			return i;
		if (s->hash == h && memcmp(&s->svc, svc, sizeof(*svc)) == 0)
			return i;
	}
}

static int svc_index_resize(struct route_table *t, size_t nslots)
{
	struct svc_slot *svcs = calloc(nslots, sizeof(*svcs));
	size_t i, j, mask = nslots - 1;

	if (!svcs)
		return -ENOMEM;
	for (i = 0; i < t->nsvc_slots; i++) {
		if (!t->svcs[i].routes)
			continue;
		for (j = (size_t)t->svcs[i].hash & mask; svcs[j].routes; j = (j + 1) & mask)
			;
		svcs[j] = t->svcs[i];
	}
	free(t->svcs);
	t->svcs = svcs;
	t->nsvc_slots = nslots;
	return 0;
}

/* Room for one more route and one more service, allocated before anything
 * changes so that a failed put leaves the table as it was. */
static int route_table_reserve(struct route_table *t)
{
	size_t want;
	int err;

	if (t->n >= ROUTES_MAX)
		return -ENOMEM;
	if (t->n == t->entries_cap) {
		struct route_entry *e;

		want = t->entries_cap ? t->entries_cap * 2 : TABLE_MIN_SLOTS;
		if (want > SIZE_MAX / sizeof(*e))
			return -ENOMEM;
		e = realloc(t->entries, want * sizeof(*e));
		if (!e)
			return -ENOMEM;
		t->entries = e;
		t->entries_cap = want;
	}
	/* Keep both indexes at most half full: short probe runs. */
	if ((t->n + 1) * 2 > t->nslots) {
		want = t->nslots ? t->nslots * 2 : TABLE_MIN_SLOTS;
		if (want > SIZE_MAX / sizeof(uint32_t))
			return -ENOMEM;
		err = route_index_resize(t, want);
		if (err)
			return err;
	}
	if ((t->nsvcs + 1) * 2 > t->nsvc_slots) {
		want = t->nsvc_slots ? t->nsvc_slots * 2 : TABLE_MIN_SLOTS;
		if (want > SIZE_MAX / sizeof(struct svc_slot))
			return -ENOMEM;
		err = svc_index_resize(t, want);
		if (err)
			return err;
	}
	return 0;
}

int route_table_put(struct route_table *t, const struct shunt_route_key *key,
		    const struct shunt_route *val, int *created)
{
	/* Copies: key and val may point into the table (a get() result),
	 * which growing or replacing would pull from under them. */
	const struct shunt_route_key k = *key;
	const struct shunt_route v = *val;
	uint64_t h = hash_bytes(&k, sizeof(k), t->seed);
	struct route_entry *e;
	struct svc_slot *s;
	size_t i;
	int err;

	if (t->nslots) {
		i = route_slot_find(t, &k, h);
		if (t->slots[i] != ROUTE_SLOT_EMPTY) {
			t->entries[t->slots[i] - 1].v = v;
			t->gen++;
			if (created)
				*created = 0;
			return 0;
		}
	}
	err = route_table_reserve(t);
	if (err)
		return err;

	t->gen++;
	e = &t->entries[t->n];
	e->k = k;
	e->v = v;
	e->hash = h;
	t->slots[route_slot_find(t, &k, h)] = (uint32_t)(t->n + 1);
	t->n++;

	h = hash_bytes(&k.service, sizeof(k.service), t->seed);
	s = &t->svcs[svc_slot_find(t, &k.service, h)];
	if (!s->routes) {
		s->svc = k.service;
		s->hash = h;
		t->nsvcs++;
	}
	s->routes++;
	if (created)
		*created = 1;
	return 0;
}

/* Empty slot i of a linear-probing index and move later members of its run
 * back into the gap when their home slot allows it (no tombstones). */
static void route_slot_remove(struct route_table *t, size_t i)
{
	size_t mask = t->nslots - 1, j = i, home;

	for (;;) {
		t->slots[i] = ROUTE_SLOT_EMPTY;
		for (;;) {
			j = (j + 1) & mask;
			if (t->slots[j] == ROUTE_SLOT_EMPTY)
				return;
			home = (size_t)t->entries[t->slots[j] - 1].hash & mask;
			/* Leave j where it is when its home lies cyclically in
			 * (i, j]: moving it to i would put it before its home. */
			if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
				continue;
			break;
		}
		t->slots[i] = t->slots[j];
		i = j;
	}
}

static void svc_slot_remove(struct route_table *t, size_t i)
{
	size_t mask = t->nsvc_slots - 1, j = i, home;

	for (;;) {
		memset(&t->svcs[i], 0, sizeof(t->svcs[i]));
		for (;;) {
			j = (j + 1) & mask;
			if (!t->svcs[j].routes)
				return;
			home = (size_t)t->svcs[j].hash & mask;
			if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
				continue;
			break;
		}
		t->svcs[i] = t->svcs[j];
		i = j;
	}
}

int route_table_del(struct route_table *t, const struct shunt_route_key *key)
{
	/* A copy: key may point into the entry that is about to move. */
	const struct shunt_route_key k = *key;
	uint64_t h = hash_bytes(&k, sizeof(k), t->seed);
	size_t i, idx, last;
	struct svc_slot *s;

	if (!t->n)
		return -ENOENT;
	i = route_slot_find(t, &k, h);
	if (t->slots[i] == ROUTE_SLOT_EMPTY)
		return -ENOENT;
	idx = t->slots[i] - 1;
	t->gen++;
	route_slot_remove(t, i);

	/* Fill the hole in the dense array with the last entry. */
	last = t->n - 1;
	if (idx != last) {
		i = route_slot_find(t, &t->entries[last].k, t->entries[last].hash);
		t->slots[i] = (uint32_t)(idx + 1);
		t->entries[idx] = t->entries[last];
	}
	t->n--;

	h = hash_bytes(&k.service, sizeof(k.service), t->seed);
	i = svc_slot_find(t, &k.service, h);
	s = &t->svcs[i];
	if (s->routes && --s->routes == 0) {
		svc_slot_remove(t, i);
		t->nsvcs--;
	}
	return 0;
}

const struct shunt_route *route_table_get(const struct route_table *t, const struct shunt_addr *svc,
					  const char *key, size_t keylen)
{
	struct shunt_route_key k;
	uint32_t s;
	uint64_t h;

	/* A longer key cannot be in the table; truncating it would match a
	 * different route. */
	if (!t || !t->n || keylen > SHUNT_ROUTE_KEY_LEN - 1)
		return NULL;
	route_key_make(&k, svc, key, keylen);
	h = hash_bytes(&k, sizeof(k), t->seed);
	s = t->slots[route_slot_find(t, &k, h)];
	return s == ROUTE_SLOT_EMPTY ? NULL : &t->entries[s - 1].v;
}

size_t route_table_count(const struct route_table *t)
{
	return t ? t->n : 0;
}

size_t route_table_service_count(const struct route_table *t, const struct shunt_addr *svc)
{
	struct shunt_addr a;

	if (!t || !t->nsvcs)
		return 0;
	addr_canon(&a, svc);
	return t->svcs[svc_slot_find(t, &a, hash_bytes(&a, sizeof(a), t->seed))].routes;
}

int route_table_foreach(const struct route_table *t,
			int (*fn)(const struct shunt_route_key *k, const struct shunt_route *v,
				  void *ctx),
			void *ctx)
{
	size_t i;
	int ret;

	if (!t)
		return 0;
	for (i = 0; i < t->n; i++) {
		ret = fn(&t->entries[i].k, &t->entries[i].v, ctx);
		if (ret)
			return ret;
	}
	return 0;
}

static int route_entry_cmp(const void *pa, const void *pb)
{
	const struct route_entry *a = pa, *b = pb;
	uint16_t pa_port, pb_port;
	int c;

	if (a->k.service.family != b->k.service.family)
		return a->k.service.family < b->k.service.family ? -1 : 1;
	/* Network byte order compares like the numbers it holds. */
	c = memcmp(a->k.service.addr, b->k.service.addr, sizeof(a->k.service.addr));
	if (c)
		return c;
	pa_port = a->k.service.port;
	pb_port = b->k.service.port;
	if (pa_port != pb_port)
		return pa_port < pb_port ? -1 : 1;
	return memcmp(a->k.key, b->k.key, sizeof(a->k.key));
}

long route_table_sorted(const struct route_table *t, struct shunt_route_key **keys,
			struct shunt_route **vals)
{
	struct route_entry *tmp;
	size_t i, n = route_table_count(t);

	*keys = NULL;
	*vals = NULL;
	if (n == 0)
		return 0;
	tmp = malloc(n * sizeof(*tmp));
	*keys = malloc(n * sizeof(**keys));
	*vals = malloc(n * sizeof(**vals));
	if (!tmp || !*keys || !*vals) {
		free(tmp);
		free(*keys);
		free(*vals);
		*keys = NULL;
		*vals = NULL;
		return -ENOMEM;
	}
	memcpy(tmp, t->entries, n * sizeof(*tmp));
	qsort(tmp, n, sizeof(*tmp), route_entry_cmp);
	for (i = 0; i < n; i++) {
		(*keys)[i] = tmp[i].k;
		(*vals)[i] = tmp[i].v;
	}
	free(tmp);
	return (long)n;
}
