// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* shuntd: the shunt node agent. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include "agent.h"
#include "ops/caller.h"
#include "kernel/tc.h"
#include "state/config.h"
#include "ops/ctl_proto.h"
#include "core/log.h"
#include "ops/metrics.h"
#include "core/util.h"

#define DEFAULT_PIN_DIR	   "/sys/fs/bpf/shunt"
#define DEFAULT_PROXY_PORT 15001
#define DEFAULT_POLL_US	   50 /* --poll on */
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
	"  --proxy-addr IP[,IP]    address pods reach this node at; the proxy listens\n"
	"                          there: one IPv4 and one IPv6 at most (a list, or\n"
	"                          the flag twice). Services of a family without one\n"
	"                          cannot be steered\n"
	"  --proxy-port N          proxy port (default 15001)\n"
	"  --control PATH          control socket (default " CTL_DEFAULT_PATH ")\n"
	"  --control-group NAME    the control socket's group (a name or a number):\n"
	"                          mode 0660, so that its members can list routes and\n"
	"                          read the status without root (default: root only,\n"
	"                          0600); changes always need CAP_NET_ADMIN\n"
	"  --bpffs DIR             where maps are pinned (default " DEFAULT_PIN_DIR ");\n"
	"                          a bpffs is mounted at /sys/fs/bpf when none is\n"
	"  --config FILE           declarative routes, reloaded on SIGHUP\n"
	"  --head-timeout DUR      time to receive a request head (default 10s)\n"
	"  --idle-timeout DUR      idle keep-alive connection, or a request during\n"
	"                          which no byte moves either way (default 60s)\n"
	"  --connect-timeout DUR   upstream connect time (default 2s)\n"
	"  --tunnel-timeout DUR    idle WebSocket/CONNECT/non-HTTP tunnel (default 1h)\n"
	"  --drain-timeout DUR     on SIGTERM or a takeover, time the open connections\n"
	"                          get to finish (default 20s)\n"
	"  --max-head-bytes N      largest request head, else 431 (default 65536)\n"
	"  --max-headers N         most header lines, else 431 (default 100)\n"
	"  --key-member NAME       baggage/tracestate member (default sd-routing-key)\n"
	"  --key-header NAME       header carrying the key alone; repeatable, replaces\n"
	"                          the defaults ot-baggage-sd-routing-key and\n"
	"                          uberctx-sd-routing-key\n"
	"  --mark N                socket mark of the agent's own sockets\n"
	"  --service-iface NAME    an interface whose addresses are Services' virtual\n"
	"                          addresses, not the node's (repeatable; default\n"
	"                          kube-ipvs0, kube-proxy's IPVS mode). Every other\n"
	"                          address of the node, loopback, link-local,\n"
	"                          multicast and broadcast are never dialled\n"
	"  --max-conns N           client connections the proxy holds at once (default\n"
	"                          16384; each costs 2 descriptors); at the limit new\n"
	"                          connections are not captured: they go straight to\n"
	"                          their destinations until 1/8 of it is free again\n"
	"  --max-conns-per-pod N   the same for the connections of one pod (network\n"
	"                          namespace; hostNetwork pods share one): a pod at its\n"
	"                          cap is not captured, others are (default 1024,\n"
	"                          none when --max-conns is not above it; 0 = no cap;\n"
	"                          needs Linux 5.15)\n"
	"  --max-upstream-conns N  connections in use to one sandbox at once (idle\n"
	"                          pooled ones not counted); more keyed\n"
	"                          requests get 503 (default 1024); requests without\n"
	"                          a route are never refused by an upstream limit\n"
	"  --max-upstream-conns-per-pod N\n"
	"                          connections one pod's requests hold to one sandbox;\n"
	"                          more get 503 (default 512, none when\n"
	"                          --max-upstream-conns is not above it; 0 = no cap)\n"
	"  --max-routes N          size of the route table, fixed once pinned; a\n"
	"                          route add beyond it is refused (default 16384)\n"
	"  --reset-maps            pinned maps an agent of another version left in a\n"
	"                          layout this one cannot convert are dropped instead\n"
	"                          of refusing to start (their routes and overrides\n"
	"                          are lost; --config and Kubernetes add theirs back)\n"
	"  --metrics-addr IP:PORT  serve /metrics (Prometheus), /healthz and /readyz\n"
	"                          over HTTP there ([IPv6]:PORT; default off); at most\n"
	"                          2 connections at once per client address, 32 in all\n"
	"  --health-addr IP:PORT   serve only /healthz and /readyz there, with a\n"
	"                          connection budget of their own: for the kubelet's\n"
	"                          probes, on 127.0.0.1 (default off)\n"
	"  --log-format FMT        text (default) or json: one object per line with\n"
	"                          ts, level, msg\n"
	"  --inpod-port N          pods served in-pod (shuntctl pod add) get shunt's\n"
	"                          listeners on 127.0.0.1 and ::1 at this port, in\n"
	"                          their own network namespace (default 15001)\n"
	"  --infer-learn-idle DUR  inferred propagation (shuntctl pod infer): a key is\n"
	"                          inferred for a path only once the pod has been idle\n"
	"                          this long in all since the path was first called,\n"
	"                          time for a background path to show itself\n"
	"                          (default 30s)\n"
	"  --tc-mark N             TC capture (shuntctl pod add --tc): the packet mark,\n"
	"                          routing table and rule priority that deliver the\n"
	"                          packets it hands to shunt to this host (default\n"
	"                          0x5348 = 21320; must differ from --mark)\n"
	"  --workers N             the proxy's event loops, each pinned to its share of\n"
	"                          the CPUs the agent may run on; a connection is\n"
	"                          served on the CPU it was made on (default: one per\n"
	"                          such CPU, at most 64)\n"
	"  --poll on|off|Nus       before sleeping, a worker polls for up to N us\n"
	"                          (on: 50us) while its traffic comes that fast,\n"
	"                          yielding its CPU between polls; backs off when\n"
	"                          polls find nothing (default on)\n"
	"  --http2 on|off          route HTTP/2 (prior knowledge and Upgrade: h2c) per\n"
	"                          stream (default on); off: an HTTP/2 connection is\n"
	"                          tunnelled unrouted to its original destination\n"
	"  --access-log            a line per request to a steered service: service,\n"
	"                          key, destination, upstream, status, outcome,\n"
	"                          duration, bytes (never other headers or bodies)\n"
	"  --kubernetes            follow the cluster's SandboxRoutes and SandboxOverrides\n"
	"                          (with Services, EndpointSlices, Pods) using the\n"
	"                          in-cluster config\n"
	"  --kubeconfig FILE       ... using a kubeconfig's current context instead\n"
	"  --k8s-api URL           the API server; overrides either (http:// for tests)\n"
	"  --k8s-token-file FILE   bearer token file, re-read when it changes\n"
	"  --k8s-ca-file FILE      CA bundle for the API server's certificate\n"
	"  --pod-capture MODE      how this node's pods are captured unless their\n"
	"                          annotation shunt.dev/capture (node, in-pod, tc)\n"
	"                          says: node (default), in-pod, or auto (in-pod\n"
	"                          where the agent can: CAP_SYS_ADMIN and\n"
	"                          CAP_SYS_PTRACE, the host's PIDs, Linux 5.15;\n"
	"                          node otherwise)\n"
	"  --node-name NAME        this node (SandboxOverrides act on its pods only);\n"
	"                          default $NODE_NAME, else the host name\n"
	"  --sandbox-cidr CIDR     SandboxRoutes may name sandbox.addresses inside\n"
	"                          CIDR (e.g. 10.244.0.0/16); repeatable; none given:\n"
	"                          explicit sandbox addresses are refused\n"
	"  --max-routes-per-namespace N\n"
	"                          routes the SandboxRoutes of one namespace may ask\n"
	"                          for together; older objects first, a whole object\n"
	"                          or nothing (default 1024)\n"
	"  -v, --verbose           debug logging; twice adds libbpf's own\n"
	"  -h, --help              this text\n"
	"\n"
	"Stopping and upgrading:\n"
	"  SIGTERM   drain: new connections fail open to their original destination,\n"
	"            open ones finish (each is told Connection: close on its next\n"
	"            response; /readyz answers 503 draining), then exit and detach\n"
	"            the programs\n"
	"  SIGINT    (or a second SIGTERM) stop at once\n"
	"  SIGHUP    reload --config (shuntctl reload does the same and answers)\n"
	"  A second shuntd started with the same --control and --bpffs takes over:\n"
	"  it receives the listening sockets (no connection is refused), swaps its\n"
	"  programs into the pinned links, and the first one drains and exits.\n"
	"  After a crash the programs stay attached (steered services fail open,\n"
	"  overrides keep working) and the next start recovers every route.\n"
	"\n"
	"Examples:\n"
	"  shuntd --cgroup /sys/fs/cgroup/kubepods.slice --proxy-addr 10.0.0.5\n"
	"  shuntd --cgroup /sys/fs/cgroup/unified/pods --proxy-addr 10.211.0.1 \\\n"
	"         --proxy-addr fd00:211::1 --config /etc/shunt/routes.conf -v\n"
	"  shuntd --cgroup /sys/fs/cgroup/kubepods.slice --proxy-addr 10.0.0.5 \\\n"
	"         --metrics-addr 10.0.0.5:9464 --health-addr 127.0.0.1:9465 \\\n"
	"         --log-format json --access-log\n"
	"  curl -s http://10.0.0.5:9464/metrics | grep shunt_requests_total\n"
	"  curl -s http://127.0.0.1:9465/readyz     # ok, then the families served\n"
	"  shuntd --cgroup /sys/fs/cgroup/kubepods.slice --proxy-addr 10.0.0.5 --kubernetes\n"
	"  shuntd --cgroup /sys/fs/cgroup/kubepods.slice --proxy-addr 10.0.0.5 \\\n"
	"         --control-group shunt-ops    # shunt-ops members: shuntctl route list, status\n"
	"  shuntd --cgroup /sys/fs/cgroup/kubepods.slice --proxy-addr 10.0.0.5 --kubernetes \\\n"
	"         --sandbox-cidr 10.244.0.0/16 --sandbox-cidr fd00:244::/56 \\\n"
	"         --max-routes-per-namespace 2048\n"

	"  shuntd --cgroup /sys/fs/cgroup/kubepods.slice --proxy-addr 10.0.0.5 \\\n"
	"         --max-conns 20000 --max-conns-per-pod 500 --max-upstream-conns-per-pod 64\n";

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
	OPT_DRAIN_TIMEOUT,
	OPT_MAX_CONNS,
	OPT_MAX_UPSTREAM,
	OPT_MAX_CONNS_POD,
	OPT_MAX_UPSTREAM_POD,
	OPT_MAX_ROUTES,
	OPT_METRICS_ADDR,
	OPT_HEALTH_ADDR,
	OPT_LOG_FORMAT,
	OPT_ACCESS_LOG,
	OPT_HTTP2,
	OPT_WORKERS,
	OPT_POLL,
	OPT_RESET_MAPS,
	OPT_KUBERNETES,
	OPT_KUBECONFIG,
	OPT_K8S_API,
	OPT_K8S_TOKEN_FILE,
	OPT_K8S_CA_FILE,
	OPT_NODE_NAME,
	OPT_SERVICE_IFACE,
	OPT_CONTROL_GROUP,
	OPT_SANDBOX_CIDR,
	OPT_MAX_NS_ROUTES,
	OPT_INPOD_PORT,
	OPT_INFER_LEARN_IDLE,
	OPT_TC_MARK,
	OPT_POD_CAPTURE,
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
	{"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
	{"max-conns", required_argument, NULL, OPT_MAX_CONNS},
	{"max-upstream-conns", required_argument, NULL, OPT_MAX_UPSTREAM},
	{"max-conns-per-pod", required_argument, NULL, OPT_MAX_CONNS_POD},
	{"max-upstream-conns-per-pod", required_argument, NULL, OPT_MAX_UPSTREAM_POD},
	{"max-routes", required_argument, NULL, OPT_MAX_ROUTES},
	{"metrics-addr", required_argument, NULL, OPT_METRICS_ADDR},
	{"health-addr", required_argument, NULL, OPT_HEALTH_ADDR},
	{"log-format", required_argument, NULL, OPT_LOG_FORMAT},
	{"access-log", no_argument, NULL, OPT_ACCESS_LOG},
	{"http2", required_argument, NULL, OPT_HTTP2},
	{"workers", required_argument, NULL, OPT_WORKERS},
	{"poll", required_argument, NULL, OPT_POLL},
	{"inpod-port", required_argument, NULL, OPT_INPOD_PORT},
	{"infer-learn-idle", required_argument, NULL, OPT_INFER_LEARN_IDLE},
	{"tc-mark", required_argument, NULL, OPT_TC_MARK},
	{"pod-capture", required_argument, NULL, OPT_POD_CAPTURE},
	{"reset-maps", no_argument, NULL, OPT_RESET_MAPS},
	{"kubernetes", no_argument, NULL, OPT_KUBERNETES},
	{"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
	{"k8s-api", required_argument, NULL, OPT_K8S_API},
	{"k8s-token-file", required_argument, NULL, OPT_K8S_TOKEN_FILE},
	{"k8s-ca-file", required_argument, NULL, OPT_K8S_CA_FILE},
	{"node-name", required_argument, NULL, OPT_NODE_NAME},
	{"service-iface", required_argument, NULL, OPT_SERVICE_IFACE},
	{"control-group", required_argument, NULL, OPT_CONTROL_GROUP},
	{"sandbox-cidr", required_argument, NULL, OPT_SANDBOX_CIDR},
	{"max-routes-per-namespace", required_argument, NULL, OPT_MAX_NS_ROUTES},
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

/* --proxy-addr 10.0.0.5 or 10.0.0.5,fd00::5 (the DaemonSet passes
 * status.hostIPs as such a list): at most one address per family. */
static int proxy_addrs(struct proxy_opts *po, const char *arg)
{
	char buf[256], *save = NULL, *tok;

	if (strlen(arg) >= sizeof(buf))
		return usage_error("--proxy-addr: '%s' is too long", arg);
	strcpy(buf, arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct shunt_addr a;

		if (parse_addr(tok, &a))
			return usage_error("--proxy-addr: '%s' is not an IP address", tok);
		for (int i = 0; i < po->n_listen; i++)
			if (po->listen[i].family == a.family)
				return usage_error("--proxy-addr: two addresses of one family (%s)",
						   arg);
		po->listen[po->n_listen++] = a;
	}
	if (!po->n_listen || arg[strlen(arg) - 1] == ',' || arg[0] == ',' || strstr(arg, ",,"))
		return usage_error("--proxy-addr: '%s' is not an address list", arg);
	return 0;
}

/* --service-iface, kept until the guard is set up. */
static const char *service_ifaces[DSTGUARD_MAX_IFACES];
static int n_service_ifaces;

static bool unspecified(const struct shunt_addr *x)
{
	static const uint8_t zero[16];

	return !memcmp(x->addr, zero, x->family == SHUNT_FAMILY_V4 ? 4 : 16);
}

/* Would a and b receive connections meant for each other: the same family
 * and port, and the same address or a wildcard on either side? */
static bool listens_on_same(const struct shunt_addr *a, const struct shunt_addr *b)
{
	if (!a->family || a->family != b->family || a->port != b->port)
		return false;
	return unspecified(a) || unspecified(b) || addr_equal(a, b);
}

/* A group by name, or by number (the image's /etc/group need not know the
 * node's groups). 0 or -ENOENT. */
static int parse_group(const char *arg, gid_t *gid)
{
	struct group gr, *res = NULL;
	char buf[4096];
	uint64_t v;

	if (getgrnam_r(arg, &gr, buf, sizeof(buf), &res) == 0 && res) {
		*gid = res->gr_gid;
		return 0;
	}
	if (!parse_u64(arg, UINT32_MAX - 1, &v)) {
		*gid = (gid_t)v;
		return 0;
	}
	return -ENOENT;
}

/* What parse_args() remembers between options. */
struct arg_state {
	uint32_t *mark;
	uint16_t *port;
	uint32_t *max_routes;
	int custom_headers;   /* --key-header seen: the defaults are replaced */
	const char *k8s_only; /* a Kubernetes flag given */
	bool conns_pod_set, upstream_pod_set;
};

/* An option handler's answer for an option that is another's. */
#define OPT_NOT_MINE (-1)

static void args_defaults(struct agent *a)
{
	struct proxy_opts *po = &a->popts;

	rk_config_default(&po->rk);
	po->head_timeout_ms = 10000;
	po->idle_timeout_ms = 60000;
	po->http2 = true;
	po->inpod_port = 15001;
	po->infer_learn_idle_ms = INFER_LEARN_IDLE_NS / 1000000ULL;
	po->tc_lfd[0] = po->tc_lfd[1] = -1;
	po->poll_us = DEFAULT_POLL_US;
	po->connect_timeout_ms = 2000;
	po->tunnel_timeout_ms = 3600 * 1000;
	po->max_head_bytes = 65536;
	po->max_headers = 100;
	po->max_idle_per_dst = 64;
	po->max_conns = 16384;
	po->max_upstream_per_dst = 1024;
	/* A pod may hold 1/16 of the node's connections (an app's connection
	 * pool is far smaller), and half of what a sandbox accepts: never all
	 * of it, and a load test of one pod against its sandbox (make bench
	 * keeps 500 keyed requests in flight) still fits. */
	po->max_conns_per_pod = 1024;
	po->max_upstream_per_pod = 512;
	a->pin_dir = DEFAULT_PIN_DIR;
	a->control_path = CTL_DEFAULT_PATH;
	a->drain_timeout_ms = 20000;
	a->kopts.max_routes_per_ns = K8S_DEFAULT_MAX_NS_ROUTES;
}

/* --poll: on (the default window), off, or the window in microseconds. */
static int opt_poll(const char *arg, uint32_t *us)
{
	char num[16];
	size_t len = strlen(arg);
	uint64_t v;

	if (!strcmp(arg, "on")) {
		*us = DEFAULT_POLL_US;
		return 0;
	}
	if (!strcmp(arg, "off")) {
		*us = 0;
		return 0;
	}
	if (len < 3 || len - 2 >= sizeof(num) || strcmp(arg + len - 2, "us"))
		return -1;
	memcpy(num, arg, len - 2);
	num[len - 2] = '\0';
	if (parse_u64(num, 1000, &v) || !v)
		return -1;
	*us = (uint32_t)v;
	return 0;
}

/* The proxy's addresses, timeouts and head limits. */
static int opt_proxy(struct agent *a, struct arg_state *st, int opt)
{
	struct proxy_opts *po = &a->popts;
	uint64_t v;

	switch (opt) {
	case OPT_PROXY_ADDR:
		if (proxy_addrs(po, optarg))
			return 2;
		break;
	case OPT_PROXY_PORT:
		if (parse_u64(optarg, 65535, &v) || !v)
			return usage_error("--proxy-port: '%s' is not a port", optarg);
		*st->port = (uint16_t)v;
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
	case OPT_ACCESS_LOG:
		po->access_log = true;
		break;
	case OPT_HTTP2:
		if (strcmp(optarg, "on") && strcmp(optarg, "off"))
			return usage_error("--http2: '%s' is neither on nor off", optarg);
		po->http2 = !strcmp(optarg, "on");
		break;
	case OPT_INPOD_PORT:
		if (parse_u64(optarg, 65535, &v) || !v)
			return usage_error("--inpod-port: '%s' is not a port (1-65535)", optarg);
		po->inpod_port = (uint16_t)v;
		break;
	case OPT_INFER_LEARN_IDLE:
		if (opt_duration_ms("infer-learn-idle", optarg, &po->infer_learn_idle_ms))
			return 2;
		break;
	case OPT_WORKERS:
		if (parse_u64(optarg, SHUNT_MAX_WORKERS, &v) || !v)
			return usage_error("--workers: '%s' is not a number from 1 to 64", optarg);
		po->workers = (int)v;
		break;
	case OPT_POLL:
		if (opt_poll(optarg, &po->poll_us))
			return usage_error("--poll: '%s' is not on, off or a window like 50us "
					   "(1us to 1000us)",
					   optarg);
		break;
	default:
		return OPT_NOT_MINE;
	}
	return 0;
}

/* Connection and route limits. */
static int opt_limits(struct agent *a, struct arg_state *st, int opt)
{
	struct proxy_opts *po = &a->popts;
	size_t n;

	switch (opt) {
	case OPT_MAX_CONNS:
		if (opt_size("max-conns", optarg, 1, 1000000, &po->max_conns))
			return 2;
		break;
	case OPT_MAX_UPSTREAM:
		if (opt_size("max-upstream-conns", optarg, 1, 1000000, &po->max_upstream_per_dst))
			return 2;
		break;
	case OPT_MAX_CONNS_POD:
		if (opt_size("max-conns-per-pod", optarg, 0, 1000000, &po->max_conns_per_pod))
			return 2;
		st->conns_pod_set = true;
		break;
	case OPT_MAX_UPSTREAM_POD:
		if (opt_size("max-upstream-conns-per-pod", optarg, 0, 1000000,
			     &po->max_upstream_per_pod))
			return 2;
		st->upstream_pod_set = true;
		break;
	case OPT_MAX_ROUTES:
		if (opt_size("max-routes", optarg, 1, 1000000, &n))
			return 2;
		*st->max_routes = (uint32_t)n;
		break;
	default:
		return OPT_NOT_MINE;
	}
	return 0;
}

/* Where the routing key is found. */
static int opt_key(struct agent *a, struct arg_state *st, int opt)
{
	struct proxy_opts *po = &a->popts;

	switch (opt) {
	case OPT_KEY_MEMBER:
		if (strlen(optarg) >= RK_NAME_MAX || !*optarg)
			return usage_error("--key-member: '%s' is empty or too long", optarg);
		strcpy(po->rk.member, optarg);
		break;
	case OPT_KEY_HEADER:
		if (!st->custom_headers++)
			po->rk.n_direct = 0;
		if (po->rk.n_direct == RK_MAX_DIRECT)
			return usage_error("--key-header: at most 4%s", "");
		if (strlen(optarg) >= RK_NAME_MAX || !*optarg)
			return usage_error("--key-header: '%s' is empty or too long", optarg);
		strcpy(po->rk.direct[po->rk.n_direct++], optarg);
		break;
	default:
		return OPT_NOT_MINE;
	}
	return 0;
}

/* The agent itself: cgroup, pins, control socket, marks, logs, listeners
 * for people. */
static int opt_agent(struct agent *a, struct arg_state *st, int opt)
{
	uint64_t v;

	switch (opt) {
	case OPT_CGROUP:
		a->cgroup = optarg;
		break;
	case OPT_CONTROL:
		a->control_path = optarg;
		break;
	case OPT_CONTROL_GROUP:
		if (parse_group(optarg, &a->control_gid))
			return usage_error("--control-group: '%s' is not a group here (a "
					   "name in /etc/group, or a number)",
					   optarg);
		a->control_group = optarg;
		break;
	case OPT_BPFFS:
		a->pin_dir = optarg;
		break;
	case OPT_RESET_MAPS:
		a->reset_maps = true;
		break;
	case OPT_CONFIG:
		a->config_path = optarg;
		break;
	case OPT_DRAIN_TIMEOUT:
		if (opt_duration_ms("drain-timeout", optarg, &a->drain_timeout_ms))
			return 2;
		break;
	case OPT_POD_CAPTURE:
		if (!strcmp(optarg, "node"))
			a->kopts.pod_capture = K8S_CAPTURE_NODE;
		else if (!strcmp(optarg, "in-pod"))
			a->kopts.pod_capture = K8S_CAPTURE_INPOD;
		else if (!strcmp(optarg, "auto"))
			a->pod_capture_auto = true;
		else
			return usage_error("--pod-capture: '%s' is not node, in-pod or auto",
					   optarg);
		break;
	case OPT_TC_MARK:
		/* Also a table id and a rule priority: not 0, and not the
		 * reserved tables 253-255. */
		if (parse_u64(optarg, 0x7fffffff, &v) || !v || (v >= 253 && v <= 255))
			return usage_error("--tc-mark: '%s' is not a number from 1 to 2^31-1 "
					   "(and not 253-255, the kernel's tables)",
					   optarg);
		a->bpf.tc_mark = (uint32_t)v;
		break;
	case OPT_MARK:
		if (parse_u64(optarg, UINT32_MAX, &v) || !v)
			return usage_error("--mark: '%s' is not a non-zero 32-bit number", optarg);
		*st->mark = (uint32_t)v;
		break;
	case OPT_METRICS_ADDR:
		if (parse_addr_port(optarg, &a->metrics_addr))
			return usage_error("--metrics-addr: '%s' is not IP:PORT or [IPv6]:PORT",
					   optarg);
		break;
	case OPT_HEALTH_ADDR:
		if (parse_addr_port(optarg, &a->health_addr))
			return usage_error("--health-addr: '%s' is not IP:PORT or [IPv6]:PORT",
					   optarg);
		break;
	case OPT_LOG_FORMAT:
		if (!strcmp(optarg, "text"))
			log_format = LOG_FORMAT_TEXT;
		else if (!strcmp(optarg, "json"))
			log_format = LOG_FORMAT_JSON;
		else
			return usage_error("--log-format: '%s' is not text or json", optarg);
		break;
	case OPT_SERVICE_IFACE:
		if (n_service_ifaces == DSTGUARD_MAX_IFACES)
			return usage_error("--service-iface: at most 8%s", "");
		if (!*optarg || strlen(optarg) >= 16 || strchr(optarg, '/'))
			return usage_error("--service-iface: '%s' is not an interface name",
					   optarg);
		service_ifaces[n_service_ifaces++] = optarg;
		break;
	default:
		return OPT_NOT_MINE;
	}
	return 0;
}

/* The Kubernetes watcher. */
static int opt_k8s(struct agent *a, struct arg_state *st, int opt)
{
	switch (opt) {
	case OPT_KUBERNETES:
		a->kopts.where.in_cluster = true;
		break;
	case OPT_KUBECONFIG:
		a->kopts.where.kubeconfig = optarg;
		break;
	case OPT_K8S_API:
		if (strncmp(optarg, "https://", 8) && strncmp(optarg, "http://", 7))
			return usage_error("--k8s-api: '%s' is not an http(s):// URL", optarg);
		a->kopts.where.api = optarg;
		break;
	case OPT_K8S_TOKEN_FILE:
		a->kopts.where.token_file = optarg;
		break;
	case OPT_K8S_CA_FILE:
		a->kopts.where.ca_file = optarg;
		break;
	case OPT_NODE_NAME:
		if (!*optarg || strlen(optarg) > K8S_NAME_MAX)
			return usage_error("--node-name: '%s' is not a node name", optarg);
		a->kopts.node_name = optarg;
		break;
	case OPT_SANDBOX_CIDR:
		if (a->kopts.n_sandbox_cidrs == K8S_MAX_SANDBOX_CIDRS)
			return usage_error("--sandbox-cidr: at most 32%s", "");
		if (parse_prefix(optarg, &a->kopts.sandbox_cidrs[a->kopts.n_sandbox_cidrs]))
			return usage_error("--sandbox-cidr: '%s' is not ADDRESS/LENGTH with "
					   "no bit set past LENGTH (e.g. 10.244.0.0/16)",
					   optarg);
		a->kopts.n_sandbox_cidrs++;
		break;
	case OPT_MAX_NS_ROUTES:
		if (opt_size("max-routes-per-namespace", optarg, 1, 1000000,
			     &a->kopts.max_routes_per_ns))
			return 2;
		st->k8s_only = st->k8s_only ? st->k8s_only : "--max-routes-per-namespace";
		break;
	default:
		return OPT_NOT_MINE;
	}
	return 0;
}

/* Per-pod caps against the node's. */
static int check_limits(struct proxy_opts *po, const struct arg_state *st)
{
	/* A per-pod cap asked for above the node's own limit is a mistake
	 * worth saying; a default that does not fit under it is no cap (one
	 * pod may then take all, as the node's limit allows). */
	if (po->max_conns_per_pod > po->max_conns && st->conns_pod_set) {
		fprintf(stderr,
			"shuntd: --max-conns-per-pod %zu is above --max-conns %zu\n"
			"Try 'shuntd --help'.\n",
			po->max_conns_per_pod, po->max_conns);
		return 2;
	}
	if (po->max_conns_per_pod >= po->max_conns && !st->conns_pod_set)
		po->max_conns_per_pod = 0;
	if (po->max_upstream_per_pod > po->max_upstream_per_dst && st->upstream_pod_set) {
		fprintf(stderr,
			"shuntd: --max-upstream-conns-per-pod %zu is above --max-upstream-conns "
			"%zu\nTry 'shuntd --help'.\n",
			po->max_upstream_per_pod, po->max_upstream_per_dst);
		return 2;
	}
	if (po->max_upstream_per_pod >= po->max_upstream_per_dst && !st->upstream_pod_set)
		po->max_upstream_per_pod = 0;
	return 0;
}

/* Options that only make sense together, or not together. */
static int check_args(struct agent *a, struct arg_state *st)
{
	struct proxy_opts *po = &a->popts;

	if (check_limits(po, st))
		return 2;
	if (!a->cgroup)
		return usage_error("--cgroup is required%s", "");
	if (!po->n_listen)
		return usage_error("--proxy-addr is required%s", "");
	if (listens_on_same(&a->health_addr, &a->metrics_addr)) {
		char hs[ADDR_STR_LEN];

		/* Both bind with SO_REUSEPORT: they would split the connections
		 * between them at random. */
		return usage_error("--health-addr: %s is where --metrics-addr listens too; "
				   "give it a port of its own",
				   format_addr_port(&a->health_addr, hs, sizeof(hs)));
	}
	if (a->kopts.where.in_cluster && a->kopts.where.kubeconfig)
		return usage_error("--kubernetes and --kubeconfig: give one%s", "");
	if ((a->kopts.where.token_file || a->kopts.where.ca_file) && !k8s_wanted(&a->kopts))
		return usage_error("--k8s-token-file and --k8s-ca-file need --kubernetes, "
				   "--kubeconfig or --k8s-api%s",
				   "");
	if (a->kopts.node_name)
		st->k8s_only = "--node-name";
	if (a->kopts.n_sandbox_cidrs)
		st->k8s_only = "--sandbox-cidr";
	if (st->k8s_only && !k8s_wanted(&a->kopts))
		return usage_error("%s needs --kubernetes, --kubeconfig or --k8s-api",
				   st->k8s_only);
	return 0;
}

static int parse_args(struct agent *a, int argc, char **argv, uint32_t *mark, uint16_t *port,
		      uint32_t *max_routes)
{
	static int (*const handlers[])(struct agent *, struct arg_state *, int) = {
		opt_proxy, opt_limits, opt_key, opt_agent, opt_k8s,
	};
	struct arg_state st = {.mark = mark, .port = port, .max_routes = max_routes};
	int opt, r;

	args_defaults(a);
	while ((opt = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		r = OPT_NOT_MINE;
		for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]) && r == OPT_NOT_MINE;
		     i++)
			r = handlers[i](a, &st, opt);
		if (r != OPT_NOT_MINE) {
			if (r)
				return r;
			continue;
		}
		switch (opt) {
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
	return check_args(a, &st);
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

/* msg gets what is in force now, or what was wrong (logged either way). */
static int load_config_msg(struct agent *a, int initial, char *msg, size_t len)
{
	struct config cfg = {};
	char err[512];
	int ret;

	ret = config_load(a->config_path, &cfg, err, sizeof(err));
	if (ret) {
		snprintf(msg, len, "%s", err);
		pr_err("%s%s", err, initial ? "" : "; the previous routes stay in force");
		return ret;
	}
	ret = store_apply_file(&a->store, &cfg, (uint64_t)time(NULL), err, sizeof(err));
	if (ret) {
		snprintf(msg, len, "%s: %s", a->config_path, err);
		pr_err("%s: %s%s", a->config_path, err,
		       initial ? "" : "; the previous routes stay in force");
	} else {
		snprintf(msg, len, "%s: %zu route(s) and %zu override(s) in force", a->config_path,
			 cfg.n, cfg.n_overrides);
		pr_info("%s", msg);
	}
	config_free(&cfg);
	return ret;
}

static int load_config(struct agent *a, int initial)
{
	char msg[768];

	return load_config_msg(a, initial, msg, sizeof(msg));
}

/* The control socket's reload: the same as SIGHUP. */
static int reload_config(struct agent *a, char *msg, size_t len)
{
	return load_config_msg(a, 0, msg, len);
}

/* Stop taking work: connections (new ones fail open, or go to the
 * successor) and control requests; the open connections finish. */
static void start_drain(struct agent *a, bool handed_over)
{
	a->draining = true;
	/* The routes stay as they are: on a takeover the successor owns
	 * them from now on. */
	k8s_stop(a);
	workers_drain(a->workers, a->drain_timeout_ms, handed_over);
	control_stop(a);
	/* After a takeover the new agent answers scrapes and probes on the
	 * same addresses (metrics and probes); on a plain SIGTERM /readyz
	 * says "draining". */
	if (handed_over)
		metrics_stop(a);
}

/* Is an agent answering on the control socket? */
static bool control_probe(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, ok;

	if (strlen(path) >= sizeof(sun.sun_path))
		return false;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	return ok;
}

/* Ask the running agent for its listening sockets. 0 with them in
 * a->popts.inherited, or -1 having said why. */
/* Connect to the running agent and ask it to hand over. With the request
 * goes our connect4 program, now attached through the pinned link: where
 * the running agent cannot read our capabilities (we run in a PID
 * namespace it cannot see, e.g. the next pod of a DaemonSet), holding it
 * proves we replaced its programs. (An agent that does not look for it
 * drops it.) Returns the connected socket, or -1. */
static int takeover_ask(struct agent *a)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} proof = {};
	struct iovec req_iov = {.iov_base = "takeover\n", .iov_len = 9};
	struct msghdr req = {.msg_iov = &req_iov, .msg_iovlen = 1};
	int prog_fd = shunt_bpf_connect4_fd(&a->bpf);
	int fd;

	if (prog_fd >= 0) {
		struct cmsghdr *cm;

		req.msg_control = proof.buf;
		req.msg_controllen = sizeof(proof.buf);
		cm = CMSG_FIRSTHDR(&req);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &prog_fd, sizeof(int));
	}
	strcpy(sun.sun_path, a->control_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) ||
	    sendmsg(fd, &req, MSG_NOSIGNAL) != 9) {
		pr_err("takeover: %s: %s", a->control_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* What a takeover answer carries: its text and every descriptor, in the
 * order sent. */
struct handover {
	char *text;
	size_t len, cap;
	int *fds;
	size_t nfds, fcap;
	size_t first_nfds; /* of the first read: the listeners (a read stops
			    * after the bytes that carried descriptors) */
	size_t reads;
	bool lost; /* a descriptor could not be kept: the order is unknown */
};

static void handover_free(struct handover *h, size_t keep_from)
{
	for (size_t i = keep_from; i < h->nfds; i++)
		close(h->fds[i]);
	free(h->text);
	free(h->fds);
}

/* Read the answer to its end (the running agent closes the connection
 * after it): 0, or -errno. */
static int handover_read(int fd, struct handover *h)
{
	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 253)];
			struct cmsghdr align;
		} u;
		char chunk[4096];
		struct iovec iov = {.iov_base = chunk, .iov_len = sizeof(chunk)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf)};
		ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return h->len ? 0 : -errno; /* what came is what there is */
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; CMSG_LEN((i + 1) * sizeof(int)) <= cm->cmsg_len; i++) {
				int got;

				memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (h->nfds == h->fcap) {
					size_t cap = h->fcap ? 2 * h->fcap : 64;
					int *f = realloc(h->fds, cap * sizeof(*f));

					if (!f) {
						close(got);
						h->lost = true;
						continue;
					}
					h->fds = f;
					h->fcap = cap;
				}
				h->fds[h->nfds++] = got;
			}
		}
		if (!h->reads++)
			h->first_nfds = h->nfds;
		if (n == 0)
			return 0;
		if (h->len + (size_t)n + 1 > h->cap) {
			size_t cap = h->cap ? 2 * h->cap : 8192;
			char *t;

			while (cap < h->len + (size_t)n + 1)
				cap *= 2;
			if (cap > (4U << 20) || !(t = realloc(h->text, cap)))
				return -ENOMEM;
			h->text = t;
			h->cap = cap;
		}
		memcpy(h->text + h->len, chunk, (size_t)n);
		h->len += (size_t)n;
		h->text[h->len] = '\0';
	}
}

