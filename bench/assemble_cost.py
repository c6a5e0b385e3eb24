"""CPU cost of putting one non-streaming answer together from its stream (router/proxy.py).

The stream is bench/fast_backend.py's: ``--chunks`` SSE chunks, a final chunk, a usage chunk
and ``[DONE]``. Pure CPU, no I/O: split, parse, assemble, serialize, ``--n`` times::

    .venv/bin/python -m bench.assemble_cost --chunks 64 --n 2000
"""

from __future__ import annotations

import argparse
import json
import time

from bench.fast_backend import chunk, usage_chunk
from modelfleet.router.proxy import _parse_all, _payloads
from modelfleet.router.translate import StreamAssembler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    model = "bench-model"
    stream = b"".join(chunk(model, i, last=False) for i in range(args.chunks))
    stream += chunk(model, args.chunks, last=True) + usage_chunk(model, args.chunks)
    stream += b"data: [DONE]\n\n"
    start = time.process_time()
    for _ in range(args.n):
        assembler = StreamAssembler("openai")
        for obj in _parse_all(_payloads(stream)):
            assembler.feed(obj)
        json.dumps(assembler.result())
    per_answer_us = (time.process_time() - start) / args.n * 1e6
    print(f"{per_answer_us:.0f} us CPU per {args.chunks}-chunk answer ({args.n} answers)")


if __name__ == "__main__":
    main()
