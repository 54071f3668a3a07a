"""Page views per page in tumbling windows, as Faust's tables guide counts them.

Modelled on the windowed page-view count in faust-streaming's "Tables and Windowing"
guide, written for this guide (not a copy): a ``PageView`` record stream regrouped
by page id (``group_by``) and counted in a tumbling windowed table. Only
``import agentlib as faust`` differs from a Faust app.

Each view lands in the window of its record's timestamp (the stream's time, Faust's
default); a window is kept for ``expires`` after it ends. The table's changelog is
``page-views-page_views-changelog``; its rows' keys are ``[page id, [start, end]]``.
"""

from datetime import timedelta

import agentlib as faust


class PageView(faust.Record):
    id: str
    user: str


app = faust.App('page-views')
page_view_topic = app.topic('page_views', value_type=PageView)

page_views = app.Table('page_views', default=int).tumbling(
    timedelta(minutes=1), expires=timedelta(hours=1))


@app.agent(page_view_topic)
async def count_page_views(views: faust.StreamT[PageView]) -> None:
    async for view in views.group_by(PageView.id):
        page_views[view.id] += 1
