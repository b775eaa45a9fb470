/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The routes file parser. The text is walked as (pointer, length) spans, not
 * as C strings, because it comes from a file that may hold any byte; each
 * field is copied into a bounded, NUL-terminated buffer only to be handed to
 * the value parsers. The first error stops the parse and is reported once,
 * naming the file, the line and the field.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "state/config.h"
#include "state/routes.h"
#include "kernel/source.h"
#include "core/util.h"

/* Longest line, terminator not counted. */
#define CONFIG_LINE_MAX 4096
/* Largest file config_load() reads. */
#define CONFIG_FILE_MAX (16U << 20)
/* Longest field worth handing to a value parser; anything longer is
 * invalid for every field, and is still quoted (shortened) in the error. */
#define CONFIG_FIELD_MAX 128
/* Field text shown in an error message, before "...". */
#define CONFIG_QUOTE_MAX 64

struct span {
	const char *p;
	size_t len;
};

struct parser {
	const char *name;
	unsigned line;
	char *err;
	size_t errlen;
	struct config out;
	size_t cap, ocap;
	/* Routes seen so far, to spot a (service, key) given twice; the
	 * value's created_unix holds the line that first gave it. */
	struct route_table *seen;
};

static void errf(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void errf(struct parser *ps, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!ps->err || ps->errlen == 0)
		return;
	n = snprintf(ps->err, ps->errlen, "%s:%u: ", ps->name, ps->line);
	if (n < 0 || (size_t)n >= ps->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Field text for a message: printable ASCII as is, anything else as \xNN,
 * cut after CONFIG_QUOTE_MAX bytes, so an error line stays one readable
 * line whatever the file holds. */
static const char *quote(struct span s, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; i < s.len && i < CONFIG_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (o + 5 >= len)
			break;
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 0xf];
		}
	}
	if (i < s.len && o + 4 <= len) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* Room for CONFIG_QUOTE_MAX escaped bytes, "..." and the NUL. */
#define QUOTE_BUF (CONFIG_QUOTE_MAX * 4 + 4)

