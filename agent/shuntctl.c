// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* shuntctl: the operator's CLI over shuntd's control socket. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ops/ctl_proto.h"
#include "state/routes.h"
#include "kernel/source.h"
#include "core/util.h"

/* override wait: the DaemonSet's --metrics-addr port, the default wait,
 * and the pauses between questions (growing to the last). */
#define WAIT_AGENT_PORT	  9464
#define WAIT_DEFAULT_S	  60
#define WAIT_PAUSE_MIN_MS 50
#define WAIT_PAUSE_MAX_MS 500
#define WAIT_TRY_MAX_MS	  2000 /* one HTTP question, connect to answer */
#define WAIT_ANSWER_MAX	  8192
#define STR_(x)		  #x
#define STR(x)		  STR_(x)

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
	"  override wait --pod-uid UID [--agent IP[:PORT]] [--timeout DURATION]\n"
	"  pod add NAME --netns PATH | --tc IFNAME\n"
	"  pod del NAME\n"
	"  pod infer NAME off|shadow|on [--port PORT[,PORT...]]\n"
	"  pod list [-o json]\n"
	"  status [-o json]\n"
	"  reload\n"
	"\n"
	"A route sends the HTTP requests for a service that carry a routing key to a\n"
	"sandbox. An override sends every TCP connection from one pod (SOURCE) to a\n"
	"destination (e.g. the shared database) to another address instead, at\n"
	"connect() time and without the proxy. SOURCE is netns:PATH (the pod's network\n"
	"namespace, e.g. netns:/run/netns/sandbox-a), pid:PID (that process's network\n"
	"namespace) or cgroup:PATH (a cgroup v2 directory and everything below it).\n"
	"pod add serves a pod in-pod: shuntd opens its proxy sockets inside the pod's\n"
	"network namespace (PATH: /run/netns/NAME or /proc/PID/ns/net), so the pod's\n"
	"steered requests reach their upstream from the pod's own address; pod del\n"
	"stops that and closes the pod's connections (new ones fail open until the\n"
	"pod is served again). NAME is yours to choose, e.g. NAMESPACE/POD.\n"
	"pod add --tc captures a pod with TC instead, for pods whose connect() the\n"
	"cgroup hooks cannot see (VM-isolated pods): a TC program on the pod's host-side\n"
	"interface IFNAME hands its new connections to steered services to shunt; pod\n"
	"del takes the program off.\n"
	"pod infer (a pod served in-pod) reads the pod's inbound HTTP requests on\n"
	"--port (its serving ports, up to 8) and, for an outbound request the app sent\n"
	"without a routing key, infers the key of the inbound request it serves, when\n"
	"that cannot be wrong as far as shunt sees. shadow counts what it would do\n"
	"(pod list); on adds the key as its own baggage line, marked shunt-inferred.\n"
	"off stops reading the pod's inbound connections.\n"
	"reload reads shuntd's --config file again (as SIGHUP does) and says what is in\n"
	"force, or what is wrong with the file.\n"
	"\n"
	"Whoever can open the control socket may list and see the status; adding,\n"
	"deleting and reload need CAP_NET_ADMIN (root normally has it), in shuntd's user\n"
	"namespace.\n"
	"\n"
	"override wait returns once the overrides that SandboxOverrides want for the pod\n"
	"with this metadata.uid are in the node's kernel (exit 0; also when none selects\n"
	"the pod), or after --timeout (default 60s; 0: ask once) with the last reason\n"
	"(exit 1). A sandbox pod runs it as an init container, so that its first\n"
	"connection is already redirected; with --agent it asks the node's agent over\n"
	"HTTP (its --metrics-addr; port " STR(
		WAIT_AGENT_PORT) " when none is given), else\n"
				 "over the control socket. The SandboxOverride must exist before "
				 "the pod is\n"
				 "created.\n"
				 "\n"
				 "Options:\n"
				 "  --control PATH   shuntd's control socket "
				 "(default " CTL_DEFAULT_PATH ")\n"
				 "  -h, --help       this text\n"
				 "\n"
				 "Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 "
				 "shuntd unreachable.\n"
				 "\n"
				 "Examples:\n"
				 "  shuntctl route add --service 10.96.0.10:80 --key dev-a --to "
				 "10.244.1.7:8080 --ttl 8h\n"
				 "  shuntctl route add --service [fd00::10]:80 --key dev-a --to "
				 "[fd00::7]:8080 \\\n"
				 "           --fallback baseline\n"
				 "  shuntctl route del --service 10.96.0.10:80 --key dev-a\n"
				 "  shuntctl route list -o json\n"
				 "  shuntctl override add --from netns:/run/netns/sandbox-a --dst "
				 "10.96.0.50:5432 \\\n"
				 "           --to 10.244.1.9:5432 --ttl 8h\n"
				 "  shuntctl override wait --pod-uid \"$POD_UID\" --agent "
				 "\"$HOST_IP\" --timeout 2m\n"
				 "  shuntctl pod add default/web-7d4f --netns "
				 "/proc/4242/ns/net\n"
				 "  shuntctl pod infer default/web-7d4f shadow --port 8080\n"
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

