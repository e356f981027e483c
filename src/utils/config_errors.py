"""One line for a config mistake that jsonargparse reports in many.

A typo in a key or a value of a class given by ``class_path`` (``--model.hiden_size 32``, ``--model.cell lstmm``)
comes out of jsonargparse as a 10-line tree of the union types it tried, after ~90 lines of usage. What a user
needs is in one or two leaves of that tree: the key, the value, the accepted choices or type, or the name of the
option that does not exist. ``one_line_config_error`` picks them out and adds the closest valid name; a message
it does not recognise keeps its first meaningful line, so nothing is lost but the noise.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from typing import Iterable, Optional

_KEY = re.compile(r'Parser key "([^"]+)":?\s*')
_CALLABLE = re.compile(r"^Type .* expects a function or a callable class:\s*")
_CLASS_PATH = re.compile(r"class_path[= ]'([\w.]+)'")
_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:",
          "Given value:", "Expected a <class 'NoneType'>", "Expected a path but", "Expected a dot import path string",
          "Problem with given class_path")


def closest(name: str, candidates: Iterable[str]) -> Optional[str]:
    found = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    match = closest(name, candidates)
    return f"; did you mean {prefix}{match}?" if match else ""


def init_arguments(class_path: Optional[str]) -> list[str]:
    """The keyword arguments a class (or callable) given as ``module.Name`` accepts; [] if it cannot be imported."""
    if not class_path or "." not in class_path:
        return []
    module, _, name = class_path.rpartition(".")
    try:
        target = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
    except Exception:  # an import that fails is reported by jsonargparse's own leaf; this is only a hint
        return []


def given_value(message: str) -> Optional[str]:
    """The value the user gave, as jsonargparse quotes it (not a whole namespace or dict of a class)."""
    for pattern in (r"NestedArg\(key='[^']*', val='(.*)'\)", r"Got value: (.+)", r"Given value: (.+)"):
        found = re.search(pattern, message)
        if found and not found.group(1).startswith(("Namespace(", "{")):
            return found.group(1).strip()
    return None


def leaves(message: str) -> tuple[list[str], list[str], list[str]]:
    """-> (the nested keys, every class path named, the lines that say what is wrong)."""
    keys, classes, found = [], _CLASS_PATH.findall(message), []
    for raw in message.splitlines():
        line = raw.strip().lstrip("- ").strip()
        while True:  # 'Parser key "a": Type ... expects a callable class: Parser key "b": text' -> text
            key = _KEY.match(line)
            if key:
                keys.append(key.group(1))
                line = line[key.end():]
                continue
            stripped = _CALLABLE.sub("", line)
            if stripped == line:
                break
            line = stripped
        if line and not line.startswith(_NOISE):
            found.append(line)
    return keys, classes, found


def one_line_config_error(message: str, option_strings: Iterable[str] = ()) -> str:
    """jsonargparse's error ``message`` -> one line naming the key, the problem and the closest valid choice.

    option_strings: every ``--key`` the parser knows, for typos of keys that are not inside a class.
    """
    options = list(option_strings)
    text = message.strip()
    unknown = re.match(r"unrecognized arguments: (--[\w.\-+]+)", text, re.IGNORECASE)
    if unknown:
        flag = unknown.group(1)
        return f"unknown option {flag}{did_you_mean(flag, options)} (see --help)"
    unknown = re.search(r"does not accept option '([\w.]+)'", text)
    if unknown:
        key = unknown.group(1)
        return f"unknown config key {key}{did_you_mean(key, [o.lstrip('-') for o in options])} (see --help)"
    if text.startswith("Problems parsing config"):  # YAML syntax: the lines are the position and the problem
        return " ".join(line.strip() for line in text.splitlines())
    keys, classes, found = leaves(text)
    where = "--" + ".".join(keys) if keys else "the config"
    value = given_value(text)
    for line in found:
        option = re.match(r"Option '([\w]+)' is not accepted", line)
        if option:
            owner = _CLASS_PATH.search(line)
            class_path = owner.group(1) if owner else (classes[-1] if classes else None)
            name = option.group(1)
            hint = did_you_mean(name, init_arguments(class_path), f"{where}.")
            return f"{where}.{name} is not an option of {(class_path or '?').rpartition('.')[2]}{hint}"
    choices = [c for line in found for c in re.findall(r"Literal\[(.*?)\]", line)]
    if choices:
        names = list(dict.fromkeys(c.strip().strip("'\"") for group in choices for c in group.split(",")))
        shown = value if value is not None else "this value"
        return f"{where} {shown}: choose one of {', '.join(names)}{did_you_mean(str(value), names, '')}"
    for line in found:
        missing = re.search(r"module '([\w.]+)' has no attribute '(\w+)'", line)
        if missing:
            module, name = missing.groups()
            try:
                known = [n for n in dir(importlib.import_module(module)) if not n.startswith("_")]
            except Exception:
                known = []
            return f"{where}: {module}.{name} does not exist{did_you_mean(name, known, module + '.')}"
        if line.startswith("No module named") or "arguments are required" in line:
            return f"{where}: {line}"
    types = " or ".join(dict.fromkeys(t for line in found for t in re.findall(r"Expected a <class '(\w+)'>", line)))
    if types:
        return f"{where}: {value!r} is not a valid {types}" if value else f"{where}: expected {types}"
    first = found[0] if found else text.splitlines()[0]
    return f"{where}: {first}" if keys else first
