"""HTML from results: notebook displays and the pieces of the explorer page.

This layer sits below the table: it renders what the table returns and never imports it.
"""

from softdb.render._explorer import explanation_html, write_html
from softdb.render._html import snippet
from softdb.render._notebook import fit_report_html, intuition_html, search_result_html, table_html
from softdb.render._results import to_dicts, to_pandas

__all__ = [
    "explanation_html",
    "fit_report_html",
    "intuition_html",
    "search_result_html",
    "snippet",
    "table_html",
    "to_dicts",
    "to_pandas",
    "write_html",
]
