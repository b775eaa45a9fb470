// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TC capture's kernel plumbing (tc.h): attaching the TC program to a
 * pod's interface, and the policy route for the packets it marks, written
 * with rtnetlink directly (no ip(8) in the image, no library needed).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/fib_rules.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <shunt/shunt.h>

#include "core/log.h"
#include "kernel/bpf.h"
#include "kernel/tc.h"

/* Linux 6.6's tcx attach point; the uapi headers this builds with may
 * predate it. */
#define SHUNT_BPF_TCX_INGRESS 46
#define SHUNT_BPF_F_BEFORE    (1U << 3)

const char *tc_attach_kind(const struct tc_attachment *a)
{
	return a->link_fd >= 0 ? "tcx" : "clsact";
}

static uint32_t prog_id_of(int prog_fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	return bpf_obj_get_info_by_fd(prog_fd, &info, &len) ? 0 : info.id;
}

int tc_attach(int prog_fd, const char *ifname, struct tc_attachment *a, char *msg, size_t msglen)
{
	struct bpf_tc_hook hook = {.sz = sizeof(hook), .attach_point = BPF_TC_INGRESS};
	struct bpf_tc_opts opts = {.sz = sizeof(opts)};
	/* First on the interface (BPF_F_BEFORE, no anchor): a CNI program
	 * that ends the chain would otherwise never let shunt see a packet;
	 * shunt passes on (TCX_NEXT) all it does not take. */
	struct bpf_link_create_opts lopts = {.sz = sizeof(lopts), .flags = SHUNT_BPF_F_BEFORE};
	int fd, err;

	memset(a, 0, sizeof(*a));
	a->link_fd = -1;
	if (strlen(ifname) >= sizeof(a->ifname)) {
		snprintf(msg, msglen, "interface name '%s' is too long", ifname);
		return -EINVAL;
	}
	snprintf(a->ifname, sizeof(a->ifname), "%s", ifname);
	a->ifindex = (int)if_nametoindex(ifname);
	if (!a->ifindex) {
		err = -errno;
		snprintf(msg, msglen, "interface %s: %s", ifname, strerror(-err));
		return err;
	}
	a->prog_id = prog_id_of(prog_fd);

	/* tcx: the link lives as long as our descriptor, so the program
	 * goes with the agent (kill -9 included), and other programs on
	 * the interface (a CNI's) keep theirs. */
	fd = bpf_link_create(prog_fd, a->ifindex, (enum bpf_attach_type)SHUNT_BPF_TCX_INGRESS,
			     &lopts);
	if (fd >= 0) {
		struct bpf_link_info info = {};
		__u32 len = sizeof(info);

		a->link_fd = fd;
		if (!bpf_obj_get_info_by_fd(fd, &info, &len))
			a->link_id = info.id;
		return 0;
	}
	/* Before 6.6: a clsact filter. It outlives the agent, but its
	 * listener slot empties with it: packets pass (fail open). */
	hook.ifindex = a->ifindex;
	shunt_bpf_quiet(true); /* "exists" is fine */
	err = bpf_tc_hook_create(&hook);
	shunt_bpf_quiet(false);
	if (err && err != -EEXIST) {
		snprintf(msg, msglen, "clsact qdisc on %s: %s", ifname, strerror(-err));
		return err;
	}
	opts.prog_fd = prog_fd;
	opts.handle = SHUNT_TC_HANDLE;
	opts.priority = SHUNT_TC_PRIORITY;
	opts.flags = BPF_TC_F_REPLACE;
	err = bpf_tc_attach(&hook, &opts);
	if (err) {
		snprintf(msg, msglen, "TC filter on %s ingress: %s", ifname, strerror(-err));
		return err;
	}
	return 0;
}

void tc_detach(struct tc_attachment *a)
{
	struct bpf_tc_hook hook = {
		.sz = sizeof(hook), .ifindex = a->ifindex, .attach_point = BPF_TC_INGRESS};
	struct bpf_tc_opts opts = {
		.sz = sizeof(opts), .handle = SHUNT_TC_HANDLE, .priority = SHUNT_TC_PRIORITY};

	if (!a->ifindex)
		return;
	if (a->link_fd >= 0) {
		close(a->link_fd);
		a->link_fd = -1;
	} else {
		shunt_bpf_quiet(true); /* the interface may be gone with its pod */
		if (!bpf_tc_query(&hook, &opts) && opts.prog_id == a->prog_id) {
			opts.prog_id = 0;
			opts.prog_fd = 0;
			opts.flags = 0;
			bpf_tc_detach(&hook, &opts);
		}
		shunt_bpf_quiet(false);
	}
	a->ifindex = 0;
}

