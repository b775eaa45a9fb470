// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The cgroup sock_addr hooks, one object:
 *  - connect4|6: send connections to steered services to the proxy, and
 *    those an override names to its target (lib/capture.h);
 *  - getpeername4|6: a captured socket still sees the service as its peer,
 *    not the proxy (lib/orig.h).
 */
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
	dst.port = sock_addr_port(ctx);

	to = capture(ctx, &dst, SHUNT_LISTENER_V4);
	if (to)
		sock_addr_set4(ctx, to);
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
	sock_addr_ip6(ctx, ip6);
	dst.port = sock_addr_port(ctx);

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
	if (to)
		sock_addr_set6(ctx, to, 0);
	return SHUNT_SOCK_ALLOW;
}

SEC("cgroup/getpeername4")
int shunt_getpeername4(struct bpf_sock_addr *ctx)
{
	const struct shunt_orig *orig = orig_of(ctx);

	if (orig && orig->dst.family == SHUNT_FAMILY_V4) {
		sock_addr_set4(ctx, &orig->dst);
		stat_inc(SHUNT_STAT_PEER_RESTORED);
	}
	return SHUNT_SOCK_ALLOW;
}

SEC("cgroup/getpeername6")
int shunt_getpeername6(struct bpf_sock_addr *ctx)
{
	const struct shunt_orig *orig = orig_of(ctx);

	if (!orig)
		return SHUNT_SOCK_ALLOW;
	/* Captured through a v4-mapped connect6: answer in kind. */
	sock_addr_set6(ctx, &orig->dst, orig->dst.family != SHUNT_FAMILY_V6);
	stat_inc(SHUNT_STAT_PEER_RESTORED);
	return SHUNT_SOCK_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
