// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <sys/random.h>

#include "core/hash.h"

uint64_t hash_random_seed(void)
{
	uint64_t seed = 0;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = 0;
	return seed;
}
