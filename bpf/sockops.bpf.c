// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * sockops: bookkeeping of captured connections. At establishment the
 * client's source address is known; re-key the original destination by it
 * so the proxy can find it from accept()'s peer address. At close, forget
 * the socket.
 */
#include "lib/addr.h"
#include "lib/orig.h"

/* Set by the agent before loading: file each captured connection's network
 * namespace in shunt_conn_src (the per-pod limits are on, and the kernel
 * has bpf_get_netns_cookie for sockops, 5.15 and later). Off, the call is
 * dead code the verifier never looks at. */
const volatile __u8 record_src = 0;

/* Set by the agent when the kernel has bpf_get_netns_cookie for sockops:
 * only then does it serve pods in-pod (their connections are filed by
 * netns, below). */
const volatile __u8 netns_known = 0;

static __always_inline void on_active_established(struct bpf_sock_ops *skops)
{
	struct shunt_orig *orig;
	struct shunt_addr client = {};
	__u32 ip6[4];

	orig = orig_of(skops);
	if (!orig)
		return;
	/* Ask for a state callback so the record goes when the socket does. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	if (orig->flags & SHUNT_ORIG_OVERRIDE)
		return; /* connected straight to the override's target */

	/* local_port is host order in bpf_sock_ops (remote_port is not),
	 * as shunt_addr wants it. */
	client.port = (__u16)skops->local_port;
	if (skops->family == AF_INET) {
		ip6[0] = skops->local_ip4;
		client.family = SHUNT_FAMILY_V4;
		addr_set_words(&client, ip6, 1);
	} else {
		ip6[0] = skops->local_ip6[0];
		ip6[1] = skops->local_ip6[1];
		ip6[2] = skops->local_ip6[2];
		ip6[3] = skops->local_ip6[3];
		if (ip6_is_v4mapped(ip6)) {
			client.family = SHUNT_FAMILY_V4;
			addr_set_words(&client, &ip6[3], 1);
		} else {
			client.family = SHUNT_FAMILY_V6;
			addr_set_words(&client, ip6, 4);
		}
	}
	/* To the pod's own listener: its 127.0.0.1 is every pod's. */
	if (orig->flags & SHUNT_ORIG_INPOD) {
		struct shunt_pod_conn_key k = {.client = client};

		if (netns_known) {
			k.netns = bpf_get_netns_cookie(skops);
			bpf_map_update_elem(&shunt_pod_conns, &k, orig, BPF_ANY);
			stat_inc(SHUNT_STAT_ESTABLISHED);
		}
		return;
	}
	/* The pod first: the proxy looks shunt_conns up first, and by then
	 * this must be there too. */
	if (record_src) {
		struct shunt_conn_src src = {.netns = bpf_get_netns_cookie(skops)};

		bpf_map_update_elem(&shunt_conn_src, &client, &src, BPF_ANY);
	}
	bpf_map_update_elem(&shunt_conns, &client, orig, BPF_ANY);
	stat_inc(SHUNT_STAT_ESTABLISHED);
}

SEC("sockops")
int shunt_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		on_active_established(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE)
			orig_forget(skops);
		break;
	default:
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
