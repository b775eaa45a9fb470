/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Routing-key extraction. This runs once per proxied request and parses
 * bytes a client controls, so it works on (pointer, length) spans only,
 * walks each header at most once, never allocates and never recurses.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "proxy/routekey.h"
#include "state/routes.h"

#define RK_DEFAULT_BAGGAGE     "baggage"
#define RK_DEFAULT_TRACESTATE  "tracestate"
#define RK_DEFAULT_MEMBER      "sd-routing-key"
#define RK_DEFAULT_DIRECT_OT   "ot-baggage-sd-routing-key"
#define RK_DEFAULT_DIRECT_UBER "uberctx-sd-routing-key"

/*
 * Where a key came from, lowest wins. Direct headers take RK_SRC_DIRECT + i
 * so that their configured order is their precedence.
 */
enum rk_source {
	RK_SRC_BAGGAGE = 0,
	RK_SRC_TRACESTATE,
	RK_SRC_DIRECT,
	RK_SRC_MAX = RK_SRC_DIRECT + RK_MAX_DIRECT,
	RK_SRC_NONE = RK_SRC_MAX,
};

/* A configured name, measured once per call instead of once per header. */
struct rk_name {
	const char *s;
	size_t len; /* 0: this source is disabled */
};

void rk_config_default(struct rk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->baggage_header, RK_DEFAULT_BAGGAGE);
	strcpy(cfg->tracestate_header, RK_DEFAULT_TRACESTATE);
	strcpy(cfg->member, RK_DEFAULT_MEMBER);
	strcpy(cfg->direct[0], RK_DEFAULT_DIRECT_OT);
	strcpy(cfg->direct[1], RK_DEFAULT_DIRECT_UBER);
	cfg->n_direct = 2;
}

/* RFC 9110 optional whitespace is SP and HTAB, nothing else. */
static bool is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* ASCII only: tolower() would follow the locale, header names do not. */
static unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool name_eq(const char *a, size_t alen, const struct rk_name *b)
{
	size_t i;

	if (alen != b->len || !alen)
		return false;
	for (i = 0; i < alen; i++)
		if (ascii_lower(a[i]) != ascii_lower(b->s[i]))
			return false;
	return true;
}

