// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "sock_addr.skel.h"
#include "sockops.skel.h"
#include "tc.skel.h"
#include "infer.skel.h"
#include "kernel/bpf.h"
#include "core/log.h"
#include "kernel/source.h"
#include "kernel/layout.h"

#define BPFFS_DEFAULT_MOUNT "/sys/fs/bpf"

/* The BPF objects a program can come from. */
enum shunt_obj {
	OBJ_SOCKOPS,
	OBJ_SOCK_ADDR,
};

enum attach_flags {
	/* The program a successor's takeover proof is checked against
	 * (shunt_bpf_is_successor_prog). */
	ATTACH_PROOF = 1U << 0,
};

/*
 * Every program shunt attaches, in attach order: sockops first, so that a
 * connection captured by connect4 finds the bookkeeping program already in
 * place, capture last. Detach walks it backwards. Each program's cgroup
 * link is pinned at <pin_dir>/link_<prog>: these names are what an agent
 * of another version finds and swaps its programs into, so they do not
 * change.
 */
static const struct attach_spec {
	const char *prog;
	enum shunt_obj obj;
	enum bpf_attach_type type;
	unsigned int flags; /* enum attach_flags */
} attach_table[SHUNT_NR_PROGS] = {
	{"shunt_sockops", OBJ_SOCKOPS, BPF_CGROUP_SOCK_OPS, 0},
	{"shunt_getpeername4", OBJ_SOCK_ADDR, BPF_CGROUP_INET4_GETPEERNAME, 0},
	{"shunt_getpeername6", OBJ_SOCK_ADDR, BPF_CGROUP_INET6_GETPEERNAME, 0},
	{"shunt_connect4", OBJ_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, ATTACH_PROOF},
	{"shunt_connect6", OBJ_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT, 0},
};

static struct bpf_object *obj_of(const struct shunt_bpf *b, enum shunt_obj obj)
{
	switch (obj) {
	case OBJ_SOCKOPS:
		return b->sockops ? b->sockops->obj : NULL;
	case OBJ_SOCK_ADDR:
		return b->sock_addr ? b->sock_addr->obj : NULL;
	}
	return NULL;
}

/* The loaded program of a table entry, or NULL before loading. */
static struct bpf_program *spec_prog(const struct shunt_bpf *b, const struct attach_spec *s)
{
	struct bpf_object *obj = obj_of(b, s->obj);

	return obj ? bpf_object__find_program_by_name(obj, s->prog) : NULL;
}

/* The index of the table entry with flag, or -1. */
static int spec_with(unsigned int flag)
{
	for (int i = 0; i < SHUNT_NR_PROGS; i++)
		if (attach_table[i].flags & flag)
			return i;
	return -1;
}

int libbpf_debug;

const char *const shunt_stat_names[SHUNT_STAT_MAX] = {
	[SHUNT_STAT_CONNECT] = "connect",
	[SHUNT_STAT_CAPTURED] = "captured",
	[SHUNT_STAT_FAIL_OPEN] = "fail_open",
	[SHUNT_STAT_OWN_SOCKET] = "own_socket",
	[SHUNT_STAT_ORIG_FULL] = "orig_full",
	[SHUNT_STAT_ESTABLISHED] = "established",
	[SHUNT_STAT_PEER_RESTORED] = "peer_restored",
	[SHUNT_STAT_OVERRIDDEN] = "overridden",
	[SHUNT_STAT_CONN_LIMIT] = "conn_limit",
	[SHUNT_STAT_POD_LIMIT] = "pod_limit",
	[SHUNT_STAT_INPOD] = "inpod",
	[SHUNT_STAT_TC] = "tc",
	[SHUNT_STAT_TC_FAIL_OPEN] = "tc_fail_open",
};

/* Set around libbpf calls whose failures are expected and handled (a
 * netlink query on an interface without a clsact qdisc): their warnings
 * go to debug. Per thread. */
static _Thread_local bool libbpf_quiet;

void shunt_bpf_quiet(bool on)
{
	libbpf_quiet = on;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char *msg;
	int n;

	if (libbpf_quiet && level == LIBBPF_WARN)
		level = LIBBPF_DEBUG;
	if (level == LIBBPF_DEBUG && !libbpf_debug)
		return 0;
	/* libbpf's warnings carry the verifier log: always worth showing,
	 * whole (it can be long), in the agent's own log format. */
	n = vasprintf(&msg, fmt, ap);
	if (n < 0)
		return n;
	log_fields(level == LIBBPF_WARN	  ? LOG_WARN
		   : level == LIBBPF_INFO ? LOG_INFO
					  : LOG_DEBUG,
		   msg, NULL, 0);
	free(msg);
	return n;
}

