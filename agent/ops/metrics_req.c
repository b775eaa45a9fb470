// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The metrics endpoint's request parser, on its own so that the libFuzzer
 * harness (tests/fuzz/fuzz_metrics.c) links nothing else. */
#include <errno.h>
#include <string.h>

#include "ops/metrics.h"

/* The value of the last pod=... parameter of the query [p, end), when it is
 * a pod uid (no escapes needed: hex digits and dashes), into pod. */
static void query_pod(const char *p, const char *end, char *pod)
{
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p)), *e = amp ? amp : end;

		if (e - p >= 4 && !memcmp(p, "pod=", 4)) {
			pod[0] = '\0';
			if (k8s_uid_valid(p + 4, (size_t)(e - p - 4))) {
				memcpy(pod, p + 4, K8S_UID_LEN);
				pod[K8S_UID_LEN] = '\0';
			}
		}
		p = e + 1;
	}
}

int metrics_parse_request(const char *buf, size_t len, struct metrics_request *r)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4), *lf = memmem(buf, len, "\n\n", 2);
	const char *p = buf, *line_end, *sp, *target, *q;
	size_t tlen;

	if (lf && (!end || lf < end))
		end = lf;
	if (!end)
		return len >= METRICS_MAX_REQUEST ? 400 : -EAGAIN;
	/* end is the CR or LF that ends the request line, or the LF itself. */
	line_end = memchr(buf, '\n', (size_t)(end - buf) + 2);
	if (line_end > buf && line_end[-1] == '\r')
		line_end--;

	/* method */
	for (sp = p; sp < line_end && *sp >= 'A' && *sp <= 'Z'; sp++)
		;
	if (sp == p || sp == line_end || *sp != ' ')
		return 400;
	r->get = sp - p == 3 && !memcmp(p, "GET", 3);
	r->head = sp - p == 4 && !memcmp(p, "HEAD", 4);
	/* target: origin-form */
	target = sp + 1;
	for (sp = target; sp < line_end && (unsigned char)*sp > 0x20 && *sp != 0x7f; sp++)
		;
	if (sp == target || sp == line_end || *sp != ' ' || *target != '/')
		return 400;
	/* version */
	if (line_end - (sp + 1) != 8 || memcmp(sp + 1, "HTTP/1.", 7) ||
	    (sp[8] != '0' && sp[8] != '1'))
		return 400;

	q = memchr(target, '?', (size_t)(sp - target));
	tlen = (size_t)((q ? q : sp) - target);
	r->target = METRICS_T_OTHER;
	r->pod[0] = '\0';
	if (tlen == 13 && !memcmp(target, "/v1/overrides", 13)) {
		r->target = METRICS_T_OVERRIDES;
		if (q)
			query_pod(q + 1, sp, r->pod);
		return 0;
	}
	if (tlen == 8 && !memcmp(target, "/metrics", 8))
		r->target = METRICS_T_METRICS;
	else if (tlen == 8 && !memcmp(target, "/healthz", 8))
		r->target = METRICS_T_HEALTHZ;
	else if (tlen == 7 && !memcmp(target, "/readyz", 7))
		r->target = METRICS_T_READYZ;
	return 0;
}
