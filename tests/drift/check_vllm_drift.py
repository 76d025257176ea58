"""Checks what the instrumentation needs of the vLLM on sys.path, without running vLLM (no engine,
no model, no CUDA): the drift tier's check (tests/drift/run_drift_tier.py runs it per version).

    python tests/drift/check_vllm_drift.py LABEL

Everything checked comes from ``_vllm.py``'s declarations, so the check grows with the shim:

- every hook point (``HOOK_POINTS``) that the version should have (its ``versions``) exists, and is
  patched once ``VllmInstrumentor().instrument()`` ran and vLLM's modules were imported afterwards
  (the post-import hooks fired for the module names this vLLM uses); the per-object patches of an
  AsyncLLM are applied to stand-in objects of vLLM's own classes (no engine behind them);
- each patched method's signature has the parameters the shim reads by name, and can be forwarded by
  a generated function (docs/design/generated-forwarding.md) where the shim generates one;
- every attribute read on vLLM's objects (``ATTRIBUTES_READ``) exists on the class that defines it
  (``ATTRIBUTE_CLASSES``: dataclass fields, msgspec struct fields, annotations, properties and
  methods, or ``self.<name>`` assignments in its methods), one of each group of alternatives
  (``ATTRIBUTE_ALTERNATIVES``), with the type the readers take (``ATTRIBUTE_TYPES``) where vLLM
  annotates it.

Prints one line per check, ``ok|FAIL <label> <hook or field>: <detail>``, and ``note`` lines that
report without failing; exits 1 when any check failed.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

OK, FAIL, NOTE = "ok", "FAIL", "note"
# RFC: vllm-project/vllm#54653 proposes moving vllm.entrypoints under vllm.frontend.
ENTRYPOINTS, FRONTEND = "vllm.entrypoints", "vllm.frontend"


class _EngineStandIn(types.SimpleNamespace):
    """An AsyncLLM stand-in holding the stand-in objects the shim patches; weakly referable, as the
    real engine is (the shim keeps its per-engine state by weak reference), and hashed by identity."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__


class Result(NamedTuple):
    status: str
    label: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.status} {self.label} {self.subject}: {self.detail}"


def version_tuple(text: str) -> tuple[int, ...]:
    """(0, 34, 0) of "0.34.0", (0, 32, 0) of "0.32.0+cpu", (0, 11, 1) of "0.11.1.post2"."""
    numbers = re.findall(r"\d+", text.split("+")[0])
    return tuple(int(n) for n in numbers[:3])


def expected_in(versions: str, optional: bool, version: tuple[int, ...]) -> bool:
    """Whether a hook point declared for ``versions`` ("all", "0.32+", "0.11 - 0.31", with any
    remark after them) must exist in ``version``; an optional one declared for "all" need not."""
    span = re.match(r"\s*(\d+(?:\.\d+)+)\s*-\s*(\d+(?:\.\d+)+)", versions)
    if span:
        last = version_tuple(span.group(2))  # "- 0.31" takes in every 0.31.x
        return version_tuple(span.group(1)) <= version and version[: len(last)] <= last
    since = re.match(r"\s*(\d+(?:\.\d+)+)\+", versions)
    if since:
        return version >= version_tuple(since.group(1))
    return not optional


