/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests for the Kubernetes translation (agent/k8s/obj.c,
 * agent/k8s/cache.c) and the kubeconfig reader: JSON fixtures in the
 * shapes the API server sends (items of a list: no kind/apiVersion) in,
 * routes out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "k8s/cache.h"
#include "k8s/obj.h"
#include "k8s/kubeconfig.h"
#include "state/routes.h"
#include "core/util.h"

#define NOW  (T0_S + 600) /* ten minutes after the fixtures were created */
#define T0   "2026-11-18T09:00:00Z"
#define T0_S 1794992400ULL

static struct k8s_cache c;
static char err[512];

/* Each test runs in its own process with c zeroed (an empty cache). */
static void teardown(void)
{
	k8s_cache_free(&c);
}

static void put(enum k8s_kind kind, const char *json)
{
	int ret = k8s_cache_put_json(&c, kind, json, err, sizeof(err));

	cr_assert_eq(ret, 0, "refused (%d): %s\n%s", ret, err, json);
}

/* The object is refused with a message containing want. */
static void refused(enum k8s_kind kind, const char *json, const char *want)
{
	int ret = k8s_cache_put_json(&c, kind, json, err, sizeof(err));

	cr_assert_eq(ret, -EINVAL, "accepted: %s", json);
	cr_assert(strstr(err, want), "message '%s' lacks '%s'", err, want);
}

/* ---- fixtures ------------------------------------------------------------ */

/* Service shop/orders: ClusterIPs v4 + v6, ports http 80 and grpc 9090
 * (UDP dns 53 too, never captured). */
static const char svc_orders[] =
	"{\"metadata\":{\"name\":\"orders\",\"namespace\":\"shop\",\"uid\":\"u1\","
	"\"resourceVersion\":\"10\"},"
	"\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.0.10\","
	"\"clusterIPs\":[\"10.96.0.10\",\"fd00:96::10\"],"
	"\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080,\"protocol\":\"TCP\"},"
	"{\"name\":\"grpc\",\"port\":9090,\"targetPort\":\"grpc\",\"protocol\":\"TCP\"},"
	"{\"name\":\"dns\",\"port\":53,\"protocol\":\"UDP\"}],"
	"\"ipFamilies\":[\"IPv4\",\"IPv6\"]},\"status\":{\"loadBalancer\":{}}}";

static const char slice_v4[] =
	"{\"metadata\":{\"name\":\"orders-abc\",\"namespace\":\"shop\",\"labels\":"
	"{\"kubernetes.io/service-name\":\"orders\","
	"\"endpointslice.kubernetes.io/managed-by\":\"endpointslice-controller.k8s.io\"}},"
	"\"addressType\":\"IPv4\","
	"\"endpoints\":[{\"addresses\":[\"10.244.0.5\"],\"conditions\":{\"ready\":true,"
	"\"serving\":true,\"terminating\":false},\"targetRef\":{\"kind\":\"Pod\","
	"\"namespace\":\"shop\",\"name\":\"orders-1\",\"uid\":\"u-o1\"}},"
	"{\"addresses\":[\"10.244.0.6\"],\"conditions\":{\"ready\":false},"
	"\"targetRef\":{\"kind\":\"Pod\",\"name\":\"orders-3\"}},"
	"{\"addresses\":[\"10.244.0.7\"],\"conditions\":{},"
	"\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"shop\",\"name\":\"orders-2\"}}],"
	"\"ports\":[{\"name\":\"grpc\",\"port\":9091,\"protocol\":\"TCP\"},"
	"{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}]}";

static const char slice_v6[] =
	"{\"metadata\":{\"name\":\"orders-v6\",\"namespace\":\"shop\",\"labels\":"
	"{\"kubernetes.io/service-name\":\"orders\"}},\"addressType\":\"IPv6\","
	"\"endpoints\":[{\"addresses\":[\"fd00:244::5\"],\"conditions\":{\"ready\":true},"
	"\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"shop\",\"name\":\"orders-1\"}}],"
	"\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}]}";

static const char *pod(char *buf, size_t len, const char *name, const char *labels, const char *ips,
		       const char *phase, const char *ready)
{
	snprintf(buf, len,
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\",\"labels\":{%s}},"
		 "\"spec\":{\"containers\":[{\"name\":\"app\"}]},"
		 "\"status\":{\"phase\":\"%s\",\"conditions\":[{\"type\":\"Initialized\","
		 "\"status\":\"True\"},{\"type\":\"Ready\",\"status\":\"%s\"}],%s}}",
		 name, labels, phase, ready, ips);
	return buf;
}

static void put_pod(const char *name, const char *labels, const char *ips, const char *phase,
		    const char *ready)
{
	char buf[2048];

	put(K8S_POD, pod(buf, sizeof(buf), name, labels, ips, phase, ready));
}

static void put_sbr(const char *name, const char *spec_extra, const char *sandbox)
{
	char buf[4096];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\","
		 "\"creationTimestamp\":\"" T0 "\",\"resourceVersion\":\"7\"},"
		 "\"spec\":{\"service\":{\"name\":\"orders\"%s,\"sandbox\":%s}}",
		 name, spec_extra, sandbox);
	put(K8S_SBR, buf);
}

static const struct k8s_sbr *sbr(const char *id)
{
	const struct k8s_sbr *r = hmap_sget(&c.objs[K8S_SBR], id);

	cr_assert_not_null(r, "no SandboxRoute %s", id);
	return r;
}

static long routes(const char *id, struct k8s_route **out)
{
	long n = k8s_sbr_routes(&c, sbr(id), NOW, out);

	cr_assert_geq(n, 0);
	return n;
}

/* Is there a route (svc, key) -> to among rs? */
static const struct k8s_route *find(const struct k8s_route *rs, long n, const char *svc,
				    const char *key, const char *to)
{
	struct shunt_addr s, t;
	struct shunt_route_key k;

	cr_assert_eq(parse_addr_port(svc, &s), 0, "%s", svc);
	route_key_make(&k, &s, key, strlen(key));
	for (long i = 0; i < n; i++) {
		if (memcmp(&rs[i].k, &k, sizeof(k)))
			continue;
		if (to) {
			cr_assert_eq(parse_addr_port(to, &t), 0, "%s", to);
			cr_assert(addr_equal(&rs[i].v.to, &t), "%s %s goes elsewhere", svc, key);
		}
		return &rs[i];
	}
	return NULL;
}

/* Sandbox addresses may be in 10.244.0.0/16 and fd00:244::/32 (what
 * --sandbox-cidr says). */
static const struct addr_prefix *allow_sandboxes(void)
{
	static struct addr_prefix p[2];

	cr_assert_eq(parse_prefix("10.244.0.0/16", &p[0]), 0);
	cr_assert_eq(parse_prefix("fd00:244::/32", &p[1]), 0);
	c.sandbox_cidrs = p;
	c.n_sandbox_cidrs = 2;
	return p;
}

/* The pods behind slice_v4 and slice_v6 (their targetRefs). */
static void endpoint_pods(void)
{
	put_pod("orders-1", "\"app\":\"orders\"",
		"\"podIP\":\"10.244.0.5\",\"podIPs\":[{\"ip\":\"10.244.0.5\"},{\"ip\":\"fd00:244::"
		"5\"}]",
		"Running", "True");
	put_pod("orders-2", "\"app\":\"orders\"", "\"podIP\":\"10.244.0.7\"", "Running", "False");
}

static void base_cluster(void)
{
	put(K8S_SERVICE, svc_orders);
	put(K8S_SLICE, slice_v4);
	put(K8S_SLICE, slice_v6);
	endpoint_pods();
	put_pod("orders-sbx", "\"app\":\"orders\",\"sandbox\":\"feat-1\"",
		"\"podIP\":\"10.244.1.9\",\"podIPs\":[{\"ip\":\"10.244.1.9\"},{\"ip\":\"fd00:244:1:"
		":9\"}]",
		"Running", "True");
}

#define SEL_FEAT "{\"selector\":{\"matchLabels\":{\"sandbox\":\"feat-1\"}},\"port\":8080}"

/* ---- translation ----------------------------------------------------------- */

Test(k8s, clusterips_and_ready_endpoints)
{
	struct k8s_route *rs;
	long n;

	base_cluster();
	put_sbr("feat-1", ",\"ports\":[80]},\"keys\":[\"feat-1\"]", SEL_FEAT);
	n = routes("shop/feat-1", &rs);
	cr_assert_not_null(find(rs, n, "10.96.0.10:80", "feat-1", "10.244.1.9:8080"));
	cr_assert_not_null(find(rs, n, "[fd00:96::10]:80", "feat-1", "[fd00:244:1::9]:8080"));
	cr_assert_not_null(find(rs, n, "10.244.0.5:8080", "feat-1", "10.244.1.9:8080"));
	/* ready absent counts as ready; ready=false does not */
	cr_assert_not_null(find(rs, n, "10.244.0.7:8080", "feat-1", NULL));
	cr_assert_null(find(rs, n, "10.244.0.6:8080", "feat-1", NULL));
	cr_assert_not_null(find(rs, n, "[fd00:244::5]:8080", "feat-1", NULL));
	cr_assert_eq(n, 5);
	for (long i = 0; i < n; i++) {
		cr_assert_eq(rs[i].v.flags, SHUNT_ROUTE_FROM_K8S);
		cr_assert_eq(rs[i].v.expires_unix, 0);
		cr_assert_eq(rs[i].v.created_unix, T0_S);
	}
	free(rs);
	teardown();
}

Test(k8s, named_ports_and_every_tcp_port)
{
	struct k8s_route *rs;
	long n;

	base_cluster();
	/* No ports: every TCP port (http and grpc, not the UDP one). */
	put_sbr("all", "},\"keys\":[\"k\"]", SEL_FEAT);
	n = routes("shop/all", &rs);
	cr_assert_not_null(find(rs, n, "10.96.0.10:80", "k", NULL));
	cr_assert_not_null(find(rs, n, "10.96.0.10:9090", "k", NULL));
	cr_assert_null(find(rs, n, "10.96.0.10:53", "k", NULL));
	/* the slice's port named like the Service port, not its position */
	cr_assert_not_null(find(rs, n, "10.244.0.5:9091", "k", NULL));
	cr_assert_not_null(find(rs, n, "10.244.0.5:8080", "k", NULL));
	/* the v6 slice has no grpc port */
	cr_assert_null(find(rs, n, "[fd00:244::5]:9091", "k", NULL));
	cr_assert_eq(n, 2 + 2 + 2 + 2 + 1);
	free(rs);

	put_sbr("grpc", ",\"ports\":[9090]},\"keys\":[\"k\"]", SEL_FEAT);
	n = routes("shop/grpc", &rs);
	cr_assert_eq(n, 2 + 2);
	cr_assert_not_null(find(rs, n, "10.244.0.7:9091", "k", NULL));
	free(rs);
	teardown();
}

