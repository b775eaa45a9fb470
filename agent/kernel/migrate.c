// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Pinned maps of another layout: read, decide (kernel/layout.c), then
 * drop, migrate or refuse. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "core/log.h"
#include "kernel/layout.h"

#define ABI_MAP "shunt_abi"

/* What the previous agent recorded in shunt_abi, if it did. */
static int abi_read(const char *pin_dir, struct shunt_abi_map recs[SHUNT_ABI_SLOTS])
{
	char path[512];
	int fd;

	memset(recs, 0, sizeof(struct shunt_abi_map) * SHUNT_ABI_SLOTS);
	snprintf(path, sizeof(path), "%s/%s", pin_dir, ABI_MAP);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0; /* an agent older than shunt_abi, or none */
	for (__u32 i = 0; i < SHUNT_ABI_SLOTS; i++)
		if (bpf_map_lookup_elem(fd, &i, &recs[i]))
			memset(&recs[i], 0, sizeof(recs[i]));
	close(fd);
	return 0;
}

static const struct shunt_abi_map *abi_find(const struct shunt_abi_map recs[SHUNT_ABI_SLOTS],
					    const char *name)
{
	for (int i = 0; i < (int)SHUNT_ABI_SLOTS; i++)
		if (recs[i].name[0] && !strncmp(recs[i].name, name, sizeof(recs[i].name)))
			return &recs[i];
	return NULL;
}

static void layout_want(const struct bpf_map *map, struct layout *l)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", bpf_map__name(map));
	layout_of_name(l->name, &l->version, &l->cls);
	l->type = (uint32_t)bpf_map__type(map);
	l->key_size = bpf_map__key_size(map);
	l->value_size = bpf_map__value_size(map);
	l->max_entries = bpf_map__max_entries(map);
	l->map_flags = bpf_map__map_flags(map);
}

/* The pinned map's layout; its fd stays open in *fd. 0, or -ENOENT. */
static int layout_found(const char *path, const struct layout *want,
			const struct shunt_abi_map recs[SHUNT_ABI_SLOTS], struct layout *l, int *fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	*fd = bpf_obj_get(path);
	if (*fd < 0)
		return -ENOENT;
	if (bpf_obj_get_info_by_fd(*fd, &info, &len)) {
		close(*fd);
		*fd = -1;
		return -ENOENT;
	}
	*l = *want;
	l->type = info.type;
	l->key_size = info.key_size;
	l->value_size = info.value_size;
	l->max_entries = info.max_entries;
	l->map_flags = info.map_flags;
	l->version = layout_recorded_version(l, abi_find(recs, want->name));
	return 0;
}

/* Every entry of the pinned map fd, converted to want's value size. */
static int read_moved(int fd, const struct layout *want, const struct layout *found,
		      struct layout_moved *m)
{
	unsigned char key[256], next[256], *old;
	void *prev = NULL;
	int err = 0;

	memset(m, 0, sizeof(*m));
	m->old_fd = -1;
	snprintf(m->name, sizeof(m->name), "%s", want->name);
	m->key_size = want->key_size;
	m->value_size = want->value_size;
	if (found->key_size > sizeof(key))
		return -EINVAL;
	m->keys = calloc(found->max_entries, want->key_size);
	m->values = calloc(found->max_entries, want->value_size);
	old = malloc(found->value_size);
	if (!m->keys || !m->values || !old) {
		free(old);
		return -ENOMEM;
	}
	while (m->n < (long)found->max_entries && !bpf_map_get_next_key(fd, prev, next)) {
		memcpy(key, next, found->key_size);
		prev = key;
		if (bpf_map_lookup_elem(fd, key, old))
			continue; /* deleted meanwhile */
		err = layout_convert_value(old, found->value_size,
					   m->values + (size_t)m->n * want->value_size,
					   want->value_size);
		if (err)
			break;
		memcpy(m->keys + (size_t)m->n * want->key_size, key, want->key_size);
		m->n++;
	}
	free(old);
	return err;
}

struct pin_seen {
	struct layout want, found;
	enum layout_verdict verdict;
	int fd;
	char why[320];
};

/* Decide for one map (pass 1); 1 when it has a pin to deal with. */
static int pin_decide(struct bpf_map *map, const struct shunt_abi_map recs[SHUNT_ABI_SLOTS],
		      int reset, struct pin_seen *s, struct layout_plan *plan)
{
	const char *path = bpf_map__pin_path(map);
	int err;

	if (!path || !strcmp(bpf_map__name(map), ABI_MAP))
		return 0;
	layout_want(map, &s->want);
	if (layout_found(path, &s->want, recs, &s->found, &s->fd))
		return 0;
	s->verdict = layout_decide(&s->want, &s->found, reset, s->why, sizeof(s->why));
	if (s->verdict != LAYOUT_MIGRATE)
		return 1;
	err = read_moved(s->fd, &s->want, &s->found, &plan->moved[plan->n_moved]);
	if (err) {
		size_t n = strlen(s->why);

		free(plan->moved[plan->n_moved].keys);
		free(plan->moved[plan->n_moved].values);
		snprintf(s->why + n, sizeof(s->why) - n, "; an entry does not convert (%s)",
			 strerror(-err));
		s->verdict = LAYOUT_REFUSE;
		return 1;
	}
	plan->n_moved++;
	return 1;
}

/* Pass 2, every map decided and none refused: drop the stale pins (a
 * migrated map's fd moves to m, to pin it back should the load fail). */
