"""Configurations chosen by searches, with their tailored ONNX models."""
