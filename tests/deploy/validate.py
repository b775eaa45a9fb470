#!/usr/bin/python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Offline checks of deploy/: no cluster, no network.

    /usr/bin/python3 tests/deploy/validate.py [--build build] [-v]

- every manifest in deploy/ and deploy/examples/ against the strict JSON
  schemas of its Kubernetes kind (tests/deploy/schemas/k8s.json, see
  gen_k8s_schemas.py for the source and version);
- the CRDs: what the API server would refuse in a structural schema, and
  printer columns that name fields the schema does not have;
- SandboxRoute / SandboxOverride objects against the CRD's own
  openAPIV3Schema: deploy/examples/ must pass; each tests/deploy/invalid/
  file must fail with exactly the errors its "# expect:" lines name
  (validator@path; "cel@path" for a CEL rule);
- the CEL rules (x-kubernetes-validations): jsonschema cannot run CEL, so
  each rule text has a Python equivalent in CEL_RULES below, and a rule
  without one fails the test;
- the key pattern against the agent's rule, byte by byte;
- the DaemonSet's invariants (capabilities, takeover-friendly update,
  grace period, probes, mounts, flags the built shuntd knows), RBAC
  (read-only, exactly the contract's resources), the kustomization, the
  image recipe's runtime libraries, and the pod entrypoint's signal
  handling (with a fake shuntd).

The last line is "N passed, N failed, N skipped"; exit status 1 on a
failure.
"""

import argparse
import functools
import glob
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

sys.dont_write_bytecode = True

try:
    import jsonschema
    import yaml
except ImportError as e:  # deps.sh installs python3-jsonschema python3-yaml
    print("validate.py: %s (run scripts/deps.sh)" % e)
    print("0 passed, 1 failed, 0 skipped")
    sys.exit(1)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(ROOT, "deploy")
BUILD = os.path.join(ROOT, "build")

# Flags the DaemonSet may pass before the built shuntd knows them (a
# feature being added on another branch): reported, not failed. Empty:
# every flag must be known.
PENDING_FLAGS = {}

NOTES = []


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


@functools.lru_cache(maxsize=None)
def deploy_manifests():
    """[(path, doc)] of every Kubernetes object in deploy/ and its examples
    (shared: callers copy before changing one)."""
    out = []
    for p in sorted(glob.glob(os.path.join(DEPLOY, "*.yaml")) +
                    glob.glob(os.path.join(DEPLOY, "examples", "*.yaml"))):
        if os.path.basename(p) == "kustomization.yaml":
            continue
        out.extend((p, d) for d in load_docs(p))
    return tuple(out)


def find(kind, name=None):
    for p, d in deploy_manifests():
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    raise AssertionError("no %s %s in deploy/" % (kind, name or ""))


# ---- Go-faithful regular expressions ----------------------------------
# jsonschema uses Python's re.search, where '$' also matches before a
# final newline; in Go's RE2 (the API server) it does not.
def go_pattern(p):
    if p.endswith("$") and not p.endswith("\\$"):
        p = p[:-1] + r"\Z"
    return p


def _pattern(validator, patrn, instance, schema):
    if validator.is_type(instance, "string") and not re.search(go_pattern(patrn), instance):
        yield jsonschema.ValidationError("%r does not match %r" % (instance, patrn))


GoValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _pattern})


# ---- CEL: a Python equivalent for each rule the CRDs use ---------------
def go_duration_seconds(s):
    """Go's time.ParseDuration, the parser CEL's duration() uses; None on error."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+|0)", s)
    if not m:
        return None
    total = sum(float(n) * units[u] for n, u in
                re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", m.group(2)))
    if total > (2**63 - 1) / 1e9:  # Go's Duration overflows: a CEL error
        return None
    return -total if m.group(1) == "-" else total


def _nonempty_selector(s):
    return bool(s.get("matchLabels")) or bool(s.get("matchExpressions"))


def _ttl_ok(s):
    d = go_duration_seconds(s)
    return d is not None and 0 < d <= 87600 * 3600


def cel_global_unicast(s):
    """isIP(self) && ip(self).isGlobalUnicast(): Kubernetes' CEL IP library
    parses with Go's netip (no IPv4-mapped IPv6 addresses, no zones, no
    leading zeros: isIP false), and isGlobalUnicast is Go's
    netip.Addr.IsGlobalUnicast: not unspecified (0.0.0.0, ::), loopback,
    link-local unicast, multicast, nor 255.255.255.255."""
    if not isinstance(s, str) or "%" in s:
        return False
    try:
        a = ipaddress.ip_address(s)
    except ValueError:
        return False
    if a.version == 6 and a.ipv4_mapped is not None:
        return False
    if a.version == 4 and a == ipaddress.IPv4Address("255.255.255.255"):
        return False
    return not (a.is_unspecified or a.is_loopback or a.is_link_local or a.is_multicast)


CEL_RULES = {
    "isIP(self) && ip(self).isGlobalUnicast()": cel_global_unicast,
    "has(self.selector) != has(self.addresses)":
        lambda s: ("selector" in s) != ("addresses" in s),
    "has(self.service) != has(self.addresses)":
        lambda s: ("service" in s) != ("addresses" in s),
    "(has(self.service) ? 1 : 0) + (has(self.selector) ? 1 : 0) + (has(self.addresses) ? 1 : 0) == 1":
        lambda s: sum(k in s for k in ("service", "selector", "addresses")) == 1,
    "duration(self) > duration('0s') && duration(self) <= duration('87600h')": _ttl_ok,
    "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
    "(has(self.matchExpressions) && size(self.matchExpressions) > 0)": _nonempty_selector,
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
    "(!has(self.values) || size(self.values) == 0)":
        lambda s: (len(s.get("values") or []) > 0) if s.get("operator") in ("In", "NotIn")
        else len(s.get("values") or []) == 0,
    # Sandbox (crd-sandbox.yaml)
    "self.metadata.name.size() <= 40": lambda s: len(s["metadata"]["name"]) <= 40,
    "!has(self.overrides) || self.overrides.all(o, has(self.resources) && "
    "self.resources.exists(r, r.name == o.to.resource))":
        lambda s: all(o["to"]["resource"] in {r["name"] for r in s.get("resources", [])}
                      for o in s.get("overrides", [])),
    "(self.template.apiVersion == 'apps/v1' && self.template.kind in ['Deployment', 'StatefulSet']) || "
    "(self.template.apiVersion == 'v1' && self.template.kind in ['Service', 'ConfigMap']) || "
    "(self.template.apiVersion == 'batch/v1' && self.template.kind == 'Job')":
        lambda s: (s["template"].get("apiVersion"), s["template"].get("kind")) in SANDBOX_RESOURCE_KINDS,
}


SANDBOX_RESOURCE_KINDS = {("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("v1", "Service"),
                          ("v1", "ConfigMap"), ("batch/v1", "Job")}


def cel_errors(schema, obj, path=()):
    """[(path, message)] for each CEL rule obj breaks, wherever it applies."""
    out = []
    for v in schema.get("x-kubernetes-validations", []):
        fn = CEL_RULES.get(v["rule"])
        if fn is None:
            raise AssertionError("CEL rule without a Python equivalent in validate.py: %r" % v["rule"])
        try:
            ok = fn(obj)
        except (TypeError, AttributeError, KeyError):
            ok = True  # the schema error on this node is reported already
        if not ok:
            out.append((path, v.get("message", v["rule"])))
    if isinstance(obj, dict):
        for k, sub in obj.items():
            if k in schema.get("properties", {}):
                out += cel_errors(schema["properties"][k], sub, path + (k,))
            elif isinstance(schema.get("additionalProperties"), dict):
                out += cel_errors(schema["additionalProperties"], sub, path + (k,))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(obj):
            out += cel_errors(schema["items"], sub, path + (str(i),))
    return out


# ---- CRD schema -> JSON schema ------------------------------------------
def to_jsonschema(node):
    """The CRD's structural schema as the API server applies it: unknown
    fields refused (kubectl's default field validation is Strict), a
    list-type set unique."""
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k.startswith("x-kubernetes-"):
            continue
        if k in ("properties", "patternProperties"):
            out[k] = {pk: to_jsonschema(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
            out[k] = to_jsonschema(v)
        elif k in ("anyOf", "oneOf", "allOf"):
            out[k] = [to_jsonschema(x) for x in v]
        else:
            out[k] = v
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def crd_schemas():
    """kind -> (CRD openAPIV3Schema, JSON schema) for the served version."""
    out = {}
    for p in glob.glob(os.path.join(DEPLOY, "crd-*.yaml")):
        for d in load_docs(p):
            for v in d["spec"]["versions"]:
                if v["storage"]:
                    s = v["schema"]["openAPIV3Schema"]
                    out["%s/%s/%s" % (d["spec"]["group"], v["name"], d["spec"]["names"]["kind"])] = (s, to_jsonschema(s))
    return out


def custom_errors(obj):
    """Sorted 'validator@path' strings for everything wrong with obj."""
    schemas = crd_schemas()
    key = "%s/%s" % (obj.get("apiVersion"), obj.get("kind"))
    if key not in schemas:
        return ["kind@" + key]
    raw, js = schemas[key]
    errs = set()
    for e in GoValidator(js, format_checker=jsonschema.FormatChecker()).iter_errors(obj):
        errs.add("%s@%s" % (e.validator, ".".join(str(x) for x in e.absolute_path)))
    for path, _ in cel_errors(raw, obj):
        errs.add("cel@" + ".".join(path))
    return sorted(errs)


def k8s_errors(obj, _cache={}):
    if "schema" not in _cache:
        with open(os.path.join(HERE, "schemas", "k8s.json")) as f:
            _cache["schema"] = json.load(f)
    s = _cache["schema"]
    key = "%s/%s" % (obj.get("apiVersion"), obj.get("kind"))
    if key not in s["kinds"]:
        return ["no schema for %s (add it to KINDS in gen_k8s_schemas.py)" % key]
    v = GoValidator({"$ref": s["kinds"][key], "definitions": s["definitions"]})
    return ["%s: %s" % ("/".join(str(x) for x in e.absolute_path) or "(top)", e.message)
            for e in v.iter_errors(obj)]


# =========================================================================
class Manifests(unittest.TestCase):
    def test_every_manifest_matches_its_kubernetes_schema(self):
        docs = deploy_manifests()
        self.assertGreater(len(docs), 8)
        bad = []
        for p, d in docs:
            if d.get("apiVersion", "").startswith("shunt.dev/"):
                continue  # custom resources: the CRD tests
            bad += ["%s %s/%s: %s" % (os.path.relpath(p, ROOT), d.get("kind"),
                                      d.get("metadata", {}).get("name"), e) for e in k8s_errors(d)]
        self.assertEqual(bad, [])

    def test_schema_check_catches_a_typo(self):
        # The strict schemas are what make the test above worth having.
        ds = json.loads(json.dumps(find("DaemonSet")))
        vm = ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
        vm["mountPropogation"] = "HostToContainer"
        self.assertTrue(any("mountPropogation" in e for e in k8s_errors(ds)), k8s_errors(ds))
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] = [1]
        self.assertTrue(any("maxSurge" in e for e in k8s_errors(ds)))

    def test_every_file_is_in_the_kustomization(self):
        k = load_docs(os.path.join(DEPLOY, "kustomization.yaml"))[0]
        files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DEPLOY, "*.yaml"))
                       if not p.endswith("kustomization.yaml"))
        self.assertEqual(sorted(k["resources"]), files)
        self.assertEqual([i["name"] for i in k["images"]],
                         [find("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"]])

    def test_kustomize_build(self):
        kubectl = shutil.which("kubectl")
        if not kubectl:
            self.skipTest("kubectl not installed: `kubectl kustomize deploy/` not run "
                          "(the file list is checked above)")
        out = subprocess.run([kubectl, "kustomize", DEPLOY], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        docs = list(yaml.safe_load_all(out.stdout))
        kinds = sorted(d["kind"] for d in docs)
        self.assertEqual(kinds, sorted(["CustomResourceDefinition"] * 3 + [
            "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet",
            "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment"]))
        ds = [d for d in docs if d["kind"] == "DaemonSet"][0]
        self.assertEqual(ds["spec"]["template"]["spec"]["containers"][0]["image"], "shuntd:dev")


class CRDs(unittest.TestCase):
    def walk(self, node, path, in_combinator=False):
        """What the API server refuses in a structural schema."""
        where = "/".join(path) or "(root)"
        if in_combinator:
            for k in ("type", "properties", "items", "additionalProperties", "description", "default",
                      "nullable"):
                self.assertNotIn(k, node, "%s: %s inside anyOf/oneOf/allOf/not" % (where, k))
        elif not (node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")):
            self.assertIn("type", node, "%s: no type" % where)
        self.assertNotIn("uniqueItems", node, "%s: uniqueItems is refused; use x-kubernetes-list-type: set" % where)
        self.assertFalse("properties" in node and "additionalProperties" in node,
                         "%s: properties and additionalProperties together" % where)
        if node.get("x-kubernetes-list-type") == "set":
            self.assertIn(node["items"].get("type"), ("string", "integer", "number", "boolean"), where)
        if node.get("x-kubernetes-list-type") == "map":
            for k in node["x-kubernetes-list-map-keys"]:
                self.assertIn(k, node["items"].get("required", []), "%s: map key %s not required" % (where, k))
        for v in node.get("x-kubernetes-validations", []):
            self.assertIn("message", v, where)
            self.assertIn(v["rule"], CEL_RULES, "%s: CEL rule without a Python equivalent" % where)
        if node.get("type") == "string" and "x-kubernetes-validations" in node:
            # The API server estimates CEL cost from the bounds.
            self.assertIn("maxLength", node, "%s: CEL on an unbounded string" % where)
        if "default" in node:
            self.assertEqual(list(GoValidator(to_jsonschema(node)).iter_errors(node["default"])), [], where)
        for k, sub in node.get("properties", {}).items():
            self.walk(sub, path + [k])
        for k in ("items", "additionalProperties"):
            if isinstance(node.get(k), dict):
                self.walk(node[k], path + [k])
        for k in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(k, []):
                self.walk(sub, path + [k], True)

    def test_structural(self):
        for p in glob.glob(os.path.join(DEPLOY, "crd-*.yaml")):
            for d in load_docs(p):
                self.assertEqual(d["metadata"]["name"], "%s.%s" % (d["spec"]["names"]["plural"], d["spec"]["group"]))
                self.assertEqual([v["name"] for v in d["spec"]["versions"] if v["storage"]], ["v1alpha1"])
                for v in d["spec"]["versions"]:
                    s = v["schema"]["openAPIV3Schema"]
                    self.walk(s, [])
                    self.assertEqual(s["properties"]["metadata"], {"type": "object"})
                    self.assertIn("status", v["subresources"])

    def test_printer_columns_name_existing_fields(self):
        for p in glob.glob(os.path.join(DEPLOY, "crd-*.yaml")):
            for d in load_docs(p):
                for v in d["spec"]["versions"]:
                    for c in v["additionalPrinterColumns"]:
                        # .status.conditions[?(@.type=="Ready")].status: the
                        # filter picks list items, the field is in the item.
                        parts = re.sub(r"\[\?\(.*?\)\]", "", c["jsonPath"]).lstrip(".").split(".")
                        if parts == ["metadata", "creationTimestamp"]:
                            continue
                        node = v["schema"]["openAPIV3Schema"]
                        for part in parts:
                            self.assertIn(part, node.get("properties", {}), "%s: %s" % (p, c["jsonPath"]))
                            node = node["properties"][part]
                            if node.get("type") == "array":
                                node = node["items"]

    def test_contract_names(self):
        crd = find("CustomResourceDefinition", "sandboxroutes.shunt.dev")
        self.assertEqual(crd["spec"]["scope"], "Namespaced")
        self.assertEqual(crd["spec"]["names"]["shortNames"], ["sbr"])
        v = crd["spec"]["versions"][0]
        self.assertTrue(v["served"] and v["storage"])
        spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]
        self.assertEqual(sorted(spec["properties"]), ["fallback", "keys", "sandbox", "service", "ttl"])
        self.assertEqual(sorted(v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]),
                         ["conditions", "expiresAt", "observedGeneration", "sandboxEndpoints"])

    def test_examples_are_valid(self):
        n = 0
        for p, d in deploy_manifests():
            if d["apiVersion"].startswith("shunt.dev/"):
                self.assertEqual(custom_errors(d), [], os.path.relpath(p, ROOT))
                n += 1
        self.assertGreaterEqual(n, 4)

    def test_invalid_objects_fail_for_the_stated_reason(self):
        files = sorted(glob.glob(os.path.join(HERE, "invalid", "*.yaml")))
        self.assertGreater(len(files), 20)
        bad = []
        for p in files:
            text = open(p).read()
            self.assertRegex(text, r"(?m)^# breaks: \S", "%s: say which rule it breaks" % p)
            want = sorted(re.findall(r"(?m)^# expect: (\S+)$", text))
            self.assertTrue(want, "%s: no '# expect: validator@path' line" % p)
            got = custom_errors(load_docs(p)[0])
            if got != want:
                bad.append("%s: expected %s, got %s" % (os.path.basename(p), want, got))
        self.assertEqual(bad, [])

    def test_check_can_fail(self):
        # A valid example broken on purpose must be caught.
        ok = load_docs(os.path.join(DEPLOY, "examples", "sandboxroute.yaml"))[0]
        ok["spec"]["keys"] = ["feat,1"]
        self.assertEqual(custom_errors(ok), ["pattern@spec.keys.0"])


