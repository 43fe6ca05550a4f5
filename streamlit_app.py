"""Entry point: `streamlit run streamlit_app.py`."""

import streamlit as st

st.set_page_config(page_title="Marketplace browser", page_icon=":material/storefront:", layout="wide")

navigation = st.navigation(
    {
        "Shop": [
            st.Page("pages/search.py", title="Search", icon=":material/search:", default=True),
            st.Page("pages/browse.py", title="Browse", icon=":material/grid_view:"),
        ],
        "Analyse": [
            st.Page("pages/dashboard.py", title="Dashboard", icon=":material/monitoring:"),
        ],
        "Admin": [
            st.Page("pages/admin.py", title="Import", icon=":material/upload:"),
        ],
    }
)
navigation.run()
