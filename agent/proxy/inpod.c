// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * In-pod mode: for a pod registered here, the proxy's sockets live inside
 * the pod's network namespace. Its listeners (127.0.0.1 and ::1, port
 * --inpod-port) take the pod's connections to steered services (connect4|6
 * send them there, shunt_inpod says where), and its requests' upstream
 * connections are made in the pod's namespace too: they leave from the
 * pod's own address, so the baseline and the sandbox see the caller, and
 * whatever filters by the caller's address (NetworkPolicy) applies to
 * steered requests exactly as to the pod's direct ones.
 *
 * A socket belongs to the network namespace of the thread that created
 * it, for its whole life: worker 0 steps into the pod's namespace for the
 * socket() call and straight back (setns, per thread). Everything else
 * (bind, connect, epoll) works on the socket from anywhere.
 *
 * Worker 0 serves every in-pod pod; the map and sockmap slots are this
 * agent's alone (it empties shunt_inpod when it starts: a slot number
 * filed by an agent before it may now hold another pod's listener).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/nsfs.h>
#include <bpf/bpf.h>

#include "core/log.h"
#include "core/util.h"
#include "kernel/bpf.h"
#include "proxy/proxy.h"
#include "proxy/h2.h"
#include "proxy/proxy_int.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

int inpod_socket(struct proxy *p, int nsfd, int family)
{
	int fd, err;

	if (p->host_nsfd < 0) {
		errno = EOPNOTSUPP;
		return -1;
	}
	if (setns(nsfd, CLONE_NEWNET))
		return -1;
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	err = errno;
	if (setns(p->host_nsfd, CLONE_NEWNET)) {
		/* Every later socket of this thread would be the pod's: the
		 * one thing that must never happen. It cannot fail with the
		 * descriptor we opened ourselves at start. */
		pr_err("in-pod: cannot return to the agent's network namespace: %s",
		       strerror(errno));
		abort();
	}
	errno = err;
	return fd;
}

int inpod_init(struct proxy *p)
{
	uint64_t key;

	p->host_nsfd = -1;
	if (p->id)
		return 0;
	p->host_nsfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (p->host_nsfd < 0)
		pr_warn("in-pod: open /proc/thread-self/ns/net: %s: pods cannot be served in-pod",
			strerror(errno));
	else {
		socklen_t len = sizeof(p->host_netns);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &p->host_netns, &len))
			p->host_netns = 0;
		if (fd >= 0)
			close(fd);
	}
	/* Entries of an agent before us name slots that are ours now. */
	while (!bpf_map_get_next_key(p->sh->bpf->inpod_fd, NULL, &key)) {
		if (bpf_map_delete_elem(p->sh->bpf->inpod_fd, &key))
			break;
	}
	return 0;
}

/* A connection accepted on one of pod's listeners: served if the kernel
 * filed it (captured), closed otherwise. */
static void inpod_take(struct proxy *p, int fd, void *ctx)
{
	struct inpod *pod = ctx;
	struct shunt_pod_conn_key k = {.netns = pod->netns};
	struct shunt_orig orig;
	char a[ADDR_STR_LEN];
	struct conn *c = conn_new(p, fd);

	if (!c)
		return;
	if (conn_peer(c)) {
		client_close(c);
		return;
	}
	k.client = c->peer;
	if (map_take(p, p->sh->bpf->pod_conns_fd, &k, &orig)) {
		/* Not captured by us (something in the pod dialled the port
		 * itself): nothing to relay it to. */
		p->st.unknown++;
		pr_debug("in-pod %s: connection from %s was not captured: closing", pod->name,
			 format_addr_port(&c->peer, a, sizeof(a)));
		client_close(c);
		return;
	}
	c->orig = orig.dst;
	c->inpod = pod;
	pod->conns++;
	pod->accepted++;
	p->st.inpod_active++;
	p->st.inpod_accepted++;
	if (p->sh->track_pods)
		pod_attach(c, pod->netns);
	/* With inference, its request is read now, not a loop turn later:
	 * the rule's guards count from when it is read. */
	if (conn_begin(c) && pod->infer && pod->infer->link_fd >= 0)
		client_event(&c->h, EPOLLIN | EPOLLOUT);
}

static void inpod_accept(struct ev_handler *h, uint32_t events)
{
	struct inpod_listener *l = (struct inpod_listener *)h;

	(void)events;
	accept_backlog(l->pod->p, l->fd, inpod_take, l->pod);
}

