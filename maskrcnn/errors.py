"""Exceptions a user can cause; the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Base for errors caused by user input (files, arguments, configs, checkpoints)."""


class ConfigError(UserError, ValueError):
    """A configuration key or value that does not fit the dataclasses."""


class ImageError(UserError, ValueError):
    """An image that is missing or cannot be decoded."""


class CheckpointError(UserError, ValueError):
    """A weights file that is unreadable or does not fit the model."""


class DatasetError(UserError, ValueError):
    """An annotation file or dataset folder that is malformed."""


class OutputError(UserError, OSError):
    """An output path that cannot be written (no permission, read-only, under a file, disk full)."""
