"""How a validation failure is told to whoever sent the input: pydantic's first problem, as
`field.path: message` (the other problems usually follow from it)."""

from __future__ import annotations

from pydantic import ValidationError


def first_error(exc: ValidationError) -> str:
    problem = exc.errors()[0]
    return f"{'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}"
