"""Figures of a Neural Turing Machine at work: attention over time, training curves,
generalisation (matplotlib, NumPy; no TensorFlow, no onnxruntime).

Every ``*_figure`` function takes arrays or plain dicts and returns a ``matplotlib.figure.Figure``
drawn with the Agg canvas, so nothing touches pyplot's global state or an interactive backend.
matplotlib is imported inside the functions: ``import ntm.cli.figures`` works without it, and the
NumPy helpers (``memory_window``, ``running_median``) need nothing else.

Names:
    T        time steps of one sequence
    N        memory locations (memory_size)
    R, W     read and write heads
    window   the memory locations shown, in display order (may wrap around N - 1 -> 0)
"""

from __future__ import annotations

import os
import struct
from typing import Any, NamedTuple, Sequence

import numpy as np

# A head that has not focused yet spreads ~1/N over every location (1/128 ~ 0.008); a location
# counts as used once some head puts more than this on it.
USED_WEIGHT = 0.05
WINDOW_PAD = 2  # locations shown either side of the used ones
BIT_CMAP = "Greys"  # 0 white, 1 black, like the paper's figures


# -- NumPy helpers ---------------------------------------------------------------------------
def memory_window(weights: np.ndarray, threshold: float = USED_WEIGHT,
                  pad: int = WINDOW_PAD) -> np.ndarray:
    """The memory locations worth showing, as one circular run of indices.

    weights: [..., N] weightings of any heads and steps. A location is used when its largest
    weight exceeds both ``threshold`` and 2/N (twice the uniform weighting, which matters for
    small memories). The window is the shortest circular stretch holding every used location
    (so a head that wraps from location 1 to 127 gives 125..127, 0..3, not the whole memory),
    widened by ``pad`` on each side. Returns int64 [window] in display order;
    all N locations when nothing is used or the window would cover the memory anyway.
    """
    n = weights.shape[-1]
    used = np.nonzero(weights.reshape(-1, n).max(axis=0) > max(threshold, 2.0 / n))[0]
    if used.size == 0:
        return np.arange(n)
    gaps = np.diff(np.append(used, used[0] + n))  # gaps[i]: from used[i] to the next used one
    largest = int(np.argmax(gaps))
    start = int(used[(largest + 1) % used.size])
    span = int(n - gaps[largest] + 1)  # locations from start to used[largest], circularly
    if span + 2 * pad >= n:
        return np.arange(n)
    return (start - pad + np.arange(span + 2 * pad)) % n


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of each point's centred ``window`` neighbours ([P] -> [P]; the ends use the
    neighbours there are). A median keeps the trend of a spiky loss on a log axis, where one
    spike would lift a whole mean window. window 1 = unchanged."""
    values = np.asarray(values, np.float64)
    if window <= 1 or values.size == 0:
        return values
    left = (window - 1) // 2
    padded = np.pad(values, (left, window - 1 - left), constant_values=np.nan)
    return np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


# -- figure plumbing -------------------------------------------------------------------------
def new_figure(width: float, height: float, dpi: float) -> Any:
    """An Agg-backed Figure of width x height inches (saved at ``dpi``: width*dpi pixels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: str | os.PathLike, dpi: float) -> tuple[int, int]:
    """Write ``figure`` as PNG atomically (``ntm.files.atomic_file``: never half-written);
    creates parent directories. Returns the image's (width, height) in pixels as written;
    OSError on failure."""
    from ntm.files import atomic_file

    with atomic_file(path, "w+b") as f:
        figure.savefig(f, format="png", dpi=dpi)
        f.seek(16)  # PNG signature (8), IHDR length and type (8), then width, height
        size = struct.unpack(">II", f.read(8))
    return size


