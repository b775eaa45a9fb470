// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Decoding of the five kinds of Kubernetes objects the agent follows. The
 * API server validates what it stores, but a custom resource's schema may
 * be missing or looser than ours, and other clients write the objects: every
 * field used here is checked for type, range and length, and an object that
 * does not fit is refused as a whole with the field's path in the message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "k8s/obj.h"
#include "state/routes.h"
#include "core/util.h"

const char *const k8s_kind_names[K8S_NKINDS] = {
	[K8S_SBR] = "sandboxroutes", [K8S_SERVICE] = "services",     [K8S_SLICE] = "endpointslices",
	[K8S_POD] = "pods",	     [K8S_SBO] = "sandboxoverrides",
};

#define SERVICE_NAME_LABEL "kubernetes.io/service-name"

/* An object refused, with why. */
#define bad(err, errlen, ...) err_printf(err, errlen, -EINVAL, __VA_ARGS__)

/* A member of a JSON object; NULL when o is not an object, the member is
 * absent, or it is null (the API writes null for "not set"). */
struct json_object *k8s_jget(struct json_object *o, const char *k)
{
	struct json_object *v = NULL;

	if (!o || !json_object_is_type(o, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(o, k, &v))
		return NULL;
	return v;
}

const char *k8s_jstr(struct json_object *o, const char *k)
{
	struct json_object *v = k8s_jget(o, k);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

struct json_object *k8s_jobj(struct json_object *o, const char *k)
{
	struct json_object *v = k8s_jget(o, k);

	return v && json_object_is_type(v, json_type_object) ? v : NULL;
}

struct json_object *k8s_jarr(struct json_object *o, const char *k)
{
	struct json_object *v = k8s_jget(o, k);

	return v && json_object_is_type(v, json_type_array) ? v : NULL;
}

size_t k8s_jlen(struct json_object *a)
{
	return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

static bool visible(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* v as a string of at most max visible ASCII bytes (min_len..max); NULL
 * when it is anything else. */
static const char *jstring(struct json_object *v, size_t min_len, size_t max)
{
	const char *s;
	int len;

	if (!v || !json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	len = json_object_get_string_len(v);
	if (len < 0 || (size_t)len < min_len || (size_t)len > max || strlen(s) != (size_t)len ||
	    !visible(s, (size_t)len))
		return NULL;
	return s;
}

static int jport(struct json_object *v, uint16_t *out)
{
	int64_t n;

	if (!v || !json_object_is_type(v, json_type_int))
		return -EINVAL;
	n = json_object_get_int64(v);
	if (n < 1 || n > 65535)
		return -EINVAL;
	*out = (uint16_t)n;
	return 0;
}

/* An array of at most max members (absent or null: 0 members). -EINVAL
 * when v is something else or too long. */
static int jarray(struct json_object *v, size_t max, size_t *n)
{
	*n = 0;
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_array))
		return -EINVAL;
	*n = json_object_array_length(v);
	return *n > max ? -EINVAL : 0;
}

/* An IP address as the API writes it: no brackets, no port. */
static int ip_parse(const char *s, struct shunt_addr *a)
{
	if (!s || s[0] == '[' || parse_addr(s, a))
		return -EINVAL;
	return 0;
}

int k8s_object_id(struct json_object *obj, char *buf, size_t len)
{
	struct json_object *md = k8s_jget(obj, "metadata");
	const char *ns = jstring(k8s_jget(md, "namespace"), 1, K8S_NAME_MAX);
	const char *name = jstring(k8s_jget(md, "name"), 1, K8S_NAME_MAX);

	if (!ns || !name || strchr(ns, '/') || strchr(name, '/')) {
		snprintf(buf, len, "%s/%s", ns ? ns : "?", name ? name : "?");
		return -EINVAL;
	}
	snprintf(buf, len, "%s/%s", ns, name);
	return 0;
}

const char *k8s_object_rv(struct json_object *obj)
{
	return jstring(k8s_jget(k8s_jget(obj, "metadata"), "resourceVersion"), 1, 128);
}

static void meta_free(struct k8s_meta *m)
{
	free(m->id); /* ns and name live in the same allocation */
}

static int meta_decode(struct json_object *obj, struct k8s_meta *m, char *err, size_t errlen)
{
	char id[K8S_ID_MAX];
	size_t len, nslen;

	if (!json_object_is_type(obj, json_type_object))
		return bad(err, errlen, "not a JSON object");
	if (k8s_object_id(obj, id, sizeof(id)))
		return bad(err, errlen, "metadata.name/namespace missing or invalid");
	/* "ns/name\0ns\0name\0": the id, then each part. */
	len = strlen(id);
	nslen = strcspn(id, "/");
	m->id = malloc(2 * len + 2);
	if (!m->id)
		return -ENOMEM;
	memcpy(m->id, id, len + 1);
	m->ns = m->id + len + 1;
	memcpy(m->ns, id, nslen);
	m->ns[nslen] = '\0';
	m->name = m->ns + nslen + 1;
	memcpy(m->name, id + nslen + 1, len - nslen); /* with its NUL */
	return 0;
}

/* Labels at path; with keep, only those whose key is in it (the others
 * are checked all the same). */
static int labels_decode(struct json_object *v, const char *path, const struct hmap *keep,
			 struct k8s_label **out, size_t *n, char *err, size_t errlen)
{
	size_t cnt, i = 0;

	*out = NULL;
	*n = 0;
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_object))
		return bad(err, errlen, "%s: not an object", path);
	cnt = (size_t)json_object_object_length(v);
	if (cnt > K8S_MAX_LABELS)
		return bad(err, errlen, "%s: %zu labels, more than %d", path, cnt, K8S_MAX_LABELS);
	if (!cnt)
		return 0;
	*out = calloc(cnt, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	json_object_object_foreach(v, key, val)
	{
		const char *s = jstring(val, 0, K8S_LABEL_VAL_MAX);
		size_t klen = strlen(key);

		if (!klen || klen > K8S_LABEL_KEY_MAX || !visible(key, klen))
			return bad(err, errlen, "%s: invalid label key", path);
		if (!s)
			return bad(err, errlen, "%s.%s: not a label value", path, key);
		if (i == cnt)
			break;
		if (keep && !hmap_get(keep, key, klen))
			continue;
		(*out)[i].key = strdup(key);
		(*out)[i].val = strdup(s);
		*n = ++i;
		if (!(*out)[i - 1].key || !(*out)[i - 1].val)
			return -ENOMEM;
	}
	if (!i) {
		free(*out);
		*out = NULL;
	}
	return 0;
}

static void labels_free(struct k8s_label *l, size_t n)
{
	for (size_t i = 0; l && i < n; i++) {
		free(l[i].key);
		free(l[i].val);
	}
	free(l);
}

static const char *label_get(const struct k8s_label *l, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(l[i].key, key))
			return l[i].val;
	return NULL;
}

bool k8s_labels_match(const struct k8s_selector *sel, const struct k8s_label *labels,
		      size_t nlabels)
{
	for (size_t i = 0; i < sel->nmatch; i++) {
		const char *v = label_get(labels, nlabels, sel->match[i].key);

		if (!v || strcmp(v, sel->match[i].val))
			return false;
	}
	for (size_t i = 0; i < sel->nexpr; i++) {
		const struct k8s_expr *e = &sel->expr[i];
		const char *v = label_get(labels, nlabels, e->key);
		bool in = false;

		for (size_t j = 0; v && j < e->nvalues && !in; j++)
			in = !strcmp(v, e->values[j]);
		switch (e->op) {
		case K8S_SEL_IN:
			if (!in)
				return false;
			break;
		case K8S_SEL_NOT_IN:
			if (in)
				return false;
			break;
		case K8S_SEL_EXISTS:
			if (!v)
				return false;
			break;
		case K8S_SEL_NOT_EXISTS:
			if (v)
				return false;
			break;
		}
	}
	return true;
}

struct k8s_selector k8s_sbr_selector(const struct k8s_sbr *r)
{
	return (struct k8s_selector){
		.match = r->match, .nmatch = r->nmatch, .expr = r->expr, .nexpr = r->nexpr};
}

bool k8s_selector_match(const struct k8s_sbr *r, const struct k8s_label *labels, size_t nlabels)
{
	const struct k8s_selector sel = k8s_sbr_selector(r);

	return k8s_labels_match(&sel, labels, nlabels);
}

static int expr_decode(struct json_object *v, const char *path, struct k8s_expr *e, size_t idx,
		       char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum k8s_sel_op op;
	} ops[] = {
		{"In", K8S_SEL_IN},
		{"NotIn", K8S_SEL_NOT_IN},
		{"Exists", K8S_SEL_EXISTS},
		{"DoesNotExist", K8S_SEL_NOT_EXISTS},
	};
	const char *key = jstring(k8s_jget(v, "key"), 1, K8S_LABEL_KEY_MAX);
	const char *op = jstring(k8s_jget(v, "operator"), 1, 16);
	struct json_object *vals = k8s_jget(v, "values");
	size_t nv, i;
	bool found = false;