/* The pods in the answer ("pod NAME PATH MASK" lines after "ok"): their
 * descriptors are all those after the first read's (the listeners), and
 * must be exactly as many as the lines announce. Returns how many
 * descriptors they take, having filled a->popts.pods; on anything
 * unexpected (an answer cut short, say), none: the caller closes them and
 * the pods fail open until added again. */
static size_t handover_pods(struct agent *a, struct handover *h)
{
	size_t want = 0, n = 0;
	char *save = NULL, *line;

	for (char *p = strstr(h->text, "\npod\t"); p; p = strstr(p + 1, "\npod\t"))
		n++;
	if (!n)
		return 0;
	a->popts.pods = calloc(n, sizeof(*a->popts.pods));
	if (!a->popts.pods)
		return 0;
	n = 0;
	for (line = strtok_r(h->text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct inpod_handover *p = &a->popts.pods[n];
		char *f[4], *s2 = NULL;
		int k = 0;

		if (strncmp(line, "pod\t", 4))
			continue;
		for (char *t = strtok_r(line, "\t", &s2); t && k < 4; t = strtok_r(NULL, "\t", &s2))
			f[k++] = t;
		if (k != 4 || strlen(f[1]) >= sizeof(p->name) ||
		    strlen(f[2]) >= sizeof(p->netns_path) || strlen(f[3]) != 1 || f[3][0] < '0' ||
		    f[3][0] > '3')
			goto bad;
		strcpy(p->name, f[1]);
		strcpy(p->netns_path, f[2]);
		p->lfd[0] = f[3][0] & 1 ? 1 : -1; /* descriptors assigned below */
		p->lfd[1] = f[3][0] & 2 ? 1 : -1;
		want += 1 + (p->lfd[0] >= 0) + (p->lfd[1] >= 0);
		n++;
	}
	if (h->lost || want != h->nfds - h->first_nfds)
		goto bad;
	for (size_t i = 0, at = h->first_nfds; i < n; i++) {
		struct inpod_handover *p = &a->popts.pods[i];

		p->nsfd = h->fds[at++];
		for (int f = 0; f < 2; f++)
			if (p->lfd[f] >= 0)
				p->lfd[f] = h->fds[at++];
	}
	a->popts.n_pods = (int)n;
	return want;
bad:
	pr_warn("takeover: the pods served in-pod came garbled or cut short: they fail open "
		"until added again");
	free(a->popts.pods);
	a->popts.pods = NULL;
	return (size_t)-1;
}

/* --pod-capture auto: in-pod where this agent can serve pods so (it can
 * setns: CAP_SYS_ADMIN; open the namespaces of processes of other users:
 * CAP_SYS_PTRACE; the kernel files connections by netns; it sees the
 * host's PIDs, which lead to the pods' namespaces), node otherwise. */
static uint8_t pod_capture_auto(struct agent *a)
{
	char status[4096] = "";
	uint64_t capeff = 0;
	FILE *f = fopen("/proc/self/status", "re");
	const char *why = NULL;
	struct stat st;

	if (f) {
		size_t n = fread(status, 1, sizeof(status) - 1, f);

		status[n] = '\0';
		fclose(f);
	}
	if (caller_parse_capeff(status, &capeff) || !(capeff & (1ULL << 21)))
		why = "no CAP_SYS_ADMIN (setns into the pods' namespaces)";
	else if (!(capeff & (1ULL << 19)))
		why = "no CAP_SYS_PTRACE (open other users' /proc/PID/ns/net)";
	else if (!a->bpf.netns_known)
		why = "this kernel's sockops cannot tell a connection's netns (Linux 5.15)";
	/* The host's PID namespace has a fixed inode (PROC_PID_INIT_INO). */
	else if (stat("/proc/self/ns/pid", &st) || st.st_ino != 0xEFFFFFFCU)
		why = "the host's PIDs are not visible (hostPID)";
	if (why) {
		pr_info("--pod-capture auto: node mode: %s", why);
		return K8S_CAPTURE_NODE;
	}
	pr_info("--pod-capture auto: this node's pods are served in-pod (annotation "
		"shunt.dev/capture: node keeps one in node mode)");
	return K8S_CAPTURE_INPOD;
}

/* A handed-over TC listener (transparent, on loopback): 0 for IPv4, 1
 * for IPv6; -1 for anything else (a node listener). */
static int tc_listener_family(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int on = 0;
	socklen_t ol = sizeof(on);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -1;
	if (ss.ss_family == AF_INET && !getsockopt(fd, SOL_IP, 19 /* IP_TRANSPARENT */, &on, &ol) &&
	    on)
		return 0;
	if (ss.ss_family == AF_INET6 &&
	    !getsockopt(fd, SOL_IPV6, 75 /* IPV6_TRANSPARENT */, &on, &ol) && on)
		return 1;
	return -1;
}

/* The pods the agent before us captured with TC ("tcpod NAME IFNAME"
 * lines): worker 0 attaches its own program to them. */
static void handover_tcpods(struct agent *a, const struct handover *h)
{
	const char *p = h->text;
	size_t n = 0;

	for (const char *q = strstr(p, "\ntcpod\t"); q; q = strstr(q + 1, "\ntcpod\t"))
		n++;
	if (!n)
		return;
	a->popts.tcpods = calloc(n, sizeof(*a->popts.tcpods));
	if (!a->popts.tcpods)
		return;
	for (const char *q = strstr(p, "\ntcpod\t"); q; q = strstr(q + 1, "\ntcpod\t")) {
		struct tcpod_handover *t = &a->popts.tcpods[a->popts.n_tcpods];
		const char *name = q + 7, *tab = strchr(name, '\t'), *end;

		if (!tab)
			break;
		end = strchr(tab + 1, '\n');
		if (!end)
			break; /* cut short: not a whole line */
		if ((size_t)(tab - name) >= sizeof(t->name) ||
		    (size_t)(end - tab - 1) >= sizeof(t->ifname) || tab == name || end == tab + 1)
			continue;
		memcpy(t->name, name, (size_t)(tab - name));
		memcpy(t->ifname, tab + 1, (size_t)(end - tab - 1));
		a->popts.n_tcpods++;
	}
	a->popts.tc_handed = a->popts.n_tcpods > 0;
}

/* The inference the agent before us had set ("infer NAME MODE PORTS"
 * lines): worker 0 sets it again on the pods it took over. */
static void handover_infers(struct agent *a, const struct handover *h)
{
	size_t n = 0;

	for (const char *q = strstr(h->text, "\ninfer\t"); q; q = strstr(q + 1, "\ninfer\t"))
		n++;
	if (!n)
		return;
	a->popts.infers = calloc(n, sizeof(*a->popts.infers));
	for (const char *q = strstr(h->text, "\ninfer\t"); q && a->popts.infers;
	     q = strstr(q + 1, "\ninfer\t")) {
		struct infer_handover *t = &a->popts.infers[a->popts.n_infers];
		char line[256], *f[4], *save = NULL;
		const char *end = strchr(q + 1, '\n');
		int nf = 0, np;

		if (!end || (size_t)(end - q - 1) >= sizeof(line))
			continue; /* cut short, or not ours */
		memcpy(line, q + 1, (size_t)(end - q - 1));
		line[end - q - 1] = '\0';
		for (char *tok = strtok_r(line, "\t", &save); tok && nf < 4;
		     tok = strtok_r(NULL, "\t", &save))
			f[nf++] = tok;
		if (nf != 4 || strlen(f[1]) >= sizeof(t->name))
			continue;
		np = parse_port_list(f[3], t->ports, 8);
		if (np <= 0 || (strcmp(f[2], "shadow") && strcmp(f[2], "on")))
			continue;
		snprintf(t->name, sizeof(t->name), "%s", f[1]);
		t->mode = !strcmp(f[2], "on") ? INFER_ON : INFER_SHADOW;
		t->n_ports = np;
		a->popts.n_infers++;
	}
}

static int takeover(struct agent *a)
{
	struct handover h = {};
	size_t pod_fds, listeners;
	int err, fd = takeover_ask(a);

	if (fd < 0)
		return -1;
	err = handover_read(fd, &h);
	close(fd);
	if (err || !h.len) {
		pr_err("takeover: no answer from the running agent on %s: %s", a->control_path,
		       err ? strerror(-err) : "closed");
		handover_free(&h, 0);
		return -1;
	}
	if (strncmp(h.text, "ok\n", 3)) {
		char *msg = strchr(h.text, '\n');

		pr_err("takeover: the running agent refused: %s", msg ? msg + 1 : h.text);
		handover_free(&h, 0);
		return -1;
	}
	handover_tcpods(a, &h); /* first: handover_pods cuts the text up */
	handover_infers(a, &h);
	pod_fds = handover_pods(a, &h);
	/* With pods, the first read's descriptors are the listeners and the
	 * rest the pods' (taken, or closed when garbled); without, all are
	 * listeners (listen_adopt() closes what is not). */
	listeners = pod_fds ? h.first_nfds : h.nfds;
	if (pod_fds == (size_t)-1)
		for (size_t i = h.first_nfds; i < h.nfds; i++)
			close(h.fds[i]);
	for (size_t i = 0; i < listeners; i++)
		if (tc_listener_family(h.fds[i]) >= 0) {
			int f = tc_listener_family(h.fds[i]);

			if (a->popts.tc_lfd[f] >= 0)
				close(a->popts.tc_lfd[f]);
			a->popts.tc_lfd[f] = h.fds[i];
			a->popts.tc_handed = true;
		} else if (a->popts.n_inherited < (int)(2 * SHUNT_MAX_WORKERS))
			a->popts.inherited[a->popts.n_inherited++] = h.fds[i];
		else
			close(h.fds[i]);
	h.nfds = 0; /* every descriptor has its owner now */
	handover_free(&h, 0);
	pr_info("took over %d listener(s) from the running agent", a->popts.n_inherited);
	if (a->popts.n_pods)
		pr_info("took over %d in-pod pod(s) from the running agent", a->popts.n_pods);
	if (a->popts.n_tcpods)
		pr_info("took over %d pod(s) captured with TC from the running agent",
			a->popts.n_tcpods);
	return 0;
}

struct guard_handler {
	struct ev_handler h;
	struct dstguard *g;
};

static void on_addr_change(struct ev_handler *h, uint32_t events)
{
	dstguard_on_netlink(((struct guard_handler *)h)->g);
}

/* The node's addresses, from which the proxy may never be made to dial:
 * followed through netlink, and read again now and then in case an event
 * was missed. */
static int guard_start(struct agent *a, struct guard_handler *gh)
{
	dstguard_init(&a->guard, a->popts.listen, a->popts.n_listen);
	if (!n_service_ifaces)
		dstguard_skip_iface(&a->guard, "kube-ipvs0");
	for (int i = 0; i < n_service_ifaces; i++)
		dstguard_skip_iface(&a->guard, service_ifaces[i]);
	if (dstguard_open(&a->guard))
		return -1;
	gh->h.fn = on_addr_change;
	gh->g = &a->guard;
	if (a->guard.nl_fd >= 0 && loop_add(&a->loop, a->guard.nl_fd, EPOLLIN, &gh->h)) {
		pr_err("epoll add (netlink): %s", strerror(errno));
		return -1;
	}
	pr_debug("the node has %zu address(es) the proxy never dials", a->guard.n_node);
	return 0;
}

#define GUARD_REFRESH_MS 30000

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
			if (sh->a->handed_over) {
				pr_info("SIGHUP: ignored, the new agent owns the routes");
				break;
			}
			if (sh->a->config_path) {
				pr_info("SIGHUP: reloading %s", sh->a->config_path);
				load_config(sh->a, 0);
			}
			break;
		case SIGTERM:
			if (!sh->a->draining) {
				pr_info("SIGTERM: draining for up to %llu ms (again to stop at "
					"once)",
					(unsigned long long)sh->a->drain_timeout_ms);
				start_drain(sh->a, false);
				break;
			}
			/* fall through */
		default:
			pr_info("%s: shutting down", strsignal((int)si.ssi_signo));
			sh->a->loop.stop = 1;
			break;
		}
	}
}

