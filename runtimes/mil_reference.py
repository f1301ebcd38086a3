"""The MIL reference runner: a NumPy interpreter of the program saved in an .mlpackage (Linux-side Core ML check).

coremltools reads the package back into a MIL program with its real weights (``milproto.load``); this module
runs that program's ops in NumPy. Every activation is computed in float32: where the graph casts to fp16 the
value is rounded to fp16 and carried on in float32, and fp16 / int8 weights are used at their stored values.
So it checks the exported graph and weights, NOT Core ML's kernels or its fp16 arithmetic (that needs the
'coreml' runner on macOS). Reports must call it "MIL reference", never the Core ML runtime.

Constant sub-graphs (weights, ``constexpr_*`` dequantization) are folded once at load time.
"""

from __future__ import annotations

import numpy as np

from swedge.errors import SwedgeError
from swedge.runtimes.base import RUNTIMES, Runner
from swedge.runtimes.coreml_runner import (INPUT_NAME, batch_range, check_sample_shape, coremltools_version,
                                           import_coremltools, sample_shape)
from swedge.runtimes.mil_kernels import avg_pool, conv2d, max_pool

_DTYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "int8": np.int8,
           "uint8": np.uint8, "bool": np.bool_}


def _cast(x, dtype):
    target = _DTYPES[dtype]
    if target is np.float16:  # round like the graph does, keep computing in float32
        return np.asarray(x).astype(np.float16).astype(np.float32)
    return np.asarray(x).astype(np.float32 if target is np.float32 else target)


def _affine_dequantize(quantized_data, zero_point, scale, axis):
    q = np.asarray(quantized_data).astype(np.float32)
    shape = [1] * q.ndim
    axis = int(axis) % q.ndim
    zp, s = np.asarray(zero_point, np.float32), np.asarray(scale, np.float32)
    shape[axis] = -1
    return (q - (zp.reshape(shape) if zp.ndim else zp)) * (s.reshape(shape) if s.ndim else s)


def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)  # channel axis 1, any rank >= 2
    scale = (1.0 if gamma is None else gamma) / np.sqrt(variance + np.float32(epsilon))
    shift = (0.0 if beta is None else beta) - mean * scale
    return x * np.reshape(scale, shape) + np.reshape(shift, shape)


def _squeeze(x, axes=None):
    return np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in axes))


def _matmul(x, y, transpose_x=False, transpose_y=False):
    return np.matmul(np.swapaxes(x, -1, -2) if transpose_x else x, np.swapaxes(y, -1, -2) if transpose_y else y)


def _linear(x, weight, bias=None):
    y = x @ weight.T
    return y if bias is None else y + bias


OPS = {
    "conv": conv2d,
    "max_pool": max_pool,
    "avg_pool": avg_pool,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "relu6": lambda x: np.clip(x, np.float32(0), np.float32(6)),
    "clip": lambda x, alpha, beta: np.clip(x, np.float32(alpha), np.float32(beta)),
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "real_div": lambda x, y: x / y,
    "reduce_mean": lambda x, axes=None, keep_dims=False: np.mean(
        x, axis=None if axes is None else tuple(int(a) for a in axes), keepdims=bool(keep_dims), dtype=np.float32),
    "reshape": lambda x, shape: np.reshape(x, tuple(int(s) for s in shape)),
    "squeeze": _squeeze,
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in axes)),
    "transpose": lambda x, perm: np.transpose(x, tuple(int(p) for p in perm)),
    "linear": _linear,
    "matmul": _matmul,
    "batch_norm": _batch_norm,
    "cast": _cast,
    "identity": lambda x: x,
    "constexpr_affine_dequantize": _affine_dequantize,
}


def _static_value(var):
    """A const input's value (float tensors as float32), or None when the var is computed at run time."""
    val = var.val
    if val is None:
        return None
    if isinstance(val, np.ndarray) and np.issubdtype(val.dtype, np.floating):
        return val.astype(np.float32)
    if isinstance(val, np.generic):
        return val.item()
    return val


