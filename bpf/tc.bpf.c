// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TC capture, for pods the cgroup hooks cannot see (their connect() runs
 * in another kernel, a VM-isolated pod's): attached to the ingress of a
 * pod's host-side interface (tcx, or a clsact filter on older kernels), it
 * sees the pod's packets as they enter the node.
 *
 * A TCP packet to a steered service (shunt_services with routes):
 *  - belongs to a connection the proxy already holds (a socket for its
 *    exact 4-tuple in this namespace, not a listener): hand it to that
 *    socket;
 *  - is a SYN: hand it to the proxy's transparent listener
 *    (shunt_tc_socks), whose accept() then gives a socket whose local
 *    address is the service the pod dialled;
 *  - else, or with no live listener, goes on untouched (fail open).
 * A packet handed over carries tc_mark, which the agent's policy route
 * ("fwmark tc_mark lookup tc_mark": local 0/0 dev lo) delivers to this
 * host instead of forwarding it.
 */
#include "lib/maps.h"

#define ETH_HLEN       14
#define ETH_P_IP       0x0800
#define ETH_P_IPV6     0x86DD
#define IP_MF	       0x2000
#define IP_OFFSET      0x1FFF
#define TC_ACT_UNSPEC  (-1) /* tcx: TCX_NEXT, the next program decides */
#define TC_ACT_OK      0
#define TCP_FLAG_FIN   0x01
#define TCP_FLAG_SYN   0x02
#define TCP_FLAG_RST   0x04
#define TCP_FLAG_ACK   0x10
#define TCP_FLAGS_BYTE 13 /* offset of the flags byte in the TCP header */
#define HEADS_MAX      94 /* Ethernet, IPv4 with options, TCP without */

/* Set by the agent before loading (--tc-mark). */
const volatile __u32 tc_mark = SHUNT_DEFAULT_TC_MARK;

/* Hand the packet to sk (a held reference, released here) and mark it for
 * local delivery. */
static __always_inline int give(struct __sk_buff *skb, struct bpf_sock *sk)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	if (err)
		return TC_ACT_UNSPEC;
	skb->mark = tc_mark;
	return TC_ACT_OK;
}

/* The packet's headers, for bpf_tcp_check_syncookie. */
struct heads {
	void *ip, *th;
	__u32 ip_len;
};

/* A packet other than a SYN: one of a connection the proxy holds (its
 * SYN was handed over: shunt_tc_conns has it, whether or not the service
 * still has routes), or nothing of ours. */
static __always_inline int follow(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u32 tlen,
				  const struct shunt_tc_conn_key *ck, const struct shunt_addr *dst,
				  __u8 flags, __u32 slot, struct heads *h)
{
	__u32 *ifx = bpf_map_lookup_elem(&shunt_tc_conns, ck);
	struct bpf_sock *sk;

	/* An entry the LRU let go: the proxy's socket still says it. */
	if (!ifx && !bpf_map_lookup_elem(&shunt_services, dst))
		return TC_ACT_UNSPEC;
	sk = (struct bpf_sock *)bpf_skc_lookup_tcp(skb, t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		/* A listener here is the node's own (0.0.0.0:port), not ours. */
		if (sk->state != BPF_TCP_LISTEN)
			return give(skb, sk);
		bpf_sk_release(sk);
	}
	if (!ifx)
		return TC_ACT_UNSPEC;
	/* Ours, but no socket has this 4-tuple: the node DNATs the service
	 * (the proxy's socket has the backend's address; conntrack gives it
	 * the same translation), or the handshake ends with a SYN cookie. */
	if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_FIN | TCP_FLAG_RST)) == TCP_FLAG_ACK) {
		sk = bpf_map_lookup_elem(&shunt_tc_socks, &slot);
		if (sk) {
			if (!bpf_tcp_check_syncookie(sk, h->ip, h->ip_len, h->th,
						     sizeof(struct tcphdr)))
				return give(skb, sk);
			bpf_sk_release(sk);
		}
	}
	skb->mark = tc_mark;
	return TC_ACT_OK;
}

