"""How a module call is recorded, and how explicit backward passes find their contexts.

Every ``forward`` and ``backward`` a ``Module`` subclass defines is wrapped (by
``Module.__init_subclass__``).  With gradients enabled, a forward call is one of three kinds:

* **recorded, with its own backward** (the built-in layers, ``Sequential``, ``Graph``, a
  custom module that defines ``backward``): the forward runs on plain arrays with recording
  off inside (an *explicit zone*: the module's own backward covers all of it), and the call
  becomes one record, a :class:`~nbconv.recording.Node`, holding a snapshot of the state the
  forward left in the module and its sub-modules.  Its backward restores that snapshot and
  calls ``module.backward`` -- so a module used three times has three contexts.
* **transparent** (a module whose ``forward`` is not covered by a hand-written ``backward``):
  its inputs become boundary records and its forward runs with recording on, so that every
  call inside is recorded; ``module.backward(dy)`` then walks those records back to the
  boundaries (the default :func:`recorded_backward`).
* **inside an explicit zone** (a sub-module called by a module with its own backward): run
  as written; a module called a second time in one zone first has its previous context
  saved, and the zone's explicit backward hands those contexts back in reverse order (a
  stack), so the README's ``backward`` written by hand stays right for reused layers.

A module's explicit ``backward`` called a second time without a new forward raises when the
module has parameters (their gradients would be added twice).
"""

from __future__ import annotations

import functools
import threading
import types

import numpy as np

from ..recording import (
    Node,
    SecondBackwardError,
    TrackedArray,
    Unfollowed,
    origin,
    run_backward,
    state,
    wrap,
)
from ..recording.graph import Boundary, needs_grad
from ._input_dtype import cast_inputs

__all__ = ["wrap_forward", "wrap_backward", "instance_forward", "recorded_backward",
           "uses_recorded_backward", "capture", "restore"]

#: ``Module`` (set by nbconv.nn.module once the class exists)
BASE = None
#: the per-call attributes this module sets on a Module (left out of copies and pickles)
TRANSIENT = frozenset({"_zone", "_record", "_recorded_call", "_fresh"})
_covered: dict = {}


def defining_class(cls, method: str):
    """The class in ``cls``'s MRO that defines ``method`` (None if none does)."""
    for k in cls.__mro__:
        if method in k.__dict__:
            return k
    return None


def uses_recorded_backward(cls) -> bool:
    """Whether instances of ``cls`` use the default backward (walk their recorded forward)."""
    return defining_class(cls, "backward") is BASE


def _has_own_backward(cls, defining) -> bool:
    """Whether the ``forward`` defined in class ``defining`` is covered by the hand-written
    ``backward`` of ``cls``: one defined in ``defining`` or below it.  (A subclass that
    overrides only ``forward`` of a layer is transparent; its ``super().forward`` is then the
    layer's own, recorded with the layer's backward.)"""
    key = (cls, defining)
    covered = _covered.get(key)
    if covered is None:
        owner = defining_class(cls, "backward")
        covered = owner is not BASE and owner is not None and issubclass(owner, defining)
        _covered[key] = covered
    return covered


def _forward_covered(cls) -> bool:
    """Whether the ``forward`` that instances of ``cls`` run is covered by their
    ``backward`` (else their backward walks the recorded forward)."""
    key = (cls, None)
    covered = _covered.get(key)
    if covered is None:
        owner = defining_class(cls, "forward")
        covered = owner is not None and _has_own_backward(cls, owner)
        _covered[key] = covered
    return covered


def _holds_recorded(container) -> bool:
    """Whether a container whose backward only calls its children's (``Sequential``,
    ``Graph``) holds a module whose forward is recorded op by op.  Called with recording on,
    such a container is recorded op by op too, so that the whole forward is one graph
    walked once (rather than one backward walk per block, inside the container's)."""
    for child in container.__dict__["_children"].values():
        cls = type(child)
        covered = _covered.get((cls, None))
        if covered is None:
            covered = _forward_covered(cls)
        if not covered or (cls._backward_from_children and _holds_recorded(child)):
            return True
    return False


# --------------------------------------------------------------------------- snapshots

def capture(module) -> list:
    """The state of ``module`` and its sub-modules (a copy of each one's attributes)."""
    out, todo = [], [module]
    while todo:
        m = todo.pop()
        d = m.__dict__
        out.append((m, d.copy()))
        children = d.get("_children")
        if children:
            todo.extend(children.values())
    return out


