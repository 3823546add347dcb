"""The errors of the study verbs that a user can act on. The CLI prints each as one line with exit code 2; the
API answers them with a 4xx and `{"detail": "<the line>"}`."""

from __future__ import annotations


class StudyError(Exception):
    """A study could not start or continue for a reason the user can act on (a wrong address, a refused
    token, a study that cannot be resumed)."""


class StudyConflict(StudyError):
    """The study is not in a state that allows what was asked (stopping a finished study, say): HTTP 409."""
