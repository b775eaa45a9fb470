// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * One pass over a namespace's Sandboxes (ctrl.h). For each Sandbox, in
 * order: a deleted one is cleaned up (routes, overrides and forks first,
 * then the delete hook, then the finalizer comes off and Kubernetes'
 * garbage collector takes the rest); an expired one is deleted; otherwise
 * the finalizer is put on, the plan made (sandbox.h) and the owned objects
 * brought to it: resources, the create hook and overrides at once, forks
 * and routes once the create hook has succeeded. A plan that cannot be
 * made changes nothing and says why in status.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <json-c/json.h>

#include "ctrl/ctrl.h"
#include "ctrl/sandbox.h"
#include "k8s/obj.h"
#include "core/log.h"
#include "core/util.h"

#define SBX_PATH "/apis/shunt.dev/v1alpha1"
#define MSG_MAX	 512

/* ---- the API ------------------------------------------------------------ */

struct ans {
	long status;
	struct json_object *obj; /* a 2xx answer's body */
	char msg[256];
};

/* method path [body]: 0 with a->status (and a->obj on success), or -errno
 * when no answer came. */
static int api(struct ctrl *c, const char *method, const char *path, const char *ctype,
	       struct json_object *body, struct ans *a)
{
	memset(a, 0, sizeof(*a));
	if (strcmp(method, "GET") && !ctrl_may_write(c)) {
		/* The lease may be someone else's by now: never write then. */
		snprintf(a->msg, sizeof(a->msg), "not leading (the lease was not renewed in time)");
		return -EPERM;
	}
	a->obj = k8s_call_json(&c->cl, method, path, ctype, body, &a->status, a->msg,
			       sizeof(a->msg));
	if (!a->status)
		return -EIO;
	if (strcmp(method, "GET"))
		c->writes++;
	return 0;
}

static void ans_free(struct ans *a)
{
	json_object_put(a->obj);
	a->obj = NULL;
}

static void obj_path(char *out, size_t len, enum sbx_kind k, const char *ns, const char *name)
{
	snprintf(out, len, "%s/namespaces/%s/%s%s%s", sbx_kinds[k].path, ns, sbx_kinds[k].resource,
		 name ? "/" : "", name ? name : "");
}

static const char *meta_str(struct json_object *o, const char *k)
{
	return k8s_jstr(k8s_jobj(o, "metadata"), k);
}

/* ---- one Sandbox ----------------------------------------------------------- */

/* What was read and decided for one Sandbox, for its status. */
struct sync {
	struct ctrl *c;
	struct json_object *sb;
	struct sbx_meta m;
	struct json_object *owned[SBX_NKINDS]; /* name -> object, ours only */
	const char *reason;		       /* Ready=False: why; NULL: ready */
	char msg[MSG_MAX];
	struct json_object *forks, *resources; /* status lists */
	enum sbx_job_state hook[2];	       /* create, delete */
	bool has_hook[2];
	int nforks, nforks_ready;
	char notes[SBX_MAX_NOTES][200]; /* the plan's, for status */
	size_t nnotes;
};

static void not_ready(struct sync *s, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The first reason wins: it is the one to act on. */
static void not_ready(struct sync *s, const char *reason, const char *fmt, ...)
{
	va_list ap;

	if (s->reason)
		return;
	s->reason = reason;
	va_start(ap, fmt);
	vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
}

/* The items of kind k in the Sandbox's namespace (labelSelector sel, or
 * all), a new reference; NULL (having said why in the status) when the
 * list failed. */
static struct json_object *list_ns(struct sync *s, enum sbx_kind k, const char *sel)
{
	struct json_object *items;
	char path[512];
	struct ans a;

	obj_path(path, sizeof(path), k, s->m.ns, NULL);
	if (sel)
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "?labelSelector=%s",
			 sel);
	if (api(s->c, "GET", path, NULL, NULL, &a) || a.status != 200 ||
	    !(items = k8s_jarr(a.obj, "items"))) {
		not_ready(s, "APIError", "list %s: %s", sbx_kinds[k].resource,
			  a.msg[0] ? a.msg : "not a list");
		ans_free(&a);
		return NULL;
	}
	json_object_get(items);
	ans_free(&a);
	return items;
}

