/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Inferred propagation: the routing key of an outbound request a pod's
 * app sent without one, taken from the inbound requests the pod is
 * serving at that moment, when (and only when) that cannot be wrong as
 * far as shunt can see.
 *
 * The rule (R), and the refusals that make it safe:
 *   R  an outbound request without a key inherits K when every inbound
 *      request in flight in the pod carries K;
 *   G  nothing when an inbound request began or ended (its response
 *      began) less than guard_ns ago, or the app has written a response
 *      shunt has not read yet: a call made right after answering is not
 *      part of the answered request, and may overlap the next one; and
 *      the order in which shunt reads the pod's sockets within a few
 *      microseconds is not the order in which the app wrote them;
 *   L  never for an outbound path that has been seen called with no
 *      inbound request in flight: a timer's or a queue's call, which
 *      would inherit whatever request happens to be in flight;
 *   W  never for a path before it has been seen min_busy times, all with
 *      a request in flight, AND the pod has been idle (nothing in
 *      flight) for learn_idle_ns in all since its first call: a timer's
 *      or a post-response path gets that long to show itself idle (a pod
 *      that is never idle never gets a key inferred);
 *   U  nothing while the pod serves work shunt does not see: inbound
 *      connections to its ports that did not come through shunt (open
 *      before inference began, or while the agent was stalled), and
 *      inbound tunnels (upgrades, HTTP/2 unread) are in flight without a
 *      key for as long as they last;
 *   P  nothing for a request that waited behind another on its
 *      connection (pipelined): when the app sent it is unknown;
 *   A  nothing for learn_idle_ns after an inbound request ended without
 *      its response (the client reset it, a gRPC deadline, shunt's own
 *      answer): the app's handler may still run, unseen.
 * An inbound request is "in flight" with its key from its head until its
 * response begins, then without a key until the response ends: a call
 * made while a body streams out belongs to no key.
 *
 * A pod's inference switches itself off when its traffic makes the rule
 * weak: most calls made with more than one inbound request in flight, or
 * calls to idle-called paths coinciding with keyed requests (see
 * infer_decide). It stays off until its mode is changed (setting the
 * same mode again does not undo it).
 *
 * Everything here runs on the one worker that serves the pod; no locks.
 * Times are CLOCK_MONOTONIC nanoseconds passed in (tests choose them).
 */
#ifndef SHUNT_INFER_H
#define SHUNT_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <shunt/shunt.h>

#include "core/hmap.h"

enum infer_mode {
	INFER_OFF,    /* nothing tracked */
	INFER_SHADOW, /* decide and count, never inject */
	INFER_ON,     /* inject what was decided */
};

/* What became of an outbound request without a key. */
enum infer_outcome {
	INFER_DECIDED,	 /* a key: injected (on) or would have been (shadow) */
	INFER_IDLE,	 /* nothing in flight: its path is idle-called from now on (L) */
	INFER_AMBIGUOUS, /* in-flight requests without a key, or with different keys */
	INFER_REFUSED_IDLE_PATH,
	INFER_REFUSED_RECENT_END,   /* G: a response began less than guard_ns ago */
	INFER_REFUSED_RECENT_BEGIN, /* G: a request began less than guard_ns ago */
	INFER_REFUSED_FINISHING,    /* G: a response the app wrote waits to be read */
	INFER_REFUSED_LEARNING,	    /* W */
	INFER_REFUSED_UNTRACKED,    /* U */
	INFER_REFUSED_PIPELINED,    /* P */
	INFER_REFUSED_ABORTED, /* A: a request ended without its response, its handler may run on */
	INFER_REFUSED_TABLE_FULL, /* no room to remember the path */
	INFER_REFUSED_OFF,	  /* switched itself off (unsafe) */
	INFER_OUTCOME_MAX,
};

extern const char *const infer_outcome_names[INFER_OUTCOME_MAX];
extern const char *const infer_mode_names[3];

/* The property that marks an inferred key in the baggage line shunt adds:
 *   baggage: sd-routing-key=dev-a;shunt-inferred
 * A sandbox may refuse such requests (for mutating methods, say). */
#define INFER_BAGGAGE_PROPERTY "shunt-inferred"

/* The source of shunt's relays to a pod's app over IPv4 (a loopback
 * address no one else uses): the app sees its callers as this. */
#define INFER_RELAY_SRC4 "127.77.0.1"

#define INFER_GUARD_NS (2 * 1000 * 1000ULL) /* G, after an end */
/* G, after a begin: longer than the proxy takes to read what the pod's
 * sockets hold (the order it reads them in is not the order they were
 * written in), shorter than an app takes to read a request and call out. */
#define INFER_BEGIN_GUARD_NS (500 * 1000ULL)
#define INFER_MIN_BUSY	     3				  /* W */
#define INFER_LEARN_IDLE_NS  (30 * 1000 * 1000 * 1000ULL) /* W, default */
#define INFER_MAX_PATHS	     4096			  /* per pod */
#define INFER_PATH_MAX	     256			  /* longer paths are cut (merged: safer) */
/* The safety window: over the last INFER_WINDOW outbound calls without a
 * key made with something in flight, inference switches off when more
 * than half had more than one inbound request in flight, or more than a
 * quarter were idle-called paths coinciding with keyed requests. */
