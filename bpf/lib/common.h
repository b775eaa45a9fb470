/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Includes and constants every shunt BPF object shares. */
#ifndef SHUNT_BPF_COMMON_H
#define SHUNT_BPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <shunt/shunt.h>

/* Not in vmlinux.h: these are macros in the kernel headers. */
#define AF_INET	    2 /* struct bpf_sock_ops family, host order */
#define AF_INET6    10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6

/* cgroup sock_addr verdicts. */
#define SHUNT_SOCK_ALLOW 1

#endif /* SHUNT_BPF_COMMON_H */
