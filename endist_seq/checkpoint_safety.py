"""Checks on a fairseq checkpoint before endist lets fairseq build a model from it.

``torch.load(weights_only=True)`` stops code hidden in the pickle, but fairseq
0.12 itself ``eval()``s some *string* fields of a checkpoint's configuration when
it builds the model (e.g. ``utils.eval_str_list(cfg.adaptive_softmax_cutoff)``
in ``TransformerDecoder``), and a few model types load further checkpoint files
named in their configuration. A crafted checkpoint could therefore run code
through a config field. :func:`check_checkpoint_config` refuses such a
checkpoint before any model is built:

* every field named in :data:`EVALUATED_FIELDS` (the names fairseq 0.12 passes to
  ``eval``, ``utils.eval_str_list``, ``utils.eval_str_dict`` or
  ``utils.eval_bool``, found by grepping the installed fairseq), anywhere in the
  configuration (``cfg.model``, ``cfg.task``, ``cfg.optimizer``, nested configs such
  as ``w2v_args``, or the legacy ``args`` namespace), must — when it is a string —
  be a *literal*: numbers, strings, ``True/False/None``, lists, tuples and dicts of
  those, plus ``+`` and ``*`` between them (fconv's ``"[(512, 3)] * 20"``), with a
  repeat count of at most :data:`MAX_REPEAT`. Names, calls, attributes,
  subscripts, lambdas, comprehensions and omegaconf interpolations are refused.
* a field in :data:`NESTED_CHECKPOINT_FIELDS` (a path fairseq would load as one
  more checkpoint while building the model, unchecked) must be empty.

:func:`check_checkpoint_dictionaries` then verifies that the checkpoint was
trained with the same source/target dictionaries (symbols, in order) as the
data it is used with.

Where it is called: :func:`endist_seq.teachers.load_teacher` (``--ensemble-paths``)
and :meth:`endist_seq.tasks.translation_uncertainty.TranslationUncertaintyTask.build_model`
(every ``--path`` checkpoint of ``fairseq-generate``, checked before the first
model is built). What it cannot protect: fairseq used without endist's tasks
(e.g. ``fairseq-generate --task translation``), and the fields of fairseq model
types that read further files through options not listed here.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from endist_seq.errors import EndistUserError, one_line

logger = logging.getLogger(__name__)

#: config field names whose string value fairseq 0.12 passes to eval / eval_str_list / eval_str_dict / eval_bool
EVALUATED_FIELDS = frozenset(
    {
        # models (transformer, lstm, lightconv, fconv, fconv_self_att, *_lm, wav2vec/hubert, s2t, pipeline-parallel)
        "adaptive_softmax_cutoff", "adaptive_input_cutoff", "character_filters",
        "encoder_layers", "decoder_layers", "encoder_attention", "decoder_attention", "self_attention",
        "project_input", "gated_attention", "downsample", "pretrained",
        "conv_feature_layers", "conv_aggregator_layers", "xformers_att_config",
        "pipeline_balance", "pipeline_devices", "pipeline_encoder_balance", "pipeline_encoder_devices",
        "pipeline_decoder_balance", "pipeline_decoder_devices",
        "decoder_glu", "encoder_glu", "weight_softmax",
        # optimizers, criterions, tasks, data
        "adam_betas", "adamax_betas", "lamb_betas", "adafactor_eps", "wer_args",
        "left_pad_source", "left_pad_target", "feature_encoder_spec", "model_overrides",
    }
)

#: config fields naming another checkpoint that fairseq loads while building the model
NESTED_CHECKPOINT_FIELDS = frozenset(
    {
        "w2v_path", "seq2seq_path", "pretrained_xlm_checkpoint", "pretrained_checkpoint",
        "pretrained_mlm_checkpoint", "load_pretrained_encoder_from", "load_pretrained_decoder_from",
    }
)

#: largest repeat count accepted in ``[...] * n`` (fconv uses 20)
MAX_REPEAT = 10_000
_MAX_TEXT = 10_000


class UnsafeCheckpointError(EndistUserError):
    """A checkpoint's configuration holds a value fairseq would ``eval()`` that is not a plain literal."""


class CheckpointDictionaryError(EndistUserError):
    """A checkpoint was trained with other dictionaries than the data it is used with (or they cannot be found)."""