/* A connection to the control socket: the fd, or -(exit code) with a
 * message in err. */
static int ctl_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return err_printf(err, errlen, -CTL_EXIT_USAGE, "control socket path too long: %s",
				  path);
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		err_printf(err, errlen, 0, "cannot reach shuntd at %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -CTL_EXIT_UNREACHABLE;
	}
	return fd;
}

/* Send one request line, print the answer, return the exit code. */
static int call(const char *path, const char *req)
{
	char buf[65536];
	size_t len = strlen(req), off = 0;
	int fd, code = CTL_EXIT_OK, first = 1, werr = 0;
	ssize_t n;

	fd = ctl_connect(path, buf, sizeof(buf));
	if (fd < 0) {
		fprintf(stderr, "shuntctl: %s\n", buf);
		return -fd;
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

/* ---- override wait ------------------------------------------------------ */

enum wait_answer {
	WAIT_READY,
	WAIT_PENDING, /* ask again */
	WAIT_AWAY,    /* the agent did not answer (restarting?): ask again */
	WAIT_REFUSED, /* it cannot answer this: give up */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The first line of text (at most len - 1 bytes) into out. */
static void first_line(const char *text, char *out, size_t len)
{
	size_t n = strcspn(text, "\r\n");

	snprintf(out, len, "%.*s", (int)n, text);
}

/* Wait until fd is ready for events, at most until deadline. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	uint64_t now = now_ms();
	int n;

	do
		n = poll(&p, 1, now < deadline ? (int)(deadline - now) : 0);
	while (n < 0 && errno == EINTR);
	return n > 0 ? 0 : -ETIMEDOUT;
}

/* GET /v1/overrides?pod=UID from the agent's metrics listener: plain
 * HTTP/1.1, one request per connection (no libcurl in shuntctl). */
static enum wait_answer ask_http(const struct shunt_addr *agent, const char *uid, uint64_t deadline,
				 char *reason, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(agent, &ss);
	char a[ADDR_STR_LEN], req[256], buf[WAIT_ANSWER_MAX];
	const char *body;
	size_t got = 0;
	int fd, status, n, err = 0;
	socklen_t el = sizeof(err);

	format_addr_port(agent, a, sizeof(a));
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(reason, len, "socket: %s", strerror(errno));
		return WAIT_REFUSED;
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS)
		err = errno;
	else if (wait_fd(fd, POLLOUT, deadline))
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el))
		err = errno;
	if (err) {
		snprintf(reason, len, "cannot reach the agent at %s: %s", a, strerror(err));
		close(fd);
		return WAIT_AWAY;
	}
	n = snprintf(req, sizeof(req),
		     "GET /v1/overrides?pod=%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shuntctl\r\n"
		     "Connection: close\r\n\r\n",
		     uid, a);
	/* A small request on a fresh connection: one send. */
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(reason, len, "sending to the agent at %s: %s", a, strerror(errno));
		close(fd);
		return WAIT_AWAY;
	}
	while (got < sizeof(buf) - 1) {
		ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0)
			break;
		if ((errno == EAGAIN || errno == EINTR) && !wait_fd(fd, POLLIN, deadline))
			continue;
		break;
	}
	close(fd);
	buf[got] = '\0';
	if (sscanf(buf, "HTTP/1.%*[01] %3d ", &status) != 1) {
		snprintf(reason, len, "no HTTP answer from the agent at %s%s", a,
			 got ? "" : " (timed out)");
		return WAIT_AWAY;
	}
	body = strstr(buf, "\r\n\r\n");
	if (body && body[4])
		first_line(body + 4, reason, len);
	else
		snprintf(reason, len, "the agent at %s answered HTTP %d", a, status);
	if (status == 200)
		return WAIT_READY;
	/* 503: pending (or a listener busy with other clients). 400, 404:
	 * this agent cannot answer (no Kubernetes mode, an old version). */
	return status == 503 || status >= 500 ? WAIT_PENDING : WAIT_REFUSED;
}

/* The same question over the control socket. */
static enum wait_answer ask_ctl(const char *path, const char *uid, char *reason, size_t len)
{
	struct ctl_request r = {.op = CTL_OP_OVERRIDE_READY};
	char req[CTL_MAX_REQUEST], buf[WAIT_ANSWER_MAX];
	size_t got = 0;
	ssize_t n;
	int fd;