Test(k8s, single_unnamed_port)
{
	struct k8s_route *rs;
	long n;

	put(K8S_SERVICE, "{\"metadata\":{\"name\":\"orders\",\"namespace\":\"shop\"},"
			 "\"spec\":{\"clusterIP\":\"10.96.0.11\",\"ports\":[{\"port\":80,"
			 "\"targetPort\":8080}]}}");
	/* The slice's only port is named differently: the only port counts. */
	put(K8S_SLICE, "{\"metadata\":{\"name\":\"o1\",\"namespace\":\"shop\",\"labels\":"
		       "{\"kubernetes.io/service-name\":\"orders\"}},\"addressType\":\"IPv4\","
		       "\"endpoints\":[{\"addresses\":[\"10.244.0.8\"],\"targetRef\":{\"kind\":"
		       "\"Pod\",\"name\":\"o-8\"}}],"
		       "\"ports\":[{\"name\":\"x\",\"port\":8081}]}");
	put_pod("o-8", "", "\"podIP\":\"10.244.0.8\"", "Running", "True");
	allow_sandboxes();
	put_sbr("a", "},\"keys\":[\"k\"]", "{\"addresses\":[\"10.244.3.3\"],\"port\":9000}");
	n = routes("shop/a", &rs);
	cr_assert_eq(n, 2);
	cr_assert_not_null(find(rs, n, "10.96.0.11:80", "k", "10.244.3.3:9000"));
	cr_assert_not_null(find(rs, n, "10.244.0.8:8081", "k", "10.244.3.3:9000"));
	free(rs);
	teardown();
}

Test(k8s, headless_service_endpoints_only)
{
	struct k8s_route *rs;
	long n;

	put(K8S_SERVICE, "{\"metadata\":{\"name\":\"orders\",\"namespace\":\"shop\"},"
			 "\"spec\":{\"clusterIP\":\"None\",\"clusterIPs\":[\"None\"],"
			 "\"ports\":[{\"name\":\"http\",\"port\":80}]}}");
	put(K8S_SLICE, slice_v4);
	endpoint_pods();
	allow_sandboxes();
	put_sbr("a", "},\"keys\":[\"k\"]", "{\"addresses\":[\"10.244.3.3\"],\"port\":9000}");
	n = routes("shop/a", &rs);
	cr_assert_eq(n, 2); /* 10.244.0.5 and .7, port 8080 */
	free(rs);
	teardown();
}

Test(k8s, every_key_gets_a_route)
{
	struct k8s_route *rs;
	long n;

	base_cluster();
	put_sbr("keys", ",\"ports\":[80]},\"keys\":[\"a\",\"b-2\",\"c.3\"]", SEL_FEAT);
	n = routes("shop/keys", &rs);
	cr_assert_eq(n, 5 * 3);
	cr_assert_not_null(find(rs, n, "10.96.0.10:80", "a", NULL));
	cr_assert_not_null(find(rs, n, "10.96.0.10:80", "b-2", NULL));
	cr_assert_not_null(find(rs, n, "10.244.0.5:8080", "c.3", NULL));
	free(rs);
	teardown();
}

Test(k8s, selector_expressions)
{
	struct k8s_route *rs;
	long n;

	put(K8S_SERVICE, svc_orders);
	put_pod("p1", "\"app\":\"orders\",\"track\":\"canary\",\"tier\":\"a\"",
		"\"podIP\":\"10.244.1.1\"", "Running", "True");
	put_pod("p2", "\"app\":\"orders\",\"track\":\"stable\"", "\"podIP\":\"10.244.1.2\"",
		"Running", "True");
	put_pod("p3", "\"app\":\"orders\",\"track\":\"canary\"", "\"podIP\":\"10.244.1.3\"",
		"Running", "True");

	/* In + Exists: p1 only */
	put_sbr("in", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"selector\":{\"matchExpressions\":[{\"key\":\"track\",\"operator\":\"In\","
		"\"values\":[\"canary\",\"x\"]},{\"key\":\"tier\",\"operator\":\"Exists\"}]},"
		"\"port\":1}");
	n = routes("shop/in", &rs);
	cr_assert_not_null(find(rs, n, "10.96.0.10:80", "k", "10.244.1.1:1"));
	free(rs);

	/* NotIn + DoesNotExist + matchLabels: p3 (p2 is stable, p1 has tier) */
	put_sbr("notin", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"selector\":{\"matchLabels\":{\"app\":\"orders\"},\"matchExpressions\":["
		"{\"key\":\"track\",\"operator\":\"NotIn\",\"values\":[\"stable\"]},"
		"{\"key\":\"tier\",\"operator\":\"DoesNotExist\"}]},\"port\":1}");
	n = routes("shop/notin", &rs);
	cr_assert_not_null(find(rs, n, "10.96.0.10:80", "k", "10.244.1.3:1"));
	free(rs);

	/* nothing matches: no routes */
	put_sbr("none", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"selector\":{\"matchLabels\":{\"app\":\"nope\"}},\"port\":1}");
	cr_assert_eq(routes("shop/none", &rs), 0);
	free(rs);
	teardown();
}

Test(k8s, readiness_and_lowest_ip)
{
	struct k8s_route *rs;
	long n;

	put(K8S_SERVICE, svc_orders);
	put_pod("s-pending", "\"s\":\"x\"", "\"podIP\":\"10.244.1.1\"", "Pending", "False");
	put_pod("s-unready", "\"s\":\"x\"", "\"podIP\":\"10.244.1.2\"", "Running", "False");
	put_pod("s-noip", "\"s\":\"x\"", "\"podIP\":\"\"", "Running", "True");
	put_pod("s-b", "\"s\":\"x\"", "\"podIP\":\"10.244.1.20\"", "Running", "True");
	put_pod("s-a", "\"s\":\"x\"", "\"podIP\":\"10.244.1.10\"", "Running", "True");
	put_pod("s-done", "\"s\":\"x\"", "\"podIP\":\"10.244.1.3\"", "Succeeded", "True");
	put_sbr("r", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"selector\":{\"matchLabels\":{\"s\":\"x\"}},\"port\":8080}");
	n = routes("shop/r", &rs);
	/* v4 ClusterIP only: no v6 sandbox, so no route for the v6 one */
	cr_assert_eq(n, 1);
	cr_assert_not_null(find(rs, n, "10.96.0.10:80", "k", "10.244.1.10:8080"));
	cr_assert_null(find(rs, n, "[fd00:96::10]:80", "k", NULL));
	free(rs);

	/* none ready: no routes at all */
	put_pod("s-a", "\"s\":\"x\"", "\"podIP\":\"10.244.1.10\"", "Running", "False");
	put_pod("s-b", "\"s\":\"y\"", "\"podIP\":\"10.244.1.20\"", "Running", "True");
	cr_assert_eq(routes("shop/r", &rs), 0);
	free(rs);
	teardown();
}

Test(k8s, families_match)
{
	struct k8s_route *rs;
	long n;

	base_cluster();
	allow_sandboxes();
	/* Only a v6 sandbox address: only the v6 captured addresses. */
	put_sbr("v6", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"addresses\":[\"fd00:244:9::1\",\"fd00:244:9::2\"],\"port\":8080}");
	n = routes("shop/v6", &rs);
	cr_assert_eq(n, 2);
	cr_assert_not_null(find(rs, n, "[fd00:96::10]:80", "k", "[fd00:244:9::1]:8080"));
	cr_assert_not_null(find(rs, n, "[fd00:244::5]:8080", "k", "[fd00:244:9::1]:8080"));
	free(rs);

	/* Both: the first address of each family. */
	put_sbr("both", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"addresses\":[\"fd00:244:9::1\",\"10.244.9.1\",\"10.244.9.0\"],\"port\":8080}");
	n = routes("shop/both", &rs);
	cr_assert_eq(n, 5);
	cr_assert_not_null(find(rs, n, "10.96.0.10:80", "k", "10.244.9.1:8080"));
	free(rs);
	teardown();
}

Test(k8s, ttl_and_fallback)
{
	struct k8s_route *rs;
	long n;

	base_cluster();
	put_sbr("ttl",
		",\"ports\":[80]},\"keys\":[\"k\"],\"ttl\":\"1h30m\","
		"\"fallback\":\"baseline\"",
		SEL_FEAT);
	n = routes("shop/ttl", &rs);
	cr_assert_eq(n, 5);
	cr_assert_eq(rs[0].v.expires_unix, T0_S + 5400);
	cr_assert_eq(rs[0].v.flags, SHUNT_ROUTE_FROM_K8S | SHUNT_ROUTE_FALLBACK_BASELINE);
	free(rs);

	/* created at T0 with 90m: gone at T0 + 5400 exactly */
	cr_assert_eq(k8s_sbr_routes(&c, sbr("shop/ttl"), T0_S + 5400, &rs), 0);
	free(rs);
	cr_assert_eq(k8s_sbr_routes(&c, sbr("shop/ttl"), T0_S + 5399, &rs), 5);
	free(rs);

	/* already expired when seen */
	put_sbr("old", ",\"ports\":[80]},\"keys\":[\"k\"],\"ttl\":\"60s\"", SEL_FEAT);
	cr_assert_eq(routes("shop/old", &rs), 0);
	free(rs);
	teardown();
}

Test(k8s, missing_service_no_routes)
{
	struct k8s_route *rs;

	put_pod("s", "\"s\":\"x\"", "\"podIP\":\"10.244.1.1\"", "Running", "True");
	put_sbr("r", "},\"keys\":[\"k\"]",
		"{\"selector\":{\"matchLabels\":{\"s\":\"x\"}},\"port\":1}");
	cr_assert_eq(routes("shop/r", &rs), 0);
	free(rs);
	teardown();
}

