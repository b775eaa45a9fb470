// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The operator-input parsers of util.h (command line, routes file, control
 * socket): parse_addr_port, parse_addr, parse_duration, parse_u64, and the
 * formatters whose text they read back.
 *
 * Input: the text, given to every parser as a C string (it ends at the
 * first NUL, in a heap buffer of exactly its size). Its raw bytes also
 * serve as a shunt_addr, a sockaddr and a number of seconds for the
 * formatters.
 *
 * Checks: each parser either refuses or fills its output completely;
 * parse_duration and parse_u64 agree with reference implementations in
 * 128-bit arithmetic; formatted text fits its buffer, is cut only at a
 * whole group, and parses back to the value it came from.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "fuzz.h"
#include "core/util.h"

#define DUR_MAX_MS (3650ULL * 86400 * 1000)

typedef unsigned __int128 u128;

static u128 sat_add(u128 a, u128 b)
{
	u128 max = ~(u128)0 >> 1;

	return a > max - b ? max : a + b;
}

static u128 sat_mul(u128 a, u128 b)
{
	u128 max = ~(u128)0 >> 1;

	return b && a > max / b ? max : a * b;
}

/* groups of digits + unit (ms s m h d), summed without overflow */
static int ref_duration(const char *s, uint64_t *out)
{
	u128 total = 0;

	if (!*s)
		return -EINVAL;
	while (*s) {
		u128 n = 0, unit;

		if (*s < '0' || *s > '9')
			return -EINVAL;
		while (*s >= '0' && *s <= '9')
			n = sat_add(sat_mul(n, 10), (u128)(*s++ - '0'));
		if (s[0] == 'm' && s[1] == 's')
			unit = 1, s += 2;
		else if (*s == 's')
			unit = 1000, s++;
		else if (*s == 'm')
			unit = 60000, s++;
		else if (*s == 'h')
			unit = 3600000, s++;
		else if (*s == 'd')
			unit = 86400000, s++;
		else
			return -EINVAL;
		total = sat_add(total, sat_mul(n, unit));
	}
	if (total > DUR_MAX_MS)
		return -ERANGE;
	if (total == 0)
		return -EINVAL;
	*out = (uint64_t)((total + 999) / 1000);
	return 0;
}

static int ref_u64(const char *s, uint64_t max, uint64_t *out)
{
	u128 v = 0;

	if (!*s)
		return -EINVAL;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	for (; *s; s++)
		v = sat_add(sat_mul(v, 10), (u128)(*s - '0'));
	if (v > max)
		return -ERANGE;
	*out = (uint64_t)v;
	return 0;
}

static int addr_valid(const struct shunt_addr *a)
{
	if (a->pad)
		return 0;
	if (a->family == SHUNT_FAMILY_V4) {
		for (size_t i = 4; i < sizeof(a->addr); i++)
			if (a->addr[i])
				return 0;
		return 1;
	}
	return a->family == SHUNT_FAMILY_V6 &&
	       !IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)a->addr);
}

/* A parsed address, formatted and parsed again, is the same bytes; its
 * text is canonical (formatting it again gives the same text). */
static void check_addr_round_trip(const struct shunt_addr *a, int with_port)
{
	char t[ADDR_STR_LEN], t2[ADDR_STR_LEN];
	struct shunt_addr b;

	FUZZ_CHECK(addr_valid(a), "parsed to family %u pad %u", a->family, a->pad);
	FUZZ_CHECK(with_port ? a->port != 0 : a->port == 0, "port %u", a->port);
	format_addr_port(a, t, sizeof(t));
	FUZZ_CHECK(strlen(t) < sizeof(t), "format overflow");
	if (!with_port) {
		/* parse_addr takes the host part alone */
		char *colon = strrchr(t, ':');

		FUZZ_CHECK(colon, "no port in '%s'", t);
		*colon = '\0';
		FUZZ_CHECK(parse_addr(t, &b) == 0, "'%s' does not parse back", t);
		FUZZ_CHECK(!memcmp(a, &b, sizeof(b)), "'%s' parses to another address", t);
		return;
	}
	FUZZ_CHECK(parse_addr_port(t, &b) == 0, "'%s' does not parse back", t);
	FUZZ_CHECK(!memcmp(a, &b, sizeof(b)), "'%s' parses to another address", t);
	format_addr_port(&b, t2, sizeof(t2));
	FUZZ_CHECK(!strcmp(t, t2), "'%s' formats as '%s'", t, t2);
}

