/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests of routing-key extraction. Every header name and value is
 * copied into a buffer of exactly its length, without a NUL, so a build
 * with ASan turns any read outside the spans into a failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>

#include "proxy/routekey.h"
#include "state/routes.h"

#define MAX_HDRS 16

struct hdr {
	const char *name;
	const char *value;
};

struct req {
	struct http_header h[MAX_HDRS];
	size_t n;
};

static char *dup_exact(const char *s, size_t len)
{
	/* malloc(0) may return NULL; keep a valid pointer either way. */
	char *p = malloc(len ? len : 1);

	cr_assert_not_null(p);
	memcpy(p, s, len);
	return p;
}

static void req_build(struct req *r, const struct hdr *hdrs, size_t n)
{
	size_t i;

	cr_assert_leq(n, MAX_HDRS);
	r->n = n;
	for (i = 0; i < n; i++) {
		r->h[i].name_len = strlen(hdrs[i].name);
		r->h[i].name = dup_exact(hdrs[i].name, r->h[i].name_len);
		r->h[i].value_len = strlen(hdrs[i].value);
		r->h[i].value = dup_exact(hdrs[i].value, r->h[i].value_len);
	}
}

static void req_free(struct req *r)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		free((void *)r->h[i].name);
		free((void *)r->h[i].value);
	}
}

static int extract_cfg(const struct rk_config *cfg, const struct hdr *hdrs, size_t n, char *out)
{
	struct req r;
	int ret;

	req_build(&r, hdrs, n);
	ret = rk_extract(cfg, r.h, r.n, out, SHUNT_ROUTE_KEY_LEN);
	req_free(&r);
	/* Whatever happens, out is a valid C string that agrees with ret. */
	if (ret > 0) {
		cr_assert_eq(strlen(out), (size_t)ret);
		cr_assert_eq(rk_validate(out), 0);
	} else {
		cr_assert_str_empty(out);
	}
	return ret;
}

static int extract_n(const struct hdr *hdrs, size_t n, char *out)
{
	struct rk_config cfg;

	rk_config_default(&cfg);
	return extract_cfg(&cfg, hdrs, n, out);
}

#define HDRS(...)  ((const struct hdr[]){__VA_ARGS__})
#define NHDRS(...) (sizeof(HDRS(__VA_ARGS__)) / sizeof(struct hdr))

/* extract(out, {"name", "value"}, ...) with the default configuration. */
#define extract(out, ...) extract_n(HDRS(__VA_ARGS__), NHDRS(__VA_ARGS__), out)

#define extract_with(cfg, out, ...) extract_cfg(cfg, HDRS(__VA_ARGS__), NHDRS(__VA_ARGS__), out)

#define expect_key(ret, out, want)                                                                 \
	do {                                                                                       \
		cr_assert_eq(ret, (int)strlen(want), "ret %d, want %zu", ret, strlen(want));       \
		cr_assert_str_eq(out, want);                                                       \
	} while (0)

/* A single-header request with the default configuration. */
static int one(const char *name, const char *value, char *out)
{
	return extract(out, {name, value});
}

/* ---- configuration ---- */

Test(routekey, config_defaults)
{
	struct rk_config cfg;

	memset(&cfg, 0xa5, sizeof(cfg));
	rk_config_default(&cfg);
	cr_assert_str_eq(cfg.baggage_header, "baggage");
	cr_assert_str_eq(cfg.tracestate_header, "tracestate");
	cr_assert_str_eq(cfg.member, "sd-routing-key");
	cr_assert_eq(cfg.n_direct, 2);
	cr_assert_str_eq(cfg.direct[0], "ot-baggage-sd-routing-key");
	cr_assert_str_eq(cfg.direct[1], "uberctx-sd-routing-key");
	cr_assert_str_empty(cfg.direct[2]);
	cr_assert_str_empty(cfg.direct[3]);
}

/* ---- W3C baggage ---- */

Test(routekey, baggage_alone)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("baggage", "sd-routing-key=dev-a", out);

	expect_key(ret, out, "dev-a");
}

Test(routekey, baggage_among_members)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("baggage", "k1=v1,sd-routing-key=dev-a,k3=v3", out);

	expect_key(ret, out, "dev-a");
}

Test(routekey, baggage_many_members)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	char buf[8192];
	size_t len = 0;
	int i, ret;

	for (i = 0; i < 300; i++)
		len += snprintf(buf + len, sizeof(buf) - len, "member%d=value%d,", i, i);
	snprintf(buf + len, sizeof(buf) - len, "sd-routing-key=last");
	ret = one("baggage", buf, out);
	expect_key(ret, out, "last");
}

