"""endist_seq — fairseq plugin (load with ``--user-dir endist_seq``).

Importing the package registers the endist tasks and criterions with fairseq,
allow-lists what fairseq pickles into checkpoints (torch >= 2.6), and installs
:func:`endist_seq.errors.endist_excepthook`, which prints an uncaught endist
user error (:class:`endist_seq.errors.EndistUserError`) as one ``error: ...``
line instead of a traceback (other exceptions are untouched).
"""

from endist_seq.errors import install_excepthook
from endist_seq.safe_globals import register_fairseq_safe_globals

register_fairseq_safe_globals()
install_excepthook()

from endist_seq import criterions, tasks  # noqa: E402,F401  (registration side effects)
