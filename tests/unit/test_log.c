// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Log lines in both formats, and JSON string escaping. */
#include <string.h>
#include <criterion/criterion.h>

#include "core/json.h"
#include "core/log.h"

static const char *esc(const char *s, size_t n)
{
	static char out[512];

	json_escape(out, sizeof(out), s, n);
	return out;
}

#define ESC(in, want) cr_assert_str_eq(esc(in, sizeof(in) - 1), want, "escaping %s", #in)

Test(json_escape, quotes_backslashes_and_controls)
{
	ESC("plain text 123", "plain text 123");
	ESC("a\"b", "a\\\"b");
	ESC("a\\b", "a\\\\b");
	ESC("l1\nl2\r\tx", "l1\\nl2\\r\\tx");
	ESC("\x01\x1f\x7f", "\\u0001\\u001f\\u007f");
	ESC("nul\0in", "nul\\u0000in");
	ESC("", "");
}

Test(json_escape, utf8_kept_invalid_bytes_replaced)
{
	ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	ESC("bad \xff end", "bad \\ufffd end");
	ESC("lone \xc3", "lone \\ufffd");
	ESC("overlong \xc0\xaf", "overlong \\ufffd\\ufffd");
	ESC("overlong3 \xe0\x80\xaf", "overlong3 \\ufffd\\ufffd\\ufffd");
	ESC("surrogate \xed\xa0\x80", "surrogate \\ufffd\\ufffd\\ufffd");
	ESC("too big \xf4\x90\x80\x80", "too big \\ufffd\\ufffd\\ufffd\\ufffd");
	ESC("cut \xe2\x82", "cut \\ufffd\\ufffd");
}

Test(json_escape, returns_the_full_length_and_terminates)
{
	char small[6];

	cr_assert_eq(json_escape(small, sizeof(small), "a\"bcdef", 7), 8);
	cr_assert_str_eq(small, "a\\\"bc");
	cr_assert_eq(json_escape(NULL, 0, "\n", 1), 2);
}

Test(log_line, json_object_with_fields)
{
	char buf[512];
	const struct log_field f[] = {
		{"service", LOG_F_STR, "10.0.0.1:80", 0},
		{"key", LOG_F_STR, "", 0},
		{"status", LOG_F_UINT, NULL, 200},
		{"duration_s", LOG_F_SECONDS, NULL, 1234567891ULL},
		{"odd", LOG_F_STR, "a \"q\"\n", 0},
	};
	size_t n = log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, LOG_INFO,
				   "2026-11-26T10:11:12.345Z", "access", f, 5);

	cr_assert_str_eq(buf,
			 "{\"ts\":\"2026-11-26T10:11:12.345Z\",\"level\":\"info\","
			 "\"msg\":\"access\",\"service\":\"10.0.0.1:80\",\"key\":\"\","
			 "\"status\":200,\"duration_s\":1.234567,\"odd\":\"a \\\"q\\\"\\n\"}\n");
	cr_assert_eq(n, strlen(buf));
}

Test(log_line, json_message_escaped_on_one_line)
{
	char buf[256];

	log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, LOG_WARN, "T",
			"libbpf: line one\nline \"two\"\n", NULL, 0);
	cr_assert_str_eq(buf, "{\"ts\":\"T\",\"level\":\"warning\",\"msg\":\"libbpf: line "
			      "one\\nline \\\"two\\\"\"}\n");
}

Test(log_line, text_prefixes_every_line_and_quotes_values)
{
	char buf[512];
	const struct log_field f[] = {
		{"key", LOG_F_STR, "", 0},	     {"dst", LOG_F_STR, "[fd00::1]:80", 0},
		{"note", LOG_F_STR, "two words", 0}, {"eq", LOG_F_STR, "a=b", 0},
		{"d", LOG_F_SECONDS, NULL, 50000},
	};

	log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, LOG_ERR, "", "first\nsecond\n", NULL, 0);
	cr_assert_str_eq(buf, "shuntd: error: first\nshuntd: error: second\n");
	log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, LOG_INFO, "", "access", f, 5);
	cr_assert_str_eq(buf, "shuntd: info: access key=\"\" dst=[fd00::1]:80 note=\"two words\" "
			      "eq=\"a=b\" d=0.000050\n");
}

Test(log_line, long_lines_report_their_length)
{
	char small[16], big[4096];
	size_t n;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = log_format_line(small, sizeof(small), LOG_FORMAT_TEXT, LOG_INFO, "", big, NULL, 0);
	cr_assert_eq(n, strlen("shuntd: info: ") + sizeof(big) - 1 + 1);
	cr_assert_eq(strlen(small), sizeof(small) - 1);
}

Test(log_line, rfc3339_utc_with_milliseconds)
{
	char ts[32];

	cr_assert_str_eq(log_rfc3339_ms(ts, sizeof(ts), 0, 0), "1970-01-01T00:00:00.000Z");
	cr_assert_str_eq(log_rfc3339_ms(ts, sizeof(ts), 1795694472, 345999999),
			 "2026-11-26T12:01:12.345Z");
}
