"""Forwarding functions generated from a method's own parameter list, for methods called per request.

A replacement written as ``def replacement(self, *args, **kwargs)`` makes the interpreter pack a
tuple and a dict on every call and unpack them again to call the original, which costs as much as
everything the instrumentation then does; a function with the original's own parameters forwards
them for a fraction of that. Around ``LLM.generate`` and the other LLM calls, wrapt's wrapper costs as
much as starting the operation itself: ``surrounding_function`` does the same there. Around a
coroutine function (``AsyncLLM.add_request``, the servers' ``_get_trace_headers``), an ``async``
wrapper makes and awaits a second coroutine; ``argument_dispatching_function`` and
``substituting_function`` return the original's own coroutine in the usual case instead. The
measurements: docs/design/generated-forwarding.md.
Nothing in the standard library or wrapt builds one, so this does what ``dataclasses`` and
``collections.namedtuple`` do: source text from the signature, ``exec``'d in a namespace that holds
only the original, the callbacks and the original's default values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

# Names the generated source uses besides the parameters; a parameter with this prefix is refused.
_PREFIX = "_otel_vllm_"
# The name under which a generated function calls the method it replaces, and the start of the file
# name its frames carry (tracebacks; the benchmarks' in-situ profile finds these functions by it).
ORIGINAL_NAME = f"{_PREFIX}original"
GENERATED_FILE = "<opentelemetry-instrumentation-vllm forwarding "
_FORWARDABLE = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def callback_global(callback: str) -> str:
    """The name under which a generated function's namespace (its ``__globals__``) holds the callback
    passed as ``callback`` ("report", "begin", "end", ...)."""
    return f"{_PREFIX}{callback}"


def forwarding_function(
    original: Any, report: Callable[..., Any], reported: Sequence[str]
) -> Callable[..., Any] | None:
    """A function with ``original``'s parameters that calls ``original`` with exactly the arguments it
    was given (each passed on explicitly, defaults being the original's own default objects) and,
    when that returned, ``report(<self>, <the arguments named in reported>)`` (a name the signature
    lacks is reported as None), then returns what ``original`` returned.

    None where that cannot be done faithfully: not a plain Python function, a decorated one (a
    decorator may care which arguments were passed at all), ``*args``, ``**kwargs`` or
    positional-only parameters. ``report`` must not raise: nothing here catches for it.
    """
    return _generated(
        original,
        {"report": report},
        lambda signature: (
            f"    {_PREFIX}result = {_PREFIX}original({signature.passed})\n"
            f"    {_PREFIX}report({signature.arguments(reported)})\n"
            f"    return {_PREFIX}result\n"
        ),
    )


def preceding_function(original: Any, report: Callable[..., Any], reported: Sequence[str]) -> Callable[..., Any] | None:
    """A function with ``original``'s parameters (see ``forwarding_function``) that first calls
    ``report(<self>, <the arguments named in reported>)``, then returns what ``original`` returns for
    exactly the arguments it was given (the output processor's ``add_request``, where the request must
    be registered, and its trace context set, before vLLM takes it).

    None where ``forwarding_function`` is None. ``report`` must not raise."""
    return _generated(
        original,
        {"report": report},
        lambda signature: (
            f"    {_PREFIX}report({signature.arguments(reported)})\n    return {_PREFIX}original({signature.passed})\n"
        ),
    )


def result_reporting_function(
    original: Any, report: Callable[..., Any], failed: Callable[..., Any] | None = None
) -> Callable[..., Any] | None:
    """A function with ``original``'s parameters (see ``forwarding_function``) that calls ``original``
    and, when what it returned is true (``LLMEngine.step``'s outputs: most steps finish nothing),
    ``report(<self>, <what it returned>)``, then returns it. With ``failed``: where ``original``
    raised an Exception, ``failed(<self>, <the exception>)`` first, then the exception propagates
    unchanged (a try block costs nothing per call where nothing is raised, Python 3.11+).

    None where ``forwarding_function`` is None. ``report`` and ``failed`` must not raise."""
    if failed is None:
        return _generated(
            original,
            {"report": report},
            lambda signature: (
                f"    {_PREFIX}result = {_PREFIX}original({signature.passed})\n"
                f"    if {_PREFIX}result:\n"
                f"        {_PREFIX}report({signature.self_name}, {_PREFIX}result)\n"
                f"    return {_PREFIX}result\n"
            ),
        )
    return _generated(
        original,
        {"report": report, "failed": failed},
        lambda signature: (
            f"    try:\n"
            f"        {_PREFIX}result = {_PREFIX}original({signature.passed})\n"
            f"    except Exception as {_PREFIX}error:\n"
            f"        {_PREFIX}failed({signature.self_name}, {_PREFIX}error)\n"
            f"        raise\n"
            f"    if {_PREFIX}result:\n"
            f"        {_PREFIX}report({signature.self_name}, {_PREFIX}result)\n"
            f"    return {_PREFIX}result\n"
        ),
    )


def pending_reporting_function(original: Any, pending: Any, report: Callable[..., Any]) -> Callable[..., Any] | None:
    """A function with ``original``'s parameters (see ``forwarding_function``) that calls ``original``
    and, when that returned and ``pending`` (a container the caller fills, such as the requests that
    finished during the call) is not empty, ``report()``; then returns what ``original`` returned.
    Nothing else is read per call: the output processor's ``process_outputs`` runs once per engine
    step, and most steps finish nothing.

    None where ``forwarding_function`` is None. ``report`` must not raise."""
    return _generated(
        original,
        {"pending": pending, "report": report},
        lambda signature: (
            f"    {_PREFIX}result = {_PREFIX}original({signature.passed})\n"
            f"    if {_PREFIX}pending:\n"
            f"        {_PREFIX}report()\n"
            f"    return {_PREFIX}result\n"
        ),
    )


def argument_dispatching_function(
    original: Any, argument: str, otherwise: Callable[..., Any]
) -> Callable[..., Any] | None:
    """A function with ``original``'s parameters (see ``forwarding_function``) that, where the argument
    named ``argument`` is false (None, empty: the usual case), returns what ``original`` returns for
    exactly the arguments it was given, and otherwise returns ``otherwise(<self>, <that argument>,
    call)``, where ``call(value)`` calls ``original`` with the same arguments but that one replaced by
    ``value``. For a coroutine function, the usual case hands the caller the original's own coroutine
    to await, as it would have awaited the original's; ``otherwise`` then returns an awaitable too.

    None where ``forwarding_function`` is None or ``original`` has no parameter named ``argument``."""
    signature = _Signature.of(original)
    if signature is None or argument not in signature.names:
        return None
    call = f"{_PREFIX}original({signature.passed})"
    # The lambda's parameter has the argument's name, so the call it makes passes its value instead.
    return _generated(
        original,
        {"otherwise": otherwise},
        lambda signature: (
            f"    if not {argument}:\n"
            f"        return {call}\n"
            f"    return {_PREFIX}otherwise({signature.self_name}, {argument}, lambda {argument}: {call})\n"
        ),
    )


def substituting_function(
    original: Any, substitute: Callable[..., Any], reported: Sequence[str]
) -> Callable[..., Any] | None:
    """A function with ``original``'s parameters (see ``forwarding_function``) that first calls
    ``substitute(<self>, <the arguments named in reported>)`` and returns what that returned unless it
    is None, else what ``original`` returns for exactly the arguments it was given (for a coroutine
    function, its own coroutine: ``substitute`` then returns an awaitable too).

    None where ``forwarding_function`` is None. ``substitute`` must not raise."""
    return _generated(
        original,
        {"substitute": substitute},
        lambda signature: (
            f"    {_PREFIX}substituted = {_PREFIX}substitute({signature.arguments(reported)})\n"
            f"    if {_PREFIX}substituted is not None:\n"
            f"        return {_PREFIX}substituted\n"
            f"    return {_PREFIX}original({signature.passed})\n"
        ),
    )


def surrounding_function(
    original: Any, begin: Callable[..., Any], end: Callable[..., Any], begun_with: Sequence[str]
) -> Callable[..., Any] | None:
    """A function with ``original``'s parameters (see ``forwarding_function``) that first calls
    ``begin(<self>, <the arguments named in begun_with>)``. If that returned None, it only calls
    ``original``. Otherwise it calls ``original``, then ``end(<what begin returned>, None)`` when that
    returned, or ``end(<what begin returned>, <the exception>)`` when it raised (the exception then
    propagates unchanged), and returns what ``original`` returned.

    None where ``forwarding_function`` is None. ``begin`` and ``end`` must not raise."""

    def body(signature: _Signature) -> str:
        call = f"{_PREFIX}original({signature.passed})"
        return (
            f"    {_PREFIX}begun = {_PREFIX}begin({signature.arguments(begun_with)})\n"
            f"    if {_PREFIX}begun is None:\n"
            f"        return {call}\n"
            f"    try:\n"
            f"        {_PREFIX}result = {call}\n"
            f"    except BaseException as {_PREFIX}error:\n"
            f"        {_PREFIX}end({_PREFIX}begun, {_PREFIX}error)\n"
            f"        raise\n"
            f"    {_PREFIX}end({_PREFIX}begun, None)\n"
            f"    return {_PREFIX}result\n"
        )

    return _generated(original, {"begin": begin, "end": end}, body)


def _generated(
    original: Any, callbacks: dict[str, Any], body: Callable[[_Signature], str]
) -> Callable[..., Any] | None:
    """A function with ``original``'s parameters whose body is ``body(<its signature>)``, run with
    ``callbacks`` in its namespace (each under the generated-name prefix); None where ``original``'s
    parameters cannot be forwarded faithfully (see ``forwarding_function``)."""
    signature = _Signature.of(original)
    if signature is None:
        return None
    signature.namespace.update({callback_global(name): callback for name, callback in callbacks.items()})
    function = signature.define(body(signature))
    # A plain function that returns the original's coroutine still says it is a coroutine function
    # to inspect.iscoroutinefunction where Python can say so (3.12+); nothing in vLLM asks.
    if inspect.iscoroutinefunction(original) and hasattr(inspect, "markcoroutinefunction"):
        function = inspect.markcoroutinefunction(function)
    return function


class _Signature:
    """A plain function's parameter list as source text: how to declare it, and how to pass each
    parameter on explicitly."""

    def __init__(self, original: Any, parameters: list[inspect.Parameter]) -> None:
        self.original = original
        self.namespace: dict[str, Any] = {ORIGINAL_NAME: original}
        self.names = {p.name for p in parameters}
        self.self_name = parameters[0].name
        declared, passed = [], []
        keyword_only_started = False
        for i, parameter in enumerate(parameters):
            name = parameter.name
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only_started:
                keyword_only_started = True
                declared.append("*")
            if parameter.default is inspect.Parameter.empty:
                declared.append(name)
            else:
                default = f"{_PREFIX}default_{i}"
                self.namespace[default] = parameter.default
                declared.append(f"{name}={default}")
            passed.append(f"{name}={name}" if keyword_only_started else name)
        self.declared = ", ".join(declared)
        self.passed = ", ".join(passed)

    @classmethod
    def of(cls, original: Any) -> _Signature | None:
        if not inspect.isfunction(original) or hasattr(original, "__wrapped__"):
            return None
        try:
            parameters = list(inspect.signature(original, follow_wrapped=False).parameters.values())
        except (TypeError, ValueError):
            return None
        if not parameters or any(p.kind not in _FORWARDABLE or p.name.startswith(_PREFIX) for p in parameters):
            return None
        if parameters[0].kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            return None  # no `self` to bind
        return cls(original, parameters)

    def arguments(self, named: Sequence[str]) -> str:
        """``self`` and the parameters named (None for a name the signature lacks), as call arguments."""
        return ", ".join([self.self_name] + [name if name in self.names else "None" for name in named])

    def define(self, body: str) -> Callable[..., Any]:
        name = self.original.__name__
        source = f"def {name}({self.declared}):\n{body}"
        # A file name that says where a traceback's frame comes from.
        code = compile(source, f"{GENERATED_FILE}{self.original.__qualname__}>", "exec")
        exec(code, self.namespace)  # noqa: S102 - source built from identifiers and generated names only
        function: Callable[..., Any] = self.namespace[name]
        return function
