// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* cgroup/getpeername4|6: a captured socket still sees the service as its
 * peer, not the proxy. */
#include "lib/capture.h"

static __always_inline const struct shunt_orig *orig_of(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	return bpf_map_lookup_elem(&shunt_orig, &cookie);
}

SEC("cgroup/getpeername4")
int shunt_getpeername4(struct bpf_sock_addr *ctx)
{
	const struct shunt_orig *orig = orig_of(ctx);

	if (orig && orig->dst.family == SHUNT_FAMILY_V4) {
		ctx->user_ip4 = addr_word(&orig->dst, 0);
		ctx->user_port = bpf_htons(orig->dst.port);
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
	if (orig->dst.family == SHUNT_FAMILY_V6) {
		ctx->user_ip6[0] = addr_word(&orig->dst, 0);
		ctx->user_ip6[1] = addr_word(&orig->dst, 1);
		ctx->user_ip6[2] = addr_word(&orig->dst, 2);
		ctx->user_ip6[3] = addr_word(&orig->dst, 3);
	} else {
		/* Captured through a v4-mapped connect6: answer in kind. */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = addr_word(&orig->dst, 0);
	}
	ctx->user_port = bpf_htons(orig->dst.port);
	stat_inc(SHUNT_STAT_PEER_RESTORED);
	return SHUNT_SOCK_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
