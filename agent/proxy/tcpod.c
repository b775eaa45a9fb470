// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TC capture: pods whose connect() the cgroup hooks never see (a
 * VM-isolated pod's runs in its own kernel). The TC program on the pod's
 * host-side interface (bpf/tc.bpf.c) hands a SYN to a steered service to
 * one of the transparent listeners here (127.0.0.1 and ::1, any port:
 * bpf_sk_assign skips the lookup), and the accepted socket's local address
 * is the service the pod dialled: no capture record is needed. Later
 * packets of the connection find that socket by their 4-tuple.
 *
 * Worker 0 holds the listeners and serves every TC connection; the
 * upstream side is node mode's (dialled from the node). Only new SYNs
 * depend on the listener, so an agent that dies takes the steering with
 * it: its sockets close, its tcx links go (a clsact filter stays, with an
 * empty listener slot), and packets pass untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <bpf/bpf.h>

#include "core/log.h"
#include "core/util.h"
#include "kernel/bpf.h"
#include "kernel/tc.h"
#include "state/dstguard.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

static struct tcpod *tcpod_find(struct proxy *p, const char *name)
{
	for (struct tcpod *t = p->tcpods; t; t = t->next)
		if (!strcmp(t->name, name))
			return t;
	return NULL;
}

/* shunt_tc_conns' key of c: the connection as the pod's packets spell it. */
static void tc_conn_key(const struct conn *c, struct shunt_tc_conn_key *k)
{
	size_t n = c->peer.family == SHUNT_FAMILY_V4 ? 4 : 16;

	memset(k, 0, sizeof(*k));
	k->family = c->peer.family;
	memcpy(k->saddr, c->peer.addr, n);
	memcpy(k->daddr, c->orig.addr, n);
	k->sport = htons(c->peer.port);
	k->dport = htons(c->orig.port);
}

void tc_conn_forget(struct conn *c)
{
	struct shunt_tc_conn_key k;

	tc_conn_key(c, &k);
	bpf_map_delete_elem(c->p->sh->bpf->tc_conns_fd, &k);
	c->tcpod = NULL;
}

/* Where the pod was going: the address before the node's DNAT, if any
 * (conntrack keeps it: SO_ORIGINAL_DST), else the accepted socket's local
 * address. 0 or -1. */
static int tc_orig(int fd, struct shunt_addr *orig)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int v6;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -1;
	v6 = ss.ss_family == AF_INET6;
	sl = sizeof(ss);
	if (getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, 80 /* SO_ORIGINAL_DST, IP6T_ */, &ss, &sl)) {
		sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl))
			return -1;
	}
	return addr_from_sockaddr((struct sockaddr *)&ss, orig) ? -1 : 0;
}

/* A connection the TC program handed to a listener. One that reached the
 * listener's own (loopback) address was dialled on the node itself:
 * closed. */
static void tc_take(struct proxy *p, int fd, void *ctx)
{
	struct shunt_tc_conn_key k;
	char a[ADDR_STR_LEN];
	uint32_t ifindex;
	struct conn *c = conn_new(p, fd);

	(void)ctx;
	if (!c)
		return;
	if (conn_peer(c)) {
		client_close(c);
		return;
	}
	if (tc_orig(fd, &c->orig) || dst_classify(&c->orig) == DST_LOOPBACK) {
		p->st.unknown++;
		pr_debug("TC listener: connection from %s was not handed over by the TC "
			 "program: closing",
			 format_addr_port(&c->peer, a, sizeof(a)));
		client_close(c);
		return;
	}
	c->tc = true;
	p->st.tc_active++;
	p->st.tc_accepted++;
	/* Which pod: the interface its SYN came in on. */
	tc_conn_key(c, &k);
	if (!bpf_map_lookup_elem(p->sh->bpf->tc_conns_fd, &k, &ifindex))
		for (struct tcpod *t = p->tcpods; t; t = t->next)
			if (t->at.ifindex == (int)ifindex)
				c->tcpod = t;
	conn_begin(c);
}

static void tc_accept(struct ev_handler *h, uint32_t events)
{
	struct tc_listener *l = (struct tc_listener *)h;

	(void)events;
	accept_backlog(l->p, l->fd, tc_take, NULL);
}

static void tc_listeners_close(struct proxy *p)
{
	for (int i = 0; i < 2; i++)
		if (p->tc_l[i].fd >= 0) {
			loop_del(p->loop, p->tc_l[i].fd);
			close(p->tc_l[i].fd); /* leaves shunt_tc_socks by itself */
			p->tc_l[i].fd = -1;
		}
}

