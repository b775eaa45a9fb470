/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests of the proxy's buffer policy on core/buf: a connection's
 * buffer grows by doubling from 16 KiB to its limit, and no further.
 */
#include <errno.h>
#include <string.h>
#include <criterion/criterion.h>

#include "proxy/proxy_int.h"

/* Fill b to its capacity, as a read would. */
static void fill(struct buf *b)
{
	size_t n = buf_room(b);

	memset(buf_tail(b), 'x', n);
	buf_commit(b, n);
}

Test(conn_buf, doubles_from_16k_to_the_limit)
{
	struct buf b = {0};
	size_t sizes[] = {16384, 32768, 65536};

	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(conn_buf_grow(&b, BUF_STREAM_MAX), 0);
		cr_assert_eq(b.end + buf_room(&b), sizes[i], "step %zu: %zu", i,
			     b.end + buf_room(&b));
		/* Room left: no growth. */
		cr_assert_eq(conn_buf_grow(&b, BUF_STREAM_MAX), 0);
		cr_assert_eq(b.end + buf_room(&b), sizes[i]);
		fill(&b);
	}
	cr_assert_eq(conn_buf_grow(&b, BUF_STREAM_MAX), -ENOBUFS);
	buf_free(&b);
}

Test(conn_buf, last_step_is_clamped_to_the_limit)
{
	struct buf b = {0};
	uint32_t limit = 65536 + 4096; /* a head limit: max_head_bytes + 4 KiB */

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(conn_buf_grow(&b, limit), 0);
		fill(&b);
	}
	cr_assert_eq(conn_buf_grow(&b, limit), 0);
	cr_assert_eq(b.end + buf_room(&b), limit);
	fill(&b);
	cr_assert_eq(conn_buf_grow(&b, limit), -ENOBUFS);
	/* Consumed bytes slid out make room again without growing. */
	b.start = 100;
	buf_compact(&b);
	cr_assert_eq(conn_buf_grow(&b, limit), 0);
	cr_assert_eq(buf_room(&b), 100);
	buf_free(&b);
}