def _log_scale(axes: Any, values: np.ndarray) -> None:
    """Log y axis; symmetric-log when some values are 0 (a perfect bits/seq), with the linear
    stretch below the smallest positive value's decade so zeros sit at the bottom (from 0 to
    at least 1, so a table of zeros still shows a readable scale)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    positive = values[values > 0]
    if positive.size and positive.size == values.size:
        axes.set_yscale("log")
        return
    smallest = positive.min() if positive.size else 0.01
    linthresh = float(np.clip(10.0 ** np.floor(np.log10(smallest)), 1e-3, 1.0))
    axes.set_yscale("symlog", linthresh=linthresh)
    axes.set_ylim(0, max(1.0, 2 * float(positive.max())) if positive.size else 1.0)


# -- attention (paper Figure 6) --------------------------------------------------------------
def attention_figure(
    inputs: np.ndarray,
    probabilities: np.ndarray,
    read: np.ndarray,
    write: np.ndarray,
    title: str = "",
    answer_start: int | None = None,
    width: float = 8.0,
    height: float = 9.0,
    dpi: float = 100,
) -> Any:
    """Inputs, outputs, write and read weightings of one sequence over time, stacked.

    inputs:        [T, input_size]  what the model read (values above 1 saturate)
    probabilities: [T, output_size] the model's output probabilities
    read:          [T, R, N]        read weightings
    write:         [T, W, N]        write weightings
    answer_start:  first scored output step, marked by a dashed line on every panel
    Memory panels show ``memory_window`` of all heads (shared, so reads and writes line up),
    location increasing upwards; a dotted line marks where the window wraps from N - 1 to 0.
    """
    window = memory_window(np.concatenate([read, write], axis=1))
    scored = "" if answer_start is None else "; scored right of the dashed line"
    panels = ([("Inputs", "input\nchannel", inputs.T, None)]
              + [(f"Outputs (probabilities{scored})", "output\nchannel", probabilities.T, None)]
              + [(_head_title("Write", h, write.shape[1]), "location", write[:, h, window].T,
                  window) for h in range(write.shape[1])]
              + [(_head_title("Read", h, read.shape[1]), "location", read[:, h, window].T,
                  window) for h in range(read.shape[1])])
    figure = new_figure(width, height, dpi)
    ratios = [1.0 if locations is None else 1.6 for *_, locations in panels]
    axes = figure.subplots(len(panels), 1, sharex=True, height_ratios=ratios)
    image = None
    for ax, (name, ylabel, matrix, locations) in zip(axes, panels):
        image = _heatmap(ax, matrix, locations)
        ax.set_title(name, fontsize="medium", loc="left")
        ax.set_ylabel(ylabel)
        if answer_start is not None:
            ax.axvline(answer_start - 0.5, color="tab:red", linestyle="--", linewidth=1)
    axes[-1].set_xlabel("time step")
    figure.colorbar(image, ax=list(axes), shrink=0.5, label="value / weight")
    if title:
        figure.suptitle(title)
    return figure


def _head_title(kind: str, head: int, heads: int) -> str:
    return f"{kind} weightings" + (f" (head {head})" if heads > 1 else "")


def _heatmap(ax: Any, matrix: np.ndarray, locations: np.ndarray | None) -> Any:
    """Draw [rows, T] with time on x; ``locations`` [rows] labels memory rows (bits when None:
    channel 0 at the top)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    rows, steps = matrix.shape
    image = ax.imshow(matrix, aspect="auto", cmap=BIT_CMAP, vmin=0.0, vmax=1.0,
                      interpolation="nearest", origin="upper" if locations is None else "lower",
                      extent=(-0.5, steps - 0.5) + ((rows - 0.5, -0.5) if locations is None
                                                    else (-0.5, rows - 0.5)))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if locations is not None:
        ax.yaxis.set_major_formatter(FuncFormatter(
            lambda y, _: str(locations[round(y)]) if 0 <= round(y) < rows else ""))
        for row in np.nonzero(np.diff(locations) != 1)[0]:  # the window wraps N - 1 -> 0 here
            ax.axhline(row + 0.5, color="grey", linestyle=":", linewidth=0.8)
    return image


# -- training curves -------------------------------------------------------------------------
def curves_figure(
    train: dict[str, np.ndarray],
    evaluation: dict[str, np.ndarray],
    smooth: int = 20,
    title: str = "",
    log_y: bool = True,
    width: float = 8.0,
    height: float = 6.0,
    dpi: float = 100,
) -> Any:
    """Training loss and bits/seq against sequences seen, with held-out evaluations.

    train:      {"sequences": [P], "loss": [P], "bits_per_seq": [P], "stage": [P]} (may be empty)
    evaluation: {"sequences": [E], "bits_per_seq": [E]} held-out bits/seq (may be empty)
    smooth:     running-median window over logged training points (1 = raw only)
    log_y:      log y axes (symmetric-log when a value is 0); linear otherwise
    Curriculum stage changes show as dotted vertical lines.
    """
    figure = new_figure(width, height, dpi)
    loss_ax, bits_ax = figure.subplots(2, 1, sharex=True)
    x = train["sequences"]
    _train_curve(loss_ax, x, train["loss"], smooth, "training loss")
    _train_curve(bits_ax, x, train["bits_per_seq"], smooth, "training bits/seq")
    if len(evaluation["sequences"]):
        bits_ax.plot(evaluation["sequences"], evaluation["bits_per_seq"], "o-", color="tab:orange",
                     markersize=3, linewidth=1, label="held-out bits/seq")
    if log_y:
        _log_scale(loss_ax, train["loss"])
        _log_scale(bits_ax, np.concatenate([train["bits_per_seq"], evaluation["bits_per_seq"]]))
    for start in _stage_starts(x, train["stage"]):
        for ax in (loss_ax, bits_ax):
            ax.axvline(start, color="grey", linestyle=":", linewidth=1)
    loss_ax.set_ylabel("loss (nats / sequence)")
    bits_ax.set_ylabel("bits / sequence")
    bits_ax.set_xlabel("sequences seen")
    for ax in (loss_ax, bits_ax):
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    if title:
        figure.suptitle(title)
    return figure


