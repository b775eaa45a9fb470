/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/ops/ctl_proto.c: the control-socket request line. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ops/ctl_proto.h"
#include "core/util.h"

static struct ctl_request req;
static char err[512];

static int parse_n(const char *line, size_t len)
{
	memset(&req, 0x5a, sizeof(req));
	memset(err, 'x', sizeof(err));
	return ctl_parse_request(line, len, &req, err, sizeof(err));
}

static int parse(const char *line)
{
	return parse_n(line, strlen(line));
}

static void assert_refused(const char *line, size_t len, int code, const char *msg)
{
	int ret = parse_n(line, len);

	cr_assert_eq(ret, code, "'%s': %d, expected %d (%s)", line, ret, code, err);
	cr_assert_str_eq(err, msg);
}

/* A literal's exact length, NULs included. */
#define REFUSED(lit, code, msg) assert_refused(lit, sizeof(lit) - 1, code, msg)

Test(ctl, route_add)
{
	char s[ADDR_STR_LEN];

	cr_assert_eq(parse("route-add\t10.96.0.10:80\tdev-a\t10.244.1.7:8080\t3600\tbaseline"), 0,
		     "%s", err);
	cr_assert_eq(req.op, CTL_OP_ROUTE_ADD);
	cr_assert_str_eq(format_addr_port(&req.service, s, sizeof(s)), "10.96.0.10:80");
	cr_assert_str_eq(format_addr_port(&req.to, s, sizeof(s)), "10.244.1.7:8080");
	cr_assert_str_eq(req.key, "dev-a");
	cr_assert_eq(req.ttl_sec, 3600);
	cr_assert(req.fallback_baseline);
	cr_assert_str_eq(err, "");

	cr_assert_eq(parse("route-add\t[fd00::10]:80\tk\t[fd00::7]:8080\t0\terror"), 0, "%s", err);
	cr_assert_eq(req.ttl_sec, 0);
	cr_assert(!req.fallback_baseline);
	cr_assert_eq(req.service.family, SHUNT_FAMILY_V6);
}

Test(ctl, other_ops)
{
	cr_assert_eq(parse("route-del\t10.96.0.10:80\tdev-a"), 0, "%s", err);
	cr_assert_eq(req.op, CTL_OP_ROUTE_DEL);
	cr_assert_str_eq(req.key, "dev-a");
	cr_assert_eq(parse("route-list\tjson"), 0);
	cr_assert(req.op == CTL_OP_ROUTE_LIST && req.json);
	cr_assert_eq(parse("status\ttext"), 0);
	cr_assert(req.op == CTL_OP_STATUS && !req.json);
	cr_assert_eq(parse("reload"), 0, "%s", err);
	cr_assert_eq(req.op, CTL_OP_RELOAD);
	cr_assert_eq(parse("takeover"), 0, "%s", err);
	cr_assert_eq(req.op, CTL_OP_TAKEOVER);
}

Test(ctl, privileged_ops)
{
	/* What changes the agent needs CAP_NET_ADMIN; what reads it does not. */
	const enum ctl_op priv[] = {CTL_OP_ROUTE_ADD,	 CTL_OP_ROUTE_DEL, CTL_OP_OVERRIDE_ADD,
				    CTL_OP_OVERRIDE_DEL, CTL_OP_TAKEOVER,  CTL_OP_RELOAD};
	const enum ctl_op open_ops[] = {CTL_OP_ROUTE_LIST, CTL_OP_STATUS, CTL_OP_OVERRIDE_LIST};

	for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++)
		cr_assert(ctl_op_privileged(priv[i]), "%s", ctl_op_name(priv[i]));
	for (size_t i = 0; i < sizeof(open_ops) / sizeof(open_ops[0]); i++)
		cr_assert(!ctl_op_privileged(open_ops[i]), "%s", ctl_op_name(open_ops[i]));
	cr_assert_str_eq(ctl_op_name(CTL_OP_ROUTE_ADD), "route add");
	cr_assert_str_eq(ctl_op_name(CTL_OP_RELOAD), "reload");
	cr_assert_str_eq(ctl_op_name((enum ctl_op)99), "?");
	cr_assert(ctl_op_privileged((enum ctl_op)99), "an unknown op must not be open");
}

