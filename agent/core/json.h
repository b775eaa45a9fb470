/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The one JSON string writer, for the log, the control socket and
 * anything else that prints JSON by hand.
 *
 * Escaping: '"' and '\' escaped; \n \r \t as such; other control bytes
 * and DEL as \u00XX; valid UTF-8 (no overlong forms, no surrogates,
 * nothing past U+10FFFF) kept as is; every byte of anything else as
 * \ufffd, so the output is always valid UTF-8 and valid JSON whatever
 * bytes came in. A byte is not written as \u00XX because that would
 * claim it was the code point U+00XX, which it was not. */
#ifndef SHUNT_JSON_H
#define SHUNT_JSON_H

#include <stddef.h>

#include "core/buf.h"

/* s[0..slen) escaped (no quotes) into out, NUL terminated. Returns the
 * length of the whole escaped text, like snprintf. */
size_t json_escape(char *out, size_t outsz, const char *s, size_t slen);
/* Append s[0..slen) as a quoted JSON string: 0, or buf_append's error. */
int json_strn(struct buf *b, const char *s, size_t slen);
/* Same for a C string; NULL is written as null. */
int json_str(struct buf *b, const char *s);

#endif /* SHUNT_JSON_H */
