"""Human renderings of answers: bit rows like the paper's figures (``ntm predict --pretty``)."""

from __future__ import annotations


import numpy as np

from ntm.tasks.base import render_rows


def bits_block(title: str, rows: list) -> str:
    """A [time, width] bit list drawn channel by channel ('#' = 1, '.' = 0)."""
    matrix = np.asarray(rows, dtype=np.float32)
    if matrix.ndim == 3:  # recall items: [items, vectors, bits] -> vectors side by side
        matrix = np.concatenate([np.pad(item, ((0, 1), (0, 0))) for item in matrix])[:-1]
    return f"{title}\n{render_rows(matrix)}"


def render(task: str, request: dict, answer: dict, training: str = "") -> str:
    """One request and its answer as text; an answer outside the training range (``training``
    names it, e.g. "length 1-20") is marked as an extrapolation."""
    if task == "recall":
        parts = [bits_block("items (one column per vector, gaps between items)",
                            request["items"]),
                 bits_block("query", request["query"]), bits_block("answer", answer["item"])]
    else:
        parts = [bits_block("input", request["sequence"])]
        if task == "repeat-copy":
            parts[0] += f"\nrepeats {request['repeats']}"
        parts.append(bits_block("output", answer["output"]))
        if task == "copy":
            same = answer["output"] == request["sequence"]
            parts.append(f"output equals input: {'yes' if same else 'no'}")
        if task == "repeat-copy":
            same = answer["output"] == request["sequence"] * request["repeats"]
            parts.append(f"end marker {answer['end_marker']:.3f}; output equals input x "
                         f"{request['repeats']}: {'yes' if same else 'no'}")
    if "memory_size" in answer:
        parts.append(f"memory rows: {answer['memory_size']}")
    if answer.get("within_training_range") is False:
        parts.append("EXTRAPOLATED: beyond the training range"
                     + (f" ({training})" if training else "")
                     + "; the model was never trained on a request like this")
    return "\n".join(parts)