	memcpy(r.pod_uid, uid, K8S_UID_LEN + 1);
	n = ctl_format_request(&r, req, sizeof(req));
	fd = ctl_connect(path, reason, len);
	if (fd < 0)
		return fd == -CTL_EXIT_UNREACHABLE ? WAIT_AWAY : WAIT_REFUSED;
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(reason, len, "write to %s: %s", path, strerror(errno));
		close(fd);
		return WAIT_AWAY;
	}
	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	if (!strncmp(buf, "ok\n", 3)) {
		first_line(buf + 3, reason, len);
		return !strncmp(buf + 3, "ready:", 6) ? WAIT_READY : WAIT_PENDING;
	}
	if (!strncmp(buf, "error ", 6) && strchr(buf, '\n')) {
		first_line(strchr(buf, '\n') + 1, reason, len);
		/* "error 3": handed over to a new agent, ask that one. */
		return atoi(buf + 6) == CTL_EXIT_UNREACHABLE ? WAIT_AWAY : WAIT_REFUSED;
	}
	snprintf(reason, len, "shuntd closed the connection without an answer");
	return WAIT_AWAY;
}

static int wait_cmd(const char *path, int argc, char **argv)
{
	const char *uid = NULL, *agent = NULL, *timeout = NULL;
	struct shunt_addr addr = {};
	uint64_t tmo_s = WAIT_DEFAULT_S, start, deadline, pause = WAIT_PAUSE_MIN_MS;
	char reason[512] = "", last[512] = "";

	for (int i = 0; i < argc; i++) {
		const char **slot;

		if (!strcmp(argv[i], "--pod-uid"))
			slot = &uid;
		else if (!strcmp(argv[i], "--agent"))
			slot = &agent;
		else if (!strcmp(argv[i], "--timeout"))
			slot = &timeout;
		else
			return usage("override wait: unknown option '%s'", argv[i]);
		if (i + 1 >= argc)
			return usage("%s needs a value", argv[i]);
		*slot = argv[++i];
	}
	if (!uid)
		return usage("override wait: --pod-uid is required (the pod's metadata.uid)");
	if (!k8s_uid_valid(uid, strlen(uid)))
		return usage("--pod-uid: '%s' is not a pod uid (metadata.uid: 36 lowercase hex "
			     "digits and dashes, 8-4-4-4-12)",
			     uid);
	if (agent && parse_addr_port(agent, &addr)) {
		if (parse_addr(agent, &addr))
			return usage("--agent: '%s' is not IP, IP:PORT or [IPv6]:PORT", agent);
		addr.port = WAIT_AGENT_PORT;
	}
	if (timeout && strcmp(timeout, "0") && parse_duration(timeout, &tmo_s))
		return usage("--timeout: '%s' is not a duration (e.g. 30s, 2m) or 0", timeout);
	if (timeout && !strcmp(timeout, "0"))
		tmo_s = 0;
	start = now_ms();
	deadline = start + tmo_s * 1000;
	for (;;) {
		uint64_t now = now_ms(), try_end = now + WAIT_TRY_MAX_MS;
		enum wait_answer ans;

		if (try_end > deadline) /* the last question gets a moment at least */
			try_end = deadline > now + 100 ? deadline : now + 100;
		ans = agent ? ask_http(&addr, uid, try_end, reason, sizeof(reason))
			    : ask_ctl(path, uid, reason, sizeof(reason));
		if (ans == WAIT_READY) {
			printf("%s\n", reason);
			return CTL_EXIT_OK;
		}
		if (ans == WAIT_REFUSED) {
			fprintf(stderr, "shuntctl: override wait: %s\n", reason);
			return CTL_EXIT_FAILED;
		}
		now = now_ms();
		if (now >= deadline) {
			fprintf(stderr, "shuntctl: override wait: not ready after %.1f s: %s\n",
				(double)(now - start) / 1000, reason);
			return CTL_EXIT_FAILED;
		}
		/* Say what it waits for, once per reason (an init container's
		 * log). */
		if (strcmp(reason, last)) {
			fprintf(stderr, "shuntctl: waiting: %s\n", reason);
			strcpy(last, reason);
		}
		if (pause > deadline - now)
			pause = deadline - now;
		usleep((useconds_t)pause * 1000);
		pause = pause * 2 > WAIT_PAUSE_MAX_MS ? WAIT_PAUSE_MAX_MS : pause * 2;
	}
}