static void check_addr_port(const char *s)
{
	struct shunt_addr a, keep;
	const char *colon = strrchr(s, ':');
	char host[128];
	unsigned char bin[16];
	size_t hlen;
	int ret;

	memset(&a, 0xa5, sizeof(a));
	keep = a;
	ret = parse_addr_port(s, &a);
	FUZZ_CHECK(ret == 0 || ret == -EINVAL, "ret %d", ret);
	if (ret) {
		FUZZ_CHECK(!memcmp(&a, &keep, sizeof(a)), "refused '%s' but wrote the output", s);
		return;
	}
	check_addr_round_trip(&a, 1);

	/* Independently: HOST:PORT, the port in decimal without a leading
	 * zero, the host an IPv4 literal or a bracketed IPv6 one. */
	FUZZ_CHECK(colon && colon[1] >= '1' && colon[1] <= '9' &&
			   strtoul(colon + 1, NULL, 10) == a.port && strlen(colon + 1) <= 5,
		   "'%s' accepted, port %u", s, a.port);
	hlen = (size_t)(colon - s);
	FUZZ_CHECK(hlen < sizeof(host), "host of '%s' too long", s);
	if (s[0] == '[') {
		FUZZ_CHECK(hlen >= 2 && s[hlen - 1] == ']', "'%s' accepted", s);
		memcpy(host, s + 1, hlen - 2);
		host[hlen - 2] = '\0';
		FUZZ_CHECK(inet_pton(AF_INET6, host, bin) == 1, "'%s' accepted", s);
		if (a.family == SHUNT_FAMILY_V6)
			FUZZ_CHECK(!memcmp(bin, a.addr, 16), "'%s': wrong address", s);
		else
			FUZZ_CHECK(!memcmp(bin + 12, a.addr, 4), "'%s': wrong mapped address", s);
	} else {
		memcpy(host, s, hlen);
		host[hlen] = '\0';
		FUZZ_CHECK(inet_pton(AF_INET, host, bin) == 1 && a.family == SHUNT_FAMILY_V4 &&
				   !memcmp(bin, a.addr, 4),
			   "'%s' accepted", s);
	}
}

static void check_addr(const char *s)
{
	struct shunt_addr a, keep;
	unsigned char bin[16];
	int ret;

	memset(&a, 0xa5, sizeof(a));
	keep = a;
	ret = parse_addr(s, &a);
	FUZZ_CHECK(ret == 0 || ret == -EINVAL, "ret %d", ret);
	if (ret) {
		FUZZ_CHECK(!memcmp(&a, &keep, sizeof(a)), "refused '%s' but wrote the output", s);
		return;
	}
	check_addr_round_trip(&a, 0);
	if (s[0] != '[' && inet_pton(AF_INET, s, bin) == 1)
		FUZZ_CHECK(a.family == SHUNT_FAMILY_V4 && !memcmp(bin, a.addr, 4), "'%s'", s);
}

/* format_duration into buffers of every small size: a whole-group prefix
 * of the full text, NUL-terminated inside the buffer. */
static void check_format_duration(uint64_t sec)
{
	char full[32];
	uint64_t back;
	int ret;

	format_duration(sec, full, sizeof(full));
	FUZZ_CHECK(strlen(full) > 0 && strlen(full) < sizeof(full), "'%s'", full);
	ret = parse_duration(full, &back);
	if (sec == 0)
		FUZZ_CHECK(!strcmp(full, "0s") && ret == -EINVAL, "0 -> '%s' -> %d", full, ret);
	else if (sec <= DUR_MAX_MS / 1000)
		FUZZ_CHECK(ret == 0 && back == sec, "%llu -> '%s' -> %d %llu",
			   (unsigned long long)sec, full, ret, (unsigned long long)back);
	else
		FUZZ_CHECK(ret == -ERANGE, "%llu -> '%s' -> %d", (unsigned long long)sec, full,
			   ret);

	for (size_t len = 1; len < sizeof(full); len++) {
		char *b = malloc(len);
		size_t n;

		if (!b)
			abort();
		format_duration(sec, b, len);
		n = strnlen(b, len);
		FUZZ_CHECK(n < len, "%llu in %zu bytes: not terminated", (unsigned long long)sec,
			   len);
		FUZZ_CHECK(!strncmp(b, full, n), "%llu in %zu bytes: '%s' vs '%s'",
			   (unsigned long long)sec, len, b, full);
		FUZZ_CHECK(n == 0 || b[n - 1] < '0' || b[n - 1] > '9',
			   "%llu in %zu bytes: cut inside a group: '%s'", (unsigned long long)sec,
			   len, b);
		free(b);
	}
}

