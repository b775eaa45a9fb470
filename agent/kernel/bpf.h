/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Loading, pinning and attaching shunt's kernel programs. */
#ifndef SHUNT_AGENT_BPF_H
#define SHUNT_AGENT_BPF_H

#include <stdbool.h>
#include <stdint.h>
#include <shunt/shunt.h>

struct shunt_sock_addr;
struct shunt_sockops;
struct shunt_tc;
struct shunt_infer;
struct bpf_link;

#define SHUNT_NR_PROGS 5
#define SHUNT_NR_MAPS  15

struct shunt_bpf {
	struct shunt_sock_addr *sock_addr; /* connect4|6, getpeername4|6 */
	struct shunt_sockops *sockops;
	struct shunt_tc *tc;	   /* TC capture's program; NULL: not on this kernel */
	struct shunt_infer *infer; /* inferred propagation's; NULL: not on this kernel */
	struct bpf_link *links[SHUNT_NR_PROGS];
	int cgroup_fd;
	uint64_t cgroup_id;
	uint32_t max_routes;   /* shunt_routes' size: the route limit */
	uint32_t max_services; /* shunt_services' size: routes + overrides */
	char pin_dir[256];
	char cgroup[256];
	/* fds of the shared (pinned) maps */
	int services_fd, routes_fd, overrides_fd, orig_fd, conns_fd, listeners_fd, config_fd,
		stats_fd, conn_src_fd, pod_limit_fd, inpod_fd, pod_socks_fd, pod_conns_fd,
		tc_socks_fd, tc_conns_fd;
	/* sockops files each connection's netns in shunt_conn_src. */
	bool record_src;
	/* sockops can tell a connection's netns (Linux 5.15): pods can be
	 * served in-pod. */
	bool netns_known;
	/* skb->mark (and routing table) of TC capture; set before open. */
	uint32_t tc_mark;
	/* Its policy route is in place (worker 0 set it up for a TC pod):
	 * removed at a clean stop. */
	bool tc_routed;
};

/* Inferred propagation's sk_lookup program and its own maps
 * (bpf/infer.bpf.c). The heartbeat and the counters are its memory,
 * mapped: written and read without a system call. */
struct shunt_infer_kern {
	int prog_fd, ports_fd, socks_fd;
	volatile __u64 *heartbeat_ns;
	__u64 *stats; /* SHUNT_INFER_STAT_MAX */
};
/* 0, or -EOPNOTSUPP when the program did not load. */
int shunt_bpf_infer(struct shunt_bpf *b, struct shunt_infer_kern *out);

/* The TC program's descriptor, or -1 when it did not load. */
int shunt_bpf_tc_prog_fd(struct shunt_bpf *b);

/* Make sure a bpffs is mounted for pin_dir (mounting one at /sys/fs/bpf
 * when pin_dir lives there and nothing is mounted), create pin_dir, load
 * every object reusing maps already pinned there, and attach to cgroup.
 * want_src: record each captured connection's network namespace (the
 * per-pod limits need it), if the kernel can (b->record_src says).
 * Pinned maps of another layout (another agent version pinned them) are
 * migrated or, transient ones, recreated; a durable map (routes,
 * overrides) that cannot be converted fails the start with -EEXIST and a
 * message saying what to run, unless reset_maps (--reset-maps) allows
 * dropping it (kernel/layout.h).
 * Returns 0 or -errno, having logged what failed. */
int shunt_bpf_open(struct shunt_bpf *b, const char *pin_dir, const char *cgroup,
		   uint32_t max_routes, bool want_src, bool reset_maps);

/* Unload. With detach, unpin and detach the programs too (a clean stop);
 * without, they stay attached through their pinned links (a successor
 * took over, or a failed start must not undo a running agent's links).
 * The pinned maps always stay for the next agent. */
void shunt_bpf_close(struct shunt_bpf *b, bool detach);

int shunt_bpf_set_config(struct shunt_bpf *b, const struct shunt_config *cfg);
/* Set the bits of shunt_config.flags in mask to flags', leaving the rest
 * of the entry as it is (a read, and a write only when they differ). */
int shunt_bpf_set_config_flags(struct shunt_bpf *b, uint32_t mask, uint32_t flags);
int shunt_bpf_set_listener(struct shunt_bpf *b, enum shunt_listener_slot slot, int fd);
int shunt_bpf_stats(struct shunt_bpf *b, uint64_t out[SHUNT_STAT_MAX]);

struct shunt_prog_info {
	const char *name;
	const char *attach;
	uint32_t id;
};
/* The attached programs; returns how many were filled. */
int shunt_bpf_progs(struct shunt_bpf *b, struct shunt_prog_info out[SHUNT_NR_PROGS]);

struct shunt_map_info {
	const char *name;
	int fd;
	uint32_t max_entries;
	uint32_t type; /* enum bpf_map_type */
	uint32_t key_size, value_size;
};
int shunt_bpf_maps(struct shunt_bpf *b, struct shunt_map_info out[SHUNT_NR_MAPS]);

/* Counting a hash map in steps: a full LRU map of 64k connections takes
 * tens of milliseconds to walk, too long to stop the proxy for. Each step
 * reads at most budget entries (BPF_MAP_LOOKUP_BATCH) and the next one
 * continues where it ended. Zero-initialise; no resources are held. */
struct shunt_map_walk {
	uint64_t cursor; /* the kernel's batch position, opaque */
	long seen;	 /* entries so far in this pass */
	int started;
};

/* One step over m. Returns 1 when the pass completed (*count set, the next
 * call starts a new pass), 0 when entries remain, -errno on failure (the
 * walk is reset). Arrays count as full and a sockmap by lookups, in one
 * step. */
int shunt_bpf_map_walk(const struct shunt_map_info *m, struct shunt_map_walk *w, uint32_t budget,
		       long *count);

/* Our cgroup/connect4 program: a successor shows it to the running agent
 * on a takeover (below). */
int shunt_bpf_connect4_fd(struct shunt_bpf *b);

/* Is prog_fd the program now attached through our pinned connect4 link,
 * put there by an agent that swapped its programs in (not ours)? Holding
 * it proves the right to take over where capabilities cannot be read:
 * loading such a program needs CAP_NET_ADMIN, swapping it in needs the
 * pins, and only the loader (or a process with more privilege) holds its
 * descriptor. 1, 0 or -errno; *id is the program's id when known. */
int shunt_bpf_is_successor_prog(struct shunt_bpf *b, int prog_fd, uint32_t *id);

/* Is slot's listener in the shunt_listeners sockmap? 1, 0, or -errno. */
int shunt_bpf_listener_present(struct shunt_bpf *b, enum shunt_listener_slot slot);

extern const char *const shunt_stat_names[SHUNT_STAT_MAX];

/* libbpf's warnings become debug lines while on (this thread): for calls
 * whose failure is expected and handled. */
void shunt_bpf_quiet(bool on);

/* libbpf's own debug output (loader and verifier details): -vv. */
extern int libbpf_debug;

#endif /* SHUNT_AGENT_BPF_H */
