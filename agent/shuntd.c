// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* shuntd: the shunt node agent. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>

#include "agent.h"
#include "config.h"
#include "ctl_proto.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define DEFAULT_PIN_DIR	   "/sys/fs/bpf/shunt"
#define DEFAULT_PROXY_PORT 15001
#define TICK_MS		   250

static const char usage_text[] =
	"Usage: shuntd --cgroup DIR --proxy-addr IP [options]\n"
	"\n"
	"The shunt node agent: captures connections to steered services at connect()\n"
	"time and sends each HTTP request to the sandbox its routing key names, or to\n"
	"the original destination. Runs in the foreground, logs to stderr.\n"
	"\n"
	"Options:\n"
	"  --cgroup DIR            cgroup v2 directory whose sockets are captured\n"
	"  --proxy-addr IP         address pods reach this node at; the proxy listens\n"
	"                          there (give it twice for one IPv4 and one IPv6)\n"
	"  --proxy-port N          proxy port (default 15001)\n"
	"  --control PATH          control socket (default " CTL_DEFAULT_PATH ")\n"
	"  --bpffs DIR             where maps are pinned (default " DEFAULT_PIN_DIR ");\n"
	"                          a bpffs is mounted at /sys/fs/bpf when none is\n"
	"  --config FILE           declarative routes, reloaded on SIGHUP\n"
	"  --head-timeout DUR      time to receive a request head (default 10s)\n"
	"  --idle-timeout DUR      idle keep-alive connection, or a request during\n"
	"                          which no byte moves either way (default 60s)\n"
	"  --connect-timeout DUR   upstream connect time (default 2s)\n"
	"  --tunnel-timeout DUR    idle WebSocket/CONNECT/non-HTTP tunnel (default 1h)\n"
	"  --max-head-bytes N      largest request head, else 431 (default 65536)\n"
	"  --max-headers N         most header lines, else 431 (default 100)\n"
	"  --key-member NAME       baggage/tracestate member (default sd-routing-key)\n"
	"  --key-header NAME       header carrying the key alone; repeatable, replaces\n"
	"                          the defaults ot-baggage-sd-routing-key and\n"
	"                          uberctx-sd-routing-key\n"
	"  --mark N                socket mark of the agent's own sockets\n"
	"  --metrics-addr IP:PORT  serve /metrics (Prometheus), /healthz and /readyz\n"
	"                          over HTTP there ([IPv6]:PORT; default off)\n"
	"  --log-format FMT        text (default) or json: one object per line with\n"
	"                          ts, level, msg\n"
	"  --access-log            a line per request to a steered service: service,\n"
	"                          key, destination, upstream, status, outcome,\n"
	"                          duration, bytes (never other headers or bodies)\n"
	"  -v, --verbose           debug logging; twice adds libbpf's own\n"
	"  -h, --help              this text\n"
	"\n"
	"Examples:\n"
	"  shuntd --cgroup /sys/fs/cgroup/kubepods.slice --proxy-addr 10.0.0.5\n"
	"  shuntd --cgroup /sys/fs/cgroup/unified/pods --proxy-addr 10.211.0.1 \\\n"
	"         --proxy-addr fd00:211::1 --config /etc/shunt/routes.conf -v\n"
	"  shuntd --cgroup /sys/fs/cgroup/kubepods.slice --proxy-addr 10.0.0.5 \\\n"
	"         --metrics-addr 10.0.0.5:9464 --log-format json --access-log\n"
	"  curl -s http://10.0.0.5:9464/metrics | grep shunt_requests_total\n";

enum {
	OPT_CGROUP = 256,
	OPT_PROXY_ADDR,
	OPT_PROXY_PORT,
	OPT_CONTROL,
	OPT_BPFFS,
	OPT_CONFIG,
	OPT_HEAD_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_CONNECT_TIMEOUT,
	OPT_TUNNEL_TIMEOUT,
	OPT_MAX_HEAD,
	OPT_MAX_HEADERS,
	OPT_KEY_MEMBER,
	OPT_KEY_HEADER,
	OPT_MARK,
	OPT_METRICS_ADDR,
	OPT_LOG_FORMAT,
	OPT_ACCESS_LOG,
};

