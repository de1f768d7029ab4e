"""Leftover ``.NAME.*.partial`` files (issue 11.10), one-line errors (11.9), and the audit of unpickling (11.2), seq side."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from endist_seq.errors import FlagError, endist_excepthook, install_excepthook
from endist_seq.eval_cli import main as eval_main
from endist_seq.generation.output import AtomicJsonlWriter, _host_tag
from seq_helpers import REPO


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_next_writer_removes_only_its_own_stale_partials(tmp_path: Path) -> None:
    host, dead = _host_tag(), _dead_pid()
    stale = tmp_path / f".out.jsonl.{host}-{dead}.k3j_9x.partial"  # left by a kill -9
    live = tmp_path / f".out.jsonl.{host}-{os.getpid()}.abc123.partial"  # a writer still running
    other_target = tmp_path / f".other.jsonl.{host}-{dead}.abc123.partial"
    other_host = tmp_path / f".out.jsonl.elsewhere-{dead}.abc123.partial"
    not_ours = tmp_path / ".out.jsonl.notes.partial"
    for path in (stale, live, other_target, other_host, not_ours):
        path.write_text("half a record")
    writer = AtomicJsonlWriter(str(tmp_path / "out.jsonl"))
    assert not stale.exists()
    assert live.exists() and other_target.exists() and other_host.exists() and not_ours.exists()
    assert re.fullmatch(rf"\.out\.jsonl\.{re.escape(host)}-{os.getpid()}\.[a-z0-9_]+\.partial", Path(writer.tmp_path).name)
    writer.write({"id": 0})
    writer.commit()
    assert (tmp_path / "out.jsonl").read_text() == '{"id": 0}\n'


def test_seq_eval_on_a_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    binary = tmp_path / "generate-test.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    assert eval_main(["--out-dir", str(tmp_path / "report"), "--id", str(binary)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(binary) in err and "not a text file" in err


def test_excepthook_prints_endist_errors_in_one_line_and_passes_others_on(monkeypatch, capsys) -> None:
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: seen.append(exc[0]))
    install_excepthook()
    assert sys.excepthook is endist_excepthook
    endist_excepthook(FlagError, FlagError("--init-temp must be\na finite number"), None)
    assert capsys.readouterr().err == "error: --init-temp must be a finite number\n"
    endist_excepthook(KeyError, KeyError("x"), None)
    assert seen == [KeyError]


def test_no_unrestricted_unpickling_in_seq_code() -> None:
    """Audit: no pickle, no weights_only=False, no np.load(allow_pickle=True) in endist_seq or scripts/seq."""
    pattern = re.compile(r"\bpickle\.loads?\(|weights_only\s*=\s*False|allow_pickle\s*=\s*True|\bimport pickle\b")
    offenders = []
    for folder in ("endist_seq", "scripts/seq", "tests/seq"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".sh") and path.is_file() and path != Path(__file__).resolve():
                for lineno, line in enumerate(path.read_text().splitlines(), 1):
                    if pattern.search(line):
                        offenders.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert not offenders, offenders


def test_refuses_to_run_when_torch_would_unpickle_code(monkeypatch) -> None:
    """fairseq's own ``torch.load`` calls use torch's default, weights-only unless this variable is set."""
    from endist_seq.checkpoint_safety import UnsafeCheckpointError, require_weights_only_loading

    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    require_weights_only_loading()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeCheckpointError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set"):
        require_weights_only_loading()
