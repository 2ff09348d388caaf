"""Errors a user can cause, raised with one message that says what is wrong and how to fix it."""


class UserInputError(ValueError):
    """A problem in the user's config, sample sheet or input data (not a bug in the workflow).

    The message names the sample, the field and what to do. Raised while Snakemake parses, it
    becomes one WorkflowError line; raised inside a job, adapters let it propagate to
    :func:`cordatlas.logs.rule_logging`, which prints the message as one console line, writes
    the traceback to the job's log only, and exits the job with status 1.
    """


class OutputCheckError(UserInputError):
    """A rule's output is valid as a file but unusable by any later stage (0 cells, no genes,
    a missing column, non-integer counts): raised before or right after it is written.

    The message names the output file, what was found and what to do. Raised inside a job, it
    fails the job, and Snakemake removes the outputs of a failed job, so a rerun never trusts
    the bad file (issue 13). A subclass of :class:`UserInputError`: the cause is nearly always
    the data or the settings, and it is printed as one line in the same way.
    """
