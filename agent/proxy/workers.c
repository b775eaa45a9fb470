// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The proxy's workers: one event loop per CPU (see proxy.h).
 *
 * Worker 0 runs on the agent's main loop, beside the control socket and
 * the Kubernetes watches, so that one worker is exactly the agent before
 * there were several; workers 1..n-1 run on threads of their own, each
 * pinned to the CPUs whose connections the reuseport program sends it.
 * The main thread talks to a worker thread only through flags and an
 * eventfd (drain, stop) and reads its counters as they stand: every
 * counter has one writer, and a reader sees each 64-bit word whole.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <bpf/libbpf.h>

#include "core/log.h"
#include "core/util.h"
#include "kernel/reuseport.h"
#include "proxy/proxy_int.h"

#define WORKER_TICK_MS 100 /* housekeeping of an idle worker */

enum worker_cmd {
	CMD_DRAIN = 1U << 0,
	CMD_HANDED_OVER = 1U << 1, /* with CMD_DRAIN */
	CMD_STOP = 1U << 2,
};

struct worker {
	struct ev_handler h; /* the eventfd: a command */
	struct workers *ws;
	int id;
	struct proxy *p;
	struct loop own; /* workers 1..n-1 */
	struct loop *loop;
	int efd;
	pthread_t thread;
	bool started;
	cpu_set_t cpus; /* where it runs; empty: anywhere */
	_Atomic unsigned int cmd;
	_Atomic bool drained;
};

struct workers {
	struct proxy_shared sh;
	struct view *view;
	struct worker *w;
	int n;
	uint64_t drain_timeout_ms;
	struct reuseport rp;
	bool steered; /* the reuseport program is attached */
};

static void worker_quiesce(struct loop *l, bool asleep)
{
	struct worker *w = l->ctx;

	if (asleep)
		view_leave(w->ws->view, w->id);
	else
		w->p->snap = view_enter(w->ws->view, w->id);
}

static void worker_wake(struct worker *w)
{
	uint64_t one = 1;

	(void)!write(w->efd, &one, sizeof(one));
}

static void worker_event(struct ev_handler *h, uint32_t events)
{
	struct worker *w = (struct worker *)h;
	uint64_t v;

	(void)events;
	(void)!read(w->efd, &v, sizeof(v));
}

/* A worker thread's commands, after every loop iteration. */
static void worker_commands(struct worker *w)
{
	unsigned int cmd = atomic_load(&w->cmd);

	if ((cmd & CMD_DRAIN) && !w->p->draining)
		proxy_drain(w->p, w->ws->drain_timeout_ms, cmd & CMD_HANDED_OVER);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "shuntd-w%d", w->id);
	pthread_setname_np(pthread_self(), name);
	while (!(atomic_load(&w->cmd) & CMD_STOP)) {
		int err = loop_run_once(w->loop, WORKER_TICK_MS);

		if (err) {
			/* Its connections are lost; the others serve on, and a
			 * drain does not wait for it. */
			pr_err("worker %d: event loop: %s; the worker stops", w->id,
			       strerror(-err));
			atomic_store(&w->drained, true);
			break;
		}
		worker_commands(w);
		proxy_tick(w->p);
		proxy_reap(w->p);
		if (w->p->draining && proxy_drained(w->p))
			atomic_store(&w->drained, true);
	}
	view_leave(w->ws->view, w->id);
	return NULL;
}

/* Which worker serves each CPU: the CPUs the agent may run on, dealt out
 * in turn; a CPU outside that set goes by its number. Each worker is
 * pinned to the CPUs it serves (none, when there are more workers than
 * CPUs). */
static int plan_cpus(struct workers *ws, int want, uint32_t *cpu_worker, int ncpu)
{
	cpu_set_t allowed;
	int n, j = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		CPU_ZERO(&allowed);
	n = want > 0 ? want : CPU_COUNT(&allowed);
	if (n < 1)
		n = 1;
	if (n > (int)SHUNT_MAX_WORKERS)
		n = (int)SHUNT_MAX_WORKERS;
	for (int cpu = 0; cpu < ncpu; cpu++)
		cpu_worker[cpu] = (uint32_t)(cpu % n);
	ws->w = calloc((size_t)n, sizeof(*ws->w));
	if (!ws->w)
		return -ENOMEM;
	for (int i = 0; i < n; i++)
		ws->w[i].efd = -1;
	for (int cpu = 0; cpu < ncpu && cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed))
			continue;
		cpu_worker[cpu] = (uint32_t)(j % n);
		CPU_SET(cpu, &ws->w[j % n].cpus);
		j++;
	}
	ws->n = n;
	return 0;
}

