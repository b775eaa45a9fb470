// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A Sandbox made into the objects it asks for (sandbox.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctrl/sandbox.h"
#include "k8s/obj.h"
#include "core/util.h"

const struct sbx_kind_info sbx_kinds[SBX_NKINDS] = {
	[SBX_DEPLOYMENT] = {"Deployment", "apps/v1", "/apis/apps/v1", "deployments"},
	[SBX_STATEFULSET] = {"StatefulSet", "apps/v1", "/apis/apps/v1", "statefulsets"},
	[SBX_SERVICE] = {"Service", "v1", "/api/v1", "services"},
	[SBX_CONFIGMAP] = {"ConfigMap", "v1", "/api/v1", "configmaps"},
	[SBX_JOB] = {"Job", "batch/v1", "/apis/batch/v1", "jobs"},
	[SBX_ROUTE] = {"SandboxRoute", "shunt.dev/v1alpha1", "/apis/shunt.dev/v1alpha1",
		       "sandboxroutes"},
	[SBX_OVERRIDE] = {"SandboxOverride", "shunt.dev/v1alpha1", "/apis/shunt.dev/v1alpha1",
			  "sandboxoverrides"},
};

const char *const sbx_job_state_names[] = {
	[SBX_JOB_NONE] = "Pending",
	[SBX_JOB_RUNNING] = "Running",
	[SBX_JOB_SUCCEEDED] = "Succeeded",
	[SBX_JOB_FAILED] = "Failed",
};

#define bad(err, errlen, ...) err_printf(err, errlen, -EINVAL, __VA_ARGS__)

/* ---- JSON helpers ----------------------------------------------------- */

/* o[k] as an object, made (replacing a non-object) when absent. */
static struct json_object *jchild(struct json_object *o, const char *k)
{
	struct json_object *v = k8s_jobj(o, k);

	if (v)
		return v;
	v = json_object_new_object();
	json_object_object_add(o, k, v);
	return v;
}

static void jset_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static struct json_object *jcopy(struct json_object *o)
{
	struct json_object *c = NULL;

	if (json_object_deep_copy(o, &c, NULL))
		return NULL;
	return c;
}

/* A label key or value as the API takes it: visible ASCII. */
static bool key_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > SBX_KEY_MAX)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x21 || c > 0x7e || c == ',' || c == ';' || c == '=' || c == '"' ||
		    c == '\\')
			return false;
	}
	return true;
}

/* ---- the Sandbox ------------------------------------------------------- */

int sbx_meta_decode(struct json_object *sb, struct sbx_meta *m, char *err, size_t errlen)
{
	struct json_object *md = k8s_jobj(sb, "metadata"), *spec = k8s_jobj(sb, "spec"), *fin;
	const char *s;
	uint64_t ttl;
	size_t j = 0;

	memset(m, 0, sizeof(*m));
	m->ns = k8s_jstr(md, "namespace");
	m->name = k8s_jstr(md, "name");
	m->uid = k8s_jstr(md, "uid");
	if (!m->ns || !m->name || !m->uid)
		return bad(err, errlen, "metadata: no namespace, name or uid");
	if (strlen(m->name) > 40)
		return bad(err, errlen, "metadata.name: longer than 40 characters");
	if (!spec)
		return bad(err, errlen, "spec: missing");
	m->generation = json_object_get_int64(k8s_jget(md, "generation"));
	s = k8s_jstr(md, "creationTimestamp");
	if (s && k8s_parse_time(s, &m->created_unix))
		return bad(err, errlen, "metadata.creationTimestamp: not an RFC 3339 time");
	m->deleting = k8s_jstr(md, "deletionTimestamp") != NULL;
	fin = k8s_jarr(md, "finalizers");
	for (size_t i = 0; i < k8s_jlen(fin); i++) {
		s = json_object_get_string(json_object_array_get_idx(fin, i));
		if (s && !strcmp(s, SBX_FINALIZER))
			m->has_finalizer = true;
	}
	if (k8s_jget(spec, "ttl")) {
		s = k8s_jstr(spec, "ttl");
		if (!s || parse_duration(s, &ttl) || !ttl)
			return bad(err, errlen, "spec.ttl: not a duration (e.g. 90m, 8h)");
		if (!m->created_unix)
			return bad(
				err, errlen,
				"metadata.creationTimestamp: missing, and spec.ttl counts from it");
		m->expires_unix = m->created_unix + ttl;
	}
	s = k8s_jstr(spec, "key");
	if (k8s_jget(spec, "key")) {
		if (!s || !key_ok(s))
			return bad(err, errlen,
				   "spec.key: 1-63 visible ASCII characters other than , ; = \" "
				   "and backslash");
		snprintf(m->key, sizeof(m->key), "%s", s);
		return 0;
	}
	/* sbx- and the uid's first 12 hex digits: stable across restarts and
	 * controllers, unique in practice. */
	memcpy(m->key, "sbx-", 4);
	for (s = m->uid, j = 4; *s && j < 16; s++)
		if ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))
			m->key[j++] = *s;
	m->key[j] = '\0';
	if (j < 8)
		return bad(err, errlen, "metadata.uid: too short to make a key from");
	m->key_generated = true;
	return 0;
}