/* The objects of each kind owned by the Sandbox (its controller owner
 * reference: a label alone is not enough, anyone can write one). Kinds
 * with a list in have (the whole namespace's, already read) are taken
 * from it; the others are listed by our label. 0 or -EIO. */
static int read_owned(struct sync *s, struct json_object *const have[SBX_NKINDS])
{
	char sel[128];

	snprintf(sel, sizeof(sel), "shunt.dev%%2Fsandbox%%3D%s", s->m.name);
	for (int k = 0; k < SBX_NKINDS; k++) {
		struct json_object *items = have ? json_object_get(have[k]) : NULL;

		s->owned[k] = json_object_new_object();
		if (!items && !(items = list_ns(s, (enum sbx_kind)k, sel)))
			return -EIO;
		for (size_t i = 0; i < k8s_jlen(items); i++) {
			struct json_object *o = json_object_array_get_idx(items, i);
			const char *name = meta_str(o, "name");

			if (name && sbx_owned(o, s->m.uid))
				json_object_object_add(s->owned[k], name, json_object_get(o));
		}
		json_object_put(items);
	}
	return 0;
}

/* Create the planned object, or update it when what we wrote changed.
 * *cur: what the API has now (a reference), NULL when it could not be
 * made. 0, or -1 having said why in the status. */
static int ensure(struct sync *s, struct sbx_obj *o, struct json_object **cur)
{
	struct json_object *have = k8s_jget(s->owned[o->kind], o->name);
	char path[512];
	struct ans a;

	*cur = NULL;
	if (have && (!strcmp(sbx_obj_hash(have), o->hash) || o->kind == SBX_JOB)) {
		/* Jobs are made once: their pod template cannot change. */
		*cur = have;
		return 0;
	}
	if (have) {
		struct json_object *md = k8s_jget(o->obj, "metadata");
		const char *rv = meta_str(have, "resourceVersion");

		if (rv)
			json_object_object_add(md, "resourceVersion", json_object_new_string(rv));
		if (o->kind == SBX_SERVICE) {
			/* The cluster IPs are the server's to give. */
			struct json_object *hs = k8s_jget(have, "spec"),
					   *os = k8s_jget(o->obj, "spec");
			static const char *const keep[] = {"clusterIP", "clusterIPs"};

			for (int i = 0; os && i < 2; i++)
				if (k8s_jget(hs, keep[i]))
					json_object_object_add(
						os, keep[i],
						json_object_get(k8s_jget(hs, keep[i])));
		}
		obj_path(path, sizeof(path), o->kind, s->m.ns, o->name);
		if (api(s->c, "PUT", path, NULL, o->obj, &a) || a.status != 200)
			goto fail;
		pr_info("ctrl: %s/%s: updated %s %s", s->m.ns, s->m.name, sbx_kinds[o->kind].kind,
			o->name);
	} else {
		obj_path(path, sizeof(path), o->kind, s->m.ns, NULL);
		if (api(s->c, "POST", path, NULL, o->obj, &a))
			goto fail;
		if (a.status == 409) {
			/* Someone else's object has the name: never ours to take. */
			ans_free(&a);
			not_ready(s, "ResourceFailed",
				  "%s %s exists and does not belong to this Sandbox",
				  sbx_kinds[o->kind].kind, o->name);
			return -1;
		}
		if (a.status != 201 && a.status != 200)
			goto fail;
		pr_info("ctrl: %s/%s: created %s %s", s->m.ns, s->m.name, sbx_kinds[o->kind].kind,
			o->name);
	}
	json_object_object_add(s->owned[o->kind], o->name, a.obj);
	*cur = a.obj;
	a.obj = NULL;
	return 0;
fail:
	not_ready(s, o->role == SBX_ROLE_FORK ? "ForkFailed" : "ResourceFailed", "%s %s: %s",
		  sbx_kinds[o->kind].kind, o->name, a.msg[0] ? a.msg : "no answer");
	ans_free(&a);
	return -1;
}

/* DELETE one object; propagation Background (its pods go after it) or
 * Foreground (it stays until its pods are gone). */
