/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The source of an override: which connections it applies to, as a person
 * names them and as the kernel sees them.
 *
 *   netns:PATH    a network namespace file (/run/netns/NAME,
 *                 /proc/PID/ns/net): every socket created in it
 *   pid:PID       the network namespace process PID is in
 *   cgroup:PATH   a cgroup v2 directory: every task in it or below it
 *
 * A pod is its network namespace (all its containers share it) or its
 * pod-level cgroup.
 */
#ifndef SHUNT_SOURCE_H
#define SHUNT_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

/* Syntax only (no file is opened): 0 or -EINVAL with a message. */
int source_check(const char *spec, char *err, size_t errlen);

/* How the overrides of a SandboxOverride name their source:
 * "k8s:NAMESPACE/NAME pod POD" (not something to add by hand). */
#define SHUNT_K8S_FROM_PREFIX "k8s:"

/* A source as `override del` takes it: what source_check accepts, or the
 * text of a SandboxOverride's override (so that deleting one can be
 * refused with a reason). 0 or -EINVAL with a message. */
int source_check_listed(const char *spec, char *err, size_t errlen);

/* The kernel's identity of spec: *kind is SHUNT_SRC_NETNS with the netns
 * cookie, or SHUNT_SRC_CGROUP with the cgroup id. 0 or -errno with a
 * message. */
int source_resolve(const char *spec, uint32_t *kind, uint64_t *id, char *err, size_t errlen);

/* The id the kernel gives the cgroup v2 directory path. */
int cgroup_id(const char *path, uint64_t *id, char *err, size_t errlen);

#endif /* SHUNT_SOURCE_H */
