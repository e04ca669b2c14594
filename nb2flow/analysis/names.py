"""Which names a piece of notebook code reads and writes, in execution order.

The code is analysed as the notebook runs it: at module scope, statement after statement.
A name is an *input* when it is read before the code has surely bound it (a read inside a
branch or loop after a write in another branch still counts). Writes include in-place
changes: ``df['x'] = ...``, ``obj.attr = ...``, ``x += 1``, ``del x[k]`` and a method call
on a name (``model.fit(X, y)``, ``lst.append(v)``) whose result is not used, except for
methods known not to change their object (``df.head()``, ``model.predict(X)``); a call
whose result is used changes its object only for methods known to (``x = lst.pop()``).

Nested scopes (functions, lambdas, classes, comprehensions) follow Python's rules: their
own locals stay inside; the free names they read count as reads where they are defined
(conservative: the function may be called later), and names they declare ``global`` and
assign count as (possible) writes. A walrus inside a comprehension binds in the cell.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

#: names every module has without binding them
BUILTIN_NAMES = frozenset(dir(builtins)) | {
    "__name__",
    "__file__",
    "__doc__",
    "__builtins__",
    "__spec__",
    "__loader__",
    "__package__",
    "__annotations__",
}

#: methods that return a new value and leave their object alone; any other method called
#: on a name counts as an in-place change of that name (unless called with inplace=True)
PURE_METHODS = frozenset(
    """
    head tail describe info copy groupby agg aggregate mean median mode sum prod min max std
    var sem count nunique unique value_counts isna isnull notna notnull any all apply applymap
    map astype to_numpy to_list tolist to_dict to_csv to_parquet to_json to_pickle to_excel
    to_frame to_string to_markdown to_records to_datetime merge join query filter select_dtypes
    drop dropna fillna rename replace sort_values sort_index reset_index set_index pivot
    pivot_table melt stack unstack corr cov round abs cumsum cumprod plot hist boxplot
    predict predict_proba predict_log_proba decision_function score transform
    inverse_transform get_params get_feature_names_out keys values items get format
    startswith endswith split rsplit strip lstrip rstrip lower upper title encode decode find
    rfind index isin between where mask clip diff pct_change shift rolling expanding resample
    ewm reshape flatten ravel dot argmax argmin argsort nonzero item sample nlargest
    nsmallest idxmax idxmin total_seconds strftime isoformat exists is_file is_dir joinpath
    read_text read_bytes glob rglob with_suffix with_name summary show savefig evaluate
    """.split()
)


#: methods that change their object even when their result is used (``x = lst.pop()``,
#: ``X = scaler.fit_transform(X_train)`` fits the scaler, ``line = fh.readline()`` moves the file)
IN_PLACE_METHODS = frozenset(
    """
    append extend insert remove pop popitem clear update setdefault sort reverse add discard
    fit fit_transform fit_predict partial_fit set_params set_output
    read readline readlines write writelines seek send resize fill
    normal uniform integers random choice permutation standard_normal exponential poisson
    binomial multinomial multivariate_normal lognormal laplace logistic gamma beta dirichlet
    chisquare geometric gumbel hypergeometric negative_binomial pareto rayleigh triangular
    vonmises wald weibull zipf standard_t standard_cauchy standard_exponential standard_gamma
    randint randn rand random_sample gauss randrange getrandbits
    """.split()
)
# (the draws of a random generator, ``x = rng.normal(size=3)``, move its state on: a later
# draw from it gives other numbers)


@dataclass(frozen=True)
class Names:
    """Result of :func:`analyse`: never changed once built (tuples keep first-occurrence
    order)."""

    reads: tuple[str, ...] = ()  # read before surely bound here
    writes: tuple[str, ...] = ()  # bound, rebound or changed in place
    bound: tuple[str, ...] = ()  # bound by assignment/def/import/for... (no del)
    mutated: tuple[str, ...] = ()  # changed in place (subset of writes)
    definite: frozenset[str] = frozenset()  # surely bound when the code ends
    deleted: frozenset[str] = frozenset()  # unbound by `del name` at the end
    imported: frozenset[str] = frozenset()  # bound by import statements
    defined: frozenset[str] = frozenset()  # bound by def / class statements
    star_imports: tuple[str, ...] = ()  # modules of `from m import *`
    resources: frozenset[str] = frozenset()  # `with ... as x`, `except E as x` names
    global_writes: tuple[str, ...] = ()  # set by functions declaring global
    loop_only: frozenset[str] = frozenset()  # bound only as `for` targets
    copies: tuple[tuple[str, str], ...] = ()  # `a = b`: (a, b), in order
    all_reads: frozenset[str] = frozenset()  # every name read, bound first or not


class _Collector:
    """The mutable side of :class:`Names` while code is walked (dicts as ordered sets, so
    adding a name is O(1) whatever the size of the code)."""

    def __init__(self) -> None:
        self.reads: dict[str, None] = {}
        self.writes: dict[str, None] = {}
        self.bound: dict[str, None] = {}
        self.mutated: dict[str, None] = {}
        self.definite: set[str] = set()
        self.deleted: set[str] = set()
        self.imported: set[str] = set()
        self.defined: set[str] = set()
        self.star_imports: list[str] = []
        self.resources: set[str] = set()
        self.global_writes: dict[str, None] = {}
        self.loop_only: set[str] = set()
        self.copies: list[tuple[str, str]] = []
        self.all_reads: set[str] = set()

    def freeze(self) -> Names:
        return Names(
            reads=tuple(self.reads),
            writes=tuple(self.writes),
            bound=tuple(self.bound),
            mutated=tuple(self.mutated),
            definite=frozenset(self.definite),
            deleted=frozenset(self.deleted),
            imported=frozenset(self.imported),
            defined=frozenset(self.defined),
            star_imports=tuple(self.star_imports),
            resources=frozenset(self.resources),
            global_writes=tuple(self.global_writes),
            loop_only=frozenset(self.loop_only),
            copies=tuple(self.copies),
            all_reads=frozenset(self.all_reads),
        )


def analyse(code: str | ast.Module, source: str | None = None) -> Names:
    """Read/write sets of ``code`` run at module scope. Raises SyntaxError on bad code.
    ``source``, for a tree: the text it was parsed from (what :func:`remembering` keys on)."""
    memo = _memo.get()
    key = code if isinstance(code, str) else source
    if memo is not None and key is not None and (found := memo.get(key)) is not None:
        return found
    tree = ast.parse(code) if isinstance(code, str) else code
    walker = _ModuleScope()
    walker.block(tree.body)
    names = walker.names.freeze()
    if memo is not None and key is not None:
        memo[key] = names
    return names


_memo: ContextVar[dict[str, Names] | None] = ContextVar("nb2flow_names_memo", default=None)


@contextmanager
def remembering(memo: dict[str, Names]) -> Iterator[None]:
    """Inside, :func:`analyse` answers code it analysed before from ``memo`` (code text ->
    Names), which the caller keeps between calls: the Jupyter server analyses a notebook
    again after every edit, and only the edited cells' code is new. Names are frozen
    values, safe to share; syntax trees are not shared (passes key statements by identity)."""
    token = _memo.set(memo)
    try:
        yield
    finally:
        _memo.reset(token)


def sequence(parts: list[Names]) -> Names:
    """The names of code made of ``parts`` run one after the other (same as analysing the
    joined code, without parsing it again)."""
    if len(parts) == 1:
        return parts[0]
    out = _Collector()
    nonloop: set[str] = set()
    aliases: dict[str, set[str]] = {}  # from the parts so far (see _ModuleScope.alias)
    for part in parts:
        for name in part.reads:
            if name not in out.definite:
                out.reads[name] = None
        # a change through a name an earlier part made an alias changes the other name too
        for name in part.mutated:
            for other in sorted(aliases.get(name, set()) - {name}):
                out.writes[other] = None
                out.mutated[other] = None
        _follow_aliases(aliases, part)
        out.writes.update(dict.fromkeys(part.writes))
        out.bound.update(dict.fromkeys(part.bound))
        out.mutated.update(dict.fromkeys(part.mutated))
        out.deleted = (out.deleted - set(part.bound)) | part.deleted
        out.definite = (out.definite - part.deleted) | part.definite
        out.imported |= part.imported
        out.defined |= part.defined
        out.star_imports += part.star_imports
        out.all_reads |= part.all_reads
        out.resources |= part.resources
        out.loop_only |= part.loop_only
        out.copies += part.copies
        nonloop |= set(part.bound) - part.loop_only
        out.global_writes.update(dict.fromkeys(part.global_writes))
    out.loop_only -= nonloop
    return out.freeze()


def _follow_aliases(aliases: dict[str, set[str]], part: Names) -> None:
    """Update ``aliases`` with the copies of ``part`` (``a = b``); names it binds otherwise
    no longer share an object (conservatively: the order inside a part is not known)."""
    targets = {target for target, _ in part.copies}
    for name in part.bound:
        if name not in targets and name in aliases:
            aliases.pop(name).discard(name)
    for target, source in part.copies:
        if target in aliases:
            aliases.pop(target).discard(target)
        shared = aliases.setdefault(source, {source})
        shared.add(target)
        aliases[target] = shared


class _ModuleScope:
    def __init__(self) -> None:
        self.names = _Collector()
        self.bound: set[str] = set()  # surely bound at this point
        self.in_loop_target = False
        self.other_binds: set[str] = set()  # bound other than as a `for` target
        # `a = b` makes two names for one object: name -> the names sharing its object
        self.aliases: dict[str, set[str]] = {}

    # -- recording ----------------------------------------------------------------------
    def read(self, name: str) -> None:
        self.names.all_reads.add(name)
        if name not in self.bound:
            self.names.reads[name] = None

    def bind(self, name: str, *, surely: bool = True, same_object: bool = False) -> None:
        if not same_object:
            self.unalias(name)
        self.names.writes[name] = None
        self.names.bound[name] = None
        if self.in_loop_target:
            self.names.loop_only.add(name)
        else:
            self.other_binds.add(name)
        self.names.deleted.discard(name)
        if surely:
            self.bound.add(name)

    def mutate(self, name: str) -> None:
        """``name``'s object changes in place: so does every name sharing it."""
        for changed in [name, *sorted(self.aliases.get(name, set()) - {name})]:
            self.read(changed)
            self.names.writes[changed] = None
            self.names.mutated[changed] = None

    def alias(self, target: str, source: str) -> None:
        self.names.copies.append((target, source))
        shared = self.aliases.setdefault(source, {source})
        shared.add(target)
        self.aliases[target] = shared

    def unalias(self, name: str) -> None:
        shared = self.aliases.pop(name, None)
        if shared is not None:
            shared.discard(name)

    # -- statements ---------------------------------------------------------------------
    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.stmt(stmt)
        self.names.definite = set(self.bound)
        self.names.loop_only -= self.other_binds

    def branch(self, body: list[ast.stmt]) -> set[str]:
        """Run ``body`` as a branch that may or may not run; returns what it surely binds."""
        saved = set(self.bound)
        for stmt in body:
            self.stmt(stmt)
        result = self.bound
        self.bound = saved
        return result

    def stmt(self, node: ast.stmt) -> None:  # noqa: C901 - one dispatch over statement kinds
        match node:
            case ast.Assign(targets=targets, value=value):
                self.expr(value)
                for target in targets:
                    self.target(target)
                    if isinstance(target, ast.Name) and isinstance(value, ast.Name):
                        self.alias(target.id, value.id)
            case ast.AnnAssign(target=target, annotation=annotation, value=value):
                self.expr(annotation)
                if value is not None:
                    self.expr(value)
                    self.target(target)
                elif not isinstance(target, ast.Name):
                    self.target(target)
            case ast.AugAssign(target=target, value=value):
                self.expr(value)
                if isinstance(target, ast.Name):
                    # `x += v` changes a list, a frame, an array... in place (and rebinds)
                    self.mutate(target.id)
                    self.bind(target.id, same_object=True)
                else:
                    self.target(target)
            case ast.Delete(targets=targets):
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.read(target.id)
                        self.names.writes[target.id] = None
                        self.bound.discard(target.id)
                        self.names.deleted.add(target.id)
                        self.unalias(target.id)
                    else:
                        self.target(target)
            case ast.Import(names=aliases):
                for alias in aliases:
                    name = alias.asname or alias.name.split(".")[0]
                    self.names.imported.add(name)
                    self.bind(name)
            case ast.ImportFrom(module=module, names=aliases):
                for alias in aliases:
                    if alias.name == "*":
                        self.names.star_imports.append(module or ".")
                        continue
                    name = alias.asname or alias.name
                    self.names.imported.add(name)
                    self.bind(name)
            case ast.FunctionDef() | ast.AsyncFunctionDef():
                for decorator in node.decorator_list:
                    self.expr(decorator)
                self.arguments_defaults(node.args)
                if node.returns is not None:
                    self.expr(node.returns)
                self.nested(node)
                self.names.defined.add(node.name)
                self.bind(node.name)
            case ast.ClassDef():
                for decorator in node.decorator_list:
                    self.expr(decorator)
                for base in node.bases:
                    self.expr(base)
                for keyword in node.keywords:
                    self.expr(keyword.value)
                self.nested(node)
                self.names.defined.add(node.name)
                self.bind(node.name)
            case ast.If(test=test, body=body, orelse=orelse):
                self.expr(test)
                then = self.branch(body)
                other = self.branch(orelse)
                self.bound = then & other  # bound on both paths (and deleted on neither)
            case ast.For() | ast.AsyncFor():
                self.expr(node.iter)
                saved = set(self.bound)
                self.in_loop_target = True
                self.target(node.target)
                self.in_loop_target = False
                for stmt in node.body:
                    self.stmt(stmt)
                self.bound = saved & self.bound  # the body may not run, or delete names
                self.bound &= self.branch(node.orelse)
            case ast.While(test=test, body=body, orelse=orelse):
                self.expr(test)
                self.bound &= self.branch(body)  # what the body deletes may be unbound
                self.bound &= self.branch(orelse)
            case ast.With() | ast.AsyncWith():
                for item in node.items:
                    self.expr(item.context_expr)
                    if item.optional_vars is not None:
                        self.target(item.optional_vars)
                        self.names.resources.update(
                            n.id for n in ast.walk(item.optional_vars) if isinstance(n, ast.Name)
                        )
                for stmt in node.body:
                    self.stmt(stmt)
            case ast.Try() | ast.TryStar():
                self.bound &= self.branch(node.body)
                for handler in node.handlers:
                    saved = set(self.bound)
                    if handler.type is not None:
                        self.expr(handler.type)
                    if handler.name:
                        self.bind(handler.name)
                        self.names.resources.add(handler.name)
                    for stmt in handler.body:
                        self.stmt(stmt)
                    self.bound = saved & self.bound
                    if handler.name:  # Python deletes it when the handler ends
                        self.bound.discard(handler.name)
                        self.names.deleted.add(handler.name)
                self.bound &= self.branch(node.orelse)
                for stmt in node.finalbody:
                    self.stmt(stmt)
            case ast.Match(subject=subject, cases=cases):
                self.expr(subject)
                saved = set(self.bound)
                after = set(saved)
                for case in cases:
                    self.bound = set(saved)
                    self.pattern(case.pattern)
                    if case.guard is not None:
                        self.expr(case.guard)
                    for stmt in case.body:
                        self.stmt(stmt)
                    after &= self.bound  # a case may delete names
                self.bound = after
            case ast.Global() | ast.Nonlocal() | ast.Pass() | ast.Break() | ast.Continue():
                pass
            case ast.Expr(value=ast.Call() as call):
                self.call(call, result_used=False)
            case _:
                # Expr, Return, Raise, Assert, TypeAlias...: reads only
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.expr):
                        self.expr(child)

    def call(self, node: ast.Call, *, result_used: bool) -> None:
        """A method call on a name changes it in place when the method is known to
        (``lst.append(v)``, ``scaler.fit_transform(X)``, ``inplace=True``), or when it is
        not known to be pure and its result is thrown away (``model.fit(X, y)`` as a
        statement); a method whose result is used is taken as returning a new value
        (``X.tocsc()``, ``pd.read_parquet(...)``)."""
        self.expr(node.func)
        for arg in node.args:
            self.expr(arg)
        for keyword in node.keywords:
            self.expr(keyword.value)
        func = node.func
        if not isinstance(func, ast.Attribute):
            return
        root = _root(func.value)
        in_place = func.attr in IN_PLACE_METHODS or any(
            k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value
            for k in node.keywords
        )
        if root is not None and (in_place or (not result_used and func.attr not in PURE_METHODS)):
            self.mutate(root)

    def pattern(self, node: ast.pattern) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.MatchValue | ast.MatchClass):
                for child in ast.iter_child_nodes(sub):
                    if isinstance(child, ast.expr):
                        self.expr(child)
            if isinstance(sub, ast.MatchMapping):
                for key in sub.keys:
                    self.expr(key)
            name = getattr(sub, "name", None) or getattr(sub, "rest", None)
            if isinstance(name, str):
                self.bind(name)

    def target(self, node: ast.expr) -> None:
        """A store target: names are bound, subscripts and attributes change their root."""
        match node:
            case ast.Name(id=name):
                self.bind(name)
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                for elt in elts:
                    self.target(elt)
            case ast.Starred(value=value):
                self.target(value)
            case ast.Subscript(value=value, slice=index):
                self.expr(index)
                self.change(value)
            case ast.Attribute(value=value):
                self.change(value)
            case _:
                self.expr(node)

    def change(self, node: ast.expr) -> None:
        """``node`` (``df``, ``df.x``, ``d['k']``...) is changed in place: so is its root."""
        root = _root(node)
        self.expr(node)
        if root is not None:
            self.mutate(root)

    def arguments_defaults(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.expr(default)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.expr(arg.annotation)

    def nested(self, node: ast.AST) -> None:
        reads, global_writes = _scope_free(node)
        own = getattr(node, "name", None)  # a function may call itself: bound by then
        for name in reads:
            if name != own:
                self.read(name)
        for name in global_writes:
            self.bind(name, surely=False)
            if not isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
                self.names.global_writes[name] = None

    # -- expressions --------------------------------------------------------------------
    def expr(self, node: ast.expr) -> None:  # noqa: C901
        match node:
            case ast.Name(id=name, ctx=ast.Load()):
                self.read(name)
            case ast.Name(id=name, ctx=ast.Store()):
                self.bind(name)
            case ast.NamedExpr(target=target, value=value):
                self.expr(value)
                self.bind(target.id)
            case ast.Lambda(args=args):
                self.arguments_defaults(args)
                self.nested(node)
            case ast.ListComp() | ast.SetComp() | ast.GeneratorExp() | ast.DictComp():
                # The first iterable is evaluated here; the rest runs in its own scope.
                self.expr(node.generators[0].iter)
                reads, walrus = _scope_free(node)
                for name in reads:
                    self.read(name)
                for name in walrus:
                    self.bind(name, surely=False)
            case ast.Call():
                self.call(node, result_used=True)
            case _:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.expr):
                        self.expr(child)
                    elif isinstance(child, ast.keyword):
                        self.expr(child.value)
                    elif isinstance(child, ast.comprehension):  # pragma: no cover - handled
                        self.expr(child.iter)


