/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Where the Kubernetes API server is and how to authenticate to it: from a
 * pod's in-cluster environment, from a kubeconfig file (its current
 * context), or from explicit flags that override either.
 */
#ifndef SHUNT_KUBECONFIG_H
#define SHUNT_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct k8s_conn {
	char *server;	  /* "https://host:port", no trailing '/' */
	char *token;	  /* a fixed bearer token, or NULL */
	char *token_file; /* a token re-read when it changes, or NULL */
	char *ca_file;	  /* PEM bundle to verify the server, or NULL */
	char *ca_data;	  /* ... or the PEM bytes themselves */
	size_t ca_len;
	char *cert_file, *key_file; /* client certificate, or NULL */
	char *cert_data, *key_data; /* ... or PEM bytes */
	size_t cert_len, key_len;
	bool insecure; /* insecure-skip-tls-verify */
	char *ns;      /* the context's namespace, or NULL */
};

/* The in-cluster config: $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
 * the service account's token file and CA. 0 or -errno with a message. */
int k8s_conn_in_cluster(struct k8s_conn *c, char *err, size_t errlen);
/* The current context of a kubeconfig file. 0 or -errno with a message
 * naming the file and what is wrong. */
int kubeconfig_load(const char *path, struct k8s_conn *c, char *err, size_t errlen);
/* Parse kubeconfig text (dir: where relative file names are resolved). */
int kubeconfig_parse(const char *text, size_t len, const char *dir, struct k8s_conn *c, char *err,
		     size_t errlen);
void k8s_conn_free(struct k8s_conn *c);

/* Standard base64 (whitespace ignored) into a malloc'd buffer. 0 or
 * -EINVAL/-ENOMEM. */
int base64_decode(const char *in, char **out, size_t *outlen);

#endif /* SHUNT_KUBECONFIG_H */
