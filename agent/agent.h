/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The daemon's state, shared by shuntd.c and the control server. */
#ifndef SHUNT_AGENT_H
#define SHUNT_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "kernel/bpf.h"
#include "state/dstguard.h"
#include "k8s/watch.h"
#include "core/loop.h"
#include "proxy/proxy.h"
#include "state/store.h"
#include "state/view.h"

struct control;
struct metrics;
struct k8s;

struct agent {
	struct loop loop;
	struct shunt_bpf bpf;
	struct store store;
	struct dstguard guard;	 /* where the proxy may never connect */
	struct workers *workers; /* the proxy */
	bool pod_capture_auto;	 /* --pod-capture auto: decided once loaded */
	struct view view;	 /* the routes, as the workers read them */
	struct proxy_opts popts;
	struct control *ctl;
	struct metrics *metrics; /* NULL without --metrics-addr, --health-addr */
	struct k8s *k8s;	 /* NULL unless following a cluster */
	const char *config_path;
	/* Read config_path again (SIGHUP, the control socket's reload): 0,
	 * or -errno; msg says what is in force now, or what was wrong. */
	int (*reload)(struct agent *a, char *msg, size_t len);
	struct k8s_opts kopts;
	const char *control_path;
	const char *control_group; /* --control-group: NULL for root only */
	gid_t control_gid;
	const char *pin_dir;
	const char *cgroup;
	struct shunt_addr metrics_addr; /* family 0: no metrics endpoint */
	struct shunt_addr health_addr;	/* family 0: no probe endpoint */
	uint64_t started_unix;
	uint64_t drain_timeout_ms;
	/* A successor took over: leave the programs attached for it. */
	bool handed_over;
	bool draining;
	/* Unpin and detach the programs at exit: a clean stop of an agent
	 * that started, not a failed second start or a handed-over one. */
	bool detach_on_exit;
	/* --reset-maps: pinned routes and overrides of a layout this agent
	 * cannot convert may be dropped rather than refusing to start. */
	bool reset_maps;
};

/* Control socket: one request line per connection, answered and closed.
 * The protocol is private between shuntd and shuntctl (ctl_proto.h). */
int control_start(struct agent *a, const char *path);
void control_stop(struct agent *a);

#endif /* SHUNT_AGENT_H */
