"""Catalogue dashboard: counts per category with drill-down, prices, locations, missing photos."""

import streamlit as st

from core.data.markdown import escape_markdown
from core.enums import ModelKind
from core.evaluation import dashboard_figures
from core.evaluation.figures import per_class_bar
from core.evaluation.metrics import per_class_frame
from core.models.manifest import ModelFileError
from services import review_queue
from ui import data, resources
from ui.widgets import job_progress, require_catalogue

st.title("Dashboard")
product_count, image_count = require_catalogue()
products = data.products_frame(data.database_url())
no_photo = dashboard_figures.products_without_photos(products)

metrics = st.columns(5)
metrics[0].metric("Products", f"{product_count:,}")
metrics[1].metric("Photos", f"{image_count:,}")
metrics[2].metric("Top-level categories", products["top"].nunique())
metrics[3].metric("Median price", f"£{products['price'].median():,.2f}")
metrics[4].metric("Products with no photo", f"{len(no_photo):,}")

overview, drill = st.columns(2)
with overview:
    st.plotly_chart(
        dashboard_figures.category_bar(dashboard_figures.category_summary(products), title="Products and photos per category"),
        key="category_bar",
    )
with drill:
    top = st.selectbox("Drill into a category", sorted(products["top"].unique()), key="dashboard_drill")
    subs = dashboard_figures.category_summary(products, level="sub", within=top)
    st.plotly_chart(dashboard_figures.category_bar(subs, title=f"Sub-categories of {top}"), key="sub_bar")

st.plotly_chart(dashboard_figures.category_treemap(products), key="treemap")
st.plotly_chart(dashboard_figures.price_box(products), key="price_box")

by = st.radio("Locations by", ["town", "county"], horizontal=True, key="dashboard_location_by")
st.plotly_chart(
    dashboard_figures.location_bar(dashboard_figures.location_summary(products, by=by), title=f"Top 15 {by}s"), key="location_bar"
)

st.subheader(f"Products with no photo ({len(no_photo)})", anchor=False)
st.dataframe(no_photo, hide_index=True, width="stretch", column_config={"price": st.column_config.NumberColumn(format="£%.2f")})

st.subheader("Model health", anchor=False)
try:
    held_out_sets = resources.held_out()
except ModelFileError as error:
    st.error(f"The models could not be loaded: {escape_markdown(str(error))}")
    held_out_sets = {}
if held_out_sets is None:
    job_progress(resources.held_out_job_key(), waiting="The active combined model's figures")
elif held_out_sets:
    held_out = held_out_sets[ModelKind.COMBINED]
    health = held_out.metrics()
    health_cols = st.columns(5)
    health_cols[0].metric("Combined model accuracy", f"{health['accuracy']:.1%}" if health["n"] else "–")
    health_cols[1].metric("Macro-F1", f"{health['macro_f1']:.3f}" if health["n"] else "–")
    health_cols[2].metric("Held-out products", f"{health['n']:,}")
    confident = health.get("confident")
    if confident:  # what the model would file without a person, and how often it is right there
        health_cols[3].metric(
            "Filed automatically",
            f"{confident['share']:.1%}",
            help="Share of the held-out products whose calibrated top probability reaches the model's threshold",
        )
        health_cols[4].metric("Accuracy when filed", "–" if confident["accuracy"] is None else f"{confident['accuracy']:.1%}")
    st.caption(held_out.note)
    st.plotly_chart(
        per_class_bar(
            per_class_frame(health), value="recall", title="Active combined model: accuracy per category (recall on held-out products)"
        ),
        key="health_bar",
    )

queue_counts = review_queue.queue_counts_per_category(data.engine())
if queue_counts.empty:
    st.caption("The labelling review queue is empty: build it on the Review page.")
else:
    st.plotly_chart(
        dashboard_figures.count_bar(
            queue_counts,
            label="category",
            value="in the queue",
            title="Products waiting in the labelling review queue, per current category",
        ),
        key="queue_bar",
    )