static const struct option long_opts[] = {
	{"cgroup", required_argument, NULL, OPT_CGROUP},
	{"proxy-addr", required_argument, NULL, OPT_PROXY_ADDR},
	{"proxy-port", required_argument, NULL, OPT_PROXY_PORT},
	{"control", required_argument, NULL, OPT_CONTROL},
	{"bpffs", required_argument, NULL, OPT_BPFFS},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"head-timeout", required_argument, NULL, OPT_HEAD_TIMEOUT},
	{"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
	{"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
	{"tunnel-timeout", required_argument, NULL, OPT_TUNNEL_TIMEOUT},
	{"max-head-bytes", required_argument, NULL, OPT_MAX_HEAD},
	{"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
	{"key-member", required_argument, NULL, OPT_KEY_MEMBER},
	{"key-header", required_argument, NULL, OPT_KEY_HEADER},
	{"mark", required_argument, NULL, OPT_MARK},
	{"metrics-addr", required_argument, NULL, OPT_METRICS_ADDR},
	{"log-format", required_argument, NULL, OPT_LOG_FORMAT},
	{"access-log", no_argument, NULL, OPT_ACCESS_LOG},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{},
};

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "shuntd: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'shuntd --help'.\n");
	return 2;
}

static int opt_duration_ms(const char *name, const char *arg, uint64_t *ms)
{
	uint64_t sec;

	if (parse_duration(arg, &sec)) {
		fprintf(stderr, "shuntd: --%s: '%s' is not a duration (e.g. 500ms, 10s, 1m)\n",
			name, arg);
		return -1;
	}
	*ms = sec * 1000;
	return 0;
}