static void delete_obj(struct sync *s, enum sbx_kind k, const char *name, const char *propagation)
{
	char path[512];
	struct ans a;
	struct json_object *opts = json_object_new_object();

	json_object_object_add(opts, "propagationPolicy", json_object_new_string(propagation));
	obj_path(path, sizeof(path), k, s->m.ns, name);
	if (!api(s->c, "DELETE", path, NULL, opts, &a) && (a.status < 300 || a.status == 404))
		pr_info("ctrl: %s/%s: deleted %s %s", s->m.ns, s->m.name, sbx_kinds[k].kind, name);
	else
		pr_warn("ctrl: %s/%s: delete %s %s: %s", s->m.ns, s->m.name, sbx_kinds[k].kind,
			name, a.msg);
	ans_free(&a);
	json_object_put(opts);
}

/* Delete owned objects of kind k that the plan does not have (all of
 * them when plan is NULL), except the delete hook's Job. */
static void delete_unplanned(struct sync *s, const struct sbx_plan *plan, enum sbx_kind k)
{
	char hook[128];

	snprintf(hook, sizeof(hook), "%s-hook-delete", s->m.name);
	json_object_object_foreach(s->owned[k], name, o)
	{
		bool want = false;

		(void)o;
		for (size_t i = 0; plan && i < plan->n; i++)
			if (plan->objs[i].kind == k && !strcmp(plan->objs[i].name, name))
				want = true;
		if (!want && strcmp(name, hook))
			delete_obj(s, k, name, "Background");
	}
}

static void note_fork(struct sync *s, struct sbx_obj *o, struct json_object *cur)
{
	struct json_object *e = json_object_new_object();
	int64_t want = 0, ready = 0;
	bool ok = cur && sbx_workload_ready(cur, &want, &ready);

	if (!cur)
		want = json_object_get_int64(k8s_jget(k8s_jget(o->obj, "spec"), "replicas"));
	json_object_object_add(e, "deployment", json_object_new_string(o->part));
	json_object_object_add(e, "name", json_object_new_string(o->name));
	json_object_object_add(e, "replicas", json_object_new_int64(want));
	json_object_object_add(e, "readyReplicas", json_object_new_int64(ready));
	json_object_object_add(e, "ready", json_object_new_boolean(ok));
	json_object_array_add(s->forks, e);
	s->nforks++;
	s->nforks_ready += ok;
	if (!ok)
		not_ready(s, "ForkNotReady", "fork %s: %" PRId64 "/%" PRId64 " ready", o->name,
			  ready, want);
}

static void note_resource(struct sync *s, struct sbx_obj *o, struct json_object *cur)
{
	struct json_object *e = json_object_new_object();
	int64_t want, ready;
	bool ok = cur != NULL;

	if (cur && (o->kind == SBX_DEPLOYMENT || o->kind == SBX_STATEFULSET))
		ok = sbx_workload_ready(cur, &want, &ready);
	else if (cur && o->kind == SBX_JOB) {
		enum sbx_job_state st = sbx_job_state(cur);

		ok = st == SBX_JOB_SUCCEEDED;
		if (st == SBX_JOB_FAILED)
			not_ready(s, "ResourceFailed", "Job %s failed", o->name);
	}
	json_object_object_add(e, "name", json_object_new_string(o->part));
	json_object_object_add(e, "kind", json_object_new_string(sbx_kinds[o->kind].kind));
	json_object_object_add(e, "object", json_object_new_string(o->name));
	json_object_object_add(e, "ready", json_object_new_boolean(ok));
	json_object_array_add(s->resources, e);
	if (!ok)
		not_ready(s, "ResourceNotReady", "%s %s is not ready", sbx_kinds[o->kind].kind,
			  o->name);
}

