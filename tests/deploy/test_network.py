"""Who may reach what, port by port: the NetworkPolicies of every render evaluated as the API's
semantics define them (a pod selected by no policy of a direction is open in it; a selected pod
admits only what some rule of a selecting policy allows; a connection needs the source's egress and
the destination's ingress), over the twinops workloads and the peers around them, and compared with
the table a reader expects. No CNI runs here: this is the policy's meaning, not a packet test."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field

_NAME = "kubernetes.io/metadata.name"
# The ports a predictor pod listens on: the model server (HTTP, gRPC) and KServe's agent.
_PREDICTOR_PORTS = (8080, 8081, 9081)


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict = field(hash=False)
    ports: tuple[int, ...] = ()
    ip: str = "10.244.0.10"


def _selected(selector: dict, labels: dict) -> bool:
    if not labels.items() >= selector.get("matchLabels", {}).items():
        return False
    for expression in selector.get("matchExpressions", []):
        value, present = labels.get(expression["key"]), expression["key"] in labels
        operator = expression["operator"]
        if (operator == "Exists" and not present) or (operator == "DoesNotExist" and present):
            return False
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and present and value in expression["values"]:
            return False
    return True


def _peer_matches(peer: dict, pod: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(pod.ip)
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    if "namespaceSelector" in peer:
        if not _selected(peer["namespaceSelector"], {_NAME: pod.namespace}):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return _selected(peer.get("podSelector", {}), pod.labels)


def _allowed(policies: list[dict], pod: Pod, peer: Pod, port: int, direction: str) -> bool:
    """Whether ``pod`` admits ``peer`` on ``port`` in ``direction`` (Ingress: peer -> pod)."""
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == pod.namespace
        and direction in policy["spec"].get("policyTypes", ["Ingress"])
        and _selected(policy["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            ports = rule.get("ports")
            if peers and not any(_peer_matches(p, peer, policy["metadata"]["namespace"]) for p in peers):
                continue
            if ports and not any(p.get("port") == port for p in ports):
                continue
            return True
    return False


def _pods(docs: list[dict], renders, namespace: str) -> tuple[list[Pod], list[Pod]]:
    """(sources, destinations): the twinops workloads, and the peers a cluster has around them."""
    ours = []
    for workload in renders.workloads(docs):
        ports = {port["containerPort"] for c in workload.containers for port in c.get("ports", [])}
        if workload.kind == "InferenceService":
            ports = set(_PREDICTOR_PORTS)
        ours.append(Pod(workload.name, namespace, workload.labels, tuple(sorted(ports))))
    step = {"workflows.argoproj.io/workflow": "twin-pipeline-x"}
    outside = [
        Pod("pipeline-step", namespace, step),
        Pod("pipeline-step@kubeflow", "kubeflow", step),
        Pod("trainjob-node", namespace, {"jobset.sigs.k8s.io/jobset-name": "twin-sft"}, (29400,)),
        Pod("stranger", namespace, {"app": "debug"}),
        # The ingress gateway: where twin-rag calls twin-llm's route (Istio 80/8080, Envoy Gateway 10080).
        Pod("gateway", "istio-system", {"app": "istio-ingressgateway"}, (80, 8080, 10080)),
        Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, (9090,)),
        Pod("other-namespace", "default", {"app": "web"}),
        Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, (53,)),
        Pod("node-local-dns", "", {}, (53,), ip="169.254.20.10"),
        Pod("istiod", "istio-system", {"app": "istiod"}, (15012,)),
        Pod("ml-pipeline", "kubeflow", {"app": "ml-pipeline"}, (8888,)),
        Pod("apiserver", "", {}, (443, 6443), ip="172.18.0.2"),  # no pod: an address
        # prod's MLflow stores, outside the cluster's pods: addresses too.
        Pod("postgresql", "", {}, (5432,), ip="10.96.40.12"),
        Pod("s3", "", {}, (443, 9000), ip="52.216.0.10"),
    ]
    return ours + outside, ours + [pod for pod in outside if pod.ports]


def reachability(docs: list[dict], renders) -> set[tuple[str, str, int]]:
    namespace = next(d for d in docs if d["kind"] == "ConfigMap")["metadata"]["namespace"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    sources, destinations = _pods(docs, renders, namespace)
    table = set()
    for source in sources:
        for destination in destinations:
            if source.namespace != namespace and destination.namespace != namespace:
                continue  # between two other namespaces: not ours to decide
            for port in destination.ports:
                if _allowed(policies, source, destination, port, "Egress") and _allowed(
                    policies, destination, source, port, "Ingress"
                ):
                    table.add((source.name, destination.name, port))
    return table


def _expected(
    workloads: set[str], external_mlflow: bool, namespace_pods: set[str], *, qdrant_cluster: bool = False
) -> set[tuple[str, str, int]]:
    reranker = "twin-reranker" in workloads
    steps = {"pipeline-step", "pipeline-step@kubeflow"}
    scorers = {"twin-llm", *({"twin-reranker"} if reranker else set())}
    # The predictors' front doors: whole namespaces (the gateways', Istio's, Prometheus').
    front = {"gateway", "istiod", "prometheus"}
    served = {
        ("mongodb", 27017): {"twinops-drift", "twinops-rollout", "twin-rag", "trainjob-node", *steps},
        ("qdrant", 6333): {"twin-rag", *steps},
        ("qdrant", 6334): {"twin-rag", *steps},
        ("mlflow", 5000): {
            "twinops-drift",
            "twinops-rollout",
            "twinops-mlflow-users",
            "trainjob-node",
            *scorers,
            *steps,
        },
        ("redis", 6379): {"twin-rag", *steps},
        ("twinops-drift", 8080): {"twin-rag", "prometheus", *scorers},
        ("trainjob-node", 29400): {"trainjob-node"},
        # Outside the namespace: what its pods may reach there.
        ("kube-dns", 53): namespace_pods,
        ("node-local-dns", 53): namespace_pods,
        ("istiod", 15012): namespace_pods,
        ("prometheus", 9090): {"twinops-rollout", "pipeline-step"},
        ("ml-pipeline", 8888): {"pipeline-step"},
        ("apiserver", 6443): {"twinops-rollout", "pipeline-step"},
        # twin-rag reaches twin-llm through its route at the gateway, where the canary split is.
        ("gateway", 80): {"twin-rag"},
        ("gateway", 8080): {"twin-rag"},
        ("gateway", 10080): {"twin-rag"},
        # The API server has no selector, so the rules that reach it (any address on 443 and 6443)
        # reach any address on those ports: an S3 API on 443 too.
        ("apiserver", 443): {"twinops-rollout", "pipeline-step"},
        ("s3", 443): {"twinops-rollout", "pipeline-step"},
    }
    if "redis-replica" in workloads:  # prod: the standby replicates the primary
        served[("redis", 6379)].add("redis-replica")
    if "mongodb-replica-set" in workloads:  # prod: the members replicate; the Job initiates them
        served[("mongodb", 27017)] |= {"mongodb", "mongodb-replica-set"}
    if qdrant_cluster:
        served[("qdrant", 6335)] = {"qdrant"}  # prod: the peers, and only they, on the p2p port
    if external_mlflow:  # prod: MLflow's PostgreSQL and S3 API (any address on their ports)
        for target in [("postgresql", 5432), ("s3", 443), ("s3", 9000), ("apiserver", 443)]:
            served.setdefault(target, set()).add("mlflow")
    for port in _PREDICTOR_PORTS:
        for predictor in scorers:
            served[(predictor, port)] = {"twin-rag", "twinops-rollout", *front, *steps}
        served[("twin-rag", port)] = set(front)
    return {(source, target, port) for (target, port), sources in served.items() for source in sources}


def test_each_service_answers_its_users_only_and_each_pod_reaches_what_it_calls(renders, docs) -> None:
    table = reachability(docs, renders)
    workloads = {w.name for w in renders.workloads(docs)}
    in_namespace = workloads | {"pipeline-step", "trainjob-node", "stranger"}
    mlflow = next(w for w in renders.workloads(docs) if w.name == "mlflow").containers[0]
    external = "MLFLOW_BACKEND_STORE_URI" in {env["name"] for env in mlflow["env"]}
    qdrant = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "qdrant")
    expected = _expected(workloads, external, in_namespace, qdrant_cluster=qdrant["spec"]["replicas"] > 1)
    assert sorted(table - expected) == [], "reachable but not expected"
    assert sorted(expected - table) == [], "expected but not reachable"


def test_no_pod_but_the_writers_reaches_mlflow_and_none_the_stores_from_outside(renders) -> None:
    """The registry's doors as a reader of the issue checks them: MLflow takes connections only from
    its readers and writers, and a pod of another namespace reaches no store."""
    docs = renders.kustomize("dev")
    table = reachability(docs, renders)
    infrastructure = {"kube-dns", "node-local-dns", "istiod"}
    assert not {
        row for row in table if row[0] in {"stranger", "other-namespace"} and row[1] not in infrastructure
    }
    assert ("twin-rag", "mlflow", 5000) not in table


def test_the_table_bites(renders) -> None:
    """A Redis policy opened to every peer lets the ingress gateway in (a flow nobody expects), and
    without twin-rag's egress policy it no longer reaches its stores (flows it needs): the
    comparison with the expected table catches both."""
    docs = copy.deepcopy(renders.kustomize("dev"))
    for doc in docs:
        if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == "twinops-redis":
            doc["spec"]["ingress"][0].pop("from")
    assert ("gateway", "redis", 6379) in reachability(docs, renders)
    docs = [d for d in docs if d["metadata"]["name"] != "twinops-rag-egress"]
    assert ("twin-rag", "mongodb", 27017) not in reachability(docs, renders)
