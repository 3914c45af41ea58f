"""Scalar constants of elementwise arithmetic become one-element tensors, so kernels are identified by structure.

Relax's legalisation inlines a 0-d constant operand of a binary operator into the generated kernel as a literal
(a fitted threshold of 14.0608568 becomes part of the kernel's text). Tuning records are matched by the
kernel's structural hash, so a record would then stop applying when such a value changes in its last digit
(a re-fit, another ONNX Runtime version). As a [1]-shaped tensor the value is passed to the kernel as an
argument instead: same result by broadcasting, same kernel for every value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Relax operators legalised through `_binary` (relax/transform/legalize_ops/binary.py), which inlines scalars.
BINARY_OPS = frozenset(
    f"relax.{name}"
    for name in (
        "add",
        "subtract",
        "multiply",
        "divide",
        "floor_divide",
        "power",
        "maximum",
        "minimum",
        "equal",
        "not_equal",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
    )
)


def _ndim(expr: Any) -> int:
    from tvm import relax

    return expr.ty.ndim if isinstance(expr.ty, relax.TensorType) else -1


def _scalar_float_constant(expr: Any) -> bool:
    import tvm

    if not isinstance(expr, tvm.ir.GenericConst) or _ndim(expr) != 0:
        return False
    return expr.value.dtype.startswith(("float", "bfloat"))


def lift_scalar_constants(mod: Any) -> Any:
    """`mod` with every 0-d floating-point constant operand of a binary operator reshaped to [1], where the
    other operand has rank ≥ 1 (so broadcasting gives the same result shape)."""
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class Lifter(relax.PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = self.visit_expr_post_order(call)
            if not isinstance(call.op, tvm.ir.Op) or call.op.name not in BINARY_OPS or len(call.args) != 2:
                return call
            first, second = call.args
            if _scalar_float_constant(second) and _ndim(first) >= 1:
                second = relax.const(np.reshape(second.value.numpy(), (1,)))
            elif _scalar_float_constant(first) and _ndim(second) >= 1:
                first = relax.const(np.reshape(first.value.numpy(), (1,)))
            else:
                return call
            return relax.Call(call.op, [first, second], call.attrs, call.ty_args, call.span)

        def rewrite(self) -> Any:
            for global_var, function in mod.functions_items():
                if isinstance(function, relax.Function):
                    self.builder_.update_func(global_var, self.visit_expr(function))
            return self.builder_.get()

    return Lifter(mod).rewrite()