/* A transparent listener on the family's loopback address, any port. */
static int tc_listen(struct proxy *p, int family, char *msg, size_t msglen)
{
	struct sockaddr_storage ss = {};
	socklen_t sl;
	int one = 1, fd, err;
	int mark = (int)p->o.mark;

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	/* Transparent: the accepted sockets answer from the service's
	 * address, which is not this host's. Marked like every socket of
	 * ours, so no reply ever carries the TC mark. */
	if ((family == AF_INET ? setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one))
			       : setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))) ||
	    setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)))
		goto fail;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 4096))
		goto fail;
	return fd;
fail:
	err = -errno;
	snprintf(msg, msglen, "the TC listener (IPv%d): %s", family == AF_INET ? 4 : 6,
		 strerror(-err));
	if (fd >= 0)
		close(fd);
	return err;
}

/* Put listener i (fd, bound already) to work: in its sockmap slot and the
 * loop. 0 or -errno. */
static int tc_listener_start(struct proxy *p, int i, int fd)
{
	uint32_t key = i ? SHUNT_TC_V6 : SHUNT_TC_V4;
	uint64_t val = (uint64_t)fd;

	p->tc_l[i].fd = fd;
	p->tc_l[i].p = p;
	p->tc_l[i].h.fn = tc_accept;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) ||
	    bpf_map_update_elem(p->sh->bpf->tc_socks_fd, &key, &val, BPF_ANY) ||
	    loop_add(p->loop, fd, EPOLLIN | EPOLLET, &p->tc_l[i].h))
		return -errno;
	tc_accept(&p->tc_l[i].h, EPOLLIN); /* a handed-over backlog has no edge */
	return 0;
}

/* The listeners and the policy route, once, before the first pod. */
static int tc_ready(struct proxy *p, char *msg, size_t msglen)
{
	int err;

	if (!p->sh->bpf->tc_routed) {
		err = tc_route_setup(p->sh->bpf->tc_mark, msg, msglen);
		if (err)
			return err;
		p->sh->bpf->tc_routed = true;
	}
	for (int i = 0; i < 2; i++) {
		int fd;

		if (p->tc_l[i].fd >= 0)
			continue;
		fd = tc_listen(p, i ? AF_INET6 : AF_INET, msg, msglen);
		if (fd < 0) {
			if (i && (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT))
				continue; /* no IPv6 here: its connections pass */
			return fd;
		}
		err = tc_listener_start(p, i, fd);
		if (err) {
			snprintf(msg, msglen, "register the TC listener: %s", strerror(-err));
			return err;
		}
	}
	return 0;
}

int tcpod_init(struct proxy *p)
{
	p->tc_l[0].fd = p->tc_l[1].fd = -1;
	/* Without a predecessor handing its pods over, a filter of ours
	 * still on an interface is a dead agent's, for a pod nobody has
	 * registered with us. */
	if (!p->id && !p->o.tc_handed && shunt_bpf_tc_prog_fd(p->sh->bpf) >= 0)
		tc_sweep_stale();
	return 0;
}

static void tc_quiesce(struct proxy *p);

