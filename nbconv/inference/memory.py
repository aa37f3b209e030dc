"""Buffer planning: which values share memory, decided once per planned input shape.

Each value a step writes is one of:

* ``"buffer"``: written into a slot of memory the plan owns, allocated once;
* ``"view"``: a reshaped view of its input (``Flatten``), sharing that memory;
* ``"fresh"``: an array the step allocates itself (an opaque module's result), which may
  also be a view of its inputs.

A slot is reused once the last reader of every value living in it has run (liveness over the
steps in order).  A step's output never shares a slot with its inputs, except for the
elementwise steps (ReLU, residual sum) whose first input dies with them: they write over it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Layout", "plan_memory"]


class Layout:
    """Where each value lives.

    Attributes
    ----------
    slot : dict int -> int
        The slot of each ``"buffer"`` value (and of the values written in place).
    slots : list of (dtype, int)
        Each slot's dtype and size in elements.
    inplace : set of int
        The values written over their step's first input.
    """

    def __init__(self):
        self.slot: dict[int, int] = {}
        self.slots: list[list] = []
        self.inplace: set[int] = set()

    @property
    def nbytes(self) -> int:
        return sum(n * np.dtype(dt).itemsize for dt, n in self.slots)

    def arrays(self, shapes: dict, dtypes: dict) -> dict:
        """The ``"buffer"`` values' arrays: views of one fresh array per slot."""
        memory = [np.empty(n, dtype=dt) for dt, n in self.slots]
        return {v: memory[s][:math.prod(shapes[v])].reshape(shapes[v])
                for v, s in self.slot.items()}


def plan_memory(steps, out: int, kinds: dict, shapes: dict, dtypes: dict,
                elementwise: set) -> Layout:
    """The :class:`Layout` of ``steps`` (their ``inputs``/``output`` values), ``out`` the
    network's result, ``kinds[v]`` each step output's kind ("buffer", "view", "fresh"),
    ``elementwise`` the ids of the steps that may write over their first input."""
    roots: dict[int, frozenset] = {0: frozenset()}  # the slots a value may alias
    for s in steps:
        v, k = s.output, kinds[s.output]
        if k == "buffer":
            roots[v] = frozenset([v])
        elif k == "view":
            roots[v] = roots[s.inputs[0]]
        else:  # fresh: may be a view of any input (a user's forward returning x[:, :2])
            roots[v] = frozenset().union(*(roots[i] for i in s.inputs))
    last = {}
    for i, s in enumerate(steps):
        for v in s.inputs:
            for r in roots[v]:
                last[r] = i
    for r in roots[out]:
        last[r] = len(steps)
    layout = Layout()
    free: list[int] = []
    for i, s in enumerate(steps):
        v = s.output
        if kinds[v] == "buffer":
            first = s.inputs[0] if s.inputs else None
            if (id(s) in elementwise and first in layout.slot and last.get(first) == i
                    and shapes[first] == shapes[v] and dtypes[first] == dtypes[v]):
                layout.slot[v] = layout.slot[first]
                layout.inplace.add(v)
                del last[first]  # its slot goes on living as v's
            else:
                layout.slot[v] = _take(layout, free, dtypes[v], math.prod(shapes[v]))
        # release the slots whose last reader was this step
        for r in {r for u in s.inputs for r in roots[u]}:
            if last.get(r) == i and r in layout.slot:
                free.append(layout.slot[r])
        if kinds[v] == "buffer" and v not in last:  # read by nobody (kept for its effects)
            free.append(layout.slot[v])
    return layout


def _take(layout: Layout, free: list, dtype, n: int) -> int:
    """A free slot of ``dtype`` for ``n`` elements (the smallest that fits, else the largest
    grown to fit), or a new one."""
    same = [s for s in free if layout.slots[s][0] == dtype]
    fits = [s for s in same if layout.slots[s][1] >= n]
    if fits:
        s = min(fits, key=lambda s: layout.slots[s][1])
    elif same:
        s = max(same, key=lambda s: layout.slots[s][1])
        layout.slots[s][1] = n
    else:
        layout.slots.append([dtype, n])
        return len(layout.slots) - 1
    free.remove(s)
    return s
