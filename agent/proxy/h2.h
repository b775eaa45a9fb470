/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * HTTP/2 on captured connections: every stream routed by its own key.
 *
 * libnghttp2 does the framing, HPACK and flow control on both sides; this
 * is the glue. A client connection that opens with the HTTP/2 preface (or
 * upgrades with "Upgrade: h2c") gets a server session (struct h2cc, in
 * h2.c). Each of its streams (struct h2s) is routed by route_decide() from
 * its own header block and forwarded on an upstream session (struct h2up,
 * h2up.c) to the chosen destination. Upstream sessions are pooled by
 * destination on the pool's mux ring and carry streams of many client
 * connections, up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS.
 *
 * Flow control: a stream's DATA is held in the stream (req / resp) until
 * the other session takes it; only then is the sender's stream window
 * opened again (nghttp2_session_consume_stream). A slow reader stalls its
 * own stream and nothing else; connection windows are opened on receipt.
 * Memory: at most H2_STREAM_WINDOW per stream and direction.
 *
 * Sessions write through a "dirty" list: a callback of one session that
 * gives the other one work (resume a deferred stream, open a window,
 * submit a frame) marks it, and h2_flush_dirty() writes each marked
 * session once the callbacks returned (nghttp2 is not re-entrant).
 */
#ifndef SHUNT_H2_H
#define SHUNT_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <nghttp2/nghttp2.h>
#include <shunt/shunt.h>

#include "core/buf.h"
#include "core/loop.h"
#include "core/timer.h"
#include "proxy/infer.h"
#include "proxy/pool.h"
#include "proxy/routekey.h"

#define H2_STREAM_WINDOW  (64 * 1024)	/* per stream and direction */
#define H2_CONN_WINDOW	  (1024 * 1024) /* connection windows, opened on receipt */
#define H2_MAX_STREAMS	  100		/* a client's concurrent streams (advertised) */
#define H2_UP_MAX_STREAMS 100		/* streams we open on one upstream session */
#define H2_OUT_HIGH	  (64 * 1024)	/* frames queued for a socket before we wait */
#define H2_BLIND_RETRIES  6		/* see h2s_upstream_closed */
#define H2_RESET_BURST	  1000		/* as nghttp2's own RST_STREAM limit */
#define H2_RESET_RATE	  33		/* tokens a second */
#define H2_PREFACE	  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN	  24

struct proxy;
struct conn;
struct h2s;

/* What both session kinds share: a socket, its output, the dirty mark. */
struct h2io {
	struct proxy *p;
	nghttp2_session *ng;
	int fd;
	bool rd, wr, eof, dead;
	bool stop;     /* read no more: the session is being torn down */
	bool rx;       /* some bytes came from the peer */
	bool upstream; /* a struct h2up (else a struct h2cc) */
	bool dirty;
	struct h2io *dirty_next;
	struct buf out; /* frames nghttp2 produced, not yet written */
};

/* One header block, copied out of nghttp2's callbacks. */
struct h2hb {
	struct buf b; /* names and values, back to back */
	struct h2f {
		uint32_t no, nl, vo, vl;
	} * f;
	uint32_t n, cap;
	size_t list_size; /* RFC 9113 section 6.5.2: name + value + 32 each */
};

/* The HTTP/2 side of a client connection (conn.h2). */
struct h2cc {
	struct h2io io;
	struct conn *c;
	struct h2s *streams; /* open on this connection, or still upstream */
	size_t n_streams;
	bool goaway; /* GOAWAY sent (draining): finish what is open, then close */
	/* Streams the client reset after they were opened upstream (rapid
	 * reset, CVE-2023-44487): a token bucket of H2_RESET_BURST tokens,
	 * H2_RESET_RATE a second. Empty: the connection is told to calm
	 * down (GOAWAY ENHANCE_YOUR_CALM) and nothing more is routed. */
	uint32_t reset_tokens;
	uint64_t reset_refill_ms;
	bool calm;
};

/* An upstream session to one destination. */
struct h2up {
	struct ev_handler h; /* first: the loop hands this pointer back */
	struct h2io io;
	struct shunt_addr dst;
	struct pool_dst *pool;
	struct pool_link link; /* on the pool's mux ring while it takes streams */
	bool on_mux;
	bool connected, goaway;
	bool settings;	      /* the peer's SETTINGS came: it speaks HTTP/2 */
	int conn_err;	      /* connect() failed at once with this errno */
	struct conn *waiters; /* Upgrade: h2c requests waiting for settings */
	bool counted;	      /* one of dst's --max-upstream-conns (dst_take) */
	struct h2s *streams;  /* carried by this session */
	size_t n_streams;
	struct timer idle;	 /* no stream for POOL_IDLE_MS: closed */
	struct timer connecting; /* not connected after --connect-timeout: failed */
	struct h2up *dead_next;
	struct h2up *all_prev, *all_next; /* every session, for stop */
};

