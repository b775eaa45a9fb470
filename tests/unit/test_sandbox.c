/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests for the Sandbox plan (agent/ctrl/sandbox.c): a Sandbox, its
 * baseline Deployment and the namespace's Services in the shapes the API
 * server sends, the objects the controller must make out.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "ctrl/sandbox.h"
#include "k8s/obj.h"

#define SANDBOX                                                                                    \
	"{\"apiVersion\":\"shunt.dev/"                                                             \
	"v1alpha1\",\"kind\":\"Sandbox\",\"metadata\":{\"name\":\"pr-7\","                         \
	"\"namespace\":\"shop\",\"uid\":\"0a1b2c3d-4e5f-6789-abcd-ef0123456789\",\"generation\":"  \
	"2,"                                                                                       \
	"\"creationTimestamp\":\"2026-12-06T03:00:00Z\"},\"spec\":{%s}}"

#define BASELINE                                                                                   \
	"{\"metadata\":{\"name\":\"orders\",\"namespace\":\"shop\",\"uid\":\"u-base\"},\"spec\":{" \
	"\"replicas\":3,\"selector\":{\"matchLabels\":{\"app\":\"orders\"}},\"template\":{"        \
	"\"metadata\":{\"labels\":{\"app\":\"orders\",\"tier\":\"api\",\"team\":\"shop\"}},"       \
	"\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"orders:1\",\"env\":["             \
	"{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"B\",\"value\":\"2\"}],\"ports\":["           \
	"{\"name\":\"http\",\"containerPort\":8080},{\"name\":\"admin\",\"containerPort\":9000}]}" \
	","                                                                                        \
	"{\"name\":\"sidecar\",\"image\":\"side:1\"}]}}}}"

/* orders (selects the baseline by app and tier; a named, a numbered and
 * a UDP port), metrics (selects it by team), other (does not). */
#define SERVICES                                                                                   \
	"[{\"metadata\":{\"name\":\"orders\",\"namespace\":\"shop\"},\"spec\":{\"selector\":{"     \
	"\"app\":\"orders\",\"tier\":\"api\"},\"ports\":[{\"name\":\"http\",\"port\":80,"          \
	"\"targetPort\":\"http\",\"protocol\":\"TCP\"},{\"name\":\"dbg\",\"port\":81,"             \
	"\"targetPort\":"                                                                          \
	"9000},{\"name\":\"dns\",\"port\":53,\"protocol\":\"UDP\"}]}},"                            \
	"{\"metadata\":{\"name\":\"metrics\",\"namespace\":\"shop\"},\"spec\":{\"selector\":{"     \
	"\"team\":\"shop\"},\"ports\":[{\"port\":9100,\"targetPort\":9000}]}},"                    \
	"{\"metadata\":{\"name\":\"other\",\"namespace\":\"shop\"},\"spec\":{\"selector\":{"       \
	"\"app\":\"payments\"},\"ports\":[{\"port\":80}]}}]"

static struct sbx_plan plan;
static struct json_object *sb, *base, *svcs;
static struct sbx_meta meta;
static char err[512];

static void teardown(void)
{
	sbx_plan_free(&plan);
	json_object_put(sb);
	json_object_put(base);
	json_object_put(svcs);
	sb = base = svcs = NULL;
}

/* cppcheck-suppress unknownMacro */
TestSuite(sandbox, .fini = teardown);

static struct json_object *parse(const char *s)
{
	struct json_object *o = json_tokener_parse(s);

	cr_assert_not_null(o, "bad fixture: %s", s);
	return o;
}

/* sbx_plan_make() on sb, meta and svcs with these baselines and the
 * namespace's Deployments (NULL: none besides). */
static int plan_with(struct json_object **bases, size_t n, struct json_object *deployments)
{
	struct sbx_inputs in = {.baselines = bases, .nbaselines = n, .services = svcs};

	in.workloads[0] = deployments;
	return sbx_plan_make(sb, &meta, &in, &plan, err, sizeof(err));
}

