// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Leader election on a coordination.k8s.io Lease, the way Kubernetes'
 * own controllers do it: the leader renews spec.renewTime every third of
 * the lease; a candidate takes the Lease over when its record has not
 * changed for a whole lease duration *as measured by the candidate's own
 * clock* (clocks of two machines are not compared), with an update made
 * conditional on the resourceVersion it read, so of two candidates one
 * wins. A leader that could not renew for two thirds of the lease stops
 * acting before anyone may take over.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <json-c/json.h>

#include "ctrl/ctrl.h"
#include "k8s/obj.h"
#include "core/log.h"
#include "core/loop.h"

static char *micro_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char s[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%.19s.%06dZ", s, (int)(ts.tv_nsec / 1000));
	return buf;
}

static void lease_path(const struct ctrl *c, char *out, size_t len, bool item)
{
	snprintf(out, len, "/apis/coordination.k8s.io/v1/namespaces/%s/leases%s%s", c->o.lease_ns,
		 item ? "/" : "", item ? c->o.lease_name : "");
}

/* Our record in spec (holder, times, transitions). */
static void fill_spec(const struct ctrl *c, struct json_object *spec, bool acquire,
		      int64_t transitions)
{
	char t[48];

	json_object_object_add(spec, "holderIdentity", json_object_new_string(c->o.id));
	json_object_object_add(spec, "leaseDurationSeconds",
			       json_object_new_int((int)((c->o.lease_ms + 999) / 1000)));
	json_object_object_add(spec, "renewTime", json_object_new_string(micro_time(t, sizeof(t))));
	if (acquire) {
		json_object_object_add(spec, "acquireTime", json_object_new_string(t));
		json_object_object_add(spec, "leaseTransitions",
				       json_object_new_int64(transitions));
	}
}

static void set_leader(struct ctrl *c, bool on, const char *why)
{
	if (on == c->leader)
		return;
	__atomic_store_n(&c->leader, on, __ATOMIC_RELAXED);
	if (on) {
		c->leader_since = monotonic_ms();
		pr_info("ctrl: leading as %s (lease %s/%s)", c->o.id, c->o.lease_ns,
			c->o.lease_name);
		ctrl_mark(c, NULL);
	} else {
		pr_warn("ctrl: no longer leading: %s", why);
	}
}

void ctrl_lease_tick(struct ctrl *c)
{
	struct json_object *l, *spec, *body, *md, *put;
	const char *holder, *rv;
	uint64_t now = monotonic_ms();
	char path[512], msg[256];
	long st;

	lease_path(c, path, sizeof(path), true);
	l = k8s_call_json(&c->cl, "GET", path, NULL, NULL, &st, msg, sizeof(msg));
	if (st == 404) {
		body = json_object_new_object();
		md = json_object_new_object();
		spec = json_object_new_object();
		json_object_object_add(body, "apiVersion",
				       json_object_new_string("coordination.k8s.io/v1"));
		json_object_object_add(body, "kind", json_object_new_string("Lease"));
		json_object_object_add(md, "name", json_object_new_string(c->o.lease_name));
		json_object_object_add(md, "namespace", json_object_new_string(c->o.lease_ns));
		json_object_object_add(body, "metadata", md);
		fill_spec(c, spec, true, 0);
		json_object_object_add(body, "spec", spec);
		lease_path(c, path, sizeof(path), false);
		put = k8s_call_json(&c->cl, "POST", path, NULL, body, &st, msg, sizeof(msg));
		json_object_put(put);
		json_object_put(body);
		if (st == 201) {
			c->renewed_ms = now;
			set_leader(c, true, NULL);
		}
		goto out;
	}
	spec = k8s_jobj(l, "spec");
	holder = k8s_jstr(spec, "holderIdentity");
	rv = k8s_jstr(k8s_jobj(l, "metadata"), "resourceVersion");
	if (!rv) {
		pr_warn("ctrl: lease %s/%s: %s", c->o.lease_ns, c->o.lease_name,
			msg[0] ? msg : "no resourceVersion");
		goto out;
	}
	if (strcmp(rv, c->seen_rv)) {
		snprintf(c->seen_rv, sizeof(c->seen_rv), "%s", rv);
		c->seen_ms = now;
	}
	if (holder && !strcmp(holder, c->o.id)) {
		fill_spec(c, spec, false, 0);
	} else if (!holder || !*holder || now - c->seen_ms >= c->o.lease_ms) {
		int64_t tr = json_object_get_int64(k8s_jget(spec, "leaseTransitions"));
		char was[256];

		/* fill_spec() replaces (frees) the holder's string. */
		snprintf(was, sizeof(was), "%s", holder && *holder ? holder : "nobody");
		if (!spec) {
			spec = json_object_new_object();
			json_object_object_add(l, "spec", spec);
		}
		fill_spec(c, spec, true, tr + 1);
		pr_info("ctrl: taking the lease over from %s", was);
	} else {
		set_leader(c, false, "another instance holds the lease");
		goto out;
	}
	put = k8s_call_json(&c->cl, "PUT", path, NULL, l, &st, msg, sizeof(msg));
	json_object_put(put);
	if (st == 200) {
		c->renewed_ms = now;
		c->seen_rv[0] = '\0';
		set_leader(c, true, NULL);
	} else if (st == 409) {
		set_leader(c, false, "the lease changed hands");
	} else {
		pr_warn("ctrl: lease %s/%s: %s", c->o.lease_ns, c->o.lease_name, msg);
	}
out:
	/* Stop acting well before another instance may take over (counted
	 * from before the requests: they may have taken long). */
	c->next_lease_ms = monotonic_ms() + c->o.lease_ms / 3;
	if (c->leader && !ctrl_may_write(c))
		set_leader(c, false, "could not renew the lease in time");
	json_object_put(l);
}

bool ctrl_may_write(const struct ctrl *c)
{
	return c->leader && monotonic_ms() - c->renewed_ms < (uint64_t)c->o.lease_ms * 2 / 3;
}

void ctrl_lease_maybe_tick(struct ctrl *c)
{
	if (monotonic_ms() >= c->next_lease_ms)
		ctrl_lease_tick(c);
}

void ctrl_lease_release(struct ctrl *c)
{
	struct json_object *l, *spec, *put;
	char path[512], msg[256];
	long st;

	if (!c->leader)
		return;
	lease_path(c, path, sizeof(path), true);
	l = k8s_call_json(&c->cl, "GET", path, NULL, NULL, &st, msg, sizeof(msg));
	spec = k8s_jobj(l, "spec");
	if (spec && !strcmp(k8s_jstr(spec, "holderIdentity") ?: "", c->o.id)) {
		/* An empty holder: the next candidate takes it at once. */
		json_object_object_add(spec, "holderIdentity", json_object_new_string(""));
		json_object_object_add(spec, "leaseDurationSeconds", json_object_new_int(1));
		put = k8s_call_json(&c->cl, "PUT", path, NULL, l, &st, msg, sizeof(msg));
		json_object_put(put);
		if (st == 200)
			pr_info("ctrl: released the lease");
	}
	json_object_put(l);
	__atomic_store_n(&c->leader, false, __ATOMIC_RELAXED);
}