	if (!json_object_is_type(v, json_type_object) || !key)
		return bad(err, errlen, "%s.matchExpressions[%zu].key: invalid", path, idx);
	for (i = 0; op && i < sizeof(ops) / sizeof(ops[0]) && !found; i++)
		if (!strcmp(op, ops[i].name)) {
			e->op = ops[i].op;
			found = true;
		}
	if (!found)
		return bad(err, errlen,
			   "%s.matchExpressions[%zu].operator: not In, NotIn, Exists or "
			   "DoesNotExist",
			   path, idx);
	if (jarray(vals, K8S_MAX_EXPR_VALUES, &nv))
		return bad(err, errlen,
			   "%s.matchExpressions[%zu].values: not an array of at most %d", path, idx,
			   K8S_MAX_EXPR_VALUES);
	if ((e->op == K8S_SEL_IN || e->op == K8S_SEL_NOT_IN) != (nv > 0))
		return bad(err, errlen, "%s.matchExpressions[%zu].values: %s for %s", path, idx,
			   nv ? "not allowed" : "required", op);
	e->key = strdup(key);
	if (!e->key)
		return -ENOMEM;
	if (nv) {
		e->values = calloc(nv, sizeof(*e->values));
		if (!e->values)
			return -ENOMEM;
	}
	for (i = 0; i < nv; i++) {
		const char *s = jstring(json_object_array_get_idx(vals, i), 0, K8S_LABEL_VAL_MAX);

		if (!s)
			return bad(err, errlen,
				   "%s.matchExpressions[%zu].values[%zu]: not a label value", path,
				   idx, i);
		e->values[i] = strdup(s);
		e->nvalues = i + 1;
		if (!e->values[i])
			return -ENOMEM;
	}
	return 0;
}