/* Write status when it changed. */
static void write_status(struct sync *s, const char *reason, const char *msg)
{
	struct json_object *old = k8s_jobj(s->sb, "status"), *st = json_object_new_object();
	struct json_object *cond = json_object_new_object(), *conds = json_object_new_array();
	struct json_object *was = sbx_ready(s->sb), *hooks, *body, *notes = NULL;
	const char *status = reason ? "False" : "True";
	const char *lt = NULL;
	char t[32], path[512];
	struct ans a;

	reason = reason ? reason : "Ready";
	if (!strcmp(k8s_jstr(was, "status") ?: "", status))
		lt = k8s_jstr(was, "lastTransitionTime");
	json_object_object_add(st, "observedGeneration", json_object_new_int64(s->m.generation));
	json_object_object_add(st, "key", json_object_new_string(s->m.key));
	if (s->m.expires_unix)
		json_object_object_add(
			st, "expiresAt",
			json_object_new_string(sbx_time(s->m.expires_unix, t, sizeof(t))));
	snprintf(t, sizeof(t), "%d/%d", s->nforks_ready, s->nforks);
	json_object_object_add(st, "forksReady", json_object_new_string(t));
	json_object_object_add(st, "forks", json_object_get(s->forks));
	json_object_object_add(st, "resources", json_object_get(s->resources));
	if (s->has_hook[0] || s->has_hook[1]) {
		hooks = json_object_new_object();
		for (int i = 0; i < 2; i++)
			if (s->has_hook[i])
				json_object_object_add(
					hooks, i ? "delete" : "create",
					json_object_new_string(sbx_job_state_names[s->hook[i]]));
		json_object_object_add(st, "hooks", hooks);
	}
	json_object_object_add(cond, "type", json_object_new_string("Ready"));
	json_object_object_add(cond, "status", json_object_new_string(status));
	json_object_object_add(cond, "observedGeneration", json_object_new_int64(s->m.generation));
	json_object_object_add(
		cond, "lastTransitionTime",
		json_object_new_string(lt ? lt : sbx_time((uint64_t)time(NULL), t, sizeof(t))));
	json_object_object_add(cond, "reason", json_object_new_string(reason));
	json_object_object_add(cond, "message",
			       json_object_new_string(msg && *msg ? msg : "ready"));
	json_object_array_add(conds, cond);
	json_object_object_add(st, "conditions", conds);
	for (size_t i = 0; i < s->nnotes; i++) {
		if (!notes)
			notes = json_object_new_array();
		json_object_array_add(notes, json_object_new_string(s->notes[i]));
	}
	if (notes)
		json_object_object_add(st, "notes", notes);
	if (old && json_object_equal(old, st)) {
		json_object_put(st);
		return;
	}
	/* A merge patch keeps what it does not name: what this status no
	 * longer has (an expiry, hooks, notes) is named with null. */
	if (old) {
		json_object_object_foreach(old, k, v)
		{
			(void)v;
			if (!json_object_object_get_ex(st, k, NULL))
				json_object_object_add(st, k, NULL);
		}
	}
	body = json_object_new_object();
	json_object_object_add(body, "status", st);
	snprintf(path, sizeof(path), SBX_PATH "/namespaces/%s/sandboxes/%s/status", s->m.ns,
		 s->m.name);
	if (api(s->c, "PATCH", path, "application/merge-patch+json", body, &a) || a.status != 200)
		pr_warn("ctrl: %s/%s: status: %s", s->m.ns, s->m.name, a.msg);
	else if (strcmp(k8s_jstr(was, "reason") ?: "", reason))
		pr_info("ctrl: %s/%s: %s (%s)", s->m.ns, s->m.name, reason,
			msg && *msg ? msg : "ready");
	ans_free(&a);
	json_object_put(body);
}

/* PUT the Sandbox with its finalizers changed (resourceVersion makes it
 * conditional: a 409 waits for the next pass). */
static int set_finalizer(struct sync *s, bool on)
{
	struct json_object *sb = NULL;
	char path[512];
	struct ans a;
	int ret;

	if (json_object_deep_copy(s->sb, &sb, NULL))
		return -ENOMEM;
	json_object_object_add(k8s_jobj(sb, "metadata"), "finalizers", sbx_finalizers(s->sb, on));
	snprintf(path, sizeof(path), SBX_PATH "/namespaces/%s/sandboxes/%s", s->m.ns, s->m.name);
	ret = api(s->c, "PUT", path, NULL, sb, &a);
	if (!ret && a.status == 200) {
		/* Go on from the object as it is now. */
		json_object_put(s->sb);
		s->sb = a.obj;
		a.obj = NULL;
		ret = sbx_meta_decode(s->sb, &s->m, a.msg, sizeof(a.msg));
	} else {
		if (!(a.status == 404 && !on))
			pr_warn("ctrl: %s/%s: %s the finalizer: %s", s->m.ns, s->m.name,
				on ? "adding" : "removing", a.msg);
		ret = -EAGAIN;
	}
	ans_free(&a);
	json_object_put(sb);
	return ret;
}

/* The Sandbox is being deleted: routes, overrides and forks go now (the
 * key stops reaching the forks, and a delete hook finds the temporary
 * database unused), then the delete hook runs, then the finalizer comes
 * off and Kubernetes removes the rest. */
