// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Capture modes of this node's pods (k8s/capture.h): which pods want
 * in-pod or TC capture, worked out on the watcher thread from the pods'
 * annotations and the agent's default, with what the main thread needs to
 * register each (a network namespace path; an address to find the
 * host-side interface by).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "core/log.h"
#include "k8s/cache.h"
#include "k8s/capture.h"
#include "k8s/cgroup.h"

/* A process of the pod (in dir, or one or two levels below: the
 * containers' cgroups), as this agent's PID namespace numbers it: its
 * network namespace path in out. false: none visible (no process yet, or
 * the agent does not see the host's PIDs: no hostPID). */
static bool netns_in(const char *dir, int depth, char *out, size_t len, uint64_t *ino)
{
	char path[512];
	FILE *f;
	long pid;
	DIR *d;
	struct dirent *e;
	struct stat st;
	bool found = false;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	if (f) {
		while (!found && fscanf(f, "%ld", &pid) == 1) {
			if (pid <= 0)
				continue; /* outside our PID namespace */
			snprintf(out, len, "/proc/%ld/ns/net", pid);
			found = !stat(out, &st);
			*ino = found ? (uint64_t)st.st_ino : 0;
		}
		fclose(f);
	}
	if (found || depth >= 2)
		return found;
	d = opendir(dir);
	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		found = netns_in(path, depth + 1, out, len, ino);
	}
	closedir(d);
	return found;
}

static int cap_cmp(const void *pa, const void *pb)
{
	const struct k8s_capture_pod *a = pa, *b = pb;

	return strcmp(a->name, b->name);
}

int k8s_capture_build(const struct k8s_cache *c, struct k8s_cgroups *cg, uint8_t dflt,
		      struct k8s_capture_set **out, size_t *pending)
{
	struct k8s_capture_set *cap = calloc(1, sizeof(*cap));
	const struct hmap *pods = &c->objs[K8S_POD];
	struct hmap_entry *e;
	size_t i, max = 0;
	bool rescanned = false;

	*pending = 0;
	if (!cap)
		return -ENOMEM;
	for (e = hmap_first(pods, &i); e; e = hmap_next(pods, e, &i))
		max++;
	cap->p = calloc(max ? max : 1, sizeof(*cap->p));
	if (!cap->p) {
		free(cap);
		return -ENOMEM;
	}
	for (e = hmap_first(pods, &i); e; e = hmap_next(pods, e, &i)) {
		const struct k8s_pod *p = e->val;
		struct k8s_capture_pod *cp = &cap->p[cap->n];
		uint8_t mode = p->capture;
		const char *dir;

		if (!p->local || !p->uid || p->ended || p->host_network || !p->nips)
			continue;
		if (mode == K8S_CAPTURE_DEFAULT || mode == K8S_CAPTURE_INVALID)
			mode = dflt;
		if (mode != K8S_CAPTURE_INPOD && mode != K8S_CAPTURE_TC)
			continue;
		if (strlen(p->m.id) >= sizeof(cp->name))
			continue; /* longer than a pod registration's name */
		memset(cp, 0, sizeof(*cp));
		snprintf(cp->name, sizeof(cp->name), "%s", p->m.id);
		cp->mode = mode;
		cp->ip = p->ips[0];
		if (mode == K8S_CAPTURE_INPOD) {
			cp->infer = p->infer;
			cp->n_infer_ports = p->n_infer_ports;
			memcpy(cp->infer_ports, p->infer_ports, sizeof(cp->infer_ports));
			dir = k8s_cgroups_path(cg, p->uid);
			if (!dir && !rescanned) { /* once per build */
				rescanned = true;
				k8s_cgroups_rescan(cg);
				dir = k8s_cgroups_path(cg, p->uid);
			}
			if (!dir ||
			    !netns_in(dir, 0, cp->netns, sizeof(cp->netns), &cp->netns_ino)) {
				(*pending)++; /* no process seen yet: again soon */
				continue;
			}
		}
		cap->n++;
	}
	qsort(cap->p, cap->n, sizeof(*cap->p), cap_cmp);
	*out = cap;
	return 0;
}

bool k8s_capture_pod_same(const struct k8s_capture_pod *a, const struct k8s_capture_pod *b)
{
	if (strcmp(a->name, b->name) || a->mode != b->mode)
		return false;
	if (a->mode == K8S_CAPTURE_INPOD)
		return a->netns_ino == b->netns_ino;
	return !memcmp(&a->ip, &b->ip, sizeof(a->ip));
}

bool k8s_capture_infer_same(const struct k8s_capture_pod *a, const struct k8s_capture_pod *b)
{
	return a->infer == b->infer && a->n_infer_ports == b->n_infer_ports &&
	       !memcmp(a->infer_ports, b->infer_ports, sizeof(a->infer_ports));
}

bool k8s_capture_same(const struct k8s_capture_set *a, const struct k8s_capture_set *b)
{
	if (!a || !b || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!k8s_capture_pod_same(&a->p[i], &b->p[i]) ||
		    !k8s_capture_infer_same(&a->p[i], &b->p[i]))
			return false;
	return true;
}

void k8s_capture_free(struct k8s_capture_set *c)
{
	if (!c)
		return;
	free(c->p);
	free(c);
}