static int opt_size(const char *name, const char *arg, uint64_t min, uint64_t max, size_t *out)
{
	uint64_t v;

	if (parse_u64(arg, max, &v) || v < min) {
		fprintf(stderr, "shuntd: --%s: '%s' is not a number in %llu..%llu\n", name, arg,
			(unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = (size_t)v;
	return 0;
}

static int parse_args(struct agent *a, int argc, char **argv, uint32_t *mark, uint16_t *port)
{
	struct proxy_opts *po = &a->popts;
	size_t n;
	uint64_t v;
	int opt, custom_headers = 0;

	rk_config_default(&po->rk);
	po->head_timeout_ms = 10000;
	po->idle_timeout_ms = 60000;
	po->connect_timeout_ms = 2000;
	po->tunnel_timeout_ms = 3600 * 1000;
	po->max_head_bytes = 65536;
	po->max_headers = 100;
	po->max_idle_per_dst = 64;
	a->pin_dir = DEFAULT_PIN_DIR;
	a->control_path = CTL_DEFAULT_PATH;

	while ((opt = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_CGROUP:
			a->cgroup = optarg;
			break;
		case OPT_PROXY_ADDR:
			if (po->n_listen == 2)
				return usage_error("--proxy-addr given more than twice%s", "");
			if (parse_addr(optarg, &po->listen[po->n_listen]))
				return usage_error("--proxy-addr: '%s' is not an IP address",
						   optarg);
			if (po->n_listen == 1 && po->listen[0].family == po->listen[1].family)
				return usage_error("--proxy-addr: two addresses of one family (%s)",
						   optarg);
			po->n_listen++;
			break;
		case OPT_PROXY_PORT:
			if (parse_u64(optarg, 65535, &v) || !v)
				return usage_error("--proxy-port: '%s' is not a port", optarg);
			*port = (uint16_t)v;
			break;
		case OPT_CONTROL:
			a->control_path = optarg;
			break;
		case OPT_BPFFS:
			a->pin_dir = optarg;
			break;
		case OPT_CONFIG:
			a->config_path = optarg;
			break;
		case OPT_HEAD_TIMEOUT:
			if (opt_duration_ms("head-timeout", optarg, &po->head_timeout_ms))
				return 2;
			break;
		case OPT_IDLE_TIMEOUT:
			if (opt_duration_ms("idle-timeout", optarg, &po->idle_timeout_ms))
				return 2;
			break;
		case OPT_CONNECT_TIMEOUT:
			if (opt_duration_ms("connect-timeout", optarg, &po->connect_timeout_ms))
				return 2;
			break;
		case OPT_TUNNEL_TIMEOUT:
			if (opt_duration_ms("tunnel-timeout", optarg, &po->tunnel_timeout_ms))
				return 2;
			break;
		case OPT_MAX_HEAD:
			if (opt_size("max-head-bytes", optarg, 1024, 1 << 20, &po->max_head_bytes))
				return 2;
			break;
		case OPT_MAX_HEADERS:
			if (opt_size("max-headers", optarg, 1, 10000, &po->max_headers))
				return 2;
			break;
		case OPT_KEY_MEMBER:
			if (strlen(optarg) >= RK_NAME_MAX || !*optarg)
				return usage_error("--key-member: '%s' is empty or too long",
						   optarg);
			strcpy(po->rk.member, optarg);
			break;
		case OPT_KEY_HEADER:
			if (!custom_headers++)
				po->rk.n_direct = 0;
			if (po->rk.n_direct == RK_MAX_DIRECT)
				return usage_error("--key-header: at most 4%s", "");
			if (strlen(optarg) >= RK_NAME_MAX || !*optarg)
				return usage_error("--key-header: '%s' is empty or too long",
						   optarg);
			strcpy(po->rk.direct[po->rk.n_direct++], optarg);
			break;
		case OPT_MARK:
			if (parse_u64(optarg, UINT32_MAX, &v) || !v)
				return usage_error("--mark: '%s' is not a non-zero 32-bit number",
						   optarg);
			*mark = (uint32_t)v;
			break;
		case OPT_METRICS_ADDR:
			if (parse_addr_port(optarg, &a->metrics_addr))
				return usage_error(
					"--metrics-addr: '%s' is not IP:PORT or [IPv6]:PORT",
					optarg);
			break;
		case OPT_LOG_FORMAT:
			if (!strcmp(optarg, "text"))
				log_format = LOG_FORMAT_TEXT;
			else if (!strcmp(optarg, "json"))
				log_format = LOG_FORMAT_JSON;
			else
				return usage_error("--log-format: '%s' is not text or json",
						   optarg);
			break;
		case OPT_ACCESS_LOG:
			po->access_log = true;
			break;
		case 'v':
			if (log_threshold == LOG_DEBUG)
				libbpf_debug = 1;
			log_threshold = LOG_DEBUG;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		default:
			fprintf(stderr, "Try 'shuntd --help'.\n");
			return 2;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!a->cgroup)
		return usage_error("--cgroup is required%s", "");
	if (!po->n_listen)
		return usage_error("--proxy-addr is required%s", "");
	(void)n;
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	/* Every proxied connection costs two descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int load_config(struct agent *a, int initial)
{
	struct config cfg = {};
	char err[512];
	int ret;

	ret = config_load(a->config_path, &cfg, err, sizeof(err));
	if (ret) {
		pr_err("%s%s", err, initial ? "" : "; the previous routes stay in force");
		return ret;
	}
	ret = store_apply_file(&a->store, &cfg, (uint64_t)time(NULL), err, sizeof(err));
	if (ret)
		pr_err("%s: %s", a->config_path, err);
	else
		pr_info("%s: %zu route(s) in force", a->config_path, cfg.n);
	config_free(&cfg);
	return ret;
}

struct sig_handler {
	struct ev_handler h;
	struct agent *a;
	int fd;
	int exit_code;
};

static void on_signal(struct ev_handler *h, uint32_t events)
{
	struct sig_handler *sh = (struct sig_handler *)h;
	struct signalfd_siginfo si;

	while (read(sh->fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			if (sh->a->config_path) {
				pr_info("SIGHUP: reloading %s", sh->a->config_path);
				load_config(sh->a, 0);
			}
			break;
		default:
			pr_info("%s: shutting down", strsignal((int)si.ssi_signo));
			sh->a->loop.stop = 1;
			break;
		}
	}
}

int main(int argc, char **argv)
{
	struct agent a = {};
	struct sig_handler sh = {.fd = -1};
	struct shunt_config kcfg = {};
	uint32_t mark = SHUNT_DEFAULT_MARK;
	uint16_t port = DEFAULT_PROXY_PORT;
	uint64_t last_sweep = 0;
	sigset_t mask;
	long recovered;
	int err, ret = 1;

	err = parse_args(&a, argc, argv, &mark, &port);
	if (err)
		return err;
	a.popts.mark = mark;
	for (int i = 0; i < a.popts.n_listen; i++)
		a.popts.listen[i].port = port;
	a.started_unix = (uint64_t)time(NULL);
	a.bpf.cgroup_fd = -1;
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	if (loop_init(&a.loop)) {
		pr_err("epoll: %s", strerror(errno));
		return 1;
	}
	if (shunt_bpf_open(&a.bpf, a.pin_dir, a.cgroup))
		goto cleanup_loop;

	for (int i = 0; i < a.popts.n_listen; i++) {
		if (a.popts.listen[i].family == SHUNT_FAMILY_V4)
			kcfg.proxy4 = a.popts.listen[i];
		else
			kcfg.proxy6 = a.popts.listen[i];
	}
	kcfg.mark = mark;
	err = shunt_bpf_set_config(&a.bpf, &kcfg);
	if (err) {
		pr_err("write shunt_config: %s", strerror(-err));
		goto cleanup_bpf;
	}

	recovered = store_init(&a.store, a.bpf.routes_fd, a.bpf.services_fd, (uint64_t)time(NULL));
	if (recovered < 0) {
		pr_err("recover routes from %s/shunt_routes: %s", a.pin_dir,
		       strerror((int)-recovered));
		goto cleanup_store;
	}
	if (recovered)
		pr_info("recovered %ld route(s) from %s/shunt_routes", recovered, a.pin_dir);
	if (a.config_path && load_config(&a, 1))
		goto cleanup_store;

	if (proxy_start(&a.proxy, &a.popts, &a.loop, &a.store, &a.bpf))
		goto cleanup_store;
	if (control_start(&a, a.control_path))
		goto cleanup_proxy;
	if (a.metrics_addr.family && metrics_start(&a, &a.metrics_addr))
		goto cleanup_control;

	sh.h.fn = on_signal;
	sh.a = &a;
	sh.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sh.fd < 0 || loop_add(&a.loop, sh.fd, EPOLLIN, &sh.h)) {
		pr_err("signalfd: %s", strerror(errno));
		goto cleanup_metrics;
	}

	pr_info("ready: cgroup %s, pins %s, control %s", a.cgroup, a.pin_dir, a.control_path);
	while (!a.loop.stop) {
		err = loop_run_once(&a.loop, TICK_MS);
		if (err) {
			pr_err("event loop: %s", strerror(-err));
			break;
		}
		proxy_tick(a.proxy);
		proxy_reap(a.proxy);
		control_tick(&a);
		metrics_tick(&a);
		if (a.loop.now_ms - last_sweep >= 1000) {
			last_sweep = a.loop.now_ms;
			store_expire(&a.store, (uint64_t)time(NULL));
		}
	}
	ret = err ? 1 : 0;

	close(sh.fd);
cleanup_metrics:
	metrics_stop(&a);
cleanup_control:
	control_stop(&a);
cleanup_proxy:
	/* Listeners close first: new connections fail open from here on. */
	proxy_stop(a.proxy);
cleanup_store:
	store_free(&a.store);
cleanup_bpf:
	shunt_bpf_close(&a.bpf);
cleanup_loop:
	loop_close(&a.loop);
	if (!ret)
		pr_info("stopped; programs detached, maps stay pinned in %s", a.pin_dir);
	return ret;
}
