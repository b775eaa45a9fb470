/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel/user ABI of shunt: every struct that lives in a BPF map, the
 * map sizes, and the enums both sides agree on. Fixed-width types only,
 * explicit padding, no bitfields, sizes checked at compile time.
 */
#ifndef SHUNT_SHUNT_H
#define SHUNT_SHUNT_H

#ifdef __BPF__
/* vmlinux.h already provides the __u32/__be16 family. */
#else
#include <linux/types.h>
#endif

/* Address families as stored in maps; deliberately not AF_* so that a dump
 * reads "4" or "6" and the value means the same on every libc. */
#define SHUNT_FAMILY_V4 4
#define SHUNT_FAMILY_V6 6

/* Longest routing key, in bytes, including the terminating NUL. */
#define SHUNT_ROUTE_KEY_LEN 64

/* Socket mark carried by every socket the agent opens itself, so the
 * connect hooks never capture the proxy's own upstream connections. */
#ifndef SHUNT_DEFAULT_MARK
#define SHUNT_DEFAULT_MARK 0x5348554eU /* "SHUN" */
#endif

/* Map sizes (max_entries). */
/* shunt_services is sized at load time (routes + overrides, see agent/kernel/bpf.c);
 * this is only the default in its definition, and the number of services
 * the request metrics keep apart. */
#ifndef SHUNT_MAX_SERVICES
#define SHUNT_MAX_SERVICES 4096U
#endif
#ifndef SHUNT_MAX_ROUTES
#define SHUNT_MAX_ROUTES 16384U
#endif
#ifndef SHUNT_MAX_CONNS
#define SHUNT_MAX_CONNS 65536U
#endif
#ifndef SHUNT_MAX_OVERRIDES
#define SHUNT_MAX_OVERRIDES 1024U
#endif
/* shunt_conn_src holds a connection only from its establishment to the
 * proxy's accept(): at most the two listeners' backlogs (4096 each at
 * most), with room for records an older agent accepted without taking. */
#ifndef SHUNT_MAX_CONN_SRC
#define SHUNT_MAX_CONN_SRC 16384U
#endif
/* Pods (network namespaces) that can be at their connection cap at once:
 * far more than a node runs. A pod the map has no room for stays captured
 * (the global limit still applies). */
#ifndef SHUNT_MAX_PODS
#define SHUNT_MAX_PODS 4096U
#endif
/* Pods served in-pod (the proxy's sockets inside the pod's network
 * namespace): shunt_inpod entries, and half the slots of
 * shunt_pod_socks (one IPv4 and one IPv6 listener each). */
#ifndef SHUNT_MAX_INPOD
#define SHUNT_MAX_INPOD 1024U
#endif
/* The proxy's event loops (--workers), and the CPUs the reuseport program
 * maps to them (bpf/reuseport.bpf.c). */
#define SHUNT_MAX_WORKERS 64U
#define SHUNT_MAX_CPUS	  1024U
/* Slots of shunt_stats: more than enum shunt_stat uses, so that a newer
 * agent with more counters still fits the map an older one pinned. */
#define SHUNT_STAT_SLOTS 32U
/* Cgroup levels an override's source cgroup is looked for at. */
#define SHUNT_CGROUP_LEVELS 16
/* Longest source of an override as given ("netns:/run/netns/x"), NUL
 * included. */
#define SHUNT_OVERRIDE_FROM_LEN 128

/* An IPv4 or IPv6 endpoint, laid out so that `bpftool map dump` reads
 * naturally: the address as bytes in network order (IPv4 in addr[0..3], the
 * rest zero), the port as a number in host byte order. */
struct shunt_addr {
	__u8 addr[16] __attribute__((aligned(4))); /* network byte order */
	__u16 port;				   /* host byte order */
	__u8 family;				   /* SHUNT_FAMILY_V4 or _V6 */
	__u8 pad;
};

/* shunt_services value: a destination (ClusterIP:port or pod IP:port) that
 * has at least one live route, so its connections are captured, or is the
 * destination of an override, or both. */
struct shunt_service {
	__u32 routes;	 /* number of routes naming this service */
	__u32 overrides; /* number of overrides with this destination */
};

/* shunt_routes key: (service, routing key). key is NUL-padded. */
struct shunt_route_key {
	struct shunt_addr service;
	char key[SHUNT_ROUTE_KEY_LEN];
};

