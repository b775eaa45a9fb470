// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The watcher thread and its hand-over to the main loop.
 *
 * One thread drives the four list/watch streams at once through a libcurl
 * multi handle, so it can own the whole cluster cache without a lock:
 * events are decoded and applied as they arrive, and once curl has handed
 * over everything that is buffered the SandboxRoutes they touched are
 * translated again (a burst of events costs one translation). The changed
 * routes go to the main loop as a batch, under a mutex, with an eventfd to
 * wake it; the main loop applies them to the store, which no other thread
 * touches. The proxy's loop never waits on the API server or on a
 * translation, and a stopped thread is woken with curl_multi_wakeup().
 *
 * Per resource: list (paginated) -> watch from the list's
 * resourceVersion -> watch again when the stream ends; 410 Gone (HTTP or
 * an ERROR event) relists at once; other failures relist after an
 * exponential backoff with jitter; 401 re-reads the token first. Until
 * every kind has been listed once nothing is changed, and the routes in
 * the store (recovered from the pinned maps) stay in force, also while
 * the API server is unreachable. Every completed (re)list resynchronises
 * the store completely: Kubernetes routes nothing asks for any more go.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <curl/curl.h>

#include "agent.h"
#include "k8s/watch.h"
#include "k8s/cache.h"
#include "k8s/capture.h"
#include "k8s/cgroup.h"
#include "kernel/tc.h"
#include "proxy/proxy.h"
#include "k8s/wait.h"
#include "k8s/client.h"
#include "core/buf.h"
#include "core/log.h"
#include "kernel/source.h"
#include "core/util.h"

#define K8S_LIST_LIMIT 500 /* items of a list page */
/* Pods are the many objects with many fields: smaller pages keep the
 * JSON of one page (parsed whole) small. */
#define K8S_POD_LIST_LIMIT  100
#define K8S_WATCH_TIMEOUT_S 240 /* plus up to as much again, at random */
#define K8S_BACKOFF_MIN_MS  100
#define K8S_BACKOFF_MAX_MS  10000
#define K8S_LIST_TIMEOUT_S  120
/* One page of a list, and one watch event. An object is at most what etcd
 * stores (1.5 MiB by default): a page over the cap is asked for again with
 * fewer items, down to one. Far below the DaemonSet's memory limit, also
 * with the JSON tree parsed from it. */
#define K8S_LIST_BODY_MAX    (4U << 20)
#define K8S_EVENT_MAX	     (4U << 20)
#define K8S_ERROR_BODY_MAX   4096
#define K8S_JSON_DEPTH	     64 /* managedFields nest deeply */
#define K8S_POLL_MAX_MS	     1000
#define K8S_TOKEN_CHECK_MS   60000 /* the token file's mtime, at least this often */
#define K8S_OVR_RETRY_MS     2000  /* pods selected but without a cgroup: look again */
#define K8S_CGROUP_RESCAN_MS 10000 /* ... when inotify follows new cgroups: a safety net */
/* A selector with a label key the pods were read without makes the pods
 * listed again: a few at once, then one every K8S_KEY_RELIST_MS (a token
 * bucket), so that tenants creating selectors cannot make every agent
 * hammer the API server. Keys that appear meanwhile share the next one. */
#define K8S_KEY_RELIST_BURST 3
#define K8S_KEY_RELIST_MS    10000
#define K8S_PROBLEM_LOG_MAX  50 /* lines about refused objects per change */

static const char *const k8s_paths[K8S_NKINDS] = {
	[K8S_SBR] = "/apis/shunt.dev/v1alpha1/sandboxroutes",
	[K8S_SERVICE] = "/api/v1/services",
	[K8S_SLICE] = "/apis/discovery.k8s.io/v1/endpointslices",
	[K8S_POD] = "/api/v1/pods",
	[K8S_SBO] = "/apis/shunt.dev/v1alpha1/sandboxoverrides",
};

static const char *const k8s_singular[K8S_NKINDS] = {
	[K8S_SBR] = "SandboxRoute", [K8S_SERVICE] = "Service",	   [K8S_SLICE] = "EndpointSlice",
	[K8S_POD] = "Pod",	    [K8S_SBO] = "SandboxOverride",
};

struct k8s_batch {
	struct k8s_batch *next;
	bool full; /* every desired route and override: delete the Kubernetes ones not in it */
	size_t n;
	struct k8s_op *ops; /* owner: a string of owners */
	struct hmap owners; /* "ns/name" -> a copy of it, for the ops */
	size_t novr;
	struct k8s_ovr_op *ovr;
};

struct k8s_res {
	struct k8s *k;
	enum k8s_kind kind;
	CURL *easy;
	struct curl_slist *hdrs;
	bool busy;
	bool listing;  /* else watching */
	bool relist;   /* the stream said so (410 ERROR event, garbage) */
	char why[200]; /* ... and why, unless it was a 410: relist after a backoff */
	bool synced;   /* listed at least once */
	long status;
	char rv[128];
	char *cont;	    /* continue token of a paginated list */
	unsigned int limit; /* items per list page: smaller after a page too big */
	bool too_big;	    /* this page went over K8S_LIST_BODY_MAX */
	struct hmap fresh;
	struct buf body; /* a list page, a partial event line, or an error */
	size_t events;
	uint64_t started_ms, next_ms;
	unsigned int backoff_ms;
	json_tokener *tok;
};

struct k8s {
	/* Main thread. */
	struct ev_handler h;
	struct agent *a;
	int efd;
	pthread_t thread;
	bool running;

	/* Shared, under mu. */
	pthread_mutex_t mu;
	struct k8s_batch *head, **tail;
	struct k8s_status st;
	struct k8s_wait *wait;		  /* this node's pods, for k8s_overrides_ready() */
	struct k8s_capture_set *cap_next; /* capture modes to apply (main thread takes it) */
	int stop;			  /* atomic */

	/* Watcher thread only. */
	CURLM *multi;
	struct k8s_client cl;
	uint64_t token_checked_ms;
	struct k8s_res res[K8S_NKINDS];
	struct k8s_cache cache;
	char *node;
	struct k8s_cgroups cg; /* pods' cgroups, followed with inotify */
	bool cgroups_scan;     /* a miss may scan the tree (once per translation) */
	bool wait_dirty;       /* the pods' snapshot (wait) is to be made again */
	char wait_rv[2][128];  /* ... Pods' and SandboxOverrides' resourceVersions it saw */
	uint64_t ovr_retry_ms;
	bool synced_all, need_full, said_synced;
	bool connected;
	char last_error[256];
	uint32_t rnd;
	/* Pods keep the labels whose keys are here (what the selectors use),
	 * their uid only when on this node. */
	struct hmap pod_keys;
	struct k8s_decode_opts dopts;
	bool pods_begun;		 /* the first pod list has started */
	bool pods_relist_due;		 /* a new key: list the pods again */
	unsigned int pods_relist_tokens; /* ... when there is one */
	bool pods_keys_keep;		 /* that list keeps every key known */
	uint64_t pods_relist_refill_ms;	 /* the next token comes then */
	struct hmap reported;		 /* problems logged: "why kind id other" -> what was said */

	/* Capture modes (watcher): the last snapshot handed over, the pods'
	 * generation it saw, a pod waiting for its processes. */
	struct k8s_capture_set *cap_last;
	uint64_t cap_gen, cap_retry_ms, cap_resync_ms;
	size_t cap_pending;
	uint8_t cap_default;

	/* Main thread: what the store would not take, key -> struct k8s_fail. */
	struct hmap failed_routes, failed_ovr;
	/* Main thread: the pods registered from the cluster (in-pod, TC). */
	struct k8s_capture_pod *regs;
	size_t nregs;
	size_t cap_failed;   /* registrations that failed in the last pass */
	size_t infer_failed; /* ... inference settings (shunt.dev/infer) */
	bool cap_seeded;     /* regs holds what a predecessor handed over */
};

/* The capture snapshot is handed over again this often even unchanged, so
 * that a registration that failed (an interface not up yet) is retried;
 * an in-pod pod waiting for its first process is looked for sooner. */
#define K8S_CAPTURE_RESYNC_MS  30000
#define K8S_CAPTURE_PENDING_MS 1000

struct k8s_fail {
	char *owner; /* "ns/name" of the object */
	char msg[160];
	/* What was asked for, to try again when room is made. */
	struct shunt_route route;
	struct shunt_override ovr;
};

/* Append, refusing to pass max bytes: 0, -E2BIG or -ENOMEM. */
static int body_add(struct buf *b, const char *p, size_t n, size_t max)
{
	if (buf_len(b) + n > max)
		return -E2BIG;
	return buf_append(b, p, n) ? -ENOMEM : 0;
}

static uint32_t k8s_rand(struct k8s *k)
{
	k->rnd ^= k->rnd << 13;
	k->rnd ^= k->rnd >> 17;
	k->rnd ^= k->rnd << 5;
	return k->rnd;
}

