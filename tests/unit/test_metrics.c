// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Request statistics, the Prometheus exposition, and the endpoint's
 * request parser. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>

#include "addr_helpers.h"
#include "ops/metrics.h"
#include "proxy/reqstats.h"
#include "core/util.h"

static struct shunt_addr v4(uint32_t host_order_ip, uint16_t port)
{
	struct shunt_addr a = {.family = SHUNT_FAMILY_V4, .port = port};

	a.addr[0] = (uint8_t)(host_order_ip >> 24);
	a.addr[1] = (uint8_t)(host_order_ip >> 16);
	a.addr[2] = (uint8_t)(host_order_ip >> 8);
	a.addr[3] = (uint8_t)host_order_ip;
	return a;
}

/* ------------------------------------------------------------ reqstats */

Test(reqstats, status_classes)
{
	cr_assert_eq(rs_outcome_of_status(101), RS_1XX);
	cr_assert_eq(rs_outcome_of_status(200), RS_2XX);
	cr_assert_eq(rs_outcome_of_status(304), RS_3XX);
	cr_assert_eq(rs_outcome_of_status(431), RS_4XX);
	cr_assert_eq(rs_outcome_of_status(599), RS_5XX);
	cr_assert_eq(rs_outcome_of_status(0), RS_5XX, "no status is the upstream's fault");
	cr_assert_eq(rs_outcome_of_status(600), RS_5XX);
}

Test(reqstats, buckets_are_less_or_equal)
{
	struct reqstats rs;
	struct shunt_addr s = v4(0x0a000001, 80);

	reqstats_init(&rs, 4);
	reqstats_record(&rs, &s, RS_HTTP1, RS_DEST_BASELINE, RS_2XX, 50000); /* exactly 50 us */
	reqstats_record(&rs, &s, RS_HTTP1, RS_DEST_BASELINE, RS_2XX, 50001); /* just above */
	reqstats_record(&rs, &s, RS_HTTP1, RS_DEST_BASELINE, RS_2XX, 0);     /* instant */
	reqstats_record(&rs, &s, RS_HTTP1, RS_DEST_BASELINE, RS_2XX, 10000000000); /* 10 s */
	reqstats_record(&rs, &s, RS_HTTP1, RS_DEST_BASELINE, RS_5XX, 10000000001); /* beyond */
	cr_assert_eq(rs.hist[RS_DEST_BASELINE].bucket[0], 2);
	cr_assert_eq(rs.hist[RS_DEST_BASELINE].bucket[1], 1);
	cr_assert_eq(rs.hist[RS_DEST_BASELINE].bucket[RS_NBUCKETS - 1], 1);
	cr_assert_eq(rs.hist[RS_DEST_BASELINE].count, 5);
	cr_assert_eq(rs.hist[RS_DEST_BASELINE].sum_ns, 20000100002ULL);
	cr_assert_eq(rs.hist[RS_DEST_SANDBOX].count, 0);
	reqstats_free(&rs);
	for (int i = 1; i < RS_NBUCKETS; i++)
		cr_assert_gt(rs_bucket_us[i], rs_bucket_us[i - 1]);
	cr_assert_eq(rs_bucket_us[0], 50);
	cr_assert_eq(rs_bucket_us[RS_NBUCKETS - 1], 10000000);
	for (int i = 0; i < RS_NBUCKETS; i++)
		cr_assert_eq((uint64_t)(strtod(rs_bucket_le[i], NULL) * 1e6 + 0.5), rs_bucket_us[i],
			     "le %s", rs_bucket_le[i]);
}

Test(reqstats, services_beyond_the_limit_add_up_in_other)
{
	struct reqstats rs;
	size_t rows = 0;
	uint64_t total = 0;

	reqstats_init(&rs, 100);
	for (int round = 0; round < 2; round++)
		for (uint32_t i = 0; i < 150; i++) {
			struct shunt_addr s = v4(0x0a000000 + i, 8080);

			reqstats_record(&rs, &s, RS_HTTP1, RS_DEST_SANDBOX, RS_2XX, 1000);
		}
	cr_assert_eq(rs.n, 100);
	for (size_t i = 0; i < rs.cap; i++) {
		if (!rs.slots[i].svc.family)
			continue;
		rows++;
		cr_assert_eq(rs.slots[i].n[RS_HTTP1][RS_DEST_SANDBOX][RS_2XX], 2,
			     "each seen twice");
		total += rs.slots[i].n[RS_HTTP1][RS_DEST_SANDBOX][RS_2XX];
	}
	cr_assert_eq(rows, 100);
	cr_assert_eq(rs.other.n[RS_HTTP1][RS_DEST_SANDBOX][RS_2XX], 100, "50 services, twice each");
	cr_assert_eq(total + rs.other.n[RS_HTTP1][RS_DEST_SANDBOX][RS_2XX], 300);
	cr_assert_leq(rs.n * 2, rs.cap, "kept at most half full");
	reqstats_free(&rs);
}

