"""Infra validated offline: every check passes on infra/ and fails on a deliberately broken copy."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import infra_checks as checks

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("check", checks.ALL, ids=lambda c: c.__name__)
def test_infra_passes(check: Callable[[Path], list[str]]) -> None:
    assert check(ROOT) == []


def broken_copy(tmp_path: Path, rel: str, old: str, new: str) -> Path:
    for name in ("infra", "azure.yaml", ".funcignore", "callplane"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name)
        else:
            shutil.copy(src, tmp_path / name)
    target = tmp_path / rel
    text = target.read_text()
    assert old in text, (rel, old)
    target.write_text(text.replace(old, new, 1))
    return tmp_path


BREAKAGES = [
    (checks.check_parse, "infra/app/storage.bicep", "resource account", "resource account = = {"),
    (checks.check_parse, "infra/app/function.bicep", "LOG_FORMAT: 'json'", "LOG_FORMAT: 'js\non'"),
    (checks.check_api_versions, "infra/app/registry.bicep", "registries@2023-07-01' = {", "registries' = {"),
    (checks.check_parameters, "infra/main.parameters.json", '"location":', '"nowhere": {"value": 1}, "location":'),
    (
        checks.check_roles,
        "infra/app/rbac.bicep",
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa4",
    ),
    (
        checks.check_no_plain_secrets,
        "infra/main.bicep",
        "output REALTIME_MODEL",
        "output HANDOFF_SECRET string = 'x'\noutput REALTIME_MODEL",
    ),
    (
        checks.check_no_plain_secrets,
        "infra/app/function.bicep",
        "KEY_VAULT_URI: keyVaultUri",
        "HANDOFF_SECRET: 'whsec_plain'",
    ),
    (
        checks.check_no_plain_secrets,
        "infra/app/session-host.bicep",
        "{ name: 'KEY_VAULT_URI', value: keyVaultUri }",
        "{ name: 'ADMIN_TOKEN', value: 'letmein' }",
    ),
    # Properties checked against Azure's generated types: unknown, misspelt, read-only, wrong shape.
    (
        checks.check_resource_types_all,
        "infra/app/session-host.bicep",
        "identity: identityId\n              metadata",
        "identity: identityId\n              bogus: 1\n              metadata",
    ),
    (
        checks.check_resource_types_all,
        "infra/app/session-host.bicep",
        "terminationGracePeriodSeconds: 600",
        "terminationGracePeriodSecond: 600",
    ),
    (
        checks.check_resource_types_all,
        "infra/app/session-host.bicep",
        "containerApps@2025-01-01",
        "containerApps@2024-03-01",
    ),
    (
        checks.check_resource_types_all,
        "infra/app/storage.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: false\n    primaryEndpoints: {}",
    ),
    (checks.check_resource_types_all, "infra/app/registry.bicep", "name: 'Basic'", "name: 'Basic'\n    tier: 'x'"),
    # A secret the hook writes, referenced by a resource during provisioning: the first azd up fails.
    (
        checks.check_secret_order,
        "infra/app/function.bicep",
        "  KEY_VAULT_URI: keyVaultUri",
        "  KEY_VAULT_URI: keyVaultUri\n  HANDOFF_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/handoff-secret)'",
    ),
    (
        checks.check_secret_order,
        "callplane/vault.py",
        '"ADMIN_TOKEN": "admin-token",',
        '"ADMIN_TOKEN": "admin-token",\n    "SUMMARY_KEY": "summary-key",',
    ),
    (
        checks.check_no_plain_secrets,
        "infra/app/storage.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
    ),
    (
        checks.check_min_replicas,
        "infra/main.bicep",
        "param sessionHostMinReplicas int = 2",
        "param sessionHostMinReplicas int = 0",
    ),
    (checks.check_runtime, "infra/app/function.bicep", "version: '3.11'", "version: '3.12'"),
    (checks.check_runtime, "infra/app/function.bicep", "instanceCount: 1", "instanceCount: 0"),
    (checks.check_service_names, "azure.yaml", "  session_host:\n", "  sessionhost:\n"),
]


@pytest.mark.parametrize(
    ("check", "rel", "old", "new"), BREAKAGES, ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BREAKAGES)]
)
def test_each_check_fails_on_a_broken_copy(
    tmp_path: Path, check: Callable[[Path], list[str]], rel: str, old: str, new: str
) -> None:
    assert check(broken_copy(tmp_path, rel, old, new)) != []


def test_function_package_holds_only_what_the_function_app_runs() -> None:
    files = checks.packaged_files(ROOT)
    assert {
        "function_app.py",
        "host.json",
        "requirements.txt",
        "function_app/__init__.py",
        "function_app/webhook.py",
        "callplane/settings.py",
        "callplane/tools/lookup_order.py",
        "callplane/data/orders.json",
    } <= set(files)
    for path in files:
        top = path.split("/")[0]
        assert top in (
            "function_app.py",
            "host.json",
            "requirements.txt",
            "function_app",
            "callplane",
            ".funcignore",
            "LICENSE",
        ), path


def test_dockerfile_is_slim_non_root_and_exec_form() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "USER 10001" in text
    assert 'ENTRYPOINT ["python", "-m", "session_host"]' in text
    assert "COPY session_host/" in text and "COPY simulator/" not in text


def test_the_scale_rule_identity_needs_the_api_version_that_has_it(tmp_path: Path) -> None:
    """On Microsoft.App 2024-03-01 a custom scale rule has no `identity`: the KEDA scaler would
    run without credentials and the app would never scale. The check names exactly that."""
    copy = broken_copy(tmp_path, "infra/app/session-host.bicep", "containerApps@2025-01-01", "containerApps@2024-03-01")
    problems = checks.check_resource_types(copy)
    assert any(p.endswith("scale.rules[].custom.identity: no such property in the resource type") for p in problems), (
        problems
    )