/* A listener in the pod's namespace on a (the pod's loopback): the fd,
 * or -errno (msg says what failed). */
int inpod_listen(struct proxy *p, int nsfd, const struct shunt_addr *a, char *msg, size_t msglen)
{
	struct sockaddr_storage ss;
	socklen_t sl = addr_to_sockaddr(a, &ss);
	char s[ADDR_STR_LEN];
	int one = 1, fd, err;

	format_addr_port(a, s, sizeof(s));
	fd = inpod_socket(p, nsfd, ss.ss_family);
	if (fd < 0) {
		err = -errno;
		snprintf(msg, msglen, "a socket in the pod's network namespace: %s",
			 strerror(-err));
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 4096)) {
		err = -errno;
		snprintf(msg, msglen, "listen on %s in the pod: %s", s, strerror(-err));
		close(fd);
		return err;
	}
	return fd;
}

struct inpod *inpod_find(struct proxy *p, const char *name)
{
	for (struct inpod *pod = p->inpods; pod; pod = pod->next)
		if (!strcmp(pod->name, name))
			return pod;
	return NULL;
}

static void pod_listeners_expire(struct proxy *p, struct inpod *pod, bool now);

static int slot_take(struct proxy *p, uint32_t *slot)
{
	for (uint32_t i = 0; i < SHUNT_MAX_INPOD; i++)
		if (!(p->inpod_slots[i / 64] & (1ULL << (i % 64)))) {
			p->inpod_slots[i / 64] |= 1ULL << (i % 64);
			*slot = i;
			return 0;
		}
	return -ENOSPC;
}

static void slot_put(struct proxy *p, uint32_t slot)
{
	p->inpod_slots[slot / 64] &= ~(1ULL << (slot % 64));
}

/* The pod's listeners go: out of the loop and closed (they leave the
 * sockmap by themselves). */
static void listeners_close(struct inpod *pod)
{
	for (int i = 0; i < 2; i++)
		if (pod->l[i].fd >= 0) {
			loop_del(pod->p->loop, pod->l[i].fd);
			close(pod->l[i].fd);
			pod->l[i].fd = -1;
		}
}

static void inpod_free(struct inpod *pod)
{
	inpod_infer_free(pod);
	listeners_close(pod);
	pool_free(&pod->pool);
	if (pod->pool.nsfd >= 0)
		close(pod->pool.nsfd);
	free(pod);
}

/* The address a pod's listener handed over is bound to, made
 * non-blocking: 0, or -errno. */
static int adopt_listener(int fd, struct shunt_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) ||
	    addr_from_sockaddr((struct sockaddr *)&ss, a))
		return -EINVAL;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK))
		return -errno;
	return 0;
}

/* Serve pod name, whose network namespace is nsfd (taken: closed on
 * failure): on listeners there that lfd hands over (a takeover; -1: none
 * of that family), or on new ones (lfd NULL). 0, or -errno with msg. */
