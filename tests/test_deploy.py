"""The deployment artefacts: every kustomize build, its security properties, schemas, the image.

`kubectl kustomize` builds each overlay and example; the YAML is checked for the
properties docs/design.md §5 and the deployment guide promise, and every core kind is
validated offline against the Kubernetes OpenAPI schemas shipped by
`kubernetes-validate` (strict: unknown fields are errors).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs; mypy override requested
import pytest
import yaml

from claude_matrix_bot.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
KUBERNETES_VERSION = "1.32"
NAMESPACE = "claude-matrix-bot"
UID = 65532
OPERATOR_SECRETS = {"claude-oauth-tokens", "matrix-bot-creds", "claude-matrix-bot-trigger", "claude-matrix-bot-store"}
# Secrets handed to a container through env: (variable, Secret, key, optional).
ENV_SECRETS = {
    ("TRIGGER_TOKEN", "claude-matrix-bot-trigger", "token", False),
    ("MATRIX_STORE_PASSPHRASE", "claude-matrix-bot-store", "passphrase", True),
}

BUILDS = [
    "overlays/knative",
    "overlays/cronjob",
    "overlays/knative-cronjob-trigger",
    "examples/gcs-state",
    "examples/s3-state",
    "examples/two-accounts",
]
# Kinds with an OpenAPI schema in kubernetes-validate; the Knative kinds are checked by hand.
CORE_KINDS = {
    "Namespace",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "PersistentVolumeClaim",
    "CronJob",
    "NetworkPolicy",
}
KNATIVE_KINDS = {("serving.knative.dev/v1", "Service"), ("sources.knative.dev/v1", "PingSource")}


Doc = dict[str, Any]


@cache
def _build_text(target: str) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to build deploy/"
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / target)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize deploy/{target} failed:\n{result.stderr}"
    return result.stdout


def build(target: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(_build_text(target)) if doc]


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Pod:
    """A pod template found in a workload: where it is, its spec, and whether Knative owns it."""

    owner: str
    spec: Doc
    knative: bool


def pods(docs: list[Doc]) -> list[Pod]:
    found = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "CronJob":
            found.append(Pod(where, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"], knative=False))
        elif (doc["apiVersion"], doc["kind"]) == ("serving.knative.dev/v1", "Service"):
            found.append(Pod(where, doc["spec"]["template"]["spec"], knative=True))
    return found


def config_map(docs: list[Doc], prefix: str = "claude-matrix-bot-config-") -> Doc:
    (found,) = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].startswith(prefix)]
    return found


def component_image() -> str:
    component = yaml.safe_load((DEPLOY / "components" / "common" / "kustomization.yaml").read_text())
    (image,) = component["images"]
    return f"{image['newName']}:{image['newTag']}"


@pytest.fixture(params=BUILDS)
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def docs(target: str) -> list[Doc]:
    return build(target)


def containers(pod: Pod) -> Iterator[Doc]:
    yield from pod.spec.get("initContainers", [])
    yield from pod.spec["containers"]


# --- every build ---------------------------------------------------------------------------


def test_every_build_has_workloads_in_one_namespace(docs: list[Doc]) -> None:
    assert pods(docs), "no workload in the build"
    assert one(docs, "Namespace")["metadata"]["name"] == NAMESPACE
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "claude-matrix-bot"


def test_core_kinds_validate_against_kubernetes_schemas(docs: list[Doc]) -> None:
    checked = 0
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked += 1
        else:
            assert (doc["apiVersion"], doc["kind"]) in KNATIVE_KINDS, f"unexpected kind {doc['kind']}"
    assert checked >= 5


def test_knative_pod_templates_validate_as_pod_specs(docs: list[Doc]) -> None:
    # A Knative revision template is a PodSpec plus these Knative fields.
    knative_only = {"containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds"}
    for pod in pods(docs):
        if pod.knative:
            spec = {key: value for key, value in pod.spec.items() if key not in knative_only}
            as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "template"}, "spec": spec}
            kubernetes_validate.validate(as_pod, KUBERNETES_VERSION, strict=True)


def test_every_container_is_locked_down(docs: list[Doc]) -> None:
    for pod in pods(docs):
        pod_security = pod.spec.get("securityContext", {})
        assert pod_security.get("runAsUser", UID) == UID
        for container in containers(pod):
            where = f"{pod.owner}/{container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["runAsUser"] == UID, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "privileged" not in security, where
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert set(resources[bound]) == {"cpu", "memory"}, f"{where} {bound}"


def test_every_container_runs_the_pinned_image(docs: list[Doc]) -> None:
    image = component_image()
    assert re.fullmatch(r"[^:@]+:\d+\.\d+\.\d+", image), f"image not pinned to a version tag: {image}"
    for pod in pods(docs):
        for container in containers(pod):
            assert container["image"] == image, pod.owner
            assert container.get("imagePullPolicy", "IfNotPresent") != "Always"


def test_writable_paths_are_volumes_only(docs: list[Doc]) -> None:
    for pod in pods(docs):
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        for container in containers(pod):
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            if "/tmp" in mounts:
                assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
            for path, mount in mounts.items():
                volume = volumes[mount["name"]]
                if "secret" in volume:
                    assert mount.get("readOnly") is True, f"{pod.owner}: {path}"


def test_references_resolve(docs: list[Doc]) -> None:
    config_maps = {d["metadata"]["name"] for d in find(docs, "ConfigMap")}
    claims = {d["metadata"]["name"] for d in find(docs, "PersistentVolumeClaim")}
    accounts = {d["metadata"]["name"] for d in find(docs, "ServiceAccount")}
    for pod in pods(docs):
        if "serviceAccountName" in pod.spec:
            assert pod.spec["serviceAccountName"] in accounts
        for volume in pod.spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, pod.owner
            if "secret" in volume:
                assert volume["secret"]["secretName"] in OPERATOR_SECRETS, pod.owner
        for container in containers(pod):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps, pod.owner
            for var in container.get("env", []):
                secret_ref = var.get("valueFrom", {}).get("secretKeyRef")
                if secret_ref is not None:
                    assert secret_ref["name"] in OPERATOR_SECRETS
                    found = (var["name"], secret_ref["name"], secret_ref["key"], secret_ref.get("optional", False))
                    assert found in ENV_SECRETS, pod.owner


def test_settings_in_the_config_map_are_valid_and_match_the_mounts(docs: list[Doc]) -> None:
    data = config_map(docs)["data"]
    settings = load_settings(data)  # raises ConfigError naming every bad variable
    assert settings.k8s_oauth_secret_name == "claude-oauth-tokens"
    assert not settings.local_mode
    assert "TRIGGER_TOKEN" not in data, "the trigger token belongs in a Secret"
    for pod in pods(docs):
        if pod.owner.endswith("-trigger"):
            continue
        volumes = {v["name"]: v for v in pod.spec["volumes"]}
        (container,) = pod.spec["containers"]
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        assert mounts[str(settings.matrix_creds_dir)]["secret"]["secretName"] == "matrix-bot-creds"
        if settings.state_url.startswith("file://"):
            state_dir = settings.state_url.removeprefix("file://")
            assert "persistentVolumeClaim" in mounts[state_dir], pod.owner
        else:
            assert not any("persistentVolumeClaim" in v for v in mounts.values()), pod.owner


def test_role_allows_only_get_and_patch_of_the_token_secret(docs: list[Doc]) -> None:
    secret_name = config_map(docs)["data"]["K8S_OAUTH_SECRET_NAME"]
    (role,) = find(docs, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret_name], "verbs": ["get", "patch"]}
    ]
    assert not find(docs, "ClusterRole")
    assert not find(docs, "ClusterRoleBinding")
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "claude-matrix-bot", "namespace": NAMESPACE}]


def test_several_accounts_share_the_one_secret_and_the_unchanged_role() -> None:
    # docs/design.md §6: ACCOUNTS in the ConfigMap, every account's keys in the one Secret.
    docs = build("examples/two-accounts")
    settings = load_settings(config_map(docs)["data"])
    assert settings.accounts == ("work", "priv")
    assert settings.k8s_oauth_secret_name == "claude-oauth-tokens"
    (role,) = find(docs, "Role")
    assert role["rules"] == one(build("overlays/knative"), "Role")["rules"]
    secrets = {v["secret"]["secretName"] for pod in pods(docs) for v in pod.spec["volumes"] if "secret" in v}
    assert secrets <= OPERATOR_SECRETS, "no Secret per account: the one token Secret holds them all"


def test_single_account_builds_set_no_accounts(target: str) -> None:
    data = config_map(build(target))["data"]
    if target != "examples/two-accounts":
        assert "ACCOUNTS" not in data, "unset ACCOUNTS keeps the single-account layout"
        assert load_settings(data).accounts == ()


def test_schema_validation_is_strict() -> None:
    """Guards the checks above: an unknown field must fail, not pass silently."""
    typo = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def test_namespace_enforces_restricted_pod_security(docs: list[Doc]) -> None:
    labels = one(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- per overlay ---------------------------------------------------------------------------


def _knative_service(docs: list[Doc]) -> Doc:
    (service,) = [d for d in docs if (d["apiVersion"], d["kind"]) == ("serving.knative.dev/v1", "Service")]
    return service


@pytest.mark.parametrize("target", ["overlays/knative", "overlays/knative-cronjob-trigger", "examples/gcs-state"])
def test_knative_service_is_cluster_local_single_and_scales_to_zero(target: str) -> None:
    service = _knative_service(build(target))
    assert service["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/max-scale"] == "1"
    spec = template["spec"]
    assert spec["containerConcurrency"] == 1
    assert 60 <= spec["timeoutSeconds"] <= 300
    (container,) = spec["containers"]
    assert container["ports"] == [{"containerPort": 8080}]
    assert "command" not in container, "the image's default CMD serves the function"
    assert "args" not in container
    # fieldRef (downward API) needs a Knative feature flag: the namespace comes from the SA file instead.
    assert all("fieldRef" not in v.get("valueFrom", {}) for v in container.get("env", []))


def test_knative_overlay_pings_the_service_every_five_minutes() -> None:
    docs = build("overlays/knative")
    ping = one(docs, "PingSource")
    assert ping["spec"]["schedule"] == "*/5 * * * *"
    service = _knative_service(docs)
    assert ping["spec"]["sink"]["ref"] == {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "name": service["metadata"]["name"],
    }
    assert "ceOverrides" not in ping["spec"], "a token in ceOverrides is plain text: opt-in only (docs)"
    assert not find(docs, "CronJob")


def test_knative_pvc_feature_flags_are_documented() -> None:
    flags = [
        "kubernetes.podspec-persistent-volume-claim",
        "kubernetes.podspec-persistent-volume-write",
        "kubernetes.podspec-securitycontext",
    ]
    overlay = (DEPLOY / "overlays" / "knative" / "kustomization.yaml").read_text()
    guide = (REPO / "docs" / "deploy.md").read_text()
    for flag in flags:
        assert flag in overlay
        assert flag in guide


def _watcher_cronjob(docs: list[Doc]) -> Doc:
    return one(docs, "CronJob", "claude-matrix-bot")


@pytest.mark.parametrize("target", ["overlays/cronjob", "examples/s3-state"])
def test_cronjob_overlay_runs_one_cycle_every_five_minutes_safely(target: str) -> None:
    docs = build(target)
    assert not [d for d in docs if d["apiVersion"].endswith("knative.dev/v1")], "no Knative in the cronjob path"
    cron = _watcher_cronjob(docs)
    spec = cron["spec"]
    assert spec["schedule"] == "*/5 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < 300
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] in (0, 1)
    assert 0 < job["activeDeadlineSeconds"] < 300, "a stuck cycle must end before the next tick"
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["claude-matrix-bot", "run"]


def test_knative_cronjob_trigger_runs_the_shim_against_the_service() -> None:
    docs = build("overlays/knative-cronjob-trigger")
    assert not find(docs, "PingSource"), "this overlay is for clusters without Knative Eventing"
    service = _knative_service(docs)
    trigger = one(docs, "CronJob", "claude-matrix-bot-trigger")
    spec = trigger["spec"]
    assert spec["schedule"] == "*/5 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False, "the shim needs no API access"
    assert "volumes" not in pod
    (container,) = pod["containers"]
    assert container["command"] == ["claude-matrix-bot-trigger"]
    data = config_map(docs, "claude-matrix-bot-trigger-config-")["data"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert data["FUNCTION_URL"] == f"http://{name}.{namespace}.svc.cluster.local"
    assert 120 < float(data["SHIM_TIMEOUT_SEC"]) < 300


def test_console_scripts_used_by_the_manifests_exist() -> None:
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["claude-matrix-bot-trigger"] == "shim.__main__:main"
    assert "claude-matrix-bot" in scripts


@pytest.mark.parametrize(
    ("target", "scheme", "annotation"),
    [
        ("examples/gcs-state", "gs://", "iam.gke.io/gcp-service-account"),
        ("examples/s3-state", "s3://", "eks.amazonaws.com/role-arn"),
    ],
)
def test_bucket_state_examples_drop_the_pvc_and_bind_a_cloud_identity(
    target: str, scheme: str, annotation: str
) -> None:
    docs = build(target)
    assert not find(docs, "PersistentVolumeClaim")
    assert config_map(docs)["data"]["STATE_URL"].startswith(scheme)
    account = one(docs, "ServiceAccount", "claude-matrix-bot")
    assert account["metadata"]["annotations"][annotation]
    for pod in pods(docs):
        assert all("persistentVolumeClaim" not in v for v in pod.spec.get("volumes", []))
        for container in containers(pod):
            assert all(m["mountPath"] != "/state" for m in container.get("volumeMounts", []))
        if pod.knative:
            # Without the PVC, Knative needs no pod-level securityContext (and no feature flag).
            assert "securityContext" not in pod.spec


def test_bucket_state_component_refuses_a_reordered_volume_list(tmp_path: Path) -> None:
    """The component's JSON-patch `test` ops turn a silent wrong removal into a build error."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    cronjob = tmp_path / "deploy" / "overlays" / "cronjob" / "cronjob.yaml"
    doc = yaml.safe_load(cronjob.read_text())
    pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod["volumes"].reverse()
    cronjob.write_text(yaml.safe_dump(doc))
    kubectl = shutil.which("kubectl")
    assert kubectl
    result = subprocess.run(
        [kubectl, "kustomize", str(tmp_path / "deploy" / "examples" / "s3-state")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "test" in result.stderr.lower()


# --- the image -----------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]]


def dockerfile_stages() -> list[Stage]:
    text = (REPO / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
            continue
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name, []))
            continue
        assert stages, f"instruction before FROM: {line}"
        stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        # Pinned by digest (issue 25): a re-pushed tag cannot change what is built.
        assert re.fullmatch(r"python:3\.11[\w.]*-slim-bookworm@sha256:[0-9a-f]{64}", stage.base), stage.base
    # The final stage copies the builder's virtualenv: same interpreter path required.
    assert stages[-1].base == stages[0].base


def test_the_builder_leaves_out_installers_tests_and_unimported_parts() -> None:
    """The venv the final stage copies has no pip or setuptools, no tests folders and none of
    the parts the entry points never open (issue 25; `make image-test` runs them all on it)."""
    builder = dockerfile_stages()[0]
    runs = [rest for keyword, rest in builder.instructions if keyword == "RUN"]
    prune = [r for r in runs if "pip uninstall" in r]
    assert len(prune) == 1, runs
    assert runs.index(prune[0]) > max(i for i, r in enumerate(runs) if "pip install" in r), "pruned after installing"
    for part in ("pip setuptools", "-name tests", "kubernetes/aio", "botocore/data", "fontTools"):
        assert part in prune[0], part


def test_dockerfile_final_stage_runs_unprivileged_without_compilers() -> None:
    final = dockerfile_stages()[-1]
    compilers = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cargo|rustc|libc6-dev|python3-dev)\b")
    for keyword, rest in final.instructions:
        if keyword == "RUN":
            assert not compilers.search(rest), f"compiler in the final stage: {rest}"
    users = [rest for keyword, rest in final.instructions if keyword == "USER"]
    assert users, "final stage has no USER"
    assert users[-1].split(":")[0] == str(UID), "USER must be numeric so runAsNonRoot can verify it"
    copies = [rest for keyword, rest in final.instructions if keyword == "COPY"]
    assert any("function/main.py" in c and "/app/function/main.py" in c for c in copies)
    assert any(c.startswith("--from=") for c in copies), "the final stage takes the built venv from the builder"
    workdirs = [rest for keyword, rest in final.instructions if keyword == "WORKDIR"]
    assert workdirs[-1] == "/app"


