/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/state/config.c: the declarative routes file. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "state/config.h"
#include "state/routes.h"
#include "core/util.h"

#define NAME "routes.conf"

static struct config cfg;
static char err[512];

static int parse(const char *text)
{
	/* Garbage in *out must not matter, and must not survive an error. */
	cfg.routes = (void *)&cfg;
	cfg.n = 12345;
	memset(err, 'x', sizeof(err));
	err[sizeof(err) - 1] = '\0';
	return config_parse(NAME, text, strlen(text), &cfg, err, sizeof(err));
}

static void cleanup(void)
{
	config_free(&cfg);
}

/* Parsing must fail with exactly this message and leave *out empty. */
static void assert_error(const char *text, const char *msg)
{
	int ret = parse(text);

	cr_assert_eq(ret, -EINVAL, "accepted: %s", text);
	cr_assert_str_eq(err, msg);
	cr_assert_null(cfg.routes);
	cr_assert_eq(cfg.n, 0);
}

static void assert_route(size_t i, const char *svc, const char *key, const char *to, uint32_t flags,
			 uint64_t ttl, unsigned line)
{
	const struct config_route *r;
	struct shunt_route_key k;
	struct shunt_addr a;

	cr_assert_lt(i, cfg.n);
	r = &cfg.routes[i];
	cr_assert_eq(parse_addr_port(svc, &a), 0);
	route_key_make(&k, &a, key, strlen(key));
	cr_assert(memcmp(&r->k, &k, sizeof(k)) == 0, "route %zu: key is not %s '%s'", i, svc, key);
	cr_assert_eq(parse_addr_port(to, &a), 0);
	cr_assert(addr_equal(&r->v.to, &a), "route %zu: wrong sandbox", i);
	cr_assert_eq(r->v.flags, flags, "route %zu: flags %#x", i, r->v.flags);
	cr_assert_eq(r->ttl_sec, ttl, "route %zu: ttl %llu", i, (unsigned long long)r->ttl_sec);
	cr_assert_eq(r->line, line, "route %zu: line %u", i, r->line);
	cr_assert_eq(r->v.created_unix, 0);
	cr_assert_eq(r->v.expires_unix, 0);
}

#define FILE_FLAG SHUNT_ROUTE_FROM_FILE
#define BASELINE  (SHUNT_ROUTE_FROM_FILE | SHUNT_ROUTE_FALLBACK_BASELINE)

Test(config, empty_and_comments)
{
	cr_assert_eq(parse(""), 0);
	cr_assert_eq(cfg.n, 0);
	cr_assert_str_eq(err, "");
	config_free(&cfg);

	cr_assert_eq(parse("# only comments\n\n   \n\t\n  # indented\r\n#"), 0);
	cr_assert_eq(cfg.n, 0);
	config_free(&cfg);

	cr_assert_eq(config_parse(NAME, NULL, 0, &cfg, err, sizeof(err)), 0);
	cr_assert_eq(cfg.n, 0);
	cleanup();
}

Test(config, basic)
{
	cr_assert_eq(parse("route 10.0.0.1:80 dev-a 10.0.1.5:8080\n"), 0, "%s", err);
	cr_assert_eq(cfg.n, 1);
	assert_route(0, "10.0.0.1:80", "dev-a", "10.0.1.5:8080", FILE_FLAG, 0, 1);
	cleanup();
}

Test(config, options)
{
	const char *text = "# sandboxes\n"
			   "route 10.0.0.1:80 a 10.0.1.5:8080 ttl=1h30m\n"
			   "route 10.0.0.1:80 b 10.0.1.5:8080 fallback=baseline\n"
			   "\n"
			   "route 10.0.0.1:80 c 10.0.1.5:8080 fallback=error ttl=90s\n"
			   "route 10.0.0.1:80 d 10.0.1.5:8080 ttl=2d fallback=baseline\n"
			   "route 10.0.0.1:80 e 10.0.1.5:8080 ttl=1ms\n";

	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg.n, 5);
	assert_route(0, "10.0.0.1:80", "a", "10.0.1.5:8080", FILE_FLAG, 5400, 2);
	assert_route(1, "10.0.0.1:80", "b", "10.0.1.5:8080", BASELINE, 0, 3);
	assert_route(2, "10.0.0.1:80", "c", "10.0.1.5:8080", FILE_FLAG, 90, 5);
	assert_route(3, "10.0.0.1:80", "d", "10.0.1.5:8080", BASELINE, 172800, 6);
	assert_route(4, "10.0.0.1:80", "e", "10.0.1.5:8080", FILE_FLAG, 1, 7);
	cleanup();
}

