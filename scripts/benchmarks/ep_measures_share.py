#!/usr/bin/env python
"""Time the expectation-of-products (EP) measures inside one ``fairseq-generate --compute-uncertainty`` run.

Runs fairseq-generate in this process (arguments as on its command line) with timers around

* ``TranslationUncertaintyTask.inference_step`` — the generation loop proper (search + teacher-forced
  re-scoring + every measure), the work fairseq's "Translated N sentences in X s" timer covers;
* the EP-only functions ``measures.prefix_log_weights`` and ``measures.weighted_ensemble_uncertainty``
  (what issue 14 added to the re-scoring; the PE measures were there before),

and prints one JSON line ``{"inference_s": ..., "ep_s": ..., "ep_extra": ep_s / (inference_s − ep_s)}``:
``ep_extra`` is the EP measures' cost relative to the generation loop without them.
Used by ``generate_overhead.py --ep-share``.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any, Callable, Dict


def _timed(fn: Callable[..., Any], totals: Dict[str, float], key: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    return wrapper


def main(argv: list) -> int:
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import generate

    from endist_seq.generation import measures
    from endist_seq.tasks.translation_uncertainty import TranslationUncertaintyTask

    totals = {"inference_s": 0.0, "ep_s": 0.0}
    TranslationUncertaintyTask.inference_step = _timed(TranslationUncertaintyTask.inference_step, totals, "inference_s")
    measures.prefix_log_weights = _timed(measures.prefix_log_weights, totals, "ep_s")
    measures.weighted_ensemble_uncertainty = _timed(measures.weighted_ensemble_uncertainty, totals, "ep_s")
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, argv)
    generate.main(convert_namespace_to_omegaconf(args))
    totals["ep_extra"] = totals["ep_s"] / max(totals["inference_s"] - totals["ep_s"], 1e-12)
    print("EP_SHARE " + json.dumps(totals), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