/* Listening sockets of one family, worker by worker, into the reuseport
 * program's map; the program then steers the group. */
static void steer(struct workers *ws, const uint32_t *cpu_worker, int ncpu)
{
	int attached = 0, err;

	if (ws->n < 2)
		return; /* one socket per address: nothing to choose */
	err = reuseport_open(&ws->rp, cpu_worker, ncpu);
	for (int i = 0; i < ws->n && !err; i++) {
		struct proxy *p = ws->w[i].p;

		for (int k = 0; k < p->n_listeners && !err; k++)
			if (!p->listeners[k].close_at)
				err = reuseport_add(&ws->rp, i, p->listeners[k].family,
						    p->listeners[k].fd);
	}
	/* One socket of each group: the program belongs to the group. */
	for (int k = 0; k < ws->w[0].p->n_listeners && !err; k++) {
		err = reuseport_attach(&ws->rp, ws->w[0].p->listeners[k].fd);
		attached += !err;
	}
	if (err) {
		pr_warn("the reuseport program is not in place (%s): connections are spread "
			"over the %d workers by the kernel's hash, not by CPU",
			strerror(-err), ws->n);
		if (ws->rp.skel)
			reuseport_close(&ws->rp);
		return;
	}
	ws->steered = attached > 0;
}

/* The predecessor's listening sockets, dealt out: worker i takes, of each
 * address, the i-th one handed over (the predecessor's worker i's); what
 * is left over (it had more workers) goes to the workers in turn, to be
 * served until it closes. */
static void deal_inherited(const struct proxy_opts *o, int n, int i, struct proxy_opts *mine)
{
	int seen[2] = {0, 0}, extra = 0;

	mine->n_inherited = 0;
	for (int k = 0; k < o->n_inherited; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int f, fd = o->inherited[k];

		if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
			if (!i)
				close(fd); /* not a socket: nobody's */
			continue;
		}
		f = ss.ss_family == AF_INET6;
		if (seen[f]++ == i || (seen[f] > n && extra++ % n == i))
			mine->inherited[mine->n_inherited++] = fd;
	}
}

int workers_start(struct workers **out, const struct proxy_opts *o, struct loop *main,
		  struct shunt_bpf *bpf, struct view *view)
{
	int ncpu = libbpf_num_possible_cpus();
	struct workers *ws = calloc(1, sizeof(*ws));
	uint32_t *cpu_worker;
	int err;