Test(reqstats, v4_and_v6_of_one_port_are_two_services)
{
	struct reqstats rs;
	struct shunt_addr a = v4(0x0a000001, 80), b = {.family = SHUNT_FAMILY_V6, .port = 80};

	b.addr[15] = 1;
	reqstats_init(&rs, 8);
	reqstats_record(&rs, &a, RS_HTTP1, RS_DEST_ERROR, RS_4XX, 1);
	reqstats_record(&rs, &b, RS_HTTP1, RS_DEST_ERROR, RS_4XX, 1);
	reqstats_record(&rs, &b, RS_HTTP1, RS_DEST_ERROR, RS_4XX, 1);
	cr_assert_eq(rs.n, 2);
	reqstats_free(&rs);
}

/* ---------------------------------------------------------- exposition */

static char *label(const char *v)
{
	static char out[256];
	struct buf b = {};

	metrics_label_value(&b, v);
	snprintf(out, sizeof(out), "%s", b.data ? b.data : "");
	buf_free(&b);
	return out;
}

Test(exposition, label_values_escaped)
{
	cr_assert_str_eq(label("10.0.0.1:80"), "10.0.0.1:80");
	cr_assert_str_eq(label("[fd00::1]:80"), "[fd00::1]:80");
	cr_assert_str_eq(label("a\\b"), "a\\\\b");
	cr_assert_str_eq(label("say \"hi\""), "say \\\"hi\\\"");
	cr_assert_str_eq(label("two\nlines"), "two\\nlines");
	cr_assert_str_eq(label("\\\"\n"), "\\\\\\\"\\n");
	cr_assert_str_eq(label(""), "");
	cr_assert_str_eq(label("tab\tstays"), "tab\tstays");
}

/*
 * A strict reader of the text format, enough to catch what Prometheus
 * would refuse: names, HELP before TYPE once per family, every sample
 * belonging to the family last TYPEd (histograms by their _bucket, _sum
 * and _count), well-formed labels with only the three escapes, a numeric
 * value, counters ending in _total, every name starting with shunt_.
 */
static int name_char(char c, int first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       (!first && c >= '0' && c <= '9');
}

