// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Limits: client connections per pod and per node (told to the kernel,
 * which then stops capturing: fail open), and the upstream connections a
 * pod's requests hold to one sandbox.
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
#include "proxy/proxy_int.h"

/* The count of connections one pod's requests hold to dst, created at 0
 * when asked; NULL only when out of memory. */
struct pod_hold *hold_get(struct proxy *p, uint64_t netns, const struct shunt_addr *dst)
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
void holds_sweep(struct proxy *p)
{
	struct hmap_entry *e, *next;
	size_t it;

	for (e = hmap_first(&p->holds, &it); e; e = next) {
		struct pod_hold *h = e->val;

		next = hmap_next(&p->holds, e, &it);
		if (!h->held && !h->h2_streams) {
			hmap_del(&p->holds, &h->k, sizeof(h->k));
			free(h);
		}
	}
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

void conn_limit_set(struct proxy *p, bool on)
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
void pod_attach(struct conn *c, uint64_t netns)
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

void pod_detach(struct conn *c)
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
void limits_reconcile(struct proxy *p)
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
