"""Errors a user can cause, raised with one message that says what is wrong and how to fix it."""


class UserInputError(ValueError):
    """A problem in the user's config, sample sheet or input data (not a bug in the workflow).

    The message names the sample, the field and what to do. Raised while Snakemake parses, it
    becomes one WorkflowError line; raised inside a job, adapters let it propagate to
    :func:`cordatlas.logs.rule_logging`, which prints the message as one console line, writes
    the traceback to the job's log only, and exits the job with status 1.
    """
