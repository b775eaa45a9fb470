// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The unit-test runner: Criterion's own main, except that a run in which no
 * test passed (a --filter matching nothing, every test skipped or none
 * linked in) fails instead of reporting success. */
#include <stdio.h>
#include <criterion/criterion.h>
#include <criterion/hooks.h>

static size_t passed;

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	passed = stats->tests_passed;
}

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	int rc = 0;

	if (criterion_handle_args(argc, argv, true)) {
		rc = !criterion_run_all_tests(tests);
		if (rc == 0 && passed == 0) {
			fprintf(stderr,
				"unit-tests: nothing passed (none matched or all skipped)\n");
			rc = 1;
		}
	}
	criterion_finalize(tests);
	return rc;
}
