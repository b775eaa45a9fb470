// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Watches that say which namespaces to pass over (ctrl.h). A thread per
 * kind streams watch events with its own connection and marks the
 * namespace of each object that changed; it keeps nothing else. The
 * stream resumes from the last resourceVersion seen; a 410 or any failure
 * starts it afresh (its first events then mark every namespace that has
 * such objects, which only costs a pass). Deployments and Services are
 * watched because a baseline's template or a Service's selector change
 * what a fork must be; Jobs because a hook's end moves a Sandbox on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <json-c/json.h>

#include "ctrl/ctrl.h"
#include "k8s/obj.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/loop.h"

#define WATCH_TIMEOUT_S	     300
#define WATCH_LINE_MAX	     (4u << 20)
#define WATCH_BACKOFF_MS     1000
#define WATCH_BACKOFF_MAX_MS 10000

struct ctrl_watch {
	struct ctrl *c;
	const char *what;     /* "sandboxes" */
	const char *path;     /* "/apis/shunt.dev/v1alpha1" */
	const char *selector; /* labelSelector, URL-encoded, or NULL */
	struct k8s_client cl;
	pthread_t t;
	bool started;
	char rv[128];
	bool gone; /* a 410: start afresh */
	struct buf line;
	unsigned long events;
};

static const struct {
	const char *what, *path, *selector;
} watched[CTRL_WATCHES] = {
	{"sandboxes", "/apis/shunt.dev/v1alpha1", NULL},
	{"deployments", "/apis/apps/v1", NULL},
	{"services", "/api/v1", NULL},
	{"jobs", "/apis/batch/v1", "shunt.dev%2Fsandbox"},
};

void ctrl_mark(struct ctrl *c, const char *ns)
{
	pthread_mutex_lock(&c->mu);
	if (!ns)
		c->dirty_all = true;
	else if (!hmap_sget(&c->dirty, ns))
		hmap_put(&c->dirty, ns, strlen(ns), NULL, NULL);
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void on_line(struct ctrl_watch *w, const char *line)
{
	struct json_object *ev = json_tokener_parse(line), *obj, *md;
	const char *type, *ns, *rv;

	if (!ev)
		return;
	type = json_object_get_string(k8s_jget(ev, "type"));
	obj = k8s_jget(ev, "object");
	md = k8s_jget(obj, "metadata");
	rv = json_object_get_string(k8s_jget(md, "resourceVersion"));
	if (type && !strcmp(type, "ERROR")) {
		w->gone = true;
	} else {
		if (rv)
			snprintf(w->rv, sizeof(w->rv), "%s", rv);
		ns = json_object_get_string(k8s_jget(md, "namespace"));
		if (type && strcmp(type, "BOOKMARK") && ns) {
			w->events++;
			ctrl_mark(w->c, ns);
		}
	}
	json_object_put(ev);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
	struct ctrl_watch *w = ud;
	size_t n = size * nmemb;

	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n') {
			if (buf_len(&w->line) >= WATCH_LINE_MAX)
				return 0;
			if (buf_append(&w->line, p + i, 1))
				return 0;
			continue;
		}
		if (buf_len(&w->line)) {
			on_line(w, buf_head(&w->line));
			buf_reset(&w->line);
		}
	}
	return n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	const struct ctrl_watch *w = ud;

	(void)a, (void)b, (void)c, (void)d;
	return __atomic_load_n(&w->c->stop, __ATOMIC_ACQUIRE) ? 1 : 0;
}

/* One watch stream, until it ends. true when it was answered with 200. */
static bool watch_once(struct ctrl_watch *w, CURL *e)
{
	const struct ctrl *c = w->c;
	struct curl_slist *h;
	char url[1024], err[256];
	long status = 0;

	if (k8s_client_token(&w->cl, err, sizeof(err)))
		pr_warn("ctrl: %s", err);
	curl_easy_reset(e);
	h = k8s_client_easy(&w->cl, e, NULL);
	if (!h)
		return false;
	snprintf(url, sizeof(url),
		 "%s%s%s%s/%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%d%s%s%s%s",
		 w->cl.conn.server, w->path, c->o.ns ? "/namespaces/" : "", c->o.ns ? c->o.ns : "",
		 w->what, WATCH_TIMEOUT_S, w->rv[0] ? "&resourceVersion=" : "", w->rv,
		 w->selector ? "&labelSelector=" : "", w->selector ? w->selector : "");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, w);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)WATCH_TIMEOUT_S + 60);
	buf_reset(&w->line);
	w->gone = false;
	curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	if (status == 401)
		w->cl.token_reload = true;
	if (status == 410 || w->gone)
		w->rv[0] = '\0';
	return status == 200;
}

static void *watch_thread(void *arg)
{
	struct ctrl_watch *w = arg;
	struct ctrl *c = w->c;
	unsigned int backoff = 0;
	CURL *e = curl_easy_init();

	while (e && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		uint64_t until, t0 = monotonic_ms();

		/* A stream that ends at once (a proxy, a server shutting
		 * down) counts as a failure: no reconnecting in a loop. */
		if (watch_once(w, e) && monotonic_ms() - t0 >= 1000) {
			backoff = 0;
			continue;
		}
		backoff = backoff ? backoff * 2 : WATCH_BACKOFF_MS;
		if (backoff > WATCH_BACKOFF_MAX_MS)
			backoff = WATCH_BACKOFF_MAX_MS;
		w->rv[0] = '\0';
		pr_debug("ctrl: watch %s: retrying in %u ms", w->what, backoff);
		until = monotonic_ms() + backoff;
		while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) && monotonic_ms() < until) {
			struct timespec ts = {.tv_nsec = 50 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
	}
	if (e)
		curl_easy_cleanup(e);
	return NULL;
}

int ctrl_watches_start(struct ctrl *c)
{
	for (int i = 0; i < CTRL_WATCHES; i++) {
		struct ctrl_watch *w = calloc(1, sizeof(*w));
		int ret;

		if (!w)
			return -ENOMEM;
		c->w[i] = w;
		w->c = c;
		w->what = watched[i].what;
		w->path = watched[i].path;
		w->selector = watched[i].selector;
		ret = k8s_client_init(&w->cl, &c->o.where, "shunt-controller");
		if (ret)
			return ret;
		ret = -pthread_create(&w->t, NULL, watch_thread, w);
		if (ret)
			return ret;
		w->started = true;
	}
	return 0;
}

void ctrl_watches_stop(struct ctrl *c)
{
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < CTRL_WATCHES; i++) {
		struct ctrl_watch *w = c->w[i];

		if (!w)
			continue;
		if (w->started)
			pthread_join(w->t, NULL);
		k8s_client_free(&w->cl);
		buf_free(&w->line);
		free(w);
		c->w[i] = NULL;
	}
}
