/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* A pod's metadata.uid as given on the wire (shuntctl, the control socket,
 * the metrics listener): no dependency, so that every parser can use it. */
#ifndef SHUNT_K8S_UID_H
#define SHUNT_K8S_UID_H

#include <stdbool.h>
#include <stddef.h>

/* A UUID as the API server writes metadata.uid: 36 bytes of lowercase hex
 * digits and dashes, 8-4-4-4-12. */
#define K8S_UID_LEN 36

static inline bool k8s_uid_valid(const char *s, size_t len)
{
	if (len != K8S_UID_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return false;
		} else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
			return false;
		}
	}
	return true;
}

#endif /* SHUNT_K8S_UID_H */