/* ---- objects ------------------------------------------------------------ */

static uint64_t fnv64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static struct json_object *owner_ref(const struct sbx_meta *m)
{
	struct json_object *r = json_object_new_object(), *a = json_object_new_array();

	jset_str(r, "apiVersion", "shunt.dev/v1alpha1");
	jset_str(r, "kind", "Sandbox");
	jset_str(r, "name", m->name);
	jset_str(r, "uid", m->uid);
	json_object_object_add(r, "controller", json_object_new_boolean(1));
	json_object_object_add(r, "blockOwnerDeletion", json_object_new_boolean(1));
	json_object_array_add(a, r);
	return a;
}

/* Name, namespace, our labels and owner on obj (a template's metadata is
 * kept otherwise, minus what the server sets). */
static void own(struct json_object *obj, enum sbx_kind kind, const char *name,
		const struct sbx_meta *m)
{
	static const char *const server_set[] = {
		"uid",		 "resourceVersion",   "generateName",
		"generation",	 "creationTimestamp", "deletionTimestamp",
		"managedFields", "selfLink"};
	struct json_object *md = jchild(obj, "metadata"), *labels;

	jset_str(obj, "apiVersion", sbx_kinds[kind].api_version);
	jset_str(obj, "kind", sbx_kinds[kind].kind);
	for (size_t i = 0; i < sizeof(server_set) / sizeof(server_set[0]); i++)
		json_object_object_del(md, server_set[i]);
	json_object_object_del(obj, "status");
	jset_str(md, "name", name);
	jset_str(md, "namespace", m->ns);
	labels = jchild(md, "labels");
	jset_str(labels, SBX_LABEL, m->name);
	jset_str(labels, "app.kubernetes.io/managed-by", SBX_MANAGED_BY);
	json_object_object_add(md, "ownerReferences", owner_ref(m));
}

static struct sbx_obj *plan_add(struct sbx_plan *p, enum sbx_kind kind, enum sbx_role role,
				const char *name, const char *part, struct json_object *obj,
				const struct sbx_meta *m)
{
	struct sbx_obj *o;

	if (p->n == sizeof(p->objs) / sizeof(p->objs[0]) || !obj) {
		json_object_put(obj);
		return NULL;
	}
	o = &p->objs[p->n++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->role = role;
	o->part = part;
	snprintf(o->name, sizeof(o->name), "%s", name);
	own(obj, kind, name, m);
	o->obj = obj;
	return o;
}

/* The hash of everything we wrote, as an annotation: what tells a changed
 * object from one we made. */
static void seal(struct sbx_obj *o)
{
	struct json_object *ann;

	snprintf(o->hash, sizeof(o->hash), "%016" PRIx64,
		 fnv64(json_object_to_json_string_ext(o->obj, JSON_C_TO_STRING_PLAIN)));
	ann = jchild(jchild(o->obj, "metadata"), "annotations");
	jset_str(ann, SBX_ANN_HASH, o->hash);
}

static void add_labels(struct json_object *labels, const char *k1, const char *v1, const char *k2,
		       const char *v2)
{
	jset_str(labels, k1, v1);
	if (k2)
		jset_str(labels, k2, v2);
}

/* Does the Service's selector (non-empty) select pods with these labels? */
static bool selects(struct json_object *svc, struct json_object *labels)
{
	struct json_object *sel = k8s_jobj(k8s_jobj(svc, "spec"), "selector");
	bool any = false;

	if (!sel)
		return false;
	json_object_object_foreach(sel, k, v)
	{
		const char *want = json_object_get_string(v), *have = k8s_jstr(labels, k);

		if (!want || !have || strcmp(want, have))
			return false;
		any = true;
	}
	return any;
}

static void note(struct sbx_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct sbx_plan *p, const char *fmt, ...)
{
	va_list ap;

	if (p->nnotes == SBX_MAX_NOTES)
		return;
	va_start(ap, fmt);
	vsnprintf(p->notes[p->nnotes++], sizeof(p->notes[0]), fmt, ap);
	va_end(ap);
}

/* The workload, other than the baseline and not a Sandbox's, that the
 * Service selects too ("Deployment payments"); NULL: none. */
static const char *selects_other(struct json_object *svc, const struct sbx_inputs *in,
				 const char *baseline, char *buf, size_t len)
{
	static const char *const kinds[2] = {"Deployment", "StatefulSet"};

	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < k8s_jlen(in->workloads[k]); i++) {
			struct json_object *w = json_object_array_get_idx(in->workloads[k], i);
			struct json_object *md = k8s_jobj(w, "metadata");
			const char *name = k8s_jstr(md, "name");
			struct json_object *labels = k8s_jobj(
				k8s_jobj(k8s_jobj(k8s_jobj(w, "spec"), "template"), "metadata"),
				"labels");

			if (!name || (k == 0 && !strcmp(name, baseline)) ||
			    k8s_jstr(k8s_jobj(md, "labels"), SBX_LABEL) || !selects(svc, labels))
				continue;
			snprintf(buf, len, "%s %s", kinds[k], name);
			return buf;
		}
	return NULL;
}

