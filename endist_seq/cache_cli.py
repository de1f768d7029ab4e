"""``endist-seq-cache``: run a teacher ensemble once over fairseq splits and write a teacher cache.

Usage::

    endist-seq-cache DATA_BIN --ensemble-paths t1.pt,t2.pt --topk 64 --out CACHE_DIR \\
        [--subset train,valid] [--temperatures 1,1.25,1.5,2,3,4,6,10] [--value-dtype fp32|fp16] \\
        [--central-smoothing 1e-4] [--chunk-sentences 512] [--batch-size 64 | --max-tokens 4096] [--cpu | --fp16] \\
        [--distributed-world-size W --distributed-rank R [--distributed-init-method tcp://HOST:PORT]] \\
        [other fairseq dataset/task flags: --source-lang, --target-lang, --dataset-impl, ...]

then ``fairseq-train DATA_BIN --task ensemble_distillation --teacher-cache CACHE_DIR ...`` trains with no
teacher loaded. Teachers are loaded weights-only and checked against the data's dictionaries
(:func:`endist_seq.teachers.load_teacher`). Format and guarantees: :mod:`endist_seq.teacher_cache`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

PROG = "endist-seq-cache"


def _parse(argv: Sequence[str]):
    from fairseq import options

    import endist_seq
    from shared.teacher_cache import DEFAULT_SMOOTHING, DEFAULT_TEMPERATURES

    argv = list(argv)
    if "--task" not in argv:
        argv += ["--task", "translation_uncertainty"]
    if "--user-dir" not in argv:
        argv += ["--user-dir", os.path.dirname(os.path.abspath(endist_seq.__file__))]
    parser = options.get_generation_parser(default_task="translation_uncertainty")
    parser.prog = PROG
    group = parser.add_argument_group("teacher cache")
    group.add_argument("--ensemble-paths", required=True, help="comma-separated teacher checkpoints")
    group.add_argument("--topk", type=int, required=True, help="classes kept per token (top-k of the ensemble mean)")
    group.add_argument("--out", required=True, help="cache directory (one sub-directory per subset)")
    group.add_argument("--subset", default="train,valid", help="comma-separated fairseq splits (default: train,valid)")
    group.add_argument("--temperatures", default=",".join(f"{t:g}" for t in DEFAULT_TEMPERATURES),
                       help="grid of distillation temperatures the cache supports exactly (default: %(default)s)")
    group.add_argument("--value-dtype", default="fp32", choices=("fp32", "fp16"), help="dtype of the cached ln-values")
    group.add_argument("--central-smoothing", type=float, default=DEFAULT_SMOOTHING,
                       help="EnD2 central smoothing baked into the tail term (the criterion's --central-smoothing)")
    group.add_argument("--chunk-sentences", type=int, default=512, help="sentences per chunk (the unit of resuming)")
    return options.parse_args_and_arch(parser, argv)


class _CliError(Exception):
    pass


def _floats(text: str, flag: str) -> tuple:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise _CliError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def run(argv: Sequence[str]) -> int:
    import torch
    from fairseq import tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from endist_seq.teacher_cache.store import sha256_file
    from endist_seq.teachers import TeacherEnsemble, split_paths
    from shared.teacher_cache import CacheLayout, bytes_per_position, check_layout

    args = _parse(argv)
    cfg = convert_namespace_to_omegaconf(args)
    utils.import_user_module(cfg.common)
    paths = split_paths(args.ensemble_paths)
    if not paths:
        raise _CliError("--ensemble-paths: at least one teacher checkpoint is required")
    if args.chunk_sentences < 1:
        raise _CliError(f"--chunk-sentences must be >= 1, got {args.chunk_sentences}")
    subsets = [s.strip() for s in args.subset.split(",") if s.strip()]
    if not subsets:
        raise _CliError("--subset: no split named")
    dist = cfg.distributed_training
    world, rank = int(dist.distributed_world_size or 1), int(dist.distributed_rank or 0)
    if not 0 <= rank < world:
        raise _CliError(f"--distributed-rank {rank} is not in [0, --distributed-world-size {world})")
    task = tasks.setup_task(cfg.task)
    vocab = len(task.target_dictionary)
    try:
        layout = check_layout(CacheLayout(vocab, args.topk, _floats(args.temperatures, "--temperatures"), args.central_smoothing))
    except ValueError as err:
        raise _CliError(f"--topk/--temperatures/--central-smoothing: {err}") from None
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    device = torch.device("cuda", int(dist.device_id or 0)) if use_cuda else torch.device("cpu")
    barrier = None
    if world > 1 and dist.distributed_init_method:
        import torch.distributed as tdist

        tdist.init_process_group("nccl" if use_cuda else "gloo", init_method=dist.distributed_init_method,
                                 world_size=world, rank=rank)
        if tdist.get_world_size() != world or tdist.get_rank() != rank:
            raise _CliError(f"torch.distributed reports rank {tdist.get_rank()} of {tdist.get_world_size()}, "
                            f"expected {rank} of {world}")
        print(f"{PROG}: torch.distributed {tdist.get_backend()}: rank {tdist.get_rank()} of world size "
              f"{tdist.get_world_size()}", file=sys.stderr)
        barrier = tdist.barrier
    try:
        half = torch.float16 if cfg.common.fp16 else torch.bfloat16 if cfg.common.bf16 else None  # --fp16 / --bf16
        teachers = TeacherEnsemble.load(paths, task, dtype=half if use_cuda else None).to(device)
        hashes = [sha256_file(p) for p in paths]
        batch_size = int(cfg.dataset.batch_size or 64)
        max_tokens = int(cfg.dataset.max_tokens) if cfg.dataset.max_tokens else None
        out = Path(args.out)
        size = bytes_per_position(layout.topk, len(layout.temperatures),
                                  torch.float16 if args.value_dtype == "fp16" else torch.float32)
        print(f"{PROG}: {len(paths)} teachers, V = {vocab}, k = {layout.topk}, {len(layout.temperatures)} temperatures, "
              f"{size} bytes per token; rank {rank} of {world} on {device}", file=sys.stderr)
        _build_all(task, subsets, teachers, paths, hashes, out, layout, args, batch_size, max_tokens, device, rank, world,
                   barrier)
    finally:
        if barrier is not None:
            import torch.distributed as tdist

            tdist.destroy_process_group()
    return 0


def _build_all(task, subsets, teachers, paths, hashes, out, layout, args, batch_size, max_tokens, device, rank, world,
               barrier) -> None:
    import time

    from endist_seq.teacher_cache.build import build_subset

    for subset in subsets:
        task.load_dataset(subset, combine=False, epoch=1)
        start = time.perf_counter()
        manifest = build_subset(task, subset, teachers, paths, hashes, out, layout, args.value_dtype,
                                args.chunk_sentences, batch_size, max_tokens, device, rank, world, barrier)
        if manifest is not None:
            print(f"{PROG}: {subset}: {manifest['num_sentences']} sentences, {manifest['num_tokens']} tokens -> "
                  f"{out / subset} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from endist_seq.errors import EndistUserError, one_line

    logging.basicConfig(level=logging.INFO, format="%(name)s | %(message)s", stream=sys.stderr)
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (_CliError, EndistUserError) as err:
        print(f"{PROG}: error: {one_line(str(err))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
