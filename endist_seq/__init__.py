"""endist_seq — fairseq plugin (load with ``--user-dir endist_seq``).

Importing the package registers the endist tasks and criterions with fairseq
and allow-lists what fairseq pickles into checkpoints (torch >= 2.6).
"""

from endist_seq.safe_globals import register_fairseq_safe_globals

register_fairseq_safe_globals()

from endist_seq import criterions, tasks  # noqa: E402,F401  (registration side effects)