#define INFER_WINDOW 256

/* An inbound request, while it is tracked (embedded in the stream). */
struct infer_in {
	struct infer_in *prev, *next;
	struct infer_pod *pod; /* NULL: not tracked (or no longer) */
	bool h2;	       /* in a struct h2s (else a struct stream) */
	bool keyed;
	uint64_t begin_ns;
	char key[SHUNT_ROUTE_KEY_LEN];
};

struct infer_stats {
	uint64_t inbound, inbound_keyed; /* requests tracked */
	uint64_t keyed_calls;		 /* outbound with the app's own key: untouched */
	uint64_t calls;			 /* outbound without a key */
	uint64_t outcome[INFER_OUTCOME_MAX];
	uint64_t injected;
	uint64_t inject_failed; /* decided, on, but the head had no room */
	uint64_t switched_off;
};

struct infer_pod {
	enum infer_mode mode;
	bool off;      /* switched itself off: why says why */
	char why[160]; /* "" while on */
	uint64_t guard_ns, begin_guard_ns;
	uint32_t min_busy;
	uint64_t learn_idle_ns;
	struct infer_in *in_flight;
	size_t n_in, n_in_keyed;
	uint64_t last_end_ns;	/* the last response that began; 0: none */
	uint64_t last_begin_ns; /* the last request that began; 0: none */
	/* Time with nothing in flight: idle_total_ns up to idle_since_ns,
	 * and since then while n_in is 0. */
	uint64_t idle_total_ns, idle_since_ns;
	size_t untracked;	/* U: inbound connections that bypass shunt (set by its owner) */
	uint64_t hold_until_ns; /* A: nothing before this */
	struct hmap paths;	/* struct infer_path_key -> struct infer_path */
	/* Has the app written bytes of e's response shunt has not read?
	 * NULL: never. */
	bool (*finishing)(const struct infer_in *e);
	/* Called last, before a key is decided: does work that bypasses
	 * shunt run in the pod now (sets untracked)? NULL: untracked as set. */
	void (*rescan)(struct infer_pod *ip);
	uint32_t win_calls, win_multi, win_coincide;
	struct infer_stats st;
};

/* now_ns: when the pod's idle time starts counting. */
void infer_pod_init(struct infer_pod *ip, enum infer_mode mode, uint64_t now_ns);
/* Untracks every request in flight (their streams keep their infer_in,
 * now inert) and frees the paths. */
void infer_pod_free(struct infer_pod *ip);
/* A new mode: another mode than the current one clears a switch-off and
 * its window (the paths learnt are kept). */
void infer_pod_set_mode(struct infer_pod *ip, enum infer_mode mode, uint64_t now_ns);

/* Inbound request e begins: key (NUL-terminated) is its routing key, or
 * NULL without one (or with an unusable one, or work that is not a
 * request: a tunnel). */
void infer_in_begin(struct infer_pod *ip, struct infer_in *e, const char *key, uint64_t now_ns);
/* Its response ended: no longer in flight. Idempotent; e may never have
 * begun (zeroed). */
void infer_in_end(struct infer_in *e, uint64_t now_ns);
/* Its response began: in flight on, without a key (a call made while the
 * body streams out belongs to no key). */
void infer_in_unkey(struct infer_in *e);
/* It ended without its response (the client left, a deadline, shunt
 * answered): the app's handler may run on, unseen, so nothing is inferred
 * for learn_idle_ns (A). */
void infer_in_abort(struct infer_in *e, uint64_t now_ns);
/* Work shunt did not see may run on (A): nothing for learn_idle_ns. */
void infer_hold(struct infer_pod *ip, uint64_t now_ns);
/* Forget what was learnt (the paths, the idle time): inference was not
 * watching the pod for a while. */
void infer_pod_relearn(struct infer_pod *ip, uint64_t now_ns);

/* An outbound request without a key, to dst with request target
 * target[0..tlen); pipelined: it waited behind another on its connection.
 * The outcome, with the key in key_out (SHUNT_ROUTE_KEY_LEN) when
 * INFER_DECIDED. Counts it. */
enum infer_outcome infer_decide(struct infer_pod *ip, uint64_t now_ns, const struct shunt_addr *dst,
				const char *target, size_t tlen, bool pipelined, char *key_out);

/* Idle time so far (for status). */
uint64_t infer_idle_ns(const struct infer_pod *ip, uint64_t now_ns);

/* Is a path table entry (struct infer_pod.paths' value) idle-called? */
bool infer_path_idle(const void *path);

/* The path part of a request target, normalised for the path table: no
 * query or fragment, an absolute-form's scheme and authority dropped,
 * segments that look like identifiers (all digits, or 16 or more hex
 * digits and dashes) replaced by "*". Returns its length (<= outsz-1). */
size_t infer_path_norm(const char *target, size_t tlen, char *out, size_t outsz);

#endif /* SHUNT_INFER_H */
