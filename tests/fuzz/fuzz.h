/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Shared by the libFuzzer harnesses. A harness states what must hold for
 * every input with FUZZ_CHECK(); a violated property aborts, which libFuzzer
 * reports and saves like any sanitizer crash.
 */
#ifndef SHUNT_FUZZ_H
#define SHUNT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: property violated: %s: ", __FILE__, __LINE__,      \
				#cond);                                                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A small deterministic generator, so that the way an input is cut into
 * pieces is part of the input (and a crash reproduces exactly). */
static inline uint32_t fuzz_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* A heap copy of exactly len bytes, so ASan sees any read past a span. */
static inline char *fuzz_dup(const void *p, size_t len)
{
	char *d = malloc(len ? len : 1);

	if (!d)
		abort();
	for (size_t i = 0; i < len; i++)
		d[i] = ((const char *)p)[i];
	return d;
}

#endif /* SHUNT_FUZZ_H */