static int inpod_start(struct proxy *p, const char *name, const char *netns_path, int nsfd,
		       const int *lfd, char *msg, size_t msglen)
{
	struct shunt_inpod v = {};
	struct inpod *pod;
	socklen_t len = sizeof(uint64_t);
	int fd, err;

	pod = calloc(1, sizeof(*pod));
	if (!pod) {
		close(nsfd);
		for (int i = 0; lfd && i < 2; i++)
			if (lfd[i] >= 0)
				close(lfd[i]);
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	pod->p = p;
	snprintf(pod->name, sizeof(pod->name), "%s", name);
	snprintf(pod->netns_path, sizeof(pod->netns_path), "%s", netns_path);
	pod->pool.in_pod = true;
	pod->pool.nsfd = nsfd;
	for (int i = 0; i < 2; i++) {
		pod->l[i].fd = lfd ? lfd[i] : -1;
		pod->l[i].pod = pod;
		pod->l[i].h.fn = inpod_accept;
	}
	/* The namespace's identity, as the kernel programs see it: from a
	 * socket made in it. */
	fd = inpod_socket(p, nsfd, AF_UNIX);
	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &pod->netns, &len)) {
		err = -errno;
		snprintf(msg, msglen, "%s: the network namespace's cookie: %s", netns_path,
			 strerror(-err));
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	close(fd);
	if (pod->netns == p->host_netns) {
		snprintf(msg, msglen,
			 "%s is the agent's own network namespace (hostNetwork pods are served "
			 "in node mode)",
			 netns_path);
		err = -EINVAL;
		goto fail;
	}
	for (struct inpod *o = p->inpods; o; o = o->next)
		if (o->netns == pod->netns) {
			snprintf(msg, msglen, "%s is pod '%s''s network namespace, served already",
				 netns_path, o->name);
			err = -EEXIST;
			goto fail;
		}
	/* The same pod removed a moment ago: its listeners in their grace
	 * hold the port; close them now. */
	for (struct inpod *g = p->inpods_gone; g && !lfd; g = g->next)
		if (g->netns == pod->netns)
			pod_listeners_expire(p, g, true);
	for (int i = 0; i < 2; i++) {
		struct shunt_addr *a = &pod->listen[i];

		if (lfd) {
			if (pod->l[i].fd >= 0 && adopt_listener(pod->l[i].fd, a)) {
				err = -EINVAL;
				snprintf(msg, msglen,
					 "a handed-over listener is not a bound socket");
				goto fail;
			}
			continue;
		}
		a->family = i ? SHUNT_FAMILY_V6 : SHUNT_FAMILY_V4;
		a->port = p->o.inpod_port;
		if (i)
			a->addr[15] = 1; /* ::1 */
		else {
			a->addr[0] = 127;
			a->addr[3] = 1;
		}
		fd = inpod_listen(p, nsfd, a, msg, msglen);
		if (fd < 0) {
			/* A pod without IPv6 (or its loopback address): IPv4
			 * only, its IPv6 connections fail open. */
			if (i && (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT)) {
				memset(a, 0, sizeof(*a));
				continue;
			}
			err = fd;
			goto fail;
		}
		pod->l[i].fd = fd;
	}
	err = slot_take(p, &pod->slot);
	if (err) {
		snprintf(msg, msglen, "%u pods are served in-pod already, the most there can be",
			 SHUNT_MAX_INPOD);
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		uint32_t key = 2 * pod->slot + (uint32_t)i;
		uint64_t val;

		if (pod->l[i].fd < 0) {
			bpf_map_delete_elem(p->sh->bpf->pod_socks_fd, &key);
			continue;
		}
		val = (uint64_t)pod->l[i].fd;
		if (bpf_map_update_elem(p->sh->bpf->pod_socks_fd, &key, &val, BPF_ANY) ||
		    loop_add(p->loop, pod->l[i].fd, EPOLLIN | EPOLLET, &pod->l[i].h)) {
			err = -errno;
			snprintf(msg, msglen, "register the pod's listener: %s", strerror(-err));
			goto fail_slot;
		}
	}
	/* Last: from here on the pod's connections come to its listeners. */
	v.listen4 = pod->listen[0];
	v.listen6 = pod->listen[1];
	v.slot = pod->slot;
	if (bpf_map_update_elem(p->sh->bpf->inpod_fd, &pod->netns, &v, BPF_ANY)) {
		err = -errno;
		snprintf(msg, msglen, "shunt_inpod: %s", strerror(-err));
		goto fail_slot;
	}
	pod->next = p->inpods;
	p->inpods = pod;
	p->st.inpod_pods++;
	/* A handed-over backlog has no new edge. */
	for (int i = 0; lfd && i < 2; i++)
		if (pod->l[i].fd >= 0)
			inpod_accept(&pod->l[i].h, EPOLLIN);
	pr_info("in-pod: serving pod '%s' (%s, netns cookie %llu) from its own namespace%s", name,
		netns_path, (unsigned long long)pod->netns, lfd ? ", taken over" : "");
	return 0;

fail_slot:
	slot_put(p, pod->slot);
fail:
	inpod_free(pod);
	return err;
}

