"""LifeLens dashboard: `streamlit run app.py`.

This file is the frame around every page: page setup, the navigation, and the presenter
mode switch. Each page is a thin file in ``pages/``; shared screen components are in
``ui/``; everything that computes is in ``lifelens/``.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import streamlit as st  # noqa: E402

from lifelens.tasks import TASKS  # noqa: E402
from ui import common  # noqa: E402

st.set_page_config(page_title="LifeLens", page_icon="🔬", layout="wide", initial_sidebar_state="expanded")

pages = {
    "LifeLens": [st.Page("pages/home.py", title="Home", icon="🏠", default=True)],
    "The four tasks": [
        st.Page(f"pages/{task_id}.py", title=spec.title, icon=spec.icon, url_path=task_id)
        for task_id, spec in TASKS.items()
    ],
    "Look inside": [
        st.Page("pages/inside.py", title="Inside the network", icon="🧠", url_path="inside"),
        st.Page("pages/playground.py", title="Convolution playground", icon="🧮", url_path="playground"),
    ],
    "Can we trust it?": [
        st.Page("pages/uncertainty_lab.py", title="Uncertainty lab", icon="🎲", url_path="uncertainty"),
        st.Page("pages/model_cards.py", title="Model cards", icon="📇", url_path="cards"),
    ],
    "Your own model": [
        st.Page("pages/your_model.py", title="Bring your own model", icon="📦", url_path="your-model"),
    ],
}

page = st.navigation(pages)

with st.sidebar:
    st.toggle("Presenter mode", key=common.PRESENTER_KEY,
              help="Larger type, fewer controls and one case per screen: for a projector or a class.")
    st.caption("A teaching and demonstration tool, not a diagnostic device.")

common.apply_presenter_style()
page.run()