static int override_cmd(const char *path, int argc, char **argv)
{
	struct route_args ra = {};
	struct ctl_request r = {};
	char err[256];
	const char *fmt;
	int ret;

	if (argc < 1)
		return usage("override: add, del, list or wait?");
	if (!strcmp(argv[0], "wait"))
		return wait_cmd(path, argc - 1, argv + 1);
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

/* pod infer NAME off|shadow|on [--port PORT[,PORT...]]: the line's
 * fields are checked by ctl_parse_request, as shuntd will. */
static int pod_infer_cmd(const char *path, int argc, char **argv)
{
	struct ctl_request r = {};
	const char *ports = NULL;
	char line[CTL_MAX_REQUEST], err[256];
	int rc;

	if (argc < 3 || argv[1][0] == '-')
		return usage("pod infer: NAME and off, shadow or on come first");
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			ports = argv[++i];
		else if (!strncmp(argv[i], "--port=", 7))
			ports = argv[i] + 7;
		else
			return usage("pod infer: unexpected argument '%s'", argv[i]);
	}
	if (strcmp(argv[2], "off") && !ports)
		return usage("pod infer %s: --port is required (the ports the app serves HTTP on)",
			     argv[2]);
	if (snprintf(line, sizeof(line), "pod-infer\t%s\t%s\t%s", argv[1], argv[2],
		     ports ? ports : "-") >= (int)sizeof(line) ||
	    strpbrk(argv[1], "\t\n") || strpbrk(argv[2], "\t\n") ||
	    (ports && strpbrk(ports, "\t\n")))
		return usage("pod infer: bad argument");
	rc = ctl_parse_request(line, strlen(line), &r, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "shuntctl: %s\n", err);
		return rc;
	}
	return send_request(path, &r);
}

static int pod_cmd(const char *path, int argc, char **argv)
{
	struct ctl_request r = {};
	const char *fmt, *netns = NULL, *tc = NULL;
	int ret;

	if (argc < 1)
		return usage("pod: add, del, infer or list?");
	if (!strcmp(argv[0], "list")) {
		ret = parse_output(argc - 1, argv + 1, &fmt);
		if (ret)
			return ret;
		r.op = CTL_OP_POD_LIST;
		r.json = !strcmp(fmt, "json");
		return send_request(path, &r);
	}
	if (!strcmp(argv[0], "infer"))
		return pod_infer_cmd(path, argc, argv);
	if (strcmp(argv[0], "add") && strcmp(argv[0], "del"))
		return usage("pod: unknown command '%s'", argv[0]);
	r.op = strcmp(argv[0], "add") ? CTL_OP_POD_DEL : CTL_OP_POD_ADD;
	if (argc < 2 || argv[1][0] == '-')
		return usage("pod %s: the pod's NAME comes first", argv[0]);
	if (strlen(argv[1]) >= sizeof(r.pod_name))
		return usage("pod %s: NAME '%s' is longer than %zu bytes", argv[0], argv[1],
			     sizeof(r.pod_name) - 1);
	strcpy(r.pod_name, argv[1]);
	for (int i = 2; i < argc; i++) {
		if (r.op == CTL_OP_POD_ADD && !strcmp(argv[i], "--netns") && i + 1 < argc)
			netns = argv[++i];
		else if (r.op == CTL_OP_POD_ADD && !strncmp(argv[i], "--netns=", 8))
			netns = argv[i] + 8;
		else if (r.op == CTL_OP_POD_ADD && !strcmp(argv[i], "--tc") && i + 1 < argc)
			tc = argv[++i];
		else if (r.op == CTL_OP_POD_ADD && !strncmp(argv[i], "--tc=", 5))
			tc = argv[i] + 5;
		else
			return usage("pod %s: unexpected argument '%s'", argv[0], argv[i]);
	}
	if (r.op == CTL_OP_POD_ADD && tc) {
		if (netns)
			return usage("pod add: --netns (in-pod) or --tc (TC capture), not both");
		if (!tc[0] || strlen(tc) >= sizeof(r.ifname))
			return usage("--tc: '%s' is not an interface name", tc);
		r.op = CTL_OP_POD_ADD_TC;
		strcpy(r.ifname, tc);
	} else if (r.op == CTL_OP_POD_ADD) {
		if (!netns)
			return usage("pod add: --netns PATH (in-pod) or --tc IFNAME (TC capture) "
				     "is required");
		if (netns[0] != '/' || strlen(netns) >= sizeof(r.netns))
			return usage("--netns: '%s' is not an absolute path", netns);
		strcpy(r.netns, netns);
	}
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
	if (!strcmp(argv[i], "pod"))
		return pod_cmd(path, argc - i - 1, argv + i + 1);
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