Test(config, separators_comments_and_line_ends)
{
	const char *text = "\troute\t10.0.0.1:80  \t dev-a\t[fd00::5]:80   # trailing\r\n"
			   "route [fd00::1]:443 dev#b 10.0.1.6:80#not-a-comment-start\n"
			   "route 10.0.0.2:80 x 10.0.1.7:80 #ttl=bogus\r\n"
			   "route 10.0.0.3:80 y 10.0.1.8:80 ttl=5s";
	cr_assert_eq(parse(text), -EINVAL);
	/* '#' inside a field is part of it, so the second 'to' is invalid. */
	cr_assert_str_eq(err, NAME ":2: field 'to': '10.0.1.6:80#not-a-comment-start' is not "
				   "IP:PORT");

	text = "\troute\t10.0.0.1:80  \t dev-a\t[fd00::5]:80   # trailing\r\n"
	       "route [fd00::1]:443 dev#b 10.0.1.6:80 # ttl=1s\n"
	       "route 10.0.0.2:80 x 10.0.1.7:80 #ttl=bogus\r\n"
	       "\r\n"
	       "route 10.0.0.3:80 y 10.0.1.8:80 ttl=5s";
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg.n, 4);
	assert_route(0, "10.0.0.1:80", "dev-a", "[fd00::5]:80", FILE_FLAG, 0, 1);
	assert_route(1, "[fd00::1]:443", "dev#b", "10.0.1.6:80", FILE_FLAG, 0, 2);
	assert_route(2, "10.0.0.2:80", "x", "10.0.1.7:80", FILE_FLAG, 0, 3);
	assert_route(3, "10.0.0.3:80", "y", "10.0.1.8:80", FILE_FLAG, 5, 5);
	cleanup();
}

Test(config, text_is_a_span)
{
	/* Only len bytes count: the rest would be an error if read. */
	static const char text[] = "route 10.0.0.1:80 k 10.0.1.5:80\nroute bogus";
	size_t len = strlen("route 10.0.0.1:80 k 10.0.1.5:80\n");

	cr_assert_eq(config_parse(NAME, text, len, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.n, 1);
	config_free(&cfg);

	/* ... and a span cut mid-line is a last line without newline. */
	cr_assert_eq(config_parse(NAME, text, len - 2, &cfg, err, sizeof(err)), 0, "%s", err);
	assert_route(0, "10.0.0.1:80", "k", "10.0.1.5:8", FILE_FLAG, 0, 1);
	cleanup();
}

Test(config, same_key_other_service_is_fine)
{
	const char *text = "route 10.0.0.1:80 k 10.0.1.5:80\n"
			   "route 10.0.0.1:81 k 10.0.1.5:80\n"
			   "route [::ffff:10.0.0.2]:80 k 10.0.1.5:80\n"
			   "route 10.0.0.1:80 K 10.0.1.5:80\n";

	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg.n, 4);
	/* A v4-mapped service is the IPv4 service. */
	assert_route(2, "10.0.0.2:80", "k", "10.0.1.5:80", FILE_FLAG, 0, 3);
	cleanup();
}

Test(config, longest_line_and_key)
{
	char text[4200], key[SHUNT_ROUTE_KEY_LEN];
	int n;

	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	n = snprintf(text, sizeof(text), "route 10.0.0.1:80 %s 10.0.1.5:80 #", key);
	memset(text + n, 'c', 4096 - (size_t)n);
	strcpy(text + 4096, "\r\n");
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg.n, 1);
	assert_route(0, "10.0.0.1:80", key, "10.0.1.5:80", FILE_FLAG, 0, 1);
	config_free(&cfg);

	strcpy(text + 4096, "c\n");
	assert_error(text, NAME ":1: line longer than 4096 bytes");
	cleanup();
}

