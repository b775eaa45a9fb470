// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* cgroup/connect4|6: send connections to steered services to the proxy, and
 * those an override names to its target. */
#include "lib/capture.h"

SEC("cgroup/connect4")
int shunt_connect4(struct bpf_sock_addr *ctx)
{
	struct shunt_addr dst = {};
	const struct shunt_addr *to;
	__u32 ip4;

	/* Plain TCP only: MPTCP and SCTP sockets are left alone. */
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return SHUNT_SOCK_ALLOW;
	ip4 = ctx->user_ip4;
	dst.family = SHUNT_FAMILY_V4;
	addr_set_words(&dst, &ip4, 1);
	/* user_port holds the port in network order in its low 16 bits. */
	dst.port = bpf_ntohs((__u16)ctx->user_port);

	to = capture(ctx, &dst, SHUNT_LISTENER_V4);
	if (to) {
		ctx->user_ip4 = addr_word(to, 0);
		ctx->user_port = bpf_htons(to->port);
	}
	return SHUNT_SOCK_ALLOW;
}

SEC("cgroup/connect6")
int shunt_connect6(struct bpf_sock_addr *ctx)
{
	struct shunt_addr dst = {};
	const struct shunt_addr *to;
	__u32 ip6[4];

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return SHUNT_SOCK_ALLOW;
	/* user_ip6 allows only 4-byte loads. */
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	dst.port = bpf_ntohs((__u16)ctx->user_port);

	if (ip6_is_v4mapped(ip6)) {
		/* A dual-stack socket reaching an IPv4 service: the kernel
		 * will not run connect4 for it, so capture it here. */
		dst.family = SHUNT_FAMILY_V4;
		addr_set_words(&dst, &ip6[3], 1);
		to = capture(ctx, &dst, SHUNT_LISTENER_V4);
		if (to) {
			ctx->user_ip6[3] = addr_word(to, 0);
			ctx->user_port = bpf_htons(to->port);
		}
		return SHUNT_SOCK_ALLOW;
	}

	dst.family = SHUNT_FAMILY_V6;
	addr_set_words(&dst, ip6, 4);
	to = capture(ctx, &dst, SHUNT_LISTENER_V6);
	if (to) {
		ctx->user_ip6[0] = addr_word(to, 0);
		ctx->user_ip6[1] = addr_word(to, 1);
		ctx->user_ip6[2] = addr_word(to, 2);
		ctx->user_ip6[3] = addr_word(to, 3);
		ctx->user_port = bpf_htons(to->port);
	}
	return SHUNT_SOCK_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
