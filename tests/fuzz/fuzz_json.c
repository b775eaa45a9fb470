// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The JSON string writer (core/json.c) that the log and the control
 * socket print with.
 *
 * Input: any bytes, written as one JSON string.
 *
 * Checks: json-c reads the output back as a string; writing what it read
 * and reading that gives the same string again (valid UTF-8 kept, anything
 * else replaced once and for all); no raw control byte is left;
 * json_escape's counted length matches, and a short buffer gets a cut,
 * terminated prefix.
 */
#include <string.h>

#include <json-c/json.h>

#include "fuzz.h"
#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out = {0}, again = {0};
	const char *s = (const char *)data;
	struct json_object *o, *o2;
	char small[16];
	size_t n;

	FUZZ_CHECK(json_strn(&out, s, size) == 0, "out of memory");
	n = json_escape(NULL, 0, s, size);
	FUZZ_CHECK(buf_len(&out) == n + 2, "length %zu, counted %zu", buf_len(&out), n);
	for (size_t i = 0; i < buf_len(&out); i++)
		FUZZ_CHECK((unsigned char)buf_head(&out)[i] >= 0x20 &&
				   (unsigned char)buf_head(&out)[i] != 0x7f,
			   "raw control byte at %zu", i);
	o = json_tokener_parse(buf_head(&out));
	FUZZ_CHECK(o && json_object_is_type(o, json_type_string), "not a JSON string: %s",
		   buf_head(&out));
	/* Writing what was read gives the same string once read again (the
	 * text may differ: a \ufffd read back is then kept as UTF-8). */
	json_strn(&again, json_object_get_string(o), (size_t)json_object_get_string_len(o));
	o2 = json_tokener_parse(buf_head(&again));
	FUZZ_CHECK(o2 && json_object_get_string_len(o2) == json_object_get_string_len(o) &&
			   !memcmp(json_object_get_string(o2), json_object_get_string(o),
				   (size_t)json_object_get_string_len(o)),
		   "not stable: %s -> %s", buf_head(&out), buf_head(&again));
	json_object_put(o2);
	FUZZ_CHECK(json_escape(small, sizeof(small), s, size) == n, "count changed");
	FUZZ_CHECK(strlen(small) == (n < sizeof(small) ? n : sizeof(small) - 1), "cut wrong");
	FUZZ_CHECK(!memcmp(small, buf_head(&out) + 1, strlen(small)), "prefix differs");
	json_object_put(o);
	buf_free(&out);
	buf_free(&again);
	return 0;
}
