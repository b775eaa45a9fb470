// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The control-socket request line: parsing (shuntd) and writing (shuntctl). */
#include <stdio.h>
#include <string.h>

#include "ops/ctl_proto.h"
#include "state/routes.h"
#include "kernel/source.h"
#include "core/util.h"

/* A field quoted in a message: at most 64 bytes, unprintable ones as '?'. */
static const char *shown(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < len && i < 64; i++)
		buf[i] = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? s[i] : '?';
	buf[i] = '\0';
	return buf;
}

static int parse_format(char **f, int n, const char *what, bool *json, char *err, size_t errlen)
{
	char q[72];

	if (n != 2)
		return err_printf(err, errlen, CTL_EXIT_USAGE, "%s: expected 1 field, got %d", what,
				  n - 1);
	if (!strcmp(f[1], "json"))
		*json = true;
	else if (strcmp(f[1], "text"))
		return err_printf(err, errlen, CTL_EXIT_USAGE,
				  "%s: format '%s' is not text or json", what,
				  shown(f[1], q, sizeof(q)));
	return 0;
}

static int parse_service_key(char **f, struct ctl_request *req, char *err, size_t errlen)
{
	char q[72];

	if (parse_addr_port(f[1], &req->service))
		return err_printf(err, errlen, CTL_EXIT_FAILED, "--service: '%s' is not IP:PORT",
				  shown(f[1], q, sizeof(q)));
	if (rk_validate(f[2]))
		return err_printf(err, errlen, CTL_EXIT_FAILED,
				  "--key: '%s' is not a valid routing key (1-63 visible ASCII "
				  "characters, none of , ; = \" \\)",
				  shown(f[2], q, sizeof(q)));
	strcpy(req->key, f[2]); /* rk_validate: at most 63 bytes */
	return 0;
}

