/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The proxy's insides, shared by its files (not for the rest of the
 * agent: proxy.h is the interface).
 *
 *   proxy.c     start, drain, stop, the tick: the proxy as a whole
 *   listener.c  listening sockets, takeover, accept and the capture record
 *   conn.c      a client connection: buffers, reading, the pump, timeouts
 *   h1.c        HTTP/1 framing of one exchange (struct stream) on it
 *   route.c     the routing decision (protocol-free)
 *   upstream.c  upstream connections: connect, reuse, failure, retry
 *   pool.c      the upstream pool, indexed by destination
 *   tunnel.c    non-HTTP connections and upgrades: bytes both ways
 *   limits.c    connection limits per pod and per node, upstream holds
 */
#ifndef SHUNT_PROXY_INT_H
#define SHUNT_PROXY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <llhttp.h>
#include <shunt/shunt.h>

#include "core/buf.h"
#include "core/hmap.h"
#include "core/loop.h"
#include "kernel/tc.h"
#include "core/timer.h"
#include "proxy/http.h"
#include "proxy/infer.h"
#include "proxy/pool.h"
#include "proxy/proxy.h"
#include "proxy/reqstats.h"
#include "state/view.h"

#define BUF_INITIAL	   (16 * 1024)
#define BUF_STREAM_MAX	   (64 * 1024) /* per direction, once the head is known */
#define BUF_SPARE_MAX	   64	       /* first-size buffers a worker keeps for reuse */
#define LINGER_MS	   1000	       /* reading after an error response, before close */
#define POOL_IDLE_MS	   30000       /* an idle pooled upstream is closed after this */
#define POOL_PEEK_AFTER_MS 1000	       /* idle longer: check it is still open */
#define POOL_SWEEP_MS	   250	       /* how often the pool is swept */
#define LISTEN_GRACE_MS	   250	       /* draining: accept stragglers, then close */
#define LIMIT_LOG_MS	   1000	       /* at most one line a second about limits */
#define LIMIT_SYNC_MS	   250	       /* the kernel's view of the limits checked */
#define ENOTSUPP_KERNEL	   524	       /* the kernel's ENOTSUPP, not in errno.h */

struct conn;
struct pod_hold;
struct h2cc;
struct h2io;
struct h2up;

enum up_state { UP_CONNECTING, UP_ACTIVE, UP_IDLE };

struct upstream {
	struct ev_handler h; /* first: the loop hands this pointer back */
	struct proxy *p;
	int fd;
	bool rd, wr, eof, dead, reused;
	bool rdhup;   /* the peer's FIN is queued: read until EOF */
	bool counted; /* one of dst's --max-upstream-conns (dst_take) */
	int conn_err; /* connect() failed at once with this errno */
	enum up_state state;
	struct shunt_addr dst;
	struct conn *owner;
	struct pool_dst *pool;	    /* of dst: counts u in open; freed only when 0 */
	struct pod_hold *hold;	    /* its owner's pod's count for dst, or NULL */
	struct pool_link link;	    /* in the pool's idle list (since: went idle) */
	struct upstream *dead_next; /* on the dead list */
	llhttp_t resp;
	struct buf in; /* response bytes; [start, parsed) may go to the client */
	uint32_t parsed;
};

enum client_state {
	C_HEAD,	   /* reading a request head */
	C_REQUEST, /* a request is in flight */
	C_TUNNEL,  /* raw bytes both ways (non-HTTP, or after an upgrade) */
	C_ERROR,   /* writing a response the proxy generated, then close */
	C_H2,	   /* HTTP/2: conn.h2 has the session and its streams */
	C_H2WAIT,  /* an Upgrade: h2c request waits to learn whether its
		    * destinations speak HTTP/2 (h2up_probe) */
};

/* One request/response exchange on a client connection: what HTTP/1
 * parsed of the request, where it was routed, how its body is framed, the
 * upstream carrying it and its timing for reqstats. HTTP/1 drives one
 * stream at a time per connection (the next pipelined request waits in
 * the connection's buffer), so it is embedded in struct conn and reset
 * between requests; HTTP/2 will keep several. */
