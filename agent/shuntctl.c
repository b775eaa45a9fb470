// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* shuntctl: the operator's CLI over shuntd's control socket. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ctl_proto.h"
#include "routekey.h"
#include "source.h"
#include "util.h"

static const char usage_text[] =
	"Usage: shuntctl [--control PATH] COMMAND ...\n"
	"\n"
	"Commands:\n"
	"  route add --service IP:PORT --key KEY --to IP:PORT [--ttl DURATION]\n"
	"            [--fallback baseline|error]\n"
	"  route del --service IP:PORT --key KEY\n"
	"  route list [-o json]\n"
	"  override add --from SOURCE --dst IP:PORT --to IP:PORT [--ttl DURATION]\n"
	"  override del --from SOURCE --dst IP:PORT\n"
	"  override list [-o json]\n"
	"  status [-o json]\n"
	"  reload\n"
	"\n"
	"A route sends the HTTP requests for a service that carry a routing key to a\n"
	"sandbox. An override sends every TCP connection from one pod (SOURCE) to a\n"
	"destination (e.g. the shared database) to another address instead, at\n"
	"connect() time and without the proxy. SOURCE is netns:PATH (the pod's network\n"
	"namespace, e.g. netns:/run/netns/sandbox-a), pid:PID (that process's network\n"
	"namespace) or cgroup:PATH (a cgroup v2 directory and everything below it).\n"
	"reload reads shuntd's --config file again (as SIGHUP does) and says what is in\n"
	"force, or what is wrong with the file.\n"
	"\n"
	"Whoever can open the control socket may list and see the status; adding,\n"
	"deleting and reload need CAP_NET_ADMIN (root normally has it), in shuntd's user\n"
	"namespace.\n"
	"\n"
	"Options:\n"
	"  --control PATH   shuntd's control socket (default " CTL_DEFAULT_PATH ")\n"
	"  -h, --help       this text\n"
	"\n"
	"Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 shuntd unreachable.\n"
	"\n"
	"Examples:\n"
	"  shuntctl route add --service 10.96.0.10:80 --key dev-a --to 10.244.1.7:8080 --ttl 8h\n"
	"  shuntctl route add --service [fd00::10]:80 --key dev-a --to [fd00::7]:8080 \\\n"
	"           --fallback baseline\n"
	"  shuntctl route del --service 10.96.0.10:80 --key dev-a\n"
	"  shuntctl route list -o json\n"
	"  shuntctl override add --from netns:/run/netns/sandbox-a --dst 10.96.0.50:5432 \\\n"
	"           --to 10.244.1.9:5432 --ttl 8h\n"
	"  shuntctl status\n"
	"  shuntctl reload\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shuntctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'shuntctl --help'.\n");
	return CTL_EXIT_USAGE;
}

/* Send one request line, print the answer, return the exit code. */
static int call(const char *path, const char *req)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char buf[65536];
	size_t len = strlen(req), off = 0;
	int fd, code = CTL_EXIT_OK, first = 1, werr = 0;
	ssize_t n;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "shuntctl: control socket path too long: %s\n", path);
		return CTL_EXIT_USAGE;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		fprintf(stderr, "shuntctl: cannot reach shuntd at %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return CTL_EXIT_UNREACHABLE;
	}
	while (off < len) {
		n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n <= 0) {
			/* shuntd may have answered (busy) and closed before reading */
			werr = errno;
			break;
		}
		off += (size_t)n;
	}
	/* First line: "ok" or "error N"; the rest goes to stdout or stderr. */
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		char *p = buf;
		size_t rest = (size_t)n;

		if (first) {
			char *nl = memchr(buf, '\n', (size_t)n);

			if (!nl) {
				fprintf(stderr, "shuntctl: malformed answer from shuntd\n");
				close(fd);
				return CTL_EXIT_FAILED;
			}
			*nl = '\0';
			if (strcmp(buf, "ok")) {
				code = CTL_EXIT_FAILED;
				if (!strncmp(buf, "error ", 6))
					code = atoi(buf + 6) ? atoi(buf + 6) : CTL_EXIT_FAILED;
			}
			p = nl + 1;
			rest = (size_t)n - (size_t)(p - buf);
			first = 0;
			if (code)
				fputs("shuntctl: ", stderr);
		}
		fwrite(p, 1, rest, code ? stderr : stdout);
	}
	close(fd);
	if (first) {
		if (werr)
			fprintf(stderr, "shuntctl: write to %s: %s\n", path, strerror(werr));
		else
			fprintf(stderr,
				"shuntctl: shuntd closed the connection without an answer\n");
		return CTL_EXIT_UNREACHABLE;
	}
	return code;
}