# ---------------------------------------------------------------- literal check
_LITERAL_NODES = (ast.Expression, ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Load)


def _constant_int(node: ast.AST) -> Optional[int]:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def is_safe_literal(text: str) -> bool:
    """Whether ``eval(text)`` can only build numbers/strings/bools/None and lists, tuples, dicts of them."""
    if len(text) > _MAX_TEXT:
        return False
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, _LITERAL_NODES):
            if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
                return False
            continue
        if isinstance(node, (ast.UnaryOp,)) and isinstance(node.op, (ast.USub, ast.UAdd)):
            continue
        if isinstance(node, (ast.USub, ast.UAdd, ast.Add, ast.Mult)):
            continue
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            continue
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            counts = [c for c in (_constant_int(node.left), _constant_int(node.right)) if c is not None]
            if counts and all(abs(c) <= MAX_REPEAT for c in counts):
                continue
        return False
    return True


# ---------------------------------------------------------------- config walk
def _children(node: Any) -> Iterator[Tuple[str, Any]]:
    if isinstance(node, argparse.Namespace):
        yield from vars(node).items()
    elif isinstance(node, Mapping):
        yield from ((str(k), v) for k, v in node.items())
    elif isinstance(node, (list, tuple)):
        yield from ((f"[{i}]", v) for i, v in enumerate(node))


def _plain(cfg: Any) -> Any:
    """An omegaconf config as plain containers, interpolations left unresolved (``"${...}"`` strings)."""
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - fairseq always brings omegaconf
        return cfg
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    return cfg


def _walk(node: Any, prefix: str, depth: int = 0) -> Iterator[Tuple[str, str, Any]]:
    """``(dotted path, field name, value)`` of every leaf and container under ``node``."""
    if depth > 20:
        return
    node = _plain(node)
    for key, value in _children(node):
        path = f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"
        yield path, key, value
        yield from _walk(value, path, depth + 1)


def check_checkpoint_config(path: str, state: Mapping[str, Any], flag: str) -> None:
    """Refuse ``state`` (a loaded checkpoint) if a config field fairseq evaluates is not a literal.

    Raises:
        UnsafeCheckpointError: naming ``flag``, the checkpoint and the field.
    """
    for root in ("cfg", "args"):
        if state.get(root) is None:
            continue
        for dotted, name, value in _walk(state[root], root):
            if name in EVALUATED_FIELDS and isinstance(value, str) and not is_safe_literal(value):
                raise UnsafeCheckpointError(
                    f"{flag}: {_noun(flag)} {path}: config field {dotted} = {one_line(repr(value))[:100]} is not a "
                    f"literal list/number (fairseq would eval() it); refusing to build a model from it"
                )
            if name in NESTED_CHECKPOINT_FIELDS and isinstance(value, str) and value.strip():
                raise UnsafeCheckpointError(
                    f"{flag}: {_noun(flag)} {path}: config field {dotted} = {one_line(repr(value))[:100]} names another "
                    f"checkpoint that fairseq would load unchecked; endist does not load such models"
                )


def check_model_config(label: str, model_cfg: Any, flag: str) -> None:
    """:func:`check_checkpoint_config` for a model config alone (what ``task.build_model`` receives)."""
    check_checkpoint_config(label, {"cfg": {"model": model_cfg}}, flag)


# ---------------------------------------------------------------- dictionaries
def _get(node: Any, key: str) -> Any:
    node = _plain(node)
    if isinstance(node, Mapping):
        return node.get(key)
    return getattr(node, key, None)


def _task_section(state: Mapping[str, Any]) -> Any:
    cfg = state.get("cfg")
    if cfg is not None and _get(cfg, "task") is not None:
        return _get(cfg, "task")
    return state.get("args")  # legacy checkpoints: one flat namespace


