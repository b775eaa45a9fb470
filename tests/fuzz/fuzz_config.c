// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * config_parse() over any file contents (the routes file may hold any byte).
 *
 * Input: the file's bytes.
 *
 * Checks: 0 or -EINVAL (-ENOMEM only when memory runs out); on error no
 * routes and a one-line, printable message that names the file and a line
 * that exists; on success every route is well formed (valid key, NUL-padded
 * map key, flags, TTL within range, lines increasing, no pair twice), and
 * writing the routes back out in the file format and parsing that gives the
 * same routes (and overrides). A small error buffer (exact size on the heap) must neither
 * overflow nor change the outcome.
 */
#include <errno.h>
#include <string.h>

#include "state/config.h"
#include "fuzz.h"
#include "proxy/routekey.h"
#include "state/routes.h"
#include "kernel/source.h"
#include "core/util.h"

#define NAME	"fuzz.conf"
#define ERR_LEN 512
#define TTL_MAX (3650ULL * 86400)

static void check_error(const char *err, const char *text, size_t len)
{
	size_t lines = 1, nlen = strlen(NAME);
	unsigned long line;
	char *end;

	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	FUZZ_CHECK(!strncmp(err, NAME ":", nlen + 1), "message '%s'", err);
	line = strtoul(err + nlen + 1, &end, 10);
	FUZZ_CHECK(*end == ':' && line >= 1 && line <= lines, "line %lu of %zu in '%s'", line,
		   lines, err);
	for (const char *p = err; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
			   "unprintable byte %#x in message", (unsigned char)*p);
}

static void check_overrides(const struct config *c)
{
	char e[256];

	FUZZ_CHECK(c->n_overrides <= SHUNT_MAX_OVERRIDES, "%zu overrides", c->n_overrides);
	for (size_t i = 0; i < c->n_overrides; i++) {
		const struct config_override *o = &c->overrides[i];

		FUZZ_CHECK(memchr(o->from, '\0', sizeof(o->from)) &&
				   source_check(o->from, e, sizeof(e)) == 0,
			   "override %zu: bad source", i);
		FUZZ_CHECK((o->dst.family == SHUNT_FAMILY_V4 || o->dst.family == SHUNT_FAMILY_V6) &&
				   o->to.family == o->dst.family && o->dst.port && o->to.port,
			   "override %zu: bad addresses", i);
		FUZZ_CHECK(o->ttl_sec <= TTL_MAX, "override %zu: ttl", i);
		FUZZ_CHECK(i == 0 || o->line > c->overrides[i - 1].line, "override %zu: line", i);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(c->overrides[j].from, o->from) ||
					   memcmp(&c->overrides[j].dst, &o->dst, sizeof(o->dst)),
				   "overrides %zu and %zu: same source and dst", j, i);
	}
}

static void check_routes(const struct config *c)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct config_route *r = &c->routes[i];
		size_t klen = strnlen(r->k.key, sizeof(r->k.key));

		FUZZ_CHECK(klen < sizeof(r->k.key) && rk_validate(r->k.key) == 0,
			   "route %zu: bad key", i);
		for (size_t j = klen; j < sizeof(r->k.key); j++)
			FUZZ_CHECK(r->k.key[j] == '\0', "route %zu: key not NUL-padded", i);
		FUZZ_CHECK(r->k.service.family == SHUNT_FAMILY_V4 ||
				   r->k.service.family == SHUNT_FAMILY_V6,
			   "route %zu: service family %u", i, r->k.service.family);
		FUZZ_CHECK(r->v.to.family == SHUNT_FAMILY_V4 || r->v.to.family == SHUNT_FAMILY_V6,
			   "route %zu: to family %u", i, r->v.to.family);
		FUZZ_CHECK(r->k.service.port && r->v.to.port, "route %zu: port 0", i);
		FUZZ_CHECK(r->v.flags & SHUNT_ROUTE_FROM_FILE, "route %zu: not from file", i);
		FUZZ_CHECK(!(r->v.flags & ~(SHUNT_ROUTE_FROM_FILE | SHUNT_ROUTE_FALLBACK_BASELINE)),
			   "route %zu: flags %#x", i, r->v.flags);
		FUZZ_CHECK(r->ttl_sec <= TTL_MAX, "route %zu: ttl %llu", i,
			   (unsigned long long)r->ttl_sec);
		FUZZ_CHECK(i == 0 || r->line > c->routes[i - 1].line, "route %zu: line %u", i,
			   r->line);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(memcmp(&c->routes[j].k, &r->k, sizeof(r->k)),
				   "routes %zu and %zu: same service and key", j, i);
	}
}

