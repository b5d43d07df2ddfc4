"""What the server offers, parsed from its EHLO reply (RFC 5321 section 4.1.1.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .replies import Reply

__all__ = ["Capabilities"]


@dataclass
class Capabilities:
    """The server's ESMTP extensions. ``esmtp`` is False after a fallback to HELO."""

    esmtp: bool = True
    extensions: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, ...] = ()
    size: int | None = None

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Capabilities:
        """Parse an EHLO reply. The first line is the server's name, not an extension."""
        extensions: dict[str, str] = {}
        auth: list[str] = []
        for line in reply.lines[1:]:
            keyword, _, params = line.strip().partition(" ")
            # Some old servers (Exchange, early qmail) advertise "AUTH=LOGIN PLAIN".
            if keyword.upper().startswith("AUTH="):
                params = f"{keyword[5:]} {params}".strip()
                keyword = "AUTH"
            keyword = keyword.upper()
            # RFC 5321 ehlo-keyword: ALPHA / DIGIT *(ALPHA / DIGIT / "-"); skip the rest.
            if not keyword or not keyword.replace("-", "").isalnum() or not keyword.isascii():
                continue
            params = params.strip()
            if keyword == "AUTH":
                for mech in params.upper().split():
                    if mech not in auth:
                        auth.append(mech)
                params = " ".join(auth)
            extensions[keyword] = params
        size = None
        size_param = extensions.get("SIZE", "")
        # RFC 1870: "SIZE" without a number, or "SIZE 0", means no fixed limit.
        if size_param.isdigit() and int(size_param) > 0:
            size = int(size_param)
        return cls(esmtp=True, extensions=extensions, auth=tuple(auth), size=size)

    @classmethod
    def from_helo(cls) -> Capabilities:
        """A plain RFC 821 server: no extensions at all."""
        return cls(esmtp=False)

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.extensions

    @property
    def pipelining(self) -> bool:
        return self.has("PIPELINING")

    @property
    def chunking(self) -> bool:
        return self.has("CHUNKING")

    @property
    def smtputf8(self) -> bool:
        return self.has("SMTPUTF8")

    @property
    def eightbitmime(self) -> bool:
        return self.has("8BITMIME")

    @property
    def dsn(self) -> bool:
        return self.has("DSN")

    @property
    def starttls(self) -> bool:
        return self.has("STARTTLS")

    @property
    def enhancedstatuscodes(self) -> bool:
        return self.has("ENHANCEDSTATUSCODES")

    def to_dict(self) -> dict[str, object]:
        """JSON-able snapshot (stored on the account, printed by the CLI)."""
        return {
            "esmtp": self.esmtp,
            "extensions": dict(self.extensions),
            "auth": list(self.auth),
            "size": self.size,
            "pipelining": self.pipelining,
            "chunking": self.chunking,
            "smtputf8": self.smtputf8,
            "eightbitmime": self.eightbitmime,
            "dsn": self.dsn,
            "starttls": self.starttls,
            "enhancedstatuscodes": self.enhancedstatuscodes,
        }
