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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/routekey.h"

/* How a request's body is framed (RFC 9112 section 6.3, for requests). */
enum body_kind {
	BODY_NONE,
	BODY_LENGTH,  /* Content-Length bytes */
	BODY_CHUNKED, /* Transfer-Encoding: chunked */
};

/* Why a request was refused, in a few classes (the label of
 * shunt_parse_errors_total); http_err_names has their names. */
enum http_err {
	HTTP_ERR_NONE = 0,
	HTTP_ERR_REQUEST_LINE,	    /* method, target, version, or its line ending */
	HTTP_ERR_HEADER,	    /* a header line: syntax, bytes, folding, duplicate Host */
	HTTP_ERR_HEAD_TOO_LARGE,    /* 431: more than --max-head-bytes */
	HTTP_ERR_TOO_MANY_HEADERS,  /* 431: more than --max-headers */
	HTTP_ERR_CONTENT_LENGTH,    /* invalid, duplicate, or with Transfer-Encoding */
	HTTP_ERR_TRANSFER_ENCODING, /* not "chunked", duplicate, or in HTTP/1.0 */
	HTTP_ERR_CHUNK,		    /* chunked body framing */
	HTTP_ERR_ROUTING_KEY,	    /* a key present but unusable: not refused, sent to baseline */
	HTTP_ERR_MAX,
};

extern const char *const http_err_names[HTTP_ERR_MAX];

struct head_result {
	size_t n_headers;
	const char *reason; /* why the head was refused, for logs and the 400 body */
	enum http_err err;  /* the same, as a class */
	int http_minor;	    /* HTTP/1.0 or HTTP/1.1 */
	enum body_kind body;
	uint64_t content_length;
};

/* Largest Content-Length accepted (1 TiB): far beyond any staging request,
 * far below any overflow. */
#define HTTP_MAX_CONTENT_LENGTH (1ULL << 40)

/* head[0..len) is a request line, header lines and the empty line.
 * Returns 0, 400 (malformed or ambiguous) or 431 (more than max_hdrs
 * header lines). hdrs receives up to max_hdrs spans pointing into head. */
int http_head_check(const char *head, size_t len, struct http_header *hdrs, size_t max_hdrs,
		    struct head_result *res);

/* The class of an llhttp error (an llhttp_errno_t) in a request head that
 * starts at head, llhttp having stopped at pos. */
enum http_err http_llhttp_err(int llhttp_errno, const char *head, const char *pos);

/* Do the first bytes of a connection look like an HTTP/1.x request? 1 yes,
 * 0 no (tunnel it unchanged), -1 not enough bytes to tell yet. */
int http_sniff(const char *buf, size_t len);

/*
 * A strict, streaming parser of a chunked request body (RFC 9112 section
 * 7.1), so that the end of a body is decided by rules every upstream
 * agrees with: chunk sizes in hex without overflow, every line ending in
 * CRLF (never a bare LF or CR), CRLF after each chunk's data, extensions
 * and trailer fields of visible characters, no obs-fold in trailers.
 */
struct chunked {
	int state;
	uint64_t size;	   /* of the chunk being read */
	unsigned digits;   /* hex digits of its size so far */
	uint32_t line_len; /* bytes in the current extension or trailer line */
	uint32_t trailers; /* trailer bytes so far */
};

/* Feed the next len bytes. Returns how many belong to the body (all of
 * them unless it ended inside p, then *done is set), or -1 with *reason
 * on a framing error. */
long chunked_feed(struct chunked *ck, const char *p, size_t len, bool *done, const char **reason);

#endif /* SHUNT_HTTP_H */