struct stream {
	uint32_t req_start; /* where the request began in conn.in */
	uint32_t head_len;  /* bytes of the head, once complete */
	bool head_done, req_done, resp_done, resp_started;
	bool keep_alive; /* the request allows the connection to stay open */
	bool is_head, is_connect, want_upgrade, idempotent;
	bool no_retry;	   /* bytes of this request were dropped: cannot resend */
	bool up_connected; /* the current attempt's connect() completed */
	bool to_sandbox, fallback;
	bool h2c_no;	 /* Upgrade: h2c not taken: go on over HTTP/1.1 */
	bool pipelined;	 /* its bytes were there before the exchange before it ended */
	bool inf_tunnel; /* inf is an inbound tunnel's (ends with the connection) */
	/* Draining: "Connection: close" went into this response (the client
	 * will not reuse the connection), or cannot (its head went out
	 * before the drain began). */
	enum { CLOSE_UNDECIDED, CLOSE_INJECTED, CLOSE_TOO_LATE } close_state;
	uint8_t attempts;
	enum body_kind body;
	uint64_t body_left; /* BODY_LENGTH: bytes still to come */
	struct chunked ck;  /* BODY_CHUNKED: framing state */
	llhttp_t req;	    /* request heads only; bodies are framed by us */
	struct upstream *up;
	struct shunt_addr dst; /* the routing decision */
	char key[SHUNT_ROUTE_KEY_LEN];
	struct req_obs obs;
	struct infer_in inf; /* an inbound request of a pod with inference on */
};

/* A client connection: its socket and buffers, where it was going (the
 * captured original destination), which pod it came from (for the
 * limits), its deadline, and the exchange under way. */
struct conn {
	struct ev_handler h;
	struct proxy *p;
	int fd;
	bool rd, wr, eof, dead;
	bool rdhup; /* the peer's FIN is queued: read until EOF */
	enum client_state state;
	struct shunt_addr peer, orig;
	struct pod *pod;	  /* where it connected from; NULL: not tracked */
	struct inpod *inpod;	  /* served in-pod: the pod's own listener took it */
	bool tc;		  /* TC capture's listener took it */
	bool inbound;		  /* to inpod's app: its inference listener took it */
	struct tcpod *tcpod;	  /* ... from this pod (NULL: not known) */
	struct buf in;		  /* request bytes from the client */
	uint32_t parsed;	  /* request parser position in in */
	uint32_t sent;		  /* bytes up to here went to the upstream */
	bool first;		  /* no request seen yet on this connection */
	bool shut_wr_up;	  /* tunnel: client EOF passed on to the upstream */
	struct buf out;		  /* generated responses */
	uint64_t deadline;	  /* loop time; 0: none */
	struct timer timer;	  /* fires at or before deadline */
	struct conn *prev, *next; /* all live clients, for drain and stop */
	struct stream s;	  /* the exchange under way (HTTP/1) */
	struct h2cc *h2;	  /* C_H2: the HTTP/2 session */
	struct h2up *h2_wait;	  /* C_H2WAIT: the session it waits for */
	struct conn *h2_wait_next;
};

/* A pod, as the kernel tells them apart: its network namespace (hostNetwork
 * pods share the node's). Exists while it has connections in the proxy. */
struct pod {
	uint64_t netns;		/* netns cookie */
	struct shunt_addr peer; /* an address it connected from, for people */
	size_t conns;		/* its client connections in the proxy */
	bool limited;		/* at --max-conns-per-pod: in shunt_pod_limit */
};

/* Upstream connections one pod's requests hold to one sandbox (for
 * --max-upstream-conns-per-pod). Exists while held > 0, and until the next
 * sweep after that (LIMIT_SYNC_MS): a keep-alive client's keyed requests,
 * one after the other, find it again instead of allocating it each time. */
struct hold_key {
	uint64_t netns;
	struct shunt_addr dst;
	uint32_t zero; /* the struct's tail padding, spelled out: keys are bytes */
};

struct pod_hold {
	struct hold_key k;
	size_t held;
	size_t h2_streams; /* HTTP/2 streams: H2_UP_MAX_STREAMS count as one */
};

/* A pod served in-pod (inpod.c): the proxy's sockets for it, listeners
 * and upstream connections, live in its network namespace. Worker 0
 * serves every such pod. Removed, it waits (gone) until its connections
 * are freed. */
#define INPOD_NAME_LEN 64

struct inpod_listener {
	struct ev_handler h;
	struct inpod *pod;
	int fd; /* -1: none of this family */
};

/* A pod captured with TC (tcpod.c): the TC program on its host-side
 * interface. */
struct tcpod {
	struct tcpod *next;
	char name[INPOD_NAME_LEN];
	struct tc_attachment at;
};