Test(ctl, malformed_lines)
{
	REFUSED("", CTL_EXIT_USAGE, "empty request");
	REFUSED("status", CTL_EXIT_USAGE, "status: expected 1 field, got 0");
	REFUSED("status\tyaml", CTL_EXIT_USAGE, "status: format 'yaml' is not text or json");
	REFUSED("reboot\tnow", CTL_EXIT_USAGE, "unknown request 'reboot'");
	REFUSED("reload\tnow", CTL_EXIT_USAGE, "reload: expected no field");
	REFUSED("takeover\tx", CTL_EXIT_USAGE, "takeover: expected no field");
	REFUSED("\x01\x02", CTL_EXIT_USAGE,
		"unknown request '?"
		"?'");
	/* strtok_r used to merge the empty field and read 5 fields as 5. */
	REFUSED("route-add\t10.96.0.10:80\t\tdev-a\t10.244.1.7:8080\t0", CTL_EXIT_USAGE,
		"field 2 is empty");
	REFUSED("route-del\t10.96.0.10:80\tdev-a\t", CTL_EXIT_USAGE, "field 3 is empty");
	/* A NUL used to cut the line short silently. */
	REFUSED("status\0text", CTL_EXIT_USAGE, "request has a NUL, CR or LF byte at offset 6");
	REFUSED("status\ttext\r", CTL_EXIT_USAGE, "request has a NUL, CR or LF byte at offset 11");
	REFUSED("a\tb\tc\td\te\tf\tg\th\ti\tj\tk\tl\tm\tn\to\tp\tq", CTL_EXIT_USAGE,
		"more than 16 fields");
	cr_assert_eq(parse_n("status\ttext", CTL_MAX_REQUEST + 1), CTL_EXIT_USAGE);
	cr_assert_str_eq(err, "request too long");
}

Test(ctl, bad_values)
{
	REFUSED("route-add\t10.96.0.10\tdev-a\t10.244.1.7:8080\t0\terror", CTL_EXIT_FAILED,
		"--service: '10.96.0.10' is not IP:PORT");
	REFUSED("route-add\t10.96.0.10:80\tdev a\t10.244.1.7:8080\t0\terror", CTL_EXIT_FAILED,
		"--key: 'dev a' is not a valid routing key (1-63 visible ASCII characters, "
		"none of , ; = \" \\)");
	REFUSED("route-add\t10.96.0.10:80\tdev-a\t10.244.1.7:0\t0\terror", CTL_EXIT_FAILED,
		"--to: '10.244.1.7:0' is not IP:PORT");
	REFUSED("route-add\t10.96.0.10:80\tdev-a\t10.244.1.7:1\t-1\terror", CTL_EXIT_FAILED,
		"--ttl: '-1' is not a number of seconds up to 316224000");
	REFUSED("route-add\t10.96.0.10:80\tdev-a\t10.244.1.7:1\t316224001\terror", CTL_EXIT_FAILED,
		"--ttl: '316224001' is not a number of seconds up to 316224000");
	REFUSED("route-add\t10.96.0.10:80\tdev-a\t10.244.1.7:1\t1\tsandbox", CTL_EXIT_FAILED,
		"--fallback: 'sandbox' is not baseline or error");
}

Test(ctl, overrides)
{
	char s[ADDR_STR_LEN];

	cr_assert_eq(
		parse("override-add\tnetns:/run/netns/sbx-a\t10.96.0.50:5432\t10.244.1.9:5432\t60"),
		0, "%s", err);
	cr_assert_eq(req.op, CTL_OP_OVERRIDE_ADD);
	cr_assert_str_eq(req.from, "netns:/run/netns/sbx-a");
	cr_assert_str_eq(format_addr_port(&req.dst, s, sizeof(s)), "10.96.0.50:5432");
	cr_assert_str_eq(format_addr_port(&req.to, s, sizeof(s)), "10.244.1.9:5432");
	cr_assert_eq(req.ttl_sec, 60);
	cr_assert_eq(parse("override-del\tcgroup:/sys/fs/cgroup/kubepods/pod1\t[fd00::50]:5432"), 0,
		     "%s", err);
	cr_assert_eq(req.op, CTL_OP_OVERRIDE_DEL);
	cr_assert_eq(parse("override-list\tjson"), 0);
	cr_assert(req.op == CTL_OP_OVERRIDE_LIST && req.json);
	cr_assert_eq(parse("override-add\tpid:1\t10.0.0.1:1\t10.0.0.2:2\t0"), 0, "%s", err);

	REFUSED("override-add\tpid:1\t10.0.0.1:1\t[fd00::2]:2\t0", CTL_EXIT_FAILED,
		"--to: '[fd00::2]:2' is not in the address family of --dst (a connect() cannot "
		"change family)");
	REFUSED("override-add\tnetns:x\t10.0.0.1:1\t10.0.0.2:2\t0", CTL_EXIT_FAILED,
		"--from: 'netns:x': the path must be absolute");
	REFUSED("override-add\tpod:a\t10.0.0.1:1\t10.0.0.2:2\t0", CTL_EXIT_FAILED,
		"--from: 'pod:a' is not netns:PATH, pid:PID or cgroup:PATH (e.g. "
		"netns:/run/netns/sandbox-a)");
	REFUSED("override-add\tpid:0\t10.0.0.1:1\t10.0.0.2:2\t0", CTL_EXIT_FAILED,
		"--from: 'pid:0': not a process id");
	REFUSED("override-del\tpid:1\t10.0.0.1:1\t10.0.0.2:2", CTL_EXIT_USAGE,
		"override-del: expected 2 fields, got 3");
	REFUSED("override-del\tpid:\x7f\t10.0.0.1:1", CTL_EXIT_FAILED,
		"--from: space or unprintable byte at offset 4");
}