static int send_request(const char *path, const struct ctl_request *r)
{
	char req[CTL_MAX_REQUEST];

	if (ctl_format_request(r, req, sizeof(req)) < 0) {
		fprintf(stderr, "shuntctl: request too long\n");
		return CTL_EXIT_USAGE;
	}
	return call(path, req);
}

/* "-o json" / "-o text" / nothing. */
static int parse_output(int argc, char **argv, const char **fmt)
{
	*fmt = "text";
	for (int i = 0; i < argc; i++) {
		if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc) {
			if (strcmp(argv[i + 1], "json") && strcmp(argv[i + 1], "text"))
				return usage("-o: '%s' is not json or text", argv[i + 1]);
			*fmt = argv[++i];
		} else {
			return usage("unexpected argument '%s'", argv[i]);
		}
	}
	return 0;
}

/* Flags of route and override add/del: --name VALUE pairs. */
struct route_args {
	const char *service, *key, *to, *ttl, *fallback, *from, *dst;
};

static int parse_route_args(int argc, char **argv, struct route_args *ra)
{
	for (int i = 0; i < argc; i++) {
		const char **slot = NULL;

		if (!strcmp(argv[i], "--service"))
			slot = &ra->service;
		else if (!strcmp(argv[i], "--key"))
			slot = &ra->key;
		else if (!strcmp(argv[i], "--to"))
			slot = &ra->to;
		else if (!strcmp(argv[i], "--ttl"))
			slot = &ra->ttl;
		else if (!strcmp(argv[i], "--fallback"))
			slot = &ra->fallback;
		else if (!strcmp(argv[i], "--from"))
			slot = &ra->from;
		else if (!strcmp(argv[i], "--dst"))
			slot = &ra->dst;
		else
			return usage("unknown option '%s'", argv[i]);
		if (i + 1 >= argc)
			return usage("%s needs a value", argv[i]);
		*slot = argv[++i];
	}
	return 0;
}

static int route_cmd(const char *path, int argc, char **argv)
{
	struct route_args ra = {};
	struct ctl_request r = {};
	uint64_t ttl = 0;
	const char *fmt;
	int err;

	if (argc < 1)
		return usage("route: add, del or list?%s", "");
	if (!strcmp(argv[0], "list")) {
		err = parse_output(argc - 1, argv + 1, &fmt);
		if (err)
			return err;
		r.op = CTL_OP_ROUTE_LIST;
		r.json = !strcmp(fmt, "json");
		return send_request(path, &r);
	}
	if (strcmp(argv[0], "add") && strcmp(argv[0], "del"))
		return usage("route: unknown command '%s'", argv[0]);
	err = parse_route_args(argc - 1, argv + 1, &ra);
	if (err)
		return err;
	if (!ra.service)
		return usage("route %s: --service is required", argv[0]);
	if (!ra.key)
		return usage("route %s: --key is required", argv[0]);
	if (parse_addr_port(ra.service, &r.service))
		return usage("--service: '%s' is not IP:PORT (e.g. 10.96.0.10:80, [fd00::10]:80)",
			     ra.service);
	if (rk_validate(ra.key))
		return usage("--key: '%s' is not a valid routing key (1-63 visible ASCII "
			     "characters, none of , ; = \" \\)",
			     ra.key);
	if (!strcmp(argv[0], "del")) {
		if (ra.to || ra.ttl || ra.fallback)
			return usage("route del takes only --service and --key%s", "");
		r.op = CTL_OP_ROUTE_DEL;
		strcpy(r.key, ra.key); /* rk_validate: at most 63 bytes */
		return send_request(path, &r);
	}
	if (!ra.to)
		return usage("route add: --to is required%s", "");
	if (parse_addr_port(ra.to, &r.to))
		return usage("--to: '%s' is not IP:PORT", ra.to);
	if (ra.ttl && parse_duration(ra.ttl, &ttl))
		return usage("--ttl: '%s' is not a duration (e.g. 30m, 8h, 2d)", ra.ttl);
	if (ttl > CTL_MAX_TTL)
		return usage("--ttl: '%s' is longer than %llu days", ra.ttl, CTL_MAX_TTL / 86400);
	if (ra.fallback && strcmp(ra.fallback, "baseline") && strcmp(ra.fallback, "error"))
		return usage("--fallback: '%s' is not baseline or error", ra.fallback);
	r.op = CTL_OP_ROUTE_ADD;
	strcpy(r.key, ra.key);
	r.ttl_sec = ttl;
	r.fallback_baseline = ra.fallback && !strcmp(ra.fallback, "baseline");
	return send_request(path, &r);
}