/* The number of a Service port's targetPort in the pod template. */
static int target_port(struct json_object *port, struct json_object *tmpl)
{
	struct json_object *t = k8s_jget(port, "targetPort");
	struct json_object *ctrs = k8s_jarr(k8s_jobj(tmpl, "spec"), "containers");
	const char *name;

	if (!t)
		return (int)json_object_get_int(k8s_jget(port, "port"));
	if (json_object_is_type(t, json_type_int))
		return json_object_get_int(t);
	name = json_object_get_string(t);
	for (size_t i = 0; name && i < k8s_jlen(ctrs); i++) {
		struct json_object *ps = k8s_jarr(json_object_array_get_idx(ctrs, i), "ports");

		for (size_t j = 0; j < k8s_jlen(ps); j++) {
			struct json_object *p = json_object_array_get_idx(ps, j);
			const char *pn = k8s_jstr(p, "name");

			if (pn && !strcmp(pn, name))
				return json_object_get_int(k8s_jget(p, "containerPort"));
		}
	}
	return 0;
}

/* Find the array member whose "name" is name. */
static int by_name(struct json_object *a, const char *name)
{
	if (!name)
		return -1;
	for (size_t i = 0; i < k8s_jlen(a); i++) {
		const char *n = k8s_jstr(json_object_array_get_idx(a, i), "name");

		if (n && !strcmp(n, name))
			return (int)i;
	}
	return -1;
}

static void array_del(struct json_object *a, int i)
{
	json_object_array_del_idx(a, (size_t)i, 1);
}

/* One container's changes (spec.forks[fi].containers[ci]). */
static int change_container(struct json_object *ctr, struct json_object *chg, size_t fi, size_t ci,
			    char *err, size_t errlen)
{
	static const char *const lists[] = {"command", "args"};
	struct json_object *env, *v;
	const char *s;

	if ((s = k8s_jstr(chg, "image")))
		jset_str(ctr, "image", s);
	for (size_t i = 0; i < 2; i++)
		if ((v = k8s_jarr(chg, lists[i])))
			json_object_object_add(ctr, lists[i], jcopy(v));
	env = k8s_jarr(ctr, "env");
	v = k8s_jarr(chg, "removeEnv");
	for (size_t i = 0; env && i < k8s_jlen(v); i++) {
		int at = by_name(env, json_object_get_string(json_object_array_get_idx(v, i)));

		if (at >= 0)
			array_del(env, at);
	}
	v = k8s_jarr(chg, "env");
	for (size_t i = 0; i < k8s_jlen(v); i++) {
		struct json_object *e = json_object_array_get_idx(v, i), *ne;
		const char *name = k8s_jstr(e, "name");
		int at;

		if (!name)
			return bad(err, errlen, "spec.forks[%zu].containers[%zu].env[%zu]: no name",
				   fi, ci, i);
		if (!env) {
			env = json_object_new_array();
			json_object_object_add(ctr, "env", env);
		}
		ne = json_object_new_object();
		jset_str(ne, "name", name);
		jset_str(ne, "value", k8s_jstr(e, "value") ? k8s_jstr(e, "value") : "");
		at = by_name(env, name);
		if (at >= 0)
			json_object_array_put_idx(env, (size_t)at, ne);
		else
			json_object_array_add(env, ne);
	}
	return 0;
}

