"""The package's version. Its one source is Cargo.toml's ``version``: maturin writes it into the
distribution's metadata (pyproject.toml declares the version dynamic), in PEP 440's spelling."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("opentelemetry-instrumentation-vllm")
except PackageNotFoundError:  # the sources imported without being installed: the core's, Cargo's spelling
    from opentelemetry.instrumentation.vllm._core import __version__  # noqa: F401 - the module's one name