static int is_bpffs(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

static int mkdir_p(const char *path)
{
	char tmp[256];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

static int ensure_pin_dir(const char *pin_dir)
{
	int err;

	/* A fresh machine has no bpffs at /sys/fs/bpf: mount one, as a
	 * Kubernetes node's systemd would have. */
	if (!strncmp(pin_dir, BPFFS_DEFAULT_MOUNT, strlen(BPFFS_DEFAULT_MOUNT)) &&
	    !is_bpffs(BPFFS_DEFAULT_MOUNT)) {
		if (mount("bpf", BPFFS_DEFAULT_MOUNT, "bpf", 0, "mode=0700")) {
			err = -errno;
			pr_err("mount bpffs at %s: %s", BPFFS_DEFAULT_MOUNT, strerror(-err));
			return err;
		}
		pr_info("mounted a bpffs at %s", BPFFS_DEFAULT_MOUNT);
	}
	err = mkdir_p(pin_dir);
	if (err) {
		pr_err("create pin directory %s: %s", pin_dir, strerror(-err));
		return err;
	}
	if (!is_bpffs(pin_dir)) {
		pr_err("pin directory %s is not on a bpffs (mount -t bpf bpf <dir>)", pin_dir);
		return -EINVAL;
	}
	return 0;
}

/*
 * Attach prog to the cgroup through a link pinned at <pin_dir>/link_<prog>.
 * The pin keeps the program attached when the agent dies, so overrides
 * keep working and steered services fail open (the listener slot empties)
 * rather than losing capture. A link already pinned there by an earlier
 * agent, on the same cgroup, gets the new program swapped in atomically:
 * no connect() goes unhooked, and restarts never stack programs.
 */
static int attach(struct shunt_bpf *b, int idx)
{
	const struct attach_spec *spec = &attach_table[idx];
	struct bpf_program *prog = spec_prog(b, spec);
	enum bpf_attach_type type = spec->type;
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);
	struct bpf_link *link;
	char path[512];
	int err;

	if (!prog || bpf_program__expected_attach_type(prog) != type) {
		pr_err("BPF object has no program %s for attach type %s", spec->prog,
		       libbpf_bpf_attach_type_str(type));
		return -ENOENT;
	}
	snprintf(path, sizeof(path), "%s/link_%s", b->pin_dir, spec->prog);
	link = bpf_link__open(path);
	if (link) {
		if (!bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) &&
		    info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == b->cgroup_id &&
		    info.cgroup.attach_type == type && !bpf_link__update_program(link, prog)) {
			b->links[idx] = link;
			return 0;
		}
		/* Another cgroup (the agent's --cgroup changed) or a link the
		 * kernel already cut: detach it and start afresh. */
		pr_info("replacing pinned link %s (cgroup id %llu, ours %llu)", path,
			(unsigned long long)info.cgroup.cgroup_id,
			(unsigned long long)b->cgroup_id);
		bpf_link__detach(link);
		bpf_link__unpin(link);
		bpf_link__destroy(link);
		unlink(path); /* bpf_link__open() does not record the pin path */
	}
	link = bpf_program__attach_cgroup(prog, b->cgroup_fd);
	if (!link) {
		err = -errno;
		pr_err("attach %s to cgroup %s: %s", bpf_program__name(prog), b->cgroup,
		       strerror(-err));
		return err;
	}
	err = bpf_link__pin(link, path);
	if (err) {
		pr_err("pin link %s: %s", path, strerror(-err));
		bpf_link__destroy(link);
		return err;
	}
	b->links[idx] = link;
	return 0;
}

