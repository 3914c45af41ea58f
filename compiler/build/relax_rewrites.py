"""The one walk over a Relax module that the CPU rewrites share (Winograd, packed convolutions, fast math)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (block builder, a call of the operator) → the expression computing it instead, or None to keep the call.
CallRewrite = Callable[[Any, Any], Any]


def rewrite_calls(mod: Any, op_name: str, rewrite: CallRewrite) -> Any:
    """`mod` with each call of the Relax operator `op_name` replaced by what `rewrite` returns for it."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    op = tvm.ir.Op.get(op_name)

    @mutator
    class Rewriter(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = super().visit_call_(call)
            if call.op != op:
                return call
            replacement = rewrite(self.builder_, call)
            return call if replacement is None else replacement

    rewriter = Rewriter(mod)
    for global_var, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(global_var, rewriter.visit_expr(func))
    return rewriter.builder_.get()


def constant_float_weights(call: Any) -> bool:
    """Whether a conv2d call is float32 in NCHW / OIHW with constant weights: what both rewrites need."""
    import tvm

    attrs = call.attrs
    weight = call.args[1]
    return (
        isinstance(getattr(weight, "value", None), tvm.runtime.Tensor)
        and str(weight.ty.dtype) == "float32"
        and str(call.args[0].ty.dtype) == "float32"
        and (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) == ("NCHW", "OIHW", "NCHW")
        and str(attrs.out_dtype or "float32") in ("float32", "void")
    )
