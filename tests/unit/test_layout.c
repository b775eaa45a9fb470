/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/kernel/layout.c: what a new agent does with maps an
 * agent of another version pinned. */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "kernel/layout.h"

#define HASH 1U /* BPF_MAP_TYPE_HASH */

static struct layout routes(uint32_t version, uint32_t key, uint32_t value)
{
	struct layout l = {.name = "shunt_routes",
			   .version = version,
			   .type = HASH,
			   .key_size = key,
			   .value_size = value,
			   .max_entries = 16384,
			   .cls = LAYOUT_DURABLE};

	return l;
}

static enum layout_verdict decide(const struct layout *want, const struct layout *found, int reset)
{
	char why[320];
	enum layout_verdict v = layout_decide(want, found, reset, why, sizeof(why));

	if (v == LAYOUT_REUSE)
		cr_expect_str_empty(why);
	else
		cr_expect(strstr(why, "layout v"), "why: %s", why);
	return v;
}

Test(layout, same_layout_is_reused)
{
	struct layout want = routes(1, 84, 40), found = want;

	cr_expect_eq(decide(&want, &found, 0), LAYOUT_REUSE);
	found.version = 0; /* an agent older than shunt_abi, same sizes */
	cr_expect_eq(decide(&want, &found, 0), LAYOUT_REUSE);
}

Test(layout, durable_value_size_change_migrates)
{
	struct layout want = routes(1, 84, 40), older = routes(0, 84, 32),
		      newer = routes(1, 84, 48);

	cr_expect_eq(decide(&want, &older, 0), LAYOUT_MIGRATE);
	cr_expect_eq(decide(&want, &newer, 0), LAYOUT_MIGRATE);
	/* Same layout, other size (a default changed): copied over. */
	older = want;
	older.max_entries = 1024;
	cr_expect_eq(decide(&want, &older, 0), LAYOUT_MIGRATE);
}

Test(layout, durable_key_or_type_or_version_change_refuses)
{
	struct layout want = routes(1, 84, 40), found;

	found = routes(0, 80, 40);
	cr_expect_eq(decide(&want, &found, 0), LAYOUT_REFUSE);
	found = routes(1, 84, 40);
	found.type = 9; /* LRU hash */
	cr_expect_eq(decide(&want, &found, 0), LAYOUT_REFUSE);
	found = routes(1, 84, 40);
	found.map_flags = 1;
	cr_expect_eq(decide(&want, &found, 0), LAYOUT_REFUSE);
	/* Same sizes, another meaning: neither a newer nor an older version
	 * converts without a converter written for it. */
	found = routes(2, 84, 40);
	cr_expect_eq(decide(&want, &found, 0), LAYOUT_REFUSE);
	want.version = 2;
	found.version = 1;
	cr_expect_eq(decide(&want, &found, 0), LAYOUT_REFUSE);
}

Test(layout, reset_drops_what_would_be_refused)
{
	struct layout want = routes(1, 84, 40), found = routes(0, 80, 40);

	cr_expect_eq(decide(&want, &found, 1), LAYOUT_RECREATE);
	found = want;
	cr_expect_eq(decide(&want, &found, 1), LAYOUT_REUSE, "--reset-maps keeps a good map");
}

Test(layout, transient_maps_are_recreated)
{
	struct layout want = routes(1, 20, 32), found = routes(0, 16, 24);

	want.cls = found.cls = LAYOUT_TRANSIENT;
	cr_expect_eq(decide(&want, &found, 0), LAYOUT_RECREATE);
	found = want;
	found.max_entries = 4096;
	cr_expect_eq(decide(&want, &found, 0), LAYOUT_RECREATE);
}

Test(layout, why_names_both_layouts)
{
	struct layout want = routes(1, 84, 40), found = routes(0, 84, 32);
	char why[320];

	layout_decide(&want, &found, 0, why, sizeof(why));
	cr_expect_str_eq(why, "layout v0 (type 1, key 84, value 32 bytes, 16384 entries, flags 0); "
			      "this agent's is v1 (type 1, key 84, value 40 bytes, 16384 entries, "
			      "flags 0)");
	cr_expect_eq(layout_decide(&want, &found, 0, NULL, 0), LAYOUT_MIGRATE);
}

Test(layout, recorded_version_only_for_the_map_it_describes)
{
	struct layout found = routes(0, 84, 40);
	struct shunt_abi_map rec = {.name = "shunt_routes",
				    .version = 3,
				    .type = HASH,
				    .key_size = 84,
				    .value_size = 40,
				    .max_entries = 16384};

	cr_expect_eq(layout_recorded_version(&found, &rec), 3);
	cr_expect_eq(layout_recorded_version(&found, NULL), 0);
	rec.value_size = 32; /* re-created since by an agent that keeps no record */
	cr_expect_eq(layout_recorded_version(&found, &rec), 0);
	rec.value_size = 40;
	strcpy(rec.name, "shunt_conns");
	cr_expect_eq(layout_recorded_version(&found, &rec), 0);
}

Test(layout, values_grow_with_zeros)
{
	unsigned char old[4] = {1, 2, 3, 4}, out[8];

	memset(out, 0xaa, sizeof(out));
	cr_assert_eq(layout_convert_value(old, sizeof(old), out, sizeof(out)), 0);
	cr_expect_arr_eq(out, ((unsigned char[]){1, 2, 3, 4, 0, 0, 0, 0}), 8);
}

Test(layout, values_shrink_only_when_the_lost_bytes_are_zero)
{
	unsigned char old[8] = {1, 2, 3, 4, 0, 0, 0, 0}, out[4];

	cr_assert_eq(layout_convert_value(old, sizeof(old), out, sizeof(out)), 0);
	cr_expect_arr_eq(out, old, 4);
	old[6] = 7; /* a field this agent does not know, set */
	cr_expect_eq(layout_convert_value(old, sizeof(old), out, sizeof(out)), -ERANGE);
}

Test(layout, the_table_classes_operator_state_as_durable)
{
	uint32_t v;
	enum layout_class c;

	layout_of_name("shunt_routes", &v, &c);
	cr_expect_eq(c, LAYOUT_DURABLE);
	cr_expect_eq(v, SHUNT_LAYOUT_ROUTES);
	layout_of_name("shunt_overrides", &v, &c);
	cr_expect_eq(c, LAYOUT_DURABLE);
	layout_of_name("shunt_conns", &v, &c);
	cr_expect_eq(c, LAYOUT_TRANSIENT);
	layout_of_name("shunt_unknown", &v, &c);
	cr_expect_eq(c, LAYOUT_TRANSIENT);
	cr_expect_eq(v, 1);
}
