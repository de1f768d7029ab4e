"""endist_vision — image ensembles and ensemble (distribution) distillation."""
