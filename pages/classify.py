"""Classify a listing from photos and/or text; similar items, a suggested price, and adding it to
the catalogue with the chosen category."""

import hashlib
from decimal import Decimal

import streamlit as st

from core.data.images import ImageError
from core.data.markdown import escape_markdown
from core.data.uploads import MAX_PHOTOS, MAX_UPLOAD_MB, UPLOAD_TYPES, read_uploaded_photos
from core.evaluation.figures import model_comparison_bar, probability_bar
from core.inference.category_classifier import NothingToClassify
from core.models.manifest import ModelFileError
from core.settings import get_settings
from services.listing_analysis import ListingAnalysis, analyse_listing
from services.listings import ListingError, NewListing, UploadedPhoto, add_listing, judged_by
from ui import data, resources
from ui.explanations import explanation
from ui.widgets import category_picker, job_progress, product_detail_from_query, product_gallery

st.title("Classify a listing")
if product_detail_from_query():
    st.stop()
try:
    classifier = resources.classifier()
except ModelFileError as error:
    st.error(f"The models could not be loaded: {escape_markdown(str(error))}")
    st.stop()

st.caption(
    f"Upload up to {MAX_PHOTOS} photos (JPG, PNG, WebP or GIF, at most {MAX_UPLOAD_MB} MB each) and/or type a title and "
    "description. With both, the combined model answers; with one, the image or text model alone."
)
photo_col, text_col = st.columns([1, 1])
uploads = photo_col.file_uploader(
    "Photos", type=list(UPLOAD_TYPES), accept_multiple_files=True, key="classify_photos", max_upload_size=MAX_UPLOAD_MB
)
title = text_col.text_input("Title", key="classify_title", max_chars=200, placeholder="e.g. Oak dining table with 4 chairs")
description = text_col.text_area("Description", key="classify_description", max_chars=5000, height=140)

files = [(upload.name, upload.getvalue()) for upload in uploads or []]
read = read_uploaded_photos(files)
for problem in read.problems:
    st.error(f"Photo not used: {escape_markdown(problem)}")

product_count, _ = data.catalogue_counts(data.database_url())
has_input = bool(read.photos or title.strip() or description.strip())
# Similar items and the price need the catalogue's embeddings; until a background job has them the
# category alone is shown, and the analysis is redone once they are there.
indexes = resources.search_indexes() if product_count and has_input else None
# Analyse once per change of the inputs, not on every rerun (widgets below rerun the page too).
inputs = hashlib.sha256(
    repr((resources.models_key(), [hashlib.sha256(content).hexdigest() for _, content in read.files], title, description)).encode()
).hexdigest()
digest = f"{inputs}:{indexes is not None}"
if st.session_state.get("classify_digest") != digest:
    st.session_state.pop("classify_analysis", None)
    if not st.session_state.get("classify_digest", "").startswith(inputs):
        st.session_state.pop("classify_saved", None)
    if has_input:
        with st.spinner("Classifying…"):
            try:
                analysis = analyse_listing(
                    classifier,
                    photos=read.photos,
                    title=title,
                    description=description,
                    engine=data.engine(),
                    indexes=indexes,
                    price_predictor=resources.price_predictor() if product_count >= 20 else None,
                )
            except NothingToClassify:
                analysis = None
        st.session_state["classify_analysis"] = analysis
    st.session_state["classify_digest"] = digest

analysis: ListingAnalysis | None = st.session_state.get("classify_analysis")
if analysis is None:
    st.info(
        "Upload a photo or type a title or description to classify a listing."
        if not read.problems
        else "None of the uploaded files could be used: see the messages above."
    )
    st.stop()

