/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests for "are this pod's overrides in the kernel?"
 * (agent/k8s/wait.c): a cache fed JSON pods and SandboxOverrides, an
 * injected cgroup lookup, and a store's override array standing for the
 * kernel.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "k8s/cache.h"
#include "k8s/wait.h"
#include "state/store.h"
#include "core/util.h"

#define NOW  (T0_S + 600)
#define T0   "2026-11-18T09:00:00Z"
#define T0_S 1794992400ULL

#define UID_A "0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b" /* cgroup 1001 */
#define UID_B "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b" /* no cgroup yet */
#define UID_C "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee" /* another node's */
#define UID_D "11111111-2222-4333-8444-555555555555" /* cgroup 1004, not selected */

static struct k8s_cache c;
static struct k8s_wait *w;
static char msg[512], err[512];

static int fake_cgroup(void *ud, const char *uid, uint64_t *id)
{
	(void)ud;
	if (!strcmp(uid, UID_A))
		*id = 1001;
	else if (!strcmp(uid, UID_D))
		*id = 1004;
	else
		return -ENOENT;
	return 0;
}

static void put(enum k8s_kind kind, const char *json)
{
	int ret = k8s_cache_put_json(&c, kind, json, err, sizeof(err));

	cr_assert_eq(ret, 0, "refused (%d): %s\n%s", ret, err, json);
}

static void put_pod(const char *name, const char *uid, const char *app, const char *node)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\",\"uid\":\"%s\","
		 "\"labels\":{\"app\":\"%s\"}},"
		 "\"spec\":{\"nodeName\":\"%s\"},\"status\":{\"phase\":\"Pending\"}}",
		 name, uid, app, node);
	put(K8S_POD, buf);
}

/* Connections of the app=checkout pods to 10.96.0.50:5432 (and its v6
 * twin) go to `to`. */
static void put_sbo(const char *name, const char *to, const char *extra)
{
	char buf[2048];

	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\","
		 "\"creationTimestamp\":\"" T0 "\"},"
		 "\"spec\":{\"podSelector\":{\"matchLabels\":{\"app\":\"checkout\"}},"
		 "\"destination\":{\"addresses\":[\"10.96.0.50\",\"fd00::50\"],\"port\":5432},"
		 "\"to\":%s%s}}",
		 name, to, extra);
	put(K8S_SBO, buf);
}

/* Translate, snapshot, ask about uid with the kernel holding ovr[0..n). */
static int ask(const char *uid, const struct override_entry *ovr, size_t n)
{
	k8s_wait_free(w);
	cr_assert_eq(k8s_cache_recompute(&c, NOW), 0);
	cr_assert_eq(k8s_wait_build(&c, NOW, &w), 0);
	return k8s_wait_check(w, "node-1", uid, ovr, n, msg, sizeof(msg));
}

static void said(int ret, int want, const char *text)
{
	cr_assert_eq(ret, want, "%d: %s", ret, msg);
	cr_assert_str_eq(msg, text);
}

/* The store's copy of every override the cache wants (the kernel after
 * the main loop applied the batch). */
static size_t kernel(struct override_entry *ovr, size_t cap)
{
	struct hmap_entry *e;
	size_t i, n = 0;

	for (e = hmap_first(&c.ovr_want, &i); e && n < cap; e = hmap_next(&c.ovr_want, e, &i)) {
		const struct k8s_override *o = e->val;

		ovr[n].k = o->k;
		ovr[n++].v = o->v;
	}
	return n;
}