/* Drop from labels every key a selector of the baseline uses. */
static void drop_selector_keys(struct json_object *labels, struct json_object *base,
			       struct json_object *services, struct json_object *base_labels)
{
	struct json_object *sel = k8s_jobj(k8s_jobj(base, "spec"), "selector");
	struct json_object *ml = k8s_jobj(sel, "matchLabels"),
			   *me = k8s_jarr(sel, "matchExpressions");

	if (ml) {
		json_object_object_foreach(ml, k1, v1)
		{
			(void)v1;
			json_object_object_del(labels, k1);
		}
	}
	for (size_t i = 0; i < k8s_jlen(me); i++) {
		const char *k = k8s_jstr(json_object_array_get_idx(me, i), "key");

		if (k)
			json_object_object_del(labels, k);
	}
	for (size_t i = 0; i < k8s_jlen(services); i++) {
		struct json_object *svc = json_object_array_get_idx(services, i);

		if (!selects(svc, base_labels))
			continue;
		json_object_object_foreach(k8s_jobj(k8s_jobj(svc, "spec"), "selector"), k, v)
		{
			(void)v;
			json_object_object_del(labels, k);
		}
	}
}

static int plan_fork(struct sbx_plan *p, const struct sbx_meta *m, struct json_object *spec,
		     struct json_object *fork, size_t fi, const struct sbx_inputs *in, char *err,
		     size_t errlen)
{
	struct json_object *base = fi < in->nbaselines ? in->baselines[fi] : NULL;
	struct json_object *services = in->services;
	const char *dep = k8s_jstr(fork, "deployment");
	struct json_object *tmpl, *labels, *ctrs, *chg, *d, *dspec, *ml;
	struct json_object *base_labels;
	char name[128];
	size_t first_route;
	struct sbx_obj *o;
	int ret;

	if (!dep)
		return bad(err, errlen, "spec.forks[%zu].deployment: missing", fi);
	if (!base)
		return bad(err, errlen, "spec.forks[%zu]: Deployment %s/%s not found", fi, m->ns,
			   dep);
	tmpl = k8s_jobj(k8s_jobj(base, "spec"), "template");
	base_labels = k8s_jobj(k8s_jobj(tmpl, "metadata"), "labels");
	if (!tmpl || !k8s_jarr(k8s_jobj(tmpl, "spec"), "containers"))
		return bad(err, errlen, "Deployment %s/%s: no pod template", m->ns, dep);
	tmpl = jcopy(tmpl);
	if (!tmpl)
		return -ENOMEM;
	labels = jchild(jchild(tmpl, "metadata"), "labels");
	drop_selector_keys(labels, base, services, base_labels);
	add_labels(labels, SBX_LABEL, m->name, SBX_LABEL_FORK, dep);
	ctrs = k8s_jarr(k8s_jobj(tmpl, "spec"), "containers");
	chg = k8s_jarr(fork, "containers");
	for (size_t ci = 0; ci < k8s_jlen(chg); ci++) {
		struct json_object *c = json_object_array_get_idx(chg, ci);
		const char *cn = k8s_jstr(c, "name");
		int at = cn ? by_name(ctrs, cn) : -1;

		if (at < 0) {
			json_object_put(tmpl);
			return bad(err, errlen,
				   "spec.forks[%zu].containers[%zu]: Deployment %s has no "
				   "container %s",
				   fi, ci, dep, cn ? cn : "(no name)");
		}
		ret = change_container(json_object_array_get_idx(ctrs, (size_t)at), c, fi, ci, err,
				       errlen);
		if (ret) {
			json_object_put(tmpl);
			return ret;
		}
	}
	d = json_object_new_object();
	dspec = jchild(d, "spec");
	json_object_object_add(
		dspec, "replicas",
		json_object_new_int64(k8s_jget(fork, "replicas")
					      ? json_object_get_int64(k8s_jget(fork, "replicas"))
					      : 1));
	ml = jchild(jchild(dspec, "selector"), "matchLabels");
	add_labels(ml, SBX_LABEL, m->name, SBX_LABEL_FORK, dep);
	json_object_object_add(dspec, "template", tmpl);
	snprintf(name, sizeof(name), "%s-%s", m->name, dep);
	o = plan_add(p, SBX_DEPLOYMENT, SBX_ROLE_FORK, name, dep, d, m);
	if (!o)
		return bad(err, errlen, "too many objects");
	add_labels(k8s_jobj(k8s_jobj(d, "metadata"), "labels"), SBX_LABEL_FORK, dep, NULL, NULL);
	jset_str(jchild(k8s_jobj(d, "metadata"), "annotations"), SBX_ANN_BASELINE, dep);
	seal(o);

	/* A SandboxRoute per TCP port of each Service selecting the baseline. */
	first_route = p->n;
	for (size_t i = 0; i < k8s_jlen(services); i++) {
		struct json_object *svc = json_object_array_get_idx(services, i);
		struct json_object *ports = k8s_jarr(k8s_jobj(svc, "spec"), "ports");
		const char *sname = k8s_jstr(k8s_jobj(svc, "metadata"), "name");

		char other[128];

		if (!sname || !selects(svc, base_labels))
			continue;
		if (selects_other(svc, in, dep, other, sizeof(other))) {
			note(p, "Service %s: not steered, it selects %s too", sname, other);
			continue;
		}
		for (size_t j = 0; j < k8s_jlen(ports); j++) {
			struct json_object *port = json_object_array_get_idx(ports, j);
			const char *proto = k8s_jstr(port, "protocol");
			int sport = json_object_get_int(k8s_jget(port, "port"));
			int tport = target_port(port, tmpl);
			struct json_object *r, *rs, *sb, *a;

			if (proto && strcmp(proto, "TCP"))
				continue;
			if (tport <= 0 || tport > 65535 || sport <= 0 || sport > 65535) {
				note(p,
				     "Service %s port %d: not steered, its targetPort is no port "
				     "of the fork",
				     sname, sport);
				continue;
			}
			if (p->n - first_route >= SBX_MAX_ROUTES)
				return bad(err, errlen, "more than %d Service ports select %s",
					   SBX_MAX_ROUTES, dep);
			r = json_object_new_object();
			rs = jchild(r, "spec");
			a = json_object_new_array();
			jset_str(jchild(rs, "service"), "name", sname);
			json_object_array_add(a, json_object_new_int(sport));
			json_object_object_add(k8s_jobj(rs, "service"), "ports", a);
			a = json_object_new_array();
			json_object_array_add(a, json_object_new_string(m->key));
			json_object_object_add(rs, "keys", a);
			sb = jchild(rs, "sandbox");
			add_labels(jchild(jchild(sb, "selector"), "matchLabels"), SBX_LABEL,
				   m->name, SBX_LABEL_FORK, dep);
			json_object_object_add(sb, "port", json_object_new_int(tport));
			if (k8s_jstr(spec, "fallback"))
				jset_str(rs, "fallback", k8s_jstr(spec, "fallback"));
			snprintf(name, sizeof(name), "%s-%s-%d", m->name, sname, sport);
			o = plan_add(p, SBX_ROUTE, SBX_ROLE_ROUTE, name, dep, r, m);
			if (!o)
				return bad(err, errlen, "too many objects");
			seal(o);
		}
	}
	return 0;
}

