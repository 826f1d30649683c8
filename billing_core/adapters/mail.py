"""The SMTP adapter: sends one ``EmailMessage`` over ``aiosmtplib``, configured from ``SMTP_URL``.

``smtp://user:pass@host:587?starttls=true`` upgrades with STARTTLS, ``smtps://host:465`` speaks TLS from
the first byte, plain ``smtp://host:25`` sends in clear text (local relays, tests). User and password are
percent-decoded, so a password holding ``@`` or ``:`` is written ``%40`` / ``%3A``. ``?timeout=SECONDS``
bounds every network step.

It implements :class:`~billing_core.ports.MailSender`: every aiosmtplib or network failure surfaces as a
:class:`~billing_core.ports.MailSendError` that says whether another attempt may succeed (``retryable``):
4xx replies, refused or dropped connections and timeouts are retryable; 5xx replies are permanent, except
a refused login (535 and friends), which is a configuration fault of ours that an operator can fix while
the mail waits. The password never appears in a log line, an error or a ``repr``.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from billing_core.ports import MailSendError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class MailConfigurationError(ValueError):
    """``SMTP_URL`` or the from address cannot be used (raised at start-up, never while sending)."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool = False
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """Parse ``smtp[s]://[user[:password]@]host[:port][?starttls=true&timeout=30]``."""
        try:
            parts = urlsplit(url.strip())
            port_given = parts.port
        except ValueError as error:  # a bad port; the message quotes no part of the URL
            raise MailConfigurationError("SMTP_URL has an invalid port") from error
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise MailConfigurationError("SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise MailConfigurationError("SMTP_URL names no host")
        query = {key.lower(): values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"starttls", "timeout"}
        if unknown:
            raise MailConfigurationError(f"SMTP_URL has unknown options: {', '.join(sorted(unknown))}")
        start_tls = _flag(query.get("starttls"), "starttls")
        use_tls = scheme == "smtps"
        if use_tls and start_tls:
            raise MailConfigurationError("smtps:// already speaks TLS; starttls=true only goes with smtp://")
        timeout = DEFAULT_TIMEOUT
        if "timeout" in query:
            try:
                timeout = float(query["timeout"])
            except ValueError:
                raise MailConfigurationError("SMTP_URL timeout must be a number of seconds") from None
            if not 0 < timeout <= 600:
                raise MailConfigurationError("SMTP_URL timeout must be between 0 and 600 seconds")
        port = port_given or (465 if use_tls else 587 if start_tls else 25)
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            use_tls=use_tls,
            start_tls=start_tls,
            timeout=timeout,
        )

    def describe(self) -> str:
        """The server for logs and errors: scheme, user, host and port, never the password."""
        scheme = "smtps" if self.use_tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        tls = "?starttls=true" if self.start_tls else ""
        return f"{scheme}://{user}{self.host}:{self.port}{tls}"


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise MailConfigurationError(f"SMTP_URL option {name} must be true or false")


def _address(text: str) -> Address:
    name, addr = parseaddr(text)
    if "@" not in addr:
        raise MailConfigurationError("the mail from address needs a mailbox like billing@example.com")
    local, _, domain = addr.rpartition("@")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, TypeError) as error:
        raise MailConfigurationError(f"the mail from address is not usable: {error}") from error


class SmtpMailSender:
    """Sends mails through one SMTP server; a new connection per mail (the outbox sends a few a minute)."""

    def __init__(
        self,
        config: SmtpConfig,
        *,
        from_address: str,
        local_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self._from = _address(from_address)
        self._local_hostname = local_hostname
        self._tls_context = tls_context

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        from_address: str,
        local_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> SmtpMailSender:
        return cls(
            SmtpConfig.from_url(url),
            from_address=from_address,
            local_hostname=local_hostname,
            tls_context=tls_context,
        )

    @property
    def from_address(self) -> str:
        return str(self._from)

    def __repr__(self) -> str:
        return f"SmtpMailSender({self._config.describe()!r}, from_address={self.from_address!r})"

    async def send(self, message: EmailMessage) -> None:
        """Send ``message`` (From, Date and Message-ID are filled in when missing); raises MailSendError."""
        if message["From"] is None:
            message["From"] = self._from
        if message["Date"] is None:
            message["Date"] = formatdate(localtime=False, usegmt=True)
        if message["Message-ID"] is None:
            message["Message-ID"] = make_msgid(domain=self._from.domain)
        recipients = [addr for _, addr in getaddresses(message.get_all("To", []) + message.get_all("Cc", [])) if addr]
        recipients += [addr for _, addr in getaddresses(message.get_all("Bcc", [])) if addr]
        if not recipients:
            raise MailSendError("the mail has no recipient", retryable=False)
        if message["Bcc"] is not None:
            del message["Bcc"]
        config = self._config
        try:
            refused, _reply = await aiosmtplib.send(
                message,
                sender=self._from.addr_spec,
                recipients=recipients,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.use_tls,
                start_tls=config.start_tls,
                timeout=config.timeout,
                local_hostname=self._local_hostname,
                tls_context=self._tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            raise _refused(error.recipients) from None
        except aiosmtplib.SMTPAuthenticationError as error:
            log.warning("SMTP login refused", extra={"server": config.describe(), "smtp_code": error.code})
            raise MailSendError(
                f"the SMTP server {config.describe()} refused the login ({error.code}); check SMTP_URL",
                retryable=True,
                code=error.code,
                server_down=True,
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            raise MailSendError(
                f"the SMTP server replied {error.code}: {error.message}",
                retryable=error.code < 500,
                code=error.code,
                server_down=error.code == 421 or isinstance(error, aiosmtplib.SMTPConnectError),
            ) from None
        except aiosmtplib.SMTPNotSupported as error:  # e.g. STARTTLS asked for but not offered: our configuration
            raise MailSendError(
                f"the SMTP server {config.describe()}: {error.message}", retryable=True, server_down=True
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            # refused or dropped connections, timeouts, TLS handshakes; messages name host and port only
            raise MailSendError(
                f"cannot reach the SMTP server {config.describe()}: {_describe(error)}",
                retryable=True,
                server_down=True,
            ) from None
        if refused:
            failures = [aiosmtplib.SMTPRecipientRefused(code, text, rcpt) for rcpt, (code, text) in refused.items()]
            # some went out: retrying would send the others a second copy, so this one is settled as permanent
            raise _refused(failures, retryable=False)


def _refused(failures: list[aiosmtplib.SMTPRecipientRefused], *, retryable: bool | None = None) -> MailSendError:
    codes = [f.code for f in failures]
    text = "; ".join(f"{f.recipient}: {f.code} {f.message}" for f in failures)
    if retryable is None:
        retryable = all(code < 500 for code in codes)
    return MailSendError(f"the SMTP server refused the recipient ({text})", retryable=retryable, code=max(codes))


def _describe(error: BaseException) -> str:
    text = error.message if isinstance(error, aiosmtplib.SMTPException) else str(error)
    return text or type(error).__name__
