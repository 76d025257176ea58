"""Checks the release artifacts in dist/ before anything installs or publishes them.

    python tests/release/check_dist.py dist [--tag v0.1.0]

Run by ``tox -e dist`` after the build, and by the release workflow on the artifacts of every
architecture. Needs auditwheel and twine (the dist environment's deps). It checks:

- one sdist and at least one wheel, all of one version (Cargo.toml's, and the tag's with ``--tag``);
- each wheel is ``cp310-abi3-manylinux_X_Y_<arch>`` with X_Y at most 2_28, which the glibc of
  Ubuntu 22.04/24.04 and RHEL 9 (2.34 and newer) takes, and ``auditwheel show`` finds it consistent
  with a manylinux tag no newer than the one it carries, needing no shared library outside the policy;
- ``twine check --strict``: the metadata is valid and the README renders;
- the license file is in both artifacts, and ``py.typed`` and ``_core.pyi`` are in the wheel.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import tomllib
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "opentelemetry/instrumentation/vllm"
# The newest manylinux policy allowed: RHEL 9's glibc is 2.34, Ubuntu 22.04's 2.35.
NEWEST_POLICY = (2, 28)
MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)$")

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    print(("ok: " if condition else "FAILED: ") + message, flush=True)
    if not condition:
        failures.append(message)


def manylinux_version(tag: str) -> tuple[int, int] | None:
    match = MANYLINUX.match(tag)
    return (int(match[1]), int(match[2])) if match else None


def check_wheel(path: Path, version: Version) -> None:
    _, wheel_version, _, tags = parse_wheel_filename(path.name)
    check(wheel_version == version, f"{path.name}: version {wheel_version}")
    (tag,) = tags
    claimed = manylinux_version(tag.platform)
    check(
        (tag.interpreter, tag.abi) == ("cp310", "abi3") and claimed is not None and claimed <= NEWEST_POLICY,
        f"{path.name}: tagged {tag} (abi3 for CPython 3.10+, manylinux_2_28 or older)",
    )

    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(path)], capture_output=True, text=True, check=False
    )
    report = " ".join(shown.stdout.split())
    print(shown.stdout + shown.stderr)
    consistent = re.search(r'is consistent with the following platform tag: "(manylinux_\d+_\d+_\w+)"', report)
    policy = manylinux_version(consistent[1]) if consistent else None
    check(
        shown.returncode == 0 and policy is not None and claimed is not None and policy <= claimed,
        f"{path.name}: auditwheel show finds it consistent with {consistent[1] if consistent else None}",
    )
    check("external shared libraries" not in report, f"{path.name}: no shared library outside the manylinux policy")

    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
    dist_info = f"{path.name.split('-')[0]}-{wheel_version}.dist-info"
    check(f"{dist_info}/licenses/LICENSE" in names, f"{path.name}: {dist_info}/licenses/LICENSE")
    for name in ("py.typed", "_core.pyi"):
        check(f"{PACKAGE}/{name}" in names, f"{path.name}: {PACKAGE}/{name}")
    check(any(n.startswith(f"{PACKAGE}/_core.") and n.endswith(".so") for n in names), f"{path.name}: the core")


def check_sdist(path: Path, version: Version) -> None:
    _, sdist_version = parse_sdist_filename(path.name)
    check(sdist_version == version, f"{path.name}: version {sdist_version}")
    top = path.name.removesuffix(".tar.gz")
    with tarfile.open(path) as sdist:
        names = set(sdist.getnames())
        pkg_info = Parser().parsestr(sdist.extractfile(f"{top}/PKG-INFO").read().decode())
    for name in ("LICENSE", "Cargo.toml", "Cargo.lock", "pyproject.toml", "src/lib.rs", f"python/{PACKAGE}/py.typed"):
        check(f"{top}/{name}" in names, f"{path.name}: {name}")
    check(pkg_info["License-Expression"] == "Apache-2.0", f"{path.name}: License-Expression Apache-2.0")
    check(not any("/target/" in n for n in names), f"{path.name}: no build output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist", type=Path)
    parser.add_argument("--tag", help="the release tag (vX.Y.Z): the artifacts must carry its version")
    args = parser.parse_args()

    cargo_version = Version(tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"])
    print(f"Cargo.toml's version: {cargo_version}")
    if args.tag is not None:
        check(Version(args.tag.removeprefix("v")) == cargo_version, f"the tag {args.tag} is Cargo.toml's version")

    sdists = sorted(args.dist.glob("*.tar.gz"))
    wheels = sorted(args.dist.glob("*.whl"))
    check(len(sdists) == 1 and len(wheels) >= 1, f"one sdist and wheels in {args.dist}: {sdists + wheels}")
    for sdist in sdists:
        check_sdist(sdist, cargo_version)
    for wheel in wheels:
        check_wheel(wheel, cargo_version)

    twine = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, sdists + wheels)])
    check(twine.returncode == 0, "twine check --strict")

    if failures:
        raise SystemExit(f"{len(failures)} check(s) failed: {failures}")
    print(f"all checks passed for {len(sdists) + len(wheels)} artifacts")


if __name__ == "__main__":
    main()
