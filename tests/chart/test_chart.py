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
from bridge.node.services import redirect_contact_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sipmuc-bridge"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "voice", "telephony"
FULLNAME = f"{RELEASE}-sipmuc-bridge"
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"

# What every install must give (the chart invents no secret by default: see values.yaml).
SECRETS: dict[str, Any] = {
    "xmpp": {"secret": "component-secret-value", "puppetKey": "puppet-key-value"},
    "redis": {"internal": {"password": "redis-password-value"}},
}


def with_secrets(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` over :data:`SECRETS` (a deep merge: values win)."""
    return merge(SECRETS, values)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


SCENARIOS: dict[str, dict[str, Any]] = {
    "minimal": SECRETS,
    # Two hostNetwork nodes, every optional object on, TLS from inline PEM, given secrets.
    "host-network-full": {
        "replicaCount": 2,
        "xmpp": {
            "secret": "component-secret-value",
            "puppetKey": "puppet-key-value",
            "host": "prosody.xmpp",
            "port": 5347,
        },
        "sip": {
            "domain": "voice.example.org",
            "transports": ["udp", "tcp", "tls"],
            "tls": {"certificate": PEM_CERT, "privateKey": PEM_KEY},
        },
        "workers": {"poolSize": 15},
        "redis": {"internal": {"password": "redis pass/with:specials"}},
        "networkPolicy": {"enabled": True, "nodeCidrs": ["10.0.0.0/24"]},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "kamailio": {"enabled": True, "advertisedAddress": "198.51.100.7"},
        "log": {"level": "debug"},
    },
    # A Pod Security "restricted" namespace: per-pod load balancers, no real-time scheduling,
    # external Redis, secrets managed outside the chart, TLS from cert-manager.
    "restricted-load-balancer": {
        "replicaCount": 3,
        "realtime": {"enabled": False},
        "xmpp": {
            "existingSecret": "xmpp-component",
            "existingSecretKeys": {"secret": "secret", "puppetKey": "puppets"},
        },
        "sip": {
            "transports": ["udp", "tls"],
            "tls": {"existingSecret": "sip-cert"},
            "rtp": {"portStart": 40000, "portCount": 100},
            "advertiseAddress": "$(POD_NAME).sip.example.org",
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
        "networkPolicy": {"enabled": True},
    },
    # The smallest site: one pod on NodePorts, Redis embedded in the pod.
    "node-port-embedded": {
        "xmpp": SECRETS["xmpp"],
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
        "xmpp": SECRETS["xmpp"],
        "sip": {"exposure": {"mode": "clusterIP"}},
        "workers": {"basePort": None},
        "redis": {"mode": "external", "external": {"url": "rediss://:pw@redis.example:6380/2"}},
        "kamailio": {"enabled": True, "service": {"type": "ClusterIP"}},
        "podDisruptionBudget": {"enabled": False},
        "serviceAccount": {"create": False},
    },
    # Redis with Sentinel (the bridge follows failovers), passwords from a managed Secret.
    "sentinel": {
        "replicaCount": 2,
        "xmpp": SECRETS["xmpp"],
        "redis": {
            "mode": "sentinel",
            "sentinel": {
                "hosts": ["redis-sentinel-0.redis:26379", "redis-sentinel-1.redis:26379"],
                "masterName": "voice",
                "existingSecret": "redis-auth",
                "existingSecretKey": "password",
                "sentinelPasswordKey": "sentinel-password",
            },
        },
    },
}

# Values of Secrets the chart does not create (existingSecret) for the settings check.
EXTERNAL_SECRETS = {
    ("xmpp-component", "secret"): "external-component-secret",
    ("xmpp-component", "puppets"): "external-puppet-key",
    ("redis-conn", "url"): "redis://:pw@redis.example:6379/0",
    ("redis-auth", "password"): "sentinel-data-password",
    ("redis-auth", "sentinel-password"): "sentinel-password",
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
    docs = render(SCENARIOS["minimal"])
    statefulset = one(docs, "StatefulSet", FULLNAME)
    statefulset["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBE_VERSION, strict=True)


def test_object_names_are_unique(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = scenario
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys))


# --- the bridge's settings ----------------------------------------------------------------------


POD_FIELDS = {
    "metadata.name": f"{FULLNAME}-0",
    "metadata.namespace": NAMESPACE,
    "status.podIP": "10.1.2.3",
    "status.hostIP": "10.9.8.7",
}
SECRETS_DIR = "/etc/sipmuc/secrets"


def bridge_environment(
    docs: list[dict[str, Any]], fields: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment Kubernetes would give the bridge container (fieldRefs faked)."""
    _, container = bridge_container(docs)
    fields = {**POD_FIELDS, **(fields or {})}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        data = one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
        env.update({key: str(value) for key, value in data.items()})
    for item in container["env"]:
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
        elif "fieldRef" in item["valueFrom"]:
            value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"{item['name']}: secrets are files, never env values")
        env[item["name"]] = value
    return env


def secret_files(docs: list[dict[str, Any]]) -> dict[str, str]:
    """File name → content of the projected secrets volume (/etc/sipmuc/secrets)."""
    pod, container = bridge_container(docs)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["secrets"] == SECRETS_DIR
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    own = {doc["metadata"]["name"]: doc for doc in find(docs, "Secret") if doc.get("data")}
    files = {}
    for source in volume["projected"]["sources"]:
        name = source["secret"]["name"]
        for item in source["secret"]["items"]:
            if name in own:
                value = base64.b64decode(own[name]["data"][item["key"]]).decode()
            else:
                value = EXTERNAL_SECRETS[(name, item["key"])]
            files[item["path"]] = value
    return files


def materialise(docs: list[dict[str, Any]], where: Path, **fields: str) -> dict[str, str]:
    """The container's environment with its secret files written under ``where`` (the
    *_FILE settings rewritten to point there), ready for ``load_settings``."""
    where.mkdir(parents=True, exist_ok=True)
    for name, value in secret_files(docs).items():
        (where / name).write_text(value)
    env = bridge_environment(docs, fields)
    return {
        key: value.replace(SECRETS_DIR, str(where)) if key.endswith("_FILE") else value
        for key, value in env.items()
    }


def load_rendered(
    docs: list[dict[str, Any]], where: Path, monkeypatch: pytest.MonkeyPatch, **fields: str
) -> Settings:
    """The settings the bridge would load in the pod (secret files written to ``where``)."""
    env = materialise(docs, where, **fields)
    assert all(not key.startswith("SIPMUC_") or "__" in key for key in env)
    for key in list(os.environ):
        if key.startswith("SIPMUC_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_rendered_environment_is_accepted_by_the_settings_model(
    scenario: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name, docs = scenario
    settings = load_rendered(docs, tmp_path, monkeypatch)
    values = SCENARIOS[name]
    assert settings.log.format.value == "json"
    assert settings.sip.bind_host == "0.0.0.0"
    assert settings.sip.advertised not in ("", "0.0.0.0")
    assert [t.value for t in settings.sip.transports] == values.get("sip", {}).get(
        "transports", ["udp", "tcp"]
    )
    assert settings.xmpp.secret.get_secret_value()
    assert settings.xmpp.puppet_key.get_secret_value()
    assert settings.xmpp.puppet_key.get_secret_value() != settings.xmpp.secret.get_secret_value()
    assert settings.workers.drain_timeout == 900
    mode = values.get("redis", {}).get("mode", "internal")
    assert settings.redis.mode == {"embedded": "embedded", "sentinel": "sentinel"}.get(mode, "url")
    if mode == "embedded":
        assert str(settings.redis.embedded_dir).startswith("/var/lib/sipmuc")
    if "tls" in values.get("sip", {}).get("transports", []):
        assert str(settings.sip.tls_certificate) == "/etc/sipmuc/tls/tls.crt"


def test_media_security_values_reach_the_bridge(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The chart's defaults are the bridge's, and an operator's choice reaches the pod."""
    settings = load_rendered(render(SCENARIOS["minimal"]), tmp_path / "defaults", monkeypatch)
    assert (settings.sip.srtp, settings.sip.tls_min_version) == ("optional", "1.2")
    values = merge(SCENARIOS["minimal"], {"sip": {"srtp": "mandatory",
                                                   "tls": {"minVersion": "1.3"}}})
    settings = load_rendered(render(values), tmp_path / "strict", monkeypatch)
    assert (settings.sip.srtp, settings.sip.tls_min_version) == ("mandatory", "1.3")


def test_internal_redis_password_reaches_the_bridge_escaped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = render(SCENARIOS["host-network-full"])
    settings = load_rendered(docs, tmp_path, monkeypatch)
    url = settings.redis.effective_url()
    assert url == (
        f"redis://:redis%20pass%2Fwith%3Aspecials@{FULLNAME}-redis.{NAMESPACE}.svc:6379/0"
    )
    assert redis.connection.parse_url(url)["password"] == "redis pass/with:specials"
    redis_pod = one(docs, "StatefulSet", f"{FULLNAME}-redis")["spec"]["template"]["spec"]
    (env,) = redis_pod["containers"][0]["env"]
    ref = {"name": f"{FULLNAME}-secrets", "key": "redis-password"}
    assert env["valueFrom"]["secretKeyRef"] == ref


def test_sentinel_values_select_the_sentinel_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = render(SCENARIOS["sentinel"])
    settings = load_rendered(docs, tmp_path, monkeypatch)
    assert settings.redis.sentinels == SCENARIOS["sentinel"]["redis"]["sentinel"]["hosts"]
    assert settings.redis.sentinel_service == "voice"
    assert settings.redis.replica_acks == 1
    assert settings.redis.password is not None
    assert settings.redis.password.get_secret_value() == "sentinel-data-password"
    assert settings.redis.sentinel_password is not None
    assert settings.redis.sentinel_password.get_secret_value() == "sentinel-password"
    assert not find(docs, "StatefulSet", f"{FULLNAME}-redis")


def test_secrets_are_files_never_environment_nor_configmap(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    config = yaml.safe_dump(find(docs, "ConfigMap"))
    for secret in ("component-secret-value", "puppet-key-value", "redis-password-value",
                   "specials"):  # fmt: skip
        assert secret not in config
    _, container = bridge_container(docs)
    assert not [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert bridge_environment(docs)["SIPMUC_XMPP__SECRET_FILE"] == f"{SECRETS_DIR}/component-secret"


def test_without_secrets_the_render_fails_instead_of_inventing_them() -> None:
    missing = re.escape("xmpp.secret (the component secret) is not set")
    with pytest.raises(helm.HelmError, match=missing):
        render_files({})
    with pytest.raises(helm.HelmError, match=re.escape("redis.internal.password is not set")):
        render_files({"xmpp": SECRETS["xmpp"]})
    with pytest.raises(helm.HelmError, match="offline renders such as helm template"):
        render_files({"xmpp": {"secret": "s"}})


def test_given_secrets_render_the_same_every_time() -> None:
    """GitOps renders offline, again and again: nothing may change between two renders (a
    changed Secret or checksum would roll every pod on each sync)."""
    first, second = render_files(SCENARIOS["minimal"]), render_files(SCENARIOS["minimal"])
    assert first == second


def test_generated_secrets_are_opt_in_and_documented() -> None:
    values = {"secrets": {"generate": True}}
    data = one(render(values), "Secret", f"{FULLNAME}-secrets")["data"]
    assert set(data) == {"component-secret", "puppet-key", "redis-password"}
    assert data["component-secret"] != data["puppet-key"]
    notes = render_files(values)["sipmuc-bridge/templates/NOTES.txt"]
    assert "Do not render this chart offline" in notes


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
        assert context["allowPrivilegeEscalation"] is False
        assert pod["automountServiceAccountToken"] is False
        assert "resources" in container
        if context.get("runAsUser") == 0:  # realtime: root only for setpriv's switch
            assert container["command"][0] == "setpriv"
            assert f"--reuid={pod['securityContext']['runAsUser']}" in container["command"]
            assert set(context["capabilities"]["add"]) == {"SETUID", "SETGID", "SYS_NICE"}


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


def test_realtime_keeps_sys_nice_without_privilege_escalation() -> None:
    """Root with three capabilities only for setpriv's switch to uid 10001, which keeps
    SYS_NICE as an ambient capability; no file capabilities, no_new_privs on."""
    _, container = bridge_container(render(SCENARIOS["minimal"]))
    context = container["securityContext"]
    assert context["runAsUser"] == 0 and context["runAsNonRoot"] is False
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["SETUID", "SETGID", "SYS_NICE"]}
    assert context["allowPrivilegeEscalation"] is False
    assert container["command"][:7] == [
        "setpriv", "--reuid=10001", "--regid=10001", "--clear-groups",
        "--inh-caps=-all,+sys_nice", "--ambient-caps=-all,+sys_nice", "--",
    ]  # fmt: skip
    assert container["command"][7:] == ["/opt/sipmuc/venv/bin/python", "-m", "bridge", "run"]
    no_realtime = merge(SCENARIOS["minimal"], {"realtime": {"enabled": False}})
    _, plain = bridge_container(render(no_realtime))
    assert plain["command"][0] == "/opt/sipmuc/venv/bin/python"
    assert "add" not in plain["securityContext"]["capabilities"]
    assert "runAsUser" not in plain["securityContext"]


def test_dockerfile_provides_what_the_chart_runs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "setcap" not in dockerfile and "python-rt" not in dockerfile
    assert "-perm /6000" in dockerfile  # setuid/setgid bits stripped
    assert "USER 10001:10001" in dockerfile
    assert "AS kamailio" in dockerfile
    with helm.Chart.load(CHART) as chart:
        assert chart.values["podSecurityContext"]["runAsUser"] == 10001
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert froms and all(f in ("${DEBIAN_IMAGE}", "scratch") for f in froms)
    (default,) = re.findall(r"^ARG DEBIAN_IMAGE=(\S+)", dockerfile, re.MULTILINE)
    assert re.search(r":[\w.-]*\d", default)  # pinned (by digest in CI, see the Dockerfile)
    assert "scripts/build-pjsip" in dockerfile  # our own PJSIP, from the verified source


def test_host_network_pods_never_share_a_node() -> None:
    pod, container = bridge_container(render(merge(SCENARIOS["minimal"], {"replicaCount": 3})))
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SIPMUC_HTTP__HOST"] == "$(POD_IP)"  # never 0.0.0.0 on the host's interfaces
    assert env["SIPMUC_SIP__ADVERTISE_HOST"] == "$(NODE_IP)"
    assert "SIPMUC_STATE__REDIRECT_CONTACT" not in env  # the bridge derives it from advertise


# --- bind and advertise ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "advertised"),
    [
        ({}, "10.9.8.7"),  # hostNetwork: the node's address
        ({"sip": {"exposure": {"mode": "clusterIP"}}}, "10.1.2.3"),  # the pod's
        (  # nodePort: the node's
            {
                "sip": {
                    "port": 30060, "tlsPort": 30061, "exposure": {"mode": "nodePort"},
                    "rtp": {"portStart": 31000, "portCount": 40},
                },
                "workers": {"basePort": 30062},
            },
            "10.9.8.7",
        ),
        ({"sip": {"advertiseAddress": "198.51.100.20"}}, "198.51.100.20"),  # configured
        (  # one load balancer per pod: pod 0 gets the first address
            {
                "replicaCount": 2,
                "sip": {
                    "rtp": {"portStart": 40000, "portCount": 100},
                    "exposure": {
                        "mode": "loadBalancer",
                        "service": {"loadBalancerIPs": ["203.0.113.10", "203.0.113.11"]},
                    },
                },
            },
            "203.0.113.10",
        ),
    ],
)
def test_each_exposure_advertises_where_callers_reach_the_pod(
    values: dict[str, Any], advertised: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = render(merge(SCENARIOS["minimal"], values))
    settings = load_rendered(docs, tmp_path, monkeypatch)
    assert settings.sip.bind_host == "0.0.0.0"
    assert settings.sip.advertised == advertised
    contact = redirect_contact_for(settings)("standup")
    assert contact == f"sip:standup@{advertised}:{settings.sip.port}"


def test_the_second_load_balancer_pod_advertises_its_own_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values = merge(SCENARIOS["minimal"], {
        "replicaCount": 2,
        "sip": {
            "rtp": {"portStart": 40000, "portCount": 100},
            "exposure": {"mode": "loadBalancer",
                         "service": {"loadBalancerIPs": ["203.0.113.10", "203.0.113.11"]}},
        },
    })  # fmt: skip
    docs = render(values)
    settings = load_rendered(docs, tmp_path, monkeypatch, **{"metadata.name": f"{FULLNAME}-1"})
    assert settings.state.node_id == f"{FULLNAME}-1"
    assert settings.sip.advertised == "203.0.113.11"


def test_probes_use_the_health_endpoints() -> None:
    _, container = bridge_container(render(merge(SCENARIOS["minimal"], {"http": {"port": 9100}})))
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
    assert {"sip-udp", "sip-tls", "w1-udp", "w1-tls"} <= names
    assert not names & {"w2-udp", "w2-tls"}  # poolSize 2 = the front + one worker


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
    values = merge(SCENARIOS["minimal"], {
        "sip": {"exposure": {"mode": "clusterIP"}}, "networkPolicy": {"enabled": True},
        "kamailio": {"enabled": True},
    })  # fmt: skip
    docs = render(values)
    policy = one(docs, "NetworkPolicy", FULLNAME)
    sip_rule, http_rule = policy["spec"]["ingress"]
    rtp = [p for p in sip_rule["ports"] if "endPort" in p]
    assert rtp == [{"port": 20000, "endPort": 21999, "protocol": "UDP"}]
    assert http_rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    redis_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-redis")
    assert redis_policy["spec"]["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]
    kamailio = one(docs, "NetworkPolicy", f"{FULLNAME}-kamailio")
    assert {p["protocol"] for p in kamailio["spec"]["ingress"][0]["ports"]} == {"UDP", "TCP"}


def test_network_policy_with_host_network_admits_the_nodes_to_redis() -> None:
    """Host-network pods are not selected by NetworkPolicy and reach Redis from their node's
    address: no bridge policy (it would do nothing), and the Redis policy admits the nodes."""
    docs = render(SCENARIOS["host-network-full"])
    assert not find(docs, "NetworkPolicy", FULLNAME)
    sources = one(docs, "NetworkPolicy", f"{FULLNAME}-redis")["spec"]["ingress"][0]["from"]
    assert {"ipBlock": {"cidr": "10.0.0.0/24"}} in sources
    notes = render_files(SCENARIOS["host-network-full"])["sipmuc-bridge/templates/NOTES.txt"]
    assert "NetworkPolicy does not apply to host-network pods" in notes


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"mode": "sentinel"}}, "needs redis.sentinel.hosts"),
        (
            {"redis": {"mode": "sentinel", "sentinel": {"hosts": ["s:26379"]}}},
            "needs the data servers' password",
        ),
        (
            {"replicaCount": 2, "sip": {
                "exposure": {
                    "mode": "loadBalancer", "service": {"loadBalancerIPs": ["203.0.113.1"]}
                },
                "rtp": {"portStart": 40000, "portCount": 100}}},
            "the chart cannot know the address each pod's load balancer gets",
        ),
        ({"networkPolicy": {"enabled": True}}, "set networkPolicy.nodeCidrs"),
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
            {"sip": {"exposure": {"mode": "loadBalancer"}, "advertiseAddress": "203.0.113.5"}},
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
        render_files(merge(SCENARIOS["minimal"], values))


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
        ({"sip": {"advertiseAddress": "sip:10.0.0.1:5060"}}, "/sip/advertiseAddress"),
        ({"redis": {"sentinel": {"hosts": ["no-port"]}}}, "/redis/sentinel/hosts/0"),
        ({"sip": {"srtp": "required"}}, "/sip/srtp"),
        ({"sip": {"tls": {"minVersion": "1.0"}}}, "/sip/tls/minVersion"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render_files(merge(SCENARIOS["minimal"], values))


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


def alert_rules(**values: Any) -> list[dict[str, Any]]:
    docs = render(merge(SCENARIOS["minimal"], {"metrics": {"prometheusRule": {"enabled": True,
                                                                                **values}}}))
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


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes for the headings of a Markdown text."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            text = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
            anchors.add(text)
    return anchors


def test_every_alert_is_explained_in_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    anchors = github_anchors(guide)
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in guide, rule["alert"]
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/operations.md"
        assert anchor in anchors, (rule["alert"], anchor)
    published = alert_rules(runbookBaseUrl="https://wiki.example.org/sipmuc/operations")
    assert published[0]["annotations"]["runbook_url"].startswith(
        "https://wiki.example.org/sipmuc/operations#"
    )


def test_the_busy_alert_watches_a_counter_the_workers_feed() -> None:
    (busy,) = [r for r in alert_rules() if r["alert"] == "SipmucCallsRejectedBusy"]
    assert 'outcome="busy"' in busy["expr"]
    before = metrics.CALLS.labels(outcome="busy")._value.get()
    metrics.count_invite("busy", "busy")  # what the pool does with a worker's InviteAnswered
    assert metrics.CALLS.labels(outcome="busy")._value.get() == before + 1


def test_service_monitor_scrapes_the_metrics_service() -> None:
    monitor = {"enabled": True, "labels": {"release": "kps"}}
    docs = render(merge(SCENARIOS["minimal"], {"metrics": {"serviceMonitor": monitor}}))
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
    docs = render(merge(SCENARIOS["minimal"], values))
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
    single = bridge_environment(render(SCENARIOS["minimal"]))
    assert not single["SIPMUC_XMPP__COMPONENT_JID"].startswith(FULLNAME)
    many = bridge_environment(render(merge(SCENARIOS["minimal"], {"replicaCount": 3})))
    jid = many["SIPMUC_XMPP__COMPONENT_JID"]
    assert jid.startswith(f"{FULLNAME}-0.")
    assert jid.endswith(single["SIPMUC_XMPP__COMPONENT_JID"])


def test_notes_match_the_replicas_and_the_exposure() -> None:
    notes = render_files(merge(SCENARIOS["minimal"], {"replicaCount": 2}))[
        "sipmuc-bridge/templates/NOTES.txt"
    ]
    assert f'Component "{FULLNAME}-0.bridge.example.org"' in notes
    assert f'Component "{FULLNAME}-1.bridge.example.org"' in notes
    assert "its own node" in notes and "nodes' firewall" in notes
    assert "hands\n   its rooms to the others" in notes or "hands its rooms" in notes
    single = render_files(SCENARIOS["minimal"])["sipmuc-bridge/templates/NOTES.txt"]
    assert 'Component "bridge.example.org"' in single
    assert "helm test voice" in single


# --- drain ----------------------------------------------------------------------------------------


def test_drain_timeout_reaches_the_bridge_and_the_grace_period_is_a_little_longer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values = merge(SCENARIOS["minimal"], {"drain": {"timeoutSeconds": 120, "shutdownSeconds": 20}})
    docs = render(values)
    pod, _ = bridge_container(docs)
    assert pod["terminationGracePeriodSeconds"] == 140
    assert load_rendered(docs, tmp_path, monkeypatch).workers.drain_timeout == 120


# --- small chart items ----------------------------------------------------------------------------


def test_chart_has_a_readme_and_no_placeholder_links() -> None:
    with helm.Chart.load(CHART) as chart:
        for key in ("home", "icon"):
            assert "example.invalid" not in str(chart.metadata.get(key) or "")
    readme = (CHART / "README.md").read_text()
    sections = ("Install", "Secrets", "Exposing SIP", "Real-time scheduling", "Redis", "Values")
    for section in sections:
        assert f"## {section}" in readme, section


def test_helm_test_pod_probes_readiness_and_sip() -> None:
    docs = render(SCENARIOS["minimal"])
    (pod,) = find(docs, "Pod", f"{FULLNAME}-test-probe")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    assert command[:4] == ["/opt/sipmuc/venv/bin/python", "-m", "bridge", "probe"]
    assert f"http://{FULLNAME}-metrics.{NAMESPACE}.svc:8080/readyz" in command
    assert f"{FULLNAME}-sip.{NAMESPACE}.svc:5060" in command


def test_kamailio_pods_roll_when_its_values_change() -> None:
    def checksum(values: dict[str, Any]) -> str:
        docs = render(merge(SCENARIOS["minimal"], {"kamailio": {"enabled": True, **values}}))
        deployment = one(docs, "Deployment", f"{FULLNAME}-kamailio")
        annotation: str = deployment["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]
        return annotation

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"maxRedirects": 5})
    assert checksum({}) != checksum({"advertisedAddress": "198.51.100.7"})


def test_the_chart_protects_the_kamailio_and_redis_it_runs() -> None:
    docs = render(merge(SCENARIOS["minimal"], {"kamailio": {"enabled": True}}))
    for name, component in ((f"{FULLNAME}-kamailio", "kamailio"), (f"{FULLNAME}-redis", "redis")):
        pdb = one(docs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
    deployment = one(docs, "Deployment", f"{FULLNAME}-kamailio")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]


def test_the_redis_image_has_the_2025_lua_fixes() -> None:
    with helm.Chart.load(CHART) as chart:
        tag = chart.values["redis"]["internal"]["image"]["tag"]
    major, minor, patch = (int(x) for x in tag.split("-")[0].split("."))
    fixed = {(7, 2): 11, (7, 4): 6, (8, 0): 4, (8, 2): 2}  # CVE-2025-49844 and the others
    assert ((major, minor) in fixed and patch >= fixed[(major, minor)]) or (major, minor) > (8, 2)