static void set_error(struct k8s *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Remember (for status) and log a failure. */
static void set_error(struct k8s *k, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(k->last_error, sizeof(k->last_error), fmt, ap);
	va_end(ap);
	pr_warn("k8s: %s", k->last_error);
}

/* ---- authentication ---------------------------------------------------- */

/* Read the token file again when it changed (a projected service account
 * token rotates) or after a 401. */
static void token_refresh(struct k8s *k)
{
	char err[300];

	k->token_checked_ms = monotonic_ms();
	if (k8s_client_token(&k->cl, err, sizeof(err)))
		set_error(k, "%s", err);
}

/* ---- requests ------------------------------------------------------------ */

static void res_fail(struct k8s_res *r, bool relist, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Try again after a backoff (exponential, with jitter), relisting. */
static void res_fail(struct k8s_res *r, bool relist, const char *fmt, ...)
{
	struct k8s *k = r->k;
	char msg[200];
	unsigned int b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : K8S_BACKOFF_MIN_MS;
	if (r->backoff_ms > K8S_BACKOFF_MAX_MS)
		r->backoff_ms = K8S_BACKOFF_MAX_MS;
	b = r->backoff_ms / 2 + k8s_rand(k) % (r->backoff_ms / 2 + 1);
	r->next_ms = monotonic_ms() + b;
	set_error(k, "%s %s: %s; %s in %u ms", k8s_kind_names[r->kind],
		  r->listing ? "list" : "watch", msg, relist ? "relisting" : "retrying", b);
	if (relist)
		r->listing = true;
}

static void res_list_reset(struct k8s_res *r)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(&r->fresh, &i); e; e = hmap_next(&r->fresh, e, &i))
		k8s_obj_free(r->kind, e->val);
	hmap_free(&r->fresh);
	free(r->cont);
	r->cont = NULL;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud);

static unsigned int list_limit(enum k8s_kind kind)
{
	return kind == K8S_POD ? K8S_POD_LIST_LIMIT : K8S_LIST_LIMIT;
}

/* The pods are about to be listed from the start: they will keep the
 * labels the selectors use now (keys no selector uses any more go). */
static int pod_keys_reset(struct k8s *k)
{
	struct hmap_entry *e;
	size_t i;

	hmap_free(&k->pod_keys);
	k->cache.new_label_keys = false;
	for (e = hmap_first(&k->cache.label_keys, &i); e;
	     e = hmap_next(&k->cache.label_keys, e, &i))
		if (hmap_put(&k->pod_keys, e->key, e->klen, (void *)1, NULL))
			return -ENOMEM;
	return 0;
}

static int res_start(struct k8s_res *r)
{
	struct k8s *k = r->k;
	const struct k8s_conn *c = &k->cl.conn;
	char *url = NULL, *esc = NULL;
	CURL *e;
	int n;

	token_refresh(k);
	if (r->kind == K8S_POD && r->listing && !r->cont) {
		/* A list for new keys keeps the old ones too: a key a selector
		 * used a moment ago is likely to come back (and would cost a
		 * list again); others (410, failures) drop what is unused. */
		if (!k->pods_keys_keep && pod_keys_reset(k))
			return -ENOMEM;
		k->pods_keys_keep = false;
		k->pods_begun = true;
	}
	e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	if (r->listing) {
		esc = r->cont ? curl_easy_escape(e, r->cont, 0) : NULL;
		n = asprintf(&url, "%s%s?limit=%u%s%s", c->server, k8s_paths[r->kind], r->limit,
			     esc ? "&continue=" : "", esc ? esc : "");
	} else {
		unsigned int t = K8S_WATCH_TIMEOUT_S + k8s_rand(k) % K8S_WATCH_TIMEOUT_S;

		esc = curl_easy_escape(e, r->rv, 0);
		n = asprintf(&url,
			     "%s%s?watch=1&resourceVersion=%s&allowWatchBookmarks=true&"
			     "timeoutSeconds=%u",
			     c->server, k8s_paths[r->kind], esc ? esc : "", t);
		/* The server ends the stream; this only catches a dead one. */
		curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)t + 60);
	}
	curl_free(esc);
	if (n < 0) {
		curl_easy_cleanup(e);
		return -ENOMEM;
	}
	if (r->listing)
		curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)K8S_LIST_TIMEOUT_S);
	r->hdrs = k8s_client_easy(&k->cl, e, NULL);
	if (!r->hdrs) {
		free(url);
		curl_easy_cleanup(e);
		return -ENOMEM;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	r->easy = e;
	r->status = 0;
	r->events = 0;
	r->relist = false;
	r->too_big = false;
	r->why[0] = '\0';
	buf_reset(&r->body);
	r->started_ms = monotonic_ms();
	if (curl_multi_add_handle(k->multi, e)) {
		curl_easy_cleanup(e);
		curl_slist_free_all(r->hdrs);
		r->hdrs = NULL;
		r->easy = NULL;
		return -ENOMEM;
	}
	r->busy = true;
	pr_debug("k8s: %s %s", k8s_kind_names[r->kind], r->listing ? "list" : "watch");
	return 0;
}

/* One watch event. Returns false when the stream must end (and r->relist
 * says whether to relist). */
static bool handle_event(struct k8s_res *r, const char *line, size_t len)
{
	struct k8s *k = r->k;
	struct json_object *ev, *obj;
	const char *type, *rv;
	char id[2 * K8S_NAME_MAX + 2], err[256];
	void *o;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return true;
	json_tokener_reset(r->tok);
	ev = json_tokener_parse_ex(r->tok, line, (int)len);
	if (!ev || json_tokener_get_error(r->tok) != json_tokener_success ||
	    json_tokener_get_parse_end(r->tok) != len) {
		json_object_put(ev);
		snprintf(r->why, sizeof(r->why), "an event is not JSON");
		r->relist = true;
		return false;
	}
	type = json_object_get_string(json_object_object_get(ev, "type"));
	obj = json_object_object_get(ev, "object");
	if (!type || !obj || !json_object_is_type(obj, json_type_object)) {
		snprintf(r->why, sizeof(r->why), "an event without type or object");
		json_object_put(ev);
		r->relist = true;
		return false;
	}
	if (!strcmp(type, "ERROR")) {
		int code = json_object_get_int(json_object_object_get(obj, "code"));
		const char *msg = json_object_get_string(json_object_object_get(obj, "message"));

		if (code == 410)
			pr_info("k8s: %s watch: 410 Gone (%s); relisting", k8s_kind_names[r->kind],
				msg ? msg : "resource version too old");
		else
			snprintf(r->why, sizeof(r->why), "ERROR event %d: %.120s", code,
				 msg ? msg : "?");
		json_object_put(ev);
		r->relist = true;
		return false;
	}
	rv = k8s_object_rv(obj);
	if (rv && strlen(rv) < sizeof(r->rv))
		strcpy(r->rv, rv);
	r->events++;
	if (!strcmp(type, "BOOKMARK")) {
		json_object_put(ev);
		return true;
	}
	if (k8s_object_id(obj, id, sizeof(id))) {
		pr_warn("k8s: %s %s: skipped: metadata.name/namespace missing or invalid",
			k8s_singular[r->kind], id);
	} else if (!strcmp(type, "DELETED")) {
		k8s_cache_del(&k->cache, r->kind, id);
	} else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
		int ret = k8s_decode_ex(r->kind, obj, &k->dopts, &o, err, sizeof(err));

		if (ret) {
			pr_warn("k8s: %s %s: skipped: %s", k8s_singular[r->kind], id, err);
			/* What it was before no longer holds either. */
			k8s_cache_del(&k->cache, r->kind, id);
		} else {
			k8s_cache_put(&k->cache, r->kind, o);
		}
	} else {
		pr_warn("k8s: %s watch: unknown event type '%.32s', ignored",
			k8s_kind_names[r->kind], type);
	}
	json_object_put(ev);
	return true;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
	struct k8s_res *r = ud;
	size_t n = size * nmemb, start = 0;

	if (!r->status) {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
		if (r->status == 200)
			r->k->connected = true;
	}
	if (r->status != 200) {
		/* An error: keep the start of the body for the message. */
		body_add(&r->body, p, n < K8S_ERROR_BODY_MAX ? n : K8S_ERROR_BODY_MAX,
			 K8S_ERROR_BODY_MAX);
		return n;
	}
	if (r->listing) {
		int ret = body_add(&r->body, p, n, K8S_LIST_BODY_MAX);

		r->too_big = ret == -E2BIG;
		return ret ? 0 : n;
	}
	/* A watch: one JSON event per line. */
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (buf_len(&r->body)) {
			if (body_add(&r->body, p + start, i - start, K8S_EVENT_MAX))
				goto too_big;
			if (!handle_event(r, buf_head(&r->body), buf_len(&r->body)))
				return 0;
			buf_reset(&r->body);
		} else if (!handle_event(r, p + start, i - start)) {
			return 0;
		}
		start = i + 1;
	}
	if (start < n && body_add(&r->body, p + start, n - start, K8S_EVENT_MAX))
		goto too_big;
	return n;
too_big:
	snprintf(r->why, sizeof(r->why), "an event over %u bytes", K8S_EVENT_MAX);
	r->relist = true;
	return 0;
}

/* The message of a Status body, or the HTTP status alone. */
static void status_message(struct k8s_res *r, char *out, size_t len)
{
	struct json_object *o = buf_len(&r->body) ? json_tokener_parse(buf_head(&r->body)) : NULL;
	const char *msg = json_object_get_string(json_object_object_get(o, "message"));

	snprintf(out, len, "HTTP %ld%s%.120s", r->status, msg ? ": " : "", msg ? msg : "");
	json_object_put(o);
}

