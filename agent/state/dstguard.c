// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The destination guard (dstguard.h): which addresses shunt may dial. */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "state/dstguard.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"

static const uint8_t v6_loopback[16] = {[15] = 1};

enum dst_class dst_classify(const struct shunt_addr *a)
{
	const uint8_t *b = a->addr;

	if (a->family == SHUNT_FAMILY_V4) {
		if (b[0] == 0)
			return DST_UNSPECIFIED; /* 0.0.0.0/8: "this network" */
		if (b[0] == 127)
			return DST_LOOPBACK;
		if (b[0] == 169 && b[1] == 254)
			return DST_LINK_LOCAL;
		if ((b[0] & 0xf0) == 224)
			return DST_MULTICAST;
		if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255)
			return DST_BROADCAST;
		return DST_OK;
	}
	if (a->family == SHUNT_FAMILY_V6) {
		static const uint8_t zero[16];

		if (!memcmp(b, zero, 16))
			return DST_UNSPECIFIED;
		if (!memcmp(b, v6_loopback, 16))
			return DST_LOOPBACK;
		if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
			return DST_LINK_LOCAL;
		if (b[0] == 0xff)
			return DST_MULTICAST;
		return DST_OK;
	}
	return DST_UNSPECIFIED; /* no family: nothing to dial */
}

const char *dst_class_text(enum dst_class c)
{
	switch (c) {
	case DST_OK:
		return "allowed";
	case DST_UNSPECIFIED:
		return "an unspecified address";
	case DST_LOOPBACK:
		return "a loopback address (the node itself)";
	case DST_LINK_LOCAL:
		return "a link-local address (such as a cloud's metadata service)";
	case DST_MULTICAST:
		return "a multicast address";
	case DST_BROADCAST:
		return "a broadcast address";
	case DST_NODE:
		return "an address of this node";
	case DST_PROXY:
		return "the proxy's own listen address";
	}
	return "refused";
}

int dstguard_refusal(char *err, size_t errlen, const char *role, const struct shunt_addr *a,
		     enum dst_class c)
{
	char s[ADDR_STR_LEN];

	if (a->port)
		format_addr_port(a, s, sizeof(s));
	else if (!inet_ntop(a->family == SHUNT_FAMILY_V4 ? AF_INET : AF_INET6, a->addr, s,
			    sizeof(s)))
		strcpy(s, "?");
	return err_printf(err, errlen, -EACCES,
			  "%s %s is %s: shunt never sends traffic to the node", role, s,
			  dst_class_text(c));
}

/* Addresses compare by family and bytes; ports are 0 in the node set. */
static int addr_cmp(const void *pa, const void *pb)
{
	const struct shunt_addr *a = pa, *b = pb;

	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->addr, b->addr, sizeof(a->addr));
}

void dstguard_init(struct dstguard *g, const struct shunt_addr *proxy, int n_proxy)
{
	memset(g, 0, sizeof(*g));
	g->nl_fd = -1;
	for (int i = 0; i < n_proxy && i < 2; i++)
		g->proxy[g->n_proxy++] = proxy[i];
}

int dstguard_skip_iface(struct dstguard *g, const char *name)
{
	if (g->n_skip == DSTGUARD_MAX_IFACES || !*name || strlen(name) >= IFNAMSIZ)
		return -EINVAL;
	strcpy(g->skip_ifaces[g->n_skip++], name);
	return 0;
}

int dstguard_set_node(struct dstguard *g, const struct shunt_addr *addrs, size_t n)
{
	struct shunt_addr *v = n ? malloc(n * sizeof(*v)) : NULL;
	size_t w = 0;

	if (n && !v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i] = addrs[i];
		v[i].port = 0;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), addr_cmp);
	for (size_t i = 0; i < n; i++)
		if (!w || addr_cmp(&v[w - 1], &v[i]))
			v[w++] = v[i];
	/* The same set again (the periodic refresh, mostly): keep the old
	 * array and the generation, so nothing is republished. */
	if (w == g->n_node && (!w || !memcmp(v, g->node, w * sizeof(*v)))) {
		free(v);
		return 0;
	}
	free(g->node);
	g->node = v;
	g->n_node = w;
	g->node_cap = n;
	g->gen++;
	return 0;
}

int dstguard_copy(struct dstguard *dst, const struct dstguard *src)
{
	*dst = *src;
	dst->nl_fd = -1;
	dst->node = NULL;
	dst->node_cap = 0;
	if (src->n_node) {
		dst->node = malloc(src->n_node * sizeof(*dst->node));
		if (!dst->node)
			return -ENOMEM;
		memcpy(dst->node, src->node, src->n_node * sizeof(*dst->node));
		dst->node_cap = src->n_node;
	}
	return 0;
}

static bool skipped(const struct dstguard *g, const char *ifname)
{
	for (int i = 0; i < g->n_skip; i++)
		if (!strcmp(g->skip_ifaces[i], ifname))
			return true;
	return false;
}

