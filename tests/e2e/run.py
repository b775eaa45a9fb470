#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Run the shunt end-to-end suite.

    /usr/bin/python3 tests/e2e/run.py --build build [-k PATTERN]... [-v]

Needs root, cgroup v2 and a bpffs (missing ones skip with a reason). Each
test class gets its own throwaway node (see node.py); a failing test prints
shuntd's output and the servers' logs since the test began. The last line
is "N passed, N failed, N skipped"; the exit status is 1 if any failed,
or if nothing passed (a -k that matches nothing, every test skipped).
Leftovers (netns, cgroups, pins, processes) after the run count as a
failure too.

--strict (or SHUNT_TESTS_STRICT=1, which .ci/run sets) turns a test skipped
for a missing prerequisite into a failure. Skips whose reason starts with
node.KERNEL_SKIP (the running kernel lacks a feature) stay skips.
"""

import argparse
import os
import signal
import sys
import time
import traceback
import unittest

E2E_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean


class Result(unittest.TestResult):
    def __init__(self, verbose, strict=False, kernel_prefix="kernel: "):
        super().__init__()
        self.verbose = verbose
        self.strict = strict
        self.kernel_prefix = kernel_prefix
        self.passed = []
        self.failed = []
        self.skipped_ = []
        self._bad = False
        self._skip = None
        self._t0 = 0.0

    def _name(self, test):
        return test.id().replace("__main__.", "")

    def _diag(self, test):
        node = getattr(type(test), "node", None)
        mark = getattr(test, "mark", None)
        if node is not None and not node.closed:
            try:
                return node.diagnostics(mark)
            except Exception as e:
                return "(diagnostics failed: %r)" % e
        return ""

    def _report(self, test, err, kind, label=None):
        self._bad = True
        text = self._exc_info_to_string(err, test)
        print("\n%s: %s" % (kind, label or self._name(test)))
        print("  " + text.rstrip().replace("\n", "\n  "))
        d = self._diag(test)
        if d:
            print(d)
        sys.stdout.flush()

    def startTest(self, test):
        super().startTest(test)
        self._bad = False
        self._skip = None
        self._t0 = time.monotonic()
        if self.verbose:
            print("RUN   %s" % self._name(test), flush=True)

    def stopTest(self, test):
        super().stopTest(test)
        dt = time.monotonic() - self._t0
        name = self._name(test)
        if self._bad:
            self.failed.append(name)
            print("FAIL  %s (%.1fs)" % (name, dt), flush=True)
        elif self._skip is not None:
            self._skipped(name, self._skip)
        else:
            self.passed.append(name)
            print("ok    %s (%.1fs)" % (name, dt), flush=True)

    def addError(self, test, err):
        super().addError(test, err)
        if not hasattr(test, "_testMethodName"):  # class/module fixture or import error
            self._report(test, err, "ERROR")
            self.failed.append(str(test))
            print("FAIL  %s" % test, flush=True)
            return
        self._report(test, err, "ERROR")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._report(test, err, "FAIL")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._report(test, err, kind, label=subtest.id().replace("__main__.", ""))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if not hasattr(test, "_testMethodName"):
            self._skipped(str(test), reason)
            return
        self._skip = reason

    def _skipped(self, name, reason):
        """A skip; in strict mode one for a missing prerequisite (any reason
        not naming the kernel) is a failure."""
        if self.strict and not reason.startswith(self.kernel_prefix):
            self.failed.append(name)
            print("FAIL  %s: skipped in strict mode (a missing prerequisite): %s" % (name, reason), flush=True)
            return
        self.skipped_.append(name)
        print("SKIP  %s: %s" % (name, reason), flush=True)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._bad = True


def _interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="directory holding shuntd and shuntctl")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="only tests whose id contains PATTERN (fnmatch, repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--list", action="store_true", help="list the tests and exit")
    ap.add_argument("--also", action="append", default=[], metavar="DIR",
                    help="discover test_*.py in DIR too (make test-image: tests/image)")
    ap.add_argument("--strict", action="store_true", default=os.environ.get("SHUNT_TESTS_STRICT") == "1",
                    help="a test skipped for a missing prerequisite fails (default: SHUNT_TESTS_STRICT=1)")
    args = ap.parse_args()

    os.environ["SHUNT_E2E_BUILD"] = os.path.abspath(args.build)
    if args.verbose:
        os.environ["SHUNT_E2E_VERBOSE"] = "1"
    sys.path.insert(0, E2E_DIR)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    import node as N  # after sys.path

    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [p if "*" in p else "*%s*" % p for p in args.patterns]
    suite = loader.discover(E2E_DIR, pattern="test_*.py", top_level_dir=E2E_DIR)
    for d in args.also:
        d = os.path.abspath(d)
        suite.addTests(loader.discover(d, pattern="test_*.py", top_level_dir=d))

    if args.list:
        def walk(s):
            for t in s:
                if isinstance(t, unittest.TestSuite):
                    yield from walk(t)
                else:
                    yield t
        for t in walk(suite):
            print(t.id())
        return 0

    print("shunt e2e: build %s, kernel %s" % (os.environ["SHUNT_E2E_BUILD"], os.uname().release), flush=True)
    reason = N.prereq_skip_reason()
    if reason:
        print("note: tests will be skipped: %s" % reason, flush=True)
    if args.strict:
        print("strict: a skip for a missing prerequisite fails; only %r skips stay skips" % N.KERNEL_SKIP, flush=True)
    result = Result(args.verbose, args.strict, N.KERNEL_SKIP)
    t0 = time.monotonic()
    interrupted = False
    try:
        suite.run(result)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: tearing down", flush=True)
    finally:
        N.close_all_nodes()
    if N.AGENT_PROBLEMS:
        print("FAIL  agent health at teardown:\n  " + "\n  ".join(N.AGENT_PROBLEMS))
        result.failed.append("agent-health")
    left = N.leaks(N.ALL_IDS)
    if left:
        print("FAIL  harness leak check: left behind after teardown:\n  " + "\n  ".join(left))
        result.failed.append("leak-check")
    print("\n(%d nodes, %.0fs)" % (len(N.ALL_IDS), time.monotonic() - t0))
    if result.failed:
        print("failed: " + ", ".join(result.failed))
    nothing = not result.passed
    if nothing:
        print("FAIL  nothing passed: %d tests ran, %d skipped%s" % (
            result.testsRun, len(result.skipped_),
            " (no test matches -k %s)" % " -k ".join(args.patterns) if args.patterns and not result.testsRun else ""))
    print("%d passed, %d failed, %d skipped" % (len(result.passed), len(result.failed), len(result.skipped_)))
    return 1 if result.failed or interrupted or nothing else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)