/* A metav1.LabelSelector at path; an empty one is refused. */
static int selector_decode(struct json_object *sel, const char *path, struct k8s_selector *out,
			   char *err, size_t errlen)
{
	char p[96];
	size_t n;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(sel, json_type_object))
		return bad(err, errlen, "%s: not an object", path);
	snprintf(p, sizeof(p), "%s.matchLabels", path);
	ret = labels_decode(k8s_jget(sel, "matchLabels"), p, NULL, &out->match, &out->nmatch, err,
			    errlen);
	if (ret)
		return ret;
	if (jarray(k8s_jget(sel, "matchExpressions"), K8S_MAX_EXPRS, &n))
		return bad(err, errlen, "%s.matchExpressions: not an array of at most %d", path,
			   K8S_MAX_EXPRS);
	if (n) {
		out->expr = calloc(n, sizeof(*out->expr));
		if (!out->expr)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		out->nexpr = i + 1;
		ret = expr_decode(json_object_array_get_idx(k8s_jget(sel, "matchExpressions"), i),
				  path, &out->expr[i], i, err, errlen);
		if (ret)
			return ret;
	}
	/* An empty selector selects every pod of the namespace: never what a
	 * sandbox means, and the lowest pod IP would get the traffic. */
	if (!out->nmatch && !out->nexpr)
		return bad(err, errlen, "%s: empty (it would select every pod)", path);
	return 0;
}

static void selector_free(struct k8s_selector *sel)
{
	labels_free(sel->match, sel->nmatch);
	for (size_t i = 0; sel->expr && i < sel->nexpr; i++) {
		free(sel->expr[i].key);
		for (size_t j = 0; j < sel->expr[i].nvalues; j++)
			free(sel->expr[i].values[j]);
		free(sel->expr[i].values);
	}
	free(sel->expr);
	memset(sel, 0, sizeof(*sel));
}

static int sandbox_decode(struct json_object *sb, struct k8s_sbr *r, char *err, size_t errlen)
{
	struct json_object *sel = k8s_jget(sb, "selector"), *addrs = k8s_jget(sb, "addresses");
	struct k8s_selector tmp;
	size_t n;
	int ret;

	if (!sb || !json_object_is_type(sb, json_type_object))
		return bad(err, errlen, "spec.sandbox: missing or not an object");
	if (jport(k8s_jget(sb, "port"), &r->port))
		return bad(err, errlen, "spec.sandbox.port: not a port number (1..65535)");
	if (!sel == !addrs)
		return bad(err, errlen,
			   "spec.sandbox: exactly one of selector and addresses is required");
	if (addrs) {
		if (jarray(addrs, K8S_MAX_ADDRS, &n) || !n)
			return bad(err, errlen,
				   "spec.sandbox.addresses: not an array of 1..%d addresses",
				   K8S_MAX_ADDRS);
		r->addrs = calloc(n, sizeof(*r->addrs));
		if (!r->addrs)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			if (ip_parse(jstring(json_object_array_get_idx(addrs, i), 1, 64),
				     &r->addrs[i]))
				return bad(err, errlen,
					   "spec.sandbox.addresses[%zu]: not an IP address", i);
		r->naddrs = n;
		return 0;
	}
	ret = selector_decode(sel, "spec.sandbox.selector", &tmp, err, errlen);
	r->match = tmp.match;
	r->nmatch = tmp.nmatch;
	r->expr = tmp.expr;
	r->nexpr = tmp.nexpr;
	return ret;
}

/* metadata.creationTimestamp, and spec.ttl counted from it: the
 * deadline, 0 without a ttl. Shared by SandboxRoute and SandboxOverride. */
static int lifetime_decode(struct json_object *obj, struct json_object *spec,
			   uint64_t *created_unix, uint64_t *expires_unix, char *err, size_t errlen)
{
	const char *s =
		jstring(k8s_jget(k8s_jget(obj, "metadata"), "creationTimestamp"), 1, K8S_TIME_MAX);
	uint64_t ttl;

	if (s && k8s_parse_time(s, created_unix))
		return bad(err, errlen, "metadata.creationTimestamp: not an RFC 3339 time");
	if (!k8s_jget(spec, "ttl"))
		return 0;
	s = jstring(k8s_jget(spec, "ttl"), 1, K8S_DURATION_TXT_MAX);
	if (!s || parse_duration(s, &ttl))
		return bad(err, errlen,
			   "spec.ttl: not a duration (e.g. 90m, 8h; at most 10 years)");
	if (!*created_unix)
		return bad(err, errlen,
			   "metadata.creationTimestamp: missing, and spec.ttl counts from it");
	*expires_unix = *created_unix + ttl;
	return 0;
}

