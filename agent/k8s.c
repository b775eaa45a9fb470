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
#include "k8s.h"
#include "k8s_cache.h"
#include "k8s_cgroup.h"
#include "k8s_wait.h"
#include "kubeconfig.h"
#include "log.h"
#include "source.h"
#include "util.h"

#define K8S_LIST_LIMIT	       500
#define K8S_WATCH_TIMEOUT_S    240 /* plus up to as much again, at random */
#define K8S_BACKOFF_MIN_MS     100
#define K8S_BACKOFF_MAX_MS     10000
#define K8S_CONNECT_TIMEOUT_MS 5000
#define K8S_LIST_TIMEOUT_S     120
#define K8S_LIST_BODY_MAX      (256U << 20) /* one page of a list */
#define K8S_EVENT_MAX	       (16U << 20)  /* one watch event */
#define K8S_ERROR_BODY_MAX     4096
#define K8S_TOKEN_MAX	       65536
#define K8S_JSON_DEPTH	       64 /* managedFields nest deeply */
#define K8S_POLL_MAX_MS	       1000
#define K8S_TOKEN_CHECK_MS     60000 /* the token file's mtime, at least this often */
#define K8S_OVR_RETRY_MS       2000  /* pods selected but without a cgroup: look again */
#define K8S_CGROUP_RESCAN_MS   10000 /* ... when inotify follows new cgroups: a safety net */

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

struct buf {
	char *p;
	size_t len, cap;
};

struct k8s_batch {
	struct k8s_batch *next;
	bool full; /* every desired route and override: delete the Kubernetes ones not in it */
	size_t n;
	struct k8s_op *ops;
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
	char *cont; /* continue token of a paginated list */
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
	struct k8s_wait *wait; /* this node's pods, for k8s_overrides_ready() */
	int stop;	       /* atomic */

	/* Watcher thread only. */
	CURLM *multi;
	struct k8s_conn conn;
	uint32_t mark;
	char *token;
	struct stat token_st;
	bool token_reload;
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
};

static int buf_add(struct buf *b, const char *p, size_t n, size_t max)
{
	if (b->len + n > max)
		return -E2BIG;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *q;

		while (cap < b->len + n + 1)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
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
	const char *path = k->conn.token_file;
	struct stat st;
	char *t;
	size_t len;
	FILE *f;

	if (!path)
		return;
	k->token_checked_ms = monotonic_ms();
	if (stat(path, &st)) {
		if (k->token_reload || !k->token)
			set_error(k, "token %s: %s", path, strerror(errno));
		k->token_reload = false;
		return;
	}
	if (k->token && !k->token_reload && st.st_mtim.tv_sec == k->token_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == k->token_st.st_mtim.tv_nsec && st.st_ino == k->token_st.st_ino &&
	    st.st_size == k->token_st.st_size)
		return;
	k->token_reload = false;
	f = fopen(path, "re");
	if (!f) {
		set_error(k, "token %s: %s", path, strerror(errno));
		return;
	}
	t = calloc(1, K8S_TOKEN_MAX + 1);
	len = t ? fread(t, 1, K8S_TOKEN_MAX, f) : 0;
	fclose(f);
	if (!t)
		return;
	while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' '))
		t[--len] = '\0';
	if (strlen(t) != len || !len) {
		set_error(k, "token %s: empty or not text", path);
		free(t);
		return;
	}
	free(k->token);
	k->token = t;
	k->token_st = st;
	pr_debug("k8s: read the token from %s", path);
}

/* ---- requests ------------------------------------------------------------ */

static int sockopt_cb(void *ud, curl_socket_t fd, curlsocktype purpose)
{
	struct k8s *k = ud;

	/* The agent's own sockets carry its mark: the connect hooks never
	 * capture them. */
	if (purpose == CURLSOCKTYPE_IPCXN &&
	    setsockopt(fd, SOL_SOCKET, SO_MARK, &k->mark, sizeof(k->mark)))
		pr_debug("k8s: SO_MARK: %s", strerror(errno));
	return CURL_SOCKOPT_OK;
}

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

