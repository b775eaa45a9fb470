/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit tests for agent/ops/caller.c: a control caller's capabilities. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "ops/caller.h"

static const char status_text[] = "Name:\tshuntctl\n"
				  "Umask:\t0022\n"
				  "State:\tR (running)\n"
				  "CapInh:\t0000000000000000\n"
				  "CapPrm:\t000001ffffffffff\n"
				  "CapEff:\t0000000000001000\n"
				  "CapBnd:\t000001ffffffffff\n";

Test(caller, parse_capeff)
{
	uint64_t v = 0;

	cr_assert_eq(caller_parse_capeff(status_text, &v), 0);
	cr_assert_eq(v, 1ULL << CALLER_CAP_NET_ADMIN);
	cr_assert_eq(caller_parse_capeff("CapEff:\t000001ffffffffff", &v), 0);
	cr_assert_eq(v, 0x1ffffffffffULL);
	/* Only the line's own name counts, and the value must be whole. */
	cr_assert_eq(caller_parse_capeff("NotCapEff:\t1\n", &v), -EINVAL);
	cr_assert_eq(caller_parse_capeff("CapPrm:\t1\nCapEff:\t\n", &v), -EINVAL);
	cr_assert_eq(caller_parse_capeff("CapEff:\t12zz\n", &v), -EINVAL);
	cr_assert_eq(caller_parse_capeff("CapEff:\t11111111111111111111\n", &v), -EINVAL);
	cr_assert_eq(caller_parse_capeff("", &v), -EINVAL);
}

/* Our own end of a socket pair: the caller is this process. */
Test(caller, self_over_a_socketpair)
{
	struct caller_self self;
	struct caller c;
	char warn[256], line[256];
	uint64_t own = 0;
	FILE *f = fopen("/proc/self/status", "r");
	int sv[2];

	cr_assert(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "CapEff:", 7))
			caller_parse_capeff(line, &own);
	fclose(f);
	caller_self_init(&self, warn, sizeof(warn));
	cr_assert(self.userns_known, "%s", warn);
	cr_assert(self.proc_ours, "%s", warn);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(caller_check(sv[0], &self, &c), 0);
	cr_assert_eq(c.pid, getpid());
	cr_assert_eq(c.uid, getuid());
	cr_assert_eq(c.capeff, own);
	cr_assert_eq(c.net_admin, !!(own & (1ULL << CALLER_CAP_NET_ADMIN)));
	if (!c.net_admin) {
		char want[128];

		snprintf(want, sizeof(want), "the caller, pid %d uid %u, has not", getpid(),
			 getuid());
		cr_assert_str_eq(c.why, want);
	}
	close(sv[0]);
	close(sv[1]);
}
