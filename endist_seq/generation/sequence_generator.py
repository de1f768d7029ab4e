"""Generator wrapper used by ``--task translation_uncertainty --compute-uncertainty``.

:class:`UncertaintyGenerator` wraps whatever generator fairseq would build
(``SequenceGenerator``, ``SequenceGeneratorWithAlignment``, ``SequenceScorer``
for ``--score-reference``, any search strategy): it calls it unchanged, then
scores the n-best hypotheses with :class:`~endist_seq.generation.scorer.HypothesisScorer`.
The search therefore sees exactly the distributions of plain
``fairseq-generate`` and the hypotheses and scores are identical. For the plain
``SequenceGenerator`` the models are handed over as :class:`RecordingEnsembleModel`, which
keeps the encoder outputs and the search's per-step decoder states, from which the scorer
takes the hypotheses' distributions without decoding them again.

The one deliberate exception is ``--dirichlet-mean-decoding`` for a Dirichlet
student: the search then decodes with the expected distribution of the
student's Dirichlet, p̂ = α/α₀ with α = exp(z/T) + offset, instead of
softmax(z/T); :class:`DirichletMeanModel` provides that distribution to
fairseq's ``EnsembleModel`` through ``get_normalized_probs``.

``--ensemble-combination ep`` (issue 14, item 7) replaces fairseq's uniform average of the
members during the search by the expectation-of-products combination,
P_EP(·|y<l) = Σ_m w_m(y<l) P_m(·|y<l) with w_m(y<l) ∝ P_m(y<l|x), through
:class:`ExpectationOfProductsEnsembleModel` (a subclass of fairseq's ``EnsembleModel``
handed to the unchanged ``SequenceGenerator``). A hypothesis' search log-probability is
then Σ_l ln P_EP(y_l|y<l) = ln (1/M) Σ_m P_m(y|x), the ensemble's sequence predictive.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
from fairseq.models.transformer import TransformerDecoderBase
from fairseq.sequence_generator import EnsembleModel
from torch import Tensor

from endist_seq.generation.scorer import HypothesisScorer, SentenceUncertainty
from endist_seq.generation.search_record import SearchRecord
from shared.uncertainty import alphas_from_logits


class DirichletMeanModel(torch.nn.Module):
    """A fairseq encoder-decoder whose normalised output is the Dirichlet mean α/α₀.

    Shares ``encoder`` and ``decoder`` with the wrapped model (no copy). Only
    what fairseq's ``EnsembleModel``/``SequenceGenerator`` use is exposed.
    """

    def __init__(self, model: torch.nn.Module, offset: float) -> None:
        super().__init__()
        self.model = model
        self.encoder = model.encoder
        self.decoder = model.decoder
        self.offset = float(offset)

    def get_normalized_probs(self, net_output: Any, log_probs: bool, sample: Optional[Dict[str, Tensor]] = None) -> Tensor:
        """ln p̂ (or p̂) with p̂_k = α_k / α₀, α = exp(z) + offset (z already divided by the temperature)."""
        alphas = alphas_from_logits(net_output[0], offset=self.offset, parametrization=getattr(self, "parametrization", "exp"))
        log_mean = alphas.log() - alphas.sum(-1, keepdim=True).log()
        return log_mean if log_probs else log_mean.exp()

    def max_decoder_positions(self) -> int:
        return self.model.max_decoder_positions()

    def max_positions(self) -> Any:
        return self.model.max_positions()


class RecordingEnsembleModel(EnsembleModel):
    """fairseq's ``EnsembleModel`` that also keeps what the scoring after the search can reuse.

    Handed to ``SequenceGenerator`` (which uses an ``EnsembleModel`` instance as is). It keeps

    * the last batch's encoder outputs (``last_encoder_outs``), so a teacher-forced scoring does not run the
      encoders again;
    * with ``record_bytes > 0`` and transformer decoders, the search's per-step decoder states
      (:class:`~endist_seq.generation.search_record.SearchRecord`, ``record``), so the final
      hypotheses' distributions come from one output-layer product instead of a teacher-forced
      decoder pass. The states are the inputs of each decoder's ``output_projection``, read by a
      forward pre-hook held only while :meth:`forward_decoder` runs; the decoding itself is
      fairseq's (or, in a subclass, :meth:`combine`'s), untouched.
    """

    def __init__(self, models: List[torch.nn.Module], record_bytes: int = 0) -> None:
        super().__init__(models)
        self.last_encoder_outs: Optional[List[Any]] = None
        recordable = all(_records_states(m) for m in self.models)
        self.record: Optional[SearchRecord] = SearchRecord(record_bytes) if recordable and record_bytes > 0 else None

    def forward_encoder(self, net_input: Dict[str, Tensor]):  # type: ignore[override]
        outs = super().forward_encoder(net_input)
        self.last_encoder_outs = outs
        if self.record is not None:
            self.record.start(int(net_input["src_tokens"].shape[0]))
        return outs

    def reorder_incremental_state(self, incremental_states: Any, new_order: Tensor) -> None:  # type: ignore[override]
        super().reorder_incremental_state(incremental_states, new_order)
        if self.record is not None:
            self.record.reorder(new_order)

    def combine(self, tokens: Tensor, encoder_outs: Any, incremental_states: Any, temperature: float = 1.0):
        """One search step's combined log-probabilities: fairseq's ``EnsembleModel.forward_decoder``."""
        return super().forward_decoder(tokens, encoder_outs, incremental_states, temperature)

    def forward_decoder(self, tokens: Tensor, encoder_outs: Any, incremental_states: Any, temperature: float = 1.0):  # type: ignore[override]
        """:meth:`combine`; with an active record, each member's last decoder state (the input of its output
        projection, in member order) is kept for this step."""
        if self.record is None or not self.record.complete:
            return self.combine(tokens, encoder_outs, incremental_states, temperature)
        states: List[Tensor] = []

        def keep(_module: torch.nn.Module, inputs: Any) -> None:
            features = inputs[0]  # [rows, positions, d]: positions = 1 when decoding incrementally
            states.append(features[:, -1, :] if features.shape[1] == 1 else features[:, -1, :].clone())

        hooks = [model.decoder.output_projection.register_forward_pre_hook(keep) for model in self.models]
        try:
            result = self.combine(tokens, encoder_outs, incremental_states, temperature)
        finally:
            for hook in hooks:
                hook.remove()
        self.record.add_step(tokens, states)
        return result


def _records_states(model: torch.nn.Module) -> bool:
    """Whether the model's decoder ends in an ``output_projection`` whose input is the state to keep (fairseq's
    transformer decoders without adaptive softmax)."""
    decoder = getattr(model, "decoder", None)
    return (isinstance(decoder, TransformerDecoderBase) and getattr(decoder, "adaptive_softmax", None) is None
            and isinstance(getattr(decoder, "output_projection", None), torch.nn.Module))


class ExpectationOfProductsEnsembleModel(RecordingEnsembleModel):
    """fairseq's ``EnsembleModel`` combining the members by their prefix posteriors (EP chain rule).

    Keeps, per live hypothesis row, the cumulative member log-probabilities ln P_m(y<l|x)
    ``[rows, M]`` and the members' last log-probabilities ``[rows, M, V]``; fairseq's
    ``reorder_incremental_state(new_order)`` (called by ``SequenceGenerator`` after every
    beam selection, including when finished sentences leave the batch) reorders them with
    the decoder states, and the token the search appended, ``tokens[:, -1]``, extends the
    prefix. ``forward_encoder`` (once per batch) resets them. Weights are computed in log
    space: ln w_m = c_m − logsumexp_k c_k (uniform when every member gives the prefix
    probability 0).
    """

    def __init__(self, models: List[torch.nn.Module], record_bytes: int = 0) -> None:
        super().__init__(models, record_bytes=record_bytes)
        self._prefix: Optional[Tensor] = None  # [rows, M] ln P_m(y<l|x)
        self._last: Optional[Tensor] = None  # [rows, M, V] ln P_m(·|y<l-1)

    def forward_encoder(self, net_input: Dict[str, Tensor]):  # type: ignore[override]
        self._prefix = self._last = None
        return super().forward_encoder(net_input)

    def reorder_incremental_state(self, incremental_states: Any, new_order: Tensor) -> None:  # type: ignore[override]
        super().reorder_incremental_state(incremental_states, new_order)
        if self._last is not None and self._prefix is not None:
            self._last = self._last.index_select(0, new_order)
            self._prefix = self._prefix.index_select(0, new_order)

    def combine(self, tokens: Tensor, encoder_outs: Any, incremental_states: Any, temperature: float = 1.0):  # type: ignore[override]
        members: List[Tensor] = []
        attn_sum: Optional[Tensor] = None
        for i, model in enumerate(self.models):
            encoder_out = encoder_outs[i] if self.has_encoder() else None
            if self.has_incremental_states():
                decoder_out = model.decoder.forward(tokens, encoder_out=encoder_out, incremental_state=incremental_states[i])
            else:
                decoder_out = model.decoder.forward(tokens, encoder_out=encoder_out)
            extra = decoder_out[1] if len(decoder_out) > 1 else None
            attn = extra.get("attn") if isinstance(extra, dict) else None
            attn = attn[0] if isinstance(attn, list) else attn
            if isinstance(attn, Tensor):
                attn = attn[:, -1, :]
                attn_sum = attn if attn_sum is None else attn_sum + attn
            logits = decoder_out[0][:, -1:, :].div(temperature)
            members.append(model.get_normalized_probs((logits, extra), log_probs=True, sample=None)[:, -1, :])
        log_probs = torch.stack(members, dim=1)  # [rows, M, V]
        rows, m = log_probs.shape[:2]
        if tokens.size(1) == 1 or self._last is None or self._prefix is None or self._prefix.shape[0] != rows:
            prefix = log_probs.new_zeros((rows, m))
        else:
            chosen = tokens[:, -1].view(-1, 1, 1).expand(-1, m, 1)
            prefix = self._prefix + self._last.gather(-1, chosen).squeeze(-1)
        self._prefix, self._last = prefix, log_probs
        norm = torch.logsumexp(prefix, dim=-1, keepdim=True)
        log_weights = torch.where(torch.isfinite(norm), prefix - norm, torch.full_like(prefix, -math.log(m)))
        combined = torch.logsumexp(log_probs + log_weights.unsqueeze(-1), dim=1)
        return combined, None if attn_sum is None else attn_sum / m


class UncertaintyGenerator:
    """Runs a fairseq generator, then attaches uncertainty to its n-best hypotheses.

    Args:
        generator: the generator fairseq would have used.
        scorer: computes the measures.
        nbest: how many hypotheses per sentence are scored (fairseq's ``--nbest``).
        search_models: models handed to the wrapped generator's ``generate`` (e.g.
            :class:`DirichletMeanModel` for ``--dirichlet-mean-decoding``; used by
            ``SequenceScorer``, ignored by ``SequenceGenerator`` which holds its own);
            ``None``: the models fairseq passes.
    """

    def __init__(
        self,
        generator: Any,
        scorer: HypothesisScorer,
        nbest: int = 1,
        search_models: Optional[List[torch.nn.Module]] = None,
    ) -> None:
        if nbest < 1:
            raise ValueError(f"--nbest must be >= 1, got {nbest}")
        self.search_models = search_models
        self.generator = generator
        self.scorer = scorer
        self.nbest = int(nbest)
        self.last_uncertainty: List[SentenceUncertainty] = []

    def __getattr__(self, name: str) -> Any:
        # symbols_to_strip_from_output, eos, vocab_size, ... of the wrapped generator
        if name == "generator":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.generator, name)

    @torch.no_grad()
    def generate(self, models: List[torch.nn.Module], sample: Dict[str, Any], **kwargs: Any) -> List[List[Dict[str, Any]]]:
        """fairseq's ``generate`` API; the hypothesis dicts gain an ``"uncertainty"`` entry."""
        recorder = getattr(self.generator, "model", None)
        if isinstance(recorder, RecordingEnsembleModel):
            recorder.last_encoder_outs = None
        hypos = self.generator.generate(self.search_models or models, sample, **kwargs)
        encoder_outs = recorder.last_encoder_outs if isinstance(recorder, RecordingEnsembleModel) else None
        record = None
        if isinstance(recorder, RecordingEnsembleModel) and recorder.record is not None and recorder.record.complete:
            # the record's states are the scorer's models' only if the search ran the same decoders, in order
            same = len(recorder.models) == len(self.scorer.models) and all(
                a.decoder is b.decoder for a, b in zip(recorder.models, self.scorer.models))
            record = recorder.record if same else None
        self.last_uncertainty = self.scorer.score(sample["net_input"], hypos, self.nbest, encoder_outs=encoder_outs,
                                                  record=record)
        if record is not None:
            record.start(0)  # free the batch's states
        return hypos

    def cuda(self) -> "UncertaintyGenerator":
        if hasattr(self.generator, "cuda"):
            self.generator.cuda()
        return self