Test(config, error_directive)
{
	assert_error("rout 10.0.0.1:80 k 10.0.1.5:80\n",
		     NAME ":1: unknown directive 'rout' (expected 'route' or 'override')");
	assert_error("\n# x\nROUTE 10.0.0.1:80 k 10.0.1.5:80\n",
		     NAME ":3: unknown directive 'ROUTE' (expected 'route' or 'override')");
	assert_error("route\r 10.0.0.1:80 k 10.0.1.5:80\n",
		     NAME ":1: unknown directive 'route\\x0d' (expected 'route' or 'override')");
	assert_error("\x01route 10.0.0.1:80 k 10.0.1.5:80",
		     NAME ":1: unknown directive '\\x01route' (expected 'route' or 'override')");
	cleanup();
}

Test(config, error_missing_fields)
{
	assert_error("route\n", NAME ":1: field 'service': missing");
	assert_error("route # 10.0.0.1:80 k 10.0.1.5:80\n", NAME ":1: field 'service': missing");
	assert_error("route 10.0.0.1:80\n", NAME ":1: field 'key': missing");
	assert_error("route 10.0.0.1:80 k\r\n", NAME ":1: field 'to': missing");
	assert_error("route 10.0.0.1:80 k #10.0.1.5:80\n", NAME ":1: field 'to': missing");
	cleanup();
}

Test(config, error_addresses)
{
	assert_error("route 10.0.0.1 k 10.0.1.5:80\n",
		     NAME ":1: field 'service': '10.0.0.1' is not IP:PORT");
	assert_error("route 10.0.0.1:0 k 10.0.1.5:80\n",
		     NAME ":1: field 'service': '10.0.0.1:0' is not IP:PORT");
	assert_error("route fd00::1:80 k 10.0.1.5:80\n",
		     NAME ":1: field 'service': 'fd00::1:80' is not IP:PORT");
	assert_error("route svc.ns:80 k 10.0.1.5:80\n",
		     NAME ":1: field 'service': 'svc.ns:80' is not IP:PORT");
	assert_error("# header\n\nroute 10.0.0.1:80 k 10.0.0.1\n",
		     NAME ":3: field 'to': '10.0.0.1' is not IP:PORT");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:080\n",
		     NAME ":1: field 'to': '10.0.1.5:080' is not IP:PORT");
	assert_error("route 10.0.0.1:80 k [fd00::1]:65536\n",
		     NAME ":1: field 'to': '[fd00::1]:65536' is not IP:PORT");
	cleanup();
}

Test(config, error_long_field_is_shortened)
{
	char text[512], want[256];
	char field[300];

	memset(field, '9', sizeof(field) - 1);
	field[sizeof(field) - 1] = '\0';
	snprintf(text, sizeof(text), "route %s k 10.0.1.5:80\n", field);
	snprintf(want, sizeof(want), NAME ":1: field 'service': '%.64s...' is not IP:PORT", field);
	assert_error(text, want);
	cleanup();
}

