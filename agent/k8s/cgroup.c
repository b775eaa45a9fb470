// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Pods' cgroups on this node, followed with inotify (k8s_cgroup.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "k8s/cgroup.h"
#include "core/log.h"

/* A directory being created or renamed into place, one removed. IN_IGNORED
 * (the watched directory is gone) and IN_Q_OVERFLOW come unasked. */
#define CG_EVENTS     (IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_ONLYDIR | IN_DONT_FOLLOW)
#define CG_READS_MAX  64 /* buffers per call: a flood cannot hold the thread */
#define CG_UID_STRLEN 36

struct k8s_cg_watch {
	char *path;
	int level; /* below the root: 0 is the root */
};

bool k8s_pod_dir_uid(const char *name, char *uid)
{
	const char *p = strstr(name, "pod");

	for (; p; p = strstr(p + 1, "pod")) {
		size_t i;

		for (i = 0; i < CG_UID_STRLEN; i++) {
			char ch = p[3 + i];

			if (i == 8 || i == 13 || i == 18 || i == 23) {
				if (ch != '-' && ch != '_')
					break;
				uid[i] = '-';
			} else if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) {
				uid[i] = ch;
			} else {
				break;
			}
		}
		if (i == CG_UID_STRLEN && (p[3 + i] == '\0' || p[3 + i] == '.')) {
			uid[CG_UID_STRLEN] = '\0';
			return true;
		}
	}
	return false;
}

/* Is dir (level below the root) one whose new children we want to hear
 * of? The root and its children always (a kubelet's --cgroup-root may be
 * any name), deeper only on a kubelet's path; never a pod's directory,
 * which its caller does not walk into. */
static bool wants_watch(const char *dir, int level)
{
	return level < K8S_CGROUP_DEPTH && (level <= 1 || strstr(dir, "kube"));
}

static void note_pod(struct k8s_cgroups *c, const char *uid, const char *path)
{
	char *copy = strdup(path), *old = NULL;

	if (!copy || hmap_put(&c->pods, uid, CG_UID_STRLEN, copy, (void **)&old)) {
		free(copy);
		return; /* out of memory: the next rescan finds it */
	}
	if (!old || strcmp(old, path))
		c->noted++;
	free(old);
}

static void watch_add(struct k8s_cgroups *c, const char *dir, int level)
{
	struct k8s_cg_watch *w, *old = NULL;
	int wd;

	if (c->watches.n >= K8S_CGROUP_MAX_WATCHES) {
		if (!c->full_warned)
			pr_warn("k8s: %d cgroup directories watched, not watching %s: pods below "
				"it are found by the periodic rescan",
				K8S_CGROUP_MAX_WATCHES, dir);
		c->full_warned = true;
		return;
	}
	wd = inotify_add_watch(c->ifd, dir, CG_EVENTS);
	if (wd < 0) {
		/* ENOENT: gone already. ENOSPC: the node's max_user_watches. */
		if (errno != ENOENT)
			pr_warn("k8s: inotify watch on %s: %s; pods below it are found by the "
				"periodic rescan",
				dir, strerror(errno));
		return;
	}
	w = calloc(1, sizeof(*w));
	if (w)
		w->path = strdup(dir);
	if (!w || !w->path || hmap_put(&c->watches, &wd, sizeof(wd), w, (void **)&old)) {
		if (w)
			free(w->path);
		free(w);
		inotify_rm_watch(c->ifd, wd);
		return;
	}
	w->level = level;
	if (old) { /* the same directory again (a rescan) */
		free(old->path);
		free(old);
	}
}

/* dir is level levels below the root: watch it if it is on the way to pod
 * directories, then note the pod directories in it and go down into the
 * others, the root's K8S_CGROUP_DEPTH levels at most. Watching before
 * reading leaves no gap: what is created meanwhile is read here, or
 * arrives as an event (or both). */
static void walk(struct k8s_cgroups *c, const char *dir, int level)
{
	struct dirent *de;
	DIR *d;

	if (c->ifd >= 0 && wants_watch(dir, level))
		watch_add(c, dir, level);
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char uid[CG_UID_STRLEN + 1], *path;
		struct stat st;

		if (de->d_name[0] == '.' || (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
			continue;
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0)
			break;
		if (de->d_type == DT_UNKNOWN && (stat(path, &st) || !S_ISDIR(st.st_mode))) {
			free(path);
			continue;
		}
		if (k8s_pod_dir_uid(de->d_name, uid))
			note_pod(c, uid, path);
		else if (level + 1 < K8S_CGROUP_DEPTH)
			walk(c, path, level + 1);
		free(path);
	}
	closedir(d);
}

