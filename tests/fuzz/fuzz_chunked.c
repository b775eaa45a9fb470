// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * chunked_feed(), the streaming parser that decides where a chunked request
 * body ends: bytes a client controls, arriving in pieces of any size.
 *
 * Input: one byte seeding how the rest is cut into pieces (and the largest
 * piece), then the body bytes that follow a request head.
 *
 * The body is fed whole, in the seeded pieces (with empty feeds mixed in)
 * and one byte at a time. Every call returns at most what it was given,
 * and all of it unless it reported the end; the three feedings agree on
 * the outcome (the end at the same offset, or the same refusal, or "needs
 * more"); and that outcome is the one of a reference that reads the
 * RFC 9112 section 7.1 grammar, as narrowed by http.h, over the whole
 * buffer.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "proxy/http.h"

/* The limits http.c applies (not exported): an extension or trailer line,
 * all trailer bytes, hex digits of a size. */
#define REF_MAX_LINE	 4096
#define REF_MAX_TRAILERS 65536
#define REF_MAX_DIGITS	 15

enum outcome { MORE, DONE, BAD };

struct result {
	enum outcome o;
	size_t end; /* DONE: bytes of the body */
	const char *reason;
};

static const char *outcome_name(enum outcome o)
{
	return o == MORE ? "needs more" : o == DONE ? "done" : "refused";
}

/* Feed in pieces; sizes[] (count n, 0 allowed, not all 0) repeats until the
 * end; n == 0 feeds everything at once. */
static struct result feed(const char *p, size_t len, const size_t *sizes, size_t n)
{
	struct chunked ck;
	struct result res = {MORE, 0, NULL};
	size_t off = 0, k = 0;

	memset(&ck, 0, sizeof(ck));
	while (off < len) {
		size_t want = n ? sizes[k++ % n] : len;
		size_t piece = want < len - off ? want : len - off;
		const char *why = NULL;
		bool done = true; /* chunked_feed must set it */
		char *copy = fuzz_dup(p + off, piece);
		long r = chunked_feed(&ck, copy, piece, &done, &why);

		free(copy);
		if (r < 0) {
			FUZZ_CHECK(r == -1 && why, "r %ld, reason %s", r, why ? why : "(none)");
			res.o = BAD;
			res.reason = why;
			return res;
		}
		FUZZ_CHECK((size_t)r <= piece, "consumed %ld of %zu", r, piece);
		if (done) {
			FUZZ_CHECK(r > 0, "done without consuming a byte");
			res.o = DONE;
			res.end = off + (size_t)r;
			return res;
		}
		FUZZ_CHECK((size_t)r == piece, "not done yet consumed %ld of %zu", r, piece);
		off += piece;
	}
	return res;
}

/* ---- the reference: recursive descent over the whole buffer ---- */

struct ref {
	const unsigned char *p;
	size_t len, i;
};

static bool ref_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool ref_hex(unsigned char c, unsigned *v)
{
	if (c >= '0' && c <= '9')
		*v = c - '0';
	else if (c >= 'a' && c <= 'f')
		*v = c - 'a' + 10;
	else if (c >= 'A' && c <= 'F')
		*v = c - 'A' + 10;
	else
		return false;
	return true;
}

/* 1: byte c is next (consumed), 0: another byte, -1: input ends. */
static int ref_eat(struct ref *r, unsigned char c)
{
	if (r->i == r->len)
		return -1;
	if (r->p[r->i] != c)
		return 0;
	r->i++;
	return 1;
}

#define EAT_OR(r, c, bad)                                                                          \
	do {                                                                                       \
		int e_ = ref_eat(r, c);                                                            \
		if (e_ < 0)                                                                        \
			return MORE;                                                               \
		if (!e_)                                                                           \
			return bad;                                                                \
	} while (0)

static enum outcome ref_parse(struct ref *r)
{
	for (;;) {
		uint64_t size = 0;
		unsigned digits = 0, v;

		/* chunk-size: 1-15 HEXDIG */
		while (r->i < r->len && ref_hex(r->p[r->i], &v)) {
			if (++digits > REF_MAX_DIGITS)
				return BAD;
			size = size * 16 + v;
			r->i++;
		}
		if (r->i == r->len)
			return MORE;
		if (!digits)
			return BAD;
		/* [ *WS ";" ext ] -- whitespace only before an extension */
		if (r->p[r->i] == ' ' || r->p[r->i] == '\t' || r->p[r->i] == ';') {
			size_t n = 0;

			while (r->i < r->len && (r->p[r->i] == ' ' || r->p[r->i] == '\t'))
				r->i++;
			EAT_OR(r, ';', BAD);
			for (; r->i < r->len && r->p[r->i] != '\r'; r->i++) {
				unsigned char c = r->p[r->i];

				if ((c < 0x20 && c != '\t') || c == 0x7f || ++n > REF_MAX_LINE)
					return BAD;
			}
		}
		EAT_OR(r, '\r', BAD);
		EAT_OR(r, '\n', BAD);
		if (!size)
			break;
		if (r->len - r->i < size) {
			r->i = r->len;
			return MORE;
		}
		r->i += size;
		EAT_OR(r, '\r', BAD);
		EAT_OR(r, '\n', BAD);
	}

	/* trailer-section CRLF: the LF above counts as the first trailer byte,
	 * the final LF does not */
	size_t start = r->i - 1;

	for (;;) {
		size_t n = 0;

		if (r->i - start > REF_MAX_TRAILERS)
			return BAD;
		if (r->i == r->len)
			return MORE;
		if (r->p[r->i] == '\r') {
			r->i++;
			if (r->i - start > REF_MAX_TRAILERS)
				return BAD;
			EAT_OR(r, '\n', BAD);
			return DONE;
		}
		if (!ref_tchar(r->p[r->i]))
			return BAD;
		for (; r->i < r->len && r->p[r->i] != '\r'; r->i++) {
			unsigned char c = r->p[r->i];

			if (c != '\t' && (c < 0x20 || c == 0x7f))
				return BAD;
			if (++n > REF_MAX_LINE || r->i + 1 - start > REF_MAX_TRAILERS)
				return BAD;
		}
		if (r->i == r->len)
			return MORE;
		r->i++;
		if (r->i - start > REF_MAX_TRAILERS)
			return BAD;
		EAT_OR(r, '\n', BAD);
	}
}

/* The three feedings agree with each other and with the reference. */
static void check_body(const char *body, size_t len, const size_t *sizes, size_t n)
{
	struct result whole, split, bytes;
	size_t one = 1;
	struct ref ref;
	enum outcome want;

	whole = feed(body, len, NULL, 0);
	split = feed(body, len, sizes, n);
	bytes = feed(body, len, &one, 1);

	FUZZ_CHECK(split.o == whole.o && bytes.o == whole.o, "whole: %s, pieces: %s, bytewise: %s",
		   outcome_name(whole.o), outcome_name(split.o), outcome_name(bytes.o));
	if (whole.o == DONE)
		FUZZ_CHECK(split.end == whole.end && bytes.end == whole.end,
			   "end whole %zu, pieces %zu, bytewise %zu", whole.end, split.end,
			   bytes.end);
	if (whole.o == BAD)
		FUZZ_CHECK(!strcmp(split.reason, whole.reason) &&
				   !strcmp(bytes.reason, whole.reason),
			   "reason whole '%s', pieces '%s', bytewise '%s'", whole.reason,
			   split.reason, bytes.reason);

	ref.p = (const unsigned char *)body;
	ref.len = len;
	ref.i = 0;
	want = ref_parse(&ref);
	FUZZ_CHECK(whole.o == want, "chunked_feed: %s (%s), reference: %s at %zu",
		   outcome_name(whole.o), whole.reason ? whole.reason : "-", outcome_name(want),
		   ref.i);
	if (want == DONE)
		FUZZ_CHECK(whole.end == ref.i, "chunked_feed ends at %zu, reference at %zu",
			   whole.end, ref.i);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The 64 KiB trailer limit is beyond -max_len: check it once, at every
 * size around the limit, against the reference's own accounting. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const size_t sizes[] = {4096, 7, 1, 1000};
	size_t cap = REF_MAX_TRAILERS + 4096, len;
	char *body = malloc(cap);

	if (!body)
		abort();
	for (size_t total = REF_MAX_TRAILERS - 8; total <= REF_MAX_TRAILERS + 8; total++) {
		/* "0\r\n", trailer lines of 1000 bytes and one shorter, "\r\n":
		 * the LF of "0\r\n" and every trailer byte but the last count */
		size_t left = total - 2; /* the LF, and the final CR */

		len = 0;
		memcpy(body + len, "0\r\n", 3);
		len += 3;
		while (left) {
			size_t line = left > 1000 ? 1000 : left;

			if (left - line && left - line < 4)
				line = left - 4; /* "X:\r\n" is the shortest line */
			memcpy(body + len, "X:", 2);
			memset(body + len + 2, 'a', line - 4);
			memcpy(body + len + line - 2, "\r\n", 2);
			len += line;
			left -= line;
		}
		memcpy(body + len, "\r\n", 2);
		len += 2;
		check_body(body, len, sizes, ARRAY_SIZE(sizes));
		FUZZ_CHECK(feed(body, len, NULL, 0).o == (total <= REF_MAX_TRAILERS ? DONE : BAD),
			   "%zu trailer bytes", total);
	}
	free(body);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t sizes[64], n;
	uint32_t seed;

	if (size < 1)
		return 0;
	seed = 0x9e3779b9u ^ (uint32_t)data[0] * 0x01000193u;
	n = 1 + data[0] % ARRAY_SIZE(sizes);
	for (size_t i = 0; i < n; i++) {
		uint32_t x = fuzz_rand(&seed);

		/* mostly small pieces, some empty, some large */
		sizes[i] = x % 8 == 0 ? 0 : x % 8 == 1 ? x % 4096 : 1 + x % 7;
	}
	sizes[0] = sizes[0] ? sizes[0] : 1; /* never only empty pieces */

	check_body((const char *)data + 1, size - 1, sizes, n);
	return 0;
}
