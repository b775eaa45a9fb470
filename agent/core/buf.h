/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The one growable byte buffer: bytes are appended at the end and consumed
 * from the front; data[end] is always '\0' once anything was allocated, so
 * a text buffer is also a C string from buf_head(). */
#ifndef SHUNT_BUF_H
#define SHUNT_BUF_H

#include <stdbool.h>
#include <stddef.h>

#define BUF_FIRST_CAP 4096 /* first allocation, unless the limit is lower */

struct buf {
	char *data;
	size_t start; /* first byte not consumed yet */
	size_t end;   /* one past the last byte */
	size_t cap;   /* allocated, including the '\0' after end */
	size_t max;   /* 0: no limit; else cap never exceeds it */
	bool failed;  /* an append lost bytes (no memory, or past max) */
};

/* Room for n more bytes (and the '\0') after end: 0, -ENOBUFS when that
 * would pass max, -ENOMEM. Never sets failed: nothing was lost. */
int buf_reserve(struct buf *b, size_t n);
/* Append n bytes; on failure (as buf_reserve) sets failed and returns it.
 * After a failure appends do nothing until buf_reset. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Bytes written into buf_tail() (at most buf_room()) now belong to b. */
void buf_commit(struct buf *b, size_t n);
/* Drop n bytes from the front; an emptied buffer starts again at 0. */
void buf_consume(struct buf *b, size_t n);
/* Move the unconsumed bytes to the front of the allocation. */
void buf_compact(struct buf *b);
/* Empty, keeping the allocation; clears failed. */
void buf_reset(struct buf *b);
/* Release the memory; b is empty and reusable (max is kept). */
void buf_free(struct buf *b);

static inline size_t buf_len(const struct buf *b)
{
	return b->end - b->start;
}

static inline char *buf_head(const struct buf *b)
{
	return b->data + b->start;
}

static inline char *buf_tail(const struct buf *b)
{
	return b->data + b->end;
}

/* Bytes that can be written at buf_tail() without growing. */
static inline size_t buf_room(const struct buf *b)
{
	return b->cap > b->end ? b->cap - b->end - 1 : 0;
}

#endif /* SHUNT_BUF_H */
