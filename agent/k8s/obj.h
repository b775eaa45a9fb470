/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The Kubernetes objects the agent follows, decoded from the API's JSON
 * into the few fields it needs (docs/k8s-contract.md): SandboxRoutes,
 * Services, EndpointSlices, Pods and SandboxOverrides. Decoding is strict about what it uses
 * (types, lengths, counts) and ignores everything else; an object that
 * fails is refused with a message naming the field, never half-decoded.
 */
#ifndef SHUNT_K8S_OBJ_H
#define SHUNT_K8S_OBJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <shunt/shunt.h>

#include "core/hmap.h"

enum k8s_kind {
	K8S_SBR = 0, /* shunt.dev/v1alpha1 SandboxRoute */
	K8S_SERVICE,
	K8S_SLICE, /* discovery.k8s.io/v1 EndpointSlice */
	K8S_POD,
	K8S_SBO, /* shunt.dev/v1alpha1 SandboxOverride */
	K8S_NKINDS,
};

/* Bounds on what one object may hold: the API's own limits where it has
 * them, generous ones elsewhere. Beyond them the object is refused. */
#define K8S_NAME_MAX	     253 /* DNS subdomain: names, namespaces */
#define K8S_LABEL_KEY_MAX    317 /* prefix (253) '/' name (63) */
#define K8S_LABEL_VAL_MAX    63
#define K8S_MAX_LABELS	     256  /* per pod, per matchLabels */
#define K8S_MAX_EXPRS	     32	  /* matchExpressions */
#define K8S_MAX_EXPR_VALUES  256  /* values of one expression */
#define K8S_MAX_KEYS	     16	  /* routing keys of a SandboxRoute */
#define K8S_MAX_PORTS	     128  /* ports of a Service, slice or route */
#define K8S_MAX_ADDRS	     16	  /* sandbox.addresses */
#define K8S_MAX_ENDPOINTS    1000 /* per EndpointSlice (the API's limit) */
#define K8S_MAX_EP_ADDRS     100  /* addresses of one endpoint (the API's) */
#define K8S_MAX_POD_IPS	     2	  /* one per family */
#define K8S_TIME_MAX	     64	  /* RFC 3339 text */
#define K8S_DURATION_TXT_MAX 32
#define K8S_UID_MAX	     63			    /* metadata.uid (a UUID: 36) */
#define K8S_MAX_SBO_ADDRS    8			    /* destination/to addresses (the CRD's limit) */
#define K8S_ID_MAX	     (2 * K8S_NAME_MAX + 2) /* "namespace/name" and its NUL */

struct k8s_label {
	char *key, *val;
};

enum k8s_sel_op {
	K8S_SEL_IN,
	K8S_SEL_NOT_IN,
	K8S_SEL_EXISTS,
	K8S_SEL_NOT_EXISTS,
};

struct k8s_expr {
	char *key;
	enum k8s_sel_op op;
	char **values;
	size_t nvalues;
};

/* What every object has. id is "namespace/name"; ns and name point into
 * the same allocation (one per object: there are many pods). */
struct k8s_meta {
	char *ns, *name, *id;
};

struct k8s_route;

struct k8s_sbr {
	struct k8s_meta m;
	char *service;
	uint16_t *ports; /* Service port numbers; none = every TCP port */
	size_t nports;
	char keys[K8S_MAX_KEYS][SHUNT_ROUTE_KEY_LEN];
	size_t nkeys;
	/* sandbox: a selector (match, expr) or addresses */
	struct k8s_label *match;
	size_t nmatch;
	struct k8s_expr *expr;
	size_t nexpr;
	struct shunt_addr *addrs; /* port 0 */
	size_t naddrs;
	uint16_t port;
	bool fallback_baseline;
	uint64_t created_unix;
	uint64_t expires_unix; /* 0 = no ttl */

	/* Kept by the cache (k8s_cache.c): the routes this object asks for
	 * now (its translation), whether they are claimed (in the desired
	 * set: not refused), and why not. */
	struct k8s_route *routes;
	size_t nroutes;
	bool claimed;
	bool cidr_refused;     /* a sandbox address outside every --sandbox-cidr */
	bool over_quota;       /* over --max-routes-per-namespace */
	struct shunt_addr bad; /* cidr_refused: the first such address */
	size_t quota_used;     /* over_quota: routes of older objects of its namespace */
};

struct k8s_port {
	char *name; /* "" when unnamed */
	uint16_t port;
	bool tcp;
};

struct k8s_service {
	struct k8s_meta m;
	struct shunt_addr cips[2]; /* ClusterIPs, port 0 */
	size_t ncips;
	struct k8s_port *ports;
	size_t nports;
};

struct k8s_slice {
	struct k8s_meta m;
	char *service; /* label kubernetes.io/service-name; NULL when none */
	struct k8s_port *ports;
	size_t nports;
	struct shunt_addr *addrs; /* addresses of endpoints not unready; port 0 */
	size_t naddrs;
	/* Per address: the Pod its endpoint's targetRef names in the slice's
	 * namespace, or NULL (no targetRef, not a Pod, another namespace). */
	char **pods;
	/* Kept by the cache: does the address count (that Pod exists, has
	 * not ended and has that address)? Only then is it captured. */
	bool *valid;
	size_t ninvalid;
};

/* How a pod of this node asks to be captured: its annotation
 * shunt.dev/capture ("node", "in-pod", "tc"); DEFAULT without one (the
 * agent's --pod-capture decides); INVALID for any other value (served as
 * DEFAULT, and reported). */
#define K8S_CAPTURE_ANNOTATION "shunt.dev/capture"
enum k8s_capture {
	K8S_CAPTURE_DEFAULT = 0,
	K8S_CAPTURE_NODE,
	K8S_CAPTURE_INPOD,
	K8S_CAPTURE_TC,
	K8S_CAPTURE_INVALID,
};

