"""endist_vision — image ensembles and ensemble (distribution) distillation.

Subpackages/modules: :mod:`.models` (registry, ``create_model``), :mod:`.data` (data sets, splits,
augmentation), :mod:`.methods` (method registry: individual, ensemble, end, end2, proxy_end2, ...),
:mod:`.trainer` (the one training loop), :mod:`.evaluation` / :mod:`.report` (metrics, tables, plots),
:mod:`.cli` (console script ``endist-vision``). Extension contract: ``endist_vision/README_internal.md``.
"""