def test_dockerfile_default_command_serves_the_watch_target() -> None:
    final = dockerfile_stages()[-1]
    (cmd,) = [rest for keyword, rest in final.instructions if keyword == "CMD"]
    argv = yaml.safe_load(cmd)  # exec form is a JSON array
    assert isinstance(argv, list), "CMD must use the exec form (signals reach the server)"
    # functions-framework's app, served by gunicorn with request limits (issue 21 item 8).
    assert argv[:3] == ["python", "-m", "claude_matrix_bot.serve"]
    assert argv[argv.index("--target") + 1] == "watch"
    assert argv[argv.index("--source") + 1] == "/app/function/main.py"
    assert "--port" not in argv, "leave the port to $PORT, which Knative sets"
    exposed = [rest for keyword, rest in final.instructions if keyword == "EXPOSE"]
    assert exposed == ["8080"]
    envs = " ".join(rest for keyword, rest in final.instructions if keyword == "ENV")
    assert "PORT=8080" in envs
    assert "PYTHONDONTWRITEBYTECODE=1" in envs, "the root filesystem is read-only"
    assert "ENTRYPOINT" not in {keyword for keyword, _ in final.instructions}, "commands in the manifests replace CMD"


def test_dockerfile_compiles_the_drawing_childs_bytecode_with_its_flags() -> None:
    # The drawing child runs with chart_drawing._CHILD_FLAGS (-OO: .opt-2.pyc bytecode); the
    # image's root filesystem is read-only, so the image draws one chart at build time with
    # the same flags (else every drawing would compile matplotlib again, and peak higher).
    import json

    from claude_matrix_bot.chart_drawing import _CHILD_FLAGS
    from claude_matrix_bot.charts import ChartSpec

    final = dockerfile_stages()[-1]
    runs = [rest for keyword, rest in final.instructions if keyword == "RUN"]
    command = f"/opt/venv/bin/python {' '.join(_CHILD_FLAGS)} -m claude_matrix_bot.chart_drawing"
    (warm,) = [run for run in runs if command in run]
    spec = re.fullmatch(r"echo '(\{.*\})'\s+\|.*", warm)
    assert spec is not None, warm
    ChartSpec.from_json(json.loads(spec.group(1)))  # a spec the child accepts
    envs = [i for i, (keyword, rest) in enumerate(final.instructions) if "PYTHONDONTWRITEBYTECODE" in rest]
    assert final.instructions.index(("RUN", warm)) < envs[0], "bytecode is written before it is turned off"


