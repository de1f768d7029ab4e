"""Uncertainty for ``fairseq-generate`` (issue #4).

* :mod:`endist_seq.generation.measures` — token- and sequence-level measures
  (pure torch, built on :mod:`shared.uncertainty`);
* :mod:`endist_seq.generation.scorer` — teacher-forces the final hypotheses
  through every member / the Dirichlet student after the search;
* :mod:`endist_seq.generation.sequence_generator` — the generator wrapper that
  the ``translation_uncertainty`` task builds (search untouched) and the
  Dirichlet-mean ensemble model for ``--dirichlet-mean-decoding``;
* :mod:`endist_seq.generation.output` — ``U-``/``UT-``/``UW-`` lines and the
  atomic JSONL writer;
* :mod:`endist_seq.generation.parse` — reads those outputs back (for ``endist-seq-eval``).
"""