static int sbr_decode(struct json_object *obj, struct k8s_sbr *r, char *err, size_t errlen)
{
	struct json_object *spec = k8s_jget(obj, "spec"), *svc, *keys, *ports;
	const char *s;
	size_t n;
	int ret;

	ret = meta_decode(obj, &r->m, err, errlen);
	if (ret)
		return ret;
	if (!spec || !json_object_is_type(spec, json_type_object))
		return bad(err, errlen, "spec: missing or not an object");
	svc = k8s_jget(spec, "service");
	s = jstring(k8s_jget(svc, "name"), 1, 63);
	if (!s)
		return bad(err, errlen, "spec.service.name: missing or not a Service name");
	r->service = strdup(s);
	if (!r->service)
		return -ENOMEM;
	ports = k8s_jget(svc, "ports");
	if (jarray(ports, K8S_MAX_PORTS, &n))
		return bad(err, errlen, "spec.service.ports: not an array of at most %d ports",
			   K8S_MAX_PORTS);
	if (n) {
		r->ports = calloc(n, sizeof(*r->ports));
		if (!r->ports)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (jport(json_object_array_get_idx(ports, i), &r->ports[i]))
			return bad(err, errlen, "spec.service.ports[%zu]: not a port number", i);
	r->nports = n;

	keys = k8s_jget(spec, "keys");
	if (jarray(keys, K8S_MAX_KEYS, &n) || !n)
		return bad(err, errlen, "spec.keys: not an array of 1..%d routing keys",
			   K8S_MAX_KEYS);
	for (size_t i = 0; i < n; i++) {
		s = jstring(json_object_array_get_idx(keys, i), 1, SHUNT_ROUTE_KEY_LEN - 1);
		if (!s || rk_validate(s))
			return bad(err, errlen,
				   "spec.keys[%zu]: not a routing key (1-63 visible ASCII, none of "
				   ", ; = \" \\)",
				   i);
		strcpy(r->keys[i], s);
	}
	r->nkeys = n;

	ret = sandbox_decode(k8s_jget(spec, "sandbox"), r, err, errlen);
	if (ret)
		return ret;

	s = jstring(k8s_jget(spec, "fallback"), 1, 16);
	if (k8s_jget(spec, "fallback") && (!s || (strcmp(s, "error") && strcmp(s, "baseline"))))
		return bad(err, errlen, "spec.fallback: not error or baseline");
	r->fallback_baseline = s && !strcmp(s, "baseline");

	return lifetime_decode(obj, spec, &r->created_unix, &r->expires_unix, err, errlen);
}

/* Ports of a Service or an EndpointSlice: [{name, port, protocol}]. A
 * port without a number (a slice's "all ports") is kept as port 0. */
static int ports_decode(struct json_object *v, const char *path, struct k8s_port **out, size_t *n,
			char *err, size_t errlen)
{
	size_t cnt;

	*out = NULL;
	*n = 0;
	if (jarray(v, K8S_MAX_PORTS, &cnt))
		return bad(err, errlen, "%s: not an array of at most %d ports", path,
			   K8S_MAX_PORTS);
	if (!cnt)
		return 0;
	*out = calloc(cnt, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < cnt; i++) {
		struct json_object *p = json_object_array_get_idx(v, i);
		struct json_object *name = k8s_jget(p, "name"), *proto = k8s_jget(p, "protocol");
		const char *ns = jstring(name, 0, 63), *ps = jstring(proto, 1, 16);
		struct k8s_port *o = &(*out)[i];

		if (!json_object_is_type(p, json_type_object) || (name && !ns) || (proto && !ps))
			return bad(err, errlen, "%s[%zu]: invalid", path, i);
		if (k8s_jget(p, "port") && jport(k8s_jget(p, "port"), &o->port))
			return bad(err, errlen, "%s[%zu].port: not a port number", path, i);
		o->tcp = !ps || !strcmp(ps, "TCP");
		o->name = strdup(ns ? ns : "");
		*n = i + 1;
		if (!o->name)
			return -ENOMEM;
	}
	return 0;
}

static void ports_free(struct k8s_port *p, size_t n)
{
	for (size_t i = 0; p && i < n; i++)
		free(p[i].name);
	free(p);
}

static int service_decode(struct json_object *obj, struct k8s_service *s, char *err, size_t errlen)
{
	struct json_object *spec = k8s_jget(obj, "spec"), *ips = k8s_jget(spec, "clusterIPs");
	const char *ip;
	size_t n;
	int ret;

	ret = meta_decode(obj, &s->m, err, errlen);
	if (ret)
		return ret;
	if (spec && !json_object_is_type(spec, json_type_object))
		return bad(err, errlen, "spec: not an object");
	if (jarray(ips, 2, &n))
		return bad(err, errlen, "spec.clusterIPs: not an array of at most 2 addresses");
	for (size_t i = 0; i < (ips ? n : 1); i++) {
		struct json_object *v =
			ips ? json_object_array_get_idx(ips, i) : k8s_jget(spec, "clusterIP");

		if (!v)
			break;
		ip = jstring(v, 0, 64);
		if (!ip)
			return bad(err, errlen, "spec.clusterIP%s: not a string", ips ? "s" : "");
		if (!*ip || !strcmp(ip, "None"))
			continue; /* headless: only the endpoints are captured */
		if (ip_parse(ip, &s->cips[s->ncips]))
			return bad(err, errlen, "spec.clusterIP%s: '%s' is not an IP address",
				   ips ? "s" : "", ip);
		s->ncips++;
	}
	return ports_decode(k8s_jget(spec, "ports"), "spec.ports", &s->ports, &s->nports, err,
			    errlen);
}

/* The Pod an endpoint's targetRef names in the slice's namespace ns:
 * *pod (a pointer into the JSON) or NULL when it names none (absent, not
 * a Pod, another namespace). -EINVAL when it is malformed. */
static int target_pod(struct json_object *ep, const char *ns, const char **pod)
{
	struct json_object *ref = k8s_jget(ep, "targetRef");
	const char *kind, *name, *rns;

	*pod = NULL;
	if (!ref)
		return 0;
	if (!json_object_is_type(ref, json_type_object))
		return -EINVAL;
	kind = jstring(k8s_jget(ref, "kind"), 1, 64);
	name = jstring(k8s_jget(ref, "name"), 1, K8S_NAME_MAX);
	rns = jstring(k8s_jget(ref, "namespace"), 1, K8S_NAME_MAX);
	if ((k8s_jget(ref, "kind") && !kind) || (k8s_jget(ref, "name") && !name) ||
	    (k8s_jget(ref, "namespace") && !rns) || (name && strchr(name, '/')))
		return -EINVAL;
	/* The real server always sets the namespace; without one, the
	 * slice's own is meant (an ObjectReference's default). */
	if (kind && name && !strcmp(kind, "Pod") && (!rns || !strcmp(rns, ns)))
		*pod = name;
	return 0;
}

static int slice_decode(struct json_object *obj, struct k8s_slice *sl, char *err, size_t errlen)
{
	struct json_object *eps = k8s_jget(obj, "endpoints"), *lv;
	const char *type = jstring(k8s_jget(obj, "addressType"), 1, 16), *svc;
	size_t n, total = 0;
	int family, ret;

	ret = meta_decode(obj, &sl->m, err, errlen);
	if (ret)
		return ret;
	lv = k8s_jget(k8s_jget(k8s_jget(obj, "metadata"), "labels"), SERVICE_NAME_LABEL);
	if (lv) {
		svc = jstring(lv, 1, 63);
		if (!svc)
			return bad(err, errlen, "metadata.labels." SERVICE_NAME_LABEL ": invalid");
		sl->service = strdup(svc);
		if (!sl->service)
			return -ENOMEM;
	}
	if (!type)
		return bad(err, errlen, "addressType: missing");
	family = !strcmp(type, "IPv4")	 ? SHUNT_FAMILY_V4
		 : !strcmp(type, "IPv6") ? SHUNT_FAMILY_V6
					 : 0;
	ret = ports_decode(k8s_jget(obj, "ports"), "ports", &sl->ports, &sl->nports, err, errlen);
	if (ret)
		return ret;
	if (jarray(eps, K8S_MAX_ENDPOINTS, &n))
		return bad(err, errlen, "endpoints: not an array of at most %d", K8S_MAX_ENDPOINTS);
	if (!family) /* FQDN: nothing a socket connects to by address */
		return 0;
	/* Two passes: check and count, then copy. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			struct json_object *ep = json_object_array_get_idx(eps, i);
			struct json_object *addrs = k8s_jget(ep, "addresses");
			struct json_object *ready = k8s_jget(k8s_jget(ep, "conditions"), "ready");
			const char *pod;
			size_t na;

			if (!json_object_is_type(ep, json_type_object) ||
			    jarray(addrs, K8S_MAX_EP_ADDRS, &na))
				return bad(err, errlen, "endpoints[%zu]: invalid", i);
			if (ready && !json_object_is_type(ready, json_type_boolean))
				return bad(err, errlen,
					   "endpoints[%zu].conditions.ready: not a boolean", i);
			if (target_pod(ep, sl->m.ns, &pod))
				return bad(err, errlen,
					   "endpoints[%zu].targetRef: not an object reference", i);
			if (ready && !json_object_get_boolean(ready))
				continue;
			for (size_t j = 0; j < na; j++) {
				struct shunt_addr a;

				if (ip_parse(jstring(json_object_array_get_idx(addrs, j), 1, 64),
					     &a) ||
				    a.family != family)
					return bad(
						err, errlen,
						"endpoints[%zu].addresses[%zu]: not an %s address",
						i, j, type);
				if (!pass) {
					total++;
					continue;
				}
				if (pod) {
					sl->pods[sl->naddrs] = strdup(pod);
					if (!sl->pods[sl->naddrs])
						return -ENOMEM;
				}
				sl->addrs[sl->naddrs++] = a;
			}
		}
		if (!pass && total) {
			sl->addrs = calloc(total, sizeof(*sl->addrs));
			sl->pods = calloc(total, sizeof(*sl->pods));
			sl->valid = calloc(total, sizeof(*sl->valid));
			if (!sl->addrs || !sl->pods || !sl->valid)
				return -ENOMEM;
			sl->ninvalid = total; /* none counts until the cache checked */
		}
		if (!total)
			break;
	}
	return 0;
}

