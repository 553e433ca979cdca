"""The layering written in tgan/__init__.py's docstring holds: every import in every module of the
package (those inside functions too) goes to the importer's own layer or a lower one, and private
names (``_x``) are imported only inside their own package."""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "tgan"
PACKAGE_LAYER = 6  # ``import tgan``: the lazily loaded API


def declared_layers() -> dict[str, int]:
    """Module prefix -> layer, parsed from the "Layers" block of tgan/__init__.py's docstring."""
    doc = ast.get_docstring(ast.parse((ROOT / "__init__.py").read_text()))
    block = doc[doc.index("Layers, lowest first"):]
    layers, current = {}, None
    for line in block.splitlines()[1:]:
        m = re.match(r"\s+(\d+)\. (.*)$", line)
        if m:
            current = int(m.group(1))
            names = m.group(2)
        elif current is not None and line.startswith("     "):
            names = line
        else:
            continue
        for name in re.findall(r"tgan[\w.]*", names):
            layers[name] = current
    return layers


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of the longest declared prefix of ``module`` (None: not declared)."""
    if module == "tgan":
        return PACKAGE_LAYER
    best = max((p for p in layers if module == p or module.startswith(p + ".")), key=len, default=None)
    return None if best is None else layers[best]


def imports(path: pathlib.Path):
    """(line, imported module, imported names) of every tgan import in the file, at any depth."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "tgan":
                    yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            if mod.split(".")[0] != "tgan":
                continue
            names = [a.name for a in node.names]
            subs = [f"{mod}.{n}" for n in names if (ROOT.parent / f"{mod}.{n}".replace(".", "/")).exists()
                    or (ROOT.parent / (f"{mod}.{n}".replace(".", "/") + ".py")).exists()
                    or f"{mod}.{n}" == "tgan._C"]  # the compiled extension
            rest = [n for n in names if f"{mod}.{n}" not in subs]
            if rest:
                yield node.lineno, mod, rest
            for s in subs:  # ``from tgan.ops.rel_attention import naive`` imports a module
                yield node.lineno, s, []


MODULES = sorted(p for p in ROOT.rglob("*.py") if "models" not in p.relative_to(ROOT).parts)


def test_every_module_has_a_declared_layer():
    layers = declared_layers()
    assert len(set(layers.values())) >= 8, layers
    missing = [module_name(p) for p in MODULES if layer_of(module_name(p), layers) is None]
    assert not missing, f"modules without a layer in tgan/__init__.py's docstring: {missing}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_go_down_and_private_names_stay_home(path):
    layers = declared_layers()
    me = module_name(path)
    mine = layer_of(me, layers)
    home = me if path.name == "__init__.py" else me.rpartition(".")[0]
    bad = []
    for line, mod, names in imports(path):
        theirs = layer_of(mod, layers)
        if theirs is not None and theirs > mine:
            bad.append(f"line {line}: {me} (layer {mine}) imports {mod} (layer {theirs})")
        pieces = mod.split(".")
        private = [p for p in pieces[1:] if p.startswith("_") and not p.startswith("__") and p != "_C"]
        private_names = [n for n in names if n.startswith("_") and not n.startswith("__") and n != "_C"]
        if private or private_names:
            owner = mod.rpartition(".")[0] if private_names and not private else \
                ".".join(pieces[: pieces.index(private[0])])
            if not (home == owner or home.startswith(owner + ".")):
                what = f"{mod} {private_names}" if private_names else mod
                bad.append(f"line {line}: {me} imports private {what}")
    assert not bad, "\n".join(bad)
