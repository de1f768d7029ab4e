#!/usr/bin/env python
"""Time the expectation-of-products (EP) measures inside one ``fairseq-generate --compute-uncertainty`` run.

Runs fairseq-generate in this process (arguments as on its command line) with timers around

* ``TranslationUncertaintyTask.inference_step`` — the generation loop proper (search + teacher-forced
  re-scoring + every measure), the work fairseq's "Translated N sentences in X s" timer covers;
* the EP-only functions ``measures.prefix_log_weights`` and ``measures.weighted_ensemble_uncertainty``
  (what issue 14 added to the re-scoring; the PE measures were there before);
* ``HypothesisScorer.score`` — all the scoring after the search, plus ``SearchRecord.add_step``/``reorder`` —
  keeping the search's decoder states during the search (together ``rescore_s``), and inside the scoring the
  hypotheses' distributions: ``HypothesisScorer._member_outputs_from_states`` (output layer over the kept states,
  the default) or ``HypothesisScorer._member_outputs`` (teacher-forced decoder passes, ``--uncertainty-record-mb 0``
  or a batch over the bound) of the M members (``forcing_s``),

and prints one JSON line ``{"inference_s": ..., "ep_s": ..., "ep_extra": ep_s / (inference_s − ep_s), ...}``:
``ep_extra`` is the EP measures' cost relative to the generation loop without them; ``rescore_extra`` =
rescore_s / (inference_s − rescore_s) is the whole re-scoring relative to the search alone (the overhead of
``--compute-uncertainty`` measured inside one run, hence insensitive to load drifting between runs), and
``forcing_extra`` = forcing_s / (inference_s − rescore_s) its distribution part.
Clock: process CPU time (``time.process_time``) summed over the last ``RUNS − 1`` of ``RUNS`` runs in this process
(each after ``gc.collect()``), so one-time start-up costs of the first run are not counted. Several runs, because
the toy's run of four batches has about one generation-1 garbage collection (1.3–2.4 ms measured, triggered by everything
the run allocates): timing a single run charged it to whichever phase it happened to land in, the same one in every
fresh process (in one measurement the scoring's share of the second run was 1–2 points above the later runs'). Used by
``generate_overhead.py --ep-share``.
"""

from __future__ import annotations

import functools
import gc
import json
import sys
import time
from typing import Any, Callable, Dict

#: fairseq-generate runs in this process; all but the first are timed (summed)
RUNS = 4


def _timed(fn: Callable[..., Any], totals: Dict[str, float], key: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.process_time() - start

    return wrapper


def main(argv: list) -> int:
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import generate

    from endist_seq.generation import measures
    from endist_seq.generation.scorer import HypothesisScorer
    from endist_seq.generation.search_record import SearchRecord
    from endist_seq.tasks.translation_uncertainty import TranslationUncertaintyTask

    totals = {"inference_s": 0.0, "ep_s": 0.0, "rescore_s": 0.0, "forcing_s": 0.0}
    TranslationUncertaintyTask.inference_step = _timed(TranslationUncertaintyTask.inference_step, totals, "inference_s")
    measures.prefix_log_weights = _timed(measures.prefix_log_weights, totals, "ep_s")
    measures.weighted_ensemble_uncertainty = _timed(measures.weighted_ensemble_uncertainty, totals, "ep_s")
    HypothesisScorer.score = _timed(HypothesisScorer.score, totals, "rescore_s")
    SearchRecord.add_step = _timed(SearchRecord.add_step, totals, "rescore_s")
    SearchRecord.reorder = _timed(SearchRecord.reorder, totals, "rescore_s")
    HypothesisScorer._member_outputs = _timed(HypothesisScorer._member_outputs, totals, "forcing_s")
    HypothesisScorer._member_outputs_from_states = _timed(HypothesisScorer._member_outputs_from_states, totals, "forcing_s")
    for run in range(RUNS):  # the first run pays one-time costs (lazy imports, allocator warm-up): not timed
        if run <= 1:
            for key in totals:
                totals[key] = 0.0
        gc.collect()
        args = options.parse_args_and_arch(options.get_generation_parser(), argv)
        generate.main(convert_namespace_to_omegaconf(args))
    totals["ep_extra"] = totals["ep_s"] / max(totals["inference_s"] - totals["ep_s"], 1e-12)
    search_s = max(totals["inference_s"] - totals["rescore_s"], 1e-12)
    totals["rescore_extra"] = totals["rescore_s"] / search_s
    totals["forcing_extra"] = totals["forcing_s"] / search_s
    print("EP_SHARE " + json.dumps(totals), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
