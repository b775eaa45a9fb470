// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Inferred propagation for a pod served in-pod (infer.h has the rule).
 *
 * Inbound: the sk_lookup program (bpf/infer.bpf.c), attached to the pod's
 * network namespace, hands the pod's incoming connections to the ports
 * set here to our listeners in that namespace (127.0.0.1:0, [::1]:0).
 * Each is relayed to the address it was going to, over the pod's
 * loopback (which the program lets pass), as an HTTP/1 connection whose
 * requests are never steered: only their keys and lifetimes are noted.
 * The app sees its callers as the pod's own address.
 *
 * Outbound: the pod's connections to steered services already reach
 * its in-pod listeners; a request without a key asks the rule, and with
 * inference on and a key decided, gets a baggage line of its own
 * (INFER_BAGGAGE_PROPERTY marks it) and is routed by it.
 *
 * Fail open: the program passes everything when the heartbeat worker 0
 * writes every SHUNT_INFER_BEAT_MS is older than SHUNT_INFER_STALE_MS (a
 * hung agent); a dead agent's link and listeners go with it.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <bpf/bpf.h>

#include "core/log.h"
#include "core/util.h"
#include "kernel/bpf.h"
#include "proxy/h2.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"
#include "state/dstguard.h"

static void beat(struct proxy *p)
{
	struct shunt_infer_kern k;

	if (!shunt_bpf_infer(p->sh->bpf, &k))
		*k.heartbeat_ns = rs_now_ns();
}

static bool ours(const uint64_t *inodes, size_t n, uint64_t ino)
{
	for (size_t i = 0; i < n; i++)
		if (inodes[i] == ino)
			return true;
	return false;
}

static int pod_addrs(struct proxy *p, int nsfd, struct shunt_addr *out, int max);

/* How /proc/net/tcp{,6} show 127.77.0.1 (INFER_RELAY_SRC4) and ::1:
 * each 32-bit word in host order (little-endian here). */
#define RELAY_SRC4_PROC "01004D7F"
#define LOOPBACK6_PROC	"00000000000000000000000001000000"
#define V4MAPPED_PROC	"0000000000000000FFFF0000" /* ::ffff:0:0/96, then the IPv4 word */

struct tcp_line {
	char la[40], ra[40];
	unsigned lport, rport, st;
	unsigned long long ino;
};

/* "sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode" */
static bool tcp_line_parse(const char *line, struct tcp_line *t)
{
	return sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%x %x %*s %*s %*s %*s %*s %llu",
		      t->la, &t->lport, t->ra, &t->rport, &t->st, &t->ino) == 6;
}

/* The app's end of one of our relays: from 127.77.0.1 (IPv4), or from the
 * pod's own IPv6 address to itself. */
static bool relay_end(const struct tcp_line *t)
{
	if (strlen(t->ra) == 8)
		return !strcmp(t->ra, RELAY_SRC4_PROC);
	/* An IPv4 relay accepted by a dual-stack socket shows v4-mapped. */
	if (!strncasecmp(t->ra, V4MAPPED_PROC, 24))
		return !strcmp(t->ra + 24, RELAY_SRC4_PROC);
	return !strcmp(t->la, t->ra) && strcmp(t->la, LOOPBACK6_PROC);
}

/* Connections accepted by a listening socket of the pod (any port, any
 * address: loopback and the pod's own too), established or half-closed,
 * that are neither ours (inodes) nor the app's end of our relays. Our
 * listeners (lino: the in-pod ones, whose port no app serves, then the
 * inference ones) do not count. A connection not accepted yet (inode 0:
 * in an accept queue, ours or the app's) carries no work yet. */