static void cleanup(struct sync *s)
{
	struct json_object *hooks = k8s_jobj(k8s_jobj(s->sb, "spec"), "hooks");
	struct json_object *cur = NULL;
	struct sbx_plan plan;
	char err[256];

	if (!s->m.has_finalizer)
		return;
	if (read_owned(s, NULL)) {
		write_status(s, s->reason, s->msg);
		return;
	}
	delete_unplanned(s, NULL, SBX_ROUTE);
	delete_unplanned(s, NULL, SBX_OVERRIDE);
	json_object_object_foreach(s->owned[SBX_DEPLOYMENT], name, o)
	{
		if (k8s_jget(k8s_jget(k8s_jget(o, "metadata"), "labels"), SBX_LABEL_FORK))
			delete_obj(s, SBX_DEPLOYMENT, name, "Background");
	}
	/* A create hook still running could create what the delete hook
	 * drops after it has run: it is stopped (its pods gone) first. */
	snprintf(err, sizeof(err), "%s-hook-create", s->m.name);
	cur = k8s_jget(s->owned[SBX_JOB], err);
	if (cur && sbx_job_state(cur) == SBX_JOB_RUNNING) {
		delete_obj(s, SBX_JOB, err, "Foreground");
		not_ready(s, "Deleting", "stopping the create hook %s first", err);
		write_status(s, s->reason, s->msg);
		return;
	}
	if (k8s_jobj(hooks, "delete")) {
		s->has_hook[1] = true;
		if (sbx_plan_hook(s->sb, &s->m, "delete", &plan, err, sizeof(err))) {
			not_ready(s, "HookFailed", "%s", err);
		} else {
			if (!ensure(s, &plan.objs[0], &cur))
				s->hook[1] = sbx_job_state(cur);
			sbx_plan_free(&plan);
		}
		if (s->hook[1] == SBX_JOB_FAILED)
			not_ready(s, "HookFailed",
				  "the delete hook's Job %s-hook-delete failed; the Sandbox stays "
				  "until it succeeds or the finalizer %s is removed by hand",
				  s->m.name, SBX_FINALIZER);
		else if (s->hook[1] != SBX_JOB_SUCCEEDED)
			not_ready(s, "Deleting", "waiting for the delete hook %s-hook-delete",
				  s->m.name);
		if (s->hook[1] != SBX_JOB_SUCCEEDED) {
			write_status(s, s->reason, s->msg);
			return;
		}
	}
	if (!set_finalizer(s, false))
		pr_info("ctrl: %s/%s: cleaned up; Kubernetes removes the rest", s->m.ns, s->m.name);
}

static void expire(struct sync *s)
{
	char path[512];
	struct ans a;

	struct json_object *opts = json_object_new_object(), *pre = json_object_new_object();

	write_status(s, "Expired", "the ttl ran out: deleting the Sandbox");
	/* This very Sandbox, not one made again under its name meanwhile. */
	json_object_object_add(pre, "uid", json_object_new_string(s->m.uid));
	json_object_object_add(opts, "preconditions", pre);
	snprintf(path, sizeof(path), SBX_PATH "/namespaces/%s/sandboxes/%s", s->m.ns, s->m.name);
	if (!api(s->c, "DELETE", path, NULL, opts, &a) && (a.status < 300 || a.status == 404))
		pr_info("ctrl: %s/%s: expired, deleted", s->m.ns, s->m.name);
	else
		pr_warn("ctrl: %s/%s: expired, delete: %s", s->m.ns, s->m.name, a.msg);
	ans_free(&a);
	json_object_put(opts);
}

/* The Deployment named name among items, or NULL. */
static struct json_object *by_name(struct json_object *items, const char *name)
{
	for (size_t i = 0; name && i < k8s_jlen(items); i++) {
		struct json_object *o = json_object_array_get_idx(items, i);

		if (!strcmp(meta_str(o, "name") ?: "", name))
			return o;
	}
	return NULL;
}

/* Did an earlier pass see the create hook succeed? (Its Job may be gone
 * since: a ttlSecondsAfterFinished, or someone tidying up; it is never
 * run again.) */
static bool create_hook_done(struct sync *s)
{
	struct json_object *h = k8s_jobj(k8s_jobj(s->sb, "status"), "hooks");

	return !strcmp(k8s_jstr(h, "create") ?: "", sbx_job_state_names[SBX_JOB_SUCCEEDED]);
}

