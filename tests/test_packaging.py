"""The production image cannot miss a folder: the wheel, from a clean clone, imports whole.

Nothing on a developer machine or in CI runs ``docker build``, so this module
checks the image's recipe by running it without Docker:

1. clone the repository's HEAD (uncommitted work is not in it, as it is not
   in CI's checkout) and delete what ``.dockerignore`` keeps out of the build
   context, with Docker's anchored pattern rules;
2. check that the ``Dockerfile`` copies that whole context into its build
   stage, builds the wheel there, and that its runtime stage takes only the
   wheel (and the config file) from it; so this test exercises the image's
   one install rule, not a copy of it;
3. run the build stage's own ``pip wheel`` command in the filtered clone;
4. install the wheel (``--no-deps``) into a fresh venv that sees the already
   installed dependencies but not the editable ``meterline`` of this checkout;
5. walk the installed package in the venv's interpreter and import every
   module: each stage is there, and nothing is imported from outside the venv.

Step 4's venv has no system site-packages; a ``.pth`` file in it names the
system site-packages directory instead. A path line in a ``.pth`` only appends
that directory to ``sys.path``, so the ``.pth`` files inside it are not run,
and the editable install's import hook (``__editable__.meterline-*.pth``)
never loads: without the wheel, ``import meterline`` fails in that venv. This
saves installing every dependency from PyPI (minutes, and a gigabyte of chdb
and presidio) for each run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT

pytestmark = pytest.mark.packaging

#: Every folder of ``meterline`` that the image must hold: the six stages (symlinks
#: into the repository root) and the packages that live in ``meterline/`` itself.
EXPECTED_PACKAGES = frozenset({"schemas", "ingest", "processors", "sinks", "reports", "policy",
                               "cli", "services", "embedded", "simulator"})

#: Files outside the package folders that the wheel build or the image reads.
BUILD_INPUTS = ("pyproject.toml", "README.md", "meterline.yaml")

#: Run in the venv: import every module of the installed package, report as JSON.
WALK = """
import importlib, json, pkgutil, sys, traceback
import meterline
found, failed = [], {}
def record(name):
    failed[name] = traceback.format_exc()
for info in pkgutil.walk_packages(meterline.__path__, "meterline.", onerror=record):
    found.append(info.name)
    try:
        importlib.import_module(info.name)
    except BaseException:
        failed[info.name] = traceback.format_exc()
def where(module):
    return getattr(module, "__file__", None) or str(list(getattr(module, "__path__", [])))
files = {name: where(module) for name, module in sys.modules.items()
         if name == "meterline" or name.startswith("meterline.")}
print(json.dumps({"found": found, "failed": failed, "files": files}))
"""


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception ``!``, regex) per pattern, in file order.

    Docker's rules (moby/patternmatcher): patterns are relative to the context
    root, ``*`` and ``?`` stop at ``/``, ``**`` spans directories, a pattern
    that matches a directory excludes all below it, and the last matching
    pattern decides. Character classes are not used in our file and refused
    here, so this matcher never silently disagrees with Docker's.
    """
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        assert "[" not in pattern and "\\" not in pattern, f"unsupported .dockerignore syntax: {raw}"
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            if part in ("**", "**/"):
                regex += "(?:.*/)?" if part == "**/" else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        rules.append((exception, re.compile(regex + "(?:/.*)?")))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    verdict = False
    for exception, regex in rules:
        if regex.fullmatch(path):
            verdict = not exception
    return verdict


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per ``FROM`` (continuations joined)."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    stages: list[list[Instruction]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, "an instruction before the first FROM"
        stages[-1].append(Instruction(keyword.upper(), " ".join(args.split())))
    return stages


def run(argv: list[str], cwd: Path, timeout_s: float = 120) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Context:
    """A clean clone of HEAD with what ``.dockerignore`` excludes deleted."""

    root: Path
    tracked: tuple[str, ...]
    kept: frozenset[str]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    root = tmp_path_factory.mktemp("packaging") / "context"
    run(["git", "clone", "--quiet", str(REPO_ROOT), str(root)], cwd=REPO_ROOT)
    tracked = tuple(run(["git", "ls-files"], cwd=root).splitlines())
    rules = dockerignore_rules((root / ".dockerignore").read_text())
    kept = set()
    for path in tracked:
        if ignored(path, rules):
            (root / path).unlink()  # a symlink is removed itself, never its target
        else:
            kept.add(path)
    if ignored(".git", rules):
        shutil.rmtree(root / ".git")
    yield Context(root, tracked, frozenset(kept))


def package_files(root: Path) -> Iterator[str]:
    """Every file of the ``meterline`` folder, symlinked stages followed, as wheel paths."""
    for folder, _, names in os.walk(root / "meterline", followlinks=True):
        for name in names:
            yield (Path(folder) / name).relative_to(root).as_posix()


def dependency_dirs() -> list[str]:
    """Where this interpreter finds the installed dependencies (and the editable hook)."""
    dirs = site.getsitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return dirs


