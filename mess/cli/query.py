"""``mess query``: best configuration for a device and budget, and its tailored model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app

NO_FEASIBLE = 3


def query(
    server: str,
    token: str,
    request: dict[str, Any],
    output: Path | None = None,
) -> dict[str, Any]:
    """Ask the service for the best configuration; download its model to ``output``."""
    from mess.client import ClientError, MessClient

    try:
        with MessClient(server, token) as client:
            answer = client.search(request)
            if output is not None:
                client.download(
                    f"/v1/configurations/{answer['configuration_id']}/model.onnx", output
                )
    except ClientError as exc:
        if exc.status_code == 422 and ("alternatives" in exc.body or "closest" in exc.body):
            raise UserError(str(exc.body.get("detail")), code=NO_FEASIBLE) from None
        raise UserError(str(exc)) from None
    return answer


@app.command("query")
def query_command(
    supernet: Annotated[str, typer.Option(help="Supernet id (from mess push).")],
    device: Annotated[str, typer.Option(help='Device name, or "gflops".')],
    server: Annotated[str, typer.Option(envvar="MESS_SERVER", help="Service URL.")],
    token: Annotated[str, typer.Option(envvar="MESS_TOKEN", help="Engineer token.")],
    budget_ms: Annotated[
        float | None, typer.Option(help="Expected-latency budget (max-accuracy).")
    ] = None,
    objective: Annotated[str, typer.Option(help="max-accuracy, min-cost or pareto.")] = (
        "max-accuracy"
    ),
    max_drop: Annotated[float | None, typer.Option(help="min-cost: allowed mIoU drop.")] = None,
    worst_budget_ms: Annotated[float | None, typer.Option(help="Worst-case budget.")] = None,
    max_exits: Annotated[int, typer.Option(help="Most early exits.")] = 3,
    truncation: Annotated[
        bool,
        typer.Option(
            help="Also configurations cut at their last exit (no final). At the paper's space "
            "they are 118 times the rest: --no-truncation searches hours less."
        ),
    ] = True,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the tailored model.onnx here.")
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Answer only with a configuration timed whole on the device (by its agent) "
            "within the budget.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Best configuration for a budget on a device, and its tailored ONNX model.

    Example: mess query --server URL --token T --supernet ID --device pi-5 --budget-ms 30
    -o model.onnx

    With --verify the service has the device's agent time the chosen model whole, path by
    path, and answers only with a configuration whose measured latency meets the budget
    ("verified" in --json; the cost model of the device learns from each measurement).

    Exit code 3 when no configuration meets the constraints (the message names the closest
    feasible ones, or with --verify the closest verified one).
    """
    request: dict[str, Any] = {
        "supernet_id": supernet,
        "device": device,
        "objective": objective,
        "max_exits": max_exits,
        "truncation": truncation,
    }
    for key, value in (
        ("budget_ms" if device != "gflops" else "budget", budget_ms),
        ("max_drop", max_drop),
        ("worst_budget_ms" if device != "gflops" else "worst_budget", worst_budget_ms),
    ):
        if value is not None:
            request[key] = value
    if verify:
        request["verify"] = True
    answer = query(server, token, request, output)
    if as_json:
        typer.echo(
            json.dumps(
                {k: v for k, v in answer.items() if k != "front"}
                | {"front": answer.get("front", [])}
            )
        )
        return
    exits = answer["configuration"]["exits"]
    typer.echo(
        f"configuration {answer['configuration_id'][:12]}: {len(exits)} early exit(s), terminal "
        f"{answer['configuration']['terminal']}; predicted mIoU {answer['miou']:.4f} "
        f"(original {answer['reference_miou']:.4f}), expected {answer['expected_cost']:.3f} "
        f"{answer['unit']}" + (f"; model written to {output}" if output else "")
    )
    verified = answer.get("verified")
    if verified:
        agreement = verified.get("exit_agreement")
        typer.echo(
            f"verified on {verified['device']}: expected {verified['expected_ms']:.3f} ms, "
            f"worst {verified['worst_ms']:.3f} ms (predicted "
            f"{verified['predicted_expected_ms']:.3f} ms), measured {verified['measured_at']}"
            + (f"; exit agreement {agreement:.1%}" if agreement is not None else "")
        )
