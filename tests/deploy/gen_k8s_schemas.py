#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Regenerate tests/deploy/schemas/k8s.json, the strict JSON schemas of
the Kubernetes kinds that deploy/ uses and tests/k8s/fakeapi.py serves.

    make deploy-schemas          (npm packs the sources into a temp dir)
    python3 tests/deploy/gen_k8s_schemas.py KUBERNETES_MODELS_DIR APIMACHINERY_DIR OUT

The source is the npm packages kubernetes-models and
@kubernetes-models/apimachinery (MIT), generated from the Kubernetes
OpenAPI spec (Apache-2.0). They ship compiled validators and TypeScript
declarations, not JSON schemas; the declarations are regular enough to
read back: one interface per definition, one `"field"?: TYPE;` per
property. The schemas made from them are *strict*: a field a definition
does not declare is an error (a typo like `mountPropogation` would
otherwise pass, and the API server would drop or refuse it).
What they do not carry: integer vs number (both `number`) and formats.
"""

import json
import os
import re
import sys

# The kinds deploy/ and its examples use, and those the fake API server
# serves: (apiVersion, kind) -> definition.
KINDS = {
    ("v1", "Namespace"): "IIoK8sApiCoreV1Namespace",
    ("v1", "ServiceAccount"): "IIoK8sApiCoreV1ServiceAccount",
    ("v1", "Service"): "IIoK8sApiCoreV1Service",
    ("apps/v1", "DaemonSet"): "IIoK8sApiAppsV1DaemonSet",
    ("apps/v1", "Deployment"): "IIoK8sApiAppsV1Deployment",
    # What tests/k8s/fakeapi.py serves and checks every accepted object of
    # against these schemas (the Sandbox controller's kinds among them).
    ("v1", "Pod"): "IIoK8sApiCoreV1Pod",
    ("v1", "ConfigMap"): "IIoK8sApiCoreV1ConfigMap",
    ("v1", "Secret"): "IIoK8sApiCoreV1Secret",
    ("v1", "Event"): "IIoK8sApiCoreV1Event",
    ("discovery.k8s.io/v1", "EndpointSlice"): "IIoK8sApiDiscoveryV1EndpointSlice",
    ("apps/v1", "StatefulSet"): "IIoK8sApiAppsV1StatefulSet",
    ("apps/v1", "ReplicaSet"): "IIoK8sApiAppsV1ReplicaSet",
    ("batch/v1", "Job"): "IIoK8sApiBatchV1Job",
    ("coordination.k8s.io/v1", "Lease"): "IIoK8sApiCoordinationV1Lease",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "IIoK8sApiRbacV1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "IIoK8sApiRbacV1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "IIoK8sApiRbacV1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "IIoK8sApiRbacV1RoleBinding",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"):
        "IIoK8sApiextensionsApiserverPkgApisApiextensionsV1CustomResourceDefinition",
}

# Definitions the OpenAPI spec leaves untyped; the declarations show them
# as empty interfaces. What they really hold:
PFX = "IIoK8sApiextensionsApiserverPkgApisApiextensionsV1"
SPECIAL = {
    PFX + "JSON": {},
    PFX + "JSONSchemaPropsOrBool": {"anyOf": [{"$ref": "#/definitions/" + PFX + "JSONSchemaProps"},
                                              {"type": "boolean"}]},
    PFX + "JSONSchemaPropsOrArray": {"anyOf": [{"$ref": "#/definitions/" + PFX + "JSONSchemaProps"},
                                               {"type": "array", "items": {
                                                   "$ref": "#/definitions/" + PFX + "JSONSchemaProps"}}]},
    PFX + "JSONSchemaPropsOrStringArray": {"anyOf": [
        {"$ref": "#/definitions/" + PFX + "JSONSchemaProps"},
        {"type": "array", "items": {"type": "string"}}]},
}


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def scan(dirs):
    """canonical name -> (path, local name, 'interface'|'alias', body)."""
    defs = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in files:
                if not f.endswith(".d.ts") or root.endswith("_schemas"):
                    continue
                text = strip_comments(open(os.path.join(root, f)).read())
                m = re.search(r"export type \{ (I\w+) as (IIoK8s\w+),", text)
                if not m:
                    continue
                local, canon = m.groups()
                im = re.search(r"^export interface %s(?: extends \w+)? \{\n(.*?)^\}" % local, text, re.S | re.M)
                if im:
                    defs[canon] = (local, "interface", im.group(1))
                    continue
                am = re.search(r"^export type %s = (.*?);" % local, text, re.M)
                if am:
                    defs[canon] = (local, "alias", am.group(1))
    return defs


def split_top(s, sep):
    """Split s on sep outside <>, {} and quotes."""
    out, depth, cur, q = [], 0, "", False
    for ch in s:
        if ch == '"':
            q = not q
        elif not q and ch in "<{[":
            depth += 1
        elif not q and ch in ">}]":
            depth -= 1
        if ch == sep and depth == 0 and not q:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [x.strip() for x in out]


def members(body):
    """[(name, optional, type text)] of an interface body."""
    out = []
    for part in split_top(body, ";"):
        part = part.strip()
        if not part:
            continue
        m = re.match(r'"([^"]+)"(\?)?:\s*(.*)$', part, re.S)
        if not m:
            raise ValueError("cannot read member %r" % part)
        out.append((m.group(1), bool(m.group(2)), " ".join(m.group(3).split())))
    return out


def type_schema(t, local_names, refs):
    t = t.strip()
    alts = split_top(t, "|")
    if len(alts) > 1:
        if all(a.startswith('"') for a in alts):
            return {"type": "string", "enum": [json.loads(a) for a in alts]}
        kinds = sorted({{"string": "string", "number": "number"}.get(a, "?") for a in alts})
        if "?" not in kinds:
            return {"type": kinds}
        raise ValueError("union %r" % t)
    if t in ("string", "boolean"):
        return {"type": t}
    if t == "number":
        return {"type": "number"}
    if t in ("any", "unknown"):
        return {}
    if t.startswith('"'):
        return {"type": "string", "enum": [json.loads(t)]}
    m = re.match(r"Array<(.*)>$", t)
    if m:
        return {"type": "array", "items": type_schema(m.group(1), local_names, refs)}
    m = re.match(r"\{ \[key: string\]: (.*?);? \}$", t)
    if m:
        return {"type": "object", "additionalProperties": type_schema(m.group(1), local_names, refs)}
    if t.startswith("{") and t.endswith("}"):  # an inline object (StatefulSet's volumeClaimTemplates)
        return object_schema(members(t[1:-1]), local_names, refs)
    if re.match(r'I\w+\["\w+"\]$', t):  # ISubject["kind"]: a string
        return {"type": "string"}
    if re.match(r"I\w+$", t):
        canon = local_names.get(t, t)
        refs.add(canon)
        return {"$ref": "#/definitions/" + canon}
    raise ValueError("type %r" % t)


def object_schema(ms, local_names, refs):
    """A strict object schema of members() [(name, optional, type)]."""
    sch = {"type": "object", "additionalProperties": False, "properties": {}}
    req = []
    for fname, optional, ftype in ms:
        sch["properties"][fname] = type_schema(ftype, local_names, refs)
        if not optional:
            req.append(fname)
    if req:
        sch["required"] = req
    return sch


def build(defs, roots):
    out, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        if name in SPECIAL:
            out[name] = SPECIAL[name]
            for m in re.findall(r"#/definitions/(\w+)", json.dumps(SPECIAL[name])):
                todo.append(m)
            continue
        local, what, body = defs[name]
        refs = set()
        if what == "alias":
            out[name] = type_schema(body, {}, refs)
        else:
            ms = members(body)
            if not ms:
                out[name] = {}  # untyped in the spec (RawExtension, FieldsV1)
            else:
                out[name] = object_schema(ms, {local: name}, refs)
        todo.extend(refs)
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    km, am, dest = sys.argv[1:]
    version = json.load(open(os.path.join(km, "package.json")))["version"]
    am_version = json.load(open(os.path.join(am, "package.json")))["version"]
    defs = scan([km, am])
    doc = {
        "$comment": "Generated by tests/deploy/gen_k8s_schemas.py from the npm packages "
                    "kubernetes-models %s and @kubernetes-models/apimachinery %s (MIT; "
                    "data from the Kubernetes OpenAPI spec, Apache-2.0). Do not edit."
                    % (version, am_version),
        "kinds": {"%s/%s" % k: "#/definitions/" + v for k, v in KINDS.items()},
        "definitions": build(defs, KINDS.values()),
    }
    with open(dest, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print("%s: %d definitions" % (dest, len(doc["definitions"])))


if __name__ == "__main__":
    main()
