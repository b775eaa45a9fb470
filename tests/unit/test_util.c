/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/core/util.c: address, duration and number parsing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include <criterion/criterion.h>

#include "addr_helpers.h"

#include "core/hash.h"
#include "core/util.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static struct shunt_addr v4(const char *ip, uint16_t port)
{
	struct shunt_addr a;

	memset(&a, 0, sizeof(a));
	a.family = SHUNT_FAMILY_V4;
	cr_assert_eq(inet_pton(AF_INET, ip, a.addr), 1);
	a.port = port;
	return a;
}

static struct shunt_addr v6(const char *ip, uint16_t port)
{
	struct shunt_addr a;

	memset(&a, 0, sizeof(a));
	a.family = SHUNT_FAMILY_V6;
	cr_assert_eq(inet_pton(AF_INET6, ip, a.addr), 1);
	a.port = port;
	return a;
}

/* Bytewise, pad included: parsers must leave no junk behind. */
static void assert_addr_bytes(const struct shunt_addr *got, const struct shunt_addr *want,
			      const char *input)
{
	cr_assert(memcmp(got, want, sizeof(*got)) == 0, "'%s' parsed to the wrong bytes", input);
}

Test(util_addr_port, ipv4_valid)
{
	static const struct {
		const char *in;
		const char *ip;
		uint16_t port;
	} cases[] = {
		{"10.0.0.2:80", "10.0.0.2", 80},
		{"0.0.0.0:1", "0.0.0.0", 1},
		{"255.255.255.255:65535", "255.255.255.255", 65535},
		{"127.0.0.1:8080", "127.0.0.1", 8080},
		{"192.168.1.10:10000", "192.168.1.10", 10000},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct shunt_addr got, want = v4(cases[i].ip, cases[i].port);

		memset(&got, 0xa5, sizeof(got));
		cr_assert_eq(parse_addr_port(cases[i].in, &got), 0, "'%s' refused", cases[i].in);
		assert_addr_bytes(&got, &want, cases[i].in);
	}
}

Test(util_addr_port, ipv6_valid)
{
	static const struct {
		const char *in;
		const char *ip;
		uint16_t port;
	} cases[] = {
		{"[fd00::2]:80", "fd00::2", 80},
		{"[::1]:443", "::1", 443},
		{"[::]:1", "::", 1},
		{"[2001:db8:0:0:1:0:0:1]:65535", "2001:db8::1:0:0:1", 65535},
		{"[FD00::ABCD]:8080", "fd00::abcd", 8080},
		{"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:9",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 9},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct shunt_addr got, want = v6(cases[i].ip, cases[i].port);

		memset(&got, 0xa5, sizeof(got));
		cr_assert_eq(parse_addr_port(cases[i].in, &got), 0, "'%s' refused", cases[i].in);
		assert_addr_bytes(&got, &want, cases[i].in);
	}
}

Test(util_addr_port, v4_mapped_becomes_v4)
{
	struct shunt_addr got, want = v4("10.1.2.3", 80);

	cr_assert_eq(parse_addr_port("[::ffff:10.1.2.3]:80", &got), 0);
	assert_addr_bytes(&got, &want, "[::ffff:10.1.2.3]:80");
}

Test(util_addr_port, invalid)
{
	static const char *const bad[] = {
		"",
		":",
		":80",
		"10.0.0.1",
		"10.0.0.1:",
		"10.0.0.1:0",
		"10.0.0.1:00",
		"10.0.0.1:080",
		"10.0.0.1:00080",
		"10.0.0.1:65536",
		"10.0.0.1:99999",
		"10.0.0.1:100000",
		"10.0.0.1:123456789012345678901234567890",
		"10.0.0.1:+80",
		"10.0.0.1:-80",
		"10.0.0.1: 80",
		"10.0.0.1 :80",
		" 10.0.0.1:80",
		"10.0.0.1:80 ",
		"10.0.0.1:80\n",
		"10.0.0.1:80x",
		"10.0.0.1:8o",
		"10.0.0.1:0x50",
		"10.0.0.1:80:80",
		"10.0.0.256:80",
		"10.0.0:80",
		"10.0.0.1.5:80",
		"010.0.0.1:80",
		"10.0.0.1/24:80",
		"localhost:80",
		"example.com:443",
		"fd00::1:80",
		"::1:80",
		"[fd00::1]",
		"[fd00::1]80",
		"[fd00::1]:",
		"[fd00::1]:0",
		"[fd00::1]:65536",
		"[fd00::1]:080",
		"[fd00::1]:80x",
		"[fd00::1]:80]",
		"[fd00::1]]:80",
		"[[fd00::1]]:80",
		"[fd00::1:80",
		"fd00::1]:80",
		"[10.0.0.1]:80",
		"[]:80",
		"[fe80::1%eth0]:80",
		"[fd00::1::2]:80",
		"[fd00:::1]:80",
		"[ fd00::1]:80",
		"[fd00::1 ]:80",
		"[gggg::1]:80",
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		struct shunt_addr got, before;

		memset(&got, 0x5a, sizeof(got));
		before = got;
		cr_assert_eq(parse_addr_port(bad[i], &got), -EINVAL, "'%s' accepted", bad[i]);
		cr_assert(memcmp(&got, &before, sizeof(got)) == 0, "'%s' wrote *out on failure",
			  bad[i]);
	}
}

