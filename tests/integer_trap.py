"""Proof that golden integer code computes on integers only: an array type that traps float
arithmetic (per operator), and a tracer around a whole forward pass (per model).

Per operator, :func:`trap_floats` wraps the input as an :class:`IntegerOnlyArray`.

Per model, :func:`integer_only` is a context manager that watches four things while it is open:

1. **Arrays.** :class:`IntegerOnlyArray` implements ``__array_ufunc__`` (``+``, ``>>``, ``@``,
   ``np.maximum``, reductions such as ``sum`` and ``max``) and ``__array_function__`` (every numpy
   function that dispatches: ``np.concatenate``, ``np.where``, ``np.broadcast_to``,
   ``np.einsum``, ...). Each checks operands, requested dtypes and results, and re-wraps array
   results, so the type survives the whole forward. ``astype`` to a float type, storing floats
   into it and ``float(array)`` raise too.
2. **numpy and math as golden code sees them.** In every loaded ``intvit.golden_model`` module,
   the globals bound to the ``numpy`` and ``math`` modules are replaced by guards: every function
   called through them (also constructors such as ``np.array`` or ``np.full``, which do not
   dispatch) has its arguments and result checked, and array results come back as
   :class:`IntegerOnlyArray`; naming a float type or constant (``np.float64``, ``math.pi``)
   raises.
3. **Python values in golden frames.** ``sys.settrace`` follows every frame whose code lies in
   ``golden_model/``: its arguments on entry, its locals before every line and its return value
   must hold no float (a Python or numpy float or complex, a float, complex or object array or
   dtype, or a list, tuple or dict holding one).
4. **Instructions golden code executes.** With opcode tracing each executed instruction of a
   golden frame is checked: a true division ``/``, a float constant, or the name ``float`` or
   ``complex`` raises. This sees a float that lives only inside one expression
   (``int(n / 2)``, ``if x * 0.5 > y``).

A violation raises :class:`FloatOperationError` naming the operation and the innermost golden
line. ``integer_only`` yields the tracer, whose ``codes`` are the golden code objects that ran.

What it proves: if a forward of an :class:`IntegerOnlyArray` input passes inside the context,
every numpy operation on data derived from it, every numpy or math call made by golden code and
every value a golden function received, held or returned was integer; a tap that comes out as an
:class:`IntegerOnlyArray` was produced by checked operations (or is an index, reshape or
transpose view of such a result).

What it cannot see: a float that a golden line reads from a plain data attribute or a global
(a dataclass field, not a property, which is a golden frame) and consumes within that same line
with Python operators or builtins (``if cfg.scale > n``); ``**`` with a negative exponent
consumed within one line; arithmetic on numpy integer scalars (``x.max()``), which are not
trap arrays, outside golden code; modules of ``golden_model`` first imported while the context
is open (their ``np`` is not guarded); and float work on plain Python values in code outside
``golden_model``. While open, the tracer replaces any other trace function (coverage, debugger).
"""
import dis
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np

import intvit.golden_model

PACKAGE = intvit.golden_model.__name__
GOLDEN = str(Path(intvit.golden_model.__file__).resolve().parent)
FORBIDDEN_NAMES = ("float", "complex")
"""Builtins whose mere use in executed golden code is a violation."""


class FloatOperationError(AssertionError):
    pass


def _float_in(value, depth: int = 2) -> str | None:
    """What float ``value`` is or holds (``"float 0.5"``, ``"a float64 array"``), or None."""
    if isinstance(value, (float, complex, np.inexact)):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, (np.ndarray, np.dtype)):
        dtype = np.dtype(value.dtype if isinstance(value, np.ndarray) else value)
        if dtype.kind in "fcO":
            return f"a {dtype} {'array' if isinstance(value, np.ndarray) else 'dtype'}"
        return None
    if isinstance(value, type) and issubclass(value, (float, complex, np.inexact)):
        return f"the type {value.__name__}"
    if depth and isinstance(value, (list, tuple, dict)):
        items = value.values() if isinstance(value, dict) else value
        return next(filter(None, (_float_in(item, depth - 1) for item in items)), None)
    return None


def _is_golden(code) -> bool:
    return code.co_filename.startswith(GOLDEN + os.sep)


def _where() -> str:
    """`` at file:line in function`` of the innermost golden frame, or ``""``."""
    frame = sys._getframe(1)
    while frame is not None and not _is_golden(frame.f_code):
        frame = frame.f_back
    if frame is None:
        return ""
    path = Path(frame.f_code.co_filename).relative_to(Path(GOLDEN).parent)
    return f" at {path}:{frame.f_lineno} in {frame.f_code.co_name}"


def _fail(message: str):
    raise FloatOperationError(message + _where())


def _check_arguments(name: str, args, kwargs) -> None:
    for value in (*args, *kwargs.values()):
        found = _float_in(value)
        if found:
            _fail(f"{name} with a float operand ({found})")
    if kwargs.get("dtype") is not None and np.dtype(kwargs["dtype"]).kind in "fcO":
        _fail(f"{name} asked for dtype {kwargs['dtype']}")


def _checked_result(name: str, result):
    """``result`` with ndarrays as :class:`IntegerOnlyArray`; a float in it raises."""
    results = result if isinstance(result, tuple) else (result,)
    for value in results:
        found = _float_in(value)
        if found:
            _fail(f"{name} produced {found}")
    wrapped = tuple(v.view(IntegerOnlyArray) if isinstance(v, np.ndarray) else v for v in results)
    return wrapped if isinstance(result, tuple) else wrapped[0]


