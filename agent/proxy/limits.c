// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Limits: client connections per pod and per node (told to the kernel,
 * which then stops capturing: fail open), and the upstream connections a
 * pod's requests hold to one sandbox.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
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
#include "proxy/h2.h"
#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/pool.h"
#include "proxy/reqstats.h"
#include "proxy/route.h"
#include "state/store.h"
#include "core/util.h"
#include "proxy/proxy_int.h"

/* The count of connections one pod's requests hold to dst, created at 0
 * when asked; NULL only when out of memory. Under sh->mu. */
static struct pod_hold *hold_get(struct proxy_shared *sh, uint64_t netns,
				 const struct shunt_addr *dst)
{
	struct hold_key k;
	struct pod_hold *h;

	memset(&k, 0, sizeof(k));
	k.netns = netns;
	k.dst = *dst;
	k.dst.pad = 0;
	h = hmap_get(&sh->holds, &k, sizeof(k));
	if (h)
		return h;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->k = k;
	if (hmap_put(&sh->holds, &h->k, sizeof(h->k), h, NULL)) {
		free(h);
		return NULL;
	}
	return h;
}

struct pod_hold *hold_take(struct proxy *p, uint64_t netns, const struct shunt_addr *dst, bool h2)
{
	struct proxy_shared *sh = p->sh;
	size_t cap = p->o.max_upstream_per_pod * (h2 ? H2_UP_MAX_STREAMS : 1);
	struct pod_hold *h;

	pthread_mutex_lock(&sh->mu);
	h = hold_get(sh, netns, dst);
	if (!h) {
		errno = ENOMEM;
	} else if ((h2 ? h->h2_streams : h->held) >= cap) {
		errno = EPOD_UPSTREAM_LIMIT;
		h = NULL;
	} else if (h2) {
		h->h2_streams++;
	} else {
		h->held++;
	}
	pthread_mutex_unlock(&sh->mu);
	return h;
}

void hold_put(struct proxy *p, struct pod_hold *h, bool h2)
{
	pthread_mutex_lock(&p->sh->mu);
	if (h2)
		h->h2_streams--;
	else
		h->held--;
	pthread_mutex_unlock(&p->sh->mu);
}

/* Connections to one sandbox, of every worker (--max-upstream-conns). */
struct dst_count {
	struct shunt_addr dst;
	size_t open;
};

/* Forget the counts that dropped to zero (every LIMIT_SYNC_MS, and at the
 * end). */
void holds_sweep(struct proxy_shared *sh)
{
	struct hmap_entry *e, *next;
	size_t it;

	pthread_mutex_lock(&sh->mu);
	for (e = hmap_first(&sh->holds, &it); e; e = next) {
		struct pod_hold *h = e->val;

		next = hmap_next(&sh->holds, e, &it);
		if (!h->held && !h->h2_streams) {
			hmap_del(&sh->holds, &h->k, sizeof(h->k));
			free(h);
		}
	}
	for (e = hmap_first(&sh->dsts, &it); e; e = next) {
		struct dst_count *d = e->val;

		next = hmap_next(&sh->dsts, e, &it);
		if (!d->open) {
			hmap_del(&sh->dsts, &d->dst, sizeof(d->dst));
			free(d);
		}
	}
	pthread_mutex_unlock(&sh->mu);
}

bool dst_take(struct proxy *p, const struct shunt_addr *dst)
{
	struct proxy_shared *sh = p->sh;
	struct shunt_addr k = *dst;
	struct dst_count *d;
	int err = 0;

	k.pad = 0;
	pthread_mutex_lock(&sh->mu);
	d = hmap_get(&sh->dsts, &k, sizeof(k));
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (d) {
			d->dst = k;
			if (hmap_put(&sh->dsts, &d->dst, sizeof(d->dst), d, NULL)) {
				free(d);
				d = NULL;
			}
		}
	}
	if (!d)
		err = ENOMEM;
	else if (d->open >= p->o.max_upstream_per_dst)
		err = EUPSTREAM_LIMIT;
	else
		d->open++;
	pthread_mutex_unlock(&sh->mu);
	if (err == EUPSTREAM_LIMIT)
		p->st.upstream_limit++;
	errno = err;
	return !err;
}

void dst_put(struct proxy *p, const struct shunt_addr *dst)
{
	struct proxy_shared *sh = p->sh;
	struct shunt_addr k = *dst;
	struct dst_count *d;

	k.pad = 0;
	pthread_mutex_lock(&sh->mu);
	d = hmap_get(&sh->dsts, &k, sizeof(k));
	/* At zero it stays until holds_sweep(): a keyed request counts its
	 * pooled connection in and out, and should not allocate each time. */
	if (d && d->open)
		d->open--;
	pthread_mutex_unlock(&sh->mu);
}

/* Lines about limits: at most one per LIMIT_LOG_MS, so a pod hammering at
 * its cap cannot flood the log. Returns NULL when this one is held back,
 * else the line's tail: how often it happened, and how many lines were
 * held back since the last one. */