Test(util_addr_port, null_and_long_input)
{
	struct shunt_addr a;
	char big[4096];

	cr_assert_eq(parse_addr_port(NULL, &a), -EINVAL);
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(parse_addr_port(big, &a), -EINVAL);
	big[0] = '[';
	cr_assert_eq(parse_addr_port(big, &a), -EINVAL);
	big[100] = ']';
	big[101] = ':';
	cr_assert_eq(parse_addr_port(big, &a), -EINVAL);
}

Test(util_addr, valid)
{
	struct shunt_addr got, want;

	want = v4("10.0.0.1", 0);
	cr_assert_eq(parse_addr("10.0.0.1", &got), 0);
	assert_addr_bytes(&got, &want, "10.0.0.1");

	want = v6("fd00::1", 0);
	memset(&got, 0xa5, sizeof(got));
	cr_assert_eq(parse_addr("fd00::1", &got), 0);
	assert_addr_bytes(&got, &want, "fd00::1");

	memset(&got, 0xa5, sizeof(got));
	cr_assert_eq(parse_addr("[fd00::1]", &got), 0);
	assert_addr_bytes(&got, &want, "[fd00::1]");

	want = v6("::", 0);
	cr_assert_eq(parse_addr("::", &got), 0);
	assert_addr_bytes(&got, &want, "::");

	want = v4("1.2.3.4", 0);
	cr_assert_eq(parse_addr("::ffff:1.2.3.4", &got), 0);
	assert_addr_bytes(&got, &want, "::ffff:1.2.3.4");
}

Test(util_addr, invalid)
{
	static const char *const bad[] = {
		"",	      "[",	   "]",		"[]",		"10.0.0.1:80",
		"[10.0.0.1]", "[fd00::1",  "fd00::1]",	"[fd00::1]:80", "[[fd00::1]]",
		"host",	      " 10.0.0.1", "10.0.0.1 ", "10.0.0",	"1.2.3.4.5",
		"fe80::1%lo", "fd00::g",   "10.0.0.01", "[fd00::1] ",
	};
	size_t i;

	cr_assert_eq(parse_addr(NULL, &(struct shunt_addr){0}), -EINVAL);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		struct shunt_addr got;

		cr_assert_eq(parse_addr(bad[i], &got), -EINVAL, "'%s' accepted", bad[i]);
	}
}

Test(util_format, addr_port)
{
	struct shunt_addr a = v4("10.0.0.2", 80);
	char buf[ADDR_STR_LEN];

	cr_assert_eq(format_addr_port(&a, buf, sizeof(buf)), buf);
	cr_assert_str_eq(buf, "10.0.0.2:80");

	a = v6("fd00::2", 80);
	cr_assert_str_eq(format_addr_port(&a, buf, sizeof(buf)), "[fd00::2]:80");

	a = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	cr_assert_str_eq(format_addr_port(&a, buf, sizeof(buf)),
			 "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");

	/* The longest inet_ntop() text (a v4-suffixed v6) still fits. */
	a = v6("::ffff:255.255.255.255", 65535);
	format_addr_port(&a, buf, sizeof(buf));
	cr_assert(strlen(buf) < ADDR_STR_LEN);
	cr_assert_eq(buf[0], '[');

	a.family = 0;
	format_addr_port(&a, buf, sizeof(buf));
	cr_assert_neq(buf[0], '\0', "unknown family printed nothing");
	cr_assert_null(strchr(buf, ':'), "unknown family printed as an address: %s", buf);
}