struct tc_listener {
	struct ev_handler h;
	struct proxy *p;
	int fd; /* -1: none */
};

/* Inferred propagation for one in-pod pod (inferpod.c): its inbound
 * listeners, the sk_lookup link that feeds them, the keys it filed. */
#define INFER_MAX_PORTS 8
#define INFER_MAX_ADDRS 8

struct inpod_infer {
	struct infer_pod rule;
	struct inpod *pod;
	struct inpod_listener l[2]; /* 127.0.0.1:0, [::1]:0 in the pod */
	int link_fd;		    /* sk_lookup on the pod's namespace; -1: none */
	uint16_t ports[INFER_MAX_PORTS];
	int n_ports;
	struct shunt_infer_port_key keys[INFER_MAX_PORTS * INFER_MAX_ADDRS];
	int n_keys;
	uint64_t accepted; /* inbound connections */
};

struct inpod {
	struct inpod *next;
	struct proxy *p;
	char name[INPOD_NAME_LEN];
	char netns_path[256];
	uint64_t netns; /* netns cookie */
	uint32_t slot;	/* in shunt_pod_socks: 2 * slot (IPv4), + 1 (IPv6) */
	struct inpod_listener l[2];
	struct shunt_addr listen[2];
	struct pool pool; /* nsfd: the namespace, open while the pod is */
	size_t conns;	  /* client connections, until freed */
	uint64_t accepted, requests;
	/* 0, or when its listeners close: a connect() captured just before
	 * its entry went is still accepted (LISTEN_GRACE_MS). */
	uint64_t close_at;
	bool gone;
	struct inpod_infer *infer; /* NULL: inference never set */
};

struct listener {
	struct ev_handler h;
	struct proxy *p;
	int fd;
	uint8_t family;
	uint64_t close_at; /* 0, or when it closes (handed over, not ours) */
};

/* At most one listener of each family per worker, and listeners a
 * predecessor with more workers handed over, served until they close. */
#define PROXY_MAX_LISTENERS 8

/*
 * What the workers share (workers.c makes one): the routes (a view, read
 * without locks), and the limits, which are the node's and not one
 * worker's. The limits' tables and flags change under mu, taken once per
 * client connection (pods), per new upstream connection to a sandbox
 * (dsts) and per request a pod sends to a sandbox while
 * --max-upstream-conns-per-pod is on (holds); never for anything else.
 */
struct proxy_shared {
	const struct proxy_opts *o;
	struct shunt_bpf *bpf;
	struct view *view;
	bool track_pods;       /* shunt_conn_src is filled: count per pod */
	_Atomic size_t active; /* client connections of every worker */
	pthread_mutex_t mu;    /* everything below */
	bool draining;	       /* the kernel's limits are no longer ours to write */
	bool conn_limited;     /* at --max-conns: SHUNT_CFG_CONN_LIMIT */
	struct hmap pods;      /* netns cookie -> struct pod */
	struct hmap holds;     /* struct hold_key -> struct pod_hold */
	struct hmap dsts;      /* sandbox address -> struct dst_count */
	/* conn_limit, pod_limit, pods_limited: the workers' st has them 0. */
	struct proxy_stats st;
};

