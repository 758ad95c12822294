"""Benchmark: why the bundled copy model gets about one fresh sequence in a few thousand wholly
wrong, and what the memory rules at inference do about it.

    python benchmarks/copy_rare_failures.py              # ~20 minutes on 2 busy cores
    python benchmarks/copy_rare_failures.py --small      # seconds; used by the tests

Four measurements, all on the bundled copy model through onnxruntime (its fused twin unless
``--engine standard``):

1. **Failures.** ``-n`` fresh sequences per length, drawn as ``benchmarks/card_evaluation.py``
   and ``ntm evaluate --seed`` draw them, with the rows the runtime chooses. The failed ones
   and as many healthy ones are run again on the standard engine (ONNX operators only): the
   same verdicts mean the model fails, not the kernel.
2. **Where the read head goes.** Failed and healthy sequences are replayed step by step by a
   NumPy copy of the model (weights read from the ONNX file; its weightings checked against
   the runtime's attention output) and the read head's addressing is taken apart at the
   delimiter step, where it must find the first vector's row: the key's strength, gate,
   shift and sharpening, the key itself (against the mean key of the healthy sequences), and
   the cosine similarity of the key with the first vector's row ("target row": where the
   write head wrote at step 1) and with every other row.
3. **Which inputs.** The target row's similarity to the delimiter key, for every pair of
   first two vectors (65,536; the NumPy copy over the first steps, the key held at the healthy
   mean): the pairs whose similarity is negative are "at risk". The failed sequences of (1)
   are looked up in that table.
4. **Rules at inference.** On ``--risky-n`` sequences per length whose first two vectors are an
   at-risk pair (the rest fresh) and then on the fresh sequences of (1): the rows the runtime
   chooses, the trained 128 where it chooses 256 for one row more (length 127), L + 2 rows
   ("tight"), twice the rows, and the fused file with another
   ``grow_strength_power`` or ``grow_logit_margin`` (the same weights; copies in a temporary
   directory, the bundled file untouched). Counted: failures, and how many of the bundled
   failures each rule fixes or adds.

Writes ``benchmarks/results/copy_rare_failures.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.results_io import write_results  # noqa: E402

DATA_SEED = 1234  # card_evaluation's: the same fresh sequences
RISKY_SEED = 99
BATCH = 256
EPSILON = 1e-6  # ntm.model.numerics.EPSILON: part of the trained arithmetic
LENGTHS = "20,100,126,127,200,500"
CHECK_LENGTHS = "100,126,127,200"
SMALL_LENGTHS = "20,30"
# (name, attribute changes of the fused node, rows: "chosen", "tight" or "double")
RULES = (("bundled", {}, "chosen"),
         ("trained rows (128)", {}, "trained"),
         ("tight rows (L + 2)", {}, "tight"),
         ("double rows", {}, "double"),
         ("strength power 1", {"grow_strength_power": 1.0}, "chosen"),
         ("strength power 3", {"grow_strength_power": 3.0}, "chosen"),
         ("strength power 4", {"grow_strength_power": 4.0}, "chosen"),
         ("logit margin 0", {"grow_logit_margin": 0.0}, "chosen"),
         ("double rows + power 3", {"grow_strength_power": 3.0}, "double"),
         ("double rows + power 4", {"grow_strength_power": 4.0}, "double"))
CHECKED_RULES = ("bundled", "double rows", "strength power 4", "double rows + power 4")


# -- the model in NumPy ---------------------------------------------------------------------
def read_fused(path: Path) -> tuple[dict, dict]:
    """(weights {name: float64 array}, the node's attributes) of a fused ONNX file."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    node = model.graph.node[0]
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64)
               for t in model.graph.initializer}
    return weights, attributes


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def replay(weights: dict, attributes: dict, x: np.ndarray, rows: int, record=(),
           trained: int = 128) -> dict:
    """The copy model (one LSTM controller, one read and one write head) on inputs
    x [batch, time, in] with ``rows`` memory rows, in float64 (``ntm.model.cell``'s step).

    -> {"weights": [batch, time, heads, N] (read head first), "probabilities"
    [batch, time, out], "memory_at": {t: memory after step t} for t in ``record``, and at
    every step the read head's "strength" (scaled), "gate", "shift" [S], "gamma", "key" [M],
    "content" [N] (its content weighting) and "similarity" [N] (cosine, key and rows)}."""
    a, w = attributes, weights
    batch, steps, _ = x.shape
    width = a["memory_width"]
    per_head = width + 3 + 2 * a["shift_range"] + 1
    heads = a["read_heads"] + a["write_heads"]
    h = np.tile(w["initial_h"], (batch, 1))
    c = np.tile(w["initial_c"], (batch, 1))
    logits = w["initial_weight_logits"]
    if rows > trained:
        floor = logits.min(axis=1, keepdims=True) - a["grow_logit_margin"]
        logits = np.concatenate([logits, np.repeat(floor, rows - trained, axis=1)], axis=1)
    weighting = np.tile(_softmax(logits[:, :rows])[None], (batch, 1, 1))
    memory = np.full((batch, rows, width), a["memory_init"])
    reads = np.tile(w["initial_reads"].reshape(-1), (batch, 1))
    scale = 1.0 if rows == trained else \
        (math.log(rows) / math.log(trained)) ** a["grow_strength_power"]
    offsets = np.arange(-a["shift_range"], a["shift_range"] + 1)
    table = (np.arange(rows)[None, :] - offsets[:, None]) % rows  # [S, N]
    out = {k: [] for k in ("weights", "probabilities", "strength", "gate", "shift", "gamma",
                           "key", "content", "similarity")}
    out["memory_at"] = {}
    clip = a["clip_value"]
    for t in range(steps):
        z = np.concatenate([x[:, t], reads, h], axis=1) @ w["controller_kernel"] + \
            w["controller_bias"]
        i, f, g, o = np.split(z, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        p = np.clip(h @ w["head_kernel"] + w["head_bias"], -clip, clip)
        head = p[:, :heads * per_head].reshape(batch, heads, per_head)
        erase = _sigmoid(p[:, heads * per_head:heads * per_head + width])
        add = np.tanh(p[:, heads * per_head + width:])
        key = head[:, :, :width]
        strength = np.logaddexp(0.0, head[:, :, width]) * scale
        gate = _sigmoid(head[:, :, width + 1])
        shift = _softmax(head[:, :, width + 2:per_head - 1])
        gamma = 1.0 + np.logaddexp(0.0, head[:, :, per_head - 1])
        dot = np.einsum("bhm,bnm->bhn", key, memory)
        key_sq = (key ** 2).sum(axis=2, keepdims=True) + EPSILON ** 2
        memory_sq = (memory ** 2).sum(axis=2)[:, None, :] + EPSILON ** 2
        similarity = dot / (np.sqrt(key_sq * memory_sq) + EPSILON)
        content = _softmax(strength[:, :, None] * similarity)
        gated = weighting + gate[:, :, None] * (content - weighting)
        shifted = (gated[:, :, table] * shift[:, :, :, None]).sum(axis=2)
        sharp = np.exp(gamma[:, :, None] * np.log(shifted + EPSILON))
        weighting = sharp / (sharp.sum(axis=2, keepdims=True) + EPSILON)
        reads = np.einsum("bn,bnm->bm", weighting[:, 0], memory)
        write = weighting[:, -1][:, :, None]
        memory = memory * (1.0 - write * erase[:, None]) + write * add[:, None]
        y = np.clip(np.concatenate([h, reads], axis=1) @ w["output_kernel"] + w["output_bias"],
                    -clip, clip)
        for name, value in (("weights", weighting), ("probabilities", _sigmoid(y)),
                            ("strength", strength[:, 0]), ("gate", gate[:, 0]),
                            ("shift", shift[:, 0]), ("gamma", gamma[:, 0]), ("key", key[:, 0]),
                            ("content", content[:, 0]), ("similarity", similarity[:, 0])):
            out[name].append(value)
        if t in record:
            out["memory_at"][t] = memory.copy()
    for name in out:
        if name != "memory_at":
            out[name] = np.stack(out[name], axis=1)
    return out


def cosine(rows: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The model's cosine similarity (its epsilons) of each row [..., M] with ``key`` [M]."""
    dot = rows @ key
    return dot / (np.sqrt(((key ** 2).sum() + EPSILON ** 2) *
                          ((rows ** 2).sum(axis=-1) + EPSILON ** 2)) + EPSILON)


def bit_rows(values: np.ndarray, bits: int = 8) -> np.ndarray:
    """Integers -> their bits, most significant first: [n] -> float [n, bits]."""
    return ((np.asarray(values)[:, None] >> np.arange(bits - 1, -1, -1)[None]) & 1) \
        .astype(np.float64)


# -- sequences ------------------------------------------------------------------------------
def fresh(task, length: int, count: int, seed: int):
    """The first ``count`` sequences card_evaluation draws at ``length``, in batches:
    yields (inputs, targets, mask) of up to ``BATCH`` sequences each."""
    from ntm.contract.tasks import Difficulty

    rng = np.random.default_rng([seed, length, 0])  # as card_evaluation and ntm evaluate
    for start in range(0, count, BATCH):
        batch = task.fixed_batch(rng, min(BATCH, count - start), Difficulty(length))
        yield batch.inputs, batch.targets, batch.mask


def with_first_pairs(task, inputs, targets, pairs: np.ndarray, length: int):
    """The sequences with their first two vectors replaced by ``pairs`` [batch, 2] (integers)."""
    bits = task.bits
    x, y = inputs.copy(), targets.copy()
    for k in range(2):
        x[:, k, :bits] = bit_rows(pairs[:, k], bits)
        y[:, length + 1 + k] = x[:, k, :bits]
    return x, y


def wrong_bits(runtime, batches, rows: int) -> np.ndarray:
    """Wrong bits per sequence on ``runtime`` with ``rows`` memory rows, over ``batches`` of
    (inputs, targets, mask) -> [sequences]."""
    from benchmarks.card_evaluation import run_in_pieces
    from ntm.contract.tasks import bit_errors

    errors = []
    for x, y, mask in batches:
        errors.append(bit_errors(run_in_pieces(runtime, x, rows), y, mask))
    return np.concatenate(errors)


def in_batches(x, y, mask):
    """Arrays of sequences -> batches of up to ``BATCH``."""
    for start in range(0, len(x), BATCH):
        yield x[start:start + BATCH], y[start:start + BATCH], mask[start:start + BATCH]


def pick(task, length: int, count: int, seed: int, indices) -> tuple:
    """The sequences at ``indices`` (sorted) among the first ``count`` fresh ones."""
    wanted, parts, start = {int(i) for i in indices}, [], 0
    for x, y, mask in fresh(task, length, count, seed):
        here = [i - start for i in sorted(wanted) if start <= i < start + len(x)]
        if here:
            parts.append((x[here], y[here], mask[here]))
        start += len(x)
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


# -- the measurements -----------------------------------------------------------------------
def summary(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max())}


def diagnose(runtime, weights, attributes, x, length: int, rows: int) -> list[dict]:
    """The read head's addressing at the delimiter step (and the steps around it), per
    sequence, from the NumPy copy; "reference_max_diff": its largest difference from the
    runtime's attention."""
    out = []
    for start in range(0, len(x), 8):  # the traces hold every step: a few sequences at once
        out += _diagnose(runtime, weights, attributes, x[start:start + 8], length, rows)
    return out


def _diagnose(runtime, weights, attributes, x, length: int, rows: int) -> list[dict]:
    _, attention = runtime.run_checked(x, rows)
    trace = replay(weights, attributes, x.astype(np.float64), rows)
    delimiter = length
    out = []
    for i in range(len(x)):
        target = int(trace["weights"][i, 1, -1].argmax())  # the write head's row at step 1
        similarity = trace["similarity"][i, delimiter]
        others = np.delete(similarity, target)
        read = trace["weights"][i, :, 0]
        out.append({
            "target_row": target,
            "reference_max_diff": float(np.abs(trace["weights"][i] - attention[i]).max()),
            "read_max_before": float(read[delimiter - 1].max()),
            "read_max_delimiter": float(read[delimiter].max()),
            "read_row_delimiter": int(read[delimiter].argmax()),
            "read_max_first_output": float(read[delimiter + 1].max()),
            "read_row_first_output": int(read[delimiter + 1].argmax()),
            "content_max": float(trace["content"][i, delimiter].max()),
            "content_target": float(trace["content"][i, delimiter, target]),
            "similarity_target": float(similarity[target]),
            "similarity_best_other": float(others.max()),
            "target_rank": int((similarity > similarity[target]).sum()),
            "strength": float(trace["strength"][i, delimiter]),
            "gate": float(trace["gate"][i, delimiter]),
            "gamma": float(trace["gamma"][i, delimiter]),
            "shift": [float(s) for s in trace["shift"][i, delimiter]],
            "key": trace["key"][i, delimiter],
            "first_two": [int(v) for v in (x[i, :2, :8] @ (1 << np.arange(7, -1, -1)))],
        })
    return out


def pair_table(weights, attributes, key: np.ndarray, target: int, rows: int,
               pairs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The target row's similarity to ``key`` after the first steps, for each pair of first
    two vectors [n, 2] (the next vectors random): -> [n]."""
    out = np.empty(len(pairs))
    steps = target + 2
    for start in range(0, len(pairs), 2048):
        chunk = pairs[start:start + 2048]
        x = np.zeros((len(chunk), steps, 9))
        x[:, 0, :8], x[:, 1, :8] = bit_rows(chunk[:, 0]), bit_rows(chunk[:, 1])
        x[:, 2:, :8] = rng.integers(0, 2, (len(chunk), steps - 2, 8))
        trace = replay(weights, attributes, x, rows, record=(steps - 1,))
        out[start:start + len(chunk)] = cosine(trace["memory_at"][steps - 1][:, target], key)
    return out


def rule_runtimes(tmp: Path, engine: str):
    """{rule name: (runtime, rows rule)}: the fused file with each rule's attributes, in
    ``tmp`` (the standard engine: only the rules that change rows)."""
    import onnx
    from onnx import helper

    from benchmarks.card_evaluation import bundled_path
    from ntm.serving.runtime import ModelRuntime
    from ntm.serving.settings import RuntimeOptions

    options = RuntimeOptions(engine=engine, max_memory_size=4096)
    bundled = ModelRuntime(bundled_path("copy"), options=options)
    out = {}
    for name, changes, rows in RULES:
        if not changes:
            out[name] = (bundled, rows)
            continue
        if bundled.engine != "fused":
            continue
        model = onnx.load(str(bundled.path))
        for attribute in model.graph.node[0].attribute:
            if attribute.name in changes:
                attribute.CopyFrom(helper.make_attribute(attribute.name,
                                                         changes[attribute.name]))
        where = tmp / name.replace(" ", "_").replace(",", "")
        where.mkdir()
        onnx.save(model, str(where / "copy.fused.onnx"))
        out[name] = (ModelRuntime(where / "copy.fused.onnx",
                                  options=RuntimeOptions(engine="fused", max_memory_size=4096)),
                     rows)
    return out


def rows_of(rule: str, chosen: int, length: int, trained: int = 128) -> int | None:
    """The rows a rule gives a copy of ``length`` whose runtime would choose ``chosen``; None:
    the rule does not apply ("trained" only where the runtime would grow the memory for at
    most one more row than the trained ones)."""
    if rule == "trained":
        return trained if trained < chosen and length + 2 <= trained + 1 else None
    return {"chosen": chosen, "tight": max(trained, length + 2), "double": 2 * chosen}[rule]


def compare_rules(rules: dict, batches, length: int, chosen: int,
                  bundled: np.ndarray | None = None) -> list[dict]:
    """Each rule on the same sequences (``batches()``: a fresh iterator of (inputs, targets,
    mask) batches each time): failures, and those it fixes or adds against the bundled rule
    (``bundled``: its verdicts per sequence when already measured)."""
    verdicts, out = {}, []
    for name, (runtime, rows_rule) in rules.items():
        rows = rows_of(rows_rule, chosen, length)
        if rows is None:
            continue
        started = time.perf_counter()
        if name == "bundled" and bundled is not None:
            bad, started = bundled, None
        else:
            bad = wrong_bits(runtime, batches(), rows) > 0
        verdicts[name] = bad
        base = verdicts["bundled"]
        out.append({"rule": name, "rows": rows, "sequences": int(len(bad)),
                    "failures": int(bad.sum()), "fixed": int((base & ~bad).sum()),
                    "added": int((~base & bad).sum()),
                    "seconds": None if started is None else
                    round(time.perf_counter() - started, 1)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default=None, help=f"[{LENGTHS}; small: {SMALL_LENGTHS}]")
    parser.add_argument("-n", "--sequences", type=int, default=None,
                        help="fresh sequences per length [10000; small: 64]")
    parser.add_argument("--risky-n", type=int, default=None,
                        help="at-risk sequences per length and rule [1000; small: 32]")
    parser.add_argument("--check-lengths", default=None,
                        help=f"lengths at which the rules {', '.join(CHECKED_RULES[1:])} run "
                             f"on the -n fresh sequences too [{CHECK_LENGTHS}; small: 20]")
    parser.add_argument("--rules", default=None,
                        help="the rules run on at-risk sequences, comma-separated names "
                             "[every one: " + ", ".join(name for name, _, _ in RULES) + "]")
    parser.add_argument("--check-rules", default=None,
                        help="the rules run on the fresh sequences too "
                             f"[{', '.join(CHECKED_RULES)}]")
    parser.add_argument("--pairs", type=int, default=None,
                        help="first-two-vector pairs in the table [65536: all; small: 512]")
    parser.add_argument("--engine", choices=("fused", "standard"), default="fused")
    parser.add_argument("--seed", type=int, default=DATA_SEED, help="data seed")
    parser.add_argument("--tag", default="",
                        help="appended to the results' name (copy_rare_failures-TAG)")
    parser.add_argument("--small", action="store_true", help="short lengths, few sequences")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    from benchmarks.card_evaluation import bundled_path
    from ntm.contract.tasks import Difficulty
    from ntm.serving.runtime import ModelRuntime
    from ntm.serving.settings import RuntimeOptions
    from ntm.training.evaluation import failure_upper_bound

    lengths = [int(v) for v in (args.lengths or (SMALL_LENGTHS if args.small else LENGTHS))
               .split(",")]
    check_lengths = {int(v) for v in (args.check_lengths or ("20" if args.small
                                                             else CHECK_LENGTHS)).split(",")}
    known = [name for name, _, _ in RULES]
    chosen_rules, checked_rules = (
        ["bundled"] + [r.strip() for r in text.split(",") if r.strip() != "bundled"]
        if text else default for text, default in ((args.rules, known),
                                                   (args.check_rules, list(CHECKED_RULES))))
    for name in chosen_rules + checked_rules:
        if name not in known:
            parser.error(f"unknown rule {name!r}; rules: {', '.join(known)}")
    n = args.sequences or (64 if args.small else 10_000)
    risky_n = args.risky_n or (32 if args.small else 1000)
    n_pairs = args.pairs or (512 if args.small else 65_536)
    runtime = ModelRuntime(bundled_path("copy"), options=RuntimeOptions(engine=args.engine))
    standard = ModelRuntime(bundled_path("copy"), options=RuntimeOptions(engine="standard"))
    weights, attributes = read_fused(bundled_path("copy").with_name("copy.fused.onnx"))
    task = runtime.task
    started = time.perf_counter()

    # 1. failures, and the standard engine on the same sequences
    points, sequences = [], {}
    for length in lengths:
        rows = runtime.memory_size_for(task.memory_rows(Difficulty(length)))
        t0 = time.perf_counter()
        bits = wrong_bits(runtime, fresh(task, length, n, args.seed), rows)
        seconds = time.perf_counter() - t0
        bad = np.nonzero(bits > 0)[0]
        healthy = np.nonzero(bits == 0)[0][:max(len(bad), 8)]
        both = np.sort(np.concatenate([bad, healthy]))
        x, y, mask = pick(task, length, n, args.seed, both)
        on_standard = wrong_bits(standard, in_batches(x, y, mask), rows)
        sequences[length] = (x[np.isin(both, bad)], x[np.isin(both, healthy)], rows, bits > 0)
        points.append({
            "length": length, "rows": rows, "sequences": n, "failures": int(len(bad)),
            "failure_rate": len(bad) / n, "failure_upper_95": failure_upper_bound(len(bad), n),
            "failed": [{"index": int(i), "bits": float(bits[i])} for i in bad],
            "standard_same_verdicts": bool(np.array_equal(on_standard > 0, bits[both] > 0)),
            "standard_failures": int((on_standard > 0).sum()),
            "standard_checked": int(len(both)), "seconds": round(seconds, 1)})
        print(f"{length}: {len(bad)}/{n} failed ({seconds:.0f} s)", file=sys.stderr, flush=True)

    # 2. the read head at the delimiter, failed against healthy
    diagnosis, keys, targets = [], [], []
    for length in lengths:
        bad, healthy, rows, _ = sequences[length]
        for kind, chosen in (("failed", bad), ("healthy", healthy)):
            if len(chosen) == 0:
                continue
            for d in diagnose(runtime, weights, attributes, chosen, length, rows):
                d.update(length=length, kind=kind)
                diagnosis.append(d)
                if kind == "healthy":
                    keys.append(d["key"])
                    targets.append(d["target_row"])
    mean_key = np.mean(keys, axis=0)
    target = int(np.bincount(targets).argmax())
    for d in diagnosis:
        key = d.pop("key")
        d["key_cosine_to_mean"] = float(key @ mean_key / np.linalg.norm(key)
                                        / np.linalg.norm(mean_key))

    # 3. which first two vectors leave the target row unlike the key
    rng = np.random.default_rng(7)
    every = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1) \
        .reshape(-1, 2)
    pairs = every if n_pairs >= len(every) else every[rng.choice(len(every), n_pairs, False)]
    t0 = time.perf_counter()
    similarity = pair_table(weights, attributes, mean_key, target, 256, pairs, rng)
    table_seconds = time.perf_counter() - t0
    at_risk = pairs[similarity < 0]
    lookup = dict(zip(map(tuple, pairs), similarity))
    for d in diagnosis:
        d["pair_similarity"] = float(lookup.get(tuple(d["first_two"]), float("nan")))
    coefficients = np.linalg.lstsq(
        np.concatenate([bit_rows(pairs[:, 0]), bit_rows(pairs[:, 1]), np.ones((len(pairs), 1))],
                       axis=1), similarity, rcond=None)[0]

    # 4. rules at inference
    rules_at_risk, rules_fresh = [], []
    with tempfile.TemporaryDirectory() as tmp:
        rules = {name: rule for name, rule in rule_runtimes(Path(tmp), args.engine).items()
                 if name in chosen_rules or name in checked_rules}
        at_risk_rules = {name: rules[name] for name in chosen_rules if name in rules}
        for length in lengths:
            rows = sequences[length][2]
            if len(at_risk):
                # the first risky_n fresh sequences of another seed, their first two vectors
                # an at-risk pair
                rng = np.random.default_rng([RISKY_SEED, length])
                x, y, mask = (np.concatenate(part) for part in
                              zip(*fresh(task, length, risky_n, RISKY_SEED)))
                xr, yr = with_first_pairs(task, x, y, at_risk[rng.integers(0, len(at_risk),
                                                                           risky_n)], length)
                for row in compare_rules(at_risk_rules,
                                         lambda x=xr, y=yr, m=mask: in_batches(x, y, m),
                                         length, rows):
                    rules_at_risk.append({"length": length, **row})
                    print(f"{length} at risk, {row['rule']}: {row['failures']}/{risky_n}",
                          file=sys.stderr, flush=True)
            if length in check_lengths:
                checked = {name: rules[name] for name in checked_rules if name in rules}
                for row in compare_rules(checked,
                                         lambda at=length: fresh(task, at, n, args.seed),
                                         length, rows, bundled=sequences[length][3]):
                    row["failure_upper_95"] = failure_upper_bound(row["failures"],
                                                                  row["sequences"])
                    rules_fresh.append({"length": length, **row})
                    print(f"{length} fresh, {row['rule']}: {row['failures']}/{n}",
                          file=sys.stderr, flush=True)

    options = [("--lengths", args.lengths), ("-n", args.sequences), ("--risky-n", args.risky_n),
               ("--check-lengths", args.check_lengths), ("--pairs", args.pairs),
               ("--rules", args.rules and f'"{args.rules}"'),
               ("--check-rules", args.check_rules and f'"{args.check_rules}"'),
               ("--engine", None if args.engine == "fused" else args.engine),
               ("--tag", args.tag or None),
               ("--seed", None if args.seed == DATA_SEED else args.seed)]
    command = "python benchmarks/copy_rare_failures.py" + "".join(
        f" {flag} {value}" for flag, value in options if value is not None) + \
        (" --small" if args.small else "")
    result = {
        "benchmark": "copy_rare_failures", "mode": "small" if args.small else "full",
        "command": command, "engine": runtime.engine, "data_seed": args.seed,
        "points": points, "target_row": target,
        "diagnosis": diagnosis,
        "summary": {kind: {field: summary([d[field] for d in diagnosis if d["kind"] == kind])
                           for field in SUMMARY_FIELDS}
                    for kind in ("failed", "healthy")
                    if any(d["kind"] == kind for d in diagnosis)},
        "pairs": {"pairs": int(len(pairs)), "at_risk": int(len(at_risk)),
                  "at_risk_share": float(len(at_risk) / len(pairs)),
                  "rows": 256, "seconds": round(table_seconds, 1),
                  "failed_at_risk": int(sum(d["pair_similarity"] < 0 for d in diagnosis
                                            if d["kind"] == "failed")),
                  "failed": int(sum(d["kind"] == "failed" for d in diagnosis)),
                  "healthy_at_risk": int(sum(d["pair_similarity"] < 0 for d in diagnosis
                                             if d["kind"] == "healthy")),
                  "healthy": int(sum(d["kind"] == "healthy" for d in diagnosis)),
                  "bit_coefficients": {"first": [round(float(c), 4) for c in coefficients[:8]],
                                       "second": [round(float(c), 4)
                                                  for c in coefficients[8:16]],
                                       "constant": round(float(coefficients[16]), 4)},
                  "most_at_risk": [[int(a), int(b), round(float(s), 4)] for (a, b), s in
                                   sorted(zip(map(tuple, pairs), similarity),
                                          key=lambda p: p[1])[:10]]},
        "rules_at_risk": rules_at_risk, "rules_fresh": rules_fresh,
        "seconds": round(time.perf_counter() - started, 1)}
    write_results(args.out, "copy_rare_failures" + (f"-{args.tag}" if args.tag else ""),
                  args.small, result, markdown(result))


SUMMARY_FIELDS = ("read_max_before", "read_max_delimiter", "read_max_first_output",
                  "content_max", "content_target", "similarity_target", "similarity_best_other",
                  "target_rank", "strength", "gate", "gamma", "key_cosine_to_mean",
                  "pair_similarity", "reference_max_diff")


def markdown(result: dict) -> str:
    lines = ["# Copy: the rare sequences that come out wholly wrong", "",
             f"`{result['command']}` ({result['engine']} engine; data seed "
             f"{result['data_seed']}, the sequences `benchmarks/card_evaluation.py` scores; "
             f"{result['seconds'] / 60:.0f} minutes with other work sharing the CPU).", "",
             "## Failures, and the standard engine on the same sequences", "",
             "| length | rows | n | failed | rate | 95% upper | same verdicts on the standard "
             "engine (failed + healthy checked) | failed sequences (index: wrong bits) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in result["points"]:
        failed_list = ", ".join(f"{f['index']}: {f['bits']:.0f}" for f in p["failed"][:10])
        lines.append(f"| {p['length']} | {p['rows']} | {p['sequences']} | {p['failures']} | "
                     f"{100 * p['failure_rate']:.2f}% | {100 * p['failure_upper_95']:.3f}% | "
                     f"{'yes' if p['standard_same_verdicts'] else 'NO'} "
                     f"({p['standard_checked']}) | {failed_list} |")
    lines += ["", "## The read head at the delimiter step (NumPy copy of the model)", "",
              f"Target row: where the write head wrote at step 1 (row {result['target_row']}), "
              f"the row the read head must find to start the copy. Median [min, max] over the "
              f"failed and the healthy sequences of every length.", "",
              "| quantity | failed | healthy |", "| --- | --- | --- |"]

    def cell(kind, field):
        s = result["summary"].get(kind, {}).get(field)
        return "" if s is None else f"{s['median']:.3g} [{s['min']:.3g}, {s['max']:.3g}]"

    for field in SUMMARY_FIELDS:
        lines.append(f"| {field} | {cell('failed', field)} | {cell('healthy', field)} |")
    pairs = result["pairs"]
    lines += ["", "## Which inputs: the first two vectors", "",
              f"The target row's similarity to the (mean healthy) delimiter key after the first "
              f"steps, for {pairs['pairs']} pairs of first two vectors ({pairs['rows']} rows, "
              f"{pairs['seconds']:.0f} s): {pairs['at_risk']} "
              f"({100 * pairs['at_risk_share']:.2f}%) are negative (\"at risk\"). Failed "
              f"sequences with an at-risk pair: {pairs['failed_at_risk']} of "
              f"{pairs['failed']}; healthy ones: {pairs['healthy_at_risk']} of "
              f"{pairs['healthy']}. Least similar pairs (first, second, similarity): "
              + ", ".join(f"{a:08b} {b:08b} {s:.3f}" for a, b, s in pairs["most_at_risk"][:5])
              + ". Linear fit of the similarity on the bits (most significant first): first "
              f"vector {pairs['bit_coefficients']['first']}, second "
              f"{pairs['bit_coefficients']['second']}, constant "
              f"{pairs['bit_coefficients']['constant']}.", ""]
    for title, rows in (("Rules at inference, at-risk sequences", result["rules_at_risk"]),
                        ("Rules at inference, fresh sequences", result["rules_fresh"])):
        if not rows:
            continue
        lines += [f"## {title}", "",
                  "| length | rule | rows | n | failed | fixed | added |"
                  + (" 95% upper |" if "failure_upper_95" in rows[0] else ""),
                  "| --- | --- | --- | --- | --- | --- | --- |"
                  + (" --- |" if "failure_upper_95" in rows[0] else "")]
        for r in rows:
            lines.append(f"| {r['length']} | {r['rule']} | {r['rows']} | {r['sequences']} | "
                         f"{r['failures']} | {r['fixed']} | {r['added']} |"
                         + (f" {100 * r['failure_upper_95']:.3f}% |"
                            if "failure_upper_95" in r else ""))
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
