// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kubectl-shunt: Sandboxes without YAML, as a kubectl plugin (kubectl
 * finds kubectl-shunt on PATH: `kubectl shunt sandbox create ...`), with
 * the user's kubeconfig. Made for CI: create a Sandbox for a pull request,
 * wait until it is ready, print its key; delete it on merge.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "ctrl/sandbox.h"
#include "k8s/client.h"
#include "k8s/obj.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"

#define SBX_PATH "/apis/shunt.dev/v1alpha1"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: kubectl shunt sandbox create NAME --fork DEPLOYMENT [CHANGES] [--fork ...] "
		"[OPTIONS]\n"
		"       kubectl shunt sandbox list [-A]\n"
		"       kubectl shunt sandbox delete NAME [--wait DUR] [--force]\n"
		"\n"
		"Sandboxes (shunt.dev/v1alpha1, docs/sandboxes.md): forks of baseline Deployments "
		"that\n"
		"requests carrying the sandbox's routing key reach. Temporary resources, hooks "
		"and\n"
		"overrides are written in YAML and applied with kubectl apply.\n"
		"\n"
		"create: changes apply to the --fork before them:\n"
		"  --image CONTAINER=IMAGE      the container's image\n"
		"  --env CONTAINER:NAME=VALUE   set a variable\n"
		"  --unset-env CONTAINER:NAME   remove a variable\n"
		"  --replicas N                 pods of the fork (default 1)\n"
		"  --key KEY                    the routing key (default: made by the controller)\n"
		"  --ttl DUR                    delete it after DUR (8h, 90m)\n"
		"  --fallback error|baseline    when a fork cannot be reached (default error)\n"
		"  --wait DUR                   wait until it is Ready (exit 1 if not within DUR)\n"
		"  -q, --quiet                  print only the key (with --wait: once Ready)\n"
		"  --dry-run                    print the Sandbox, create nothing\n"
		"delete:\n"
		"  --wait DUR                   wait until it and everything it made are gone\n"
		"  --force                      also take the controller's finalizer off (skips "
		"the\n"
		"                               delete hook: only when the controller cannot "
		"finish)\n"
		"\n"
		"Cluster (default: $KUBECONFIG, else ~/.kube/config, else in-cluster):\n"
		"  -n, --namespace NS           (default: the context's namespace, else default)\n"
		"  -A, --all-namespaces         list: every namespace\n"
		"  --kubeconfig FILE, --k8s-api URL, --k8s-token-file FILE, --k8s-ca-file FILE\n"
		"  -h, --help\n");
}