	if (ncpu < 1)
		ncpu = 1;
	if (ncpu > (int)SHUNT_MAX_CPUS)
		ncpu = (int)SHUNT_MAX_CPUS;
	cpu_worker = calloc((size_t)ncpu, sizeof(*cpu_worker));
	if (!ws || !cpu_worker) {
		free(ws);
		free(cpu_worker);
		return -ENOMEM;
	}
	ws->view = view;
	err = proxy_shared_init(&ws->sh, o, bpf, view);
	if (!err)
		err = plan_cpus(ws, o->workers, cpu_worker, ncpu);
	if (!err && view->n_readers < ws->n)
		err = -EINVAL;
	/* Limits an agent before us left in the kernel are not ours. */
	if (!err)
		limits_reconcile(&ws->sh);
	for (int i = 0; i < ws->n && !err; i++) {
		struct worker *w = &ws->w[i];
		struct proxy_opts mine = *o;

		w->ws = ws;
		w->id = i;
		w->loop = main;
		if (i) {
			w->loop = &w->own;
			err = loop_init(&w->own);
			w->efd = err ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			w->h.fn = worker_event;
			if (!err && (w->efd < 0 || loop_add(&w->own, w->efd, EPOLLIN, &w->h)))
				err = -errno;
		}
		deal_inherited(o, ws->n, i, &mine);
		if (i) {
			mine.pods = NULL; /* worker 0 serves every in-pod pod */
			mine.n_pods = 0;
		}
		if (!err)
			err = proxy_start(&w->p, &mine, w->loop, &ws->sh, i);
		if (!err) {
			w->loop->quiesce = worker_quiesce;
			w->loop->ctx = w;
			loop_poll_set(w->loop, o->poll_us);
		}
	}
	if (!err)
		steer(ws, cpu_worker, ncpu);
	free(cpu_worker);
	for (int i = 1; i < ws->n && !err; i++) {
		struct worker *w = &ws->w[i];
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		if (CPU_COUNT(&w->cpus))
			pthread_attr_setaffinity_np(&attr, sizeof(w->cpus), &w->cpus);
		err = -pthread_create(&w->thread, &attr, worker_main, w);
		pthread_attr_destroy(&attr);
		w->started = !err;
	}
	if (!err && ws->n > 1 && CPU_COUNT(&ws->w[0].cpus)) {
		thread_affinity_save();
		sched_setaffinity(0, sizeof(ws->w[0].cpus), &ws->w[0].cpus);
	}
	if (err) {
		pr_err("start the proxy's workers: %s", strerror(-err));
		workers_stop(ws);
		return err;
	}
	pr_info("proxy: %d worker(s), connections steered %s", ws->n, workers_steering(ws));
	*out = ws;
	return 0;
}

void workers_stop(struct workers *ws)
{
	if (!ws)
		return;
	for (int i = 1; i < ws->n; i++) {
		struct worker *w = &ws->w[i];

		if (!w->started)
			continue;
		atomic_fetch_or(&w->cmd, CMD_STOP);
		worker_wake(w);
		pthread_join(w->thread, NULL);
	}
	/* Every thread is gone: the rest is single-threaded again. Listeners
	 * close first, worker by worker: new connections fail open. */
	for (int i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];

		if (w->loop && w->loop->ctx == w) {
			w->loop->quiesce = NULL;
			w->loop->ctx = NULL;
		}
		proxy_stop(w->p);
		if (w->efd >= 0)
			close(w->efd);
		if (i && w->loop)
			loop_close(&w->own);
	}
	if (ws->rp.skel)
		reuseport_close(&ws->rp);
	proxy_shared_free(&ws->sh);
	free(ws->w);
	free(ws);
}

void workers_drain(struct workers *ws, uint64_t timeout_ms, bool handed_over)
{
	pthread_mutex_lock(&ws->sh.mu);
	ws->sh.draining = true;
	pthread_mutex_unlock(&ws->sh.mu);
	ws->drain_timeout_ms = timeout_ms;
	proxy_drain(ws->w[0].p, timeout_ms, handed_over);
	for (int i = 1; i < ws->n; i++) {
		atomic_fetch_or(&ws->w[i].cmd, CMD_DRAIN | (handed_over ? CMD_HANDED_OVER : 0));
		worker_wake(&ws->w[i]);
	}
}

bool workers_drained(struct workers *ws)
{
	if (!proxy_drained(ws->w[0].p))
		return false;
	for (int i = 1; i < ws->n; i++)
		if (!atomic_load(&ws->w[i].drained))
			return false;
	return true;
}

void workers_tick(struct workers *ws)
{
	proxy_tick(ws->w[0].p);
	proxy_reap(ws->w[0].p);
	view_reclaim(ws->view);
}

int workers_listener_fds(struct workers *ws, int *fds, int max)
{
	int n = 0;

	/* The threads run on meanwhile. Their own listeners come first in
	 * their tables and change only when they drain (after a hand-over,
	 * never before it); what may change meanwhile is the tail of
	 * listeners adopted from a predecessor, which this skips. */
	for (int i = 0; i < ws->n && n < max; i++)
		n += proxy_listener_fds(ws->w[i].p, fds + n, max - n);
	return n;
}

int workers_listening(const struct workers *ws)
{
	return proxy_listener_fds(ws->w[0].p, (int[PROXY_MAX_LISTENERS]){0}, PROXY_MAX_LISTENERS);
}

