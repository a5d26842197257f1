"""What the hand-written ONNX graphs (latentlm/onnx_trunk.py, latentlm/onnx_head.py) share: nodes and weights
collected in order, ONNX Runtime's own operators put in its domain, and the model serialised."""

from __future__ import annotations

import torch

OPSET, MS_OPSET = 17, 1
MS_OPS = ("SkipSimplifiedLayerNormalization", "GroupQueryAttention")  # com.microsoft (ONNX Runtime's)


class GraphBuilder:
    def __init__(self):
        self.inits: list = []
        self.nodes: list = []

    def weight(self, name: str, t: torch.Tensor) -> str:
        """Add ``t`` (float32) as the initializer ``name``; -> the name."""
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(t.detach().float().cpu().contiguous().numpy(), name))
        return name

    def node(self, op: str, ins: list[str], outs: list[str], **attrs) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, outs, domain="com.microsoft" if op in MS_OPS else "", **attrs))

    def model(self, name: str, inputs: list, outputs: list) -> bytes:
        """The ONNX model (bytes). No onnx.checker: it knows no ONNX Runtime operator (SimplifiedLayerNormalization
        sits in the default domain there); ONNX Runtime checks the graph as it loads it."""
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", MS_OPSET)]
        return helper.make_model(graph, opset_imports=opsets).SerializeToString()