def test_dockerignore_keeps_secrets_and_clutter_out_of_the_context() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: ignore everything, then re-include what the build needs"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included >= {"pyproject.toml", "README.md", "function", "shim"}
    assert not included & {"local", ".git", "tests", "deploy", "terraform"}
    assert {"**/__pycache__", "**/*.egg-info"} <= set(lines)


def test_docker_context_builds_the_package_with_both_entry_points(tmp_path: Path) -> None:
    """What the builder stage does (`pip install ".[all]"`), on exactly the context
    .dockerignore lets through: the allow-list must be enough to build, and the wheel
    must carry the shim and both console scripts."""
    import sys
    import zipfile

    context = tmp_path / "context"
    context.mkdir()
    allowed = [
        line.strip()[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip().startswith("!")
    ]
    for name in allowed:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, context / name)
    assert (context / "function" / "main.py").is_file(), "the final stage copies function/main.py"
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = wheels.glob("claude_matrix_bot-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert {"shim/__init__.py", "shim/__main__.py", "claude_matrix_bot/__init__.py"} <= names
    assert not any(n.startswith("tests/") for n in names)
    assert "claude-matrix-bot = claude_matrix_bot.cli:main" in scripts
    assert "claude-matrix-bot-trigger = shim.__main__:main" in scripts


# --- supply chain: the image installs exactly the hash-pinned lock (issue 12) ----------------


def _locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {normalised name: (version, hashes)}."""
    from packaging.utils import canonicalize_name

    logical = re.sub(r"\\\n", " ", (REPO / "requirements.lock").read_text())
    entries: dict[str, tuple[str, list[str]]] = {}
    for raw in logical.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)(?:\s*;[^-]*)?((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"not a hash-pinned line: {line[:80]}"
        name = canonicalize_name(match.group(1))
        hashes = re.findall(r"sha256:([0-9a-f]{64})", match.group(3))
        assert name not in entries or entries[name][0] == match.group(2), f"{name} pinned twice"
        entries[name] = (match.group(2), hashes)
    return entries


def test_the_builder_installs_the_lock_with_hashes_and_nothing_else() -> None:
    builder = dockerfile_stages()[0]
    runs = [rest for keyword, rest in builder.instructions if keyword == "RUN" and "pip install" in rest]
    lock_installs = [r for r in runs if "-r requirements.lock" in r]
    assert len(lock_installs) == 1, runs
    assert "--require-hashes" in lock_installs[0] and "--no-deps" in lock_installs[0]
    copies = [rest for keyword, rest in builder.instructions if keyword == "COPY"]
    assert any(c.split()[0] == "requirements.lock" for c in copies), "the lock is in the build context"
    # Every other pip install resolves nothing: no index, no dependencies, no isolated build env.
    for run in runs:
        for command in run.split("&&"):
            if "pip install" in command and "-r requirements.lock" not in command:
                assert {"--no-index", "--no-deps", "--no-build-isolation"} <= set(command.split()), command
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert "!requirements.lock" in lines


def test_the_lock_covers_every_runtime_dependency_with_hashes() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = project["optional-dependencies"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    # The image installs ".[all]": every extra that "all" names.
    for ref in extras["all"]:
        for extra in Requirement(ref).extras:
            wanted += [Requirement(r) for r in extras[extra]]
    # The project itself is built without isolation: its build backend comes from the lock too.
    wanted += [Requirement(r) for r in pyproject["build-system"]["requires"]]
    locked = _locked()
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(project["name"]):
            continue
        assert name in locked, f"{requirement} is not in requirements.lock: run `make lock`"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version}: run `make lock`"
        assert hashes, f"{name} has no hash"
    assert all(hashes for _, hashes in locked.values()), "every entry carries at least one sha256"


def test_the_lock_is_closed_under_the_installed_dependencies() -> None:
    """Every dependency of a locked package that applies here is locked too (so --no-deps
    leaves nothing out), judged from the metadata of the packages installed in this venv."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    locked = _locked()
    missing: set[str] = set()
    for name in locked:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a platform-specific package this venv does not have
        for raw in requires:
            requirement = Requirement(raw)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(requirement.name) not in locked:
                missing.add(f"{requirement.name} (needed by {name})")
    assert not missing, f"not in requirements.lock: {sorted(missing)}"


# --- issue 21 items 4, 5, 8: the fence, the trigger token, the key store's passphrase ------------


def _template_labels(doc: Doc) -> dict[str, str]:
    template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    return dict(template["metadata"]["labels"])


def _workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] == "CronJob" or d["apiVersion"] == "serving.knative.dev/v1"]


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels is read here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_watcher_pods_are_fenced_by_a_network_policy(docs: list[Doc]) -> None:
    policy = one(docs, "NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    for workload in _workloads(docs):
        labels = _template_labels(workload)
        assert _selects(policy["podSelector"], labels) == (labels["app.kubernetes.io/component"] == "watcher")
    (ingress,) = policy["ingress"]
    assert "ports" not in ingress
    sources = ingress["from"]
    namespaces = [s["namespaceSelector"] for s in sources if "namespaceSelector" in s]
    assert namespaces == [
        {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": ["knative-serving", "kourier-system", "istio-system"],
                }
            ]
        }
    ]
    local = [s for s in sources if "namespaceSelector" not in s]
    assert local == [
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": "claude-matrix-bot", "app.kubernetes.io/component": "trigger"}
            }
        }
    ]
    for workload in _workloads(docs):
        labels = _template_labels(workload)
        if labels["app.kubernetes.io/component"] == "trigger":
            assert _selects(local[0]["podSelector"], labels)
    ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)}
    assert all("ports" in rule for rule in policy["egress"]), "no rule opens every port"