static void pods_clear(struct hmap *m)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(m, &i); e; e = hmap_next(m, e, &i))
		free(e->val);
	hmap_free(m);
}

void k8s_cgroups_rescan(struct k8s_cgroups *c)
{
	struct hmap old = c->pods;

	/* From scratch, so that pods whose directory went unnoticed (no
	 * events, or lost ones) do not stay. */
	memset(&c->pods, 0, sizeof(c->pods));
	walk(c, c->root, 0);
	pods_clear(&old);
	c->rescans++;
}

int k8s_cgroups_init(struct k8s_cgroups *c, const char *root)
{
	memset(c, 0, sizeof(*c));
	c->root = strdup(root);
	if (!c->root)
		return -ENOMEM;
	c->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (c->ifd < 0)
		pr_warn("k8s: inotify: %s; new pod cgroups are found by scanning %s instead",
			strerror(errno), root);
	k8s_cgroups_rescan(c);
	return 0;
}

void k8s_cgroups_free(struct k8s_cgroups *c)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(&c->watches, &i); e; e = hmap_next(&c->watches, e, &i)) {
		struct k8s_cg_watch *w = e->val;

		free(w->path);
		free(w);
	}
	hmap_free(&c->watches);
	pods_clear(&c->pods);
	if (c->ifd >= 0)
		close(c->ifd);
	free(c->root);
	memset(c, 0, sizeof(*c));
	c->ifd = -1;
}

/* One event: a pod directory noted or forgotten, a new directory on the
 * way to them watched and read (pod directories made in it before the
 * watch are noted there). */
static void on_event(struct k8s_cgroups *c, const struct inotify_event *ev)
{
	struct k8s_cg_watch *w = hmap_get(&c->watches, &ev->wd, sizeof(ev->wd));
	char uid[CG_UID_STRLEN + 1], *path;

	if (!w)
		return;
	if (ev->mask & IN_IGNORED) { /* the directory is gone */
		hmap_del(&c->watches, &ev->wd, sizeof(ev->wd));
		free(w->path);
		free(w);
		return;
	}
	if (!(ev->mask & IN_ISDIR) || !ev->len || !ev->name[0])
		return;
	if (asprintf(&path, "%s/%s", w->path, ev->name) < 0)
		return;
	if (k8s_pod_dir_uid(ev->name, uid)) {
		if (ev->mask & IN_DELETE) {
			const char *was = hmap_get(&c->pods, uid, CG_UID_STRLEN);

			if (was && !strcmp(was, path))
				k8s_cgroups_forget(c, uid);
		} else {
			note_pod(c, uid, path);
			pr_debug("k8s: pod cgroup %s appeared", path);
		}
	} else if (!(ev->mask & IN_DELETE) && w->level + 1 < K8S_CGROUP_DEPTH) {
		walk(c, path, w->level + 1);
	}
	free(path);
}

size_t k8s_cgroups_events(struct k8s_cgroups *c)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	uint64_t noted = c->noted;
	bool lost = false;

	if (c->ifd < 0)
		return 0;
	for (int r = 0; r < CG_READS_MAX; r++) {
		ssize_t n = read(c->ifd, buf, sizeof(buf));

		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				pr_warn("k8s: inotify read: %s", strerror(errno));
			break;
		}
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				lost = true;
			else
				on_event(c, ev);
			p += sizeof(*ev) + ev->len;
		}
	}
	if (lost) {
		pr_info("k8s: inotify queue overflowed; scanning %s again", c->root);
		k8s_cgroups_rescan(c);
		return 1;
	}
	return (size_t)(c->noted - noted);
}

const char *k8s_cgroups_path(const struct k8s_cgroups *c, const char *uid)
{
	return hmap_get(&c->pods, uid, strlen(uid));
}

void k8s_cgroups_forget(struct k8s_cgroups *c, const char *uid)
{
	free(hmap_del(&c->pods, uid, strlen(uid)));
}
