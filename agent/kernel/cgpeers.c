// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Other cgroup connect programs around shunt's (cgpeers.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <bpf/bpf.h>

#include "kernel/cgpeers.h"

#define CG_MAX_IDS   512 /* programs of one hook in one array; the kernel allows 64 per cgroup */
#define CG_MAX_DEPTH 64

static const struct {
	enum bpf_attach_type type;
	uint8_t family;
} hooks[] = {
	{BPF_CGROUP_INET4_CONNECT, SHUNT_FAMILY_V4},
	{BPF_CGROUP_INET6_CONNECT, SHUNT_FAMILY_V6},
};
#define NHOOKS (sizeof(hooks) / sizeof(hooks[0]))

static void note(struct cg_peers *p, const char *fmt, const char *path, int err)
{
	char msg[PATH_MAX + 256], eb[128];
	size_t len;

	if (p->err[0])
		return; /* the first problem is enough to say */
	/* (the status answer runs this on a thread of its own) */
	snprintf(msg, sizeof(msg), fmt, path, strerror_r(err, eb, sizeof(eb)));
	len = strlen(msg) < sizeof(p->err) - 1 ? strlen(msg) : sizeof(p->err) - 1;
	memcpy(p->err, msg, len);
	p->err[len] = '\0';
}

/* The programs of one hook: attached here, or (effective) in run order.
 * 0 or -errno; a longer list than fits is cut. */
static int query(int fd, enum bpf_attach_type type, bool effective, uint32_t *ids, uint32_t *cnt)
{
	__u32 n = CG_MAX_IDS;

	*cnt = 0;
	if (bpf_prog_query(fd, type, effective ? BPF_F_QUERY_EFFECTIVE : 0, NULL, ids, &n)) {
		if (errno != ENOSPC)
			return -errno;
	}
	*cnt = n < CG_MAX_IDS ? n : CG_MAX_IDS;
	return 0;
}

static int index_of(const uint32_t *ids, uint32_t n, uint32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] == id)
			return (int)i;
	return -1;
}

/* The program's name, if the agent may open it by id (CAP_SYS_ADMIN). */
static void prog_name(uint32_t id, char *name, size_t len)
{
	struct bpf_prog_info info = {};
	__u32 ilen = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);

	name[0] = '\0';
	if (fd < 0)
		return;
	if (!bpf_obj_get_info_by_fd(fd, &info, &ilen))
		snprintf(name, len, "%s", info.name);
	close(fd);
}

static void add(struct cg_peers *p, uint32_t id, uint8_t family, enum cg_relation rel, bool before,
		const char *path)
{
	struct cg_prog *c;

	for (size_t i = 0; i < p->n; i++) {
		c = &p->progs[i];
		if (c->id == id && c->family == family && c->relation == rel) {
			c->cgroups++;
			c->before |= before;
			return;
		}
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct cg_prog *np = realloc(p->progs, cap * sizeof(*np));

		if (!np) {
			snprintf(p->err, sizeof(p->err), "out of memory");
			return;
		}
		p->progs = np;
		p->cap = cap;
	}
	c = &p->progs[p->n++];
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->family = family;
	c->relation = rel;
	c->before = before;
	c->cgroups = 1;
	snprintf(c->path, sizeof(c->path), "%s", path);
	prog_name(id, c->name, sizeof(c->name));
}

static bool is_cgroup2(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

/* Which ancestor of dir (as far up as this mount shows) has id attached
 * for type: its path in where, or "" when none visible does. */
static void ancestor_of(const char *dir, enum bpf_attach_type type, uint32_t id, char *where,
			size_t len)
{
	char path[PATH_MAX], *slash;
	uint32_t ids[CG_MAX_IDS], n = 0;

	where[0] = '\0';
	snprintf(path, sizeof(path), "%s", dir);
	while ((slash = strrchr(path, '/')) && slash != path) {
		int fd;

		*slash = '\0';
		if (!is_cgroup2(path))
			return;
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return;
		if (!query(fd, type, false, ids, &n) && index_of(ids, n, id) >= 0) {
			snprintf(where, len, "%s", path);
			close(fd);
			return;
		}
		close(fd);
	}
}

struct walk {
	struct cg_peers *out;
	const uint32_t *own; /* shunt's program per hook */
	char path[PATH_MAX];
};

/* A descendant cgroup: its own programs, and where they run relative to
 * shunt's for its tasks. */
static void look_at(struct walk *w, int fd)
{
	uint32_t here[CG_MAX_IDS], eff[CG_MAX_IDS], nh = 0, ne = 0;

	for (size_t h = 0; h < NHOOKS; h++) {
		int mine, ret = query(fd, hooks[h].type, false, here, &nh);

		if (!ret && !nh)
			continue;
		if (!ret)
			ret = query(fd, hooks[h].type, true, eff, &ne);
		if (ret) {
			note(w->out, "query the programs of %s: %s", w->path, -ret);
			continue;
		}
		mine = index_of(eff, ne, w->own[h]);
		for (uint32_t i = 0; i < nh; i++) {
			int at = index_of(eff, ne, here[i]);

			add(w->out, here[i], hooks[h].family, CG_DESCENDANT, mine < 0 || at < mine,
			    w->path);
		}
	}
}

static void walk_below(struct walk *w, int dfd, int depth)
{
	size_t plen = strlen(w->path);
	struct dirent *de;
	DIR *d;
	int fd = dup(dfd);

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		int cfd;

		if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (w->out->walked >= CG_MAX_WALK) {
			w->out->truncated = true;
			break;
		}
		if (plen + 1 + strlen(de->d_name) >= sizeof(w->path))
			continue;
		cfd = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (cfd < 0)
			continue; /* gone meanwhile */
		snprintf(w->path + plen, sizeof(w->path) - plen, "/%s", de->d_name);
		w->out->walked++;
		look_at(w, cfd);
		if (depth < CG_MAX_DEPTH)
			walk_below(w, cfd, depth + 1);
		close(cfd);
		w->path[plen] = '\0';
	}
	closedir(d);
}