static void sync_live(struct sync *s)
{
	struct json_object *forks = k8s_jarr(k8s_jobj(s->sb, "spec"), "forks");
	struct json_object *baselines[SBX_MAX_FORKS] = {0}, *cur;
	struct json_object *have[SBX_NKINDS] = {0};
	size_t nf = k8s_jlen(forks);
	bool forks_go = true,
	     res_ok[SBX_MAX_RESOURCES + SBX_MAX_FORKS + SBX_MAX_ROUTES + SBX_MAX_OVERRIDES + 2] = {
		     0};
	struct sbx_inputs in = {0};
	struct sbx_plan plan;
	char err[MSG_MAX];
	int ret;

	/* The namespace's Deployments, StatefulSets and Services: the
	 * baselines, what else Services select, and ours among them. */
	if (!(have[SBX_DEPLOYMENT] = list_ns(s, SBX_DEPLOYMENT, NULL)) ||
	    !(have[SBX_STATEFULSET] = list_ns(s, SBX_STATEFULSET, NULL)) ||
	    !(have[SBX_SERVICE] = list_ns(s, SBX_SERVICE, NULL)))
		goto out;
	if (nf > SBX_MAX_FORKS)
		nf = SBX_MAX_FORKS;
	for (size_t i = 0; i < nf; i++)
		baselines[i] = by_name(have[SBX_DEPLOYMENT],
				       k8s_jstr(json_object_array_get_idx(forks, i), "deployment"));
	in.baselines = baselines;
	in.nbaselines = nf;
	in.services = have[SBX_SERVICE];
	in.workloads[0] = have[SBX_DEPLOYMENT];
	in.workloads[1] = have[SBX_STATEFULSET];
	ret = sbx_plan_make(s->sb, &s->m, &in, &plan, err, sizeof(err));
	if (ret) {
		not_ready(s, strstr(err, "not found") ? "BaselineNotFound" : "InvalidSpec", "%s",
			  err);
		goto out;
	}
	for (size_t i = 0; i < plan.nnotes && s->nnotes < SBX_MAX_NOTES; i++)
		snprintf(s->notes[s->nnotes++], sizeof(s->notes[0]), "%s", plan.notes[i]);
	if (read_owned(s, have))
		goto plan_out;
	/* Resources and the create hook first. */
	for (size_t i = 0; i < plan.n; i++) {
		struct sbx_obj *o = &plan.objs[i];

		if (o->role == SBX_ROLE_RESOURCE) {
			res_ok[i] = !ensure(s, o, &cur);
			if (res_ok[i])
				note_resource(s, o, cur);
		} else if (o->role == SBX_ROLE_HOOK_CREATE) {
			s->has_hook[0] = true;
			if (!k8s_jget(s->owned[SBX_JOB], o->name) && create_hook_done(s))
				s->hook[0] = SBX_JOB_SUCCEEDED;
			else if (!ensure(s, o, &cur))
				s->hook[0] = sbx_job_state(cur);
			if (s->hook[0] == SBX_JOB_FAILED)
				not_ready(s, "HookFailed", "the create hook's Job %s failed",
					  o->name);
			else if (s->hook[0] != SBX_JOB_SUCCEEDED)
				not_ready(s, "HookPending", "waiting for the create hook's Job %s",
					  o->name);
			forks_go = forks_go && s->hook[0] == SBX_JOB_SUCCEEDED;
		} else if (o->role == SBX_ROLE_HOOK_DELETE) {
			s->has_hook[1] = true;
		}
	}
	/* Overrides only to resources that are ours: never to an object of
	 * someone else that took the name. Without all of them in place the
	 * forks wait: they would reach the shared systems instead. */
	for (size_t i = 0; i < plan.n; i++) {
		struct sbx_obj *o = &plan.objs[i];
		bool target = false;

		if (o->role != SBX_ROLE_OVERRIDE)
			continue;
		for (size_t j = 0; j < plan.n; j++)
			if (plan.objs[j].role == SBX_ROLE_RESOURCE && res_ok[j] &&
			    !strcmp(plan.objs[j].part, o->part))
				target = true;
		if (!target || ensure(s, o, &cur)) {
			not_ready(s, "ResourceFailed",
				  "override %s: its resource %s is not the Sandbox's", o->name,
				  o->part);
			forks_go = false;
		}
	}
	/* Forks and their routes once the create hook, if any, succeeded. */
	for (size_t i = 0; i < plan.n; i++) {
		struct sbx_obj *o = &plan.objs[i];

		if (o->role == SBX_ROLE_FORK) {
			cur = forks_go ? NULL : k8s_jget(s->owned[o->kind], o->name);
			if (forks_go && ensure(s, o, &cur))
				continue;
			note_fork(s, o, cur);
		} else if (o->role == SBX_ROLE_ROUTE && forks_go) {
			ensure(s, o, &cur);
		}
	}
	/* What the Sandbox no longer asks for goes; forks and routes only
	 * once the plan's own could be made. */
	for (int k = 0; k < SBX_NKINDS; k++)
		if (forks_go || (k != SBX_DEPLOYMENT && k != SBX_ROUTE))
			delete_unplanned(s, &plan, (enum sbx_kind)k);
plan_out:
	sbx_plan_free(&plan);
out:
	for (int k = 0; k < SBX_NKINDS; k++)
		json_object_put(have[k]);
	write_status(s, s->reason, s->msg);
}

