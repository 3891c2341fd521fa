"""Extract the resource types infra/ uses from Azure's generated Bicep types into azure-types.json.

    python infra/types/extract.py <checkout of github.com/Azure/bicep-types-az>

The source is the `generated/**/types.json` of Azure/bicep-types-az (MIT licence, Copyright (c)
Microsoft Corporation), the same data the Bicep compiler checks templates against. Only what a
property check needs is kept: for each `type@apiVersion` used in infra/, the body's object
shapes reachable from it (property names, required/read-only flags, array items, unions and
discriminated objects); descriptions and value constraints are dropped. Re-run it when an API
version in infra/ changes; tests/test_infra_types.py fails until then.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INFRA = HERE.parent
OUT = HERE / "azure-types.json"
REQUIRED, READ_ONLY = 1, 2
# Kept beside what infra/ uses for a regression test: on this version a custom scale rule has no
# `identity`, the mistake the property check must catch.
ALSO = {"Microsoft.App/containerApps@2024-03-01"}


def used_types() -> set[str]:
    found: set[str] = set()
    for f in INFRA.rglob("*.bicep"):
        found |= set(re.findall(r"^\s*resource\s+\w+\s+'([^']+@[^']+)'", f.read_text(), re.MULTILINE))
    return found


def provider_files(checkout: Path, type_name: str) -> list[str]:
    namespace, version = type_name.split("/", maxsplit=1)[0].lower(), type_name.split("@")[1]
    listing = subprocess.run(
        ["git", "-C", str(checkout), "ls-tree", "-r", "--name-only", "HEAD", "generated"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [p for p in listing if p.endswith(f"/{namespace}/{version}/types.json")]


class Compactor:
    def __init__(self, types: list[dict[str, Any]], prefix: str, out: dict[str, Any]) -> None:
        self.types, self.prefix, self.out = types, prefix, out

    def ref(self, ref: dict[str, str]) -> str | None:
        index = int(ref["$ref"].split("/")[-1])
        key = f"{self.prefix}#{index}"
        if key in self.out:
            return key
        t = self.types[index]
        kind = t["$type"]
        if kind == "ObjectType":
            self.out[key] = {}  # placeholder first: types may be recursive
            self.out[key] = {
                "object": self.props(t.get("properties", {})),
                "additional": bool(t.get("additionalProperties")),
            }
        elif kind == "ArrayType":
            self.out[key] = {}
            self.out[key] = {"array": self.ref(t["itemType"])}
        elif kind == "UnionType":
            members = [m for m in (self.ref(e) for e in t["elements"]) if m is not None]
            if not members:
                return None
            self.out[key] = {"union": members}
        elif kind == "DiscriminatedObjectType":
            self.out[key] = {}
            self.out[key] = {
                "discriminator": t["discriminator"],
                "base": self.props(t.get("baseProperties", {})),
                "elements": {name: self.ref(e) for name, e in t["elements"].items()},
            }
        else:
            return None  # a scalar (string, int, bool, literal, any): values are not checked here
        return key

    def props(self, properties: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {
                "type": self.ref(p["type"]),
                "required": bool(p.get("flags", 0) & REQUIRED),
                "readOnly": bool(p.get("flags", 0) & READ_ONLY) and not p.get("flags", 0) & REQUIRED,
            }
            for name, p in properties.items()
        }


def main(argv: list[str]) -> int:
    checkout = Path(argv[1])
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    shapes: dict[str, Any] = {}
    resources: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for type_name in sorted(used_types() | ALSO):
        for path in provider_files(checkout, type_name):
            types = json.loads(
                subprocess.run(
                    ["git", "-C", str(checkout), "show", f"HEAD:{path}"], capture_output=True, text=True, check=True
                ).stdout
            )
            for t in types:
                if t["$type"] == "ResourceType" and t["name"].lower() == type_name.lower():
                    prefix = path.split("/")[2] + "@" + path.split("/")[3]
                    resources[type_name] = Compactor(types, prefix, shapes).ref(t["body"])
                    sources[type_name] = path
        if type_name not in resources:
            print(f"not found in bicep-types-az: {type_name}", file=sys.stderr)
            return 1
    doc = {
        "origin": f"https://github.com/Azure/bicep-types-az at {commit}, generated/**/types.json",
        "licence": "MIT, Copyright (c) Microsoft Corporation (https://github.com/Azure/bicep-types-az/blob/main/LICENSE)",
        "note": "Extracted by infra/types/extract.py: object shapes only, no descriptions or value constraints.",
        "sources": sources,
        "resources": resources,
        "shapes": shapes,
    }
    OUT.write_text(json.dumps(doc, indent=None, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(resources)} resource types, {len(shapes)} shapes -> {OUT.relative_to(INFRA.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