class Rules(unittest.TestCase):
    def key_pattern(self):
        crd = find("CustomResourceDefinition", "sandboxroutes.shunt.dev")
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        return spec["properties"]["keys"]["items"]["pattern"]

    def test_key_pattern_is_the_agents_rule(self):
        # agent/proxy/routekey.c key_byte_ok(): 0x21..0x7e minus , ; = " backslash
        pat = go_pattern(self.key_pattern())
        for c in range(0x110):
            ch = chr(c)
            agent = 0x21 <= c <= 0x7E and ch not in ',;="\\'
            self.assertEqual(bool(re.search(pat, ch)), agent, "character 0x%02x" % c)
        self.assertTrue(re.search(pat, "k" * 63))
        self.assertFalse(re.search(pat, "k" * 64))
        self.assertFalse(re.search(pat, ""))
        self.assertFalse(re.search(pat, "feat-1\n"))

    def test_ttl(self):
        crd = find("CustomResourceDefinition", "sandboxroutes.shunt.dev")
        ttl = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["ttl"]
        pat = go_pattern(ttl["pattern"])
        rule = CEL_RULES[ttl["x-kubernetes-validations"][0]["rule"]]
        for s in ("1s", "90m", "8h", "1h30m", "87600h", "30m1h"):
            self.assertTrue(re.search(pat, s) and rule(s), s)
        for s in ("", "8", "2d", "1.5h", "500ms", "-1h", "8H", " 8h", "8h\n"):
            self.assertFalse(re.search(pat, s), s)
        for s in ("0s", "0h0m", "87600h1s", "99999999999999999999h"):
            self.assertFalse(rule(s), s)

    def test_cel_address_rule(self):
        rule = CEL_RULES["isIP(self) && ip(self).isGlobalUnicast()"]
        for a in ("10.244.1.7", "192.168.0.1", "100.64.0.1", "8.8.8.8", "fd00:244::7", "2001:db8::1",
                  "10.255.255.255", "126.255.255.255", "169.255.0.1"):
            self.assertTrue(rule(a), a)
        for a in ("127.0.0.1", "127.1.2.3", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::",
                  "224.0.0.1", "239.1.1.1", "ff02::1", "255.255.255.255", "::ffff:127.0.0.1",
                  "::ffff:10.0.0.1", "fe80::1%eth0", "010.0.0.1", "x", 7):
            self.assertFalse(rule(a), a)
        # Every address list of both CRDs carries it.
        n = 0
        for kind in ("SandboxRoute", "SandboxOverride"):
            raw = crd_schemas()["shunt.dev/v1alpha1/" + kind][0]

            def walk(node):
                nonlocal n
                if isinstance(node, dict):
                    for k, v in node.get("properties", {}).items():
                        if k == "addresses":
                            rules = [r["rule"] for r in v["items"].get("x-kubernetes-validations", [])]
                            self.assertIn("isIP(self) && ip(self).isGlobalUnicast()", rules, kind)
                            n += 1
                        walk(v)
            walk(raw)
        self.assertEqual(n, 3)

    def test_cel_equivalents(self):
        one = CEL_RULES["has(self.selector) != has(self.addresses)"]
        self.assertTrue(one({"selector": {}, "port": 1}))
        self.assertFalse(one({"selector": {}, "addresses": []}))
        self.assertFalse(one({"port": 1}))
        self.assertIsNone(go_duration_seconds("8d"))
        self.assertEqual(go_duration_seconds("1h30m"), 5400)