Test(config, error_key)
{
	char text[256], want[256], key[SHUNT_ROUTE_KEY_LEN + 1];

	assert_error("route 10.0.0.1:80 a,b 10.0.1.5:80\n",
		     NAME ":1: field 'key': 'a,b' is not a routing key (visible ASCII, none of "
			  ", ; = \" \\)");
	assert_error("route 10.0.0.1:80 a=b 10.0.1.5:80\n",
		     NAME ":1: field 'key': 'a=b' is not a routing key (visible ASCII, none of "
			  ", ; = \" \\)");
	assert_error("route 10.0.0.1:80 \"k\" 10.0.1.5:80\n",
		     NAME ":1: field 'key': '\"k\"' is not a routing key (visible ASCII, none of "
			  ", ; = \" \\)");
	assert_error("route 10.0.0.1:80 a\\b 10.0.1.5:80\n",
		     NAME ":1: field 'key': 'a\\x5cb' is not a routing key (visible ASCII, none "
			  "of , ; = \" \\)");
	assert_error("route 10.0.0.1:80 caf\xc3\xa9 10.0.1.5:80\n",
		     NAME ":1: field 'key': 'caf\\xc3\\xa9' is not a routing key (visible ASCII, "
			  "none of , ; = \" \\)");

	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	snprintf(text, sizeof(text), "route 10.0.0.1:80 %s 10.0.1.5:80\n", key);
	snprintf(want, sizeof(want), NAME ":1: field 'key': '%s' is longer than 63 bytes", key);
	assert_error(text, want);
	cleanup();
}

Test(config, error_nul_byte)
{
	static const char text[] = "route 10.0.0.1:80 de\0v 10.0.1.5:80\n";

	cfg.routes = NULL;
	cr_assert_eq(config_parse(NAME, text, sizeof(text) - 1, &cfg, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, NAME ":1: field 'key': 'de\\x00v' is not a routing key (visible "
				   "ASCII, none of , ; = \" \\)");
	cr_assert_null(cfg.routes);
	cleanup();
}

Test(config, error_options)
{
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 ttl=abc\n",
		     NAME ":1: field 'ttl': 'abc' is not a duration (e.g. 90s, 1h30m, 2d)");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 ttl=\n",
		     NAME ":1: field 'ttl': '' is not a duration (e.g. 90s, 1h30m, 2d)");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 ttl=0s\n",
		     NAME ":1: field 'ttl': '0s' is not a duration (e.g. 90s, 1h30m, 2d)");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 ttl=3651d\n",
		     NAME ":1: field 'ttl': '3651d' is longer than 10 years");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 ttl=1h ttl=2h\n",
		     NAME ":1: field 'ttl': given twice");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 fallback=maybe\n",
		     NAME ":1: field 'fallback': 'maybe' is not baseline or error");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 fallback=\n",
		     NAME ":1: field 'fallback': '' is not baseline or error");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 fallback=Baseline\n",
		     NAME ":1: field 'fallback': 'Baseline' is not baseline or error");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 fallback=error fallback=error\n",
		     NAME ":1: field 'fallback': given twice");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 foo=1\n",
		     NAME ":1: field 'foo': unknown option (expected ttl= or fallback=)");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 TTL=1s\n",
		     NAME ":1: field 'TTL': unknown option (expected ttl= or fallback=)");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 =1s\n",
		     NAME ":1: field '': unknown option (expected ttl= or fallback=)");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 extra\n",
		     NAME ":1: field 'extra': not an option (expected ttl=DURATION or "
			  "fallback=MODE)");
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 ttl = 5s\n",
		     NAME ":1: field 'ttl': not an option (expected ttl=DURATION or "
			  "fallback=MODE)");
	cleanup();
}

Test(config, error_duplicate_names_both_lines)
{
	assert_error("route 10.0.0.1:80 dev-a 10.0.1.5:80\n"
		     "route 10.0.0.1:80 dev-b 10.0.1.5:80\n"
		     "# again\n"
		     "route 10.0.0.1:80 dev-a 10.0.1.6:80 ttl=1h\n",
		     NAME ":4: route for service 10.0.0.1:80 key 'dev-a' already given on line 1");
	assert_error("route [fd00::1]:443 k 10.0.1.5:80\n"
		     "route [FD00:0::1]:443 k 10.0.1.5:80\n",
		     NAME ":2: route for service [fd00::1]:443 key 'k' already given on line 1");
	cleanup();
}

Test(config, first_error_wins)
{
	assert_error("route 10.0.0.1:80 k 10.0.1.5:80 bogus\n"
		     "route 10.0.0.1:80 k 10.0.1.5:80\n",
		     NAME ":1: field 'bogus': not an option (expected ttl=DURATION or "
			  "fallback=MODE)");
	assert_error("route 10.0.0.1 bad,key 10.0.1.5\n",
		     NAME ":1: field 'service': '10.0.0.1' is not IP:PORT");
	cleanup();
}

