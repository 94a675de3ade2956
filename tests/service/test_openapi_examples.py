"""The OpenAPI schema shows an example for every route, and every example is valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from service.app import create_app
from service.settings import Settings

_REF = re.compile(r"#/components/schemas/([A-Za-z0-9_\-]+)")


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("openapi")
    settings = Settings(data_dir=Path(data), database_url=f"sqlite:///{data / 'm.db'}")
    return create_app(settings).openapi()


def _has_example(node: Any, components: dict[str, Any], seen: set[str]) -> bool:
    text = json.dumps(node)
    if '"example' in text:
        return True
    for name in _REF.findall(text):
        if name not in seen:
            seen.add(name)
            if _has_example(components.get(name, {}), components, seen):
                return True
    return False


def _is_binary(responses: dict[str, Any]) -> bool:
    ok = responses.get("200", {}).get("content", {})
    return bool(ok) and all(c.get("schema", {}).get("format") == "binary" for c in ok.values())


def test_every_operation_shows_an_example(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    missing = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            success = {k: v for k, v in op["responses"].items() if k.startswith("2")}
            if _is_binary(success):
                continue  # a file download: its schema says binary
            request = op.get("requestBody", {})
            if not (
                _has_example(success, components, set()) or _has_example(request, components, set())
            ):
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def _models() -> list[type[BaseModel]]:
    import service.auth.schemas
    import service.configurations.schemas
    import service.devices.schemas
    import service.jobs.schemas
    import service.profiles.schemas
    import service.searches.schemas
    import service.supernets.schemas

    modules = [
        service.auth.schemas,
        service.configurations.schemas,
        service.devices.schemas,
        service.jobs.schemas,
        service.profiles.schemas,
        service.searches.schemas,
        service.supernets.schemas,
    ]
    return [
        obj
        for module in modules
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == module.__name__
        and isinstance(obj.model_config.get("json_schema_extra"), dict)
    ]


def test_the_example_check_sees_the_models() -> None:
    names = {m.__name__ for m in _models()}
    assert {"DeviceRead", "JobRead", "SearchRequest", "TokenCreated"} <= names


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_model_example_validates(model: type[BaseModel]) -> None:
    extra = model.model_config["json_schema_extra"]
    assert isinstance(extra, dict)
    examples = extra.get("examples")
    assert isinstance(examples, list) and examples
    for example in examples:
        model.model_validate(example)
