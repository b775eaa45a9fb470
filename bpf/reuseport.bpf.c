// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * sk_reuseport: the proxy runs one event loop per CPU, each with its own
 * listening socket on the same address (SO_REUSEPORT). A connection goes
 * to the worker of the CPU its SYN is processed on, which for a captured
 * connection is the CPU the application called connect() on: client,
 * proxy and the wakeup between them stay on one CPU.
 *
 * Not pinned: these maps hold this agent's sockets and die with it. A
 * socket that is not selected (no entry, a CPU the agent never saw)
 * falls back to the kernel's hash of the 4-tuple: never a dropped SYN.
 * Attached as SELECT_OR_MIGRATE where the kernel has it (5.14): a
 * listener that closes, one of a predecessor with more workers, hands the
 * connections queued on it to a live one instead of resetting them.
 */
#include "lib/common.h"

/* Worker index -> its listening socket, one map per family (a reuseport
 * group holds one family). Sockmaps, not REUSEPORT_SOCKARRAYs: a socket
 * can be in several sockmaps (worker 0's is in shunt_listeners too, and a
 * predecessor's map may still hold a socket handed over to us), but in
 * only one sockarray (5.8 and later select from sockmaps). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, SHUNT_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} shunt_workers4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, SHUNT_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} shunt_workers6 SEC(".maps");

/* CPU -> the worker that serves it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SHUNT_MAX_CPUS);
	__type(key, __u32);
	__type(value, __u32);
} shunt_cpu_worker SEC(".maps");

SEC("sk_reuseport/migrate")
int shunt_reuseport(struct sk_reuseport_md *md)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 *w = bpf_map_lookup_elem(&shunt_cpu_worker, &cpu);

	if (!w)
		return SK_PASS;
	/* The map of the other family fails (-EXDEV: another group) and
	 * changes nothing. */
	if (md->eth_protocol == bpf_htons(0x86DD /* ETH_P_IPV6 */)) {
		if (bpf_sk_select_reuseport(md, &shunt_workers6, w, 0))
			bpf_sk_select_reuseport(md, &shunt_workers4, w, 0);
	} else if (bpf_sk_select_reuseport(md, &shunt_workers4, w, 0)) {
		bpf_sk_select_reuseport(md, &shunt_workers6, w, 0);
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