Test(routekey, baggage_whitespace_everywhere)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	static const char value[] =
		" \t k1 = v1 \t,\t sd-routing-key \t=\t dev-a \t;\t p \t= x \t, k3=v3 \t";
	int ret = one("baggage", value, out);

	expect_key(ret, out, "dev-a");
}

Test(routekey, baggage_properties_ignored)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("baggage", "sd-routing-key=dev-a;prop;p2=x", out);

	expect_key(ret, out, "dev-a");
	ret = one("baggage", "a=1;sd-routing-key=no, sd-routing-key=dev-b ;p=1;q", out);
	expect_key(ret, out, "dev-b");
}

Test(routekey, baggage_header_name_case_insensitive)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("BaGGaGe", "sd-routing-key=dev-a", out);

	expect_key(ret, out, "dev-a");
}

Test(routekey, baggage_member_name_case_insensitive_value_preserved)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("baggage", "SD-Routing-KEY=Dev-A", out);

	expect_key(ret, out, "Dev-A");
}

Test(routekey, baggage_split_across_lines)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = extract(out, {"baggage", "k1=v1"}, {"user-agent", "curl/8"},
			  {"baggage", "k2=v2, sd-routing-key=dev-b"});

	expect_key(ret, out, "dev-b");
}

Test(routekey, baggage_first_occurrence_wins)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = extract(out, {"baggage", "sd-routing-key=first"},
			  {"baggage", "sd-routing-key=second"});

	expect_key(ret, out, "first");
	ret = one("baggage", "sd-routing-key=one,sd-routing-key=two", out);
	expect_key(ret, out, "one");
	/* An unusable first occurrence is reported, not skipped. */
	ret = extract(out, {"baggage", "sd-routing-key=bad\"key"},
		      {"baggage", "sd-routing-key=ok"});
	cr_assert_eq(ret, -EINVAL);
}

Test(routekey, baggage_empty_members_skipped)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("baggage", ",,a=1,, \t ,sd-routing-key=dev-a,,", out);

	expect_key(ret, out, "dev-a");
	ret = one("baggage", ", ,\t,", out);
	cr_assert_eq(ret, 0);
	ret = one("baggage", "", out);
	cr_assert_eq(ret, 0);
}

Test(routekey, baggage_member_without_equals_skipped)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("baggage", "sd-routing-key, junk ;p=1, sd-routing-key=dev-a", out);

	expect_key(ret, out, "dev-a");
	ret = one("baggage", "sd-routing-key;p=1", out);
	cr_assert_eq(ret, 0);
	ret = one("baggage", "sd-routing-key", out);
	cr_assert_eq(ret, 0);
}

Test(routekey, baggage_prefix_and_suffix_names_do_not_match)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("baggage",
		      "sd-routing-key2=a, xsd-routing-key=b, sd-routing-ke=c, sd-routing key=d,"
		      "sd-routing-key-x=e, =f",
		      out);

	cr_assert_eq(ret, 0);
}

Test(routekey, baggage_percent_decoding)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("baggage", "sd-routing-key=dev%2Da", out);

	expect_key(ret, out, "dev-a");
	ret = one("baggage", "sd-routing-key=%64%45%76%2d%2D%7e%25", out);
	expect_key(ret, out, "dEv--~%");
}

Test(routekey, baggage_percent_bad_escapes)
{
	static const char *const bad[] = {
		"sd-routing-key=%",    "sd-routing-key=ab%",  "sd-routing-key=ab%4",
		"sd-routing-key=%GG",  "sd-routing-key=%4g",  "sd-routing-key=%g4",
		"sd-routing-key=%%41", "sd-routing-key=% 41", "sd-routing-key=%4;p",
	};
	char out[SHUNT_ROUTE_KEY_LEN];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(one("baggage", bad[i], out), -EINVAL, "%s", bad[i]);
}

Test(routekey, baggage_percent_decoded_bytes_validated)
{
	static const char *const bad[] = {
		"sd-routing-key=a%2Cb", "sd-routing-key=a%3bb", "sd-routing-key=a%3Db",
		"sd-routing-key=a%22b", "sd-routing-key=a%5Cb", "sd-routing-key=%20a",
		"sd-routing-key=a%00",	"sd-routing-key=a%7F",	"sd-routing-key=a%C3%A9",
		"sd-routing-key=a%09",
	};
	char out[SHUNT_ROUTE_KEY_LEN];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(one("baggage", bad[i], out), -EINVAL, "%s", bad[i]);
}