Test(util_format, small_buffer)
{
	struct shunt_addr a = v4("10.0.0.2", 80);
	char buf[8];

	memset(buf, 'x', sizeof(buf));
	format_addr_port(&a, buf, 5);
	cr_assert_eq(strlen(buf), 4);
	cr_assert_eq(buf[5], 'x', "wrote past len");

	memset(buf, 'x', sizeof(buf));
	cr_assert_eq(format_addr_port(&a, buf, 0), buf);
	cr_assert_eq(buf[0], 'x', "wrote with len 0");
}

Test(util_format, round_trip)
{
	static const char *const texts[] = {
		"10.0.0.2:80",	    "0.0.0.0:1",	  "255.255.255.255:65535",
		"[fd00::2]:80",	    "[::1]:443",	  "[::]:1",
		"[2001:db8::1]:53", "[fe80::1:2:3:4]:99", "[1:2:3:4:5:6:7:8]:65535",
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(texts); i++) {
		struct shunt_addr a, b;
		char buf[ADDR_STR_LEN];

		cr_assert_eq(parse_addr_port(texts[i], &a), 0, "'%s' refused", texts[i]);
		cr_assert_str_eq(format_addr_port(&a, buf, sizeof(buf)), texts[i]);
		cr_assert_eq(parse_addr_port(buf, &b), 0);
		cr_assert(addr_equal(&a, &b));
	}
}

Test(util_sockaddr, v4_round_trip)
{
	struct shunt_addr a = v4("10.0.0.9", 8080), b;
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	cr_assert_eq(addr_to_sockaddr(&a, &ss), sizeof(struct sockaddr_in));
	cr_assert_eq(sin->sin_family, AF_INET);
	cr_assert_eq(sin->sin_port, htons(8080));
	cr_assert_eq(sin->sin_addr.s_addr, addr_w(&a, 0));

	memset(&b, 0xa5, sizeof(b));
	cr_assert_eq(addr_from_sockaddr((struct sockaddr *)&ss, &b), 0);
	assert_addr_bytes(&b, &a, "sockaddr_in");
}

Test(util_sockaddr, v6_round_trip)
{
	struct shunt_addr a = v6("fd00::9", 443), b;
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	cr_assert_eq(addr_to_sockaddr(&a, &ss), sizeof(struct sockaddr_in6));
	cr_assert_eq(sin6->sin6_family, AF_INET6);
	cr_assert_eq(sin6->sin6_port, htons(443));
	cr_assert(memcmp(sin6->sin6_addr.s6_addr, a.addr, 16) == 0);
	cr_assert_eq(sin6->sin6_flowinfo, 0);
	cr_assert_eq(sin6->sin6_scope_id, 0);

	memset(&b, 0xa5, sizeof(b));
	cr_assert_eq(addr_from_sockaddr((struct sockaddr *)&ss, &b), 0);
	assert_addr_bytes(&b, &a, "sockaddr_in6");
}

Test(util_sockaddr, v4_mapped)
{
	struct sockaddr_in6 sin6;
	struct shunt_addr got, want = v4("192.0.2.7", 5000);

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(5000);
	cr_assert_eq(inet_pton(AF_INET6, "::ffff:192.0.2.7", &sin6.sin6_addr), 1);
	memset(&got, 0xa5, sizeof(got));
	cr_assert_eq(addr_from_sockaddr((struct sockaddr *)&sin6, &got), 0);
	assert_addr_bytes(&got, &want, "::ffff:192.0.2.7");

	/* A v4-compatible (not mapped) address stays IPv6. */
	cr_assert_eq(inet_pton(AF_INET6, "::192.0.2.7", &sin6.sin6_addr), 1);
	cr_assert_eq(addr_from_sockaddr((struct sockaddr *)&sin6, &got), 0);
	cr_assert_eq(got.family, SHUNT_FAMILY_V6);
}

Test(util_sockaddr, unknown_family)
{
	struct sockaddr_un sun;
	struct sockaddr_storage ss;
	struct shunt_addr a;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	cr_assert_eq(addr_from_sockaddr((struct sockaddr *)&sun, &a), -EAFNOSUPPORT);

	memset(&a, 0, sizeof(a));
	a.family = 5;
	cr_assert_eq(addr_to_sockaddr(&a, &ss), 0);
	a.family = 0;
	cr_assert_eq(addr_to_sockaddr(&a, &ss), 0);
}