def restore(snapshot) -> None:
    """Put a :func:`capture` back."""
    for m, d in snapshot:
        m.__dict__.update(d)


class _Zone:
    """One explicit forward pass: which modules ran in it, and the earlier contexts of
    those that ran more than once."""

    __slots__ = ("seen", "stacks")

    def __init__(self):
        self.seen = set()
        self.stacks = {}

    def enter(self, module) -> None:
        if module in self.seen:
            self.keep(module)
        else:
            self.seen.add(module)

    def keep(self, module) -> None:
        """Save the context of ``module``'s previous call (its state still is) before it
        runs again."""
        self.stacks.setdefault(module, []).append(capture(module))

    def cursor(self) -> dict:
        """The contexts to hand back, last call first, for one explicit backward pass."""
        return {m: stack + [capture(m)] for m, stack in self.stacks.items()}


# --------------------------------------------------------------------------- forward

def _plain(a):
    if type(a) is np.ndarray:
        return a
    v, p = origin(a)
    return v


def _name(module) -> str:
    return type(module).__name__


def instance_forward(module, fn):
    """``fn(*inputs)`` as the forward of this one ``module`` (set as ``module.forward``),
    recorded as the class's own forward is: its ``backward`` (the class's, or one also set
    on the instance) covers it."""
    owner = defining_class(type(module), "backward")
    return types.MethodType(wrap_forward(owner, lambda _self, *a, **k: fn(*a, **k)), module)


def wrap_forward(defining, raw):
    """``raw`` (a ``forward`` defined in class ``defining``) with recording around it."""
    own_backward = {}  # type -> whether its backward covers this forward (_has_own_backward)

    @functools.wraps(raw)
    def forward(self, *args, **kwargs):
        if not _entry.inside:
            return _enter(forward, self, args, kwargs)
        st = state
        if not st.grad:  # nothing kept: a later backward must not find an older forward
            self.__dict__.pop("_recorded_call", None)
            return raw(self, *args, **kwargs)
        cls = type(self)
        own = own_backward.get(cls)
        if own is None:
            own = own_backward[cls] = _has_own_backward(cls, defining)
        stack = st.forwarding
        if stack and stack[-1] is self and (not own or not st.record):
            return raw(self, *args, **kwargs)  # super().forward(...) inside this forward
        if own and st.record and cls._backward_from_children and _holds_recorded(self):
            own = False  # a container of PyTorch-style blocks: one recorded graph
        if not own:
            return _transparent_call(self, raw, args, kwargs)
        if st.record:
            return _recorded_call(self, raw, args, kwargs)
        # inside an explicit zone: run as written, keeping a reused module's earlier context
        seen = st.zone.seen
        if self in seen:
            st.zone.keep(self)
        else:
            seen.add(self)
        for a in args:
            if type(a) is not np.ndarray:
                args = [_plain(a) for a in args]
                break
        if kwargs:
            kwargs = {k: _plain(v) for k, v in kwargs.items()}
        stack.append(self)
        try:
            y = raw(self, *args, **kwargs)
        except (ValueError, TypeError) as e:
            _note_where(e, stack)
            raise
        finally:
            stack.pop()
        d = self.__dict__
        d["_fresh"] = True
        if "_recorded_call" in d:  # (a container's earlier call may have been recorded)
            del d["_recorded_call"]
        return y

    forward.__nbconv_raw__ = raw
    return forward


class _Entry(threading.local):
    inside = False  # whether a module's forward is running (in this thread)


_entry = _Entry()


def _enter(forward, module, args, kwargs):
    """The outermost module call (what the user calls): its inputs are cast to the model's
    dtype once here (:mod:`nbconv.nn._input_dtype`), not in every layer."""
    args = cast_inputs(module, args)
    _entry.inside = True
    try:
        return forward(module, *args, **kwargs)
    finally:
        _entry.inside = False


def _note_where(error, stack) -> None:
    """Add to ``error`` (once, where it is raised) the dotted path of the sub-module whose
    forward raised it, e.g. ``Net.fc1 (Linear)``: the op's own message names only the op."""
    if getattr(error, "_nbconv_where", False) or not hasattr(error, "add_note"):
        return
    error._nbconv_where = True
    names = []
    for parent, child in zip(reversed(stack[:-1]), reversed(stack[1:])):
        name = next((k for k, m in parent.__dict__.get("_children", {}).items()
                     if m is child), None)
        if name is None:
            break
        names.append(name)
    if names:
        root = stack[len(stack) - 1 - len(names)]
        error.add_note(f"(in {type(root).__name__}.{'.'.join(reversed(names))}, a "
                       f"{type(stack[-1]).__name__})")


