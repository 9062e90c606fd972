"""Float vectors in messages: exact float32 values, compact on the wire.

A vector field (``Annotated[Vector, Float32(384)]``) is written as one JSON string: the
little-endian float32 bytes of the values in standard base64 (2,048 characters for 384
values, against ~8 KB of JSON floats), which decodes to exactly the values the writer had.
Input may also be the older JSON list of numbers, rounded to float32. Either way the length
and finiteness are checked. In Python the field is a ``Vector``: an immutable float32 array
that numpy reads without a copy (``np.asarray(vector)``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

WIRE_DTYPE = np.dtype("<f4")


class Vector(Sequence[float]):
    """An immutable float32 vector (compares by value)."""

    __slots__ = ("_array",)

    def __init__(self, values: npt.ArrayLike) -> None:
        array = np.array(values, dtype=np.float32).reshape(-1)
        array.setflags(write=False)
        self._array = array

    @classmethod
    def of(cls, array: npt.NDArray[np.float32]) -> Vector:
        """Wrap a 1-d float32 array without copying it; the caller must not change it."""
        vector = cls.__new__(cls)
        view = array.view()
        view.setflags(write=False)
        vector._array = view
        return vector

    @property
    def array(self) -> npt.NDArray[np.float32]:
        """The values, read-only."""
        return self._array

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> npt.NDArray[Any]:
        return self._array if dtype is None else self._array.astype(dtype)

    def __len__(self) -> int:
        return len(self._array)

    @overload
    def __getitem__(self, index: int) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> list[float]: ...
    def __getitem__(self, index: int | slice) -> float | list[float]:
        if isinstance(index, slice):
            return self._array[index].tolist()  # type: ignore[no-any-return]
        return float(self._array[index])

    def __iter__(self) -> Iterator[float]:
        return iter(self._array.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Vector):
            return np.array_equal(self._array, other._array)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._array.tobytes())

    def __repr__(self) -> str:
        return f"Vector({self._array.tolist()!r})"

    def tolist(self) -> list[float]:
        return self._array.tolist()  # type: ignore[no-any-return]

    def to_base64(self) -> str:
        return base64.b64encode(self._array.astype(WIRE_DTYPE, copy=False).tobytes()).decode()


@dataclass(frozen=True)
class Float32:
    """Field metadata: a ``Vector`` of exactly ``length`` finite values, base64 in JSON."""

    length: int

    def validate(self, value: object) -> Vector:
        if isinstance(value, Vector):
            vector = value
        elif isinstance(value, str):
            vector = Vector.of(_from_base64(value))
        elif isinstance(value, list | tuple | np.ndarray):
            try:
                vector = Vector(value)
            except (TypeError, ValueError) as e:
                raise PydanticCustomError(
                    "vector", "not a list of numbers: {error}", {"error": str(e)}
                ) from e
        else:
            raise PydanticCustomError(
                "vector", "expected base64 float32 or a list of numbers, got {kind}",
                {"kind": type(value).__name__},
            )  # fmt: skip
        if len(vector) != self.length:
            raise PydanticCustomError(
                "vector", "{found} values, expected {length}",
                {"found": len(vector), "length": self.length},
            )  # fmt: skip
        if not np.isfinite(vector.array).all():
            raise PydanticCustomError("vector", "values must be finite", {})
        return vector

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                Vector.to_base64, when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "contentEncoding": "base64",
            "minLength": _base64_length(self.length),
            "maxLength": _base64_length(self.length),
            "description": f"{self.length} little-endian float32 values, base64",
        }


def _from_base64(text: str) -> npt.NDArray[np.float32]:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise PydanticCustomError("vector", "not base64: {error}", {"error": str(e)}) from e
    if len(raw) % WIRE_DTYPE.itemsize:
        raise PydanticCustomError(
            "vector", "{n} bytes is not whole float32 values", {"n": len(raw)}
        )
    return np.frombuffer(raw, dtype=WIRE_DTYPE).astype(np.float32, copy=False)


def _base64_length(values: int) -> int:
    return 4 * -(-values * WIRE_DTYPE.itemsize // 3)
