"""Entry point: `streamlit run streamlit_app.py`."""

import streamlit as st

st.set_page_config(page_title="Marketplace browser", page_icon=":material/storefront:", layout="wide")

navigation = st.navigation(
    {
        "Shop": [
            st.Page("pages/search.py", title="Search", icon=":material/search:", default=True),
            st.Page("pages/browse.py", title="Browse", icon=":material/grid_view:"),
            st.Page("pages/classify.py", title="Classify", icon=":material/category:"),
        ],
        "Analyse": [
            st.Page("pages/dashboard.py", title="Dashboard", icon=":material/monitoring:"),
            st.Page("pages/evaluation.py", title="Evaluation", icon=":material/grid_on:"),
            st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
            st.Page("pages/review.py", title="Review", icon=":material/rule:"),
        ],
        "Admin": [st.Page("pages/admin.py", title="Import", icon=":material/upload:")],
    }
)
navigation.run()