static enum sbx_kind resource_kind(struct json_object *tmpl)
{
	const char *av = k8s_jstr(tmpl, "apiVersion"), *k = k8s_jstr(tmpl, "kind");

	for (int i = SBX_DEPLOYMENT; av && k && i <= SBX_JOB; i++)
		if (!strcmp(av, sbx_kinds[i].api_version) && !strcmp(k, sbx_kinds[i].kind))
			return (enum sbx_kind)i;
	return SBX_NKINDS;
}

/* Add our labels to a pod template's labels, and to a workload's selector. */
static void scope_pods(struct json_object *spec, const struct sbx_meta *m, const char *k2,
		       const char *v2, bool selector)
{
	add_labels(jchild(jchild(jchild(spec, "template"), "metadata"), "labels"), SBX_LABEL,
		   m->name, k2, v2);
	if (selector)
		add_labels(jchild(jchild(spec, "selector"), "matchLabels"), SBX_LABEL, m->name, k2,
			   v2);
}

static int plan_resource(struct sbx_plan *p, const struct sbx_meta *m, struct json_object *res,
			 size_t ri, struct json_object *all, char *err, size_t errlen)
{
	const char *rname = k8s_jstr(res, "name"), *tns;
	struct json_object *tmpl = k8s_jobj(res, "template"), *obj, *spec, *sel;
	enum sbx_kind kind = resource_kind(tmpl);
	char name[128];
	struct sbx_obj *o;

	if (!rname || !tmpl)
		return bad(err, errlen, "spec.resources[%zu]: name and template are required", ri);
	if (kind == SBX_NKINDS)
		return bad(err, errlen,
			   "spec.resources[%zu].template: not an apps/v1 Deployment or "
			   "StatefulSet, v1 Service or ConfigMap, or batch/v1 Job",
			   ri);
	tns = k8s_jstr(k8s_jobj(tmpl, "metadata"), "namespace");
	if (tns && strcmp(tns, m->ns))
		return bad(err, errlen,
			   "spec.resources[%zu].template.metadata.namespace: %s is not the "
			   "Sandbox's namespace",
			   ri, tns);
	obj = jcopy(tmpl);
	if (!obj)
		return -ENOMEM;
	spec = k8s_jobj(obj, "spec");
	switch (kind) {
	case SBX_DEPLOYMENT:
	case SBX_STATEFULSET:
		if (!spec)
			break;
		scope_pods(spec, m, SBX_LABEL_RESOURCE, rname, true);
		/* Its volume claims go with it (they are not owned otherwise). */
		if (kind == SBX_STATEFULSET &&
		    !k8s_jget(spec, "persistentVolumeClaimRetentionPolicy")) {
			struct json_object *r =
				jchild(spec, "persistentVolumeClaimRetentionPolicy");

			jset_str(r, "whenDeleted", "Delete");
			jset_str(r, "whenScaled", "Retain");
		}
		if (kind == SBX_STATEFULSET && k8s_jstr(spec, "serviceName")) {
			const char *sn = k8s_jstr(spec, "serviceName");

			for (size_t i = 0; i < k8s_jlen(all); i++)
				if (!strcmp(sn, k8s_jstr(json_object_array_get_idx(all, i), "name")
							?: "")) {
					snprintf(name, sizeof(name), "%s-%s", m->name, sn);
					jset_str(spec, "serviceName", name);
					break;
				}
		}
		break;
	case SBX_SERVICE:
		sel = k8s_jobj(spec, "selector");
		if (sel && json_object_object_length(sel))
			jset_str(sel, SBX_LABEL, m->name);
		break;
	case SBX_JOB:
		if (spec)
			scope_pods(spec, m, SBX_LABEL_RESOURCE, rname, false);
		break;
	default:
		break;
	}
	snprintf(name, sizeof(name), "%s-%s", m->name, rname);
	o = plan_add(p, kind, SBX_ROLE_RESOURCE, name, rname, obj, m);
	if (!o)
		return bad(err, errlen, "too many objects");
	jset_str(k8s_jobj(k8s_jobj(obj, "metadata"), "labels"), SBX_LABEL_RESOURCE, rname);
	seal(o);
	return 0;
}

