// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The capabilities of a control-socket caller (caller.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "ops/caller.h"

/* asm-generic/socket.h, Linux 6.5; older kernels answer ENOPROTOOPT. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* Read a small /proc file whole (NUL-terminated). 0 or -errno. */
static int read_small(const char *path, char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while (off + 1 < len) {
		n = read(fd, buf + off, len - 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	close(fd);
	return 0;
}

int caller_parse_capeff(const char *status, uint64_t *capeff)
{
	const char *p = status;

	while (p && *p) {
		if (!strncmp(p, "CapEff:", 7)) {
			char *end;
			unsigned long long v;

			p += 7;
			while (*p == ' ' || *p == '\t')
				p++;
			errno = 0;
			v = strtoull(p, &end, 16);
			if (end == p || errno || (*end != '\n' && *end != '\0'))
				return -EINVAL;
			*capeff = v;
			return 0;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -EINVAL;
}

void caller_self_init(struct caller_self *self, char *warn, size_t warnlen)
{
	struct stat st;
	char link[32];
	ssize_t n;
	int userns_err = 0;

	memset(self, 0, sizeof(*self));
	if (warn && warnlen)
		warn[0] = '\0';
	if (stat("/proc/self/ns/user", &st) == 0) {
		self->userns_known = true;
		self->userns_dev = st.st_dev;
		self->userns_ino = st.st_ino;
	} else {
		userns_err = errno;
	}
	if (read_small("/proc/self/uid_map", self->uid_map, sizeof(self->uid_map)))
		self->uid_map[0] = '\0';
	if (read_small("/proc/self/gid_map", self->gid_map, sizeof(self->gid_map)))
		self->gid_map[0] = '\0';
	/* /proc/self resolves to our pid as the procfs numbers it: the same
	 * as getpid() only when that procfs belongs to our PID namespace. */
	n = readlink("/proc/self", link, sizeof(link) - 1);
	if (n > 0) {
		link[n] = '\0';
		self->proc_ours = strtol(link, NULL, 10) == (long)getpid();
	}
	if (!self->userns_known && warn)
		snprintf(warn, warnlen,
			 "control: cannot read /proc/self/ns/user: %s; requests that change the "
			 "agent will be refused",
			 strerror(userns_err));
	else if (!self->proc_ours && warn)
		snprintf(
			warn, warnlen,
			"control: /proc is not the procfs of shuntd's PID namespace, so a "
			"caller's capabilities cannot be read; requests that change the agent will "
			"be refused (mount a procfs of this namespace at /proc)");
}

/* Is pid's user namespace the agent's? 1, 0, or -errno. */
static int same_userns(int pid, const struct caller_self *self)
{
	char path[64], map[512];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/user", pid);
	if (stat(path, &st) == 0)
		return st.st_dev == self->userns_dev && st.st_ino == self->userns_ino;
	if (errno != EACCES && errno != EPERM)
		return -errno;
	/*
	 * The namespace link needs ptrace access to the caller, which an agent
	 * with fewer capabilities than the caller lacks. The id maps are
	 * readable by anyone: the same maps as ours mean our namespace, or one
	 * whose creator could map every id we map (CAP_SETUID over them), never
	 * one a process without capabilities made (it can map only its own id).
	 */
	if (!self->uid_map[0] || !self->gid_map[0])
		return -EACCES;
	snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
	if (read_small(path, map, sizeof(map)))
		return -EACCES;
	if (strcmp(map, self->uid_map))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
	if (read_small(path, map, sizeof(map)))
		return -EACCES;
	return strcmp(map, self->gid_map) == 0;
}

/* Does the process pidfd names still exist? 1, 0 or -errno. */
static int pidfd_alive(int pidfd)
{
	/* Signal 0: only the existence and permission checks. EPERM (a
	 * caller of another uid, and no CAP_KILL here) still means alive. */
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0 || errno == EPERM)
		return 1;
	return errno == ESRCH ? 0 : -errno;
}

int caller_check(int fd, const struct caller_self *self, struct caller *c)
{
	struct ucred cred = {};
	socklen_t len = sizeof(cred);
	char path[64], status[8192];
	int pidfd = -1, ret;

	memset(c, 0, sizeof(*c));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
		ret = -errno;
		snprintf(c->why, sizeof(c->why), "the caller cannot be identified: SO_PEERCRED: %s",
			 strerror(-ret));
		return ret;
	}
	c->pid = cred.pid;
	c->uid = cred.uid;
	if (cred.pid <= 0) {
		/* Not visible from here: a process of the host seen from an
		 * agent in a pod without hostPID, or of another pod. */
		snprintf(c->why, sizeof(c->why),
			 "the caller, uid %u, is in a PID namespace this agent cannot see, so its "
			 "capabilities cannot be read: run shuntctl in the agent's PID namespace, "
			 "e.g. kubectl exec into the agent's pod",
			 c->uid);
		return 0;
	}
	if (!self->proc_ours || !self->userns_known) {
		snprintf(c->why, sizeof(c->why), "the caller, pid %d uid %u, cannot be checked: %s",
			 c->pid, c->uid,
			 !self->proc_ours ? "/proc is not the procfs of this agent's PID namespace"
					  : "the agent's own user namespace is unknown");
		return 0;
	}
	/*
	 * A pidfd for the very process that connected, whatever happens to its
	 * pid number. Without one (before Linux 6.5) a race remains: the caller
	 * could exit after connecting and a privileged process be given its
	 * pid before /proc/PID/status is read below, so that process's
	 * capabilities would be taken for the caller's. Winning it takes
	 * cycling through the pid space within that moment.
	 */
	len = sizeof(pidfd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len)) {
		if (errno == ESRCH) {
			snprintf(c->why, sizeof(c->why),
				 "the caller, pid %d uid %u, exited before it could be checked",
				 c->pid, c->uid);
			return 0;
		}
		pidfd = -1;
	}
	snprintf(path, sizeof(path), "/proc/%d/status", c->pid);
	ret = read_small(path, status, sizeof(status));
	if (!ret)
		ret = caller_parse_capeff(status, &c->capeff);
	if (ret) {
		snprintf(c->why, sizeof(c->why),
			 "the caller, pid %d uid %u, cannot be checked: %s: %s", c->pid, c->uid,
			 path, strerror(-ret));
		goto out;
	}
	ret = same_userns(c->pid, self);
	if (ret < 0) {
		snprintf(c->why, sizeof(c->why),
			 "the caller, pid %d uid %u, cannot be checked: its user namespace: %s",
			 c->pid, c->uid, strerror(-ret));
		goto out;
	}
	if (ret == 0) {
		snprintf(c->why, sizeof(c->why),
			 "the caller, pid %d uid %u, is in another user namespace, where its "
			 "capabilities mean nothing to this agent",
			 c->pid, c->uid);
		goto out;
	}
	/* Everything above was read by pid: was that still the peer? */
	if (pidfd >= 0) {
		ret = pidfd_alive(pidfd);
		if (ret != 1) {
			snprintf(c->why, sizeof(c->why),
				 "the caller, pid %d uid %u, exited before it could be checked",
				 c->pid, c->uid);
			goto out;
		}
		c->pid_verified = true;
	}
	/*
	 * What the process holds now, not at connect(): one that exec()s a
	 * program with file capabilities in between is judged by that
	 * program's. For root that is its bounding set anyway; for another
	 * user it is a reason to keep --control-group to trusted people.
	 * Capabilities are per thread and status shows the thread-group
	 * leader's: a thread of a privileged process shares its memory, so
	 * it could make the leader act for it anyway.
	 */
	c->net_admin = c->capeff & (1ULL << CALLER_CAP_NET_ADMIN);
	if (!c->net_admin)
		snprintf(c->why, sizeof(c->why), "the caller, pid %d uid %u, has not", c->pid,
			 c->uid);
out:
	if (pidfd >= 0)
		close(pidfd);
	return 0;
}