int proxy_inpod_add(struct proxy *p, const char *name, const char *netns_path, char *msg,
		    size_t msglen)
{
	int nsfd;

	if (p->host_nsfd < 0 || !p->sh->bpf->netns_known) {
		snprintf(msg, msglen, "this agent cannot serve pods in-pod: %s",
			 p->host_nsfd < 0 ? "it cannot open its own network namespace"
					  : "the kernel's sockops programs cannot tell a "
					    "connection's network namespace (Linux 5.15)");
		return -EOPNOTSUPP;
	}
	if (!name[0] || strlen(name) >= INPOD_NAME_LEN) {
		snprintf(msg, msglen, "a pod name is 1 to %d bytes", INPOD_NAME_LEN - 1);
		return -EINVAL;
	}
	if (inpod_find(p, name)) {
		snprintf(msg, msglen, "pod '%s' is served in-pod already", name);
		return -EEXIST;
	}
	for (struct tcpod *t = p->tcpods; t; t = t->next)
		if (!strcmp(t->name, name)) {
			snprintf(msg, msglen, "pod '%s' is captured with TC: one mode per pod",
				 name);
			return -EEXIST;
		}
	/* Never blocks (a FIFO) nor becomes a terminal; and must be a
	 * network namespace. */
	nsfd = open(netns_path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (nsfd < 0) {
		int err = -errno;

		snprintf(msg, msglen, "open %s: %s", netns_path, strerror(-err));
		return err;
	}
	if (ioctl(nsfd, NS_GET_NSTYPE) != CLONE_NEWNET) {
		snprintf(msg, msglen, "%s is not a network namespace", netns_path);
		close(nsfd);
		return -EINVAL;
	}
	return inpod_start(p, name, netns_path, nsfd, NULL, msg, msglen);
}

/* The pods an agent before us handed over (proxy_start, worker 0). */
void inpod_adopt(struct proxy *p, struct inpod_handover *h, int n)
{
	char msg[512];

	for (int i = 0; i < n; i++) {
		if (h[i].nsfd < 0)
			continue;
		if (p->host_nsfd < 0 || !p->sh->bpf->netns_known || inpod_find(p, h[i].name)) {
			pr_warn("in-pod: cannot serve pod '%s' handed over: its connections fail "
				"open until it is added again",
				h[i].name);
			close(h[i].nsfd);
			for (int k = 0; k < 2; k++)
				if (h[i].lfd[k] >= 0)
					close(h[i].lfd[k]);
		} else if (inpod_start(p, h[i].name, h[i].netns_path, h[i].nsfd, h[i].lfd, msg,
				       sizeof(msg))) {
			pr_warn("in-pod: pod '%s' handed over: %s; its connections fail open until "
				"it is added again",
				h[i].name, msg);
		}
		h[i].nsfd = h[i].lfd[0] = h[i].lfd[1] = -1;
	}
}

int proxy_inpod_handover(struct proxy *p, struct inpod_handover *out, int max)
{
	int n = 0;

	for (struct inpod *pod = p->inpods; pod && n < max; pod = pod->next, n++) {
		snprintf(out[n].name, sizeof(out[n].name), "%s", pod->name);
		snprintf(out[n].netns_path, sizeof(out[n].netns_path), "%s", pod->netns_path);
		out[n].nsfd = pod->pool.nsfd;
		out[n].lfd[0] = pod->l[0].fd;
		out[n].lfd[1] = pod->l[1].fd;
	}
	return n;
}

/* pod's listeners close after LISTEN_GRACE_MS (its shunt_inpod entry is
 * gone: what reaches them now was captured just before). */
static void listeners_close_soon(struct proxy *p, struct inpod *pod)
{
	if ((pod->l[0].fd >= 0 || pod->l[1].fd >= 0) && !pod->close_at) {
		pod->close_at = p->loop->now_ms + LISTEN_GRACE_MS;
		p->inpods_closing++;
	}
}

static void pod_listeners_expire(struct proxy *p, struct inpod *pod, bool now)
{
	if (!pod->close_at || (!now && p->loop->now_ms < pod->close_at))
		return;
	for (int i = 0; i < 2; i++)
		if (pod->l[i].fd >= 0)
			inpod_accept(&pod->l[i].h, EPOLLIN); /* since the last edge */
	listeners_close(pod);
	pod->close_at = 0;
	p->inpods_closing--;
}

/* pod stops being served: new connections fail open (no shunt_inpod
 * entry), its listeners close (after a grace: grace), its connections and
 * upstreams close. It is freed once nothing refers to it (inpod_reap). */
static void inpod_remove(struct proxy *p, struct inpod *pod, bool forget, bool grace)
{
	struct inpod **pp;

	if (forget)
		bpf_map_delete_elem(p->sh->bpf->inpod_fd, &pod->netns);
	inpod_infer_stop(p, pod);
	if (grace)
		listeners_close_soon(p, pod);
	else {
		pod_listeners_expire(p, pod, true);
		listeners_close(pod);
	}
	for (struct conn *c = p->clients, *next; c; c = next) {
		next = c->next;
		if (c->inpod == pod)
			client_close(c);
	}
	h2up_close_all(p, &pod->pool);
	pool_sweep(&pod->pool, p->loop->now_ms, 0, true, up_close_idle);
	slot_put(p, pod->slot);
	for (pp = &p->inpods; *pp != pod; pp = &(*pp)->next)
		;
	*pp = pod->next;
	p->st.inpod_pods--;
	pod->gone = true;
	pod->next = p->inpods_gone;
	p->inpods_gone = pod;
}

int proxy_inpod_del(struct proxy *p, const char *name, char *msg, size_t msglen)
{
	struct inpod *pod = inpod_find(p, name);

	if (!pod) {
		snprintf(msg, msglen, "pod '%s' is not served in-pod", name);
		return -ENOENT;
	}
	inpod_remove(p, pod, true, true);
	pr_info("in-pod: pod '%s' no longer served", name);
	return 0;
}

int proxy_inpod_list(struct proxy *p, struct inpod_info *out, int max)
{
	int n = 0;

	for (struct inpod *pod = p->inpods; pod && n < max; pod = pod->next, n++) {
		struct inpod_info *i = &out[n];
		struct stat st;

		memset(i, 0, sizeof(*i));
		snprintf(i->name, sizeof(i->name), "%s", pod->name);
		snprintf(i->netns_path, sizeof(i->netns_path), "%s", pod->netns_path);
		i->netns = pod->netns;
		if (!fstat(pod->pool.nsfd, &st))
			i->netns_ino = (uint64_t)st.st_ino;
		i->slot = pod->slot;
		i->listen[0] = pod->listen[0];
		i->listen[1] = pod->listen[1];
		i->conns = pod->conns;
		i->accepted = pod->accepted;
		i->upstream_dsts = pod->pool.by_dst.n;
		inpod_infer_info(pod, i);
	}
	return n;
}

size_t proxy_inpod_count(const struct proxy *p)
{
	return (size_t)p->st.inpod_pods;
}

void inpod_drain(struct proxy *p, bool forget)
{
	for (struct inpod *pod = p->inpods; pod; pod = pod->next) {
		inpod_infer_stop(p, pod);
		if (forget) {
			bpf_map_delete_elem(p->sh->bpf->inpod_fd, &pod->netns);
			listeners_close_soon(p, pod);
		} else {
			listeners_close(pod); /* the successor's now */
		}
	}
}

void inpod_stop_all(struct proxy *p, bool forget)
{
	while (p->inpods)
		inpod_remove(p, p->inpods, forget, false);
	for (struct inpod *pod = p->inpods_gone; pod; pod = pod->next)
		pod_listeners_expire(p, pod, true);
}

void inpod_reap(struct proxy *p)
{
	if (p->inpods_closing) {
		for (struct inpod *pod = p->inpods; pod; pod = pod->next)
			pod_listeners_expire(p, pod, false);
		for (struct inpod *pod = p->inpods_gone; pod; pod = pod->next)
			pod_listeners_expire(p, pod, false);
	}
	for (struct inpod **pp = &p->inpods_gone; *pp;) {
		struct inpod *pod = *pp;

		pool_sweep(&pod->pool, p->loop->now_ms, 0, true, up_close_idle);
		if (pod->conns || pod->pool.by_dst.n || pod->close_at) {
			pp = &pod->next;
			continue;
		}
		*pp = pod->next;
		inpod_free(pod);
	}
}

void inpod_fini(struct proxy *p)
{
	inpod_reap(p);
	while (p->inpods_gone) {
		struct inpod *pod = p->inpods_gone;

		p->inpods_gone = pod->next;
		inpod_free(pod);
	}
	if (p->host_nsfd >= 0)
		close(p->host_nsfd);
	p->host_nsfd = -1;
}

void inpod_pools_sweep(struct proxy *p, bool close_all)
{
	for (struct inpod *pod = p->inpods; pod; pod = pod->next)
		pool_sweep(&pod->pool, p->loop->now_ms, POOL_IDLE_MS, close_all, up_close_idle);
}
