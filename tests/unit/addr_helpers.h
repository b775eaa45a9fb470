/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* 32-bit views of shunt_addr's byte array, for tests that build addresses
 * by hand. */
#ifndef SHUNT_TEST_ADDR_HELPERS_H
#define SHUNT_TEST_ADDR_HELPERS_H

#include <stdint.h>
#include <string.h>
#include <shunt/shunt.h>

static inline uint32_t addr_w(const struct shunt_addr *a, int i)
{
	uint32_t w;

	memcpy(&w, a->addr + 4 * i, sizeof(w));
	return w;
}

static inline void addr_set_w(struct shunt_addr *a, int i, uint32_t w)
{
	memcpy(a->addr + 4 * i, &w, sizeof(w));
}

#endif