Test(util_addr_equal, cases)
{
	struct shunt_addr a = v4("10.0.0.1", 80), b = a;

	cr_assert(addr_equal(&a, &b));
	b.port = 81;
	cr_assert_not(addr_equal(&a, &b));
	b = v4("10.0.0.2", 80);
	cr_assert_not(addr_equal(&a, &b));

	/* Same 16 bytes, different family. */
	b = a;
	b.family = SHUNT_FAMILY_V6;
	cr_assert_not(addr_equal(&a, &b));

	/* Bytes a V4 address does not use do not count. */
	b = a;
	addr_set_w(&b, 1, 0xdeadbeef);
	b.pad = 7;
	cr_assert(addr_equal(&a, &b));

	a = v6("fd00::1", 80);
	b = v6("fd00::1", 80);
	cr_assert(addr_equal(&a, &b));
	b.addr[15] ^= 1;
	cr_assert_not(addr_equal(&a, &b));
	b = v6("fd00::1", 8080);
	cr_assert_not(addr_equal(&a, &b));
}

Test(util_duration, each_unit)
{
	static const struct {
		const char *in;
		uint64_t sec;
	} cases[] = {
		{"1ms", 1},
		{"999ms", 1},
		{"1000ms", 1},
		{"1001ms", 2},
		{"2000ms", 2},
		{"1s", 1},
		{"90s", 90},
		{"1m", 60},
		{"1h", 3600},
		{"1d", 86400},
		{"2d", 172800},
		{"0s1ms", 1},
		{"1h30m", 5400},
		{"1m1ms", 61},
		{"1h05m", 3900},
		{"1s1s", 2},
		{"30m1h", 5400},
		{"1d2h3m4s", 93784},
		{"1d2h3m4s5ms", 93785},
		{"0d0h0m1s", 1},
		{"007s", 7},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t got = 12345;

		cr_assert_eq(parse_duration(cases[i].in, &got), 0, "'%s' refused", cases[i].in);
		cr_assert_eq(got, cases[i].sec, "'%s' -> %llu, want %llu", cases[i].in,
			     (unsigned long long)got, (unsigned long long)cases[i].sec);
	}
}

Test(util_duration, limits)
{
	uint64_t got;

	cr_assert_eq(parse_duration("3650d", &got), 0);
	cr_assert_eq(got, 315360000ULL);
	cr_assert_eq(parse_duration("315360000s", &got), 0);
	cr_assert_eq(got, 315360000ULL);
	cr_assert_eq(parse_duration("87600h", &got), 0);
	cr_assert_eq(parse_duration("315360000000ms", &got), 0);
	cr_assert_eq(got, 315360000ULL);

	got = 777;
	cr_assert_eq(parse_duration("3651d", &got), -ERANGE);
	cr_assert_eq(got, 777, "*out written on failure");
	cr_assert_eq(parse_duration("315360001s", &got), -ERANGE);
	cr_assert_eq(parse_duration("315360000001ms", &got), -ERANGE);
	cr_assert_eq(parse_duration("3650d1ms", &got), -ERANGE);
	cr_assert_eq(parse_duration("3000d3000d", &got), -ERANGE);
	cr_assert_eq(parse_duration("87601h", &got), -ERANGE);
	cr_assert_eq(parse_duration("18446744073709551615s", &got), -ERANGE);
	cr_assert_eq(parse_duration("18446744073709551616ms", &got), -ERANGE);
	cr_assert_eq(parse_duration("99999999999999999999999999999999999999d", &got), -ERANGE);
	cr_assert_eq(parse_duration("213503982334602d", &got), -ERANGE);
	/* 213503982335 days in ms wraps a uint64 to 34448384 (~9.5 hours):
	 * a multiplication without a range check would accept it. */
	cr_assert_eq(parse_duration("213503982335d", &got), -ERANGE);
	cr_assert_eq(parse_duration("1s99999999999999999999999999h", &got), -ERANGE);
}

Test(util_duration, invalid)
{
	static const char *const bad[] = {
		"",    "0s",  "0ms",  "0d0h0m0s", "s",	 "ms",	 "1",	  "10",	    "1x", "1 s",
		" 1s", "1s ", "1s\n", "-1s",	  "+1s", "1.5s", "1,5s",  "1S",	    "1H", "1M",
		"1D",  "1MS", "1sm",  "1mss",	  "h1",	 "1hh",	 "1m s",  "1m-1s",  "1w", "1y",
		"1us", "1ns", "1e3s", "0x10s",	  "1s1", "s1",	 "1d 2h", "1h_30m",
	};
	size_t i;
	uint64_t got = 42;

	cr_assert_eq(parse_duration(NULL, &got), -EINVAL);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		cr_assert_eq(parse_duration(bad[i], &got), -EINVAL, "'%s' not -EINVAL", bad[i]);
		cr_assert_eq(got, 42, "'%s' wrote *out", bad[i]);
	}
	/* Garbage is garbage however large the numbers before it. */
	cr_assert_eq(parse_duration("99999999999999999999999x", &got), -EINVAL);
	cr_assert_eq(parse_duration("99999999999999999999999d1", &got), -EINVAL);
}