def _root(node: ast.expr) -> str | None:
    """The name at the root of ``a.b[c].d(...)``, or None (a literal, a call result...)."""
    while True:
        match node:
            case ast.Name(id=name):
                return name
            case ast.Attribute(value=value) | ast.Subscript(value=value):
                node = value
            case ast.Call(func=ast.Attribute(value=value)):
                node = value
            case _:
                return None


def definition_time_reads(body: list[ast.stmt]) -> set[str]:
    """Names module-level statements read when they run, not when the functions they define
    are called: decorators, defaults and annotations of a ``def``, a class's bases and the
    statements of its body, anything else whole (an import reads nothing)."""
    reads: set[str] = set()
    for stmt in body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            continue
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            exprs = _def_time_exprs(stmt)
            if isinstance(stmt, ast.ClassDef):
                exprs += [k.value for k in stmt.keywords]
            else:
                a = stmt.args
                every = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                exprs += [arg.annotation for arg in every if arg is not None and arg.annotation]
                if stmt.returns is not None:
                    exprs.append(stmt.returns)
            for expr in exprs:
                reads |= {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
            if isinstance(stmt, ast.ClassDef):
                reads |= definition_time_reads(stmt.body)
            continue
        reads |= {
            n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
        }
    return reads


# -- nested scopes ------------------------------------------------------------------------


def declared_globals(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> set[str]:
    """Names a function or class body declares ``global``."""
    return _bound_in_scope(node)[1]


def _bound_in_scope(
    node: ast.AST, nodes: list[ast.AST] | None = None
) -> tuple[set[str], set[str], set[str]]:
    """(locals, declared global, declared nonlocal) of a function/class/lambda/comprehension.
    ``nodes``: the :func:`_same_scope_nodes` of its body, when the caller has them."""
    local: set[str] = set()
    globals_: set[str] = set()
    nonlocals: set[str] = set()
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg is not None:
                local.add(arg.arg)
    if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
        for gen in node.generators:
            for sub in ast.walk(gen.target):
                if isinstance(sub, ast.Name):
                    local.add(sub.id)
        return local, globals_, nonlocals
    if nodes is None:
        nodes = _same_scope_nodes(_scope_body(node))
    for child in nodes:
        match child:
            case ast.Name(id=name, ctx=ast.Store() | ast.Del()):
                local.add(name)
            case (
                ast.FunctionDef(name=name)
                | ast.AsyncFunctionDef(name=name)
                | ast.ClassDef(name=name)
            ):
                local.add(name)
            case ast.Import(names=aliases) | ast.ImportFrom(names=aliases):
                for alias in aliases:
                    if alias.name != "*":
                        local.add(alias.asname or alias.name.split(".")[0])
            case ast.ExceptHandler(name=str() as name):
                local.add(name)
            case ast.MatchAs(name=str() as name) | ast.MatchStar(name=str() as name):
                local.add(name)
            case ast.MatchMapping(rest=str() as name):
                local.add(name)
            case ast.Global(names=names):
                globals_.update(names)
            case ast.Nonlocal(names=names):
                nonlocals.update(names)
    return local - globals_ - nonlocals, globals_, nonlocals


def _scope_body(node: ast.AST) -> list[ast.AST]:
    """The statements (a lambda: the expression) of a function, class or lambda."""
    if isinstance(node, ast.Lambda):
        return [node.body]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return list(node.body)
    return []


def _same_scope_nodes(body: list[ast.stmt] | list[ast.AST]) -> list[ast.AST]:
    """Every node of ``body`` that belongs to this scope (nested scopes only by their name,
    decorators, defaults and the first iterable of comprehensions)."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue  # its insides are another scope (handled by _scope_free)
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            for sub in ast.walk(node):  # walrus targets bind in the enclosing scope
                if isinstance(sub, ast.NamedExpr):
                    out.append(sub.target)
            stack.append(node.generators[0].iter)
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return out


def _scope_free(node: ast.AST) -> tuple[list[str], list[str]]:
    """Names a nested scope reads from outside, and names it binds outside.

    For functions and classes the second list holds names declared ``global`` and assigned;
    for comprehensions, the targets of walrus expressions.
    """
    reads: dict[str, None] = {}  # ordered sets
    binds: dict[str, None] = {}
    comprehension = isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp)
    parts: list[ast.AST] = []
    if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
        for i, gen in enumerate(node.generators):
            if i:
                parts.append(gen.iter)
            parts.extend(gen.ifs)
        parts.extend([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt])
    else:
        parts = _scope_body(node)
    nodes = _same_scope_nodes(parts)
    # a def's, class's or lambda's body is its parts: walk it once for both
    local, globals_, _nonlocals = _bound_in_scope(node, None if comprehension else nodes)
    for child in nodes:
        if isinstance(child, ast.Name):
            if isinstance(child.ctx, ast.Load):
                if child.id not in local or child.id in globals_:
                    reads[child.id] = None
            elif child.id in globals_ or (comprehension and child.id not in local):
                binds[child.id] = None
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            for expr in _def_time_exprs(child):
                for sub_name in _scope_free_of_expr(expr, local, globals_):
                    reads[sub_name] = None
            inner_reads, inner_binds = _scope_free(child)
            class_body = isinstance(node, ast.ClassDef)  # methods do not see class names
            for name in inner_reads:
                if class_body or name not in local or name in globals_:
                    reads[name] = None
            for name in inner_binds:
                binds[name] = None
        elif isinstance(child, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            inner_reads, inner_binds = _scope_free(child)
            for name in inner_reads:
                if name not in local or name in globals_:
                    reads[name] = None
            for name in inner_binds:
                if name in globals_ or (comprehension and name not in local):
                    binds[name] = None
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        # a function's global statement is only a write if the name is assigned there
        return list(reads), [name for name in binds if name in globals_]
    return list(reads), list(binds)


def _def_time_exprs(node: ast.AST) -> list[ast.expr]:
    """Expressions of a nested def evaluated in the enclosing scope (decorators, defaults)."""
    exprs: list[ast.expr] = list(getattr(node, "decorator_list", []))
    args = getattr(node, "args", None)
    if isinstance(args, ast.arguments):
        exprs += [d for d in [*args.defaults, *args.kw_defaults] if d is not None]
    exprs += list(getattr(node, "bases", []))
    return exprs


def _scope_free_of_expr(expr: ast.expr, local: set[str], globals_: set[str]) -> list[str]:
    names: dict[str, None] = {}
    for sub in ast.walk(expr):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
            if sub.id not in local or sub.id in globals_:
                names[sub.id] = None
    return list(names)