/* shunt.dev/infer and its ports (k8s_pod.infer). A bad value turns
 * inference off for the pod, nothing more. */
static void infer_decode(struct k8s_pod *p, struct json_object *ann, struct json_object *spec)
{
	const char *v = jstring(k8s_jget(ann, K8S_INFER_ANNOTATION), 0, 16);
	const char *ports = jstring(k8s_jget(ann, K8S_INFER_PORTS_ANNOTATION), 0, 64);
	struct json_object *cs = k8s_jget(spec, "containers");
	size_t nc = 0;

	if (!k8s_jget(ann, K8S_INFER_ANNOTATION) || (v && !strcmp(v, "off")))
		p->infer = K8S_INFER_OFF;
	else if (v && !strcmp(v, "shadow"))
		p->infer = K8S_INFER_SHADOW;
	else if (v && !strcmp(v, "on"))
		p->infer = K8S_INFER_ON;
	else
		p->infer = K8S_INFER_INVALID;
	p->n_infer_ports = 0;
	if (p->infer == K8S_INFER_OFF || p->infer == K8S_INFER_INVALID)
		return;
	if (k8s_jget(ann, K8S_INFER_PORTS_ANNOTATION)) {
		int n = ports ? parse_port_list(ports, p->infer_ports, K8S_INFER_MAX_PORTS) : -1;

		p->n_infer_ports = (int8_t)(n > 0 ? n : -1);
		return;
	}
	if (jarray(cs, 256, &nc))
		return;
	for (size_t i = 0; i < nc; i++) {
		struct json_object *ps = k8s_jget(json_object_array_get_idx(cs, i), "ports");
		size_t np = 0;

		if (jarray(ps, 256, &np))
			continue;
		for (size_t j = 0; j < np && p->n_infer_ports < K8S_INFER_MAX_PORTS; j++) {
			struct json_object *pe = json_object_array_get_idx(ps, j);
			struct json_object *cp = k8s_jget(pe, "containerPort");
			const char *proto = jstring(k8s_jget(pe, "protocol"), 0, 8);
			const char *name = jstring(k8s_jget(pe, "name"), 0, 16);
			int64_t port;
			bool dup = false;

			/* Named for HTTP or gRPC only (the convention Istio reads
			 * a port's protocol from): a port that speaks something
			 * else, first maybe, must not be relayed as HTTP. */
			if (!cp || !json_object_is_type(cp, json_type_int) ||
			    (proto && strcmp(proto, "TCP")) || !name ||
			    (strncasecmp(name, "http", 4) && strncasecmp(name, "grpc", 4)))
				continue;
			port = json_object_get_int64(cp);
			if (port < 1 || port > 65535)
				continue;
			for (int k = 0; k < p->n_infer_ports; k++)
				dup = dup || p->infer_ports[k] == port;
			if (!dup)
				p->infer_ports[p->n_infer_ports++] = (uint16_t)port;
		}
	}
}

