"""Plugin-protocol tier: plugin.py as a subprocess, driven by a fake lightningd (harness.py)."""