/* A list page arrived: decode its items; the last page replaces the
 * cache's objects of this kind. */
static void list_page(struct k8s_res *r)
{
	struct k8s *k = r->k;
	struct json_object *o, *items;
	const char *cont, *rv;
	size_t n;

	json_tokener_reset(r->tok);
	o = json_tokener_parse_ex(r->tok, buf_head(&r->body), (int)buf_len(&r->body));
	if (!o || json_tokener_get_error(r->tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		res_list_reset(r);
		res_fail(r, true, "the answer is not a JSON object");
		return;
	}
	items = json_object_object_get(o, "items");
	n = items && json_object_is_type(items, json_type_array) ? json_object_array_length(items)
								 : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *it = json_object_array_get_idx(items, i);
		char id[2 * K8S_NAME_MAX + 2], err[256];
		void *obj, *old;

		if (k8s_object_id(it, id, sizeof(id))) {
			pr_warn("k8s: %s %s: skipped: metadata.name/namespace missing or invalid",
				k8s_singular[r->kind], id);
			continue;
		}
		if (k8s_decode_ex(r->kind, it, &k->dopts, &obj, err, sizeof(err))) {
			pr_warn("k8s: %s %s: skipped: %s", k8s_singular[r->kind], id, err);
			continue;
		}
		if (hmap_put(&r->fresh, id, strlen(id), obj, &old)) {
			k8s_obj_free(r->kind, obj);
			json_object_put(o);
			res_list_reset(r);
			res_fail(r, true, "out of memory");
			return;
		}
		k8s_obj_free(r->kind, old);
	}
	cont = json_object_get_string(
		json_object_object_get(json_object_object_get(o, "metadata"), "continue"));
	rv = json_object_get_string(
		json_object_object_get(json_object_object_get(o, "metadata"), "resourceVersion"));
	free(r->cont);
	r->cont = cont && *cont ? strdup(cont) : NULL;
	if (!r->cont) {
		if (!rv || !*rv || strlen(rv) >= sizeof(r->rv)) {
			json_object_put(o);
			res_list_reset(r);
			res_fail(r, true, "no metadata.resourceVersion in the list");
			return;
		}
		strcpy(r->rv, rv);
		if (k8s_cache_replace(&k->cache, r->kind, &r->fresh))
			pr_warn("k8s: %s list: out of memory; some objects are missing",
				k8s_kind_names[r->kind]);
		memset(&r->fresh, 0, sizeof(r->fresh));
		pr_debug("k8s: %s listed at resourceVersion %s: %zu", k8s_kind_names[r->kind],
			 r->rv, k->cache.objs[r->kind].n);
		r->listing = false;
		r->synced = true;
		r->backoff_ms = 0;
		/* Back towards full pages after a page too big. */
		r->limit = r->limit * 2 < list_limit(r->kind) ? r->limit * 2 : list_limit(r->kind);
		k->need_full = true;
	}
	r->next_ms = 0;
	json_object_put(o);
	/* A list page can be megabytes: give it back now. */
	buf_free(&r->body);
}