static int tcpod_start(struct proxy *p, const char *name, const char *ifname, char *msg,
		       size_t msglen)
{
	int prog = shunt_bpf_tc_prog_fd(p->sh->bpf);
	struct tcpod *t;
	int err;

	if (prog < 0) {
		snprintf(msg, msglen,
			 "this agent cannot capture with TC: its TC program did not load "
			 "(bpf_sk_assign needs Linux 5.7; the agent's log says why)");
		return -EOPNOTSUPP;
	}
	if (!name[0] || strlen(name) >= INPOD_NAME_LEN) {
		snprintf(msg, msglen, "a pod name is 1 to %d bytes", INPOD_NAME_LEN - 1);
		return -EINVAL;
	}
	if (tcpod_find(p, name)) {
		snprintf(msg, msglen, "pod '%s' is captured with TC already", name);
		return -EEXIST;
	}
	for (struct inpod *i = p->inpods; i; i = i->next)
		if (!strcmp(i->name, name)) {
			snprintf(msg, msglen, "pod '%s' is served in-pod: one mode per pod", name);
			return -EEXIST;
		}
	for (t = p->tcpods; t; t = t->next)
		if (!strcmp(t->at.ifname, ifname)) {
			snprintf(msg, msglen, "interface %s is pod '%s''s already", ifname,
				 t->name);
			return -EEXIST;
		}
	err = tc_ready(p, msg, msglen);
	if (err) {
		tc_quiesce(p);
		return err;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	snprintf(t->name, sizeof(t->name), "%s", name);
	err = tc_attach(prog, ifname, &t->at, msg, msglen);
	if (err) {
		free(t);
		tc_quiesce(p); /* the listeners, if no pod is left to use them */
		return err;
	}
	t->next = p->tcpods;
	p->tcpods = t;
	p->st.tc_pods++;
	pr_info("TC: capturing pod '%s' on %s (ifindex %d, %s)", name, ifname, t->at.ifindex,
		tc_attach_kind(&t->at));
	return 0;
}

int proxy_tc_add(struct proxy *p, const char *name, const char *ifname, char *msg, size_t msglen)
{
	if (p->draining) {
		snprintf(msg, msglen, "the agent is draining");
		return -ESHUTDOWN;
	}
	return tcpod_start(p, name, ifname, msg, msglen);
}

static void tcpod_remove(struct proxy *p, struct tcpod *t)
{
	struct tcpod **pp;

	tc_detach(&t->at);
	/* Its packets are no longer handed over: what it had open here is
	 * cut off. */
	for (struct conn *c = p->clients, *next; c; c = next) {
		next = c->next;
		if (c->tc && c->tcpod == t)
			client_close(c);
	}
	for (pp = &p->tcpods; *pp != t; pp = &(*pp)->next)
		;
	*pp = t->next;
	p->st.tc_pods--;
	free(t);
}

/* The last pod gone: nothing can reach the TC connections any more (their
 * packets are no longer handed over), so they close, and so do the
 * listeners. */
static void tc_quiesce(struct proxy *p)
{
	if (p->tcpods)
		return;
	tc_listeners_close(p);
	for (struct conn *c = p->clients, *next; c; c = next) {
		next = c->next;
		if (c->tc)
			client_close(c);
	}
}

int proxy_tc_del(struct proxy *p, const char *name, char *msg, size_t msglen)
{
	struct tcpod *t = tcpod_find(p, name);

	if (!t) {
		snprintf(msg, msglen, "pod '%s' is not captured with TC", name);
		return -ENOENT;
	}
	tcpod_remove(p, t);
	tc_quiesce(p);
	pr_info("TC: pod '%s' no longer captured", name);
	return 0;
}

int proxy_tc_list(struct proxy *p, struct tcpod_info *out, int max)
{
	int n = 0;

	for (struct tcpod *t = p->tcpods; t && n < max; t = t->next, n++) {
		memset(&out[n], 0, sizeof(out[n]));
		snprintf(out[n].name, sizeof(out[n].name), "%s", t->name);
		snprintf(out[n].ifname, sizeof(out[n].ifname), "%s", t->at.ifname);
		out[n].ifindex = t->at.ifindex;
		out[n].kind = tc_attach_kind(&t->at);
		out[n].link_id = t->at.link_id;
		out[n].prog_id = t->at.prog_id;
	}
	return n;
}

int proxy_tc_handover(struct proxy *p, struct tcpod_handover *out, int max, int lfd[2])
{
	int n = 0;

	for (struct tcpod *t = p->tcpods; t && n < max; t = t->next, n++) {
		snprintf(out[n].name, sizeof(out[n].name), "%s", t->name);
		snprintf(out[n].ifname, sizeof(out[n].ifname), "%s", t->at.ifname);
	}
	lfd[0] = p->tc_l[0].fd;
	lfd[1] = p->tc_l[1].fd;
	return n;
}

void tcpod_adopt(struct proxy *p, const struct tcpod_handover *h, int n, const int lfd[2])
{
	char msg[256];

	/* The listeners first: SYNs keep landing in them meanwhile. */
	for (int i = 0; i < 2; i++)
		if (lfd[i] >= 0 && tc_listener_start(p, i, lfd[i])) {
			pr_warn("TC: a handed-over listener: %s", strerror(errno));
			if (p->tc_l[i].fd >= 0)
				loop_del(p->loop, p->tc_l[i].fd);
			close(lfd[i]);
			p->tc_l[i].fd = -1;
		}
	for (int i = 0; i < n; i++)
		if (tcpod_start(p, h[i].name, h[i].ifname, msg, sizeof(msg)))
			pr_warn("TC: pod '%s' handed over: %s; its connections pass uncaptured "
				"until it is added again",
				h[i].name, msg);
	tc_quiesce(p);
}

void tcpod_drain(struct proxy *p, bool handed_over)
{
	uint32_t key;

	if (handed_over) {
		/* The successor holds the listeners and its own programs. */
		for (int i = 0; i < 2; i++)
			if (p->tc_l[i].fd >= 0) {
				loop_del(p->loop, p->tc_l[i].fd);
				close(p->tc_l[i].fd);
				p->tc_l[i].fd = -1;
			}
		return;
	}
	/* New SYNs pass from here on; connections under way stay ours until
	 * they end (the programs stay attached until the agent stops). */
	for (key = 0; key < SHUNT_TC_MAX; key++)
		bpf_map_delete_elem(p->sh->bpf->tc_socks_fd, &key);
}

void tcpod_stop_all(struct proxy *p)
{
	while (p->tcpods)
		tcpod_remove(p, p->tcpods);
	tc_listeners_close(p);
}