static int pod_decode(struct json_object *obj, const struct k8s_decode_opts *o, struct k8s_pod *p,
		      char *err, size_t errlen)
{
	struct json_object *st = k8s_jget(obj, "status"), *ips = k8s_jget(st, "podIPs");
	struct json_object *conds = k8s_jget(st, "conditions");
	struct json_object *uid = k8s_jget(k8s_jget(obj, "metadata"), "uid");
	struct json_object *node = k8s_jget(k8s_jget(obj, "spec"), "nodeName");
	const char *phase = jstring(k8s_jget(st, "phase"), 1, 32);
	bool cond_ready = false;
	size_t n;
	int ret;

	ret = meta_decode(obj, &p->m, err, errlen);
	if (ret)
		return ret;
	ret = labels_decode(k8s_jget(k8s_jget(obj, "metadata"), "labels"), "metadata.labels",
			    o ? o->label_keys : NULL, &p->labels, &p->nlabels, err, errlen);
	if (ret)
		return ret;
	/* Both only locate the pod's cgroup for SandboxOverrides, on this
	 * node: absent is a pod not scheduled (yet). */
	if (uid && !jstring(uid, 1, K8S_UID_MAX))
		return bad(err, errlen, "metadata.uid: not a UID");
	if (node && !jstring(node, 0, K8S_NAME_MAX))
		return bad(err, errlen, "spec.nodeName: not a node name");
	p->local = node && o && o->node && o->node[0] &&
		   !strcmp(json_object_get_string(node), o->node);
	if (p->local && uid) {
		p->uid = strdup(json_object_get_string(uid));
		if (!p->uid)
			return -ENOMEM;
	}
	if (jarray(conds, 64, &n))
		return bad(err, errlen, "status.conditions: not an array");
	for (size_t i = 0; i < n; i++) {
		struct json_object *c = json_object_array_get_idx(conds, i);
		const char *type = jstring(k8s_jget(c, "type"), 1, 128);
		const char *status = jstring(k8s_jget(c, "status"), 1, 16);

		if (type && !strcmp(type, "Ready"))
			cond_ready = status && !strcmp(status, "True");
	}
	{
		struct json_object *ann = k8s_jget(k8s_jget(obj, "metadata"), "annotations");
		struct json_object *hn = k8s_jget(k8s_jget(obj, "spec"), "hostNetwork");
		const char *cap = jstring(k8s_jget(ann, K8S_CAPTURE_ANNOTATION), 0, 32);

		p->host_network = hn && json_object_is_type(hn, json_type_boolean) &&
				  json_object_get_boolean(hn);
		/* A bad value must not lose the pod (its addresses, its
		 * overrides): it is served as if it had none. */
		if (!k8s_jget(ann, K8S_CAPTURE_ANNOTATION))
			p->capture = K8S_CAPTURE_DEFAULT;
		else if (cap && !strcmp(cap, "node"))
			p->capture = K8S_CAPTURE_NODE;
		else if (cap && !strcmp(cap, "in-pod"))
			p->capture = K8S_CAPTURE_INPOD;
		else if (cap && !strcmp(cap, "tc"))
			p->capture = K8S_CAPTURE_TC;
		else
			p->capture = K8S_CAPTURE_INVALID;
		infer_decode(p, ann, k8s_jget(obj, "spec"));
	}
	p->ready = phase && !strcmp(phase, "Running") && cond_ready;
	p->ended = phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed"));
	if (jarray(ips, K8S_MAX_POD_IPS, &n))
		return bad(err, errlen, "status.podIPs: not an array of at most %d",
			   K8S_MAX_POD_IPS);
	for (size_t i = 0; i < n; i++)
		if (ip_parse(jstring(k8s_jget(json_object_array_get_idx(ips, i), "ip"), 1, 64),
			     &p->ips[i]))
			return bad(err, errlen, "status.podIPs[%zu].ip: not an IP address", i);
	p->nips = (uint8_t)n;
	if (!n && k8s_jget(st, "podIP")) {
		const char *ip = jstring(k8s_jget(st, "podIP"), 0, 64);

		if (!ip)
			return bad(err, errlen, "status.podIP: not a string");
		if (*ip) {
			if (ip_parse(ip, &p->ips[0]))
				return bad(err, errlen, "status.podIP: not an IP address");
			p->nips = 1;
		}
	}
	return 0;
}

