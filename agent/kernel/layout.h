/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Pinned maps across agent versions: what this agent expects of each
 * pinned map, what it found, and what to do about a difference. Pure (no
 * system calls): kernel/bpf.c does the reading, unpinning and copying.
 */
#ifndef SHUNT_AGENT_LAYOUT_H
#define SHUNT_AGENT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

enum layout_class {
	/* Rebuilt or refilled by the agent (services from routes, config and
	 * listeners at start) or short-lived (connection records, counters):
	 * a pin of another layout is dropped and created afresh. */
	LAYOUT_TRANSIENT,
	/* The only copy of operator state (routes, overrides): converted
	 * entry by entry, or the agent refuses to start. */
	LAYOUT_DURABLE,
};

struct layout {
	char name[SHUNT_MAP_NAME_LEN];
	uint32_t version; /* 0: unknown (no shunt_abi record) */
	uint32_t type, key_size, value_size, max_entries, map_flags;
	enum layout_class cls;
};

enum layout_verdict {
	LAYOUT_REUSE,	 /* the pin is what this agent expects: libbpf reuses it */
	LAYOUT_RECREATE, /* drop the pin; the load creates a new map */
	LAYOUT_MIGRATE,	 /* copy and convert the entries into a new map */
	LAYOUT_REFUSE,	 /* stop: the pin cannot be converted */
};

/* The version the shunt_abi record gives, trusted only when the record
 * describes the map actually pinned (an agent of an older version may have
 * re-created the map since without updating the record): 0 otherwise. */
uint32_t layout_recorded_version(const struct layout *found, const struct shunt_abi_map *rec);

/*
 * What to do with found, a pin where this agent wants want. reset: the
 * operator said the pinned state may be lost (--reset-maps). why (may be
 * NULL) gets a sentence on the difference, empty for LAYOUT_REUSE.
 */
enum layout_verdict layout_decide(const struct layout *want, const struct layout *found, int reset,
				  char *why, size_t len);

/* One value from the old layout into the new: the fields a newer layout
 * appends read zero (which every appended field must mean "as before"),
 * and a value shrinks only if the bytes it loses are zero. 0 or -ERANGE. */
int layout_convert_value(const void *old, uint32_t old_size, void *out, uint32_t new_size);

const char *layout_verdict_name(enum layout_verdict v);

/* The layout version and class this agent gives a map, by name; a map
 * the table does not know is transient at version 1. */
void layout_of_name(const char *name, uint32_t *version, enum layout_class *cls);

/* Entries read from a pin that is being migrated, to be written into the
 * new map once the object is loaded. */
struct layout_moved {
	char name[SHUNT_MAP_NAME_LEN];
	uint32_t key_size, value_size; /* the new layout's */
	long n;
	unsigned char *keys, *values;
	/* The old map, unpinned from path: pinned back if the load fails,
	 * so that its entries are never lost. */
	int old_fd;
	char path[512];
};

struct layout_plan {
	struct layout_moved moved[SHUNT_ABI_SLOTS];
	int n_moved;
};

struct bpf_object;

/*
 * Before loading obj: compare every map obj pins under pin_dir with the
 * pin there. Nothing is touched unless every map can be reused, recreated
 * or migrated; then stale pins are removed (migrated ones after their
 * entries are read into plan). 0, or -EEXIST having logged what to run.
 */
int layout_prepare(struct bpf_object *obj, const char *pin_dir, int reset,
		   struct layout_plan *plan);

/* After loading obj: write the migrated entries into the new maps, record
 * every map's layout in shunt_abi, and free plan. 0 or -errno. */
int layout_finish(struct bpf_object *obj, struct layout_plan *plan);

/* Free plan; migrated maps not yet written get their old pins back. */
void layout_plan_free(struct layout_plan *plan);

#endif /* SHUNT_AGENT_LAYOUT_H */