Test(routekey, baggage_percent_length_counts_decoded_bytes)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	char want[SHUNT_ROUTE_KEY_LEN];
	char buf[512];
	size_t len;
	int i, ret;

	len = snprintf(buf, sizeof(buf), "sd-routing-key=");
	for (i = 0; i < SHUNT_ROUTE_KEY_LEN - 1; i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%%41");
	memset(want, 'A', SHUNT_ROUTE_KEY_LEN - 1);
	want[SHUNT_ROUTE_KEY_LEN - 1] = '\0';
	ret = one("baggage", buf, out);
	expect_key(ret, out, want);

	snprintf(buf + len, sizeof(buf) - len, "%%41");
	cr_assert_eq(one("baggage", buf, out), -EINVAL);
}

Test(routekey, baggage_empty_value_invalid)
{
	char out[SHUNT_ROUTE_KEY_LEN];

	cr_assert_eq(one("baggage", "sd-routing-key=", out), -EINVAL);
	cr_assert_eq(one("baggage", "sd-routing-key = \t;p=1", out), -EINVAL);
	cr_assert_eq(one("baggage", "a=1,sd-routing-key=,b=2", out), -EINVAL);
}

Test(routekey, baggage_value_with_equals_or_space_invalid)
{
	char out[SHUNT_ROUTE_KEY_LEN];

	cr_assert_eq(one("baggage", "sd-routing-key=a=b", out), -EINVAL);
	cr_assert_eq(one("baggage", "sd-routing-key=dev a", out), -EINVAL);
	cr_assert_eq(one("baggage", "sd-routing-key=\"dev-a\"", out), -EINVAL);
}

Test(routekey, baggage_null_empty_value_span)
{
	struct rk_config cfg;
	struct http_header h = {.name = "baggage", .name_len = 7, .value = NULL, .value_len = 0};
	char out[SHUNT_ROUTE_KEY_LEN];

	rk_config_default(&cfg);
	cr_assert_eq(rk_extract(&cfg, &h, 1, out, sizeof(out)), 0);
}

/* ---- W3C tracestate ---- */

Test(routekey, tracestate_alone)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("tracestate", "sd-routing-key=dev-a", out);

	expect_key(ret, out, "dev-a");
}

Test(routekey, tracestate_among_vendors_case_and_whitespace)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	static const char value[] =
		"rojo=00f067aa0ba902b7 ,\t,congo=t61rcWkgMzE, \tSD-ROUTING-KEY = dev-a\t";
	int ret = one("TraceState", value, out);

	expect_key(ret, out, "dev-a");
}

Test(routekey, tracestate_not_percent_decoded)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("tracestate", "sd-routing-key=dev%41", out);

	expect_key(ret, out, "dev%41");
}

Test(routekey, tracestate_semicolon_is_not_a_property)
{
	char out[SHUNT_ROUTE_KEY_LEN];

	cr_assert_eq(one("tracestate", "sd-routing-key=dev-a;p=1", out), -EINVAL);
}

Test(routekey, tracestate_split_across_lines)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = extract(out, {"tracestate", "a=1"}, {"tracestate", "sd-routing-key=dev-b"},
			  {"tracestate", "sd-routing-key=dev-c"});

	expect_key(ret, out, "dev-b");
}

Test(routekey, tracestate_prefix_and_suffix_names_do_not_match)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("tracestate", "sd-routing-key2=a,xsd-routing-key=b,sd@routing-key=c", out);

	cr_assert_eq(ret, 0);
}

/* ---- direct headers ---- */

Test(routekey, direct_opentracing)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("ot-baggage-sd-routing-key", "dev-a", out);

	expect_key(ret, out, "dev-a");
}

Test(routekey, direct_jaeger)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("Uberctx-SD-Routing-Key", "dev-a", out);

	expect_key(ret, out, "dev-a");
}

Test(routekey, direct_trimmed_and_verbatim)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = one("uberctx-sd-routing-key", " \t dev%2Da \t ", out);

	expect_key(ret, out, "dev%2Da");
}