static size_t untracked_count(FILE *f[2], const uint64_t *inodes, size_t n_inodes,
			      const uint64_t lino[4])
{
	uint8_t *listening = calloc(65536 / 8, 1);
	char line[512];
	struct tcp_line t;
	size_t n = 0;

	if (!listening)
		return 1;
	for (int i = 0; i < 2; i++)
		while (f[i] && fgets(line, sizeof(line), f[i])) {
			if (!tcp_line_parse(line, &t) || t.st != 0x0A /* LISTEN */ ||
			    t.lport >= 65536)
				continue;
			if (t.ino == lino[0] || t.ino == lino[1] || t.ino == lino[2] ||
			    t.ino == lino[3])
				continue;
			listening[t.lport / 8] |= (uint8_t)(1U << (t.lport % 8));
		}
	for (int i = 0; i < 2; i++) {
		if (!f[i])
			continue;
		rewind(f[i]);
		while (fgets(line, sizeof(line), f[i]))
			if (tcp_line_parse(line, &t) &&
			    (t.st == 0x01 /* ESTABLISHED */ || t.st == 0x08 /* CLOSE_WAIT */) &&
			    t.lport < 65536 && (listening[t.lport / 8] & (1U << (t.lport % 8))) &&
			    t.ino && !relay_end(&t) && !ours(inodes, n_inodes, t.ino))
				n++;
	}
	free(listening);
	return n;
}

/* Addresses of the pod now that its ports map does not cover (added since
 * inference began, or beyond INFER_MAX_ADDRS). */
static size_t uncovered_addrs(struct proxy *p, struct inpod *pod)
{
	const struct inpod_infer *pi = pod->infer;
	struct shunt_addr now[INFER_MAX_ADDRS];
	int n = pod_addrs(p, pod->pool.nsfd, now, INFER_MAX_ADDRS);
	size_t missing = n == INFER_MAX_ADDRS ? 1 : 0; /* maybe more */

	if (n < 0)
		return 1;
	for (int a = 0; a < n; a++) {
		bool found = false;

		for (int k = 0; k < pi->n_keys && !found; k++)
			found = pi->keys[k].family == now[a].family &&
				!memcmp(pi->keys[k].addr, now[a].addr, sizeof(now[a].addr));
		missing += !found;
	}
	return missing;
}

/* U: work the pod takes in that bypasses shunt: connections accepted by
 * any of its listening sockets (open before inference began, let through
 * while the agent was stalled, to a port not listed, from the pod itself
 * or over loopback), read from the pod's /proc/net/tcp{,6}, and addresses
 * the program does not cover. Unknown counts as one. */
static void untracked_scan(struct proxy *p, struct inpod *pod)
{
	struct inpod_infer *pi = pod->infer;
	static const char *const files[] = {"/proc/thread-self/net/tcp",
					    "/proc/thread-self/net/tcp6"};
	FILE *f[2] = {NULL, NULL};
	uint64_t *inodes, lino[4];
	size_t n = 0, cap = pod->conns + 1, found = 0;
	struct stat sb;

	/* Ours: every connection the pod's listeners of shunt accepted, and
	 * those listeners. */
	for (int i = 0; i < 2; i++) {
		lino[i] = pod->l[i].fd >= 0 && !fstat(pod->l[i].fd, &sb) ? (uint64_t)sb.st_ino : 0;
		lino[2 + i] =
			pi->l[i].fd >= 0 && !fstat(pi->l[i].fd, &sb) ? (uint64_t)sb.st_ino : 0;
	}
	inodes = calloc(cap, sizeof(*inodes));
	for (struct conn *c = p->clients; c && inodes; c = c->next)
		if (c->inpod == pod && n < cap && !fstat(c->fd, &sb))
			inodes[n++] = (uint64_t)sb.st_ino;
	/* The files show the namespace they were opened in. */
	if (inodes && !setns(pod->pool.nsfd, CLONE_NEWNET)) {
		for (int i = 0; i < 2; i++)
			f[i] = fopen(files[i], "re");
		if (setns(p->host_nsfd, CLONE_NEWNET)) {
			pr_err("inference: cannot return to the agent's network namespace: %s",
			       strerror(errno));
			abort(); /* as inpod_socket() */
		}
	}
	found = f[0] ? untracked_count(f, inodes, n, lino) : 1; /* cannot tell: the worst */
	for (int i = 0; i < 2; i++)
		if (f[i])
			fclose(f[i]);
	found += uncovered_addrs(p, pod);
	/* Work that bypassed shunt ended (or its connection did): its handler
	 * may go on, unseen, as after an abort (A). */
	if (found < pi->rule.untracked)
		infer_hold(&pi->rule, rs_now_ns());
	if (found != pi->rule.untracked && (found || pi->rule.untracked))
		pr_info("inference: pod '%s': %zu inbound connection(s) or address(es) bypass "
			"shunt%s",
			pod->name, found, found ? ": no key is inferred until they are gone" : "");
	pi->rule.untracked = found;
	free(inodes);
}

