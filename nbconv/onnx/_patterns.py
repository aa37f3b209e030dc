"""Rewrites of node patterns that exporters write for one layer, before the import walk.

``torch.onnx.export`` has no ONNX ``LRN`` for ``torch.nn.LocalResponseNorm``: both exporters
write PyTorch's formula ``x / (k + alpha * avg_pool3d(pad(x**2)))**beta`` as about ten
nodes (the TorchScript one adds an ``If`` around a ``Squeeze``).  :func:`fuse_torch_lrn`
finds that chain, backwards from its ``Div``, and replaces it by one ``TorchLRN`` node (a
private op type the importer turns into :class:`nbconv.nn.LocalResponseNorm`, PyTorch's own
window placement); the nodes that only fed it are dropped.

``torch.nn.GroupNorm`` has no ONNX operator below opset 18 (and ``GroupNormalization``-18
scales per group, not per channel): both exporters, and :func:`nbconv.onnx.export`, write it
as ``Reshape`` to (N, G, -1), ``InstanceNormalization`` with unit scale, ``Reshape`` back,
then ``Mul``/``Add`` by per-channel constants.  :func:`fuse_group_norm` finds that chain,
forwards from its ``InstanceNormalization``, and replaces it by one ``nbconv.GroupNorm`` node
(turned into :class:`nbconv.nn.GroupNorm`, whose weight and bias stay trainable).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fuse_torch_lrn", "TORCH_LRN", "fuse_group_norm", "GROUP_NORM"]

TORCH_LRN = "nbconv.TorchLRN"
GROUP_NORM = "nbconv.GroupNorm"
_PASS_THROUGH = ("Reshape", "Squeeze", "Unsqueeze", "Identity", "If")


def _scalar(consts, a, b):
    """(the scalar constant, the other operand) of a binary node, or None."""
    for c, other in ((a, b), (b, a)):
        v = consts.get(c)
        if v is not None and v.size == 1 and other not in consts:
            return float(v.reshape(())), other
    return None


def _outer_input(node) -> str | None:
    """The data input of a pass-through node (for an ``If``: the outer value its then-branch
    reads)."""
    if node.op_type != "If":
        return node.input[0] if node.input else None
    branch = next((a.g for a in node.attribute if a.name == "then_branch"), None)
    if branch is None:
        return None
    inner = {o for n in branch.node for o in n.output}
    reads = [i for n in branch.node for i in n.input if i and i not in inner]
    return reads[0] if reads else None


def _match(div, producer, consts, uses):
    """(x, size, alpha, beta, k, matched nodes) for a LocalResponseNorm chain ending in
    ``div``, else None."""
    if div.op_type != "Div" or len(div.input) != 2:
        return None
    x, chain = div.input[0], [div]

    def step(value, op):
        n = producer.get(value)
        if n is None or n.op_type != op or uses.get(value, 0) != 1:
            return None
        chain.append(n)
        return n

    pw = step(div.input[1], "Pow")
    if pw is None or pw.input[1] not in consts or consts[pw.input[1]].size != 1:
        return None
    beta = float(consts[pw.input[1]].reshape(()))
    add = step(pw.input[0], "Add")
    got = add and _scalar(consts, *add.input)
    if not got:
        return None
    k, v = got
    mul = step(v, "Mul")
    got = mul and _scalar(consts, *mul.input)
    if not got:
        return None
    alpha, v = got
    node = producer.get(v)
    while node is not None and node.op_type in _PASS_THROUGH and uses.get(v, 0) == 1:
        chain.append(node)
        v = _outer_input(node)
        node = producer.get(v)
    pool = step(v, "AveragePool") if node is not None else None
    if pool is None:
        return None
    attrs = {a.name: a for a in pool.attribute}
    kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else []
    if len(kernel) != 3 or kernel[1:] != [1, 1] or any(
            s != 1 for s in (attrs["strides"].ints if "strides" in attrs else [])) or any(
            attrs["pads"].ints if "pads" in attrs else []):
        return None
    size = kernel[0]
    pad = step(pool.input[0], "Pad")
    if pad is None or len(pad.input) < 2 or pad.input[1] not in consts:
        return None
    pads = [int(p) for p in consts[pad.input[1]].reshape(-1)]
    if pads != [0, 0, size // 2, 0, 0, 0, 0, (size - 1) // 2, 0, 0]:
        return None
    v = pad.input[0]
    node = producer.get(v)
    while node is not None and node.op_type in ("Reshape", "Unsqueeze") and uses.get(v) == 1:
        chain.append(node)
        v = node.input[0]
        node = producer.get(v)
    sq = step(v, "Mul")
    if sq is None or list(sq.input) != [x, x]:
        return None
    return x, size, alpha, beta, k, chain


def fuse_torch_lrn(onnx, graph, consts: dict) -> list:
    """The graph's nodes with every PyTorch LocalResponseNorm chain replaced by one node;
    ``consts`` maps value names to the arrays known before the walk."""
    nodes = list(graph.node)
    producer = {o: n for n in nodes for o in n.output}
    uses: dict[str, int] = {}
    for n in nodes:
        for i in set(n.input):
            uses[i] = uses.get(i, 0) + 1
    for o in graph.output:
        uses[o.name] = uses.get(o.name, 0) + 1
    replaced, removed = {}, set()
    for n in nodes:
        m = _match(n, producer, consts, uses) if n.op_type == "Div" else None
        if m is None:
            continue
        x, size, alpha, beta, k, chain = m
        replaced[id(n)] = onnx.helper.make_node(
            TORCH_LRN, [x], [n.output[0]], name=n.name or "lrn", size=size, alpha=alpha,
            beta=beta, bias=k)
        removed |= {id(c) for c in chain}
    if not replaced:
        return nodes
    out = [replaced.get(id(n), n) for n in nodes if id(n) in replaced or id(n) not in removed]
    # drop what fed only the removed nodes (the shape checks around the If)
    while True:
        needed = {i for n in out for i in n.input} | {o.name for o in graph.output}
        for n in out:  # values a kept If reads from inside its branches
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    needed |= {i for s in a.g.node for i in s.input}
        kept = [n for n in out if any(o in needed for o in n.output)]
        if len(kept) == len(out):
            return kept
        out = kept



def _per_channel(value, C: int, rank: int) -> bool:
    """Whether ``value`` broadcasts against (N, C, *spatial) as one number per channel."""
    if value is None or value.ndim > rank:
        return False
    target = (C,) + (1,) * (rank - 2)
    try:
        return np.broadcast_shapes(value.shape, target) == target
    except ValueError:
        return False


def _match_group_norm(inorm, producer, consumers, consts, shapes):
    """(x, G, weight value name, bias value name, matched nodes, last node) for a group-norm
    chain around ``inorm``, else None."""
    def sole(value, op):
        users = consumers.get(value, [])
        if len(users) != 1 or users[0] is None or users[0].op_type != op:
            return None
        return users[0]

    if len(inorm.input) < 3 or len(consumers.get(inorm.input[0], [])) != 1:
        return None
    r1 = producer.get(inorm.input[0])
    if r1 is None or r1.op_type != "Reshape" or len(r1.input) < 2:
        return None
    x = r1.input[0]
    xs = shapes.get(x)
    target = consts.get(r1.input[1])
    if xs is None or len(xs) < 2 or xs[1] is None or target is None or target.size != 3:
        return None
    t0, G, last = (int(v) for v in target.reshape(-1))
    C, rank = xs[1], len(xs)
    if last != -1 or G < 1 or C % G or t0 not in (0, xs[0]):
        return None
    scale, shift = consts.get(inorm.input[1]), consts.get(inorm.input[2])
    if (scale is None or shift is None or scale.size != G or shift.size != G
            or np.any(scale != 1) or np.any(shift != 0)):
        return None
    r2 = sole(inorm.output[0], "Reshape")
    if r2 is None or len(r2.input) < 2:
        return None
    back, shape_node = r2.input[1], producer.get(r2.input[1])
    if shape_node is not None and shape_node.op_type == "Shape":  # Reshape(., Shape(x))
        if shape_node.input[0] != x or len(shape_node.attribute):
            return None
    elif back in consts:  # the traced shape written out (the dynamo exporter)
        want = consts[back].reshape(-1).tolist()
        if len(want) != rank or want[1:] != list(xs[1:]) or want[0] not in (0, xs[0]):
            return None
    else:
        return None
    chain, end, weight, bias = [r1, inorm, r2], r2, "", ""
    mul = sole(r2.output[0], "Mul")
    if mul is not None:
        other = mul.input[1] if mul.input[0] == r2.output[0] else mul.input[0]
        if _per_channel(consts.get(other), C, rank):
            chain.append(mul)
            end, weight = mul, other
            add = sole(mul.output[0], "Add")
            if add is not None:
                other = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
                if _per_channel(consts.get(other), C, rank):
                    chain.append(add)
                    end, bias = add, other
    return x, G, weight, bias, chain, end


def fuse_group_norm(onnx, nodes: list, outputs, consts: dict, shapes: dict) -> list:
    """``nodes`` with every group-norm chain replaced by one ``GROUP_NORM`` node (inputs: x,
    then the names of the constant weight and bias, "" where the chain has none);
    ``outputs`` are the graph's output names, ``shapes`` the inferred shapes."""
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict = {}
    for n in nodes:
        for i in set(n.input):
            consumers.setdefault(i, []).append(n)
    for o in outputs:
        consumers.setdefault(o, []).append(None)  # the graph reads it
    replaced, removed = {}, set()
    for n in nodes:
        if n.op_type != "InstanceNormalization":
            continue
        m = _match_group_norm(n, producer, consumers, consts, shapes)
        if m is None:
            continue
        x, G, weight, bias, chain, end = m
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        replaced[id(end)] = onnx.helper.make_node(
            GROUP_NORM, [x, weight, bias], [end.output[0]], name=end.name or "group_norm",
            num_groups=G, epsilon=eps)
        removed |= {id(c) for c in chain}
    if not replaced:
        return nodes
    out = [replaced.get(id(n), n) for n in nodes if id(n) in replaced or id(n) not in removed]
    needed = {i for n in out for i in n.input} | set(outputs)
    # the Shape nodes that only sized the removed Reshapes
    return [n for n in out if n.op_type != "Shape" or any(o in needed for o in n.output)]
