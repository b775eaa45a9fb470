// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kernel/layout.h"

uint32_t layout_recorded_version(const struct layout *found, const struct shunt_abi_map *rec)
{
	if (!rec || strncmp(rec->name, found->name, sizeof(rec->name)))
		return 0;
	if (rec->type != found->type || rec->key_size != found->key_size ||
	    rec->value_size != found->value_size || rec->max_entries != found->max_entries)
		return 0;
	return rec->version;
}

static void say(char *why, size_t len, const char *fmt, const struct layout *want,
		const struct layout *found)
{
	if (!why || !len)
		return;
	snprintf(why, len, fmt, found->version, found->type, found->key_size, found->value_size,
		 found->max_entries, found->map_flags, want->version, want->type, want->key_size,
		 want->value_size, want->max_entries, want->map_flags);
}

/* Can every entry of found become an entry of want by layout_convert_value?
 * Same map and key; the value differs only in length; and the version is
 * the one this agent writes (or unknown, the sizes then say it all). */
static int convertible(const struct layout *want, const struct layout *found)
{
	if (found->type != want->type || found->key_size != want->key_size ||
	    found->map_flags != want->map_flags)
		return 0;
	return found->version == 0 || found->version == want->version;
}

enum layout_verdict layout_decide(const struct layout *want, const struct layout *found, int reset,
				  char *why, size_t len)
{
	int same = found->type == want->type && found->key_size == want->key_size &&
		   found->value_size == want->value_size &&
		   found->max_entries == want->max_entries && found->map_flags == want->map_flags;

	if (why && len)
		why[0] = '\0';
	if (same && (found->version == 0 || found->version == want->version))
		return LAYOUT_REUSE;
	say(why, len,
	    "layout v%u (type %u, key %u, value %u bytes, %u entries, flags %#x); "
	    "this agent's is v%u (type %u, key %u, value %u bytes, %u entries, flags %#x)",
	    want, found);
	if (want->cls == LAYOUT_TRANSIENT || reset)
		return LAYOUT_RECREATE;
	return convertible(want, found) ? LAYOUT_MIGRATE : LAYOUT_REFUSE;
}

int layout_convert_value(const void *old, uint32_t old_size, void *out, uint32_t new_size)
{
	const unsigned char *o = old;

	for (uint32_t i = new_size; i < old_size; i++)
		if (o[i])
			return -ERANGE; /* a field this agent does not know is set */
	memset(out, 0, new_size);
	memcpy(out, old, old_size < new_size ? old_size : new_size);
	return 0;
}

const char *layout_verdict_name(enum layout_verdict v)
{
	switch (v) {
	case LAYOUT_REUSE:
		return "reuse";
	case LAYOUT_RECREATE:
		return "recreate";
	case LAYOUT_MIGRATE:
		return "migrate";
	case LAYOUT_REFUSE:
		return "refuse";
	}
	return "?";
}

/* The maps whose layout an agent version defines. */
static const struct {
	const char *name;
	uint32_t version;
	enum layout_class cls;
} layout_table[] = {
	{"shunt_services", SHUNT_LAYOUT_SERVICES, LAYOUT_TRANSIENT},
	{"shunt_routes", SHUNT_LAYOUT_ROUTES, LAYOUT_DURABLE},
	{"shunt_orig", SHUNT_LAYOUT_ORIG, LAYOUT_TRANSIENT},
	{"shunt_conns", SHUNT_LAYOUT_CONNS, LAYOUT_TRANSIENT},
	{"shunt_conn_src", SHUNT_LAYOUT_CONN_SRC, LAYOUT_TRANSIENT},
	{"shunt_pod_limit", SHUNT_LAYOUT_POD_LIMIT, LAYOUT_TRANSIENT},
	{"shunt_overrides", SHUNT_LAYOUT_OVERRIDES, LAYOUT_DURABLE},
	{"shunt_listeners", SHUNT_LAYOUT_LISTENERS, LAYOUT_TRANSIENT},
	{"shunt_config", SHUNT_LAYOUT_CONFIG, LAYOUT_TRANSIENT},
	{"shunt_stats", SHUNT_LAYOUT_STATS, LAYOUT_TRANSIENT},
	{"shunt_inpod", SHUNT_LAYOUT_INPOD, LAYOUT_TRANSIENT},
	{"shunt_pod_socks", SHUNT_LAYOUT_POD_SOCKS, LAYOUT_TRANSIENT},
	{"shunt_pod_conns", SHUNT_LAYOUT_POD_CONNS, LAYOUT_TRANSIENT},
	{"shunt_tc_socks", SHUNT_LAYOUT_TC_SOCKS, LAYOUT_TRANSIENT},
	{"shunt_tc_conns", SHUNT_LAYOUT_TC_CONNS, LAYOUT_TRANSIENT},
};

void layout_of_name(const char *name, uint32_t *version, enum layout_class *cls)
{
	*version = 1;
	*cls = LAYOUT_TRANSIENT;
	for (size_t i = 0; i < sizeof(layout_table) / sizeof(layout_table[0]); i++) {
		if (!strcmp(layout_table[i].name, name)) {
			*version = layout_table[i].version;
			*cls = layout_table[i].cls;
		}
	}
}
