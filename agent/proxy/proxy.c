// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-request HTTP/1.x steering.
 *
 * Every file descriptor is edge-triggered; each side remembers whether it is
 * readable or writable and client_pump() moves every byte it can, in both
 * directions, until nothing moves. A client connection has at most one
 * upstream at a time: the request in flight. The next request in the client
 * buffer (pipelining) is parsed only once the previous response has been
 * written out completely, so responses come back in request order.
 *
 * Bytes are forwarded exactly as received: the head and body framing that
 * llhttp and http_head_check() accepted is what the upstream sees.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <llhttp.h>

#include "kernel/bpf.h"
#include "state/dstguard.h"
#include "core/hmap.h"
#include "proxy/http.h"
#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/pool.h"
#include "proxy/reqstats.h"
#include "proxy/route.h"
#include "state/store.h"
#include "core/util.h"

#define BUF_INITIAL	   (16 * 1024)
#define BUF_STREAM_MAX	   (64 * 1024) /* per direction, once the head is known */
#define LINGER_MS	   1000	       /* reading after an error response, before close */
#define POOL_IDLE_MS	   30000       /* an idle pooled upstream is closed after this */
#define POOL_PEEK_AFTER_MS 1000	       /* idle longer: check it is still open */
#define LISTEN_GRACE_MS	   250	       /* draining: accept stragglers, then close */
#define LIMIT_LOG_MS	   1000	       /* at most one line a second about limits */
#define LIMIT_SYNC_MS	   250	       /* the kernel's view of the limits checked */
#define ENOTSUPP_KERNEL	   524	       /* the kernel's ENOTSUPP, not in errno.h */

struct buf {
	char *data;
	uint32_t start; /* first byte still needed */
	uint32_t end;	/* one past the last byte read */
	uint32_t cap;
};

struct conn;
struct pod_hold;

enum up_state { UP_CONNECTING, UP_ACTIVE, UP_IDLE };

struct upstream {
	struct ev_handler h; /* first: the loop hands this pointer back */
	struct proxy *p;
	int fd;
	bool rd, wr, eof, dead, reused;
	bool rdhup;   /* the peer's FIN is queued: read until EOF */
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
	struct pod *pod; /* where it connected from; NULL: not tracked */
	struct buf in;	 /* request bytes from the client */
	uint32_t parsed; /* request parser position in in */
	uint32_t sent;	 /* bytes up to here went to the upstream */
	bool first;	 /* no request seen yet on this connection */
	bool shut_wr_up; /* tunnel: client EOF passed on to the upstream */
	struct buf out;	 /* generated responses */
	uint64_t deadline;
	struct conn *prev, *next; /* all live clients, for timeouts */
	struct stream s;	  /* the exchange under way */
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
};

struct listener {
	struct ev_handler h;
	struct proxy *p;
	int fd;
	uint8_t family;
};

struct proxy {
	struct proxy_opts o;
	struct loop *loop;
	struct store *store;
	struct shunt_bpf *bpf;
	struct listener listeners[2];
	int n_listeners;
	struct conn *clients;
	struct conn *dead_clients;
	struct upstream *dead_ups;
	struct pool pool;	  /* upstream connections by destination */
	struct http_header *hdrs; /* scratch for one head at a time */
	int spare_fd;		  /* given up to refuse a connection at EMFILE */
	llhttp_settings_t req_settings, resp_settings;
	struct proxy_stats st;
	/* Draining (proxy_drain): no new connections; each client gets
	 * "Connection: close" on its next response and goes once that is
	 * out; whatever is left at drain_deadline is closed. */
	bool draining;
	uint64_t drain_deadline;
	uint64_t listen_close_at; /* 0, or when the listeners close */
	struct reqstats rs;
	/* Fairness between pods and the node's limit (see accept_one). */
	bool track_pods;	  /* shunt_conn_src is filled: count per pod */
	bool conn_limited;	  /* at --max-conns: SHUNT_CFG_CONN_LIMIT */
	bool no_take;		  /* the kernel has no LOOKUP_AND_DELETE for hashes */
	struct hmap pods;	  /* netns cookie -> struct pod */
	struct hmap holds;	  /* struct hold_key -> struct pod_hold */
	uint64_t limit_log_next;  /* loop time before which limit lines are held back */
	uint64_t limit_sync_next; /* loop time of the next limits_reconcile() */
	uint64_t limit_log_quiet; /* lines held back since the last one */
};