/* spec.destination or spec.to: a Service name, addresses, or (to only) a
 * selector; exactly one, and a port. */
static int sbo_target_decode(struct json_object *v, const char *path, char **service,
			     struct shunt_addr *addrs, size_t *naddrs, uint16_t *port,
			     struct k8s_selector *sel, bool *sel_set, char *err, size_t errlen)
{
	struct json_object *a = k8s_jget(v, "addresses"), *sv = k8s_jget(v, "service");
	struct json_object *sl = sel ? k8s_jget(v, "selector") : NULL;
	char p[64];
	size_t n;

	if (!v || !json_object_is_type(v, json_type_object))
		return bad(err, errlen, "%s: missing or not an object", path);
	if (jport(k8s_jget(v, "port"), port))
		return bad(err, errlen, "%s.port: not a port number (1..65535)", path);
	if (!!a + !!sv + !!sl != 1)
		return bad(err, errlen, "%s: exactly one of service%s or addresses is required",
			   path, sel ? ", selector" : "");
	if (sv) {
		const char *s = jstring(sv, 1, 63);

		if (!s)
			return bad(err, errlen, "%s.service: not a Service name", path);
		*service = strdup(s);
		return *service ? 0 : -ENOMEM;
	}
	if (sl) {
		snprintf(p, sizeof(p), "%s.selector", path);
		*sel_set = true;
		return selector_decode(sl, p, sel, err, errlen);
	}
	if (jarray(a, K8S_MAX_SBO_ADDRS, &n) || !n)
		return bad(err, errlen, "%s.addresses: not an array of 1..%d addresses", path,
			   K8S_MAX_SBO_ADDRS);
	for (size_t i = 0; i < n; i++)
		if (ip_parse(jstring(json_object_array_get_idx(a, i), 1, 64), &addrs[i]))
			return bad(err, errlen, "%s.addresses[%zu]: not an IP address", path, i);
	*naddrs = n;
	return 0;
}

