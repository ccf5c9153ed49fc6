"""The config reference (docs/CONFIG.md), written from the pydantic models of :mod:`adapt.config`:
every key with its type, default and description, one table per section. ``adapt config-reference``
prints it; a test keeps the committed file equal to it."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from pydantic import BaseModel

from adapt.config import ExperimentConfig

HEADER = """# Config reference

Every key of an experiment config (`adapt/config.py`), with its type, default and what it does;
where a default is a paper's or its authors' code's choice, the description says so. Written by
`adapt config-reference > docs/CONFIG.md`; a test keeps this file equal to it.
"""


def _type_name(annotation: Any) -> str:
    """``int | "auto"``-style names of a field's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" if a is not None else "null" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is typing.Annotated or (hasattr(annotation, "__metadata__") and args):
        return _type_name(args[0])
    if annotation is type(None):
        return "null"
    name = getattr(annotation, "__name__", str(annotation))
    return {"StrictInt": "int"}.get(name, name)


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return ""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return f"{value}"


def _section(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    rows, subsections = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            subsections.append((annotation, f"{key}."))
            continue
        default = field.get_default(call_default_factory=True)
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {_type_name(annotation)} | `{_default(default)}` | {desc} |")
    if rows:
        title = prefix.rstrip(".") or "(top level)"
        doc = inspect.cleandoc(model.__doc__ or "") if model.__doc__ and model.__doc__ != BaseModel.__doc__ else ""
        out += [f"## `{title}`", ""] + ([doc.replace("\n", " "), ""] if doc else [])
        out += ["| key | type | default | description |", "|---|---|---|---|", *rows, ""]
    for sub, sub_prefix in subsections:
        _section(sub, sub_prefix, out)


def config_reference() -> str:
    """docs/CONFIG.md's text."""
    out = [HEADER]
    _section(ExperimentConfig, "", out)
    return "\n".join(out).rstrip() + "\n"
