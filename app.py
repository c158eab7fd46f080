"""LifeLens dashboard: `streamlit run app.py`.

This file is the frame around every page: page setup, the navigation, and the presenter
mode switch. The task pages are made from the task registry (``ui.task_page.page_for``);
every other page is a thin file in ``app_pages/``; shared screen components are in
``ui/``; everything that computes is in ``lifelens/``.

The page folder is deliberately NOT called ``pages/``: Streamlit treats a ``pages/`` folder
beside the entry point as a legacy multipage app until the first session runs
``st.navigation``, so a fresh server opened directly at e.g. ``/plant`` would run that page
file without this frame (no presenter switch, a file-name sidebar) or show "Page not found".
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import streamlit as st  # noqa: E402

from ui import common  # noqa: E402

common.start_background_imports()  # TensorFlow imports while the frame and the page start drawing

from lifelens.tasks import TASKS  # noqa: E402
from ui import task_page  # noqa: E402

st.set_page_config(page_title="LifeLens", page_icon=str(common.ICON), layout="wide", initial_sidebar_state="expanded")

pages = {
    "LifeLens": [st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True)],
    # One page per registered task, drawn from its spec: adding a task adds its page.
    "The tasks": [task_page.page_for(task_id) for task_id in TASKS],
    "Look inside": [
        st.Page("app_pages/inside.py", title="Inside the network", icon=":material/neurology:", url_path="inside"),
        st.Page("app_pages/playground.py", title="Convolution playground", icon=":material/calculate:", url_path="playground"),
        st.Page("app_pages/training_lab.py", title="Training lab", icon=":material/model_training:", url_path="training-lab"),
    ],
    "Can we trust it?": [
        st.Page("app_pages/uncertainty_lab.py", title="Uncertainty lab", icon=":material/casino:", url_path="uncertainty"),
        st.Page("app_pages/model_cards.py", title="Model cards", icon=":material/badge:", url_path="cards"),
    ],
    "Your own model": [
        st.Page("app_pages/your_model.py", title="Bring your own model", icon=":material/upload_file:", url_path="your-model"),
    ],
}

page = st.navigation(pages)

common.frame()
page.run()
