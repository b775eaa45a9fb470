/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Unit tests for following pods' cgroups (agent/k8s/cgroup.c) on a plain
 * directory tree: inotify reports mkdir the same way on tmpfs as on
 * cgroup2, and the follower only reads names.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <criterion/criterion.h>

#include "k8s/cgroup.h"

#define UID1 "0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b"
#define UID2 "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
#define UID3 "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

static char root[64];
static struct k8s_cgroups cg = {.ifd = -1};

static void setup(void)
{
	strcpy(root, "/tmp/shunt-unit-cg-XXXXXX");
	cr_assert(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
	char cmd[128];

	k8s_cgroups_free(&cg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	cr_assert_eq(system(cmd), 0);
}

static void mk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* mkdir root/<path>. */
static void mk(const char *fmt, ...)
{
	char rel[256], path[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s: %s", path, strerror(errno));
}

/* rmdir root/<rel>. */
static void rm(const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	cr_assert_eq(rmdir(path), 0, "rmdir %s: %s", path, strerror(errno));
}

/* The directory noted for uid is root/<rel> (NULL: none). */
static void noted_at(const char *uid, const char *rel)
{
	const char *got = k8s_cgroups_path(&cg, uid);
	char want[512];

	if (!rel) {
		cr_assert_null(got, "%s noted at %s", uid, got);
		return;
	}
	snprintf(want, sizeof(want), "%s/%s", root, rel);
	cr_assert(got && !strcmp(got, want), "%s: got %s, want %s", uid, got ? got : "(none)",
		  want);
}

/* setup/teardown around each test, also a failing one (criterion runs
 * .fini after a failed assertion): no directory is left behind. */
/* cppcheck-suppress unknownMacro */
TestSuite(k8s_cgroup_tree, .init = setup, .fini = teardown);

Test(k8s_cgroup, pod_dir_names)
{
	char uid[37];

	cr_assert(k8s_pod_dir_uid("pod" UID1, uid));
	cr_assert_str_eq(uid, UID1);
	cr_assert(k8s_pod_dir_uid(
		"kubepods-besteffort-pod0b5c8a52_1f3e_4c7d_9a1b_2c3d4e5f6a7b.slice", uid));
	cr_assert_str_eq(uid, UID1);
	cr_assert(k8s_pod_dir_uid("kubelet-kubepods-burstable-pod" UID2 ".slice", uid));
	cr_assert_str_eq(uid, UID2);
	cr_assert_not(k8s_pod_dir_uid("kubepods-besteffort.slice", uid));
	cr_assert_not(k8s_pod_dir_uid("pod" UID1 "x", uid));
	cr_assert_not(k8s_pod_dir_uid("pod0B5C8A52-1f3e-4c7d-9a1b-2c3d4e5f6a7b", uid));
	cr_assert_not(k8s_pod_dir_uid("pod0b5c8a52-1f3e-4c7d-9a1b", uid));
	cr_assert_not(k8s_pod_dir_uid("cri-containerd-0b5c8a521f3e.scope", uid));
}

Test(k8s_cgroup_tree, follows_new_pod_directories)
{
	size_t w0;

	/* One pod there before the start: the first scan finds it. */
	mk("kubepods");
	mk("kubepods/pod%s", UID1);
	cr_assert_eq(k8s_cgroups_init(&cg, root), 0);
	cr_assert(k8s_cgroups_following(&cg), "inotify: %s", strerror(errno));
	noted_at(UID1, "kubepods/pod" UID1);
	/* root and kubepods; never the pod's directory */
	cr_assert_eq(k8s_cgroups_nwatches(&cg), 2);
	cr_assert_eq(k8s_cgroups_events(&cg), 0);

	/* cgroupfs driver: a new pod, then its containers. */
	mk("kubepods/pod%s", UID2);
	cr_assert_eq(k8s_cgroups_events(&cg), 1);
	noted_at(UID2, "kubepods/pod" UID2);
	mk("kubepods/pod%s/ctr1", UID2);
	mk("kubepods/pod%s/ctr2", UID2);
	cr_assert_eq(k8s_cgroups_events(&cg), 0);
	cr_assert_eq(k8s_cgroups_nwatches(&cg), 2, "a watch inside a pod");

	/* systemd driver, three levels down, every level made at once (the
	 * pod's directory before its parent's watch exists). */
	mk("kubepods.slice");
	mk("kubepods.slice/kubepods-besteffort.slice");
	mk("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice",
	   "aaaaaaaa_bbbb_4ccc_8ddd_eeeeeeeeeeee");
	cr_assert_eq(k8s_cgroups_events(&cg), 1);
	noted_at(UID3, "kubepods.slice/kubepods-besteffort.slice/"
		       "kubepods-besteffort-podaaaaaaaa_bbbb_4ccc_8ddd_eeeeeeeeeeee.slice");
	cr_assert_eq(k8s_cgroups_nwatches(&cg), 4);
	cr_assert_eq(cg.rescans, 1, "found by events, not scans");

	/* A pod's directory removed: forgotten. */
	rm("kubepods/pod" UID1);
	cr_assert_eq(k8s_cgroups_events(&cg), 0);
	noted_at(UID1, NULL);

	/* Off the kubelet's path: a service's directories are not watched
	 * (no watch per service or container); a rescan still finds a pod
	 * directory there. */
	w0 = k8s_cgroups_nwatches(&cg);
	mk("system.slice");
	mk("system.slice/foo.service");
	cr_assert_eq(k8s_cgroups_events(&cg), 0);
	cr_assert_eq(k8s_cgroups_nwatches(&cg), w0 + 1, "system.slice only");
	mk("system.slice/foo.service/pod%s", UID1);
	cr_assert_eq(k8s_cgroups_events(&cg), 0);
	noted_at(UID1, NULL);
	k8s_cgroups_rescan(&cg);
	noted_at(UID1, "system.slice/foo.service/pod" UID1);
	noted_at(UID2, "kubepods/pod" UID2);

	/* A removed intermediate directory takes its watch along. */
	w0 = k8s_cgroups_nwatches(&cg);
	mk("kubepods/burstable");
	cr_assert_eq(k8s_cgroups_events(&cg), 0);
	cr_assert_eq(k8s_cgroups_nwatches(&cg), w0 + 1);
	rm("kubepods/burstable");
	cr_assert_eq(k8s_cgroups_events(&cg), 0);
	cr_assert_eq(k8s_cgroups_nwatches(&cg), w0);
}

Test(k8s_cgroup_tree, depth_and_bound)
{
	cr_assert_eq(k8s_cgroups_init(&cg, root), 0);
	/* Four levels down at most, as the scan looks. */
	mk("kubelet.slice");
	mk("kubelet.slice/kubelet-kubepods.slice");
	mk("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice");
	mk("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
	   "kubelet-kubepods-burstable-pod%s.slice",
	   UID1);
	mk("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/x");
	mk("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/x/pod%s", UID2);
	cr_assert_eq(k8s_cgroups_events(&cg), 1);
	noted_at(UID1, "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
		       "kubelet-kubepods-burstable-pod" UID1 ".slice");
	noted_at(UID2, NULL);
	/* root + three levels; not the fourth */
	cr_assert_eq(k8s_cgroups_nwatches(&cg), 4);

	/* Many directories on the kubelet's path: the watches stop at the
	 * bound, pods below the others are left to the rescan. */
	for (int i = 0; i < K8S_CGROUP_MAX_WATCHES + 8; i++)
		mk("kubepods-%d", i);
	k8s_cgroups_events(&cg);
	cr_assert_eq(k8s_cgroups_nwatches(&cg), K8S_CGROUP_MAX_WATCHES);
}

Test(k8s_cgroup_tree, without_inotify_a_scan)
{
	/* As k8s_cgroups_init() leaves it when inotify_init1() fails. */
	cg.root = strdup(root);
	cg.ifd = -1;
	k8s_cgroups_rescan(&cg);
	mk("kubepods");
	mk("kubepods/pod%s", UID1);
	cr_assert_eq(k8s_cgroups_events(&cg), 0);
	noted_at(UID1, NULL);
	k8s_cgroups_rescan(&cg);
	noted_at(UID1, "kubepods/pod" UID1);
	cr_assert_eq(k8s_cgroups_nwatches(&cg), 0);
}
