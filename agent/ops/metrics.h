/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The metrics endpoint (--metrics-addr) and the probe endpoint
 * (--health-addr), served by one small server on the agent's event loop:
 *   GET /metrics   Prometheus text exposition format 0.0.4 (metrics only)
 *   GET /healthz   200 "ok": the event loop answers
 *   GET /readyz    200 "ok" once every program is attached and every proxy
 *                  listener is up (in the shunt_listeners sockmap), else 503
 *                  "not ready: <why>"; then a line per address family:
 *                  "ipv4 10.0.0.5:15001", "ipv6 none (...)"
 *   GET /v1/overrides?pod=UID   (metrics listener only)
 *                  200 "ready: ..." once the overrides SandboxOverrides want
 *                  for the pod are in the kernel, else 503 "pending: ..."
 *                  (`shuntctl override wait --agent`, a pod's init container)
 * HEAD too; a path the endpoint does not serve 404, another method 405, a
 * malformed request 400. One request per connection, answered with
 * Connection: close, each closed METRICS_TIMEOUT_MS after it was accepted
 * (and TCP_USER_TIMEOUT as long: an answer the client takes no byte of
 * for that long is dropped by the kernel too, not kept in an orphan).
 *
 * Each endpoint has its own connection budget: the metrics one holds at
 * most METRICS_MAX_CONNS connections, at most METRICS_MAX_CONNS_PER_SOURCE
 * of them from one client address, so that connections from a pod cannot
 * take every slot; the probe one (meant for 127.0.0.1, reached by the
 * kubelet only) holds HEALTH_MAX_CONNS, and nothing on the metrics port
 * counts against it. Connections past a limit get a 503 and are closed.
 *
 * The rendering is a pure function of struct metrics_snapshot, which the
 * server fills from the agent's state at each scrape.
 */
#ifndef SHUNT_METRICS_H
#define SHUNT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

#include "core/buf.h"
#include "k8s/uid.h"
#include "k8s/watch.h"
#include "proxy/proxy.h"
#include "proxy/reqstats.h"

#define METRICS_MAX_CONNS	     32
#define METRICS_MAX_CONNS_PER_SOURCE 2
/* Renderings of /metrics one source address gets: a bucket of
 * METRICS_SCRAPE_BURST refilled at one per METRICS_SCRAPE_EVERY_MS (a
 * rendering costs the event loop ~0.2 ms: a pod in a loop would otherwise
 * take most of it). Prometheus scrapes every 15-60 s. */
#define METRICS_SCRAPE_BURST	20
#define METRICS_SCRAPE_EVERY_MS 100
#define METRICS_SCRAPE_SOURCES	64 /* sources remembered; the oldest goes */
#define HEALTH_MAX_CONNS	8
#define METRICS_TIMEOUT_MS	5000
#define METRICS_MAX_REQUEST	4096
#define METRICS_MAX_MAPS	16

/* The scrape buckets of the sources seen last. */
struct scrape_rates {
	struct {
		struct shunt_addr peer;
		uint64_t credit_ms; /* METRICS_SCRAPE_EVERY_MS a scrape */
		uint64_t seen_ms;
	} s[METRICS_SCRAPE_SOURCES];
	unsigned int n;
};

/* May peer have /metrics rendered now? Takes one from its bucket if so. */
bool scrape_allowed(struct scrape_rates *t, const struct shunt_addr *peer, uint64_t now_ms);

struct metrics_map {
	const char *name;
	long entries; /* < 0: not known (yet); left out */
	uint32_t max_entries;
};

struct metrics_snapshot {
	const char *version;
	uint64_t start_time_unix;
	const struct proxy_stats *proxy; /* NULL: no proxy counters */
	const struct reqstats *req;	 /* NULL: no request metrics */
	uint64_t workers;		 /* the proxy's event loops */
	size_t routes;
	size_t overrides;
	struct metrics_map maps[METRICS_MAX_MAPS];
	size_t n_maps;
	const uint64_t *kernel;	      /* SHUNT_STAT_MAX counters; NULL when unreadable */
	const struct k8s_status *k8s; /* NULL: not following a cluster */
	/* Pods served in-pod (those with inference set are rendered). */
	const struct inpod_info *pods;
	size_t n_pods;
	const uint64_t *infer_kernel; /* SHUNT_INFER_STAT_MAX; NULL: not loaded */
};

/* The exposition of s, appended to out. Returns 0 or -ENOMEM. */
int metrics_render(const struct metrics_snapshot *s, struct buf *out);

/* A label value as the text format wants it inside its quotes: backslash,
 * double quote and line feed escaped as \\, \" and \n. */
void metrics_label_value(struct buf *out, const char *v);

enum metrics_target {
	METRICS_T_METRICS,
	METRICS_T_HEALTHZ,
	METRICS_T_READYZ,
	METRICS_T_OVERRIDES, /* /v1/overrides?pod=UID (k8s_overrides_ready()) */
	METRICS_T_OTHER,
};

struct metrics_request {
	enum metrics_target target;
	bool get, head;		   /* the method, when it is one of these */
	char pod[K8S_UID_LEN + 1]; /* METRICS_T_OVERRIDES: a valid uid, or "" */
};

/*
 * The request head in buf[0..len): "METHOD SP target SP HTTP/1.x" CRLF,
 * header lines, an empty line (a bare LF is tolerated). A query string is
 * ignored, except /v1/overrides's pod=UID. Returns 0 with *r filled, -EAGAIN when the head is not complete
 * yet, or 400 when it is malformed or does not fit in
 * METRICS_MAX_REQUEST bytes.
 */
int metrics_parse_request(const char *buf, size_t len, struct metrics_request *r);

/*
 * The body lines /readyz adds after its first: for IPv4 and IPv6, where
 * the proxy serves that family ("ipv4 10.0.0.5:15001") or "ipv6 none (no
 * --proxy-addr of this family)", from the n proxy listen addresses.
 */
void metrics_families(const struct shunt_addr *listen, int n, struct buf *out);

struct agent;

/* Serve /metrics, /healthz and /readyz on addr (IPv4 or IPv6, with a
 * port). Returns 0 or -errno, logged. */
int metrics_start(struct agent *a, const struct shunt_addr *addr);
/* Serve /healthz and /readyz only, on addr, with their own budget. */
int metrics_start_health(struct agent *a, const struct shunt_addr *addr);
/* Close both listeners and their connections. */
void metrics_stop(struct agent *a);

#endif /* SHUNT_METRICS_H */