Test(routekey, direct_empty_or_inner_whitespace_invalid)
{
	char out[SHUNT_ROUTE_KEY_LEN];

	cr_assert_eq(one("ot-baggage-sd-routing-key", "", out), -EINVAL);
	cr_assert_eq(one("ot-baggage-sd-routing-key", " \t ", out), -EINVAL);
	cr_assert_eq(one("ot-baggage-sd-routing-key", "dev a", out), -EINVAL);
	cr_assert_eq(one("ot-baggage-sd-routing-key", "dev\ta", out), -EINVAL);
}

Test(routekey, direct_forbidden_bytes_invalid)
{
	static const char forbidden[] = ",;=\"\\\x01\x1f\x7f\x80\xff";
	char out[SHUNT_ROUTE_KEY_LEN];
	char val[4];
	size_t i;

	for (i = 0; i < sizeof(forbidden) - 1; i++) {
		snprintf(val, sizeof(val), "a%cb", forbidden[i]);
		cr_assert_eq(one("uberctx-sd-routing-key", val, out), -EINVAL, "byte 0x%02x",
			     (unsigned char)forbidden[i]);
	}
}

/* ---- precedence ---- */

Test(routekey, precedence_baggage_tracestate_direct)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = extract(out, {"uberctx-sd-routing-key", "from-uber"},
			  {"ot-baggage-sd-routing-key", "from-ot"},
			  {"tracestate", "sd-routing-key=from-ts"},
			  {"baggage", "sd-routing-key=from-baggage"});

	expect_key(ret, out, "from-baggage");
	ret = extract(out, {"uberctx-sd-routing-key", "from-uber"},
		      {"ot-baggage-sd-routing-key", "from-ot"},
		      {"tracestate", "sd-routing-key=from-ts"}, {"baggage", "other=1"});
	expect_key(ret, out, "from-ts");
	ret = extract(out, {"uberctx-sd-routing-key", "from-uber"},
		      {"ot-baggage-sd-routing-key", "from-ot"}, {"tracestate", "other=1"});
	expect_key(ret, out, "from-ot");
}

Test(routekey, precedence_invalid_winner_does_not_fall_back)
{
	char out[SHUNT_ROUTE_KEY_LEN];

	cr_assert_eq(extract(out, {"tracestate", "sd-routing-key=ok"},
			     {"baggage", "sd-routing-key=%zz"}),
		     -EINVAL);
	cr_assert_eq(extract(out, {"tracestate", "sd-routing-key="},
			     {"ot-baggage-sd-routing-key", "ok"}),
		     -EINVAL);
}

Test(routekey, precedence_direct_configured_order)
{
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret;

	rk_config_default(&cfg);
	ret = extract_with(&cfg, out, {"uberctx-sd-routing-key", "uber"},
			   {"ot-baggage-sd-routing-key", "ot"});
	expect_key(ret, out, "ot");
	/* Swap the order in the configuration: the answer follows it. */
	strcpy(cfg.direct[0], "uberctx-sd-routing-key");
	strcpy(cfg.direct[1], "ot-baggage-sd-routing-key");
	ret = extract_with(&cfg, out, {"ot-baggage-sd-routing-key", "ot"},
			   {"uberctx-sd-routing-key", "uber"});
	expect_key(ret, out, "uber");
}

/* ---- key length ---- */

Test(routekey, key_length_limit)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	char key[SHUNT_ROUTE_KEY_LEN + 1];
	char buf[128];
	int ret;

	memset(key, 'k', SHUNT_ROUTE_KEY_LEN - 1);
	key[SHUNT_ROUTE_KEY_LEN - 1] = '\0';
	snprintf(buf, sizeof(buf), "sd-routing-key=%s", key);
	ret = one("baggage", buf, out);
	expect_key(ret, out, key);
	ret = one("tracestate", buf, out);
	expect_key(ret, out, key);
	ret = one("uberctx-sd-routing-key", key, out);
	expect_key(ret, out, key);

	memset(key, 'k', SHUNT_ROUTE_KEY_LEN);
	key[SHUNT_ROUTE_KEY_LEN] = '\0';
	snprintf(buf, sizeof(buf), "sd-routing-key=%s", key);
	cr_assert_eq(one("baggage", buf, out), -EINVAL);
	cr_assert_eq(one("tracestate", buf, out), -EINVAL);
	cr_assert_eq(one("uberctx-sd-routing-key", key, out), -EINVAL);
}