static void validate(const char *text)
{
	char fam[128] = "", type[32] = "", help_for[128] = "";
	char seen[64][128];
	int nseen = 0;
	const char *p = text;

	cr_assert(*text, "empty exposition");
	cr_assert_eq(text[strlen(text) - 1], '\n', "must end in a newline");
	while (*p) {
		const char *eol = strchr(p, '\n');
		char line[1024], name[128];
		size_t n = (size_t)(eol - p), i = 0;

		cr_assert(eol, "unterminated line");
		cr_assert_lt(n, sizeof(line));
		memcpy(line, p, n);
		line[n] = '\0';
		p = eol + 1;
		if (!strncmp(line, "# HELP ", 7)) {
			cr_assert_eq(sscanf(line + 7, "%127s", help_for), 1, "%s", line);
			cr_assert_gt(strlen(line), 8 + strlen(help_for), "empty HELP: %s", line);
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			cr_assert_eq(sscanf(line + 7, "%127s %31s", fam, type), 2, "%s", line);
			cr_assert_str_eq(help_for, fam, "TYPE %s without its HELP first", fam);
			cr_assert(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
					  !strcmp(type, "histogram"),
				  "type %s", type);
			for (int k = 0; k < nseen; k++)
				cr_assert_str_neq(seen[k], fam, "family %s twice", fam);
			cr_assert_lt(nseen, 64);
			strcpy(seen[nseen++], fam);
			cr_assert_eq(strncmp(fam, "shunt_", 6), 0, "%s", fam);
			if (!strcmp(type, "counter"))
				cr_assert(strlen(fam) > 6 &&
						  !strcmp(fam + strlen(fam) - 6, "_total"),
					  "counter %s must end in _total", fam);
			else
				cr_assert(strlen(fam) < 6 ||
						  strcmp(fam + strlen(fam) - 6, "_total"),
					  "%s %s ends in _total", type, fam);
			continue;
		}
		cr_assert_neq(line[0], '#', "unknown comment: %s", line);
		cr_assert(name_char(line[0], 1), "bad name start: %s", line);
		while (name_char(line[i], 0))
			i++;
		memcpy(name, line, i);
		name[i] = '\0';
		if (!strcmp(type, "histogram")) {
			size_t fl = strlen(fam);

			cr_assert(!strncmp(name, fam, fl) && (!strcmp(name + fl, "_bucket") ||
							      !strcmp(name + fl, "_sum") ||
							      !strcmp(name + fl, "_count")),
				  "%s is not of histogram %s", name, fam);
		} else {
			cr_assert_str_eq(name, fam, "sample of %s after TYPE %s", name, fam);
		}
		if (line[i] == '{') {
			i++;
			while (line[i] != '}') {
				cr_assert(name_char(line[i], 1), "label name: %s", line);
				while (name_char(line[i], 0))
					i++;
				cr_assert_eq(line[i], '=', "%s", line);
				cr_assert_eq(line[i + 1], '"', "%s", line);
				i += 2;
				while (line[i] != '"') {
					cr_assert(line[i], "unterminated label value: %s", line);
					if (line[i] == '\\') {
						cr_assert(line[i + 1] == '\\' ||
								  line[i + 1] == '"' ||
								  line[i + 1] == 'n',
							  "bad escape: %s", line);
						i++;
					}
					i++;
				}
				i++;
				if (line[i] == ',')
					i++;
				else
					cr_assert_eq(line[i], '}', "%s", line);
			}
			i++;
		}
		cr_assert_eq(line[i], ' ', "no value: %s", line);
		{
			char *end;

			strtod(line + i + 1, &end);
			cr_assert(end != line + i + 1 && *end == '\0', "bad value: %s", line);
		}
	}
}

static const uint64_t kernel[SHUNT_STAT_MAX] = {
	10, 4, 1, 3, 0, 4, 2, [SHUNT_STAT_CONN_LIMIT] = 5, [SHUNT_STAT_POD_LIMIT] = 9};

static void snapshot(struct metrics_snapshot *s, struct reqstats *rs, struct proxy_stats *ps)
{
	memset(s, 0, sizeof(*s));
	s->version = "v1.2-3-gabc \"x\"";
	s->start_time_unix = 1795694472;
	s->proxy = ps;
	s->req = rs;
	s->routes = 3;
	s->maps[0] = (struct metrics_map){"shunt_routes", 3, 16384};
	s->maps[1] = (struct metrics_map){"shunt_orig", -1, 65536};
	s->maps[2] = (struct metrics_map){"shunt_stats", 7, 7};
	s->n_maps = 3;
	s->kernel = kernel;
}

static char *render(const struct metrics_snapshot *s)
{
	struct buf b = {};

	cr_assert_eq(metrics_render(s, &b), 0);
	validate(b.data);
	return b.data;
}

#define HAS(text, line)	    cr_assert(strstr(text, "\n" line "\n") != NULL, "missing line: %s", line)
#define HAS_NOT(text, part) cr_assert(strstr(text, part) == NULL, "unexpected: %s", part)

