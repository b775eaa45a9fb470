// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/log.h"
#include "core/writer.h"

enum log_level log_threshold = LOG_INFO;
const char *log_prog = "shuntd";
enum log_format log_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

/* The JSON writer's escaping, into the line's snprintf-like writer. */
static void w_json(struct writer *w, const char *s, size_t n)
{
	size_t room = w->pos < w->len ? w->len - w->pos : 0;

	w->pos += json_escape(room ? w->buf + w->pos : NULL, room, s, n);
}

char *log_rfc3339_ms(char *buf, size_t len, int64_t sec, long nsec)
{
	time_t t = (time_t)sec;
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nsec / 1000000);
	return buf;
}

static bool needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\')
			return true;
	}
	return false;
}

static void w_value(struct writer *w, enum log_format fmt, const struct log_field *f)
{
	char num[48];

	switch (f->type) {
	case LOG_F_STR: {
		const char *s = f->s ? f->s : "";

		if (fmt == LOG_FORMAT_TEXT && !needs_quotes(s)) {
			w_str(w, s);
			return;
		}
		w_put(w, "\"", 1);
		w_json(w, s, strlen(s));
		w_put(w, "\"", 1);
		return;
	}
	case LOG_F_UINT:
		snprintf(num, sizeof(num), "%llu", (unsigned long long)f->u);
		break;
	case LOG_F_SECONDS:
		snprintf(num, sizeof(num), "%llu.%06llu", (unsigned long long)(f->u / 1000000000),
			 (unsigned long long)(f->u % 1000000000 / 1000));
		break;
	}
	w_str(w, num);
}

size_t log_format_line(char *buf, size_t len, enum log_format fmt, enum log_level lvl,
		       const char *ts, const char *msg, const struct log_field *f, size_t n)
{
	struct writer w = {.buf = buf, .len = len};
	size_t mlen = strlen(msg);

	/* A message's own trailing newlines (libbpf's) are not lines. */
	while (mlen && (msg[mlen - 1] == '\n' || msg[mlen - 1] == '\r'))
		mlen--;
	if (fmt == LOG_FORMAT_JSON) {
		w_str(&w, "{\"ts\":\"");
		w_str(&w, ts);
		w_str(&w, "\",\"level\":\"");
		w_str(&w, level_names[lvl]);
		w_str(&w, "\",\"msg\":\"");
		w_json(&w, msg, mlen);
		w_put(&w, "\"", 1);
		for (size_t i = 0; i < n; i++) {
			w_str(&w, ",\"");
			w_str(&w, f[i].name);
			w_str(&w, "\":");
			w_value(&w, fmt, &f[i]);
		}
		w_str(&w, "}\n");
	} else {
		const char *p = msg, *end = msg + mlen, *nl;

		/* Every line of a message says whose and how severe it is. */
		do {
			nl = memchr(p, '\n', (size_t)(end - p));
			w_str(&w, log_prog);
			w_str(&w, ": ");
			w_str(&w, level_names[lvl]);
			w_str(&w, ": ");
			w_put(&w, p, (size_t)((nl ? nl : end) - p));
			if (nl)
				w_put(&w, "\n", 1);
			p = nl ? nl + 1 : end;
		} while (nl);
		for (size_t i = 0; i < n; i++) {
			w_put(&w, " ", 1);
			w_str(&w, f[i].name);
			w_put(&w, "=", 1);
			w_value(&w, fmt, &f[i]);
		}
		w_put(&w, "\n", 1);
	}
	if (len)
		buf[w.pos < len ? w.pos : len - 1] = '\0';
	return w.pos;
}

static void write_all(const char *s, size_t n)
{
	while (n) {
		ssize_t r = write(STDERR_FILENO, s, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		s += r;
		n -= (size_t)r;
	}
}

void log_fields(enum log_level lvl, const char *msg, const struct log_field *f, size_t n)
{
	char line[2048], ts[32] = "";
	struct timespec now;
	size_t need;
	char *big;

	if (lvl > log_threshold)
		return;
	if (log_format == LOG_FORMAT_JSON) {
		clock_gettime(CLOCK_REALTIME, &now);
		log_rfc3339_ms(ts, sizeof(ts), (int64_t)now.tv_sec, now.tv_nsec);
	}
	need = log_format_line(line, sizeof(line), log_format, lvl, ts, msg, f, n);
	if (need < sizeof(line)) {
		/* One write per line, so concurrent writers never interleave. */
		write_all(line, need);
		return;
	}
	big = malloc(need + 1);
	if (!big) {
		line[sizeof(line) - 2] = '\n';
		write_all(line, sizeof(line) - 1);
		return;
	}
	log_format_line(big, need + 1, log_format, lvl, ts, msg, f, n);
	write_all(big, need);
	free(big);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	if (lvl > log_threshold)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	log_fields(lvl, msg, NULL, 0);
}