/* Let go of r's request, finished or not. */
static void res_release(struct k8s_res *r)
{
	if (r->easy) {
		curl_multi_remove_handle(r->k->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->hdrs);
	r->easy = NULL;
	r->hdrs = NULL;
	r->busy = false;
}

static void res_done(struct k8s_res *r, CURLcode rc)
{
	struct k8s *k = r->k;
	char msg[200];

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	res_release(r);

	if (r->listing && r->too_big) {
		/* Ask for the same page again with fewer items (the continue
		 * token is kept): one object always fits. */
		buf_free(&r->body);
		if (r->limit > 1) {
			r->limit = r->limit / 4 ? r->limit / 4 : 1;
			pr_warn("k8s: %s list: a page is over %u bytes; asking for %u item(s) a "
				"page",
				k8s_kind_names[r->kind], K8S_LIST_BODY_MAX, r->limit);
			r->next_ms = 0;
			return;
		}
		res_list_reset(r);
		res_fail(r, true, "one object is over %u bytes", K8S_LIST_BODY_MAX);
		return;
	}
	if (r->relist) { /* the stream said so */
		buf_reset(&r->body);
		if (r->why[0]) {
			res_fail(r, true, "%s", r->why);
			return;
		}
		r->listing = true;
		r->next_ms = 0;
		return;
	}
	if (rc != CURLE_OK && r->status != 200) {
		k->connected = false;
		if (r->listing)
			res_list_reset(r);
		res_fail(r, true, "%s", curl_easy_strerror(rc));
		return;
	}
	if (r->status == 410 && r->listing && !r->cont) {
		/* Gone without a continue token to blame: not ours to fix. */
		res_fail(r, true, "410 Gone");
		return;
	}
	if (r->status == 410) {
		pr_info("k8s: %s %s: 410 Gone; relisting", k8s_kind_names[r->kind],
			r->listing ? "list" : "watch");
		res_list_reset(r);
		r->listing = true;
		r->next_ms = 0;
		return;
	}
	if (r->status != 200) {
		status_message(r, msg, sizeof(msg));
		if (r->status == 401)
			k->cl.token_reload = true;
		if (r->listing)
			res_list_reset(r);
		res_fail(r, true, "%s", msg);
		return;
	}
	if (r->listing) {
		if (rc != CURLE_OK) {
			res_list_reset(r);
			res_fail(r, true, "%s", curl_easy_strerror(rc));
			return;
		}
		list_page(r);
		return;
	}
	/* A watch that ended: normal (timeoutSeconds, a dropped connection
	 * after events) -> watch again from the last resourceVersion. */
	buf_reset(&r->body);
	if (rc != CURLE_OK && rc != CURLE_OPERATION_TIMEDOUT && !r->events) {
		res_fail(r, true, "%s", curl_easy_strerror(rc));
		return;
	}
	if (!r->events && monotonic_ms() - r->started_ms < 1000) {
		/* Ended at once with nothing: do not spin. */
		res_fail(r, false, "the stream ended at once");
		return;
	}
	pr_debug("k8s: %s watch ended after %zu event(s); watching again", k8s_kind_names[r->kind],
		 r->events);
	r->backoff_ms = 0;
	r->next_ms = 0;
}

/* ---- pods' cgroups ---------------------------------------------------------- */

/* k8s_cgroup_fn: the directory k->cg has for the pod while it exists.
 * Following with inotify, a miss is an answer: a pod directory is noted
 * when it is created. Without inotify, and for the slow safety rescan,
 * one scan of the tree per translation. */
static int pod_cgroup(void *ud, const char *uid, uint64_t *id)
{
	struct k8s *k = ud;
	const char *path;
	char err[256];

	for (int pass = 0; pass < 2; pass++) {
		path = k8s_cgroups_path(&k->cg, uid);
		if (path && !cgroup_id(path, id, err, sizeof(err)))
			return 0;
		if (path)
			k8s_cgroups_forget(&k->cg, uid);
		if (pass || !k->cgroups_scan)
			break;
		k->cgroups_scan = false;
		k8s_cgroups_rescan(&k->cg);
	}
	return -ENOENT;
}

/* How long until a selected pod without a cgroup is looked for by a full
 * scan: the safety net when new directories are followed with inotify,
 * the mechanism when they are not. */
static unsigned int cgroup_retry_ms(const struct k8s *k)
{
	return k8s_cgroups_following(&k->cg) ? K8S_CGROUP_RESCAN_MS : K8S_OVR_RETRY_MS;
}

/* New pod directories (inotify): translate the SandboxOverrides again now
 * if some selected pod was waiting for its cgroup. Called before publish()
 * on every turn of the thread's loop. */
static void cgroup_events(struct k8s *k)
{
	if (!k8s_cgroups_events(&k->cg))
		return;
	k->wait_dirty = true;
	if (k->cache.ovr_unresolved)
		k8s_cache_ovr_retry(&k->cache);
}

/* ---- is a pod's override set in the kernel? ---------------------------------- */

/* After a change to the pods, the SandboxOverrides or their translation,
 * or a new pod cgroup: the snapshot of this node's pods that
 * k8s_overrides_ready() answers from. Not before every kind is listed
 * (until then every answer is "pending"). */
static void publish_wait(struct k8s *k)
{
	static const enum k8s_kind kinds[2] = {K8S_POD, K8S_SBO};
	struct k8s_wait *w, *old;

	if (!k->synced_all)
		return;
	for (int i = 0; i < 2; i++) {
		if (strcmp(k->wait_rv[i], k->res[kinds[i]].rv)) {
			snprintf(k->wait_rv[i], sizeof(k->wait_rv[i]), "%s", k->res[kinds[i]].rv);
			k->wait_dirty = true;
		}
	}
	if (!k->wait_dirty)
		return;
	if (k8s_wait_build(&k->cache, (uint64_t)time(NULL), &w)) {
		set_error(k, "out of memory noting this node's pods; trying again");
		return;
	}
	k->wait_dirty = false;
	pthread_mutex_lock(&k->mu);
	old = k->wait;
	k->wait = w;
	pthread_mutex_unlock(&k->mu);
	k8s_wait_free(old);
}

/* ---- what the pods keep ------------------------------------------------------ */

/* A selector uses a label key the pods were read without: from now on
 * pods keep it, and those read before are listed again (pods_relist). */
static void check_label_keys(struct k8s *k)
{
	struct k8s_res *r = &k->res[K8S_POD];
	struct hmap_entry *e;
	size_t i;
	bool added = false;

	if (!k->cache.new_label_keys)
		return;
	k->cache.new_label_keys = false;
	for (e = hmap_first(&k->cache.label_keys, &i); e;
	     e = hmap_next(&k->cache.label_keys, e, &i)) {
		if (hmap_get(&k->pod_keys, e->key, e->klen))
			continue;
		if (hmap_put(&k->pod_keys, e->key, e->klen, (void *)1, NULL)) {
			k->cache.new_label_keys = true; /* try again */
			set_error(k, "out of memory noting a selector's label key");
			return;
		}
		pr_debug("k8s: pods keep label %s from now on", e->key);
		added = true;
	}
	/* Not listed yet, or a list that has not decoded a page yet: it
	 * reads them with the key. */
	if (added && k->pods_begun && !(r->listing && !r->cont))
		k->pods_relist_due = true;
}

/* List the pods again now, if a relist is due and allowed; else say when
 * to look again (ms from now, or -1). */
static long pods_relist(struct k8s *k, uint64_t now)
{
	struct k8s_res *r = &k->res[K8S_POD];

	while (k->pods_relist_tokens < K8S_KEY_RELIST_BURST && now >= k->pods_relist_refill_ms) {
		k->pods_relist_tokens++;
		k->pods_relist_refill_ms += K8S_KEY_RELIST_MS;
	}
	if (k->pods_relist_tokens == K8S_KEY_RELIST_BURST)
		k->pods_relist_refill_ms = now + K8S_KEY_RELIST_MS;
	if (!k->pods_relist_due)
		return -1;
	if (r->listing && r->cont)
		return -1; /* mid-list: after it (its first pages lack the key) */
	if (r->listing) {
		k->pods_relist_due = false;
		return -1; /* about to list from the start anyway */
	}
	if (!k->pods_relist_tokens)
		return (long)(k->pods_relist_refill_ms - now);
	k->pods_relist_tokens--;
	k->pods_relist_due = false;
	k->pods_keys_keep = true;
	pr_info("k8s: pods: listing again: a selector uses a label key they were read without");
	if (r->busy)
		res_release(r);
	buf_reset(&r->body);
	r->listing = true;
	r->next_ms = 0;
	return 0;
}

/* ---- what is refused or lost: log once per change, show in status ---------- */

/* One line about a problem that is new or changed. */
static void problem_log(const struct k8s *k, const struct k8s_problem *p)
{
	const char *kind = k8s_singular[p->kind];
	char ns[K8S_NAME_MAX + 1];

	switch (p->why) {
	case K8S_WHY_CONFLICT:
		pr_warn("k8s: %s %s loses %zu %s to the older %s %s (same %s; the older one "
			"wins)",
			kind, p->id, p->n, p->kind == K8S_SBO ? "override(s)" : "route(s)", kind,
			p->other,
			p->kind == K8S_SBO ? "pod and destination" : "service address and key");
		break;
	case K8S_WHY_QUOTA:
		snprintf(ns, sizeof(ns), "%.*s", (int)strcspn(p->id, "/"), p->id);
		pr_warn("k8s: %s %s refused: its %zu route(s) would take namespace %s over "
			"--max-routes-per-namespace (%s by older objects)",
			kind, p->id, p->n, ns, p->detail);
		break;
	case K8S_WHY_CIDR:
		pr_warn("k8s: %s %s refused: sandbox address %s is outside every --sandbox-cidr%s",
			kind, p->id, p->detail,
			k->cache.n_sandbox_cidrs ? ""
						 : " (none given: explicit addresses are refused)");
		break;
	case K8S_WHY_ENDPOINTS:
		snprintf(ns, sizeof(ns), "%.*s", (int)strcspn(p->id, "/"), p->id);
		pr_warn("k8s: %s %s: %zu address(es) not counted (%s first): the endpoint's "
			"targetRef names no Pod of namespace %s that has that address",
			kind, p->id, p->n, p->detail, ns);
		break;
	case K8S_WHY_MAX:
		break;
	}
}

static void status_list_add(struct k8s_status_list *l, const struct k8s_problem *p)
{
	struct k8s_status_entry *e;

	if (l->total++ >= K8S_STATUS_LIST)
		return;
	e = &l->e[l->n++];
	e->kind = p->kind;
	e->n = p->n;
	snprintf(e->object, sizeof(e->object), "%s", p->id);
	snprintf(e->other, sizeof(e->other), "%s", p->other);
	snprintf(e->detail, sizeof(e->detail), "%s", p->detail);
}

/* The cache's problems after a recompute: logged when new or changed
 * (and when they go), and the status lists replaced. */
static void report_problems(struct k8s *k)
{
	struct k8s_problem *v;
	struct hmap now = {};
	struct hmap_entry *e;
	long n = k8s_cache_problems(&k->cache, &v);
	size_t logged = 0, i;
	struct k8s_status_list lists[4] = {};
	size_t ignored = 0;

	if (n < 0) {
		set_error(k, "out of memory listing refused objects");
		return;
	}
	for (long j = 0; j < n; j++) {
		const struct k8s_problem *p = &v[j];
		char key[2 * K8S_ID_MAX + 32], said[160];
		char *was, *copy;

		snprintf(key, sizeof(key), "%s %s %s %s", k8s_why_names[p->why],
			 k8s_kind_names[p->kind], p->id, p->other);
		snprintf(said, sizeof(said), "%zu %s", p->n, p->detail);
		was = hmap_sget(&k->reported, key);
		if ((!was || strcmp(was, said)) && logged++ < K8S_PROBLEM_LOG_MAX)
			problem_log(k, p);
		copy = strdup(said);
		if (!copy || hmap_put(&now, key, strlen(key), copy, NULL))
			free(copy);
		status_list_add(&lists[p->why], p);
		if (p->why == K8S_WHY_ENDPOINTS)
			ignored += p->n;
	}
	if (logged > K8S_PROBLEM_LOG_MAX)
		pr_warn("k8s: ... and %zu more refused or conflicting object(s) (shuntctl status)",
			logged - K8S_PROBLEM_LOG_MAX);
	for (e = hmap_first(&k->reported, &i); e; e = hmap_next(&k->reported, e, &i)) {
		if (!hmap_get(&now, e->key, e->klen))
			pr_info("k8s: resolved: %s", e->key);
		free(e->val);
	}
	hmap_free(&k->reported);
	k->reported = now;
	free(v);
	pthread_mutex_lock(&k->mu);
	k->st.conflicts = lists[K8S_WHY_CONFLICT];
	k->st.refused_quota = lists[K8S_WHY_QUOTA];
	k->st.refused_cidr = lists[K8S_WHY_CIDR];
	k->st.endpoints_ignored = lists[K8S_WHY_ENDPOINTS];
	k->st.endpoint_addrs_ignored = ignored;
	pthread_mutex_unlock(&k->mu);
}

/* ---- hand-over to the main loop ------------------------------------------ */

static void batch_free(struct k8s_batch *b)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(&b->owners, &i); e; e = hmap_next(&b->owners, e, &i))
		free(e->val);
	hmap_free(&b->owners);
	free(b->ops);
	free(b->ovr);
	free(b);
}