static void client_pump(struct conn *c);
static void client_close(struct conn *c);
static void client_error(struct conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- buffers */

static int buf_reserve(struct buf *b, uint32_t limit)
{
	uint32_t cap;
	char *d;

	if (b->end < b->cap)
		return 0;
	if (b->cap >= limit)
		return -ENOBUFS;
	cap = b->cap ? b->cap * 2 : BUF_INITIAL;
	if (cap > limit)
		cap = limit;
	d = realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------ upstreams */

static uint32_t up_events(void)
{
	return EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
}

static struct upstream *up_of(struct pool_link *l)
{
	return (struct upstream *)((char *)l - offsetof(struct upstream, link));
}

/* The count of connections one pod's requests hold to dst, created at 0
 * when asked; NULL only when out of memory. */
static struct pod_hold *hold_get(struct proxy *p, uint64_t netns, const struct shunt_addr *dst)
{
	struct hold_key k;
	struct pod_hold *h;

	memset(&k, 0, sizeof(k));
	k.netns = netns;
	k.dst = *dst;
	k.dst.pad = 0;
	h = hmap_get(&p->holds, &k, sizeof(k));
	if (h)
		return h;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->k = k;
	if (hmap_put(&p->holds, &h->k, sizeof(h->k), h, NULL)) {
		free(h);
		return NULL;
	}
	return h;
}

/* Forget the counts that dropped to zero (every LIMIT_SYNC_MS, and at the
 * end). */
static void holds_sweep(struct proxy *p)
{
	struct hmap_entry *e, *next;
	size_t it;

	for (e = hmap_first(&p->holds, &it); e; e = next) {
		struct pod_hold *h = e->val;

		next = hmap_next(&p->holds, e, &it);
		if (!h->held) {
			hmap_del(&p->holds, &h->k, sizeof(h->k));
			free(h);
		}
	}
}

/* u no longer works for a client (the exchange ended or u closes). */
static void up_disown(struct upstream *u)
{
	u->owner = NULL;
	if (u->hold) {
		u->hold->held--;
		u->hold = NULL;
	}
}

static void up_close(struct upstream *u)
{
	struct proxy *p = u->p;

	if (u->dead)
		return;
	if (u->state == UP_IDLE)
		pool_idle_remove(u->pool, &u->link);
	u->pool->open--;
	if (u->owner && u->owner->s.up == u)
		u->owner->s.up = NULL;
	up_disown(u);
	loop_del(p->loop, u->fd);
	close(u->fd);
	u->fd = -1;
	u->dead = true;
	buf_free(&u->in);
	u->dead_next = p->dead_ups;
	p->dead_ups = u;
}

/* pool_sweep() closes an idle connection. */
static void up_close_idle(struct pool_link *l)
{
	up_close(up_of(l));
}

/* A finished exchange: keep the connection for the next request to dst. */
static void up_release(struct upstream *u)
{
	struct proxy *p = u->p;
	struct pool_dst *pl;

	up_disown(u);
	pl = u->pool;
	if (pl->n_idle >= p->o.max_idle_per_dst || u->eof || u->in.end != u->parsed) {
		up_close(u);
		return;
	}
	buf_free(&u->in);
	u->parsed = 0;
	u->state = UP_IDLE;
	u->reused = true;
	pool_idle_push(pl, &u->link, p->loop->now_ms);
}

static void up_event(struct ev_handler *h, uint32_t events)
{
	struct upstream *u = (struct upstream *)h;

	if (u->dead)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->rd = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->rdhup = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		u->wr = true;
	if (u->state == UP_IDLE) {
		/* An idle connection has nothing to say: readable means the
		 * server closed it (or broke protocol), and either way it is
		 * no longer usable. Write space (the ACK of the last request
		 * arriving late) says nothing. */
		if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			up_close(u);
		return;
	}
	if (u->owner)
		client_pump(u->owner);
}

/* errno of up_new() when dst has --max-upstream-conns connections open. */
#define EUPSTREAM_LIMIT EUSERS
/* errno of up_new() when the destination guard refuses dst (an address of
 * the node): never an errno connect() itself gives. */
#define EDST_REFUSED ENOTUNIQ
/* errno of attach_upstream() when the client's pod holds
 * --max-upstream-conns-per-pod connections to dst. */
#define EPOD_UPSTREAM_LIMIT EDQUOT

/* limited: dst is a sandbox, which --max-upstream-conns protects. A request
 * without a route goes where the application was going anyway: no upstream
 * limit applies to it (the connection limits bound those). */
static struct upstream *up_new(struct proxy *p, const struct shunt_addr *dst, bool limited)
{
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(dst, &ss);
	struct pool_dst *pl = pool_dst_get(&p->pool, dst, true);
	struct upstream *u;
	int one = 1, fd;

	if (!pl) {
		errno = ENOMEM;
		return NULL;
	}
	/* Checked again here, not only when the route was added: the node's
	 * addresses change, and the original destination of a captured
	 * connection was never a route's. */
	if (dstguard_check(p->store->guard, dst) != DST_OK) {
		p->st.dst_refused++;
		errno = EDST_REFUSED;
		return NULL;
	}
	if (limited && p->o.max_upstream_per_dst && pl->open >= p->o.max_upstream_per_dst) {
		p->st.upstream_limit++;
		errno = EUPSTREAM_LIMIT;
		return NULL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	/* The mark keeps our own connect() out of cgroup/connect's reach. */
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &p->o.mark, sizeof(p->o.mark)))
		pr_debug("SO_MARK on upstream socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	u = calloc(1, sizeof(*u));
	if (!u) {
		close(fd);
		return NULL;
	}
	u->h.fn = up_event;
	u->p = p;
	u->fd = fd;
	u->dst = *dst;
	u->pool = pl;
	u->state = UP_CONNECTING;
	if (connect(fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) {
		/* Reported by the pump like an asynchronous failure. */
		u->conn_err = errno;
		u->rd = u->wr = true;
	}
	if (loop_add(p->loop, fd, up_events(), &u->h)) {
		close(fd);
		free(u);
		return NULL;
	}
	pl->open++;
	p->st.upstream_connects++;
	return u;
}

/* A pooled connection if one is idle, else a new one. */
static struct upstream *up_get(struct proxy *p, const struct shunt_addr *dst, bool fresh,
			       bool limited)
{
	struct pool_dst *pl = fresh ? NULL : pool_dst_get(&p->pool, dst, false);
	struct pool_link *l;
	struct upstream *u;

	while (pl && (l = pool_idle_pop(pl))) {
		char probe;
		ssize_t n;

		u = up_of(l);
		u->state = UP_ACTIVE;
		/* A server that closed an idle connection (or wrote to it out
		 * of turn) may not have been heard yet: look before reusing
		 * one that sat idle a while. Servers do not close keep-alive
		 * connections within a second of a response, so the request
		 * loops of busy clients save the system call. */
		if (p->loop->now_ms - u->link.since >= POOL_PEEK_AFTER_MS) {
			n = recv(u->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
			if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				up_close(u);
				continue;
			}
		}
		p->st.upstream_reused++;
		return u;
	}
	return up_new(p, dst, limited);
}

/* ------------------------------------------------------------- parsing */

static int on_req_headers(llhttp_t *ll)
{
	struct conn *c = ll->data;

	c->s.head_done = true;
	return HPE_PAUSED; /* stop at the end of the head: route first */
}

static int on_resp_headers(llhttp_t *ll)
{
	struct conn *c = ll->data;

	if (!c)
		return -1;
	c->s.resp_started = true;
	/* Switching protocols, or a CONNECT tunnel established: the rest is
	 * opaque. A 101 nobody asked for switches all the same; the
	 * connection is never reused after it. */
	if (ll->status_code == 101 ||
	    (c->s.is_connect && ll->status_code >= 200 && ll->status_code < 300))
		return 2;
	if (c->s.is_head && ll->status_code >= 200)
		return 1; /* a response to HEAD has no body, whatever it says */
	return 0;
}

static int on_resp_complete(llhttp_t *ll)
{
	struct conn *c = ll->data;

	if (!c)
		return -1;
	if (ll->status_code >= 100 && ll->status_code < 200 && ll->status_code != 101)
		return 0; /* interim (100 Continue, 103): the final one follows */
	c->s.resp_done = true;
	return HPE_PAUSED;
}

/* ------------------------------------------------------------- limits */

/* Lines about limits: at most one per LIMIT_LOG_MS, so a pod hammering at
 * its cap cannot flood the log. Returns NULL when this one is held back,
 * else the line's tail: how often it happened, and how many lines were
 * held back since the last one. */
static const char *limit_log(struct proxy *p, uint64_t times, char *buf, size_t len)
{
	if (p->loop->now_ms < p->limit_log_next) {
		p->limit_log_quiet++;
		return NULL;
	}
	p->limit_log_next = p->loop->now_ms + LIMIT_LOG_MS;
	if (p->limit_log_quiet)
		snprintf(buf, len, "%llu so far; %llu lines about limits not logged",
			 (unsigned long long)times, (unsigned long long)p->limit_log_quiet);
	else
		snprintf(buf, len, "%llu so far", (unsigned long long)times);
	p->limit_log_quiet = 0;
	return buf;
}

/* A pod by an address it connected from (its pod IP; the node's address
 * for hostNetwork pods, which share one netns). */
static const char *pod_name(const struct pod *pod, char *buf, size_t len)
{
	int af = pod->peer.family == SHUNT_FAMILY_V4 ? AF_INET : AF_INET6;

	if (!inet_ntop(af, pod->peer.addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* shunt_config.flags as the limits stand. Only the agent in charge writes
 * them: a draining one has a successor, or no listener in the sockmap. */
static void limits_to_kernel(struct proxy *p)
{
	uint32_t flags = (p->conn_limited ? SHUNT_CFG_CONN_LIMIT : 0) |
			 (p->st.pods_limited ? SHUNT_CFG_POD_LIMIT : 0);
	int err;

	if (p->draining)
		return;
	err = shunt_bpf_set_config_flags(p->bpf, SHUNT_CFG_CONN_LIMIT | SHUNT_CFG_POD_LIMIT, flags);
	if (err)
		pr_warn("write shunt_config flags %#x: %s", flags, strerror(-err));
}

static void conn_limit_set(struct proxy *p, bool on)
{
	char tail[96];

	p->conn_limited = on;
	limits_to_kernel(p);
	if (on) {
		p->st.conn_limit++;
		if (limit_log(p, p->st.conn_limit, tail, sizeof(tail)))
			pr_warn("connection limit (--max-conns %zu) reached: new connections go to "
				"their destinations uncaptured until %zu or fewer are open (%s)",
				p->o.max_conns, limit_resume_at(p->o.max_conns), tail);
	} else {
		pr_debug("back under --max-conns %zu: capturing again", p->o.max_conns);
	}
}

static void pod_limit_set(struct proxy *p, struct pod *pod, bool on)
{
	struct shunt_pod_limit v = {.conns = (__u32)pod->conns,
				    .limit = (__u32)p->o.max_conns_per_pod,
				    .since_unix = (__u64)time(NULL)};
	char who[INET6_ADDRSTRLEN], tail[96];
	int err = 0;

	pod->limited = on;
	if (on)
		p->st.pods_limited++;
	else
		p->st.pods_limited--;
	if (!p->draining) {
		if (on && bpf_map_update_elem(p->bpf->pod_limit_fd, &pod->netns, &v, BPF_ANY))
			err = -errno;
		else if (!on && bpf_map_delete_elem(p->bpf->pod_limit_fd, &pod->netns) &&
			 errno != ENOENT)
			err = -errno;
	}
	if (err)
		pr_warn("pod %s (netns %llu): %s shunt_pod_limit: %s",
			pod_name(pod, who, sizeof(who)), (unsigned long long)pod->netns,
			on ? "add to" : "remove from", strerror(-err));
	limits_to_kernel(p);
	if (!on) {
		pr_debug("pod %s (netns %llu) back under --max-conns-per-pod: captured again",
			 pod_name(pod, who, sizeof(who)), (unsigned long long)pod->netns);
		return;
	}
	p->st.pod_limit++;
	if (limit_log(p, p->st.pod_limit, tail, sizeof(tail)))
		pr_warn("pod %s (netns %llu) reached --max-conns-per-pod %zu: its new connections "
			"go to their destinations uncaptured until it holds %zu or fewer (%s)",
			pod_name(pod, who, sizeof(who)), (unsigned long long)pod->netns,
			p->o.max_conns_per_pod, limit_resume_at(p->o.max_conns_per_pod), tail);
}

/* c connected from the netns filed for it; count it against its pod. */
static void pod_attach(struct conn *c, uint64_t netns)
{
	struct proxy *p = c->p;
	struct pod *pod = hmap_get(&p->pods, &netns, sizeof(netns));

	if (!pod) {
		pod = calloc(1, sizeof(*pod));
		if (!pod)
			return; /* not counted: the node's limit still holds */
		pod->netns = netns;
		pod->peer = c->peer;
		if (hmap_put(&p->pods, &pod->netns, sizeof(pod->netns), pod, NULL)) {
			free(pod);
			return;
		}
	}
	c->pod = pod;
	pod->conns++;
	if (!p->o.max_conns_per_pod || pod->conns < p->o.max_conns_per_pod)
		return;
	if (pod->conns > p->o.max_conns_per_pod)
		p->st.over_limit++; /* captured before the kernel heard: served */
	if (!pod->limited)
		pod_limit_set(p, pod, true);
}

static void pod_detach(struct conn *c)
{
	struct proxy *p = c->p;
	struct pod *pod = c->pod;

	c->pod = NULL;
	pod->conns--;
	if (pod->limited && pod->conns <= limit_resume_at(p->o.max_conns_per_pod))
		pod_limit_set(p, pod, false);
	if (!pod->conns) {
		hmap_del(&p->pods, &pod->netns, sizeof(pod->netns));
		free(pod);
	}
}

/*
 * Make the kernel's view of the limits ours again: shunt_pod_limit holds
 * exactly the pods this proxy limits, the flags say so. Entries of an agent
 * before us (a takeover, a crash) or of a write that raced one go here, at
 * the latest LIMIT_SYNC_MS after they appeared. Two system calls when
 * nothing is limited.
 */
static void limits_reconcile(struct proxy *p)
{
	int fd = p->bpf->pod_limit_fd;
	__u64 key, next;
	void *prev = NULL;
	uint64_t present = 0;

	if (p->draining)
		return;
	for (unsigned int i = 0; i < 2 * SHUNT_MAX_PODS; i++) {
		struct pod *pod;

		if (bpf_map_get_next_key(fd, prev, &next))
			break;
		pod = hmap_get(&p->pods, &next, sizeof(next));
		if (pod && pod->limited) {
			present++;
			key = next;
			prev = &key;
			continue;
		}
		/* the next lookup continues after prev, as before */
		bpf_map_delete_elem(fd, &next);
	}
	if (present != p->st.pods_limited) {
		size_t it;

		for (struct hmap_entry *e = hmap_first(&p->pods, &it); e;
		     e = hmap_next(&p->pods, e, &it)) {
			struct pod *pod = e->val;
			struct shunt_pod_limit v = {.conns = (__u32)pod->conns,
						    .limit = (__u32)p->o.max_conns_per_pod,
						    .since_unix = (__u64)time(NULL)};

			if (pod->limited)
				bpf_map_update_elem(fd, &pod->netns, &v, BPF_NOEXIST);
		}
	}
	limits_to_kernel(p);
}

/* Read and remove a connection's record: one system call where the kernel
 * can (LOOKUP_AND_DELETE on hash maps, 5.14), two where it cannot. */
static int map_take(struct proxy *p, int fd, const void *key, void *val)
{
	if (!p->no_take) {
		if (!bpf_map_lookup_and_delete_elem(fd, key, val))
			return 0;
		if (errno != EINVAL && errno != ENOTSUPP_KERNEL && errno != EOPNOTSUPP)
			return -errno;
		p->no_take = true;
	}
	if (bpf_map_lookup_elem(fd, key, val))
		return -errno;
	bpf_map_delete_elem(fd, key);
	return 0;
}

/* ------------------------------------------------------------- clients */

static void client_set_deadline(struct conn *c, uint64_t ms)
{
	c->deadline = ms ? c->p->loop->now_ms + ms : 0;
}

static void client_reset_request(struct conn *c)
{
	c->s.head_done = c->s.req_done = c->s.resp_done = c->s.resp_started = false;
	c->s.is_head = c->s.is_connect = c->s.want_upgrade = c->s.idempotent = false;
	c->s.no_retry = c->s.up_connected = c->s.to_sandbox = c->s.fallback = false;
	c->s.close_state = CLOSE_UNDECIDED;
	c->s.attempts = 0;
	c->s.body = BODY_NONE;
	c->s.body_left = 0;
	memset(&c->s.ck, 0, sizeof(c->s.ck));
	c->s.head_len = 0;
	c->s.key[0] = '\0';
	c->s.obs = (struct req_obs){.on_close = RS_CLIENT_ABORT};
	if (c->sent == c->in.end) {
		/* Nothing pipelined: an idle keep-alive connection holds no
		 * buffer, so thousands of them cost little memory. */
		buf_free(&c->in);
		c->sent = c->parsed = 0;
	}
	c->s.req_start = c->sent;
	c->state = C_HEAD;
	llhttp_init(&c->s.req, HTTP_REQUEST, &c->p->req_settings);
	c->s.req.data = c;
	client_set_deadline(c, c->p->o.idle_timeout_ms);
}

/* The request under way on c ended: count it (reqstats.h says how) and,
 * when its service is steered, log it. */
static void req_end(struct conn *c, enum rs_dest d, enum rs_outcome o, int status)
{
	struct proxy *p = c->p;
	uint64_t dur;

	if (!c->s.obs.t0_ns)
		return;
	dur = rs_now_ns() - c->s.obs.t0_ns;
	c->s.obs.t0_ns = 0;
	if (d == RS_DEST_ERROR)
		c->s.obs.resp_bytes = c->out.start;
	reqstats_record(&p->rs, &c->orig, d, o, dur);
	if (p->o.access_log && route_table_service_count(p->store->t, &c->orig))
		rs_access_log(&c->orig, c->s.key, d, c->s.obs.routed ? &c->s.dst : NULL, status, o,
			      &c->s.obs, dur);
}

/* The request under way ends now, however far it got. */
static void req_end_now(struct conn *c)
{
	int status = c->s.up && c->s.resp_started ? c->s.up->resp.status_code : 0;

	if (c->s.obs.status)
		req_end(c, RS_DEST_ERROR, rs_outcome_of_status(c->s.obs.status), c->s.obs.status);
	else if (c->state == C_REQUEST)
		req_end(c, c->s.to_sandbox ? RS_DEST_SANDBOX : RS_DEST_BASELINE,
			(enum rs_outcome)c->s.obs.on_close, status);
	else
		c->s.obs.t0_ns = 0; /* a head that never completed: not a request */
}

static void client_close(struct conn *c)
{
	struct proxy *p = c->p;

	if (c->dead)
		return;
	req_end_now(c);
	if (c->s.up)
		up_close(c->s.up);
	loop_del(p->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	c->dead = true;
	buf_free(&c->in);
	buf_free(&c->out);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = p->dead_clients;
	p->dead_clients = c;
	p->st.active--;
	if (c->pod)
		pod_detach(c);
	if (p->conn_limited && p->st.active <= limit_resume_at(p->o.max_conns))
		conn_limit_set(p, false);
}

static const char *status_text(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 504:
		return "Gateway Timeout";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

/* Answer with a response of our own and close: whatever the client sent
 * after this point is not forwarded anywhere. */
static void client_error(struct conn *c, int status, const char *fmt, ...)
{
	char body[512], head[256];
	va_list ap;
	int bl, hl;

	va_start(ap, fmt);
	bl = vsnprintf(body, sizeof(body) - 1, fmt, ap);
	va_end(ap);
	if (bl < 0)
		bl = 0;
	if (bl > (int)sizeof(body) - 2)
		bl = (int)sizeof(body) - 2;
	body[bl++] = '\n';
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
		      "Connection: close\r\nX-Shunt-Error: %d\r\n\r\n",
		      status, status_text(status), bl, status);
	if (status >= 500)
		c->p->st.errors++;
	else
		c->p->st.bad_requests++;
	c->s.obs.status = status;
	if (!c->s.obs.t0_ns)
		c->s.obs.t0_ns = rs_now_ns();
	if (c->state == C_HEAD)
		c->s.obs.req_bytes = c->parsed - c->s.req_start;
	if (c->s.up)
		up_close(c->s.up);
	buf_free(&c->out);
	c->out.data = malloc((size_t)hl + (size_t)bl);
	if (!c->out.data) {
		client_close(c);
		return;
	}
	memcpy(c->out.data, head, (size_t)hl);
	memcpy(c->out.data + hl, body, (size_t)bl);
	c->out.cap = c->out.end = (uint32_t)(hl + bl);
	c->state = C_ERROR;
	client_set_deadline(c, LINGER_MS);
}

/* Get a connection to c->s.dst for the current request: pooled unless
 * fresh, with a response parser ready. Returns false when none can be had. */
static bool attach_upstream(struct conn *c, bool fresh)
{
	struct proxy *p = c->p;
	struct pod_hold *h = NULL;
	struct upstream *u;

	if (c->s.to_sandbox && c->pod && p->o.max_upstream_per_pod) {
		h = hold_get(p, c->pod->netns, &c->s.dst);
		if (!h) {
			errno = ENOMEM;
			return false;
		}
		if (h->held >= p->o.max_upstream_per_pod) {
			p->st.pod_upstream_limit++;
			errno = EPOD_UPSTREAM_LIMIT;
			return false;
		}
	}
	u = up_get(p, &c->s.dst, fresh, c->s.to_sandbox);
	if (!u)
		return false;
	c->s.up = u;
	u->owner = c;
	if (h) {
		u->hold = h;
		h->held++;
	}
	llhttp_init(&u->resp, HTTP_RESPONSE, &p->resp_settings);
	/* An interim response that says "close" must not stop the parser
	 * before the final response it announces. */
	llhttp_set_lenient_keep_alive(&u->resp, 1);
	u->resp.data = c;
	c->s.up_connected = u->state != UP_CONNECTING;
	client_set_deadline(c, c->s.up_connected ? p->o.idle_timeout_ms : p->o.connect_timeout_ms);
	return true;
}

static bool method_is_idempotent(uint8_t m)
{
	/* RFC 9110 section 9.2.2: only these may be sent again on their own. */
	return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_TRACE ||
	       m == HTTP_PUT || m == HTTP_DELETE;
}

/* No connection could be had for the current request. */
static void no_upstream(struct conn *c, int err)
{
	struct proxy *p = c->p;
	char a[ADDR_STR_LEN], who[INET6_ADDRSTRLEN], tail[96];

	format_addr_port(&c->s.dst, a, sizeof(a));
	if (err == EPOD_UPSTREAM_LIMIT) {
		if (limit_log(p, p->st.pod_upstream_limit, tail, sizeof(tail)))
			pr_warn("pod %s (netns %llu): its requests hold %zu connections to "
				"sandbox %s (--max-upstream-conns-per-pod %zu): answering 503 (%s)",
				pod_name(c->pod, who, sizeof(who)),
				(unsigned long long)c->pod->netns, p->o.max_upstream_per_pod, a,
				p->o.max_upstream_per_pod, tail);
		client_error(c, 503,
			     "shunt: this pod's requests hold %zu connections to sandbox %s, the "
			     "limit (--max-upstream-conns-per-pod); try again",
			     p->o.max_upstream_per_pod, a);
	} else if (err == EUPSTREAM_LIMIT)
		client_error(c, 503,
			     "shunt: %zu connections to %s are open, the limit "
			     "(--max-upstream-conns); try again",
			     c->p->o.max_upstream_per_dst, a);
	else if (err == EDST_REFUSED)
		client_error(
			c, 502,
			"shunt: refusing to connect to %s: it is %s; shunt never sends traffic "
			"to the node",
			a, dst_class_text(dstguard_check(c->p->store->guard, &c->s.dst)));
	else
		client_error(c, 503, "shunt: no connection to %s: %s", a, strerror(err));
}

/* Decide where the request whose head is in[req_start, req_start+head_len)
 * goes, and get a connection there. */
static void route_request(struct conn *c)
{
	struct proxy *p = c->p;
	const char *head = c->in.data + c->s.req_start;
	struct head_result hr;
	struct route_input in;
	struct route_decision rd;
	char a[ADDR_STR_LEN];
	int st;

	st = http_head_check(head, c->s.head_len, p->hdrs, p->o.max_headers, &hr);
	if (st) {
		p->rs.parse_errors[hr.err]++;
		pr_debug("client %s: %d %s", format_addr_port(&c->peer, a, sizeof(a)), st,
			 hr.reason);
		client_error(c, st, "shunt: %s", hr.reason);
		return;
	}
	c->s.is_head = c->s.req.method == HTTP_HEAD;
	c->s.is_connect = c->s.req.method == HTTP_CONNECT;
	c->s.idempotent = method_is_idempotent(c->s.req.method);
	c->s.want_upgrade = c->s.req.upgrade || c->s.is_connect;
	c->s.keep_alive = llhttp_should_keep_alive(&c->s.req);
	c->s.body = hr.body;
	c->s.body_left = hr.content_length;

	in.rk = &p->o.rk;
	in.hdrs = p->hdrs;
	in.n_hdrs = hr.n_headers;
	in.orig = &c->orig;
	in.t = p->store->t;
	in.guard = p->store->guard;
	in.now_unix = 0;
	route_decide(&in, &rd, c->s.key, sizeof(c->s.key));
	if (rd.reason == ROUTE_BAD_KEY) {
		p->st.bad_keys++;
		p->rs.parse_errors[HTTP_ERR_ROUTING_KEY]++;
	}
	p->st.requests++;
	c->s.dst = rd.dst;
	c->s.to_sandbox = rd.to_sandbox;
	c->s.fallback = rd.fallback;
	if (rd.to_sandbox)
		p->st.to_sandbox++;
	else
		p->st.to_baseline++;
	c->s.obs.routed = true;
	c->s.obs.req_bytes = c->s.head_len;
	c->state = C_REQUEST;
	if (rd.reason == ROUTE_REFUSED) {
		/* Counted like up_new() counts a refused connect. */
		p->st.dst_refused++;
		no_upstream(c, EDST_REFUSED);
	} else if (!attach_upstream(c, false))
		no_upstream(c, errno);
}

/* The upstream could not be reached, or died before answering. */
static void upstream_failed(struct conn *c, int err)
{
	struct proxy *p = c->p;
	char a[ADDR_STR_LEN], b[ADDR_STR_LEN];
	bool retry = false, reused = c->s.up && c->s.up->reused;

	format_addr_port(&c->s.dst, a, sizeof(a));
	if (c->s.resp_started || c->s.no_retry) {
		/* Nothing can be sent again. */
	} else if (reused && c->s.up_connected && c->s.idempotent && c->s.attempts == 0) {
		/* A pooled connection the server had closed: send the request
		 * once more on a new one. Never a non-idempotent one: the
		 * server may have acted on it before closing. */
		retry = true;
		p->st.retries++;
	} else if (c->s.to_sandbox && c->s.fallback && !c->s.up_connected) {
		/* The sandbox cannot be reached at all: the route asks for the
		 * baseline instead. Nothing was sent anywhere yet. */
		pr_info("sandbox %s for key %s unreachable (%s): falling back to baseline %s", a,
			c->s.key, strerror(err), format_addr_port(&c->orig, b, sizeof(b)));
		c->s.dst = c->orig;
		c->s.to_sandbox = false;
		p->st.fallbacks++;
		retry = true;
	}
	if (c->s.up)
		up_close(c->s.up);
	if (retry) {
		c->s.attempts++;
		c->sent = c->s.req_start;
		if (attach_upstream(c, true))
			return;
		err = errno;
		if ((err == EUPSTREAM_LIMIT || err == EPOD_UPSTREAM_LIMIT || err == EDST_REFUSED) &&
		    !c->s.resp_started) {
			no_upstream(c, err);
			return;
		}
	}
	if (c->s.resp_started) {
		c->s.obs.on_close = RS_UPSTREAM_ERROR;
		client_close(c); /* part of a response went out: all we can do */
		return;
	}
	if (c->s.to_sandbox)
		client_error(c, err == ETIMEDOUT ? 503 : 502,
			     "shunt: sandbox %s for routing key \"%s\" is unreachable: %s", a,
			     c->s.key, strerror(err));
	else
		client_error(c, err == ETIMEDOUT ? 503 : 502,
			     "shunt: upstream %s is unreachable: %s", a, strerror(err));
}

/* Not HTTP: a tunnel to the original destination, bytes unchanged. */
static void start_tunnel(struct conn *c)
{
	char a[ADDR_STR_LEN];

	c->state = C_TUNNEL;
	c->s.dst = c->orig;
	c->p->st.tunnels++;
	if (attach_upstream(c, true))
		return;
	if (errno == EDST_REFUSED)
		pr_warn("tunnel to %s refused: it is %s", format_addr_port(&c->s.dst, a, sizeof(a)),
			dst_class_text(dstguard_check(c->p->store->guard, &c->s.dst)));
	client_close(c);
}

/* A framing error in the request body: refuse it if we still can. */
static void body_error(struct conn *c, const char *reason)
{
	c->p->rs.parse_errors[HTTP_ERR_CHUNK]++;
	if (c->s.resp_started)
		client_close(c); /* no 400 in the middle of a response */
	else
		client_error(c, 400, "shunt: %s", reason);
}

/* Advance over the body bytes read so far; sets req_done at its end. */
static void frame_body(struct conn *c)
{
	uint64_t avail = c->in.end - c->parsed;
	const char *why = NULL;
	bool done = false;
	long n;

	switch (c->s.body) {
	case BODY_NONE:
		c->s.req_done = true;
		return;
	case BODY_LENGTH:
		n = (long)(avail < c->s.body_left ? avail : c->s.body_left);
		c->parsed += (uint32_t)n;
		c->s.obs.req_bytes += (uint64_t)n;
		c->s.body_left -= (uint64_t)n;
		c->s.req_done = c->s.body_left == 0;
		return;
	case BODY_CHUNKED:
		if (!avail)
			return;
		n = chunked_feed(&c->s.ck, c->in.data + c->parsed, avail, &done, &why);
		if (n < 0) {
			body_error(c, why);
			return;
		}
		c->parsed += (uint32_t)n;
		c->s.obs.req_bytes += (uint64_t)n;
		c->s.req_done = done;
		return;
	}
}

/* Parse what was read: the head with llhttp, then the body with our own
 * framing, so that shunt and every upstream agree on where a request
 * ends. */
static void parse_request(struct conn *c)
{
	struct proxy *p = c->p;
	llhttp_errno_t e;
	const char *pos;
	int r;

	if (c->state == C_REQUEST) {
		if (!c->s.req_done)
			frame_body(c);
		return;
	}
	if (c->state != C_HEAD)
		return;

	/* RFC 9112 section 2.2: empty lines before a request are ignored. */
	while (c->parsed == c->s.req_start && c->in.end - c->s.req_start >= 2 &&
	       c->in.data[c->s.req_start] == '\r' && c->in.data[c->s.req_start + 1] == '\n') {
		c->s.req_start += 2;
		c->parsed = c->sent = c->s.req_start;
	}
	if (c->parsed == c->in.end)
		return;
	if (c->parsed == c->s.req_start && c->in.end - c->s.req_start == 1 &&
	    c->in.data[c->s.req_start] == '\r' && !c->eof)
		return; /* a CR whose LF is still on its way */
	if (c->first) {
		r = http_sniff(c->in.data + c->s.req_start, c->in.end - c->s.req_start);
		if (r < 0 && !c->eof)
			return; /* too early to tell */
		if (r <= 0) {
			/* Not HTTP (or the client said all it will say). */
			start_tunnel(c);
			return;
		}
		c->first = false;
	}
	if (c->parsed == c->s.req_start)
		client_set_deadline(c, p->o.head_timeout_ms);
	if (!c->s.obs.t0_ns)
		c->s.obs.t0_ns = rs_now_ns();

	e = llhttp_execute(&c->s.req, c->in.data + c->parsed, c->in.end - c->parsed);
	pos = e == HPE_OK ? c->in.data + c->in.end : llhttp_get_error_pos(&c->s.req);
	c->parsed = (uint32_t)(pos - c->in.data);
	if (e != HPE_OK && e != HPE_PAUSED) {
		p->rs.parse_errors[http_llhttp_err(e, c->in.data + c->s.req_start, pos)]++;
		client_error(c, 400, "shunt: %s", llhttp_get_error_reason(&c->s.req));
		return;
	}
	if (c->parsed - c->s.req_start > p->o.max_head_bytes) {
		p->rs.parse_errors[HTTP_ERR_HEAD_TOO_LARGE]++;
		client_error(c, 431, "shunt: request head larger than %zu bytes",
			     p->o.max_head_bytes);
		return;
	}
	if (!c->s.head_done)
		return;
	c->s.head_len = c->parsed - c->s.req_start;
	route_request(c);
	if (c->state == C_REQUEST)
		frame_body(c);
}

/* After the final response went out in full. */
static void finish_exchange(struct conn *c)
{
	struct upstream *u = c->s.up;
	bool reuse = c->s.keep_alive && llhttp_should_keep_alive(&u->resp) && c->s.req_done &&
		     c->sent == c->parsed && !c->s.want_upgrade;

	req_end(c, c->s.to_sandbox ? RS_DEST_SANDBOX : RS_DEST_BASELINE,
		rs_outcome_of_status(u->resp.status_code), u->resp.status_code);
	c->s.up = NULL;
	if (reuse && !c->p->draining)
		up_release(u);
	else
		up_close(u);
	if (!reuse || c->s.close_state == CLOSE_INJECTED) {
		/* Connection: close (either side), HTTP/1.0 without keep-alive,
		 * a response that came before the request was done, or an
		 * upgrade that was refused. */
		shutdown(c->fd, SHUT_WR);
		client_close(c);
		return;
	}
	client_reset_request(c);
}

/* Room in u->in for more response bytes: what reached the client goes.
 * false when full (the client must read first). */
static bool up_make_room(struct upstream *u)
{
	if (u->in.start && u->in.end == u->in.cap) {
		/* Everything before start reached the client: slide down. */
		memmove(u->in.data, u->in.data + u->in.start, u->in.end - u->in.start);
		u->parsed -= u->in.start;
		u->in.end -= u->in.start;
		u->in.start = 0;
	} else if (u->in.start && u->in.start == u->in.end) {
		u->parsed -= u->in.start;
		u->in.start = u->in.end = 0;
	}
	return buf_reserve(&u->in, BUF_STREAM_MAX) == 0;
}

/* The upstream closed its side. */
static void upstream_eof(struct conn *c, struct upstream *u)
{
	u->eof = true;
	if (c->state == C_TUNNEL)
		return;
	if (!c->s.resp_started && u->in.end == u->parsed) {
		upstream_failed(c, ECONNRESET);
		return;
	}
	/* A response delimited by the connection close ends here. */
	if (!c->s.resp_done)
		llhttp_finish(&u->resp);
	if (!c->s.resp_done) {
		c->s.obs.on_close = RS_UPSTREAM_ERROR;
		client_close(c); /* truncated or invalid response */
	}
}

/* The response switched protocols (101, or 2xx to CONNECT): from here on
 * both directions are opaque. The client's bytes after the request go
 * too. */
static void response_upgraded(struct conn *c, struct upstream *u, int status)
{
	req_end(c, c->s.to_sandbox ? RS_DEST_SANDBOX : RS_DEST_BASELINE,
		rs_outcome_of_status(status), status);
	c->state = C_TUNNEL;
	c->p->st.tunnels++;
	c->s.resp_done = false;
	u->parsed = u->in.end;
	c->parsed = c->in.end;
}

/* Parse the response bytes that arrived. */
static void parse_response(struct conn *c, struct upstream *u)
{
	llhttp_errno_t e = llhttp_execute(&u->resp, u->in.data + u->parsed, u->in.end - u->parsed);
	char a[ADDR_STR_LEN];
	int status;

	if (e == HPE_OK) {
		u->parsed = u->in.end;
		return;
	}
	if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
		u->parsed = (uint32_t)(llhttp_get_error_pos(&u->resp) - u->in.data);
		status = u->resp.status_code;
		if (e == HPE_PAUSED_UPGRADE || status == 101 ||
		    (c->s.is_connect && status >= 200 && status < 300))
			response_upgraded(c, u, status);
		return;
	}
	pr_warn("invalid response from %s: %s", format_addr_port(&u->dst, a, sizeof(a)),
		llhttp_get_error_reason(&u->resp));
	if (u->in.start == 0 && u->parsed == 0 && !c->out.end) {
		c->s.resp_started = false;
		client_error(c, 502, "shunt: invalid response from %s", a);
	} else {
		c->s.obs.on_close = RS_UPSTREAM_ERROR;
		client_close(c);
	}
}

/* Read what the upstream sent and parse it. Returns true on progress. */
static bool read_upstream(struct conn *c)
{
	struct upstream *u = c->s.up;
	ssize_t n;

	if (!u->rd || u->eof || !up_make_room(u))
		return false;
	n = read(u->fd, u->in.data + u->in.end, u->in.cap - u->in.end);
	if (n > 0 && (uint32_t)n < u->in.cap - u->in.end && !u->rdhup)
		u->rd = false; /* short read: drained; the next byte brings an edge */
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			u->rd = false;
			return false;
		}
		if (c->state == C_TUNNEL)
			client_close(c);
		else
			upstream_failed(c, errno);
		return true;
	}
	if (n == 0) {
		upstream_eof(c, u);
		return true;
	}
	c->s.resp_started = true;
	c->s.no_retry = true;
	u->in.end += (uint32_t)n;
	if (c->state == C_TUNNEL)
		u->parsed = u->in.end;
	else if (!c->s.resp_done) /* bytes after the response: never forwarded */
		parse_response(c, u);
	return true;
}

/* Write bytes from b[start, lim) to fd. Returns true on progress; sets
 * *ready false on EAGAIN, returns false with *err on failure. */
static bool write_out(int fd, struct buf *b, uint32_t lim, bool *ready, int *err)
{
	ssize_t n;

	*err = 0;
	if (!*ready || b->start >= lim)
		return false;
	n = send(fd, b->data + b->start, lim - b->start, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			*ready = false;
		else
			*err = errno;
		return false;
	}
	b->start += (uint32_t)n;
	return n > 0;
}

/* Make room in c->in for more request bytes. */
static void client_drop(struct conn *c, uint32_t shift)
{
	struct buf *b = &c->in;

	if (!shift)
		return;
	memmove(b->data, b->data + shift, b->end - shift);
	b->end -= shift;
	c->parsed -= shift;
	c->sent -= shift;
	c->s.req_start = c->s.req_start >= shift ? c->s.req_start - shift : 0;
	b->start = 0;
}

static int client_make_room(struct conn *c)
{
	struct buf *b = &c->in;
	uint32_t limit = BUF_STREAM_MAX;

	if (b->end < b->cap)
		return 0;
	if (c->state == C_HEAD && c->p->o.max_head_bytes + 4096 > limit)
		limit = (uint32_t)c->p->o.max_head_bytes + 4096;
	/* Bytes of earlier requests are done with; the current request's are
	 * kept while it may have to be sent again. */
	if (c->state == C_TUNNEL || c->s.no_retry)
		client_drop(c, c->sent);
	else
		client_drop(c, c->s.req_start < c->sent ? c->s.req_start : c->sent);
	if (b->end < b->cap || buf_reserve(b, limit) == 0)
		return 0;
	if (c->state == C_REQUEST && c->sent > c->s.req_start) {
		/* Full of this request: let go of what was sent, and of any
		 * chance to send it again. */
		c->s.no_retry = true;
		client_drop(c, c->sent);
		return b->end < b->cap ? 0 : -ENOBUFS;
	}
	return -ENOBUFS; /* back-pressure: the upstream must take bytes first */
}

static bool read_client(struct conn *c)
{
	ssize_t n;

	if (!c->rd || c->eof)
		return false;
	/* While a request is in flight, its bytes are all we read: a
	 * pipelined request stays in the kernel until its turn. */
	if (c->state == C_REQUEST && c->s.req_done)
		return false;
	if (client_make_room(c)) {
		if (c->state == C_HEAD) {
			c->p->rs.parse_errors[HTTP_ERR_HEAD_TOO_LARGE]++;
			client_error(c, 431, "shunt: request head larger than %zu bytes",
				     c->p->o.max_head_bytes);
			return true;
		}
		return false;
	}
	n = read(c->fd, c->in.data + c->in.end, c->in.cap - c->in.end);
	if (n > 0 && (uint32_t)n < c->in.cap - c->in.end && !c->rdhup)
		c->rd = false; /* short read: drained; the next byte brings an edge */
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->rd = false;
			return false;
		}
		client_close(c);
		return true;
	}
	if (n == 0) {
		c->eof = true;
		return true;
	}
	c->in.end += (uint32_t)n;
	return true;
}

/* The status code of the response whose status line is [p, eol). The
 * parser has accepted it, so it is "HTTP/x.y NNN ...". */
static int status_of(const char *p, const char *eol)
{
	if (eol - p < 12)
		return 0;
	return (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
}

/* One past the blank line ending the head that starts at pos, or 0. */
static uint32_t head_end(const char *d, uint32_t pos, uint32_t end)
{
	for (uint32_t i = pos; i + 1 < end; i++) {
		if (d[i] != '\n')
			continue;
		if (d[i + 1] == '\n')
			return i + 2;
		if (i + 2 < end && d[i + 1] == '\r' && d[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/*
 * Draining: put "Connection: close" into the final response's head, right
 * after its status line (first, so that clients reading only the first
 * Connection header see it too), so the client opens its next connection
 * to whoever accepts now instead of reusing this one. Interim responses
 * (100 Continue) pass unchanged. Returns how far the response may be
 * forwarded: up to the head still incomplete while the decision waits.
 */
static uint32_t drain_inject(struct conn *c)
{
	static const char hdr[] = "Connection: close\r\n";
	const uint32_t hlen = sizeof(hdr) - 1;
	struct upstream *u = c->s.up;
	uint32_t pos = u->in.start, at;

	for (;;) {
		char *d = u->in.data, *eol;
		int status;

		if (pos >= u->parsed)
			return pos;
		eol = memchr(d + pos, '\n', u->parsed - pos);
		if (!eol)
			return pos; /* status line still incomplete */
		status = status_of(d + pos, eol);
		if (status >= 100 && status < 200 && status != 101) {
			uint32_t e = head_end(d, pos, u->parsed);

			if (!e)
				return pos;
			pos = e;
			continue;
		}
		if (status == 101 || c->s.want_upgrade || c->s.is_connect) {
			c->s.close_state = CLOSE_TOO_LATE; /* becomes a tunnel */
			return u->parsed;
		}
		at = (uint32_t)(eol - d) + 1;
		if (u->in.cap - u->in.end < hlen) {
			char *n = realloc(u->in.data, u->in.cap + hlen);

			if (!n) {
				c->s.close_state = CLOSE_TOO_LATE;
				return u->parsed;
			}
			u->in.data = n;
			u->in.cap += hlen;
			d = n;
		}
		memmove(d + at + hlen, d + at, u->in.end - at);
		memcpy(d + at, hdr, hlen);
		u->in.end += hlen;
		u->parsed += hlen;
		c->s.close_state = CLOSE_INJECTED;
		return u->parsed;
	}
}

/* C_ERROR: write our answer out, then read and drop until the client
 * closes, so our answer is not destroyed by a reset. */
static void pump_error_reply(struct conn *c)
{
	int err;

	if (c->out.start < c->out.end) {
		write_out(c->fd, &c->out, c->out.end, &c->wr, &err);
		if (err) {
			client_close(c);
			return;
		}
		if (c->out.start == c->out.end) {
			shutdown(c->fd, SHUT_WR);
			req_end_now(c);
		}
	}
	while (c->rd && !c->eof) {
		char sink[4096];
		ssize_t n = read(c->fd, sink, sizeof(sink));

		if (n > 0)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			c->eof = true;
		c->rd = false;
	}
	if (c->eof && c->out.start == c->out.end)
		client_close(c);
}

/* Parse what arrived of the request; true when that moved anything. */
static bool pump_parse(struct conn *c)
{
	uint32_t before = c->parsed;
	enum client_state st = c->state;
	bool done = c->s.req_done;

	parse_request(c);
	if (c->dead)
		return false;
	return c->parsed != before || c->state != st || c->s.req_done != done;
}

/* Has u's connect() completed? 1: u is usable, 0: not yet, -1: it failed
 * (the client was answered or closed). *progress is set on a change. */
static int pump_connected(struct conn *c, struct upstream *u, bool *progress)
{
	socklen_t sl = sizeof(int);
	int soerr = 0;

	if (u->state == UP_CONNECTING && u->wr) {
		if (u->conn_err)
			soerr = u->conn_err;
		else if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
			soerr = errno;
		*progress = true;
		if (soerr) {
			if (c->state == C_TUNNEL)
				client_close(c); /* as the app's connect() would */
			else
				upstream_failed(c, soerr);
			return -1;
		}
		u->state = UP_ACTIVE;
		c->s.up_connected = true;
	}
	return u->state == UP_ACTIVE;
}

/* client -> upstream: the parsed request bytes (every byte in a tunnel).
 * false when the upstream failed (handled). */
static bool pump_to_upstream(struct conn *c, struct upstream *u, bool *progress)
{
	struct buf view = c->in;
	uint32_t lim = c->state == C_TUNNEL ? c->in.end : c->parsed;
	int err;

	view.start = c->sent;
	if (write_out(u->fd, &view, lim, &u->wr, &err))
		*progress = true;
	c->sent = view.start;
	if (err) {
		if (c->state == C_TUNNEL)
			client_close(c);
		else
			upstream_failed(c, err);
		*progress = true;
		return false;
	}
	if (c->state == C_TUNNEL && c->eof && c->sent == c->in.end && !c->shut_wr_up) {
		shutdown(u->fd, SHUT_WR);
		c->shut_wr_up = true;
	}
	return true;
}

/* upstream -> client: the parsed response bytes. false when the client
 * connection failed (closed). */
static bool pump_to_client(struct conn *c, struct upstream *u, bool *progress)
{
	uint32_t lim = u->parsed, before = u->in.start;
	int err;

	if (c->p->draining && c->s.close_state == CLOSE_UNDECIDED && c->state == C_REQUEST)
		lim = drain_inject(c);
	if (write_out(c->fd, &u->in, lim, &c->wr, &err))
		*progress = true;
	c->s.obs.resp_bytes += u->in.start - before;
	if (err) {
		client_close(c);
		return false;
	}
	return true;
}

/* A tunnel whose server is done: once the client is too, close. True
 * when c closed. */
static bool tunnel_ended(struct conn *c, struct upstream *u)
{
	if (!u->eof || u->in.start != u->in.end)
		return false;
	shutdown(c->fd, SHUT_WR);
	if (c->eof || c->shut_wr_up) {
		client_close(c);
		return true;
	}
	return false;
}

/* One pass over both directions; true when something moved (false too
 * when c closed). */
static bool pump_once(struct conn *c)
{
	struct upstream *u;
	bool progress = read_client(c);

	if (c->dead)
		return false;
	if (c->state == C_HEAD || (c->state == C_REQUEST && !c->s.req_done)) {
		progress |= pump_parse(c);
		if (c->dead)
			return false;
		if (c->state == C_ERROR)
			return progress;
	}
	u = c->s.up;
	if (!u) {
		if (c->eof && c->state == C_HEAD && c->parsed == c->in.end) {
			client_close(c); /* client went away between requests */
			return false;
		}
		return progress;
	}
	if (pump_connected(c, u, &progress) <= 0)
		return progress;
	if (!pump_to_upstream(c, u, &progress))
		return progress;
	progress |= read_upstream(c);
	if (c->dead || c->s.up != u || c->state == C_ERROR)
		return progress;
	if (!pump_to_client(c, u, &progress))
		return false;
	if (c->state == C_TUNNEL)
		return tunnel_ended(c, u) ? false : progress;
	if (c->s.resp_done && u->in.start == u->parsed) {
		finish_exchange(c);
		progress = true;
	}
	if (progress && !c->dead && c->s.up && c->s.up->state == UP_ACTIVE)
		/* Bytes moved: the inactivity clock starts over. */
		client_set_deadline(c, c->state == C_TUNNEL ? c->p->o.tunnel_timeout_ms
							    : c->p->o.idle_timeout_ms);
	return progress;
}

/* Move every byte that can move, until nothing does. */
static void client_pump(struct conn *c)
{
	bool progress;

	do {
		if (c->dead)
			return;
		if (c->state == C_ERROR) {
			pump_error_reply(c);
			return;
		}
		progress = pump_once(c);
	} while (progress);

	if (!c->dead && c->eof && c->state == C_REQUEST && !c->s.req_done && c->s.up &&
	    c->sent == c->in.end) {
		/* The client stopped mid-request: nothing more can come. */
		client_close(c);
	}
}

static void client_event(struct ev_handler *h, uint32_t events)
{
	struct conn *c = (struct conn *)h;

	if (c->dead)
		return;
	if (events & EPOLLERR) {
		/* Reset by the client: nothing more can be said to it. */
		client_close(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rd = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rdhup = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->wr = true;
	client_pump(c);
}

/* ------------------------------------------------------------- accept */

static void accept_one(struct proxy *p, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct shunt_orig orig;
	struct shunt_conn_src src;
	struct conn *c;
	char a[ADDR_STR_LEN];

	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->h.fn = client_event;
	c->p = p;
	c->fd = fd;
	c->first = true;
	p->st.accepted++;
	p->st.active++;
	c->next = p->clients;
	if (p->clients)
		p->clients->prev = c;
	p->clients = c;

	/* Find the destination the application asked for. The sockops
	 * program filed it under the client's address before the handshake
	 * completed, so it is there by the time accept() returns. */
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) ||
	    addr_from_sockaddr((struct sockaddr *)&ss, &c->peer) ||
	    map_take(p, p->bpf->conns_fd, &c->peer, &orig)) {
		p->st.unknown++;
		pr_debug("connection from %s was not captured by shunt: closing",
			 format_addr_port(&c->peer, a, sizeof(a)));
		client_close(c);
		return;
	}
	c->orig = orig.dst;
	if (p->track_pods) {
		/* Captured by an agent before us (a takeover) or evicted:
		 * served, but not counted against a pod. */
		if (map_take(p, p->bpf->conn_src_fd, &c->peer, &src))
			p->st.pod_unknown++;
		else
			pod_attach(c, src.netns);
	}
	client_reset_request(c);
	if (loop_add(p->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->h)) {
		pr_warn("epoll add: %s", strerror(errno));
		client_close(c);
		return;
	}
	/*
	 * At a limit the kernel stops capturing (fail open: the connections
	 * go where the applications were going). Connections captured before
	 * it heard are here already, at most a listen backlog of them: they
	 * are served like any other, since the only alternative left would be
	 * to refuse them.
	 */
	if (p->o.max_conns && p->st.active >= p->o.max_conns) {
		if (p->st.active > p->o.max_conns)
			p->st.over_limit++;
		if (!p->conn_limited)
			conn_limit_set(p, true);
	}
}

static void listener_event(struct ev_handler *h, uint32_t events)
{
	struct listener *l = (struct listener *)h;

	/* Edge-triggered: drain the whole backlog, or the connections left
	 * in it wait for the next one to arrive. */
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && l->p->spare_fd >= 0) {
				/* Out of descriptors: refuse the oldest waiting
				 * connection with a close instead of leaving the
				 * backlog to stall until the next edge. */
				close(l->p->spare_fd);
				fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0)
					close(fd);
				l->p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				l->p->st.refused++;
				pr_warn("out of file descriptors: refused a connection");
				if (fd >= 0)
					continue;
				return;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pr_warn("accept: %s", strerror(errno));
			return;
		}
		accept_one(l->p, fd);
	}
}

/* An inherited listening socket bound to exactly a, or -1. */
static int take_inherited(struct proxy_opts *o, const struct shunt_addr *a)
{
	for (int i = 0; i < o->n_inherited; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct shunt_addr got;
		int fd = o->inherited[i];

		if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) ||
		    addr_from_sockaddr((struct sockaddr *)&ss, &got) ||
		    memcmp(&got, a, sizeof(got)))
			continue;
		o->inherited[i] = -1;
		return fd;
	}
	return -1;
}

static int listen_on(struct proxy *p, const struct shunt_addr *a)
{
	struct listener *l = &p->listeners[p->n_listeners];
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(a, &ss);
	char s[ADDR_STR_LEN];
	int one = 1, err;

	format_addr_port(a, s, sizeof(s));
	l->fd = take_inherited(&p->o, a);
	if (l->fd >= 0) {
		/* Handed over by the agent before us, with its backlog: not
		 * one waiting connection is lost. */
		fcntl(l->fd, F_SETFL, fcntl(l->fd, F_GETFL) | O_NONBLOCK);
		fcntl(l->fd, F_SETFD, FD_CLOEXEC);
		pr_info("proxy listening on %s (taken over)", s);
		goto registered;
	}
	l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		return -errno;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Accepted sockets inherit TCP_NODELAY from the listener. */
	setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* An agent that just stopped may hold the port for its last
	 * moments of draining: wait for it a little. */
	for (int tries = 0;; tries++) {
		if (!bind(l->fd, (struct sockaddr *)&ss, sl))
			break;
		err = -errno;
		if (err != -EADDRINUSE || tries >= 50) {
			pr_err("proxy listen on %s: %s", s, strerror(-err));
			close(l->fd);
			return err;
		}
		if (tries == 0)
			pr_info("proxy address %s in use; waiting up to 5 s for it", s);
		usleep(100 * 1000);
	}
	if (listen(l->fd, 4096)) {
		err = -errno;
		pr_err("proxy listen on %s: %s", s, strerror(-err));
		close(l->fd);
		return err;
	}
	pr_info("proxy listening on %s", s);
registered:
	l->h.fn = listener_event;
	l->p = p;
	l->family = a->family;
	err = loop_add(p->loop, l->fd, EPOLLIN | EPOLLET, &l->h);
	if (!err)
		err = shunt_bpf_set_listener(p->bpf,
					     a->family == SHUNT_FAMILY_V4 ? SHUNT_LISTENER_V4
									  : SHUNT_LISTENER_V6,
					     l->fd);
	if (err) {
		pr_err("register proxy listener %s: %s", s, strerror(-err));
		close(l->fd);
		return err;
	}
	p->n_listeners++;
	if (l->fd >= 0 && !p->draining)
		listener_event(&l->h, EPOLLIN); /* a handed-over backlog has no new edge */
	return 0;
}

int proxy_start(struct proxy **out, const struct proxy_opts *o, struct loop *loop,
		struct store *store, struct shunt_bpf *bpf)
{
	struct proxy *p = calloc(1, sizeof(*p));
	int err = 0;

	if (!p)
		return -ENOMEM;
	p->o = *o;
	p->loop = loop;
	p->store = store;
	p->bpf = bpf;
	p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	reqstats_init(&p->rs, SHUNT_MAX_SERVICES);
	p->hdrs = calloc(o->max_headers ? o->max_headers : 1, sizeof(*p->hdrs));
	if (!p->hdrs) {
		free(p);
		return -ENOMEM;
	}
	llhttp_settings_init(&p->req_settings);
	p->req_settings.on_headers_complete = on_req_headers;
	llhttp_settings_init(&p->resp_settings);
	p->resp_settings.on_headers_complete = on_resp_headers;
	p->resp_settings.on_message_complete = on_resp_complete;

	p->track_pods = bpf->record_src && (o->max_conns_per_pod || o->max_upstream_per_pod);
	/* Limits an agent before us left in the kernel are not ours. */
	limits_reconcile(p);
	for (int i = 0; i < o->n_listen && !err; i++)
		err = listen_on(p, &o->listen[i]);
	for (int i = 0; i < p->o.n_inherited; i++)
		if (p->o.inherited[i] >= 0) {
			pr_warn("a handed-over listener matches no --proxy-addr: closing it");
			close(p->o.inherited[i]);
			p->o.inherited[i] = -1;
		}
	if (err) {
		proxy_stop(p);
		return err;
	}
	*out = p;
	return 0;
}

static void close_listeners(struct proxy *p)
{
	for (int i = 0; i < p->n_listeners; i++) {
		loop_del(p->loop, p->listeners[i].fd);
		close(p->listeners[i].fd);
	}
	p->n_listeners = 0;
	p->listen_close_at = 0;
}

int proxy_listener_fds(struct proxy *p, int fds[2])
{
	for (int i = 0; i < p->n_listeners; i++)
		fds[i] = p->listeners[i].fd;
	return p->n_listeners;
}

void proxy_drain(struct proxy *p, uint64_t timeout_ms, bool handed_over)
{
	if (p->draining)
		return;
	p->draining = true;
	p->drain_deadline = p->loop->now_ms + timeout_ms;
	if (handed_over) {
		/* The successor accepts from these sockets now (it holds its
		 * own descriptors for them); the sockmap keeps them. */
		close_listeners(p);
	} else {
		/* Empty the sockmap slots first: new connect()s fail open from
		 * here on. Connections already on their way to the listener
		 * are still accepted for a moment, then the listeners close. */
		for (int i = 0; i < p->n_listeners; i++)
			shunt_bpf_set_listener(p->bpf,
					       p->listeners[i].family == SHUNT_FAMILY_V4
						       ? SHUNT_LISTENER_V4
						       : SHUNT_LISTENER_V6,
					       -1);
		p->listen_close_at = p->loop->now_ms + LISTEN_GRACE_MS;
	}
	pool_sweep(&p->pool, p->loop->now_ms, POOL_IDLE_MS, true, up_close_idle);
	/* A response whose head already went out cannot say "close" any
	 * more: that client is told on its next one. */
	for (struct conn *c = p->clients; c; c = c->next)
		if (c->state == C_REQUEST && c->s.resp_started)
			c->s.close_state = CLOSE_TOO_LATE;
}

bool proxy_drained(struct proxy *p)
{
	return p->draining && !p->clients && !p->n_listeners;
}

void proxy_stop(struct proxy *p)
{
	if (!p)
		return;
	close_listeners(p); /* a closed socket leaves the sockmap: fail open */
	while (p->clients)
		client_close(p->clients);
	pool_sweep(&p->pool, p->loop->now_ms, POOL_IDLE_MS, true, up_close_idle);
	pool_free(&p->pool);
	proxy_reap(p);
	if (p->spare_fd >= 0)
		close(p->spare_fd);
	/* Every client is gone, and with them their pods and holds. */
	holds_sweep(p);
	hmap_free(&p->pods);
	hmap_free(&p->holds);
	reqstats_free(&p->rs);
	free(p->hdrs);
	free(p);
}

/* A deadline passed for c: what that means depends on where it is. */
static void client_expired(struct conn *c)
{
	struct proxy *p = c->p;
	char a[ADDR_STR_LEN];

	switch (c->state) {
	case C_HEAD:
		p->st.timeouts++;
		if (c->parsed == c->s.req_start && c->in.end == c->s.req_start)
			client_close(c); /* idle keep-alive connection */
		else
			client_error(c, 408, "shunt: request head not received in time");
		break;
	case C_REQUEST:
		if (c->s.up && c->s.up->state == UP_CONNECTING) {
			upstream_failed(c, ETIMEDOUT);
			break;
		}
		p->st.timeouts++;
		if (c->s.resp_started) {
			c->s.obs.on_close = RS_TIMEOUT;
			client_close(c); /* a response stalled half-way */
		} else if (!c->s.req_done)
			client_error(c, 408, "shunt: request body not received in time");
		else
			client_error(c, 504, "shunt: %s %s did not answer in time",
				     c->s.to_sandbox ? "sandbox" : "upstream",
				     format_addr_port(&c->s.dst, a, sizeof(a)));
		break;
	case C_TUNNEL:
		if (!c->s.up || c->s.up->state != UP_CONNECTING)
			p->st.timeouts++;
		client_close(c);
		break;
	case C_ERROR:
		client_close(c); /* the client did not close after our answer */
		break;
	}
	if (!c->dead)
		client_pump(c);
}

void proxy_tick(struct proxy *p)
{
	uint64_t now = p->loop->now_ms;
	struct conn *c, *next;

	if (p->listen_close_at && now >= p->listen_close_at)
		close_listeners(p);
	/* proxy_tick runs after every loop iteration: these, every 250 ms. */
	if (now >= p->limit_sync_next) {
		p->limit_sync_next = now + LIMIT_SYNC_MS;
		limits_reconcile(p);
		holds_sweep(p);
	}
	if (p->draining && now >= p->drain_deadline) {
		if (p->clients)
			pr_warn("drain timeout: closing %llu connection(s) still open",
				(unsigned long long)p->st.active);
		while (p->clients)
			client_close(p->clients);
	}
	for (c = p->clients; c; c = next) {
		next = c->next;
		if (c->deadline && c->deadline <= now)
			client_expired(c);
	}
	pool_sweep(&p->pool, now, POOL_IDLE_MS, false, up_close_idle);
}

void proxy_reap(struct proxy *p)
{
	while (p->dead_clients) {
		struct conn *c = p->dead_clients;

		p->dead_clients = c->next;
		free(c);
	}
	while (p->dead_ups) {
		struct upstream *u = p->dead_ups;

		p->dead_ups = u->dead_next;
		free(u);
	}
}

const struct proxy_stats *proxy_stats(const struct proxy *p)
{
	return &p->st;
}

const struct reqstats *proxy_reqstats(const struct proxy *p)
{
	return &p->rs;
}

int proxy_listening(const struct proxy *p)
{
	return p->n_listeners;
}