static int plan_hook(struct sbx_plan *p, const struct sbx_meta *m, struct json_object *hook,
		     const char *which, char *err, size_t errlen)
{
	struct json_object *job, *spec;
	char name[128];
	struct sbx_obj *o;

	if (!k8s_jobj(hook, "template"))
		return bad(err, errlen, "spec.hooks.%s: a JobSpec with a template", which);
	spec = jcopy(hook);
	if (!spec)
		return -ENOMEM;
	scope_pods(spec, m, SBX_LABEL_HOOK, which, false);
	job = json_object_new_object();
	json_object_object_add(job, "spec", spec);
	snprintf(name, sizeof(name), "%s-hook-%s", m->name, which);
	o = plan_add(p, SBX_JOB, which[0] == 'c' ? SBX_ROLE_HOOK_CREATE : SBX_ROLE_HOOK_DELETE,
		     name, which[0] == 'c' ? "create" : "delete", job, m);
	if (!o)
		return bad(err, errlen, "too many objects");
	jset_str(k8s_jobj(k8s_jobj(job, "metadata"), "labels"), SBX_LABEL_HOOK, which);
	seal(o);
	return 0;
}

static int plan_override(struct sbx_plan *p, const struct sbx_meta *m, struct json_object *ov,
			 size_t oi, struct json_object *resources, char *err, size_t errlen)
{
	struct json_object *to = k8s_jobj(ov, "to"), *dst = k8s_jobj(ov, "destination"), *sbo,
			   *spec, *ps, *expr, *a, *nto;
	const char *rname = k8s_jstr(to, "resource");
	int at = rname ? by_name(resources, rname) : -1;
	enum sbx_kind kind;
	char name[128];
	struct sbx_obj *o;

	if (at < 0 || !dst)
		return bad(err, errlen, "spec.overrides[%zu]: to.resource names no resource", oi);
	kind = resource_kind(
		k8s_jobj(json_object_array_get_idx(resources, (size_t)at), "template"));
	if (kind != SBX_SERVICE && kind != SBX_DEPLOYMENT && kind != SBX_STATEFULSET)
		return bad(err, errlen,
			   "spec.overrides[%zu].to.resource: %s is not a Service, Deployment or "
			   "StatefulSet",
			   oi, rname);
	sbo = json_object_new_object();
	spec = jchild(sbo, "spec");
	ps = jchild(spec, "podSelector");
	jset_str(jchild(ps, "matchLabels"), SBX_LABEL, m->name);
	expr = json_object_new_object();
	jset_str(expr, "key", SBX_LABEL_FORK);
	jset_str(expr, "operator", "Exists");
	a = json_object_new_array();
	json_object_array_add(a, expr);
	json_object_object_add(ps, "matchExpressions", a);
	json_object_object_add(spec, "destination", jcopy(dst));
	nto = jchild(spec, "to");
	snprintf(name, sizeof(name), "%s-%s", m->name, rname);
	if (kind == SBX_SERVICE)
		jset_str(nto, "service", name);
	else
		add_labels(jchild(jchild(nto, "selector"), "matchLabels"), SBX_LABEL, m->name,
			   SBX_LABEL_RESOURCE, rname);
	json_object_object_add(nto, "port",
			       json_object_new_int(json_object_get_int(k8s_jget(to, "port"))));
	snprintf(name, sizeof(name), "%s-override-%zu", m->name, oi);
	o = plan_add(p, SBX_OVERRIDE, SBX_ROLE_OVERRIDE, name, rname, sbo, m);
	if (!o)
		return bad(err, errlen, "too many objects");
	seal(o);
	return 0;
}

