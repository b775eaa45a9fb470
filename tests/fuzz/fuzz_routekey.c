// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * rk_extract() over header spans a client controls, and rk_validate().
 *
 * Input: one byte choosing the configuration, then header lines separated
 * by LF, each "name:value" (a line without ':' is a header whose value is
 * the NULL, empty span). Every name and value is copied into a heap buffer
 * of exactly its length, so ASan sees a read outside any span.
 *
 * Checks: the result agrees with out (length, NUL, validity), and with a
 * reference written straight from routekey.h's contract: sources in order
 * of precedence, each header counted once under the highest-precedence
 * source its name matches, the first occurrence wins.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "proxy/routekey.h"
#include "state/routes.h"

#define MAX_HDRS 64

static void make_config(struct rk_config *cfg, unsigned sel)
{
	rk_config_default(cfg);
	switch (sel % 8) {
	case 1: /* everything renamed, as --key-member / --key-header do */
		strcpy(cfg->baggage_header, "x-bag");
		strcpy(cfg->tracestate_header, "x-ts");
		strcpy(cfg->member, "X-Env");
		strcpy(cfg->direct[0], "x-route");
		cfg->n_direct = 1;
		break;
	case 2: /* list formats off: direct headers only */
		cfg->baggage_header[0] = '\0';
		cfg->tracestate_header[0] = '\0';
		break;
	case 3: /* no member name: the list formats find nothing */
		cfg->member[0] = '\0';
		break;
	case 4: /* a count beyond the array, names without a NUL */
		memset(cfg->direct[2], 'h', RK_NAME_MAX);
		memset(cfg->direct[3], 'x', RK_NAME_MAX);
		cfg->n_direct = 1000;
		break;
	case 5: /* no direct headers, tracestate only */
		cfg->baggage_header[0] = '\0';
		cfg->n_direct = 0;
		break;
	case 6: /* --key-header naming a list header too (shuntd allows it) */
		strcpy(cfg->direct[0], "baggage");
		strcpy(cfg->direct[1], "x-env");
		strcpy(cfg->direct[2], "TraceState");
		cfg->n_direct = 3;
		break;
	default:
		break;
	}
}

/* ---- the reference ---- */

static bool ref_ows(char c)
{
	return c == ' ' || c == '\t';
}

static char ref_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool ref_name_eq(const char *a, size_t alen, const char *cfgname)
{
	size_t n = strnlen(cfgname, RK_NAME_MAX);

	if (!n || n != alen)
		return false;
	for (size_t i = 0; i < n; i++)
		if (ref_lower(a[i]) != ref_lower(cfgname[i]))
			return false;
	return true;
}

/* The configured names in order of precedence; "" for a disabled one. */
static size_t ref_names(const struct rk_config *cfg, const char **names)
{
	size_t n = 0, nd = cfg->n_direct < RK_MAX_DIRECT ? cfg->n_direct : RK_MAX_DIRECT;
	bool lists = cfg->member[0] != '\0';

	names[n++] = lists ? cfg->baggage_header : "";
	names[n++] = lists ? cfg->tracestate_header : "";
	for (size_t i = 0; i < nd; i++)
		names[n++] = cfg->direct[i];
	return n;
}

static size_t ref_class(const struct http_header *h, const char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ref_name_eq(h->name, h->name_len, names[i]))
			return i;
	return n;
}

/* Look for the member in a comma-separated list; the value is trimmed and,
 * with props, cut at the first ';' after the '='. */
static bool ref_list(const char *v, size_t len, const char *member, bool props, const char **val,
		     size_t *vlen)
{
	size_t start = 0;

	while (start < len) {
		size_t end = start, eq, ks, ke, vs, ve;

		while (end < len && v[end] != ',')
			end++;
		for (eq = start; eq < end && v[eq] != '='; eq++)
			;
		if (eq < end) {
			ks = start;
			ke = eq;
			while (ks < ke && ref_ows(v[ks]))
				ks++;
			while (ke > ks && ref_ows(v[ke - 1]))
				ke--;
			if (ref_name_eq(v + ks, ke - ks, member)) {
				vs = eq + 1;
				ve = vs;
				while (ve < end && !(props && v[ve] == ';'))
					ve++;
				while (vs < ve && ref_ows(v[vs]))
					vs++;
				while (ve > vs && ref_ows(v[ve - 1]))
					ve--;
				*val = v + vs;
				*vlen = ve - vs;
				return true;
			}
		}
		start = end + 1;
	}
	return false;
}

static int ref_hex(char c)
{
	c = ref_lower(c);
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int ref_key(const char *v, size_t len, bool decode, char *out)
{
	unsigned char buf[4096];
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (decode && c == '%') {
			if (len - i < 3)
				return -EINVAL;
			if (ref_hex(v[i + 1]) < 0 || ref_hex(v[i + 2]) < 0)
				return -EINVAL;
			c = (unsigned char)(ref_hex(v[i + 1]) * 16 + ref_hex(v[i + 2]));
			i += 2;
		}
		if (o == sizeof(buf))
			return -EINVAL;
		buf[o++] = c;
	}
	if (o == 0 || o > SHUNT_ROUTE_KEY_LEN - 1)
		return -EINVAL;
	for (size_t i = 0; i < o; i++)
		if (buf[i] < 0x21 || buf[i] > 0x7e || strchr(",;=\"\\", buf[i]))
			return -EINVAL;
	memcpy(out, buf, o);
	out[o] = '\0';
	return (int)o;
}

