"""What kind of failure ended a job: the user's model (or TVM's limits), which the job reports as a
`PackagingFailure` the user can act on, or a defect of ours, which the worker reports as an internal error with
the traceback in its log. Decided here only."""

from __future__ import annotations

from pathlib import Path


class PackagingFailure(Exception):
    """A failure the user can act on; its text becomes the job's StatusMessage."""


def raised_by_tvm(exc: BaseException) -> bool:
    """Whether `exc` comes from TVM (its Python packages or, through tvm-ffi, its C++ code) rather than from our
    own code: the first is about the model (or TVM's limits), the second is a defect of ours."""
    import tvm
    import tvm_ffi

    innermost = exc.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    if innermost is None:
        return False
    path = Path(innermost.tb_frame.f_code.co_filename)
    if path.suffix in (".cc", ".h", ".cpp", ".cu", ".pxi", ".pyx"):
        return True  # a frame tvm-ffi made for C++ (or its Cython layer)
    packages = (Path(tvm.__file__).parent, Path(tvm_ffi.__file__).parent)
    return any(path.resolve().is_relative_to(package.resolve()) for package in packages)