class Agent(unittest.TestCase):
    def setUp(self):
        self.ds = find("DaemonSet", "shuntd")
        self.pod = self.ds["spec"]["template"]["spec"]
        self.c = self.pod["containers"][0]

    def args(self):
        out = {}
        for a in self.c["args"]:
            k, _, v = a.partition("=")
            out[k] = v
        return out

    def test_least_privilege(self):
        sc = self.c["securityContext"]
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"], "add": ["BPF", "NET_ADMIN"]})
        self.assertIs(sc["privileged"], False)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertFalse(self.pod.get("hostPID", False))
        self.assertFalse(self.pod.get("hostIPC", False))
        for m in self.c["volumeMounts"]:
            self.assertNotEqual(m.get("mountPropagation"), "Bidirectional")  # needs privileged

    def test_takeover_friendly_rollout(self):
        ru = self.ds["spec"]["updateStrategy"]
        self.assertEqual(ru["type"], "RollingUpdate")
        self.assertEqual(ru["rollingUpdate"], {"maxSurge": 1, "maxUnavailable": 0})
        # A declared port is a host port under hostNetwork: the surge pod
        # would never be scheduled next to the old one.
        for c in self.pod["containers"]:
            self.assertNotIn("ports", c)
        self.assertTrue(self.pod["hostNetwork"])
        self.assertEqual(self.pod["dnsPolicy"], "ClusterFirstWithHostNet")
        self.assertEqual(self.c["command"], ["/usr/local/bin/shuntd-pod"])
        # Same node paths in every pod: a successor finds its predecessor.
        self.assertEqual(self.args()["--control"], "/run/shunt/shunt.sock")

    def test_grace_period_covers_the_drain(self):
        drain = self.args()["--drain-timeout"]
        self.assertRegex(drain, r"^\d+s$")
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], int(drain[:-1]) + 1)

    def test_flags_and_paths(self):
        a = self.args()
        for f in ("--cgroup", "--proxy-addr", "--bpffs", "--control", "--kubernetes", "--metrics-addr"):
            self.assertIn(f, a)
        self.assertEqual(a["--proxy-addr"], "$(NODE_IPS)")
        env = {e["name"]: e for e in self.c["env"]}
        self.assertEqual(env["NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIP")
        port = int(a["--metrics-addr"].rsplit(":", 1)[1])
        self.assertEqual(a["--metrics-addr"], "$(NODE_IP):%d" % port)
        self.assertEqual(int(self.ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]), port)
        mounts = {m["mountPath"]: m for m in self.c["volumeMounts"]}
        vols = {v["name"]: v for v in self.pod["volumes"]}

        def host_path(p):
            for mp, m in mounts.items():
                if p == mp or p.startswith(mp + "/"):
                    return vols[m["name"]]["hostPath"]["path"] + p[len(mp):]
            self.fail("%s is not on a volume" % p)
        self.assertEqual(host_path(a["--bpffs"]), "/sys/fs/bpf/shunt")
        self.assertEqual(host_path(a["--cgroup"]), "/sys/fs/cgroup")
        self.assertEqual(host_path(os.path.dirname(a["--control"])), "/run/shunt")
        # AppArmor's default container profile refuses writes below
        # /sys/fs/ except the cgroup tree: the pins must live elsewhere.
        self.assertFalse(a["--bpffs"].startswith("/sys/"))
        self.assertEqual([t["operator"] for t in self.pod["tolerations"]], ["Exists"])

    def test_probes_on_their_own_listener(self):
        # Issue 9, finding 6: on the metrics port the probes shared its
        # connections with every pod, and idle connections failed them.
        # --health-addr on the node's loopback is reached by the node (the
        # kubelet) only, and has a connection budget of its own.
        a = self.args()
        self.assertIn("--health-addr", a)
        host, _, hport = a["--health-addr"].rpartition(":")
        self.assertEqual(host, "127.0.0.1")
        self.assertNotEqual(int(hport), int(a["--metrics-addr"].rsplit(":", 1)[1]))
        self.assertTrue(self.pod["hostNetwork"], "without it 127.0.0.1 is the pod's own, not the node's")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            self.assertEqual(self.c[probe]["httpGet"], {"host": "127.0.0.1", "path": path, "port": int(hport)},
                             probe)

    def test_proxy_addr_is_every_node_address(self):
        # status.hostIPs: the node's address of each family, comma-separated
        # (a dual-stack node's pods connect with either).
        env = {e["name"]: e for e in self.c["env"]}
        self.assertEqual(env["NODE_IPS"]["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIPs")
        self.assertEqual([x for x in self.c["args"] if x.startswith("--proxy-addr")], ["--proxy-addr=$(NODE_IPS)"])

    def test_pins_only_in_shunts_own_directory(self):
        # The pod sees shunt's directory of the host's bpffs, never the
        # bpffs itself (other agents' pins, read-write).
        vols = {v["name"]: v for v in self.pod["volumes"]}
        mounts = {m["name"]: m for m in self.c["volumeMounts"]}
        self.assertEqual(vols["bpffs"]["hostPath"], {"path": "/sys/fs/bpf/shunt", "type": "DirectoryOrCreate"})
        self.assertEqual(mounts["bpffs"]["mountPath"], self.args()["--bpffs"])
        for v in self.pod["volumes"]:
            hp = v.get("hostPath", {}).get("path")
            if hp is None:
                continue
            hp = hp.rstrip("/") or "/"
            self.assertFalse(hp == "/sys/fs/bpf" or "/sys/fs/bpf".startswith(hp.rstrip("/") + "/"),
                             "volume %s mounts %s: the whole bpffs" % (v["name"], hp))

    def test_flags_known_to_shuntd(self):
        shuntd = os.path.join(BUILD, "shuntd")
        if not os.access(shuntd, os.X_OK):
            self.skipTest("%s not built" % shuntd)
        helptext = subprocess.run([shuntd, "--help"], capture_output=True, text=True).stdout
        known = set(re.findall(r"(--[a-z][-a-z0-9]*)", helptext))
        unknown = [f for f in self.args() if f not in known]
        pending = [f for f in unknown if f in PENDING_FLAGS]
        for f in pending:
            NOTES.append("note: this shuntd does not know %s yet (%s)" % (f, PENDING_FLAGS[f]))
        self.assertEqual([f for f in unknown if f not in PENDING_FLAGS], [])

    def test_rbac_reads_only_what_the_agent_follows(self):
        role = find("ClusterRole", "shunt-agent")
        got = set()
        for r in role["rules"]:
            self.assertEqual(sorted(r["verbs"]), ["get", "list", "watch"])
            self.assertNotIn("resourceNames", r)
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    got.add("%s/%s" % (g, res))
        self.assertEqual(got, {"shunt.dev/sandboxroutes", "shunt.dev/sandboxoverrides", "/services", "/pods",
                               "discovery.k8s.io/endpointslices"})
        b = find("ClusterRoleBinding", "shunt-agent")
        self.assertEqual(b["subjects"], [{"kind": "ServiceAccount", "name": self.pod["serviceAccountName"],
                                          "namespace": self.ds["metadata"]["namespace"]}])

    def test_image_installs_the_libraries_shuntd_links(self):  # and shuntctl, shunt-controller
        bins = [os.path.join(BUILD, b) for b in ("shuntd", "shuntctl", "shunt-controller")]
        if not all(os.access(b, os.X_OK) for b in bins) or not shutil.which("dpkg"):
            self.skipTest("build/shuntd or dpkg missing")
        docker = open(os.path.join(DEPLOY, "Dockerfile")).read()
        runtime = docker.rsplit("\nFROM ", 1)[1]  # the last stage
        missing = []
        for b in bins:
            resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
                ["ldd", b], capture_output=True, text=True).stdout, re.M))
            if any(re.search(r"lib(asan|ubsan|tsan|lsan)\.so", lib) for lib in resolved):
                self.skipTest(NOT_APPLICABLE + "a sanitizer build (SAN=1): the image ships the plain build")
            # The libraries the binary itself names (DT_NEEDED): apt brings
            # their own dependencies along.
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", subprocess.run(
                ["readelf", "-d", b], capture_output=True, text=True).stdout)
            self.assertTrue(needed, "no DT_NEEDED in %s?" % b)
            libs = [resolved[n] for n in needed if n in resolved]
            for lib in libs:
                owner = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
                pkg = owner.stdout.split(":")[0] if owner.returncode == 0 else None
                if pkg and pkg != "libc6" and not re.search(r"\b%s\b" % re.escape(pkg), runtime):
                    missing.append("%s links %s (package %s)" % (os.path.basename(b), lib, pkg))
        self.assertEqual(missing, [], "add them to the runtime stage of deploy/Dockerfile")