static int parse_pod_name(const char *f, struct ctl_request *req, char *err, size_t errlen)
{
	char q[72];

	if (strlen(f) >= sizeof(req->pod_name) ||
	    strspn(f, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") !=
		    strlen(f))
		return err_printf(err, errlen, CTL_EXIT_FAILED,
				  "pod name '%s': want up to %zu of A-Z a-z 0-9 . _ / - "
				  "(e.g. NAMESPACE/POD)",
				  shown(f, q, sizeof(q)), sizeof(req->pod_name) - 1);
	memcpy(req->pod_name, f, strlen(f) + 1);
	return 0;
}

/* pod-infer's MODE (off|shadow|on) and PORTS ("-", or up to
 * CTL_INFER_MAX_PORTS ports, comma-separated, none twice). */
static int parse_infer(const char *mode, const char *ports, struct ctl_request *req, char *err,
		       size_t errlen)
{
	char q[72];
	int n;

	if (!strcmp(mode, "off"))
		req->infer_mode = CTL_INFER_OFF;
	else if (!strcmp(mode, "shadow"))
		req->infer_mode = CTL_INFER_SHADOW;
	else if (!strcmp(mode, "on"))
		req->infer_mode = CTL_INFER_ON;
	else
		return err_printf(err, errlen, CTL_EXIT_FAILED,
				  "pod infer: mode '%s' is not off, shadow or on",
				  shown(mode, q, sizeof(q)));
	req->n_infer_ports = 0;
	if (!strcmp(ports, "-"))
		return 0;
	n = parse_port_list(ports, req->infer_ports, CTL_INFER_MAX_PORTS);
	if (n > 0) {
		req->n_infer_ports = n;
		return 0;
	}
	return err_printf(err, errlen, CTL_EXIT_FAILED,
			  "--port: '%s' is not up to %d distinct ports 1-65535, comma-separated",
			  shown(ports, q, sizeof(q)), CTL_INFER_MAX_PORTS);
}

/* override-add FROM DST TO TTL, override-del FROM DST */
static int parse_override(char **f, int n, struct ctl_request *req, char *err, size_t errlen)
{
	const char *what = req->op == CTL_OP_OVERRIDE_ADD ? "override-add" : "override-del";
	int want = req->op == CTL_OP_OVERRIDE_ADD ? 5 : 3;
	char q[72];

	if (n != want)
		return err_printf(err, errlen, CTL_EXIT_USAGE, "%s: expected %d fields, got %d",
				  what, want - 1, n - 1);
	if ((n == 3 ? source_check_listed : source_check)(f[1], err, errlen))
		return CTL_EXIT_FAILED;
	strcpy(req->from, f[1]); /* source_check: shorter than the field */
	if (parse_addr_port(f[2], &req->dst))
		return err_printf(err, errlen, CTL_EXIT_FAILED, "--dst: '%s' is not IP:PORT",
				  shown(f[2], q, sizeof(q)));
	if (n == 3)
		return 0;
	if (parse_addr_port(f[3], &req->to))
		return err_printf(err, errlen, CTL_EXIT_FAILED, "--to: '%s' is not IP:PORT",
				  shown(f[3], q, sizeof(q)));
	if (req->to.family != req->dst.family)
		return err_printf(err, errlen, CTL_EXIT_FAILED,
				  "--to: '%s' is not in the address family of --dst (a connect() "
				  "cannot change family)",
				  shown(f[3], q, sizeof(q)));
	if (parse_u64(f[4], CTL_MAX_TTL, &req->ttl_sec))
		return err_printf(err, errlen, CTL_EXIT_FAILED,
				  "--ttl: '%s' is not a number of seconds up to %llu",
				  shown(f[4], q, sizeof(q)), (unsigned long long)CTL_MAX_TTL);
	return 0;
}

int ctl_parse_request(const char *line, size_t len, struct ctl_request *req, char *err,
		      size_t errlen)
{
	char buf[CTL_MAX_REQUEST + 1], q[72];
	char *f[CTL_MAX_FIELDS];
	int n = 0, ret;

	memset(req, 0, sizeof(*req));
	if (err && errlen)
		err[0] = '\0';
	if (len == 0)
		return err_printf(err, errlen, CTL_EXIT_USAGE, "empty request");
	if (len > CTL_MAX_REQUEST)
		return err_printf(err, errlen, CTL_EXIT_USAGE, "request too long");
	for (size_t i = 0; i < len; i++)
		if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n')
			return err_printf(err, errlen, CTL_EXIT_USAGE,
					  "request has a NUL, CR or LF byte at offset %zu", i);
	memcpy(buf, line, len);
	buf[len] = '\0';
	/* Split on every TAB: an empty field stays a field (and is refused). */
	for (char *p = buf;; n++) {
		char *tab = strchr(p, '\t');

		if (n == CTL_MAX_FIELDS)
			return err_printf(err, errlen, CTL_EXIT_USAGE, "more than %d fields",
					  CTL_MAX_FIELDS);
		f[n] = p;
		if (!tab) {
			n++;
			break;
		}
		*tab = '\0';
		p = tab + 1;
	}
	for (int i = 0; i < n; i++)
		if (!f[i][0])
			return err_printf(err, errlen, CTL_EXIT_USAGE, "field %d is empty", i);

	if (!strcmp(f[0], "route-list")) {
		req->op = CTL_OP_ROUTE_LIST;
		return parse_format(f, n, f[0], &req->json, err, errlen);
	}
	if (!strcmp(f[0], "status")) {
		req->op = CTL_OP_STATUS;
		return parse_format(f, n, f[0], &req->json, err, errlen);
	}
	if (!strcmp(f[0], "takeover")) {
		req->op = CTL_OP_TAKEOVER;
		if (n != 1)
			return err_printf(err, errlen, CTL_EXIT_USAGE,
					  "takeover: expected no field");
		return 0;
	}
	if (!strcmp(f[0], "override-ready")) {
		req->op = CTL_OP_OVERRIDE_READY;
		if (n != 2)
			return err_printf(err, errlen, CTL_EXIT_USAGE,
					  "override-ready: expected 1 field, got %d", n - 1);
		if (!k8s_uid_valid(f[1], strlen(f[1])))
			return err_printf(err, errlen, CTL_EXIT_FAILED,
					  "--pod-uid: '%s' is not a pod uid (metadata.uid: 36 "
					  "lowercase hex digits and dashes, 8-4-4-4-12)",
					  shown(f[1], q, sizeof(q)));
		memcpy(req->pod_uid, f[1], K8S_UID_LEN + 1);
		return 0;
	}
	if (!strcmp(f[0], "reload")) {
		req->op = CTL_OP_RELOAD;
		if (n != 1)
			return err_printf(err, errlen, CTL_EXIT_USAGE, "reload: expected no field");
		return 0;
	}
	if (!strcmp(f[0], "pod-list")) {
		req->op = CTL_OP_POD_LIST;
		return parse_format(f, n, f[0], &req->json, err, errlen);
	}
	if (!strcmp(f[0], "pod-infer")) {
		req->op = CTL_OP_POD_INFER;
		if (n != 4)
			return err_printf(err, errlen, CTL_EXIT_USAGE,
					  "pod-infer: expected 3 fields, got %d", n - 1);
		ret = parse_pod_name(f[1], req, err, errlen);
		return ret ? ret : parse_infer(f[2], f[3], req, err, errlen);
	}
	if (!strcmp(f[0], "pod-add") || !strcmp(f[0], "pod-del") || !strcmp(f[0], "pod-add-tc")) {
		req->op = f[0][4] == 'd' ? CTL_OP_POD_DEL
			  : f[0][7]	 ? CTL_OP_POD_ADD_TC
					 : CTL_OP_POD_ADD;
		if (n != (req->op == CTL_OP_POD_DEL ? 2 : 3))
			return err_printf(err, errlen, CTL_EXIT_USAGE,
					  "%s: expected %d field(s), got %d", f[0],
					  req->op == CTL_OP_POD_DEL ? 1 : 2, n - 1);
		ret = parse_pod_name(f[1], req, err, errlen);
		if (ret || req->op == CTL_OP_POD_DEL)
			return ret;
		if (req->op == CTL_OP_POD_ADD_TC) {
			if (strlen(f[2]) >= sizeof(req->ifname) ||
			    strspn(f[2], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789._@-") != strlen(f[2]))
				return err_printf(err, errlen, CTL_EXIT_FAILED,
						  "--tc: '%s' is not an interface name (up to %zu "
						  "of A-Z a-z 0-9 . _ @ -)",
						  shown(f[2], q, sizeof(q)),
						  sizeof(req->ifname) - 1);
			memcpy(req->ifname, f[2], strlen(f[2]) + 1);
			return 0;
		}
		if (f[2][0] != '/' || strlen(f[2]) >= sizeof(req->netns))
			return err_printf(err, errlen, CTL_EXIT_FAILED,
					  "--netns: '%s' is not an absolute path (up to %zu bytes) "
					  "of a network namespace, e.g. /run/netns/NAME or "
					  "/proc/PID/ns/net",
					  shown(f[2], q, sizeof(q)), sizeof(req->netns) - 1);
		memcpy(req->netns, f[2], strlen(f[2]) + 1);
		return 0;
	}
	if (!strcmp(f[0], "override-list")) {
		req->op = CTL_OP_OVERRIDE_LIST;
		return parse_format(f, n, f[0], &req->json, err, errlen);
	}
	if (!strcmp(f[0], "override-add") || !strcmp(f[0], "override-del")) {
		req->op = f[0][9] == 'a' ? CTL_OP_OVERRIDE_ADD : CTL_OP_OVERRIDE_DEL;
		return parse_override(f, n, req, err, errlen);
	}
	if (!strcmp(f[0], "route-del")) {
		req->op = CTL_OP_ROUTE_DEL;
		if (n != 3)
			return err_printf(err, errlen, CTL_EXIT_USAGE,
					  "route-del: expected 2 fields, got %d", n - 1);
		return parse_service_key(f, req, err, errlen);
	}
	if (strcmp(f[0], "route-add"))
		return err_printf(err, errlen, CTL_EXIT_USAGE, "unknown request '%s'",
				  shown(f[0], q, sizeof(q)));
	req->op = CTL_OP_ROUTE_ADD;
	if (n != 6)
		return err_printf(err, errlen, CTL_EXIT_USAGE,
				  "route-add: expected 5 fields, got %d", n - 1);
	ret = parse_service_key(f, req, err, errlen);
	if (ret)
		return ret;
	if (parse_addr_port(f[3], &req->to))
		return err_printf(err, errlen, CTL_EXIT_FAILED, "--to: '%s' is not IP:PORT",
				  shown(f[3], q, sizeof(q)));
	if (parse_u64(f[4], CTL_MAX_TTL, &req->ttl_sec))
		return err_printf(err, errlen, CTL_EXIT_FAILED,
				  "--ttl: '%s' is not a number of seconds up to %llu",
				  shown(f[4], q, sizeof(q)), (unsigned long long)CTL_MAX_TTL);
	if (!strcmp(f[5], "baseline"))
		req->fallback_baseline = true;
	else if (strcmp(f[5], "error"))
		return err_printf(err, errlen, CTL_EXIT_FAILED,
				  "--fallback: '%s' is not baseline or error",
				  shown(f[5], q, sizeof(q)));
	return 0;
}

int ctl_format_request(const struct ctl_request *req, char *buf, size_t len)
{
	char s[ADDR_STR_LEN], t[ADDR_STR_LEN];
	int n;

	switch (req->op) {
	case CTL_OP_ROUTE_ADD:
		n = snprintf(buf, len, "route-add\t%s\t%s\t%s\t%llu\t%s\n",
			     format_addr_port(&req->service, s, sizeof(s)), req->key,
			     format_addr_port(&req->to, t, sizeof(t)),
			     (unsigned long long)req->ttl_sec,
			     req->fallback_baseline ? "baseline" : "error");
		break;
	case CTL_OP_ROUTE_DEL:
		n = snprintf(buf, len, "route-del\t%s\t%s\n",
			     format_addr_port(&req->service, s, sizeof(s)), req->key);
		break;
	case CTL_OP_OVERRIDE_ADD:
		n = snprintf(buf, len, "override-add\t%s\t%s\t%s\t%llu\n", req->from,
			     format_addr_port(&req->dst, s, sizeof(s)),
			     format_addr_port(&req->to, t, sizeof(t)),
			     (unsigned long long)req->ttl_sec);
		break;
	case CTL_OP_TAKEOVER:
		n = snprintf(buf, len, "takeover\n");
		break;
	case CTL_OP_OVERRIDE_READY:
		n = snprintf(buf, len, "override-ready\t%s\n", req->pod_uid);
		break;
	case CTL_OP_RELOAD:
		n = snprintf(buf, len, "reload\n");
		break;
	case CTL_OP_OVERRIDE_DEL:
		n = snprintf(buf, len, "override-del\t%s\t%s\n", req->from,
			     format_addr_port(&req->dst, s, sizeof(s)));
		break;
	case CTL_OP_POD_ADD:
		n = snprintf(buf, len, "pod-add\t%s\t%s\n", req->pod_name, req->netns);
		break;
	case CTL_OP_POD_DEL:
		n = snprintf(buf, len, "pod-del\t%s\n", req->pod_name);
		break;
	case CTL_OP_POD_ADD_TC:
		n = snprintf(buf, len, "pod-add-tc\t%s\t%s\n", req->pod_name, req->ifname);
		break;
	case CTL_OP_POD_INFER: {
		static const char *const modes[] = {"off", "shadow", "on"};
		char ports[CTL_INFER_MAX_PORTS * 6 + 1] = "-";
		size_t o = 0;

		if (req->infer_mode > CTL_INFER_ON)
			return -1;
		for (int i = 0; i < req->n_infer_ports && i < CTL_INFER_MAX_PORTS; i++)
			o += (size_t)snprintf(ports + o, sizeof(ports) - o, "%s%u", i ? "," : "",
					      req->infer_ports[i]);
		n = snprintf(buf, len, "pod-infer\t%s\t%s\t%s\n", req->pod_name,
			     modes[req->infer_mode], ports);
		break;
	}
	case CTL_OP_ROUTE_LIST:
	case CTL_OP_STATUS:
	case CTL_OP_OVERRIDE_LIST:
	case CTL_OP_POD_LIST:
		n = snprintf(buf, len, "%s\t%s\n",
			     req->op == CTL_OP_STATUS	    ? "status"
			     : req->op == CTL_OP_ROUTE_LIST ? "route-list"
			     : req->op == CTL_OP_POD_LIST   ? "pod-list"
							    : "override-list",
			     req->json ? "json" : "text");
		break;
	default:
		return -1;
	}
	return n < 0 || (size_t)n >= len ? -1 : n;
}

const char *ctl_op_name(enum ctl_op op)
{
	switch (op) {
	case CTL_OP_ROUTE_ADD:
		return "route add";
	case CTL_OP_ROUTE_DEL:
		return "route del";
	case CTL_OP_ROUTE_LIST:
		return "route list";
	case CTL_OP_STATUS:
		return "status";
	case CTL_OP_OVERRIDE_ADD:
		return "override add";
	case CTL_OP_OVERRIDE_DEL:
		return "override del";
	case CTL_OP_OVERRIDE_LIST:
		return "override list";
	case CTL_OP_OVERRIDE_READY:
		return "override wait";
	case CTL_OP_TAKEOVER:
		return "takeover";
	case CTL_OP_RELOAD:
		return "reload";
	case CTL_OP_POD_ADD:
		return "pod add";
	case CTL_OP_POD_DEL:
		return "pod del";
	case CTL_OP_POD_LIST:
		return "pod list";
	case CTL_OP_POD_ADD_TC:
		return "pod add --tc";
	case CTL_OP_POD_INFER:
		return "pod infer";
	}
	return "?";
}

bool ctl_op_privileged(enum ctl_op op)
{
	switch (op) {
	case CTL_OP_ROUTE_LIST:
	case CTL_OP_STATUS:
	case CTL_OP_OVERRIDE_LIST:
	case CTL_OP_POD_LIST:
	case CTL_OP_OVERRIDE_READY: /* a question about the kernel's state */
		return false;
	default:
		/* Whatever is not a listing, also an op added later. */
		return true;
	}
}