def annotation_text(annotation: Any) -> str | None:
    if annotation is None or annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def _assignments(cls: type) -> dict[str, str | None]:
    """``self.<name>`` assigned in ``cls``'s own methods -> its annotation (that of the assignment, or
    of the method's parameter it was assigned from), None where there is none."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    found: dict[str, str | None] = {}
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or not function.args.args:
            continue
        self_name = function.args.args[0].arg
        parameters = {a.arg: a.annotation for a in function.args.args + function.args.kwonlyargs}
        for node in ast.walk(function):
            targets: list[tuple[ast.expr, ast.expr | None, ast.expr | None]] = []
            if isinstance(node, ast.AnnAssign):
                targets.append((node.target, node.annotation, node.value))
            elif isinstance(node, ast.Assign):
                targets.extend((target, None, node.value) for target in node.targets)
            for target, annotation, value in targets:
                if not (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == self_name
                ):
                    continue
                if annotation is None and isinstance(value, ast.Name) and parameters.get(value.id) is not None:
                    annotation = parameters[value.id]
                text = ast.unparse(annotation) if annotation is not None else None
                if found.get(target.attr) is None:
                    found[target.attr] = text
    return found


def find_attribute(cls: type, name: str) -> tuple[bool, str | None, str]:
    """(found, its annotation or None, how it was found) for an attribute of ``cls``'s instances."""
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            if field.name == name:
                return True, annotation_text(field.type), "dataclass field"
    struct_fields = getattr(cls, "__struct_fields__", None)
    if isinstance(struct_fields, tuple) and name in struct_fields:
        for klass in cls.__mro__:
            if name in vars(klass).get("__annotations__", {}):
                return True, annotation_text(vars(klass)["__annotations__"][name]), "msgspec field"
        return True, None, "msgspec field"
    for klass in cls.__mro__:
        if klass is object:
            continue
        if name in vars(klass).get("__annotations__", {}) and not dataclasses.is_dataclass(klass):
            return True, annotation_text(vars(klass)["__annotations__"][name]), f"annotated on {klass.__name__}"
        member = vars(klass).get(name)
        if isinstance(member, property):
            returns = inspect.signature(member.fget).return_annotation if member.fget else None
            return True, annotation_text(returns), f"property of {klass.__name__}"
        if member is not None and (callable(member) or name.startswith("__")):
            return True, None, f"{'method' if callable(member) else 'attribute'} of {klass.__name__}"
    for klass in cls.__mro__:
        if klass is object:
            continue
        assigned = _assignments(klass)
        if name in assigned:
            return True, assigned[name], f"set in {klass.__name__}'s methods"
    return False, None, "not found"


def short_signature(signature: inspect.Signature) -> str:
    """``(self, a, b=..., /, *, c)``: the parameters without their annotations (vLLM's are long)."""
    stripped = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    stripped = [p.replace(default="...") if p.default is not inspect.Parameter.empty else p for p in stripped]
    short = signature.replace(parameters=stripped, return_annotation=inspect.Signature.empty)
    return str(short).replace("'...'", "...")


def is_generated(function: Any) -> bool:
    from opentelemetry.instrumentation.vllm._forwarding import GENERATED_FILE

    code = getattr(getattr(function, "__func__", function), "__code__", None)
    return code is not None and code.co_filename.startswith(GENERATED_FILE)


def forwardable(function: Any) -> bool:
    """Whether a function with ``function``'s own parameters can be generated to replace it."""
    from opentelemetry.instrumentation.vllm._forwarding import forwarding_function

    return forwarding_function(function, lambda *_: None, ()) is not None


class _Imported(NamedTuple):
    module: types.ModuleType | None
    error: str | None  # None: imported, or absent (module None)


def import_module(name: str) -> _Imported:
    try:
        return _Imported(importlib.import_module(name), None)
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(error.name + ".")):
            return _Imported(None, None)
        return _Imported(None, f"{type(error).__name__}: {error}")
    except Exception as error:  # noqa: BLE001 - reported as the check's failure
        return _Imported(None, f"{type(error).__name__}: {error}")


