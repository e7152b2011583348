"""The Terraform module, parsed with python-hcl2 (no terraform binary or providers needed):
declarations and references agree, files it reads exist, providers are pinned, the example
tfvars fit, and the kustomize overlay it builds (namespace, image, settings, schedule,
bucket state) is one kustomize accepts."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TERRAFORM = REPO / "terraform"
MODULE_DIRS = sorted({path.parent for path in TERRAFORM.rglob("*.tf") if ".terraform" not in path.parts})


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _strip_comments(node: Any, *, drop: tuple[str, ...] = ("__comments__", "__is_block__")) -> Any:
    if isinstance(node, dict):
        return {k: _strip_comments(v, drop=drop) for k, v in node.items() if k not in drop}
    if isinstance(node, list):
        return [_strip_comments(v, drop=drop) for v in node]
    return node


@dataclass
class Module:
    """Everything one Terraform module directory declares, and the text of its expressions."""

    path: Path
    blocks: dict[str, list[Any]] = field(default_factory=dict)
    expressions: str = ""

    def named(self, kind: str) -> dict[str, Any]:
        """variable/output/module blocks by name."""
        out: dict[str, Any] = {}
        for block in self.blocks.get(kind, []):
            for name, body in block.items():
                out[_unquote(name)] = body
        return out

    def typed(self, kind: str) -> set[tuple[str, str]]:
        """resource/data blocks as (type, name)."""
        out = set()
        for block in self.blocks.get(kind, []):
            for type_name, by_name in block.items():
                for name in by_name:
                    out.add((_unquote(type_name), _unquote(name)))
        return out

    def locals(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for block in self.blocks.get("locals", []):
            out.update(block)
        return out

    def required_providers(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for block in self.blocks.get("terraform", []):
            for providers in block.get("required_providers", []):
                out.update(providers)
        return out

    def required_version(self) -> str | None:
        for block in self.blocks.get("terraform", []):
            if "required_version" in block:
                return _unquote(str(block["required_version"]))
        return None


@cache
def load(directory: Path) -> Module:
    module = Module(directory)
    for tf in sorted(directory.glob("*.tf")):
        with tf.open() as handle:
            parsed = _strip_comments(hcl2.load(handle))
        for kind, blocks in parsed.items():
            module.blocks.setdefault(kind, []).extend(blocks)
    # Descriptions are prose: a "module.eks.x" there is an example, not a reference.
    module.expressions = json.dumps(_strip_comments(module.blocks, drop=("description",)))
    return module


@pytest.fixture(params=MODULE_DIRS, ids=lambda p: str(p.relative_to(TERRAFORM)) or "root")
def module(request: pytest.FixtureRequest) -> Module:
    return load(request.param)


def test_modules_found() -> None:
    names = {str(p.relative_to(TERRAFORM)) for p in MODULE_DIRS}
    assert names == {".", "modules/gcs-state", "modules/s3-state", "examples/gke", "examples/eks"}


def test_terraform_and_providers_are_pinned(module: Module) -> None:
    version = module.required_version()
    assert version is not None
    assert version.startswith(">= 1.6"), version
    providers = module.required_providers()
    used = {type_name.split("_")[0] for type_name, _ in module.typed("resource") | module.typed("data")}
    used |= {_unquote(name) for block in module.blocks.get("provider", []) for name in block}
    assert used <= set(providers), f"providers used but not required: {used - set(providers)}"
    for name, spec in providers.items():
        source, version = _unquote(spec["source"]), _unquote(spec["version"])
        assert re.fullmatch(r"(hashicorp|kbst)/[a-z]+", source), name
        assert re.fullmatch(r"~> \d+\.\d+(\.\d+)?", version), f"{name}: pin with ~>, got {version}"


def test_every_reference_is_declared(module: Module) -> None:
    text = module.expressions
    variables = set(module.named("variable"))
    assert set(re.findall(r"\bvar\.(\w+)", text)) <= variables
    assert set(re.findall(r"\blocal\.(\w+)", text)) <= set(module.locals())
    data = module.typed("data")
    for type_name, name in re.findall(r"\bdata\.(\w+)\.(\w+)", text):
        assert (type_name, name) in data, f"data.{type_name}.{name}"
    resources = module.typed("resource")
    prefixes = tuple(f"{p}_" for p in module.required_providers())
    for type_name, name in re.findall(r"(?<![.\w])([a-z0-9]+_\w+)\.([a-z_]\w*)", text):
        if type_name.startswith(prefixes):
            assert (type_name, name) in resources, f"{type_name}.{name}"
    calls = module.named("module")
    for name, output in re.findall(r"\bmodule\.(\w+)\.(\w+)", text):
        assert name in calls, f"module.{name}"
        child = load((module.path / _unquote(calls[name]["source"])).resolve())
        assert output in child.named("output"), f"module.{name}.{output}"


def test_every_variable_is_used_and_described(module: Module) -> None:
    text = module.expressions
    for name, body in module.named("variable").items():
        assert f"var.{name}" in text, f"unused variable {name}"
        assert _unquote(body.get("description", "")), f"variable {name} has no description"


def test_every_output_is_described(module: Module) -> None:
    for name, body in module.named("output").items():
        assert _unquote(body.get("description", "")), f"output {name} has no description"
        assert "value" in body


def test_module_calls_match_the_child_variables(module: Module) -> None:
    for name, call in module.named("module").items():
        source = (module.path / _unquote(call["source"])).resolve()
        assert source.is_dir(), f"module {name}: {source}"
        child = load(source)
        declared = child.named("variable")
        arguments = set(call) - {"source", "version", "providers", "depends_on", "count", "for_each"}
        assert arguments <= set(declared), f"module {name}: unknown {arguments - set(declared)}"
        required = {v for v, body in declared.items() if "default" not in body}
        assert required <= arguments, f"module {name}: missing {required - arguments}"


def test_files_the_module_reads_exist(module: Module) -> None:
    text = module.expressions
    roots = {"path.module": module.path}
    for name, value in module.locals().items():
        found = re.fullmatch(r'\$\{abspath\(\\"\$\{path\.module\}/([^"\\]+)\\"\)\}', json.dumps(value)[1:-1])
        if found:
            roots[f"local.{name}"] = (module.path / found.group(1)).resolve()
    checked = 0
    for root, relative in re.findall(r"\$\{(path\.module|local\.\w+)\}/([\w./-]+)", text):
        if root in roots:
            assert (roots[root] / relative).exists(), f"{root}/{relative}"
            checked += 1
    if module.path == TERRAFORM:
        assert checked >= 5  # three overlays, the bucket component, the image component


def test_root_overlays_cover_every_trigger_mode() -> None:
    root = load(TERRAFORM)
    overlays = root.locals()["overlays"]
    (condition,) = [v["validation"][0]["condition"] for n, v in root.named("variable").items() if n == "trigger_mode"]
    allowed = set(re.findall(r'\\?"([a-z-]+)\\?"', condition.split("[", 1)[1].split("]", 1)[0]))
    assert set(overlays) == allowed == {"knative", "cronjob", "knative-cronjob-trigger"}
    (backend,) = [v["validation"][0]["condition"] for n, v in root.named("variable").items() if n == "state_backend"]
    assert set(re.findall(r'"(\w+)"', backend.replace('\\"', '"'))) >= {"pvc", "gcs", "s3"}


@pytest.mark.parametrize(
    "tfvars", sorted(TERRAFORM.rglob("terraform.tfvars.example")), ids=lambda p: str(p.relative_to(TERRAFORM))
)
def test_tfvars_examples_fit_their_module(tfvars: Path) -> None:
    with tfvars.open() as handle:
        values = _strip_comments(hcl2.load(handle))
    module = load(tfvars.parent)
    declared = module.named("variable")
    assert set(values) <= set(declared), f"undeclared: {set(values) - set(declared)}"
    required = {v for v, body in declared.items() if "default" not in body}
    assert required <= set(values), f"missing required: {required - set(values)}"


def test_gcs_module_locks_the_bucket_down() -> None:
    module = load(TERRAFORM / "modules" / "gcs-state")
    (bucket,) = [
        b['"google_storage_bucket"']['"state"'] for b in module.blocks["resource"] if '"google_storage_bucket"' in b
    ]
    assert bucket["uniform_bucket_level_access"] is True
    assert _unquote(bucket["public_access_prevention"]) == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    text = module.expressions
    assert "roles/iam.workloadIdentityUser" in text
    assert "svc.id.goog[${var.namespace}/${var.kubernetes_service_account}]" in text
    assert "roles/storage.objectAdmin" in text
    assert "iam.gke.io/gcp-service-account" in text
    # Issue 21 item 8: object access only under the prefix (an IAM condition), listing on the bucket.
    bindings = {
        _unquote(name): body
        for block in module.blocks["resource"]
        for type_name, by_name in block.items()
        if _unquote(type_name) == "google_storage_bucket_iam_member"
        for name, body in by_name.items()
    }
    roles = {name: _unquote(body["role"]) for name, body in bindings.items()}
    assert sorted(roles.values()) == ["roles/storage.legacyBucketReader", "roles/storage.objectAdmin"]
    (admin,) = [body for name, body in bindings.items() if roles[name] == "roles/storage.objectAdmin"]
    (condition,) = admin["condition"]
    assert json.dumps(condition["expression"]) == json.dumps(
        '"resource.name.startsWith(\\"projects/_/buckets/${google_storage_bucket.state.name}/objects/'
        '${local.prefix}/\\")"'
    )
    assert json.dumps(module.locals()["prefix"]) == json.dumps('${trimsuffix(var.prefix, "/")}')


def test_s3_module_locks_the_bucket_down_and_scopes_the_role() -> None:
    module = load(TERRAFORM / "modules" / "s3-state")
    resources = {type_name for type_name, _ in module.typed("resource")}
    assert {"aws_s3_bucket_versioning", "aws_s3_bucket_public_access_block", "aws_iam_role"} <= resources
    text = module.expressions
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert re.search(rf'"{flag}": true', text), flag
    assert '\\"Enabled\\"' in text
    assert "sts:AssumeRoleWithWebIdentity" in text
    assert "system:serviceaccount:${var.namespace}:${var.kubernetes_service_account}" in text
    # Object access only under the prefix; no s3:* and no bucket-wide object ARN.
    assert "${aws_s3_bucket.state.arn}/${local.prefix}/*" in text
    assert "s3:*" not in text
    assert "${aws_s3_bucket.state.arn}/*" not in text
    assert "eks.amazonaws.com/role-arn" in text


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on this machine (only `terraform fmt` needs it; the rest is parsed)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


# --- the overlay the module builds, emulated with kubectl kustomize ----------------------------


TRIGGER_TOKEN = "generated-by-random-password-0123456789abcdef"  # a stand-in for random_password


def _emulate_overlay(
    tmp_path: Path,
    *,
    trigger_mode: str,
    backend: str,
    namespace: str,
    settings: tuple[str, ...] = (),
    passphrase: str | None = None,
) -> list[dict[str, Any]]:
    """The kustomization main.tf's kustomization_overlay expresses, written as YAML and built.

    Mirrors data.kustomization_overlay.bot: overlay by trigger_mode, bucket-state component,
    namespace, image, merged settings, FUNCTION_URL, schedule patch, ServiceAccount annotations,
    the generated trigger token (its Secret, and the PingSource's extension) and the optional
    key-store passphrase's Secret.
    """
    root = load(TERRAFORM)
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    schedule_kind = "PingSource" if trigger_mode == "knative" else "CronJob"
    assert f'kind = \\"{schedule_kind}\\"' in json.dumps(root.locals()["schedule_target"])
    image = yaml.safe_load((REPO / "deploy" / "components" / "common" / "kustomization.yaml").read_text())["images"][0]
    state_url = "file:///state" if backend == "pvc" else f"{'gs' if backend == 'gcs' else 's3'}://bucket/prefix"
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"../deploy/overlays/{trigger_mode}"],
        "components": [] if backend == "pvc" else ["../deploy/components/bucket-state"],
        "namespace": namespace,
        "images": [{"name": image["newName"], "newName": "registry.example.org/me/cmb", "newTag": "9.9.9"}],
        "configMapGenerator": [
            {
                "name": "claude-matrix-bot-config",
                "behavior": "merge",
                "literals": [*settings, "MATRIX_ROOM_ID=!tf:example.org", f"STATE_URL={state_url}"],
            }
        ],
        "patches": [
            {
                "target": {"kind": schedule_kind},
                "patch": json.dumps([{"op": "replace", "path": "/spec/schedule", "value": "*/10 * * * *"}]),
            },
            {
                "patch": yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": "claude-matrix-bot", "annotations": {"example.org/identity": "x"}},
                    }
                )
            },
        ],
    }
    secrets: list[dict[str, Any]] = []
    if trigger_mode != "cronjob":
        secrets.append({"name": "claude-matrix-bot-trigger", "type": "Opaque", "literals": [f"token={TRIGGER_TOKEN}"]})
    if passphrase is not None:
        secrets.append({"name": "claude-matrix-bot-store", "type": "Opaque", "literals": [f"passphrase={passphrase}"]})
    if secrets:
        kustomization["secretGenerator"] = secrets
    if trigger_mode == "knative":
        ping = [{"op": "add", "path": "/spec/ceOverrides", "value": {"extensions": {"triggertoken": TRIGGER_TOKEN}}}]
        kustomization["patches"].append({"target": {"kind": "PingSource"}, "patch": json.dumps(ping)})
    if trigger_mode == "knative-cronjob-trigger":
        kustomization["configMapGenerator"].append(
            {
                "name": "claude-matrix-bot-trigger-config",
                "behavior": "merge",
                "literals": [f"FUNCTION_URL=http://claude-matrix-bot.{namespace}.svc.cluster.local"],
            }
        )
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    kubectl = shutil.which("kubectl")
    assert kubectl
    result = subprocess.run(
        [kubectl, "kustomize", str(tmp_path / "tf")], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("trigger_mode", ["knative", "cronjob", "knative-cronjob-trigger"])
@pytest.mark.parametrize("backend", ["pvc", "gcs", "s3"])
def test_terraform_overlay_builds_for_every_mode_and_backend(tmp_path: Path, trigger_mode: str, backend: str) -> None:
    namespace = "bots"
    docs = _emulate_overlay(tmp_path, trigger_mode=trigger_mode, backend=backend, namespace=namespace)
    for doc in docs:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == namespace
        else:
            assert doc["metadata"]["namespace"] == namespace, doc["kind"]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["namespace"] == namespace
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"] == {"example.org/identity": "x"}
    scheduled = [d for d in docs if d["kind"] in ("PingSource", "CronJob")]
    assert scheduled
    assert all(d["spec"]["schedule"] == "*/10 * * * *" for d in scheduled)
    images = re.findall(r"image: (\S+)", yaml.safe_dump_all(docs))
    assert images
    assert set(images) == {"registry.example.org/me/cmb:9.9.9"}
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert len(claims) == (1 if backend == "pvc" else 0)
    config = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("claude-matrix-bot-config")
    ]
    assert config[0]["data"]["MATRIX_ROOM_ID"] == "!tf:example.org"
    if trigger_mode == "knative-cronjob-trigger":
        (trigger,) = [d for d in docs if d["kind"] == "ConfigMap" and "trigger-config" in d["metadata"]["name"]]
        assert trigger["data"]["FUNCTION_URL"] == f"http://claude-matrix-bot.{namespace}.svc.cluster.local"


def test_accounts_become_one_setting_and_the_role_stays_on_the_one_secret(tmp_path: Path) -> None:
    # docs/design.md §6: var.accounts -> ACCOUNTS in the ConfigMap (only when set), one Secret for all.
    from claude_matrix_bot.settings import _ACCOUNT_NAME, load_settings

    root = load(TERRAFORM)
    variable = root.named("variable")["accounts"]
    assert variable["default"] == []
    assert "list(string)" in json.dumps(variable["type"])
    condition = json.dumps(variable["validation"][0]["condition"])
    assert _ACCOUNT_NAME.pattern.replace("\\", "\\\\") in condition, "the same name rule as the bot's"
    setting = json.dumps(root.locals()["accounts_setting"])
    assert "ACCOUNTS" in setting and "var.accounts" in setting and "length(var.accounts) > 0" in setting
    assert "local.accounts_setting" in json.dumps(root.locals()["settings"])
    keys = json.dumps(root.locals()["token_secret_keys"])
    assert "${name}.refreshToken" in keys

    docs = _emulate_overlay(
        tmp_path, trigger_mode="cronjob", backend="pvc", namespace="bots", settings=("ACCOUNTS=work,priv",)
    )
    (config,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("claude-matrix-bot-config")
    ]
    assert load_settings(config["data"]).accounts == ("work", "priv")
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert [rule["resourceNames"] for rule in role["rules"]] == [["claude-oauth-tokens"]]


@pytest.mark.parametrize("trigger_mode", ["knative", "cronjob", "knative-cronjob-trigger"])
def test_the_trigger_token_is_generated_and_the_passphrase_is_an_optional_input(
    tmp_path: Path, trigger_mode: str
) -> None:
    # Issue 21 items 4 and 5: the token is no longer optional on the HTTP paths; the key
    # store's passphrase can come from terraform (sensitive, optional), never from settings.
    root = load(TERRAFORM)
    assert ("random_password", "trigger_token") in root.typed("resource")
    text = root.expressions
    assert "token=${random_password.trigger_token[0].result}" in text
    assert "passphrase=${var.matrix_store_passphrase}" in text
    assert "nonsensitive(var.matrix_store_passphrase != null)" in text
    variable = root.named("variable")["matrix_store_passphrase"]
    assert variable["sensitive"] is True and variable["default"] is None
    assert "MATRIX_STORE_PASSPHRASE" in json.dumps(root.named("variable")["settings"]["validation"])

    passphrase = "a-passphrase-for-the-key-store"
    docs = _emulate_overlay(tmp_path, trigger_mode=trigger_mode, backend="pvc", namespace="bots", passphrase=passphrase)
    secrets = {d["metadata"]["name"].rsplit("-", 1)[0]: d for d in docs if d["kind"] == "Secret"}
    store = secrets.pop("claude-matrix-bot-store")
    assert base64.b64decode(store["data"]["passphrase"]).decode() == passphrase
    if trigger_mode == "cronjob":
        assert secrets == {}, "no HTTP trigger, no token"
        return
    token = base64.b64decode(secrets["claude-matrix-bot-trigger"]["data"]["token"]).decode()
    assert token == TRIGGER_TOKEN
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    refs = re.findall(r"name: (claude-matrix-bot-(?:trigger|store)-(?!config)\S+)", yaml.safe_dump_all(docs))
    assert refs and set(refs) <= names, "the hashed names reach the workloads"
    pings = [d for d in docs if d["kind"] == "PingSource"]
    assert [p["spec"]["ceOverrides"]["extensions"]["triggertoken"] for p in pings] == (
        [TRIGGER_TOKEN] if trigger_mode == "knative" else []
    )