Test(exposition, full_snapshot)
{
	struct reqstats rs;
	struct proxy_stats ps = {.accepted = 12,
				 .active = 2,
				 .tunnels = 1,
				 .upstream_connects = 5,
				 .upstream_reused = 6,
				 .retries = 1,
				 .fallbacks = 2,
				 .timeouts = 3,
				 .conn_limit = 1,
				 .pod_limit = 4,
				 .pods_limited = 2,
				 .over_limit = 7,
				 .pod_unknown = 8,
				 .pod_upstream_limit = 11};
	struct metrics_snapshot s;
	struct shunt_addr svc = v4(0x0ad30014, 8080), six = {.family = SHUNT_FAMILY_V6, .port = 80};
	char *t;

	six.addr[0] = 0xfd;
	six.addr[15] = 0x20;
	reqstats_init(&rs, 1);
	reqstats_record(&rs, &svc, RS_HTTP1, RS_DEST_SANDBOX, RS_2XX, 100000);
	reqstats_record(&rs, &svc, RS_HTTP1, RS_DEST_SANDBOX, RS_2XX, 200000);
	reqstats_record(&rs, &svc, RS_HTTP1, RS_DEST_BASELINE, RS_CLIENT_ABORT, 3000000000ULL);
	reqstats_record(&rs, &svc, RS_HTTP1, RS_DEST_ERROR, RS_4XX, 20000);
	reqstats_record(&rs, &svc, RS_HTTP2, RS_DEST_SANDBOX, RS_2XX, 300000);
	reqstats_record(&rs, &six, RS_HTTP1, RS_DEST_BASELINE, RS_5XX, 1); /* past the limit */
	rs.parse_errors[HTTP_ERR_HEADER] = 1;
	rs.parse_errors[HTTP_ERR_ROUTING_KEY] = 4;
	snapshot(&s, &rs, &ps);
	t = render(&s);

	HAS(t, "shunt_build_info{version=\"v1.2-3-gabc \\\"x\\\"\"} 1");
	HAS(t, "shunt_start_time_seconds 1795694472");
	HAS(t, "shunt_requests_total{service=\"10.211.0.20:8080\",protocol=\"http/"
	       "1.1\",destination=\"sandbox\","
	       "outcome=\"2xx\"} 2");
	HAS(t, "shunt_requests_total{service=\"10.211.0.20:8080\",protocol=\"h2\",destination="
	       "\"sandbox\","
	       "outcome=\"2xx\"} 1");
	HAS(t, "shunt_requests_total{service=\"10.211.0.20:8080\",protocol=\"http/"
	       "1.1\",destination=\"baseline\","
	       "outcome=\"client_abort\"} 1");
	HAS(t, "shunt_requests_total{service=\"10.211.0.20:8080\",protocol=\"http/"
	       "1.1\",destination=\"error\","
	       "outcome=\"4xx\"} 1");
	HAS(t, "shunt_requests_total{service=\"other\",protocol=\"http/"
	       "1.1\",destination=\"baseline\",outcome=\"5xx\"} 1");
	HAS_NOT(t, "outcome=\"3xx\"");
	HAS_NOT(t, "fd00");

	HAS(t, "# TYPE shunt_request_duration_seconds histogram");
	HAS(t, "shunt_request_duration_seconds_bucket{destination=\"sandbox\",le=\"0.00005\"} 0");
	HAS(t, "shunt_request_duration_seconds_bucket{destination=\"sandbox\",le=\"0.0001\"} 1");
	HAS(t, "shunt_request_duration_seconds_bucket{destination=\"sandbox\",le=\"0.00025\"} 2");
	HAS(t, "shunt_request_duration_seconds_bucket{destination=\"sandbox\",le=\"0.0005\"} 3");
	HAS(t, "shunt_request_duration_seconds_bucket{destination=\"sandbox\",le=\"10\"} 3");
	HAS(t, "shunt_request_duration_seconds_bucket{destination=\"sandbox\",le=\"+Inf\"} 3");
	HAS(t, "shunt_request_duration_seconds_sum{destination=\"sandbox\"} 0.000600000");
	HAS(t, "shunt_request_duration_seconds_count{destination=\"sandbox\"} 3");
	HAS(t, "shunt_request_duration_seconds_bucket{destination=\"baseline\",le=\"2.5\"} 1");
	HAS(t, "shunt_request_duration_seconds_bucket{destination=\"baseline\",le=\"5\"} 2");
	HAS(t, "shunt_request_duration_seconds_sum{destination=\"baseline\"} 3.000000001");
	HAS(t, "shunt_request_duration_seconds_count{destination=\"error\"} 1");

	HAS(t, "shunt_parse_errors_total{reason=\"bad_header\"} 1");
	HAS(t, "shunt_parse_errors_total{reason=\"bad_routing_key\"} 4");
	HAS(t, "shunt_parse_errors_total{reason=\"bad_chunk\"} 0");
	HAS_NOT(t, "reason=\"none\"");

	HAS(t, "shunt_connections_accepted_total 12");
	HAS(t, "shunt_connections_open 2");
	HAS(t, "shunt_tunnels_total 1");
	HAS(t, "shunt_upstream_connects_total 5");
	HAS(t, "shunt_upstream_reuses_total 6");
	HAS(t, "shunt_upstream_retries_total 1");
	HAS(t, "shunt_fallbacks_total 2");
	HAS(t, "shunt_routes 3");
	HAS(t, "shunt_bpf_map_entries{map=\"shunt_routes\"} 3");
	HAS_NOT(t, "shunt_bpf_map_entries{map=\"shunt_orig\"}");
	HAS(t, "shunt_bpf_map_max_entries{map=\"shunt_orig\"} 65536");
	HAS(t, "shunt_kernel_connect_total 10");
	HAS(t, "shunt_kernel_captured_total 4");
	HAS(t, "shunt_kernel_peer_restored_total 2");
	HAS(t, "# TYPE shunt_kernel_fail_open_total counter");
	/* fairness: the limits' counters, the kernel's fail-open counts */
	HAS(t, "shunt_connections_limited_total 1");
	HAS(t, "shunt_pod_limit_reached_total 4");
	HAS(t, "# TYPE shunt_pods_limited gauge");
	HAS(t, "shunt_pods_limited 2");
	HAS(t, "shunt_connections_over_limit_total 7");
	HAS(t, "shunt_connections_pod_unknown_total 8");
	HAS(t, "shunt_upstream_pod_limited_total 11");
	HAS(t, "shunt_kernel_conn_limit_total 5");
	HAS(t, "shunt_kernel_pod_limit_total 9");
	free(t);
	reqstats_free(&rs);
}

