"""The error types every stage raises.

Each message names the thing a user has to fix (repository/ref/path, variable, key id, platform,
output name). Callers decide what is worth retrying by type alone: only `TransientError` is.
"""


class EdgeDeployError(Exception):
    """Base class: a failure with a message meant for the person running the pipeline."""


class ConfigError(EdgeDeployError):
    """A setting is missing or malformed; the message names the environment variable."""


class TransientError(EdgeDeployError):
    """A failure a retry can cure: a timeout, a reset connection, a 5xx answer."""


class StorageError(EdgeDeployError):
    """lakeFS or S3 refused a request, or returned data that does not match what it announced."""


class NotFoundError(StorageError):
    """The repository, ref or object does not exist."""
