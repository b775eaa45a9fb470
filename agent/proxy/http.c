// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <string.h>
#include <strings.h>
#include <llhttp.h>

#include "proxy/http.h"

const char *const http_err_names[HTTP_ERR_MAX] = {
	[HTTP_ERR_NONE] = "none",
	[HTTP_ERR_REQUEST_LINE] = "bad_request_line",
	[HTTP_ERR_HEADER] = "bad_header",
	[HTTP_ERR_HEAD_TOO_LARGE] = "header_too_large",
	[HTTP_ERR_TOO_MANY_HEADERS] = "too_many_headers",
	[HTTP_ERR_CONTENT_LENGTH] = "bad_content_length",
	[HTTP_ERR_TRANSFER_ENCODING] = "bad_transfer_encoding",
	[HTTP_ERR_CHUNK] = "bad_chunk",
	[HTTP_ERR_ROUTING_KEY] = "bad_routing_key",
};

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value bytes: visible ASCII, SP, HTAB, obs-text. */
static int is_vchar_or_ws(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int name_is(const struct http_header *h, const char *name)
{
	size_t n = strlen(name);

	return h->name_len == n && !strncasecmp(h->name, name, n);
}

static int value_is_digits(const struct http_header *h)
{
	size_t i = 0, end = h->value_len;

	if (!end)
		return 0;
	for (; i < end; i++)
		if (h->value[i] < '0' || h->value[i] > '9')
			return 0;
	return 1;
}

static int parse_length(const struct http_header *h, uint64_t *out)
{
	uint64_t v = 0;

	for (size_t i = 0; i < h->value_len; i++) {
		v = v * 10 + (uint64_t)(h->value[i] - '0');
		if (v > HTTP_MAX_CONTENT_LENGTH)
			return -1;
	}
	*out = v;
	return 0;
}

static int bad(struct head_result *res, enum http_err err, const char *why)
{
	res->reason = why;
	res->err = err;
	return 400;
}

/* The request line: method SP target SP HTTP/1.x. Returns its length
 * without CRLF, or 0 when it is malformed. */
static size_t check_request_line(const char *p, size_t len, struct head_result *res)
{
	size_t i = 0, start;

	while (i < len && is_tchar(p[i]))
		i++;
	if (i == 0 || i >= len || p[i] != ' ')
		return bad(res, HTTP_ERR_REQUEST_LINE, "invalid method"), 0;
	start = ++i;
	while (i < len && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
		i++;
	if (i == start || i >= len || p[i] != ' ')
		return bad(res, HTTP_ERR_REQUEST_LINE, "invalid request target"), 0;
	i++;
	if (len - i < 10 || memcmp(p + i, "HTTP/1.", 7) || (p[i + 7] != '0' && p[i + 7] != '1'))
		return bad(res, HTTP_ERR_REQUEST_LINE, "invalid HTTP version"), 0;
	res->http_minor = p[i + 7] - '0';
	i += 8;
	if (p[i] != '\r' || p[i + 1] != '\n')
		return bad(res, HTTP_ERR_REQUEST_LINE, "request line must end in CRLF"), 0;
	return i;
}

/* One pass over the head's lines, in order, each rule where its line is
 * read: longer than a screen on purpose (and fuzzed as one, fuzz_http). */
int http_head_check(const char *head, size_t len, struct http_header *hdrs, size_t max_hdrs,
		    struct head_result *res)
{
	size_t pos, n = 0, cl = 0, te = 0, host = 0;

	memset(res, 0, sizeof(*res));
	if (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4))
		return bad(res, HTTP_ERR_HEADER, "head must end in CRLF CRLF");
	pos = check_request_line(head, len, res);
	if (!pos)
		return 400;
	pos += 2;

	while (pos < len) {
		const char *line = head + pos;
		size_t i = 0, rest = len - pos, name_len, vstart, vend, raw_end;

		if (line[0] == '\r') {
			/* The empty line; only valid as the very end. */
			if (rest != 2 || line[1] != '\n')
				return bad(res, HTTP_ERR_HEADER, "bare CR");
			break;
		}
		if (line[0] == ' ' || line[0] == '\t')
			return bad(res, HTTP_ERR_HEADER, "obsolete line folding");
		while (i < rest && is_tchar(line[i]))
			i++;
		if (i == 0 || i >= rest || line[i] != ':')
			return bad(res, HTTP_ERR_HEADER,
				   i < rest && (line[i] == ' ' || line[i] == '\t')
					   ? "whitespace before colon"
					   : "invalid header name");
		name_len = i;
		vstart = ++i;
		while (i < rest && line[i] != '\r' && line[i] != '\n') {
			if (!is_vchar_or_ws(line[i]))
				return bad(res, HTTP_ERR_HEADER,
					   "control character in header value");
			i++;
		}
		if (i + 1 >= rest || line[i] != '\r' || line[i + 1] != '\n')
			return bad(res, HTTP_ERR_HEADER, "bare LF");
		vend = raw_end = i;
		while (vstart < vend && (line[vstart] == ' ' || line[vstart] == '\t'))
			vstart++;
		while (vend > vstart && (line[vend - 1] == ' ' || line[vend - 1] == '\t'))
			vend--;
		if (n >= max_hdrs) {
			res->reason = "too many header fields";
			res->err = HTTP_ERR_TOO_MANY_HEADERS;
			return 431;
		}
		hdrs[n] = (struct http_header){.name = line,
					       .name_len = name_len,
					       .value = line + vstart,
					       .value_len = vend - vstart};
		if ((name_is(&hdrs[n], "content-length") ||
		     name_is(&hdrs[n], "transfer-encoding")) &&
		    (vend != raw_end ||
		     memchr(line + name_len + 1, '\t', raw_end - name_len - 1))) {
			/* Parsers disagree on tabs and trailing blanks around
			 * framing values ("chunked\t"): refuse them. */
			return bad(res,
				   name_is(&hdrs[n], "content-length") ? HTTP_ERR_CONTENT_LENGTH
								       : HTTP_ERR_TRANSFER_ENCODING,
				   "whitespace around a framing header value");
		}
		if (name_is(&hdrs[n], "content-length")) {
			if (!value_is_digits(&hdrs[n]) ||
			    parse_length(&hdrs[n], &res->content_length))
				return bad(res, HTTP_ERR_CONTENT_LENGTH, "invalid Content-Length");
			cl++;
		} else if (name_is(&hdrs[n], "transfer-encoding")) {
			/* Only the one coding every parser agrees on. */
			if (hdrs[n].value_len != 7 || strncasecmp(hdrs[n].value, "chunked", 7))
				return bad(res, HTTP_ERR_TRANSFER_ENCODING,
					   "unsupported Transfer-Encoding");
			te++;
		} else if (name_is(&hdrs[n], "host")) {
			host++;
		}
		n++;
		pos += i + 2;
	}
	if (cl > 1)
		return bad(res, HTTP_ERR_CONTENT_LENGTH, "duplicate Content-Length");
	if (te > 1)
		return bad(res, HTTP_ERR_TRANSFER_ENCODING, "duplicate Transfer-Encoding");
	if (cl && te)
		return bad(res, HTTP_ERR_CONTENT_LENGTH, "Content-Length with Transfer-Encoding");
	if (host > 1)
		return bad(res, HTTP_ERR_HEADER, "duplicate Host");
	/* HTTP/1.0 has no chunked coding: such a message's framing is
	 * faulty (RFC 9112 section 6.1). */
	if (te && res->http_minor == 0)
		return bad(res, HTTP_ERR_TRANSFER_ENCODING,
			   "Transfer-Encoding in an HTTP/1.0 request");
	res->body = te ? BODY_CHUNKED : cl ? BODY_LENGTH : BODY_NONE;
	res->n_headers = n;
	return 0;
}

enum http_err http_llhttp_err(int llhttp_errno, const char *head, const char *pos)
{
	switch (llhttp_errno) {
	case HPE_INVALID_METHOD:
	case HPE_INVALID_URL:
	case HPE_INVALID_VERSION:
		return HTTP_ERR_REQUEST_LINE;
	case HPE_INVALID_CONTENT_LENGTH:
	case HPE_UNEXPECTED_CONTENT_LENGTH: /* duplicate, or with Transfer-Encoding */
		return HTTP_ERR_CONTENT_LENGTH;
	case HPE_INVALID_TRANSFER_ENCODING:
		return HTTP_ERR_TRANSFER_ENCODING;
	default:
		/* Unexpected bytes, CR or LF: where they are tells which. */
		if (pos && pos >= head && !memchr(head, '\n', (size_t)(pos - head)))
			return HTTP_ERR_REQUEST_LINE;
		return HTTP_ERR_HEADER;
	}
}

int http_sniff(const char *buf, size_t len)
{
	static const char h2[] = "PRI * HTTP/2.0\r\n";
	const char *nl;
	size_t i;

	if (!len)
		return -1;
	/* The HTTP/2 preface looks like a request line: tell it apart. */
	if (!memcmp(buf, h2, len < sizeof(h2) - 1 ? len : sizeof(h2) - 1))
		return len < sizeof(h2) - 1 ? -1 : 0;
	/* TLS records, HTTP/2 frames and most binary protocols start with a
	 * byte no request line starts with. */
	if (!is_tchar((unsigned char)buf[0]))
		return 0;
	/* A method-like token (uppercase letters, '-' and '_' as in M-SEARCH,
	 * then a space) is an attempt at HTTP: it is parsed strictly, and
	 * refused if it is not valid. */
	for (i = 0; i < len && i < 32; i++) {
		if (buf[i] == ' ')
			return 1;
		if ((buf[i] < 'A' || buf[i] > 'Z') && buf[i] != '-' && buf[i] != '_')
			break;
	}
	if (i == len)
		return -1;
	/* Anything else is HTTP only if its first line says so; control bytes
	 * or non-ASCII in it mean some other protocol. */
	nl = memchr(buf, '\n', len);
	for (i = 0; i < (nl ? (size_t)(nl - buf) : len); i++) {
		unsigned char c = (unsigned char)buf[i];

		if ((c < 0x20 && c != '\r' && c != '\t') || c >= 0x7f)
			return 0;
	}
	if (!nl)
		return len < 8192 ? -1 : 0;
	return memmem(buf, (size_t)(nl - buf), " HTTP/", 6) != NULL;
}

enum {
	CK_SIZE = 0, /* hex digits of a chunk size */
	CK_SIZE_WS,  /* whitespace after the size, before ';' */
	CK_EXT,	     /* a chunk extension, up to CR */
	CK_SIZE_LF,  /* LF ending the size line */
	CK_DATA,     /* chunk data */
	CK_DATA_CR,  /* CR after the data */
	CK_DATA_LF,  /* LF after the data */
	CK_TRAILER,  /* start of a trailer line, or the final CRLF */
	CK_FIELD,    /* inside a trailer field line */
	CK_FIELD_LF, /* LF ending a trailer field line */
	CK_END_LF,   /* LF of the final CRLF */
};

/* Longest chunk extension or trailer line, and all trailers together. */
#define CK_MAX_LINE	4096
#define CK_MAX_TRAILERS 65536

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A byte-at-a-time state machine: one switch over the states reads as the
 * grammar does (RFC 9112 7.1); longer than a screen on purpose, fuzzed as
 * one (fuzz_chunked). */
long chunked_feed(struct chunked *ck, const char *p, size_t len, bool *done, const char **reason)
{
	size_t i = 0;

	*done = false;
	while (i < len) {
		unsigned char c = (unsigned char)p[i];

		switch (ck->state) {
		case CK_SIZE:
			if (hexval(c) >= 0) {
				/* 15 hex digits: 2^60, no overflow possible. */
				if (++ck->digits > 15)
					goto fail_size;
				ck->size = ck->size * 16 + (uint64_t)hexval(c);
				break;
			}
			if (!ck->digits)
				goto fail_size;
			if (c == ' ' || c == '\t')
				ck->state = CK_SIZE_WS;
			else if (c == ';')
				ck->state = CK_EXT, ck->line_len = 0;
			else if (c == '\r')
				ck->state = CK_SIZE_LF;
			else
				goto fail_size;
			break;
		case CK_SIZE_WS:
			if (c == ';')
				ck->state = CK_EXT, ck->line_len = 0;
			else if (c != ' ' && c != '\t')
				goto fail_size;
			break;
		case CK_EXT:
			if (c == '\r') {
				ck->state = CK_SIZE_LF;
			} else if ((c < 0x20 && c != '\t') || c == 0x7f ||
				   ++ck->line_len > CK_MAX_LINE) {
				*reason = "invalid chunk extension";
				return -1;
			}
			break;
		case CK_SIZE_LF:
			if (c != '\n')
				goto fail_size;
			ck->state = ck->size ? CK_DATA : CK_TRAILER;
			break;
		case CK_DATA: {
			size_t n = len - i < ck->size ? len - i : (size_t)ck->size;

			ck->size -= n;
			i += n;
			if (!ck->size)
				ck->state = CK_DATA_CR;
			continue;
		}
		case CK_DATA_CR:
		case CK_DATA_LF:
			if (c != (ck->state == CK_DATA_CR ? '\r' : '\n')) {
				*reason = "chunk data not followed by CRLF";
				return -1;
			}
			if (ck->state == CK_DATA_LF) {
				ck->state = CK_SIZE;
				ck->digits = 0;
			} else {
				ck->state = CK_DATA_LF;
			}
			break;
		case CK_TRAILER:
			if (c == '\r') {
				ck->state = CK_END_LF;
				break;
			}
			if (!is_tchar(c)) {
				*reason = c == ' ' || c == '\t' ? "obsolete line folding in trailer"
								: "invalid trailer field";
				return -1;
			}
			ck->state = CK_FIELD;
			ck->line_len = 1;
			break;
		case CK_FIELD:
			if (c == '\r') {
				ck->state = CK_FIELD_LF;
			} else if (!is_vchar_or_ws(c) || ++ck->line_len > CK_MAX_LINE) {
				*reason = "invalid trailer field";
				return -1;
			}
			break;
		case CK_FIELD_LF:
		case CK_END_LF:
			if (c != '\n') {
				*reason = "bare CR in chunked body";
				return -1;
			}
			if (ck->state == CK_END_LF) {
				*done = true;
				return (long)(i + 1);
			}
			ck->state = CK_TRAILER;
			break;
		default:
			*reason = "chunked parser state";
			return -1;
		}
		if (ck->state >= CK_TRAILER && ++ck->trailers > CK_MAX_TRAILERS) {
			*reason = "trailer section too large";
			return -1;
		}
		i++;
	}
	return (long)i;

fail_size:
	*reason = "invalid chunk size";
	return -1;
}
