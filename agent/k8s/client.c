// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The API server's address and credentials made into libcurl options,
 * shared by the agent's watcher and the controller.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <json-c/json.h>

#include "k8s/client.h"
#include "core/log.h"
#include "core/util.h"

int k8s_client_init(struct k8s_client *c, const struct k8s_where *w, const char *agent)
{
	struct k8s_conn *k = &c->conn;
	char err[512];
	int ret = 0;

	memset(c, 0, sizeof(*c));
	c->agent = agent;
	if (w->kubeconfig)
		ret = kubeconfig_load(w->kubeconfig, k, err, sizeof(err));
	else if (w->in_cluster || !w->api)
		ret = k8s_conn_in_cluster(k, err, sizeof(err));
	if (ret) {
		pr_err("k8s: %s", err);
		return ret;
	}
	if (w->api) {
		size_t len = strlen(w->api);

		if (strncmp(w->api, "https://", 8) && strncmp(w->api, "http://", 7)) {
			pr_err("k8s: '%s' is not an http:// or https:// URL", w->api);
			k8s_conn_free(k);
			return -EINVAL;
		}
		free(k->server);
		k->server = strndup(w->api, len - (len && w->api[len - 1] == '/'));
	}
	if (w->token_file) {
		free(k->token_file);
		free(k->token);
		k->token = NULL;
		k->token_file = strdup(w->token_file);
	}
	if (w->ca_file) {
		free(k->ca_file);
		free(k->ca_data);
		k->ca_data = NULL;
		k->ca_file = strdup(w->ca_file);
	}
	/* A kubeconfig's fixed token is the one in use unless a file is
	 * named; the file is read by k8s_client_token(). */
	if (k->token && !k->token_file)
		c->token = strdup(k->token);
	if (!k->server || (w->token_file && !k->token_file) || (w->ca_file && !k->ca_file) ||
	    (k->token && !k->token_file && !c->token)) {
		k8s_client_free(c);
		return -ENOMEM;
	}
	return 0;
}

void k8s_client_free(struct k8s_client *c)
{
	if (c->easy)
		curl_easy_cleanup(c->easy);
	if (c->token) {
		memset(c->token, 0, strlen(c->token));
		free(c->token);
	}
	k8s_conn_free(&c->conn);
	memset(c, 0, sizeof(*c));
}

int k8s_client_token(struct k8s_client *c, char *err, size_t errlen)
{
	const char *path = c->conn.token_file;
	struct stat st;
	char *t;
	size_t len;
	FILE *f;

	if (!path)
		return 0;
	if (stat(path, &st)) {
		int e = errno;

		c->token_reload = false;
		return err_printf(err, errlen, -e, "token %s: %s", path, strerror(e));
	}
	if (c->token && !c->token_reload && st.st_mtim.tv_sec == c->token_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == c->token_st.st_mtim.tv_nsec && st.st_ino == c->token_st.st_ino &&
	    st.st_size == c->token_st.st_size)
		return 0;
	c->token_reload = false;
	f = fopen(path, "re");
	if (!f) {
		int e = errno;

		return err_printf(err, errlen, -e, "token %s: %s", path, strerror(e));
	}
	t = calloc(1, K8S_TOKEN_MAX + 1);
	len = t ? fread(t, 1, K8S_TOKEN_MAX, f) : 0;
	fclose(f);
	if (!t)
		return err_printf(err, errlen, -ENOMEM, "token %s: out of memory", path);
	while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' '))
		t[--len] = '\0';
	if (strlen(t) != len || !len) {
		free(t);
		return err_printf(err, errlen, -EINVAL, "token %s: empty or not text", path);
	}
	if (c->token) {
		memset(c->token, 0, strlen(c->token));
		free(c->token);
	}
	c->token = t;
	c->token_st = st;
	pr_debug("k8s: read the token from %s", path);
	return 0;
}

static int sockopt_cb(void *ud, curl_socket_t fd, curlsocktype purpose)
{
	const struct k8s_client *c = ud;

	/* The agent's own sockets carry its mark: the connect hooks never
	 * capture them. */
	if (c->mark && purpose == CURLSOCKTYPE_IPCXN &&
	    setsockopt(fd, SOL_SOCKET, SO_MARK, &c->mark, sizeof(c->mark)))
		pr_debug("k8s: SO_MARK: %s", strerror(errno));
	return CURL_SOCKOPT_OK;
}

struct curl_slist *k8s_client_easy(struct k8s_client *c, CURL *e, const char *extra)
{
	const struct k8s_conn *k = &c->conn;
	struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json"), *n;
	char *auth = NULL;

