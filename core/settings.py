"""All configurable paths and URLs in one place, each overridable by an environment variable.

Settings are read when `get_settings()` is called, not at import, so tests and the app can
point a process at another database by changing the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    media_dir: Path
    models_dir: Path
    marketplace_data: Path
    image_size: int
    shipped_models_dir: Path  # where `ship` writes: MARKETPLACE_MODELS, else the repo's models/
    active_models_dir: Path  # a run made active from the Training page; when present it wins over the shipped set
    api_reads_need_key: bool = False  # the HTTP API's reads need a key too (writes always do)
    api_cors_origins: tuple[str, ...] = ()  # origins a browser may call the HTTP API from; none: CORS off
    api_timeout_seconds: float = 30.0  # an HTTP API request still computing after this is answered 503

    @property
    def cache_dir(self) -> Path:
        """The encoders' outputs for this catalogue home (core.encoders.embedding_store)."""
        return self.data_dir / "cache"

    @property
    def runs_dir(self) -> Path:
        """Training runs' checkpoints."""
        return self.data_dir / "runs"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def home_environment(home: Path, *, database_url: str | None = None, media_dir: Path | None = None) -> dict[str, str]:
    """The variables that point the app, the CLI and child processes at a catalogue home (its
    database, photos and caches), with the same defaults as get_settings."""
    return {
        "MARKETPLACE_HOME": str(home),
        "DATABASE_URL": database_url or f"sqlite:///{home / 'catalogue.db'}",
        "MARKETPLACE_MEDIA": str(media_dir or home / "images"),
    }


def get_settings() -> Settings:
    data_dir = Path(os.environ.get("MARKETPLACE_HOME", PROJECT_ROOT / "data"))
    shipped = PROJECT_ROOT / "models"
    active = data_dir / "active-models"
    default_models = active if (active / "manifest.json").is_file() else shipped
    return Settings(
        database_url=os.environ.get("DATABASE_URL", f"sqlite:///{data_dir / 'catalogue.db'}"),
        data_dir=data_dir,
        media_dir=Path(os.environ.get("MARKETPLACE_MEDIA", data_dir / "images")),
        models_dir=Path(os.environ.get("MARKETPLACE_MODELS", default_models)),
        marketplace_data=Path(os.environ.get("MARKETPLACE_DATA", PROJECT_ROOT.parent / "shared" / "data" / "marketplace")),
        image_size=int(os.environ.get("MARKETPLACE_IMAGE_SIZE", "512")),
        shipped_models_dir=Path(os.environ.get("MARKETPLACE_MODELS", shipped)),
        active_models_dir=active,
        api_reads_need_key=os.environ.get("MARKETPLACE_API_READS_NEED_KEY", "0").strip().lower() in ("1", "true", "yes"),
        api_cors_origins=tuple(
            origin.strip() for origin in os.environ.get("MARKETPLACE_API_CORS_ORIGINS", "").split(",") if origin.strip()
        ),
        api_timeout_seconds=float(os.environ.get("MARKETPLACE_API_TIMEOUT", "30")),
    )
