"""Errors raised while fetching model sources and building artifacts."""


class ModelBuildError(Exception):
    """The model could not be built; the message says what to fix."""


class SourceFetchError(ModelBuildError):
    """The pinned source wheel could not be downloaded."""


class SourceIntegrityError(ModelBuildError):
    """A downloaded or cached file does not match its pinned digest or expected layout."""
