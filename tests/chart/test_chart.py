"""The Helm chart, loaded, linted and rendered by Helm's own Go SDK (helm-python-sdk), every
manifest validated against the Kubernetes schemas (kubernetes-validate), and the rendered
bridge environment fed to the real settings model.

Scenarios are the default values plus a few realistic installs; a scenario is a values dict.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import redis
import yaml

from bridge import __version__, metrics
from bridge.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sipmuc-bridge"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "voice", "telephony"
FULLNAME = f"{RELEASE}-sipmuc-bridge"
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # Two hostNetwork nodes, every optional object on, TLS from inline PEM, given secrets.
    "host-network-full": {
        "replicaCount": 2,
        "xmpp": {"secret": "component-secret-value", "host": "prosody.xmpp", "port": 5347},
        "sip": {
            "domain": "voice.example.org",
            "transports": ["udp", "tcp", "tls"],
            "tls": {"certificate": PEM_CERT, "privateKey": PEM_KEY},
        },
        "workers": {"poolSize": 15},
        "redis": {"internal": {"password": "redis pass/with:specials"}},
        "networkPolicy": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "kamailio": {"enabled": True, "advertisedAddress": "198.51.100.7"},
        "log": {"level": "debug"},
    },
    # A Pod Security "restricted" namespace: per-pod load balancers, no real-time scheduling,
    # external Redis, secrets managed outside the chart, TLS from cert-manager.
    "restricted-load-balancer": {
        "replicaCount": 3,
        "realtime": {"enabled": False},
        "xmpp": {"existingSecret": "xmpp-component", "existingSecretKey": "secret"},
        "sip": {
            "transports": ["udp", "tls"],
            "tls": {"existingSecret": "sip-cert"},
            "rtp": {"portStart": 40000, "portCount": 100},
            "redirectContact": "sip:{room}@$(POD_NAME).sip.example.org:5060",
            "exposure": {
                "mode": "loadBalancer",
                "service": {"loadBalancerIPs": ["203.0.113.10", "203.0.113.11"]},
            },
        },
        "redis": {
            "mode": "external",
            "external": {"existingSecret": "redis-conn", "existingSecretKey": "url"},
        },
        "image": {"digest": "sha256:" + "ab" * 32},
        "podDisruptionBudget": {"maxUnavailable": "34%"},
    },
    # The smallest site: one pod on NodePorts, Redis embedded in the pod.
    "node-port-embedded": {
        "realtime": {"enabled": False},
        "sip": {
            "port": 30060,
            "tlsPort": 30061,
            "rtp": {"portStart": 31000, "portCount": 40},
            "exposure": {"mode": "nodePort"},
        },
        "workers": {"basePort": 30062, "poolSize": 2},
        "redis": {"mode": "embedded"},
    },
    # Behind an SBC, Kamailio front for clients that do not follow 302, Redis by URL.
    "cluster-ip-kamailio": {
        "sip": {"exposure": {"mode": "clusterIP"}},
        "workers": {"basePort": None},
        "redis": {"mode": "external", "external": {"url": "rediss://:pw@redis.example:6380/2"}},
        "kamailio": {"enabled": True, "service": {"type": "ClusterIP"}},
        "podDisruptionBudget": {"enabled": False},
        "serviceAccount": {"create": False},
    },
}

# Values of Secrets the chart does not create (existingSecret) for the settings check.
EXTERNAL_SECRETS = {
    ("xmpp-component", "secret"): "external-component-secret",
    ("redis-conn", "url"): "redis://:pw@redis.example:6379/0",
}


class _StrictLoader(yaml.SafeLoader):
    """YAML loader that refuses duplicate keys (the API server would keep only one)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    duplicates = {key for key in keys if keys.count(key) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate keys {sorted(duplicates)}", node.start_mark
        )
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _no_duplicates,  # type: ignore[arg-type]
)