static void publish(struct k8s *k)
{
	uint64_t now = (uint64_t)time(NULL), one = 1;
	struct k8s_batch *b;
	struct k8s_op *ops;
	struct k8s_ovr_op *ovr;
	long n, novr;
	bool full;
	int ret;

	if (!k->synced_all) {
		for (int i = 0; i < K8S_NKINDS; i++)
			if (!k->res[i].synced)
				return;
		k->synced_all = true;
	}
	if (k->cache.ovr_unresolved && monotonic_ms() >= k->ovr_retry_ms) {
		k8s_cache_ovr_retry(&k->cache);
		k->cgroups_scan = true;
	}
	if (!k->need_full && !k8s_cache_pending(&k->cache, now) && !k->cache.changed.n)
		return;
	if (!k8s_cgroups_following(&k->cg))
		k->cgroups_scan = true;
	ret = k8s_cache_recompute(&k->cache, now);
	k->cgroups_scan = false;
	k->wait_dirty = true;
	if (ret) {
		set_error(k, "out of memory translating SandboxRoutes; trying again");
		return;
	}
	if (k->cache.ovr_unresolved)
		k->ovr_retry_ms = monotonic_ms() + cgroup_retry_ms(k);
	report_problems(k);
	full = k->need_full;
	n = k8s_cache_changes(&k->cache, full, &ops);
	if (n < 0) {
		set_error(k, "out of memory; trying again");
		return;
	}
	novr = k8s_cache_ovr_changes(&k->cache, full, &ovr);
	if (novr < 0) {
		/* The routes' changes are taken: send them in a full batch
		 * next time. */
		free(ops);
		k->need_full = true;
		set_error(k, "out of memory; trying again");
		return;
	}
	k->need_full = false;
	if (!k->said_synced) {
		k->said_synced = true;
		pr_info("k8s: synced: %zu SandboxRoutes -> %zu routes, %zu SandboxOverrides -> %zu "
			"overrides on node %s",
			k->cache.objs[K8S_SBR].n, k->cache.nroutes, k->cache.objs[K8S_SBO].n,
			k->cache.ovr_want.n, k->node);
	}
	if (!n && !novr && !full) {
		free(ops);
		free(ovr);
		return;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		free(ops);
		free(ovr);
		k->need_full = true;
		return;
	}
	b->full = full;
	b->n = (size_t)n;
	b->ops = ops;
	/* The owners' names, for the main thread's reports (the cache's
	 * strings may be gone by the time it looks). */
	for (long i = 0; i < n; i++) {
		char *o;

		if (!ops[i].owner)
			continue;
		o = hmap_sget(&b->owners, ops[i].owner);
		if (!o) {
			o = strdup(ops[i].owner);
			if (!o || hmap_put(&b->owners, o, strlen(o), o, NULL)) {
				free(o);
				o = NULL;
			}
		}
		ops[i].owner = o;
	}
	b->novr = (size_t)novr;
	b->ovr = ovr;
	pthread_mutex_lock(&k->mu);
	*k->tail = b;
	k->tail = &b->next;
	pthread_mutex_unlock(&k->mu);
	if (write(k->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("k8s: eventfd: %s", strerror(errno));
}

/* This node's pods' capture modes, when they may have changed: handed
 * to the main thread (which registers them) when they did, and every
 * K8S_CAPTURE_RESYNC_MS anyway. */
static void publish_capture(struct k8s *k)
{
	uint64_t now = monotonic_ms(), one = 1;
	struct k8s_capture_set *cap, *old;
	bool resync, retry;
	size_t pending;

	if (!k->synced_all)
		return;
	resync = now >= k->cap_resync_ms;
	retry = k->cap_pending && now >= k->cap_retry_ms;
	if (k->cache.local_pods_gen == k->cap_gen && !resync && !retry)
		return;
	if (k8s_capture_build(&k->cache, &k->cg, k->cap_default, &cap, &pending)) {
		k->cap_pending = 1;
		k->cap_retry_ms = now + K8S_CAPTURE_PENDING_MS;
		return;
	}
	k->cap_gen = k->cache.local_pods_gen;
	k->cap_pending = pending;
	if (pending)
		k->cap_retry_ms = now + K8S_CAPTURE_PENDING_MS;
	/* Unchanged: nothing to hand over until the resync is due. */
	if (!resync && k8s_capture_same(cap, k->cap_last)) {
		k8s_capture_free(cap);
		return;
	}
	k->cap_resync_ms = now + K8S_CAPTURE_RESYNC_MS;
	k8s_capture_free(k->cap_last);
	k->cap_last = cap;
	/* The main thread gets a copy of its own. */
	cap = calloc(1, sizeof(*cap));
	if (cap)
		cap->p = calloc(k->cap_last->n ? k->cap_last->n : 1, sizeof(*cap->p));
	if (!cap || !cap->p) {
		k8s_capture_free(cap);
		k8s_capture_free(k->cap_last);
		k->cap_last = NULL;
		return;
	}
	cap->n = k->cap_last->n;
	memcpy(cap->p, k->cap_last->p, cap->n * sizeof(*cap->p));
	pthread_mutex_lock(&k->mu);
	old = k->cap_next;
	k->cap_next = cap;
	pthread_mutex_unlock(&k->mu);
	k8s_capture_free(old);
	if (write(k->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("k8s: eventfd: %s", strerror(errno));
}

static void publish_status(struct k8s *k)
{
	pthread_mutex_lock(&k->mu);
	k->st.connected = k->connected;
	k->st.synced = k->synced_all;
	for (int i = 0; i < K8S_NKINDS; i++) {
		k->st.objects[i] = k->cache.objs[i].n;
		snprintf(k->st.rv[i], sizeof(k->st.rv[i]), "%s", k->res[i].rv);
	}
	k->st.routes = k->cache.nroutes;
	k->st.overrides = k->cache.ovr_want.n;
	k->st.overrides_unresolved = k->cache.ovr_unresolved;
	k->st.cgroup_watches = k8s_cgroups_nwatches(&k->cg);
	k->st.pods_capture_pending = k->cap_pending;
	snprintf(k->st.node, sizeof(k->st.node), "%s", k->node);
	snprintf(k->st.last_error, sizeof(k->st.last_error), "%s", k->last_error);
	pthread_mutex_unlock(&k->mu);
}

static void *k8s_thread(void *arg)
{
	struct k8s *k = arg;
	struct curl_waitfd wfd = {.events = CURL_WAIT_POLLIN};
	CURLMsg *msg;
	int running, left;

	while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE)) {
		uint64_t now = monotonic_ms();
		long timeout = K8S_POLL_MAX_MS, relist_in;

		/* Requests read it as they start; long watches in between. */
		if (now - k->token_checked_ms >= K8S_TOKEN_CHECK_MS)
			token_refresh(k);

		for (int i = 0; i < K8S_NKINDS; i++) {
			struct k8s_res *r = &k->res[i];

			if (r->busy)
				continue;
			/* Pods are read keeping the labels the selectors use:
			 * first the selectors. */
			if (i == K8S_POD && !(k->res[K8S_SBR].synced && k->res[K8S_SBO].synced))
				continue;
			if (now >= r->next_ms && res_start(r))
				res_fail(r, true, "out of memory");
			if (!r->busy && r->next_ms > now && (long)(r->next_ms - now) < timeout)
				timeout = (long)(r->next_ms - now);
		}
		curl_multi_perform(k->multi, &running);
		while ((msg = curl_multi_info_read(k->multi, &left))) {
			struct k8s_res *r = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
			if (r)
				res_done(r, msg->data.result);
			timeout = 0; /* start what follows at once */
		}
		cgroup_events(k);
		check_label_keys(k);
		relist_in = pods_relist(k, monotonic_ms());
		if (relist_in >= 0 && relist_in < timeout)
			timeout = relist_in;
		publish(k);
		publish_capture(k);
		publish_status(k);
		publish_wait(k);
		if (k->cache.next_deadline) {
			uint64_t now_s = (uint64_t)time(NULL);
			long until = k->cache.next_deadline > now_s
					     ? (long)(k->cache.next_deadline - now_s) * 1000
					     : 0;

			if (until < timeout)
				timeout = until;
		}
		if (k->cache.ovr_unresolved) {
			uint64_t t = monotonic_ms();
			long until = k->ovr_retry_ms > t ? (long)(k->ovr_retry_ms - t) : 0;

			if (until < timeout)
				timeout = until;
		}
		if (k->synced_all) {
			uint64_t t = monotonic_ms(), at = k->cap_resync_ms;
			long until;

			if (k->cap_pending && k->cap_retry_ms < at)
				at = k->cap_retry_ms;
			until = at > t ? (long)(at - t) : 0;
			if (until < timeout)
				timeout = until;
		}
		/* New pod cgroups wake the thread as API events do. */
		wfd.fd = k->cg.ifd;
		wfd.revents = 0;
		curl_multi_poll(k->multi, &wfd, k8s_cgroups_following(&k->cg) ? 1 : 0, (int)timeout,
				NULL);
	}
	for (int i = 0; i < K8S_NKINDS; i++) {
		struct k8s_res *r = &k->res[i];

		res_release(r);
		res_list_reset(r);
		buf_free(&r->body);
		json_tokener_free(r->tok);
		r->tok = NULL;
	}
	return NULL;
}

/* ---- main thread -------------------------------------------------------- */

static bool route_same(const struct shunt_route *a, const struct shunt_route *b)
{
	return addr_equal(&a->to, &b->to) && a->flags == b->flags &&
	       a->expires_unix == b->expires_unix && a->created_unix == b->created_unix;
}

static bool in_batch(const struct k8s_batch *b, const struct shunt_override_key *key)
{
	for (size_t i = 0; i < b->novr; i++)
		if (!b->ovr[i].del && !memcmp(&b->ovr[i].o.k, key, sizeof(*key)))
			return true;
	return false;
}

/* ---- what the store would not take (main thread) ----------------------------- */

static void fails_clear(struct hmap *m)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(m, &i); e; e = hmap_next(m, e, &i)) {
		struct k8s_fail *f = e->val;

		free(f->owner);
		free(f);
	}
	hmap_free(m);
}

static void fail_forget(struct hmap *m, const void *key, size_t klen)
{
	struct k8s_fail *f = m->n ? hmap_del(m, key, klen) : NULL;

	if (f) {
		free(f->owner);
		free(f);
	}
}

/* owner (may be NULL: not known) could not have key installed: msg. */
static struct k8s_fail *fail_note(struct hmap *m, const void *key, size_t klen, const char *owner,
				  size_t owner_len, const char *msg)
{
	struct k8s_fail *f = hmap_get(m, key, klen);

	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f || hmap_put(m, key, klen, f, NULL)) {
			free(f);
			return NULL; /* only the report is short of one */
		}
	}
	free(f->owner);
	f->owner = owner ? strndup(owner, owner_len) : NULL;
	snprintf(f->msg, sizeof(f->msg), "%s", msg);
	return f;
}

