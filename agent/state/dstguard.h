/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The destination guard: shunt never sends traffic to the node itself.
 *
 * The proxy dials from the node's network namespace, so a route whose
 * sandbox (or whose captured service) were 127.0.0.1, a link-local address
 * (a cloud's metadata service at 169.254.169.254 and the credentials
 * behind it), an address of the node or the proxy's own listener would let
 * whoever can create a route reach the node. Every source of routes and
 * overrides (control socket, routes file, Kubernetes) goes through the
 * route store, which asks dstguard_check() first; the proxy asks again
 * before every upstream connect(), because the node's addresses change.
 *
 * Refused: unspecified (0.0.0.0/8, ::), loopback (127.0.0.0/8, ::1),
 * link-local (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4,
 * ff00::/8), broadcast (255.255.255.255 and the broadcast address of every
 * node subnet), every address configured on the node's interfaces except
 * those of --service-iface interfaces (kube-proxy's IPVS mode puts every
 * ClusterIP on kube-ipvs0), and the proxy's own listening endpoints.
 */
#ifndef SHUNT_DSTGUARD_H
#define SHUNT_DSTGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

enum dst_class {
	DST_OK = 0,
	DST_UNSPECIFIED,
	DST_LOOPBACK,
	DST_LINK_LOCAL,
	DST_MULTICAST,
	DST_BROADCAST,
	DST_NODE,  /* an address of one of the node's interfaces */
	DST_PROXY, /* the proxy's own listening endpoint (address and port) */
};

#define DSTGUARD_MAX_IFACES 8

struct dstguard {
	struct shunt_addr proxy[2]; /* the proxy's listen addresses (port kept) */
	int n_proxy;
	/* The node's addresses and subnet broadcasts, port 0, sorted
	 * (bytewise) for bsearch. */
	struct shunt_addr *node;
	size_t n_node, node_cap;
	/* Interfaces whose addresses are not the node's own (--service-iface). */
	char skip_ifaces[DSTGUARD_MAX_IFACES][16];
	int n_skip;
	int nl_fd; /* netlink socket told of address changes; -1 without */
	uint64_t refreshed_ms;
	uint64_t gen; /* changes when the node's addresses do */
};

/* The class of an address by its value alone (no node, no proxy). */
enum dst_class dst_classify(const struct shunt_addr *a);

/* What a class means, for messages: "a loopback address (the node
 * itself)". */
const char *dst_class_text(enum dst_class c);

/* Set up: the proxy's addresses and the interfaces to skip; no I/O.
 * dstguard_open() then subscribes to address changes and reads the
 * node's addresses (0 or -errno). */
void dstguard_init(struct dstguard *g, const struct shunt_addr *proxy, int n_proxy);
int dstguard_skip_iface(struct dstguard *g, const char *name);
int dstguard_open(struct dstguard *g);
void dstguard_close(struct dstguard *g);

/* Read the node's addresses again (getifaddrs). 0 or -errno; on failure
 * the previous set stays. */
int dstguard_refresh(struct dstguard *g);
/* Replace the node's addresses (unit tests, and dstguard_refresh). */
int dstguard_set_node(struct dstguard *g, const struct shunt_addr *addrs, size_t n);
/* A copy for reading on another thread (no netlink socket): free it
 * with dstguard_close(). 0 or -ENOMEM. */
int dstguard_copy(struct dstguard *dst, const struct dstguard *src);
/* The netlink socket said something changed: drain it and refresh. */
void dstguard_on_netlink(struct dstguard *g);

/* May shunt send traffic to a? DST_OK, or why not. A NULL guard allows
 * everything (unit tests of other modules). */
enum dst_class dstguard_check(const struct dstguard *g, const struct shunt_addr *a);

/* Is there a proxy listener of a's family? (No guard: yes.) */
bool dstguard_family_served(const struct dstguard *g, uint8_t family);

/* "sandbox 127.0.0.1:8080 is a loopback address (the node itself): shunt
 * never sends traffic to the node" into err; returns -EACCES. role names
 * the address ("service", "sandbox", "override target"). */
int dstguard_refusal(char *err, size_t errlen, const char *role, const struct shunt_addr *a,
		     enum dst_class c);

#endif /* SHUNT_DSTGUARD_H */
