// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* cgroup/connect4|6: send connections to steered services to the proxy. */
#include "lib/capture.h"

SEC("cgroup/connect4")
int shunt_connect4(struct bpf_sock_addr *ctx)
{
	struct shunt_addr dst = {};
	const struct shunt_addr *proxy;

	if (ctx->type != SOCK_STREAM)
		return SHUNT_SOCK_ALLOW;
	dst.family = SHUNT_FAMILY_V4;
	dst.ip4 = ctx->user_ip4;
	dst.port = (__be16)ctx->user_port; /* network order in the low 16 bits */

	proxy = capture(ctx, &dst, SHUNT_LISTENER_V4);
	if (proxy) {
		ctx->user_ip4 = proxy->ip4;
		ctx->user_port = proxy->port;
	}
	return SHUNT_SOCK_ALLOW;
}

SEC("cgroup/connect6")
int shunt_connect6(struct bpf_sock_addr *ctx)
{
	struct shunt_addr dst = {};
	const struct shunt_addr *proxy;
	__u32 ip6[4];

	if (ctx->type != SOCK_STREAM)
		return SHUNT_SOCK_ALLOW;
	/* user_ip6 allows only 4-byte loads. */
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	dst.port = (__be16)ctx->user_port;

	if (ip6_is_v4mapped(ip6)) {
		/* A dual-stack socket reaching an IPv4 service: the kernel
		 * will not run connect4 for it, so capture it here. */
		dst.family = SHUNT_FAMILY_V4;
		dst.ip4 = ip6[3];
		proxy = capture(ctx, &dst, SHUNT_LISTENER_V4);
		if (proxy) {
			ctx->user_ip6[3] = proxy->ip4;
			ctx->user_port = proxy->port;
		}
		return SHUNT_SOCK_ALLOW;
	}

	dst.family = SHUNT_FAMILY_V6;
	__builtin_memcpy(dst.ip6, ip6, sizeof(ip6));
	proxy = capture(ctx, &dst, SHUNT_LISTENER_V6);
	if (proxy) {
		ctx->user_ip6[0] = proxy->ip6[0];
		ctx->user_ip6[1] = proxy->ip6[1];
		ctx->user_ip6[2] = proxy->ip6[2];
		ctx->user_ip6[3] = proxy->ip6[3];
		ctx->user_port = proxy->port;
	}
	return SHUNT_SOCK_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