def render_files(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        files: dict[str, str] = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return files


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name, text in sorted(render_files(values).items()):
        if name.endswith("NOTES.txt"):
            continue
        for doc in yaml.load_all(text, Loader=_StrictLoader):
            if doc:
                docs.append(doc)
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = find(docs, kind, name)
    return doc


def bridge_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, bridge container) of the bridge StatefulSet."""
    pod = one(docs, "StatefulSet", FULLNAME)["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "bridge"]
    return pod, container


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    name: str = request.param
    return name, render(SCENARIOS[name])


# --- load and lint -------------------------------------------------------------------------------


def test_chart_loads_with_metadata_schema_and_defaults_that_validate() -> None:
    with helm.Chart.load(CHART) as chart:
        assert chart.name == "sipmuc-bridge"
        assert chart.metadata["appVersion"] == __version__  # image tag = the bridge release
        assert chart.schema is not None
        chart.validate_schema(chart.values)
        assert chart.values["image"]["repository"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART, SCENARIOS[name], strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# --- Kubernetes schemas -------------------------------------------------------------------------

CRD_REQUIRED = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("groups",),
}


def test_every_manifest_is_valid_kubernetes(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = scenario
    assert docs
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_REQUIRED:  # not in the core schemas: check the fields the operator needs
            for field in CRD_REQUIRED[key]:
                assert doc["spec"][field], (key, field)
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_invalid_manifests_are_caught_by_the_validator() -> None:
    """The validation above has teeth: a wrong field type is rejected."""
    docs = render({})
    statefulset = one(docs, "StatefulSet", FULLNAME)
    statefulset["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBE_VERSION, strict=True)


def test_object_names_are_unique(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = scenario
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys))


# --- the bridge's settings ----------------------------------------------------------------------


def bridge_environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The environment Kubernetes would give the bridge container (fieldRefs faked)."""
    _, container = bridge_container(docs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        data = one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
        env.update({key: str(value) for key, value in data.items()})
    secrets = {doc["metadata"]["name"]: doc for doc in find(docs, "Secret") if doc.get("data")}
    fields = {
        "metadata.name": f"{FULLNAME}-0",
        "metadata.namespace": NAMESPACE,
        "status.podIP": "10.1.2.3",
        "status.hostIP": "10.1.2.3",
    }
    for item in container["env"]:
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
        elif "fieldRef" in item["valueFrom"]:
            value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            if ref["name"] in secrets:
                value = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
            else:
                value = EXTERNAL_SECRETS[(ref["name"], ref["key"])]
        env[item["name"]] = value
    return env


def test_rendered_environment_is_accepted_by_the_settings_model(
    scenario: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, docs = scenario
    env = bridge_environment(docs)
    assert all(not key.startswith("SIPMUC_") or "__" in key for key in env)
    for key in list(os.environ):
        if key.startswith("SIPMUC_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings: Settings = load_settings()
    values = SCENARIOS[name]
    assert settings.log.format.value == "json"
    assert settings.sip.bind_host == "0.0.0.0"
    assert [t.value for t in settings.sip.transports] == values.get("sip", {}).get(
        "transports", ["udp", "tcp"]
    )
    assert settings.xmpp.secret.get_secret_value()
    if values.get("redis", {}).get("mode") == "embedded":
        assert settings.redis.url is None
        assert str(settings.redis.embedded_dir).startswith("/var/lib/sipmuc")
    else:
        assert settings.redis.url is not None
    if "tls" in values.get("sip", {}).get("transports", []):
        assert str(settings.sip.tls_certificate) == "/etc/sipmuc/tls/tls.crt"


def test_internal_redis_url_carries_the_escaped_password() -> None:
    docs = render(SCENARIOS["host-network-full"])
    env = bridge_environment(docs)
    assert env["SIPMUC_REDIS__URL"] == (
        f"redis://:redis%20pass%2Fwith%3Aspecials@{FULLNAME}-redis.{NAMESPACE}.svc:6379/0"
    )
    parsed = redis.connection.parse_url(env["SIPMUC_REDIS__URL"])
    assert parsed["password"] == "redis pass/with:specials"


def test_secrets_stay_out_of_the_configmap() -> None:
    docs = render(SCENARIOS["host-network-full"])
    config = yaml.safe_dump(find(docs, "ConfigMap"))
    assert "component-secret-value" not in config
    assert "specials" not in config
    _, container = bridge_container(docs)
    assert not [e for e in container["env"] if "SECRET" in e["name"] and "value" in e]


def test_generated_secrets_are_random_but_present() -> None:
    first = one(render({}), "Secret", f"{FULLNAME}-secrets")["data"]
    second = one(render({}), "Secret", f"{FULLNAME}-secrets")["data"]
    assert set(first) == {"component-secret", "redis-password", "redis-url"}
    assert first["component-secret"] != second["component-secret"]


# --- security and scheduling ---------------------------------------------------------------------


def all_containers(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for doc in docs:
        if doc["kind"] in ("StatefulSet", "Deployment"):
            pod = doc["spec"]["template"]["spec"]
            out += [(pod, c) for c in pod["containers"]]
    return out


def test_every_container_is_non_root_with_a_read_only_root(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    for pod, container in all_containers(docs):
        context = container["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert pod["automountServiceAccountToken"] is False
        assert "resources" in container


def test_restricted_scenario_meets_pod_security_restricted() -> None:
    """What the "restricted" Pod Security Standard checks, for every pod of the release."""
    docs = render(SCENARIOS["restricted-load-balancer"])
    for pod, container in all_containers(docs):
        assert not pod.get("hostNetwork")
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert set(container["securityContext"]["capabilities"].get("add", [])) <= {
            "NET_BIND_SERVICE"
        }
        assert not any(p.get("hostPort") for p in container.get("ports", []))


def test_realtime_grants_sys_nice_and_runs_the_capable_interpreter() -> None:
    _, container = bridge_container(render({}))
    assert container["securityContext"]["capabilities"]["add"] == ["SYS_NICE"]
    # file capabilities are ignored under no_new_privs, so escalation must be allowed
    assert container["securityContext"]["allowPrivilegeEscalation"] is True
    assert container["command"][0] == "/opt/sipmuc/venv/bin/python-rt"
    _, plain = bridge_container(render({"realtime": {"enabled": False}}))
    assert plain["command"][0] == "/opt/sipmuc/venv/bin/python"
    assert "add" not in plain["securityContext"]["capabilities"]


def test_dockerfile_provides_what_the_chart_runs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "setcap cap_sys_nice+ep /opt/sipmuc/venv/bin/python-rt" in dockerfile
    assert "USER 10001:10001" in dockerfile
    assert "AS kamailio" in dockerfile
    with helm.Chart.load(CHART) as chart:
        assert chart.values["podSecurityContext"]["runAsUser"] == 10001
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert froms and all("${" in f or re.search(r":[\w.-]*\d", f) for f in froms)  # pinned


def test_host_network_pods_never_share_a_node() -> None:
    pod, container = bridge_container(render({"replicaCount": 3}))
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SIPMUC_HTTP__HOST"] == "$(POD_IP)"  # never 0.0.0.0 on the host's interfaces
    assert env["SIPMUC_STATE__REDIRECT_CONTACT"] == "sip:{room}@$(POD_IP):5060"


def test_probes_use_the_health_endpoints() -> None:
    _, container = bridge_container(render({"http": {"port": 9100}}))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 9100
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


# --- exposure ------------------------------------------------------------------------------------


def test_load_balancer_mode_gives_each_pod_its_own_service() -> None:
    docs = render(SCENARIOS["restricted-load-balancer"])
    services = [one(docs, "Service", f"{FULLNAME}-{i}") for i in range(3)]
    for ordinal, service in enumerate(services):
        assert service["spec"]["type"] == "LoadBalancer"
        selector = service["spec"]["selector"]
        assert selector["statefulset.kubernetes.io/pod-name"] == f"{FULLNAME}-{ordinal}"
        rtp = [p for p in service["spec"]["ports"] if p["name"].startswith("rtp-")]
        assert [p["port"] for p in rtp] == list(range(40000, 40100))
    assert services[0]["spec"]["loadBalancerIP"] == "203.0.113.10"
    assert "loadBalancerIP" not in services[2]["spec"]
    names = {p["name"] for p in services[0]["spec"]["ports"]}
    assert {"sip-udp", "sip-tls", "w1-udp", "w1-tls", "w2-udp", "w2-tls"} <= names


def test_node_port_mode_maps_every_port_to_itself() -> None:
    docs = render(SCENARIOS["node-port-embedded"])
    service = one(docs, "Service", f"{FULLNAME}-sip")
    assert service["spec"]["type"] == "NodePort"
    for port in service["spec"]["ports"]:
        assert port["nodePort"] == port["port"] == port["targetPort"]
    assert len([p for p in service["spec"]["ports"] if p["name"].startswith("rtp-")]) == 40
    statefulset = one(docs, "StatefulSet", FULLNAME)
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_network_policy_opens_sip_rtp_and_http_only() -> None:
    docs = render(SCENARIOS["host-network-full"])
    policy = one(docs, "NetworkPolicy", FULLNAME)
    sip_rule, http_rule = policy["spec"]["ingress"]
    rtp = [p for p in sip_rule["ports"] if "endPort" in p]
    assert rtp == [{"port": 20000, "endPort": 21999, "protocol": "UDP"}]
    assert http_rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    redis_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-redis")
    assert redis_policy["spec"]["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"mode": "sentinel"}}, "no Sentinel client yet"),
        ({"redis": {"mode": "embedded"}, "replicaCount": 2}, "needs replicaCount=1"),
        ({"redis": {"mode": "external"}}, "needs redis.external.url"),
        ({"sip": {"exposure": {"mode": "nodePort"}}}, "outside the node-port range"),
        (
            {
                "sip": {
                    "exposure": {"mode": "nodePort"},
                    "port": 30060,
                    "tlsPort": 30061,
                    "rtp": {"portStart": 31000, "portCount": 10},
                },
                "workers": {"basePort": 5062},
            },
            "port 5062 is outside",
        ),
        ({"sip": {"exposure": {"mode": "nodePort"}}, "replicaCount": 2}, "needs replicaCount=1"),
        (
            {"sip": {"exposure": {"mode": "loadBalancer"}}},
            "exceeds sip.exposure.maxRtpServicePorts",
        ),
        ({"sip": {"transports": ["tls"]}}, "set sip.tls.existingSecret"),
        ({"sip": {"tls": {"certificate": PEM_CERT}}}, "needs sip.tls.privateKey"),
    ],
)
def test_combinations_that_cannot_work_fail_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render_files(values)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"sip": {"exposure": {"mode": "public"}}}, "/sip/exposure/mode"),
        ({"sip": {"transports": ["sctp"]}}, "/sip/transports/0"),
        ({"workers": {"poolSize": 0}}, "/workers/poolSize"),
        ({"xmpp": {"componentJid": "bridge@example.org"}}, "/xmpp/componentJid"),
        ({"redis": {"external": {"url": "http://redis"}}}, "/redis/external/url"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"log": {"level": "verbose"}}, "/log/level"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render_files(values)


# --- monitoring ----------------------------------------------------------------------------------


def exposed_metric_names() -> set[str]:
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names = set()
    for family in metrics.REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def alert_rules() -> list[dict[str, Any]]:
    docs = render({"metrics": {"prometheusRule": {"enabled": True}}})
    rule = one(docs, "PrometheusRule", FULLNAME)
    rules: list[dict[str, Any]] = rule["spec"]["groups"][0]["rules"]
    return rules


def test_alerts_use_only_metrics_that_the_bridge_exports() -> None:
    exported = exposed_metric_names()
    used = set()
    for rule in alert_rules():
        used.update(re.findall(r"\bsipmuc_[a-z_]+", rule["expr"]))
    assert used
    assert used <= exported, used - exported
    checks = {m for r in alert_rules() for m in re.findall(r'check="(\w+)"', r["expr"])}
    assert checks == {"xmpp", "redis", "workers"}


def test_every_alert_is_explained_in_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in guide, rule["alert"]


def test_service_monitor_scrapes_the_metrics_service() -> None:
    docs = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}})
    monitor = one(docs, "ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "kps"
    selector = monitor["spec"]["selector"]["matchLabels"]
    matching = [
        s for s in find(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in matching] == [f"{FULLNAME}-metrics"]
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
    }


# --- Kamailio front ------------------------------------------------------------------------------


def kamailio_config(values: dict[str, Any]) -> str:
    docs = render(values)
    config: str = one(docs, "ConfigMap", f"{FULLNAME}-kamailio")["data"]["kamailio.cfg"]
    return config


def test_kamailio_relays_to_the_bridge_service_and_follows_redirects() -> None:
    config = kamailio_config(SCENARIOS["host-network-full"])
    assert (
        f'#!substdef "!BRIDGE_URI!sip:{FULLNAME}-sip.{NAMESPACE}.svc.cluster.local:5060!g"'
        in config
    )
    assert "listen=udp:0.0.0.0:5060 advertise 198.51.100.7:5060" in config
    assert 'get_redirects("1")' in config
    assert "__" not in config.replace("__BRIDGE", "")  # every placeholder was filled


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="Debian package kamailio absent")
def test_kamailio_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    for values in (SCENARIOS["host-network-full"], SCENARIOS["cluster-ip-kamailio"]):
        cfg = tmp_path / "kamailio.cfg"
        cfg.write_text(kamailio_config(values))
        run = subprocess.run(
            ["kamailio", "-c", "-f", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "config file ok" in run.stdout + run.stderr


def test_each_replica_is_its_own_xmpp_component() -> None:
    """XEP-0114 servers accept one connection per component JID (Prosody answers conflict)."""
    single = bridge_environment(render({}))
    assert not single["SIPMUC_XMPP__COMPONENT_JID"].startswith(FULLNAME)
    many = bridge_environment(render({"replicaCount": 3}))
    jid = many["SIPMUC_XMPP__COMPONENT_JID"]
    assert jid.startswith(f"{FULLNAME}-0.")
    assert jid.endswith(single["SIPMUC_XMPP__COMPONENT_JID"])
