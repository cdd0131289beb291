"""Example "Machine B" service and its callers (grown by the demo issue)."""
