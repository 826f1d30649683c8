"""Page sizes of every list, apart from the models: the CLI's options need them without loading pydantic models."""

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