/* One stream, from the client's HEADERS to the end of both directions. */
struct h2s {
	struct h2cc *cc;
	int32_t id; /* on the client connection; 0 once closed there */
	struct h2up *up;
	int32_t up_id; /* on up; 0: not opened (yet) or closed */
	struct h2s *cnext, *cprev, *unext, *uprev;
	struct h2hb reqh, req_trl, resph, resp_trl;
	struct buf req, resp;	/* DATA received, not yet taken by the other side */
	bool req_end, resp_end; /* END_STREAM received from that side */
	bool req_deferred, resp_deferred;
	bool routed, resp_sent, resp_final, answered;
	bool grpc, is_head, to_sandbox, fallback;
	bool up_connected;  /* its session had connected when it was submitted */
	bool up_unsettled;  /* ... had not had the peer's SETTINGS yet */
	bool up_stopped;    /* the upstream answered and wants no more request */
	bool resp_end_sent; /* END_STREAM went to the client */
	uint8_t attempts;
	uint64_t req_fwd; /* request body bytes handed to the upstream session */
	struct shunt_addr dst;
	struct pod_hold *hold; /* its pod's count for a sandbox dst, or NULL */
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t0_ns, req_bytes, resp_bytes;
	int status;	     /* the final status the client got (ours or the upstream's) */
	bool ours;	     /* ... and it was shunt's own answer */
	bool up_failed;	     /* the upstream failed it after its response began */
	uint32_t close_code; /* how it closed on the client connection */
	struct infer_in inf; /* an inbound request of a pod with inference on */
};

/* h2.c: client connections */
bool h2_preface_at(const char *p, size_t len); /* the whole 24-byte preface? */
/* Turn c into an HTTP/2 connection (its preface is in c->in). false when
 * out of memory (c was closed). */
bool h2_start(struct conn *c);
/* The HTTP/1 request whose head c->s holds asked for "Upgrade: h2c" with
 * the given HTTP2-Settings: answer 101 and make it stream 1 (routed by
 * its own key); the connection is HTTP/2 from here on. */
void h2_upgrade(struct conn *c, const struct http_header *h, size_t n,
		const struct http_header *settings);
void h2_conn_event(struct conn *c, uint32_t events);
void h2_conn_free(struct conn *c);
void h2_conn_expired(struct conn *c);
void h2_conn_drain(struct conn *c);
/* Write every session marked dirty. */
void h2_flush_dirty(struct proxy *p);
void h2_mark(struct h2io *io);
void h2_hb_free(struct h2hb *hb);
int h2_hb_add(struct h2hb *hb, const uint8_t *name, size_t nl, const uint8_t *value, size_t vl);
/* The fields of hb as nghttp2 wants them (pointers into hb: valid until it
 * changes); NULL when out of memory. */
nghttp2_nv *h2_hb_nv(const struct h2hb *hb);
/* The first max fields of hb as header lines (pointers into hb); how many. */
size_t h2_hb_headers(const struct h2hb *hb, struct http_header *out, size_t max);
/* The value of the first field named name (lowercase), or NULL. */
const char *h2_hb_get(const struct h2hb *hb, const char *name, uint32_t *len);
/* Bytes of the session's output: fill io->out from nghttp2, write it.
 * false when the connection failed (the caller closes it). */
bool h2_io_flush(struct h2io *io);
/* Read everything the socket has into nghttp2. <0: close it. */
int h2_io_read(struct h2io *io);
/* A stream the upstream side is done with (up_id 0 now): answers it or
 * passes the error on. err: an HTTP/2 error code, or -errno for a
 * connection that failed. */
void h2s_upstream_closed(struct h2s *s, int err, bool refused_unprocessed);
/* Both sides are done with s: count it, free it. */
void h2s_free_if_done(struct h2s *s);
/* From the upstream: the response head (resph is complete), its body. */
void h2s_respond(struct h2s *s);
void h2s_resp_data(struct h2s *s, const uint8_t *d, size_t len, bool end);

/* h2up.c: upstream sessions */
/* Open (or find) a session to s->dst and submit s on it. false: errno
 * says why (EUPSTREAM_LIMIT, EDST_REFUSED, ...). */
bool h2up_submit(struct proxy *p, struct h2s *s);
/* s is done on its session (reset when still open there). */
void h2up_detach(struct h2s *s, uint32_t rst_code);
void h2up_close(struct h2up *u, int err);
/* More of s's request is here (or its end): wake its upstream stream. */
void h2up_kick(struct h2s *s);
/* Close every session (root NULL), or those of one pool. */
void h2up_close_all(struct proxy *p, const struct pool *root);
/* Does dst speak HTTP/2, as far as shunt knows (POOL_H2_*) from the
 * sessions of pool root? */
int h2up_speaks(struct proxy *p, struct pool *root, const struct shunt_addr *dst);
/* Find out: c waits (state C_H2WAIT) for a session to dst to show its
 * SETTINGS or fail, then h1_h2c_resume(c). false: no session could be
 * opened (errno), c does not wait. */
bool h2up_probe(struct proxy *p, const struct shunt_addr *dst, struct conn *c);
/* c stops waiting: it is closing, or timed out (then a session that
 * connected and said nothing counts as "no HTTP/2"). */
void h2up_unwait(struct conn *c, bool timed_out);
void h2up_reap(struct proxy *p);
size_t h2up_count(const struct proxy *p);

#endif /* SHUNT_H2_H */