Test(k8s, invalid_objects_refused)
{
	char big[2048];

	refused(K8S_SBR, "[]", "not a JSON object");
	refused(K8S_SBR, "{\"metadata\":{\"name\":\"x\"},\"spec\":{}}", "metadata.name/namespace");
	refused(K8S_SBR, "{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"}}", "spec:");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"7},\"keys\":[\"k\"],\"sandbox\":{\"addresses\":[\"1.2.3.4\"],\"port\":1}}}",
		"spec.service.name");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"a,b\"],\"sandbox\":{\"addresses\":[\"1.2.3.4\"],\"port\":1}}}",
		"spec.keys[0]");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[],\"sandbox\":{\"addresses\":[\"1.2.3.4\"],\"port\":1}}}",
		"spec.keys");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\","
		"\"11\","
		"\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"],\"sandbox\":{\"addresses\":[\"1.2.3."
		"4\"],"
		"\"port\":1}}}",
		"spec.keys");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"addresses\":[\"1.2.3.4\"],\"port\":70000}}"
		"}",
		"spec.sandbox.port");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"addresses\":[\"1.2.3.4\"],\"port\":\"80\"}}"
		"}",
		"spec.sandbox.port");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"addresses\":[\"1.2.3.4\"],\"selector\":"
		"{\"matchLabels\":{\"a\":\"b\"}},\"port\":1}}}",
		"exactly one of selector and addresses");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"selector\":{},\"port\":1}}}",
		"empty");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"selector\":{\"matchExpressions\":[{\"key\":"
		"\"a\",\"operator\":\"Maybe\"}]},\"port\":1}}}",
		"operator");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"selector\":{\"matchExpressions\":[{\"key\":"
		"\"a\",\"operator\":\"In\"}]},\"port\":1}}}",
		"values: required");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"addresses\":[\"10.0.0.1:80\"],\"port\":1}}"
		"}",
		"spec.sandbox.addresses[0]");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\",\"creationTimestamp\":\"" T0
		"\"},\"spec\":{\"service\":{\"name\":\"o\"},\"keys\":[\"k\"],\"sandbox\":"
		"{\"addresses\":[\"1.2.3.4\"],\"port\":1},\"ttl\":\"8 hours\"}}",
		"spec.ttl");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"addresses\":[\"1.2.3.4\"],\"port\":1},"
		"\"ttl\":\"8h\"}}",
		"creationTimestamp");
	refused(K8S_SBR,
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"s\"},\"spec\":{\"service\":{"
		"\"name\":"
		"\"o\"},\"keys\":[\"k\"],\"sandbox\":{\"addresses\":[\"1.2.3.4\"],\"port\":1},"
		"\"fallback\":\"maybe\"}}",
		"spec.fallback");
	/* a huge value: a label longer than the API allows */
	memset(big, 'a', 500);
	big[500] = '\0';
	{
		char buf[4096];

		snprintf(buf, sizeof(buf),
			 "{\"metadata\":{\"name\":\"p\",\"namespace\":\"s\",\"labels\":{\"a\":"
			 "\"%s\"}},\"status\":{}}",
			 big);
		refused(K8S_POD, buf, "metadata.labels.a");
		snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"s\"}}",
			 big);
		refused(K8S_SERVICE, buf, "metadata.name");
	}
	refused(K8S_SERVICE,
		"{\"metadata\":{\"name\":\"o\",\"namespace\":\"s\"},\"spec\":{\"clusterIP\":"
		"\"10.0.0.300\"}}",
		"not an IP address");
	refused(K8S_SLICE,
		"{\"metadata\":{\"name\":\"o\",\"namespace\":\"s\"},\"addressType\":\"IPv4\","
		"\"endpoints\":[{\"addresses\":[\"fd00::1\"]}]}",
		"endpoints[0].addresses[0]");
	refused(K8S_SLICE,
		"{\"metadata\":{\"name\":\"o\",\"namespace\":\"s\"},\"addressType\":\"IPv4\","
		"\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"conditions\":{\"ready\":\"yes\"}}]"
		"}",
		"ready");
	refused(K8S_POD,
		"{\"metadata\":{\"name\":\"p\",\"namespace\":\"s\"},\"status\":{\"podIPs\":[{"
		"\"ip\":"
		"\"1.1.1.1\"},{\"ip\":\"::1\"},{\"ip\":\"2.2.2.2\"}]}}",
		"status.podIPs");
	/* Nothing refused made it into the cache. */
	cr_assert_eq(c.objs[K8S_SBR].n, 0);
	cr_assert_eq(c.objs[K8S_POD].n, 0);
	cr_assert_eq(c.objs[K8S_SERVICE].n, 0);
	teardown();
}

Test(k8s, fqdn_slice_and_fields_ignored)
{
	/* FQDN slices and unknown fields are fine, they just add nothing. */
	put(K8S_SLICE, "{\"metadata\":{\"name\":\"f\",\"namespace\":\"s\",\"labels\":"
		       "{\"kubernetes.io/service-name\":\"o\"}},\"addressType\":\"FQDN\","
		       "\"endpoints\":[{\"addresses\":[\"a.example.com\"]}],\"extra\":[1,2]}");
	cr_assert_eq(((struct k8s_slice *)hmap_sget(&c.objs[K8S_SLICE], "s/f"))->naddrs, 0);
	teardown();
}

/* ---- incremental cache ---------------------------------------------------- */

static long take(struct k8s_op **ops)
{
	long n;

	cr_assert_eq(k8s_cache_recompute(&c, NOW), 0);
	n = k8s_cache_changes(&c, false, ops);
	cr_assert_geq(n, 0);
	return n;
}

static size_t count_ops(const struct k8s_op *ops, long n, bool del)
{
	size_t m = 0;

	for (long i = 0; i < n; i++)
		m += ops[i].del == del;
	return m;
}

Test(k8s, changes_are_incremental)
{
	struct k8s_op *ops;
	long n;

	base_cluster();
	put_sbr("feat-1", ",\"ports\":[80]},\"keys\":[\"feat-1\"]", SEL_FEAT);
	n = take(&ops);
	cr_assert_eq(n, 5);
	cr_assert_eq(count_ops(ops, n, false), 5);
	cr_assert_eq(c.nroutes, 5);
	free(ops);

	/* Nothing changed: nothing to report. */
	endpoint_pods();
	put(K8S_SERVICE, svc_orders);
	n = take(&ops);
	cr_assert_eq(n, 0);
	free(ops);

	/* A new baseline endpoint: one put. */
	put_pod("orders-9", "\"app\":\"orders\"", "\"podIP\":\"10.244.0.99\"", "Running", "True");
	put(K8S_SLICE, "{\"metadata\":{\"name\":\"orders-2\",\"namespace\":\"shop\",\"labels\":"
		       "{\"kubernetes.io/service-name\":\"orders\"}},\"addressType\":\"IPv4\","
		       "\"endpoints\":[{\"addresses\":[\"10.244.0.99\"],\"targetRef\":{\"kind\":"
		       "\"Pod\",\"namespace\":\"shop\",\"name\":\"orders-9\"}}],"
		       "\"ports\":[{\"name\":\"http\",\"port\":8080}]}");
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert_not(ops[0].del);
	free(ops);

	/* The sandbox becomes unready: every route goes. */
	put_pod("orders-sbx", "\"app\":\"orders\",\"sandbox\":\"feat-1\"",
		"\"podIP\":\"10.244.1.9\",\"podIPs\":[{\"ip\":\"10.244.1.9\"},{\"ip\":\"fd00:244:1:"
		":9\"}]",
		"Running", "False");
	n = take(&ops);
	cr_assert_eq(n, 6);
	cr_assert_eq(count_ops(ops, n, true), 6);
	cr_assert_eq(c.nroutes, 0);
	free(ops);

	/* A full resync lists everything desired (now nothing). */
	cr_assert_eq(k8s_cache_changes(&c, true, &ops), 0);
	free(ops);
	teardown();
}

Test(k8s, conflict_smallest_name_wins)
{
	struct k8s_op *ops;
	long n;

	put(K8S_SERVICE, "{\"metadata\":{\"name\":\"orders\",\"namespace\":\"shop\"},"
			 "\"spec\":{\"clusterIP\":\"10.96.0.11\",\"ports\":[{\"port\":80}]}}");
	allow_sandboxes();
	put_sbr("b", "},\"keys\":[\"k\"]", "{\"addresses\":[\"10.244.3.2\"],\"port\":1}");
	put_sbr("a", "},\"keys\":[\"k\"]", "{\"addresses\":[\"10.244.3.1\"],\"port\":1}");
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert_not_null(find(&ops[0].r, 1, "10.96.0.11:80", "k", "10.244.3.1:1"));
	free(ops);

	/* The winner goes: the other one takes over. */
	cr_assert_eq(k8s_cache_del(&c, K8S_SBR, "shop/a"), 0);
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert_not(ops[0].del);
	cr_assert_not_null(find(&ops[0].r, 1, "10.96.0.11:80", "k", "10.244.3.2:1"));
	free(ops);

	cr_assert_eq(k8s_cache_del(&c, K8S_SBR, "shop/b"), 0);
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert(ops[0].del);
	free(ops);
	cr_assert_eq(c.desired.n, 0);
	teardown();
}

Test(k8s, relist_replaces_a_kind)
{
	struct k8s_op *ops;
	struct hmap fresh = {};
	void *svc;
	long n;
	struct json_object *o;

	base_cluster();
	put_sbr("feat-1", ",\"ports\":[80]},\"keys\":[\"feat-1\"]", SEL_FEAT);
	n = take(&ops);
	free(ops);
	cr_assert_eq(n, 5);

	/* The relisted Services: orders is gone. */
	o = json_tokener_parse("{\"metadata\":{\"name\":\"other\",\"namespace\":\"shop\"}}");
	cr_assert_eq(k8s_decode(K8S_SERVICE, o, &svc, err, sizeof(err)), 0);
	json_object_put(o);
	cr_assert_eq(hmap_put(&fresh, "shop/other", 10, svc, NULL), 0);
	cr_assert_eq(k8s_cache_replace(&c, K8S_SERVICE, &fresh), 0);
	n = take(&ops);
	cr_assert_eq(count_ops(ops, n, true), 5);
	free(ops);
	cr_assert_eq(c.objs[K8S_SERVICE].n, 1);
	teardown();
}

