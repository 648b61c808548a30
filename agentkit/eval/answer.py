"""Final answers: exact text, text contained, a JSON Schema, or a predicate named by reference."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import jsonschema

from agentkit.errors import UserError
from agentkit.eval.check import PASS, Verdict
from agentkit.eval.dataset import AnswerCheck

__all__ = ["check_answer", "load_predicate"]


def load_predicate(reference: str) -> Callable[[str], Any]:
    """The function `module:function` names.

    Raises:
        UserError: the module does not import, or has no such callable.
    """
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"answer.predicate: cannot import {module_name!r}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise UserError(f"answer.predicate: {module_name} has no function {attribute!r}")
    return function  # type: ignore[no-any-return]


def check_answer(answer: str, check: AnswerCheck) -> Verdict:
    """The final answer against its check; the reason quotes the answer."""
    shown = json.dumps(answer[:200], ensure_ascii=False)
    if check.kind == "exact":
        if answer.strip() == str(check.value).strip():
            return PASS
        return Verdict(False, "wrong_answer", f"answer: {shown} is not {json.dumps(check.value)}")
    if check.kind == "contains":
        if str(check.value) in answer:
            return PASS
        return Verdict(
            False, "wrong_answer", f"answer: {shown} does not contain {json.dumps(check.value)}"
        )
    if check.kind == "schema":
        try:
            value = json.loads(answer)
        except json.JSONDecodeError as exc:
            return Verdict(False, "wrong_answer", f"answer: not JSON ({exc.msg}): {shown}")
        error = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(check.value)(check.value).iter_errors(value)
        )
        if error is None:
            return PASS
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        return Verdict(False, "wrong_answer", f"answer{where}: {error.message}")
    if load_predicate(str(check.value))(answer):
        return PASS
    return Verdict(False, "wrong_answer", f"answer: {check.value} says no to {shown}")
