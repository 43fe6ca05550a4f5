"""Import a catalogue folder into the database, with progress and the importer's report."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.markdown import escape_markdown
from core.settings import get_settings
from services.catalogue import CatalogueFormatError, import_folder
from ui import data

settings = get_settings()
st.title("Import a catalogue")
products, images = data.catalogue_counts(data.database_url())
st.caption(f"Database: `{data.database_url()}` · {products:,} products, {images:,} photos")
st.markdown(
    "A catalogue folder holds `Products.csv`, `Images.csv` and `images/<image id>.jpg`. Importing is "
    "idempotent: importing the same folder again changes nothing. Bad rows are skipped and listed. "
    "From the command line: `python -m core import FOLDER`."
)

with st.form("import_form"):
    folder = st.text_input("Catalogue folder", value=str(settings.marketplace_data), max_chars=1000)
    submitted = st.form_submit_button("Import", type="primary")

if submitted:
    source = Path(folder.strip()).expanduser()
    bar = st.progress(0.0, text="Reading products…")

    def show_progress(stage: str, done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{stage}: {done:,} / {total:,}")

    try:
        report = import_folder(source, engine=data.engine(), settings=settings, progress=show_progress)
    except CatalogueFormatError as error:
        bar.empty()
        st.error(f"Nothing was imported: {escape_markdown(str(error))}")
    except OSError as error:
        bar.empty()
        st.error(f"Nothing was imported: the folder could not be read ({escape_markdown(str(error.strerror or error))}).")
    else:
        bar.progress(1.0, text="Done")
        data.invalidate()
        st.success(
            f"Imported {report.products_imported:,} products and {report.images_imported:,} photos in {report.seconds:.1f} s "
            f"({report.products_added:,} new products, {report.images_added:,} new photos)."
        )
        for note in report.notes:
            st.warning(escape_markdown(note))
        if report.skipped:
            st.warning(f"{len(report.skipped):,} rows were skipped:")
            st.dataframe(pd.DataFrame([row.__dict__ for row in report.skipped]), hide_index=True, width="stretch")
