"""Generator wrapper used by ``--task translation_uncertainty --compute-uncertainty``.

:class:`UncertaintyGenerator` wraps whatever generator fairseq would build
(``SequenceGenerator``, ``SequenceGeneratorWithAlignment``, ``SequenceScorer``
for ``--score-reference``, any search strategy): it calls it unchanged, then
scores the n-best hypotheses with :class:`~endist_seq.generation.scorer.HypothesisScorer`.
The search therefore sees exactly the distributions of plain
``fairseq-generate`` and the hypotheses and scores are identical.

The one deliberate exception is ``--dirichlet-mean-decoding`` for a Dirichlet
student: the search then decodes with the expected distribution of the
student's Dirichlet, p̂ = α/α₀ with α = exp(z/T) + offset, instead of
softmax(z/T); :class:`DirichletMeanModel` provides that distribution to
fairseq's ``EnsembleModel`` through ``get_normalized_probs``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from fairseq.sequence_generator import EnsembleModel
from torch import Tensor

from endist_seq.generation.scorer import HypothesisScorer, SentenceUncertainty
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
    """fairseq's ``EnsembleModel``, unchanged, except that it keeps the last batch's encoder outputs.

    Handed to ``SequenceGenerator`` (which uses an ``EnsembleModel`` instance as is), so the
    re-scoring after the search reuses the encoder pass instead of repeating it.
    """

    def __init__(self, models: List[torch.nn.Module]) -> None:
        super().__init__(models)
        self.last_encoder_outs: Optional[List[Any]] = None

    def forward_encoder(self, net_input: Dict[str, Tensor]):  # type: ignore[override]
        outs = super().forward_encoder(net_input)
        self.last_encoder_outs = outs
        return outs


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
        self.last_uncertainty = self.scorer.score(sample["net_input"], hypos, self.nbest, encoder_outs=encoder_outs)
        return hypos

    def cuda(self) -> "UncertaintyGenerator":
        if hasattr(self.generator, "cuda"):
            self.generator.cuda()
        return self
