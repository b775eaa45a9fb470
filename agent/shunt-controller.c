// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * shunt-controller: turns Sandbox objects into forks, SandboxRoutes,
 * temporary resources, hooks and SandboxOverrides (agent/ctrl/ctrl.h).
 * Runs as its own Deployment with its own ServiceAccount
 * (deploy/controller.yaml); several replicas elect one leader.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctrl/ctrl.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: shunt-controller [OPTIONS]\n"
		"\n"
		"Keeps every Sandbox (shunt.dev/v1alpha1) in step: forks of its baseline\n"
		"Deployments, SandboxRoutes to them, its temporary resources and hooks, and\n"
		"SandboxOverrides; deletes a Sandbox when its ttl runs out, and everything it\n"
		"made with it. Several replicas elect one leader on a Lease.\n"
		"\n"
		"Cluster (default: in-cluster service account):\n"
		"  --kubeconfig FILE       the current context of a kubeconfig\n"
		"  --k8s-api URL           the API server (overrides the kubeconfig's)\n"
		"  --k8s-token-file FILE   bearer token, re-read when it changes\n"
		"  --k8s-ca-file FILE      CA bundle for the API server\n"
		"  --namespace NS          only Sandboxes of this namespace (default: all)\n"
		"\n"
		"Leader election:\n"
		"  --lease-namespace NS    the Lease's namespace (default: $POD_NAMESPACE, else "
		"shunt-system)\n"
		"  --lease-name NAME       (default: shunt-controller)\n"
		"  --id ID                 this instance (default: $POD_NAME, else host name and "
		"pid)\n"
		"  --lease-duration DUR    a silent leader is replaced after this (default: 15s)\n"
		"\n"
		"  --resync DUR            a full pass at least this often (default: 30s)\n"
		"  --log-format text|json  (default: text)\n"
		"  -v, --verbose           debug logging\n"
		"  -h, --help\n");
}

static int parse_ms(const char *s, const char *flag, unsigned int *out)
{
	uint64_t sec;

	if (parse_duration(s, &sec) || !sec || sec > 3600) {
		fprintf(stderr,
			"shunt-controller: %s: '%s' is not a duration from 1s to 1h (e.g. 15s)\n",
			flag, s);
		return -EINVAL;
	}
	*out = (unsigned int)sec * 1000;
	return 0;
}

static struct ctrl C;

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig = 0;

	sigwait(set, &sig);
	pr_info("ctrl: %s: stopping", strsignal(sig));
	__atomic_store_n(&C.stop, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&C.mu);
	pthread_cond_signal(&C.cv);
	pthread_mutex_unlock(&C.mu);
	return NULL;
}

