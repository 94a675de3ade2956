"""``mess demo``'s build: the pipeline's stages and the original network's model, under the
pipeline's one reuse rule (no training: the stages are stand-ins)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mess.demo import Demo
from mess.pipeline import BUILD_STAGES, TINY, Stage


@pytest.mark.timeout(900)  # trains a micro supernet: ~1 min alone, 5 on a loaded box
def test_the_demo_builds_once_then_reuses_everything_by_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def stages(*, workdir: Path, preset: Any) -> list[Stage]:
        def writer(name: str) -> Any:
            return lambda: (ran.append(name), (workdir / name).write_text(name))

        return [Stage(name, fields, writer(name), name) for name, fields in BUILD_STAGES]

    def write_model(*, bundle: Path, configuration: Any, output: Path) -> None:
        assert configuration == {"exits": [], "terminal": "final"}
        ran.append(output.name)
        output.write_text(bundle.read_text())

    monkeypatch.setattr("mess.demo.build_stages", stages)
    monkeypatch.setattr("mess.demo.write_model", write_model)
    outputs = [name for name, _ in BUILD_STAGES]

    first = Demo(tmp_path, TINY, Console(quiet=True))
    first.build()
    assert ran == [*outputs, "original.onnx"]
    assert list(first.timings) == outputs  # the original's model is a quiet step
    assert set(json.loads((tmp_path / "digests.json").read_text())) == {
        *outputs,
        "original.onnx",
    }

    ran.clear()
    again = Demo(tmp_path, TINY, Console(quiet=True))
    again.build()
    assert ran == [] and again.timings == {}
    # the mtime rule is gone: touching an input rebuilds nothing, a new bundle rebuilds the model
    (tmp_path / "supernet.pt").write_text("newer")
    (tmp_path / "supernet.mess").unlink()
    again.build()
    assert ran == ["supernet.mess", "original.onnx"]
