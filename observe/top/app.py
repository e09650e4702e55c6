"""The Textual app: the camera table, the highlighted camera's panel below
it, the detail screen (the panel full screen) and the help.

The App owns the poller: a timer starts a thread worker that reads the
source and posts a `Polled` or `SourceDown` message; the UI changes only in
those message handlers.
"""

from __future__ import annotations

from rich.columns import Columns
from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Sparkline, Static

from .. import metrics
from .fmt import depth_bar, fmt_rate, fmt_seconds, fmt_share, hist_bars, processes
from .model import CameraRow, Model
from .rates import per_bucket
from .sources import Reading, SourceError

# The panel's histograms, in this order: latency stages, then queue depths
PANEL_HISTOGRAMS = tuple((f, fmt_seconds) for f in (metrics.FRAME_LATENCY, metrics.DELIVERY_LATENCY,
                                                  metrics.DEQUEUE_LATENCY, metrics.COPY_DURATION)) + \
    tuple((f, lambda le: f"{le:g}") for f in (metrics.OUTPUT_DEPTH_SEEN, metrics.CAPTURE_DEPTH_SEEN))

COLUMNS = (  # key, header, width
    ("device", "device", 7),
    ("card", "label", 10),
    ("procs", "producer → consumer", 25),
    ("fps", "fps", 5),
    ("zc", "zc%", 4),
    ("copies", "cp/s", 5),
    ("bytes", "B/s", 6),
    ("errors", "err", 4),
    ("outq", "out q", 8),
    ("capq", "cap q", 8),
    ("p50", "p50", 7),
    ("p99", "p99", 7),
    ("frames", "frames", 9),
)

SORTS = (  # name, key function, descending
    ("device", lambda r: r.device_nr, False),
    ("fps", lambda r: r.fps if r.fps is not None else -1, True),
    ("zc%", lambda r: r.zero_copy_share if r.zero_copy_share is not None else -1, True),
    ("cp/s", lambda r: r.copies_s if r.copies_s is not None else -1, True),
    ("err", lambda r: r.errors, True),
    ("p99", lambda r: r.p99 if r.p99 is not None else -1, True),
)

# Below this width the table drops the processes, B/s and frames (the panel
# below it has them) so that queues and latency fit in 80 columns.
WIDE = 132
NARROW_DROP = {"procs", "bytes", "frames"}
# Below this height the main view is the table alone (Enter still opens the detail).
PANEL_MIN_HEIGHT = 16


def columns_for(width: int):
    if width >= WIDE:
        return COLUMNS
    narrow = {"device": 6, "card": 7, "fps": 5, "copies": 5, "errors": 3, "outq": 7, "capq": 7, "p50": 6, "p99": 6}
    return tuple((k, h, narrow.get(k, w)) for k, h, w in COLUMNS if k not in NARROW_DROP)


def row_cells(r: CameraRow, columns=COLUMNS) -> tuple[str, ...]:
    widths = {k: w for k, _, w in columns}
    cells = {
        "device": r.device, "card": r.card or "-",
        "procs": processes(r.producer, r.consumer, widths.get("procs")),
        "fps": fmt_rate(r.fps), "zc": fmt_share(r.zero_copy_share),
        "copies": fmt_rate(r.copies_s), "bytes": fmt_rate(r.bytes_s), "errors": f"{int(r.errors)}",
        "outq": depth_bar(r.output_depth, r.slots), "capq": depth_bar(r.capture_depth, r.slots),
        "p50": fmt_seconds(r.p50), "p99": fmt_seconds(r.p99), "frames": f"{int(r.frames)}",
    }
    return tuple(cells[k] for k, _, _ in columns)


def spark_values(series, index: int) -> list[float]:
    vals = [s[index] for s in series if s[index] is not None]
    # one value (or none) would draw as a full block: show a flat baseline
    return vals if len(vals) > 1 else (vals or [0.0]) * 2


def depth(value: float, slots: float | None) -> str:
    return f"{int(value)}/{int(slots)}" if slots else f"{int(value)}"


def head_text(row: CameraRow) -> str:
    """The panel's first lines: who is on each side, the rates, the queues."""
    return (f"{row.device}  {row.card or '-'}  producer {row.producer or '-'}  consumer {row.consumer or '-'}  "
            f"{'streaming' if row.streaming else 'not streaming'}\n"
            f"fps {fmt_rate(row.fps)}  zero-copy {fmt_share(row.zero_copy_share)}  "
            f"copies/s {fmt_rate(row.copies_s)}  B/s {fmt_rate(row.bytes_s)}  errors {int(row.errors)}  "
            f"frames {int(row.frames)}\n"
            f"out q {depth_bar(row.output_depth, row.slots)}  cap q {depth_bar(row.capture_depth, row.slots)}  "
            f"p50 {fmt_seconds(row.p50)}  p99 {fmt_seconds(row.p99)}")