static void check_format_addr(const uint8_t *data, size_t size)
{
	struct shunt_addr a, b;
	struct sockaddr_storage ss;
	char t[ADDR_STR_LEN];
	socklen_t sl;

	memset(&a, 0, sizeof(a));
	memcpy(&a, data, size < sizeof(a) ? size : sizeof(a));
	for (size_t len = 1; len <= ADDR_STR_LEN; len += 7) {
		char *buf = malloc(len);

		if (!buf)
			abort();
		format_addr_port(&a, buf, len);
		FUZZ_CHECK(memchr(buf, '\0', len), "format_addr_port: not terminated in %zu", len);
		free(buf);
	}
	format_addr_port(&a, t, sizeof(t));

	sl = addr_to_sockaddr(&a, &ss);
	if (a.family != SHUNT_FAMILY_V4 && a.family != SHUNT_FAMILY_V6) {
		FUZZ_CHECK(sl == 0, "family %u -> socklen %u", a.family, sl);
		return;
	}
	FUZZ_CHECK(addr_from_sockaddr((struct sockaddr *)&ss, &b) == 0, "back from sockaddr");
	if (a.family == SHUNT_FAMILY_V4 ||
	    !IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)a.addr))
		FUZZ_CHECK(addr_equal(&a, &b), "sockaddr round trip of %s", t);
	else
		FUZZ_CHECK(b.family == SHUNT_FAMILY_V4 && !memcmp(b.addr, a.addr + 12, 4),
			   "mapped %s not made IPv4", t);

	if (a.port && addr_equal(&a, &b)) {
		/* Formatted text parses back to the same endpoint. */
		FUZZ_CHECK(parse_addr_port(t, &b) == 0 && addr_equal(&a, &b), "'%s'", t);
	}

	/* Any bytes as a sockaddr: known families or -EAFNOSUPPORT. */
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, data, size < sizeof(ss) ? size : sizeof(ss));
	if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
		FUZZ_CHECK(addr_from_sockaddr((struct sockaddr *)&ss, &b) == 0, "sockaddr");
	else
		FUZZ_CHECK(addr_from_sockaddr((struct sockaddr *)&ss, &b) == -EAFNOSUPPORT,
			   "family %u", ss.ss_family);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t maxes[] = {UINT64_MAX, UINT32_MAX, 65535, 10ULL * 366 * 86400, 0};
	size_t len = strnlen((const char *)data, size);
	char *s = malloc(len + 1);
	uint64_t v, w, raw = 0;
	int ret, want;

	if (!s)
		abort();
	memcpy(s, data, len);
	s[len] = '\0';

	check_addr_port(s);
	check_addr(s);

	v = w = 0x5a5a;
	ret = parse_duration(s, &v);
	want = ref_duration(s, &w);
	FUZZ_CHECK(ret == want, "parse_duration('%s') = %d, reference %d", s, ret, want);
	if (!ret) {
		FUZZ_CHECK(v == w, "parse_duration('%s') = %llu, reference %llu", s,
			   (unsigned long long)v, (unsigned long long)w);
		check_format_duration(v);
	} else {
		FUZZ_CHECK(v == 0x5a5a, "refused '%s' but wrote the output", s);
	}

	for (size_t i = 0; i < ARRAY_SIZE(maxes); i++) {
		v = w = 0x5a5a;
		ret = parse_u64(s, maxes[i], &v);
		want = ref_u64(s, maxes[i], &w);
		FUZZ_CHECK(ret == want && v == w,
			   "parse_u64('%s', %llu) = %d %llu, reference %d %llu", s,
			   (unsigned long long)maxes[i], ret, (unsigned long long)v, want,
			   (unsigned long long)w);
		if (!ret) {
			/* the same number, leading zeros aside */
			const char *d = s + strspn(s, "0");
			char t[24];

			snprintf(t, sizeof(t), "%llu", (unsigned long long)v);
			FUZZ_CHECK(!strcmp(t, *d ? d : "0"), "'%s' -> %s", s, t);
		}
	}
	free(s);

	memcpy(&raw, data, size < sizeof(raw) ? size : sizeof(raw));
	check_format_duration(raw);
	check_format_duration(raw % (4000ULL * 86400));
	check_format_addr(data, size);
	return 0;
}
