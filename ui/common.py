"""Streamlit pieces every page uses: cached models, presenter mode, guarded sections.

Pages call these; the work itself is in ``lifelens/``.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import streamlit as st

from lifelens import models
from lifelens.imaging import InputError
from lifelens.tasks import DISCLAIMER, TASKS, get_task

log = logging.getLogger("lifelens.app")

PRESENTER_KEY = "presenter"

PRESENTER_CSS = """
<style>
.stApp, .stApp p, .stApp li, .stApp label, .stApp [data-testid="stMarkdownContainer"] { font-size: 1.3rem !important; }
.stApp h1 { font-size: 3rem !important; }
.stApp h2 { font-size: 2.3rem !important; }
.stApp h3 { font-size: 1.8rem !important; }
.stApp [data-testid="stMetricValue"] { font-size: 2.6rem !important; }
.stApp [data-testid="stMetricLabel"] p { font-size: 1.2rem !important; }
.block-container { max-width: 1400px; padding-top: 2rem; }
</style>
"""


def presenter() -> bool:
    """True when presenter mode is on: larger type, fewer controls, one case per screen."""
    return bool(st.session_state.get(PRESENTER_KEY, False))


def apply_presenter_style() -> None:
    if presenter():
        st.html(PRESENTER_CSS)


def disclaimer() -> None:
    st.caption(f"⚠️ {DISCLAIMER}")


@contextmanager
def guarded(what: str):
    """Run one section of a page; a failure shows one short message and the page goes on.

    Bad uploads and damaged models have their own plain messages; anything unexpected is
    logged to the console (with its traceback) and summarised in one line on screen.
    """
    try:
        yield
    except (InputError, models.ModelError) as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - the whole point is that nothing escapes to the screen
        log.exception("Section %r failed", what)
        st.error(f"{what} could not be shown ({type(exc).__name__}: {str(exc)[:160]}). "
                 "The rest of the page still works.")


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_task_model(task_id: str):
    return models.load_task_model(get_task(task_id))


def task_model(task_id: str):
    """The shipped model of a task, loaded once per server process; None (with a message) if unusable."""
    spec = get_task(task_id)
    if not spec.model_path.is_file():
        st.info(f"The {spec.title.lower()} model is not trained yet ({spec.model_path.name} is missing). "
                "Run `python -m lifelens train --task " f"{spec.id}` and reload.")
        return None
    try:
        with st.spinner(f"Loading the {spec.title.lower()} model…"):
            return _load_task_model(task_id)
    except models.ModelError as exc:
        st.error(str(exc))
        return None


def available_tasks() -> list[str]:
    """Task ids whose model file exists."""
    return [t for t, spec in TASKS.items() if spec.model_path.is_file()]


def task_picker(label: str = "Model", key: str = "task_choice", help: str | None = None) -> str | None:
    """A select box of tasks (those with a model first); returns the task id."""
    ids = list(TASKS)
    if not ids:
        return None
    return st.selectbox(label, ids, format_func=lambda t: f"{TASKS[t].icon} {TASKS[t].title}", key=key,
                        help=help or "Which of the four task models to look at.")
