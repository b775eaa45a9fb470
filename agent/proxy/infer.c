// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Inferred propagation: the rule and its refusals (see infer.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proxy/infer.h"

const char *const infer_outcome_names[INFER_OUTCOME_MAX] = {
	[INFER_DECIDED] = "decided",
	[INFER_IDLE] = "nothing_in_flight",
	[INFER_AMBIGUOUS] = "ambiguous",
	[INFER_REFUSED_IDLE_PATH] = "idle_path",
	[INFER_REFUSED_RECENT_END] = "recent_end",
	[INFER_REFUSED_RECENT_BEGIN] = "recent_begin",
	[INFER_REFUSED_FINISHING] = "finishing",
	[INFER_REFUSED_LEARNING] = "learning",
	[INFER_REFUSED_UNTRACKED] = "untracked",
	[INFER_REFUSED_PIPELINED] = "pipelined",
	[INFER_REFUSED_ABORTED] = "aborted",
	[INFER_REFUSED_TABLE_FULL] = "table_full",
	[INFER_REFUSED_OFF] = "switched_off",
};

const char *const infer_mode_names[3] = {"off", "shadow", "on"};

/* A path table key: destination and normalised path, compared as bytes
 * (only the used part of path is hashed). */
struct infer_path_key {
	struct shunt_addr dst;
	char path[INFER_PATH_MAX];
};

struct infer_path {
	uint32_t busy;	     /* calls seen with a request in flight */
	bool idle;	     /* seen called with nothing in flight (L) */
	uint64_t idle_at_ns; /* the pod's idle time when it was first called (W) */
};

bool infer_path_idle(const void *path)
{
	return ((const struct infer_path *)path)->idle;
}

static size_t path_key_len(const struct infer_path_key *k, size_t plen)
{
	return offsetof(struct infer_path_key, path) + plen;
}

void infer_pod_init(struct infer_pod *ip, enum infer_mode mode, uint64_t now_ns)
{
	memset(ip, 0, sizeof(*ip));
	ip->mode = mode;
	ip->guard_ns = INFER_GUARD_NS;
	ip->begin_guard_ns = INFER_BEGIN_GUARD_NS;
	ip->min_busy = INFER_MIN_BUSY;
	ip->learn_idle_ns = INFER_LEARN_IDLE_NS;
	ip->idle_since_ns = now_ns;
}

uint64_t infer_idle_ns(const struct infer_pod *ip, uint64_t now_ns)
{
	return ip->idle_total_ns +
	       (!ip->n_in && now_ns > ip->idle_since_ns ? now_ns - ip->idle_since_ns : 0);
}

static void paths_free(struct infer_pod *ip)
{
	size_t i;

	for (struct hmap_entry *e = hmap_first(&ip->paths, &i); e; e = hmap_next(&ip->paths, e, &i))
		free(e->val);
	hmap_free(&ip->paths);
}

void infer_pod_free(struct infer_pod *ip)
{
	while (ip->in_flight)
		infer_in_end(ip->in_flight, 0);
	paths_free(ip);
}

void infer_pod_set_mode(struct infer_pod *ip, enum infer_mode mode, uint64_t now_ns)
{
	if (mode == ip->mode)
		return; /* the same again: a switch-off stands */
	/* What was learnt under traffic that made it unsafe: learn anew. */
	if (ip->off)
		infer_pod_relearn(ip, now_ns);
	ip->mode = mode;
	ip->off = false;
	ip->why[0] = '\0';
	ip->win_calls = ip->win_multi = ip->win_coincide = 0;
}

void infer_in_begin(struct infer_pod *ip, struct infer_in *e, const char *key, uint64_t now_ns)
{
	if (e->pod)
		infer_in_end(e, now_ns);
	if (!ip->n_in)
		ip->idle_total_ns = infer_idle_ns(ip, now_ns);
	if (now_ns > ip->last_begin_ns)
		ip->last_begin_ns = now_ns;
	e->begin_ns = now_ns;
	e->pod = ip;
	e->keyed = key && key[0];
	snprintf(e->key, sizeof(e->key), "%s", e->keyed ? key : "");
	e->prev = NULL;
	e->next = ip->in_flight;
	if (e->next)
		e->next->prev = e;
	ip->in_flight = e;
	ip->n_in++;
	ip->n_in_keyed += e->keyed;
	ip->st.inbound++;
	ip->st.inbound_keyed += e->keyed;
}

