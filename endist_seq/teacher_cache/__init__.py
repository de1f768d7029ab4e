"""Teacher cache for sequence distillation: build it once (``endist-seq-cache``), train from it
(``fairseq-train --task ensemble_distillation --teacher-cache CACHE_DIR``) with no teacher loaded.

- :mod:`endist_seq.teacher_cache.store`: the on-disk format (chunks, memory-mapped arrays, manifest) and
  the reader :class:`~endist_seq.teacher_cache.store.SubsetCache`;
- :mod:`endist_seq.teacher_cache.build`: sharded, resumable building;
- the math (what is stored per token and how each loss is rebuilt, at which temperatures it is exact):
  :mod:`shared.teacher_cache`.
"""
