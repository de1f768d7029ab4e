"""Text lines and JSONL records for the uncertainty of generated hypotheses.

Line format (tab-separated; ``<id>`` is the sentence id of fairseq's ``H-<id>``
lines, values in nats, ``undefined`` where the model kind cannot provide a
measure; see ``README.md ("Uncertainty in fairseq-generate")``)::

    U-<id>   <rank>  score=<v>  tu_pe=<v>  ...          one per n-best hypothesis
    UT-<id>  <rank>  log_prob=<v1>,<v2>,..  total=..    token level, one value per target token (</s> included)
    UW-<id>  <weights>,T=<t>   score=<v>  tu_pe=<v>  ...   n-best weighted aggregate (weights: logprob, score, uniform)

The JSONL file (one record per source sentence) is written to a temporary
file beside the target and renamed onto it only when the whole run has
finished; an interrupted run leaves no file under the requested name.
The temporary file is ``.<name>.<host>-<pid>.<random>.partial``; a run killed
with SIGKILL cannot remove it, so the next run writing ``<name>`` removes the
partial files of ``<name>`` whose process (same host) is no longer alive.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import math
import os
import re
import socket
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from endist_seq.errors import FlagError
from endist_seq.generation import measures as M
from endist_seq.generation.scorer import SentenceUncertainty

from endist_seq.generation.measure_names import UNDEFINED  # noqa: E402,F401  (re-exported)


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
        lines.append(f"UW-{sample_id}\t{sentence.weighting},T={sentence.temperature:g}\t{agg}")
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
        "nbest_weights": sentence.weighting,
        "hypotheses": [
            {
                "rank": hyp.rank,
                "text": texts[k] if k < len(texts) else None,
                "tokens": hyp.tokens,
                "score": _json_number(hyp.score),
                "log_prob": _json_number(hyp.log_prob),
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
    """Raise :class:`~endist_seq.errors.FlagError` (a ``ValueError``) naming ``flag`` unless ``path`` can be created as a file."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FlagError(f"{flag} {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise FlagError(f"{flag} {path}: is a directory, expected a file name")
    if not os.access(directory, os.W_OK):
        raise FlagError(f"{flag} {path}: directory {directory} is not writable")


logger = logging.getLogger(__name__)


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_partials(path: str) -> List[str]:
    """Remove ``.<name>.<host>-<pid>.<random>.partial`` files of ``path`` left by dead processes of this host.

    Only this writer's own name pattern for this very target, only files whose
    process is gone (a live writer's partial file is kept). Returns the removed paths.
    """
    directory, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(rf"^\.{re.escape(name)}\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.partial$")
    host = _host_tag()
    removed = []
    for entry in os.listdir(directory):
        match = pattern.match(entry)
        if not match or match.group("host") != host or _pid_alive(int(match.group("pid"))):
            continue
        stale = os.path.join(directory, entry)
        try:
            os.remove(stale)
        except FileNotFoundError:  # removed by a concurrent run
            continue
        removed.append(stale)
        logger.info("removed %s, left by an interrupted run (process %s)", stale, match.group("pid"))
    return removed


class AtomicJsonlWriter:
    """Appends JSON lines to ``<dir>/.<name>.<host>-<pid>.<random>.partial``; :meth:`commit` renames it to ``path``.

    If the process ends without :meth:`commit` (crash, Ctrl-C), the partial file is
    removed at interpreter exit, so no half-written file ever appears under ``path``;
    what a SIGKILL leaves behind is removed by the next writer of ``path``
    (:func:`remove_stale_partials`).
    """

    def __init__(self, path: str, flag: str = "--uncertainty-jsonl") -> None:
        check_output_path(path, flag)
        self.path = os.path.abspath(path)
        directory = os.path.dirname(self.path)
        remove_stale_partials(self.path)
        fd, self.tmp_path = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(self.path)}.{_host_tag()}-{os.getpid()}.", suffix=".partial"
        )
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

    def write_text(self, text: str) -> None:
        """Append raw text (used for ``--uncertainty-output FILE``)."""
        if self._handle is None:
            raise RuntimeError(f"output {self.path} is already closed")
        self._handle.write(text)

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


def _open_fds() -> List[int]:
    if os.path.isdir("/proc/self/fd"):
        return sorted(int(name) for name in os.listdir("/proc/self/fd") if name.isdigit())
    return list(range(3, min(int(os.sysconf("SC_OPEN_MAX")), 65536)))  # pragma: no cover - non-Linux POSIX


class SharedOutputFile:
    """A text stream that appends to a file another part of this process holds open for writing.

    fairseq-generate writes its ``--results-path`` file through its own handle; a
    second, independent ``open()`` would have its own file offset, so the two
    writers would overwrite each other. :meth:`of_open_file` instead duplicates
    (``os.dup``) the descriptor that is already open on that file (same
    ``st_dev``/``st_ino``, opened for writing): the duplicate shares the open file
    description and hence the offset, and lines written between fairseq's
    (line-buffered, hence flushed) lines land after them in order.
    """

    def __init__(self, fd: int, path: str) -> None:
        self.path = path
        self._handle: Optional[TextIO] = os.fdopen(fd, "w", encoding="utf-8")

    @classmethod
    def of_open_file(cls, path: str, flag: str) -> "SharedOutputFile":
        try:
            target = os.stat(path)
        except OSError as err:
            raise FlagError(f"{flag}: output file {path} is not there ({err.strerror}); pass --uncertainty-output FILE") from None
        found = []
        for fd in _open_fds():
            try:
                info = os.fstat(fd)
                mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino) and mode in (os.O_WRONLY, os.O_RDWR):
                found.append(fd)
        if len(found) != 1:
            raise FlagError(
                f"{flag}: expected fairseq-generate to hold its output file {path} open once, found {len(found)} "
                f"open descriptor(s); pass --uncertainty-output FILE"
            )
        return cls(os.dup(found[0]), path)

    def write(self, text: str) -> None:
        if self._handle is None:
            raise RuntimeError(f"output {self.path} is already closed")
        self._handle.write(text)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        """Close the duplicate descriptor (fairseq's own stays open)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class UncertaintyReporter:
    """Collects a batch's results and writes them when fairseq has printed that batch.

    fairseq-generate prints a batch's ``S-/T-/H-/D-/P-`` lines after
    ``task.inference_step`` returns; the task calls :meth:`flush` when the next batch
    is requested (and :meth:`close` when the iterator is exhausted), so the ``U-``
    lines of a batch follow its ``H-`` lines in the same output stream.
    """

    def __init__(self, stream: Optional[Any], jsonl: Optional[AtomicJsonlWriter]) -> None:
        """``stream``: a text stream (stdout, fairseq's results file) or an :class:`AtomicJsonlWriter`
        used as a text file (``--uncertainty-output FILE``, committed by :meth:`close`)."""
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
                text = "".join(line + "\n" for line in lines)
                if isinstance(self.stream, AtomicJsonlWriter):  # --uncertainty-output FILE
                    self.stream.write_text(text)
                else:
                    self.stream.write(text)
                    self.stream.flush()

    def close(self) -> None:
        """Flush the last batch and commit the JSONL file (idempotent)."""
        if self.closed:
            return
        self.flush()
        if isinstance(self.stream, AtomicJsonlWriter):
            self.stream.commit()
        elif isinstance(self.stream, SharedOutputFile):
            self.stream.close()
        if self.jsonl is not None:
            self.jsonl.commit()
        self.closed = True
