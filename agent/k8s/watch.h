/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Following the cluster (docs/k8s-contract.md): a watcher thread lists and
 * watches SandboxRoutes, Services, EndpointSlices and Pods, translates them
 * into routes, and hands the changes to the main loop, which alone touches
 * the route store.
 */
#ifndef SHUNT_K8S_H
#define SHUNT_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "k8s/client.h"
#include "k8s/obj.h"
#include "core/util.h"

struct agent;
struct k8s;

#define K8S_MAX_SANDBOX_CIDRS	  32
#define K8S_DEFAULT_MAX_NS_ROUTES 1024 /* 1/16 of the default --max-routes */
#define K8S_STATUS_LIST		  16   /* entries of each list in status */

struct k8s_opts {
	/* --kubernetes, --kubeconfig, --k8s-api (overrides the server),
	 * --k8s-token-file, --k8s-ca-file */
	struct k8s_where where;
	const char *node_name; /* --node-name; NULL: $NODE_NAME, else the host name */
	/* --sandbox-cidr: where sandbox.addresses may point (none: nowhere) */
	struct addr_prefix sandbox_cidrs[K8S_MAX_SANDBOX_CIDRS];
	size_t n_sandbox_cidrs;
	size_t max_routes_per_ns; /* --max-routes-per-namespace */
	/* --pod-capture: how this node's pods without a shunt.dev/capture
	 * annotation are captured (K8S_CAPTURE_NODE or K8S_CAPTURE_INPOD). */
	uint8_t pod_capture;
};

/* Is Kubernetes mode asked for? */
static inline bool k8s_wanted(const struct k8s_opts *o)
{
	return o->where.in_cluster || o->where.kubeconfig || o->where.api;
}

/* An object that gets less than it asks for, as status lists it. */
struct k8s_status_entry {
	enum k8s_kind kind; /* K8S_SBR, K8S_SBO or K8S_SLICE */
	char object[K8S_ID_MAX];
	char other[K8S_ID_MAX]; /* conflicts: lost_to */
	size_t n;		/* routes/overrides concerned, slice addresses ignored */
	char detail[160];	/* the reason's particulars, or the store's error */
};

/* A list in status: the first K8S_STATUS_LIST entries, and how many there
 * are in all. */
struct k8s_status_list {
	size_t total;
	size_t n;
	struct k8s_status_entry e[K8S_STATUS_LIST];
};

/* For shuntctl status. */
struct k8s_status {
	bool connected; /* the last request was answered */
	bool synced;	/* every kind listed at least once */
	size_t objects[K8S_NKINDS];
	size_t routes;		     /* routes the cluster asks for */
	size_t overrides;	     /* overrides the SandboxOverrides ask for on this node */
	size_t overrides_unresolved; /* selected pods whose cgroup is not found (yet) */
	size_t cgroup_watches;	     /* cgroup directories followed (inotify); 0: scans */
	char node[K8S_NAME_MAX + 1];
	char last_error[256];
	char rv[K8S_NKINDS][128]; /* last resourceVersion of each kind */
	size_t max_routes_per_ns;
	/* Objects losing routes/overrides to older ones; SandboxRoutes
	 * refused over the quota or for a sandbox address outside every
	 * --sandbox-cidr; EndpointSlice addresses not counted. */
	struct k8s_status_list conflicts, refused_quota, refused_cidr, endpoints_ignored;
	size_t endpoint_addrs_ignored;
	/* Routes and overrides the cluster asks for that the store would not
	 * take (table full, a destination it refuses), per object. */
	struct k8s_status_list not_installed;
	size_t routes_not_installed, overrides_not_installed;
	/* This node's pods the agent registered for in-pod / TC capture. */
	size_t pods_inpod, pods_tc, pods_capture_failed;
	size_t pods_capture_pending; /* in-pod pods none of whose processes is seen yet */
	size_t pods_infer_failed;    /* in-pod pods whose shunt.dev/infer could not be set */
};

/* Resolve the connection settings and start the watcher. 0, or -errno
 * having said why. */
int k8s_start(struct agent *a, const struct k8s_opts *o);
/* Stop the watcher (promptly: it is woken up) and forget changes not yet
 * applied; the routes in the store stay. Safe to call twice. */
void k8s_stop(struct agent *a);
void k8s_get_status(const struct agent *a, struct k8s_status *st);

/* Are the overrides the SandboxOverrides want for the pod with this uid
 * (k8s_wait.h: valid) in the kernel? 1 ready, 0 pending, each with a
 * one-line reason ("ready: ...", "pending: ...") in msg; -ENOTSUP when
 * the agent does not follow a cluster. Main thread. */
int k8s_overrides_ready(const struct agent *a, const char *uid, char *msg, size_t len);

#endif /* SHUNT_K8S_H */
