"""What the registry raises that a caller can act on."""

from __future__ import annotations


class StudyNotFound(LookupError):
    """No study has the id asked for. `str()` says where it looked (the registry's URL, for a local user);
    `public` says the same without it (what the API answers: its registry's address is nobody's business)."""

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public = public or message


class RegistryUnavailable(RuntimeError):
    """The registry's database cannot be opened (a wrong URL, a server that is down, no permission, a schema
    newer than this hpsearch)."""
