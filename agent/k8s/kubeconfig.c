// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The kubeconfig format is YAML (libyaml reads it); only the current
 * context's cluster and user are used, with the fields the contract
 * names: server, certificate-authority(-data), insecure-skip-tls-verify;
 * token, tokenFile, client-certificate(-data), client-key(-data). Exec and
 * auth-provider plugins are not run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <yaml.h>

#include "k8s/kubeconfig.h"
#include "core/util.h"

#define KUBECONFIG_MAX (4U << 20)

void k8s_conn_free(struct k8s_conn *c)
{
	free(c->server);
	free(c->token);
	free(c->token_file);
	free(c->ca_file);
	free(c->ca_data);
	free(c->cert_file);
	free(c->key_file);
	free(c->cert_data);
	free(c->key_data);
	free(c->ns);
	memset(c, 0, sizeof(*c));
}

int base64_decode(const char *in, char **out, size_t *outlen)
{
	size_t len = strlen(in), n = 0;
	unsigned int acc = 0;
	int bits = 0, pad = 0;
	char *o = malloc(len / 4 * 3 + 4);

	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		int v;

		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad++;
			continue;
		}
		if (pad)
			goto bad; /* data after padding */
		if (ch >= 'A' && ch <= 'Z')
			v = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			v = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			v = ch - '0' + 52;
		else if (ch == '+')
			v = 62;
		else if (ch == '/')
			v = 63;
		else
			goto bad;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	if (pad > 2 || bits >= 6)
		goto bad;
	o[n] = '\0';
	*out = o;
	*outlen = n;
	return 0;
bad:
	free(o);
	return -EINVAL;
}

static char *read_small_file(const char *path, size_t max, size_t *len, int *errp)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t off = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st)) {
		*errp = -errno;
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if ((size_t)st.st_size > max) {
		close(fd);
		*errp = -EFBIG;
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		*errp = -ENOMEM;
		return NULL;
	}
	while (off < (size_t)st.st_size && (n = read(fd, buf + off, (size_t)st.st_size - off)) > 0)
		off += (size_t)n;
	close(fd);
	buf[off] = '\0';
	*len = off;
	return buf;
}

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *m, const char *key)
{
	if (!m || m->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(d, p->key);

		if (k && k->type == YAML_SCALAR_NODE && strlen(key) == k->data.scalar.length &&
		    !memcmp(k->data.scalar.value, key, k->data.scalar.length))
			return yaml_document_get_node(d, p->value);
	}
	return NULL;
}

/* A scalar as a C string (NULL when absent, not a scalar, or holding a
 * NUL). */
