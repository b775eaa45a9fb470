// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Unit tests of inferred propagation's rule (proxy/infer.h): R and each
 * refusal, on a timeline the test chooses.
 */
#include <string.h>
#include <criterion/criterion.h>

#include "core/util.h"
#include "proxy/infer.h"

#define MS(x) ((uint64_t)(x)*1000 * 1000)

static struct shunt_addr dst(void)
{
	struct shunt_addr a;

	cr_assert_eq(parse_addr_port("10.0.0.5:8080", &a), 0);
	return a;
}

static enum infer_outcome call(struct infer_pod *ip, uint64_t now, const char *target, char *key)
{
	struct shunt_addr d = dst();

	key[0] = '\0';
	return infer_decide(ip, now, &d, target, strlen(target), false, key);
}

/* One keyed request in flight while path is called n times (W): the last
 * call's outcome. */
static enum infer_outcome warm(struct infer_pod *ip, struct infer_in *e, const char *k,
			       const char *path, int n, uint64_t *t, char *key)
{
	enum infer_outcome o = INFER_IDLE;

	for (int i = 0; i < n; i++) {
		infer_in_begin(ip, e, k, *t);
		*t += MS(10);
		o = call(ip, *t, path, key);
		*t += MS(1);
		infer_in_end(e, *t);
	}
	return o;
}

Test(infer, rule_r_after_learning)
{
	struct infer_pod ip;
	struct infer_in e = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, 0);
	ip.learn_idle_ns = 0;
	cr_assert_eq(warm(&ip, &e, "dev-a", "/down", INFER_MIN_BUSY, &t, key),
		     INFER_REFUSED_LEARNING);
	infer_in_begin(&ip, &e, "dev-a", t);
	t += MS(10);
	cr_assert_eq(call(&ip, t, "/down?i=1", key), INFER_DECIDED);
	cr_assert_str_eq(key, "dev-a");
	cr_assert_eq(ip.st.outcome[INFER_DECIDED], 1);
	cr_assert_eq(ip.st.outcome[INFER_REFUSED_LEARNING], INFER_MIN_BUSY);
	infer_in_end(&e, t);
	infer_pod_free(&ip);
}

Test(infer, refusal_l_idle_path_never_again)
{
	struct infer_pod ip;
	struct infer_in e = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, 0);
	ip.learn_idle_ns = 0;
	cr_assert_eq(call(&ip, t, "/bg", key), INFER_IDLE);
	cr_assert_eq(warm(&ip, &e, "dev-a", "/bg", 10, &t, key), INFER_REFUSED_IDLE_PATH);
	cr_assert_eq(ip.st.outcome[INFER_DECIDED], 0);
	/* Another path is not touched by it, nor the same path elsewhere. */
	cr_assert_eq(warm(&ip, &e, "dev-a", "/other", INFER_MIN_BUSY + 1, &t, key), INFER_DECIDED);
	infer_pod_free(&ip);
}

Test(infer, refusal_g_recent_end_and_finishing)
{
	struct infer_pod ip;
	struct infer_in a = {}, b = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, 0);
	ip.learn_idle_ns = 0;
	warm(&ip, &a, "dev-a", "/down", INFER_MIN_BUSY, &t, key);
	/* a's response began 1 ms before b's call: refused. */
	infer_in_begin(&ip, &a, "dev-b", t);
	infer_in_begin(&ip, &b, "dev-a", t);
	t += MS(5);
	infer_in_end(&a, t);
	cr_assert_eq(call(&ip, t + MS(1), "/down", key), INFER_REFUSED_RECENT_END);
	cr_assert_eq(call(&ip, t + MS(3), "/down", key), INFER_DECIDED);
	cr_assert_str_eq(key, "dev-a");
	infer_in_end(&b, t + MS(3));
	infer_pod_free(&ip);
}

static bool always_finishing(const struct infer_in *e)
{
	(void)e;
	return true;
}

Test(infer, refusal_g_finishing)
{
	struct infer_pod ip;
	struct infer_in a = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, 0);
	ip.learn_idle_ns = 0;
	warm(&ip, &a, "dev-a", "/down", INFER_MIN_BUSY, &t, key);
	ip.finishing = always_finishing;
	infer_in_begin(&ip, &a, "dev-a", t);
	cr_assert_eq(call(&ip, t + MS(10), "/down", key), INFER_REFUSED_FINISHING);
	infer_pod_free(&ip);
	cr_assert_null(a.pod, "freeing the pod untracks what is in flight");
}