static void rescan(struct infer_pod *ip)
{
	struct inpod_infer *pi =
		(struct inpod_infer *)((char *)ip - offsetof(struct inpod_infer, rule));

	untracked_scan(pi->pod->p, pi->pod);
}

/* The program let connections through since the last look (a stalled
 * agent: its I/O is handled before its timers): look for them now. */
static void stale_check(struct proxy *p)
{
	struct shunt_infer_kern k;

	if (shunt_bpf_infer(p->sh->bpf, &k) || k.stats[SHUNT_INFER_STALE] == p->infer_stale_seen)
		return;
	p->infer_stale_seen = k.stats[SHUNT_INFER_STALE];
	/* Connections let through, maybe come and gone: as after an abort. */
	for (struct inpod *o = p->inpods; o; o = o->next)
		if (o->infer && o->infer->link_fd >= 0)
			infer_hold(&o->infer->rule, rs_now_ns());
	p->infer_beats = 0;
	for (struct inpod *o = p->inpods; o; o = o->next)
		if (o->infer && o->infer->link_fd >= 0)
			untracked_scan(p, o);
}

/* Every SHUNT_INFER_BEAT_MS: the heartbeat; every second, and at once
 * after the program let connections pass (a stalled agent), the scan. */
static void beat_fired(struct timer *t)
{
	struct proxy *p = (struct proxy *)((char *)t - offsetof(struct proxy, infer_beat));
	struct shunt_infer_kern k;
	bool stale = false;

	beat(p);
	if (!shunt_bpf_infer(p->sh->bpf, &k))
		stale = k.stats[SHUNT_INFER_STALE] != p->infer_stale_seen;
	if (stale)
		stale_check(p); /* the hold and the scan */
	else if (++p->infer_beats * SHUNT_INFER_BEAT_MS >= 1000) {
		p->infer_beats = 0;
		for (struct inpod *pod = p->inpods; pod; pod = pod->next)
			if (pod->infer && pod->infer->link_fd >= 0)
				untracked_scan(p, pod);
	}
	if (p->infer_pods)
		loop_timer_in(p->loop, t, SHUNT_INFER_BEAT_MS);
}

void infer_init(struct proxy *p)
{
	timer_init(&p->infer_beat, beat_fired);
}

/* Has the app written bytes of e's response that we have not read? Then
 * the request is ending: a call the app makes now may follow it. */
static bool inbound_finishing(const struct infer_in *e)
{
	int fd = -1, n = 0;

	if (e->h2) {
		/* The session to the app carries other streams too: any byte
		 * unread counts (refusing more, never less). */
		const struct h2s *s =
			(const struct h2s *)((const char *)e - offsetof(struct h2s, inf));

		fd = s->up ? s->up->io.fd : -1;
	} else {
		const struct conn *c =
			(const struct conn *)((const char *)e - offsetof(struct conn, s.inf));

		/* Some of a response came (an interim one, or part of a
		 * head): in doubt, ending. */
		if (c->s.resp_started)
			return true;
		fd = c->s.up ? c->s.up->fd : -1;
	}
	return fd >= 0 && !ioctl(fd, FIONREAD, &n) && n > 0;
}

/* A connection the program handed to one of pod's inbound listeners: its
 * local address is where it was going. */