/* The proxy's addresses and the agent's mark, for the programs. */
static int write_kernel_config(struct agent *a)
{
	struct shunt_config kcfg = {.mark = a->popts.mark};
	int err;

	for (int i = 0; i < a->popts.n_listen; i++) {
		if (a->popts.listen[i].family == SHUNT_FAMILY_V4)
			kcfg.proxy4 = a->popts.listen[i];
		else
			kcfg.proxy6 = a->popts.listen[i];
	}
	err = shunt_bpf_set_config(&a->bpf, &kcfg);
	if (err)
		pr_err("write shunt_config: %s", strerror(-err));
	return err;
}

/* Routes and overrides from the pinned maps, then the routes file. */
static int recover_state(struct agent *a)
{
	long recovered = store_init(&a->store, a->bpf.routes_fd, a->bpf.services_fd,
				    a->bpf.overrides_fd, (uint64_t)time(NULL), &a->guard);

	a->store.max_routes = a->bpf.max_routes;
	if (recovered < 0) {
		pr_err("recover routes and overrides from %s: %s", a->pin_dir,
		       strerror((int)-recovered));
		return -1;
	}
	if (recovered || a->store.novr)
		pr_info("recovered %ld route(s) and %zu override(s) from %s", recovered,
			a->store.novr, a->pin_dir);
	if (a->config_path && load_config(a, 1))
		return -1;
	return 0;
}