struct proxy {
	struct proxy_opts o;
	int id; /* the worker: 0 runs on the main thread */
	struct loop *loop;
	struct proxy_shared *sh;
	/* The routes and the guard, picked up each time the loop wakes
	 * (view.h); never kept across a blocking wait. */
	const struct view_snap *snap;
	struct listener listeners[PROXY_MAX_LISTENERS];
	int n_listeners;
	struct conn *clients;
	struct conn *dead_clients;
	struct upstream *dead_ups;
	struct pool pool; /* upstream connections by destination */
	/* In-pod (worker 0 only): the pods served, those removed but not yet
	 * freed, the slots of shunt_pod_socks in use, and the agent's own
	 * network namespace to come back to after making a socket in a
	 * pod's. */
	struct inpod *inpods, *inpods_gone; /* how many served: st.inpod_pods */
	size_t inpods_closing;		    /* pods with close_at set */
	uint64_t inpod_slots[SHUNT_MAX_INPOD / 64];
	int host_nsfd;
	uint64_t host_netns; /* its cookie: never served in-pod */
	/* TC capture (worker 0 only): the pods, and the transparent
	 * listeners (IPv4, IPv6) the TC program hands their SYNs to. */
	struct tcpod *tcpods;
	struct tc_listener tc_l[2];
	/* Inferred propagation (worker 0): pods with it set, and the
	 * heartbeat the sk_lookup program checks. */
	size_t infer_pods;
	struct timer infer_beat;
	uint32_t infer_beats;	   /* since the last scan for untracked connections */
	uint64_t infer_stale_seen; /* the program's SHUNT_INFER_STALE, last read */
	struct http_header *hdrs;  /* scratch for one head at a time */
	int spare_fd;		   /* given up to refuse a connection at EMFILE */
	/* Input buffers of BUF_INITIAL that exchanges let go of: an idle
	 * keep-alive connection holds none, the next exchange of any
	 * connection takes one back without calling the allocator. */
	char *spare[BUF_SPARE_MAX];
	int n_spare;
	llhttp_settings_t req_settings, resp_settings;
	struct proxy_stats st;
	/* Draining (proxy_drain): no new connections; each client gets
	 * "Connection: close" on its next response and goes once that is
	 * out; whatever is left at drain_deadline is closed. */
	bool draining;
	uint64_t drain_deadline;
	uint64_t listen_close_at; /* 0, or when the listeners close */
	struct reqstats rs;
	/* HTTP/2 (h2.h): sessions with frames to write, upstream sessions. */
	struct h2io *h2_dirty;
	struct h2up *h2_all, *h2_dead_ups;
	/* Tests (tests/fuzz/fuzz_h2.c) connect upstreams themselves: a
	 * connected, non-blocking socket to dst, or -errno. NULL: connect().
	 * upstream_dial() is the one caller. */
	int (*dial)(struct proxy *p, const struct shunt_addr *dst);
	bool no_take;		  /* the kernel has no LOOKUP_AND_DELETE for hashes */
	uint64_t limit_log_next;  /* loop time before which limit lines are held back */
	uint64_t limit_sync_next; /* loop time of the next limits_reconcile() */
	uint64_t pool_sweep_next; /* loop time of the next pool_sweep() */
	uint64_t limit_log_quiet; /* lines held back since the last one */
};

/* One worker (proxy.c). proxy_start binds or takes over its listening
 * sockets on loop; the rest mirror workers_*() for one worker, on its own
 * thread. */
int proxy_start(struct proxy **out, const struct proxy_opts *o, struct loop *loop,
		struct proxy_shared *sh, int id);
void proxy_stop(struct proxy *p);
void proxy_drain(struct proxy *p, uint64_t timeout_ms, bool handed_over);
bool proxy_drained(struct proxy *p);
/* Limits, draining and the idle pool; after every loop iteration.
 * Connection deadlines are timers on the loop, not scanned here. */
void proxy_tick(struct proxy *p);
/* Free connections closed during the last loop iteration. */
void proxy_reap(struct proxy *p);
/* p's listening sockets (not those it only finishes); at most max. */
int proxy_listener_fds(struct proxy *p, int *fds, int max);

/* errno of up_new() when dst has --max-upstream-conns connections open. */
#define EUPSTREAM_LIMIT EUSERS

/* errno of up_new() when the destination guard refuses dst (an address of
 * the node): never an errno connect() itself gives. */
#define EDST_REFUSED ENOTUNIQ

/* errno of attach_upstream() when the client's pod holds
 * --max-upstream-conns-per-pod connections to dst. */
#define EPOD_UPSTREAM_LIMIT EDQUOT

/* conn.c */
/* Room in b (a connection's input) for more bytes, growing it up to limit:
 * 0 or -ENOBUFS / -ENOMEM. A first buffer comes from p's spares. */
int conn_buf_grow(struct proxy *p, struct buf *b, uint32_t limit);
/* b's memory goes back to p's spares (a first-size buffer, while there is
 * room), else to the allocator; b is empty. */
