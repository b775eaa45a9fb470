// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * metrics_parse_request() over any bytes a scraper (or anything else on the
 * node's network) may send to --metrics-addr.
 *
 * Input: the bytes received so far.
 *
 * Checks: 0, -EAGAIN or 400; -EAGAIN only while no end of head is in the
 * input and it is shorter than METRICS_MAX_REQUEST (so a connection never
 * waits for ever); 0 only for a request line "METHOD SP /target SP
 * HTTP/1.x"; /v1/overrides carries a pod uid or none, never anything else;
 * the answer for a prefix that already holds the end of the head is the
 * same as for the whole input (bytes after the head change nothing).
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "k8s/uid.h"
#include "ops/metrics.h"

static int has_end(const char *d, size_t n)
{
	return memmem(d, n, "\r\n\r\n", 4) || memmem(d, n, "\n\n", 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = fuzz_dup(data, size);
	struct metrics_request r, r2;
	int ret, ret2;

	memset(&r, 0x5a, sizeof(r));
	ret = metrics_parse_request(buf, size, &r);
	FUZZ_CHECK(ret == 0 || ret == -EAGAIN || ret == 400, "ret %d", ret);
	if (ret == -EAGAIN)
		FUZZ_CHECK(!has_end(buf, size) && size < METRICS_MAX_REQUEST,
			   "waiting with %zu bytes", size);
	if (!has_end(buf, size))
		FUZZ_CHECK(ret != 0, "accepted a head without its end");
	if (ret == 0) {
		FUZZ_CHECK(r.target >= METRICS_T_METRICS && r.target <= METRICS_T_OTHER, "target %d",
			   r.target);
		FUZZ_CHECK(!(r.get && r.head), "two methods");
		FUZZ_CHECK(size >= 14 && buf[0] >= 'A' && buf[0] <= 'Z', "request line");
		if (r.target == METRICS_T_OVERRIDES)
			FUZZ_CHECK(!r.pod[0] || k8s_uid_valid(r.pod, strnlen(r.pod, sizeof(r.pod))),
				   "pod '%.*s'", (int)sizeof(r.pod), r.pod);
	}
	/* The shortest prefix holding the end of the head decides. */
	for (size_t n = 2; n <= size; n++) {
		if (!has_end(buf, n))
			continue;
		char *pre = fuzz_dup(buf, n);

		memset(&r2, 0x5a, sizeof(r2));
		ret2 = metrics_parse_request(pre, n, &r2);
		free(pre);
		FUZZ_CHECK(ret2 == ret, "prefix of %zu bytes: %d, whole: %d", n, ret2, ret);
		if (ret == 0)
			FUZZ_CHECK(r2.target == r.target && r2.get == r.get && r2.head == r.head &&
					   (r.target != METRICS_T_OVERRIDES || !strcmp(r2.pod, r.pod)),
				   "prefix parsed differently");
		break;
	}
	free(buf);
	return 0;
}