static const char *scalar(yaml_node_t *n)
{
	if (!n || n->type != YAML_SCALAR_NODE ||
	    strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
		return NULL;
	return (const char *)n->data.scalar.value;
}

/* The entry of a named list (clusters, contexts, users) called name:
 * its inner object (cluster, context, user). */
static yaml_node_t *named(yaml_document_t *d, yaml_node_t *root, const char *list, const char *name,
			  const char *inner)
{
	yaml_node_t *seq = map_get(d, root, list);

	if (!seq || seq->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top;
	     i++) {
		yaml_node_t *e = yaml_document_get_node(d, *i);
		const char *n = scalar(map_get(d, e, "name"));

		if (n && !strcmp(n, name))
			return map_get(d, e, inner);
	}
	return NULL;
}

static int dup_path(const char *dir, const char *p, char **out)
{
	if (!p) {
		*out = NULL;
		return 0;
	}
	if (p[0] == '/' || !dir) {
		*out = strdup(p);
	} else if (asprintf(out, "%s/%s", dir, p) < 0) {
		*out = NULL;
	}
	return *out ? 0 : -ENOMEM;
}

static int dup_b64(const char *s, char **out, size_t *len, const char *field, char *err,
		   size_t errlen)
{
	int ret;

	if (!s)
		return 0;
	ret = base64_decode(s, out, len);
	if (ret == -EINVAL)
		return err_printf(err, errlen, ret, "%s: not base64", field);
	return ret;
}

int kubeconfig_parse(const char *text, size_t len, const char *dir, struct k8s_conn *c, char *err,
		     size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *ctx, *cluster, *user;
	const char *cur, *cname, *uname, *server, *s;
	int ret = 0;

	memset(c, 0, sizeof(*c));
	if (!yaml_parser_initialize(&parser))
		return err_printf(err, errlen, -ENOMEM, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		ret = err_printf(err, errlen, -EINVAL, "line %zu: %s", parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "not YAML");
		yaml_parser_delete(&parser);
		return ret;
	}
	root = yaml_document_get_root_node(&doc);
	cur = scalar(map_get(&doc, root, "current-context"));
	if (!cur) {
		ret = err_printf(err, errlen, -EINVAL, "no current-context");
		goto out;
	}
	ctx = named(&doc, root, "contexts", cur, "context");
	cname = scalar(map_get(&doc, ctx, "cluster"));
	uname = scalar(map_get(&doc, ctx, "user"));
	if (!ctx || !cname) {
		ret = err_printf(err, errlen, -EINVAL,
				 "context '%s' is missing or names no cluster", cur);
		goto out;
	}
	s = scalar(map_get(&doc, ctx, "namespace"));
	if (s && !(c->ns = strdup(s))) {
		ret = -ENOMEM;
		goto out;
	}
	cluster = named(&doc, root, "clusters", cname, "cluster");
	server = scalar(map_get(&doc, cluster, "server"));
	if (!server || (strncmp(server, "https://", 8) && strncmp(server, "http://", 7))) {
		ret = err_printf(err, errlen, -EINVAL, "cluster '%s': no http(s):// server", cname);
		goto out;
	}
	c->server = strndup(server, strlen(server) - (server[strlen(server) - 1] == '/'));
	if (!c->server) {
		ret = -ENOMEM;
		goto out;
	}
	s = scalar(map_get(&doc, cluster, "insecure-skip-tls-verify"));
	c->insecure = s && !strcmp(s, "true");
	ret = dup_path(dir, scalar(map_get(&doc, cluster, "certificate-authority")), &c->ca_file);
	if (!ret)
		ret = dup_b64(scalar(map_get(&doc, cluster, "certificate-authority-data")),
			      &c->ca_data, &c->ca_len, "certificate-authority-data", err, errlen);
	user = uname ? named(&doc, root, "users", uname, "user") : NULL;
	if (!ret && user) {
		s = scalar(map_get(&doc, user, "token"));
		if (s && !(c->token = strdup(s)))
			ret = -ENOMEM;
		if (!ret)
			ret = dup_path(dir, scalar(map_get(&doc, user, "tokenFile")),
				       &c->token_file);
		if (!ret)
			ret = dup_path(dir, scalar(map_get(&doc, user, "client-certificate")),
				       &c->cert_file);
		if (!ret)
			ret = dup_path(dir, scalar(map_get(&doc, user, "client-key")),
				       &c->key_file);
		if (!ret)
			ret = dup_b64(scalar(map_get(&doc, user, "client-certificate-data")),
				      &c->cert_data, &c->cert_len, "client-certificate-data", err,
				      errlen);
		if (!ret)
			ret = dup_b64(scalar(map_get(&doc, user, "client-key-data")), &c->key_data,
				      &c->key_len, "client-key-data", err, errlen);
	}
	if (ret == -ENOMEM)
		err_printf(err, errlen, ret, "out of memory");
out:
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (ret)
		k8s_conn_free(c);
	return ret;
}

int kubeconfig_load(const char *path, struct k8s_conn *c, char *err, size_t errlen)
{
	size_t len;
	int ret = 0;
	char *text = read_small_file(path, KUBECONFIG_MAX, &len, &ret);
	char *dir, msg[256];

	if (!text)
		return err_printf(err, errlen, ret, "%s: %s", path, strerror(-ret));
	dir = strdup(path);
	if (!dir) {
		free(text);
		return err_printf(err, errlen, -ENOMEM, "out of memory");
	}
	if (strrchr(dir, '/'))
		*strrchr(dir, '/') = '\0';
	else
		strcpy(dir, ".");
	ret = kubeconfig_parse(text, len, dir, c, msg, sizeof(msg));
	if (ret)
		err_printf(err, errlen, ret, "%s: %s", path, msg);
	free(dir);
	free(text);
	return ret;
}

int k8s_conn_in_cluster(struct k8s_conn *c, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");

	memset(c, 0, sizeof(*c));
	if (!host || !*host || !port || !*port)
		return err_printf(err, errlen, -ENOENT,
				  "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set");
	if (asprintf(&c->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		     port) < 0) {
		c->server = NULL;
		return err_printf(err, errlen, -ENOMEM, "out of memory");
	}
	c->token_file = strdup(K8S_SA_DIR "/token");
	c->ca_file = strdup(K8S_SA_DIR "/ca.crt");
	if (!c->token_file || !c->ca_file) {
		k8s_conn_free(c);
		return err_printf(err, errlen, -ENOMEM, "out of memory");
	}
	return 0;
}
