"""Real ``fairseq-generate`` with ``--task translation_uncertainty``: ensembles and a single model.

One batch process runs every uncertainty generation of this module (see
``generate_batch.py``); the plain-fairseq reference run uses the real
``fairseq-generate`` executable.
"""

import json
import math
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from endist_seq.eval_cli import main as eval_main
from endist_seq.generation.parse import read_generate_output
from generate_fixtures import GEN_FLAGS, parse_token_lines, results_file, run_generate_batch, uncertainty_args
from seq_helpers import cached, check, run, tool
from shared.metrics import ood_detection_scores

LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def ens(seq_cache_root: Path, toy_data_bin: Path, teacher_checkpoints: List[Path]) -> Dict[str, Path]:
    """All generations of this module, run once per test run (shared by the xdist workers)."""
    a, b = teacher_checkpoints[:2]
    names = ("ab", "aa", "ab_perm", "single_ref", "bad_jsonl", "plain", "ab_proxy", "ab_ep", "ab_forced")

    def build(root: Path) -> None:
        out = {name: root / name for name in names}
        runs = [
            uncertainty_args(toy_data_bin, [a, b], "test", out["ab"], "--nbest", "2", "--nbest-temperature", "0.7",
                             "--uncertainty-jsonl", str(root / "ab.jsonl")),
            uncertainty_args(toy_data_bin, [a, b], "test", out["ab_forced"], "--nbest", "2", "--nbest-temperature", "0.7",
                             "--uncertainty-record-mb", "0"),
            uncertainty_args(toy_data_bin, [a, a], "test", out["aa"]),
            uncertainty_args(toy_data_bin, [a, b], "test", out["ab_proxy"], "--uncertainty-model", "proxy"),
            uncertainty_args(toy_data_bin, [a, b], "test", out["ab_ep"], "--ensemble-combination", "ep"),
            uncertainty_args(toy_data_bin, [a, b], "test1", out["ab_perm"]),
            uncertainty_args(toy_data_bin, [a], "test", out["single_ref"], "--score-reference"),
            {"args": uncertainty_args(toy_data_bin, [a, b], "test", out["bad_jsonl"], "--uncertainty-jsonl",
                                      str(root / "no_such_dir" / "x.jsonl")),
             "expect_error": "--uncertainty-jsonl"},
        ]
        run_generate_batch(runs, root)
        # the same ensemble and search through the plain fairseq-generate executable and task
        check(run([tool("fairseq-generate"), toy_data_bin, "--user-dir", "endist_seq", "--task", "translation",
                   "--path", f"{a}:{b}", "--gen-subset", "test", *GEN_FLAGS, "--nbest", "2",
                   "--results-path", out["plain"]]))

    root = cached(seq_cache_root, "gen_ensemble", build)
    return {**{name: root / name for name in names}, "root": root}


def _fairseq_lines(path: Path) -> List[str]:
    keep = ("S-", "T-", "H-", "D-", "P-")
    return [line for line in path.read_text().splitlines() if line.startswith(keep)]


def test_same_hypotheses_and_scores_as_plain_generate(ens: Dict[str, Path]) -> None:
    plain = _fairseq_lines(results_file(ens["plain"], "test"))
    ours = _fairseq_lines(results_file(ens["ab"], "test"))
    assert len(plain) > 1000 and ours == plain
    text = results_file(ens["ab"], "test").read_text()
    h_ids = sorted(int(line.split("\t")[0][2:]) for line in text.splitlines() if line.startswith("H-"))
    u_ids = sorted(int(line.split("\t")[0][2:]) for line in text.splitlines() if line.startswith("U-"))
    assert h_ids == u_ids and len(h_ids) == 2 * 200  # one U- line per printed hypothesis
    # the U- lines come before fairseq's final BLEU line, i.e. inside the output proper
    assert text.rindex("\nU") < text.index("Generate test with beam=")


def test_measures_from_the_search_states_equal_teacher_forcing(ens: Dict[str, Path]) -> None:
    """Default (the search's own decoder states) vs ``--uncertainty-record-mb 0`` (teacher forcing): the same lines
    up to float rounding, over the real toy batches (sentences finishing at different steps leave the batch)."""
    recorded, forced = (results_file(ens[name], "test").read_text().splitlines() for name in ("ab", "ab_forced"))
    assert _fairseq_lines(results_file(ens["ab"], "test")) == _fairseq_lines(results_file(ens["ab_forced"], "test"))
    pairs = [(x, y) for x, y in zip(recorded, forced) if x.startswith(("U-", "UT-", "UW-"))]
    assert len(pairs) == 2 * 200 * 2 + 200 and all(y.startswith(x.split("\t")[0] + "\t") for x, y in pairs)
    for x, y in pairs:
        for field_x, field_y in zip(x.split("\t")[2:], y.split("\t")[2:]):
            name, values = field_x.split("=")
            assert field_y.startswith(name + "=")
            got = [float(v) for v in values.split(",")]
            want = [float(v) for v in field_y.split("=")[1].split(",")]
            assert got == pytest.approx(want, rel=1e-3, abs=1e-5), (x.split("\t")[0], name)


