"""Which onnxruntime providers run the models here, and how to name this machine."""

from __future__ import annotations


def resolve_providers(provider: str) -> list[str]:
    """onnxruntime providers for ``auto``, ``cpu`` or ``cuda``: ``auto`` takes CUDA where this
    onnxruntime build has it.

    Raises:
        SystemExit: ``cuda`` asked for, but this onnxruntime has no CUDA provider.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "cuda" or (provider == "auto" and "CUDAExecutionProvider" in available):
        if "CUDAExecutionProvider" not in available:
            raise SystemExit("--provider cuda: this onnxruntime has no CUDAExecutionProvider")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def describe_device(*, providers: list[str], threads: int) -> str:
    """One line naming the processor (or GPU), the onnxruntime version and how it runs."""
    from profilers.measure import device_attributes

    attrs = device_attributes()
    if providers[0] == "CUDAExecutionProvider":
        import torch

        where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA GPU"
        runtime = "CUDA"
    else:
        where = f"{attrs['cpu']} ({attrs['cores']} cores)"
        runtime = f"CPU, {threads} thread{'s' if threads > 1 else ''}"
    return f"{where}, onnxruntime {attrs['runtime_version']} {runtime}"
