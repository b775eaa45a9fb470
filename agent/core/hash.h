/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The one hash for the agent's tables: FNV-1a, 64-bit, with a seed mixed
 * into the offset basis. A table whose lookups take keys from requests
 * seeds itself at random, so a client cannot pick keys that collide;
 * tables keyed by operator input may pass 0. */
#ifndef SHUNT_HASH_H
#define SHUNT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_BASIS 0xcbf29ce484222325ULL
#define HASH_FNV_PRIME 0x100000001b3ULL

static inline uint64_t hash_step(uint64_t h, unsigned char byte)
{
	return (h ^ byte) * HASH_FNV_PRIME;
}

static inline uint64_t hash_bytes(const void *p, size_t len, uint64_t seed)
{
	const unsigned char *b = p;
	uint64_t h = HASH_FNV_BASIS ^ seed;

	for (size_t i = 0; i < len; i++)
		h = hash_step(h, b[i]);
	return h;
}

/* A seed from the kernel's random pool (0 if it cannot be read). */
uint64_t hash_random_seed(void);

#endif /* SHUNT_HASH_H */
