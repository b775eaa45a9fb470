/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Parsing and formatting of addresses, durations and numbers. Everything
 * here takes operator input (command line, routes file, control socket), so
 * it is strict: a value either parses completely or is refused, and no input
 * can make it read or write out of bounds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

/* The longest address text inet_pton() accepts (45 bytes, a fully padded
 * IPv6 address with an IPv4 tail) and its NUL: anything longer is refused
 * before it is copied. */
#define ADDR_TEXT_MAX INET6_ADDRSTRLEN

/* Durations are accumulated in milliseconds; ten years of 365 days. */
#define MSEC_PER_SEC	1000ULL
#define DURATION_MAX_S	(10ULL * 365 * 24 * 3600)
#define DURATION_MAX_MS (DURATION_MAX_S * MSEC_PER_SEC)

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A port is 1..65535 written without sign, spaces or leading zeros: "080"
 * is refused because some tools read it as octal. */
static int parse_port(const char *s, __u16 *out)
{
	unsigned long v = 0;
	size_t i;

	if (!is_digit(s[0]) || s[0] == '0')
		return -EINVAL;
	for (i = 0; s[i]; i++) {
		if (!is_digit(s[i]) || i >= 5)
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

/* An IPv4-mapped IPv6 address is the same endpoint as its IPv4 form, and
 * the connect4 hook and the proxy see it as IPv4: store it that way so
 * lookups match whichever way the address was written. */
static void set_v6(struct shunt_addr *out, const struct in6_addr *in6)
{
	if (IN6_IS_ADDR_V4MAPPED(in6)) {
		out->family = SHUNT_FAMILY_V4;
		memcpy(out->addr, &in6->s6_addr[12], 4);
		return;
	}
	out->family = SHUNT_FAMILY_V6;
	memcpy(out->addr, in6->s6_addr, 16);
}

/* Parse len bytes of s as an IPv4 (v4_ok) or IPv6 (v6_ok) literal. */
static int parse_host(const char *s, size_t len, int v4_ok, int v6_ok, struct shunt_addr *out)
{
	char buf[ADDR_TEXT_MAX];
	struct in6_addr in6;
	struct in_addr in4;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(out, 0, sizeof(*out));
	if (v4_ok && inet_pton(AF_INET, buf, &in4) == 1) {
		out->family = SHUNT_FAMILY_V4;
		memcpy(out->addr, &in4.s_addr, 4);
		return 0;
	}
	if (v6_ok && inet_pton(AF_INET6, buf, &in6) == 1) {
		set_v6(out, &in6);
		return 0;
	}
	return -EINVAL;
}

int parse_addr_port(const char *s, struct shunt_addr *out)
{
	struct shunt_addr a;
	const char *host, *colon, *end;
	size_t hlen;
	int v4_ok, v6_ok;

	if (!s || !out)
		return -EINVAL;
	if (s[0] == '[') {
		/* IPv6 needs brackets here: without them the port's colon is
		 * indistinguishable from the address's own. */
		host = s + 1;
		end = strchr(host, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		hlen = (size_t)(end - host);
		colon = end + 1;
		v4_ok = 0;
		v6_ok = 1;
	} else {
		host = s;
		colon = strchr(s, ':');
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL;
		hlen = (size_t)(colon - host);
		v4_ok = 1;
		v6_ok = 0;
	}
	if (parse_host(host, hlen, v4_ok, v6_ok, &a))
		return -EINVAL;
	if (parse_port(colon + 1, &a.port))
		return -EINVAL;
	*out = a;
	return 0;
}

int parse_addr(const char *s, struct shunt_addr *out)
{
	struct shunt_addr a;
	size_t len;

	if (!s || !out)
		return -EINVAL;
	len = strlen(s);
	/* "[fd00::1]" is accepted too: it is how the same address is written
	 * next to a port, and operators copy it from there. */
	if (s[0] == '[') {
		if (len < 2 || s[len - 1] != ']' || parse_host(s + 1, len - 2, 0, 1, &a))
			return -EINVAL;
	} else if (parse_host(s, len, 1, 1, &a)) {
		return -EINVAL;
	}
	*out = a;
	return 0;
}

char *format_addr_port(const struct shunt_addr *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (!buf || len == 0)
		return buf;
	buf[0] = '\0';
	if (!a)
		return buf;
	switch (a->family) {
	case SHUNT_FAMILY_V4:
		if (!inet_ntop(AF_INET, a->addr, host, sizeof(host)))
			break;
		snprintf(buf, len, "%s:%u", host, a->port);
		return buf;
	case SHUNT_FAMILY_V6:
		if (!inet_ntop(AF_INET6, a->addr, host, sizeof(host)))
			break;
		snprintf(buf, len, "[%s]:%u", host, a->port);
		return buf;
	default:
		break;
	}
	snprintf(buf, len, "<family %u>", a->family);
	return buf;
}

socklen_t addr_to_sockaddr(const struct shunt_addr *a, struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	switch (a->family) {
	case SHUNT_FAMILY_V4:
		sin->sin_family = AF_INET;
		sin->sin_port = htons(a->port);
		memcpy(&sin->sin_addr.s_addr, a->addr, 4);
		return sizeof(*sin);
	case SHUNT_FAMILY_V6:
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(a->port);
		memcpy(sin6->sin6_addr.s6_addr, a->addr, 16);
		return sizeof(*sin6);
	default:
		return 0;
	}
}

int addr_from_sockaddr(const struct sockaddr *sa, struct shunt_addr *out)
{
	struct sockaddr_in6 sin6;
	struct sockaddr_in sin;

	if (!sa || !out)
		return -EINVAL;
	/* Copies, because callers pass a struct sockaddr * that may point at
	 * storage with a weaker alignment than the family's struct. */
	switch (sa->sa_family) {
	case AF_INET:
		memcpy(&sin, sa, sizeof(sin));
		memset(out, 0, sizeof(*out));
		out->family = SHUNT_FAMILY_V4;
		memcpy(out->addr, &sin.sin_addr.s_addr, 4);
		out->port = ntohs(sin.sin_port);
		return 0;
	case AF_INET6:
		memcpy(&sin6, sa, sizeof(sin6));
		memset(out, 0, sizeof(*out));
		set_v6(out, &sin6.sin6_addr);
		out->port = ntohs(sin6.sin6_port);
		return 0;
	default:
		return -EAFNOSUPPORT;
	}
}

int addr_equal(const struct shunt_addr *a, const struct shunt_addr *b)
{
	if (a->family != b->family || a->port != b->port)
		return 0;
	/* Only the bytes the family uses count: a V4 address built by hand
	 * may carry junk in addr[4..15]. */
	if (a->family == SHUNT_FAMILY_V4)
		return memcmp(a->addr, b->addr, 4) == 0;
	return memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Milliseconds per unit; "ms" is tried before "m". */
static int duration_unit(const char **p, uint64_t *ms)
{
	const char *s = *p;

	if (s[0] == 'm' && s[1] == 's') {
		*ms = 1;
		*p = s + 2;
		return 0;
	}
	switch (s[0]) {
	case 's':
		*ms = MSEC_PER_SEC;
		break;
	case 'm':
		*ms = 60 * MSEC_PER_SEC;
		break;
	case 'h':
		*ms = 3600 * MSEC_PER_SEC;
		break;
	case 'd':
		*ms = 86400 * MSEC_PER_SEC;
		break;
	default:
		return -EINVAL;
	}
	*p = s + 1;
	return 0;
}

int parse_duration(const char *s, uint64_t *out_sec)
{
	uint64_t total = 0, n, unit;
	int too_big = 0;
	const char *p = s;

	if (!s || !out_sec || !*s)
		return -EINVAL;
	/* Syntax is checked to the end before the range, so that garbage is
	 * always -EINVAL however large the numbers in it are. Values are
	 * clamped just above the limit, which keeps every step overflow-free:
	 * DURATION_MAX_MS * 10 + 9 and 2 * (DURATION_MAX_MS + 1) fit easily. */
	while (*p) {
		if (!is_digit(*p))
			return -EINVAL;
		n = 0;
		for (; is_digit(*p); p++) {
			n = n * 10 + (uint64_t)(*p - '0');
			if (n > DURATION_MAX_MS) {
				n = DURATION_MAX_MS + 1;
				too_big = 1;
			}
		}
		if (duration_unit(&p, &unit))
			return -EINVAL;
		if (n > DURATION_MAX_MS / unit) {
			too_big = 1;
			continue;
		}
		total += n * unit;
		if (total > DURATION_MAX_MS) {
			total = DURATION_MAX_MS + 1;
			too_big = 1;
		}
	}
	if (too_big)
		return -ERANGE;
	total = (total + MSEC_PER_SEC - 1) / MSEC_PER_SEC;
	if (total == 0)
		return -EINVAL;
	*out_sec = total;
	return 0;
}

char *format_duration(uint64_t sec, char *buf, size_t len)
{
	static const struct {
		uint64_t sec;
		char unit;
	} units[] = {
		{86400, 'd'},
		{3600, 'h'},
		{60, 'm'},
		{1, 's'},
	};
	size_t i, off = 0;
	int n;

	if (!buf || len == 0)
		return buf;
	buf[0] = '\0';
	if (sec == 0) {
		if (len > 2)
			memcpy(buf, "0s", 3); /* whole, or not at all */
		return buf;
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		uint64_t q = sec / units[i].sec;

		sec %= units[i].sec;
		if (q == 0)
			continue;
		n = snprintf(buf + off, len - off, "%llu%c", (unsigned long long)q, units[i].unit);
		if (n < 0 || (size_t)n >= len - off) {
			/* Cut at a whole group: "1h2" would read as 1h2s. */
			buf[off] = '\0';
			break;
		}
		off += (size_t)n;
	}
	return buf;
}

int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	int too_big = 0;
	size_t i;

	if (!s || !out || !*s)
		return -EINVAL;
	for (i = 0; s[i]; i++) {
		unsigned d;

		if (!is_digit(s[i]))
			return -EINVAL;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			too_big = 1;
		else
			v = v * 10 + d;
	}
	if (too_big || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_port_list(const char *s, uint16_t *out, int max)
{
	int n = 0;

	for (;;) {
		char num[8];
		size_t len = strcspn(s, ",");
		uint64_t v;

		if (!len || len >= sizeof(num) || n == max)
			return -EINVAL;
		memcpy(num, s, len);
		num[len] = '\0';
		if (parse_u64(num, 65535, &v) || !v)
			return -EINVAL;
		for (int i = 0; i < n; i++)
			if (out[i] == v)
				return -EINVAL;
		out[n++] = (uint16_t)v;
		if (!s[len])
			return n;
		s += len + 1;
	}
}

uint64_t deadline_after(uint64_t ttl_sec)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec + ttl_sec + (ts.tv_nsec > 0);
}

int err_printf(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* The bits of a past the first len are all zero. */
static int prefix_host_bits_clear(const struct shunt_addr *a, unsigned int len)
{
	unsigned int n = a->family == SHUNT_FAMILY_V4 ? 4 : 16;

	for (unsigned int i = 0; i < n; i++) {
		unsigned int keep = len >= (i + 1) * 8 ? 8 : len > i * 8 ? len - i * 8 : 0;
		uint8_t mask = keep ? (uint8_t)(0xff << (8 - keep)) : 0;

		if (a->addr[i] & (uint8_t)~mask)
			return 0;
	}
	return 1;
}

int parse_prefix(const char *s, struct addr_prefix *out)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *slash;
	uint64_t len;
	struct shunt_addr a;
	unsigned int max;

	if (!s || !out)
		return -EINVAL;
	slash = strchr(s, '/');
	if (!slash) {
		if (parse_addr(s, &a))
			return -EINVAL;
		len = a.family == SHUNT_FAMILY_V4 ? 32 : 128;
	} else {
		if ((size_t)(slash - s) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, (size_t)(slash - s));
		host[slash - s] = '\0';
		if (parse_addr(host, &a) || parse_u64(slash + 1, 128, &len))
			return -EINVAL;
	}
	max = a.family == SHUNT_FAMILY_V4 ? 32 : 128;
	if (len > max || !prefix_host_bits_clear(&a, (unsigned int)len))
		return -EINVAL;
	a.port = 0;
	out->a = a;
	out->len = (uint8_t)len;
	return 0;
}

int prefix_contains(const struct addr_prefix *p, const struct shunt_addr *a)
{
	unsigned int full = p->len / 8, rest = p->len % 8;

	if (a->family != p->a.family)
		return 0;
	if (memcmp(a->addr, p->a.addr, full))
		return 0;
	return !rest || !((a->addr[full] ^ p->a.addr[full]) & (uint8_t)(0xff << (8 - rest)));
}

char *format_prefix(const struct addr_prefix *p, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (!buf || !len)
		return buf;
	if (!inet_ntop(p->a.family == SHUNT_FAMILY_V4 ? AF_INET : AF_INET6, p->a.addr, host,
		       sizeof(host)))
		host[0] = '\0';
	snprintf(buf, len, "%s/%u", host, p->len);
	return buf;
}

static cpu_set_t saved_cpus;
static bool cpus_saved;

void thread_affinity_save(void)
{
	if (!cpus_saved && !sched_getaffinity(0, sizeof(saved_cpus), &saved_cpus))
		cpus_saved = true;
}

int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int err;

	if (pthread_attr_init(&attr))
		return -ENOMEM;
	if (cpus_saved)
		pthread_attr_setaffinity_np(&attr, sizeof(saved_cpus), &saved_cpus);
	err = pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -err;
}
