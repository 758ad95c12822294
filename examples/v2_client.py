"""Send a copy or recall request to any Open Inference Protocol (V2) server with tritonclient:
Triton (the repository from ``ntm export --format triton``), KServe, or ``ntm serve``. The same
script works against all three unchanged; only --url (and --grpc) differ.

Needs the project's base install (the request is encoded and the answer decoded with
``ntm.contract.tasks``: NumPy only, no TensorFlow) and tritonclient:
``pip install 'tritonclient[http,grpc]'`` (or the project's ``[grpc]`` extra for gRPC).
Tensors travel as raw FP32 V2 inputs.

    python examples/v2_client.py --url 127.0.0.1:8080 --model copy examples/copy.json
    python examples/v2_client.py --url 127.0.0.1:8000 --model recall examples/recall.json
    python examples/v2_client.py --grpc --url 127.0.0.1:8001 --model copy examples/copy.json
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
    parser.add_argument("--binary", action="store_true", help="binary tensor extension (HTTP)")
    parser.add_argument("--grpc", action="store_true",
                        help="speak gRPC (--url is then the gRPC port: Triton's 8001, "
                             "ntm serve's --grpc-port)")
    args = parser.parse_args(argv)

    try:
        if args.grpc:
            import tritonclient.grpc as v2
        else:
            import tritonclient.http as v2
    except ImportError:
        print("this example needs tritonclient: pip install 'tritonclient[http,grpc]'",
              file=sys.stderr)
        return 1

    from ntm.contract.tasks import get_task

    task = get_task(args.task or args.model)
    encoded = task.encode(json.loads(args.request.read_text()))
    x = encoded.inputs[None].astype(np.float32)  # [1, time, input_size]
    client = v2.InferenceServerClient(url=args.url)
    if not client.is_model_ready(args.model):
        print(f"model {args.model} is not ready on {args.url}", file=sys.stderr)
        return 1
    tensor = v2.InferInput("inputs", list(x.shape), "FP32")
    binary = {} if args.grpc else {"binary_data": args.binary}  # gRPC tensors are always raw
    tensor.set_data_from_numpy(x, **binary)
    result = client.infer(args.model, [tensor], outputs=[
        v2.InferRequestedOutput("probabilities", **binary)])
    print(json.dumps(task.decode(result.as_numpy("probabilities")[0], encoded)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
