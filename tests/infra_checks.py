"""Offline policy checks on infra/ (no Bicep CLI or Azure here). Each returns a list of problems;
tests run them on the real tree and on deliberately broken copies."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import tree_sitter as ts
import tree_sitter_bicep as tsb
import yaml

PARSER = ts.Parser(ts.Language(tsb.language()))
ROLE_IDS = {  # documented built-in role definition ids (Azure built-in roles reference)
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd": "Cognitive Services OpenAI User",
    "a001fd3d-188f-4b5d-821b-7da978bf7442": "Cognitive Services OpenAI Contributor",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
}
SECRETISH = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|ACCOUNTKEY|SHAREDKEY", re.IGNORECASE)


def bicep_files(root: Path) -> list[Path]:
    return sorted((root / "infra").rglob("*.bicep"))


def check_parse(root: Path) -> list[str]:
    problems = []
    for f in bicep_files(root):
        tree = PARSER.parse(f.read_bytes())
        if tree.root_node.has_error:
            problems.append(f"{f.relative_to(root)}: does not parse")
        # tree-sitter-bicep accepts a single-quoted string broken across lines; Bicep does not.
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if "'''" not in line and _open_quote(line):
                problems.append(f"{f.relative_to(root)}:{n}: unterminated string")
    return problems


def _open_quote(line: str) -> bool:
    in_string, i = False, 0
    while i < len(line):
        ch = line[i]
        if in_string and ch == "\\":
            i += 2
            continue
        if not in_string and line.startswith("//", i):
            break
        if ch == "'":
            in_string = not in_string
        i += 1
    return in_string


def check_api_versions(root: Path) -> list[str]:
    problems = []
    for f in bicep_files(root):
        for m in re.finditer(r"^\s*resource\s+\w+\s+'([^']+)'", f.read_text(), re.MULTILINE):
            if not re.fullmatch(r"[\w.]+/[\w./]+@\d{4}-\d{2}-\d{2}(-preview)?", m.group(1)):
                problems.append(f"{f.relative_to(root)}: resource type without an explicit API version: {m.group(1)}")
    return problems


def check_parameters(root: Path) -> list[str]:
    main = (root / "infra" / "main.bicep").read_text()
    declared = set(re.findall(r"^param\s+(\w+)", main, re.MULTILINE))
    params = json.loads((root / "infra" / "main.parameters.json").read_text())["parameters"]
    return [f"main.parameters.json: {p} is not a parameter of main.bicep" for p in params if p not in declared]


def check_roles(root: Path) -> list[str]:
    problems = []
    for f in bicep_files(root):
        text = f.read_text()
        for guid in re.findall(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", text):
            if guid not in ROLE_IDS:
                problems.append(f"{f.relative_to(root)}: role id {guid} is not a documented built-in role")
    needed = {
        "Storage Table Data Contributor",
        "Storage Blob Data Owner",
        "Key Vault Secrets User",
        "AcrPull",
        "Monitoring Metrics Publisher",
        "Cognitive Services OpenAI User",
        "Key Vault Secrets Officer",
        "Cognitive Services OpenAI Contributor",
        "Monitoring Reader",
    }
    used = {
        ROLE_IDS[g] for f in bicep_files(root) for g in re.findall(r"'([0-9a-f-]{36})'", f.read_text()) if g in ROLE_IDS
    }
    problems += [f"no role assignment for {r}" for r in sorted(needed - used)]
    return problems


def check_no_plain_secrets(root: Path) -> list[str]:
    problems = []
    for f in bicep_files(root):
        text = f.read_text()
        for name, expr in re.findall(r"^output\s+(\w+)\s+\w+\s*=\s*(.+)$", text, re.MULTILINE):
            if (
                (SECRETISH.search(name) and not name.startswith("AZURE_KEY_VAULT"))
                or "listKeys" in expr
                or "secret" in expr.lower()
            ):
                problems.append(f"{f.relative_to(root)}: output {name} exposes a secret")
        # App settings and container env: a secret-looking name must be a Key Vault reference / secretRef.
        for name, value in re.findall(r"^\s*([A-Z][A-Z0-9_]*):\s*(.+)$", text, re.MULTILINE):
            if SECRETISH.search(name) and "kvRef" not in value and "@Microsoft.KeyVault(" not in value:
                problems.append(f"{f.relative_to(root)}: setting {name} is not a Key Vault reference")
        for name in re.findall(r"\{\s*name:\s*'(\w+)',\s*value:", text):
            if SECRETISH.search(name):
                problems.append(f"{f.relative_to(root)}: env {name} is a plain value, not a secretRef")
        if re.search(r"allowSharedKeyAccess:\s*true", text):
            problems.append(f"{f.relative_to(root)}: storage allows shared keys")
    return problems


def check_min_replicas(root: Path) -> list[str]:
    main = (root / "infra" / "main.bicep").read_text()
    m = re.search(r"@minValue\((\d+)\)\s*param sessionHostMinReplicas int = (\d+)", main)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        return ["session host min replicas can be below 1"]
    host = (root / "infra" / "app" / "session-host.bicep").read_text()
    if "minReplicas: minReplicas" not in host:
        return ["session host scale does not use the minReplicas parameter"]
    return []


def check_runtime(root: Path) -> list[str]:
    fn = (root / "infra" / "app" / "function.bicep").read_text()
    if not re.search(r"runtime:\s*\{\s*name:\s*'python'\s*version:\s*'3\.11'", fn):
        return ["the Functions runtime is not python 3.11"]
    if "FlexConsumption" not in fn or not re.search(
        r"alwaysReady:\s*\[\s*\{\s*name:\s*'http'\s*instanceCount:\s*[1-9]", fn
    ):
        return ["the Function App is not Flex Consumption with an always-ready http instance"]
    return []


def check_service_names(root: Path) -> list[str]:
    services = set(yaml.safe_load((root / "azure.yaml").read_text())["services"])
    tags = {t for f in bicep_files(root) for t in re.findall(r"'azd-service-name':\s*'([\w-]+)'", f.read_text())}
    problems = [f"azure.yaml service {s} has no resource tagged with it" for s in sorted(services - tags)]
    problems += [f"resource tagged azd-service-name {t} is not an azure.yaml service" for t in sorted(tags - services)]
    outputs = set(re.findall(r"^output\s+(\w+)", (root / "infra" / "main.bicep").read_text(), re.MULTILINE))
    if "AZURE_CONTAINER_REGISTRY_ENDPOINT" not in outputs:
        problems.append("main.bicep does not output AZURE_CONTAINER_REGISTRY_ENDPOINT")
    return problems


def packaged_files(root: Path) -> list[str]:
    """What azd zips for the function service (project '.'): tracked files minus .funcignore."""
    patterns = [
        p.strip() for p in (root / ".funcignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    def ignored(path: str) -> bool:
        parts = path.split("/")
        for pat in patterns:
            if pat.endswith("/"):
                if pat.rstrip("/") in parts[:-1] or any(fnmatch.fnmatch(p, pat.rstrip("/")) for p in parts[:-1]):
                    return True
            elif fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(parts[-1], pat):
                return True
        return False

    return sorted(f for f in files if not ignored(f))


# --- resource bodies against Azure's generated types (infra/types/azure-types.json) -------------
TOP_LEVEL_EXTRA = {"dependsOn", "scope", "parent"}  # Bicep's own, not part of the resource body


def load_types(root: Path) -> dict[str, object]:
    return json.loads((root / "infra" / "types" / "azure-types.json").read_text())  # type: ignore[no-any-return]


def _key(prop: ts.Node) -> str | None:
    first = prop.named_children[0]
    if first.type == "identifier":
        return first.text.decode()
    if first.type == "string" and len(first.named_children) == 1 and first.named_children[0].type == "string_content":
        return first.named_children[0].text.decode()
    return None  # an interpolated key: not checkable


def _string_literal(node: ts.Node) -> str | None:
    if node.type == "string" and len(node.named_children) == 1 and node.named_children[0].type == "string_content":
        return node.named_children[0].text.decode()
    return None


class TypeChecker:
    def __init__(self, types: dict[str, Any]) -> None:
        self.shapes: dict[str, Any] = types["shapes"]
        self.resources: dict[str, str] = types["resources"]

    def resource(self, type_name: str, body: ts.Node, where: str) -> list[str]:
        key = self.resources.get(type_name)
        if key is None:
            return [f"{where}: {type_name} is not in infra/types/azure-types.json (run infra/types/extract.py)"]
        return self.check(body, key, where, top=True)

    def check(self, node: ts.Node, key: str | None, where: str, top: bool = False) -> list[str]:
        if key is None or node.type not in ("object", "array"):
            return []  # a scalar, or an expression whose shape is only known at deploy time
        shape = self.shapes[key]
        if "union" in shape:
            return min((self.check(node, member, where, top) for member in shape["union"]), key=len)
        if "array" in shape:
            if node.type != "array":
                return [f"{where}: an array is expected"]
            return [p for item in node.named_children for p in self.check(item, shape["array"], f"{where}[]")]
        if node.type != "object":
            return [f"{where}: an object is expected"]
        props = self._props(shape, node)
        if isinstance(props, str):
            return [f"{where}{props}"]
        return self._object(node, props, bool(shape.get("additional")), where, top)

    def _props(self, shape: dict[str, Any], node: ts.Node) -> dict[str, Any] | str:
        """The properties `node` may hold; a discriminated object's depend on its discriminator."""
        props = dict(shape.get("object") or shape.get("base") or {})
        if "discriminator" not in shape:
            return props
        chosen = None
        for prop in node.named_children:
            if prop.type == "object_property" and _key(prop) == shape["discriminator"]:
                chosen = _string_literal(prop.named_children[-1])
        if chosen is not None and chosen not in shape["elements"]:
            return f".{shape['discriminator']}: '{chosen}' is not one of {sorted(shape['elements'])}"
        elements = [shape["elements"][chosen]] if chosen is not None else list(shape["elements"].values())
        for element in elements:
            props.update(self.shapes[element].get("object", {}))
        return props

    def _object(self, node: ts.Node, props: dict[str, Any], additional: bool, where: str, top: bool) -> list[str]:
        problems: list[str] = []
        seen: set[str] = set()
        for prop in node.named_children:
            if prop.type != "object_property" or prop.named_children[0].type == "resource_declaration":
                continue
            name = _key(prop)
            if name is None or (top and name in TOP_LEVEL_EXTRA):
                continue
            seen.add(name)
            spec = props.get(name)
            if spec is None:
                if not additional:
                    problems.append(f"{where}.{name}: no such property in the resource type")
                continue
            if spec["readOnly"]:
                problems.append(f"{where}.{name}: read-only in the resource type; it cannot be set")
            problems += self.check(prop.named_children[-1], spec["type"], f"{where}.{name}")
        for name, spec in props.items():
            if spec["required"] and name not in seen and not (top and name == "name"):
                problems.append(f"{where}.{name}: required by the resource type but not set")
        return problems