def test_dockerignore_matches_as_docker_does() -> None:
    rules = dockerignore_rules("tests\n**/__pycache__\n*.egg-info\n!tests/keep.py\n/docs/*.md\n")
    assert ignored("tests/test_x.py", rules) and not ignored("tests/keep.py", rules)
    assert ignored("ingest/__pycache__/relay.cpython-311.pyc", rules)
    assert ignored("meterline.egg-info/PKG-INFO", rules)
    assert not ignored("sub/meterline.egg-info/PKG-INFO", rules)  # anchored at the root
    assert not ignored("ingest/tests/x.py", rules)
    assert ignored("docs/a.md", rules) and not ignored("docs/sub/a.md", rules)


def test_context_keeps_every_file_the_package_needs(context: Context) -> None:
    meterline = context.root / "meterline"
    stages = {link.name: os.readlink(link) for link in meterline.iterdir() if link.is_symlink()}
    assert {name for name in EXPECTED_PACKAGES if (meterline / name).is_dir()} == EXPECTED_PACKAGES
    folders = {"meterline", *(os.path.normpath(f"meterline/{target}") for target in stages.values())}
    needed = [path for path in context.tracked
              if path.split("/")[0] in folders or path in BUILD_INPUTS]
    assert {"policy/__init__.py", "meterline/policy", "pyproject.toml"} <= set(needed)
    missing = [path for path in needed if path not in context.kept]
    assert not missing, f".dockerignore hides files the package needs: {missing}"
    assert not [path for path in context.kept if path.startswith(("tests/", ".git/"))]


def build_stage_wheel_command(context: Context) -> list[str]:
    """The build stage's ``pip wheel`` argv, after checking the image takes only its output."""
    stages = dockerfile_stages((context.root / "Dockerfile").read_text())
    assert len(stages) == 2, "two stages: build the wheel, then install only the wheel"
    build, runtime = stages
    assert build[0].args.endswith(" AS build")
    copies = [i.args for i in build if i.keyword in ("COPY", "ADD")]
    assert copies == [". ."], "the build stage copies the whole context, in one rule"
    wheels = [i.args for i in build if i.keyword == "RUN" and i.args.startswith("pip wheel ")]
    assert len(wheels) == 1
    argv = shlex.split(wheels[0])
    assert "--no-deps" in argv and argv[-1] == "."
    workdir = [i.args for i in build if i.keyword == "WORKDIR"][-1]
    wheel_dir = argv[argv.index("--wheel-dir") + 1]
    taken = [i.args for i in runtime if i.keyword in ("COPY", "ADD")]
    assert taken == [f"--from=build {os.path.join(workdir, wheel_dir)}/ /tmp/dist/",
                     "meterline.yaml /etc/meterline/meterline.yaml"], taken
    installs = [i.args for i in runtime if i.keyword == "RUN" and "pip install" in i.args]
    assert installs and installs[0].startswith("pip install --no-cache-dir /tmp/dist/*.whl")
    return argv


def test_wheel_from_clean_clone_imports_every_module_of_every_stage(
        context: Context, tmp_path: Path) -> None:
    argv = build_stage_wheel_command(context)
    assert argv[0] == "pip"
    run([sys.executable, "-m", *argv], cwd=context.root)
    wheel_dir = context.root / argv[argv.index("--wheel-dir") + 1]
    (wheel,) = wheel_dir.glob("meterline-*.whl")

    # every module and data file of the source tree is in the wheel (a symlinked
    # stage is followed, so ``meterline/policy`` holds ``policy``'s files)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    packaged = set(package_files(context.root))
    assert not packaged - in_wheel, f"missing from the wheel: {sorted(packaged - in_wheel)}"

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
               cwd=tmp_path).strip()
    (Path(purelib) / "_installed_dependencies.pth").write_text("".join(
        f"{directory}\n" for directory in dependency_dirs()))
    without = subprocess.run([str(python), "-I", "-c", "import meterline"], cwd=tmp_path,
                             capture_output=True, text=True, check=False)
    assert without.returncode != 0, "the editable install leaks into the venv"
    # --ignore-installed: the checkout's editable meterline is visible to pip through
    # the .pth; without it pip would try to uninstall that one
    run([str(python), "-I", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--ignore-installed", str(wheel)], cwd=tmp_path)

    report = json.loads(run([str(python), "-I", "-c", WALK], cwd=tmp_path))
    assert not report["failed"], "\n".join(f"{name}:\n{trace}" for name, trace in
                                           report["failed"].items())
    stages = {name.split(".")[1] for name in report["found"]}
    assert stages >= EXPECTED_PACKAGES, f"stages missing: {EXPECTED_PACKAGES - stages}"
    sources = {path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
               for path in package_files(context.root) if path.endswith(".py")}
    assert sources - {"meterline"} <= set(report["found"])
    outside = {name: file for name, file in report["files"].items()
               if not file.startswith(str(venv))}
    assert not outside, f"imported from outside the venv: {outside}"
    assert "usage: meterline" in run([str(venv / "bin" / "meterline"), "--help"], cwd=tmp_path)
