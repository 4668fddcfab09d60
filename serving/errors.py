"""Errors of the serving layer, rooted in the project's family (clickstream/errors.py)."""

from __future__ import annotations

from clickstream.errors import ClickstreamError, ConfigError, RetriableError

#: How each query parameter is spelt on the command line.
CLI_FLAGS = {
    "from": "--from",
    "to": "--to",
    "url": "--url",
    "country": "--country",
    "group_by": "--group-by",
    "top": "--top",
    "bucket": "--bucket",
}


class ServingError(ClickstreamError):
    """Root of the serving layer's errors."""


class QueryError(ServingError, ConfigError):
    """A query parameter is malformed or out of bounds; names the parameter and the fix."""

    def __init__(self, parameter: str, problem: str, fix: str) -> None:
        self.parameter = parameter
        self.problem = problem
        self.fix = fix
        super().__init__(f"{parameter}: {problem}; {fix}")

    def for_cli(self) -> str:
        """The message with the parameters spelt as command-line flags."""
        names = [CLI_FLAGS.get(name, name) for name in self.parameter.split(",")]
        return f"{'/'.join(names)}: {self.problem}; {self.fix}"


class RangeRuleError(QueryError):
    """A rule no single parameter's schema can state: ``to`` after ``from``, the longest range,
    the most points of a series, a calendar date that does not exist (30 February), an instant
    before 1970 or after 9999 once the offset is applied. The API answers 422 ``bad_range``;
    every other refusal of a request that matches the OpenAPI schema would be a defect."""


class TooBroadError(QueryError):
    """The query would merge more documents than serving.max_documents allows."""


class BackendUnavailableError(ServingError, RetriableError):
    """Elasticsearch (or another store the answer needs) cannot be reached."""
