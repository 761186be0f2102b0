"""User-facing errors: raised for bad input or configuration, printed without a traceback."""


class PipelineError(Exception):
    """A problem the user can fix (bad params, bad input file, missing artefact)."""