const char *limit_log(struct proxy *p, uint64_t times, char *buf, size_t len)
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
const char *pod_name(const struct pod *pod, char *buf, size_t len)
{
	int af = pod->peer.family == SHUNT_FAMILY_V4 ? AF_INET : AF_INET6;

	if (!inet_ntop(af, pod->peer.addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* shunt_config.flags as the limits stand. Only the agent in charge writes
 * them: a draining one has a successor, or no listener in the sockmap.
 * Under sh->mu. */
static void limits_to_kernel(struct proxy_shared *sh)
{
	uint32_t flags = (sh->conn_limited ? SHUNT_CFG_CONN_LIMIT : 0) |
			 (sh->st.pods_limited ? SHUNT_CFG_POD_LIMIT : 0);
	int err;

	if (sh->draining)
		return;
	err = shunt_bpf_set_config_flags(sh->bpf, SHUNT_CFG_CONN_LIMIT | SHUNT_CFG_POD_LIMIT,
					 flags);
	if (err)
		pr_warn("write shunt_config flags %#x: %s", flags, strerror(-err));
}

/* Under sh->mu. */
static void conn_limit_set(struct proxy *p, bool on)
{
	struct proxy_shared *sh = p->sh;
	char tail[96];

	sh->conn_limited = on;
	limits_to_kernel(sh);
	if (on) {
		sh->st.conn_limit++;
		if (limit_log(p, sh->st.conn_limit, tail, sizeof(tail)))
			pr_warn("connection limit (--max-conns %zu) reached: new connections go to "
				"their destinations uncaptured until %zu or fewer are open (%s)",
				p->o.max_conns, limit_resume_at(p->o.max_conns), tail);
	} else {
		pr_debug("back under --max-conns %zu: capturing again", p->o.max_conns);
	}
}

void conn_count_up(struct proxy *p)
{
	struct proxy_shared *sh = p->sh;
	size_t n = atomic_fetch_add(&sh->active, 1) + 1;

	p->st.active++;
	/*
	 * At a limit the kernel stops capturing (fail open: the connections
	 * go where the applications were going). Connections captured before
	 * it heard are here already, at most a listen backlog of them: they
	 * are served like any other, since the only alternative left would be
	 * to refuse them.
	 */
	if (!p->o.max_conns || n < p->o.max_conns)
		return;
	if (n > p->o.max_conns)
		p->st.over_limit++;
	pthread_mutex_lock(&sh->mu);
	/* Counted again under the lock: a close on another worker may have
	 * taken the node back under the cap meanwhile, and found no limit
	 * to lift. */
	if (!sh->conn_limited && atomic_load(&sh->active) >= p->o.max_conns)
		conn_limit_set(p, true);
	pthread_mutex_unlock(&sh->mu);
}

void conn_count_down(struct proxy *p)
{
	struct proxy_shared *sh = p->sh;
	size_t n = atomic_fetch_sub(&sh->active, 1) - 1;

	p->st.active--;
	if (!p->o.max_conns || n > limit_resume_at(p->o.max_conns))
		return;
	pthread_mutex_lock(&sh->mu);
	/* Counted again under the lock: another worker may have taken the
	 * node back up to its cap meanwhile. */
	if (sh->conn_limited && atomic_load(&sh->active) <= limit_resume_at(p->o.max_conns))
		conn_limit_set(p, false);
	pthread_mutex_unlock(&sh->mu);
}

/* Under sh->mu. */
static void pod_limit_set(struct proxy *p, struct pod *pod, bool on)
{
	struct proxy_shared *sh = p->sh;
	struct shunt_pod_limit v = {.conns = (__u32)pod->conns,
				    .limit = (__u32)p->o.max_conns_per_pod,
				    .since_unix = (__u64)time(NULL)};
	char who[INET6_ADDRSTRLEN], tail[96];
	int err = 0;

	pod->limited = on;
	if (on)
		sh->st.pods_limited++;
	else
		sh->st.pods_limited--;
	if (!sh->draining) {
		if (on && bpf_map_update_elem(sh->bpf->pod_limit_fd, &pod->netns, &v, BPF_ANY))
			err = -errno;
		else if (!on && bpf_map_delete_elem(sh->bpf->pod_limit_fd, &pod->netns) &&
			 errno != ENOENT)
			err = -errno;
	}
	if (err)
		pr_warn("pod %s (netns %llu): %s shunt_pod_limit: %s",
			pod_name(pod, who, sizeof(who)), (unsigned long long)pod->netns,
			on ? "add to" : "remove from", strerror(-err));
	limits_to_kernel(sh);
	if (!on) {
		pr_debug("pod %s (netns %llu) back under --max-conns-per-pod: captured again",
			 pod_name(pod, who, sizeof(who)), (unsigned long long)pod->netns);
		return;
	}
	sh->st.pod_limit++;
	if (limit_log(p, sh->st.pod_limit, tail, sizeof(tail)))
		pr_warn("pod %s (netns %llu) reached --max-conns-per-pod %zu: its new connections "
			"go to their destinations uncaptured until it holds %zu or fewer (%s)",
			pod_name(pod, who, sizeof(who)), (unsigned long long)pod->netns,
			p->o.max_conns_per_pod, limit_resume_at(p->o.max_conns_per_pod), tail);
}

/* c connected from the netns filed for it; count it against its pod (of
 * every worker: the pods are shared). */
void pod_attach(struct conn *c, uint64_t netns)
{
	struct proxy *p = c->p;
	struct proxy_shared *sh = p->sh;
	struct pod *pod;

	pthread_mutex_lock(&sh->mu);
	pod = hmap_get(&sh->pods, &netns, sizeof(netns));
	if (!pod) {
		pod = calloc(1, sizeof(*pod));
		if (!pod)
			goto out; /* not counted: the node's limit still holds */
		pod->netns = netns;
		pod->peer = c->peer;
		if (hmap_put(&sh->pods, &pod->netns, sizeof(pod->netns), pod, NULL)) {
			free(pod);
			goto out;
		}
	}
	c->pod = pod;
	pod->conns++;
	if (!p->o.max_conns_per_pod || pod->conns < p->o.max_conns_per_pod)
		goto out;
	if (pod->conns > p->o.max_conns_per_pod)
		p->st.over_limit++; /* captured before the kernel heard: served */
	if (!pod->limited)
		pod_limit_set(p, pod, true);
out:
	pthread_mutex_unlock(&sh->mu);
}

void pod_detach(struct conn *c)
{
	struct proxy *p = c->p;
	struct proxy_shared *sh = p->sh;
	struct pod *pod = c->pod;

	c->pod = NULL;
	pthread_mutex_lock(&sh->mu);
	pod->conns--;
	if (pod->limited && pod->conns <= limit_resume_at(p->o.max_conns_per_pod))
		pod_limit_set(p, pod, false);
	if (!pod->conns) {
		hmap_del(&sh->pods, &pod->netns, sizeof(pod->netns));
		free(pod);
	}
	pthread_mutex_unlock(&sh->mu);
}

/*
 * Make the kernel's view of the limits ours again: shunt_pod_limit holds
 * exactly the pods this proxy limits, the flags say so. Entries of an agent
 * before us (a takeover, a crash) or of a write that raced one go here, at
 * the latest LIMIT_SYNC_MS after they appeared. Two system calls when
 * nothing is limited.
 */
void limits_reconcile(struct proxy_shared *sh)
{
	int fd = sh->bpf->pod_limit_fd;
	__u64 key, next;
	void *prev = NULL;
	uint64_t present = 0;

	pthread_mutex_lock(&sh->mu);
	if (sh->draining)
		goto out;
	for (unsigned int i = 0; i < 2 * SHUNT_MAX_PODS; i++) {
		struct pod *pod;

		if (bpf_map_get_next_key(fd, prev, &next))
			break;
		pod = hmap_get(&sh->pods, &next, sizeof(next));
		if (pod && pod->limited) {
			present++;
			key = next;
			prev = &key;
			continue;
		}
		/* the next lookup continues after prev, as before */
		bpf_map_delete_elem(fd, &next);
	}
	if (present != sh->st.pods_limited) {
		size_t it;

		for (struct hmap_entry *e = hmap_first(&sh->pods, &it); e;
		     e = hmap_next(&sh->pods, e, &it)) {
			struct pod *pod = e->val;
			struct shunt_pod_limit v = {.conns = (__u32)pod->conns,
						    .limit = (__u32)sh->o->max_conns_per_pod,
						    .since_unix = (__u64)time(NULL)};

			if (pod->limited)
				bpf_map_update_elem(fd, &pod->netns, &v, BPF_NOEXIST);
		}
	}
	limits_to_kernel(sh);
out:
	pthread_mutex_unlock(&sh->mu);
}

int proxy_shared_init(struct proxy_shared *sh, const struct proxy_opts *o, struct shunt_bpf *bpf,
		      struct view *view)
{
	memset(sh, 0, sizeof(*sh));
	sh->o = o;
	sh->bpf = bpf;
	sh->view = view;
	sh->track_pods =
		bpf && bpf->record_src && (o->max_conns_per_pod || o->max_upstream_per_pod);
	return -pthread_mutex_init(&sh->mu, NULL);
}

void proxy_shared_free(struct proxy_shared *sh)
{
	struct hmap_entry *e;
	size_t it;

	holds_sweep(sh);
	for (e = hmap_first(&sh->dsts, &it); e; e = hmap_next(&sh->dsts, e, &it))
		free(e->val);
	hmap_free(&sh->dsts);
	hmap_free(&sh->pods);
	hmap_free(&sh->holds);
	pthread_mutex_destroy(&sh->mu);
}
