/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Who is on the other end of a control connection, and may it change the
 * agent?
 *
 * The socket's file mode decides who may connect; what a caller may then
 * do depends on its capabilities: the ops that change the agent need
 * CAP_NET_ADMIN in the agent's own user namespace (ctl_proto.h). The
 * kernel names the process that connected (SO_PEERCRED); its capabilities
 * are read from /proc/PID/status, and a pidfd for the exact peer
 * (SO_PEERPIDFD, Linux 6.5) proves that the pid still meant that process
 * while they were read.
 */
#ifndef SHUNT_CALLER_H
#define SHUNT_CALLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CALLER_CAP_NET_ADMIN 12 /* linux/capability.h */

/* The agent's own identity, read once at start. */
struct caller_self {
	bool userns_known;
	dev_t userns_dev;
	ino_t userns_ino;
	char uid_map[512], gid_map[512]; /* "" when unreadable */
	/* /proc is the procfs of this PID namespace: a pid from SO_PEERCRED
	 * (which the kernel gives in the namespace of the reader) names the
	 * same process there. */
	bool proc_ours;
};

struct caller {
	int pid;	   /* in the agent's PID namespace; 0: not visible there */
	unsigned int uid;  /* in the agent's user namespace */
	uint64_t capeff;   /* when read */
	bool net_admin;	   /* CAP_NET_ADMIN in effect, in the agent's user namespace */
	bool pid_verified; /* a pidfd confirmed the pid was the peer throughout */
	/* Unless net_admin: why not, for the refusal, e.g. "the caller, pid
	 * 42 uid 0, has not". */
	char why[512];
};

/* Fill self (never fails: what cannot be read makes every check fail
 * closed, and the returned message, if any, says why for the log). */
void caller_self_init(struct caller_self *self, char *warn, size_t warnlen);

/* Who connected to the control connection fd, and whether it holds
 * CAP_NET_ADMIN in the agent's user namespace. 0, or -errno when the
 * kernel would not say who connected (c->why says so too). */
int caller_check(int fd, const struct caller_self *self, struct caller *c);

/* CapEff of a /proc/PID/status text: 0, or -EINVAL when it has none. */
int caller_parse_capeff(const char *status, uint64_t *capeff);

#endif /* SHUNT_CALLER_H */
