/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Talking to the Kubernetes API server: the connection settings
 * (kubeconfig.h) made into libcurl options, the bearer token kept fresh,
 * and one blocking request for callers that write (the controller). The
 * agent's watcher drives its own streams on a curl multi handle with the
 * same options (k8s_client_easy()).
 */
#ifndef SHUNT_K8S_CLIENT_H
#define SHUNT_K8S_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <curl/curl.h>

#include "core/buf.h"
#include "k8s/kubeconfig.h"

#define K8S_TOKEN_MAX	       65536
#define K8S_CONNECT_TIMEOUT_MS 5000
#define K8S_REQUEST_TIMEOUT_S  10 /* the controller must not outlive its lease in one request */
#define K8S_RESPONSE_MAX       (64u << 20) /* one answer (a list) */

/* Where the API server is: a kubeconfig, the in-cluster settings, or an
 * explicit URL, with a token file and CA that override either. */
struct k8s_where {
	bool in_cluster;
	const char *kubeconfig;
	const char *api;
	const char *token_file;
	const char *ca_file;
};

struct k8s_client {
	struct k8s_conn conn;
	const char *agent; /* User-Agent */
	uint32_t mark;	   /* SO_MARK on every socket (0: none) */
	char *token;	   /* in use: the kubeconfig's, or the file's */
	struct stat token_st;
	bool token_reload; /* read the file again (after a 401) */
	CURL *easy;	   /* k8s_call()'s handle: one kept-alive connection */
};

/* Resolve the settings. 0, or -errno having logged why. */
int k8s_client_init(struct k8s_client *c, const struct k8s_where *w, const char *agent);
void k8s_client_free(struct k8s_client *c);

/* Read the token file again if it changed (a projected service account
 * token rotates) or a 401 asked for it. 0, or -errno with a message. */
int k8s_client_token(struct k8s_client *c, char *err, size_t errlen);

/* Set e's connection options (TLS, timeouts, mark, agent) and return the
 * request headers to give it: Accept and the bearer token, plus extra
 * (NULL: none). NULL when out of memory. */
struct curl_slist *k8s_client_easy(struct k8s_client *c, CURL *e, const char *extra);

/* One answer of the API server. */
struct k8s_resp {
	long status;	 /* HTTP status, 0 when none came */
	struct buf body; /* the body, NUL terminated */
	char msg[256];	 /* transport error, or the Status message of a failure */
};

/* method path (below the server URL) with an optional body of type ctype
 * (JSON when NULL). 0 when an answer came (r->status says which), or
 * -errno with r->msg. A 401 re-reads the token and tries once more. */
int k8s_call(struct k8s_client *c, const char *method, const char *path, const char *ctype,
	     const char *body, struct k8s_resp *r);
void k8s_resp_free(struct k8s_resp *r);

struct json_object;

/* k8s_call() with JSON both ways: body (NULL: none) is sent, and the body
 * of a 2xx answer comes back parsed (a new reference; NULL otherwise).
 * *status: the HTTP status, 0 when no answer came; msg: why it failed. */
struct json_object *k8s_call_json(struct k8s_client *c, const char *method, const char *path,
				  const char *ctype, struct json_object *body, long *status,
				  char *msg, size_t msglen);

#endif /* SHUNT_K8S_CLIENT_H */
