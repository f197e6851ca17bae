"""Views of softdb's answers: notebook displays, a standalone HTML explorer, and the web app.

Everything renders offline: CSS, scripts and SVG are inline or shipped in
``softdb/render/assets``; nothing is fetched from the network.
"""

from softdb.render._notebook import fit_report_html, intuition_html, search_result_html, table_html
from softdb.render._results import to_dicts, to_pandas
from softdb.views._explorer import (
    explain_view,
    explanation_data,
    explanation_grid,
    explanation_html,
    write_explanation_html,
    write_html,
)
from softdb.views._model import (
    SearchAnswer,
    TemperatureGrid,
    grid_log_sum_exp,
    jsonable,
    search_answer,
    search_answers,
    search_record,
    temperature_grid,
)

__all__ = [
    "SearchAnswer",
    "TemperatureGrid",
    "explain_view",
    "explanation_data",
    "explanation_grid",
    "explanation_html",
    "fit_report_html",
    "grid_log_sum_exp",
    "intuition_html",
    "jsonable",
    "search_answer",
    "search_answers",
    "search_record",
    "search_result_html",
    "table_html",
    "temperature_grid",
    "to_dicts",
    "to_pandas",
    "write_explanation_html",
    "write_html",
]