int sbx_plan_make(struct json_object *sb, const struct sbx_meta *m, const struct sbx_inputs *in,
		  struct sbx_plan *plan, char *err, size_t errlen)
{
	struct json_object *spec = k8s_jobj(sb, "spec"), *forks = k8s_jarr(spec, "forks");
	struct json_object *res = k8s_jarr(spec, "resources"), *ovr = k8s_jarr(spec, "overrides");
	struct json_object *hooks = k8s_jobj(spec, "hooks");
	int ret = 0;

	memset(plan, 0, sizeof(*plan));
	if (!k8s_jlen(forks) || k8s_jlen(forks) > SBX_MAX_FORKS)
		return bad(err, errlen, "spec.forks: 1 to %d forks", SBX_MAX_FORKS);
	if (k8s_jlen(res) > SBX_MAX_RESOURCES || k8s_jlen(ovr) > SBX_MAX_OVERRIDES)
		return bad(err, errlen, "spec: at most %d resources and %d overrides",
			   SBX_MAX_RESOURCES, SBX_MAX_OVERRIDES);
	for (size_t i = 0; !ret && i < k8s_jlen(res); i++)
		ret = plan_resource(plan, m, json_object_array_get_idx(res, i), i, res, err,
				    errlen);
	if (!ret && k8s_jobj(hooks, "create"))
		ret = plan_hook(plan, m, k8s_jobj(hooks, "create"), "create", err, errlen);
	if (!ret && k8s_jobj(hooks, "delete"))
		ret = plan_hook(plan, m, k8s_jobj(hooks, "delete"), "delete", err, errlen);
	for (size_t i = 0; !ret && i < k8s_jlen(ovr); i++)
		ret = plan_override(plan, m, json_object_array_get_idx(ovr, i), i, res, err,
				    errlen);
	for (size_t i = 0; !ret && i < k8s_jlen(forks); i++)
		ret = plan_fork(plan, m, spec, json_object_array_get_idx(forks, i), i, in, err,
				errlen);
	/* Two parts with one name (a fork's route and a resource, say). */
	for (size_t i = 0; !ret && i < plan->n; i++)
		for (size_t j = i + 1; !ret && j < plan->n; j++)
			if (plan->objs[i].kind == plan->objs[j].kind &&
			    !strcmp(plan->objs[i].name, plan->objs[j].name))
				ret = bad(err, errlen, "two %ss would be named %s",
					  sbx_kinds[plan->objs[i].kind].kind, plan->objs[i].name);
	if (ret)
		sbx_plan_free(plan);
	return ret;
}