/* Open a skeleton with the maps sized as this agent sizes them. */
#define OPEN_SIZED(b, field, type, opts)                                                           \
	({                                                                                         \
		int __err = 0;                                                                     \
		(b)->field = type##__open_opts(opts);                                              \
		if (!(b)->field) {                                                                 \
			__err = -errno;                                                            \
			pr_err("open BPF object " #type ": %s", strerror(-__err));                 \
		} else if ((__err = bpf_map__set_max_entries((b)->field->maps.shunt_routes,        \
							     (b)->max_routes)) ||                  \
			   (__err = bpf_map__set_max_entries((b)->field->maps.shunt_services,      \
							     (b)->max_services))) {                \
			pr_err("size shunt_routes, shunt_services: %s", strerror(-__err));         \
		}                                                                                  \
		__err;                                                                             \
	})

#define LOAD(b, field, type)                                                                       \
	({                                                                                         \
		int __err = type##__load((b)->field);                                              \
		if (__err)                                                                         \
			pr_err("load BPF object " #type ": %s (the verifier log is above)",        \
			       strerror(-__err));                                                  \
		__err;                                                                             \
	})

/* The TC program (TC capture), loaded now and attached per pod. Without
 * it (bpf_sk_assign is Linux 5.7) the agent runs on, and says why pods
 * cannot use TC capture. */
static void load_tc(struct shunt_bpf *b, const struct bpf_object_open_opts *opts)
{
	int err = OPEN_SIZED(b, tc, shunt_tc, opts);

	if (!err) {
		b->tc->rodata->tc_mark = b->tc_mark;
		err = shunt_tc__load(b->tc);
	}
	if (!err)
		return;
	pr_warn("the TC program did not load (%s): pods cannot use TC capture",
		strerror(err < 0 ? -err : err));
	shunt_tc__destroy(b->tc);
	b->tc = NULL;
}

/* Inferred propagation's sk_lookup program, loaded now and attached per
 * pod. Its maps are its own (not pinned). Without it (sk_lookup's
 * ingress_ifindex is Linux 5.17) pods cannot have inference on. */
static void load_infer(struct shunt_bpf *b)
{
	b->infer = shunt_infer__open_and_load();
	if (!b->infer)
		pr_warn("the sk_lookup program did not load (%s): pods cannot use inferred "
			"propagation",
			strerror(errno));
}

/*
 * The first object creates and pins the maps; the others reuse them. Pins
 * of another layout (an agent of another version left them) are dealt
 * with before the first load, which libbpf would refuse.
 */
static int load_objects(struct shunt_bpf *b, const struct bpf_object_open_opts *opts,
			bool reset_maps)
{
	struct layout_plan *plan;
	int err;

	plan = calloc(1, sizeof(*plan));
	if (!plan)
		return -ENOMEM;
	err = OPEN_SIZED(b, sock_addr, shunt_sock_addr, opts);
	if (!err)
		err = layout_prepare(b->sock_addr->obj, b->pin_dir, reset_maps, plan);
	if (!err)
		err = LOAD(b, sock_addr, shunt_sock_addr);
	if (!err)
		err = layout_finish(b->sock_addr->obj, plan);
	layout_plan_free(plan);
	free(plan);
	if (!err)
		err = OPEN_SIZED(b, sockops, shunt_sockops, opts);
	if (!err) {
		b->sockops->rodata->record_src = b->record_src;
		b->sockops->rodata->netns_known = b->netns_known;
		err = LOAD(b, sockops, shunt_sockops);
	}
	if (!err)
		load_tc(b, opts);
	if (!err)
		load_infer(b);
	return err;
}

/* The size of a pinned map, if there is one: a map cannot be resized, and
 * the routes in it must not be lost. */
static uint32_t pinned_max_entries(const char *pin_dir, const char *name)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		info.max_entries = 0;
	close(fd);
	return info.max_entries;
}

/* Can sockops programs call bpf_get_netns_cookie (5.15 and later)? */
static bool sockops_has_netns_cookie(void)
{
	int r = libbpf_probe_bpf_helper(BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_get_netns_cookie, NULL);

	if (r < 0)
		pr_warn("probe bpf_get_netns_cookie in sockops: %s", strerror(-r));
	return r > 0;
}

/* The maps' sizes: shunt_routes keeps the size it was pinned with (a map
 * cannot be resized, and the routes in it must not be lost); shunt_services
 * follows it. */
static void size_from_pins(struct shunt_bpf *b, uint32_t max_routes)
{
	uint32_t pinned = pinned_max_entries(b->pin_dir, "shunt_routes");
	char path[512];

	b->max_routes = max_routes ? max_routes : SHUNT_MAX_ROUTES;
	if (pinned && pinned != b->max_routes) {
		pr_warn("%s/shunt_routes holds at most %u routes, not %u: keeping it (remove the "
			"pins, losing the routes, to resize it)",
			b->pin_dir, pinned, b->max_routes);
		b->max_routes = pinned;
	}
	/* Every route may name its own service, and every override its own
	 * destination. The services map is derived state: a pinned one of
	 * another size is dropped and rebuilt from the routes and overrides. */
	b->max_services = b->max_routes + SHUNT_MAX_OVERRIDES;
	pinned = pinned_max_entries(b->pin_dir, "shunt_services");
	if (pinned && pinned != b->max_services) {
		snprintf(path, sizeof(path), "%s/shunt_services", b->pin_dir);
		pr_info("%s: resizing to %u entries (rebuilt from the routes)", path,
			b->max_services);
		unlink(path);
	}
}

