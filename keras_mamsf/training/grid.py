"""Ablation grids: named sets of `mamsf train` config changes ("cells"), checked before any training.

A grid file (TOML or YAML) holds `cells`, one table per cell of config keys, and an optional
`base` table applied to every cell first:

    [base]
    epochs = 2

    [cells.none]
    anchor = "none"

    [cells.branch]
    anchor = "branch"

    [cells."branch_decay_0.99"]
    anchor = "branch"
    anchor_decay = 0.99
    seeds = 2          # not a config key: this cell runs only the first 2 of --seeds

A cell's `seeds` (a positive integer) runs only the first that many of the seeds `--seeds` gives every
other cell: the cells a comparison hinges on get more seeds than the rest without a second grid.

The named grids (`GRIDS`) are the reviewer's: the anchor modes, the anchored part (the final
block, the stage before it, the whole backbone: said in the backbone's own stage names) and the
decay sweep, each with the `none` cell every comparison is made against; and "averaging", the
anchor against the plain baseline of averaging the whole model's weights.
"""

import dataclasses
import os
import re

from keras_mamsf.anchor.modes import BRANCH, MODES, NONE
from keras_mamsf.training.config import ConfigError, _known

BASELINE = NONE.name
WEIGHT_EMA = 0.998  # the averaging grid's momentum when the base config has none: about 500 steps
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One grid cell: its name, the config keys it changes, and how many of the seeds it runs (0: all)."""

    name: str
    changes: dict
    seeds: int = 0

    def config(self, base):
        return base.replace(**self.changes)

    def seeds_of(self, seeds):
        """The seeds this cell runs: the first `self.seeds` of `seeds`, or all of them."""
        return list(seeds)[: self.seeds] if self.seeds else list(seeds)


def _stages(backbone):
    """`(the stage before the final block, all stages)` of a backbone ("block6" and stem .. top for B0)."""
    from keras_mamsf.backbones import build_backbone

    built = build_backbone(backbone, (32, 32, 3))
    return built.stage_before_final_block(), built.stage_names


def named_grid(name, base):
    """The cells of a named grid for the base config `base` (a `TrainConfig`)."""
    if name not in GRIDS:
        raise ConfigError(f"unknown grid {name!r}: use one of {', '.join(GRIDS)} or a .toml/.yaml grid file")
    branch = BRANCH.name
    cells = [Cell(BASELINE, {"anchor": BASELINE})]
    if name in ("reviewer", "modes"):
        cells += [Cell(mode, {"anchor": mode}) for mode in MODES if mode != BASELINE]
    else:
        cells.append(Cell(branch, {"anchor": branch}))
    if name in ("reviewer", "anchored_part"):
        earlier, whole = _stages(base.backbone)
        cells += [Cell(f"{branch}_earlier_block", {"anchor": branch, "anchor_layers": (earlier,)}),
                  Cell(f"{branch}_whole_backbone", {"anchor": branch, "anchor_layers": whole})]
    if name in ("reviewer", "decay"):
        cells += [Cell(f"{branch}_decay_{decay}", {"anchor": branch, "anchor_decay": decay})
                  for decay in (0.99, 0.999, 0.9999) if decay != base.anchor_decay]
    if name == "averaging":  # the anchor (the final block's average) against an average of the whole model
        cells = [Cell(BASELINE, {"anchor": BASELINE, "weight_ema": 0.0}),
                 Cell(branch, {"anchor": branch, "weight_ema": 0.0}),
                 Cell("weight_ema", {"anchor": BASELINE, "weight_ema": base.weight_ema or WEIGHT_EMA})]
    return cells


GRIDS = {"reviewer": "modes + anchored part + decay sweep (8 cells)", "modes": "none, branch, shadow, inplace",
         "anchored_part": "none; branch on the final block, the stage before it, the whole backbone",
         "decay": "none; branch at decay 0.99, 0.999, 0.9999",
         "averaging": "none, branch, and no anchor with the whole model's weights averaged (weight_ema)"}


def load_grid(path, base):
    """`(base, cells)` from a TOML/YAML grid file: its `base` table applied to `base`, and its cells.
    Every key and value is checked now (a `ConfigError` naming the file and the cell)."""
    path = os.fspath(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a grid file holds a table with 'cells' (and optionally 'base')")
    unknown = set(data) - {"base", "cells"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}; a grid file has 'cells' and "
                          "optionally 'base'")
    base = _apply(base, data.get("base") or {}, f"{path} [base]")
    cells_table = data.get("cells")
    if not isinstance(cells_table, dict) or not cells_table:
        raise ConfigError(f"{path}: no cells; add tables like [cells.none] anchor = \"none\"")
    cells = []
    for name, changes in cells_table.items():
        where = f"{path} [cells.{name}]"
        if not _NAME.match(str(name)):
            raise ConfigError(f"{where}: a cell name is a folder name: letters, digits, _ . + - only")
        if not isinstance(changes, dict):
            raise ConfigError(f"{where}: a cell is a table of config keys, got {changes!r}")
        changes = dict(changes)
        count = changes.pop("seeds", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"{where}: seeds = {count!r}: a cell's seeds is how many of --seeds it runs, a "
                              "positive integer")
        config = _apply(base, changes, where)
        cells.append(Cell(str(name), {key: getattr(config, key) for key in changes}, seeds=count))
    return base, cells


def _read(path):
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such grid file")
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            with open(path, encoding="utf-8") as handle:
                return yaml.safe_load(handle)
        import tomllib

        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except Exception as error:  # tomllib / yaml parse errors: one line with the parser's reason
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path}: not a valid grid file ({first})") from None


def _apply(base, changes, where):
    if not isinstance(changes, dict):
        raise ConfigError(f"{where}: expected a table of config keys")
    for key in changes:
        _known(str(key), where)  # the config's own check: an unknown key names the closest valid ones
    try:
        return base.replace(**changes)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def check_cells(cells, base):
    """Every cell's config is valid, the names are unique, and there is a `none` cell to compare with."""
    names = [cell.name for cell in cells]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"grid: cell {duplicates[0]!r} appears twice")
    for cell in cells:
        cell.config(base)
    if not any(cell.config(base).anchor == BASELINE for cell in cells):
        raise ConfigError("grid: no cell with anchor = \"none\"; add one, every cell is compared with it")


def plan(cells, seeds):
    """The cell-seeds in a fixed order (cell-major): `[(cell, seed, "cell/seedK"), ...]`; a cell with its own
    `seeds` count runs only that many of `seeds`."""
    return [(cell, seed, f"{cell.name}/seed{seed}") for cell in cells for seed in cell.seeds_of(seeds)]


def parse_shard(text):
    """`"I/N"` (1-based) -> `(I, N)`; a one-line error otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ConfigError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/4")
    return int(match.group(1)), int(match.group(2))


def shard_of(runs, shard):
    """The runs of shard `(I, N)`: every N-th one, starting at the I-th."""
    index, count = shard
    return runs[index - 1::count]