static void log_ready(const struct agent *a)
{
	pr_info("limits: --max-conns %zu, --max-conns-per-pod %zu, --max-upstream-conns %zu, "
		"--max-upstream-conns-per-pod %zu%s",
		a->popts.max_conns, a->popts.max_conns_per_pod, a->popts.max_upstream_per_dst,
		a->popts.max_upstream_per_pod,
		(a->popts.max_conns_per_pod || a->popts.max_upstream_per_pod) && !a->bpf.record_src
			? " (per-pod caps off: see the warning above)"
			: "");
	pr_info("ready: cgroup %s, pins %s, control %s", a->cgroup, a->pin_dir, a->control_path);
}

/* The event loop until a signal, a drain that finished or a loop failure
 * (-errno). Between wakeups: the hand-over to a successor, the proxy's
 * housekeeping, the node's addresses every GUARD_REFRESH_MS, route TTLs
 * every second. */
static int run(struct agent *a)
{
	uint64_t last_sweep = 0, last_guard = 0;
	int err;

	while (!a->loop.stop) {
		err = loop_run_once(&a->loop, TICK_MS);
		if (err) {
			pr_err("event loop: %s", strerror(-err));
			return err;
		}
		if (a->handed_over && !a->draining) {
			/* The successor owns the routes, the links and the
			 * control socket path from now on. */
			a->detach_on_exit = false;
			start_drain(a, true);
		}
		workers_tick(a->workers);
		if (a->loop.now_ms - last_guard >= GUARD_REFRESH_MS) {
			last_guard = a->loop.now_ms;
			err = dstguard_refresh(&a->guard);
			if (err)
				pr_warn("read the node's addresses: %s", strerror(-err));
		}
		if (!a->handed_over && a->loop.now_ms - last_sweep >= 1000) {
			last_sweep = a->loop.now_ms;
			store_expire(&a->store, (uint64_t)time(NULL));
		}
		/* Whatever changed the routes or the node's addresses in
		 * this iteration reaches the workers now. */
		if (view_sync(&a->view, a->store.t, &a->guard))
			pr_warn("routes: no memory for a copy for the workers; the previous "
				"routes stay in force there");
		if (a->draining && workers_drained(a->workers)) {
			pr_info("drained");
			break;
		}
	}
	return 0;
}

