/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/core/buf.c: the growable byte buffer. */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/buf.h"

Test(buf, append_keeps_a_c_string)
{
	struct buf b = {0};

	cr_assert_eq(buf_puts(&b, "abc"), 0);
	cr_assert_eq(buf_append(&b, "de", 2), 0);
	cr_assert_eq(buf_len(&b), 5);
	cr_assert_str_eq(buf_head(&b), "abcde");
	buf_free(&b);
	cr_assert_null(b.data);
	cr_assert_eq(buf_len(&b), 0);
}

Test(buf, printf_grows_past_the_first_allocation)
{
	struct buf b = {0};
	char big[10000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(buf_printf(&b, "%d-", 42), 0);
	cr_assert_eq(buf_printf(&b, "%s|", big), 0);
	cr_assert_eq(buf_len(&b), 3 + sizeof(big) - 1 + 1);
	cr_assert_eq(strncmp(buf_head(&b), "42-xxx", 6), 0);
	cr_assert_eq(buf_head(&b)[buf_len(&b) - 1], '|');
	cr_assert(b.cap > buf_len(&b));
	buf_free(&b);
}

Test(buf, consume_from_the_front)
{
	struct buf b = {0};

	buf_puts(&b, "hello world");
	buf_consume(&b, 6);
	cr_assert_str_eq(buf_head(&b), "world");
	buf_compact(&b);
	cr_assert_eq(b.start, 0);
	cr_assert_str_eq(buf_head(&b), "world");
	buf_consume(&b, 100);
	cr_assert_eq(buf_len(&b), 0);
	cr_assert_eq(b.start, 0);
	cr_assert_eq(b.end, 0);
	buf_free(&b);
}

Test(buf, max_limits_growth_and_sets_failed)
{
	struct buf b = {.max = 8};

	cr_assert_eq(buf_append(&b, "1234567", 7), 0);
	cr_assert_eq(b.cap, 8);
	cr_assert_eq(buf_reserve(&b, 1), -ENOBUFS);
	cr_assert_not(b.failed, "reserve loses nothing");
	cr_assert_eq(buf_append(&b, "8", 1), -ENOBUFS);
	cr_assert(b.failed);
	cr_assert_eq(buf_append(&b, "", 0), -ENOBUFS, "appends stop after a failure");
	buf_reset(&b);
	cr_assert_not(b.failed);
	cr_assert_eq(buf_printf(&b, "%s", "ok"), 0);
	cr_assert_str_eq(buf_head(&b), "ok");
	buf_free(&b);
	cr_assert_eq(b.max, 8);
}

Test(buf, read_into_the_tail)
{
	struct buf b = {0};

	cr_assert_eq(buf_reserve(&b, 10), 0);
	cr_assert_geq(buf_room(&b), 10);
	memcpy(buf_tail(&b), "0123456789", 10);
	buf_commit(&b, 10);
	cr_assert_str_eq(buf_head(&b), "0123456789");
	buf_free(&b);
}
