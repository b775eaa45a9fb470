/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * One line per event on stderr, in one write, in either format:
 *   text: <program>: <level>: <message>[ name=value ...]
 *   json: {"ts":"2026-11-26T10:11:12.345Z","level":"info","msg":"...",...}
 * A text message of several lines (libbpf's verifier log) becomes one
 * prefixed line each; in json it stays one object with "\n" in msg.
 */
#ifndef SHUNT_LOG_H
#define SHUNT_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

extern enum log_level log_threshold;
extern enum log_format log_format;
extern const char *log_prog; /* the text format's prefix: "shuntd" */

/* A named value of a structured line (the access log). Text shows it as
 * name=value (quoted and escaped when it is empty or holds a space, '"',
 * '=' or a byte outside printable ASCII), json as a member. */
enum log_field_type {
	LOG_F_STR,     /* s */
	LOG_F_UINT,    /* u */
	LOG_F_SECONDS, /* u nanoseconds, shown as seconds with 6 decimals */
};

struct log_field {
	const char *name; /* a plain identifier: never escaped */
	enum log_field_type type;
	const char *s;
	uint64_t u;
};

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A message of any length, possibly of several lines, with fields. */
void log_fields(enum log_level lvl, const char *msg, const struct log_field *f, size_t n);

/*
 * The formatting behind both, without I/O: the complete line, newline
 * included, into buf (NUL-terminated, cut at len - 1 bytes). ts is the
 * RFC 3339 time for json. Returns the length of the whole line, like
 * snprintf, so a caller can retry with a buffer large enough.
 */
size_t log_format_line(char *buf, size_t len, enum log_format fmt, enum log_level lvl,
		       const char *ts, const char *msg, const struct log_field *f, size_t n);

/* "2026-11-26T10:11:12.345Z" for a CLOCK_REALTIME time; buf >= 25 bytes. */
char *log_rfc3339_ms(char *buf, size_t len, int64_t sec, long nsec);

#define pr_err(...)  log_msg(LOG_ERR, __VA_ARGS__)
#define pr_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define pr_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define pr_debug(...)                                                                              \
	do {                                                                                       \
		if (log_threshold >= LOG_DEBUG)                                                    \
			log_msg(LOG_DEBUG, __VA_ARGS__);                                           \
	} while (0)

#endif /* SHUNT_LOG_H */
