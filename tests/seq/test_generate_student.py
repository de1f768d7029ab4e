"""Real ``fairseq-generate`` uncertainty of a Proxy-EnD² (Dirichlet) student trained with ``ensemble_distillation``."""

from pathlib import Path
from typing import Dict, List

import pytest
import torch

from endist_seq.generation.parse import read_generate_output
from generate_fixtures import (  # noqa: F401  (proxy_student is a fixture)
    PROXY_STUDENT_OFFSET,
    parse_token_lines,
    proxy_student,
    results_file,
    run_generate_batch,
    uncertainty_args,
)
from seq_helpers import cached
from shared.metrics import ood_detection_scores
from shared.uncertainty import alphas_from_logits, dirichlet_uncertainty


@pytest.fixture(scope="module")
def stu(seq_cache_root: Path, toy_data_bin: Path, proxy_student: Path) -> Dict[str, Path]:
    """All generations of this module, run once per test run (shared by the xdist workers)."""
    names = ("test", "perm", "mean", "offset0")

    def build(root: Path) -> None:
        out = {name: root / name for name in names}
        runs = [
            uncertainty_args(toy_data_bin, [proxy_student], "test", out["test"]),
            uncertainty_args(toy_data_bin, [proxy_student], "test1", out["perm"]),
            uncertainty_args(toy_data_bin, [proxy_student], "test", out["mean"], "--dirichlet-mean-decoding"),
            uncertainty_args(toy_data_bin, [proxy_student], "test", out["offset0"], "--model-offset", "0"),
        ]
        run_generate_batch(runs, root)

    root = cached(seq_cache_root, "gen_student", build)
    return {**{name: root / name for name in names}, "root": root}


def test_student_is_read_as_dirichlet_with_the_training_offset(stu: Dict[str, Path]) -> None:
    log = (stu["root"] / "batch.log").read_text()
    assert f"uncertainty: dirichlet (1 member, model offset {PROXY_STUDENT_OFFSET:g})" in log
    assert "model offset 0)" in log  # --model-offset overrides the recorded value
    sents = read_generate_output(str(results_file(stu["test"], "test")))
    assert len(sents) == 200
    for sent in sents:
        m = sent.measures[0]
        assert m["tu_ep"] is None and m["ku_ep"] is None  # no sequence-level members
        assert m["ku_pe"] > 0 and m["pe_mutual_information"] > 0 and m["pe_rmi"] > 0


def _load_student(path: Path, data: Path):
    from fairseq import checkpoint_utils, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq import options

    parser = options.get_generation_parser(default_task="translation_uncertainty")
    args = options.parse_args_and_arch(parser, [str(data), "--user-dir", "endist_seq", "--task", "translation_uncertainty",
                                                "--path", str(path), "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    (model,), _ = checkpoint_utils.load_model_ensemble([str(path)], task=task)
    return model.eval(), task


def test_printed_token_measures_equal_closed_form_from_student_logits(stu: Dict[str, Path], proxy_student: Path, toy_data_bin: Path) -> None:
    """Each token's printed measures = dirichlet_uncertainty(exp(z) + offset) with z from the student run on
    that prefix alone (a separate forward per prefix, not the generator's batched teacher forcing)."""
    model, task = _load_student(proxy_student, toy_data_bin)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    path = results_file(stu["test"], "test")
    tokens = parse_token_lines(path)
    sources = {int(l.split("\t")[0][2:]): l.split("\t")[1] for l in path.read_text().splitlines() if l.startswith("S-")}
    hyps = {}
    for line in path.read_text().splitlines():
        if line.startswith("H-") and int(line.split("\t")[0][2:]) not in hyps:
            hyps[int(line.split("\t")[0][2:])] = line.split("\t")[2]
    checked = 0
    with torch.no_grad():
        for sid in sorted(tokens)[:12]:
            src = src_dict.encode_line(sources[sid], add_if_not_exist=False).long().unsqueeze(0)
            hyp = tgt_dict.encode_line(hyps[sid], add_if_not_exist=False).long()  # ends with </s>
            enc = model.encoder(src, src_lengths=torch.tensor([src.shape[1]]))
            printed = tokens[sid][0]
            assert len(printed["pe_total"]) == hyp.numel()
            for l in range(hyp.numel()):
                prefix = torch.cat([torch.tensor([tgt_dict.eos()]), hyp[:l]]).unsqueeze(0)
                z = model.decoder(prefix, encoder_out=enc)[0][0, -1]
                alphas = alphas_from_logits(z.double(), offset=PROXY_STUDENT_OFFSET)
                expected = dirichlet_uncertainty(alphas)
                for name, value in expected.items():
                    assert printed[f"pe_{name}"][l] == pytest.approx(value.item(), rel=1e-4, abs=1e-6), (sid, l, name)
                log_p_hat = (alphas[hyp[l]] / alphas.sum()).log().item()
                assert printed["pe_log_prob"][l] == pytest.approx(log_p_hat, rel=1e-4, abs=1e-6)
                checked += 1
    assert checked > 40


def test_dirichlet_mean_decoding_searches_with_alpha_over_alpha0(stu: Dict[str, Path]) -> None:
    default = read_generate_output(str(results_file(stu["test"], "test")))
    mean = read_generate_output(str(results_file(stu["mean"], "test")))
    # with mean decoding the search score is (1/L) Σ ln p̂(y_l) = −tu_pe; by default it is softmax(z)'s
    assert max(abs(s.measures[0]["score"] + s.measures[0]["tu_pe"]) for s in mean) < 1e-4
    assert max(abs(s.measures[0]["score"] + s.measures[0]["tu_pe"]) for s in default) > 1e-3


def test_student_knowledge_uncertainty_detects_permuted_source(stu: Dict[str, Path]) -> None:
    ind = read_generate_output(str(results_file(stu["test"], "test")))
    ood = read_generate_output(str(results_file(stu["perm"], "test1")))
    for measure in ("pe_rmi", "pe_mutual_information", "ku_pe"):
        auc = ood_detection_scores([s.measures[0][measure] for s in ind], [s.measures[0][measure] for s in ood])["roc_auc"]
        assert auc > 0.55, (measure, auc)
