"""Domain exceptions.  Every message names the offending input and says how to fix it.

The CLI maps :class:`ConfigError` subclasses (bad input) to exit code 2 and every other
:class:`NuinferError` (runtime failure) to exit code 1.
"""

from __future__ import annotations


class NuinferError(Exception):
    """Base class of every error raised on purpose by nuinfer."""


class ConfigError(NuinferError, ValueError):
    """Bad user input: a configuration key, an argument, or a user-supplied file.

    Parameters
    ----------
    message : str
        What is wrong and how to fix it.
    key : str, optional
        Dotted path of the offending key (``scan.m_X_MeV.lo``); prefixed to the message.
    """

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class InvalidConfig(ConfigError):
    """A configuration value has the wrong type, an unknown name, or an impossible value."""


class UnknownKey(InvalidConfig):
    """A configuration file contains a key that nuinfer does not know (probably a typo)."""


class UnphysicalInput(ConfigError):
    """A physical input is out of its domain (negative mass or exposure, lo >= hi, ...)."""


class EmptyWindow(ConfigError):
    """The requested energy window receives no events from any source (all-zero expectation)."""


class DataFileError(ConfigError):
    """A user-supplied table (flux, counts, efficiency) is unreadable or malformed."""


class NumericalError(NuinferError, ArithmeticError):
    """A computation produced NaN/inf or did not converge where a finite result was required."""
