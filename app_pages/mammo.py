"""Mammography (mini-MIAS): choose a film (recorded lesions circled), see both confidences, explain it, export it."""
from ui.task_page import render

render("mammo")