/* Room was made (routes or overrides removed): what could not be
 * installed is tried again, so a full table is not forever. Returns how
 * many got in. */
static size_t fails_retry(struct k8s *k, bool ovr)
{
	struct store *s = &k->a->store;
	struct hmap *m = ovr ? &k->failed_ovr : &k->failed_routes;
	struct hmap_entry *e, *next;
	uint64_t now = (uint64_t)time(NULL);
	size_t in = 0, i;
	char err[256];

	for (e = hmap_first(m, &i); e; e = next) {
		struct k8s_fail *f = e->val;
		int ret;

		next = hmap_next(m, e, &i);
		if (ovr)
			ret = f->ovr.expires_unix && f->ovr.expires_unix <= now
				      ? 0
				      : store_ovr_add(s, (const void *)e->key, &f->ovr, err,
						      sizeof(err));
		else
			ret = f->route.expires_unix && f->route.expires_unix <= now
				      ? 0
				      : store_k8s_put(s, (const void *)e->key, &f->route, err,
						      sizeof(err));
		if (ret) {
			snprintf(f->msg, sizeof(f->msg), "%.159s", err);
			continue;
		}
		in++;
		fail_forget(m, e->key, e->klen);
	}
	if (in)
		pr_info("k8s: %zu %s installed now that there is room", in,
			ovr ? "override(s)" : "route(s)");
	return in;
}

/* The SandboxOverride in an override's from: "k8s:NAMESPACE/NAME pod POD". */
static const char *ovr_owner(const struct shunt_override *v, size_t *len)
{
	const char *id = v->from + strlen(SHUNT_K8S_FROM_PREFIX);
	const char *end = strstr(id, " pod ");

	if (strncmp(v->from, SHUNT_K8S_FROM_PREFIX, strlen(SHUNT_K8S_FROM_PREFIX)) || !end)
		return NULL;
	*len = (size_t)(end - id);
	return id;
}

static void apply_overrides(struct k8s *k, const struct k8s_batch *b)
{
	struct store *s = &k->a->store;
	size_t added = 0, removed = 0, failed = 0;
	uint64_t now = (uint64_t)time(NULL);
	char err[256], first[256] = "", a1[ADDR_STR_LEN], a2[ADDR_STR_LEN];

	if (b->full)
		fails_clear(&k->failed_ovr);
	for (size_t i = 0; i < b->novr; i++) {
		const struct k8s_override *o = &b->ovr[i].o;
		const char *owner;
		size_t olen = 0;

		format_addr_port(&o->k.dst, a1, sizeof(a1));
		format_addr_port(&o->v.to, a2, sizeof(a2));
		if (b->ovr[i].del || (o->v.expires_unix && o->v.expires_unix <= now))
			fail_forget(&k->failed_ovr, &o->k, sizeof(o->k));
		if (b->ovr[i].del) {
			if (!store_ovr_k8s_del(s, &o->k)) {
				removed++;
				pr_info("k8s: override deleted: from %s to %s", o->v.from, a1);
			}
			continue;
		}
		if (o->v.expires_unix && o->v.expires_unix <= now)
			continue;
		if (store_ovr_add(s, &o->k, &o->v, err, sizeof(err))) {
			if (!failed++)
				snprintf(first, sizeof(first), "%s", err);
			struct k8s_fail *f;

			owner = ovr_owner(&o->v, &olen);
			f = fail_note(&k->failed_ovr, &o->k, sizeof(o->k), owner, olen, err);
			if (f)
				f->ovr = o->v;
			continue;
		}
		fail_forget(&k->failed_ovr, &o->k, sizeof(o->k));
		added++;
		pr_info("k8s: override: from %s (cgroup id %llu) to %s -> %s", o->v.from,
			(unsigned long long)o->k.src_id, a1, a2);
	}
	/* A resync: the Kubernetes overrides nothing asks for any more go
	 * (also those recovered from the pinned map after a restart). */
	for (size_t i = 0; b->full && i < s->novr;) {
		const struct override_entry *e = &s->ovr[i];

		if (!(e->v.flags & SHUNT_ROUTE_FROM_K8S) || in_batch(b, &e->k)) {
			i++;
			continue;
		}
		format_addr_port(&e->k.dst, a1, sizeof(a1));
		pr_info("k8s: override deleted: from %s to %s", e->v.from, a1);
		store_ovr_k8s_del(s, &e->k); /* the last one moved into i */
		removed++;
	}
	if (removed && k->failed_ovr.n && !failed)
		fails_retry(k, true);
	if (failed)
		pr_err("k8s: %zu override(s) could not be installed: %s (shuntctl status lists "
		       "them)",
		       failed, first);
	if (b->novr || removed)
		pr_debug("k8s: %zu override(s) added or changed, %zu removed", added, removed);
}

/* A resync: the Kubernetes routes not in the batch go first (room in the
 * table for the new ones). */
static size_t remove_stale(struct k8s *k, const struct k8s_batch *b)
{
	struct store *s = &k->a->store;
	struct route_table *keep = route_table_new();
	struct shunt_route_key *keys;
	struct shunt_route *vals;
	size_t removed = 0;
	long cnt;

	if (!keep) {
		pr_err("k8s: out of memory applying a resync; stale routes stay");
		return 0;
	}
	for (size_t i = 0; i < b->n; i++)
		if (!b->ops[i].del && route_table_put(keep, &b->ops[i].r.k, &b->ops[i].r.v, NULL)) {
			/* Without the full set nothing may be deleted. */
			pr_err("k8s: out of memory applying a resync; stale routes stay");
			route_table_free(keep);
			return 0;
		}
	cnt = route_table_sorted(s->t, &keys, &vals);
	for (long i = 0; i < cnt; i++)
		if ((vals[i].flags & SHUNT_ROUTE_FROM_K8S) &&
		    !route_table_get(keep, &keys[i].service, keys[i].key,
				     strnlen(keys[i].key, sizeof(keys[i].key))))
			removed += store_k8s_del(s, &keys[i]) == 0;
	if (cnt > 0) {
		free(keys);
		free(vals);
	}
	route_table_free(keep);
	return removed;
}

static void apply_batch(struct k8s *k, const struct k8s_batch *b)
{
	struct store *s = &k->a->store;
	size_t added = 0, removed = 0, failed = 0;
	uint64_t now = (uint64_t)time(NULL);
	char err[256], first[256] = "";

	if (b->full) {
		fails_clear(&k->failed_routes);
		removed += remove_stale(k, b);
	}
	/* Deletes before puts: a route moving between keys finds room. */
	for (size_t i = 0; i < b->n; i++)
		if (b->ops[i].del) {
			fail_forget(&k->failed_routes, &b->ops[i].r.k, sizeof(b->ops[i].r.k));
			removed += store_k8s_del(s, &b->ops[i].r.k) == 0;
		}
	for (size_t i = 0; i < b->n; i++) {
		const struct k8s_op *op = &b->ops[i];
		const struct shunt_route_key *key = &op->r.k;
		const struct shunt_route *cur;

		if (op->del)
			continue;
		cur = route_table_get(s->t, &key->service, key->key,
				      strnlen(key->key, sizeof(key->key)));
		if ((op->r.v.expires_unix && op->r.v.expires_unix <= now) ||
		    (cur && (cur->flags & SHUNT_ROUTE_FROM_K8S) && route_same(cur, &op->r.v))) {
			fail_forget(&k->failed_routes, key, sizeof(*key));
			continue;
		}
		if (store_k8s_put(s, key, &op->r.v, err, sizeof(err))) {
			if (!failed++)
				snprintf(first, sizeof(first), "%s", err);
			struct k8s_fail *f =
				fail_note(&k->failed_routes, key, sizeof(*key), op->owner,
					  op->owner ? strlen(op->owner) : 0, err);

			if (f)
				f->route = op->r.v;
			continue;
		}
		fail_forget(&k->failed_routes, key, sizeof(*key));
		added++;
	}
	if (removed && k->failed_routes.n && !failed)
		added += fails_retry(k, false);
	if (failed)
		pr_err("k8s: %zu route(s) could not be installed: %s (shuntctl status lists them)",
		       failed, first);
	if (b->full)
		pr_info("k8s: resync: %zu route(s) added or changed, %zu removed", added, removed);
	else
		pr_debug("k8s: %zu route(s) added or changed, %zu removed", added, removed);
	apply_overrides(k, b);
}

static void capture_del(struct k8s *k, const struct k8s_capture_pod *cp);

/* Is pod cp registered already, as cp says (the same network namespace;
 * the same interface, ifname)? 1 yes, 0 no (another one), -1 not at all. */