prediction = analysis.prediction
answer_col, chart_col = st.columns([1, 2])
with answer_col:
    st.metric("Predicted category", prediction.category, help="The top-level category with the highest probability")
    st.markdown(f"Answered by the **{prediction.model}** model · confidence **{prediction.top[0][1]:.1%}**")
    if prediction.confident:
        st.success(f"{escape_markdown(prediction.verdict)}: sure enough to file automatically", icon=":material/check_circle:")
    elif prediction.prediction_set:
        st.warning(
            f"Not sure: {escape_markdown(prediction.verdict)}. A listing added from here joins the review queue.", icon=":material/help:"
        )
    if analysis.price is not None:
        price = analysis.price
        st.metric(
            "Suggested price", f"£{price.estimate:,.2f}", help="Geometric mean of the price model's estimate and the similar items' median"
        )
        parts = []
        if price.model_estimate is not None:
            parts.append(f"price model £{price.model_estimate:,.2f}")
        if price.neighbour_median is not None:
            parts.append(f"median of {price.neighbours} similar items £{price.neighbour_median:,.2f}")
        st.caption(f"Range £{price.low:,.2f} – £{price.high:,.2f} ({'; '.join(parts)})")
with chart_col:
    st.plotly_chart(
        probability_bar(prediction.labels, prediction.probabilities[prediction.model], title=f"Top 5 ({prediction.model} model)"),
        key="classify_top5",
    )
if len(prediction.probabilities) > 1:
    st.plotly_chart(model_comparison_bar(prediction.labels, prediction.probabilities), key="classify_models")
explanation(resources.classifier, text=f"{title}\n{description}", photos=lambda: read.photos, category=prediction.category, key="classify")

if analysis.similar:
    st.subheader("Most similar catalogue items", anchor=False)
    product_gallery([hit.product for hit in analysis.similar], key="classify_similar", notes=[hit.why for hit in analysis.similar])
elif not product_count:
    st.caption("Import a catalogue to see similar items and a suggested price.")
elif indexes is None:
    job_progress(resources.embedding_job_key(), waiting="Similar items")

st.subheader("Add to the catalogue", anchor=False)
if st.session_state.get("classify_saved"):
    st.success(f"Added as product {st.session_state['classify_saved']}.")
    st.page_link(
        "pages/browse.py",
        label="Browse the catalogue",
        icon=":material/grid_view:",
        query_params={"product": st.session_state["classify_saved"]},
    )
elif not data.catalogue_counts(data.database_url())[0]:
    st.caption("Adding listings needs a catalogue (its categories): import one first.")
else:
    category = category_picker(key="classify_category", default_top=prediction.category)
    with st.form("classify_add"):
        default_price = analysis.price.estimate if analysis.price else 0.0
        price_col, location_col, name_col = st.columns(3)
        price_value = price_col.number_input(
            "Price (£)", min_value=0.0, max_value=10_000_000.0, value=float(default_price), step=1.0, key="classify_price"
        )
        location = location_col.text_input("Location", max_chars=200, placeholder="Town, County", key="classify_location")
        added_by = name_col.text_input("Your name", max_chars=100, value=st.session_state.get("reviewer_name", ""), key="classify_added_by")
        submitted = st.form_submit_button("Add to catalogue", type="primary")
    if submitted:
        if not title.strip():
            st.error("Give the listing a title before adding it.")
        elif not added_by.strip():
            st.error("Give your name: the label history records who added the listing.")
        else:
            listing = NewListing(
                name=title,
                description=description,
                price=Decimal(str(round(price_value, 2))),
                location=location,
                category=category,
                photos=[UploadedPhoto(name, content) for name, content in read.files],
            )
            try:
                product_id = add_listing(
                    data.engine(),
                    judged_by(listing, prediction),
                    media_dir=get_settings().media_dir,
                    added_by=added_by.strip(),
                    image_size=get_settings().image_size,
                )
            except (ListingError, ImageError) as error:
                st.error(f"Not added: {escape_markdown(str(error))}")
            else:
                st.session_state["reviewer_name"] = added_by.strip()
                st.session_state["classify_saved"] = product_id
                data.invalidate()
                st.rerun()
st.caption(escape_markdown(f"Models: {get_settings().models_dir}"))