Test(infer, ambiguous_mixed_or_unkeyed)
{
	struct infer_pod ip;
	struct infer_in a = {}, b = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, 0);
	ip.learn_idle_ns = 0;
	warm(&ip, &a, "dev-a", "/down", INFER_MIN_BUSY, &t, key);
	infer_in_begin(&ip, &a, "dev-a", t);
	infer_in_begin(&ip, &b, "dev-b", t);
	t += MS(10);
	cr_assert_eq(call(&ip, t, "/down", key), INFER_AMBIGUOUS);
	infer_in_end(&b, t);
	infer_in_begin(&ip, &b, NULL, t);
	t += MS(10);
	cr_assert_eq(call(&ip, t, "/down", key), INFER_AMBIGUOUS);
	infer_in_end(&b, t);
	t += MS(10);
	cr_assert_eq(call(&ip, t, "/down", key), INFER_DECIDED);
	/* The same key twice is no ambiguity. */
	infer_in_begin(&ip, &b, "dev-a", t);
	t += MS(10);
	cr_assert_eq(call(&ip, t, "/down", key), INFER_DECIDED);
	cr_assert_eq(ip.n_in, 2);
	infer_in_end(&a, t);
	infer_in_end(&a, t); /* idempotent */
	infer_in_end(&b, t);
	cr_assert_eq(ip.n_in, 0);
	cr_assert_eq(ip.n_in_keyed, 0);
	infer_pod_free(&ip);
}

Test(infer, switches_off_when_concurrency_is_usually_above_one)
{
	struct infer_pod ip;
	struct infer_in a = {}, b = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_SHADOW, 0);
	ip.learn_idle_ns = 0;
	infer_in_begin(&ip, &a, "dev-a", t);
	infer_in_begin(&ip, &b, "dev-a", t);
	for (int i = 0; i < INFER_WINDOW - 1; i++)
		call(&ip, t += MS(10), "/down", key);
	cr_assert_not(ip.off);
	cr_assert_eq(call(&ip, t += MS(10), "/down", key), INFER_REFUSED_OFF);
	cr_assert(ip.off);
	cr_assert(strstr(ip.why, "concurrency"), "%s", ip.why);
	cr_assert_eq(ip.st.switched_off, 1);
	cr_assert_eq(call(&ip, t += MS(10), "/down", key), INFER_REFUSED_OFF);
	infer_pod_set_mode(&ip, INFER_SHADOW, t);
	cr_assert(ip.off, "the same mode again does not undo a switch-off");
	infer_pod_set_mode(&ip, INFER_ON, t);
	cr_assert_not(ip.off);
	cr_assert_eq(ip.paths.n, 0, "what was learnt under unsafe traffic is forgotten");
	for (int i = 0; i < INFER_MIN_BUSY; i++)
		cr_assert_eq(call(&ip, t += MS(10), "/down", key), INFER_REFUSED_LEARNING);
	cr_assert_eq(call(&ip, t += MS(10), "/down", key), INFER_DECIDED);
	infer_pod_free(&ip);
}

Test(infer, l_learns_while_switched_off)
{
	struct infer_pod ip;
	struct infer_in a = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, 0);
	ip.learn_idle_ns = 0;
	ip.off = true;
	cr_assert_eq(call(&ip, t, "/timer", key), INFER_REFUSED_OFF);
	ip.off = false;
	for (int i = 0; i < 10; i++) {
		infer_in_begin(&ip, &a, "dev-a", t += MS(10));
		cr_assert_eq(call(&ip, t += MS(10), "/timer", key), INFER_REFUSED_IDLE_PATH);
		infer_in_end(&a, t += MS(10));
	}
	infer_pod_free(&ip);
}

