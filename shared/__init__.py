"""shared — the common, framework-free core of endist (pure torch).

Modules: :mod:`shared.uncertainty`, :mod:`shared.dirichlet`, :mod:`shared.losses`,
:mod:`shared.schedules`, :mod:`shared.metrics`, :mod:`shared.plots`.
"""
