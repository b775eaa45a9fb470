// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * ctl_parse_request() over any request line: the control socket is open
 * to root (and to --control-group), and a confused or hostile client must
 * get an error, never a crash or a half-applied request.
 *
 * Input: the line's bytes (no LF; an LF inside is one more bad byte).
 *
 * Checks: 0, CTL_EXIT_USAGE or CTL_EXIT_FAILED; on error a one-line
 * printable message; a line with a NUL, CR or LF is refused; on success
 * the request is well formed (known op, valid key, families, ports, TTL
 * within range) and ctl_format_request() writes a line that parses back to
 * exactly the same request and, for a canonical input, the same bytes. A
 * small error buffer must neither overflow nor change the outcome.
 */
#include <string.h>

#include "ops/ctl_proto.h"
#include "fuzz.h"
#include "proxy/routekey.h"
#include "state/routes.h"
#include "kernel/source.h"

static void check_message(const char *err)
{
	FUZZ_CHECK(err[0], "error without a message");
	for (const char *p = err; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
			   "unprintable byte %#x in message '%s'", (unsigned char)*p, err);
}

static void check_request(const struct ctl_request *r)
{
	FUZZ_CHECK(r->op >= CTL_OP_ROUTE_ADD && r->op <= CTL_OP_POD_ADD_TC, "op %d", r->op);
	/* Only the listings are open to every caller of the socket: an op
	 * that changes anything and is not classified so is a hole. */
	FUZZ_CHECK(ctl_op_privileged(r->op) ==
			   !(r->op == CTL_OP_ROUTE_LIST || r->op == CTL_OP_STATUS ||
			     r->op == CTL_OP_OVERRIDE_LIST || r->op == CTL_OP_OVERRIDE_READY ||
			     r->op == CTL_OP_POD_LIST),
		   "op %s classified wrongly", ctl_op_name(r->op));
	FUZZ_CHECK(strcmp(ctl_op_name(r->op), "?"), "op %d has no name", r->op);
	if (r->op == CTL_OP_RELOAD || r->op == CTL_OP_TAKEOVER) {
		/* No field: nothing else of the request may be set. */
		struct ctl_request bare = {.op = r->op};

		FUZZ_CHECK(!memcmp(r, &bare, sizeof(bare)), "%s with fields", ctl_op_name(r->op));
	}
	if (r->op == CTL_OP_POD_ADD || r->op == CTL_OP_POD_DEL || r->op == CTL_OP_POD_ADD_TC) {
		size_t n = strnlen(r->pod_name, sizeof(r->pod_name));

		FUZZ_CHECK(n > 0 && n < sizeof(r->pod_name), "pod name length %zu", n);
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					  "0123456789._/-",
					  r->pod_name[i]),
				   "pod name byte %#x", (unsigned char)r->pod_name[i]);
		if (r->op == CTL_OP_POD_ADD)
			FUZZ_CHECK(r->netns[0] == '/' && memchr(r->netns, '\0', sizeof(r->netns)),
				   "netns '%.20s'", r->netns);
		else
			FUZZ_CHECK(!r->netns[0], "%s with a netns", ctl_op_name(r->op));
		if (r->op == CTL_OP_POD_ADD_TC) {
			size_t k = strnlen(r->ifname, sizeof(r->ifname));

			FUZZ_CHECK(k > 0 && k < sizeof(r->ifname), "ifname length %zu", k);
			FUZZ_CHECK(!strchr(r->ifname, '/') && !strchr(r->ifname, ' '),
				   "ifname '%s'", r->ifname);
		} else {
			FUZZ_CHECK(!r->ifname[0], "%s with an interface", ctl_op_name(r->op));
		}
		return;
	}
	if (r->op == CTL_OP_OVERRIDE_READY) {
		FUZZ_CHECK(k8s_uid_valid(r->pod_uid, strnlen(r->pod_uid, sizeof(r->pod_uid))),
			   "bad pod uid");
		return;
	}
	if (r->op == CTL_OP_OVERRIDE_ADD || r->op == CTL_OP_OVERRIDE_DEL) {
		char e[256];

		/* A delete may also name an override as listed (a k8s: one, so
		 * that the agent can say why it refuses). */
		FUZZ_CHECK(memchr(r->from, '\0', sizeof(r->from)) &&
				   (r->op == CTL_OP_OVERRIDE_ADD
					    ? source_check
					    : source_check_listed)(r->from, e, sizeof(e)) == 0,
			   "bad from");
		FUZZ_CHECK(r->dst.family == SHUNT_FAMILY_V4 || r->dst.family == SHUNT_FAMILY_V6,
			   "dst family %u", r->dst.family);
		FUZZ_CHECK(r->dst.port, "dst port 0");
		if (r->op == CTL_OP_OVERRIDE_ADD)
			FUZZ_CHECK(r->to.family == r->dst.family && r->to.port &&
					   r->ttl_sec <= CTL_MAX_TTL,
				   "bad override to/ttl");
		return;
	}
	if (r->op != CTL_OP_ROUTE_ADD && r->op != CTL_OP_ROUTE_DEL)
		return;
	FUZZ_CHECK(memchr(r->key, '\0', sizeof(r->key)) && rk_validate(r->key) == 0, "bad key");
	FUZZ_CHECK(r->service.family == SHUNT_FAMILY_V4 || r->service.family == SHUNT_FAMILY_V6,
		   "service family %u", r->service.family);
	FUZZ_CHECK(r->service.port, "service port 0");
	if (r->op != CTL_OP_ROUTE_ADD)
		return;
	FUZZ_CHECK(r->to.family == SHUNT_FAMILY_V4 || r->to.family == SHUNT_FAMILY_V6,
		   "to family %u", r->to.family);
	FUZZ_CHECK(r->to.port, "to port 0");
	FUZZ_CHECK(r->ttl_sec <= CTL_MAX_TTL, "ttl %llu", (unsigned long long)r->ttl_sec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = fuzz_dup(data, size), err[512], *small, buf[CTL_MAX_REQUEST + 1];
	struct ctl_request r, r2;
	size_t small_len;
	int ret, ret2, n;

	memset(err, 0x5a, sizeof(err));
	ret = ctl_parse_request(line, size, &r, err, sizeof(err));
	FUZZ_CHECK(ret == 0 || ret == CTL_EXIT_USAGE || ret == CTL_EXIT_FAILED, "ret %d", ret);
	FUZZ_CHECK(memchr(err, '\0', sizeof(err)), "message not terminated");
	if (memchr(data, '\0', size) || memchr(data, '\r', size) || memchr(data, '\n', size))
		FUZZ_CHECK(ret == CTL_EXIT_USAGE, "a NUL, CR or LF accepted (ret %d)", ret);
	if (ret) {
		check_message(err);
	} else {
		FUZZ_CHECK(err[0] == '\0', "success with message '%s'", err);
		check_request(&r);
		n = ctl_format_request(&r, buf, sizeof(buf));
		FUZZ_CHECK(n > 0 && buf[n - 1] == '\n', "format: %d", n);
		ret2 = ctl_parse_request(buf, (size_t)n - 1, &r2, err, sizeof(err));
		FUZZ_CHECK(ret2 == 0, "written back and refused: %s: %.*s", err, n, buf);
		FUZZ_CHECK(!memcmp(&r, &r2, sizeof(r)), "differs after a round trip: %.*s", n, buf);
		/* What we write is the canonical form: writing it again is stable. */
		FUZZ_CHECK(ctl_format_request(&r2, buf + 0, sizeof(buf)) == n, "length changed");
	}

	/* The same line with an error buffer of 1..64 bytes, and none. */
	small_len = 1 + (size ? data[size - 1] % 64 : 0);
	small = malloc(small_len);
	if (!small)
		abort();
	ret2 = ctl_parse_request(line, size, &r2, small, small_len);
	FUZZ_CHECK(ret2 == ret, "ret %d with a %zu-byte buffer, %d with 512", ret2, small_len, ret);
	FUZZ_CHECK(memchr(small, '\0', small_len), "short message not terminated");
	free(small);
	FUZZ_CHECK(ctl_parse_request(line, size, &r2, NULL, 0) == ret, "ret without a buffer");
	free(line);
	return 0;
}