/* Plan the Sandbox with this spec body; returns sbx_plan_make's result. */
static int make(const char *spec)
{
	char text[8192];

	snprintf(text, sizeof(text), SANDBOX, spec);
	sb = parse(text);
	if (!base)
		base = parse(BASELINE);
	if (!svcs)
		svcs = parse(SERVICES);
	cr_assert_eq(sbx_meta_decode(sb, &meta, err, sizeof(err)), 0, "%s", err);
	return plan_with(&base, 1, NULL);
}

static struct sbx_obj *find(enum sbx_kind k, const char *name)
{
	for (size_t i = 0; i < plan.n; i++)
		if (plan.objs[i].kind == k && !strcmp(plan.objs[i].name, name))
			return &plan.objs[i];
	return NULL;
}

/* The value at a dotted path ("spec.template.metadata.labels.app");
 * numbers index arrays. */
static struct json_object *at(struct json_object *o, const char *path)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = strtok_r(buf, ".", &save); p && o; p = strtok_r(NULL, ".", &save)) {
		if (json_object_is_type(o, json_type_array))
			o = json_object_array_get_idx(o, (size_t)atoi(p));
		else
			o = k8s_jget(o, p);
	}
	return o;
}

static const char *at_str(struct json_object *o, const char *path)
{
	struct json_object *v = at(o, path);

	return v ? json_object_get_string(v) : NULL;
}

Test(sandbox, fork_copies_the_template_with_the_changes)
{
	struct sbx_obj *f;
	struct json_object *env, *labels;

	cr_assert_eq(make("\"key\":\"pr-7\",\"forks\":[{\"deployment\":\"orders\",\"containers\":[{"
			  "\"name\":\"web\",\"image\":\"orders:pr-7\",\"args\":[\"--x\"],\"env\":["
			  "{\"name\":\"B\",\"value\":\"two\"},{\"name\":\"C\",\"value\":\"3\"}],"
			  "\"removeEnv\":[\"A\"]}]}]"),
		     0, "%s", err);
	f = find(SBX_DEPLOYMENT, "pr-7-orders");
	cr_assert_not_null(f);
	cr_assert_eq(f->role, SBX_ROLE_FORK);
	cr_assert_str_eq(at_str(f->obj, "metadata.namespace"), "shop");
	cr_assert_str_eq(at_str(f->obj, "metadata.ownerReferences.0.uid"),
			 "0a1b2c3d-4e5f-6789-abcd-ef0123456789");
	cr_assert(json_object_get_boolean(at(f->obj, "metadata.ownerReferences.0.controller")));
	cr_assert_eq(json_object_get_int(at(f->obj, "spec.replicas")), 1, "replicas default to 1");
	/* No label any Service of the baseline selects on, nor the
	 * baseline's selector: app, tier and team all go. */
	labels = at(f->obj, "spec.template.metadata.labels");
	cr_assert_null(k8s_jget(labels, "app"));
	cr_assert_null(k8s_jget(labels, "tier"));
	cr_assert_null(k8s_jget(labels, "team"));
	cr_assert_str_eq(json_object_get_string(k8s_jget(labels, SBX_LABEL)), "pr-7");
	cr_assert_str_eq(json_object_get_string(k8s_jget(labels, SBX_LABEL_FORK)), "orders");
	cr_assert_str_eq(json_object_get_string(
				 k8s_jget(at(f->obj, "spec.selector.matchLabels"), SBX_LABEL)),
			 "pr-7");
	cr_assert_str_eq(at_str(f->obj, "spec.template.spec.containers.0.image"), "orders:pr-7");
	cr_assert_str_eq(at_str(f->obj, "spec.template.spec.containers.0.args.0"), "--x");
	cr_assert_str_eq(at_str(f->obj, "spec.template.spec.containers.1.image"), "side:1");
	env = at(f->obj, "spec.template.spec.containers.0.env");
	cr_assert_eq(json_object_array_length(env), 2, "%s", json_object_to_json_string(env));
	cr_assert_str_eq(at_str(env, "0.name"), "B");
	cr_assert_str_eq(at_str(env, "0.value"), "two");
	cr_assert_str_eq(at_str(env, "1.name"), "C");
	cr_assert_eq(strlen(f->hash), 16);
	cr_assert_str_eq(sbx_obj_hash(f->obj), f->hash);
	/* The baseline is untouched. */
	cr_assert_str_eq(at_str(base, "spec.template.metadata.labels.app"), "orders");
	cr_assert_str_eq(at_str(base, "spec.template.spec.containers.0.image"), "orders:1");
}

