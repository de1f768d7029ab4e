"""Task ``translation_uncertainty``: fairseq translation + uncertainty in generate.

STUB created by the foundation commit; the generation issue (#4) fills it in.
``ensemble_distillation`` (issue #3) subclasses :class:`TranslationUncertaintyTask`
so that it accepts the same generation flags.
"""

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationTask


@register_task("translation_uncertainty")
class TranslationUncertaintyTask(TranslationTask):
    """Translation task whose generator also reports uncertainty (issue #4)."""