int shunt_bpf_open(struct shunt_bpf *b, const char *pin_dir, const char *cgroup,
		   uint32_t max_routes, bool want_src, bool reset_maps)
{
	struct bpf_object_open_opts opts = {.sz = sizeof(opts), .pin_root_path = pin_dir};
	uint32_t tc_mark = b->tc_mark; /* the one field set before */
	char msg[256];
	int err;

	memset(b, 0, sizeof(*b));
	b->tc_mark = tc_mark ? tc_mark : SHUNT_DEFAULT_TC_MARK;
	b->cgroup_fd = -1;
	snprintf(b->pin_dir, sizeof(b->pin_dir), "%s", pin_dir);
	snprintf(b->cgroup, sizeof(b->cgroup), "%s", cgroup);
	libbpf_set_print(libbpf_print);

	err = ensure_pin_dir(pin_dir);
	if (err)
		return err;
	size_from_pins(b, max_routes);
	b->cgroup_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->cgroup_fd < 0) {
		err = -errno;
		pr_err("open cgroup %s: %s", cgroup, strerror(-err));
		return err;
	}
	err = cgroup_id(cgroup, &b->cgroup_id, msg, sizeof(msg));
	if (err) {
		pr_err("cgroup %s: %s", cgroup, msg);
		return err;
	}

	b->netns_known = sockops_has_netns_cookie();
	if (want_src) {
		b->record_src = b->netns_known;
		if (!b->record_src)
			pr_warn("this kernel's sockops programs cannot tell a connection's network "
				"namespace (bpf_get_netns_cookie, Linux 5.15): the per-pod caps "
				"--max-conns-per-pod and --max-upstream-conns-per-pod are off");
	}

	err = load_objects(b, &opts, reset_maps);
	if (err)
		goto cleanup;

	b->services_fd = bpf_map__fd(b->sock_addr->maps.shunt_services);
	b->routes_fd = bpf_map__fd(b->sock_addr->maps.shunt_routes);
	b->overrides_fd = bpf_map__fd(b->sock_addr->maps.shunt_overrides);
	b->orig_fd = bpf_map__fd(b->sock_addr->maps.shunt_orig);
	b->conns_fd = bpf_map__fd(b->sock_addr->maps.shunt_conns);
	b->listeners_fd = bpf_map__fd(b->sock_addr->maps.shunt_listeners);
	b->config_fd = bpf_map__fd(b->sock_addr->maps.shunt_config);
	b->stats_fd = bpf_map__fd(b->sock_addr->maps.shunt_stats);
	b->conn_src_fd = bpf_map__fd(b->sock_addr->maps.shunt_conn_src);
	b->pod_limit_fd = bpf_map__fd(b->sock_addr->maps.shunt_pod_limit);
	b->inpod_fd = bpf_map__fd(b->sock_addr->maps.shunt_inpod);
	b->pod_socks_fd = bpf_map__fd(b->sock_addr->maps.shunt_pod_socks);
	b->pod_conns_fd = bpf_map__fd(b->sock_addr->maps.shunt_pod_conns);
	b->tc_socks_fd = bpf_map__fd(b->sock_addr->maps.shunt_tc_socks);
	b->tc_conns_fd = bpf_map__fd(b->sock_addr->maps.shunt_tc_conns);

	for (int i = 0; i < SHUNT_NR_PROGS && !err; i++)
		err = attach(b, i);
	if (err)
		goto cleanup;
	return 0;

cleanup:
	shunt_bpf_close(b, false);
	return err;
}

void shunt_bpf_close(struct shunt_bpf *b, bool detach)
{
	/* Capture goes first, bookkeeping last: the table backwards. */
	for (int i = SHUNT_NR_PROGS - 1; i >= 0; i--) {
		if (b->links[i] && detach) {
			bpf_link__unpin(b->links[i]);
			bpf_link__detach(b->links[i]);
		}
		bpf_link__destroy(b->links[i]);
		b->links[i] = NULL;
	}
	shunt_sock_addr__destroy(b->sock_addr);
	shunt_sockops__destroy(b->sockops);
	shunt_tc__destroy(b->tc);
	b->tc = NULL;
	shunt_infer__destroy(b->infer);
	b->infer = NULL;
	b->sock_addr = NULL;
	b->sockops = NULL;
	if (b->cgroup_fd >= 0)
		close(b->cgroup_fd);
	b->cgroup_fd = -1;
}