Test(sandbox, a_route_per_tcp_port_of_each_service_selecting_the_baseline)
{
	struct sbx_obj *r;
	size_t routes = 0;

	cr_assert_eq(make("\"key\":\"pr-7\",\"fallback\":\"baseline\",\"forks\":[{\"deployment\":"
			  "\"orders\"}]"),
		     0, "%s", err);
	for (size_t i = 0; i < plan.n; i++)
		routes += plan.objs[i].kind == SBX_ROUTE;
	cr_assert_eq(routes, 3, "orders:80, orders:81, metrics:9100 (not UDP 53, not other)");
	r = find(SBX_ROUTE, "pr-7-orders-80");
	cr_assert_not_null(r);
	cr_assert_str_eq(at_str(r->obj, "spec.service.name"), "orders");
	cr_assert_eq(json_object_get_int(at(r->obj, "spec.service.ports.0")), 80);
	cr_assert_str_eq(at_str(r->obj, "spec.keys.0"), "pr-7");
	cr_assert_eq(json_object_get_int(at(r->obj, "spec.sandbox.port")), 8080,
		     "named targetPort");
	cr_assert_str_eq(json_object_get_string(k8s_jget(
				 at(r->obj, "spec.sandbox.selector.matchLabels"), SBX_LABEL_FORK)),
			 "orders");
	cr_assert_str_eq(at_str(r->obj, "spec.fallback"), "baseline");
	r = find(SBX_ROUTE, "pr-7-orders-81");
	cr_assert_eq(json_object_get_int(at(r->obj, "spec.sandbox.port")), 9000);
	r = find(SBX_ROUTE, "pr-7-metrics-9100");
	cr_assert_not_null(r);
	cr_assert_null(find(SBX_ROUTE, "pr-7-other-80"));
}

Test(sandbox, key_is_made_from_the_uid_when_absent)
{
	cr_assert_eq(make("\"forks\":[{\"deployment\":\"orders\"}]"), 0, "%s", err);
	cr_assert_str_eq(meta.key, "sbx-0a1b2c3d4e5f");
	cr_assert(meta.key_generated);
	cr_assert_str_eq(at_str(find(SBX_ROUTE, "pr-7-orders-80")->obj, "spec.keys.0"),
			 "sbx-0a1b2c3d4e5f");
}

Test(sandbox, ttl_counts_from_creation)
{
	cr_assert_eq(make("\"ttl\":\"1h30m\",\"forks\":[{\"deployment\":\"orders\"}]"), 0, "%s",
		     err);
	cr_assert_eq(meta.expires_unix, meta.created_unix + 5400);
}

