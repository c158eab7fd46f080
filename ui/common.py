"""Streamlit pieces every page uses: cached models, presenter mode, guarded sections.

Pages call these; the work itself is in ``lifelens/``.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from lifelens import models
from lifelens.imaging import InputError
from lifelens.tasks import DISCLAIMER, TASKS, get_task

log = logging.getLogger("lifelens.app")

PRESENTER_KEY = "presenter"
# A local file: a Material-icon favicon would be fetched from a public font server on every load.
ICON = Path(__file__).resolve().parent.parent / "assets" / "icon.png"

# Material Symbols ship with Streamlit, so icons render even where no emoji font is installed.

PRESENTER_CSS = """
<style>
[data-testid="stMain"] p, [data-testid="stMain"] li, [data-testid="stMain"] label p { font-size: 1.3rem !important; }
[data-testid="stMain"] h1 { font-size: 3rem !important; }
[data-testid="stMain"] h2 { font-size: 2.3rem !important; }
[data-testid="stMain"] h3 { font-size: 1.8rem !important; }
[data-testid="stMain"] [data-testid="stMetricValue"],
[data-testid="stMain"] [data-testid="stMetricValue"] p,
[data-testid="stMain"] [data-testid="stMetricValue"] div { font-size: 2.8rem !important; line-height: 1.2 !important; }
[data-testid="stMain"] [data-testid="stMetricLabel"] p { font-size: 1.1rem !important; white-space: normal !important; }
[data-testid="stMain"] [data-testid="stCaptionContainer"] p { font-size: 1.1rem !important; }
.block-container { max-width: 1400px; padding-top: 4rem; }  /* below the app header: the switch stays clickable */
/* The sidebar goes: the screen is the case. Presenter mode is left with the switch at the top. */
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stSidebarNav"] { display: none !important; }
[data-testid="stMain"] button p, [data-testid="stMain"] [data-baseweb="select"] div { font-size: 1.3rem !important; }
[data-testid="stMain"] button { min-height: 3rem; }
[data-testid="stMain"] [data-testid="stImage"] img { max-height: 560px; width: auto !important; margin: auto; }
[data-testid="stMain"] [data-testid="stVerticalBlock"] { gap: 0.6rem; }
</style>
"""


_WARM_UP = threading.Lock()
_WARM_UP_STARTED = False


def start_background_imports() -> None:
    """Import TensorFlow/Keras and the explanation and uncertainty modules in a background thread,
    once per server process, so the first page's own imports and drawing overlap with the
    seconds TensorFlow takes to import (about 0.7 s saved on a cold start on 2 cores)."""
    global _WARM_UP_STARTED
    with _WARM_UP:
        if _WARM_UP_STARTED:
            return
        _WARM_UP_STARTED = True

    def warm() -> None:
        try:
            import keras  # noqa: F401

            from lifelens import charts, explain, uncertainty  # noqa: F401

            charts.value_histogram([0.0, 1.0], "", "").to_dict()  # loads and caches the Vega-Lite schema
        except Exception:  # noqa: BLE001 - the page imports them again and reports any error itself
            log.exception("background import failed")

    threading.Thread(target=warm, name="lifelens-warm-up", daemon=True).start()


FILE_NAMES_KEY = "show_file_names"
LAST_TASK_KEY = "last_task_page"  # the Inside page opens on the task the user came from


def keep_keras_state_between_runs() -> None:
    """Stop Streamlit calling ``keras.backend.clear_session()`` after every script run.

    Streamlit does so for apps that build models in the script (its ``_clean_problem_modules``).
    The call runs a full garbage collection and empties TensorFlow's kernel caches, so each
    member's compiled pass took 50-70 ms instead of 6 ms on its first call of the next run;
    turning it off took a switch of explanation method from 1.08 to 0.37 s in the browser
    (``bench/bench_app.py``, 2 cores). LifeLens
    loads its models once per process (``st.cache_resource``) and never builds one in the
    script, so there is nothing to clear. Streamlit internals: if they move, nothing breaks,
    the clicks are only slower again (``bench/bench_app.py`` shows it).
    """
    try:
        from streamlit.runtime.scriptrunner import script_runner

        script_runner._clean_problem_modules = lambda: None
    except (ImportError, AttributeError):  # pragma: no cover - a Streamlit without the hook
        pass


def frame() -> None:
    """What every page has around it: the presenter and privacy switches (at the top in
    presenter mode, where the sidebar is hidden) and the presenter style."""
    keep_keras_state_between_runs()
    with st.container() if presenter() else st.sidebar:
        st.toggle("Presenter mode", key=PRESENTER_KEY,
                  help="Larger type, fewer controls, no sidebar and one case per screen: for a projector or a class.")
        st.toggle("Show upload file names", key=FILE_NAMES_KEY,
                  help="Off: uploads are called 'uploaded image' with a short hash on screen and in exports, since "
                       "file names often carry a patient's name or date of birth.")
        st.caption("A teaching and demonstration tool, not a diagnostic device.")
    apply_presenter_style()


def presenter() -> bool:
    """True when presenter mode is on: larger type, fewer controls, one case per screen."""
    return bool(st.session_state.get(PRESENTER_KEY, False))


def apply_presenter_style() -> None:
    if presenter():
        st.html(PRESENTER_CSS)


def disclaimer() -> None:
    st.caption(f":material/warning: {DISCLAIMER}")


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
        st.info(f"The model for {spec.title} is not trained yet ({spec.model_path.name} is missing). "
                "Run `python -m lifelens train --task " f"{spec.id}` and reload.")
        return None
    try:
        with st.spinner(f"Loading the {spec.title} model…"):
            return _load_task_model(task_id)
    except models.ModelError as exc:
        st.error(str(exc))
        return None


def task_picker(label: str = "Model", key: str = "task_choice", help: str | None = None) -> str | None:
    """A select box of tasks (those with a model first); returns the task id."""
    ids = list(TASKS)
    if not ids:
        return None
    return st.selectbox(label, ids, format_func=lambda t: TASKS[t].title, key=key,
                        help=help or "Which of the four task models to look at.")


def task_icon(task_id: str) -> str:
    return TASKS[task_id].icon if task_id in TASKS else ":material/image:"
