"""Rewrites of node patterns that exporters write for one layer, before the import walk.

``torch.onnx.export`` has no ONNX ``LRN`` for ``torch.nn.LocalResponseNorm``: both exporters
write PyTorch's formula ``x / (k + alpha * avg_pool3d(pad(x**2)))**beta`` as about ten
nodes (the TorchScript one adds an ``If`` around a ``Squeeze``).  :func:`fuse_torch_lrn`
finds that chain, backwards from its ``Div``, and replaces it by one ``TorchLRN`` node (a
private op type the importer turns into :class:`nbconv.nn.LocalResponseNorm`, PyTorch's own
window placement); the nodes that only fed it are dropped.
"""

from __future__ import annotations

__all__ = ["fuse_torch_lrn", "TORCH_LRN"]

TORCH_LRN = "nbconv.TorchLRN"
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