Test(sandbox, resources_are_scoped_to_the_sandbox)
{
	struct sbx_obj *d, *s, *o;

	cr_assert_eq(
		make("\"forks\":[{\"deployment\":\"orders\"}],\"resources\":["
		     "{\"name\":\"db\",\"template\":{\"apiVersion\":\"apps/v1\",\"kind\":"
		     "\"Deployment\",\"metadata\":{\"name\":\"x\",\"uid\":\"stale\"},\"spec\":{"
		     "\"selector\":{\"matchLabels\":{\"app\":\"tmpdb\"}},\"template\":{"
		     "\"metadata\":{\"labels\":{\"app\":\"tmpdb\"}},\"spec\":{\"containers\":["
		     "{\"name\":\"pg\",\"image\":\"postgres:16\"}]}}}}},"
		     "{\"name\":\"dbsvc\",\"template\":{\"apiVersion\":\"v1\",\"kind\":\"Service\","
		     "\"metadata\":{},\"spec\":{\"selector\":{\"app\":\"tmpdb\"},\"ports\":["
		     "{\"port\":5432}]}}}],"
		     "\"overrides\":[{\"destination\":{\"service\":\"postgres\",\"port\":5432},"
		     "\"to\":{\"resource\":\"db\",\"port\":5432}},{\"destination\":{\"service\":"
		     "\"postgres\",\"port\":5433},\"to\":{\"resource\":\"dbsvc\",\"port\":5432}}]"),
		0, "%s", err);
	d = find(SBX_DEPLOYMENT, "pr-7-db");
	cr_assert_not_null(d);
	cr_assert_eq(d->role, SBX_ROLE_RESOURCE);
	cr_assert_null(at(d->obj, "metadata.uid"), "server fields are not copied");
	cr_assert_str_eq(json_object_get_string(
				 k8s_jget(at(d->obj, "spec.selector.matchLabels"), SBX_LABEL)),
			 "pr-7");
	cr_assert_str_eq(json_object_get_string(k8s_jget(
				 at(d->obj, "spec.template.metadata.labels"), SBX_LABEL_RESOURCE)),
			 "db");
	s = find(SBX_SERVICE, "pr-7-dbsvc");
	cr_assert_str_eq(json_object_get_string(k8s_jget(at(s->obj, "spec.selector"), SBX_LABEL)),
			 "pr-7", "the Service selects only this Sandbox's pods");
	o = find(SBX_OVERRIDE, "pr-7-override-0");
	cr_assert_not_null(o);
	cr_assert_str_eq(json_object_get_string(k8s_jget(at(o->obj, "spec.to.selector.matchLabels"),
							 SBX_LABEL_RESOURCE)),
			 "db");
	cr_assert_str_eq(at_str(o->obj, "spec.podSelector.matchExpressions.0.key"), SBX_LABEL_FORK,
			 "only the forks' pods, not the resources'");
	cr_assert_str_eq(at_str(o->obj, "spec.destination.service"), "postgres");
	o = find(SBX_OVERRIDE, "pr-7-override-1");
	cr_assert_str_eq(at_str(o->obj, "spec.to.service"), "pr-7-dbsvc");
}

Test(sandbox, hooks_become_jobs)
{
	struct sbx_obj *h;

	cr_assert_eq(make("\"forks\":[{\"deployment\":\"orders\"}],\"hooks\":{\"create\":{"
			  "\"backoffLimit\":0,\"template\":{\"spec\":{\"restartPolicy\":\"Never\","
			  "\"containers\":[{\"name\":\"mk\",\"image\":\"psql\"}]}}},\"delete\":{"
			  "\"template\":{\"spec\":{\"restartPolicy\":\"Never\",\"containers\":[{"
			  "\"name\":\"rm\",\"image\":\"psql\"}]}}}}"),
		     0, "%s", err);
	h = find(SBX_JOB, "pr-7-hook-create");
	cr_assert_not_null(h);
	cr_assert_eq(h->role, SBX_ROLE_HOOK_CREATE);
	cr_assert_eq(json_object_get_int(at(h->obj, "spec.backoffLimit")), 0);
	cr_assert_eq(find(SBX_JOB, "pr-7-hook-delete")->role, SBX_ROLE_HOOK_DELETE);
}

Test(sandbox, the_same_input_gives_the_same_hash_and_a_change_another)
{
	char h1[17];

	cr_assert_eq(make("\"forks\":[{\"deployment\":\"orders\"}]"), 0);
	snprintf(h1, sizeof(h1), "%s", find(SBX_DEPLOYMENT, "pr-7-orders")->hash);
	sbx_plan_free(&plan);
	json_object_put(sb);
	cr_assert_eq(make("\"forks\":[{\"deployment\":\"orders\"}]"), 0);
	cr_assert_str_eq(find(SBX_DEPLOYMENT, "pr-7-orders")->hash, h1);
	sbx_plan_free(&plan);
	json_object_put(sb);
	cr_assert_eq(make("\"forks\":[{\"deployment\":\"orders\",\"replicas\":2}]"), 0);
	cr_assert_str_neq(find(SBX_DEPLOYMENT, "pr-7-orders")->hash, h1);
}