def _train_curve(ax: Any, x: np.ndarray, y: np.ndarray, smooth: int, label: str) -> None:
    """Raw points faint, their running median solid (raw alone when smooth <= 1)."""
    if not len(x):
        return
    if smooth <= 1:
        ax.plot(x, y, color="tab:blue", linewidth=1, label=label)
        return
    ax.plot(x, y, color="tab:blue", linewidth=0.6, alpha=0.3)
    ax.plot(x, running_median(y, smooth), color="tab:blue", linewidth=1.5,
            label=f"{label} (median of {smooth})")


def _stage_starts(sequences: np.ndarray, stages: np.ndarray) -> list[float]:
    """Sequences seen at each logged curriculum stage change ([P], [P] -> list)."""
    if len(stages) < 2:
        return []
    changed = np.nonzero(np.diff(stages) != 0)[0] + 1
    return [float(sequences[i]) for i in changed]


# -- several runs on one axis ------------------------------------------------------------------
class Curve(NamedTuple):
    """One run's line on an overlay.

    x, y:       [P] the points (e.g. sequences seen and held-out bits/seq), joined in order
    background: ([Q], [Q]) drawn faint in the line's colour behind it (e.g. the running median
                of the training bits/seq), or None
    style:      a matplotlib format string for the line ("o-": markers and a line)
    """

    label: str
    x: np.ndarray
    y: np.ndarray
    background: tuple[np.ndarray, np.ndarray] | None = None
    style: str = "-"


def overlay_figure(
    curves: Sequence[Curve],
    xlabel: str = "sequences seen",
    ylabel: str = "bits / sequence",
    log_y: bool = True,
    ylim: tuple[float, float] | None = None,
    references: Sequence[tuple[str, float]] = (),
    shade: tuple[float, float, str] | None = None,
    title: str = "",
    width: float = 8.0,
    height: float = 5.0,
    dpi: float = 100,
) -> Any:
    """Several runs' curves on one axis, one colour each (e.g. the NTM and the LSTM baseline
    on one task, as the paper's learning-curve figures compare them).

    log_y:      log y axis (symmetric-log when a value is 0); linear otherwise, as the paper
                draws its learning curves
    ylim:       (bottom, top) of the y axis [default: the data's]; values beyond are cut off
    references: (label, value) horizontal dashed lines (e.g. the optimal estimator's cost)
    shade:      (start, end, label) an x range shaded (e.g. the trained lengths)
    The x axis counts in engineering units (10k, 1M).
    """
    from matplotlib.ticker import EngFormatter

    figure = new_figure(width, height, dpi)
    ax = figure.subplots()
    if shade is not None:
        ax.axvspan(shade[0], shade[1], color="tab:green", alpha=0.15, label=shade[2])
    values = []
    for curve in curves:
        line, = ax.plot(curve.x, curve.y, curve.style, label=curve.label, linewidth=1.5,
                        markersize=3, zorder=3)
        values.append(np.asarray(curve.y, np.float64))
        if curve.background is not None and len(curve.background[0]):
            ax.plot(*curve.background, color=line.get_color(), alpha=0.3, linewidth=0.8,
                    zorder=2)
            values.append(np.asarray(curve.background[1], np.float64))
    for (label, value), color in zip(references, ("black", "grey", "tab:brown")):
        ax.axhline(value, color=color, linestyle="--", linewidth=1, label=label)
        values.append(np.array([value]))
    if log_y:
        _log_scale(ax, np.concatenate(values) if values else np.array([1.0]))
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    if title:
        figure.suptitle(title)
    return figure