Test(ctl, override_ready)
{
	cr_assert_eq(parse("override-ready\t0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b"), 0, "%s", err);
	cr_assert_eq(req.op, CTL_OP_OVERRIDE_READY);
	cr_assert_str_eq(req.pod_uid, "0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b");
	REFUSED("override-ready", CTL_EXIT_USAGE, "override-ready: expected 1 field, got 0");
	REFUSED("override-ready\tpod-1", CTL_EXIT_FAILED,
		"--pod-uid: 'pod-1' is not a pod uid (metadata.uid: 36 lowercase hex digits and "
		"dashes, 8-4-4-4-12)");
	REFUSED("override-ready\t0B5C8A52-1f3e-4c7d-9a1b-2c3d4e5f6a7b", CTL_EXIT_FAILED,
		"--pod-uid: '0B5C8A52-1f3e-4c7d-9a1b-2c3d4e5f6a7b' is not a pod uid (metadata.uid: "
		"36 lowercase hex digits and dashes, 8-4-4-4-12)");
}

Test(ctl, pod_infer)
{
	cr_assert_eq(parse("pod-infer\tns/web-1\tshadow\t8080,1,65535"), 0, "%s", err);
	cr_assert_eq(req.op, CTL_OP_POD_INFER);
	cr_assert_str_eq(req.pod_name, "ns/web-1");
	cr_assert_eq(req.infer_mode, CTL_INFER_SHADOW);
	cr_assert_eq(req.n_infer_ports, 3);
	cr_assert_eq(req.infer_ports[0], 8080);
	cr_assert_eq(req.infer_ports[2], 65535);
	REFUSED("pod-infer\tns/web-1\ton", CTL_EXIT_USAGE, "pod-infer: expected 3 fields, got 2");
	REFUSED("pod-infer\tns/web-1\tmaybe\t80", CTL_EXIT_FAILED,
		"pod infer: mode 'maybe' is not off, shadow or on");
	REFUSED("pod-infer\tns web\ton\t80", CTL_EXIT_FAILED,
		"pod name 'ns web': want up to 63 of A-Z a-z 0-9 . _ / - (e.g. NAMESPACE/POD)");
	for (size_t i = 0; i < 6; i++) {
		static const char *const bad[] = {"0",	 "65536", "80,80",
						  "80,", ",80",	  "1,2,3,4,5,6,7,8,9"};
		char line[128];

		snprintf(line, sizeof(line), "pod-infer\tp\ton\t%s", bad[i]);
		cr_assert_eq(parse(line), CTL_EXIT_FAILED, "%s", line);
		cr_assert(strstr(err, "is not up to 8 distinct ports"), "%s", err);
	}
}

Test(ctl, round_trip)
{
	const char *lines[] = {
		"route-add\t10.96.0.10:80\tdev-a\t10.244.1.7:8080\t3600\tbaseline\n",
		"route-add\t[fd00::10]:443\t~!@#$%^&*()_+\t[::ffff:10.0.0.1]:1\t0\terror\n",
		"route-del\t10.96.0.10:80\tdev-a\n",
		"route-list\ttext\n",
		"status\tjson\n",
		"override-add\tnetns:/run/netns/a\t10.96.0.50:5432\t10.244.1.9:5432\t60\n",
		"override-add\tcgroup:/sys/fs/cgroup/x\t[fd00::1]:1\t[fd00::2]:2\t0\n",
		"override-del\tpid:42\t10.96.0.50:5432\n",
		"override-list\tjson\n",
		"override-ready\t0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b\n",
		"takeover\n",
		"reload\n",
		"pod-infer\tns/web-1\ton\t8080,9090\n",
		"pod-infer\tns/web-1\toff\t-\n",
	};
	char buf[CTL_MAX_REQUEST];
	struct ctl_request first;

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		cr_assert_eq(parse_n(lines[i], strlen(lines[i]) - 1), 0, "%s: %s", lines[i], err);
		memcpy(&first, &req, sizeof(req));
		cr_assert_gt(ctl_format_request(&first, buf, sizeof(buf)), 0);
		cr_assert_eq(parse_n(buf, strlen(buf) - 1), 0, "%s", err);
		cr_assert_eq(memcmp(&first, &req, sizeof(req)), 0, "%s", lines[i]);
	}
	cr_assert_eq(ctl_format_request(&first, buf, 5), -1);
}

Test(ctl, small_error_buffer)
{
	char small[8];

	cr_assert_eq(ctl_parse_request("reboot", 6, &req, small, sizeof(small)), CTL_EXIT_USAGE);
	cr_assert_str_eq(small, "unknown");
	cr_assert_eq(ctl_parse_request("reboot", 6, &req, NULL, 0), CTL_EXIT_USAGE);
}