enum shunt_route_flags {
	/* Sandbox unreachable: send to the baseline instead of a 502. */
	SHUNT_ROUTE_FALLBACK_BASELINE = 1U << 0,
	/* Route came from the declarative file (replaced on reload). */
	SHUNT_ROUTE_FROM_FILE = 1U << 1,
	/* Route came from a Kubernetes SandboxRoute (owned by the watcher). */
	SHUNT_ROUTE_FROM_K8S = 1U << 2,
};

/* shunt_routes value: where requests with this key for this service go. */
struct shunt_route {
	struct shunt_addr to; /* the sandbox */
	__u32 flags;	      /* enum shunt_route_flags */
	__u64 expires_unix;   /* seconds since the epoch, 0 = never */
	__u64 created_unix;   /* seconds since the epoch */
};

enum shunt_orig_flags {
	/* Sent elsewhere by an override, not to the proxy: nothing to
	 * re-key at establishment. */
	SHUNT_ORIG_OVERRIDE = 1U << 0,
	/* Sent to the pod's own in-pod listener: filed at establishment in
	 * shunt_pod_conns (by netns and address), not shunt_conns. */
	SHUNT_ORIG_INPOD = 1U << 1,
};

/* shunt_orig value (keyed by the client socket's cookie) and shunt_conns
 * value (keyed by the client's address:port as the proxy's accept() sees
 * it): the destination the application asked for. */
struct shunt_orig {
	struct shunt_addr dst;
	__u32 flags;  /* enum shunt_orig_flags */
	__u64 cookie; /* client socket cookie, for correlation in dumps */
};

/* shunt_conn_src value (keyed like shunt_conns, by the client's
 * address:port): the network namespace the client connected from, i.e. its
 * pod. A map of its own rather than a field of struct shunt_orig, whose
 * layout agents of the previous version read during a takeover. */
struct shunt_conn_src {
	__u64 netns; /* netns cookie (bpf_get_netns_cookie, SO_NETNS_COOKIE) */
};

/* shunt_inpod value (keyed by a pod's netns cookie, __u64): the pod is
 * served in-pod. Its connections to steered services go to its own
 * listeners, inside its network namespace, in shunt_pod_socks at
 * 2 * slot (IPv4) and 2 * slot + 1 (IPv6); an empty slot means no live
 * listener there: fail open. Written only by the agent serving the pods,
 * which empties the map when it starts. */
struct shunt_inpod {
	struct shunt_addr listen4; /* family 0: no IPv4 listener */
	struct shunt_addr listen6; /* family 0: no IPv6 listener */
	__u32 slot;
	__u32 flags; /* none yet: 0 */
};

/* shunt_pod_conns key: a connection to an in-pod listener, as that
 * listener's accept() sees it (addresses repeat from pod to pod: every pod
 * has its own 127.0.0.1). The value is the connection's struct shunt_orig. */
struct shunt_pod_conn_key {
	__u64 netns;
	struct shunt_addr client;
	__u32 zero; /* the tail padding, spelled out: keys are bytes */
};

/* shunt_pod_limit value (keyed by a netns cookie, __u64): this pod holds
 * --max-conns-per-pod connections in the proxy, so connect4/6 leave its new
 * connections alone until it is back under the cap. */
struct shunt_pod_limit {
	__u32 conns;	  /* its connections in the proxy when the cap was hit */
	__u32 limit;	  /* --max-conns-per-pod */
	__u64 since_unix; /* seconds since the epoch */
};

/* Who an override applies to: the connecting socket's network namespace,
 * or a cgroup the connecting task is in (at any depth below it). */
enum shunt_src_kind {
	SHUNT_SRC_NETNS = 1,  /* src_id: the netns cookie */
	SHUNT_SRC_CGROUP = 2, /* src_id: the cgroup v2 id */
};

/* shunt_overrides key: connections from src to dst. */
struct shunt_override_key {
	__u64 src_id;
	__u32 src_kind; /* enum shunt_src_kind */
	struct shunt_addr dst;
	__u32 pad;
};

/* shunt_overrides value: where those connections go instead, at connect()
 * time, without the proxy. */