static void sync_one(struct ctrl *c, struct json_object *item)
{
	struct sync s = {.c = c};
	char err[256];
	uint64_t now = (uint64_t)time(NULL);

	s.sb = json_object_get(item);
	s.forks = json_object_new_array();
	s.resources = json_object_new_array();
	if (sbx_meta_decode(s.sb, &s.m, err, sizeof(err))) {
		if (s.m.ns && s.m.name && s.m.uid)
			write_status(&s, "InvalidSpec", err);
		else
			pr_warn("ctrl: a Sandbox without namespace, name or uid: %s", err);
		goto out;
	}
	if (s.m.deleting) {
		cleanup(&s);
		goto out;
	}
	if (s.m.expires_unix && now >= s.m.expires_unix) {
		expire(&s);
		goto out;
	}
	if (s.m.expires_unix && (!c->next_expiry_unix || s.m.expires_unix < c->next_expiry_unix))
		c->next_expiry_unix = s.m.expires_unix;
	if (!s.m.has_finalizer && set_finalizer(&s, true))
		goto out;
	sync_live(&s);
out:
	for (int k = 0; k < SBX_NKINDS; k++)
		json_object_put(s.owned[k]);
	json_object_put(s.forks);
	json_object_put(s.resources);
	json_object_put(s.sb);
}

int ctrl_pass(struct ctrl *c, const char *ns)
{
	char path[512], *cont = NULL;
	struct json_object *items;
	struct ans a;
	int n = 0;

	do {
		if (ns)
			snprintf(path, sizeof(path),
				 SBX_PATH "/namespaces/%s/sandboxes?limit=100%s%s", ns,
				 cont ? "&continue=" : "", cont ? cont : "");
		else
			snprintf(path, sizeof(path), SBX_PATH "/sandboxes?limit=100%s%s",
				 cont ? "&continue=" : "", cont ? cont : "");
		free(cont);
		cont = NULL;
		if (api(c, "GET", path, NULL, NULL, &a) || a.status != 200) {
			pr_warn("ctrl: list Sandboxes%s%s: %s", ns ? " in " : "", ns ? ns : "",
				a.msg);
			ans_free(&a);
			return -EIO;
		}
		items = k8s_jarr(a.obj, "items");
		for (size_t i = 0; i < k8s_jlen(items); i++) {
			/* A long pass keeps the lease, and stops when it is lost
			 * or the controller is asked to stop. */
			ctrl_lease_maybe_tick(c);
			if (!c->leader || __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
				break;
			sync_one(c, json_object_array_get_idx(items, i));
			n++;
		}
		if (meta_str(a.obj, "continue") && *meta_str(a.obj, "continue")) {
			CURL *e = curl_easy_init();
			char *esc = e ? curl_easy_escape(e, meta_str(a.obj, "continue"), 0) : NULL;

			cont = esc ? strdup(esc) : NULL;
			curl_free(esc);
			if (e)
				curl_easy_cleanup(e);
		}
		ans_free(&a);
	} while (cont);
	c->passes++;
	pr_debug("ctrl: pass over %s: %d Sandboxes", ns ? ns : "every namespace", n);
	return 0;
}
