"""GPU checks: collected only where CUDA is available (``make test-gpu``).

On a machine without CUDA (CI) this directory contributes no tests at all — no skips.
The suite-wide ``tests/conftest.py`` hides GPUs (``CUDA_VISIBLE_DEVICES=""`` unless the variable
is already set), so run these with the device made visible explicitly, as ``make test-gpu`` does::

    CUDA_VISIBLE_DEVICES=0 pytest tests/gpu
"""

import torch

collect_ignore_glob = [] if torch.cuda.is_available() else ["test_*.py"]
