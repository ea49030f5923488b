"""User-facing errors: one line that says what was wrong and what to do."""


class IntvitError(ValueError):
    """A problem with the user's input (bad config, file, model or option).

    The CLI prints the message as one line and exits with status 2; nothing else catches it.
    """


class ConfigError(IntvitError):
    """A config field is out of range; the message names the config, field and value."""