static int res_start(struct k8s_res *r)
{
	struct k8s *k = r->k;
	const struct k8s_conn *c = &k->conn;
	char *url = NULL, *esc = NULL, *auth = NULL;
	CURL *e;
	int n;

	token_refresh(k);
	e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	if (r->listing) {
		esc = r->cont ? curl_easy_escape(e, r->cont, 0) : NULL;
		n = asprintf(&url, "%s%s?limit=%d%s%s", c->server, k8s_paths[r->kind],
			     K8S_LIST_LIMIT, esc ? "&continue=" : "", esc ? esc : "");
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
	r->hdrs = curl_slist_append(NULL, "Accept: application/json");
	if (k->token && asprintf(&auth, "Authorization: Bearer %s", k->token) >= 0) {
		struct curl_slist *h = curl_slist_append(r->hdrs, auth);

		r->hdrs = h ? h : r->hdrs;
		/* the slist keeps a copy; wipe ours */
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "shuntd");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)K8S_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
	curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, k);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	if (c->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
	if (c->ca_data) {
		struct curl_blob b = {.data = c->ca_data, .len = c->ca_len};

		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
	}
	if (c->cert_file)
		curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
	if (c->key_file)
		curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
	if (c->cert_data) {
		struct curl_blob b = {.data = c->cert_data, .len = c->cert_len};

		curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
	}
	if (c->key_data) {
		struct curl_blob b = {.data = c->key_data, .len = c->key_len};

		curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
	}
	if (c->insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	r->easy = e;
	r->status = 0;
	r->events = 0;
	r->relist = false;
	r->why[0] = '\0';
	r->body.len = 0;
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
		int ret = k8s_decode(r->kind, obj, &o, err, sizeof(err));

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
		buf_add(&r->body, p, n < K8S_ERROR_BODY_MAX ? n : K8S_ERROR_BODY_MAX,
			K8S_ERROR_BODY_MAX);
		return n;
	}
	if (r->listing)
		return buf_add(&r->body, p, n, K8S_LIST_BODY_MAX) ? 0 : n;
	/* A watch: one JSON event per line. */
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (r->body.len) {
			if (buf_add(&r->body, p + start, i - start, K8S_EVENT_MAX))
				goto too_big;
			if (!handle_event(r, r->body.p, r->body.len))
				return 0;
			r->body.len = 0;
		} else if (!handle_event(r, p + start, i - start)) {
			return 0;
		}
		start = i + 1;
	}
	if (start < n && buf_add(&r->body, p + start, n - start, K8S_EVENT_MAX))
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
	struct json_object *o = r->body.len ? json_tokener_parse(r->body.p) : NULL;
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
	o = json_tokener_parse_ex(r->tok, r->body.p, (int)r->body.len);
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
		if (k8s_decode(r->kind, it, &obj, err, sizeof(err))) {
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
		k->need_full = true;
	}
	r->next_ms = 0;
	json_object_put(o);
	/* A list page can be megabytes: give it back now. */
	buf_free(&r->body);
}

