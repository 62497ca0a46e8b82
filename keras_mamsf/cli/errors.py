"""`CommandError`: the error every `mamsf` command raises for input the user can fix."""


class CommandError(Exception):
    """A bad input or state the user can fix; printed as one line, exit status 1."""
