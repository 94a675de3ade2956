"""mess-agent: the on-device profiler (onnxruntime + httpx only)."""
