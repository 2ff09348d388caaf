"""Errors a user can cause, raised with one message that says what is wrong and how to fix it."""


class UserInputError(ValueError):
    """A problem in the user's config, sample sheet or input data (not a bug in the workflow).

    The message names the sample, the field and what to do; adapters let it propagate so the
    Snakemake log shows exactly that message.
    """