static int span_eq(struct span s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* Copy a field for the C-string parsers. Refuses what they would misread:
 * too long to be valid, or an embedded NUL that would end it early. */
static int field_cstr(struct span s, char *buf)
{
	if (s.len >= CONFIG_FIELD_MAX || memchr(s.p, '\0', s.len))
		return -EINVAL;
	memcpy(buf, s.p, s.len);
	buf[s.len] = '\0';
	return 0;
}

static int parse_endpoint(struct parser *ps, const char *field, struct span s,
			  struct shunt_addr *out)
{
	char buf[CONFIG_FIELD_MAX], q[QUOTE_BUF];

	if (field_cstr(s, buf) || parse_addr_port(buf, out)) {
		errf(ps, "field '%s': '%s' is not IP:PORT", field, quote(s, q, sizeof(q)));
		return -EINVAL;
	}
	return 0;
}

static int parse_key(struct parser *ps, struct span s, char *key)
{
	char q[QUOTE_BUF];

	if (s.len > SHUNT_ROUTE_KEY_LEN - 1) {
		errf(ps, "field 'key': '%s' is longer than %d bytes", quote(s, q, sizeof(q)),
		     SHUNT_ROUTE_KEY_LEN - 1);
		return -EINVAL;
	}
	if (field_cstr(s, key) || rk_validate(key)) {
		errf(ps,
		     "field 'key': '%s' is not a routing key (visible ASCII, none of "
		     ", ; = \" \\)",
		     quote(s, q, sizeof(q)));
		return -EINVAL;
	}
	return 0;
}

/* ttl=DURATION or fallback=baseline|error (routes only), each at most
 * once. */
static int parse_option(struct parser *ps, struct span s, struct config_route *r, unsigned *seen,
			int is_override)
{
	const char *eq = memchr(s.p, '=', s.len);
	char buf[CONFIG_FIELD_MAX], q[QUOTE_BUF];
	struct span name, val;
	unsigned bit;
	int err;

	if (!eq) {
		errf(ps, "field '%s': not an option (expected ttl=DURATION%s)",
		     quote(s, q, sizeof(q)), is_override ? "" : " or fallback=MODE");
		return -EINVAL;
	}
	name.p = s.p;
	name.len = (size_t)(eq - s.p);
	val.p = eq + 1;
	val.len = s.len - name.len - 1;
	if (span_eq(name, "ttl")) {
		bit = 1U << 0;
	} else if (span_eq(name, "fallback") && !is_override) {
		bit = 1U << 1;
	} else {
		errf(ps, "field '%s': unknown option (expected ttl=%s)", quote(name, q, sizeof(q)),
		     is_override ? "" : " or fallback=");
		return -EINVAL;
	}
	if (*seen & bit) {
		errf(ps, "field '%s': given twice", quote(name, q, sizeof(q)));
		return -EINVAL;
	}
	*seen |= bit;

	if (bit == 1U << 1) {
		if (span_eq(val, "baseline")) {
			r->v.flags |= SHUNT_ROUTE_FALLBACK_BASELINE;
		} else if (!span_eq(val, "error")) {
			errf(ps, "field 'fallback': '%s' is not baseline or error",
			     quote(val, q, sizeof(q)));
			return -EINVAL;
		}
		return 0;
	}
	err = field_cstr(val, buf) ? -EINVAL : parse_duration(buf, &r->ttl_sec);
	if (err == -ERANGE) {
		errf(ps, "field 'ttl': '%s' is longer than 10 years", quote(val, q, sizeof(q)));
		return -EINVAL;
	}
	if (err) {
		errf(ps, "field 'ttl': '%s' is not a duration (e.g. 90s, 1h30m, 2d)",
		     quote(val, q, sizeof(q)));
		return -EINVAL;
	}
	return 0;
}

/* Next space/tab separated field of *line, or len 0 at its end or at a
 * '#' that starts a field (a comment). */
static struct span next_field(struct span *line)
{
	struct span f = {line->p, 0};

	while (line->len && (*line->p == ' ' || *line->p == '\t')) {
		line->p++;
		line->len--;
	}
	if (!line->len || *line->p == '#') {
		line->len = 0;
		f.p = line->p;
		return f;
	}
	f.p = line->p;
	while (line->len && *line->p != ' ' && *line->p != '\t') {
		line->p++;
		line->len--;
		f.len++;
	}
	return f;
}

static int add_route(struct parser *ps, const struct config_route *r)
{
	const struct shunt_route *prev;
	struct shunt_route mark = {0};
	char a[ADDR_STR_LEN];
	int err;

	prev = route_table_get(ps->seen, &r->k.service, r->k.key, strlen(r->k.key));
	if (prev) {
		errf(ps, "route for service %s key '%s' already given on line %llu",
		     format_addr_port(&r->k.service, a, sizeof(a)), r->k.key,
		     (unsigned long long)prev->created_unix);
		return -EINVAL;
	}
	if (ps->out.n >= SHUNT_MAX_ROUTES) {
		errf(ps, "more than %u routes", (unsigned)SHUNT_MAX_ROUTES);
		return -EINVAL;
	}
	if (ps->out.n == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 16;
		struct config_route *n = realloc(ps->out.routes, cap * sizeof(*n));

		if (!n)
			goto nomem;
		ps->out.routes = n;
		ps->cap = cap;
	}
	mark.created_unix = r->line;
	err = route_table_put(ps->seen, &r->k, &mark, NULL);
	if (err)
		goto nomem;
	ps->out.routes[ps->out.n++] = *r;
	return 0;
nomem:
	errf(ps, "out of memory");
	return -ENOMEM;
}

static int add_override(struct parser *ps, const struct config_override *o)
{
	char a[ADDR_STR_LEN];

	for (size_t i = 0; i < ps->out.n_overrides; i++) {
		const struct config_override *prev = &ps->out.overrides[i];

		if (!strcmp(prev->from, o->from) && addr_equal(&prev->dst, &o->dst)) {
			errf(ps, "override from %s to %s already given on line %u", o->from,
			     format_addr_port(&o->dst, a, sizeof(a)), prev->line);
			return -EINVAL;
		}
	}
	if (ps->out.n_overrides >= SHUNT_MAX_OVERRIDES) {
		errf(ps, "more than %u overrides", (unsigned)SHUNT_MAX_OVERRIDES);
		return -EINVAL;
	}
	if (ps->out.n_overrides == ps->ocap) {
		size_t cap = ps->ocap ? ps->ocap * 2 : 8;
		struct config_override *n = realloc(ps->out.overrides, cap * sizeof(*n));

		if (!n) {
			errf(ps, "out of memory");
			return -ENOMEM;
		}
		ps->out.overrides = n;
		ps->ocap = cap;
	}
	ps->out.overrides[ps->out.n_overrides++] = *o;
	return 0;
}

/* override <source> <dst> <to> [ttl=DURATION] */
static int parse_override_line(struct parser *ps, struct span line)
{
	char buf[CONFIG_FIELD_MAX], msg[256], q[QUOTE_BUF];
	struct config_override o;
	struct config_route opts_r;
	unsigned opts = 0;
	struct span f;
	int err;

	memset(&o, 0, sizeof(o));
	memset(&opts_r, 0, sizeof(opts_r));
	o.line = ps->line;
	f = next_field(&line);
	if (!f.len) {
		errf(ps, "field 'source': missing");
		return -EINVAL;
	}
	if (field_cstr(f, buf) || source_check(buf, msg, sizeof(msg))) {
		errf(ps, "field 'source': '%s' is not netns:PATH, pid:PID or cgroup:PATH",
		     quote(f, q, sizeof(q)));
		return -EINVAL;
	}
	strcpy(o.from, buf); /* source_check: shorter than SHUNT_OVERRIDE_FROM_LEN */
	f = next_field(&line);
	if (!f.len) {
		errf(ps, "field 'dst': missing");
		return -EINVAL;
	}
	err = parse_endpoint(ps, "dst", f, &o.dst);
	if (err)
		return err;
	f = next_field(&line);
	if (!f.len) {
		errf(ps, "field 'to': missing");
		return -EINVAL;
	}
	err = parse_endpoint(ps, "to", f, &o.to);
	if (err)
		return err;
	if (o.to.family != o.dst.family) {
		errf(ps, "field 'to': '%s' is not in the address family of 'dst'",
		     quote(f, q, sizeof(q)));
		return -EINVAL;
	}
	for (f = next_field(&line); f.len; f = next_field(&line)) {
		err = parse_option(ps, f, &opts_r, &opts, 1);
		if (err)
			return err;
	}
	o.ttl_sec = opts_r.ttl_sec;
	return add_override(ps, &o);
}

static int parse_line(struct parser *ps, struct span line)
{
	char key[CONFIG_FIELD_MAX], q[QUOTE_BUF];
	struct config_route r;
	struct shunt_addr svc;
	struct span f;
	unsigned opts = 0;
	int err;

	f = next_field(&line);
	if (!f.len)
		return 0; /* blank or comment */
	if (span_eq(f, "override"))
		return parse_override_line(ps, line);
	if (!span_eq(f, "route")) {
		errf(ps, "unknown directive '%s' (expected 'route' or 'override')",
		     quote(f, q, sizeof(q)));
		return -EINVAL;
	}

	memset(&r, 0, sizeof(r));
	r.line = ps->line;
	r.v.flags = SHUNT_ROUTE_FROM_FILE;

	f = next_field(&line);
	if (!f.len) {
		errf(ps, "field 'service': missing");
		return -EINVAL;
	}
	err = parse_endpoint(ps, "service", f, &svc);
	if (err)
		return err;

	f = next_field(&line);
	if (!f.len) {
		errf(ps, "field 'key': missing");
		return -EINVAL;
	}
	err = parse_key(ps, f, key);
	if (err)
		return err;
	route_key_make(&r.k, &svc, key, strlen(key));

	f = next_field(&line);
	if (!f.len) {
		errf(ps, "field 'to': missing");
		return -EINVAL;
	}
	err = parse_endpoint(ps, "to", f, &r.v.to);
	if (err)
		return err;

	for (f = next_field(&line); f.len; f = next_field(&line)) {
		err = parse_option(ps, f, &r, &opts, 0);
		if (err)
			return err;
	}
	return add_route(ps, &r);
}

int config_parse(const char *name, const char *text, size_t len, struct config *out, char *err,
		 size_t errlen)
{
	struct parser ps = {
		.name = name ? name : "<config>",
		.err = err,
		.errlen = errlen,
	};
	const char *p, *end;
	int ret = 0;

	if (err && errlen)
		err[0] = '\0';
	memset(out, 0, sizeof(*out));
	if (!text) {
		if (len) {
			errf(&ps, "no text");
			return -EINVAL;
		}
		text = ""; /* NULL + 0 is undefined, "" + 0 is not */
	}
	p = text;
	end = text + len;
	ps.seen = route_table_new();
	if (!ps.seen) {
		errf(&ps, "out of memory");
		return -ENOMEM;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		struct span line = {p, (size_t)((nl ? nl : end) - p)};

		p = nl ? nl + 1 : end;
		ps.line++;
		if (line.len && line.p[line.len - 1] == '\r')
			line.len--;
		if (line.len > CONFIG_LINE_MAX) {
			errf(&ps, "line longer than %d bytes", CONFIG_LINE_MAX);
			ret = -EINVAL;
			break;
		}
		ret = parse_line(&ps, line);
		if (ret)
			break;
	}
	route_table_free(ps.seen);
	if (ret) {
		free(ps.out.routes);
		free(ps.out.overrides);
		return ret;
	}
	*out = ps.out;
	return 0;
}

int config_load(const char *path, struct config *out, char *err, size_t errlen)
{
	/* Room for one byte past the limit, and the '\0'. */
	struct buf b = {.max = CONFIG_FILE_MAX + 2};
	int fd, ret;

	if (err && errlen)
		err[0] = '\0';
	memset(out, 0, sizeof(*out));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		return err_printf(err, errlen, ret, "%s: cannot open: %s", path, strerror(-ret));
	}
	/* Read to EOF rather than trusting st_size: the file may be a pipe
	 * or change while it is read. One byte past the limit tells. */
	for (;;) {
		ssize_t n;

		if (!buf_room(&b) && buf_reserve(&b, 1)) {
			ret = err_printf(err, errlen, -ENOMEM, "%s: out of memory", path);
			goto out;
		}
		n = read(fd, buf_tail(&b), buf_room(&b));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			err_printf(err, errlen, ret, "%s: cannot read: %s", path, strerror(-ret));
			goto out;
		}
		if (n == 0)
			break;
		buf_commit(&b, (size_t)n);
		if (buf_len(&b) > CONFIG_FILE_MAX) {
			ret = err_printf(err, errlen, -EFBIG, "%s: larger than %u MiB", path,
					 CONFIG_FILE_MAX >> 20);
			goto out;
		}
	}
	ret = config_parse(path, buf_head(&b), buf_len(&b), out, err, errlen);
out:
	buf_free(&b);
	close(fd);
	return ret;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->routes);
	free(c->overrides);
	memset(c, 0, sizeof(*c));
}