/* What the cluster asks for and does not get (k8s tenancy): gauges, only
 * in Kubernetes mode. */
Test(exposition, kubernetes_refusals)
{
	static struct k8s_status k;
	struct metrics_snapshot s = {.version = "dev"};
	char *t;

	t = render(&s);
	HAS_NOT(t, "shunt_k8s_");
	free(t);
	k.conflicts.total = 2;
	k.refused_quota.total = 3;
	k.refused_cidr.total = 1;
	k.routes_not_installed = 7;
	k.overrides_not_installed = 4;
	k.endpoint_addrs_ignored = 5;
	s.k8s = &k;
	t = render(&s);
	HAS(t, "shunt_k8s_conflicts 2");
	HAS(t, "shunt_k8s_refused{reason=\"quota\"} 3");
	HAS(t, "shunt_k8s_refused{reason=\"sandbox_cidr\"} 1");
	HAS(t, "shunt_k8s_not_installed{kind=\"route\"} 7");
	HAS(t, "shunt_k8s_not_installed{kind=\"override\"} 4");
	HAS(t, "shunt_k8s_endpoints_ignored 5");
	HAS(t, "# TYPE shunt_k8s_refused gauge");
	free(t);
}

Test(exposition, empty_agent_is_still_valid)
{
	struct reqstats rs;
	struct metrics_snapshot s = {.version = "dev"};
	char *t;

	t = render(&s);
	HAS(t, "shunt_routes 0");
	HAS_NOT(t, "shunt_requests_total");
	HAS_NOT(t, "shunt_kernel_");
	free(t);

	reqstats_init(&rs, 4);
	s.req = &rs;
	t = render(&s);
	HAS(t, "# TYPE shunt_requests_total counter");
	HAS_NOT(t, "shunt_requests_total{");
	HAS(t, "shunt_request_duration_seconds_count{destination=\"baseline\"} 0");
	HAS(t, "shunt_request_duration_seconds_sum{destination=\"baseline\"} 0.000000000");
	free(t);
	reqstats_free(&rs);
}

Test(exposition, many_services_render_whole)
{
	struct reqstats rs;
	struct metrics_snapshot s = {.version = "dev"};
	char *t;
	int lines = 0;

	reqstats_init(&rs, SHUNT_MAX_SERVICES);
	for (uint32_t i = 0; i < SHUNT_MAX_SERVICES + 10; i++) {
		struct shunt_addr a = v4(0x0a000000 + i, 80);

		reqstats_record(&rs, &a, RS_HTTP1, RS_DEST_BASELINE, RS_2XX, 1000);
	}
	s.req = &rs;
	t = render(&s);
	for (const char *p = t; (p = strstr(p, "\nshunt_requests_total{")); p++)
		lines++;
	cr_assert_eq(lines, SHUNT_MAX_SERVICES + 1, "one row per service and one for other");
	HAS(t, "shunt_requests_total{service=\"other\",protocol=\"http/"
	       "1.1\",destination=\"baseline\",outcome=\"2xx\"} "
	       "10");
	free(t);
	reqstats_free(&rs);
}

/* ------------------------------------------------------------ requests */