class MILProgram:
    """A MIL function compiled into NumPy steps: constants folded, each var freed after its last use."""

    def __init__(self, function):
        self.input_names = list(function.inputs)
        self.output_names = [v.name for v in function.outputs]
        self.consts: dict = {}
        self.steps: list = []  # (op_type, kernel, static kwargs, {arg: var name}, output names, names to free)
        for op in function.operations:
            self._add(op)
        self._plan_frees()

    def _add(self, op) -> None:
        if op.op_type == "const":
            self.consts[op.outputs[0].name] = _static_value(op.outputs[0])
            return
        kernel = OPS.get(op.op_type)
        if kernel is None:
            raise SwedgeError(f"MIL reference: op '{op.op_type}' (in '{op.name}') is not implemented; it runs "
                              f"{', '.join(sorted(OPS))}. Add it to swedge/runtimes/mil_reference.py or run the "
                              "model with the 'coreml' runner on macOS")
        static, dynamic = {}, {}
        for arg, var in op.inputs.items():
            if isinstance(var, (list, tuple)):
                raise SwedgeError(f"MIL reference: op '{op.op_type}' takes a list input '{arg}', not supported")
            if var.name in self.consts:
                static[arg] = self.consts[var.name]
            elif (value := _static_value(var)) is not None:
                static[arg] = value
            else:
                dynamic[arg] = var.name
        outputs = [v.name for v in op.outputs]
        if not dynamic:  # constant sub-graph (e.g. constexpr dequantization): evaluate once, now
            result = kernel(**static)
            for name, value in zip(outputs, result if len(outputs) > 1 else (result,)):
                self.consts[name] = value
            return
        self.steps.append((op.op_type, kernel, static, dynamic, outputs, []))

    def _plan_frees(self) -> None:
        last_use = {}
        for i, (_, _, _, dynamic, _, _) in enumerate(self.steps):
            for name in dynamic.values():
                last_use[name] = i
        for name, i in last_use.items():
            if name not in self.output_names:
                self.steps[i][5].append(name)

    def run(self, feeds: dict) -> list[np.ndarray]:
        env = dict(feeds)
        for op_type, kernel, static, dynamic, outputs, free in self.steps:
            try:
                result = kernel(**static, **{arg: env[name] for arg, name in dynamic.items()})
            except Exception as exc:
                raise SwedgeError(f"MIL reference: op '{op_type}' failed ({type(exc).__name__}: {exc})") from exc
            for name, value in zip(outputs, result if len(outputs) > 1 else (result,)):
                env[name] = value
            for name in free:
                env.pop(name, None)
        return [env[name] if name in env else self.consts[name] for name in self.output_names]


def load_program(path) -> tuple[MILProgram, object]:
    """The saved .mlpackage's main function as a MILProgram, and its spec (no Core ML compilation)."""
    ct = import_coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    try:
        model = ct.models.MLModel(str(path), skip_model_load=True)
    except Exception as exc:
        raise SwedgeError(f"{path} is not a readable Core ML package ({type(exc).__name__}: {exc})") from None
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise SwedgeError(f"{path} is a Core ML '{spec.WhichOneof('Type')}' model; the MIL reference runs only "
                          "ML programs (convert_to='mlprogram')")
    program = load_milproto(spec, spec.specificationVersion, model.weights_dir)
    return MILProgram(program.functions["main"]), spec


@RUNTIMES.register("coreml-mil")
class MILReferenceRunner(Runner):
    """Runs an .mlpackage's MIL program with NumPy in float32 (see the module docstring for what it checks)."""

    extra = "coreml"
    label = "MIL reference (numpy interpreter of the saved program; not the Core ML runtime)"
    _program: MILProgram | None = None
    _shape: tuple[int, ...] = ()

    def _load(self) -> None:
        self._program, spec = load_program(self.path)
        if self._program.input_names != [INPUT_NAME] or len(self._program.output_names) != 1:
            raise SwedgeError(f"{self.path}: expected one input '{INPUT_NAME}' and one output, found inputs "
                              f"{self._program.input_names} and outputs {self._program.output_names}")
        self._shape = sample_shape(spec)
        self.max_batch = batch_range(spec)[1]  # respect the artifact's declared batch range

    def _infer(self, x: np.ndarray) -> np.ndarray:
        check_sample_shape(self.name, x, self._shape)
        assert self._program is not None  # embed() loads first
        if self.threads:
            try:  # numpy's BLAS threads; without threadpoolctl they follow OMP_NUM_THREADS
                from threadpoolctl import threadpool_limits
            except ImportError:
                threadpool_limits = None
            if threadpool_limits is not None:
                with threadpool_limits(limits=self.threads):
                    return self._program.run({INPUT_NAME: x})[0]
        return self._program.run({INPUT_NAME: x})[0]

    def close(self) -> None:
        self._program = None
        super().close()

    def version(self) -> str:
        return f"coremltools {coremltools_version()} + numpy {np.__version__}"