static int ref_extract(const struct rk_config *cfg, const struct http_header *h, size_t n,
		       char *out)
{
	const char *names[2 + RK_MAX_DIRECT], *val;
	size_t nn = ref_names(cfg, names), vlen;

	out[0] = '\0';
	for (size_t src = 0; src < nn; src++) {
		for (size_t k = 0; k < n; k++) {
			if (ref_class(&h[k], names, nn) != src)
				continue;
			if (src < 2) {
				if (!ref_list(h[k].value, h[k].value_len, cfg->member, src == 0,
					      &val, &vlen))
					continue;
			} else if (!h[k].value_len) {
				val = h[k].value; /* may be NULL */
				vlen = 0;
			} else {
				size_t s = 0, e = h[k].value_len;

				while (s < e && ref_ows(h[k].value[s]))
					s++;
				while (e > s && ref_ows(h[k].value[e - 1]))
					e--;
				val = h[k].value + s;
				vlen = e - s;
			}
			return ref_key(val, vlen, src == 0, out);
		}
	}
	return 0;
}

/* ---- the harness ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_header h[MAX_HDRS];
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN], ref[SHUNT_ROUTE_KEY_LEN], *small;
	const char *p, *end;
	size_t n = 0;
	int ret, want;

	if (size < 1)
		return 0;
	make_config(&cfg, data[0]);
	p = (const char *)data + 1;
	end = (const char *)data + size;
	while (p < end && n < MAX_HDRS) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *colon = memchr(p, ':', (size_t)(le - p));

		h[n].name_len = (size_t)((colon ? colon : le) - p);
		h[n].name = fuzz_dup(p, h[n].name_len);
		if (colon) {
			h[n].value_len = (size_t)(le - colon - 1);
			h[n].value = fuzz_dup(colon + 1, h[n].value_len);
		} else {
			h[n].value = NULL; /* allowed for an empty value */
			h[n].value_len = 0;
		}
		n++;
		p = nl ? nl + 1 : end;
	}

	memset(out, 0x5a, sizeof(out));
	ret = rk_extract(&cfg, h, n, out, sizeof(out));
	FUZZ_CHECK(ret == -EINVAL || (ret >= 0 && ret < SHUNT_ROUTE_KEY_LEN), "ret %d", ret);
	if (ret > 0) {
		FUZZ_CHECK(strnlen(out, sizeof(out)) == (size_t)ret, "key length %zu, ret %d",
			   strnlen(out, sizeof(out)), ret);
		FUZZ_CHECK(rk_validate(out) == 0, "returned key '%s' does not validate", out);
	} else {
		FUZZ_CHECK(out[0] == '\0', "ret %d but out is not empty", ret);
	}

	want = ref_extract(&cfg, h, n, ref);
	FUZZ_CHECK(ret == want, "rk_extract %d, reference %d (key '%s', reference '%s')", ret, want,
		   ret > 0 ? out : "", want > 0 ? ref : "");
	if (ret > 0)
		FUZZ_CHECK(!strcmp(out, ref), "key '%s', reference '%s'", out, ref);

	/* The same headers again must give the same answer: no state. */
	FUZZ_CHECK(rk_extract(&cfg, h, n, out, sizeof(out)) == ret, "second call differs");
	/* Refused outright: an output buffer too small, or no config. */
	small = malloc(SHUNT_ROUTE_KEY_LEN - 1);
	if (!small)
		abort();
	FUZZ_CHECK(rk_extract(&cfg, h, n, small, SHUNT_ROUTE_KEY_LEN - 1) == -EINVAL,
		   "accepted a short buffer");
	free(small);
	FUZZ_CHECK(rk_extract(NULL, h, n, out, sizeof(out)) == -EINVAL, "accepted no config");
	FUZZ_CHECK(rk_extract(&cfg, NULL, 0, out, sizeof(out)) == 0, "no headers");
	FUZZ_CHECK(rk_validate(NULL) == -EINVAL, "rk_validate(NULL)");

	for (size_t i = 0; i < n; i++) {
		/* Every header value, as an operator-given key: rk_validate
		 * agrees with the direct-header path on the same bytes. */
		char key[SHUNT_ROUTE_KEY_LEN + 1];
		size_t l =
			h[i].value_len < SHUNT_ROUTE_KEY_LEN ? h[i].value_len : SHUNT_ROUTE_KEY_LEN;

		if (h[i].value_len && !memchr(h[i].value, '\0', l)) {
			bool ok = h[i].value_len < SHUNT_ROUTE_KEY_LEN;

			memcpy(key, h[i].value, l);
			key[l] = '\0';
			for (size_t j = 0; j < l; j++) {
				unsigned char c = (unsigned char)key[j];

				if (c < 0x21 || c > 0x7e || strchr(",;=\"\\", c))
					ok = false;
			}
			FUZZ_CHECK((rk_validate(key) == 0) == ok, "rk_validate('%s') = %d", key,
				   rk_validate(key));
		}
		free((void *)h[i].name);
		free((void *)h[i].value);
	}
	return 0;
}