static int override_cmd(const char *path, int argc, char **argv)
{
	struct route_args ra = {};
	struct ctl_request r = {};
	char err[256];
	const char *fmt;
	int ret;

	if (argc < 1)
		return usage("override: add, del or list?");
	if (!strcmp(argv[0], "list")) {
		ret = parse_output(argc - 1, argv + 1, &fmt);
		if (ret)
			return ret;
		r.op = CTL_OP_OVERRIDE_LIST;
		r.json = !strcmp(fmt, "json");
		return send_request(path, &r);
	}
	if (strcmp(argv[0], "add") && strcmp(argv[0], "del"))
		return usage("override: unknown command '%s'", argv[0]);
	ret = parse_route_args(argc - 1, argv + 1, &ra);
	if (ret)
		return ret;
	if (ra.service || ra.key || ra.fallback)
		return usage("override %s takes --from, --dst%s", argv[0],
			     strcmp(argv[0], "add") ? "" : ", --to and --ttl");
	if (!ra.from)
		return usage("override %s: --from is required", argv[0]);
	if (!ra.dst)
		return usage("override %s: --dst is required", argv[0]);
	if ((strcmp(argv[0], "del") ? source_check : source_check_listed)(ra.from, err,
									  sizeof(err)))
		return usage("%s", err);
	strcpy(r.from, ra.from); /* source_check: it fits */
	if (parse_addr_port(ra.dst, &r.dst))
		return usage("--dst: '%s' is not IP:PORT", ra.dst);
	if (!strcmp(argv[0], "del")) {
		if (ra.to || ra.ttl)
			return usage("override del takes only --from and --dst");
		r.op = CTL_OP_OVERRIDE_DEL;
		return send_request(path, &r);
	}
	if (!ra.to)
		return usage("override add: --to is required");
	if (parse_addr_port(ra.to, &r.to))
		return usage("--to: '%s' is not IP:PORT", ra.to);
	if (r.to.family != r.dst.family)
		return usage("--to: '%s' is not in the address family of --dst", ra.to);
	if (ra.ttl && parse_duration(ra.ttl, &r.ttl_sec))
		return usage("--ttl: '%s' is not a duration (e.g. 30m, 8h, 2d)", ra.ttl);
	if (r.ttl_sec > CTL_MAX_TTL)
		return usage("--ttl: '%s' is longer than %llu days", ra.ttl, CTL_MAX_TTL / 86400);
	r.op = CTL_OP_OVERRIDE_ADD;
	return send_request(path, &r);
}

int main(int argc, char **argv)
{
	const char *path = CTL_DEFAULT_PATH, *fmt;
	int i = 1, err;

	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_text, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--control") && i + 1 < argc) {
			path = argv[i + 1];
			i += 2;
			continue;
		}
		if (!strncmp(argv[i], "--control=", 10)) {
			path = argv[i] + 10;
			i++;
			continue;
		}
		return usage("unknown option '%s'", argv[i]);
	}
	if (i >= argc)
		return usage("a command is needed%s", "");
	if (!strcmp(argv[i], "route"))
		return route_cmd(path, argc - i - 1, argv + i + 1);
	if (!strcmp(argv[i], "override"))
		return override_cmd(path, argc - i - 1, argv + i + 1);
	if (!strcmp(argv[i], "status")) {
		err = parse_output(argc - i - 1, argv + i + 1, &fmt);
		if (err)
			return err;
		struct ctl_request r = {.op = CTL_OP_STATUS, .json = !strcmp(fmt, "json")};

		return send_request(path, &r);
	}
	if (!strcmp(argv[i], "reload")) {
		struct ctl_request r = {.op = CTL_OP_RELOAD};

		if (i + 1 < argc)
			return usage("reload: unexpected argument '%s'", argv[i + 1]);
		return send_request(path, &r);
	}
	if (!strcmp(argv[i], "help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	return usage("unknown command '%s'", argv[i]);
}
