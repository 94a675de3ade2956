"""The web dashboard under ``/ui`` (docs/DESIGN.md, "Service")."""
