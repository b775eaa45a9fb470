# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""shuntd following the cluster with only a kubeconfig (--kubeconfig), the
way a developer runs it against a kind cluster: server, CA and a fixed
user token in the file, no token file.

Found while sharing the API client with the Sandbox controller (issue
12): the watcher sent the token of a --k8s-token-file, never a
kubeconfig's own `token:`, so every request was a 401.
"""

import os

import node as N
from test_k8s import CHANGE_TIMEOUT, NODE, NS, SBX_TO4, SBX_TO6, F, K8sBase, routes_for


class K8sKubeconfig(K8sBase):
    tls = True

    @classmethod
    def prepare_node(cls, node):
        super().prepare_node(node)
        # Drop what K8sBase passes for the API; keep the rest.
        args, out, skip = node.shuntd_args, [], 0
        for a in args:
            if skip:
                skip -= 1
                continue
            if a in ("--k8s-api", "--k8s-token-file", "--k8s-ca-file"):
                skip = 1
                continue
            out.append(a)
        path = os.path.join(node.tmp, "kubeconfig")
        with open(path, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: e2e\n"
                    "clusters:\n- name: fake\n  cluster:\n    server: %s\n    certificate-authority: %s\n"
                    "users:\n- name: dev\n  user:\n    token: t0\n"
                    "contexts:\n- name: e2e\n  context: {cluster: fake, user: dev}\n"
                    % (cls.api.url, os.path.join(node.tmp, "pki", "ca.crt")))
        node.shuntd_args[:] = out + ["--kubeconfig", path]
        assert "--node-name" in out and NODE in out

    def test_kubeconfig_token_is_sent(self):
        self.wait_synced()
        auth = {r["auth"] for r in self.api.requests() if r["resource"]}
        self.assertEqual(auth, {"Bearer t0"})
        self.api.apply(F.sandboxroute(NS, "kc", "web", ["kc-1"], N.HTTP_PORT, selector={"app": "web",
                                                                                       "sandbox": "feat"}))
        self.wait_routes(routes_for("kc-1", SBX_TO4, SBX_TO6), CHANGE_TIMEOUT, "the routes of kc")
