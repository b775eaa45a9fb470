#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""A fake Kubernetes API server for what shuntd reads (docs/k8s-contract.md)
and what a controller writes (the Sandbox controller, issue 12).

Serves the resources of RESOURCES (Services, Pods, EndpointSlices,
ConfigMaps, Secrets, Events, Deployments, StatefulSets, ReplicaSets, Jobs,
Leases, and every CRD of deploy/crd-*.yaml: SandboxRoutes,
SandboxOverrides, Sandboxes; all namespaced), cluster-wide and per
namespace, the way the real API server does. Reads:

  GET <path>?limit=N&continue=T        {"kind": "ServiceList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": "42",
                                        "continue": "...", "remainingItemCount": N},
                                        "items": [...]}   (items without kind/apiVersion)
  GET <path>?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N
                                       200, chunked, one {"type", "object"} per line:
                                       ADDED / MODIFIED / DELETED / BOOKMARK / ERROR
  GET <path>/NAME (namespaced path)    one object (with kind/apiVersion)

Writes (namespaced paths; bodies JSON; failures are a metav1.Status with
code, reason, message and details {name, group, kind, causes}):

  POST   <collection>[?dryRun=All]  create: 201 and the object. uid,
         creationTimestamp, resourceVersion, generation 1 are filled in;
         metadata.generateName makes the name (prefix + 5 characters of
         the real server's alphabet, bcdfghjklmnpqrstvwxz2456789); a
         status is dropped for kinds with a status subresource (a Pod gets
         {"phase": "Pending"}). 409 AlreadyExists; 400 BadRequest for bad
         JSON, a namespace/kind/apiVersion that is not the path's or a
         resourceVersion set; 422 Invalid when the object fails its schema.
  PUT    <object>[/status]          update. metadata.resourceVersion set and
         not the current one: 409 Conflict (empty: unconditional); uid set
         and not the stored one: 409. System fields (uid, creationTimestamp,
         deletionTimestamp, generation) are kept; generation + 1 when
         anything but metadata and status changed. For kinds with a status
         subresource the main resource ignores status and /status changes
         only status. An update that changes nothing is a no-op (same RV,
         no event), as in the real server. A missing object is a 404 (no
         create on update).
  PATCH  <object>[/status]          Content-Type application/merge-patch+json
         (RFC 7386), application/json-patch+json (RFC 6902: add, remove,
         replace, move, copy, test), application/strategic-merge-patch+json
         (handled as a merge patch: every list is replaced, no patchMergeKey
         merging, $-directives are a 400), application/apply-patch+yaml
         (server-side apply): 415. A resourceVersion in the patch is a
         precondition (409 when stale). Then as PUT.
  DELETE <object>                   body DeleteOptions (optional):
         propagationPolicy Background (default) | Foreground | Orphan,
         preconditions {uid, resourceVersion} (409 when not met). With
         finalizers the object stays with deletionTimestamp and
         deletionGracePeriodSeconds 0 (MODIFIED; 202); removing its last
         finalizer by PUT/PATCH deletes it (DELETED). Without: deleted
         (DELETED; 200 and the last state). No new finalizer may be added to
         an object being deleted (422). Foreground adds the
         foregroundDeletion finalizer: dependents go first (Foreground
         themselves), then the owner; Orphan adds the orphan finalizer: its
         uid leaves the dependents' ownerReferences, then it goes. Graceful
         Pod deletion is not modelled (grace 0). No DELETE of collections.

The garbage collector (kube-controller-manager's, simplified) runs
synchronously after every write: an object none of whose
metadata.ownerReferences names a stored object (by uid) is deleted in the
background (respecting its own finalizers, so transitively); references to
owners that are gone are dropped from objects that keep another owner;
dependents of an owner deleted in the foreground are deleted in the
foreground, and any dependent still present (also one held by its own
finalizers) keeps the owner waiting. api.set_gc(False) holds it (the
"GC has not run yet" window); api.run_gc() runs it once to a fixpoint.

Every object accepted (create, update, patch, apply()) is checked: built-in
kinds against the strict vendored JSON schemas of
tests/deploy/schemas/k8s.json (unknown fields are errors; integers and
numbers are not told apart), custom kinds against their CRD's
openAPIV3Schema with the defaults applied, unknown fields refused (as with
kubectl's Strict field validation, not pruned), x-kubernetes-list-type
set/map uniqueness enforced and metadata checked as an ObjectMeta. CEL
rules (x-kubernetes-validations) are NOT run (tests/deploy/validate.py
has Python equivalents for the CRDs' rules), nor is what an
x-kubernetes-embedded-resource holds checked, nor are built-in defaults
(Deployment replicas, strategy, ...) filled in or built-in validation
beyond the schema apart from metadata.name (a DNS subdomain). A refusal
is a 422 Invalid whose causes name the field (spec.forks[0].replicas).

RBAC, optional: FakeAPI(rbac={token: rules}) with ClusterRole-style rules
[{"apiGroups", "resources" (also "sandboxes/status", "sandboxes/finalizers"),
"verbs", "resourceNames"?, "namespace"?}] (rbac_rules_from_manifest(path)
reads a manifest's ClusterRoles and Roles; a Role's rules keep its
namespace and grant only there). A token of that map may do only what
its rules allow: anything else is a 403 Forbidden Status; setting an
ownerReference with blockOwnerDeletion needs "update" on the owner's
<resource>/finalizers (the OwnerReferencesPermissionEnforcement admission
plugin). The token of token= keeps every permission. Each request record
(api.requests()) carries its verb: get, list, watch, create, update,
patch, delete, and subresource and name.

One resourceVersion counter for everything (like etcd's revision). Watches
replay the events after RV from a bounded history; an RV older than the
history gets an ERROR event carrying a Status with code 410 ("too old
resource version"), or an HTTP 410 when the test asks for that. An empty RV
or "0" starts with a synthetic ADDED for every object. Bookmarks every
bookmark_interval seconds when allowed; timeoutSeconds ends the stream
cleanly. A wrong or missing "Authorization: Bearer" is a 401 Status. A
continue token names a snapshot of the list (consistent pages); a token
whose snapshot is gone is a 410 Expired, as for a compacted revision.

In-process use (the e2e tests and tests/k8s/scale.py):

    api = FakeAPI(token="t0", tls=make_certs(dir, ["127.0.0.1"]), netns="/run/netns/x-node")
    api.start()                 # listens; api.url is https://127.0.0.1:PORT
    api.apply(service("shop", "orders", "10.96.0.10", [("http", 80, 8080)]))
    api.apply(obj, validate=False)   # an object the real server would refuse
    api.delete("services", "shop", "orders")
    api.drop_watches(); api.force_gone(mode="event"|"http"); api.compact()
    api.stop(); api.start()     # same port
    api.set_token("t1"); api.set_latency(0.2)
    api.requests(...)           # what clients asked, with the verb and status answered
    api.close()

The same writes in-process, with the same checks and watch events
(errors raise APIError with code, reason, message, status):

    api.create(obj) -> stored copy          api.update(obj) -> copy
    api.update_status(obj) -> copy          api.get(resource, ns, name) -> copy or None
    api.patch(resource, ns, name, patch, patch_type="merge"|"json"|"strategic",
              subresource=None|"status") -> copy
    api.delete(resource, ns, name, propagation=None|"Background"|"Foreground"|"Orphan",
               preconditions=None) -> the RV of the deletion (or of the
               deletionTimestamp) when there was such an object, else None
    api.list(resource, ns=None, selector=None) -> [copies]  (selector: "a=b,c in (x)",
               {"app": "x"} matchLabels, or a LabelSelector {"matchLabels", "matchExpressions"})
    api.wait_for_change(after_rv, timeout) -> current rv (as soon as it is > after_rv)
    api.set_gc(False); api.run_gc()         api.set_rbac(token, rules or None)

Object helpers with the real field layout: service(), endpointslice(),
pod(), sandboxroute(), sandboxoverride(), deployment(), configmap(),
owner_ref(stored_owner); validate(obj) lists what the server would refuse.

Created in netns=PATH, the listening socket lives in that network namespace
(the creating thread enters it for the socket() call only), so a shuntd
started there reaches it on 127.0.0.1 while the tests keep a Python handle.

Standalone, with a small control endpoint (plain HTTP, JSON bodies):

    fakeapi.py --listen 127.0.0.1:6443 [--tls-dir DIR] [--token T]
               [--control 127.0.0.1:6444] [--load objects.json]
    curl -s -XPOST 127.0.0.1:6444/apply -d @service.json
    curl -s -XPOST 127.0.0.1:6444/delete -d '{"resource":"services","namespace":"shop","name":"orders"}'
    curl -s -XPOST 127.0.0.1:6444/gc -d '{"enabled":false}'   (or {} to run it once)
    curl -s -XPOST 127.0.0.1:6444/drop-watches | /force-gone -d '{"mode":"http"}' | /compact
           | /stop | /start | /token -d '{"token":"t1"}' | /latency -d '{"seconds":0.2}'
    curl -s 127.0.0.1:6444/state       (resourceVersion, counts, watches, requests)

Python 3 standard library, python3-jsonschema and python3-yaml
(scripts/deps.sh); certificates come from the openssl CLI.
"""

import argparse
import base64
import bisect
import copy
import ctypes
import datetime
import glob
import http.server
import json
import os
import random
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

try:
    import jsonschema
    import yaml
except ImportError as _e:  # scripts/deps.sh installs python3-jsonschema python3-yaml
    raise ImportError("fakeapi.py needs python3-jsonschema and python3-yaml (scripts/deps.sh): %s" % _e)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
K8S_SCHEMAS = os.path.join(ROOT, "tests", "deploy", "schemas", "k8s.json")
CRD_GLOB = os.path.join(ROOT, "deploy", "crd-*.yaml")

# resource -> (group path, apiVersion, kind); the CRDs of deploy/ are added
# by load_crds() at import.
RESOURCES = {
    "sandboxroutes": ("/apis/shunt.dev/v1alpha1", "shunt.dev/v1alpha1", "SandboxRoute"),
    "services": ("/api/v1", "v1", "Service"),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "discovery.k8s.io/v1", "EndpointSlice"),
    "pods": ("/api/v1", "v1", "Pod"),
    "sandboxoverrides": ("/apis/shunt.dev/v1alpha1", "shunt.dev/v1alpha1", "SandboxOverride"),
    "configmaps": ("/api/v1", "v1", "ConfigMap"),
    "secrets": ("/api/v1", "v1", "Secret"),
    "events": ("/api/v1", "v1", "Event"),
    "deployments": ("/apis/apps/v1", "apps/v1", "Deployment"),
    "statefulsets": ("/apis/apps/v1", "apps/v1", "StatefulSet"),
    "replicasets": ("/apis/apps/v1", "apps/v1", "ReplicaSet"),
    "jobs": ("/apis/batch/v1", "batch/v1", "Job"),
    "leases": ("/apis/coordination.k8s.io/v1", "coordination.k8s.io/v1", "Lease"),
}
KIND_TO_RESOURCE = {v[2]: k for k, v in RESOURCES.items()}
# Resources with a status subresource (the CRDs' come from subresources.status).
STATUS_SUBRESOURCE = {"services", "pods", "deployments", "statefulsets", "replicasets", "jobs"}
CRD_SCHEMAS = {}  # resource -> the CRD's openAPIV3Schema (served version)

_PATH_RE = re.compile(r"^(?P<group>/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
                      r"/(?P<res>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?/?$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in_netns(netns, family):
    """A TCP socket of the network namespace at path netns: this thread
    enters it for the socket() call only (the socket belongs to that
    namespace for good), then returns to its own."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns(%s)" % netns)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to our own netns")
    finally:
        os.close(own)
        os.close(target)


def now_rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code, reason, message):
    """A metav1.Status, as the API server sends for failures."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def group_of(res):
    """The API group of a resource ("" for the core group)."""
    api_version = RESOURCES[res][1]
    return api_version.rpartition("/")[0]


def qualified(res):
    """deployments.apps, sandboxes.shunt.dev, pods: as the real server names them."""
    g = group_of(res)
    return res + "." + g if g else res


class APIError(Exception):
    """A failure the API server would answer with a metav1.Status."""

    def __init__(self, code, reason, message, res=None, name=None, causes=None):
        super().__init__("%d %s: %s" % (code, reason, message))
        self.code, self.reason, self.message = code, reason, message
        self.details = {}
        if name is not None:
            self.details["name"] = name
        if res is not None:
            self.details["group"] = group_of(res) if res in RESOURCES else ""
            self.details["kind"] = res
        if causes:
            self.details["causes"] = causes

    @property
    def status(self):
        st = status(self.code, self.reason, self.message)
        if self.details:
            st["details"] = self.details
        return st


def _not_found(res, name):
    return APIError(404, "NotFound", '%s "%s" not found' % (qualified(res), name), res, name)


def _invalid(res, kind, name, causes):
    msg = "%s \"%s\" is invalid: %s" % (kind, name, ", ".join(
        "%s: %s" % (c["field"], c["message"]) if c.get("field") else c["message"] for c in causes))
    return APIError(422, "Invalid", msg, res, name, causes)


# ---- CRDs and schemas ------------------------------------------------------------
def register_crd(crd):
    """Serve a CustomResourceDefinition (a dict): its storage version, its
    openAPIV3Schema, its status subresource. Returns the resource (plural)."""
    spec = crd["spec"]
    if spec.get("scope", "Namespaced") != "Namespaced":
        raise ValueError("fakeapi serves namespaced resources only: %s" % crd["metadata"]["name"])
    ver = next(v for v in spec["versions"] if v.get("storage"))
    res = spec["names"]["plural"]
    gv = "%s/%s" % (spec["group"], ver["name"])
    RESOURCES[res] = ("/apis/" + gv, gv, spec["names"]["kind"])
    KIND_TO_RESOURCE[spec["names"]["kind"]] = res
    CRD_SCHEMAS[res] = (ver.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"}
    if "status" in (ver.get("subresources") or {}):
        STATUS_SUBRESOURCE.add(res)
    else:
        STATUS_SUBRESOURCE.discard(res)
    _VALIDATORS.pop(res, None)
    return res


def load_crds(pattern=CRD_GLOB):
    """register_crd() every CustomResourceDefinition in the files matching pattern."""
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            for d in yaml.safe_load_all(f):
                if d and d.get("kind") == "CustomResourceDefinition":
                    out.append(register_crd(d))
    return out


# jsonschema uses Python's re.search, where '$' also matches before a final
# newline; in Go's RE2 (the API server) it does not.
def _go_pattern(validator, patrn, instance, schema):
    if validator.is_type(instance, "string"):
        p = patrn[:-1] + r"\Z" if patrn.endswith("$") and not patrn.endswith("\\$") else patrn
        if not re.search(p, instance):
            yield jsonschema.ValidationError("%r does not match %r" % (instance, patrn))


_Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _go_pattern})
_VALIDATORS = {}  # resource -> validator
_K8S = {}


def _k8s_schemas():
    if not _K8S:
        with open(K8S_SCHEMAS) as f:
            _K8S.update(json.load(f))
    return _K8S


def _structural(node):
    """A CRD schema as the API server applies it to a write: unknown fields
    refused, x-kubernetes-* dropped (CEL is not run), list-type set unique."""
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k.startswith("x-kubernetes-") or k in ("default", "description"):
            continue
        if k in ("properties", "patternProperties"):
            out[k] = {pk: _structural(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
            out[k] = _structural(v)
        elif k in ("anyOf", "oneOf", "allOf"):
            out[k] = [_structural(x) for x in v]
        else:
            out[k] = v
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if "properties" in node and "additionalProperties" not in node and \
            not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _validator(res):
    v = _VALIDATORS.get(res)
    if v is None:
        k8s = _k8s_schemas()
        if res in CRD_SCHEMAS:
            sch = _structural(CRD_SCHEMAS[res])
            sch.setdefault("properties", {})["metadata"] = {
                "$ref": "#/definitions/IIoK8sApimachineryPkgApisMetaV1ObjectMeta"}
            sch["definitions"] = k8s["definitions"]
        else:
            key = "%s/%s" % (RESOURCES[res][1], RESOURCES[res][2])
            if key not in k8s["kinds"]:
                raise RuntimeError("no schema for %s in %s (add it to KINDS in tests/deploy/gen_k8s_schemas.py)"
                                   % (key, K8S_SCHEMAS))
            sch = {"$ref": k8s["kinds"][key], "definitions": k8s["definitions"]}
        v = _VALIDATORS[res] = _Validator(sch, format_checker=jsonschema.FormatChecker())
    return v


def _field(path):
    out = ""
    for p in path:
        out += "[%d]" % p if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def _apply_defaults(schema, obj):
    """Fill in the CRD schema's defaults (what the real server does on write)."""
    if not isinstance(schema, dict):
        return
    if isinstance(obj, dict):
        for k, sub in (schema.get("properties") or {}).items():
            if k not in obj and "default" in sub:
                obj[k] = copy.deepcopy(sub["default"])
            if k in obj:
                _apply_defaults(sub, obj[k])
        if isinstance(schema.get("additionalProperties"), dict):
            for k, v in obj.items():
                if k not in (schema.get("properties") or {}):
                    _apply_defaults(schema["additionalProperties"], v)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for v in obj:
            _apply_defaults(schema["items"], v)


def _list_map_errors(schema, obj, path=()):
    """x-kubernetes-list-type: map keys must be unique."""
    out = []
    if not isinstance(schema, dict):
        return out
    if isinstance(obj, list):
        if schema.get("x-kubernetes-list-type") == "map":
            seen = set()
            keys = schema.get("x-kubernetes-list-map-keys") or []
            for i, it in enumerate(obj):
                if isinstance(it, dict):
                    k = tuple(json.dumps(it.get(x), sort_keys=True) for x in keys)
                    if k in seen:
                        out.append({"reason": "FieldValueDuplicate", "field": _field(path + (i,)),
                                    "message": "Duplicate value: %s" % json.dumps({x: it.get(x) for x in keys})})
                    seen.add(k)
        if isinstance(schema.get("items"), dict):
            for i, it in enumerate(obj):
                out += _list_map_errors(schema["items"], it, path + (i,))
    elif isinstance(obj, dict):
        props = schema.get("properties") or {}
        for k, v in obj.items():
            if k in props:
                out += _list_map_errors(props[k], v, path + (k,))
            elif isinstance(schema.get("additionalProperties"), dict):
                out += _list_map_errors(schema["additionalProperties"], v, path + (k,))
    return out


def _error_causes(e):
    """jsonschema error -> [metav1.StatusCause] naming the field."""
    path = tuple(e.absolute_path)
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        known = set((e.schema.get("properties") or {}))
        extra = [k for k in e.instance if k not in known and not any(
            re.search(p, k) for p in (e.schema.get("patternProperties") or {}))]
        return [{"reason": "FieldValueInvalid", "field": _field(path + (k,)),
                 "message": 'unknown field "%s"' % _field(path + (k,))} for k in extra]
    if e.validator == "required":
        m = re.match(r"'([^']+)' is a required property", e.message)
        f = _field(path + ((m.group(1),) if m else ()))
        return [{"reason": "FieldValueRequired", "field": f, "message": "Required value"}]
    if e.validator in ("anyOf", "oneOf") and e.context:
        # the alternative that got furthest says the most
        best = max(e.context, key=lambda c: len(c.absolute_path))
        if len(best.absolute_path) > len(path):
            return _error_causes(best)
    reason = {"type": "FieldValueTypeInvalid", "enum": "FieldValueNotSupported",
              "maxLength": "FieldValueTooLong", "maxItems": "FieldValueTooMany"}.get(e.validator,
                                                                                    "FieldValueInvalid")
    return [{"reason": reason, "field": _field(path) or "<root>",
             "message": "Invalid value: %s: %s" % (json.dumps(e.instance)[:100], e.message)}]


def validate(obj, res=None):
    """[metav1.StatusCause] for what the API server would refuse in obj
    (empty: accepted). CEL rules are not run."""
    res = res or KIND_TO_RESOURCE[obj["kind"]]
    causes = []
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = md.get("name")
    if not name:
        causes.append({"reason": "FieldValueRequired", "field": "metadata.name",
                       "message": "Required value: name or generateName is required"})
    elif not isinstance(name, str) or len(name) > 253 or not _NAME_RE.match(name):
        causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                       "message": "Invalid value: %s: a lowercase RFC 1123 subdomain must consist of lower case "
                       "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                       "character" % json.dumps(name)})
    for e in _validator(res).iter_errors(obj):
        causes += _error_causes(e)
    if res in CRD_SCHEMAS:
        causes += _list_map_errors(CRD_SCHEMAS[res], obj)
    seen, out = set(), []
    for c in causes:
        k = (c["field"], c["message"])
        if k not in seen:
            seen.add(k)
            out.append(c)
    return sorted(out, key=lambda c: c["field"])


# ---- patches ----------------------------------------------------------------------
def merge_patch(target, patch):
    """RFC 7386 JSON merge patch; returns a new document."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError("JSON pointer %r does not start with /" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts, path):
    for p in parts:
        if isinstance(doc, dict):
            if p not in doc:
                raise ValueError("path %s not found" % path)
            doc = doc[p]
        elif isinstance(doc, list):
            if not p.isdigit() or int(p) >= len(doc):
                raise ValueError("path %s: index %s out of range" % (path, p))
            doc = doc[int(p)]
        else:
            raise ValueError("path %s not found" % path)
    return doc


def json_patch(doc, ops):
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test); returns
    a new document; ValueError says what failed."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise ValueError("a JSON patch is a list of operations")

    def add(doc, path, value):
        parts = _pointer(path)
        if not parts:
            return value
        parent = _walk(doc, parts[:-1], path)
        last = parts[-1]
        if isinstance(parent, dict):
            parent[last] = value
        elif isinstance(parent, list):
            if last == "-":
                parent.append(value)
            elif last.isdigit() and int(last) <= len(parent):
                parent.insert(int(last), value)
            else:
                raise ValueError("path %s: index out of range" % path)
        else:
            raise ValueError("path %s not found" % path)
        return doc

    def remove(doc, path):
        parts = _pointer(path)
        if not parts:
            raise ValueError("cannot remove the whole document")
        parent = _walk(doc, parts[:-1], path)
        last = parts[-1]
        if isinstance(parent, dict) and last in parent:
            return parent.pop(last)
        if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            return parent.pop(int(last))
        raise ValueError("path %s not found" % path)

    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError("bad operation %r" % (op,))
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ValueError("operation %s %s has no value" % (kind, path))
        if kind == "add":
            doc = add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            remove(doc, path)
        elif kind == "replace":
            _walk(doc, _pointer(path), path)
            if _pointer(path):
                remove(doc, path)
            doc = add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_walk(doc, _pointer(op.get("from", "")), op.get("from")))
            if kind == "move":
                remove(doc, op["from"])
            doc = add(doc, path, value)
        elif kind == "test":
            if _walk(doc, _pointer(path), path) != op["value"]:
                raise ValueError("testing value %s failed" % path)
        else:
            raise ValueError("unknown operation %r" % kind)
    return doc


def _has_directive(patch):
    if isinstance(patch, dict):
        return any(str(k).startswith("$") or _has_directive(v) for k, v in patch.items())
    if isinstance(patch, list):
        return any(_has_directive(v) for v in patch)
    return False


PATCH_TYPES = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
               "strategic": "application/strategic-merge-patch+json", "apply": "application/apply-patch+yaml"}


def apply_patch(obj, patch, patch_type):
    """obj patched; patch_type merge, json, strategic (a merge patch here) or
    a Content-Type. APIError for what the server would refuse."""
    pt = {v: k for k, v in PATCH_TYPES.items()}.get(patch_type, patch_type)
    if pt == "json":
        try:
            return json_patch(obj, patch)
        except ValueError as e:
            raise APIError(422, "Invalid", "the server rejected our request due to an error in our request: %s"
                           % e)
    if pt in ("merge", "strategic"):
        if not isinstance(patch, dict):
            raise APIError(400, "BadRequest", "a merge patch must be a JSON object")
        if pt == "strategic" and _has_directive(patch):
            raise APIError(400, "BadRequest", "fakeapi: strategic merge patch directives ($patch, "
                           "$setElementOrder, ...) are not supported")
        return merge_patch(obj, patch)
    raise APIError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                   "media types include: application/json-patch+json, application/merge-patch+json, "
                   "application/strategic-merge-patch+json")


# ---- RBAC ----------------------------------------------------------------------------
def rbac_rules_from_manifest(path, names=None):
    """The rules of every ClusterRole and Role in a manifest file (of those
    named in names when given), for FakeAPI(rbac={token: rules}). A Role's
    rules carry "namespace" (its own, default "default"): they grant only
    there, as if bound by a RoleBinding of that namespace."""
    rules = []
    with open(path) as f:
        for d in yaml.safe_load_all(f):
            if d and d.get("kind") in ("ClusterRole", "Role") and \
                    (names is None or d["metadata"]["name"] in names):
                for r in d.get("rules") or []:
                    r = dict(r)
                    if d["kind"] == "Role":
                        r["namespace"] = d["metadata"].get("namespace", "default")
                    rules.append(r)
    return rules


def rbac_allows(rules, verb, group, resource, name=None, namespace=None):
    """Does one of the ClusterRole-style rules grant verb on resource
    ("pods", "sandboxes/status") of API group (core: "") in namespace (None:
    cluster-wide)? A rule with a "namespace" grants only in that one."""
    for r in rules:
        if r.get("namespace") is not None and r["namespace"] != namespace:
            continue
        if not ({"*", group} & set(r.get("apiGroups") or [])):
            continue
        if not ({"*", resource} & set(r.get("resources") or [])):
            continue
        if not ({"*", verb} & set(r.get("verbs") or [])):
            continue
        if r.get("resourceNames") and name not in r["resourceNames"]:
            continue
        return True
    return False


def _selector_fn(selector):
    """A label selector string, a matchLabels dict or a LabelSelector dict ->
    predicate over a labels dict."""
    if selector is None or isinstance(selector, str):
        return _parse_selector(selector or "")
    if set(selector) <= {"matchLabels", "matchExpressions"} and \
            all(isinstance(v, (dict, list)) for v in selector.values()):
        ml = selector.get("matchLabels") or {}
        exprs = selector.get("matchExpressions") or []
    else:
        ml, exprs = selector, []

    def ok(labels):
        if any(labels.get(k) != v for k, v in ml.items()):
            return False
        for e in exprs:
            k, op, vals = e["key"], e["operator"], e.get("values") or []
            if (op == "In" and labels.get(k) not in vals) or (op == "NotIn" and labels.get(k) in vals) or \
                    (op == "Exists" and k not in labels) or (op == "DoesNotExist" and k in labels):
                return False
        return True
    return ok


def _random_suffix(n=5):
    # the real server's alphabet leaves out vowels and look-alikes: bcdfghjklmnpqrstvwxz2456789
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


load_crds()


# ---- objects with the real field layout ---------------------------------------
def _meta(namespace, name, labels=None, **extra):
    m = {"name": name, "namespace": namespace}
    if labels:
        m["labels"] = dict(labels)
    m.update(extra)
    return m


def service(namespace, name, cluster_ip, ports, cluster_ips=None, labels=None):
    """ports: [(name, port, targetPort)] or [(name, port, targetPort, protocol)];
    cluster_ip "None" makes a headless Service."""
    ps = []
    for p in ports:
        pname, port, target = p[0], p[1], p[2]
        proto = p[3] if len(p) > 3 else "TCP"
        e = {"port": port, "targetPort": target, "protocol": proto}
        if pname:
            e["name"] = pname
        ps.append(e)
    ips = list(cluster_ips) if cluster_ips else [cluster_ip]
    fams = ["IPv6" if ":" in ip else "IPv4" for ip in ips] if cluster_ip != "None" else ["IPv4"]
    return {"kind": "Service", "apiVersion": "v1", "metadata": _meta(namespace, name, labels),
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": ips, "ports": ps,
                     "ipFamilies": fams, "ipFamilyPolicy": "SingleStack" if len(ips) == 1 else "PreferDualStack",
                     "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}}


def endpointslice(namespace, name, service_name, endpoints, ports, address_type="IPv4"):
    """endpoints: [(ip, ready)] or [(ip, ready, pod_name)]; ports: [(name, port)]
    (name None for an unnamed port)."""
    eps = []
    for e in endpoints:
        ip, ready = e[0], e[1]
        ep = {"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": False}}
        if len(e) > 2 and e[2]:
            ep["targetRef"] = {"kind": "Pod", "namespace": namespace, "name": e[2]}
        eps.append(ep)
    ps = []
    for pname, port in ports:
        p = {"port": port, "protocol": "TCP"}
        if pname is not None:
            p["name"] = pname
        ps.append(p)
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": _meta(namespace, name, {"kubernetes.io/service-name": service_name,
                                                "endpointslice.kubernetes.io/managed-by":
                                                    "endpointslice-controller.k8s.io"}),
            "addressType": address_type, "endpoints": eps, "ports": ps}


def pod(namespace, name, labels, ips, ready=True, phase="Running", node="node-1", uid=None):
    """ips: a list of pod IPs (the first is status.podIP); [] before scheduling.
    uid: metadata.uid (apply() makes one up when None)."""
    ips = [ips] if isinstance(ips, str) else list(ips)
    st = {"phase": phase, "conditions": [
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": "True" if ready else "False"},
        {"type": "ContainersReady", "status": "True" if ready else "False"},
        {"type": "PodScheduled", "status": "True"}]}
    if ips:
        st["podIP"] = ips[0]
        st["podIPs"] = [{"ip": ip} for ip in ips]
        st["hostIP"] = "10.0.0.1"
    extra = {"uid": uid} if uid else {}
    return {"kind": "Pod", "apiVersion": "v1", "metadata": _meta(namespace, name, labels, **extra),
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
            "status": st}


def sandboxroute(namespace, name, service_name, keys, port, selector=None, addresses=None, ports=None,
                 ttl=None, fallback=None, match_expressions=None):
    sb = {"port": port}
    if addresses is not None:
        sb["addresses"] = list(addresses)
    if selector is not None or match_expressions is not None:
        sel = {}
        if selector is not None:
            sel["matchLabels"] = dict(selector)
        if match_expressions is not None:
            sel["matchExpressions"] = list(match_expressions)
        sb["selector"] = sel
    spec = {"service": {"name": service_name}, "keys": list(keys), "sandbox": sb}
    if ports is not None:
        spec["service"]["ports"] = list(ports)
    if ttl is not None:
        spec["ttl"] = ttl
    if fallback is not None:
        spec["fallback"] = fallback
    return {"kind": "SandboxRoute", "apiVersion": "shunt.dev/v1alpha1", "metadata": _meta(namespace, name),
            "spec": spec}


def sandboxoverride(namespace, name, pod_selector, destination, to, ttl=None):
    """destination: {"service": NAME | "addresses": [...], "port": N};
    to: {"service": NAME | "selector": {"matchLabels": ...} | "addresses": [...], "port": N}
    (deploy/crd-sandboxoverride.yaml)."""
    spec = {"podSelector": {"matchLabels": dict(pod_selector)}, "destination": dict(destination),
            "to": dict(to)}
    if ttl is not None:
        spec["ttl"] = ttl
    return {"kind": "SandboxOverride", "apiVersion": "shunt.dev/v1alpha1",
            "metadata": _meta(namespace, name), "spec": spec}


def owner_ref(owner, controller=True, block_owner_deletion=True):
    """An ownerReference to a stored object (it needs its uid), as
    metav1.NewControllerRef makes."""
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": controller,
            "blockOwnerDeletion": block_owner_deletion}


def deployment(namespace, name, labels, replicas=1, image="app:1", owners=(), pod_labels=None):
    """An apps/v1 Deployment selecting labels (its pods get pod_labels or
    labels); owners: stored objects to list in ownerReferences."""
    md = _meta(namespace, name, labels)
    if owners:
        md["ownerReferences"] = [owner_ref(o) for o in owners]
    return {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": md,
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(pod_labels or labels)},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def configmap(namespace, name, data, labels=None):
    return {"kind": "ConfigMap", "apiVersion": "v1", "metadata": _meta(namespace, name, labels),
            "data": dict(data)}


def make_certs(directory, ips=("127.0.0.1",), dns=("localhost",)):
    """A throwaway CA and a server certificate it signs (openssl CLI).
    Returns {"ca", "cert", "key"} file paths."""
    os.makedirs(directory, exist_ok=True)
    p = {k: os.path.join(directory, f) for k, f in
         (("ca", "ca.crt"), ("ca_key", "ca.key"), ("cert", "server.crt"), ("key", "server.key"),
          ("csr", "server.csr"), ("ext", "server.ext"))}
    san = ",".join(["IP:" + ip for ip in ips] + ["DNS:" + d for d in dns])

    def ossl(*args):
        r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (args[0], r.stderr.strip()))

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2", "-subj", "/CN=fakeapi-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", p["key"], "-out", p["csr"], "-subj", "/CN=kube-apiserver")
    with open(p["ext"], "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n" % san)
    ossl("x509", "-req", "-in", p["csr"], "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial",
         "-out", p["cert"], "-days", "2", "-extfile", p["ext"])
    return {"ca": p["ca"], "cert": p["cert"], "key": p["key"]}


# ---- label selectors (for clients that filter server-side) ------------------------
def _parse_selector(text):
    """'a=b,c!=d,e,!f,g in (x,y)' -> predicate over a labels dict."""
    if not text:
        return lambda labels: True
    reqs = []
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        part = part.strip()
        m = re.match(r"^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$", part)
        if m:
            vals = {v.strip() for v in m.group(3).split(",")}
            if m.group(2) == "in":
                reqs.append(lambda l, k=m.group(1), v=vals: l.get(k) in v)
            else:
                reqs.append(lambda l, k=m.group(1), v=vals: l.get(k) not in v)
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(lambda l, k=k.strip(), v=v.strip(): l.get(k) != v)
        elif "=" in part:
            k, v = part.replace("==", "=").split("=", 1)
            reqs.append(lambda l, k=k.strip(), v=v.strip(): l.get(k) == v)
        elif part.startswith("!"):
            reqs.append(lambda l, k=part[1:].strip(): k not in l)
        elif part:
            reqs.append(lambda l, k=part: k in l)
    return lambda labels: all(r(labels) for r in reqs)


# ---- the server ---------------------------------------------------------------------
class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, api, sock_addr, handler):
        self.api = api
        self.tls_ctx = None
        super().__init__(sock_addr, handler, bind_and_activate=False)

    def get_request(self):
        conn, addr = self.socket.accept()
        # The headers and the body go out in two writes: with Nagle the
        # body waits for the client's delayed ACK (40 ms per request on
        # a kept-alive connection). The real API server (Go) sets this.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_ctx is not None:
            # The handshake happens on the first read, in the handler's
            # thread: a silent client cannot hold up accept().
            conn = self.tls_ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request, client_address):
        # Clients that hang up, fail the TLS handshake or are cut by
        # stop()/drop_watches() are normal here: note, do not print.
        self.api._note_conn_error(repr(sys.exc_info()[1]))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeapi"

    def log_message(self, fmt, *args):  # quiet; the request log is api.requests()
        pass

    def setup(self):
        super().setup()
        self.server.api._conn_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.api._conn_closed(self.connection)

    def do_GET(self):
        self.server.api._handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def send_json(self, code, obj, headers=()):
        body = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class FakeAPI:
    def __init__(self, host="127.0.0.1", port=0, token=None, tls=None, netns=None, history=2000,
                 bookmark_interval=1.0, default_watch_timeout=1800, rbac=None):
        """token None accepts anything (no Authorization needed); tls is
        make_certs()'s dict or None for plain HTTP; rbac {token: rules}
        (rbac_rules_from_manifest()) adds tokens limited to those rules."""
        self.host = host
        self.port = port
        self.tls = tls
        self.netns = netns
        self.history_limit = history
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self._token = token
        self._latency = 0.0
        self._lock = threading.Condition()
        self._rv = 1
        self._objects = {r: {} for r in RESOURCES}  # resource -> {(ns, name): obj}
        self._gc_on = True
        self._gc_dirty = False
        self._in_gc = False
        self._uids = {}  # uid -> (resource, (ns, name))
        self._gc_keys = set()  # (resource, (ns, name)) of objects with ownerReferences or a deletionTimestamp
        self._rbac = {t: copy.deepcopy(list(r)) for t, r in (rbac or {}).items()}
        self._history = []  # [(rv, resource, type, obj)] ascending rv
        self._history_rvs = []
        self._oldest = 0  # every event with rv > _oldest is in _history
        self._snapshots = {}  # continue token id -> (rv, [objects])
        self._snap_order = []
        self._drop_gen = 0
        self._gone = []  # pending forced 410s: [(resource or None, mode)]
        self._conns = set()
        self._watches = {}  # id -> {"resource", "ns", "since", "peer"}
        self._watch_n = 0
        self._reqlog = []
        self._sent = {}  # (resource, rv) -> monotonic time the event went out on a watch
        self._conn_errors = []
        self._server = None
        self._thread = None

    # ---- lifecycle --------------------------------------------------------------
    @property
    def url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % ("https" if self.tls else "http", host, self.port)

    def _make_socket(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        return socket_in_netns(self.netns, fam) if self.netns else socket.socket(fam, socket.SOCK_STREAM)

    def start(self):
        """Listen (again) on host:port; port 0 picks one the first time and
        keeps it for later starts."""
        if self._server is not None:
            return self
        srv = _Server(self, (self.host, self.port), _Handler)
        srv.socket.close()
        srv.socket = self._make_socket()
        srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.socket.bind((self.host, self.port))
        srv.socket.listen(srv.request_queue_size)
        srv.server_address = srv.socket.getsockname()
        self.port = srv.server_address[1]
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
            srv.tls_ctx = ctx
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fakeapi-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and cut every open connection (the objects and the
        resourceVersion stay)."""
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        self._cut_all()
        self._thread.join(5)

    def close(self):
        self.stop()

    def _cut_all(self):
        with self._lock:
            conns = list(self._conns)
            self._drop_gen += 1
            self._lock.notify_all()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _conn_opened(self, c):
        with self._lock:
            self._conns.add(c)

    def _conn_closed(self, c):
        with self._lock:
            self._conns.discard(c)

    def _note_conn_error(self, e):
        with self._lock:
            self._conn_errors = self._conn_errors[-99:] + [e]

    # ---- control ------------------------------------------------------------------
    def set_token(self, token):
        with self._lock:
            self._token = token

    def set_latency(self, seconds):
        """Delay before every API answer (lists, watch starts, 401s)."""
        with self._lock:
            self._latency = float(seconds)

    def reset_faults(self):
        """No latency, no pending forced 410s."""
        with self._lock:
            self._latency = 0.0
            self._gone = []

    def drop_watches(self):
        """Cut every open watch stream mid-way (no terminating chunk)."""
        with self._lock:
            self._drop_gen += 1
            self._lock.notify_all()

    def force_gone(self, count=1, mode="event", resource=None):
        """The next count watches (of resource, or any) get a 410: an ERROR
        event with a Status (mode "event", what the real server sends for a
        too old RV) or an HTTP 410 (mode "http")."""
        if mode not in ("event", "http"):
            raise ValueError("mode must be event or http")
        with self._lock:
            self._gone += [(resource, mode)] * count

    def compact(self):
        """Forget the whole history: any watch from an RV before now is 410."""
        with self._lock:
            self._history = []
            self._history_rvs = []
            self._oldest = self._rv
            self._snapshots.clear()
            self._snap_order = []

    @property
    def resource_version(self):
        with self._lock:
            return self._rv

    def watches(self, resource=None):
        with self._lock:
            return [dict(w) for w in self._watches.values() if resource in (None, w["resource"])]

    def requests(self, since=0, resource=None, watch=None):
        """Request records after index since: dicts with i, t (monotonic),
        resource, ns, watch, query, status, auth."""
        with self._lock:
            out = self._reqlog[since:]
        return [r for r in out if (resource is None or r["resource"] == resource)
                and (watch is None or r["watch"] == watch)]

    def request_count(self):
        with self._lock:
            return len(self._reqlog)

    def sent_time(self, resource, rv):
        """When the event with this RV was first written to a watch of
        resource (stamped just before the send() call)."""
        with self._lock:
            return self._sent.get((resource, rv))

    def conn_errors(self):
        with self._lock:
            return list(self._conn_errors)

    # ---- objects ------------------------------------------------------------------
    @staticmethod
    def _resource_of(obj_or_name):
        if isinstance(obj_or_name, dict):
            kind = obj_or_name.get("kind")
            if kind not in KIND_TO_RESOURCE:
                raise APIError(400, "BadRequest", "fakeapi serves no kind %r" % kind)
            return KIND_TO_RESOURCE[kind]
        if obj_or_name in RESOURCES:
            return obj_or_name
        if obj_or_name in KIND_TO_RESOURCE:
            return KIND_TO_RESOURCE[obj_or_name]
        raise APIError(404, "NotFound", "the server could not find the requested resource %r" % obj_or_name)

    def _store(self, res):
        return self._objects.setdefault(res, {})

    def _record(self, res, typ, obj):
        self._history.append((self._rv, res, typ, obj))
        self._history_rvs.append(self._rv)
        if len(self._history) > self.history_limit:
            drop = len(self._history) - self.history_limit
            self._oldest = self._history_rvs[drop - 1]
            del self._history[:drop]
            del self._history_rvs[:drop]
        self._lock.notify_all()

    # Stored objects are never changed in place (the history holds them):
    # every write stores a new dict.
    def _put(self, res, obj, typ):
        md = obj["metadata"]
        self._rv += 1
        md["resourceVersion"] = str(self._rv)
        key = (md["namespace"], md["name"])
        prev = self._store(res).get(key)
        if prev is not None and prev["metadata"].get("uid") != md.get("uid"):
            self._uids.pop(prev["metadata"].get("uid"), None)
        self._store(res)[key] = obj
        self._uids[md.get("uid")] = (res, key)
        self._record(res, typ, obj)
        if md.get("ownerReferences") or md.get("deletionTimestamp"):
            self._gc_keys.add((res, key))
            self._gc_dirty = True
        else:
            self._gc_keys.discard((res, key))
        return self._rv

    def _remove(self, res, key, last=None):
        old = self._store(res).pop(key)
        self._uids.pop(old["metadata"].get("uid"), None)
        self._gc_keys.discard((res, key))
        self._rv += 1
        gone = copy.deepcopy(last if last is not None else old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._record(res, "DELETED", gone)
        self._gc_dirty = True
        return self._rv

    def _typed_check(self, res, obj):
        """Fill in kind/apiVersion; 400 when they are another resource's."""
        _, api_version, kind = RESOURCES[res]
        if obj.setdefault("kind", kind) != kind or obj.setdefault("apiVersion", api_version) != api_version:
            raise APIError(400, "BadRequest", "the API version in the data (%s) and the kind (%s) are not "
                           "those of %s (%s, %s)" % (obj.get("apiVersion"), obj.get("kind"), res,
                                                     api_version, kind))

    def _check(self, res, obj):
        if res in CRD_SCHEMAS:
            _apply_defaults(CRD_SCHEMAS[res], obj)
        causes = validate(obj, res)
        if causes:
            raise _invalid(res, RESOURCES[res][2], obj["metadata"].get("name"), causes)

    @staticmethod
    def _spec_part(o):
        return {k: v for k, v in o.items() if k not in ("metadata", "status", "kind", "apiVersion")}

    def _after_write(self):
        if self._gc_on and self._gc_dirty and self._gc_keys and not self._in_gc:
            self._gc_locked()

    def _create_locked(self, res, obj, path_ns=None, dry_run=False, validate=True):
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
            raise APIError(400, "BadRequest", "the object is not a JSON object with a metadata object")
        obj = copy.deepcopy(obj)
        self._typed_check(res, obj)
        md = obj.setdefault("metadata", {})
        if path_ns is not None and md.setdefault("namespace", path_ns) != path_ns:
            raise APIError(400, "BadRequest", "the namespace of the provided object does not match the "
                           "namespace sent on the request")
        md.setdefault("namespace", "default")
        if md.get("resourceVersion"):
            raise APIError(400, "BadRequest", "resourceVersion should not be set on objects to be created")
        store = self._store(res)
        if not md.get("name") and md.get("generateName"):
            for _ in range(100):
                md["name"] = md["generateName"] + _random_suffix()
                if (md["namespace"], md["name"]) not in store:
                    break
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
            md.pop(k, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        md["generation"] = 1
        if res in STATUS_SUBRESOURCE:
            obj.pop("status", None)
            if res == "pods":
                obj["status"] = {"phase": "Pending"}
        if validate:
            self._check(res, obj)
        if (md["namespace"], md.get("name")) in store:
            raise APIError(409, "AlreadyExists", '%s "%s" already exists' % (qualified(res), md["name"]),
                           res, md["name"])
        if dry_run:
            return copy.deepcopy(obj)
        self._put(res, obj, "ADDED")
        out = copy.deepcopy(obj)
        self._after_write()
        return out

    def _update_locked(self, res, obj, subresource=None, path_ns=None, path_name=None, dry_run=False,
                       validate=True):
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise APIError(400, "BadRequest", "the object has no metadata")
        md = obj["metadata"]
        ns, name = md.get("namespace") or path_ns or "default", md.get("name") or path_name
        if path_name is not None and name != path_name:
            raise APIError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                           % (name, path_name))
        if path_ns is not None and ns != path_ns:
            raise APIError(400, "BadRequest", "the namespace of the provided object does not match the "
                           "namespace sent on the request")
        if subresource not in (None, "status") or (subresource == "status" and res not in STATUS_SUBRESOURCE):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        old = self._store(res).get((ns, name))
        if old is None:
            raise _not_found(res, name)
        om = old["metadata"]
        if md.get("resourceVersion") and str(md["resourceVersion"]) != om["resourceVersion"]:
            raise APIError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been '
                           "modified; please apply your changes to the latest version and try again"
                           % (qualified(res), name), res, name)
        if md.get("uid") and md["uid"] != om["uid"]:
            raise APIError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": Precondition failed: '
                           "UID in precondition: %s, UID in object meta: %s"
                           % (qualified(res), name, om["uid"], md["uid"]), res, name)
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in obj:
                new["status"] = copy.deepcopy(obj["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(obj)
            self._typed_check(res, new)
            nm = new["metadata"]
            nm.pop("managedFields", None)
            nm.pop("selfLink", None)
            nm["namespace"], nm["name"] = ns, name
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if k in om:
                    nm[k] = om[k]
                else:
                    nm.pop(k, None)
            if res in STATUS_SUBRESOURCE:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            if om.get("deletionTimestamp"):
                added = set(nm.get("finalizers") or []) - set(om.get("finalizers") or [])
                if added:
                    raise _invalid(res, RESOURCES[res][2], name, [{
                        "reason": "FieldValueForbidden", "field": "metadata.finalizers",
                        "message": "Forbidden: no new finalizers can be added if the object is being deleted, "
                        "found new finalizers %s" % json.dumps(sorted(added))}])
            if self._spec_part(new) != self._spec_part(old):
                nm["generation"] = om.get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = om["resourceVersion"]
        if validate:
            self._check(res, new)
        if new == old or dry_run:  # the real server writes nothing for a no-op
            return copy.deepcopy(new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            new["metadata"].pop("finalizers", None)
            self._remove(res, (ns, name), new)
        else:
            self._put(res, new, "MODIFIED")
        out = copy.deepcopy(new)
        self._after_write()
        return out

    def _patch_locked(self, res, ns, name, patch, patch_type, subresource=None, dry_run=False):
        if subresource not in (None, "status") or (subresource == "status" and res not in STATUS_SUBRESOURCE):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        old = self._store(res).get((ns, name))
        if old is None:
            raise _not_found(res, name)
        new = apply_patch(old, patch, patch_type)
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise APIError(422, "Invalid", "the patched object has no metadata")
        if new["metadata"].get("name") != name or new["metadata"].get("namespace") != ns:
            raise APIError(400, "BadRequest", "a patch cannot change the name or the namespace")
        return self._update_locked(res, new, subresource, ns, name, dry_run)

    def _delete_locked(self, res, ns, name, propagation=None, preconditions=None):
        """(the object after the call, gone now?)."""
        old = self._store(res).get((ns, name))
        if old is None:
            raise _not_found(res, name)
        om = old["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != om["uid"]:
            raise APIError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": Precondition failed: '
                           "UID in precondition: %s, UID in object meta: %s"
                           % (qualified(res), name, pre["uid"], om["uid"]), res, name)
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != om["resourceVersion"]:
            raise APIError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": Precondition failed: '
                           "ResourceVersion in precondition: %s, ResourceVersion in object meta: %s"
                           % (qualified(res), name, pre["resourceVersion"], om["resourceVersion"]), res, name)
        if propagation not in (None, "Background", "Foreground", "Orphan"):
            raise APIError(400, "BadRequest", "propagationPolicy %r is not one of Background, Foreground, Orphan"
                           % propagation)
        fins = list(om.get("finalizers") or [])
        if propagation == "Orphan" and "orphan" not in fins:
            fins.append("orphan")
        elif propagation == "Foreground" and "foregroundDeletion" not in fins:
            fins.append("foregroundDeletion")
        if not fins:
            self._remove(res, (ns, name))
            out = copy.deepcopy(old)
            self._after_write()
            return out, True
        if om.get("deletionTimestamp") and fins == list(om.get("finalizers") or []):
            return copy.deepcopy(old), False
        new = copy.deepcopy(old)
        nm = new["metadata"]
        nm.setdefault("deletionTimestamp", now_rfc3339())
        nm.setdefault("deletionGracePeriodSeconds", 0)
        nm["finalizers"] = fins
        self._put(res, new, "MODIFIED")
        out = copy.deepcopy(new)
        self._after_write()  # the garbage collector may finish it (orphan, foregroundDeletion)
        return out, (ns, name) not in self._store(res)

    # ---- garbage collection ----------------------------------------------------------
    def _gc_locked(self):
        self._in_gc = True
        try:
            for _ in range(100000):
                self._gc_dirty = False
                if not self._gc_step():
                    return
            raise RuntimeError("fakeapi: the garbage collector does not settle")
        finally:
            self._in_gc = False

    def _gc_step(self):
        """One change the garbage collector would make; False when none."""
        # Only objects with ownerReferences or a deletionTimestamp (_gc_keys)
        # can have something to do; owners are found by uid (_uids).
        owned = {}
        todo = []
        for res, key in sorted(self._gc_keys):
            o = self._objects[res][key]
            todo.append((res, key, o))
            for r in o["metadata"].get("ownerReferences") or []:
                owned.setdefault(r.get("uid"), []).append((res, key, o))

        def by_uid(uid):
            rk = self._uids.get(uid)
            return None if rk is None else (rk[0], rk[1], self._objects[rk[0]][rk[1]])
        for res, key, o in todo:
            md = o["metadata"]
            uid = md.get("uid")
            fins = md.get("finalizers") or []
            if md.get("deletionTimestamp") and "orphan" in fins:
                for dres, dkey, d in owned.get(uid, []):
                    nd = copy.deepcopy(d)
                    nd["metadata"]["ownerReferences"] = [r for r in d["metadata"]["ownerReferences"]
                                                         if r.get("uid") != uid]
                    if not nd["metadata"]["ownerReferences"]:
                        del nd["metadata"]["ownerReferences"]
                    self._put(dres, nd, "MODIFIED")
                self._drop_finalizer(res, key, o, "orphan")
                return True
            if md.get("deletionTimestamp") and "foregroundDeletion" in fins and not owned.get(uid):
                self._drop_finalizer(res, key, o, "foregroundDeletion")
                return True
            refs = md.get("ownerReferences") or []
            if not refs:
                continue
            owners = [by_uid(r.get("uid")) for r in refs]
            live = [r for r, ow in zip(refs, owners) if ow is not None]
            waiting = [r for r, ow in zip(refs, owners) if ow is not None and ow[2]["metadata"].get(
                "deletionTimestamp") and "foregroundDeletion" in (ow[2]["metadata"].get("finalizers") or [])]
            if not live or (len(waiting) == len(live)):
                if md.get("deletionTimestamp"):
                    continue  # going already: its finalizers hold it
                self._delete_locked(res, key[0], key[1], "Foreground" if live else None)
                return True
            if len(live) < len(refs) or waiting:
                # Keeps a solid owner: drop the references to owners that are gone or going.
                nd = copy.deepcopy(o)
                nd["metadata"]["ownerReferences"] = [r for r in live if r not in waiting]
                self._put(res, nd, "MODIFIED")
                return True
        return False

    def _drop_finalizer(self, res, key, o, fin):
        new = copy.deepcopy(o)
        new["metadata"]["finalizers"] = [f for f in o["metadata"]["finalizers"] if f != fin]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
            self._remove(res, key, new)
        else:
            self._put(res, new, "MODIFIED")

    def set_gc(self, on):
        """Garbage collection after every write (True, the default) or only
        when run_gc() is called (False); turning it on runs it."""
        with self._lock:
            self._gc_on = bool(on)
            if on:
                self._gc_locked()

    def run_gc(self):
        """Run the garbage collector now, until it has nothing left to do."""
        with self._lock:
            self._gc_locked()

    # ---- in-process API ----------------------------------------------------------------
    def apply(self, obj, validate=True):
        """Create or replace an object (kind decides the resource). Keeps
        uid and creationTimestamp of an existing one unless obj sets them,
        and its deletionTimestamp. Unlike create()/update() it keeps the
        given status, uid and creationTimestamp and always writes (a new RV
        and an event even when nothing changed). validate=False stores an
        object the real API server would refuse (else APIError 422 naming
        the field). Returns the stored object (with its resourceVersion)."""
        res = self._resource_of(obj)
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md.setdefault("namespace", "default")
        key = (md["namespace"], md.get("name"))
        with self._lock:
            old = self._store(res).get(key)
            if old is None:
                md.setdefault("uid", str(uuid.uuid4()))
                md.setdefault("creationTimestamp", now_rfc3339())
                md.setdefault("generation", 1)
            else:
                om = old["metadata"]
                md.setdefault("uid", om["uid"])
                md.setdefault("creationTimestamp", om["creationTimestamp"])
                for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                    if k in om:
                        md.setdefault(k, om[k])
                md["generation"] = om.get("generation", 1) + (1 if self._spec_part(obj) != self._spec_part(old)
                                                              else 0)
            md["resourceVersion"] = str(self._rv + 1)
            if validate:
                self._check(res, obj)
            if old is not None and md.get("deletionTimestamp") and not md.get("finalizers"):
                self._remove(res, key, obj)
            else:
                self._put(res, obj, "ADDED" if old is None else "MODIFIED")
            out = copy.deepcopy(obj)
            self._after_write()
            return out

    def apply_many(self, objs, validate=True):
        return [self.apply(o, validate) for o in objs]

    def create(self, obj, dry_run=False):
        """Create as a POST would (generateName, uid, ...); the stored copy.
        APIError 409 AlreadyExists, 422 Invalid, 400."""
        res = self._resource_of(obj)
        with self._lock:
            return self._create_locked(res, obj, dry_run=dry_run)

    def update(self, obj):
        """Replace as a PUT would (RV conflict check when
        metadata.resourceVersion is set; status kept for kinds with a status
        subresource); the stored copy."""
        res = self._resource_of(obj)
        with self._lock:
            return self._update_locked(res, obj)

    def update_status(self, obj):
        """PUT .../status: only status changes."""
        res = self._resource_of(obj)
        with self._lock:
            return self._update_locked(res, obj, "status")

    def patch(self, resource, namespace, name, patch, patch_type="merge", subresource=None):
        """PATCH (merge, json, strategic or a Content-Type); the stored copy."""
        res = self._resource_of(resource)
        with self._lock:
            return self._patch_locked(res, namespace, name, copy.deepcopy(patch), patch_type, subresource)

    def delete(self, resource, namespace, name, propagation=None, preconditions=None):
        """DELETE (finalizers, propagation and garbage collection as the
        real server). Returns the RV of the event it made (DELETED, or
        MODIFIED when finalizers keep the object; the current RV when it was
        being deleted already), None if there was no such object."""
        res = self._resource_of(resource)
        with self._lock:
            try:
                o, _ = self._delete_locked(res, namespace, name, propagation, preconditions)
            except APIError as e:
                if e.code == 404:
                    return None
                raise
            return self._rv if o is not None else None

    def get(self, resource, namespace, name):
        res = self._resource_of(resource)
        with self._lock:
            o = self._store(res).get((namespace, name))
            return copy.deepcopy(o) if o else None

    def list(self, resource, ns=None, selector=None):
        """Copies of the objects of resource (in ns when given) whose labels
        match selector, sorted by namespace and name."""
        res = self._resource_of(resource)
        sel = _selector_fn(selector)
        with self._lock:
            return copy.deepcopy(self._matching(res, ns, sel))

    def wait_for_change(self, after_rv, timeout):
        """Block until the resourceVersion is past after_rv or timeout
        seconds went by; returns the current resourceVersion."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._rv <= int(after_rv):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return self._rv

    def set_rbac(self, token, rules):
        """Give token exactly these ClusterRole-style rules (None: forget it)."""
        with self._lock:
            if rules is None:
                self._rbac.pop(token, None)
            else:
                self._rbac[token] = copy.deepcopy(list(rules))

    def objects(self, resource):
        """Every stored object of a resource (copies)."""
        with self._lock:
            return copy.deepcopy(list(self._store(self._resource_of(resource)).values()))

    def count(self, resource):
        with self._lock:
            return len(self._store(self._resource_of(resource)))

    # ---- request handling ------------------------------------------------------------
    def _handle(self, h):
        t0 = time.monotonic()
        u = urllib.parse.urlsplit(h.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        m = _PATH_RE.match(u.path)
        body = b""
        if h.command != "GET":  # read it first: the connection stays usable whatever we answer
            n = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(n) if n > 0 else b""
        with self._lock:
            latency, token, rbac = self._latency, self._token, self._rbac
        watch = q.get("watch") in ("1", "true")
        rec = {"i": 0, "t": t0, "path": u.path, "query": q, "resource": None, "ns": None,
               "watch": watch, "status": 0, "auth": h.headers.get("Authorization", ""),
               "method": h.command, "verb": None, "name": None, "subresource": None}
        with self._lock:
            rec["i"] = len(self._reqlog)
            self._reqlog.append(rec)
        if latency:
            time.sleep(latency)
        if u.path in ("/version", "/healthz", "/readyz", "/livez") and h.command == "GET":
            rec["status"] = 200  # public, like system:public-info-viewer
            return h.send_json(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fakeapi"}
                               if u.path == "/version" else {"status": "ok"})
        bearer = rec["auth"][7:] if rec["auth"].startswith("Bearer ") else None
        rules = None  # None: every permission
        if bearer is not None and bearer in rbac:
            rules = rbac[bearer]
        elif token is not None and bearer != token:
            rec["status"] = 401
            return h.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        if not m or m.group("res") not in RESOURCES or RESOURCES[m.group("res")][0] != m.group("group"):
            rec["status"] = 404
            return h.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        res, ns, name, sub = m.group("res"), m.group("ns"), m.group("name"), m.group("sub")
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(h.command)
        if verb is None:
            verb = "get" if name is not None else "watch" if watch else "list"
        rec.update(resource=res, ns=ns, verb=verb, name=name, subresource=sub)

        def fail(e):
            rec["status"] = e.code
            return h.send_json(e.code, e.status)
        if rules is not None:
            rname = res + ("/" + sub if sub else "")
            if not rbac_allows(rules, verb, group_of(res), rname, name, ns):
                where = ' in the namespace "%s"' % ns if ns else " at the cluster scope"
                return fail(APIError(403, "Forbidden", '%s%s is forbidden: User "%s" cannot %s resource "%s" '
                                     'in API group "%s"%s' % (qualified(res), ' "%s"' % name if name else "",
                                                              "token:" + bearer[:8], verb, rname,
                                                              group_of(res), where), res, name))
        if (name is not None or verb != "list" and verb != "watch") and ns is None:
            return fail(APIError(404, "NotFound", "the server could not find the requested resource"))
        if sub not in (None, "status") or (sub == "status" and res not in STATUS_SUBRESOURCE):
            return fail(APIError(404, "NotFound", "the server could not find the requested resource"))
        if verb == "get":
            o = self.get(res, ns, name)
            if o is None:
                return fail(_not_found(res, name))
            rec["status"] = 200
            return h.send_json(200, o)
        if verb in ("list", "watch"):
            if h.command != "GET":
                return fail(APIError(405, "MethodNotAllowed", "the server does not allow this method on the "
                                     "requested resource"))
            try:
                sel = _parse_selector(q.get("labelSelector", ""))
            except re.error:
                return fail(APIError(400, "BadRequest", "unable to parse requirement"))
            if watch:
                return self._watch(h, rec, res, ns, q, sel)
            return self._list(h, rec, res, ns, q, sel)
        if (verb == "create") != (name is None) or (verb in ("create", "delete") and sub):
            return fail(APIError(405, "MethodNotAllowed", "the server does not allow this method on the "
                                 "requested resource"))
        dry_run = q.get("dryRun") == "All"
        if q.get("dryRun") not in (None, "", "All"):
            return fail(APIError(400, "BadRequest", "dryRun must be All"))
        ctype = (h.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        try:
            if verb == "patch" and ctype not in (PATCH_TYPES["merge"], PATCH_TYPES["json"],
                                                 PATCH_TYPES["strategic"]):
                return fail(APIError(415, "UnsupportedMediaType", "the body of the request was in an unknown "
                                     "format - accepted media types include: application/json-patch+json, "
                                     "application/merge-patch+json, application/strategic-merge-patch+json"))
            try:
                doc = json.loads(body) if body.strip() else None
            except ValueError as e:
                return fail(APIError(400, "BadRequest", "the body of the request is not valid JSON: %s" % e))
            if verb != "delete" and doc is None:
                return fail(APIError(400, "BadRequest", "the request has no body"))
            if rules is not None and verb in ("create", "update", "patch") and sub is None:
                self._check_owner_refs(rules, res, ns, name, doc, verb)
            with self._lock:
                if verb == "create":
                    o = self._create_locked(res, doc, path_ns=ns, dry_run=dry_run)
                    code = 201
                elif verb == "update":
                    o = self._update_locked(res, doc, sub, ns, name, dry_run)
                    code = 200
                elif verb == "patch":
                    o = self._patch_locked(res, ns, name, doc, ctype, sub, dry_run)
                    code = 200
                else:
                    opts = doc if isinstance(doc, dict) else {}
                    prop = opts.get("propagationPolicy") or q.get("propagationPolicy")
                    if prop is None and opts.get("orphanDependents") is not None:
                        prop = "Orphan" if opts["orphanDependents"] else "Background"
                    o, gone = self._delete_locked(res, ns, name, prop, opts.get("preconditions"))
                    code = 200 if gone else 202
        except APIError as e:
            return fail(e)
        except Exception as e:  # a bug here: say so to the client rather than cut the connection
            return fail(APIError(500, "InternalError", "fakeapi: %r" % e, res, name))
        rec["status"] = code
        return h.send_json(code, o)

    def _check_owner_refs(self, rules, res, ns, name, doc, verb):
        """OwnerReferencesPermissionEnforcement: blockOwnerDeletion on an
        ownerReference needs update on the owner's finalizers subresource."""
        md = doc.get("metadata") if isinstance(doc, dict) else None
        refs = (md or {}).get("ownerReferences") if isinstance(md, dict) else None
        if verb == "patch" and isinstance(doc, list):  # JSON patch: look at what it adds
            refs = [v for op in doc if isinstance(op, dict) and "ownerReferences" in str(op.get("path"))
                    for v in (op.get("value") if isinstance(op.get("value"), list) else [op.get("value")])]
        with self._lock:
            stored = self._store(res).get((ns, name)) if name else None
            had = (stored or {}).get("metadata", {}).get("ownerReferences") or []
        for r in refs or []:
            if not isinstance(r, dict) or not r.get("blockOwnerDeletion") or r in had:
                continue  # (only references being added or changed are checked)
            ores = KIND_TO_RESOURCE.get(r.get("kind"))
            group = (r.get("apiVersion") or "").rpartition("/")[0]
            if ores is None or not rbac_allows(rules, "update", group, ores + "/finalizers", r.get("name"), ns):
                raise APIError(403, "Forbidden", '%s "%s" is forbidden: cannot set blockOwnerDeletion if an '
                               "ownerReference refers to a resource you can't set finalizers on: %s"
                               % (qualified(res), (md or {}).get("name") or name,
                                  json.dumps({k: r.get(k) for k in ("apiVersion", "kind", "name", "uid")})),
                               res, name)

    def _matching(self, res, ns, sel):
        items = [o for (ons, _), o in self._store(res).items() if ns is None or ons == ns]
        items = [o for o in items if sel(o["metadata"].get("labels") or {})]
        items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
        return items

    def _list(self, h, rec, res, ns, q, sel):
        group, api_version, kind = RESOURCES[res]
        try:
            limit = int(q.get("limit") or 0)
            if limit < 0:
                raise ValueError
        except ValueError:
            rec["status"] = 400
            return h.send_json(400, status(400, "BadRequest", "invalid limit"))
        cont = q.get("continue")
        with self._lock:
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode() + b"=" * (-len(cont) % 4)))
                    snap_id, start = tok["s"], int(tok["start"])
                except (ValueError, KeyError, TypeError):
                    rec["status"] = 400
                    return h.send_json(400, status(400, "BadRequest", "continue key is not valid"))
                snap = self._snapshots.get(snap_id)
                if snap is None or snap[2] != (res, ns):
                    rec["status"] = 410
                    return h.send_json(410, status(
                        410, "Expired", "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter."))
                rv, items = snap[0], snap[1]
            else:
                rv, items, start = self._rv, self._matching(res, ns, sel), 0
                snap_id = None
            page = items[start:start + limit] if limit else items[start:]
            nxt = start + len(page)
            meta = {"resourceVersion": str(rv)}
            if nxt < len(items):
                if snap_id is None:
                    snap_id = uuid.uuid4().hex
                    self._snapshots[snap_id] = (rv, items, (res, ns))
                    self._snap_order.append(snap_id)
                    while len(self._snap_order) > 32:
                        self._snapshots.pop(self._snap_order.pop(0), None)
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"s": snap_id, "start": nxt, "rv": rv}).encode()).decode().rstrip("=")
                meta["remainingItemCount"] = len(items) - nxt
            body_items = []
            for o in page:
                o = dict(o)
                o.pop("kind", None)
                o.pop("apiVersion", None)
                body_items.append(o)
        rec["status"] = 200
        h.send_json(200, {"kind": kind + "List", "apiVersion": api_version, "metadata": meta, "items": body_items})

    def _watch(self, h, rec, res, ns, q, sel):
        group, api_version, kind = RESOURCES[res]
        rv_text = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout = int(q["timeoutSeconds"]) if q.get("timeoutSeconds") else self.default_watch_timeout
            since = int(rv_text) if rv_text not in ("", "0") else None
        except ValueError:
            rec["status"] = 400
            return h.send_json(400, status(400, "BadRequest", "invalid resourceVersion or timeoutSeconds"))
        with self._lock:
            gone_mode = None
            for i, (gres, mode) in enumerate(self._gone):
                if gres in (None, res):
                    gone_mode = mode
                    del self._gone[i]
                    break
            if gone_mode is None and since is not None and since < self._oldest:
                gone_mode = "event"
            oldest = self._oldest
            drop_gen = self._drop_gen
            initial = []
            if since is None:  # "0"/"": start with the current state, like the watch cache
                since = self._rv
                initial = [("ADDED", o) for o in self._matching(res, ns, sel)]
        too_old = "too old resource version: %s (%d)" % (rv_text or "0", oldest + 1)
        if gone_mode == "http":
            rec["status"] = 410
            return h.send_json(410, status(410, "Expired", too_old))
        rec["status"] = 200
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        if gone_mode == "event":
            h.chunk(self._event("ERROR", status(410, "Expired", too_old)))
            h.chunk(b"")
            return
        with self._lock:
            self._watch_n += 1
            wid = self._watch_n
            self._watches[wid] = {"resource": res, "ns": ns, "since": since, "peer": h.client_address[0],
                                  "id": wid}
        end = time.monotonic() + timeout
        next_bm = time.monotonic() + self.bookmark_interval
        pos = since
        try:
            for typ, o in initial:
                h.chunk(self._event(typ, self._typed(o, kind, api_version)))
            while True:
                with self._lock:
                    while True:
                        if self._drop_gen != drop_gen or self._server is None:
                            dropped = True
                            break
                        dropped = False
                        i = bisect.bisect_right(self._history_rvs, pos)
                        evs = [e for e in self._history[i:] if e[1] == res and
                               (ns is None or e[3]["metadata"]["namespace"] == ns) and
                               sel(e[3]["metadata"].get("labels") or {})]
                        if self._history_rvs and self._history_rvs[-1] > pos:
                            if pos < self._oldest:  # history moved past us: compacted
                                evs = None
                            newpos = self._history_rvs[-1]
                        else:
                            newpos = pos
                        if evs or evs is None:
                            break
                        pos = newpos
                        t = time.monotonic()
                        wake = min(end, next_bm) if bookmarks else end
                        if t >= wake:
                            break
                        self._lock.wait(wake - t)
                    rv_now = self._rv
                if dropped:
                    # Like a broken connection: no terminating chunk.
                    try:
                        h.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if evs is None:
                    h.chunk(self._event("ERROR", status(410, "Expired", "too old resource version: %d (%d)"
                                                        % (pos, self._oldest + 1))))
                    break
                for rv, _, typ, o in evs:
                    data = self._event(typ, o)
                    with self._lock:  # stamped before the send: the reader may act before we run again
                        self._sent.setdefault((res, rv), time.monotonic())
                    h.chunk(data)
                pos = newpos
                t = time.monotonic()
                if t >= end:
                    break
                if bookmarks and t >= next_bm:
                    h.chunk(self._event("BOOKMARK", {"kind": kind, "apiVersion": api_version,
                                                     "metadata": {"resourceVersion": str(max(pos, rv_now))}}))
                    pos = max(pos, rv_now)
                    next_bm = t + self.bookmark_interval
            h.chunk(b"")
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._watches.pop(wid, None)

    @staticmethod
    def _typed(o, kind, api_version):
        o = dict(o)
        o["kind"], o["apiVersion"] = kind, api_version
        return o

    @staticmethod
    def _event(typ, obj):
        return (json.dumps({"type": typ, "object": obj}, separators=(",", ":")) + "\n").encode()