class _ShimLog(logging.Handler):
    """What the shim logged at WARNING and above (it logs, never raises, where a patch failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.messages.append(message)


class DriftCheck:
    def __init__(self, label: str) -> None:
        from opentelemetry.instrumentation.vllm import _vllm

        self.vllm = _vllm
        self.label = label
        self.results: list[Result] = []
        self.version: tuple[int, ...] = ()

    def _add(self, status: str, subject: str, detail: str) -> None:
        self.results.append(Result(status, self.label, subject, detail))

    def _moved_hint(self) -> str:
        if importlib.util.find_spec(FRONTEND) is not None:
            return f" ({FRONTEND} exists: moved there? see vllm-project/vllm RFC #54653)"
        return ""

    def run(self, instrument: Callable[[], Any], serving: Callable[[], Any]) -> list[Result]:
        """``instrument()`` instruments (before this imports any of vLLM's hooked modules);
        ``serving()`` returns the instrumentation's ServingInstrumentation."""
        log = _ShimLog()
        shim_logger = logging.getLogger("opentelemetry.instrumentation.vllm")
        shim_logger.addHandler(log)
        try:
            already = sorted(m for m in sys.modules if m.startswith("vllm."))
            instrument()
            vllm = import_module("vllm")
            if vllm.module is None:
                self._add(FAIL, "vllm", f"could not import vllm: {vllm.error}")
                return self.results
            version = str(getattr(vllm.module, "__version__", "?"))
            self.version = version_tuple(version)
            where = os.path.dirname(getattr(vllm.module, "__file__", "") or "?")
            self._add(NOTE, "vllm", f"version {version} from {where}")
            shim = os.path.dirname(self.vllm.__file__)
            self._add(NOTE, "instrumentation", f"{self.vllm.__name__.rsplit('.', 1)[0]} from {shim}")
            for hook in self.vllm.HOOK_POINTS:
                if hook.patch != self.vllm.INSTANCE:
                    self._guarded(hook.name, self._check_class_hook, hook)
            self._guarded("AsyncLLM", self._check_instance_hooks, serving())
            self._guarded("post-import hooks", self._check_module_names, already)
            for name, attributes in self.vllm.ATTRIBUTES_READ.items():
                self._guarded(name, self._check_attributes, name, attributes)
            for message in log.messages:
                self._add(FAIL, "shim", f"logged while instrumenting: {message}")
        finally:
            shim_logger.removeHandler(log)
        return self.results

    def _guarded(self, subject: str, check: Callable[..., None], *arguments: Any) -> None:
        """``check(*arguments)``; a shape so unexpected that the check itself raised is a failure too."""
        try:
            check(*arguments)
        except Exception as error:  # noqa: BLE001
            self._add(FAIL, subject, f"checking it raised {type(error).__name__}: {error}")

    # ---- hook points ---------------------------------------------------------------------------

    def _signature_problems(self, hook: Any, original: Any) -> tuple[list[str], str]:
        try:
            signature = inspect.signature(original)
        except (TypeError, ValueError) as error:
            return [f"no signature ({error})"], "?"
        names = set(signature.parameters)
        needed = hook.parameters
        if hook in self.vllm.LLM_OPERATIONS and hook.method != self.vllm.CONVERSATION_METHOD:
            needed = ()  # ``messages`` is read for the conversation method only (None for the others)
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
        if hook.patch == self.vllm.WRAP and takes_kwargs:
            needed = ()  # a wrapt wrapper passes and reads its keywords by name: **kwargs takes them
        missing = [n for n in needed if n not in names]
        problems = [f"signature lacks {', '.join(missing)}"] if missing else []
        if hook.patch != self.vllm.WRAP and not forwardable(original):
            # Not a failure: the shim then patches with its generic wrapper, slower but complete.
            self._add(
                NOTE,
                hook.name,
                f"no generated function can forward {short_signature(signature)}: "
                "the generic wrapper is used (positional-only, *args, **kwargs or a decorator)",
            )
        return problems, short_signature(signature)

    def _check_class_hook(self, hook: Any) -> None:
        expected = expected_in(hook.versions, hook.optional, self.version)
        found = False
        for module_name in hook.modules:
            imported = import_module(module_name)
            if imported.error is not None:
                self._add(FAIL, hook.name, f"importing {module_name} failed: {imported.error}")
                found = True  # reported
                continue
            cls = getattr(imported.module, hook.owner, None) if imported.module is not None else None
            owner = self.vllm.defining_class(cls, hook.method) if isinstance(cls, type) else None
            if owner is None:
                continue
            found = True
            current = vars(owner)[hook.method]
            patched = getattr(current, "_otel_vllm_replacement", False) or _is_wrapt(current)
            original = getattr(current, "__wrapped__", current) if patched else current
            problems, signature = self._signature_problems(hook, original)
            where = f"{owner.__module__}.{owner.__qualname__}"
            if not patched:
                problems.insert(0, f"not patched after importing {module_name} (did its post-import hook fire?)")
            if problems:
                self._add(FAIL, hook.name, f"{'; '.join(problems)} [{where}{signature}]")
            else:
                how = "generated" if is_generated(current) else "wrapt"
                self._add(OK, hook.name, f"patched ({how}) on {where}{signature} via {module_name}")
        if not found:
            status = FAIL if expected else OK
            modules = ", ".join(hook.modules)
            hint = self._moved_hint() if expected else ""
            self._add(status, hook.name, f"absent from {modules} (declared for {hook.versions}){hint}")

    def _check_instance_hooks(self, serving: Any) -> None:
        """The AsyncLLM's per-object patches, applied by the shim to stand-ins: objects of vLLM's own
        classes made without running their __init__, on an object standing in for the AsyncLLM."""
        hooks = [h for h in self.vllm.HOOK_POINTS if h.patch == self.vllm.INSTANCE]
        classes: dict[str, type] = {}
        for hook in hooks:
            for module_name in hook.modules:
                imported = import_module(module_name)
                cls = getattr(imported.module, hook.owner, None) if imported.module is not None else None
                if isinstance(cls, type):
                    classes.setdefault(hook.reached_through, cls)
                elif imported.error is not None:
                    self._add(FAIL, hook.name, f"importing {module_name} failed: {imported.error}")
        stand_ins: dict[str, Any] = {}
        for attribute, cls in classes.items():
            try:
                stand_ins[attribute] = cls.__new__(cls)
            except Exception as error:  # noqa: BLE001
                self._add(FAIL, cls.__name__, f"could not make a stand-in object: {error!r}")
        engine = _EngineStandIn(model_config=None, **stand_ins)
        if stand_ins:
            try:
                serving._instrument_engine(engine)
            except Exception as error:  # noqa: BLE001 - the shim logs this, and serves the AsyncLLM uninstrumented
                self._add(FAIL, "AsyncLLM", f"its per-object patches raised {type(error).__name__}: {error}")
        for hook in hooks:
            target = stand_ins.get(hook.reached_through)
            cls = classes.get(hook.reached_through)
            original = getattr(cls, hook.method, None) if cls is not None else None
            expected = expected_in(hook.versions, hook.optional, self.version)
            if original is None:
                status = FAIL if expected else OK
                where = ", ".join(f"{m}.{hook.owner}" for m in hook.modules)
                self._add(status, hook.name, f"absent from {where} (declared for {hook.versions})")
                continue
            installed = vars(target).get(hook.method) if target is not None else None
            problems, signature = self._signature_problems(hook, original)
            if installed is None:
                if expected:
                    problems.insert(0, f"not patched on the {hook.reached_through}")
                elif not problems:
                    self._add(OK, hook.name, f"present, not patched in this version (declared for {hook.versions})")
                    continue
            where = f"{original.__module__}.{original.__qualname__}{signature}"
            if problems:
                self._add(FAIL, hook.name, f"{'; '.join(problems)} [{where}]")
            else:
                how = "generated" if is_generated(installed) else "generic"
                self._add(OK, hook.name, f"patched ({how}) on the {hook.reached_through} [{where}]")

    def _check_module_names(self, imported_before: list[str]) -> None:
        modules = sorted({m for h in self.vllm.HOOK_POINTS for m in h.modules if m in sys.modules})
        when = "after instrument()" if not imported_before else f"({len(imported_before)} vllm modules before)"
        self._add(OK, "post-import hooks", f"fired for {', '.join(modules)}, imported {when}")
        entrypoints = importlib.util.find_spec(ENTRYPOINTS) is not None
        frontend = importlib.util.find_spec(FRONTEND) is not None
        if entrypoints and frontend:
            self._add(NOTE, "module names", f"both {ENTRYPOINTS} and {FRONTEND} exist (RFC #54653's move under way?)")
        elif frontend:
            self._add(NOTE, "module names", f"{FRONTEND} exists, {ENTRYPOINTS} does not (RFC #54653)")

    # ---- attributes read -----------------------------------------------------------------------

    def _check_attributes(self, name: str, attributes: tuple[str, ...]) -> None:
        locations = self.vllm.ATTRIBUTE_CLASSES.get(name)
        if locations is None:
            self._add(NOTE, name, f"not a class (no ATTRIBUTE_CLASSES entry): {', '.join(attributes)} not checked")
            return
        cls = None
        for module_name, class_name in locations:
            imported = import_module(module_name)
            if imported.error is not None:
                self._add(FAIL, name, f"importing {module_name} failed: {imported.error}")
                return
            candidate = getattr(imported.module, class_name, None) if imported.module is not None else None
            if isinstance(candidate, type):
                cls = candidate
                break
        if cls is None:
            where = ", ".join(f"{m}.{c}" for m, c in locations)
            self._add(FAIL, name, f"class not found at {where}{self._moved_hint()}")
            return
        types_of = self.vllm.ATTRIBUTE_TYPES.get(name, {})
        groups = self.vllm.ATTRIBUTE_ALTERNATIVES.get(name, ())
        grouped = {a for group in groups for a in group}
        for group in groups:
            found = [(a, *find_attribute(cls, a)) for a in group]
            present = [(a, annotation, how) for a, ok, annotation, how in found if ok]
            subject = f"{name}.{'|'.join(group)}"
            if not present:
                self._add(FAIL, subject, f"none of them on {cls.__module__}.{cls.__qualname__}")
                continue
            attribute, annotation, how = present[0]
            self._report_type(subject, attribute, annotation, how, types_of.get(attribute))
        for attribute in attributes:
            if attribute in grouped:
                continue
            ok, annotation, how = find_attribute(cls, attribute)
            subject = f"{name}.{attribute}"
            if not ok:
                self._add(FAIL, subject, f"not on {cls.__module__}.{cls.__qualname__} (renamed or removed?)")
                continue
            self._report_type(subject, attribute, annotation, how, types_of.get(attribute))
        struct_fields = getattr(cls, "__struct_fields__", None)
        if name == "EngineCoreOutput" and isinstance(struct_fields, tuple):
            failed = "error" in struct_fields
            self._add(
                NOTE,
                name,
                f"fields {', '.join(struct_fields)}: requests failed in EngineCore "
                f"{'finish without' if failed else 'go through'} _update_stats_from_finished",
            )

    def _report_type(self, subject: str, attribute: str, annotation: str | None, how: str, expected: Any) -> None:
        detail = f"{attribute} ({how}{': ' + annotation if annotation else ''})"
        if expected and annotation is not None:
            if not any(re.search(rf"\b{re.escape(t)}\b", annotation) for t in expected):
                self._add(FAIL, subject, f"{detail}: the readers take {' or '.join(expected)}")
                return
        elif expected:
            detail += ", type not annotated"
        self._add(OK, subject, detail)


def _is_wrapt(function: Any) -> bool:
    import wrapt

    return isinstance(function, wrapt.FunctionWrapper)


def results_of(label: str, instrument: Callable[[], Any], serving: Callable[[], Any]) -> list[Result]:
    return DriftCheck(label).run(instrument, serving)


def _lines(results: list[Result]) -> Iterator[str]:
    for result in results:
        yield str(result)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} LABEL", file=sys.stderr)
        return 2
    # No pipeline exports anything: only the patches matter here.
    for signal in ("TRACES", "METRICS", "LOGS"):
        os.environ[f"OTEL_{signal}_EXPORTER"] = "none"
    from opentelemetry.instrumentation.vllm import VllmInstrumentor

    instrumentor = VllmInstrumentor()
    results = results_of(
        argv[1],
        lambda: instrumentor.instrument(skip_dep_check=True),
        lambda: instrumentor._serving,
    )
    for line in _lines(results):
        print(line, flush=True)
    failed = sum(r.status == FAIL for r in results)
    checks = sum(r.status != NOTE for r in results)
    print(f"{'FAIL' if failed else 'ok'} {argv[1]} summary: {failed} of {checks} checks failed", flush=True)
    instrumentor.uninstrument()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