static int hex_val(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = ascii_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void trim_ows(const char *p, size_t *start, size_t *end)
{
	while (*start < *end && is_ows(p[*start]))
		(*start)++;
	while (*end > *start && is_ows(p[*end - 1]))
		(*end)--;
}

/*
 * One list member "key OWS = OWS value [OWS ; property]...", m[0..len).
 * A member without '=' is not ours to judge: it is skipped, like the
 * members of other vendors. Properties only exist in baggage; tracestate
 * passes props = false and keeps any ';' in the value, which then fails
 * validation instead of being silently cut off.
 */
static bool member_value(const char *m, size_t len, const struct rk_name *member, bool props,
			 const char **val, size_t *vlen)
{
	const char *eq = memchr(m, '=', len);
	const char *semi;
	size_t ks = 0, ke, vs, ve = len;

	if (!eq)
		return false;
	ke = eq - m;
	vs = ke + 1;
	trim_ows(m, &ks, &ke);
	if (!name_eq(m + ks, ke - ks, member))
		return false;
	if (props) {
		semi = memchr(m + vs, ';', len - vs);
		if (semi)
			ve = semi - m;
	}
	trim_ows(m, &vs, &ve);
	*val = m + vs;
	*vlen = ve - vs;
	return true;
}

/*
 * Comma-separated list, as in baggage and tracestate. Neither format quotes,
 * so every ',' ends a member; empty members (",,") have no '=' and fall out
 * in member_value(). An empty value has no members, so v is never touched
 * and may then be NULL.
 */
static bool list_find(const char *v, size_t len, const struct rk_name *member, bool props,
		      const char **val, size_t *vlen)
{
	const char *comma;
	size_t pos = 0, end;

	while (pos < len) {
		comma = memchr(v + pos, ',', len - pos);
		end = comma ? (size_t)(comma - v) : len;
		if (member_value(v + pos, end - pos, member, props, val, vlen))
			return true;
		pos = end + 1;
	}
	return false;
}

/*
 * Copy the chosen value into out, decoding %XX when asked, and apply the
 * key rules to the decoded bytes: what gets matched against routes is the
 * decoded key, so that is what must be valid.
 */
static int copy_key(const char *v, size_t len, bool decode, char *out)
{
	size_t i = 0, o = 0;
	int hi, lo;
	unsigned char c;

	while (i < len) {
		c = v[i++];
		if (decode && c == '%') {
			if (len - i < 2)
				goto invalid;
			hi = hex_val(v[i]);
			lo = hex_val(v[i + 1]);
			if (hi < 0 || lo < 0)
				goto invalid;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (!rk_key_byte_ok(c) || o == SHUNT_ROUTE_KEY_LEN - 1)
			goto invalid;
		out[o++] = (char)c;
	}
	if (!o)
		goto invalid;
	out[o] = '\0';
	return (int)o;
invalid:
	out[0] = '\0';
	return -EINVAL;
}

static size_t cfg_name_len(const char *s)
{
	/* Bounded: a config without a NUL must not make us read past it. */
	return strnlen(s, RK_NAME_MAX);
}

/* Lowest source whose header name this is, or RK_SRC_NONE. */
static unsigned header_source(const struct http_header *h, const struct rk_name *names,
			      unsigned n_names)
{
	unsigned i;

	for (i = 0; i < n_names; i++)
		if (name_eq(h->name, h->name_len, &names[i]))
			return i;
	return RK_SRC_NONE;
}

int rk_extract(const struct rk_config *cfg, const struct http_header *hdrs, size_t n, char *out,
	       size_t outsz)
{
	struct rk_name names[RK_SRC_MAX];
	struct rk_name member;
	const struct http_header *h;
	const char *best = NULL, *val;
	unsigned best_src = RK_SRC_NONE, src, n_names, i;
	size_t best_len = 0, vlen, n_direct, k, s, e;
	bool props;

	if (!cfg || !out || outsz < SHUNT_ROUTE_KEY_LEN)
		return -EINVAL;
	out[0] = '\0';
	if (!hdrs)
		return 0;

	member.s = cfg->member;
	member.len = cfg_name_len(cfg->member);
	/* Without a member name the list formats have nothing to look for. */
	names[RK_SRC_BAGGAGE].s = cfg->baggage_header;
	names[RK_SRC_BAGGAGE].len = member.len ? cfg_name_len(cfg->baggage_header) : 0;
	names[RK_SRC_TRACESTATE].s = cfg->tracestate_header;
	names[RK_SRC_TRACESTATE].len = member.len ? cfg_name_len(cfg->tracestate_header) : 0;
	n_direct = cfg->n_direct < RK_MAX_DIRECT ? cfg->n_direct : RK_MAX_DIRECT;
	for (i = 0; i < n_direct; i++) {
		names[RK_SRC_DIRECT + i].s = cfg->direct[i];
		names[RK_SRC_DIRECT + i].len = cfg_name_len(cfg->direct[i]);
	}
	n_names = RK_SRC_DIRECT + (unsigned)n_direct;

	/*
	 * One pass, remembering the best source seen so far: a header of the
	 * same or a lower precedence can no longer change the answer, and a
	 * baggage hit ends the search.
	 */
	for (k = 0; k < n && best_src != RK_SRC_BAGGAGE; k++) {
		h = &hdrs[k];
		src = header_source(h, names, best_src < n_names ? best_src : n_names);
		if (src >= best_src)
			continue;
		if (src < RK_SRC_DIRECT) {
			props = src == RK_SRC_BAGGAGE;
			if (!list_find(h->value, h->value_len, &member, props, &val, &vlen))
				continue;
		} else {
			/* Direct: the whole value is the key; empty is unusable. */
			val = h->value;
			vlen = 0;
			if (h->value_len) {
				s = 0;
				e = h->value_len;
				trim_ows(h->value, &s, &e);
				val += s;
				vlen = e - s;
			}
		}
		best = val;
		best_len = vlen;
		best_src = src;
	}

	if (best_src == RK_SRC_NONE)
		return 0;
	return copy_key(best, best_len, best_src == RK_SRC_BAGGAGE, out);
}