static void in_take(struct proxy *p, int fd, void *ctx)
{
	struct inpod *pod = ctx;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct conn *c = conn_new(p, fd);

	if (!c)
		return;
	if (conn_peer(c) || getsockname(c->fd, (struct sockaddr *)&ss, &sl) ||
	    addr_from_sockaddr((struct sockaddr *)&ss, &c->orig) ||
	    dst_classify(&c->orig) == DST_LOOPBACK) {
		/* Dialled on the pod's loopback, not handed over. */
		p->st.unknown++;
		client_close(c);
		return;
	}
	c->inpod = pod;
	c->inbound = true;
	pod->conns++;
	pod->infer->accepted++;
	p->st.inpod_active++;
	conn_begin(c);
}

static void in_accept(struct ev_handler *h, uint32_t events)
{
	struct inpod_listener *l = (struct inpod_listener *)h;

	(void)events;
	accept_backlog(l->pod->p, l->fd, in_take, l->pod);
}

/* The pod's addresses (not loopback, not link-local), read in its
 * namespace: how many, or -errno. */
static int pod_addrs(struct proxy *p, int nsfd, struct shunt_addr *out, int max)
{
	struct ifaddrs *all, *i;
	int n = 0, err = 0;

	if (setns(nsfd, CLONE_NEWNET))
		return -errno;
	if (getifaddrs(&all))
		err = -errno;
	if (setns(p->host_nsfd, CLONE_NEWNET)) {
		pr_err("inference: cannot return to the agent's network namespace: %s",
		       strerror(errno));
		abort(); /* as inpod_socket(): never make sockets in the pod's */
	}
	if (err)
		return err;
	for (i = all; i && n < max; i = i->ifa_next) {
		struct shunt_addr a;
		bool dup = false;

		if (!i->ifa_addr || (i->ifa_flags & IFF_LOOPBACK) ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6) ||
		    addr_from_sockaddr(i->ifa_addr, &a))
			continue;
		if (a.family == SHUNT_FAMILY_V6 && a.addr[0] == 0xfe && (a.addr[1] & 0xc0) == 0x80)
			continue; /* fe80::/10 */
		for (int k = 0; k < n; k++)
			dup = dup || !memcmp(out[k].addr, a.addr, sizeof(a.addr));
		if (!dup)
			out[n++] = a;
	}
	freeifaddrs(all);
	return n;
}

static void listeners_close(struct proxy *p, struct inpod_infer *pi)
{
	for (int i = 0; i < 2; i++)
		if (pi->l[i].fd >= 0) {
			loop_del(p->loop, pi->l[i].fd);
			close(pi->l[i].fd);
			pi->l[i].fd = -1;
		}
}

void inpod_infer_stop(struct proxy *p, struct inpod *pod)
{
	struct inpod_infer *pi = pod->infer;
	struct shunt_infer_kern k;

	if (!pi)
		return;
	pi->rule.mode = INFER_OFF;
	/* Only entries still ours: an address of a pod gone may be another
	 * pod's now, its entry filed since. */
	for (int i = 0; i < pi->n_keys && !shunt_bpf_infer(p->sh->bpf, &k); i++) {
		uint32_t slot, mine = 2 * pod->slot + (pi->keys[i].family == SHUNT_FAMILY_V6);

		if (!bpf_map_lookup_elem(k.ports_fd, &pi->keys[i], &slot) && slot == mine)
			bpf_map_delete_elem(k.ports_fd, &pi->keys[i]);
	}
	pi->n_keys = 0;
	if (pi->link_fd >= 0) {
		close(pi->link_fd);
		pi->link_fd = -1;
		if (!--p->infer_pods)
			loop_timer_cancel(p->loop, &p->infer_beat);
	}
	listeners_close(p, pi);
}

void inpod_infer_free(struct inpod *pod)
{
	if (!pod->infer)
		return;
	inpod_infer_stop(pod->p, pod);
	infer_pod_free(&pod->infer->rule);
	free(pod->infer);
	pod->infer = NULL;
}

/* Listeners, keys and link for pod's ports: 0, or -errno with msg
 * (inpod_infer_stop undoes what was done). */
