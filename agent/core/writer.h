/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A bounded text writer that counts like snprintf: it appends to buf
 * while there is room (always leaving a byte for the NUL the caller
 * writes) and counts everything, so the caller learns how long the whole
 * text is. The log line and the JSON string writer share it.
 */
#ifndef SHUNT_CORE_WRITER_H
#define SHUNT_CORE_WRITER_H

#include <stddef.h>
#include <string.h>

struct writer {
	char *buf;
	size_t len, pos;
};

static inline void w_put(struct writer *w, const char *s, size_t n)
{
	if (w->pos < w->len) {
		size_t room = w->len - 1 - w->pos;

		memcpy(w->buf + w->pos, s, n < room ? n : room);
	}
	w->pos += n;
}

static inline void w_str(struct writer *w, const char *s)
{
	w_put(w, s, strlen(s));
}

#endif