def test_teacher_forced_scores_reproduce_the_search(ens: Dict[str, Path]) -> None:
    sents = read_generate_output(str(results_file(ens["ab"], "test")), require_references=True)
    h_scores: Dict[int, List[float]] = {}
    p_sums: Dict[int, List[float]] = {}
    for line in results_file(ens["ab"], "test").read_text().splitlines():
        if line.startswith("H-"):
            head, score, _ = line.split("\t")
            h_scores.setdefault(int(head[2:]), []).append(float(score) * LN2)  # fairseq prints base 2
        if line.startswith("P-"):
            head, values = line.split("\t")
            p_sums.setdefault(int(head[2:]), []).append(sum(float(v) for v in values.split()) * LN2)
    for sent in sents:
        for rank in (0, 1):
            m = sent.measures[rank]
            assert m["score"] == pytest.approx(h_scores[sent.id][rank], rel=1e-5, abs=1e-6)
            # lenpen 1: score = (1/L) Σ ln P̄(y_l); tu_pe recomputes it by teacher forcing
            assert m["tu_pe"] == pytest.approx(-m["score"], rel=1e-3, abs=1e-4)
            assert m["ku_pe"] >= -1e-6 and m["ku_ep"] >= -1e-6
        # n-best aggregate with T = 0.7, default weights softmax(ln P(y) / T), ln P(y) = Σ P- values · ln 2
        w = np.exp(np.array([p_sums[sent.id][r] for r in (0, 1)]) / 0.7)
        w /= w.sum()
        for name in ("tu_pe", "pe_rmi", "ep_rmi"):
            assert sent.weighted[name] == pytest.approx(sum(w[r] * sent.measures[r][name] for r in (0, 1)), rel=1e-4, abs=1e-6)


def test_identical_members_zero_and_different_members_positive_knowledge(ens: Dict[str, Path]) -> None:
    same = parse_token_lines(results_file(ens["aa"], "test"))
    diff = parse_token_lines(results_file(ens["ab"], "test"))
    assert len(same) == 200 and len(diff) == 200
    same_vals = np.concatenate([same[i][0][k] for i in same for k in ("pe_mutual_information", "pe_rmi", "pe_epkl", "ep_rmi")])
    assert np.abs(same_vals).max() < 1e-5
    for k in ("ep_mutual_information", "ep_rmi"):  # EP weights may concentrate on one member: ≥ 0, positive on average
        per_token = np.concatenate([diff[i][0][k] for i in diff])
        assert per_token.min() > -1e-6 and per_token.mean() > 1e-4, k
    for k in ("pe_mutual_information", "pe_rmi"):
        per_token = np.concatenate([diff[i][0][k] for i in diff])
        assert per_token.min() > 0 and per_token.mean() > 1e-3, k
    seq_same = read_generate_output(str(results_file(ens["aa"], "test")))
    assert max(abs(s.measures[0]["ku_pe"]) + abs(s.measures[0]["ku_ep"]) for s in seq_same) < 1e-5


def test_jsonl_written_atomically_and_matches_lines(ens: Dict[str, Path]) -> None:
    root = ens["root"]
    assert not list(root.glob(".*.partial")), "partial JSONL left behind"
    records = [json.loads(line) for line in (root / "ab.jsonl").read_text().splitlines()]
    assert len(records) == 200 and {r["model"] for r in records} == {"ensemble"} and {r["members"] for r in records} == {2}
    by_id = {s.id: s for s in read_generate_output(str(results_file(ens["ab"], "test")))}
    for rec in records[:20]:
        for hyp in rec["hypotheses"]:
            for name, value in hyp["sequence"].items():
                assert by_id[rec["id"]].measures[hyp["rank"]][name] == pytest.approx(value, rel=1e-5, abs=1e-9)
    # a bad --uncertainty-jsonl is rejected before anything is generated, naming the flag
    error = (ens["bad_jsonl"] / "error.txt").read_text()
    assert "--uncertainty-jsonl" in error and "does not exist" in error
    assert not (root / "no_such_dir").exists()


