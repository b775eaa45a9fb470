/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/core/json.c: quoted strings into a buffer (the
 * escaping itself is tested in test_log.c, its first user). */
#include <criterion/criterion.h>

#include "core/json.h"

Test(json_str, quoted_escaped_and_appended)
{
	struct buf b = {0};

	cr_assert_eq(buf_puts(&b, "{\"k\":"), 0);
	cr_assert_eq(json_str(&b, "caf\xc3\xa9 \"x\"\n\xff"), 0);
	cr_assert_eq(buf_puts(&b, ",\"n\":"), 0);
	cr_assert_eq(json_str(&b, NULL), 0);
	cr_assert_eq(buf_puts(&b, ",\"e\":"), 0);
	cr_assert_eq(json_strn(&b, "ab", 0), 0);
	cr_assert_eq(buf_puts(&b, "}"), 0);
	cr_assert_str_eq(buf_head(&b),
			 "{\"k\":\"caf\xc3\xa9 \\\"x\\\"\\n\\ufffd\",\"n\":null,\"e\":\"\"}");
	buf_free(&b);
}

Test(json_str, a_failed_buffer_stays_failed)
{
	struct buf b = {.max = 4};

	cr_assert_neq(json_str(&b, "too long"), 0);
	cr_assert(b.failed);
	cr_assert_neq(json_str(&b, ""), 0);
	buf_free(&b);
}