void conn_buf_release(struct proxy *p, struct buf *b);
void client_set_deadline(struct conn *c, uint64_t ms);
void client_reset_request(struct conn *c);
void req_end(struct conn *c, enum rs_dest d, enum rs_outcome o, int status);
void client_close(struct conn *c);
void client_error(struct conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void client_pump(struct conn *c);
void client_event(struct ev_handler *h, uint32_t events);
void client_expired(struct conn *c);
void client_timer_fired(struct timer *t);

/* h1.c */
int on_req_headers(llhttp_t *ll);
int on_resp_headers(llhttp_t *ll);
int on_resp_complete(llhttp_t *ll);
void parse_request(struct conn *c);
void finish_exchange(struct conn *c);
/* c's Upgrade: h2c request stopped waiting (C_H2WAIT): route it again. */
void h1_h2c_resume(struct conn *c);
bool read_upstream(struct conn *c);
uint32_t drain_inject(struct conn *c);

/* upstream.c */
/* A non-blocking socket connecting to dst (p->dial's when set), or -1 and
 * errno; a connect() that failed at once leaves its errno in *conn_err,
 * reported later like a failure on the way. */
int upstream_dial(struct proxy *p, const struct pool *root, const struct shunt_addr *dst,
		  int *conn_err);
void up_close(struct upstream *u);
void up_close_idle(struct pool_link *l);
void up_release(struct upstream *u);
bool attach_upstream(struct conn *c, bool fresh);
void no_upstream(struct conn *c, int err);
void upstream_failed(struct conn *c, int err);

/* tcpod.c (worker 0) */
int tcpod_init(struct proxy *p);
int proxy_tc_add(struct proxy *p, const char *name, const char *ifname, char *msg, size_t msglen);
int proxy_tc_del(struct proxy *p, const char *name, char *msg, size_t msglen);
int proxy_tc_list(struct proxy *p, struct tcpod_info *out, int max);
int proxy_tc_handover(struct proxy *p, struct tcpod_handover *out, int max, int lfd[2]);
void tcpod_adopt(struct proxy *p, const struct tcpod_handover *h, int n, const int lfd[2]);
/* Draining: new SYNs pass (or, handed over, the listeners are the
 * successor's now). */
void tcpod_drain(struct proxy *p, bool handed_over);
void tcpod_stop_all(struct proxy *p);
/* A TC connection closes: its shunt_tc_conns entry goes. */
void tc_conn_forget(struct conn *c);

/* inferpod.c (worker 0) */
void infer_init(struct proxy *p);
int proxy_infer_handover(struct proxy *p, struct infer_handover *out, int max);
/* Inference the agent before us had set (after inpod_adopt). */
void infer_adopt(struct proxy *p, const struct infer_handover *h, int n);
bool proxy_infer_kernel_stats(struct proxy *p, uint64_t out[SHUNT_INFER_STAT_MAX]);
/* pod's inference, for pod list and the metrics. */
void inpod_infer_info(const struct inpod *pod, struct inpod_info *out);
int proxy_infer_set(struct proxy *p, const char *name, enum infer_mode mode, const uint16_t *ports,
		    int n_ports, char *msg, size_t msglen);
/* The pod goes (or the agent drains): its listeners and link go, new
 * connections reach the app directly; what is open finishes. */
void inpod_infer_stop(struct proxy *p, struct inpod *pod);
void inpod_infer_free(struct inpod *pod);
/* An inbound request (c->inbound) was routed: to the app, noted. */
void infer_inbound_begin(struct conn *c);
/* The same for a stream of c (HTTP/2) with key ("" without one). */
void infer_inbound_begin_h2(struct conn *c, struct infer_in *e, const char *key);
/* An inbound connection became a tunnel (not HTTP, an upgrade): work the
 * pod does that shunt cannot read, in flight without a key until it
 * closes. */
void infer_inbound_tunnel(struct conn *c);
/* Are bytes of c's next request there already (in its buffer or its
 * socket)? */
bool infer_pipelined(struct conn *c);
/* Is dst, dialled from root (a pod's in-pod pool), one of the pod's own
 * IPv4 addresses, i.e. a relay to its app? Those leave from
 * INFER_RELAY_SRC4, so the pod's sockets tell them apart. */
bool infer_relay_dst(const struct pool *root, const struct shunt_addr *dst);
/* An outbound request of an in-pod pod with inference set, parsed (its
 * head has n_headers lines); no_key: it carries no routing key. true: a
 * key was inferred and its baggage line added to the head in c->in:
 * check and route the head again. */
bool infer_outbound(struct conn *c, bool no_key, size_t n_headers);
/* The same for an HTTP/2 stream of c: the line is added to reqh. */
struct h2hb;
bool infer_outbound_h2(struct conn *c, bool no_key, struct h2hb *reqh);

/* inpod.c */
/* A listener in the pod's namespace on a: the fd, or -errno (msg says
 * what failed). */
int inpod_listen(struct proxy *p, int nsfd, const struct shunt_addr *a, char *msg, size_t msglen);
struct inpod *inpod_find(struct proxy *p, const char *name);
int proxy_inpod_add(struct proxy *p, const char *name, const char *netns_path, char *msg,
		    size_t msglen);
int proxy_inpod_del(struct proxy *p, const char *name, char *msg, size_t msglen);
int proxy_inpod_list(struct proxy *p, struct inpod_info *out, int max);
size_t proxy_inpod_count(const struct proxy *p);
int proxy_inpod_handover(struct proxy *p, struct inpod_handover *out, int max);
/* The pool c's upstream connections come from: its pod's, in-pod. */
static inline struct pool *conn_pool(struct conn *c)
{
	return c->inpod ? &c->inpod->pool : &c->p->pool;
}
/* A non-blocking TCP socket of family made in the network namespace
 * nsfd, or -1 and errno. */
int inpod_socket(struct proxy *p, int nsfd, int family);
/* The proxy's part of starting and stopping (worker 0). */
int inpod_init(struct proxy *p);
/* Draining: the pods' listeners close (and, forget, their shunt_inpod
 * entries go: not when a successor took over, whose they are now); their
 * connections finish. */
void inpod_drain(struct proxy *p, bool forget);
/* Every pod goes, its connections closed. */
void inpod_stop_all(struct proxy *p, bool forget);
void inpod_fini(struct proxy *p);
void inpod_adopt(struct proxy *p, struct inpod_handover *h, int n);
/* The pods' pools, as pool_sweep() does p's own. */
void inpod_pools_sweep(struct proxy *p, bool close_all);
/* Forget removed pods whose connections are all freed; close listeners
 * whose grace is over. */
void inpod_reap(struct proxy *p);

/* tunnel.c */
void start_tunnel(struct conn *c);
bool tunnel_ended(struct conn *c, struct upstream *u);

/* limits.c */
/* One more upstream connection (h2: stream) of a pod's requests to dst,
 * unless the pod holds --max-upstream-conns-per-pod already: the count,
 * or NULL with errno EPOD_UPSTREAM_LIMIT (or ENOMEM). */
struct pod_hold *hold_take(struct proxy *p, uint64_t netns, const struct shunt_addr *dst, bool h2);
void hold_put(struct proxy *p, struct pod_hold *h, bool h2);
void holds_sweep(struct proxy_shared *sh);
/* One more connection to sandbox dst, of every worker; false with errno
 * EUPSTREAM_LIMIT (--max-upstream-conns reached, counted) or ENOMEM. */
bool dst_take(struct proxy *p, const struct shunt_addr *dst);
void dst_put(struct proxy *p, const struct shunt_addr *dst);
const char *limit_log(struct proxy *p, uint64_t times, char *buf, size_t len);
const char *pod_name(const struct pod *pod, char *buf, size_t len);
/* A client connection opened or closed: the node's count (--max-conns). */
void conn_count_up(struct proxy *p);
void conn_count_down(struct proxy *p);
void pod_attach(struct conn *c, uint64_t netns);
void pod_detach(struct conn *c);
void limits_reconcile(struct proxy_shared *sh);
int proxy_shared_init(struct proxy_shared *sh, const struct proxy_opts *o, struct shunt_bpf *bpf,
		      struct view *view);
void proxy_shared_free(struct proxy_shared *sh);

/* listener.c */
int listen_on(struct proxy *p, const struct shunt_addr *a);
/* A listening socket handed over beyond those p listens on: its queue is
 * served until LISTEN_GRACE_MS from now, then it closes (or at once, if
 * it is not on one of p's addresses). */
void listen_adopt(struct proxy *p, int fd);
/* Close the adopted listeners whose time is up. */
void listeners_expire(struct proxy *p);
/* A client connection on fd (closed on failure), then served: conn_begin
 * once its peer and original destination are known. */
struct conn *conn_new(struct proxy *p, int fd);
/* c->peer from its socket (accept()'s peer address): 0 or -1. */
int conn_peer(struct conn *c);
/* Accept every connection waiting on listening socket lfd, each handed to
 * take (with ctx); out of descriptors, the oldest is refused. */
void accept_backlog(struct proxy *p, int lfd, void (*take)(struct proxy *p, int fd, void *ctx),
		    void *ctx);
/* Read and remove a connection's record: one system call where the kernel
 * can (LOOKUP_AND_DELETE on hash maps, 5.14), two where it cannot. */
int map_take(struct proxy *p, int fd, const void *key, void *val);
bool conn_begin(struct conn *c);
void close_listeners(struct proxy *p);

#endif /* SHUNT_PROXY_INT_H */
