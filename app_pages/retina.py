"""Diabetic retinopathy grade: choose an image, see both confidences, explain it, export it."""
from ui.task_page import render

render("retina")
