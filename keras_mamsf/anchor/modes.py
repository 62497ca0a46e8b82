"""The anchor modes: the one table of their names and of what each does.

    mode = anchor_mode("branch")            # also "none", None, "Shadow"
    mode.both_paths_in_training             # True: online and anchor block side by side

Every module names a mode through this table (`MODES`, or the entries `BRANCH`, `SHADOW`,
`INPLACE`, `NONE`); `MomentumAnchor` reads what to do from the entry, never from its name.
Adding a mode is one entry here and, if it needs a behaviour no column describes, one column
and its use in `MomentumAnchor`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class AnchorMode:
    """One anchor mode.

    Attributes:
        name: how configs, grids, reports and the CLI spell it ("none" for no anchor).
        value: what `build_model(anchor=...)` and `MomentumAnchor(mode=...)` keep in their config
            (`None` for no anchor: the 0.1/0.2 files store it so).
        has_anchor: whether an EMA copy exists at all (anchor variables, the update).
        both_paths_in_training: training runs the online block and the anchor block side by side
            and hands on both maps (concatenated).
        inference_path: what inference (`evaluate`, `predict`, export) runs: "both" (concatenated),
            "anchor" (the block with the EMA weights) or "online".
        anchor_to_online: after each real update the online weights are set to the anchor.
        summary: one line for `--help` and reports.
    """

    name: str
    value: str | None
    has_anchor: bool
    both_paths_in_training: bool
    inference_path: str
    anchor_to_online: bool
    summary: str

    @property
    def concatenates(self):
        """Whether the layer's output is both maps concatenated (twice the block's channels)."""
        return self.both_paths_in_training

    def __str__(self):
        return self.name


BRANCH = AnchorMode("branch", "branch", True, True, "both", False,
                    "the paper's reference branch: online and EMA block side by side, fused")
SHADOW = AnchorMode("shadow", "shadow", True, False, "anchor", False,
                    "EMA weights kept aside, used for evaluation and export (Keras' use_ema on one block)")
INPLACE = AnchorMode("inplace", "inplace", True, False, "online", True,
                     "the block's own weights follow the EMA (its updates scaled by 1 - decay)")
NONE = AnchorMode("none", None, False, False, "online", False, "no anchor: the ablation baseline with the same head")

MODES = {mode.name: mode for mode in (BRANCH, SHADOW, INPLACE, NONE)}
DEFAULT = BRANCH
# `build_model(anchor=...)` values, as 0.1/0.2 exported them (`mamsf.ANCHOR_MODES`).
ANCHOR_MODES = tuple(mode.value for mode in MODES.values())


def anchor_mode(value):
    """The table entry for `value`: a mode name (any case), its config value, or an entry."""
    if isinstance(value, AnchorMode):
        return value
    key = NONE.name if value is None else str(value).lower()
    if key not in MODES:
        raise ValueError(
            f"anchor mode {value!r} is not one of {', '.join(MODES)}: "
            + "; ".join(f"{mode.name}: {mode.summary}" for mode in MODES.values())
        )
    return MODES[key]