Test(k8s, deadline_is_tracked)
{
	struct k8s_op *ops;
	long n;

	base_cluster();
	put_sbr("ttl", ",\"ports\":[80]},\"keys\":[\"k\"],\"ttl\":\"2h\"", SEL_FEAT);
	n = take(&ops);
	free(ops);
	cr_assert_eq(n, 5);
	cr_assert_eq(c.next_deadline, T0_S + 7200);
	cr_assert_not(k8s_cache_pending(&c, T0_S + 7199));
	cr_assert(k8s_cache_pending(&c, T0_S + 7200));
	cr_assert_eq(k8s_cache_recompute(&c, T0_S + 7200), 0);
	n = k8s_cache_changes(&c, false, &ops);
	cr_assert_eq(count_ops(ops, n, true), 5);
	free(ops);
	cr_assert_eq(c.next_deadline, 0);
	teardown();
}

/* ---- small parsers ------------------------------------------------------ */

/* ---- SandboxOverrides ------------------------------------------------------ */

/* The injected cgroup lookup: "uid-a" -> 1001, "uid-c" -> 1003, others
 * none yet. */
static int fake_cgroup(void *ud, const char *uid, uint64_t *id)
{
	(void)ud;
	if (!strcmp(uid, "uid-a"))
		*id = 1001;
	else if (!strcmp(uid, "uid-c"))
		*id = 1003;
	else
		return -ENOENT;
	return 0;
}

static void sbo_setup(void)
{
	c.node = "node-1";
	c.cgroup_of = fake_cgroup;
	base_cluster();
}

static void put_client(const char *name, const char *uid, const char *node)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\",\"uid\":\"%s\","
		 "\"labels\":{\"app\":\"checkout\",\"sandbox\":\"feat-1\"}},"
		 "\"spec\":{\"nodeName\":\"%s\"},\"status\":{\"phase\":\"Pending\"}}",
		 name, uid, node);
	put(K8S_POD, buf);
}

static void put_sbo(const char *name, const char *dst, const char *to, const char *extra)
{
	char buf[2048];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\","
		 "\"creationTimestamp\":\"" T0 "\"},"
		 "\"spec\":{\"podSelector\":{\"matchLabels\":{\"app\":\"checkout\"}},"
		 "\"destination\":%s,\"to\":%s%s}}",
		 name, dst, to, extra);
	put(K8S_SBO, buf);
}

static long sbo_overrides(const char *id, struct k8s_override **out, size_t *unresolved)
{
	const struct k8s_sbo *o = hmap_sget(&c.objs[K8S_SBO], id);
	long n;

	cr_assert_not_null(o, "no SandboxOverride %s", id);
	*unresolved = 0;
	n = k8s_sbo_overrides(&c, o, NOW, out, unresolved);
	cr_assert_geq(n, 0);
	return n;
}

/* Is there an override from cgroup cg to dst -> to among os? */
static const struct k8s_override *find_ovr(const struct k8s_override *os, long n, uint64_t cg,
					   const char *dst, const char *to)
{
	struct shunt_addr d, t;

	cr_assert_eq(parse_addr_port(dst, &d), 0, "%s", dst);
	cr_assert_eq(parse_addr_port(to, &t), 0, "%s", to);
	for (long i = 0; i < n; i++)
		if (os[i].k.src_kind == SHUNT_SRC_CGROUP && os[i].k.src_id == cg &&
		    addr_equal(&os[i].k.dst, &d)) {
			cr_assert(addr_equal(&os[i].v.to, &t), "%s goes elsewhere", dst);
			return &os[i];
		}
	return NULL;
}

Test(k8s_sbo, service_destination_selector_target)
{
	struct k8s_override *os;
	size_t unres;
	long n;

	sbo_setup();
	put_client("checkout-1", "uid-a", "node-1");
	put_client("checkout-2", "uid-b", "node-1"); /* no cgroup yet */
	put_client("checkout-3", "uid-c", "node-2"); /* another node's */
	put_sbo("db", "{\"service\":\"orders\",\"port\":80}",
		"{\"selector\":{\"matchLabels\":{\"sandbox\":\"feat-1\",\"app\":\"orders\"}},"
		"\"port\":5432}",
		",\"ttl\":\"8h\"");
	n = sbo_overrides("shop/db", &os, &unres);
	/* ClusterIPs at the Service port, ready endpoints at the target port;
	 * each to the target of its family. */
	cr_assert_not_null(find_ovr(os, n, 1001, "10.96.0.10:80", "10.244.1.9:5432"));
	cr_assert_not_null(find_ovr(os, n, 1001, "[fd00:96::10]:80", "[fd00:244:1::9]:5432"));
	cr_assert_not_null(find_ovr(os, n, 1001, "10.244.0.5:8080", "10.244.1.9:5432"));
	cr_assert_not_null(find_ovr(os, n, 1001, "10.244.0.7:8080", "10.244.1.9:5432"));
	cr_assert_not_null(find_ovr(os, n, 1001, "[fd00:244::5]:8080", "[fd00:244:1::9]:5432"));
	cr_assert_eq(n, 5);
	cr_assert_eq(unres, 1);
	for (long i = 0; i < n; i++) {
		cr_assert_eq(os[i].v.flags, SHUNT_ROUTE_FROM_K8S);
		cr_assert_eq(os[i].v.created_unix, T0_S);
		cr_assert_eq(os[i].v.expires_unix, T0_S + 8 * 3600);
		cr_assert_str_eq(os[i].v.from, "k8s:shop/db pod checkout-1");
	}
	free(os);
	/* Port 81 is not a port of the Service: nothing. */
	put_sbo("db", "{\"service\":\"orders\",\"port\":81}",
		"{\"addresses\":[\"10.1.1.1\"],\"port\":1}", "");
	n = sbo_overrides("shop/db", &os, &unres);
	cr_assert_eq(n, 0);
	free(os);
	teardown();
}

Test(k8s_sbo, addresses_service_target_and_ttl)
{
	struct k8s_override *os;
	size_t unres;
	long n;

	sbo_setup();
	put_client("checkout-1", "uid-a", "node-1");
	/* to a Service: its ready endpoint with the lowest address, at the
	 * target port of the Service port given */
	put_sbo("a", "{\"addresses\":[\"10.211.0.20\",\"fd00::20\"],\"port\":8080}",
		"{\"service\":\"orders\",\"port\":80}", "");
	n = sbo_overrides("shop/a", &os, &unres);
	cr_assert_eq(n, 2);
	cr_assert_not_null(find_ovr(os, n, 1001, "10.211.0.20:8080", "10.244.0.5:8080"));
	cr_assert_not_null(find_ovr(os, n, 1001, "[fd00::20]:8080", "[fd00:244::5]:8080"));
	free(os);
	/* addresses to addresses: the first of each family; none of v6 -> no
	 * override for the v6 destination */
	put_sbo("a", "{\"addresses\":[\"10.211.0.20\",\"fd00::20\"],\"port\":8080}",
		"{\"addresses\":[\"10.211.0.30\",\"10.211.0.31\"],\"port\":9090}", "");
	n = sbo_overrides("shop/a", &os, &unres);
	cr_assert_eq(n, 1);
	cr_assert_not_null(find_ovr(os, n, 1001, "10.211.0.20:8080", "10.211.0.30:9090"));
	cr_assert_eq(os[0].v.expires_unix, 0);
	free(os);
	/* expired: nothing */
	put_sbo("a", "{\"addresses\":[\"10.211.0.20\"],\"port\":8080}",
		"{\"addresses\":[\"10.211.0.30\"],\"port\":8080}", ",\"ttl\":\"5m\"");
	n = sbo_overrides("shop/a", &os, &unres);
	cr_assert_eq(n, 0);
	free(os);
	teardown();
}

static long ovr_changes(bool full, struct k8s_ovr_op **ops)
{
	long n;

	cr_assert_eq(k8s_cache_recompute(&c, NOW), 0);
	n = k8s_cache_ovr_changes(&c, full, ops);
	cr_assert_geq(n, 0);
	return n;
}

Test(k8s_sbo, changes_follow_pods_and_objects)
{
	struct k8s_ovr_op *ops;
	long n;

	sbo_setup();
	put_client("checkout-1", "uid-a", "node-1");
	put_client("checkout-2", "uid-b", "node-1");
	put_sbo("a", "{\"addresses\":[\"10.211.0.20\"],\"port\":8080}",
		"{\"addresses\":[\"10.211.0.30\"],\"port\":8080}", "");
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 1);
	cr_assert(!ops[0].del);
	cr_assert_eq(ops[0].o.k.src_id, 1001);
	free(ops);
	cr_assert_eq(c.ovr_unresolved, 1);
	/* nothing changed: nothing to report */
	cr_assert(!k8s_cache_pending(&c, NOW));
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 0);
	free(ops);
	/* the pending pod got its cgroup (uid-c now) */
	put_client("checkout-2", "uid-c", "node-1");
	cr_assert(k8s_cache_pending(&c, NOW));
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 1);
	cr_assert_eq(ops[0].o.k.src_id, 1003);
	free(ops);
	cr_assert_eq(c.ovr_unresolved, 0);
	/* a pod that has ended has no cgroup to look for */
	put(K8S_POD, "{\"metadata\":{\"name\":\"checkout-9\",\"namespace\":\"shop\","
		     "\"uid\":\"uid-z\",\"labels\":{\"app\":\"checkout\"}},"
		     "\"spec\":{\"nodeName\":\"node-1\"},\"status\":{\"phase\":\"Succeeded\"}}");
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 0);
	free(ops);
	cr_assert_eq(c.ovr_unresolved, 0);
	/* a full resync reports every override */
	n = ovr_changes(true, &ops);
	cr_assert_eq(n, 2);
	free(ops);
	/* a pod goes: its override goes */
	cr_assert_eq(k8s_cache_del(&c, K8S_POD, "shop/checkout-1"), 0);
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 1);
	cr_assert(ops[0].del);
	cr_assert_eq(ops[0].o.k.src_id, 1001);
	free(ops);
	/* the target changes: a put with the new value */
	put_sbo("a", "{\"addresses\":[\"10.211.0.20\"],\"port\":8080}",
		"{\"addresses\":[\"10.211.0.31\"],\"port\":8080}", "");
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 1);
	cr_assert(!ops[0].del);
	cr_assert_eq(ops[0].o.v.to.addr[3], 31);
	free(ops);
	/* the SandboxOverride goes: so does the override */
	cr_assert_eq(k8s_cache_del(&c, K8S_SBO, "shop/a"), 0);
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 1);
	cr_assert(ops[0].del);
	free(ops);
	teardown();
}