static int infer_start(struct proxy *p, struct inpod *pod, const struct shunt_infer_kern *k,
		       char *msg, size_t msglen)
{
	struct inpod_infer *pi = pod->infer;
	struct shunt_addr addrs[INFER_MAX_ADDRS];
	int n, err;

	for (int i = 0; i < 2; i++) {
		struct shunt_addr a = {.family = i ? SHUNT_FAMILY_V6 : SHUNT_FAMILY_V4};
		uint32_t slot = 2 * pod->slot + (uint32_t)i;
		uint64_t v;
		int fd;

		if (i)
			a.addr[15] = 1;
		else {
			a.addr[0] = 127;
			a.addr[3] = 1;
		}
		fd = inpod_listen(p, pod->pool.nsfd, &a, msg, msglen);
		if (fd < 0) {
			if (i && (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT))
				continue; /* no IPv6 in the pod: its IPv6 passes */
			return fd;
		}
		pi->l[i].fd = fd;
		pi->l[i].pod = pod;
		pi->l[i].h.fn = in_accept;
		v = (uint64_t)fd;
		if (bpf_map_update_elem(k->socks_fd, &slot, &v, BPF_ANY) ||
		    loop_add(p->loop, fd, EPOLLIN | EPOLLET, &pi->l[i].h)) {
			err = -errno;
			snprintf(msg, msglen, "register the inbound listener: %s", strerror(-err));
			return err;
		}
	}
	n = pod_addrs(p, pod->pool.nsfd, addrs, INFER_MAX_ADDRS);
	if (n <= 0) {
		snprintf(msg, msglen, "the pod's addresses: %s",
			 n ? strerror(-n) : "none but loopback and link-local");
		return n ? n : -EADDRNOTAVAIL;
	}
	for (int a = 0; a < n; a++)
		for (int i = 0; i < pi->n_ports; i++) {
			struct shunt_infer_port_key *key = &pi->keys[pi->n_keys];
			int fam = addrs[a].family == SHUNT_FAMILY_V6;
			uint32_t slot = 2 * pod->slot + (uint32_t)fam;

			if (pi->l[fam].fd < 0)
				continue;
			memset(key, 0, sizeof(*key));
			memcpy(key->addr, addrs[a].addr, sizeof(key->addr));
			key->port = pi->ports[i];
			key->family = addrs[a].family;
			if (bpf_map_update_elem(k->ports_fd, key, &slot, BPF_ANY)) {
				err = -errno;
				snprintf(msg, msglen, "shunt_infer_ports: %s", strerror(-err));
				return err;
			}
			pi->n_keys++;
		}
	/* What was learnt before no longer holds: the pod was not watched. */
	infer_pod_relearn(&pi->rule, rs_now_ns());
	/* Fresh before the first connection is handed over. */
	beat(p);
	pi->link_fd = bpf_link_create(k->prog_fd, pod->pool.nsfd, BPF_SK_LOOKUP, NULL);
	if (pi->link_fd < 0) {
		err = -errno;
		pi->link_fd = -1;
		snprintf(msg, msglen, "attach sk_lookup to the pod's network namespace: %s",
			 strerror(-err));
		return err;
	}
	if (!p->infer_pods++)
		loop_timer_in(p->loop, &p->infer_beat, SHUNT_INFER_BEAT_MS);
	untracked_scan(p, pod); /* what was open before */
	return 0;
}

static bool same_ports(const struct inpod_infer *pi, const uint16_t *ports, int n)
{
	if (pi->n_ports != n)
		return false;
	for (int i = 0; i < n; i++)
		if (pi->ports[i] != ports[i])
			return false;
	return true;
}

