"""Views of softdb's answers: notebook displays, a standalone HTML explorer, and the web app.

The rendering lives below the table (:mod:`softdb.render`) and is re-exported here;
the parts that ask a table (``explain_view``, ``search_answers``, the app and its
server) live here. Everything renders offline: CSS, scripts and SVG are inline or shipped in
``softdb/render/assets``; nothing is fetched from the network.
"""

from softdb.render._explorer import (
    explanation_data,
    explanation_grid,
    explanation_html,
    write_explanation_html,
    write_html,
)
from softdb.render._grid import TemperatureGrid, grid_log_sum_exp, temperature_grid
from softdb.render._notebook import fit_report_html, intuition_html, search_result_html, table_html
from softdb.render._results import jsonable, to_dicts, to_pandas
from softdb.views._explorer import explain_view
from softdb.views._heads import heads_page, heads_summary, heads_view_data, write_heads_html
from softdb.views._model import SearchAnswer, search_answer, search_answers, search_record

__all__ = [
    "SearchAnswer",
    "TemperatureGrid",
    "explain_view",
    "explanation_data",
    "explanation_grid",
    "explanation_html",
    "fit_report_html",
    "grid_log_sum_exp",
    "heads_page",
    "heads_summary",
    "heads_view_data",
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
    "write_heads_html",
    "write_html",
]
