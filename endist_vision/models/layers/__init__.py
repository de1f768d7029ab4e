"""Drop-in layers for multi-member networks: BatchEnsemble rank-one ``Linear``/``Conv2d`` ([BE] eq. 2)
and the helpers that convert a plain network to them and back (:mod:`.batchensemble`)."""

from .batchensemble import (
    BatchEnsembleConv2d,
    BatchEnsembleLinear,
    EnsembleBatchNorm,
    be_layers,
    convert_to_batchensemble,
    factorize_ensemble,
    members_to_batch_major,
    repeat_members,
    replace_with_plain,
    split_fast_parameters,
)

__all__ = [
    "BatchEnsembleConv2d",
    "BatchEnsembleLinear",
    "EnsembleBatchNorm",
    "be_layers",
    "convert_to_batchensemble",
    "factorize_ensemble",
    "members_to_batch_major",
    "repeat_members",
    "replace_with_plain",
    "split_fast_parameters",
]