Test(k8s_sbo, conflict_older_wins)
{
	struct k8s_ovr_op *ops;
	struct k8s_problem *pv;
	long n;

	sbo_setup();
	put_client("checkout-1", "uid-a", "node-1");
	/* b is older, a sorts first. */
	put(K8S_SBO, "{\"metadata\":{\"name\":\"b\",\"namespace\":\"shop\","
		     "\"creationTimestamp\":\"2026-11-18T08:00:00Z\"},\"spec\":{\"podSelector\":"
		     "{\"matchLabels\":{\"app\":\"checkout\"}},\"destination\":{\"addresses\":"
		     "[\"10.211.0.20\"],\"port\":8080},\"to\":{\"addresses\":[\"10.211.0.32\"],"
		     "\"port\":8080}}}");
	put_sbo("a", "{\"addresses\":[\"10.211.0.20\"],\"port\":8080}",
		"{\"addresses\":[\"10.211.0.31\"],\"port\":8080}", "");
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 1);
	cr_assert_eq(ops[0].o.v.to.addr[3], 32);
	cr_assert_str_eq(ops[0].o.v.from, "k8s:shop/b pod checkout-1");
	free(ops);
	n = k8s_cache_problems(&c, &pv);
	cr_assert_eq(n, 1);
	cr_assert_eq(pv[0].kind, K8S_SBO);
	cr_assert_eq(pv[0].why, K8S_WHY_CONFLICT);
	cr_assert_str_eq(pv[0].id, "shop/a");
	cr_assert_str_eq(pv[0].other, "shop/b");
	cr_assert_eq(pv[0].n, 1);
	free(pv);
	/* The older one goes: the other takes over, nothing lost. */
	cr_assert_eq(k8s_cache_del(&c, K8S_SBO, "shop/b"), 0);
	n = ovr_changes(false, &ops);
	cr_assert_eq(n, 1);
	cr_assert_eq(ops[0].o.v.to.addr[3], 31);
	free(ops);
	cr_assert_eq(k8s_cache_problems(&c, &pv), 0);
	free(pv);
	teardown();
}

Test(k8s_sbo, invalid_refused)
{
	static const char meta[] = "{\"metadata\":{\"name\":\"x\",\"namespace\":\"shop\"},";

	char buf[1024];

#define SBO(spec) (snprintf(buf, sizeof(buf), "%s\"spec\":%s}", meta, spec), buf)
	refused(K8S_SBO,
		SBO("{\"podSelector\":{},\"destination\":{\"service\":\"a\",\"port\":1},"
		    "\"to\":{\"service\":\"b\",\"port\":1}}"),
		"spec.podSelector: empty");
	refused(K8S_SBO,
		SBO("{\"podSelector\":{\"matchLabels\":{\"a\":\"b\"}},\"destination\":"
		    "{\"service\":\"a\",\"addresses\":[\"10.0.0.1\"],\"port\":1},"
		    "\"to\":{\"service\":\"b\",\"port\":1}}"),
		"spec.destination: exactly one");
	refused(K8S_SBO,
		SBO("{\"podSelector\":{\"matchLabels\":{\"a\":\"b\"}},\"destination\":"
		    "{\"service\":\"a\"},\"to\":{\"service\":\"b\",\"port\":1}}"),
		"spec.destination.port");
	refused(K8S_SBO,
		SBO("{\"podSelector\":{\"matchLabels\":{\"a\":\"b\"}},\"destination\":"
		    "{\"service\":\"a\",\"port\":1},\"to\":{\"selector\":{\"matchLabels\":"
		    "{\"a\":\"b\"}},\"addresses\":[\"10.0.0.1\"],\"port\":1}}"),
		"spec.to: exactly one");
	refused(K8S_SBO,
		SBO("{\"podSelector\":{\"matchLabels\":{\"a\":\"b\"}},\"destination\":"
		    "{\"addresses\":[\"10.0.0.1\",\"nope\"],\"port\":1},\"to\":{\"service\":"
		    "\"b\",\"port\":1}}"),
		"spec.destination.addresses[1]");
	refused(K8S_SBO,
		SBO("{\"podSelector\":{\"matchExpressions\":[{\"key\":\"a\",\"operator\":"
		    "\"In\"}]},\"destination\":{\"service\":\"a\",\"port\":1},"
		    "\"to\":{\"service\":\"b\",\"port\":1}}"),
		"spec.podSelector.matchExpressions[0].values: required");
	refused(K8S_SBO,
		SBO("{\"podSelector\":{\"matchLabels\":{\"a\":\"b\"}},\"destination\":"
		    "{\"service\":\"a\",\"port\":1},\"to\":{\"service\":\"b\",\"port\":1},"
		    "\"ttl\":\"8h\"}"),
		"creationTimestamp");
#undef SBO
	teardown();
}

/* ---- tenancy: slices, sandbox addresses, conflicts, quota -------------------- */

/* A SandboxRoute in any namespace, created at created (RFC 3339). */
static void put_sbr_in(const char *ns, const char *name, const char *created, const char *service,
		       const char *keys, const char *sandbox)
{
	char buf[4096];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\","
		 "\"creationTimestamp\":\"%s\"},"
		 "\"spec\":{\"service\":{\"name\":\"%s\"},\"keys\":[%s],\"sandbox\":%s}}",
		 name, ns, created, service, keys, sandbox);
	put(K8S_SBR, buf);
}

/* A ready Pod in any namespace, labelled app=app. */
static void put_pod_in(const char *ns, const char *name, const char *app, const char *ip,
		       const char *phase)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\",\"labels\":{\"app\":\"%s\"}},"
		 "\"status\":{\"phase\":\"%s\",\"conditions\":[{\"type\":\"Ready\",\"status\":"
		 "\"True\"}],\"podIP\":\"%s\"}}",
		 name, ns, app, phase, ip);
	put(K8S_POD, buf);
}

/* A slice of Service ns/svc with one endpoint ip, its targetRef ref
 * (JSON, or "" for none). */
static void put_slice_in(const char *ns, const char *name, const char *svc, const char *ip,
			 const char *ref)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\",\"labels\":"
		 "{\"kubernetes.io/service-name\":\"%s\"}},\"addressType\":\"IPv4\","
		 "\"endpoints\":[{\"addresses\":[\"%s\"]%s%s}],"
		 "\"ports\":[{\"name\":\"http\",\"port\":8080}]}",
		 name, ns, svc, ip, ref[0] ? ",\"targetRef\":" : "", ref);
	put(K8S_SLICE, buf);
}

static void put_service_in(const char *ns, const char *name, const char *cip)
{
	char buf[512];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"},"
		 "\"spec\":{\"clusterIP\":\"%s\",\"ports\":[{\"name\":\"http\",\"port\":80}]}}",
		 name, ns, cip);
	put(K8S_SERVICE, buf);
}

/* A put of (svc, key) -> to among ops. */
static const struct k8s_op *find_op(const struct k8s_op *ops, long n, const char *svc,
				    const char *key, const char *to)
{
	for (long i = 0; i < n; i++)
		if (!ops[i].del && find(&ops[i].r, 1, svc, key, to))
			return &ops[i];
	return NULL;
}

static struct k8s_problem *problems(long *n)
{
	struct k8s_problem *v;

	*n = k8s_cache_problems(&c, &v);
	cr_assert_geq(*n, 0);
	return v;
}

static const struct k8s_problem *find_problem(const struct k8s_problem *v, long n, enum k8s_why why,
					      const char *id)
{
	for (long i = 0; i < n; i++)
		if (v[i].why == why && !strcmp(v[i].id, id))
			return &v[i];
	return NULL;
}

#define SEL_X "{\"selector\":{\"matchLabels\":{\"app\":\"x\"}},\"port\":8080}"

/* Finding 2 of issue 9: a namespace that may write EndpointSlices makes a
 * selector-less Service and a slice listing another namespace's pod IP. */