static int cmp_prog(const void *pa, const void *pb)
{
	const struct cg_prog *a = pa, *b = pb;

	if (a->family != b->family)
		return a->family - b->family;
	if (a->before != b->before)
		return a->before ? -1 : 1;
	if (a->relation != b->relation)
		return a->relation - b->relation;
	return a->id < b->id ? -1 : a->id > b->id;
}

int cg_peers_scan(const char *cgroup, uint32_t own4, uint32_t own6, struct cg_peers *out)
{
	uint32_t own[NHOOKS] = {own4, own6};
	uint32_t eff[CG_MAX_IDS], here[CG_MAX_IDS], ne = 0, nh = 0;
	struct walk w = {.out = out, .own = own};
	int fd, ret;

	memset(out, 0, sizeof(*out));
	if (!realpath(cgroup, w.path)) {
		ret = -errno;
		note(out, "%s: %s", cgroup, -ret);
		return ret;
	}
	fd = open(w.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		note(out, "%s: %s", w.path, -ret);
		return ret;
	}
	/* Every task of shunt's cgroup runs this array. */
	for (size_t h = 0; h < NHOOKS; h++) {
		int mine;

		ret = query(fd, hooks[h].type, true, eff, &ne);
		if (!ret)
			ret = query(fd, hooks[h].type, false, here, &nh);
		if (ret) {
			note(out, "query the programs of %s: %s", w.path, -ret);
			close(fd);
			return ret;
		}
		mine = index_of(eff, ne, own[h]);
		for (uint32_t i = 0; i < ne; i++) {
			char where[PATH_MAX];
			bool same = index_of(here, nh, eff[i]) >= 0;

			if (eff[i] == own[h])
				continue;
			if (!same)
				ancestor_of(w.path, hooks[h].type, eff[i], where, sizeof(where));
			add(out, eff[i], hooks[h].family, same ? CG_SAME : CG_ANCESTOR,
			    mine < 0 || (int)i < mine, same ? w.path : where);
		}
	}
	/* A descendant's own programs run before shunt's for its tasks. */
	walk_below(&w, fd, 1);
	close(fd);
	if (out->n)
		qsort(out->progs, out->n, sizeof(*out->progs), cmp_prog);
	return 0;
}

void cg_peers_free(struct cg_peers *p)
{
	free(p->progs);
	p->progs = NULL;
	p->n = p->cap = 0;
}

bool cg_peers_before(const struct cg_peers *p, uint8_t family)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->progs[i].family == family && p->progs[i].before)
			return true;
	return false;
}

struct lone_idx {
	const struct shunt_route_key *k;
	const struct shunt_route *v;
	size_t i;
};

static int addr_cmp(const struct shunt_addr *a, const struct shunt_addr *b, bool port)
{
	size_t len = a->family == SHUNT_FAMILY_V4 ? 4 : 16;
	int c;

	if (a->family != b->family)
		return a->family - b->family;
	c = memcmp(a->addr, b->addr, len);
	if (c || !port)
		return c;
	return a->port - b->port;
}

static int cmp_key_to(const void *pa, const void *pb)
{
	const struct lone_idx *a = pa, *b = pb;
	int c = strncmp(a->k->key, b->k->key, sizeof(a->k->key));

	return c ? c : addr_cmp(&a->v->to, &b->v->to, true);
}

long routes_lone_address(const struct shunt_route_key *keys, const struct shunt_route *vals,
			 size_t n, bool *lone)
{
	struct lone_idx *x;
	long count = 0;

	if (!n)
		return 0;
	x = malloc(n * sizeof(*x));
	if (!x)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		x[i] = (struct lone_idx){.k = &keys[i], .v = &vals[i], .i = i};
	qsort(x, n, sizeof(*x), cmp_key_to);
	for (size_t a = 0, b; a < n; a = b) {
		bool covered = false;

		/* [a, b): one key to one sandbox; covered when it is reached
		 * from more than one service address (the port aside). */
		for (b = a + 1; b < n && !cmp_key_to(&x[a], &x[b]); b++)
			if (addr_cmp(&x[a].k->service, &x[b].k->service, false))
				covered = true;
		for (size_t j = a; j < b; j++) {
			lone[x[j].i] = !covered;
			count += !covered;
		}
	}
	free(x);
	return count;
}
