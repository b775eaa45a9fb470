/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A byte-keyed hash map (separate chaining) for the Kubernetes caches:
 * objects by "namespace/name", groups by namespace or service, desired
 * routes by their map key. The map owns a copy of each key; values are the
 * caller's.
 */
#ifndef SHUNT_HMAP_H
#define SHUNT_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hmap_entry {
	struct hmap_entry *next;
	uint64_t hash;
	void *val;
	size_t klen;
	char key[]; /* klen bytes, then a NUL (string keys print as is) */
};

struct hmap {
	struct hmap_entry **b;
	size_t nb; /* power of two, or 0 before the first put */
	size_t n;
};

/* Zeroed memory is an empty map; hmap_free() frees the entries, not the
 * values. */
void hmap_free(struct hmap *m);
void *hmap_get(const struct hmap *m, const void *key, size_t klen);
/* Insert, or replace the value of an existing key (*old gets the previous
 * value, or NULL; old may be NULL). 0 or -ENOMEM. */
int hmap_put(struct hmap *m, const void *key, size_t klen, void *val, void **old);
/* Remove key; returns its value, or NULL when absent. */
void *hmap_del(struct hmap *m, const void *key, size_t klen);

/* Iteration: for (e = hmap_first(m, &i); e; e = hmap_next(m, e, &i)). The
 * entry e may be removed with hmap_del() only after hmap_next() moved past
 * it; no insertions while iterating. */
struct hmap_entry *hmap_first(const struct hmap *m, size_t *i);
struct hmap_entry *hmap_next(const struct hmap *m, const struct hmap_entry *e, size_t *i);

/* String keys. */
static inline void *hmap_sget(const struct hmap *m, const char *key)
{
	return hmap_get(m, key, __builtin_strlen(key));
}

#endif /* SHUNT_HMAP_H */