int proxy_infer_set(struct proxy *p, const char *name, enum infer_mode mode, const uint16_t *ports,
		    int n_ports, char *msg, size_t msglen)
{
	struct inpod *pod = inpod_find(p, name);
	struct shunt_infer_kern k;
	struct inpod_infer *pi;
	int err;

	if (!pod) {
		snprintf(msg, msglen,
			 "pod '%s' is not served in-pod (inference needs its sockets in the pod: "
			 "shuntctl pod add NAME --netns PATH)",
			 name);
		return -ENOENT;
	}
	if (mode == INFER_OFF) {
		inpod_infer_stop(p, pod);
		pr_info("inference: off for pod '%s'", name);
		return 0;
	}
	if (!p->o.rk.baggage_header[0]) {
		snprintf(msg, msglen,
			 "inference adds a baggage member, and the baggage header is "
			 "off (--baggage-header)");
		return -EINVAL;
	}
	if (shunt_bpf_infer(p->sh->bpf, &k)) {
		snprintf(msg, msglen,
			 "this kernel did not load the sk_lookup program (Linux 5.17)");
		return -EOPNOTSUPP;
	}
	if (n_ports < 1 || n_ports > INFER_MAX_PORTS) {
		snprintf(msg, msglen, "1 to %d inbound ports, the ones the app serves HTTP on",
			 INFER_MAX_PORTS);
		return -EINVAL;
	}
	pi = pod->infer;
	if (pi && pi->link_fd >= 0 && same_ports(pi, ports, n_ports)) {
		infer_pod_set_mode(&pi->rule, mode, rs_now_ns());
		pr_info("inference: %s for pod '%s'", infer_mode_names[mode], name);
		return 0;
	}
	if (!pi) {
		pi = calloc(1, sizeof(*pi));
		if (!pi) {
			snprintf(msg, msglen, "out of memory");
			return -ENOMEM;
		}
		infer_pod_init(&pi->rule, INFER_OFF, rs_now_ns());
		pi->rule.learn_idle_ns = p->o.infer_learn_idle_ms * 1000000ULL;
		pi->rule.finishing = inbound_finishing;
		pi->rule.rescan = rescan;
		pi->pod = pod;
		pi->l[0].fd = pi->l[1].fd = pi->link_fd = -1;
		pod->infer = pi;
	}
	inpod_infer_stop(p, pod);
	memcpy(pi->ports, ports, (size_t)n_ports * sizeof(*ports));
	pi->n_ports = n_ports;
	err = infer_start(p, pod, &k, msg, msglen);
	if (err) {
		inpod_infer_stop(p, pod);
		return err;
	}
	infer_pod_set_mode(&pi->rule, mode, rs_now_ns());
	pr_info("inference: %s for pod '%s' (%d key(s) in shunt_infer_ports)",
		infer_mode_names[mode], name, pi->n_keys);
	return 0;
}

/* Every inbound request is tracked, whatever the mode: when inference
 * turns on, what is in flight is known. */
void infer_inbound_begin(struct conn *c)
{
	struct inpod_infer *pi = c->inpod ? c->inpod->infer : NULL;

	if (pi)
		infer_in_begin(&pi->rule, &c->s.inf, c->s.key[0] ? c->s.key : NULL, rs_now_ns());
}

void infer_inbound_begin_h2(struct conn *c, struct infer_in *e, const char *key)
{
	struct inpod_infer *pi = c->inpod ? c->inpod->infer : NULL;

	if (pi) {
		infer_in_begin(&pi->rule, e, key[0] ? key : NULL, rs_now_ns());
		e->h2 = true;
	}
}

void infer_inbound_tunnel(struct conn *c)
{
	struct inpod_infer *pi = c->inbound && c->inpod ? c->inpod->infer : NULL;

	if (pi) {
		infer_in_begin(&pi->rule, &c->s.inf, NULL, rs_now_ns());
		c->s.inf_tunnel = true;
	}
}

bool infer_pipelined(struct conn *c)
{
	int n = 0;

	return c->in.end > c->sent || (!ioctl(c->fd, FIONREAD, &n) && n > 0);
}

/* The baggage value that carries an inferred key, in a header line of
 * its own (the app's lines stay as they are): the key percent-encoded
 * where baggage needs it, marked. Its length, or 0 if it does not fit. */
