// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * http_head_check() and http_sniff() over arbitrary bytes.
 *
 * Input: the bytes of a would-be request head (the proxy hands
 * http_head_check what llhttp accepted; here anything goes).
 *
 * Checks on an accepted head, each re-derived from the bytes rather than
 * from the checker's own state: every line ends in CRLF and the only empty
 * line is the last, no control bytes but HTAB, no obs-fold, every header
 * span lies inside the head with a token name and a trimmed value, the
 * framing matches the Content-Length / Transfer-Encoding headers (whose
 * values carry no tab and no trailing blank), and the header limit gives
 * 431 exactly when it is one short. For http_sniff: the answer is -1, 0 or
 * 1; once a prefix decides, every longer prefix decides the same (see
 * check_sniff() for the one exception); an acceptable head with a method
 * llhttp could know is sniffed as HTTP and none of its prefixes as "not
 * HTTP".
 */
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "proxy/http.h"

#define MAX_HDRS 16

static int tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int hdr_is(const struct http_header *h, const char *name)
{
	return h->name_len == strlen(name) && !strncasecmp(h->name, name, h->name_len);
}

static void check_accepted(const char *head, size_t len, const struct http_header *h,
			   const struct head_result *r)
{
	size_t ncl = 0, nte = 0;
	uint64_t cl = 0;

	FUZZ_CHECK(len >= 4 && !memcmp(head + len - 4, "\r\n\r\n", 4), "no CRLF CRLF at the end");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)head[i];

		if (c == '\r')
			FUZZ_CHECK(i + 1 < len && head[i + 1] == '\n', "bare CR at %zu", i);
		else if (c == '\n')
			FUZZ_CHECK(i > 0 && head[i - 1] == '\r', "bare LF at %zu", i);
		else
			FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f), "control byte %#x at %zu",
				   c, i);
		if (c == '\n' && i + 1 < len)
			FUZZ_CHECK(head[i + 1] != ' ' && head[i + 1] != '\t', "obs-fold at %zu",
				   i + 1);
	}
	FUZZ_CHECK(memmem(head, len, "\r\n\r\n", 4) == head + len - 4,
		   "an empty line before the end");
	FUZZ_CHECK(r->http_minor == 0 || r->http_minor == 1, "minor %d", r->http_minor);
	FUZZ_CHECK(r->n_headers <= MAX_HDRS, "%zu headers", r->n_headers);

	for (size_t k = 0; k < r->n_headers; k++) {
		const struct http_header *x = &h[k];

		FUZZ_CHECK(x->name > head && x->name + x->name_len < head + len, "name %zu outside",
			   k);
		FUZZ_CHECK(x->value >= x->name + x->name_len + 1 &&
				   x->value + x->value_len <= head + len - 4,
			   "value %zu outside", k);
		FUZZ_CHECK(x->name[-1] == '\n' && x->name[x->name_len] == ':',
			   "name %zu not a line", k);
		FUZZ_CHECK(k == 0 || x->name > h[k - 1].value, "header %zu out of order", k);
		for (size_t i = 0; i < x->name_len; i++)
			FUZZ_CHECK(tchar((unsigned char)x->name[i]), "name %zu byte %zu", k, i);
		for (size_t i = 0; i < x->value_len; i++)
			FUZZ_CHECK(x->value[i] != '\r' && x->value[i] != '\n', "CR/LF in value %zu",
				   k);
		if (x->value_len) {
			FUZZ_CHECK(x->value[0] != ' ' && x->value[0] != '\t' &&
					   x->value[x->value_len - 1] != ' ' &&
					   x->value[x->value_len - 1] != '\t',
				   "value %zu not trimmed", k);
		}
		if (hdr_is(x, "content-length") || hdr_is(x, "transfer-encoding")) {
			/* parsers disagree on tabs and trailing blanks there */
			FUZZ_CHECK(x->value[x->value_len] == '\r',
				   "framing value %zu with trailing blanks", k);
			FUZZ_CHECK(
				!memchr(x->name + x->name_len, '\t',
					(size_t)(x->value + x->value_len - x->name - x->name_len)),
				"framing value %zu with a tab", k);
		}
		if (hdr_is(x, "content-length")) {
			ncl++;
			cl = 0;
			FUZZ_CHECK(x->value_len > 0, "empty Content-Length accepted");
			for (size_t i = 0; i < x->value_len; i++) {
				FUZZ_CHECK(x->value[i] >= '0' && x->value[i] <= '9',
					   "Content-Length not digits");
				if (cl <= HTTP_MAX_CONTENT_LENGTH)
					cl = cl * 10 + (uint64_t)(x->value[i] - '0');
			}
		}
		if (hdr_is(x, "transfer-encoding")) {
			nte++;
			FUZZ_CHECK(x->value_len == 7 && !strncasecmp(x->value, "chunked", 7),
				   "Transfer-Encoding '%.*s' accepted", (int)x->value_len,
				   x->value);
		}
	}
	FUZZ_CHECK(ncl + nte <= 1, "%zu Content-Length, %zu Transfer-Encoding", ncl, nte);
	if (nte) {
		FUZZ_CHECK(r->body == BODY_CHUNKED && r->http_minor == 1,
			   "chunked: body %d minor %d", r->body, r->http_minor);
	} else if (ncl) {
		FUZZ_CHECK(r->body == BODY_LENGTH && r->content_length == cl &&
				   cl <= HTTP_MAX_CONTENT_LENGTH,
			   "length: body %d %llu vs %llu", r->body,
			   (unsigned long long)r->content_length, (unsigned long long)cl);
	} else {
		FUZZ_CHECK(r->body == BODY_NONE && r->content_length == 0, "no body: body %d",
			   r->body);
	}
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* A method llhttp could accept: all of its methods are capitals, '-' and
 * '_' (M-SEARCH, GET_PARAMETER). */
