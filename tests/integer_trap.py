"""An ndarray that raises on any float arithmetic, to prove a golden ``run`` is integer-only.

Every ufunc call (``+``, ``>>``, ``np.maximum``, reductions such as ``sum`` and ``max``) on an
:class:`IntegerOnlyArray` checks its operands and result: a float, complex or object operand or
result raises :class:`FloatOperationError`. Python ints and integer/bool arrays pass.
"""
import numpy as np


class FloatOperationError(AssertionError):
    pass


def _check_operand(value, ufunc):
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        return
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biu":
            return
        raise FloatOperationError(f"{ufunc.__name__} on a {value.dtype} array")
    raise FloatOperationError(f"{ufunc.__name__} with a {type(value).__name__} operand {value!r}")


class IntegerOnlyArray(np.ndarray):
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for value in inputs:
            _check_operand(value, ufunc)
        for key in ("dtype", "signature"):
            if kwargs.get(key) is not None and np.dtype(kwargs[key]).kind not in "biu":
                raise FloatOperationError(f"{ufunc.__name__} asked for dtype {kwargs[key]}")
        plain = [v.view(np.ndarray) if isinstance(v, IntegerOnlyArray) else v for v in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, IntegerOnlyArray) else o
                                  for o in kwargs["out"])
        result = getattr(ufunc, method)(*plain, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        for value in results:
            if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind not in "biu":
                raise FloatOperationError(f"{ufunc.__name__} produced {value.dtype}")
        wrapped = tuple(v.view(IntegerOnlyArray) if isinstance(v, np.ndarray) else v
                        for v in results)
        return wrapped if isinstance(result, tuple) else wrapped[0]

    def __array_function__(self, func, types, args, kwargs):
        return super().__array_function__(func, types, args, kwargs)


def trap_floats(x) -> IntegerOnlyArray:
    """``x`` (an integer array) as an :class:`IntegerOnlyArray`."""
    array = np.asarray(x)
    assert array.dtype.kind in "iu", "trap_floats wants an integer array"
    return array.view(IntegerOnlyArray)