int shunt_bpf_set_config(struct shunt_bpf *b, const struct shunt_config *cfg)
{
	__u32 key = 0;

	return bpf_map_update_elem(b->config_fd, &key, cfg, BPF_ANY) ? -errno : 0;
}

int shunt_bpf_set_config_flags(struct shunt_bpf *b, uint32_t mask, uint32_t flags)
{
	struct shunt_config cfg;
	__u32 key = 0;

	if (bpf_map_lookup_elem(b->config_fd, &key, &cfg))
		return -errno;
	if ((cfg.flags & mask) == (flags & mask))
		return 0;
	cfg.flags = (cfg.flags & ~mask) | (flags & mask);
	return bpf_map_update_elem(b->config_fd, &key, &cfg, BPF_ANY) ? -errno : 0;
}

int shunt_bpf_set_listener(struct shunt_bpf *b, enum shunt_listener_slot slot, int fd)
{
	__u32 key = slot;
	__u64 val = (__u64)fd;

	if (fd < 0)
		return bpf_map_delete_elem(b->listeners_fd, &key) && errno != ENOENT ? -errno : 0;
	return bpf_map_update_elem(b->listeners_fd, &key, &val, BPF_ANY) ? -errno : 0;
}

int shunt_bpf_stats(struct shunt_bpf *b, uint64_t out[SHUNT_STAT_MAX])
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 vals[ncpu > 0 ? ncpu : 1];

	if (ncpu <= 0)
		return -EINVAL;
	for (__u32 i = 0; i < SHUNT_STAT_MAX; i++) {
		out[i] = 0;
		if (bpf_map_lookup_elem(b->stats_fd, &i, vals))
			return -errno;
		for (int c = 0; c < ncpu; c++)
			out[i] += vals[c];
	}
	return 0;
}

int shunt_bpf_progs(struct shunt_bpf *b, struct shunt_prog_info out[SHUNT_NR_PROGS])
{
	int n = 0;

	for (int i = 0; i < SHUNT_NR_PROGS; i++) {
		const struct bpf_program *prog = spec_prog(b, &attach_table[i]);
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (!b->links[i] || !prog)
			continue;
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			continue;
		out[n].name = attach_table[i].prog;
		out[n].attach = bpf_program__section_name(prog);
		out[n].id = info.id;
		n++;
	}
	return n;
}

int shunt_bpf_maps(struct shunt_bpf *b, struct shunt_map_info out[SHUNT_NR_MAPS])
{
	const struct bpf_map *maps[SHUNT_NR_MAPS] = {
		b->sock_addr->maps.shunt_services,  b->sock_addr->maps.shunt_routes,
		b->sock_addr->maps.shunt_overrides, b->sock_addr->maps.shunt_orig,
		b->sock_addr->maps.shunt_conns,	    b->sock_addr->maps.shunt_listeners,
		b->sock_addr->maps.shunt_config,    b->sock_addr->maps.shunt_stats,
		b->sock_addr->maps.shunt_conn_src,  b->sock_addr->maps.shunt_pod_limit,
		b->sock_addr->maps.shunt_inpod,	    b->sock_addr->maps.shunt_pod_socks,
		b->sock_addr->maps.shunt_pod_conns, b->sock_addr->maps.shunt_tc_socks,
		b->sock_addr->maps.shunt_tc_conns,
	};

	for (int i = 0; i < SHUNT_NR_MAPS; i++) {
		out[i].name = bpf_map__name(maps[i]);
		out[i].fd = bpf_map__fd(maps[i]);
		out[i].max_entries = bpf_map__max_entries(maps[i]);
		out[i].type = (uint32_t)bpf_map__type(maps[i]);
		out[i].key_size = bpf_map__key_size(maps[i]);
		out[i].value_size = bpf_map__value_size(maps[i]);
	}
	return SHUNT_NR_MAPS;
}