Test(k8s_wait, reasons_then_ready)
{
	struct override_entry ovr[8];
	size_t n;

	c.node = "node-1";
	c.cgroup_of = fake_cgroup;
	said(k8s_wait_check(NULL, "node-1", UID_A, NULL, 0, msg, sizeof(msg)), 0,
	     "pending: the agent has not listed the cluster yet");
	put_pod("checkout-1", UID_A, "checkout", "node-1");
	put_pod("checkout-2", UID_B, "checkout", "node-1");
	put_pod("checkout-3", UID_C, "checkout", "node-2");
	put_pod("web-1", UID_D, "web", "node-1");

	/* No SandboxOverride: ready, saying so; unknown and other nodes'
	 * pods pending. */
	said(ask(UID_A, NULL, 0), 1, "ready: pod shop/checkout-1: no SandboxOverride selects it");
	said(ask(UID_C, NULL, 0), 0,
	     "pending: no pod with uid " UID_C " on node node-1 known to the agent (yet)");

	/* Selected, without a target yet. */
	put_sbo("db", "{\"selector\":{\"matchLabels\":{\"app\":\"pg-sandbox\"}},\"port\":5432}",
		"");
	said(ask(UID_A, NULL, 0), 0,
	     "pending: pod shop/checkout-1: SandboxOverride shop/db gives it no override (yet): "
	     "no destination, no target of the destination's family, or refused (see the agent's "
	     "log)");
	said(ask(UID_B, NULL, 0), 0,
	     "pending: pod shop/checkout-2 (SandboxOverride shop/db): its cgroup is not found "
	     "under the agent's --cgroup (yet)");
	said(ask(UID_D, NULL, 0), 1, "ready: pod shop/web-1: no SandboxOverride selects it");

	/* A v4 target: one override of the two destinations. Not in the
	 * kernel yet, then in it. */
	put_sbo("db", "{\"addresses\":[\"10.244.1.9\"],\"port\":5432}", "");
	said(ask(UID_A, NULL, 0), 0,
	     "pending: pod shop/checkout-1: 0 of 1 override(s) in the kernel (SandboxOverride "
	     "shop/db)");
	n = kernel(ovr, 8);
	cr_assert_eq(n, 1);
	said(ask(UID_A, ovr, n), 1,
	     "ready: pod shop/checkout-1: 1 of 1 override(s) in the kernel (SandboxOverride "
	     "shop/db)");
	/* Another target for the same key in the kernel (an old value), or
	 * an API override holding it: not this one. */
	ovr[0].v.to.port ^= 1;
	said(ask(UID_A, ovr, n), 0,
	     "pending: pod shop/checkout-1: 0 of 1 override(s) in the kernel (SandboxOverride "
	     "shop/db)");
	ovr[0].v.to.port ^= 1;
	ovr[0].v.flags = 0;
	cr_assert_eq(ask(UID_A, ovr, n), 0);

	/* Both families, and a second SandboxOverride: half is not enough. */
	put_sbo("db", "{\"addresses\":[\"10.244.1.9\",\"fd00:244::9\"],\"port\":5432}", "");
	put_sbo("db2", "{\"addresses\":[\"10.244.1.10\"],\"port\":5432}", "");
	said(ask(UID_A, ovr, 0), 0,
	     "pending: pod shop/checkout-1: 0 of 2 override(s) in the kernel (SandboxOverride "
	     "shop/db and 1 more)");
	n = kernel(ovr, 8);
	cr_assert_eq(n, 2);
	cr_assert_eq(ask(UID_A, ovr, 1), 0);
	cr_assert_str_eq(msg, "pending: pod shop/checkout-1: 1 of 2 override(s) in the kernel "
			      "(SandboxOverride shop/db and 1 more)");
	cr_assert_eq(ask(UID_A, ovr, 2), 1);

	/* Expired SandboxOverrides ask for nothing; an ended pod waits for
	 * nothing. */
	put_sbo("db", "{\"addresses\":[\"10.244.1.9\"],\"port\":5432}", ",\"ttl\":\"1m\"");
	put_sbo("db2", "{\"addresses\":[\"10.244.1.10\"],\"port\":5432}", ",\"ttl\":\"1m\"");
	said(ask(UID_A, NULL, 0), 1, "ready: pod shop/checkout-1: no SandboxOverride selects it");
	put(K8S_POD,
	    "{\"metadata\":{\"name\":\"checkout-1\",\"namespace\":\"shop\",\"uid\":\"" UID_A
	    "\",\"labels\":{\"app\":\"checkout\"}},\"spec\":{\"nodeName\":\"node-1\"},"
	    "\"status\":{\"phase\":\"Succeeded\"}}");
	cr_assert_eq(ask(UID_A, NULL, 0), 0);
	k8s_wait_free(w);
	k8s_cache_free(&c);
}

Test(k8s_wait, uid_syntax)
{
	cr_assert(k8s_uid_valid(UID_A, strlen(UID_A)));
	cr_assert_not(k8s_uid_valid(UID_A, strlen(UID_A) - 1));
	cr_assert_not(k8s_uid_valid("0B5C8A52-1f3e-4c7d-9a1b-2c3d4e5f6a7b", 36));
	cr_assert_not(k8s_uid_valid("0b5c8a52_1f3e_4c7d_9a1b_2c3d4e5f6a7b", 36));
	cr_assert_not(k8s_uid_valid("0b5c8a521f3e-4c7d-9a1b-2c3d4e5f6a7b-", 36));
	cr_assert_not(k8s_uid_valid("", 0));
}