def _recorded_call(self, raw, args, kwargs):
    """A call of a module with its own backward, with recording on: one record."""
    st = state
    name = _name(self)
    values, parents = [], []
    for a in args:
        v, p = origin(a)
        if type(p) is Unfollowed:
            raise p.error(name)
        if isinstance(v, np.ndarray):
            parents.append(p)
        values.append(v)
    kvalues = {}
    for k, a in kwargs.items():
        v, p = origin(a)
        if type(p) is Unfollowed:
            raise p.error(name)
        kvalues[k] = v
    zone = _Zone()
    record_before, zone_before = st.record, st.zone
    st.record, st.zone = False, zone
    st.forwarding.append(self)
    try:
        y = raw(self, *values, **kvalues)
    except (ValueError, TypeError) as e:
        _note_where(e, st.forwarding)
        raise
    finally:
        st.forwarding.pop()
        st.record, st.zone = record_before, zone_before
    d = self.__dict__
    d["_fresh"] = True
    d["_zone"] = zone
    d.pop("_recorded_call", None)
    if type(y) is TrackedArray:  # made by a transparent sub-module: covered by this record
        y = y.view(np.ndarray)
    if type(y) is not np.ndarray:
        if isinstance(y, (tuple, list)) and any(isinstance(v, np.ndarray) for v in y):
            what = (f"{name}, which returns several arrays and has a hand-written backward "
                    "(nbconv records a module call with one output: for a built-in layer use "
                    "its functional op, e.g. nc.max_pool2d(x, ..., return_indices=True), which "
                    "is recorded; for your own module, remove its backward so that its forward "
                    "is recorded)")
            return type(y)(wrap(v, Unfollowed(what)) if isinstance(v, np.ndarray)
                           and v.dtype.kind == "f" else v for v in y)
        return y  # a device array or a non-array: not recorded
    parents = tuple(parents)
    node = Node(name, parents, _ModuleBackward(self, capture(self), parents), self)
    d["_record"] = node
    return wrap(y, node)


class _ModuleBackward:
    """The backward of one recorded module call: its snapshot, then ``module.backward``."""

    __slots__ = ("module", "snapshot", "parents")

    def __init__(self, module, snapshot, parents):
        self.module, self.snapshot, self.parents = module, snapshot, parents

    def __call__(self, g):
        st = state
        restore(self.snapshot)
        module, parents = self.module, self.parents
        cursor_before = st.cursor
        st.cursor = None
        st.from_record = True
        try:
            if (not any(map(needs_grad, parents))
                    and getattr(module, "_supports_need_dx", False)):
                module.backward(g, need_dx=False)
                return (None,) * len(parents)
            dx = module.backward(g)
        finally:
            st.cursor = cursor_before
            st.from_record = False
        n = len(parents)
        if isinstance(dx, (tuple, list)):
            dx = tuple(dx)[:n]
            return dx + (None,) * (n - len(dx))
        return (dx,) + (None,) * (n - 1)


def _transparent_call(self, raw, args, kwargs):
    """A call of a module whose forward is recorded op by op (no hand-written backward)."""
    st = state
    name = _name(self)
    bounds = []

    def boundary(a):
        v, p = origin(a)
        if type(p) is Unfollowed:
            raise p.error(name)
        if not (isinstance(v, np.ndarray) and v.dtype.kind == "f"):
            return a
        b = Boundary(f"input of {name}", p, v.shape, v.dtype)
        bounds.append(b)
        return wrap(v, b)

    args = [boundary(a) for a in args]
    kwargs = {k: boundary(a) for k, a in kwargs.items()}
    zone = st.zone
    if zone is not None and not st.record:
        zone.enter(self)
    record_before = st.record
    st.record, st.zone = True, None
    st.forwarding.append(self)
    try:
        y = raw(self, *args, **kwargs)
    except (ValueError, TypeError) as e:
        _note_where(e, st.forwarding)
        raise
    finally:
        st.forwarding.pop()
        st.record, st.zone = record_before, zone
    d = self.__dict__
    d["_recorded_call"] = (tuple(bounds), y)
    d["_fresh"] = True
    return y


# --------------------------------------------------------------------------- backward

