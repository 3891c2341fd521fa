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


ALL = [
    check_parse,
    check_api_versions,
    check_parameters,
    check_roles,
    check_no_plain_secrets,
    check_min_replicas,
    check_runtime,
    check_service_names,
]


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
            results = [self.check(node, member, where, top) for member in shape["union"]]
            return min(results, key=len)
        if "array" in shape:
            if node.type != "array":
                return [f"{where}: an array is expected"]
            return [p for item in node.named_children for p in self.check(item, shape["array"], f"{where}[]")]
        if node.type != "object":
            return [f"{where}: an object is expected"]
        props = dict(shape.get("object") or shape.get("base") or {})
        if "discriminator" in shape:
            chosen = None
            for prop in node.named_children:
                if prop.type == "object_property" and _key(prop) == shape["discriminator"]:
                    chosen = _string_literal(prop.named_children[-1])
            element = shape["elements"].get(chosen) if chosen is not None else None
            if chosen is not None and element is None:
                return [f"{where}.{shape['discriminator']}: '{chosen}' is not one of {sorted(shape['elements'])}"]
            if element is not None:
                props.update(self.shapes[element].get("object", {}))
            else:
                for el in shape["elements"].values():
                    props.update(self.shapes[el].get("object", {}))
        problems: list[str] = []
        seen: set[str] = set()
        for prop in node.named_children:
            if prop.type != "object_property" or prop.named_children[0].type == "resource_declaration":
                continue
            name = _key(prop)
            if name is None:
                continue
            seen.add(name)
            if top and name in TOP_LEVEL_EXTRA:
                continue
            spec = props.get(name)
            if spec is None:
                if not shape.get("additional"):
                    problems.append(f"{where}.{name}: no such property in the resource type")
                continue
            if spec["readOnly"]:
                problems.append(f"{where}.{name}: read-only in the resource type; it cannot be set")
            problems += self.check(prop.named_children[-1], spec["type"], f"{where}.{name}")
        for name, spec in props.items():
            if spec["required"] and name not in seen and not (top and name in ("name",)):
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
