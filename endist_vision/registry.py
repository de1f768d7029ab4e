"""One name registry for the four kinds of plug-ins of endist_vision: models, methods, data sets and
shift sets.

Every registry is a :class:`Registry`; registering a second, different object under a taken name is a
bug in one of the two files and raises ``ValueError`` naming both modules (re-registering the very same
object is allowed). Looking up an unknown name raises ``KeyError`` listing
the registered names.

Example (what ``endist_vision.models.register_model`` does)::

    MODELS: Registry[ModelFactory] = Registry("model")

    @MODELS.register("my_net")
    def my_net(num_classes: int, **kw) -> nn.Module: ...

    MODELS.get("my_net")
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A ``name → object`` table of one ``kind`` (``"model"``, ``"method"``, ``"data set"``, …)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register(name)`` stores the decorated object under ``name``.

        Raises:
            ValueError: ``name`` is empty or already registered for a different object.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def deco(obj: T) -> T:
            old = self._items.get(name)
            if old is not None and old is not obj:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {_module(old)}; "
                    f"{_module(obj)} tries to register it again"
                )
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """The object registered under ``name``; ``KeyError`` listing the known names otherwise."""
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _module(obj: object) -> str:
    return getattr(obj, "__module__", type(obj).__module__)