int sbx_plan_hook(struct json_object *sb, const struct sbx_meta *m, const char *which,
		  struct sbx_plan *plan, char *err, size_t errlen)
{
	struct json_object *hook = k8s_jobj(k8s_jobj(k8s_jobj(sb, "spec"), "hooks"), which);

	memset(plan, 0, sizeof(*plan));
	if (!hook)
		return bad(err, errlen, "spec.hooks.%s: missing", which);
	return plan_hook(plan, m, hook, which, err, errlen);
}

void sbx_plan_free(struct sbx_plan *plan)
{
	for (size_t i = 0; i < plan->n; i++)
		json_object_put(plan->objs[i].obj);
	plan->n = 0;
}

bool sbx_owned(struct json_object *obj, const char *uid)
{
	struct json_object *refs = k8s_jarr(k8s_jobj(obj, "metadata"), "ownerReferences");

	for (size_t i = 0; i < k8s_jlen(refs); i++) {
		struct json_object *r = json_object_array_get_idx(refs, i);
		const char *u = k8s_jstr(r, "uid");

		if (u && !strcmp(u, uid) && json_object_get_boolean(k8s_jget(r, "controller")))
			return true;
	}
	return false;
}

const char *sbx_obj_hash(struct json_object *obj)
{
	const char *h = k8s_jstr(k8s_jobj(k8s_jobj(obj, "metadata"), "annotations"), SBX_ANN_HASH);

	return h ? h : "";
}

bool sbx_workload_ready(struct json_object *obj, int64_t *replicas, int64_t *ready)
{
	struct json_object *spec = k8s_jobj(obj, "spec"), *st = k8s_jobj(obj, "status");
	int64_t want =
		k8s_jget(spec, "replicas") ? json_object_get_int64(k8s_jget(spec, "replicas")) : 1;
	int64_t gen = json_object_get_int64(k8s_jget(k8s_jobj(obj, "metadata"), "generation"));
	int64_t seen = json_object_get_int64(k8s_jget(st, "observedGeneration"));
	int64_t rdy = json_object_get_int64(k8s_jget(st, "readyReplicas"));
	int64_t upd = json_object_get_int64(k8s_jget(st, "updatedReplicas"));

	*replicas = want;
	*ready = rdy;
	if (!want)
		return seen >= gen;
	return seen >= gen && rdy >= want && upd >= want;
}

enum sbx_job_state sbx_job_state(struct json_object *job)
{
	struct json_object *conds = k8s_jarr(k8s_jobj(job, "status"), "conditions");

	if (!job)
		return SBX_JOB_NONE;
	for (size_t i = 0; i < k8s_jlen(conds); i++) {
		struct json_object *c = json_object_array_get_idx(conds, i);
		const char *t = k8s_jstr(c, "type"), *s = k8s_jstr(c, "status");

		if (!t || !s || strcmp(s, "True"))
			continue;
		if (!strcmp(t, "Complete"))
			return SBX_JOB_SUCCEEDED;
		if (!strcmp(t, "Failed"))
			return SBX_JOB_FAILED;
	}
	return SBX_JOB_RUNNING;
}

struct json_object *sbx_ready(struct json_object *sb)
{
	struct json_object *c = k8s_jarr(k8s_jobj(sb, "status"), "conditions");

	for (size_t i = 0; i < k8s_jlen(c); i++) {
		struct json_object *e = json_object_array_get_idx(c, i);

		if (!strcmp(k8s_jstr(e, "type") ?: "", "Ready"))
			return e;
	}
	return NULL;
}

struct json_object *sbx_finalizers(struct json_object *obj, bool add)
{
	struct json_object *fin = k8s_jarr(k8s_jobj(obj, "metadata"), "finalizers");
	struct json_object *out = json_object_new_array();

	for (size_t i = 0; i < k8s_jlen(fin); i++) {
		struct json_object *f = json_object_array_get_idx(fin, i);

		if (strcmp(json_object_get_string(f) ?: "", SBX_FINALIZER))
			json_object_array_add(out, json_object_get(f));
	}
	if (add)
		json_object_array_add(out, json_object_new_string(SBX_FINALIZER));
	return out;
}

char *sbx_time(uint64_t unix_s, char *buf, size_t len)
{
	time_t t = (time_t)unix_s;
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "1970-01-01T00:00:00Z");
	return buf;
}