static size_t inferred_value(const struct rk_config *rk, const char *key, char *out, size_t outsz)
{
	char enc[3 * SHUNT_ROUTE_KEY_LEN];
	size_t e = 0;
	int n;

	for (const char *k = key; *k && e + 4 <= sizeof(enc); k++) {
		if (*k == '%') {
			memcpy(enc + e, "%25", 3);
			e += 3;
		} else {
			enc[e++] = *k;
		}
	}
	enc[e] = '\0';
	n = snprintf(out, outsz, "%s=%s;%s", rk->member, enc, INFER_BAGGAGE_PROPERTY);
	return n > 0 && (size_t)n < outsz ? (size_t)n : 0;
}

/* An outbound request of c (in-pod, inference set), HTTP/1 or a stream:
 * the rule's verdict. true: inference is on and value[0..*vlen) is the
 * baggage value to add. */
static bool outbound_decide(struct conn *c, bool no_key, bool pipelined, const char *target,
			    size_t tlen, char *value, size_t valsz, size_t *vlen)
{
	struct inpod_infer *pi = c->inpod->infer;
	char key[SHUNT_ROUTE_KEY_LEN];

	if (pi->rule.mode == INFER_OFF)
		return false;
	if (!no_key) {
		pi->rule.st.keyed_calls++;
		return false;
	}
	stale_check(c->p);
	if (infer_decide(&pi->rule, rs_now_ns(), &c->orig, target, tlen, pipelined, key) !=
		    INFER_DECIDED ||
	    pi->rule.mode != INFER_ON)
		return false;
	*vlen = inferred_value(&c->p->o.rk, key, value, valsz);
	if (!*vlen) {
		pi->rule.st.inject_failed++;
		return false;
	}
	return true;
}

/* The line goes last in the head, before its empty line. */
static bool inject(struct conn *c, const char *line, size_t n)
{
	uint32_t at = c->s.req_start + c->s.head_len - 2;
	char *d;

	if (buf_room(&c->in) < n) {
		c->in.max = c->in.cap + n;
		if (buf_reserve(&c->in, n))
			return false;
	}
	d = c->in.data;
	memmove(d + at + n, d + at, c->in.end - at);
	memcpy(d + at, line, n);
	buf_commit(&c->in, n);
	c->parsed += (uint32_t)n;
	c->s.head_len += (uint32_t)n;
	return true;
}

#define INFER_VALUE_MAX (RK_NAME_MAX + 3 * SHUNT_ROUTE_KEY_LEN + sizeof(INFER_BAGGAGE_PROPERTY) + 4)

bool infer_outbound(struct conn *c, bool no_key, size_t n_headers)
{
	const struct rk_config *rk = &c->p->o.rk;
	const char *head = c->in.data + c->s.req_start, *t, *te;
	char value[INFER_VALUE_MAX], line[RK_NAME_MAX + INFER_VALUE_MAX + 4];
	size_t vlen;
	int n;

	/* The request target: between the request line's two spaces. */
	t = memchr(head, ' ', c->s.head_len);
	te = t ? memchr(t + 1, ' ', c->s.head_len - (size_t)(t + 1 - head)) : NULL;
	if (!te || !outbound_decide(c, no_key, c->s.pipelined, t + 1, (size_t)(te - t - 1), value,
				    sizeof(value), &vlen))
		return false;
	n = snprintf(line, sizeof(line), "%s: %s\r\n", rk->baggage_header, value);
	if (n <= 0 || (size_t)n >= sizeof(line) || n_headers >= c->p->o.max_headers ||
	    c->s.head_len + (size_t)n > c->p->o.max_head_bytes || !inject(c, line, (size_t)n)) {
		c->inpod->infer->rule.st.inject_failed++;
		return false;
	}
	c->inpod->infer->rule.st.injected++;
	return true;
}