Test(config, too_many_routes)
{
	unsigned max = SHUNT_MAX_ROUTES;
	size_t cap = (max + 1) * 48, off = 0;
	char *text = malloc(cap + 1);
	unsigned i;
	char want[128];

	cr_assert_not_null(text);
	for (i = 0; i <= max; i++)
		off += (size_t)snprintf(text + off, cap - off,
					"route 10.0.0.1:80 k%u 10.0.1.5:80\n", i);
	snprintf(want, sizeof(want), NAME ":%u: more than %u routes", max + 1, max);
	assert_error(text, want);

	/* One fewer line is the most a file may hold. */
	*strrchr(text, 'r') = '\0';
	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_eq(cfg.n, max);
	free(text);
	cleanup();
}

Test(config, error_buffer_edge_cases)
{
	const char *text = "route 10.0.0.1 k 10.0.1.5:80\n";
	char small[12];

	memset(small, 'x', sizeof(small));
	cr_assert_eq(config_parse(NAME, text, strlen(text), &cfg, small, 8), -EINVAL);
	cr_assert_str_eq(small, "routes.");
	cr_assert_eq(small[8], 'x', "wrote past errlen");

	cr_assert_eq(config_parse(NAME, text, strlen(text), &cfg, NULL, 0), -EINVAL);
	memset(small, 'x', sizeof(small));
	cr_assert_eq(config_parse(NAME, text, strlen(text), &cfg, small, 0), -EINVAL);
	cr_assert_eq(small[0], 'x', "wrote with errlen 0");
	cleanup();
}

Test(config, free_is_idempotent)
{
	cr_assert_eq(parse("route 10.0.0.1:80 k 10.0.1.5:80\n"), 0);
	config_free(&cfg);
	cr_assert_null(cfg.routes);
	cr_assert_eq(cfg.n, 0);
	config_free(&cfg);
	config_free(NULL);
	cleanup();
}

/* Write data to a fresh file, load it, and remove the file before any
 * assertion can end the test. */
