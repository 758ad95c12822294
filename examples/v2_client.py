"""Send a copy or recall request to any Open Inference Protocol (V2) server with tritonclient:
Triton (the repository from ``ntm export --format triton``), KServe, or ``ntm serve``. The same
script works against all three unchanged; only --url differs.

The request is encoded and the answer decoded with ``ntm.contract.tasks`` (NumPy only: the base
``pip install`` of this project, no TensorFlow); tensors travel as raw FP32 V2 inputs.

    python examples/v2_client.py --url 127.0.0.1:8080 --model copy examples/copy.json
    python examples/v2_client.py --url 127.0.0.1:8000 --model recall examples/recall.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request", type=Path, help="a request JSON file (examples/*.json)")
    parser.add_argument("--url", default="127.0.0.1:8080", help="HOST:PORT of the V2 server")
    parser.add_argument("--model", default="copy", help="model name on the server")
    parser.add_argument("--task", default=None, help="task [default: the model name]")
    parser.add_argument("--binary", action="store_true", help="binary tensor extension")
    args = parser.parse_args(argv)

    import tritonclient.http as v2

    from ntm.contract.tasks import get_task

    task = get_task(args.task or args.model)
    encoded = task.encode(json.loads(args.request.read_text()))
    x = encoded.inputs[None].astype(np.float32)  # [1, time, input_size]
    client = v2.InferenceServerClient(url=args.url)
    if not client.is_model_ready(args.model):
        print(f"model {args.model} is not ready on {args.url}", file=sys.stderr)
        return 1
    tensor = v2.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=args.binary)
    result = client.infer(args.model, [tensor], outputs=[
        v2.InferRequestedOutput("probabilities", binary_data=args.binary)])
    print(json.dumps(task.decode(result.as_numpy("probabilities")[0], encoded)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