Test(tenancy, slice_address_counts_only_with_its_pod)
{
	struct k8s_route *rs;
	struct k8s_op *ops;
	struct k8s_problem *pv;
	long n;

	base_cluster(); /* shop/orders-1 is 10.244.0.5 */
	put_service_in("evil", "web", "10.96.6.6");
	put_pod_in("evil", "evil-sbx", "x", "10.244.6.6", "Running");
	/* A made-up pod name, a pod of another namespace, a pod of its own
	 * with another address, and no targetRef at all. */
	put_slice_in("evil", "web-1", "web", "10.244.0.5",
		     "{\"kind\":\"Pod\",\"namespace\":\"evil\",\"name\":\"made-up\"}");
	put_slice_in("evil", "web-2", "web", "10.244.0.5",
		     "{\"kind\":\"Pod\",\"namespace\":\"shop\",\"name\":\"orders-1\"}");
	put_slice_in("evil", "web-3", "web", "10.244.0.5",
		     "{\"kind\":\"Pod\",\"namespace\":\"evil\",\"name\":\"evil-sbx\"}");
	put_slice_in("evil", "web-4", "web", "10.244.0.5", "");
	put_slice_in("evil", "web-5", "web", "10.244.0.5",
		     "{\"kind\":\"Node\",\"namespace\":\"evil\",\"name\":\"evil-sbx\"}");
	put_sbr_in("evil", "steal", T0, "web", "\"feat-1\"", SEL_X);
	n = routes("evil/steal", &rs);
	/* Its own ClusterIP only. */
	cr_assert_eq(n, 1, "%ld routes", n);
	cr_assert_not_null(find(rs, n, "10.96.6.6:80", "feat-1", "10.244.6.6:8080"));
	free(rs);
	/* shop's route for the same key stays shop's. */
	put_sbr("feat-1", ",\"ports\":[80]},\"keys\":[\"feat-1\"]", SEL_FEAT);
	free((take(&ops), ops));
	cr_assert_eq(k8s_cache_recompute(&c, NOW), 0);
	n = k8s_cache_changes(&c, true, &ops);
	{
		bool shop = false;

		for (long i = 0; i < n; i++) {
			struct shunt_addr base;

			cr_assert_eq(parse_addr("10.244.0.5", &base), 0);
			if (!memcmp(ops[i].r.k.service.addr, base.addr, 4) &&
			    !strcmp(ops[i].r.k.key, "feat-1")) {
				cr_assert_str_eq(ops[i].owner, "shop/feat-1");
				shop = true;
			}
		}
		cr_assert(shop, "shop's route for its own pod is gone");
	}
	free(ops);
	/* Reported: the slices of a Service a SandboxRoute uses. */
	pv = problems(&n);
	{
		const struct k8s_problem *p = find_problem(pv, n, K8S_WHY_ENDPOINTS, "evil/web-1");

		cr_assert_not_null(p);
		cr_assert_eq(p->kind, K8S_SLICE);
		cr_assert_eq(p->n, 1);
		cr_assert_str_eq(p->detail, "10.244.0.5");
		for (int i = 2; i <= 5; i++) {
			char id[32];

			snprintf(id, sizeof(id), "evil/web-%d", i);
			cr_assert_not_null(find_problem(pv, n, K8S_WHY_ENDPOINTS, id), "%s", id);
		}
	}
	/* shop's own slices count: nothing about them. */
	cr_assert_null(find_problem(pv, n, K8S_WHY_ENDPOINTS, "shop/orders-abc"));
	free(pv);
	teardown();
}

/* A slice address counts once its pod is there, and no more once the pod
 * has ended (its IP may be another pod's by then). */
