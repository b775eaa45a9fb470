/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Pods' cgroups on this node (SandboxOverrides): where below the agent's
 * --cgroup root the pod-level cgroup of a pod uid is, followed as the
 * kubelet creates them.
 *
 * With inotify the directories are followed as they appear: the root, its
 * children, and below those the directories on a kubelet's path (a name
 * holding "kube": kubepods, kubepods.slice, kubepods-burstable.slice,
 * kubelet.slice, ...) down to the level above the deepest pod directory
 * (K8S_CGROUP_DEPTH). A pod directory ("pod<uid>", "...-pod<uid_>.slice")
 * is noted the moment it is created and never watched itself (its
 * containers come and go below it), so the watches stay a handful (at
 * most K8S_CGROUP_MAX_WATCHES). A full scan (k8s_cgroups_rescan) covers
 * what events cannot: lost events (a full queue, rescanned at once) and
 * pod directories on a path without "kube" (found by the caller's slow
 * safety rescan). Without inotify the caller scans on every miss instead.
 *
 * Owned by one thread (the watcher); no locking.
 */
#ifndef SHUNT_K8S_CGROUP_H
#define SHUNT_K8S_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hmap.h"

#define K8S_CGROUP_DEPTH       4  /* kubepods.slice/kubepods-QOS.slice/...-pod<uid>.slice */
#define K8S_CGROUP_MAX_WATCHES 64 /* a node needs about 10 */

struct k8s_cgroups {
	char *root;
	int ifd;	     /* inotify; -1 when not following (scan on demand) */
	struct hmap pods;    /* pod uid (36 bytes) -> its directory (malloc'd) */
	struct hmap watches; /* watch descriptor (int) -> struct k8s_cg_watch */
	bool full_warned;    /* said once that K8S_CGROUP_MAX_WATCHES was reached */
	uint64_t noted;	     /* pod directories noted that were not known */
	uint64_t rescans;    /* full scans so far (tests, status) */
};

/* Start following root: inotify watches and a first scan. Without inotify
 * (the instance limit, an old kernel) it logs why and leaves ifd -1: the
 * caller then scans on demand. 0 or -ENOMEM. */
int k8s_cgroups_init(struct k8s_cgroups *c, const char *root);
void k8s_cgroups_free(struct k8s_cgroups *c);

static inline bool k8s_cgroups_following(const struct k8s_cgroups *c)
{
	return c->ifd >= 0;
}

static inline size_t k8s_cgroups_nwatches(const struct k8s_cgroups *c)
{
	return c->watches.n;
}

/* Take what inotify has queued (without blocking): new pod directories are
 * noted, new directories on the way to them watched. Returns how many pod
 * directories appeared (after lost events: 1 and a rescan), so the caller
 * knows to look up the pods it is missing again. */
size_t k8s_cgroups_events(struct k8s_cgroups *c);

/* Every pod directory below root again (K8S_CGROUP_DEPTH levels), and a
 * watch on every directory that should have one. */
void k8s_cgroups_rescan(struct k8s_cgroups *c);

/* The pod's cgroup directory as last seen, or NULL. */
const char *k8s_cgroups_path(const struct k8s_cgroups *c, const char *uid);
/* Forget uid's directory (it is gone). */
void k8s_cgroups_forget(struct k8s_cgroups *c, const char *uid);

/* The pod uid in a kubelet cgroup directory name: "pod<uid>" (cgroupfs
 * driver) or "kubepods-<qos>-pod<uid with _ for ->.slice" (systemd), as
 * the uid with dashes into uid (37 bytes); false when it is not one. */
bool k8s_pod_dir_uid(const char *name, char *uid);

#endif /* SHUNT_K8S_CGROUP_H */
