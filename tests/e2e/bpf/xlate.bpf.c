// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A stand-in for a socket-level load balancer (Cilium's socket LB,
 * kube-proxy replacements): at connect() it turns a virtual service
 * address into a backend's, as such a balancer turns a ClusterIP into an
 * endpoint. For tests/e2e/test_socketlb.py only; the addresses are the e2e
 * topology's (tests/e2e/node.py): the virtual address 10.211.0.99:8080
 * ([fd00:211::99]:8080) leads to the baseline pod, 10.211.0.20:8080
 * ([fd00:211::20]:8080).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define VIP_PORT     8080
#define BACKEND_PORT 8080

SEC("cgroup/connect4")
int lb_connect4(struct bpf_sock_addr *ctx)
{
	/* 10.211.0.99 -> 10.211.0.20, both in network byte order */
	if (ctx->user_ip4 == bpf_htonl(0x0ad30063) && ctx->user_port == bpf_htons(VIP_PORT)) {
		ctx->user_ip4 = bpf_htonl(0x0ad30014);
		ctx->user_port = bpf_htons(BACKEND_PORT);
	}
	return 1;
}

SEC("cgroup/connect6")
int lb_connect6(struct bpf_sock_addr *ctx)
{
	/* fd00:211::99 -> fd00:211::20: only the last word differs */
	if (ctx->user_ip6[0] == bpf_htonl(0xfd000211) && ctx->user_ip6[1] == 0 &&
	    ctx->user_ip6[2] == 0 && ctx->user_ip6[3] == bpf_htonl(0x99) &&
	    ctx->user_port == bpf_htons(VIP_PORT)) {
		ctx->user_ip6[3] = bpf_htonl(0x20);
		ctx->user_port = bpf_htons(BACKEND_PORT);
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