def check_resource_types(root: Path) -> list[str]:
    checker = TypeChecker(load_types(root))  # type: ignore[arg-type]
    problems: list[str] = []
    for f in bicep_files(root):
        tree = PARSER.parse(f.read_bytes())
        for decl in tree.root_node.named_children:
            if decl.type != "resource_declaration" or any(c.type == "existing" for c in decl.children):
                continue
            type_name = _string_literal(decl.named_children[1]) or ""
            body = decl.named_children[-1]
            while body.type in ("if_statement", "for_statement"):
                body = body.named_children[-1]
            where = f"{f.relative_to(root)}:{decl.start_point[0] + 1} {decl.named_children[0].text.decode()}"
            problems += checker.resource(type_name, body, where)
    return problems


def check_resource_types_all(root: Path) -> list[str]:
    return check_resource_types(root)


# --- secrets: created no later than whatever reads them, in azd's order -------------------------
# `azd up`: provision (Bicep) -> postprovision hook -> deploy (the apps' code starts). A secret
# that a Bicep resource references (a Key Vault reference or a Container Apps keyVaultUrl) is
# read during provisioning, so Bicep itself must create it; a secret the apps read at start-up
# (callplane/vault.py) may come from provisioning or from the hook.
KV_REFERENCE = re.compile(r"(?:secrets/|SecretName=)([a-z0-9-]+)")