static int registered_as(struct k8s *k, const struct k8s_capture_pod *cp, const char *ifname)
{
	int ret = -1;

	if (cp->mode == K8S_CAPTURE_INPOD) {
		size_t n = workers_inpod_count(k->a->workers);
		struct inpod_info *v = calloc(n ? n : 1, sizeof(*v));

		if (!v)
			return -1;
		n = (size_t)workers_inpod_list(k->a->workers, v, (int)n);
		for (size_t i = 0; i < n; i++)
			if (!strcmp(v[i].name, cp->name))
				ret = v[i].netns_ino == cp->netns_ino;
		free(v);
	} else {
		size_t n = workers_tc_count(k->a->workers);
		struct tcpod_info *v = calloc(n ? n : 1, sizeof(*v));

		if (!v)
			return -1;
		n = (size_t)workers_tc_list(k->a->workers, v, (int)n);
		for (size_t i = 0; i < n; i++)
			if (!strcmp(v[i].name, cp->name))
				ret = !strcmp(v[i].ifname, ifname);
		free(v);
	}
	return ret;
}

/* The host-side interface of a TC pod: the one the node routes its
 * address through, directly, and not a bridge. 0, or -errno with msg. */
static int tc_iface_of(const struct k8s_capture_pod *cp, char *ifname, char *msg, size_t len)
{
	int err = tc_route_iface(&cp->ip, ifname, msg, len), br;

	if (err)
		return err;
	br = tc_iface_is_bridge(ifname);
	if (br) {
		/* Every pod on it would be captured, and a bridged frame
		 * never reaches the IP layer anyway. */
		snprintf(msg, len,
			 br > 0 ? "the node reaches it through the bridge %s: TC capture needs a "
				  "routed pod interface (Calico, Cilium, ptp)"
				: "cannot tell whether %s is a bridge",
			 ifname);
		return -EINVAL;
	}
	return 0;
}

/* Register one pod as the cluster asks: 0, or -errno having said why. */
static int capture_add(struct k8s *k, const struct k8s_capture_pod *cp)
{
	char msg[512], ifname[IF_NAMESIZE] = "";
	struct stat st;
	int err = 0, fd, same;

	if (cp->mode == K8S_CAPTURE_INPOD) {
		/* The process seen may have gone, and its PID be another's. */
		fd = open(cp->netns, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0 || fstat(fd, &st) || (uint64_t)st.st_ino != cp->netns_ino) {
			snprintf(msg, sizeof(msg), "%s is no longer its network namespace",
				 cp->netns);
			err = -ESTALE;
		}
		if (fd >= 0)
			close(fd);
	} else {
		err = tc_iface_of(cp, ifname, msg, sizeof(msg));
	}
	/* Registered already (handed over by the agent before us, or by
	 * hand): kept if it is this very pod, replaced if not. */
	same = err ? -1 : registered_as(k, cp, ifname);
	if (same == 1)
		return 0;
	if (same == 0)
		capture_del(k, cp);
	if (!err && cp->mode == K8S_CAPTURE_INPOD)
		err = workers_inpod_add(k->a->workers, cp->name, cp->netns, msg, sizeof(msg));
	else if (!err)
		err = workers_tc_add(k->a->workers, cp->name, ifname, msg, sizeof(msg));
	if (err)
		pr_warn("k8s: pod %s (%s): %s; it is captured in node mode meanwhile", cp->name,
			cp->mode == K8S_CAPTURE_INPOD ? "in-pod" : "tc", msg);
	else
		pr_info("k8s: pod %s captured %s%s", cp->name,
			cp->mode == K8S_CAPTURE_INPOD ? "in-pod" : "with TC on ", ifname);
	return err;
}

static void capture_del(struct k8s *k, const struct k8s_capture_pod *cp)
{
	char msg[512];
	int err = cp->mode == K8S_CAPTURE_INPOD
			  ? workers_inpod_del(k->a->workers, cp->name, msg, sizeof(msg))
			  : workers_tc_del(k->a->workers, cp->name, msg, sizeof(msg));

	if (!err)
		pr_info("k8s: pod %s no longer captured %s", cp->name,
			cp->mode == K8S_CAPTURE_INPOD ? "in-pod" : "with TC");
}

static const struct k8s_capture_pod *cap_find(const struct k8s_capture_pod *v, size_t n,
					      const struct k8s_capture_pod *want)
{
	for (size_t i = 0; i < n; i++)
		if (k8s_capture_pod_same(&v[i], want))
			return &v[i];
	return NULL;
}

/* The first time: the pods the agent before us handed over are ours to
 * unregister when the cluster no longer wants them (their identity is
 * unknown here: a snapshot entry replaces them, see capture_add). */
static void capture_seed(struct k8s *k)
{
	const struct proxy_opts *o = &k->a->popts;
	size_t n = 0;

	k->cap_seeded = true;
	k->regs = calloc((size_t)(o->n_pods + o->n_tcpods) + 1, sizeof(*k->regs));
	if (!k->regs)
		return;
	for (int i = 0; i < o->n_pods && o->pods; i++) {
		snprintf(k->regs[n].name, sizeof(k->regs[n].name), "%s", o->pods[i].name);
		k->regs[n++].mode = K8S_CAPTURE_INPOD;
	}
	for (int i = 0; i < o->n_tcpods && o->tcpods; i++) {
		snprintf(k->regs[n].name, sizeof(k->regs[n].name), "%s", o->tcpods[i].name);
		k->regs[n++].mode = K8S_CAPTURE_TC;
	}
	k->nregs = n;
}

/* Inference for a pod registered in-pod, as its annotations ask (had: its
 * registration before this snapshot, or NULL). Sets cp->infer_applied
 * unless it failed (tried again with the next snapshot). */
static void infer_apply(struct k8s *k, struct k8s_capture_pod *cp,
			const struct k8s_capture_pod *had)
{
	enum infer_mode mode =
		cp->infer == K8S_INFER_INVALID ? INFER_OFF : (enum infer_mode)cp->infer;
	char msg[512];

	if (cp->mode != K8S_CAPTURE_INPOD)
		return;
	if (had && had->infer_applied && k8s_capture_infer_same(had, cp)) {
		cp->infer_applied = true;
		return;
	}
	if (cp->infer == K8S_INFER_INVALID)
		pr_warn("k8s: pod %s: annotation " K8S_INFER_ANNOTATION
			" is not off, shadow or on: inference off",
			cp->name);
	if (mode != INFER_OFF && cp->n_infer_ports <= 0) {
		pr_warn("k8s: pod %s: inference needs its HTTP ports: " K8S_INFER_PORTS_ANNOTATION
			" %s",
			cp->name,
			cp->n_infer_ports < 0 ? "is not a list of ports like 8080,9090"
					      : "is absent and no container declares a TCP port");
		mode = INFER_OFF;
	}
	/* Off, and never set otherwise: nothing to undo. */
	if (mode == INFER_OFF && (!had || !had->infer_applied || had->infer == K8S_INFER_OFF)) {
		cp->infer_applied = true;
		return;
	}
	if (workers_infer_set(k->a->workers, cp->name, mode, cp->infer_ports,
			      mode == INFER_OFF ? 0 : cp->n_infer_ports, msg, sizeof(msg))) {
		pr_warn("k8s: pod %s: inference %s: %s", cp->name, infer_mode_names[mode], msg);
		k->infer_failed++;
		return;
	}
	cp->infer_applied = true;
}

/* Make the registrations the cluster's: those no longer wanted go, those
 * wanted and missing are made (a failure is tried again with the next
 * snapshot). */
static void apply_capture(struct k8s *k, const struct k8s_capture_set *cap)
{
	struct k8s_capture_pod *regs = calloc(cap->n ? cap->n : 1, sizeof(*regs));
	size_t n = 0;

	if (!regs)
		return;
	if (!k->cap_seeded)
		capture_seed(k);
	for (size_t i = 0; i < k->nregs; i++) {
		bool wanted = false;

		/* Still wanted under its name and mode (maybe as another
		 * namespace or address: capture_add replaces it then). */
		for (size_t j = 0; j < cap->n && !wanted; j++)
			wanted = !strcmp(cap->p[j].name, k->regs[i].name) &&
				 cap->p[j].mode == k->regs[i].mode;
		if (!wanted)
			capture_del(k, &k->regs[i]);
	}
	k->cap_failed = k->infer_failed = 0;
	for (size_t i = 0; i < cap->n; i++) {
		const struct k8s_capture_pod *had = cap_find(k->regs, k->nregs, &cap->p[i]);

		if (had || !capture_add(k, &cap->p[i])) {
			regs[n] = cap->p[i];
			infer_apply(k, &regs[n++], had);
		} else {
			k->cap_failed++;
		}
	}
	free(k->regs);
	k->regs = regs;
	k->nregs = n;
}