/* Start-up in order, and the way down in reverse: each step that fails
 * jumps to the undoing of the steps before it (the kernel's and nginx's
 * goto ladder), which is why this stays one function. */
int main(int argc, char **argv)
{
	struct agent a = {};
	struct sig_handler sh = {.fd = -1};
	struct guard_handler gh = {};
	uint32_t mark = SHUNT_DEFAULT_MARK;
	uint16_t port = DEFAULT_PROXY_PORT;
	uint32_t max_routes = SHUNT_MAX_ROUTES;
	bool predecessor;
	sigset_t mask;
	int err, ret = 1;

	err = parse_args(&a, argc, argv, &mark, &port, &max_routes);
	if (err)
		return err;
	a.popts.mark = mark;
	if (!a.bpf.tc_mark)
		a.bpf.tc_mark = SHUNT_DEFAULT_TC_MARK;
	if (a.bpf.tc_mark == mark) {
		fprintf(stderr, "shuntd: --tc-mark and --mark must differ (both are 0x%x)\n", mark);
		return 2;
	}
	for (int i = 0; i < a.popts.n_listen; i++)
		a.popts.listen[i].port = port;
	a.started_unix = (uint64_t)time(NULL);
	a.reload = reload_config;
	a.bpf.cgroup_fd = -1;
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);

	/* An agent already answering on our control socket hands its place
	 * over once we are loaded; until we are up we must not detach what it
	 * runs on. */
	predecessor = control_probe(a.control_path);
	if (predecessor)
		pr_info("an agent is running on %s: taking over from it", a.control_path);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	dstguard_init(&a.guard, NULL, 0);
	if (loop_init(&a.loop)) {
		pr_err("epoll: %s", strerror(errno));
		return 1;
	}
	if (guard_start(&a, &gh))
		goto cleanup_loop;
	if (shunt_bpf_open(&a.bpf, a.pin_dir, a.cgroup, max_routes,
			   a.popts.max_conns_per_pod || a.popts.max_upstream_per_pod, a.reset_maps))
		goto cleanup_loop;

	if (write_kernel_config(&a))
		goto cleanup_bpf;

	/* The predecessor stops changing routes once it has handed over, so
	 * the maps read next are final. */
	if (predecessor && takeover(&a))
		goto cleanup_bpf;

	if (recover_state(&a))
		goto cleanup_store;

	if (view_init(&a.view, SHUNT_MAX_WORKERS) || view_sync(&a.view, a.store.t, &a.guard)) {
		pr_err("routes: out of memory");
		goto cleanup_view;
	}
	if (workers_start(&a.workers, &a.popts, &a.loop, &a.bpf, &a.view))
		goto cleanup_view;
	free(a.popts.pods); /* worker 0 took their descriptors */
	a.popts.pods = NULL;
	a.popts.n_pods = 0;
	if (control_start(&a, a.control_path))
		goto cleanup_proxy;
	if (a.metrics_addr.family && metrics_start(&a, &a.metrics_addr))
		goto cleanup_control;
	if (a.health_addr.family && metrics_start_health(&a, &a.health_addr))
		goto cleanup_metrics;

	sh.h.fn = on_signal;
	sh.a = &a;
	sh.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sh.fd < 0 || loop_add(&a.loop, sh.fd, EPOLLIN, &sh.h)) {
		pr_err("signalfd: %s", strerror(errno));
		goto cleanup_metrics;
	}

	if (a.pod_capture_auto)
		a.kopts.pod_capture = pod_capture_auto(&a);
	if (k8s_wanted(&a.kopts) && k8s_start(&a, &a.kopts))
		goto cleanup_signal;

	a.detach_on_exit = true;
	log_ready(&a);
	ret = run(&a) ? 1 : 0;

cleanup_signal:
	k8s_stop(&a);
	close(sh.fd);
cleanup_metrics:
	metrics_stop(&a);
cleanup_control:
	control_stop(&a);
cleanup_proxy:
	/* Listeners close first: new connections fail open from here on. */
	workers_stop(a.workers);
cleanup_view:
	view_free(&a.view);
cleanup_store:
	store_free(&a.store);
cleanup_bpf:
	if (a.detach_on_exit && a.bpf.tc_routed)
		tc_route_teardown(a.bpf.tc_mark);
	shunt_bpf_close(&a.bpf, a.detach_on_exit);
cleanup_loop:
	dstguard_close(&a.guard);
	loop_close(&a.loop);
	/* What a predecessor handed over (the descriptors are the workers'). */
	free(a.popts.pods);
	free(a.popts.tcpods);
	free(a.popts.infers);
	if (!ret && a.handed_over)
		pr_info("stopped; the new agent runs the programs and the maps");
	else if (!ret)
		pr_info("stopped; programs detached, maps stay pinned in %s", a.pin_dir);
	return ret;
}
