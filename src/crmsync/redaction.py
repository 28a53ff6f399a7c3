"""Masking secrets in every message crm-sync writes: errors, stored run errors and logs.

A :class:`Redactor` knows the secret values of the loaded config (every ``SecretStr``
of the connector sections, and the database URL's password; see
:func:`crmsync.config.secret_values`) and, whoever registered them, masks each
occurrence with :data:`MASK` (never a prefix of the secret), as well as the token of
anything shaped like a bearer credential (``Bearer <token>``), which may be one no config
holds (an OAuth access token refreshed at run time).

- ``redactor.redact(text)`` for a message about to be printed or stored;
- ``redactor.log_filter()`` is a :class:`logging.Filter` that masks a log record's
  message, its arguments, its exception text and its stack before any handler formats
  it; ``redactor.install(logger)`` adds it to each handler of that logger (the root
  logger by default), so records that propagate from any module are masked too.

A secret is masked as written and in the forms messages quote it in: ``repr`` escapes
(``{value!r}``) and URL percent-encoding.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

__all__ = ["MASK", "RedactingFilter", "Redactor"]

MASK = "***"
#: A bearer credential in a message (RFC 6750's token characters): the token is masked.
_CREDENTIAL = re.compile(r"\b(Bearer)(\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)


class Redactor:
    """Masks registered secret values, and bearer credentials, in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Register a secret value (and the forms messages quote it in) to mask."""
        if not secret:
            return
        self._secrets.update({secret, repr(secret)[1:-1], quote(secret, safe="")})
        # Longest first, so a secret containing another is masked whole.
        alternatives = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def redact(self, text: str) -> str:
        """``text`` with every registered secret and bearer credential masked."""
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _CREDENTIAL.sub(rf"\1\2{MASK}", text)

    def log_filter(self) -> RedactingFilter:
        return RedactingFilter(self)

    def install(self, logger: logging.Logger | None = None) -> None:
        """Mask every record that reaches the handlers of ``logger`` (default: the root)."""
        target = logger or logging.getLogger()
        for handler in target.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(self.log_filter())


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, exception text and stack.

    The record is rewritten in place (its message formatted and masked, its exception
    rendered to masked text), so every handler after this filter sees only masked text.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self._redactor.redact
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # The exception is kept only as masked text: no handler renders it again.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