int tc_sweep_stale(void)
{
	struct if_nameindex *ifs = if_nameindex();
	int n = 0;

	if (!ifs)
		return 0;
	shunt_bpf_quiet(true); /* most interfaces have no clsact qdisc */
	for (struct if_nameindex *i = ifs; i->if_index; i++) {
		struct bpf_tc_hook hook = {.sz = sizeof(hook),
					   .ifindex = (int)i->if_index,
					   .attach_point = BPF_TC_INGRESS};
		struct bpf_tc_opts opts = {.sz = sizeof(opts),
					   .handle = SHUNT_TC_HANDLE,
					   .priority = SHUNT_TC_PRIORITY};
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd;

		if (bpf_tc_query(&hook, &opts) || !opts.prog_id)
			continue;
		fd = bpf_prog_get_fd_by_id(opts.prog_id);
		if (fd < 0)
			continue;
		if (!bpf_obj_get_info_by_fd(fd, &info, &len) &&
		    !strncmp(info.name, "shunt_tc_ingress", sizeof(info.name) - 1)) {
			opts.prog_id = 0;
			if (!bpf_tc_detach(&hook, &opts)) {
				pr_info("TC: removed the filter a stopped agent left on %s",
					i->if_name);
				n++;
			}
		}
		close(fd);
	}
	shunt_bpf_quiet(false);
	if_freenameindex(ifs);
	return n;
}

/* One rtnetlink request, answered by an ack: 0 or -errno. */
static int rtnl_call(struct nlmsghdr *req)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	char ans[1024];
	int fd, err;
	ssize_t n;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	req->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	req->nlmsg_seq = 1;
	if (sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	for (;;) {
		n = recv(fd, ans, sizeof(ans), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		err = -EPROTO;
		for (struct nlmsghdr *h = (struct nlmsghdr *)ans; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_ERROR &&
			    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
				err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
				goto out;
			}
		}
		break;
	}
out:
	close(fd);
	return err;
}

struct rtnl_req {
	struct nlmsghdr h;
	union {
		struct fib_rule_hdr rule;
		struct rtmsg rt;
	};
	char attrs[64];
};

static void put_u32(struct rtnl_req *r, unsigned short type, uint32_t v)
{
	struct rtattr *ra = (struct rtattr *)((char *)r + NLMSG_ALIGN(r->h.nlmsg_len));

	ra->rta_type = type;
	ra->rta_len = RTA_LENGTH(sizeof(v));
	memcpy(RTA_DATA(ra), &v, sizeof(v));
	r->h.nlmsg_len = NLMSG_ALIGN(r->h.nlmsg_len) + RTA_ALIGN(ra->rta_len);
}

/* "ip [-6] rule add|del fwmark MARK lookup MARK pref SHUNT_TC_RULE_PREF" */
static int rule(int family, uint32_t mark, bool add)
{
	struct rtnl_req r = {};

	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(r.rule));
	r.h.nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
	r.h.nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
	r.rule.family = (unsigned char)family;
	r.rule.action = FR_ACT_TO_TBL;
	r.rule.table = RT_TABLE_UNSPEC;
	put_u32(&r, FRA_FWMARK, mark);
	put_u32(&r, FRA_FWMASK, 0xffffffffU);
	put_u32(&r, FRA_TABLE, mark);
	put_u32(&r, FRA_PRIORITY, SHUNT_TC_RULE_PREF);
	return rtnl_call(&r.h);
}

/* "ip [-6] route add|del local default dev lo table MARK" */
static int local_route(int family, uint32_t mark, bool add)
{
	struct rtnl_req r = {};
	unsigned int lo = if_nametoindex("lo");

	if (!lo)
		return -errno;
	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(r.rt));
	r.h.nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	r.h.nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
	r.rt.rtm_family = (unsigned char)family;
	r.rt.rtm_table = RT_TABLE_UNSPEC;
	r.rt.rtm_protocol = RTPROT_STATIC;
	r.rt.rtm_scope = RT_SCOPE_HOST;
	r.rt.rtm_type = RTN_LOCAL;
	put_u32(&r, RTA_TABLE, mark);
	put_u32(&r, RTA_OIF, lo);
	return rtnl_call(&r.h);
}

