/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Connect-time capture: decide whether a connect() goes to the proxy. */
#ifndef SHUNT_BPF_CAPTURE_H
#define SHUNT_BPF_CAPTURE_H

#include "maps.h"
#include "addr.h"
#include "orig.h"

/* Is there a live listener in this slot of map (shunt_listeners or
 * shunt_pod_socks)? A sockmap drops a socket as soon as it closes, so
 * this is false from the moment the agent dies. */
static __always_inline int listener_alive(void *map, __u32 slot)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(map, &slot);

	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/*
 * The override for a connect() to dst from this socket's network namespace
 * or from the cgroup of the calling task or any of its ancestors (the
 * deepest wins: a container's own override beats its pod's), or NULL.
 */
static __always_inline const struct shunt_override *override_find(struct bpf_sock_addr *ctx,
								  const struct shunt_addr *dst)
{
	struct shunt_override_key k = {};
	const struct shunt_override *o, *found;

	k.dst = *dst;
	k.src_kind = SHUNT_SRC_CGROUP;
	found = NULL;
	for (int level = 1; level < SHUNT_CGROUP_LEVELS; level++) {
		k.src_id = bpf_get_current_ancestor_cgroup_id(level);
		if (!k.src_id)
			break; /* deeper than the task's own cgroup */
		o = bpf_map_lookup_elem(&shunt_overrides, &k);
		if (o)
			found = o;
	}
	if (found)
		return found;
	k.src_kind = SHUNT_SRC_NETNS;
	k.src_id = bpf_get_netns_cookie(ctx);
	return bpf_map_lookup_elem(&shunt_overrides, &k);
}

/*
 * Should this connect() to dst go elsewhere? Returns the address to
 * connect to instead, an override's target or the proxy, having recorded
 * the original destination under the socket's cookie, or NULL to leave
 * the connect() alone.
 */
static __always_inline const struct shunt_addr *capture(struct bpf_sock_addr *ctx,
							const struct shunt_addr *dst, __u32 slot)
{
	const struct shunt_service *svc;
	const struct shunt_override *o;
	struct shunt_config *cfg;
	const struct shunt_addr *proxy;
	const struct shunt_inpod *pod;
	struct bpf_sock *sk;
	__u32 flags = 0;
	__u64 netns;
	int alive;

	stat_inc(SHUNT_STAT_CONNECT);
	/* The common case, and the only cost for services nobody steers. */
	svc = bpf_map_lookup_elem(&shunt_services, dst);
	if (!svc)
		return NULL;

	cfg = config_get();
	if (!cfg)
		return NULL;
	sk = ctx->sk;
	if (sk && sk->mark == cfg->mark) {
		stat_inc(SHUNT_STAT_OWN_SOCKET);
		return NULL;
	}
	/* An override needs no proxy, so it applies whether or not the
	 * agent is alive: a sandbox never falls back to the shared database
	 * because the agent restarts. Without the record getpeername() shows
	 * the new target; still better than the wrong database. */
	if (svc->overrides) {
		o = override_find(ctx, dst);
		if (o && o->to.family == dst->family) {
			orig_record(ctx, dst, SHUNT_ORIG_OVERRIDE);
			stat_inc(SHUNT_STAT_OVERRIDDEN);
			return &o->to;
		}
	}
	if (!svc->routes)
		return NULL;
	/* A pod served in-pod goes to its own listener, inside its network
	 * namespace: the proxy's upstream connection then leaves from the
	 * pod's address, as the application's would have. */
	netns = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&shunt_inpod, &netns);
	if (pod) {
		__u32 v6 = slot == SHUNT_LISTENER_V6;

		proxy = v6 ? &pod->listen6 : &pod->listen4;
		alive = proxy->family && listener_alive(&shunt_pod_socks, 2 * pod->slot + v6);
		flags = SHUNT_ORIG_INPOD;
	} else {
		proxy = slot == SHUNT_LISTENER_V4 ? &cfg->proxy4 : &cfg->proxy6;
		alive = proxy->family && listener_alive(&shunt_listeners, slot);
	}
	if (!alive) {
		stat_inc(SHUNT_STAT_FAIL_OPEN);
		return NULL;
	}
	/* At a limit the proxy would have to refuse the connection; left
	 * alone, it reaches where the application was going. */
	if (cfg->flags & SHUNT_CFG_CONN_LIMIT) {
		stat_inc(SHUNT_STAT_CONN_LIMIT);
		return NULL;
	}
	if ((cfg->flags & SHUNT_CFG_POD_LIMIT) && bpf_map_lookup_elem(&shunt_pod_limit, &netns)) {
		stat_inc(SHUNT_STAT_POD_LIMIT);
		return NULL;
	}
	/* Without the record the proxy could not find the original
	 * destination: better uncaptured than broken. */
	if (orig_record(ctx, dst, flags))
		return NULL;
	stat_inc(SHUNT_STAT_CAPTURED);
	if (pod)
		stat_inc(SHUNT_STAT_INPOD);
	return proxy;
}

#endif /* SHUNT_BPF_CAPTURE_H */
