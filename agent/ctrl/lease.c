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
	struct k8s_resp r = {0};
	struct json_object *l = NULL, *spec, *body;
	const char *holder = NULL, *rv;
	uint64_t now = monotonic_ms();
	char path[512];
	int ret;

	lease_path(c, path, sizeof(path), true);
	ret = k8s_call(&c->cl, "GET", path, NULL, NULL, &r);
	if (!ret && r.status == 404) {
		body = json_object_new_object();
		json_object_object_add(body, "apiVersion",
				       json_object_new_string("coordination.k8s.io/v1"));
		json_object_object_add(body, "kind", json_object_new_string("Lease"));
		spec = json_object_new_object();
		json_object_object_add(body, "metadata", json_object_new_object());
		json_object_object_add(json_object_object_get(body, "metadata"), "name",
				       json_object_new_string(c->o.lease_name));
		json_object_object_add(json_object_object_get(body, "metadata"), "namespace",
				       json_object_new_string(c->o.lease_ns));
		fill_spec(c, spec, true, 0);
		json_object_object_add(body, "spec", spec);
		lease_path(c, path, sizeof(path), false);
		ret = k8s_call(&c->cl, "POST", path, NULL,
			       json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN), &r);
		json_object_put(body);
		if (!ret && r.status == 201) {
			c->renewed_ms = now;
			set_leader(c, true, NULL);
		}
		goto out;
	}
	if (ret || r.status != 200) {
		pr_warn("ctrl: lease %s/%s: %s", c->o.lease_ns, c->o.lease_name, r.msg);
		goto out;
	}
	l = json_tokener_parse(buf_head(&r.body));
	spec = k8s_jget(l, "spec");
	holder = json_object_get_string(k8s_jget(spec, "holderIdentity"));
	rv = json_object_get_string(k8s_jget(k8s_jget(l, "metadata"), "resourceVersion"));
	if (!l || !rv)
		goto out;
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
	lease_path(c, path, sizeof(path), true);
	ret = k8s_call(&c->cl, "PUT", path, NULL,
		       json_object_to_json_string_ext(l, JSON_C_TO_STRING_PLAIN), &r);
	if (!ret && r.status == 200) {
		c->renewed_ms = now;
		c->seen_rv[0] = '\0';
		set_leader(c, true, NULL);
	} else if (!ret && r.status == 409) {
		set_leader(c, false, "the lease changed hands");
	} else {
		pr_warn("ctrl: lease %s/%s: %s", c->o.lease_ns, c->o.lease_name, r.msg);
	}
out:
	/* Stop acting well before another instance may take over (counted
	 * from before the requests: they may have taken long). */
	c->next_lease_ms = monotonic_ms() + c->o.lease_ms / 3;
	if (c->leader && !ctrl_may_write(c))
		set_leader(c, false, "could not renew the lease in time");
	json_object_put(l);
	k8s_resp_free(&r);
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
	struct k8s_resp r = {0};
	struct json_object *l, *spec;
	char path[512];

	if (!c->leader)
		return;
	lease_path(c, path, sizeof(path), true);
	if (k8s_call(&c->cl, "GET", path, NULL, NULL, &r) || r.status != 200)
		goto out;
	l = json_tokener_parse(buf_head(&r.body));
	spec = k8s_jget(l, "spec");
	if (spec &&
	    !strcmp(json_object_get_string(k8s_jget(spec, "holderIdentity")) ?: "", c->o.id)) {
		/* An empty holder: the next candidate takes it at once. */
		json_object_object_add(spec, "holderIdentity", json_object_new_string(""));
		json_object_object_add(spec, "leaseDurationSeconds", json_object_new_int(1));
		if (!k8s_call(&c->cl, "PUT", path, NULL,
			      json_object_to_json_string_ext(l, JSON_C_TO_STRING_PLAIN), &r) &&
		    r.status == 200)
			pr_info("ctrl: released the lease");
	}
	json_object_put(l);
out:
	__atomic_store_n(&c->leader, false, __ATOMIC_RELAXED);
	k8s_resp_free(&r);
}