class InPodOverlay(unittest.TestCase):
    """deploy/inpod/: the agent of deploy/ plus what in-pod capture needs
    (docs/operations.md). Its patches applied here as kustomize would
    (JSON 6902: replace, add, add at /-)."""

    def patched(self):
        k = load_docs(os.path.join(DEPLOY, "inpod", "kustomization.yaml"))[0]
        self.assertEqual(k["resources"], [".."])
        (p,) = k["patches"]
        self.assertEqual(p["target"], {"kind": "DaemonSet", "name": "shuntd"})
        ds = json.loads(json.dumps(find("DaemonSet", "shuntd")))
        for op in yaml.safe_load(p["patch"]):
            *parents, last = op["path"].strip("/").split("/")
            node = ds
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            if op["op"] == "add" and last == "-":
                node.append(op["value"])
            elif op["op"] in ("add", "replace"):
                if op["op"] == "replace":
                    self.assertIn(last, node, "replace of a missing %s" % op["path"])
                node[last] = op["value"]
            else:
                self.fail("unexpected op %r" % op)
        return ds

    def test_grants_what_in_pod_needs_and_stays_valid(self):
        ds = self.patched()
        spec = ds["spec"]["template"]["spec"]
        sc = spec["containers"][0]["securityContext"]
        self.assertIs(spec["hostPID"], True)
        self.assertEqual(sorted(sc["capabilities"]["add"]), ["BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"])
        # The API server refuses CAP_SYS_ADMIN with allowPrivilegeEscalation false.
        self.assertIs(sc["allowPrivilegeEscalation"], True)
        self.assertIn("--pod-capture=auto", spec["containers"][0]["args"])
        self.assertEqual(k8s_errors(ds), [])