Test(sandbox, a_bad_sandbox_plans_nothing)
{
	cr_assert_neq(
		make("\"forks\":[{\"deployment\":\"orders\",\"containers\":[{\"name\":"
		     "\"nope\",\"image\":\"x\"}]}],\"resources\":[{\"name\":\"cm\",\"template\":{"
		     "\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{}}}]"),
		0);
	cr_assert(strstr(err, "no container nope"), "%s", err);
	cr_assert_eq(plan.n, 0, "the ConfigMap planned before the error is not left in the plan");
	teardown();
	cr_assert_neq(
		make("\"forks\":[{\"deployment\":\"orders\"}],\"resources\":[{\"name\":\"s\","
		     "\"template\":{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{}}}]"),
		0);
	cr_assert(strstr(err, "spec.resources[0].template"), "%s", err);
	teardown();
	cr_assert_neq(
		make("\"forks\":[{\"deployment\":\"orders\"}],\"resources\":[{\"name\":\"c\","
		     "\"template\":{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
		     "\"namespace\":\"kube-system\"}}}]"),
		0);
	cr_assert(strstr(err, "not the Sandbox's namespace"), "%s", err);
	teardown();
	sb = parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\",\"uid\":\"c\"},"
		   "\"spec\":{\"key\":\"a,b\",\"forks\":[]}}");
	cr_assert_neq(sbx_meta_decode(sb, &meta, err, sizeof(err)), 0);
	cr_assert(strstr(err, "spec.key"), "%s", err);
}

Test(sandbox, a_missing_baseline_is_named)
{
	char text[4096];

	snprintf(text, sizeof(text), SANDBOX, "\"forks\":[{\"deployment\":\"orders\"}]");
	sb = parse(text);
	svcs = parse(SERVICES);
	cr_assert_eq(sbx_meta_decode(sb, &meta, err, sizeof(err)), 0);
	cr_assert_neq(plan_with(NULL, 0, NULL), 0);
	cr_assert(strstr(err, "Deployment shop/orders not found"), "%s", err);
	cr_assert_eq(plan.n, 0);
}

/* Found in review: a baseline whose selector has only matchExpressions
 * (valid apps/v1) crashed the controller. */
Test(sandbox, a_selector_with_only_match_expressions)
{
	char text[4096];

	base = parse(
		"{\"metadata\":{\"name\":\"orders\",\"namespace\":\"shop\"},\"spec\":{"
		"\"selector\":{\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"In\","
		"\"values\":[\"orders\"]}]},\"template\":{\"metadata\":{\"labels\":{\"app\":"
		"\"orders\"}},\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"o:1\"}]}}}}");
	snprintf(text, sizeof(text), SANDBOX, "\"forks\":[{\"deployment\":\"orders\"}]");
	sb = parse(text);
	svcs = parse("[]");
	cr_assert_eq(sbx_meta_decode(sb, &meta, err, sizeof(err)), 0);
	cr_assert_eq(plan_with(&base, 1, NULL), 0, "%s", err);
	cr_assert_null(k8s_jget(
		at(find(SBX_DEPLOYMENT, "pr-7-orders")->obj, "spec.template.metadata.labels"),
		"app"));
}

/* Found in review: two forks one shared Service selects refused the whole
 * Sandbox ("two SandboxRoutes would be named ..."). A Service that selects
 * more than the baseline is not steered at all, and says so. */