def _bicep_created_secrets(root: Path) -> set[str]:
    created: set[str] = set()
    for f in bicep_files(root):
        text = f.read_text()
        for m in re.finditer(
            r"resource\s+\w+\s+'Microsoft\.KeyVault/vaults/secrets@[^']+'\s*=\s*\{(.*?)\n\}", text, re.S
        ):
            created |= set(re.findall(r"name:\s*'([a-z0-9-]+)'", m.group(1)))
    return created


def _hook_created_secrets(root: Path) -> set[str]:
    hook = (root / "infra" / "hooks" / "postprovision.py").read_text()
    names = re.search(r"^WEBHOOK_SECRET, HANDOFF_SECRET, ADMIN_TOKEN, OPENAI_KEY = \((.*?)\)", hook, re.S | re.M)
    return set(re.findall(r'"([a-z0-9-]+)"', names.group(1))) if names else set()


def _runtime_secrets(root: Path) -> tuple[set[str], set[str]]:
    """(all secrets the apps read at start-up, the optional ones) from callplane/vault.py."""
    text = (root / "callplane" / "vault.py").read_text()
    table = dict(re.findall(r'"([A-Z_]+)":\s*"([a-z0-9-]+)"', text.split("OPTIONAL")[0]))
    optional_settings = set(re.findall(r'"([A-Z_]+)"', text.split("OPTIONAL = ", 1)[1].split("\n")[0]))
    return set(table.values()), {table[s] for s in optional_settings if s in table}


def check_secret_order(root: Path) -> list[str]:
    problems = []
    bicep_made, hook_made = _bicep_created_secrets(root), _hook_created_secrets(root)
    for f in bicep_files(root):
        text = f.read_text()
        for line in text.splitlines():
            if "keyVaultUrl" in line or "@Microsoft.KeyVault(" in line or "kvRef" in line:
                for name in KV_REFERENCE.findall(line):
                    if name not in bicep_made:
                        problems.append(
                            f"{f.relative_to(root)}: secret {name} is referenced during provisioning but "
                            f"created {'by the postprovision hook, after it' if name in hook_made else 'nowhere'}"
                        )
    runtime, optional = _runtime_secrets(root)
    for name in sorted(runtime - optional - bicep_made - hook_made):
        problems.append(f"callplane/vault.py: the apps need secret {name}, which neither Bicep nor a hook creates")
    if not runtime:
        problems.append("callplane/vault.py: no secrets table found")
    return problems


ALL = [
    check_parse,
    check_resource_types_all,
    check_secret_order,
    check_api_versions,
    check_parameters,
    check_roles,
    check_no_plain_secrets,
    check_min_replicas,
    check_runtime,
    check_service_names,
]