def _env_secret(container: Doc, name: str) -> Doc | None:
    for var in container.get("env", []):
        if var["name"] == name:
            return dict(var["valueFrom"]["secretKeyRef"])
    return None


def test_an_http_trigger_always_carries_a_required_token(docs: list[Doc]) -> None:
    # Issue 21 item 4: generated in the documented setup, no longer optional.
    http = [
        w for w in _workloads(docs) if not (w["kind"] == "CronJob" and w["metadata"]["name"] == "claude-matrix-bot")
    ]
    for workload in _workloads(docs):
        template = workload["spec"]["jobTemplate"]["spec"]["template"] if workload["kind"] == "CronJob" else None
        (container,) = (template or workload["spec"]["template"])["spec"]["containers"]
        ref = _env_secret(container, "TRIGGER_TOKEN")
        if workload in http:  # the Knative Service and the shim that POSTs to it
            assert ref == {"name": "claude-matrix-bot-trigger", "key": "token"}, workload["metadata"]["name"]
        else:  # `claude-matrix-bot run`: no HTTP trigger, no token
            assert ref is None


def test_every_watcher_gets_the_store_passphrase_and_no_oauth_mount(docs: list[Doc]) -> None:
    # Issue 21 items 5 and 8: the key store encrypted at rest when the Secret exists; the
    # tokens are read through the API (LOCAL_MODE is off), so their Secret is not mounted.
    assert not load_settings(config_map(docs)["data"]).local_mode
    watchers = [pod for pod in pods(docs) if not pod.owner.endswith("-trigger")]
    assert watchers
    for pod in watchers:
        (container,) = pod.spec["containers"]
        ref = _env_secret(container, "MATRIX_STORE_PASSPHRASE")
        assert ref == {"name": "claude-matrix-bot-store", "key": "passphrase", "optional": True}, pod.owner
        secrets = {v["secret"]["secretName"] for v in pod.spec.get("volumes", []) if "secret" in v}
        assert secrets == {"matrix-bot-creds"}, pod.owner