bool infer_outbound_h2(struct conn *c, bool no_key, struct h2hb *reqh)
{
	const struct rk_config *rk = &c->p->o.rk;
	char value[INFER_VALUE_MAX], name[RK_NAME_MAX];
	const char *path;
	uint32_t plen;
	size_t vlen, nl = strnlen(rk->baggage_header, sizeof(rk->baggage_header) - 1);

	path = h2_hb_get(reqh, ":path", &plen);
	if (!path || !outbound_decide(c, no_key, false, path, plen, value, sizeof(value), &vlen))
		return false;
	/* HTTP/2 field names are lowercase. */
	for (size_t i = 0; i <= nl; i++)
		name[i] = (char)(rk->baggage_header[i] >= 'A' && rk->baggage_header[i] <= 'Z'
					 ? rk->baggage_header[i] - 'A' + 'a'
					 : rk->baggage_header[i]);
	if (reqh->n >= c->p->o.max_headers ||
	    h2_hb_add(reqh, (const uint8_t *)name, nl, (const uint8_t *)value, vlen)) {
		c->inpod->infer->rule.st.inject_failed++;
		return false;
	}
	c->inpod->infer->rule.st.injected++;
	return true;
}

bool proxy_infer_kernel_stats(struct proxy *p, uint64_t out[SHUNT_INFER_STAT_MAX])
{
	struct shunt_infer_kern k;

	if (shunt_bpf_infer(p->sh->bpf, &k))
		return false;
	for (int i = 0; i < SHUNT_INFER_STAT_MAX; i++)
		out[i] = k.stats[i];
	return true;
}

void inpod_infer_info(const struct inpod *pod, struct inpod_info *out)
{
	const struct inpod_infer *pi = pod->infer;
	size_t i;

	if (!pi)
		return;
	out->infer.mode = pi->rule.mode;
	out->infer.attached = pi->link_fd >= 0;
	out->infer.switched_off = pi->rule.off;
	snprintf(out->infer.why, sizeof(out->infer.why), "%s", pi->rule.why);
	for (int k = 0; k < pi->n_ports && k < 8; k++)
		out->infer.ports[k] = pi->ports[k];
	out->infer.n_ports = pi->n_ports;
	out->infer.accepted = pi->accepted;
	out->infer.in_flight = pi->rule.n_in;
	out->infer.untracked = pi->rule.untracked;
	out->infer.idle_ms = infer_idle_ns(&pi->rule, rs_now_ns()) / 1000000ULL;
	out->infer.learn_idle_ms = pi->rule.learn_idle_ns / 1000000ULL;
	out->infer.paths = pi->rule.paths.n;
	for (struct hmap_entry *e = hmap_first(&pi->rule.paths, &i); e;
	     e = hmap_next(&pi->rule.paths, e, &i))
		out->infer.idle_paths += infer_path_idle(e->val);
	out->infer.st = pi->rule.st;
}

int proxy_infer_handover(struct proxy *p, struct infer_handover *out, int max)
{
	int n = 0;

	for (struct inpod *pod = p->inpods; pod && n < max; pod = pod->next) {
		const struct inpod_infer *pi = pod->infer;

		if (!pi || pi->rule.mode == INFER_OFF || pi->link_fd < 0)
			continue;
		snprintf(out[n].name, sizeof(out[n].name), "%s", pod->name);
		out[n].mode = (uint8_t)pi->rule.mode;
		out[n].n_ports = pi->n_ports;
		memcpy(out[n].ports, pi->ports, sizeof(out[n].ports));
		n++;
	}
	return n;
}

void infer_adopt(struct proxy *p, const struct infer_handover *h, int n)
{
	char msg[512];

	for (int i = 0; i < n; i++)
		if (proxy_infer_set(p, h[i].name, (enum infer_mode)h[i].mode, h[i].ports,
				    h[i].n_ports, msg, sizeof(msg)))
			pr_warn("inference: pod '%s' handed over: %s; set it again", h[i].name,
				msg);
}

bool infer_relay_dst(const struct pool *root, const struct shunt_addr *dst)
{
	const struct inpod *pod =
		(const struct inpod *)((const char *)root - offsetof(struct inpod, pool));
	const struct inpod_infer *pi;

	if (!root->in_pod || dst->family != SHUNT_FAMILY_V4)
		return false;
	pi = pod->infer;
	for (int k = 0; pi && k < pi->n_keys; k++)
		if (pi->keys[k].family == SHUNT_FAMILY_V4 && pi->keys[k].port == dst->port &&
		    !memcmp(pi->keys[k].addr, dst->addr, 4))
			return true;
	return false;
}