static __always_inline int steer(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u32 tlen,
				 const struct shunt_tc_conn_key *ck, const struct shunt_addr *dst,
				 __u8 flags, __u32 slot, struct heads *h)
{
	const struct shunt_service *svc;
	struct shunt_config *cfg;
	struct bpf_sock *sk;
	__u32 ifindex;

	if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN)
		return follow(skb, t, tlen, ck, dst, flags, slot, h);

	svc = bpf_map_lookup_elem(&shunt_services, dst);
	if (!svc || !svc->routes)
		return TC_ACT_UNSPEC;
	/* A retransmitted SYN belongs to its request socket; one onto a
	 * TIME_WAIT socket starts a new connection. */
	sk = (struct bpf_sock *)bpf_skc_lookup_tcp(skb, t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		if (sk->state != BPF_TCP_LISTEN && sk->state != BPF_TCP_TIME_WAIT)
			return give(skb, sk);
		bpf_sk_release(sk);
	}
	cfg = config_get();
	if (cfg && (cfg->flags & SHUNT_CFG_CONN_LIMIT)) {
		stat_inc(SHUNT_STAT_CONN_LIMIT);
		goto pass;
	}
	sk = bpf_map_lookup_elem(&shunt_tc_socks, &slot);
	if (!sk || give(skb, sk) != TC_ACT_OK) {
		stat_inc(SHUNT_STAT_TC_FAIL_OPEN);
		goto pass;
	}
	ifindex = skb->ingress_ifindex;
	bpf_map_update_elem(&shunt_tc_conns, ck, &ifindex, BPF_ANY);
	stat_inc(SHUNT_STAT_TC);
	return TC_ACT_OK;
pass:
	/* Not ours: an entry left from an earlier connection of this
	 * 4-tuple must not claim its packets. */
	bpf_map_delete_elem(&shunt_tc_conns, ck);
	return TC_ACT_UNSPEC;
}

static __always_inline int ingress4(struct __sk_buff *skb, void *data, void *data_end)
{
	struct iphdr *ip = data + ETH_HLEN;
	struct shunt_tc_conn_key ck = {};
	struct bpf_sock_tuple t = {};
	struct shunt_addr dst = {};
	struct heads h;
	struct tcphdr *th;
	__u32 ihl;

	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
		return TC_ACT_UNSPEC;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return TC_ACT_UNSPEC;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return TC_ACT_UNSPEC;
	th = (void *)ip + ihl;
	if ((void *)(th + 1) > data_end)
		return TC_ACT_UNSPEC;
	t.ipv4.saddr = ip->saddr;
	t.ipv4.daddr = ip->daddr;
	t.ipv4.sport = th->source;
	t.ipv4.dport = th->dest;
	ck.family = SHUNT_FAMILY_V4;
	__builtin_memcpy(ck.saddr, &ip->saddr, 4);
	__builtin_memcpy(ck.daddr, &ip->daddr, 4);
	ck.sport = th->source;
	ck.dport = th->dest;
	dst.family = SHUNT_FAMILY_V4;
	__builtin_memcpy(dst.addr, &ip->daddr, 4);
	dst.port = bpf_ntohs(th->dest);
	h.ip = ip;
	h.ip_len = sizeof(*ip);
	h.th = th;
	return steer(skb, &t, sizeof(t.ipv4), &ck, &dst, ((__u8 *)th)[TCP_FLAGS_BYTE], SHUNT_TC_V4,
		     &h);
}

static __always_inline int ingress6(struct __sk_buff *skb, void *data, void *data_end)
{
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	struct shunt_tc_conn_key ck = {};
	struct bpf_sock_tuple t = {};
	struct shunt_addr dst = {};
	struct heads h;
	struct tcphdr *th;

	/* TCP right after the fixed header; extension headers pass. */
	if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
		return TC_ACT_UNSPEC;
	th = (void *)(ip6 + 1);
	if ((void *)(th + 1) > data_end)
		return TC_ACT_UNSPEC;
	__builtin_memcpy(t.ipv6.saddr, &ip6->saddr, 16);
	__builtin_memcpy(t.ipv6.daddr, &ip6->daddr, 16);
	t.ipv6.sport = th->source;
	t.ipv6.dport = th->dest;
	ck.family = SHUNT_FAMILY_V6;
	__builtin_memcpy(ck.saddr, &ip6->saddr, 16);
	__builtin_memcpy(ck.daddr, &ip6->daddr, 16);
	ck.sport = th->source;
	ck.dport = th->dest;
	dst.family = SHUNT_FAMILY_V6;
	__builtin_memcpy(dst.addr, &ip6->daddr, 16);
	dst.port = bpf_ntohs(th->dest);
	h.ip = ip6;
	h.ip_len = sizeof(*ip6);
	h.th = th;
	return steer(skb, &t, sizeof(t.ipv6), &ck, &dst, ((__u8 *)th)[TCP_FLAGS_BYTE], SHUNT_TC_V6,
		     &h);
}

SEC("tc")
int shunt_tc_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth;

	/* The headers in the linear part, so that no packet of a connection
	 * of ours is passed for want of them. */
	if (data + HEADS_MAX > data_end && skb->len > (__u32)(data_end - data)) {
		bpf_skb_pull_data(skb, skb->len < HEADS_MAX ? skb->len : HEADS_MAX);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	eth = data;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return ingress4(skb, data, data_end);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return ingress6(skb, data, data_end);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