	if (h && c->token && asprintf(&auth, "Authorization: Bearer %s", c->token) >= 0) {
		n = curl_slist_append(h, auth);
		/* the slist keeps a copy; wipe ours */
		memset(auth, 0, strlen(auth));
		free(auth);
		if (!n)
			goto oom;
		h = n;
	}
	if (h && extra) {
		n = curl_slist_append(h, extra);
		if (!n)
			goto oom;
		h = n;
	}
	if (!h)
		return NULL;
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->agent);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)K8S_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
	curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, c);
	if (k->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, k->ca_file);
	if (k->ca_data) {
		struct curl_blob b = {.data = k->ca_data, .len = k->ca_len};

		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
	}
	if (k->cert_file)
		curl_easy_setopt(e, CURLOPT_SSLCERT, k->cert_file);
	if (k->key_file)
		curl_easy_setopt(e, CURLOPT_SSLKEY, k->key_file);
	if (k->cert_data) {
		struct curl_blob b = {.data = k->cert_data, .len = k->cert_len};

		curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
	}
	if (k->key_data) {
		struct curl_blob b = {.data = k->key_data, .len = k->key_len};

		curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
	}
	if (k->insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	return h;
oom:
	curl_slist_free_all(h);
	return NULL;
}

static size_t resp_write(char *p, size_t size, size_t nmemb, void *ud)
{
	struct buf *b = ud;
	size_t n = size * nmemb;

	if (buf_len(b) + n + 1 > K8S_RESPONSE_MAX || buf_reserve(b, n + 1))
		return 0; /* curl fails the transfer */
	memcpy(buf_tail(b), p, n);
	buf_commit(b, n);
	*buf_tail(b) = '\0';
	return n;
}

/* The message of a Status the server sent with a failure, else the
 * start of the body. */
static void resp_message(struct k8s_resp *r)
{
	struct json_object *o, *m;

	if (!buf_len(&r->body)) {
		snprintf(r->msg, sizeof(r->msg), "HTTP %ld", r->status);
		return;
	}
	o = json_tokener_parse(buf_head(&r->body));
	if (o && json_object_object_get_ex(o, "message", &m) &&
	    json_object_is_type(m, json_type_string))
		snprintf(r->msg, sizeof(r->msg), "%ld: %s", r->status, json_object_get_string(m));
	else
		snprintf(r->msg, sizeof(r->msg), "%ld: %.120s", r->status, buf_head(&r->body));
	json_object_put(o);
}

static int call_once(struct k8s_client *c, const char *method, const char *path, const char *ctype,
		     const char *body, struct k8s_resp *r)
{
	struct curl_slist *h;
	char *url = NULL, ct[128];
	CURLcode rc;

	if (!c->easy && !(c->easy = curl_easy_init()))
		return err_printf(r->msg, sizeof(r->msg), -ENOMEM, "out of memory");
	curl_easy_reset(c->easy);
	snprintf(ct, sizeof(ct), "Content-Type: %s", ctype ? ctype : "application/json");
	h = k8s_client_easy(c, c->easy, body ? ct : NULL);
	if (!h || asprintf(&url, "%s%s", c->conn.server, path) < 0) {
		curl_slist_free_all(h);
		return err_printf(r->msg, sizeof(r->msg), -ENOMEM, "out of memory");
	}
	buf_reset(&r->body);
	r->status = 0;
	r->msg[0] = '\0';
	curl_easy_setopt(c->easy, CURLOPT_URL, url);
	curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT, (long)K8S_REQUEST_TIMEOUT_S);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, resp_write);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, &r->body);
	if (body) {
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	rc = curl_easy_perform(c->easy);
	curl_slist_free_all(h);
	free(url);
	if (rc != CURLE_OK)
		return err_printf(r->msg, sizeof(r->msg), -EIO, "%s %s: %s", method, path,
				  curl_easy_strerror(rc));
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->status >= 300)
		resp_message(r);
	return 0;
}

int k8s_call(struct k8s_client *c, const char *method, const char *path, const char *ctype,
	     const char *body, struct k8s_resp *r)
{
	char err[256];
	int ret;

	if (k8s_client_token(c, err, sizeof(err)))
		pr_warn("k8s: %s", err);
	ret = call_once(c, method, path, ctype, body, r);
	if (!ret && r->status == 401 && c->conn.token_file) {
		c->token_reload = true;
		if (k8s_client_token(c, err, sizeof(err)))
			pr_warn("k8s: %s", err);
		ret = call_once(c, method, path, ctype, body, r);
	}
	return ret;
}

void k8s_resp_free(struct k8s_resp *r)
{
	buf_free(&r->body);
}

struct json_object *k8s_call_json(struct k8s_client *c, const char *method, const char *path,
				  const char *ctype, struct json_object *body, long *status,
				  char *msg, size_t msglen)
{
	struct k8s_resp r = {0};
	struct json_object *o = NULL;
	const char *text =
		body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;

	*status = 0;
	if (!k8s_call(c, method, path, ctype, text, &r)) {
		*status = r.status;
		if (r.status >= 200 && r.status < 300 && buf_len(&r.body))
			o = json_tokener_parse(buf_head(&r.body));
	}
	snprintf(msg, msglen, "%s", r.msg);
	k8s_resp_free(&r);
	return o;
}