# ---- standalone with a control endpoint ----------------------------------------------
class _ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        api = self.server.api
        if self.path == "/state":
            return self._reply(200, {"url": api.url, "resourceVersion": api.resource_version,
                                     "counts": {r: api.count(r) for r in RESOURCES},
                                     "watches": api.watches(), "requests": api.request_count(),
                                     "conn_errors": api.conn_errors()})
        if self.path.startswith("/requests"):
            return self._reply(200, api.requests())
        self._reply(404, {"error": "no such control path"})

    def do_POST(self):
        api = self.server.api
        n = int(self.headers.get("Content-Length") or 0)
        try:
            arg = json.loads(self.rfile.read(n) or b"{}")
            p = self.path
            if p == "/apply":
                out = api.apply_many(arg if isinstance(arg, list) else arg.get("items", [arg]))
                return self._reply(200, {"resourceVersions": [o["metadata"]["resourceVersion"] for o in out]})
            if p == "/delete":
                return self._reply(200, {"deleted": api.delete(arg["resource"], arg["namespace"], arg["name"],
                                                               arg.get("propagationPolicy"))})
            if p == "/gc":
                if "enabled" in arg:
                    api.set_gc(arg["enabled"])
                else:
                    api.run_gc()
            elif p == "/drop-watches":
                api.drop_watches()
            elif p == "/force-gone":
                api.force_gone(arg.get("count", 1), arg.get("mode", "event"), arg.get("resource"))
            elif p == "/compact":
                api.compact()
            elif p == "/stop":
                api.stop()
            elif p == "/start":
                api.start()
            elif p == "/token":
                api.set_token(arg.get("token"))
            elif p == "/latency":
                api.set_latency(arg.get("seconds", 0))
            else:
                return self._reply(404, {"error": "no such control path"})
            return self._reply(200, {"ok": True, "resourceVersion": api.resource_version})
        except APIError as e:
            return self._reply(e.code, e.status)
        except (ValueError, KeyError, TypeError) as e:
            return self._reply(400, {"error": repr(e)})


