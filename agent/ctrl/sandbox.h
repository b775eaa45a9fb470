/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What a Sandbox asks for, as Kubernetes objects (deploy/crd-sandbox.yaml,
 * docs/sandboxes.md). Pure: no I/O, no clock; the controller passes the
 * Sandbox, the baseline Deployments and the namespace's Services it read,
 * and gets the objects that should exist, each one whole, or an error
 * naming the field: a Sandbox that cannot be made is never half-made.
 *
 * Everything made for Sandbox S is in S's namespace, named S-<part>,
 * labelled shunt.dev/sandbox=S and owned by S (a controller owner
 * reference: Kubernetes' garbage collector removes it after S):
 *   forks      Deployment S-<baseline>: the baseline's current pod template
 *              with the changes, minus every label a Service selecting the
 *              baseline (or the baseline's own selector) uses, plus
 *              shunt.dev/sandbox=S and shunt.dev/fork=<baseline>;
 *   routes     SandboxRoute S-<service>-<port> for each TCP port of each
 *              Service that selects the baseline, to the fork's pods;
 *   resources  S-<name> from each template, pods and selectors scoped to S;
 *   hooks      Job S-hook-create / S-hook-delete;
 *   overrides  SandboxOverride S-override-<i>: the forks' pods' connections
 *              to the destination go to the resource.
 */
#ifndef SHUNT_CTRL_SANDBOX_H
#define SHUNT_CTRL_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#define SBX_LABEL	   "shunt.dev/sandbox"
#define SBX_LABEL_FORK	   "shunt.dev/fork"
#define SBX_LABEL_RESOURCE "shunt.dev/resource"
#define SBX_LABEL_HOOK	   "shunt.dev/hook"
#define SBX_ANN_HASH	   "shunt.dev/spec-hash"
#define SBX_ANN_BASELINE   "shunt.dev/baseline"
#define SBX_MANAGED_BY	   "shunt-controller"
#define SBX_FINALIZER	   "shunt.dev/cleanup"
#define SBX_KEY_MAX	   63
#define SBX_MAX_FORKS	   8
#define SBX_MAX_RESOURCES  16
#define SBX_MAX_OVERRIDES  16
#define SBX_MAX_ROUTES	   128 /* SandboxRoutes of one Sandbox */

/* The kinds a Sandbox makes. */
enum sbx_kind {
	SBX_DEPLOYMENT = 0,
	SBX_STATEFULSET,
	SBX_SERVICE,
	SBX_CONFIGMAP,
	SBX_JOB,
	SBX_ROUTE,    /* SandboxRoute */
	SBX_OVERRIDE, /* SandboxOverride */
	SBX_NKINDS,
};

struct sbx_kind_info {
	const char *kind, *api_version;
	const char *path;     /* "/apis/apps/v1", "/api/v1" */
	const char *resource; /* "deployments" */
};

extern const struct sbx_kind_info sbx_kinds[SBX_NKINDS];

/* What an object is for. */
enum sbx_role {
	SBX_ROLE_FORK,
	SBX_ROLE_ROUTE,
	SBX_ROLE_RESOURCE,
	SBX_ROLE_OVERRIDE,
	SBX_ROLE_HOOK_CREATE,
	SBX_ROLE_HOOK_DELETE,
};

struct sbx_obj {
	enum sbx_kind kind;
	enum sbx_role role;
	char name[128];
	const char *part;	 /* the fork's baseline, the resource's name (in the Sandbox) */
	struct json_object *obj; /* whole, with the spec-hash annotation */
	char hash[17];
};

/* The Sandbox's own fields the controller works from. */
struct sbx_meta {
	const char *ns, *name, *uid;
	int64_t generation;
	uint64_t created_unix;
	uint64_t expires_unix; /* 0: no ttl */
	bool deleting;	       /* deletionTimestamp set */
	bool has_finalizer;
	char key[SBX_KEY_MAX + 1]; /* spec.key, or made from the uid */
	bool key_generated;
};

/* Decode what every step needs. 0 or -EINVAL with err naming the field. */
int sbx_meta_decode(struct json_object *sandbox, struct sbx_meta *m, char *err, size_t errlen);

#define SBX_MAX_NOTES 16

struct sbx_plan {
	struct sbx_obj
		objs[SBX_MAX_FORKS + SBX_MAX_ROUTES + SBX_MAX_RESOURCES + SBX_MAX_OVERRIDES + 2];
	size_t n;
	/* What the plan leaves out on purpose, for status: Services not
	 * steered (they select more than the baseline, or a port name the
	 * fork lacks). */
	char notes[SBX_MAX_NOTES][200];
	size_t nnotes;
};

/* What the plan is made from, as read from the API. */
struct sbx_inputs {
	struct json_object *const *baselines; /* [i]: spec.forks[i]'s Deployment, NULL: not found */
	size_t nbaselines;
	struct json_object *services;	  /* the namespace's Services (items) */
	struct json_object *workloads[2]; /* its Deployments and StatefulSets (items), or NULL */
};

/* The objects Sandbox sb asks for. A Service gets SandboxRoutes only when
 * it selects a baseline and no other workload of in->workloads (objects
 * of Sandboxes aside): keyed requests to a Service shared with other
 * workloads are not all the fork's to answer. 0 (plan filled; free it
 * with sbx_plan_free) or -EINVAL with err saying what is wrong, nothing
 * in the plan. */
int sbx_plan_make(struct json_object *sb, const struct sbx_meta *m, const struct sbx_inputs *in,
		  struct sbx_plan *plan, char *err, size_t errlen);
void sbx_plan_free(struct sbx_plan *plan);
/* Only the Job of hooks.<which> ("create", "delete"), as plan->objs[0]. */
int sbx_plan_hook(struct json_object *sb, const struct sbx_meta *m, const char *which,
		  struct sbx_plan *plan, char *err, size_t errlen);

/* Does the object (as read from the API) belong to this Sandbox (a
 * controller owner reference with its uid)? */
bool sbx_owned(struct json_object *obj, const char *uid);
/* The spec-hash annotation of an object read from the API ("" none). */
const char *sbx_obj_hash(struct json_object *obj);

/* Readiness of what the API reports. */
bool sbx_workload_ready(struct json_object *obj, int64_t *replicas, int64_t *ready);
enum sbx_job_state { SBX_JOB_NONE, SBX_JOB_RUNNING, SBX_JOB_SUCCEEDED, SBX_JOB_FAILED };
enum sbx_job_state sbx_job_state(struct json_object *job);
extern const char *const sbx_job_state_names[]; /* "Pending", "Running", ... */

/* A Sandbox's Ready condition (status.conditions[type=Ready]), or NULL. */
struct json_object *sbx_ready(struct json_object *sb);
/* A new array of the object's finalizers without the controller's, and
 * with it again when add. */
struct json_object *sbx_finalizers(struct json_object *obj, bool add);

/* Unix seconds as RFC 3339 ("2026-12-06T03:00:00Z"). */
char *sbx_time(uint64_t unix_s, char *buf, size_t len);

#endif /* SHUNT_CTRL_SANDBOX_H */
