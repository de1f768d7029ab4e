"""Unit tests of the generation-uncertainty math, output format and OOD helper (no fairseq run)."""

import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

from endist_seq.generation import measures as M
from endist_seq.generation.output import AtomicJsonlWriter, format_lines, sentence_record
from endist_seq.generation.parse import GenerateOutputError, read_generate_output, read_jsonl_output
from endist_seq.generation.scorer import HypothesisUncertainty, SentenceUncertainty, TokenMeasures
from endist_seq.ood import main as ood_main
from endist_seq.ood import permute_lines, write_permuted_test_set


def _ensemble_case(m: int = 3, k: int = 7, lengths=(4, 2, 5), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    p = sum(lengths)
    log_probs = torch.log_softmax(3 * torch.randn(p, m, k, generator=g, dtype=torch.float64), -1)
    targets = torch.randint(0, k, (p,), generator=g)
    segment = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    return log_probs, targets, segment, torch.tensor(lengths)


def test_ensemble_sequence_measures_match_brute_force() -> None:
    log_probs, targets, segment, lengths = _ensemble_case()
    stats = M.ensemble_token_stats(log_probs, targets, segment, lengths)
    seq = M.sequence_measures(stats, segment, lengths, "ensemble", scores=torch.tensor([-1.0, -2.0, -3.0]))
    start = 0
    for n, length in enumerate(lengths.tolist()):
        probs = log_probs[start : start + length].exp()  # [L, M, K]
        chosen = probs[torch.arange(length), :, targets[start : start + length]]  # [L, M]
        seq_prob_members = chosen.prod(0)  # P_m(y|x)
        tu_pe = -torch.log(chosen.mean(1)).sum() / length
        tu_ep = -torch.log(seq_prob_members.mean()) / length
        du = -torch.log(seq_prob_members).mean() / length
        assert seq["tu_pe"][n].item() == pytest.approx(tu_pe.item(), rel=1e-9)
        assert seq["tu_ep"][n].item() == pytest.approx(tu_ep.item(), rel=1e-9)
        assert seq["member_nll"][n].item() == pytest.approx(du.item(), rel=1e-9)
        assert seq["ku_pe"][n].item() == pytest.approx((du - tu_pe).item(), abs=1e-12)
        assert seq["ku_pe"][n] > 0 and seq["ku_ep"][n] > 0  # Jensen, members differ
        mean_p = probs.mean(1)
        entropy = -(mean_p * mean_p.log()).sum(-1).mean()
        assert seq["pe_total"][n].item() == pytest.approx(entropy.item(), rel=1e-6)
        start += length
    assert seq["score"].tolist() == [-1.0, -2.0, -3.0]
    assert all(seq[name] is not None for name in M.SEQUENCE_MEASURES)


def test_identical_members_have_zero_knowledge_uncertainty() -> None:
    log_probs, targets, segment, lengths = _ensemble_case(m=1)
    same = log_probs.expand(-1, 4, -1).contiguous()  # 4 identical members
    seq = M.sequence_measures(M.ensemble_token_stats(same, targets, segment, lengths), segment, lengths, "ensemble")
    for name in ("ku_pe", "ku_ep", "pe_mutual_information", "pe_rmi", "pe_epkl", "ep_mutual_information", "ep_rmi", "ep_epkl"):
        assert seq[name].abs().max().item() < 1e-10, name
    assert seq["tu_pe"].allclose(seq["member_nll"]) and seq["tu_ep"].allclose(seq["member_nll"])


def test_dirichlet_data_uncertainty_matches_monte_carlo() -> None:
    g = torch.Generator().manual_seed(1)
    k, lengths = 5, torch.tensor([3, 2])
    alphas = torch.rand(5, k, generator=g, dtype=torch.float64) * 4 + 0.3
    targets = torch.randint(0, k, (5,), generator=g)
    segment = torch.tensor([0, 0, 0, 1, 1])
    seq = M.sequence_measures(M.dirichlet_token_stats(alphas, targets), segment, lengths, "dirichlet")
    torch.manual_seed(0)
    pis = torch.distributions.Dirichlet(alphas).sample((200_000,))  # [S, P, K]
    log_chosen = pis[:, torch.arange(5), targets].log()  # [S, P]
    mc_du = torch.stack([-log_chosen[:, :3].sum(1).mean() / 3, -log_chosen[:, 3:].sum(1).mean() / 2])
    assert torch.allclose(seq["member_nll"], mc_du, rtol=0, atol=5e-3), (seq["member_nll"], mc_du)
    p_hat = alphas / alphas.sum(-1, keepdim=True)
    tu_pe = torch.stack([-p_hat[torch.arange(3), targets[:3]].log().sum() / 3, -p_hat[torch.arange(3, 5), targets[3:]].log().sum() / 2])
    assert torch.allclose(seq["tu_pe"], tu_pe)
    assert (seq["ku_pe"] > 0).all()
    assert seq["tu_ep"] is None and seq["ku_ep"] is None


def test_single_model_marks_knowledge_measures_undefined() -> None:
    log_probs, targets, segment, lengths = _ensemble_case(m=1)
    stats = M.single_token_stats(log_probs[:, 0], targets)
    seq = M.sequence_measures(stats, segment, lengths, "single")
    for name in ("member_nll", "ku_pe", "ku_ep", "pe_data", "pe_mutual_information", "pe_epkl", "pe_rmi", "ep_rmi"):
        assert seq[name] is None, name
    assert torch.equal(seq["tu_pe"], seq["tu_ep"])
    assert set(stats.measures) == {f"{r}_{k}" for r in ("pe", "ep") for k in ("log_prob", "total", "confidence")}


def test_posterior_weights_and_aggregate() -> None:
    scores = torch.tensor([-0.1, -0.5, -2.0])
    w = M.posterior_weights(scores, 1.0)
    assert torch.allclose(w, torch.softmax(scores.double(), 0))
    assert M.aggregate([1.0, 2.0, 4.0], M.posterior_weights(scores, 1e6).tolist()) == pytest.approx(7 / 3, rel=1e-5)
    assert M.aggregate([1.0, 2.0, 4.0], M.posterior_weights(scores, 1e-3).tolist()) == pytest.approx(1.0)
    assert M.aggregate([1.0, None], [0.5, 0.5]) is None
    # an infinite measure (e.g. epkl with a zero-probability member) of a weight-0 hypothesis is not NaN
    assert M.aggregate([1.0, math.inf], [1.0, 0.0]) == 1.0 and M.aggregate([1.0, math.inf], [0.5, 0.5]) == math.inf
    with pytest.raises(ValueError, match="temperature"):
        M.posterior_weights(scores, 0.0)


def _sentence(kind: str = "ensemble") -> SentenceUncertainty:
    undefined = M.undefined_sequence_measures(kind)
    hyps = []
    for rank, score in enumerate((-0.25, -1.5)):
        sequence = {n: (None if n in undefined else round(0.1 * (i + 1) + rank, 4)) for i, n in enumerate(M.SEQUENCE_MEASURES)}
        sequence["score"] = score
        token = {n: (None if n in M.undefined_token_measures(kind) else [0.5, 0.25, float(rank)]) for n in M.TOKEN_MEASURES}
        hyps.append(HypothesisUncertainty(rank=rank, tokens=[4, 5, 2], score=score, log_prob=3 * score, sequence=sequence, token=token))
    weights = M.posterior_weights(torch.tensor([h.score for h in hyps])).tolist()
    weighted = {n: M.aggregate([h.sequence[n] for h in hyps], weights) for n in M.SEQUENCE_MEASURES}
    return SentenceUncertainty(kind=kind, num_members=1, temperature=1.0, hypotheses=hyps, weighted=weighted)


def test_token_measures_view_reads_its_positions_of_the_batch_columns() -> None:
    """A hypothesis' :class:`TokenMeasures` holds positions [start, end) of its batch's per-measure lists: each
    read returns those values as a new list (changing it changes nothing), undefined measures read ``None``, keys
    keep the batch's order, and it compares equal to the plain dict of its slices; the JSON record and the UT- line
    are those of that dict."""
    columns = {"b": [0.0, 1.0, 2.0, 3.0, 4.0], "a": None, "c": [10.0, 11.0, 12.0, 13.0, 14.0]}
    view = TokenMeasures(columns, 1, 4)
    plain = {"b": [1.0, 2.0, 3.0], "a": None, "c": [11.0, 12.0, 13.0]}
    assert list(view) == ["b", "a", "c"] and len(view) == 3 and dict(view.items()) == plain and view == plain
    got = view["b"]
    got.append(99.0)
    assert view["b"] == [1.0, 2.0, 3.0] and columns["b"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert TokenMeasures(columns, 4, 5)["c"] == [14.0] and TokenMeasures(columns, 2, 2)["b"] == []
    with pytest.raises(KeyError):
        view["missing"]
    sent = _sentence("ensemble")
    as_views = []
    for hyp in sent.hypotheses:
        names = list(hyp.token)
        hyp_columns = {n: None if hyp.token[n] is None else [7.0] + hyp.token[n] + [8.0] for n in names}
        as_views.append(HypothesisUncertainty(rank=hyp.rank, tokens=hyp.tokens, score=hyp.score, log_prob=hyp.log_prob,
                                              sequence=hyp.sequence, token=TokenMeasures(hyp_columns, 1, 4)))
    viewed = SentenceUncertainty(kind=sent.kind, num_members=sent.num_members, temperature=sent.temperature,
                                 hypotheses=as_views, weighted=sent.weighted)
    assert format_lines(3, viewed) == format_lines(3, sent)
    assert json.dumps(sentence_record(3, viewed, ["x", "y"])) == json.dumps(sentence_record(3, sent, ["x", "y"]))


def test_lines_round_trip_through_the_parser(tmp_path: Path) -> None:
    sent = _sentence("single")
    lines = ["S-7\tsrc words", "T-7\tref words", "H-7\t-0.3\thyp a", "D-7\t-0.3\thyp a", "H-7\t-2.1\thyp b", "D-7\t-2.1\thyp b"]
    lines += format_lines(7, sent)
    path = tmp_path / "gen.txt"
    path.write_text("\n".join(lines) + "\n")
    (parsed,) = read_generate_output(str(path), require_references=True)
    assert parsed.id == 7 and parsed.reference == "ref words" and parsed.hypotheses == ["hyp a", "hyp b"]
    for rank in (0, 1):
        for name, value in sent.hypotheses[rank].sequence.items():
            got = parsed.measures[rank][name]
            assert got is None if value is None else got == pytest.approx(value, rel=1e-5), name
    assert parsed.weighted["tu_pe"] == pytest.approx(sent.weighted["tu_pe"], rel=1e-5)
    assert parsed.weighted["ku_pe"] is None
    ut = [line for line in lines if line.startswith("UT-7\t1\t")][0]
    assert "pe_log_prob=0.5,0.25,1\t" in ut and "pe_rmi=undefined" in ut


def test_jsonl_record_round_trip_and_atomic_writer(tmp_path: Path) -> None:
    target = tmp_path / "u.jsonl"
    writer = AtomicJsonlWriter(str(target))
    writer.write(sentence_record(3, _sentence("dirichlet"), ["a b", "c"], reference="a b"))
    assert not target.exists()  # nothing under the final name until commit
    partial = Path(writer.tmp_path)
    assert partial.exists() and partial.parent == tmp_path and partial.name.endswith(".partial")
    writer.commit()
    assert target.exists() and not partial.exists()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~_umask()
    (rec,) = [json.loads(line) for line in target.read_text().splitlines()]
    assert rec["model"] == "dirichlet" and rec["undefined"] == sorted(["ku_ep", "tu_ep"] + [f"ep_{k}" for k in ("total", "data", "mutual_information", "epkl", "rmi", "confidence")])
    parsed = read_jsonl_output(str(target))[3]
    assert parsed.hypotheses == ["a b", "c"] and parsed.measures[1]["member_nll"] == pytest.approx(_sentence("dirichlet").hypotheses[1].sequence["member_nll"])

    aborted = AtomicJsonlWriter(str(tmp_path / "v.jsonl"))
    aborted.write({"id": 1})
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.jsonl"]
    with pytest.raises(ValueError, match="--uncertainty-jsonl .*does not exist"):
        AtomicJsonlWriter(str(tmp_path / "missing" / "x.jsonl"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_parser_errors_name_file_and_problem(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("S-0\ta\nT-0\tb\nH-0\t-1.0\tb\nD-0\t-1.0\tb\n")
    with pytest.raises(GenerateOutputError, match="plain.txt: no uncertainty lines"):
        read_generate_output(str(plain))
    bad = tmp_path / "bad.txt"
    bad.write_text("T-0\tb\nD-0\t-1\tb\nU-0\t0\tscore=abc\n")
    with pytest.raises(GenerateOutputError, match=r"bad.txt:3: value 'abc'"):
        read_generate_output(str(bad))
    with pytest.raises(GenerateOutputError, match="no such file"):
        read_generate_output(str(tmp_path / "none.txt"))


def test_permuted_source_helper(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lines = ["the big cat sees the dog", "a b", "x", "same same", ""]
    out = permute_lines(lines, seed=3)
    assert out == permute_lines(lines, seed=3)  # deterministic
    for a, b in zip(lines, out):
        assert sorted(a.split()) == sorted(b.split())
    assert out[0] != lines[0] and out[1] == "b a" and out[2:] == lines[2:]
    src, tgt = tmp_path / "test.en", tmp_path / "test.de"
    src.write_text("\n".join(lines[:2]) + "\n")
    tgt.write_text("der hund\nb a\n")
    src_out, tgt_out = write_permuted_test_set(str(src), str(tgt), str(tmp_path / "ood" / "perm"), seed=3)
    assert Path(src_out).read_text().splitlines() == out[:2]
    assert Path(tgt_out).read_text() == tgt.read_text()
    tgt.write_text("only one line\n")
    with pytest.raises(SystemExit) as exc:
        ood_main(["--src", str(src), "--tgt", str(tgt), "--out-prefix", str(tmp_path / "p2")])
    assert exc.value.code == 2
    assert "has 2 lines but --tgt" in capsys.readouterr().err
    assert not (tmp_path / "p2.en").exists()
