"""What the interactive docs (`/docs`) show for an endpoint: an example of its answer."""

from __future__ import annotations

from typing import Any


def answer(
    example: object, description: str, *, status: int = 200, errors: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its answer with an example, and what its own error statuses mean."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"description": description, "content": {"application/json": {"example": example}}}
    }
    for error_status, meaning in (errors or {}).items():
        responses[error_status] = {"description": meaning}
    return responses