/* Entries of a sockmap: a slot holds a socket or is empty (ENOENT). */
static long sockmap_count(const struct shunt_map_info *m)
{
	long n = 0;
	__u64 cookie;

	if (m->value_size != sizeof(cookie))
		return -EINVAL;
	for (__u32 k = 0; k < m->max_entries; k++) {
		if (!bpf_map_lookup_elem(m->fd, &k, &cookie))
			n++;
		else if (errno != ENOENT)
			return -errno;
	}
	return n;
}

#define WALK_BATCH 1024U /* entries per system call */

int shunt_bpf_map_walk(const struct shunt_map_info *m, struct shunt_map_walk *w, uint32_t budget,
		       long *count)
{
	uint64_t in, out = 0;
	void *keys, *vals;
	uint32_t done = 0;
	int ret = 0;
	long n;

	switch (m->type) {
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_LRU_HASH:
		break;
	case BPF_MAP_TYPE_SOCKMAP:
		n = sockmap_count(m);
		if (n < 0)
			return (int)n;
		*count = n;
		return 1;
	default:
		/* Arrays (and anything else, as a bound) are full by nature. */
		*count = m->max_entries;
		return 1;
	}
	keys = malloc((size_t)WALK_BATCH * m->key_size);
	vals = malloc((size_t)WALK_BATCH * m->value_size);
	if (!keys || !vals) {
		ret = -ENOMEM;
		goto out;
	}
	while (done < budget) {
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		__u32 cnt = WALK_BATCH;
		int err;

		in = w->cursor;
		err = bpf_map_lookup_batch(m->fd, w->started ? &in : NULL, &out, keys, vals, &cnt,
					   &opts);
		err = err ? -errno : 0;
		w->seen += cnt;
		done += cnt;
		if (err == -ENOENT) { /* the end of the map */
			*count = w->seen;
			ret = 1;
			break;
		}
		if (err) {
			ret = err;
			break;
		}
		w->cursor = out;
		w->started = 1;
	}
out:
	if (ret)
		memset(w, 0, sizeof(*w));
	free(keys);
	free(vals);
	return ret;
}

int shunt_bpf_listener_present(struct shunt_bpf *b, enum shunt_listener_slot slot)
{
	__u32 key = slot;
	__u64 cookie;

	if (!bpf_map_lookup_elem(b->listeners_fd, &key, &cookie))
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

int shunt_bpf_connect4_fd(struct shunt_bpf *b)
{
	int i = spec_with(ATTACH_PROOF);
	const struct bpf_program *prog = i < 0 ? NULL : spec_prog(b, &attach_table[i]);

	return prog ? bpf_program__fd(prog) : -EINVAL;
}

int shunt_bpf_is_successor_prog(struct shunt_bpf *b, int prog_fd, uint32_t *id)
{
	struct bpf_prog_info given = {}, own = {};
	struct bpf_link_info link = {};
	__u32 len;
	char path[64], target[64];
	ssize_t n;
	int proof;

	*id = 0;
	/* The info call fills whatever kind of object fd is: make sure it
	 * is a program, not a link or a map whose id could collide. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", prog_fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	if (strcmp(target, "anon_inode:bpf-prog"))
		return 0;
	len = sizeof(given);
	if (bpf_obj_get_info_by_fd(prog_fd, &given, &len))
		return -errno;
	*id = given.id;
	proof = spec_with(ATTACH_PROOF);
	if (proof < 0 || !b->links[proof] || given.type != BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
		return 0;
	len = sizeof(link);
	if (bpf_obj_get_info_by_fd(bpf_link__fd(b->links[proof]), &link, &len))
		return -errno;
	len = sizeof(own);
	if (bpf_obj_get_info_by_fd(shunt_bpf_connect4_fd(b), &own, &len))
		return -errno;
	return link.prog_id == given.id && given.id != own.id;
}

int shunt_bpf_tc_prog_fd(struct shunt_bpf *b)
{
	return b->tc ? bpf_program__fd(b->tc->progs.shunt_tc_ingress) : -1;
}

int shunt_bpf_infer(struct shunt_bpf *b, struct shunt_infer_kern *out)
{
	if (!b->infer)
		return -EOPNOTSUPP;
	out->prog_fd = bpf_program__fd(b->infer->progs.shunt_infer_lookup);
	out->ports_fd = bpf_map__fd(b->infer->maps.shunt_infer_ports);
	out->socks_fd = bpf_map__fd(b->infer->maps.shunt_infer_socks);
	out->heartbeat_ns = &b->infer->bss->heartbeat_ns;
	out->stats = b->infer->bss->stats;
	return 0;
}
