"""Catalogue dashboard: counts per category with drill-down, prices, locations, missing photos."""

import streamlit as st

from core import dashboard
from ui import data
from ui.widgets import require_catalogue

st.title("Dashboard")
product_count, image_count = require_catalogue()
products = data.products_frame(data.database_url())
no_photo = dashboard.products_without_photos(products)

metrics = st.columns(5)
metrics[0].metric("Products", f"{product_count:,}")
metrics[1].metric("Photos", f"{image_count:,}")
metrics[2].metric("Top-level categories", products["top"].nunique())
metrics[3].metric("Median price", f"£{products['price'].median():,.2f}")
metrics[4].metric("Products with no photo", f"{len(no_photo):,}")

overview, drill = st.columns(2)
with overview:
    st.plotly_chart(dashboard.category_bar(dashboard.category_summary(products), title="Products and photos per category"), key="category_bar")
with drill:
    top = st.selectbox("Drill into a category", sorted(products["top"].unique()), key="dashboard_drill")
    subs = dashboard.category_summary(products, level="sub", within=top)
    st.plotly_chart(dashboard.category_bar(subs, title=f"Sub-categories of {top}"), key="sub_bar")

st.plotly_chart(dashboard.category_treemap(products), key="treemap")
st.plotly_chart(dashboard.price_box(products), key="price_box")

by = st.radio("Locations by", ["town", "county"], horizontal=True, key="dashboard_location_by")
st.plotly_chart(dashboard.location_bar(dashboard.location_summary(products, by=by), title=f"Top 15 {by}s"), key="location_bar")

st.subheader(f"Products with no photo ({len(no_photo)})", anchor=False)
st.dataframe(no_photo, hide_index=True, width="stretch", column_config={"price": st.column_config.NumberColumn(format="£%.2f")})
