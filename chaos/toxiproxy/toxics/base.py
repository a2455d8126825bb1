"""What every toxic is: typed int64 attributes and one `pipe` coroutine."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..catalog import TOXIC_TYPES, ToxicType
from ..gojson import DecodeError, as_int64, json_kind
from ..link import Chunk

if TYPE_CHECKING:
    from ..link import Stub

__all__ = ["Toxic", "InvalidAttributes", "forward"]


class InvalidAttributes(ValueError):
    """Attributes that decode but make no sense (the API answers 400)."""


class Toxic:
    """A fault on one link. Subclasses name their `type_name` and write `pipe`.

    Everything else about the type comes from `chaos.toxiproxy.catalog`, so the
    classes cannot drift from the table plans are checked against: `fields`
    (the attribute names, int64, in the catalog's order, which is the order the
    real server serialises its Go struct in), their defaults and `go_struct`.
    A subclass whose type is not in the catalog fails when it is defined.
    Instances are immutable once built: an update builds a new instance (so a
    running pipe never sees attributes change), and anything that must survive
    updates lives in the stub's `state`.
    """

    type_name: ClassVar[str] = ""
    spec: ClassVar[ToxicType]
    go_struct: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = TOXIC_TYPES.get(cls.type_name)
        if spec is None:
            raise TypeError(f"{cls.__name__}: toxic type {cls.type_name!r} is not in "
                            "chaos.toxiproxy.catalog.TOXIC_TYPES; add it there first")
        cls.spec = spec
        cls.go_struct = spec.go_struct
        cls.fields = spec.attribute_names

    def __init__(self, **values: int) -> None:
        for attr in self.spec.attributes:
            setattr(self, attr.name, int(values.get(attr.name, attr.default)))

    @classmethod
    def decode(cls, raw: Any, base: "Toxic | None" = None) -> "Toxic":
        """A new toxic: `base`'s attributes (or defaults) with `raw` merged in (Go semantics)."""
        values = {name: getattr(base, name) for name in cls.fields} if base is not None else {}
        if raw is not None:
            if not isinstance(raw, dict):
                raise DecodeError(f"json: cannot unmarshal {json_kind(raw)} into Go struct field "
                                  f".attributes of type toxics.{cls.go_struct}")
            by_lower = {f.lower(): f for f in cls.fields}
            for key, value in raw.items():
                name = by_lower.get(key.lower())
                if name is None or value is None:
                    continue
                values[name] = as_int64(value, f"{cls.go_struct}.attributes.{name}")
        toxic = cls(**values)
        toxic.validate()
        return toxic

    def validate(self) -> None:
        """Raise InvalidAttributes for values the toxic cannot run with."""

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.fields}

    def new_state(self) -> Any:
        return None

    def on_remove(self, stub: "Stub") -> None:
        """Called after the stub was spliced out of a live link, before what it
        held is passed on; if this closes the connection, nothing is."""

    async def pipe(self, stub: "Stub") -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()})"


def forward(stub: "Stub", item: Any) -> bool:
    """Pass a non-data item (EOF/Close) on; True when the pipe should return."""
    if type(item) is Chunk:
        return False
    stub.send(item)
    return True
