"""Verifications: tailored models timed whole on a device, and the cost corrections they teach."""
