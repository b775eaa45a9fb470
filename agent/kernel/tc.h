/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * TC capture's kernel plumbing: the TC program on a pod's host-side
 * interface (tcx on Linux 6.6 and later, a clsact filter before), and the
 * policy route that delivers the packets it marks to this host.
 */
#ifndef SHUNT_AGENT_TC_H
#define SHUNT_AGENT_TC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <net/if.h>

/* clsact filters shunt adds: this handle, this priority (tc filter show). */
#define SHUNT_TC_HANDLE	  0x5348U
#define SHUNT_TC_PRIORITY 1U
/* The priority (pref) of the policy rule: before the main table's. */
#define SHUNT_TC_RULE_PREF 21320U

struct tc_attachment {
	char ifname[IF_NAMESIZE];
	int ifindex;
	int link_fd;	  /* tcx: the link (closed = detached); -1: clsact */
	uint32_t prog_id; /* what we attached, to recognise our own filter */
	uint32_t link_id; /* tcx: the link's id (bpftool link show) */
};

/* Attach prog_fd to ifname's ingress: as a tcx link where the kernel has
 * them, else as a clsact filter (replacing one of ours there, say an
 * earlier agent's). 0, or -errno with msg. */
int tc_attach(int prog_fd, const char *ifname, struct tc_attachment *a, char *msg, size_t msglen);

/* Undo tc_attach. A clsact filter is removed only while it still runs our
 * program: a successor may have put its own in its place. */
void tc_detach(struct tc_attachment *a);

/* Remove the clsact filters an agent that died left behind (tcx links go
 * with their agent): a pod captured then is not registered now. Returns
 * how many were removed. */
int tc_sweep_stale(void);

/* "tcx" or "clsact". */
const char *tc_attach_kind(const struct tc_attachment *a);

/* The policy route for mark, both families: "ip rule add fwmark MARK
 * lookup MARK pref SHUNT_TC_RULE_PREF" and "ip route add local default
 * dev lo table MARK". Present already is fine; a node without IPv6 gets
 * IPv4 only. 0, or -errno with msg (nothing left half done). */
int tc_route_setup(uint32_t mark, char *msg, size_t msglen);

struct shunt_addr;

/* The interface the node routes ip through directly (a routed pod's
 * host-side veth; a route through a gateway is refused): its name in
 * ifname (IF_NAMESIZE). 0, or -errno with msg. */
int tc_route_iface(const struct shunt_addr *ip, char *ifname, char *msg, size_t msglen);

/* Is ifname a bridge (rtnetlink's link kind)? 1, 0, or -1: cannot tell. */
int tc_iface_is_bridge(const char *ifname);

/* Remove what tc_route_setup added (a clean stop, nothing handed over). */
void tc_route_teardown(uint32_t mark);

#endif /* SHUNT_AGENT_TC_H */
