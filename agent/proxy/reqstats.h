/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the proxy counts per request, for the metrics endpoint: requests by
 * service, destination and outcome; a latency histogram by destination;
 * parse errors by reason. Plain structs, no I/O.
 *
 * A request is counted once, when it ends, if it got as far as a routing
 * decision or an answer of shunt's own:
 *   destination  baseline | sandbox: the response came from there;
 *                error: shunt answered itself (400, 408, 431, 502, 503, 504)
 *   outcome      1xx..5xx: the class of the final status the client got
 *                (101 for an upgrade: the tunnel after it is not a request);
 *                upstream_error: the upstream failed after part of the
 *                response went out, the client connection was closed;
 *                timeout: the response stalled half-way and the connection
 *                was closed (a timeout before any response byte is shunt's
 *                own 408/504: destination error);
 *                client_abort: the client closed or reset the connection
 *                before the response was complete.
 * Duration: from the first byte of the request in the proxy's hands (for a
 * pipelined request: the end of the previous response) to the last byte of
 * the response written to the client socket; for an upgrade, to the
 * arrival of the 101 (or 2xx to CONNECT); for an abort, to the close.
 */
#ifndef SHUNT_REQSTATS_H
#define SHUNT_REQSTATS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

#include "proxy/http.h"

enum rs_dest { RS_DEST_BASELINE, RS_DEST_SANDBOX, RS_DEST_ERROR, RS_DEST_MAX };

/* How the request came: an HTTP/1.x request, or an HTTP/2 stream. */
enum rs_proto { RS_HTTP1, RS_HTTP2, RS_PROTO_MAX };

enum rs_outcome {
	RS_1XX,
	RS_2XX,
	RS_3XX,
	RS_4XX,
	RS_5XX,
	RS_UPSTREAM_ERROR,
	RS_TIMEOUT,
	RS_CLIENT_ABORT,
	RS_OUTCOME_MAX,
};

extern const char *const rs_dest_names[RS_DEST_MAX];
extern const char *const rs_outcome_names[RS_OUTCOME_MAX];
extern const char *const rs_proto_names[RS_PROTO_MAX];

/* The outcome for a final status (100..599; anything else is 5xx). */
enum rs_outcome rs_outcome_of_status(int status);

/* Upper bounds of the latency buckets, in microseconds (50 us .. 10 s);
 * rs_bucket_le has the same as Prometheus "le" label values. */
#define RS_NBUCKETS 17
extern const uint64_t rs_bucket_us[RS_NBUCKETS];
extern const char *const rs_bucket_le[RS_NBUCKETS];

struct rs_hist {
	uint64_t bucket[RS_NBUCKETS]; /* not cumulative: bucket[i] counts (le[i-1], le[i]] */
	uint64_t count;		      /* all, those above the last bound too */
	uint64_t sum_ns;
};

struct rs_service {
	struct shunt_addr svc; /* family 0: an empty slot */
	uint64_t n[RS_PROTO_MAX][RS_DEST_MAX][RS_OUTCOME_MAX];
};

struct reqstats {
	/* Held while a row is added (the table may move) and while another
	 * thread merges this one into its own; counters are plain words that
	 * one worker increments and anyone may read. */
	pthread_mutex_t lock;
	struct rs_service *slots; /* open addressing; cap a power of two */
	size_t cap, n;
	size_t max;		 /* services with a row of their own */
	struct rs_service other; /* every service beyond max */
	struct rs_hist hist[RS_DEST_MAX];
	uint64_t parse_errors[HTTP_ERR_MAX];
};

/* At most max services get their own row; later ones add up in "other". */
void reqstats_init(struct reqstats *rs, size_t max);
void reqstats_free(struct reqstats *rs);
void reqstats_record(struct reqstats *rs, const struct shunt_addr *svc, enum rs_proto p,
		     enum rs_dest d, enum rs_outcome o, uint64_t duration_ns);

/* Add src's counts to dst (src may be in use by its worker). */
void reqstats_merge(struct reqstats *dst, struct reqstats *src);

/* The request under way on a client connection. */
struct req_obs {
	uint64_t t0_ns;	     /* its first byte in hand (CLOCK_MONOTONIC); 0: none */
	uint64_t req_bytes;  /* request bytes read: head and body */
	uint64_t resp_bytes; /* response bytes written to the client */
	int status;	     /* shunt's own answer, 0 when none */
	uint8_t on_close;    /* enum rs_outcome if the connection closes now */
	bool routed;	     /* the proxy's dst is this request's */
};

uint64_t rs_now_ns(void);

/* One access log line (log.h) for a request that ended. */
void rs_access_log(const struct shunt_addr *svc, const char *key, enum rs_proto p, enum rs_dest d,
		   const struct shunt_addr *dst, int status, enum rs_outcome o,
		   const struct req_obs *obs, uint64_t duration_ns);

#endif /* SHUNT_REQSTATS_H */