void infer_in_end(struct infer_in *e, uint64_t now_ns)
{
	struct infer_pod *ip = e->pod;

	if (!ip)
		return;
	if (e->prev)
		e->prev->next = e->next;
	else
		ip->in_flight = e->next;
	if (e->next)
		e->next->prev = e->prev;
	ip->n_in--;
	ip->n_in_keyed -= e->keyed;
	if (now_ns > ip->last_end_ns)
		ip->last_end_ns = now_ns;
	if (!ip->n_in)
		ip->idle_since_ns = ip->last_end_ns;
	e->pod = NULL;
	e->prev = e->next = NULL;
}

void infer_in_unkey(struct infer_in *e)
{
	if (!e->pod || !e->keyed)
		return;
	e->keyed = false;
	e->key[0] = '\0';
	e->pod->n_in_keyed--;
}

void infer_hold(struct infer_pod *ip, uint64_t now_ns)
{
	if (now_ns + ip->learn_idle_ns > ip->hold_until_ns)
		ip->hold_until_ns = now_ns + ip->learn_idle_ns;
}

void infer_in_abort(struct infer_in *e, uint64_t now_ns)
{
	struct infer_pod *ip = e->pod;

	if (!ip)
		return;
	infer_in_end(e, now_ns);
	infer_hold(ip, now_ns);
}

void infer_pod_relearn(struct infer_pod *ip, uint64_t now_ns)
{
	paths_free(ip);
	ip->idle_total_ns = 0;
	ip->idle_since_ns = now_ns;
}

static bool is_hexish(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
	       ch == '-';
}

/* Does seg look like an identifier (a row id, a UUID, a hash)? */
static bool seg_is_id(const char *seg, size_t n)
{
	bool digits = n > 0, hex = n >= 16;

	for (size_t i = 0; i < n && (digits || hex); i++) {
		digits = digits && seg[i] >= '0' && seg[i] <= '9';
		hex = hex && is_hexish(seg[i]);
	}
	return digits || hex;
}

size_t infer_path_norm(const char *target, size_t tlen, char *out, size_t outsz)
{
	size_t i = 0, o = 0;

	/* absolute-form: scheme://authority/path */
	for (size_t k = 0; k + 2 < tlen && target[k] != '/'; k++)
		if (target[k] == ':' && target[k + 1] == '/' && target[k + 2] == '/') {
			i = k + 3;
			while (i < tlen && target[i] != '/' && target[i] != '?')
				i++;
			break;
		}
	while (i < tlen && target[i] != '?' && target[i] != '#') {
		size_t s = i, n;

		while (i < tlen && target[i] != '/' && target[i] != '?' && target[i] != '#')
			i++;
		n = i - s;
		if (seg_is_id(target + s, n)) {
			if (o + 1 < outsz)
				out[o++] = '*';
		} else {
			for (size_t k = 0; k < n && o + 1 < outsz; k++)
				out[o++] = target[s + k];
		}
		if (i < tlen && target[i] == '/') {
			if (o + 1 < outsz)
				out[o++] = '/';
			i++;
		}
	}
	if (outsz)
		out[o] = '\0';
	return o;
}

static struct infer_path *path_get(struct infer_pod *ip, uint64_t now_ns,
				   const struct shunt_addr *dst, const char *target, size_t tlen,
				   bool *full)
{
	struct infer_path_key k;
	struct infer_path *pe;
	size_t plen, klen;

	memset(&k, 0, sizeof(k));
	k.dst = *dst;
	plen = infer_path_norm(target, tlen, k.path, sizeof(k.path));
	klen = path_key_len(&k, plen);
	pe = hmap_get(&ip->paths, &k, klen);
	*full = false;
	if (pe)
		return pe;
	if (ip->paths.n >= INFER_MAX_PATHS) {
		*full = true;
		return NULL;
	}
	pe = calloc(1, sizeof(*pe));
	if (!pe || hmap_put(&ip->paths, &k, klen, pe, NULL)) {
		free(pe);
		*full = true;
		return NULL;
	}
	pe->idle_at_ns = infer_idle_ns(ip, now_ns);
	return pe;
}