class Image(unittest.TestCase):
    def test_bases_default_to_debians_images(self):
        # make test-image builds from a debootstrap'ed base (BASE_IMAGE,
        # RUNTIME_IMAGE); whoever builds without them gets Debian's images.
        docker = open(os.path.join(DEPLOY, "Dockerfile")).read()
        args = dict(re.findall(r"^ARG (\w+)=(\S*)$", docker, re.M))
        self.assertEqual((args.get("BASE_IMAGE"), args.get("RUNTIME_IMAGE")),
                         ("debian:bookworm", "debian:bookworm-slim"))
        froms = re.findall(r"^FROM (\S+)", docker, re.M)
        self.assertEqual((froms[0], froms[-1]), ("${BASE_IMAGE}", "${RUNTIME_IMAGE}"))


class Entrypoint(unittest.TestCase):
    """deploy/shuntd-pod.sh with a fake shuntd, under each shell present."""

    FAKE = r"""#!/bin/sh
# $1: what to do. Writes what it saw to $LOG.
trap 'echo TERM >> "$LOG"; exit 0' TERM
trap 'echo HUP >> "$LOG"' HUP
case $1 in
exit0) exit 0 ;;
exit3) exit 3 ;;
esac
echo started >> "$LOG"
while :; do sleep 0.05; done
"""

    @staticmethod
    def wait_for(path, text, timeout=10.0):
        """Poll path until it contains text (the machine may be busy)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(path) as f:
                if text in f.read():
                    return True
            time.sleep(0.02)
        return False

    @staticmethod
    def kill_group(p):
        """Whatever a failed assertion left running: the wrapper and the fake."""
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()

    def run_wrapper(self, shell, what, signals=()):
        """signals: [(signal, text the log shows once it was handled)]."""
        d = tempfile.mkdtemp(prefix="shunt-deploy-")
        try:
            fake = os.path.join(d, "shuntd")
            with open(fake, "w") as f:
                f.write(self.FAKE)
            os.chmod(fake, 0o755)
            log, errlog = os.path.join(d, "log"), os.path.join(d, "stderr")
            open(log, "w").close()
            env = dict(os.environ, SHUNTD=fake, LOG=log)
            with open(errlog, "w") as err:
                p = subprocess.Popen([shell, os.path.join(DEPLOY, "shuntd-pod.sh"), what],
                                     env=env, stdout=subprocess.DEVNULL, stderr=err,
                                     start_new_session=True)
            self.addCleanup(self.kill_group, p)
            # Signal only once the wrapper's traps are set: it starts the
            # fake after setting them, and the fake logs "started".
            if what == "run":
                self.assertTrue(self.wait_for(log, "started"), shell)
            elif what == "exit0":
                self.assertTrue(self.wait_for(errlog, "handed over"), shell)
            for sig, shows in signals:
                p.send_signal(sig)
                if shows:
                    self.assertTrue(self.wait_for(log, shows), "%s: %s" % (shell, shows))
            try:
                rc = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = None
            return rc, open(log).read().split(), open(errlog).read()
        finally:
            shutil.rmtree(d)

    def shells(self):
        out = [s for s in ("dash", "bash") if shutil.which(s)]
        if not out:
            self.skipTest("neither dash nor bash")
        return out

    def test_sigterm_is_forwarded_and_ends_the_pod(self):
        for sh in self.shells():
            rc, log, _ = self.run_wrapper(sh, "run", [(signal.SIGTERM, None)])
            self.assertEqual((rc, log), (0, ["started", "TERM"]), sh)

    def test_sighup_is_forwarded(self):
        for sh in self.shells():
            rc, log, _ = self.run_wrapper(sh, "run", [(signal.SIGHUP, "HUP"), (signal.SIGTERM, None)])
            self.assertEqual((rc, log), (0, ["started", "HUP", "TERM"]), sh)

    def test_failure_is_passed_on(self):
        for sh in self.shells():
            rc, _, _ = self.run_wrapper(sh, "exit3")
            self.assertEqual(rc, 3, sh)

    def test_handover_keeps_the_pod_up_until_sigterm(self):
        for sh in self.shells():
            # shuntd exits 0 by itself (handed over): the wrapper says so
            # and stays up; SIGTERM then ends it with 0.
            rc, _, err = self.run_wrapper(sh, "exit0", [(signal.SIGTERM, None)])
            self.assertEqual(rc, 0, sh)
            self.assertIn("handed over", err, sh)

    def test_arguments_reach_shuntd_unchanged(self):
        # shuntd takes --proxy-addr=A,B (status.hostIPs) itself.
        for sh in self.shells():
            d = tempfile.mkdtemp(prefix="shunt-deploy-")
            try:
                fake = os.path.join(d, "shuntd")
                with open(fake, "w") as f:
                    f.write('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\nexit 3\n')
                os.chmod(fake, 0o755)
                args = ["--cgroup=/x", "--proxy-addr=10.0.0.5,fd00::5", "a b", "--proxy-addr=10.0.0.6", "-v"]
                p = subprocess.run([sh, os.path.join(DEPLOY, "shuntd-pod.sh")] + args,
                                   env=dict(os.environ, SHUNTD=fake), capture_output=True, text=True, timeout=10)
                self.assertEqual(p.returncode, 3, sh)
                self.assertEqual(p.stdout.splitlines(), args, sh)
            finally:
                shutil.rmtree(d)

    def test_handover_idles(self):
        sh = self.shells()[0]
        d = tempfile.mkdtemp(prefix="shunt-deploy-")
        try:
            fake = os.path.join(d, "shuntd")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(fake, 0o755)
            p = subprocess.Popen([sh, os.path.join(DEPLOY, "shuntd-pod.sh")], env=dict(os.environ, SHUNTD=fake),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            self.addCleanup(self.kill_group, p)
            time.sleep(1.0)
            self.assertIsNone(p.poll(), "the pod's container ended after a handover: the kubelet would restart it")
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=5), 0)
        finally:
            shutil.rmtree(d)


# =========================================================================
# A skip whose reason starts with this is not a missing prerequisite (the
# check does not apply to this build); --strict fails every other skip.
NOT_APPLICABLE = "not applicable: "


class Result(unittest.TestResult):
    def __init__(self, verbose, strict=False):
        super().__init__()
        self.verbose, self.n_ok, self.strict, self.n_strict = verbose, 0, strict, 0

    def addSuccess(self, test):
        self.n_ok += 1
        if self.verbose:
            print("ok    %s" % test.id().replace("__main__.", ""))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        print("FAIL  %s\n%s" % (test.id().replace("__main__.", ""), self._exc_info_to_string(err, test)))

    def addError(self, test, err):
        super().addError(test, err)
        print("ERROR %s\n%s" % (test.id().replace("__main__.", ""), self._exc_info_to_string(err, test)))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self.strict and not reason.startswith(NOT_APPLICABLE):
            self.n_strict += 1
            print("FAIL  %s: skipped in strict mode (a missing prerequisite): %s"
                  % (test.id().replace("__main__.", ""), reason))
            return
        print("skip  %s: %s" % (test.id().replace("__main__.", ""), reason))



class Controller(unittest.TestCase):
    """deploy/controller.yaml: the Sandbox controller apart from the agent."""

    def setUp(self):
        self.dep = find("Deployment", "shunt-controller")
        self.pod = self.dep["spec"]["template"]["spec"]
        self.ctr = self.pod["containers"][0]

    def test_an_ordinary_pod(self):
        for f in ("hostNetwork", "hostPID", "hostIPC", "volumes"):
            self.assertNotIn(f, self.pod)
        self.assertTrue(self.pod["securityContext"]["runAsNonRoot"])
        sc = self.ctr["securityContext"]
        self.assertEqual((sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"], sc["capabilities"]),
                         (False, True, {"drop": ["ALL"]}))
        self.assertEqual(self.ctr["command"], ["/usr/local/bin/shunt-controller"])
        self.assertEqual(self.ctr["image"], find("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"])
        self.assertGreaterEqual(self.dep["spec"]["replicas"], 2, "a standby takes over from a dead leader")
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in self.ctr["env"]}
        self.assertEqual(env, {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"})

    def test_flags_known_to_the_controller(self):
        exe = os.path.join(BUILD, "shunt-controller")
        if not os.access(exe, os.X_OK):
            self.skipTest("%s not built" % exe)
        helptext = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
        known = set(re.findall(r"(--[a-z][-a-z0-9]*)", helptext))
        self.assertEqual([a for a in self.ctr["args"] if a.startswith("--") and a not in known], [])

    def test_own_account_and_the_agent_stays_read_only(self):
        self.assertEqual(self.pod["serviceAccountName"], "shunt-controller")
        b = find("ClusterRoleBinding", "shunt-controller")
        self.assertEqual(b["subjects"], [{"kind": "ServiceAccount", "name": "shunt-controller",
                                          "namespace": "shunt-system"}])
        self.assertEqual(b["roleRef"]["name"], "shunt-controller")
        for r in find("ClusterRole", "shunt-agent")["rules"]:
            self.assertEqual(sorted(r["verbs"]), ["get", "list", "watch"])
        # No Secrets, no pods (the Deployment controller makes those), no
        # wildcard, leases only in the controller's namespace.
        grants = set()
        for r in find("ClusterRole", "shunt-controller")["rules"]:
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    for v in r["verbs"]:
                        grants.add((g, res, v))
        self.assertFalse([x for x in grants if "*" in x or x[1] in ("secrets", "pods", "leases")], grants)
        lease = find("Role", "shunt-controller-lease")
        self.assertEqual(lease["metadata"]["namespace"], "shunt-system")
        self.assertEqual(lease["rules"], [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                           "verbs": ["get", "create", "update"]}])


def main():
    global BUILD
    ap = argparse.ArgumentParser(description="offline checks of deploy/")
    ap.add_argument("--build", default=BUILD)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--strict", action="store_true", default=os.environ.get("SHUNT_TESTS_STRICT") == "1",
                    help="a check skipped for a missing prerequisite fails (default: SHUNT_TESTS_STRICT=1)")
    opts = ap.parse_args()
    BUILD = os.path.abspath(opts.build)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    res = Result(opts.verbose, opts.strict)
    t0 = time.time()
    try:
        suite.run(res)
    except Exception:
        traceback.print_exc()
        res.errors.append((None, "crash"))
    for n in sorted(set(NOTES)):
        print(n)
    failed = len(res.failures) + len(res.errors) + res.n_strict
    print("deploy: %.1fs" % (time.time() - t0))
    if not res.n_ok:
        print("FAIL  nothing passed")
    print("%d passed, %d failed, %d skipped" % (res.n_ok, failed, len(res.skipped) - res.n_strict))
    return 1 if failed or not res.n_ok else 0


if __name__ == "__main__":
    sys.exit(main())
