/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Capture modes of this node's pods in Kubernetes: the pods that want
 * in-pod or TC capture (annotation shunt.dev/capture, else the agent's
 * --pod-capture), as a sorted snapshot the watcher thread hands to the
 * main thread, which registers and unregisters them (as `shuntctl pod
 * add|del` would). Pods in node mode are not listed: node mode needs no
 * registration.
 */
#ifndef SHUNT_K8S_CAPTURE_H
#define SHUNT_K8S_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

struct k8s_cache;
struct k8s_cgroups;

struct k8s_capture_pod {
	char name[64];	      /* "namespace/name": the registration's name */
	uint8_t mode;	      /* K8S_CAPTURE_INPOD or K8S_CAPTURE_TC */
	char netns[48];	      /* in-pod: /proc/PID/ns/net of one of its processes */
	uint64_t netns_ino;   /* in-pod: that namespace's inode, its identity */
	struct shunt_addr ip; /* its first address: TC finds its interface by it */
	/* In-pod: inferred propagation as its annotations ask (k8s_pod). */
	uint8_t infer;
	int8_t n_infer_ports;
	uint16_t infer_ports[8];
	/* Main thread: the inference set for it matches the above. */
	bool infer_applied;
};

struct k8s_capture_set {
	size_t n;
	struct k8s_capture_pod *p; /* sorted by name */
};

/* The snapshot for this node's pods in c (dflt: the mode of a pod without
 * the annotation, K8S_CAPTURE_NODE or K8S_CAPTURE_INPOD). An in-pod pod
 * none of whose processes can be seen yet is left out and counted in
 * *pending (build again a little later). 0 or -ENOMEM. Watcher thread. */
int k8s_capture_build(const struct k8s_cache *c, struct k8s_cgroups *cg, uint8_t dflt,
		      struct k8s_capture_set **out, size_t *pending);

/* The same registration: name, mode and identity (the netns inode; the
 * address for TC), not the path (any process of the pod). */
bool k8s_capture_pod_same(const struct k8s_capture_pod *a, const struct k8s_capture_pod *b);

/* The same inference settings? */
bool k8s_capture_infer_same(const struct k8s_capture_pod *a, const struct k8s_capture_pod *b);

/* The same registrations, with the same inference settings? */
bool k8s_capture_same(const struct k8s_capture_set *a, const struct k8s_capture_set *b);
void k8s_capture_free(struct k8s_capture_set *c);

#endif /* SHUNT_K8S_CAPTURE_H */