Test(infer, switches_off_when_background_calls_coincide)
{
	struct infer_pod ip;
	struct infer_in a = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, 0);
	ip.learn_idle_ns = 0;
	call(&ip, t, "/bg", key);
	infer_in_begin(&ip, &a, "dev-a", t);
	for (int i = 0; i < INFER_WINDOW; i++)
		call(&ip, t += MS(10), i % 2 ? "/bg" : "/down", key);
	cr_assert(ip.off);
	cr_assert(strstr(ip.why, "background"), "%s", ip.why);
	infer_pod_free(&ip);
}

Test(infer, path_norm)
{
	char out[INFER_PATH_MAX];
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"/users/123/orders?x=1", "/users/*/orders"},
		{"/a/b#frag", "/a/b"},
		{"http://svc:8080/v1/9f8e7d6c5b4a39281716/x", "/v1/*/x"},
		{"/v1/550e8400-e29b-41d4-a716-446655440000", "/v1/*"},
		{"/cafe/abc", "/cafe/abc"}, /* short hex words are words */
		{"*", "*"},
		{"/", "/"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		infer_path_norm(cases[i].in, strlen(cases[i].in), out, sizeof(out));
		cr_assert_str_eq(out, cases[i].want, "%s", cases[i].in);
	}
	/* Cut, not overflowed. */
	cr_assert_eq(infer_path_norm("/abcdefgh", 9, out, 4), 3);
	cr_assert_str_eq(out, "/ab");
}

Test(infer, refusals_recent_begin_pipelined_untracked)
{
	struct infer_pod ip;
	struct infer_in a = {}, b = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	struct shunt_addr d = dst();
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, 0);
	ip.learn_idle_ns = 0;
	warm(&ip, &a, "dev-a", "/down", INFER_MIN_BUSY, &t, key);
	infer_in_begin(&ip, &a, "dev-a", t);
	t += MS(10);
	infer_in_begin(&ip, &b, "dev-a", t); /* read just before the call: maybe after it */
	cr_assert_eq(call(&ip, t + MS(1) / 4, "/down", key), INFER_REFUSED_RECENT_BEGIN);
	t += MS(10);
	cr_assert_eq(infer_decide(&ip, t, &d, "/down", 5, true, key), INFER_REFUSED_PIPELINED);
	ip.untracked = 1;
	cr_assert_eq(call(&ip, t, "/down", key), INFER_REFUSED_UNTRACKED);
	ip.untracked = 0;
	cr_assert_eq(call(&ip, t, "/down", key), INFER_DECIDED);
	/* A tunnel (keyless, for as long as it lasts) makes it ambiguous. */
	infer_in_end(&b, t);
	infer_in_begin(&ip, &b, NULL, t);
	cr_assert_eq(call(&ip, t + MS(10), "/down", key), INFER_AMBIGUOUS);
	infer_pod_free(&ip);
}

Test(infer, learning_needs_idle_time)
{
	struct infer_pod ip;
	struct infer_in a = {}, b = {};
	char key[SHUNT_ROUTE_KEY_LEN];
	uint64_t t = MS(1000);

	infer_pod_init(&ip, INFER_ON, t);
	ip.learn_idle_ns = MS(500);
	/* Never idle: requests overlap back to back; a path called with
	 * each is never eligible, whatever its count. */
	infer_in_begin(&ip, &a, "dev-a", t);
	for (int i = 0; i < 100; i++) {
		t += MS(10);
		infer_in_begin(&ip, &b, "dev-a", t);
		t += MS(5);
		cr_assert_eq(call(&ip, t, "/post", key), INFER_REFUSED_LEARNING, "call %d", i);
		t += MS(5);
		infer_in_end(&b, t);
	}
	cr_assert_lt(infer_idle_ns(&ip, t), MS(1));
	infer_in_end(&a, t);
	/* Idle for 600 ms: the path has had its chance to show itself. */
	t += MS(600);
	cr_assert_geq(infer_idle_ns(&ip, t), MS(600));
	infer_in_begin(&ip, &a, "dev-a", t);
	t += MS(10);
	cr_assert_eq(call(&ip, t, "/post", key), INFER_DECIDED);
	/* A path first called now waits its own idle time, however often
	 * it is called meanwhile. */
	for (int i = 0; i < 10; i++)
		cr_assert_eq(call(&ip, t += MS(10), "/new", key), INFER_REFUSED_LEARNING);
	infer_pod_free(&ip);
}
