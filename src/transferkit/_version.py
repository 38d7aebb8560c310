"""The package version: one owner, read by ``pyproject.toml`` (setuptools dynamic version), the
package root and the export sidecar."""

__version__ = "0.1.0"