/* The routes as a file, one line each, in the documented format. */
static char *write_routes(const struct config *c, size_t *len)
{
	size_t cap = (c->n + c->n_overrides) * 512 + 1, off = 0;
	char *out = malloc(cap);

	if (!out)
		abort();
	for (size_t i = 0; i < c->n; i++) {
		const struct config_route *r = &c->routes[i];
		char s[ADDR_STR_LEN], t[ADDR_STR_LEN], d[32];

		off += (size_t)snprintf(out + off, cap - off, "route %s %s %s",
					format_addr_port(&r->k.service, s, sizeof(s)), r->k.key,
					format_addr_port(&r->v.to, t, sizeof(t)));
		if (r->ttl_sec)
			off += (size_t)snprintf(out + off, cap - off, " ttl=%s",
						format_duration(r->ttl_sec, d, sizeof(d)));
		if (r->v.flags & SHUNT_ROUTE_FALLBACK_BASELINE)
			off += (size_t)snprintf(out + off, cap - off, " fallback=baseline");
		off += (size_t)snprintf(out + off, cap - off, "\n");
		FUZZ_CHECK(off < cap, "route line too long");
	}
	for (size_t i = 0; i < c->n_overrides; i++) {
		const struct config_override *o = &c->overrides[i];
		char s[ADDR_STR_LEN], t[ADDR_STR_LEN], d[32];

		off += (size_t)snprintf(out + off, cap - off, "override %s %s %s", o->from,
					format_addr_port(&o->dst, s, sizeof(s)),
					format_addr_port(&o->to, t, sizeof(t)));
		if (o->ttl_sec)
			off += (size_t)snprintf(out + off, cap - off, " ttl=%s",
						format_duration(o->ttl_sec, d, sizeof(d)));
		off += (size_t)snprintf(out + off, cap - off, "\n");
		FUZZ_CHECK(off < cap, "override line too long");
	}
	*len = off;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct config c, c2;
	char err[ERR_LEN], *small, *again;
	size_t small_len, again_len;
	int ret, ret2;

	memset(err, 0x5a, sizeof(err));
	ret = config_parse(NAME, text, size, &c, err, sizeof(err));
	FUZZ_CHECK(ret == 0 || ret == -EINVAL, "ret %d (%s)", ret, err);
	FUZZ_CHECK(memchr(err, '\0', sizeof(err)), "message not terminated");
	if (ret) {
		FUZZ_CHECK(c.n == 0 && c.routes == NULL && c.n_overrides == 0 && c.overrides == NULL,
			   "error %d left %zu routes", ret, c.n);
		check_error(err, text, size);
	} else {
		FUZZ_CHECK(err[0] == '\0', "success with message '%s'", err);
		FUZZ_CHECK(c.n <= SHUNT_MAX_ROUTES, "%zu routes", c.n);
		check_routes(&c);
		check_overrides(&c);

		again = write_routes(&c, &again_len);
		ret2 = config_parse(NAME, again, again_len, &c2, err, sizeof(err));
		FUZZ_CHECK(ret2 == 0, "routes written back are refused: %s\n%.*s", err,
			   (int)again_len, again);
		FUZZ_CHECK(c2.n == c.n, "%zu routes written, %zu read back", c.n, c2.n);
		for (size_t i = 0; i < c.n; i++) {
			const struct config_route *a = &c.routes[i], *b = &c2.routes[i];

			FUZZ_CHECK(!memcmp(&a->k, &b->k, sizeof(a->k)) &&
					   !memcmp(&a->v, &b->v, sizeof(a->v)) &&
					   a->ttl_sec == b->ttl_sec,
				   "route %zu differs after a round trip:\n%.*s", i, (int)again_len,
				   again);
		}
		FUZZ_CHECK(c2.n_overrides == c.n_overrides, "%zu overrides written, %zu read back",
			   c.n_overrides, c2.n_overrides);
		for (size_t i = 0; i < c.n_overrides; i++) {
			const struct config_override *a = &c.overrides[i], *b = &c2.overrides[i];

			FUZZ_CHECK(!strcmp(a->from, b->from) && !memcmp(&a->dst, &b->dst, sizeof(a->dst)) &&
					   !memcmp(&a->to, &b->to, sizeof(a->to)) &&
					   a->ttl_sec == b->ttl_sec,
				   "override %zu differs after a round trip:\n%.*s", i, (int)again_len,
				   again);
		}
		config_free(&c2);
		free(again);
		config_free(&c);
	}

	/* The same text with a message buffer of 1..64 bytes, and none. */
	small_len = 1 + (size ? data[size - 1] % 64 : 0);
	small = malloc(small_len);
	if (!small)
		abort();
	ret2 = config_parse(NAME, text, size, &c2, small, small_len);
	FUZZ_CHECK(ret2 == ret, "ret %d with a %zu-byte message buffer, %d with %d", ret2,
		   small_len, ret, ERR_LEN);
	FUZZ_CHECK(memchr(small, '\0', small_len), "short message not terminated");
	config_free(&c2);
	free(small);
	ret2 = config_parse(NULL, text, size, &c2, NULL, 0);
	FUZZ_CHECK(ret2 == ret, "ret %d without a message buffer, %d with one", ret2, ret);
	config_free(&c2);

	/* No text at all: empty is fine, a length without text is not. */
	if (!size) {
		FUZZ_CHECK(config_parse(NAME, NULL, 0, &c2, err, sizeof(err)) == 0 && !c2.n,
			   "NULL, 0");
		FUZZ_CHECK(config_parse(NAME, NULL, 1, &c2, err, sizeof(err)) == -EINVAL,
			   "NULL, 1");
	}
	return 0;
}