static int parse(const char *s, struct metrics_request *r)
{
	return metrics_parse_request(s, strlen(s), r);
}

Test(endpoint, parses_what_scrapers_and_probes_send)
{
	struct metrics_request r;

	cr_assert_eq(parse("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n", &r),
		     0);
	cr_assert_eq(r.target, METRICS_T_METRICS);
	cr_assert(r.get && !r.head);
	cr_assert_eq(parse("GET /metrics?name[]=x HTTP/1.0\r\n\r\n", &r), 0);
	cr_assert_eq(r.target, METRICS_T_METRICS);
	cr_assert_eq(parse("HEAD /healthz HTTP/1.1\r\n\r\n", &r), 0);
	cr_assert_eq(r.target, METRICS_T_HEALTHZ);
	cr_assert(r.head && !r.get);
	cr_assert_eq(parse("GET /readyz HTTP/1.1\n\n", &r), 0, "bare LF tolerated");
	cr_assert_eq(r.target, METRICS_T_READYZ);
	cr_assert_eq(parse("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r), 0);
	cr_assert(!r.get && !r.head);
	cr_assert_eq(parse("GET /metricsx HTTP/1.1\r\n\r\n", &r), 0);
	cr_assert_eq(r.target, METRICS_T_OTHER);
	cr_assert_eq(parse("GET / HTTP/1.1\r\n\r\n", &r), 0);
	cr_assert_eq(r.target, METRICS_T_OTHER);
}

Test(endpoint, overrides_of_a_pod)
{
	struct metrics_request r;

	cr_assert_eq(parse("GET /v1/overrides?pod=0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b HTTP/1.1\r\n"
			   "Host: 10.0.0.1:9464\r\n\r\n",
			   &r),
		     0);
	cr_assert_eq(r.target, METRICS_T_OVERRIDES);
	cr_assert_str_eq(r.pod, "0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b");
	/* Among other parameters; the last pod= counts. */
	cr_assert_eq(parse("GET /v1/overrides?x=1&pod=5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b&y "
			   "HTTP/1.1\r\n\r\n",
			   &r),
		     0);
	cr_assert_str_eq(r.pod, "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b");
	cr_assert_eq(parse("GET /v1/overrides?pod=5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b&pod=x "
			   "HTTP/1.1\r\n\r\n",
			   &r),
		     0);
	cr_assert_str_eq(r.pod, "");
	/* No pod, or not a uid: the target, without one (answered 400). */
	const char *bad[] = {
		"GET /v1/overrides HTTP/1.1\r\n\r\n",
		"GET /v1/overrides? HTTP/1.1\r\n\r\n",
		"GET /v1/overrides?pod= HTTP/1.1\r\n\r\n",
		"GET /v1/overrides?pod=0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7 HTTP/1.1\r\n\r\n",
		"GET /v1/overrides?pod=0b5c8a52%2D1f3e-4c7d-9a1b-2c3d4e5f6a7b HTTP/1.1\r\n\r\n",
		"GET /v1/overrides?xpod=0b5c8a52-1f3e-4c7d-9a1b-2c3d4e5f6a7b HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(r.pod, 'x', sizeof(r.pod));
		cr_assert_eq(parse(bad[i], &r), 0, "%s", bad[i]);
		cr_assert_eq(r.target, METRICS_T_OVERRIDES);
		cr_assert_str_eq(r.pod, "", "%s", bad[i]);
	}
	cr_assert_eq(parse("GET /v1/overrides/x HTTP/1.1\r\n\r\n", &r), 0);
	cr_assert_eq(r.target, METRICS_T_OTHER);
}

Test(endpoint, waits_for_the_whole_head)
{
	struct metrics_request r;

	cr_assert_eq(parse("", &r), -EAGAIN);
	cr_assert_eq(parse("GET /metrics HTTP/1.1\r\n", &r), -EAGAIN);
	cr_assert_eq(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r", &r), -EAGAIN);
}

Test(endpoint, refuses_malformed_requests)
{
	struct metrics_request r;
	char big[METRICS_MAX_REQUEST + 1];

	cr_assert_eq(parse("GET /metrics\r\n\r\n", &r), 400);
	cr_assert_eq(parse("GET /metrics HTTP/2.0\r\n\r\n", &r), 400);
	cr_assert_eq(parse("GET /metrics HTTP/1.1 \r\n\r\n", &r), 400);
	cr_assert_eq(parse("get /metrics HTTP/1.1\r\n\r\n", &r), 400);
	cr_assert_eq(parse("GET  /metrics HTTP/1.1\r\n\r\n", &r), 400);
	cr_assert_eq(parse("GET metrics HTTP/1.1\r\n\r\n", &r), 400);
	cr_assert_eq(parse("GET http://x/metrics HTTP/1.1\r\n\r\n", &r), 400);
	cr_assert_eq(parse("\x16\x03\x01\x02\x05\r\n\r\n", &r), 400);
	cr_assert_eq(parse("\r\n\r\n", &r), 400);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "GET /", 5);
	cr_assert_eq(parse(big, &r), 400, "a head that cannot fit");
}

/* ------------------------------------------------------------ families */

static char *families(const char *const *addrs, int n)
{
	struct shunt_addr l[2] = {};
	struct buf out = {};

	for (int i = 0; i < n; i++)
		cr_assert_eq(parse_addr_port(addrs[i], &l[i]), 0, "%s", addrs[i]);
	metrics_families(l, n, &out);
	cr_assert(!out.failed);
	return out.data;
}

Test(endpoint, readyz_names_the_families_served)
{
	const char *both[] = {"[fd00::5]:15001", "10.0.0.5:15001"};
	char *s;

	s = families(both, 2);
	cr_assert_str_eq(s, "ipv4 10.0.0.5:15001\nipv6 [fd00::5]:15001\n", "IPv4 first");
	free(s);
	s = families(both + 1, 1);
	cr_assert_str_eq(s, "ipv4 10.0.0.5:15001\nipv6 none (no --proxy-addr of this family)\n");
	free(s);
	s = families(both, 1);
	cr_assert_str_eq(s, "ipv4 none (no --proxy-addr of this family)\nipv6 [fd00::5]:15001\n");
	free(s);
}

/* proxy.h: where a connection limit lifts again (the hysteresis the kernel's
 * fail-open switch has, so a pod at its cap does not flip it per
 * connection). */
Test(limits, resume_at)
{
	cr_assert_eq(limit_resume_at(0), 0);
	cr_assert_eq(limit_resume_at(1), 0);
	cr_assert_eq(limit_resume_at(3), 2);
	cr_assert_eq(limit_resume_at(4), 3);
	cr_assert_eq(limit_resume_at(8), 7);
	cr_assert_eq(limit_resume_at(16), 14);
	cr_assert_eq(limit_resume_at(1024), 896);
	cr_assert_eq(limit_resume_at(16384), 14336);
}

/* /metrics renderings per source: a burst, then one per
 * METRICS_SCRAPE_EVERY_MS; other sources are not charged. */
Test(endpoint, scrape_rate_per_source)
{
	static struct scrape_rates t;
	struct shunt_addr a = {.family = SHUNT_FAMILY_V4, .addr = {10, 0, 0, 1}};
	struct shunt_addr b = {.family = SHUNT_FAMILY_V4, .addr = {10, 0, 0, 2}};
	uint64_t now = 1000000;
	int ok = 0;

	for (int i = 0; i < 100; i++)
		ok += scrape_allowed(&t, &a, now);
	cr_assert_eq(ok, METRICS_SCRAPE_BURST, "a burst, then nothing at the same instant");
	cr_assert(scrape_allowed(&t, &b, now), "another source has its own bucket");
	cr_assert(!scrape_allowed(&t, &a, now + METRICS_SCRAPE_EVERY_MS - 1));
	cr_assert(scrape_allowed(&t, &a, now + METRICS_SCRAPE_EVERY_MS), "refilled one");
	cr_assert(!scrape_allowed(&t, &a, now + METRICS_SCRAPE_EVERY_MS));
	/* Idle long: full again, never more. */
	now += 3600 * 1000;
	ok = 0;
	for (int i = 0; i < 100; i++)
		ok += scrape_allowed(&t, &a, now);
	cr_assert_eq(ok, METRICS_SCRAPE_BURST);
	/* Many sources: the table stays bounded, the oldest is forgotten. */
	for (int i = 0; i < 3 * METRICS_SCRAPE_SOURCES; i++) {
		struct shunt_addr x = {.family = SHUNT_FAMILY_V6,
				       .addr = {0xfd, [15] = (uint8_t)i}};

		cr_assert(scrape_allowed(&t, &x, now + 1 + (uint64_t)i));
	}
	cr_assert_eq(t.n, METRICS_SCRAPE_SOURCES);
}