Test(routekey, small_output_buffer_refused)
{
	struct rk_config cfg;
	struct http_header h = {"baggage", 7, "sd-routing-key=a", 16};
	char out[SHUNT_ROUTE_KEY_LEN];

	rk_config_default(&cfg);
	cr_assert_eq(rk_extract(&cfg, &h, 1, out, SHUNT_ROUTE_KEY_LEN - 1), -EINVAL);
	cr_assert_eq(rk_extract(&cfg, &h, 1, NULL, SHUNT_ROUTE_KEY_LEN), -EINVAL);
	cr_assert_eq(rk_extract(NULL, &h, 1, out, SHUNT_ROUTE_KEY_LEN), -EINVAL);
	cr_assert_eq(rk_extract(&cfg, &h, 1, out, SHUNT_ROUTE_KEY_LEN), 1);
}

/* ---- configurable names ---- */

Test(routekey, custom_member)
{
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret;

	rk_config_default(&cfg);
	strcpy(cfg.member, "X-Env");
	ret = extract_with(&cfg, out, {"baggage", "sd-routing-key=old, x-env=dev-a"});
	expect_key(ret, out, "dev-a");
	ret = extract_with(&cfg, out, {"tracestate", "sd-routing-key=old,X-ENV=dev-b"});
	expect_key(ret, out, "dev-b");
	ret = extract_with(&cfg, out, {"baggage", "sd-routing-key=old"});
	cr_assert_eq(ret, 0);
}

Test(routekey, custom_headers)
{
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret;

	rk_config_default(&cfg);
	strcpy(cfg.baggage_header, "x-bag");
	strcpy(cfg.tracestate_header, "x-ts");
	strcpy(cfg.direct[0], "x-route");
	cfg.n_direct = 1;
	ret = extract_with(&cfg, out, {"baggage", "sd-routing-key=std"},
			   {"uberctx-sd-routing-key", "uber"}, {"X-Bag", "sd-routing-key=%41"});
	expect_key(ret, out, "A");
	ret = extract_with(&cfg, out, {"baggage", "sd-routing-key=std"},
			   {"x-ts", "sd-routing-key=ts"});
	expect_key(ret, out, "ts");
	ret = extract_with(&cfg, out, {"ot-baggage-sd-routing-key", "ot"}, {"X-ROUTE", "mine"});
	expect_key(ret, out, "mine");
	ret = extract_with(&cfg, out, {"baggage", "sd-routing-key=std"},
			   {"tracestate", "sd-routing-key=std"},
			   {"uberctx-sd-routing-key", "uber"});
	cr_assert_eq(ret, 0);
}

Test(routekey, baggage_disabled)
{
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret;

	rk_config_default(&cfg);
	cfg.baggage_header[0] = '\0';
	ret = extract_with(&cfg, out, {"baggage", "sd-routing-key=bag"},
			   {"tracestate", "sd-routing-key=ts"});
	expect_key(ret, out, "ts");
	ret = extract_with(&cfg, out, {"baggage", "sd-routing-key=bag"});
	cr_assert_eq(ret, 0);
	/* A header with an empty name must not match the disabled slot. */
	ret = extract_with(&cfg, out, {"", "sd-routing-key=x"});
	cr_assert_eq(ret, 0);
}

Test(routekey, tracestate_disabled)
{
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret;

	rk_config_default(&cfg);
	cfg.tracestate_header[0] = '\0';
	ret = extract_with(&cfg, out, {"tracestate", "sd-routing-key=ts"},
			   {"uberctx-sd-routing-key", "u"});
	expect_key(ret, out, "u");
}

Test(routekey, direct_disabled_and_bounded)
{
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret;

	rk_config_default(&cfg);
	cfg.n_direct = 0;
	ret = extract_with(&cfg, out, {"ot-baggage-sd-routing-key", "ot"});
	cr_assert_eq(ret, 0);
	/* A count beyond the array is clamped, and unused slots are empty. */
	cfg.n_direct = 1000;
	ret = extract_with(&cfg, out, {"uberctx-sd-routing-key", "uber"});
	expect_key(ret, out, "uber");
}

Test(routekey, unterminated_config_names_are_bounded)
{
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	char name[RK_NAME_MAX + 1];
	int ret;

	rk_config_default(&cfg);
	memset(cfg.direct[0], 'h', RK_NAME_MAX);
	memset(name, 'H', RK_NAME_MAX);
	name[RK_NAME_MAX] = '\0';
	ret = extract_with(&cfg, out, {name, "long"});
	expect_key(ret, out, "long");
}