def test_single_model_score_reference(ens: Dict[str, Path]) -> None:
    path = results_file(ens["single_ref"], "test")
    text = path.read_text()
    sents = read_generate_output(str(path), require_references=True)
    assert len(sents) == 200
    for sent in sents:
        m = sent.measures[0]
        for name in ("member_nll", "ku_pe", "ku_ep", "pe_mutual_information", "pe_rmi", "pe_epkl", "pe_data", "ep_rmi", "ep_data"):
            assert m[name] is None, name  # printed as "undefined", not as 0
        assert sent.top1 == sent.reference  # --score-reference scores the reference itself
    # tu_pe = −(1/L) Σ ln P(y_l) of the reference; P- lines hold ln P(y_l) / ln 2 (4 decimals)
    p_lines = {int(l.split("\t")[0][2:]): [float(x) for x in l.split("\t")[1].split()] for l in text.splitlines() if l.startswith("P-")}
    for sent in sents[:50]:
        p = p_lines[sent.id]
        assert sent.measures[0]["tu_pe"] == pytest.approx(-LN2 * sum(p) / len(p), abs=2e-4)
    assert "\tpe_data=undefined\t" in text and "\tpe_rmi=undefined\t" in text


def test_ensemble_knowledge_uncertainty_detects_permuted_source(ens: Dict[str, Path], tmp_path: Path) -> None:
    ind = read_generate_output(str(results_file(ens["ab"], "test")))
    ood = read_generate_output(str(results_file(ens["ab_perm"], "test1")))
    for measure in ("pe_rmi", "pe_mutual_information", "ku_pe"):
        auc = ood_detection_scores([s.measures[0][measure] for s in ind], [s.measures[0][measure] for s in ood])["roc_auc"]
        assert auc > 0.6, (measure, auc)
    # the evaluation CLI reports the same on these real outputs
    rc = eval_main(["--out-dir", str(tmp_path / "rep"), "--no-plots", "--model", "ensemble",
                    "--id", str(results_file(ens["ab"], "test")), "--ood", f"permuted={results_file(ens['ab_perm'], 'test1')}"])
    assert rc == 0
    doc = json.loads((tmp_path / "rep" / "seq_eval.json").read_text())
    res = doc["models"]["ensemble"]
    assert res["ood"]["permuted"]["roc_auc"]["pe_rmi"] > 0.6
    assert 0 < res["bleu"] <= 100 and res["bleu_signature"].startswith("nrefs:1")


def test_proxy_model_reads_the_ensembles_own_proxy_dirichlet_target(ens: Dict[str, Path], toy_data_bin: Path) -> None:
    """--uncertainty-model proxy: Dirichlet measures of β = p̄·β̂₀ + 1 with β̂₀ = (K−1) / (2·(1/M)Σ KL(p̄‖p_m))
    ([Proxy] eq. 17). The ensemble run prints that KL per token (pe_rmi), so the proxy's EPKL must be
    (K−1)/β₀ with β₀ = β̂₀ + K."""
    vocab = 4 + len((toy_data_bin / "dict.de.txt").read_text().splitlines())  # fairseq's 4 special symbols
    ensemble = parse_token_lines(results_file(ens["ab"], "test"))
    proxy = parse_token_lines(results_file(ens["ab_proxy"], "test"))
    assert len(proxy) == 200
    checked = 0
    for sid in sorted(proxy)[:40]:
        ens_tok, prx_tok = ensemble[sid][0], proxy[sid][0]
        assert prx_tok["ep_total"] is None and prx_tok["pe_rmi"] is not None  # a Dirichlet: no EP chain rule
        for l, kl in enumerate(ens_tok["pe_rmi"]):
            precision = (vocab - 1) / (2 * kl) + vocab
            assert prx_tok["pe_epkl"][l] == pytest.approx((vocab - 1) / precision, rel=2e-3), (sid, l)
            checked += 1
    assert checked > 100
    sents = read_generate_output(str(results_file(ens["ab_proxy"], "test")))
    assert all(s.measures[0]["tu_ep"] is None and s.measures[0]["ku_pe"] >= 0 for s in sents)


def test_expectation_of_products_search(ens: Dict[str, Path]) -> None:
    """--ensemble-combination ep: the search's log-probability of a hypothesis is Σ_l ln P_EP(y_l|y<l)
    = ln (1/M) Σ_m P_m(y|x), so with --lenpen 1 its score equals −tu_ep (teacher-forced, independent of the
    search's bookkeeping), while the default PE search's score equals −tu_pe instead."""
    ep = read_generate_output(str(results_file(ens["ab_ep"], "test")), require_references=True)
    pe = read_generate_output(str(results_file(ens["ab"], "test")), require_references=True)
    assert len(ep) == 200
    for sent in ep:
        m = sent.measures[0]
        assert m["score"] == pytest.approx(-m["tu_ep"], rel=1e-3, abs=1e-4), sent.id
    gaps = [abs(s.measures[0]["tu_ep"] - s.measures[0]["tu_pe"]) for s in pe]
    assert max(gaps) > 1e-2  # the two combinations really differ on these members
    assert sum(s.top1 != t.top1 for s, t in zip(ep, pe)) < 100  # same task, mostly the same translations
