"""Streamlit screen components shared by the pages (the pages themselves are in ``app_pages/``)."""
