/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The control-socket protocol between shuntctl and shuntd.
 *
 * Request: one line, fields separated by exactly one TAB, ending in LF:
 *   route-add  SERVICE KEY TO TTL_SECONDS FALLBACK(baseline|error)
 *   route-del  SERVICE KEY
 *   route-list FORMAT(text|json)
 *   status     FORMAT(text|json)
 *   override-add  FROM DST TO TTL_SECONDS
 *   override-del  FROM DST
 *   override-list FORMAT(text|json)
 *   takeover      (a new shuntd asks the running one for its listening
 *                 sockets: "ok" comes with them as SCM_RIGHTS, and the
 *                 running one drains and exits)
 *   override-ready POD_UID  (are the overrides SandboxOverrides want for
 *                 the pod in the kernel? "ok" with "ready: ..." or
 *                 "pending: ..."; an error when the agent does not follow
 *                 a cluster. Changes nothing.)
 *   reload        (read --config again, as SIGHUP does)
 *   pod-add   NAME NETNS_PATH  (serve the pod in-pod: the proxy's sockets
 *                 in its network namespace; NAME: [A-Za-z0-9._/-], e.g.
 *                 NAMESPACE/POD)
 *   pod-add-tc NAME IFNAME  (capture the pod with TC: the TC program on
 *                 its host-side interface IFNAME; [A-Za-z0-9._@-], < 16)
 *   pod-del   NAME  (either mode)
 *   pod-infer NAME MODE(off|shadow|on) PORTS  (inferred propagation for a
 *                 pod served in-pod; PORTS: its inbound HTTP ports,
 *                 comma-separated, or "-")
 *   pod-list  FORMAT(text|json)
 * (FROM as in source.h: netns:PATH, pid:PID, cgroup:PATH.) No field is empty; no byte is NUL, CR or LF. Response: a first line
 * "ok" or "error N" (N = the exit code shuntctl should use), then the text
 * to print (stdout for ok, stderr for error). The server closes the
 * connection after the response.
 *
 * Both ends use ctl_format_request() and ctl_parse_request(): what one
 * writes, the other reads back to the same request (tests/fuzz/fuzz_ctl.c).
 *
 * The ops that change the agent (ctl_op_privileged()) need CAP_NET_ADMIN
 * in the agent's user namespace; the others only access to the socket.
 */
#ifndef SHUNT_CTL_PROTO_H
#define SHUNT_CTL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shunt/shunt.h>

#include "k8s/uid.h"

#define CTL_MAX_REQUEST	 4096
#define CTL_MAX_FIELDS	 16
#define CTL_DEFAULT_PATH "/run/shunt/shunt.sock"
#define CTL_MAX_TTL	 (10ULL * 366 * 86400)

/* shuntctl exit codes */
#define CTL_EXIT_OK	     0
#define CTL_EXIT_FAILED	     1 /* the daemon refused the operation */
#define CTL_EXIT_USAGE	     2 /* bad command line */
#define CTL_EXIT_UNREACHABLE 3 /* no daemon on the control socket */

enum ctl_op {
	CTL_OP_ROUTE_ADD = 1,
	CTL_OP_ROUTE_DEL,
	CTL_OP_ROUTE_LIST,
	CTL_OP_STATUS,
	CTL_OP_OVERRIDE_ADD,
	CTL_OP_OVERRIDE_DEL,
	CTL_OP_OVERRIDE_LIST,
	CTL_OP_TAKEOVER,
	CTL_OP_OVERRIDE_READY,
	CTL_OP_RELOAD,
	CTL_OP_POD_ADD,
	CTL_OP_POD_DEL,
	CTL_OP_POD_LIST,
	CTL_OP_POD_ADD_TC,
	CTL_OP_POD_INFER,
};

/* pod-infer's modes (as enum infer_mode). */
enum ctl_infer_mode { CTL_INFER_OFF, CTL_INFER_SHADOW, CTL_INFER_ON };
#define CTL_INFER_MAX_PORTS 8

#define CTL_POD_NAME_LEN   64  /* NUL included */
#define CTL_NETNS_PATH_LEN 256 /* NUL included */
#define CTL_IFNAME_LEN	   16  /* IFNAMSIZ, NUL included */

struct ctl_request {
	enum ctl_op op;
	bool json;				   /* route-list, status */
	bool fallback_baseline;			   /* route-add */
	struct shunt_addr service, to;		   /* route-*; to: override-add too */
	char key[SHUNT_ROUTE_KEY_LEN];		   /* NUL-terminated, validated */
	uint64_t ttl_sec;			   /* 0 = none */
	struct shunt_addr dst;			   /* override-add, -del */
	char from[SHUNT_OVERRIDE_FROM_LEN];	   /* override-add, -del; syntax checked */
	char pod_uid[K8S_UID_LEN + 1];		   /* override-ready; validated */
	char pod_name[CTL_POD_NAME_LEN];	   /* pod-add, pod-del; validated */
	char netns[CTL_NETNS_PATH_LEN];		   /* pod-add: an absolute path */
	char ifname[CTL_IFNAME_LEN];		   /* pod-add-tc; validated */
	uint8_t infer_mode;			   /* pod-infer: enum ctl_infer_mode */
	uint16_t infer_ports[CTL_INFER_MAX_PORTS]; /* pod-infer: distinct, not 0 */
	int n_infer_ports;
};

/* Parse one request line of len bytes, without its LF. Returns 0, or the
 * exit code the client should get (CTL_EXIT_USAGE for a malformed line,
 * CTL_EXIT_FAILED for a well-formed one with a bad value) with a one-line
 * printable message in err. */
int ctl_parse_request(const char *line, size_t len, struct ctl_request *req, char *err,
		      size_t errlen);

/* The request as a line, LF included, NUL-terminated. Returns its length,
 * or -1 when it does not fit in len bytes. */
int ctl_format_request(const struct ctl_request *req, char *buf, size_t len);

/* The op as the operator types it ("route add"), for messages. */
const char *ctl_op_name(enum ctl_op op);

/* Does the op change routes, overrides or the agent itself (reload,
 * takeover)? Those need CAP_NET_ADMIN; listing and status do not. */
bool ctl_op_privileged(enum ctl_op op);

#endif /* SHUNT_CTL_PROTO_H */
