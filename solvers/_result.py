"""TRANSITION: the result lives in tikhon._core.result; this module goes with the old loop."""

from tikhon._core.result import Result  # noqa: F401
