/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests of the proxy's buffer policy on core/buf: a connection's
 * buffer grows by doubling from 16 KiB to its limit, and no further; a
 * first-size buffer let go of is kept (at most BUF_SPARE_MAX) and the next
 * connection's first buffer is that one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>

#include "proxy/proxy_int.h"

static struct proxy px; /* no spares: every first buffer is allocated */

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
		cr_assert_eq(conn_buf_grow(&px, &b, BUF_STREAM_MAX), 0);
		cr_assert_eq(b.end + buf_room(&b), sizes[i], "step %zu: %zu", i,
			     b.end + buf_room(&b));
		/* Room left: no growth. */
		cr_assert_eq(conn_buf_grow(&px, &b, BUF_STREAM_MAX), 0);
		cr_assert_eq(b.end + buf_room(&b), sizes[i]);
		fill(&b);
	}
	cr_assert_eq(conn_buf_grow(&px, &b, BUF_STREAM_MAX), -ENOBUFS);
	buf_free(&b);
}

Test(conn_buf, last_step_is_clamped_to_the_limit)
{
	struct buf b = {0};
	uint32_t limit = 65536 + 4096; /* a head limit: max_head_bytes + 4 KiB */

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(conn_buf_grow(&px, &b, limit), 0);
		fill(&b);
	}
	cr_assert_eq(conn_buf_grow(&px, &b, limit), 0);
	cr_assert_eq(b.end + buf_room(&b), limit);
	fill(&b);
	cr_assert_eq(conn_buf_grow(&px, &b, limit), -ENOBUFS);
	/* Consumed bytes slid out make room again without growing. */
	b.start = 100;
	buf_compact(&b);
	cr_assert_eq(conn_buf_grow(&px, &b, limit), 0);
	cr_assert_eq(buf_room(&b), 100);
	buf_free(&b);
}

Test(conn_buf, first_size_buffers_are_reused_and_bounded)
{
	struct proxy p = {0};
	struct buf b = {0}, big = {0};
	char *first;

	cr_assert_eq(conn_buf_grow(&p, &b, BUF_STREAM_MAX), 0);
	first = b.data;
	fill(&b);
	conn_buf_release(&p, &b);
	cr_assert_eq(p.n_spare, 1);
	cr_assert_null(b.data);
	cr_assert_eq(buf_len(&b), 0);
	/* the next first buffer is that one, empty and of the first size */
	cr_assert_eq(conn_buf_grow(&p, &b, BUF_STREAM_MAX), 0);
	cr_assert_eq(b.data, first);
	cr_assert_eq(p.n_spare, 0);
	cr_assert_eq(buf_len(&b), 0);
	cr_assert_eq(buf_room(&b), 16384);
	/* a grown buffer goes back to the allocator */
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(conn_buf_grow(&p, &big, BUF_STREAM_MAX), 0);
		fill(&big);
	}
	conn_buf_release(&p, &big);
	cr_assert_eq(p.n_spare, 0);
	/* at most BUF_SPARE_MAX are kept */
	for (int i = 0; i <= BUF_SPARE_MAX; i++) {
		struct buf t = {0};

		cr_assert_eq(conn_buf_grow(&px, &t, BUF_STREAM_MAX), 0);
		conn_buf_release(&p, &t);
	}
	cr_assert_eq(p.n_spare, BUF_SPARE_MAX);
	conn_buf_release(&p, &b);
	while (p.n_spare)
		free(p.spare[--p.n_spare]);
}
