"""Human renderings of answers: bit rows like the paper's figures (``ntm predict --pretty``)."""

from __future__ import annotations

from ntm.contract.tasks import Task


def render(task: Task, request: dict, answer: dict, training: str = "") -> str:
    """One request and its answer as text (the task draws its own fields); an answer outside
    the training range (``training`` names it, e.g. "length 1-20") is marked as an
    extrapolation."""
    parts = task.render_answer(request, answer)
    if "memory_size" in answer:
        parts.append(f"memory rows: {answer['memory_size']}")
    if answer.get("within_training_range") is False:
        parts.append("EXTRAPOLATED: beyond the training range"
                     + (f" ({training})" if training else "")
                     + "; the model was never trained on a request like this")
    return "\n".join(parts)
