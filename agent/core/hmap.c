// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/hmap.h"

#define HMAP_MIN_BUCKETS 16U

/* The keys are names chosen by cluster users, not by whoever sends
 * requests through the proxy: no seed needed. */
static uint64_t hmap_hash(const void *p, size_t len)
{
	return hash_bytes(p, len, 0);
}

void hmap_free(struct hmap *m)
{
	for (size_t i = 0; i < m->nb; i++) {
		struct hmap_entry *e = m->b[i], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

static struct hmap_entry **hmap_slot(const struct hmap *m, const void *key, size_t klen, uint64_t h)
{
	struct hmap_entry **pp = &m->b[h & (m->nb - 1)];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->klen == klen && !memcmp((*pp)->key, key, klen))
			break;
	return pp;
}

void *hmap_get(const struct hmap *m, const void *key, size_t klen)
{
	struct hmap_entry **pp;

	if (!m->nb)
		return NULL;
	pp = hmap_slot(m, key, klen, hmap_hash(key, klen));
	return *pp ? (*pp)->val : NULL;
}

static int hmap_grow(struct hmap *m)
{
	size_t nb = m->nb ? m->nb * 2 : HMAP_MIN_BUCKETS;
	struct hmap_entry **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < m->nb; i++) {
		struct hmap_entry *e = m->b[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return 0;
}

int hmap_put(struct hmap *m, const void *key, size_t klen, void *val, void **old)
{
	uint64_t h = hmap_hash(key, klen);
	struct hmap_entry **pp, *e;

	if (old)
		*old = NULL;
	if ((m->n + 1 > m->nb) && hmap_grow(m))
		return -ENOMEM;
	pp = hmap_slot(m, key, klen, h);
	if (*pp) {
		if (old)
			*old = (*pp)->val;
		(*pp)->val = val;
		return 0;
	}
	e = malloc(sizeof(*e) + klen + 1);
	if (!e)
		return -ENOMEM;
	e->next = NULL;
	e->hash = h;
	e->val = val;
	e->klen = klen;
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	*pp = e;
	m->n++;
	return 0;
}

void *hmap_del(struct hmap *m, const void *key, size_t klen)
{
	struct hmap_entry **pp, *e;
	void *val;

	if (!m->nb)
		return NULL;
	pp = hmap_slot(m, key, klen, hmap_hash(key, klen));
	e = *pp;
	if (!e)
		return NULL;
	*pp = e->next;
	val = e->val;
	free(e);
	m->n--;
	return val;
}

struct hmap_entry *hmap_first(const struct hmap *m, size_t *i)
{
	for (*i = 0; *i < m->nb; (*i)++)
		if (m->b[*i])
			return m->b[*i];
	return NULL;
}

struct hmap_entry *hmap_next(const struct hmap *m, const struct hmap_entry *e, size_t *i)
{
	if (e->next)
		return e->next;
	for ((*i)++; *i < m->nb; (*i)++)
		if (m->b[*i])
			return m->b[*i];
	return NULL;
}