int tc_route_iface(const struct shunt_addr *ip, char *ifname, char *msg, size_t msglen)
{
	struct {
		struct nlmsghdr h;
		struct rtmsg rt;
		char attrs[32];
	} req = {};
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	size_t alen = ip->family == SHUNT_FAMILY_V4 ? 4 : 16;
	struct rtattr *ra;
	char ans[4096];
	int fd, oif = 0, err = -ENOENT;
	bool via = false;
	ssize_t n;

	req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.rt));
	req.h.nlmsg_type = RTM_GETROUTE;
	req.h.nlmsg_flags = NLM_F_REQUEST;
	req.h.nlmsg_seq = 1;
	req.rt.rtm_family = ip->family == SHUNT_FAMILY_V4 ? AF_INET : AF_INET6;
	req.rt.rtm_dst_len = (unsigned char)(8 * alen);
	ra = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.h.nlmsg_len));
	ra->rta_type = RTA_DST;
	ra->rta_len = (unsigned short)RTA_LENGTH(alen);
	memcpy(RTA_DATA(ra), ip->addr, alen);
	req.h.nlmsg_len = NLMSG_ALIGN(req.h.nlmsg_len) + RTA_ALIGN(ra->rta_len);

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0 || sendto(fd, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto sys;
	do
		n = recv(fd, ans, sizeof(ans), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		goto sys;
	for (struct nlmsghdr *h = (struct nlmsghdr *)ans; NLMSG_OK(h, (size_t)n);
	     h = NLMSG_NEXT(h, n)) {
		struct rtmsg *rt = NLMSG_DATA(h);
		size_t left;

		if (h->nlmsg_type == NLMSG_ERROR &&
		    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
			err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
			break;
		}
		if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)))
			continue;
		left = h->nlmsg_len - NLMSG_LENGTH(sizeof(*rt));
		for (struct rtattr *a = RTM_RTA(rt); RTA_OK(a, left); a = RTA_NEXT(a, left))
			if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) >= sizeof(int))
				memcpy(&oif, RTA_DATA(a), sizeof(int));
			else if (a->rta_type == RTA_GATEWAY)
				via = true;
		if (rt->rtm_type == RTN_LOCAL || via) {
			snprintf(
				msg, msglen,
				via ? "the node reaches it through a gateway, not its own interface"
				    : "the address is this node's own");
			close(fd);
			return -EINVAL;
		}
		break;
	}
	close(fd);
	if (oif <= 0 || !if_indextoname((unsigned int)oif, ifname)) {
		snprintf(msg, msglen, "no route to the pod's address%s%s", err ? ": " : "",
			 err ? strerror(-err) : "");
		return err ? err : -ENOENT;
	}
	return 0;
sys:
	err = -errno;
	if (fd >= 0)
		close(fd);
	snprintf(msg, msglen, "route lookup: %s", strerror(-err));
	return err;
}

int tc_iface_is_bridge(const char *ifname)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg ifi;
	} req = {};
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	char ans[8192];
	int bridge = -1;
	ssize_t n;
	int fd;

	req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifi));
	req.h.nlmsg_type = RTM_GETLINK;
	req.h.nlmsg_flags = NLM_F_REQUEST;
	req.ifi.ifi_family = AF_UNSPEC;
	req.ifi.ifi_index = (int)if_nametoindex(ifname);
	if (!req.ifi.ifi_index)
		return -1;
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -1;
	if (sendto(fd, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	do
		n = recv(fd, ans, sizeof(ans), 0);
	while (n < 0 && errno == EINTR);
	close(fd);
	for (struct nlmsghdr *h = (struct nlmsghdr *)ans; n > 0 && NLMSG_OK(h, (size_t)n);
	     h = NLMSG_NEXT(h, n)) {
		struct ifinfomsg *ifi = NLMSG_DATA(h);
		size_t left;

		if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)))
			continue;
		bridge = 0;
		left = h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi));
		for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
			size_t l2 = RTA_PAYLOAD(a);

			if (a->rta_type != IFLA_LINKINFO)
				continue;
			for (struct rtattr *b = RTA_DATA(a); RTA_OK(b, l2); b = RTA_NEXT(b, l2))
				if (b->rta_type == IFLA_INFO_KIND && RTA_PAYLOAD(b) >= 7 &&
				    !memcmp(RTA_DATA(b), "bridge", 7))
					bridge = 1;
		}
	}
	return bridge;
}

int tc_route_setup(uint32_t mark, char *msg, size_t msglen)
{
	static const int fams[2] = {AF_INET, AF_INET6};
	int err;

	for (int i = 0; i < 2; i++) {
		err = local_route(fams[i], mark, true);
		/* A node without IPv6 (or with it disabled: EACCES on lo)
		 * still gets IPv4. */
		if (i && (err == -EAFNOSUPPORT || err == -EOPNOTSUPP || err == -EACCES))
			return 0;
		if (err && err != -EEXIST) {
			snprintf(msg, msglen, "local route in table %u (IPv%d): %s", mark,
				 i ? 6 : 4, strerror(-err));
			goto undo;
		}
		err = rule(fams[i], mark, true);
		if (err && err != -EEXIST) {
			snprintf(msg, msglen, "rule fwmark 0x%x lookup %u (IPv%d): %s", mark, mark,
				 i ? 6 : 4, strerror(-err));
			goto undo;
		}
	}
	return 0;
undo:
	tc_route_teardown(mark);
	return err;
}

void tc_route_teardown(uint32_t mark)
{
	static const int fams[2] = {AF_INET, AF_INET6};

	for (int i = 0; i < 2; i++) {
		rule(fams[i], mark, false);
		local_route(fams[i], mark, false);
	}
}