static int llhttp_like_method(const char *buf, size_t len)
{
	size_t i = 0;

	while (i < len && ((buf[i] >= 'A' && buf[i] <= 'Z') || buf[i] == '-' || buf[i] == '_'))
		i++;
	return i > 0 && i < len && buf[i] == ' ';
}

/*
 * The proxy sniffs every time bytes arrive, and acts on the first answer
 * that is not -1, so the answer must not depend on how the bytes were cut.
 * Prefixes are tried where it can change: the first bytes, around the first
 * LF, around 8 KiB, and the whole.
 *
 * One exception, by design: the sniffer looks at 8 KiB. A first line
 * longer than that, with no method token in front, is "not HTTP" when
 * 8 KiB of it arrive first and may be HTTP when the LF comes with them;
 * llhttp refuses such a request anyway, so it is tunnelled or refused,
 * never routed, either way.
 */
static void check_sniff(const char *buf, size_t len, int head_ok)
{
	const char *nl = memchr(buf, '\n', len);
	size_t cut[80], ncut = 0, first_at = 0;
	int first = -1, r;

	for (size_t i = 0; i <= len && i <= 48; i++)
		cut[ncut++] = i;
	if (nl) {
		for (size_t i = (size_t)(nl - buf); i <= len && i <= (size_t)(nl - buf) + 2; i++)
			cut[ncut++] = i;
	}
	for (size_t i = 8190; i <= 8194 && i <= len; i++)
		cut[ncut++] = i;
	cut[ncut++] = len;
	qsort(cut, ncut, sizeof(cut[0]), cmp_size);

	for (size_t i = 0; i < ncut; i++) {
		size_t n = cut[i];

		r = http_sniff(buf, n);
		FUZZ_CHECK(r >= -1 && r <= 1, "http_sniff(%zu) = %d", n, r);
		if (head_ok && llhttp_like_method(buf, len))
			FUZZ_CHECK(r != 0, "a valid request's first %zu bytes sniffed as not HTTP",
				   n);
		if (first == 0 && first_at >= 8192 && !memchr(buf, '\n', first_at))
			break; /* the exception above */
		if (first >= 0)
			FUZZ_CHECK(r == first, "the first %zu bytes say %d, the first %zu say %d",
				   first_at, first, n, r);
		else if (r >= 0)
			first = r, first_at = n;
	}
	if (head_ok && llhttp_like_method(buf, len))
		FUZZ_CHECK(http_sniff(buf, len) == 1, "a valid request is not sniffed as HTTP");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *head = (const char *)data;
	struct http_header *h = malloc(MAX_HDRS * sizeof(*h));
	struct head_result r, r2;
	int st;

	if (!h)
		abort();
	st = http_head_check(head, size, h, MAX_HDRS, &r);
	FUZZ_CHECK(st == 0 || st == 400 || st == 431, "status %d", st);
	FUZZ_CHECK((st == 0) == (r.reason == NULL), "status %d, reason %s", st,
		   r.reason ? r.reason : "(none)");
	if (st == 0) {
		check_accepted(head, size, h, &r);
		/* Exactly enough room, then one slot short. */
		FUZZ_CHECK(http_head_check(head, size, h, r.n_headers, &r2) == 0, "n_headers %zu",
			   r.n_headers);
		if (r.n_headers)
			FUZZ_CHECK(http_head_check(head, size, h, r.n_headers - 1, &r2) == 431,
				   "%zu headers fit in %zu slots", r.n_headers, r.n_headers - 1);
	}
	free(h);
	if (st == 431) {
		/* Room for more lines than the head has: never 431. */
		size_t room = size / 4 + 1;

		h = malloc(room * sizeof(*h));
		if (!h)
			abort();
		FUZZ_CHECK(http_head_check(head, size, h, room, &r2) != 431,
			   "431 with room for %zu headers", room);
		free(h);
	}

	check_sniff(head, size, st == 0);
	return 0;
}