def first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    """Where two symbol lists first differ, for an error message."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at index {i}: {x!r} vs {y!r}"
    return f"sizes {len(a)} vs {len(b)}"


def trained_dictionary_paths(state: Mapping[str, Any]) -> Tuple[Optional[str], List[Optional[str]]]:
    """``(data dir, [source dict path, target dict path])`` the checkpoint was trained with (None: unknown).

    The languages come from ``task.source_lang/target_lang``, or — when they are
    ``None``, as fairseq allows — are inferred from the data directory's file names
    with fairseq's own ``data_utils.infer_language_pair`` (what ``TranslationTask`` does).
    """
    task_cfg = _task_section(state)
    data = _get(task_cfg, "data") if task_cfg is not None else None
    if not data or not isinstance(data, str):
        return None, [None, None]
    first_dir = data.split(":")[0]
    src, tgt = _get(task_cfg, "source_lang"), _get(task_cfg, "target_lang")
    if (src is None or tgt is None) and os.path.isdir(first_dir):
        from fairseq.data import data_utils

        src, tgt = data_utils.infer_language_pair(first_dir)
    if src is None or tgt is None:
        return first_dir, [None, None]
    return first_dir, [os.path.join(first_dir, f"dict.{src}.txt"), os.path.join(first_dir, f"dict.{tgt}.txt")]


def _noun(flag: str) -> str:
    return "teacher checkpoint" if flag == "--ensemble-paths" else "checkpoint"


def _symbols(path: str) -> List[str]:
    from fairseq.data import Dictionary

    return list(Dictionary.load(path).symbols)


def check_checkpoint_dictionaries(
    path: str, state: Mapping[str, Any], task: Any, flag: str, allow_unverified: bool = False
) -> None:
    """The checkpoint's training dictionaries must equal ``task``'s source/target dictionaries, symbol by symbol.

    Also checks the embedding sizes in ``state["model"]``. When the dictionary files
    the checkpoint was trained with cannot be found, raises (one line naming the
    checkpoint and where it looked) unless ``allow_unverified``, which logs that
    line as a warning and keeps only the size check.

    Raises:
        CheckpointDictionaryError
    """
    sides = (("source", task.source_dictionary, "encoder"), ("target", task.target_dictionary, "decoder"))
    data_dir, dict_paths = trained_dictionary_paths(state)
    for (side, dictionary, _), dict_path in zip(sides, dict_paths):
        if dict_path is None or not os.path.isfile(dict_path):
            where = dict_path or (f"{data_dir} (no language pair found there)" if data_dir else "(no task.data recorded)")
            message = (
                f"{flag}: {_noun(flag)} {path}: cannot find the {side} dictionary it was trained with: {where}; "
                f"its symbols cannot be compared with the data's"
            )
            if not allow_unverified:
                raise CheckpointDictionaryError(message + " (--allow-unverified-dictionaries accepts it on matching sizes)")
            logger.warning("%s; --allow-unverified-dictionaries: checking sizes only", message)
            continue
        symbols = _symbols(dict_path)
        if symbols != list(dictionary.symbols):
            raise CheckpointDictionaryError(
                f"{flag}: {_noun(flag)} {path} was trained with a different {side} dictionary "
                f"({dict_path}, {len(symbols)} symbols) than the data ({len(dictionary)} symbols; "
                f"{first_difference(symbols, list(dictionary.symbols))})"
            )
    model_state: Dict[str, Any] = state.get("model") or {}
    for side, dictionary, module in sides:
        key = f"{module}.embed_tokens.weight"
        if key in model_state and model_state[key].shape[0] != len(dictionary):
            raise CheckpointDictionaryError(
                f"{flag}: {_noun(flag)} {path} does not match the data's {side} dictionary: "
                f"its {module} embedding has {model_state[key].shape[0]} rows but the {side} dictionary "
                f"has {len(dictionary)} symbols (models must be trained on the same binarised dictionaries)"
            )


#: environment variables that make torch.load unpickle arbitrary objects by default
_UNSAFE_TORCH_ENV = ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",)


def require_weights_only_loading() -> None:
    """Refuse to run when the environment makes fairseq's ``torch.load`` calls unpickle arbitrary code."""
    for name in _UNSAFE_TORCH_ENV:
        if os.environ.get(name, "").strip().lower() not in ("", "0", "false"):
            raise UnsafeCheckpointError(
                f"environment variable {name} is set: torch.load would unpickle checkpoints with code execution; "
                f"unset it (endist loads checkpoints weights-only)"
            )


def peek_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint's pickled state, read weights-only and memory-mapped (tensors are not read into memory)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):  # legacy (non-zip) format cannot be memory-mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=True)