static int sbo_decode(struct json_object *obj, struct k8s_sbo *o, char *err, size_t errlen)
{
	struct json_object *spec = k8s_jget(obj, "spec");
	int ret;

	ret = meta_decode(obj, &o->m, err, errlen);
	if (ret)
		return ret;
	if (!spec || !json_object_is_type(spec, json_type_object))
		return bad(err, errlen, "spec: missing or not an object");
	if (!k8s_jget(spec, "podSelector"))
		return bad(err, errlen, "spec.podSelector: missing");
	ret = selector_decode(k8s_jget(spec, "podSelector"), "spec.podSelector", &o->sel, err,
			      errlen);
	if (ret)
		return ret;
	ret = sbo_target_decode(k8s_jget(spec, "destination"), "spec.destination", &o->dst_service,
				o->dst_addrs, &o->ndst, &o->dst_port, NULL, NULL, err, errlen);
	if (ret)
		return ret;
	ret = sbo_target_decode(k8s_jget(spec, "to"), "spec.to", &o->to_service, o->to_addrs,
				&o->nto, &o->to_port, &o->to_sel, &o->to_sel_set, err, errlen);
	if (ret)
		return ret;
	return lifetime_decode(obj, spec, &o->created_unix, &o->expires_unix, err, errlen);
}

void k8s_obj_free(enum k8s_kind kind, void *obj)
{
	if (!obj)
		return;
	switch (kind) {
	case K8S_SBR: {
		struct k8s_sbr *r = obj;

		meta_free(&r->m);
		free(r->service);
		free(r->ports);
		labels_free(r->match, r->nmatch);
		for (size_t i = 0; r->expr && i < r->nexpr; i++) {
			free(r->expr[i].key);
			for (size_t j = 0; j < r->expr[i].nvalues; j++)
				free(r->expr[i].values[j]);
			free(r->expr[i].values);
		}
		free(r->expr);
		free(r->addrs);
		free(r->routes);
		break;
	}
	case K8S_SERVICE: {
		struct k8s_service *s = obj;

		meta_free(&s->m);
		ports_free(s->ports, s->nports);
		break;
	}
	case K8S_SLICE: {
		struct k8s_slice *sl = obj;

		meta_free(&sl->m);
		free(sl->service);
		ports_free(sl->ports, sl->nports);
		for (size_t i = 0; sl->pods && i < sl->naddrs; i++)
			free(sl->pods[i]);
		free(sl->pods);
		free(sl->valid);
		free(sl->addrs);
		break;
	}
	case K8S_POD: {
		struct k8s_pod *p = obj;

		meta_free(&p->m);
		labels_free(p->labels, p->nlabels);
		free(p->uid);
		break;
	}
	case K8S_SBO: {
		struct k8s_sbo *o = obj;

		meta_free(&o->m);
		selector_free(&o->sel);
		selector_free(&o->to_sel);
		free(o->dst_service);
		free(o->to_service);
		break;
	}
	case K8S_NKINDS:
		break;
	}
	free(obj);
}

int k8s_decode(enum k8s_kind kind, struct json_object *obj, void **out, char *err, size_t errlen)
{
	return k8s_decode_ex(kind, obj, NULL, out, err, errlen);
}

int k8s_decode_ex(enum k8s_kind kind, struct json_object *obj, const struct k8s_decode_opts *opts,
		  void **out, char *err, size_t errlen)
{
	static const size_t sizes[K8S_NKINDS] = {
		[K8S_SBR] = sizeof(struct k8s_sbr),	[K8S_SERVICE] = sizeof(struct k8s_service),
		[K8S_SLICE] = sizeof(struct k8s_slice), [K8S_POD] = sizeof(struct k8s_pod),
		[K8S_SBO] = sizeof(struct k8s_sbo),
	};
	void *o;
	int ret = -EINVAL;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if ((unsigned)kind >= K8S_NKINDS)
		return -EINVAL;
	o = calloc(1, sizes[kind]);
	if (!o)
		return -ENOMEM;
	switch (kind) {
	case K8S_SBR:
		ret = sbr_decode(obj, o, err, errlen);
		break;
	case K8S_SERVICE:
		ret = service_decode(obj, o, err, errlen);
		break;
	case K8S_SLICE:
		ret = slice_decode(obj, o, err, errlen);
		break;
	case K8S_POD:
		ret = pod_decode(obj, opts, o, err, errlen);
		break;
	case K8S_SBO:
		ret = sbo_decode(obj, o, err, errlen);
		break;
	case K8S_NKINDS:
		break;
	}
	if (ret) {
		if (ret == -ENOMEM)
			bad(err, errlen, "out of memory");
		k8s_obj_free(kind, o);
		return ret;
	}
	*out = o;
	return 0;
}

static int digits(const char *s, int n, int *out)
{
	*out = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		*out = *out * 10 + (s[i] - '0');
	}
	return 0;
}

int k8s_parse_time(const char *s, uint64_t *out)
{
	struct tm tm = {};
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	const char *p;
	time_t t;

	if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
	    digits(s + 17, 2, &sec))
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -EINVAL;
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return -EINVAL;
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	t -= sign * (oh * 3600 + om * 60);
	if (t < 0)
		return -EINVAL;
	*out = (uint64_t)t;
	return 0;
}