Test(tenancy, pod_changes_translate_again)
{
	struct k8s_op *ops;
	long n;

	put_service_in("shop", "api", "10.96.1.1");
	put_pod_in("shop", "api-sbx", "x", "10.244.7.7", "Running");
	put_slice_in("shop", "api-1", "api", "10.244.1.1",
		     "{\"kind\":\"Pod\",\"namespace\":\"shop\",\"name\":\"api-0\"}");
	put_sbr_in("shop", "r", T0, "api", "\"k\"", SEL_X);
	n = take(&ops);
	cr_assert_eq(n, 1); /* the ClusterIP */
	free(ops);
	/* The pod arrives after its slice (a watch delivers them apart). */
	put_pod_in("shop", "api-0", "y", "10.244.1.1", "Pending");
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert_not(ops[0].del);
	cr_assert_not_null(find(&ops[0].r, 1, "10.244.1.1:8080", "k", "10.244.7.7:8080"));
	cr_assert_str_eq(ops[0].owner, "shop/r");
	free(ops);
	/* Its IP changes: the slice still names the old one. */
	put_pod_in("shop", "api-0", "y", "10.244.1.2", "Running");
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert(ops[0].del);
	free(ops);
	put_pod_in("shop", "api-0", "y", "10.244.1.1", "Running");
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert_not(ops[0].del);
	free(ops);
	/* Ended. */
	put_pod_in("shop", "api-0", "y", "10.244.1.1", "Succeeded");
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert(ops[0].del);
	free(ops);
	/* Back, then deleted. */
	put_pod_in("shop", "api-0", "y", "10.244.1.1", "Running");
	free((take(&ops), ops));
	cr_assert_eq(k8s_cache_del(&c, K8S_POD, "shop/api-0"), 0);
	n = take(&ops);
	cr_assert_eq(n, 1);
	cr_assert(ops[0].del);
	free(ops);
	/* A relist of the pods checks every slice again. */
	{
		struct hmap fresh = {};
		struct json_object *o = json_tokener_parse(
			"{\"metadata\":{\"name\":\"api-0\",\"namespace\":\"shop\"},"
			"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.1.1\"}}");
		struct json_object *o2 = json_tokener_parse(
			"{\"metadata\":{\"name\":\"api-sbx\",\"namespace\":\"shop\",\"labels\":"
			"{\"app\":\"x\"}},\"status\":{\"phase\":\"Running\",\"conditions\":"
			"[{\"type\":\"Ready\",\"status\":\"True\"}],\"podIP\":\"10.244.7.7\"}}");
		void *p, *p2;

		cr_assert_eq(k8s_decode(K8S_POD, o, &p, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(k8s_decode(K8S_POD, o2, &p2, err, sizeof(err)), 0, "%s", err);
		json_object_put(o);
		json_object_put(o2);
		cr_assert_eq(hmap_put(&fresh, "shop/api-0", 10, p, NULL), 0);
		cr_assert_eq(hmap_put(&fresh, "shop/api-sbx", 12, p2, NULL), 0);
		cr_assert_eq(k8s_cache_replace(&c, K8S_POD, &fresh), 0);
	}
	n = take(&ops);
	cr_assert_eq(count_ops(ops, n, false), 1);
	cr_assert_not_null(find(&ops[0].r, 1, "10.244.1.1:8080", "k", "10.244.7.7:8080"));
	free(ops);
	teardown();
}

/* Overrides use the same rule for destination and to Services. */
Test(tenancy, slice_addresses_for_overrides)
{
	struct k8s_override *os;
	size_t unres;
	long n;

	c.node = "node-1";
	c.cgroup_of = fake_cgroup;
	put_service_in("shop", "db", "10.96.2.2");
	put_service_in("shop", "db2", "10.96.2.3");
	/* db's endpoint names no pod; db2's is shop's pod db2-0. */
	put_slice_in("shop", "db-1", "db", "10.244.2.2", "");
	put_slice_in("shop", "db2-1", "db2", "10.244.3.3",
		     "{\"kind\":\"Pod\",\"namespace\":\"shop\",\"name\":\"db2-0\"}");
	put_client("checkout-1", "uid-a", "node-1");
	put_sbo("a", "{\"service\":\"db\",\"port\":80}", "{\"service\":\"db2\",\"port\":80}", "");
	n = sbo_overrides("shop/a", &os, &unres);
	cr_assert_eq(n, 0, "a target nobody checked: %ld", n);
	free(os);
	put_pod_in("shop", "db2-0", "y", "10.244.3.3", "Running");
	n = sbo_overrides("shop/a", &os, &unres);
	/* Only the ClusterIP of db: its endpoint does not count. */
	cr_assert_eq(n, 1);
	cr_assert_not_null(find_ovr(os, n, 1001, "10.96.2.2:80", "10.244.3.3:8080"));
	free(os);
	teardown();
}

Test(tenancy, sandbox_addresses_need_an_allowed_cidr)
{
	struct k8s_op *ops;
	struct k8s_problem *pv;
	struct addr_prefix v4only;
	const struct k8s_problem *p;
	long n;

	base_cluster();
	/* No --sandbox-cidr: explicit addresses are refused. */
	put_sbr("a", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"addresses\":[\"10.244.9.1\"],\"port\":8080}");
	n = take(&ops);
	cr_assert_eq(n, 0);
	free(ops);
	pv = problems(&n);
	p = find_problem(pv, n, K8S_WHY_CIDR, "shop/a");
	cr_assert_not_null(p);
	cr_assert_str_eq(p->detail, "10.244.9.1:8080");
	free(pv);
	/* The loopback, a metadata address: the same (whatever the lead's
	 * store would say later). */
	allow_sandboxes();
	put_sbr("b", ",\"ports\":[80]},\"keys\":[\"j\"]",
		"{\"addresses\":[\"169.254.169.254\"],\"port\":80}");
	put_sbr("c", ",\"ports\":[80]},\"keys\":[\"i\"]",
		"{\"addresses\":[\"127.0.0.1\"],\"port\":80}");
	/* Inside: routes. */
	put_sbr("a", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"addresses\":[\"10.244.9.1\",\"fd00:244::9\"],\"port\":8080}");
	n = take(&ops);
	cr_assert_eq(n, 5);
	free(ops);
	pv = problems(&n);
	cr_assert_null(find_problem(pv, n, K8S_WHY_CIDR, "shop/a"));
	cr_assert_not_null(find_problem(pv, n, K8S_WHY_CIDR, "shop/b"));
	cr_assert_not_null(find_problem(pv, n, K8S_WHY_CIDR, "shop/c"));
	free(pv);
	/* One address outside: the whole object is refused, not a part. */
	cr_assert_eq(parse_prefix("10.244.0.0/16", &v4only), 0);
	c.sandbox_cidrs = &v4only;
	c.n_sandbox_cidrs = 1;
	put_sbr("a", ",\"ports\":[80]},\"keys\":[\"k\"]",
		"{\"addresses\":[\"10.244.9.1\",\"fd00:244::9\"],\"port\":8080}");
	n = take(&ops);
	cr_assert_eq(count_ops(ops, n, true), 5);
	free(ops);
	pv = problems(&n);
	p = find_problem(pv, n, K8S_WHY_CIDR, "shop/a");
	cr_assert_not_null(p);
	cr_assert_str_eq(p->detail, "[fd00:244::9]:8080");
	free(pv);
	teardown();
}

/* Finding 3 of issue 9: two SandboxRoutes producing the same (address,
 * key): the older one wins, whatever the names; the loser is reported. */
Test(conflict, older_wins_and_loser_reported)
{
	struct k8s_op *ops;
	struct k8s_problem *pv;
	const struct k8s_problem *p;
	long n;

	allow_sandboxes();
	put_service_in("shop", "web", "10.96.3.3");
	/* "a-new" sorts first but is younger. */
	put_sbr_in("shop", "z-old", "2026-11-18T08:00:00Z", "web", "\"k\",\"j\"",
		   "{\"addresses\":[\"10.244.3.1\"],\"port\":1}");
	put_sbr_in("shop", "a-new", "2026-11-18T09:00:00Z", "web", "\"k\"",
		   "{\"addresses\":[\"10.244.3.2\"],\"port\":1}");
	n = take(&ops);
	cr_assert_eq(n, 2);
	cr_assert_not_null(find_op(ops, n, "10.96.3.3:80", "k", "10.244.3.1:1"));
	for (long i = 0; i < n; i++)
		cr_assert_str_eq(ops[i].owner, "shop/z-old");
	free(ops);
	pv = problems(&n);
	cr_assert_eq(n, 1);
	p = find_problem(pv, n, K8S_WHY_CONFLICT, "shop/a-new");
	cr_assert_not_null(p);
	cr_assert_str_eq(p->other, "shop/z-old");
	cr_assert_eq(p->n, 1);
	cr_assert_eq(p->kind, K8S_SBR);
	free(pv);
	/* The same on every node: the order of arrival does not matter. */
	{
		struct k8s_cache keep = c;

		memset(&c, 0, sizeof(c));
		allow_sandboxes();
		put_service_in("shop", "web", "10.96.3.3");
		put_sbr_in("shop", "a-new", "2026-11-18T09:00:00Z", "web", "\"k\"",
			   "{\"addresses\":[\"10.244.3.2\"],\"port\":1}");
		put_sbr_in("shop", "z-old", "2026-11-18T08:00:00Z", "web", "\"k\",\"j\"",
			   "{\"addresses\":[\"10.244.3.1\"],\"port\":1}");
		n = take(&ops);
		cr_assert_not_null(find_op(ops, n, "10.96.3.3:80", "k", "10.244.3.1:1"));
		free(ops);
		k8s_cache_free(&c);
		c = keep;
	}
	/* The winner goes: the younger one takes over, nothing is lost. */
	cr_assert_eq(k8s_cache_del(&c, K8S_SBR, "shop/z-old"), 0);
	n = take(&ops);
	cr_assert_eq(n, 2);
	cr_assert_not_null(find_op(ops, n, "10.96.3.3:80", "k", "10.244.3.2:1"));
	free(ops);
	pv = problems(&n);
	cr_assert_eq(n, 0);
	free(pv);
	/* Same age: the namespace/name decides. */
	put_sbr_in("shop", "b", "2026-11-18T09:00:00Z", "web", "\"k\"",
		   "{\"addresses\":[\"10.244.3.3\"],\"port\":1}");
	n = take(&ops);
	cr_assert_eq(n, 0);
	free(ops);
	pv = problems(&n);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(pv[0].id, "shop/b");
	cr_assert_str_eq(pv[0].other, "shop/a-new");
	free(pv);
	cr_assert_lt(k8s_age_cmp(0, "a", 0, "b"), 0);
	cr_assert_gt(k8s_age_cmp(0, "a", 1, "b"), 0, "no creationTimestamp counts as newest");
	teardown();
}

/* Finding 4 of issue 9: one namespace must not fill the node's table. */
Test(quota, older_objects_first_whole_objects_only)
{
	struct k8s_op *ops;
	struct k8s_problem *pv;
	const struct k8s_problem *p;
	long n;

	allow_sandboxes();
	c.max_ns_routes = 6;
	put_service_in("noisy", "web", "10.96.4.4");
	put_service_in("quiet", "web", "10.96.5.5");
	/* 5 keys each on one ClusterIP: 5 routes an object. */
#define FIVE "\"k1\",\"k2\",\"k3\",\"k4\",\"k5\""
	put_sbr_in("noisy", "b-first", "2026-11-18T08:00:00Z", "web", FIVE,
		   "{\"addresses\":[\"10.244.4.1\"],\"port\":1}");
	put_sbr_in("noisy", "a-second", "2026-11-18T08:30:00Z", "web",
		   "\"m1\",\"m2\",\"m3\",\"m4\",\"m5\"",
		   "{\"addresses\":[\"10.244.4.2\"],\"port\":1}");
	put_sbr_in("noisy", "c-third", "2026-11-18T08:40:00Z", "web", "\"n1\"",
		   "{\"addresses\":[\"10.244.4.3\"],\"port\":1}");
	put_sbr_in("quiet", "q", "2026-11-18T08:50:00Z", "web", FIVE,
		   "{\"addresses\":[\"10.244.5.1\"],\"port\":1}");
	n = take(&ops);
	/* b-first 5, a-second refused (5 + 5 > 6), c-third fits (6); quiet's
	 * own 5. */
	cr_assert_eq(n, 11, "%ld", n);
	cr_assert_not_null(find_op(ops, n, "10.96.4.4:80", "k1", "10.244.4.1:1"));
	cr_assert_null(find_op(ops, n, "10.96.4.4:80", "m1", NULL));
	cr_assert_not_null(find_op(ops, n, "10.96.4.4:80", "n1", "10.244.4.3:1"));
	cr_assert_not_null(find_op(ops, n, "10.96.5.5:80", "k5", "10.244.5.1:1"));
	free(ops);
	pv = problems(&n);
	cr_assert_eq(n, 1);
	p = find_problem(pv, n, K8S_WHY_QUOTA, "noisy/a-second");
	cr_assert_not_null(p);
	cr_assert_eq(p->n, 5);
	cr_assert_str_eq(p->detail, "5 of 6 in use");
	free(pv);
	/* Room again: the older one gets in, the younger one out. */
	cr_assert_eq(k8s_cache_del(&c, K8S_SBR, "noisy/b-first"), 0);
	n = take(&ops);
	cr_assert_eq(count_ops(ops, n, true), 5);
	cr_assert_eq(count_ops(ops, n, false), 5);
	cr_assert_not_null(find_op(ops, n, "10.96.4.4:80", "m3", "10.244.4.2:1"));
	free(ops);
	cr_assert(!sbr("noisy/a-second")->over_quota);
	cr_assert(!sbr("noisy/c-third")->over_quota);
	/* Growing past it: the object that grew goes whole. */
	put_sbr_in("noisy", "c-third", "2026-11-18T08:40:00Z", "web", "\"n1\",\"n2\"",
		   "{\"addresses\":[\"10.244.4.3\"],\"port\":1}");
	n = take(&ops);
	cr_assert_eq(count_ops(ops, n, true), 1);
	cr_assert_eq(count_ops(ops, n, false), 0);
	free(ops);
	cr_assert(sbr("noisy/c-third")->over_quota);
	cr_assert_eq(c.nroutes, 10);
#undef FIVE
	teardown();
}

/* Finding 10 of issue 9: a Pod keeps only what translation needs. */
Test(memory, pods_keep_only_selected_labels)
{
	struct hmap keys = {};
	const struct k8s_decode_opts opts = {.label_keys = &keys, .node = "node-1"};
	struct json_object *o;
	struct k8s_pod *p;

	cr_assert_eq(hmap_put(&keys, "app", 3, (void *)1, NULL), 0);
	o = json_tokener_parse(
		"{\"metadata\":{\"name\":\"p\",\"namespace\":\"s\",\"uid\":\"u-1\",\"labels\":"
		"{\"app\":\"web\",\"team\":\"a\",\"x.example.com/long\":\"v\"}},"
		"\"spec\":{\"nodeName\":\"node-1\"},\"status\":{\"phase\":\"Running\"}}");
	cr_assert_eq(k8s_decode_ex(K8S_POD, o, &opts, (void **)&p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p->nlabels, 1);
	cr_assert_str_eq(p->labels[0].key, "app");
	cr_assert(p->local);
	cr_assert_str_eq(p->uid, "u-1");
	k8s_obj_free(K8S_POD, p);
	json_object_put(o);
	/* Another node's pod: no uid; no label kept at all. */
	hmap_free(&keys);
	o = json_tokener_parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"s\",\"uid\":\"u-1\","
			       "\"labels\":{\"app\":\"web\",\"bad\":7}},"
			       "\"spec\":{\"nodeName\":\"node-2\"}}");
	/* ... but labels are still checked whole. */
	cr_assert_eq(k8s_decode_ex(K8S_POD, o, &opts, (void **)&p, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "metadata.labels.bad"), "%s", err);
	json_object_put(o);
	o = json_tokener_parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"s\",\"uid\":\"u-1\","
			       "\"labels\":{\"app\":\"web\"}},\"spec\":{\"nodeName\":\"node-2\"}}");
	cr_assert_eq(k8s_decode_ex(K8S_POD, o, &opts, (void **)&p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p->nlabels, 0);
	cr_assert_null(p->labels);
	cr_assert_not(p->local);
	cr_assert_null(p->uid);
	cr_assert_str_eq(p->m.id, "s/p");
	cr_assert_str_eq(p->m.ns, "s");
	cr_assert_str_eq(p->m.name, "p");
	k8s_obj_free(K8S_POD, p);
	json_object_put(o);
}

/* The keys the selectors use, for the watcher: counted per selector. */
Test(memory, label_keys_follow_the_selectors)
{
	base_cluster();
	cr_assert_eq(c.label_keys.n, 0);
	put_sbr("a", "},\"keys\":[\"k\"]",
		"{\"selector\":{\"matchLabels\":{\"sandbox\":\"f\"},\"matchExpressions\":[{\"key\":"
		"\"tier\",\"operator\":\"Exists\"}]},\"port\":1}");
	cr_assert(c.new_label_keys);
	cr_assert_not_null(hmap_sget(&c.label_keys, "sandbox"));
	cr_assert_not_null(hmap_sget(&c.label_keys, "tier"));
	c.new_label_keys = false;
	put_sbr("b", "},\"keys\":[\"k\"]",
		"{\"selector\":{\"matchLabels\":{\"sandbox\":\"g\"}},\"port\":1}");
	cr_assert_not(c.new_label_keys, "no new key");
	sbo_setup();
	put_sbo("o", "{\"service\":\"orders\",\"port\":80}",
		"{\"selector\":{\"matchLabels\":{\"db\":\"x\"}},\"port\":1}", "");
	cr_assert(c.new_label_keys);
	cr_assert_not_null(hmap_sget(&c.label_keys, "app")); /* podSelector */
	cr_assert_not_null(hmap_sget(&c.label_keys, "db"));  /* to.selector */
	cr_assert_eq(k8s_cache_del(&c, K8S_SBR, "shop/a"), 0);
	cr_assert_null(hmap_sget(&c.label_keys, "tier"));
	cr_assert_not_null(hmap_sget(&c.label_keys, "sandbox")); /* b's */
	cr_assert_eq(k8s_cache_del(&c, K8S_SBR, "shop/b"), 0);
	cr_assert_eq(k8s_cache_del(&c, K8S_SBO, "shop/o"), 0);
	cr_assert_eq(c.label_keys.n, 0);
	teardown();
}

Test(k8s_time, rfc3339)
{
	uint64_t t;

	cr_assert_eq(k8s_parse_time("1970-01-01T00:00:00Z", &t), 0);
	cr_assert_eq(t, 0);
	cr_assert_eq(k8s_parse_time(T0, &t), 0);
	cr_assert_eq(t, T0_S);
	cr_assert_eq(k8s_parse_time("2026-11-18T09:00:00.123456Z", &t), 0);
	cr_assert_eq(t, T0_S);
	cr_assert_eq(k8s_parse_time("2026-11-18T11:00:00+02:00", &t), 0);
	cr_assert_eq(t, T0_S);
	cr_assert_eq(k8s_parse_time("2026-11-18T08:30:00-00:30", &t), 0);
	cr_assert_eq(t, T0_S);
	cr_assert_eq(k8s_parse_time("2026-11-18 09:00:00Z", &t), -EINVAL);
	cr_assert_eq(k8s_parse_time("2026-11-18T09:00:00", &t), -EINVAL);
	cr_assert_eq(k8s_parse_time("2026-13-18T09:00:00Z", &t), -EINVAL);
	cr_assert_eq(k8s_parse_time("2026-11-18T09:00:00Zjunk", &t), -EINVAL);
	cr_assert_eq(k8s_parse_time("2026-11-18T09:00:00.Z", &t), -EINVAL);
	cr_assert_eq(k8s_parse_time("", &t), -EINVAL);
}

Test(kubeconfig, current_context)
{
	static const char text[] =
		"apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
		"clusters:\n"
		"- name: prod\n  cluster:\n    server: https://prod:6443\n"
		"- name: staging\n  cluster:\n    server: https://10.0.0.1:6443/\n"
		"    certificate-authority-data: LS0tLS1CRUdJTg==\n"
		"contexts:\n"
		"- name: prod\n  context: {cluster: prod, user: admin}\n"
		"- name: dev\n  context:\n    cluster: staging\n    user: dev\n    namespace: "
		"shop\n"
		"users:\n"
		"- name: dev\n  user:\n    tokenFile: tok\n    client-certificate: c.crt\n"
		"    client-key: /abs/c.key\n";
	struct k8s_conn kc;

	cr_assert_eq(kubeconfig_parse(text, strlen(text), "/etc/kube", &kc, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_str_eq(kc.server, "https://10.0.0.1:6443");
	cr_assert_eq(kc.ca_len, 10);
	cr_assert(!memcmp(kc.ca_data, "-----BEGIN", 10));
	cr_assert_str_eq(kc.token_file, "/etc/kube/tok");
	cr_assert_str_eq(kc.cert_file, "/etc/kube/c.crt");
	cr_assert_str_eq(kc.key_file, "/abs/c.key");
	cr_assert_null(kc.token);
	cr_assert_not(kc.insecure);
	cr_assert_str_eq(kc.ns, "shop", "the context's namespace (kubectl-shunt's default)");
	k8s_conn_free(&kc);
}

Test(kubeconfig, errors)
{
	struct k8s_conn kc;

	cr_assert_eq(kubeconfig_parse("a: [", 4, NULL, &kc, err, sizeof(err)), -EINVAL);
	cr_assert_eq(kubeconfig_parse("kind: Config\n", 13, NULL, &kc, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "current-context"), "%s", err);
	{
		static const char t[] = "current-context: x\ncontexts:\n- name: x\n  context:\n"
					"    cluster: c\nclusters:\n- name: c\n  cluster:\n"
					"    server: ftp://x\n";

		cr_assert_eq(kubeconfig_parse(t, strlen(t), NULL, &kc, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, "server"), "%s", err);
	}
}

Test(kubeconfig, base64)
{
	char *out;
	size_t len;

	cr_assert_eq(base64_decode("aGVsbG8=", &out, &len), 0);
	cr_assert_eq(len, 5);
	cr_assert(!memcmp(out, "hello", 5));
	free(out);
	cr_assert_eq(base64_decode("aGVs\nbG8h", &out, &len), 0);
	cr_assert_eq(len, 6);
	free(out);
	cr_assert_eq(base64_decode("aGV*", &out, &len), -EINVAL);
	cr_assert_eq(base64_decode("aG=V", &out, &len), -EINVAL);
}

Test(hmap, put_get_del_iterate)
{
	struct hmap m = {};
	struct hmap_entry *e;
	size_t i, seen = 0;
	char key[16];
	void *old;

	for (long j = 0; j < 1000; j++) {
		snprintf(key, sizeof(key), "k%ld", j);
		cr_assert_eq(hmap_put(&m, key, strlen(key), (void *)(j + 1), NULL), 0);
	}
	cr_assert_eq(m.n, 1000);
	cr_assert_eq(hmap_sget(&m, "k500"), (void *)501);
	cr_assert_eq(hmap_put(&m, "k500", 4, (void *)7, &old), 0);
	cr_assert_eq(old, (void *)501);
	cr_assert_eq(m.n, 1000);
	for (e = hmap_first(&m, &i); e;) {
		struct hmap_entry *next = hmap_next(&m, e, &i);

		if (seen++ % 2)
			hmap_del(&m, e->key, e->klen);
		e = next;
	}
	cr_assert_eq(seen, 1000);
	cr_assert_eq(m.n, 500);
	cr_assert_null(hmap_sget(&m, "nope"));
	hmap_free(&m);
}

/* shunt.dev/capture and spec.hostNetwork (issue 14): read, and a bad value
 * loses nothing of the pod. */
Test(pods, capture_annotation)
{
	static const struct {
		const char *ann;
		uint8_t want;
	} cases[] = {
		{"", K8S_CAPTURE_DEFAULT},
		{"\"annotations\":{\"shunt.dev/capture\":\"node\"},", K8S_CAPTURE_NODE},
		{"\"annotations\":{\"shunt.dev/capture\":\"in-pod\"},", K8S_CAPTURE_INPOD},
		{"\"annotations\":{\"shunt.dev/capture\":\"tc\"},", K8S_CAPTURE_TC},
		{"\"annotations\":{\"shunt.dev/capture\":\"TC\"},", K8S_CAPTURE_INVALID},
		{"\"annotations\":{\"shunt.dev/capture\":7},", K8S_CAPTURE_INVALID},
		{"\"annotations\":{\"other\":\"x\"},", K8S_CAPTURE_DEFAULT},
	};
	char buf[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *o;
		struct k8s_pod *p;
		void *v;

		snprintf(buf, sizeof(buf),
			 "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\",%s\"uid\":\"u\"},"
			 "\"spec\":{\"hostNetwork\":%s},"
			 "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.1.1\"}}",
			 cases[i].ann, i % 2 ? "true" : "false");
		o = json_tokener_parse(buf);
		cr_assert_not_null(o, "%s", buf);
		cr_assert_eq(k8s_decode(K8S_POD, o, &v, err, sizeof(err)), 0, "%s: %s", buf, err);
		json_object_put(o);
		p = v;
		cr_assert_eq(p->capture, cases[i].want, "%s", buf);
		cr_assert_eq(p->host_network, i % 2 == 1, "%s", buf);
		cr_assert_eq(p->nips, 1, "the pod's address kept: %s", buf);
		k8s_obj_free(K8S_POD, p);
	}
}

Test(pods, infer_annotation)
{
	static const char containers[] =
		"\"containers\":[{\"name\":\"a\",\"ports\":[{\"name\":\"http\",\"containerPort\":"
		"8080},"
		"{\"name\":\"http-dns\",\"containerPort\":53,\"protocol\":\"UDP\"},{\"name\":"
		"\"grpc-api\",\"containerPort\":9090,\"protocol\":\"TCP\"},{\"name\":\"http-"
		"again\","
		"\"containerPort\":8080},{\"name\":\"mysql\",\"containerPort\":3306},"
		"{\"containerPort\":8443}]},{\"name\":\"b\"}]";
	static const struct {
		const char *ann;
		uint8_t want;
		int n;
		uint16_t first;
	} cases[] = {
		{"", K8S_INFER_OFF, 0, 0},
		{"\"annotations\":{\"shunt.dev/infer\":\"off\"},", K8S_INFER_OFF, 0, 0},
		/* No ports given: the containers' TCP ports named http* or
		 * grpc*, once each (not mysql, not an unnamed one). */
		{"\"annotations\":{\"shunt.dev/infer\":\"shadow\"},", K8S_INFER_SHADOW, 2, 8080},
		{"\"annotations\":{\"shunt.dev/infer\":\"on\",\"shunt.dev/"
		 "infer-ports\":\"7000,7001\"},",
		 K8S_INFER_ON, 2, 7000},
		{"\"annotations\":{\"shunt.dev/infer\":\"on\",\"shunt.dev/"
		 "infer-ports\":\"7000,x\"},",
		 K8S_INFER_ON, -1, 0},
		{"\"annotations\":{\"shunt.dev/infer\":\"ON\"},", K8S_INFER_INVALID, 0, 0},
		{"\"annotations\":{\"shunt.dev/infer\":1},", K8S_INFER_INVALID, 0, 0},
	};
	char buf[1024];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *o;
		struct k8s_pod *p;
		void *v;

		snprintf(buf, sizeof(buf),
			 "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\",%s\"uid\":\"u\"},"
			 "\"spec\":{%s},"
			 "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.1.1\"}}",
			 cases[i].ann, containers);
		o = json_tokener_parse(buf);
		cr_assert_not_null(o, "%s", buf);
		cr_assert_eq(k8s_decode(K8S_POD, o, &v, err, sizeof(err)), 0, "%s: %s", buf, err);
		json_object_put(o);
		p = v;
		cr_assert_eq(p->infer, cases[i].want, "%s", buf);
		cr_assert_eq(p->n_infer_ports, cases[i].n, "%s: %d", buf, p->n_infer_ports);
		if (cases[i].n > 0)
			cr_assert_eq(p->infer_ports[0], cases[i].first, "%s", buf);
		cr_assert_eq(p->nips, 1, "the pod's address kept: %s", buf);
		k8s_obj_free(K8S_POD, p);
	}
}