/* Inferred propagation for an in-pod pod: shunt.dev/infer ("off",
 * "shadow", "on"; anything else is INVALID, served as off and reported),
 * on the ports shunt.dev/infer-ports lists ("8080,9090"), else the TCP
 * containerPorts its containers declare with a name starting "http" or
 * "grpc" (http, http2, grpc-web: Istio's convention). */
#define K8S_INFER_ANNOTATION	   "shunt.dev/infer"
#define K8S_INFER_PORTS_ANNOTATION "shunt.dev/infer-ports"
#define K8S_INFER_MAX_PORTS	   8
enum k8s_infer {
	K8S_INFER_OFF = 0, /* as enum infer_mode */
	K8S_INFER_SHADOW,
	K8S_INFER_ON,
	K8S_INFER_INVALID,
};

/* A Pod as far as the translation needs it: the few fields below, and
 * only the labels whose keys some selector uses (k8s_decode_opts). */
struct k8s_pod {
	struct k8s_meta m;
	struct k8s_label *labels;
	size_t nlabels;
	char *uid;  /* metadata.uid, for pods of this node only; else NULL */
	bool local; /* spec.nodeName is this node */
	bool ready; /* Running, with condition Ready=True */
	bool ended; /* Succeeded or Failed: its cgroup is gone, its IP free */
	uint8_t nips;
	struct shunt_addr ips[K8S_MAX_POD_IPS];
	uint8_t capture;      /* enum k8s_capture */
	uint8_t infer;	      /* enum k8s_infer */
	int8_t n_infer_ports; /* -1: shunt.dev/infer-ports is not a port list */
	uint16_t infer_ports[K8S_INFER_MAX_PORTS];
	bool host_network; /* spec.hostNetwork: the node's namespace, never in-pod or TC */
};

/* A metav1.LabelSelector. */
struct k8s_selector {
	struct k8s_label *match;
	size_t nmatch;
	struct k8s_expr *expr;
	size_t nexpr;
};

/* A SandboxOverride (deploy/crd-sandboxoverride.yaml): connections from
 * the pods matching sel, on this node, to dst go to `to` instead. */
struct k8s_sbo {
	struct k8s_meta m;
	struct k8s_selector sel; /* spec.podSelector */
	/* spec.destination: a Service (its port dst_port) or addresses */
	char *dst_service;
	struct shunt_addr dst_addrs[K8S_MAX_SBO_ADDRS]; /* port 0 */
	size_t ndst;
	uint16_t dst_port;
	/* spec.to: exactly one of a Service, a selector or addresses */
	char *to_service;
	struct k8s_selector to_sel; /* to_sel_set when used */
	bool to_sel_set;
	struct shunt_addr to_addrs[K8S_MAX_SBO_ADDRS]; /* port 0 */
	size_t nto;
	uint16_t to_port;
	uint64_t created_unix;
	uint64_t expires_unix; /* 0 = no ttl */
};

extern const char *const k8s_kind_names[K8S_NKINDS]; /* "sandboxroutes", ... */

/* What a Pod keeps: labels whose key is in label_keys (a set: key ->
 * anything; NULL keeps every label), and its uid only when spec.nodeName
 * is node (NULL: no pod is this node's). */
struct k8s_decode_opts {
	const struct hmap *label_keys;
	const char *node;
};

/* Decode an item of kind into a new object (*out, freed with
 * k8s_obj_free). 0 or -EINVAL with a message naming the field (-ENOMEM
 * when memory runs out). k8s_decode() has no options: every label kept,
 * no pod of this node. */
int k8s_decode_ex(enum k8s_kind kind, struct json_object *obj, const struct k8s_decode_opts *o,
		  void **out, char *err, size_t errlen);
int k8s_decode(enum k8s_kind kind, struct json_object *obj, void **out, char *err, size_t errlen);
void k8s_obj_free(enum k8s_kind kind, void *obj);
/* The object's "namespace/name" (for deletes and messages) into buf; 0 or
 * -EINVAL when metadata.name/namespace are missing or invalid. */
int k8s_object_id(struct json_object *obj, char *buf, size_t len);
/* metadata.resourceVersion, or NULL. */
const char *k8s_object_rv(struct json_object *obj);

/* Does the label set match the selector (matchLabels and matchExpressions
 * all hold)? */
bool k8s_selector_match(const struct k8s_sbr *r, const struct k8s_label *labels, size_t nlabels);
bool k8s_labels_match(const struct k8s_selector *sel, const struct k8s_label *labels,
		      size_t nlabels);
/* The selector of a SandboxRoute's sandbox (empty with addresses). */
struct k8s_selector k8s_sbr_selector(const struct k8s_sbr *r);

/* RFC 3339 ("2026-11-27T02:00:00Z", fractions and offsets allowed) to unix
 * seconds; 0 or -EINVAL. */
int k8s_parse_time(const char *s, uint64_t *out);

/* A member of a JSON object; NULL when o is not an object, the member is
 * absent, or it is null (the API writes null for "not set"). */
struct json_object *k8s_jget(struct json_object *o, const char *k);
/* o[k] as a string, an object or an array: NULL when it is absent, null
 * or of another type (what a hostile or older server may send). */
const char *k8s_jstr(struct json_object *o, const char *k);
struct json_object *k8s_jobj(struct json_object *o, const char *k);
struct json_object *k8s_jarr(struct json_object *o, const char *k);
/* The length of an array from k8s_jarr() (0 for NULL). */
size_t k8s_jlen(struct json_object *a);

#endif /* SHUNT_K8S_OBJ_H */
