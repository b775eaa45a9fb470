// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Inferred propagation, inbound: attached (sk_lookup) to the network
 * namespace of a pod with inference on, it hands the pod's incoming TCP
 * connections to the ports shunt_infer_ports names to the agent's
 * listener in that namespace, which reads each request's key and relays
 * it to the app over loopback.
 *
 * Passes untouched:
 *  - whatever comes from a loopback address or from the pod's own
 *    address: the agent's own relay connections (from 127.77.0.1, or
 *    they would come back to the agent), and the pod's calls to itself
 *    (the agent's scan counts those as work it does not see);
 *  - everything while the agent's heartbeat is stale: a hung agent must
 *    not hold the pod's traffic (a dead one's link and sockets go with
 *    it, and the program with them);
 *  - a port whose listener is gone (its slot in shunt_infer_socks is
 *    empty).
 * Its maps are the agent's own, not pinned: nothing of them outlives it.
 */
#include "lib/common.h"

#define LOOPBACK_IFINDEX 1 /* every network namespace's lo */
#define SK_PASS		 1

/* Written by the agent (CLOCK_MONOTONIC, as bpf_ktime_get_ns). */
volatile __u64 heartbeat_ns;
__u64 stats[SHUNT_INFER_STAT_MAX];

/* Up to 8 ports x 8 addresses a pod: allocated as used. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 64 * SHUNT_MAX_INPOD);
	__type(key, struct shunt_infer_port_key);
	__type(value, __u32);
} shunt_infer_ports SEC(".maps");

/* The agent's listeners, two slots per pod (as shunt_pod_socks). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2 * SHUNT_MAX_INPOD);
	__type(key, __u32);
	__type(value, __u64);
} shunt_infer_socks SEC(".maps");

SEC("sk_lookup")
int shunt_infer_lookup(struct bpf_sk_lookup *ctx)
{
	struct shunt_infer_port_key k = {};
	struct bpf_sock *sk;
	__u32 *slot;

	if (ctx->protocol != IPPROTO_TCP || ctx->ingress_ifindex == LOOPBACK_IFINDEX)
		return SK_PASS;
	k.port = (__u16)ctx->local_port;
	/* From the pod's own address (its connection to itself, whose route
	 * may name the pod's interface rather than lo): the agent's relay. */
	if (ctx->family == AF_INET) {
		__u32 l = ctx->local_ip4;

		/* From a loopback address (shunt's relays leave from
		 * 127.77.0.1; the pod's own loopback calls), or from itself. */
		if (ctx->remote_ip4 == l || (bpf_ntohl(ctx->remote_ip4) >> 24) == 127)
			return SK_PASS;
		k.family = SHUNT_FAMILY_V4;
		__builtin_memcpy(k.addr, &l, 4);
	} else if (ctx->family == AF_INET6) {
		__u32 w[4] = {ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2],
			      ctx->local_ip6[3]};

		if ((ctx->remote_ip6[0] == w[0] && ctx->remote_ip6[1] == w[1] &&
		     ctx->remote_ip6[2] == w[2] && ctx->remote_ip6[3] == w[3]) ||
		    (!ctx->remote_ip6[0] && !ctx->remote_ip6[1] && !ctx->remote_ip6[2] &&
		     ctx->remote_ip6[3] == bpf_htonl(1)))
			return SK_PASS; /* from itself, or from ::1 */
		k.family = SHUNT_FAMILY_V6;
		__builtin_memcpy(k.addr, w, 16);
	} else {
		return SK_PASS;
	}
	slot = bpf_map_lookup_elem(&shunt_infer_ports, &k);
	if (!slot)
		return SK_PASS;
	/* Signed: a beat written after the clock was read is fresh. */
	if ((__s64)(bpf_ktime_get_ns() - heartbeat_ns) > (__s64)SHUNT_INFER_STALE_MS * 1000000LL) {
		__sync_fetch_and_add(&stats[SHUNT_INFER_STALE], 1);
		return SK_PASS;
	}
	sk = bpf_map_lookup_elem(&shunt_infer_socks, slot);
	if (!sk) {
		__sync_fetch_and_add(&stats[SHUNT_INFER_NO_SOCKET], 1);
		return SK_PASS;
	}
	if (!bpf_sk_assign(ctx, sk, 0))
		__sync_fetch_and_add(&stats[SHUNT_INFER_TAKEN], 1);
	bpf_sk_release(sk);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
