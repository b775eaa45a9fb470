/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Strict checks on a complete HTTP/1.x request head, on top of llhttp.
 * llhttp finds where the head ends and frames the body; this check makes
 * sure the bytes it accepted are unambiguous for every parser behind us
 * (no bare LF or CR, no obs-fold, no whitespace before ':', one framing
 * header), and collects the header spans the routing-key lookup reads.
 */
#ifndef SHUNT_HTTP_H
#define SHUNT_HTTP_H

#include <stddef.h>

#include "routekey.h"

struct head_result {
	size_t n_headers;
	const char *reason; /* why the head was refused, for logs and the 400 body */
};

/* head[0..len) is a request line, header lines and the empty line.
 * Returns 0, 400 (malformed or ambiguous) or 431 (more than max_hdrs
 * header lines). hdrs receives up to max_hdrs spans pointing into head. */
int http_head_check(const char *head, size_t len, struct http_header *hdrs, size_t max_hdrs,
		    struct head_result *res);

/* Do the first bytes of a connection look like an HTTP/1.x request? 1 yes,
 * 0 no (tunnel it unchanged), -1 not enough bytes to tell yet. */
int http_sniff(const char *buf, size_t len);

#endif /* SHUNT_HTTP_H */