Test(routekey, empty_member_disables_list_formats)
{
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret;

	rk_config_default(&cfg);
	cfg.member[0] = '\0';
	ret = extract_with(&cfg, out, {"baggage", "=x"}, {"tracestate", "=y"});
	cr_assert_eq(ret, 0);
	ret = extract_with(&cfg, out, {"baggage", "=x"}, {"ot-baggage-sd-routing-key", "ot"});
	expect_key(ret, out, "ot");
}

/* ---- irrelevant or missing headers ---- */

Test(routekey, irrelevant_headers)
{
	char out[SHUNT_ROUTE_KEY_LEN];
	int ret = extract(out, {"host", "svc"}, {"baggage2", "sd-routing-key=a"},
			  {"x-baggage", "sd-routing-key=b"}, {"baggag", "sd-routing-key=c"},
			  {"tracestate-x", "sd-routing-key=d"}, {"sd-routing-key", "e"},
			  {"uberctx-sd-routing-key2", "f"}, {"ot-baggage-sd-routing-ke", "g"});

	cr_assert_eq(ret, 0);
}

Test(routekey, no_headers)
{
	struct rk_config cfg;
	struct http_header h = {0};
	char out[SHUNT_ROUTE_KEY_LEN] = "garbage";

	rk_config_default(&cfg);
	cr_assert_eq(rk_extract(&cfg, NULL, 0, out, sizeof(out)), 0);
	cr_assert_str_empty(out);
	cr_assert_eq(rk_extract(&cfg, &h, 0, out, sizeof(out)), 0);
	cr_assert_eq(rk_extract(&cfg, &h, 1, out, sizeof(out)), 0);
}

/* Random bytes drawn mostly from the delimiters: never crashes, and any key
 * returned is valid (extract_cfg checks that). Run under ASan for spans. */
Test(routekey, random_input_is_safe)
{
	static const char alphabet[] = "sd-routing-key=,;% \t\"\\aA0fF\x01\x7f\x80";
	static const char *const names[] = {"baggage", "tracestate", "ot-baggage-sd-routing-key",
					    "uberctx-sd-routing-key", "other"};
	struct rk_config cfg;
	char out[SHUNT_ROUTE_KEY_LEN];
	char val[4][96];
	unsigned seed = 12345;
	int iter, i, ret;
	size_t j, len;

	rk_config_default(&cfg);
	for (iter = 0; iter < 20000; iter++) {
		struct hdr h[4];

		for (i = 0; i < 4; i++) {
			len = rand_r(&seed) % sizeof(val[i]);
			for (j = 0; j < len; j++)
				val[i][j] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
			val[i][len] = '\0';
			/* strlen() stops at an embedded NUL; harmless. */
			h[i].name = names[rand_r(&seed) % 5];
			h[i].value = val[i];
		}
		ret = extract_cfg(&cfg, h, 4, out);
		cr_assert(ret == -EINVAL || (ret >= 0 && ret < SHUNT_ROUTE_KEY_LEN), "ret %d", ret);
	}
}

/* ---- rk_validate ---- */

Test(routekey, validate_accepts)
{
	char key[SHUNT_ROUTE_KEY_LEN];

	cr_assert_eq(rk_validate("dev-a"), 0);
	cr_assert_eq(rk_validate("a"), 0);
	cr_assert_eq(rk_validate("!#$%&'()*+-./0:<>?@AZ[]^_`az{|}~"), 0);
	memset(key, 'x', SHUNT_ROUTE_KEY_LEN - 1);
	key[SHUNT_ROUTE_KEY_LEN - 1] = '\0';
	cr_assert_eq(rk_validate(key), 0);
}

Test(routekey, validate_rejects)
{
	static const char *const bad[] = {
		"",	" dev", "dev ", "de v",	 "a,b",	  "a;b",      "a=b",
		"a\"b", "a\\b", "a\tb", "a\x01", "a\x7f", "\xc3\xa9",
	};
	char key[SHUNT_ROUTE_KEY_LEN + 8];
	size_t i;

	cr_assert_eq(rk_validate(NULL), -EINVAL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(rk_validate(bad[i]), -EINVAL, "%s", bad[i]);
	memset(key, 'x', SHUNT_ROUTE_KEY_LEN);
	key[SHUNT_ROUTE_KEY_LEN] = '\0';
	cr_assert_eq(rk_validate(key), -EINVAL);
	memset(key, 'x', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	cr_assert_eq(rk_validate(key), -EINVAL);
}
