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
#include "proxy/h2.h"
#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/pool.h"
#include "proxy/reqstats.h"
#include "proxy/route.h"
#include "state/store.h"
#include "core/util.h"
#include "proxy/proxy_int.h"

int proxy_start(struct proxy **out, const struct proxy_opts *o, struct loop *loop,
		struct proxy_shared *sh, int id)
{
	struct proxy *p = calloc(1, sizeof(*p));
	int err = 0;

	if (!p)
		return -ENOMEM;
	p->o = *o;
	p->id = id;
	p->loop = loop;
	p->sh = sh;
	p->snap = view_enter(sh->view, id);
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

	inpod_init(p);
	infer_init(p);
	tcpod_init(p);
	for (int i = 0; i < o->n_listen && !err; i++)
		err = listen_on(p, &o->listen[i]);
	if (!err && !id && o->n_pods)
		inpod_adopt(p, o->pods, o->n_pods);
	if (!err && !id && o->n_infers)
		infer_adopt(p, o->infers, o->n_infers);
	if (!err && !id && o->tc_handed)
		tcpod_adopt(p, o->tcpods, o->n_tcpods, o->tc_lfd);
	/* What is left was another worker's of an agent with more of them. */
	for (int i = 0; i < p->o.n_inherited && !err; i++)
		if (p->o.inherited[i] >= 0)
			listen_adopt(p, p->o.inherited[i]);
	if (err) {
		proxy_stop(p);
		return err;
	}
	*out = p;
	return 0;
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
		/* Empty the sockmap slots first (worker 0 filled them): new
		 * connect()s fail open from here on. Connections already on
		 * their way to the listeners are still accepted for a moment,
		 * then the listeners close. */
		for (int i = 0; i < p->n_listeners && !p->id; i++)
			shunt_bpf_set_listener(p->sh->bpf,
					       p->listeners[i].family == SHUNT_FAMILY_V4
						       ? SHUNT_LISTENER_V4
						       : SHUNT_LISTENER_V6,
					       -1);
		p->listen_close_at = p->loop->now_ms + LISTEN_GRACE_MS;
	}
	inpod_drain(p, !handed_over);
	if (!p->id)
		tcpod_drain(p, handed_over);
	pool_sweep(&p->pool, p->loop->now_ms, POOL_IDLE_MS, true, up_close_idle);
	inpod_pools_sweep(p, true);
	/* A response whose head already went out cannot say "close" any
	 * more: that client is told on its next one. */
	for (struct conn *c = p->clients; c; c = c->next)
		if (c->state == C_REQUEST && c->s.resp_started)
			c->s.close_state = CLOSE_TOO_LATE;
		else if (c->state == C_H2)
			h2_conn_drain(c);
	h2_flush_dirty(p);
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
	inpod_stop_all(p, !p->draining);
	if (!p->id)
		tcpod_stop_all(p);
	while (p->clients)
		client_close(p->clients);
	h2up_close_all(p, NULL);
	p->h2_dirty = NULL; /* every session is closed: nothing to write */
	pool_sweep(&p->pool, p->loop->now_ms, POOL_IDLE_MS, true, up_close_idle);
	proxy_reap(p);
	pool_free(&p->pool);
	proxy_reap(p);
	inpod_fini(p);
	if (p->spare_fd >= 0)
		close(p->spare_fd);
	while (p->n_spare)
		free(p->spare[--p->n_spare]);
	reqstats_free(&p->rs);
	free(p->hdrs);
	free(p);
}

void proxy_tick(struct proxy *p)
{
	uint64_t now = p->loop->now_ms;

	h2_flush_dirty(p);
	if (p->listen_close_at && now >= p->listen_close_at)
		close_listeners(p);
	listeners_expire(p);
	/* proxy_tick runs after every loop iteration: these, every 250 ms,
	 * by one worker for all. */
	if (!p->id && now >= p->limit_sync_next) {
		p->limit_sync_next = now + LIMIT_SYNC_MS;
		limits_reconcile(p->sh);
		holds_sweep(p->sh);
	}
	if (p->draining && now >= p->drain_deadline) {
		if (p->clients)
			pr_warn("drain timeout: closing %llu connection(s) still open",
				(unsigned long long)p->st.active);
		while (p->clients)
			client_close(p->clients);
	}
	/* Idle connections live POOL_IDLE_MS: looking for the old ones a few
	 * times a second is plenty, and costs nothing per request. */
	if (now >= p->pool_sweep_next) {
		p->pool_sweep_next = now + POOL_SWEEP_MS;
		pool_sweep(&p->pool, now, POOL_IDLE_MS, false, up_close_idle);
		inpod_pools_sweep(p, false);
	}
	if (p->inpods_gone || p->inpods_closing)
		inpod_reap(p);
	h2_flush_dirty(p);
}

void proxy_reap(struct proxy *p)
{
	h2_flush_dirty(p); /* no dead session may stay on the list */
	while (p->dead_clients) {
		struct conn *c = p->dead_clients;

		p->dead_clients = c->next;
		if (c->inpod)
			c->inpod->conns--;
		free(c->h2);
		free(c);
	}
	h2up_reap(p);
	while (p->dead_ups) {
		struct upstream *u = p->dead_ups;

		p->dead_ups = u->dead_next;
		free(u);
	}
}
