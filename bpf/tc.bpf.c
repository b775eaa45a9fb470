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
#define TCP_FLAG_SYN   0x02
#define TCP_FLAG_ACK   0x10
#define TCP_FLAGS_BYTE 13 /* offset of the flags byte in the TCP header */

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

static __always_inline int steer(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u32 tlen,
				 const struct shunt_addr *dst, __u8 flags, __u32 slot)
{
	const struct shunt_service *svc;
	struct shunt_config *cfg;
	struct bpf_sock *sk;
	int syn = (flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;

	svc = bpf_map_lookup_elem(&shunt_services, dst);
	if (!svc || !svc->routes)
		return TC_ACT_UNSPEC;

	/* A connection the proxy holds: its accepted socket is bound to the
	 * service's address. A listener found here is the node's own (say
	 * 0.0.0.0:port), never ours; a TIME_WAIT socket gives way to a new
	 * SYN, as the stack would to a listener. */
	sk = (struct bpf_sock *)bpf_skc_lookup_tcp(skb, t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		if (sk->state != BPF_TCP_LISTEN && !(syn && sk->state == BPF_TCP_TIME_WAIT))
			return give(skb, sk);
		bpf_sk_release(sk);
	}
	if (!syn)
		return TC_ACT_UNSPEC; /* not ours: where it was going */

	cfg = config_get();
	if (cfg && (cfg->flags & SHUNT_CFG_CONN_LIMIT)) {
		stat_inc(SHUNT_STAT_CONN_LIMIT);
		return TC_ACT_UNSPEC;
	}
	sk = bpf_map_lookup_elem(&shunt_tc_socks, &slot);
	if (!sk) {
		stat_inc(SHUNT_STAT_TC_FAIL_OPEN);
		return TC_ACT_UNSPEC;
	}
	if (give(skb, sk) != TC_ACT_OK) {
		stat_inc(SHUNT_STAT_TC_FAIL_OPEN);
		return TC_ACT_UNSPEC;
	}
	stat_inc(SHUNT_STAT_TC);
	return TC_ACT_OK;
}

static __always_inline int ingress4(struct __sk_buff *skb, void *data, void *data_end)
{
	struct iphdr *ip = data + ETH_HLEN;
	struct bpf_sock_tuple t = {};
	struct shunt_addr dst = {};
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
	dst.family = SHUNT_FAMILY_V4;
	__builtin_memcpy(dst.addr, &ip->daddr, 4);
	dst.port = bpf_ntohs(th->dest);
	return steer(skb, &t, sizeof(t.ipv4), &dst, ((__u8 *)th)[TCP_FLAGS_BYTE], SHUNT_TC_V4);
}

static __always_inline int ingress6(struct __sk_buff *skb, void *data, void *data_end)
{
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	struct bpf_sock_tuple t = {};
	struct shunt_addr dst = {};
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
	dst.family = SHUNT_FAMILY_V6;
	__builtin_memcpy(dst.addr, &ip6->daddr, 16);
	dst.port = bpf_ntohs(th->dest);
	return steer(skb, &t, sizeof(t.ipv6), &dst, ((__u8 *)th)[TCP_FLAGS_BYTE], SHUNT_TC_V6);
}

SEC("tc")
int shunt_tc_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return ingress4(skb, data, data_end);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return ingress6(skb, data, data_end);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