struct shunt_override {
	struct shunt_addr to; /* same family as the key's dst */
	__u32 flags;	      /* enum shunt_route_flags (FROM_FILE) */
	__u64 expires_unix;   /* seconds since the epoch, 0 = never */
	__u64 created_unix;
	char from[SHUNT_OVERRIDE_FROM_LEN]; /* the source as given, for people */
};

/* shunt_config.flags: the proxy's limits, as the connect hooks act on them.
 * Both mean "fail open": the connection goes to its original destination,
 * uncaptured, as when no proxy listener is alive. */
enum shunt_config_flags {
	/* The proxy holds --max-conns connections: capture nothing new. */
	SHUNT_CFG_CONN_LIMIT = 1U << 0,
	/* shunt_pod_limit has entries: look the connecting netns up. */
	SHUNT_CFG_POD_LIMIT = 1U << 1,
};

/* shunt_config, a one-entry array: runtime settings of the kernel side. */
struct shunt_config {
	struct shunt_addr proxy4; /* family 0 when there is no IPv4 listener */
	struct shunt_addr proxy6; /* family 0 when there is no IPv6 listener */
	__u32 mark;		  /* SO_MARK of the agent's own sockets */
	/* enum shunt_config_flags; was padding (always 0) before, so an
	 * older agent's programs ignore it and an older agent clears it. */
	__u32 flags;
};

/* Slots of shunt_listeners (a SOCKMAP holding the proxy's listening
 * sockets). A slot empties by itself when the agent dies: fail open. */
enum shunt_listener_slot {
	SHUNT_LISTENER_V4 = 0,
	SHUNT_LISTENER_V6 = 1,
	SHUNT_LISTENER_MAX,
};

/* Slots of shunt_tc_socks (a SOCKMAP holding the proxy's transparent
 * listeners for TC capture). Empty: TC-captured pods fail open. */
enum shunt_tc_slot {
	SHUNT_TC_V4 = 0,
	SHUNT_TC_V6 = 1,
	SHUNT_TC_MAX,
};

/* shunt_tc_conns key: a connection the TC program handed to the proxy, as
 * the pod's packets spell it (before any DNAT on the node): addresses in
 * network order, ports in network order, family SHUNT_FAMILY_V4|V6. */
struct shunt_tc_conn_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 family;
};

/* shunt_infer_ports key (inferred propagation): an address of a pod with
 * inference on and one of its ports whose inbound connections the
 * sk_lookup program hands to the agent. Address in network order, port in
 * host order (as struct bpf_sk_lookup has them), family
 * SHUNT_FAMILY_V4|V6. The value is the shunt_infer_socks slot. */
struct shunt_infer_port_key {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 pad;
};

/* The sk_lookup program's counters (its .bss, read by the agent). */
enum shunt_infer_stat {
	SHUNT_INFER_TAKEN,     /* a connection handed to the agent */
	SHUNT_INFER_STALE,     /* the agent's heartbeat is stale: passed (hung agent) */
	SHUNT_INFER_NO_SOCKET, /* no live listener in its slot: passed */
	SHUNT_INFER_STAT_MAX,
};

/* The agent refreshes the heartbeat every SHUNT_INFER_BEAT_MS; older than
 * SHUNT_INFER_STALE_MS, the program lets connections pass. */
#define SHUNT_INFER_BEAT_MS  100U
#define SHUNT_INFER_STALE_MS 1000U

/* skb->mark the TC program puts on the packets it hands to the proxy, and
 * the routing table (and rule priority) that delivers them locally. */
#ifndef SHUNT_DEFAULT_TC_MARK
#define SHUNT_DEFAULT_TC_MARK 0x5348U /* "SH" */
#endif

/* Indexes of shunt_stats, a per-CPU array of __u64. */
enum shunt_stat {
	SHUNT_STAT_CONNECT = 0,	  /* connect() seen by the hooks */
	SHUNT_STAT_CAPTURED,	  /* ... redirected to the proxy */
	SHUNT_STAT_FAIL_OPEN,	  /* steered, but no live listener */
	SHUNT_STAT_OWN_SOCKET,	  /* the agent's own socket, left alone */
	SHUNT_STAT_ORIG_FULL,	  /* could not record the original dst */
	SHUNT_STAT_ESTABLISHED,	  /* captured connection established */
	SHUNT_STAT_PEER_RESTORED, /* getpeername() answered transparently */
	SHUNT_STAT_OVERRIDDEN,	  /* connect() sent elsewhere by an override */
	SHUNT_STAT_CONN_LIMIT,	  /* steered, left alone: proxy at --max-conns */
	SHUNT_STAT_POD_LIMIT,	  /* steered, left alone: pod at its cap */
	SHUNT_STAT_INPOD,	  /* captured to the pod's own listener */
	SHUNT_STAT_TC,		  /* TC: a pod's SYN given to the TC listener */
	SHUNT_STAT_TC_FAIL_OPEN,  /* TC: steered SYN, no live TC listener: passed */
	SHUNT_STAT_MAX,		  /* <= SHUNT_STAT_SLOTS */
};