def _hostport(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT of the API (default %(default)s)")
    ap.add_argument("--tls-dir", help="serve HTTPS with a fresh CA and certificate made here (ca.crt for clients)")
    ap.add_argument("--token", help="the valid bearer token (default: no authentication)")
    ap.add_argument("--control", help="HOST:PORT of the control endpoint (plain HTTP)")
    ap.add_argument("--netns", help="listen inside this network namespace (/run/netns/NAME)")
    ap.add_argument("--load", help="a JSON file with a list of objects to create first")
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    args = ap.parse_args()
    host, port = _hostport(args.listen)
    tls = make_certs(args.tls_dir, [host] if re.match(r"^[0-9.:]+$", host) else [], ["localhost"]) \
        if args.tls_dir else None
    api = FakeAPI(host, port, token=args.token, tls=tls, netns=args.netns, bookmark_interval=args.bookmark_interval)
    if args.load:
        with open(args.load) as f:
            data = json.load(f)
        api.apply_many(data if isinstance(data, list) else data.get("items", []))
    api.start()
    print("fakeapi: serving %s%s" % (api.url, " (CA %s)" % tls["ca"] if tls else ""), flush=True)
    if args.control:
        chost, cport = _hostport(args.control)
        ctl = http.server.ThreadingHTTPServer((chost, cport), _ControlHandler)
        ctl.api = api
        print("fakeapi: control on http://%s:%d" % (chost, cport), flush=True)
        threading.Thread(target=ctl.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