static void pin_act(const char *path, struct pin_seen *s, struct layout_moved *m)
{
	long moved = m ? m->n : 0;

	if (s->verdict == LAYOUT_REUSE)
		return;
	if (s->verdict == LAYOUT_MIGRATE)
		pr_warn("%s: %s: migrating its %ld entries to a new map", path, s->why, moved);
	else
		pr_warn("%s: %s: dropping it for a new one (%s)", path, s->why,
			s->want.cls == LAYOUT_DURABLE ? "--reset-maps" : "the agent refills it");
	if (unlink(path)) {
		pr_warn("unpin %s: %s", path, strerror(errno));
		return;
	}
	if (m) {
		m->old_fd = s->fd;
		snprintf(m->path, sizeof(m->path), "%s", path);
		s->fd = -1;
	}
}

int layout_prepare(struct bpf_object *obj, const char *pin_dir, int reset, struct layout_plan *plan)
{
	struct shunt_abi_map recs[SHUNT_ABI_SLOTS];
	struct pin_seen seen[SHUNT_ABI_SLOTS];
	struct bpf_map *maps[SHUNT_ABI_SLOTS];
	struct bpf_map *map;
	int n = 0, refused = 0, moved = 0;

	memset(plan, 0, sizeof(*plan));
	abi_read(pin_dir, recs);
	bpf_object__for_each_map(map, obj)
	{
		if (n == (int)SHUNT_ABI_SLOTS)
			break;
		memset(&seen[n], 0, sizeof(seen[n]));
		seen[n].fd = -1;
		if (!pin_decide(map, recs, reset, &seen[n], plan))
			continue;
		maps[n] = map;
		if (seen[n].verdict == LAYOUT_REFUSE) {
			refused++;
			pr_err("%s: %s, and it cannot be converted", bpf_map__pin_path(map),
			       seen[n].why);
		}
		n++;
	}
	if (refused) {
		pr_err("pinned maps of another shunt version in %s: start the version that pinned "
		       "them, or start this one with --reset-maps to drop them (routes and "
		       "overrides in them are lost; --config and Kubernetes bring theirs back), "
		       "or remove them by hand: rm %s/shunt_*",
		       pin_dir, pin_dir);
		layout_plan_free(plan);
	}
	for (int i = 0; i < n; i++) {
		if (!refused)
			pin_act(bpf_map__pin_path(maps[i]), &seen[i],
				seen[i].verdict == LAYOUT_MIGRATE ? &plan->moved[moved++] : NULL);
		if (seen[i].fd >= 0)
			close(seen[i].fd);
	}
	return refused ? -EEXIST : 0;
}

static int write_moved(struct bpf_object *obj, const struct layout_moved *m)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, m->name);
	int fd = map ? bpf_map__fd(map) : -1;

	if (fd < 0)
		return -ENOENT;
	for (long i = 0; i < m->n; i++) {
		if (bpf_map_update_elem(fd, m->keys + (size_t)i * m->key_size,
					m->values + (size_t)i * m->value_size, BPF_NOEXIST)) {
			int err = -errno;

			pr_err("migrate %s: entry %ld of %ld: %s", m->name, i + 1, m->n,
			       strerror(-err));
			return err;
		}
	}
	pr_info("%s: migrated %ld entries", m->name, m->n);
	return 0;
}

/* Nothing to pin back once the new map holds the entries. */
static void moved_done(struct layout_moved *m)
{
	if (m->old_fd >= 0)
		close(m->old_fd);
	m->old_fd = -1;
}

/* Record every pinned map's layout for the next agent. */
static int abi_write(struct bpf_object *obj)
{
	struct bpf_map *abi = bpf_object__find_map_by_name(obj, ABI_MAP), *map;
	__u32 i = 0;

	if (!abi)
		return -ENOENT;
	bpf_object__for_each_map(map, obj)
	{
		struct shunt_abi_map rec = {};
		struct layout l;

		if (map == abi || !bpf_map__pin_path(map) || i == SHUNT_ABI_SLOTS)
			continue;
		layout_want(map, &l);
		memcpy(rec.name, l.name, sizeof(rec.name));
		rec.version = l.version;
		rec.type = l.type;
		rec.key_size = l.key_size;
		rec.value_size = l.value_size;
		rec.max_entries = l.max_entries;
		rec.map_flags = l.map_flags;
		if (bpf_map_update_elem(bpf_map__fd(abi), &i, &rec, BPF_ANY))
			return -errno;
		i++;
	}
	for (struct shunt_abi_map none = {}; i < SHUNT_ABI_SLOTS; i++)
		if (bpf_map_update_elem(bpf_map__fd(abi), &i, &none, BPF_ANY))
			return -errno;
	return 0;
}

int layout_finish(struct bpf_object *obj, struct layout_plan *plan)
{
	int err = 0;

	for (int i = 0; i < plan->n_moved && !err; i++) {
		err = write_moved(obj, &plan->moved[i]);
		if (!err)
			moved_done(&plan->moved[i]);
	}
	if (!err)
		layout_plan_free(plan);
	if (!err) {
		err = abi_write(obj);
		if (err)
			pr_err("record the maps' layout in %s: %s", ABI_MAP, strerror(-err));
	}
	return err;
}

void layout_plan_free(struct layout_plan *plan)
{
	for (int i = 0; i < plan->n_moved; i++) {
		struct layout_moved *m = &plan->moved[i];

		if (m->old_fd >= 0) {
			/* The load failed (or the copy): the old map goes back
			 * where it was, the next start finds it again. */
			if (bpf_obj_pin(m->old_fd, m->path) && errno != EEXIST)
				pr_err("pin %s back: %s (its entries are lost)", m->path,
				       strerror(errno));
			close(m->old_fd);
		}
		free(m->keys);
		free(m->values);
	}
	memset(plan, 0, sizeof(*plan));
}
