"""The service's front end: the API model, request validation, errors, idempotency, paging, the CLI and client."""
