"""The dashboard: plain HTML/CSS/JS files from api/static/, served at `/` and `/ui/<file>`, without auth.

The pages sign in with a token kept in the browser and call the JSON API with it; nothing here reads data.
`/ui/config-defaults.json` gives the launch form each dataset's resolved default config and the presets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from core.config import BUILTIN_DATASETS, PRESETS, RunConfig

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Files are looked up by name in this listing, taken once at import: no path is built from the request.
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()} if STATIC_DIR.is_dir() else {}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@router.get("/")
def index() -> FileResponse:
    """The dashboard's single page."""
    if "index.html" not in STATIC_FILES:
        raise HTTPException(status_code=404, detail="The dashboard's files are not installed (api/static/)")
    return FileResponse(
        STATIC_FILES["index.html"], media_type=MEDIA_TYPES[".html"], headers={"Cache-Control": "no-cache"}
    )


@router.get("/ui/config-defaults.json")
def config_defaults() -> dict[str, Any]:
    """Each built-in dataset's resolved default config ("_uploaded" for image dataset ids, "_uploaded_table" for
    table ids, "_uploaded_paired" and "_uploaded_unpaired" for translation uploads), and the presets."""
    datasets = {name: RunConfig.model_validate({"dataset": name}).model_dump(mode="json") for name in BUILTIN_DATASETS}
    datasets["_uploaded"] = RunConfig.model_validate({"dataset": "ds_00000000"}).model_dump(mode="json")
    datasets["_uploaded_table"] = RunConfig.model_validate({"dataset": "tbl_00000000"}).model_dump(mode="json")
    for pairing in ("paired", "unpaired"):
        config = RunConfig.model_validate({"dataset": f"{pairing}_00000000"})
        datasets[f"_uploaded_{pairing}"] = config.model_dump(mode="json")
    return {"datasets": datasets, "presets": PRESETS}


@router.get("/ui/{name}")
def static_file(name: str) -> FileResponse:
    """One of the dashboard's files."""
    path = STATIC_FILES.get(name)
    if path is None:
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix), headers={"Cache-Control": "no-cache"})
