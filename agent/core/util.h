/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Small parsing and formatting helpers shared by shuntd and shuntctl. */
#ifndef SHUNT_UTIL_H
#define SHUNT_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <shunt/shunt.h>

/* "10.0.0.2:80" or "[fd00::2]:80" -> *out. Strict: the port is 1..65535,
 * no trailing bytes, no hostnames. Returns 0 or -EINVAL. */
int parse_addr_port(const char *s, struct shunt_addr *out);

/* An address without a port ("10.0.0.1", "fd00::1" or "[fd00::1]"; port
 * left 0). Returns 0 or -EINVAL. In both parsers an IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) becomes a V4 shunt_addr, as in from_sockaddr. */
int parse_addr(const char *s, struct shunt_addr *out);

/* Longest text format_addr_port() writes, NUL included. */
#define ADDR_STR_LEN 56

/* "10.0.0.2:80" / "[fd00::2]:80" into buf (ADDR_STR_LEN bytes); returns buf. */
char *format_addr_port(const struct shunt_addr *a, char *buf, size_t len);

/* shunt_addr <-> sockaddr_storage. to_sockaddr returns the socklen
 * (0 when the family is unknown); from_sockaddr returns 0 or -EAFNOSUPPORT.
 * An IPv4-mapped IPv6 sockaddr (::ffff:a.b.c.d) becomes a V4 shunt_addr. */
socklen_t addr_to_sockaddr(const struct shunt_addr *a, struct sockaddr_storage *ss);
int addr_from_sockaddr(const struct sockaddr *sa, struct shunt_addr *out);

/* Two addresses (family, address and port) are the same. */
int addr_equal(const struct shunt_addr *a, const struct shunt_addr *b);

/* Durations: one or more <number><unit> groups, unit one of ms s m h d
 * ("90s", "1h30m", "2d"); the result is rounded up to whole seconds, must
 * be > 0 and at most 10 years (3650 days). Returns 0 or -EINVAL (-ERANGE
 * when too large). */
int parse_duration(const char *s, uint64_t *out_sec);

/* "1h2m3s"-style text for a number of seconds: units d, h, m, s from the
 * largest down, units that are zero left out (86400 -> "1d", 3725 ->
 * "1h2m5s", 90061 -> "1d1h1m1s"), and "0s" for 0. parse_duration() reads
 * it back to the same value (within its range). Truncated after
 * the last whole group when len is too small; 32 bytes fit any value. */
char *format_duration(uint64_t sec, char *buf, size_t len);

/* Strict unsigned decimal: digits only, no sign, no spaces, <= max.
 * Returns 0, -EINVAL or -ERANGE. */
int parse_u64(const char *s, uint64_t max, uint64_t *out);

/* A list of distinct TCP ports 1-65535, comma-separated, no spaces, at
 * most max: how many (into out), or -EINVAL. */
int parse_port_list(const char *s, uint16_t *out, int max);

/* The unix second at which ttl_sec seconds from now have fully passed
 * (rounded up, so that a TTL never ends early: expiry is checked as
 * "deadline <= now" in whole seconds). */
uint64_t deadline_after(uint64_t ttl_sec);

/* An address prefix: the first len bits of a (port 0). */
struct addr_prefix {
	struct shunt_addr a;
	uint8_t len;
};

/* "10.244.0.0/16" or "fd00:244::/64" -> *out; a bare address is the
 * prefix of that one address (/32, /128). Strict: the length fits the
 * family and no bit beyond it is set ("10.244.1.0/16" is refused, it is
 * probably a typo). Returns 0 or -EINVAL. */
int parse_prefix(const char *s, struct addr_prefix *out);
/* Is a (any port) inside p? Families must match. */
int prefix_contains(const struct addr_prefix *p, const struct shunt_addr *a);
/* "10.244.0.0/16" / "fd00:244::/64" into buf (ADDR_STR_LEN bytes). */
char *format_prefix(const struct addr_prefix *p, char *buf, size_t len);

/* Format a one-line message into err (when err and errlen allow) and
 * return code: `return err_printf(err, errlen, -EINVAL, "...", ...);`. */
int err_printf(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Helper threads (watches, status jobs) run on every CPU the process
 * started with, not on the one the creating thread was pinned to later
 * (proxy workers pin the main thread): thread_affinity_save() before the
 * pinning, thread_start() after. 0 or -errno. */
void thread_affinity_save(void);
int thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#endif /* SHUNT_UTIL_H */