/*
 * Layout versions of the pinned maps, recorded in shunt_abi. Bump a map's
 * version when its key or value changes meaning without changing size; a
 * change of size is seen on the pinned map itself. An agent finding another
 * version migrates what it can convert (agent/kernel/layout.c) and refuses
 * to start otherwise, saying what to run. Maps older than shunt_abi count
 * as version 0: their sizes decide.
 */
enum shunt_layout_version {
	SHUNT_LAYOUT_SERVICES = 1,
	SHUNT_LAYOUT_ROUTES = 1,
	SHUNT_LAYOUT_ORIG = 1,
	SHUNT_LAYOUT_CONNS = 1,
	SHUNT_LAYOUT_CONN_SRC = 1,
	SHUNT_LAYOUT_POD_LIMIT = 1,
	SHUNT_LAYOUT_OVERRIDES = 1,
	SHUNT_LAYOUT_LISTENERS = 1,
	SHUNT_LAYOUT_CONFIG = 1,
	SHUNT_LAYOUT_STATS = 1,
	SHUNT_LAYOUT_INPOD = 1,
	SHUNT_LAYOUT_POD_SOCKS = 1,
	SHUNT_LAYOUT_POD_CONNS = 1,
	SHUNT_LAYOUT_TC_SOCKS = 1,
	SHUNT_LAYOUT_TC_CONNS = 1,
};

/* Slots of shunt_abi: one per pinned map, with room for more. */
#define SHUNT_ABI_SLOTS	   32U
#define SHUNT_MAP_NAME_LEN 16 /* BPF_OBJ_NAME_LEN */

/* shunt_abi value (an array indexed from 0, name "" = unused): the layout
 * of one pinned map, as the agent that last loaded the maps wrote it. This
 * struct itself never changes; new fields go into a new map. */
struct shunt_abi_map {
	char name[SHUNT_MAP_NAME_LEN];
	__u32 version; /* enum shunt_layout_version */
	__u32 type;    /* enum bpf_map_type */
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
};

#ifndef __BPF__
_Static_assert(sizeof(struct shunt_addr) == 20, "shunt_addr ABI");
_Static_assert(sizeof(struct shunt_route_key) == 84, "shunt_route_key ABI");
_Static_assert(sizeof(struct shunt_route) == 40, "shunt_route ABI");
_Static_assert(sizeof(struct shunt_orig) == 32, "shunt_orig ABI");
_Static_assert(sizeof(struct shunt_config) == 48, "shunt_config ABI");
_Static_assert(sizeof(struct shunt_override_key) == 40, "shunt_override_key ABI");
_Static_assert(sizeof(struct shunt_override) == 168, "shunt_override ABI");
_Static_assert(sizeof(struct shunt_conn_src) == 8, "shunt_conn_src ABI");
_Static_assert(sizeof(struct shunt_pod_limit) == 16, "shunt_pod_limit ABI");
_Static_assert(sizeof(struct shunt_inpod) == 48, "shunt_inpod ABI");
_Static_assert(sizeof(struct shunt_pod_conn_key) == 32, "shunt_pod_conn_key ABI");
_Static_assert(sizeof(struct shunt_tc_conn_key) == 40, "shunt_tc_conn_key ABI");
_Static_assert(sizeof(struct shunt_infer_port_key) == 20, "shunt_infer_port_key ABI");
_Static_assert(SHUNT_STAT_MAX <= SHUNT_STAT_SLOTS, "shunt_stats slots");
_Static_assert(sizeof(struct shunt_abi_map) == 40, "shunt_abi_map ABI");
#endif

#endif /* SHUNT_SHUNT_H */
