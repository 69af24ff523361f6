# Loaded by Python at start-up when this directory is on PYTHONPATH (scripts/schemathesis/run.sh).
#
# Python 3.11's AST constructor can fail with "SystemError: AST constructor recursion depth
# mismatch" (CPython issue 106905: a failure half-way leaves its depth counter raised). Hypothesis
# parses schemathesis's own source to describe a filter's lambda — for its reports only — and
# when that parse fails so, the run stops with a runtime error that says nothing about the API
# under test. Hypothesis already treats a source it cannot parse (a SyntaxError) as "lambda of
# unknown text"; this makes the interpreter's bug look like that.
import ast

_parse = ast.parse


def _parse_or_give_up(*args, **kwargs):
    try:
        return _parse(*args, **kwargs)
    except SystemError as error:
        raise SyntaxError(f"not parsed: {error}") from error


ast.parse = _parse_or_give_up