static void res_done(struct k8s_res *r, CURLcode rc)
{
	struct k8s *k = r->k;
	char msg[200];

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	curl_multi_remove_handle(k->multi, r->easy);
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	r->easy = NULL;
	r->hdrs = NULL;
	r->busy = false;

	if (r->relist) { /* the stream said so */
		r->body.len = 0;
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
			k->token_reload = true;
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
	r->body.len = 0;
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

/* ---- hand-over to the main loop ------------------------------------------ */

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
	b->novr = (size_t)novr;
	b->ovr = ovr;
	pthread_mutex_lock(&k->mu);
	*k->tail = b;
	k->tail = &b->next;
	pthread_mutex_unlock(&k->mu);
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
		long timeout = K8S_POLL_MAX_MS;

		/* Requests read it as they start; long watches in between. */
		if (now - k->token_checked_ms >= K8S_TOKEN_CHECK_MS)
			token_refresh(k);

		for (int i = 0; i < K8S_NKINDS; i++) {
			struct k8s_res *r = &k->res[i];

			if (r->busy)
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
		publish(k);
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
		/* New pod cgroups wake the thread as API events do. */
		wfd.fd = k->cg.ifd;
		wfd.revents = 0;
		curl_multi_poll(k->multi, &wfd, k8s_cgroups_following(&k->cg) ? 1 : 0, (int)timeout,
				NULL);
	}
	for (int i = 0; i < K8S_NKINDS; i++) {
		struct k8s_res *r = &k->res[i];

		if (r->easy) {
			curl_multi_remove_handle(k->multi, r->easy);
			curl_easy_cleanup(r->easy);
		}
		curl_slist_free_all(r->hdrs);
		res_list_reset(r);
		buf_free(&r->body);
		json_tokener_free(r->tok);
		r->easy = NULL;
		r->hdrs = NULL;
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

static void apply_overrides(struct k8s *k, const struct k8s_batch *b)
{
	struct store *s = &k->a->store;
	size_t added = 0, removed = 0, failed = 0;
	uint64_t now = (uint64_t)time(NULL);
	char err[256], first[256] = "", a1[ADDR_STR_LEN], a2[ADDR_STR_LEN];

	for (size_t i = 0; i < b->novr; i++) {
		const struct k8s_override *o = &b->ovr[i].o;

		format_addr_port(&o->k.dst, a1, sizeof(a1));
		format_addr_port(&o->v.to, a2, sizeof(a2));
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
			continue;
		}
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
	if (failed)
		pr_err("k8s: %zu override(s) could not be installed: %s", failed, first);
	if (b->novr || removed)
		pr_debug("k8s: %zu override(s) added or changed, %zu removed", added, removed);
}

static void apply_batch(struct k8s *k, const struct k8s_batch *b)
{
	struct store *s = &k->a->store;
	struct route_table *keep = NULL;
	size_t added = 0, removed = 0, failed = 0;
	uint64_t now = (uint64_t)time(NULL);
	char err[256], first[256] = "";

	if (b->full) {
		keep = route_table_new();
		if (!keep) {
			pr_err("k8s: out of memory applying a resync");
			return;
		}
	}
	for (size_t i = 0; i < b->n; i++) {
		const struct k8s_op *op = &b->ops[i];
		const struct shunt_route_key *key = &op->r.k;
		const struct shunt_route *cur;

		if (op->del) {
			removed += store_k8s_del(s, key) == 0;
			continue;
		}
		if (keep && route_table_put(keep, key, &op->r.v, NULL)) {
			/* Without the full set nothing may be deleted. */
			route_table_free(keep);
			keep = NULL;
		}
		if (op->r.v.expires_unix && op->r.v.expires_unix <= now)
			continue;
		cur = route_table_get(s->t, &key->service, key->key,
				      strnlen(key->key, sizeof(key->key)));
		if (cur && (cur->flags & SHUNT_ROUTE_FROM_K8S) && route_same(cur, &op->r.v))
			continue;
		if (store_k8s_put(s, key, &op->r.v, err, sizeof(err))) {
			if (!failed++)
				snprintf(first, sizeof(first), "%s", err);
			continue;
		}
		added++;
	}
	if (keep) {
		struct shunt_route_key *keys;
		struct shunt_route *vals;
		long cnt = route_table_sorted(s->t, &keys, &vals);

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
	}
	if (failed)
		pr_err("k8s: %zu route(s) could not be installed: %s", failed, first);
	if (b->full)
		pr_info("k8s: resync: %zu route(s) added or changed, %zu removed", added, removed);
	else
		pr_debug("k8s: %zu route(s) added or changed, %zu removed", added, removed);
	apply_overrides(k, b);
}

static void on_batches(struct ev_handler *h, uint32_t events)
{
	struct k8s *k = (struct k8s *)h;
	struct k8s_batch *b, *next;
	uint64_t cnt;

	if (read(k->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&k->mu);
	b = k->head;
	k->head = NULL;
	k->tail = &k->head;
	pthread_mutex_unlock(&k->mu);
	for (; b; b = next) {
		next = b->next;
		/* After a takeover the successor owns the routes. */
		if (!k->a->handed_over && !k->a->draining)
			apply_batch(k, b);
		free(b->ops);
		free(b->ovr);
		free(b);
	}
}

static int conn_setup(struct k8s_conn *c, const struct k8s_opts *o)
{
	char err[512];
	int ret = 0;

	if (o->kubeconfig)
		ret = kubeconfig_load(o->kubeconfig, c, err, sizeof(err));
	else if (o->in_cluster || !o->api)
		ret = k8s_conn_in_cluster(c, err, sizeof(err));
	else
		memset(c, 0, sizeof(*c));
	if (ret) {
		pr_err("k8s: %s", err);
		return ret;
	}
	if (o->api) {
		if (strncmp(o->api, "https://", 8) && strncmp(o->api, "http://", 7)) {
			pr_err("k8s: --k8s-api: '%s' is not an http:// or https:// URL", o->api);
			k8s_conn_free(c);
			return -EINVAL;
		}
		free(c->server);
		c->server = strndup(o->api, strlen(o->api) - (o->api[strlen(o->api) - 1] == '/'));
	}
	if (o->token_file) {
		free(c->token_file);
		free(c->token);
		c->token = NULL;
		c->token_file = strdup(o->token_file);
	}
	if (o->ca_file) {
		free(c->ca_file);
		free(c->ca_data);
		c->ca_data = NULL;
		c->ca_file = strdup(o->ca_file);
	}
	if (!c->server || (o->token_file && !c->token_file) || (o->ca_file && !c->ca_file)) {
		k8s_conn_free(c);
		return -ENOMEM;
	}
	return 0;
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

	for (b = k->head; b; b = next) {
		next = b->next;
		free(b->ops);
		free(b->ovr);
		free(b);
	}
	for (int i = 0; i < K8S_NKINDS; i++)
		if (k->res[i].tok) /* json_tokener_free(NULL) crashes */
			json_tokener_free(k->res[i].tok);
	if (k->multi)
		curl_multi_cleanup(k->multi);
	k8s_cache_free(&k->cache);
	k8s_cgroups_free(&k->cg);
	k8s_wait_free(k->wait);
	free(k->node);
	k8s_conn_free(&k->conn);
	free(k->token);
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
	k->mark = a->popts.mark;
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
	ret = conn_setup(&k->conn, o);
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
	ret = -pthread_create(&k->thread, NULL, k8s_thread, k);
	if (ret) {
		loop_del(&a->loop, k->efd);
		goto fail;
	}
	k->running = true;
	a->k8s = k;
	if (k8s_cgroups_following(&k->cg))
		pr_info("k8s: following new pod cgroups below %s (%zu directories watched)",
			a->cgroup, k8s_cgroups_nwatches(&k->cg));
	pr_info("k8s: following %s as node %s (%s)", k->conn.server, k->node,
		k->conn.token_file			 ? k->conn.token_file
		: k->conn.token				 ? "token from the kubeconfig"
		: k->conn.cert_file || k->conn.cert_data ? "client certificate"
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

void k8s_get_status(const struct agent *a, struct k8s_status *st)
{
	struct k8s *k = a->k8s;

	memset(st, 0, sizeof(*st));
	if (!k)
		return;
	pthread_mutex_lock(&k->mu);
	*st = k->st;
	pthread_mutex_unlock(&k->mu);
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
