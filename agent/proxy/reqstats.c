// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "proxy/reqstats.h"
#include "core/util.h"

const char *const rs_dest_names[RS_DEST_MAX] = {
	[RS_DEST_BASELINE] = "baseline",
	[RS_DEST_SANDBOX] = "sandbox",
	[RS_DEST_ERROR] = "error",
};

const char *const rs_proto_names[RS_PROTO_MAX] = {"http/1.1", "h2"};

const char *const rs_outcome_names[RS_OUTCOME_MAX] = {
	[RS_1XX] = "1xx",	  [RS_2XX] = "2xx",
	[RS_3XX] = "3xx",	  [RS_4XX] = "4xx",
	[RS_5XX] = "5xx",	  [RS_UPSTREAM_ERROR] = "upstream_error",
	[RS_TIMEOUT] = "timeout", [RS_CLIENT_ABORT] = "client_abort",
};

/* From a fast upstream on the same node (tens of microseconds) to a slow
 * one just under the timeouts. */
const uint64_t rs_bucket_us[RS_NBUCKETS] = {
	50,    100,    250,    500,    1000,	2500,	 5000,	  10000,    25000,
	50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
const char *const rs_bucket_le[RS_NBUCKETS] = {
	"0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
	"0.05",	   "0.1",    "0.25",	"0.5",	  "1",	   "2.5",    "5",     "10",
};

enum rs_outcome rs_outcome_of_status(int status)
{
	if (status < 100 || status > 599)
		return RS_5XX;
	return (enum rs_outcome)(RS_1XX + status / 100 - 1);
}

uint64_t rs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

void reqstats_init(struct reqstats *rs, size_t max)
{
	memset(rs, 0, sizeof(*rs));
	rs->max = max;
	pthread_mutex_init(&rs->lock, NULL);
}

void reqstats_free(struct reqstats *rs)
{
	pthread_mutex_destroy(&rs->lock);
	free(rs->slots);
	rs->slots = NULL;
	rs->cap = rs->n = 0;
}

static uint64_t addr_hash(const struct shunt_addr *a)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (size_t i = 0; i < sizeof(a->addr); i++)
		h = (h ^ a->addr[i]) * 0x100000001b3ULL;
	h = (h ^ a->port) * 0x100000001b3ULL;
	return (h ^ a->family) * 0x100000001b3ULL;
}

/* The slot of svc, or the empty slot where it would go. */
static struct rs_service *slot_find(struct rs_service *slots, size_t cap,
				    const struct shunt_addr *svc)
{
	size_t i = (size_t)addr_hash(svc) & (cap - 1);

	while (slots[i].svc.family && !addr_equal(&slots[i].svc, svc))
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

static int grow(struct reqstats *rs)
{
	size_t cap = rs->cap ? rs->cap * 2 : 16;
	struct rs_service *slots = calloc(cap, sizeof(*slots));

	if (!slots)
		return -1;
	for (size_t i = 0; i < rs->cap; i++)
		if (rs->slots[i].svc.family)
			*slot_find(slots, cap, &rs->slots[i].svc) = rs->slots[i];
	free(rs->slots);
	rs->slots = slots;
	rs->cap = cap;
	return 0;
}

static struct rs_service *service_row(struct reqstats *rs, const struct shunt_addr *svc)
{
	struct rs_service *s;

	if (rs->cap) {
		s = slot_find(rs->slots, rs->cap, svc);
		if (s->svc.family)
			return s;
	}
	if (rs->n >= rs->max)
		return &rs->other;
	/* A new row: the table may move, so not while it is being read
	 * (reqstats_merge). Once per service, never per request. */
	pthread_mutex_lock(&rs->lock);
	/* At most half full, so probes stay short and always end. */
	if ((rs->n + 1) * 2 > rs->cap && grow(rs)) {
		s = &rs->other;
	} else {
		s = slot_find(rs->slots, rs->cap, svc);
		s->svc = *svc;
		rs->n++;
	}
	pthread_mutex_unlock(&rs->lock);
	return s;
}

/* Counters another thread increments: each word read whole. */
static void add_counts(uint64_t *dst, const uint64_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] += __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void reqstats_merge(struct reqstats *dst, struct reqstats *src)
{
	pthread_mutex_lock(&src->lock);
	for (size_t i = 0; i < src->cap; i++) {
		const struct rs_service *s = &src->slots[i];

		if (s->svc.family)
			add_counts(&service_row(dst, &s->svc)->n[0][0][0], &s->n[0][0][0],
				   sizeof(s->n) / sizeof(uint64_t));
	}
	pthread_mutex_unlock(&src->lock);
	add_counts(&dst->other.n[0][0][0], &src->other.n[0][0][0],
		   sizeof(src->other.n) / sizeof(uint64_t));
	for (int d = 0; d < RS_DEST_MAX; d++)
		add_counts((uint64_t *)&dst->hist[d], (const uint64_t *)&src->hist[d],
			   sizeof(src->hist[d]) / sizeof(uint64_t));
	add_counts(dst->parse_errors, src->parse_errors, HTTP_ERR_MAX);
}

void reqstats_record(struct reqstats *rs, const struct shunt_addr *svc, enum rs_proto p,
		     enum rs_dest d, enum rs_outcome o, uint64_t duration_ns)
{
	struct rs_hist *h = &rs->hist[d];
	int i;

	service_row(rs, svc)->n[p][d][o]++;
	for (i = 0; i < RS_NBUCKETS; i++)
		if (duration_ns <= rs_bucket_us[i] * 1000)
			break;
	if (i < RS_NBUCKETS)
		h->bucket[i]++;
	h->count++;
	h->sum_ns += duration_ns;
}

void rs_access_log(const struct shunt_addr *svc, const char *key, enum rs_proto p, enum rs_dest d,
		   const struct shunt_addr *dst, int status, enum rs_outcome o,
		   const struct req_obs *obs, uint64_t duration_ns)
{
	char s[ADDR_STR_LEN], t[ADDR_STR_LEN] = "";
	struct log_field f[] = {
		{"service", LOG_F_STR, format_addr_port(svc, s, sizeof(s)), 0},
		{"key", LOG_F_STR, key, 0},
		{"protocol", LOG_F_STR, rs_proto_names[p], 0},
		{"destination", LOG_F_STR, rs_dest_names[d], 0},
		{"upstream", LOG_F_STR, dst ? format_addr_port(dst, t, sizeof(t)) : t, 0},
		{"status", LOG_F_UINT, NULL, (uint64_t)(status > 0 ? status : 0)},
		{"outcome", LOG_F_STR, rs_outcome_names[o], 0},
		{"duration_s", LOG_F_SECONDS, NULL, duration_ns},
		{"request_bytes", LOG_F_UINT, NULL, obs->req_bytes},
		{"response_bytes", LOG_F_UINT, NULL, obs->resp_bytes},
	};

	log_fields(LOG_INFO, "access", f, sizeof(f) / sizeof(f[0]));
}