def histograms_renderable(hists: dict):
    """The last minute's histograms side by side as the width allows, the
    empty ones named on a line below them."""
    blocks, empty = [], []
    for fam, fmt in PANEL_HISTOGRAMS:
        b = hists.get(fam)
        if b is None or not any(n for _, n in per_bucket(b)):
            empty.append(fam.removeprefix("vcam_"))
        else:
            blocks.append(Text(f"{fam}, last minute\n{hist_bars(b, fmt)}"))
    parts = [Columns(blocks, padding=(1, 2))] if blocks else []
    if empty:
        parts.append(Text("nothing in the last minute: " + ", ".join(empty)))
    return Group(*parts)


class CameraPanel(Vertical):
    """One camera: who is on each side, rates and queues, the last minute
    as sparklines (fps, p99, both queue depths) and histograms. Below the
    table (the highlighted camera) and as the whole detail screen."""

    SPARKS = (("fps", 1), ("p99", 2), ("outq", 3), ("capq", 4))   # id, index in Model.series

    def compose(self) -> ComposeResult:
        yield Static("", classes="panel-head")
        with Horizontal(classes="sparks"):
            for key, _ in self.SPARKS:
                with Vertical():
                    yield Static("", id=f"{key}-label", classes="spark-label")
                    yield Sparkline([0.0], id=f"spark-{key}")
        with VerticalScroll(classes="panel-hists"):
            yield Static("", classes="hists")

    def show(self, model: Model, device: str | None) -> None:
        row = model.rows.get(device) if device else None
        head = self.query_one(".panel-head", Static)
        if row is None:
            head.update(Text(f"{device}: gone" if device else "no camera yet"))
        else:
            head.update(Text(head_text(row)))
        labels = {
            "fps": f"fps {fmt_rate(row.fps) if row else '-'}",
            "p99": f"p99 latency {fmt_seconds(row.p99) if row else '-'}",
            "outq": f"output depth {depth(row.output_depth, row.slots) if row else '-'}",
            "capq": f"capture depth {depth(row.capture_depth, row.slots) if row else '-'}",
        }
        series = model.series.get(device, ()) if device else ()
        for key, index in self.SPARKS:
            self.query_one(f"#{key}-label", Static).update(Text(labels[key]))
            self.query_one(f"#spark-{key}", Sparkline).data = spark_values(series, index)
        hists = model.minute_histograms(device) if row else {}
        self.query_one(".hists", Static).update(histograms_renderable(hists) if row else "")


class CameraTable(DataTable):
    """The camera table; Enter (detail) shows in the footer."""
    BINDINGS = [Binding("enter", "select_cursor", "detail", key_display="Enter")]


class Polled(Message):
    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        super().__init__()


class SourceDown(Message):
    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__()


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        yield Static(
            "vcam-observe top\n\n"
            "  q      quit\n"
            "  p      pause / resume refreshing\n"
            "  s      cycle the sort column\n"
            "  /      filter cameras (device, label, process); Esc clears\n"
            "  ↑ ↓    select a camera: its detail shows below the table\n"
            "  Enter  the selected camera's detail full screen (Esc back)\n"
            "  ?      this help\n\n"
            "fps: frames delivered/s; zc%: share delivered zero-copy;\n"
            "cp/s, B/s: frames and bytes copied by the CPU per second;\n"
            "out q / cap q: output and capture queue depth / output slots;\n"
            "p50/p99: frame latency (QUEUE to DQBUF) over the last 5 s;\n"
            "producer → consumer: their command names, (same) when the\n"
            "consumer runs the producer's program; frames: delivered since\n"
            "the camera appeared (both on wide terminals).",
            id="help")


