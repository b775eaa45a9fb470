/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The declarative routes file (--config FILE, reloaded on SIGHUP).
 *
 *   # comment; blank lines are ignored
 *   route <service IP:PORT> <key> <sandbox IP:PORT> [ttl=DURATION] [fallback=baseline|error]
 *   override <source> <dst IP:PORT> <to IP:PORT> [ttl=DURATION]
 *
 * (source as in source.h: netns:PATH, pid:PID or cgroup:PATH.)
 * Fields are separated by spaces or tabs; a '#' starts a comment anywhere
 * outside a field. Errors name the file, the line and the field.
 */
#ifndef SHUNT_CONFIG_H
#define SHUNT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

struct config_route {
	struct shunt_route_key k; /* made with route_key_make() */
	struct shunt_route v;	  /* flags has SHUNT_ROUTE_FROM_FILE */
	uint64_t ttl_sec;	  /* 0 = none; caller turns it into v.expires_unix */
	unsigned line;
};

struct config_override {
	char from[SHUNT_OVERRIDE_FROM_LEN]; /* syntax checked, not resolved */
	struct shunt_addr dst, to;	    /* same family */
	uint64_t ttl_sec;
	unsigned line;
};

struct config {
	struct config_route *routes;
	size_t n;
	struct config_override *overrides;
	size_t n_overrides;
};

/* Parse text (not necessarily NUL-terminated). On error returns -EINVAL
 * (or -ENOMEM) with a message like
 *   "routes.conf:3: field 'to': '10.0.0.1' is not IP:PORT"
 * in err, and *out left empty. A (service, key) pair, or an override's
 * (source, dst), given twice is an error naming both lines. */
int config_parse(const char *name, const char *text, size_t len, struct config *out, char *err,
		 size_t errlen);

/* Read and parse a file; -errno with a message naming the file when it
 * cannot be read. Files over 16 MiB are refused. */
int config_load(const char *path, struct config *out, char *err, size_t errlen);

void config_free(struct config *c);

#endif /* SHUNT_CONFIG_H */
