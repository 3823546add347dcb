"""What the registry raises that a caller can act on."""


class StudyNotFound(LookupError):
    """No study has the id asked for."""


class RegistryUnavailable(RuntimeError):
    """The registry's database cannot be opened (a wrong URL, a server that is down, no permission, a schema
    newer than this hpsearch)."""
