/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* struct shunt_addr as the BPF contexts spell addresses: 32-bit words in
 * network order. */
#ifndef SHUNT_BPF_ADDR_H
#define SHUNT_BPF_ADDR_H

#include "common.h"

/* The address of a shunt_addr as 32-bit words, network order, for the
 * 4-byte-wide fields of the BPF contexts. */
static __always_inline __u32 addr_word(const struct shunt_addr *a, int i)
{
	__u32 w;

	__builtin_memcpy(&w, a->addr + 4 * i, sizeof(w));
	return w;
}

static __always_inline void addr_set_words(struct shunt_addr *a, const __u32 *w, int n)
{
	__builtin_memcpy(a->addr, w, 4 * n);
}

/* ::ffff:a.b.c.d, as a dual-stack socket spells an IPv4 destination. */
static __always_inline int ip6_is_v4mapped(const __u32 ip6[4])
{
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff);
}

/* A sock_addr context's destination: user_ip6 allows only 4-byte loads,
 * and user_port holds the port in network order in its low 16 bits. */
static __always_inline void sock_addr_ip6(const struct bpf_sock_addr *ctx, __u32 ip6[4])
{
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
}

static __always_inline __u16 sock_addr_port(const struct bpf_sock_addr *ctx)
{
	return bpf_ntohs((__u16)ctx->user_port);
}

/* Write a into a sock_addr context: IPv4 in user_ip4, or in the last word
 * of a v4-mapped user_ip6 (mapped), or IPv6 in user_ip6. */
static __always_inline void sock_addr_set4(struct bpf_sock_addr *ctx, const struct shunt_addr *a)
{
	ctx->user_ip4 = addr_word(a, 0);
	ctx->user_port = bpf_htons(a->port);
}

static __always_inline void sock_addr_set6(struct bpf_sock_addr *ctx, const struct shunt_addr *a,
					   int mapped)
{
	if (mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = addr_word(a, 0);
	} else {
		ctx->user_ip6[0] = addr_word(a, 0);
		ctx->user_ip6[1] = addr_word(a, 1);
		ctx->user_ip6[2] = addr_word(a, 2);
		ctx->user_ip6[3] = addr_word(a, 3);
	}
	ctx->user_port = bpf_htons(a->port);
}

#endif /* SHUNT_BPF_ADDR_H */
