// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Strict request-head checks and first-bytes sniffing. */
#include <string.h>
#include <criterion/criterion.h>
#include <llhttp.h>

#include "proxy/http.h"

static struct http_header hdrs[8];

static int check(const char *head, struct head_result *res)
{
	return http_head_check(head, strlen(head), hdrs, 8, res);
}

#define ACCEPT(head)                                                                               \
	do {                                                                                       \
		struct head_result r_;                                                             \
		cr_assert_eq(check(head, &r_), 0, "refused (%s): %s", r_.reason, head);            \
	} while (0)

#define REFUSE(head, status, why)                                                                  \
	do {                                                                                       \
		struct head_result r_;                                                             \
		cr_assert_eq(check(head, &r_), status, "accepted: %s", head);                      \
		cr_assert_str_eq(r_.reason, why);                                                  \
	} while (0)

Test(http_head, accepts_plain_requests)
{
	struct head_result r;

	ACCEPT("GET / HTTP/1.1\r\n\r\n");
	ACCEPT("GET /a?b=c HTTP/1.0\r\nHost: x\r\n\r\n");
	ACCEPT("POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n");
	ACCEPT("POST /x HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
	ACCEPT("GET / HTTP/1.1\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n");
	cr_assert_eq(check("GET / HTTP/1.1\r\nHost:  a b \t\r\nbaggage:k=v\r\n\r\n", &r), 0);
	cr_assert_eq(r.n_headers, 2);
	cr_assert_eq(hdrs[0].name_len, 4);
	cr_assert_eq(hdrs[0].value_len, 3, "value must be trimmed of OWS");
	cr_assert_eq(memcmp(hdrs[0].value, "a b", 3), 0);
	cr_assert_eq(memcmp(hdrs[1].value, "k=v", 3), 0);
}

Test(http_head, refuses_bad_request_lines)
{
	REFUSE("G@T / HTTP/1.1\r\n\r\n", 400, "invalid method");
	REFUSE(" GET / HTTP/1.1\r\n\r\n", 400, "invalid method");
	REFUSE("GET  / HTTP/1.1\r\n\r\n", 400, "invalid request target");
	REFUSE("GET /\x01 HTTP/1.1\r\n\r\n", 400, "invalid request target");
	REFUSE("GET / HTTP/1.2\r\n\r\n", 400, "invalid HTTP version");
	REFUSE("GET / HTTP/2.0\r\n\r\n", 400, "invalid HTTP version");
	REFUSE("GET /\r\n\r\n", 400, "invalid request target");
	REFUSE("GET / HTTP/1.1 \r\n\r\n", 400, "request line must end in CRLF");
	REFUSE("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "request line must end in CRLF");
}

Test(http_head, refuses_ambiguous_framing)
{
	REFUSE("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
	       "Content-Length with Transfer-Encoding");
	REFUSE("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
	       "duplicate Content-Length");
	REFUSE("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400, "invalid Content-Length");
	REFUSE("POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", 400, "invalid Content-Length");
	REFUSE("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, "invalid Content-Length");
	REFUSE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400,
	       "unsupported Transfer-Encoding");
	REFUSE("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 400,
	       "unsupported Transfer-Encoding");
	REFUSE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
	       "chunked\r\n\r\n",
	       400, "duplicate Transfer-Encoding");
	REFUSE("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, "duplicate Host");
}

Test(http_head, refuses_bad_lines)
{
	REFUSE("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400, "obsolete line folding");
	REFUSE("GET / HTTP/1.1\r\nA: b\nB: c\r\n\r\n", 400, "bare LF");
	REFUSE("GET / HTTP/1.1\r\nA: b\rB: c\r\n\r\n", 400, "bare LF");
	REFUSE("GET / HTTP/1.1\r\nA : b\r\n\r\n", 400, "whitespace before colon");
	REFUSE("GET / HTTP/1.1\r\nA\tb: b\r\n\r\n", 400, "whitespace before colon");
	REFUSE("GET / HTTP/1.1\r\n: b\r\n\r\n", 400, "invalid header name");
	REFUSE("GET / HTTP/1.1\r\nA(b): b\r\n\r\n", 400, "invalid header name");
	REFUSE("GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n", 400, "control character in header value");
	REFUSE("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 400, "control character in header value");
	REFUSE("GET / HTTP/1.1\r\nA: b\r\n\n", 400, "head must end in CRLF CRLF");
	REFUSE("GET / HTTP/1.1\r\nA: b\r\n\r\r\n\r\n", 400, "bare CR");
}

Test(http_head, nul_in_value_is_refused)
{
	static const char head[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
	struct head_result r;

	cr_assert_eq(http_head_check(head, sizeof(head) - 1, hdrs, 8, &r), 400);
	cr_assert_str_eq(r.reason, "control character in header value");
}

Test(http_head, too_many_headers_is_431)
{
	char head[1024] = "GET / HTTP/1.1\r\n";
	struct head_result r;

	for (int i = 0; i < 9; i++)
		strcat(head, "X-A: b\r\n");
	strcat(head, "\r\n");
	cr_assert_eq(check(head, &r), 431);
	cr_assert_str_eq(r.reason, "too many header fields");
}

Test(http_sniff, tells_http_from_other_protocols)
{
	cr_assert_eq(http_sniff("GET / HTTP/1.1\r\n", 16), 1);
	cr_assert_eq(http_sniff("GE", 2), -1, "too early to tell");
	cr_assert_eq(http_sniff("", 0), -1);
	cr_assert_eq(http_sniff("G@T / HTTP/1.1\r\n", 16), 1, "bad HTTP is still HTTP: refused");
	cr_assert_eq(http_sniff("get / HTTP/1.1\r\n", 16), 1);
	cr_assert_eq(http_sniff("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24), 0, "HTTP/2 preface");
	cr_assert_eq(http_sniff("PRI * HTTP", 10), -1);
	cr_assert_eq(http_sniff("\x16\x03\x01\x02\x00", 5), 0, "TLS ClientHello");
	cr_assert_eq(http_sniff("a\x01\x02\x03", 4), 0, "binary");
	cr_assert_eq(http_sniff("hello world\n", 12), 0, "a text protocol");
}

/* Feed a whole body, optionally one byte at a time; returns bytes consumed
 * or -1, with *done. */
static long feed(const char *body, size_t len, int bytewise, bool *done, const char **why)
{
	struct chunked ck = {};
	size_t off = 0;

	*done = false;
	while (off < len && !*done) {
		size_t n = bytewise ? 1 : len - off;
		long r = chunked_feed(&ck, body + off, n, done, why);

		if (r < 0)
			return -1;
		off += (size_t)r;
	}
	return (long)off;
}

#define CK_OK(body, rest)                                                                          \
	do {                                                                                       \
		for (int bw = 0; bw < 2; bw++) {                                                   \
			bool d_;                                                                   \
			const char *w_ = NULL;                                                     \
			long n_ = feed(body, sizeof(body) - 1, bw, &d_, &w_);                      \
			cr_assert(d_, "not done (%s): %s", w_ ? w_ : "-", body);                   \
			cr_assert_eq(n_, (long)(sizeof(body) - 1 - (rest)), "end at %ld: %s", n_,  \
				     body);                                                        \
		}                                                                                  \
	} while (0)

#define CK_BAD(body, why)                                                                          \
	do {                                                                                       \
		for (int bw = 0; bw < 2; bw++) {                                                   \
			bool d_;                                                                   \
			const char *w_ = NULL;                                                     \
			cr_assert_eq(feed(body, sizeof(body) - 1, bw, &d_, &w_), -1,               \
				     "accepted: %s", body);                                        \
			cr_assert_str_eq(w_, why);                                                 \
		}                                                                                  \
	} while (0)

Test(chunked, finds_the_end_of_valid_bodies)
{
	CK_OK("0\r\n\r\n", 0);
	CK_OK("5\r\nhello\r\n0\r\n\r\n", 0);
	CK_OK("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", 18);
	CK_OK("A\r\n0123456789\r\n000\r\n\r\n", 0);
	CK_OK("a;ext=1;x=\"q\"\r\n0123456789\r\n0 ;last\r\n\r\n", 0);
	CK_OK("3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other:\tv\r\n\r\n", 0);
}

Test(chunked, refuses_ambiguous_framing)
{
	CK_BAD("5\r\nhelloXY0\r\n\r\n", "chunk data not followed by CRLF");
	CK_BAD("5\nhello\r\n0\r\n\r\n", "invalid chunk size");
	CK_BAD("5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF");
	CK_BAD("0\r\n\n", "invalid trailer field");
	CK_BAD("0\r\nX: a\r\n b\r\n\r\n", "obsolete line folding in trailer");
	CK_BAD("0\r\nX: a\n\r\n", "invalid trailer field");
	CK_BAD("zz\r\n", "invalid chunk size");
	CK_BAD("-5\r\n", "invalid chunk size");
	CK_BAD("+5\r\n", "invalid chunk size");
	CK_BAD("0x5\r\n", "invalid chunk size");
	CK_BAD("\r\n", "invalid chunk size");
	CK_BAD("1000000000000000\r\n", "invalid chunk size");
	CK_BAD("5 5\r\n", "invalid chunk size");
	CK_BAD("5;a\nb\r\n", "invalid chunk extension");
	CK_BAD("5;a\x01\r\n", "invalid chunk extension");
	CK_BAD("5\r\nhello\r\n0\r\nX: 1\r\x00", "bare CR in chunked body");
}

Test(http_head, framing_values_without_tabs_or_trailing_blanks)
{
	ACCEPT("POST / HTTP/1.1\r\nContent-Length:   5\r\n\r\n");
	REFUSE("POST / HTTP/1.1\r\nContent-Length: 5 \r\n\r\n", 400,
	       "whitespace around a framing header value");
	REFUSE("POST / HTTP/1.1\r\nContent-Length:\t5\r\n\r\n", 400,
	       "whitespace around a framing header value");
	REFUSE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n", 400,
	       "whitespace around a framing header value");
	REFUSE("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
	       "Transfer-Encoding in an HTTP/1.0 request");
}

Test(http_sniff, methods_with_dashes_are_http)
{
	char buf[9000] = "M-SEARCH /";

	memset(buf + 10, 'a', sizeof(buf) - 10);
	cr_assert_eq(http_sniff(buf, sizeof(buf)), 1, "a long M-SEARCH line is still HTTP");
	cr_assert_eq(http_sniff("M-SEARCH", 8), -1);
}

/* The class of a refusal: the reason label of shunt_parse_errors_total. */
#define CLASS(head, status, class)                                                                 \
	do {                                                                                       \
		struct head_result r_;                                                             \
		cr_assert_eq(check(head, &r_), status, "status: %s", head);                        \
		cr_assert_eq(r_.err, class, "%s is %s, not %s: %s", r_.reason,                     \
			     http_err_names[r_.err], http_err_names[class], head);                 \
	} while (0)

Test(http_head, refusals_have_a_class)
{
	struct head_result r;
	char many[1024] = "GET / HTTP/1.1\r\n";

	CLASS("G@T / HTTP/1.1\r\n\r\n", 400, HTTP_ERR_REQUEST_LINE);
	CLASS("GET / HTTP/1.2\r\n\r\n", 400, HTTP_ERR_REQUEST_LINE);
	CLASS("GET / HTTP/1.1 \r\n\r\n", 400, HTTP_ERR_REQUEST_LINE);
	CLASS("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400, HTTP_ERR_HEADER);
	CLASS("GET / HTTP/1.1\r\nA : b\r\n\r\n", 400, HTTP_ERR_HEADER);
	CLASS("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400, HTTP_ERR_HEADER);
	CLASS("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, HTTP_ERR_HEADER);
	CLASS("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
	      HTTP_ERR_CONTENT_LENGTH);
	CLASS("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, HTTP_ERR_CONTENT_LENGTH);
	CLASS("POST / HTTP/1.1\r\nContent-Length: 5 \r\n\r\n", 400, HTTP_ERR_CONTENT_LENGTH);
	CLASS("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
	      HTTP_ERR_CONTENT_LENGTH);
	CLASS("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
	      HTTP_ERR_TRANSFER_ENCODING);
	CLASS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n", 400,
	      HTTP_ERR_TRANSFER_ENCODING);
	CLASS("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
	      HTTP_ERR_TRANSFER_ENCODING);
	for (int i = 0; i < 9; i++)
		strcat(many, "X-A: b\r\n");
	strcat(many, "\r\n");
	CLASS(many, 431, HTTP_ERR_TOO_MANY_HEADERS);
	cr_assert_eq(check("GET / HTTP/1.1\r\n\r\n", &r), 0);
	cr_assert_eq(r.err, HTTP_ERR_NONE);
	for (int i = 0; i < HTTP_ERR_MAX; i++)
		cr_assert(http_err_names[i] && *http_err_names[i], "class %d has no name", i);
}

Test(http_head, llhttp_errors_have_a_class)
{
	static const char h[] = "GET / HTTP/1.1\r\nA: b\r\n\r\n";

	/* Position decides for the errors that can happen anywhere. */
	cr_assert_eq(http_llhttp_err(HPE_LF_EXPECTED, h, h + 10), HTTP_ERR_REQUEST_LINE);
	cr_assert_eq(http_llhttp_err(HPE_LF_EXPECTED, h, h), HTTP_ERR_REQUEST_LINE);
	cr_assert_eq(http_llhttp_err(HPE_INVALID_HEADER_TOKEN, h, h + 18), HTTP_ERR_HEADER);
	cr_assert_eq(http_llhttp_err(HPE_INVALID_METHOD, h, h + 1), HTTP_ERR_REQUEST_LINE);
	cr_assert_eq(http_llhttp_err(HPE_INVALID_VERSION, h, h + 14), HTTP_ERR_REQUEST_LINE);
	cr_assert_eq(http_llhttp_err(HPE_UNEXPECTED_CONTENT_LENGTH, h, h + 20),
		     HTTP_ERR_CONTENT_LENGTH);
	cr_assert_eq(http_llhttp_err(HPE_INVALID_CONTENT_LENGTH, h, h + 20),
		     HTTP_ERR_CONTENT_LENGTH);
	cr_assert_eq(http_llhttp_err(HPE_INVALID_TRANSFER_ENCODING, h, h + 20),
		     HTTP_ERR_TRANSFER_ENCODING);
}
