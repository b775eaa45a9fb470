/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The original destination of a captured connection, kept under the
 * client socket's cookie: recorded at connect(), answered by getpeername(),
 * re-keyed by sockops at establishment, forgotten at close. */
#ifndef SHUNT_BPF_ORIG_H
#define SHUNT_BPF_ORIG_H

#include "maps.h"

/* Remember where the application meant to connect, under the socket's
 * cookie: getpeername() answers with it, sockops re-keys it for the proxy. */
static __always_inline int orig_record(struct bpf_sock_addr *ctx, const struct shunt_addr *dst,
				       __u32 flags)
{
	struct shunt_orig orig = {};

	orig.dst = *dst;
	orig.flags = flags;
	orig.cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&shunt_orig, &orig.cookie, &orig, BPF_ANY)) {
		stat_inc(SHUNT_STAT_ORIG_FULL);
		return -1;
	}
	return 0;
}

/* The record of the socket behind ctx (a sock_addr or sock_ops context),
 * or NULL when it was not captured. */
static __always_inline struct shunt_orig *orig_of(void *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	return bpf_map_lookup_elem(&shunt_orig, &cookie);
}

/* Forget the record of a closing socket. */
static __always_inline void orig_forget(void *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	bpf_map_delete_elem(&shunt_orig, &cookie);
}

#endif /* SHUNT_BPF_ORIG_H */