static void on_batches(struct ev_handler *h, uint32_t events)
{
	struct k8s *k = (struct k8s *)h;
	struct k8s_batch *b, *next;
	struct k8s_capture_set *cap;
	uint64_t cnt;

	if (read(k->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		return;

	pthread_mutex_lock(&k->mu);
	b = k->head;
	k->head = NULL;
	k->tail = &k->head;
	cap = k->cap_next;
	k->cap_next = NULL;
	pthread_mutex_unlock(&k->mu);
	if (cap && !k->a->handed_over && !k->a->draining)
		apply_capture(k, cap);
	k8s_capture_free(cap);
	for (; b; b = next) {
		next = b->next;
		/* After a takeover the successor owns the routes. */
		if (!k->a->handed_over && !k->a->draining)
			apply_batch(k, b);
		batch_free(b);
	}
}

/* This node's name: --node-name, else $NODE_NAME (the DaemonSet sets it
 * from spec.nodeName), else the host name. */
static int node_setup(struct k8s *k, const struct k8s_opts *o)
{
	const char *env = getenv("NODE_NAME");
	char host[256] = "";

	if (o->node_name)
		k->node = strdup(o->node_name);
	else if (env && *env)
		k->node = strdup(env);
	else if (!gethostname(host, sizeof(host) - 1) && host[0])
		k->node = strdup(host);
	else {
		pr_err("k8s: no node name: give --node-name or set NODE_NAME");
		return -EINVAL;
	}
	return k->node ? 0 : -ENOMEM;
}

static void k8s_free(struct k8s *k)
{
	struct k8s_batch *b, *next;
	struct hmap_entry *e;
	size_t j;

	for (b = k->head; b; b = next) {
		next = b->next;
		batch_free(b);
	}
	for (int i = 0; i < K8S_NKINDS; i++)
		if (k->res[i].tok) /* json_tokener_free(NULL) crashes */
			json_tokener_free(k->res[i].tok);
	if (k->multi)
		curl_multi_cleanup(k->multi);
	k8s_cache_free(&k->cache);
	k8s_cgroups_free(&k->cg);
	k8s_wait_free(k->wait);
	hmap_free(&k->pod_keys);
	for (e = hmap_first(&k->reported, &j); e; e = hmap_next(&k->reported, e, &j))
		free(e->val);
	hmap_free(&k->reported);
	fails_clear(&k->failed_routes);
	fails_clear(&k->failed_ovr);
	k8s_capture_free(k->cap_next);
	k8s_capture_free(k->cap_last);
	free(k->regs);
	free(k->node);
	k8s_client_free(&k->cl);
	if (k->efd >= 0)
		close(k->efd);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

int k8s_start(struct agent *a, const struct k8s_opts *o)
{
	struct k8s *k = calloc(1, sizeof(*k));
	int ret;

	if (!k)
		return -ENOMEM;
	k->efd = -1;
	k->cg.ifd = -1;
	pthread_mutex_init(&k->mu, NULL);
	k->tail = &k->head;
	k->a = a;
	k->rnd = (uint32_t)getpid() ^ (uint32_t)monotonic_ms() ^ 0x9e3779b9U;
	k8s_cache_init(&k->cache);
	ret = node_setup(k, o);
	if (ret) {
		k8s_free(k);
		return ret;
	}
	ret = k8s_cgroups_init(&k->cg, a->cgroup);
	if (ret) {
		k8s_free(k);
		return ret;
	}
	k->cache.node = k->node;
	k->cache.cgroup_of = pod_cgroup;
	k->cache.cgroup_ud = k;
	k->cache.sandbox_cidrs = o->sandbox_cidrs;
	k->cache.n_sandbox_cidrs = o->n_sandbox_cidrs;
	k->cache.max_ns_routes = o->max_routes_per_ns;
	k->st.max_routes_per_ns = o->max_routes_per_ns;
	k->cap_default = o->pod_capture ? o->pod_capture : K8S_CAPTURE_NODE;
	k->dopts.label_keys = &k->pod_keys;
	k->dopts.node = k->node;
	ret = k8s_client_init(&k->cl, &o->where, "shuntd");
	k->cl.mark = a->popts.mark;
	if (ret) {
		k8s_free(k);
		return ret;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		pr_err("k8s: libcurl would not initialise");
		k8s_free(k);
		return -ENOMEM;
	}
	k->multi = curl_multi_init();
	for (int i = 0; i < K8S_NKINDS; i++) {
		k->res[i].k = k;
		k->res[i].kind = (enum k8s_kind)i;
		k->res[i].listing = true;
		k->res[i].limit = list_limit((enum k8s_kind)i);
		k->res[i].tok = json_tokener_new_ex(K8S_JSON_DEPTH);
	}
	k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	k->h.fn = on_batches;
	ret = -ENOMEM;
	for (int i = 0; i < K8S_NKINDS; i++)
		if (!k->res[i].tok)
			goto fail;
	if (!k->multi || k->efd < 0)
		goto fail;
	ret = loop_add(&a->loop, k->efd, EPOLLIN, &k->h);
	if (ret)
		goto fail;
	/* The thread inherits the blocked signal mask: signals stay with
	 * the main loop's signalfd. */
	ret = thread_start(&k->thread, k8s_thread, k);
	if (ret) {
		loop_del(&a->loop, k->efd);
		goto fail;
	}
	k->running = true;
	a->k8s = k;
	if (k8s_cgroups_following(&k->cg))
		pr_info("k8s: following new pod cgroups below %s (%zu directories watched)",
			a->cgroup, k8s_cgroups_nwatches(&k->cg));
	pr_info("k8s: following %s as node %s (%s)", k->cl.conn.server, k->node,
		k->cl.conn.token_file			       ? k->cl.conn.token_file
		: k->cl.conn.token			       ? "token from the kubeconfig"
		: k->cl.conn.cert_file || k->cl.conn.cert_data ? "client certificate"
							       : "no credentials");
	return 0;
fail:
	pr_err("k8s: cannot start the watcher: %s", strerror(-ret));
	k8s_free(k);
	return ret;
}

void k8s_stop(struct agent *a)
{
	struct k8s *k = a->k8s;

	if (!k)
		return;
	__atomic_store_n(&k->stop, 1, __ATOMIC_RELEASE);
	curl_multi_wakeup(k->multi);
	pthread_join(k->thread, NULL);
	loop_del(&a->loop, k->efd);
	k8s_free(k);
	a->k8s = NULL;
	pr_info("k8s: stopped following the cluster");
}

struct fail_sum {
	enum k8s_kind kind;
	size_t n;
	const char *msg;
};

static int fail_sum_cmp(const void *pa, const void *pb)
{
	const struct k8s_status_entry *a = pa, *b = pb;

	return strcmp(a->object, b->object);
}

/* The store's refusals per object, into the status list. */
static void fails_summarise(const struct hmap *m, enum k8s_kind kind, struct hmap *by_owner)
{
	struct hmap_entry *e;
	size_t i;

	for (e = hmap_first(m, &i); e; e = hmap_next(m, e, &i)) {
		const struct k8s_fail *f = e->val;
		const char *owner = f->owner ? f->owner : "?";
		struct fail_sum *sum = hmap_sget(by_owner, owner);

		if (!sum) {
			sum = calloc(1, sizeof(*sum));
			if (!sum || hmap_put(by_owner, owner, strlen(owner), sum, NULL)) {
				free(sum);
				continue;
			}
			sum->kind = kind;
			sum->msg = f->msg;
		}
		sum->n++;
	}
}

void k8s_get_status(const struct agent *a, struct k8s_status *st)
{
	struct k8s *k = a->k8s;
	struct k8s_status_list *l = &st->not_installed;
	struct hmap by_owner = {};
	struct hmap_entry *e;
	size_t i;

	memset(st, 0, sizeof(*st));
	if (!k)
		return;
	pthread_mutex_lock(&k->mu);
	*st = k->st;
	pthread_mutex_unlock(&k->mu);
	/* The main thread's own: what the store refused. Routes and
	 * overrides of one name are of different kinds: a SandboxRoute and
	 * a SandboxOverride may share it, so the kinds are summed apart. */
	st->routes_not_installed = k->failed_routes.n;
	st->overrides_not_installed = k->failed_ovr.n;
	for (size_t r = 0; r < k->nregs; r++) {
		if (k->regs[r].mode == K8S_CAPTURE_INPOD)
			st->pods_inpod++;
		else
			st->pods_tc++;
	}
	st->pods_capture_failed = k->cap_failed;
	st->pods_infer_failed = k->infer_failed;
	for (int pass = 0; pass < 2; pass++) {
		fails_summarise(pass ? &k->failed_ovr : &k->failed_routes, pass ? K8S_SBO : K8S_SBR,
				&by_owner);
		for (e = hmap_first(&by_owner, &i); e; e = hmap_next(&by_owner, e, &i)) {
			struct fail_sum *sum = e->val;

			if (l->total++ < K8S_STATUS_LIST) {
				struct k8s_status_entry *se = &l->e[l->n++];

				se->kind = sum->kind;
				se->n = sum->n;
				snprintf(se->object, sizeof(se->object), "%s", e->key);
				snprintf(se->detail, sizeof(se->detail), "%s", sum->msg);
			}
			free(sum);
		}
		hmap_free(&by_owner);
	}
	qsort(l->e, l->n, sizeof(l->e[0]), fail_sum_cmp);
}

int k8s_overrides_ready(const struct agent *a, const char *uid, char *msg, size_t len)
{
	struct k8s *k = a->k8s;
	int ret;

	if (!k) {
		snprintf(msg, len, "this agent does not follow a Kubernetes cluster");
		return -ENOTSUP;
	}
	/* The store is the main thread's: the snapshot is held only as long
	 * as it is read, and the watcher replaces it under the same lock. */
	pthread_mutex_lock(&k->mu);
	ret = k8s_wait_check(k->wait, k->node, uid, a->store.ovr, a->store.novr, msg, len);
	pthread_mutex_unlock(&k->mu);
	return ret;
}
