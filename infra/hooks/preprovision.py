"""azd preprovision hook: refuse, before anything is created, the settings a deployment cannot work
with, naming each one and how to fix it. Standard library only.

Checked: the dialect; for Azure OpenAI an https endpoint and a way to authenticate (the resource
name, so the apps' managed identity gets its role, or an API key); for native OpenAI an API key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from urllib.parse import urlparse


def problems(env: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    dialect = env.get("REALTIME_DIALECT", "") or "azure"
    use_key = env.get("USE_OPENAI_KEY", "false").lower() == "true"
    has_key = bool(env.get("AZURE_OPENAI_API_KEY"))
    if dialect not in ("azure", "openai"):
        found.append(f"REALTIME_DIALECT={dialect}: use azure (Azure OpenAI) or openai (api.openai.com)")
        return found
    if use_key and not has_key:
        found.append("USE_OPENAI_KEY=true but AZURE_OPENAI_API_KEY is empty: azd env set AZURE_OPENAI_API_KEY <key>")
    if dialect == "openai":
        if not (use_key and has_key):
            found.append(
                "native OpenAI needs an API key: azd env set USE_OPENAI_KEY true; "
                "azd env set AZURE_OPENAI_API_KEY sk-..."
            )
        return found
    endpoint = env.get("AZURE_OPENAI_ENDPOINT", "")
    url = urlparse(endpoint)
    if url.scheme != "https" or not url.hostname:
        found.append(
            "AZURE_OPENAI_ENDPOINT must be the resource's https endpoint, e.g. https://<resource>.openai.azure.com"
        )
    elif url.path.strip("/"):
        found.append(f"AZURE_OPENAI_ENDPOINT={endpoint}: give the endpoint without a path (no /openai)")
    if not use_key and not env.get("AZURE_OPENAI_RESOURCE_NAME"):
        found.append(
            "AZURE_OPENAI_RESOURCE_NAME is empty: the apps use their managed identity, which needs a role "
            "on the resource; azd env set AZURE_OPENAI_RESOURCE_NAME <name> (and AZURE_OPENAI_RESOURCE_GROUP "
            "if it is in another group), or use a key: azd env set USE_OPENAI_KEY true"
        )
    return found


def main() -> int:
    found = problems(os.environ)
    for line in found:
        print(f"preprovision: {line}", file=sys.stderr)
    if found:
        print("preprovision: nothing was created; fix the settings above and run azd up again", file=sys.stderr)
        return 1
    print("preprovision: settings look right")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
