"""Fusing the activation a model applies right after a GroupNorm into the
norm (gncpu.torch.replace_group_norm).

Fusing is only right where nothing but the activation ever sees the norm's
output, and where the activation module is not also applied to something
else.  Diffusers' ResnetBlock2D, for one, applies the same ``nn.SiLU``
(``self.nonlinearity``) after norm1, after norm2 and to the time embedding,
and in its "scale_shift" mode puts arithmetic between norm2 and the SiLU: the
SiLU module can be neither removed nor turned into an identity.  So fusion is
decided per call site, from code, in two structures only:

1. ``nn.Sequential`` (exactly that class): a swapped GroupNorm directly
   followed by an activation module.  The Sequential passes the norm's output
   to the next module alone, so the norm takes the activation and that slot
   of the Sequential becomes ``nn.Identity`` (the activation object itself is
   untouched).  Done only when the norm module occurs once in the model.

2. A module whose ``forward`` (read from its source with ``ast``) contains
   the two consecutive statements::

       h = self.norm(<one argument>)
       h = self.act(h)

   where ``self.norm`` is a swapped GroupNorm and ``self.act`` an
   ``nn.SiLU``, ``nn.ReLU`` or ``nn.GELU(approximate="none")``.  The norm's
   output is bound to ``h`` and rebound by the next statement, so no other
   code can see it.  The norm statement may also end each branch of an
   ``if`` that the activation statement follows (``if a: h = self.norm(h)
   else: ...``): ``if``; S  is the same as  S at the end of each branch.
   That instance's ``forward`` becomes the same function, recompiled from
   the same source with the same globals and defaults, in which the pair
   reads ``h = self.norm(<argument>, activation="silu")``; every other use of
   ``self.act`` and ``self.norm`` is unchanged.  It is set on the instance
   (``module.forward``), so the class and its other instances are untouched.

Not fused: anything else (a functional ``F.silu`` call, a norm whose output
is also used elsewhere, a forward that cannot be read or has a closure or
decorators, activations or norms carrying forward hooks).  A fused model
saves and loads the same ``state_dict`` and survives ``copy.deepcopy``.
Pickled whole (``torch.save(model)``), it loads unfused (the instance's
forward pickles by name, so it comes back as the class's own): correct, and
fused again by another replace_group_norm.
"""

import ast
import copy
import inspect
import textwrap
import types

from torch import nn

from .torch import GroupNorm


def _activation_kind(module):
    """"silu", "relu" or "gelu" for an activation module gncpu computes the
    same way, else None."""
    if module is None or _has_forward_hooks(module):
        return None
    kind = type(module)
    if kind is nn.SiLU:
        return "silu"
    if kind is nn.ReLU:
        return "relu"
    if kind is nn.GELU and module.approximate == "none":
        return "gelu"
    return None


def _has_forward_hooks(module):
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _fusable_norm(module):
    return (isinstance(module, GroupNorm) and module.activation is None
            and not _has_forward_hooks(module))


def _fuse_sequentials(model, occurrences):
    fused = 0
    for seq in model.modules():
        if type(seq) is not nn.Sequential:
            continue
        items = list(seq._modules.items())
        for (_, norm), (act_name, act) in zip(items, items[1:]):
            kind = _activation_kind(act)
            if kind and _fusable_norm(norm) and occurrences.get(id(norm)) == 1:
                norm.activation = kind
                seq._modules[act_name] = nn.Identity()
                fused += 1
    return fused