/* The safety window (see INFER_WINDOW): one more call with something in
 * flight; switches inference off when the window says so. */
static void window_count(struct infer_pod *ip, bool multi, bool coincide)
{
	ip->win_calls++;
	ip->win_multi += multi;
	ip->win_coincide += coincide;
	if (ip->win_calls < INFER_WINDOW)
		return;
	if (ip->win_multi * 2 > ip->win_calls)
		snprintf(ip->why, sizeof(ip->why),
			 "concurrency usually above one: %u of the last %u calls were made with "
			 "more than one inbound request in flight",
			 ip->win_multi, ip->win_calls);
	else if (ip->win_coincide * 4 > ip->win_calls)
		snprintf(ip->why, sizeof(ip->why),
			 "background calls coincide with keyed requests: %u of the last %u calls "
			 "went to paths also called with nothing in flight",
			 ip->win_coincide, ip->win_calls);
	if (ip->why[0] && !ip->off) {
		ip->off = true;
		ip->st.switched_off++;
	}
	ip->win_calls = ip->win_multi = ip->win_coincide = 0;
}

static enum infer_outcome count(struct infer_pod *ip, enum infer_outcome o)
{
	ip->st.outcome[o]++;
	return o;
}

enum infer_outcome infer_decide(struct infer_pod *ip, uint64_t now_ns, const struct shunt_addr *dst,
				const char *target, size_t tlen, bool pipelined, char *key_out)
{
	const struct infer_in *first = ip->in_flight;
	struct infer_path *pe;
	bool full;

	ip->st.calls++;
	pe = path_get(ip, now_ns, dst, target, tlen, &full);
	/* L learns also while switched off. */
	if (pe && !ip->n_in) {
		pe->idle = true;
		return count(ip, ip->off ? INFER_REFUSED_OFF : INFER_IDLE);
	}
	if (ip->off)
		return count(ip, INFER_REFUSED_OFF);
	if (!pe)
		return count(ip, INFER_REFUSED_TABLE_FULL);
	window_count(ip, ip->n_in > 1, pe->idle && ip->n_in_keyed);
	if (ip->off)
		return count(ip, INFER_REFUSED_OFF);
	pe->busy++;
	/* R: every request in flight carries one key. */
	if (ip->n_in_keyed != ip->n_in)
		return count(ip, INFER_AMBIGUOUS);
	for (const struct infer_in *e = first->next; e; e = e->next)
		if (strcmp(e->key, first->key))
			return count(ip, INFER_AMBIGUOUS);
	if (pe->idle)
		return count(ip, INFER_REFUSED_IDLE_PATH);
	if (ip->untracked)
		return count(ip, INFER_REFUSED_UNTRACKED);
	if (now_ns < ip->hold_until_ns)
		return count(ip, INFER_REFUSED_ABORTED);
	if (pipelined)
		return count(ip, INFER_REFUSED_PIPELINED);
	if (ip->last_end_ns && now_ns - ip->last_end_ns < ip->guard_ns)
		return count(ip, INFER_REFUSED_RECENT_END);
	if (now_ns - ip->last_begin_ns < ip->begin_guard_ns)
		return count(ip, INFER_REFUSED_RECENT_BEGIN);
	for (const struct infer_in *e = first; e && ip->finishing; e = e->next)
		if (ip->finishing(e))
			return count(ip, INFER_REFUSED_FINISHING);
	if (pe->busy <= ip->min_busy ||
	    infer_idle_ns(ip, now_ns) - pe->idle_at_ns < ip->learn_idle_ns)
		return count(ip, INFER_REFUSED_LEARNING);
	/* Short-lived work that bypasses shunt (a port not listed, a call
	 * over loopback) lasts less than the periodic look: look now. */
	if (ip->rescan)
		ip->rescan(ip);
	if (ip->untracked)
		return count(ip, INFER_REFUSED_UNTRACKED);
	memcpy(key_out, first->key, SHUNT_ROUTE_KEY_LEN);
	return count(ip, INFER_DECIDED);
}