class DetailScreen(Screen):
    """One camera's panel, full screen."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back"),
                Binding("q", "app.quit", "quit"),
                Binding("p", "app.toggle_pause", "pause"),
                Binding("question_mark", "app.help", "help")]

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="detail-banner", classes="banner")
        yield CameraPanel(id="detail-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.update_from(self.app)

    def update_from(self, app: "TopApp") -> None:
        self.query_one("#detail-banner", Static).update(Text(app.banner_text))
        self.query_one("#detail-banner").display = bool(app.banner_text)
        self.query_one(CameraPanel).show(app.model, self.device)


class TopApp(App):
    """The table of cameras, the selected one's panel, a detail view."""

    CSS_PATH = "top.tcss"
    TITLE = "vcam-observe top"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("p", "toggle_pause", "pause"),
        Binding("s", "cycle_sort", "sort"),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("enter", "detail", "detail", key_display="Enter"),
        Binding("question_mark", "help", "help", key_display="?"),
    ]

    def __init__(self, source, interval: float = 1.0, autopoll: bool = True) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.autopoll = autopoll
        self.model = Model()
        self.paused = False
        self.sort_index = 0
        self.filter_text = ""
        self.banner_text = ""
        self.last_ok: float | None = None
        self.polls = 0
        self.columns = None

    def w(self, selector: str):
        """A widget of the main screen, whichever screen is on top."""
        return self.screen_stack[0].query_one(selector)

    def check_action(self, action: str, parameters) -> bool | None:
        # sort, filter and detail act on the table: hidden over the detail view
        if action in ("cycle_sort", "filter", "detail") and len(self.screen_stack) > 1:
            return False
        return True

    # -- layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner", classes="banner")
        yield CameraTable(id="cameras", cursor_type="row", zebra_stripes=False)
        yield CameraPanel(id="panel")
        yield Input(placeholder="filter: device, label or process; Enter keeps, Esc clears", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.set_layout(self.size)
        self.w("#banner").display = False
        self.w("#filter").display = False
        self.update_subtitle()
        self.update_panel()
        if self.autopoll:
            self.set_interval(self.interval, self.action_poll)
            self.action_poll()

    def set_layout(self, size) -> bool:
        """Columns for the width, the panel for the height; True if the columns changed."""
        self.w("#panel").display = size.height >= PANEL_MIN_HEIGHT
        columns = columns_for(size.width)
        if columns == self.columns:
            return False
        self.columns = columns
        table = self.w("#cameras")
        table.clear(columns=True)
        for key, header, w in columns:
            table.add_column(header, key=key, width=w)
        return True

    def on_resize(self, event) -> None:
        if self.columns is not None:
            if self.set_layout(event.size):
                self.refresh_views()
            else:
                self.update_panel()

    # -- polling: a timer starts a worker; the worker posts messages
    def action_poll(self) -> None:
        # one read at a time: a slow scrape makes ticks skip, never pile up
        if not self.paused and not any(w.group == "poll" and not w.is_finished for w in self.workers):
            self.fetch()

    @work(thread=True, group="poll")
    def fetch(self) -> None:
        try:
            reading = self.source.read()
        except SourceError as e:
            self.post_message(SourceDown(str(e)))
        except Exception as e:  # a source bug shows in the banner, it does not kill the TUI
            self.post_message(SourceDown(f"{type(e).__name__}: {e}"))
        else:
            self.post_message(Polled(reading))

    def on_polled(self, message: Polled) -> None:
        self.polls += 1
        self.last_ok = message.reading.t
        self.banner_text = ""
        self.model.add(message.reading)
        self.refresh_views()

    def on_source_down(self, message: SourceDown) -> None:
        self.banner_text = (f"SOURCE DOWN: {message.error}  retrying every {self.interval:g}s"
                            + ("; showing the last values" if self.model.rows else ""))
        self.refresh_views()

    # -- views
    def visible_rows(self) -> list[CameraRow]:
        rows = list(self.model.rows.values())
        if self.filter_text:
            f = self.filter_text.lower()
            rows = [r for r in rows if f in " ".join((r.device, r.card, r.producer, r.consumer)).lower()]
        _, key, desc = SORTS[self.sort_index]
        rows.sort(key=lambda r: r.device_nr)
        rows.sort(key=key, reverse=desc)
        return rows

    def update_subtitle(self) -> None:
        parts = [getattr(self.source, "name", "")]
        parts.append(f"sort {SORTS[self.sort_index][0]}")
        if self.filter_text:
            parts.append(f"filter '{self.filter_text}'")
        if self.paused:
            parts.append("PAUSED")
        self.sub_title = " | ".join(p for p in parts if p)

    def refresh_views(self) -> None:
        try:
            banner = self.w("#banner")
        except (NoMatches, IndexError):
            return  # a reading that lands as the app exits: its screen is torn down or gone
        banner.update(Text(self.banner_text))
        banner.display = bool(self.banner_text)
        table = self.w("#cameras")
        selected = self.selected_device()
        rows = self.visible_rows()
        keys = [r.device for r in rows]
        if keys == [row.key.value for row in table.ordered_rows]:
            # same rows in the same order: touch only the cells that changed
            for r in rows:
                for (col, _, _), cell in zip(self.columns, row_cells(r, self.columns)):
                    if str(table.get_cell(r.device, col)) != cell:
                        table.update_cell(r.device, col, Text(cell))
        else:
            table.clear()
            for r in rows:
                table.add_row(*map(Text, row_cells(r, self.columns)), key=r.device)
        if selected is not None and selected in {r.device for r in rows}:
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        self.update_panel()
        self.update_subtitle()
        if isinstance(self.screen, DetailScreen):
            self.screen.update_from(self)

    def selected_device(self) -> str | None:
        table = self.w("#cameras")
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    def update_panel(self) -> None:
        panel = self.w("#panel")
        if panel.display:
            panel.show(self.model, self.selected_device())

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self.update_panel()

    # -- keys
    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.update_subtitle()

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self.refresh_views()

    def action_filter(self) -> None:
        box = self.w("#filter")
        box.display = True
        box.value = self.filter_text
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.refresh_views()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        box = self.w("#filter")
        box.display = False
        self.w("#cameras").focus()

    def on_key(self, event) -> None:
        box = self.w("#filter")
        if event.key == "escape" and box.display and self.screen is self.screen_stack[0]:
            box.value = ""
            self.filter_text = ""
            box.display = False
            self.w("#cameras").focus()
            self.refresh_views()
            event.stop()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        device = self.selected_device()
        if device is not None and not isinstance(self.screen, DetailScreen):
            self.push_screen(DetailScreen(device))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def run(source, interval: float) -> int:
    TopApp(source, interval=interval).run()
    return 0
