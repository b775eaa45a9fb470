// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * latclient: per-request latency on ONE keep-alive HTTP/1.1 connection.
 *
 *   latclient HOST PORT N WARMUP EXPECT_POD [HEADER_LINE]
 *
 * Sends WARMUP then N sequential "GET /" requests (optionally with one extra
 * header line such as "baggage: sd-routing-key=dev-a") on a single TCP
 * connection, times each one from the first byte written to the last byte of
 * the response read (CLOCK_MONOTONIC), and prints one JSON line:
 *   {"n":N,"p50_ns":..,"p90_ns":..,"p99_ns":..,"min_ns":..,"max_ns":..,
 *    "mean_ns":..,"total_ns":..,"pod":"..","peer":"..","status":200,
 *    "cpu":the CPU it ran on after the last response (sched_getcpu),
 *    "lat_ns":[every request's latency, in the order sent]}
 * Every response must be 200 with "X-Pod: EXPECT_POD" and arrive on the same
 * connection; anything else is printed on stderr and the exit status is 1.
 * Built by tests/bench/bench.py into its temp dir; not part of the product.
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define BUF 65536

static char buf[BUF];
static size_t blen;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, long i)
{
	fprintf(stderr, "latclient: request %ld: %s\n", i, what);
	exit(1);
}

/* Value of header NAME in head [p, end), copied into out; 0 if found. */
static int header(const char *head, size_t hlen, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *p = memchr(head, '\n', hlen), *end = head + hlen;

	while (p && p + 1 < end) {
		const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));

		if (!eol)
			break;
		if ((size_t)(eol - line) > nl + 1 && !strncasecmp(line, name, nl) && line[nl] == ':') {
			const char *v = line + nl + 1, *ve = eol;
			size_t n;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			n = (size_t)(ve - v) < outlen - 1 ? (size_t)(ve - v) : outlen - 1;
			memcpy(out, v, n);
			out[n] = 0;
			return 0;
		}
		p = eol;
	}
	return -1;
}

/* Read one full response (Content-Length framing); returns the status. */
static int read_response(int fd, long i, const char *expect_pod, char *pod, char *peer)
{
	char *hend;
	size_t hlen, need;
	char val[256];
	long cl;
	int status;
	ssize_t n;

	for (;;) {
		hend = blen >= 4 ? memmem(buf, blen, "\r\n\r\n", 4) : NULL;
		if (hend)
			break;
		if (blen == BUF)
			die("response head too large", i);
		n = read(fd, buf + blen, BUF - blen);
		if (n == 0)
			die("connection closed by peer (keep-alive broken)", i);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(strerror(errno), i);
		}
		blen += (size_t)n;
	}
	hlen = (size_t)(hend - buf) + 4;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		die("not an HTTP response", i);
	if (header(buf, hlen, "Content-Length", val, sizeof(val)))
		die("response without Content-Length", i);
	cl = strtol(val, NULL, 10);
	if (cl < 0 || (size_t)cl > BUF - hlen)
		die("bad Content-Length", i);
	if (header(buf, hlen, "X-Pod", pod, 64))
		pod[0] = 0;
	if (strcmp(pod, expect_pod)) {
		char msg[200];

		snprintf(msg, sizeof(msg), "status %d from pod '%s', expected pod '%s'", status, pod,
			 expect_pod);
		die(msg, i);
	}
	if (peer && header(buf, hlen, "X-Peer", peer, 64))
		peer[0] = 0;
	need = hlen + (size_t)cl;
	while (blen < need) {
		n = read(fd, buf + blen, BUF - blen);
		if (n == 0)
			die("connection closed in the middle of a body", i);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(strerror(errno), i);
		}
		blen += (size_t)n;
	}
	memmove(buf, buf + need, blen - need);
	blen -= need;
	if (blen)
		die("unexpected bytes after the response", i);
	if (status != 200)
		die("status is not 200", i);
	return status;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t pct(const uint64_t *s, long n, double p)
{
	long k = (long)((p / 100.0) * (double)n + 0.999999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return s[k - 1];
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char req[1024], pod[64] = "", peer[64] = "";
	long n, warm, i;
	uint64_t *lat, t0, t1, start, sum = 0;
	size_t rlen;
	int fd, one = 1, status = 0, cpu;

	if (argc < 6 || argc > 7) {
		fprintf(stderr, "usage: latclient HOST PORT N WARMUP EXPECT_POD [HEADER_LINE]\n");
		return 2;
	}
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "latclient: bad IPv4 address %s\n", argv[1]);
		return 2;
	}
	sa.sin_port = htons((uint16_t)atoi(argv[2]));
	n = atol(argv[3]);
	warm = atol(argv[4]);
	if (n < 1 || warm < 0)
		return 2;
	rlen = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s:%s\r\n%s%s\r\n", argv[1],
				argv[2], argc == 7 ? argv[6] : "", argc == 7 ? "\r\n" : "");
	lat = calloc((size_t)n, sizeof(*lat));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (!lat || fd < 0) {
		perror("latclient");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "latclient: connect %s:%s: %s\n", argv[1], argv[2], strerror(errno));
		return 1;
	}
	start = now_ns();
	for (i = -warm; i < n; i++) {
		size_t off = 0;

		if (i == 0)
			start = now_ns();
		t0 = now_ns();
		while (off < rlen) {
			ssize_t w = write(fd, req + off, rlen - off);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				die(strerror(errno), i);
			}
			off += (size_t)w;
		}
		status = read_response(fd, i, argv[5], pod, i == -warm ? peer : NULL);
		t1 = now_ns();
		if (i >= 0) {
			lat[i] = t1 - t0;
			sum += t1 - t0;
		}
	}
	t1 = now_ns();
	cpu = sched_getcpu();
	close(fd);
	printf("{\"lat_ns\":[");
	for (i = 0; i < n; i++)
		printf("%s%llu", i ? "," : "", (unsigned long long)lat[i]);
	printf("],");
	qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
	printf("\"n\":%ld,\"p50_ns\":%llu,\"p90_ns\":%llu,\"p99_ns\":%llu,\"min_ns\":%llu,"
	       "\"max_ns\":%llu,\"mean_ns\":%llu,\"total_ns\":%llu,\"pod\":\"%s\",\"peer\":\"%s\","
	       "\"status\":%d,\"cpu\":%d}\n",
	       n, (unsigned long long)pct(lat, n, 50), (unsigned long long)pct(lat, n, 90),
	       (unsigned long long)pct(lat, n, 99), (unsigned long long)lat[0],
	       (unsigned long long)lat[n - 1], (unsigned long long)(sum / (uint64_t)n),
	       (unsigned long long)(t1 - start), pod, peer, status, cpu);
	free(lat);
	return 0;
}