class _ForwardRewriter:
    """Rewrites one forward's AST for one module instance (see the module doc)."""

    def __init__(self, module, self_name):
        self.module = module
        self.self_name = self_name
        self.fused = 0

    def _self_attr(self, node):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == self.self_name):
            return node.attr
        return None

    def _activation_statement(self, stmt):
        """(h, kind) for ``h = self.act(h)``."""
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.Call)):
            return None
        call, target = stmt.value, stmt.targets[0].id
        name = self._self_attr(call.func)
        if (name is None or call.keywords or len(call.args) != 1
                or not isinstance(call.args[0], ast.Name) or call.args[0].id != target):
            return None
        kind = _activation_kind(getattr(self.module, name, None))
        return (target, kind) if kind else None

    def _norm_call(self, stmt, target):
        """The call of ``target = self.norm(x)``, else None."""
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == target
                and isinstance(stmt.value, ast.Call)):
            return None
        call = stmt.value
        name = self._self_attr(call.func)
        if (name is None or call.keywords or len(call.args) != 1
                or isinstance(call.args[0], ast.Starred)):
            return None
        return call if _fusable_norm(getattr(self.module, name, None)) else None

    def _tail_fusable(self, stmt, target):
        if isinstance(stmt, ast.If):
            return (self._tail_fusable(stmt.body[-1], target)
                    or bool(stmt.orelse) and self._tail_fusable(stmt.orelse[-1], target))
        return self._norm_call(stmt, target) is not None

    def rewrite(self, stmts):
        """Fuses the pairs in a statement list and those nested in it."""
        for stmt in stmts:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue  # another scope: `self` may be something else there
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    self.rewrite(inner)
            for handler in getattr(stmt, "handlers", ()):
                self.rewrite(handler.body)
        i = 1
        while i < len(stmts):
            found = self._activation_statement(stmts[i])
            if found:
                target, kind = found
                previous = stmts[i - 1]
                call = self._norm_call(previous, target)
                if call is not None:
                    call.keywords.append(ast.keyword(arg="activation", value=ast.Constant(kind)))
                    del stmts[i]
                    self.fused += 1
                    continue
                if isinstance(previous, ast.If) and self._tail_fusable(previous, target):
                    # `if ...; S` == S at the end of each branch.
                    activation = stmts.pop(i)
                    previous.body.append(copy.deepcopy(activation))
                    previous.orelse.append(copy.deepcopy(activation))
                    self.rewrite(previous.body)
                    self.rewrite(previous.orelse)
                    continue
            i += 1


def _strip_annotations_and_defaults(fn_def):
    """Annotations and defaults are not evaluated again (they may name
    class-level objects); the original function's defaults are reused."""
    arguments = fn_def.args
    for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
        arg.annotation = None
    for arg in (arguments.vararg, arguments.kwarg):
        if arg is not None:
            arg.annotation = None
    arguments.defaults = []
    arguments.kw_defaults = [None] * len(arguments.kwonlyargs)
    fn_def.returns = None


def _fuse_forward(module):
    forward = type(module).forward
    own = module.__dict__.get("forward")
    if own is not None and getattr(own, "__func__", None) is not forward:
        return 0  # set on the instance: fused already, or someone else's
    if not isinstance(forward, types.FunctionType) or forward.__code__.co_freevars:
        return 0
    try:
        source = textwrap.dedent(inspect.getsource(forward))
        tree = ast.parse(source)
        filename = inspect.getsourcefile(forward) or "<gncpu fused forward>"
        first_line = forward.__code__.co_firstlineno
    except (OSError, TypeError, SyntaxError):
        return 0
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
        return 0
    fn_def = tree.body[0]
    if fn_def.decorator_list or not fn_def.args.args:
        return 0
    self_name = fn_def.args.args[0].arg
    if any(isinstance(node, ast.Name) and node.id == self_name
           and not isinstance(node.ctx, ast.Load) for node in ast.walk(fn_def)):
        return 0  # `self` rebound somewhere
    rewriter = _ForwardRewriter(module, self_name)
    rewriter.rewrite(fn_def.body)
    if not rewriter.fused:
        return 0
    _strip_annotations_and_defaults(fn_def)
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, first_line - 1)  # tracebacks point at the original lines
    namespace = {}
    exec(compile(tree, filename, "exec", dont_inherit=True), forward.__globals__, namespace)
    fused = namespace[fn_def.name]
    fused.__defaults__ = forward.__defaults__
    fused.__kwdefaults__ = forward.__kwdefaults__
    fused.__qualname__ = forward.__qualname__
    fused.__module__ = forward.__module__
    fused.__doc__ = forward.__doc__
    fused.__gncpu_unfused__ = forward  # what it was recompiled from
    module.forward = types.MethodType(fused, module)
    return rewriter.fused


def fuse_activations(model):
    """Fuses what it safely can (see the module doc); returns the number of
    call sites fused."""
    occurrences = {}
    for module in model.modules(remove_duplicate=False):
        occurrences[id(module)] = occurrences.get(id(module), 0) + 1
    fused = _fuse_sequentials(model, occurrences)
    for module in model.modules():
        if type(module) is nn.Sequential or isinstance(module, GroupNorm):
            continue
        if any(_fusable_norm(child) for child in module._modules.values()):
            fused += _fuse_forward(module)
    return fused
