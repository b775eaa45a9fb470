/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Connect-time capture: decide whether a connect() goes to the proxy. */
#ifndef SHUNT_BPF_CAPTURE_H
#define SHUNT_BPF_CAPTURE_H

#include "maps.h"

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

/* Is there a live proxy listener in this slot? The sockmap drops a socket
 * as soon as it closes, so this is false from the moment the agent dies. */
static __always_inline int listener_alive(__u32 slot)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(&shunt_listeners, &slot);

	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/*
 * Should this connect() to dst be captured? Returns the proxy address to
 * connect to instead, having recorded the original destination under the
 * socket's cookie, or NULL to leave the connect() alone.
 */
static __always_inline const struct shunt_addr *capture(struct bpf_sock_addr *ctx,
							const struct shunt_addr *dst, __u32 slot)
{
	struct shunt_config *cfg;
	const struct shunt_addr *proxy;
	struct shunt_orig orig = {};
	struct bpf_sock *sk;

	stat_inc(SHUNT_STAT_CONNECT);
	/* The common case, and the only cost for services nobody steers. */
	if (!bpf_map_lookup_elem(&shunt_services, dst))
		return NULL;

	cfg = config_get();
	if (!cfg)
		return NULL;
	sk = ctx->sk;
	if (sk && sk->mark == cfg->mark) {
		stat_inc(SHUNT_STAT_OWN_SOCKET);
		return NULL;
	}
	proxy = slot == SHUNT_LISTENER_V4 ? &cfg->proxy4 : &cfg->proxy6;
	if (!proxy->family || !listener_alive(slot)) {
		stat_inc(SHUNT_STAT_FAIL_OPEN);
		return NULL;
	}

	orig.dst = *dst;
	orig.cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&shunt_orig, &orig.cookie, &orig, BPF_ANY)) {
		/* Without the record the proxy could not find the original
		 * destination: better uncaptured than broken. */
		stat_inc(SHUNT_STAT_ORIG_FULL);
		return NULL;
	}
	stat_inc(SHUNT_STAT_CAPTURED);
	return proxy;
}

#endif /* SHUNT_BPF_CAPTURE_H */
