// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Resolving an override's source (netns:, pid:, cgroup:) to kernel ids. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "kernel/source.h"
#include "core/util.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

int source_check(const char *spec, char *err, size_t errlen)
{
	size_t len = strlen(spec);
	const char *rest;
	uint64_t pid;

	if (len >= SHUNT_OVERRIDE_FROM_LEN) {
		snprintf(err, errlen, "--from: longer than %d bytes", SHUNT_OVERRIDE_FROM_LEN - 1);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)spec[i] <= 0x20 || (unsigned char)spec[i] >= 0x7f) {
			snprintf(err, errlen, "--from: space or unprintable byte at offset %zu", i);
			return -EINVAL;
		}
	if (!strncmp(spec, "netns:", 6) || !strncmp(spec, "cgroup:", 7)) {
		rest = strchr(spec, ':') + 1;
		if (rest[0] != '/') {
			snprintf(err, errlen, "--from: '%s': the path must be absolute", spec);
			return -EINVAL;
		}
		return 0;
	}
	if (!strncmp(spec, "pid:", 4)) {
		if (parse_u64(spec + 4, 0x7fffffff, &pid) || !pid) {
			snprintf(err, errlen, "--from: '%s': not a process id", spec);
			return -EINVAL;
		}
		return 0;
	}
	snprintf(err, errlen,
		 "--from: '%s' is not netns:PATH, pid:PID or cgroup:PATH (e.g. "
		 "netns:/run/netns/sandbox-a)",
		 spec);
	return -EINVAL;
}

struct netns_job {
	int nsfd;
	int err;
	uint64_t cookie;
};

/* In a thread of its own: setns() moves only the calling thread. */
int source_check_listed(const char *spec, char *err, size_t errlen)
{
	size_t len = strlen(spec);

	if (strncmp(spec, SHUNT_K8S_FROM_PREFIX, strlen(SHUNT_K8S_FROM_PREFIX)))
		return source_check(spec, err, errlen);
	if (len >= SHUNT_OVERRIDE_FROM_LEN) {
		snprintf(err, errlen, "--from: longer than %d bytes", SHUNT_OVERRIDE_FROM_LEN - 1);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)spec[i] < 0x20 || (unsigned char)spec[i] >= 0x7f) {
			snprintf(err, errlen, "--from: unprintable byte at offset %zu", i);
			return -EINVAL;
		}
	return 0;
}

static void *netns_cookie_thread(void *arg)
{
	struct netns_job *j = arg;
	socklen_t len = sizeof(j->cookie);
	int fd;

	if (setns(j->nsfd, CLONE_NEWNET)) {
		j->err = -errno;
		return NULL;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		j->err = -errno;
		return NULL;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &j->cookie, &len))
		j->err = -errno;
	close(fd);
	return NULL;
}

static int netns_cookie(const char *path, uint64_t *cookie, char *err, size_t errlen)
{
	struct netns_job j = {.nsfd = -1};
	pthread_t t;
	int ret;

	j.nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (j.nsfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "--from: %s: %s", path, strerror(-ret));
		return ret;
	}
	ret = thread_start(&t, netns_cookie_thread, &j);
	if (!ret) {
		pthread_join(t, NULL);
		ret = j.err;
	}
	close(j.nsfd);
	if (ret == -EINVAL)
		snprintf(err, errlen, "--from: %s is not a network namespace", path);
	else if (ret)
		snprintf(err, errlen, "--from: cannot read the cookie of %s: %s", path,
			 strerror(-ret));
	else
		*cookie = j.cookie;
	return ret;
}

int cgroup_id(const char *path, uint64_t *id, char *err, size_t errlen)
{
	struct statfs sfs;
	struct stat st;
	int ret;

	if (statfs(path, &sfs) || stat(path, &st)) {
		ret = -errno;
		snprintf(err, errlen, "--from: %s: %s", path, strerror(-ret));
		return ret;
	}
	if (sfs.f_type != CGROUP2_SUPER_MAGIC || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "--from: %s is not a directory in a cgroup v2 hierarchy",
			 path);
		return -EINVAL;
	}
	/* On a 64-bit kernel a cgroup's id is the inode number of its
	 * directory (kernfs gives out one 64-bit id for both). stat() rather
	 * than name_to_handle_at(): container runtimes' default seccomp
	 * profiles allow it without CAP_SYS_ADMIN. */
	*id = (uint64_t)st.st_ino;
	return 0;
}

int source_resolve(const char *spec, uint32_t *kind, uint64_t *id, char *err, size_t errlen)
{
	char path[64];
	int ret = source_check(spec, err, errlen);

	if (ret)
		return ret;
	if (!strncmp(spec, "cgroup:", 7)) {
		*kind = SHUNT_SRC_CGROUP;
		return cgroup_id(spec + 7, id, err, errlen);
	}
	*kind = SHUNT_SRC_NETNS;
	if (!strncmp(spec, "pid:", 4)) {
		snprintf(path, sizeof(path), "/proc/%s/ns/net", spec + 4);
		return netns_cookie(path, id, err, errlen);
	}
	return netns_cookie(spec + 6, id, err, errlen);
}