def outputs_figure(
    columns: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]],
    title: str = "",
    width: float = 12.0,
    height: float = 5.0,
    dpi: float = 100,
) -> Any:
    """Targets and outputs of sequences side by side, as the paper's Figures 4 and 5 show a
    model's copies at growing lengths: one column per sequence, as wide as its time steps, one
    row per panel (e.g. targets, one model's outputs, another's).

    columns: [(column title, [(row label, matrix [T, channels]), ...]), ...]; every column has
             the same row labels, in the same order. Values in [0, 1] (bits, probabilities),
             time left to right, channel 0 at the top.
    """
    from matplotlib.ticker import MaxNLocator

    rows = len(columns[0][1])
    figure = new_figure(width, height, dpi)
    axes = figure.subplots(rows, len(columns), squeeze=False,
                           width_ratios=[max(1, panels[0][1].shape[0]) for _, panels in columns])
    image = None
    for col, (name, panels) in enumerate(columns):
        for row, (label, matrix) in enumerate(panels):
            ax = axes[row][col]
            image = _heatmap(ax, np.asarray(matrix, np.float32).T, None)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))  # narrow columns
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize="medium")
            if col == 0:
                ax.set_ylabel(label)
            if row == rows - 1:
                ax.set_xlabel("time step")
    figure.colorbar(image, ax=list(axes.ravel()), shrink=0.6, label="value")
    if title:
        figure.suptitle(title)
    return figure


# -- generalisation --------------------------------------------------------------------------
def generalisation_figure(
    rows: Sequence[dict[str, Any]],
    task_name: str,
    length_name: str = "length",
    train_lengths: tuple[int, int] | None = None,
    train_repeats: tuple[int, int] | None = None,
    range_note: str = "",
    title: str = "",
    width: float = 7.0,
    height: float = 4.5,
    dpi: float = 100,
) -> Any:
    """Bits/seq against length (recall: items), the training range shaded.

    rows: [{"length", "repeats" (None but for repeat-copy), "mean_bits", "worst_bits",
            "sequences", ...}] as ``EvalRow.as_dict()`` writes them. Repeat-copy draws one line
    per repeat count and labels each point LENGTHxREPEATS.
    range_note: appended to the shaded range's legend entry (e.g. "task default").
    """
    figure = new_figure(width, height, dpi)
    ax = figure.subplots()
    if train_lengths is not None:
        label = f"trained {length_name} {train_lengths[0]}-{train_lengths[1]}"
        if train_repeats is not None:
            label += f", repeats {train_repeats[0]}-{train_repeats[1]}"
        ax.axvspan(train_lengths[0], train_lengths[1], color="tab:green", alpha=0.15,
                   label=label + (f" ({range_note})" if range_note else ""))
    for repeats, group in _by_repeats(rows).items():
        _generalisation_line(ax, group, repeats, train_repeats)
    ax.plot([], [], "x", color="grey", markersize=8,
            label=f"worst of {max(r.get('sequences', 0) for r in rows)}")
    _log_scale(ax, np.array([r[key] for r in rows for key in ("mean_bits", "worst_bits")]))
    ax.set_xlabel("sequence length" if length_name == "length" else f"{length_name} per sequence")
    ax.set_ylabel("bits / sequence")
    lengths = [r["length"] for r in rows]
    if max(lengths) >= 20 * min(lengths):  # e.g. 10 to 1000 (memory that grows): a log axis
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 10, 100, 1000 rather than 10^1...
        ax.set_xlim(left=min(min(lengths), train_lengths[0] if train_lengths else 1) * 0.8)
    else:
        ax.set_xlim(left=0)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    figure.suptitle(title or f"{task_name}: generalisation")
    return figure


def _by_repeats(rows: Sequence[dict[str, Any]]) -> dict[int | None, list[dict[str, Any]]]:
    """Rows grouped by repeat count (one group, None, for copy and recall), sorted by length."""
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: ((r.get("repeats") or 0), r["length"])):
        groups.setdefault(row.get("repeats"), []).append(row)
    return groups


def _generalisation_line(ax: Any, rows: list[dict[str, Any]], repeats: int | None,
                         train_repeats: tuple[int, int] | None) -> None:
    """Mean bits/seq as a line with markers, worst as faint crosses (one legend entry for all
    groups, added by the caller); repeat-copy points are labelled LENGTHxREPEATS."""
    x = [r["length"] for r in rows]
    label = "mean bits/seq"
    if repeats is not None:
        beyond = train_repeats is not None and not train_repeats[0] <= repeats <= train_repeats[1]
        label = f"repeats {repeats}" + (" (beyond training)" if beyond else "")
    line, = ax.plot(x, [r["mean_bits"] for r in rows], "o-", label=label, zorder=3,
                    clip_on=False)
    ax.plot(x, [r["worst_bits"] for r in rows], "x", color=line.get_color(), alpha=0.6,
            markersize=8)
    if repeats is not None:
        for r in rows:
            ax.annotate(f"{r['length']}x{repeats}", (r["length"], r["mean_bits"]),
                        textcoords="offset points", xytext=(4, 4), fontsize="x-small")