int workers_count(const struct workers *ws)
{
	return ws->n;
}

/* dst += src, word by word as another thread writes them. */
static void stats_add(struct proxy_stats *dst, const struct proxy_stats *src)
{
	uint64_t *d = (uint64_t *)dst;
	const uint64_t *s = (const uint64_t *)src;

	for (size_t i = 0; i < sizeof(*dst) / sizeof(uint64_t); i++)
		d[i] += __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

int workers_stats(struct workers *ws, struct proxy_stats *sum, struct proxy_stats *per, int max)
{
	memset(sum, 0, sizeof(*sum));
	for (int i = 0; i < ws->n; i++) {
		struct proxy_stats mine = {0};
		const struct loop_poll *lp = &ws->w[i].loop->poll;

		stats_add(&mine, &ws->w[i].p->st);
		mine.polls = __atomic_load_n(&lp->polls, __ATOMIC_RELAXED);
		mine.poll_hits = __atomic_load_n(&lp->hits, __ATOMIC_RELAXED);
		stats_add(sum, &mine);
		if (per && i < max)
			per[i] = mine;
	}
	pthread_mutex_lock(&ws->sh.mu);
	stats_add(sum, &ws->sh.st);
	pthread_mutex_unlock(&ws->sh.mu);
	return ws->n;
}

void workers_reqstats(struct workers *ws, struct reqstats *out)
{
	for (int i = 0; i < ws->n; i++)
		reqstats_merge(out, &ws->w[i].p->rs);
}

const char *workers_steering(const struct workers *ws)
{
	if (ws->n < 2)
		return "to the one worker";
	if (!ws->steered)
		return "by the kernel's hash";
	return ws->rp.migrate ? "by CPU (reuseport program; a closing listener hands its queue on)"
			      : "by CPU (reuseport program)";
}

int workers_inpod_add(struct workers *ws, const char *name, const char *netns_path, char *msg,
		      size_t msglen)
{
	return proxy_inpod_add(ws->w[0].p, name, netns_path, msg, msglen);
}

int workers_inpod_del(struct workers *ws, const char *name, char *msg, size_t msglen)
{
	return proxy_inpod_del(ws->w[0].p, name, msg, msglen);
}

int workers_inpod_list(struct workers *ws, struct inpod_info *out, int max)
{
	return proxy_inpod_list(ws->w[0].p, out, max);
}

size_t workers_inpod_count(struct workers *ws)
{
	return proxy_inpod_count(ws->w[0].p);
}

int workers_inpod_handover(struct workers *ws, struct inpod_handover *out, int max)
{
	return proxy_inpod_handover(ws->w[0].p, out, max);
}

int workers_infer_set(struct workers *ws, const char *name, enum infer_mode mode,
		      const uint16_t *ports, int n_ports, char *msg, size_t msglen)
{
	return proxy_infer_set(ws->w[0].p, name, mode, ports, n_ports, msg, msglen);
}

int workers_infer_handover(struct workers *ws, struct infer_handover *out, int max)
{
	return proxy_infer_handover(ws->w[0].p, out, max);
}

bool workers_infer_kernel_stats(struct workers *ws, uint64_t out[SHUNT_INFER_STAT_MAX])
{
	return proxy_infer_kernel_stats(ws->w[0].p, out);
}

int workers_tc_add(struct workers *ws, const char *name, const char *ifname, char *msg,
		   size_t msglen)
{
	return proxy_tc_add(ws->w[0].p, name, ifname, msg, msglen);
}

int workers_tc_del(struct workers *ws, const char *name, char *msg, size_t msglen)
{
	return proxy_tc_del(ws->w[0].p, name, msg, msglen);
}

int workers_tc_list(struct workers *ws, struct tcpod_info *out, int max)
{
	return proxy_tc_list(ws->w[0].p, out, max);
}

size_t workers_tc_count(struct workers *ws)
{
	return (size_t)ws->w[0].p->st.tc_pods;
}

int workers_tc_handover(struct workers *ws, struct tcpod_handover *out, int max, int lfd[2])
{
	return proxy_tc_handover(ws->w[0].p, out, max, lfd);
}