static uint64_t realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait until a mark or the deadline (monotonic ms). */
static void wait_until(struct ctrl *c, uint64_t deadline)
{
	struct timespec ts;
	uint64_t now = monotonic_ms(), d;

	if (deadline <= now)
		return;
	d = deadline - now;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(d / 1000);
	ts.tv_nsec += (long)(d % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	if (!c->dirty_all && !c->dirty.n && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	pthread_mutex_unlock(&c->mu);
}

static void run(struct ctrl *c)
{
	uint64_t next_full = 0;
	unsigned int retry_ms = 0;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		struct hmap todo = {0};
		uint64_t wake;
		bool all, any;

		ctrl_lease_maybe_tick(c);
		if (c->leader && c->next_expiry_unix && realtime_ms() >= c->next_expiry_unix * 1000)
			ctrl_mark(c, NULL);
		pthread_mutex_lock(&c->mu);
		any = c->dirty_all || c->dirty.n;
		pthread_mutex_unlock(&c->mu);
		if (any) {
			/* Let a burst of events settle into one pass. */
			struct timespec ts = {.tv_nsec = (long)c->o.debounce_ms * 1000000L};

			nanosleep(&ts, NULL);
		}
		pthread_mutex_lock(&c->mu);
		all = c->dirty_all || (c->leader && monotonic_ms() >= next_full);
		todo = c->dirty;
		memset(&c->dirty, 0, sizeof(c->dirty));
		c->dirty_all = false;
		pthread_mutex_unlock(&c->mu);
		if (c->leader && all) {
			/* The pass finds the next expiry again. */
			c->next_expiry_unix = 0;
			if (!ctrl_pass(c, c->o.ns)) {
				retry_ms = 0;
				next_full = monotonic_ms() + c->o.resync_ms;
			} else {
				/* The list failed (no CRD, no permission, the
				 * server): again after a growing pause. */
				retry_ms = retry_ms ? retry_ms * 2 : 1000;
				if (retry_ms > c->o.resync_ms)
					retry_ms = c->o.resync_ms;
				next_full = monotonic_ms() + retry_ms;
			}
		} else if (c->leader) {
			size_t i;

			for (struct hmap_entry *e = hmap_first(&todo, &i); e;
			     e = hmap_next(&todo, e, &i))
				if (!c->o.ns || !strcmp(c->o.ns, e->key))
					ctrl_pass(c, e->key);
		}
		hmap_free(&todo);
		wake = c->next_lease_ms;
		if (c->leader && next_full < wake)
			wake = next_full;
		if (c->leader && c->next_expiry_unix) {
			int64_t in = (int64_t)(c->next_expiry_unix * 1000) - (int64_t)realtime_ms();
			uint64_t at = monotonic_ms() + (in > 0 ? (uint64_t)in : 0);

			if (at < wake)
				wake = at;
		}
		wait_until(c, wake);
	}
}

int main(int argc, char **argv)
{
	enum {
		O_KUBECONFIG = 256,
		O_API,
		O_TOKEN,
		O_CA,
		O_NS,
		O_LEASE_NS,
		O_LEASE_NAME,
		O_ID,
		O_LEASE_DUR,
		O_RESYNC,
		O_LOG_FORMAT
	};
	static const struct option opts[] = {
		{"kubeconfig", required_argument, NULL, O_KUBECONFIG},
		{"k8s-api", required_argument, NULL, O_API},
		{"k8s-token-file", required_argument, NULL, O_TOKEN},
		{"k8s-ca-file", required_argument, NULL, O_CA},
		{"namespace", required_argument, NULL, O_NS},
		{"lease-namespace", required_argument, NULL, O_LEASE_NS},
		{"lease-name", required_argument, NULL, O_LEASE_NAME},
		{"id", required_argument, NULL, O_ID},
		{"lease-duration", required_argument, NULL, O_LEASE_DUR},
		{"resync", required_argument, NULL, O_RESYNC},
		{"log-format", required_argument, NULL, O_LOG_FORMAT},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct ctrl *c = &C;
	char host[256] = "", id[320];
	pthread_t sig_t;
	sigset_t set;
	int opt;

	log_prog = "shunt-controller";
	c->o.lease_name = "shunt-controller";
	c->o.lease_ns = getenv("POD_NAMESPACE") && *getenv("POD_NAMESPACE")
				? getenv("POD_NAMESPACE")
				: "shunt-system";
	c->o.id = getenv("POD_NAME") && *getenv("POD_NAME") ? getenv("POD_NAME") : NULL;
	c->o.lease_ms = 15000;
	c->o.resync_ms = 30000;
	c->o.debounce_ms = 50;
	while ((opt = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (opt) {
		case O_KUBECONFIG:
			c->o.where.kubeconfig = optarg;
			break;
		case O_API:
			c->o.where.api = optarg;
			break;
		case O_TOKEN:
			c->o.where.token_file = optarg;
			break;
		case O_CA:
			c->o.where.ca_file = optarg;
			break;
		case O_NS:
			c->o.ns = optarg;
			break;
		case O_LEASE_NS:
			c->o.lease_ns = optarg;
			break;
		case O_LEASE_NAME:
			c->o.lease_name = optarg;
			break;
		case O_ID:
			c->o.id = optarg;
			break;
		case O_LEASE_DUR:
			if (parse_ms(optarg, "--lease-duration", &c->o.lease_ms))
				return 2;
			if (c->o.lease_ms < 3000) {
				fprintf(stderr,
					"shunt-controller: --lease-duration: at least 3s\n");
				return 2;
			}
			break;
		case O_RESYNC:
			if (parse_ms(optarg, "--resync", &c->o.resync_ms))
				return 2;
			break;
		case O_LOG_FORMAT:
			if (!strcmp(optarg, "text"))
				log_format = LOG_FORMAT_TEXT;
			else if (!strcmp(optarg, "json"))
				log_format = LOG_FORMAT_JSON;
			else {
				fprintf(stderr, "shunt-controller: --log-format: text or json\n");
				return 2;
			}
			break;
		case 'v':
			log_threshold = LOG_DEBUG;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shunt-controller: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!c->o.id) {
		gethostname(host, sizeof(host) - 1);
		snprintf(id, sizeof(id), "%s_%d", host[0] ? host : "controller", (int)getpid());
		c->o.id = id;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		pr_err("ctrl: libcurl would not initialise");
		return 1;
	}
	pthread_mutex_init(&c->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	/* Signals go to the signal thread only. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (k8s_client_init(&c->cl, &c->o.where, "shunt-controller"))
		return 1;
	pr_info("ctrl: %s as %s, Sandboxes in %s, lease %s/%s (%u ms)", c->cl.conn.server, c->o.id,
		c->o.ns ? c->o.ns : "every namespace", c->o.lease_ns, c->o.lease_name,
		c->o.lease_ms);
	if (pthread_create(&sig_t, NULL, signal_thread, &set) || ctrl_watches_start(c)) {
		pr_err("ctrl: cannot start threads");
		return 1;
	}
	run(c);
	ctrl_lease_release(c);
	ctrl_watches_stop(c);
	pthread_join(sig_t, NULL);
	k8s_client_free(&c->cl);
	hmap_free(&c->dirty);
	curl_global_cleanup();
	pr_info("ctrl: stopped after %lu passes, %lu writes", c->passes, c->writes);
	return 0;
}
