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

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def get_settings() -> Settings:
    data_dir = Path(os.environ.get("MARKETPLACE_HOME", PROJECT_ROOT / "data"))
    return Settings(
        database_url=os.environ.get("DATABASE_URL", f"sqlite:///{data_dir / 'catalogue.db'}"),
        data_dir=data_dir,
        media_dir=Path(os.environ.get("MARKETPLACE_MEDIA", data_dir / "images")),
        models_dir=Path(os.environ.get("MARKETPLACE_MODELS", PROJECT_ROOT / "models")),
        marketplace_data=Path(
            os.environ.get("MARKETPLACE_DATA", PROJECT_ROOT.parent / "shared" / "data" / "marketplace")
        ),
        image_size=int(os.environ.get("MARKETPLACE_IMAGE_SIZE", "512")),
    )
