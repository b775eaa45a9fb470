/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Every shunt map, defined once. Each BPF object includes this file and
 * libbpf shares the maps between objects through their pins
 * (<bpffs>/<name>), so the first object loaded creates them and the others,
 * and the next agent after a restart, reuse them.
 */
#ifndef SHUNT_BPF_MAPS_H
#define SHUNT_BPF_MAPS_H

#include "common.h"

/* Services with at least one live route: their connections are captured. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHUNT_MAX_SERVICES);
	__type(key, struct shunt_addr);
	__type(value, struct shunt_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_services SEC(".maps");

/* (service, routing key) -> sandbox. The kernel never reads it: it is the
 * durable copy the agent recovers its routes from after a restart. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHUNT_MAX_ROUTES);
	__type(key, struct shunt_route_key);
	__type(value, struct shunt_route);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_routes SEC(".maps");

/* Client socket cookie -> original destination, for getpeername() and for
 * re-keying at establishment. Removed when the socket closes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHUNT_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct shunt_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_orig SEC(".maps");

/* Client address:port (as the proxy's accept() sees it) -> original
 * destination. The proxy deletes the entry once it has read it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHUNT_MAX_CONNS);
	__type(key, struct shunt_addr);
	__type(value, struct shunt_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_conns SEC(".maps");

/* Client address:port -> the network namespace it connected from (its
 * pod), filed next to shunt_conns by sockops; the proxy takes it at
 * accept() to count connections per pod. Written only while the agent
 * asks for it (sockops' record_src). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHUNT_MAX_CONN_SRC);
	__type(key, struct shunt_addr);
	__type(value, struct shunt_conn_src);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_conn_src SEC(".maps");

/* Pods (netns cookies) at --max-conns-per-pod: their new connections are
 * not captured. Written by the proxy; read by connect4/6 only while
 * shunt_config has SHUNT_CFG_POD_LIMIT. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHUNT_MAX_PODS);
	__type(key, __u64);
	__type(value, struct shunt_pod_limit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_pod_limit SEC(".maps");

/* (source netns or cgroup, destination) -> where to connect instead. Read
 * by connect4/6 only for destinations whose shunt_services entry counts
 * overrides. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHUNT_MAX_OVERRIDES);
	__type(key, struct shunt_override_key);
	__type(value, struct shunt_override);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_overrides SEC(".maps");

/* The proxy's listening sockets. A socket leaves a sockmap when it closes,
 * so an empty slot means "no live proxy": connect() goes straight through. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, SHUNT_LISTENER_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_listeners SEC(".maps");

/* Pods served in-pod: netns cookie -> their listeners (struct
 * shunt_inpod). Read by connect4/6 for steered services only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SHUNT_MAX_INPOD);
	__type(key, __u64);
	__type(value, struct shunt_inpod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_inpod SEC(".maps");

/* The in-pod listeners, two slots per pod (shunt_inpod.slot): like
 * shunt_listeners, a slot empties when its socket closes. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2 * SHUNT_MAX_INPOD);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_pod_socks SEC(".maps");

/* A connection to an in-pod listener (netns, client address:port) ->
 * original destination; the proxy takes it at accept(). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHUNT_MAX_CONN_SRC);
	__type(key, struct shunt_pod_conn_key);
	__type(value, struct shunt_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_pod_conns SEC(".maps");

/* The proxy's transparent listeners for TC capture (enum shunt_tc_slot):
 * the TC program hands a steered pod's SYN to one. Empty: fail open. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, SHUNT_TC_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_tc_socks SEC(".maps");

/* Connections the TC program handed to the proxy (their SYN went to a TC
 * listener) -> the ifindex of the pod interface they came in on. Later
 * packets whose socket the 4-tuple does not find (the node DNATs the
 * service: the proxy's socket has the backend's address) are still
 * delivered here; the proxy reads the interface at accept() (which pod)
 * and deletes the entry at close. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SHUNT_MAX_CONNS);
	__type(key, struct shunt_tc_conn_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_tc_conns SEC(".maps");

/* Runtime settings written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shunt_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_config SEC(".maps");

/* Counters, indexed by enum shunt_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHUNT_STAT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_stats SEC(".maps");

/* The layout (sizes and version) of every map above, written by the agent
 * after loading; the next agent compares it with its own before reusing
 * the pins. The programs never read it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SHUNT_ABI_SLOTS);
	__type(key, __u32);
	__type(value, struct shunt_abi_map);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shunt_abi SEC(".maps");

static __always_inline void stat_inc(enum shunt_stat idx)
{
	__u32 key = idx;
	__u64 *v = bpf_map_lookup_elem(&shunt_stats, &key);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline struct shunt_config *config_get(void)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&shunt_config, &key);
}

#endif /* SHUNT_BPF_MAPS_H */
