"""The pipeline's one exception for inputs it cannot use."""

from __future__ import annotations


class PipelineError(ValueError):
    """A stage's inputs are unusable: an unknown stage or device, data that cannot be read or
    does not match the supernet, a missing checkpoint to resume from, or settings the training
    refuses. The CLI prints it as a usage error (exit 2)."""