static struct k8s_client cl;
static const char *ns;

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
	va_list ap;

	fputs("kubectl-shunt: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* "a=b" or "a:b=c" split at the first sep. */
static int split(char *s, char sep, char **a, char **b)
{
	char *p = strchr(s, sep);

	if (!p || p == s)
		return -EINVAL;
	*p = '\0';
	*a = s;
	*b = p + 1;
	return 0;
}

/* The container change of fork f named cname (made when absent). */
static struct json_object *container(struct json_object *fork, const char *cname)
{
	struct json_object *cs = k8s_jget(fork, "containers"), *c;

	if (!cs) {
		cs = json_object_new_array();
		json_object_object_add(fork, "containers", cs);
	}
	for (size_t i = 0; i < json_object_array_length(cs); i++) {
		c = json_object_array_get_idx(cs, i);
		if (!strcmp(k8s_jstr(c, "name") ?: "", cname))
			return c;
	}
	c = json_object_new_object();
	json_object_object_add(c, "name", json_object_new_string(cname));
	json_object_array_add(cs, c);
	return c;
}

static struct json_object *list_of(struct json_object *o, const char *k)
{
	struct json_object *a = k8s_jget(o, k);

	if (!a) {
		a = json_object_new_array();
		json_object_object_add(o, k, a);
	}
	return a;
}

static int wait_ready(const char *name, uint64_t wait_s, bool quiet)
{
	uint64_t end = monotonic_ms() + wait_s * 1000;
	char path[512], msg[256], last[600] = "";
	long st;

	snprintf(path, sizeof(path), SBX_PATH "/namespaces/%s/sandboxes/%s", ns, name);
	for (;;) {
		struct json_object *sb =
			k8s_call_json(&cl, "GET", path, NULL, NULL, &st, msg, sizeof(msg));
		struct json_object *c = sbx_ready(sb);
		char now[600];
		int64_t gen =
			json_object_get_int64(k8s_jget(k8s_jget(sb, "metadata"), "generation"));
		int64_t seen = json_object_get_int64(
			k8s_jget(k8s_jget(sb, "status"), "observedGeneration"));

		if (!sb && st != 404) {
			json_object_put(sb);
			return die("get %s/%s: %s", ns, name, msg);
		}
		if (c && seen >= gen && !strcmp(k8s_jstr(c, "status") ?: "", "True")) {
			const char *key = k8s_jstr(k8s_jget(sb, "status"), "key") ?: "";

			if (quiet)
				printf("%s\n", key);
			else
				printf("sandbox %s/%s is ready: requests with the key %s reach its "
				       "forks\n",
				       ns, name, key);
			json_object_put(sb);
			return 0;
		}
		snprintf(now, sizeof(now), "%s: %s", c ? (k8s_jstr(c, "reason") ?: "") : "Pending",
			 c ? (k8s_jstr(c, "message") ?: "")
			   : "the controller has not reported yet");
		if (!quiet && strcmp(now, last)) {
			fprintf(stderr, "  %s\n", now);
			snprintf(last, sizeof(last), "%s", now);
		}
		json_object_put(sb);
		if (monotonic_ms() >= end)
			return die("sandbox %s/%s not ready after %" PRIu64 "s (%s)", ns, name,
				   wait_s, last[0] ? last : now);
		usleep(300 * 1000);
	}
}

static int cmd_create(int argc, char **argv)
{
	enum {
		O_FORK = 256,
		O_IMAGE,
		O_ENV,
		O_UNSET,
		O_REPLICAS,
		O_KEY,
		O_TTL,
		O_FALLBACK,
		O_WAIT,
		O_DRY
	};
	static const struct option opts[] = {
		{"fork", required_argument, NULL, O_FORK},
		{"image", required_argument, NULL, O_IMAGE},
		{"env", required_argument, NULL, O_ENV},
		{"unset-env", required_argument, NULL, O_UNSET},
		{"replicas", required_argument, NULL, O_REPLICAS},
		{"key", required_argument, NULL, O_KEY},
		{"ttl", required_argument, NULL, O_TTL},
		{"fallback", required_argument, NULL, O_FALLBACK},
		{"wait", required_argument, NULL, O_WAIT},
		{"dry-run", no_argument, NULL, O_DRY},
		{"quiet", no_argument, NULL, 'q'},
		{0},
	};
	struct json_object *sb = json_object_new_object(), *md = json_object_new_object();
	struct json_object *spec = json_object_new_object(), *forks = json_object_new_array(),
			   *fork = NULL;
	struct json_object *e, *created;
	uint64_t wait_s = 0, n;
	bool dry = false, quiet = false;
	char *a, *b, *c, path[512], msg[256], err[256];
	struct sbx_meta m;
	long st;
	int opt, ret = 2;

	json_object_object_add(sb, "apiVersion", json_object_new_string("shunt.dev/v1alpha1"));
	json_object_object_add(sb, "kind", json_object_new_string("Sandbox"));
	json_object_object_add(sb, "metadata", md);
	json_object_object_add(sb, "spec", spec);
	json_object_object_add(spec, "forks", forks);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
		if (opt != O_FORK && opt != O_KEY && opt != O_TTL && opt != O_FALLBACK &&
		    opt != O_WAIT && opt != O_DRY && opt != 'q' && !fork) {
			die("%s: give --fork DEPLOYMENT first", argv[optind - 1]);
			goto out;
		}
		switch (opt) {
		case O_FORK:
			fork = json_object_new_object();
			json_object_object_add(fork, "deployment", json_object_new_string(optarg));
			json_object_array_add(forks, fork);
			break;
		case O_IMAGE:
			if (split(optarg, '=', &a, &b) || !*b) {
				die("--image %s: CONTAINER=IMAGE", optarg);
				goto out;
			}
			json_object_object_add(container(fork, a), "image",
					       json_object_new_string(b));
			break;
		case O_ENV:
			if (split(optarg, ':', &a, &b) || split(b, '=', &b, &c)) {
				die("--env %s: CONTAINER:NAME=VALUE", optarg);
				goto out;
			}
			e = json_object_new_object();
			json_object_object_add(e, "name", json_object_new_string(b));
			json_object_object_add(e, "value", json_object_new_string(c));
			json_object_array_add(list_of(container(fork, a), "env"), e);
			break;
		case O_UNSET:
			if (split(optarg, ':', &a, &b) || !*b) {
				die("--unset-env %s: CONTAINER:NAME", optarg);
				goto out;
			}
			json_object_array_add(list_of(container(fork, a), "removeEnv"),
					      json_object_new_string(b));
			break;
		case O_REPLICAS:
			if (parse_u64(optarg, 10, &n)) {
				die("--replicas %s: 0 to 10", optarg);
				goto out;
			}
			json_object_object_add(fork, "replicas", json_object_new_int64((int64_t)n));
			break;
		case O_KEY:
		case O_TTL:
		case O_FALLBACK:
			json_object_object_add(spec,
					       opt == O_KEY   ? "key"
					       : opt == O_TTL ? "ttl"
							      : "fallback",
					       json_object_new_string(optarg));
			break;
		case O_WAIT:
			if (parse_duration(optarg, &wait_s) || !wait_s) {
				die("--wait %s: a duration (5m, 90s)", optarg);
				goto out;
			}
			break;
		case O_DRY:
			dry = true;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind != argc - 1 || !fork) {
		die("create: one NAME and at least one --fork DEPLOYMENT");
		goto out;
	}
	json_object_object_add(md, "name", json_object_new_string(argv[optind]));
	json_object_object_add(md, "namespace", json_object_new_string(ns));
	/* What the controller will check, checked here first (the uid is
	 * the server's: a stand-in). */
	json_object_object_add(md, "uid",
			       json_object_new_string("00000000-0000-0000-0000-000000000000"));
	json_object_object_add(md, "creationTimestamp",
			       json_object_new_string("2026-01-01T00:00:00Z"));
	if (sbx_meta_decode(sb, &m, err, sizeof(err))) {
		die("%s", err);
		goto out;
	}
	json_object_object_del(md, "uid");
	json_object_object_del(md, "creationTimestamp");
	if (dry) {
		printf("%s\n",
		       json_object_to_json_string_ext(sb, JSON_C_TO_STRING_PRETTY |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
		ret = 0;
		goto out;
	}
	snprintf(path, sizeof(path), SBX_PATH "/namespaces/%s/sandboxes", ns);
	created = k8s_call_json(&cl, "POST", path, NULL, sb, &st, msg, sizeof(msg));
	if (!created) {
		ret = st == 409 ? die("sandbox %s/%s exists already", ns, argv[optind])
				: die("create %s/%s: %s", ns, argv[optind],
				      msg[0] ? msg : "no answer");
		goto out;
	}
	/* The key, also one the controller makes from the uid it now has. */
	ret = sbx_meta_decode(created, &m, err, sizeof(err));
	json_object_put(created);
	if (ret) {
		ret = die("the server's Sandbox: %s", err);
		goto out;
	}
	if (!quiet)
		printf("sandbox %s/%s created, key %s\n", ns, argv[optind], m.key);
	ret = wait_s ? wait_ready(argv[optind], wait_s, quiet) : 0;
	if (!wait_s && quiet)
		printf("%s\n", m.key);
out:
	json_object_put(sb);
	return ret;
}

static void age(uint64_t t, char *buf, size_t len)
{
	uint64_t now = (uint64_t)time(NULL), d = now > t ? now - t : 0;

	if (!t)
		snprintf(buf, len, "-");
	else if (d < 120)
		snprintf(buf, len, "%" PRIu64 "s", d);
	else if (d < 7200)
		snprintf(buf, len, "%" PRIu64 "m", d / 60);
	else if (d < 172800)
		snprintf(buf, len, "%" PRIu64 "h", d / 3600);
	else
		snprintf(buf, len, "%" PRIu64 "d", d / 86400);
}

static int cmd_list(bool all)
{
	struct json_object *l, *items;
	char path[512], msg[256];
	long st;

	if (all)
		snprintf(path, sizeof(path), SBX_PATH "/sandboxes");
	else
		snprintf(path, sizeof(path), SBX_PATH "/namespaces/%s/sandboxes", ns);
	l = k8s_call_json(&cl, "GET", path, NULL, NULL, &st, msg, sizeof(msg));
	if (!l)
		return die("list sandboxes: %s", msg[0] ? msg : "no answer");
	items = k8s_jarr(l, "items");
	if (all)
		printf("%-16s ", "NAMESPACE");
	printf("%-24s %-24s %-6s %-18s %-6s %-10s %s\n", "NAME", "KEY", "READY", "REASON", "FORKS",
	       "EXPIRES", "AGE");
	for (size_t i = 0; i < k8s_jlen(items); i++) {
		struct json_object *sb = json_object_array_get_idx(items, i);
		struct json_object *md = k8s_jget(sb, "metadata"), *st2 = k8s_jget(sb, "status");
		struct json_object *c = sbx_ready(sb);
		uint64_t created = 0, exp = 0, now = (uint64_t)time(NULL);
		char a[24], e[32], in[24];

		k8s_parse_time(k8s_jstr(md, "creationTimestamp") ?: "", &created);
		k8s_parse_time(k8s_jstr(st2, "expiresAt") ?: "", &exp);
		age(created, a, sizeof(a));
		if (!exp)
			snprintf(e, sizeof(e), "-");
		else if (exp <= now)
			snprintf(e, sizeof(e), "now");
		else {
			age(now - (exp - now), in, sizeof(in));
			snprintf(e, sizeof(e), "in %s", in);
		}
		if (all)
			printf("%-16s ", k8s_jstr(md, "namespace") ?: "");
		printf("%-24s %-24s %-6s %-18s %-6s %-10s %s\n", k8s_jstr(md, "name") ?: "",
		       k8s_jstr(st2, "key") ?: k8s_jstr(k8s_jobj(sb, "spec"), "key") ?: "-",
		       c ? (k8s_jstr(c, "status") ?: "?") : "-",
		       k8s_jstr(md, "deletionTimestamp") ? "Deleting"
		       : c				   ? (k8s_jstr(c, "reason") ?: "")
							   : "-",
		       (k8s_jstr(st2, "forksReady") ?: "-"), e, a);
	}
	json_object_put(l);
	return 0;
}

static int cmd_delete(int argc, char **argv)
{
	enum { O_WAIT = 256, O_FORCE };
	static const struct option opts[] = {
		{"wait", required_argument, NULL, O_WAIT},
		{"force", no_argument, NULL, O_FORCE},
		{0},
	};
	struct json_object *sb, *gone;
	char path[512], msg[256];
	uint64_t wait_s = 0, end;
	bool force = false;
	long st;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == O_WAIT && (parse_duration(optarg, &wait_s) || !wait_s))
			return die("--wait %s: a duration (5m, 90s)", optarg);
		else if (opt == O_FORCE)
			force = true;
		else if (opt != O_WAIT)
			return 2;
	}
	if (optind != argc - 1)
		return die("delete: one NAME");
	snprintf(path, sizeof(path), SBX_PATH "/namespaces/%s/sandboxes/%s", ns, argv[optind]);
	gone = k8s_call_json(&cl, "DELETE", path, NULL, NULL, &st, msg, sizeof(msg));
	json_object_put(gone);
	if (st == 404)
		return die("sandbox %s/%s not found", ns, argv[optind]);
	if (st < 200 || st >= 300)
		return die("delete %s/%s: %s", ns, argv[optind], msg[0] ? msg : "no answer");
	printf("sandbox %s/%s deleted\n", ns, argv[optind]);
	/* --force: the finalizer off, again if the object changed meanwhile. */
	for (int tries = 0; force; tries++) {
		struct json_object *md, *put;

		sb = k8s_call_json(&cl, "GET", path, NULL, NULL, &st, msg, sizeof(msg));
		if (!sb)
			break; /* gone already */
		md = k8s_jobj(sb, "metadata");
		json_object_object_add(md, "finalizers", sbx_finalizers(sb, false));
		put = k8s_call_json(&cl, "PUT", path, NULL, sb, &st, msg, sizeof(msg));
		json_object_put(put);
		json_object_put(sb);
		if (put || st == 404) {
			printf("sandbox %s/%s: finalizer %s removed (its delete hook, if any, will "
			       "not "
			       "run)\n",
			       ns, argv[optind], SBX_FINALIZER);
			break;
		}
		if (st != 409 || tries == 4)
			return die("removing the finalizer: %s", msg);
	}
	if (!wait_s)
		return 0;
	end = monotonic_ms() + wait_s * 1000;
	for (;;) {
		sb = k8s_call_json(&cl, "GET", path, NULL, NULL, &st, msg, sizeof(msg));
		json_object_put(sb);
		if (st == 404) {
			printf("sandbox %s/%s is gone\n", ns, argv[optind]);
			return 0;
		}
		if (monotonic_ms() >= end)
			return die("sandbox %s/%s still there after %" PRIu64
				   "s: is shunt-controller running? (kubectl get sandbox %s -o "
				   "yaml says why)",
				   ns, argv[optind], wait_s, argv[optind]);
		usleep(300 * 1000);
	}
}

int main(int argc, char **argv)
{
	enum { O_KUBECONFIG = 256, O_API, O_TOKEN, O_CA };
	static const struct option opts[] = {
		{"kubeconfig", required_argument, NULL, O_KUBECONFIG},
		{"k8s-api", required_argument, NULL, O_API},
		{"k8s-token-file", required_argument, NULL, O_TOKEN},
		{"k8s-ca-file", required_argument, NULL, O_CA},
		{"namespace", required_argument, NULL, 'n'},
		{"all-namespaces", no_argument, NULL, 'A'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct k8s_where w = {0};
	char home_cfg[4096], *cmd_argv[256];
	const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");
	int cmd_argc = 0, ret;
	bool all = false;

	log_prog = "kubectl-shunt";
	/* Our global options anywhere; the rest goes to the subcommand. */
	cmd_argv[cmd_argc++] = argv[0];
	for (int i = 1; i < argc && cmd_argc < 255; i++) {
		const struct option *o = NULL;
		const char *s = argv[i];

		if (!strncmp(s, "-n", 2) && s[2]) {
			ns = s + 2;
			continue;
		}
		if (!strcmp(s, "-n") || !strcmp(s, "-A") || !strcmp(s, "-h")) {
			if (s[1] == 'h') {
				usage(stdout);
				return 0;
			}
			if (s[1] == 'A') {
				all = true;
				continue;
			}
			if (i + 1 >= argc)
				return die("-n: a namespace");
			ns = argv[++i];
			continue;
		}
		for (const struct option *p = opts; s[0] == '-' && s[1] == '-' && p->name; p++)
			if (!strncmp(s + 2, p->name, strlen(p->name)) &&
			    (s[2 + strlen(p->name)] == '\0' || s[2 + strlen(p->name)] == '='))
				o = p;
		if (!o) {
			cmd_argv[cmd_argc++] = argv[i];
			continue;
		}
		{
			const char *val = strchr(s, '=') ? strchr(s, '=') + 1 : NULL;

			if (o->has_arg && !val) {
				if (i + 1 >= argc)
					return die("%s: a value", s);
				val = argv[++i];
			}
			switch (o->val) {
			case O_KUBECONFIG:
				w.kubeconfig = val;
				break;
			case O_API:
				w.api = val;
				break;
			case O_TOKEN:
				w.token_file = val;
				break;
			case O_CA:
				w.ca_file = val;
				break;
			case 'n':
				ns = val;
				break;
			case 'A':
				all = true;
				break;
			default:
				usage(stdout);
				return 0;
			}
		}
	}
	cmd_argv[cmd_argc] = NULL;
	if (cmd_argc < 3 || strcmp(cmd_argv[1], "sandbox")) {
		usage(stderr);
		return 2;
	}
	if (!w.kubeconfig && !w.api) {
		if (env && *env) {
			/* The first file of the list. */
			snprintf(home_cfg, sizeof(home_cfg), "%s", env);
			home_cfg[strcspn(home_cfg, ":")] = '\0';
			w.kubeconfig = home_cfg;
		} else if (home &&
			   snprintf(home_cfg, sizeof(home_cfg), "%s/.kube/config", home) > 0 &&
			   !access(home_cfg, R_OK)) {
			w.kubeconfig = home_cfg;
		} else {
			w.in_cluster = true;
		}
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) || k8s_client_init(&cl, &w, "kubectl-shunt"))
		return 1;
	if (!ns)
		ns = cl.conn.ns ? cl.conn.ns : "default";
	if (!strcmp(cmd_argv[2], "create"))
		ret = cmd_create(cmd_argc - 2, cmd_argv + 2);
	else if (!strcmp(cmd_argv[2], "list") || !strcmp(cmd_argv[2], "ls"))
		ret = cmd_argc == 3 ? cmd_list(all) : die("list: no arguments");
	else if (!strcmp(cmd_argv[2], "delete") || !strcmp(cmd_argv[2], "rm"))
		ret = cmd_delete(cmd_argc - 2, cmd_argv + 2);
	else {
		usage(stderr);
		ret = 2;
	}
	k8s_client_free(&cl);
	curl_global_cleanup();
	return ret;
}
