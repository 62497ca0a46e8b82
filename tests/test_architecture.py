"""The floor plan (issue 22): imports only go down the floors, no cycles, and each concept's names
live in its one table. Pure source reading with `ast`: no Keras, no training."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_mamsf"

# Bottom to top. A module may import its own package, and packages on lower floors; two packages
# on one floor are side by side and never import each other (evaluation and export, above all).
FLOORS = [
    {"version", "labels", "utils"},
    {"layers", "losses", "metrics", "optimizers", "stats"},
    {"anchor", "backbones", "data"},
    {"models", "guard"},
    {"inference"},
    {"evaluation", "export"},
    {"training", "explain"},
    {"cli"},
    {""},  # keras_mamsf/__init__.py: the public facade, imported by nobody inside the package
]
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(module):
    """The package modules `module` imports anywhere in its body (function-level imports count)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "keras_mamsf":
                continue
            for alias in node.names:  # `from keras_mamsf.export import litert` imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "keras_mamsf")
    return found - {module}


def package_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_package_has_a_floor():
    assert {package_of(module) for module in MODULES} <= set(FLOOR)


def test_imports_only_go_down_the_floors():
    wrong = []
    for module, targets in GRAPH.items():
        here = package_of(module)
        for target in targets:
            there = package_of(target)
            if here != there and FLOOR[there] >= FLOOR[here]:
                wrong.append(f"{module} -> {target} (floor {FLOOR[here]} -> {FLOOR[there]})")
    assert not wrong, "imports up or sideways:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_between_modules():
    state, cycles = {}, []

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_floor_test_sees_a_wrong_import(tmp_path, monkeypatch):
    """The checks above can fail: an export module importing evaluation is caught."""
    graph = dict(GRAPH, **{"keras_mamsf.export.parity": GRAPH["keras_mamsf.export.parity"] | {
        "keras_mamsf.evaluation.evaluate"}})
    monkeypatch.setattr(__import__(__name__), "GRAPH", graph)
    with pytest.raises(AssertionError, match="export.parity -> keras_mamsf.evaluation.evaluate"):
        test_imports_only_go_down_the_floors()


# Each concept's names, the module whose table holds them, and the other places a literal may stay
# (user-facing text that is not a switch).
CONCEPTS = {
    "anchor modes": ({"branch", "shadow", "inplace"}, "keras_mamsf/anchor/modes.py", set()),
    "export formats": ({"savedmodel", "tflite", "onnx"}, "keras_mamsf/inference/formats.py",
                       # package names: for the manifest's versions, and the install that lacks them
                       {("keras_mamsf/export/manifest.py", "onnx"), ("keras_mamsf/utils/install.py", "onnx")}),
    "losses": ({"bce", "weighted_bce", "focal", "asl"}, "keras_mamsf/losses/__init__.py",
               {("keras_mamsf/cli/demo.py", "bce")}),  # the demo's recipe, a config value like a TOML file's
}


def literals(path):
    """String constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_a_concept_s_names_live_in_its_table(concept):
    names, table, allowed = CONCEPTS[concept]
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE.parent))
        if where == table:
            assert names <= set(literals(path)), f"{table} does not define {sorted(names)}"
            continue
        outside += [f"{where}: {value!r}" for value in literals(path) if value in names and (where,
                                                                                             value) not in allowed]
    assert not outside, f"{concept} spelled outside {table}:\n" + "\n".join(outside)