def _has_parameters(module) -> bool:
    """Whether ``module`` or a sub-module has a parameter (a second backward would add its
    gradient twice; without parameters it only gives the same input gradient again)."""
    return next(iter(module.parameters()), None) is not None


def _second_backward(name):
    return SecondBackwardError(
        f"{name}.backward called a second time after one forward pass: the first backward "
        "already added this forward's gradients (a second would double them). Run forward "
        "again before each backward")


def wrap_backward(defining, raw):
    """``raw`` (a ``backward`` defined in class ``defining``) with the checks and context
    hand-back of explicit backward passes around it."""

    @functools.wraps(raw)
    def backward(self, *args, **kwargs):
        st = state
        stack = st.backwarding
        if stack and stack[-1] is self:  # super().backward(...)
            return raw(self, *args, **kwargs)
        covered = _covered.get((type(self), None))
        if covered is None:
            covered = _forward_covered(type(self))
        if raw is not recorded_backward and (not covered or "_recorded_call" in self.__dict__):
            # a subclass that overrides forward only, or a container of PyTorch-style blocks:
            # its forward was recorded
            return BASE.backward(self, *args, **kwargs)
        cursor = st.cursor
        d = self.__dict__
        if cursor is None:  # outermost: called by the user, by fit, or by a record
            from_record = st.from_record
            st.from_record = False
            if d.get("_fresh") is False and _has_parameters(self):
                raise _second_backward(_name(self))
            zone = d.get("_zone")
            st.cursor = zone.cursor() if zone is not None else {}
            stack.append(self)
            try:
                out = raw(self, *args, **kwargs)
            finally:
                stack.pop()
                st.cursor = None
            d["_fresh"] = False
            if not from_record:  # the explicit backward consumed the forward's record
                node = d.get("_record")
                if node is not None:
                    node.backward = None
            return out
        contexts = cursor.get(self)
        if contexts is not None:
            if not contexts:
                raise RuntimeError(
                    f"{_name(self)}.backward called more times than its forward in one "
                    "explicit backward pass")
            restore(contexts.pop())
        stack.append(self)
        try:
            return raw(self, *args, **kwargs)
        finally:
            stack.pop()

    backward.__nbconv_raw__ = raw
    return backward


def recorded_backward(self, dy, need_dx=True):
    """Backward through the recorded forward pass of this module (its last call): every
    module and op it called sends its gradient back, parameters accumulate theirs, and the
    gradient of the input is returned (a tuple for several inputs; None with
    ``need_dx=False``).  A module that defines ``backward`` by hand uses that instead."""
    name = _name(self)
    call = self.__dict__.get("_recorded_call")
    if call is None:
        raise RuntimeError(
            f"{name}.backward: there is no recorded forward pass to go back through. Run "
            f"forward with gradients enabled (not inside nc.no_grad()) first; {name} has no "
            "hand-written backward, so nbconv records its forward as it runs")
    bounds, y = call
    outs = y if isinstance(y, (tuple, list)) else (y,)
    grads = dy if isinstance(y, (tuple, list)) else (dy,)
    if len(grads) != len(outs):
        raise ValueError(f"{name}.backward: forward returned {len(outs)} outputs, argument "
                         f"'dy' has {len(grads)} gradients")
    roots = []
    for i, (out, g) in enumerate(zip(outs, grads)):
        node = getattr(out, "_node", None)
        if g is None:
            continue
        g = np.asarray(origin(g)[0])
        if g.shape != np.shape(out):
            raise ValueError(f"{name}.backward: argument 'dy' has shape {g.shape} but output "
                             f"{i} of the forward pass has shape {np.shape(out)}")
        if type(node) is Unfollowed:
            raise node.error(f"{name}.backward")
        if not isinstance(node, Node):
            raise RuntimeError(
                f"{name}.backward: output {i} of {name}.forward was not recorded (a plain "
                "array: made by np.asarray, or on a CUDA device, where recording does not "
                "run); return what recorded modules and ops computed, or write "
                f"{name}.backward by hand")
        roots.append((node, g.astype(out.dtype) if g.dtype != out.dtype else g))
    for b in bounds:
        b.collect = need_dx
    try:
        reached = run_backward(roots, stop=bounds)
    finally:
        for b in bounds:
            b.collect = False
    if not need_dx:
        return None
    dxs = [reached.get(b) if b in reached else np.zeros(b.shape, b.dtype) for b in bounds]
    return dxs[0] if len(dxs) == 1 else tuple(dxs)
