"""The installed distribution: one version from Cargo.toml, the typing files, the license file.

These run against the wheel tox built and installed (as every test here); tests/release checks the
release artifacts themselves (manylinux tag, sdist) and installs them into fresh environments.
"""

from __future__ import annotations

from importlib import resources
from importlib.metadata import distribution

import opentelemetry.instrumentation.vllm as package
from opentelemetry.instrumentation.vllm import _core
from packaging.version import Version

DISTRIBUTION = "opentelemetry-instrumentation-vllm"


def test_version_is_the_distributions():
    assert package.__version__ == distribution(DISTRIBUTION).version


def test_the_cores_version_is_the_same_one():
    # The core reports Cargo.toml's version (semver spelling); maturin wrote the same one into the metadata.
    assert Version(_core.__version__) == Version(package.__version__)


def test_typing_files_are_installed():
    files = resources.files(package)
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_core.pyi").is_file()


def test_license_metadata_and_file():
    dist = distribution(DISTRIBUTION)
    assert dist.metadata["License-Expression"] == "Apache-2.0"
    license_files = [f for f in dist.files or () if f.name == "LICENSE"]
    assert license_files, "the LICENSE file is in the wheel's .dist-info"
    assert "Apache License" in license_files[0].read_text()
