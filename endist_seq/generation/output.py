"""Text lines and JSONL records for the uncertainty of generated hypotheses.

Line format (tab-separated; ``<id>`` is the sentence id of fairseq's ``H-<id>``
lines, values in nats, ``undefined`` where the model kind cannot provide a
measure; see ``README.md ("Uncertainty in fairseq-generate")``)::

    U-<id>   <rank>  score=<v>  tu_pe=<v>  ...          one per n-best hypothesis
    UT-<id>  <rank>  log_prob=<v1>,<v2>,..  total=..    token level, one value per target token (</s> included)
    UW-<id>  T=<t>   score=<v>  tu_pe=<v>  ...          n-best posterior-weighted aggregate

The JSONL file (one record per source sentence) is written to a temporary
file beside the target and renamed onto it only when the whole run has
finished; an interrupted run leaves no file under the requested name.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from endist_seq.generation import measures as M
from endist_seq.generation.scorer import SentenceUncertainty

UNDEFINED = "undefined"


def format_value(value: Optional[float]) -> str:
    """``%.6g`` formatting; ``undefined`` for ``None``."""
    return UNDEFINED if value is None else f"{value:.6g}"


def format_lines(sample_id: int, sentence: SentenceUncertainty) -> List[str]:
    """The ``U-``, ``UT-`` (per hypothesis) and ``UW-`` lines of one sentence."""
    lines: List[str] = []
    for hyp in sentence.hypotheses:
        seq = "\t".join(f"{name}={format_value(hyp.sequence[name])}" for name in M.SEQUENCE_MEASURES)
        lines.append(f"U-{sample_id}\t{hyp.rank}\t{seq}")
        tok = "\t".join(
            f"{name}={UNDEFINED if values is None else ','.join(format_value(v) for v in values)}"
            for name, values in hyp.token.items()
        )
        lines.append(f"UT-{sample_id}\t{hyp.rank}\t{tok}")
    if sentence.hypotheses:
        agg = "\t".join(f"{name}={format_value(sentence.weighted[name])}" for name in M.SEQUENCE_MEASURES)
        lines.append(f"UW-{sample_id}\tT={sentence.temperature:g}\t{agg}")
    return lines


def _json_number(value: Optional[float]) -> Any:
    if value is None or math.isfinite(value):
        return value
    return str(value)  # "inf", "-inf", "nan": keep the file strict JSON


def sentence_record(
    sample_id: int,
    sentence: SentenceUncertainty,
    texts: Sequence[str],
    reference: Optional[str] = None,
) -> Dict[str, Any]:
    """JSON-serialisable record of one sentence (``texts[r]`` = tokenised string of rank r)."""
    return {
        "id": sample_id,
        "model": sentence.kind,
        "members": sentence.num_members,
        "undefined": sorted(M.undefined_sequence_measures(sentence.kind)),
        "reference": reference,
        "nbest_temperature": sentence.temperature,
        "hypotheses": [
            {
                "rank": hyp.rank,
                "text": texts[k] if k < len(texts) else None,
                "tokens": hyp.tokens,
                "score": _json_number(hyp.score),
                "sequence": {name: _json_number(v) for name, v in hyp.sequence.items()},
                "token": {
                    name: None if values is None else [_json_number(v) for v in values]
                    for name, values in hyp.token.items()
                },
            }
            for k, hyp in enumerate(sentence.hypotheses)
        ],
        "weighted": {name: _json_number(v) for name, v in sentence.weighted.items()},
    }


def check_output_path(path: str, flag: str) -> None:
    """Raise ``ValueError`` naming ``flag`` unless ``path`` can be created as a file."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{flag} {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a directory, expected a file name")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"{flag} {path}: directory {directory} is not writable")


class AtomicJsonlWriter:
    """Appends JSON lines to ``<dir>/.<name>.<random>.partial``; :meth:`commit` renames it to ``path``.

    If the process ends without :meth:`commit` (crash, Ctrl-C), the partial file is
    removed at interpreter exit, so no half-written file ever appears under ``path``.
    """

    def __init__(self, path: str, flag: str = "--uncertainty-jsonl") -> None:
        check_output_path(path, flag)
        self.path = os.path.abspath(path)
        directory = os.path.dirname(self.path)
        fd, self.tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(self.path)}.", suffix=".partial")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the final file normal permissions
        self._handle: Optional[TextIO] = os.fdopen(fd, "w", encoding="utf-8")
        self.committed = False
        atexit.register(self.abort)

    def write(self, record: Dict[str, Any]) -> None:
        if self._handle is None:
            raise RuntimeError(f"JSONL output {self.path} is already closed")
        self._handle.write(json.dumps(record, allow_nan=False) + "\n")

    def commit(self) -> None:
        """Flush, fsync and atomically rename onto the final path (idempotent)."""
        if self._handle is None:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        os.replace(self.tmp_path, self.path)
        self.committed = True

    def abort(self) -> None:
        """Discard the partial file (no-op after :meth:`commit`)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if not self.committed and os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)


class UncertaintyReporter:
    """Collects a batch's results and writes them when fairseq has printed that batch.

    fairseq-generate prints a batch's ``S-/T-/H-/D-/P-`` lines after
    ``task.inference_step`` returns; the task calls :meth:`flush` when the next batch
    is requested (and :meth:`close` when the iterator is exhausted), so the ``U-``
    lines of a batch follow its ``H-`` lines in the same output stream.
    """

    def __init__(self, stream: Optional[TextIO], jsonl: Optional[AtomicJsonlWriter]) -> None:
        self.stream = stream
        self.jsonl = jsonl
        self._pending: List[tuple] = []
        self.closed = False

    def add_batch(
        self,
        sample_ids: Sequence[int],
        sentences: Sequence[SentenceUncertainty],
        strings: Callable[[], Tuple[Sequence[Sequence[str]], Sequence[Optional[str]]]],
    ) -> None:
        """Keep a batch's results; :meth:`flush` formats and writes them (outside fairseq's
        generation timer, like fairseq's own printing). ``strings()`` returns the hypothesis
        texts per sentence and the references, for the JSONL records (called only if needed)."""
        self._pending.append((list(sample_ids), list(sentences), strings))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for sample_ids, sentences, strings in pending:
            if self.jsonl is not None:
                texts, references = strings()
                for k, (sid, sent) in enumerate(zip(sample_ids, sentences)):
                    self.jsonl.write(sentence_record(sid, sent, texts[k], references[k]))
            if self.stream is not None:
                lines: List[str] = []
                for sid, sent in zip(sample_ids, sentences):
                    lines.extend(format_lines(sid, sent))
                self.stream.write("".join(line + "\n" for line in lines))
                self.stream.flush()

    def close(self) -> None:
        """Flush the last batch and commit the JSONL file (idempotent)."""
        if self.closed:
            return
        self.flush()
        if self.jsonl is not None:
            self.jsonl.commit()
        self.closed = True