static int load_tmp(const char *data, size_t len, char *path, size_t pathlen)
{
	FILE *f;
	int fd, ret;

	snprintf(path, pathlen, "/tmp/shunt-test-config-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	ret = fwrite(data, 1, len, f) == len ? 0 : -EIO;
	if (fclose(f))
		ret = -EIO;
	if (!ret)
		ret = config_load(path, &cfg, err, sizeof(err));
	unlink(path);
	return ret;
}

Test(config_load, reads_a_file)
{
	const char *text = "route 10.0.0.1:80 k 10.0.1.5:80 ttl=1m\n";
	char path[64];

	cr_assert_eq(load_tmp(text, strlen(text), path, sizeof(path)), 0, "%s", err);
	cr_assert_eq(cfg.n, 1);
	assert_route(0, "10.0.0.1:80", "k", "10.0.1.5:80", FILE_FLAG, 60, 1);
	cleanup();
}

Test(config_load, errors_name_the_path)
{
	const char *text = "\nroute 10.0.0.1:80 k 10.0.1.5\n";
	char path[64], want[256];

	cr_assert_eq(load_tmp(text, strlen(text), path, sizeof(path)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: field 'to': '10.0.1.5' is not IP:PORT", path);
	cr_assert_str_eq(err, want);
	cr_assert_null(cfg.routes);
}

Test(config_load, missing_file_and_directory)
{
	cr_assert_eq(config_load("/nonexistent/routes.conf", &cfg, err, sizeof(err)), -ENOENT);
	cr_assert_str_eq(err, "/nonexistent/routes.conf: cannot open: No such file or directory");
	cr_assert_null(cfg.routes);

	cr_assert_eq(config_load("/tmp", &cfg, err, sizeof(err)), -EISDIR);
	cr_assert_str_eq(err, "/tmp: cannot read: Is a directory");

	cr_assert_eq(config_load("/nonexistent", &cfg, NULL, 0), -ENOENT);
}

Test(config_load, size_limit)
{
	size_t max = 16U << 20;
	char *data = malloc(max + 1);
	char path[64], want[256];
	int ret;

	cr_assert_not_null(data);
	memset(data, '\n', max + 1);
	memcpy(data + max - 100, "route 10.0.0.1:80 k 10.0.1.5:80", 31);

	/* Exactly 16 MiB is read whole: the route near its end is found. */
	cr_assert_eq(load_tmp(data, max, path, sizeof(path)), 0, "%s", err);
	cr_assert_eq(cfg.n, 1);
	cr_assert_eq(cfg.routes[0].line, max - 100 + 1);
	cleanup();

	ret = load_tmp(data, max + 1, path, sizeof(path));
	free(data);
	cr_assert_eq(ret, -EFBIG);
	snprintf(want, sizeof(want), "%s: larger than 16 MiB", path);
	cr_assert_str_eq(err, want);
	cr_assert_null(cfg.routes);
}

Test(config, overrides)
{
	char s[ADDR_STR_LEN];

	cr_assert_eq(
		parse("route 10.0.0.1:80 dev-a 10.0.1.5:8080\n"
		      "override netns:/run/netns/sbx-a 10.96.0.50:5432 10.244.1.9:5432 ttl=8h\n"
		      "  override\tcgroup:/sys/fs/cgroup/pod1 [fd00::50]:5432 [fd00::9]:5432 # "
		      "db\n"),
		0, "%s", err);
	cr_assert_eq(cfg.n, 1);
	cr_assert_eq(cfg.n_overrides, 2);
	cr_assert_str_eq(cfg.overrides[0].from, "netns:/run/netns/sbx-a");
	cr_assert_str_eq(format_addr_port(&cfg.overrides[0].dst, s, sizeof(s)), "10.96.0.50:5432");
	cr_assert_str_eq(format_addr_port(&cfg.overrides[0].to, s, sizeof(s)), "10.244.1.9:5432");
	cr_assert_eq(cfg.overrides[0].ttl_sec, 8 * 3600);
	cr_assert_eq(cfg.overrides[0].line, 2);
	cr_assert_str_eq(cfg.overrides[1].from, "cgroup:/sys/fs/cgroup/pod1");
	cr_assert_eq(cfg.overrides[1].ttl_sec, 0);
	cr_assert_eq(cfg.overrides[1].line, 3);
	cleanup();
}

Test(config, override_errors)
{
	assert_error("override\n", NAME ":1: field 'source': missing");
	assert_error("override pod:x 10.0.0.1:1 10.0.0.2:2\n",
		     NAME ":1: field 'source': 'pod:x' is not netns:PATH, pid:PID or cgroup:PATH");
	assert_error("override netns:rel 10.0.0.1:1 10.0.0.2:2\n", NAME
		     ":1: field 'source': 'netns:rel' is not netns:PATH, pid:PID or cgroup:PATH");
	assert_error("override pid:1 10.0.0.1 10.0.0.2:2\n",
		     NAME ":1: field 'dst': '10.0.0.1' is not IP:PORT");
	assert_error("override pid:1 10.0.0.1:1\n", NAME ":1: field 'to': missing");
	assert_error("override pid:1 10.0.0.1:1 [fd00::2]:2\n",
		     NAME ":1: field 'to': '[fd00::2]:2' is not in the address family of 'dst'");
	assert_error("override pid:1 10.0.0.1:1 10.0.0.2:2 fallback=baseline\n",
		     NAME ":1: field 'fallback': unknown option (expected ttl=)");
	assert_error("override pid:1 10.0.0.1:1 10.0.0.2:2 ttl=1h ttl=2h\n",
		     NAME ":1: field 'ttl': given twice");
	assert_error(
		"override pid:1 10.0.0.1:1 10.0.0.2:2\n# x\noverride pid:1 10.0.0.1:1 10.0.0.3:3\n",
		NAME ":3: override from pid:1 to 10.0.0.1:1 already given on line 1");
}
