// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Is a pod's override set in the kernel yet? (k8s_wait.h) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/wait.h"
#include "state/store.h"
#include "core/util.h"

static void pod_free(struct k8s_wait_pod *p)
{
	if (!p)
		return;
	free(p->id);
	free(p->sbo);
	free(p->want);
	free(p);
}

void k8s_wait_free(struct k8s_wait *w)
{
	struct hmap_entry *e;
	size_t i;

	if (!w)
		return;
	for (e = hmap_first(&w->pods, &i); e; e = hmap_next(&w->pods, e, &i))
		pod_free(e->val);
	hmap_free(&w->pods);
	free(w);
}

/* Which SandboxOverrides select p (the rules of k8s_sbo_overrides()). */
static int selection(const struct k8s_cache *c, const struct k8s_pod *p, uint64_t now_unix,
		     struct k8s_wait_pod *wp)
{
	const struct k8s_sbo *first = NULL;
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(&c->objs[K8S_SBO], &i); e; e = hmap_next(&c->objs[K8S_SBO], e, &i)) {
		const struct k8s_sbo *o = e->val;

		if ((o->expires_unix && o->expires_unix <= now_unix) || strcmp(o->m.ns, p->m.ns) ||
		    !k8s_labels_match(&o->sel, p->labels, p->nlabels))
			continue;
		wp->nsel++;
		if (!first || strcmp(o->m.id, first->m.id) < 0)
			first = o;
	}
	if (first && !(wp->sbo = strdup(first->m.id)))
		return -ENOMEM;
	return 0;
}

/* The overrides the translation wants for cgroup cg. */
static int wanted(const struct k8s_cache *c, uint64_t cg, struct k8s_wait_pod *wp)
{
	struct hmap_entry *e;
	size_t i, n = 0;

	for (e = hmap_first(&c->ovr_want, &i); e; e = hmap_next(&c->ovr_want, e, &i)) {
		const struct k8s_override *o = e->val;

		n += o->k.src_kind == SHUNT_SRC_CGROUP && o->k.src_id == cg;
	}
	if (!n)
		return 0;
	wp->want = calloc(n, sizeof(*wp->want));
	if (!wp->want)
		return -ENOMEM;
	for (e = hmap_first(&c->ovr_want, &i); e; e = hmap_next(&c->ovr_want, e, &i)) {
		const struct k8s_override *o = e->val;

		if (o->k.src_kind == SHUNT_SRC_CGROUP && o->k.src_id == cg && wp->nwant < n)
			wp->want[wp->nwant++] = *o;
	}
	return 0;
}

int k8s_wait_build(const struct k8s_cache *c, uint64_t now_unix, struct k8s_wait **out)
{
	const struct hmap *pods = &c->objs[K8S_POD];
	struct k8s_wait *w = calloc(1, sizeof(*w));
	struct hmap_entry *e;
	size_t i;
	int err = 0;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	for (e = hmap_first(pods, &i); e && !err; e = hmap_next(pods, e, &i)) {
		const struct k8s_pod *p = e->val;
		struct k8s_wait_pod *wp;
		uint64_t cg;

		/* A pod of this node, still running (an ended pod waits for
		 * nothing, and its cgroup is gone). */
		if (p->ended || !p->local || !p->uid || !k8s_uid_valid(p->uid, strlen(p->uid)))
			continue;
		wp = calloc(1, sizeof(*wp));
		if (!wp || !(wp->id = strdup(p->m.id))) {
			pod_free(wp);
			err = -ENOMEM;
			break;
		}
		err = selection(c, p, now_unix, wp);
		if (!err && wp->nsel && c->cgroup_of && !c->cgroup_of(c->cgroup_ud, p->uid, &cg)) {
			wp->cgroup = true;
			err = wanted(c, cg, wp);
		}
		if (err || hmap_put(&w->pods, p->uid, K8S_UID_LEN, wp, NULL)) {
			pod_free(wp);
			err = -ENOMEM;
		}
	}
	if (err) {
		k8s_wait_free(w);
		return err;
	}
	*out = w;
	return 0;
}

/* Is o in the store, from Kubernetes, with the same target? */
static bool installed(const struct k8s_override *o, const struct override_entry *ovr, size_t novr)
{
	for (size_t i = 0; i < novr; i++)
		if (!memcmp(&ovr[i].k, &o->k, sizeof(o->k)))
			return (ovr[i].v.flags & SHUNT_ROUTE_FROM_K8S) &&
			       addr_equal(&ovr[i].v.to, &o->v.to);
	return false;
}

int k8s_wait_check(const struct k8s_wait *w, const char *node, const char *uid,
		   const struct override_entry *ovr, size_t novr, char *msg, size_t len)
{
	const struct k8s_wait_pod *p;
	char more[32] = "";
	size_t n = 0;

	if (!w) {
		snprintf(msg, len, "pending: the agent has not listed the cluster yet");
		return 0;
	}
	p = hmap_get(&w->pods, uid, strlen(uid));
	if (!p) {
		snprintf(msg, len,
			 "pending: no pod with uid %s on node %s known to the agent (yet)", uid,
			 node);
		return 0;
	}
	if (!p->nsel) {
		snprintf(msg, len, "ready: pod %s: no SandboxOverride selects it", p->id);
		return 1;
	}
	if (p->nsel > 1)
		snprintf(more, sizeof(more), " and %zu more", p->nsel - 1);
	if (!p->cgroup) {
		snprintf(msg, len,
			 "pending: pod %s (SandboxOverride %s%s): its cgroup is not found under "
			 "the agent's --cgroup (yet)",
			 p->id, p->sbo, more);
		return 0;
	}
	if (!p->nwant) {
		snprintf(msg, len,
			 "pending: pod %s: SandboxOverride %s%s gives it no override (yet): no "
			 "destination, no target of the destination's family, or refused (see the "
			 "agent's log)",
			 p->id, p->sbo, more);
		return 0;
	}
	for (size_t i = 0; i < p->nwant; i++)
		n += installed(&p->want[i], ovr, novr);
	snprintf(msg, len,
		 "%s: pod %s: %zu of %zu override(s) in the kernel (SandboxOverride %s%s)",
		 n == p->nwant ? "ready" : "pending", p->id, n, p->nwant, p->sbo, more);
	return n == p->nwant;
}
