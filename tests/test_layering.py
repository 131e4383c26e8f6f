"""The house: every import in wsss/ runs downward through the pipeline's layers, and nothing imports in a circle.

The table below is the picture of the layering: a module may import its own layer's package and any
layer listed *above* it in ``LAYERS`` (lower in the pipeline). Module-level and function-local imports
count alike, so a local import cannot hide an upward arrow.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "wsss"

# lowest first; a prefix names a package or a module (the longest matching prefix decides)
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("wsss.utils", "wsss.registry", "wsss.ranges", "wsss.distributed", "wsss.data.base", "wsss.paths")),
    ("data", ("wsss.data",)),  # the readers, over data.base (Sample, Box, SegDataset)
    ("record", ("wsss.record", "wsss.viz")),  # what travels through stage one; drawing it
    ("models", ("wsss.models",)),  # backbones, target layers, weight tables, tiny test models
    ("classifier", ("wsss.classifier",)),
    ("sam", ("wsss.sam",)),  # a model package: the SAM / SAM 2 engine
    ("evaluation", ("wsss.evaluation",)),  # scores label maps against data; used by train and the sweeps
    ("labels", ("wsss.labels",)),
    ("cam", ("wsss.cam",)),
    ("boxes", ("wsss.boxes",)),
    ("masks", ("wsss.masks",)),
    ("pseudo", ("wsss.pseudo",)),
    ("exporters", ("wsss.exporters",)),
    ("train", ("wsss.train",)),
    ("experiments", ("wsss.experiments",)),
    ("config", ("wsss.schema", "wsss.config")),  # the schema is the union of every stage's parameters
    ("runner", ("wsss.runner", "wsss.quickstart")),
    ("app", ("wsss.app",)),
    ("api", ("wsss.api", "wsss.commands", "wsss.cli", "wsss.__main__", "wsss")),
]
RANK = {prefix: i for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported wsss module, line) for every import in the file, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "wsss"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.split(".")[0] != "wsss":
                continue
            for a in node.names:  # `from wsss import ranges` imports the module wsss.ranges
                out.append((f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base, node.lineno))
    return out


def layer_of(module: str) -> int:
    best = max((p for p in RANK if module == p or module.startswith(p + ".")), key=len, default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return RANK[best]


def graph() -> dict[str, list[tuple[str, int]]]:
    return {module_name(p): imports_of(p) for p in sorted(PKG.rglob("*.py"))}


def test_every_import_runs_downward() -> None:
    upward = []
    for module, targets in graph().items():
        for target, line in targets:
            if layer_of(target) > layer_of(module):
                upward.append(f"{module}:{line} imports {target} "
                              f"({LAYERS[layer_of(module)][0]} -> {LAYERS[layer_of(target)][0]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles() -> None:
    """Between modules, a package's ``__init__`` included (it imports its submodules to register them)."""
    edges = {m: {t for t, _ in targets if t != m} for m, targets in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_an_upward_arrow_and_a_cycle() -> None:
    assert layer_of("wsss.masks.rcam") > layer_of("wsss.cam.rcam") > layer_of("wsss.classifier")
    assert layer_of("wsss.data.base") < layer_of("wsss.data.voc")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


REGISTRIES = [("wsss.data", "DATASETS"), ("wsss.classifier", "CLASSIFIERS"), ("wsss.labels", "LABEL_SOURCES"),
              ("wsss.cam", "CAM_METHODS"), ("wsss.boxes", "BOX_SOURCES"), ("wsss.masks", "REFINERS"),
              ("wsss.train", "TRAIN_MODELS"), ("wsss.exporters", "EXPORTERS")]


@pytest.mark.parametrize("package,registry", REGISTRIES)
def test_a_registry_is_complete_after_importing_its_package_alone(package: str, registry: str) -> None:
    """What a registry holds must not depend on what else was imported first."""
    if not is_module(package):
        pytest.skip(f"{package} does not exist yet")
    code = ("import importlib, json, sys; "
            f"alone = importlib.import_module('{package}').{registry}.names(); "
            "import wsss.schema, wsss.app, wsss.experiments.sweep; "
            f"print(json.dumps([alone, importlib.import_module('{package}').{registry}.names()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    import json

    alone, everything = json.loads(out.stdout.strip().splitlines()[-1])
    assert alone and alone == everything


def test_every_stage_implementation_subclasses_its_interface() -> None:
    """One constructor convention, ``(params, resources)``, and the optional capabilities come from the interface."""
    import inspect

    from wsss.boxes import BOX_SOURCES
    from wsss.boxes.base import BoxSource
    from wsss.cam import CAM_METHODS
    from wsss.cam.base import CamMethod
    from wsss.labels import LABEL_SOURCES
    from wsss.labels.base import LabelSource
    from wsss.masks import REFINERS
    from wsss.masks.base import Refiner

    for registry, interface in [(LABEL_SOURCES, LabelSource), (CAM_METHODS, CamMethod), (BOX_SOURCES, BoxSource),
                                (REFINERS, Refiner)]:
        for name in registry.names():
            builder = registry.get(name).builder
            assert isinstance(builder, type) and interface in builder.__mro__, f"{registry.stage}.{name}"
            assert list(inspect.signature(builder).parameters)[:2] == ["params", "resources"], f"{registry.stage}.{name}"
            if interface is Refiner:
                assert callable(builder.stage_images)


def test_no_private_names_cross_modules() -> None:
    """``from wsss.x import _name`` couples a module to another's internals: make the name public instead."""
    private = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wsss"):
                private += [f"{module_name(path)}:{node.lineno} imports {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not private, "\n".join(private)
