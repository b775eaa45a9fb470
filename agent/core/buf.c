// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

int buf_reserve(struct buf *b, size_t n)
{
	size_t want, cap;
	char *d;

	if (b->cap > b->end && b->cap - b->end > n)
		return 0;
	if (b->end > (size_t)-1 - n - 1)
		return -ENOBUFS;
	want = b->end + n + 1;
	if (b->max && want > b->max)
		return -ENOBUFS;
	cap = b->cap ? b->cap : BUF_FIRST_CAP;
	while (cap < want)
		cap = cap > (size_t)-1 / 2 ? want : cap * 2;
	if (b->max && cap > b->max)
		cap = b->max;
	d = realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = cap;
	b->data[b->end] = '\0';
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int err;

	if (b->failed)
		return -ENOBUFS;
	err = buf_reserve(b, n);
	if (err) {
		b->failed = true;
		return err;
	}
	if (n)
		memcpy(b->data + b->end, p, n);
	buf_commit(b, n);
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, err;

	if (b->failed)
		return -ENOBUFS;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	err = buf_reserve(b, (size_t)n);
	if (err) {
		b->failed = true;
		return err;
	}
	va_start(ap, fmt);
	vsnprintf(b->data + b->end, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->end += (size_t)n;
	return 0;
}

void buf_commit(struct buf *b, size_t n)
{
	b->end += n;
	if (b->data)
		b->data[b->end] = '\0';
}

void buf_consume(struct buf *b, size_t n)
{
	if (n > buf_len(b))
		n = buf_len(b);
	b->start += n;
	if (b->start == b->end) {
		b->start = b->end = 0;
		if (b->data)
			b->data[0] = '\0';
	}
}

void buf_compact(struct buf *b)
{
	if (!b->start)
		return;
	memmove(b->data, b->data + b->start, buf_len(b) + 1);
	b->end -= b->start;
	b->start = 0;
}

void buf_reset(struct buf *b)
{
	b->start = b->end = 0;
	b->failed = false;
	if (b->data)
		b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
	size_t max = b->max;

	free(b->data);
	memset(b, 0, sizeof(*b));
	b->max = max;
}