/* pad marks a subnet broadcast address in the node set. */
#define NODE_BROADCAST 1

static int push(struct shunt_addr **v, size_t *n, size_t *cap, const struct sockaddr *sa,
		uint8_t mark)
{
	struct shunt_addr a;

	if (!sa || addr_from_sockaddr(sa, &a))
		return 0;
	a.pad = mark;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct shunt_addr *nv = realloc(*v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = a;
	return 0;
}

/* A subnet's broadcast addresses reach every host on it, the node
 * included: the kernel treats the all-ones and the all-zeros host of every
 * local IPv4 subnet shorter than /31 as broadcast, whatever brd says. */
static int push_subnet_broadcasts(struct shunt_addr **v, size_t *n, size_t *cap,
				  const struct sockaddr *addr, const struct sockaddr *mask)
{
	struct sockaddr_in sin = *(const struct sockaddr_in *)addr;
	uint32_t a = ntohl(sin.sin_addr.s_addr);
	uint32_t m = ntohl(((const struct sockaddr_in *)mask)->sin_addr.s_addr);
	int err;

	if (m == 0xffffffffU || m == 0xfffffffeU)
		return 0;
	sin.sin_addr.s_addr = htonl(a | ~m);
	err = push(v, n, cap, (struct sockaddr *)&sin, NODE_BROADCAST);
	if (err || !m)
		return err;
	sin.sin_addr.s_addr = htonl(a & m);
	return push(v, n, cap, (struct sockaddr *)&sin, NODE_BROADCAST);
}

int dstguard_refresh(struct dstguard *g)
{
	struct ifaddrs *ifs, *i;
	struct shunt_addr *v = NULL;
	size_t n = 0, cap = 0;
	int err = 0;

	if (getifaddrs(&ifs))
		return -errno;
	for (i = ifs; i && !err; i = i->ifa_next) {
		if (!i->ifa_addr || skipped(g, i->ifa_name))
			continue;
		err = push(&v, &n, &cap, i->ifa_addr, 0);
		if (!err && i->ifa_addr->sa_family == AF_INET && i->ifa_netmask)
			err = push_subnet_broadcasts(&v, &n, &cap, i->ifa_addr, i->ifa_netmask);
	}
	freeifaddrs(ifs);
	if (!err)
		err = dstguard_set_node(g, v, n);
	free(v);
	if (!err)
		g->refreshed_ms = monotonic_ms();
	return err;
}

int dstguard_open(struct dstguard *g)
{
	struct sockaddr_nl snl = {.nl_family = AF_NETLINK,
				  .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
	int err;

	g->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (g->nl_fd < 0 || bind(g->nl_fd, (struct sockaddr *)&snl, sizeof(snl))) {
		/* Without events the periodic refresh still catches changes. */
		pr_warn("netlink (address changes): %s; the node's addresses are re-read every "
			"few seconds instead",
			strerror(errno));
		if (g->nl_fd >= 0)
			close(g->nl_fd);
		g->nl_fd = -1;
	}
	err = dstguard_refresh(g);
	if (err)
		pr_err("read the node's addresses: %s", strerror(-err));
	return err;
}

void dstguard_on_netlink(struct dstguard *g)
{
	char buf[8192];
	ssize_t n;
	int err;

	/* What changed does not matter: read everything again. An overrun
	 * (ENOBUFS) means changes were lost, which the re-read covers too. */
	do
		n = recv(g->nl_fd, buf, sizeof(buf), MSG_DONTWAIT);
	while (n > 0 || (n < 0 && errno == ENOBUFS));
	err = dstguard_refresh(g);
	if (err)
		pr_warn("read the node's addresses: %s; keeping the previous set", strerror(-err));
}

void dstguard_close(struct dstguard *g)
{
	if (g->nl_fd >= 0)
		close(g->nl_fd);
	g->nl_fd = -1;
	free(g->node);
	g->node = NULL;
	g->n_node = g->node_cap = 0;
}

enum dst_class dstguard_check(const struct dstguard *g, const struct shunt_addr *a)
{
	enum dst_class c = dst_classify(a);
	const struct shunt_addr *found;
	struct shunt_addr key;

	if (c != DST_OK || !g)
		return c;
	for (int i = 0; i < g->n_proxy; i++)
		if (!addr_cmp(&g->proxy[i], a) && g->proxy[i].port == a->port)
			return DST_PROXY;
	memset(&key, 0, sizeof(key));
	key.family = a->family;
	memcpy(key.addr, a->addr, sizeof(key.addr));
	found = g->n_node ? bsearch(&key, g->node, g->n_node, sizeof(key), addr_cmp) : NULL;
	if (found)
		return found->pad == NODE_BROADCAST ? DST_BROADCAST : DST_NODE;
	return DST_OK;
}

bool dstguard_family_served(const struct dstguard *g, uint8_t family)
{
	if (!g)
		return true;
	for (int i = 0; i < g->n_proxy; i++)
		if (g->proxy[i].family == family)
			return true;
	return false;
}