Test(sandbox, a_service_shared_with_other_workloads_is_not_steered)
{
	char text[4096];
	struct json_object *bases[2], *deps;

	bases[0] = parse(BASELINE);
	bases[1] = parse("{\"metadata\":{\"name\":\"payments\",\"namespace\":\"shop\"},\"spec\":{"
			 "\"selector\":{\"matchLabels\":{\"app\":\"payments\"}},\"template\":{"
			 "\"metadata\":{\"labels\":{\"app\":\"payments\",\"team\":\"shop\"}},"
			 "\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"p:1\",\"ports\":"
			 "[{\"containerPort\":9000}]}]}}}}");
	deps = json_object_new_array();
	json_object_array_add(deps, json_object_get(bases[0]));
	json_object_array_add(deps, json_object_get(bases[1]));
	snprintf(text, sizeof(text), SANDBOX,
		 "\"forks\":[{\"deployment\":\"orders\"},{\"deployment\":\"payments\"}]");
	sb = parse(text);
	svcs = parse(SERVICES);
	cr_assert_eq(sbx_meta_decode(sb, &meta, err, sizeof(err)), 0);
	cr_assert_eq(plan_with(bases, 2, deps), 0, "forking orders and payments together: %s", err);
	cr_assert_not_null(find(SBX_ROUTE, "pr-7-orders-80"));
	cr_assert_null(find(SBX_ROUTE, "pr-7-metrics-9100"), "metrics selects both");
	cr_assert_eq(plan.nnotes, 2, "metrics, for each fork");
	cr_assert(strstr(plan.notes[0],
			 "Service metrics: not steered, it selects Deployment payments"),
		  "%s", plan.notes[0]);
	/* Its label is still off the forks: it must not select them either. */
	cr_assert_null(k8s_jget(
		at(find(SBX_DEPLOYMENT, "pr-7-payments")->obj, "spec.template.metadata.labels"),
		"team"));
	json_object_put(bases[0]);
	json_object_put(bases[1]);
	json_object_put(deps);
}

/* Found in review: a null in removeEnv crashed the controller (strcmp). */
Test(sandbox, a_null_in_remove_env)
{
	cr_assert_eq(make("\"forks\":[{\"deployment\":\"orders\",\"containers\":[{\"name\":"
			  "\"web\",\"removeEnv\":[null]}]}]"),
		     0, "%s", err);
}

/* Found in review: a Service port whose named targetPort the fork lacks
 * refused the whole Sandbox; the port is left out and said so. */
Test(sandbox, a_port_name_the_fork_lacks_is_left_out)
{
	char text[4096];

	base = parse(BASELINE);
	svcs = parse("[{\"metadata\":{\"name\":\"orders\"},\"spec\":{\"selector\":{\"app\":"
		     "\"orders\"},\"ports\":[{\"port\":80,\"targetPort\":\"http\"},"
		     "{\"port\":9090,\"targetPort\":\"grpc\"}]}}]");
	snprintf(text, sizeof(text), SANDBOX, "\"forks\":[{\"deployment\":\"orders\"}]");
	sb = parse(text);
	cr_assert_eq(sbx_meta_decode(sb, &meta, err, sizeof(err)), 0);
	cr_assert_eq(plan_with(&base, 1, NULL), 0, "%s", err);
	cr_assert_not_null(find(SBX_ROUTE, "pr-7-orders-80"));
	cr_assert_null(find(SBX_ROUTE, "pr-7-orders-9090"));
	cr_assert_eq(plan.nnotes, 1);
	cr_assert(strstr(plan.notes[0], "port 9090"), "%s", plan.notes[0]);
}

Test(sandbox, a_statefulset_resource_takes_its_volume_claims_along)
{
	struct sbx_obj *o;

	cr_assert_eq(make("\"forks\":[{\"deployment\":\"orders\"}],\"resources\":[{\"name\":"
			  "\"db\",\"template\":{\"apiVersion\":\"apps/v1\",\"kind\":"
			  "\"StatefulSet\",\"metadata\":{},\"spec\":{\"serviceName\":\"db\","
			  "\"selector\":{\"matchLabels\":{\"a\":\"b\"}},\"template\":{\"metadata\":"
			  "{\"labels\":{\"a\":\"b\"}},\"spec\":{\"containers\":[{\"name\":\"c\","
			  "\"image\":\"i\"}]}}}}}]"),
		     0, "%s", err);
	o = find(SBX_STATEFULSET, "pr-7-db");
	cr_assert_str_eq(at_str(o->obj, "spec.persistentVolumeClaimRetentionPolicy.whenDeleted"),
			 "Delete");
	cr_assert_str_eq(at_str(o->obj, "spec.serviceName"), "pr-7-db", "a resource's name");
}