def _plain(value):
    return value.view(np.ndarray) if isinstance(value, IntegerOnlyArray) else value


class IntegerOnlyArray(np.ndarray):
    """An integer ndarray on which every numpy operation refuses floats (layer 1)."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        _check_arguments(name, inputs, kwargs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(o) for o in kwargs["out"])
        result = getattr(ufunc, method)(*(_plain(v) for v in inputs), **kwargs)
        return _checked_result(name, result)

    def __array_function__(self, func, types, args, kwargs):
        _check_arguments(func.__name__, args, kwargs)
        return _checked_result(func.__name__, super().__array_function__(func, types, args, kwargs))

    def astype(self, dtype, *args, **kwargs):
        if np.dtype(dtype).kind in "fcO":
            _fail(f"astype({np.dtype(dtype)})")
        return super().astype(dtype, *args, **kwargs)

    def __setitem__(self, key, value):
        found = _float_in(value)
        if found:
            _fail(f"storing {found} into an integer array")
        super().__setitem__(key, value)

    def __float__(self):
        _fail("float() of an array")

    def __complex__(self):
        _fail("complex() of an array")


def trap_floats(x) -> IntegerOnlyArray:
    """``x`` (an integer array) as an :class:`IntegerOnlyArray`."""
    array = np.asarray(x)
    assert array.dtype.kind in "iu", "trap_floats wants an integer array"
    return array.view(IntegerOnlyArray)


class _GuardedCall:
    """A numpy or math function (or ufunc) called from golden code (layer 2)."""

    def __init__(self, function, name: str):
        self._function, self._name = function, name

    def __call__(self, *args, **kwargs):
        _check_arguments(self._name, args, kwargs)
        return _checked_result(self._name, self._function(*args, **kwargs))

    def __getattr__(self, attribute):
        return _guard_value(getattr(self._function, attribute), f"{self._name}.{attribute}")


class _GuardedModule:
    """``numpy`` or ``math`` as golden modules see them inside :func:`integer_only`."""

    def __init__(self, module: ModuleType, name: str):
        self._module, self._name = module, name

    def __getattr__(self, attribute):
        return _guard_value(getattr(self._module, attribute), f"{self._name}.{attribute}")


def _guard_value(value, name: str):
    found = _float_in(value, 0)
    if found:
        _fail(f"{name} is {found}")
    if isinstance(value, ModuleType):
        return _GuardedModule(value, name)
    if callable(value) and not isinstance(value, type):
        return _GuardedCall(value, name)
    return value


@contextmanager
def _guarded_modules():
    """Replace ``numpy`` and ``math`` in every loaded golden module's globals; restore after."""
    guards = {id(np): _GuardedModule(np, "np"), id(math): _GuardedModule(math, "math")}
    replaced = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == PACKAGE or name.startswith(PACKAGE + ".")):
            continue
        namespace = vars(module)
        for key, value in list(namespace.items()):
            if id(value) in guards:
                replaced.append((namespace, key, value))
                namespace[key] = guards[id(value)]
    try:
        yield
    finally:
        for namespace, key, value in replaced:
            namespace[key] = value


def _forbidden_instructions(code) -> dict:
    """Offsets of ``code``'s instructions that make a float, with what they do (layer 4)."""
    found = {}
    for instruction in dis.get_instructions(code):
        if instruction.opname == "BINARY_OP" and instruction.argrepr in ("/", "/="):
            found[instruction.offset] = "true division"
        elif instruction.opname == "LOAD_CONST" and _float_in(instruction.argval):
            found[instruction.offset] = f"constant {instruction.argval!r}"
        elif instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and \
                instruction.argval in FORBIDDEN_NAMES:
            found[instruction.offset] = f"use of {instruction.argval}()"
    return found


class _Tracer:
    """``sys.settrace`` hook over golden frames: values (layer 3) and instructions (layer 4)."""

    def __init__(self):
        self.codes: set = set()
        self._forbidden: dict = {}

    def __call__(self, frame, event, arg):
        if not _is_golden(frame.f_code):
            return None
        self.codes.add(frame.f_code)
        if frame.f_code not in self._forbidden:
            self._forbidden[frame.f_code] = _forbidden_instructions(frame.f_code)
        frame.f_trace_opcodes = True
        self._check_locals(frame)
        return self._local

    def _local(self, frame, event, arg):
        if event == "opcode":
            what = self._forbidden[frame.f_code].get(frame.f_lasti)
            if what:
                _fail(what)
        elif event == "line":
            self._check_locals(frame)
        elif event == "return":
            found = _float_in(arg)
            if found:
                _fail(f"{frame.f_code.co_name} returned {found}")
        return self._local

    @staticmethod
    def _check_locals(frame):
        for name, value in frame.f_locals.items():
            found = _float_in(value)
            if found:
                _fail(f"variable {name} holds {found}")


@contextmanager
def integer_only():
    """Run the body under all four checks; yields the tracer (``codes``: golden code that ran)."""
    tracer = _Tracer()
    previous = sys.gettrace()
    with _guarded_modules():
        sys.settrace(tracer)
        try:
            yield tracer
        finally:
            sys.settrace(previous)