Test(util_duration, format)
{
	static const struct {
		uint64_t sec;
		const char *text;
	} cases[] = {
		{0, "0s"},	 {1, "1s"},	   {59, "59s"},		 {60, "1m"},
		{61, "1m1s"},	 {90, "1m30s"},	   {3600, "1h"},	 {3660, "1h1m"},
		{3601, "1h1s"},	 {3725, "1h2m5s"}, {86399, "23h59m59s"}, {86400, "1d"},
		{86401, "1d1s"}, {90000, "1d1h"},  {90061, "1d1h1m1s"},	 {315360000, "3650d"},
	};
	char buf[32];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		cr_assert_eq(format_duration(cases[i].sec, buf, sizeof(buf)), buf);
		cr_assert_str_eq(buf, cases[i].text);
	}
	cr_assert_str_eq(format_duration(UINT64_MAX, buf, sizeof(buf)), "213503982334601d7h15s");
}

Test(util_duration, format_truncates_at_group)
{
	char buf[16];

	memset(buf, 'x', sizeof(buf));
	format_duration(3725, buf, 4);
	cr_assert_str_eq(buf, "1h");
	cr_assert_eq(buf[4], 'x', "wrote past len");

	format_duration(3725, buf, 1);
	cr_assert_str_eq(buf, "");

	memset(buf, 'x', sizeof(buf));
	cr_assert_eq(format_duration(5, buf, 0), buf);
	cr_assert_eq(buf[0], 'x', "wrote with len 0");
}

Test(util_duration, round_trip)
{
	uint64_t sec, got;
	char buf[32];

	for (sec = 1; sec < 200000; sec += 7) {
		format_duration(sec, buf, sizeof(buf));
		cr_assert_eq(parse_duration(buf, &got), 0, "'%s' refused", buf);
		cr_assert_eq(got, sec, "%llu -> '%s' -> %llu", (unsigned long long)sec, buf,
			     (unsigned long long)got);
	}
	for (sec = 315360000; sec > 315000000; sec -= 9973) {
		format_duration(sec, buf, sizeof(buf));
		cr_assert_eq(parse_duration(buf, &got), 0, "'%s' refused", buf);
		cr_assert_eq(got, sec);
	}
}

Test(util_u64, valid)
{
	uint64_t got;

	cr_assert_eq(parse_u64("0", 10, &got), 0);
	cr_assert_eq(got, 0);
	cr_assert_eq(parse_u64("123", UINT64_MAX, &got), 0);
	cr_assert_eq(got, 123);
	cr_assert_eq(parse_u64("100", 100, &got), 0);
	cr_assert_eq(got, 100);
	cr_assert_eq(parse_u64("007", 100, &got), 0);
	cr_assert_eq(got, 7);
	cr_assert_eq(parse_u64("18446744073709551615", UINT64_MAX, &got), 0);
	cr_assert_eq(got, UINT64_MAX);
}

Test(util_u64, invalid)
{
	static const char *const bad[] = {
		"",
		"-1",
		"+1",
		" 1",
		"1 ",
		"0x10",
		"1a",
		"1.0",
		"1e3",
		"\xd9\xa1",
		"99999999999999999999999a",
	};
	uint64_t got = 99;
	size_t i;

	cr_assert_eq(parse_u64(NULL, 10, &got), -EINVAL);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		cr_assert_eq(parse_u64(bad[i], UINT64_MAX, &got), -EINVAL, "'%s' accepted", bad[i]);
		cr_assert_eq(got, 99);
	}
	cr_assert_eq(parse_u64("101", 100, &got), -ERANGE);
	cr_assert_eq(parse_u64("18446744073709551616", UINT64_MAX, &got), -ERANGE);
	cr_assert_eq(parse_u64("99999999999999999999999999", UINT64_MAX, &got), -ERANGE);
	cr_assert_eq(parse_u64("1", 0, &got), -ERANGE);
	cr_assert_eq(got, 99);
}

Test(hash, fnv1a_and_seed)
{
	/* FNV-1a test vectors: "" and "a". */
	cr_assert_eq(hash_bytes("", 0, 0), 0xcbf29ce484222325ULL);
	cr_assert_eq(hash_bytes("a", 1, 0), 0xaf63dc4c8601ec8cULL);
	cr_assert_neq(hash_bytes("a", 1, 1), hash_bytes("a", 1, 0));
}
