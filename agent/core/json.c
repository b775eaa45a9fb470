// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "core/writer.h"

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t need;
	unsigned int cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		need = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		need = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* No overlong forms, no surrogates, nothing past U+10FFFF. */
	if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

static void w_json(struct writer *w, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run;

	while (i < n) {
		unsigned char c = u[i];
		char esc[8];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			for (run = i; run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' &&
				      u[run] != '\\';
			     run++)
				;
			w_put(w, s + i, run - i);
			i = run;
			continue;
		}
		if (c >= 0x80) {
			size_t ul = utf8_len(u + i, n - i);

			if (ul) {
				w_put(w, s + i, ul);
				i += ul;
			} else {
				w_str(w, "\\ufffd");
				i++;
			}
			continue;
		}
		switch (c) {
		case '"':
			w_str(w, "\\\"");
			break;
		case '\\':
			w_str(w, "\\\\");
			break;
		case '\n':
			w_str(w, "\\n");
			break;
		case '\r':
			w_str(w, "\\r");
			break;
		case '\t':
			w_str(w, "\\t");
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			w_str(w, esc);
			break;
		}
		i++;
	}
}

size_t json_escape(char *out, size_t outsz, const char *s, size_t slen)
{
	struct writer w = {.buf = out, .len = outsz};

	w_json(&w, s, slen);
	if (outsz)
		out[w.pos < outsz ? w.pos : outsz - 1] = '\0';
	return w.pos;
}

int json_strn(struct buf *b, const char *s, size_t slen)
{
	size_t need = json_escape(NULL, 0, s, slen);
	int err;

	if (b->failed)
		return -ENOBUFS;
	err = buf_reserve(b, need + 2);
	if (err) {
		b->failed = true;
		return err;
	}
	buf_tail(b)[0] = '"';
	buf_commit(b, 1);
	json_escape(buf_tail(b), need + 1, s, slen);
	buf_commit(b, need);
	return buf_append(b, "\"", 1);
}

int json_str(struct buf *b, const char *s)
{
	return s ? json_strn(b, s, strlen(s)) : buf_append(b, "null", 4);
}
